//! Scenario 3: prod is frozen (a window the test makes active now) and proceeds when the window
//! ends; an emergency release passes a freeze only with Security and SRE approvals; a rollback to
//! the last good release passes a freeze with no approval at all.

use std::time::Duration;

use kiln_api::PromotionPhase;
use kiln_testkit::AliasState;
use serde_json::json;

use crate::harness::{ControllerOptions, KILN_NS, World, lambda_world};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_blocks_prod_until_it_ends_and_exceptions_and_rollbacks_pass() {
    let mut w = lambda_world("s3-freeze", "billing", ["1s", "1s", "1s"]).await;
    w.start_controller(ControllerOptions::default());

    // A freeze on prod that ends in 20 s (the weekend blackout, compressed).
    let ends = World::at(20);
    w.freeze(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "FreezeWindow",
        "metadata": {"name": "weekend", "namespace": KILN_NS},
        "spec": {"environments": ["prod"], "timeZone": "America/New_York",
                 "absolute": [{"start": World::at(-60), "end": ends, "reason": "weekend"}]}
    }))
    .await;
    let v2 = w.lambda_release("billing", 2, &["dev", "stg", "prod"], json!({})).await;
    w.through_stg(&v2).await;
    let prod = w.promote(&v2, "prod", "alice@example.com").await;
    w.approve(&prod, "sec@example.com", "security").await;
    w.approve(&prod, "pm@example.com", "product").await;
    let frozen = w.wait_phase(&prod, PromotionPhase::Frozen, MIN).await;
    let (ok, msg) = World::gate(&frozen, "freeze").expect("freeze gate");
    assert!(
        !ok && msg.contains("weekend") && msg.contains("America/New_York"),
        "freeze gate says which window and until when: {msg}"
    );
    assert_eq!(w.alias("prod", "billing").await, AliasState::on("1"), "nothing deployed while frozen");

    // The window ends: the Promotion goes on by itself (a timed requeue, no edit needed).
    let done = w.wait_phase(&prod, PromotionPhase::Succeeded, MIN).await;
    let started = done.status.as_ref().and_then(|s| s.started_at.clone()).expect("startedAt").0;
    let end: jiff::Timestamp = ends.parse().unwrap();
    assert!(started >= end, "deployed at {started}, after the freeze ended at {end}");
    assert_eq!(w.alias("prod", "billing").await, AliasState::on("2"));

    // A long freeze with exceptions for emergencies approved by Security and SRE.
    w.freeze(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "FreezeWindow",
        "metadata": {"name": "incident", "namespace": KILN_NS},
        "spec": {"environments": ["prod"], "reason": "incident INC-7",
                 "absolute": [{"start": World::at(-60), "end": World::at(3600)}],
                 "exceptions": {"releaseTypes": ["emergency", "hotfix"],
                                "approvals": [{"role": "security", "count": 1}, {"role": "sre", "count": 1}]}}
    }))
    .await;
    let v3 = w.lambda_release("billing", 3, &["dev", "stg", "prod"], json!({"type": "emergency"})).await;
    w.through_stg(&v3).await;
    let prod3 = w.promote(&v3, "prod", "alice@example.com").await;
    w.approve(&prod3, "sec@example.com", "security").await;
    w.approve(&prod3, "pm@example.com", "product").await;
    let held = w
        .wait_promotion(&prod3, MIN, "frozen, asking for the SRE approval", |p| {
            p.status.as_ref().map(|s| s.phase) == Some(PromotionPhase::Frozen)
                && World::gate(p, "freeze").is_some_and(|(ok, m)| !ok && m.contains("sre"))
        })
        .await;
    assert!(World::gate(&held, "freeze").is_some_and(|(_, m)| m.contains("incident")));
    assert_eq!(w.alias("prod", "billing").await, AliasState::on("2"));
    w.approve(&prod3, "oncall@example.com", "sre").await;
    // The exception's approvals are in addition to prod's own: a second security approver.
    w.approve(&prod3, "sec2@example.com", "security").await;
    let passed = w.wait_phase(&prod3, PromotionPhase::Succeeded, MIN).await;
    let exception = passed.status.as_ref().and_then(|s| s.freeze_exception.clone()).expect("freeze exception recorded");
    assert!(exception.contains("incident"), "{exception}");
    assert!(passed.status.as_ref().and_then(|s| s.evidence.as_ref()).is_some_and(|e| e.freeze_exception.is_some()));
    assert_eq!(w.alias("prod", "billing").await, AliasState::on("3"));
    let events = w.events(&prod3).await;
    assert!(events.iter().any(|(t, r, _)| t == "Warning" && r == "FreezeException"), "{events:?}");

    // Roll prod back to the last good release during the freeze: no approvals, no wait.
    w.create::<kiln_api::Promotion>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": "billing-prod-rollback"},
        "spec": {"release": v2, "environment": "prod", "requestedBy": "oncall@example.com",
                 "rollback": {"reason": "v3 misbehaves", "fromRelease": v3}}
    }))
    .await;
    let rb = w.wait_phase("billing-prod-rollback", PromotionPhase::Succeeded, MIN).await;
    // Back on the last good release's artifact. (kiln reuses the version that ran it — proven on
    // moto for zips and on the stub for images in kiln-aws; moto's image versions all report
    // $LATEST's image, so here the check is on the artifact behind the alias.)
    assert_eq!(
        w.alias_image("prod", "billing").await,
        crate::harness::image("billing", 2),
        "prod back on v2's artifact"
    );
    assert_ne!(w.alias("prod", "billing").await, AliasState::on("3"));
    assert!(rb.spec.approvals.is_empty());
}
