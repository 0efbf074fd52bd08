//! The served resource types (built-in ones and those of the CRDs) and API discovery.

use serde_json::{Value, json};

/// One served resource (`releases.kiln.dev/v1alpha1`, `configmaps/v1`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name (the URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether a `/status` subresource is served (and main-resource writes ignore status).
    pub status_subresource: bool,
    /// Short names (`rel`, `cm`, ...).
    pub short_names: Vec<String>,
    /// Categories (`kiln`, `all`).
    pub categories: Vec<String>,
    /// Whether this is a custom resource (admission via kiln-schema, `generation` kept).
    pub custom: bool,
    /// The CRD version's `additionalPrinterColumns` (Table output); empty for built-ins.
    pub printer_columns: Vec<Value>,
    /// The CRD version's `schema.openAPIV3Schema` (served under `/openapi/v3`).
    pub schema: Option<Value>,
}

impl ResourceType {
    fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool, status: bool, short: &[&str]) -> Self {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            status_subresource: status,
            short_names: short.iter().map(|s| (*s).to_string()).collect(),
            categories: Vec::new(),
            custom: false,
            printer_columns: Vec::new(),
            schema: None,
        }
    }

    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `releases.kiln.dev` or `configmaps`, as in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// `Release.kiln.dev` or `ConfigMap`, as in `is invalid` messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() { self.kind.clone() } else { format!("{}.{}", self.kind, self.group) }
    }

    /// The resource's entry in an `APIResourceList` (and its status subresource's).
    fn discovery(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }

    /// A served type from a CRD (`apiextensions.k8s.io/v1`), one per served version.
    pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
        let spec = crd.get("spec").ok_or("CRD without spec")?;
        let s = |v: Option<&Value>, what: &str| {
            v.and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("CRD without {what}"))
        };
        let names = spec.get("names");
        let strings = |key: &str| -> Vec<String> {
            names
                .and_then(|n| n.get(key))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let group = s(spec.get("group"), "spec.group")?;
        let plural = s(names.and_then(|n| n.get("plural")), "spec.names.plural")?;
        let kind = s(names.and_then(|n| n.get("kind")), "spec.names.kind")?;
        let singular = s(names.and_then(|n| n.get("singular")), "spec.names.singular").unwrap_or(kind.to_lowercase());
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        let versions = spec.get("versions").and_then(Value::as_array).ok_or("CRD without spec.versions")?;
        let mut out = Vec::new();
        for v in versions {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            out.push(ResourceType {
                group: group.clone(),
                version: s(v.get("name"), "spec.versions[].name")?,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                status_subresource: v.get("subresources").and_then(|s| s.get("status")).is_some(),
                short_names: strings("shortNames"),
                categories: strings("categories"),
                custom: true,
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            });
        }
        Ok(out)
    }
}

/// The built-in types the server serves.
pub fn builtins() -> Vec<ResourceType> {
    vec![
        ResourceType::builtin("", "namespaces", "Namespace", false, true, &["ns"]),
        ResourceType::builtin("", "configmaps", "ConfigMap", true, false, &["cm"]),
        ResourceType::builtin("", "secrets", "Secret", true, false, &[]),
        ResourceType::builtin("", "events", "Event", true, false, &["ev"]),
        ResourceType::builtin("events.k8s.io", "events", "Event", true, false, &["ev"]),
        ResourceType::builtin("coordination.k8s.io", "leases", "Lease", true, false, &[]),
        ResourceType::builtin("", "serviceaccounts", "ServiceAccount", true, false, &["sa"]),
        ResourceType::builtin("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", false, false, &[]),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            false,
            &[],
        ),
        ResourceType::builtin("rbac.authorization.k8s.io", "roles", "Role", true, false, &[]),
        ResourceType::builtin("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", true, false, &[]),
        ResourceType {
            categories: vec!["api-extensions".into()],
            ..ResourceType::builtin(
                "admissionregistration.k8s.io",
                "validatingadmissionpolicies",
                "ValidatingAdmissionPolicy",
                false,
                true,
                &[],
            )
        },
        ResourceType {
            categories: vec!["api-extensions".into()],
            ..ResourceType::builtin(
                "admissionregistration.k8s.io",
                "validatingadmissionpolicybindings",
                "ValidatingAdmissionPolicyBinding",
                false,
                false,
                &[],
            )
        },
        ResourceType {
            short_names: vec!["crd".into(), "crds".into()],
            ..ResourceType::builtin(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                true,
                &[],
            )
        },
    ]
}

/// The group of `SelfSubjectReview` (what `kubectl auth whoami` and `kubectl kiln` ask to learn
/// the caller's identity). It is answered from the request's token, never stored, so it is not a
/// [`ResourceType`]; discovery lists it like the real server does.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// The group of the access reviews (`kubectl auth can-i`), answered from RBAC, never stored.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// The `authorization.k8s.io/v1` `APIResourceList`.
fn access_review_discovery() -> Vec<Value> {
    [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", false),
        ("subjectaccessreviews", "SubjectAccessReview", false),
    ]
    .iter()
    .map(|(plural, kind, namespaced)| {
        json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced, "kind": kind,
            "verbs": ["create"]})
    })
    .collect()
}

/// `SelfSubjectReview`'s entry in the `authentication.k8s.io/v1` `APIResourceList`.
fn self_subject_review_discovery() -> Value {
    json!({
        "name": "selfsubjectreviews",
        "singularName": "selfsubjectreview",
        "namespaced": false,
        "kind": "SelfSubjectReview",
        "verbs": ["create"],
    })
}

/// All served types, with lookups by URL.
#[derive(Debug, Default)]
pub struct Registry {
    /// The types, in a fixed order (the index is the type's id in the store).
    pub types: Vec<ResourceType>,
}

impl Registry {
    /// The id of `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.types.iter().position(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The id of a type by kind or plural (for the handle): `Release`, `releases`, `configmaps`.
    /// Core types win over group types of the same name.
    pub fn find_loose(&self, name: &str) -> Option<usize> {
        let mut matches: Vec<usize> = self
            .types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == name || t.plural == name || t.qualified() == name)
            .map(|(i, _)| i)
            .collect();
        matches.sort_by_key(|i| !self.types[*i].group.is_empty());
        matches.first().copied()
    }

    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
                Some(_) => {}
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out.push((AUTHENTICATION_GROUP.to_string(), vec!["v1".to_string()]));
        out.push((AUTHORIZATION_GROUP.to_string(), vec!["v1".to_string()]));
        out
    }

    /// `GET /api`.
    pub fn api_versions(&self) -> Value {
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
    }

    fn group_json(group: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> =
            versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
        json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
    }

    /// `GET /apis`.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self.groups().iter().map(|(g, vs)| Registry::group_json(g, vs)).collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/{group}`.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        self.groups().iter().find(|(g, _)| g == group).map(|(g, vs)| {
            let mut v = Registry::group_json(g, vs);
            if let Some(m) = v.as_object_mut() {
                m.insert("kind".into(), "APIGroup".into());
                m.insert("apiVersion".into(), "v1".into());
            }
            v
        })
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        if (group, version) == (AUTHENTICATION_GROUP, "v1") {
            return Some(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authentication.k8s.io/v1",
                "resources": [self_subject_review_discovery()]}),
            );
        }
        if (group, version) == (AUTHORIZATION_GROUP, "v1") {
            return Some(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authorization.k8s.io/v1",
                "resources": access_review_discovery()}),
            );
        }
        let resources: Vec<Value> = self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .flat_map(ResourceType::discovery)
            .collect();
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
    }
}
