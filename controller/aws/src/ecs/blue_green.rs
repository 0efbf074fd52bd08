//! ECS blue/green, canary and linear by target-group weights, for a service with the EXTERNAL
//! deployment controller: a green task set on the green target group, listener (or rule)
//! weights per step, green made primary on finalize.

use async_trait::async_trait;
use aws_sdk_ecs::types::{LaunchType, LoadBalancer, Scale, ScaleUnit, Tag, TaskSet};
use kiln_api::promotion::{DeployedResources, EcsSnapshot, Snapshot, TargetGroupWeight};
use kiln_api::release::EcsTraffic;

use super::{EcsService, describe_service, register_with_image};
use crate::credentials::Clients;
use crate::elb;
use crate::error::{AwsError, Result, sdk};
use crate::traffic::{PROMOTION_UID_TAG, TrafficTarget, now_time};

/// An ECS service shifted by target-group weights.
#[derive(Debug, Clone)]
pub struct EcsBlueGreen {
    clients: Clients,
    role_arn: Option<String>,
    uid: String,
    target: EcsService,
    traffic: EcsTraffic,
}

impl EcsBlueGreen {
    /// The service `target` in the account of `clients`, shifted on `traffic`, for the Promotion
    /// with UID `uid` (what kiln creates is tagged with it). `role_arn` is recorded in snapshots.
    pub fn new(clients: Clients, role_arn: Option<String>, uid: &str, target: EcsService, traffic: EcsTraffic) -> Self {
        EcsBlueGreen { clients, role_arn, uid: uid.to_string(), target, traffic }
    }

    async fn task_sets(&self, cluster: &str, service: &str) -> Result<Vec<TaskSet>> {
        let out = self
            .clients
            .ecs
            .describe_task_sets()
            .cluster(cluster)
            .service(service)
            .send()
            .await
            .map_err(sdk("ecs", "DescribeTaskSets"))?;
        Ok(out.task_sets().iter().filter(|t| t.status() != Some("DRAINING")).cloned().collect())
    }

    fn green_of<'a>(&self, sets: &'a [TaskSet]) -> Option<&'a TaskSet> {
        sets.iter().find(|t| t.external_id() == Some(self.uid.as_str()))
    }
}

fn primary(sets: &[TaskSet]) -> Option<&TaskSet> {
    sets.iter().find(|t| t.status() == Some("PRIMARY"))
}

#[async_trait]
impl TrafficTarget for EcsBlueGreen {
    async fn snapshot(&self) -> Result<Snapshot> {
        let scope = &self.clients.scope;
        let service = describe_service(&self.clients.ecs, scope, &self.target).await?;
        let resolved = elb::resolve(&self.clients.elb, scope, &self.traffic).await?;
        let sets = self.task_sets(&self.target.cluster, &self.target.service).await?;
        let primary = primary(&sets);
        let task_definition =
            primary.and_then(|t| t.task_definition()).or(service.task_definition()).map(str::to_string);
        let listener_weights = elb::weights(&self.clients.elb, &resolved.listener_or_rule_arn).await?;
        Ok(Snapshot {
            captured_at: Some(now_time()),
            account_id: Some(scope.account_id.clone()),
            region: Some(scope.region.clone()),
            role_arn: self.role_arn.clone(),
            ecs: Some(EcsSnapshot {
                cluster: Some(self.target.cluster.clone()),
                service: Some(self.target.service.clone()),
                task_definition,
                primary_task_set: primary.and_then(|t| t.task_set_arn()).map(str::to_string),
                listener_weights,
                listener_or_rule_arn: Some(resolved.listener_or_rule_arn),
            }),
            lambda: None,
        })
    }

    async fn prepare(&self) -> Result<DeployedResources> {
        let scope = &self.clients.scope;
        let resolved = elb::resolve(&self.clients.elb, scope, &self.traffic).await?;
        let service = describe_service(&self.clients.ecs, scope, &self.target).await?;
        let sets = self.task_sets(&self.target.cluster, &self.target.service).await?;
        let blue = primary(&sets).or_else(|| sets.iter().find(|t| t.external_id() != Some(self.uid.as_str())));
        let current =
            blue.and_then(|t| t.task_definition()).or(service.task_definition()).ok_or_else(|| AwsError::Invalid {
                message: format!(
                    "ECS service {} has no task set and no task definition to start from",
                    self.target.service
                ),
                scope: scope.clone(),
            })?;
        let td = register_with_image(&self.clients.ecs, scope, current, &self.target, &self.uid).await?;

        if let Some(green) = self.green_of(&sets) {
            return Ok(DeployedResources {
                task_definition: Some(td),
                task_set: green.task_set_arn().map(str::to_string),
                ..DeployedResources::default()
            });
        }
        // The green task set mirrors blue's placement and networking; only the task definition
        // and the target group differ.
        let port = blue
            .and_then(|b| {
                b.load_balancers().iter().find(|l| l.container_name() == Some(self.target.container.as_str()))
            })
            .and_then(|l| l.container_port());
        let lb = LoadBalancer::builder()
            .target_group_arn(&resolved.green)
            .container_name(&self.target.container)
            .set_container_port(port)
            .build();
        let launch_type = match blue {
            Some(b) if !b.capacity_provider_strategy().is_empty() => None,
            Some(b) => Some(b.launch_type().cloned().unwrap_or(LaunchType::Fargate)),
            None => Some(LaunchType::Fargate),
        };
        let out = self
            .clients
            .ecs
            .create_task_set()
            .cluster(&self.target.cluster)
            .service(&self.target.service)
            .task_definition(&td)
            .external_id(&self.uid)
            .load_balancers(lb)
            .set_launch_type(launch_type)
            .set_capacity_provider_strategy(
                blue.map(|b| b.capacity_provider_strategy().to_vec()).filter(|v| !v.is_empty()),
            )
            .set_network_configuration(blue.and_then(|b| b.network_configuration().cloned()))
            .set_platform_version(blue.and_then(|b| b.platform_version().map(str::to_string)))
            .set_service_registries(blue.map(|b| b.service_registries().to_vec()).filter(|v| !v.is_empty()))
            .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
            .client_token(&self.uid)
            .tags(Tag::builder().key(PROMOTION_UID_TAG).value(&self.uid).build())
            .send()
            .await
            .map_err(sdk("ecs", "CreateTaskSet"))?;
        let id = out.task_set().and_then(|t| t.task_set_arn()).map(str::to_string).ok_or(AwsError::Incomplete {
            service: "ecs",
            operation: "CreateTaskSet",
            field: "taskSet.taskSetArn",
        })?;
        Ok(DeployedResources { task_definition: Some(td), task_set: Some(id), ..DeployedResources::default() })
    }

    async fn shift(&self, _deployed: &DeployedResources, weight: i32) -> Result<()> {
        let weight = weight.clamp(0, 100);
        let resolved = elb::resolve(&self.clients.elb, &self.clients.scope, &self.traffic).await?;
        let weights = [
            TargetGroupWeight { target_group_arn: resolved.blue, weight: 100 - weight },
            TargetGroupWeight { target_group_arn: resolved.green, weight },
        ];
        elb::set_weights(&self.clients.elb, &resolved.listener_or_rule_arn, &weights).await
    }

    async fn finalize(&self, deployed: &DeployedResources) -> Result<()> {
        self.shift(deployed, 100).await?;
        let sets = self.task_sets(&self.target.cluster, &self.target.service).await?;
        let green = self
            .green_of(&sets)
            .and_then(|t| t.task_set_arn())
            .or(deployed.task_set.as_deref())
            .map(str::to_string)
            .ok_or_else(|| AwsError::Invalid {
                message: format!("the green task set of Promotion {} is gone; restore and retry", self.uid),
                scope: self.clients.scope.clone(),
            })?;
        if primary(&sets).and_then(|t| t.task_set_arn()) != Some(green.as_str()) {
            self.clients
                .ecs
                .update_service_primary_task_set()
                .cluster(&self.target.cluster)
                .service(&self.target.service)
                .primary_task_set(&green)
                .send()
                .await
                .map_err(sdk("ecs", "UpdateServicePrimaryTaskSet"))?;
        }
        for old in sets.iter().filter_map(|t| t.task_set_arn()).filter(|id| *id != green) {
            delete_task_set(&self.clients.ecs, &self.target.cluster, &self.target.service, old).await?;
        }
        Ok(())
    }

    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let Some(ecs) = &snapshot.ecs else {
            return Err(AwsError::Invalid {
                message: "the snapshot has no ECS state to restore".into(),
                scope: self.clients.scope.clone(),
            });
        };
        let cluster = ecs.cluster.as_deref().unwrap_or(&self.target.cluster);
        let service = ecs.service.as_deref().unwrap_or(&self.target.service);
        // Traffic first: blue serves everything again before anything is removed.
        if let Some(arn) = &ecs.listener_or_rule_arn
            && !ecs.listener_weights.is_empty()
        {
            let current = elb::weights(&self.clients.elb, arn).await?;
            if current != ecs.listener_weights {
                elb::set_weights(&self.clients.elb, arn, &ecs.listener_weights).await?;
            }
        }
        let sets = self.task_sets(cluster, service).await?;
        if let Some(want) = &ecs.primary_task_set
            && primary(&sets).and_then(|t| t.task_set_arn()) != Some(want.as_str())
            && sets.iter().any(|t| t.task_set_arn() == Some(want.as_str()))
        {
            self.clients
                .ecs
                .update_service_primary_task_set()
                .cluster(cluster)
                .service(service)
                .primary_task_set(want)
                .send()
                .await
                .map_err(sdk("ecs", "UpdateServicePrimaryTaskSet"))?;
        }
        for created in
            sets.iter().filter(|t| t.external_id() == Some(self.uid.as_str())).filter_map(|t| t.task_set_arn())
        {
            if ecs.primary_task_set.as_deref() != Some(created) {
                delete_task_set(&self.clients.ecs, cluster, service, created).await?;
            }
        }
        Ok(())
    }
}

async fn delete_task_set(ecs: &aws_sdk_ecs::Client, cluster: &str, service: &str, id: &str) -> Result<()> {
    match ecs.delete_task_set().cluster(cluster).service(service).task_set(id).force(true).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = crate::error::from_sdk("ecs", "DeleteTaskSet", e);
            // Already gone: cleanup treats NotFound as done.
            if err.code() == Some("TaskSetNotFoundException") { Ok(()) } else { Err(err) }
        }
    }
}
