//! Setup of the cold start (not measured): namespaces, Environments, and N Releases each with
//! a finished dev Promotion whose status kiln-core's own state machine computed.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use kiln_api::promotion::{DeployedResources, LambdaSnapshot, Snapshot};
use kiln_api::{Environment, FIELD_MANAGER, Promotion, PromotionPhase, PromotionStatus, Release};
use kiln_core::machine::{Action, Outcome};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::{LIMIT, NAMESPACES, SETUP_CONCURRENCY, VERSIONS, harness};

/// Namespaces, the three Environments and `n` Releases each with a finished dev Promotion, as
/// kiln would have left them; prints what one weighs.
pub(crate) async fn populate(client: &Client, handle: &kiln_test_apiserver::Handle, n: usize) -> Result<(), String> {
    let setup = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in (0..NAMESPACES).map(|k| format!("team-{k}")).chain(["kiln-system".to_string()]) {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        namespaces.create(&PostParams::default(), &obj).await.map_err(|e| format!("namespace {ns}: {e}"))?;
    }
    let envs_api: Api<Environment> = Api::all(client.clone());
    let mut dev = None;
    for (env, id, upstream, rules) in [
        ("dev", "111111111111", json!([]), json!({"auto": true})),
        ("stg", "222222222222", json!(["dev"]), json!({"approvals": [{"role": "release-engineering", "count": 1}]})),
        (
            "prod",
            "333333333333",
            json!(["stg"]),
            json!({"requireChangeRef": true,
                   "approvals": [{"role": "security", "count": 1}, {"role": "product", "count": 1}]}),
        ),
    ] {
        let obj: Environment = serde_json::from_value(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "Environment", "metadata": {"name": env},
            "spec": {"upstream": upstream,
                     "aws": kiln_api::fixtures::aws_target(id),
                     "promotion": rules, "bake": {"duration": "10m"}}
        }))
        .expect("environment");
        let created =
            envs_api.create(&PostParams::default(), &obj).await.map_err(|e| format!("Environment {env}: {e}"))?;
        if env == "dev" {
            dev = Some(created);
        }
    }
    let dev = dev.expect("dev");

    let created = std::sync::atomic::AtomicUsize::new(0);
    let deadline = Instant::now() + LIMIT;
    let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let dev = &dev;
            let created = &created;
            async move {
                if Instant::now() > deadline {
                    return Err(format!("setup did not finish within {LIMIT:?}"));
                }
                create_release_with_finished_dev(&client, dev, i).await?;
                let c = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if c.is_multiple_of(2000) {
                    println!("  setup: {c}/{n} Releases with their dev Promotion ({:.0?})", setup.elapsed());
                }
                Ok(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    let sample = handle.get("promotions", Some("team-0"), "svc-0-v0-dev").unwrap_or_default();
    let status_bytes = serde_json::to_vec(&sample["status"]).map(|v| v.len()).unwrap_or(0);
    let promotion_bytes = serde_json::to_vec(&sample).map(|v| v.len()).unwrap_or(0);
    let release_bytes = handle
        .get("releases", Some("team-0"), "svc-0-v0")
        .and_then(|r| serde_json::to_vec(&r).ok())
        .map(|v| v.len())
        .unwrap_or(0);
    println!(
        "  setup done in {:.1?}: {n} Releases (~{release_bytes} B of JSON each), {n} Succeeded Promotions \
         (~{promotion_bytes} B each, status {status_bytes} B, {} timeline entries)",
        setup.elapsed(),
        sample["status"]["timeline"].as_array().map(Vec::len).unwrap_or(0)
    );
    Ok(())
}

/// Release `svc-<s>-v<k>` (service `svc-<s>`, 10 versions a service, namespace by service) with
/// its dev Promotion as kiln creates it (label, owner reference) and a finished status.
pub(crate) async fn create_release_with_finished_dev(
    client: &Client,
    dev: &Environment,
    i: usize,
) -> Result<(), String> {
    let service = i / VERSIONS;
    let version = i % VERSIONS;
    let ns = format!("team-{}", service % NAMESPACES);
    let name = format!("svc-{service}-v{version}");
    let svc = format!("svc-{service}");
    let release: Release = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": name, "namespace": ns},
        "spec": {
            "service": svc, "version": format!("v1.{version}.0"), "changeRef": format!("CHG-{i}"),
            "commit": format!("{:040x}", i * 7919 + 1),
            "author": "dev@example.com",
            "artifacts": [{"name": "fn", "image": harness::image(&svc, u32::try_from(i + 1).unwrap_or(1))}],
            "target": {"lambda": {"functionName": svc, "alias": "live", "strategy": "allAtOnce"}},
            "environments": ["dev", "stg", "prod"]
        }
    }))
    .map_err(|e| e.to_string())?;
    let releases: Api<Release> = Api::namespaced(client.clone(), &ns);
    let release =
        releases.create(&PostParams::default(), &release).await.map_err(|e| format!("Release {name}: {e}"))?;

    let promo_name = format!("{name}-dev");
    let owner = release.controller_owner_ref(&()).map(|o| {
        let mut o = serde_json::to_value(o).unwrap_or_default();
        o["controller"] = json!(false);
        o
    });
    let promotion: Promotion = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": promo_name, "namespace": ns,
                     "labels": {"kiln.dev/release": name}, "ownerReferences": [owner]},
        "spec": {"release": name, "environment": "dev"}
    }))
    .map_err(|e| e.to_string())?;
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), &ns);
    let promotion = promotions
        .create(&PostParams::default(), &promotion)
        .await
        .map_err(|e| format!("Promotion {promo_name}: {e}"))?;

    // Started a while ago (staggered), finished after the dev bake.
    let t0 = Timestamp::now() - SignedDuration::from_secs(3600 + i64::try_from(i).unwrap_or(0));
    let mut status = finished_status(&release, &promotion, &dev.spec, t0)?;
    match std::env::var("KILN_BENCH_STATUS").as_deref() {
        // Experiment: what the caches would hold without the evidence record (it repeats the
        // gates and the timeline; the controller never reads it back).
        Ok("no-evidence") => status.evidence = None,
        // Experiment: only what decisions about a finished Promotion read (phase, generations,
        // times, message), as a cache that trimmed finished Promotions would hold.
        Ok("minimal") => {
            status = PromotionStatus {
                observed_generation: status.observed_generation,
                phase: status.phase,
                observed_retry: status.observed_retry,
                started_at: status.started_at,
                completed_at: status.completed_at,
                full_traffic_at: status.full_traffic_at,
                message: status.message,
                ..PromotionStatus::default()
            }
        }
        _ => {}
    }
    let body = json!({"apiVersion": Promotion::api_version(&()), "kind": "Promotion", "status": status});
    promotions
        .patch_status(&promo_name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(|e| format!("status of {promo_name}: {e}"))?;
    Ok(())
}

/// The status kiln writes when a Lambda `allAtOnce` Promotion without a RollbackPolicy goes
/// through: kiln-core's state machine driven from `t0`, with the outcomes the Lambda target
/// reports (snapshot of the alias on version 1, version 2 published, traffic shifted, finalized).
pub(crate) fn finished_status(
    release: &Release,
    promotion: &Promotion,
    env: &kiln_api::EnvironmentSpec,
    t0: Timestamp,
) -> Result<PromotionStatus, String> {
    let name = promotion.name_any();
    let ns = promotion.namespace().unwrap_or_default();
    let mut w = kiln_core::sim::World::of(&ns, &name, promotion.spec.clone(), release.spec.clone(), env.clone(), t0);
    w.generation = promotion.metadata.generation;
    for _ in 0..32 {
        let decision = w.decide();
        let Some(action) = decision.action else {
            if decision.status.phase == PromotionPhase::Succeeded {
                return Ok(decision.status);
            }
            // Baking: the next look is when the bake ends.
            let wait = decision.requeue_after.unwrap_or(SignedDuration::from_secs(1));
            w.status = decision.status;
            w.now += wait.max(SignedDuration::from_secs(1));
            continue;
        };
        let outcome = match &action {
            Action::CaptureSnapshot => Outcome::Snapshot(Box::new(Snapshot {
                captured_at: None,
                account_id: Some(env.aws.account_id.clone()),
                region: Some(env.aws.region.clone()),
                role_arn: Some(env.aws.role_arn.clone()),
                ecs: None,
                lambda: Some(LambdaSnapshot {
                    function_name: Some(release.spec.service.clone()),
                    alias: Some("live".into()),
                    version: "1".into(),
                    routing: BTreeMap::new(),
                }),
            })),
            Action::Prepare => {
                Outcome::Prepared(DeployedResources { lambda_version: Some("2".into()), ..Default::default() })
            }
            Action::RunHook(_) | Action::ShiftTraffic { .. } | Action::Finalize | Action::ArchiveEvidence => {
                Outcome::Done
            }
            Action::Restore => return Err(format!("{name}: the simulated promotion rolled back")),
        };
        w.status = decision.status;
        w.now += SignedDuration::from_secs(2);
        w.complete(&action, outcome);
        w.now += SignedDuration::from_secs(1);
    }
    Err(format!("{name}: the simulated promotion did not finish"))
}
