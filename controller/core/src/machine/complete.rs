//! Folding an action's outcome into the status.

use kiln_api::promotion::{DeployedResources, Snapshot, StepStatus};
use kiln_api::{PromotionPhase, RollbackCause};

use super::draft::Draft;
use super::in_flight::{begin_rollback, past_progress_deadline};
use super::{
    ARCHIVE_ATTEMPTS_ON_DELETE, ARCHIVE_RETRY, Action, Decision, EventNote, Outcome, PromotionInput, RETRY_SOON,
};
use crate::plan;
use crate::reason;
use crate::time::{human_duration, to_time};

/// Folds the result of an action into the status. `input.status` must be the status the
/// [`decide`] that returned `action` produced (not the one before it), so that what `decide`
/// recorded (e.g. the rollback cause) is kept.
pub fn complete(input: &PromotionInput<'_>, action: &Action, outcome: Outcome) -> Decision {
    let mut d = Draft::new(input);
    if !matches!(outcome, Outcome::InProgress(_)) {
        d.status.in_progress = None;
    }
    match (action, outcome) {
        (_, Outcome::InProgress(msg)) => {
            // Past the deadline the rollback is recorded; the next decide emits the Restore.
            if !past_progress_deadline(&mut d, action, &msg) {
                d.status.message = Some(msg);
                d.requeue_in(RETRY_SOON);
            }
        }
        (Action::ArchiveEvidence, Outcome::Done) => {
            if let Some(a) = d.status.evidence_archive.as_mut() {
                a.archived_at = Some(to_time(input.now));
                a.failed_attempts = None;
                let uri = a.uri();
                d.events.push(EventNote {
                    warning: false,
                    reason: reason::EVIDENCE_ARCHIVED.into(),
                    message: format!(
                        "evidence sha256:{} written to {uri}",
                        d.status.evidence_sha256.as_deref().unwrap_or_default()
                    ),
                });
            }
        }
        (Action::ArchiveEvidence, Outcome::Failed(msg)) => {
            // The deployment is over and stays as it ended; only the record waits.
            let mut failed = 0;
            let mut uri = String::new();
            if let Some(a) = d.status.evidence_archive.as_mut() {
                failed = a.failed_attempts.unwrap_or(0).saturating_add(1);
                a.failed_attempts = Some(failed);
                uri = a.uri();
            }
            // A deletion waits for the record, but not forever (see `ARCHIVE_ATTEMPTS_ON_DELETE`).
            let (retry, when) = if input.deleting {
                (
                    RETRY_SOON,
                    format!("the Promotion is being deleted: attempt {failed} of {ARCHIVE_ATTEMPTS_ON_DELETE}"),
                )
            } else {
                (ARCHIVE_RETRY, "retrying every minute".to_string())
            };
            let message = format!("evidence not archived to {uri} yet: {msg}; {when}");
            d.events.push(EventNote {
                warning: true,
                reason: reason::EVIDENCE_ARCHIVE_FAILED.into(),
                message: message.clone(),
            });
            d.status.message = Some(message);
            d.requeue_in(retry);
        }
        (Action::Restore, Outcome::Failed(msg)) => {
            // Never give up on a restore; say so loudly and try again.
            d.events.push(EventNote {
                warning: true,
                reason: reason::RESTORE_FAILED.into(),
                message: format!("restore failed: {msg}; retrying"),
            });
            d.status.message = Some(format!("restore failed: {msg}; retrying"));
            d.requeue_in(RETRY_SOON);
        }
        (Action::RunHook(point), Outcome::Failed(msg)) => {
            // The next decide emits the Restore; complete only records.
            let _ = begin_rollback(
                &mut d,
                RollbackCause::HookFailed,
                Some(point.as_str().into()),
                format!("{} hook failed: {msg}", point.as_str()),
                None,
            );
        }
        (_, Outcome::Failed(msg)) => {
            let _ = begin_rollback(
                &mut d,
                RollbackCause::DeploymentFailed,
                None,
                format!("{} failed: {msg}", action.metric_label()),
                None,
            );
        }
        (Action::CaptureSnapshot, Outcome::Snapshot(mut s)) => {
            s.captured_at.get_or_insert_with(|| to_time(input.now));
            let phase = d.status.phase;
            d.note(phase, reason::SNAPSHOT_CAPTURED, describe_snapshot(&s), false);
            d.status.previous = Some(*s);
        }
        (Action::Prepare, Outcome::Prepared(r)) => {
            let phase = d.status.phase;
            d.note(phase, reason::PREPARED, describe_deployed(&r), false);
            d.status.deployed = Some(r);
        }
        (Action::RunHook(point), Outcome::Done) => {
            if !d.status.hooks_passed.iter().any(|h| h == point.as_str()) {
                d.status.hooks_passed.push(point.as_str().into());
            }
            let phase = d.status.phase;
            d.note(phase, reason::HOOK_PASSED, format!("{} hook passed", point.as_str()), false);
        }
        (Action::ShiftTraffic { step, weight }, Outcome::Done) => {
            let total = input
                .observed
                .release
                .as_ref()
                .zip(input.observed.environment.as_ref())
                .and_then(|(r, e)| plan::resolve(r, e, input.spec.rollback.is_some()).ok())
                .map(|p| p.steps.len())
                .unwrap_or(1);
            d.status.step = Some(StepStatus {
                index: i32::try_from(*step).unwrap_or(i32::MAX),
                weight: *weight,
                total: i32::try_from(total).unwrap_or(i32::MAX),
                applied_at: Some(to_time(input.now)),
            });
            if *weight >= 100 {
                d.status.full_traffic_at = Some(to_time(input.now));
            }
            let version = input.observed.release.as_ref().map(|r| r.version.as_str()).unwrap_or("the new version");
            let phase = d.status.phase;
            d.note(
                phase,
                reason::TRAFFIC_SHIFTED,
                format!("{weight}% of traffic on {version} (step {}/{total})", step + 1),
                false,
            );
        }
        (Action::Finalize, Outcome::Done) => {
            let message = if input.spec.rollback.is_some() {
                format!("{} rolled back to release {}", input.spec.environment, input.spec.release)
            } else {
                format!("release {} succeeded in {}", input.spec.release, input.spec.environment)
            };
            d.terminate(PromotionPhase::Succeeded, reason::SUCCEEDED, message, false);
        }
        (Action::Restore, Outcome::Done) => {
            let mut message = "previous state restored".to_string();
            if let Some(rb) = d.status.rollback.as_mut() {
                rb.completed_at = Some(to_time(input.now));
                let from = rb.breach_started_at.as_ref().map(|t| t.0).unwrap_or(rb.detected_at.0);
                rb.breach_to_restore_millis =
                    Some(i64::try_from(input.now.duration_since(from).as_millis().max(0)).unwrap_or(i64::MAX));
                let took = input.now.duration_since(rb.detected_at.0);
                message =
                    format!("previous state restored {} after detection (cause: {})", human_duration(took), rb.cause);
            }
            d.terminate(PromotionPhase::RolledBack, reason::ROLLED_BACK, message, true);
        }
        (action, outcome) => {
            // An outcome that does not fit the action is a controller bug; record it, change nothing.
            d.events.push(EventNote {
                warning: true,
                reason: reason::UNEXPECTED_OUTCOME.into(),
                message: format!("{} reported {outcome:?}; ignored", action.metric_label()),
            });
        }
    }
    d.finish(None)
}

fn describe_snapshot(s: &Snapshot) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &s.ecs {
        if let Some(td) = &e.task_definition {
            parts.push(format!("task definition {td}"));
        }
        if let Some(ts) = &e.primary_task_set {
            parts.push(format!("primary task set {ts}"));
        }
        if !e.listener_weights.is_empty() {
            let w: Vec<String> =
                e.listener_weights.iter().map(|w| format!("{}={}", w.target_group_arn, w.weight)).collect();
            parts.push(format!("weights {}", w.join(",")));
        }
    }
    if let Some(l) = &s.lambda {
        parts.push(format!("alias at version {}", l.version));
    }
    if parts.is_empty() {
        "previous state captured".into()
    } else {
        format!("previous state captured: {}", parts.join("; "))
    }
}

fn describe_deployed(r: &DeployedResources) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &r.task_definition {
        parts.push(format!("task definition {t}"));
    }
    if let Some(t) = &r.task_set {
        parts.push(format!("task set {t}"));
    }
    if let Some(v) = &r.lambda_version {
        parts.push(format!("version {v}"));
    }
    if let Some(c) = &r.code_deploy_deployment {
        parts.push(format!("deployment {c}"));
    }
    format!("new version ready without traffic: {}", parts.join("; "))
}
