//! Authorization as kube-apiserver's RBAC authorizer does it: request attributes from the URL
//! (`RequestInfoFactory`), `system:masters` allowed outright, then ClusterRoleBindings and the
//! request namespace's RoleBindings whose subjects name the user, a group of theirs or their
//! ServiceAccount, and the rules of the roles they reference (verbs, apiGroups, resources with
//! `res/sub` and `*/sub`, resourceNames, nonResourceURLs with a trailing `*`, wildcards).
//! Aggregated ClusterRoles get their rules written like the clusterrole-aggregation controller
//! does. Denials are the real `Forbidden` Status.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::store::Store;

/// The group of RBAC's types.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What a request asks to do (`authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
    /// `impersonate`, ...; for non-resource requests the lowercase HTTP method.
    pub verb: String,
    /// A request for an API resource (else a path such as `/version` or `/metrics`).
    pub resource_request: bool,
    /// The URL path.
    pub path: String,
    /// API group (empty: core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource.
    pub resource: String,
    /// `status`, or empty.
    pub subresource: String,
    /// Namespace; empty for cluster scope.
    pub namespace: String,
    /// Object name, if the request names one.
    pub name: String,
}

fn is_valid_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
}

/// The attributes of a request, as `RequestInfoFactory.NewRequestInfo` derives them.
pub fn request_attributes(method: &str, path: &str, query: &HashMap<String, String>) -> Attributes {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let http_verb = if method.eq_ignore_ascii_case("HEAD") { "get".to_string() } else { method.to_lowercase() };
    let non_resource = Attributes { verb: http_verb.clone(), path: path.to_string(), ..Attributes::default() };
    if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
        return non_resource;
    }
    let mut rest = &parts[1..];
    let mut group = "";
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return non_resource;
        }
        group = rest[0];
        rest = &rest[1..];
    }
    let version = rest[0];
    rest = &rest[1..];
    let mut verb = match method.to_uppercase().as_str() {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_string();
    // The deprecated /watch/ path prefix.
    if rest.first() == Some(&"watch") {
        verb = "watch".into();
        rest = &rest[1..];
    }
    let mut namespace = String::new();
    if rest.first() == Some(&"namespaces")
        && let Some(ns) = rest.get(1)
    {
        namespace = (*ns).to_string();
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let resource = rest.first().map(|s| (*s).to_string()).unwrap_or_default();
    let mut name = rest.get(1).map(|s| (*s).to_string()).unwrap_or_default();
    let subresource = rest.get(2).map(|s| (*s).to_string()).unwrap_or_default();
    if name.is_empty() && verb == "get" {
        let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1" | "t" | "True" | "TRUE"));
        verb = if watch { "watch" } else { "list" }.into();
        if let Some(fs) = query.get("fieldSelector")
            && let Some(n) = exact_name(fs)
            && is_valid_path_segment(&n)
        {
            name = n;
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection".into();
    }
    Attributes {
        verb,
        resource_request: true,
        path: path.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        resource,
        subresource,
        namespace,
        name,
    }
}

/// `metadata.name=x` (or `==`) in a field selector.
fn exact_name(fs: &str) -> Option<String> {
    fs.split(',').find_map(|term| {
        let term = term.trim();
        let rest = term.strip_prefix("metadata.name")?;
        let value = rest.strip_prefix("==").or_else(|| rest.strip_prefix('='))?;
        Some(value.trim().to_string())
    })
}

/// The ids of RBAC's types in the store.
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    /// Roles.
    pub roles: usize,
    /// ClusterRoles.
    pub cluster_roles: usize,
    /// RoleBindings.
    pub role_bindings: usize,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: usize,
}

/// An authorization decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why (RBAC's `allowed by ...`, or the errors met on the way to a denial).
    pub reason: String,
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Whether one PolicyRule allows the request (`rbac.RuleAllows`).
pub fn rule_allows(a: &Attributes, rule: &Value) -> bool {
    let verbs = strings(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(rule.get("nonResourceURLs"))
            .iter()
            .any(|u| *u == "*" || *u == a.path || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*'))));
    }
    let groups = strings(rule.get("apiGroups"));
    if !groups.iter().any(|g| *g == "*" || *g == a.group) {
        return false;
    }
    let combined =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let resources = strings(rule.get("resources"));
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!a.subresource.is_empty()
                && r.len() == a.subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = strings(rule.get("resourceNames"));
    names.is_empty() || names.contains(&a.name.as_str())
}

/// Whether a subject names the user (`appliesToUser`); `namespace` is the binding's.
fn applies_to(user: &UserInfo, subject: &Value, namespace: &str) -> bool {
    let name = s(subject, "/name");
    match s(subject, "/kind") {
        "User" => user.username == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = match s(subject, "/namespace") {
                "" => namespace,
                n => n,
            };
            !ns.is_empty() && user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = s(subject, "/kind");
    let name = s(subject, "/name");
    if kind == "ServiceAccount" {
        let ns = match s(subject, "/namespace") {
            "" => binding_ns,
            n => n,
        };
        return format!("{kind} {:?}", format!("{name}/{ns}"));
    }
    format!("{kind} {name:?}")
}

/// One binding that applies to a user, and the rules it grants (or why it grants none).
struct Grant<'a> {
    /// `ClusterRoleBinding "x" of ClusterRole "y" to User "z"`.
    describe: String,
    rules: Result<&'a [Value], String>,
}

fn rules_of(obj: &Value) -> &[Value] {
    obj.get("rules").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The bindings that apply to `user` in `namespace` (ClusterRoleBindings first), with their
/// roles' rules.
fn grants<'a>(store: &'a Store, ids: Ids, user: &UserInfo, namespace: &str) -> Vec<Grant<'a>> {
    let get = |id: usize, ns: &str, name: &str| {
        store.kinds.get(id).and_then(|k| k.objects.get(&(ns.to_string(), name.to_string())))
    };
    let mut out = Vec::new();
    for (_, binding) in store.in_namespace(ids.cluster_role_bindings, None) {
        let subjects = binding.get("subjects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let Some(subject) = subjects.iter().find(|sub| applies_to(user, sub, "")) else { continue };
        let (kind, role) = (s(binding, "/roleRef/kind"), s(binding, "/roleRef/name"));
        let rules = match kind {
            "ClusterRole" => get(ids.cluster_roles, "", role)
                .map(|r| rules_of(r))
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {role:?} not found")),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        };
        out.push(Grant {
            describe: format!(
                "ClusterRoleBinding {:?} of {kind} {role:?} to {}",
                s(binding, "/metadata/name"),
                describe_subject(subject, "")
            ),
            rules,
        });
    }
    if !namespace.is_empty() {
        for (_, binding) in store.in_namespace(ids.role_bindings, Some(namespace)) {
            let subjects = binding.get("subjects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            let Some(subject) = subjects.iter().find(|sub| applies_to(user, sub, namespace)) else { continue };
            let (kind, role) = (s(binding, "/roleRef/kind"), s(binding, "/roleRef/name"));
            let rules = match kind {
                "ClusterRole" => get(ids.cluster_roles, "", role)
                    .map(|r| rules_of(r))
                    .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {role:?} not found")),
                "Role" => get(ids.roles, namespace, role)
                    .map(|r| rules_of(r))
                    .ok_or_else(|| format!("role.rbac.authorization.k8s.io {role:?} not found")),
                other => Err(format!("unsupported role reference kind: {other:?}")),
            };
            out.push(Grant {
                describe: format!(
                    "RoleBinding {:?} of {kind} {role:?} to {}",
                    format!("{}/{namespace}", s(binding, "/metadata/name")),
                    describe_subject(subject, namespace)
                ),
                rules,
            });
        }
    }
    out
}

fn aggregate_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

/// Authorizes a request: `system:masters` always, else RBAC.
pub fn authorize(store: &Store, ids: Ids, user: &UserInfo, a: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Decision { allowed: true, reason: String::new() };
    }
    let mut errors = Vec::new();
    for grant in grants(store, ids, user, &a.namespace) {
        match grant.rules {
            Ok(rules) => {
                if rules.iter().any(|r| rule_allows(a, r)) {
                    return Decision { allowed: true, reason: format!("RBAC: allowed by {}", grant.describe) };
                }
            }
            Err(e) => errors.push(e),
        }
    }
    Decision { allowed: false, reason: aggregate_errors(&errors) }
}

/// The `Forbidden` Status of a denied request (`responsewriters.Forbidden`).
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let msg = if !a.resource_request {
        format!("User {:?} cannot {} path {:?}", user.username, a.verb, a.path)
    } else {
        let resource =
            if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        if a.namespace.is_empty() {
            format!(
                "User {:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                user.username, a.verb, a.group
            )
        } else {
            format!(
                "User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                user.username, a.verb, a.group, a.namespace
            )
        }
    };
    // Like kube-apiserver: no HTML-looking text in the message (the reason is appended as is).
    let msg = msg.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let msg = if reason.is_empty() { msg } else { format!("{msg}: {reason}") };
    let (resource, group) = if a.resource_request { (a.resource.as_str(), a.group.as_str()) } else { ("", "") };
    ApiError::forbidden_raw(group, resource, &a.name, &msg)
}

/// The rules that apply to a user in a namespace (SelfSubjectRulesReview's status).
pub fn rules_review(store: &Store, ids: Ids, user: &UserInfo, namespace: &str) -> Value {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let mut errors = Vec::new();
    for grant in grants(store, ids, user, namespace) {
        match grant.rules {
            Ok(rules) => {
                for r in rules {
                    if r.get("nonResourceURLs").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
                        non_resource_rules.push(json!({"verbs": r.get("verbs").cloned().unwrap_or(json!([])),
                            "nonResourceURLs": r.get("nonResourceURLs").cloned().unwrap_or(json!([]))}));
                    } else {
                        let mut rule = json!({"verbs": r.get("verbs").cloned().unwrap_or(json!([]))});
                        for k in ["apiGroups", "resources", "resourceNames"] {
                            if let (Some(v), Some(m)) = (r.get(k), rule.as_object_mut()) {
                                m.insert(k.into(), v.clone());
                            }
                        }
                        resource_rules.push(rule);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty()});
    if !errors.is_empty()
        && let Some(m) = status.as_object_mut()
    {
        m.insert("evaluationError".into(), aggregate_errors(&errors).into());
    }
    status
}

/// Attributes from a SubjectAccessReview spec (`resourceAttributes` or `nonResourceAttributes`).
pub fn review_attributes(spec: &Value) -> Attributes {
    if let Some(ra) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let f = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Attributes {
            verb: f("verb"),
            resource_request: true,
            path: String::new(),
            group: f("group"),
            version: f("version"),
            resource: f("resource"),
            subresource: f("subresource"),
            namespace: f("namespace"),
            name: f("name"),
        };
    }
    let nra = spec.get("nonResourceAttributes");
    let f = |k: &str| nra.and_then(|n| n.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
    Attributes { verb: f("verb"), path: f("path"), ..Attributes::default() }
}

/// `matchLabels` / `matchExpressions` (`metav1.LabelSelector`) against labels. `Err`: a
/// malformed selector.
pub fn selector_matches(selector: &Value, labels: Option<&Value>) -> Result<bool, String> {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if get(k) != v.as_str() {
                return Ok(false);
            }
        }
    }
    for expr in selector.get("matchExpressions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let k = s(expr, "/key");
        let values = strings(expr.get("values"));
        let ok = match s(expr, "/operator") {
            "In" => get(k).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(k).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(k).is_some(),
            "DoesNotExist" => get(k).is_none(),
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the rules of every aggregated ClusterRole (`aggregationRule.clusterRoleSelectors`):
/// the union of the rules of the ClusterRoles the selectors match, in name order, without
/// duplicates — what the clusterrole-aggregation controller keeps current. Repeats until
/// nothing changes (aggregated roles can aggregate others, like `admin` ⊇ `edit` ⊇ `view`).
pub fn aggregate(store: &mut Store, ids: Ids) {
    for _ in 0..8 {
        let mut changes = Vec::new();
        for (key, role) in store.in_namespace(ids.cluster_roles, None) {
            let Some(selectors) = role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array)
            else {
                continue;
            };
            let mut rules: Vec<Value> = Vec::new();
            for sel in selectors {
                for (other_key, other) in store.in_namespace(ids.cluster_roles, None) {
                    if other_key == key || selector_matches(sel, other.pointer("/metadata/labels")) != Ok(true) {
                        continue;
                    }
                    for r in rules_of(other) {
                        if !rules.contains(r) {
                            rules.push(r.clone());
                        }
                    }
                }
            }
            if rules_of(role) != rules.as_slice() {
                let mut new = (**role).clone();
                if let Some(m) = new.as_object_mut() {
                    m.insert("rules".into(), Value::Array(rules));
                }
                changes.push((key.clone(), new));
            }
        }
        if changes.is_empty() {
            return;
        }
        for (key, new) in changes {
            store.put(ids.cluster_roles, key, new);
        }
    }
}

/// The default ClusterRoles and ClusterRoleBindings of a new cluster (a subset of
/// kube-apiserver's bootstrap policy: `cluster-admin`, the aggregated `admin` / `edit` / `view`
/// and their `system:aggregate-to-*` parts, `system:discovery`, `system:basic-user`,
/// `system:public-info-viewer`, `system:monitoring`).
pub const BOOTSTRAP: &str = include_str!("bootstrap-rbac.yaml");

/// Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` headers): each
/// impersonated value must be allowed by the `impersonate` verb (users, groups, serviceaccounts,
/// uids), like kube-apiserver's impersonation filter. `Ok(None)`: no impersonation.
pub fn impersonate(
    store: &Store,
    ids: Ids,
    rbac: bool,
    user: &UserInfo,
    imp_user: Option<&str>,
    imp_groups: &[String],
    imp_uid: Option<&str>,
) -> Result<Option<UserInfo>, ApiError> {
    let Some(username) = imp_user else {
        if imp_groups.is_empty() && imp_uid.is_none() {
            return Ok(None);
        }
        return Err(ApiError::internal("requested impersonation of groups or uid without impersonating a user"));
    };
    let check = |a: Attributes| -> Result<(), ApiError> {
        if !rbac {
            return Ok(());
        }
        let d = authorize(store, ids, user, &a);
        if d.allowed { Ok(()) } else { Err(forbidden(user, &a, &d.reason)) }
    };
    let mut groups: Vec<String> = imp_groups.to_vec();
    if let Some(rest) = username.strip_prefix("system:serviceaccount:")
        && let Some((ns, name)) = rest.split_once(':')
    {
        check(Attributes {
            verb: "impersonate".into(),
            resource_request: true,
            version: "v1".into(),
            resource: "serviceaccounts".into(),
            namespace: ns.into(),
            name: name.into(),
            ..Attributes::default()
        })?;
        if groups.is_empty() {
            groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")];
        }
    } else {
        check(Attributes {
            verb: "impersonate".into(),
            resource_request: true,
            version: "v1".into(),
            resource: "users".into(),
            name: username.into(),
            ..Attributes::default()
        })?;
    }
    for g in imp_groups {
        check(Attributes {
            verb: "impersonate".into(),
            resource_request: true,
            version: "v1".into(),
            resource: "groups".into(),
            name: g.clone(),
            ..Attributes::default()
        })?;
    }
    if let Some(uid) = imp_uid {
        check(Attributes {
            verb: "impersonate".into(),
            resource_request: true,
            group: "authentication.k8s.io".into(),
            version: "v1".into(),
            resource: "uids".into(),
            name: uid.into(),
            ..Attributes::default()
        })?;
    }
    if username != "system:anonymous"
        && !groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        groups.push("system:authenticated".into());
    }
    Ok(Some(UserInfo { username: username.to_string(), uid: imp_uid.unwrap_or("").to_string(), groups }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn attributes_from_urls() {
        let a = request_attributes("GET", "/apis/kiln.dev/v1alpha1/namespaces/ingest/promotions/x", &q(&[]));
        assert_eq!((a.verb.as_str(), a.group.as_str(), a.resource.as_str()), ("get", "kiln.dev", "promotions"));
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("ingest", "x"));
        let a = request_attributes("PATCH", "/apis/kiln.dev/v1alpha1/namespaces/ingest/promotions/x/status", &q(&[]));
        assert_eq!((a.verb.as_str(), a.subresource.as_str()), ("patch", "status"));
        let a = request_attributes("GET", "/api/v1/namespaces/ingest/configmaps", &q(&[("watch", "true")]));
        assert_eq!((a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()), ("watch", "configmaps", "ingest"));
        let a = request_attributes(
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/k/leases",
            &q(&[("fieldSelector", "metadata.name=kiln")]),
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "kiln"));
        let a = request_attributes("DELETE", "/api/v1/namespaces/x/secrets", &q(&[]));
        assert_eq!(a.verb, "deletecollection");
        let a = request_attributes("GET", "/api/v1/namespaces/x", &q(&[]));
        assert_eq!((a.resource.as_str(), a.name.as_str(), a.namespace.as_str()), ("namespaces", "x", "x"));
        let a = request_attributes("PUT", "/api/v1/namespaces/x/status", &q(&[]));
        assert_eq!((a.resource.as_str(), a.subresource.as_str(), a.namespace.as_str()), ("namespaces", "status", "x"));
        let a = request_attributes("POST", "/api/v1/namespaces", &q(&[]));
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("create", ""));
        for p in ["/api", "/api/v1", "/apis", "/apis/kiln.dev", "/apis/kiln.dev/v1alpha1", "/version", "/openapi/v3"] {
            let a = request_attributes("GET", p, &q(&[]));
            assert!(!a.resource_request, "{p}");
            assert_eq!(a.verb, "get");
        }
    }

    #[test]
    fn rules() {
        let a = Attributes {
            verb: "patch".into(),
            resource_request: true,
            group: "kiln.dev".into(),
            resource: "promotions".into(),
            subresource: "status".into(),
            name: "p".into(),
            ..Attributes::default()
        };
        let rule = |v: Value| rule_allows(&a, &v);
        assert!(rule(json!({"apiGroups": ["kiln.dev"], "resources": ["promotions/status"], "verbs": ["patch"]})));
        assert!(!rule(json!({"apiGroups": ["kiln.dev"], "resources": ["promotions"], "verbs": ["patch"]})));
        assert!(rule(json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]})));
        assert!(rule(json!({"apiGroups": ["kiln.dev"], "resources": ["*"], "verbs": ["patch"]})));
        assert!(!rule(json!({"apiGroups": ["kiln.dev"], "resources": ["*/scale"], "verbs": ["patch"]})));
        assert!(!rule(json!({"apiGroups": ["kiln.dev"], "resources": ["promotions/status"], "verbs": ["patch"],
            "resourceNames": ["q"]})));
        assert!(rule(json!({"apiGroups": ["kiln.dev"], "resources": ["promotions/status"], "verbs": ["patch"],
            "resourceNames": ["q", "p"]})));
        assert!(!rule(json!({"apiGroups": [""], "resources": ["promotions/status"], "verbs": ["patch"]})));
        let m = Attributes { verb: "get".into(), path: "/metrics".into(), ..Attributes::default() };
        assert!(rule_allows(&m, &json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]})));
        assert!(rule_allows(&m, &json!({"nonResourceURLs": ["/met*"], "verbs": ["get"]})));
        assert!(!rule_allows(&m, &json!({"nonResourceURLs": ["/metrics"], "verbs": ["post"]})));
        assert!(!rule_allows(&m, &json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})));
    }

    #[test]
    fn selectors() {
        let labels = json!({"a": "1", "b": "2"});
        assert_eq!(selector_matches(&json!({}), Some(&labels)), Ok(true));
        assert_eq!(selector_matches(&json!({"matchLabels": {"a": "1"}}), Some(&labels)), Ok(true));
        assert_eq!(selector_matches(&json!({"matchLabels": {"a": "2"}}), Some(&labels)), Ok(false));
        let e = |op: &str, vals: Value| json!({"matchExpressions": [{"key": "b", "operator": op, "values": vals}]});
        assert_eq!(selector_matches(&e("In", json!(["2", "3"])), Some(&labels)), Ok(true));
        assert_eq!(selector_matches(&e("NotIn", json!(["2"])), Some(&labels)), Ok(false));
        assert_eq!(selector_matches(&e("Exists", json!([])), None), Ok(false));
        assert_eq!(selector_matches(&e("DoesNotExist", json!([])), None), Ok(true));
        assert!(selector_matches(&e("Near", json!([])), None).is_err());
    }

    #[test]
    fn forbidden_messages() {
        let alice = UserInfo::new("alice", &[]);
        let a = request_attributes("PATCH", "/apis/kiln.dev/v1alpha1/namespaces/ingest/promotions/x", &HashMap::new());
        assert_eq!(
            forbidden(&alice, &a, "").message,
            r#"promotions.kiln.dev "x" is forbidden: User "alice" cannot patch resource "promotions" in API group "kiln.dev" in the namespace "ingest""#
        );
        let a = request_attributes("GET", "/api/v1/secrets", &HashMap::new());
        assert_eq!(
            forbidden(&alice, &a, "RBAC: role.rbac.authorization.k8s.io \"r\" not found").message,
            r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" at the cluster scope: RBAC: role.rbac.authorization.k8s.io "r" not found"#
        );
        let a = request_attributes("GET", "/metrics", &HashMap::new());
        assert_eq!(forbidden(&alice, &a, "").message, r#"forbidden: User "alice" cannot get path "/metrics""#);
    }
}
