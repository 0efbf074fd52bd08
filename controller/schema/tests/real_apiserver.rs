//! The same example cases as `examples.rs` and `invalid.rs`, judged by a real kube-apiserver
//! (v1.36, built from pinned Go modules: `kiln_testkit::ControlPlane`) instead of kiln-schema's
//! offline model: the repository's CRDs install, every `examples/` manifest is admitted, every
//! `examples/invalid/` manifest is refused with a message containing each of its `# expect:`
//! fragments, and every `examples/invalid/updates/` change is refused while a no-op update passes.
//!
//! Requests are what `kubectl apply` / `kubectl create` send: JSON with `fieldValidation=Strict`
//! (kubectl's default), as dry runs so cases cannot collide. The offline tests additionally check
//! that nothing *but* the expected errors is reported; here the server's message must contain
//! every fragment (the real server's wording is the reference: where it differs, the fixture
//! changes).

mod common;

use common::{documents, examples_dir, expectations, file_name, yaml_files};
use kiln_testkit::ControlPlane;
use kiln_testkit::controlplane::apply_yaml;
use serde_json::{Value, json};

/// (plural, namespaced) of each kiln kind.
fn resource(kind: &str) -> (&'static str, bool) {
    match kind {
        "Release" => ("releases", true),
        "Promotion" => ("promotions", true),
        "RollbackPolicy" => ("rollbackpolicies", true),
        "FreezeWindow" => ("freezewindows", true),
        "Environment" => ("environments", false),
        other => panic!("not a kiln kind: {other}"),
    }
}

fn collection_path(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let (plural, namespaced) = resource(kind);
    if namespaced {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        format!("/apis/{api_version}/namespaces/{ns}/{plural}")
    } else {
        format!("/apis/{api_version}/{plural}")
    }
}

fn object_path(doc: &Value) -> String {
    format!("{}/{}", collection_path(doc), doc["metadata"]["name"].as_str().unwrap_or_default())
}

/// Sends `body` as `method` to `path` with strict field validation; `dry_run` adds `dryRun=All`.
async fn send(client: &kube::Client, method: &str, path: &str, body: &Value, dry_run: bool) -> Result<Value, String> {
    let query = if dry_run { "?fieldValidation=Strict&dryRun=All" } else { "?fieldValidation=Strict" };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{path}{query}"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(body).expect("json"))
        .expect("request");
    client.request::<Value>(request).await.map_err(|e| match e {
        kube::Error::Api(status) => status.message,
        other => format!("(not an API refusal) {other}"),
    })
}

fn crds() -> String {
    let dir = examples_dir().join("../charts/kiln/crds");
    yaml_files(&dir).iter().map(|p| common::read(p)).collect::<Vec<_>>().join("\n---\n")
}

async fn namespaces(client: &kube::Client, docs: &[Value]) {
    let mut names: Vec<&str> = docs.iter().filter_map(|d| d["metadata"]["namespace"].as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for ns in names {
        let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        apply_yaml(client, &yaml, "kiln-test").await.unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    }
}

/// The expected fragments the server's message lacks. Strict field validation rejects a request
/// with an unknown field while decoding, before any validation (`strict decoding error: unknown
/// field ...`), so for such a case only its unknown-field fragments are the server's; kiln-schema
/// reports the rest too, on purpose (a linter should show every error at once).
fn missing_fragments(message: &str, expected: &[String]) -> Vec<String> {
    let unknown: Vec<&String> = expected.iter().filter(|f| f.starts_with("unknown field")).collect();
    let judged: Vec<&String> = if unknown.is_empty() { expected.iter().collect() } else { unknown };
    judged.into_iter().filter(|f| !message.contains(f.as_str())).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_apiserver_admits_the_examples_and_refuses_the_invalid_ones() {
    let cp = ControlPlane::start(&[]);
    let admin = cp.client("admin").await.expect("admin client");
    apply_yaml(&admin, &crds(), "kiln-test").await.expect("the CRDs install on kube-apiserver");

    let mut problems = Vec::new();

    // Every example is admitted.
    let valid: Vec<(String, Value)> = yaml_files(&examples_dir())
        .iter()
        .flat_map(|p| documents(p).into_iter().map(move |d| (file_name(p), d)))
        .collect();
    let invalid: Vec<(String, Vec<String>, Value)> = yaml_files(&examples_dir().join("invalid"))
        .iter()
        .map(|p| {
            let docs = documents(p);
            assert_eq!(docs.len(), 1, "{} should hold one manifest", p.display());
            (file_name(p), expectations(p), docs[0].clone())
        })
        .collect();
    let updates: Vec<(String, Vec<String>, Value, Value)> = yaml_files(&examples_dir().join("invalid/updates"))
        .iter()
        .map(|p| {
            let docs = documents(p);
            assert_eq!(docs.len(), 2, "{} should hold two documents: old, then new", p.display());
            (file_name(p), expectations(p), docs[0].clone(), docs[1].clone())
        })
        .collect();
    let all: Vec<Value> = valid
        .iter()
        .map(|(_, d)| d.clone())
        .chain(invalid.iter().map(|(_, _, d)| d.clone()))
        .chain(updates.iter().flat_map(|(_, _, old, new)| [old.clone(), new.clone()]))
        .collect();
    namespaces(&admin, &all).await;

    for (file, doc) in &valid {
        if let Err(message) = send(&admin, "POST", &collection_path(doc), doc, true).await {
            problems.push(format!("{file}: {} {} refused: {message}", doc["kind"], doc["metadata"]["name"]));
        }
    }
    assert!(valid.len() >= 8, "only {} example documents", valid.len());

    // Every invalid manifest is refused, saying what its header expects.
    for (file, expected, doc) in &invalid {
        match send(&admin, "POST", &collection_path(doc), doc, true).await {
            Ok(_) => problems.push(format!("{file}: admitted, expected {expected:?}")),
            Err(message) => {
                let missing = missing_fragments(&message, expected);
                if !missing.is_empty() {
                    problems.push(format!("{file}: the refusal does not say {missing:?}; it says: {message}"));
                }
            }
        }
    }
    assert!(invalid.len() >= 15, "only {} invalid cases", invalid.len());

    // Every refused update is refused; a no-op update of the stored object passes.
    for (i, (file, expected, old, new)) in updates.iter().enumerate() {
        // Each case stores its object under its own name, so cases do not collide.
        let name = format!("update-case-{i}");
        let mut old = old.clone();
        let mut new = new.clone();
        old["metadata"]["name"] = json!(name);
        new["metadata"]["name"] = json!(name);
        let stored = match send(&admin, "POST", &collection_path(&old), &old, false).await {
            Ok(stored) => stored,
            Err(message) => {
                problems.push(format!("{file}: the stored object is refused on create: {message}"));
                continue;
            }
        };
        new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
        match send(&admin, "PUT", &object_path(&new), &new, true).await {
            Ok(_) => problems.push(format!("{file}: update admitted, expected {expected:?}")),
            Err(message) => {
                let missing = missing_fragments(&message, expected);
                if !missing.is_empty() {
                    problems.push(format!("{file}: the refusal does not say {missing:?}; it says: {message}"));
                }
            }
        }
        if let Err(message) = send(&admin, "PUT", &object_path(&stored), &stored, true).await {
            problems.push(format!("{file}: a no-op update is refused: {message}"));
        }
    }
    assert!(updates.len() >= 7, "only {} update cases", updates.len());
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
