//! `Promotion`: one Release into one Environment. Created by kiln (auto environments), by a
//! person (`kubectl kiln promote`) or by GitOps. Its status is the live record of the change
//! and its evidence.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{Approval, DNS_LABEL_MESSAGE, DNS_LABEL_RULE};

/// Most entries kept in `status.timeline`: the first entry and the most recent ones. Every entry
/// is also emitted as a Kubernetes Event when it happens.
pub const MAX_TIMELINE: usize = 64;

/// Most approvals a Promotion holds (`spec.approvals` maxItems).
pub const MAX_APPROVALS: usize = 32;

/// Expands to a CEL rule comparing every position an old approval can occupy. Kubernetes 1.33's
/// CEL environment has no `slice()`, so "the old list is a prefix of the new one" is written out
/// for each of the [`MAX_APPROVALS`] positions; `||` short-circuits past the old list's end.
macro_rules! append_only_rule {
    ($($i:literal)*) => {
        concat!(
            "self.approvals.size() >= oldSelf.approvals.size()",
            $(" && (oldSelf.approvals.size() <= ", $i, " || self.approvals[", $i, "] == oldSelf.approvals[", $i, "])",)*
        )
    };
}

/// CEL: existing approvals cannot change, be reordered or disappear; new ones are appended.
pub const APPEND_ONLY_APPROVALS: &str =
    append_only_rule!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);

/// A request to move one Release into one Environment, with its approvals.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "Promotion",
    namespaced,
    status = "PromotionStatus",
    shortname = "promo",
    category = "kiln",
    doc = "One Release promoted into one Environment: gates, approvals, deployment, bake and evidence.",
    printcolumn(name = "Release", type_ = "string", json_path = ".spec.release"),
    printcolumn(name = "Env", type_ = "string", json_path = ".spec.environment"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.step.weight"),
    printcolumn(name = "Gates", type_ = "string", json_path = ".status.gateSummary"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.release",
    selectable = ".spec.environment"
)]
#[x_kube(validation = Rule::new("self.release == oldSelf.release").message("release is immutable: create a new Promotion").field_path(".release"))]
#[x_kube(validation = Rule::new("self.environment == oldSelf.environment").message("environment is immutable: create a new Promotion").field_path(".environment"))]
#[x_kube(validation = Rule::new("has(self.rollback) == has(oldSelf.rollback) && (!has(self.rollback) || self.rollback == oldSelf.rollback)").message("rollback is immutable: create a new Promotion").field_path(".rollback"))]
#[x_kube(validation = Rule::new("(has(self.downgrade) && self.downgrade) == (has(oldSelf.downgrade) && oldSelf.downgrade)").message("downgrade is immutable: create a new Promotion").field_path(".downgrade"))]
#[x_kube(validation = Rule::new("!has(oldSelf.requestedBy) || (has(self.requestedBy) && self.requestedBy == oldSelf.requestedBy)").message("requestedBy is immutable").field_path(".requestedBy"))]
#[x_kube(validation = Rule::new(APPEND_ONLY_APPROVALS).message("approvals are append-only: existing entries cannot be changed, reordered or removed").field_path(".approvals"))]
#[x_kube(validation = Rule::new("!oldSelf.abort || self.abort").message("abort cannot be undone; to try again, create a new Promotion").field_path(".abort"))]
#[x_kube(validation = Rule::new("self.retry >= oldSelf.retry").message("retry only counts up").field_path(".retry"))]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// The Release (in this namespace) to promote. Immutable.
    #[schemars(length(min = 1, max = 253))]
    pub release: String,
    /// The Environment to promote into. Immutable.
    #[x_kube(validation = Rule::new(DNS_LABEL_RULE).message(DNS_LABEL_MESSAGE))]
    #[schemars(length(max = 63))]
    pub environment: String,
    /// Who asked for this Promotion. With kiln's admission policy (the Helm chart) it is
    /// required on create and must be the creator's own username (trusted writers, such as a
    /// GitOps controller, may name anyone); kiln writes its own ServiceAccount on the Promotions
    /// it creates. Their approvals never count toward a quorum. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub requested_by: Option<String>,
    /// Approvals, append-only. Each entry is bound to the identity that added it.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub approvals: Vec<Approval>,
    /// Set to true to roll back now (a human rollback decision). Cannot be undone.
    #[serde(default)]
    pub abort: bool,
    /// Increment to retry a Failed or RolledBack Promotion from its gates (an aborted one cannot
    /// be retried: create a new Promotion).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub retry: i32,
    /// Marks this Promotion as a rollback to a last known good Release: a Release whose forward
    /// Promotion into this environment succeeded before. It skips the freeze, approval, queue
    /// and upstream gates and the bake wait, never rolls itself back on signals, and is recorded
    /// as a rollback. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRequest>,
    /// Deploy this Release even though the environment runs a newer version of its service (read
    /// from AWS): a deliberate downgrade, e.g. after a cluster rebuilt from Git lost the history a
    /// rollback Promotion needs. Without it kiln refuses an older version (so re-created history
    /// never re-deploys). Every gate still applies. The same version built from other artifacts
    /// is refused either way. Immutable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub downgrade: bool,
}

/// Why a rollback Promotion exists.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    /// Why the environment is rolled back (for the evidence).
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// The Release being rolled back from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub from_release: Option<String>,
}

/// Phase of a Promotion.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PromotionPhase {
    /// Waiting for another Promotion of the same service in this environment.
    #[default]
    Queued,
    /// Gates other than approvals are not met (upstream, change ref, validation).
    WaitingForGates,
    /// Only approvals are missing.
    WaitingForApproval,
    /// A freeze window blocks the deployment.
    Frozen,
    /// Traffic is moving to the new version.
    Deploying,
    /// Watching the rollback signals at a traffic step or at full traffic.
    Baking,
    /// Deployed and baked; the new version serves all traffic.
    Succeeded,
    /// Restoring the state recorded in status.previous.
    RollingBack,
    /// The previous state was restored.
    RolledBack,
    /// The Promotion failed before anything changed in AWS (or a step failed and there was
    /// nothing to restore).
    Failed,
    /// Ended before anything changed in AWS: aborted by a person, deleted, or superseded by a
    /// rollback Promotion.
    Aborted,
}

impl Promotion {
    /// The UID of the Release kiln created this Promotion for: its ownerReference to the
    /// Release it names (kiln's own Promotions carry one; a person's or GitOps' do not).
    pub fn created_for(&self) -> Option<&str> {
        self.metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Release" && o.name == self.spec.release)
            .map(|o| o.uid.as_str())
    }

    /// The UID of the Release this Promotion belongs to, if known: the one it deployed
    /// (`status.release`), else the one kiln created it for.
    pub fn release_uid(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.release.as_ref()).map(|r| r.uid.as_str()).or_else(|| self.created_for())
    }

    /// Whether it belongs to the Release with UID `uid` rather than to another Release that had
    /// its name (unknown on either side: yes).
    pub fn belongs_to(&self, uid: Option<&str>) -> bool {
        same_release(self.release_uid(), uid)
    }
}

/// Whether a Promotion that belongs to the Release with UID `theirs` is one of the Release with
/// UID `mine` (unknown on either side: yes, names are all there is to go by).
pub fn same_release(theirs: Option<&str>, mine: Option<&str>) -> bool {
    match (theirs, mine) {
        (Some(theirs), Some(mine)) => theirs == mine,
        _ => true,
    }
}

impl PromotionPhase {
    /// Every phase, in lifecycle order (the one list: metrics, dashboards and tests use it).
    pub const ALL: [PromotionPhase; 11] = [
        PromotionPhase::Queued,
        PromotionPhase::WaitingForGates,
        PromotionPhase::WaitingForApproval,
        PromotionPhase::Frozen,
        PromotionPhase::Deploying,
        PromotionPhase::Baking,
        PromotionPhase::Succeeded,
        PromotionPhase::RollingBack,
        PromotionPhase::RolledBack,
        PromotionPhase::Failed,
        PromotionPhase::Aborted,
    ];

    /// True once the Promotion has finished (it holds no environment lock).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PromotionPhase::Succeeded | PromotionPhase::RolledBack | PromotionPhase::Failed | PromotionPhase::Aborted
        )
    }

    /// True while AWS may differ from both the old and the new state (someone must drive it).
    pub fn is_in_flight(self) -> bool {
        matches!(self, PromotionPhase::Deploying | PromotionPhase::Baking | PromotionPhase::RollingBack)
    }

    /// The phase's name as shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionPhase::Queued => "Queued",
            PromotionPhase::WaitingForGates => "WaitingForGates",
            PromotionPhase::WaitingForApproval => "WaitingForApproval",
            PromotionPhase::Frozen => "Frozen",
            PromotionPhase::Deploying => "Deploying",
            PromotionPhase::Baking => "Baking",
            PromotionPhase::Succeeded => "Succeeded",
            PromotionPhase::RollingBack => "RollingBack",
            PromotionPhase::RolledBack => "RolledBack",
            PromotionPhase::Failed => "Failed",
            PromotionPhase::Aborted => "Aborted",
        }
    }
}

impl std::fmt::Display for PromotionPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a Promotion: gates, deployment progress, bake, rollback and evidence.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the Promotion stands.
    #[serde(default)]
    pub phase: PromotionPhase,
    /// Each gate with its result and a human message, as last evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateResult>,
    /// One line for `kubectl get`: "ok" or the failing gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_summary: Option<String>,
    /// The value of spec.retry this status has acted on.
    #[serde(default)]
    pub observed_retry: i32,
    /// Each approval and when kiln first saw it: an approval counts from then (and expires by
    /// the Environment's `approvalsExpireAfter` from then), whatever its own `at` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub approvals_seen: Vec<SeenApproval>,
    /// Approvals kiln first saw before this time do not count: the retry that set it asked for
    /// fresh approvals (the Environment's `freshApprovalsOnRetry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_valid_from: Option<Time>,
    /// The AWS resource this Promotion drives: its ECS service's or Lambda function's ARN
    /// (account, region, cluster and name, after the Release's overrides). Promotions that drive
    /// one resource run one at a time, whatever their namespace, Release or Environment; the
    /// queue gate names the one ahead. Fixed once the snapshot is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// When the deployment started (gates passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// The Release this Promotion deploys, pinned when its gates passed: Promotions name their
    /// Release, and a deleted Release's name can be reused by another with other artifacts. The
    /// upstream gate, rollback eligibility and the Release's own status compare these (UID and
    /// digests), never the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseIdentity>,
    /// When the Promotion reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// The exact pre-change state, captured before the first traffic change: what a rollback
    /// restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Snapshot>,
    /// What kiln created in AWS for this Promotion (task definition, task set, version,
    /// deployment), so a restarted controller finds it instead of creating it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<DeployedResources>,
    /// Hooks that have passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks_passed: Vec<String>,
    /// The current traffic step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepStatus>,
    /// When all traffic reached the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_traffic_at: Option<Time>,
    /// The deployment step AWS is still working on, and since when (unset once it is done): what
    /// the progress deadline is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<InProgressStatus>,
    /// The current bake and the signals observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<BakeStatus>,
    /// The freeze exception this Promotion used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_exception: Option<String>,
    /// Why and when the Promotion rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
    /// Every transition with its time and cause (most recent last, bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub timeline: Vec<TimelineEntry>,
    /// The evidence record of this change (set when the Promotion finishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// SHA-256 (hex) of the canonical JSON of `evidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
    /// Where the evidence record is archived in S3 (when the Environment sets `spec.evidence`),
    /// and when it was written. A Promotion whose record is not written yet is not at rest:
    /// kiln keeps trying, and a retry waits until it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_archive: Option<EvidenceArchive>,
    /// Earlier attempts of this Promotion (before each retry), most recent last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub attempts: Vec<Attempt>,
    /// A one-line explanation of the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// An approval as kiln first saw it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SeenApproval {
    /// The approver.
    pub user: String,
    /// The role approved in.
    pub role: String,
    /// The approval's own `at`, as written (a later approval by the same person is another one).
    pub at: Time,
    /// When kiln first saw it.
    pub seen_at: Time,
}

/// Which Release, exactly: its UID and the digest of every artifact.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseIdentity {
    /// `metadata.uid` of the Release.
    pub uid: String,
    /// Its `spec.version`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Each artifact and its digest, in the Release's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub artifacts: Vec<ArtifactDigest>,
}

/// An artifact by name and content.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactDigest {
    /// The artifact's name in the Release.
    pub name: String,
    /// `sha256:<hex>` of an image, or the base64 SHA-256 (Lambda's CodeSha256) of a zip.
    pub digest: String,
}

/// An evidence record's place in S3.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceArchive {
    /// The S3 bucket (Object Lock on) in the environment's account that holds the record.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// When kiln wrote (or found) the record there; empty until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<Time>,
    /// Attempts to write the record that failed since the last success. While the Promotion
    /// is being deleted kiln retries every few seconds and gives up after 3, so a bucket that
    /// keeps refusing never holds the deletion (or its namespace's) forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<u32>,
    /// When kiln gave up writing the record because the Promotion was deleted while the bucket
    /// kept refusing it; the Warning Event `EvidenceArchiveAbandoned` names the record's SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned_at: Option<Time>,
}

impl EvidenceArchive {
    /// `s3://bucket/key`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// How an earlier attempt ended, kept across a retry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The value of spec.retry during the attempt.
    pub retry: i32,
    /// How it ended: Failed or RolledBack.
    pub outcome: PromotionPhase,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Its rollback, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
    /// SHA-256 of its evidence record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
}

/// The result of one gate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    /// The gate: validation, upstream, upstreamHealth, changeRef, freeze, approvals, queue.
    pub name: String,
    /// Whether the gate passes.
    pub ok: bool,
    /// What the gate found, for people.
    pub message: String,
}

/// The exact state a rollback returns AWS to, self-contained: a restore needs neither the
/// Release nor the Environment, so deleting either mid-deployment cannot strand traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// When the snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<Time>,
    /// The AWS account the state lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The AWS region the state lives in (a restore acts there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The role kiln assumed to act there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// ECS state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsSnapshot>,
    /// Lambda state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaSnapshot>,
}

/// ECS state before the change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EcsSnapshot {
    /// The ECS cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The ECS service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The service's task definition ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// That task definition's containers and the image each ran: what a rollback returns to,
    /// and what kiln checks against the Environment's `containerImages` before its first write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub containers: Vec<ContainerImage>,
    /// The primary task set's ARN (EXTERNAL deployment controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_task_set: Option<String>,
    /// The weighted forward action's target groups and weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener_weights: Vec<TargetGroupWeight>,
    /// The listener or rule ARN the weights belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_or_rule_arn: Option<String>,
}

/// A container and its image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    /// The container's name.
    pub name: String,
    /// Its image reference.
    pub image: String,
}

/// A target group and its weight in a forward action.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupWeight {
    /// A target group the listener (or rule) forwards to, by ARN.
    pub target_group_arn: String,
    /// Its weight (0-999 as ELBv2 allows).
    pub weight: i32,
}

/// Lambda alias state before the change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LambdaSnapshot {
    /// The Lambda function whose alias a restore moves back (name or ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    /// The alias that routes traffic (e.g. `live`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The version the alias pointed to.
    pub version: String,
    /// Additional version weights of the alias routing config (version → weight 0-1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<String, String>,
}

/// What kiln created in AWS for a Promotion.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeployedResources {
    /// The task definition registered with the release's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// The green task set's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_set: Option<String>,
    /// The Lambda version published (its CodeSha256 was checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_version: Option<String>,
    /// The CodeDeploy deployment ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_deploy_deployment: Option<String>,
}

/// A deployment step that AWS has not finished yet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InProgressStatus {
    /// The step: prepare, shiftTraffic, finalize, captureSnapshot.
    #[schemars(length(max = 64))]
    pub action: String,
    /// When kiln first found it still in progress.
    pub since: Time,
}

/// The current traffic step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Zero-based index into the steps.
    pub index: i32,
    /// Percentage of traffic on the new version.
    pub weight: i32,
    /// How many steps there are.
    pub total: i32,
    /// When this step's weight was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
}

/// A bake in progress or finished.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BakeStatus {
    /// When the bake started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it ends if nothing breaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Time>,
    /// The rollback signals as last observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub signals: Vec<SignalStatus>,
    /// Since when the signals could not be read (unset once a read succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_failing_since: Option<Time>,
}

/// One rollback signal as last observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignalStatus {
    /// The alarm name, metric trigger name or `errorBudget`.
    pub name: String,
    /// alarm | metric | errorBudget.
    pub kind: String,
    /// OK | ALARM | INSUFFICIENT_DATA | MISSING for alarms; OK | BREACH | NO_DATA otherwise.
    pub state: String,
    /// When the signal entered this state (alarms: StateUpdatedTimestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// The last value (metrics: the datapoint; error budget: percent of budget burned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// What started a rollback.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum RollbackCause {
    /// A CloudWatch alarm of the RollbackPolicy went to ALARM during the bake (or the policy
    /// disappeared mid-deployment: signals can no longer be watched).
    Alarm,
    /// A metric trigger of the RollbackPolicy crossed its threshold for its `for` duration.
    Metric,
    /// The error budget burned faster than the RollbackPolicy allows.
    ErrorBudget,
    /// A pre- or post-traffic hook failed.
    HookFailed,
    /// A deployment step failed in AWS, or the Release or Environment went away mid-deployment.
    DeploymentFailed,
    /// A person aborted the Promotion, or deleted it while it was deploying.
    Abort,
    /// A rollback Promotion took the environment over.
    Superseded,
    /// The RollbackPolicy's signals could not be read for the Environment's
    /// `bake.signalReadFailure.after` during the deployment (fail closed).
    SignalsUnreadable,
    /// A deployment step stayed in progress in AWS beyond the progress deadline.
    ProgressDeadline,
}

impl RollbackCause {
    /// Every cause (metrics expose each, with zero counts).
    pub const ALL: [RollbackCause; 9] = [
        RollbackCause::Alarm,
        RollbackCause::Metric,
        RollbackCause::ErrorBudget,
        RollbackCause::HookFailed,
        RollbackCause::DeploymentFailed,
        RollbackCause::Abort,
        RollbackCause::Superseded,
        RollbackCause::SignalsUnreadable,
        RollbackCause::ProgressDeadline,
    ];

    /// The cause as written in status and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackCause::Alarm => "alarm",
            RollbackCause::Metric => "metric",
            RollbackCause::ErrorBudget => "errorBudget",
            RollbackCause::HookFailed => "hookFailed",
            RollbackCause::DeploymentFailed => "deploymentFailed",
            RollbackCause::Abort => "abort",
            RollbackCause::Superseded => "superseded",
            RollbackCause::SignalsUnreadable => "signalsUnreadable",
            RollbackCause::ProgressDeadline => "progressDeadline",
        }
    }
}

impl std::fmt::Display for RollbackCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why and when a Promotion rolled back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// What started the rollback: alarm | metric | errorBudget | hookFailed | deploymentFailed |
    /// abort | superseded | signalsUnreadable | progressDeadline.
    pub cause: RollbackCause,
    /// The signal or hook that triggered it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// What happened, for people.
    pub message: String,
    /// When the breach began (e.g. the alarm's state change), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach_started_at: Option<Time>,
    /// When kiln detected it.
    pub detected_at: Time,
    /// When the previous state was restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Milliseconds from the breach's start (or, without one, its detection) to the restore
    /// completing, as measured by kiln: the number behind the "breach to traffic restored" SLO
    /// (the timestamps above are whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach_to_restore_millis: Option<i64>,
}

/// One transition in a Promotion's life.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// When it happened.
    pub at: Time,
    /// The phase entered (or kept).
    pub phase: PromotionPhase,
    /// A machine-readable cause (CamelCase), e.g. GatesPassed, TrafficShifted, BreachDetected.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

/// The audit record of a production change (and of every Promotion that deployed or rolled back).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The version of this record's schema ([`EVIDENCE_SCHEMA_VERSION`] when kiln wrote it;
    /// absent: version 1). Fields are only ever added, each left out when empty, so a record of
    /// any version hashes to the SHA-256 it was written with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Whether this was a forward promotion or a rollback promotion.
    pub kind: String,
    /// The Release name.
    pub release: String,
    /// The Release's UID (which Release of that name: names can be reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_uid: Option<String>,
    /// The Release's `spec.service`.
    pub service: String,
    /// The Release's `spec.version` (SemVer).
    pub version: String,
    /// standard | normal | emergency | hotfix (emergency and hotfix may pass a freeze by
    /// exception).
    pub release_type: String,
    /// The source commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Every artifact with its digest (images) or CodeSha256 (zips).
    pub artifacts: Vec<EvidenceArtifact>,
    /// The Environment deployed to.
    pub environment: String,
    /// The AWS account the change was made in.
    pub account_id: String,
    /// The AWS region the change was made in.
    pub region: String,
    /// The change reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_ref: Option<String>,
    /// Who requested the Promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Who authored the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Every approval (user, role, time).
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub approvals: Vec<Approval>,
    /// When kiln first saw each approval (the time approvals count from; `approvals[].at` is
    /// the client's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub approvals_seen: Vec<SeenApproval>,
    /// What ran before the change, as the snapshot recorded it: what a rollback returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<EvidencePrevious>,
    /// The AWS resources this change acted on or created, by ARN or ID: the service or function
    /// (`status.target`), the listener or rule and target groups, the task definition and task
    /// set or the Lambda version kiln created, a CodeDeploy deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub resources: Vec<String>,
    /// Each gate with its result at decision time.
    #[serde(default)]
    pub gates: Vec<GateResult>,
    /// The freeze exception used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_exception: Option<String>,
    /// The deployment timeline.
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// The bake signals as last observed.
    #[serde(default)]
    pub signals: Vec<SignalStatus>,
    /// The rollback, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
    /// The outcome: Succeeded, RolledBack, Failed or Aborted.
    pub outcome: PromotionPhase,
    /// The kiln version that made the decisions.
    pub controller_version: String,
}

/// The version of the evidence schema kiln writes: 2 added `schemaVersion`, `releaseUid`,
/// `approvalsSeen`, `previous` and `resources`.
pub const EVIDENCE_SCHEMA_VERSION: u32 = 2;

/// What ran before the change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EvidencePrevious {
    /// The task definition that served (ECS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// Its containers and their images (ECS), digests included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub containers: Vec<ContainerImage>,
    /// The version the alias pointed to (Lambda).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_version: Option<String>,
}

/// An artifact in the evidence.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceArtifact {
    /// The artifact name.
    pub name: String,
    /// The image reference or S3 location.
    pub reference: String,
    /// `sha256:<hex>` for images, the base64 CodeSha256 for zips.
    pub digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The string values a schema allows: its `enum`, or (variants with docs) each `oneOf`
    /// branch's `const` or `enum`.
    fn allowed_values(schema: &serde_json::Value) -> Vec<String> {
        let strings = |v: &serde_json::Value| -> Vec<String> {
            match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                _ => Vec::new(),
            }
        };
        let mut out = strings(&schema["enum"]);
        for branch in schema["oneOf"].as_array().into_iter().flatten() {
            out.extend(strings(&branch["const"]));
            out.extend(strings(&branch["enum"]));
        }
        out
    }

    #[test]
    fn all_lists_every_phase_the_schema_allows_once() {
        let allowed = allowed_values(&serde_json::to_value(schemars::schema_for!(PromotionPhase)).unwrap_or_default());
        let listed: Vec<String> = PromotionPhase::ALL.iter().map(|p| p.as_str().to_string()).collect();
        assert_eq!(listed, allowed);
        for p in PromotionPhase::ALL {
            assert_eq!(serde_json::to_value(p).unwrap_or_default(), serde_json::json!(p.as_str()));
        }
    }

    #[test]
    fn rollback_causes_are_listed_once_and_written_as_named() {
        let allowed = allowed_values(&serde_json::to_value(schemars::schema_for!(RollbackCause)).unwrap_or_default());
        let listed: Vec<String> = RollbackCause::ALL.iter().map(|c| c.as_str().to_string()).collect();
        assert_eq!(listed, allowed);
        for c in RollbackCause::ALL {
            assert_eq!(serde_json::to_value(c).unwrap_or_default(), serde_json::json!(c.as_str()));
        }
    }
}
