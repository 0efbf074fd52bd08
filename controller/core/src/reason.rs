//! The reasons kiln writes in `status.timeline[].reason`, conditions and Events: the one list,
//! so dashboards and alerts can match on them and a typo cannot invent a new one.

/// A person asked for a rollback (`spec.abort`), or deleted the Promotion mid-deployment.
pub const ABORT_REQUESTED: &str = "AbortRequested";
/// Ended before anything changed in AWS (aborted, deleted or superseded).
pub const ABORTED: &str = "Aborted";
/// Traffic moved; the step or final bake is running.
pub const BAKING: &str = "Baking";
/// A signal of the RollbackPolicy breached: rolling back.
pub const BREACH_DETECTED: &str = "BreachDetected";
/// The Promotion was first seen.
pub const CREATED: &str = "Created";
/// Gates passed (or a step is being applied): changing AWS.
pub const DEPLOYING: &str = "Deploying";
/// A deployment step failed in AWS: rolling back.
pub const DEPLOYMENT_FAILED: &str = "DeploymentFailed";
/// The evidence record, as an Event.
pub const EVIDENCE: &str = "Evidence";
/// Writing the evidence record to S3 failed (retried).
pub const EVIDENCE_ARCHIVE_FAILED: &str = "EvidenceArchiveFailed";
/// A deleted Promotion stopped waiting for its evidence record (the bucket kept refusing it).
pub const EVIDENCE_ARCHIVE_ABANDONED: &str = "EvidenceArchiveAbandoned";
/// The evidence record is in the Object-Lock bucket.
pub const EVIDENCE_ARCHIVED: &str = "EvidenceArchived";
/// Ended in failure with nothing to restore.
pub const FAILED: &str = "Failed";
/// The bake passed: making the new version primary and retiring the old one.
pub const FINALIZING: &str = "Finalizing";
/// A freeze was passed by a granted exception.
pub const FREEZE_EXCEPTION: &str = "FreezeException";
/// Every gate passed.
pub const GATES_PASSED: &str = "GatesPassed";
/// The bake cannot finish yet (e.g. no fresh signal read); traffic stays where it is.
pub const HOLDING: &str = "Holding";
/// A pre- or post-traffic hook failed: rolling back.
pub const HOOK_FAILED: &str = "HookFailed";
/// A hook succeeded.
pub const HOOK_PASSED: &str = "HookPassed";
/// The Promotion cannot go ahead as specified (see the validation gate).
pub const INVALID_SPEC: &str = "InvalidSpec";
/// The new version exists without traffic.
pub const PREPARED: &str = "Prepared";
/// Restoring the snapshot failed (retried; nothing may block it).
pub const RESTORE_FAILED: &str = "RestoreFailed";
/// A person asked for a retry (`spec.retry`).
pub const RETRY: &str = "Retry";
/// The previous state is restored.
pub const ROLLED_BACK: &str = "RolledBack";
/// The Environment's tenants do not let this namespace act on a resource the snapshot resolved.
pub const TENANCY_REFUSED: &str = "TenancyRefused";
/// A rollback Promotion that cannot be carried out as asked (its Release is missing, never
/// succeeded here, or cannot be deployed here) fails at once, so it never holds anything up.
pub const ROLLBACK_REFUSED: &str = "RollbackRefused";
/// A container of the task definition breaks the Environment's `containerImages` policy (a
/// mutable tag, or an image that is not the Release's); nothing was changed.
pub const CONTAINER_IMAGE_REFUSED: &str = "ContainerImageRefused";
/// A forward Promotion of a version older than the one the environment runs (read from AWS)
/// ended before any change: re-created history never re-deploys.
pub const OLDER_THAN_RUNNING: &str = "OlderThanRunning";
/// A forward Promotion of the version the environment runs, built from other artifacts, ended
/// before any change: a version names one build.
pub const VERSION_REUSED: &str = "VersionReused";
/// The state a rollback returns to is recorded.
pub const SNAPSHOT_CAPTURED: &str = "SnapshotCaptured";
/// The new version serves all traffic and baked green.
pub const SUCCEEDED: &str = "Succeeded";
/// A deployment step stayed in progress in AWS beyond the progress deadline.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
/// The RollbackPolicy's signals cannot be read during a deployment.
pub const SIGNAL_READ_FAILING: &str = "SignalReadFailing";
/// A rollback Promotion took the environment over.
pub const SUPERSEDED: &str = "Superseded";
/// A rollback Promotion takes over from a forward Promotion that cannot restore.
pub const TAKING_OVER: &str = "TakingOver";
/// A traffic step was applied.
pub const TRAFFIC_SHIFTED: &str = "TrafficShifted";
/// An action reported an outcome the machine did not expect (a bug; the step is retried).
pub const UNEXPECTED_OUTCOME: &str = "UnexpectedOutcome";
/// Waiting on a gate other than validation.
pub const WAITING: &str = "Waiting";
/// kiln created a Promotion for a Release (Event on the Release).
pub const PROMOTION_CREATED: &str = "PromotionCreated";
/// A reconcile failed; the note says why and it is retried (Warning Event on the object).
pub const RECONCILE_FAILED: &str = "ReconcileFailed";
/// The controller's types cannot read the object (Warning Event on the object).
pub const UNREADABLE: &str = "Unreadable";
