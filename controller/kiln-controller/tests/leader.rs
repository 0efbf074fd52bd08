//! Leader election against the in-repo Kubernetes API test server (real HTTP, real Lease
//! objects with resourceVersion conflicts). Durations are short so the tests are quick, but
//! every wait is a poll with a generous deadline: the machine is shared with builds.

use std::time::Duration;

use kiln_controller::leader::{LeaderElector, LeaseConfig};
use kiln_test_apiserver::{Config, FaultRule, Faults, TestServer, start};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use tokio::time::Instant;

/// How long any condition may take to come true before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

async fn client(server: &TestServer) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(cfg).expect("client")
}

fn config(identity: &str, lease: u64, renew_ms: u64, retry_ms: u64) -> LeaseConfig {
    LeaseConfig {
        namespace: "default".into(),
        name: "kiln-controller".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(lease),
        renew_deadline: Duration::from_millis(renew_ms),
        retry_period: Duration::from_millis(retry_ms),
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after [`PATIENCE`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stored_lease(server: &TestServer) -> Value {
    server.handle.get("leases", Some("default"), "kiln-controller").expect("the Lease exists")
}

fn holder(server: &TestServer) -> Option<String> {
    stored_lease(server)["spec"]["holderIdentity"].as_str().map(str::to_string)
}

fn transitions(server: &TestServer) -> i64 {
    stored_lease(server)["spec"]["leaseTransitions"].as_i64().unwrap_or(0)
}

/// Starts `a`, waits until it leads (so the roles are known), then starts `b`.
async fn leader_and_standby(server: &TestServer, a: LeaseConfig, b: LeaseConfig) -> (LeaderElector, LeaderElector) {
    let a = LeaderElector::start(client(server).await, a);
    eventually("a to lead", || a.is_leader()).await;
    let b = LeaderElector::start(client(server).await, b);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_two_candidates_leads() {
    let server = start(Config::default()).await.expect("test server");
    // A long lease: this test is about mutual exclusion, not about expiry under load.
    let a = LeaderElector::start(client(&server).await, config("a", 30, 20_000, 200));
    let b = LeaderElector::start(client(&server).await, config("b", 30, 20_000, 200));
    eventually("one candidate to lead", || a.is_leader() || b.is_leader()).await;
    let (leader, standby, leader_id) = if a.is_leader() { (&a, &b, "a") } else { (&b, &a, "b") };
    // Over many retry periods the standby keeps reading the Lease and never takes it.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert!(!standby.is_leader(), "both candidates lead");
        assert!(leader.is_leader(), "the leader stopped leading");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(holder(&server).as_deref(), Some(leader_id));
    assert_eq!(transitions(&server), 0, "the first holder created the Lease");
    let lease = stored_lease(&server);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 30);
    assert!(lease["spec"]["acquireTime"].as_str().is_some_and(|t| t.ends_with('Z')), "{lease}");
    assert!(lease["spec"]["renewTime"].as_str().is_some_and(|t| t.contains('.')), "MicroTime: {lease}");
    // The leader renews: the Lease keeps changing while it leads.
    let renewed = lease["spec"]["renewTime"].clone();
    eventually("a renewal", || stored_lease(&server)["spec"]["renewTime"] != renewed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_after_the_lease_expires() {
    let server = start(Config::default()).await.expect("test server");
    let (a, b) = leader_and_standby(&server, config("a", 2, 1_500, 300), config("b", 2, 1_500, 300)).await;
    let mut b_leads = b.subscribe();
    // Let b see a's Lease being renewed, so it is a genuine standby.
    let seen = server.handle.requests(Some("get"), Some("leases"));
    eventually("b to read the Lease", || server.handle.requests(Some("get"), Some("leases")) >= seen + 4).await;
    assert!(!b.is_leader());
    assert_eq!(holder(&server).as_deref(), Some("a"));

    let crashed = Instant::now();
    a.abort();
    tokio::time::timeout(PATIENCE, b_leads.wait_for(|leading| *leading))
        .await
        .expect("b takes over")
        .expect("b's election runs");
    // b waited for the lease to expire: at least lease duration (2 s) after a's last renewal,
    // which was at most a renew deadline (1.5 s) before the crash.
    assert!(crashed.elapsed() >= Duration::from_millis(400), "took over after {:?}", crashed.elapsed());
    assert!(b.is_leader());
    assert_eq!(holder(&server).as_deref(), Some("b"));
    assert_eq!(transitions(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once() {
    let server = start(Config::default()).await.expect("test server");
    // A 30 s lease: a takeover within seconds can only come from the release.
    let (a, b) = leader_and_standby(&server, config("a", 30, 20_000, 200), config("b", 30, 20_000, 200)).await;
    let mut a_leads = a.subscribe();
    let mut b_leads = b.subscribe();
    let seen = server.handle.requests(Some("get"), Some("leases"));
    eventually("b to read the Lease", || server.handle.requests(Some("get"), Some("leases")) >= seen + 4).await;
    assert!(!b.is_leader());

    let released = Instant::now();
    a.release().await;
    assert!(!*a_leads.borrow_and_update(), "a no longer leads once released");
    tokio::time::timeout(Duration::from_secs(20), b_leads.wait_for(|leading| *leading))
        .await
        .expect("b takes over well before the 30 s lease would expire")
        .expect("b's election runs");
    assert!(released.elapsed() < Duration::from_secs(20));
    assert_eq!(holder(&server).as_deref(), Some("b"));
    assert_eq!(transitions(&server), 1);
    assert_eq!(stored_lease(&server)["spec"]["leaseDurationSeconds"], 30, "b wrote its own duration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_clears_the_holder() {
    let server = start(Config::default()).await.expect("test server");
    let a = LeaderElector::start(client(&server).await, config("a", 30, 20_000, 200));
    eventually("a to lead", || a.is_leader()).await;
    a.release().await;
    let lease = stored_lease(&server);
    assert_eq!(lease["spec"].get("holderIdentity"), None, "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1, "{lease}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_never_touches_the_lease_on_release() {
    let server = start(Config::default()).await.expect("test server");
    let (a, b) = leader_and_standby(&server, config("a", 30, 20_000, 200), config("b", 30, 20_000, 200)).await;
    let seen = server.handle.requests(Some("get"), Some("leases"));
    eventually("b to read the Lease", || server.handle.requests(Some("get"), Some("leases")) >= seen + 2).await;
    b.release().await;
    assert!(a.is_leader());
    assert_eq!(holder(&server).as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_api_errors_are_retried() {
    let server = start(Config::default()).await.expect("test server");
    // The first attempts fail with 500 (get) and 409 (create): the candidate keeps trying.
    server.handle.set_faults(Faults {
        rules: vec![
            FaultRule::times(Some("get"), Some("leases"), 500, 2),
            FaultRule::times(Some("create"), Some("leases"), 409, 1),
        ],
        ..Faults::default()
    });
    let a = LeaderElector::start(client(&server).await, config("a", 30, 20_000, 200));
    eventually("a to lead despite the errors", || a.is_leader()).await;
    // A few failed renewals within the renew deadline do not cost the leadership.
    server.handle.set_faults(Faults {
        rules: vec![FaultRule::times(Some("update"), Some("leases"), 500, 3)],
        ..Faults::default()
    });
    let updates = server.handle.requests(Some("update"), Some("leases"));
    eventually("renewals after the errors", || server.handle.requests(Some("update"), Some("leases")) >= updates + 5)
        .await;
    assert!(a.is_leader());
    assert_eq!(holder(&server).as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_steps_down_when_it_cannot_renew() {
    let server = start(Config::default()).await.expect("test server");
    let a = LeaderElector::start(client(&server).await, config("a", 4, 2_000, 200));
    eventually("a to lead", || a.is_leader()).await;
    let mut a_leads = a.subscribe();
    server.handle.set_faults(Faults {
        rules: vec![FaultRule {
            rate: 1.0,
            remaining: None,
            ..FaultRule::times(Some("update"), Some("leases"), 500, 0)
        }],
        ..Faults::default()
    });
    tokio::time::timeout(PATIENCE, a_leads.wait_for(|leading| !*leading))
        .await
        .expect("a steps down after the renew deadline")
        .expect("a's election ran");
    assert!(!a.is_leader());
}
