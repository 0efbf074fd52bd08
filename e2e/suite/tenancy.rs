//! Tenancy (issue "Tenancy and release integrity" §1): a namespace cannot release onto another
//! team's AWS resources. The reproduction: in a new namespace, with a copy of the RollbackPolicy
//! dev names (so nothing but tenancy refuses it), a Release naming team api's Lambda function
//! goes to dev (`auto`). It is refused at the gates, naming the function, and nothing in AWS
//! changes; team api's own Release still deploys.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kiln_api::{Environment, PromotionPhase, Release, RollbackPolicy};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::harness::{ControllerOptions, World, image, lambda_world};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_cannot_release_onto_another_teams_function() {
    let mut w = lambda_world("tenancy", "api-adapter", ["1s", "1s", "1s"]).await;
    // The platform team gives namespace `tenancy` (team api) its functions in every account.
    let envs: Api<Environment> = Api::all(w.client.clone());
    for env in ["dev", "stg", "prod"] {
        let account = w.account(env).id.clone();
        let tenants = json!({"spec": {"tenants": [
            {"namespaces": [w.ns.as_str()], "resources": [format!("arn:aws:lambda:*:{account}:function:api-*")]}
        ]}});
        envs.patch(env, &PatchParams::default(), &Patch::Merge(&tenants)).await.unwrap();
    }
    // Team x: its own namespace and a copy of the policy dev requires.
    let intruder = "team-x";
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": intruder}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    w.create::<RollbackPolicy>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "RollbackPolicy",
        "metadata": {"name": "slo", "namespace": intruder},
        "spec": {"alarms": [{"name": "api-adapter-errors"}], "interval": "1s"}
    }))
    .await;
    w.start_controller(ControllerOptions::default());

    // Team x's Release names team api's function.
    let spec = serde_json::to_value(kiln_api::release::ReleaseSpec {
        version: "v9.0.0".into(),
        artifacts: vec![kiln_api::release::Artifact {
            name: "fn".into(),
            image: Some(image("api-adapter", 9)),
            zip: None,
        }],
        ..kiln_api::fixtures::lambda_release("api-adapter", &["dev"])
    })
    .unwrap();
    w.create::<Release>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "hijack", "namespace": intruder}, "spec": spec
    }))
    .await;
    let promotions: Api<kiln_api::Promotion> = Api::namespaced(w.client.clone(), intruder);
    let p = w
        .eventually(MIN, "team x's Promotion refused by tenancy", || {
            let promotions = promotions.clone();
            async move {
                let p = promotions.get_opt("hijack-dev").await.ok().flatten()?;
                let refused = World::gate(&p, "validation").is_some_and(|(ok, m)| !ok && m.contains("tenants"));
                refused.then_some(p)
            }
        })
        .await;
    let status = p.status.clone().unwrap_or_default();
    let (_, message) = World::gate(&p, "validation").unwrap();
    let account = w.account("dev").id.clone();
    assert!(
        message.contains(&format!("arn:aws:lambda:{}:{account}:function:api-adapter", kiln_testkit::REGION))
            && message.contains("namespace team-x"),
        "{message}"
    );
    assert_eq!(status.phase, PromotionPhase::WaitingForGates);
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "InvalidSpec"));
    assert!(status.previous.is_none(), "not even a snapshot was taken");

    // Team api's own Release deploys; team x's still has changed nothing.
    let r = w.lambda_release("api-adapter", 2, &["dev"], json!({})).await;
    w.wait_phase(&format!("{r}-dev"), PromotionPhase::Succeeded, MIN).await;
    assert_eq!(w.alias_image("dev", "api-adapter").await, image("api-adapter", 2));
    let p = promotions.get("hijack-dev").await.unwrap();
    assert_eq!(p.status.map(|s| s.phase), Some(PromotionPhase::WaitingForGates));
    assert_eq!(w.versions("dev", "api-adapter").await, vec!["$LATEST", "1", "2"], "only team api's version went out");
}
