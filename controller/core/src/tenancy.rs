//! Tenancy: which namespaces may release onto which AWS resources of an Environment.
//!
//! Teams share an Environment and its deploy role; nothing in AWS stops one team's Release from
//! naming another team's service or function. The platform team declares in the Environment
//! (`spec.tenants`) which namespaces may act on which resources, as ARN patterns (the form IAM
//! policies use), and kiln refuses everything else before its first AWS write: what a Release
//! names is checked at the gates, and what the snapshot resolved (the listener or rule, the
//! target groups) before Prepare.

use kiln_api::environment::{EnvironmentSpec, Tenant};
use kiln_api::promotion::Snapshot;
use kiln_api::release::ReleaseSpec;

use crate::plan::HookPoint;
use crate::problem::Problem;
use crate::target;

/// One AWS resource a Promotion would act on, as an ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    /// What it is, for messages: "ECS service", "Lambda function", …
    pub kind: &'static str,
    /// Its ARN.
    pub arn: String,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.arn)
    }
}

/// What the Release names in environment `env` (after its overrides), as ARNs in the
/// Environment's account and region: the ECS service and its listener when named by ARN, or
/// the Lambda function; and each hook's function or task definition family (a name given as an
/// ARN is taken as it is).
pub fn release_resources(release: &ReleaseSpec, env_name: &str, env: &EnvironmentSpec) -> Vec<Resource> {
    let (region, account) = (env.aws.region.as_str(), env.aws.account_id.as_str());
    let p = target::partition(region);
    let arn = |service: &str, resource: String| format!("arn:{p}:{service}:{region}:{account}:{resource}");
    let mut out = Vec::new();
    // The service or function as the queue keys it (by name or ARN alike, overrides applied).
    if let Some(arn) = target::of_release(release, env_name, env) {
        let kind = if release.target.ecs.is_some() { "ECS service" } else { "Lambda function" };
        out.push(Resource { kind, arn });
    }
    // A listener named by load balancer and port is checked once resolved (the snapshot).
    if let Some(a) =
        release.target.ecs.as_ref().and_then(|e| e.traffic_for(env_name)).and_then(|t| t.listener.arn.as_ref())
    {
        out.push(Resource { kind: "load balancer listener", arn: a.clone() });
    }
    let hooks = release
        .target
        .ecs
        .as_ref()
        .and_then(|e| e.hooks.as_ref())
        .or_else(|| release.target.lambda.as_ref().and_then(|l| l.hooks.as_ref()));
    for point in [HookPoint::PreTraffic, HookPoint::PostTraffic] {
        let hook = hooks.and_then(|h| match point {
            HookPoint::PreTraffic => h.pre_traffic.as_ref(),
            HookPoint::PostTraffic => h.post_traffic.as_ref(),
        });
        let Some(hook) = hook else { continue };
        // A name given as an ARN is taken as it is; a qualified one (function:alias,
        // family:revision) is checked as the function or family.
        let named = |service: &str, resource: &str, name: &str| {
            if name.starts_with("arn:") {
                name.to_string()
            } else {
                arn(service, format!("{resource}{}", name.split(':').next().unwrap_or(name)))
            }
        };
        if let Some(f) = &hook.lambda_function {
            out.push(Resource { kind: "hook Lambda function", arn: named("lambda", "function:", f) });
        }
        if let Some(td) = &hook.ecs_task_definition {
            out.push(Resource { kind: "hook task definition", arn: named("ecs", "task-definition/", td) });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What a snapshot resolved that the Release did not name by ARN: the listener or rule whose
/// weights kiln changes, and its target groups.
pub fn snapshot_resources(snapshot: &Snapshot) -> Vec<Resource> {
    let mut out = Vec::new();
    if let Some(ecs) = &snapshot.ecs {
        if let Some(l) = &ecs.listener_or_rule_arn {
            let kind =
                if l.contains(":listener-rule/") { "load balancer listener rule" } else { "load balancer listener" };
            out.push(Resource { kind, arn: l.clone() });
        }
        for tg in &ecs.listener_weights {
            out.push(Resource { kind: "target group", arn: tg.target_group_arn.clone() });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The resources of `resources` namespace `namespace` may not act on under `tenants` (None:
/// the Environment declares no tenants, so every namespace may act on everything).
pub fn refused(namespace: &str, tenants: Option<&[Tenant]>, resources: &[Resource]) -> Vec<Resource> {
    let Some(tenants) = tenants else { return Vec::new() };
    let mine: Vec<&Tenant> = tenants.iter().filter(|t| t.namespaces.iter().any(|n| glob(n, namespace))).collect();
    resources
        .iter()
        .filter(|r| !mine.iter().any(|t| t.resources.iter().any(|pattern| arn_matches(pattern, &r.arn))))
        .cloned()
        .collect()
}

/// The problem to report when `namespace` may not act on some of `resources` in `environment`.
pub fn problem(namespace: &str, environment: &str, env: &EnvironmentSpec, resources: &[Resource]) -> Option<Problem> {
    let refused = refused(namespace, env.tenants.as_deref(), resources);
    if refused.is_empty() {
        return None;
    }
    Some(Problem::Tenancy {
        environment: environment.to_string(),
        namespace: namespace.to_string(),
        resources: refused.iter().map(Resource::to_string).collect::<Vec<_>>().join(", "),
    })
}

/// Whether ARN pattern `pattern` matches `arn`: as in IAM resource ARNs, `*` matches any run of
/// characters (including `/` and `:`) and `?` any one character.
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    glob(pattern, arn)
}

/// `*` and `?` wildcards over the whole of `s`.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    // Iterative matching with backtracking to the last `*` (linear in practice).
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::fixtures;
    use kiln_api::promotion::{EcsSnapshot, TargetGroupWeight};

    fn tenant(namespaces: &[&str], resources: &[&str]) -> Tenant {
        Tenant {
            role_arn: None,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn arns(resources: &[Resource]) -> Vec<&str> {
        resources.iter().map(|r| r.arn.as_str()).collect()
    }

    #[test]
    fn wildcards_match_like_iam_resource_arns() {
        assert!(glob(
            "arn:aws:lambda:*:111111111111:function:api-*",
            "arn:aws:lambda:us-east-1:111111111111:function:api-adapter"
        ));
        assert!(!glob(
            "arn:aws:lambda:*:111111111111:function:api-*",
            "arn:aws:lambda:us-east-1:111111111111:function:web"
        ));
        assert!(glob("team-?", "team-a") && !glob("team-?", "team-ab"));
        assert!(glob("*", "") && glob("a*b*c", "abxbc") && !glob("a*b*c", "abxb"));
        assert!(glob("arn:aws:ecs:*:*:service/*/api-*", "arn:aws:ecs:eu-west-1:1:service/prod/api-web"));
        assert!(!glob("team-a", "team-a-b"), "a pattern without wildcards is exact");
    }

    #[test]
    fn a_release_names_its_service_listener_and_hooks_as_arns() {
        let mut ecs =
            fixtures::ecs_release("dev-cluster", "api-web", kiln_api::release::EcsStrategy::Canary, &["dev", "prod"]);
        if let Some(t) = ecs.target.ecs.as_mut() {
            t.hooks = serde_json::from_value(serde_json::json!({
                "preTraffic": {"ecsTaskDefinition": "api-migrate:3"},
                "postTraffic": {"lambdaFunction": "api-smoke:live"}
            }))
            .ok();
        }
        let env = fixtures::environment("111111111111", &[]);
        let got = release_resources(&ecs, "dev", &env);
        let region = &env.aws.region;
        let want = [
            format!("arn:aws:ecs:{region}:111111111111:service/dev-cluster/api-web"),
            format!("arn:aws:ecs:{region}:111111111111:task-definition/api-migrate"),
            format!("arn:aws:lambda:{region}:111111111111:function:api-smoke"),
        ];
        for w in &want {
            assert!(arns(&got).contains(&w.as_str()), "{w} in {got:?}");
        }

        let lambda = fixtures::lambda_release("api-adapter", &["dev", "prod"]);
        let got = release_resources(&lambda, "dev", &env);
        let name = lambda.target.lambda.as_ref().map(|l| l.function_name.clone()).unwrap_or_default();
        assert_eq!(arns(&got), vec![format!("arn:aws:lambda:{region}:111111111111:function:{name}").as_str()]);
    }

    #[test]
    fn only_the_resources_a_namespace_is_given_pass() {
        let fn_arn = "arn:aws:lambda:us-east-1:111111111111:function:api-adapter";
        let resources = vec![Resource { kind: "Lambda function", arn: fn_arn.into() }];
        assert!(refused("team-web", None, &resources).is_empty(), "no tenants declared: open");
        let tenants = vec![
            tenant(&["team-api", "team-api-*"], &["arn:aws:lambda:*:111111111111:function:api-*"]),
            tenant(&["team-web"], &["arn:aws:lambda:*:111111111111:function:web-*"]),
        ];
        assert!(refused("team-api", Some(&tenants), &resources).is_empty());
        assert!(refused("team-api-canary", Some(&tenants), &resources).is_empty());
        assert_eq!(refused("team-web", Some(&tenants), &resources), resources, "another team's function");
        assert_eq!(refused("sandbox", Some(&tenants), &resources), resources, "a namespace no tenant lists");
        assert_eq!(refused("team-api", Some(&[]), &resources), resources, "an empty list lets nobody in");
    }

    #[test]
    fn a_snapshot_names_the_resolved_listener_and_target_groups() {
        let snapshot = Snapshot {
            ecs: Some(EcsSnapshot {
                listener_or_rule_arn: Some(
                    "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/api/1/2/3".into(),
                ),
                listener_weights: vec![
                    TargetGroupWeight {
                        target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/api-blue/1".into(),
                        weight: 100,
                    },
                    TargetGroupWeight {
                        target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/api-green/2".into(),
                        weight: 0,
                    },
                ],
                ..EcsSnapshot::default()
            }),
            ..Snapshot::default()
        };
        let got = snapshot_resources(&snapshot);
        assert_eq!(got.len(), 3);
        assert!(got.iter().any(|r| r.kind == "load balancer listener rule"));
    }
}
