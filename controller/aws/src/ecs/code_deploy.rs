//! ECS through AWS CodeDeploy (strategy `codeDeploy`), for a service with the CODE_DEPLOY
//! deployment controller: kiln registers the new task definition, hands it to CodeDeploy in an
//! AppSpec and follows the deployment; CodeDeploy creates the replacement task set and moves the
//! traffic by the deployment group's configuration. A breach stops the deployment with rollback.
//!
//! # Where the deployment is created, and how it is found again
//!
//! The deployment is created by [`TrafficTarget::shift`], not by `prepare`. `prepare` must leave
//! the new version without traffic (the core runs the preTraffic hook and re-checks freezes
//! between `Prepare` and the first `ShiftTraffic`), and a CodeDeploy deployment starts moving
//! traffic on its own as soon as it exists. The core keeps only what `prepare` returns
//! (`status.deployed`), and `shift` returns nothing, so `shift` records the deployment ID in AWS
//! itself, on the one resource that belongs to this Promotion alone: the task definition it
//! registered (tagged `kiln.dev/promotion-uid`), under [`DEPLOYMENT_TAG`]. Every `shift`,
//! `finalize` and `restore` finds the deployment from there, in this order:
//!
//! 1. `DeployedResources::code_deploy_deployment`, if a caller recorded one;
//! 2. the task definition's [`DEPLOYMENT_TAG`] — found whatever the deployment's status (a
//!    finished deployment is never created again: `CodeDeploy::create` alone only finds active
//!    ones, so a repeat after a success or a failure would otherwise start a second deployment);
//! 3. a task set of the service running this task definition: CodeDeploy sets a task set's
//!    `externalId` to the ID of the deployment that created it (covers a crash between
//!    CreateDeployment and TagResource once CodeDeploy created the replacement task set);
//! 4. only `shift` then calls `CodeDeploy::create`, itself idempotent while the deployment is
//!    active (found by its description `kiln promotion <uid>`), and tags the task definition.
//!
//! The one window left: `shift` crashes between CreateDeployment and TagResource, and the
//! deployment both finishes (failed or stopped, so that no task set of it remains) before the
//! next `shift`. A repeat then starts a second deployment of the same task definition. Closing it
//! needs a lookup of finished deployments in `CodeDeploy` (ListDeployments with all statuses and
//! a create-time range), which the port does not offer.
//!
//! A restore that completes removes both tags, so a retry of the Promotion (same UID, same task
//! definition, status reset by the core) starts a new deployment instead of following the old.
//!
//! # What counts as done
//!
//! CodeDeploy's word alone does not finish a step: after `Succeeded`, the service's PRIMARY task
//! set must run this Promotion's task definition (or, if ECS reports no task sets, the service's
//! task definition must be it). A restore is done when it no longer does: production traffic is
//! back on another task definition. A task set of it may still exist for a while; CodeDeploy
//! removes it (at once after a stop's rollback, after the group's termination wait after a
//! restore deployment) — on a CODE_DEPLOY service kiln cannot delete task sets itself.
//!
//! # Restore
//!
//! 1. The deployment is in progress: StopDeployment with auto-rollback, then `Wait` while
//!    CodeDeploy moves traffic back (the next call finds it stopped and does not stop it again).
//! 2. It has finished (or none is known) and the new task definition does not serve: done (the
//!    stop's rollback, CodeDeploy's automatic rollback on failure, or traffic never moved). The
//!    records are removed from the task definition.
//! 3. It serves and the deployment failed or was stopped: `Wait` for CodeDeploy's rollback; if
//!    the deployment group does not roll back on failure this never ends, and the message says to
//!    start a rollback Promotion.
//! 4. It serves and the deployment succeeded (CodeDeploy completed the swap and retires the
//!    original task set): a service with the CODE_DEPLOY controller changes only through another
//!    deployment, so kiln creates **one** restore deployment per Promotion, of the snapshot's
//!    task definition (description `kiln promotion <uid>/restore`, idempotent like the forward
//!    one and recorded under [`RESTORE_DEPLOYMENT_TAG`]), and follows it: `Wait` while the new
//!    task definition serves, done (step 2) once it does not; if that deployment fails, restore
//!    fails with CodeDeploy's reason (the core retries a restore, kiln creates no second one) and
//!    a human starts a rollback Promotion.
//!
//! Restore needs the CodeDeploy settings (application, deployment group, port) only in step 4:
//! the snapshot holds the cluster, service and previous task definition; the deployment is found
//! from the task definition tagged with the Promotion UID.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ecs::types::{DeploymentControllerType, Service, Tag};
use kiln_api::promotion::{DeployedResources, EcsSnapshot, Snapshot};
use kiln_api::release::CodeDeploySettings;

use super::{EcsService, describe_service, describe_task_definition, has_uid, register_with_image};
use crate::codedeploy::{CodeDeploy, CodeDeployRequest, DeploymentState, StopOutcome};
use crate::credentials::Clients;
use crate::error::{AwsError, Result, sdk};
use crate::traffic::{TrafficTarget, now_time};

/// The tag on this Promotion's task definition that records its CodeDeploy deployment.
pub const DEPLOYMENT_TAG: &str = "kiln.dev/codedeploy-deployment";

/// The tag on this Promotion's task definition that records the deployment a restore created
/// to put the snapshot's task definition back.
pub const RESTORE_DEPLOYMENT_TAG: &str = "kiln.dev/codedeploy-restore-deployment";

/// An ECS service deployed by AWS CodeDeploy (CODE_DEPLOY deployment controller).
#[derive(Clone)]
pub struct EcsCodeDeploy {
    clients: Clients,
    role_arn: Option<String>,
    uid: String,
    target: EcsService,
    settings: CodeDeploySettings,
    deployer: Arc<dyn CodeDeploy>,
}

impl std::fmt::Debug for EcsCodeDeploy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsCodeDeploy")
            .field("scope", &self.clients.scope)
            .field("uid", &self.uid)
            .field("target", &self.target)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What makes `td` serve `service`, if it does: the PRIMARY task set runs it, or, with no task
/// set reported, the service's task definition is it. A task set that runs it without being
/// primary carries no production traffic (a replacement before the reroute, or one CodeDeploy
/// is removing).
fn serves(service: &Service, td: &str) -> Option<String> {
    match service.task_sets().iter().find(|t| t.status() == Some("PRIMARY")) {
        Some(p) if p.task_definition() == Some(td) => {
            Some(format!("primary task set {}", p.task_set_arn().unwrap_or_default()))
        }
        None if service.task_definition() == Some(td) => {
            Some(format!("service {}", service.service_name().unwrap_or_default()))
        }
        _ => None,
    }
}

/// What serves `service` now, for messages: the primary task set's task definition, else the
/// service's.
fn serving(service: &Service) -> Option<&str> {
    service
        .task_sets()
        .iter()
        .find(|t| t.status() == Some("PRIMARY"))
        .and_then(|t| t.task_definition())
        .or(service.task_definition())
}

/// The deployment that created a task set running `td`: CodeDeploy sets the task set's
/// `externalId` to its deployment ID (`d-…`).
fn deployment_of_task_set(service: &Service, td: &str) -> Option<String> {
    service
        .task_sets()
        .iter()
        .filter(|t| t.task_definition() == Some(td))
        .filter_map(|t| t.external_id())
        .find(|id| id.starts_with("d-"))
        .map(str::to_string)
}

/// The family of a task definition ARN or `family:revision`.
fn family_of(td: &str) -> &str {
    let name = td.rsplit_once("task-definition/").map_or(td, |(_, n)| n);
    name.split_once(':').map_or(name, |(f, _)| f)
}

fn tag_value(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string)
}

impl EcsCodeDeploy {
    /// The service `target` in the account of `clients`, deployed through CodeDeploy with
    /// `settings` (application, deployment group, configuration, container port) by `deployer`,
    /// for the Promotion with UID `uid` (its task definition is tagged with it).
    /// `role_arn` is recorded in snapshots.
    pub fn new(
        clients: Clients,
        role_arn: Option<String>,
        uid: &str,
        target: EcsService,
        settings: CodeDeploySettings,
        deployer: Arc<dyn CodeDeploy>,
    ) -> Self {
        EcsCodeDeploy { clients, role_arn, uid: uid.to_string(), target, settings, deployer }
    }

    /// The AppSpec request deploying `td` (kiln's hooks are run by kiln, not put in the AppSpec).
    pub fn request(&self, td: &str) -> CodeDeployRequest {
        CodeDeployRequest {
            application: self.settings.application.clone(),
            deployment_group: self.settings.deployment_group.clone(),
            deployment_config: self.settings.deployment_config.clone(),
            task_definition: td.to_string(),
            container_name: self.target.container.clone(),
            container_port: self.settings.container_port,
            hooks: Vec::new(),
        }
    }

    fn in_progress(&self, what: String) -> AwsError {
        AwsError::InProgress { what, scope: self.clients.scope.clone() }
    }

    fn invalid(&self, message: String) -> AwsError {
        AwsError::Invalid { message, scope: self.clients.scope.clone() }
    }

    fn located(&self, cluster: &str, service: &str) -> EcsService {
        EcsService { cluster: cluster.to_string(), service: service.to_string(), ..self.target.clone() }
    }

    /// Refuses a service another deployment controller drives: CodeDeploy would refuse the
    /// deployment anyway, later and less clearly.
    fn require_code_deploy(&self, service: &Service) -> Result<()> {
        let kind = service.deployment_controller().map(|c| c.r#type().clone());
        if kind == Some(DeploymentControllerType::CodeDeploy) {
            return Ok(());
        }
        let kind = kind.map_or_else(|| "ECS".to_string(), |k| k.as_str().to_string());
        Err(self.invalid(format!(
            "ECS service {} uses the {kind} deployment controller; strategy codeDeploy needs CODE_DEPLOY",
            self.target.service
        )))
    }

    /// The value of tag `key` on task definition `td`.
    async fn recorded(&self, td: &str, key: &str) -> Result<Option<String>> {
        let (_, tags) = describe_task_definition(&self.clients.ecs, td).await?;
        Ok(tag_value(&tags, key))
    }

    /// Records `id` under `key` on task definition `td`.
    async fn record(&self, td: &str, key: &str, id: &str) -> Result<()> {
        self.clients
            .ecs
            .tag_resource()
            .resource_arn(td)
            .tags(Tag::builder().key(key).value(id).build())
            .send()
            .await
            .map_err(sdk("ecs", "TagResource"))?;
        Ok(())
    }

    /// Removes the deployment records from `td` (a restore completed: a retry starts afresh).
    async fn forget(&self, td: &str) -> Result<()> {
        self.clients
            .ecs
            .untag_resource()
            .resource_arn(td)
            .tag_keys(DEPLOYMENT_TAG)
            .tag_keys(RESTORE_DEPLOYMENT_TAG)
            .send()
            .await
            .map_err(sdk("ecs", "UntagResource"))?;
        Ok(())
    }

    /// This Promotion's deployment of `td`, if one was recorded or ECS names it (steps 1-3 of the
    /// module's lookup). Records one found only through a task set.
    async fn find_deployment(
        &self,
        td: &str,
        deployed: Option<&DeployedResources>,
        service: &Service,
    ) -> Result<Option<String>> {
        if let Some(id) = deployed.and_then(|d| d.code_deploy_deployment.clone()) {
            return Ok(Some(id));
        }
        if let Some(id) = self.recorded(td, DEPLOYMENT_TAG).await? {
            return Ok(Some(id));
        }
        if let Some(id) = deployment_of_task_set(service, td) {
            self.record(td, DEPLOYMENT_TAG, &id).await?;
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// Follows deployment `id` of `td`: `Wait` while it runs, `SpecWrong` with CodeDeploy's
    /// reason if it failed, `Ok` once it succeeded and ECS shows `td` serving.
    async fn follow(&self, id: &str, td: &str) -> Result<()> {
        match self.deployer.state(id).await? {
            DeploymentState::InProgress(detail) => {
                Err(self.in_progress(format!("CodeDeploy deployment {id} ({detail})")))
            }
            DeploymentState::Failed(reason) => {
                Err(self.invalid(format!("CodeDeploy deployment {id} of {td} did not succeed: {reason}")))
            }
            DeploymentState::Succeeded => {
                let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
                match serves(&service, td) {
                    Some(_) => Ok(()),
                    None => Err(self.invalid(format!(
                        "CodeDeploy deployment {id} succeeded but ECS service {} runs {}, not {td}: \
                         something else changed the service",
                        self.target.service,
                        serving(&service).unwrap_or("no task definition")
                    ))),
                }
            }
        }
    }

    /// This Promotion's task definition (tagged with its UID) among the service's task sets, the
    /// service's own and the latest revision of the snapshot's family.
    async fn find_ours(&self, service: &Service, previous: Option<&str>) -> Result<Option<String>> {
        let mut candidates: Vec<String> =
            service.task_sets().iter().filter_map(|t| t.task_definition()).map(str::to_string).collect();
        candidates.extend(service.task_definition().map(str::to_string));
        if let Some(family) = previous.or(service.task_definition()).map(family_of) {
            candidates.push(family.to_string());
        }
        let mut seen = Vec::new();
        for td in candidates {
            if Some(td.as_str()) == previous || seen.contains(&td) {
                continue;
            }
            let (def, tags) = describe_task_definition(&self.clients.ecs, &td).await?;
            if has_uid(&tags, &self.uid)
                && let Some(arn) = def.task_definition_arn()
            {
                return Ok(Some(arn.to_string()));
            }
            seen.push(td);
        }
        Ok(None)
    }

    /// Step 4 of the restore: one deployment of `previous` per Promotion, followed until ECS no
    /// longer runs `ours`.
    async fn restore_deployment(&self, ours: &str, previous: Option<&str>, serving: &str) -> Result<()> {
        let Some(previous) = previous else {
            return Err(self.invalid(format!(
                "CodeDeploy completed the deployment of {ours} and the snapshot records no task definition to \
                 go back to; start a rollback Promotion"
            )));
        };
        let id = match self.recorded(ours, RESTORE_DEPLOYMENT_TAG).await? {
            Some(id) => id,
            None => {
                let id = self.deployer.create(&format!("{}/restore", self.uid), &self.request(previous)).await?;
                self.record(ours, RESTORE_DEPLOYMENT_TAG, &id).await?;
                id
            }
        };
        Err(match self.deployer.state(&id).await? {
            DeploymentState::InProgress(detail) => {
                self.in_progress(format!("CodeDeploy deployment {id} restoring {previous} ({detail})"))
            }
            DeploymentState::Succeeded => self.in_progress(format!(
                "CodeDeploy deployment {id} restoring {previous} succeeded; waiting for ECS to stop reporting \
                 {ours} ({serving})"
            )),
            DeploymentState::Failed(reason) => self.invalid(format!(
                "CodeDeploy deployment {id} restoring {previous} did not succeed ({reason}); {serving} still runs \
                 {ours}: start a rollback Promotion (kiln creates one restore deployment per Promotion)"
            )),
        })
    }
}

#[async_trait]
impl TrafficTarget for EcsCodeDeploy {
    async fn running(&self) -> Result<kiln_core::running::RunningState> {
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
        super::running(&self.clients.ecs, &self.target, serving(&service)).await
    }

    /// The service's task definition and primary task set (the one CodeDeploy would return to).
    async fn snapshot(&self) -> Result<Snapshot> {
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
        self.require_code_deploy(&service)?;
        let primary = service.task_sets().iter().find(|t| t.status() == Some("PRIMARY"));
        let containers = match serving(&service) {
            Some(td) => super::containers(&self.clients.ecs, td).await?,
            None => Vec::new(),
        };
        Ok(Snapshot {
            captured_at: Some(now_time()),
            account_id: Some(self.clients.scope.account_id.clone()),
            region: Some(self.clients.scope.region.clone()),
            role_arn: self.role_arn.clone(),
            ecs: Some(EcsSnapshot {
                cluster: Some(self.target.cluster.clone()),
                service: Some(self.target.service.clone()),
                task_definition: serving(&service).map(str::to_string),
                containers,
                primary_task_set: primary.and_then(|t| t.task_set_arn()).map(str::to_string),
                ..EcsSnapshot::default()
            }),
            lambda: None,
        })
    }

    /// Registers the task definition with the image pinned by digest (a repeat finds it); creates
    /// no deployment (see the module documentation).
    async fn prepare(&self) -> Result<DeployedResources> {
        let scope = &self.clients.scope;
        let service = describe_service(&self.clients.ecs, scope, &self.target).await?;
        self.require_code_deploy(&service)?;
        let current = serving(&service).ok_or_else(|| {
            self.invalid(format!("ECS service {} has no task definition to start from", self.target.service))
        })?;
        let td = register_with_image(&self.clients.ecs, scope, current, &self.target, &self.uid).await?;
        Ok(DeployedResources { task_definition: Some(td), ..DeployedResources::default() })
    }

    /// CodeDeploy moves the traffic by its own configuration: any weight above 0 creates (or
    /// finds) the deployment and follows it; `Ok` once it succeeded and ECS shows the new task
    /// definition serving.
    async fn shift(&self, deployed: &DeployedResources, weight: i32) -> Result<()> {
        if weight <= 0 {
            return Ok(());
        }
        let td = deployed
            .task_definition
            .as_deref()
            .ok_or_else(|| self.invalid("no task definition to deploy (prepare first)".into()))?;
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
        let id = match self.find_deployment(td, Some(deployed), &service).await? {
            Some(id) => id,
            None => {
                let id = self.deployer.create(&self.uid, &self.request(td)).await?;
                self.record(td, DEPLOYMENT_TAG, &id).await?;
                id
            }
        };
        self.follow(&id, td).await
    }

    /// Nothing to move (CodeDeploy completed the swap and retires the original task set): checks
    /// the deployment succeeded and the new task definition serves.
    async fn finalize(&self, deployed: &DeployedResources) -> Result<()> {
        let td = deployed
            .task_definition
            .as_deref()
            .ok_or_else(|| self.invalid("no task definition to finalize (prepare first)".into()))?;
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
        let id = self.find_deployment(td, Some(deployed), &service).await?.ok_or_else(|| {
            self.invalid(format!("no CodeDeploy deployment of {td} (Promotion {}) was found to finalize", self.uid))
        })?;
        self.follow(&id, td).await
    }

    /// See "Restore" in the module documentation.
    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let Some(ecs) = &snapshot.ecs else {
            return Err(self.invalid("the snapshot has no ECS state to restore".into()));
        };
        let cluster = ecs.cluster.as_deref().unwrap_or(&self.target.cluster);
        let name = ecs.service.as_deref().unwrap_or(&self.target.service);
        let located = self.located(cluster, name);
        let previous = ecs.task_definition.as_deref();
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &located).await?;
        let Some(ours) = self.find_ours(&service, previous).await? else {
            // Nothing registered by this Promotion: nothing was deployed.
            return Ok(());
        };
        let forward = self.find_deployment(&ours, None, &service).await?;
        let mut state = None;
        if let Some(id) = &forward {
            let now = self.deployer.state(id).await?;
            if matches!(now, DeploymentState::InProgress(_)) {
                match self.deployer.stop(id).await? {
                    StopOutcome::RollingBack { status, message } => {
                        return Err(self.in_progress(format!(
                            "CodeDeploy's rollback of deployment {id} (stopped by kiln: {status} {message})"
                        )));
                    }
                    // It finished meanwhile: judged below by how it ended.
                    StopOutcome::AlreadyCompleted => state = Some(self.deployer.state(id).await?),
                }
            } else {
                state = Some(now);
            }
        }
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &located).await?;
        match serves(&service, &ours) {
            // Traffic is back (CodeDeploy removes a task set of `ours` left behind on its own).
            None => self.forget(&ours).await,
            Some(what) => match (forward, state) {
                (Some(id), Some(DeploymentState::Failed(reason) | DeploymentState::InProgress(reason))) => Err(self
                    .in_progress(format!(
                        "CodeDeploy's rollback of deployment {id} ({reason}); {what} still runs {ours} \
                         (if the deployment group does not roll back on failure, start a rollback Promotion)"
                    ))),
                // Succeeded (or no deployment known): CodeDeploy completed the swap.
                _ => self.restore_deployment(&ours, previous, &what).await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::TaskSet;

    fn set(arn: &str, td: &str, status: &str, external: &str) -> TaskSet {
        TaskSet::builder().task_set_arn(arn).task_definition(td).status(status).external_id(external).build()
    }

    fn service(td: &str, sets: Vec<TaskSet>) -> Service {
        Service::builder().service_name("web").task_definition(td).set_task_sets(Some(sets)).build()
    }

    #[test]
    fn the_primary_task_set_decides_what_serves() {
        let ours = "arn:aws:ecs:us-east-1:1:task-definition/web:8";
        let old = "arn:aws:ecs:us-east-1:1:task-definition/web:7";
        let s = service(old, vec![set("ts/blue", old, "PRIMARY", "d-1"), set("ts/green", ours, "ACTIVE", "d-2")]);
        assert_eq!(serves(&s, ours), None, "a replacement before the reroute does not serve");
        assert_eq!(deployment_of_task_set(&s, ours).as_deref(), Some("d-2"));
        let s = service(old, vec![set("ts/green", ours, "PRIMARY", "d-2"), set("ts/blue", old, "ACTIVE", "d-1")]);
        assert_eq!(serves(&s, ours).as_deref(), Some("primary task set ts/green"));
        assert_eq!(serving(&s), Some(ours), "the primary task set wins over the service's field");
        let s = service(ours, vec![set("ts/blue", old, "PRIMARY", "d-1")]);
        assert_eq!(serves(&s, ours), None, "with task sets, the primary one decides");
        assert_eq!(serves(&service(ours, vec![]), ours).as_deref(), Some("service web"));
        assert_eq!(serves(&service(old, vec![]), ours), None);
        let kiln_set = service(old, vec![set("ts/x", ours, "ACTIVE", "uid-1")]);
        assert_eq!(deployment_of_task_set(&kiln_set, ours), None, "only CodeDeploy's d-… IDs");
    }

    #[test]
    fn family_from_arn_or_name() {
        assert_eq!(family_of("arn:aws:ecs:us-east-1:123456789012:task-definition/web-app:7"), "web-app");
        assert_eq!(family_of("web-app:7"), "web-app");
        assert_eq!(family_of("web-app"), "web-app");
    }
}
