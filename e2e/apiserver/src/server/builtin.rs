//! The checks (and defaults) of the built-in types the server serves.

use serde_json::{Value, json};

use super::{Res, is_dns_subdomain, meta_str};
use crate::error::ApiError;
use crate::rbac::RBAC_GROUP;
use crate::resources::ResourceType;
use crate::vap;

/// `Invalid value: "x": a lowercase RFC 1123 subdomain ...`.
fn dns_subdomain_error(n: &str) -> String {
    format!(
        "Invalid value: {n:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
}

/// The checks (and defaults) of built-in types: object names (path segments for RBAC, DNS
/// subdomains otherwise), bindings' immutable `roleRef`, policies' CEL and required fields.
pub(super) fn validate_builtin(rt: &ResourceType, name: &str, new: &mut Value, old: Option<&Value>) -> Res<()> {
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
