//! OpenAPI, as much as kubectl needs:
//!
//! - `/openapi/v3` and `/openapi/v3/{api/v1 | apis/group/version}` (JSON): per group-version
//!   documents with each resource's PATCH operation, its `x-kubernetes-group-version-kind` and the
//!   `fieldValidation` parameter, and the CRDs' schemas under `components.schemas`. kubectl ≥ 1.27
//!   checks there that the server validates fields itself (`QueryParamVerifierV3`) and then sends
//!   `fieldValidation=Strict` instead of validating client-side; `kubectl explain` reads the
//!   schemas.
//! - `/openapi/v2`: a document without definitions — protobuf (gnostic `openapi_v2.Document`)
//!   when asked for it, as older kubectl (1.20) always does, else JSON. A kubectl that validates
//!   client-side against v2 skips types it has no definition for, so validation is the server's.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// `openapi_v2.Document{swagger: "2.0", info: {title, version}}` in protobuf.
pub fn v2_protobuf() -> Vec<u8> {
    fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2];
        let mut len = bytes.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(bytes);
        out
    }
    let info = [ld(1, b"Kubernetes (kiln-test-apiserver)"), ld(2, b"v1.33.0")].concat();
    [ld(1, b"2.0"), ld(2, &info)].concat()
}

/// The JSON form of the same document.
pub fn v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes (kiln-test-apiserver)", "version": "v1.33.0"},
        "paths": {}, "definitions": {}})
}

/// `api/v1` or `apis/{group}/{version}`.
fn gv_path(rt: &ResourceType) -> String {
    if rt.group.is_empty() { format!("api/{}", rt.version) } else { format!("apis/{}/{}", rt.group, rt.version) }
}

/// A short content hash (the real server's URLs carry one, clients cache by it).
fn hash(v: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// The `/openapi/v3` discovery document.
pub fn v3_root(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for rt in types {
        let gv = gv_path(rt);
        if paths.contains_key(&gv) {
            continue;
        }
        if let Some(doc) = v3_group_version(types, &gv) {
            paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", hash(&doc))}));
        }
    }
    json!({"paths": paths})
}

/// The reversed-group schema name, as the real server names them (`dev.kiln.v1alpha1.Release`,
/// `io.k8s.api.core.v1.ConfigMap`).
fn schema_name(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        return format!("io.k8s.api.core.{}.{}", rt.version, rt.kind);
    }
    let reversed: Vec<&str> = rt.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind)
}

/// The document of one group-version (`api/v1`, `apis/kiln.dev/v1alpha1`), if served.
pub fn v3_group_version(types: &[ResourceType], gv: &str) -> Option<Value> {
    let gv = gv.trim_matches('/');
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for rt in types.iter().filter(|rt| gv_path(rt) == gv) {
        let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
        let name = schema_name(rt);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let mut schema = rt.schema.clone().unwrap_or_else(|| json!({"type": "object"}));
        if let Some(m) = schema.as_object_mut() {
            m.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
        schemas.insert(name, schema);
        let q = |n: &str, d: &str| json!({"name": n, "in": "query", "description": d, "schema": {"type": "string"}});
        let params = json!([
            q("dryRun", "When present, indicates that modifications should not be persisted."),
            q("fieldManager", "The name of the actor or entity that is making these changes."),
            q("fieldValidation", "Ignore, Warn (default) or Strict handling of unknown or duplicate fields."),
            {"name": "force", "in": "query", "schema": {"type": "boolean"}},
        ]);
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
        let op = |verb: &str, action: &str| {
            json!({"operationId": format!("{verb}{}", rt.kind), "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "responses": ok})
        };
        let mut patch = op("patch", "patch");
        if let Some(m) = patch.as_object_mut() {
            m.insert("parameters".into(), params.clone());
        }
        let mut put = op("replace", "put");
        if let Some(m) = put.as_object_mut() {
            m.insert("parameters".into(), params.clone());
        }
        let mut post = op("create", "post");
        if let Some(m) = post.as_object_mut() {
            m.insert("parameters".into(), params);
        }
        let base = if rt.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}", rt.plural)
        } else {
            format!("/{gv}/{}", rt.plural)
        };
        paths.insert(format!("{base}/{{name}}"), json!({"get": op("read", "get"), "put": put, "patch": patch}));
        paths.insert(base, json!({"get": op("list", "list"), "post": post}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (kiln-test-apiserver)", "version": "v1.33.0"},
        "paths": paths, "components": {"schemas": schemas}}))
}
