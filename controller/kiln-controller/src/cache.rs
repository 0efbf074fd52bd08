//! What the reflector caches keep of each object.
//!
//! At 10,000 Releases and 10,000 finished Promotions the caches are most of the controller's
//! memory (docs/benchmarks.md). Two things in them are never read by a decision: every
//! object's `metadata.managedFields` (and kubectl's last-applied annotation), and most of a
//! finished Promotion's status (gates, timeline, snapshot, evidence…). Both are dropped as
//! objects enter the cache.
//!
//! The cache is for deciding, never the base of a write: status goes out by server-side apply of
//! what the decision core computed, finalizers by a merge patch with a resourceVersion
//! precondition. A Promotion whose status was summarized is read from the API in full before
//! it is reconciled (see [`is_summary`]).

use kiln_api::Promotion;
use kiln_api::promotion::PromotionStatus;
use kube::Resource;

/// The in-memory marker on a finished Promotion whose cached status is a summary. Never
/// written to the API.
pub const SUMMARY_MARKER: &str = "kiln.dev/cached-summary";

/// Drops what kiln never reads from a cached object of any kind: `metadata.managedFields`
/// (a third of a cached object's memory) and kubectl's last-applied annotation (a second copy
/// of the spec).
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Slims a Promotion and, if it is finished and not being deleted, keeps of its status only
/// what other objects' decisions read: the phase, generations, times and message (the Release
/// aggregate, queues, upstream gates and the phase gauges), the AWS resource it drove (who to
/// wake when it finishes), which Release it deployed (UID and digests), and whether its evidence still has to be archived (the at-rest
/// check). Marks it with [`SUMMARY_MARKER`].
pub fn slim_promotion(p: &mut Promotion) {
    slim(p);
    let Some(status) = p.status.as_mut() else { return };
    if !status.phase.is_terminal() || p.metadata.deletion_timestamp.is_some() {
        return;
    }
    let full = std::mem::take(status);
    *status = PromotionStatus {
        observed_generation: full.observed_generation,
        phase: full.phase,
        observed_retry: full.observed_retry,
        // What wakes the Promotions queued behind it when it finishes (`promotion::related`).
        target: full.target,
        // Which Release succeeded (the upstream gate, rollback eligibility, the Release status).
        release: full.release,
        started_at: full.started_at,
        completed_at: full.completed_at,
        full_traffic_at: full.full_traffic_at,
        message: full.message,
        // Whether the evidence still has to go to S3 (`machine::archive_pending`).
        evidence_sha256: full.evidence_sha256,
        evidence_archive: full.evidence_archive,
        ..PromotionStatus::default()
    };
    p.metadata.annotations.get_or_insert_with(Default::default).insert(SUMMARY_MARKER.into(), "true".into());
}

/// Whether `p` came from the cache with a summarized status (read it from the API before
/// deciding anything about it).
pub fn is_summary(p: &Promotion) -> bool {
    p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(SUMMARY_MARKER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta, Time};
    use kiln_api::PromotionPhase;
    use kiln_api::promotion::{PromotionSpec, TimelineEntry};

    fn promotion(phase: PromotionPhase) -> Promotion {
        let t = Time(jiff::Timestamp::UNIX_EPOCH);
        Promotion {
            metadata: ObjectMeta {
                name: Some("web-v2-prod".into()),
                namespace: Some("shop".into()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    ..Default::default()
                }]),
                annotations: Some(
                    [
                        ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{…}".to_string()),
                        ("team".to_string(), "payments".to_string()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: PromotionSpec {
                release: "web-v2".into(),
                environment: "prod".into(),
                requested_by: None,
                approvals: Vec::new(),
                abort: false,
                retry: 1,
                rollback: None,
                downgrade: false,
            },
            status: Some(PromotionStatus {
                observed_generation: Some(3),
                phase,
                observed_retry: 1,
                started_at: Some(t.clone()),
                completed_at: Some(t.clone()),
                full_traffic_at: Some(t.clone()),
                message: Some("baked 10m".into()),
                gate_summary: Some("ok".into()),
                timeline: vec![TimelineEntry { at: t, phase, reason: "Baked".into(), message: "baked".into() }],
                evidence_sha256: Some("ab".repeat(32)),
                ..PromotionStatus::default()
            }),
        }
    }

    #[test]
    fn finished_promotions_keep_what_decisions_read() {
        let mut p = promotion(PromotionPhase::Succeeded);
        slim_promotion(&mut p);
        assert!(p.metadata.managed_fields.is_none());
        let annotations = p.metadata.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert_eq!(annotations.get("team").map(String::as_str), Some("payments"));
        assert!(is_summary(&p));
        let s = p.status.unwrap_or_default();
        assert_eq!(s.phase, PromotionPhase::Succeeded);
        assert_eq!((s.observed_generation, s.observed_retry), (Some(3), 1));
        assert!(s.started_at.is_some() && s.completed_at.is_some() && s.full_traffic_at.is_some());
        assert_eq!(s.message.as_deref(), Some("baked 10m"));
        assert!(s.timeline.is_empty() && s.evidence.is_none() && s.gate_summary.is_none());
        assert_eq!(s.evidence_sha256.map(|h| h.len()), Some(64), "kept for the archive check");
    }

    #[test]
    fn in_flight_and_deleting_promotions_keep_their_whole_status() {
        let mut baking = promotion(PromotionPhase::Baking);
        slim_promotion(&mut baking);
        assert!(!is_summary(&baking));
        assert_eq!(baking.status.map(|s| s.timeline.len()), Some(1));

        let mut deleting = promotion(PromotionPhase::RolledBack);
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        slim_promotion(&mut deleting);
        assert!(!is_summary(&deleting));
        assert!(deleting.metadata.managed_fields.is_none());
        assert_eq!(deleting.status.and_then(|s| s.evidence_sha256).map(|s| s.len()), Some(64));
    }
}
