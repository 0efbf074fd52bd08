//! **Test infrastructure.** An in-memory Kubernetes API server on 127.0.0.1 for kiln's e2e
//! suite, sandbox and benchmarks: it speaks the real HTTP API over HTTPS with a CA generated at
//! start (discovery, OpenAPI, Table output, CRUD, status subresource, patches incl. server-side
//! apply, watch with bookmarks and 410 Gone, CRD admission via `kiln-schema`, bearer-token and
//! ServiceAccount identities, opt-in RBAC authorization, ValidatingAdmissionPolicy evaluation)
//! faithfully enough for kube-rs and kubectl. It is never a way to run kiln in
//! production. What is and is not emulated:
//! `e2e/README.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_test_apiserver::StartError> {
//! let server = kiln_test_apiserver::start(kiln_test_apiserver::Config::default()).await?;
//! println!("{} {}", server.url, server.kubeconfig_path.display());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod auth;
mod celenv;
mod error;
mod faults;
mod managed;
mod openapi;
mod protobuf;
mod rbac;
mod resources;
mod selector;
mod server;
mod store;
mod table;
mod tls;
mod vap;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

pub use auth::{UserInfo, parse_token_file};
pub use error::ApiError;
pub use faults::{FaultRule, Faults};
pub use resources::ResourceType;

/// The token of the default `admin` user (group `system:masters`) when no tokens are configured.
pub const DEFAULT_ADMIN_TOKEN: &str = "kiln-test-admin-token";

/// An admission operation, as in `AdmissionReview.request.operation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionOperation {
    /// POST (and server-side apply that creates).
    Create,
    /// PUT / PATCH (main resource or `status`).
    Update,
    /// DELETE.
    Delete,
}

/// What an admission hook sees (the fields ValidatingAdmissionPolicy CEL reads).
#[derive(Debug)]
pub struct AdmissionRequest<'a> {
    /// The operation.
    pub operation: AdmissionOperation,
    /// The resource type.
    pub resource: &'a ResourceType,
    /// `status` or empty.
    pub subresource: &'a str,
    /// Namespace, if namespaced.
    pub namespace: Option<&'a str>,
    /// Object name.
    pub name: &'a str,
    /// The requesting identity (`request.userInfo`).
    pub user: &'a UserInfo,
    /// The object after the change (after schema defaulting); `None` on delete.
    pub object: Option<&'a Value>,
    /// The object before the change; `None` on create.
    pub old_object: Option<&'a Value>,
}

/// A validating admission hook (an in-process stand-in for a validating webhook; it runs after
/// the ValidatingAdmissionPolicies the server evaluates itself): `Err(message)` refuses the
/// request with 403 Forbidden.
pub type AdmissionHook = Arc<dyn Fn(&AdmissionRequest<'_>) -> Result<(), String> + Send + Sync>;

/// How to start the server.
#[derive(Clone)]
pub struct Config {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Bearer tokens (token → identity). Empty (and no `token_file`): one admin user with
    /// [`DEFAULT_ADMIN_TOKEN`].
    pub tokens: Vec<(String, UserInfo)>,
    /// A kube-apiserver static token file (`token,user,uid,"group1,group2"` per line), added to
    /// `tokens`.
    pub token_file: Option<PathBuf>,
    /// The CRD YAML files to serve (default: the repository's generated `crds/`).
    pub crd_dir: PathBuf,
    /// Namespaces that exist at start.
    pub namespaces: Vec<String>,
    /// Watch events retained per resource type; a watch from an older resourceVersion gets 410.
    pub event_window: usize,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Where to write the kubeconfig (default: a file in the temp directory, removed on drop).
    pub kubeconfig_path: Option<PathBuf>,
    /// Validating admission hooks, run after schema admission and the ValidatingAdmissionPolicies.
    pub admission_hooks: Vec<AdmissionHook>,
    /// Serve requests that carry no token as this user. Off by default (they get 401). For
    /// kubectl over plain HTTP: client-go does not send bearer tokens over an unencrypted
    /// connection, so this is only useful with `tls: false`.
    pub anonymous_user: Option<UserInfo>,
    /// Seed of the fault injector's random numbers.
    pub seed: u64,
    /// Serve HTTPS with a CA generated at start (in the kubeconfig as
    /// `certificate-authority-data`). On by default: client-go (kubectl) sends bearer tokens only
    /// over TLS. Off: plain HTTP.
    pub tls: bool,
    /// Log every request (method, URL, Accept, Content-Type, status) to stderr.
    pub log_requests: bool,
    /// Authorize every request with RBAC (rbac.authorization.k8s.io/v1 Roles, ClusterRoles and
    /// their bindings, `system:masters` always allowed), like kube-apiserver with
    /// `--authorization-mode=RBAC`. Off by default: every authenticated user may do everything.
    pub rbac: bool,
    /// YAML manifests (multi-document, `List`s too) whose objects exist at start, created as an
    /// administrator applying them would (admission included; missing namespaces are created).
    /// Objects of types the server does not serve are skipped (`TestServer::skipped_manifests`).
    pub manifests: Vec<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("users", &self.tokens.iter().map(|(_, u)| &u.username).collect::<Vec<_>>())
            .field("token_file", &self.token_file)
            .field("crd_dir", &self.crd_dir)
            .field("namespaces", &self.namespaces)
            .field("event_window", &self.event_window)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("admission_hooks", &self.admission_hooks.len())
            .field("rbac", &self.rbac)
            .field("manifests", &self.manifests.len())
            .finish_non_exhaustive()
    }
}

/// The repository's `crds/` directory.
pub fn default_crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            tokens: Vec::new(),
            token_file: None,
            crd_dir: default_crd_dir(),
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"].map(String::from).to_vec(),
            event_window: 10_000,
            bookmark_interval: Duration::from_secs(1),
            kubeconfig_path: None,
            admission_hooks: Vec::new(),
            anonymous_user: None,
            seed: 0x6b69_6c6e,
            tls: true,
            log_requests: false,
            rbac: false,
            manifests: Vec::new(),
        }
    }
}

impl Config {
    /// Adds a user with a token.
    pub fn with_user(mut self, token: &str, username: &str, groups: &[&str]) -> Self {
        self.tokens.push((token.to_string(), UserInfo::new(username, groups)));
        self
    }

    /// Adds a ServiceAccount's token: the user `system:serviceaccount:<namespace>:<name>` in the
    /// groups `system:serviceaccounts`, `system:serviceaccounts:<namespace>` and
    /// `system:authenticated`, as kube-apiserver authenticates ServiceAccount tokens.
    pub fn with_service_account(mut self, token: &str, namespace: &str, name: &str) -> Self {
        self.tokens.push((token.to_string(), UserInfo::service_account(namespace, name)));
        self
    }

    /// Turns RBAC authorization on (`rbac: true`).
    pub fn with_rbac(mut self) -> Self {
        self.rbac = true;
        self
    }

    /// Adds YAML manifests (e.g. a rendered Helm chart) whose objects exist at start.
    pub fn with_manifests(mut self, yaml: &str) -> Self {
        self.manifests.push(yaml.to_string());
        self
    }

    /// Adds an admission hook.
    pub fn with_admission_hook(mut self, hook: AdmissionHook) -> Self {
        self.admission_hooks.push(hook);
        self
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A CRD that cannot be served.
    #[error("CRD {path}: {message}")]
    Crd {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A manifest that cannot be loaded.
    #[error("manifests: {0}")]
    Manifest(String),
    /// The token file.
    #[error("token file {path}: line {line}: {message}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Generating the CA or the TLS configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// Binding the port.
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running server. Dropping it stops it.
#[derive(Debug)]
pub struct TestServer {
    /// `https://127.0.0.1:PORT` (`http://` with `Config::tls` off).
    pub url: String,
    /// The CA that signed the serving certificate (PEM); `None` over plain HTTP.
    pub ca_pem: Option<String>,
    /// A kubeconfig (YAML) for the first configured user.
    pub kubeconfig: String,
    /// Where `kubeconfig` was written.
    pub kubeconfig_path: PathBuf,
    /// Inspect objects, inject faults.
    pub handle: Handle,
    /// The objects of `Config::manifests` of types this server does not serve (`Kind ns/name`),
    /// e.g. a chart's Deployment and Service.
    pub skipped_manifests: Vec<String>,
    remove_kubeconfig: bool,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// A kubeconfig for another configured user (by token).
    pub fn kubeconfig_for_token(&self, token: &str) -> String {
        kubeconfig(&self.url, token, self.ca_pem.as_deref())
    }

    /// Stops the server (also on drop).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        if self.remove_kubeconfig {
            let _ = std::fs::remove_file(&self.kubeconfig_path);
        }
    }
}

fn kubeconfig(url: &str, token: &str, ca_pem: Option<&str>) -> String {
    use base64::Engine;
    let ca = ca_pem
        .map(|pem| {
            format!("    certificate-authority-data: {}\n", base64::engine::general_purpose::STANDARD.encode(pem))
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kiln-test\n  cluster:\n    server: {url}\n{ca}users:\n- name: kiln-test-user\n  user:\n    token: {token}\ncontexts:\n- name: kiln-test\n  context:\n    cluster: kiln-test\n    user: kiln-test-user\n    namespace: default\ncurrent-context: kiln-test\n"
    )
}

/// Handles to a running server: inspect objects, inject faults, count requests.
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Arc<server::Shared>,
}

impl Handle {
    /// An object by resource (kind or plural, e.g. `Release`, `configmaps`), namespace and name.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.shared.inspect_get(resource, namespace.unwrap_or(""), name)
    }

    /// All objects of a resource (kind or plural), in (namespace, name) order.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        self.shared.inspect_list(resource)
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.current_rv()
    }

    /// Drops all retained watch events: a watch from any older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        self.shared.compact();
    }

    /// Sets the faults to inject (replacing the previous ones). Off by default.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.set(faults);
    }

    /// Stops injecting faults.
    pub fn clear_faults(&self) {
        self.shared.faults.set(Faults::default());
    }

    /// Closes every open watch connection now (clients re-watch from their last resourceVersion).
    pub fn drop_watches(&self) {
        self.shared.drop_watches();
    }

    /// How many requests of a verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`) reached a resource (plural, e.g. `promotions`); `None`: any.
    pub fn requests(&self, verb: Option<&str>, resource: Option<&str>) -> u64 {
        self.shared.request_count(verb, resource)
    }
}

/// Starts the server on 127.0.0.1 and writes its kubeconfig.
pub async fn start(config: Config) -> Result<TestServer, StartError> {
    let mut tokens = config.tokens.clone();
    if let Some(path) = &config.token_file {
        let text = std::fs::read_to_string(path).map_err(|source| StartError::Io { path: path.clone(), source })?;
        let parsed = parse_token_file(&text).map_err(|(line, message)| StartError::TokenFile {
            path: path.clone(),
            line,
            message,
        })?;
        tokens.extend(parsed);
    }
    if tokens.is_empty() {
        tokens.push((DEFAULT_ADMIN_TOKEN.to_string(), UserInfo::new("admin", &["system:masters"])));
    }
    let crds = load_crds(&config.crd_dir)?;
    let shared = Arc::new(
        server::Shared::new(&config, tokens.clone(), crds)
            .map_err(|message| StartError::Crd { path: config.crd_dir.clone(), message })?,
    );
    let skipped_manifests = shared.load_manifests(&config.manifests).map_err(StartError::Manifest)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(|source| StartError::Bind { port: config.port, source })?;
    let port = listener.local_addr().map_err(|source| StartError::Bind { port: config.port, source })?.port();
    let tls = if config.tls { Some(tls::generate().map_err(StartError::Tls)?) } else { None };
    let url = format!("{}://127.0.0.1:{port}", if tls.is_some() { "https" } else { "http" });
    let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
    let first_token = tokens.first().map(|(t, _)| t.clone()).unwrap_or_default();
    let kc = kubeconfig(&url, &first_token, ca_pem.as_deref());
    let (remove_kubeconfig, kubeconfig_path) = match &config.kubeconfig_path {
        Some(p) => (false, p.clone()),
        None => (true, std::env::temp_dir().join(format!("kiln-test-apiserver-{port}.kubeconfig"))),
    };
    std::fs::write(&kubeconfig_path, &kc).map_err(|source| StartError::Io { path: kubeconfig_path.clone(), source })?;
    let (tx, rx) = oneshot::channel();
    let app = server::router(shared.clone());
    let stopped = async move {
        let _ = rx.await;
    };
    match &tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls)
                .map_err(|source| StartError::Bind { port: config.port, source })?;
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
            });
        }
        None => {
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
            });
        }
    }
    let handle = Handle { shared };
    Ok(TestServer {
        url,
        ca_pem,
        kubeconfig: kc,
        kubeconfig_path,
        handle,
        skipped_manifests,
        remove_kubeconfig,
        shutdown: Some(tx),
    })
}

/// Reads every `*.yaml` CRD in a directory (sorted by file name).
fn load_crds(dir: &Path) -> Result<Vec<Value>, StartError> {
    let io = |source| StartError::Io { path: dir.to_path_buf(), source };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| StartError::Io { path: path.clone(), source })?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| StartError::Crd { path: path.clone(), message: e.to_string() })?;
        out.extend(
            docs.into_iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")),
        );
    }
    Ok(out)
}
