//! Server-side printing: `meta.k8s.io/v1` `Table` answers (`Accept: application/json;as=Table;…`)
//! as kubectl asks for them. Custom resources get their CRD's `additionalPrinterColumns` evaluated
//! like the apiextensions-apiserver's table convertor (simple JSONPaths, `date` shown as an age);
//! built-in types get the columns kubectl shows for them against a real server (Namespace STATUS,
//! ConfigMap DATA, Secret TYPE/DATA, Lease HOLDER, Event columns) or NAME/AGE.

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

/// Whether an `Accept` header asks for a `Table`.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let params: Vec<&str> = first.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// A column: name, type, format, description, priority, and how to compute its cell.
struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    cell: Cell,
}

enum Cell {
    Name,
    Path(Vec<Step>),
    /// A fixed function of the object (built-in columns).
    Func(fn(&Value) -> Value),
}

fn age_column() -> Column {
    Column {
        name: "Age".into(),
        kind: "string".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created."
            .into(),
        priority: 0,
        cell: Cell::Func(|o| json!(age(o.pointer("/metadata/creationTimestamp")))),
    }
}

fn func(name: &str, kind: &str, description: &str, f: fn(&Value) -> Value) -> Column {
    Column {
        name: name.into(),
        kind: kind.into(),
        format: String::new(),
        description: description.into(),
        priority: 0,
        cell: Cell::Func(f),
    }
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let mut cols = vec![Column {
        name: "Name".into(),
        kind: "string".into(),
        format: "name".into(),
        description:
            "Name must be unique within a namespace. More info: http://kubernetes.io/docs/user-guide/identifiers#names"
                .into(),
        priority: 0,
        cell: Cell::Name,
    }];
    if rt.custom {
        if rt.printer_columns.is_empty() {
            cols.push(age_column());
        }
        for c in &rt.printer_columns {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let Ok(path) = parse_path(&s("jsonPath")) else { continue };
            cols.push(Column {
                name: s("name"),
                kind: s("type"),
                format: s("format"),
                description: s("description"),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                cell: Cell::Path(path),
            });
        }
        return cols;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => cols.push(func("Status", "string", "The status of the namespace", |o| {
            json!(o.pointer("/status/phase").and_then(Value::as_str).unwrap_or(""))
        })),
        ("", "ConfigMap") => cols.push(func("Data", "string", "Data contains the configuration data.", |o| {
            json!(count(o, "data") + count(o, "binaryData"))
        })),
        ("", "Secret") => {
            cols.push(func("Type", "string", "The type of the secret", |o| {
                json!(o.get("type").and_then(Value::as_str).unwrap_or("Opaque"))
            }));
            cols.push(func("Data", "string", "The number of items in the secret", |o| json!(count(o, "data"))));
        }
        ("coordination.k8s.io", "Lease") => cols.push(func("Holder", "string", "The holder of the lease", |o| {
            json!(o.pointer("/spec/holderIdentity").and_then(Value::as_str).unwrap_or(""))
        })),
        ("", "ServiceAccount") => cols.push(func("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.", |o| {
            json!(o.get("secrets").and_then(Value::as_array).map_or(0, Vec::len))
        })),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            cols.push(func("Created At", "date", "CreationTimestamp is a timestamp representing the server time when this object was created.", |o| {
                json!(o.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or(""))
            }));
            return cols;
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            cols.push(func("Role", "string", "Role is the role the binding grants.", |o| {
                let kind = o.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
                let name = o.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
                json!(format!("{kind}/{name}"))
            }));
            cols.push(age_column());
            for (title, kind) in [("Users", "User"), ("Groups", "Group"), ("ServiceAccounts", "ServiceAccount")] {
                let mut c = func(title, "string", &format!("{title} in the binding's subjects."), match kind {
                    "User" => |o| json!(subjects(o, "User")),
                    "Group" => |o| json!(subjects(o, "Group")),
                    _ => |o| json!(subjects(o, "ServiceAccount")),
                });
                c.priority = 1;
                cols.push(c);
            }
            return cols;
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            cols.push(func("Validations", "integer", "Validations indicates the number of validation rules defined in this configuration", |o| {
                json!(o.pointer("/spec/validations").and_then(Value::as_array).map_or(0, Vec::len))
            }));
            cols.push(func("ParamKind", "string", "ParamKind specifies the kind of resources used to parameterize this policy", |o| {
                match o.pointer("/spec/paramKind") {
                    Some(pk) => json!(format!(
                        "{}/{}",
                        pk.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                        pk.get("kind").and_then(Value::as_str).unwrap_or("")
                    )),
                    None => json!("<unset>"),
                }
            }));
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            cols.push(func("PolicyName", "string", "PolicyName indicates the policy definition which the policy binding binded to", |o| {
                json!(o.pointer("/spec/policyName").and_then(Value::as_str).unwrap_or(""))
            }));
            cols.push(func("ParamRef", "string", "ParamRef indicates the param resource which sets the configration param", |o| {
                match o.pointer("/spec/paramRef") {
                    Some(pr) => {
                        let ns = pr.get("namespace").and_then(Value::as_str).unwrap_or("");
                        let name = pr.get("name").and_then(Value::as_str).unwrap_or("*");
                        json!(if ns.is_empty() { name.to_string() } else { format!("{ns}/{name}") })
                    }
                    None => json!("<unset>"),
                }
            }));
        }
        ("", "Event") => {
            // kubectl's event columns: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (no NAME).
            cols.clear();
            cols.push(func("Last Seen", "string", "Time when last this event occurred", |o| {
                json!(age(o
                    .get("lastTimestamp")
                    .or_else(|| o.get("eventTime"))
                    .or_else(|| o.pointer("/metadata/creationTimestamp"))))
            }));
            cols.push(func("Type", "string", "Type of this event", |o| {
                json!(o.get("type").and_then(Value::as_str).unwrap_or(""))
            }));
            cols.push(func("Reason", "string", "Reason why this event was generated", |o| {
                json!(o.get("reason").and_then(Value::as_str).unwrap_or(""))
            }));
            cols.push(func("Object", "string", "The object this event is about", |o| {
                let kind = o.pointer("/involvedObject/kind").and_then(Value::as_str).unwrap_or("").to_lowercase();
                let name = o.pointer("/involvedObject/name").and_then(Value::as_str).unwrap_or("");
                json!(format!("{kind}/{name}"))
            }));
            cols.push(func("Message", "string", "A human-readable description of the event", |o| {
                json!(o.get("message").and_then(Value::as_str).unwrap_or("").trim())
            }));
            return cols;
        }
        _ => {}
    }
    cols.push(age_column());
    cols
}

/// The subjects of a binding of one kind, comma-separated (ServiceAccounts as `ns/name`).
fn subjects(o: &Value, kind: &str) -> String {
    o.get("subjects")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
                .map(|s| {
                    let name = s.get("name").and_then(Value::as_str).unwrap_or("");
                    match s.get("namespace").and_then(Value::as_str) {
                        Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                        _ => name.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn count(o: &Value, key: &str) -> usize {
    o.get(key).and_then(Value::as_object).map_or(0, Map::len)
}

/// A `Table` of one object or of a list's items. `include_object`: `None`, `Object`, or
/// `Metadata` (the default: a `PartialObjectMetadata`).
pub fn to_table(rt: &ResourceType, body: &Value, include_object: Option<&str>) -> Value {
    let cols = columns(rt);
    let (items, list_meta): (Vec<&Value>, Value) = match body.get("items").and_then(Value::as_array) {
        Some(items) => (items.iter().collect(), body.get("metadata").cloned().unwrap_or_else(|| json!({}))),
        None => (
            vec![body],
            json!({"resourceVersion": body.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))}),
        ),
    };
    let rows: Vec<Value> = items
        .into_iter()
        .map(|obj| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(c, obj)).collect();
            let mut row = json!({"cells": cells});
            let object = match include_object {
                Some("None") => None,
                Some("Object") => Some(obj.clone()),
                _ => Some(json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})),
            };
            if let (Some(o), Some(m)) = (object, row.as_object_mut()) {
                m.insert("object".into(), o);
            }
            row
        })
        .collect();
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description,
                "priority": c.priority})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs,
        "rows": rows})
}

fn cell(c: &Column, obj: &Value) -> Value {
    match &c.cell {
        Cell::Name => json!(obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")),
        Cell::Func(f) => f(obj),
        Cell::Path(path) => {
            let Some(v) = eval(path, obj).into_iter().next() else { return Value::Null };
            match c.kind.as_str() {
                "string" => json!(go_text(v)),
                "date" => match v.as_str() {
                    Some(_) => json!(age(Some(v))),
                    None => Value::Null,
                },
                "integer" => match v.as_f64() {
                    Some(f) if v.is_i64() || v.is_u64() || f.fract() == 0.0 => {
                        v.as_i64().map_or(json!(f as i64), |i| json!(i))
                    }
                    _ => Value::Null,
                },
                "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
                "boolean" => v.as_bool().map_or(Value::Null, |b| json!(b)),
                _ => json!(go_text(v)),
            }
        }
    }
}

/// A cell value as kube-apiserver's CRD table convertor prints it (client-go's JSONPath printer):
/// strings bare, other scalars as text, lists and maps as compact JSON with sorted keys
/// (`["stg","prod"]`, `{"a":"x","b":1}`) — checked against kube-apiserver v1.36.
fn go_text(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// The age of an RFC 3339 timestamp, as `k8s.io/apimachinery/pkg/util/duration.HumanDuration`.
fn age(ts: Option<&Value>) -> String {
    let Some(ts) = ts.and_then(Value::as_str).and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now().as_second() - ts.as_second();
    human_duration(secs)
}

fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

// ---- the JSONPath subset of printer columns ----

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    /// `[?(@.a.b=="x")]` (`==` or `!=`), or `[?(@.a)]` (exists).
    Filter(Vec<String>, Option<(bool, Value)>),
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let p = path.trim();
    let p = p.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let close = find_bracket_end(&chars, i).ok_or_else(|| format!("unclosed [ in {path}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(parse_bracket(inner.trim())?);
                i = close + 1;
            }
            _ => return Err(format!("unsupported JSONPath {path}")),
        }
    }
    Ok(steps)
}

fn find_bracket_end(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Ok(Step::Index(n));
    }
    if let Some(q) = inner.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(q) = inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        return Ok(Step::Field(q.to_string()));
    }
    let f = inner
        .strip_prefix("?(")
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported JSONPath [{inner}]"))?
        .trim();
    let (lhs, cmp) = if let Some((l, r)) = f.split_once("==") {
        (l, Some((true, r)))
    } else if let Some((l, r)) = f.split_once("!=") {
        (l, Some((false, r)))
    } else {
        (f, None)
    };
    let fields: Vec<String> = lhs
        .trim()
        .strip_prefix('@')
        .ok_or_else(|| format!("unsupported filter {f}"))?
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let cmp = match cmp {
        None => None,
        Some((eq, r)) => {
            let r = r.trim();
            let lit = if let Some(s) = r
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| r.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            {
                json!(s)
            } else {
                serde_json::from_str(r).map_err(|_| format!("unsupported filter literal {r}"))?
            };
            Some((eq, lit))
        }
    };
    Ok(Step::Filter(fields, cmp))
}

fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(fields, cmp) => {
                    let Some(a) = v.as_array() else { continue };
                    for item in a {
                        let mut x = Some(item);
                        for f in fields {
                            x = x.and_then(|x| x.get(f.as_str()));
                        }
                        let keep = match (cmp, x) {
                            (None, found) => found.is_some(),
                            (Some((true, lit)), Some(x)) => x == lit,
                            (Some((false, lit)), Some(x)) => x != lit,
                            (Some(_), None) => false,
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let obj = json!({"spec": {"service": "api", "envs": ["stg", "prod"]},
            "status": {"conditions": [{"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let get = |p: &str| eval(&parse_path(p).unwrap(), &obj).into_iter().next().cloned();
        assert_eq!(get(".spec.service"), Some(json!("api")));
        assert_eq!(get(".status.conditions[?(@.type==\"Ready\")].status"), Some(json!("True")));
        assert_eq!(get(".spec.envs[1]"), Some(json!("prod")));
        assert_eq!(get("{.spec.envs[-1]}"), Some(json!("prod")));
        assert_eq!(get(".spec['service']"), Some(json!("api")));
        assert_eq!(get(".spec.missing"), None);
        assert_eq!(go_text(&json!(["stg", "prod"])), r#"["stg","prod"]"#);
        assert_eq!(go_text(&json!({"b": 1, "a": "x"})), r#"{"a":"x","b":1}"#);
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
    }

    #[test]
    fn table_accept_header() {
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json, */*"));
    }
}
