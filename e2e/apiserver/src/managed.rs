//! `metadata.managedFields` and server-side apply.
//!
//! Simplification (documented in e2e/README.md): a field set is the set of *leaf* paths of an
//! object, where lists are atomic (owned as a whole, like `x-kubernetes-list-type: atomic`);
//! the real server tracks `k:`/`v:` entries of map- and set-lists individually. Ownership,
//! conflicts, `force` and removal of fields a manager stops applying follow the real rules.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A path of object keys.
pub type FieldPath = Vec<String>;
/// A set of leaf paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields that are tracked (the rest is identity or server-owned).
const TRACKED_META: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The leaf paths of an object (without `apiVersion`, `kind`, identity metadata), limited to
/// `status` (for `subresource == status`) or excluding it (`status_separate`).
pub fn leaves(obj: &Value, status_only: bool, status_separate: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else { return out };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if status_only {
                    continue;
                }
                for mk in TRACKED_META {
                    if let Some(mv) = v.get(*mk) {
                        collect(mv, vec!["metadata".into(), (*mk).to_string()], &mut out);
                    }
                }
            }
            "status" if status_separate && !status_only => {}
            "status" => collect(v, vec![k.clone()], &mut out),
            _ if status_only => {}
            _ => collect(v, vec![k.clone()], &mut out),
        }
    }
    out
}

fn collect(v: &Value, path: FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = path.clone();
                p.push(k.clone());
                collect(c, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a path.
pub fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, seg| cur.get(seg))
}

fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = obj;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// `fieldsV1` of a set: `{"f:spec": {"f:service": {}}}`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur.entry(format!("f:{seg}")).or_insert_with(|| Value::Object(Map::new()));
            match entry.as_object_mut() {
                Some(m) => cur = m,
                None => break,
            }
        }
    }
    Value::Object(root)
}

/// The set of a `fieldsV1` value (entries other than `f:` own their parent).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn walk(v: &Value, path: FieldPath, out: &mut FieldSet) {
        let children: Vec<(&String, &Value)> =
            v.as_object().map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect()).unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path);
            }
            return;
        }
        for (k, c) in children {
            let mut p = path.clone();
            p.push(k.trim_start_matches("f:").to_string());
            walk(c, p, out);
        }
    }
    walk(v, Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` of the write.
    pub api_version: String,
    /// Time of the write.
    pub time: String,
    /// `status` or empty.
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields`.
pub fn read(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else { return Vec::new() };
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    list.iter()
        .map(|e| Entry {
            manager: s(e, "manager"),
            operation: s(e, "operation"),
            api_version: s(e, "apiVersion"),
            time: s(e, "time"),
            subresource: s(e, "subresource"),
            fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

/// Writes `metadata.managedFields` (entries with no fields are dropped, like the real server).
pub fn write(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty()
                && let Some(m) = v.as_object_mut()
            {
                m.insert("subresource".into(), e.subresource.clone().into());
            }
            v
        })
        .collect();
    if let Some(map) = obj.as_object_mut()
        && !map.contains_key("metadata")
    {
        map.insert("metadata".into(), json!({}));
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// What a write is.
pub struct Write<'a> {
    /// Manager name.
    pub manager: &'a str,
    /// `status` or empty.
    pub subresource: &'a str,
    /// apiVersion.
    pub api_version: &'a str,
    /// Now, RFC 3339.
    pub now: &'a str,
    /// Whether status is a separate subresource for this type.
    pub status_separate: bool,
}

impl Write<'_> {
    fn status_only(&self) -> bool {
        self.subresource == "status"
    }

    fn upsert(&self, entries: &mut Vec<Entry>, operation: &str, fields: FieldSet) {
        match entries
            .iter_mut()
            .find(|e| e.manager == self.manager && e.operation == operation && e.subresource == self.subresource)
        {
            Some(e) => {
                e.fields = fields;
                e.time = self.now.to_string();
                e.api_version = self.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: self.manager.to_string(),
                operation: operation.to_string(),
                api_version: self.api_version.to_string(),
                time: self.now.to_string(),
                subresource: self.subresource.to_string(),
                fields,
            }),
        }
    }

    /// Ownership after an `Update` (create, PUT, JSON/merge patch): the manager takes the fields it
    /// changed; fields that disappeared are owned by nobody.
    pub fn update(&self, old: Option<&Value>, new: &mut Value) {
        let mut entries = old.map(read).unwrap_or_default();
        let new_leaves = leaves(new, self.status_only(), self.status_separate);
        let old_leaves = old.map(|o| leaves(o, self.status_only(), self.status_separate)).unwrap_or_default();
        let changed: FieldSet = new_leaves
            .iter()
            .filter(|p| !old_leaves.contains(*p) || old.and_then(|o| get(o, p)) != get(new, p))
            .cloned()
            .collect();
        let all_new = leaves(new, false, false);
        for e in &mut entries {
            e.fields.retain(|p| all_new.contains(p) && !changed.contains(p));
        }
        let mine = entries
            .iter()
            .find(|e| e.manager == self.manager && e.operation == "Update" && e.subresource == self.subresource)
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        if !changed.is_empty() {
            self.upsert(&mut entries, "Update", mine.union(&changed).cloned().collect());
        }
        write(new, &entries);
    }

    /// Server-side apply of `applied` onto `live` (`None`: create). Returns the merged object with
    /// its managedFields, or the conflicts (`(manager, ".spec.field")`) when not forced.
    pub fn apply(&self, live: Option<&Value>, applied: &Value, force: bool) -> Result<Value, Vec<(String, String)>> {
        let mut entries = live.map(read).unwrap_or_default();
        let applied_set = leaves(applied, self.status_only(), self.status_separate);
        let empty = json!({});
        let live_v = live.unwrap_or(&empty);
        let mut conflicts = Vec::new();
        for e in entries.iter_mut() {
            if e.manager == self.manager && e.subresource == self.subresource {
                continue;
            }
            let mut taken = Vec::new();
            for owned in &e.fields {
                for p in &applied_set {
                    if !overlaps(owned, p) {
                        continue;
                    }
                    let short = if owned.len() <= p.len() { owned } else { p };
                    let (l, a) = (get(live_v, short), get(applied, short));
                    // Maps are not values: only leaves conflict.
                    if l.is_some_and(Value::is_object) && a.is_some_and(Value::is_object) {
                        continue;
                    }
                    if l != a {
                        conflicts.push((e.manager.clone(), format!(".{}", owned.join("."))));
                        taken.push(owned.clone());
                    }
                }
            }
            if force {
                for t in taken {
                    e.fields.remove(&t);
                }
            }
        }
        if !force && !conflicts.is_empty() {
            conflicts.sort();
            conflicts.dedup();
            return Err(conflicts);
        }
        let mut merged = live_v.clone();
        merge(&mut merged, applied);
        // Fields this manager applied before, does not apply now, and nobody else owns: removed.
        let previous = entries
            .iter()
            .find(|e| e.manager == self.manager && e.operation == "Apply" && e.subresource == self.subresource)
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        for p in previous.difference(&applied_set) {
            let owned_by_other = entries.iter().any(|e| {
                !(e.manager == self.manager && e.operation == "Apply" && e.subresource == self.subresource)
                    && e.fields.iter().any(|o| overlaps(o, p))
            });
            let re_applied = applied_set.iter().any(|a| a.starts_with(p));
            if !owned_by_other && !re_applied {
                remove(&mut merged, p);
                // A map left empty by the removal goes too, unless something is applied or owned
                // under it (the real server removes the field, not only its leaves).
                for len in (1..p.len()).rev() {
                    let parent = &p[..len];
                    let empty = get(&merged, parent).and_then(Value::as_object).is_some_and(Map::is_empty);
                    let kept = applied_set.iter().any(|a| a.starts_with(parent))
                        || entries.iter().any(|e| {
                            e.fields.iter().any(|o| o.starts_with(parent)) && {
                                !(e.manager == self.manager
                                    && e.operation == "Apply"
                                    && e.subresource == self.subresource)
                            }
                        });
                    if !empty || kept {
                        break;
                    }
                    remove(&mut merged, parent);
                }
            }
        }
        self.upsert(&mut entries, "Apply", applied_set);
        write(&mut merged, &entries);
        Ok(merged)
    }
}

/// Deep merge for apply: maps merge, everything else (lists included) replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(manager: &str) -> Write<'_> {
        Write { manager, subresource: "", api_version: "v1", now: "2025-01-01T00:00:00Z", status_separate: true }
    }

    #[test]
    fn fields_v1_round_trip() {
        let o = json!({"spec": {"a": 1, "b": {"c": [1]}}, "metadata": {"name": "x", "labels": {"l": "v"}}});
        let set = leaves(&o, false, true);
        assert_eq!(set.len(), 3);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn apply_conflicts_and_force() {
        let base = json!({"metadata": {"name": "x"}, "spec": {"a": 1}});
        let live = w("alice").apply(None, &base, false).unwrap();
        let bob = json!({"metadata": {"name": "x"}, "spec": {"a": 2}});
        assert_eq!(w("bob").apply(Some(&live), &bob, false), Err(vec![("alice".into(), ".spec.a".into())]));
        let same = json!({"metadata": {"name": "x"}, "spec": {"a": 1}});
        assert!(w("bob").apply(Some(&live), &same, false).is_ok());
        let forced = w("bob").apply(Some(&live), &bob, true).unwrap();
        assert_eq!(forced["spec"]["a"], 2);
        assert_eq!(read(&forced).iter().filter(|e| !e.fields.is_empty()).count(), 1);
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let first = json!({"spec": {"a": 1, "b": 2}});
        let live = w("m").apply(None, &first, false).unwrap();
        let second = json!({"spec": {"a": 1}});
        let out = w("m").apply(Some(&live), &second, false).unwrap();
        assert_eq!(out["spec"], json!({"a": 1}));
    }

    #[test]
    fn a_map_no_longer_applied_goes_as_a_whole() {
        let first =
            json!({"spec": {"a": 1, "evidence": {"kind": "k", "rollback": {"cause": "alarm"}}, "keep": {"x": 1}}});
        let live = w("m").apply(None, &first, false).unwrap();
        // Another manager owns something under `keep`.
        let mut live = live;
        let other = json!({"spec": {"keep": {"y": 2}}});
        live = w("o").apply(Some(&live), &other, false).unwrap();
        let second = json!({"spec": {"a": 1}});
        let out = w("m").apply(Some(&live), &second, false).unwrap();
        assert_eq!(out["spec"], json!({"a": 1, "keep": {"y": 2}}), "no empty evidence or rollback map left");
    }
}
