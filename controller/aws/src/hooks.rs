//! Hooks: invoke a Lambda function or run an ECS task before or after traffic moves, and report
//! success or failure with the reason.
//!
//! A hook never holds a reconcile: an ECS task is started and then looked at, and a Lambda
//! function is invoked in a task of its own ([`Invocations`]) whose answer the next look picks
//! up, so a 10-minute hook costs a worker a few milliseconds per look and never delays another
//! Promotion's rollback. Each run is keyed by the Promotion's UID, the hook point and the attempt
//! (`spec.retry`), so a retried Promotion runs its hooks again instead of finding the last
//! attempt's result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ecs::types::{CapacityProviderStrategyItem, DesiredStatus, LaunchType, NetworkConfiguration};
use aws_sdk_lambda::types::InvocationType;
use kiln_api::release::ReleaseSpec;
use kiln_core::plan::HookPoint;

use crate::credentials::Clients;
use crate::error::{AwsError, Result, sdk};

/// What a hook runs.
#[derive(Debug, Clone, PartialEq)]
pub enum HookTarget {
    /// Invoke this function; a function error fails the hook.
    Lambda {
        /// Function name or ARN (optionally qualified).
        function: String,
    },
    /// Run this task definition in `cluster` the way `service` runs its tasks (network
    /// configuration, launch type or capacity providers, platform version, read from the service
    /// when the hook starts); a non-zero exit of an essential container fails it.
    EcsTask {
        /// The cluster.
        cluster: String,
        /// The service whose network and capacity settings the task uses.
        service: String,
        /// Family or family:revision.
        task_definition: String,
    },
}

/// How long a hook may run when the Release does not say (`hooks.*.timeout`).
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

impl HookTarget {
    /// The hook `release` runs at `point` in environment `env`, with how long it may take;
    /// `Ok(None)` when the Release declares none there. ECS task hooks run in the service's
    /// cluster after the environment's overrides, like the service's own tasks.
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
                let ecs = ecs.ok_or_else(|| {
                    format!("the {} hook runs ECS task {td}, but the Release has no spec.target.ecs", point.as_str())
                })?;
                HookTarget::EcsTask {
                    cluster: ecs.cluster_for(env).to_string(),
                    service: ecs.service_for(env).to_string(),
                    task_definition: td.clone(),
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

/// One run of a hook: whose, where, which attempt, and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookRun<'a> {
    /// The Promotion's UID.
    pub uid: &'a str,
    /// The hook point.
    pub point: HookPoint,
    /// The Promotion's attempt (`status.observedRetry`): a retry runs its hooks again.
    pub attempt: i32,
    /// How long the hook may run before it fails.
    pub timeout: Duration,
}

impl HookRun<'_> {
    /// The run's key, also the ECS task's `startedBy` (at most 36 characters, `[a-zA-Z0-9_-]`):
    /// `kiln-<pre|post>-<attempt>-<uid>`, the UID's hex digits cut to fit.
    pub fn key(&self) -> String {
        let point = match self.point {
            HookPoint::PreTraffic => "pre",
            HookPoint::PostTraffic => "post",
        };
        let mut key = format!("kiln-{point}-{}-", self.attempt.max(0));
        let room = 36usize.saturating_sub(key.len());
        key.extend(self.uid.chars().filter(char::is_ascii_alphanumeric).take(room));
        key
    }
}

/// Where a hook stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookState {
    /// Still running; look again with this handle.
    Running(String),
    /// Succeeded.
    Succeeded,
    /// Failed, with the reason from the function's error or the task's exit.
    Failed(String),
}

/// Runs hooks.
#[async_trait]
pub trait HookRunner: Send + Sync {
    /// Starts `run` of `hook`, or finds it if it was started before (after a restart too, for
    /// ECS tasks), and returns where it stands. Never waits for the hook to finish.
    async fn start(&self, run: &HookRun<'_>, hook: &HookTarget) -> Result<HookState>;
    /// Where the run behind `handle` (from [`HookState::Running`]) stands now.
    async fn poll(&self, run: &HookRun<'_>, hook: &HookTarget, handle: &str) -> Result<HookState>;
}

/// Lambda hook invocations in flight or finished in this process, by run key; shared by every
/// [`AwsHooks`] the controller makes. Lost on a restart: the next look invokes the function
/// again (hooks are at-least-once; the payload names the run so a function can tell).
#[derive(Debug, Clone, Default)]
pub struct Invocations(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    runs: std::sync::Mutex<HashMap<String, Invocation>>,
    /// Woken whenever an invocation gets its answer.
    answered: tokio::sync::Notify,
}

#[derive(Debug)]
enum Invocation {
    Running,
    Finished(Result<HookState>, Instant),
}

/// Finished invocations are forgotten this long after they end (their Promotion has long since
/// read the result: it looks again within seconds).
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

impl Invocations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Invocation>> {
        self.0.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until run `key` has its answer (or is not known here), for callers that would
    /// rather wait than look again later: tools and tests. The controller looks on its next
    /// reconcile instead.
    pub async fn answered(&self, key: &str) {
        loop {
            let woken = self.0.answered.notified();
            tokio::pin!(woken);
            // Registered before looking, so an answer landing in between still wakes us.
            woken.as_mut().enable();
            if !matches!(self.lock().get(key), Some(Invocation::Running)) {
                return;
            }
            woken.await;
        }
    }

    /// The state of run `key`: `None` if this process never started it (or forgot it). A failed
    /// call (not a function error) is handed out once and forgotten, so the next look retries.
    fn look(&self, key: &str) -> Option<Result<HookState>> {
        let mut all = self.lock();
        match all.get(key)? {
            Invocation::Running => Some(Ok(HookState::Running(key.to_string()))),
            Invocation::Finished(Ok(state), _) => Some(Ok(state.clone())),
            Invocation::Finished(Err(_), _) => match all.remove(key) {
                Some(Invocation::Finished(Err(e), _)) => Some(Err(e)),
                _ => None,
            },
        }
    }

    /// Marks `key` running unless it already is; true when the caller should start it.
    fn claim(&self, key: &str) -> bool {
        let mut all = self.lock();
        all.retain(|_, i| !matches!(i, Invocation::Finished(_, at) if at.elapsed() > KEEP_FINISHED));
        if all.contains_key(key) {
            return false;
        }
        all.insert(key.to_string(), Invocation::Running);
        true
    }

    fn finish(&self, key: &str, result: Result<HookState>) {
        self.lock().insert(key.to_string(), Invocation::Finished(result, Instant::now()));
        self.0.answered.notify_waiters();
    }
}

/// Records an invocation's result when its task ends, however it ends (a task dropped or
/// panicking still leaves an answer instead of a run that looks alive forever).
struct Landing {
    invocations: Invocations,
    key: String,
    result: Option<Result<HookState>>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let result = self
            .result
            .take()
            .unwrap_or_else(|| Ok(HookState::Failed("the hook's invocation ended without an answer".into())));
        self.invocations.finish(&self.key, result);
    }
}

/// Hooks on the SDK.
#[derive(Debug, Clone)]
pub struct AwsHooks {
    clients: Clients,
    invocations: Invocations,
}

impl AwsHooks {
    /// Hooks in the account of `clients`; Lambda invocations are tracked in `invocations`.
    pub fn new(clients: Clients, invocations: Invocations) -> Self {
        AwsHooks { clients, invocations }
    }
}

/// How an ECS service runs its tasks, for a hook task to run the same way.
#[derive(Debug, Default)]
struct TaskPlacement {
    network: Option<NetworkConfiguration>,
    launch_type: Option<LaunchType>,
    capacity: Vec<CapacityProviderStrategyItem>,
    platform_version: Option<String>,
}

impl AwsHooks {
    /// Reads how `service` runs its tasks: from the service, or for a service whose tasks come
    /// from task sets (deployment controller EXTERNAL or CODE_DEPLOY) from its primary task set.
    async fn placement(&self, cluster: &str, service: &str) -> Result<TaskPlacement> {
        let svc = crate::ecs::describe_service_named(&self.clients.ecs, &self.clients.scope, cluster, service).await?;
        // An empty network configuration (no awsvpc) is no network configuration.
        let awsvpc = |n: Option<&NetworkConfiguration>| n.filter(|n| n.awsvpc_configuration().is_some()).cloned();
        let task_sets = svc
            .deployment_controller()
            .is_some_and(|d| *d.r#type() != aws_sdk_ecs::types::DeploymentControllerType::Ecs);
        if !task_sets {
            return Ok(TaskPlacement {
                network: awsvpc(svc.network_configuration()),
                launch_type: svc.launch_type().cloned(),
                capacity: svc.capacity_provider_strategy().to_vec(),
                platform_version: svc.platform_version().map(str::to_string),
            });
        }
        let sets = if svc.task_sets().is_empty() {
            crate::ecs::blue_green::task_sets(&self.clients, cluster, service).await?
        } else {
            svc.task_sets().to_vec()
        };
        let primary = sets.iter().find(|t| t.status() == Some("PRIMARY")).or(sets.first());
        Ok(primary
            .map(|t| TaskPlacement {
                network: awsvpc(t.network_configuration()),
                launch_type: t.launch_type().cloned(),
                capacity: t.capacity_provider_strategy().to_vec(),
                platform_version: t.platform_version().map(str::to_string),
            })
            .unwrap_or_default())
    }

    /// Invokes `function` for `run` and waits for its answer (in an [`Invocations`] task).
    async fn invoke(
        clients: Clients,
        run_key: String,
        uid: String,
        point: HookPoint,
        attempt: i32,
        function: String,
        timeout: Duration,
    ) -> Result<HookState> {
        let payload = serde_json::json!({
            "kiln": { "promotionUid": uid, "hook": point.as_str(), "attempt": attempt, "run": run_key }
        })
        .to_string();
        let sent = clients
            .lambda
            .invoke()
            .function_name(&function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            // A synchronous invoke lasts as long as the function: the hook's timeout, not the
            // default operation timeout (and no time left for a retry that would run it twice).
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
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(aws_sdk_lambda::error::SdkError::TimeoutError(_)) => {
                return Ok(HookState::Failed(format!(
                    "hook function {function} did not finish within {}",
                    kiln_core::time::human_duration(jiff::SignedDuration::try_from(timeout).unwrap_or_default())
                )));
            }
            Err(e) => {
                let err = crate::error::from_sdk("lambda", "Invoke", e);
                if err.code() == Some("ResourceNotFoundException") {
                    return Err(AwsError::NotFound {
                        kind: "hook Lambda function",
                        name: function.clone(),
                        scope: clients.scope.clone(),
                    });
                }
                return Err(err);
            }
        };
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
}

#[async_trait]
impl HookRunner for AwsHooks {
    async fn start(&self, run: &HookRun<'_>, hook: &HookTarget) -> Result<HookState> {
        let key = run.key();
        match hook {
            HookTarget::Lambda { function } => {
                if let Some(state) = self.invocations.look(&key) {
                    return state;
                }
                if self.invocations.claim(&key) {
                    let landing = Landing { invocations: self.invocations.clone(), key: key.clone(), result: None };
                    let (clients, uid, point, attempt, function, timeout) = (
                        self.clients.clone(),
                        run.uid.to_string(),
                        run.point,
                        run.attempt,
                        function.clone(),
                        run.timeout,
                    );
                    let run_key = key.clone();
                    tokio::spawn(async move {
                        // The whole `Landing` moves in (not just its field), so it lands when
                        // this task ends, not when `start` returns.
                        let mut landing = landing;
                        landing.result =
                            Some(AwsHooks::invoke(clients, run_key, uid, point, attempt, function, timeout).await);
                    });
                }
                Ok(HookState::Running(key))
            }
            HookTarget::EcsTask { cluster, service, task_definition } => {
                // A repeat (after a crash) finds the task whether it still runs or already
                // stopped (ListTasks lists RUNNING by default; ECS keeps stopped tasks ~1 h).
                for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
                    let existing = self
                        .clients
                        .ecs
                        .list_tasks()
                        .cluster(cluster)
                        .started_by(&key)
                        .desired_status(status)
                        .send()
                        .await
                        .map_err(sdk("ecs", "ListTasks"))?;
                    if let Some(arn) = existing.task_arns().first() {
                        return self.poll(run, hook, arn).await;
                    }
                }
                let placement = self.placement(cluster, service).await?;
                // Capacity providers and a launch type exclude each other; with neither known,
                // Fargate (what kiln's ECS targets run on).
                let launch_type = match (&placement.launch_type, placement.capacity.is_empty()) {
                    (Some(l), _) => Some(l.clone()),
                    (None, true) => Some(LaunchType::Fargate),
                    (None, false) => None,
                };
                let out = self
                    .clients
                    .ecs
                    .run_task()
                    .cluster(cluster)
                    .task_definition(task_definition)
                    .started_by(&key)
                    .set_launch_type(launch_type)
                    .set_capacity_provider_strategy((!placement.capacity.is_empty()).then_some(placement.capacity))
                    .set_platform_version(placement.platform_version)
                    .set_network_configuration(placement.network)
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

    async fn poll(&self, run: &HookRun<'_>, hook: &HookTarget, handle: &str) -> Result<HookState> {
        let HookTarget::EcsTask { cluster, task_definition, .. } = hook else {
            return match self.invocations.look(handle) {
                Some(state) => state,
                // Forgotten (this process restarted): `start` invokes it again.
                None => self.start(run, hook).await,
            };
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
            // The timeout runs from when ECS created the task, so a restart does not reset it.
            let created = task.created_at().and_then(|t| jiff::Timestamp::new(t.secs(), 0).ok());
            let ran = created.map(|c| jiff::Timestamp::now().duration_since(c));
            let limit = jiff::SignedDuration::try_from(run.timeout).unwrap_or(jiff::SignedDuration::MAX);
            if ran.is_some_and(|ran| ran >= limit) {
                let took = kiln_core::time::human_duration(limit);
                self.clients
                    .ecs
                    .stop_task()
                    .cluster(cluster)
                    .task(handle)
                    .reason(format!("{TIMED_OUT}{took}"))
                    .send()
                    .await
                    .map_err(sdk("ecs", "StopTask"))?;
                return Ok(HookState::Failed(format!(
                    "hook task {task_definition} did not finish within {took}; kiln stopped it ({handle})"
                )));
            }
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

/// The reason kiln gives ECS when it stops a hook task that outlived its timeout (followed by
/// the timeout). A task stopped with it failed the hook whatever its containers' exit codes
/// (a process that handles SIGTERM may exit 0): after a crash between StopTask and the status
/// write, the next poll finds the task STOPPED and must not count it a success.
const TIMED_OUT: &str = "kiln: the hook did not finish within ";

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
    if let Some(took) = task.stopped_reason().and_then(|r| r.strip_prefix(TIMED_OUT)) {
        return HookState::Failed(format!(
            "hook task {task_definition} did not finish within {took}; kiln stopped it ({handle})"
        ));
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
                    service: "web".into(),
                    task_definition: "migrate:3".into(),
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

        // A task kiln stopped at the hook's timeout failed the hook, even if it exited 0 (a
        // restart between StopTask and the status write finds it STOPPED).
        let stopped_by_kiln = Task::builder()
            .last_status("STOPPED")
            .stopped_reason(format!("{TIMED_OUT}10m"))
            .containers(Container::builder().name("migrate").exit_code(0).build())
            .build();
        assert_eq!(
            task_verdict(&stopped_by_kiln, "migrate", "t1", &[]),
            HookState::Failed("hook task migrate did not finish within 10m; kiln stopped it (t1)".into())
        );
    }

    #[test]
    fn run_keys_fit_ecs_started_by_and_differ_per_point_and_attempt() {
        let uid = "0b7c6a1e-1111-4222-8333-944445555666";
        let run = |point, attempt| HookRun { uid, point, attempt, timeout: DEFAULT_HOOK_TIMEOUT }.key();
        let keys = [
            run(HookPoint::PreTraffic, 0),
            run(HookPoint::PostTraffic, 0),
            run(HookPoint::PreTraffic, 1),
            run(HookPoint::PostTraffic, 12345),
        ];
        assert_eq!(keys[0], "kiln-pre-0-0b7c6a1e11114222833394444");
        for k in &keys {
            assert!(k.len() <= 36 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{k}");
        }
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
    }
}
