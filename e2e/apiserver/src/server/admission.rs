//! Admission of a write: the schema (custom resources) or the built-in checks, the
//! in-process hooks, the namespace the object lives in, and what the server fills in.

use base64::Engine;
use kiln_schema::Operation;
use serde_json::{Value, json};

use super::builtin::validate_builtin;
use super::{Res, Shared, WriteCtx, meta_mut, meta_str};
use crate::AdmissionRequest;
use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::store::Store;

/// An object admitted for a write: defaulted and pruned (custom resources) or checked
/// (built-in types), with the warnings the write answers with.
pub(super) struct Admitted {
    pub(super) object: Value,
    pub(super) warnings: Vec<String>,
}

impl Shared {
    pub(super) fn admit(
        &self,
        rt: &ResourceType,
        op: Operation,
        new: Value,
        old: Option<&Value>,
        ctx: &WriteCtx,
    ) -> Res<Admitted> {
        let name = meta_str(&new, "name").to_string();
        if !rt.custom {
            let mut new = new;
            validate_builtin(rt, &name, &mut new, old)?;
            return Ok(Admitted { object: new, warnings: Vec::new() });
        }
        match self.validator.admit(op, &new, old, ctx.fv) {
            Ok(a) => Ok(Admitted { object: a.object, warnings: a.warnings }),
            Err(errs) => {
                let unknown: Vec<String> =
                    errs.iter().filter(|e| e.is_unknown_field()).map(ToString::to_string).collect();
                if !unknown.is_empty() {
                    return Err(ApiError::bad_request(format!("strict decoding error: {}", unknown.join(", "))));
                }
                Err(ApiError::invalid(rt, &name, &errs))
            }
        }
    }

    pub(super) fn run_hooks(&self, req: &AdmissionRequest<'_>) -> Res<()> {
        for hook in &self.hooks {
            hook(req).map_err(|why| ApiError::forbidden(req.resource, req.name, &why))?;
        }
        Ok(())
    }

    pub(super) fn check_namespace(&self, s: &Store, rt: &ResourceType, ns: &str, name: &str) -> Res<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns_id = self.registry.find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("no namespaces"))?;
        let obj = s
            .kinds
            .get(ns_id)
            .and_then(|k| k.objects.get(&(String::new(), ns.to_string())))
            .ok_or_else(|| ApiError::namespace_not_found(ns))?;
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::namespace_terminating(rt, name, ns));
        }
        Ok(())
    }

    pub(super) fn normalize(&self, rt: &ResourceType, obj: &mut Value, ns: &str, url_name: Option<&str>) -> Res<()> {
        let map = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
        let api_version = rt.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != api_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
            Some(_) => {}
            None => {
                map.insert("apiVersion".into(), api_version.into());
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            Some(k) if k != rt.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
            Some(_) => {}
            None => {
                map.insert("kind".into(), rt.kind.clone().into());
            }
        }
        let meta = meta_mut(obj).ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), ns.into());
                }
            }
        } else {
            meta.remove("namespace");
        }
        if let Some(url_name) = url_name {
            match meta.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != url_name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({url_name})"
                    )));
                }
                _ => {
                    meta.insert("name".into(), url_name.into());
                }
            }
        }
        // Secret `type` defaults to Opaque (the real server's defaulting).
        if rt.kind == "Secret"
            && rt.group.is_empty()
            && let Some(map) = obj.as_object_mut()
            && map.get("type").and_then(Value::as_str).is_none_or(str::is_empty)
        {
            map.insert("type".into(), "Opaque".into());
        }
        if rt.kind == "Secret"
            && rt.group.is_empty()
            && let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
            && let Some(sd) = string_data.as_object()
            && let Some(map) = obj.as_object_mut()
        {
            let data = map.entry("data").or_insert_with(|| json!({}));
            if let Some(d) = data.as_object_mut() {
                for (k, v) in sd {
                    let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
                    d.insert(k.clone(), enc.into());
                }
            }
        }
        Ok(())
    }
}
