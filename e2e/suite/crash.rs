//! Scenario 6: the controller is killed (SIGKILL) in the middle of a deployment and started
//! again. The Promotion finishes — or, when an alarm fired while nobody watched, restores — from
//! what status and AWS say; moto shows no duplicate task set, task definition or version.

use std::time::Duration;

use kiln_api::{PromotionPhase, Release};
use kiln_testkit::{AliasState, EcsFixture};
use serde_json::json;

use crate::harness::{ControllerOptions, World, image, lambda_world};

const MIN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_canary_the_restarted_controller_finishes_it() {
    let mut w = World::new("s6-crash").await;
    w.environments("2s").await;
    w.policy("orders-5xx").await;
    let f = EcsFixture::create(w.account("dev"), "orders", "api").await.unwrap();
    let clients = w.account("dev").clients.clone();
    w.start_controller(ControllerOptions::default());
    w.create::<Release>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": "orders-v2"},
        "spec": {"service": "orders", "version": "v2.0.0", "artifacts": [{"name": "api", "image": image("orders", 2)}],
                 "target": {"ecs": {"cluster": f.cluster, "service": f.service, "container": "api",
                                    "strategy": "canary", "steps": [10, 50, 100], "stepBake": "3s",
                                    "traffic": {"listener": {"loadBalancerName": f.lb_name, "port": f.listener_port},
                                                "blueTargetGroup": {"name": f.blue_tg_name},
                                                "greenTargetGroup": {"name": f.green_tg_name}}}},
                 "environments": ["dev"]}
    }))
    .await;
    let p = "orders-v2-dev";
    // Kill it as soon as the first traffic step is recorded: the next step is due within seconds.
    w.wait_promotion(p, MIN, "first traffic step", |p| p.status.as_ref().is_some_and(|s| s.step.is_some())).await;
    w.controllers[0].kill();
    let split = f.weights(&clients).await.unwrap();
    assert!(split.iter().any(|(_, wt)| *wt > 0 && *wt < 100), "traffic split when the controller died: {split:?}");

    w.start_controller(ControllerOptions::default());
    let done = w.wait_phase(p, PromotionPhase::Succeeded, MIN).await;
    let uid = done.metadata.uid.unwrap_or_default();
    let sets = f.task_sets(&clients).await.unwrap();
    assert_eq!(sets.len(), 1, "one task set, no duplicate: {sets:?}");
    assert_eq!((sets[0].status.as_str(), sets[0].external_id.as_str()), ("PRIMARY", uid.as_str()));
    let weights = f.weights(&clients).await.unwrap();
    assert!(weights.iter().any(|(tg, wt)| Some(tg) == sets[0].target_group.as_ref() && *wt == 100), "{weights:?}");
    // One new task definition revision (the baseline is revision 1).
    let td = sets[0].task_definition.clone();
    assert!(td.ends_with(":2"), "exactly one new revision registered: {td}");
    let history: Vec<String> =
        done.status.map(|s| s.timeline.into_iter().map(|t| t.reason).collect()).unwrap_or_default();
    assert_eq!(history.iter().filter(|r| *r == "Prepared").count(), 1, "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_bake_with_an_alarm_firing_the_restart_restores() {
    let mut w = lambda_world("s6-restore", "quotes", ["10m", "10m", "10m"]).await;
    w.start_controller(ControllerOptions::default());
    let r = w
        .lambda_release("quotes", 2, &["dev", "stg", "prod"], json!({
            "target": {"lambda": {"functionName": "quotes", "alias": "live", "strategy": "canary", "steps": [25, 100], "stepBake": "30s"}}
        }))
        .await;
    let p = format!("{r}-dev");
    w.wait_promotion(&p, MIN, "canary at 25%", |p| {
        p.status.as_ref().is_some_and(|s| s.step.as_ref().is_some_and(|st| st.weight == 25))
    })
    .await;
    w.controllers[0].kill();
    assert_eq!(w.alias("dev", "quotes").await, AliasState::weighted("1", "2", 0.25));
    // The alarm fires while no controller runs.
    kiln_testkit::set_alarm_state(&w.account("dev").clients, "quotes-errors", "ALARM").await.unwrap();
    w.start_controller(ControllerOptions::default());
    let rolled = w.wait_phase(&p, PromotionPhase::RolledBack, MIN).await;
    assert_eq!(rolled.status.and_then(|s| s.rollback).map(|r| r.cause), Some(kiln_api::RollbackCause::Alarm));
    assert_eq!(w.alias("dev", "quotes").await, AliasState::on("1"), "alias restored exactly");
    assert_eq!(w.versions("dev", "quotes").await, vec!["$LATEST", "1", "2"], "no duplicate version");
}
