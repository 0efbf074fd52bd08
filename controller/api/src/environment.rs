//! `Environment`: a cluster-scoped stage of the promotion graph (dev, stg, prod), owned by the
//! platform team. It carries the AWS account, the role kiln assumes there and the promotion
//! rules, so a release author cannot loosen them (RBAC gives teams Releases, not Environments).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{
    ApprovalRequirement, DNS_LABEL_MESSAGE, DNS_LABEL_RULE, DURATION_MESSAGE, DURATION_OR_ZERO_MESSAGE,
    DURATION_OR_ZERO_RULE, DURATION_RULE,
};

/// An environment releases are promoted into: its AWS account, the role kiln assumes there, and
/// the rules a Promotion into it must satisfy.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "Environment",
    status = "EnvironmentStatus",
    shortname = "kenv",
    category = "kiln",
    doc = "A stage of the promotion graph (dev, stg, prod): AWS account, deploy role and promotion rules.",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.aws.accountId"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.aws.region"),
    printcolumn(name = "Upstream", type_ = "string", json_path = ".spec.upstream"),
    printcolumn(name = "Auto", type_ = "boolean", json_path = ".spec.promotion.auto"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[kube(validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.metadata.name.size() <= 63").message("metadata.name must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"))]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// Environments a release must pass through (and bake in) before this one. Empty for the
    /// first environment (dev). Cycles are reported in status.
    #[serde(default)]
    #[schemars(length(max = 8), inner(length(max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(e, e.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && e.size() <= 63)").message("upstream entries must be Environment names (DNS-1123 labels)"))]
    pub upstream: Vec<String>,
    /// The AWS account and deploy role for this environment.
    pub aws: AwsTarget,
    /// Rules a Promotion into this environment must satisfy before it deploys.
    #[serde(default)]
    pub promotion: PromotionRules,
    /// How long a deployment bakes at full traffic, watched by the RollbackPolicy, before it is
    /// declared good.
    #[serde(default)]
    pub bake: BakeSettings,
    /// How long one deployment step may stay "in progress" in AWS (a task set that never reaches
    /// steady state, a Lambda version that never becomes active, a CodeDeploy deployment that
    /// stops progressing) before kiln gives up: it restores the previous state and records the
    /// rollback with cause `progressDeadline` and what was still pending. A Release may set its
    /// own. Go duration, default `10m`.
    #[serde(default = "default_progress_deadline")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub progress_deadline: String,
    /// Name of the RollbackPolicy that guards deployments here. It is looked up in each
    /// Release's namespace, so every team defines its own SLO alarms under the name the
    /// platform team requires. A missing policy blocks the Promotion (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DNS_LABEL_RULE).message(DNS_LABEL_MESSAGE))]
    #[schemars(length(max = 63))]
    pub rollback_policy_ref: Option<String>,
    /// Where the evidence record of every finished Promotion here is archived: an S3 bucket in
    /// this environment's account, written with the deploy role. Omit to keep evidence in
    /// status and Events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceArchiveSettings>,
    /// Which namespaces may release onto which AWS resources here. When set, a Promotion may act
    /// only on resources that an entry covering its namespace lists; anything else is refused
    /// before kiln's first AWS write (the `validation` gate names the resource, or, for what only
    /// the snapshot resolves, the Promotion fails with nothing changed). An empty list lets no
    /// namespace release here. Unset: every namespace may act on every resource the deploy role
    /// reaches (a cluster with one team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub tenants: Option<Vec<Tenant>>,
    /// Which images the ECS task definitions kiln registers here may run besides the Release's
    /// own: `pinnedByDigest` (default) lets a container the Release does not list keep its image
    /// only if that is pinned by digest (`repo@sha256:…`); `fromRelease` requires every container
    /// to be the Release's (`target.ecs.container` and `sidecars`). A container that breaks the
    /// rule fails the Promotion before its first write, naming the container and its image.
    #[serde(default)]
    pub container_images: ContainerImages,
}

/// Which images a task definition kiln registers may run (Environment `containerImages`).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ContainerImages {
    /// Every container runs an image pinned by digest; those the Release does not list keep
    /// theirs only if it is.
    #[default]
    PinnedByDigest,
    /// Every container's image comes from the Release.
    FromRelease,
}

/// Namespaces and the AWS resources they may release onto.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Namespace names; `*` matches any run of characters and `?` one (e.g. `team-api-*`).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 63)))]
    #[x_kube(validation = Rule::new("self.all(n, n.matches('^[a-z0-9*?]([-a-z0-9*?]*[a-z0-9*?])?$'))").message("namespaces must be namespace names, optionally with * and ? wildcards"))]
    pub namespaces: Vec<String>,
    /// ARN patterns of the resources these namespaces may act on, as in IAM policies: `*` matches
    /// any run of characters (`/` and `:` included) and `?` one. kiln checks the ECS service
    /// (`arn:aws:ecs:<region>:<account>:service/<cluster>/<service>`), the listener or listener
    /// rule whose weights it changes and both target groups
    /// (`arn:aws:elasticloadbalancing:<region>:<account>:listener/app/<lb>/…`, `…:listener-rule/app/<lb>/…`,
    /// `…:targetgroup/<name>/…`), the Lambda function
    /// (`arn:aws:lambda:<region>:<account>:function:<name>`) and the hooks' functions and task
    /// definition families (`arn:aws:ecs:<region>:<account>:task-definition/<family>`).
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 2048)))]
    #[x_kube(validation = Rule::new("self.all(r, r.startsWith('arn:'))").message("resources must be ARN patterns (arn:aws:…), e.g. arn:aws:lambda:*:111111111111:function:api-*"))]
    pub resources: Vec<String>,
    /// The IAM role kiln assumes for these namespaces' Promotions here, instead of the
    /// Environment's `aws.roleArn` (the first entry covering a namespace that names one wins):
    /// give each team a role whose policy allows only its own resources, and AWS enforces the
    /// boundary as well as kiln. It is recorded in the snapshot, so a restore acts as the same
    /// role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$')").message("roleArn must be an IAM role ARN such as arn:aws:iam::333333333333:role/kiln-team-api"))]
    #[schemars(length(max = 600))]
    pub role_arn: Option<String>,
}

/// An S3 bucket for evidence records. It must have S3 Object Lock enabled with a default
/// retention rule (COMPLIANCE mode recommended), so a record cannot be changed or deleted before
/// its retention ends; kiln checks this before each write and refuses a bucket without it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceArchiveSettings {
    /// The bucket's name (in this environment's account and region).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$') && !self.contains('..')").message("must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"))]
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix for the records (default `kiln/evidence/`). Records are written under
    /// `<prefix><namespace>/<promotion>/<sha256>.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && (self == '' || self.endsWith('/'))").message("must not start with '/' and must end with '/' (e.g. audit/kiln/)"))]
    #[schemars(length(max = 256))]
    pub prefix: Option<String>,
}

/// The key prefix used when `spec.evidence.prefix` is not set.
pub const DEFAULT_EVIDENCE_PREFIX: &str = "kiln/evidence/";

/// Where and as whom kiln acts in AWS for an environment. No static keys: the controller's own
/// identity (IRSA or EKS Pod Identity) assumes `roleArn`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.roleArn.startsWith('arn:') && self.roleArn.split(':')[4] == self.accountId").message("roleArn must be a role in accountId (arn:aws:iam::<accountId>:role/<name>)"))]
pub struct AwsTarget {
    /// The 12-digit AWS account ID of this environment.
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{12}$')").message("accountId must be 12 digits"))]
    #[schemars(length(max = 12))]
    pub account_id: String,
    /// The AWS region, e.g. `ca-central-1`.
    #[x_kube(validation = Rule::new("self.matches('^[a-z]{2}(-[a-z]+)+-[0-9]+$')").message("region must look like us-east-1 or ca-central-1"))]
    #[schemars(length(max = 32))]
    pub region: String,
    /// The IAM role kiln assumes (STS AssumeRole) to act in this account.
    #[x_kube(validation = Rule::new("self.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$')").message("roleArn must be an IAM role ARN such as arn:aws:iam::333333333333:role/kiln-deploy"))]
    #[schemars(length(max = 600))]
    pub role_arn: String,
    /// The external ID the role's trust policy requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224))]
    pub external_id: Option<String>,
    /// Tag kiln's role sessions with the Promotion's namespace and environment (STS session tags
    /// `kiln-namespace` and `kiln-environment`), so one role's policy can limit each team to its
    /// own resources with ABAC conditions (`aws:PrincipalTag/kiln-namespace` against the
    /// resources' tags). The role's trust policy must allow `sts:TagSession`.
    #[serde(default)]
    pub session_tags: bool,
}

/// Promotion rules of an environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRules {
    /// When true, kiln creates the Promotion into this environment by itself as soon as the
    /// release may enter it (for the first environment: when the Release appears). When false,
    /// a person or GitOps creates the Promotion (`kubectl kiln promote`).
    #[serde(default)]
    pub auto: bool,
    /// Releases must carry a change reference (`spec.changeRef`) to enter this environment.
    #[serde(default)]
    pub require_change_ref: bool,
    /// Approval quorums, all of which must be met. A person counts toward one quorum only.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub approvals: Vec<ApprovalRequirement>,
    /// Refuse approvals by the Release's author (its `spec.author`, as the Release states it).
    /// Approvals by the person who requested the Promotion never count, whatever this says.
    #[serde(default = "yes")]
    pub forbid_self_approval: bool,
    /// The release must have run at full traffic in every upstream environment at least this
    /// long (Go duration, e.g. `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub min_upstream_bake: Option<String>,
    /// Block the promotion while any upstream environment's rollback alarms are firing.
    #[serde(default = "yes")]
    pub require_upstream_green: bool,
    /// An approval stops counting this long after kiln first saw it (Go duration, e.g. `24h`),
    /// so a change approved on Monday is not deployed on Friday on that approval. The time is
    /// kiln's (`status.approvalsSeen`), never the approval's own `at`. Unset: approvals do not
    /// expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub approvals_expire_after: Option<String>,
    /// A retry after a rollback or failure needs fresh approvals: those kiln saw before the
    /// retry no longer count.
    #[serde(default)]
    pub fresh_approvals_on_retry: bool,
}

fn yes() -> bool {
    true
}

/// An omitted `promotion` gets the same safe defaults as `promotion: {}`: self-approval forbidden
/// and upstream alarms required green.
impl Default for PromotionRules {
    fn default() -> Self {
        PromotionRules {
            auto: false,
            require_change_ref: false,
            approvals: Vec::new(),
            forbid_self_approval: true,
            min_upstream_bake: None,
            require_upstream_green: true,
            approvals_expire_after: None,
            fresh_approvals_on_retry: false,
        }
    }
}

/// Bake settings of an environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BakeSettings {
    /// How long to watch the RollbackPolicy after the last traffic step before declaring
    /// success (Go duration, e.g. `10m`). `0s` means no bake: the Promotion succeeds as soon as
    /// all traffic has moved (signals are still watched during intermediate steps).
    #[serde(default = "default_bake")]
    #[x_kube(validation = Rule::new(DURATION_OR_ZERO_RULE).message(DURATION_OR_ZERO_MESSAGE))]
    #[schemars(length(max = 32))]
    pub duration: String,
    /// What to do while the RollbackPolicy's signals cannot be read during a deployment or bake
    /// (AccessDenied, throttling, an outage): without a read no breach can be seen. The
    /// Promotion reports `Stalled=True` with reason `SignalReadFailing` at once; after
    /// `after` without a successful read it rolls back (default) or keeps holding.
    #[serde(default)]
    pub signal_read_failure: SignalReadFailure,
}

fn default_progress_deadline() -> String {
    "10m".to_string()
}

fn default_bake() -> String {
    "10m".to_string()
}

impl Default for BakeSettings {
    fn default() -> Self {
        BakeSettings { duration: default_bake(), signal_read_failure: SignalReadFailure::default() }
    }
}

/// How long signal reads may fail during a deployment before kiln acts, and how.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SignalReadFailure {
    /// How long reads may keep failing (Go duration, e.g. `2m`), counted from the first failed
    /// read after the last good one.
    #[serde(default = "default_signal_read_failure_after")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub after: String,
    /// What to do then: `rollBack` restores the previous state (fail closed; the rollback's
    /// cause is `signalsUnreadable`), `hold` keeps the traffic as it is and stays `Stalled` until
    /// reads work again or someone aborts.
    #[serde(default)]
    pub action: SignalReadFailureAction,
}

fn default_signal_read_failure_after() -> String {
    "2m".to_string()
}

impl Default for SignalReadFailure {
    fn default() -> Self {
        SignalReadFailure { after: default_signal_read_failure_after(), action: SignalReadFailureAction::default() }
    }
}

/// What kiln does once signal reads have failed for `after`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum SignalReadFailureAction {
    /// Restore the previous state.
    #[default]
    RollBack,
    /// Keep the traffic where it is and wait.
    Hold,
}

/// Observed state of an Environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is False with reason `InvalidSpec` when the environment references an unknown
    /// upstream or forms a cycle; the message says what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
