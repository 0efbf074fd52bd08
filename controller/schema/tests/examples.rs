//! Every document in `examples/*.yaml` is a valid kiln object: it deserializes into its typed
//! `kiln_api` struct and kube-apiserver admission (as `kiln-schema` models it) accepts it.

mod common;

use common::{documents, examples_dir, file_name, render, yaml_files};
use kiln_api::{Environment, FreezeWindow, Promotion, Release, RollbackPolicy};
use serde_json::Value;

fn typed(doc: &Value) -> Result<(), String> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let v = doc.clone();
    let result = match kind {
        "Environment" => serde_json::from_value::<Environment>(v).map(|_| ()),
        "Release" => serde_json::from_value::<Release>(v).map(|_| ()),
        "Promotion" => serde_json::from_value::<Promotion>(v).map(|_| ()),
        "FreezeWindow" => serde_json::from_value::<FreezeWindow>(v).map(|_| ()),
        "RollbackPolicy" => serde_json::from_value::<RollbackPolicy>(v).map(|_| ()),
        other => return Err(format!("unexpected kind {other:?}")),
    };
    result.map_err(|e| e.to_string())
}

#[test]
fn every_example_is_typed_and_admitted() {
    let files = yaml_files(&examples_dir());
    let mut kinds = Vec::new();
    let mut failures = Vec::new();
    for path in &files {
        let docs = documents(path);
        assert!(!docs.is_empty(), "{} has no documents", path.display());
        for (i, doc) in docs.iter().enumerate() {
            if let Err(e) = typed(doc) {
                failures.push(format!("{} document {i}: does not deserialize: {e}", file_name(path)));
            }
            // The defaulted object must deserialize too (it is what the controller reads).
            match kiln_schema::validate_create(doc) {
                Ok(defaulted) => {
                    if let Err(e) = typed(&defaulted) {
                        failures.push(format!(
                            "{} document {i}: defaulted object does not deserialize: {e}",
                            file_name(path)
                        ));
                    }
                }
                Err(errs) => failures.push(format!("{} document {i} is rejected:\n{}", file_name(path), render(&errs))),
            }
            kinds.push(doc["kind"].as_str().unwrap_or_default().to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in ["Environment", "Release", "Promotion", "FreezeWindow", "RollbackPolicy"] {
        assert!(kinds.iter().any(|k| k == kind), "no example of {kind}");
    }
}

#[test]
fn the_documented_examples_exist() {
    let names: Vec<String> = yaml_files(&examples_dir()).iter().map(|p| file_name(p)).collect();
    for expected in [
        "environments.yaml",
        "freeze-windows.yaml",
        "rollback-policy.yaml",
        "release-ingest-worker.yaml",
        "release-api-adapter.yaml",
        "promotion-prod.yaml",
    ] {
        assert!(names.iter().any(|n| n == expected), "examples/{expected} is missing");
    }
    common::read(&examples_dir().join("README.md"));
}

#[test]
fn lint_of_the_examples_is_clean() {
    for path in yaml_files(&examples_dir()) {
        let findings = kiln_schema::lint_yaml(&common::read(&path));
        assert!(
            findings.is_empty(),
            "{}:\n{}",
            path.display(),
            findings.iter().map(|f| format!("  {}:{f}", file_name(&path))).collect::<Vec<_>>().join("\n")
        );
    }
}
