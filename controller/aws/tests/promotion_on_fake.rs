//! The decision core driving a traffic target through `execute::traffic_action`: a canary that
//! succeeds ends with all traffic on green, one that breaches ends with exactly the weights it
//! started from. The loop is the one the controller runs: decide → execute → complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use kiln_api::PromotionPhase;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{PromotionSpec, TargetGroupWeight};
use kiln_api::release::ReleaseSpec;
use kiln_api::rollback_policy::RollbackPolicySpec;
use kiln_aws::execute::traffic_action;
use kiln_aws::fake::FakeTraffic;
use kiln_core::sim::World;

/// A canary of `web` (10 % then 100 %, 1m step bake, 2m bake) into dev, watching `web-5xx`.
fn world() -> World {
    let release: ReleaseSpec = serde_json::from_value(serde_json::json!({
        "service": "web", "version": "v2.0.0",
        "artifacts": [{"name": "app", "image": format!("r.example/web@sha256:{}", "a".repeat(64))}],
        "target": {"ecs": {"cluster": "c", "service": "web", "container": "app", "strategy": "canary",
            "steps": [10, 100], "stepBake": "1m",
            "traffic": {"listener": {"loadBalancerName": "alb", "port": 443},
                        "blueTargetGroup": {"name": "blue"}, "greenTargetGroup": {"name": "green"}}}},
        "environments": ["dev"]
    }))
    .unwrap();
    let env: EnvironmentSpec = serde_json::from_value(serde_json::json!({
        "aws": {"accountId": "111111111111", "region": "us-east-1", "roleArn": "arn:aws:iam::111111111111:role/k"},
        "promotion": {"auto": true}, "bake": {"duration": "2m"}, "rollbackPolicyRef": "slo"
    }))
    .unwrap();
    let policy: RollbackPolicySpec =
        serde_json::from_value(serde_json::json!({"alarms": [{"name": "web-5xx"}]})).unwrap();
    let spec: PromotionSpec =
        serde_json::from_value(serde_json::json!({"release": "web-v2-0-0", "environment": "dev"})).unwrap();
    let now: Timestamp = "2026-11-18T15:00:00Z".parse().unwrap();
    let mut w = World::of("shop", "p", spec, release, env, now);
    w.policy = Some(policy);
    w
}

/// decide → execute → complete until the machine rests: the world's driver, with the fake's
/// outcomes.
async fn drive(w: &mut World, target: &FakeTraffic) {
    for _ in 0..20 {
        let Some(action) = w.step() else { return };
        let outcome = traffic_action(target, &action, &w.status).await.expect("traffic action").unwrap();
        w.complete(&action, outcome);
    }
    panic!("the machine did not come to rest");
}

fn weights(blue: i32, green: i32) -> Vec<TargetGroupWeight> {
    let tg = |color| kiln_aws::fake::target_group_arn(&kiln_aws::fake::scope(), "web", color);
    vec![
        TargetGroupWeight { target_group_arn: tg("blue"), weight: blue },
        TargetGroupWeight { target_group_arn: tg("green"), weight: green },
    ]
}

#[tokio::test]
async fn a_canary_that_stays_green_ends_on_green() {
    let target = FakeTraffic::new("uid-green");
    let mut run = world();
    drive(&mut run, &target).await;
    assert_eq!(run.status.phase, PromotionPhase::Baking);
    assert_eq!(target.state().weights, weights(90, 10));
    run.advance(60);
    drive(&mut run, &target).await;
    assert_eq!(target.state().weights, weights(0, 100));
    run.advance(120);
    drive(&mut run, &target).await;
    assert_eq!(run.status.phase, PromotionPhase::Succeeded);
    let state = target.state();
    assert_eq!(state.weights, weights(0, 100));
    assert_eq!(state.task_sets.len(), 1, "blue retired after the bake");
    assert_eq!(state.primary, state.task_sets[0].0);
}

#[tokio::test]
async fn a_breach_at_ten_percent_restores_exactly() {
    let target = FakeTraffic::new("uid-breach");
    let before = target.state();
    let mut run = world();
    drive(&mut run, &target).await;
    assert_eq!(target.state().weights, weights(90, 10));
    run.advance(20);
    run.breach();
    run.advance(2);
    drive(&mut run, &target).await;
    assert_eq!(run.status.phase, PromotionPhase::RolledBack);
    assert_eq!(run.status.rollback.as_ref().unwrap().cause, kiln_api::RollbackCause::Alarm);
    let after = target.state();
    assert_eq!(after.weights, before.weights);
    assert_eq!(after.primary, before.primary);
    assert_eq!(after.task_sets, before.task_sets, "the green task set is gone");
}
