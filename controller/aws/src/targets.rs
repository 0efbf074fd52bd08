//! What a Release deploys in one environment, with that environment's overrides applied: the
//! inputs of the adapters.

use kiln_api::release::{Artifact, EcsTarget, EcsTraffic, LambdaTarget, ReleaseSpec};
use kiln_core::running::ReleaseMark;

use crate::ecs::EcsService;
use crate::lambda::alias::LambdaCode;

fn artifact<'a>(release: &'a ReleaseSpec, named: Option<&str>, fallback: Option<&str>) -> Result<&'a Artifact, String> {
    let find = |n: &str| release.artifacts.iter().find(|a| a.name == n);
    match named {
        Some(n) => find(n).ok_or_else(|| format!("artifact {n} is not in spec.artifacts")),
        None => fallback
            .and_then(find)
            .or(if release.artifacts.len() == 1 { release.artifacts.first() } else { None })
            .ok_or_else(|| "name the artifact to deploy: the release has several and none matches".to_string()),
    }
}

/// What kiln marks on what it deploys for `release` (UID `uid`): [`kiln_core::running`].
pub fn mark(release: &ReleaseSpec, uid: Option<&str>) -> ReleaseMark {
    ReleaseMark {
        service: release.service.clone(),
        version: release.version.clone(),
        release_uid: uid.map(str::to_string),
    }
}

/// The ECS cluster of `ecs` in `env` (after the environment's override).
pub fn ecs_cluster(ecs: &EcsTarget, env: &str) -> String {
    ecs.cluster_for(env).to_string()
}

/// The ECS service, container image and traffic for `env`.
pub fn ecs_service(
    release: &ReleaseSpec,
    ecs: &EcsTarget,
    env: &str,
) -> Result<(EcsService, Option<EcsTraffic>), String> {
    let a = artifact(release, ecs.artifact.as_deref(), Some(&ecs.container))?;
    let image =
        a.image.clone().ok_or_else(|| format!("artifact {} is not an image; an ECS container needs one", a.name))?;
    let mut sidecars = Vec::new();
    for s in &ecs.sidecars {
        let a = artifact(release, Some(&s.artifact), None)?;
        let image = a.image.clone().ok_or_else(|| {
            format!("artifact {} of sidecar {} is not an image; a container needs one", a.name, s.container)
        })?;
        sidecars.push((s.container.clone(), image));
    }
    let service = EcsService {
        cluster: ecs_cluster(ecs, env),
        service: ecs.service_for(env).to_string(),
        container: ecs.container.clone(),
        image,
        sidecars,
        mark: None,
    };
    let traffic = ecs.traffic_for(env).cloned();
    Ok((service, traffic))
}

/// The function, alias and code for `env`.
pub fn lambda_target(
    release: &ReleaseSpec,
    l: &LambdaTarget,
    env: &str,
) -> Result<(String, String, LambdaCode), String> {
    let a = artifact(release, l.artifact.as_deref(), None)?;
    let code = match (&a.image, &a.zip) {
        (Some(uri), _) => LambdaCode::Image { uri: uri.clone() },
        (None, Some(z)) => LambdaCode::Zip {
            bucket: z.s3_bucket.clone(),
            key: z.s3_key.clone(),
            object_version: z.s3_object_version.clone(),
            code_sha256: z.code_sha256.clone(),
        },
        (None, None) => return Err(format!("artifact {} has neither image nor zip", a.name)),
    };
    Ok((l.function_for(env).to_string(), l.alias_for(env).to_string(), code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::fixtures;

    fn release(target: serde_json::Value) -> ReleaseSpec {
        let target = serde_json::from_value(target).unwrap_or_else(|e| panic!("{e}"));
        ReleaseSpec {
            artifacts: vec![fixtures::artifact("app", 1), fixtures::artifact("proxy", 2)],
            ..fixtures::release("web", target, &["dev", "prod"])
        }
    }

    #[test]
    fn ecs_overrides_apply_per_environment() {
        let r = release(serde_json::json!({"ecs": {
            "cluster": "dev-cluster", "service": "web", "container": "app", "strategy": "canary",
            "environmentOverrides": {"prod": {"cluster": "prod-cluster"}}
        }}));
        let ecs = r.target.ecs.clone().unwrap_or_else(|| panic!("ecs"));
        let (dev, _) = ecs_service(&r, &ecs, "dev").unwrap_or_else(|e| panic!("{e}"));
        let (prod, _) = ecs_service(&r, &ecs, "prod").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((dev.cluster.as_str(), prod.cluster.as_str()), ("dev-cluster", "prod-cluster"));
        assert_eq!(prod.image, fixtures::image("app", 1), "the artifact named like the container");
    }

    #[test]
    fn lambda_alias_defaults_and_overrides() {
        let r = release(serde_json::json!({"lambda": {
            "functionName": "web", "strategy": "canary", "artifact": "app",
            "environmentOverrides": {"prod": {"functionName": "web-prod"}}
        }}));
        let l = r.target.lambda.clone().unwrap_or_else(|| panic!("lambda"));
        let (f, alias, code) = lambda_target(&r, &l, "prod").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((f.as_str(), alias.as_str()), ("web-prod", "live"));
        assert!(matches!(code, LambdaCode::Image { .. }));
    }
}
