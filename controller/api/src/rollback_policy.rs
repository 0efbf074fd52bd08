//! `RollbackPolicy`: the signals that roll a deployment back while it bakes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{DURATION_MESSAGE, DURATION_RULE, SLO_DURATION_MESSAGE, SLO_DURATION_RULE};

/// CEL: a signal-read interval, 1s to 720h (reads are shared and at most once a second).
const INTERVAL_RULE: &str = "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('720h')";
/// The message users see when [`INTERVAL_RULE`] fails.
const INTERVAL_MESSAGE: &str = "must be a duration from 1s to 720h such as 2s, 10s or 1m";

/// The signals watched during a bake. Any breach rolls the deployment back.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "RollbackPolicy",
    namespaced,
    status = "RollbackPolicyStatus",
    shortname = "rbp",
    category = "kiln",
    doc = "CloudWatch alarms, metric thresholds and an error-budget burn limit that roll a baking deployment back.",
    printcolumn(name = "Alarms", type_ = "integer", json_path = ".status.alarmSelectors"),
    printcolumn(name = "Interval", type_ = "string", json_path = ".spec.interval"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.alarms.size() + self.metrics.size() > 0 || has(self.errorBudget)").message("a RollbackPolicy needs at least one alarm, metric or errorBudget"))]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicySpec {
    /// CloudWatch alarms (metric or composite) in the environment's account. Any alarm in ALARM
    /// during the bake is a breach, even if it recovered between two polls. A named alarm that
    /// does not exist is a breach (fail closed).
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub alarms: Vec<AlarmSelector>,
    /// Metric thresholds evaluated with CloudWatch GetMetricData.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub metrics: Vec<MetricTrigger>,
    /// Error-budget burn limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget: Option<ErrorBudget>,
    /// How INSUFFICIENT_DATA alarms and metrics without datapoints count: ignore | breach.
    #[serde(default)]
    pub missing_data: MissingData,
    /// How often signals are read while baking (Go duration). Reads are shared by every bake in
    /// an account, so short intervals are cheap.
    #[serde(default = "default_interval")]
    #[x_kube(validation = Rule::new(INTERVAL_RULE).message(INTERVAL_MESSAGE))]
    #[schemars(length(max = 32))]
    pub interval: String,
}

fn default_interval() -> String {
    "2s".to_string()
}

/// Selects alarms by exact name or by name prefix (exactly one).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.prefix)").message("set exactly one of name or prefix"))]
pub struct AlarmSelector {
    /// An alarm name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,
    /// An alarm name prefix; every matching alarm is watched. A prefix that matches nothing is a
    /// breach (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub prefix: Option<String>,
}

/// How missing data counts.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum MissingData {
    /// INSUFFICIENT_DATA and empty metrics are not breaches.
    #[default]
    Ignore,
    /// INSUFFICIENT_DATA and empty metrics are breaches.
    Breach,
}

/// A threshold on a CloudWatch metric.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.max) || has(self.min)").message("set max, min or both"))]
pub struct MetricTrigger {
    /// A name for status and evidence, e.g. error-rate.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The metric to read.
    pub query: MetricQuery,
    /// Breach when the value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Breach when the value is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The value must be out of bounds this long to breach (Go duration; default: one datapoint).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub for_duration: Option<String>,
}

/// A CloudWatch metric query: a metric with a statistic, or a metric-math expression over them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MetricQuery {
    /// The metric namespace, e.g. AWS/ApplicationELB.
    #[schemars(length(min = 1, max = 255))]
    pub namespace: String,
    /// The metric name, e.g. HTTPCode_Target_5XX_Count.
    #[schemars(length(min = 1, max = 255))]
    pub metric_name: String,
    /// Metric dimensions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 30))]
    pub dimensions: BTreeMap<String, String>,
    /// Sum | Average | Minimum | Maximum | SampleCount.
    #[serde(default)]
    pub stat: Statistic,
    /// Datapoint period in seconds (a multiple of 60, or 1, 5, 10, 30 for high resolution).
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 86400))]
    pub period_seconds: i32,
}

fn default_period() -> i32 {
    60
}

/// A CloudWatch statistic.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Statistic {
    /// Sum of values.
    #[default]
    Sum,
    /// Average value.
    Average,
    /// Smallest value.
    Minimum,
    /// Largest value.
    Maximum,
    /// Number of values.
    SampleCount,
}

/// An error-budget burn trigger: breach when more than `maxBurnPercent` of the budget of
/// `period` is burned within `window`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudget {
    /// The availability objective in percent, e.g. 99.9.
    #[schemars(range(min = 50.0, max = 99.9999))]
    pub objective: f64,
    /// The SLO period the budget covers (Go duration, at most 2160h). Defaults to 720h (30 days).
    #[serde(default = "default_slo_period")]
    #[x_kube(validation = Rule::new(SLO_DURATION_RULE).message(SLO_DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub period: String,
    /// The look-back window for the burn (Go duration), e.g. 10m; at most the period.
    #[x_kube(validation = Rule::new(SLO_DURATION_RULE).message(SLO_DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub window: String,
    /// Breach when more than this percent of the period's budget burns within the window.
    #[schemars(range(min = 0.001, max = 100.0))]
    pub max_burn_percent: f64,
    /// Count of failed requests (summed over the window).
    pub errors: MetricQuery,
    /// Count of all requests (summed over the window).
    pub total: MetricQuery,
}

fn default_slo_period() -> String {
    "720h".to_string()
}

/// Observed state of a RollbackPolicy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many alarm selectors the policy has.
    #[serde(default)]
    pub alarm_selectors: i32,
    /// Ready is False with reason InvalidSpec when the policy cannot be evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
