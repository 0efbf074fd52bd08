//! Signals: alarm states, metric datapoints and error-budget counts, read from CloudWatch for a
//! RollbackPolicy and shaped as [`kiln_core::signals::SignalObservations`].
//!
//! Alarm reads are shared per account and region ([`AlarmCache`]): every bake in an account asks
//! the same cache, which reads the union of their selectors at most once per interval, in
//! batches of at most 100 names per DescribeAlarms call (AWS's limit).

pub mod cloudwatch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kiln_api::rollback_policy::{MetricQuery, RollbackPolicySpec};
use kiln_core::signals::{AlarmObservation, AlarmState, BudgetObservation, MetricObservation, SignalObservations};
use tokio::sync::Mutex;

use crate::error::{AwsError, Result, Scope};

/// DescribeAlarms accepts at most this many alarm names per call.
pub const MAX_NAMES_PER_CALL: usize = 100;

/// A CloudWatch GetMetricData request for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRequest {
    /// The query.
    pub query: MetricQuery,
    /// The datapoint period in seconds (overrides the query's for budget sums).
    pub period_seconds: i32,
}

/// The CloudWatch calls kiln makes. The real one is [`cloudwatch::CloudWatch`]; tests use
/// `fake::FakeCloudWatch`.
#[async_trait]
pub trait AlarmSource: Send + Sync {
    /// The time of a read, by the source's clock: the wall clock for CloudWatch, the test's clock
    /// for a fake (so a test that moves its clock sees reads as fresh as a real bake would).
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    /// Alarms (metric and composite) by exact name; at most [`MAX_NAMES_PER_CALL`] names.
    async fn alarms_by_name(&self, names: &[String]) -> Result<Vec<AlarmObservation>>;
    /// Alarms (metric and composite) whose names start with `prefix`, all pages.
    async fn alarms_by_prefix(&self, prefix: &str) -> Result<Vec<AlarmObservation>>;
    /// State changes of `name` since `since`, oldest first; `Ok(None)` when the account does not
    /// provide history (not permitted, or an emulator without DescribeAlarmHistory). Throttling
    /// and 5xx are errors (retry), not "unavailable".
    async fn alarm_history(&self, name: &str, since: Timestamp) -> Result<Option<Vec<(Timestamp, AlarmState)>>>;
    /// Datapoints of each request between `start` and `end`, in request order.
    async fn metric_data(
        &self,
        requests: &[MetricRequest],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Vec<(Timestamp, f64)>>>;
}

/// A selector not asked for by any read within this many intervals is dropped from the cache:
/// the bake that registered it has finished.
pub const RETAIN_INTERVALS: u32 = 3;

/// One selector of an alarm read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Selector {
    Name(String),
    Prefix(String),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Name(n) => write!(f, "alarm name {n:?}"),
            Selector::Prefix(p) => write!(f, "alarm prefix {p:?}"),
        }
    }
}

#[derive(Default)]
struct CacheState {
    /// Every selector asked for recently, with when it was last asked.
    selectors: HashMap<Selector, tokio::time::Instant>,
    read_at: Option<tokio::time::Instant>,
    observed_at: Option<Timestamp>,
    alarms: HashMap<String, AlarmObservation>,
    /// Selectors CloudWatch refused in the last read (e.g. an invalid name), with the reason:
    /// they fail only the reads that ask for them.
    refused: HashMap<Selector, String>,
    /// The last refresh failed (throttling, an outage, a denied role): reads answer with its
    /// error until `until` instead of calling CloudWatch again.
    failing: Option<Failing>,
}

/// A failed refresh and how long its error stands in for CloudWatch.
struct Failing {
    error: AwsError,
    until: tokio::time::Instant,
    /// Failed refreshes in a row.
    count: u32,
}

/// The longest wait between refreshes while they keep failing (or the interval, if longer).
pub const MAX_REFRESH_BACKOFF: Duration = Duration::from_secs(60);

/// The alarm states of one account and region, shared by every bake there.
pub struct AlarmCache {
    scope: Scope,
    source: Arc<dyn AlarmSource>,
    interval: Duration,
    state: Mutex<CacheState>,
}

impl std::fmt::Debug for AlarmCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmCache").field("scope", &self.scope).field("interval", &self.interval).finish()
    }
}

/// Alarms matching a set of selectors, as last read.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRead {
    /// When the read happened.
    pub observed_at: Timestamp,
    /// The alarms that matched (a named alarm that does not exist is absent).
    pub alarms: Vec<AlarmObservation>,
}

impl AlarmCache {
    /// A cache over `source` refreshed at most once per `interval`.
    pub fn new(scope: Scope, source: Arc<dyn AlarmSource>, interval: Duration) -> Self {
        AlarmCache { scope, source, interval, state: Mutex::new(CacheState::default()) }
    }

    /// Where the alarms live.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The alarms named `names` or starting with `prefixes`. Reads CloudWatch when the last read
    /// is older than the interval or did not cover these selectors; otherwise answers from it.
    /// A read covers the selectors asked for within the last [`RETAIN_INTERVALS`] intervals (a
    /// finished bake's are dropped). Fails when CloudWatch refused one of *these* selectors; a
    /// selector another bake asked for that CloudWatch refused does not fail this read.
    /// Alarms whose state changed since `history_since` come with their history (None when the
    /// account provides none) so a flap between two reads is seen.
    pub async fn read(
        &self,
        names: &[String],
        prefixes: &[String],
        history_since: Option<Timestamp>,
    ) -> Result<AlarmRead> {
        let mut st = self.state.lock().await;
        let now = tokio::time::Instant::now();
        let asked: Vec<Selector> = names
            .iter()
            .map(|n| Selector::Name(n.clone()))
            .chain(prefixes.iter().map(|p| Selector::Prefix(p.clone())))
            .collect();
        let mut covered = true;
        for sel in &asked {
            let known = st.selectors.insert(sel.clone(), now).is_some();
            covered &= known;
        }
        let fresh = st.read_at.is_some_and(|t| t.elapsed() < self.interval);
        if !(fresh && covered) {
            // While refreshes fail, every bake's read waits for the backoff instead of adding
            // its own call to a throttled or unreachable CloudWatch; they all see the failure.
            if let Some(f) = &st.failing
                && now < f.until
            {
                return Err(f.error.clone());
            }
            // Selectors of finished bakes (not asked within RETAIN_INTERVALS) are not read again.
            let retain = self.interval * RETAIN_INTERVALS;
            st.selectors.retain(|sel, last| asked.contains(sel) || last.elapsed() <= retain);
            if let Err(e) = self.refresh(&mut st).await {
                // The next read must not trust a read that did not cover the new selectors.
                st.read_at = None;
                let count = st.failing.as_ref().map_or(0, |f| f.count).saturating_add(1);
                let backoff = self
                    .interval
                    .saturating_mul(2u32.saturating_pow(count.saturating_sub(1).min(16)))
                    .min(MAX_REFRESH_BACKOFF.max(self.interval));
                st.failing = Some(Failing { error: e.clone(), until: tokio::time::Instant::now() + backoff, count });
                return Err(e);
            }
            st.failing = None;
        }
        // A selector CloudWatch refused fails this read only, not the other bakes'.
        let refused: Vec<String> =
            asked.iter().filter_map(|sel| st.refused.get(sel).map(|why| format!("{sel}: {why}"))).collect();
        if !refused.is_empty() {
            return Err(AwsError::Invalid {
                message: format!("CloudWatch refused {}", refused.join("; ")),
                scope: self.scope.clone(),
            });
        }
        let observed_at = st.observed_at.unwrap_or_else(|| self.source.now());
        let mut out: Vec<AlarmObservation> = st
            .alarms
            .values()
            .filter(|a| names.contains(&a.name) || prefixes.iter().any(|p| a.name.starts_with(p.as_str())))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        // History calls are per alarm: other bakes need not wait for them.
        drop(st);
        if let Some(since) = history_since {
            for a in &mut out {
                if a.state_changed_at > since {
                    a.history = self.source.alarm_history(&a.name, since).await?;
                }
            }
        }
        Ok(AlarmRead { observed_at, alarms: out })
    }

    async fn refresh(&self, st: &mut CacheState) -> Result<()> {
        let mut names = Vec::new();
        let mut prefixes = Vec::new();
        for sel in st.selectors.keys() {
            match sel {
                Selector::Name(n) => names.push(n.clone()),
                Selector::Prefix(p) => prefixes.push(p.clone()),
            }
        }
        names.sort();
        prefixes.sort();
        let mut alarms = HashMap::new();
        let mut refused = HashMap::new();
        // A batch CloudWatch refuses is split in halves until the refused names are alone.
        let mut batches: Vec<Vec<String>> = names.chunks(MAX_NAMES_PER_CALL).map(<[String]>::to_vec).collect();
        while let Some(batch) = batches.pop() {
            match self.source.alarms_by_name(&batch).await {
                Ok(found) => {
                    for a in found {
                        alarms.insert(a.name.clone(), a);
                    }
                }
                Err(e) if selector_refused(&e) => {
                    if let [name] = batch.as_slice() {
                        refused.insert(Selector::Name(name.clone()), e.to_string());
                    } else {
                        let (a, b) = batch.split_at(batch.len() / 2);
                        batches.push(a.to_vec());
                        batches.push(b.to_vec());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for p in prefixes {
            match self.source.alarms_by_prefix(&p).await {
                Ok(found) => {
                    for a in found {
                        alarms.insert(a.name.clone(), a);
                    }
                }
                Err(e) if selector_refused(&e) => {
                    refused.insert(Selector::Prefix(p), e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        st.alarms = alarms;
        st.refused = refused;
        st.read_at = Some(tokio::time::Instant::now());
        st.observed_at = Some(self.source.now());
        Ok(())
    }

    /// How many selectors the cache currently reads (for metrics and tests).
    pub async fn selector_count(&self) -> usize {
        self.state.lock().await.selectors.len()
    }
}

/// An error about the selectors asked (an invalid name or prefix), as opposed to one about the
/// account (denied, quota) or the moment (throttling, 5xx): only the former is isolated per
/// selector.
fn selector_refused(e: &AwsError) -> bool {
    e.class() == crate::ErrorClass::SpecWrong && !matches!(e, AwsError::AccessDenied { .. } | AwsError::Quota { .. })
}

/// One [`AlarmCache`] per account and region.
#[derive(Debug)]
pub struct AlarmCaches {
    interval: Duration,
    caches: Mutex<HashMap<Scope, Arc<AlarmCache>>>,
}

impl AlarmCaches {
    /// Caches refreshed at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        AlarmCaches { interval, caches: Mutex::new(HashMap::new()) }
    }

    /// The cache of `scope`, created over `source()` the first time.
    pub async fn get(&self, scope: &Scope, source: impl FnOnce() -> Arc<dyn AlarmSource>) -> Arc<AlarmCache> {
        let mut caches = self.caches.lock().await;
        caches
            .entry(scope.clone())
            .or_insert_with(|| Arc::new(AlarmCache::new(scope.clone(), source(), self.interval)))
            .clone()
    }
}

/// Reads the signals of a RollbackPolicy in one account and region. The controller holds one
/// per environment; tests can use [`CloudWatchSignals`] over `fake::FakeCloudWatch`.
#[async_trait]
pub trait SignalReader: Send + Sync {
    /// Everything `policy` watches, as of now. Alarms that changed state after `history_since`
    /// come with their history when the account provides it.
    async fn read(&self, policy: &RollbackPolicySpec, history_since: Option<Timestamp>) -> Result<SignalObservations>;
}

/// The [`SignalReader`] over an account's shared [`AlarmCache`] and its CloudWatch source.
#[derive(Clone)]
pub struct CloudWatchSignals {
    /// The account's shared alarm cache.
    pub alarms: Arc<AlarmCache>,
    /// CloudWatch (GetMetricData is not cached).
    pub source: Arc<dyn AlarmSource>,
}

impl std::fmt::Debug for CloudWatchSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchSignals").field("alarms", &self.alarms).finish_non_exhaustive()
    }
}

#[async_trait]
impl SignalReader for CloudWatchSignals {
    async fn read(&self, policy: &RollbackPolicySpec, history_since: Option<Timestamp>) -> Result<SignalObservations> {
        read_policy(policy, &self.alarms, self.source.as_ref(), history_since).await
    }
}

/// Reads everything a RollbackPolicy watches: its alarms through the shared `alarms` cache, its
/// metric triggers and error budget through `source` (GetMetricData, not cached: each policy has
/// its own windows).
pub async fn read_policy(
    policy: &RollbackPolicySpec,
    alarms: &AlarmCache,
    source: &dyn AlarmSource,
    history_since: Option<Timestamp>,
) -> Result<SignalObservations> {
    let names: Vec<String> = policy.alarms.iter().filter_map(|a| a.name.clone()).collect();
    let prefixes: Vec<String> = policy.alarms.iter().filter_map(|a| a.prefix.clone()).collect();
    let read = alarms.read(&names, &prefixes, history_since).await?;
    let now = source.now();
    let bad = |what: &str, e: kiln_core::SpecError| AwsError::Invalid {
        message: format!("{what}: {e}"),
        scope: alarms.scope().clone(),
    };

    let mut metrics = Vec::new();
    if !policy.metrics.is_empty() {
        let mut requests = Vec::new();
        let mut longest = SignedDuration::ZERO;
        for m in &policy.metrics {
            let period = SignedDuration::from_secs(i64::from(m.query.period_seconds.max(1)));
            let hold = match &m.for_duration {
                Some(d) => kiln_core::duration::parse("for", d).map_err(|e| bad(&m.name, e))?,
                None => SignedDuration::ZERO,
            };
            // Enough datapoints to see the value out of bounds for `for`, plus slack for late
            // datapoints.
            longest = longest.max(hold + period * 3);
            requests.push(MetricRequest { query: m.query.clone(), period_seconds: m.query.period_seconds });
        }
        let series = source.metric_data(&requests, now - longest, now).await?;
        for (m, datapoints) in policy.metrics.iter().zip(series) {
            metrics.push(MetricObservation { name: m.name.clone(), datapoints });
        }
    }

    let error_budget = match &policy.error_budget {
        None => None,
        Some(b) => {
            let window =
                kiln_core::duration::parse_slo("errorBudget.window", &b.window).map_err(|e| bad("errorBudget", e))?;
            // Datapoints summed here (a single period as long as the window would need the
            // window to be a multiple of 60 s), at the finest period CloudWatch still keeps for
            // the window's oldest point.
            let period = budget_period(window);
            let requests = [
                MetricRequest { query: sum_of(&b.errors, period), period_seconds: period },
                MetricRequest { query: sum_of(&b.total, period), period_seconds: period },
            ];
            let series = source.metric_data(&requests, now - window, now).await?;
            let total = |i: usize| series.get(i).map(|s| s.iter().map(|(_, v)| v).sum::<f64>()).unwrap_or(0.0);
            Some(BudgetObservation { errors: total(0), total: total(1) })
        }
    };

    Ok(SignalObservations { observed_at: read.observed_at, alarms: read.alarms, metrics, error_budget })
}

fn sum_of(q: &MetricQuery, period_seconds: i32) -> MetricQuery {
    MetricQuery { stat: kiln_api::rollback_policy::Statistic::Sum, period_seconds, ..q.clone() }
}

/// The GetMetricData period for data as old as `age` (the error budget's window reaches that far
/// back). CloudWatch keeps 1-minute datapoints for 15 days, 5-minute ones for 63 days and
/// 1-hour ones beyond; asking a finer period for older data returns nothing for it.
pub fn budget_period(age: SignedDuration) -> i32 {
    const DAY: i64 = 24 * 3600;
    match age.as_secs() {
        s if s <= 15 * DAY => 60,
        s if s <= 63 * DAY => 300,
        _ => 3600,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Alarms named in `names` exist (OK); a name or prefix containing `!` is refused as
    /// CloudWatch refuses an invalid selector. Records every DescribeAlarms call's selectors.
    #[derive(Default)]
    struct Source {
        calls: std::sync::Mutex<Vec<Vec<String>>>,
        /// Every call fails as CloudWatch throttling does.
        throttled: std::sync::atomic::AtomicBool,
    }

    impl Source {
        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().unwrap().clone()
        }

        /// The selectors of the last refresh: its name batches and prefixes.
        fn last_refresh(&self, calls: usize) -> Vec<String> {
            let all = self.calls();
            all[all.len() - calls..].concat()
        }
    }

    fn refuse(what: &str) -> AwsError {
        crate::error::classify(
            "monitoring",
            "DescribeAlarms",
            400,
            "InvalidParameterValue".into(),
            format!("invalid selector {what}"),
        )
    }

    fn ok(name: &str) -> AlarmObservation {
        AlarmObservation {
            name: name.to_string(),
            state: AlarmState::Ok,
            state_changed_at: Timestamp::UNIX_EPOCH,
            history: None,
        }
    }

    #[async_trait]
    impl AlarmSource for Source {
        async fn alarms_by_name(&self, names: &[String]) -> Result<Vec<AlarmObservation>> {
            self.calls.lock().unwrap().push(names.to_vec());
            if self.throttled.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(AwsError::Throttled {
                    service: "monitoring",
                    operation: "DescribeAlarms",
                    message: "Rate exceeded".into(),
                });
            }
            if let Some(bad) = names.iter().find(|n| n.contains('!')) {
                return Err(refuse(bad));
            }
            Ok(names.iter().map(|n| ok(n)).collect())
        }
        async fn alarms_by_prefix(&self, prefix: &str) -> Result<Vec<AlarmObservation>> {
            self.calls.lock().unwrap().push(vec![format!("{prefix}*")]);
            if prefix.contains('!') {
                return Err(refuse(prefix));
            }
            Ok(vec![ok(&format!("{prefix}1"))])
        }
        async fn alarm_history(&self, _: &str, _: Timestamp) -> Result<Option<Vec<(Timestamp, AlarmState)>>> {
            Ok(None)
        }
        async fn metric_data(
            &self,
            requests: &[MetricRequest],
            _: Timestamp,
            _: Timestamp,
        ) -> Result<Vec<Vec<(Timestamp, f64)>>> {
            Ok(vec![Vec::new(); requests.len()])
        }
    }

    #[test]
    fn the_budget_period_follows_the_window_age() {
        let days = |d: i64| SignedDuration::from_hours(24 * d);
        assert_eq!(budget_period(SignedDuration::from_mins(30)), 60);
        assert_eq!(budget_period(days(15)), 60);
        assert_eq!(budget_period(days(15) + SignedDuration::from_secs(1)), 300);
        assert_eq!(budget_period(days(28)), 300);
        assert_eq!(budget_period(days(63)), 300);
        assert_eq!(budget_period(days(63) + SignedDuration::from_secs(1)), 3600);
        assert_eq!(budget_period(days(90)), 3600);
    }

    #[tokio::test]
    async fn a_long_budget_window_asks_coarser_datapoints() {
        #[derive(Default)]
        struct Periods(std::sync::Mutex<Vec<(i32, i64)>>);
        #[async_trait]
        impl AlarmSource for Periods {
            async fn alarms_by_name(&self, _: &[String]) -> Result<Vec<AlarmObservation>> {
                Ok(Vec::new())
            }
            async fn alarms_by_prefix(&self, _: &str) -> Result<Vec<AlarmObservation>> {
                Ok(Vec::new())
            }
            async fn alarm_history(&self, _: &str, _: Timestamp) -> Result<Option<Vec<(Timestamp, AlarmState)>>> {
                Ok(None)
            }
            async fn metric_data(
                &self,
                requests: &[MetricRequest],
                start: Timestamp,
                end: Timestamp,
            ) -> Result<Vec<Vec<(Timestamp, f64)>>> {
                for r in requests {
                    assert_eq!(r.query.period_seconds, r.period_seconds);
                    self.0.lock().unwrap().push((r.period_seconds, end.duration_since(start).as_secs()));
                }
                Ok(vec![vec![(start, 1.0)]; requests.len()])
            }
        }
        let budget_json = |window: &str| {
            serde_json::json!({ "errorBudget": {
                "objective": 99.9,
                "window": window,
                "errors": {"namespace": "N", "metricName": "E", "stat": "Sum", "periodSeconds": 60},
                "total": {"namespace": "N", "metricName": "T", "stat": "Sum", "periodSeconds": 60},
                "maxBurnPercent": 2.0
            }})
        };
        for (window, period) in [("1h", 60), ("720h", 300), ("2160h", 3600)] {
            let source = Arc::new(Periods::default());
            let cache = AlarmCache::new(scope(), source.clone(), Duration::from_secs(60));
            let policy: RollbackPolicySpec = serde_json::from_value(budget_json(window)).unwrap();
            let obs = read_policy(&policy, &cache, source.as_ref(), None).await.unwrap();
            assert_eq!(obs.error_budget.map(|b| (b.errors, b.total)), Some((1.0, 1.0)));
            let asked = source.0.lock().unwrap().clone();
            assert_eq!(asked.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![period, period], "{window}");
        }
    }

    fn scope() -> Scope {
        Scope { account_id: "111111111111".into(), region: "us-east-1".into() }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[tokio::test]
    async fn selectors_of_finished_bakes_are_dropped() {
        let source = Arc::new(Source::default());
        // Generous against a loaded CI machine: c (below) stays within the 600 ms retention with
        // ~400 ms to spare; A is dropped after 1 s.
        let interval = Duration::from_millis(200);
        let cache = AlarmCache::new(scope(), source.clone(), interval);
        // Bakes A and B read together; then A finishes and only B keeps reading.
        cache.read(&s(&["a-5xx"]), &s(&["a-"]), None).await.unwrap();
        cache.read(&s(&["b-5xx"]), &[], None).await.unwrap();
        assert_eq!(source.last_refresh(2), s(&["a-5xx", "b-5xx", "a-*"]), "the union while both bake");
        assert_eq!(cache.selector_count().await, 3);
        tokio::time::sleep(interval * (RETAIN_INTERVALS + 2)).await;
        let read = cache.read(&s(&["b-5xx"]), &[], None).await.unwrap();
        assert_eq!(read.alarms.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), vec!["b-5xx"]);
        assert_eq!(cache.selector_count().await, 1, "A's name and prefix are dropped");
        assert_eq!(source.last_refresh(1), s(&["b-5xx"]), "and no longer read");
        // A selector still asked within the retention is kept in the shared read.
        cache.read(&s(&["c-5xx"]), &[], None).await.unwrap();
        tokio::time::sleep(interval + Duration::from_millis(5)).await;
        cache.read(&s(&["b-5xx"]), &[], None).await.unwrap();
        assert_eq!(source.last_refresh(1), s(&["b-5xx", "c-5xx"]));
    }

    #[tokio::test]
    async fn an_invalid_selector_fails_only_the_bake_that_asks_for_it() {
        let source = Arc::new(Source::default());
        let cache = AlarmCache::new(scope(), source.clone(), Duration::from_secs(3600));
        let good: Vec<String> = (0..7).map(|i| format!("ok-{i}")).collect();
        let mut bad_bake = s(&["bad!name", "ok-bad-bake"]);
        // Bake 1 (valid names) reads first; bake 2 adds an invalid name and an invalid prefix.
        assert_eq!(cache.read(&good, &[], None).await.unwrap().alarms.len(), 7);
        let err = cache.read(&bad_bake, &s(&["pre!"]), None).await.unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::SpecWrong);
        let msg = err.to_string();
        assert!(msg.contains("alarm name \"bad!name\"") && msg.contains("alarm prefix \"pre!\""), "{msg}");
        assert!(!msg.contains("ok-"), "{msg}");
        // Bake 1 still reads (from the same shared read), with all its alarms.
        let calls = source.calls().len();
        let read = cache.read(&good, &[], None).await.unwrap();
        assert_eq!(read.alarms.len(), 7);
        assert_eq!(source.calls().len(), calls, "answered from the shared read");
        // The refused name was isolated by halving the batch: its valid neighbours were read.
        bad_bake.retain(|n| !n.contains('!'));
        assert_eq!(cache.read(&bad_bake, &[], None).await.unwrap().alarms.len(), 1);
        assert!(source.calls().iter().any(|c| c == &s(&["bad!name"])), "{:?}", source.calls());
    }

    /// Issue "Safety under partition" §3: a failing refresh backs off (interval, doubling, at
    /// most a minute) instead of every bake's reconcile calling CloudWatch again.
    #[tokio::test(start_paused = true)]
    async fn a_failing_refresh_backs_off_and_every_bake_sees_the_failure() {
        use std::sync::atomic::Ordering;
        let source = Arc::new(Source::default());
        let interval = Duration::from_secs(10);
        let cache = AlarmCache::new(scope(), source.clone(), interval);
        source.throttled.store(true, Ordering::SeqCst);
        let err = cache.read(&s(&["a-5xx"]), &[], None).await.unwrap_err();
        assert!(err.is_throttled(), "{err}");
        assert_eq!(source.calls().len(), 1);
        // Other bakes (and the same one) within the backoff get the failure without a call.
        for bake in ["a-5xx", "b-5xx", "c-5xx"] {
            let err = cache.read(&s(&[bake]), &[], None).await.unwrap_err();
            assert!(err.is_throttled(), "{err}");
        }
        assert_eq!(source.calls().len(), 1);
        // Backoff: 10 s, then 20 s, 40 s, then at most a minute.
        let mut calls_at = Vec::new();
        for second in 1..=200u64 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let before = source.calls().len();
            let _ = cache.read(&s(&["a-5xx"]), &[], None).await;
            if source.calls().len() > before {
                calls_at.push(second);
            }
        }
        assert_eq!(calls_at, vec![10, 30, 70, 130, 190], "refreshes while CloudWatch throttles");
        // Recovered: the next refresh reads, and reads are shared again for the interval.
        source.throttled.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(cache.read(&s(&["a-5xx"]), &[], None).await.unwrap().alarms.len(), 1);
        let calls = source.calls().len();
        assert_eq!(cache.read(&s(&["a-5xx"]), &[], None).await.unwrap().alarms.len(), 1);
        assert_eq!(source.calls().len(), calls);
    }
}
