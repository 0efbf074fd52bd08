//! A target that can only restore: for a Promotion whose Release was deleted mid-deployment, the
//! snapshot names everything a restore touches (cluster and service, listener and weights,
//! function and alias), so nothing else is needed to put AWS back.

use async_trait::async_trait;
use kiln_api::promotion::{DeployedResources, Snapshot};

use crate::credentials::Clients;
use crate::error::{AwsError, Result};
use crate::traffic::TrafficTarget;

/// Restores a [`Snapshot`] in the account of its clients; every other operation is refused.
#[derive(Debug, Clone)]
pub struct RestoreOnly {
    clients: Clients,
    uid: String,
}

impl RestoreOnly {
    /// For the Promotion with UID `uid` (what it created is removed on restore).
    pub fn new(clients: Clients, uid: &str) -> Self {
        RestoreOnly { clients, uid: uid.to_string() }
    }

    fn refuse(&self, what: &str) -> AwsError {
        AwsError::Invalid {
            message: format!("cannot {what}: the Release is gone, only a restore of the snapshot is possible"),
            scope: self.clients.scope.clone(),
        }
    }

    fn incomplete(&self, what: &str) -> AwsError {
        AwsError::Invalid {
            message: format!("cannot restore without the Release: the snapshot does not record {what}"),
            scope: self.clients.scope.clone(),
        }
    }
}

#[async_trait]
impl TrafficTarget for RestoreOnly {
    async fn snapshot(&self) -> Result<Snapshot> {
        Err(self.refuse("take a snapshot"))
    }

    async fn running(&self) -> Result<kiln_core::running::RunningState> {
        Err(self.refuse("compare what runs with the Release"))
    }

    async fn prepare(&self) -> Result<DeployedResources> {
        Err(self.refuse("prepare a new version"))
    }

    async fn shift(&self, _deployed: &DeployedResources, _weight: i32) -> Result<()> {
        Err(self.refuse("shift traffic"))
    }

    async fn finalize(&self, _deployed: &DeployedResources) -> Result<()> {
        Err(self.refuse("finalize"))
    }

    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        if let Some(ecs) = &snapshot.ecs {
            let (Some(cluster), Some(service)) = (ecs.cluster.as_deref(), ecs.service.as_deref()) else {
                return Err(self.incomplete("the ECS cluster and service"));
            };
            if !ecs.listener_weights.is_empty() {
                // Blue/green, canary, linear: weights and primary task set.
                return crate::ecs::blue_green::restore(&self.clients, &self.uid, cluster, service, ecs).await;
            }
            // Rolling (and CodeDeploy once finished): the previous task definition.
            return match &ecs.task_definition {
                Some(td) => crate::ecs::rolling::update_service(&self.clients, cluster, service, td).await,
                None => Ok(()),
            };
        }
        if let Some(l) = &snapshot.lambda {
            let (Some(function), Some(alias)) = (l.function_name.as_deref(), l.alias.as_deref()) else {
                return Err(self.incomplete("the Lambda function and alias"));
            };
            return crate::lambda::alias::restore(&self.clients, l, function, alias).await;
        }
        Err(self.incomplete("ECS or Lambda state"))
    }
}
