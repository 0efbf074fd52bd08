//! Benchmark (not a test) of the batched alarm reader against moto: 1,000 alarms across three
//! accounts reached by AssumeRole; each round reads every alarm of every account (3 caches in
//! parallel, interval 0 so every round calls CloudWatch). Prints DescribeAlarms calls per second
//! and read latency. Needs `scripts/moto.sh`.
//!
//! `cargo run -p kiln-aws --example alarm_bench -- [alarms] [rounds]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
use kiln_aws::credentials::{EnvironmentAws, Sessions, StsAssumeRole};
use kiln_aws::signals::AlarmCache;
use kiln_aws::signals::cloudwatch::CloudWatch;
use kiln_testkit::{Moto, REGION};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let moto = Moto::start();
    let settings = moto.settings();
    let base = settings
        .sdk_config(REGION, SharedCredentialsProvider::new(Credentials::new("AKIATESTTESTTEST", "t", None, None, "s")))
        .await;
    let sessions = Sessions::new(settings, Arc::new(StsAssumeRole::new(&base)));
    let accounts = ["111111111111", "222222222222", "333333333333"];
    let mut readers = Vec::new();
    let setup = Instant::now();
    for (i, account) in accounts.iter().enumerate() {
        let env = EnvironmentAws {
            account_id: account.to_string(),
            region: REGION.into(),
            role_arn: format!("arn:aws:iam::{account}:role/kiln"),
            external_id: None,
            session_tags: Vec::new(),
        };
        let clients = sessions.clients(&env, "kiln.bench").await.unwrap();
        let n = total / accounts.len() + usize::from(i < total % accounts.len());
        let names: Vec<String> = (0..n).map(|j| format!("bench-{i}-{j:04}")).collect();
        for name in &names {
            clients
                .cloudwatch
                .put_metric_alarm()
                .alarm_name(name)
                .namespace("Kiln/Bench")
                .metric_name("Errors")
                .statistic(Statistic::Sum)
                .period(60)
                .evaluation_periods(1)
                .threshold(1.0)
                .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
                .send()
                .await
                .unwrap();
        }
        let cw = Arc::new(CloudWatch::new(clients.cloudwatch.clone(), clients.scope.clone()));
        let cache = Arc::new(AlarmCache::new(clients.scope.clone(), cw.clone(), Duration::ZERO));
        readers.push((cache, cw, names));
    }
    println!("setup: {total} alarms in {} accounts in {:.1?}", accounts.len(), setup.elapsed());

    let mut latencies = Vec::new();
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let reads = readers.iter().map(|(cache, _, names)| {
            let (cache, names) = (cache.clone(), names.clone());
            tokio::spawn(async move { cache.read(&names, &[], None).await.unwrap().alarms.len() })
        });
        let mut seen = 0;
        for r in reads {
            seen += r.await.unwrap();
        }
        assert_eq!(seen, total);
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    let calls: u64 = readers.iter().map(|(_, cw, _)| cw.describe_alarms_calls()).sum();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{rounds} rounds: {calls} DescribeAlarms calls ({} per round) in {elapsed:.2?} = {:.0} calls/s, {:.0} alarms/s",
        calls / rounds as u64,
        calls as f64 / elapsed.as_secs_f64(),
        (total * rounds) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "read of all {total} alarms (3 accounts in parallel): p50 {:.1?}, p95 {:.1?}, max {:.1?}",
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
}
