//! Hooks: invoke a Lambda function or run an ECS task before or after traffic moves, and report
//! success or failure with the reason.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::types::{DesiredStatus, LaunchType, NetworkConfiguration};
use aws_sdk_lambda::types::InvocationType;
use kiln_api::release::ReleaseSpec;
use kiln_core::plan::HookPoint;

use crate::credentials::Clients;
use crate::error::{AwsError, Result, sdk};

/// What a hook runs.
#[derive(Debug, Clone, PartialEq)]
pub enum HookTarget {
    /// Invoke this function synchronously; a function error fails the hook.
    Lambda {
        /// Function name or ARN (optionally qualified).
        function: String,
    },
    /// Run this task definition in `cluster`; a non-zero exit of an essential container fails it.
    EcsTask {
        /// The cluster.
        cluster: String,
        /// Family or family:revision.
        task_definition: String,
        /// The service's network configuration (required for awsvpc task definitions).
        network: Option<NetworkConfiguration>,
        /// FARGATE unless the service uses another launch type.
        launch_type: LaunchType,
    },
}

/// How long a hook may run when the Release does not say (`hooks.*.timeout`).
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

impl HookTarget {
    /// The hook `release` runs at `point` in environment `env`, with how long it may take;
    /// `Ok(None)` when the Release declares none there. ECS task hooks run in the service's
    /// cluster after the environment's overrides, on Fargate (kiln's ECS targets are Fargate
    /// services).
    pub fn for_release(
        release: &ReleaseSpec,
        env: &str,
        point: HookPoint,
    ) -> std::result::Result<Option<(HookTarget, Duration)>, String> {
        let ecs = release.target.ecs.as_ref();
        let hooks = ecs
            .and_then(|e| e.hooks.as_ref())
            .or_else(|| release.target.lambda.as_ref().and_then(|l| l.hooks.as_ref()));
        let hook = hooks.and_then(|h| match point {
            HookPoint::PreTraffic => h.pre_traffic.as_ref(),
            HookPoint::PostTraffic => h.post_traffic.as_ref(),
        });
        let Some(hook) = hook else { return Ok(None) };
        let target = match (&hook.lambda_function, &hook.ecs_task_definition) {
            (Some(f), _) => HookTarget::Lambda { function: f.clone() },
            (None, Some(td)) => {
                let cluster = ecs.map(|e| crate::targets::ecs_cluster(e, env)).ok_or_else(|| {
                    format!("the {} hook runs ECS task {td}, but the Release has no spec.target.ecs", point.as_str())
                })?;
                HookTarget::EcsTask {
                    cluster,
                    task_definition: td.clone(),
                    network: None,
                    launch_type: LaunchType::Fargate,
                }
            }
            (None, None) => return Err("the hook names neither lambdaFunction nor ecsTaskDefinition".into()),
        };
        let timeout = match hook.timeout.as_deref() {
            None => DEFAULT_HOOK_TIMEOUT,
            Some(t) => kiln_core::duration::parse("timeout", t)
                .ok()
                .and_then(|d| Duration::try_from(d).ok())
                .ok_or_else(|| format!("the {} hook's timeout {t:?} is not a positive duration", point.as_str()))?,
        };
        Ok(Some((target, timeout)))
    }
}

/// Where a hook stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookState {
    /// Still running (an ECS task); poll with this handle.
    Running(String),
    /// Succeeded.
    Succeeded,
    /// Failed, with the reason from the function's error or the task's exit.
    Failed(String),
}

/// Runs hooks.
#[async_trait]
pub trait HookRunner: Send + Sync {
    /// Starts the hook for Promotion `uid` at `point` (e.g. "preTraffic"), or finds the run this
    /// Promotion already started. A Lambda hook finishes within the call.
    async fn start(&self, uid: &str, point: &str, hook: &HookTarget, timeout: Duration) -> Result<HookState>;
    /// The state of a running hook (the handle from [`HookState::Running`]).
    async fn poll(&self, hook: &HookTarget, handle: &str) -> Result<HookState>;
}

/// Hooks on the SDK.
#[derive(Debug, Clone)]
pub struct AwsHooks {
    clients: Clients,
}

impl AwsHooks {
    /// Hooks in the account of `clients`.
    pub fn new(clients: Clients) -> Self {
        AwsHooks { clients }
    }
}

/// ECS `startedBy` (at most 36 characters): identifies the Promotion and hook point.
pub fn started_by(uid: &str, point: &str) -> String {
    let mut s = format!("kiln-{point}-{uid}");
    s.truncate(36);
    s
}

#[async_trait]
impl HookRunner for AwsHooks {
    async fn start(&self, uid: &str, point: &str, hook: &HookTarget, timeout: Duration) -> Result<HookState> {
        match hook {
            HookTarget::Lambda { function } => {
                let payload = serde_json::json!({ "kiln": { "promotionUid": uid, "hook": point } }).to_string();
                let out = self
                    .clients
                    .lambda
                    .invoke()
                    .function_name(function)
                    .invocation_type(InvocationType::RequestResponse)
                    .payload(aws_sdk_lambda::primitives::Blob::new(payload))
                    // A synchronous invoke lasts as long as the function: the hook's timeout, not
                    // the default operation timeout.
                    .customize()
                    .config_override(
                        aws_sdk_lambda::config::Builder::default().timeout_config(
                            aws_config::timeout::TimeoutConfig::builder()
                                .operation_timeout(timeout)
                                .operation_attempt_timeout(timeout)
                                .build(),
                        ),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        let err = crate::error::from_sdk("lambda", "Invoke", e);
                        if err.code() == Some("ResourceNotFoundException") {
                            AwsError::NotFound {
                                kind: "hook Lambda function",
                                name: function.clone(),
                                scope: self.clients.scope.clone(),
                            }
                        } else {
                            err
                        }
                    })?;
                Ok(match out.function_error() {
                    None => HookState::Succeeded,
                    Some(kind) => {
                        let body = out.payload().map(|b| String::from_utf8_lossy(b.as_ref()).to_string());
                        let message = body
                            .as_deref()
                            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                            .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(str::to_string))
                            .or(body)
                            .unwrap_or_default();
                        let mut reason = format!("hook function {function} failed ({kind}): {message}");
                        reason.truncate(512);
                        HookState::Failed(reason)
                    }
                })
            }
            HookTarget::EcsTask { cluster, task_definition, network, launch_type } => {
                let by = started_by(uid, point);
                // A repeat (after a crash) finds the task whether it still runs or already
                // stopped (ListTasks lists RUNNING by default; ECS keeps stopped tasks ~1 h).
                for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
                    let existing = self
                        .clients
                        .ecs
                        .list_tasks()
                        .cluster(cluster)
                        .started_by(&by)
                        .desired_status(status)
                        .send()
                        .await
                        .map_err(sdk("ecs", "ListTasks"))?;
                    if let Some(arn) = existing.task_arns().first() {
                        return self.poll(hook, arn).await;
                    }
                }
                let out = self
                    .clients
                    .ecs
                    .run_task()
                    .cluster(cluster)
                    .task_definition(task_definition)
                    .started_by(&by)
                    .launch_type(launch_type.clone())
                    .set_network_configuration(network.clone())
                    .count(1)
                    .send()
                    .await
                    .map_err(sdk("ecs", "RunTask"))?;
                if let Some(f) = out.failures().first() {
                    return Ok(HookState::Failed(format!(
                        "hook task {task_definition} could not start: {}",
                        f.reason().unwrap_or("no reason given")
                    )));
                }
                let arn = out.tasks().first().and_then(|t| t.task_arn()).ok_or(AwsError::Incomplete {
                    service: "ecs",
                    operation: "RunTask",
                    field: "tasks[0].taskArn",
                })?;
                Ok(HookState::Running(arn.to_string()))
            }
        }
    }

    async fn poll(&self, hook: &HookTarget, handle: &str) -> Result<HookState> {
        let HookTarget::EcsTask { cluster, task_definition, .. } = hook else {
            // Lambda hooks finish within `start`.
            return Ok(HookState::Succeeded);
        };
        let out = self
            .clients
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(handle)
            .send()
            .await
            .map_err(sdk("ecs", "DescribeTasks"))?;
        let Some(task) = out.tasks().first() else {
            return Ok(HookState::Failed(format!("hook task {handle} ({task_definition}) is gone")));
        };
        if task.last_status() != Some("STOPPED") {
            return Ok(HookState::Running(handle.to_string()));
        }
        // Only essential containers decide (a sidecar may exit non-zero when the task stops).
        let td = task.task_definition_arn().unwrap_or(task_definition);
        let def = self
            .clients
            .ecs
            .describe_task_definition()
            .task_definition(td)
            .send()
            .await
            .map_err(sdk("ecs", "DescribeTaskDefinition"))?;
        let essential: Vec<String> = def
            .task_definition()
            .map(|d| d.container_definitions())
            .unwrap_or_default()
            .iter()
            .filter(|c| c.essential() != Some(false))
            .filter_map(|c| c.name().map(str::to_string))
            .collect();
        Ok(task_verdict(task, task_definition, handle, &essential))
    }
}

/// The verdict on a hook task: running until STOPPED; then success only if every essential
/// container (`essential`: their names; empty = judge every container) exited 0.
fn task_verdict(
    task: &aws_sdk_ecs::types::Task,
    task_definition: &str,
    handle: &str,
    essential: &[String],
) -> HookState {
    if task.last_status() != Some("STOPPED") {
        return HookState::Running(handle.to_string());
    }
    let judged: Vec<&aws_sdk_ecs::types::Container> = task
        .containers()
        .iter()
        .filter(|c| essential.is_empty() || c.name().is_some_and(|n| essential.iter().any(|e| e == n)))
        .collect();
    let failed: Vec<String> = judged
        .iter()
        .filter(|c| c.exit_code() != Some(0))
        .map(|c| match c.exit_code() {
            Some(code) => format!("container {} exited with code {code}", c.name().unwrap_or("?")),
            None => format!(
                "container {} has no exit code ({})",
                c.name().unwrap_or("?"),
                c.reason().unwrap_or("no reason given")
            ),
        })
        .collect();
    if failed.is_empty() && !judged.is_empty() {
        HookState::Succeeded
    } else {
        HookState::Failed(format!(
            "hook task {task_definition} failed: {}; stopped: {}",
            if failed.is_empty() { "no containers reported".to_string() } else { failed.join(", ") },
            task.stopped_reason().unwrap_or("no reason given")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Container, Task};
    use kiln_api::fixtures;

    fn release(target: serde_json::Value) -> ReleaseSpec {
        let target = serde_json::from_value(target).unwrap_or_else(|e| panic!("{e}"));
        ReleaseSpec {
            artifacts: vec![fixtures::artifact("app", 1)],
            ..fixtures::release("web", target, &["dev", "prod"])
        }
    }

    #[test]
    fn a_release_hook_runs_in_the_environments_cluster_with_its_timeout() {
        let r = release(serde_json::json!({"ecs": {
            "cluster": "dev-cluster", "service": "web", "container": "app", "strategy": "rolling",
            "hooks": {"preTraffic": {"ecsTaskDefinition": "migrate:3", "timeout": "90s"},
                      "postTraffic": {"lambdaFunction": "smoke"}},
            "environmentOverrides": {"prod": {"cluster": "prod-cluster"}}
        }}));
        let pre = HookTarget::for_release(&r, "prod", HookPoint::PreTraffic).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pre,
            Some((
                HookTarget::EcsTask {
                    cluster: "prod-cluster".into(),
                    task_definition: "migrate:3".into(),
                    network: None,
                    launch_type: LaunchType::Fargate,
                },
                Duration::from_secs(90)
            ))
        );
        let post = HookTarget::for_release(&r, "dev", HookPoint::PostTraffic).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(post, Some((HookTarget::Lambda { function: "smoke".into() }, DEFAULT_HOOK_TIMEOUT)));
        let none = release(serde_json::json!({"lambda": {"functionName": "f", "strategy": "canary"}}));
        assert_eq!(HookTarget::for_release(&none, "dev", HookPoint::PreTraffic), Ok(None));
    }

    #[test]
    fn an_ecs_task_hook_on_a_lambda_release_is_refused_with_a_reason() {
        let r = release(serde_json::json!({"lambda": {
            "functionName": "f", "strategy": "canary",
            "hooks": {"preTraffic": {"ecsTaskDefinition": "migrate"}}
        }}));
        let err = HookTarget::for_release(&r, "dev", HookPoint::PreTraffic).unwrap_err();
        assert!(err.contains("has no spec.target.ecs"), "{err}");
    }

    #[test]
    fn task_verdicts() {
        let running = Task::builder().last_status("RUNNING").build();
        assert_eq!(task_verdict(&running, "migrate", "t1", &[]), HookState::Running("t1".into()));
        let ok = Task::builder()
            .last_status("STOPPED")
            .containers(Container::builder().name("migrate").exit_code(0).build())
            .build();
        assert_eq!(task_verdict(&ok, "migrate", "t1", &[]), HookState::Succeeded);
        let bad = Task::builder()
            .last_status("STOPPED")
            .stopped_reason("Essential container in task exited")
            .containers(Container::builder().name("migrate").exit_code(3).build())
            .build();
        assert_eq!(
            task_verdict(&bad, "migrate", "t1", &[]),
            HookState::Failed(
                "hook task migrate failed: container migrate exited with code 3; stopped: Essential container in task exited"
                    .into()
            )
        );
        let lost = Task::builder()
            .last_status("STOPPED")
            .stopped_reason("Task failed to start")
            .containers(Container::builder().name("migrate").reason("CannotPullContainerError").build())
            .build();
        let HookState::Failed(reason) = task_verdict(&lost, "migrate", "t1", &[]) else { panic!("lost task fails") };
        assert!(reason.contains("CannotPullContainerError") && reason.contains("Task failed to start"), "{reason}");

        // A non-essential sidecar's exit code does not fail the hook; an essential one's does.
        let sidecar = Task::builder()
            .last_status("STOPPED")
            .containers(Container::builder().name("migrate").exit_code(0).build())
            .containers(Container::builder().name("proxy").exit_code(137).build())
            .build();
        let essential = ["migrate".to_string()];
        assert_eq!(task_verdict(&sidecar, "migrate", "t1", &essential), HookState::Succeeded);
        let HookState::Failed(reason) = task_verdict(&sidecar, "migrate", "t1", &[]) else { panic!("all judged") };
        assert!(reason.contains("proxy exited with code 137"), "{reason}");
        let HookState::Failed(_) = task_verdict(&sidecar, "migrate", "t1", &["proxy".to_string()]) else {
            panic!("an essential container failing fails the hook")
        };
    }

    #[test]
    fn started_by_fits_ecs() {
        assert_eq!(started_by("0b7c6a1e-1111-4222-8333-944445555666", "preTraffic").len(), 36);
    }
}
