//! **Test support** (feature `sim`): a small world for driving the decision core — one
//! Promotion with its Release, Environment, policy, freeze windows and observations, and a clock
//! that only moves when the test says so — and the one decide → act → complete driver
//! ([`World::run_with`], [`World::drive`]) that kiln's tests and benchmarks share. Fixtures
//! follow the examples: the ingest-worker canary into dev, stg and prod.

use crate::Problem;
use crate::freeze::CompiledWindow;
use crate::gates::{QueuedAhead, UpstreamObservation};
use crate::machine::{self, Action, Context, Decision, Outcome, PromotionInput};
use crate::observe::{Observations, PolicyState};
use crate::running::{ReleaseMark, Running, RunningState};
use crate::signals::{AlarmObservation, AlarmState, SignalObservations};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kiln_api::PromotionPhase;
use kiln_api::common::{Approval, ApprovalRequirement, ReleaseType};
use kiln_api::environment::{AwsTarget, BakeSettings, EnvironmentSpec, PromotionRules};
use kiln_api::freeze_window::{FreezeExceptions, FreezeWindowSpec, RecurringSpan, Weekday, WeeklyTime};
use kiln_api::promotion::DeployedResources;
use kiln_api::promotion::{
    EcsSnapshot, LambdaSnapshot, PromotionSpec, PromotionStatus, RollbackRequest, Snapshot, TargetGroupWeight,
};
use kiln_api::release::{
    Artifact, EcsStrategy, EcsTarget, EcsTraffic, ListenerRef, ReleaseSpec, Target, TargetGroupRef,
};
use kiln_api::rollback_policy::{AlarmSelector, MissingData, RollbackPolicySpec};

pub const DIGEST: &str = "111111111111.dkr.ecr.ca-central-1.amazonaws.com/ingest-worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The UID of the simulated Release.
pub const RELEASE_UID: &str = "6f1c2a9e-0000-4000-8000-000000000001";

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

/// What the environment runs before the simulated Release: ingest-worker v1.4.1, deployed by
/// kiln.
pub fn previous_version_runs() -> RunningState {
    RunningState::Runs(Running {
        what: "ECS service ingest-worker in cluster nc-core (task definition ingest-worker:41)".into(),
        mark: Some(ReleaseMark {
            service: "ingest-worker".into(),
            version: "v1.4.1".into(),
            release_uid: Some("6f1c2a9e-0000-4000-8000-000000000000".into()),
        }),
        same_artifacts: false,
        artifact: "registry.example/ingest-worker@sha256:previous".into(),
    })
}

pub fn ecs_release() -> ReleaseSpec {
    let tg = |n: &str| TargetGroupRef { name: Some(n.into()), arn: None, tags: None };
    ReleaseSpec {
        service: "ingest-worker".into(),
        version: "v1.4.2".into(),
        release_type: ReleaseType::Standard,
        change_ref: Some("CHG-20251028-001".into()),
        commit: Some("3f2a9c1d".into()),
        author: Some("dev@example.com".into()),
        artifacts: vec![Artifact { name: "api".into(), image: Some(DIGEST.into()), zip: None }],
        target: Target {
            ecs: Some(EcsTarget {
                cluster: "nc-core".into(),
                service: "ingest-worker".into(),
                container: "api".into(),
                artifact: None,
                strategy: EcsStrategy::Canary,
                steps: Some(vec![10, 100]),
                step_bake: Some("5m".into()),
                traffic: Some(EcsTraffic {
                    listener: ListenerRef { arn: None, load_balancer_name: Some("ingest".into()), port: Some(443) },
                    rule: None,
                    blue_target_group: tg("ingest-blue"),
                    green_target_group: tg("ingest-green"),
                }),
                code_deploy: None,
                hooks: None,
                sidecars: Vec::new(),
                environment_overrides: Default::default(),
            }),
            lambda: None,
        },
        environments: vec!["dev".into(), "stg".into(), "prod".into()],
        progress_deadline: None,
    }
}

pub fn environment(name: &str) -> EnvironmentSpec {
    let (account, upstream, rules, bake) = match name {
        "dev" => (
            "111111111111",
            vec![],
            PromotionRules {
                auto: true,
                forbid_self_approval: true,
                require_upstream_green: true,
                ..Default::default()
            },
            "5m",
        ),
        "stg" => (
            "222222222222",
            vec!["dev".to_string()],
            PromotionRules {
                auto: true,
                approvals: vec![ApprovalRequirement { role: "release-engineering".into(), count: 1 }],
                forbid_self_approval: true,
                require_upstream_green: true,
                ..Default::default()
            },
            "30m",
        ),
        _ => (
            "333333333333",
            vec!["stg".to_string()],
            PromotionRules {
                auto: false,
                require_change_ref: true,
                approvals: vec![
                    ApprovalRequirement { role: "security".into(), count: 1 },
                    ApprovalRequirement { role: "product".into(), count: 1 },
                ],
                forbid_self_approval: true,
                min_upstream_bake: Some("30m".into()),
                require_upstream_green: true,
                ..Default::default()
            },
            "10m",
        ),
    };
    EnvironmentSpec {
        upstream,
        aws: AwsTarget {
            account_id: account.into(),
            region: "ca-central-1".into(),
            role_arn: format!("arn:aws:iam::{account}:role/kiln-deploy"),
            external_id: None,
            session_tags: false,
        },
        promotion: rules,
        bake: BakeSettings { duration: bake.into(), ..BakeSettings::default() },
        progress_deadline: "10m".into(),
        rollback_policy_ref: Some("slo-default".into()),
        evidence: None,
        tenants: None,
        container_images: Default::default(),
    }
}

pub fn policy() -> RollbackPolicySpec {
    RollbackPolicySpec {
        alarms: vec![AlarmSelector { name: Some("ingest-5xx".into()), prefix: None }],
        metrics: vec![],
        error_budget: None,
        missing_data: MissingData::Ignore,
        interval: "2s".into(),
    }
}

pub fn weekend_freeze() -> CompiledWindow {
    let spec = FreezeWindowSpec {
        environments: vec!["prod".into()],
        services: vec![],
        time_zone: "America/New_York".into(),
        recurring: vec![RecurringSpan {
            from: WeeklyTime { day: Weekday::Friday, time: "17:00".into() },
            to: WeeklyTime { day: Weekday::Monday, time: "09:00".into() },
        }],
        absolute: vec![],
        exceptions: Some(FreezeExceptions {
            release_types: vec![ReleaseType::Emergency, ReleaseType::Hotfix],
            approvals: vec![
                ApprovalRequirement { role: "security".into(), count: 1 },
                ApprovalRequirement { role: "sre".into(), count: 1 },
            ],
        }),
        reason: Some("weekend freeze".into()),
    };
    CompiledWindow::compile("kiln-system", "weekend", &spec).expect("valid window")
}

/// A hook that invokes Lambda function `name`.
pub fn lambda_hook(name: &str) -> kiln_api::release::Hook {
    kiln_api::release::Hook { lambda_function: Some(name.into()), ecs_task_definition: None, timeout: None }
}

/// One Promotion and everything around it.
#[derive(Debug, Clone)]
pub struct World {
    /// The Promotion's namespace and name (recorded in evidence).
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub now: Timestamp,
    pub env_name: String,
    pub spec: PromotionSpec,
    pub status: PromotionStatus,
    pub release: Option<ReleaseSpec>,
    pub env: Option<EnvironmentSpec>,
    pub policy: Option<RollbackPolicySpec>,
    pub problems: Vec<Problem>,
    pub upstream: Vec<UpstreamObservation>,
    pub ahead: Vec<QueuedAhead>,
    pub preempted_by: Option<String>,
    pub deleting: bool,
    pub release_was_good_here: bool,
    /// What the environment runs, as the observe step reads it for a forward Promotion whose
    /// queue is clear (by default the service's previous version, marked by kiln).
    pub running: RunningState,
    pub freezes: Vec<CompiledWindow>,
    pub alarm: Option<(AlarmState, Timestamp)>,
    pub signals_fresh: bool,
    /// When set, signal reads fail with this error (no observations).
    pub signal_read_error: Option<String>,
    pub events: Vec<machine::EventNote>,
    pub executed: Vec<Action>,
}

impl World {
    /// A Promotion of the ingest-worker canary release into `env`, on Wednesday
    /// 2026-11-18 10:00 New York time (no freeze), with every upstream succeeded long ago and
    /// green.
    pub fn new(env: &str) -> World {
        let now = ts("2026-11-18T15:00:00Z");
        let upstream = environment(env)
            .upstream
            .iter()
            .map(|u| UpstreamObservation {
                environment: u.clone(),
                phase: Some(PromotionPhase::Succeeded),
                full_traffic_at: Some(ts("2026-11-18T10:00:00Z")),
                deployed: None,
                health: Some(Ok(())),
                superseded_by: None,
            })
            .collect();
        World {
            namespace: "ingest".into(),
            name: "p".into(),
            generation: Some(1),
            now,
            env_name: env.into(),
            spec: PromotionSpec {
                release: "ingest-worker-v1-4-2".into(),
                environment: env.into(),
                requested_by: Some("kiln".into()),
                approvals: vec![],
                abort: false,
                retry: 0,
                rollback: None,
                downgrade: false,
            },
            status: PromotionStatus::default(),
            release: Some(ecs_release()),
            env: Some(environment(env)),
            policy: Some(policy()),
            problems: vec![],
            upstream,
            ahead: vec![],
            preempted_by: None,
            deleting: false,
            release_was_good_here: false,
            running: previous_version_runs(),
            freezes: vec![weekend_freeze()],
            alarm: Some((AlarmState::Ok, ts("2026-11-01T00:00:00Z"))),
            signals_fresh: true,
            signal_read_error: None,
            events: vec![],
            executed: vec![],
        }
    }

    /// Promotion `spec` (named `namespace`/`name`) of `release` into `env` at `now`, with nothing
    /// else around it: no upstream, nothing ahead, no freeze, no policy unless the Environment
    /// names one (then `policy` must be set), the alarm OK.
    pub fn of(
        namespace: &str,
        name: &str,
        spec: PromotionSpec,
        release: ReleaseSpec,
        env: EnvironmentSpec,
        now: Timestamp,
    ) -> World {
        World {
            namespace: namespace.into(),
            name: name.into(),
            generation: Some(1),
            now,
            env_name: spec.environment.clone(),
            spec,
            status: PromotionStatus::default(),
            release: Some(release),
            env: Some(env),
            policy: None,
            problems: vec![],
            upstream: vec![],
            ahead: vec![],
            preempted_by: None,
            deleting: false,
            release_was_good_here: false,
            running: previous_version_runs(),
            freezes: vec![],
            alarm: Some((AlarmState::Ok, now - SignedDuration::from_hours(24))),
            signals_fresh: true,
            signal_read_error: None,
            events: vec![],
            executed: vec![],
        }
    }

    /// A prod Promotion with its Security and Product approvals.
    pub fn approved_prod() -> World {
        World::new("prod").approved_by("sec", "security").approved_by("pm", "product")
    }

    /// Decides once and asserts the Promotion waits on `gate` with exactly `message`.
    pub fn assert_waiting_on(&mut self, gate: &str, message: &str) {
        self.step();
        assert_eq!(self.phase(), PromotionPhase::WaitingForGates);
        assert_eq!(self.gate(gate), (false, message.to_string()));
    }

    /// Another Promotion of the same service and environment is ahead, in `phase`.
    pub fn behind(&mut self, name: &str, phase: PromotionPhase) {
        self.ahead.push(QueuedAhead { name: name.into(), phase, rollback: false });
    }

    /// Sets the ECS target's hooks.
    pub fn set_hooks(
        &mut self,
        pre_traffic: Option<kiln_api::release::Hook>,
        post_traffic: Option<kiln_api::release::Hook>,
    ) {
        if let Some(ecs) = self.release.as_mut().and_then(|r| r.target.ecs.as_mut()) {
            ecs.hooks = Some(kiln_api::release::Hooks { pre_traffic, post_traffic });
        }
    }

    pub fn at(mut self, t: &str) -> Self {
        self.now = ts(t);
        self
    }

    pub fn approved_by(mut self, user: &str, role: &str) -> Self {
        self.approve(user, role);
        self
    }

    pub fn approve(&mut self, user: &str, role: &str) {
        self.spec.approvals.push(Approval { user: user.into(), role: role.into(), at: Time(self.now), comment: None });
    }

    pub fn hotfix(mut self) -> Self {
        if let Some(r) = self.release.as_mut() {
            r.release_type = ReleaseType::Hotfix;
        }
        self
    }

    pub fn rollback_promotion(mut self) -> Self {
        self.spec.rollback = Some(RollbackRequest {
            reason: "v1.4.3 breaks ingest".into(),
            from_release: Some("ingest-worker-v1-4-3".into()),
        });
        // v1.4.2 succeeded in this environment before v1.4.3 replaced it.
        self.release_was_good_here = true;
        self
    }

    pub fn advance(&mut self, secs: i64) {
        self.now = self.now.checked_add(SignedDuration::from_secs(secs)).expect("time");
    }

    pub fn advance_to(&mut self, t: Timestamp) {
        if t > self.now {
            self.now = t;
        }
    }

    /// Puts the watched alarm in ALARM now.
    pub fn breach(&mut self) {
        self.alarm = Some((AlarmState::Alarm, self.now));
    }

    pub fn signals(&self) -> Option<SignalObservations> {
        if !self.signals_fresh || self.signal_read_error.is_some() {
            return None;
        }
        // The alarm is the first one the policy names.
        let name = self
            .policy
            .as_ref()
            .and_then(|p| p.alarms.iter().find_map(|a| a.name.clone()))
            .unwrap_or_else(|| "ingest-5xx".into());
        let alarms = self
            .alarm
            .map(|(state, at)| vec![AlarmObservation { name, state, state_changed_at: at, history: None }])
            .unwrap_or_default();
        Some(SignalObservations { observed_at: self.now, alarms, metrics: vec![], error_budget: None })
    }

    /// What the controller would observe in this world.
    pub fn observations(&self) -> Observations {
        let policy = match (&self.policy, self.env.as_ref().and_then(|e| e.rollback_policy_ref.as_deref())) {
            (_, None) => PolicyState::NotRequired,
            (Some(p), Some(_)) => PolicyState::Found(Box::new(p.clone())),
            (None, Some(name)) => PolicyState::Missing(name.to_string()),
        };
        Observations {
            release: self.release.clone(),
            release_identity: self.release.as_ref().map(|r| crate::integrity::identity(RELEASE_UID, r)),
            environment: self.env.clone(),
            policy,
            problems: self.problems.clone(),
            upstream: self.upstream.clone(),
            target: None,
            ahead: self.ahead.clone(),
            preempted_by: self.preempted_by.clone(),
            release_was_good_here: self.release_was_good_here,
            running: self.running.clone(),
            freezes: self.freezes.clone(),
            signals: self.signals(),
            signal_read_error: self.signal_read_error.clone(),
        }
    }

    pub fn with_input<R>(&self, f: impl FnOnce(&PromotionInput<'_>) -> R) -> R {
        let observed = self.observations();
        let input = PromotionInput {
            now: self.now,
            generation: self.generation,
            spec: &self.spec,
            status: &self.status,
            deleting: self.deleting,
            observed: &observed,
            context: Context {
                namespace: &self.namespace,
                promotion: &self.name,
                release_name: &self.spec.release,
                controller_version: "0.1.0-test",
            },
        };
        f(&input)
    }

    pub fn decide(&self) -> Decision {
        self.with_input(machine::decide)
    }

    /// Decides and applies the new status; returns the action to perform.
    pub fn step(&mut self) -> Option<Action> {
        let d = self.decide();
        self.status = d.status;
        self.events.extend(d.events);
        d.action
    }

    pub fn complete(&mut self, action: &Action, outcome: Outcome) {
        let d = self.with_input(|i| machine::complete(i, action, outcome));
        self.status = d.status;
        self.events.extend(d.events);
    }

    /// Runs decide/execute/complete until no action is returned, executing every action
    /// successfully. Returns the actions executed.
    pub fn run(&mut self) -> Vec<Action> {
        self.run_with(|_| None)
    }

    /// Like [`World::run`], with `fail` choosing a non-Done outcome for some actions.
    pub fn run_with(&mut self, mut fail: impl FnMut(&Action) -> Option<Outcome>) -> Vec<Action> {
        let mut done = Vec::new();
        for _ in 0..50 {
            let Some(action) = self.step() else { break };
            let outcome = fail(&action).unwrap_or_else(|| success(&action));
            self.executed.push(action.clone());
            done.push(action.clone());
            self.complete(&action, outcome);
        }
        done
    }

    pub fn phase(&self) -> PromotionPhase {
        self.status.phase
    }

    pub fn gate(&self, name: &str) -> (bool, String) {
        self.status
            .gates
            .iter()
            .find(|g| g.name == name)
            .map(|g| (g.ok, g.message.clone()))
            .unwrap_or_else(|| panic!("no gate {name} in {:?}", self.status.gates))
    }

    pub fn weight(&self) -> Option<i32> {
        self.status.step.as_ref().map(|s| s.weight)
    }

    pub fn reasons(&self) -> Vec<String> {
        self.status.timeline.iter().map(|t| t.reason.clone()).collect()
    }
}

/// The outcome a healthy AWS gives each action.
pub fn success(action: &Action) -> Outcome {
    match action {
        Action::CaptureSnapshot => Outcome::Snapshot(Box::new(Snapshot {
            captured_at: None,
            account_id: Some("333333333333".into()),
            region: Some("ca-central-1".into()),
            role_arn: Some("arn:aws:iam::333333333333:role/kiln-deploy".into()),
            ecs: Some(EcsSnapshot {
                cluster: Some("nc-core".into()),
                service: Some("ingest-worker".into()),
                task_definition: Some("arn:aws:ecs:ca-central-1:333333333333:task-definition/ingest-worker:41".into()),
                containers: Vec::new(),
                primary_task_set: Some("ecs-svc/blue".into()),
                listener_weights: vec![
                    TargetGroupWeight { target_group_arn: "tg/ingest-blue".into(), weight: 100 },
                    TargetGroupWeight { target_group_arn: "tg/ingest-green".into(), weight: 0 },
                ],
                listener_or_rule_arn: Some("listener/ingest/443".into()),
            }),
            lambda: None::<LambdaSnapshot>,
        })),
        Action::Prepare => Outcome::Prepared(DeployedResources {
            task_definition: Some("arn:aws:ecs:ca-central-1:333333333333:task-definition/ingest-worker:42".into()),
            task_set: Some("ecs-svc/green".into()),
            lambda_version: None,
            code_deploy_deployment: None,
        }),
        _ => Outcome::Done,
    }
}
