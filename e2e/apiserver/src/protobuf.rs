//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`), for
//! the few built-in types kubectl's typed commands create (kubectl ≥ 1.30 sends protobuf for
//! built-ins, and client-go does not fall back to JSON on 415: kubernetes/kubernetes#86253).
//!
//! Decoded: the `k8s\0` envelope (`runtime.Unknown`) around core/v1 Namespace, ConfigMap and
//! Secret, with the ObjectMeta fields a client sets on create (name, generateName, namespace,
//! resourceVersion, labels, annotations, finalizers). Other types → `None` (the caller answers
//! 415). Field numbers are those of `k8s.io/api/core/v1/generated.proto` and
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
}
