//! The Promotion reconciler: observe (caches, AWS signals) → decide (kiln-core) → act (one
//! idempotent AWS action) → record (status, Events, metrics), repeated until the machine rests.
//!
//! Crash safety: the status written after every step says which step comes next, every action
//! is idempotent, and the snapshot to restore is written before the first change. A restarted
//! controller (or a new leader) reads the status and AWS and carries on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::PromotionStatus;
use kiln_api::rollback_policy::RollbackPolicySpec;
use kiln_api::{Promotion, PromotionPhase, Release};
use kiln_aws::cloud::{TargetError, TargetOf};
use kiln_aws::credentials::EnvironmentAws;
use kiln_aws::execute::{outcome_of, traffic_action};
use kiln_aws::hooks::{HookState, HookTarget};
use kiln_aws::{AwsError, ErrorClass};
use kiln_core::freeze::CompiledWindow;
use kiln_core::gates::{QueuedAhead, UpstreamObservation};
use kiln_core::machine::{self, Action, Context as Facts, Decision, Outcome, PolicyState, PromotionInput};
use kiln_core::observe::{ClusterView, PromotionView, ReleaseView, ScopedWindow};
use kiln_core::plan::HookPoint;
use kiln_core::signals::{self, SignalObservations};
use kiln_core::validate;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::error::Error;
use crate::record;

/// How many decide/act rounds one reconcile runs before handing back to the queue (so one
/// Promotion moving through many quick steps does not starve the others).
pub const MAX_ROUNDS: usize = 24;
/// The longest a Promotion sleeps without a watch event (a safety net, not a poll).
const MAX_REQUEUE: Duration = Duration::from_secs(600);

/// Everything a decision needs that lives outside the Promotion, owned.
struct Gathered {
    release: Option<Arc<Release>>,
    environment: Option<EnvironmentSpec>,
    policy: Option<RollbackPolicySpec>,
    policy_name: Option<String>,
    spec_errors: Vec<String>,
    upstream: Vec<UpstreamObservation>,
    ahead: Vec<QueuedAhead>,
    preempted_by: Option<String>,
    release_was_good_here: bool,
    freezes: Vec<CompiledWindow>,
    signals: Option<SignalObservations>,
}

impl Gathered {
    fn input<'a>(
        &'a self,
        p: &'a Promotion,
        status: &'a PromotionStatus,
        now: Timestamp,
        version: &'a str,
    ) -> PromotionInput<'a> {
        let policy = match (&self.policy, &self.policy_name) {
            (Some(p), _) => PolicyState::Found(p),
            (None, Some(name)) => PolicyState::Missing(name),
            (None, None) => PolicyState::NotRequired,
        };
        PromotionInput {
            now,
            generation: p.metadata.generation,
            spec: &p.spec,
            status,
            release: self.release.as_ref().map(|r| &r.spec),
            environment: self.environment.as_ref(),
            policy,
            spec_errors: &self.spec_errors,
            upstream: &self.upstream,
            ahead: &self.ahead,
            preempted_by: self.preempted_by.as_deref(),
            deleting: p.metadata.deletion_timestamp.is_some(),
            release_was_good_here: self.release_was_good_here,
            freezes: &self.freezes,
            signals: self.signals.as_ref(),
            context: Facts {
                namespace: p.metadata.namespace.as_deref().unwrap_or_default(),
                promotion: p.metadata.name.as_deref().unwrap_or_default(),
                release_name: &p.spec.release,
                controller_version: version,
            },
        }
    }
}

/// Reconciles one Promotion.
pub async fn reconcile(obj: Arc<Promotion>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(obj.clone(), &ctx).await;
    match &result {
        Ok(_) => ctx.metrics.reconciled("promotion", started.elapsed()),
        Err(e) => ctx.metrics.reconcile_failed("promotion", e.metric_label(), started.elapsed()),
    }
    result
}

#[tracing::instrument(skip_all, fields(
    namespace = obj.metadata.namespace.as_deref().unwrap_or_default(),
    promotion = obj.metadata.name.as_deref().unwrap_or_default(),
    release = %obj.spec.release,
    environment = %obj.spec.environment,
    digest = tracing::field::Empty,
))]
async fn reconcile_inner(obj: Arc<Promotion>, ctx: &Context) -> Result<Requeue, Error> {
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    if !ctx.watches_namespace(&ns) {
        return Ok(Requeue::await_change());
    }
    if at_rest(&obj) {
        // Finished, nothing asked of it since: no reads, no writes (a cold start with thousands
        // of finished Promotions costs a glance at each).
        return Ok(Requeue::await_change());
    }
    let api: Api<Promotion> = Api::namespaced(ctx.client.clone(), &ns);
    let mut fresh = false;
    let mut current: Promotion = if crate::cache::is_summary(&obj) {
        // A finished Promotion asked to do something (retry, deletion, edit): the cache holds a
        // summary of its status, so decide on the whole object.
        match api.get_opt(&obj.name_any()).await? {
            Some(latest) => {
                fresh = true;
                latest
            }
            None => return Ok(Requeue::await_change()),
        }
    } else {
        (*obj).clone()
    };
    let mut digest_logged = false;

    for _ in 0..ctx.max_rounds {
        if !ctx.is_leader() {
            // Leadership was lost mid-reconcile: the new leader takes it from the status.
            return Ok(Requeue::await_change());
        }
        let status = current.status.clone().unwrap_or_default();
        let gathered = gather(ctx, &current, &status).await;
        if !digest_logged
            && let Some(digest) = gathered.release.as_ref().and_then(|r| crate::release::digest_of(&r.spec))
        {
            // Recording a span field again appends it again in the log line: once is enough.
            tracing::Span::current().record("digest", digest);
            digest_logged = true;
        }
        let now = ctx.clock.now();
        let input = gathered.input(&current, &status, now, ctx.version);
        let decision = machine::decide(&input);
        let deleting = current.metadata.deletion_timestamp.is_some();

        let changed = current.status.as_ref() != Some(&decision.status);
        if (changed || decision.action.is_some()) && !fresh {
            // The cache may lag behind our own last write: decide again on what the API holds
            // before writing or acting, so no step is repeated on stale status.
            match api.get_opt(&current.name_any()).await? {
                Some(latest) => {
                    fresh = true;
                    if latest.resource_version() != current.resource_version() {
                        current = latest;
                        continue;
                    }
                }
                None => return Ok(Requeue::await_change()),
            }
        }

        if decision.action.is_some() && !record::has_finalizer(&current) && !deleting {
            // Before the first change in AWS: a deletion must wait for the restore.
            current = record::set_finalizer(&api, &current, true).await?;
        }

        let before = status.clone();
        if changed {
            current = write(ctx, &api, &current, &before, &decision).await?;
        }

        let Some(action) = decision.action.clone() else {
            if (deleting || decision.status.phase.is_terminal())
                && !decision.status.phase.is_in_flight()
                && record::has_finalizer(&current)
            {
                record::set_finalizer(&api, &current, false).await?;
            }
            return Ok(requeue(decision.requeue_after));
        };

        let outcome = act(ctx, &current, &gathered, &decision.status, &action).await?;
        let input = gathered.input(&current, &decision.status, ctx.clock.now(), ctx.version);
        let done = machine::complete(&input, &action, outcome);
        if current.status.as_ref() != Some(&done.status) {
            current = write(ctx, &api, &current, &decision.status, &done).await?;
        } else {
            record::publish(&ctx.recorder, &current, &done.events).await;
        }
        if let Some(after) = done.requeue_after
            && after > SignedDuration::ZERO
        {
            return Ok(requeue(Some(after)));
        }
    }
    // Still moving: continue in a fresh reconcile (other Promotions get their turn).
    Ok(Requeue::requeue(Duration::from_millis(100)))
}

/// A finished Promotion whose spec has not changed since it finished (no retry, no edit, not
/// being deleted, no finalizer left to remove, its evidence archived if it goes to S3) has
/// nothing to decide.
fn at_rest(p: &Promotion) -> bool {
    let Some(status) = &p.status else { return false };
    status.phase.is_terminal()
        && !machine::archive_pending(status)
        && p.metadata.deletion_timestamp.is_none()
        && !record::has_finalizer(p)
        && p.spec.retry <= status.observed_retry
        && status.observed_generation == p.metadata.generation
}

fn requeue(after: Option<SignedDuration>) -> Requeue {
    match after {
        None => Requeue::await_change(),
        Some(d) => {
            let d = Duration::try_from(d).unwrap_or(Duration::ZERO);
            Requeue::requeue(d.clamp(Duration::from_millis(100), MAX_REQUEUE))
        }
    }
}

/// Writes the decided status, publishes its Events and records metrics for the transition.
async fn write(
    ctx: &Context,
    api: &Api<Promotion>,
    current: &Promotion,
    before: &PromotionStatus,
    decision: &Decision,
) -> Result<Promotion, Error> {
    let stored = record::apply_status(api, current, &decision.status).await?;
    let after = &decision.status;
    if before.phase != after.phase {
        tracing::info!(
            from = before.phase.as_str(),
            to = after.phase.as_str(),
            message = after.message.as_deref().unwrap_or_default(),
            "phase changed"
        );
    }
    record::publish(&ctx.recorder, &stored, &decision.events).await;
    transition_metrics(ctx, &stored, before, after);
    Ok(stored)
}

fn seconds(d: SignedDuration) -> f64 {
    d.as_secs_f64().max(0.0)
}

fn transition_metrics(ctx: &Context, p: &Promotion, before: &PromotionStatus, after: &PromotionStatus) {
    let env = p.spec.environment.as_str();
    let m = &ctx.metrics;
    if before.phase != PromotionPhase::RollingBack
        && after.phase == PromotionPhase::RollingBack
        && let Some(rb) = &after.rollback
    {
        m.rollback(env, &rb.cause);
        if let Some(start) = &rb.breach_started_at {
            m.breach_detected(env, seconds(rb.detected_at.0.duration_since(start.0)));
        }
    }
    if before.phase == after.phase || !after.phase.is_terminal() {
        return;
    }
    let deployed = after.previous.is_some();
    let result = match after.phase {
        PromotionPhase::Succeeded => "succeeded",
        PromotionPhase::RolledBack => "rolled_back",
        PromotionPhase::Aborted => "aborted",
        _ => "failed",
    };
    m.promotion_finished(env, result, deployed);
    if let Some(rb) = &after.rollback
        && let Some(done) = &rb.completed_at
    {
        m.rollback_completed(env, seconds(done.0.duration_since(rb.detected_at.0)));
        if let Some(start) = &rb.breach_started_at {
            m.time_to_restore(env, seconds(done.0.duration_since(start.0)));
        }
    }
    if after.phase == PromotionPhase::Succeeded
        && p.spec.rollback.is_none()
        && let Some(ns) = p.metadata.namespace.as_deref()
        && let Some(release) = ctx.stores.releases.get(&ObjectRef::new(&p.spec.release).within(ns))
        && let Some(created) = &release.metadata.creation_timestamp
    {
        m.lead_time(env, seconds(ctx.clock.now().duration_since(created.0)));
    }
    if let Some(sha) = &after.evidence_sha256 {
        tracing::info!(evidence_sha256 = %sha, phase = after.phase.as_str(), "evidence recorded");
    }
}

/// Reads everything the decision needs from the caches and, for the signals, from AWS.
async fn gather(ctx: &Context, p: &Promotion, status: &PromotionStatus) -> Gathered {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let stores = &ctx.stores;
    let env_objs = stores.environments.state();
    let environments: BTreeMap<String, EnvironmentSpec> =
        env_objs.iter().map(|e| (e.name_any(), e.spec.clone())).collect();
    let release = stores.releases.get(&ObjectRef::new(&p.spec.release).within(&ns));
    let environment = environments.get(&p.spec.environment).cloned();

    let mut spec_errors: Vec<String> = Vec::new();
    if let Some(r) = &release {
        spec_errors.extend(validate::release(&r.spec, &environments).iter().map(|e| e.to_string()));
        spec_errors
            .extend(validate::promotion(&p.spec.environment, &r.spec, &r.name_any()).iter().map(|e| e.to_string()));
    }
    if let Some(errs) = validate::environments(&environments).get(&p.spec.environment) {
        spec_errors.extend(errs.iter().map(|e| format!("Environment {}: {e}", p.spec.environment)));
    }

    let policy_name = environment.as_ref().and_then(|e| e.rollback_policy_ref.clone());
    let policy = policy_name.as_ref().and_then(|name| policy_in(ctx, &ns, name));
    if let Some(pol) = &policy
        && let Err(e) = signals::validate_policy(pol)
    {
        spec_errors.push(format!("RollbackPolicy {}: {e}", policy_name.as_deref().unwrap_or_default()));
    }

    // The cluster view: queue, preemption, upstream Promotions, freezes.
    let releases = stores.releases.state();
    let promotions = stores.promotions.state();
    let freeze_objs = stores.freezes.state();
    let mut freezes = Vec::new();
    for w in freeze_objs.iter() {
        let wns = w.metadata.namespace.clone().unwrap_or_default();
        if wns != ctx.controller_namespace && wns != ns {
            continue;
        }
        match ctx.freeze_cache.get(w) {
            Ok(window) => freezes.push(ScopedWindow { namespace: wns, window }),
            // An invalid window cannot be evaluated: say so on every Promotion it could cover
            // rather than deploying as if it did not exist.
            Err(e) if w.spec.environments.is_empty() || w.spec.environments.contains(&p.spec.environment) => {
                spec_errors.push(format!(
                    "FreezeWindow {wns}/{} is invalid ({e}); fix it so freezes can be checked",
                    w.name_any()
                ))
            }
            Err(_) => {}
        }
    }
    let env_refs: BTreeMap<String, &EnvironmentSpec> = environments.iter().map(|(k, v)| (k.clone(), v)).collect();
    let view = ClusterView {
        controller_namespace: &ctx.controller_namespace,
        environments: env_refs,
        releases: releases
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
            .map(|r| ReleaseView {
                namespace: r.metadata.namespace.as_deref().unwrap_or_default(),
                name: r.metadata.name.as_deref().unwrap_or_default(),
                spec: &r.spec,
            })
            .collect(),
        promotions: promotions
            .iter()
            .filter(|o| o.metadata.namespace.as_deref() == Some(ns.as_str()))
            .map(|o| PromotionView {
                namespace: o.metadata.namespace.as_deref().unwrap_or_default(),
                name: o.metadata.name.as_deref().unwrap_or_default(),
                created: o.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH),
                spec: &o.spec,
                status: o.status.as_ref(),
            })
            .collect(),
        freezes,
    };
    let me = PromotionView {
        namespace: &ns,
        name: p.metadata.name.as_deref().unwrap_or_default(),
        created: p.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH),
        spec: &p.spec,
        status: Some(status),
    };
    let ahead = view.ahead_of(&me);
    let preempted_by = view.preempted_by(&me);
    let release_was_good_here = view.release_was_good_here(&ns, &p.spec.release, &p.spec.environment);
    let freezes = view.freezes_for(&ns);

    let terminal = status.phase.is_terminal();
    let waiting = !terminal && !status.phase.is_in_flight();

    // Upstream health: the upstream environments' own policies, read now (only while waiting:
    // the gate is evaluated before deploying).
    let mut upstream_health: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    if waiting
        && let Some(env) = &environment
        && env.promotion.require_upstream_green
    {
        for up in &env.upstream {
            let Some(up_env) = environments.get(up) else { continue };
            let health = match up_env.rollback_policy_ref.as_ref() {
                None => Ok(()),
                Some(name) => match policy_in(ctx, &ns, name) {
                    None => Err(format!("RollbackPolicy {name} not found in {ns}")),
                    Some(pol) => match read_signals(ctx, &EnvironmentAws::from_spec(&up_env.aws), &pol, None).await {
                        Ok(obs) => signals::current_health(&pol, &obs),
                        Err(e) => Err(format!("alarms cannot be read: {e}")),
                    },
                },
            };
            upstream_health.insert(up.clone(), health);
        }
    }
    let upstream = view.upstream_of(&me, |up| upstream_health.get(up).cloned());

    // The target environment's signals: the health gate before deploying, the bake after.
    let mut signal_obs = None;
    if !terminal && let (Some(env), Some(pol)) = (&environment, &policy) {
        let since = status.started_at.as_ref().map(|t| t.0);
        // During a bake, read where the snapshot was taken (the account that was changed).
        let current = EnvironmentAws::from_spec(&env.aws);
        let aws = match &status.previous {
            Some(s) => EnvironmentAws::for_restore(s, Some(&current)).unwrap_or(current),
            None => current,
        };
        match read_signals(ctx, &aws, pol, since).await {
            Ok(obs) => {
                tracing::trace!(alarms = ?obs.alarms, observed_at = %obs.observed_at, "signals read");
                signal_obs = Some(obs)
            }
            Err(e) if e.class() == ErrorClass::SpecWrong => spec_errors.push(format!(
                "cannot read the signals of RollbackPolicy {} in {} (account {}, role {}): {e}; check the Environment's aws.roleArn, its trust policy and the alarms",
                policy_name.as_deref().unwrap_or_default(),
                p.spec.environment,
                aws.account_id,
                aws.role_arn
            )),
            Err(e) => tracing::warn!(error = %e, "signal read failed; retrying"),
        }
    }
    drop(view);

    Gathered {
        release,
        environment,
        policy,
        policy_name,
        spec_errors,
        upstream,
        ahead,
        preempted_by,
        release_was_good_here,
        freezes,
        signals: signal_obs,
    }
}

fn policy_in(ctx: &Context, ns: &str, name: &str) -> Option<RollbackPolicySpec> {
    ctx.stores.policies.get(&ObjectRef::new(name).within(ns)).map(|p| p.spec.clone())
}

async fn read_signals(
    ctx: &Context,
    aws: &EnvironmentAws,
    policy: &RollbackPolicySpec,
    since: Option<Timestamp>,
) -> Result<SignalObservations, AwsError> {
    let reader = ctx.cloud.signals(aws).await?;
    reader.read(policy, since).await
}

/// Executes one action; transient AWS failures come back as errors (retried with backoff, the
/// status untouched), everything else as an outcome for the decision core.
async fn act(
    ctx: &Context,
    p: &Promotion,
    g: &Gathered,
    status: &PromotionStatus,
    action: &Action,
) -> Result<Outcome, Error> {
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let name = p.name_any();
    let current = g.environment.as_ref().map(|e| EnvironmentAws::from_spec(&e.aws));
    let env_aws = match (&current, &status.previous) {
        // A restore acts where the snapshot was taken, even if the Environment changed or is gone.
        (_, Some(s)) if *action == Action::Restore => match EnvironmentAws::for_restore(s, current.as_ref()) {
            Ok(aws) => aws,
            Err(m) => return Ok(Outcome::Failed(m)),
        },
        (Some(e), _) => e.clone(),
        (None, _) => return Ok(Outcome::Failed(format!("Environment {} not found", p.spec.environment))),
    };
    tracing::info!(action = action.metric_label(), account = %env_aws.account_id, "acting");

    if *action == Action::ArchiveEvidence {
        let Some(bucket) = status.evidence_archive.as_ref().map(|a| a.bucket.clone()) else {
            return Ok(Outcome::Done);
        };
        let store = match ctx.cloud.evidence(&env_aws, &name, &uid, &bucket).await {
            Ok(s) => s,
            Err(e) => return classify(e),
        };
        return kiln_aws::evidence::archive(store.as_ref(), status).await.map_err(Error::Aws);
    }
    if let Action::RunHook(point) = action {
        return run_hook(ctx, p, g, &env_aws, &uid, *point).await;
    }

    let target = match (&g.release, &status.previous) {
        (Some(r), _) => TargetOf::Release { release: &r.spec, environment: &p.spec.environment },
        (None, Some(s)) if *action == Action::Restore => TargetOf::RestoreOnly(s),
        (None, _) => return Ok(Outcome::Failed(format!("Release {} not found", p.spec.release))),
    };
    let target = match ctx.cloud.traffic(&env_aws, &name, &uid, target).await {
        Ok(t) => t,
        Err(TargetError::Spec(m)) => return Ok(Outcome::Failed(m)),
        Err(TargetError::Aws(e)) => return classify(e),
    };
    match traffic_action(target.as_ref(), action, status).await {
        Some(Ok(outcome)) => Ok(outcome),
        Some(Err(e)) => Err(Error::Aws(e)),
        None => Ok(Outcome::Failed("no traffic action for a hook".into())),
    }
}

/// An AWS error as an outcome for the core, or a retry.
fn classify(e: AwsError) -> Result<Outcome, Error> {
    outcome_of(e).map_err(Error::Aws)
}

async fn run_hook(
    ctx: &Context,
    p: &Promotion,
    g: &Gathered,
    env_aws: &EnvironmentAws,
    uid: &str,
    point: HookPoint,
) -> Result<Outcome, Error> {
    let Some(release) = &g.release else {
        return Ok(Outcome::Failed(format!("Release {} not found", p.spec.release)));
    };
    let (target, timeout) = match HookTarget::for_release(&release.spec, &p.spec.environment, point) {
        Ok(Some(hook)) => hook,
        Ok(None) => return Ok(Outcome::Done),
        Err(m) => return Ok(Outcome::Failed(m)),
    };
    let runner = match ctx.cloud.hooks(env_aws, &p.name_any(), uid).await {
        Ok(r) => r,
        Err(e) => return classify(e),
    };
    // `start` finds the run this Promotion already started, so asking again after a restart
    // follows the same run.
    match runner.start(uid, point.as_str(), &target, timeout).await {
        Ok(HookState::Succeeded) => Ok(Outcome::Done),
        Ok(HookState::Failed(why)) => Ok(Outcome::Failed(why)),
        Ok(HookState::Running(handle)) => match runner.poll(&target, &handle).await {
            Ok(HookState::Succeeded) => Ok(Outcome::Done),
            Ok(HookState::Failed(why)) => Ok(Outcome::Failed(why)),
            Ok(HookState::Running(_)) => Ok(Outcome::InProgress(format!("{} hook running ({handle})", point.as_str()))),
            Err(e) => classify(e),
        },
        Err(e) => classify(e),
    }
}

/// The Promotions whose decisions may change when `changed` changes: the others in its queue
/// and this Release's Promotions downstream of it.
pub fn related(ctx: &Context, changed: &Promotion) -> Vec<kube::runtime::reflector::ObjectRef<Promotion>> {
    let Some(ns) = changed.metadata.namespace.as_deref() else { return Vec::new() };
    let envs = ctx.stores.environments.state();
    let downstream: Vec<String> =
        envs.iter().filter(|e| e.spec.upstream.contains(&changed.spec.environment)).map(|e| e.name_any()).collect();
    let index = &ctx.stores.promotion_index;
    let mut refs = index.live_in(ns, &changed.spec.environment);
    for env in &downstream {
        refs.extend(index.live_in(ns, env));
    }
    crate::index::resolve(&ctx.stores.promotions, &refs)
        .iter()
        .filter(|o| o.metadata.uid != changed.metadata.uid)
        .filter(|o| !o.status.as_ref().map(|s| s.phase.is_terminal()).unwrap_or(false))
        .filter(|o| {
            o.spec.environment == changed.spec.environment
                || (o.spec.release == changed.spec.release && downstream.contains(&o.spec.environment))
        })
        .map(|o| kube::runtime::reflector::ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Promotions in `namespace` (all namespaces for `None`) that are not finished (or are being
/// deleted).
pub fn unfinished(ctx: &Context, namespace: Option<&str>) -> Vec<kube::runtime::reflector::ObjectRef<Promotion>> {
    ctx.stores.promotion_index.live(namespace)
}

/// Whether `p` is one of `r`'s Promotions.
pub fn of_release(p: &Promotion, r: &Release) -> bool {
    p.metadata.namespace == r.metadata.namespace && Some(p.spec.release.as_str()) == r.metadata.name.as_deref()
}

impl Error {
    /// Whether the object the reconcile worked on is gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 404)
    }
}
