//! In-memory fakes of every port, for unit tests of the controller (and of kiln-aws's own
//! caches). They keep the same contracts as the real adapters: idempotent operations, batches
//! of at most 100 alarm names, NotFound errors naming the resource.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use jiff::{SignedDuration, Timestamp};
use kiln_api::promotion::{ContainerImage, DeployedResources, EcsSnapshot, Snapshot, TargetGroupWeight};
use kiln_core::running::{ReleaseMark, Running, RunningState};
use kiln_core::signals::{AlarmObservation, AlarmState};

use crate::codedeploy::{CodeDeploy, CodeDeployRequest, DeploymentState, StopOutcome};
use crate::credentials::{AssumeRole, EnvironmentAws, RoleCredentials};
use crate::error::{AwsError, Result, Scope};
use crate::evidence::EvidenceStore;
use crate::hooks::{HookRun, HookRunner, HookState, HookTarget};
use crate::signals::{AlarmSource, MAX_NAMES_PER_CALL, MetricRequest};
use crate::traffic::{TrafficTarget, now_time};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ARN of the fake target group `color` (blue, green) of `service` in `scope`.
pub fn target_group_arn(scope: &Scope, service: &str, color: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{}:{}:targetgroup/{service}-{color}/0123456789abcdef",
        scope.region, scope.account_id
    )
}

/// The ARN of the fake listener of `service` in `scope` (load balancer `<service>-alb`, port 80).
pub fn listener_arn(scope: &Scope, service: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{}:{}:listener/app/{service}-alb/0123456789abcdef/80",
        scope.region, scope.account_id
    )
}

/// A fake scope for errors.
pub fn scope() -> Scope {
    Scope { account_id: "111111111111".into(), region: "us-east-1".into() }
}

/// STS that hands out credentials living `lifetime`, counting calls.
#[derive(Debug)]
pub struct FakeAssumeRole {
    /// How long the credentials live.
    pub lifetime: SignedDuration,
    calls: AtomicUsize,
    /// Every call waits here until this many calls are in flight at once.
    meeting: Option<tokio::sync::Barrier>,
}

impl FakeAssumeRole {
    /// Credentials that live `lifetime`.
    pub fn new(lifetime: SignedDuration) -> Self {
        FakeAssumeRole { lifetime, calls: AtomicUsize::new(0), meeting: None }
    }

    /// Credentials that live an hour, handed out only once `n` calls are in flight together: a
    /// caller that serializes AssumeRole calls never gets any.
    pub fn meeting(n: usize) -> Self {
        FakeAssumeRole {
            meeting: Some(tokio::sync::Barrier::new(n)),
            ..FakeAssumeRole::new(SignedDuration::from_hours(1))
        }
    }

    /// AssumeRole calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl AssumeRole for FakeAssumeRole {
    async fn assume(&self, _env: &EnvironmentAws, session: &str) -> Result<RoleCredentials> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.meeting {
            Some(barrier) => {
                barrier.wait().await;
            }
            // Give other callers the chance to pile up behind this call, as STS's latency would.
            None => {
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
            }
        }
        Ok(RoleCredentials {
            credentials: Credentials::new(format!("ASIAFAKE{n}"), "secret", Some(session.to_string()), None, "fake"),
            expires_at: Timestamp::now() + self.lifetime,
        })
    }
}

/// Datapoints of one metric.
type Series = Vec<(Timestamp, f64)>;

#[derive(Debug, Clone)]
struct FakeAlarm {
    state: AlarmState,
    changed_at: Timestamp,
    history: Vec<(Timestamp, AlarmState)>,
}

/// CloudWatch in memory: alarms with their history, metric series, call counters.
#[derive(Default)]
pub struct FakeCloudWatch {
    alarms: Mutex<BTreeMap<String, FakeAlarm>>,
    series: Mutex<HashMap<(String, String), Series>>,
    /// Whether DescribeAlarmHistory answers (moto's does not).
    history_unavailable: std::sync::atomic::AtomicBool,
    describe_calls: AtomicUsize,
    history_calls: AtomicUsize,
    /// Whether DescribeAlarmHistory is throttled.
    history_throttled: std::sync::atomic::AtomicBool,
    /// Whether every alarm read is refused (AccessDenied), as after a broken role policy.
    reads_denied: std::sync::atomic::AtomicBool,
    /// The clock reads are stamped with (None: the wall clock).
    clock: Option<FakeClock>,
}

/// A test's clock, as the fakes read it.
pub type FakeClock = std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>;

impl FakeCloudWatch {
    /// An empty account.
    pub fn new() -> Self {
        FakeCloudWatch::default()
    }

    /// Sets (or creates) an alarm's state at `at`, recording the change in its history.
    pub fn set_state(&self, name: &str, state: AlarmState, at: Timestamp) {
        let mut alarms = lock(&self.alarms);
        let a = alarms.entry(name.to_string()).or_insert(FakeAlarm {
            state: AlarmState::InsufficientData,
            changed_at: at,
            history: Vec::new(),
        });
        if a.state != state {
            a.state = state;
            a.changed_at = at;
            a.history.push((at, state));
        }
    }

    /// Reads stamped by `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: FakeClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Makes DescribeAlarmHistory unavailable, as in moto or without the permission.
    pub fn without_history(self) -> Self {
        self.history_unavailable.store(true, Ordering::SeqCst);
        self
    }

    /// Refuses every DescribeAlarms with AccessDenied until called with `false`.
    pub fn deny_reads(&self, on: bool) {
        self.reads_denied.store(on, Ordering::SeqCst);
    }

    /// Makes DescribeAlarmHistory throttled (after the SDK's retries) until called with `false`.
    pub fn throttle_history(&self, on: bool) {
        self.history_throttled.store(on, Ordering::SeqCst);
    }

    /// Adds datapoints to `namespace`/`metric`.
    pub fn put_metric(&self, namespace: &str, metric: &str, points: &[(Timestamp, f64)]) {
        lock(&self.series).entry((namespace.to_string(), metric.to_string())).or_default().extend_from_slice(points);
    }

    /// DescribeAlarms calls so far.
    pub fn describe_calls(&self) -> usize {
        self.describe_calls.load(Ordering::SeqCst)
    }

    /// DescribeAlarmHistory calls so far.
    pub fn history_calls(&self) -> usize {
        self.history_calls.load(Ordering::SeqCst)
    }

    fn observe(name: &str, a: &FakeAlarm) -> AlarmObservation {
        AlarmObservation { name: name.to_string(), state: a.state, state_changed_at: a.changed_at, history: None }
    }
}

impl std::fmt::Debug for FakeCloudWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCloudWatch").field("alarms", &self.alarms).finish_non_exhaustive()
    }
}

#[async_trait]
impl AlarmSource for FakeCloudWatch {
    fn now(&self) -> Timestamp {
        self.clock.as_ref().map_or_else(Timestamp::now, |c| c())
    }

    async fn alarms_by_name(&self, names: &[String]) -> Result<Vec<AlarmObservation>> {
        if names.len() > MAX_NAMES_PER_CALL {
            return Err(AwsError::Api {
                service: "monitoring",
                operation: "DescribeAlarms",
                code: "ValidationError".into(),
                message: format!("at most {MAX_NAMES_PER_CALL} alarm names"),
            });
        }
        self.describe_calls.fetch_add(1, Ordering::SeqCst);
        if self.reads_denied.load(Ordering::SeqCst) {
            return Err(AwsError::AccessDenied {
                service: "monitoring",
                operation: "DescribeAlarms",
                message: "not authorized to perform: cloudwatch:DescribeAlarms".into(),
            });
        }
        let alarms = lock(&self.alarms);
        Ok(names.iter().filter_map(|n| alarms.get(n).map(|a| Self::observe(n, a))).collect())
    }

    async fn alarms_by_prefix(&self, prefix: &str) -> Result<Vec<AlarmObservation>> {
        let alarms = lock(&self.alarms);
        let matching: Vec<_> =
            alarms.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(n, a)| Self::observe(n, a)).collect();
        // Pages of 100, like CloudWatch.
        let pages = matching.len().div_ceil(100).max(1);
        self.describe_calls.fetch_add(pages, Ordering::SeqCst);
        Ok(matching)
    }

    async fn alarm_history(&self, name: &str, since: Timestamp) -> Result<Option<Vec<(Timestamp, AlarmState)>>> {
        self.history_calls.fetch_add(1, Ordering::SeqCst);
        if self.history_throttled.load(Ordering::SeqCst) {
            return Err(crate::error::classify(
                "cloudwatch",
                "DescribeAlarmHistory",
                400,
                "Throttling".into(),
                "Rate exceeded".into(),
            ));
        }
        if self.history_unavailable.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let alarms = lock(&self.alarms);
        Ok(Some(
            alarms
                .get(name)
                .map(|a| a.history.iter().filter(|(t, _)| *t >= since).copied().collect())
                .unwrap_or_default(),
        ))
    }

    async fn metric_data(
        &self,
        requests: &[MetricRequest],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Vec<(Timestamp, f64)>>> {
        let series = lock(&self.series);
        Ok(requests
            .iter()
            .map(|r| {
                series
                    .get(&(r.query.namespace.clone(), r.query.metric_name.clone()))
                    .map(|s| s.iter().filter(|(t, _)| *t >= start && *t <= end).copied().collect())
                    .unwrap_or_default()
            })
            .collect())
    }
}

/// The observable state of a [`FakeEcs`] service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeTrafficState {
    /// Listener weights (blue, green).
    pub weights: Vec<TargetGroupWeight>,
    /// The primary task set.
    pub primary: String,
    /// Task sets: (id, externalId).
    pub task_sets: Vec<(String, String)>,
    /// Registered task definitions.
    pub task_definitions: Vec<String>,
    /// The serving task definition's containers and images, as a snapshot reads them (none by
    /// default: nothing for the `containerImages` policy to check).
    pub containers: Vec<ContainerImage>,
}

/// What a task set runs: kiln's mark (if any) and the containers' images.
type Serving = (Option<ReleaseMark>, Vec<ContainerImage>);

/// Where a held call stops ([`FakeEcs::hold_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Before it reaches AWS: nothing changes until it is released.
    Before,
    /// After AWS applied it, before the answer comes back (a crash here leaves the change made
    /// and unrecorded).
    After,
}

/// A call held by [`FakeEcs::hold_next`]: the test waits until it is reached, then releases it
/// (or drops the caller, as a crash would).
#[derive(Debug)]
pub struct HeldCall {
    reached: tokio::sync::watch::Sender<bool>,
    released: tokio::sync::watch::Sender<bool>,
}

impl HeldCall {
    /// Waits until the call is reached.
    pub async fn reached(&self) {
        let mut rx = self.reached.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Lets the call go on.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}

/// One ECS service shifted by target-group weights, in memory, shared by every Promotion that
/// targets it (as AWS is), with failure injection and held calls. Blue serves 100 % at first.
#[derive(Debug)]
pub struct FakeEcs {
    scope: Scope,
    cluster: String,
    service: String,
    state: Mutex<FakeTrafficState>,
    fail: Mutex<HashMap<&'static str, AwsError>>,
    /// Operations that answer "still in progress" every time (a task set that never reaches
    /// steady state).
    stuck: Mutex<Vec<&'static str>>,
    holds: Mutex<HashMap<&'static str, (Hold, std::sync::Arc<HeldCall>)>>,
    hold_at: Mutex<Option<(usize, Hold, std::sync::Arc<HeldCall>)>>,
    calls: Mutex<Vec<String>>,
    /// What each task set runs: kiln's mark and the containers' images (task sets not listed run
    /// `state.containers`, unmarked).
    serving: Mutex<BTreeMap<String, Serving>>,
}

impl FakeEcs {
    /// `cluster`/`service` in `scope`, blue serving everything.
    pub fn new(scope: Scope, cluster: &str, service: &str) -> Self {
        let weights = vec![
            TargetGroupWeight { target_group_arn: target_group_arn(&scope, service, "blue"), weight: 100 },
            TargetGroupWeight { target_group_arn: target_group_arn(&scope, service, "green"), weight: 0 },
        ];
        FakeEcs {
            scope,
            cluster: cluster.to_string(),
            service: service.to_string(),
            state: Mutex::new(FakeTrafficState {
                weights,
                primary: "ts/blue".into(),
                task_sets: vec![("ts/blue".into(), "initial".into())],
                task_definitions: vec![format!("td/{service}:1")],
                containers: Vec::new(),
            }),
            fail: Mutex::new(HashMap::new()),
            stuck: Mutex::new(Vec::new()),
            holds: Mutex::new(HashMap::new()),
            hold_at: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            serving: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the primary task set run `containers` (name, image) marked with `mark`, as if kiln
    /// (or, with `None`, someone else) had deployed them.
    pub fn set_serving(&self, mark: Option<ReleaseMark>, containers: &[(&str, &str)]) {
        let containers: Vec<ContainerImage> =
            containers.iter().map(|(n, i)| ContainerImage { name: (*n).into(), image: (*i).into() }).collect();
        let primary = {
            let mut st = lock(&self.state);
            st.containers = containers.clone();
            st.primary.clone()
        };
        lock(&self.serving).insert(primary, (mark, containers));
    }

    /// kiln's mark on what the primary task set runs (None: unmarked).
    pub fn serving_mark(&self) -> Option<ReleaseMark> {
        let primary = lock(&self.state).primary.clone();
        lock(&self.serving).get(&primary).and_then(|(m, _)| m.clone())
    }

    /// The next call of `operation` ("snapshot", "prepare", "shift", "finalize", "restore")
    /// fails with `error`.
    pub fn fail_next(&self, operation: &'static str, error: AwsError) {
        lock(&self.fail).insert(operation, error);
    }

    /// Every call of `operation` answers "still in progress" (AWS never finishes it) until
    /// called again with `false`.
    pub fn stick(&self, operation: &'static str, stuck: bool) {
        let mut ops = lock(&self.stuck);
        ops.retain(|o| *o != operation);
        if stuck {
            ops.push(operation);
        }
    }

    /// The next call of `operation` stops at `when` until the returned handle releases it.
    pub fn hold_next(&self, operation: &'static str, when: Hold) -> std::sync::Arc<HeldCall> {
        let held = std::sync::Arc::new(HeldCall {
            reached: tokio::sync::watch::Sender::new(false),
            released: tokio::sync::watch::Sender::new(false),
        });
        lock(&self.holds).insert(operation, (when, held.clone()));
        held
    }

    /// The current state.
    pub fn state(&self) -> FakeTrafficState {
        lock(&self.state).clone()
    }

    /// Sets the serving task definition's containers: (name, image).
    pub fn set_containers(&self, containers: &[(&str, &str)]) {
        lock(&self.state).containers =
            containers.iter().map(|(n, i)| ContainerImage { name: (*n).into(), image: (*i).into() }).collect();
    }

    /// Operations called so far, in order (`shift 10`, `prepare`, …).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// The `n`-th call (0-based, counting every operation) stops at `when` until the returned
    /// handle releases it: a crash test walks `n` over every call of a run.
    pub fn hold_call(&self, n: usize, when: Hold) -> std::sync::Arc<HeldCall> {
        let held = std::sync::Arc::new(HeldCall {
            reached: tokio::sync::watch::Sender::new(false),
            released: tokio::sync::watch::Sender::new(false),
        });
        *lock(&self.hold_at) = Some((n, when, held.clone()));
        held
    }

    async fn wait(&self, op: &'static str, n: usize, when: Hold) {
        let by_op = {
            let mut holds = lock(&self.holds);
            match holds.get(op) {
                Some((w, _)) if *w == when => holds.remove(op).map(|(_, h)| h),
                _ => None,
            }
        };
        let by_index = {
            let mut at = lock(&self.hold_at);
            match at.as_ref() {
                Some((i, w, _)) if *i == n && *w == when => at.take().map(|(_, _, h)| h),
                _ => None,
            }
        };
        for h in by_op.into_iter().chain(by_index) {
            h.reached.send_replace(true);
            let mut rx = h.released.subscribe();
            let _ = rx.wait_for(|r| *r).await;
        }
    }

    /// Records the call, honours a hold before it and an injected failure; returns the call's
    /// index for [`FakeEcs::leave`].
    async fn enter(&self, op: &'static str, detail: String) -> Result<usize> {
        let n = lock(&self.calls).len();
        self.wait(op, n, Hold::Before).await;
        lock(&self.calls).push(detail);
        if lock(&self.stuck).contains(&op) {
            return Err(AwsError::InProgress {
                what: format!("{op} of {}/{}: 1 of 3 tasks running", self.cluster, self.service),
                scope: self.scope.clone(),
            });
        }
        match lock(&self.fail).remove(op) {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Honours a hold after the call took effect.
    async fn leave(&self, op: &'static str, n: usize) {
        self.wait(op, n, Hold::After).await;
    }
}

/// A [`FakeEcs`] service as one Promotion acts on it.
#[derive(Debug)]
pub struct FakeTraffic {
    uid: String,
    ecs: std::sync::Arc<FakeEcs>,
    /// What the Promotion deploys (None: a restore only).
    target: Option<crate::ecs::EcsService>,
    /// Recorded in snapshots, as the real adapters record the role they act as.
    role_arn: Option<String>,
}

impl FakeTraffic {
    /// A service of its own (cluster and service `web`), blue serving 100%, green at 0, for
    /// Promotion `uid`.
    pub fn new(uid: &str) -> Self {
        FakeTraffic::on(std::sync::Arc::new(FakeEcs::new(scope(), "web", "web")), uid)
    }

    /// `ecs` as Promotion `uid` acts on it.
    pub fn on(ecs: std::sync::Arc<FakeEcs>, uid: &str) -> Self {
        FakeTraffic { uid: uid.to_string(), ecs, target: None, role_arn: None }
    }

    /// The same, deploying `target`'s images with its mark.
    pub fn deploying(mut self, target: crate::ecs::EcsService) -> Self {
        self.target = Some(target);
        self
    }

    /// The same, acting as `role_arn` (recorded in snapshots so a restore can find it).
    pub fn as_role(mut self, role_arn: &str) -> Self {
        self.role_arn = Some(role_arn.to_string());
        self
    }

    /// The next call of `operation` ("snapshot", "prepare", "shift", "finalize", "restore")
    /// fails with `error`.
    pub fn fail_next(&self, operation: &'static str, error: AwsError) {
        self.ecs.fail_next(operation, error);
    }

    /// The current state.
    pub fn state(&self) -> FakeTrafficState {
        self.ecs.state()
    }

    /// Operations called so far.
    pub fn calls(&self) -> Vec<String> {
        self.ecs.calls()
    }

    fn green(&self) -> String {
        format!("ts/{}", self.uid)
    }
}

#[async_trait]
impl TrafficTarget for FakeTraffic {
    async fn running(&self) -> Result<RunningState> {
        if let Some(e) = lock(&self.ecs.fail).remove("running") {
            return Err(e);
        }
        let Some(target) = &self.target else {
            return Ok(RunningState::Unknown("a restore only".into()));
        };
        let (primary, unmarked) = {
            let st = lock(&self.ecs.state);
            (st.primary.clone(), st.containers.clone())
        };
        let (mark, containers) = lock(&self.ecs.serving).get(&primary).cloned().unwrap_or((None, unmarked));
        let image_of =
            |name: &str| containers.iter().find(|c| c.name == name).map(|c| c.image.clone()).unwrap_or_default();
        Ok(RunningState::Runs(Running {
            what: format!("ECS service {} in cluster {} (task set {primary})", self.ecs.service, self.ecs.cluster),
            mark,
            same_artifacts: target.images().iter().all(|(name, image)| image_of(name) == *image),
            artifact: image_of(&target.container),
        }))
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let n = self.ecs.enter("snapshot", "snapshot".into()).await?;
        let snapshot = {
            let st = lock(&self.ecs.state);
            Snapshot {
                captured_at: Some(now_time()),
                account_id: Some(self.ecs.scope.account_id.clone()),
                region: Some(self.ecs.scope.region.clone()),
                role_arn: self.role_arn.clone(),
                ecs: Some(EcsSnapshot {
                    cluster: Some(self.ecs.cluster.clone()),
                    service: Some(self.ecs.service.clone()),
                    task_definition: st.task_definitions.first().cloned(),
                    containers: st.containers.clone(),
                    primary_task_set: Some(st.primary.clone()),
                    listener_weights: st.weights.clone(),
                    listener_or_rule_arn: Some(listener_arn(&self.ecs.scope, &self.ecs.service)),
                }),
                lambda: None,
            }
        };
        self.ecs.leave("snapshot", n).await;
        Ok(snapshot)
    }

    async fn prepare(&self) -> Result<DeployedResources> {
        let n = self.ecs.enter("prepare", "prepare".into()).await?;
        let green = self.green();
        let td = format!("td/{}:{}", self.ecs.service, self.uid);
        {
            let mut st = lock(&self.ecs.state);
            if !st.task_definitions.contains(&td) {
                st.task_definitions.push(td.clone());
            }
            if !st.task_sets.iter().any(|(id, _)| *id == green) {
                st.task_sets.push((green.clone(), self.uid.clone()));
            }
        }
        if let Some(t) = &self.target {
            let images =
                t.images().iter().map(|(n, i)| ContainerImage { name: (*n).into(), image: (*i).into() }).collect();
            lock(&self.ecs.serving).insert(green.clone(), (t.mark.clone(), images));
        }
        self.ecs.leave("prepare", n).await;
        Ok(DeployedResources { task_definition: Some(td), task_set: Some(green), ..DeployedResources::default() })
    }

    async fn shift(&self, _deployed: &DeployedResources, weight: i32) -> Result<()> {
        let n = self.ecs.enter("shift", format!("shift {weight}")).await?;
        let (scope, service) = (&self.ecs.scope, &self.ecs.service);
        lock(&self.ecs.state).weights = vec![
            TargetGroupWeight { target_group_arn: target_group_arn(scope, service, "blue"), weight: 100 - weight },
            TargetGroupWeight { target_group_arn: target_group_arn(scope, service, "green"), weight },
        ];
        self.ecs.leave("shift", n).await;
        Ok(())
    }

    async fn finalize(&self, _deployed: &DeployedResources) -> Result<()> {
        let n = self.ecs.enter("finalize", "finalize".into()).await?;
        let green = self.green();
        {
            let mut st = lock(&self.ecs.state);
            if !st.task_sets.iter().any(|(id, _)| *id == green) {
                return Err(AwsError::Invalid {
                    message: "the green task set is gone".into(),
                    scope: self.ecs.scope.clone(),
                });
            }
            st.primary = green.clone();
            st.task_sets.retain(|(id, _)| *id == green);
        }
        self.ecs.leave("finalize", n).await;
        Ok(())
    }

    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let n = self.ecs.enter("restore", "restore".into()).await?;
        let Some(ecs) = &snapshot.ecs else {
            return Err(AwsError::Invalid {
                message: "no ECS state in the snapshot".into(),
                scope: self.ecs.scope.clone(),
            });
        };
        {
            let mut st = lock(&self.ecs.state);
            st.weights = ecs.listener_weights.clone();
            if let Some(p) = &ecs.primary_task_set
                && st.task_sets.iter().any(|(id, _)| id == p)
            {
                st.primary = p.clone();
            }
            let uid = self.uid.clone();
            st.task_sets.retain(|(_, ext)| *ext != uid);
        }
        self.ecs.leave("restore", n).await;
        Ok(())
    }
}

/// CodeDeploy in memory, including StopDeployment (which moto lacks).
#[derive(Debug, Default)]
pub struct FakeCodeDeploy {
    deployments: Mutex<BTreeMap<String, (String, DeploymentState)>>,
    created: Mutex<Vec<(String, String, String)>>,
    stopped: Mutex<Vec<String>>,
}

impl FakeCodeDeploy {
    /// No deployments.
    pub fn new() -> Self {
        FakeCodeDeploy::default()
    }

    /// Moves a deployment to `state` (CodeDeploy progressing on its own).
    pub fn set_state(&self, id: &str, state: DeploymentState) {
        if let Some(d) = lock(&self.deployments).get_mut(id) {
            d.1 = state;
        }
    }

    /// How many deployments exist.
    pub fn count(&self) -> usize {
        lock(&self.deployments).len()
    }

    /// Every deployment created, in order: (ID, Promotion UID, task definition).
    pub fn created(&self) -> Vec<(String, String, String)> {
        lock(&self.created).clone()
    }

    /// The deployment ID of every StopDeployment call, in order.
    pub fn stopped(&self) -> Vec<String> {
        lock(&self.stopped).clone()
    }
}

#[async_trait]
impl CodeDeploy for FakeCodeDeploy {
    async fn create(&self, uid: &str, request: &CodeDeployRequest) -> Result<String> {
        let mut d = lock(&self.deployments);
        // Like the real one: only an unfinished deployment of this Promotion is found again.
        if let Some((id, _)) = d.iter().find(|(_, (u, st))| u == uid && matches!(st, DeploymentState::InProgress(_))) {
            return Ok(id.clone());
        }
        let id = format!("d-{:09}", d.len() + 1);
        lock(&self.created).push((id.clone(), uid.to_string(), request.task_definition.clone()));
        d.insert(
            id.clone(),
            (
                uid.to_string(),
                DeploymentState::InProgress(format!("deployment to {} created", request.deployment_group)),
            ),
        );
        Ok(id)
    }

    async fn state(&self, deployment_id: &str) -> Result<DeploymentState> {
        lock(&self.deployments).get(deployment_id).map(|d| d.1.clone()).ok_or_else(|| AwsError::NotFound {
            kind: "CodeDeploy deployment",
            name: deployment_id.to_string(),
            scope: scope(),
        })
    }

    async fn stop(&self, deployment_id: &str) -> Result<StopOutcome> {
        lock(&self.stopped).push(deployment_id.to_string());
        let mut d = lock(&self.deployments);
        let Some(dep) = d.get_mut(deployment_id) else {
            return Err(AwsError::NotFound {
                kind: "CodeDeploy deployment",
                name: deployment_id.to_string(),
                scope: scope(),
            });
        };
        // Stopping a finished deployment changes nothing, as in CodeDeploy
        // (DeploymentAlreadyCompletedException).
        if matches!(dep.1, DeploymentState::InProgress(_)) {
            dep.1 = DeploymentState::Failed(format!("deployment {deployment_id} was stopped: rolled back by kiln"));
            Ok(StopOutcome::RollingBack { status: "Pending".into(), message: "Stopping deployment".into() })
        } else {
            Ok(StopOutcome::AlreadyCompleted)
        }
    }
}

/// Hooks with scripted results: each start returns the next scripted state.
#[derive(Debug, Default)]
pub struct FakeHooks {
    script: Mutex<Vec<HookState>>,
    started: Mutex<Vec<(String, String)>>,
}

impl FakeHooks {
    /// Hooks that answer `script` in order (then Succeeded).
    pub fn new(script: Vec<HookState>) -> Self {
        FakeHooks { script: Mutex::new(script), started: Mutex::new(Vec::new()) }
    }

    /// (uid, point) of every start.
    pub fn started(&self) -> Vec<(String, String)> {
        lock(&self.started).clone()
    }
}

#[async_trait]
impl HookRunner for FakeHooks {
    async fn start(&self, run: &HookRun<'_>, _hook: &HookTarget) -> Result<HookState> {
        lock(&self.started).push((run.uid.to_string(), run.point.as_str().to_string()));
        let mut s = lock(&self.script);
        Ok(if s.is_empty() { HookState::Succeeded } else { s.remove(0) })
    }

    async fn poll(&self, _run: &HookRun<'_>, _hook: &HookTarget, _handle: &str) -> Result<HookState> {
        let mut s = lock(&self.script);
        Ok(if s.is_empty() { HookState::Succeeded } else { s.remove(0) })
    }
}

/// Evidence in memory.
#[derive(Debug, Default)]
pub struct FakeEvidence {
    objects: Mutex<BTreeMap<String, (Vec<u8>, String)>>,
    /// Whether every write is refused (AccessDenied), as with a broken bucket policy.
    denied: AtomicBool,
    /// Writes attempted, refused ones included.
    puts: AtomicUsize,
}

impl FakeEvidence {
    /// An empty store.
    pub fn new() -> Self {
        FakeEvidence::default()
    }

    /// The stored body under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.objects).get(key).map(|o| o.0.clone())
    }

    /// Refuses every write with AccessDenied until called with `false`.
    pub fn deny_writes(&self, on: bool) {
        self.denied.store(on, Ordering::SeqCst);
    }

    /// Writes attempted so far, refused ones included.
    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EvidenceStore for FakeEvidence {
    async fn put(&self, key: &str, body: &[u8], sha256_hex: &str) -> Result<String> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.denied.load(Ordering::SeqCst) {
            return Err(AwsError::AccessDenied {
                service: "s3",
                operation: "PutObject",
                message: format!("not authorized to perform: s3:PutObject on {key}"),
            });
        }
        let mut o = lock(&self.objects);
        if let Some((_, sha)) = o.get(key)
            && sha != sha256_hex
        {
            return Err(AwsError::Invalid {
                message: format!("s3://fake/{key} already holds a different evidence record; evidence is immutable"),
                scope: scope(),
            });
        }
        o.insert(key.to_string(), (body.to_vec(), sha256_hex.to_string()));
        Ok(format!("s3://fake/{key}"))
    }
}

/// The whole of AWS as the controller sees it, in memory: [`FakeEcs`] services keyed by account,
/// cluster and service (made on first use, shared by every Promotion that targets them, and kept
/// across controller restarts while the `FakeCloud` lives), one [`FakeCloudWatch`] per account
/// behind the same batched alarm caches the real cloud uses, scripted [`FakeHooks`] and
/// [`FakeEvidence`] per bucket. ECS blue/green, canary and linear are modelled; Lambda, rolling
/// and CodeDeploy targets are refused with a spec error naming the fake (use moto for those).
pub struct FakeCloud {
    services: Mutex<BTreeMap<(String, String, String), std::sync::Arc<FakeEcs>>>,
    cloudwatch: Mutex<BTreeMap<String, std::sync::Arc<FakeCloudWatch>>>,
    caches: crate::signals::AlarmCaches,
    hooks: std::sync::Arc<FakeHooks>,
    evidence: Mutex<BTreeMap<(String, String), std::sync::Arc<FakeEvidence>>>,
    identities: Mutex<Vec<(String, String)>>,
    clock: Option<FakeClock>,
}

impl FakeCloud {
    /// An empty cloud whose alarm caches refresh at most once per `alarm_poll`.
    pub fn new(alarm_poll: Duration) -> Self {
        FakeCloud {
            clock: None,
            services: Mutex::new(BTreeMap::new()),
            cloudwatch: Mutex::new(BTreeMap::new()),
            caches: crate::signals::AlarmCaches::new(alarm_poll),
            hooks: std::sync::Arc::new(FakeHooks::default()),
            evidence: Mutex::new(BTreeMap::new()),
            identities: Mutex::new(Vec::new()),
        }
    }

    /// Signal reads stamped by `clock` (the controller's) instead of the wall clock.
    pub fn with_clock(mut self, clock: FakeClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Hooks answer `script` in order (then Succeeded).
    pub fn with_hooks(mut self, script: Vec<HookState>) -> Self {
        self.hooks = std::sync::Arc::new(FakeHooks::new(script));
        self
    }

    /// The ECS service `cluster`/`service` in `account` (made on first use).
    pub fn ecs(&self, account: &str, cluster: &str, service: &str) -> std::sync::Arc<FakeEcs> {
        let scope = Scope { account_id: account.to_string(), region: scope().region };
        lock(&self.services)
            .entry((account.to_string(), cluster.to_string(), service.to_string()))
            .or_insert_with(|| std::sync::Arc::new(FakeEcs::new(scope, cluster, service)))
            .clone()
    }

    /// CloudWatch of `account` (made on first use).
    pub fn cloudwatch(&self, account: &str) -> std::sync::Arc<FakeCloudWatch> {
        lock(&self.cloudwatch)
            .entry(account.to_string())
            .or_insert_with(|| {
                let cw = FakeCloudWatch::new();
                std::sync::Arc::new(match &self.clock {
                    Some(c) => cw.with_clock(c.clone()),
                    None => cw,
                })
            })
            .clone()
    }

    /// The hooks.
    pub fn hooks(&self) -> std::sync::Arc<FakeHooks> {
        self.hooks.clone()
    }

    /// The evidence bucket `bucket` of `account` (made on first use).
    pub fn bucket(&self, account: &str, bucket: &str) -> std::sync::Arc<FakeEvidence> {
        lock(&self.evidence).entry((account.to_string(), bucket.to_string())).or_default().clone()
    }

    /// (role, session name) of every identity a call was made as, in order.
    pub fn identities(&self) -> Vec<(String, String)> {
        lock(&self.identities).clone()
    }

    fn assume(&self, env: &EnvironmentAws, session: String) {
        lock(&self.identities).push((env.role_arn.clone(), session));
    }
}

impl std::fmt::Debug for FakeCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCloud").field("services", &self.services).finish_non_exhaustive()
    }
}

#[async_trait]
impl crate::cloud::Cloud for FakeCloud {
    async fn traffic(
        &self,
        env: &EnvironmentAws,
        promotion: &str,
        uid: &str,
        target: crate::cloud::TargetOf<'_>,
    ) -> std::result::Result<Box<dyn TrafficTarget>, crate::cloud::TargetError> {
        use crate::cloud::{TargetError, TargetOf};
        use kiln_api::release::EcsStrategy;
        self.assume(env, crate::credentials::session_name(promotion, uid));
        let mut deploying = None;
        let (cluster, service) = match target {
            TargetOf::Release { release, environment, release_uid, .. } => {
                let Some(ecs) = &release.target.ecs else {
                    return Err(TargetError::Spec("the fake cloud models ECS blue/green only".into()));
                };
                if !matches!(ecs.strategy, EcsStrategy::BlueGreen | EcsStrategy::Canary | EcsStrategy::Linear) {
                    return Err(TargetError::Spec(format!(
                        "the fake cloud models ECS blue/green only, not {:?}",
                        ecs.strategy
                    )));
                }
                let (mut svc, _) = crate::targets::ecs_service(release, ecs, environment).map_err(TargetError::Spec)?;
                svc.mark = Some(crate::targets::mark(release, release_uid));
                deploying = Some(svc.clone());
                (svc.cluster, svc.service)
            }
            TargetOf::RestoreOnly(snapshot) => {
                let ecs = snapshot.ecs.as_ref();
                match (ecs.and_then(|e| e.cluster.clone()), ecs.and_then(|e| e.service.clone())) {
                    (Some(c), Some(s)) => (c, s),
                    _ => return Err(TargetError::Spec("the snapshot names no ECS cluster and service".into())),
                }
            }
        };
        let traffic = FakeTraffic::on(self.ecs(&env.account_id, &cluster, &service), uid).as_role(&env.role_arn);
        Ok(Box::new(match deploying {
            Some(t) => traffic.deploying(t),
            None => traffic,
        }))
    }

    async fn hooks(&self, env: &EnvironmentAws, promotion: &str, uid: &str) -> Result<std::sync::Arc<dyn HookRunner>> {
        self.assume(env, crate::credentials::session_name(promotion, uid));
        Ok(self.hooks.clone())
    }

    async fn signals(&self, env: &EnvironmentAws) -> Result<std::sync::Arc<dyn crate::signals::SignalReader>> {
        let cw = self.cloudwatch(&env.account_id);
        let source: std::sync::Arc<dyn AlarmSource> = cw;
        let alarms = self.caches.get(&env.scope(), || source.clone()).await;
        Ok(std::sync::Arc::new(crate::signals::CloudWatchSignals { alarms, source }))
    }

    async fn evidence(
        &self,
        env: &EnvironmentAws,
        promotion: &str,
        uid: &str,
        bucket: &str,
    ) -> Result<std::sync::Arc<dyn EvidenceStore>> {
        self.assume(env, crate::credentials::session_name(promotion, uid));
        Ok(self.bucket(&env.account_id, bucket))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::signals::AlarmCache;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[tokio::test]
    async fn alarm_reads_batch_by_100_and_share_within_the_interval() {
        let cw = Arc::new(FakeCloudWatch::new());
        let names: Vec<String> = (0..250).map(|i| format!("a{i:03}")).collect();
        for n in &names {
            cw.set_state(n, AlarmState::Ok, t(0));
        }
        let cache = AlarmCache::new(scope(), cw.clone(), Duration::from_secs(3600));
        assert_eq!(cache.read(&names, &[], None).await.map(|r| r.alarms.len()).ok(), Some(250));
        assert_eq!(cw.describe_calls(), 3);
        // A second bake, same account, inside the interval: no call.
        assert_eq!(cache.read(&names[..10], &[], None).await.map(|r| r.alarms.len()).ok(), Some(10));
        assert_eq!(cw.describe_calls(), 3);
        // A new selector is not covered by the last read: read again (all interests together).
        cw.set_state("b-new", AlarmState::Alarm, t(1));
        let r = cache.read(&["b-new".to_string()], &[], None).await.ok();
        assert_eq!(r.map(|r| r.alarms[0].state), Some(AlarmState::Alarm));
        assert_eq!(cw.describe_calls(), 6);
    }

    #[tokio::test]
    async fn a_flap_comes_with_its_history_when_the_account_has_it() {
        let cw = Arc::new(FakeCloudWatch::new());
        cw.set_state("5xx", AlarmState::Ok, t(0));
        let cache = AlarmCache::new(scope(), cw.clone(), Duration::ZERO);
        let names = ["5xx".to_string()];
        cw.set_state("5xx", AlarmState::Alarm, t(20));
        cw.set_state("5xx", AlarmState::Ok, t(25));
        let r = cache.read(&names, &[], Some(t(10))).await.ok();
        let a = r.map(|r| r.alarms[0].clone());
        assert_eq!(
            a.and_then(|a| a.history),
            Some(vec![(t(20), AlarmState::Alarm), (t(25), AlarmState::Ok)]),
            "the ALARM between two reads is in the history"
        );
        // No history call for alarms that did not change since.
        let before = cw.history_calls();
        let _ = cache.read(&names, &[], Some(t(30))).await;
        assert_eq!(cw.history_calls(), before);

        // A throttled history read is an error to retry, not "no history".
        cw.set_state("5xx", AlarmState::Alarm, t(40));
        cw.throttle_history(true);
        let err = cache.read(&names, &[], Some(t(30))).await.err();
        assert_eq!(err.map(|e| e.class()), Some(crate::ErrorClass::RetryLater));
        cw.throttle_history(false);
        let r = cache.read(&names, &[], Some(t(30))).await.ok();
        assert_eq!(r.and_then(|r| r.alarms[0].history.clone()), Some(vec![(t(40), AlarmState::Alarm)]));

        // Without DescribeAlarmHistory the observation says so (None): the core falls back to the
        // state-change timestamp.
        let cw = Arc::new(FakeCloudWatch::new().without_history());
        cw.set_state("5xx", AlarmState::Ok, t(0));
        cw.set_state("5xx", AlarmState::Alarm, t(20));
        cw.set_state("5xx", AlarmState::Ok, t(25));
        let cache = AlarmCache::new(scope(), cw.clone(), Duration::ZERO);
        let r = cache.read(&names, &[], Some(t(10))).await.ok();
        let a = r.map(|r| r.alarms[0].clone());
        assert_eq!(a.as_ref().map(|a| (a.state_changed_at, a.history.clone())), Some((t(25), None)));
    }

    #[tokio::test]
    async fn signal_reader_assembles_alarms_metrics_and_budget() {
        use crate::signals::{CloudWatchSignals, SignalReader};
        let cw = Arc::new(FakeCloudWatch::new());
        let now = Timestamp::now();
        cw.set_state("web-5xx", AlarmState::Ok, now - SignedDuration::from_mins(30));
        cw.put_metric("AWS/ApplicationELB", "TargetResponseTime", &[(now - SignedDuration::from_mins(1), 0.9)]);
        cw.put_metric(
            "Kiln/Web",
            "Errors",
            &[(now - SignedDuration::from_mins(2), 4.0), (now - SignedDuration::from_mins(1), 6.0)],
        );
        cw.put_metric(
            "Kiln/Web",
            "Requests",
            &[(now - SignedDuration::from_mins(2), 500.0), (now - SignedDuration::from_mins(1), 500.0)],
        );
        let policy: kiln_api::rollback_policy::RollbackPolicySpec = serde_json::from_value(serde_json::json!({
            "alarms": [{"name": "web-5xx"}, {"prefix": "web-"}],
            "metrics": [{"name": "latency", "query": {"namespace": "AWS/ApplicationELB", "metricName": "TargetResponseTime", "stat": "Average"}, "max": 0.5}],
            "errorBudget": {"objective": 99.9, "window": "10m", "maxBurnPercent": 5.0,
                "errors": {"namespace": "Kiln/Web", "metricName": "Errors"},
                "total": {"namespace": "Kiln/Web", "metricName": "Requests"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let reader = CloudWatchSignals {
            alarms: Arc::new(AlarmCache::new(scope(), cw.clone(), Duration::from_secs(60))),
            source: cw.clone(),
        };
        let obs = reader.read(&policy, None).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obs.alarms.len(), 1);
        assert_eq!(obs.metrics[0].datapoints.len(), 1);
        let b = obs.error_budget.unwrap_or_else(|| panic!("budget"));
        assert_eq!((b.errors, b.total), (10.0, 1000.0));
        assert!(kiln_core::signals::current_health(&policy, &obs).is_err(), "latency 0.9 > 0.5");
    }

    #[tokio::test]
    async fn codedeploy_stop_rolls_back_once() {
        let cd = FakeCodeDeploy::new();
        let req = CodeDeployRequest {
            application: "web".into(),
            deployment_group: "web-dg".into(),
            deployment_config: None,
            task_definition: "td/web:2".into(),
            container_name: "app".into(),
            container_port: 8080,
            hooks: vec![],
        };
        let id = cd.create("uid-1", &req).await.ok();
        assert_eq!(cd.create("uid-1", &req).await.ok(), id);
        assert_eq!(cd.count(), 1);
        let id = id.unwrap_or_default();
        assert!(matches!(cd.stop(&id).await, Ok(StopOutcome::RollingBack { .. })));
        assert_eq!(cd.stop(&id).await.ok(), Some(StopOutcome::AlreadyCompleted), "a repeat rolls back nothing");
        assert!(matches!(cd.state(&id).await, Ok(DeploymentState::Failed(m)) if m.contains("stopped")));
        // A finished deployment stays as it was.
        let done = cd.create("uid-2", &req).await.unwrap_or_default();
        cd.set_state(&done, DeploymentState::Succeeded);
        assert_eq!(cd.stop(&done).await.ok(), Some(StopOutcome::AlreadyCompleted));
        assert_eq!(cd.state(&done).await.ok(), Some(DeploymentState::Succeeded));
    }

    #[tokio::test]
    async fn fake_traffic_restores_exactly_and_idempotently() {
        let f = FakeTraffic::new("uid-1");
        let snap = f.snapshot().await.ok().unwrap_or_default();
        let start = f.state();
        let d = f.prepare().await.ok().unwrap_or_default();
        assert_eq!(f.prepare().await.ok(), Some(d.clone()));
        f.fail_next(
            "shift",
            AwsError::Throttled {
                service: "elasticloadbalancing",
                operation: "ModifyListener",
                message: "slow down".into(),
            },
        );
        assert_eq!(f.shift(&d, 10).await.err().map(|e| e.class()), Some(crate::ErrorClass::RetryLater));
        f.shift(&d, 10).await.ok();
        assert_eq!(f.state().weights[1].weight, 10);
        f.restore(&snap).await.ok();
        f.restore(&snap).await.ok();
        let mut end = f.state();
        end.task_definitions = start.task_definitions.clone();
        assert_eq!(end, start);
    }
}
