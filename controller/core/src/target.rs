//! The AWS resource a Promotion drives, as one canonical ARN: the key Promotions queue by.
//!
//! Two Promotions that drive one ECS service or one Lambda function must never run at once,
//! whatever namespace, Release, service name or Environment they come from (two Environments may
//! point at one account and region; two namespaces may both be given a resource). So the queue
//! is keyed by what AWS sees: the account, the region and the resource, after the Release's
//! per-environment overrides, written the same way whether the Release names it by name or by
//! ARN. Once a Promotion has captured its snapshot its key is fixed (recorded in
//! `status.target`): a later edit of the Environment or the Release does not move a deployment
//! in flight to another queue.

use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{PromotionStatus, Snapshot};
use kiln_api::release::ReleaseSpec;

/// The partition of `region` (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The parts of an ARN: (region, account, resource), or None if `s` is not one.
fn arn_parts(s: &str) -> Option<(&str, &str, &str)> {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(_service), Some(region), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some((region, account, resource))
}

/// The last `/`-separated segment: a cluster or service name out of its ARN or resource path.
fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// ECS service `service` of cluster `cluster` (each a name or an ARN; a service ARN in the old
/// format has no cluster) in `region` and `account`, canonically:
/// `arn:<partition>:ecs:<region>:<account>:service/<cluster name>/<service name>`. A service
/// named by ARN keeps the ARN's region and account (ECS acts where the ARN says).
pub fn ecs_service(region: &str, account: &str, cluster: &str, service: &str) -> String {
    let (region, account, name) = match arn_parts(service) {
        Some((r, a, resource)) => (r, a, last_segment(resource)),
        None => (region, account, service),
    };
    let cluster = match arn_parts(cluster) {
        Some((_, _, resource)) => last_segment(resource),
        None => cluster,
    };
    format!("arn:{}:ecs:{region}:{account}:service/{cluster}/{name}", partition(region))
}

/// Lambda function `function` (a name, an ARN or a partial ARN `account:function:name`, any
/// of them possibly qualified) in `region` and `account`, canonically:
/// `arn:<partition>:lambda:<region>:<account>:function:<name>` (unqualified: an alias or
/// version is a view of the one function).
pub fn lambda_function(region: &str, account: &str, function: &str) -> String {
    let (region, account, rest) = match arn_parts(function) {
        Some((r, a, resource)) => (r, a, resource.strip_prefix("function:").unwrap_or(resource)),
        None => match function.split_once(":function:") {
            Some((a, rest)) => (region, a, rest),
            None => (region, account, function),
        },
    };
    let name = rest.split(':').next().unwrap_or(rest);
    format!("arn:{}:lambda:{region}:{account}:function:{name}", partition(region))
}

/// What `release` drives in environment `env_name` (`env`): its ECS service or its Lambda
/// function. None if the Release names neither (the schema requires one).
pub fn of_release(release: &ReleaseSpec, env_name: &str, env: &EnvironmentSpec) -> Option<String> {
    let (region, account) = (env.aws.region.as_str(), env.aws.account_id.as_str());
    if let Some(ecs) = &release.target.ecs {
        return Some(ecs_service(region, account, ecs.cluster_for(env_name), ecs.service_for(env_name)));
    }
    let lambda = release.target.lambda.as_ref()?;
    Some(lambda_function(region, account, lambda.function_for(env_name)))
}

/// What a snapshot was taken of (a Promotion in flight from before kiln recorded
/// `status.target`).
pub fn of_snapshot(snapshot: &Snapshot) -> Option<String> {
    let (region, account) = (snapshot.region.as_deref()?, snapshot.account_id.as_deref()?);
    if let Some(ecs) = &snapshot.ecs {
        return Some(ecs_service(region, account, ecs.cluster.as_deref()?, ecs.service.as_deref()?));
    }
    let lambda = snapshot.lambda.as_ref()?;
    Some(lambda_function(region, account, lambda.function_name.as_deref()?))
}

/// The key a Promotion queues by. Fixed once the snapshot is taken (what was recorded then, or
/// what the snapshot names); before that, what the Release and Environment resolve to now
/// (what was recorded last if either is gone).
pub fn of_promotion(
    status: &PromotionStatus,
    release: Option<&ReleaseSpec>,
    env_name: &str,
    env: Option<&EnvironmentSpec>,
) -> Option<String> {
    if let Some(snapshot) = &status.previous {
        return status.target.clone().or_else(|| of_snapshot(snapshot));
    }
    match (release, env) {
        (Some(r), Some(e)) => of_release(r, env_name, e).or_else(|| status.target.clone()),
        _ => status.target.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::fixtures;
    use kiln_api::promotion::{EcsSnapshot, LambdaSnapshot};
    use kiln_api::release::{EcsOverride, EcsStrategy, LambdaOverride};

    const ACCOUNT: &str = "111111111111";

    #[test]
    fn an_ecs_service_is_the_same_key_by_name_or_by_arn() {
        let want = "arn:aws:ecs:us-east-1:111111111111:service/apps/web";
        for (cluster, service) in [
            ("apps", "web"),
            ("arn:aws:ecs:us-east-1:111111111111:cluster/apps", "web"),
            ("apps", "arn:aws:ecs:us-east-1:111111111111:service/apps/web"),
            ("apps", "arn:aws:ecs:us-east-1:111111111111:service/web"),
        ] {
            assert_eq!(ecs_service("us-east-1", ACCOUNT, cluster, service), want, "{cluster} {service}");
        }
        // Another account, region or cluster is another key.
        assert_ne!(ecs_service("us-east-1", "222222222222", "apps", "web"), want);
        assert_ne!(ecs_service("eu-west-1", ACCOUNT, "apps", "web"), want);
        assert_ne!(ecs_service("us-east-1", ACCOUNT, "other", "web"), want);
        assert_eq!(
            ecs_service("cn-north-1", ACCOUNT, "apps", "web"),
            "arn:aws-cn:ecs:cn-north-1:111111111111:service/apps/web"
        );
    }

    #[test]
    fn a_lambda_function_is_the_same_key_however_it_is_written() {
        let want = "arn:aws:lambda:us-east-1:111111111111:function:ingest";
        for f in [
            "ingest",
            "ingest:live",
            "arn:aws:lambda:us-east-1:111111111111:function:ingest",
            "arn:aws:lambda:us-east-1:111111111111:function:ingest:7",
            "111111111111:function:ingest",
        ] {
            assert_eq!(lambda_function("us-east-1", ACCOUNT, f), want, "{f}");
        }
        assert_ne!(lambda_function("us-east-1", ACCOUNT, "ingest-b"), want);
    }

    #[test]
    fn overrides_apply_and_the_snapshot_fixes_the_key() {
        let env = fixtures::environment(ACCOUNT, &[]);
        let region = env.aws.region.clone();
        let mut release = fixtures::ecs_release("apps", "web", EcsStrategy::Canary, &["dev", "prod"]);
        if let Some(ecs) = release.target.ecs.as_mut() {
            ecs.environment_overrides
                .insert("prod".into(), EcsOverride { service: Some("web-prod".into()), ..EcsOverride::default() });
        }
        let dev = of_release(&release, "dev", &env);
        let prod = of_release(&release, "prod", &env);
        assert_eq!(dev.as_deref(), Some(format!("arn:aws:ecs:{region}:{ACCOUNT}:service/apps/web").as_str()));
        assert_eq!(prod.as_deref(), Some(format!("arn:aws:ecs:{region}:{ACCOUNT}:service/apps/web-prod").as_str()));

        // Waiting: what the Release resolves to now, not what was recorded.
        let mut status =
            PromotionStatus { target: Some("arn:aws:ecs:x:1:service/old/old".into()), ..Default::default() };
        assert_eq!(of_promotion(&status, Some(&release), "dev", Some(&env)), dev);
        assert_eq!(of_promotion(&status, None, "dev", Some(&env)), status.target, "the Release is gone");
        // In flight: what was recorded, whatever the Release says now.
        status.previous = Some(Snapshot::default());
        assert_eq!(of_promotion(&status, Some(&release), "dev", Some(&env)), status.target);
        // In flight from before the key was recorded: the snapshot's.
        status.target = None;
        status.previous = Some(Snapshot {
            account_id: Some(ACCOUNT.into()),
            region: Some(region.clone()),
            ecs: Some(EcsSnapshot { cluster: Some("apps".into()), service: Some("web".into()), ..Default::default() }),
            ..Snapshot::default()
        });
        assert_eq!(of_promotion(&status, Some(&release), "prod", Some(&env)), dev);
        status.previous = Some(Snapshot {
            account_id: Some(ACCOUNT.into()),
            region: Some(region.clone()),
            lambda: Some(LambdaSnapshot {
                function_name: Some("ingest".into()),
                alias: Some("live".into()),
                version: "3".into(),
                ..LambdaSnapshot::default()
            }),
            ..Snapshot::default()
        });
        let fun = format!("arn:aws:lambda:{region}:{ACCOUNT}:function:ingest");
        assert_eq!(of_promotion(&status, None, "prod", None).as_deref(), Some(fun.as_str()));

        let mut lambda = fixtures::lambda_release("ingest", &["dev", "prod"]);
        if let Some(l) = lambda.target.lambda.as_mut() {
            l.environment_overrides.insert(
                "prod".into(),
                LambdaOverride { function_name: Some("ingest-prod".into()), ..Default::default() },
            );
        }
        let f = of_release(&lambda, "prod", &env).unwrap_or_default();
        assert!(f.ends_with(":function:ingest-prod"), "{f}");
    }
}
