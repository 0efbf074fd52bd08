//! Signals: alarm states, metric datapoints and error-budget counts, read from CloudWatch for a
//! RollbackPolicy and shaped as [`kiln_core::signals::SignalObservations`].
//!
//! Alarm reads are shared per account and region ([`AlarmCache`]): every bake in an account asks
//! the same cache, which reads the union of their selectors at most once per interval, in
//! batches of at most 100 names per DescribeAlarms call (AWS's limit).

pub mod cloudwatch;

use std::collections::{BTreeSet, HashMap};
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
/// [`crate::fake::FakeCloudWatch`].
#[async_trait]
pub trait AlarmSource: Send + Sync {
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

#[derive(Default)]
struct CacheState {
    names: BTreeSet<String>,
    prefixes: BTreeSet<String>,
    read_at: Option<tokio::time::Instant>,
    observed_at: Option<Timestamp>,
    alarms: HashMap<String, AlarmObservation>,
}

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
    /// Alarms whose state changed since `history_since` come with their history (None when the
    /// account provides none) so a flap between two reads is seen.
    pub async fn read(
        &self,
        names: &[String],
        prefixes: &[String],
        history_since: Option<Timestamp>,
    ) -> Result<AlarmRead> {
        let mut st = self.state.lock().await;
        let mut covered = true;
        for n in names {
            covered &= !st.names.insert(n.clone()) || st.alarms.contains_key(n);
        }
        for p in prefixes {
            covered &= !st.prefixes.insert(p.clone());
        }
        let fresh = st.read_at.is_some_and(|t| t.elapsed() < self.interval);
        if !(fresh && covered)
            && let Err(e) = self.refresh(&mut st).await
        {
            // The next read must not trust a read that did not cover the new selectors.
            st.read_at = None;
            return Err(e);
        }
        let observed_at = st.observed_at.unwrap_or_else(Timestamp::now);
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
        let names: Vec<String> = st.names.iter().cloned().collect();
        let mut alarms = HashMap::new();
        for chunk in names.chunks(MAX_NAMES_PER_CALL) {
            for a in self.source.alarms_by_name(chunk).await? {
                alarms.insert(a.name.clone(), a);
            }
        }
        for p in &st.prefixes {
            for a in self.source.alarms_by_prefix(p).await? {
                alarms.insert(a.name.clone(), a);
            }
        }
        st.alarms = alarms;
        st.read_at = Some(tokio::time::Instant::now());
        st.observed_at = Some(Timestamp::now());
        Ok(())
    }
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
/// per environment; tests can use [`CloudWatchSignals`] over [`crate::fake::FakeCloudWatch`].
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
    let now = Timestamp::now();
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
                kiln_core::duration::parse("errorBudget.window", &b.window).map_err(|e| bad("errorBudget", e))?;
            // One datapoint per minute, summed here (a single period as long as the window
            // would need the window to be a multiple of 60 s).
            let requests = [
                MetricRequest { query: sum_of(&b.errors), period_seconds: 60 },
                MetricRequest { query: sum_of(&b.total), period_seconds: 60 },
            ];
            let series = source.metric_data(&requests, now - window, now).await?;
            let total = |i: usize| series.get(i).map(|s| s.iter().map(|(_, v)| v).sum::<f64>()).unwrap_or(0.0);
            Some(BudgetObservation { errors: total(0), total: total(1) })
        }
    };

    Ok(SignalObservations { observed_at: read.observed_at, alarms: read.alarms, metrics, error_budget })
}

fn sum_of(q: &MetricQuery) -> MetricQuery {
    MetricQuery { stat: kiln_api::rollback_policy::Statistic::Sum, period_seconds: 60, ..q.clone() }
}
