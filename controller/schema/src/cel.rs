//! `x-kubernetes-validations`: compiled per schema node with kube-cel, evaluated the way the
//! apiserver's CEL validator walks an object.
//!
//! kube-cel's own validator walks the whole tree and correlates list items with `oldSelf` by
//! index; the apiserver correlates only `x-kubernetes-list-type: map` items (by key) and prints
//! map keys as `[key]`. So kiln walks the object itself and hands kube-cel one node at a time: each
//! node with rules gets a *shallow* compiled schema (its own rules, its subtree's types and formats
//! for the value conversion, no descendant rules), split into transition rules (`oldSelf`) and the
//! rest, so unchanged values can be ratcheted like the apiserver does on update.

use kube_cel::{CompiledSchema, ErrorKind, ValidationError, compile_schema};
use serde_json::{Map, Value};

use crate::SchemaError;
use crate::error::{BadValue, ErrorType, FieldError, Path, Seg};
use crate::schema::Node;

/// One `x-kubernetes-validations` entry, as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// The CEL expression.
    pub rule: String,
    /// The message shown when it fails.
    pub message: Option<String>,
    /// `fieldPath`, relative to the node.
    pub field_path: Option<String>,
    /// `reason` (FieldValueInvalid when absent).
    pub reason: Option<String>,
    /// Whether it is a transition rule (references `oldSelf`), evaluated only on update.
    pub transition: bool,
}

/// The compiled rules of one schema node.
#[derive(Debug)]
pub(crate) struct CelNode {
    pub rules: Vec<RuleInfo>,
    plain: Option<CompiledSchema>,
    transition: Option<CompiledSchema>,
}

impl CelNode {
    pub(crate) fn compile(node_json: &Value, schema_path: &str) -> Result<CelNode, SchemaError> {
        let mut shallow = node_json.clone();
        strip_descendant_rules(&mut shallow);
        let all = compile_schema(&shallow);
        let raw_rules: Vec<Value> =
            node_json.get("x-kubernetes-validations").and_then(Value::as_array).cloned().unwrap_or_default();
        if all.validations.len() != raw_rules.len() {
            return Err(SchemaError::Cel {
                path: schema_path.to_string(),
                rule: String::new(),
                message: "x-kubernetes-validations could not be read".to_string(),
            });
        }
        let mut rules = Vec::new();
        let mut plain_json = Vec::new();
        let mut transition_json = Vec::new();
        for (compiled, raw) in all.validations.iter().zip(raw_rules) {
            let compiled = compiled.as_ref().map_err(|e| SchemaError::Cel {
                path: schema_path.to_string(),
                rule: raw.get("rule").and_then(Value::as_str).unwrap_or_default().to_string(),
                message: e.to_string(),
            })?;
            rules.push(RuleInfo {
                rule: compiled.rule.rule.clone(),
                message: compiled.rule.message.clone(),
                field_path: compiled.rule.field_path.clone(),
                reason: compiled.rule.reason.clone(),
                transition: compiled.is_transition_rule,
            });
            if compiled.is_transition_rule {
                transition_json.push(raw);
            } else {
                plain_json.push(raw);
            }
        }
        let with_rules = |list: Vec<Value>| -> Option<CompiledSchema> {
            if list.is_empty() {
                return None;
            }
            let mut s = shallow.clone();
            if let Some(obj) = s.as_object_mut() {
                obj.insert("x-kubernetes-validations".to_string(), Value::Array(list));
            }
            Some(compile_schema(&s))
        };
        Ok(CelNode { rules, plain: with_rules(plain_json), transition: with_rules(transition_json) })
    }

    /// Evaluates this node's rules on `value` (with `old` on update).
    fn evaluate(&self, node: &Node, value: &Value, old: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
        // Ratcheting (CRDValidationRatcheting, GA in 1.33): on update, rules that do not look at
        // oldSelf are not re-run on a value that did not change.
        let unchanged = old.is_some_and(|o| o == value);
        if let (Some(plain), false) = (&self.plain, unchanged) {
            collect(kube_cel::validate_compiled(plain, value, None), node, path, errs);
        }
        if let Some(transition) = &self.transition {
            collect(kube_cel::validate_compiled(transition, value, old), node, path, errs);
        }
    }
}

fn collect(result: Result<(), kube_cel::ValidationErrors>, node: &Node, path: &Path, errs: &mut Vec<FieldError>) {
    if let Err(failures) = result {
        for failure in failures.iter() {
            errs.push(to_field_error(failure, node, path));
        }
    }
}

fn to_field_error(failure: &ValidationError, node: &Node, path: &Path) -> FieldError {
    // kube-cel reports "" or the rule's fieldPath (".a.b") relative to the node it was given.
    let mut target = path.clone();
    for seg in parse_field_path(&failure.field_path) {
        target = target.child(seg);
    }
    let field = target.field_string();
    // The apiserver prints the schema type of the rule's node as the "value".
    let type_value = Value::String(node.type_name().to_string());
    match failure.kind {
        ErrorKind::ValidationFailure => match failure.reason.as_deref() {
            Some("FieldValueForbidden") => {
                FieldError::new(ErrorType::Forbidden, field, BadValue::Omitted, failure.message.clone())
            }
            Some("FieldValueRequired") => FieldError::required(field, failure.message.clone()),
            Some("FieldValueDuplicate") => {
                FieldError::new(ErrorType::Duplicate, field, BadValue::Value(type_value), "")
            }
            _ => FieldError::invalid(field, type_value, failure.message.clone()),
        },
        _ => FieldError::invalid(field, type_value, format!("{}: {}", failure.rule.trim(), failure.message)),
    }
}

/// Parses a rule's `fieldPath` (`.spec.replicas`, `.labels['app.kubernetes.io/name']`).
pub(crate) fn parse_field_path(fp: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut rest = fp;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").unwrap_or(r.len());
            segs.push(Seg::Field(r[..end].to_string()));
            rest = r.get(end + 2..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            segs.push(Seg::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            match r[..end].parse::<usize>() {
                Ok(i) => segs.push(Seg::Index(i)),
                Err(_) => segs.push(Seg::Key(r[..end].to_string())),
            }
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            segs.push(Seg::Field(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    segs
}

fn strip_descendant_rules(node: &mut Value) {
    fn strip(v: &mut Value) {
        if let Some(obj) = v.as_object_mut() {
            obj.remove("x-kubernetes-validations");
            descend(obj);
        }
    }
    fn descend(obj: &mut Map<String, Value>) {
        if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            for child in props.values_mut() {
                strip(child);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = obj.get_mut(key) {
                strip(child);
            }
        }
    }
    if let Some(obj) = node.as_object_mut() {
        descend(obj);
    }
}

/// Walks `value` (and its correlated `old`) and evaluates every node's rules, like the apiserver's
/// CEL validator. At the root, `self` is the object with metadata reduced to name and
/// generateName, as the apiserver exposes it.
pub(crate) fn validate(root: &Node, value: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    walk(root, value, old, &Path::root(), errs, true);
}

fn walk(node: &Node, value: &Value, old: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>, is_root: bool) {
    if let Some(cel) = &node.cel {
        if is_root {
            let view = root_view(value);
            let old_view = old.map(root_view);
            cel.evaluate(node, &view, old_view.as_ref(), path, errs);
        } else {
            cel.evaluate(node, value, old, path, errs);
        }
    }
    match value {
        Value::Object(map) => {
            if node.preserve_unknown && node.properties.is_empty() && node.additional.is_none() {
                return;
            }
            for (key, child_value) in map {
                let child_old = old.and_then(|o| o.get(key));
                if let Some(prop) = node.properties.get(key) {
                    walk(prop, child_value, child_old, &path.field(key), errs, false);
                } else if let Some(additional) = &node.additional {
                    walk(additional, child_value, child_old, &path.child(Seg::Key(key.clone())), errs, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    let old_item = correlate(node, item, old);
                    walk(item_node, item, old_item, &path.index(i), errs, false);
                }
            }
        }
        _ => {}
    }
}

/// The old list item that corresponds to `item`: by key for `x-kubernetes-list-type: map`, by
/// value for sets; atomic lists do not correlate (the apiserver forbids transition rules there).
pub(crate) fn correlate<'a>(node: &Node, item: &Value, old: Option<&'a Value>) -> Option<&'a Value> {
    let old_items = old?.as_array()?;
    match node.list_type.as_deref() {
        Some("map") => old_items
            .iter()
            .find(|o| !node.list_map_keys.is_empty() && node.list_map_keys.iter().all(|k| o.get(k) == item.get(k))),
        Some("set") => old_items.iter().find(|o| *o == item),
        _ => None,
    }
}

/// `self` at the root of a custom resource: apiVersion, kind, metadata.name/generateName, and the
/// declared fields.
fn root_view(value: &Value) -> Value {
    let Some(obj) = value.as_object() else {
        return value.clone();
    };
    let mut out = obj.clone();
    if let Some(meta) = obj.get("metadata").and_then(Value::as_object) {
        let mut reduced = Map::new();
        for key in ["name", "generateName"] {
            if let Some(v) = meta.get(key) {
                reduced.insert(key.to_string(), v.clone());
            }
        }
        out.insert("metadata".to_string(), Value::Object(reduced));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths() {
        assert_eq!(parse_field_path(".artifacts"), vec![Seg::Field("artifacts".into())]);
        assert_eq!(
            parse_field_path(".target.ecs.artifact"),
            vec![Seg::Field("target".into()), Seg::Field("ecs".into()), Seg::Field("artifact".into())]
        );
        assert_eq!(parse_field_path(".labels['a.b/c']"), vec![Seg::Field("labels".into()), Seg::Field("a.b/c".into())]);
        assert!(parse_field_path("").is_empty());
    }
}
