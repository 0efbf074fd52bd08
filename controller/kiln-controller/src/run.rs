//! The process: wait for the CRDs, serve probes and metrics, win the Lease, then run the
//! reflectors and both controllers until shutdown or lost leadership.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kiln_api::{Environment, FreezeWindow, Promotion, Release, RollbackPolicy};
use kiln_aws::WriteFence;
use kiln_aws::cloud::{AwsCloud, Cloud};
use kiln_aws::credentials::AwsSettings;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::cache;
use crate::config::Config;
use crate::context::{Clock, Context, FreezeCache, Stores, SystemClock};
use crate::error::Error;
use crate::guard;
use crate::http::{self, Readiness};
use crate::index::PromotionIndex;
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::{objects, promotion, release};

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (SIGTERM/SIGINT): the Lease was released.
    Shutdown,
    /// Leadership was lost: exit non-zero so the pod restarts as a standby.
    LostLease,
    /// A watch ended before its first list (the API server went away): exit non-zero.
    CachesFailed,
}

/// Runs the controller until shutdown.
pub async fn run(config: Config) -> anyhow::Result<Exit> {
    let client = Client::try_default().await.context("cannot reach the Kubernetes API")?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(signal_stop(stop_tx));

    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.metrics_addr))?;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics, /livez, /readyz");
    let server = tokio::spawn(http::serve(listener, metrics.clone(), readiness.clone(), stopped(stop_rx.clone())));

    wait_for_crds(&client, &readiness, stop_rx.clone()).await;
    if *stop_rx.borrow() {
        return Ok(Exit::Shutdown);
    }

    let elector = if config.leader_election {
        readiness.set_standby(true);
        let elector = LeaderElector::start(
            client.clone(),
            LeaseConfig {
                namespace: config.controller_namespace.clone(),
                name: config.lease_name.clone(),
                identity: config.identity(),
                lease_duration: config.lease_duration,
                renew_deadline: config.lease_renew_deadline,
                retry_period: config.lease_retry_period,
            },
        );
        let mut leading = elector.subscribe();
        let mut stop = stop_rx.clone();
        tracing::info!(identity = %config.identity(), "waiting to become leader");
        loop {
            if *leading.borrow() {
                break;
            }
            tokio::select! {
                r = leading.changed() => if r.is_err() { anyhow::bail!("leader election stopped") },
                _ = stop.changed() => { elector.release().await; return Ok(Exit::Shutdown) }
            }
        }
        tracing::info!("became leader");
        // A leader is ready only once its caches are synced.
        readiness.set_standby(false);
        metrics.set_leader(true);
        Some(elector)
    } else {
        metrics.set_leader(true);
        None
    };

    let settings = match &config.aws_endpoint_url {
        Some(url) => AwsSettings::for_endpoint(url.clone()),
        None => AwsSettings::default(),
    };
    let mut aws = AwsCloud::new(
        settings,
        &config.aws_region,
        config.sts_endpoint_url.clone(),
        config.alarm_poll_interval,
        config.alarm_history,
    )
    .await;
    if let Some(e) = &elector {
        // Every AWS write, each SDK attempt inside an action included, asks the Lease (by the
        // clock) right before it is sent: a replica that lost it mid-action sends nothing more.
        let leadership = e.handle();
        aws = aws.with_fence(WriteFence::new(move || leadership.is_leader()));
    }
    let cloud: Arc<dyn Cloud> = Arc::new(aws);
    let exit = controllers(
        &config,
        client,
        cloud,
        Arc::new(SystemClock),
        metrics.clone(),
        readiness,
        elector.as_ref(),
        stop_rx.clone(),
    )
    .await;

    if let Some(e) = elector
        && exit == Exit::Shutdown
    {
        e.release().await;
    }
    metrics.set_leader(false);
    if exit == Exit::Shutdown {
        // Probes answer until the end of a requested stop.
        let _ = server.await;
    } else {
        // The process exits now (non-zero) and restarts as a standby: waiting for a stop
        // signal here would leave a replica that leads nothing reporting ready.
        server.abort();
    }
    Ok(exit)
}

async fn signal_stop(tx: watch::Sender<bool>) {
    let term = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
    let _ = tx.send(true);
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Polls until every kiln CRD is served (a fresh install may apply the chart before the CRDs
/// are established).
async fn wait_for_crds(client: &Client, readiness: &Readiness, stop: watch::Receiver<bool>) {
    let mut logged = false;
    loop {
        let probes = [
            Api::<Release>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await.err(),
            Api::<Promotion>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await.err(),
            Api::<Environment>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await.err(),
            Api::<FreezeWindow>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await.err(),
            Api::<RollbackPolicy>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await.err(),
        ];
        match probes.into_iter().flatten().next() {
            None => {
                readiness.set_crds_present(true);
                return;
            }
            Some(e) => {
                if !logged {
                    tracing::warn!(error = %e, "kiln CRDs are not served yet (kubectl apply -f crds/); waiting");
                    logged = true;
                }
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A shared reflector over `api` (read through [`DeserializeGuard`], see `guard.rs`): its
/// store, its writer, and what drives it.
#[allow(clippy::type_complexity)]
fn shared<K>(
    client: &Client,
    wc: watcher::Config,
) -> (Store<K>, reflector::store::Writer<K>, Api<DeserializeGuard<K>>, watcher::Config)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store_shared::<K>(1024);
    (reader, writer, Api::all(client.clone()), wc)
}

/// Reports an object kiln's types cannot read: a log line, the metric, a Warning Event on it.
fn report_unreadable<K: Resource<DynamicType = ()> + Send + Sync + 'static>(
    recorder: Recorder,
    metrics: Arc<Metrics>,
) -> impl Fn(guard::Unreadable) + Send + Sync + 'static {
    move |u: guard::Unreadable| {
        tracing::warn!(
            kind = %u.kind,
            namespace = u.namespace.as_deref().unwrap_or_default(),
            name = %u.name,
            error = %u.error,
            kept_previous = u.kept_previous,
            "cannot read object"
        );
        metrics.unreadable_object(K::kind(&()).as_ref());
        let guard = u.as_guard::<K>();
        let recorder = recorder.clone();
        let note = kiln_core::machine::EventNote {
            warning: true,
            reason: kiln_core::reason::UNREADABLE.into(),
            message: u.message(),
        };
        tokio::spawn(async move { crate::record::publish_to(&recorder, &guard, &note, "Read").await });
    }
}

#[allow(clippy::too_many_arguments)]
async fn controllers(
    config: &Config,
    client: Client,
    cloud: Arc<dyn Cloud>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    elector: Option<&LeaderElector>,
    stop: watch::Receiver<bool>,
) -> Exit {
    let mut wc = watcher::Config::default().any_semantic();
    if let Some(sel) = &config.shard_selector {
        wc = wc.labels(sel);
    }
    let plain = watcher::Config::default().any_semantic();
    let (releases, rel_w, rel_api, rel_wc) = shared::<Release>(&client, wc.clone());
    let (promotions, pro_w, pro_api, pro_wc) = shared::<Promotion>(&client, wc);
    let (environments, env_w, env_api, env_wc) = shared::<Environment>(&client, plain.clone());
    let (freezes, frz_w, frz_api, frz_wc) = shared::<FreezeWindow>(&client, plain.clone());
    let (policies, pol_w, pol_api, pol_wc) = shared::<RollbackPolicy>(&client, plain);
    let reporter = Reporter { controller: "kiln-controller".into(), instance: Some(config.identity()) };
    let recorder = Recorder::new(client.clone(), reporter);

    // Subscriptions before the streams run, so the controllers see the initial lists.
    let subscribe = |w: &reflector::store::Writer<_>| w.subscribe();
    let (Some(rel_sub_r), Some(rel_sub_p)) = (subscribe(&rel_w), subscribe(&rel_w)) else { return Exit::Shutdown };
    let (Some(pro_sub_p), Some(pro_sub_pp), Some(pro_sub_r)) =
        (pro_w.subscribe(), pro_w.subscribe(), pro_w.subscribe())
    else {
        return Exit::Shutdown;
    };
    let (Some(env_sub_p), Some(env_sub_r), Some(env_sub_e), Some(env_sub_ee)) =
        (env_w.subscribe(), env_w.subscribe(), env_w.subscribe(), env_w.subscribe())
    else {
        return Exit::Shutdown;
    };
    let (Some(frz_sub), Some(frz_sub_f)) = (frz_w.subscribe(), frz_w.subscribe()) else { return Exit::Shutdown };
    let (Some(pol_sub), Some(pol_sub_p)) = (pol_w.subscribe(), pol_w.subscribe()) else { return Exit::Shutdown };

    fn drive<K>(
        api: Api<DeserializeGuard<K>>,
        wc: watcher::Config,
        writer: reflector::store::Writer<K>,
        trim: fn(&mut K),
        before: impl Fn(&watcher::Event<K>) + Send + 'static,
        report: impl Fn(guard::Unreadable) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let store = writer.as_reader();
        tokio::spawn(async move {
            let stream = watcher(api, wc)
                .default_backoff()
                .filter_map(move |ev| {
                    let typed = match ev {
                        Ok(ev) => guard::admit(ev, &store, &report).map(Ok),
                        Err(e) => Some(Err(e)),
                    };
                    std::future::ready(typed)
                })
                .modify(trim)
                .inspect_ok(move |ev| before(ev))
                .reflect_shared(writer);
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch error; retrying");
                }
            }
        })
    }
    let promotion_index = PromotionIndex::default();
    let indexer = promotion_index.clone();
    let drivers = vec![
        drive(
            rel_api,
            rel_wc,
            rel_w,
            cache::slim,
            |_| {},
            report_unreadable::<Release>(recorder.clone(), metrics.clone()),
        ),
        drive(
            pro_api,
            pro_wc,
            pro_w,
            cache::slim_promotion,
            move |ev| indexer.apply(ev),
            report_unreadable::<Promotion>(recorder.clone(), metrics.clone()),
        ),
        drive(
            env_api,
            env_wc,
            env_w,
            cache::slim,
            |_| {},
            report_unreadable::<Environment>(recorder.clone(), metrics.clone()),
        ),
        drive(
            frz_api,
            frz_wc,
            frz_w,
            cache::slim,
            |_| {},
            report_unreadable::<FreezeWindow>(recorder.clone(), metrics.clone()),
        ),
        drive(
            pol_api,
            pol_wc,
            pol_w,
            cache::slim,
            |_| {},
            report_unreadable::<RollbackPolicy>(recorder.clone(), metrics.clone()),
        ),
    ];

    let stores = Stores {
        releases: releases.clone(),
        promotions: promotions.clone(),
        environments: environments.clone(),
        freezes: freezes.clone(),
        policies: policies.clone(),
        promotion_index,
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        cloud,
        recorder,
        metrics: metrics.clone(),
        clock,
        controller_namespace: config.controller_namespace.clone(),
        namespaces: config.namespaces.clone(),
        freeze_cache: FreezeCache::default(),
        version: env!("CARGO_PKG_VERSION"),
        leading: elector.map(|e| e.handle()),
        max_rounds: promotion::MAX_ROUNDS,
        requested_by: config.requested_by.clone(),
    });

    // Decide nothing on a partial cache (a FreezeWindow or RollbackPolicy not listed yet could
    // let a deployment through): every cache gets its first full list before any controller
    // starts. One task waits, in turn: a store's readiness wakes a single waiter, and the
    // controllers built below find the stores ready.
    let mut ok = true;
    ok &= stores.releases.wait_until_ready().await.is_ok();
    ok &= stores.promotions.wait_until_ready().await.is_ok();
    ok &= stores.environments.wait_until_ready().await.is_ok();
    ok &= stores.freezes.wait_until_ready().await.is_ok();
    ok &= stores.policies.wait_until_ready().await.is_ok();
    if !ok {
        return Exit::CachesFailed;
    }
    readiness.set_caches_synced(true);
    readiness.set_standby(false);
    tracing::info!("caches synced");
    let gauges = tokio::spawn(phase_gauges(stores.promotions.clone(), metrics.clone()));

    // A requested stop drains in-flight reconciles (graceful); a lost Lease does not (below).
    let shutdown = stopped(stop.clone()).shared();
    let lost = elector.map(|e| e.lost());

    let promotion_controller = Controller::for_shared_stream(pro_sub_p, promotions.clone())
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .watches_shared_stream(pro_sub_pp, with(&ctx, |c, p: Arc<Promotion>| promotion::related(c, &p)))
        .watches_shared_stream(
            rel_sub_p,
            with(&ctx, |c, r: Arc<Release>| match r.metadata.namespace.as_deref() {
                Some(ns) => c.stores.promotion_index.of_release(ns, &r.name_any()),
                None => Vec::new(),
            }),
        )
        .watches_shared_stream(env_sub_p, with(&ctx, |c, _e: Arc<Environment>| promotion::unfinished(c, None)))
        .watches_shared_stream(
            frz_sub,
            with(&ctx, |c, w: Arc<FreezeWindow>| {
                // A window in the controller's namespace applies everywhere.
                let ns = w.namespace().unwrap_or_default();
                promotion::unfinished(c, Some(ns.as_str()).filter(|ns| *ns != c.controller_namespace))
            }),
        )
        .watches_shared_stream(
            pol_sub,
            with(&ctx, |c, p: Arc<RollbackPolicy>| promotion::unfinished(c, p.namespace().as_deref())),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(promotion::reconcile, error_policy, ctx.clone())
        .for_each(log_failed("promotion"));

    let release_controller = Controller::for_shared_stream(rel_sub_r, releases.clone())
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .watches_shared_stream(pro_sub_r, |p: Arc<Promotion>| release::of_promotion(&p))
        .watches_shared_stream(
            env_sub_r,
            with(&ctx, |c, e: Arc<Environment>| release::naming_environment(c, &e.name_any())),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(release::reconcile, error_policy, ctx.clone())
        .for_each(log_failed("release"));

    // The status of the kinds kiln is configured with (objects.rs): cheap, event-driven.
    let environment_controller = Controller::for_shared_stream(env_sub_e, environments.clone())
        .watches_shared_stream(env_sub_ee, with(&ctx, |c, _e: Arc<Environment>| objects::all_environments(c)))
        .graceful_shutdown_on(shutdown.clone())
        .run(objects::reconcile_environment, error_policy, ctx.clone())
        .for_each(log_failed("environment"));
    let freeze_controller = Controller::for_shared_stream(frz_sub_f, freezes.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(objects::reconcile_freeze_window, error_policy, ctx.clone())
        .for_each(log_failed("freezewindow"));
    let policy_controller = Controller::for_shared_stream(pol_sub_p, policies.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(objects::reconcile_rollback_policy, error_policy, ctx.clone())
        .for_each(log_failed("rollbackpolicy"));

    // Separate tasks, so the controllers' mapping and reconciling use both cores.
    let tasks = [
        tokio::spawn(promotion_controller),
        tokio::spawn(release_controller),
        tokio::spawn(environment_controller),
        tokio::spawn(freeze_controller),
        tokio::spawn(policy_controller),
    ];
    let aborts: Vec<tokio::task::AbortHandle> = tasks.iter().map(|t| t.abort_handle()).collect();
    let lost = async move {
        match lost {
            Some(lost) => lost.await,
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        results = futures::future::join_all(tasks) => {
            for e in results.into_iter().filter_map(Result::err) {
                tracing::error!(error = %e, "a controller task ended abnormally");
            }
            Exit::Shutdown
        }
        () = lost => {
            // Not leading any more: nothing in flight may finish (a reconcile could be about to
            // write, a hook to return). Whatever was already sent is treated as possibly
            // applied; the new leader decides from status and AWS.
            for a in &aborts {
                a.abort();
            }
            Exit::LostLease
        }
    };
    gauges.abort();
    for d in drivers {
        d.abort();
    }
    exit
}

/// A watch mapper with its own handle on the shared context.
fn with<K, R, F>(ctx: &Arc<Context>, f: F) -> impl Fn(Arc<K>) -> R + Send + Sync + 'static + use<K, R, F>
where
    F: Fn(&Context, Arc<K>) -> R + Send + Sync + 'static,
{
    let ctx = ctx.clone();
    move |obj| f(&ctx, obj)
}

/// Drains a controller's results: a failed reconcile was already reported by `error_policy`
/// (log, Event, metric), so only a debug line here.
fn log_failed<T, E: std::fmt::Display>(kind: &'static str) -> impl FnMut(Result<T, E>) -> std::future::Ready<()> {
    move |r| {
        if let Err(e) = r {
            tracing::debug!(error = %e, kind, "reconcile");
        }
        std::future::ready(())
    }
}

/// Keeps `kiln_promotions_in_phase` current from the cache (a read of memory every 10 s).
async fn phase_gauges(promotions: Store<Promotion>, metrics: Arc<Metrics>) {
    loop {
        let all = promotions.state();
        for phase in kiln_api::PromotionPhase::ALL {
            let n = all.iter().filter(|p| p.status.as_ref().map(|s| s.phase).unwrap_or_default() == phase).count();
            metrics.set_promotions_in_phase(phase.as_str(), i64::try_from(n).unwrap_or(i64::MAX));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

fn error_policy<K>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Requeue
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    if err.is_gone() {
        return Requeue::await_change();
    }
    if matches!(err, Error::NotLeader) {
        // No Event: that would be a write. The process is on its way out.
        tracing::info!(
            kind = K::kind(&()).as_ref(),
            name = obj.meta().name.as_deref().unwrap_or_default(),
            "not the leader: stopped before a write"
        );
        return Requeue::await_change();
    }
    tracing::warn!(kind = K::kind(&()).as_ref(), name = obj.meta().name.as_deref().unwrap_or_default(), error = %err, "reconcile failed");
    let note = kiln_core::machine::EventNote {
        warning: true,
        reason: kiln_core::reason::RECONCILE_FAILED.into(),
        message: err.to_string(),
    };
    let recorder = ctx.recorder.clone();
    tokio::spawn(async move { crate::record::publish_to(&recorder, obj.as_ref(), &note, "Reconcile").await });
    Requeue::requeue(err.retry_after())
}
