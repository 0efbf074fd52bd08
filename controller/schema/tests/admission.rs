//! The structural part of admission: defaults, types, formats, sizes, unknown fields, metadata,
//! the status subresource, ratcheting, and the YAML helper — with the apiserver's messages.
#![recursion_limit = "256"]

mod common;

use common::*;
use kiln_schema::{ErrorType, Problem, Validator};
use serde_json::{Value, json};

#[test]
fn defaults_are_applied_before_validation_and_returned() {
    let e = accepted(&environment());
    assert_eq!(
        e["spec"]["bake"],
        json!({"duration": "10m", "signalReadFailure": {"action": "rollBack", "after": "2m"}}),
        "an omitted bake fails closed on unreadable signals after 2m"
    );
    let mut empty_rules = environment();
    empty_rules["spec"]["promotion"] = json!({});
    assert_eq!(
        accepted(&empty_rules)["spec"]["promotion"],
        json!({"approvals": [], "auto": false, "forbidSelfApproval": true, "freshApprovalsOnRetry": false, "requireChangeRef": false, "requireUpstreamGreen": true})
    );
    // An omitted `promotion` must be as safe as `promotion: {}`: self-approval forbidden and
    // upstream alarms required green.
    assert_eq!(
        e["spec"]["promotion"],
        accepted(&empty_rules)["spec"]["promotion"],
        "omitted promotion defaults to {}",
        e["spec"]["promotion"]
    );
    // Defaults inside list items, and inside an object that was itself written partially.
    let mut with_approval = environment();
    with_approval["spec"]["promotion"] = json!({"approvals": [{"role": "security"}]});
    let d = accepted(&with_approval);
    assert_eq!(d["spec"]["promotion"]["approvals"][0], json!({"role": "security", "count": 1}));
    assert_eq!(d["spec"]["promotion"]["forbidSelfApproval"], json!(true));
    // A non-nullable null with a default gets the default.
    let mut null_default = environment();
    null_default["spec"]["promotion"] = json!({"forbidSelfApproval": null});
    assert_eq!(accepted(&null_default)["spec"]["promotion"]["forbidSelfApproval"], json!(true));
    // The defaulted Release has its type, the Promotion its counters.
    assert_eq!(accepted(&release())["spec"]["type"], json!("standard"));
    let p = accepted(&promotion());
    assert_eq!(
        (&p["spec"]["abort"], &p["spec"]["retry"], &p["spec"]["approvals"]),
        (&json!(false), &json!(0), &json!([]))
    );
    assert_eq!(accepted(&lambda_release())["spec"]["target"]["lambda"]["alias"], json!("live"));
}

#[test]
fn nulls() {
    // Nullable: kept. Non-nullable without default: dropped, as if not written (so: required).
    let mut r = release();
    r["spec"]["changeRef"] = Value::Null;
    assert_eq!(accepted(&r)["spec"]["changeRef"], Value::Null);
    let mut r = release();
    r["spec"]["service"] = Value::Null;
    let errs = create_errors(&r);
    assert_eq!(errs[0], "spec.service: Required value");
    // A null list item is a type error.
    let mut r = release();
    r["spec"]["environments"] = json!(["dev", null]);
    let errs = create_errors(&r);
    assert_eq!(
        errs[0],
        "spec.environments[1]: Invalid value: \"null\": spec.environments[1] in body must be of type string: \"null\""
    );
}

#[test]
fn schema_errors_read_like_the_apiserver() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"spec": {"retry": "3"}}),
            "spec.retry: Invalid value: \"string\": spec.retry in body must be of type integer: \"string\"",
        ),
        (
            json!({"spec": {"abort": "yes"}}),
            "spec.abort: Invalid value: \"string\": spec.abort in body must be of type boolean: \"string\"",
        ),
        (
            json!({"spec": {"approvals": {}}}),
            "spec.approvals: Invalid value: \"object\": spec.approvals in body must be of type array: \"object\"",
        ),
        (
            json!({"spec": {"retry": 1001}}),
            "spec.retry: Invalid value: 1001: spec.retry in body should be less than or equal to 1000",
        ),
        (
            json!({"spec": {"retry": -1}}),
            "spec.retry: Invalid value: -1: spec.retry in body should be greater than or equal to 0",
        ),
        (
            json!({"spec": {"release": ""}}),
            "spec.release: Invalid value: \"\": spec.release in body should be at least 1 chars long",
        ),
        (json!({"spec": {"environment": "a".repeat(64)}}), "spec.environment: Too long: may not be longer than 63"),
        (
            json!({"spec": {"approvals": [{"user": "u", "role": "security", "at": "yesterday"}]}}),
            "spec.approvals[0].at: Invalid value: \"yesterday\": spec.approvals[0].at in body must be of type date-time: \"yesterday\"",
        ),
        (
            json!({"spec": {"approvals": [{"role": "security", "at": "2025-10-28T14:05:00Z"}]}}),
            "spec.approvals[0].user: Required value",
        ),
        (
            json!({"spec": {"retry": 1.5}}),
            "spec.retry: Invalid value: \"number\": spec.retry in body must be of type integer: \"number\"",
        ),
    ];
    for (patch, expected) in cases {
        let mut p = promotion();
        merge(&mut p, &patch);
        let errs = create_errors(&p);
        assert_eq!(errs[0], expected);
        // Type, required, enum and size errors stop CEL, and the apiserver says so; bounds and
        // minLength errors do not.
        let blocking = !(expected.contains("should be less than")
            || expected.contains("should be greater than")
            || expected.contains("chars long"));
        assert_eq!(
            errs.last().is_some_and(|e| e.contains("some validation rules were not checked")),
            blocking,
            "{errs:#?}"
        );
    }
    // An integral float is an integer, as for the apiserver.
    let mut p = promotion();
    p["spec"]["retry"] = json!(2.0);
    accepted(&p);

    let mut r = release();
    r["spec"]["environments"] = json!(["a", "b", "c", "d", "e", "f", "g", "h", "i"]);
    assert_eq!(create_errors(&r)[0], "spec.environments: Too many: 9: must have at most 8 items");
    r["spec"]["environments"] = json!([]);
    assert_eq!(
        create_errors(&r)[0],
        "spec.environments: Invalid value: 0: spec.environments in body should have at least 1 items"
    );
    r["spec"]["environments"] = json!(["dev", "stg", "dev"]);
    assert_eq!(create_errors(&r), vec!["spec.environments[2]: Duplicate value: \"dev\"".to_string()]);

    let mut overrides = release();
    let many: serde_json::Map<String, Value> = (0..9).map(|i| (format!("env{i}"), json!({}))).collect();
    overrides["spec"]["target"]["ecs"]["environmentOverrides"] = Value::Object(many);
    assert_eq!(
        create_errors(&overrides)[0],
        "spec.target.ecs.environmentOverrides: Too many: 9: must have at most 8 items"
    );

    let mut port = release();
    port["spec"]["target"]["ecs"]["traffic"]["listener"]["port"] = json!(0);
    assert_eq!(
        create_errors(&port)[0],
        "spec.target.ecs.traffic.listener.port: Invalid value: 0: spec.target.ecs.traffic.listener.port in body should be greater than or equal to 1"
    );

    let mut stat = rollback_policy();
    stat["spec"]["metrics"] = json!([{"name": "p95", "query": {"namespace": "AWS/ApplicationELB", "metricName": "TargetResponseTime", "stat": "p95"}, "max": 0.5}]);
    assert_eq!(
        create_errors(&stat)[0],
        "spec.metrics[0].query.stat: Unsupported value: \"p95\": supported values: \"Sum\", \"Average\", \"Minimum\", \"Maximum\", \"SampleCount\""
    );
}

/// Deep-merges `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[test]
fn unknown_fields_everywhere() {
    let mut r = release();
    r["spec"]["artifacts"][0]["digest"] = json!("sha256:abc");
    r["spec"]["target"]["ecs"]["environmentOverrides"] = json!({"prod": {"clusterName": "x"}});
    r["metadata"]["label"] = json!({"a": "b"});
    r["specs"] = json!({});
    let errs = create_errors(&r);
    assert_eq!(
        errs,
        vec![
            "unknown field \"metadata.label\"",
            "unknown field \"spec.artifacts[0].digest\"",
            "unknown field \"spec.target.ecs.environmentOverrides.prod.clusterName\"",
            "unknown field \"specs\"",
        ]
    );
    let errs = kiln_schema::validate_create(&r).err().unwrap_or_default();
    assert!(errs.iter().all(|e| e.is_unknown_field() && e.kind == ErrorType::UnknownField));
    // Status is declared: a status in a manifest is not an unknown field (it is ignored).
    let mut s = release();
    s["status"] = json!({"phase": "Succeeded"});
    assert!(accepted(&s).get("status").is_none(), "status is dropped on create");
    s["status"] = json!({"phaze": "Succeeded"});
    assert_eq!(create_errors(&s), vec!["unknown field \"status.phaze\""]);
}

#[test]
fn field_validation_modes() {
    use kiln_schema::{FieldValidation, Operation};
    let v = kiln_schema::kiln().unwrap_or_else(|e| panic!("{e}"));
    let mut r = release();
    r["spec"]["colour"] = json!("blue");
    let warn = v.admit(Operation::Create, &r, None, FieldValidation::Warn).unwrap_or_else(|e| panic!("{}", render(&e)));
    assert_eq!(warn.warnings, vec!["unknown field \"spec.colour\""]);
    assert!(warn.object["spec"].get("colour").is_none(), "pruned");
    let ignore =
        v.admit(Operation::Create, &r, None, FieldValidation::Ignore).unwrap_or_else(|e| panic!("{}", render(&e)));
    assert!(ignore.warnings.is_empty());
    assert_eq!(ignore.object, warn.object);
    assert!(v.admit(Operation::Create, &r, None, FieldValidation::Strict).is_err());
    // Other errors stay errors whatever the mode.
    r["spec"]["version"] = json!("1.4.2");
    assert!(v.admit(Operation::Create, &r, None, FieldValidation::Ignore).is_err());
    assert!(
        v.admit(Operation::Update, &release(), None, FieldValidation::Strict).is_err(),
        "an update needs the old object"
    );
}

#[test]
fn metadata() {
    let mut r = release();
    r["metadata"] = json!({"namespace": "ingest"});
    let errs = create_errors(&r);
    assert_eq!(errs[0], "metadata.name: Required value: name or generateName is required");
    r["metadata"] = json!({"generateName": "ingest-worker-"});
    accepted(&r);
    r["metadata"] = json!({"name": "Ingest_Worker"});
    let errs = create_errors(&r);
    assert!(
        errs[0].starts_with(
            "metadata.name: Invalid value: \"Ingest_Worker\": a lowercase RFC 1123 subdomain must consist of"
        ),
        "{errs:#?}"
    );
    r["metadata"] = json!("ingest-worker");
    assert!(create_errors(&r)[0].starts_with("metadata: Invalid value: \"string\""));
    let mut long = release();
    long["metadata"]["name"] = json!("a".repeat(254));
    assert!(create_errors(&long)[0].contains("must be no more than 253 characters"));
    // metadata.name is immutable.
    let old = release();
    let mut renamed = release();
    renamed["metadata"]["name"] = json!("ingest-worker-v1-4-3");
    assert_eq!(
        update_errors(&renamed, &old),
        vec!["metadata.name: Invalid value: \"ingest-worker-v1-4-3\": field is immutable"]
    );
}

#[test]
fn kinds_and_versions() {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}});
    let errs = create_errors(&deployment);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("kind: Unsupported value: \"Deployment\": no matches for kind \"Deployment\" in version \"apps/v1\"; known kinds: kiln.dev/v1alpha1/Environment"), "{errs:#?}");
    let mut v1 = release();
    v1["apiVersion"] = json!("kiln.dev/v1");
    assert!(create_errors(&v1)[0].contains("no matches for kind \"Release\" in version \"kiln.dev/v1\""));
    let bare = json!({"metadata": {"name": "x"}});
    assert_eq!(create_errors(&bare), vec!["apiVersion: Required value", "kind: Required value"]);
    assert!(
        create_errors(&json!("just a string"))[0]
            .starts_with("<nil>: Invalid value: \"string\": a manifest must be an object")
    );
    // The old and the new object must be the same kind.
    assert!(update_errors(&release(), &promotion())[0].contains("the old object is a kiln.dev/v1alpha1 Promotion"));
    let v = kiln_schema::kiln().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.is_namespaced("kiln.dev/v1alpha1", "Environment"), Some(false));
    assert_eq!(v.is_namespaced("kiln.dev/v1alpha1", "Release"), Some(true));
    assert_eq!(v.kinds().len(), 5);
}

#[test]
fn status_subresource() {
    let mut stored = release();
    stored["status"] = json!({"phase": "Progressing"});
    // The main resource ignores status changes: the stored status is kept.
    let mut new = release();
    new["status"] = json!({"phase": "Succeeded"});
    assert_eq!(update_accepted(&new, &stored)["status"], json!({"phase": "Progressing"}));
    // The status subresource takes only the status, and validates it.
    let mut status = release();
    status["spec"]["version"] = json!("v9.9.9");
    status["status"] = json!({"phase": "Succeeded"});
    let written = kiln_schema::validate_status_update(&status, &stored).unwrap_or_else(|e| panic!("{}", render(&e)));
    assert_eq!(written["status"]["phase"], json!("Succeeded"));
    assert_eq!(written["spec"]["version"], json!("v1.4.2"));
    status["status"] = json!({"phase": "Done"});
    let errs = kiln_schema::validate_status_update(&status, &stored).err().unwrap_or_default();
    assert!(
        errs[0].to_string().starts_with("status.phase: Unsupported value: \"Done\": supported values: \"Pending\""),
        "{}",
        render(&errs)
    );
}

#[test]
fn unchanged_values_are_ratcheted_on_update() {
    // An object stored before a rule existed (here: a version the current rule refuses) can
    // still be updated elsewhere, as with the apiserver's validation ratcheting; changing the
    // offending field itself is validated.
    let mut stored = release();
    stored["spec"]["version"] = json!("1.4.2");
    let mut new = stored.clone();
    new["spec"]["changeRef"] = json!("CHG-1");
    update_accepted(&new, &stored);
    let mut still_bad = stored.clone();
    still_bad["spec"]["version"] = json!("1.4.3");
    let errs = update_errors(&still_bad, &stored);
    assert!(errs.iter().any(|e| e.contains("version must be SemVer")), "{errs:#?}");
    // Transition rules still run on unchanged objects (and pass).
    update_accepted(&stored, &stored);
}

#[test]
fn all_errors_are_returned() {
    let mut r = release();
    r["spec"]["version"] = json!("1.4.2");
    r["spec"]["artifacts"][0]["image"] = json!("ingest-worker:latest");
    r["spec"]["target"]["ecs"]["steps"] = json!([50, 10, 100]);
    r["spec"]["commit"] = json!("HEAD");
    let errs = create_errors(&r);
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

#[test]
fn lint_reports_document_and_line() {
    let text = "\
# two releases and a broken document
apiVersion: kiln.dev/v1alpha1
kind: Release
metadata:
  name: good
  namespace: ingest
spec:
  service: ingest-worker
  version: v1.4.2
  artifacts: [{name: api, image: \"r/ingest@sha256:33cdf8ef78952a3b9fa01e0418bde5f48e8857cad2a9def213b2b1e578b7851c\"}]
  target: {ecs: {cluster: c, service: s, container: api, strategy: rolling}}
  environments: [dev]
---
# the second one pins nothing
apiVersion: kiln.dev/v1alpha1
kind: Release
metadata:
  name: bad
  namespace: ingest
spec:
  service: ingest-worker
  version: v1.4
  artifacts: [{name: api, image: \"r/ingest:latest\"}]
  target: {ecs: {cluster: c, service: s, container: api, strategy: rolling}}
  environments: [dev]
---
kind: [oops
";
    let findings = kiln_schema::lint_yaml(text);
    let lines: Vec<String> = findings.iter().map(|f| format!("f.yaml:{f}")).collect();
    assert_eq!(findings.len(), 3, "{lines:#?}");
    assert_eq!((findings[0].index, findings[0].line), (1, 15));
    assert_eq!(findings[0].object.as_deref(), Some("Release/bad"));
    assert_eq!(
        lines[0],
        "f.yaml:15: Release/bad: spec.artifacts[0].image: Invalid value: \"string\": image must be pinned by digest: <registry>/<repository>@sha256:<64 lowercase hex>; tags such as :latest are mutable and are not accepted"
    );
    assert!(lines[1].starts_with("f.yaml:15: Release/bad: spec.version: Invalid value"), "{lines:#?}");
    assert_eq!((findings[2].index, findings[2].line), (2, 27));
    assert!(matches!(&findings[2].problem, Problem::Yaml(e) if e.error_line.is_some_and(|l| l >= 27)), "{lines:#?}");
    assert!(lines[2].starts_with("f.yaml:27: invalid YAML: "), "{lines:#?}");
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    let docs = kiln_schema::parse_documents("kind: Release\nkind: Promotion\n");
    assert!(docs[0].is_err(), "{docs:?}");
}

/// A CRD using the schema features kiln's own CRDs do not (yet): pattern, int-or-string,
/// preserve-unknown-fields, list-type map, maps with CEL rules, exclusive bounds.
fn synthetic() -> Validator {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "ratio": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": true},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "when": {"type": "string", "format": "date-time", "nullable": true},
                            "ports": {
                                "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                                "items": {"type": "object", "required": ["name"], "properties": {
                                    "name": {"type": "string"},
                                    "port": {"type": "integer", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "port is immutable"}]}
                                }}
                            },
                            "limits": {"type": "object", "additionalProperties": {
                                "type": "integer",
                                "x-kubernetes-validations": [{"rule": "self >= 0", "message": "must not be negative"}]
                            }}
                        }
                    }}
                }}
            }]
        }
    });
    Validator::from_crds(&[crd]).unwrap_or_else(|e| panic!("{e}"))
}

fn widget(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}, "spec": spec})
}

fn widget_errors(v: &Validator, spec: Value) -> Vec<String> {
    v.validate_create(&widget(spec)).err().unwrap_or_default().iter().map(ToString::to_string).collect()
}

#[test]
fn schema_features_beyond_the_kiln_crds() {
    let v = synthetic();
    let ok = json!({"code": "ABC", "port": "http", "ratio": 0.5, "extra": {"anything": {"goes": [1]}}, "when": null,
                    "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}], "limits": {"cpu": 2}});
    v.validate_create(&widget(ok.clone())).unwrap_or_else(|e| panic!("{}", render(&e)));
    assert!(v.validate_create(&widget(json!({"port": 8080}))).is_ok());
    assert_eq!(
        widget_errors(&v, json!({"code": "abc"}))[0],
        "spec.code: Invalid value: \"abc\": spec.code in body should match '^[A-Z]{3}$'"
    );
    assert_eq!(
        widget_errors(&v, json!({"port": true}))[0],
        "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""
    );
    assert_eq!(
        widget_errors(&v, json!({"ratio": 1}))[0],
        "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"
    );
    assert_eq!(
        widget_errors(&v, json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]})),
        vec!["spec.ports[1]: Duplicate value: map[string]interface {}{\"name\":\"http\"}"]
    );
    // CEL errors on map values name the key in brackets, as the apiserver's CEL validator does.
    assert_eq!(
        widget_errors(&v, json!({"limits": {"cpu": -1}})),
        vec!["spec.limits[cpu]: Invalid value: \"integer\": must not be negative"]
    );
    // list-type map items correlate by key for transition rules: reordering is not a change...
    let old = widget(json!({"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}));
    let reordered = widget(json!({"ports": [{"name": "https", "port": 443}, {"name": "http", "port": 80}]}));
    v.validate_update(&reordered, &old).unwrap_or_else(|e| panic!("{}", render(&e)));
    // ...changing the port of an existing name is, and a new name is not checked against anything.
    let changed = widget(
        json!({"ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 80}, {"name": "admin", "port": 9000}]}),
    );
    let errs: Vec<String> =
        v.validate_update(&changed, &old).err().unwrap_or_default().iter().map(ToString::to_string).collect();
    assert_eq!(errs, vec!["spec.ports[0].port: Invalid value: \"integer\": port is immutable"]);
}

#[test]
fn unsupported_schema_keywords_are_refused_not_ignored() {
    let crd = json!({
        "metadata": {"name": "x.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "X"},
                 "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}}}}}]}
    });
    let err = Validator::from_crds(&[crd]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("`anyOf` is not supported"), "{err}");
}
