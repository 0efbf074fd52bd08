//! Scenario 7: invalid manifests are refused at admission (schema and CEL) or get a clear
//! InvalidSpec condition, and the controller keeps serving the other Releases.

use std::time::Duration;

use kiln_api::{Promotion, PromotionPhase, Release, ReleasePhase};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::harness::{ControllerOptions, lambda_world};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_refused_or_reported_and_others_go_on() {
    let mut w = lambda_world("s7-invalid", "notify", ["1s", "1s", "1s"]).await;
    w.start_controller(ControllerOptions::default());
    let api: Api<Release> = Api::namespaced(w.client.clone(), &w.ns);

    // A mutable tag instead of a digest: refused by the API server.
    let tagged: Release = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": "notify-tagged"},
        "spec": {"service": "notify", "version": "v1.0.0",
                 "artifacts": [{"name": "fn", "image": "111111111111.dkr.ecr.us-east-1.amazonaws.com/notify:latest"}],
                 "target": {"lambda": {"functionName": "notify", "strategy": "allAtOnce"}},
                 "environments": ["dev"]}
    }))
    .unwrap();
    let err = api.create(&PostParams::default(), &tagged).await.expect_err("a tag must be refused");
    assert!(err.to_string().contains("digest"), "the error says why: {err}");
    // A version that is not SemVer: refused.
    let mut bad = tagged.clone();
    bad.metadata.name = Some("notify-bad-version".into());
    bad.spec.artifacts[0].image = Some(crate::harness::image("notify", 3));
    bad.spec.version = "1.0".into();
    let err = api.create(&PostParams::default(), &bad).await.expect_err("a bad version must be refused");
    assert!(err.to_string().contains("version"), "{err}");

    // Valid for the schema, wrong for the cluster: an unknown environment.
    let r = w.lambda_release("notify", 4, &["dev", "staging"], json!({})).await;
    let invalid = w
        .eventually(MIN, "Release InvalidSpec", || async {
            w.release(&r).await.filter(|r| {
                r.status.as_ref().is_some_and(|s| {
                    s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "InvalidSpec")
                })
            })
        })
        .await;
    let stalled = invalid.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap();
    assert!(stalled.message.contains("staging"), "names the unknown environment: {}", stalled.message);
    assert!(w.promotion(&format!("{r}-dev")).await.is_none(), "an invalid Release starts nothing");

    // A Promotion of a Release that does not exist: waits, saying so.
    w.create::<Promotion>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": "ghost-dev"},
        "spec": {"release": "ghost", "environment": "dev"}
    }))
    .await;
    let ghost = w
        .wait_promotion("ghost-dev", MIN, "InvalidSpec", |p| {
            p.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.reason == "InvalidSpec"))
        })
        .await;
    assert!(ghost.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default().contains("ghost"));

    // Meanwhile a valid Release goes through.
    let ok = w.lambda_release("notify", 5, &["dev"], json!({})).await;
    w.wait_phase(&format!("{ok}-dev"), PromotionPhase::Succeeded, MIN).await;
    w.eventually(MIN, "valid Release Succeeded", || async {
        w.release(&ok).await.filter(|r| r.status.as_ref().map(|s| s.phase) == Some(ReleasePhase::Succeeded))
    })
    .await;
    assert!(w.controllers[0].running(), "the controller is still up");
}
