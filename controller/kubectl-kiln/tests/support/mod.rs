//! A world per test: a real kube-apiserver (`kiln_testkit::ControlPlane`) with kiln's CRDs and
//! several users, a kubeconfig file per user, and the built `kubectl-kiln` binary run as a separate
//! process, as a person runs it. Everything is removed when the world is dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_testkit::{ControlPlane, User};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The people of every world: (name, groups). `admin` (in `system:masters`) sets things up.
pub const USERS: [(&str, &[&str]); 4] = [
    ("alice@example.com", &["security"]),
    ("bob@example.com", &["product"]),
    ("dana@example.com", &["developers"]),
    ("rel@example.com", &["release-engineering"]),
];

/// Everyone authenticated may read and write kiln's objects: the CLI tests are about the CLI, not
/// about who may use it (the chart's roles and the approval-identity policy are the e2e suite's).
const KILN_FOR_EVERYONE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kiln-cli-test}
rules:
- apiGroups: [kiln.dev]
  resources: ["*"]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kiln-cli-test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kiln-cli-test}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
"#;

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
    pub cp: ControlPlane,
    pub client: Client,
    pub dir: TempDir,
}

impl World {
    /// A cluster with kiln's CRDs (the chart's `crds/`), the [`USERS`], kiln's objects open to them,
    /// and the namespaces `kiln-system`, `ingest` and `api`.
    pub async fn new(tag: &str) -> World {
        let w = World::bare(tag).await;
        let mut manifests = String::from(KILN_FOR_EVERYONE);
        for ns in ["kiln-system", "ingest", "api"] {
            manifests.push_str(&format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"));
        }
        let crds = repo().join("charts/kiln/crds");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&crds).expect("charts/kiln/crds").filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            manifests.push_str("---\n");
            manifests.push_str(&std::fs::read_to_string(&file).expect("CRD file"));
        }
        kiln_testkit::controlplane::apply_yaml(&w.client, &manifests, "kiln-test").await.expect("install kiln's CRDs");
        w
    }

    /// A cluster without kiln's CRDs (and nothing else set up).
    pub async fn bare(tag: &str) -> World {
        let users: Vec<User> =
            USERS.iter().map(|(name, groups)| groups.iter().fold(User::new(name), |u, g| u.in_group(g))).collect();
        let cp = ControlPlane::start(&users);
        let client = cp.client("admin").await.expect("admin client");
        World { cp, client, dir: TempDir::new(tag) }
    }

    /// The kubeconfig file of a user (`admin`, a name in [`USERS`] or its part before `@`); any
    /// other name gets a kubeconfig with a token the cluster does not know.
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        let name =
            USERS.iter().map(|(n, _)| *n).find(|n| *n == user || n.starts_with(&format!("{user}@"))).unwrap_or(user);
        let token = self.cp.token(name).unwrap_or_else(|_| format!("{user}-unknown-token"));
        let path = self.dir.path().join(format!("{user}.kubeconfig"));
        if !path.exists() {
            std::fs::write(&path, self.cp.kubeconfig_for_token(&token)).expect("write kubeconfig");
        }
        path
    }

    /// Write requests kube-apiserver has served for `resources` (e.g. `promotions`).
    pub async fn api_writes(&self, resources: &[&str]) -> u64 {
        self.cp.api_writes(resources).await.expect("apiserver metrics")
    }

    /// [`World::kiln`] with extra environment variables (AWS settings).
    pub fn kiln_with_env(&self, user: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = bin();
        c.arg("--kubeconfig").arg(self.kubeconfig(user)).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run kubectl-kiln").into()
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
    pub async fn get(&self, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let found = self.api(kind, ns.unwrap_or("default")).get_opt(name).await;
        found.unwrap_or_else(|e| panic!("get {kind} {name}: {e}")).map(|o| serde_json::to_value(o).expect("json"))
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
