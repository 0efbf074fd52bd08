//! ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) evaluation, after kube-apiserver's
//! `validating` admission plugin: policies whose `matchConstraints` match the request (resource
//! rules with operations, groups, versions, resources incl. subresources, scope and resource names;
//! namespace and object selectors; exclude rules), their bindings' `matchResources`, parameters
//! (`paramKind` + `paramRef`), `matchConditions`, `variables`, `validations` with `message`,
//! `messageExpression` and `reason`, `failurePolicy`, and the bindings' `validationActions`
//! (Deny → the real 4xx Status, Warn → a `Warning` header, Audit → nothing: no audit log here).
//! CEL is kube-cel's (see `celenv`); `authorizer` is not available.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube_cel::cel::{Program, Value as Cel};
use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::celenv::{self, map, string};
use crate::error::ApiError;
use crate::rbac::selector_matches;
use crate::resources::{Registry, ResourceType};
use crate::store::Store;

/// The group of the admission configuration types (never subject to policies themselves).
pub const ADMISSION_GROUP: &str = "admissionregistration.k8s.io";

/// One admission request, as the policies see it.
pub struct Request<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// The resource type.
    pub rt: &'a ResourceType,
    /// `status` or empty.
    pub subresource: &'a str,
    /// The request's namespace (empty for cluster-scoped objects).
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// Who asks.
    pub user: &'a UserInfo,
    /// The object after the change; `None` on DELETE.
    pub object: Option<&'a Value>,
    /// The object before the change; `None` on CREATE.
    pub old_object: Option<&'a Value>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The ids of the types policies read.
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    /// ValidatingAdmissionPolicies.
    pub policies: usize,
    /// ValidatingAdmissionPolicyBindings.
    pub bindings: usize,
    /// Namespaces.
    pub namespaces: usize,
}

type Compiled = Result<Program, String>;

struct Validation {
    expression: String,
    program: Compiled,
    message: Option<String>,
    message_expression: Option<Compiled>,
    reason: Option<String>,
}

/// A policy's programs, compiled once per resourceVersion.
struct Policy {
    resource_version: String,
    match_conditions: Vec<(String, Compiled)>,
    variables: Vec<(String, String, Compiled)>,
    validations: Vec<Validation>,
}

fn text(v: &Value, ptr: &str) -> String {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("").to_string()
}

fn list<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

impl Policy {
    fn compile(policy: &Value) -> Policy {
        let opt = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Policy {
            resource_version: text(policy, "/metadata/resourceVersion"),
            match_conditions: list(policy, "/spec/matchConditions")
                .iter()
                .map(|m| {
                    let e = text(m, "/expression");
                    let p = celenv::compile(&e);
                    (e, p)
                })
                .collect(),
            variables: list(policy, "/spec/variables")
                .iter()
                .map(|v| {
                    let e = text(v, "/expression");
                    let p = celenv::compile(&e);
                    (text(v, "/name"), e, p)
                })
                .collect(),
            validations: list(policy, "/spec/validations")
                .iter()
                .map(|v| {
                    let expression = text(v, "/expression");
                    Validation {
                        program: celenv::compile(&expression),
                        expression,
                        message: opt(v, "message"),
                        message_expression: opt(v, "messageExpression").map(|m| celenv::compile(&m)),
                        reason: opt(v, "reason"),
                    }
                })
                .collect(),
        }
    }
}

/// Parse errors of a policy's expressions (`field path`, expression, error), for validation on
/// write: kube-apiserver refuses policies whose CEL does not compile.
pub fn compile_errors(policy: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut check = |field: String, expr: &str| {
        if let Err(e) = celenv::compile(expr) {
            out.push((field, expr.to_string(), e));
        }
    };
    for (i, m) in list(policy, "/spec/matchConditions").iter().enumerate() {
        check(format!("spec.matchConditions[{i}].expression"), &text(m, "/expression"));
    }
    for (i, v) in list(policy, "/spec/variables").iter().enumerate() {
        check(format!("spec.variables[{i}].expression"), &text(v, "/expression"));
    }
    for (i, v) in list(policy, "/spec/validations").iter().enumerate() {
        check(format!("spec.validations[{i}].expression"), &text(v, "/expression"));
        if let Some(me) = v.get("messageExpression").and_then(Value::as_str) {
            check(format!("spec.validations[{i}].messageExpression"), me);
        }
    }
    out
}

/// Evaluates the policies; keeps compiled policies between requests.
#[derive(Default)]
pub struct Evaluator {
    cache: Mutex<HashMap<String, Arc<Policy>>>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator").finish_non_exhaustive()
    }
}

/// What one (policy, binding, params) evaluation decided.
enum Action {
    Admit,
    /// Denied: reason (empty: Invalid) and message.
    Deny(String, String),
}

struct Denial {
    policy: String,
    binding: Option<String>,
    reason: String,
    message: String,
}

/// `utilerrors.NewAggregate(errs).Error()`.
fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn fail_policy_is_ignore(policy: &Value) -> bool {
    policy.pointer("/spec/failurePolicy").and_then(Value::as_str) == Some("Ignore")
}

impl Evaluator {
    fn compiled(&self, name: &str, policy: &Value) -> Arc<Policy> {
        let rv = text(policy, "/metadata/resourceVersion");
        if let Ok(mut cache) = self.cache.lock() {
            if let Some(p) = cache.get(name).filter(|p| p.resource_version == rv) {
                return p.clone();
            }
            let p = Arc::new(Policy::compile(policy));
            cache.insert(name.to_string(), p.clone());
            return p;
        }
        Arc::new(Policy::compile(policy))
    }

    /// Runs every matching policy. `Ok(warnings)` (from `Warn` bindings) or the first denial.
    pub fn admit(
        &self,
        store: &Store,
        registry: &Registry,
        ids: Ids,
        req: &Request<'_>,
    ) -> Result<Vec<String>, ApiError> {
        let mut warnings = Vec::new();
        if req.rt.group == ADMISSION_GROUP {
            return Ok(warnings);
        }
        let Some(policies) = store.kinds.get(ids.policies).filter(|k| !k.objects.is_empty()) else {
            return Ok(warnings);
        };
        let mut bindings: HashMap<String, Vec<&Value>> = HashMap::new();
        for (_, b) in store.in_namespace(ids.bindings, None) {
            bindings.entry(text(b, "/spec/policyName")).or_default().push(b);
        }
        let namespace_obj = if req.namespace.is_empty() || is_namespace(req.rt) {
            None
        } else {
            store.kinds.get(ids.namespaces).and_then(|k| k.objects.get(&(String::new(), req.namespace.to_string())))
        };
        let ns_labels = if is_namespace(req.rt) {
            req.object.or(req.old_object).and_then(|o| o.pointer("/metadata/labels")).cloned()
        } else {
            namespace_obj.and_then(|n| n.pointer("/metadata/labels")).cloned()
        };
        let mut denials: Vec<Denial> = Vec::new();
        let config_error = |denials: &mut Vec<Denial>, policy: &Value, binding: Option<&Value>, err: String| {
            if fail_policy_is_ignore(policy) {
                return;
            }
            let message = match binding {
                None => format!("failed to configure policy: {err}"),
                Some(_) => format!("failed to configure binding: {err}"),
            };
            denials.push(Denial {
                policy: text(policy, "/metadata/name"),
                binding: binding.map(|b| text(b, "/metadata/name")),
                reason: String::new(),
                message,
            });
        };
        let mut request_cel: Option<Cel> = None;
        let mut vars: Option<(Cel, Cel, Cel)> = None;
        for ((_, pname), policy) in &policies.objects {
            let Some(constraints) = policy.pointer("/spec/matchConstraints") else {
                continue;
            };
            match matches(constraints, req, ns_labels.as_ref()) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    config_error(&mut denials, policy, None, e);
                    continue;
                }
            }
            let Some(policy_bindings) = bindings.get(pname.as_str()) else { continue };
            let compiled = self.compiled(pname, policy);
            for binding in policy_bindings {
                if let Some(mr) = binding.pointer("/spec/matchResources").filter(|m| m.is_object()) {
                    match matches(mr, req, ns_labels.as_ref()) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            config_error(&mut denials, policy, Some(binding), e);
                            continue;
                        }
                    }
                }
                let params = match collect_params(store, registry, policy, binding, req.namespace) {
                    Ok(p) => p,
                    Err(e) => {
                        config_error(&mut denials, policy, Some(binding), e);
                        continue;
                    }
                };
                let request = request_cel.get_or_insert_with(|| request_to_cel(req)).clone();
                let (object, old_object, ns_object) = vars
                    .get_or_insert_with(|| {
                        let schema = req.rt.schema.as_ref();
                        (
                            req.object.map_or(Cel::Null, |o| celenv::object_to_cel(o, schema)),
                            req.old_object.map_or(Cel::Null, |o| celenv::object_to_cel(o, schema)),
                            namespace_obj.map_or(Cel::Null, |n| celenv::object_to_cel(&namespace_object(n), None)),
                        )
                    })
                    .clone();
                let actions: Vec<&str> =
                    list(binding, "/spec/validationActions").iter().filter_map(Value::as_str).collect();
                for (param, param_schema) in &params {
                    let param_cel = param.map_or(Cel::Null, |p| celenv::object_to_cel(p, *param_schema));
                    let bound = Bound {
                        object: object.clone(),
                        old_object: old_object.clone(),
                        request: request.clone(),
                        params: param_cel,
                        namespace_object: ns_object.clone(),
                    };
                    for action in validate(&compiled, fail_policy_is_ignore(policy), &bound) {
                        let Action::Deny(reason, message) = action else { continue };
                        for a in &actions {
                            match *a {
                                "Deny" => denials.push(Denial {
                                    policy: pname.clone(),
                                    binding: Some(text(binding, "/metadata/name")),
                                    reason: reason.clone(),
                                    message: message.clone(),
                                }),
                                "Warn" => warnings.push(format!(
                                    "Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{}': {message}",
                                    text(binding, "/metadata/name")
                                )),
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        match denials.into_iter().next() {
            None => Ok(warnings),
            Some(d) => {
                let message = match &d.binding {
                    Some(b) => {
                        format!(
                            "ValidatingAdmissionPolicy '{}' with binding '{b}' denied request: {}",
                            d.policy, d.message
                        )
                    }
                    None => format!("ValidatingAdmissionPolicy '{}' denied request: {}", d.policy, d.message),
                };
                Err(ApiError::policy_denied(req.rt, &error_name(req), &d.reason, &message))
            }
        }
    }
}

/// The name in the error (`admission.NewForbidden`): the request's, else the object's name or
/// generateName, else `Unknown`.
fn error_name(req: &Request<'_>) -> String {
    if !req.name.is_empty() {
        return req.name.to_string();
    }
    let obj = req.object.or(req.old_object);
    let n = obj.map(|o| text(o, "/metadata/name")).unwrap_or_default();
    if !n.is_empty() {
        return n;
    }
    let g = obj.map(|o| text(o, "/metadata/generateName")).unwrap_or_default();
    if g.is_empty() { "Unknown".into() } else { g }
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces"
}

/// `namespaceObject`: the Namespace without managedFields and ownerReferences.
fn namespace_object(ns: &Value) -> Value {
    let meta = ns.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut kept = serde_json::Map::new();
    for k in [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    ] {
        if let Some(v) = meta.get(k) {
            kept.insert(k.into(), v.clone());
        }
    }
    json!({"metadata": kept, "spec": ns.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": ns.get("status").cloned().unwrap_or_else(|| json!({}))})
}

/// The `request` variable: the AdmissionRequest as JSON (empty fields left out, as Go's
/// `omitempty` leaves them).
fn request_to_cel(req: &Request<'_>) -> Cel {
    let rt = req.rt;
    let kind = map(vec![("group", string(&rt.group)), ("version", string(&rt.version)), ("kind", string(&rt.kind))]);
    let resource =
        map(vec![("group", string(&rt.group)), ("version", string(&rt.version)), ("resource", string(&rt.plural))]);
    let mut user = vec![("username", string(&req.user.username))];
    if !req.user.uid.is_empty() {
        user.push(("uid", string(&req.user.uid)));
    }
    if !req.user.groups.is_empty() {
        user.push(("groups", Cel::List(Arc::new(req.user.groups.iter().map(|g| string(g)).collect()))));
    }
    let options_kind = match req.operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let uid = uuid::Uuid::new_v4().to_string();
    let mut entries = vec![
        ("uid", string(&uid)),
        ("kind", kind.clone()),
        ("resource", resource.clone()),
        ("requestKind", kind),
        ("requestResource", resource),
        ("operation", string(req.operation)),
        ("userInfo", map(user)),
        ("dryRun", Cel::Bool(req.dry_run)),
        ("options", map(vec![("kind", string(options_kind)), ("apiVersion", string("meta.k8s.io/v1"))])),
    ];
    if !req.subresource.is_empty() {
        entries.push(("subResource", string(req.subresource)));
        entries.push(("requestSubResource", string(req.subresource)));
    }
    if !req.name.is_empty() {
        entries.push(("name", string(req.name)));
    }
    if !req.namespace.is_empty() {
        entries.push(("namespace", string(req.namespace)));
    }
    map(entries)
}

/// Whether match criteria (`matchConstraints` or a binding's `matchResources`) match the
/// request (`generic.Matcher.Matches`). `Err`: a malformed selector.
fn matches(criteria: &Value, req: &Request<'_>, ns_labels: Option<&Value>) -> Result<bool, String> {
    // Namespace selector: cluster-scoped objects other than namespaces are never excluded.
    if (!req.namespace.is_empty() || is_namespace(req.rt))
        && let Some(sel) = criteria.get("namespaceSelector").filter(|s| is_non_empty_selector(s))
        && !selector_matches(sel, ns_labels)?
    {
        return Ok(false);
    }
    if let Some(sel) = criteria.get("objectSelector").filter(|s| is_non_empty_selector(s)) {
        let m = |o: Option<&Value>| -> Result<bool, String> {
            match o {
                Some(o) => selector_matches(sel, o.pointer("/metadata/labels")),
                None => Ok(false),
            }
        };
        if !(m(req.object)? || m(req.old_object)?) {
            return Ok(false);
        }
    }
    if rules_match(list(criteria, "/excludeResourceRules"), req) {
        return Ok(false);
    }
    let rules = list(criteria, "/resourceRules");
    Ok(rules.is_empty() || rules_match(rules, req))
}

fn is_non_empty_selector(s: &Value) -> bool {
    s.get("matchLabels").and_then(Value::as_object).is_some_and(|m| !m.is_empty())
        || s.get("matchExpressions").and_then(Value::as_array).is_some_and(|m| !m.is_empty())
}

/// `NamedRuleWithOperations` (`rules.Matcher`): scope, operations, groups, versions, resources
/// (`res`, `res/sub`, `*`, `*/sub`, `res/*`, `*/*`), then resource names.
fn rules_match(rules: &[Value], req: &Request<'_>) -> bool {
    fn strs<'v>(r: &'v Value, k: &str) -> Vec<&'v str> {
        r.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
    }
    let exact_or_wildcard = |items: Vec<&str>, want: &str| items.iter().any(|i| *i == "*" || *i == want);
    rules.iter().any(|r| {
        let scope_ok = match r.get("scope").and_then(Value::as_str).unwrap_or("*") {
            "*" => true,
            "Namespaced" => !is_namespace(req.rt) && !req.namespace.is_empty(),
            "Cluster" => is_namespace(req.rt) || req.namespace.is_empty(),
            _ => false,
        };
        let resource_ok = strs(r, "resources").iter().any(|res| {
            let (res, sub) = res.split_once('/').unwrap_or((res, ""));
            (res == "*" || res == req.rt.plural) && (sub == "*" || sub == req.subresource)
        });
        if !(scope_ok
            && exact_or_wildcard(strs(r, "operations"), req.operation)
            && exact_or_wildcard(strs(r, "apiGroups"), &req.rt.group)
            && exact_or_wildcard(strs(r, "apiVersions"), &req.rt.version)
            && resource_ok)
        {
            return false;
        }
        let names = strs(r, "resourceNames");
        names.is_empty() || names.contains(&req.name)
    })
}

/// The parameter objects of a binding (`generic.CollectParams`): `[None]` without `paramKind`
/// or `paramRef`; else the named object or those the selector matches, from the request's
/// namespace unless `paramRef.namespace` says otherwise.
#[allow(clippy::type_complexity)]
fn collect_params<'a>(
    store: &'a Store,
    registry: &'a Registry,
    policy: &Value,
    binding: &Value,
    namespace: &str,
) -> Result<Vec<(Option<&'a Value>, Option<&'a Value>)>, String> {
    let (Some(kind), Some(pref)) = (
        policy.pointer("/spec/paramKind").filter(|v| v.is_object()),
        binding.pointer("/spec/paramRef").filter(|v| v.is_object()),
    ) else {
        return Ok(vec![(None, None)]);
    };
    let api_version = text(kind, "/apiVersion");
    let kind_name = text(kind, "/kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
    let Some(id) = registry.types.iter().position(|t| t.group == group && t.version == version && t.kind == kind_name)
    else {
        return Err(format!("paramKind kind `{api_version}, Kind={kind_name}` not known"));
    };
    let rt = &registry.types[id];
    let ref_ns = text(pref, "/namespace");
    let ns = if rt.namespaced {
        if !ref_ns.is_empty() {
            ref_ns
        } else if !namespace.is_empty() {
            namespace.to_string()
        } else {
            return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
        }
    } else {
        if !ref_ns.is_empty() {
            return Err("paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into());
        }
        String::new()
    };
    let name = text(pref, "/name");
    let selector = pref.get("selector").filter(|s| s.is_object());
    let schema = rt.schema.as_ref();
    let found: Vec<(Option<&Value>, Option<&Value>)> = if !name.is_empty() {
        if selector.is_some() {
            return Err("paramRef.name and paramRef.selector are mutually exclusive".into());
        }
        store
            .kinds
            .get(id)
            .and_then(|k| k.objects.get(&(ns.clone(), name)))
            .map(|o| vec![(Some(&**o), schema)])
            .unwrap_or_default()
    } else if let Some(sel) = selector {
        let mut out = Vec::new();
        let objects = store.kinds.get(id).map(|k| k.objects.iter()).into_iter().flatten();
        for ((_, _), o) in objects.filter(|((n, _), _)| *n == ns) {
            if selector_matches(sel, o.pointer("/metadata/labels"))? {
                out.push((Some(&**o), schema));
            }
        }
        out
    } else {
        return Err("one of name or selector must be provided".into());
    };
    if found.is_empty() && pref.get("parameterNotFoundAction").and_then(Value::as_str) == Some("Deny") {
        return Err("no params found for policy binding with `Deny` parameterNotFoundAction".into());
    }
    Ok(found)
}

/// The variables of one evaluation.
struct Bound {
    object: Cel,
    old_object: Cel,
    request: Cel,
    params: Cel,
    namespace_object: Cel,
}

/// `expression '...' resulted in error: ...`, the error worded like cel-go's (lowercase start:
/// `no such key: x`).
fn eval_error(expr: &str, e: &str) -> String {
    let mut chars = e.chars();
    let e = match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    };
    format!("expression '{expr}' resulted in error: {e}")
}

/// Runs one policy for one binding and parameter (`validator.Validate`): match conditions,
/// variables, then every validation.
fn validate(policy: &Policy, ignore: bool, b: &Bound) -> Vec<Action> {
    let on_error = |message: String| if ignore { Action::Admit } else { Action::Deny(String::new(), message) };
    let mut ctx = celenv::scope();
    ctx.add_variable_from_value("object", b.object.clone());
    ctx.add_variable_from_value("oldObject", b.old_object.clone());
    ctx.add_variable_from_value("request", b.request.clone());
    ctx.add_variable_from_value("params", b.params.clone());
    ctx.add_variable_from_value("namespaceObject", b.namespace_object.clone());
    // Variables, in order (each may use the ones before it).
    let mut values: Vec<(&str, Cel)> = Vec::new();
    let mut failed: Vec<(&str, String)> = Vec::new();
    let bind = |ctx: &mut kube_cel::cel::Context<'static>, values: &[(&str, Cel)]| {
        ctx.add_variable_from_value("variables", map(values.iter().map(|(n, v)| (*n, v.clone())).collect()));
    };
    bind(&mut ctx, &values);
    for (name, expr, program) in &policy.variables {
        let result = match program {
            Ok(p) => p.execute(&ctx).map_err(|e| eval_error(expr, &e.to_string())),
            Err(e) => Err(format!("compilation failed: {e}")),
        };
        match result {
            Ok(v) => {
                values.push((name.as_str(), v));
                bind(&mut ctx, &values);
            }
            Err(e) => failed.push((name.as_str(), e)),
        }
    }
    // An expression that fails on a failed variable reports the variable's error.
    let explain = |expr: &str, e: String| -> String {
        failed
            .iter()
            .find(|(name, _)| references_variable(expr, name))
            .map(|(_, ve)| eval_error(expr, ve))
            .unwrap_or_else(|| eval_error(expr, &e))
    };
    let run = |expr: &str, program: &Compiled| -> Result<Cel, String> {
        match program {
            Ok(p) => p.execute(&ctx).map_err(|e| explain(expr, e.to_string())),
            Err(e) => Err(format!("compilation failed: {e}")),
        }
    };
    // Match conditions: any false → the policy does not apply; errors → the failure policy.
    let mut errors = Vec::new();
    let mut all_true = true;
    for (expr, program) in &policy.match_conditions {
        match run(expr, program) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => all_true = false,
            Ok(other) => errors.push(eval_error(expr, &format!("expected a bool, got {other:?}"))),
            Err(e) => errors.push(e),
        }
    }
    if !all_true {
        return Vec::new();
    }
    if !errors.is_empty() {
        return if ignore { Vec::new() } else { vec![on_error(aggregate(&errors))] };
    }
    policy
        .validations
        .iter()
        .map(|v| match run(&v.expression, &v.program) {
            Ok(Cel::Bool(true)) => Action::Admit,
            Ok(Cel::Bool(false)) => {
                let from_expression = v
                    .message_expression
                    .as_ref()
                    .and_then(|me| match me {
                        Ok(p) => p.execute(&ctx).ok(),
                        Err(_) => None,
                    })
                    .and_then(|m| celenv::display(&m))
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty() && m.len() <= 5 * 1024 && !m.contains('\n'));
                let message = from_expression
                    .or_else(|| v.message.as_deref().map(str::trim).filter(|m| !m.is_empty()).map(str::to_string))
                    .unwrap_or_else(|| format!("failed expression: {}", v.expression.trim()));
                Action::Deny(v.reason.clone().unwrap_or_default(), message)
            }
            Ok(other) => on_error(eval_error(&v.expression, &format!("expected a bool, got {other:?}"))),
            Err(e) => on_error(e),
        })
        .collect()
}

/// Whether `expr` mentions `variables.<name>`.
fn references_variable(expr: &str, name: &str) -> bool {
    let needle = format!("variables.{name}");
    expr.match_indices(&needle).any(|(i, _)| {
        let after = expr[i + needle.len()..].chars().next();
        after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> ResourceType {
        ResourceType {
            group: "kiln.dev".into(),
            version: "v1alpha1".into(),
            plural: "promotions".into(),
            singular: "promotion".into(),
            kind: "Promotion".into(),
            namespaced: true,
            status_subresource: true,
            short_names: vec![],
            categories: vec![],
            custom: true,
            printer_columns: vec![],
            schema: None,
        }
    }

    #[test]
    fn resource_rules() {
        let rt = rt();
        let user = UserInfo::new("alice", &[]);
        let obj = json!({"metadata": {"name": "p", "labels": {"team": "a"}}});
        let req = Request {
            operation: "UPDATE",
            rt: &rt,
            subresource: "status",
            namespace: "ns",
            name: "p",
            user: &user,
            object: Some(&obj),
            old_object: Some(&obj),
            dry_run: false,
        };
        let r = |v: Value| rules_match(&[v], &req);
        let base = json!({"apiGroups": ["kiln.dev"], "apiVersions": ["*"], "operations": ["UPDATE"]});
        let with = |res: Value| {
            let mut v = base.clone();
            v["resources"] = res;
            v
        };
        assert!(!r(with(json!(["promotions"]))));
        assert!(r(with(json!(["promotions/status"]))));
        assert!(r(with(json!(["promotions/*"]))));
        assert!(r(with(json!(["*/status"]))));
        assert!(!r(with(json!(["*"]))));
        let mut cluster = with(json!(["*/*"]));
        cluster["scope"] = json!("Cluster");
        assert!(!r(cluster));
        let sel = json!({"resourceRules": [with(json!(["*/*"]))], "objectSelector": {"matchLabels": {"team": "b"}}});
        assert_eq!(matches(&sel, &req, None), Ok(false));
        assert!(references_variable("variables.user == 'x'", "user"));
        assert!(!references_variable("variables.users == 'x'", "user"));
    }
}
