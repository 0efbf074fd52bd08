//! The Promotion reconciler: observe (caches, AWS signals) → decide (kiln-core) → act (one
//! idempotent AWS action) → record (status, Events, metrics), repeated until the machine rests.
//!
//! Crash safety: the status written after every step says which step comes next, every action
//! is idempotent, and the snapshot to restore is written before the first change. A restarted
//! controller (or a new leader) reads the status and AWS and carries on.

mod act;
mod observe;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kiln_api::promotion::PromotionStatus;
use kiln_api::{Promotion, PromotionPhase, Release};
use kiln_core::machine::{self, Context as Facts, Decision, Observations, PromotionInput};
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

/// The decision core's input: the Promotion as it stands and what was observed around it.
fn input<'a>(
    p: &'a Promotion,
    status: &'a PromotionStatus,
    observed: &'a Observations,
    now: Timestamp,
    version: &'a str,
) -> PromotionInput<'a> {
    PromotionInput {
        now,
        generation: p.metadata.generation,
        spec: &p.spec,
        status,
        deleting: p.metadata.deletion_timestamp.is_some(),
        observed,
        context: Facts {
            namespace: p.metadata.namespace.as_deref().unwrap_or_default(),
            promotion: p.metadata.name.as_deref().unwrap_or_default(),
            release_name: &p.spec.release,
            controller_version: version,
        },
    }
}

/// Reconciles one Promotion.
pub async fn reconcile(obj: Arc<Promotion>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.timed("promotion", reconcile_inner(obj.clone(), &ctx)).await
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
        // observe → decide → act → record.
        let status = current.status.clone().unwrap_or_default();
        let observed = observe::observe(ctx, &current, &status).await;
        if !digest_logged && let Some(digest) = observed.release.as_ref().and_then(crate::release::digest_of) {
            // Recording a span field again appends it again in the log line: once is enough.
            tracing::Span::current().record("digest", digest);
            digest_logged = true;
        }
        let now = ctx.clock.now();
        let decision = machine::decide(&input(&current, &status, &observed, now, ctx.version));
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
            ctx.fence()?;
            current = record::set_finalizer(&api, &current, true).await?;
        }

        let before = status.clone();
        if changed {
            match write(ctx, &api, &current, &before, &decision).await {
                Ok(stored) => current = stored,
                // Someone wrote since we read (a person's approve or abort, another replica):
                // decide again on what they wrote, never over it.
                Err(e) if e.is_conflict() => match api.get_opt(&current.name_any()).await? {
                    Some(latest) => {
                        current = latest;
                        continue;
                    }
                    None => return Ok(Requeue::await_change()),
                },
                Err(e) => return Err(e),
            }
        }

        let Some(action) = decision.action.clone() else {
            if (deleting || decision.status.phase.is_terminal())
                && !decision.status.phase.is_in_flight()
                && record::has_finalizer(&current)
            {
                ctx.fence()?;
                record::set_finalizer(&api, &current, false).await?;
            }
            return Ok(requeue(decision.requeue_after));
        };

        ctx.fence()?;
        let outcome = act::act(ctx, &current, &observed, &decision.status, &action).await?;
        let done = machine::complete(
            &input(&current, &decision.status, &observed, ctx.clock.now(), ctx.version),
            &action,
            outcome,
        );
        if current.status.as_ref() != Some(&done.status) {
            match write(ctx, &api, &current, &decision.status, &done).await {
                Ok(stored) => current = stored,
                // The action was sent; whoever wrote since decides what it means (a restore by
                // the new leader wins over our forward step): decide again on their status.
                Err(e) if e.is_conflict() => {
                    tracing::warn!(action = action.metric_label(), "status changed under an action; deciding again");
                    match api.get_opt(&current.name_any()).await? {
                        Some(latest) => {
                            current = latest;
                            continue;
                        }
                        None => return Ok(Requeue::await_change()),
                    }
                }
                Err(e) => return Err(e),
            }
        } else {
            ctx.fence()?;
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
    ctx.fence()?;
    // Guarded by the resourceVersion the decision was made on: a stale writer gets 409.
    let stored = record::apply_status_guarded(api, current, &decision.status).await?;
    let after = &decision.status;
    if before.phase != after.phase {
        tracing::info!(
            from = before.phase.as_str(),
            to = after.phase.as_str(),
            message = after.message.as_deref().unwrap_or_default(),
            "phase changed"
        );
    }
    let abandoned = |s: &PromotionStatus| s.evidence_archive.as_ref().is_some_and(|a| a.abandoned_at.is_some());
    if abandoned(after) && !abandoned(before) {
        // The object (and its status) is about to go: the log is the record's last copy.
        tracing::warn!(
            sha256 = after.evidence_sha256.as_deref().unwrap_or_default(),
            uri = after.evidence_archive.as_ref().map(|a| a.uri()).unwrap_or_default(),
            evidence = %serde_json::to_string(&after.evidence).unwrap_or_default(),
            "evidence archive abandoned"
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
        m.rollback(env, rb.cause);
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

/// The Promotions whose decisions may change when `changed` changes: the unfinished ones driving
/// its AWS resource (its queue, in any namespace), those of its namespace and environment, and
/// this Release's Promotions downstream of it.
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
    // Those queued on the same AWS resource, in any namespace or Environment.
    let target = changed.status.as_ref().and_then(|s| s.target.as_deref());
    let on_target = target.map(|t| index.live_on(t)).unwrap_or_default();
    refs.extend(on_target.iter().cloned());
    refs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    refs.dedup();
    crate::index::resolve(&ctx.stores.promotions, &refs)
        .iter()
        .filter(|o| o.metadata.uid != changed.metadata.uid)
        .filter(|o| !o.status.as_ref().map(|s| s.phase.is_terminal()).unwrap_or(false))
        .filter(|o| {
            (o.metadata.namespace.as_deref() == Some(ns) && o.spec.environment == changed.spec.environment)
                || (o.metadata.namespace.as_deref() == Some(ns)
                    && o.spec.release == changed.spec.release
                    && downstream.contains(&o.spec.environment))
                || o.status.as_ref().and_then(|s| s.target.as_deref()).is_some_and(|t| Some(t) == target)
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
    /// Whether the API refused a write made on an older resourceVersion.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
    }

    /// Whether the object the reconcile worked on is gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 404)
    }
}
