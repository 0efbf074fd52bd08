//! Evidence archived to S3 with Object Lock, in each environment's own account: a finished
//! Promotion's record is written once under its digest; a bucket without Object Lock is
//! refused with the reason and the deployment's outcome stands.

use std::time::Duration;

use kiln_api::{Environment, PromotionPhase};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::{ControllerOptions, image, lambda_world};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_archived_in_the_environments_account_with_object_lock() {
    let mut w = lambda_world("evidence", "ledger", ["0s", "0s", "0s"]).await;
    // dev: a locked bucket with a default retention (as docs/install.md has it); stg: a bucket
    // someone made without Object Lock.
    let dev_s3 = w.account("dev").clients.s3.clone();
    kiln_testkit::object_lock_bucket(&w.account("dev").clients, "ledger-audit-dev", 2555).await.unwrap();
    let stg_s3 = w.account("stg").clients.s3.clone();
    stg_s3.create_bucket().bucket("ledger-audit-stg").send().await.unwrap();
    let envs: Api<Environment> = Api::all(w.client.clone());
    for (env, bucket, prefix) in [("dev", "ledger-audit-dev", None), ("stg", "ledger-audit-stg", Some("audit/"))] {
        let patch = json!({"spec": {"evidence": {"bucket": bucket, "prefix": prefix}}});
        envs.patch(env, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    w.start_controller(ControllerOptions::default());

    let release = w.lambda_release("ledger", 2, &["dev", "stg"], json!({})).await;
    let dev = format!("{release}-dev");
    let p = w
        .eventually(MIN, "dev Succeeded and its evidence archived", || async {
            w.promotion(&dev).await.filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase == PromotionPhase::Succeeded
                        && s.evidence_archive.as_ref().is_some_and(|a| a.archived_at.is_some())
                })
            })
        })
        .await;
    let status = p.status.unwrap();
    let sha = status.evidence_sha256.clone().unwrap();
    let archive = status.evidence_archive.clone().unwrap();
    assert_eq!(archive.bucket, "ledger-audit-dev");
    assert_eq!(archive.key, format!("kiln/evidence/{}/{dev}/{sha}.json", w.ns));

    // In dev's account: the very bytes whose digest status records, locked by the bucket.
    let object = dev_s3.get_object().bucket(&archive.bucket).key(&archive.key).send().await.unwrap();
    assert_eq!(object.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"));
    let body = object.body.collect().await.unwrap().into_bytes();
    let digest: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, sha, "the archived record is the one in status");
    let record: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(record["environment"], "dev");
    assert_eq!(record["outcome"], "Succeeded");
    assert_eq!(record["artifacts"][0]["digest"], image("ledger", 2).rsplit_once('@').unwrap().1);
    assert!(
        w.events(&dev)
            .await
            .iter()
            .any(|(t, reason, note)| t == "Normal" && reason == "EvidenceArchived" && note.contains(&archive.uri()))
    );

    // stg: deployed and Succeeded, but its record is refused by a bucket without Object Lock:
    // the Promotion says so and keeps trying; nothing is written there.
    let stg = w.promote(&release, "stg", "alice@example.com").await;
    w.approve(&stg, "rel@example.com", "release-engineering").await;
    let p = w
        .eventually(MIN, "stg Succeeded with its archive refused", || async {
            w.promotion(&stg).await.filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase == PromotionPhase::Succeeded
                        && s.message.as_deref().is_some_and(|m| m.starts_with("evidence not archived"))
                })
            })
        })
        .await;
    let status = p.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(message.contains("s3://ledger-audit-stg/audit/"), "{message}");
    assert!(message.contains("has no Object Lock"), "{message}");
    assert!(status.evidence_archive.is_some_and(|a| a.archived_at.is_none()));
    assert_eq!(w.alias_image("stg", "ledger").await, image("ledger", 2), "the deployment stands");
    assert!(w.events(&stg).await.iter().any(|(t, reason, _)| t == "Warning" && reason == "EvidenceArchiveFailed"));
    let listed = stg_s3.list_objects_v2().bucket("ledger-audit-stg").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0));
}
