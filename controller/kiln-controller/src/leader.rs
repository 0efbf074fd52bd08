//! Leader election on a `coordination.k8s.io/v1` Lease, modelled on client-go's
//! `leaderelection` (kube-rs has none).
//!
//! One replica holds the Lease and renews it every `retry_period`; the others read it every
//! `retry_period` and take it over when it is free (no holder, e.g. after a release) or when it
//! has not changed for `leaseDurationSeconds`. Expiry is measured with the local monotonic
//! clock from the moment *this* process last saw the record change, never by comparing the
//! remote `renewTime` with the local wall clock, so clock skew between nodes cannot make two
//! replicas lead at once. Every write is a `replace` carrying the resourceVersion that was read:
//! when two candidates race, the API server accepts one write and answers 409 to the other.
//!
//! The leader stops leading (watch value `false`) as soon as it sees another holder, or when no
//! renewal has succeeded for `renew_deadline`, measured from the *start* of the last successful
//! request: `renew_deadline < lease_duration` then guarantees it has stopped before any standby
//! can consider the Lease expired. An elector leads at most once: after losing the Lease the
//! controller is expected to exit and be restarted, as client-go's callers do, because its
//! in-memory state may be based on writes it is no longer entitled to make.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where the Lease is and how this candidate uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the controller's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity, written to `holderIdentity` (the Pod name: unique per replica).
    pub identity: String,
    /// How long a standby waits, after the Lease last changed, before taking it over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal. Must be shorter than
    /// `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby retries. Must be shorter than `renew_deadline`.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: lease 15 s, renew deadline 10 s, retry every 2 s.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// What is wrong with the durations, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err("lease_duration must be at least 1 s (leaseDurationSeconds is whole seconds)".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err("renew_deadline must be shorter than lease_duration".into());
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err("retry_period must be non-zero and shorter than renew_deadline".into());
        }
        Ok(())
    }

    /// The config made safe to run: durations that break the election's guarantees are replaced
    /// by proportions of `lease_duration` (logged), since `start` cannot fail.
    fn sanitized(mut self) -> Self {
        if let Err(problem) = self.validate() {
            self.lease_duration = self.lease_duration.max(Duration::from_secs(1));
            self.renew_deadline = self.lease_duration * 2 / 3;
            self.retry_period = self.lease_duration / 5;
            tracing::warn!(
                %problem,
                lease_duration = ?self.lease_duration,
                renew_deadline = ?self.renew_deadline,
                retry_period = ?self.retry_period,
                "invalid leader election durations, using safe ones",
            );
        }
        self
    }

    fn lease_duration_seconds(&self) -> i32 {
        // Rounded up so the stored duration is never shorter than the one we act on.
        let secs = self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// State shared by the handle and the election loop.
#[derive(Debug)]
struct Shared {
    leader: watch::Sender<bool>,
    /// While leading: the instant after which this replica may no longer assume it holds the
    /// Lease unless a renewal has succeeded meanwhile.
    valid_until: Mutex<Option<Instant>>,
}

impl Shared {
    fn is_leader(&self) -> bool {
        let valid_until = *self.valid_until.lock().unwrap_or_else(PoisonError::into_inner);
        *self.leader.borrow() && valid_until.is_some_and(|until| Instant::now() < until)
    }

    /// When leadership runs out unless renewed (None: not leading).
    fn valid_until(&self) -> Option<Instant> {
        *self.valid_until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_leading(&self, until: Option<Instant>) {
        *self.valid_until.lock().unwrap_or_else(PoisonError::into_inner) = until;
        self.leader.send_if_modified(|leading| {
            let changed = *leading != until.is_some();
            *leading = until.is_some();
            changed
        });
    }
}

/// A running candidate for the Lease. Dropping it stops the loop without releasing the Lease
/// (like a crash: a standby takes over after the lease duration); call
/// [`LeaderElector::release`] on a clean shutdown.
#[derive(Debug)]
pub struct LeaderElector {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LeaderElector {
    /// Starts campaigning for the Lease in a background task (on the current Tokio runtime).
    pub fn start(client: kube::Client, config: LeaseConfig) -> LeaderElector {
        let config = config.sanitized();
        let (leader, _) = watch::channel(false);
        let shared = Arc::new(Shared { leader, valid_until: Mutex::new(None) });
        let (stop_tx, stop_rx) = oneshot::channel();
        let election = Election {
            api: Api::namespaced(client, &config.namespace),
            config,
            shared: shared.clone(),
            observed: None,
            observed_at: Instant::now(),
        };
        let task = tokio::spawn(election.run(stop_rx));
        LeaderElector { shared, stop: Some(stop_tx), task: Some(task) }
    }

    /// Whether this replica leads now: it holds the Lease and its last renewal is recent enough
    /// (checked against the clock too, so a starved election task cannot leave a stale `true`).
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// A handle the reconcilers ask at every write (the same clock check as
    /// [`LeaderElector::is_leader`]).
    pub fn handle(&self) -> Arc<dyn crate::context::Leadership> {
        Arc::new(LeaderHandle(self.shared.clone()))
    }

    /// Resolves once this replica no longer leads: the election saw another holder or the
    /// Lease was released, or — by the clock — the last renewal is older than the renew
    /// deadline, even if the election task is stuck on a request that never returns.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            let mut changes = shared.leader.subscribe();
            loop {
                let Some(until) = shared.valid_until().filter(|_| shared.is_leader()) else { return };
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        }
    }

    /// Leadership changes: `true` once acquired, `false` when lost or released.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.shared.leader.subscribe()
    }

    /// Stops renewing and, if leading, gives the lease up (holderIdentity cleared,
    /// leaseDurationSeconds=1) so a standby takes over at once.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            // Err: the loop has already ended (leadership lost); there is nothing to release.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The loop never panics; a JoinError could only be a cancellation, which ends it too.
            let _ = task.await;
        }
        self.shared.set_leading(None);
    }

    /// Stops the loop at once without releasing the Lease, as if the process had crashed (for
    /// tests of the takeover after expiry).
    #[doc(hidden)]
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.shared.set_leading(None);
    }
}

impl Drop for LeaderElector {
    fn drop(&mut self) {
        // A loop that renews for an owner that is gone would hold the Lease for nobody.
        if let Some(task) = self.task.take() {
            task.abort();
            self.shared.set_leading(None);
        }
    }
}

/// [`LeaderElector::handle`].
struct LeaderHandle(Arc<Shared>);

impl crate::context::Leadership for LeaderHandle {
    fn is_leader(&self) -> bool {
        self.0.is_leader()
    }
}

/// The result of one attempt to acquire or renew.
enum Attempt {
    /// This candidate holds the Lease (written just now).
    Holding,
    /// Another candidate holds an unexpired Lease.
    HeldBy(String),
    /// The attempt failed (network, 5xx, 409 from a concurrent writer, timeout); try again.
    Failed(String),
}

/// The election loop's own state.
struct Election {
    api: Api<Lease>,
    config: LeaseConfig,
    shared: Arc<Shared>,
    /// The Lease spec as last read or written.
    observed: Option<LeaseSpec>,
    /// When `observed` last changed, by the local monotonic clock.
    observed_at: Instant,
}

impl Election {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        tracing::info!(lease = %self.lease_ref(), identity = %self.config.identity, "campaigning for leadership");
        // Standing by until the Lease is ours.
        let mut valid_until = loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                biased;
                // Ok: release() asked (nothing to release yet); Err: the handle is gone.
                _ = &mut stop => return,
                attempt = self.attempt(started + self.config.renew_deadline) => attempt,
            };
            match attempt {
                Attempt::Holding => break started + self.config.renew_deadline,
                Attempt::HeldBy(holder) => tracing::debug!(lease = %self.lease_ref(), %holder, "standing by"),
                Attempt::Failed(error) => {
                    tracing::debug!(lease = %self.lease_ref(), %error, "acquiring the lease failed, retrying");
                }
            }
            tokio::select! {
                biased;
                _ = &mut stop => return,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
        };
        self.shared.set_leading(Some(valid_until));
        tracing::info!(
            lease = %self.lease_ref(),
            identity = %self.config.identity,
            transitions = self.observed.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0),
            "became leader",
        );
        // Leading until stopped, outbid or out of time.
        loop {
            tokio::select! {
                biased;
                asked = &mut stop => {
                    self.stop_leading(asked.is_ok()).await;
                    return;
                }
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
            let started = Instant::now();
            if started >= valid_until {
                self.lose("the lease was not renewed within the renew deadline");
                return;
            }
            let attempt = tokio::select! {
                biased;
                asked = &mut stop => {
                    self.stop_leading(asked.is_ok()).await;
                    return;
                }
                attempt = self.attempt(valid_until) => attempt,
            };
            match attempt {
                Attempt::Holding => {
                    valid_until = started + self.config.renew_deadline;
                    self.shared.set_leading(Some(valid_until));
                }
                Attempt::HeldBy(holder) => {
                    self.lose(&format!("the lease is held by {holder}"));
                    return;
                }
                Attempt::Failed(error) => {
                    tracing::warn!(lease = %self.lease_ref(), %error, "renewing the lease failed, retrying");
                }
            }
        }
    }

    /// Stops leading; gives the Lease up only when `release()` asked for it. A dropped or
    /// aborted handle (the stop sender gone without a message) behaves like a crash.
    async fn stop_leading(&mut self, release: bool) {
        // Not leading from here on, before the Lease is given up, so the caller's writes never
        // overlap with the next leader's.
        self.shared.set_leading(None);
        if release {
            self.release().await;
        }
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn lose(&self, why: &str) {
        self.shared.set_leading(None);
        tracing::warn!(lease = %self.lease_ref(), identity = %self.config.identity, %why, "lost leadership");
    }

    fn observe(&mut self, spec: LeaseSpec) {
        if self.observed.as_ref() != Some(&spec) {
            self.observed = Some(spec);
            self.observed_at = Instant::now();
        }
    }

    /// One acquire-or-renew (client-go's `tryAcquireOrRenew`), abandoned at `deadline`.
    async fn attempt(&mut self, deadline: Instant) -> Attempt {
        match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Failed("timed out".to_string()),
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Attempt {
        let now = MicroTime(jiff::Timestamp::now());
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return self.create(now).await,
            Err(error) => return Attempt::Failed(error.to_string()),
        };
        let spec = current.spec.clone().unwrap_or_default();
        self.observe(spec.clone());
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.config.identity;
        let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
        if !holder.is_empty() && !ours && Instant::now() < self.observed_at + duration {
            return Attempt::HeldBy(holder);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let renewed = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration_seconds()),
            renew_time: Some(now.clone()),
            // A renewal keeps when it was acquired; a takeover is a new term.
            acquire_time: if ours { spec.acquire_time.clone() } else { Some(now) },
            lease_transitions: Some(if ours { transitions } else { transitions.saturating_add(1) }),
            ..spec
        };
        // `current.metadata` carries the resourceVersion read above: the write fails with 409 if
        // anyone wrote in between.
        let lease = Lease { metadata: current.metadata, spec: Some(renewed) };
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observe(written.spec.unwrap_or_default());
                if !ours {
                    tracing::info!(lease = %self.lease_ref(), previous = %holder, "took over the lease");
                }
                Attempt::Holding
            }
            Err(error) => Attempt::Failed(error.to_string()),
        }
    }

    async fn create(&mut self, now: MicroTime) -> Attempt {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.lease_duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.observe(created.spec.unwrap_or_default());
                Attempt::Holding
            }
            // 409 AlreadyExists: another candidate created it first.
            Err(error) => Attempt::Failed(error.to_string()),
        }
    }

    /// Gives the Lease up if this candidate still holds it, within one renew deadline. Retried on
    /// conflicts, which a renewal abandoned mid-flight can cause.
    async fn release(&mut self) {
        let deadline = Instant::now() + self.config.renew_deadline;
        loop {
            match tokio::time::timeout_at(deadline, self.try_release()).await {
                Ok(Ok(())) => {
                    tracing::info!(lease = %self.lease_ref(), identity = %self.config.identity, "released the lease");
                    return;
                }
                Ok(Err(error)) if Instant::now() < deadline => {
                    tracing::debug!(lease = %self.lease_ref(), %error, "releasing the lease failed, retrying");
                    tokio::time::sleep(self.config.retry_period.min(deadline - Instant::now())).await;
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.lease_ref(), %error, "could not release the lease; it will expire");
                    return;
                }
                Err(_) => {
                    tracing::warn!(lease = %self.lease_ref(), "releasing the lease timed out; it will expire");
                    return;
                }
            }
        }
    }

    async fn try_release(&mut self) -> Result<(), kube::Error> {
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            // Someone else took it over already; theirs to keep.
            return Ok(());
        }
        let now = MicroTime(jiff::Timestamp::now());
        let released = LeaseSpec {
            holder_identity: None,
            // A standby treats a lease without holder as free at once; the short duration also
            // covers clients that only look at the duration.
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec
        };
        let lease = Lease { metadata: current.metadata, spec: Some(released) };
        let written = self.api.replace(&self.config.name, &PostParams::default(), &lease).await?;
        self.observe(written.spec.unwrap_or_default());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_that_break_the_guarantees_are_replaced() {
        let mut config = LeaseConfig::new("ns", "kiln", "a");
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.clone().sanitized(), config);
        config.renew_deadline = Duration::from_secs(20);
        assert!(config.validate().is_err());
        let fixed = config.sanitized();
        assert_eq!(fixed.validate(), Ok(()), "{fixed:?}");
        assert_eq!(fixed.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn lease_duration_seconds_rounds_up() {
        let mut config = LeaseConfig::new("ns", "kiln", "a");
        config.lease_duration = Duration::from_millis(2500);
        assert_eq!(config.lease_duration_seconds(), 3);
        config.lease_duration = Duration::from_secs(2);
        assert_eq!(config.lease_duration_seconds(), 2);
    }
}
