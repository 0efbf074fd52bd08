//! `metadata`: the apiserver validates ObjectMeta itself, not through the CRD schema. kiln checks
//! what a manifest can get wrong: that it is an object with only ObjectMeta fields, and the name.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::error::{BadValue, ErrorType, FieldError};
use crate::structural::json_type;

/// ObjectMeta's fields (k8s.io/apimachinery/pkg/apis/meta/v1); anything else is an unknown field.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const DNS1123_SUBDOMAIN: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
static SUBDOMAIN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(&format!("^{DNS1123_SUBDOMAIN}$")).ok());

/// Whether ObjectMeta has a field of this name.
pub(crate) fn is_object_meta_field(key: &str) -> bool {
    OBJECT_META_FIELDS.contains(&key)
}

/// Strict decoding of ObjectMeta: fields it does not have.
pub(crate) fn unknown_fields(obj: &Value, errs: &mut Vec<FieldError>) {
    if let Some(meta) = obj.get("metadata").and_then(Value::as_object) {
        for key in meta.keys() {
            if !is_object_meta_field(key) {
                errs.push(FieldError::new(ErrorType::UnknownField, format!("metadata.{key}"), BadValue::Omitted, ""));
            }
        }
    }
}

/// `ValidateObjectMetaAccessor` for what a manifest controls: metadata is an object, and the name
/// is present (or generateName is) and a DNS-1123 subdomain, as custom resource names must be.
pub(crate) fn validate(obj: &Value, errs: &mut Vec<FieldError>) {
    let meta = match obj.get("metadata") {
        None | Some(Value::Null) => {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
            return;
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            let actual = json_type(other);
            errs.push(FieldError::new(
                ErrorType::TypeInvalid,
                "metadata",
                BadValue::Value(Value::from(actual)),
                format!("metadata in body must be of type object: \"{actual}\""),
            ));
            return;
        }
    };
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    let generate_name = meta.get("generateName").and_then(Value::as_str).unwrap_or_default();
    if let Some(v) = meta.get("name").filter(|v| !v.is_string() && !v.is_null()) {
        errs.push(type_error("metadata.name", v));
        return;
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
        return;
    }
    for msg in subdomain_errors(name) {
        errs.push(FieldError::invalid("metadata.name", Value::from(name), msg));
    }
}

/// `metadata.name` is immutable.
pub(crate) fn validate_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let name = |o: &Value| o.get("metadata").and_then(|m| m.get("name")).cloned().unwrap_or(Value::Null);
    let (new_name, old_name) = (name(new), name(old));
    if new_name != old_name && !old_name.is_null() {
        errs.push(FieldError::invalid("metadata.name", new_name, "field is immutable"));
    }
}

fn type_error(field: &str, v: &Value) -> FieldError {
    let actual = json_type(v);
    FieldError::new(
        ErrorType::TypeInvalid,
        field,
        BadValue::Value(Value::from(actual)),
        format!("{field} in body must be of type string: \"{actual}\""),
    )
}

/// `validation.IsDNS1123Subdomain`, with the apiserver's messages.
fn subdomain_errors(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !SUBDOMAIN.as_ref().is_some_and(|r| r.is_match(name)) {
        out.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN}')"
        ));
    }
    out
}
