//! The observe step: everything a Promotion's decision needs from outside it, read from the
//! reflector caches (Release, Environments, policy, queue, upstream, freezes) and, for the
//! signals, from AWS, into the core's owned [`Observations`]. Validation is the core's
//! (`validate::promotion_problems`); what cannot be read becomes a typed [`Problem`] too.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kiln_api::Promotion;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::PromotionStatus;
use kiln_api::rollback_policy::RollbackPolicySpec;
use kiln_aws::cloud::{TargetError, TargetOf};
use kiln_aws::credentials::EnvironmentAws;
use kiln_aws::{AwsError, ErrorClass};
use kiln_core::Problem;
use kiln_core::machine::{Observations, PolicyState};
use kiln_core::observe::{ClusterView, PromotionView, ReleaseView, ScopedWindow};
use kiln_core::running::RunningState;
use kiln_core::signals::{self, SignalObservations};
use kiln_core::{integrity, target, validate};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;

/// Reads everything the decision needs from the caches and, for the signals, from AWS.
pub(super) async fn observe(ctx: &Context, p: &Promotion, status: &PromotionStatus) -> Observations {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let stores = &ctx.stores;
    let env_objs = stores.environments.state();
    let environments: BTreeMap<String, EnvironmentSpec> =
        env_objs.iter().map(|e| (e.name_any(), e.spec.clone())).collect();
    let release = stores.releases.get(&ObjectRef::new(&p.spec.release).within(&ns));
    let environment = environments.get(&p.spec.environment).cloned();

    let policy_name = environment.as_ref().and_then(|e| e.rollback_policy_ref.clone());
    let policy = policy_name.as_ref().and_then(|name| policy_in(ctx, &ns, name));
    let mut problems = validate::promotion_problems(
        &ns,
        &p.spec.environment,
        release.as_ref().map(|r| (p.spec.release.as_str(), &r.spec)),
        &environments,
        policy_name.as_deref().zip(policy.as_ref()),
    );

    // The cluster view: queue, preemption, upstream Promotions, freezes.
    let releases = stores.releases.state();
    let promotions = stores.promotions.state();
    let freeze_objs = stores.freezes.state();
    let mut freezes = Vec::new();
    for w in freeze_objs.iter() {
        let wns = w.metadata.namespace.clone().unwrap_or_default();
        if wns != ctx.controller_namespace && wns != ns {
            continue;
        }
        match ctx.freeze_cache.get(w) {
            Ok(window) => freezes.push(ScopedWindow { namespace: wns, window }),
            // An invalid window cannot be evaluated: say so on every Promotion it could cover
            // rather than deploying as if it did not exist.
            Err(message) if w.spec.environments.is_empty() || w.spec.environments.contains(&p.spec.environment) => {
                problems.push(Problem::FreezeWindow { namespace: wns, name: w.name_any(), message })
            }
            Err(_) => {}
        }
    }
    // The AWS resource each Promotion drives (the queue's key): for the unfinished ones of every
    // namespace, since namespaces share resources; a finished one holds nothing.
    let unwritten = PromotionStatus::default();
    let target_of = |o: &Promotion| {
        let status = o.status.as_ref().unwrap_or(&unwritten);
        if status.previous.is_some() || status.target.is_some() {
            // Recorded by its own reconciles (re-derived there when an input changes).
            return target::of_promotion(status, None, &o.spec.environment, None);
        }
        // Not reconciled yet: what its Release resolves to now, so two created at once see
        // each other.
        let ons = o.metadata.namespace.as_deref().unwrap_or_default();
        let rel = stores.releases.get(&ObjectRef::new(&o.spec.release).within(ons));
        target::of_promotion(
            status,
            rel.as_ref().map(|r| &r.spec),
            &o.spec.environment,
            environments.get(&o.spec.environment),
        )
    };
    // Another namespace's Promotion that has not started holds a resource only if its namespace
    // is given that resource (the Environment's spec.tenants): otherwise anyone could block
    // another team's service by naming it. One in flight always holds it.
    let may_hold = |o: &Promotion, target: &str| {
        let ons = o.metadata.namespace.as_deref().unwrap_or_default();
        ons == ns
            || o.status.as_ref().is_some_and(|s| s.phase.is_in_flight() || s.previous.is_some())
            || environments.get(&o.spec.environment).is_some_and(|e| {
                let resource = kiln_core::tenancy::Resource { kind: "AWS resource", arn: target.to_string() };
                kiln_core::tenancy::refused(ons, e.tenants.as_deref(), &[resource]).is_empty()
            })
    };
    let in_view: Vec<(&Arc<Promotion>, Option<String>)> = promotions
        .iter()
        .filter(|o| o.metadata.namespace.as_deref() == Some(ns.as_str()) || crate::index::is_live(o))
        .map(|o| {
            let key = if crate::index::is_live(o) { target_of(o).filter(|t| may_hold(o, t)) } else { None };
            (o, key)
        })
        .collect();
    let target =
        target::of_promotion(status, release.as_ref().map(|r| &r.spec), &p.spec.environment, environment.as_ref());
    let env_refs: BTreeMap<String, &EnvironmentSpec> = environments.iter().map(|(k, v)| (k.clone(), v)).collect();
    let view = ClusterView {
        controller_namespace: &ctx.controller_namespace,
        environments: env_refs,
        releases: releases
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
            .map(|r| ReleaseView {
                namespace: r.metadata.namespace.as_deref().unwrap_or_default(),
                name: r.metadata.name.as_deref().unwrap_or_default(),
                spec: &r.spec,
            })
            .collect(),
        promotions: in_view
            .iter()
            .map(|(o, key)| PromotionView {
                namespace: o.metadata.namespace.as_deref().unwrap_or_default(),
                name: o.metadata.name.as_deref().unwrap_or_default(),
                created: o.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH),
                spec: &o.spec,
                status: o.status.as_ref(),
                target: key.as_deref(),
            })
            .collect(),
        freezes,
    };
    let me = PromotionView {
        namespace: &ns,
        name: p.metadata.name.as_deref().unwrap_or_default(),
        created: p.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH),
        spec: &p.spec,
        status: Some(status),
        target: target.as_deref(),
    };
    let ahead = view.ahead_of(&me);
    let preempted_by = view.preempted_by(&me);
    let release_identity =
        release.as_ref().and_then(|r| r.metadata.uid.as_deref().map(|uid| integrity::identity(uid, &r.spec)));
    let release_was_good_here =
        view.release_was_good_here(&ns, &p.spec.release, &p.spec.environment, release_identity.as_ref());
    // Created by kiln for a Release of this name that has been deleted since: not this one's.
    if status.release.is_none()
        && let Some(now) = release_identity.as_ref()
        && let Some(was) = p.created_for().filter(|was| *was != now.uid)
    {
        problems.push(Problem::ReleaseReplaced {
            release: p.spec.release.clone(),
            was: was.to_string(),
            now: now.uid.clone(),
        });
    }
    let freezes = view.freezes_for(&ns);

    let terminal = status.phase.is_terminal();
    let waiting = !terminal && !status.phase.is_in_flight();

    // Upstream health: the upstream environments' own policies, read now (only while waiting:
    // the gate is evaluated before deploying).
    let mut upstream_health: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    if waiting
        && let Some(env) = &environment
        && env.promotion.require_upstream_green
    {
        for up in &env.upstream {
            let Some(up_env) = environments.get(up) else { continue };
            let health = match up_env.rollback_policy_ref.as_ref() {
                None => Ok(()),
                Some(name) => match policy_in(ctx, &ns, name) {
                    None => Err(format!("RollbackPolicy {name} not found in {ns}")),
                    Some(pol) => {
                        match read_signals(ctx, &EnvironmentAws::for_namespace(up, up_env, &ns), &pol, None).await {
                            Ok(obs) => signals::current_health(&pol, &obs),
                            Err(e) => Err(format!("alarms cannot be read: {e}")),
                        }
                    }
                },
            };
            upstream_health.insert(up.clone(), health);
        }
    }
    let upstream = view.upstream_of(&me, |up| upstream_health.get(up).cloned());

    // What the environment runs now, for a forward Promotion about to deploy: read from AWS, since
    // deleted Promotions (or a cluster rebuilt from Git) leave no record of it in the cluster.
    let mut running = RunningState::NotRead;
    if waiting
        && p.spec.rollback.is_none()
        && ahead.is_empty()
        && problems.is_empty()
        && let (Some(r), Some(env)) = (&release, &environment)
    {
        let aws = EnvironmentAws::for_namespace(&p.spec.environment, env, &ns);
        running = read_running(ctx, p, &aws, r, release_identity.as_ref().map(|id| id.uid.as_str())).await;
    }

    // The target environment's signals: the health gate before deploying, the bake after.
    let mut signal_obs = None;
    let mut signal_read_error = None;
    if !terminal && let (Some(env), Some(pol)) = (&environment, &policy) {
        let since = status.started_at.as_ref().map(|t| t.0);
        // During a bake, read where the snapshot was taken (the account that was changed).
        let current = EnvironmentAws::for_namespace(&p.spec.environment, env, &ns);
        let aws = match &status.previous {
            Some(s) => EnvironmentAws::for_restore(s, Some(&current)).unwrap_or(current),
            None => current,
        };
        match read_signals(ctx, &aws, pol, since).await {
            Ok(obs) => {
                tracing::trace!(alarms = ?obs.alarms, observed_at = %obs.observed_at, "signals read");
                signal_obs = Some(obs)
            }
            Err(e) => {
                tracing::warn!(error = %e, "signal read failed");
                // In flight, the decision core bounds how long it may go on (the Environment's
                // bake.signalReadFailure); before deploying, a refusal is a problem to fix.
                if status.phase.is_in_flight() {
                    ctx.metrics.signal_read_failed(&p.spec.environment, e.metric_label());
                    signal_read_error = Some(format!("{e} (account {}, role {})", aws.account_id, aws.role_arn));
                }
                if e.class() == ErrorClass::SpecWrong {
                    problems.push(Problem::SignalsUnreadable {
                        policy: policy_name.clone().unwrap_or_default(),
                        environment: p.spec.environment.clone(),
                        account: aws.account_id.clone(),
                        role: aws.role_arn.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    drop(view);

    Observations {
        release: release.map(|r| r.spec.clone()),
        release_identity,
        environment,
        policy: match (policy, policy_name) {
            (Some(p), _) => PolicyState::Found(Box::new(p)),
            (None, Some(name)) => PolicyState::Missing(name),
            (None, None) => PolicyState::NotRequired,
        },
        problems,
        upstream,
        target,
        ahead,
        preempted_by,
        release_was_good_here,
        running,
        freezes,
        signals: signal_obs,
        signal_read_error,
    }
}

/// What the Promotion's target runs now ([`kiln_core::running`]). AWS refusing to say (the
/// resource is missing, access denied, the spec does not resolve) is `Unknown`: the deployment
/// itself reports that, as before; a read that may succeed later is `Unreadable` (the gate waits).
async fn read_running(
    ctx: &Context,
    p: &Promotion,
    aws: &EnvironmentAws,
    release: &kiln_api::Release,
    release_uid: Option<&str>,
) -> RunningState {
    let name = p.metadata.name.as_deref().unwrap_or_default();
    let uid = p.metadata.uid.as_deref().unwrap_or_default();
    let of = TargetOf::Release { release: &release.spec, environment: &p.spec.environment, attempt: 0, release_uid };
    let result = match ctx.cloud.traffic(aws, name, uid, of).await {
        Ok(target) => target.running().await,
        Err(TargetError::Spec(m)) => return RunningState::Unknown(m),
        Err(TargetError::Aws(e)) => Err(e),
    };
    match result {
        Ok(state) => state,
        Err(e) if e.class() == ErrorClass::SpecWrong => RunningState::Unknown(e.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "reading what the environment runs failed");
            RunningState::Unreadable(e.to_string())
        }
    }
}

fn policy_in(ctx: &Context, ns: &str, name: &str) -> Option<RollbackPolicySpec> {
    ctx.stores.policies.get(&ObjectRef::new(name).within(ns)).map(|p| p.spec.clone())
}

async fn read_signals(
    ctx: &Context,
    aws: &EnvironmentAws,
    policy: &RollbackPolicySpec,
    since: Option<Timestamp>,
) -> Result<SignalObservations, AwsError> {
    let reader = ctx.cloud.signals(aws).await?;
    reader.read(policy, since).await
}
