//! Scenario 1: ECS blueGreen `ingest-worker` from dev (auto) to stg (one Release Engineering
//! approval) to prod (Security and Product), every step's weights seen in moto, green primary
//! at the end.

use std::time::Duration;

use kiln_api::{PromotionPhase, Release, ReleasePhase};
use kiln_testkit::EcsFixture;
use serde_json::json;

use crate::harness::{ControllerOptions, World, image};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_blue_green_dev_to_prod_with_approvals() {
    let mut w = World::new("s1-ecs").await;
    w.environments("2s").await;
    w.policy("ingest-5xx").await;
    let mut fixtures = std::collections::BTreeMap::new();
    for env in ["dev", "stg", "prod"] {
        let f = EcsFixture::create(w.account(env), "ingest", "api").await.unwrap_or_else(|e| panic!("{env}: {e}"));
        fixtures.insert(env, f);
    }
    let f = fixtures["dev"].clone();
    w.start_controller(ControllerOptions::default());

    let img = image("ingest-worker", 2);
    w.create::<Release>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "ingest-worker-v1-4-2"},
        "spec": {
            "service": "ingest-worker", "version": "v1.4.2", "changeRef": "CHG-20261130-001",
            "author": "dev@example.com", "commit": "3f2a9c1d",
            "artifacts": [{"name": "api", "image": img}],
            "target": {"ecs": {
                "cluster": f.cluster, "service": f.service, "container": "api",
                "strategy": "blueGreen", "steps": [10, 100], "stepBake": "3s",
                "traffic": {"listener": {"loadBalancerName": f.lb_name, "port": f.listener_port},
                            "blueTargetGroup": {"name": f.blue_tg_name},
                            "greenTargetGroup": {"name": f.green_tg_name}}}},
            "environments": ["dev", "stg", "prod"]
        }
    }))
    .await;

    // dev: created by kiln, 10 % on green during the step bake, then all of it.
    let dev = "ingest-worker-v1-4-2-dev";
    for (env, promotion) in [("dev", dev.to_string())] {
        check_steps(&w, env, &promotion, &fixtures[env]).await;
    }
    let dev_p = w.wait_phase(dev, PromotionPhase::Succeeded, MIN).await;
    assert!(dev_p.status.as_ref().and_then(|s| s.evidence_sha256.as_ref()).is_some(), "evidence digest in status");

    // stg: a person promotes; one Release Engineering approval lets it through.
    let stg = w.promote("ingest-worker-v1-4-2", "stg", "alice@example.com").await;
    let waiting = w.wait_phase(&stg, PromotionPhase::WaitingForApproval, MIN).await;
    let (ok, msg) = World::gate(&waiting, "approvals").expect("approvals gate");
    assert!(!ok && msg.contains("release-engineering"), "approvals gate says what is missing: {msg}");
    w.approve(&stg, "rel@example.com", "release-engineering").await;
    check_steps(&w, "stg", &stg, &fixtures["stg"]).await;
    w.wait_phase(&stg, PromotionPhase::Succeeded, MIN).await;

    // prod: Security alone is not enough; Product completes the quorum.
    let prod = w.promote("ingest-worker-v1-4-2", "prod", "alice@example.com").await;
    w.wait_phase(&prod, PromotionPhase::WaitingForApproval, MIN).await;
    w.approve(&prod, "sec@example.com", "security").await;
    let still = w
        .wait_promotion(&prod, MIN, "approvals gate naming product", |p| {
            World::gate(p, "approvals")
                .is_some_and(|(ok, m)| !ok && m.contains("product") && m.contains("sec@example.com"))
        })
        .await;
    assert_eq!(still.status.as_ref().map(|s| s.phase), Some(PromotionPhase::WaitingForApproval));
    w.approve(&prod, "pm@example.com", "product").await;
    check_steps(&w, "prod", &prod, &fixtures["prod"]).await;
    let done = w.wait_phase(&prod, PromotionPhase::Succeeded, MIN).await;

    // Green is primary in prod and takes all traffic; blue is retired.
    let pf = &fixtures["prod"];
    let clients = &w.account("prod").clients;
    let uid = done.metadata.uid.clone().unwrap_or_default();
    let sets = pf.task_sets(clients).await.unwrap();
    let primary: Vec<_> = sets.iter().filter(|t| t.status == "PRIMARY").collect();
    assert_eq!(primary.len(), 1, "one primary task set: {sets:?}");
    assert_eq!(primary[0].external_id, uid, "the prod Promotion's task set is primary");
    assert_eq!(sets.len(), 1, "blue retired after the bake: {sets:?}");
    let weights = pf.weights(clients).await.unwrap();
    let on_green: i32 =
        weights.iter().filter(|(tg, _)| Some(tg) == primary[0].target_group.as_ref()).map(|(_, w)| *w).sum();
    assert_eq!(on_green, 100, "all traffic on the new task set's target group: {weights:?}");
    let td = pf.service_task_definition(clients).await.unwrap();
    assert!(td.is_some());

    // The Release is done, and its status says so per environment.
    let release = w
        .eventually(MIN, "Release Succeeded", || async {
            w.release("ingest-worker-v1-4-2")
                .await
                .filter(|r| r.status.as_ref().map(|s| s.phase) == Some(ReleasePhase::Succeeded))
        })
        .await;
    let envs = release.status.map(|s| s.environments).unwrap_or_default();
    assert_eq!(envs.len(), 3);
    let events = w.events(&prod).await;
    for reason in ["GatesPassed", "TrafficShifted", "Succeeded"] {
        assert!(events.iter().any(|(_, r, _)| r == reason), "Event {reason} on {prod}: {events:?}");
    }
    let sha = done.status.as_ref().and_then(|s| s.evidence_sha256.clone()).expect("evidence digest");
    assert!(
        events.iter().any(|(_, r, note)| r == "Evidence" && note.contains(&sha)),
        "the evidence goes out as an Event with its SHA-256: {events:?}"
    );
    let evidence = done.status.and_then(|s| s.evidence).expect("evidence in status");
    assert_eq!(evidence.approvals.len(), 2);
    assert_eq!(evidence.change_ref.as_deref(), Some("CHG-20261130-001"));

    // At rest: every Promotion and the Release are finished, and kiln writes nothing more.
    let before = w.api_writes(&["promotions", "releases"]).await;
    // (Read from kube-apiserver's own request counter: it has counted the release's writes.)
    assert!(before > 0, "apiserver_request_total counted no writes to promotions or releases");
    // Deliberately idle: long enough for several alarm polls and requeues to have happened.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(w.api_writes(&["promotions", "releases"]).await, before, "a finished release costs no API writes");
}

/// While Promotion `promotion` bakes at its first step, moto shows 90/10; the 10 is on the
/// target group of the Promotion's own task set.
async fn check_steps(w: &World, env: &str, promotion: &str, f: &EcsFixture) {
    let p = w
        .wait_promotion(promotion, MIN, "step 1 (10%) baking", |p| {
            p.status.as_ref().is_some_and(|s| s.step.as_ref().is_some_and(|st| st.index == 0 && st.weight == 10))
        })
        .await;
    let clients = &w.account(env).clients;
    let weights = f.weights(clients).await.unwrap();
    let mut ws: Vec<i32> = weights.iter().map(|(_, w)| *w).collect();
    ws.sort();
    assert_eq!(ws, vec![10, 90], "{env}: listener weights at step 1: {weights:?}");
    let uid = p.metadata.uid.unwrap_or_default();
    let sets = f.task_sets(clients).await.unwrap();
    assert!(sets.iter().any(|t| t.external_id == uid), "{env}: the Promotion's task set exists: {sets:?}");
}
