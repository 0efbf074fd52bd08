//! ALB listeners, rules and target groups: resolve what a Release names in an environment's
//! account, and read or set the weights of a weighted forward action.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple};
use kiln_api::promotion::TargetGroupWeight;
use kiln_api::release::{EcsTraffic, ListenerRef, RuleRef, TargetGroupRef};

use crate::error::{AwsError, Result, Scope, sdk};

/// The listener (or rule) and target groups of an [`EcsTraffic`], resolved to ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTraffic {
    /// The listener rule ARN if a rule is weighted, else the listener ARN.
    pub listener_or_rule_arn: String,
    /// The blue target group ARN.
    pub blue: String,
    /// The green target group ARN.
    pub green: String,
}

/// Resolves names, ports, priorities and tags to ARNs in `scope`'s account.
pub async fn resolve(elb: &Client, scope: &Scope, traffic: &EcsTraffic) -> Result<ResolvedTraffic> {
    let listener = resolve_listener(elb, scope, &traffic.listener).await?;
    let listener_or_rule_arn = match &traffic.rule {
        Some(rule) => resolve_rule(elb, scope, &listener, rule).await?,
        None => listener,
    };
    let blue = resolve_target_group(elb, scope, &traffic.blue_target_group).await?;
    let green = resolve_target_group(elb, scope, &traffic.green_target_group).await?;
    if blue == green {
        return Err(AwsError::Invalid {
            message: format!("blue and green target groups are the same ({blue}): name two different target groups"),
            scope: scope.clone(),
        });
    }
    Ok(ResolvedTraffic { listener_or_rule_arn, blue, green })
}

async fn resolve_listener(elb: &Client, scope: &Scope, r: &ListenerRef) -> Result<String> {
    if let Some(arn) = &r.arn {
        return match elb.describe_listeners().listener_arns(arn).send().await {
            Ok(_) => Ok(arn.clone()),
            Err(e) => Err(not_found_or(e, "listener", arn, scope, "DescribeListeners")),
        };
    }
    let (Some(lb), Some(port)) = (&r.load_balancer_name, r.port) else {
        return Err(AwsError::Invalid {
            message: "listener: set either arn, or loadBalancerName and port".into(),
            scope: scope.clone(),
        });
    };
    let lbs = match elb.describe_load_balancers().names(lb).send().await {
        Ok(out) => out,
        Err(e) => return Err(not_found_or(e, "load balancer", lb, scope, "DescribeLoadBalancers")),
    };
    let lb_arn = lbs
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn())
        .ok_or_else(|| AwsError::NotFound { kind: "load balancer", name: lb.clone(), scope: scope.clone() })?;
    let mut marker = None;
    loop {
        let out = elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .set_marker(marker)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "DescribeListeners"))?;
        if let Some(l) = out.listeners().iter().find(|l| l.port() == Some(port)) {
            return l.listener_arn().map(str::to_string).ok_or(AwsError::Incomplete {
                service: "elasticloadbalancing",
                operation: "DescribeListeners",
                field: "ListenerArn",
            });
        }
        marker = out.next_marker().map(str::to_string);
        if marker.is_none() {
            return Err(AwsError::NotFound {
                kind: "listener",
                name: format!("{lb} port {port}"),
                scope: scope.clone(),
            });
        }
    }
}

async fn resolve_rule(elb: &Client, scope: &Scope, listener: &str, r: &RuleRef) -> Result<String> {
    if let Some(arn) = &r.arn {
        return match elb.describe_rules().rule_arns(arn).send().await {
            Ok(_) => Ok(arn.clone()),
            Err(e) => Err(not_found_or(e, "listener rule", arn, scope, "DescribeRules")),
        };
    }
    // Every rule on the listener (paged), then the one the reference names.
    let mut rules = Vec::new();
    let mut marker = None;
    loop {
        let out = elb
            .describe_rules()
            .listener_arn(listener)
            .set_marker(marker)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "DescribeRules"))?;
        rules.extend(out.rules().iter().filter(|x| !x.is_default().unwrap_or(false)).cloned());
        marker = out.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    if let Some(wanted) = r.tags.as_ref().filter(|t| !t.is_empty()) {
        let arns: Vec<String> = rules.iter().filter_map(|x| x.rule_arn().map(str::to_string)).collect();
        return exactly_one_tagged(elb, scope, "listener rule", &arns, wanted).await;
    }
    let priority = r.priority.map(|p| p.to_string()).unwrap_or_default();
    match rules.iter().find(|x| x.priority() == Some(priority.as_str())) {
        Some(rule) => rule.rule_arn().map(str::to_string).ok_or(AwsError::Incomplete {
            service: "elasticloadbalancing",
            operation: "DescribeRules",
            field: "RuleArn",
        }),
        None => Err(AwsError::NotFound {
            kind: "listener rule",
            name: format!("priority {priority} on {listener}"),
            scope: scope.clone(),
        }),
    }
}

/// Resolves a target group by ARN, name or tags (exactly one must match the tags).
pub async fn resolve_target_group(elb: &Client, scope: &Scope, r: &TargetGroupRef) -> Result<String> {
    if let Some(arn) = &r.arn {
        return match elb.describe_target_groups().target_group_arns(arn).send().await {
            Ok(_) => Ok(arn.clone()),
            Err(e) => Err(not_found_or(e, "target group", arn, scope, "DescribeTargetGroups")),
        };
    }
    if let Some(name) = &r.name {
        let out = match elb.describe_target_groups().names(name).send().await {
            Ok(out) => out,
            Err(e) => return Err(not_found_or(e, "target group", name, scope, "DescribeTargetGroups")),
        };
        return out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .map(str::to_string)
            .ok_or_else(|| AwsError::NotFound { kind: "target group", name: name.clone(), scope: scope.clone() });
    }
    let wanted = r.tags.clone().unwrap_or_default();
    if wanted.is_empty() {
        return Err(AwsError::Invalid { message: "target group: set name, arn or tags".into(), scope: scope.clone() });
    }
    // Every target group in the region, then the one whose tags match.
    let mut arns = Vec::new();
    let mut marker = None;
    loop {
        let out = elb
            .describe_target_groups()
            .set_marker(marker)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "DescribeTargetGroups"))?;
        arns.extend(out.target_groups().iter().filter_map(|t| t.target_group_arn().map(str::to_string)));
        marker = out.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    exactly_one_tagged(elb, scope, "target group", &arns, &wanted).await
}

/// The one resource among `arns` that carries every tag in `wanted` (tags read 20 ARNs at a
/// time, the API's limit); none or several is an error naming the tags.
async fn exactly_one_tagged(
    elb: &Client,
    scope: &Scope,
    kind: &'static str,
    arns: &[String],
    wanted: &BTreeMap<String, String>,
) -> Result<String> {
    let label = describe_tags(wanted);
    let mut matches = Vec::new();
    for chunk in arns.chunks(20) {
        let out = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "DescribeTags"))?;
        for d in out.tag_descriptions() {
            let tags: BTreeMap<&str, &str> =
                d.tags().iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))).collect();
            if wanted.iter().all(|(k, v)| tags.get(k.as_str()) == Some(&v.as_str()))
                && let Some(arn) = d.resource_arn()
            {
                matches.push(arn.to_string());
            }
        }
    }
    match matches.len() {
        0 => Err(AwsError::NotFound { kind, name: format!("with tags {label}"), scope: scope.clone() }),
        1 => Ok(matches.remove(0)),
        n => Err(AwsError::Invalid {
            message: format!("{n} {kind}s have tags {label}; tags must identify exactly one"),
            scope: scope.clone(),
        }),
    }
}

fn describe_tags(tags: &BTreeMap<String, String>) -> String {
    tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn not_found_or<E>(
    e: aws_sdk_elasticloadbalancingv2::error::SdkError<E, aws_sdk_elasticloadbalancingv2::config::http::HttpResponse>,
    kind: &'static str,
    name: &str,
    scope: &Scope,
    operation: &'static str,
) -> AwsError
where
    E: aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let err = crate::error::from_sdk("elasticloadbalancing", operation, e);
    match err.code() {
        Some(c) if c.contains("NotFound") || c == "ValidationError" => {
            AwsError::NotFound { kind, name: name.to_string(), scope: scope.clone() }
        }
        _ => err,
    }
}

fn is_rule(arn: &str) -> bool {
    arn.contains(":listener-rule/")
}

/// The forward action of a listener's default actions or a rule's actions.
async fn actions(elb: &Client, arn: &str) -> Result<Vec<Action>> {
    if is_rule(arn) {
        let out =
            elb.describe_rules().rule_arns(arn).send().await.map_err(sdk("elasticloadbalancing", "DescribeRules"))?;
        Ok(out.rules().first().map(|r| r.actions().to_vec()).unwrap_or_default())
    } else {
        let out = elb
            .describe_listeners()
            .listener_arns(arn)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "DescribeListeners"))?;
        Ok(out.listeners().first().map(|l| l.default_actions().to_vec()).unwrap_or_default())
    }
}

/// The target groups and weights the listener (or rule) forwards to. A plain forward to one
/// target group reads as weight 100 (writing it back as a weighted forward is equivalent).
pub async fn weights(elb: &Client, arn: &str) -> Result<Vec<TargetGroupWeight>> {
    let actions = actions(elb, arn).await?;
    let Some(fwd) = actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)) else {
        return Ok(Vec::new());
    };
    if let Some(cfg) = fwd.forward_config()
        && !cfg.target_groups().is_empty()
    {
        return Ok(cfg
            .target_groups()
            .iter()
            .filter_map(|t| {
                Some(TargetGroupWeight { target_group_arn: t.target_group_arn()?.to_string(), weight: t.weight()? })
            })
            .collect());
    }
    Ok(fwd
        .target_group_arn()
        .map(|a| vec![TargetGroupWeight { target_group_arn: a.to_string(), weight: 100 }])
        .unwrap_or_default())
}

/// Sets the forward action's weights, keeping its stickiness and every other action as is.
pub async fn set_weights(elb: &Client, arn: &str, weights: &[TargetGroupWeight]) -> Result<()> {
    let current = actions(elb, arn).await?;
    let tuples: Vec<TargetGroupTuple> = weights
        .iter()
        .map(|w| TargetGroupTuple::builder().target_group_arn(&w.target_group_arn).weight(w.weight).build())
        .collect();
    let mut replaced = false;
    let mut new_actions = Vec::with_capacity(current.len().max(1));
    for a in current {
        if a.r#type() == Some(&ActionTypeEnum::Forward) && !replaced {
            replaced = true;
            let stickiness = a.forward_config().and_then(|c| c.target_group_stickiness_config()).cloned();
            let fwd = ForwardActionConfig::builder()
                .set_target_groups(Some(tuples.clone()))
                .set_target_group_stickiness_config(stickiness)
                .build();
            new_actions.push(
                Action::builder().r#type(ActionTypeEnum::Forward).forward_config(fwd).set_order(a.order()).build(),
            );
        } else {
            new_actions.push(a);
        }
    }
    if !replaced {
        let fwd = ForwardActionConfig::builder().set_target_groups(Some(tuples)).build();
        new_actions.push(Action::builder().r#type(ActionTypeEnum::Forward).forward_config(fwd).build());
    }
    if is_rule(arn) {
        elb.modify_rule()
            .rule_arn(arn)
            .set_actions(Some(new_actions))
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "ModifyRule"))?;
    } else {
        elb.modify_listener()
            .listener_arn(arn)
            .set_default_actions(Some(new_actions))
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "ModifyListener"))?;
    }
    Ok(())
}
