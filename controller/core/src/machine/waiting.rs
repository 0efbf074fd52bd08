//! Before anything changes in AWS: the gates (approvals, freezes, upstream health, validation),
//! queueing behind other Promotions of the same target.

use kiln_api::PromotionPhase;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{BakeStatus, PromotionStatus};
use kiln_api::release::ReleaseSpec;

use super::draft::Draft;
use super::in_flight::in_flight;
use super::{Action, EventNote, PromotionInput, RETRY_SOON, UPSTREAM_HEALTH_RECHECK};
use crate::gates::{self, GateInput, TargetHealth};
use crate::observe::PolicyState;
use crate::plan;
use crate::problem::Problem;
use crate::reason;
use crate::running::{self, RunningState, Verdict};
use crate::signals;
use crate::time::to_time;
use crate::{approvals, duration};

/// The target environment's signals right now (for the `health` gate).
fn target_health(input: &PromotionInput<'_>) -> TargetHealth {
    match (&input.observed.policy, input.observed.signals.as_ref()) {
        (PolicyState::NotRequired, _) => TargetHealth::NoPolicy,
        // A missing policy is reported by the validation gate.
        (PolicyState::Missing(_), _) => TargetHealth::NoPolicy,
        (PolicyState::Found(_), None) => TargetHealth::NotRead,
        (PolicyState::Found(policy), Some(obs)) => match signals::current_health(policy, obs) {
            Ok(()) => TargetHealth::Green,
            Err(why) => TargetHealth::Red(why),
        },
    }
}

/// What the gates read. `status` is the status being decided (a retry in this very decision
/// may have asked for fresh approvals).
pub(super) fn gate_input<'x>(
    input: &'x PromotionInput<'x>,
    status: &PromotionStatus,
    release: &'x ReleaseSpec,
    env: &'x EnvironmentSpec,
) -> GateInput<'x> {
    // Approvals expire only before the deployment starts: one that let a deployment (or a
    // freeze exception) through does not stop it halfway.
    let rules = &env.promotion;
    let expiry = rules
        .approvals_expire_after
        .as_deref()
        .filter(|_| !status.phase.is_in_flight())
        .and_then(|d| duration::parse("approvalsExpireAfter", d).ok().map(|ttl| (ttl, d)));
    let standing = approvals::standing(
        &input.spec.approvals,
        &status.approvals_seen,
        input.now,
        expiry,
        status.approvals_valid_from.as_ref().map(|t| t.0),
    );
    GateInput {
        approvals: standing.counted,
        stale_approvals: standing.stale,
        health: target_health(input),
        now: input.now,
        promotion: input.spec,
        release,
        release_identity: input.observed.release_identity.as_ref(),
        environment: env,
        problems: &input.observed.problems,
        upstream: &input.observed.upstream,
        ahead: &input.observed.ahead,
        freezes: &input.observed.freezes,
        running: &input.observed.running,
    }
}

/// Ends a rollback Promotion that cannot be carried out as asked: `Failed` with why, before any
/// change. A person fixes the request and creates another (a rollback is urgent: it says what is
/// wrong at once rather than waiting).
fn refuse_rollback(d: &mut Draft<'_, '_>, why: &str) {
    d.status.gates = vec![kiln_api::promotion::GateResult {
        name: gates::name::VALIDATION.into(),
        ok: false,
        message: why.to_string(),
    }];
    d.status.gate_summary = Some("refused: validation".into());
    d.terminate(
        PromotionPhase::Failed,
        reason::ROLLBACK_REFUSED,
        format!("rollback refused: {why}; nothing was changed"),
        true,
    );
}

/// Ends a forward Promotion that must not deploy over what the environment runs (an older
/// version, or this version built from other artifacts): `Failed`, before any change, at once, so
/// re-created history neither waits for approvals nor holds the resource's queue.
fn refuse_forward(d: &mut Draft<'_, '_>, reason: &str, why: String) {
    d.status.gates =
        vec![kiln_api::promotion::GateResult { name: gates::name::NEWER.into(), ok: false, message: why.clone() }];
    d.status.gate_summary = Some("refused: newer".into());
    d.terminate(PromotionPhase::Failed, reason, format!("not deployed: {why}; nothing was changed"), true);
}

pub(super) fn waiting(d: &mut Draft<'_, '_>) -> Option<Action> {
    let input = d.input;
    if input.spec.abort || input.deleting {
        let why = if input.deleting { "deleted" } else { "aborted" };
        d.terminate(PromotionPhase::Aborted, reason::ABORTED, format!("{why} before any change was made"), true);
        return None;
    }
    if let Some(by) = input.observed.preempted_by.as_deref() {
        d.terminate(
            PromotionPhase::Aborted,
            reason::SUPERSEDED,
            format!("superseded by rollback Promotion {by} before any change was made"),
            true,
        );
        return None;
    }
    let (Some(release), Some(env)) = (input.observed.release.as_ref(), input.observed.environment.as_ref()) else {
        let mut missing = Vec::new();
        if input.observed.release.is_none() {
            missing.push(format!("Release {} not found in this namespace", input.spec.release));
        }
        if input.observed.environment.is_none() {
            missing.push(format!("Environment {} not found", input.spec.environment));
        }
        let mut all = missing;
        all.extend(input.observed.problems.iter().map(ToString::to_string));
        let message = all.join("; ");
        if input.spec.rollback.is_some() {
            refuse_rollback(d, &message);
            return None;
        }
        d.status.gates = vec![kiln_api::promotion::GateResult {
            name: gates::name::VALIDATION.into(),
            ok: false,
            message: message.clone(),
        }];
        d.status.gate_summary = Some("waiting: validation".into());
        d.enter(PromotionPhase::WaitingForGates, reason::INVALID_SPEC, message);
        return None;
    };
    let mut problems: Vec<Problem> = input.observed.problems.clone();
    if input.spec.rollback.is_some() && !input.observed.release_was_good_here {
        problems.push(Problem::RollbackNotKnownGood {
            environment: input.spec.environment.clone(),
            release: input.spec.release.clone(),
        });
    }
    // A rollback restores a known-good Release and never rolls itself back on signals, so it
    // does not need the policy; a forward Promotion without its policy would bake unguarded.
    if let (PolicyState::Missing(name), None) = (&input.observed.policy, &input.spec.rollback) {
        problems.push(Problem::PolicyMissing { policy: name.clone(), environment: input.spec.environment.clone() });
    }
    let plan = match plan::resolve(release, env, input.spec.rollback.is_some()) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(Problem::Spec(e));
            None
        }
    };
    if input.spec.rollback.is_some() {
        // What stops this rollback fails it at once (it must never sit waiting, holding the
        // resource); nothing unrelated holds it up.
        let blocking: Vec<String> =
            problems.iter().filter(|p| plan.is_none() || p.blocks_rollback()).map(ToString::to_string).collect();
        if !blocking.is_empty() {
            refuse_rollback(d, &blocking.join("; "));
            return None;
        }
        problems.clear();
    }
    if input.spec.rollback.is_none()
        && problems.is_empty()
        && let RunningState::Runs(r) = &input.observed.running
    {
        match running::judge(&input.spec.environment, &release.service, &release.version, r, input.spec.downgrade) {
            Verdict::Older(why) => {
                refuse_forward(d, reason::OLDER_THAN_RUNNING, why);
                return None;
            }
            Verdict::VersionReused(why) => {
                refuse_forward(d, reason::VERSION_REUSED, why);
                return None;
            }
            Verdict::Deploy(_) => {}
        }
    }
    let mut gi = gate_input(input, &d.status, release, env);
    gi.problems = &problems;
    let report = gates::evaluate(&gi);
    d.status.gates = report.results.clone();
    d.status.gate_summary = Some(report.summary());
    if let Some(at) = report.recheck_at {
        d.requeue_at(at);
    }
    if report.failed(gates::name::UPSTREAM_HEALTH) || report.failed(gates::name::HEALTH) {
        d.requeue_in(UPSTREAM_HEALTH_RECHECK);
    }
    if gi.health == TargetHealth::NotRead {
        // The controller reads signals right away; look again soon rather than in 30 s.
        d.requeue_in(RETRY_SOON);
    }
    match (report.all_ok(), plan) {
        (true, Some(plan)) => {
            d.status.freeze_exception = report.freeze_exception.clone();
            d.status.started_at = Some(to_time(d.now()));
            // Which Release this deploys, exactly: from here on it is compared by UID and
            // digests, never by name.
            d.status.release = input.observed.release_identity.clone();
            // The signals as the deployment starts: a later read compares against them, so a
            // state change that settled before the start is not mistaken for a flap.
            if let (PolicyState::Found(policy), Some(obs)) = (&input.observed.policy, input.observed.signals.as_ref()) {
                let ev = signals::evaluate(policy, obs, d.now(), &[]);
                d.status.bake = Some(BakeStatus { signals: ev.signals, ..BakeStatus::default() });
            }
            let what = if input.spec.rollback.is_some() { "rolling back" } else { "deploying" };
            d.note(
                PromotionPhase::Deploying,
                reason::GATES_PASSED,
                format!(
                    "all gates passed; {what} {} {} to {} ({})",
                    release.service, release.version, input.spec.environment, plan.summary
                ),
                false,
            );
            if let Some(x) = &report.freeze_exception {
                d.events.push(EventNote { warning: true, reason: reason::FREEZE_EXCEPTION.into(), message: x.clone() });
            }
            in_flight(d)
        }
        _ => {
            let phase = report.waiting_phase();
            let reason = if report.failed(gates::name::VALIDATION) { reason::INVALID_SPEC } else { reason::WAITING };
            d.enter(phase, reason, report.headline());
            None
        }
    }
}
