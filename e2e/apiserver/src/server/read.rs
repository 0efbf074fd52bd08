//! Reads: get and list (with selectors and pagination).

use base64::Engine;
use serde_json::{Value, json};

use super::{Params, Reply, Res, Shared, meta_str};
use crate::error::ApiError;
use crate::store::Key;

impl Shared {
    pub(super) fn get(&self, id: usize, key: &Key) -> Res<Reply> {
        let rt = self.rt(id)?;
        let s = self.lock()?;
        let obj = s.kinds.get(id).and_then(|k| k.objects.get(key)).ok_or_else(|| ApiError::not_found(rt, &key.1))?;
        Ok(Reply::ok((**obj).clone(), Vec::new()))
    }

    pub(super) fn list(&self, id: usize, ns: Option<&str>, p: &Params) -> Res<Reply> {
        let rt = self.rt(id)?;
        let (ls, fs) = p.selectors(rt)?;
        let limit = p.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
        let (list_rv, start) = match p.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(token)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                let rv = decoded.get("rv").and_then(Value::as_u64).unwrap_or(0);
                let ns = decoded.get("ns").and_then(Value::as_str).unwrap_or("").to_string();
                let name = decoded.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                (Some(rv), Some((ns, name)))
            }
            None => (None, None),
        };
        let s = self.lock()?;
        let rv = list_rv.unwrap_or(s.rv);
        let mut items = Vec::new();
        let mut more = None;
        for (key, obj) in s.in_namespace(id, ns) {
            if start.as_ref().is_some_and(|st| key <= st) || !ls.matches(obj) || !fs.matches(obj) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                more = items
                    .last()
                    .map(|o: &Value| (meta_str(o, "namespace").to_string(), meta_str(o, "name").to_string()));
                break;
            }
            items.push((**obj).clone());
        }
        drop(s);
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let (Some((ns, name)), Some(m)) = (more, meta.as_object_mut()) {
            let token = json!({"rv": rv, "ns": ns, "name": name}).to_string();
            m.insert("continue".into(), base64::engine::general_purpose::STANDARD.encode(token).into());
        }
        Ok(Reply::ok(
            json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind), "metadata": meta, "items": items}),
            Vec::new(),
        ))
    }
}
