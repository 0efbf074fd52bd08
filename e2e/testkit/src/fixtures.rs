//! What a promotion acts on, built in one [`Account`], and readers for what kiln changed.
//!
//! - [`EcsFixture`]: VPC, ALB listener :80 forwarding 100/0 to blue/green target groups, a cluster,
//!   an ECS service with the `EXTERNAL` deployment controller and a PRIMARY baseline task set on
//!   blue. Read back with [`listener_weights`], [`task_sets`], [`service_task_definition`].
//! - [`LambdaFixture`]: a function (zip or container image), version 1 published and an alias on
//!   it. Read back with [`lambda_alias`], [`lambda_versions`].
//! - Alarms: [`put_alarm`], [`set_alarm_state`], [`alarm_state`].
//!
//! Names are prefixed by the caller so fixtures in one moto do not collide. The readers take
//! [`Clients`] and read AWS directly (not through kiln's adapters), so they check kiln rather than
//! repeat it.

use std::collections::BTreeMap;

use aws_sdk_ecs::error::DisplayErrorContext;
use kiln_aws::credentials::Clients;

use crate::account::Account;
use crate::moto::Vpc;

/// `error` from the SDK call `what`, in `clients`' account, with the SDK's full error context.
fn sdk<E: std::error::Error>(what: impl std::fmt::Display, clients: &Clients) -> impl FnOnce(E) -> String {
    let scope = format!("account {} region {}", clients.scope.account_id, clients.scope.region);
    move |e| format!("{what} ({scope}): {}", DisplayErrorContext(e))
}

/// `what` was missing from an answer.
fn missing(what: &str, clients: &Clients) -> String {
    format!("{what} missing in moto's answer (account {} region {})", clients.scope.account_id, clients.scope.region)
}

/// Checks a fixture name prefix: 1-26 letters, digits and hyphens, not starting or ending with a
/// hyphen (ELB names are at most 32 characters: `<prefix>-green` must fit).
fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=26).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !prefix.starts_with('-')
        && !prefix.ends_with('-');
    if ok { Ok(()) } else { Err(format!("fixture prefix {prefix:?}: use 1-26 letters, digits and inner hyphens")) }
}

/// An ECS service released by weights on an ALB listener, in one account:
///
/// - a VPC with two subnets and a security group (named `<prefix>`);
/// - ALB `<prefix>-alb` with a listener on port 80 whose default action forwards to target groups
///   `<prefix>-blue` (weight 100) and `<prefix>-green` (weight 0), both tagged
///   `kiln.test/color=<prefix>-<color>`;
/// - cluster `<prefix>-cluster`; task definition family `<prefix>-web` (Fargate, awsvpc) with the
///   caller's container (image [`EcsFixture::BASELINE_IMAGE`], port 8080, env `MODE=blue`) and a
///   non-essential `sidecar` ([`EcsFixture::SIDECAR_IMAGE`]);
/// - service `<prefix>-svc` with deploymentController `EXTERNAL` and desired count 0 (moto fails
///   starting awsvpc tasks; task sets and weights are what kiln changes);
/// - a baseline task set (external ID `initial`, Fargate, scale 100 %) on the blue target group,
///   made PRIMARY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsFixture {
    /// The account ID it lives in.
    pub account_id: String,
    /// The region it lives in.
    pub region: String,
    /// The name prefix.
    pub prefix: String,
    /// Cluster name (`<prefix>-cluster`).
    pub cluster: String,
    /// Service name (`<prefix>-svc`).
    pub service: String,
    /// The container kiln puts the new image in.
    pub container: String,
    /// The container's port (8080), registered with the target groups.
    pub container_port: i32,
    /// Load balancer name (`<prefix>-alb`).
    pub lb_name: String,
    /// Load balancer ARN.
    pub lb_arn: String,
    /// Listener ARN.
    pub listener_arn: String,
    /// Listener port (80).
    pub listener_port: i32,
    /// Blue target group name (`<prefix>-blue`).
    pub blue_tg_name: String,
    /// Blue target group ARN (weight 100 at start).
    pub blue_tg: String,
    /// Green target group name (`<prefix>-green`).
    pub green_tg_name: String,
    /// Green target group ARN (weight 0 at start).
    pub green_tg: String,
    /// The baseline task set's ARN (PRIMARY, external ID `initial`).
    pub blue_task_set: String,
    /// The baseline task definition's ARN.
    pub task_definition: String,
    /// The network the task sets use.
    pub vpc: Vpc,
}

/// The names an [`EcsFixture`] is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsNames {
    /// A short name for the VPC and security group.
    pub prefix: String,
    /// The cluster.
    pub cluster: String,
    /// The service (its task definition family is `<service>-web`).
    pub service: String,
    /// The load balancer.
    pub load_balancer: String,
    /// The listener port.
    pub listener_port: i32,
    /// The blue target group (weight 100 at start).
    pub blue_target_group: String,
    /// The green target group (weight 0 at start).
    pub green_target_group: String,
}

impl EcsNames {
    /// `<prefix>-cluster`, `<prefix>-svc`, `<prefix>-alb` on port 80, `<prefix>-blue`/`-green`.
    pub fn from_prefix(prefix: &str) -> EcsNames {
        EcsNames {
            prefix: prefix.into(),
            cluster: format!("{prefix}-cluster"),
            service: format!("{prefix}-svc"),
            load_balancer: format!("{prefix}-alb"),
            listener_port: 80,
            blue_target_group: format!("{prefix}-blue"),
            green_target_group: format!("{prefix}-green"),
        }
    }
}

impl EcsFixture {
    /// The baseline image of the caller's container.
    pub const BASELINE_IMAGE: &'static str = "registry.example/app:v1";
    /// The sidecar container's image, pinned by digest as an Environment's default
    /// `containerImages` policy requires (kiln leaves a container the Release does not list
    /// alone).
    pub const SIDECAR_IMAGE: &'static str =
        "registry.example/proxy@sha256:7777777777777777777777777777777777777777777777777777777777777777";
    /// The tag key on both target groups (value `<prefix>-blue` / `<prefix>-green`).
    pub const COLOR_TAG: &'static str = "kiln.test/color";

    /// Builds the fixture in `account` with names prefixed by `prefix` (1-26 letters, digits,
    /// hyphens) and the main container named `container` (not `sidecar`).
    pub async fn create(account: &Account, prefix: &str, container: &str) -> Result<EcsFixture, String> {
        check_prefix(prefix)?;
        EcsFixture::create_named(account, &EcsNames::from_prefix(prefix), container).await
    }

    /// Builds the fixture with the given names (e.g. those a manifest in `examples/` uses).
    pub async fn create_named(account: &Account, names: &EcsNames, container: &str) -> Result<EcsFixture, String> {
        use aws_sdk_ecs::types as ecs;
        use aws_sdk_elasticloadbalancingv2::types as elb;
        let prefix = names.prefix.as_str();
        if container.is_empty() || container == "sidecar" {
            return Err(format!("container name {container:?}: the fixture's sidecar is named \"sidecar\""));
        }
        let c = &account.clients;
        let vpc = account.vpc(prefix)?;

        let lb_name = names.load_balancer.clone();
        let lb = c
            .elb
            .create_load_balancer()
            .name(&lb_name)
            .set_subnets(Some(vpc.subnets.clone()))
            .security_groups(&vpc.security_group)
            .r#type(elb::LoadBalancerTypeEnum::Application)
            .send()
            .await
            .map_err(sdk(format!("ELB CreateLoadBalancer {lb_name}"), c))?;
        let lb_arn = lb
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .ok_or_else(|| missing("CreateLoadBalancer LoadBalancerArn", c))?
            .to_string();

        let mut tgs = Vec::new();
        for name in [&names.blue_target_group, &names.green_target_group] {
            let name = name.clone();
            let tg = c
                .elb
                .create_target_group()
                .name(&name)
                .protocol(elb::ProtocolEnum::Http)
                .port(8080)
                .vpc_id(&vpc.id)
                .target_type(elb::TargetTypeEnum::Ip)
                .tags(elb::Tag::builder().key(Self::COLOR_TAG).value(&name).build())
                .send()
                .await
                .map_err(sdk(format!("ELB CreateTargetGroup {name}"), c))?;
            let arn = tg
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .ok_or_else(|| missing("CreateTargetGroup TargetGroupArn", c))?
                .to_string();
            tgs.push((name, arn));
        }
        let [(blue_tg_name, blue_tg), (green_tg_name, green_tg)] = <[(String, String); 2]>::try_from(tgs)
            .map_err(|_| account.in_account("two target groups were not created"))?;

        let listener_port = names.listener_port;
        let fwd = elb::ForwardActionConfig::builder()
            .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&blue_tg).weight(100).build())
            .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&green_tg).weight(0).build())
            .build();
        let listener = c
            .elb
            .create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(elb::ProtocolEnum::Http)
            .port(listener_port)
            .default_actions(elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).forward_config(fwd).build())
            .send()
            .await
            .map_err(sdk(format!("ELB CreateListener on {lb_name}:{listener_port}"), c))?;
        let listener_arn = listener
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .ok_or_else(|| missing("CreateListener ListenerArn", c))?
            .to_string();

        let cluster = names.cluster.clone();
        c.ecs
            .create_cluster()
            .cluster_name(&cluster)
            .send()
            .await
            .map_err(sdk(format!("ECS CreateCluster {cluster}"), c))?;
        let container_port = 8080;
        let family = format!("{}-web", names.service);
        let td = c
            .ecs
            .register_task_definition()
            .family(&family)
            .network_mode(ecs::NetworkMode::Awsvpc)
            .requires_compatibilities(ecs::Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .container_definitions(
                ecs::ContainerDefinition::builder()
                    .name(container)
                    .image(Self::BASELINE_IMAGE)
                    // moto sums container memory when placing tasks (it fails without it).
                    .memory(384)
                    .cpu(128)
                    .essential(true)
                    .port_mappings(ecs::PortMapping::builder().container_port(container_port).build())
                    .environment(ecs::KeyValuePair::builder().name("MODE").value("blue").build())
                    .build(),
            )
            .container_definitions(
                ecs::ContainerDefinition::builder()
                    .name("sidecar")
                    .image(Self::SIDECAR_IMAGE)
                    .essential(false)
                    .memory(128)
                    .cpu(128)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk(format!("ECS RegisterTaskDefinition {family}"), c))?;
        let task_definition = td
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| missing("RegisterTaskDefinition taskDefinitionArn", c))?
            .to_string();

        let service = names.service.clone();
        c.ecs
            .create_service()
            .cluster(&cluster)
            .service_name(&service)
            // moto starts tasks for a task set's scale and, with awsvpc networking, fails building
            // their network interface (AttributeError private_dns_name): no tasks in tests.
            .desired_count(0)
            .deployment_controller(
                ecs::DeploymentController::builder()
                    .r#type(ecs::DeploymentControllerType::External)
                    .build()
                    .map_err(|e| format!("DeploymentController: {e}"))?,
            )
            .send()
            .await
            .map_err(sdk(format!("ECS CreateService {service} in {cluster}"), c))?;
        let network = ecs::NetworkConfiguration::builder()
            .awsvpc_configuration(
                ecs::AwsVpcConfiguration::builder()
                    .set_subnets(Some(vpc.subnets.clone()))
                    .security_groups(&vpc.security_group)
                    .build()
                    .map_err(|e| format!("AwsVpcConfiguration: {e}"))?,
            )
            .build();
        let ts = c
            .ecs
            .create_task_set()
            .cluster(&cluster)
            .service(&service)
            .task_definition(&task_definition)
            .external_id("initial")
            .launch_type(ecs::LaunchType::Fargate)
            .network_configuration(network)
            .load_balancers(
                ecs::LoadBalancer::builder()
                    .target_group_arn(&blue_tg)
                    .container_name(container)
                    .container_port(container_port)
                    .build(),
            )
            .scale(ecs::Scale::builder().unit(ecs::ScaleUnit::Percent).value(100.0).build())
            .send()
            .await
            .map_err(sdk(format!("ECS CreateTaskSet for {service}"), c))?;
        let blue_task_set = ts
            .task_set()
            .and_then(|t| t.task_set_arn())
            .ok_or_else(|| missing("CreateTaskSet taskSetArn", c))?
            .to_string();
        c.ecs
            .update_service_primary_task_set()
            .cluster(&cluster)
            .service(&service)
            .primary_task_set(&blue_task_set)
            .send()
            .await
            .map_err(sdk(format!("ECS UpdateServicePrimaryTaskSet {service}"), c))?;

        Ok(EcsFixture {
            account_id: account.id.clone(),
            region: account.region.clone(),
            prefix: prefix.into(),
            cluster,
            service,
            container: container.into(),
            container_port,
            lb_name,
            lb_arn,
            listener_arn,
            listener_port,
            blue_tg_name,
            blue_tg,
            green_tg_name,
            green_tg,
            blue_task_set,
            task_definition,
            vpc,
        })
    }

    /// The listener's default-action weights: [`listener_weights`] of [`EcsFixture::listener_arn`].
    pub async fn weights(&self, clients: &Clients) -> Result<Vec<(String, i32)>, String> {
        listener_weights(clients, &self.listener_arn).await
    }

    /// The service's task sets: [`task_sets`].
    pub async fn task_sets(&self, clients: &Clients) -> Result<Vec<TaskSet>, String> {
        task_sets(clients, &self.cluster, &self.service).await
    }

    /// The service's task definition: [`service_task_definition`].
    pub async fn service_task_definition(&self, clients: &Clients) -> Result<Option<String>, String> {
        service_task_definition(clients, &self.cluster, &self.service).await
    }
}

/// The forward weights of a listener's default action, or of a listener rule's action, as
/// (target group ARN, weight) in the order AWS reports them. A plain forward to one target group
/// reads as weight 100; no forward action reads as no weights.
pub async fn listener_weights(clients: &Clients, listener_or_rule_arn: &str) -> Result<Vec<(String, i32)>, String> {
    let actions = if listener_or_rule_arn.contains(":listener-rule/") {
        let out = clients
            .elb
            .describe_rules()
            .rule_arns(listener_or_rule_arn)
            .send()
            .await
            .map_err(sdk(format!("ELB DescribeRules {listener_or_rule_arn}"), clients))?;
        out.rules().first().map(|r| r.actions().to_vec())
    } else {
        let out = clients
            .elb
            .describe_listeners()
            .listener_arns(listener_or_rule_arn)
            .send()
            .await
            .map_err(sdk(format!("ELB DescribeListeners {listener_or_rule_arn}"), clients))?;
        out.listeners().first().map(|l| l.default_actions().to_vec())
    }
    .ok_or_else(|| missing(&format!("listener or rule {listener_or_rule_arn}"), clients))?;
    let Some(fwd) =
        actions.iter().find(|a| a.r#type() == Some(&aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward))
    else {
        return Ok(Vec::new());
    };
    let weighted: Vec<(String, i32)> = fwd
        .forward_config()
        .map(|f| {
            f.target_groups()
                .iter()
                .map(|t| (t.target_group_arn().unwrap_or_default().to_string(), t.weight().unwrap_or(1)))
                .collect()
        })
        .unwrap_or_default();
    if weighted.is_empty() {
        Ok(fwd.target_group_arn().map(|a| vec![(a.to_string(), 100)]).unwrap_or_default())
    } else {
        Ok(weighted)
    }
}

/// One task set of a service, as ECS reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskSet {
    /// Its ARN.
    pub arn: String,
    /// `PRIMARY`, `ACTIVE` or `DRAINING`.
    pub status: String,
    /// The external ID (kiln writes the Promotion's UID; the fixture's baseline is `initial`).
    pub external_id: String,
    /// Its task definition ARN.
    pub task_definition: String,
    /// The target group it is registered with (its first load balancer), if any.
    pub target_group: Option<String>,
}

/// The service's task sets, sorted by ARN.
pub async fn task_sets(clients: &Clients, cluster: &str, service: &str) -> Result<Vec<TaskSet>, String> {
    let out = clients
        .ecs
        .describe_task_sets()
        .cluster(cluster)
        .service(service)
        .send()
        .await
        .map_err(sdk(format!("ECS DescribeTaskSets {service} in {cluster}"), clients))?;
    let mut sets: Vec<TaskSet> = out
        .task_sets()
        .iter()
        .map(|t| TaskSet {
            arn: t.task_set_arn().unwrap_or_default().to_string(),
            status: t.status().unwrap_or_default().to_string(),
            external_id: t.external_id().unwrap_or_default().to_string(),
            task_definition: t.task_definition().unwrap_or_default().to_string(),
            target_group: t.load_balancers().first().and_then(|l| l.target_group_arn()).map(str::to_string),
        })
        .collect();
    sets.sort();
    Ok(sets)
}

/// An ECS service with the ECS deployment controller (rolling updates): cluster `cluster`, task
/// definition family `family` with one container `app` (`registry.example/app:v1`), service
/// `service` at desired count 0. Returns the task definition's ARN.
pub async fn rolling_service(clients: &Clients, cluster: &str, service: &str, family: &str) -> Result<String, String> {
    use aws_sdk_ecs::types::ContainerDefinition;
    clients.ecs.create_cluster().cluster_name(cluster).send().await.map_err(sdk("CreateCluster", clients))?;
    let td = clients
        .ecs
        .register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder().name("app").image("registry.example/app:v1").memory(256).build(),
        )
        .send()
        .await
        .map_err(sdk("RegisterTaskDefinition", clients))?;
    let arn = td
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .map(str::to_string)
        .ok_or_else(|| missing("taskDefinitionArn", clients))?;
    clients
        .ecs
        .create_service()
        .cluster(cluster)
        .service_name(service)
        .task_definition(&arn)
        .desired_count(0)
        .send()
        .await
        .map_err(sdk("CreateService", clients))?;
    Ok(arn)
}

/// The service's task definition ARN (`None` when it reports none). For an `EXTERNAL` service
/// moto reports the PRIMARY task set's (the [`EcsFixture`]'s baseline at start). A missing service
/// is an error.
pub async fn service_task_definition(
    clients: &Clients,
    cluster: &str,
    service: &str,
) -> Result<Option<String>, String> {
    let out = clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(sdk(format!("ECS DescribeServices {service} in {cluster}"), clients))?;
    let found = out
        .services()
        .iter()
        .find(|s| s.service_name() == Some(service) || s.service_arn() == Some(service))
        .ok_or_else(|| missing(&format!("ECS service {service} in cluster {cluster}"), clients))?;
    Ok(found.task_definition().map(str::to_string))
}

/// A Lambda function with version 1 published and an alias on version 1, in one account. The
/// execution role is `<name>-role`, made with [`Account::lambda_role`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaFixture {
    /// The account ID it lives in.
    pub account_id: String,
    /// The region it lives in.
    pub region: String,
    /// Function name.
    pub name: String,
    /// Function ARN (unqualified).
    pub arn: String,
    /// Alias name.
    pub alias: String,
    /// Alias ARN.
    pub alias_arn: String,
    /// The execution role's ARN.
    pub role_arn: String,
    /// The published version the alias points at (`1`).
    pub version: String,
    /// Version 1's `CodeSha256` (base64 SHA-256 of the zip; moto's stand-in for an image).
    pub code_sha256: String,
}

impl LambdaFixture {
    /// The zip fixture's handler source (`index.py`).
    pub const ZIP_SOURCE: &'static str = "def handler(event, context):\n    return {\"version\": 1}\n";

    /// A Python 3.12 function `name` from a zip ([`zip_file`] of [`LambdaFixture::ZIP_SOURCE`] as
    /// `index.py`, handler `index.handler`), version 1, alias `alias` → 1.
    pub async fn create(account: &Account, name: &str, alias: &str) -> Result<LambdaFixture, String> {
        use aws_sdk_lambda::primitives::Blob;
        use aws_sdk_lambda::types::{FunctionCode, Runtime};
        let role = account.lambda_role(&format!("{name}-role"))?;
        let created = account
            .clients
            .lambda
            .create_function()
            .function_name(name)
            .role(&role)
            .runtime(Runtime::Python312)
            .handler("index.handler")
            .code(
                FunctionCode::builder().zip_file(Blob::new(zip_file("index.py", Self::ZIP_SOURCE.as_bytes()))).build(),
            )
            .send()
            .await
            .map_err(sdk(format!("Lambda CreateFunction {name}"), &account.clients))?;
        let arn = created.function_arn().ok_or_else(|| missing("CreateFunction FunctionArn", &account.clients))?;
        Self::publish(account, name, alias, role.clone(), arn.to_string()).await
    }

    /// A container-image function `name` on `image_uri`, version 1, alias `alias` → 1.
    pub async fn create_image(
        account: &Account,
        name: &str,
        alias: &str,
        image_uri: &str,
    ) -> Result<LambdaFixture, String> {
        use aws_sdk_lambda::types::{FunctionCode, PackageType};
        let role = account.lambda_role(&format!("{name}-role"))?;
        let created = account
            .clients
            .lambda
            .create_function()
            .function_name(name)
            .role(&role)
            .package_type(PackageType::Image)
            .code(FunctionCode::builder().image_uri(image_uri).build())
            .send()
            .await
            .map_err(sdk(format!("Lambda CreateFunction {name} ({image_uri})"), &account.clients))?;
        let arn = created.function_arn().ok_or_else(|| missing("CreateFunction FunctionArn", &account.clients))?;
        Self::publish(account, name, alias, role.clone(), arn.to_string()).await
    }

    async fn publish(
        account: &Account,
        name: &str,
        alias: &str,
        role_arn: String,
        arn: String,
    ) -> Result<LambdaFixture, String> {
        let c = &account.clients;
        let published = c
            .lambda
            .publish_version()
            .function_name(name)
            .send()
            .await
            .map_err(sdk(format!("Lambda PublishVersion {name}"), c))?;
        let version = published.version().ok_or_else(|| missing("PublishVersion Version", c))?.to_string();
        let code_sha256 = published.code_sha256().unwrap_or_default().to_string();
        let made = c
            .lambda
            .create_alias()
            .function_name(name)
            .name(alias)
            .function_version(&version)
            .send()
            .await
            .map_err(sdk(format!("Lambda CreateAlias {name}:{alias}"), c))?;
        let alias_arn = made.alias_arn().ok_or_else(|| missing("CreateAlias AliasArn", c))?.to_string();
        Ok(LambdaFixture {
            account_id: account.id.clone(),
            region: account.region.clone(),
            name: name.into(),
            arn,
            alias: alias.into(),
            alias_arn,
            role_arn,
            version,
            code_sha256,
        })
    }

    /// The alias as Lambda reports it: [`lambda_alias`].
    pub async fn alias_state(&self, clients: &Clients) -> Result<AliasState, String> {
        lambda_alias(clients, &self.name, &self.alias).await
    }

    /// The function's versions: [`lambda_versions`].
    pub async fn versions(&self, clients: &Clients) -> Result<Vec<String>, String> {
        lambda_versions(clients, &self.name).await
    }
}

/// A Lambda alias: the version it points at and its additional version weights.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasState {
    /// The alias's main version.
    pub function_version: String,
    /// `RoutingConfig.AdditionalVersionWeights` (version → weight 0.0-1.0); empty when unweighted.
    pub routing: BTreeMap<String, f64>,
}

impl AliasState {
    /// An alias on `version` with no additional weights.
    pub fn on(version: &str) -> AliasState {
        AliasState { function_version: version.into(), routing: BTreeMap::new() }
    }

    /// An alias on `version` sending `weight` (0.0-1.0) to `other`.
    pub fn weighted(version: &str, other: &str, weight: f64) -> AliasState {
        AliasState { function_version: version.into(), routing: BTreeMap::from([(other.to_string(), weight)]) }
    }
}

/// Alias `alias` of `function` (GetAlias).
pub async fn lambda_alias(clients: &Clients, function: &str, alias: &str) -> Result<AliasState, String> {
    let a = clients
        .lambda
        .get_alias()
        .function_name(function)
        .name(alias)
        .send()
        .await
        .map_err(sdk(format!("Lambda GetAlias {function}:{alias}"), clients))?;
    let routing = a
        .routing_config()
        .and_then(|r| r.additional_version_weights())
        .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    let function_version = a
        .function_version()
        .ok_or_else(|| missing(&format!("GetAlias {function}:{alias} FunctionVersion"), clients))?;
    Ok(AliasState { function_version: function_version.to_string(), routing })
}

/// Every version of `function` as Lambda lists them (`$LATEST`, `1`, `2`, …), following pages.
/// A function that does not exist is an error (AWS: ResourceNotFoundException; moto answers an
/// empty list, which cannot be a function: there is always `$LATEST`).
pub async fn lambda_versions(clients: &Clients, function: &str) -> Result<Vec<String>, String> {
    let mut versions = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = clients
            .lambda
            .list_versions_by_function()
            .function_name(function)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(sdk(format!("Lambda ListVersionsByFunction {function}"), clients))?;
        versions.extend(out.versions().iter().filter_map(|v| v.version()).map(str::to_string));
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ if versions.is_empty() => return Err(missing(&format!("Lambda function {function}"), clients)),
            _ => return Ok(versions),
        }
    }
}

/// A metric alarm `name` in `clients`' account: `Kiln/Test` `Errors` Sum ≥ 1 over one minute
/// (state INSUFFICIENT_DATA until set).
pub async fn put_alarm(clients: &Clients, name: &str) -> Result<(), String> {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("Kiln/Test")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .map_err(sdk(format!("CloudWatch PutMetricAlarm {name}"), clients))?;
    Ok(())
}

/// Sets alarm `name` to `state` (`ALARM`, `OK` or `INSUFFICIENT_DATA`) with CloudWatch
/// SetAlarmState, as a breach (or recovery) would.
pub async fn set_alarm_state(clients: &Clients, name: &str, state: &str) -> Result<(), String> {
    use aws_sdk_cloudwatch::types::StateValue;
    let value = match state {
        "ALARM" => StateValue::Alarm,
        "OK" => StateValue::Ok,
        "INSUFFICIENT_DATA" => StateValue::InsufficientData,
        other => return Err(format!("alarm state {other:?}: use ALARM, OK or INSUFFICIENT_DATA")),
    };
    clients
        .cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(value)
        .state_reason(format!("set to {state} by kiln-testkit"))
        .send()
        .await
        .map_err(sdk(format!("CloudWatch SetAlarmState {name} {state}"), clients))?;
    Ok(())
}

/// Alarm `name`'s state (`ALARM`, `OK`, `INSUFFICIENT_DATA`), or `None` when the account has no
/// such metric alarm.
pub async fn alarm_state(clients: &Clients, name: &str) -> Result<Option<String>, String> {
    let out = clients
        .cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .send()
        .await
        .map_err(sdk(format!("CloudWatch DescribeAlarms {name}"), clients))?;
    Ok(out
        .metric_alarms()
        .iter()
        .find(|a| a.alarm_name() == Some(name))
        .map(|a| a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default()))
}

/// An S3 bucket for evidence as docs/install.md has it: Object Lock enabled at creation, with a
/// default retention of `days` in COMPLIANCE mode.
pub async fn object_lock_bucket(clients: &Clients, bucket: &str, days: i32) -> Result<(), String> {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
    };
    clients
        .s3
        .create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .map_err(sdk(format!("S3 CreateBucket {bucket}"), clients))?;
    let retention = DefaultRetention::builder().mode(ObjectLockRetentionMode::Compliance).days(days).build();
    let config = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(ObjectLockRule::builder().default_retention(retention).build())
        .build();
    clients
        .s3
        .put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(config)
        .send()
        .await
        .map_err(sdk(format!("S3 PutObjectLockConfiguration {bucket}"), clients))?;
    Ok(())
}

/// A valid zip archive holding one stored (uncompressed) file `name` with `content`: Lambda code
/// without a zip library.
pub fn zip_file(name: &str, content: &[u8]) -> Vec<u8> {
    // Sizes are u32/u16 in the zip format; test code and names are far smaller.
    let len = u32::try_from(content.len()).unwrap_or(u32::MAX);
    let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let crc = crc32(content);
    let mut out = Vec::new();
    // Local file header.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(content);
    // Central directory.
    let central = u32::try_from(out.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
    out.extend_from_slice(name.as_bytes());
    let size = u32::try_from(out.len()).unwrap_or(u32::MAX) - central;
    // End of central directory.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&central.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE), bitwise.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn zip_has_one_entry_and_ends_with_the_directory() {
        let z = zip_file("index.py", b"print(1)");
        assert_eq!(&z[..4], &[0x50, 0x4b, 0x03, 0x04]);
        assert_eq!(&z[z.len() - 22..z.len() - 18], &[0x50, 0x4b, 0x05, 0x06]);
        assert_eq!(z.len(), 30 + 8 + 8 + 46 + 8 + 22);
    }

    #[test]
    fn prefixes_fit_elb_names() {
        assert!(check_prefix("web-1").is_ok());
        assert!(check_prefix(&"a".repeat(26)).is_ok());
        for bad in ["", "-web", "web-", "web_1", &"a".repeat(27)] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
