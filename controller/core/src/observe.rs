//! From everything kiln sees in the cluster to the observations one Promotion is decided on:
//! its queue position, who preempts it, its upstream Promotions, whether a rollback target was
//! good, and which freeze windows are in scope ([`ClusterView`]); and the owned
//! [`Observations`] the controller's observe step fills and the decision core reads. Pure: the
//! controller passes in its caches.
//!
//! Keys: a queue is one (namespace, service, environment). Service names are a team's own, so
//! the same name in two namespaces is two services.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use kiln_api::PromotionPhase;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{PromotionSpec, PromotionStatus};
use kiln_api::release::ReleaseSpec;

use kiln_api::rollback_policy::RollbackPolicySpec;

use crate::freeze::CompiledWindow;
use crate::gates::{QueuedAhead, UpstreamObservation};
use crate::problem::Problem;
use crate::signals::SignalObservations;

/// The RollbackPolicy guarding the environment, as found.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PolicyState {
    /// The environment names no policy: bakes are timers only.
    #[default]
    NotRequired,
    /// The policy.
    Found(Box<RollbackPolicySpec>),
    /// The environment names a policy that does not exist (fail closed).
    Missing(String),
}

/// Everything a Promotion's decision needs that lives outside the Promotion, as the controller
/// observed it in its caches and in AWS. Owned, so the observe step returns it and the decide
/// and complete steps borrow it; `Default` is "nothing found" (no Release, no Environment, no
/// policy required, no problems, nothing ahead, no signals). A new observation is a field here,
/// filled by the observe step and read by the core.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The Release (None if it does not exist).
    pub release: Option<ReleaseSpec>,
    /// The target Environment (None if it does not exist).
    pub environment: Option<EnvironmentSpec>,
    /// The RollbackPolicy the Environment names.
    pub policy: PolicyState,
    /// What blocks the Promotion as specified (validation, unreadable inputs).
    pub problems: Vec<Problem>,
    /// This Release's Promotions in the upstream environments.
    pub upstream: Vec<UpstreamObservation>,
    /// Non-terminal Promotions of the same service and environment ahead of this one.
    pub ahead: Vec<QueuedAhead>,
    /// A rollback Promotion that takes this environment over, if any.
    pub preempted_by: Option<String>,
    /// For a rollback Promotion: whether this Release's forward Promotion into this environment
    /// succeeded before (only a known-good Release may take the rollback fast path).
    pub release_was_good_here: bool,
    /// Freeze windows in scope.
    pub freezes: Vec<CompiledWindow>,
    /// The latest signal reads for the policy in the environment's account (None: not read).
    pub signals: Option<SignalObservations>,
    /// Why the latest signal read failed, when it did (then `signals` is None).
    pub signal_read_error: Option<String>,
}

/// A Release as cached.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseView<'a> {
    /// Its namespace (a team's services are keyed within it).
    pub namespace: &'a str,
    /// Its name (what Promotions' `spec.release` refers to).
    pub name: &'a str,
    /// What it deploys.
    pub spec: &'a ReleaseSpec,
}

/// A Promotion as cached.
#[derive(Debug, Clone, Copy)]
pub struct PromotionView<'a> {
    /// Its namespace (queues are per namespace).
    pub namespace: &'a str,
    /// Its name (reported when it is ahead in a queue or preempts another).
    pub name: &'a str,
    /// `metadata.creationTimestamp` (queue order).
    pub created: Timestamp,
    /// Its release, environment, approvals and requests.
    pub spec: &'a PromotionSpec,
    /// Status, if written yet.
    pub status: Option<&'a PromotionStatus>,
}

impl PromotionView<'_> {
    fn phase(&self) -> PromotionPhase {
        self.status.map(|s| s.phase).unwrap_or_default()
    }

    fn is_terminal(&self) -> bool {
        self.phase().is_terminal()
    }
}

/// A FreezeWindow compiled, with where it lives.
#[derive(Debug, Clone)]
pub struct ScopedWindow {
    /// The window's namespace.
    pub namespace: String,
    /// The compiled window.
    pub window: CompiledWindow,
}

/// Everything cached, by kind.
#[derive(Debug, Clone, Default)]
pub struct ClusterView<'a> {
    /// The controller's own namespace: FreezeWindows there apply to every namespace.
    pub controller_namespace: &'a str,
    /// Environments by name.
    pub environments: BTreeMap<String, &'a EnvironmentSpec>,
    /// Every Release.
    pub releases: Vec<ReleaseView<'a>>,
    /// Every Promotion.
    pub promotions: Vec<PromotionView<'a>>,
    /// Every valid FreezeWindow.
    pub freezes: Vec<ScopedWindow>,
}

impl<'a> ClusterView<'a> {
    /// The Release a Promotion names (same namespace).
    pub fn release_of(&self, p: &PromotionView<'_>) -> Option<ReleaseView<'a>> {
        self.releases.iter().copied().find(|r| r.namespace == p.namespace && r.name == p.spec.release)
    }

    /// Promotions in the same queue (namespace, service, environment) as `p`, other than `p`.
    fn same_queue<'s>(&'s self, p: &'s PromotionView<'_>) -> impl Iterator<Item = &'s PromotionView<'a>> + 's {
        // The names of the service's Releases first, so the cost is one pass over each list
        // (not a Release lookup per Promotion: namespaces hold thousands of both).
        let service = self.release_of(p).map(|r| r.spec.service.as_str());
        let releases: HashSet<&str> = match service {
            Some(service) => self
                .releases
                .iter()
                .filter(|r| r.namespace == p.namespace && r.spec.service == service)
                .map(|r| r.name)
                .collect(),
            None => HashSet::new(),
        };
        self.promotions.iter().filter(move |o| {
            o.namespace == p.namespace
                && o.spec.environment == p.spec.environment
                && o.name != p.name
                && releases.contains(o.spec.release.as_str())
        })
    }

    /// Non-terminal Promotions of the same queue created before `p` (ties broken by name).
    pub fn ahead_of(&self, p: &PromotionView<'_>) -> Vec<QueuedAhead> {
        let mut ahead: Vec<&PromotionView<'_>> =
            self.same_queue(p).filter(|o| !o.is_terminal() && (o.created, o.name) < (p.created, p.name)).collect();
        ahead.sort_by_key(|o| (o.created, o.name));
        ahead
            .into_iter()
            .map(|o| QueuedAhead { name: o.name.to_string(), phase: o.phase(), rollback: o.spec.rollback.is_some() })
            .collect()
    }

    /// The rollback Promotion that takes `p`'s environment over, if `p` is a forward Promotion
    /// and one exists that has not finished.
    pub fn preempted_by(&self, p: &PromotionView<'_>) -> Option<String> {
        if p.spec.rollback.is_some() {
            return None;
        }
        let mut rollbacks: Vec<&PromotionView<'_>> =
            self.same_queue(p).filter(|o| o.spec.rollback.is_some() && !o.is_terminal()).collect();
        rollbacks.sort_by_key(|o| (o.created, o.name));
        rollbacks.first().map(|o| o.name.to_string())
    }

    /// Whether `release`'s forward Promotion into `environment` (in `namespace`) succeeded.
    pub fn release_was_good_here(&self, namespace: &str, release: &str, environment: &str) -> bool {
        self.promotions.iter().any(|o| {
            o.namespace == namespace
                && o.spec.release == release
                && o.spec.environment == environment
                && o.spec.rollback.is_none()
                && o.phase() == PromotionPhase::Succeeded
        })
    }

    /// This Release's Promotions in the upstream environments of `p`'s environment. `health`
    /// gives the upstream environment's signals now (the controller reads them).
    pub fn upstream_of(
        &self,
        p: &PromotionView<'_>,
        health: impl Fn(&str) -> Option<Result<(), String>>,
    ) -> Vec<UpstreamObservation> {
        let Some(env) = self.environments.get(&p.spec.environment) else { return Vec::new() };
        env.upstream
            .iter()
            .map(|up| {
                // The newest forward Promotion of this Release there.
                let forward = self
                    .promotions
                    .iter()
                    .filter(|o| {
                        o.namespace == p.namespace
                            && o.spec.release == p.spec.release
                            && &o.spec.environment == up
                            && o.spec.rollback.is_none()
                    })
                    .max_by_key(|o| (o.created, o.name));
                // A rollback away from this Release there, after it succeeded.
                let superseded_by = self
                    .promotions
                    .iter()
                    .filter(|o| {
                        o.namespace == p.namespace
                            && &o.spec.environment == up
                            && o.spec.rollback.as_ref().and_then(|r| r.from_release.as_deref())
                                == Some(p.spec.release.as_str())
                            && !matches!(o.phase(), PromotionPhase::Aborted | PromotionPhase::Failed)
                    })
                    .min_by_key(|o| (o.created, o.name))
                    .map(|o| o.name.to_string());
                UpstreamObservation {
                    environment: up.clone(),
                    phase: forward.map(|o| o.phase()),
                    full_traffic_at: forward
                        .and_then(|o| o.status)
                        .and_then(|s| s.full_traffic_at.as_ref())
                        .map(|t| t.0),
                    health: health(up),
                    superseded_by,
                }
            })
            .collect()
    }

    /// The FreezeWindows in scope for a Promotion in `namespace`: those in the controller's
    /// namespace (they apply everywhere) and those in `namespace` itself.
    pub fn freezes_for(&self, namespace: &str) -> Vec<CompiledWindow> {
        self.freezes
            .iter()
            .filter(|w| w.namespace == self.controller_namespace || w.namespace == namespace)
            .map(|w| w.window.clone())
            .collect()
    }

    /// The Promotions a change to Environment `environment` can affect (it or a downstream of it).
    pub fn affected_by_environment(&self, environment: &str) -> Vec<(String, String)> {
        self.promotions
            .iter()
            .filter(|p| !p.is_terminal())
            .filter(|p| {
                p.spec.environment == environment
                    || self
                        .environments
                        .get(&p.spec.environment)
                        .is_some_and(|e| e.upstream.iter().any(|u| u == environment))
            })
            .map(|p| (p.namespace.to_string(), p.name.to_string()))
            .collect()
    }

    /// The waiting or in-flight Promotions a FreezeWindow in `namespace` can affect.
    pub fn affected_by_freeze(&self, namespace: &str) -> Vec<(String, String)> {
        self.promotions
            .iter()
            .filter(|p| !p.is_terminal() && (namespace == self.controller_namespace || p.namespace == namespace))
            .map(|p| (p.namespace.to_string(), p.name.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::fixtures;
    use kiln_api::promotion::RollbackRequest;

    fn release(service: &str) -> ReleaseSpec {
        fixtures::lambda_release(service, &["dev", "stg", "prod"])
    }

    fn promo(release: &str, env: &str, rollback_from: Option<&str>) -> PromotionSpec {
        PromotionSpec {
            release: release.into(),
            environment: env.into(),
            requested_by: None,
            approvals: vec![],
            abort: false,
            retry: 0,
            rollback: rollback_from.map(|f| RollbackRequest { reason: "bad".into(), from_release: Some(f.into()) }),
        }
    }

    fn status(phase: PromotionPhase) -> PromotionStatus {
        PromotionStatus { phase, ..Default::default() }
    }

    fn at(m: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + m * 60).unwrap()
    }

    #[test]
    fn queue_ahead_preemption_and_rollback_targets() {
        let (r1, r2, other) = (release("ingest"), release("ingest"), release("billing"));
        let (p1, p2, p3, rb) = (
            promo("ingest-v1", "prod", None),
            promo("ingest-v2", "prod", None),
            promo("billing-v1", "prod", None),
            promo("ingest-v0", "prod", Some("ingest-v1")),
        );
        let (baking, waiting, done) = (
            status(PromotionPhase::Baking),
            status(PromotionPhase::WaitingForApproval),
            status(PromotionPhase::Succeeded),
        );
        let snap = ClusterView {
            controller_namespace: "kiln-system",
            releases: vec![
                ReleaseView { namespace: "ingest", name: "ingest-v1", spec: &r1 },
                ReleaseView { namespace: "ingest", name: "ingest-v2", spec: &r2 },
                ReleaseView { namespace: "ingest", name: "ingest-v0", spec: &r1 },
                ReleaseView { namespace: "ingest", name: "billing-v1", spec: &other },
            ],
            promotions: vec![
                PromotionView { namespace: "ingest", name: "a", created: at(1), spec: &p1, status: Some(&baking) },
                PromotionView { namespace: "ingest", name: "b", created: at(2), spec: &p2, status: Some(&waiting) },
                PromotionView { namespace: "ingest", name: "c", created: at(0), spec: &p3, status: None },
                PromotionView { namespace: "ingest", name: "rb", created: at(3), spec: &rb, status: None },
                PromotionView { namespace: "ingest", name: "old", created: at(-10), spec: &p1, status: Some(&done) },
            ],
            ..Default::default()
        };
        let b = snap.promotions[1];
        let ahead = snap.ahead_of(&b);
        assert_eq!(ahead, vec![QueuedAhead { name: "a".into(), phase: PromotionPhase::Baking, rollback: false }]);
        assert!(snap.ahead_of(&snap.promotions[2]).is_empty(), "another service is another queue");
        assert_eq!(snap.preempted_by(&snap.promotions[0]).as_deref(), Some("rb"));
        assert_eq!(snap.preempted_by(&snap.promotions[3]), None);
        assert!(snap.release_was_good_here("ingest", "ingest-v1", "prod"));
        assert!(!snap.release_was_good_here("ingest", "ingest-v2", "prod"));
        let rb_ahead = snap.ahead_of(&snap.promotions[3]);
        assert_eq!(rb_ahead.len(), 2, "a rollback sees the in-flight promotion it preempts: {rb_ahead:?}");
    }

    #[test]
    fn upstream_observations_and_supersession() {
        let r = release("ingest");
        let mut prod_env: EnvironmentSpec = serde_json::from_value(serde_json::json!({
            "upstream": ["stg"],
            "aws": {"accountId": "333333333333", "region": "ca-central-1", "roleArn": "arn:aws:iam::333333333333:role/k"}
        }))
        .unwrap();
        prod_env.promotion.auto = false;
        let (stg, prod, rb) = (
            promo("ingest-v1", "stg", None),
            promo("ingest-v1", "prod", None),
            promo("ingest-v0", "stg", Some("ingest-v1")),
        );
        let mut done = status(PromotionPhase::Succeeded);
        done.full_traffic_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5)));
        let rolled = status(PromotionPhase::Succeeded);
        let mut snap = ClusterView {
            controller_namespace: "kiln-system",
            environments: [("prod".to_string(), &prod_env)].into_iter().collect(),
            releases: vec![ReleaseView { namespace: "ingest", name: "ingest-v1", spec: &r }],
            promotions: vec![
                PromotionView { namespace: "ingest", name: "s", created: at(1), spec: &stg, status: Some(&done) },
                PromotionView { namespace: "ingest", name: "p", created: at(2), spec: &prod, status: None },
            ],
            ..Default::default()
        };
        let p = snap.promotions[1];
        let up = snap.upstream_of(&p, |_| Some(Ok(())));
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].phase, Some(PromotionPhase::Succeeded));
        assert_eq!(up[0].full_traffic_at, Some(at(5)));
        assert_eq!(up[0].superseded_by, None);
        snap.promotions.push(PromotionView {
            namespace: "ingest",
            name: "rb",
            created: at(3),
            spec: &rb,
            status: Some(&rolled),
        });
        let up = snap.upstream_of(&p, |_| None);
        assert_eq!(up[0].superseded_by.as_deref(), Some("rb"));
        assert_eq!(snap.affected_by_environment("stg"), vec![("ingest".to_string(), "p".to_string())]);
    }

    #[test]
    fn freeze_scope_is_the_controller_namespace_or_the_own_namespace() {
        let spec: kiln_api::FreezeWindowSpec = serde_json::from_value(serde_json::json!({
            "absolute": [{"start": "2026-12-21T00:00:00-05:00", "end": "2027-01-04T09:00:00-05:00"}]
        }))
        .unwrap();
        let w =
            |ns: &str| ScopedWindow { namespace: ns.into(), window: CompiledWindow::compile(ns, "w", &spec).unwrap() };
        let snap = ClusterView {
            controller_namespace: "kiln-system",
            freezes: vec![w("kiln-system"), w("ingest"), w("billing")],
            ..Default::default()
        };
        let names: Vec<String> = snap.freezes_for("ingest").iter().map(|w| w.name().to_string()).collect();
        assert_eq!(names, vec!["kiln-system/w", "ingest/w"]);
    }
}
