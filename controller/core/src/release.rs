//! A Release's aggregate status and the Promotions kiln should create for it.
//!
//! The first environment gets its Promotion when the Release appears; each next environment
//! gets one when every upstream of it succeeded — if the environment is `auto`. For other
//! environments the Release shows `AwaitingPromotion` until a person or GitOps creates it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kiln_api::PromotionPhase;
use kiln_api::common::condition;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{PromotionSpec, PromotionStatus};
use kiln_api::release::{ReleaseEnvironmentPhase, ReleaseEnvironmentStatus, ReleasePhase, ReleaseSpec, ReleaseStatus};

use crate::machine::set_condition;

/// One Promotion of this Release as observed.
#[derive(Debug, Clone)]
pub struct PromotionView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a PromotionSpec,
    /// Its status, if any yet.
    pub status: Option<&'a PromotionStatus>,
    /// The UID of the Release it belongs to, if known: the Release it deployed
    /// (`status.release`), else the one kiln created it for (its ownerReference).
    pub release_uid: Option<&'a str>,
}

/// What [`decide`] needs.
#[derive(Debug, Clone)]
pub struct ReleaseInput<'a> {
    /// The time of the decision.
    pub now: Timestamp,
    /// The Release's name.
    pub name: &'a str,
    /// The Release's UID: Promotions of another Release that had this name are not its own.
    pub uid: Option<&'a str>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// What the Release deploys and where.
    pub spec: &'a ReleaseSpec,
    /// The current status.
    pub status: &'a ReleaseStatus,
    /// Known Environments by name.
    pub environments: &'a BTreeMap<String, EnvironmentSpec>,
    /// The Promotions naming this Release (forward and rollback), oldest first; those of
    /// another Release that had its name are told apart by [`PromotionView::release_uid`].
    pub promotions: &'a [PromotionView<'a>],
    /// Validation problems (from [`crate::validate::release`]).
    pub problems: &'a [crate::problem::Problem],
}

/// A Promotion kiln should create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPromotion {
    /// Its name: `<release>-<environment>`, shortened to fit.
    pub name: String,
    /// The Environment it promotes into.
    pub environment: String,
}

/// The result of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseDecision {
    /// The status to write (only if changed).
    pub status: ReleaseStatus,
    /// Promotions to create.
    pub create: Vec<NewPromotion>,
}

/// The name kiln gives the Promotion of `release` into `environment` (at most 253 characters).
pub fn promotion_name(release: &str, environment: &str) -> String {
    let suffix = format!("-{environment}");
    let keep = 253usize.saturating_sub(suffix.len());
    let base: String = release.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

fn env_phase(p: PromotionPhase) -> ReleaseEnvironmentPhase {
    match p {
        PromotionPhase::Queued => ReleaseEnvironmentPhase::Queued,
        PromotionPhase::WaitingForGates => ReleaseEnvironmentPhase::WaitingForGates,
        PromotionPhase::WaitingForApproval => ReleaseEnvironmentPhase::WaitingForApproval,
        PromotionPhase::Frozen => ReleaseEnvironmentPhase::Frozen,
        PromotionPhase::Deploying => ReleaseEnvironmentPhase::Deploying,
        PromotionPhase::Baking => ReleaseEnvironmentPhase::Baking,
        PromotionPhase::Succeeded => ReleaseEnvironmentPhase::Succeeded,
        PromotionPhase::RollingBack => ReleaseEnvironmentPhase::RollingBack,
        PromotionPhase::RolledBack => ReleaseEnvironmentPhase::RolledBack,
        PromotionPhase::Failed => ReleaseEnvironmentPhase::Failed,
        PromotionPhase::Aborted => ReleaseEnvironmentPhase::Aborted,
    }
}

/// The name for a new Promotion of `release` (UID `uid`) into `environment`: [`promotion_name`],
/// or, when `taken` says a Promotion (of an earlier Release of that name) holds it, that name
/// with the first eight characters of the Release's UID appended.
pub fn new_promotion_name(release: &str, environment: &str, uid: Option<&str>, taken: impl Fn(&str) -> bool) -> String {
    let name = promotion_name(release, environment);
    match uid {
        Some(uid) if taken(&name) => {
            let short: String = uid.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
            promotion_name(release, &format!("{environment}-{short}"))
        }
        _ => name,
    }
}

/// Decides the Release's status and which Promotions to create.
pub fn decide(input: &ReleaseInput<'_>) -> ReleaseDecision {
    let spec = input.spec;
    let mut create = Vec::new();
    let mut envs = Vec::new();
    let invalid = !input.problems.is_empty();
    // Only this Release's Promotions: one that deployed, or was created for, an earlier Release
    // of this name says nothing about this one.
    let own: Vec<&PromotionView<'_>> =
        input.promotions.iter().filter(|p| kiln_api::promotion::same_release(p.release_uid, input.uid)).collect();
    let name_for = |env: &str| {
        new_promotion_name(input.name, env, input.uid, |name| input.promotions.iter().any(|p| p.name == name))
    };

    for name in &spec.environments {
        // The forward Promotion of this release into this environment (the newest, if several).
        let promo = own.iter().rev().find(|p| &p.spec.environment == name && p.spec.rollback.is_none());
        let mut st = ReleaseEnvironmentStatus { name: name.clone(), ..Default::default() };
        if let Some(p) = promo {
            let status = p.status.cloned().unwrap_or_default();
            st.promotion = Some(p.name.to_string());
            st.phase = env_phase(status.phase);
            st.promoted_at = status.started_at.clone();
            st.bake_ends_at = if status.phase == PromotionPhase::Baking {
                status.bake.as_ref().and_then(|b| b.ends_at.clone())
            } else {
                None
            };
            st.baked_at = if status.phase == PromotionPhase::Succeeded { status.completed_at.clone() } else { None };
            st.message = status.message.clone();
        } else if !invalid {
            let env = input.environments.get(name);
            let upstream_done = env.is_some_and(|e| {
                e.upstream.iter().all(|up| {
                    own.iter()
                        .rev()
                        .find(|p| &p.spec.environment == up && p.spec.rollback.is_none())
                        .is_some_and(|p| p.status.is_some_and(|s| s.phase == PromotionPhase::Succeeded))
                })
            });
            if upstream_done {
                if env.is_some_and(|e| e.promotion.auto) {
                    let promotion = name_for(name);
                    create.push(NewPromotion { name: promotion.clone(), environment: name.clone() });
                    st.promotion = Some(promotion);
                    st.message = Some("creating the Promotion".into());
                } else {
                    st.phase = ReleaseEnvironmentPhase::AwaitingPromotion;
                    st.message = Some(format!(
                        "{name} is not auto: create the Promotion (kubectl kiln promote {} --env {name})",
                        input.name
                    ));
                }
            }
        }
        envs.push(st);
    }

    let phases: Vec<ReleaseEnvironmentPhase> = envs.iter().map(|e| e.phase).collect();
    let any = |p: ReleaseEnvironmentPhase| phases.contains(&p);
    let phase = if !phases.is_empty() && phases.iter().all(|p| *p == ReleaseEnvironmentPhase::Succeeded) {
        ReleasePhase::Succeeded
    } else if any(ReleaseEnvironmentPhase::RolledBack) || any(ReleaseEnvironmentPhase::Aborted) {
        ReleasePhase::RolledBack
    } else if any(ReleaseEnvironmentPhase::Failed) {
        ReleasePhase::Failed
    } else if envs.iter().any(|e| e.promotion.is_some()) {
        ReleasePhase::Progressing
    } else {
        ReleasePhase::Pending
    };
    let current = envs.iter().rev().find(|e| e.promotion.is_some()).map(|e| e.name.clone());

    let mut status = input.status.clone();
    status.observed_generation = input.generation;
    status.phase = phase;
    status.current_environment = current.clone();
    status.environments = envs;

    let message = if invalid {
        format!("invalid spec: {}", crate::problem::joined(input.problems))
    } else {
        match (&current, phase) {
            (_, ReleasePhase::Succeeded) => format!("{} {} is in every environment", spec.service, spec.version),
            (Some(env), p) => {
                let detail = status
                    .environments
                    .iter()
                    .find(|e| &e.name == env)
                    .and_then(|e| e.message.clone())
                    .unwrap_or_default();
                format!("{p:?} in {env}: {detail}")
            }
            (None, _) => "waiting for the first Promotion".to_string(),
        }
    };
    let ready = phase == ReleasePhase::Succeeded;
    let stalled = invalid || matches!(phase, ReleasePhase::RolledBack | ReleasePhase::Failed);
    let reason = if invalid { "InvalidSpec".to_string() } else { format!("{phase:?}") };
    set_condition(&mut status.conditions, condition::READY, ready, &reason, &message, input.generation, input.now);
    set_condition(
        &mut status.conditions,
        condition::RECONCILING,
        !ready && !stalled,
        &reason,
        &message,
        input.generation,
        input.now,
    );
    set_condition(&mut status.conditions, condition::STALLED, stalled, &reason, &message, input.generation, input.now);

    ReleaseDecision { status, create }
}
