//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`), for
//! the few built-in types kubectl's typed commands create (kubectl ≥ 1.30 sends protobuf for
//! built-ins, and client-go does not fall back to JSON on 415: kubernetes/kubernetes#86253).
//!
//! Decoded: the `k8s\0` envelope (`runtime.Unknown`) around core/v1 Namespace, ConfigMap and
//! Secret, with the ObjectMeta fields a client sets on create (name, generateName, namespace,
//! resourceVersion, labels, annotations, finalizers), and the authorization.k8s.io/v1 access
//! reviews' specs (`kubectl auth can-i`), and rbac.authorization.k8s.io/v1 Roles, ClusterRoles and
//! their bindings (`kubectl create role`, `rolebinding`, ...). Other types → `None` (the caller answers 415). Field
//! numbers are those of `k8s.io/api/core/v1/generated.proto`,
//! `k8s.io/api/authorization/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`.

use base64::Engine;
use serde_json::{Map, Value, json};

/// The protobuf content type.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// One decoded field: number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

/// All fields of a message, in order.
fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let f = match key & 7 {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 => {
                pos = pos.checked_add(8).filter(|p| *p <= buf.len())?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                let b = buf.get(pos..end)?;
                pos = end;
                Field::Bytes(b)
            }
            5 => {
                pos = pos.checked_add(4).filter(|p| *p <= buf.len())?;
                Field::Fixed
            }
            _ => return None,
        };
        out.push((key >> 3, f));
    }
    Some(out)
}

fn string(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// A `map<string, string>` (or `map<string, bytes>` with `bytes_as_base64`) entry.
fn map_entry(b: &[u8], bytes_as_base64: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = string(k)?,
            (2, Field::Bytes(v)) if bytes_as_base64 => {
                value = base64::engine::general_purpose::STANDARD.encode(v).into();
            }
            (2, Field::Bytes(v)) => value = string(v)?.into(),
            _ => {}
        }
    }
    Some((key, value))
}

fn insert_entry(obj: &mut Map<String, Value>, key: &str, b: &[u8], base64: bool) -> Option<()> {
    let (k, v) = map_entry(b, base64)?;
    let map = obj.entry(key).or_insert_with(|| json!({}));
    map.as_object_mut()?.insert(k, v);
    Some(())
}

fn push_string(obj: &mut Map<String, Value>, key: &str, b: &[u8]) -> Option<()> {
    let list = obj.entry(key).or_insert_with(|| json!([]));
    list.as_array_mut()?.push(string(b)?.into());
    Some(())
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(v) = f else { continue };
        match n {
            1 => _ = m.insert("name".into(), string(v)?.into()),
            2 => _ = m.insert("generateName".into(), string(v)?.into()),
            3 => _ = m.insert("namespace".into(), string(v)?.into()),
            5 => _ = m.insert("uid".into(), string(v)?.into()),
            6 => _ = m.insert("resourceVersion".into(), string(v)?.into()),
            11 => insert_entry(&mut m, "labels", v, false)?,
            12 => insert_entry(&mut m, "annotations", v, false)?,
            14 => push_string(&mut m, "finalizers", v)?,
            _ => {}
        }
    }
    m.retain(|_, v| v.as_str() != Some(""));
    Some(Value::Object(m))
}

/// Decodes a protobuf request body (envelope and object) into the object's JSON form, for the
/// types listed in the module documentation.
pub fn decode(body: &[u8]) -> Option<Value> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(unknown)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n, f) in fields(tm)? {
                    match (n, f) {
                        (1, Field::Bytes(v)) => api_version = string(v)?,
                        (2, Field::Bytes(v)) => kind = string(v)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if api_version == "authorization.k8s.io/v1" {
        return access_review(&kind, raw);
    }
    if api_version == "rbac.authorization.k8s.io/v1" {
        return rbac(&kind, raw);
    }
    if api_version != "v1" {
        return None;
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), api_version.into());
    obj.insert("kind".into(), kind.clone().into());
    let top = fields(raw)?;
    for (n, f) in top {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(m)) => _ = obj.insert("metadata".into(), object_meta(m)?),
            ("Namespace", 2, Field::Bytes(spec)) => {
                let mut s = Map::new();
                for (n, f) in fields(spec)? {
                    if let (1, Field::Bytes(v)) = (n, f) {
                        push_string(&mut s, "finalizers", v)?;
                    }
                }
                obj.insert("spec".into(), Value::Object(s));
            }
            ("Namespace", 3, Field::Bytes(_)) => {}
            ("ConfigMap", 2, Field::Bytes(e)) => insert_entry(&mut obj, "data", e, false)?,
            ("ConfigMap", 3, Field::Bytes(e)) => insert_entry(&mut obj, "binaryData", e, true)?,
            ("ConfigMap", 4, Field::Varint(b)) | ("Secret", 5, Field::Varint(b)) => {
                _ = obj.insert("immutable".into(), (b != 0).into());
            }
            ("Secret", 2, Field::Bytes(e)) => insert_entry(&mut obj, "data", e, true)?,
            ("Secret", 3, Field::Bytes(t)) => _ = obj.insert("type".into(), string(t)?.into()),
            ("Secret", 4, Field::Bytes(e)) => insert_entry(&mut obj, "stringData", e, false)?,
            ("Namespace" | "ConfigMap" | "Secret", _, _) => {}
            _ => return None,
        }
    }
    Some(Value::Object(obj))
}

/// Strings of a message by field number.
fn string_fields(b: &[u8], names: &[(u64, &str)]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        if let (Field::Bytes(v), Some((_, name))) = (f, names.iter().find(|(k, _)| *k == n)) {
            m.insert((*name).to_string(), string(v)?.into());
        }
    }
    Some(Value::Object(m))
}

/// Repeated strings of a message by field number, as JSON lists.
fn string_lists(b: &[u8], names: &[(u64, &str)]) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        if let (Field::Bytes(v), Some((_, name))) = (f, names.iter().find(|(k, _)| *k == n)) {
            push_string(&mut m, name, v)?;
        }
    }
    Some(m)
}

/// A `metav1.LabelSelector`.
fn label_selector(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(e)) => insert_entry(&mut m, "matchLabels", e, false)?,
            (2, Field::Bytes(e)) => {
                let mut req = string_fields(e, &[(1, "key"), (2, "operator")])?;
                let values = string_lists(e, &[(3, "values")])?;
                if let Some(r) = req.as_object_mut() {
                    r.extend(values);
                }
                let list = m.entry("matchExpressions").or_insert_with(|| json!([]));
                list.as_array_mut()?.push(req);
            }
            _ => {}
        }
    }
    Some(Value::Object(m))
}

/// Role, ClusterRole, RoleBinding, ClusterRoleBinding.
fn rbac(kind: &str, raw: &[u8]) -> Option<Value> {
    if !matches!(kind, "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding") {
        return None;
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), "rbac.authorization.k8s.io/v1".into());
    obj.insert("kind".into(), kind.into());
    let binding = kind.ends_with("Binding");
    for (n, f) in fields(raw)? {
        let Field::Bytes(v) = f else { continue };
        match (binding, n) {
            (_, 1) => _ = obj.insert("metadata".into(), object_meta(v)?),
            (false, 2) => {
                let rule = string_lists(
                    v,
                    &[(1, "verbs"), (2, "apiGroups"), (3, "resources"), (4, "resourceNames"), (5, "nonResourceURLs")],
                )?;
                let list = obj.entry("rules").or_insert_with(|| json!([]));
                list.as_array_mut()?.push(Value::Object(rule));
            }
            (false, 3) => {
                let mut selectors = Vec::new();
                for (n, f) in fields(v)? {
                    if let (1, Field::Bytes(sel)) = (n, f) {
                        selectors.push(label_selector(sel)?);
                    }
                }
                obj.insert("aggregationRule".into(), json!({"clusterRoleSelectors": selectors}));
            }
            (true, 2) => {
                let mut subject = string_fields(v, &[(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")])?;
                if let Some(m) = subject.as_object_mut() {
                    m.retain(|_, v| v.as_str() != Some(""));
                }
                let list = obj.entry("subjects").or_insert_with(|| json!([]));
                list.as_array_mut()?.push(subject);
            }
            (true, 3) => {
                obj.insert("roleRef".into(), string_fields(v, &[(1, "apiGroup"), (2, "kind"), (3, "name")])?);
            }
            _ => {}
        }
    }
    Some(Value::Object(obj))
}

/// SelfSubjectAccessReview, SubjectAccessReview, SelfSubjectRulesReview: metadata and spec.
fn access_review(kind: &str, raw: &[u8]) -> Option<Value> {
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), "authorization.k8s.io/v1".into());
    obj.insert("kind".into(), kind.into());
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(m)) => _ = obj.insert("metadata".into(), object_meta(m)?),
            (2, Field::Bytes(spec)) => {
                let mut s = Map::new();
                for (n, f) in fields(spec)? {
                    let Field::Bytes(v) = f else { continue };
                    match (kind, n) {
                        ("SelfSubjectRulesReview", 1) => _ = s.insert("namespace".into(), string(v)?.into()),
                        ("SelfSubjectRulesReview", _) => {}
                        (_, 1) => {
                            let names = [
                                (1, "namespace"),
                                (2, "verb"),
                                (3, "group"),
                                (4, "version"),
                                (5, "resource"),
                                (6, "subresource"),
                                (7, "name"),
                            ];
                            s.insert("resourceAttributes".into(), string_fields(v, &names)?);
                        }
                        (_, 2) => {
                            s.insert("nonResourceAttributes".into(), string_fields(v, &[(1, "path"), (2, "verb")])?);
                        }
                        ("SubjectAccessReview", 3) => _ = s.insert("user".into(), string(v)?.into()),
                        ("SubjectAccessReview", 4) => push_string(&mut s, "groups", v)?,
                        ("SubjectAccessReview", 6) => _ = s.insert("uid".into(), string(v)?.into()),
                        _ => {}
                    }
                }
                obj.insert("spec".into(), Value::Object(s));
            }
            _ => {}
        }
    }
    matches!(kind, "SelfSubjectAccessReview" | "SubjectAccessReview" | "SelfSubjectRulesReview")
        .then_some(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_sends_it() {
        let meta = [ld(1, b"cfg"), ld(11, &[ld(1, b"app"), ld(2, b"x")].concat())].concat();
        let raw = [ld(1, &meta), ld(2, &[ld(1, b"k"), ld(2, b"v")].concat())].concat();
        let tm = [ld(1, b"v1"), ld(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &raw)].concat();
        assert_eq!(
            decode(&body),
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cfg", "labels": {"app": "x"}}, "data": {"k": "v"}}))
        );
        assert_eq!(decode(b"{}"), None);
    }

    #[test]
    fn decodes_an_access_review() {
        let ra =
            [ld(1, b"ingest"), ld(2, b"patch"), ld(3, b"kiln.dev"), ld(5, b"promotions"), ld(6, b"status")].concat();
        let raw = [ld(1, &[]), ld(2, &ld(1, &ra))].concat();
        let tm = [ld(1, b"authorization.k8s.io/v1"), ld(2, b"SelfSubjectAccessReview")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &raw)].concat();
        assert_eq!(
            decode(&body),
            Some(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
                "spec": {"resourceAttributes": {"namespace": "ingest", "verb": "patch", "group": "kiln.dev",
                    "resource": "promotions", "subresource": "status"}}}))
        );
    }
}
