//! A canned-response HTTP server for the AWS paths moto lacks (CodeDeploy StopDeployment,
//! DescribeAlarmHistory) and for failures moto cannot provoke (throttling, 5xx): the real SDK
//! clients, with kiln's timeouts and retries, are pointed at it and every request is recorded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use kiln_aws::Scope;
use kiln_aws::credentials::{AwsSettings, Clients};

use crate::moto::MotoEndpoint;
use crate::{DEFAULT_ACCOUNT, REGION};

/// A request the [`Stub`] received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// The request line's method.
    pub method: String,
    /// The request line's path (with the query string).
    pub path: String,
    /// Header lines, names lower-cased: (name, value).
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl StubRequest {
    /// The first header `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A canned answer: (status, content type, body).
pub type StubResponse = (u16, &'static str, String);

type Handler = dyn Fn(&StubRequest, usize) -> StubResponse + Send + Sync;

/// A tiny HTTP/1.1 server on 127.0.0.1 answering canned responses: `handler(request, n)` answers
/// the `n`th request (0-based); every answer closes the connection. The serving thread lives as
/// long as the test process (it blocks in `accept`).
#[derive(Debug)]
pub struct Stub {
    /// The port it listens on.
    pub port: u16,
    requests: Arc<Mutex<Vec<StubRequest>>>,
}

impl Stub {
    /// Starts the stub on a free port.
    ///
    /// # Panics
    /// When no 127.0.0.1 port can be bound.
    #[track_caller]
    pub fn start(handler: impl Fn(&StubRequest, usize) -> StubResponse + Send + Sync + 'static) -> Stub {
        let bound = TcpListener::bind("127.0.0.1:0").and_then(|l| Ok((l.local_addr()?.port(), l)));
        let (port, listener) = match bound {
            Ok(bound) => bound,
            Err(e) => panic!("stub: binding a 127.0.0.1 port failed: {e}"),
        };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let handler: Box<Handler> = Box::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let Some(req) = read_request(&mut conn) else { continue };
                let n = {
                    let mut r = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    r.push(req.clone());
                    r.len() - 1
                };
                let (status, content_type, body) = handler(&req, n);
                let reason = match status {
                    200 => "OK",
                    400 => "Bad Request",
                    404 => "Not Found",
                    500 => "Internal Server Error",
                    503 => "Service Unavailable",
                    _ => "Status",
                };
                let out = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: stub-{n}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(out.as_bytes());
                let _ = conn.flush();
            }
        });
        Stub { port, requests }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Clients in moto's default account ([`DEFAULT_ACCOUNT`], [`REGION`]) pointed at the stub,
    /// with kiln's timeouts and retries ([`AwsSettings::for_endpoint`]).
    pub async fn clients(&self) -> Clients {
        let creds = SharedCredentialsProvider::new(MotoEndpoint::static_credentials());
        let config = AwsSettings::for_endpoint(self.url()).sdk_config(REGION, creds).await;
        Clients::new(&config, Scope { account_id: DEFAULT_ACCOUNT.into(), region: REGION.into() })
    }
}

/// Reads one request (head and `Content-Length` body); `None` on a broken connection.
fn read_request(conn: &mut TcpStream) -> Option<StubRequest> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Some(StubRequest { method, path, headers, body })
}
