//! The structural part of admission: unknown fields (strict field validation), pruning of
//! non-nullable nulls, defaulting, and OpenAPI v3 validation with the apiserver's messages
//! (kube-openapi's validators as mapped to field errors by `kubeOpenAPIResultToFieldErrors`).

use serde_json::{Map, Value};

use crate::error::{BadValue, ErrorType, FieldError, Path, Seg, go_float, go_quote};
use crate::schema::Node;

/// Top-level keys the apiserver accepts on every custom resource besides its schema's properties.
const ROOT_META: &[&str] = &["apiVersion", "kind", "metadata"];

/// Collects fields the schema does not declare, as `unknown field "spec.foo"` errors. Map keys
/// and list indices are part of the path (`spec.environmentOverrides.prod.foo`,
/// `spec.artifacts[0].foo`).
pub(crate) fn unknown_fields(node: &Node, value: &Value, path: &Path, is_root: bool, errs: &mut Vec<FieldError>) {
    if node.preserve_unknown && node.properties.is_empty() && node.additional.is_none() {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if (is_root || node.embedded_resource) && ROOT_META.contains(&key.as_str()) {
                    continue;
                }
                let child_path = path.field(key);
                if let Some(child_node) = node.child(key) {
                    unknown_fields(child_node, child, &child_path, false, errs);
                } else if !node.preserve_unknown {
                    errs.push(FieldError::new(ErrorType::UnknownField, child_path.plain(), BadValue::Omitted, ""));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_node, item, &path.index(i), false, errs);
                }
            }
        }
        _ => {}
    }
}

/// Removes fields the schema does not declare (what the apiserver stores after pruning).
pub(crate) fn prune(node: &Node, value: &mut Value, is_root: bool) {
    if node.preserve_unknown && node.properties.is_empty() && node.additional.is_none() {
        return;
    }
    match value {
        Value::Object(map) => {
            map.retain(|key, _| {
                ((is_root || node.embedded_resource) && ROOT_META.contains(&key.as_str()))
                    || node.child(key).is_some()
                    || node.preserve_unknown
            });
            for (key, child) in map.iter_mut() {
                if let Some(child_node) = node.child(key) {
                    prune(child_node, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for item in items {
                    prune(item_node, item, false);
                }
            }
        }
        _ => {}
    }
}

/// `PruneNonNullableNullsWithoutDefaults`: a `null` for a field that is neither nullable nor
/// defaulted is dropped, as if it had not been written.
pub(crate) fn prune_nulls(node: &Node, value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, v| match node.child(key) {
                Some(child) => !(v.is_null() && !child.nullable && child.default.is_none()),
                None => true,
            });
            for (key, child) in map.iter_mut() {
                if let Some(child_node) = node.child(key) {
                    prune_nulls(child_node, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for item in items {
                    prune_nulls(item_node, item);
                }
            }
        }
        _ => {}
    }
}

/// Structural defaulting: a missing (or non-nullable null) property with a `default` gets it, and
/// defaulting continues inside what was just set.
pub(crate) fn apply_defaults(node: &Node, value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, prop) in &node.properties {
                if let Some(default) = &prop.default {
                    let missing = match map.get(key) {
                        None => true,
                        Some(v) => v.is_null() && !prop.nullable,
                    };
                    if missing {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
            for (key, child) in map.iter_mut() {
                if let Some(child_node) = node.child(key) {
                    apply_defaults(child_node, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for item in items.iter_mut() {
                    if let (true, Some(default)) = (item.is_null() && !item_node.nullable, &item_node.default) {
                        *item = default.clone();
                    }
                    apply_defaults(item_node, item);
                }
            }
        }
        _ => {}
    }
}

/// The JSON type of a value, as kube-openapi names it.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integral(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0),
        _ => false,
    }
}

/// Validates `value` against `node` (OpenAPI v3 value validation). `old` is the correlated old
/// value on update: an unchanged value is not re-validated (ratcheting).
pub(crate) fn validate(node: &Node, value: &Value, old: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    if old.is_some_and(|o| o == value) {
        return;
    }
    let where_ = path.plain();
    let field = path.field_string();

    if value.is_null() {
        if !node.nullable {
            let expected = expected_type(node);
            if !expected.is_empty() {
                errs.push(type_error(&field, &where_, &expected, "null"));
            }
        }
        return;
    }

    // type
    if node.int_or_string {
        if !(value.is_string() || is_integral(value)) {
            errs.push(type_error(&field, &where_, "integer,string", json_type(value)));
            return;
        }
    } else if let Some(ty) = &node.ty {
        let actual = json_type(value);
        let ok = match ty.as_str() {
            "integer" => is_integral(value),
            "number" => value.is_number(),
            other => other == actual,
        };
        if !ok {
            errs.push(type_error(&field, &where_, ty, actual));
            return;
        }
    }

    match value {
        Value::String(s) => validate_string(node, s, &field, &where_, errs),
        Value::Number(_) => validate_number(node, value, &field, &where_, errs),
        _ => {}
    }
    if let Value::Array(items) = value {
        if let Some(item_node) = &node.items {
            for (i, item) in items.iter().enumerate() {
                let old_item = crate::cel::correlate(node, item, old);
                validate(item_node, item, old_item, &path.index(i), errs);
            }
        }
        let n = items.len() as u64;
        if let Some(min) = node.min_items.filter(|m| n < *m) {
            errs.push(FieldError::invalid(
                &field,
                Value::from(n),
                format!("{where_} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = node.max_items.filter(|m| n > *m) {
            errs.push(FieldError::new(
                ErrorType::TooMany,
                &field,
                BadValue::Value(Value::from(n)),
                format!("must have at most {max} items"),
            ));
        }
    }
    if let Some(allowed) = node.enum_values.as_ref().filter(|a| !a.contains(value)) {
        let values: Vec<String> = allowed
            .iter()
            .map(|v| match v {
                Value::String(s) => go_quote(s),
                other => go_quote(&other.to_string()),
            })
            .collect();
        let detail = if values.is_empty() { String::new() } else { format!("supported values: {}", values.join(", ")) };
        errs.push(FieldError::new(ErrorType::NotSupported, &field, BadValue::Value(value.clone()), detail));
    }
    if let Value::Object(map) = value {
        validate_object(node, map, old, path, &field, &where_, errs);
    }
}

fn validate_object(
    node: &Node,
    map: &Map<String, Value>,
    old: Option<&Value>,
    path: &Path,
    field: &str,
    where_: &str,
    errs: &mut Vec<FieldError>,
) {
    let n = map.len() as u64;
    if let Some(max) = node.max_properties.filter(|m| n > *m) {
        errs.push(FieldError::new(
            ErrorType::TooMany,
            field,
            BadValue::Value(Value::from(n)),
            format!("must have at most {max} items"),
        ));
    }
    if let Some(min) = node.min_properties.filter(|m| n < *m) {
        errs.push(FieldError::invalid(
            field,
            Value::from(min),
            format!("{where_} in body should have at least {min} properties"),
        ));
    }
    for key in &node.required {
        if !map.contains_key(key) {
            errs.push(FieldError::required(path.field(key).field_string(), ""));
        }
    }
    for (key, child) in map {
        let child_old = old.and_then(|o| o.get(key));
        if let Some(prop) = node.properties.get(key) {
            validate(prop, child, child_old, &path.field(key), errs);
        } else if let Some(additional) = &node.additional {
            // kube-openapi writes map keys like properties: `spec.tags.team in body ...`.
            validate(additional, child, child_old, &path.child(Seg::Field(key.clone())), errs);
        }
    }
}

fn validate_string(node: &Node, s: &str, field: &str, where_: &str, errs: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(max) = node.max_length.filter(|m| len > *m) {
        errs.push(FieldError::new(
            ErrorType::TooLong,
            field,
            BadValue::Omitted,
            format!("may not be longer than {max}"),
        ));
    }
    if let Some(min) = node.min_length.filter(|m| len < *m) {
        errs.push(FieldError::invalid(
            field,
            Value::from(s),
            format!("{where_} in body should be at least {min} chars long"),
        ));
    }
    if let Some((source, _)) = node.pattern.as_ref().filter(|(_, re)| !re.is_match(s)) {
        errs.push(FieldError::invalid(field, Value::from(s), format!("{where_} in body should match '{source}'")));
    }
    if let Some(format) = node.format.as_ref().filter(|f| !crate::formats::check(f, s)) {
        errs.push(FieldError::new(
            ErrorType::TypeInvalid,
            field,
            BadValue::Value(Value::from(s)),
            format!("{where_} in body must be of type {format}: {}", go_quote(s)),
        ));
    }
}

fn validate_number(node: &Node, value: &Value, field: &str, where_: &str, errs: &mut Vec<FieldError>) {
    let Some(x) = value.as_f64() else { return };
    if let Some(max) = node.maximum {
        let bad = if node.exclusive_maximum { x >= max } else { x > max };
        if bad {
            let op = if node.exclusive_maximum { "less than" } else { "less than or equal to" };
            errs.push(FieldError::invalid(
                field,
                value.clone(),
                format!("{where_} in body should be {op} {}", go_float(max)),
            ));
        }
    }
    if let Some(min) = node.minimum {
        let bad = if node.exclusive_minimum { x <= min } else { x < min };
        if bad {
            let op = if node.exclusive_minimum { "greater than" } else { "greater than or equal to" };
            errs.push(FieldError::invalid(
                field,
                value.clone(),
                format!("{where_} in body should be {op} {}", go_float(min)),
            ));
        }
    }
    if let Some(factor) = node.multiple_of.filter(|f| *f > 0.0) {
        let q = x / factor;
        if (q - q.round()).abs() > 1e-9 {
            errs.push(FieldError::invalid(
                field,
                value.clone(),
                format!("{where_} in body should be a multiple of {}", go_float(factor)),
            ));
        }
    }
}

fn expected_type(node: &Node) -> String {
    if node.int_or_string { "integer,string".to_string() } else { node.ty.clone().unwrap_or_default() }
}

fn type_error(field: &str, where_: &str, expected: &str, actual: &str) -> FieldError {
    FieldError::new(
        ErrorType::TypeInvalid,
        field,
        BadValue::Value(Value::from(actual)),
        format!("{where_} in body must be of type {expected}: {}", go_quote(actual)),
    )
}

/// `x-kubernetes-list-type: set` items must be unique, `map` items unique by their keys
/// (`structurallisttype.ValidateListSetsAndMaps`).
pub(crate) fn list_types(node: &Node, value: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if let Some(prop) = node.properties.get(key) {
                    list_types(prop, child, &path.field(key), errs);
                } else if let Some(additional) = &node.additional {
                    list_types(additional, child, &path.child(Seg::Key(key.clone())), errs);
                }
            }
        }
        Value::Array(items) => {
            match node.list_type.as_deref() {
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].contains(item) {
                            errs.push(FieldError::new(
                                ErrorType::Duplicate,
                                path.index(i).field_string(),
                                BadValue::Value(item.clone()),
                                "",
                            ));
                        }
                    }
                }
                Some("map") => {
                    let key_of = |item: &Value| -> Vec<Value> {
                        node.list_map_keys.iter().map(|k| item.get(k).cloned().unwrap_or(Value::Null)).collect()
                    };
                    for (i, item) in items.iter().enumerate() {
                        let key = key_of(item);
                        if items[..i].iter().any(|earlier| key_of(earlier) == key) {
                            let shown: Map<String, Value> = node
                                .list_map_keys
                                .iter()
                                .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
                                .collect();
                            errs.push(FieldError::new(
                                ErrorType::Duplicate,
                                path.index(i).field_string(),
                                BadValue::Value(Value::Object(shown)),
                                "",
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item_node) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    list_types(item_node, item, &path.index(i), errs);
                }
            }
        }
        _ => {}
    }
}
