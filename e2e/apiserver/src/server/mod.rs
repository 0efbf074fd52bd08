//! The server's state and what every request shares; the verbs, HTTP and watch streams live
//! in the modules below, each an `impl Shared` block or free functions of one job.

mod admission;
mod builtin;
mod delete;
mod http;
mod read;
mod reviews;
mod watch;
mod write;

pub use http::router;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kiln_schema::{FieldValidation, Validator};
use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::faults::Injector;
use crate::rbac::{self, RBAC_GROUP};
use crate::resources::{Registry, ResourceType, builtins};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::Store;
use crate::vap;
use crate::{AdmissionHook, Config};

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

/// A successful answer to a verb.
struct Reply {
    /// The HTTP status code (200, or 201 for a create).
    code: u16,
    /// The object (or list, or `Status`) returned.
    body: Value,
    /// `Warning` headers (e.g. unknown fields under `fieldValidation=Warn`).
    warnings: Vec<String>,
}

impl Reply {
    fn ok(body: Value, warnings: Vec<String>) -> Reply {
        Reply { code: 200, body, warnings }
    }

    fn created(body: Value, warnings: Vec<String>) -> Reply {
        Reply { code: 201, body, warnings }
    }
}

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
}
