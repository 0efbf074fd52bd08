//! A structural schema (the `openAPIV3Schema` of a CRD version) parsed once into a tree.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use crate::SchemaError;
use crate::cel::CelNode;

/// One node of a structural schema.
#[derive(Debug)]
pub(crate) struct Node {
    /// `type` (object, array, string, integer, number, boolean); absent for int-or-string and
    /// preserve-unknown-fields nodes.
    pub ty: Option<String>,
    pub nullable: bool,
    pub format: Option<String>,
    pub properties: BTreeMap<String, Node>,
    pub additional: Option<Box<Node>>,
    pub items: Option<Box<Node>>,
    pub required: Vec<String>,
    pub enum_values: Option<Vec<Value>>,
    pub pattern: Option<(String, Regex)>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub default: Option<Value>,
    pub preserve_unknown: bool,
    pub int_or_string: bool,
    pub embedded_resource: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    /// The node's `x-kubernetes-validations`, compiled.
    pub cel: Option<CelNode>,
    /// Where this node is in the schema (`spec.artifacts[*].image`), for messages.
    pub schema_path: String,
}

/// Keywords a structural schema may carry that this validator does not implement. A schema using
/// them is refused when the validator is built, so nothing is silently skipped.
const UNSUPPORTED: &[&str] = &["allOf", "anyOf", "oneOf", "not", "$ref", "patternProperties"];

impl Node {
    pub(crate) fn parse(json: &Value, schema_path: &str) -> Result<Node, SchemaError> {
        let obj = json.as_object().ok_or_else(|| SchemaError::Schema {
            path: schema_path.to_string(),
            message: "schema node is not an object".to_string(),
        })?;
        // `uniqueItems: true` is not allowed in structural schemas (use x-kubernetes-list-type).
        let unique = obj.get("uniqueItems").and_then(Value::as_bool) == Some(true);
        for key in UNSUPPORTED.iter().copied().chain(unique.then_some("uniqueItems")) {
            if obj.contains_key(key) {
                return Err(SchemaError::Schema {
                    path: schema_path.to_string(),
                    message: format!("`{key}` is not supported by kiln-schema"),
                });
            }
        }
        let str_of = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let u64_of = |k: &str| obj.get(k).and_then(Value::as_u64);
        let f64_of = |k: &str| obj.get(k).and_then(Value::as_f64);
        let bool_of = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);

        let mut properties = BTreeMap::new();
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let child_path = join(schema_path, name);
                properties.insert(name.clone(), Node::parse(child, &child_path)?);
            }
        }
        let additional = match obj.get("additionalProperties") {
            Some(v @ Value::Object(_)) => Some(Box::new(Node::parse(v, &format!("{schema_path}[*]"))?)),
            Some(Value::Bool(true)) => Some(Box::new(Node::any(&format!("{schema_path}[*]")))),
            _ => None,
        };
        let items = match obj.get("items") {
            Some(v) => Some(Box::new(Node::parse(v, &format!("{schema_path}[*]"))?)),
            None => None,
        };
        let pattern = match str_of("pattern") {
            Some(p) => {
                let re = Regex::new(&p).map_err(|e| SchemaError::Schema {
                    path: schema_path.to_string(),
                    message: format!("pattern {p:?} does not compile: {e}"),
                })?;
                Some((p, re))
            }
            None => None,
        };
        let required = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let list_map_keys = obj
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();

        let mut node = Node {
            ty: str_of("type"),
            nullable: bool_of("nullable"),
            format: str_of("format"),
            properties,
            additional,
            items,
            required,
            enum_values: obj.get("enum").and_then(Value::as_array).cloned(),
            pattern,
            min_length: u64_of("minLength"),
            max_length: u64_of("maxLength"),
            min_items: u64_of("minItems"),
            max_items: u64_of("maxItems"),
            min_properties: u64_of("minProperties"),
            max_properties: u64_of("maxProperties"),
            minimum: f64_of("minimum"),
            maximum: f64_of("maximum"),
            exclusive_minimum: bool_of("exclusiveMinimum"),
            exclusive_maximum: bool_of("exclusiveMaximum"),
            multiple_of: f64_of("multipleOf"),
            default: obj.get("default").cloned(),
            preserve_unknown: bool_of("x-kubernetes-preserve-unknown-fields"),
            int_or_string: bool_of("x-kubernetes-int-or-string"),
            embedded_resource: bool_of("x-kubernetes-embedded-resource"),
            list_type: str_of("x-kubernetes-list-type"),
            list_map_keys,
            cel: None,
            schema_path: schema_path.to_string(),
        };
        if obj.get("x-kubernetes-validations").is_some() {
            node.cel = Some(CelNode::compile(json, schema_path)?);
        }
        Ok(node)
    }

    /// A node that accepts anything (`additionalProperties: true`).
    fn any(schema_path: &str) -> Node {
        Node {
            ty: None,
            nullable: true,
            format: None,
            properties: BTreeMap::new(),
            additional: None,
            items: None,
            required: Vec::new(),
            enum_values: None,
            pattern: None,
            min_length: None,
            max_length: None,
            min_items: None,
            max_items: None,
            min_properties: None,
            max_properties: None,
            minimum: None,
            maximum: None,
            exclusive_minimum: false,
            exclusive_maximum: false,
            multiple_of: None,
            default: None,
            preserve_unknown: true,
            int_or_string: false,
            embedded_resource: false,
            list_type: None,
            list_map_keys: Vec::new(),
            cel: None,
            schema_path: schema_path.to_string(),
        }
    }

    /// The child schema for a key of an object value: a declared property or the map value.
    pub(crate) fn child(&self, key: &str) -> Option<&Node> {
        self.properties.get(key).or(self.additional.as_deref())
    }

    /// The type name the apiserver prints for this node in CEL errors (`Invalid value: "object"`).
    pub(crate) fn type_name(&self) -> &str {
        match (&self.ty, self.int_or_string) {
            (Some(t), _) => t,
            (None, true) => "integer,string",
            (None, false) => "",
        }
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() { name.to_string() } else { format!("{base}.{name}") }
}
