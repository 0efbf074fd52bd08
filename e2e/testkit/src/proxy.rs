//! A fault proxy: an HTTP(S) listener on 127.0.0.1 in front of one upstream (kube-apiserver, moto)
//! that forwards every request and, by [`Rule`]s a test sets while it runs, holds, delays, fails
//! or black-holes the ones it matches, and logs each with its times.
//!
//! One proxy per client: give each controller replica its own proxy (its kubeconfig or
//! `--aws-endpoint-url` pointing at it), and the proxy's rules act on that replica alone.
//!
//! - **Hold** ([`Action::Hold`]): before forwarding (the upstream never sees the request until
//!   [`FaultProxy::release`]), or after (the upstream acts, the response is withheld until
//!   release) — a write "in flight" across a partition. A held request is forwarded on release
//!   even if its client has gone: what was sent may still land, as on a real network. Dropping
//!   the proxy abandons what it still holds (never sent at teardown).
//! - **Delay**, **Fail** (a canned status and body, as the upstream would answer), **BlackHole**
//!   (never answered; the connection stays open until the client gives up).
//! - **Log** ([`FaultProxy::log`]): method, path and query, `X-Amz-Target`, the request body (the
//!   AWS Query protocol names its action there), the status and when it started and ended.
//!
//! Responses stream through (watches work); request bodies are read whole (they are small).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Where the proxy forwards to.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// Plain HTTP, e.g. moto: `http://127.0.0.1:<port>`.
    Http(String),
    /// HTTPS verified against `ca_pem`, e.g. kube-apiserver: `https://127.0.0.1:<port>`.
    Https { url: String, ca_pem: Vec<u8> },
}

/// Which requests a rule applies to; every field that is set must match.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// The HTTP method, e.g. `PUT`.
    pub method: Option<String>,
    /// A substring of the path and query, e.g. `/leases/` or `/aliases/live`.
    pub path: Option<String>,
    /// A substring of the `X-Amz-Target` header (AWS JSON protocols), e.g. `UpdateService`.
    pub target: Option<String>,
    /// A substring of the request body, e.g. `Action=ModifyListener` (AWS Query protocol).
    pub body: Option<String>,
    /// The AWS API action, exactly ([`Logged::aws_action`]), e.g. `UpdateService` (which a
    /// substring of the target would confuse with `UpdateServicePrimaryTaskSet`).
    pub action: Option<String>,
}

impl Match {
    /// Every request.
    pub fn any() -> Match {
        Match::default()
    }

    /// Requests with this method.
    pub fn method(method: &str) -> Match {
        Match { method: Some(method.to_owned()), ..Match::default() }
    }

    /// Requests whose path and query contain `fragment`.
    pub fn path(fragment: &str) -> Match {
        Match { path: Some(fragment.to_owned()), ..Match::default() }
    }

    /// Requests for the AWS API action `name` (exactly; see [`Logged::aws_action`]).
    pub fn action(name: &str) -> Match {
        Match { action: Some(name.to_owned()), ..Match::default() }
    }

    /// The same match, also requiring `method`.
    pub fn and_method(mut self, method: &str) -> Match {
        self.method = Some(method.to_owned());
        self
    }

    fn matches(&self, entry: &Logged) -> bool {
        self.method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(&entry.method))
            && self.path.as_ref().is_none_or(|p| entry.path.contains(p.as_str()))
            && self.target.as_ref().is_none_or(|t| entry.target.contains(t.as_str()))
            && self.body.as_ref().is_none_or(|b| entry.body.contains(b.as_str()))
            && self.action.as_ref().is_none_or(|a| entry.aws_action().as_deref() == Some(a.as_str()))
    }
}

/// When a held request is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Before it reaches the upstream.
    Before,
    /// After the upstream answered, withholding the answer.
    After,
}

/// What a rule does to the requests it matches.
#[derive(Clone, Debug)]
pub enum Action {
    /// Hold until [`FaultProxy::release`].
    Hold(When),
    /// Wait this long, then forward.
    Delay(Duration),
    /// Answer with this status, `Content-Type` and body; the upstream never sees the request.
    Fail { status: u16, content_type: String, body: String },
    /// Never answer.
    BlackHole,
}

impl Action {
    /// A failure with a JSON body.
    pub fn fail_json(status: u16, body: &str) -> Action {
        Action::Fail { status, content_type: "application/json".to_owned(), body: body.to_owned() }
    }
}

/// A fault: requests matching `matches` get `action`, at most `times` times (`None`: always).
#[derive(Clone, Debug)]
pub struct Rule {
    pub matches: Match,
    pub action: Action,
    pub times: Option<u32>,
}

impl Rule {
    /// `action` on every request matching `matches`, until cleared.
    pub fn always(matches: Match, action: Action) -> Rule {
        Rule { matches, action, times: None }
    }

    /// `action` on the next `times` requests matching `matches`.
    pub fn times(matches: Match, action: Action, times: u32) -> Rule {
        Rule { matches, action, times: Some(times) }
    }
}

/// What happened to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished yet (in flight, held, delayed or black-holed).
    Pending,
    /// Forwarded; the upstream answered with this status.
    Forwarded(u16),
    /// Answered by the proxy with this status (a [`Action::Fail`]).
    Failed(u16),
    /// The upstream could not be reached (the proxy answered 502).
    UpstreamError(String),
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// Its position in the log (0, 1, …).
    pub seq: u64,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `X-Amz-Target` header, or empty.
    pub target: String,
    /// The request body (lossy UTF-8, at most 64 KiB).
    pub body: String,
    /// When the proxy received it.
    pub received: SystemTime,
    /// When the upstream's answer (or the proxy's own) was sent back.
    pub answered: Option<SystemTime>,
    /// Whether a rule held it (and it has been released).
    pub held: bool,
    pub outcome: Outcome,
}

impl Logged {
    /// The AWS API action this request calls, as the API reference names it (`CreateTaskSet`,
    /// `ModifyListener`, `PublishVersion`, `PutObject`, …), from whichever part of the request
    /// names it in its protocol: the `X-Amz-Target` header (JSON protocols: ECS, CodeDeploy),
    /// the `Action` parameter (Query protocol: ELB, STS, CloudWatch), the SDK's `x-id` query
    /// parameter (S3), or the method and path (Lambda's REST API). `None` for anything else.
    pub fn aws_action(&self) -> Option<String> {
        if let Some((_, action)) = self.target.rsplit_once('.') {
            return Some(action.to_owned());
        }
        let param =
            |text: &str, key: &str| text.split(['?', '&']).find_map(|kv| kv.strip_prefix(key)).map(|v| v.to_owned());
        if let Some(action) = param(&self.body, "Action=") {
            return Some(action);
        }
        let (path, query) = self.path.split_once('?').unwrap_or((self.path.as_str(), ""));
        if let Some(action) = param(query, "x-id=") {
            return Some(action);
        }
        // Lambda: /2015-03-31/functions/<name>[/<sub>[/<name>]]
        let (_, rest) = path.split_once("/functions/")?;
        let sub: Vec<&str> = rest.split('/').skip(1).collect();
        let action = match (self.method.as_str(), sub.as_slice()) {
            ("GET", []) => "GetFunction",
            ("PUT", ["code"]) => "UpdateFunctionCode",
            ("PUT", ["configuration"]) => "UpdateFunctionConfiguration",
            ("GET", ["configuration"]) => "GetFunctionConfiguration",
            ("POST", ["versions"]) => "PublishVersion",
            ("GET", ["versions"]) => "ListVersionsByFunction",
            ("POST", ["invocations"]) => "Invoke",
            ("POST", ["aliases"]) => "CreateAlias",
            ("GET", ["aliases"]) => "ListAliases",
            ("PUT", ["aliases", _]) => "UpdateAlias",
            ("GET", ["aliases", _]) => "GetAlias",
            ("DELETE", ["aliases", _]) => "DeleteAlias",
            _ => return None,
        };
        Some(action.to_owned())
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Logged>,
    /// Requests held right now.
    holding: usize,
}

struct Shared {
    state: Mutex<State>,
    next: AtomicU64,
    /// Bumped by `release`: held requests wait for a change.
    release: watch::Sender<u64>,
    /// Set when the proxy is dropped: held requests are abandoned, not sent.
    stopped: std::sync::atomic::AtomicBool,
    /// Bumped on every log change, for waiters.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test thread that panicked while holding the lock leaves usable state behind.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, seq: u64, f: impl FnOnce(&mut Logged)) {
        {
            let mut state = self.lock();
            if let Some(entry) = state.log.iter_mut().find(|e| e.seq == seq) {
                f(entry);
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A running proxy; stops on drop.
pub struct FaultProxy {
    url: String,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The longest request body the log keeps.
const LOGGED_BODY: usize = 64 * 1024;

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free 127.0.0.1 port, serving HTTPS with a fresh CA
    /// ([`FaultProxy::ca_pem`]) when `tls`, plain HTTP otherwise. Must run inside a tokio runtime.
    pub async fn start(upstream: Upstream, tls: bool) -> Result<FaultProxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("proxy bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| format!("proxy address: {e}"))?.port();
        let (acceptor, ca_pem) = if tls {
            let (acceptor, ca) = tls_acceptor()?;
            (Some(acceptor), Some(ca))
        } else {
            (None, None)
        };
        let (base, client) = upstream_client(&upstream)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            next: AtomicU64::new(0),
            release: watch::channel(0).0,
            stopped: std::sync::atomic::AtomicBool::new(false),
            changed: watch::channel(0).0,
        });
        let task = tokio::spawn(serve(listener, acceptor, base, client, shared.clone()));
        let scheme = if tls { "https" } else { "http" };
        Ok(FaultProxy { url: format!("{scheme}://127.0.0.1:{port}"), ca_pem, shared, task })
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA (PEM) of the proxy's certificate, when it serves HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Adds a rule; earlier rules are tried first.
    pub fn add(&self, rule: Rule) {
        self.shared.lock().rules.push(rule);
    }

    /// Removes every rule (held requests stay held until [`FaultProxy::release`]).
    pub fn clear(&self) {
        self.shared.lock().rules.clear();
    }

    /// Lets every held request go on (forwarded, or its withheld answer sent).
    pub fn release(&self) {
        self.shared.release.send_modify(|n| *n += 1);
    }

    /// How many requests are held right now.
    pub fn holding(&self) -> usize {
        self.shared.lock().holding
    }

    /// Waits until at least `n` requests are held, up to `timeout` (woken by each change, no
    /// polling).
    pub async fn wait_holding(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let mut changed = self.shared.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if self.holding() >= n {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, changed.changed()).await.is_err() {
                return Err(format!("{} held, wanted {n}, within {timeout:?} at {}", self.holding(), self.url));
            }
        }
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Logged> {
        self.shared.lock().log.clone()
    }

    /// Waits until `pred` holds for the log (checked on every change), up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[Logged]) -> bool,
    ) -> Result<(), String> {
        let mut changed = self.shared.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.shared.lock().log) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, changed.changed()).await.is_err() {
                return Err(format!("{what}: not seen within {timeout:?} at {}", self.url));
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.release.send_modify(|n| *n += 1);
        self.task.abort();
    }
}

type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn upstream_client(upstream: &Upstream) -> Result<(String, UpstreamClient), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let url = match upstream {
        Upstream::Http(url) => url.clone(),
        Upstream::Https { url, ca_pem } => {
            for cert in rustls_pemfile_certs(ca_pem)? {
                roots.add(cert).map_err(|e| format!("upstream CA: {e}"))?;
            }
            url.clone()
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS config: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    Ok((url.trim_end_matches('/').to_owned(), client))
}

/// The certificates of a PEM bundle.
fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("upstream CA PEM: {e}"))
}

fn tls_acceptor() -> Result<(TlsAcceptor, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
    let err = |e: rcgen::Error| format!("generating the proxy's CA: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(DnType::CommonName, "kiln fault proxy CA (test only)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).map_err(err)?;
    params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let chain = vec![cert.der().clone(), ca_cert.der().clone()];
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS config: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("TLS config: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), ca_cert.pem()))
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    base: String,
    client: UpstreamClient,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, base, client, shared) = (acceptor.clone(), base.clone(), client.clone(), shared.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (base, client, shared) = (base.clone(), client.clone(), shared.clone());
                async move { Ok::<_, Infallible>(handle(req, base, client, shared).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

fn text_response(status: u16, content_type: &str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn handle(
    req: Request<Incoming>,
    base: String,
    client: UpstreamClient,
    shared: Arc<Shared>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return text_response(400, "text/plain", format!("fault proxy: reading the request: {e}")),
    };
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let seq = shared.next.fetch_add(1, Ordering::Relaxed);
    let entry = Logged {
        seq,
        method: parts.method.to_string(),
        path: path.clone(),
        target: parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
        body: String::from_utf8_lossy(&body[..body.len().min(LOGGED_BODY)]).into_owned(),
        received: SystemTime::now(),
        answered: None,
        held: false,
        outcome: Outcome::Pending,
    };
    let action = {
        let mut state = shared.lock();
        let action = state.rules.iter_mut().find(|r| r.times != Some(0) && r.matches.matches(&entry)).map(|rule| {
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
            rule.action.clone()
        });
        state.log.push(entry);
        action
    };
    shared.changed.send_modify(|n| *n += 1);

    match action {
        Some(Action::Fail { status, content_type, body }) => {
            shared.update(seq, |e| {
                e.outcome = Outcome::Failed(status);
                e.answered = Some(SystemTime::now());
            });
            text_response(status, &content_type, body)
        }
        Some(Action::BlackHole) => std::future::pending().await,
        action => {
            // In a task of its own, so a held request still reaches the upstream on release when
            // its client has gone meanwhile (hyper drops this handler with the connection).
            let forwarding = tokio::spawn(forward(action, parts, body, path, seq, base, client, shared));
            forwarding.await.unwrap_or_else(|e| text_response(500, "text/plain", format!("fault proxy: {e}")))
        }
    }
}

/// Waits for the next [`FaultProxy::release`], counted as holding meanwhile. False when the
/// proxy was dropped instead: the request is abandoned, never sent at teardown.
async fn held(shared: &Shared, seq: u64) -> bool {
    let mut release = shared.release.subscribe();
    release.mark_unchanged();
    shared.lock().holding += 1;
    shared.update(seq, |e| e.held = true);
    let released = release.changed().await.is_ok() && !shared.stopped.load(Ordering::SeqCst);
    let mut state = shared.lock();
    state.holding = state.holding.saturating_sub(1);
    released
}

fn abandoned() -> Response<ProxyBody> {
    text_response(503, "text/plain", "fault proxy: stopped while the request was held".into())
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    action: Option<Action>,
    mut parts: hyper::http::request::Parts,
    body: Bytes,
    path: String,
    seq: u64,
    base: String,
    client: UpstreamClient,
    shared: Arc<Shared>,
) -> Response<ProxyBody> {
    let go_on = match &action {
        Some(Action::Delay(d)) => {
            tokio::time::sleep(*d).await;
            true
        }
        Some(Action::Hold(When::Before)) => held(&shared, seq).await,
        _ => true,
    };
    if !go_on {
        return abandoned();
    }
    // The same method, headers (Host rewritten by the client) and body.
    let uri = format!("{base}{path}");
    parts.uri = match uri.parse() {
        Ok(uri) => uri,
        Err(e) => return text_response(400, "text/plain", format!("fault proxy: bad URI {uri}: {e}")),
    };
    parts.headers.remove(hyper::header::HOST);
    let upstream = Request::from_parts(parts, Full::new(body));
    let response = match client.request(upstream).await {
        Ok(response) => response,
        Err(e) => {
            let message = format!("fault proxy: upstream {base}: {e}");
            shared.update(seq, |entry| {
                entry.outcome = Outcome::UpstreamError(message.clone());
                entry.answered = Some(SystemTime::now());
            });
            return text_response(502, "text/plain", message);
        }
    };
    if matches!(action, Some(Action::Hold(When::After))) && !held(&shared, seq).await {
        return abandoned();
    }
    let status = response.status().as_u16();
    shared.update(seq, |e| {
        e.outcome = Outcome::Forwarded(status);
        e.answered = Some(SystemTime::now());
    });
    response.map(BodyExt::boxed)
}
