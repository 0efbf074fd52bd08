//! CloudWatch signal reads against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use jiff::Timestamp;
use kiln_api::rollback_policy::RollbackPolicySpec;
use kiln_aws::credentials::Clients;
use kiln_aws::signals::cloudwatch::CloudWatch;
use kiln_aws::signals::{AlarmCache, AlarmCaches, AlarmSource, read_policy};
use kiln_core::signals::AlarmState;
use kiln_testkit::*;

fn source(clients: &Clients) -> Arc<CloudWatch> {
    Arc::new(CloudWatch::new(clients.cloudwatch.clone(), clients.scope.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_is_seen_in_the_next_batched_read() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    put_alarm(&clients, "cw1-5xx").await.unwrap();
    put_alarm(&clients, "cw1-latency").await.unwrap();
    set_alarm_state(&clients, "cw1-5xx", "OK").await.unwrap();
    set_alarm_state(&clients, "cw1-latency", "OK").await.unwrap();
    let cw = source(&clients);
    let cache = AlarmCache::new(clients.scope.clone(), cw.clone(), Duration::ZERO);
    let names = vec!["cw1-5xx".to_string(), "cw1-latency".to_string(), "cw1-missing".to_string()];

    let first = cache.read(&names, &[], None).await.unwrap();
    assert_eq!(first.alarms.len(), 2, "a missing alarm is absent (the core counts it as a breach)");
    assert!(first.alarms.iter().all(|a| a.state == AlarmState::Ok));

    set_alarm_state(&clients, "cw1-5xx", "ALARM").await.unwrap();
    let second = cache.read(&names, &[], None).await.unwrap();
    let a = second.alarms.iter().find(|a| a.name == "cw1-5xx").unwrap();
    assert_eq!(a.state, AlarmState::Alarm);
    assert_eq!(cw.describe_alarms_calls(), 2, "one batched call per read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_alarms_in_three_calls_shared_across_bakes() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let names: Vec<String> = (0..250).map(|i| format!("cw2-alarm-{i:03}")).collect();
    for n in &names {
        put_alarm(&clients, n).await.unwrap();
    }
    let cw = source(&clients);
    let caches = AlarmCaches::new(Duration::from_secs(3600));
    let cache = caches.get(&clients.scope, || cw.clone() as Arc<dyn AlarmSource>).await;
    let read = cache.read(&names, &[], None).await.unwrap();
    assert_eq!(read.alarms.len(), 250);
    assert_eq!(cw.describe_alarms_calls(), 3, "250 names in batches of at most 100");

    // Another bake in the same account within the interval: answered from the shared read.
    let other = caches.get(&clients.scope, || unreachable!("the cache exists")).await;
    let subset = other.read(&names[..40], &[], None).await.unwrap();
    assert_eq!(subset.alarms.len(), 40);
    assert_eq!(cw.describe_alarms_calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_select_every_matching_alarm() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    put_alarm(&clients, "cw3-api-5xx").await.unwrap();
    put_alarm(&clients, "cw3-api-latency").await.unwrap();
    put_alarm(&clients, "cw3-other").await.unwrap();
    // Composite alarms: moto 5.2.5 does not implement PutCompositeAlarm, so the reader's
    // composite path (CompositeAlarms in the DescribeAlarms answer) is not exercised here.
    let cache = AlarmCache::new(clients.scope.clone(), source(&clients), Duration::ZERO);
    let read = cache.read(&[], &["cw3-api-".to_string()], None).await.unwrap();
    let names: Vec<&str> = read.alarms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["cw3-api-5xx", "cw3-api-latency"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flap_between_reads_is_not_missed() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    put_alarm(&clients, "cw4-5xx").await.unwrap();
    set_alarm_state(&clients, "cw4-5xx", "OK").await.unwrap();
    let cache = AlarmCache::new(clients.scope.clone(), source(&clients), Duration::ZERO);
    let names = vec!["cw4-5xx".to_string()];
    let before = cache.read(&names, &[], None).await.unwrap();
    let last_change = before.alarms[0].state_changed_at;
    // moto stamps state changes with whole seconds: these waits make the flap's timestamps
    // strictly later than the read before it (what a real flap between polls looks like).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    set_alarm_state(&clients, "cw4-5xx", "ALARM").await.unwrap();
    set_alarm_state(&clients, "cw4-5xx", "OK").await.unwrap();
    // moto answers DescribeAlarmHistory with a bare 500: like any 5xx, an error to retry, never
    // silently "no history".
    let err = cache.read(&names, &[], Some(since)).await.unwrap_err();
    assert_eq!(err.class(), kiln_aws::ErrorClass::RetryLater, "{err}");
    // An endpoint declared without history (moto) falls back.
    let source = Arc::new(CloudWatch::new(clients.cloudwatch.clone(), clients.scope.clone()).without_history());
    let cache = AlarmCache::new(clients.scope.clone(), source, Duration::ZERO);
    let after = cache.read(&names, &[], Some(since)).await.unwrap();
    let a = &after.alarms[0];
    assert_eq!(a.state, AlarmState::Ok);
    // The state-change time moved past the last read; without history the core counts the
    // move as a flap (fails closed).
    assert!(a.state_changed_at > since && a.state_changed_at > last_change, "{a:?}");
    assert_eq!(a.history, None);

    let policy: RollbackPolicySpec =
        serde_json::from_value(serde_json::json!({"alarms": [{"name": "cw4-5xx"}]})).unwrap();
    let obs = kiln_core::signals::SignalObservations {
        observed_at: after.observed_at,
        alarms: after.alarms.clone(),
        metrics: vec![],
        error_budget: None,
    };
    let ev = kiln_core::signals::evaluate(&policy, &obs, since, &[]);
    assert!(ev.first_breach().is_some(), "a flap between reads is a breach");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_triggers_and_error_budget_from_get_metric_data() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let now = Timestamp::now();
    let dim = Dimension::builder().name("Service").value("checkout").build();
    for (name, value) in
        [("Errors", 3.0), ("Errors", 2.0), ("Requests", 500.0), ("Requests", 500.0), ("Latency", 250.0)]
    {
        clients
            .cloudwatch
            .put_metric_data()
            .namespace("Kiln/CW5")
            .metric_data(
                MetricDatum::builder()
                    .metric_name(name)
                    .dimensions(dim.clone())
                    .value(value)
                    .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(now.as_second() - 30))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let policy: RollbackPolicySpec = serde_json::from_value(serde_json::json!({
        "metrics": [{
            "name": "latency",
            "query": {"namespace": "Kiln/CW5", "metricName": "Latency", "dimensions": {"Service": "checkout"}, "stat": "Maximum"},
            "max": 200.0
        }],
        "errorBudget": {
            "objective": 99.9, "window": "10m", "maxBurnPercent": 5.0,
            "errors": {"namespace": "Kiln/CW5", "metricName": "Errors", "dimensions": {"Service": "checkout"}},
            "total": {"namespace": "Kiln/CW5", "metricName": "Requests", "dimensions": {"Service": "checkout"}}
        }
    }))
    .unwrap();
    let cw = source(&clients);
    let cache = AlarmCache::new(clients.scope.clone(), cw.clone(), Duration::ZERO);
    let obs = read_policy(&policy, &cache, cw.as_ref(), None).await.unwrap();
    assert_eq!(obs.metrics.len(), 1);
    let values: Vec<f64> = obs.metrics[0].datapoints.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, [250.0]);
    let budget = obs.error_budget.unwrap();
    assert_eq!((budget.errors, budget.total), (5.0, 1000.0));
    assert!(kiln_core::signals::current_health(&policy, &obs).is_err(), "latency 250 > 200 breaches");
}
