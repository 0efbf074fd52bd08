//! From everything kiln sees in the cluster to the observations one Promotion is decided on:
//! its queue position, who preempts it, its upstream Promotions, whether a rollback target was
//! good, and which freeze windows are in scope ([`ClusterView`]); and the owned
//! [`Observations`] the controller's observe step fills and the decision core reads. Pure: the
//! controller passes in its caches.
//!
//! Keys: a queue is one AWS resource (an ECS service or a Lambda function, in its account and
//! region: [`crate::target`]), whatever the namespace, Release or Environment that names it.
//! Releases, upstream Promotions and rollback eligibility are a namespace's own.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kiln_api::PromotionPhase;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{PromotionSpec, PromotionStatus, ReleaseIdentity};
use kiln_api::release::ReleaseSpec;

use kiln_api::rollback_policy::RollbackPolicySpec;

use crate::freeze::CompiledWindow;
use crate::gates::{QueuedAhead, UpstreamObservation};
use crate::integrity;
use crate::problem::Problem;
use crate::running::RunningState;
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
    /// Which Release exactly (UID and digests; None if it does not exist).
    pub release_identity: Option<ReleaseIdentity>,
    /// The target Environment (None if it does not exist).
    pub environment: Option<EnvironmentSpec>,
    /// The RollbackPolicy the Environment names.
    pub policy: PolicyState,
    /// What blocks the Promotion as specified (validation, unreadable inputs).
    pub problems: Vec<Problem>,
    /// This Release's Promotions in the upstream environments.
    pub upstream: Vec<UpstreamObservation>,
    /// The AWS resource the Promotion drives, as the queue keys it ([`crate::target`]).
    pub target: Option<String>,
    /// Non-terminal Promotions driving the same AWS resource ahead of this one (and any in
    /// flight on it).
    pub ahead: Vec<QueuedAhead>,
    /// A rollback Promotion that takes this environment over, if any.
    pub preempted_by: Option<String>,
    /// For a rollback Promotion: whether this Release's forward Promotion into this environment
    /// succeeded before, with the same UID and digests (only a known-good Release may take the
    /// rollback fast path).
    pub release_was_good_here: bool,
    /// What the environment runs now, read from AWS for a forward Promotion about to deploy
    /// (its queue is clear and nothing else is wrong): the `newer` gate.
    pub running: RunningState,
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
    /// The AWS resource it drives ([`crate::target::of_promotion`]); None when unknown (it
    /// then queues with nothing).
    pub target: Option<&'a str>,
}

impl PromotionView<'_> {
    /// How it is named to a Promotion in `to`'s namespace: by name there, `namespace/name` from
    /// another.
    fn label_for(&self, to: &PromotionView<'_>) -> String {
        if self.namespace == to.namespace { self.name.to_string() } else { format!("{}/{}", self.namespace, self.name) }
    }

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
    /// The Promotions of the namespace being decided, and the unfinished ones of every other
    /// namespace (they share AWS resources: the queue is per resource).
    pub promotions: Vec<PromotionView<'a>>,
    /// Every valid FreezeWindow.
    pub freezes: Vec<ScopedWindow>,
}

impl<'a> ClusterView<'a> {
    /// The Release a Promotion names (same namespace).
    pub fn release_of(&self, p: &PromotionView<'_>) -> Option<ReleaseView<'a>> {
        self.releases.iter().copied().find(|r| r.namespace == p.namespace && r.name == p.spec.release)
    }

    /// Unfinished Promotions other than `p` that drive `p`'s AWS resource (any namespace).
    fn on_same_target<'s>(&'s self, p: &'s PromotionView<'_>) -> impl Iterator<Item = &'s PromotionView<'a>> + 's {
        self.promotions.iter().filter(move |o| {
            p.target.is_some()
                && o.target == p.target
                && !o.is_terminal()
                && (o.namespace, o.name) != (p.namespace, p.name)
        })
    }

    /// What `p` waits for on its AWS resource: unfinished Promotions created before it (ties
    /// broken by namespace and name), and any in flight whatever its age, oldest first. One in
    /// another namespace is named `namespace/name`.
    pub fn ahead_of(&self, p: &PromotionView<'_>) -> Vec<QueuedAhead> {
        let order = |o: &PromotionView<'_>| (o.created, o.namespace.to_string(), o.name.to_string());
        let mine = order(p);
        let mut ahead: Vec<&PromotionView<'_>> =
            self.on_same_target(p).filter(|o| o.phase().is_in_flight() || order(o) < mine).collect();
        ahead.sort_by_key(|o| order(o));
        ahead
            .into_iter()
            .map(|o| QueuedAhead { name: o.label_for(p), phase: o.phase(), rollback: o.spec.rollback.is_some() })
            .collect()
    }

    /// The rollback Promotion that takes `p`'s AWS resource over, if `p` is a forward Promotion
    /// and one is under way there. One that has not passed its gates does not (an invalid one
    /// fails at once and must never abort anything).
    pub fn preempted_by(&self, p: &PromotionView<'_>) -> Option<String> {
        if p.spec.rollback.is_some() {
            return None;
        }
        self.on_same_target(p)
            .filter(|o| o.spec.rollback.is_some() && o.phase().is_in_flight())
            .min_by_key(|o| (o.created, o.namespace, o.name))
            .map(|o| o.label_for(p))
    }

    /// Whether `release`'s forward Promotion into `environment` (in `namespace`) succeeded, with
    /// the Release that is `identity` (not another Release of that name).
    pub fn release_was_good_here(
        &self,
        namespace: &str,
        release: &str,
        environment: &str,
        identity: Option<&ReleaseIdentity>,
    ) -> bool {
        self.promotions.iter().any(|o| {
            o.namespace == namespace
                && o.spec.release == release
                && o.spec.environment == environment
                && o.spec.rollback.is_none()
                && o.phase() == PromotionPhase::Succeeded
                && integrity::deployed(o.status.and_then(|s| s.release.as_ref()), identity)
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
                    deployed: forward.and_then(|o| o.status).and_then(|s| s.release.clone()),
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
            downgrade: false,
        }
    }

    fn status(phase: PromotionPhase) -> PromotionStatus {
        PromotionStatus { phase, ..Default::default() }
    }

    fn at(m: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + m * 60).unwrap()
    }

    const WEB: Option<&str> = Some("arn:aws:ecs:us-east-1:111111111111:service/apps/web");
    const BILLING: Option<&str> = Some("arn:aws:ecs:us-east-1:111111111111:service/apps/billing");

    fn view<'a>(
        ns: &'a str,
        name: &'a str,
        created: i64,
        spec: &'a PromotionSpec,
        status: Option<&'a PromotionStatus>,
        target: Option<&'a str>,
    ) -> PromotionView<'a> {
        PromotionView { namespace: ns, name, created: at(created), spec, status, target }
    }

    #[test]
    fn queue_ahead_preemption_and_rollback_targets() {
        let r1 = release("ingest");
        let (p1, p2, p3, rb) = (
            promo("ingest-v1", "prod", None),
            promo("ingest-v2", "prod", None),
            promo("billing-v1", "prod", None),
            promo("ingest-v0", "prod", Some("ingest-v1")),
        );
        let (baking, waiting, done, deploying) = (
            status(PromotionPhase::Baking),
            status(PromotionPhase::WaitingForApproval),
            status(PromotionPhase::Succeeded),
            status(PromotionPhase::Deploying),
        );
        let snap = ClusterView {
            controller_namespace: "kiln-system",
            releases: vec![ReleaseView { namespace: "ingest", name: "ingest-v1", spec: &r1 }],
            promotions: vec![
                view("ingest", "a", 1, &p1, Some(&baking), WEB),
                view("ingest", "b", 2, &p2, Some(&waiting), WEB),
                view("ingest", "c", 0, &p3, None, BILLING),
                view("ingest", "rb", 3, &rb, Some(&deploying), WEB),
                view("ingest", "old", -10, &p1, Some(&done), WEB),
            ],
            ..Default::default()
        };
        let b = snap.promotions[1];
        let ahead = snap.ahead_of(&b);
        assert_eq!(
            ahead,
            vec![
                QueuedAhead { name: "a".into(), phase: PromotionPhase::Baking, rollback: false },
                QueuedAhead { name: "rb".into(), phase: PromotionPhase::Deploying, rollback: true },
            ],
            "earlier ones, and any in flight"
        );
        assert!(snap.ahead_of(&snap.promotions[2]).is_empty(), "another resource is another queue");
        assert_eq!(snap.preempted_by(&snap.promotions[0]).as_deref(), Some("rb"));
        assert_eq!(snap.preempted_by(&snap.promotions[3]), None);
        assert!(snap.release_was_good_here("ingest", "ingest-v1", "prod", None));
        assert!(!snap.release_was_good_here("ingest", "ingest-v2", "prod", None));
        let rb_ahead = snap.ahead_of(&snap.promotions[3]);
        assert_eq!(rb_ahead.len(), 2, "a rollback sees the in-flight promotion it preempts: {rb_ahead:?}");
        // A rollback that has not passed its gates preempts nothing.
        let not_started = ClusterView {
            promotions: vec![view("ingest", "a", 1, &p1, Some(&baking), WEB), view("ingest", "rb", 3, &rb, None, WEB)],
            ..Default::default()
        };
        assert_eq!(not_started.preempted_by(&not_started.promotions[0]), None);
        // A Promotion whose resource is unknown (its Release is missing) queues with nothing.
        let unknown = view("ingest", "u", 9, &p1, None, None);
        assert!(snap.ahead_of(&unknown).is_empty() && snap.preempted_by(&unknown).is_none());
    }

    /// Issue "Tenancy and release integrity" §1: the queue is the AWS resource, not (namespace,
    /// service, environment). Two namespaces, two service names and two Environments that
    /// resolve to one ECS service are one queue; a deployment in flight holds it whatever its
    /// age; two rollback Promotions see each other.
    #[test]
    fn one_aws_resource_is_one_queue_across_namespaces_and_environments() {
        let (fwd, rb) = (promo("web-v1", "dev", None), promo("web-v0", "dev-2", Some("web-v1")));
        let (baking, queued, rolling) =
            (status(PromotionPhase::Baking), status(PromotionPhase::Queued), status(PromotionPhase::RollingBack));
        let snap = ClusterView {
            controller_namespace: "kiln-system",
            promotions: vec![
                view("team-a", "web-v1-dev", 1, &fwd, Some(&baking), WEB),
                view("team-b", "shop-v7-dev", 0, &fwd, Some(&queued), WEB),
                view("team-b", "billing-v1-dev", 0, &fwd, Some(&queued), BILLING),
            ],
            ..Default::default()
        };
        // Created earlier, but the one in flight holds the resource: named with its namespace.
        let ahead = snap.ahead_of(&snap.promotions[1]);
        assert_eq!(
            ahead,
            vec![QueuedAhead { name: "team-a/web-v1-dev".into(), phase: PromotionPhase::Baking, rollback: false }]
        );
        assert!(snap.ahead_of(&snap.promotions[2]).is_empty());
        // Same creation instant: the namespace and name break the tie, the same from both sides.
        let (x, y) = (view("team-a", "x", 5, &fwd, None, WEB), view("team-b", "x", 5, &fwd, None, WEB));
        let two = ClusterView { promotions: vec![x, y], ..Default::default() };
        assert!(two.ahead_of(&x).is_empty());
        assert_eq!(two.ahead_of(&y).len(), 1);

        // Two rollbacks of one resource from two namespaces: the later one waits for the earlier,
        // and a forward Promotion anywhere is preempted by the earliest.
        let rbs = ClusterView {
            promotions: vec![
                view("team-a", "rb-1", 1, &rb, Some(&rolling), WEB),
                view("team-b", "rb-2", 2, &rb, None, WEB),
                view("team-b", "fwd", 0, &fwd, Some(&baking), WEB),
            ],
            ..Default::default()
        };
        let ahead = rbs.ahead_of(&rbs.promotions[1]);
        assert!(ahead.iter().any(|a| a.rollback && a.name == "team-a/rb-1"), "{ahead:?}");
        assert_eq!(rbs.preempted_by(&rbs.promotions[2]).as_deref(), Some("team-a/rb-1"));
        // The earlier rollback does not wait for the later, which has not started.
        assert!(!rbs.ahead_of(&rbs.promotions[0]).iter().any(|a| a.rollback), "{:?}", rbs.ahead_of(&rbs.promotions[0]));
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
                view("ingest", "s", 1, &stg, Some(&done), None),
                view("ingest", "p", 2, &prod, None, None),
            ],
            ..Default::default()
        };
        let p = snap.promotions[1];
        let up = snap.upstream_of(&p, |_| Some(Ok(())));
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].phase, Some(PromotionPhase::Succeeded));
        assert_eq!(up[0].full_traffic_at, Some(at(5)));
        assert_eq!(up[0].superseded_by, None);
        snap.promotions.push(view("ingest", "rb", 3, &rb, Some(&rolled), None));
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
