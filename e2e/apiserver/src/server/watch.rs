//! Watch streams: events, bookmarks, selectors and Table rows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::http::error_response;
use super::{Params, Shared, meta_str};
use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType};

/// Table output of watch events (`kubectl get -w`): the type and `includeObject`.
type AsTable = Option<(ResourceType, Option<String>)>;

/// An event line for an object, as a one-row `Table` when the watch asked for Tables.
fn object_event(kind: &str, obj: &Value, as_table: &AsTable) -> Bytes {
    match as_table {
        Some((rt, include)) => event_line(kind, &crate::table::to_table(rt, obj, include.as_deref())),
        None => event_line(kind, obj),
    }
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Which event a watcher with selectors sees for a change (selector transitions become
/// ADDED/DELETED, like the watch cache).
fn filtered(ev: &Event, ns: Option<&str>, ls: &LabelSelector, fs: &FieldSelector) -> Option<&'static str> {
    if ns.is_some_and(|n| n != meta_str(&ev.object, "namespace")) {
        return None;
    }
    let m = |o: &Value| ls.matches(o) && fs.matches(o);
    match ev.kind {
        EventType::Modified => {
            let now = m(&ev.object);
            let before = ev.old.as_deref().is_some_and(m);
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
        k => m(&ev.object).then_some(k.as_str()),
    }
}

pub(super) fn watch(shared: Arc<Shared>, id: usize, ns: Option<String>, p: &Params, table: bool) -> Response {
    let Ok(rt) = shared.rt(id).cloned() else { return error_response(&ApiError::internal("type")) };
    let as_table: AsTable = table.then(|| (rt.clone(), p.get("includeObject").map(str::to_string)));
    let (ls, fs) = match p.selectors(&rt) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let bookmarks = p.flag("allowWatchBookmarks");
    let send_initial = p.flag("sendInitialEvents");
    let timeout = p
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let rv_param = p.get("resourceVersion").unwrap_or("").to_string();
    let mut initial: Vec<Bytes> = Vec::new();
    let mut expired = None;
    let rx: broadcast::Receiver<Arc<Event>>;
    let start_rv;
    {
        let Ok(s) = shared.lock() else { return error_response(&ApiError::internal("lock")) };
        let Some(kind) = s.kinds.get(id) else { return error_response(&ApiError::internal("type")) };
        rx = kind.tx.subscribe();
        start_rv = s.rv;
        if send_initial || rv_param.is_empty() || rv_param == "0" {
            for (_, obj) in s.in_namespace(id, ns.as_deref()) {
                if ls.matches(obj) && fs.matches(obj) {
                    initial.push(object_event("ADDED", obj, &as_table));
                }
            }
            if send_initial && bookmarks {
                initial.push(event_line("BOOKMARK", &json!({"apiVersion": rt.api_version(), "kind": rt.kind,
                    "metadata": {"resourceVersion": s.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}})));
            }
        } else {
            let from: u64 = rv_param.parse().unwrap_or(0);
            if from < kind.compacted {
                expired = Some(ApiError::expired(from, kind.compacted));
            } else {
                for ev in kind.log.iter().filter(|e| e.rv > from) {
                    if let Some(t) = filtered(ev, ns.as_deref(), &ls, &fs) {
                        initial.push(object_event(t, &ev.object, &as_table));
                    }
                }
            }
        }
    }
    let (tx, out_rx) = mpsc::channel::<Bytes>(256);
    let interval = shared.bookmark_interval;
    let drop_after = shared.faults.drop_watches_after();
    let mut epoch = shared.drop_epoch.subscribe();
    tokio::spawn(async move {
        if let Some(e) = expired {
            let _ = tx.send(event_line("ERROR", &e.to_status())).await;
            return;
        }
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut rx = rx;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let dropper = tokio::time::sleep(drop_after.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(dropper);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= start_rv { continue; }
                        if let Some(t) = filtered(&ev, ns.as_deref(), &ls, &fs)
                            && tx.send(object_event(t, &ev.object, &as_table)).await.is_err() {
                            return;
                        }
                    }
                    // Lagged or closed: end the watch; the client re-watches from its last version.
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let Ok(rv) = shared.lock().map(|s| s.rv) else { return };
                    // Everything up to `rv` is already queued: deliver it before the bookmark.
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                if ev.rv <= start_rv { continue; }
                                        if let Some(t) = filtered(&ev, ns.as_deref(), &ls, &fs)
                                    && tx.send(object_event(t, &ev.object, &as_table)).await.is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(_) => return,
                        }
                    }
                    let bm = json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"resourceVersion": rv.to_string()}});
                    if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = &mut dropper => return,
                _ = epoch.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        futures::stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx)) },
        );
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}
