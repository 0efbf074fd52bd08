//! A world per test: the in-repo Kubernetes API test server with kiln's CRDs and several users,
//! a kubeconfig file per user, and the built `kubectl-kiln` binary run as a separate process,
//! as a person runs it. Everything is removed when the world is dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_test_apiserver::{Config, TestServer};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// The users of every world: (token, name, groups). The first is the admin that sets things up.
pub const USERS: [(&str, &str, &[&str]); 5] = [
    ("admin-token", "admin", &["system:masters"]),
    ("alice-token", "alice@example.com", &["security"]),
    ("bob-token", "bob@example.com", &["product"]),
    ("dana-token", "dana@example.com", &["developers"]),
    ("rel-token", "rel@example.com", &["release-engineering"]),
];

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "kubectl-kiln-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubectl-kiln"));
    // Times in the viewer's zone are UTC in every test, whatever the machine's zone.
    c.env("TZ", "UTC").env_remove("KUBECONFIG");
    c
}

/// stdout, stderr and the exit code of a finished run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs the binary without a cluster (lint, completion).
pub fn offline(args: &[&str]) -> Run {
    bin().args(args).output().expect("run kubectl-kiln").into()
}

pub struct World {
    pub server: TestServer,
    pub client: Client,
    pub dir: TempDir,
}

impl World {
    /// A server with kiln's CRDs, the [`USERS`], and the namespaces `kiln-system` and `ingest`.
    pub async fn new(tag: &str) -> World {
        let mut config = Config::default();
        for (token, name, groups) in USERS {
            config = config.with_user(token, name, groups);
        }
        config.namespaces.extend(["kiln-system", "ingest", "api"].map(String::from));
        World::with_config(tag, config).await
    }

    pub async fn with_config(tag: &str, config: Config) -> World {
        let server = kiln_test_apiserver::start(config).await.expect("start the API test server");
        let kc = Kubeconfig::from_yaml(&server.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
        let client = Client::try_from(cfg).expect("client");
        World { server, client, dir: TempDir::new(tag) }
    }

    /// The kubeconfig file of a user (by name in [`USERS`]).
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        let token = USERS.iter().find(|(_, n, _)| *n == user || n.starts_with(&format!("{user}@"))).map(|u| u.0);
        let token = token.unwrap_or(user);
        let path = self.dir.path().join(format!("{token}.kubeconfig"));
        if !path.exists() {
            std::fs::write(&path, self.server.kubeconfig_for_token(token)).expect("write kubeconfig");
        }
        path
    }

    /// Runs `kubectl-kiln --kubeconfig <user's> <args>` and waits for it.
    pub fn kiln(&self, user: &str, args: &[&str]) -> Run {
        bin().arg("--kubeconfig").arg(self.kubeconfig(user)).args(args).output().expect("run kubectl-kiln").into()
    }

    /// Creates every document of a YAML text (namespaced ones in their namespace, else `ns`).
    pub async fn create_yaml(&self, text: &str, ns: &str) {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("YAML");
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            self.create(doc, ns).await;
        }
    }

    /// Creates a kiln object from JSON.
    pub async fn create(&self, doc: Value, ns: &str) -> Value {
        let kind = doc["kind"].as_str().expect("kind").to_string();
        let api = self.api(&kind, doc["metadata"]["namespace"].as_str().unwrap_or(ns));
        let obj: DynamicObject = serde_json::from_value(doc).expect("object");
        let made = api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create {kind}: {e}"));
        serde_json::to_value(made).expect("json")
    }

    /// Creates an example file from `examples/`.
    pub async fn example(&self, file: &str) {
        let text = std::fs::read_to_string(repo().join("examples").join(file)).expect("example");
        self.create_yaml(&text, "default").await;
    }

    fn api(&self, kind: &str, ns: &str) -> Api<DynamicObject> {
        let plural = match kind {
            "Environment" => "environments",
            "Release" => "releases",
            "Promotion" => "promotions",
            "FreezeWindow" => "freezewindows",
            "RollbackPolicy" => "rollbackpolicies",
            other => panic!("not a kiln kind: {other}"),
        };
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kiln.dev", "v1alpha1", kind), plural);
        if kind == "Environment" {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), ns, &ar)
        }
    }

    /// Writes an object's status (as the controller would), merged.
    pub async fn set_status(&self, kind: &str, ns: &str, name: &str, status: Value) {
        self.api(kind, ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
            .await
            .unwrap_or_else(|e| panic!("status of {kind} {name}: {e}"));
    }

    /// An object as stored.
    pub fn get(&self, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        self.server.handle.get(kind, ns, name)
    }

    /// A Release of ingest-worker: the example with another name and version.
    pub async fn release(&self, name: &str, version: &str) {
        let text = std::fs::read_to_string(repo().join("examples/release-ingest-worker.yaml")).expect("example");
        let mut doc: Value = serde_saphyr::from_str(&text).expect("YAML");
        doc["metadata"]["name"] = json!(name);
        doc["spec"]["version"] = json!(version);
        self.create(doc, "ingest").await;
    }

    /// A Promotion.
    pub async fn promotion(&self, name: &str, release: &str, env: &str, extra: Value) -> Value {
        let mut spec = json!({"release": release, "environment": env});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        self.create(
            json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
                   "metadata": {"name": name, "namespace": "ingest"}, "spec": spec}),
            "ingest",
        )
        .await
    }
}
