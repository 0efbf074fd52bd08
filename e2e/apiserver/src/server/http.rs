//! HTTP: the router, authentication and impersonation, and dispatch of a request to a verb.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::reviews::{access_review, self_subject_review};
use super::watch::watch;
use super::{Params, Reply, Res, Shared, WriteCtx};
use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::rbac::{self, RBAC_GROUP};
use crate::resources::{AUTHORIZATION_GROUP, Registry};
use crate::store::Key;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response {
    let mut resp = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    for w in warnings {
        let text = format!("299 - {:?}", w.replace('"', "'"));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

pub(super) fn error_response(e: &ApiError) -> Response {
    let mut resp = json_response(e.code, &e.to_status(), &[]);
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The route of a resource request.
struct Target {
    id: usize,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn default_manager(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.log_requests {
        return handle_request(shared, method, uri, q, headers, body).await;
    }
    let line = format!(
        "{method} {uri} accept={:?} content-type={:?}",
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or(""),
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    );
    let resp = handle_request(shared, method, uri, q, headers, body).await;
    eprintln!("{line} -> {}", resp.status().as_u16());
    resp
}

async fn handle_request(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = uri.path().trim_end_matches('/').to_string();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return (StatusCode::OK, "ok").into_response();
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let user = match token {
        Some(t) => shared.users.get(t).cloned(),
        None => shared.anonymous.clone(),
    };
    let Some(user) = user else {
        return error_response(&ApiError::unauthorized());
    };
    let user = match impersonation(&shared, &user, &headers) {
        Ok(Some(u)) => u,
        Ok(None) => user,
        Err(e) => return error_response(&e),
    };
    if shared.rbac {
        let attrs = rbac::request_attributes(method.as_str(), uri.path(), &q);
        match shared.authorize(&user, &attrs) {
            Ok(d) if d.allowed => {}
            Ok(d) => return error_response(&rbac::forbidden(&user, &attrs, &d.reason)),
            Err(e) => return error_response(&e),
        }
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let reg = &shared.registry;
    match (method.clone(), segs.as_slice()) {
        (Method::POST, ["apis", AUTHORIZATION_GROUP, "v1", review]) => {
            shared.count("create", review);
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            return match access_review(&shared, &user, review, content_type, &body) {
                Ok(v) => json_response(201, &v, &[]),
                Err(e) => error_response(&e),
            };
        }
        (Method::GET, ["version"]) => {
            return json_response(
                200,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-kiln-test",
                "gitCommit": "kiln-test-apiserver", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "none", "compiler": "rust", "platform": "linux/amd64"}),
                &[],
            );
        }
        (Method::GET, ["openapi", "v2"]) => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            if accept.contains("protobuf") {
                return (
                    StatusCode::OK,
                    // Like kube-openapi: the Accept type has an `@`, which is no valid media type.
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    crate::openapi::v2_protobuf(),
                )
                    .into_response();
            }
            return json_response(200, &crate::openapi::v2_json(), &[]);
        }
        (Method::GET, ["openapi", "v3"]) => return json_response(200, &crate::openapi::v3_root(&reg.types), &[]),
        (Method::GET, ["openapi", "v3", gv @ ..]) => {
            return match crate::openapi::v3_group_version(&reg.types, &gv.join("/")) {
                Some(doc) => json_response(200, &doc, &[]),
                None => error_response(&ApiError::no_route(&path)),
            };
        }
        (Method::POST, ["apis", crate::resources::AUTHENTICATION_GROUP, "v1", "selfsubjectreviews"]) => {
            shared.count("create", "selfsubjectreviews");
            return json_response(201, &self_subject_review(&user), &[]);
        }
        (Method::GET, ["api"]) => return json_response(200, &reg.api_versions(), &[]),
        (Method::GET, ["apis"]) => return json_response(200, &reg.api_group_list(), &[]),
        (Method::GET, ["api", v]) => {
            return match reg.resource_list("", v) {
                Some(l) => json_response(200, &l, &[]),
                None => error_response(&ApiError::no_route(&path)),
            };
        }
        (Method::GET, ["apis", g]) => {
            return match reg.api_group(g) {
                Some(l) => json_response(200, &l, &[]),
                None => error_response(&ApiError::no_route(&path)),
            };
        }
        (Method::GET, ["apis", g, v]) => {
            return match reg.resource_list(g, v) {
                Some(l) => json_response(200, &l, &[]),
                None => error_response(&ApiError::no_route(&path)),
            };
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return error_response(&ApiError::no_route(&path)),
    };
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if reg.find(group, version, plural).is_some_and(|i| reg.types[i].namespaced) =>
        {
            route(reg, group, version, plural, Some(ns), tail)
        }
        [plural, tail @ ..] => route(reg, group, version, plural, None, tail),
        _ => None,
    };
    let Some(target) = target else { return error_response(&ApiError::no_route(&path)) };
    let Some(rt) = reg.types.get(target.id) else { return error_response(&ApiError::no_route(&path)) };
    let p = Params { q };
    let verb = match (&method, &target.name) {
        (&Method::GET, None) if p.flag("watch") => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => return error_response(&ApiError::method_not_allowed()),
    };
    shared.count(verb, &rt.plural);
    let table = crate::table::wants_table(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or(""));
    if let Some(code) = shared.faults.error_for(verb, &rt.plural) {
        return error_response(&ApiError::injected(code));
    }
    if verb == "watch" {
        return watch(shared.clone(), target.id, target.namespace, &p, table);
    }
    let ns = target.namespace.clone().unwrap_or_default();
    if rt.namespaced && target.namespace.is_none() && !matches!(verb, "list") {
        return error_response(&ApiError::method_not_allowed());
    }
    let ctx = WriteCtx {
        managed_done: false,
        user: &user,
        manager: p
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| default_manager(&headers)),
        status: target.status,
        fv: p.field_validation(),
        dry_run: p.dry_run(),
    };
    let key = |name: &str| -> Key { (if rt.namespaced { ns.clone() } else { String::new() }, name.to_string()) };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Protobuf bodies only for the built-in types kubectl's typed commands create (see protobuf.rs).
    let protobuf = matches!(verb, "create" | "update") && content_type.starts_with(crate::protobuf::CONTENT_TYPE);
    let decoded = if protobuf && !rt.custom { crate::protobuf::decode(&body) } else { None };
    let parse_body = || match &decoded {
        Some(v) => Ok(v.clone()),
        None => serde_json::from_slice::<Value>(&body)
            .map_err(|e| ApiError::bad_request(format!("error decoding body: {e}"))),
    };
    // Otherwise only JSON (and YAML for apply) bodies: CBOR and other protobuf get 415.
    if matches!(verb, "create" | "update")
        && decoded.is_none()
        && !content_type.is_empty()
        && !content_type.starts_with("application/json")
        && !content_type.starts_with("application/yaml")
    {
        return error_response(&ApiError::unsupported_media_type(content_type));
    }
    let result = match (verb, &target.name) {
        ("list", _) => shared.list(target.id, target.namespace.as_deref(), &p),
        ("get", Some(n)) => shared.get(target.id, &key(n)),
        ("create", _) if !target.status => parse_body().and_then(|b| shared.create(target.id, &ns, b, &ctx)),
        ("update", Some(n)) => parse_body().and_then(|b| shared.put(target.id, &key(n), b, &ctx)),
        ("patch", Some(n)) => shared.patch(target.id, &key(n), content_type, &body, &p, &ctx),
        ("delete", Some(n)) if !target.status => shared.delete(target.id, &key(n), &body, &ctx),
        ("deletecollection", None) => shared.delete_collection(target.id, target.namespace.as_deref(), &p, &ctx),
        _ => Err(ApiError::method_not_allowed()),
    };
    if result.is_ok() && rt.group == RBAC_GROUP && rt.plural == "clusterroles" && verb != "get" && verb != "list" {
        shared.reaggregate();
    }
    match result {
        Ok(Reply { code, body, warnings }) if table && matches!(verb, "get" | "list") => {
            json_response(code, &crate::table::to_table(rt, &body, p.get("includeObject")), &warnings)
        }
        Ok(Reply { code, body, warnings }) => json_response(code, &body, &warnings),
        Err(e) => error_response(&e),
    }
}

/// The identity a request acts as when it carries `Impersonate-*` headers (checked against RBAC
/// with the `impersonate` verb).
fn impersonation(shared: &Shared, user: &UserInfo, headers: &HeaderMap) -> Res<Option<UserInfo>> {
    let one = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let imp_user = one("Impersonate-User");
    let imp_groups: Vec<String> =
        headers.get_all("Impersonate-Group").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    let imp_uid = one("Impersonate-Uid");
    if imp_user.is_none() && imp_groups.is_empty() && imp_uid.is_none() {
        return Ok(None);
    }
    let s = shared.lock()?;
    rbac::impersonate(&s, shared.rbac_ids, shared.rbac, user, imp_user.as_deref(), &imp_groups, imp_uid.as_deref())
}

fn route(reg: &Registry, group: &str, version: &str, plural: &str, ns: Option<&str>, tail: &[&str]) -> Option<Target> {
    let id = reg.find(group, version, plural)?;
    let rt = reg.types.get(id)?;
    let (name, status) = match tail {
        [] => (None, false),
        [name] => (Some((*name).to_string()), false),
        [name, "status"] if rt.status_subresource => (Some((*name).to_string()), true),
        _ => return None,
    };
    Some(Target { id, namespace: ns.map(str::to_string), name, status })
}
