//! One world per test: a real Kubernetes control plane (kube-apiserver + etcd + the GC, namespace
//! and ServiceAccount controllers, [`kiln_testkit::ControlPlane`]) with the Helm chart installed
//! onto it, a moto server with three accounts (dev, stg, prod), and the real `kiln-controller`
//! binary as a child process running as the chart's ServiceAccount. Each test has its own control
//! plane (tests name their Environments dev/stg/prod, which are cluster-scoped), so tests run in
//! parallel; everything stops on drop. Waits poll with generous deadlines and say what they saw
//! when they give up.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kiln_api::fixtures;
use kiln_api::release::{Artifact, ReleaseSpec};
use kiln_api::{Environment, FreezeWindow, Promotion, PromotionPhase, Release, RollbackPolicy};
use kiln_testkit::{Account, ControlPlane, ControllerProcess, Launch, Moto, User};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The AWS accounts of the three environments.
pub const ACCOUNTS: [(&str, &str); 3] = [("dev", "111111111111"), ("stg", "222222222222"), ("prod", "333333333333")];
/// The region everything lives in.
pub const REGION: &str = "us-east-1";
/// The controller's namespace.
pub const KILN_NS: &str = "kiln-system";

/// A digest-pinned image for version `n`.
pub use kiln_api::fixtures::image;

/// A controller process of the world (killed on drop) and the Lease identity it runs as.
pub struct Controller {
    pub process: ControllerProcess,
    /// Its Lease identity.
    pub identity: String,
}

impl std::ops::Deref for Controller {
    type Target = ControllerProcess;
    fn deref(&self) -> &ControllerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Controller {
    fn deref_mut(&mut self) -> &mut ControllerProcess {
        &mut self.process
    }
}

/// Settings of a controller process.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Alarm poll interval.
    pub poll: &'static str,
    /// Lease duration.
    pub lease: &'static str,
    /// Extra arguments.
    pub extra: Vec<String>,
    /// The kubeconfig to use instead of the chart ServiceAccount's direct one (e.g. through a
    /// fault proxy: [`World::kubeconfig_via`]).
    pub kubeconfig: Option<PathBuf>,
    /// The AWS endpoint instead of moto's own (e.g. a fault proxy in front of it).
    pub aws_endpoint: Option<String>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions { poll: "500ms", lease: "4s", extra: Vec::new(), kubeconfig: None, aws_endpoint: None }
    }
}

/// Everything one test runs against.
pub struct World {
    /// The test's name (prefix of everything it creates).
    pub name: String,
    /// The namespace its Releases live in.
    pub ns: String,
    /// The control plane (kube-apiserver, etcd, controllers).
    pub cp: ControlPlane,
    /// An admin client.
    pub client: Client,
    /// moto.
    pub moto: Moto,
    /// dev, stg and prod.
    pub accounts: BTreeMap<String, Account>,
    /// Controllers started (the last is the newest).
    pub controllers: Vec<Controller>,
    /// The kubeconfig controllers use: the chart's ServiceAccount.
    pub controller_kubeconfig: PathBuf,
    /// That ServiceAccount's token.
    controller_token: String,
}

/// The chart's ServiceAccount (in [`KILN_NS`]), which the controller runs as.
pub const CONTROLLER_ACCOUNT: &str = "kiln";

/// People in every world, each with a kubeconfig context of their name: (user, groups).
pub const PEOPLE: [(&str, &[&str]); 4] = [
    ("alice@example.com", &["kiln:security"]),
    ("bob@example.com", &["kiln:product"]),
    ("carol@example.com", &["kiln:security"]),
    ("dave@example.com", &["developers"]),
];

/// The chart's `crds/` (the repository's CRDs, as `cargo run -p kiln-crdgen` writes them).
pub fn crd_dir() -> PathBuf {
    kiln_testkit::repo_root().unwrap_or_else(|e| panic!("{e}")).join("charts/kiln/crds")
}

impl World {
    /// Starts a control plane and moto, installs the chart and sets up the three accounts (no
    /// controller yet).
    ///
    /// Every world is the chart's, installed as a user would: its CRDs, RBAC, admission policy and
    /// ServiceAccount, rendered by the real Helm engine and server-side applied; the controller runs
    /// as that ServiceAccount with a TokenRequest token, so the real authorizer refuses what the
    /// chart does not grant and the real admission chain runs the chart's policy. The test client
    /// is an admin, listed as a trusted approval writer so tests can write approvals in any name;
    /// [`World::with_chart`] keeps the default policy for identity tests.
    pub async fn new(name: &str) -> World {
        World::chart_world(name, "admissionPolicy:\n  trustedApprovalWriters: [admin]\n").await
    }

    /// Like [`World::new`], with the chart's default values: approvals must be written by the
    /// people they name. People: alice (security), bob (product), carol (security, the requester
    /// in tests), dave (no kiln group).
    pub async fn with_chart(name: &str) -> World {
        World::chart_world(name, "").await
    }

    /// Like [`World::new`], with the CRDs of `crd_dir` instead of the repository's (a cluster
    /// whose CRDs differ from the controller's types).
    pub async fn with_crds(name: &str, crd_dir: &std::path::Path) -> World {
        World::start(name, crd_dir, "admissionPolicy:\n  trustedApprovalWriters: [admin]\n").await
    }

    async fn chart_world(name: &str, values: &str) -> World {
        World::start(name, &crd_dir(), values).await
    }

    async fn start(name: &str, crd_dir: &std::path::Path, values: &str) -> World {
        let people: Vec<User> =
            PEOPLE.iter().map(|(user, groups)| groups.iter().fold(User::new(user), |u, g| u.in_group(g))).collect();
        let cp = ControlPlane::start(&people);
        let client = cp.client("admin").await.unwrap_or_else(|e| panic!("{e}"));
        let ns = name.to_string();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for n in [ns.as_str(), KILN_NS] {
            let obj: Namespace =
                serde_json::from_value(json!({"metadata": {"name": n}})).unwrap_or_else(|e| panic!("{e}"));
            namespaces
                .create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("create namespace {n}: {e}"));
        }
        // `helm install`: the chart's crds/ first, then its templates.
        let repo = kiln_testkit::repo_root().unwrap_or_else(|e| panic!("{e}"));
        kiln_testkit::chart::install(&client, &repo, crd_dir, values, KILN_NS)
            .await
            .unwrap_or_else(|e| panic!("installing the chart: {e}"));
        let token = cp
            .service_account_token(KILN_NS, CONTROLLER_ACCOUNT)
            .await
            .unwrap_or_else(|e| panic!("the controller's token: {e}"));
        let path = std::env::temp_dir().join(format!("kiln-e2e-{name}-{}-controller.kubeconfig", std::process::id()));
        std::fs::write(&path, cp.kubeconfig_for_token(&token)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let moto = Moto::start();
        let mut accounts = BTreeMap::new();
        for (env, id) in ACCOUNTS {
            let a = Account::assume(&moto, id, REGION).await.unwrap_or_else(|e| panic!("account {env}: {e}"));
            accounts.insert(env.to_string(), a);
        }
        World {
            name: name.to_string(),
            ns,
            cp,
            client,
            moto,
            accounts,
            controllers: Vec::new(),
            controller_kubeconfig: path,
            controller_token: token,
        }
    }

    /// A client acting as `user` (one of [`PEOPLE`], or `"admin"`).
    pub async fn client_as(&self, user: &str) -> Client {
        self.cp.client(user).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A kubeconfig file for the chart's ServiceAccount reaching kube-apiserver through `proxy`
    /// (a [`kiln_testkit::FaultProxy`] serving HTTPS in front of it).
    pub fn kubeconfig_via(&self, proxy: &kiln_testkit::FaultProxy) -> PathBuf {
        let tag =
            format!("kiln-e2e-{}-{}-{}", self.name, std::process::id(), proxy.url().rsplit(':').next().unwrap_or(""));
        let ca = std::env::temp_dir().join(format!("{tag}-proxy-ca.pem"));
        std::fs::write(&ca, proxy.ca_pem().unwrap_or_else(|| panic!("the proxy must serve HTTPS")))
            .unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
        let path = std::env::temp_dir().join(format!("{tag}-controller.kubeconfig"));
        let yaml = kiln_testkit::controlplane::kubeconfig_yaml(proxy.url(), &ca, &self.controller_token);
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// A client acting as the controller does (the chart's ServiceAccount).
    pub async fn controller_client(&self) -> Client {
        self.cp.client_with_token(&self.controller_token).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Write requests kube-apiserver has served for `resources` (see [`ControlPlane::api_writes`]).
    pub async fn api_writes(&self, resources: &[&str]) -> u64 {
        self.cp.api_writes(resources).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The account of environment `env`.
    pub fn account(&self, env: &str) -> &Account {
        self.accounts.get(env).unwrap_or_else(|| panic!("no account for {env}"))
    }

    /// Starts a controller process.
    pub fn start_controller(&mut self, options: ControllerOptions) -> usize {
        let identity = format!("{}-kiln-{}", self.name, self.controllers.len());
        // As the chart runs it: kiln stamps its ServiceAccount's name as the requester.
        let requested_by = format!("--requested-by=system:serviceaccount:{KILN_NS}:{CONTROLLER_ACCOUNT}");
        let log_level = std::env::var("KILN_E2E_LOG").unwrap_or_else(|_| "info,kiln_controller=debug".into());
        let mut args: Vec<String> = [
            "--alarm-poll-interval",
            options.poll,
            "--lease-duration",
            options.lease,
            "--lease-renew-deadline",
            "3s",
            "--lease-retry-period",
            "500ms",
            "--controller-namespace",
            KILN_NS,
            "--identity",
            &identity,
            // moto has no DescribeAlarmHistory (500): flaps between polls fail closed.
            "--alarm-history=false",
            "--log-format",
            "text",
            "--log-level",
            &log_level,
            &requested_by,
        ]
        .map(String::from)
        .to_vec();
        args.extend(options.extra.iter().cloned());
        let process = ControllerProcess::start(Launch {
            binary: std::path::Path::new(env!("CARGO_BIN_EXE_kiln-controller")),
            kubeconfig: options.kubeconfig.as_ref().unwrap_or(&self.controller_kubeconfig),
            aws_endpoint: options.aws_endpoint.as_deref().unwrap_or(&self.moto.url()),
            tag: &format!("e2e-{identity}"),
            args,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        self.controllers.push(Controller { process, identity });
        self.controllers.len() - 1
    }

    /// The controllers' log tails, for failure messages.
    pub fn logs(&self) -> String {
        self.controllers
            .iter()
            .map(|c| format!("--- {} ({})\n{}", c.identity, c.log.display(), c.log_tail(60)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a namespaced object from JSON (in `metadata.namespace`, else the test namespace).
    pub async fn create<K>(&self, value: Value) -> K
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"));
        let ns = value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(&self.ns);
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}\n{value}", K::kind(&())))
    }

    /// Creates an Environment (cluster-scoped).
    pub async fn create_environment(&self, value: Value) -> Environment {
        let obj: Environment = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"));
        let api: Api<Environment> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create Environment: {e}\n{value}"))
    }

    /// Creates the three Environments (dev auto; stg one releng approval; prod security and
    /// product), each guarded by RollbackPolicy `slo` and baking `bake`.
    pub async fn environments(&self, bake: &str) {
        self.environments_with([bake, bake, bake]).await
    }

    /// [`World::environments`] with a bake per environment (dev, stg, prod).
    pub async fn environments_with(&self, bakes: [&str; 3]) {
        for (i, (env, id)) in ACCOUNTS.into_iter().enumerate() {
            let bake = bakes[i];
            let (upstream, rules) = match env {
                "dev" => (json!([]), json!({"auto": true})),
                "stg" => (json!(["dev"]), json!({"approvals": [{"role": "release-engineering", "count": 1}]})),
                _ => (
                    json!(["stg"]),
                    json!({"requireChangeRef": true,
                           "approvals": [{"role": "security", "count": 1}, {"role": "product", "count": 1}]}),
                ),
            };
            self.create_environment(json!({
                "apiVersion": "kiln.dev/v1alpha1", "kind": "Environment",
                "metadata": {"name": env},
                "spec": {"upstream": upstream,
                         "aws": fixtures::aws_target(id),
                         "promotion": rules, "bake": {"duration": bake}, "rollbackPolicyRef": "slo"}
            }))
            .await;
        }
    }

    /// RollbackPolicy `slo` watching alarm `alarm` (created OK in every account).
    pub async fn policy(&self, alarm: &str) {
        for a in self.accounts.values() {
            kiln_testkit::put_alarm(&a.clients, alarm).await.unwrap_or_else(|e| panic!("{e}"));
            kiln_testkit::set_alarm_state(&a.clients, alarm, "OK").await.unwrap_or_else(|e| panic!("{e}"));
        }
        self.create::<RollbackPolicy>(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "RollbackPolicy",
            "metadata": {"name": "slo"},
            "spec": {"alarms": [{"name": alarm}], "interval": "1s"}
        }))
        .await;
    }

    /// Reads a Promotion.
    pub async fn promotion(&self, name: &str) -> Option<Promotion> {
        self.api::<Promotion>().get_opt(name).await.unwrap_or_else(|e| panic!("get promotion {name}: {e}"))
    }

    /// Reads a Release.
    pub async fn release(&self, name: &str) -> Option<Release> {
        self.api::<Release>().get_opt(name).await.unwrap_or_else(|e| panic!("get release {name}: {e}"))
    }

    /// Polls Promotion `name` until `pred` holds; panics after `timeout` with what it saw.
    pub async fn wait_promotion(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Promotion) -> bool,
    ) -> Promotion {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(p) = self.promotion(name).await {
                if pred(&p) {
                    return p;
                }
                last = Some(p);
            }
            if Instant::now() > deadline {
                let status = last
                    .as_ref()
                    .and_then(|p| p.status.as_ref())
                    .map(|s| serde_json::to_string_pretty(s).unwrap_or_default());
                panic!(
                    "Promotion {name}: {what} not reached within {timeout:?}; last status: {}\n{}",
                    status.unwrap_or_else(|| "none".into()),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits for Promotion `name` to reach `phase`.
    pub async fn wait_phase(&self, name: &str, phase: PromotionPhase, timeout: Duration) -> Promotion {
        self.wait_promotion(name, timeout, phase.as_str(), |p| p.status.as_ref().map(|s| s.phase) == Some(phase)).await
    }

    /// Polls until `check` returns Some.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, check: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!("{what} not reached within {timeout:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Appends an approval to Promotion `name`.
    pub async fn approve(&self, name: &str, user: &str, role: &str) {
        let p = self.promotion(name).await.unwrap_or_else(|| panic!("no promotion {name}"));
        let mut approvals = serde_json::to_value(&p.spec.approvals).unwrap_or_else(|e| panic!("{e}"));
        if let Some(list) = approvals.as_array_mut() {
            list.push(json!({"user": user, "role": role, "at": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}));
        }
        let patch = json!({"spec": {"approvals": approvals}});
        self.api::<Promotion>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("approve {name} as {user}/{role}: {e}"));
    }

    /// Merge-patches Promotion `name`'s spec.
    pub async fn patch_promotion(&self, name: &str, spec: Value) {
        self.api::<Promotion>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&json!({ "spec": spec })))
            .await
            .unwrap_or_else(|e| panic!("patch {name}: {e}"));
    }

    /// Creates a Promotion of `release` into `env` (as a person would: `kubectl kiln promote`).
    pub async fn promote(&self, release: &str, env: &str, requested_by: &str) -> String {
        let name = format!("{release}-{env}");
        self.create::<Promotion>(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": name},
            "spec": {"release": release, "environment": env, "requestedBy": requested_by}
        }))
        .await;
        name
    }

    /// Events about the object named `name`, as (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let list = api.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("list events: {e}"));
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// The gate named `gate` of a Promotion status.
    pub fn gate(p: &Promotion, gate: &str) -> Option<(bool, String)> {
        p.status.as_ref()?.gates.iter().find(|g| g.name == gate).map(|g| (g.ok, g.message.clone()))
    }

    /// Creates a FreezeWindow.
    pub async fn freeze(&self, value: Value) -> FreezeWindow {
        self.create::<FreezeWindow>(value).await
    }
}

/// Reads the first `n` bytes of a `Value` path as a string (for messages).
pub fn text(v: &Value, path: &str) -> String {
    v.pointer(path).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// A world with the three Environments, policy `slo` on alarm `<service>-errors` and a Lambda
/// function `<service>` (alias `live` on version 1, an image function) in every account.
pub async fn lambda_world(name: &str, service: &str, bakes: [&str; 3]) -> World {
    let w = World::new(name).await;
    lambda_setup(&w, service, bakes).await;
    w
}

/// What [`lambda_world`] sets up, in an existing world.
pub async fn lambda_setup(w: &World, service: &str, bakes: [&str; 3]) {
    w.environments_with(bakes).await;
    w.policy(&format!("{service}-errors")).await;
    for env in ["dev", "stg", "prod"] {
        kiln_testkit::LambdaFixture::create_image(w.account(env), service, "live", &image(service, 1))
            .await
            .unwrap_or_else(|e| panic!("{env}: {e}"));
    }
}

impl World {
    /// Creates Release `<service>-v<n>` of version `v1.<n>.0` for the Lambda `service`, artifact
    /// image `n`, through `environments`, with `extra` merged into its spec.
    pub async fn lambda_release(&self, service: &str, n: u32, environments: &[&str], extra: Value) -> String {
        let name = format!("{service}-v{n}");
        let spec = ReleaseSpec {
            version: format!("v1.{n}.0"),
            change_ref: Some(format!("CHG-{n}")),
            author: Some("dev@example.com".into()),
            artifacts: vec![Artifact { name: "fn".into(), image: Some(image(service, n)), zip: None }],
            ..fixtures::lambda_release(service, environments)
        };
        let mut spec = serde_json::to_value(spec).unwrap_or_else(|e| panic!("{e}"));
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        self.create::<Release>(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": name}, "spec": spec
        }))
        .await;
        name
    }

    /// The alias `live` of Lambda `function` in `env`'s account.
    pub async fn alias(&self, env: &str, function: &str) -> kiln_testkit::AliasState {
        kiln_testkit::lambda_alias(&self.account(env).clients, function, "live").await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The image the alias `live` of `function` runs in `env`'s account.
    pub async fn alias_image(&self, env: &str, function: &str) -> String {
        let out =
            self.account(env).clients.lambda.get_function().function_name(function).qualifier("live").send().await;
        let out = out.unwrap_or_else(|e| panic!("GetFunction {function}:live: {e:?}"));
        out.code().and_then(|c| c.image_uri()).unwrap_or_default().to_string()
    }

    /// The published versions of Lambda `function` in `env`'s account.
    pub async fn versions(&self, env: &str, function: &str) -> Vec<String> {
        kiln_testkit::lambda_versions(&self.account(env).clients, function).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Drives `release` through dev (auto) and stg (one approval) to success.
    pub async fn through_stg(&self, release: &str) {
        self.wait_phase(&format!("{release}-dev"), PromotionPhase::Succeeded, Duration::from_secs(60)).await;
        let stg = self.promote(release, "stg", "alice@example.com").await;
        self.approve(&stg, "rel@example.com", "release-engineering").await;
        self.wait_phase(&stg, PromotionPhase::Succeeded, Duration::from_secs(60)).await;
    }

    /// An RFC 3339 time `secs` from now (whole seconds, as the API stores it).
    pub fn at(secs: i64) -> String {
        let t =
            jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(secs)).unwrap_or_else(|e| panic!("{e}"));
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}
