//! HTTP: routing, authentication, the verbs, and watch streams.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kiln_schema::{FieldValidation, Operation, Validator};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::faults::Injector;
use crate::managed;
use crate::rbac::{self, RBAC_GROUP};
use crate::resources::{AUTHORIZATION_GROUP, Registry, ResourceType, builtins};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, Key, Store};
use crate::vap;
use crate::{AdmissionHook, AdmissionOperation, AdmissionRequest, Config};

/// State shared by all requests.
pub struct Shared {
    registry: Registry,
    validator: Validator,
    store: Mutex<Store>,
    users: HashMap<String, UserInfo>,
    anonymous: Option<UserInfo>,
    hooks: Vec<AdmissionHook>,
    pub(crate) faults: Injector,
    bookmark_interval: Duration,
    drop_epoch: tokio::sync::watch::Sender<u64>,
    counts: Mutex<HashMap<(String, String), u64>>,
    rng: Mutex<u64>,
    log_requests: bool,
    /// Authorize requests with RBAC.
    rbac: bool,
    rbac_ids: rbac::Ids,
    vap_ids: vap::Ids,
    policies: vap::Evaluator,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("types", &self.registry.types.len()).finish_non_exhaustive()
    }
}

type Res<T> = Result<T, ApiError>;

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The parameters of one request.
struct Params {
    q: HashMap<String, String>,
}

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.q.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
    fn field_validation(&self) -> FieldValidation {
        match self.get("fieldValidation") {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        }
    }
    fn selectors(&self, rt: &ResourceType) -> Res<(LabelSelector, FieldSelector)> {
        Ok((
            LabelSelector::parse(self.get("labelSelector").unwrap_or(""))?,
            FieldSelector::parse(self.get("fieldSelector").unwrap_or(""), &rt.kind, &rt.group)?,
        ))
    }
}

/// A write's identity and options.
#[derive(Clone)]
struct WriteCtx<'a> {
    /// managedFields were computed already (server-side apply).
    managed_done: bool,
    user: &'a UserInfo,
    manager: String,
    status: bool,
    fv: FieldValidation,
    dry_run: bool,
}

/// A successful answer: code, body, warnings.
struct Reply(u16, Value, Vec<String>);

impl Shared {
    pub fn new(config: &Config, tokens: Vec<(String, UserInfo)>, crds: Vec<Value>) -> Result<Shared, String> {
        let mut types = builtins();
        for crd in &crds {
            types.extend(ResourceType::from_crd(crd)?);
        }
        let validator = Validator::from_crds(&crds).map_err(|e| e.to_string())?;
        let registry = Registry { types };
        let mut store = Store::new(registry.types.len(), config.event_window);
        let ts = now();
        let ns_id = registry.find("", "v1", "namespaces").ok_or("no namespaces type")?;
        for ns in &config.namespaces {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": ts,
                    "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            store.put(ns_id, (String::new(), ns.clone()), obj);
        }
        if let Some(crd_id) = registry.find("apiextensions.k8s.io", "v1", "customresourcedefinitions") {
            for crd in &crds {
                let mut obj = crd.clone();
                let name = meta_str(crd, "name").to_string();
                if let Some(m) = meta_mut(&mut obj) {
                    m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
                    m.insert("creationTimestamp".into(), ts.clone().into());
                    m.insert("generation".into(), 1.into());
                }
                if let Some(map) = obj.as_object_mut() {
                    map.insert("status".into(), json!({"conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": ts},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": ts}],
                        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(Value::Null),
                        "storedVersions": ["v1alpha1"]}));
                }
                store.put(crd_id, (String::new(), name), obj);
            }
        }
        let find = |group: &str, plural: &str| {
            registry.find(group, "v1", plural).ok_or_else(|| format!("no {plural}.{group} type"))
        };
        let rbac_ids = rbac::Ids {
            roles: find(RBAC_GROUP, "roles")?,
            cluster_roles: find(RBAC_GROUP, "clusterroles")?,
            role_bindings: find(RBAC_GROUP, "rolebindings")?,
            cluster_role_bindings: find(RBAC_GROUP, "clusterrolebindings")?,
        };
        let vap_ids = vap::Ids {
            policies: find(vap::ADMISSION_GROUP, "validatingadmissionpolicies")?,
            bindings: find(vap::ADMISSION_GROUP, "validatingadmissionpolicybindings")?,
            namespaces: ns_id,
        };
        let bootstrap: Vec<Value> =
            serde_saphyr::from_multiple(rbac::BOOTSTRAP).map_err(|e| format!("bootstrap RBAC: {e}"))?;
        for mut obj in bootstrap {
            let id = if obj.get("kind").and_then(Value::as_str) == Some("ClusterRole") {
                rbac_ids.cluster_roles
            } else {
                rbac_ids.cluster_role_bindings
            };
            let name = meta_str(&obj, "name").to_string();
            if let Some(m) = meta_mut(&mut obj) {
                m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
                m.insert("creationTimestamp".into(), ts.clone().into());
            }
            store.put(id, (String::new(), name), obj);
        }
        rbac::aggregate(&mut store, rbac_ids);
        Ok(Shared {
            registry,
            validator,
            store: Mutex::new(store),
            users: tokens.into_iter().collect(),
            anonymous: config.anonymous_user.clone(),
            hooks: config.admission_hooks.clone(),
            faults: Injector::new(config.seed),
            bookmark_interval: config.bookmark_interval.max(Duration::from_millis(10)),
            drop_epoch: tokio::sync::watch::channel(0).0,
            counts: Mutex::new(HashMap::new()),
            rng: Mutex::new(config.seed | 1),
            log_requests: config.log_requests,
            rbac: config.rbac,
            rbac_ids,
            vap_ids,
            policies: vap::Evaluator::default(),
        })
    }

    /// Authorizes a request (always allowed without RBAC).
    fn authorize(&self, user: &UserInfo, a: &rbac::Attributes) -> Res<rbac::Decision> {
        if !self.rbac {
            return Ok(rbac::Decision { allowed: true, reason: String::new() });
        }
        let s = self.lock()?;
        Ok(rbac::authorize(&s, self.rbac_ids, user, a))
    }

    /// Rewrites the aggregated ClusterRoles' rules (after a ClusterRole changed).
    fn reaggregate(&self) {
        if let Ok(mut s) = self.lock() {
            rbac::aggregate(&mut s, self.rbac_ids);
        }
    }

    /// Runs the ValidatingAdmissionPolicies on a request; `Ok(warnings)` or the denial.
    fn run_policies(&self, s: &Store, req: &vap::Request<'_>) -> Res<Vec<String>> {
        self.policies.admit(s, &self.registry, self.vap_ids, req)
    }

    /// Creates (or replaces) the objects of YAML manifests as an administrator would apply them:
    /// through admission (schema, policies) with strict field validation, creating missing
    /// namespaces. Returns the objects of types this server does not serve (skipped), as
    /// `Kind namespace/name`.
    pub fn load_manifests(&self, texts: &[String]) -> Result<Vec<String>, String> {
        let admin = UserInfo::new("system:admin", &["system:masters"]);
        let ctx = WriteCtx {
            managed_done: false,
            user: &admin,
            manager: "kubectl".into(),
            status: false,
            fv: FieldValidation::Strict,
            dry_run: false,
        };
        let ns_id = self.registry.find("", "v1", "namespaces").ok_or("no namespaces type")?;
        let mut skipped = Vec::new();
        for text in texts {
            let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
            let mut objects = Vec::new();
            for doc in docs {
                match doc.get("items").and_then(Value::as_array) {
                    Some(items) if doc.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) => {
                        objects.extend(items.iter().cloned());
                    }
                    _ if doc.is_object() => objects.push(doc),
                    _ => {}
                }
            }
            for obj in objects {
                let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
                let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
                let name = meta_str(&obj, "name").to_string();
                let id =
                    self.registry.types.iter().position(|t| t.group == group && t.version == version && t.kind == kind);
                let ns_of = |rt: &ResourceType| -> String {
                    if !rt.namespaced {
                        return String::new();
                    }
                    match meta_str(&obj, "namespace") {
                        "" => "default".into(),
                        n => n.into(),
                    }
                };
                let Some(id) = id.filter(|i| self.registry.types[*i].kind != "CustomResourceDefinition") else {
                    let ns = meta_str(&obj, "namespace");
                    skipped.push(if ns.is_empty() { format!("{kind} {name}") } else { format!("{kind} {ns}/{name}") });
                    continue;
                };
                let rt = self.rt(id).map_err(|e| e.message)?;
                let ns = ns_of(rt);
                let what = |e: ApiError| format!("{kind} {name}: {}", e.message);
                if !ns.is_empty() && self.inspect_get("namespaces", "", &ns).is_none() {
                    let ns_obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                    self.create(ns_id, "", ns_obj, &ctx).map_err(what)?;
                }
                let exists = self
                    .lock()
                    .map_err(what)?
                    .kinds
                    .get(id)
                    .is_some_and(|k| k.objects.contains_key(&(ns.clone(), name.clone())));
                let mut obj = obj.clone();
                if let Some(m) = meta_mut(&mut obj) {
                    m.remove("resourceVersion");
                }
                if exists {
                    self.put(id, &(ns.clone(), name.clone()), obj, &ctx).map_err(what)?;
                } else {
                    self.create(id, &ns, obj, &ctx).map_err(what)?;
                }
            }
        }
        self.reaggregate();
        Ok(skipped)
    }

    fn lock(&self) -> Res<MutexGuard<'_, Store>> {
        self.store.lock().map_err(|_| ApiError::internal("store lock poisoned"))
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().map(|s| s.rv).unwrap_or(0)
    }

    pub fn compact(&self) {
        if let Ok(mut s) = self.lock() {
            s.compact();
        }
    }

    pub fn drop_watches(&self) {
        self.drop_epoch.send_modify(|e| *e += 1);
    }

    pub fn inspect_get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let id = self.registry.find_loose(resource)?;
        let s = self.lock().ok()?;
        s.kinds.get(id)?.objects.get(&(ns.to_string(), name.to_string())).map(|o| (**o).clone())
    }

    pub fn inspect_list(&self, resource: &str) -> Vec<Value> {
        let Some(id) = self.registry.find_loose(resource) else { return Vec::new() };
        let Ok(s) = self.lock() else { return Vec::new() };
        s.in_namespace(id, None).map(|(_, o)| (**o).clone()).collect()
    }

    pub fn request_count(&self, verb: Option<&str>, resource: Option<&str>) -> u64 {
        let Ok(c) = self.counts.lock() else { return 0 };
        c.iter()
            .filter(|((v, r), _)| verb.is_none_or(|x| x == v) && resource.is_none_or(|x| x == r))
            .map(|(_, n)| n)
            .sum()
    }

    fn count(&self, verb: &str, resource: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry((verb.to_string(), resource.to_string())).or_default() += 1;
        }
    }

    fn random_suffix(&self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut out = String::new();
        if let Ok(mut r) = self.rng.lock() {
            for _ in 0..5 {
                *r ^= *r << 13;
                *r ^= *r >> 7;
                *r ^= *r << 17;
                out.push(ALPHABET[(*r % ALPHABET.len() as u64) as usize] as char);
            }
        }
        out
    }

    fn rt(&self, id: usize) -> Res<&ResourceType> {
        self.registry.types.get(id).ok_or_else(|| ApiError::internal("unknown type"))
    }

    // ---- reads ----

    fn get(&self, id: usize, key: &Key) -> Res<Reply> {
        let rt = self.rt(id)?;
        let s = self.lock()?;
        let obj = s.kinds.get(id).and_then(|k| k.objects.get(key)).ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        Ok(Reply(200, (**obj).clone(), Vec::new()))
    }

    fn list(&self, id: usize, ns: Option<&str>, p: &Params) -> Res<Reply> {
        let rt = self.rt(id)?;
        let (ls, fs) = p.selectors(rt)?;
        let limit = p.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
        let (list_rv, start) = match p.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(token)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                let rv = decoded.get("rv").and_then(Value::as_u64).unwrap_or(0);
                let ns = decoded.get("ns").and_then(Value::as_str).unwrap_or("").to_string();
                let name = decoded.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                (Some(rv), Some((ns, name)))
            }
            None => (None, None),
        };
        let s = self.lock()?;
        let rv = list_rv.unwrap_or(s.rv);
        let mut items = Vec::new();
        let mut more = None;
        for (key, obj) in s.in_namespace(id, ns) {
            if start.as_ref().is_some_and(|st| key <= st) || !ls.matches(obj) || !fs.matches(obj) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                more = items
                    .last()
                    .map(|o: &Value| (meta_str(o, "namespace").to_string(), meta_str(o, "name").to_string()));
                break;
            }
            items.push((**obj).clone());
        }
        drop(s);
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let (Some((ns, name)), Some(m)) = (more, meta.as_object_mut()) {
            let token = json!({"rv": rv, "ns": ns, "name": name}).to_string();
            m.insert("continue".into(), base64::engine::general_purpose::STANDARD.encode(token).into());
        }
        Ok(Reply(
            200,
            json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind), "metadata": meta, "items": items}),
            Vec::new(),
        ))
    }

    // ---- admission ----

    fn admit(&self, rt: &ResourceType, op: Operation, new: Value, old: Option<&Value>, ctx: &WriteCtx) -> Res<Reply> {
        let name = meta_str(&new, "name").to_string();
        if !rt.custom {
            let mut new = new;
            validate_builtin(rt, &name, &mut new, old)?;
            return Ok(Reply(0, new, Vec::new()));
        }
        match self.validator.admit(op, &new, old, ctx.fv) {
            Ok(a) => Ok(Reply(0, a.object, a.warnings)),
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

    fn run_hooks(&self, req: &AdmissionRequest<'_>) -> Res<()> {
        for hook in &self.hooks {
            hook(req).map_err(|why| ApiError::forbidden(req.resource, req.name, &why))?;
        }
        Ok(())
    }

    // ---- writes ----

    fn check_namespace(&self, s: &Store, rt: &ResourceType, ns: &str, name: &str) -> Res<()> {
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

    fn normalize(&self, rt: &ResourceType, obj: &mut Value, ns: &str, url_name: Option<&str>) -> Res<()> {
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

    fn create(&self, id: usize, ns: &str, mut obj: Value, ctx: &WriteCtx) -> Res<Reply> {
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
        let Reply(_, mut obj, mut warnings) = self.admit(rt, Operation::Create, obj, None, ctx)?;
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
            return Ok(Reply(201, obj, warnings));
        }
        let stored = s.put(id, key, obj);
        Ok(Reply(201, (*stored).clone(), warnings))
    }

    /// The common tail of PUT, PATCH and apply (main resource or status).
    fn update(&self, s: &mut Store, id: usize, key: &Key, old: &Value, mut new: Value, ctx: &WriteCtx) -> Res<Reply> {
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
        let Reply(_, mut new, mut warnings) = self.admit(rt, op, new, Some(old), ctx)?;
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
            return Ok(Reply(200, old.clone(), warnings));
        }
        if ctx.dry_run {
            return Ok(Reply(200, new, warnings));
        }
        if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            let last = s.remove(id, key, new).ok_or_else(|| ApiError::not_found(rt, name))?;
            let last = (*last).clone();
            self.maybe_finish_namespace(s, rt, &key.0);
            return Ok(Reply(200, last, warnings));
        }
        let stored = s.put(id, key.clone(), new);
        Ok(Reply(200, (*stored).clone(), warnings))
    }

    fn put(&self, id: usize, key: &Key, body: Value, ctx: &WriteCtx) -> Res<Reply> {
        let rt = self.rt(id)?;
        let mut s = self.lock()?;
        let old =
            s.kinds.get(id).and_then(|k| k.objects.get(key)).cloned().ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        self.update(&mut s, id, key, &old, body, ctx)
    }

    fn patch(&self, id: usize, key: &Key, content_type: &str, body: &[u8], p: &Params, ctx: &WriteCtx) -> Res<Reply> {
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

    fn apply(&self, id: usize, key: &Key, body: &[u8], p: &Params, ctx: &WriteCtx) -> Res<Reply> {
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

    fn delete(&self, id: usize, key: &Key, body: &[u8], ctx: &WriteCtx) -> Res<Reply> {
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
            return Ok(Reply(200, (*old).clone(), warnings));
        }
        let is_namespace = rt.kind == "Namespace" && rt.group.is_empty();
        if !finalizers(&old).is_empty() || is_namespace {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Reply(200, (*old).clone(), warnings));
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
                return Ok(Reply(200, (*still.unwrap_or(stored)).clone(), warnings));
            }
            return Ok(Reply(200, (*stored).clone(), warnings));
        }
        let last = s.remove(id, key, (*old).clone()).ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        self.maybe_finish_namespace(&mut s, rt, &key.0);
        if rt.custom {
            Ok(Reply(200, (*last).clone(), warnings))
        } else {
            Ok(Reply(
                200,
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

    fn maybe_finish_namespace(&self, s: &mut Store, rt: &ResourceType, ns: &str) {
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

    fn delete_collection(&self, id: usize, ns: Option<&str>, p: &Params, ctx: &WriteCtx) -> Res<Reply> {
        let rt = self.rt(id)?;
        let (ls, fs) = p.selectors(rt)?;
        let keys: Vec<Key> = {
            let s = self.lock()?;
            s.in_namespace(id, ns).filter(|(_, o)| ls.matches(o) && fs.matches(o)).map(|(k, _)| k.clone()).collect()
        };
        let mut items = Vec::new();
        for key in keys {
            match self.delete(id, &key, &[], ctx) {
                Ok(Reply(_, obj, _)) if obj.get("kind").and_then(Value::as_str) != Some("Status") => items.push(obj),
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Reply(
            200,
            json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind), "metadata": {}, "items": items}),
            Vec::new(),
        ))
    }
}

/// `Invalid value: "x": a lowercase RFC 1123 subdomain ...`.
fn dns_subdomain_error(n: &str) -> String {
    format!(
        "Invalid value: {n:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
}

/// The checks (and defaults) of built-in types: object names (path segments for RBAC, DNS
/// subdomains otherwise), bindings' immutable `roleRef`, policies' CEL and required fields.
fn validate_builtin(rt: &ResourceType, name: &str, new: &mut Value, old: Option<&Value>) -> Res<()> {
    let n = if name.is_empty() { meta_str(new, "generateName").to_string() } else { name.to_string() };
    let mut errs: Vec<(String, &str, String)> = Vec::new();
    if rt.group == RBAC_GROUP {
        // ValidateRBACName: any path segment.
        let check = n.trim_end_matches('-');
        if check.is_empty() {
            errs.push((
                "metadata.name".into(),
                "FieldValueRequired",
                "Required value: name or generateName is required".into(),
            ));
        } else if check == "." || check == ".." {
            errs.push((
                "metadata.name".into(),
                "FieldValueInvalid",
                format!("Invalid value: {n:?}: may not be '{check}'"),
            ));
        } else {
            for bad in ["/", "%"] {
                if n.contains(bad) {
                    errs.push((
                        "metadata.name".into(),
                        "FieldValueInvalid",
                        format!("Invalid value: {n:?}: may not contain '{bad}'"),
                    ));
                }
            }
        }
        if rt.kind.ends_with("Binding") {
            let role_ref = new.get("roleRef").cloned().unwrap_or(Value::Null);
            let f = |k: &str| role_ref.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            if f("name").is_empty() {
                errs.push(("roleRef.name".into(), "FieldValueRequired", "Required value".into()));
            }
            let kinds: &[&str] =
                if rt.kind == "ClusterRoleBinding" { &["ClusterRole"] } else { &["Role", "ClusterRole"] };
            if !kinds.contains(&f("kind").as_str()) {
                errs.push((
                    "roleRef.kind".into(),
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: {:?}: supported values: {}",
                        f("kind"),
                        kinds.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if let Some(old_ref) = old.and_then(|o| o.get("roleRef"))
                && *old_ref != role_ref
            {
                errs.push((
                    "roleRef".into(),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}: cannot change roleRef",
                        f("apiGroup"),
                        f("kind"),
                        f("name")
                    ),
                ));
            }
        }
    } else if !is_dns_subdomain(n.trim_end_matches('-')) {
        errs.push(("metadata.name".into(), "FieldValueInvalid", dns_subdomain_error(&n)));
    }
    if rt.group == vap::ADMISSION_GROUP && rt.kind == "ValidatingAdmissionPolicy" {
        for (field, expr, e) in vap::compile_errors(new) {
            errs.push((field, "FieldValueInvalid", format!("Invalid value: {expr:?}: compilation failed: {e}")));
        }
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("failurePolicy").or_insert_with(|| "Fail".into());
            if let Some(mc) = spec.get_mut("matchConstraints").and_then(Value::as_object_mut) {
                mc.entry("matchPolicy").or_insert_with(|| "Equivalent".into());
                mc.entry("namespaceSelector").or_insert_with(|| json!({}));
                mc.entry("objectSelector").or_insert_with(|| json!({}));
                if let Some(rules) = mc.get_mut("resourceRules").and_then(Value::as_array_mut) {
                    for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                        r.entry("scope").or_insert_with(|| "*".into());
                    }
                }
            }
        }
        if new.pointer("/spec/matchConstraints").is_none() {
            errs.push(("spec.matchConstraints".into(), "FieldValueRequired", "Required value".into()));
        }
    }
    if rt.group == vap::ADMISSION_GROUP && rt.kind == "ValidatingAdmissionPolicyBinding" {
        if new.pointer("/spec/policyName").and_then(Value::as_str).is_none_or(str::is_empty) {
            errs.push(("spec.policyName".into(), "FieldValueRequired", "Required value".into()));
        }
        let actions: Vec<Value> =
            new.pointer("/spec/validationActions").and_then(Value::as_array).cloned().unwrap_or_default();
        if actions.is_empty() {
            errs.push((
                "spec.validationActions".into(),
                "FieldValueRequired",
                "Required value: at least one validation action is required".into(),
            ));
        }
        for (i, a) in actions.iter().enumerate() {
            if !matches!(a.as_str(), Some("Deny" | "Warn" | "Audit")) {
                errs.push((
                    format!("spec.validationActions[{i}]"),
                    "FieldValueNotSupported",
                    format!("Unsupported value: {}: supported values: \"Audit\", \"Deny\", \"Warn\"", a),
                ));
            }
        }
        let has = |x: &str| actions.iter().any(|a| a.as_str() == Some(x));
        if has("Deny") && has("Warn") {
            errs.push((
                "spec.validationActions".into(),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
                    serde_json::to_string(&actions).unwrap_or_default()
                ),
            ));
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(ApiError::invalid_causes(rt, name, &errs)) }
}

/// The namespace of a request for admission: the object's, or a Namespace's own name (as
/// kube-apiserver's request info has it for requests naming a namespace).
fn request_namespace<'a>(rt: &ResourceType, key: &'a Key) -> &'a str {
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

// ---- HTTP ----

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

fn error_response(e: &ApiError) -> Response {
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
        Ok(Reply(code, body, warnings)) if table && matches!(verb, "get" | "list") => {
            json_response(code, &crate::table::to_table(rt, &body, p.get("includeObject")), &warnings)
        }
        Ok(Reply(code, body, warnings)) => json_response(code, &body, &warnings),
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

/// `POST /apis/authorization.k8s.io/v1/{selfsubjectaccessreviews, subjectaccessreviews,
/// selfsubjectrulesreviews}`: answered from RBAC (everything allowed without it), never stored.
fn access_review(shared: &Shared, user: &UserInfo, review: &str, content_type: &str, body: &[u8]) -> Res<Value> {
    let mut obj: Value = if content_type.starts_with(crate::protobuf::CONTENT_TYPE) {
        crate::protobuf::decode(body).ok_or_else(|| ApiError::unsupported_media_type(content_type))?
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding body: {e}")))?
    };
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match review {
        "selfsubjectaccessreviews" | "subjectaccessreviews" => {
            let subject = if review == "subjectaccessreviews" {
                let strs = |k: &str| -> Vec<String> {
                    spec.get(k)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default()
                };
                let username = spec.get("user").and_then(Value::as_str).unwrap_or("").to_string();
                let groups = strs("groups");
                if username.is_empty() && groups.is_empty() {
                    return Err(review_invalid(
                        "SubjectAccessReview",
                        "spec.user",
                        "Invalid value: \"\": at least one of user or group must be specified",
                    ));
                }
                UserInfo { username, uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").to_string(), groups }
            } else {
                user.clone()
            };
            let kind = if review == "subjectaccessreviews" { "SubjectAccessReview" } else { "SelfSubjectAccessReview" };
            match (spec.get("resourceAttributes").is_some(), spec.get("nonResourceAttributes").is_some()) {
                (true, true) => {
                    return Err(review_invalid(
                        kind,
                        "spec.nonResourceAttributes",
                        "Invalid value: \"null\": cannot be specified in combination with resourceAttributes",
                    ));
                }
                (false, false) => {
                    return Err(review_invalid(
                        kind,
                        "spec.resourceAttributes",
                        "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    ));
                }
                _ => {}
            }
            let a = rbac::review_attributes(&spec);
            let d = shared.authorize(&subject, &a)?;
            let mut st = json!({"allowed": d.allowed});
            if !d.reason.is_empty()
                && let Some(m) = st.as_object_mut()
            {
                m.insert("reason".into(), d.reason.into());
            }
            st
        }
        "selfsubjectrulesreviews" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            if shared.rbac {
                let s = shared.lock()?;
                rbac::rules_review(&s, shared.rbac_ids, user, ns)
            } else {
                json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": false})
            }
        }
        _ => return Err(ApiError::no_route(&format!("/apis/authorization.k8s.io/v1/{review}"))),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
        m.entry("metadata").or_insert_with(|| json!({"creationTimestamp": null}));
    }
    Ok(obj)
}

/// 422 for an access review that asks nothing answerable.
fn review_invalid(kind: &str, field: &str, body: &str) -> ApiError {
    let rt = ResourceType {
        group: AUTHORIZATION_GROUP.into(),
        version: "v1".into(),
        plural: format!("{}s", kind.to_lowercase()),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced: false,
        status_subresource: false,
        short_names: Vec::new(),
        categories: Vec::new(),
        custom: false,
        printer_columns: Vec::new(),
        schema: None,
    };
    ApiError::invalid_causes(&rt, "", &[(field.to_string(), "FieldValueInvalid", body.to_string())])
}

/// The answer to `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: the requesting
/// identity, as the real server returns it (201, `status.userInfo`). The request body is not
/// needed: a SelfSubjectReview has no spec.
fn self_subject_review(user: &UserInfo) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": now()},
        "status": {"userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups}},
    })
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

// ---- watch ----

/// Table output of watch events (`kubectl get -w`): the type and `includeObject`.
type AsTable = Option<(ResourceType, Option<String>)>;

/// An event line for an object, as a one-row `Table` when the watch asked for Tables.
fn object_event(kind: &str, obj: &Value, as_table: &AsTable) -> Bytes {
    match as_table {
        Some((rt, include)) => event_line(kind, &crate::table::to_table(rt, obj, include.as_deref())),
        None => event_line(kind, obj),
    }
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Which event a watcher with selectors sees for a change (selector transitions become
/// ADDED/DELETED, like the watch cache).
fn filtered(ev: &Event, ns: Option<&str>, ls: &LabelSelector, fs: &FieldSelector) -> Option<&'static str> {
    if ns.is_some_and(|n| n != meta_str(&ev.object, "namespace")) {
        return None;
    }
    let m = |o: &Value| ls.matches(o) && fs.matches(o);
    match ev.kind {
        EventType::Modified => {
            let now = m(&ev.object);
            let before = ev.old.as_deref().is_some_and(m);
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
        k => m(&ev.object).then_some(k.as_str()),
    }
}

fn watch(shared: Arc<Shared>, id: usize, ns: Option<String>, p: &Params, table: bool) -> Response {
    let Ok(rt) = shared.rt(id).cloned() else { return error_response(&ApiError::internal("type")) };
    let as_table: AsTable = table.then(|| (rt.clone(), p.get("includeObject").map(str::to_string)));
    let (ls, fs) = match p.selectors(&rt) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let bookmarks = p.flag("allowWatchBookmarks");
    let send_initial = p.flag("sendInitialEvents");
    let timeout = p
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let rv_param = p.get("resourceVersion").unwrap_or("").to_string();
    let mut initial: Vec<Bytes> = Vec::new();
    let mut expired = None;
    let rx: broadcast::Receiver<Arc<Event>>;
    let start_rv;
    {
        let Ok(s) = shared.lock() else { return error_response(&ApiError::internal("lock")) };
        let Some(kind) = s.kinds.get(id) else { return error_response(&ApiError::internal("type")) };
        rx = kind.tx.subscribe();
        start_rv = s.rv;
        if send_initial || rv_param.is_empty() || rv_param == "0" {
            for (_, obj) in s.in_namespace(id, ns.as_deref()) {
                if ls.matches(obj) && fs.matches(obj) {
                    initial.push(object_event("ADDED", obj, &as_table));
                }
            }
            if send_initial && bookmarks {
                initial.push(event_line("BOOKMARK", &json!({"apiVersion": rt.api_version(), "kind": rt.kind,
                    "metadata": {"resourceVersion": s.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}})));
            }
        } else {
            let from: u64 = rv_param.parse().unwrap_or(0);
            if from < kind.compacted {
                expired = Some(ApiError::expired(from, kind.compacted));
            } else {
                for ev in kind.log.iter().filter(|e| e.rv > from) {
                    if let Some(t) = filtered(ev, ns.as_deref(), &ls, &fs) {
                        initial.push(object_event(t, &ev.object, &as_table));
                    }
                }
            }
        }
    }
    let (tx, out_rx) = mpsc::channel::<Bytes>(256);
    let interval = shared.bookmark_interval;
    let drop_after = shared.faults.drop_watches_after();
    let mut epoch = shared.drop_epoch.subscribe();
    tokio::spawn(async move {
        if let Some(e) = expired {
            let _ = tx.send(event_line("ERROR", &e.to_status())).await;
            return;
        }
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut rx = rx;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let dropper = tokio::time::sleep(drop_after.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(dropper);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= start_rv { continue; }
                        if let Some(t) = filtered(&ev, ns.as_deref(), &ls, &fs)
                            && tx.send(object_event(t, &ev.object, &as_table)).await.is_err() {
                            return;
                        }
                    }
                    // Lagged or closed: end the watch; the client re-watches from its last version.
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let Ok(rv) = shared.lock().map(|s| s.rv) else { return };
                    // Everything up to `rv` is already queued: deliver it before the bookmark.
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                if ev.rv <= start_rv { continue; }
                                        if let Some(t) = filtered(&ev, ns.as_deref(), &ls, &fs)
                                    && tx.send(object_event(t, &ev.object, &as_table)).await.is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(_) => return,
                        }
                    }
                    let bm = json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"resourceVersion": rv.to_string()}});
                    if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = &mut dropper => return,
                _ = epoch.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        futures::stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx)) },
        );
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}
