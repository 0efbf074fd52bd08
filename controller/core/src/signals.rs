//! Breach evaluation: does what the controller observed (alarm states, metric datapoints,
//! error-budget counts) breach a RollbackPolicy?
//!
//! Two rules shape this module:
//! - **A breach between two polls still counts.** An alarm that went OK → ALARM → OK between
//!   reads shows up as a newer `StateTransitionedTimestamp` (and in alarm history where the account
//!   provides it). Without history, kiln cannot tell what the alarm went through, so a state
//!   change away from a recorded OK during the bake counts as a breach.
//! - **Missing signals fail closed.** A named alarm that does not exist, or a prefix that
//!   matches nothing, is a breach: a typo must never turn a guarded bake into an unguarded one.

use jiff::{SignedDuration, Timestamp};
use kiln_api::promotion::SignalStatus;
use kiln_api::rollback_policy::{MissingData, RollbackPolicySpec};

use crate::SpecError;
use crate::duration;
use crate::time::to_time;

/// A CloudWatch alarm state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    /// OK.
    Ok,
    /// ALARM.
    Alarm,
    /// INSUFFICIENT_DATA.
    InsufficientData,
}

impl AlarmState {
    /// The CloudWatch name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// An alarm as read from CloudWatch.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmObservation {
    /// The alarm name.
    pub name: String,
    /// Its current state.
    pub state: AlarmState,
    /// When it entered that state: `StateTransitionedTimestamp` (not `StateUpdatedTimestamp`,
    /// which also moves when only the evaluation state or reason changes).
    pub state_changed_at: Timestamp,
    /// State changes from alarm history, oldest first; `None` when history is unavailable
    /// (e.g. not permitted, or an emulator without DescribeAlarmHistory).
    pub history: Option<Vec<(Timestamp, AlarmState)>>,
}

/// Datapoints of one metric trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricObservation {
    /// The trigger's name.
    pub name: String,
    /// Datapoints (timestamp, value), any order.
    pub datapoints: Vec<(Timestamp, f64)>,
}

/// Error and total request counts summed over the error budget's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetObservation {
    /// Failed requests.
    pub errors: f64,
    /// All requests.
    pub total: f64,
}

/// Everything read for one policy at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalObservations {
    /// When the reads happened.
    pub observed_at: Timestamp,
    /// Every alarm matching the policy's selectors (by name and by prefix).
    pub alarms: Vec<AlarmObservation>,
    /// Datapoints per metric trigger.
    pub metrics: Vec<MetricObservation>,
    /// Error budget counts, if the policy has an error budget.
    pub error_budget: Option<BudgetObservation>,
}

/// What kind of signal breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachKind {
    /// A CloudWatch alarm (or a missing one).
    Alarm,
    /// A metric threshold.
    Metric,
    /// The error-budget burn limit.
    ErrorBudget,
}

impl BreachKind {
    /// The rollback cause this breach records.
    pub fn cause(self) -> kiln_api::RollbackCause {
        match self {
            BreachKind::Alarm => kiln_api::RollbackCause::Alarm,
            BreachKind::Metric => kiln_api::RollbackCause::Metric,
            BreachKind::ErrorBudget => kiln_api::RollbackCause::ErrorBudget,
        }
    }

    /// The kind as written in `status.bake.signals[].kind` and in the cause.
    pub fn as_str(self) -> &'static str {
        self.cause().as_str()
    }
}

/// A breach: which signal, why, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// The kind of signal.
    pub kind: BreachKind,
    /// The alarm name, trigger name or `errorBudget`.
    pub signal: String,
    /// What happened, for people.
    pub message: String,
    /// When the breach began, if known (alarm state change, first bad datapoint).
    pub started_at: Option<Timestamp>,
}

/// The result of evaluating a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Every breach found (empty when healthy), alarms first.
    pub breaches: Vec<Breach>,
    /// Every signal's state, for status and evidence.
    pub signals: Vec<SignalStatus>,
}

/// The overall answer for a policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<'a> {
    /// Every signal has data and none breaches.
    Healthy,
    /// A signal breaches: roll back.
    Breach(&'a Breach),
    /// Nothing breaches, but some signals have no data (INSUFFICIENT_DATA alarms, metrics
    /// without datapoints, an error budget without traffic) and `missingData: ignore` says not to
    /// count them. The reason names them, so a bake that passed on silence is visible.
    Inconclusive(String),
}

impl Evaluation {
    /// True when nothing breached.
    pub fn healthy(&self) -> bool {
        self.breaches.is_empty()
    }

    /// Breach, healthy, or inconclusive (no breach, but some signals had no data).
    pub fn verdict(&self) -> Verdict<'_> {
        if let Some(b) = self.breaches.first() {
            return Verdict::Breach(b);
        }
        let silent: Vec<&str> = self
            .signals
            .iter()
            .filter(|s| s.state == "NO_DATA" || s.state == AlarmState::InsufficientData.as_str())
            .map(|s| s.name.as_str())
            .collect();
        if silent.is_empty() {
            Verdict::Healthy
        } else {
            Verdict::Inconclusive(format!("no data from {} (missingData: ignore)", silent.join(", ")))
        }
    }

    /// The breach that is reported as the cause (the first one).
    pub fn first_breach(&self) -> Option<&Breach> {
        self.breaches.first()
    }
}

/// Checks what the schema cannot about a policy (durations), so a bad policy is reported as
/// invalid instead of silently guarding nothing.
pub fn validate_policy(policy: &RollbackPolicySpec) -> Result<(), SpecError> {
    let interval = duration::parse("spec.interval", &policy.interval)?;
    if interval < SignedDuration::from_secs(1) {
        return Err(SpecError::Policy {
            field: "spec.interval".into(),
            message: format!("{} is shorter than 1s; alarms are read at most once a second", policy.interval),
        });
    }
    for (i, m) in policy.metrics.iter().enumerate() {
        if let Some(f) = &m.for_duration {
            duration::parse(&format!("spec.metrics[{i}].for"), f)?;
        }
        if m.max.is_none() && m.min.is_none() {
            return Err(SpecError::Policy {
                field: format!("spec.metrics[{i}]"),
                message: "set max, min or both".into(),
            });
        }
    }
    if let Some(b) = &policy.error_budget {
        let window = duration::parse_slo("spec.errorBudget.window", &b.window)?;
        let period = duration::parse_slo("spec.errorBudget.period", &b.period)?;
        if window > period {
            return Err(SpecError::Policy {
                field: "spec.errorBudget.window".into(),
                message: format!("window {} is longer than the SLO period {}", b.window, b.period),
            });
        }
    }
    Ok(())
}

/// Evaluates `policy` against `obs`. `since` is when the new version first received traffic:
/// anything that happened before it is not the new version's fault. `previous` is the signal
/// state recorded at the last evaluation (from status), used to see flaps between polls.
pub fn evaluate(
    policy: &RollbackPolicySpec,
    obs: &SignalObservations,
    since: Timestamp,
    previous: &[SignalStatus],
) -> Evaluation {
    evaluate_windows(policy, obs, since, since, previous)
}

/// Whether the signals are green *now*, independent of any deployment (the `health` and
/// `upstreamHealth` gates): alarms by their current state, metrics over their most recent
/// published datapoints, the error budget over its window.
pub fn current_health(policy: &RollbackPolicySpec, obs: &SignalObservations) -> Result<(), String> {
    let ev = evaluate_windows(policy, obs, obs.observed_at, Timestamp::MIN, &[]);
    match ev.first_breach() {
        Some(b) => Err(b.message.clone()),
        None => Ok(()),
    }
}

/// [`evaluate`] with separate starting points for alarms (state changes after `alarm_since`
/// count) and metrics (datapoints whose period ends after `metric_since` count).
fn evaluate_windows(
    policy: &RollbackPolicySpec,
    obs: &SignalObservations,
    since: Timestamp,
    metric_since: Timestamp,
    previous: &[SignalStatus],
) -> Evaluation {
    let mut breaches = Vec::new();
    let mut signals = Vec::new();
    let missing_breaches = policy.missing_data == MissingData::Breach;

    // Selectors that match nothing fail closed.
    for sel in &policy.alarms {
        let (label, matched) = match (&sel.name, &sel.prefix) {
            (Some(name), _) => (name.clone(), obs.alarms.iter().any(|a| &a.name == name)),
            (None, Some(prefix)) => {
                (format!("{prefix}*"), obs.alarms.iter().any(|a| a.name.starts_with(prefix.as_str())))
            }
            (None, None) => continue,
        };
        if !matched {
            breaches.push(Breach {
                kind: BreachKind::Alarm,
                signal: label.clone(),
                message: format!(
                    "alarm {label} does not exist in the environment's account and region; missing alarms fail closed"
                ),
                started_at: None,
            });
            signals.push(SignalStatus {
                name: label,
                kind: "alarm".into(),
                state: "MISSING".into(),
                since: None,
                value: None,
            });
        }
    }

    for alarm in &obs.alarms {
        signals.push(SignalStatus {
            name: alarm.name.clone(),
            kind: "alarm".into(),
            state: alarm.state.as_str().into(),
            since: Some(to_time(alarm.state_changed_at)),
            value: None,
        });
        if let Some(b) = alarm_breach(alarm, since, previous, missing_breaches) {
            breaches.push(b);
        }
    }

    for trigger in &policy.metrics {
        let period = SignedDuration::from_secs(i64::from(trigger.query.period_seconds.max(1)));
        let hold = trigger.for_duration.as_deref().and_then(|f| duration::parse("for", f).ok()).unwrap_or(period);
        let points =
            obs.metrics.iter().find(|m| m.name == trigger.name).map(|m| m.datapoints.as_slice()).unwrap_or(&[]);
        // CloudWatch stamps a datapoint with the start of its period and publishes it late, so the
        // window is measured back from the newest datapoint, not from the time of the read. A
        // datapoint counts if its period ends after traffic moved; data older than the hold time
        // plus three periods is stale and counts as missing.
        let stale_before = obs.observed_at.checked_sub(hold + period * 3).unwrap_or(metric_since);
        let mut usable: Vec<(Timestamp, f64)> = points
            .iter()
            .copied()
            .filter(|(t, _)| t.checked_add(period).is_ok_and(|end| end > metric_since) && *t >= stale_before)
            .collect();
        usable.sort_by_key(|(t, _)| *t);
        let out_of_bounds = |v: f64| trigger.max.is_some_and(|m| v > m) || trigger.min.is_some_and(|m| v < m);
        let Some(&(newest, value)) = usable.last() else {
            signals.push(SignalStatus {
                name: trigger.name.clone(),
                kind: "metric".into(),
                state: "NO_DATA".into(),
                since: None,
                value: None,
            });
            if missing_breaches {
                breaches.push(Breach {
                    kind: BreachKind::Metric,
                    signal: trigger.name.clone(),
                    message: format!("metric {} has no recent datapoints and missingData is breach", trigger.name),
                    started_at: None,
                });
            }
            continue;
        };
        // The datapoints covering the hold time, newest first, while they are out of bounds.
        let window_start = newest.checked_sub(hold - period).unwrap_or(newest);
        let in_window: Vec<(Timestamp, f64)> = usable.iter().copied().filter(|(t, _)| *t >= window_start).collect();
        let first_bad = in_window.first().map(|(t, _)| *t).unwrap_or(newest);
        let covered = newest.duration_since(first_bad) + period;
        let breached = in_window.iter().all(|(_, v)| out_of_bounds(*v)) && covered >= hold;
        // Only the state goes to status while healthy, so a bake at rest writes nothing; the value
        // and start are recorded when it breaches.
        signals.push(SignalStatus {
            name: trigger.name.clone(),
            kind: "metric".into(),
            state: if breached { "BREACH" } else { "OK" }.into(),
            since: breached.then(|| to_time(first_bad)),
            value: breached.then_some(value),
        });
        if breached {
            let bound = match (trigger.max, trigger.min) {
                (Some(m), _) if value > m => format!("above max {m}"),
                (_, Some(m)) => format!("below min {m}"),
                _ => "out of bounds".into(),
            };
            breaches.push(Breach {
                kind: BreachKind::Metric,
                signal: trigger.name.clone(),
                message: format!(
                    "metric {} = {value} is {bound} for {}",
                    trigger.name,
                    crate::time::human_duration(covered)
                ),
                started_at: Some(first_bad),
            });
        }
    }

    if let Some(budget) = &policy.error_budget {
        let window = duration::parse_slo("window", &budget.window).ok();
        let period = duration::parse_slo("period", &budget.period).ok();
        let allowed = 1.0 - budget.objective / 100.0;
        match (obs.error_budget, window, period) {
            (Some(o), Some(w), Some(p)) if o.total > 0.0 && allowed > 0.0 => {
                let error_rate = (o.errors / o.total).clamp(0.0, 1.0);
                let burned = error_rate / allowed * (w.as_secs_f64() / p.as_secs_f64()) * 100.0;
                let breached = burned > budget.max_burn_percent;
                signals.push(SignalStatus {
                    name: "errorBudget".into(),
                    kind: "errorBudget".into(),
                    state: if breached { "BREACH" } else { "OK" }.into(),
                    since: None,
                    // Recorded only on a breach: a changing value would rewrite status every poll.
                    value: breached.then_some((burned * 1000.0).round() / 1000.0),
                });
                if breached {
                    breaches.push(Breach {
                        kind: BreachKind::ErrorBudget,
                        signal: "errorBudget".into(),
                        message: format!(
                            "error budget burn {burned:.2}% in {} exceeds {}% ({} errors of {} requests against a {}% objective)",
                            budget.window, budget.max_burn_percent, o.errors, o.total, budget.objective
                        ),
                        started_at: None,
                    });
                }
            }
            _ => {
                signals.push(SignalStatus {
                    name: "errorBudget".into(),
                    kind: "errorBudget".into(),
                    state: "NO_DATA".into(),
                    since: None,
                    value: None,
                });
                if missing_breaches {
                    breaches.push(Breach {
                        kind: BreachKind::ErrorBudget,
                        signal: "errorBudget".into(),
                        message: "error budget has no request data and missingData is breach".into(),
                        started_at: None,
                    });
                }
            }
        }
    }

    Evaluation { breaches, signals: bounded(signals) }
}

/// Most signals kept in status (the CRD's `bake.signals` maxItems).
pub const MAX_SIGNALS: usize = 100;

/// Orders signals deterministically (not-OK first, then by kind and name) and keeps at most
/// [`MAX_SIGNALS`], summarising the rest in one entry, so a prefix matching hundreds of alarms
/// cannot make the status too big to write.
fn bounded(mut signals: Vec<SignalStatus>) -> Vec<SignalStatus> {
    signals.sort_by(|a, b| (a.state == "OK", &a.kind, &a.name).cmp(&(b.state == "OK", &b.kind, &b.name)));
    if signals.len() > MAX_SIGNALS {
        let rest = signals.split_off(MAX_SIGNALS - 1);
        let not_ok = rest.iter().filter(|s| s.state != "OK").count();
        signals.push(SignalStatus {
            name: format!("{} more signals", rest.len()),
            kind: "summary".into(),
            state: if not_ok == 0 { "OK".into() } else { format!("{not_ok} not OK") },
            since: None,
            value: None,
        });
    }
    signals
}

fn alarm_breach(
    alarm: &AlarmObservation,
    since: Timestamp,
    previous: &[SignalStatus],
    missing_breaches: bool,
) -> Option<Breach> {
    let breach = |message: String, started_at: Option<Timestamp>| Breach {
        kind: BreachKind::Alarm,
        signal: alarm.name.clone(),
        message,
        started_at,
    };
    match alarm.state {
        AlarmState::Alarm => {
            return Some(breach(
                format!("alarm {} is in ALARM since {}", alarm.name, alarm.state_changed_at),
                Some(alarm.state_changed_at),
            ));
        }
        AlarmState::InsufficientData if missing_breaches => {
            return Some(breach(
                format!(
                    "alarm {} has INSUFFICIENT_DATA since {} and missingData is breach",
                    alarm.name, alarm.state_changed_at
                ),
                Some(alarm.state_changed_at),
            ));
        }
        _ => {}
    }
    // The alarm is not in ALARM now. Did it pass through ALARM since the new version got traffic?
    if let Some(history) = &alarm.history {
        // The state in force at `since` and every change after it.
        let at_since = history.iter().rev().find(|(t, _)| *t <= since).map(|(_, s)| *s);
        if at_since == Some(AlarmState::Alarm) {
            return Some(breach(format!("alarm {} was in ALARM when traffic moved", alarm.name), Some(since)));
        }
        if let Some((t, _)) = history.iter().find(|(t, s)| *t > since && *s == AlarmState::Alarm) {
            return Some(breach(
                format!("alarm {} went to ALARM at {t} and recovered before the next poll", alarm.name),
                Some(*t),
            ));
        }
        return None;
    }
    if alarm.state_changed_at <= since {
        return None;
    }
    // Changed state during the bake, history unavailable: decide from what was recorded.
    let recorded = previous.iter().find(|s| s.kind == "alarm" && s.name == alarm.name);
    match recorded {
        // Recorded in this same state at this same time: nothing happened since. Status keeps
        // whole seconds, so the times are compared to the second.
        Some(r)
            if r.state == alarm.state.as_str()
                && r.since.as_ref().map(|t| t.0.as_second()) == Some(alarm.state_changed_at.as_second()) =>
        {
            None
        }
        // INSUFFICIENT_DATA → OK is a normal recovery when missing data is ignored.
        Some(r)
            if r.state == AlarmState::InsufficientData.as_str()
                && r.since.as_ref().is_some_and(|t| t.0 < alarm.state_changed_at)
                && !missing_breaches =>
        {
            None
        }
        _ => Some(breach(
            format!(
                "alarm {} changed state at {} between polls and alarm history is unavailable; treated as a breach (fail closed)",
                alarm.name, alarm.state_changed_at
            ),
            Some(alarm.state_changed_at),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::rollback_policy::{AlarmSelector, ErrorBudget, MetricQuery, MetricTrigger, Statistic};
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy() -> RollbackPolicySpec {
        RollbackPolicySpec {
            alarms: vec![
                AlarmSelector { name: Some("ingest-5xx".into()), prefix: None },
                AlarmSelector { name: None, prefix: Some("ingest-p95-".into()) },
            ],
            metrics: vec![],
            error_budget: None,
            missing_data: MissingData::Ignore,
            interval: "2s".into(),
        }
    }

    fn alarm(name: &str, state: AlarmState, at: &str) -> AlarmObservation {
        AlarmObservation { name: name.into(), state, state_changed_at: ts(at), history: None }
    }

    fn obs(alarms: Vec<AlarmObservation>) -> SignalObservations {
        SignalObservations { observed_at: ts("2026-11-20T12:10:00Z"), alarms, metrics: vec![], error_budget: None }
    }

    const SINCE: &str = "2026-11-20T12:00:00Z";

    fn ok_alarms() -> Vec<AlarmObservation> {
        vec![
            alarm("ingest-5xx", AlarmState::Ok, "2026-11-01T00:00:00Z"),
            alarm("ingest-p95-api", AlarmState::Ok, "2026-11-01T00:00:00Z"),
        ]
    }

    #[test]
    fn all_ok_is_healthy() {
        let e = evaluate(&policy(), &obs(ok_alarms()), ts(SINCE), &[]);
        assert!(e.healthy(), "{:?}", e.breaches);
        assert_eq!(e.verdict(), Verdict::Healthy);
        assert_eq!(e.signals.len(), 2);
        assert_eq!(e.signals[0].state, "OK");
    }

    #[test]
    fn alarm_in_alarm_breaches_with_its_start_time() {
        let mut a = ok_alarms();
        a[1] = alarm("ingest-p95-api", AlarmState::Alarm, "2026-11-20T12:05:00Z");
        let e = evaluate(&policy(), &obs(a), ts(SINCE), &[]);
        let b = e.first_breach().unwrap();
        assert_eq!(b.kind, BreachKind::Alarm);
        assert_eq!(b.signal, "ingest-p95-api");
        assert_eq!(b.started_at, Some(ts("2026-11-20T12:05:00Z")));
    }

    #[test]
    fn missing_named_alarm_and_empty_prefix_fail_closed() {
        let e = evaluate(&policy(), &obs(vec![]), ts(SINCE), &[]);
        assert_eq!(e.breaches.len(), 2);
        assert!(e.breaches[0].message.contains("ingest-5xx does not exist"));
        assert!(e.breaches[1].message.contains("ingest-p95-*"));
        assert_eq!(e.signals[0].state, "MISSING");
    }

    #[test]
    fn flap_between_polls_is_seen_in_history() {
        let mut a = ok_alarms();
        a[0].state_changed_at = ts("2026-11-20T12:06:02Z");
        a[0].history = Some(vec![
            (ts("2026-11-01T00:00:00Z"), AlarmState::Ok),
            (ts("2026-11-20T12:06:01Z"), AlarmState::Alarm),
            (ts("2026-11-20T12:06:02Z"), AlarmState::Ok),
        ]);
        let e = evaluate(&policy(), &obs(a), ts(SINCE), &[]);
        let b = e.first_breach().unwrap();
        assert!(b.message.contains("recovered before the next poll"), "{}", b.message);
        assert_eq!(b.started_at, Some(ts("2026-11-20T12:06:01Z")));
    }

    #[test]
    fn flap_between_polls_without_history_fails_closed() {
        let recorded = evaluate(&policy(), &obs(ok_alarms()), ts(SINCE), &[]).signals;
        let mut a = ok_alarms();
        a[0].state_changed_at = ts("2026-11-20T12:06:02Z"); // OK again, but a newer OK
        let e = evaluate(&policy(), &obs(a.clone()), ts(SINCE), &recorded);
        assert!(e.first_breach().unwrap().message.contains("between polls"));
        // Seen and recorded at that state: the next poll does not re-trigger on its own record.
        let e2 = evaluate(&policy(), &obs(a), ts(SINCE), &e.signals);
        assert!(e2.healthy());
    }

    #[test]
    fn a_change_recorded_before_status_rounded_it_is_not_a_flap() {
        // The alarm settled at .509 s; status keeps whole seconds of what was recorded.
        let mut a = ok_alarms();
        a[0].state_changed_at = ts("2026-11-20T12:00:30.509Z");
        let mut recorded = evaluate(&policy(), &obs(a.clone()), ts("2026-11-20T12:00:30Z"), &[]).signals;
        for r in &mut recorded {
            r.since = r.since.take().map(|t| to_time(Timestamp::from_second(t.0.as_second()).unwrap()));
        }
        assert!(evaluate(&policy(), &obs(a.clone()), ts("2026-11-20T12:00:30Z"), &recorded).healthy());
        // A change in a later second is a flap.
        a[0].state_changed_at = ts("2026-11-20T12:00:31.200Z");
        let e = evaluate(&policy(), &obs(a), ts("2026-11-20T12:00:30Z"), &recorded);
        assert!(e.first_breach().unwrap().message.contains("between polls"));
    }

    #[test]
    fn recovery_from_insufficient_data_is_not_a_breach_when_ignored() {
        let mut a = ok_alarms();
        a[0] = alarm("ingest-5xx", AlarmState::InsufficientData, "2026-11-20T11:59:00Z");
        let e = evaluate(&policy(), &obs(a.clone()), ts(SINCE), &[]);
        assert!(e.healthy(), "INSUFFICIENT_DATA is ignored by default");
        assert_eq!(e.verdict(), Verdict::Inconclusive("no data from ingest-5xx (missingData: ignore)".into()));
        a[0] = alarm("ingest-5xx", AlarmState::Ok, "2026-11-20T12:03:00Z");
        assert!(evaluate(&policy(), &obs(a), ts(SINCE), &e.signals).healthy());
    }

    #[test]
    fn insufficient_data_breaches_when_policy_says_so() {
        let mut p = policy();
        p.missing_data = MissingData::Breach;
        let mut a = ok_alarms();
        a[0] = alarm("ingest-5xx", AlarmState::InsufficientData, "2026-11-20T12:01:00Z");
        assert!(!evaluate(&p, &obs(a), ts(SINCE), &[]).healthy());
    }

    #[test]
    fn alarm_already_firing_when_traffic_moved_is_a_breach() {
        let mut a = ok_alarms();
        a[0].history =
            Some(vec![(ts("2026-11-20T11:59:00Z"), AlarmState::Alarm), (ts("2026-11-20T12:00:30Z"), AlarmState::Ok)]);
        a[0].state_changed_at = ts("2026-11-20T12:00:30Z");
        assert!(!evaluate(&policy(), &obs(a), ts(SINCE), &[]).healthy());
    }

    fn query() -> MetricQuery {
        MetricQuery {
            namespace: "AWS/ApplicationELB".into(),
            metric_name: "HTTPCode_Target_5XX_Count".into(),
            dimensions: Default::default(),
            stat: Statistic::Sum,
            period_seconds: 60,
        }
    }

    /// The error-rate trigger: above 1% for `hold` (one datapoint when `None`).
    fn error_rate(hold: Option<&str>) -> MetricTrigger {
        MetricTrigger {
            name: "error-rate".into(),
            query: query(),
            max: Some(0.01),
            min: None,
            for_duration: hold.map(str::to_string),
        }
    }

    #[test]
    fn metric_must_stay_out_of_bounds_for_its_hold_time() {
        let mut p = policy();
        p.alarms.clear();
        p.metrics.push(error_rate(Some("3m")));
        // Read at 12:10; CloudWatch has published minutes up to the one starting at 12:07.
        let at = |m: i64| ts("2026-11-20T12:07:00Z").checked_sub(SignedDuration::from_mins(m)).unwrap();
        let mut o = obs(vec![]);
        o.metrics.push(MetricObservation {
            name: "error-rate".into(),
            datapoints: vec![(at(3), 0.001), (at(2), 0.05), (at(1), 0.04), (at(0), 0.03)],
        });
        let e = evaluate(&p, &o, ts(SINCE), &[]);
        assert!(e.first_breach().unwrap().message.contains("above max 0.01"), "{:?}", e.breaches);
        // One good point inside the hold time: no breach.
        o.metrics[0].datapoints[1].1 = 0.001;
        assert!(evaluate(&p, &o, ts(SINCE), &[]).healthy());
        // Only one bad minute of a 3 minute hold: not yet.
        o.metrics[0].datapoints = vec![(at(1), 0.001), (at(0), 0.5)];
        assert!(evaluate(&p, &o, ts(SINCE), &[]).healthy());
        // Without `for`, one late datapoint out of bounds is enough.
        p.metrics[0].for_duration = None;
        let e = evaluate(&p, &o, ts(SINCE), &[]);
        assert_eq!(e.first_breach().unwrap().started_at, Some(at(0)));
        assert_eq!(e.signals[0].value, Some(0.5));
        // Datapoints from before traffic moved, or stale ones, are not the new version's.
        o.metrics[0].datapoints = vec![(ts("2026-11-20T11:58:00Z"), 0.5)];
        assert_eq!(evaluate(&p, &o, ts(SINCE), &[]).signals[0].state, "NO_DATA");
    }

    #[test]
    fn metric_without_data_follows_missing_data() {
        let mut p = policy();
        p.alarms.clear();
        p.metrics.push(error_rate(None));
        let o = obs(vec![]);
        let e = evaluate(&p, &o, ts(SINCE), &[]);
        assert!(matches!(e.verdict(), Verdict::Inconclusive(r) if r.contains("error-rate")));
        p.missing_data = MissingData::Breach;
        let e = evaluate(&p, &o, ts(SINCE), &[]);
        assert!(matches!(e.verdict(), Verdict::Breach(b) if b.signal == "error-rate"));
    }

    fn budget_policy() -> RollbackPolicySpec {
        let mut p = policy();
        p.alarms.clear();
        p.error_budget = Some(ErrorBudget {
            objective: 99.9,
            period: "720h".into(),
            window: "10m".into(),
            max_burn_percent: 5.0,
            errors: query(),
            total: query(),
        });
        p
    }

    #[test]
    fn error_budget_burn_over_five_percent_in_ten_minutes_breaches() {
        // 5% of a 30-day 0.1% budget in 10 minutes needs an error rate of 0.1% * 0.05 * 4320 = 21.6%.
        let p = budget_policy();
        let mut o = obs(vec![]);
        o.error_budget = Some(BudgetObservation { errors: 200.0, total: 1000.0 });
        let e = evaluate(&p, &o, ts(SINCE), &[]);
        assert!(e.healthy(), "20% errors burn {:?}% < 5%", e.signals[0].value);
        o.error_budget = Some(BudgetObservation { errors: 230.0, total: 1000.0 });
        let e = evaluate(&p, &o, ts(SINCE), &[]);
        assert_eq!(e.first_breach().unwrap().kind, BreachKind::ErrorBudget);
        assert!(e.signals[0].value.unwrap() > 5.0);
    }

    #[test]
    fn error_budget_without_traffic_follows_missing_data() {
        let mut p = budget_policy();
        let mut o = obs(vec![]);
        o.error_budget = Some(BudgetObservation { errors: 0.0, total: 0.0 });
        assert!(evaluate(&p, &o, ts(SINCE), &[]).healthy());
        p.missing_data = MissingData::Breach;
        assert!(!evaluate(&p, &o, ts(SINCE), &[]).healthy());
    }

    #[test]
    fn policy_validation_reports_bad_fields() {
        let mut p = budget_policy();
        if let Some(b) = p.error_budget.as_mut() {
            b.period = "24h".into();
            b.window = "48h".into();
        }
        let err = validate_policy(&p).unwrap_err();
        assert!(err.to_string().contains("longer than the SLO period"), "{err}");
        if let Some(b) = p.error_budget.as_mut() {
            b.window = "2200h".into();
        }
        assert!(validate_policy(&p).unwrap_err().to_string().contains("at most 2160h"));
        let mut fast = budget_policy();
        fast.interval = "500ms".into();
        let err = validate_policy(&fast).unwrap_err();
        assert!(err.to_string().contains("shorter than 1s"), "{err}");
        p.interval = "soon".into();
        assert!(validate_policy(&p).unwrap_err().to_string().contains("spec.interval"));
    }

    #[test]
    fn current_health_reads_alarms_now_and_the_latest_published_metrics() {
        let mut p = policy();
        p.metrics.push(error_rate(None));
        p.missing_data = MissingData::Breach;
        let mut o = obs(ok_alarms());
        // Published two minutes late, as CloudWatch does.
        o.metrics.push(MetricObservation {
            name: "error-rate".into(),
            datapoints: vec![(ts("2026-11-20T12:08:00Z"), 0.001)],
        });
        assert_eq!(current_health(&p, &o), Ok(()));
        o.metrics[0].datapoints[0].1 = 0.5;
        assert!(current_health(&p, &o).unwrap_err().contains("error-rate"));
        o.metrics[0].datapoints[0].1 = 0.001;
        o.alarms[0] = alarm("ingest-5xx", AlarmState::Alarm, "2026-11-20T12:09:00Z");
        assert_eq!(current_health(&p, &o), Err("alarm ingest-5xx is in ALARM since 2026-11-20T12:09:00Z".into()));
    }

    #[test]
    fn signals_are_ordered_and_bounded() {
        let mut p = policy();
        p.alarms = vec![AlarmSelector { name: None, prefix: Some("ingest-".into()) }];
        let mut alarms: Vec<AlarmObservation> =
            (0..150).map(|i| alarm(&format!("ingest-{i:03}"), AlarmState::Ok, "2026-11-01T00:00:00Z")).collect();
        alarms[120].state = AlarmState::Alarm;
        alarms.reverse();
        let e = evaluate(&p, &obs(alarms), ts(SINCE), &[]);
        assert_eq!(e.signals.len(), MAX_SIGNALS);
        assert_eq!(e.signals[0].name, "ingest-120", "not-OK signals come first");
        assert_eq!(e.signals[1].name, "ingest-000");
        assert_eq!(e.signals[99].name, "51 more signals");
        assert_eq!(e.first_breach().unwrap().signal, "ingest-120");
    }

    proptest! {
        /// Whatever happened between two polls, an alarm that was in ALARM at any point after
        /// traffic moved is a breach when history is available.
        #[test]
        fn any_alarm_after_since_in_history_is_a_breach(changes in proptest::collection::vec((1i64..3600, 0u8..3), 1..12)) {
            let since = ts(SINCE);
            let mut t = since;
            let mut history = vec![(ts("2026-11-01T00:00:00Z"), AlarmState::Ok)];
            for (dt, s) in &changes {
                t = t.checked_add(SignedDuration::from_secs(*dt)).unwrap();
                let state = match s { 0 => AlarmState::Ok, 1 => AlarmState::Alarm, _ => AlarmState::InsufficientData };
                history.push((t, state));
            }
            let (last_t, last_s) = *history.last().unwrap();
            let mut a = alarm("ingest-5xx", last_s, "2026-11-01T00:00:00Z");
            a.state_changed_at = last_t;
            a.history = Some(history.clone());
            let mut p = policy();
            p.alarms.truncate(1);
            let e = evaluate(&p, &obs(vec![a]), since, &[]);
            let expected = history.iter().any(|(_, s)| *s == AlarmState::Alarm);
            prop_assert_eq!(!e.healthy(), expected);
        }
    }
}
