//! The controller's port to AWS: for a Promotion, the traffic target its strategy needs, the
//! hook runner and the signal reader of its environment's account. The real implementation
//! assumes each environment's role through STS (cached until near expiry) and shares one
//! batched alarm cache per account and region.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::Snapshot;
use kiln_api::release::{EcsStrategy, EcsTraffic, ListenerRef, ReleaseSpec, TargetGroupRef};
use kiln_aws::codedeploy::{CodeDeploy, CodeDeployEcs};
use kiln_aws::credentials::{AwsSettings, EnvironmentAws, Sessions, StsAssumeRole, session_name};
use kiln_aws::ecs::EcsService;
use kiln_aws::ecs::blue_green::EcsBlueGreen;
use kiln_aws::ecs::code_deploy::EcsCodeDeploy;
use kiln_aws::ecs::rolling::EcsRolling;
use kiln_aws::evidence::{EvidenceStore, S3Evidence};
use kiln_aws::hooks::{AwsHooks, HookRunner};
use kiln_aws::lambda::alias::{LambdaAlias, LambdaCode};
use kiln_aws::signals::cloudwatch::CloudWatch;
use kiln_aws::signals::{AlarmCaches, AlarmSource, CloudWatchSignals, SignalReader};
use kiln_aws::traffic::TrafficTarget;
use kiln_aws::{AwsError, Scope, targets};

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
    },
    /// Only the snapshot (restore without the Release).
    Snapshot(&'a Snapshot),
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

/// An environment's AWS identity from its spec.
pub fn environment_aws(env: &EnvironmentSpec) -> EnvironmentAws {
    EnvironmentAws::from_spec(&env.aws)
}

/// The identity a snapshot was taken with (restores act there, whatever the Environment says now).
pub fn snapshot_aws(snapshot: &Snapshot, fallback: &EnvironmentAws) -> EnvironmentAws {
    EnvironmentAws {
        account_id: snapshot.account_id.clone().unwrap_or_else(|| fallback.account_id.clone()),
        region: snapshot.region.clone().unwrap_or_else(|| fallback.region.clone()),
        role_arn: snapshot.role_arn.clone().unwrap_or_else(|| fallback.role_arn.clone()),
        external_id: fallback.external_id.clone(),
    }
}

/// AWS through the SDK: STS sessions per environment, one alarm cache per account and region.
#[derive(Clone)]
pub struct AwsCloud {
    sessions: Sessions,
    caches: Arc<AlarmCaches>,
    /// CloudWatch alarm history is read unless turned off (emulators without the API answer
    /// "unavailable", which fails closed anyway).
    alarm_history: bool,
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
        AwsCloud { sessions, caches: Arc::new(AlarmCaches::new(alarm_poll)), alarm_history }
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
            TargetOf::Release { release, environment } => {
                if let Some(ecs) = &release.target.ecs {
                    let (service, traffic) =
                        targets::ecs_service(release, ecs, environment).map_err(TargetError::Spec)?;
                    return Ok(match ecs.strategy {
                        EcsStrategy::BlueGreen | EcsStrategy::Canary | EcsStrategy::Linear => {
                            let traffic = traffic.ok_or_else(|| {
                                TargetError::Spec(format!(
                                    "strategy {:?} needs spec.target.ecs.traffic (listener and target groups) for {environment}",
                                    ecs.strategy
                                ))
                            })?;
                            Box::new(EcsBlueGreen::new(clients, role, uid, service, traffic))
                        }
                        EcsStrategy::Rolling => Box::new(EcsRolling::new(clients, role, uid, service)),
                        EcsStrategy::CodeDeploy => code_deploy(clients, role, uid, service, ecs)?,
                    });
                }
                if let Some(l) = &release.target.lambda {
                    let (function, alias, code) =
                        targets::lambda_target(release, l, environment).map_err(TargetError::Spec)?;
                    return Ok(Box::new(LambdaAlias::new(clients, role, uid, &function, &alias, code)));
                }
                Err(TargetError::Spec("the Release has neither spec.target.ecs nor spec.target.lambda".into()))
            }
            TargetOf::Snapshot(s) => restore_only(clients, role, uid, s),
        }
    }

    async fn hooks(&self, env: &EnvironmentAws, promotion: &str, uid: &str) -> Result<Arc<dyn HookRunner>, AwsError> {
        let clients = self.sessions.clients(env, &session_name(promotion, uid)).await?;
        Ok(Arc::new(AwsHooks::new(clients)))
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
    clients: kiln_aws::credentials::Clients,
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

/// A target that can only restore `snapshot` (the Release was deleted mid-deployment): the
/// snapshot names everything a restore touches.
fn restore_only(
    clients: kiln_aws::credentials::Clients,
    role: Option<String>,
    uid: &str,
    snapshot: &Snapshot,
) -> Result<Box<dyn TrafficTarget>, TargetError> {
    if let Some(ecs) = &snapshot.ecs {
        let cluster = ecs.cluster.clone().unwrap_or_default();
        let service_name = ecs.service.clone().unwrap_or_default();
        let service = EcsService { cluster, service: service_name, container: String::new(), image: String::new() };
        if ecs.listener_weights.is_empty() {
            return Ok(Box::new(EcsRolling::new(clients, role, uid, service)));
        }
        // The listener and target groups are taken from the snapshot by ARN; the traffic
        // description is only a placeholder a restore does not resolve.
        let arn = |i: usize| ecs.listener_weights.get(i).map(|w| w.target_group_arn.clone());
        let traffic = EcsTraffic {
            listener: ListenerRef { arn: ecs.listener_or_rule_arn.clone(), load_balancer_name: None, port: None },
            rule: None,
            blue_target_group: TargetGroupRef { name: None, arn: arn(0), tags: None },
            green_target_group: TargetGroupRef { name: None, arn: arn(1), tags: None },
        };
        return Ok(Box::new(EcsBlueGreen::new(clients, role, uid, service, traffic)));
    }
    if let Some(l) = &snapshot.lambda {
        let function = l.function_name.clone().unwrap_or_default();
        let alias = l.alias.clone().unwrap_or_default();
        let code = LambdaCode::Image { uri: String::new() };
        return Ok(Box::new(LambdaAlias::new(clients, role, uid, &function, &alias, code)));
    }
    Err(TargetError::Spec("the snapshot records neither ECS nor Lambda state".into()))
}
