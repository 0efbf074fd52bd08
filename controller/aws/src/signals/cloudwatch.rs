//! The real [`AlarmSource`] on CloudWatch.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, HistoryItemType, Metric, MetricDataQuery, MetricStat, ScanBy, StateValue,
};
use jiff::Timestamp;
use kiln_core::signals::{AlarmObservation, AlarmState};

use super::{AlarmSource, MAX_NAMES_PER_CALL, MetricRequest};
use crate::error::{AwsError, Result, Scope, sdk};

/// CloudWatch in one account and region.
#[derive(Debug)]
pub struct CloudWatch {
    client: Client,
    scope: Scope,
    describe_alarms_calls: AtomicU64,
    history: bool,
}

impl CloudWatch {
    /// From a CloudWatch client acting in `scope`.
    pub fn new(client: Client, scope: Scope) -> Self {
        CloudWatch { client, scope, describe_alarms_calls: AtomicU64::new(0), history: true }
    }

    /// A source for an endpoint without DescribeAlarmHistory (moto answers it with a bare
    /// 500 that cannot be told from a real one): history is never asked and always `None`.
    pub fn without_history(mut self) -> Self {
        self.history = false;
        self
    }

    /// How many DescribeAlarms calls this source made (for metrics and the batching tests).
    pub fn describe_alarms_calls(&self) -> u64 {
        self.describe_alarms_calls.load(Ordering::Relaxed)
    }

    async fn describe(&self, names: Option<&[String]>, prefix: Option<&str>) -> Result<Vec<AlarmObservation>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.describe_alarms_calls.fetch_add(1, Ordering::Relaxed);
            let page = self
                .client
                .describe_alarms()
                .set_alarm_names(names.map(<[String]>::to_vec))
                .set_alarm_name_prefix(prefix.map(str::to_string))
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .max_records(100)
                .set_next_token(token)
                .send()
                .await
                .map_err(sdk("monitoring", "DescribeAlarms"))?;
            for a in page.metric_alarms() {
                if let Some(o) = observation(
                    a.alarm_name(),
                    a.state_value(),
                    a.state_transitioned_timestamp(),
                    a.state_updated_timestamp(),
                ) {
                    out.push(o);
                }
            }
            for a in page.composite_alarms() {
                if let Some(o) = observation(
                    a.alarm_name(),
                    a.state_value(),
                    a.state_transitioned_timestamp(),
                    a.state_updated_timestamp(),
                ) {
                    out.push(o);
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

fn state(v: &StateValue) -> AlarmState {
    match v {
        StateValue::Alarm => AlarmState::Alarm,
        StateValue::Ok => AlarmState::Ok,
        _ => AlarmState::InsufficientData,
    }
}

fn ts(d: &DateTime) -> Timestamp {
    Timestamp::new(d.secs(), d.subsec_nanos() as i32).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn to_dt(t: Timestamp) -> DateTime {
    DateTime::from_secs(t.as_second())
}

/// `StateTransitionedTimestamp` (when the state last changed) when CloudWatch reports it;
/// otherwise `StateUpdatedTimestamp` (also moves on reason-only updates, so it may report a
/// change that was not one: fail closed). moto reports only the latter.
fn observation(
    name: Option<&str>,
    value: Option<&StateValue>,
    transitioned: Option<&DateTime>,
    updated: Option<&DateTime>,
) -> Option<AlarmObservation> {
    Some(AlarmObservation {
        name: name?.to_string(),
        state: value.map(state).unwrap_or(AlarmState::InsufficientData),
        state_changed_at: transitioned.or(updated).map(ts).unwrap_or(Timestamp::UNIX_EPOCH),
        history: None,
    })
}

fn parse_state(s: &str) -> Option<AlarmState> {
    match s {
        "ALARM" => Some(AlarmState::Alarm),
        "OK" => Some(AlarmState::Ok),
        "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
        _ => None,
    }
}

#[async_trait]
impl AlarmSource for CloudWatch {
    async fn alarms_by_name(&self, names: &[String]) -> Result<Vec<AlarmObservation>> {
        if names.len() > MAX_NAMES_PER_CALL {
            return Err(AwsError::Invalid {
                message: format!("DescribeAlarms takes at most {MAX_NAMES_PER_CALL} names, got {}", names.len()),
                scope: self.scope.clone(),
            });
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.describe(Some(names), None).await
    }

    async fn alarms_by_prefix(&self, prefix: &str) -> Result<Vec<AlarmObservation>> {
        self.describe(None, Some(prefix)).await
    }

    async fn alarm_history(&self, name: &str, since: Timestamp) -> Result<Option<Vec<(Timestamp, AlarmState)>>> {
        if !self.history {
            return Ok(None);
        }
        let mut items = Vec::new();
        let mut token = None;
        loop {
            let page = match self
                .client
                .describe_alarm_history()
                .alarm_name(name)
                .history_item_type(HistoryItemType::StateUpdate)
                .start_date(to_dt(since))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token)
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    let err = crate::error::from_sdk("cloudwatch", "DescribeAlarmHistory", e);
                    // Unavailable (no permission, or an emulator without the API): the caller
                    // falls back to the state-change timestamp, which fails closed. Anything
                    // else (throttling, 5xx) is retried.
                    return if history_unavailable(&err) { Ok(None) } else { Err(err) };
                }
            };
            for h in page.alarm_history_items() {
                let Some(at) = h.timestamp() else { continue };
                // An unreadable item: treat the history as unavailable (fails closed).
                let Ok(data) = serde_json::from_str::<serde_json::Value>(h.history_data().unwrap_or("{}")) else {
                    return Ok(None);
                };
                if let Some(s) = data.pointer("/newState/stateValue").and_then(|v| v.as_str()).and_then(parse_state) {
                    items.push((ts(at), s));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                items.sort_by_key(|(t, _)| *t);
                return Ok(Some(items));
            }
        }
    }

    async fn metric_data(
        &self,
        requests: &[MetricRequest],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Vec<(Timestamp, f64)>>> {
        let mut results = vec![Vec::new(); requests.len()];
        // GetMetricData takes up to 500 queries per call.
        for (chunk_index, chunk) in requests.chunks(500).enumerate() {
            let queries: Vec<MetricDataQuery> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let dims = r
                        .query
                        .dimensions
                        .iter()
                        .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                        .collect::<Vec<_>>();
                    let metric = Metric::builder()
                        .namespace(&r.query.namespace)
                        .metric_name(&r.query.metric_name)
                        .set_dimensions(Some(dims))
                        .build();
                    let stat = MetricStat::builder()
                        .metric(metric)
                        .period(r.period_seconds)
                        .stat(statistic(r.query.stat))
                        .build();
                    MetricDataQuery::builder().id(format!("q{i}")).metric_stat(stat).return_data(true).build()
                })
                .collect();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(queries.clone()))
                    .start_time(to_dt(start))
                    .end_time(to_dt(end))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(sdk("monitoring", "GetMetricData"))?;
                for r in page.metric_data_results() {
                    let Some(i) = r.id().and_then(|id| id.strip_prefix('q')).and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    if let Some(series) = results.get_mut(chunk_index * 500 + i) {
                        series.extend(r.timestamps().iter().map(ts).zip(r.values().iter().copied()));
                    }
                }
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(results)
    }
}

fn statistic(s: kiln_api::rollback_policy::Statistic) -> &'static str {
    use kiln_api::rollback_policy::Statistic;
    match s {
        Statistic::Sum => "Sum",
        Statistic::Average => "Average",
        Statistic::Minimum => "Minimum",
        Statistic::Maximum => "Maximum",
        Statistic::SampleCount => "SampleCount",
    }
}

/// DescribeAlarmHistory cannot be used in this account or endpoint: access denied, or an
/// endpoint that says it does not know the action. A 5xx is never "unavailable": moto's bare 500
/// for its missing DescribeAlarmHistory looks like any other, hence [`CloudWatch::without_history`].
pub(crate) fn history_unavailable(err: &AwsError) -> bool {
    matches!(err, AwsError::AccessDenied { .. })
        || matches!(err.code(), Some("NotImplemented" | "InvalidAction" | "UnknownOperationException"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::classify;

    #[test]
    fn only_denied_or_unimplemented_history_is_unavailable() {
        let denied = classify("cloudwatch", "DescribeAlarmHistory", 403, "AccessDenied".into(), "no".into());
        assert!(history_unavailable(&denied));
        let unknown = classify("cloudwatch", "DescribeAlarmHistory", 400, "InvalidAction".into(), "no such".into());
        assert!(history_unavailable(&unknown));
        let bare_500 = classify("cloudwatch", "DescribeAlarmHistory", 500, "Unknown".into(), String::new());
        assert!(!history_unavailable(&bare_500));
        let throttled =
            classify("cloudwatch", "DescribeAlarmHistory", 400, "Throttling".into(), "Rate exceeded".into());
        assert!(!history_unavailable(&throttled));
        let unavailable =
            classify("cloudwatch", "DescribeAlarmHistory", 503, "ServiceUnavailable".into(), String::new());
        assert!(!history_unavailable(&unavailable));
        assert_eq!(unavailable.class(), crate::ErrorClass::RetryLater);
    }
}
