//! The object store: per resource type a `BTreeMap` keyed by (namespace, name), one global
//! monotonically increasing resourceVersion, and per type a bounded log of watch events (the
//! "retained window": a watch from an older resourceVersion gets 410 Gone).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

/// `ADDED`, `MODIFIED`, `DELETED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug)]
pub struct Event {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for DELETED: its last state, with the deletion's rv).
    pub object: Arc<Value>,
    /// The object before a MODIFIED change (for selector transitions).
    pub old: Option<Arc<Value>>,
}

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// The objects and events of one resource type.
#[derive(Debug)]
pub struct Kind {
    /// The objects.
    pub objects: BTreeMap<Key, Arc<Value>>,
    /// Retained events, oldest first.
    pub log: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    /// Live events for watchers.
    pub tx: broadcast::Sender<Arc<Event>>,
}

/// All objects.
#[derive(Debug)]
pub struct Store {
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// Per resource type (index = the type's id in the registry).
    pub kinds: Vec<Kind>,
    window: usize,
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    /// A store for `types` resource types, retaining `window` events per type.
    pub fn new(types: usize, window: usize) -> Self {
        let kinds = (0..types)
            .map(|_| Kind {
                objects: BTreeMap::new(),
                log: VecDeque::new(),
                compacted: 0,
                tx: broadcast::channel(window.clamp(16, 65_536)).0,
            })
            .collect();
        // Start above 0: "0" means "any version" to the apiserver.
        Store { rv: 100, kinds, window: window.max(1) }
    }

    /// Creates or replaces an object: assigns the next resourceVersion and emits the event.
    pub fn put(&mut self, kind: usize, key: Key, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        let obj = Arc::new(obj);
        let Some(k) = self.kinds.get_mut(kind) else { return obj };
        let old = k.objects.insert(key, obj.clone());
        let ev = if old.is_some() { EventType::Modified } else { EventType::Added };
        self.emit(kind, ev, obj.clone(), old);
        obj
    }

    /// Removes an object; the DELETED event carries its last state with a new resourceVersion.
    pub fn remove(&mut self, kind: usize, key: &Key, last: Value) -> Option<Arc<Value>> {
        let k = self.kinds.get_mut(kind)?;
        k.objects.remove(key)?;
        self.rv += 1;
        let mut last = last;
        set_rv(&mut last, self.rv);
        let last = Arc::new(last);
        self.emit(kind, EventType::Deleted, last.clone(), None);
        Some(last)
    }

    fn emit(&mut self, kind: usize, ev: EventType, object: Arc<Value>, old: Option<Arc<Value>>) {
        let rv = self.rv;
        let window = self.window;
        if let Some(k) = self.kinds.get_mut(kind) {
            let e = Arc::new(Event { rv, kind: ev, object, old });
            k.log.push_back(e.clone());
            while k.log.len() > window {
                if let Some(gone) = k.log.pop_front() {
                    k.compacted = gone.rv;
                }
            }
            // No receivers is fine.
            let _ = k.tx.send(e);
        }
    }

    /// Drops every retained event (as etcd compaction does): watches from any resourceVersion
    /// older than now get 410 Gone.
    pub fn compact(&mut self) {
        let rv = self.rv;
        for k in &mut self.kinds {
            k.log.clear();
            k.compacted = rv;
        }
    }

    /// Objects of a type in a namespace (`None`: all).
    pub fn in_namespace<'a>(
        &'a self,
        kind: usize,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
        self.kinds.get(kind).into_iter().flat_map(move |k| {
            let range: Box<dyn Iterator<Item = (&Key, &Arc<Value>)>> = match ns {
                Some(ns) => {
                    Box::new(k.objects.range((ns.to_string(), String::new())..).take_while(move |((n, _), _)| n == ns))
                }
                None => Box::new(k.objects.iter()),
            };
            range
        })
    }
}
