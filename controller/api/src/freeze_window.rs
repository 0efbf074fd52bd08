//! `FreezeWindow`: times when Promotions may not deploy (weekends, holidays, incidents).
//! Rollbacks are never blocked by a freeze.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{ApprovalRequirement, ReleaseType};

/// Change-freeze periods for some environments. A window in the controller's namespace applies
/// to every namespace; elsewhere it applies to Promotions in its own namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "FreezeWindow",
    namespaced,
    status = "FreezeWindowStatus",
    shortname = "freeze",
    category = "kiln",
    doc = "Change-freeze periods (weekly in a time zone, or absolute) for some environments.",
    printcolumn(name = "Environments", type_ = "string", json_path = ".spec.environments"),
    printcolumn(name = "Active", type_ = "boolean", json_path = ".status.active"),
    printcolumn(name = "Until", type_ = "date", json_path = ".status.activeUntil"),
    printcolumn(name = "Next", type_ = "date", json_path = ".status.nextStart"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.recurring.size() + self.absolute.size() > 0").message("a FreezeWindow needs at least one recurring or absolute span"))]
#[serde(rename_all = "camelCase")]
pub struct FreezeWindowSpec {
    /// The environments this window freezes. Empty means every environment.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(e, e.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && e.size() <= 63)").message("environments must be Environment names (DNS-1123 labels)"))]
    pub environments: Vec<String>,
    /// Only these services are frozen. Empty means every service.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub services: Vec<String>,
    /// IANA time zone the recurring spans are written in, e.g. America/New_York. Daylight
    /// saving time is handled: "Friday 17:00" is 17:00 local time all year.
    #[serde(default = "utc")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// Weekly spans, e.g. Friday 17:00 to Monday 09:00. A span may cross the end of the week.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub recurring: Vec<RecurringSpan>,
    /// One-off spans with absolute start and end times (holidays, incidents, billing cycles).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub absolute: Vec<AbsoluteSpan>,
    /// Who may deploy during this freeze anyway. Rollbacks never need an exception.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exceptions: Option<FreezeExceptions>,
    /// Why this window exists, shown in gate messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

fn utc() -> String {
    "UTC".to_string()
}

/// A day of the week.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

/// A point in the week, in the window's time zone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WeeklyTime {
    /// The day of the week.
    pub day: Weekday,
    /// The local time of day, 24-hour HH:MM.
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("time must be HH:MM in 24-hour form, e.g. 09:00 or 17:30"))]
    #[schemars(length(max = 5))]
    pub time: String,
}

/// A weekly span from one point in the week to the next occurrence of another.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from.day != self.to.day || self.from.time != self.to.time").message("from and to must differ (a span from a point to itself is empty)"))]
pub struct RecurringSpan {
    /// Where the freeze starts each week.
    pub from: WeeklyTime,
    /// Where it ends (the next occurrence after `from`, possibly in the following week).
    pub to: WeeklyTime,
}

/// A one-off span.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.end > self.start").message("end must be after start"))]
pub struct AbsoluteSpan {
    /// Start (RFC 3339 with offset, e.g. 2026-12-21T00:00:00-05:00).
    pub start: Time,
    /// End, exclusive.
    pub end: Time,
    /// Why (shown in gate messages), e.g. holidays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

/// Who may deploy during a freeze.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FreezeExceptions {
    /// Release types that may ask for an exception (e.g. emergency, hotfix).
    #[serde(default)]
    #[schemars(length(max = 4))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub release_types: Vec<ReleaseType>,
    /// Approvals (on the Promotion) the exception needs, in addition to the environment's own.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub approvals: Vec<ApprovalRequirement>,
}

/// Observed state of a FreezeWindow.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FreezeWindowStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Whether the window is in effect now.
    #[serde(default)]
    pub active: bool,
    /// While active: when the freeze (including adjoining spans) ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until: Option<Time>,
    /// When the next freeze starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<Time>,
    /// Ready is False with reason InvalidSpec for an unknown time zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
