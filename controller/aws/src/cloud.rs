//! The controller's one port to AWS: for a Promotion, the traffic target its strategy needs, the
//! hook runner, the signal reader of its environment's account and the evidence archive. Which
//! adapter a Release needs is decided here, so the controller knows no AWS details.
//! [`AwsCloud`] assumes each environment's role through STS (cached until near expiry) and shares
//! one batched alarm cache per account and region; `fake::FakeCloud` (feature `fake`) keeps it
//! all in memory for the controller's in-process tests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kiln_api::promotion::Snapshot;
use kiln_api::release::{EcsStrategy, ReleaseSpec};

use crate::codedeploy::{CodeDeploy, CodeDeployEcs};
use crate::credentials::{AwsSettings, Clients, EnvironmentAws, Sessions, StsAssumeRole, session_name};
use crate::ecs::EcsService;
use crate::ecs::blue_green::EcsBlueGreen;
use crate::ecs::code_deploy::EcsCodeDeploy;
use crate::ecs::rolling::EcsRolling;
use crate::evidence::{EvidenceStore, S3Evidence};
use crate::hooks::{AwsHooks, HookRunner, Invocations};
use crate::lambda::alias::LambdaAlias;
use crate::restore::RestoreOnly;
use crate::signals::cloudwatch::CloudWatch;
use crate::signals::{AlarmCaches, AlarmSource, CloudWatchSignals, SignalReader};
use crate::traffic::TrafficTarget;
use crate::{AwsError, Scope, targets};

/// What a Promotion acts on: its Release in one environment, or (when the Release is gone) only
/// the snapshot a restore returns to.
#[derive(Debug, Clone, Copy)]
pub enum TargetOf<'a> {
    /// The Release's target in `environment`.
    Release {
        /// The Release.
        release: &'a ReleaseSpec,
        /// The environment's name (per-environment overrides).
        environment: &'a str,
        /// The Promotion's attempt (`status.observedRetry`): what kiln creates carries it in
        /// idempotency tokens, so a retry after a restore creates afresh.
        attempt: i32,
        /// The Release's UID, marked on what kiln deploys with its service and version.
        release_uid: Option<&'a str>,
    },
    /// Only a restore of this snapshot (the Release is gone): it names everything the restore
    /// touches.
    RestoreOnly(&'a Snapshot),
}

/// AWS as the controller uses it.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// The traffic target for Promotion `uid` (named `promotion`) in `env`.
    async fn traffic(
        &self,
        env: &EnvironmentAws,
        promotion: &str,
        uid: &str,
        target: TargetOf<'_>,
    ) -> Result<Box<dyn TrafficTarget>, TargetError>;
    /// The hook runner in `env`'s account.
    async fn hooks(&self, env: &EnvironmentAws, promotion: &str, uid: &str) -> Result<Arc<dyn HookRunner>, AwsError>;
    /// The signal reader of `env`'s account (shared by every bake there).
    async fn signals(&self, env: &EnvironmentAws) -> Result<Arc<dyn SignalReader>, AwsError>;
    /// The evidence archive `bucket` in `env`'s account, as Promotion `uid` (named `promotion`).
    async fn evidence(
        &self,
        env: &EnvironmentAws,
        promotion: &str,
        uid: &str,
        bucket: &str,
    ) -> Result<Arc<dyn EvidenceStore>, AwsError>;
}

/// Why no traffic target could be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// AWS refused (e.g. the role cannot be assumed).
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The Release does not say enough for this environment.
    #[error("{0}")]
    Spec(String),
}

/// AWS through the SDK: STS sessions per environment, one alarm cache per account and region.
#[derive(Clone)]
pub struct AwsCloud {
    sessions: Sessions,
    caches: Arc<AlarmCaches>,
    /// CloudWatch alarm history is read unless turned off (emulators without the API answer
    /// "unavailable", which fails closed anyway).
    alarm_history: bool,
    /// Lambda hook invocations in flight, shared by every Promotion's hooks.
    invocations: Invocations,
}

impl std::fmt::Debug for AwsCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCloud").field("sessions", &self.sessions).finish_non_exhaustive()
    }
}

/// The session name the shared signal reader uses in every account.
const SIGNALS_SESSION: &str = "kiln-signals";

impl AwsCloud {
    /// From the controller's own identity (the default provider chain) in `region`; STS is
    /// called at `sts_endpoint` when given. `alarm_history` off skips DescribeAlarmHistory
    /// (emulators without it; flaps then fail closed).
    pub async fn new(
        settings: AwsSettings,
        region: &str,
        sts_endpoint: Option<String>,
        alarm_poll: Duration,
        alarm_history: bool,
    ) -> AwsCloud {
        let mut sts_settings = settings.clone();
        if sts_endpoint.is_some() {
            sts_settings.endpoint_url = sts_endpoint;
        }
        let base = sts_settings.load_default(region).await;
        let sessions = Sessions::new(settings, Arc::new(StsAssumeRole::new(&base)));
        AwsCloud {
            sessions,
            caches: Arc::new(AlarmCaches::new(alarm_poll)),
            alarm_history,
            invocations: Invocations::default(),
        }
    }

    /// The same cloud, whose AWS writes each ask `fence` right before they are sent
    /// ([`crate::fence`]): the controller's Lease check, inside every action.
    pub fn with_fence(mut self, fence: crate::WriteFence) -> AwsCloud {
        self.sessions = self.sessions.with_fence(fence);
        self
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    async fn traffic(
        &self,
        env: &EnvironmentAws,
        promotion: &str,
        uid: &str,
        target: TargetOf<'_>,
    ) -> Result<Box<dyn TrafficTarget>, TargetError> {
        let clients = self.sessions.clients(env, &session_name(promotion, uid)).await?;
        let role = Some(env.role_arn.clone());
        match target {
            TargetOf::Release { release, environment, attempt, release_uid } => {
                let mark = targets::mark(release, release_uid);
                if let Some(ecs) = &release.target.ecs {
                    let (mut service, traffic) =
                        targets::ecs_service(release, ecs, environment).map_err(TargetError::Spec)?;
                    service.mark = Some(mark);
                    return Ok(match ecs.strategy {
                        EcsStrategy::BlueGreen | EcsStrategy::Canary | EcsStrategy::Linear => {
                            let traffic = traffic.ok_or_else(|| {
                                TargetError::Spec(format!(
                                    "strategy {:?} needs spec.target.ecs.traffic (listener and target groups) for {environment}",
                                    ecs.strategy
                                ))
                            })?;
                            Box::new(EcsBlueGreen::new(clients, role, uid, service, traffic).on_attempt(attempt))
                        }
                        EcsStrategy::Rolling => Box::new(EcsRolling::new(clients, role, uid, service)),
                        EcsStrategy::CodeDeploy => code_deploy(clients, role, uid, service, ecs)?,
                    });
                }
                if let Some(l) = &release.target.lambda {
                    let (function, alias, code) =
                        targets::lambda_target(release, l, environment).map_err(TargetError::Spec)?;
                    return Ok(Box::new(
                        LambdaAlias::new(clients, role, uid, &function, &alias, code).marked(Some(mark)),
                    ));
                }
                Err(TargetError::Spec("the Release has neither spec.target.ecs nor spec.target.lambda".into()))
            }
            TargetOf::RestoreOnly(_) => Ok(Box::new(RestoreOnly::new(clients, uid))),
        }
    }

    async fn hooks(&self, env: &EnvironmentAws, promotion: &str, uid: &str) -> Result<Arc<dyn HookRunner>, AwsError> {
        let clients = self.sessions.clients(env, &session_name(promotion, uid)).await?;
        Ok(Arc::new(AwsHooks::new(clients, self.invocations.clone())))
    }

    async fn evidence(
        &self,
        env: &EnvironmentAws,
        promotion: &str,
        uid: &str,
        bucket: &str,
    ) -> Result<Arc<dyn EvidenceStore>, AwsError> {
        let clients = self.sessions.clients(env, &session_name(promotion, uid)).await?;
        Ok(Arc::new(S3Evidence::new(clients, bucket)))
    }

    async fn signals(&self, env: &EnvironmentAws) -> Result<Arc<dyn SignalReader>, AwsError> {
        let clients = self.sessions.clients(env, SIGNALS_SESSION).await?;
        let scope: Scope = env.scope();
        let history = self.alarm_history;
        let make = || -> CloudWatch {
            let cw = CloudWatch::new(clients.cloudwatch.clone(), scope.clone());
            if history { cw } else { cw.without_history() }
        };
        let source: Arc<dyn AlarmSource> = Arc::new(make());
        let alarms = self.caches.get(&scope, || source.clone()).await;
        Ok(Arc::new(CloudWatchSignals { alarms, source }))
    }
}

/// ECS through CodeDeploy: kiln creates the deployment and follows it; a restore stops it with
/// rollback (or redeploys the snapshot's task definition once it had finished).
fn code_deploy(
    clients: Clients,
    role: Option<String>,
    uid: &str,
    service: EcsService,
    ecs: &kiln_api::release::EcsTarget,
) -> Result<Box<dyn TrafficTarget>, TargetError> {
    let settings = ecs
        .code_deploy
        .clone()
        .ok_or_else(|| TargetError::Spec("strategy codeDeploy needs spec.target.ecs.codeDeploy".into()))?;
    let deployer: Arc<dyn CodeDeploy> = Arc::new(CodeDeployEcs::new(clients.clone()));
    Ok(Box::new(EcsCodeDeploy::new(clients, role, uid, service, settings, deployer)))
}
