//! Types and CEL rules shared by several kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// CEL: a DNS-1123 label (lowercase alphanumerics and '-', at most 63 characters).
pub const DNS_LABEL_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.size() <= 63";
/// The message users see when [`DNS_LABEL_RULE`] fails.
pub const DNS_LABEL_MESSAGE: &str = "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

/// CEL: a Go-style duration ("90s", "5m", "1h30m", "250ms") that is greater than zero.
pub const DURATION_RULE: &str = "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('720h')";
/// The message users see when [`DURATION_RULE`] fails.
pub const DURATION_MESSAGE: &str =
    "must be a positive duration of at most 720h (30 days) such as 30s, 5m, 1h30m (units: ms, s, m, h)";

/// CEL: an SLO period or error-budget window, positive and at most 2160h (90 days).
pub const SLO_DURATION_RULE: &str = "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('2160h')";
/// The message users see when [`SLO_DURATION_RULE`] fails.
pub const SLO_DURATION_MESSAGE: &str =
    "must be a positive duration of at most 2160h (90 days) such as 10m, 1h or 720h (units: ms, s, m, h)";

/// CEL: a Go-style duration that may be zero ("0s": no wait at all).
pub const DURATION_OR_ZERO_RULE: &str =
    "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) <= duration('720h')";
/// The message users see when [`DURATION_OR_ZERO_RULE`] fails.
pub const DURATION_OR_ZERO_MESSAGE: &str =
    "must be a duration of at most 720h (30 days) such as 0s, 30s, 5m, 1h30m (units: ms, s, m, h; 0s for none)";

/// An approval quorum: `count` distinct people holding `role`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequirement {
    /// The role an approver must act in, e.g. `security`, `product`, `release-engineering`, `sre`.
    #[x_kube(validation = Rule::new(DNS_LABEL_RULE).message(DNS_LABEL_MESSAGE))]
    #[schemars(length(max = 63))]
    pub role: String,
    /// How many distinct people must approve in this role.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// One person's approval, bound to the identity that wrote it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The approver's Kubernetes username (on a cluster with kiln's admission policy this must
    /// equal the identity making the request; nobody can approve in another's name).
    #[schemars(length(min = 1, max = 253))]
    pub user: String,
    /// The role the approver acts in; on a cluster with kiln's admission policy it must be one
    /// of the roles the user's groups map to.
    #[x_kube(validation = Rule::new(DNS_LABEL_RULE).message(DNS_LABEL_MESSAGE))]
    #[schemars(length(max = 63))]
    pub role: String,
    /// When the approval was given (RFC 3339).
    pub at: Time,
    /// Free text for the audit trail, e.g. a CAB reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

/// What kind of change a Release is. Freeze exceptions are granted by type.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseType {
    /// A planned change (the default).
    #[default]
    Standard,
    /// A pre-approved, low-risk change.
    Normal,
    /// An urgent fix for an ongoing incident; may pass a freeze with the window's exception approvals.
    Emergency,
    /// A targeted fix; may pass a freeze with the window's exception approvals.
    Hotfix,
}

impl ReleaseType {
    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseType::Standard => "standard",
            ReleaseType::Normal => "normal",
            ReleaseType::Emergency => "emergency",
            ReleaseType::Hotfix => "hotfix",
        }
    }
}

impl std::fmt::Display for ReleaseType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition types kiln sets (kstatus-compatible).
pub mod condition {
    /// The resource reached its desired state (a Promotion succeeded, a Release is fully promoted,
    /// a policy or window is valid).
    pub const READY: &str = "Ready";
    /// kiln is actively working on the resource.
    pub const RECONCILING: &str = "Reconciling";
    /// kiln cannot make progress without a change from a human (invalid spec, failed step).
    pub const STALLED: &str = "Stalled";
}
