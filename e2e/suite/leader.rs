//! Scenario 8: two controller replicas; only the leader acts. Killing it hands the work to the
//! other within the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kiln_api::PromotionPhase;
use kube::api::Api;
use serde_json::json;

use crate::harness::{ControllerOptions, KILN_NS, World, lambda_world};

const MIN: Duration = Duration::from_secs(60);

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Waits until `identity` holds the controller's Lease.
async fn wait_holder(w: &World, leases: &Api<Lease>, identity: &str) {
    w.eventually(MIN, &format!("{identity} leads"), || async {
        let l = leases.get_opt("kiln-controller").await.ok().flatten()?;
        (l.spec?.holder_identity? == identity).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_standby_takes_over() {
    let mut w = lambda_world("s8-leader", "profile", ["1s", "1s", "1s"]).await;
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), KILN_NS);
    w.start_controller(ControllerOptions::default());
    let a = w.controllers[0].identity.clone();
    wait_holder(&w, &leases, &a).await;
    w.start_controller(ControllerOptions::default());
    let b = w.controllers[1].identity.clone();
    // b is ready (a standby) but never reconciles.
    w.eventually(MIN, "b ready as a standby", || async {
        (w.controllers[1].http_get("/readyz")?.0 == 200).then_some(())
    })
    .await;

    let r1 = w.lambda_release("profile", 2, &["dev"], json!({})).await;
    w.wait_phase(&format!("{r1}-dev"), PromotionPhase::Succeeded, MIN).await;
    let (_, body_b) = w.controllers[1].http_get("/metrics").expect("b metrics");
    assert_eq!(metric(&body_b, "kiln_leader "), 0.0, "b is not leader");
    assert_eq!(metric(&body_b, "kiln_reconciles_total"), 0.0, "the standby reconciled nothing:\n{body_b}");
    let (_, body_a) = w.controllers[0].http_get("/metrics").expect("a metrics");
    assert!(metric(&body_a, "kiln_reconciles_total") > 0.0);

    // The leader dies without giving the lease up: b takes over once it expires.
    w.controllers[0].kill();
    let killed = Instant::now();
    wait_holder(&w, &leases, &b).await;
    assert!(killed.elapsed() < Duration::from_secs(30), "took over in {:?}", killed.elapsed());
    let r2 = w.lambda_release("profile", 3, &["dev"], json!({})).await;
    w.wait_phase(&format!("{r2}-dev"), PromotionPhase::Succeeded, MIN).await;
    assert_eq!(w.alias("dev", "profile").await, kiln_testkit::AliasState::on("3"));
    let (_, body_b) = w.controllers[1].http_get("/metrics").expect("b metrics");
    assert_eq!(metric(&body_b, "kiln_leader "), 1.0);
    assert!(metric(&body_b, "kiln_reconciles_total") > 0.0);

    // A graceful stop (SIGTERM, as Kubernetes sends) gives the Lease up: a third replica takes
    // over at once rather than after the lease duration.
    w.start_controller(ControllerOptions { lease: "30s", ..ControllerOptions::default() });
    let c = w.controllers[2].identity.clone();
    w.eventually(MIN, "c ready as a standby", || async {
        (w.controllers[2].http_get("/readyz")?.0 == 200).then_some(())
    })
    .await;
    w.controllers[1].terminate();
    let stopped = Instant::now();
    wait_holder(&w, &leases, &c).await;
    assert!(stopped.elapsed() < Duration::from_secs(15), "the released Lease was taken in {:?}", stopped.elapsed());
    assert_eq!(w.controllers[1].exit_code(Duration::from_secs(20)), Some(0), "a graceful stop exits 0");
}

/// Issue "Safety under partition" §1: a leader that loses its Lease exits non-zero within
/// seconds (so its pod restarts as a standby) instead of lingering as a ready replica that leads
/// nothing. The Lease is taken over under it, as a new leader would after a partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_the_lease_exits_at_once() {
    let mut w = lambda_world("s8-lost", "profile", ["1s", "1s", "1s"]).await;
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), KILN_NS);
    w.start_controller(ControllerOptions::default());
    let a = w.controllers[0].identity.clone();
    wait_holder(&w, &leases, &a).await;
    w.eventually(MIN, "a ready", || async { (w.controllers[0].http_get("/readyz")?.0 == 200).then_some(()) }).await;

    // Another replica's record, freshly renewed: a sees it at its next renewal.
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let patch = json!({"spec": {"holderIdentity": "s8-lost-intruder", "renewTime": now, "acquireTime": now,
                                "leaseDurationSeconds": 60}});
    leases
        .patch("kiln-controller", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("take the lease over");
    let taken = Instant::now();
    let code = w.controllers[0].exit_code(Duration::from_secs(20));
    assert_eq!(code, Some(2), "exits 2 after losing the Lease; log:\n{}", w.controllers[0].log_tail(30));
    assert!(taken.elapsed() < Duration::from_secs(10), "exited {:?} after the Lease was taken", taken.elapsed());
}
