//! Scenario 9: a missing alarm, or a role kiln cannot assume, blocks the Promotion with a
//! condition saying what to fix. Nothing is deployed blind.

use std::time::Duration;

use kiln_api::{PromotionPhase, RollbackPolicy};
use kiln_testkit::{AliasState, Stub};
use serde_json::json;

use crate::harness::{ControllerOptions, lambda_world};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_alarm_blocks_the_promotion() {
    let mut w = lambda_world("s9-alarm", "media", ["1s", "1s", "1s"]).await;
    // The policy of dev's environment names an alarm nobody created.
    let api: kube::Api<RollbackPolicy> = kube::Api::namespaced(w.client.clone(), &w.ns);
    api.delete("slo", &Default::default()).await.unwrap();
    w.create::<RollbackPolicy>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "RollbackPolicy", "metadata": {"name": "slo"},
        "spec": {"alarms": [{"name": "media-errors"}, {"name": "media-latency-p95"}]}
    }))
    .await;
    w.start_controller(ControllerOptions::default());
    let r = w.lambda_release("media", 2, &["dev"], json!({})).await;
    let p = w
        .wait_promotion(&format!("{r}-dev"), MIN, "health gate naming the missing alarm", |p| {
            crate::harness::World::gate(p, "health").is_some_and(|(ok, m)| !ok && m.contains("media-latency-p95"))
        })
        .await;
    let status = p.status.unwrap();
    assert_eq!(status.phase, PromotionPhase::WaitingForGates);
    assert!(status.message.unwrap_or_default().contains("media-latency-p95"));
    assert_eq!(w.alias("dev", "media").await, AliasState::on("1"), "nothing deployed");
    assert_eq!(w.versions("dev", "media").await, vec!["$LATEST", "1"], "no version published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_be_assumed_blocks_the_promotion() {
    let mut w = lambda_world("s9-role", "media", ["1s", "1s", "1s"]).await;
    // STS refuses every AssumeRole, as AWS does when the role's trust policy does not name
    // kiln's identity.
    let sts = Stub::start(|_req, _n| {
        (
            403,
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/kiln-controller is not authorized to perform: sts:AssumeRole</Message></Error><RequestId>1</RequestId></ErrorResponse>".to_string(),
        )
    });
    w.start_controller(ControllerOptions {
        extra: vec!["--sts-endpoint-url".into(), sts.url()],
        ..ControllerOptions::default()
    });
    let r = w.lambda_release("media", 2, &["dev"], json!({})).await;
    let p = w
        .wait_promotion(&format!("{r}-dev"), MIN, "InvalidSpec naming the role", |p| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Stalled" && c.status == "True" && c.message.contains("kiln-deploy"))
            })
        })
        .await;
    let status = p.status.unwrap();
    let msg = status.message.clone().unwrap_or_default();
    assert!(msg.contains("arn:aws:iam::111111111111:role/kiln-deploy") && msg.contains("trust policy"), "{msg}");
    assert!(!status.phase.is_in_flight() && !status.phase.is_terminal(), "{:?}", status.phase);
    assert!(status.previous.is_none(), "no snapshot: nothing was touched");
    assert_eq!(w.alias("dev", "media").await, AliasState::on("1"));
}
