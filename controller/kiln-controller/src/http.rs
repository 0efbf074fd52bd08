//! The controller's own HTTP server: `/metrics` for Prometheus, `/livez` and `/readyz` for the
//! kubelet.
//!
//! `/livez` only says the process serves requests: restarting a controller because the API
//! server or AWS is down would not help, so nothing external is checked there. `/readyz` says
//! whether this replica is useful: the kiln CRDs are installed and either its caches are synced
//! (leader) or it is a standby, which has nothing to sync but must stay Ready so a rollout of
//! the Deployment does not stall on it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;

/// The content type of the OpenMetrics text format that `Metrics::render` produces.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `/readyz` reports, set by the parts of the controller that know.
#[derive(Debug, Default)]
pub struct Readiness {
    crds_present: AtomicBool,
    caches_synced: AtomicBool,
    standby: AtomicBool,
}

// Each flag is read on its own and nothing else is published through them, so relaxed ordering
// is enough.
impl Readiness {
    /// Not ready: nothing is known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the kiln CRDs are installed in the cluster.
    pub fn set_crds_present(&self, present: bool) {
        self.crds_present.store(present, Ordering::Relaxed);
    }

    /// Whether the leader's watches have listed everything once.
    pub fn set_caches_synced(&self, synced: bool) {
        self.caches_synced.store(synced, Ordering::Relaxed);
    }

    /// Whether this replica is waiting for the leader Lease (it watches nothing meanwhile).
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.why_not().is_none()
    }

    /// What is missing for readiness, in words for `kubectl describe pod`; `None` when ready.
    pub fn why_not(&self) -> Option<String> {
        if !self.crds_present.load(Ordering::Relaxed) {
            // Caches cannot sync without the CRDs, so this is the only thing worth saying.
            return Some("kiln CRDs are not installed (kubectl apply -f crds/)".to_string());
        }
        if !self.caches_synced.load(Ordering::Relaxed) && !self.standby.load(Ordering::Relaxed) {
            return Some("caches not synced yet".to_string());
        }
        None
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], state.metrics.render()).into_response()
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.why_not() {
        None => (StatusCode::OK, "ok").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// The routes, without a listener (for `serve` and for tests that drive the router directly).
pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

/// Serves `GET /metrics`, `/livez` and `/readyz` (404 for anything else) on `listener` until
/// `shutdown` completes, then finishes the requests in flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, readiness)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_crds_and_synced_caches_or_standby() {
        let r = Readiness::new();
        assert_eq!(r.why_not().as_deref(), Some("kiln CRDs are not installed (kubectl apply -f crds/)"));
        r.set_caches_synced(true);
        assert!(!r.is_ready(), "synced caches do not make up for missing CRDs");
        r.set_crds_present(true);
        assert_eq!(r.why_not(), None);
        r.set_caches_synced(false);
        assert_eq!(r.why_not().as_deref(), Some("caches not synced yet"));
        r.set_standby(true);
        assert!(r.is_ready(), "a standby has nothing to sync");
        r.set_crds_present(false);
        assert!(!r.is_ready());
    }
}
