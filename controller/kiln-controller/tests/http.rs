//! The probe and metrics server over real HTTP/1.1 on 127.0.0.1, spoken by hand on a plain
//! `TcpStream` so the test checks the bytes a kubelet or Prometheus would receive.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use kiln_controller::http::{Readiness, serve};
use kiln_controller::metrics::Metrics;
use tokio::sync::oneshot;

/// One response: status code, header block (lower-cased), body.
struct Response {
    status: u16,
    headers: String,
    body: String,
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    // Generous: the machine is shared with builds; this only bounds a hang.
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    Response { status, headers: headers.to_ascii_lowercase(), body: body.to_string() }
}

/// Blocking I/O off the runtime's threads, so the server keeps running on any flavour.
async fn get(addr: SocketAddr, path: &'static str) -> Response {
    tokio::task::spawn_blocking(move || request(addr, "GET", path)).await.expect("request task")
}

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, metrics.clone(), readiness.clone(), async move {
        let _ = stopped.await;
    }));
    Server { addr, metrics, readiness, stop: Some(stop), task }
}

#[tokio::test]
async fn readyz_reports_what_is_missing_until_ready() {
    let server = start().await;
    let r = get(server.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "kiln CRDs are not installed (kubectl apply -f crds/)");

    server.readiness.set_crds_present(true);
    let r = get(server.addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "caches not synced yet"));

    server.readiness.set_caches_synced(true);
    let r = get(server.addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));

    // A standby is ready without caches.
    server.readiness.set_caches_synced(false);
    server.readiness.set_standby(true);
    assert_eq!(get(server.addr, "/readyz").await.status, 200);
}

#[tokio::test]
async fn livez_is_ok_even_when_not_ready() {
    let server = start().await;
    let r = get(server.addr, "/livez").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics() {
    let server = start().await;
    server.metrics.reconciled("Release", Duration::from_millis(12));
    let r = get(server.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{}",
        r.headers
    );
    assert!(r.body.contains("kiln_reconciles_total{kind=\"Release\"} 1\n"), "{}", r.body);
    assert!(r.body.contains("# HELP kiln_reconcile_duration_seconds "), "{}", r.body);
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);

    // Each scrape renders the current values.
    server.metrics.reconciled("Release", Duration::from_millis(12));
    let r = get(server.addr, "/metrics").await;
    assert!(r.body.contains("kiln_reconciles_total{kind=\"Release\"} 2\n"), "{}", r.body);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let server = start().await;
    assert_eq!(get(server.addr, "/").await.status, 404);
    assert_eq!(get(server.addr, "/metricz").await.status, 404);
    let addr = server.addr;
    let post = tokio::task::spawn_blocking(move || request(addr, "POST", "/readyz")).await.expect("request task");
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn shutdown_future_stops_the_server() {
    let mut server = start().await;
    assert_eq!(get(server.addr, "/livez").await.status, 200);
    if let Some(stop) = server.stop.take() {
        stop.send(()).expect("server still running");
    }
    let result = tokio::time::timeout(Duration::from_secs(60), &mut server.task)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task");
    assert!(result.is_ok(), "{result:?}");
    // Nothing listens any more.
    assert!(TcpStream::connect(server.addr).is_err());
}
