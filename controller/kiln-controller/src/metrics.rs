//! What `/metrics` serves: reconciles, promotions, rollbacks, breach and rollback latencies, and
//! the four DORA keys, in the OpenMetrics text format (prometheus-client).
//!
//! Label values are bounded on purpose: kinds, errors, results and phases are `&'static str`
//! chosen by kiln, rollback causes are mapped onto a fixed set, and environments are the (few)
//! `Environment` objects an installation has. Nothing derived from an error message or a user
//! string beyond the environment name ever becomes a label.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kiln_api::RollbackCause;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Reconciles take milliseconds unless an AWS call is slow; the tail matters up to the 30 s
/// mark where requeues start to pile up.
const RECONCILE_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Breach → detected: the objective is p99 ≤ 3 s, so the buckets are dense around it.
const BREACH_BUCKETS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];
/// Rollback started → traffic restored: a weight flip is sub-second, an ECS task set drain is
/// minutes.
const ROLLBACK_BUCKETS: [f64; 14] = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0];
/// Release created → succeeded in an environment: seconds with no bake, up to a day with
/// approvals and freezes.
const LEAD_TIME_BUCKETS: [f64; 12] =
    [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0];
/// Breach started → restored (DORA "time to restore"): from an automatic rollback (seconds) to
/// a human fixing forward (hours).
const RESTORE_BUCKETS: [f64; 13] =
    [1.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvLabels {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalReadLabels {
    environment: String,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PromotionLabels {
    environment: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RollbackLabels {
    environment: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Deployments and failed deployments per environment since the process started, the inputs of
/// the change failure ratio gauge.
#[derive(Debug, Default, Clone, Copy)]
struct DeployCounts {
    deployments: u64,
    failures: u64,
}

/// kiln's Prometheus metrics (prefix `kiln_`). Cheap to update from any task; share it as
/// `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<KindLabels>,
    promotions: Family<PromotionLabels, Counter>,
    deployments: Family<EnvLabels, Counter>,
    change_failure_ratio: Family<EnvLabels, Gauge<f64, AtomicU64>>,
    rollbacks: Family<RollbackLabels, Counter>,
    breach_detection: HistogramFamily<EnvLabels>,
    rollback_duration: HistogramFamily<EnvLabels>,
    lead_time: HistogramFamily<EnvLabels>,
    time_to_restore: HistogramFamily<EnvLabels>,
    leader: Gauge,
    promotions_in_phase: Family<PhaseLabels, Gauge>,
    unreadable: Family<KindLabels, Counter>,
    signal_read_failures: Family<SignalReadLabels, Counter>,
    // The ratio gauge is derived from these; a mutex keeps numerator and denominator consistent.
    deploy_counts: Mutex<HashMap<String, DeployCounts>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn env(environment: &str) -> EnvLabels {
    EnvLabels { environment: environment.to_string() }
}

impl Metrics {
    /// Registers every kiln metric family. A labelled family appears in `/metrics` with its first
    /// series (prometheus-client omits families without any); `kiln_leader` is there from the
    /// start.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kiln");
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register("reconciles", "Reconciles completed without error, by kind", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and error class",
            reconcile_errors.clone(),
        );
        let reconcile_duration: HistogramFamily<KindLabels> =
            Family::new_with_constructor(|| Histogram::new(RECONCILE_BUCKETS));
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile (successful or not), by kind",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let promotions = Family::<PromotionLabels, Counter>::default();
        registry.register(
            "promotions",
            "Promotions finished, by environment and result (succeeded, rolled_back, failed, aborted)",
            promotions.clone(),
        );
        let deployments = Family::<EnvLabels, Counter>::default();
        registry.register(
            "deployments",
            "Deployments that reached an environment (traffic shifted to the new version), by environment; \
             DORA deployment frequency is the rate of this counter, e.g. increase(kiln_deployments_total[1d])",
            deployments.clone(),
        );
        let change_failure_ratio = Family::<EnvLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "change_failure_ratio",
            "DORA change failure rate since the controller started: deployments that were rolled back or \
             failed divided by all deployments, by environment",
            change_failure_ratio.clone(),
        );
        let rollbacks = Family::<RollbackLabels, Counter>::default();
        registry.register(
            "rollbacks",
            "Rollbacks started, by environment and cause (alarm, metric, errorBudget, hookFailed, \
             deploymentFailed, abort, superseded, manual, other)",
            rollbacks.clone(),
        );
        let breach_detection: HistogramFamily<EnvLabels> =
            Family::new_with_constructor(|| Histogram::new(BREACH_BUCKETS));
        registry.register_with_unit(
            "breach_detection",
            "Time from a breach starting (alarm state change or metric sample) to kiln acting on it, by environment",
            Unit::Seconds,
            breach_detection.clone(),
        );
        let rollback_duration: HistogramFamily<EnvLabels> =
            Family::new_with_constructor(|| Histogram::new(ROLLBACK_BUCKETS));
        registry.register_with_unit(
            "rollback_duration",
            "Time from a rollback starting to traffic being fully restored to the previous version, by environment",
            Unit::Seconds,
            rollback_duration.clone(),
        );
        let lead_time: HistogramFamily<EnvLabels> = Family::new_with_constructor(|| Histogram::new(LEAD_TIME_BUCKETS));
        registry.register_with_unit(
            "lead_time",
            "DORA lead time for changes: time from a Release being created to its promotion succeeding in an \
             environment, by environment",
            Unit::Seconds,
            lead_time.clone(),
        );
        let time_to_restore: HistogramFamily<EnvLabels> =
            Family::new_with_constructor(|| Histogram::new(RESTORE_BUCKETS));
        registry.register_with_unit(
            "time_to_restore",
            "DORA time to restore service: time from a breach starting to the environment being restored, \
             by environment",
            Unit::Seconds,
            time_to_restore.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica holds the leader Lease and acts, 0 when it stands by",
            leader.clone(),
        );
        // Not `promotions`: that name is taken by the counter family above, and OpenMetrics
        // requires family names to be unique.
        let promotions_in_phase = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "promotions_in_phase",
            "Promotions currently in each phase, as last counted by the leader",
            promotions_in_phase.clone(),
        );
        let unreadable = Family::<KindLabels, Counter>::default();
        registry.register(
            "unreadable_objects",
            "Watch events carrying an object kiln's types cannot read, by kind (see the object's Unreadable Events)",
            unreadable.clone(),
        );
        let signal_read_failures = Family::<SignalReadLabels, Counter>::default();
        registry.register(
            "signal_read_failures",
            "Failed reads of an in-flight Promotion's rollback signals, by environment and error class",
            signal_read_failures.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            promotions,
            deployments,
            change_failure_ratio,
            rollbacks,
            breach_detection,
            rollback_duration,
            lead_time,
            time_to_restore,
            leader,
            promotions_in_phase,
            unreadable,
            signal_read_failures,
            deploy_counts: Mutex::new(HashMap::new()),
        }
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a failing label encoder would be a bug in this
        // module, and a partial scrape is more useful than none.
        if let Err(error) = encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }

    /// A reconcile of `kind` finished without error after `duration`.
    pub fn reconciled(&self, kind: &'static str, duration: Duration) {
        let labels = KindLabels { kind };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration.get_or_create(&labels).observe(duration.as_secs_f64());
    }

    /// A watch event carried an object of `kind` that kiln's types cannot read.
    pub fn unreadable_object(&self, kind: &str) {
        // Lower case, like the reconcile metrics' `kind`; a fixed set of values.
        let kind = match kind {
            "Release" => "release",
            "Promotion" => "promotion",
            "Environment" => "environment",
            "FreezeWindow" => "freezewindow",
            "RollbackPolicy" => "rollbackpolicy",
            _ => "other",
        };
        self.unreadable.get_or_create(&KindLabels { kind }).inc();
    }

    /// A read of an in-flight Promotion's rollback signals in `environment` failed with the error
    /// class `error` (an `AwsError::metric_label()`).
    pub fn signal_read_failed(&self, environment: &str, error: &'static str) {
        self.signal_read_failures.get_or_create(&SignalReadLabels { environment: environment.to_owned(), error }).inc();
    }

    /// A reconcile of `kind` failed with the error class `error` (an error enum's
    /// `metric_label()`, never its message) after `duration`.
    pub fn reconcile_failed(&self, kind: &'static str, error: &'static str, duration: Duration) {
        self.reconcile_errors.get_or_create(&ErrorLabels { kind, error }).inc();
        self.reconcile_duration.get_or_create(&KindLabels { kind }).observe(duration.as_secs_f64());
    }

    /// A promotion to `environment` finished with `result` (`succeeded`, `rolled_back`, `failed`
    /// or `aborted`). `deployed` says whether it got as far as shifting traffic: only those count
    /// as deployments (DORA deployment frequency), and those among them that were rolled back
    /// or failed count against the change failure ratio. An abort is an operator's choice, not
    /// a failed change, so it is counted as neither a deployment nor a failure.
    pub fn promotion_finished(&self, environment: &str, result: &'static str, deployed: bool) {
        self.promotions.get_or_create(&PromotionLabels { environment: environment.to_string(), result }).inc();
        let failed = match result {
            "succeeded" => false,
            "rolled_back" | "failed" => true,
            _ => return,
        };
        if !deployed {
            return;
        }
        let labels = env(environment);
        self.deployments.get_or_create(&labels).inc();
        let mut counts = self.deploy_counts.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = counts.entry(environment.to_string()).or_default();
        entry.deployments += 1;
        if failed {
            entry.failures += 1;
        }
        let ratio = entry.failures as f64 / entry.deployments as f64;
        self.change_failure_ratio.get_or_create(&labels).set(ratio);
    }

    /// A rollback started in `environment` because of `cause` (the label values are bounded by
    /// the enum).
    pub fn rollback(&self, environment: &str, cause: RollbackCause) {
        let labels = RollbackLabels { environment: environment.to_string(), cause: cause.as_str() };
        self.rollbacks.get_or_create(&labels).inc();
    }

    /// kiln acted on a breach in `environment` `latency_seconds` after it started.
    pub fn breach_detected(&self, environment: &str, latency_seconds: f64) {
        self.breach_detection.get_or_create(&env(environment)).observe(latency_seconds);
    }

    /// A rollback in `environment` restored traffic `seconds` after it started.
    pub fn rollback_completed(&self, environment: &str, seconds: f64) {
        self.rollback_duration.get_or_create(&env(environment)).observe(seconds);
    }

    /// A Release succeeded in `environment` `seconds` after it was created (DORA lead time).
    pub fn lead_time(&self, environment: &str, seconds: f64) {
        self.lead_time.get_or_create(&env(environment)).observe(seconds);
    }

    /// `environment` was restored `seconds` after a breach started (DORA time to restore).
    pub fn time_to_restore(&self, environment: &str, seconds: f64) {
        self.time_to_restore.get_or_create(&env(environment)).observe(seconds);
    }

    /// Whether this replica leads (`kiln_leader` 1) or stands by (0).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// How many Promotions are in `phase` now.
    pub fn set_promotions_in_phase(&self, phase: &'static str, count: i64) {
        self.promotions_in_phase.get_or_create(&PhaseLabels { phase }).set(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the one sample line that starts with `series` (name and labels).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_family_is_exposed_with_help_and_labels() {
        let m = Metrics::new();
        m.reconciled("Release", Duration::from_millis(20));
        m.reconcile_failed("Promotion", "aws", Duration::from_millis(300));
        m.promotion_finished("prod", "succeeded", true);
        m.rollback("prod", RollbackCause::Alarm);
        m.breach_detected("prod", 1.5);
        m.rollback_completed("prod", 4.0);
        m.lead_time("prod", 600.0);
        m.time_to_restore("prod", 42.0);
        m.set_leader(true);
        m.set_promotions_in_phase("Baking", 3);
        let text = m.render();
        for family in [
            "kiln_reconciles",
            "kiln_reconcile_errors",
            "kiln_reconcile_duration_seconds",
            "kiln_promotions",
            "kiln_deployments",
            "kiln_change_failure_ratio",
            "kiln_rollbacks",
            "kiln_breach_detection_seconds",
            "kiln_rollback_duration_seconds",
            "kiln_lead_time_seconds",
            "kiln_time_to_restore_seconds",
            "kiln_leader",
            "kiln_promotions_in_phase",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "no HELP for {family} in\n{text}");
            assert!(text.contains(&format!("# TYPE {family} ")), "no TYPE for {family} in\n{text}");
        }
        assert_eq!(sample(&text, "kiln_reconciles_total{kind=\"Release\"}"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "kiln_reconcile_errors_total{kind=\"Promotion\",error=\"aws\"}"), Some(1.0));
        // Failed reconciles are timed too.
        assert_eq!(sample(&text, "kiln_reconcile_duration_seconds_count{kind=\"Promotion\"}"), Some(1.0));
        assert_eq!(sample(&text, "kiln_reconcile_duration_seconds_bucket{le=\"0.025\",kind=\"Release\"}"), Some(1.0));
        assert_eq!(sample(&text, "kiln_promotions_total{environment=\"prod\",result=\"succeeded\"}"), Some(1.0));
        assert_eq!(sample(&text, "kiln_deployments_total{environment=\"prod\"}"), Some(1.0));
        assert_eq!(sample(&text, "kiln_rollbacks_total{environment=\"prod\",cause=\"alarm\"}"), Some(1.0));
        assert_eq!(sample(&text, "kiln_breach_detection_seconds_sum{environment=\"prod\"}"), Some(1.5));
        assert_eq!(sample(&text, "kiln_breach_detection_seconds_bucket{le=\"2.0\",environment=\"prod\"}"), Some(1.0));
        assert_eq!(sample(&text, "kiln_rollback_duration_seconds_sum{environment=\"prod\"}"), Some(4.0));
        assert_eq!(sample(&text, "kiln_lead_time_seconds_sum{environment=\"prod\"}"), Some(600.0));
        assert_eq!(sample(&text, "kiln_time_to_restore_seconds_sum{environment=\"prod\"}"), Some(42.0));
        assert_eq!(sample(&text, "kiln_leader"), Some(1.0));
        assert_eq!(sample(&text, "kiln_promotions_in_phase{phase=\"Baking\"}"), Some(3.0));
        assert!(text.contains("increase(kiln_deployments_total[1d])"), "deployment frequency is documented");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn change_failure_ratio_counts_failed_deployments_per_environment() {
        let m = Metrics::new();
        m.promotion_finished("prod", "succeeded", true);
        m.promotion_finished("prod", "succeeded", true);
        m.promotion_finished("prod", "rolled_back", true);
        m.promotion_finished("prod", "failed", true);
        // Not deployments: failed before shifting traffic, aborted.
        m.promotion_finished("prod", "failed", false);
        m.promotion_finished("prod", "aborted", true);
        m.promotion_finished("stg", "succeeded", true);
        let text = m.render();
        assert_eq!(sample(&text, "kiln_deployments_total{environment=\"prod\"}"), Some(4.0), "{text}");
        assert_eq!(sample(&text, "kiln_change_failure_ratio{environment=\"prod\"}"), Some(0.5), "{text}");
        assert_eq!(sample(&text, "kiln_change_failure_ratio{environment=\"stg\"}"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "kiln_promotions_total{environment=\"prod\",result=\"failed\"}"), Some(2.0));
        assert_eq!(sample(&text, "kiln_promotions_total{environment=\"prod\",result=\"aborted\"}"), Some(1.0));
    }

    #[test]
    fn rollbacks_are_counted_by_cause() {
        let m = Metrics::new();
        for cause in RollbackCause::ALL {
            m.rollback("prod", cause);
        }
        m.rollback("prod", RollbackCause::ErrorBudget);
        let text = m.render();
        assert_eq!(sample(&text, "kiln_rollbacks_total{environment=\"prod\",cause=\"errorBudget\"}"), Some(2.0));
        for cause in RollbackCause::ALL {
            let series = format!("kiln_rollbacks_total{{environment=\"prod\",cause=\"{cause}\"}}");
            assert!(sample(&text, &series).is_some(), "{series} in {text}");
        }
    }
}
