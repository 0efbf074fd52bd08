//! Conformance of the API test server through the real `kubectl`, run as separate processes
//! against the server's HTTPS endpoint and generated kubeconfig (bearer token, generated CA).
//!
//! The kiln scenarios (the examples applied, listed, described, patched and deleted; the invalid
//! examples refused) run twice, on the test server and on a real kube-apiserver
//! (`kiln_testkit::ControlPlane`) with the same assertions: what they check about kubectl and
//! kiln's CRDs is kube-apiserver's behaviour, and the test server is held to it.
//!
//! kubectl is required: `KILN_KUBECTL` (a path) or `kubectl` on PATH. `scripts/test` installs
//! Debian's `kubernetes-client` when none is there. Works with kubectl 1.20 (Debian) and 1.32.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use kiln_test_apiserver::{AdmissionOperation, Config, TestServer, start};
use kiln_testkit::{ControlPlane, User};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn kubectl_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_KUBECTL") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("kubectl")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "kubectl not found: install it (scripts/test does: apt-get install -y kubernetes-client) or set KILN_KUBECTL"
        )
    })
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    minor: u32,
}

/// Where a kubectl scenario runs: the in-repo test server or a real kube-apiserver, each with
/// kiln's CRDs, an admin and alice.
enum Backend {
    TestServer(TestServer),
    KubeApiserver(ControlPlane),
}

impl Backend {
    async fn test_server() -> Backend {
        Backend::TestServer(server().await)
    }

    async fn kube_apiserver() -> Backend {
        let cp = ControlPlane::start(&[User::new("alice@example.com").in_group("security")]);
        let admin = cp.client("admin").await.expect("admin client");
        let dir = Path::new(REPO).join("charts/kiln/crds");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&dir).expect("crds").filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        let crds: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).expect("CRD")).collect();
        kiln_testkit::controlplane::apply_yaml(&admin, &crds.join("\n---\n"), "kiln-test").await.expect("install CRDs");
        Backend::KubeApiserver(cp)
    }

    /// The admin's kubeconfig (YAML).
    fn kubeconfig(&self) -> String {
        match self {
            Backend::TestServer(server) => server.kubeconfig.clone(),
            Backend::KubeApiserver(cp) => std::fs::read_to_string(cp.kubeconfig()).expect("kubeconfig"),
        }
    }

    fn url(&self) -> &str {
        match self {
            Backend::TestServer(server) => &server.url,
            Backend::KubeApiserver(cp) => cp.server(),
        }
    }
}

impl Kubectl {
    fn new(url: &str, kubeconfig: &str, tag: &str) -> Kubectl {
        let home = std::env::temp_dir().join(format!("kiln-kubectl-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&home).expect("test setup");
        let path = home.join("kubeconfig");
        std::fs::write(&path, kubeconfig).expect("test setup");
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let mut k = Kubectl { bin: kubectl_binary(), kubeconfig: path, home, minor: 0 };
        let v = k.ok(&["version", "--client", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&v).expect("test setup");
        k.minor = v["clientVersion"]["minor"]
            .as_str()
            .expect("test setup")
            .trim_end_matches('+')
            .parse()
            .expect("kubectl minor version");
        k
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .arg("--cache-dir")
            .arg(self.home.join("cache"))
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()))
    }

    /// Runs and asserts success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {} failed: {stderr}", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {} succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// kubectl ≥ 1.27 validates with `fieldValidation=Strict` on the server (found via OpenAPI v3).
    fn strict_server_validation(&self) -> bool {
        self.minor >= 27
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn example(name: &str) -> String {
    Path::new(REPO).join("examples").join(name).display().to_string()
}

async fn server() -> TestServer {
    start(Config::default().with_user("admin-token", "admin", &["system:masters"]).with_user(
        "alice-token",
        "alice@example.com",
        &["security"],
    ))
    .await
    .expect("test setup")
}

/// The header and rows of `kubectl get` output, split on runs of spaces.
fn table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let split = |l: &str| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect();
    let header = lines.next().map(split).unwrap_or_default();
    (header, lines.map(split).collect())
}

fn row<'a>(rows: &'a [Vec<String>], name: &str) -> &'a Vec<String> {
    rows.iter().find(|r| r.iter().any(|c| c == name)).unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_apply_get_describe_patch_delete() {
    examples_scenario(&Backend::test_server().await, "examples").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_apply_get_describe_patch_delete_on_kube_apiserver() {
    examples_scenario(&Backend::kube_apiserver().await, "examples-real").await;
}

/// Polls `kubectl get` until it fails with not found (a namespace is removed once emptied).
async fn gone(k: &Kubectl, args: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = k.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() && (stderr.contains("NotFound") || stderr.contains("not found")) {
            return stderr;
        }
        assert!(std::time::Instant::now() < deadline, "kubectl {} still finds it", args.join(" "));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn examples_scenario(backend: &Backend, tag: &str) {
    let k = Kubectl::new(backend.url(), &backend.kubeconfig(), tag);

    // Namespaces through `kubectl create` (kubectl ≥ 1.30 sends protobuf for built-ins).
    for ns in ["kiln-system", "ingest", "api"] {
        assert!(k.ok(&["create", "namespace", ns]).contains(&format!("namespace/{ns} created")));
    }
    // The examples in the order of examples/README.md, with kubectl's default validation.
    for file in [
        "environments.yaml",
        "rollback-policy.yaml",
        "freeze-windows.yaml",
        "release-ingest-worker.yaml",
        "release-api-adapter.yaml",
        "promotion-stg.yaml",
        "promotion-prod.yaml",
    ] {
        let out = k.ok(&["apply", "-f", &example(file)]);
        assert!(out.contains(" created"), "{file}: {out}");
    }
    assert!(k.ok(&["apply", "-f", &example("environments.yaml")]).contains("environment.kiln.dev/prod unchanged"));

    // Printer columns (server-side Table).
    let (header, rows) = table(&k.ok(&["get", "environments"]));
    assert_eq!(header, ["NAME", "ACCOUNT", "REGION", "UPSTREAM", "AUTO", "READY", "AGE"]);
    let prod = row(&rows, "prod");
    assert_eq!(&prod[..5], ["prod", "333333333333", "ca-central-1", r#"["stg"]"#, "false"]);
    assert!(prod[5].ends_with('s'), "age column: {prod:?}"); // READY is empty: no status yet
    assert_eq!(row(&rows, "dev")[4], "true");

    let (header, rows) = table(&k.ok(&["get", "releases,promotions", "-A"]));
    assert_eq!(header[0], "NAMESPACE");
    assert!(rows.iter().any(|r| r.contains(&"release.kiln.dev/ingest-worker-v1-4-2".to_string())), "{rows:?}");
    let (header, rows) = table(&k.ok(&["get", "promo", "-n", "ingest"]));
    assert_eq!(header, ["NAME", "RELEASE", "ENV", "PHASE", "WEIGHT", "GATES", "AGE"]);
    assert_eq!(
        &row(&rows, "ingest-worker-v1-4-2-stg")[..3],
        ["ingest-worker-v1-4-2-stg", "ingest-worker-v1-4-2", "stg"]
    );

    let (header, rows) = table(&k.ok(&["get", "namespaces"]));
    assert_eq!(header, ["NAME", "STATUS", "AGE"]);
    assert_eq!(row(&rows, "ingest")[1], "Active");

    // -o yaml / jsonpath: the stored object with server-set metadata.
    let yaml = k.ok(&["get", "release", "ingest-worker-v1-4-2", "-n", "ingest", "-o", "yaml"]);
    assert!(yaml.contains("kind: Release") && yaml.contains("generation: 1") && yaml.contains("uid: "), "{yaml}");
    let service = k.ok(&["get", "rel", "ingest-worker-v1-4-2", "-n", "ingest", "-o", "jsonpath={.spec.service}"]);
    assert_eq!(service, "ingest-worker");

    // label, patch, describe.
    k.ok(&["label", "environment", "dev", "tier=dev"]);
    let (_, rows) = table(&k.ok(&["get", "environments", "-l", "tier=dev"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "dev");
    k.ok(&["patch", "environment", "dev", "--type=merge", "-p", r#"{"spec":{"promotion":{"auto":false}}}"#]);
    assert_eq!(row(&table(&k.ok(&["get", "environments"])).1, "dev")[4], "false");
    let generation = k.ok(&["get", "environment", "dev", "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(generation, "2");
    let json_patch = r#"[{"op":"replace","path":"/spec/promotion/auto","value":true}]"#;
    k.ok(&["patch", "environment", "dev", "--type=json", "-p", json_patch]);
    assert_eq!(row(&table(&k.ok(&["get", "environments"])).1, "dev")[4], "true");
    let described = k.ok(&["describe", "environment", "prod"]);
    assert!(described.contains("Name:") && described.contains("prod") && described.contains("333333333333"));

    // A CEL transition rule seen through kubectl: a Release's target is immutable.
    let err = k.fails(&[
        "patch",
        "release",
        "api-adapter-v2-3-0",
        "-n",
        "api",
        "--type=merge",
        "-p",
        r#"{"spec":{"target":{"lambda":{"alias":"other"}}}}"#,
    ]);
    assert!(err.contains("target is immutable"), "{err}");

    // delete.
    assert!(k.ok(&["delete", "-f", &example("promotion-stg.yaml")]).contains("deleted"));
    gone(&k, &["get", "promotion", "ingest-worker-v1-4-2-stg", "-n", "ingest"]).await;
    assert!(k.ok(&["delete", "namespace", "api"]).contains("namespace \"api\" deleted"));
    // The namespace is removed once emptied (by kube-controller-manager's namespace controller on
    // the real server): its Release goes with it.
    gone(&k, &["get", "namespace", "api"]).await;
    gone(&k, &["get", "release", "api-adapter-v2-3-0", "-n", "api"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_examples_are_rejected_with_the_servers_message() {
    invalid_scenario(&Backend::test_server().await, "invalid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_examples_are_rejected_with_the_servers_message_on_kube_apiserver() {
    invalid_scenario(&Backend::kube_apiserver().await, "invalid-real").await;
}

async fn invalid_scenario(backend: &Backend, tag: &str) {
    let k = Kubectl::new(backend.url(), &backend.kubeconfig(), tag);
    for ns in ["kiln-system", "ingest", "api"] {
        k.ok(&["create", "namespace", ns]);
    }
    k.ok(&["apply", "-f", &example("environments.yaml")]);
    let dir = Path::new(REPO).join("examples/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/invalid")
        .map(|e| e.expect("examples/invalid entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("invalid example");
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} has no `# expect:` line", file.display());
        // With server-side strict field validation an unknown field is refused before validation
        // (only that message); without it (kubectl < 1.27) the field is pruned and validation runs.
        let unknown = expects.iter().any(|e| e.contains("unknown field"));
        let wanted: Vec<&str> = expects
            .iter()
            .copied()
            .filter(|e| !unknown || e.contains("unknown field") == k.strict_server_validation())
            .collect();
        // Nothing is written: the object the file names is as it was (absent, or an earlier
        // example's at the same resourceVersion).
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
        let kind = doc["kind"].as_str().expect("kind").to_lowercase();
        let name = doc["metadata"]["name"].as_str().expect("name");
        let mut get =
            vec!["get", kind.as_str(), name, "--ignore-not-found", "-o", "jsonpath={.metadata.resourceVersion}"];
        if let Some(ns) = doc["metadata"]["namespace"].as_str() {
            get.extend(["-n", ns]);
        }
        let before = k.ok(&get);
        let err = k.fails(&["apply", "-f", &file.display().to_string()]);
        for e in wanted {
            assert!(err.contains(e), "{}: expected {e:?} in:\n{err}", file.display());
        }
        assert_eq!(k.ok(&get), before, "{}: nothing is written", file.display());
    }
    // Without a namespace the server says which one is missing.
    let err = k.fails(&["create", "configmap", "x", "-n", "nope", "--from-literal=a=b"]);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_types_and_identities() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let server = start(
        Config::default()
            .with_user("admin-token", "admin", &["system:masters"])
            .with_user("alice-token", "alice@example.com", &["security"])
            .with_admission_hook(Arc::new(move |req| {
                if req.operation == AdmissionOperation::Create {
                    record.lock().unwrap().push((req.name.to_string(), req.user.username.clone()));
                }
                Ok(())
            })),
    )
    .await
    .unwrap();
    let admin = Kubectl::new(&server.url, &server.kubeconfig, "admin");
    let alice = Kubectl::new(&server.url, &server.kubeconfig_for_token("alice-token"), "alice");
    let nobody = Kubectl::new(&server.url, &server.kubeconfig_for_token("wrong-token"), "nobody");

    admin.ok(&["create", "namespace", "team"]);
    alice.ok(&["create", "configmap", "settings", "-n", "team", "--from-literal=a=1", "--from-literal=b=2"]);
    alice.ok(&["create", "secret", "generic", "creds", "-n", "team", "--from-literal=password=hunter2"]);
    {
        let seen = seen.lock().unwrap();
        assert!(seen.contains(&("team".to_string(), "admin".to_string())), "{seen:?}");
        assert!(seen.contains(&("settings".to_string(), "alice@example.com".to_string())), "{seen:?}");
    }
    let err = nobody.fails(&["get", "namespaces"]);
    assert!(err.contains("Unauthorized") || err.contains("must be logged in"), "{err}");
    // `kubectl auth whoami` (SelfSubjectReview, authentication.k8s.io/v1 since kubectl 1.28).
    if alice.minor >= 28 {
        let me = alice.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
        assert_eq!(me, "alice@example.com");
    }

    let (header, rows) = table(&admin.ok(&["get", "configmaps", "-n", "team"]));
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    assert_eq!(row(&rows, "settings")[1], "2");
    let (header, rows) = table(&admin.ok(&["get", "secrets", "-n", "team"]));
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(&row(&rows, "creds")[..3], ["creds", "Opaque", "1"]);
    let password = admin.ok(&["get", "secret", "creds", "-n", "team", "-o", "jsonpath={.data.password}"]);
    assert_eq!(password, "aHVudGVyMg==");

    admin.ok(&["annotate", "configmap", "settings", "-n", "team", "owner=alice"]);
    let owner = admin.ok(&["get", "cm", "settings", "-n", "team", "-o", "jsonpath={.metadata.annotations.owner}"]);
    assert_eq!(owner, "alice");
    let cm = server.handle.get("configmaps", Some("team"), "settings").unwrap();
    let managers: Vec<&str> =
        cm["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|e| e["manager"].as_str()).collect();
    assert!(managers.iter().any(|m| m.starts_with("kubectl")), "{managers:?}");

    assert!(admin.ok(&["delete", "configmap", "settings", "-n", "team"]).contains("deleted"));
    assert!(server.handle.get("configmaps", Some("team"), "settings").is_none());
}
