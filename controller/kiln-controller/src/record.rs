//! Writing what happened: status (server-side apply, only on change), finalizers, Events.

use kiln_api::FIELD_MANAGER;
use kiln_core::machine::EventNote;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The finalizer that keeps a Promotion until its traffic is restored (or it never touched AWS).
pub const FINALIZER: &str = "kiln.dev/restore";

/// The apiserver rejects Event notes over 1 KiB.
const MAX_NOTE: usize = 1024;

/// Truncates `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let marker = "…";
    let mut end = max.saturating_sub(marker.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &s[..end])
}

/// Applies `status` to `obj`'s status subresource as kiln's field manager and returns the
/// stored object.
pub async fn apply_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    apply_status_body(api, obj, status, None).await
}

/// Like [`apply_status`], guarded by `obj`'s resourceVersion: if the object changed since it was
/// read (a person's patch, another replica's write), the API answers 409 and nothing is written.
/// For statuses that record an AWS action, so a decision made on stale state never overwrites a
/// newer one.
pub async fn apply_status_guarded<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    apply_status_body(api, obj, status, obj.resource_version()).await
}

async fn apply_status_body<K, S>(
    api: &Api<K>,
    obj: &K,
    status: &S,
    precondition: Option<String>,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let mut body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(rv) = precondition {
        body["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await
}

/// Sets or clears kiln's finalizer, guarded by the object's resourceVersion (a concurrent edit
/// makes this fail with a conflict and the reconcile is retried).
pub async fn set_finalizer<K>(api: &Api<K>, obj: &K, present: bool) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers: Vec<String> = obj.finalizers().iter().filter(|f| f.as_str() != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let body = serde_json::json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": obj.resource_version() }
    });
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&body)).await
}

/// Whether `obj` carries kiln's finalizer.
pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.meta().finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Publishes `notes` as Events about `obj`. Failures to publish are logged, never fatal: an
/// Event is a courtesy, status is the record.
pub async fn publish<K>(recorder: &Recorder, obj: &K, notes: &[EventNote])
where
    K: Resource<DynamicType = ()>,
{
    for n in notes {
        publish_to(recorder, obj, n, &n.reason).await;
    }
}

/// Publishes one Event about `obj` (the one place Events are built: reason and action cut to 128
/// bytes, the note to 1 KiB, as the apiserver requires). Failures are logged, never fatal.
pub async fn publish_to<K>(recorder: &Recorder, obj: &K, note: &EventNote, action: &str)
where
    K: Resource<DynamicType = ()>,
{
    let ev = Event {
        type_: if note.warning { EventType::Warning } else { EventType::Normal },
        reason: truncate(&note.reason, 128),
        note: Some(truncate(&note.message, MAX_NOTE)),
        action: truncate(action, 128),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(reason = %note.reason, error = %e, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_utf8_and_the_limit() {
        let long = "é".repeat(2000);
        let t = truncate(&long, MAX_NOTE);
        assert!(t.len() <= MAX_NOTE, "{}", t.len());
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short", MAX_NOTE), "short");
    }
}
