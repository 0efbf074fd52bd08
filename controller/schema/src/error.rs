//! Field errors shaped like the apiserver's (`k8s.io/apimachinery/pkg/util/validation/field`), so
//! `kubectl kiln lint`, the in-repo API server and a real cluster say the same thing.

use std::fmt;

use serde_json::Value;

/// Why a field is invalid. The variants mirror `field.ErrorType`; [`ErrorType::UnknownField`] is
/// the apiserver's strict field validation (`fieldValidation=Strict`, kubectl's default), which
/// rejects the request before validation with `strict decoding error: unknown field "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// `Not found`.
    NotFound,
    /// `Required value`.
    Required,
    /// `Duplicate value`.
    Duplicate,
    /// `Invalid value` (including failed CEL rules).
    Invalid,
    /// `Unsupported value` (enums).
    NotSupported,
    /// `Forbidden`.
    Forbidden,
    /// `Too long` (maxLength).
    TooLong,
    /// `Too many` (maxItems, maxProperties).
    TooMany,
    /// `Internal error`: the validator itself could not run (never the manifest's fault).
    Internal,
    /// `Invalid value` for a value of the wrong type or format.
    TypeInvalid,
    /// A field the schema does not declare.
    UnknownField,
}

impl ErrorType {
    /// The machine-readable cause type the apiserver puts in `Status.details.causes[].reason`
    /// (`FieldValueRequired`, ...). Unknown fields have no cause type in Kubernetes (the request
    /// fails as a whole with 400 BadRequest); kiln uses `FieldValueUnknown`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
            ErrorType::UnknownField => "FieldValueUnknown",
        }
    }

    /// The human label, as in `spec.x: Required value`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::UnknownField => "Unknown field",
        }
    }

    /// Whether the apiserver skips the CEL rules after an error of this type (its
    /// `hasBlockingErr`: the object does not have the shape the rules were written for).
    pub(crate) fn blocks_cel(self) -> bool {
        matches!(
            self,
            ErrorType::NotSupported
                | ErrorType::Required
                | ErrorType::TooLong
                | ErrorType::TooMany
                | ErrorType::TypeInvalid
                | ErrorType::Internal
        )
    }
}

/// The offending value as the apiserver prints it, or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    /// Not printed (`Required value`, `Forbidden`, `Too long`, unknown fields).
    Omitted,
    /// Printed the way Go's `%v` / `%q` prints it: strings quoted, numbers and booleans bare.
    Value(Value),
}

/// One invalid field: where, why, and the message a user sees.
///
/// `Display` renders it exactly like `field.Error.Error()` in Kubernetes, e.g.
/// `spec.type: Unsupported value: "foo": supported values: "standard", "normal", "emergency", "hotfix"`,
/// `spec.service: Required value`, or for a failed CEL rule
/// `spec.artifacts[0].image: Invalid value: "string": image must be pinned by digest: ...`
/// (the apiserver prints the schema type of the rule's node, not the value). Unknown fields
/// render as `unknown field "spec.foo"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The kind of error.
    pub kind: ErrorType,
    /// The field path, e.g. `spec.artifacts[0].image`; `<nil>` for the object itself (as the
    /// apiserver prints root-level CEL errors).
    pub field: String,
    /// The offending value, as printed.
    pub bad_value: BadValue,
    /// What is wrong (the CEL rule's message, the schema constraint, ...).
    pub detail: String,
}

impl FieldError {
    pub(crate) fn new(
        kind: ErrorType,
        field: impl Into<String>,
        bad_value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        FieldError { kind, field: field.into(), bad_value, detail: detail.into() }
    }

    pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError::new(ErrorType::Required, field, BadValue::Omitted, detail)
    }

    pub(crate) fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        FieldError::new(ErrorType::Invalid, field, BadValue::Value(value), detail)
    }

    pub(crate) fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError::new(ErrorType::Internal, field, BadValue::Omitted, detail)
    }

    /// Whether this is an unknown (undeclared) field rather than an invalid value. The apiserver
    /// answers unknown fields with 400 BadRequest (`strict decoding error: ...`) and invalid values
    /// with 422 Invalid.
    pub fn is_unknown_field(&self) -> bool {
        self.kind == ErrorType::UnknownField
    }

    /// The message without the field path (`field.Error.ErrorBody()`).
    pub fn body(&self) -> String {
        let mut s = String::new();
        if self.kind == ErrorType::UnknownField {
            s.push_str("unknown field ");
            s.push_str(&go_quote(&self.field));
            return s;
        }
        s.push_str(self.kind.label());
        let omit =
            matches!(self.kind, ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal);
        if let (false, BadValue::Value(v)) = (omit, &self.bad_value) {
            s.push_str(": ");
            s.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ErrorType::UnknownField {
            f.write_str(&self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

impl std::error::Error for FieldError {}

/// Renders a JSON value the way `field.Error` prints a bad value decoded from JSON: strings with
/// `%q`, numbers and booleans with `%v`, null as `"null"`, composites like `%#v`.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => go_quote("null"),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::Array(_) | Value::Object(_) => go_composite(v),
    }
}

fn go_composite(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_composite).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map.iter().map(|(k, v)| format!("{}:{}", go_quote(k), go_composite(v))).collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Null => "interface {}(nil)".to_string(),
        other => go_value(other),
    }
}

fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) => go_float(f),
        None => n.to_string(),
    }
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`), for the common cases.
pub(crate) fn go_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 { format!("{f:.0}") } else { format!("{f}") }
}

/// Go's `strconv.Quote` for the characters manifests contain.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A field path, rendered like `field.Path`: `spec.artifacts[0].image`, map keys as `[key]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Path(Vec<Seg>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A property, or a map key where the apiserver writes it like one (OpenAPI errors, pruning).
    Field(String),
    /// A map key written `[key]` (CEL errors).
    Key(String),
    /// A list index.
    Index(usize),
}

impl Path {
    pub(crate) fn root() -> Self {
        Path(Vec::new())
    }

    pub(crate) fn child(&self, seg: Seg) -> Self {
        let mut segs = self.0.clone();
        segs.push(seg);
        Path(segs)
    }

    pub(crate) fn field(&self, name: &str) -> Self {
        self.child(Seg::Field(name.to_string()))
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        self.child(Seg::Index(i))
    }

    /// The path as the apiserver prints a field error's `Field` (`<nil>` at the root).
    pub(crate) fn field_string(&self) -> String {
        if self.0.is_empty() { "<nil>".to_string() } else { self.plain() }
    }

    /// The path as kube-openapi writes it inside messages (`spec.x in body ...`; empty at the root).
    pub(crate) fn plain(&self) -> String {
        let mut s = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Field(name) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(name);
                }
                Seg::Key(key) => {
                    s.push('[');
                    s.push_str(key);
                    s.push(']');
                }
                Seg::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_the_apiserver() {
        let e = FieldError::new(
            ErrorType::NotSupported,
            "spec.type",
            BadValue::Value(json!("foo")),
            "supported values: \"standard\", \"normal\"",
        );
        assert_eq!(e.to_string(), r#"spec.type: Unsupported value: "foo": supported values: "standard", "normal""#);
        assert_eq!(FieldError::required("spec.service", "").to_string(), "spec.service: Required value");
        let too_many =
            FieldError::new(ErrorType::TooMany, "spec.x", BadValue::Value(json!(9)), "must have at most 8 items");
        assert_eq!(too_many.to_string(), "spec.x: Too many: 9: must have at most 8 items");
        let unknown = FieldError::new(ErrorType::UnknownField, "spec.foo", BadValue::Omitted, "");
        assert_eq!(unknown.to_string(), r#"unknown field "spec.foo""#);
        assert_eq!(go_value(&json!(65535.0)), "65535");
        assert_eq!(go_value(&json!(0.5)), "0.5");
        assert_eq!(go_value(&Value::Null), "\"null\"");
    }

    #[test]
    fn paths() {
        let p = Path::root().field("spec").field("artifacts").index(0).field("image");
        assert_eq!(p.field_string(), "spec.artifacts[0].image");
        assert_eq!(Path::root().field_string(), "<nil>");
        let k = Path::root().field("spec").child(Seg::Key("prod".into())).field("traffic");
        assert_eq!(k.field_string(), "spec[prod].traffic");
    }
}
