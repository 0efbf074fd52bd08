//! A cluster whose CRDs are newer than the controller: an object kiln's types cannot read is
//! reported on the object (a Warning Event and a metric) and ignored, the caches still fill,
//! every other Release goes on, and once the object is replaced it is reconciled like any other.

use std::time::Duration;

use kiln_api::{PromotionPhase, Release};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::json;

use crate::harness::{ControllerOptions, World, image, lambda_setup};

const MIN: Duration = Duration::from_secs(60);
/// A Lambda strategy a newer Release CRD allows and this controller does not know.
const NEWER_STRATEGY: &str = "linear10PercentEvery1Minute";

/// The repository's CRDs, with the Release CRD's Lambda strategy enum widened.
fn newer_crds() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-e2e-newer-crds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let from = crate::harness::crd_dir();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().and_then(|n| n.to_str()) == Some("releases.kiln.dev.yaml") {
            let enum_list = "                        - canary\n                        - linear\n                        - allAtOnce\n";
            assert!(text.contains(enum_list), "the Lambda strategy enum moved; update this test");
            text = text.replace(enum_list, &format!("{enum_list}                        - {NEWER_STRATEGY}\n"));
        }
        std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_the_controller_cannot_read_is_reported_and_the_rest_goes_on() {
    let crds = newer_crds();
    let mut w = World::with_crds("unreadable", &crds).await;
    lambda_setup(&w, "mailer", ["0s", "0s", "0s"]).await;

    // Created before the controller starts, so it is in the controller's first list. Written as
    // a DynamicObject: kiln's own types cannot read it back either.
    let releases = Api::<DynamicObject>::namespaced_with(w.client.clone(), &w.ns, &ApiResource::erase::<Release>(&()));
    let newer: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": "mailer-v2"},
        "spec": {"service": "mailer", "version": "v1.2.0", "author": "dev@example.com",
                 "artifacts": [{"name": "fn", "image": image("mailer", 2)}],
                 "target": {"lambda": {"functionName": "mailer", "alias": "live", "strategy": NEWER_STRATEGY}},
                 "environments": ["dev"]}
    }))
    .unwrap();
    releases.create(&PostParams::default(), &newer).await.expect("the newer CRD accepts it");

    w.start_controller(ControllerOptions::default());
    // The Release cache filled despite it: the controller is Ready, and another Release deploys.
    w.eventually(MIN, "controller Ready", || async {
        w.controllers[0].http_get("/readyz").filter(|(code, _)| *code == 200)
    })
    .await;
    // (An older version than mailer-v2's, so that one may deploy over it once it can be read.)
    let good = w.lambda_release("mailer", 1, &["dev"], json!({})).await;
    w.wait_phase(&format!("{good}-dev"), PromotionPhase::Succeeded, MIN).await;
    assert_eq!(w.alias_image("dev", "mailer").await, image("mailer", 1));

    // The unreadable one: a Warning Event saying what and why, nothing done with it.
    let (_, _, note) = w
        .eventually(MIN, "an Unreadable Event on mailer-v2", || async {
            w.events("mailer-v2").await.into_iter().find(|(t, reason, _)| t == "Warning" && reason == "Unreadable")
        })
        .await;
    assert!(note.contains(NEWER_STRATEGY), "the Event names the value: {note}");
    assert!(note.contains("upgrade kiln-controller"), "and what to do: {note}");
    assert!(w.promotion("mailer-v2-dev").await.is_none(), "no Promotion for a Release kiln cannot read");
    let stored = releases.get("mailer-v2").await.unwrap();
    assert!(stored.data.get("status").is_none(), "no status written from a guess: {:?}", stored.data.get("status"));
    let metrics = w.controllers[0].http_get("/metrics").map(|(_, body)| body).unwrap_or_default();
    assert!(
        metrics.lines().any(|l| l.starts_with("kiln_unreadable_objects_total{kind=\"release\"} ")),
        "the metric counts it:\n{metrics}"
    );

    // Releases are immutable: the fix is to delete it and create it again with a strategy this
    // controller knows. Then it is reconciled like any other.
    releases.delete("mailer-v2", &Default::default()).await.unwrap();
    w.eventually(MIN, "mailer-v2 deleted", || async {
        releases.get_opt("mailer-v2").await.unwrap().is_none().then_some(())
    })
    .await;
    w.lambda_release("mailer", 2, &["dev"], json!({})).await;
    w.wait_phase("mailer-v2-dev", PromotionPhase::Succeeded, MIN).await;
    assert_eq!(w.alias_image("dev", "mailer").await, image("mailer", 2));
    let _ = std::fs::remove_dir_all(&crds);
}
