//! Scenario 4: the release author cannot approve their own change, and one person approving
//! twice counts once.

use std::time::Duration;

use kiln_api::PromotionPhase;
use kiln_testkit::AliasState;
use serde_json::json;

use crate::harness::{ControllerOptions, REGION, lambda_world};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_is_refused_and_duplicates_count_once() {
    let mut w = lambda_world("s4-approvals", "ledger", ["1s", "1s", "1s"]).await;
    // qa needs two distinct Release Engineering approvers.
    let id = w.account("stg").id.clone();
    w.create_environment(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Environment", "metadata": {"name": "qa"},
        "spec": {"upstream": ["dev"],
                 "aws": {"accountId": id, "region": REGION, "roleArn": format!("arn:aws:iam::{id}:role/kiln-deploy")},
                 "promotion": {"approvals": [{"role": "release-engineering", "count": 2}]},
                 "bake": {"duration": "1s"}, "rollbackPolicyRef": "slo"}
    }))
    .await;
    w.start_controller(ControllerOptions::default());
    let r = w.lambda_release("ledger", 2, &["dev", "qa"], json!({})).await;
    w.wait_phase(&format!("{r}-dev"), PromotionPhase::Succeeded, MIN).await;
    let qa = w.promote(&r, "qa", "alice@example.com").await;

    // The author approves their own release: refused, with the reason.
    w.approve(&qa, "dev@example.com", "release-engineering").await;
    let p = w
        .wait_promotion(&qa, MIN, "self-approval refused", |p| {
            crate::harness::World::gate(p, "approvals").is_some_and(|(ok, m)| !ok && m.contains("dev@example.com"))
        })
        .await;
    let (_, msg) = crate::harness::World::gate(&p, "approvals").unwrap();
    assert!(msg.contains("release author"), "says why: {msg}");
    // The requester cannot approve either.
    w.approve(&qa, "alice@example.com", "release-engineering").await;
    // Bob approves twice (in different case): one approval.
    w.approve(&qa, "bob@example.com", "release-engineering").await;
    w.approve(&qa, "Bob@Example.com", "release-engineering").await;
    let p = w
        .wait_promotion(&qa, MIN, "gate evaluated with all four approvals", |p| {
            p.status.as_ref().is_some_and(|s| s.observed_generation == p.metadata.generation)
                && crate::harness::World::gate(p, "approvals").is_some_and(|(ok, m)| !ok && m.contains("bob"))
        })
        .await;
    assert_eq!(p.status.as_ref().map(|s| s.phase), Some(PromotionPhase::WaitingForApproval), "still 1 of 2");
    assert_eq!(w.alias("stg", "ledger").await, AliasState::on("1"), "nothing deployed without the quorum");

    // A second, distinct approver completes the quorum.
    w.approve(&qa, "carol@example.com", "release-engineering").await;
    let done = w.wait_phase(&qa, PromotionPhase::Succeeded, MIN).await;
    let evidence = done.status.and_then(|s| s.evidence).expect("evidence");
    let users: Vec<String> = evidence.approvals.iter().map(|a| a.user.to_lowercase()).collect();
    assert!(
        users.contains(&"bob@example.com".to_string()) && users.contains(&"carol@example.com".to_string()),
        "{users:?}"
    );
}
