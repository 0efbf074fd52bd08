//! Release integrity (issue "Tenancy and release integrity" §2): environments are linked by what
//! ran there, not by Release name. The reproduction: after ingest succeeded in stg, its Release
//! was deleted and created again under the same name with another digest. kiln's own Promotions
//! went with the old Release (the garbage collector follows their ownerReference), but the stg
//! Promotion a person made stays. A prod Promotion with both approvals must not read "stg
//! succeeded": it waits on the upstream gate naming both digests, and prod's alias is untouched.

use std::time::Duration;

use kiln_api::{PromotionPhase, Release};
use kube::api::{Api, DeleteParams};
use serde_json::json;

use crate::harness::{World, image, lambda_world};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_does_not_take_stgs_success_for_a_namesake_with_another_digest() {
    let mut w = lambda_world("integrity", "ingest", ["1s", "1s", "1s"]).await;
    w.start_controller(Default::default());
    let r = w.lambda_release("ingest", 1, &["dev", "stg", "prod"], json!({})).await;
    w.through_stg(&r).await;
    let prod_before = w.alias("prod", "ingest").await;

    // The Release is deleted and created again under its name with image 2.
    let releases: Api<Release> = Api::namespaced(w.client.clone(), &w.ns);
    releases.delete(&r, &DeleteParams::default()).await.unwrap();
    w.eventually(MIN, "the Release is gone", || {
        let releases = releases.clone();
        let r = r.clone();
        async move { releases.get_opt(&r).await.ok().flatten().is_none().then_some(()) }
    })
    .await;
    let spec = serde_json::to_value(kiln_api::release::ReleaseSpec {
        version: "v1.1.0".into(),
        change_ref: Some("CHG-1".into()),
        author: Some("dev@example.com".into()),
        artifacts: vec![kiln_api::release::Artifact { name: "fn".into(), image: Some(image("ingest", 2)), zip: None }],
        ..kiln_api::fixtures::lambda_release("ingest", &["dev", "stg", "prod"])
    })
    .unwrap();
    w.create::<Release>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": r}, "spec": spec
    }))
    .await;

    // prod, with both approvals.
    let prod = w.promote(&r, "prod", "carol@example.com").await;
    w.approve(&prod, "alice@example.com", "security").await;
    w.approve(&prod, "bob@example.com", "product").await;
    let digest = |n| image("ingest", n).rsplit_once('@').map(|(_, d)| d.to_string()).unwrap();
    let p = w
        .eventually(MIN, "prod waits on the upstream gate naming both digests", || {
            let (w, prod) = (&w, &prod);
            async move {
                let p = w.promotion(prod).await?;
                let (ok, message) = World::gate(&p, "upstream")?;
                (!ok && message.contains("stg ran another Release named")).then_some(p)
            }
        })
        .await;
    let (_, message) = World::gate(&p, "upstream").unwrap();
    assert!(message.contains(&digest(1)) && message.contains(&digest(2)), "{message}");
    assert_ne!(p.status.as_ref().map(|s| s.phase), Some(PromotionPhase::Deploying));
    assert!(p.status.as_ref().and_then(|s| s.previous.as_ref()).is_none(), "no snapshot taken in prod");

    // The Release's own status does not count the old stg Promotion as its progress.
    let release = w
        .eventually(MIN, "the new Release's status", || {
            let w = &w;
            let r = r.clone();
            async move {
                let rel = w.release(&r).await?;
                let stg = rel.status.as_ref()?.environments.iter().find(|e| e.name == "stg")?.clone();
                (stg.phase != kiln_api::release::ReleaseEnvironmentPhase::Succeeded
                    && rel.status.as_ref()?.observed_generation.is_some())
                .then_some(rel)
            }
        })
        .await;
    let stg = release.status.unwrap().environments.into_iter().find(|e| e.name == "stg").unwrap();
    assert_ne!(stg.promotion.as_deref(), Some(format!("{r}-stg").as_str()), "not the old Release's Promotion");
    assert_eq!(w.alias("prod", "ingest").await, prod_before, "prod's alias is untouched");
}

/// Issue §2, last bullet: a cluster rebuilt from Git (or a cleanup job that deleted finished
/// Promotions) has no record of what runs, so kiln reads it from AWS. History re-applied in any
/// order never re-deploys: the older Release's Promotions (the auto one in dev, and the one
/// GitOps re-creates in stg, which is not auto) fail at once naming both versions; the Release
/// that runs deploys its very artifacts again (the alias does not move); AWS is as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rebuilt_from_git_never_redeploys_history() {
    use kiln_api::Promotion;
    let mut w = lambda_world("rebuild", "orders", ["0s", "0s", "0s"]).await;
    w.start_controller(Default::default());
    // History: v1.1.0, then v1.2.0, each through dev and stg.
    let v1 = w.lambda_release("orders", 1, &["dev", "stg", "prod"], json!({})).await;
    w.through_stg(&v1).await;
    let v2 = w.lambda_release("orders", 2, &["dev", "stg", "prod"], json!({})).await;
    w.through_stg(&v2).await;
    let (dev_before, stg_before) = (w.alias("dev", "orders").await, w.alias("stg", "orders").await);
    let dev_versions = w.versions("dev", "orders").await;
    assert_eq!(w.alias_image("dev", "orders").await, image("orders", 2));

    // The rebuild: every Promotion and Release is gone.
    let promotions: Api<Promotion> = Api::namespaced(w.client.clone(), &w.ns);
    let releases: Api<Release> = Api::namespaced(w.client.clone(), &w.ns);
    for p in promotions.list(&Default::default()).await.unwrap() {
        promotions.delete(&kube::ResourceExt::name_any(&p), &DeleteParams::default()).await.unwrap();
    }
    for r in [&v1, &v2] {
        releases.delete(r, &DeleteParams::default()).await.unwrap();
    }
    w.eventually(MIN, "no Promotion and no Release left", || {
        let (promotions, releases) = (promotions.clone(), releases.clone());
        async move {
            let p = promotions.list(&Default::default()).await.ok()?;
            let r = releases.list(&Default::default()).await.ok()?;
            (p.items.is_empty() && r.items.is_empty()).then_some(())
        }
    })
    .await;

    // Git applies everything again, the oldest first: both Releases, and the stg Promotion of
    // v1.1.0 a person had made (stg is not auto).
    w.lambda_release("orders", 1, &["dev", "stg", "prod"], json!({})).await;
    let stg_v1 = w.promote(&v1, "stg", "alice@example.com").await;
    w.approve(&stg_v1, "rel@example.com", "release-engineering").await;
    w.lambda_release("orders", 2, &["dev", "stg", "prod"], json!({})).await;

    for (name, env) in [(format!("{v1}-dev"), "dev"), (stg_v1.clone(), "stg")] {
        let p = w.wait_phase(&name, PromotionPhase::Failed, MIN).await;
        let status = p.status.clone().unwrap_or_default();
        assert_eq!(status.timeline.last().map(|t| t.reason.as_str()), Some("OlderThanRunning"), "{name}");
        let (ok, message) = World::gate(&p, "newer").unwrap_or_default();
        assert!(!ok, "{name}");
        for part in [
            format!("{env} runs Lambda function orders alias live"),
            "orders v1.2.0".into(),
            "newer than v1.1.0".into(),
        ] {
            assert!(message.contains(&part), "{name}: {part} in {message}");
        }
        assert!(status.previous.is_none(), "{name}: no snapshot, nothing was changed");
    }
    // v1.2.0 runs: its dev Promotion deploys the same artifacts again, on the same version.
    let p = w.wait_phase(&format!("{v2}-dev"), PromotionPhase::Succeeded, MIN).await;
    let (ok, message) = World::gate(&p, "newer").unwrap_or_default();
    assert!(ok && message.contains("the same artifacts"), "{message}");
    assert_eq!(w.alias("dev", "orders").await, dev_before, "dev's alias did not move");
    assert_eq!(w.versions("dev", "orders").await, dev_versions, "nothing was published");
    assert_eq!(w.alias("stg", "orders").await, stg_before, "stg's alias did not move");
    assert_eq!(w.alias_image("stg", "orders").await, image("orders", 2));
}
