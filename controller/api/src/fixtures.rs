//! Valid objects for tests (feature `fixtures`; never in the controller or the CLI binaries).
//!
//! Each function returns the smallest object the schema and kiln's validation accept, with
//! defaults a test changes by struct update (`ReleaseSpec { environments, ..lambda_release("api", &[]) }`)
//! instead of writing the whole literal again; `serde_json::to_value(Release::new(name, spec))`
//! is the JSON a test sends to an API server.

use crate::environment::{AwsTarget, BakeSettings, PromotionRules};
use crate::release::{
    Artifact, EcsStrategy, EcsTarget, EcsTraffic, LambdaStrategy, LambdaTarget, ListenerRef, Target, TargetGroupRef,
};
use crate::{EnvironmentSpec, ReleaseSpec, ReleaseType};

/// The region fixtures live in (moto's default too).
pub const REGION: &str = "us-east-1";
/// The account images are built and pushed in (the dev account).
pub const BUILD_ACCOUNT: &str = "111111111111";

/// A sha256 digest (64 hex characters) that differs for every `n`.
pub fn digest(n: u32) -> String {
    format!("{n:x}").repeat(64).chars().take(64).collect()
}

/// A digest-pinned image of version `n` in the build account's ECR.
pub fn image(repo: &str, n: u32) -> String {
    format!("{BUILD_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}@sha256:{}", digest(n))
}

/// An artifact `name`: [`image`] `n` of the repository named like it.
pub fn artifact(name: &str, n: u32) -> Artifact {
    Artifact { name: name.into(), image: Some(image(name, n)), zip: None }
}

/// The role kiln assumes in `account_id` (`kiln-deploy`, as the docs and the test kit name it).
pub fn role_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/kiln-deploy")
}

/// An environment's AWS account in [`REGION`], reached through [`role_arn`].
pub fn aws_target(account_id: &str) -> AwsTarget {
    AwsTarget {
        account_id: account_id.into(),
        region: REGION.into(),
        role_arn: role_arn(account_id),
        external_id: None,
        session_tags: false,
    }
}

/// An Environment in `account_id` after `upstream`: no approvals, no bake, no policy, the
/// default progress deadline.
pub fn environment(account_id: &str, upstream: &[&str]) -> EnvironmentSpec {
    EnvironmentSpec {
        upstream: upstream.iter().map(|u| u.to_string()).collect(),
        aws: aws_target(account_id),
        promotion: PromotionRules::default(),
        bake: BakeSettings::default(),
        progress_deadline: "10m".into(),
        rollback_policy_ref: None,
        evidence: None,
        tenants: None,
        container_images: Default::default(),
    }
}

/// A Release of `service` version v1.0.0 with one artifact (`fn`, [`image`] 1) for `target`.
pub fn release(service: &str, target: Target, environments: &[&str]) -> ReleaseSpec {
    ReleaseSpec {
        service: service.into(),
        version: "v1.0.0".into(),
        release_type: ReleaseType::Standard,
        change_ref: None,
        commit: None,
        author: None,
        artifacts: vec![Artifact { name: "fn".into(), image: Some(image(service, 1)), zip: None }],
        target,
        environments: environments.iter().map(|e| e.to_string()).collect(),
        progress_deadline: None,
    }
}

/// A Lambda target: function `function`, alias `live`, all at once.
pub fn lambda_target(function: &str) -> LambdaTarget {
    LambdaTarget {
        function_name: function.into(),
        alias: "live".into(),
        artifact: None,
        strategy: LambdaStrategy::AllAtOnce,
        steps: None,
        step_bake: None,
        hooks: None,
        environment_overrides: Default::default(),
    }
}

/// A Release of the Lambda function named like `service` (see [`lambda_target`]).
pub fn lambda_release(service: &str, environments: &[&str]) -> ReleaseSpec {
    let target = Target { ecs: None, lambda: Some(lambda_target(service)) };
    release(service, target, environments)
}

/// Listener `<prefix>-alb:80` weighting target groups `<prefix>-blue` and `<prefix>-green`.
pub fn ecs_traffic(prefix: &str) -> EcsTraffic {
    let tg = |colour: &str| TargetGroupRef { name: Some(format!("{prefix}-{colour}")), arn: None, tags: None };
    EcsTraffic {
        listener: ListenerRef { arn: None, load_balancer_name: Some(format!("{prefix}-alb")), port: Some(80) },
        rule: None,
        blue_target_group: tg("blue"),
        green_target_group: tg("green"),
    }
}

/// An ECS target: service `service` in cluster `cluster`, container `app`, with `strategy`
/// (listener and target groups from [`ecs_traffic`] unless the strategy is `rolling`).
pub fn ecs_target(cluster: &str, service: &str, strategy: EcsStrategy) -> EcsTarget {
    EcsTarget {
        cluster: cluster.into(),
        service: service.into(),
        container: "app".into(),
        artifact: None,
        strategy,
        steps: matches!(strategy, EcsStrategy::Canary | EcsStrategy::Linear).then(|| vec![10, 100]),
        step_bake: None,
        traffic: (!matches!(strategy, EcsStrategy::Rolling | EcsStrategy::CodeDeploy)).then(|| ecs_traffic(service)),
        code_deploy: None,
        hooks: None,
        sidecars: Vec::new(),
        environment_overrides: Default::default(),
    }
}

/// A Release of the ECS service named like `service` in cluster `cluster` (see [`ecs_target`]),
/// its artifact named after the container.
pub fn ecs_release(cluster: &str, service: &str, strategy: EcsStrategy, environments: &[&str]) -> ReleaseSpec {
    let target = Target { ecs: Some(ecs_target(cluster, service, strategy)), lambda: None };
    let mut spec = release(service, target, environments);
    spec.artifacts[0].name = "app".into();
    spec
}
