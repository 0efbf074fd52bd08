//! What the CRD schema cannot check: references between objects, the environment graph, and
//! resolution of defaults that depend on several fields. Each problem is a [`SpecError`] whose
//! message says what to fix.

use std::collections::{BTreeMap, BTreeSet};

use kiln_api::environment::EnvironmentSpec;
use kiln_api::release::ReleaseSpec;

use crate::SpecError;
use crate::duration;
use crate::plan;
use crate::problem::Problem;

/// Problems of each Environment: unknown upstreams and cycles in the upstream graph.
pub fn environments(envs: &BTreeMap<String, EnvironmentSpec>) -> BTreeMap<String, Vec<SpecError>> {
    let known = known_list(envs);
    let mut out: BTreeMap<String, Vec<SpecError>> = BTreeMap::new();
    for (name, env) in envs {
        let errs = out.entry(name.clone()).or_default();
        for up in &env.upstream {
            if !envs.contains_key(up) {
                errs.push(SpecError::UnknownEnvironment {
                    field: "spec.upstream".into(),
                    name: up.clone(),
                    known: known.clone(),
                });
            }
        }
        if let Some(d) = &env.promotion.min_upstream_bake
            && let Err(e) = duration::parse("spec.promotion.minUpstreamBake", d)
        {
            errs.push(e);
        }
        if let Err(e) = duration::parse_or_zero("spec.bake.duration", &env.bake.duration) {
            errs.push(e);
        }
        if let Some(cycle) = find_cycle(name, envs) {
            errs.push(SpecError::UpstreamCycle { path: cycle.join(" -> ") });
        }
    }
    out
}

fn known_list(envs: &BTreeMap<String, EnvironmentSpec>) -> String {
    if envs.is_empty() { "none".into() } else { envs.keys().cloned().collect::<Vec<_>>().join(", ") }
}

/// A cycle through `start` in the upstream graph, as a path that starts and ends at `start`.
fn find_cycle(start: &str, envs: &BTreeMap<String, EnvironmentSpec>) -> Option<Vec<String>> {
    // Depth-first search from `start`'s upstreams back to `start`; the graph is at most a few
    // dozen nodes, so a simple search with a visited set is enough.
    fn dfs(
        node: &str,
        start: &str,
        envs: &BTreeMap<String, EnvironmentSpec>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let Some(env) = envs.get(node) else { return false };
        for up in &env.upstream {
            if up == start {
                path.push(up.clone());
                return true;
            }
            if seen.insert(up.clone()) {
                path.push(up.clone());
                if dfs(up, start, envs, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    dfs(start, start, envs, &mut path, &mut seen).then_some(path)
}

/// Problems of a Release against the known Environments.
pub fn release(spec: &ReleaseSpec, envs: &BTreeMap<String, EnvironmentSpec>) -> Vec<SpecError> {
    let mut errs = Vec::new();
    let known = known_list(envs);
    for (i, name) in spec.environments.iter().enumerate() {
        let Some(env) = envs.get(name) else {
            errs.push(SpecError::UnknownEnvironment {
                field: format!("spec.environments[{i}]"),
                name: name.clone(),
                known: known.clone(),
            });
            continue;
        };
        for up in &env.upstream {
            let before = spec.environments[..i].contains(up);
            if !before {
                errs.push(SpecError::UpstreamOrder { environment: name.clone(), upstream: up.clone() });
            }
        }
        if let Err(e) = plan::resolve(spec, env, false)
            && !errs.contains(&e)
        {
            errs.push(e);
        }
    }
    let in_release = |env: &String| spec.environments.contains(env);
    if let Some(ecs) = &spec.target.ecs {
        for env in ecs.environment_overrides.keys().filter(|e| !in_release(e)) {
            errs.push(SpecError::StrayOverride {
                field: "spec.target.ecs.environmentOverrides".into(),
                environment: env.clone(),
            });
        }
        match resolve_artifact(spec, ecs.artifact.as_deref(), Some(&ecs.container)) {
            Ok(a) if a.image.is_none() => errs.push(SpecError::Artifact {
                field: "spec.target.ecs".into(),
                message: format!("artifact {} is a zip; ECS needs an image pinned by digest", a.name),
            }),
            Ok(_) => {}
            Err(message) => errs.push(SpecError::Artifact { field: "spec.target.ecs.artifact".into(), message }),
        }
        for (i, s) in ecs.sidecars.iter().enumerate() {
            let field = format!("spec.target.ecs.sidecars[{i}]");
            if s.container == ecs.container {
                errs.push(SpecError::Artifact {
                    field,
                    message: format!(
                        "{} is the main container (target.ecs.container); list only other containers",
                        s.container
                    ),
                });
                continue;
            }
            match spec.artifacts.iter().find(|a| a.name == s.artifact) {
                None => errs.push(SpecError::Artifact {
                    field,
                    message: format!("no artifact named {:?} in spec.artifacts", s.artifact),
                }),
                Some(a) if a.image.is_none() => errs.push(SpecError::Artifact {
                    field,
                    message: format!("artifact {} is a zip; a container needs an image pinned by digest", a.name),
                }),
                Some(_) => {}
            }
        }
    }
    if let Some(l) = &spec.target.lambda {
        for env in l.environment_overrides.keys().filter(|e| !in_release(e)) {
            errs.push(SpecError::StrayOverride {
                field: "spec.target.lambda.environmentOverrides".into(),
                environment: env.clone(),
            });
        }
        if let Err(message) = resolve_artifact(spec, l.artifact.as_deref(), None) {
            errs.push(SpecError::Artifact { field: "spec.target.lambda.artifact".into(), message });
        }
    }
    errs
}

/// The artifact a target deploys: the one named, else the one named like the container, else
/// the only one.
pub fn resolve_artifact<'a>(
    spec: &'a ReleaseSpec,
    named: Option<&str>,
    container: Option<&str>,
) -> Result<&'a kiln_api::release::Artifact, String> {
    if let Some(n) = named {
        return spec
            .artifacts
            .iter()
            .find(|a| a.name == n)
            .ok_or_else(|| format!("no artifact named {n:?} in spec.artifacts"));
    }
    if let Some(c) = container
        && let Some(a) = spec.artifacts.iter().find(|a| a.name == c)
    {
        return Ok(a);
    }
    match spec.artifacts.as_slice() {
        [only] => Ok(only),
        [] => Err("the Release has no artifacts".into()),
        _ => Err(format!(
            "several artifacts and none named {:?}: set artifact to one of {}",
            container.unwrap_or(""),
            spec.artifacts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Problems of a Promotion against its Release.
pub fn promotion(environment: &str, release: &ReleaseSpec, release_name: &str) -> Vec<SpecError> {
    if release.environments.iter().any(|e| e == environment) {
        Vec::new()
    } else {
        vec![SpecError::Promotion(format!(
            "Release {release_name} does not go through environment {environment} (its environments: {}); promote to one of those",
            release.environments.join(", ")
        ))]
    }
}

/// Everything validation finds wrong with a Promotion into `environment`: its Release
/// (`release`, named `release_name`, if it exists) against the Environments, how the Promotion
/// fits the Release, the target Environment's own spec and the RollbackPolicy it names (if
/// found). What the controller cannot read is added by its observe step.
pub fn promotion_problems(
    namespace: &str,
    environment: &str,
    release: Option<(&str, &ReleaseSpec)>,
    envs: &BTreeMap<String, EnvironmentSpec>,
    policy: Option<(&str, &kiln_api::rollback_policy::RollbackPolicySpec)>,
) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    if let Some((name, spec)) = release {
        out.extend(self::release(spec, envs).into_iter().map(Problem::Spec));
        out.extend(promotion(environment, spec, name).into_iter().map(Problem::Spec));
        if let Some(env) = envs.get(environment) {
            out.extend(crate::tenancy::problem(
                namespace,
                environment,
                env,
                &crate::tenancy::release_resources(spec, environment, env),
            ));
        }
    }
    if let Some(errs) = environments(envs).remove(environment) {
        out.extend(errs.into_iter().map(|error| Problem::Environment { environment: environment.to_string(), error }));
    }
    if let Some((name, spec)) = policy
        && let Err(error) = crate::signals::validate_policy(spec)
    {
        out.push(Problem::Policy { policy: name.to_string(), error });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::fixtures;
    use kiln_api::release::Artifact;

    fn env(upstream: &[&str]) -> EnvironmentSpec {
        fixtures::environment("111111111111", upstream)
    }

    fn envs(list: &[(&str, &[&str])]) -> BTreeMap<String, EnvironmentSpec> {
        list.iter().map(|(n, ups)| (n.to_string(), env(ups))).collect()
    }

    fn lambda_release(environments: &[&str]) -> ReleaseSpec {
        fixtures::lambda_release("api-adapter", environments)
    }

    #[test]
    fn the_standard_graph_is_valid() {
        let e = envs(&[("dev", &[]), ("stg", &["dev"]), ("prod", &["stg"])]);
        assert!(environments(&e).values().all(Vec::is_empty));
        assert!(release(&lambda_release(&["dev", "stg", "prod"]), &e).is_empty());
    }

    #[test]
    fn cycles_and_unknown_upstreams_are_reported() {
        let e = envs(&[("dev", &["prod"]), ("stg", &["dev"]), ("prod", &["stg", "qa"])]);
        let errs = environments(&e);
        let prod: Vec<String> = errs["prod"].iter().map(|e| e.to_string()).collect();
        assert!(prod.iter().any(|m| m.contains("environment \"qa\" does not exist")), "{prod:?}");
        assert!(prod.iter().any(|m| m.contains("cycle: prod -> stg -> dev -> prod")), "{prod:?}");
        assert!(errs["dev"].iter().any(|e| matches!(e, SpecError::UpstreamCycle { .. })));
    }

    #[test]
    fn release_environments_must_exist_and_follow_upstreams() {
        let e = envs(&[("dev", &[]), ("stg", &["dev"]), ("prod", &["stg"])]);
        let errs = release(&lambda_release(&["dev", "prod", "qa"]), &e);
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(msgs.iter().any(|m| m.contains("prod requires upstream stg")), "{msgs:?}");
        assert!(
            msgs.iter().any(|m| m.contains("spec.environments[2]: environment \"qa\" does not exist")
                && m.contains("known: dev, prod, stg")),
            "{msgs:?}"
        );
    }

    #[test]
    fn ambiguous_artifacts_and_stray_overrides_are_reported() {
        let e = envs(&[("dev", &[])]);
        let mut r = lambda_release(&["dev"]);
        r.artifacts.push(Artifact { name: "other".into(), image: r.artifacts[0].image.clone(), zip: None });
        if let Some(l) = r.target.lambda.as_mut() {
            l.environment_overrides.insert("prod".into(), Default::default());
        }
        let msgs: Vec<String> = release(&r, &e).iter().map(|e| e.to_string()).collect();
        assert!(msgs.iter().any(|m| m.contains("several artifacts")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("\"prod\" is not in spec.environments")), "{msgs:?}");
    }

    #[test]
    fn sidecars_name_image_artifacts_and_other_containers() {
        use kiln_api::release::{EcsStrategy, Sidecar};
        let e = envs(&[("dev", &[])]);
        let mut r = kiln_api::fixtures::ecs_release("apps", "web", EcsStrategy::Canary, &["dev"]);
        if let Some(ecs) = r.target.ecs.as_mut() {
            ecs.sidecars = vec![
                Sidecar { container: "app".into(), artifact: "app".into() },
                Sidecar { container: "proxy".into(), artifact: "proxy".into() },
            ];
        }
        let msgs: Vec<String> = release(&r, &e).iter().map(|e| e.to_string()).collect();
        assert!(msgs.iter().any(|m| m.contains("sidecars[0]: app is the main container")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("sidecars[1]: no artifact named \"proxy\"")), "{msgs:?}");
        r.artifacts.push(kiln_api::fixtures::artifact("proxy", 2));
        if let Some(ecs) = r.target.ecs.as_mut() {
            ecs.sidecars.remove(0);
        }
        assert!(release(&r, &e).is_empty(), "{:?}", release(&r, &e));
    }

    #[test]
    fn promotion_must_target_a_release_environment() {
        let r = lambda_release(&["dev"]);
        assert!(promotion("dev", &r, "r").is_empty());
        assert!(promotion("prod", &r, "r")[0].to_string().contains("does not go through environment prod"));
    }
}
