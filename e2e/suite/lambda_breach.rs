//! Scenario 2: Lambda canary `api-adapter`. dev succeeds; in stg an alarm fires during the bake
//! (`SetAlarmState`) and kiln puts the alias back on the previous version by itself: RolledBack
//! with the alarm as cause and the breach-to-restore time in status.

use std::time::Duration;

use kiln_api::{PromotionPhase, Release, ReleasePhase};
use kiln_testkit::{AliasState, LambdaFixture};
use serde_json::json;

use crate::harness::{ControllerOptions, World, image};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_canary_breach_in_stg_rolls_the_alias_back() {
    let mut w = World::new("s2-lambda").await;
    w.environments_with(["1s", "60s", "10m"]).await;
    w.policy("api-adapter-errors").await;
    let v1 = image("api-adapter", 1);
    let mut fixtures = std::collections::BTreeMap::new();
    for env in ["dev", "stg", "prod"] {
        let f = LambdaFixture::create_image(w.account(env), "api-adapter", "live", &v1)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        fixtures.insert(env, f);
    }
    w.start_controller(ControllerOptions::default());
    w.create::<Release>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "api-adapter-v2-0-0"},
        "spec": {
            "service": "api-adapter", "version": "v2.0.0", "changeRef": "CHG-2",
            "artifacts": [{"name": "fn", "image": image("api-adapter", 2)}],
            "target": {"lambda": {"functionName": "api-adapter", "alias": "live", "strategy": "canary",
                                  "steps": [10, 100], "stepBake": "2s"}},
            "environments": ["dev", "stg", "prod"]
        }
    }))
    .await;

    let dev = "api-adapter-v2-0-0-dev";
    w.wait_phase(dev, PromotionPhase::Succeeded, MIN).await;
    let dev_alias = fixtures["dev"].alias_state(&w.account("dev").clients).await.unwrap();
    assert_eq!(dev_alias, AliasState::on("2"), "dev alias on the new version");

    let stg = w.promote("api-adapter-v2-0-0", "stg", "alice@example.com").await;
    w.approve(&stg, "rel@example.com", "release-engineering").await;
    // At 10 % the alias splits; then all of it, baking.
    w.wait_promotion(&stg, MIN, "canary step at 10%", |p| {
        p.status.as_ref().is_some_and(|s| s.step.as_ref().is_some_and(|st| st.weight == 10))
    })
    .await;
    let split = fixtures["stg"].alias_state(&w.account("stg").clients).await.unwrap();
    assert_eq!(split, AliasState::weighted("1", "2", 0.1), "10% canary on the alias");
    w.wait_promotion(&stg, MIN, "baking at 100%", |p| {
        p.status.as_ref().is_some_and(|s| s.phase == PromotionPhase::Baking && s.full_traffic_at.is_some())
    })
    .await;
    let clients = &w.account("stg").clients;
    assert_eq!(fixtures["stg"].alias_state(clients).await.unwrap(), AliasState::on("2"));

    // The breach.
    kiln_testkit::set_alarm_state(clients, "api-adapter-errors", "ALARM").await.unwrap();
    let rolled = w.wait_phase(&stg, PromotionPhase::RolledBack, MIN).await;
    assert_eq!(fixtures["stg"].alias_state(clients).await.unwrap(), AliasState::on("1"), "alias back on version 1");
    let status = rolled.status.unwrap();
    let rb = status.rollback.expect("rollback in status");
    assert_eq!(rb.cause, kiln_api::RollbackCause::Alarm);
    assert_eq!(rb.signal.as_deref(), Some("api-adapter-errors"));
    let started = rb.breach_started_at.expect("breach start").0;
    let completed = rb.completed_at.expect("restore time").0;
    assert!(
        rb.detected_at.0 >= started && completed >= rb.detected_at.0,
        "{started} <= {} <= {completed}",
        rb.detected_at.0
    );
    let measured = rb.breach_to_restore_millis.expect("measured breach-to-restore time");
    assert!((0..60_000).contains(&measured), "breach to restore took {measured} ms");
    assert!(status.evidence.as_ref().is_some_and(|e| e.rollback.is_some()), "the rollback is in the evidence");
    let events = w.events(&stg).await;
    assert!(events.iter().any(|(t, r, _)| t == "Warning" && r == "BreachDetected"), "{events:?}");
    assert!(events.iter().any(|(t, r, _)| t == "Warning" && r == "RolledBack"), "{events:?}");

    // The Release shows the rollback; dev is untouched.
    w.eventually(MIN, "Release RolledBack", || async {
        w.release("api-adapter-v2-0-0")
            .await
            .filter(|r| r.status.as_ref().map(|s| s.phase) == Some(ReleasePhase::RolledBack))
    })
    .await;
    assert_eq!(fixtures["dev"].alias_state(&w.account("dev").clients).await.unwrap(), AliasState::on("2"));
}
