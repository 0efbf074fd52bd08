//! `Release`: one version of one service, with its digest-pinned artifacts, the AWS target it
//! deploys to and the environments it is promoted through.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{DNS_LABEL_MESSAGE, DNS_LABEL_RULE, DURATION_MESSAGE, DURATION_RULE, ReleaseType};

/// CEL: SemVer 2.0 with a leading `v` (pre-release and build metadata allowed).
pub const SEMVER_RULE: &str = "self.matches('^v(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)(-((0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\\\\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?(\\\\+[0-9a-zA-Z-]+(\\\\.[0-9a-zA-Z-]+)*)?$')";
/// CEL: an OCI image reference pinned by digest.
pub const DIGEST_RULE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9._:/]*[a-z0-9])?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[a-f0-9]{64}$')";

/// A version of a service to promote through environments. Artifacts, version and target are
/// immutable: to ship something else, create a new Release.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "Release",
    namespaced,
    status = "ReleaseStatus",
    shortname = "rel",
    category = "kiln",
    doc = "A version of a service, pinned by digest, promoted through environments by kiln.",
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Env", type_ = "string", json_path = ".status.currentEnvironment"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.service"
)]
#[x_kube(validation = Rule::new("self.artifacts == oldSelf.artifacts").message("artifacts are immutable: create a new Release to ship different artifacts").field_path(".artifacts"))]
#[x_kube(validation = Rule::new("self.version == oldSelf.version").message("version is immutable: create a new Release").field_path(".version"))]
#[x_kube(validation = Rule::new("self.target == oldSelf.target").message("target is immutable: create a new Release").field_path(".target"))]
#[x_kube(validation = Rule::new("self.service == oldSelf.service").message("service is immutable: create a new Release").field_path(".service"))]
#[x_kube(validation = Rule::new("self.type == oldSelf.type").message("type is immutable (it decides freeze exceptions): create a new Release").field_path(".type"))]
#[x_kube(validation = Rule::new("!has(oldSelf.author) || (has(self.author) && self.author == oldSelf.author)").message("author cannot be changed or removed once set (it decides who may not approve)").field_path(".author"))]
#[x_kube(validation = Rule::new("!has(oldSelf.changeRef) || (has(self.changeRef) && self.changeRef == oldSelf.changeRef)").message("changeRef cannot be changed or removed once set (approvals and evidence refer to it)").field_path(".changeRef"))]
#[x_kube(validation = Rule::new("!has(oldSelf.commit) || (has(self.commit) && self.commit == oldSelf.commit)").message("commit cannot be changed or removed once set").field_path(".commit"))]
#[x_kube(validation = Rule::new("!has(self.target.ecs) || !has(self.target.ecs.artifact) || self.artifacts.exists(a, a.name == self.target.ecs.artifact)").message("target.ecs.artifact must name one of spec.artifacts").field_path(".target.ecs.artifact"))]
#[x_kube(validation = Rule::new("!has(self.target.lambda) || !has(self.target.lambda.artifact) || self.artifacts.exists(a, a.name == self.target.lambda.artifact)").message("target.lambda.artifact must name one of spec.artifacts").field_path(".target.lambda.artifact"))]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// The service this release belongs to. One Promotion per service and environment is active
    /// at a time; later ones queue.
    #[x_kube(validation = Rule::new(DNS_LABEL_RULE).message(DNS_LABEL_MESSAGE))]
    #[schemars(length(max = 63))]
    pub service: String,
    /// SemVer version with a leading v: vMAJOR.MINOR.PATCH, optionally -prerelease and +build.
    #[x_kube(validation = Rule::new(SEMVER_RULE).message("version must be SemVer with a leading v, e.g. v1.4.2, v2.0.0-rc.1 or v1.4.2+build.7"))]
    #[schemars(length(max = 128))]
    pub version: String,
    /// The kind of change: standard | normal | emergency | hotfix. Emergency and hotfix releases
    /// may pass a freeze when the window's exception approvals are given. Immutable.
    #[serde(default, rename = "type")]
    pub release_type: ReleaseType,
    /// The change ticket (e.g. CHG-20251028-001). Required by environments with
    /// `promotion.requireChangeRef`. May be added later; cannot change once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub change_ref: Option<String>,
    /// The source commit the artifacts were built from (hex SHA). Cannot change once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{7,64}$')").message("commit must be a lowercase hex commit SHA (7 to 64 characters)"))]
    #[schemars(length(max = 64))]
    pub commit: Option<String>,
    /// Who authored the change (typically set by CI). With `forbidSelfApproval` this person may
    /// not approve its promotions. Cannot change or be removed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub author: Option<String>,
    /// The artifacts to deploy, each pinned by digest. Built once, promoted unchanged. Immutable.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("artifact names must be unique"))]
    pub artifacts: Vec<Artifact>,
    /// What the artifacts are deployed to: an ECS service or a Lambda function. Immutable.
    pub target: Target,
    /// The environments to promote through, in order (e.g. [dev, stg, prod]). Each must exist as
    /// an Environment, and each environment's upstreams must come earlier in this list.
    #[schemars(length(min = 1, max = 8), inner(length(max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(e, e.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && e.size() <= 63)").message("environments must be Environment names (DNS-1123 labels)"))]
    pub environments: Vec<String>,
    /// This Release's own progress deadline, instead of each Environment's
    /// `progressDeadline` (e.g. a service whose tasks take long to start). Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub progress_deadline: Option<String>,
}

/// One deployable artifact, pinned by content: an OCI image by digest or a Lambda zip by hash.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.image) != has(self.zip)").message("set exactly one of image or zip"))]
pub struct Artifact {
    /// The artifact's name, referenced by the target (e.g. the ECS container name).
    #[x_kube(validation = Rule::new(DNS_LABEL_RULE).message(DNS_LABEL_MESSAGE))]
    #[schemars(length(max = 63))]
    pub name: String,
    /// An OCI image pinned by digest: `<registry>/<repository>@sha256:<64 lowercase hex>`
    /// (a tag may precede the digest but the digest is what is deployed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DIGEST_RULE).message("image must be pinned by digest: <registry>/<repository>@sha256:<64 lowercase hex>; tags such as :latest are mutable and are not accepted"))]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// A Lambda deployment package in S3, pinned by its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<ZipArtifact>,
}

/// A Lambda zip package in S3, pinned by content hash.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ZipArtifact {
    /// The S3 bucket holding the package.
    #[schemars(length(min = 3, max = 63))]
    pub s3_bucket: String,
    /// The object key of the package.
    #[schemars(length(min = 1, max = 1024))]
    pub s3_key: String,
    /// The object version, if the bucket is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub s3_object_version: Option<String>,
    /// The package's SHA-256 as Lambda reports it (`CodeSha256`, base64, 44 characters). kiln
    /// refuses a published version whose hash differs.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9+/]{43}=$')").message("codeSha256 must be the base64 SHA-256 Lambda reports (44 characters ending in '=')"))]
    #[schemars(length(max = 44))]
    pub code_sha256: String,
}

/// The deployment target. Set exactly one of `ecs` or `lambda`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.ecs) != has(self.lambda)").message("set exactly one of target.ecs or target.lambda"))]
pub struct Target {
    /// An ECS service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsTarget>,
    /// A Lambda function behind an alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaTarget>,
}

/// How an ECS service receives the new task definition.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum EcsStrategy {
    /// Green task set on the green target group; listener weights follow `steps` (default [100]).
    BlueGreen,
    /// Like blueGreen with a small first step (default steps [10, 100]).
    Canary,
    /// Equal traffic steps (default [25, 50, 75, 100]).
    Linear,
    /// Update the service to the new task definition (ECS rolling update).
    Rolling,
    /// Hand the deployment to AWS CodeDeploy and follow it.
    CodeDeploy,
}

/// How a Lambda alias moves to the new version.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum LambdaStrategy {
    /// A small first step, then all traffic (default steps [10, 100]).
    Canary,
    /// Equal steps (default [25, 50, 75, 100]).
    Linear,
    /// Move the alias at once (steps [100]).
    AllAtOnce,
}

/// CEL for a list of traffic steps: strictly increasing percentages ending at 100.
pub const STEPS_RULE: &str = "self.size() > 0 && self.isSorted() && self[self.size() - 1] == 100";
/// The message users see when [`STEPS_RULE`] fails.
pub const STEPS_MESSAGE: &str =
    "steps must be strictly increasing traffic percentages (1-100) ending at 100, e.g. [10, 100] or [25, 50, 75, 100]";

/// An ECS service target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.strategy in ['rolling', 'codeDeploy']) || !has(self.steps)").message("steps apply to blueGreen, canary and linear only"))]
#[x_kube(validation = Rule::new("self.strategy != 'codeDeploy' || has(self.codeDeploy)").message("strategy codeDeploy needs the codeDeploy settings"))]
#[x_kube(validation = Rule::new("!(self.strategy in ['blueGreen', 'canary', 'linear']) || has(self.traffic)").message("strategies blueGreen, canary and linear need traffic (listener and target groups)"))]
pub struct EcsTarget {
    /// The ECS cluster name.
    #[schemars(length(min = 1, max = 255))]
    pub cluster: String,
    /// The ECS service name. For blueGreen, canary and linear the service must use the
    /// EXTERNAL deployment controller; for codeDeploy, CODE_DEPLOY.
    #[schemars(length(min = 1, max = 255))]
    pub service: String,
    /// The container in the task definition whose image is replaced; nothing else changes.
    #[schemars(length(min = 1, max = 255))]
    pub container: String,
    /// Which artifact goes into the container. Defaults to the artifact named like the container,
    /// or the only artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub artifact: Option<String>,
    /// Other containers of the task definition whose image this Release sets, each from one of
    /// its artifacts (an image pinned by digest): sidecars ship with the release like the main
    /// container. A container not listed keeps the image it has, which the Environment's
    /// `containerImages` policy may refuse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["container"]))]
    pub sidecars: Vec<Sidecar>,
    /// blueGreen | canary | linear | rolling | codeDeploy.
    pub strategy: EcsStrategy,
    /// Traffic percentages for the green target group, strictly increasing, ending at 100.
    /// Defaults by strategy: blueGreen [100], canary [10, 100], linear [25, 50, 75, 100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20), inner(range(min = 1, max = 100)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new(STEPS_RULE).message(STEPS_MESSAGE))]
    pub steps: Option<Vec<i32>>,
    /// How long each intermediate step bakes before the next (Go duration). Defaults to 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub step_bake: Option<String>,
    /// The listener and target groups traffic is shifted between (blueGreen, canary, linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<EcsTraffic>,
    /// CodeDeploy settings (strategy codeDeploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_deploy: Option<CodeDeploySettings>,
    /// Optional hooks that gate traffic (migrations, smoke tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Per-environment differences (cluster, service, traffic), keyed by environment name. Only
    /// what differs needs to be written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8))]
    pub environment_overrides: BTreeMap<String, EcsOverride>,
}

/// A sidecar container and the artifact it runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sidecar {
    /// The container's name in the task definition.
    #[schemars(length(min = 1, max = 255))]
    pub container: String,
    /// The Release artifact (an image) it runs.
    #[schemars(length(min = 1, max = 63))]
    pub artifact: String,
}

/// What differs for an ECS target in one environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EcsOverride {
    /// The ECS cluster in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub cluster: Option<String>,
    /// The ECS service in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub service: Option<String>,
    /// The listener and target groups in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<EcsTraffic>,
}

/// The ALB listener (or listener rule) and the two target groups traffic moves between. Names
/// and tags resolve in each environment's own account, so one Release serves every environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EcsTraffic {
    /// The listener whose forward action is weighted.
    pub listener: ListenerRef,
    /// A listener rule to weight instead of the listener's default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleRef>,
    /// The target group serving the current (blue) version.
    pub blue_target_group: TargetGroupRef,
    /// The target group that receives the new (green) task set.
    pub green_target_group: TargetGroupRef,
}

/// Finds a listener: by ARN, or by load balancer name and port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.arn) != (has(self.loadBalancerName) && has(self.port))").message("set either arn, or loadBalancerName and port"))]
pub struct ListenerRef {
    /// The listener ARN (account-specific; prefer loadBalancerName and port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub arn: Option<String>,
    /// The load balancer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub load_balancer_name: Option<String>,
    /// The listener port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Finds a listener rule: by ARN, by priority on the listener, or by tags (exactly one).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.arn) ? 1 : 0) + (has(self.priority) ? 1 : 0) + (has(self.tags) ? 1 : 0) == 1").message("set exactly one of arn, priority or tags"))]
pub struct RuleRef {
    /// The rule ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub arn: Option<String>,
    /// The rule priority on the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50000))]
    pub priority: Option<i32>,
    /// Tags that identify exactly one rule on the listener (resolved in each environment's
    /// account, like target group tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 10))]
    pub tags: Option<BTreeMap<String, String>>,
}

/// Finds a target group: by name, ARN or tags (exactly one).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.name) ? 1 : 0) + (has(self.arn) ? 1 : 0) + (has(self.tags) ? 1 : 0) == 1").message("set exactly one of name, arn or tags"))]
pub struct TargetGroupRef {
    /// The target group name (unique per account and region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub name: Option<String>,
    /// The target group ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub arn: Option<String>,
    /// Tags that identify exactly one target group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 10))]
    pub tags: Option<BTreeMap<String, String>>,
}

/// CodeDeploy settings for an ECS service with the CODE_DEPLOY deployment controller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CodeDeploySettings {
    /// The CodeDeploy application.
    #[schemars(length(min = 1, max = 100))]
    pub application: String,
    /// The ECS deployment group (BLUE_GREEN) of the service in that application.
    #[schemars(length(min = 1, max = 100))]
    pub deployment_group: String,
    /// The deployment configuration, e.g. CodeDeployDefault.ECSCanary10Percent5Minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub deployment_config: Option<String>,
    /// The container port the load balancer targets.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
}

/// A Lambda function target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.strategy != 'allAtOnce' || !has(self.steps) || self.steps == [100]").message("allAtOnce moves all traffic in one step; remove steps"))]
pub struct LambdaTarget {
    /// The Lambda function to update, by name, in the environment's account.
    #[schemars(length(min = 1, max = 64))]
    pub function_name: String,
    /// The alias that serves traffic.
    #[serde(default = "default_alias")]
    #[schemars(length(min = 1, max = 128))]
    pub alias: String,
    /// Which artifact holds the code. Defaults to the only artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub artifact: Option<String>,
    /// canary | linear | allAtOnce.
    pub strategy: LambdaStrategy,
    /// Alias weights for the new version, strictly increasing, ending at 100.
    /// Defaults by strategy: canary [10, 100], linear [25, 50, 75, 100], allAtOnce [100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20), inner(range(min = 1, max = 100)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new(STEPS_RULE).message(STEPS_MESSAGE))]
    pub steps: Option<Vec<i32>>,
    /// How long each intermediate step bakes before the next (Go duration). Defaults to 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub step_bake: Option<String>,
    /// Optional hooks that gate traffic (migrations, smoke tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Per-environment function names, keyed by environment name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8))]
    pub environment_overrides: BTreeMap<String, LambdaOverride>,
}

fn default_alias() -> String {
    "live".to_string()
}

impl EcsTarget {
    /// The cluster in environment `env`: its override, else `cluster`.
    pub fn cluster_for(&self, env: &str) -> &str {
        self.environment_overrides.get(env).and_then(|o| o.cluster.as_deref()).unwrap_or(&self.cluster)
    }

    /// The service in environment `env`: its override, else `service`.
    pub fn service_for(&self, env: &str) -> &str {
        self.environment_overrides.get(env).and_then(|o| o.service.as_deref()).unwrap_or(&self.service)
    }

    /// The traffic in environment `env`: its override, else `traffic`.
    pub fn traffic_for(&self, env: &str) -> Option<&EcsTraffic> {
        self.environment_overrides.get(env).and_then(|o| o.traffic.as_ref()).or(self.traffic.as_ref())
    }
}

impl LambdaTarget {
    /// The function in environment `env`: its override, else `functionName`.
    pub fn function_for(&self, env: &str) -> &str {
        self.environment_overrides.get(env).and_then(|o| o.function_name.as_deref()).unwrap_or(&self.function_name)
    }

    /// The alias in environment `env`: its override, else `alias`.
    pub fn alias_for(&self, env: &str) -> &str {
        self.environment_overrides.get(env).and_then(|o| o.alias.as_deref()).unwrap_or(&self.alias)
    }
}

/// What differs for a Lambda target in one environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LambdaOverride {
    /// The function name in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub function_name: Option<String>,
    /// The alias in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub alias: Option<String>,
}

/// Hooks that must succeed for traffic to move.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// Runs after the new version exists and before the first traffic change (e.g. a
    /// migration). Failure rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_traffic: Option<Hook>,
    /// Runs once the new version has all traffic, before the bake (e.g. smoke tests). Failure
    /// rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_traffic: Option<Hook>,
}

/// A hook: invoke a Lambda function or run an ECS task, and wait for it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.lambdaFunction) != has(self.ecsTaskDefinition)").message("set exactly one of lambdaFunction or ecsTaskDefinition"))]
pub struct Hook {
    /// A Lambda function to invoke; a function error fails the hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 140))]
    pub lambda_function: Option<String>,
    /// An ECS task definition (family or family:revision) to run in the target's cluster; a
    /// non-zero exit fails the hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub ecs_task_definition: Option<String>,
    /// How long to wait for the hook before it counts as failed (Go duration). Defaults to 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub timeout: Option<String>,
}

/// Overall phase of a Release.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ReleasePhase {
    /// No Promotion has started yet.
    #[default]
    Pending,
    /// A Promotion is waiting, deploying or baking.
    Progressing,
    /// Every environment succeeded.
    Succeeded,
    /// A deployment was rolled back; retry the Promotion or ship a new Release.
    RolledBack,
    /// A Promotion failed without traffic at risk; see its status.
    Failed,
}

/// Phase of a Release in one environment.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ReleaseEnvironmentPhase {
    /// Not reached yet: an upstream environment has not succeeded.
    #[default]
    Pending,
    /// The release may enter this non-auto environment; create the Promotion
    /// (`kubectl kiln promote`).
    AwaitingPromotion,
    /// The Promotion is queued behind another of the same service.
    Queued,
    /// Gates other than approvals are not met.
    WaitingForGates,
    /// Approvals are missing.
    WaitingForApproval,
    /// A freeze window blocks the Promotion.
    Frozen,
    /// Traffic is moving.
    Deploying,
    /// Watching the rollback signals.
    Baking,
    /// Deployed and baked.
    Succeeded,
    /// Restoring the previous state.
    RollingBack,
    /// The previous state was restored.
    RolledBack,
    /// The Promotion failed.
    Failed,
    /// A person aborted the Promotion.
    Aborted,
}

/// Observed state of a Release, aggregated for dashboards.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending | Progressing | Succeeded | RolledBack | Failed.
    #[serde(default)]
    pub phase: ReleasePhase,
    /// The environment the release is in now (the last one it entered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_environment: Option<String>,
    /// Per-environment progress, in promotion order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<ReleaseEnvironmentStatus>,
    /// Ready, Reconciling and Stalled (kstatus). Stalled with reason InvalidSpec says what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Progress of a Release in one environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseEnvironmentStatus {
    /// The environment.
    pub name: String,
    /// Where the release stands in this environment.
    #[serde(default)]
    pub phase: ReleaseEnvironmentPhase,
    /// The Promotion carrying the release into this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<String>,
    /// When the deployment started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// When the bake ends (while baking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_ends_at: Option<Time>,
    /// When the release finished baking here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baked_at: Option<Time>,
    /// A one-line summary (the blocking gate, the rollback cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
