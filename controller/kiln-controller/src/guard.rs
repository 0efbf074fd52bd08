//! Objects kiln's types cannot read never stop a cache.
//!
//! A plain typed watch fails its whole list when one object does not deserialize (for example a
//! newer kiln's CRD allowed a value this controller does not know): the cache would never fill,
//! `/readyz` would stay 503 and nothing would be reconciled. The watches read
//! [`DeserializeGuard`]s instead and this module turns them into typed events:
//!
//! - a readable object passes through;
//! - an unreadable one is reported ([`Unreadable`]: a log line, a Warning Event on the object,
//!   `kiln_unreadable_objects_total`) and the cache keeps the **last readable version** if it
//!   had one — a Promotion in flight stays watched and can still roll back — or does not hold
//!   it at all;
//! - the deletion of an unreadable object removes its last readable version.

use std::sync::Arc;

use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// An object that could not be read as its kiln type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Its kind.
    pub kind: String,
    /// Its namespace (None for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: Option<String>,
    /// Why it could not be read (serde's message: the field and what was expected).
    pub error: String,
    /// Whether the cache keeps an earlier, readable version of it.
    pub kept_previous: bool,
}

impl Unreadable {
    /// The Warning Event's message.
    pub fn message(&self) -> String {
        let what =
            if self.kept_previous { "kiln keeps acting on its last readable version" } else { "kiln ignores it" };
        format!(
            "kiln-controller cannot read this {}: {}; {what} until it is fixed (a CRD newer than the controller? upgrade kiln-controller)",
            self.kind, self.error
        )
    }
}

/// The typed event for `event`, reporting unreadable objects to `report`. `store` is the cache
/// the event is going to (for the last readable versions).
pub fn admit<K>(
    event: watcher::Event<DeserializeGuard<K>>,
    store: &Store<K>,
    report: &dyn Fn(Unreadable),
) -> Option<watcher::Event<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    use watcher::Event as E;
    let previous = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| -> Option<Arc<K>> {
        let name = meta.name.as_deref()?;
        let reference = match meta.namespace.as_deref() {
            Some(ns) => ObjectRef::<K>::new(name).within(ns),
            None => ObjectRef::<K>::new(name),
        };
        store.get(&reference)
    };
    let unreadable = |invalid: &kube::core::error_boundary::InvalidObject, kept: bool| Unreadable {
        kind: K::kind(&()).into_owned(),
        namespace: invalid.metadata.namespace.clone(),
        name: invalid.metadata.name.clone().unwrap_or_default(),
        uid: invalid.metadata.uid.clone(),
        error: invalid.error.clone(),
        kept_previous: kept,
    };
    match event {
        E::Init => Some(E::Init),
        E::InitDone => Some(E::InitDone),
        E::Apply(DeserializeGuard(Ok(k))) => Some(E::Apply(k)),
        E::InitApply(DeserializeGuard(Ok(k))) => Some(E::InitApply(k)),
        E::Delete(DeserializeGuard(Ok(k))) => Some(E::Delete(k)),
        E::Apply(DeserializeGuard(Err(invalid))) => {
            // Nothing to apply: the cache keeps what it had (no event, so no reconcile on it).
            report(unreadable(&invalid, previous(&invalid.metadata).is_some()));
            None
        }
        E::InitApply(DeserializeGuard(Err(invalid))) => {
            // A re-list replaces the cache: carry the last readable version over.
            let kept = previous(&invalid.metadata);
            report(unreadable(&invalid, kept.is_some()));
            kept.map(|k| E::InitApply((*k).clone()))
        }
        E::Delete(DeserializeGuard(Err(invalid))) => previous(&invalid.metadata).map(|k| E::Delete((*k).clone())),
    }
}

impl Unreadable {
    /// The object as a [`DeserializeGuard`] holding only its identity (what an Event about it
    /// needs: `object_ref`).
    pub fn as_guard<K: Resource>(&self) -> DeserializeGuard<K> {
        DeserializeGuard(Err(kube::core::error_boundary::InvalidObject {
            error: self.error.clone(),
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(self.name.clone()),
                namespace: self.namespace.clone(),
                uid: self.uid.clone(),
                ..Default::default()
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::Release;
    use kube::ResourceExt;
    use kube::runtime::reflector::store::Writer;
    use serde_json::json;
    use std::sync::Mutex;

    fn release(name: &str, strategy: &str) -> DeserializeGuard<Release> {
        serde_json::from_value(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
            "spec": {
                "service": "pricing", "version": "v1.0.0",
                "artifacts": [{"name": "pricing", "image": format!("registry.example/pricing@sha256:{}", "a".repeat(64))}],
                "target": {"lambda": {"functionName": "pricing", "strategy": strategy}},
                "environments": ["dev"]
            }
        }))
        .unwrap_or_else(|e| panic!("even an unreadable Release has metadata: {e}"))
    }

    fn run(
        events: Vec<watcher::Event<DeserializeGuard<Release>>>,
        writer: &mut Writer<Release>,
    ) -> (Vec<String>, Vec<Unreadable>) {
        let store = writer.as_reader();
        let reports = Mutex::new(Vec::new());
        let mut out = Vec::new();
        for ev in events {
            let report = |u: Unreadable| reports.lock().unwrap_or_else(|p| p.into_inner()).push(u);
            if let Some(typed) = admit(ev, &store, &report) {
                out.push(match &typed {
                    watcher::Event::Apply(r) => format!("apply {}", r.name_any()),
                    watcher::Event::InitApply(r) => format!("initapply {}", r.name_any()),
                    watcher::Event::Delete(r) => format!("delete {}", r.name_any()),
                    watcher::Event::Init => "init".into(),
                    watcher::Event::InitDone => "initdone".into(),
                });
                writer.apply_watcher_event(&typed);
            }
        }
        (out, reports.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    #[test]
    fn an_unreadable_object_is_reported_and_the_rest_of_the_list_fills_the_cache() {
        let mut writer = Writer::<Release>::default();
        let (out, reports) = run(
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(release("good", "allAtOnce")),
                watcher::Event::InitApply(release("newer", "linear10PercentEvery1Minute")),
                watcher::Event::InitDone,
            ],
            &mut writer,
        );
        assert_eq!(out, ["init", "initapply good", "initdone"]);
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!((r.kind.as_str(), r.namespace.as_deref(), r.name.as_str()), ("Release", Some("shop"), "newer"));
        assert!(r.error.contains("linear10PercentEvery1Minute"), "{}", r.error);
        assert!(!r.kept_previous);
        assert!(r.message().contains("kiln ignores it"), "{}", r.message());
        let store = writer.as_reader();
        assert_eq!(store.state().len(), 1);
    }

    #[test]
    fn the_last_readable_version_is_kept_until_the_object_is_fixed_or_deleted() {
        let mut writer = Writer::<Release>::default();
        let (out, reports) = run(
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(release("web", "allAtOnce")),
                watcher::Event::InitDone,
                // Edited into something this controller cannot read: kept as it was.
                watcher::Event::Apply(release("web", "linear10PercentEvery1Minute")),
                // A re-list while it is unreadable: still kept.
                watcher::Event::Init,
                watcher::Event::InitApply(release("web", "linear10PercentEvery1Minute")),
                watcher::Event::InitDone,
            ],
            &mut writer,
        );
        assert_eq!(out, ["init", "initapply web", "initdone", "init", "initapply web", "initdone"]);
        assert_eq!(reports.len(), 2);
        assert!(reports.iter().all(|r| r.kept_previous));
        assert!(reports[0].message().contains("last readable version"));
        let store = writer.as_reader();
        let kept = store.get(&ObjectRef::new("web").within("shop")).map(|r| r.spec.target.lambda.clone());
        assert_eq!(
            kept.flatten().map(|l| l.strategy),
            Some(kiln_api::release::LambdaStrategy::AllAtOnce),
            "the last readable spec"
        );

        // Fixed: the new version replaces it. Then deleted while unreadable: removed.
        let (out, _) = run(vec![watcher::Event::Apply(release("web", "canary"))], &mut writer);
        assert_eq!(out, ["apply web"]);
        let (out, reports) =
            run(vec![watcher::Event::Delete(release("web", "linear10PercentEvery1Minute"))], &mut writer);
        assert_eq!(out, ["delete web"]);
        assert!(reports.is_empty());
        assert!(writer.as_reader().state().is_empty());
    }
}
