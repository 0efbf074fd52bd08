//! The Promotion state machine.
//!
//! [`decide`] is a pure function from what kiln knows (spec, status, observations, now) to the
//! next status and at most one action. The controller executes the action, reports the result
//! through [`complete`] (also pure), writes the status and decides again. One action per step
//! keeps every step idempotent and crash-safe: after a restart the last written status says
//! exactly which step to (re)do, and every action is safe to repeat.
//!
//! ```text
//! Queued / WaitingForGates / WaitingForApproval / Frozen ──gates pass──▶ Deploying
//! Deploying: CaptureSnapshot → Prepare → [preTraffic hook] → ShiftTraffic(step 0)
//! Baking (step bake) ─▶ ShiftTraffic(step i+1) … 100% ─▶ [postTraffic hook] ─▶ Baking (bake)
//! Baking ─bake ends, signals green─▶ Finalize ─▶ Succeeded
//! breach | abort | hook failure | failed step ─▶ RollingBack ─Restore─▶ RolledBack
//! ```

use jiff::{SignedDuration, Timestamp};
use kiln_api::PromotionPhase;
use kiln_api::promotion::{DeployedResources, PromotionSpec, PromotionStatus, Snapshot};

pub use crate::observe::{Observations, PolicyState};
use crate::plan::HookPoint;
use crate::reason;
use crate::time::to_time;

mod complete;
mod conditions;
mod draft;
mod in_flight;
mod waiting;
mod watch;

pub use complete::complete;
pub use conditions::set_condition;
use draft::Draft;
use in_flight::{in_flight, rolling_back};
use waiting::waiting;

/// How soon to look again while an action is in progress elsewhere (CodeDeploy, a hook) or a
/// restore failed.
pub const RETRY_SOON: SignedDuration = SignedDuration::from_secs(5);
/// How long a rollback Promotion waits for an in-flight forward Promotion to restore before it
/// takes over anyway.
pub const PREEMPTION_WAIT: SignedDuration = SignedDuration::from_secs(60);
/// How often to re-read upstream health while it blocks a Promotion.
pub const UPSTREAM_HEALTH_RECHECK: SignedDuration = SignedDuration::from_secs(30);

/// Facts for the evidence record that live outside the Promotion.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The Promotion's namespace.
    pub namespace: &'a str,
    /// The Promotion's name.
    pub promotion: &'a str,
    /// The Release's name.
    pub release_name: &'a str,
    /// The kiln version making decisions.
    pub controller_version: &'a str,
}

/// Everything [`decide`] needs: the Promotion, what the controller observed around it, and the
/// time.
#[derive(Debug, Clone)]
pub struct PromotionInput<'a> {
    /// The time of the decision.
    pub now: Timestamp,
    /// `metadata.generation` of the Promotion.
    pub generation: Option<i64>,
    /// The Promotion's spec.
    pub spec: &'a PromotionSpec,
    /// Its current status.
    pub status: &'a PromotionStatus,
    /// The Promotion is being deleted (it has a deletionTimestamp): traffic must be restored
    /// before the finalizer is removed.
    pub deleting: bool,
    /// Everything outside the Promotion, as observed.
    pub observed: &'a Observations,
    /// Facts for the evidence.
    pub context: Context<'a>,
}

/// Something the controller must do in AWS. Every action is idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record the exact state a rollback must restore (task definition, primary task set,
    /// listener weights, alias version and routing).
    CaptureSnapshot,
    /// Create the new version without traffic: register the task definition and the green task
    /// set at weight 0, or update the function code and publish a version checked against the
    /// artifact's hash.
    Prepare,
    /// Run a hook and wait for its result.
    RunHook(HookPoint),
    /// Move `weight` percent of traffic to the new version.
    ShiftTraffic {
        /// Zero-based step index.
        step: usize,
        /// Percentage on the new version.
        weight: i32,
    },
    /// Make the new version primary and retire the old one (after the bake).
    Finalize,
    /// Return AWS to `status.previous` and remove what this Promotion created.
    Restore,
    /// Write the finished Promotion's evidence record to `status.evidenceArchive` (S3, write
    /// once). Changes nothing in the deployment.
    ArchiveEvidence,
}

impl Action {
    /// A bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Action::CaptureSnapshot => "capture_snapshot",
            Action::Prepare => "prepare",
            Action::RunHook(_) => "run_hook",
            Action::ShiftTraffic { .. } => "shift_traffic",
            Action::Finalize => "finalize",
            Action::Restore => "restore",
            Action::ArchiveEvidence => "archive_evidence",
        }
    }

    /// Whether the action moves traffic toward the new version.
    pub fn is_forward_traffic(&self) -> bool {
        matches!(self, Action::ShiftTraffic { .. })
    }
}

/// What happened when the controller executed an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The snapshot was captured.
    Snapshot(Box<Snapshot>),
    /// The new version exists.
    Prepared(DeployedResources),
    /// The action finished.
    Done,
    /// The action is still running elsewhere (a CodeDeploy deployment, a hook); ask again.
    InProgress(String),
    /// The action failed for good (not a transient error: those are retried by the controller).
    Failed(String),
}

/// A Kubernetes Event to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What happened.
    pub message: String,
}

/// The result of [`decide`] or [`complete`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status to write (write only if it differs from the current one).
    pub status: PromotionStatus,
    /// The action to perform next, if any.
    pub action: Option<Action>,
    /// When to decide again if nothing changes before (None: wait for a watch event).
    pub requeue_after: Option<SignedDuration>,
    /// Events to emit.
    pub events: Vec<EventNote>,
}

/// Whether the finished Promotion's evidence record still has to be written to S3 (then the
/// Promotion is not at rest, and a retry waits for it). Not once kiln gave up on it because the
/// Promotion was deleted.
pub fn archive_pending(status: &PromotionStatus) -> bool {
    status.evidence_sha256.is_some()
        && status.evidence_archive.as_ref().is_some_and(|a| a.archived_at.is_none() && a.abandoned_at.is_none())
}

/// How long to wait before writing the evidence record again after S3 refused it.
pub const ARCHIVE_RETRY: SignedDuration = SignedDuration::from_secs(60);
/// Failed writes of the evidence record in a row after which a deletion stops waiting for it
/// (retried every [`RETRY_SOON`] while the Promotion is being deleted).
pub const ARCHIVE_ATTEMPTS_ON_DELETE: u32 = 3;

/// Decides the next status and action.
pub fn decide(input: &PromotionInput<'_>) -> Decision {
    let mut d = Draft::new(input);

    if input.status.timeline.is_empty() {
        let what = match &input.spec.rollback {
            Some(r) => format!(
                "rollback of {} to release {} requested: {}",
                input.spec.environment, input.spec.release, r.reason
            ),
            None => format!("promotion of release {} to {} created", input.spec.release, input.spec.environment),
        };
        d.note(PromotionPhase::Queued, reason::CREATED, what, false);
    }

    // A retry restarts a finished, unsuccessful Promotion from its gates. A retry requested at
    // any other time is acknowledged and has no effect.
    // A retry replaces the evidence: the record of the attempt that ended is written first.
    if input.spec.retry > d.status.observed_retry && !archive_pending(&d.status) {
        d.status.observed_retry = input.spec.retry;
        let retryable = matches!(d.status.phase, PromotionPhase::Failed | PromotionPhase::RolledBack);
        if input.spec.abort || d.status.phase == PromotionPhase::Aborted {
            d.status.message =
                Some("retry ignored: this Promotion was aborted; to try again, create a new Promotion".into());
        } else if retryable && !input.deleting {
            // Keep what the earlier attempt ended with; its full evidence went out as an Event.
            let mut attempts = std::mem::take(&mut d.status.attempts);
            attempts.push(kiln_api::promotion::Attempt {
                retry: input.status.observed_retry,
                outcome: d.status.phase,
                completed_at: d.status.completed_at.clone(),
                rollback: d.status.rollback.clone(),
                evidence_sha256: d.status.evidence_sha256.clone(),
            });
            if attempts.len() > 10 {
                attempts.remove(0);
            }
            let timeline = std::mem::take(&mut d.status.timeline);
            let approvals_seen = std::mem::take(&mut d.status.approvals_seen);
            // Where the Environment says so, the approvals of the attempt that ended do not
            // carry over to the retry.
            let fresh = input.observed.environment.as_ref().is_some_and(|e| e.promotion.fresh_approvals_on_retry);
            d.status = PromotionStatus {
                observed_generation: input.generation,
                observed_retry: input.spec.retry,
                timeline,
                attempts,
                approvals_seen,
                approvals_valid_from: if fresh { Some(to_time(d.now())) } else { None },
                ..PromotionStatus::default()
            };
            d.note(
                PromotionPhase::Queued,
                reason::RETRY,
                format!("retry #{} requested; evaluating gates again", input.spec.retry),
                false,
            );
        }
    }

    // When kiln first saw each approval: approvals count (and expire) from then.
    if !d.status.phase.is_terminal() {
        let now = d.now();
        crate::approvals::record_seen(&mut d.status.approvals_seen, &input.spec.approvals, now);
    }

    // What the queue keys this Promotion by (fixed once the snapshot is taken: the observe step
    // keeps the recorded value from then on).
    if !d.status.phase.is_terminal()
        && let Some(target) = &input.observed.target
    {
        d.status.target = Some(target.clone());
    }

    match d.status.phase {
        PromotionPhase::Succeeded | PromotionPhase::RolledBack | PromotionPhase::Failed | PromotionPhase::Aborted => {
            if input.spec.abort && d.status.phase == PromotionPhase::Succeeded {
                d.status.message = Some(format!(
                    "already succeeded; abort has no effect. To return {} to an earlier release, create a rollback Promotion (kubectl kiln rollback {} --env {})",
                    input.spec.environment,
                    input.observed.release.as_ref().map(|r| r.service.as_str()).unwrap_or("<service>"),
                    input.spec.environment
                ));
            }
            if archive_pending(&d.status) && d.status.evidence.is_some() {
                if input.deleting && abandon_archive(&mut d) {
                    return d.finish(None);
                }
                if input.spec.retry > d.status.observed_retry {
                    let uri = d.status.evidence_archive.as_ref().map(|a| a.uri()).unwrap_or_default();
                    d.status.message = Some(format!(
                        "retry #{} waits until this attempt's evidence is written to {uri}",
                        input.spec.retry
                    ));
                }
                return d.finish(Some(Action::ArchiveEvidence));
            }
            d.finish(None)
        }
        PromotionPhase::RollingBack => {
            let action = rolling_back(&mut d);
            d.finish(action)
        }
        PromotionPhase::Deploying | PromotionPhase::Baking => {
            let action = in_flight(&mut d);
            d.finish(action)
        }
        PromotionPhase::Queued
        | PromotionPhase::WaitingForGates
        | PromotionPhase::WaitingForApproval
        | PromotionPhase::Frozen => {
            let action = waiting(&mut d);
            d.finish(action)
        }
    }
}

/// A deleted Promotion whose evidence record failed [`ARCHIVE_ATTEMPTS_ON_DELETE`] times in a
/// row stops waiting for it: the deletion (and its namespace's) completes, and a Warning Event
/// keeps the record's SHA-256 and where it should have gone. True when given up.
fn abandon_archive(d: &mut Draft<'_, '_>) -> bool {
    let now = d.now();
    let sha = d.status.evidence_sha256.clone().unwrap_or_default();
    let Some(a) = d.status.evidence_archive.as_mut() else { return false };
    let failed = a.failed_attempts.unwrap_or(0);
    if failed < ARCHIVE_ATTEMPTS_ON_DELETE {
        return false;
    }
    a.abandoned_at = Some(to_time(now));
    let message = format!(
        "the Promotion was deleted and evidence sha256:{sha} could not be written to {} ({failed} attempts failed in a row); \
         it is not archived. Its summary is in the Evidence Event, and the controller's log holds the whole record",
        a.uri()
    );
    d.events.push(EventNote {
        warning: true,
        reason: reason::EVIDENCE_ARCHIVE_ABANDONED.into(),
        message: message.clone(),
    });
    d.status.message = Some(message);
    true
}
