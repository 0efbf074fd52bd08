//! Release integrity: which Release a Promotion deployed, by UID and digests, never by name.
//!
//! Promotions refer to their Release by name, and a name outlives its Release: delete
//! `ingest-worker-v1-4-2`, create it again with another image, and every Promotion of the first
//! one (finished ones stay; a real cluster's garbage collector removes only those kiln created)
//! still names it. So each Promotion pins, when its gates pass, the Release's UID and the digest
//! of every artifact ([`ReleaseIdentity`], `status.release`), and everything that asks "did this
//! Release succeed there?" compares those: the upstream gate, rollback eligibility and the
//! Release's own status.
//!
//! The same goes for what else runs beside the Release: a task definition's other containers
//! (sidecars) are shipped as they are unless the Release lists them, so the Environment says
//! whether they must be pinned by digest or come from the Release ([`container_problem`]).

use kiln_api::environment::ContainerImages;
use kiln_api::promotion::{ArtifactDigest, ReleaseIdentity, Snapshot};
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

/// Where an artifact is: the image reference, or `s3://bucket/key` of a zip.
pub fn reference(a: &Artifact) -> String {
    match (&a.image, &a.zip) {
        (Some(image), _) => image.clone(),
        (None, Some(zip)) => format!("s3://{}/{}", zip.s3_bucket, zip.s3_key),
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

/// Whether `image` is pinned by digest (`<repository>@sha256:<64 lowercase hex>`).
pub fn pinned(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(repo, hex)| {
        !repo.is_empty() && hex.len() == 64 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// What the Environment's `containerImages` policy refuses in the task definition a snapshot
/// found, once the Release's containers (the main one and its sidecars) are set: every other
/// container, under `fromRelease`; one whose image is not pinned by digest, under
/// `pinnedByDigest`; and a sidecar the Release lists that the task definition does not have.
/// None when everything may run (or the target is not ECS).
pub fn container_problem(
    environment: &str,
    policy: ContainerImages,
    release: &ReleaseSpec,
    snapshot: Option<&Snapshot>,
) -> Option<String> {
    let ecs = release.target.ecs.as_ref()?;
    let snap = snapshot.and_then(|s| s.ecs.as_ref())?;
    let td = snap.task_definition.as_deref().unwrap_or("the service's task definition");
    let listed = |name: &str| name == ecs.container || ecs.sidecars.iter().any(|s| s.container == name);
    let mut refused = Vec::new();
    for c in snap.containers.iter().filter(|c| !listed(&c.name)) {
        match policy {
            ContainerImages::FromRelease => refused.push(format!("container {} ({})", c.name, c.image)),
            ContainerImages::PinnedByDigest if !pinned(&c.image) => {
                refused.push(format!("container {} runs {}, not pinned by digest", c.name, c.image))
            }
            ContainerImages::PinnedByDigest => {}
        }
    }
    let missing: Vec<&str> = ecs
        .sidecars
        .iter()
        .filter(|s| !snap.containers.is_empty() && !snap.containers.iter().any(|c| c.name == s.container))
        .map(|s| s.container.as_str())
        .collect();
    let mut parts = Vec::new();
    if !refused.is_empty() {
        let rule = match policy {
            ContainerImages::FromRelease => "every container's image to come from the Release",
            ContainerImages::PinnedByDigest => "every container image pinned by digest",
        };
        parts.push(format!(
            "Environment {environment} requires {rule}: in {td}, {}; list each in the Release's target.ecs.sidecars with an artifact pinned by digest{}",
            refused.join(", "),
            if policy == ContainerImages::PinnedByDigest { ", or pin it in the task definition" } else { "" }
        ));
    }
    if !missing.is_empty() {
        parts.push(format!(
            "the Release's target.ecs.sidecars name {}, which {td} does not have (its containers: {})",
            missing.join(", "),
            snap.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
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

    fn snapshot(containers: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            ecs: Some(kiln_api::promotion::EcsSnapshot {
                task_definition: Some("arn:aws:ecs:us-east-1:1:task-definition/web:3".into()),
                containers: containers
                    .iter()
                    .map(|(n, i)| kiln_api::promotion::ContainerImage { name: (*n).into(), image: (*i).into() })
                    .collect(),
                ..Default::default()
            }),
            ..Snapshot::default()
        }
    }

    #[test]
    fn containers_the_release_does_not_list_must_be_pinned_or_are_refused() {
        use kiln_api::release::{EcsStrategy, Sidecar};
        let mut release = fixtures::ecs_release("apps", "web", EcsStrategy::Canary, &["dev"]);
        let pinned_proxy = format!("registry.example/proxy@sha256:{}", fixtures::digest(7));
        let tagged = snapshot(&[("app", "old"), ("proxy", "registry.example/proxy:v7")]);
        let digest = snapshot(&[("app", "old"), ("proxy", pinned_proxy.as_str())]);
        let pin = ContainerImages::PinnedByDigest;
        // A mutable tag beside the Release's container: refused, named.
        let m = container_problem("dev", pin, &release, Some(&tagged)).unwrap_or_default();
        assert!(m.contains("container proxy runs registry.example/proxy:v7, not pinned by digest"), "{m}");
        assert!(m.contains("task-definition/web:3"), "{m}");
        // Pinned: fine by default, refused when everything must come from the Release.
        assert_eq!(container_problem("dev", pin, &release, Some(&digest)), None);
        let m = container_problem("prod", ContainerImages::FromRelease, &release, Some(&digest)).unwrap_or_default();
        assert!(m.contains("come from the Release") && m.contains("container proxy"), "{m}");
        // Listed in the Release: its image is the Release's, whatever ran.
        if let Some(ecs) = release.target.ecs.as_mut() {
            ecs.sidecars.push(Sidecar { container: "proxy".into(), artifact: "proxy".into() });
        }
        assert_eq!(container_problem("dev", pin, &release, Some(&tagged)), None);
        assert_eq!(container_problem("prod", ContainerImages::FromRelease, &release, Some(&tagged)), None);
        // A listed sidecar the task definition does not have.
        let m = container_problem("dev", pin, &release, Some(&snapshot(&[("app", "old")]))).unwrap_or_default();
        assert!(m.contains("name proxy, which") && m.contains("its containers: app"), "{m}");
        assert!(pinned(&pinned_proxy) && !pinned("registry.example/proxy:v7") && !pinned("x@sha256:abc"));
    }
}
