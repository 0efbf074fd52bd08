//! Issue "Safety under partition" §1, end to end: a leader cut off from the cluster and AWS
//! mid-canary, a second replica that takes over and rolls back, then the partition heals and the
//! old leader's held requests arrive late. The late status write is refused (its resourceVersion
//! precondition no longer holds), nothing overwrites `RolledBack`, and moto still shows the
//! rollback's alias. Each replica reaches the API server and AWS through its own fault proxy.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kiln_api::{PromotionPhase, RollbackCause};
use kiln_testkit::{Action, AliasState, FaultProxy, Match, Outcome, Rule, Upstream, When};
use kube::api::Api;
use serde_json::json;

use crate::harness::{ControllerOptions, KILN_NS, lambda_world};

const MIN: Duration = Duration::from_secs(90);

fn is_status_write(e: &kiln_testkit::Logged) -> bool {
    e.method == "PATCH" && e.path.contains("/promotions/") && e.path.contains("/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leaders_late_writes_do_not_undo_the_new_leaders_rollback() {
    let mut w = lambda_world("s13-takeover", "orders", ["60s", "60s", "60s"]).await;
    let ca = std::fs::read(w.cp.ca_path()).expect("CA");
    let kube_a = FaultProxy::start(Upstream::Https { url: w.cp.server().to_owned(), ca_pem: ca }, true)
        .await
        .expect("kube proxy");
    let aws_a = FaultProxy::start(Upstream::Http(w.moto.url()), false).await.expect("AWS proxy");
    w.start_controller(ControllerOptions {
        kubeconfig: Some(w.kubeconfig_via(&kube_a)),
        aws_endpoint: Some(aws_a.url().to_owned()),
        ..ControllerOptions::default()
    });
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), KILN_NS);
    let a = w.controllers[0].identity.clone();
    w.eventually(MIN, "a leads", || async {
        let l = leases.get_opt("kiln-controller").await.ok().flatten()?;
        (l.spec?.holder_identity? == a).then_some(())
    })
    .await;

    let r = w
        .lambda_release(
            "orders",
            2,
            &["dev"],
            json!({
                "target": {"lambda": {"functionName": "orders", "alias": "live", "strategy": "canary",
                                      "steps": [20, 100], "stepBake": "8s"}}
            }),
        )
        .await;
    let p = format!("{r}-dev");
    w.wait_promotion(&p, MIN, "canary at 20%", |p| {
        p.status.as_ref().is_some_and(|s| s.step.as_ref().is_some_and(|st| st.weight == 20))
    })
    .await;
    assert_eq!(w.alias("dev", "orders").await, AliasState::weighted("1", "2", 0.2));

    // The partition, step one: a's next status write (the step's end) is held in flight.
    kube_a.add(Rule::always(Match::path("/status").and_method("PATCH"), Action::Hold(When::Before)));
    kube_a
        .wait_for(MIN, "a's status write held", |log| log.iter().any(|e| e.held && is_status_write(e)))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    // Step two: everything else a sends is held too (its Lease renewals, its AWS calls).
    kube_a.add(Rule::always(Match::any(), Action::Hold(When::Before)));
    aws_a.add(Rule::always(Match::any(), Action::Hold(When::Before)));
    let cut = Instant::now();
    let code = w.controllers[0].exit_code(Duration::from_secs(20));
    assert_eq!(code, Some(2), "a exits once its Lease lapses by its clock:\n{}", w.controllers[0].log_tail(30));
    assert!(cut.elapsed() < Duration::from_secs(15), "a exited {:?} after the partition", cut.elapsed());

    // The breach, and a second replica that takes over and rolls back.
    kiln_testkit::set_alarm_state(&w.account("dev").clients, "orders-errors", "ALARM").await.expect("alarm");
    w.start_controller(ControllerOptions::default());
    let rolled = w.wait_phase(&p, PromotionPhase::RolledBack, MIN).await;
    assert_eq!(rolled.status.as_ref().and_then(|s| s.rollback.as_ref()).map(|r| r.cause), Some(RollbackCause::Alarm));
    assert_eq!(w.alias("dev", "orders").await, AliasState::on("1"), "restored by the new leader");

    // The partition heals: a's held requests reach the server and moto after all.
    kube_a.clear();
    aws_a.clear();
    kube_a.release();
    aws_a.release();
    kube_a
        .wait_for(MIN, "a's late status write answered", |log| {
            log.iter().any(|e| e.held && is_status_write(e) && e.outcome != Outcome::Pending)
        })
        .await
        .expect("answered");
    let late: Vec<_> = kube_a.log().into_iter().filter(|e| e.held && is_status_write(e)).collect();
    assert!(
        late.iter().all(|e| e.outcome == Outcome::Forwarded(409)),
        "the stale status write is refused by its resourceVersion precondition: {late:?}"
    );
    // Everything a held back has been answered (landed or refused) before looking again.
    for proxy in [&kube_a, &aws_a] {
        proxy
            .wait_for(MIN, "every held request answered", |log| {
                log.iter().filter(|e| e.held).all(|e| e.outcome != Outcome::Pending)
            })
            .await
            .expect("answered");
    }
    let after = w.promotion(&p).await.expect("promotion");
    assert_eq!(after.status.as_ref().map(|s| s.phase), Some(PromotionPhase::RolledBack), "not overwritten");
    assert_eq!(w.alias("dev", "orders").await, AliasState::on("1"), "moto shows the rollback's state");
    let late_aws: Vec<String> =
        aws_a.log().iter().filter(|e| e.held).map(|e| format!("{} {}", e.method, e.path)).collect();
    assert!(
        late_aws.iter().all(|c| !(c.starts_with("PUT") && c.contains("/aliases/"))),
        "a sent no alias update after the partition began: {late_aws:?}"
    );
}
