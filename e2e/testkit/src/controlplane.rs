//! A real Kubernetes control plane per test: kube-apiserver, etcd and the kube-controller-manager
//! controllers tests rely on (garbage collector, namespace deletion, ServiceAccounts), built from
//! pinned Go modules (`e2e/controlplane`, by `scripts/controlplane.sh`).
//!
//! [`ControlPlane::start`] runs `kiln-controlplane` with a fresh directory, waits for its `ready`
//! line and kills it on drop. The binary is `$KILN_CONTROLPLANE_BIN` when set, else
//! `.controlplane/kiln-controlplane` at the repository root. A missing binary is a failure, never a
//! skip: run `scripts/controlplane.sh`.
//!
//! Users: `admin` (in `system:masters`) and each user the test names, authenticated by bearer
//! tokens; the kubeconfig has one context per user, named after it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::moto::installed_bin;

/// How long [`ControlPlane::start`] waits for `ready` (the binary bounds its own wait at 120 s).
const START_TIMEOUT: Duration = Duration::from_secs(150);

/// Where the control-plane binary is: `$KILN_CONTROLPLANE_BIN` when set, else
/// `<repo root>/.controlplane/kiln-controlplane`. Errors when the file does not exist (with how to
/// build it).
pub fn controlplane_bin() -> Result<PathBuf, String> {
    installed_bin("KILN_CONTROLPLANE_BIN", ".controlplane/kiln-controlplane", |bin| {
        format!(
            "the Kubernetes control plane is not built at {}: run scripts/controlplane.sh (it builds \
             kube-apiserver, etcd and kube-controller-manager from the pinned Go modules in \
             e2e/controlplane) or set KILN_CONTROLPLANE_BIN",
            bin.display()
        )
    })
}

/// A user the control plane authenticates: a name and its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// A user in no group but `system:authenticated` (which every authenticated user gets).
    pub fn new(name: &str) -> User {
        User { name: name.to_owned(), groups: Vec::new() }
    }

    /// The same user, also in `group`.
    pub fn in_group(mut self, group: &str) -> User {
        self.groups.push(group.to_owned());
        self
    }
}

/// A running control plane, stopped (and its directory removed) on drop. Its log stays in the
/// temporary directory ([`ControlPlane::log_path`]).
#[derive(Debug)]
pub struct ControlPlane {
    child: Child,
    // Held open: the control plane stops when it reads EOF, so even a SIGKILLed test takes it down.
    _stdin: Option<ChildStdin>,
    dir: PathBuf,
    log: PathBuf,
    server: String,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

impl ControlPlane {
    /// Starts a control plane with `admin` and `users`, and waits until it serves every API.
    ///
    /// # Panics
    /// When the binary is missing (see [`controlplane_bin`]) or the control plane does not start:
    /// tests fail, never skip.
    #[track_caller]
    pub fn start(users: &[User]) -> ControlPlane {
        match ControlPlane::try_start(users) {
            Ok(cp) => cp,
            Err(e) => panic!("starting the Kubernetes control plane failed: {e}"),
        }
    }

    /// Starts a control plane with `admin` and `users`, and waits until it serves every API.
    pub fn try_start(users: &[User]) -> Result<ControlPlane, String> {
        let bin = controlplane_bin()?;
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("kiln-controlplane-{tag}"));
        let log = std::env::temp_dir().join(format!("kiln-controlplane-{tag}.log"));
        // A directory left by an earlier run with the same pid would hold a foreign etcd.
        let _ = std::fs::remove_dir_all(&dir);
        let log_file = std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut command = Command::new(&bin);
        command.arg("--dir").arg(&dir);
        for user in users {
            let spec = if user.groups.is_empty() {
                user.name.clone()
            } else {
                format!("{}:{}", user.name, user.groups.join(","))
            };
            command.args(["--user", &spec]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut cp = ControlPlane { child, _stdin: stdin, dir, log, server: String::new() };
        let Some(stdout) = stdout else {
            return Err("the control plane's stdout was not captured".to_owned());
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("ready ") {
                    let _ = tx.send(url.trim().to_owned());
                    break;
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(server) => {
                cp.server = server;
                Ok(cp)
            }
            Err(_) => {
                let status = cp.child.try_wait().ok().flatten();
                Err(format!(
                    "no `ready` within {}s ({}); see {}",
                    START_TIMEOUT.as_secs(),
                    status.map_or("still running".to_owned(), |s| format!("exited: {s}")),
                    cp.log.display()
                ))
            }
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The kubeconfig: context `admin` (current) and one per user, named after it.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The CA certificate (PEM) the server's certificate chains to.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// kube-apiserver's and etcd's log; kube-controller-manager's is [`ControlPlane::controller_manager_log`].
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// kube-controller-manager's log (in the control plane's directory, gone after drop).
    pub fn controller_manager_log(&self) -> PathBuf {
        self.dir.join("controller-manager.log")
    }

    /// A kube client acting as `user` (`"admin"` or a user passed to [`ControlPlane::start`]).
    pub async fn client(&self, user: &str) -> Result<kube::Client, String> {
        let config = self.config(user).await?;
        kube::Client::try_from(config).map_err(|e| format!("client for {user}: {e}"))
    }

    /// A kube client presenting `token` (e.g. a ServiceAccount's, from the TokenRequest API).
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client, String> {
        let mut config = self.config("admin").await?;
        config.auth_info = kube::config::AuthInfo { token: Some(token.to_owned().into()), ..Default::default() };
        kube::Client::try_from(config).map_err(|e| format!("client for a token: {e}"))
    }

    /// A token for ServiceAccount `namespace/name` from the TokenRequest API (valid for an hour,
    /// longer than any test), as a pod of that account would get it.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, String> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let admin = self.client("admin").await?;
        let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(admin, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
            ..Default::default()
        };
        let issued: TokenRequest = accounts
            .create_subresource("token", name, &Default::default(), &request)
            .await
            .map_err(|e| format!("TokenRequest for {namespace}/{name}: {e}"))?;
        issued.status.map(|s| s.token).ok_or_else(|| format!("TokenRequest for {namespace}/{name}: no status"))
    }

    /// The bearer token of `user` (`"admin"` or a user passed to [`ControlPlane::start`]), from the
    /// control plane's static token file.
    pub fn token(&self, user: &str) -> Result<String, String> {
        let path = self.dir.join("tokens.csv");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        text.lines()
            .find_map(|line| {
                let mut fields = line.splitn(3, ',');
                let token = fields.next()?;
                (fields.next()? == user).then(|| token.to_owned())
            })
            .ok_or_else(|| format!("no user {user} in {}", path.display()))
    }

    /// Write requests (create, update, patch, apply, delete; dry runs and refused ones included)
    /// kube-apiserver has served for
    /// `resources` (plural names, e.g. `promotions`), from its own `apiserver_request_total`
    /// metric (read as admin).
    pub async fn api_writes(&self, resources: &[&str]) -> Result<u64, String> {
        let admin = self.client("admin").await?;
        let request = http::Request::get("/metrics").body(Vec::new()).map_err(|e| format!("GET /metrics: {e}"))?;
        let text = admin.request_text(request).await.map_err(|e| format!("GET /metrics: {e}"))?;
        // The metric's verbs are HTTP methods, with server-side apply as APPLY.
        Ok(count_requests(&text, resources, &["POST", "PUT", "PATCH", "APPLY", "DELETE"]))
    }

    /// A kubeconfig (YAML) whose only user presents `token`: what a process acting as a
    /// ServiceAccount is given.
    pub fn kubeconfig_for_token(&self, token: &str) -> String {
        kubeconfig_yaml(&self.server, &self.ca_path(), token)
    }

    async fn config(&self, context: &str) -> Result<kube::Config, String> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())
            .map_err(|e| format!("reading {}: {e}", self.kubeconfig().display()))?;
        let options = kube::config::KubeConfigOptions { context: Some(context.to_owned()), ..Default::default() };
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| format!("kubeconfig context {context}: {e}"))
    }
}

/// Sums `apiserver_request_total` samples (Prometheus text) whose `resource` is one of
/// `resources` and whose `verb` is one of `verbs`.
fn count_requests(metrics: &str, resources: &[&str], verbs: &[&str]) -> u64 {
    let label = |line: &str, name: &str| {
        let key = format!("{name}=\"");
        line.find(&key).and_then(|i| line[i + key.len()..].split('"').next().map(str::to_owned))
    };
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| label(l, "resource").is_some_and(|r| resources.contains(&r.as_str())))
        .filter(|l| label(l, "verb").is_some_and(|v| verbs.contains(&v.as_str())))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .map(|v| v as u64)
        .sum()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A kubeconfig (YAML) for `server`, trusting the CA in `ca_file`, presenting `token`: e.g. the
/// control plane reached through a [`crate::FaultProxy`] (its URL and CA).
pub fn kubeconfig_yaml(server: &str, ca_file: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kiln\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: token\n  user:\n    token: {token}\ncontexts:\n- name: \
         token\n  context:\n    cluster: kiln\n    user: token\ncurrent-context: token\n",
        ca = ca_file.display(),
    )
}

/// A kube client from kubeconfig YAML (its current context).
pub async fn client_from_kubeconfig(yaml: &str) -> Result<kube::Client, String> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).map_err(|e| format!("kubeconfig: {e}"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    kube::Client::try_from(config).map_err(|e| format!("client: {e}"))
}

/// How long [`apply_yaml`] waits for a CustomResourceDefinition to be served.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Applies every document of a multi-document YAML stream the way `kubectl apply --server-side`
/// does (field manager `manager`, conflicts forced), in the order an installer must: Namespaces and
/// CustomResourceDefinitions first, waiting until each CRD is Established, then the rest.
/// Namespaced objects without `metadata.namespace` go to `default`.
pub async fn apply_yaml(client: &kube::Client, yaml: &str, manager: &str) -> Result<(), String> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| format!("the manifests are not YAML: {e}"))?;
    let docs: Vec<serde_json::Value> = docs.into_iter().filter(|d| d.is_object()).collect();
    let first = |d: &serde_json::Value| matches!(d["kind"].as_str(), Some("Namespace" | "CustomResourceDefinition"));
    let (early, late): (Vec<_>, Vec<_>) = docs.into_iter().partition(first);
    for doc in &early {
        apply_one(client, doc, manager).await?;
    }
    for doc in early.iter().filter(|d| d["kind"] == "CustomResourceDefinition") {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        wait_established(client, name).await?;
    }
    for doc in &late {
        apply_one(client, doc, manager).await?;
    }
    Ok(())
}

async fn apply_one(client: &kube::Client, doc: &serde_json::Value, manager: &str) -> Result<(), String> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let kind = doc["kind"].as_str().ok_or_else(|| format!("a document without kind: {doc}"))?;
    let api_version = doc["apiVersion"].as_str().ok_or_else(|| format!("{kind} without apiVersion"))?;
    let name = doc["metadata"]["name"].as_str().ok_or_else(|| format!("{kind} without metadata.name"))?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) =
        kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| format!("{api_version} {kind}: {e}"))?;
    let api: Api<DynamicObject> = match caps.scope {
        kube::discovery::Scope::Namespaced => {
            let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, &PatchParams::apply(manager).force(), &Patch::Apply(doc))
        .await
        .map(|_| ())
        .map_err(|e| format!("applying {kind} {name}: {e}"))
}

async fn wait_established(client: &kube::Client, name: &str) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let deadline = std::time::Instant::now() + ESTABLISH_TIMEOUT;
    loop {
        let crd = crds.get(name).await.map_err(|e| format!("reading CRD {name}: {e}"))?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("CRD {name} not Established after {}s", ESTABLISH_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
