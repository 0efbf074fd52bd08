//! Writes: create, update, and the three ways of reaching update (PUT, patch, server-side apply).

use kiln_schema::Operation;
use serde_json::{Value, json};

use super::admission::Admitted;
use super::{Params, Reply, Res, Shared, WriteCtx, finalizers, meta_mut, meta_str, now};
use crate::error::ApiError;
use crate::managed;
use crate::rbac::{self};
use crate::resources::ResourceType;
use crate::store::{Key, Store};
use crate::vap;
use crate::{AdmissionOperation, AdmissionRequest};

impl Shared {
    pub(super) fn create(&self, id: usize, ns: &str, mut obj: Value, ctx: &WriteCtx) -> Res<Reply> {
        let rt = self.rt(id)?;
        self.normalize(rt, &mut obj, ns, None)?;
        let mut s = self.lock()?;
        // The request's name (admission's): empty when the server generates it.
        let generated = meta_str(&obj, "name").is_empty();
        {
            let meta = meta_mut(&mut obj).ok_or_else(|| ApiError::bad_request("metadata"))?;
            for k in ["uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation", "selfLink"] {
                meta.remove(k);
            }
            if !ctx.managed_done {
                meta.remove("managedFields");
            }
            if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                let gen_name = meta.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
                if gen_name.is_empty() {
                    return Err(ApiError::invalid_field(
                        rt,
                        "",
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                    ));
                }
                let mut name = format!("{gen_name}{}", self.random_suffix());
                for _ in 0..8 {
                    if !s.kinds.get(id).is_some_and(|k| k.objects.contains_key(&(ns.to_string(), name.clone()))) {
                        break;
                    }
                    name = format!("{gen_name}{}", self.random_suffix());
                }
                meta.insert("name".into(), name.into());
            }
        }
        if rt.kind == "Namespace" && rt.group.is_empty() {
            if let Some(map) = obj.as_object_mut() {
                map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
                map.insert("status".into(), json!({"phase": "Active"}));
            }
            let name = meta_str(&obj, "name").to_string();
            if let Some(m) = meta_mut(&mut obj) {
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), name.into());
                }
            }
        }
        let name = meta_str(&obj, "name").to_string();
        let key = (if rt.namespaced { ns.to_string() } else { String::new() }, name.clone());
        let Admitted { object: mut obj, mut warnings } = self.admit(rt, Operation::Create, obj, None, ctx)?;
        if rt.status_subresource
            && rt.kind != "Namespace"
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        self.check_namespace(&s, rt, ns, &name)?;
        // Like the registry's BeforeCreate: identity before validating admission.
        if let Some(meta) = meta_mut(&mut obj) {
            meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
            meta.insert("creationTimestamp".into(), now().into());
            if rt.custom {
                meta.insert("generation".into(), 1.into());
            }
        }
        warnings.extend(self.run_policies(
            &s,
            &vap::Request {
                operation: "CREATE",
                rt,
                subresource: "",
                namespace: if rt.namespaced { ns } else { "" },
                name: if generated { "" } else { &name },
                user: ctx.user,
                object: Some(&obj),
                old_object: None,
                dry_run: ctx.dry_run,
            },
        )?);
        self.run_hooks(&AdmissionRequest {
            operation: AdmissionOperation::Create,
            resource: rt,
            subresource: "",
            namespace: rt.namespaced.then_some(ns),
            name: &name,
            user: ctx.user,
            object: Some(&obj),
            old_object: None,
        })?;
        if s.kinds.get(id).is_some_and(|k| k.objects.contains_key(&key)) {
            return Err(ApiError::already_exists(rt, &name));
        }
        let ts = now();
        if !ctx.managed_done {
            managed::Write {
                manager: &ctx.manager,
                subresource: "",
                api_version: &rt.api_version(),
                now: &ts,
                status_separate: rt.status_subresource,
            }
            .update(None, &mut obj);
        }
        if ctx.dry_run {
            return Ok(Reply::created(obj, warnings));
        }
        let stored = s.put(id, key, obj);
        Ok(Reply::created((*stored).clone(), warnings))
    }

    /// The common tail of PUT, PATCH and apply (main resource or status).
    pub(super) fn update(
        &self,
        s: &mut Store,
        id: usize,
        key: &Key,
        old: &Value,
        mut new: Value,
        ctx: &WriteCtx,
    ) -> Res<Reply> {
        let rt = self.rt(id)?;
        self.normalize(rt, &mut new, &key.0, Some(&key.1))?;
        let name = key.1.as_str();
        let sent_rv = meta_str(&new, "resourceVersion").to_string();
        if !sent_rv.is_empty() && sent_rv != meta_str(old, "resourceVersion") {
            return Err(ApiError::stale(rt, name));
        }
        // Identity and server-owned metadata come from the stored object.
        {
            let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
            let meta = meta_mut(&mut new).ok_or_else(|| ApiError::bad_request("metadata"))?;
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old_meta.get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
            if !ctx.managed_done {
                match old_meta.get("managedFields") {
                    Some(v) => meta.insert("managedFields".into(), v.clone()),
                    None => meta.remove("managedFields"),
                };
            }
        }
        if rt.status_subresource {
            if ctx.status {
                let status = new.get("status").cloned();
                let managed_fields = new.pointer("/metadata/managedFields").cloned();
                new = old.clone();
                if let Some(m) = new.as_object_mut() {
                    match status {
                        Some(st) => m.insert("status".into(), st),
                        None => m.remove("status"),
                    };
                }
                if let (Some(mf), Some(meta)) = (managed_fields, meta_mut(&mut new)) {
                    meta.insert("managedFields".into(), mf);
                }
            } else if let Some(m) = new.as_object_mut() {
                match old.get("status") {
                    Some(st) => m.insert("status".into(), st.clone()),
                    None => m.remove("status"),
                };
            }
        }
        let op = if ctx.status { Operation::StatusUpdate } else { Operation::Update };
        let managed_after = new.pointer("/metadata/managedFields").cloned();
        let Admitted { object: mut new, mut warnings } = self.admit(rt, op, new, Some(old), ctx)?;
        if ctx.status
            && ctx.managed_done
            && let Some(meta) = meta_mut(&mut new)
        {
            match managed_after {
                Some(mf) => meta.insert("managedFields".into(), mf),
                None => meta.remove("managedFields"),
            };
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let before = finalizers(old);
            if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
                return Err(ApiError::invalid_field(
                    rt,
                    name,
                    "metadata.finalizers",
                    "FieldValueForbidden",
                    &format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{added:?}}}"
                    ),
                ));
            }
        }
        warnings.extend(self.run_policies(
            s,
            &vap::Request {
                operation: "UPDATE",
                rt,
                subresource: if ctx.status { "status" } else { "" },
                namespace: request_namespace(rt, key),
                name,
                user: ctx.user,
                object: Some(&new),
                old_object: Some(old),
                dry_run: ctx.dry_run,
            },
        )?);
        self.run_hooks(&AdmissionRequest {
            operation: AdmissionOperation::Update,
            resource: rt,
            subresource: if ctx.status { "status" } else { "" },
            namespace: rt.namespaced.then_some(key.0.as_str()),
            name,
            user: ctx.user,
            object: Some(&new),
            old_object: Some(old),
        })?;
        let ts = now();
        if !ctx.managed_done {
            managed::Write {
                manager: &ctx.manager,
                subresource: if ctx.status { "status" } else { "" },
                api_version: &rt.api_version(),
                now: &ts,
                status_separate: rt.status_subresource,
            }
            .update(Some(old), &mut new);
        }
        if rt.custom && spec_of(&new, rt) != spec_of(old, rt) {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            if let Some(m) = meta_mut(&mut new) {
                m.insert("generation".into(), (generation + 1).into());
            }
        }
        if without_times(&new) == without_times(old) {
            return Ok(Reply::ok(old.clone(), warnings));
        }
        if ctx.dry_run {
            return Ok(Reply::ok(new, warnings));
        }
        if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            let last = s.remove(id, key, new).ok_or_else(|| ApiError::not_found(rt, name))?;
            let last = (*last).clone();
            self.maybe_finish_namespace(s, rt, &key.0);
            return Ok(Reply::ok(last, warnings));
        }
        let stored = s.put(id, key.clone(), new);
        Ok(Reply::ok((*stored).clone(), warnings))
    }

    pub(super) fn put(&self, id: usize, key: &Key, body: Value, ctx: &WriteCtx) -> Res<Reply> {
        let rt = self.rt(id)?;
        let mut s = self.lock()?;
        let old =
            s.kinds.get(id).and_then(|k| k.objects.get(key)).cloned().ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        self.update(&mut s, id, key, &old, body, ctx)
    }

    pub(super) fn patch(
        &self,
        id: usize,
        key: &Key,
        content_type: &str,
        body: &[u8],
        p: &Params,
        ctx: &WriteCtx,
    ) -> Res<Reply> {
        let rt = self.rt(id)?;
        let ct = content_type.split(';').next().unwrap_or("").trim();
        if ct == "application/apply-patch+yaml" {
            return self.apply(id, key, body, p, ctx);
        }
        let mut s = self.lock()?;
        let old =
            s.kinds.get(id).and_then(|k| k.objects.get(key)).cloned().ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        let mut doc = (*old).clone();
        let parse = |b: &[u8]| {
            serde_json::from_slice::<Value>(b).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
        };
        match ct {
            "application/merge-patch+json" => json_patch::merge(&mut doc, &parse(body)?),
            "application/strategic-merge-patch+json" if !rt.custom => {
                let mut patch = parse(body)?;
                strip_directives(&mut patch);
                json_patch::merge(&mut doc, &patch);
            }
            "application/json-patch+json" => {
                let patch: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
                json_patch::patch(&mut doc, &patch).map_err(|e| {
                    ApiError::invalid_field(
                        rt,
                        &key.1,
                        "<nil>",
                        "FieldValueInvalid",
                        &format!("the server rejected our request due to an error in our request: {e}"),
                    )
                })?;
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        // A resourceVersion in a patch is a precondition; one copied from the old object is not.
        self.update(&mut s, id, key, &old, doc, ctx)
    }

    pub(super) fn apply(&self, id: usize, key: &Key, body: &[u8], p: &Params, ctx: &WriteCtx) -> Res<Reply> {
        let rt = self.rt(id)?;
        if p.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::bad_request("PATCH, fieldManager: Required value: is required for apply patch"));
        }
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("apply patch is not UTF-8"))?;
        let applied: Value =
            serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("apply patch must be an object"));
        }
        let mut applied = applied;
        self.normalize(rt, &mut applied, &key.0, Some(&key.1))?;
        let force = p.flag("force");
        let ts = now();
        let api_version = rt.api_version();
        let w = managed::Write {
            manager: &ctx.manager,
            subresource: if ctx.status { "status" } else { "" },
            api_version: &api_version,
            now: &ts,
            status_separate: rt.status_subresource,
        };
        let mut s = self.lock()?;
        let old = s.kinds.get(id).and_then(|k| k.objects.get(key)).cloned();
        let merged = w.apply(old.as_deref(), &applied, force).map_err(|c| ApiError::apply_conflicts(rt, &key.1, &c))?;
        match old {
            Some(old) => self.update(&mut s, id, key, &old, merged, &WriteCtx { managed_done: true, ..ctx.clone() }),
            None if ctx.status => Err(ApiError::not_found(rt, &key.1)),
            None => {
                // A patch that creates needs `create` too (kube-apiserver's patch handler).
                if self.rbac {
                    let a = rbac::Attributes {
                        verb: "create".into(),
                        resource_request: true,
                        path: String::new(),
                        group: rt.group.clone(),
                        version: rt.version.clone(),
                        resource: rt.plural.clone(),
                        subresource: String::new(),
                        namespace: key.0.clone(),
                        name: key.1.clone(),
                    };
                    let d = rbac::authorize(&s, self.rbac_ids, ctx.user, &a);
                    if !d.allowed {
                        return Err(rbac::forbidden(ctx.user, &a, &d.reason));
                    }
                }
                drop(s);
                self.create(id, &key.0, merged, &WriteCtx { managed_done: true, ..ctx.clone() })
            }
        }
    }
}

/// The namespace of a request for admission: the object's, or a Namespace's own name (as
/// kube-apiserver's request info has it for requests naming a namespace).
pub(super) fn request_namespace<'a>(rt: &ResourceType, key: &'a Key) -> &'a str {
    if rt.group.is_empty() && rt.plural == "namespaces" { &key.1 } else { &key.0 }
}

/// What `metadata.generation` tracks: everything but metadata (and status, with the subresource).
fn spec_of(obj: &Value, rt: &ResourceType) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if rt.status_subresource {
            m.remove("status");
        }
    }
    v
}

/// The object without resourceVersion and managedFields times (to detect no-op writes).
fn without_times(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
            for e in entries {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    v
}

/// Strategic merge patch directives (`$patch`, `$retainKeys`, `$setElementOrder/...`,
/// `$deleteFromPrimitiveList/...`) are dropped; the rest applies as a JSON merge patch.
fn strip_directives(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, _| !k.starts_with('$'));
        for c in m.values_mut() {
            strip_directives(c);
        }
    }
}
