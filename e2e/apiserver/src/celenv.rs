//! The CEL environment of admission policies: JSON objects become CEL values the way
//! kube-apiserver types them (property names escaped, `date-time` strings as timestamps,
//! `duration` strings as durations, `byte` strings as bytes, map keys as they are), evaluated with
//! kube-cel's Kubernetes function libraries — the dialect kiln-schema evaluates CRD rules in.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use kube_cel::KubeCelExt;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use serde_json::Value;

/// CEL reserved words: a property with one of these names is accessed as `__name__`.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A property name as CEL sees it (kube-apiserver's escaping): `__` → `__underscores__`, `.` →
/// `__dot__`, `-` → `__dash__`, `/` → `__slash__`, a reserved word → `__word__`.
pub fn escape(name: &str) -> String {
    if RESERVED.contains(&name) {
        return format!("__{name}__");
    }
    if !name.contains(['_', '.', '-', '/']) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 8);
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("__") {
            out.push_str("__underscores__");
            rest = r;
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn key(s: &str) -> Key {
    Key::String(Arc::new(s.to_string()))
}

/// A CEL map from (key, value) pairs.
pub fn map(entries: Vec<(&str, Cel)>) -> Cel {
    let m: HashMap<Key, Cel> = entries.into_iter().map(|(k, v)| (key(k), v)).collect();
    Cel::Map(Map { map: Arc::new(m) })
}

/// A CEL string.
pub fn string(s: &str) -> Cel {
    Cel::String(Arc::new(s.to_string()))
}

fn number(n: &serde_json::Number) -> Cel {
    if let Some(i) = n.as_i64() {
        Cel::Int(i)
    } else if let Some(u) = n.as_u64() {
        Cel::UInt(u)
    } else {
        Cel::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// How a JSON value is typed.
#[derive(Clone, Copy)]
pub enum Shape<'a> {
    /// No schema: objects keep their keys (plus `__word__` aliases of reserved words), strings
    /// stay strings.
    Untyped,
    /// A structural schema node (`openAPIV3Schema` of a CRD version, or below).
    Schema(&'a Value),
    /// `metadata` (ObjectMeta): labels and annotations are maps, the timestamps are timestamps.
    ObjectMeta,
}

/// Converts a JSON value to a CEL value.
pub fn to_cel(v: &Value, shape: Shape<'_>) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => number(n),
        Value::String(s) => string_value(s, shape),
        Value::Array(items) => {
            let item_shape = match shape {
                Shape::Schema(s) => s.get("items").map_or(Shape::Untyped, Shape::Schema),
                _ => Shape::Untyped,
            };
            Cel::List(Arc::new(items.iter().map(|i| to_cel(i, item_shape)).collect()))
        }
        Value::Object(obj) => {
            let mut m: HashMap<Key, Cel> = HashMap::with_capacity(obj.len());
            for (k, child) in obj {
                match shape {
                    Shape::Schema(s) => {
                        if let Some(prop) = s.get("properties").and_then(|p| p.get(k)) {
                            m.insert(key(&escape(k)), to_cel(child, Shape::Schema(prop)));
                        } else if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
                            m.insert(key(k), to_cel(child, Shape::Schema(add)));
                        } else {
                            // Preserved unknown fields.
                            insert_untyped(&mut m, k, child);
                        }
                    }
                    Shape::ObjectMeta => {
                        let c = match k.as_str() {
                            "labels" | "annotations" => to_cel(child, Shape::Untyped),
                            "creationTimestamp" | "deletionTimestamp" => match child.as_str() {
                                Some(s) => timestamp(s).unwrap_or_else(|| string(s)),
                                None => to_cel(child, Shape::Untyped),
                            },
                            _ => to_cel(child, Shape::Untyped),
                        };
                        if RESERVED.contains(&k.as_str()) {
                            m.insert(key(&escape(k)), c.clone());
                        }
                        m.insert(key(k), c);
                    }
                    Shape::Untyped => insert_untyped(&mut m, k, child),
                }
            }
            Cel::Map(Map { map: Arc::new(m) })
        }
    }
}

/// Converts a whole object: `metadata` as ObjectMeta, `apiVersion` and `kind` as strings, the
/// rest by the schema (a CRD version's `openAPIV3Schema`) or untyped.
pub fn object_to_cel(v: &Value, schema: Option<&Value>) -> Cel {
    let Some(obj) = v.as_object() else { return to_cel(v, Shape::Untyped) };
    let mut m: HashMap<Key, Cel> = HashMap::with_capacity(obj.len());
    for (k, child) in obj {
        match (k.as_str(), schema.and_then(|s| s.get("properties")).and_then(|p| p.get(k))) {
            ("metadata", _) => {
                m.insert(key(k), to_cel(child, Shape::ObjectMeta));
            }
            (_, Some(prop)) => {
                m.insert(key(&escape(k)), to_cel(child, Shape::Schema(prop)));
            }
            (_, None) => insert_untyped(&mut m, k, child),
        }
    }
    Cel::Map(Map { map: Arc::new(m) })
}

/// Untyped objects: keys as they are, and `__word__` for reserved words (kube-apiserver escapes
/// those in typed objects; both spellings are accepted here).
fn insert_untyped(m: &mut HashMap<Key, Cel>, k: &str, child: &Value) {
    let c = to_cel(child, Shape::Untyped);
    if RESERVED.contains(&k) {
        m.insert(key(&escape(k)), c.clone());
    }
    m.insert(key(k), c);
}

fn string_value(s: &str, shape: Shape<'_>) -> Cel {
    let Shape::Schema(schema) = shape else { return string(s) };
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return string(s);
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => timestamp(s).unwrap_or_else(|| string(s)),
        Some("duration") => duration(s).unwrap_or_else(|| string(s)),
        Some("byte") => {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => Cel::Bytes(Arc::new(b)),
                Err(_) => string(s),
            }
        }
        _ => string(s),
    }
}

fn timestamp(s: &str) -> Option<Cel> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(Cel::Timestamp)
}

/// A Go duration (`1h30m`, `500ms`, `-2s`).
fn duration(s: &str) -> Option<Cel> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(Cel::Duration(chrono::Duration::zero()));
    }
    let mut nanos: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += n * factor;
        rest = &rest[unit_end..];
    }
    let nanos = if neg { -nanos } else { nanos };
    Some(Cel::Duration(chrono::Duration::nanoseconds(nanos as i64)))
}

/// The functions every evaluation starts from (the CEL standard library and kube-cel's
/// Kubernetes libraries), registered once.
static BASE: LazyLock<Context<'static>> = LazyLock::new(|| Context::default().with_all());

/// A scope to bind variables in and evaluate programs with.
pub fn scope() -> Context<'static> {
    BASE.new_inner_scope()
}

/// Compiles an expression; the error text is the parser's.
pub fn compile(expr: &str) -> Result<Program, String> {
    Program::compile(expr).map_err(|e| e.to_string())
}

/// A CEL value as JSON-ish text for messages (strings unquoted).
pub fn display(v: &Cel) -> Option<String> {
    match v {
        Cel::String(s) => Some((**s).clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, vars: &[(&str, Cel)]) -> Result<Cel, String> {
        let mut ctx = scope();
        for (n, v) in vars {
            ctx.add_variable_from_value(*n, v.clone());
        }
        compile(expr)?.execute(&ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("namespace"), "__namespace__");
        assert_eq!(escape("x-prop"), "x__dash__prop");
        assert_eq!(escape("redact__d"), "redact__underscores__d");
        assert_eq!(escape("a.b/c"), "a__dot__b__slash__c");
        assert_eq!(escape("my_field"), "my_field");
        assert_eq!(escape("string"), "string");
    }

    #[test]
    fn objects_with_and_without_schema() {
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "at": {"type": "string", "format": "date-time"},
                "x-y": {"type": "string"},
                "m": {"type": "object", "additionalProperties": {"type": "string"}}}}}});
        let obj = json!({"apiVersion": "kiln.dev/v1alpha1", "metadata": {"name": "a", "namespace": "ns",
            "labels": {"kiln.dev/x": "1"}}, "spec": {"at": "2025-01-02T03:04:05Z", "x-y": "v", "m": {"a-b": "c"}}});
        let o = object_to_cel(&obj, Some(&schema));
        let vars = [("object", o)];
        assert_eq!(eval("object.spec.at < timestamp('2026-01-01T00:00:00Z')", &vars), Ok(Cel::Bool(true)));
        assert_eq!(eval("object.spec.x__dash__y == 'v'", &vars), Ok(Cel::Bool(true)));
        assert_eq!(eval("object.spec.m['a-b'] == 'c'", &vars), Ok(Cel::Bool(true)));
        assert_eq!(eval("object.metadata.labels['kiln.dev/x'] == '1'", &vars), Ok(Cel::Bool(true)));
        assert_eq!(eval("object.metadata.__namespace__ == 'ns'", &vars), Ok(Cel::Bool(true)));
        assert_eq!(eval("object.metadata.namespace == 'ns'", &vars), Ok(Cel::Bool(true)));
        assert_eq!(eval("object.apiVersion.startsWith('kiln.dev/')", &vars), Ok(Cel::Bool(true)));
        assert!(eval("object.spec.missing == 1", &vars).is_err());
        assert_eq!(eval("has(object.spec.missing)", &vars), Ok(Cel::Bool(false)));
    }

    #[test]
    fn the_charts_dialect() {
        let req = map(vec![(
            "userInfo",
            map(vec![
                ("username", string("alice")),
                ("groups", Cel::List(Arc::new(vec![string("kiln:security"), string("system:authenticated")]))),
            ]),
        )]);
        let vars = [("request", req), ("oldObject", Cel::Null)];
        assert_eq!(
            eval(
                r#"request.userInfo.groups.filter(g, g in {"kiln:security": ["security"]}).map(g, {"kiln:security": ["security"]}[g])"#,
                &vars
            )
            .map(|v| format!("{v:?}")),
            Ok(r#"List([List([String("security")])])"#.to_string())
        );
        assert_eq!(eval("false && has(oldObject.spec.approvals)", &vars), Ok(Cel::Bool(false)));
        assert_eq!(eval("['a', 'b'].join(',') + 'X'.lowerAscii()", &vars), Ok(string("a,bx")));
        assert_eq!(
            eval("[0, 1, 2].filter(i, i >= 1 && i < 2).map(i, i * 10)", &vars).map(|v| format!("{v:?}")),
            Ok("List([Int(10)])".into())
        );
        assert_eq!(eval("has(request.userInfo.groups) ? size(request.userInfo.groups) : 0", &vars), Ok(Cel::Int(2)));
        assert_eq!(eval("duration('1h') > duration('30m')", &vars), Ok(Cel::Bool(true)));
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            duration("1h30m").map(|d| format!("{d:?}")),
            Some(format!("{:?}", Cel::Duration(chrono::Duration::minutes(90))))
        );
        assert!(duration("x").is_none());
    }
}
