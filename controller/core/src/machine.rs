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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kiln_api::common::condition;
use kiln_api::environment::{EnvironmentSpec, SignalReadFailureAction};
use kiln_api::promotion::{
    BakeStatus, DeployedResources, EvidenceArchive, InProgressStatus, MAX_TIMELINE, PromotionSpec, PromotionStatus,
    RollbackStatus, Snapshot, StepStatus, TimelineEntry,
};
use kiln_api::release::ReleaseSpec;
use kiln_api::{PromotionPhase, RollbackCause};

use crate::evidence;
use crate::gates::{self, GateInput, TargetHealth};
pub use crate::observe::{Observations, PolicyState};
use crate::plan::{self, HookPoint, Plan};
use crate::problem::Problem;
use crate::reason;
use crate::signals;
use crate::time::{human_duration, to_time};

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

struct Draft<'i, 'a> {
    input: &'i PromotionInput<'a>,
    status: PromotionStatus,
    events: Vec<EventNote>,
    requeue: Option<SignedDuration>,
    /// Signals that had no data at the last read (ignored by the policy), for the record.
    inconclusive: Option<String>,
    /// In flight but not progressing: (reason, message) for the `Stalled` condition.
    stalled: Option<(&'static str, String)>,
}

impl<'i, 'a> Draft<'i, 'a> {
    fn new(input: &'i PromotionInput<'a>) -> Self {
        let mut status = input.status.clone();
        status.observed_generation = input.generation;
        Draft { input, status, events: Vec::new(), requeue: None, inconclusive: None, stalled: None }
    }

    fn now(&self) -> Timestamp {
        self.input.now
    }

    /// Records a transition (or a notable step) in the timeline and as an Event.
    fn note(&mut self, phase: PromotionPhase, reason: &str, message: String, warning: bool) {
        self.status.phase = phase;
        self.status.message = Some(message.clone());
        self.status.timeline.push(TimelineEntry {
            at: to_time(self.now()),
            phase,
            reason: reason.into(),
            message: message.clone(),
        });
        if self.status.timeline.len() > MAX_TIMELINE {
            // Keep the first entry (creation) and the most recent ones.
            self.status.timeline.remove(1);
        }
        self.events.push(EventNote { warning, reason: reason.into(), message });
    }

    /// Changes phase, noting it only if it is a change.
    fn enter(&mut self, phase: PromotionPhase, reason: &str, message: String) {
        if self.status.phase != phase || self.status.timeline.is_empty() {
            self.note(phase, reason, message, false);
        } else {
            self.status.message = Some(message);
        }
    }

    fn requeue_at(&mut self, at: Timestamp) {
        let d = at.duration_since(self.now()).max(SignedDuration::from_secs(1));
        self.requeue_in(d);
    }

    fn requeue_in(&mut self, d: SignedDuration) {
        self.requeue = Some(match self.requeue {
            Some(cur) => cur.min(d),
            None => d,
        });
    }

    fn finish(mut self, action: Option<Action>) -> Decision {
        let now = self.now();
        set_conditions(&mut self.status, self.input.generation, now, !self.input.observed.problems.is_empty());
        if let Some((reason, message)) = self.stalled.take().filter(|_| self.status.phase.is_in_flight()) {
            let generation = self.input.generation;
            set_condition(&mut self.status.conditions, condition::STALLED, true, reason, &message, generation, now);
            set_condition(
                &mut self.status.conditions,
                condition::RECONCILING,
                false,
                reason,
                &message,
                generation,
                now,
            );
        }
        Decision { status: self.status, action, requeue_after: self.requeue, events: self.events }
    }

    /// Ends the Promotion: completion time, evidence and its digest.
    fn terminate(&mut self, phase: PromotionPhase, reason: &str, message: String, warning: bool) {
        self.note(phase, reason, message, warning);
        self.status.completed_at = Some(to_time(self.now()));
        let ev = evidence::build(
            &self.input.context,
            self.input.spec,
            self.input.observed.release.as_ref(),
            self.input.observed.environment.as_ref(),
            &self.status,
        );
        let sha = evidence::digest(&ev);
        self.events.push(EventNote {
            warning: false,
            reason: reason::EVIDENCE.into(),
            message: evidence::summary(&ev, &sha),
        });
        // Where the record goes, decided now: a later change to the Environment does not move it.
        self.status.evidence_archive =
            self.input.observed.environment.as_ref().and_then(|e| e.evidence.as_ref()).map(|a| {
                let prefix = a.prefix.as_deref().unwrap_or(kiln_api::environment::DEFAULT_EVIDENCE_PREFIX);
                let ctx = &self.input.context;
                EvidenceArchive {
                    bucket: a.bucket.clone(),
                    key: format!("{prefix}{}/{}/{sha}.json", ctx.namespace, ctx.promotion),
                    archived_at: None,
                }
            });
        self.status.evidence_sha256 = Some(sha);
        self.status.evidence = Some(ev);
    }
}

/// Whether the finished Promotion's evidence record still has to be written to S3 (then the
/// Promotion is not at rest, and a retry waits for it).
pub fn archive_pending(status: &PromotionStatus) -> bool {
    status.evidence_sha256.is_some() && status.evidence_archive.as_ref().is_some_and(|a| a.archived_at.is_none())
}

/// How long to wait before writing the evidence record again after S3 refused it.
pub const ARCHIVE_RETRY: SignedDuration = SignedDuration::from_secs(60);

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
            d.status = PromotionStatus {
                observed_generation: input.generation,
                observed_retry: input.spec.retry,
                timeline,
                attempts,
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

fn gate_input<'x>(input: &'x PromotionInput<'x>, release: &'x ReleaseSpec, env: &'x EnvironmentSpec) -> GateInput<'x> {
    GateInput {
        health: target_health(input),
        now: input.now,
        promotion: input.spec,
        release,
        environment: env,
        problems: &input.observed.problems,
        upstream: &input.observed.upstream,
        ahead: &input.observed.ahead,
        freezes: &input.observed.freezes,
    }
}

fn waiting(d: &mut Draft<'_, '_>) -> Option<Action> {
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
    let mut gi = gate_input(input, release, env);
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

/// Starts a rollback: RollingBack with the cause, or straight to a terminal phase if nothing
/// was changed in AWS yet.
fn begin_rollback(
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

fn rolling_back(d: &mut Draft<'_, '_>) -> Option<Action> {
    // Restore is idempotent; keep asking until it reports done. Nothing may block it.
    Some(Action::Restore).filter(|_| d.status.previous.is_some()).or_else(|| {
        d.terminate(PromotionPhase::RolledBack, reason::ROLLED_BACK, "nothing to restore".into(), true);
        None
    })
}

fn in_flight(d: &mut Draft<'_, '_>) -> Option<Action> {
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
fn forward(d: &mut Draft<'_, '_>, action: Action, what: String) -> Option<Action> {
    let input = d.input;
    let (Some(release), Some(env)) = (input.observed.release.as_ref(), input.observed.environment.as_ref()) else {
        return None;
    };
    let gi = gate_input(input, release, env);
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

/// Evaluates the signals; starts a rollback on a breach.
/// Evaluates the signals and records them; with `act`, starts a rollback on a breach.
fn watch_signals(d: &mut Draft<'_, '_>, act: bool) -> Option<Action> {
    let input = d.input;
    // Nothing the new version did can show before the deployment started.
    let since = d.status.started_at.as_ref().map(|t| t.0)?;
    d.status.previous.as_ref()?;
    match &input.observed.policy {
        PolicyState::NotRequired => None,
        PolicyState::Missing(_) if !act => None,
        PolicyState::Missing(name) => begin_rollback(
            d,
            RollbackCause::Alarm,
            Some(name.to_string()),
            format!("RollbackPolicy {name} disappeared during the deployment; signals cannot be watched (fail closed)"),
            None,
        ),
        PolicyState::Found(policy) => {
            let Some(obs) = input.observed.signals.as_ref() else {
                return signal_read_failed(d, act);
            };
            let previous = d.status.bake.as_ref().map(|b| b.signals.clone()).unwrap_or_default();
            let ev = signals::evaluate(policy, obs, since, &previous);
            let bake = d.status.bake.get_or_insert_with(BakeStatus::default);
            bake.signals = ev.signals.clone();
            bake.read_failing_since = None;
            if let signals::Verdict::Inconclusive(why) = ev.verdict() {
                d.inconclusive = Some(why);
            }
            if let Some(b) = ev.first_breach().filter(|_| act) {
                let latency = b.started_at.map(|s| human_duration(input.now.duration_since(s)));
                let message = match latency {
                    Some(l) => format!("{} (detected {l} after it began)", b.message),
                    None => b.message.clone(),
                };
                return begin_rollback(d, b.kind.cause(), Some(b.signal.clone()), message, b.started_at);
            }
            None
        }
    }
}

/// The signals could not be read this time. Reported at once (`Stalled`, reason
/// `SignalReadFailing`, a Warning Event when it starts); once reads have failed for the
/// Environment's `bake.signalReadFailure.after`, the Promotion rolls back (fail closed: no breach
/// can be seen without a read) or, with `action: hold`, keeps holding.
fn signal_read_failed(d: &mut Draft<'_, '_>, act: bool) -> Option<Action> {
    let error = d.input.observed.signal_read_error.clone()?;
    // A rollback Promotion restores a known-good state and never rolls itself back on signals.
    if !act {
        return None;
    }
    let settings =
        d.input.observed.environment.as_ref().map(|e| e.bake.signal_read_failure.clone()).unwrap_or_default();
    let after =
        crate::duration::parse("bake.signalReadFailure.after", &settings.after).unwrap_or(SignedDuration::from_mins(2));
    let now = d.now();
    let bake = d.status.bake.get_or_insert_with(BakeStatus::default);
    let since = match bake.read_failing_since.as_ref() {
        Some(t) => t.0,
        None => {
            bake.read_failing_since = Some(to_time(now));
            now
        }
    };
    let deadline = since.checked_add(after).unwrap_or(since);
    let at = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    if since == now {
        let then = match settings.action {
            SignalReadFailureAction::RollBack => format!("rolling back at {} unless a read succeeds", at(deadline)),
            SignalReadFailureAction::Hold => format!("will hold traffic as it is from {}", at(deadline)),
        };
        d.events.push(EventNote {
            warning: true,
            reason: reason::SIGNAL_READ_FAILING.into(),
            message: format!("rollback signals cannot be read: {error}; {then}"),
        });
    }
    if now >= deadline && settings.action == SignalReadFailureAction::RollBack {
        let message = format!(
            "rollback signals could not be read for {} (since {}): {error}; no breach can be seen without them",
            human_duration(now.duration_since(since)),
            at(since)
        );
        return begin_rollback(d, RollbackCause::SignalsUnreadable, None, message, Some(since));
    }
    let next = if now >= deadline {
        "holding traffic as it is until reads work again or the Promotion is aborted".to_string()
    } else {
        match settings.action {
            SignalReadFailureAction::RollBack => format!("rolling back at {} unless a read succeeds", at(deadline)),
            SignalReadFailureAction::Hold => format!("will hold traffic as it is from {}", at(deadline)),
        }
    };
    d.stalled = Some((
        reason::SIGNAL_READ_FAILING,
        format!("rollback signals cannot be read since {}: {error}; {next}", at(since)),
    ));
    if now < deadline {
        d.requeue_at(deadline);
    }
    None
}

/// Records that `action` is still in progress in AWS; for a deployment step past the progress
/// deadline (the Release's, else the Environment's, else 10m) starts the rollback and returns
/// true. A restore and the evidence archive never give up, and a hook has its own timeout.
fn past_progress_deadline(d: &mut Draft<'_, '_>, action: &Action, pending: &str) -> bool {
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
            let uri = d.status.evidence_archive.as_ref().map(|a| a.uri()).unwrap_or_default();
            let message = format!("evidence not archived to {uri} yet: {msg}; retrying every minute");
            d.events.push(EventNote {
                warning: true,
                reason: reason::EVIDENCE_ARCHIVE_FAILED.into(),
                message: message.clone(),
            });
            d.status.message = Some(message);
            d.requeue_in(ARCHIVE_RETRY);
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

/// Sets the kstatus conditions from the phase. `lastTransitionTime` only moves when a
/// condition's status flips.
fn set_conditions(status: &mut PromotionStatus, generation: Option<i64>, now: Timestamp, invalid: bool) {
    let phase = status.phase;
    let message = status.message.clone().unwrap_or_default();
    let invalid = invalid || status.gates.iter().any(|g| g.name == gates::name::VALIDATION && !g.ok);
    let ready = phase == PromotionPhase::Succeeded;
    let stalled = (invalid && !phase.is_terminal() && !phase.is_in_flight())
        || matches!(phase, PromotionPhase::Failed | PromotionPhase::RolledBack | PromotionPhase::Aborted);
    let reconciling = !phase.is_terminal() && !stalled;
    let reason =
        if invalid && !phase.is_in_flight() && !phase.is_terminal() { reason::INVALID_SPEC } else { phase.as_str() };
    set_condition(&mut status.conditions, condition::READY, ready, reason, &message, generation, now);
    set_condition(&mut status.conditions, condition::RECONCILING, reconciling, reason, &message, generation, now);
    set_condition(&mut status.conditions, condition::STALLED, stalled, reason, &message, generation, now);
}

/// Sets one condition, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if value { "True" } else { "False" }.to_string();
    // Kubernetes limits condition messages to 32768 characters.
    let message: String = message.chars().take(32_000).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = to_time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: to_time(now),
        }),
    }
}
