//! The evidence record of a change and its digest.
//!
//! Every Promotion that finishes gets one: release, version, commit, every digest, environment
//! and account, change ref, requester, each approval, each gate with its result at decision time,
//! the freeze exception if used, the timeline, the bake signals, the rollback cause and times and
//! the controller version. Its SHA-256 over canonical JSON goes into status so an archived copy
//! can be checked against it.

use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{Evidence, EvidenceArtifact, EvidencePrevious, PromotionSpec, PromotionStatus};
use kiln_api::release::ReleaseSpec;
use sha2::{Digest, Sha256};

use crate::machine::Context;

/// Builds the evidence record from the Promotion's final status. The Release or Environment
/// may have been deleted mid-deployment; what is known is still recorded.
pub fn build(
    ctx: &Context<'_>,
    spec: &PromotionSpec,
    release: Option<&ReleaseSpec>,
    env: Option<&EnvironmentSpec>,
    status: &PromotionStatus,
) -> Evidence {
    const DELETED: &str = "unknown (deleted)";
    let artifacts = release
        .map(|r| r.artifacts.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|a| EvidenceArtifact {
            name: a.name.clone(),
            reference: crate::integrity::reference(a),
            digest: crate::integrity::digest(a),
        })
        .collect();
    let snapshot = status.previous.as_ref();
    let from_env_or_snapshot = |e: Option<&str>, s: Option<&String>| {
        e.map(str::to_string).or_else(|| s.cloned()).unwrap_or_else(|| DELETED.to_string())
    };
    Evidence {
        schema_version: Some(kiln_api::promotion::EVIDENCE_SCHEMA_VERSION),
        kind: if spec.rollback.is_some() { "rollback" } else { "promotion" }.to_string(),
        release: ctx.release_name.to_string(),
        release_uid: status.release.as_ref().map(|r| r.uid.clone()),
        service: release.map(|r| r.service.clone()).unwrap_or_else(|| DELETED.into()),
        version: release.map(|r| r.version.clone()).unwrap_or_else(|| DELETED.into()),
        release_type: release.map(|r| r.release_type.as_str().to_string()).unwrap_or_else(|| DELETED.into()),
        commit: release.and_then(|r| r.commit.clone()),
        artifacts,
        environment: spec.environment.clone(),
        account_id: from_env_or_snapshot(
            env.map(|e| e.aws.account_id.as_str()),
            snapshot.and_then(|s| s.account_id.as_ref()),
        ),
        region: from_env_or_snapshot(env.map(|e| e.aws.region.as_str()), snapshot.and_then(|s| s.region.as_ref())),
        change_ref: release.and_then(|r| r.change_ref.clone()),
        requested_by: spec.requested_by.clone(),
        author: release.and_then(|r| r.author.clone()),
        approvals: spec.approvals.clone(),
        approvals_seen: status.approvals_seen.clone(),
        previous: snapshot.map(|s| EvidencePrevious {
            task_definition: s.ecs.as_ref().and_then(|e| e.task_definition.clone()),
            containers: s.ecs.as_ref().map(|e| e.containers.clone()).unwrap_or_default(),
            lambda_version: s.lambda.as_ref().map(|l| l.version.clone()),
        }),
        resources: resources(status),
        gates: status.gates.clone(),
        freeze_exception: status.freeze_exception.clone(),
        timeline: status.timeline.clone(),
        signals: status.bake.as_ref().map(|b| b.signals.clone()).unwrap_or_default(),
        rollback: status.rollback.clone(),
        outcome: status.phase,
        controller_version: ctx.controller_version.to_string(),
    }
}

/// The AWS resources a Promotion acted on or created, in a stable order, without repeats.
fn resources(status: &PromotionStatus) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    out.extend(status.target.clone());
    if let Some(ecs) = status.previous.as_ref().and_then(|s| s.ecs.as_ref()) {
        out.extend(ecs.listener_or_rule_arn.clone());
        out.extend(ecs.listener_weights.iter().map(|w| w.target_group_arn.clone()));
    }
    if let Some(d) = &status.deployed {
        out.extend(d.task_definition.clone());
        out.extend(d.task_set.clone());
        out.extend(d.lambda_version.as_ref().map(|v| {
            let function = status.target.as_deref().unwrap_or("function");
            format!("{function}:{v}")
        }));
        out.extend(d.code_deploy_deployment.clone());
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.clone()));
    out
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
