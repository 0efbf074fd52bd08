//! People acting on Promotions: abort rolls back at once, retry starts a rolled-back Promotion
//! again, and a Promotion applied from Git before kiln would make one is adopted, not doubled.

use std::time::Duration;

use kiln_api::{Promotion, PromotionPhase};
use kiln_testkit::AliasState;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::harness::{ControllerOptions, lambda_world};

const MIN: Duration = Duration::from_secs(90);

fn canary(service: &str, step_bake: &str) -> serde_json::Value {
    json!({"target": {"lambda": {"functionName": service, "alias": "live", "strategy": "canary",
                                 "steps": [50, 100], "stepBake": step_bake}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_retry_and_gitops_adoption() {
    let mut w = lambda_world("s10-human", "cart", ["3s", "3s", "3s"]).await;
    w.start_controller(ControllerOptions::default());

    // Abort during the canary: traffic goes back at once, cause "abort".
    let v2 = w.lambda_release("cart", 2, &["dev", "stg", "prod"], canary("cart", "60s")).await;
    let p2 = format!("{v2}-dev");
    w.wait_promotion(&p2, MIN, "canary at 50%", |p| p.status.as_ref().is_some_and(|s| s.step.is_some())).await;
    assert_eq!(w.alias("dev", "cart").await, AliasState::weighted("1", "2", 0.5));
    w.patch_promotion(&p2, json!({"abort": true})).await;
    let aborted = w.wait_phase(&p2, PromotionPhase::RolledBack, MIN).await;
    assert_eq!(aborted.status.and_then(|s| s.rollback).map(|r| r.cause), Some(kiln_api::RollbackCause::Abort));
    assert_eq!(w.alias("dev", "cart").await, AliasState::on("1"));

    // A breach rolls v3 back; once the alarm is fixed, a retry takes it through.
    let v3 = w.lambda_release("cart", 3, &["dev", "stg", "prod"], canary("cart", "15s")).await;
    let p3 = format!("{v3}-dev");
    w.wait_promotion(&p3, MIN, "canary at 50%", |p| p.status.as_ref().is_some_and(|s| s.step.is_some())).await;
    let clients = w.account("dev").clients.clone();
    kiln_testkit::set_alarm_state(&clients, "cart-errors", "ALARM").await.unwrap();
    w.wait_phase(&p3, PromotionPhase::RolledBack, MIN).await;
    assert_eq!(w.alias("dev", "cart").await, AliasState::on("1"));
    kiln_testkit::set_alarm_state(&clients, "cart-errors", "OK").await.unwrap();
    w.patch_promotion(&p3, json!({"retry": 1})).await;
    let retried = w.wait_phase(&p3, PromotionPhase::Succeeded, MIN).await;
    let status = retried.status.unwrap();
    assert_eq!(status.attempts.len(), 1, "the rolled-back attempt is kept");
    assert_eq!(status.attempts[0].outcome, PromotionPhase::RolledBack);
    assert_eq!(w.alias("dev", "cart").await.function_version, w.versions("dev", "cart").await.last().cloned().unwrap());

    // GitOps applies its own Promotion before the Release: kiln adopts it.
    w.create::<Promotion>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": "cart-v4-into-dev"},
        "spec": {"release": "cart-v4", "environment": "dev", "requestedBy": "argocd"}
    }))
    .await;
    let v4 = w.lambda_release("cart", 4, &["dev", "stg", "prod"], json!({})).await;
    w.wait_phase("cart-v4-into-dev", PromotionPhase::Succeeded, MIN).await;
    let api: Api<Promotion> = Api::namespaced(w.client.clone(), &w.ns);
    let mine: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.release == v4 && p.spec.environment == "dev")
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(mine, vec!["cart-v4-into-dev"], "one Promotion into dev, the one from Git");
    let release = w.release(&v4).await.unwrap();
    let dev = release.status.unwrap().environments.into_iter().find(|e| e.name == "dev").unwrap();
    assert_eq!(dev.promotion.as_deref(), Some("cart-v4-into-dev"));
}
