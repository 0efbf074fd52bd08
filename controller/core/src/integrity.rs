//! Release integrity: which Release a Promotion deployed, by UID and digests, never by name.
//!
//! Promotions refer to their Release by name, and a name outlives its Release: delete
//! `ingest-worker-v1-4-2`, create it again with another image, and every Promotion of the first
//! one (finished ones stay; a real cluster's garbage collector removes only those kiln created)
//! still names it. So each Promotion pins, when its gates pass, the Release's UID and the digest
//! of every artifact ([`ReleaseIdentity`], `status.release`), and everything that asks "did this
//! Release succeed there?" compares those: the upstream gate, rollback eligibility and the
//! Release's own status.

use kiln_api::promotion::{ArtifactDigest, ReleaseIdentity};
use kiln_api::release::{Artifact, ReleaseSpec};

/// What an artifact is by content: `sha256:<hex>` of an image (the digest it is pinned by), the
/// base64 CodeSha256 of a zip.
pub fn digest(a: &Artifact) -> String {
    match (&a.image, &a.zip) {
        (Some(image), _) => image.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default(),
        (None, Some(zip)) => zip.code_sha256.clone(),
        (None, None) => String::new(),
    }
}

/// The identity of the Release with UID `uid` and `spec`.
pub fn identity(uid: &str, spec: &ReleaseSpec) -> ReleaseIdentity {
    ReleaseIdentity {
        uid: uid.to_string(),
        version: spec.version.clone(),
        artifacts: spec.artifacts.iter().map(|a| ArtifactDigest { name: a.name.clone(), digest: digest(a) }).collect(),
    }
}

/// Whether `a` and `b` are the same Release: the same UID and the same artifacts.
pub fn same(a: &ReleaseIdentity, b: &ReleaseIdentity) -> bool {
    a.uid == b.uid && a.artifacts == b.artifacts
}

/// Whether a Promotion that recorded `deployed` (None: it has not started, or started before
/// kiln recorded identities) deployed the Release `current` is. Unknown on either side counts as
/// the same: names were all kiln compared before, and a Promotion that has not started pins the
/// Release it finds when it does.
pub fn deployed(deployed: Option<&ReleaseIdentity>, current: Option<&ReleaseIdentity>) -> bool {
    match (deployed, current) {
        (Some(d), Some(c)) => same(d, c),
        _ => true,
    }
}

/// `app sha256:… (v1.4.2, Release UID …)`, for messages that name a Release exactly.
pub fn describe(id: &ReleaseIdentity) -> String {
    let artifacts: Vec<String> = id.artifacts.iter().map(|a| format!("{} {}", a.name, a.digest)).collect();
    let version = if id.version.is_empty() { String::new() } else { format!("{}, ", id.version) };
    format!("{} ({version}Release UID {})", artifacts.join(", "), id.uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::fixtures;

    #[test]
    fn a_release_is_its_uid_and_digests_not_its_name() {
        let spec = fixtures::lambda_release("ingest", &["dev"]);
        let a = identity("uid-1", &spec);
        assert_eq!(a.artifacts.len(), 1);
        assert!(a.artifacts[0].digest.starts_with("sha256:"), "{a:?}");
        assert!(same(&a, &identity("uid-1", &spec)));
        // Re-created under the same name: another UID, even with the same artifacts.
        assert!(!same(&a, &identity("uid-2", &spec)));
        let mut other = spec.clone();
        other.artifacts[0].image = Some(fixtures::image("ingest", 2));
        assert!(!same(&a, &identity("uid-1", &other)));
        assert!(deployed(Some(&a), Some(&a)) && !deployed(Some(&a), Some(&identity("uid-2", &spec))));
        assert!(deployed(None, Some(&a)) && deployed(Some(&a), None), "unknown is not a mismatch");
        let text = describe(&a);
        assert!(text.contains(&a.artifacts[0].digest) && text.contains("Release UID uid-1"), "{text}");
    }
}
