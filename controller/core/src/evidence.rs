//! The evidence record of a change and its digest.
//!
//! Every Promotion that finishes gets one: release, version, commit, every digest, environment
//! and account, change ref, requester, each approval, each gate with its result at decision time,
//! the freeze exception if used, the timeline, the bake signals, the rollback cause and times and
//! the controller version. Its SHA-256 over canonical JSON goes into status so an archived copy
//! can be checked against it.

use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{Evidence, EvidenceArtifact, PromotionSpec, PromotionStatus};
use kiln_api::release::ReleaseSpec;
use sha2::{Digest, Sha256};

use crate::machine::Context;

/// Builds the evidence record from the Promotion's final status.
pub fn build(
    ctx: &Context<'_>,
    spec: &PromotionSpec,
    release: &ReleaseSpec,
    env: &EnvironmentSpec,
    status: &PromotionStatus,
) -> Evidence {
    let artifacts = release
        .artifacts
        .iter()
        .map(|a| match (&a.image, &a.zip) {
            (Some(image), _) => EvidenceArtifact {
                name: a.name.clone(),
                reference: image.clone(),
                digest: image.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default(),
            },
            (None, Some(zip)) => EvidenceArtifact {
                name: a.name.clone(),
                reference: format!("s3://{}/{}", zip.s3_bucket, zip.s3_key),
                digest: zip.code_sha256.clone(),
            },
            (None, None) => EvidenceArtifact { name: a.name.clone(), reference: String::new(), digest: String::new() },
        })
        .collect();
    Evidence {
        kind: if spec.rollback.is_some() { "rollback" } else { "promotion" }.to_string(),
        release: ctx.release_name.to_string(),
        service: release.service.clone(),
        version: release.version.clone(),
        release_type: release.release_type.as_str().to_string(),
        commit: release.commit.clone(),
        artifacts,
        environment: spec.environment.clone(),
        account_id: env.aws.account_id.clone(),
        region: env.aws.region.clone(),
        change_ref: release.change_ref.clone(),
        requested_by: spec.requested_by.clone(),
        author: release.author.clone(),
        approvals: spec.approvals.clone(),
        gates: status.gates.clone(),
        freeze_exception: status.freeze_exception.clone(),
        timeline: status.timeline.clone(),
        signals: status.bake.as_ref().map(|b| b.signals.clone()).unwrap_or_default(),
        rollback: status.rollback.clone(),
        outcome: status.phase,
        controller_version: ctx.controller_version.to_string(),
    }
}

/// SHA-256 (lowercase hex) of the evidence's canonical JSON (fields in declaration order, maps
/// sorted, no whitespace).
pub fn digest(evidence: &Evidence) -> String {
    let bytes = serde_json::to_vec(evidence).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A one-line summary for the evidence Event.
pub fn summary(e: &Evidence, sha: &str) -> String {
    let approvals: Vec<String> = e.approvals.iter().map(|a| format!("{} ({})", a.user, a.role)).collect();
    let digests: Vec<&str> = e.artifacts.iter().map(|a| a.digest.as_str()).collect();
    format!(
        "evidence sha256:{sha}: {} {} {} {} in {} ({}), change {}, approvals [{}], digests [{}]{}",
        e.kind,
        e.service,
        e.version,
        e.outcome,
        e.environment,
        e.account_id,
        e.change_ref.as_deref().unwrap_or("none"),
        approvals.join(", "),
        digests.join(", "),
        e.rollback.as_ref().map(|r| format!(", rollback: {} ({})", r.cause, r.message)).unwrap_or_default()
    )
}
