//! ECS via CodeDeploy: create the deployment from an AppSpec, follow it, stop it with rollback
//! on a breach.

use async_trait::async_trait;
use aws_sdk_codedeploy::types::{AppSpecContent, DeploymentStatus, RevisionLocation, RevisionLocationType};

/// The statuses of a deployment that has not finished: the only ones a repeat of `create` looks
/// among (a finished deployment of this Promotion is not one to resume, and CodeDeploy allows one
/// active deployment per group, so the list is short).
pub const ACTIVE_STATUSES: [DeploymentStatus; 5] = [
    DeploymentStatus::Created,
    DeploymentStatus::Queued,
    DeploymentStatus::InProgress,
    DeploymentStatus::Baking,
    DeploymentStatus::Ready,
];

/// BatchGetDeployments takes at most this many IDs per call.
const BATCH_GET_MAX: usize = 25;

use crate::credentials::Clients;
use crate::error::{AwsError, Result, sdk};

/// What to deploy through CodeDeploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeDeployRequest {
    /// The application.
    pub application: String,
    /// The deployment group.
    pub deployment_group: String,
    /// The deployment configuration (the group's when None).
    pub deployment_config: Option<String>,
    /// The task definition ARN to deploy (registered by kiln with the release's image).
    pub task_definition: String,
    /// The container the load balancer targets.
    pub container_name: String,
    /// Its port.
    pub container_port: i32,
    /// Lifecycle hooks: (event, Lambda function), e.g. ("BeforeAllowTraffic", "smoke-test").
    pub hooks: Vec<(String, String)>,
}

impl CodeDeployRequest {
    /// The ECS AppSpec (JSON) for this request.
    pub fn app_spec(&self) -> String {
        let hooks: Vec<serde_json::Value> =
            self.hooks.iter().map(|(event, function)| serde_json::json!({ event.as_str(): function })).collect();
        let mut spec = serde_json::json!({
            "version": 0.0,
            "Resources": [{
                "TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": self.task_definition,
                        "LoadBalancerInfo": {
                            "ContainerName": self.container_name,
                            "ContainerPort": self.container_port
                        }
                    }
                }
            }]
        });
        if !hooks.is_empty() {
            spec["Hooks"] = serde_json::Value::Array(hooks);
        }
        spec.to_string()
    }
}

/// Where a deployment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentState {
    /// Created, queued, in progress, baking or ready: ask again.
    InProgress(String),
    /// Succeeded.
    Succeeded,
    /// Failed or stopped, with CodeDeploy's reason.
    Failed(String),
}

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// StopDeployment was accepted with auto-rollback: CodeDeploy rolls traffic back to the
    /// previous task set. `status` is CodeDeploy's (`Pending` or `Succeeded`) with its message.
    RollingBack {
        /// StopDeployment's status.
        status: String,
        /// StopDeployment's status message.
        message: String,
    },
    /// The deployment had already finished (succeeded, failed, or stopped by an earlier call):
    /// this call stopped nothing and **rolled nothing back**. `state()` tells how it ended; a
    /// `Succeeded` one left the new task set serving, so the caller must restore by other means.
    AlreadyCompleted,
}

/// CodeDeploy as kiln uses it.
#[async_trait]
pub trait CodeDeploy: Send + Sync {
    /// Creates the deployment, or finds the one this Promotion already created.
    async fn create(&self, uid: &str, request: &CodeDeployRequest) -> Result<String>;
    /// The deployment's state.
    async fn state(&self, deployment_id: &str) -> Result<DeploymentState>;
    /// Stops the deployment, rolling back to the previous task set; tells a stop with rollback
    /// apart from a deployment that had already completed (nothing rolled back).
    async fn stop(&self, deployment_id: &str) -> Result<StopOutcome>;
}

/// CodeDeploy on the SDK.
#[derive(Debug, Clone)]
pub struct CodeDeployEcs {
    clients: Clients,
}

impl CodeDeployEcs {
    /// CodeDeploy in the account of `clients`.
    pub fn new(clients: Clients) -> Self {
        CodeDeployEcs { clients }
    }
}

impl CodeDeployEcs {
    fn missing(&self, request: &CodeDeployRequest, err: AwsError) -> AwsError {
        match err.code() {
            Some("ApplicationDoesNotExistException") => AwsError::NotFound {
                kind: "CodeDeploy application",
                name: request.application.clone(),
                scope: self.clients.scope.clone(),
            },
            Some("DeploymentGroupDoesNotExistException") => AwsError::NotFound {
                kind: "CodeDeploy deployment group",
                name: format!("{} in application {}", request.deployment_group, request.application),
                scope: self.clients.scope.clone(),
            },
            _ => err,
        }
    }
}

fn description(uid: &str) -> String {
    format!("kiln promotion {uid}")
}

#[async_trait]
impl CodeDeploy for CodeDeployEcs {
    async fn create(&self, uid: &str, request: &CodeDeployRequest) -> Result<String> {
        let cd = &self.clients.codedeploy;
        // A repeat finds the deployment by its description (CodeDeploy has no client token),
        // among the group's active deployments, following every ListDeployments page.
        let mut active = Vec::new();
        let mut token = None;
        loop {
            let page = cd
                .list_deployments()
                .application_name(&request.application)
                .deployment_group_name(&request.deployment_group)
                .set_include_only_statuses(Some(ACTIVE_STATUSES.to_vec()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.missing(request, crate::error::from_sdk("codedeploy", "ListDeployments", e)))?;
            active.extend(page.deployments().iter().cloned());
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let wanted = description(uid);
        for chunk in active.chunks(BATCH_GET_MAX) {
            let got = cd
                .batch_get_deployments()
                .set_deployment_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(sdk("codedeploy", "BatchGetDeployments"))?;
            if let Some(d) = got.deployments_info().iter().find(|d| {
                d.description() == Some(wanted.as_str()) && d.status().is_none_or(|st| ACTIVE_STATUSES.contains(st))
            }) && let Some(id) = d.deployment_id()
            {
                return Ok(id.to_string());
            }
        }
        let revision = RevisionLocation::builder()
            .revision_type(RevisionLocationType::AppSpecContent)
            .app_spec_content(AppSpecContent::builder().content(request.app_spec()).build())
            .build();
        let out = cd
            .create_deployment()
            .application_name(&request.application)
            .deployment_group_name(&request.deployment_group)
            .set_deployment_config_name(request.deployment_config.clone())
            .revision(revision)
            .description(description(uid))
            .send()
            .await
            .map_err(|e| self.missing(request, crate::error::from_sdk("codedeploy", "CreateDeployment", e)))?;
        out.deployment_id().map(str::to_string).ok_or(AwsError::Incomplete {
            service: "codedeploy",
            operation: "CreateDeployment",
            field: "deploymentId",
        })
    }

    async fn state(&self, deployment_id: &str) -> Result<DeploymentState> {
        let out = self
            .clients
            .codedeploy
            .get_deployment()
            .deployment_id(deployment_id)
            .send()
            .await
            .map_err(sdk("codedeploy", "GetDeployment"))?;
        let info = out.deployment_info();
        let status = info.and_then(|i| i.status()).cloned();
        let reason =
            info.and_then(|i| i.error_information()).and_then(|e| e.message()).unwrap_or("no reason given").to_string();
        Ok(match status {
            Some(DeploymentStatus::Succeeded) => DeploymentState::Succeeded,
            Some(DeploymentStatus::Failed) => {
                DeploymentState::Failed(format!("deployment {deployment_id} failed: {reason}"))
            }
            Some(DeploymentStatus::Stopped) => {
                DeploymentState::Failed(format!("deployment {deployment_id} was stopped: {reason}"))
            }
            Some(s) => DeploymentState::InProgress(format!("deployment {deployment_id} is {}", s.as_str())),
            None => DeploymentState::InProgress(format!("deployment {deployment_id} has no status yet")),
        })
    }

    async fn stop(&self, deployment_id: &str) -> Result<StopOutcome> {
        // Not emulated by moto (500): tested against a canned-response stub (tests/stub.rs).
        match self
            .clients
            .codedeploy
            .stop_deployment()
            .deployment_id(deployment_id)
            .auto_rollback_enabled(true)
            .send()
            .await
        {
            Ok(out) => Ok(StopOutcome::RollingBack {
                status: out.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                message: out.status_message().unwrap_or_default().to_string(),
            }),
            Err(e) => {
                let err = crate::error::from_sdk("codedeploy", "StopDeployment", e);
                // Already finished: nothing stopped, nothing rolled back.
                if err.code() == Some("DeploymentAlreadyCompletedException") {
                    Ok(StopOutcome::AlreadyCompleted)
                } else {
                    Err(err)
                }
            }
        }
    }
}
