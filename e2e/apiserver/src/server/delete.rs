//! Deletes: finalizers, graceful deletion, namespace cascades, and deletecollection.

use std::sync::Arc;

use serde_json::{Value, json};

use super::write::request_namespace;
use super::{Params, Reply, Res, Shared, WriteCtx, finalizers, meta_mut, meta_str, now};
use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::store::{Key, Store};
use crate::vap;
use crate::{AdmissionOperation, AdmissionRequest};

impl Shared {
    pub(super) fn delete(&self, id: usize, key: &Key, body: &[u8], ctx: &WriteCtx) -> Res<Reply> {
        let rt = self.rt(id)?;
        let opts: Value =
            if body.is_empty() { json!({}) } else { serde_json::from_slice(body).unwrap_or_else(|_| json!({})) };
        let mut s = self.lock()?;
        let old =
            s.kinds.get(id).and_then(|k| k.objects.get(key)).cloned().ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                rt,
                &key.1,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if let Some(rv) = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str)
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                rt,
                &key.1,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        let warnings = self.run_policies(
            &s,
            &vap::Request {
                operation: "DELETE",
                rt,
                subresource: "",
                namespace: request_namespace(rt, key),
                name: &key.1,
                user: ctx.user,
                object: None,
                old_object: Some(&old),
                dry_run: ctx.dry_run,
            },
        )?;
        self.run_hooks(&AdmissionRequest {
            operation: AdmissionOperation::Delete,
            resource: rt,
            subresource: "",
            namespace: rt.namespaced.then_some(key.0.as_str()),
            name: &key.1,
            user: ctx.user,
            object: None,
            old_object: Some(&old),
        })?;
        if ctx.dry_run {
            return Ok(Reply::ok((*old).clone(), warnings));
        }
        let is_namespace = rt.kind == "Namespace" && rt.group.is_empty();
        if !finalizers(&old).is_empty() || is_namespace {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Reply::ok((*old).clone(), warnings));
            }
            let mut new = (*old).clone();
            if let Some(m) = meta_mut(&mut new) {
                m.insert("deletionTimestamp".into(), now().into());
                m.insert("deletionGracePeriodSeconds".into(), 0.into());
            }
            if is_namespace && let Some(m) = new.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Terminating"}));
            }
            let stored = s.put(id, key.clone(), new);
            if is_namespace {
                self.cascade_namespace(&mut s, &key.1);
                let still = s.kinds.get(id).and_then(|k| k.objects.get(key)).cloned();
                return Ok(Reply::ok((*still.unwrap_or(stored)).clone(), warnings));
            }
            return Ok(Reply::ok((*stored).clone(), warnings));
        }
        let last = s.remove(id, key, (*old).clone()).ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        self.maybe_finish_namespace(&mut s, rt, &key.0);
        if rt.custom {
            Ok(Reply::ok((*last).clone(), warnings))
        } else {
            Ok(Reply::ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": key.1, "group": rt.group, "kind": rt.plural, "uid": meta_str(&old, "uid")}}),
                warnings,
            ))
        }
    }

    /// Deletes (or marks for deletion) everything in a terminating namespace.
    fn cascade_namespace(&self, s: &mut Store, ns: &str) {
        for (id, rt) in self.registry.types.iter().enumerate() {
            if !rt.namespaced {
                continue;
            }
            let objs: Vec<(Key, Arc<Value>)> =
                s.in_namespace(id, Some(ns)).map(|(k, v)| (k.clone(), v.clone())).collect();
            for (key, obj) in objs {
                if finalizers(&obj).is_empty() {
                    s.remove(id, &key, (*obj).clone());
                } else if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    let mut new = (*obj).clone();
                    if let Some(m) = meta_mut(&mut new) {
                        m.insert("deletionTimestamp".into(), now().into());
                        m.insert("deletionGracePeriodSeconds".into(), 0.into());
                    }
                    s.put(id, key, new);
                }
            }
        }
        self.finish_namespace(s, ns);
    }

    pub(super) fn maybe_finish_namespace(&self, s: &mut Store, rt: &ResourceType, ns: &str) {
        if rt.namespaced && !ns.is_empty() {
            self.finish_namespace(s, ns);
        }
    }

    /// Removes a terminating namespace once it is empty (the namespace controller's job).
    fn finish_namespace(&self, s: &mut Store, ns: &str) {
        let Some(ns_id) = self.registry.find("", "v1", "namespaces") else { return };
        let key = (String::new(), ns.to_string());
        let Some(obj) = s.kinds.get(ns_id).and_then(|k| k.objects.get(&key)).cloned() else { return };
        if obj.pointer("/metadata/deletionTimestamp").is_none() || !finalizers(&obj).is_empty() {
            return;
        }
        let empty = self
            .registry
            .types
            .iter()
            .enumerate()
            .all(|(id, t)| !t.namespaced || s.in_namespace(id, Some(ns)).next().is_none());
        if empty {
            let mut last = (*obj).clone();
            if let Some(m) = last.get_mut("spec").and_then(Value::as_object_mut) {
                m.insert("finalizers".into(), json!([]));
            }
            s.remove(ns_id, &key, last);
        }
    }

    pub(super) fn delete_collection(&self, id: usize, ns: Option<&str>, p: &Params, ctx: &WriteCtx) -> Res<Reply> {
        let rt = self.rt(id)?;
        let (ls, fs) = p.selectors(rt)?;
        let keys: Vec<Key> = {
            let s = self.lock()?;
            s.in_namespace(id, ns).filter(|(_, o)| ls.matches(o) && fs.matches(o)).map(|(k, _)| k.clone()).collect()
        };
        let mut items = Vec::new();
        for key in keys {
            match self.delete(id, &key, &[], ctx) {
                Ok(Reply { body: obj, .. }) if obj.get("kind").and_then(Value::as_str) != Some("Status") => {
                    items.push(obj)
                }
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::ok(
            json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind), "metadata": {}, "items": items}),
            Vec::new(),
        ))
    }
}
