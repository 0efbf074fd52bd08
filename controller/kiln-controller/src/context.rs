//! What every reconcile shares: the client, the caches, AWS, the event recorder, metrics and
//! the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kiln_api::{Environment, FreezeWindow, Promotion, Release, RollbackPolicy};
use kiln_core::freeze::CompiledWindow;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use kube::runtime::controller::Action as Requeue;

use crate::error::Error;
use crate::index::PromotionIndex;
use crate::metrics::Metrics;
use kiln_aws::cloud::Cloud;

/// The time, from outside the decision core (so tests and the sandbox can see what it sees).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Whether this replica holds the Lease, asked at every write (`leader::LeaderElector::handle`
/// in the binary; a flag in tests).
pub trait Leadership: Send + Sync {
    /// True while this replica may write.
    fn is_leader(&self) -> bool;
}

/// A clock that moves only when told: the in-process tests and benchmarks step time through
/// bakes and freeze windows without waiting.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// Stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock { now: Mutex::new(start) }
    }

    /// Moves the clock forward by `by` (never backwards: a negative step is ignored).
    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(later) = now.checked_add(by.max(jiff::SignedDuration::ZERO)) {
            *now = later;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reflector caches of every kind kiln reads.
#[derive(Clone)]
pub struct Stores {
    /// Releases (slimmed: no managedFields).
    pub releases: Store<Release>,
    /// Promotions (finished ones with a status summary, see `cache.rs`).
    pub promotions: Store<Promotion>,
    /// Environments (cluster-scoped).
    pub environments: Store<Environment>,
    /// FreezeWindows.
    pub freezes: Store<FreezeWindow>,
    /// RollbackPolicies.
    pub policies: Store<RollbackPolicy>,
    /// Promotions by Release and live Promotions by environment (kept with `promotions`).
    pub promotion_index: PromotionIndex,
}

/// FreezeWindows compiled once per resourceVersion (time-zone rules are not re-parsed on every
/// reconcile).
#[derive(Default)]
pub struct FreezeCache {
    compiled: Mutex<HashMap<WindowKey, (String, Compiled)>>,
}

/// (namespace, name).
type WindowKey = (String, String);
/// A compiled window or why it does not compile.
type Compiled = Result<CompiledWindow, String>;

impl FreezeCache {
    /// The compiled window for `w` (an error message if its spec is invalid).
    pub fn get(&self, w: &FreezeWindow) -> Result<CompiledWindow, String> {
        let ns = w.metadata.namespace.clone().unwrap_or_default();
        let name = w.metadata.name.clone().unwrap_or_default();
        let rv = w.metadata.resource_version.clone().unwrap_or_default();
        let key = (ns.clone(), name.clone());
        // A poisoned lock only means another reconcile panicked mid-insert; the map is still a
        // valid cache.
        let mut map = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, c)) = map.get(&key)
            && *seen == rv
        {
            return c.clone();
        }
        let c = CompiledWindow::compile(&ns, &name, &w.spec).map_err(|e| e.to_string());
        map.insert(key, (rv, c.clone()));
        c
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The caches.
    pub stores: Stores,
    /// AWS.
    pub cloud: Arc<dyn Cloud>,
    /// Events.
    pub recorder: Recorder,
    /// `/metrics`, shared with the HTTP server.
    pub metrics: Arc<Metrics>,
    /// Where decisions get the time (the system clock; a manual one in tests).
    pub clock: Arc<dyn Clock>,
    /// The controller's namespace (FreezeWindows there apply everywhere).
    pub controller_namespace: String,
    /// Namespaces this controller handles (empty: all).
    pub namespaces: Vec<String>,
    /// Compiled FreezeWindows.
    pub freeze_cache: FreezeCache,
    /// The version recorded in evidence.
    pub version: &'static str,
    /// Whether this replica still holds the Lease (None: leader election is off).
    pub leading: Option<Arc<dyn Leadership>>,
    /// Decide/act rounds per Promotion reconcile before handing back to the queue
    /// (`promotion::MAX_ROUNDS`).
    pub max_rounds: usize,
    /// kiln's own username, stamped as `spec.requestedBy` on the Promotions it creates.
    pub requested_by: Option<String>,
}

impl Context {
    /// Whether this replica may act now, by the Lease's clock (a renewal that is late counts as
    /// lost even before the election loop notices).
    pub fn is_leader(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| l.is_leader())
    }

    /// The check before every write — status, finalizer, Event, Promotion creation, AWS action:
    /// a replica that lost its Lease stops at the next write, not at the next reconcile.
    pub fn fence(&self) -> Result<(), Error> {
        if self.is_leader() { Ok(()) } else { Err(Error::NotLeader) }
    }

    /// Runs reconcile `f` of `kind`, recording its duration and outcome in the metrics (the one
    /// wrapper every controller uses).
    pub async fn timed<F>(&self, kind: &'static str, f: F) -> Result<Requeue, Error>
    where
        F: std::future::Future<Output = Result<Requeue, Error>>,
    {
        let started = std::time::Instant::now();
        let result = f.await;
        match &result {
            Ok(_) => self.metrics.reconciled(kind, started.elapsed()),
            Err(e) => self.metrics.reconcile_failed(kind, e.metric_label(), started.elapsed()),
        }
        result
    }

    /// Whether objects in `namespace` are this controller's to handle.
    pub fn watches_namespace(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}
