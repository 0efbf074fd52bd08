//! ECS rolling: update the service to the new task definition (ECS replaces the tasks);
//! restore = the previous task definition.

use async_trait::async_trait;
use kiln_api::promotion::{DeployedResources, EcsSnapshot, Snapshot};

use super::{EcsService, describe_service, register_with_image};
use crate::credentials::Clients;
use crate::error::{AwsError, Result, sdk};
use crate::traffic::{TrafficTarget, now_time};

/// An ECS service updated in place (ECS deployment controller).
#[derive(Debug, Clone)]
pub struct EcsRolling {
    clients: Clients,
    role_arn: Option<String>,
    uid: String,
    target: EcsService,
}

impl EcsRolling {
    /// The service `target` in the account of `clients`, for the Promotion with UID `uid`.
    pub fn new(clients: Clients, role_arn: Option<String>, uid: &str, target: EcsService) -> Self {
        EcsRolling { clients, role_arn, uid: uid.to_string(), target }
    }

    async fn update_service(&self, cluster: &str, service: &str, td: &str) -> Result<()> {
        update_service(&self.clients, cluster, service, td).await
    }
}

/// Points `cluster`/`service` at task definition `td` (nothing when it already runs it). Needs only
/// names, so a restore without the Release can use it ([`crate::restore::RestoreOnly`]).
pub(crate) async fn update_service(clients: &Clients, cluster: &str, service: &str, td: &str) -> Result<()> {
    let current = describe_service(
        &clients.ecs,
        &clients.scope,
        &EcsService {
            cluster: cluster.into(),
            service: service.into(),
            container: String::new(),
            image: String::new(),
            sidecars: Vec::new(),
            mark: None,
        },
    )
    .await?;
    if current.task_definition() == Some(td) {
        return Ok(());
    }
    clients
        .ecs
        .update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(td)
        .send()
        .await
        .map_err(sdk("ecs", "UpdateService"))?;
    Ok(())
}

#[async_trait]
impl TrafficTarget for EcsRolling {
    async fn running(&self) -> Result<kiln_core::running::RunningState> {
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
        super::running(&self.clients.ecs, &self.target, service.task_definition()).await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let service = describe_service(&self.clients.ecs, &self.clients.scope, &self.target).await?;
        let containers = match service.task_definition() {
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
                task_definition: service.task_definition().map(str::to_string),
                containers,
                ..EcsSnapshot::default()
            }),
            lambda: None,
        })
    }

    async fn prepare(&self) -> Result<DeployedResources> {
        let scope = &self.clients.scope;
        let service = describe_service(&self.clients.ecs, scope, &self.target).await?;
        let current = service.task_definition().ok_or_else(|| AwsError::Invalid {
            message: format!("ECS service {} has no task definition to start from", self.target.service),
            scope: scope.clone(),
        })?;
        let td = register_with_image(&self.clients.ecs, scope, current, &self.target, &self.uid).await?;
        Ok(DeployedResources { task_definition: Some(td), ..DeployedResources::default() })
    }

    /// A rolling update has one step: any weight above 0 moves the service.
    async fn shift(&self, deployed: &DeployedResources, weight: i32) -> Result<()> {
        if weight <= 0 {
            return Ok(());
        }
        let td = deployed.task_definition.as_deref().ok_or_else(|| AwsError::Invalid {
            message: "no task definition to roll out (prepare first)".into(),
            scope: self.clients.scope.clone(),
        })?;
        self.update_service(&self.target.cluster, &self.target.service, td).await
    }

    async fn finalize(&self, deployed: &DeployedResources) -> Result<()> {
        self.shift(deployed, 100).await
    }

    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let Some(ecs) = &snapshot.ecs else {
            return Err(AwsError::Invalid {
                message: "the snapshot has no ECS state to restore".into(),
                scope: self.clients.scope.clone(),
            });
        };
        let Some(td) = &ecs.task_definition else { return Ok(()) };
        let cluster = ecs.cluster.as_deref().unwrap_or(&self.target.cluster);
        let service = ecs.service.as_deref().unwrap_or(&self.target.service);
        self.update_service(cluster, service, td).await
    }
}
