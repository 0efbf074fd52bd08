//! The reconciler in process: the in-repo API server, kiln-aws's in-memory cloud, a manual
//! clock, and caches the test fills from the API server when it says so (so a test can hold the
//! cache back, as a lagging watch would). A [`Replica`] is one controller process; dropping it
//! and starting another over the same server and cloud is a restart.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kiln_api::fixtures;
use kiln_api::release::EcsStrategy;
use kiln_api::{Environment, FreezeWindow, Promotion, PromotionPhase, Release, RollbackPolicy};
use kiln_aws::fake::{FakeCloud, FakeEcs};
use kiln_controller::context::{Clock, Context, FreezeCache, Leadership, ManualClock, Stores};
use kiln_controller::index::PromotionIndex;
use kiln_controller::metrics::Metrics;
use kiln_controller::{cache, promotion};
use kiln_core::signals::AlarmState;
use kiln_test_apiserver::TestServer;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The dev account (auto-promoting, no approvals).
pub const DEV_ACCOUNT: &str = "111111111111";
/// The prod account (approvals required).
pub const PROD_ACCOUNT: &str = "333333333333";
/// The region.
pub const REGION: &str = "us-east-1";
/// The controller's namespace.
pub const KILN_NS: &str = "kiln-system";
/// The alarm the RollbackPolicy `slo` watches.
pub const ALARM: &str = "web-5xx";
/// The ECS cluster and service the Releases target.
pub const CLUSTER: &str = "web-cluster";
/// The ECS service.
pub const SERVICE: &str = "web";

/// A digest-pinned image of [`SERVICE`] for version `n`.
pub fn image(n: u32) -> String {
    fixtures::image(SERVICE, n)
}

/// One test's world: server, cloud, clock, namespace.
pub struct Bench {
    /// The API server (in this test's runtime).
    pub server: TestServer,
    /// An admin client.
    pub client: Client,
    /// The test's namespace.
    pub ns: String,
    /// AWS.
    pub cloud: Arc<FakeCloud>,
    /// The time every replica sees.
    pub clock: Arc<ManualClock>,
}

/// One controller process: its context (caches, recorder, leadership) and the writers that fill
/// its caches.
pub struct Replica {
    /// What the reconcilers get.
    pub ctx: Arc<Context>,
    releases: Writer<Release>,
    promotions: Writer<Promotion>,
    environments: Writer<Environment>,
    freezes: Writer<FreezeWindow>,
    policies: Writer<RollbackPolicy>,
    index: PromotionIndex,
    leading: Arc<LeaseFlag>,
}

/// The Lease as a test holds it: leading until told otherwise.
#[derive(Debug)]
pub struct LeaseFlag(std::sync::atomic::AtomicBool);

impl Leadership for LeaseFlag {
    fn is_leader(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn client_for(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::from_yaml(kubeconfig).unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    Client::try_from(cfg).unwrap_or_else(|e| panic!("client: {e}"))
}

impl Bench {
    /// A server with the dev and prod Environments, RollbackPolicy `slo` in namespace `ns`
    /// watching [`ALARM`] (OK in both accounts), and the clock at 2026-12-07T10:00Z (a Monday).
    pub async fn new(ns: &str) -> Bench {
        let server = kiln_test_apiserver::start(kiln_test_apiserver::Config::default())
            .await
            .unwrap_or_else(|e| panic!("start the API test server: {e}"));
        let client = client_for(&server.kubeconfig).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for n in [ns, KILN_NS] {
            let obj: Namespace = from_json(json!({"metadata": {"name": n}}));
            namespaces.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("namespace {n}: {e}"));
        }
        let start: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(ManualClock::new(start));
        let now = clock.clone();
        let cloud = FakeCloud::new(Duration::ZERO).with_clock(Arc::new(move || now.now()));
        let bench = Bench { server, client, ns: ns.to_string(), cloud: Arc::new(cloud), clock };
        for (env, account, upstream, rules) in [
            ("dev", DEV_ACCOUNT, json!([]), json!({"auto": true})),
            (
                "prod",
                PROD_ACCOUNT,
                json!(["dev"]),
                json!({"approvals": [{"role": "security", "count": 1}], "requireUpstreamGreen": false}),
            ),
        ] {
            bench
                .create_cluster::<Environment>(json!({
                    "apiVersion": "kiln.dev/v1alpha1", "kind": "Environment",
                    "metadata": {"name": env},
                    "spec": {"upstream": upstream,
                             "aws": fixtures::aws_target(account),
                             "promotion": rules, "bake": {"duration": "10m"}, "rollbackPolicyRef": "slo"}
                }))
                .await;
            bench.cloud.cloudwatch(account).set_state(ALARM, AlarmState::Ok, start - SignedDuration::from_hours(1));
        }
        bench.policy_in(ns).await;
        bench
    }

    /// RollbackPolicy `slo` (watching [`ALARM`]) in namespace `ns`.
    async fn policy_in(&self, ns: &str) {
        let policy: RollbackPolicy = from_json(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "RollbackPolicy",
            "metadata": {"name": "slo"},
            "spec": {"alarms": [{"name": ALARM}], "interval": "1s"}
        }));
        Api::<RollbackPolicy>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &policy)
            .await
            .unwrap_or_else(|e| panic!("create the policy in {ns}: {e}"));
    }

    /// Another team's namespace `ns`, with its own RollbackPolicy `slo`.
    pub async fn namespace(&self, ns: &str) {
        let obj: Namespace = from_json(json!({"metadata": {"name": ns}}));
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
        self.policy_in(ns).await;
    }

    /// A namespaced API in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a namespaced object in the test's namespace.
    pub async fn create<K>(&self, obj: Value) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let typed: K = from_json(obj);
        self.api::<K>().create(&PostParams::default(), &typed).await.unwrap_or_else(|e| panic!("create: {e}"))
    }

    /// Creates a cluster-scoped object.
    pub async fn create_cluster<K>(&self, obj: Value) -> K
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let typed: K = from_json(obj);
        Api::<K>::all(self.client.clone())
            .create(&PostParams::default(), &typed)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"))
    }

    /// Release `name` of service [`SERVICE`] with image `n`: ECS canary on [`CLUSTER`], the
    /// given steps, a 1m step bake, into dev and prod.
    pub async fn release(&self, name: &str, n: u32, steps: &[i32]) -> Release {
        self.release_in(&self.ns, SERVICE, name, n, steps).await
    }

    /// [`Bench::release`] in namespace `ns`, calling the service `service` (the ECS service it
    /// deploys is [`SERVICE`] whatever the team calls it).
    pub async fn release_in(&self, ns: &str, service: &str, name: &str, n: u32, steps: &[i32]) -> Release {
        self.release_with(ns, service, name, n, steps, |_| {}).await
    }

    /// [`Bench::release_in`] with `edit` applied to the spec before it is created.
    pub async fn release_with(
        &self,
        ns: &str,
        service: &str,
        name: &str,
        n: u32,
        steps: &[i32],
        edit: impl FnOnce(&mut kiln_api::release::ReleaseSpec),
    ) -> Release {
        let mut spec = fixtures::ecs_release(CLUSTER, SERVICE, EcsStrategy::Canary, &["dev", "prod"]);
        spec.service = service.into();
        spec.version = format!("v1.0.{n}");
        spec.change_ref = Some("CHG-1".into());
        spec.artifacts[0].image = Some(image(n));
        if let Some(ecs) = spec.target.ecs.as_mut() {
            ecs.steps = Some(steps.to_vec());
            ecs.step_bake = Some("1m".into());
        }
        edit(&mut spec);
        Api::<Release>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &Release::new(name, spec))
            .await
            .unwrap_or_else(|e| panic!("create release {ns}/{name}: {e}"))
    }

    /// Promotion `name` of Release `release` into `env`.
    pub async fn promotion(&self, name: &str, release: &str, env: &str) -> Promotion {
        self.promotion_in(&self.ns, name, json!({"release": release, "environment": env})).await
    }

    /// Promotion `name` in namespace `ns` with `spec`.
    pub async fn promotion_in(&self, ns: &str, name: &str, spec: Value) -> Promotion {
        let obj: Promotion = from_json(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": name},
            "spec": spec
        }));
        Api::<Promotion>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create promotion {ns}/{name}: {e}"))
    }

    /// Promotion `name` as the API server holds it now.
    pub async fn read(&self, name: &str) -> Promotion {
        self.read_in(&self.ns, name).await
    }

    /// Promotion `name` of namespace `ns` as the API server holds it now.
    pub async fn read_in(&self, ns: &str, name: &str) -> Promotion {
        Api::<Promotion>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get promotion {ns}/{name}: {e}"))
    }

    /// The phase the API server holds.
    pub async fn phase(&self, name: &str) -> PromotionPhase {
        self.read(name).await.status.map(|s| s.phase).unwrap_or_default()
    }

    /// Archives the evidence of Environment `env` to S3 bucket `bucket` of its account.
    pub async fn evidence_bucket(&self, env: &str, bucket: &str) {
        let patch = json!({"spec": {"evidence": {"bucket": bucket}}});
        Api::<Environment>::all(self.client.clone())
            .patch(env, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("set the evidence bucket of {env}: {e}"));
    }

    /// Sets Environment `env`'s `spec.tenants` (which namespaces may act on which resources).
    pub async fn tenants(&self, env: &str, tenants: Value) {
        let patch = json!({"spec": {"tenants": tenants}});
        Api::<Environment>::all(self.client.clone())
            .patch(env, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("set the tenants of {env}: {e}"));
    }

    /// Deletes Promotion `name` as `kubectl delete` does (it stays while a finalizer holds it).
    pub async fn delete_promotion(&self, name: &str) {
        self.api::<Promotion>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete promotion {name}: {e}"));
    }

    /// The ECS service of `account` the Releases target.
    pub fn ecs(&self, account: &str) -> Arc<FakeEcs> {
        self.cloud.ecs(account, CLUSTER, SERVICE)
    }

    /// (reason, note) of every Event about Promotion `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let mut out: Vec<(String, String)> = api
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("list events: {e}"))
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect();
        out.sort();
        out
    }

    /// A controller process with empty caches (call [`Replica::sync`]), leading.
    pub fn replica(&self, identity: &str) -> Replica {
        self.replica_with_rounds(identity, promotion::MAX_ROUNDS)
    }

    /// [`Bench::replica`] running at most `max_rounds` decide/act rounds per reconcile.
    pub fn replica_with_rounds(&self, identity: &str, max_rounds: usize) -> Replica {
        let (releases_r, releases) = reflector::store::<Release>();
        let (promotions_r, promotions) = reflector::store::<Promotion>();
        let (environments_r, environments) = reflector::store::<Environment>();
        let (freezes_r, freezes) = reflector::store::<FreezeWindow>();
        let (policies_r, policies) = reflector::store::<RollbackPolicy>();
        let index = PromotionIndex::default();
        let leading = Arc::new(LeaseFlag(std::sync::atomic::AtomicBool::new(true)));
        let reporter = Reporter { controller: "kiln-controller".into(), instance: Some(identity.into()) };
        let ctx = Arc::new(Context {
            client: self.client.clone(),
            stores: Stores {
                releases: releases_r,
                promotions: promotions_r,
                environments: environments_r,
                freezes: freezes_r,
                policies: policies_r,
                promotion_index: index.clone(),
            },
            cloud: self.cloud.clone(),
            recorder: Recorder::new(self.client.clone(), reporter),
            metrics: Arc::new(Metrics::new()),
            clock: self.clock.clone(),
            controller_namespace: KILN_NS.into(),
            namespaces: Vec::new(),
            freeze_cache: FreezeCache::default(),
            version: "test",
            leading: Some(leading.clone()),
            max_rounds,
            requested_by: Some("system:serviceaccount:kiln-system:kiln".into()),
        });
        Replica { ctx, releases, promotions, environments, freezes, policies, index, leading }
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| panic!("test object: {e}"))
}

fn from_json<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("test object: {e}"))
}

/// Replaces a cache with what the API server holds, as a watch's re-list does.
async fn relist<K>(client: &Client, writer: &mut Writer<K>, trim: fn(&mut K), mut also: impl FnMut(&watcher::Event<K>))
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let items =
        Api::<K>::all(client.clone()).list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}")).items;
    let mut events = vec![watcher::Event::Init];
    events.extend(items.into_iter().map(|mut o| {
        trim(&mut o);
        watcher::Event::InitApply(o)
    }));
    events.push(watcher::Event::InitDone);
    for ev in &events {
        also(ev);
        writer.apply_watcher_event(ev);
    }
}

impl Replica {
    /// Fills every cache from the API server (trimmed as the controller trims them).
    pub async fn sync(&mut self) {
        let client = self.ctx.client.clone();
        relist(&client, &mut self.releases, cache::slim, |_| {}).await;
        let index = self.index.clone();
        relist(&client, &mut self.promotions, cache::slim_promotion, |ev| index.apply(ev)).await;
        relist(&client, &mut self.environments, cache::slim, |_| {}).await;
        relist(&client, &mut self.freezes, cache::slim, |_| {}).await;
        relist(&client, &mut self.policies, cache::slim, |_| {}).await;
    }

    /// Loses (or regains) the Lease.
    pub fn set_leading(&self, leading: bool) {
        self.leading.0.store(leading, std::sync::atomic::Ordering::SeqCst);
    }

    /// The cached Promotion `name` of namespace `ns`.
    pub fn cached(&self, ns: &str, name: &str) -> Arc<Promotion> {
        self.try_cached(ns, name).unwrap_or_else(|| panic!("Promotion {ns}/{name} is not in the cache"))
    }

    /// The cached Promotion `name` of namespace `ns`, if the cache holds it.
    pub fn try_cached(&self, ns: &str, name: &str) -> Option<Arc<Promotion>> {
        self.ctx.stores.promotions.get(&ObjectRef::new(name).within(ns))
    }

    /// Syncs and reconciles Promotion `name` (deleted, held by its finalizer) until the API
    /// server no longer has it, moving the clock by `step` after each reconcile. The number of
    /// reconciles it took, or `None` if it was still there after `limit`.
    pub async fn reconcile_until_gone(
        &mut self,
        bench: &Bench,
        name: &str,
        step: SignedDuration,
        limit: usize,
    ) -> Option<usize> {
        for n in 0..limit {
            self.sync().await;
            if bench.api::<Promotion>().get_opt(name).await.unwrap_or_else(|e| panic!("get {name}: {e}")).is_none() {
                return Some(n);
            }
            if let Some(obj) = self.try_cached(&bench.ns, name) {
                let _ = self.reconcile(obj).await;
            }
            bench.clock.advance(step);
        }
        None
    }

    /// Syncs and reconciles Promotion `name` until the dev ECS service saw call `call` (e.g.
    /// `"shift 10"`), at most `limit` times; what a reconcile returns is left to the assertions
    /// on status and AWS that follow.
    pub async fn reconcile_until_call(&mut self, bench: &Bench, name: &str, call: &str, limit: usize) {
        for _ in 0..limit {
            self.sync().await;
            let _ = self.reconcile(self.cached(&bench.ns, name)).await;
            if bench.ecs(DEV_ACCOUNT).calls().iter().any(|c| c == call) {
                return;
            }
        }
    }

    /// Syncs and reconciles Promotion `name` of namespace `ns` `times` times, whatever each
    /// returns (a Promotion that waits: the assertions on its status follow).
    pub async fn settle(&mut self, ns: &str, name: &str, times: usize) {
        for _ in 0..times {
            self.sync().await;
            let _ = self.reconcile(self.cached(ns, name)).await;
        }
    }

    /// One reconcile of `obj`, as the controller runs it.
    pub async fn reconcile(&self, obj: Arc<Promotion>) -> Result<Requeue, kiln_controller::error::Error> {
        promotion::reconcile(obj, self.ctx.clone()).await
    }

    /// Syncs and reconciles Promotion `name` until it rests in a terminal phase, moving the
    /// clock by `step` whenever a reconcile asks to be woken later. Panics after `limit`
    /// reconciles with the phase it saw.
    pub async fn drive(&mut self, bench: &Bench, name: &str, step: SignedDuration, limit: usize) -> Promotion {
        let ns = bench.ns.clone();
        self.drive_in(bench, &ns, name, step, limit).await
    }

    /// [`Replica::drive`] for Promotion `name` of namespace `ns`.
    pub async fn drive_in(
        &mut self,
        bench: &Bench,
        ns: &str,
        name: &str,
        step: SignedDuration,
        limit: usize,
    ) -> Promotion {
        for _ in 0..limit {
            self.sync().await;
            let obj = self.cached(ns, name);
            let requeue = self.reconcile(obj).await.unwrap_or_else(|e| panic!("reconcile {name}: {e}"));
            let p = bench.read_in(ns, name).await;
            let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            if phase.is_terminal() && requeue == Requeue::await_change() {
                return p;
            }
            if requeue != Requeue::requeue(Duration::from_millis(100)) {
                bench.clock.advance(step);
            }
        }
        let p = bench.read_in(ns, name).await;
        panic!("Promotion {name} did not finish in {limit} reconciles: {:?}", p.status.map(|s| (s.phase, s.message)));
    }
}

/// Runs `fut` until the fake cloud reaches `held`, then drops it: the controller crashed there.
pub async fn crash_at<F>(fut: F, held: &kiln_aws::fake::HeldCall)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = tokio::spawn(fut.map(|_| ()));
    tokio::time::timeout(Duration::from_secs(20), held.reached())
        .await
        .unwrap_or_else(|_| panic!("the held AWS call was never reached"));
    task.abort();
    let _ = task.await;
}
