//! What an environment runs now, read from AWS, and whether a Release may replace it.
//!
//! A Promotion is not proof of what runs: cleanup jobs delete finished Promotions, and a cluster
//! rebuilt from Git has none, so a Release's status cannot say whether a re-created Promotion
//! would deploy history. AWS can: kiln marks what it deploys (ECS task definition tags, the
//! Lambda version's description: [`ReleaseMark`]) and the controller reads the mark of what
//! serves now before a forward Promotion deploys ([`RunningState`]). [`judge`] then orders the
//! two by SemVer precedence within the service: newer deploys; older is refused (unless the
//! Promotion asks for a downgrade); the same version built again with other artifacts is
//! refused (a version names one build). The same artifacts deploy again (nothing changes for
//! traffic, and the Release gets its record). What kiln did not mark cannot be ordered and
//! deploys as before.

use std::cmp::Ordering;

/// What kiln writes on what it deploys, and reads back: the service, the Release's version and
/// UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseMark {
    /// `Release.spec.service`.
    pub service: String,
    /// `Release.spec.version`.
    pub version: String,
    /// The Release's UID (absent when it did not fit, e.g. in a Lambda description).
    pub release_uid: Option<String>,
}

/// The ECS task definition tag holding the service.
pub const SERVICE_TAG: &str = "kiln.dev/service";
/// The ECS task definition tag holding the version.
pub const VERSION_TAG: &str = "kiln.dev/version";
/// The ECS task definition tag holding the Release UID.
pub const RELEASE_UID_TAG: &str = "kiln.dev/release-uid";

/// Lambda versions cannot be tagged: kiln writes the mark into the published version's
/// description, at most this long.
pub const LAMBDA_DESCRIPTION_MAX: usize = 256;

impl ReleaseMark {
    /// The mark as ECS tags: (key, value).
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        let mut tags = vec![(SERVICE_TAG, self.service.clone()), (VERSION_TAG, self.version.clone())];
        if let Some(uid) = &self.release_uid {
            tags.push((RELEASE_UID_TAG, uid.clone()));
        }
        tags
    }

    /// The mark read from ECS tags (None without service and version).
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<ReleaseMark> {
        let (mut service, mut version, mut uid) = (None, None, None);
        for (k, v) in tags {
            match k {
                SERVICE_TAG => service = Some(v.to_string()),
                VERSION_TAG => version = Some(v.to_string()),
                RELEASE_UID_TAG => uid = Some(v.to_string()),
                _ => {}
            }
        }
        Some(ReleaseMark { service: service?, version: version?, release_uid: uid })
    }

    /// A Lambda version description for Promotion `promotion_uid`: `kiln service=… version=…
    /// release=… promotion=…`, dropping the UIDs that do not fit in
    /// [`LAMBDA_DESCRIPTION_MAX`] characters.
    pub fn description(&self, promotion_uid: &str) -> String {
        let base = format!("kiln service={} version={}", self.service, self.version);
        let release = self.release_uid.as_ref().map(|u| format!(" release={u}")).unwrap_or_default();
        let promotion = format!(" promotion={promotion_uid}");
        [format!("{base}{release}{promotion}"), format!("{base}{release}"), base]
            .into_iter()
            .find(|d| d.len() <= LAMBDA_DESCRIPTION_MAX)
            .unwrap_or_default()
    }

    /// The mark in a Lambda version description written by [`ReleaseMark::description`] (None
    /// for anything else, such as an earlier kiln's `kiln promotion <uid>`).
    pub fn from_description(description: &str) -> Option<ReleaseMark> {
        let mut words = description.split_whitespace();
        if words.next() != Some("kiln") {
            return None;
        }
        ReleaseMark::from_tags(words.filter_map(|w| w.split_once('=')).map(|(k, v)| match k {
            "service" => (SERVICE_TAG, v),
            "version" => (VERSION_TAG, v),
            "release" => (RELEASE_UID_TAG, v),
            _ => ("", v),
        }))
    }
}

/// What serves traffic in the environment now, as read from AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Where, for people: e.g. `ECS service web in cluster prod (task definition web:12)`.
    pub what: String,
    /// kiln's mark on it (None: kiln did not deploy it, or an earlier kiln without marks did).
    pub mark: Option<ReleaseMark>,
    /// Whether it runs exactly the artifacts this Release deploys there (every container image
    /// the Release sets, or the Lambda code).
    pub same_artifacts: bool,
    /// The artifact it runs, for people (image reference or CodeSha256).
    pub artifact: String,
}

/// What the observe step found out about what runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RunningState {
    /// Not read: the Promotion is a rollback, has started, or is not at the front of its queue.
    #[default]
    NotRead,
    /// Read.
    Runs(Running),
    /// AWS answered that it cannot say (the service, function or alias is missing, or kiln may
    /// not read it): the deployment reports that itself, so this does not hold the Promotion.
    Unknown(String),
    /// The read failed for a while (throttled, unreachable): wait and read again.
    Unreadable(String),
}

/// Whether a Release may deploy over what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deploy; why it may (for the gate's message).
    Deploy(String),
    /// Refuse: the environment runs a newer version of the service.
    Older(String),
    /// Refuse: the environment runs this version built from other artifacts.
    VersionReused(String),
}

fn semver(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok()
}

/// Orders Release `service` `version` against `running` in `environment`. `downgrade`: the
/// Promotion asks to deploy even an older version.
pub fn judge(environment: &str, service: &str, version: &str, running: &Running, downgrade: bool) -> Verdict {
    let here = format!("{environment} runs {}", running.what);
    if running.same_artifacts {
        let what = match &running.mark {
            Some(m) => format!("{} {}", m.service, m.version),
            None => running.artifact.clone(),
        };
        return Verdict::Deploy(format!("{here}: {what}, the same artifacts as {service} {version}"));
    }
    let Some(mark) = &running.mark else {
        return Verdict::Deploy(format!("{here}: {}, not deployed by kiln (no version to compare)", running.artifact));
    };
    if mark.service != service {
        return Verdict::Deploy(format!(
            "{here}: service {} {}; versions of another service are not compared",
            mark.service, mark.version
        ));
    }
    let (Some(theirs), Some(ours)) = (semver(&mark.version), semver(version)) else {
        return Verdict::Deploy(format!("{here}: {} {}, not a SemVer version to compare", mark.service, mark.version));
    };
    let release = mark.release_uid.as_deref().map(|u| format!(", Release {u}")).unwrap_or_default();
    let running_desc = format!("{service} {} ({}{release})", mark.version, running.artifact);
    match ours.cmp_precedence(&theirs) {
        Ordering::Greater => Verdict::Deploy(format!("{here}: {running_desc}; {version} is newer")),
        Ordering::Less if downgrade => Verdict::Deploy(format!(
            "{here}: {running_desc}; {version} is older and deployed as a downgrade (spec.downgrade)"
        )),
        Ordering::Less => Verdict::Older(format!(
            "{here}: {running_desc}, newer than {version}; kiln does not deploy an older version over a newer one \
             (history re-created by a cleanup or a cluster rebuilt from Git). To go back on purpose, create a \
             rollback Promotion, or a Promotion with spec.downgrade: true"
        )),
        Ordering::Equal => Verdict::VersionReused(format!(
            "{here}: {running_desc}; this Release is {version} with other artifacts. A version names one build: \
             give the new build a new version"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(service: &str, version: &str, same: bool) -> Running {
        Running {
            what: "ECS service web in cluster dev (task definition web:3)".into(),
            mark: Some(ReleaseMark {
                service: service.into(),
                version: version.into(),
                release_uid: Some("u-1".into()),
            }),
            same_artifacts: same,
            artifact: "r.example/web@sha256:aaa".into(),
        }
    }

    fn verdict(version: &str, running: &Running) -> Verdict {
        judge("dev", "web", version, running, false)
    }

    #[test]
    fn newer_deploys_older_and_reused_versions_are_refused() {
        assert!(matches!(verdict("v1.3.0", &runs("web", "v1.2.9", false)), Verdict::Deploy(m) if m.contains("newer")));
        let Verdict::Older(m) = verdict("v1.2.0", &runs("web", "v1.10.0", false)) else { panic!("older") };
        assert!(m.contains("v1.10.0") && m.contains("v1.2.0") && m.contains("downgrade"), "{m}");
        let Verdict::VersionReused(m) = verdict("v1.3.0", &runs("web", "v1.3.0", false)) else { panic!("reused") };
        assert!(m.contains("r.example/web@sha256:aaa") && m.contains("new version"), "{m}");
        // The same artifacts deploy again whatever the versions say.
        assert!(matches!(verdict("v1.3.0", &runs("web", "v1.3.0", true)), Verdict::Deploy(_)));
        assert!(matches!(verdict("v1.0.0", &runs("web", "v1.3.0", true)), Verdict::Deploy(_)));
        // A deliberate downgrade.
        assert!(matches!(judge("dev", "web", "v1.2.0", &runs("web", "v1.3.0", false), true), Verdict::Deploy(_)));
        assert!(matches!(
            judge("dev", "web", "v1.3.0", &runs("web", "v1.3.0", false), true),
            Verdict::VersionReused(_)
        ));
    }

    #[test]
    fn pre_releases_order_by_semver_and_build_metadata_does_not_count() {
        for (older, newer) in [
            ("v2.0.0-rc.1", "v2.0.0"),
            ("v2.0.0-alpha", "v2.0.0-alpha.1"),
            ("v2.0.0-alpha.beta", "v2.0.0-beta"),
            ("v2.0.0-rc.2", "v2.0.0-rc.10"),
            ("v1.9.9", "v2.0.0-rc.1"),
        ] {
            assert!(matches!(verdict(newer, &runs("web", older, false)), Verdict::Deploy(_)), "{newer} > {older}");
            assert!(matches!(verdict(older, &runs("web", newer, false)), Verdict::Older(_)), "{older} < {newer}");
        }
        // Build metadata has no precedence: another build of v1.4.2 is the same version.
        assert!(matches!(verdict("v1.4.2+build.8", &runs("web", "v1.4.2+build.7", false)), Verdict::VersionReused(_)));
    }

    #[test]
    fn what_cannot_be_ordered_deploys() {
        let mut r = runs("web", "v9.0.0", false);
        r.mark = None;
        assert!(matches!(verdict("v1.0.0", &r), Verdict::Deploy(m) if m.contains("not deployed by kiln")));
        assert!(
            matches!(verdict("v1.0.0", &runs("api", "v9.0.0", false)), Verdict::Deploy(m) if m.contains("another service"))
        );
        assert!(matches!(verdict("v1.0.0", &runs("web", "latest", false)), Verdict::Deploy(m) if m.contains("SemVer")));
    }

    #[test]
    fn marks_round_trip_through_tags_and_descriptions() {
        let mark =
            ReleaseMark { service: "web".into(), version: "v1.4.2+build.7".into(), release_uid: Some("9f0c".into()) };
        let tags = mark.tags();
        assert_eq!(ReleaseMark::from_tags(tags.iter().map(|(k, v)| (*k, v.as_str()))), Some(mark.clone()));
        let d = mark.description("p-1");
        assert_eq!(d, "kiln service=web version=v1.4.2+build.7 release=9f0c promotion=p-1");
        assert_eq!(ReleaseMark::from_description(&d), Some(mark.clone()));
        assert_eq!(ReleaseMark::from_description("kiln promotion 0d6c"), None, "an earlier kiln's description");
        assert_eq!(ReleaseMark::from_description("built by hand"), None);
        // Too long for Lambda: the UIDs go first, the version stays.
        let long = ReleaseMark { version: format!("v1.0.0-{}", "a".repeat(120)), service: "s".repeat(63), ..mark };
        let d = long.description(&"p".repeat(36));
        assert!(d.len() <= LAMBDA_DESCRIPTION_MAX, "{}", d.len());
        let back = ReleaseMark::from_description(&d);
        assert_eq!(back.as_ref().map(|m| m.version.as_str()), Some(long.version.as_str()));
    }
}
