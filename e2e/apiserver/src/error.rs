//! Errors as the apiserver reports them: a `meta.k8s.io/v1` `Status` body with `reason`, `code`
//! and `details`, so kube-rs (`kube::Error::Api`) and kubectl show the real messages.

use kiln_schema::FieldError;
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// A failed request, rendered as a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, retry_after: None }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 `releases.kiln.dev "x" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{} {name:?} not found", rt.qualified()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> Self {
        ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
            .with_details(json!({}))
    }

    /// 404 `namespaces "x" not found` (creating in a namespace that does not exist).
    pub fn namespace_not_found(ns: &str) -> Self {
        ApiError::new(404, "NotFound", format!("namespaces {ns:?} not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    /// 403 when creating in a terminating namespace.
    pub fn namespace_terminating(rt: &ResourceType, name: &str, ns: &str) -> Self {
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.qualified()
            ),
        )
        .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 409 `releases.kiln.dev "x" already exists`.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(409, "AlreadyExists", format!("{} {name:?} already exists", rt.qualified()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 409 on a stale `resourceVersion` (optimistic concurrency) or a failed precondition.
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} {name:?}: {why}", rt.qualified()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 409 on a stale `resourceVersion`.
    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        ApiError::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 server-side apply conflicts: `(manager, field)` pairs.
    pub fn apply_conflicts(rt: &ResourceType, name: &str, conflicts: &[(String, String)]) -> Self {
        let n = conflicts.len();
        let list: Vec<String> = conflicts.iter().map(|(m, f)| format!("conflict with {m:?}: {f}")).collect::<Vec<_>>();
        let message = if n == 1 {
            format!("Apply failed with 1 conflict: {}", list.join(""))
        } else {
            format!("Apply failed with {n} conflicts: {}", list.join("\n"))
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m:?}"), "field": f}))
            .collect();
        ApiError::new(409, "Conflict", message)
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}))
    }

    /// 422 `Release.kiln.dev "x" is invalid: ...` with one cause per field error.
    pub fn invalid(rt: &ResourceType, name: &str, errs: &[FieldError]) -> Self {
        let rendered: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let joined = if rendered.len() == 1 { rendered.join("") } else { format!("[{}]", rendered.join(", ")) };
        let causes: Vec<Value> =
            errs.iter().map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field})).collect();
        ApiError::new(422, "Invalid", format!("{} {name:?} is invalid: {joined}", rt.qualified_kind()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}))
    }

    /// 422 from simple checks of the server itself (names, finalizers, ...).
    pub fn invalid_field(rt: &ResourceType, name: &str, field: &str, reason: &str, body: &str) -> Self {
        ApiError::new(422, "Invalid", format!("{} {name:?} is invalid: {field}: {body}", rt.qualified_kind()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.kind,
                "causes": [{"reason": reason, "message": body, "field": field}]}))
    }

    /// 422 from several simple checks: `(field, reason, body)` per error.
    pub fn invalid_causes(rt: &ResourceType, name: &str, errs: &[(String, &str, String)]) -> Self {
        let rendered: Vec<String> = errs.iter().map(|(f, _, b)| format!("{f}: {b}")).collect();
        let joined = if rendered.len() == 1 { rendered.join("") } else { format!("[{}]", rendered.join(", ")) };
        let causes: Vec<Value> = errs.iter().map(|(f, r, b)| json!({"reason": r, "message": b, "field": f})).collect();
        ApiError::new(422, "Invalid", format!("{} {name:?} is invalid: {joined}", rt.qualified_kind()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}))
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 from an admission hook.
    pub fn forbidden(rt: &ResourceType, name: &str, why: &str) -> Self {
        ApiError::new(403, "Forbidden", format!("{} {name:?} is forbidden: {why}", rt.qualified()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 403 as `apierrors.NewForbidden(groupResource, name, err)` renders it.
    pub fn forbidden_raw(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        let message = if qualified.is_empty() {
            format!("forbidden: {why}")
        } else if name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} {name:?} is forbidden: {why}")
        };
        let mut details = json!({"group": group, "kind": resource});
        if !name.is_empty()
            && let Some(m) = details.as_object_mut()
        {
            m.insert("name".into(), name.into());
        }
        ApiError::new(403, "Forbidden", message).with_details(details)
    }

    /// A ValidatingAdmissionPolicy denial: `admission.NewForbidden` with the decision's reason
    /// (`Invalid` → 422 by default) and the message as a cause.
    pub fn policy_denied(rt: &ResourceType, name: &str, reason: &str, message: &str) -> Self {
        let code = match reason {
            "Forbidden" => 403,
            "Unauthorized" => 401,
            "RequestEntityTooLarge" => 413,
            _ => 422,
        };
        let reason: &'static str = match reason {
            "Forbidden" => "Forbidden",
            "Unauthorized" => "Unauthorized",
            "RequestEntityTooLarge" => "RequestEntityTooLarge",
            _ => "Invalid",
        };
        ApiError::new(code, reason, format!("{} {name:?} is forbidden: {message}", rt.qualified()))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": [{"message": message}]}))
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            .with_details(json!({}))
    }

    /// 410 `too old resource version`.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        ApiError::new(410, "Expired", format!("too old resource version: {requested} ({oldest})"))
    }

    /// 415.
    pub fn unsupported_media_type(ct: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {ct:?}"
            ),
        )
    }

    /// An injected fault (`Faults`): 409, 429 or 500.
    pub fn injected(code: u16) -> Self {
        match code {
            409 => ApiError::new(409, "Conflict", "injected fault: conflict (kiln-test-apiserver)"),
            429 => {
                let mut e =
                    ApiError::new(429, "TooManyRequests", "injected fault: too many requests (kiln-test-apiserver)")
                        .with_details(json!({"retryAfterSeconds": 1}));
                e.retry_after = Some(1);
                e
            }
            _ => ApiError::internal("injected fault (kiln-test-apiserver)"),
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(map)) = (&self.details, s.as_object_mut()) {
            map.insert("details".into(), d.clone());
        }
        s
    }
}
