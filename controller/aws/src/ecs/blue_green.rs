//! ECS blue/green, canary and linear by target-group weights, for a service with the EXTERNAL
//! deployment controller: a green task set on the green target group, listener (or rule)
//! weights per step, green made primary on finalize.

use async_trait::async_trait;
use aws_sdk_ecs::types::{LaunchType, LoadBalancer, Scale, ScaleUnit, Tag, TaskSet};
use kiln_api::promotion::{DeployedResources, EcsSnapshot, Snapshot, TargetGroupWeight};
use kiln_api::release::EcsTraffic;

use super::{EcsService, describe_service, register_with_image};
use crate::credentials::Clients;
use crate::elb::{self, ResolvedTraffic};
use crate::error::{AwsError, Result, sdk};
use crate::traffic::{PROMOTION_UID_TAG, TrafficTarget, now_time};

/// An ECS service shifted by target-group weights.
#[derive(Debug, Clone)]
pub struct EcsBlueGreen {
    clients: Clients,
    role_arn: Option<String>,
    uid: String,
    /// The Promotion's attempt, part of CreateTaskSet's idempotency token.
    attempt: i32,
    target: EcsService,
    traffic: EcsTraffic,
}

impl EcsBlueGreen {
    /// The service `target` in the account of `clients`, shifted on `traffic`, for the Promotion
    /// with UID `uid` (what kiln creates is tagged with it). `role_arn` is recorded in snapshots.
    pub fn new(clients: Clients, role_arn: Option<String>, uid: &str, target: EcsService, traffic: EcsTraffic) -> Self {
        EcsBlueGreen { clients, role_arn, uid: uid.to_string(), attempt: 0, target, traffic }
    }

    /// The same target for the Promotion's attempt `attempt` (`status.observedRetry`; 0 unless
    /// retried).
    pub fn on_attempt(mut self, attempt: i32) -> Self {
        self.attempt = attempt;
        self
    }

    /// CreateTaskSet's idempotency token (at most 36 characters): the UID's hex digits and the
    /// attempt. A repeat within an attempt (after a crash) gets the same task set back; a retry
    /// after a restore deleted it creates a new one instead of being handed the deleted set or
    /// refused with IdempotentParameterMismatch.
    pub fn client_token(&self) -> String {
        let suffix = format!("-{}", self.attempt.max(0));
        let hex: String =
            self.uid.chars().filter(char::is_ascii_alphanumeric).take(36usize.saturating_sub(suffix.len())).collect();
        format!("{hex}{suffix}")
    }

    async fn task_sets(&self, cluster: &str, service: &str) -> Result<Vec<TaskSet>> {
        task_sets(&self.clients, cluster, service).await
    }

    fn green_of<'a>(&self, sets: &'a [TaskSet]) -> Option<&'a TaskSet> {
        sets.iter().find(|t| t.external_id() == Some(self.uid.as_str()))
    }

    /// The target group this Promotion's task set was created on (the one traffic shifts to):
    /// read from the task set itself, so it holds for every promotion, not only the first.
    fn new_target_group(
        &self,
        sets: &[TaskSet],
        deployed: &DeployedResources,
        resolved: &ResolvedTraffic,
    ) -> Result<String> {
        let set = self
            .green_of(sets)
            .or_else(|| {
                sets.iter().find(|t| t.task_set_arn().is_some() && t.task_set_arn() == deployed.task_set.as_deref())
            })
            .ok_or_else(|| AwsError::Invalid {
                message: format!("the new task set of Promotion {} is gone; restore and retry", self.uid),
                scope: self.clients.scope.clone(),
            })?;
        target_group_of(set, resolved).map(str::to_string).ok_or_else(|| AwsError::Invalid {
            message: format!(
                "task set {} is on neither target group {} nor {}",
                set.task_set_arn().unwrap_or_default(),
                resolved.blue,
                resolved.green
            ),
            scope: self.clients.scope.clone(),
        })
    }
}

/// Why a task set cannot take traffic yet, if it cannot: it is not in steady state, or fewer
/// tasks run than it wants.
fn not_ready(set: &TaskSet) -> Option<String> {
    let name = set.task_set_arn().unwrap_or_default();
    let (running, wanted) = (set.running_count(), set.computed_desired_count());
    match set.stability_status() {
        Some(s) if s.as_str() != "STEADY_STATE" => {
            Some(format!("task set {name} is stabilizing ({running} of {wanted} tasks running)"))
        }
        _ if running < wanted => Some(format!("task set {name} has {running} of {wanted} tasks running")),
        _ => None,
    }
}

fn primary(sets: &[TaskSet]) -> Option<&TaskSet> {
    sets.iter().find(|t| t.status() == Some("PRIMARY"))
}

/// The target group a task set is registered with, if it is one of the pair kiln shifts between.
fn target_group_of<'a>(set: &'a TaskSet, resolved: &ResolvedTraffic) -> Option<&'a str> {
    set.load_balancers()
        .iter()
        .filter_map(|l| l.target_group_arn())
        .find(|tg| *tg == resolved.blue || *tg == resolved.green)
}

fn other<'a>(resolved: &'a ResolvedTraffic, tg: &str) -> &'a str {
    if tg == resolved.blue { &resolved.green } else { &resolved.blue }
}

/// Which of the two target groups serves now (the new task set goes to the other one), from the
/// listener's (or rule's) weights, else from the primary task set's target group. Refuses when
/// both carry traffic (a shift left half-way) or the weights and the primary task set disagree.
fn live_target_group<'a>(
    resolved: &'a ResolvedTraffic,
    weights: &[TargetGroupWeight],
    primary_tg: Option<&str>,
    scope: &crate::error::Scope,
) -> Result<&'a str> {
    let weight_of = |tg: &str| weights.iter().filter(|w| w.target_group_arn == tg).map(|w| w.weight).sum::<i32>();
    let (b, g) = (weight_of(&resolved.blue), weight_of(&resolved.green));
    let live = match (b > 0, g > 0) {
        (true, true) => {
            return Err(AwsError::Invalid {
                message: format!(
                    "both target groups carry traffic ({} {b}%, {} {g}%): a shift was left half-way; \
                     finish or restore it before starting another",
                    resolved.blue, resolved.green
                ),
                scope: scope.clone(),
            });
        }
        (true, false) => resolved.blue.as_str(),
        (false, true) => resolved.green.as_str(),
        (false, false) => match primary_tg {
            Some(tg) if tg == resolved.green => resolved.green.as_str(),
            _ => resolved.blue.as_str(),
        },
    };
    if let Some(tg) = primary_tg
        && tg != live
    {
        return Err(AwsError::Invalid {
            message: format!(
                "the listener sends traffic to {live} but the primary task set is on {tg}; \
                 make them agree before promoting"
            ),
            scope: scope.clone(),
        });
    }
    Ok(live)
}

#[async_trait]
impl TrafficTarget for EcsBlueGreen {
    async fn running(&self) -> Result<kiln_core::running::RunningState> {
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
        let sets = self.task_sets(&self.target.cluster, &self.target.service).await?;
        let serving = primary(&sets).and_then(|t| t.task_definition()).or(service.task_definition());
        super::running(&self.clients.ecs, &self.target, serving).await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let scope = &self.clients.scope;
        let service = describe_service(&self.clients.ecs, scope, &self.target).await?;
        let resolved = elb::resolve(&self.clients.elb, scope, &self.traffic).await?;
        let sets = self.task_sets(&self.target.cluster, &self.target.service).await?;
        let primary = primary(&sets);
        let task_definition =
            primary.and_then(|t| t.task_definition()).or(service.task_definition()).map(str::to_string);
        let listener_weights = elb::weights(&self.clients.elb, &resolved.listener_or_rule_arn).await?;
        let containers = match &task_definition {
            Some(td) => super::containers(&self.clients.ecs, td).await?,
            None => Vec::new(),
        };
        Ok(Snapshot {
            captured_at: Some(now_time()),
            account_id: Some(scope.account_id.clone()),
            region: Some(scope.region.clone()),
            role_arn: self.role_arn.clone(),
            ecs: Some(EcsSnapshot {
                cluster: Some(self.target.cluster.clone()),
                service: Some(self.target.service.clone()),
                task_definition,
                containers,
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
            // A repeat: the new task set exists; shift reads its target group from it.
            return Ok(DeployedResources {
                task_definition: Some(td),
                task_set: green.task_set_arn().map(str::to_string),
                ..DeployedResources::default()
            });
        }
        // The new task set goes on the target group that does not serve now: after a finalize
        // the "green" group is the live one and the "blue" group is idle.
        let weights = elb::weights(&self.clients.elb, &resolved.listener_or_rule_arn).await?;
        let primary_tg = primary(&sets).and_then(|p| target_group_of(p, &resolved));
        let live = live_target_group(&resolved, &weights, primary_tg, scope)?;
        let new_tg = other(&resolved, live).to_string();
        // The new task set mirrors the live one's placement and networking; only the task
        // definition and the target group differ.
        let port = blue
            .and_then(|b| {
                b.load_balancers().iter().find(|l| l.container_name() == Some(self.target.container.as_str()))
            })
            .and_then(|l| l.container_port());
        let lb = LoadBalancer::builder()
            .target_group_arn(&new_tg)
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
            .client_token(self.client_token())
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

    async fn shift(&self, deployed: &DeployedResources, weight: i32) -> Result<()> {
        let weight = weight.clamp(0, 100);
        let resolved = elb::resolve(&self.clients.elb, &self.clients.scope, &self.traffic).await?;
        let sets = self.task_sets(&self.target.cluster, &self.target.service).await?;
        let new_tg = self.new_target_group(&sets, deployed, &resolved)?;
        // Traffic only goes to a task set that has all its tasks running: until then this is
        // "still in progress" (class Wait) and the controller asks again.
        if weight > 0
            && let Some(set) = self.green_of(&sets)
            && let Some(why) = not_ready(set)
        {
            return Err(AwsError::InProgress { what: why, scope: self.clients.scope.clone() });
        }
        let w = |tg: &str| if tg == new_tg { weight } else { 100 - weight };
        let weights = [
            TargetGroupWeight { target_group_arn: resolved.blue.clone(), weight: w(&resolved.blue) },
            TargetGroupWeight { target_group_arn: resolved.green.clone(), weight: w(&resolved.green) },
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
        restore(&self.clients, &self.uid, cluster, service, ecs).await
    }
}

/// The live task sets of `service` (draining ones are on their way out).
pub(crate) async fn task_sets(clients: &Clients, cluster: &str, service: &str) -> Result<Vec<TaskSet>> {
    let out = clients
        .ecs
        .describe_task_sets()
        .cluster(cluster)
        .service(service)
        .send()
        .await
        .map_err(sdk("ecs", "DescribeTaskSets"))?;
    Ok(out.task_sets().iter().filter(|t| t.status() != Some("DRAINING")).cloned().collect())
}

/// Returns `cluster`/`service` to `ecs` (weights, primary task set) and deletes the task sets
/// Promotion `uid` created. Needs nothing but the snapshot, so a Promotion whose Release is gone
/// can still restore ([`crate::restore::RestoreOnly`]).
pub(crate) async fn restore(
    clients: &Clients,
    uid: &str,
    cluster: &str,
    service: &str,
    ecs: &EcsSnapshot,
) -> Result<()> {
    let sets = task_sets(clients, cluster, service).await?;
    // The task set that served before this Promotion must still exist: after a finalize it
    // was retired, and restoring the old weights would point traffic at an empty target
    // group and delete the only task set that serves.
    if let Some(want) = &ecs.primary_task_set
        && !sets.iter().any(|t| t.task_set_arn() == Some(want.as_str()))
    {
        return Err(AwsError::Invalid {
            message: format!(
                "cannot restore ECS service {service}: the task set that served before Promotion {} ({want}) \
                 no longer exists (retired by finalize); nothing was changed — roll forward with a new Release",
                uid
            ),
            scope: clients.scope.clone(),
        });
    }
    // Traffic first: the captured task set serves everything again before anything is removed.
    if let Some(arn) = &ecs.listener_or_rule_arn
        && !ecs.listener_weights.is_empty()
    {
        let current = elb::weights(&clients.elb, arn).await?;
        if current != ecs.listener_weights {
            elb::set_weights(&clients.elb, arn, &ecs.listener_weights).await?;
        }
    }
    if let Some(want) = &ecs.primary_task_set
        && primary(&sets).and_then(|t| t.task_set_arn()) != Some(want.as_str())
        && sets.iter().any(|t| t.task_set_arn() == Some(want.as_str()))
    {
        clients
            .ecs
            .update_service_primary_task_set()
            .cluster(cluster)
            .service(service)
            .primary_task_set(want)
            .send()
            .await
            .map_err(sdk("ecs", "UpdateServicePrimaryTaskSet"))?;
    }
    for created in sets.iter().filter(|t| t.external_id() == Some(uid)).filter_map(|t| t.task_set_arn()) {
        if ecs.primary_task_set.as_deref() != Some(created) {
            delete_task_set(&clients.ecs, cluster, service, created).await?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_waits_for_the_new_task_set_to_be_steady() {
        use aws_sdk_ecs::types::StabilityStatus;
        let set = |status: StabilityStatus, running: i32, wanted: i32| {
            TaskSet::builder()
                .task_set_arn("arn:ts/green")
                .stability_status(status)
                .running_count(running)
                .computed_desired_count(wanted)
                .build()
        };
        assert_eq!(not_ready(&set(StabilityStatus::SteadyState, 3, 3)), None);
        assert_eq!(
            not_ready(&set(StabilityStatus::Stabilizing, 1, 3)).as_deref(),
            Some("task set arn:ts/green is stabilizing (1 of 3 tasks running)")
        );
        assert_eq!(
            not_ready(&set(StabilityStatus::SteadyState, 2, 3)).as_deref(),
            Some("task set arn:ts/green has 2 of 3 tasks running")
        );
    }
}
