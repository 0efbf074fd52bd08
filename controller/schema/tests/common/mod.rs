//! Helpers shared by the integration tests. Every file access fails the test loudly: a missing
//! or unreadable example is a failure, never a skip.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The `*.yaml` files directly in `dir`, sorted. Panics if the directory cannot be read or has
/// none, so a moved directory cannot make a test pass vacuously.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read directory {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yaml files in {}", dir.display());
    files
}

/// Every document of a file, which must all parse.
pub fn documents(path: &Path) -> Vec<Value> {
    kiln_schema::parse_documents(&read(path))
        .into_iter()
        .map(|d| d.unwrap_or_else(|e| panic!("{}: {e}", path.display())).value)
        .collect()
}

/// The `# expect: <fragment>` lines of a file's header comment.
pub fn expectations(path: &Path) -> Vec<String> {
    let fragments: Vec<String> = read(path)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("# expect:"))
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    assert!(!fragments.is_empty(), "{} has no `# expect: <message fragment>` line", path.display());
    fragments
}

pub fn render(errs: &[kiln_schema::FieldError]) -> String {
    errs.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

pub fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

pub const DIGEST: &str = "33cdf8ef78952a3b9fa01e0418bde5f48e8857cad2a9def213b2b1e578b7851c";

/// A valid ECS Release.
pub fn release() -> Value {
    serde_json::json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "ingest-worker-v1-4-2", "namespace": "ingest"},
        "spec": {
            "service": "ingest-worker",
            "version": "v1.4.2",
            "artifacts": [{"name": "api", "image": format!("111111111111.dkr.ecr.ca-central-1.amazonaws.com/ingest-worker@sha256:{DIGEST}")}],
            "target": {"ecs": {
                "cluster": "nc-core", "service": "ingest-worker", "container": "api",
                "strategy": "canary", "steps": [10, 100], "stepBake": "5m",
                "traffic": {
                    "listener": {"loadBalancerName": "ingest-alb", "port": 443},
                    "blueTargetGroup": {"name": "ingest-worker-blue"},
                    "greenTargetGroup": {"name": "ingest-worker-green"}
                }
            }},
            "environments": ["dev", "stg", "prod"]
        }
    })
}

/// A valid Lambda Release.
pub fn lambda_release() -> Value {
    let mut r = release();
    r["spec"]["target"] =
        serde_json::json!({"lambda": {"functionName": "api-adapter", "strategy": "canary", "steps": [10, 100]}});
    r
}

/// A valid Promotion without approvals.
pub fn promotion() -> Value {
    serde_json::json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"name": "ingest-worker-v1-4-2-prod", "namespace": "ingest"},
        "spec": {"release": "ingest-worker-v1-4-2", "environment": "prod"}
    })
}

pub fn approval(user: &str, role: &str, at: &str) -> Value {
    serde_json::json!({"user": user, "role": role, "at": at})
}

/// A valid Environment.
pub fn environment() -> Value {
    serde_json::json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "prod"},
        "spec": {
            "upstream": ["stg"],
            "aws": {"accountId": "333333333333", "region": "ca-central-1", "roleArn": "arn:aws:iam::333333333333:role/kiln-deploy"}
        }
    })
}

/// A valid FreezeWindow with one recurring span.
pub fn freeze_window() -> Value {
    serde_json::json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "FreezeWindow",
        "metadata": {"name": "weekend", "namespace": "kiln-system"},
        "spec": {
            "environments": ["prod"],
            "timeZone": "America/New_York",
            "recurring": [{"from": {"day": "Friday", "time": "17:00"}, "to": {"day": "Monday", "time": "09:00"}}]
        }
    })
}

/// A valid RollbackPolicy with one alarm.
pub fn rollback_policy() -> Value {
    serde_json::json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "RollbackPolicy",
        "metadata": {"name": "slo-default", "namespace": "ingest"},
        "spec": {"alarms": [{"name": "ingest-5xx"}]}
    })
}

/// The rendered errors of a rejected create (panics if it is accepted).
pub fn create_errors(obj: &Value) -> Vec<String> {
    match kiln_schema::validate_create(obj) {
        Ok(_) => panic!("accepted:\n{}", serde_json::to_string_pretty(obj).unwrap_or_default()),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// The rendered errors of a rejected update (panics if it is accepted).
pub fn update_errors(new: &Value, old: &Value) -> Vec<String> {
    match kiln_schema::validate_update(new, old) {
        Ok(_) => panic!("update accepted:\n{}", serde_json::to_string_pretty(new).unwrap_or_default()),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// Panics with the errors unless the create is accepted.
pub fn accepted(obj: &Value) -> Value {
    kiln_schema::validate_create(obj).unwrap_or_else(|errs| panic!("rejected:\n{}", render(&errs)))
}

/// Panics with the errors unless the update is accepted.
pub fn update_accepted(new: &Value, old: &Value) -> Value {
    kiln_schema::validate_update(new, old).unwrap_or_else(|errs| panic!("update rejected:\n{}", render(&errs)))
}

/// Asserts exactly one error, containing `fragment`.
pub fn one_error(errs: &[String], fragment: &str) {
    assert_eq!(errs.len(), 1, "expected one error containing {fragment:?}, got {errs:#?}");
    assert!(errs[0].contains(fragment), "expected {fragment:?} in {:?}", errs[0]);
}
