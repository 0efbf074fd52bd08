//! In flight: deploying, shifting traffic step by step, baking, hooks, the progress deadline,
//! and starting or continuing a rollback.

use jiff::{SignedDuration, Timestamp};
use kiln_api::promotion::{BakeStatus, InProgressStatus, RollbackStatus};
use kiln_api::{PromotionPhase, RollbackCause};

use super::draft::Draft;
use super::waiting::gate_input;
use super::watch::watch_signals;
use super::{Action, PREEMPTION_WAIT};
use crate::gates;
use crate::integrity;
use crate::observe::PolicyState;
use crate::plan::{self, HookPoint, Plan};
use crate::reason;
use crate::tenancy;
use crate::time::{human_duration, to_time};

/// Starts a rollback: RollingBack with the cause, or straight to a terminal phase if nothing
/// was changed in AWS yet.
pub(super) fn begin_rollback(
    d: &mut Draft<'_, '_>,
    cause: RollbackCause,
    signal: Option<String>,
    message: String,
    breach_started_at: Option<Timestamp>,
) -> Option<Action> {
    if d.status.previous.is_none() {
        let (phase, reason) = if cause == RollbackCause::Abort {
            (PromotionPhase::Aborted, reason::ABORTED)
        } else {
            (PromotionPhase::Failed, reason::FAILED)
        };
        d.status.rollback = None;
        d.terminate(phase, reason, format!("{message}; nothing had changed in AWS"), true);
        return None;
    }
    d.status.rollback = Some(RollbackStatus {
        cause,
        signal,
        message: message.clone(),
        breach_started_at: breach_started_at.map(to_time),
        detected_at: to_time(d.now()),
        completed_at: None,
        breach_to_restore_millis: None,
    });
    let reason = match cause {
        RollbackCause::Abort => reason::ABORT_REQUESTED,
        RollbackCause::Superseded => reason::SUPERSEDED,
        RollbackCause::HookFailed => reason::HOOK_FAILED,
        RollbackCause::DeploymentFailed => reason::DEPLOYMENT_FAILED,
        RollbackCause::Alarm | RollbackCause::Metric | RollbackCause::ErrorBudget => reason::BREACH_DETECTED,
        RollbackCause::SignalsUnreadable => reason::SIGNAL_READ_FAILING,
        RollbackCause::ProgressDeadline => reason::PROGRESS_DEADLINE_EXCEEDED,
    };
    d.note(PromotionPhase::RollingBack, reason, format!("{message}; restoring the previous state"), true);
    Some(Action::Restore)
}

pub(super) fn rolling_back(d: &mut Draft<'_, '_>) -> Option<Action> {
    // Restore is idempotent; keep asking until it reports done. Nothing may block it.
    Some(Action::Restore).filter(|_| d.status.previous.is_some()).or_else(|| {
        d.terminate(PromotionPhase::RolledBack, reason::ROLLED_BACK, "nothing to restore".into(), true);
        None
    })
}

pub(super) fn in_flight(d: &mut Draft<'_, '_>) -> Option<Action> {
    let input = d.input;
    let rollback_promotion = input.spec.rollback.is_some();

    // Human and takeover triggers first: they never wait, and restoring needs only the
    // self-contained snapshot (neither the Release nor the Environment).
    if input.spec.abort || input.deleting {
        let why = if input.deleting { "the Promotion is being deleted" } else { "aborted by a person" };
        return begin_rollback(d, RollbackCause::Abort, None, why.into(), None);
    }
    if let Some(by) = input.observed.preempted_by.as_deref() {
        return begin_rollback(
            d,
            RollbackCause::Superseded,
            None,
            format!("superseded by rollback Promotion {by}"),
            None,
        );
    }

    // Watch the signals once the new version may have affected anything. A rollback Promotion
    // records them but never undoes itself: the alarm that caused it is usually still red.
    if let Some(action) = watch_signals(d, !rollback_promotion) {
        return Some(action);
    }
    if d.status.phase == PromotionPhase::RollingBack || d.status.phase.is_terminal() {
        return None;
    }

    // A Release deleted and created again under the same name mid-deployment is another
    // Release: its artifacts are not the ones this deployment started with.
    if let (Some(was), Some(now)) = (d.status.release.as_ref(), input.observed.release_identity.as_ref())
        && !integrity::same(was, now)
    {
        let why = format!(
            "Release {} was replaced during the deployment: it started with {}, the Release of that name is now {}; it cannot be driven forward",
            input.spec.release,
            integrity::describe(was),
            integrity::describe(now)
        );
        return begin_rollback(d, RollbackCause::DeploymentFailed, None, why, None);
    }
    let (Some(release), Some(env)) = (input.observed.release.as_ref(), input.observed.environment.as_ref()) else {
        let missing = if input.observed.release.is_none() {
            format!("Release {}", input.spec.release)
        } else {
            format!("Environment {}", input.spec.environment)
        };
        return begin_rollback(
            d,
            RollbackCause::DeploymentFailed,
            None,
            format!("{missing} was deleted during the deployment; it cannot be driven forward"),
            None,
        );
    };
    let plan = match plan::resolve(release, env, rollback_promotion) {
        Ok(p) => p,
        Err(e) => return begin_rollback(d, RollbackCause::DeploymentFailed, None, format!("invalid plan: {e}"), None),
    };

    // A rollback Promotion takes over from forward Promotions in flight: they restore their own
    // snapshot within seconds. If one cannot (its restore keeps failing), take over anyway.
    if rollback_promotion
        && d.status.previous.is_none()
        && let Some(a) = input.observed.ahead.iter().find(|a| a.phase.is_in_flight() && !a.rollback)
    {
        let started = d.status.started_at.as_ref().map(|t| t.0).unwrap_or(d.now());
        let deadline = started.checked_add(PREEMPTION_WAIT).unwrap_or(started);
        if d.now() < deadline {
            d.status.message =
                Some(format!("waiting for {} to restore its previous state before rolling back", a.name));
            d.requeue_at(deadline.min(d.now().checked_add(SignedDuration::from_secs(1)).unwrap_or(deadline)));
            return None;
        }
        let last = d.status.timeline.last().map(|t| t.reason.as_str());
        if last != Some(reason::TAKING_OVER) {
            d.note(
                PromotionPhase::Deploying,
                reason::TAKING_OVER,
                format!("{} did not restore within {}; rolling back over it", a.name, human_duration(PREEMPTION_WAIT)),
                true,
            );
        }
    }

    if d.status.previous.is_none() {
        d.enter(PromotionPhase::Deploying, reason::DEPLOYING, "capturing the state a rollback would restore".into());
        return Some(Action::CaptureSnapshot);
    }
    if d.status.deployed.is_none() {
        // The last look before the first AWS write: what the Release names, and what only the
        // snapshot resolved (the listener or rule, the target groups), must be this namespace's.
        let mut resources = tenancy::release_resources(release, &input.spec.environment, env);
        resources.extend(d.status.previous.as_ref().map(tenancy::snapshot_resources).unwrap_or_default());
        if let Some(problem) = tenancy::problem(input.context.namespace, &input.spec.environment, env, &resources) {
            d.status.rollback = None;
            d.terminate(
                PromotionPhase::Failed,
                reason::TENANCY_REFUSED,
                format!("{problem}; nothing had changed in AWS"),
                true,
            );
            return None;
        }
        // Nothing ships unpinned beside the Release (the snapshot read the task definition).
        if let Some(problem) = integrity::container_problem(
            &input.spec.environment,
            env.container_images,
            release,
            d.status.previous.as_ref(),
        ) {
            d.status.rollback = None;
            d.terminate(
                PromotionPhase::Failed,
                reason::CONTAINER_IMAGE_REFUSED,
                format!("{problem}; nothing had changed in AWS"),
                true,
            );
            return None;
        }
        let what = format!("preparing {} {} without traffic", release.service, release.version);
        return forward(d, Action::Prepare, what);
    }
    if plan.hooks.contains(&HookPoint::PreTraffic)
        && !d.status.hooks_passed.iter().any(|h| h == HookPoint::PreTraffic.as_str())
    {
        return forward(d, Action::RunHook(HookPoint::PreTraffic), "running the preTraffic hook".into());
    }
    let last = plan.steps.len().saturating_sub(1);
    let Some(step) = d.status.step.clone() else {
        return shift(d, &plan, 0);
    };
    let current = usize::try_from(step.index).unwrap_or(0);
    if current < last {
        let applied = step.applied_at.as_ref().map(|t| t.0).unwrap_or(d.now());
        let ends = applied.checked_add(plan.step_bake).unwrap_or(applied);
        if !bake_done(d, ends, applied, &format!("step {}/{} at {}%", current + 1, plan.steps.len(), step.weight)) {
            return None;
        }
        return shift(d, &plan, current + 1);
    }
    if plan.hooks.contains(&HookPoint::PostTraffic)
        && !d.status.hooks_passed.iter().any(|h| h == HookPoint::PostTraffic.as_str())
    {
        return forward(d, Action::RunHook(HookPoint::PostTraffic), "running the postTraffic hook".into());
    }
    let full = d.status.full_traffic_at.as_ref().map(|t| t.0).unwrap_or(d.now());
    let ends = full.checked_add(plan.bake).unwrap_or(full);
    if !plan.bake.is_zero() && !bake_done(d, ends, full, "all traffic") {
        return None;
    }
    let caveat = d.inconclusive.as_ref().map(|w| format!(" (inconclusive signals: {w})")).unwrap_or_default();
    let what = format!("bake passed{caveat}; making the new version primary and retiring the old one");
    forward(d, Action::Finalize, what)
}

/// Moves to step `index` (see [`forward`]).
fn shift(d: &mut Draft<'_, '_>, plan: &Plan, index: usize) -> Option<Action> {
    let weight = plan.steps.get(index).copied().unwrap_or(100);
    let version = d.input.observed.release.as_ref().map(|r| r.version.clone()).unwrap_or_default();
    forward(d, Action::ShiftTraffic { step: index, weight }, format!("shifting {weight}% of traffic to {version}"))
}

/// Returns a forward action (one that changes AWS toward the new version) unless a freeze
/// began since the gates passed: freezes are re-checked before every such step. While held, the
/// signals are still watched and a breach still rolls back.
pub(super) fn forward(d: &mut Draft<'_, '_>, action: Action, what: String) -> Option<Action> {
    let input = d.input;
    let (Some(release), Some(env)) = (input.observed.release.as_ref(), input.observed.environment.as_ref()) else {
        return None;
    };
    let gi = gate_input(input, &d.status, release, env);
    if let Some((why, until)) = gates::traffic_hold(&gi) {
        let phase = d.status.phase;
        if d.status.timeline.last().map(|t| t.reason.as_str()) != Some(reason::HOLDING) {
            d.note(phase, reason::HOLDING, why, true);
        } else {
            d.status.message = Some(why);
        }
        if let Some(at) = until {
            d.requeue_at(at);
        }
        watch_requeue(d);
        return None;
    }
    let reason = if action == Action::Finalize { reason::FINALIZING } else { reason::DEPLOYING };
    d.enter(PromotionPhase::Deploying, reason, what);
    Some(action)
}

fn watch_requeue(d: &mut Draft<'_, '_>) {
    if let PolicyState::Found(p) = &d.input.observed.policy {
        let interval = crate::duration::parse("interval", &p.interval).unwrap_or(SignedDuration::from_secs(2));
        d.requeue_in(interval);
    }
}

/// Bakes until `ends`; true once the bake is over and a signal read after its end was green.
fn bake_done(d: &mut Draft<'_, '_>, ends: Timestamp, started: Timestamp, what: &str) -> bool {
    let bake = BakeStatus {
        started_at: Some(to_time(started)),
        ends_at: Some(to_time(ends)),
        signals: d.status.bake.as_ref().map(|b| b.signals.clone()).unwrap_or_default(),
        read_failing_since: d.status.bake.as_ref().and_then(|b| b.read_failing_since.clone()),
    };
    d.status.bake = Some(bake);
    if d.now() < ends {
        d.enter(
            PromotionPhase::Baking,
            reason::BAKING,
            format!("baking {what} until {}", ends.strftime("%Y-%m-%dT%H:%M:%SZ")),
        );
        d.requeue_at(ends);
        watch_requeue(d);
        return false;
    }
    if let PolicyState::Found(_) = &d.input.observed.policy {
        let fresh = d.input.observed.signals.as_ref().is_some_and(|s| s.observed_at >= ends);
        if !fresh {
            d.enter(
                PromotionPhase::Baking,
                reason::BAKING,
                format!(
                    "bake of {what} ended; waiting for a signal read after {}",
                    ends.strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
            );
            watch_requeue(d);
            return false;
        }
    }
    true
}

/// Records that `action` is still in progress in AWS; for a deployment step past the progress
/// deadline (the Release's, else the Environment's, else 10m) starts the rollback and returns
/// true. A restore and the evidence archive never give up, and a hook has its own timeout.
pub(super) fn past_progress_deadline(d: &mut Draft<'_, '_>, action: &Action, pending: &str) -> bool {
    let label = match action {
        Action::CaptureSnapshot => "captureSnapshot",
        Action::Prepare => "prepare",
        Action::ShiftTraffic { .. } => "shiftTraffic",
        Action::Finalize => "finalize",
        Action::RunHook(_) | Action::Restore | Action::ArchiveEvidence => return false,
    };
    let now = d.now();
    let since = match d.status.in_progress.as_ref() {
        Some(p) if p.action == label => p.since.0,
        _ => {
            d.status.in_progress = Some(InProgressStatus { action: label.into(), since: to_time(now) });
            now
        }
    };
    let input = d.input;
    let deadline = input
        .observed
        .release
        .as_ref()
        .and_then(|r| r.progress_deadline.clone())
        .or_else(|| input.observed.environment.as_ref().map(|e| e.progress_deadline.clone()))
        .and_then(|v| crate::duration::parse("progressDeadline", &v).ok())
        .unwrap_or(SignedDuration::from_mins(10));
    if now.duration_since(since) < deadline {
        return false;
    }
    d.status.in_progress = None;
    let message = format!("{label} still in progress after {}: {pending}", human_duration(deadline));
    let _ = begin_rollback(d, RollbackCause::ProgressDeadline, None, message, None);
    true
}
