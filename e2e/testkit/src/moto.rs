//! The moto server (the AWS emulator, pinned by `scripts/moto.sh`) and raw AWS Query calls.
//!
//! [`Moto::start`] runs `moto_server` on a free 127.0.0.1 port and kills it on drop. The binary is
//! `$KILN_MOTO_BIN` when set, else `.venv-moto/bin/moto_server` at the repository root
//! ([`repo_root`]). A missing binary is a failure, never a skip: run `scripts/moto.sh`.
//!
//! EC2 and IAM are called on the wire by hand ([`MotoEndpoint::query`]): moto does not check
//! signatures, it reads the access key (hence the account) and the service from the
//! `Authorization` header, so no `aws-sdk-ec2`/`aws-sdk-iam` build is needed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use kiln_aws::Scope;
use kiln_aws::credentials::{AwsSettings, Clients};

use crate::{DEFAULT_ACCOUNT, REGION, STATIC_ACCESS_KEY};

/// How long [`Moto::start`] waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root: the nearest ancestor of this crate's directory (then of the current
/// directory) that holds `.venv-moto`, else the nearest one that holds `Cargo.lock`.
pub fn repo_root() -> Result<PathBuf, String> {
    let starts = [PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::env::current_dir().unwrap_or_default()];
    for start in &starts {
        if let Some(dir) = start.ancestors().find(|d| d.join(".venv-moto").is_dir()) {
            return Ok(dir.to_path_buf());
        }
    }
    for start in &starts {
        if let Some(dir) = start.ancestors().find(|d| d.join("Cargo.lock").is_file()) {
            return Ok(dir.to_path_buf());
        }
    }
    Err(format!(
        "no directory holding .venv-moto or Cargo.lock above {} or {}",
        starts[0].display(),
        starts[1].display()
    ))
}

/// The `moto_server` to run: `$KILN_MOTO_BIN` when set, else `<repo root>/.venv-moto/bin/moto_server`.
/// Errors when the file does not exist (with how to install it).
pub fn moto_bin() -> Result<PathBuf, String> {
    installed_bin("KILN_MOTO_BIN", ".venv-moto/bin/moto_server", |bin| {
        format!(
            "moto is not installed at {}: run scripts/moto.sh (it installs the pinned moto[server] into \
             .venv-moto at the repository root) or set KILN_MOTO_BIN to a moto_server",
            bin.display()
        )
    })
}

/// A test tool: `$<env>` when set, else `<repo root>/<default>`; `missing` says how to install it
/// when the file does not exist (a failure, never a skip).
pub(crate) fn installed_bin(
    env: &str,
    default: &str,
    missing: impl FnOnce(&Path) -> String,
) -> Result<PathBuf, String> {
    let bin = match std::env::var_os(env) {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => repo_root()?.join(default),
    };
    if bin.is_file() { Ok(bin) } else { Err(missing(&bin)) }
}

/// A `moto_server` process on 127.0.0.1, killed (and reaped) on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    log: PathBuf,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    ///
    /// # Panics
    /// When moto is not installed (see [`moto_bin`]) or does not start: tests fail, never skip.
    #[track_caller]
    pub fn start() -> Moto {
        match Moto::try_start() {
            Ok(moto) => moto,
            Err(e) => panic!("starting moto_server failed: {e}"),
        }
    }

    /// Starts moto on a free port and waits until it answers (up to 60 s).
    pub fn try_start() -> Result<Moto, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free 127.0.0.1 port: {e}"))?
            .port();
        Moto::try_start_on(port)
    }

    /// Starts moto on `port` (a sandbox that wants a stable address) and waits until it answers.
    /// Its output goes to `kiln-moto-<port>.log` in the temporary directory ([`Moto::log_path`]).
    pub fn try_start_on(port: u16) -> Result<Moto, String> {
        let bin = moto_bin()?;
        let log = std::env::temp_dir().join(format!("kiln-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        // From here on, dropping `moto` kills the process.
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, body)) = http(port, "GET", "/moto-api/", &[], "")
                && !body.is_empty()
            {
                return Ok(moto);
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(format!("moto_server on port {port} exited ({status}); see {}", moto.log.display()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "moto_server did not answer on port {port} within {}s; see {}",
                    START_TIMEOUT.as_secs(),
                    moto.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where the server's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server's address, without ownership of the process (cheap to clone and keep).
    pub fn endpoint(&self) -> MotoEndpoint {
        MotoEndpoint { port: self.port }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.endpoint().url()
    }

    /// kiln's AWS settings pointed at this server (short timeouts and backoff).
    pub fn settings(&self) -> AwsSettings {
        self.endpoint().settings()
    }

    /// Clients acting in moto's default account ([`DEFAULT_ACCOUNT`], [`REGION`]) with static test
    /// credentials.
    pub async fn clients(&self) -> Clients {
        self.endpoint().clients().await
    }

    /// An AWS Query-protocol call as `access_key` in [`REGION`]; see [`MotoEndpoint::query`].
    pub fn query(
        &self,
        service: &str,
        version: &str,
        access_key: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        self.endpoint().query(REGION, service, version, access_key, params)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clients acting in moto's default account ([`DEFAULT_ACCOUNT`], [`REGION`]) with static test
/// credentials, sending to `endpoint_url`: moto's, or a [`crate::FaultProxy`] in front of it.
pub async fn static_clients(endpoint_url: &str) -> Clients {
    let config = AwsSettings::for_endpoint(endpoint_url)
        .sdk_config(REGION, SharedCredentialsProvider::new(MotoEndpoint::static_credentials()))
        .await;
    Clients::new(&config, Scope { account_id: DEFAULT_ACCOUNT.into(), region: REGION.into() })
}

/// The address of a moto server on 127.0.0.1 (the process is owned by [`Moto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotoEndpoint {
    /// The port it listens on.
    pub port: u16,
}

impl MotoEndpoint {
    /// A moto server already listening on 127.0.0.1:`port` (started elsewhere).
    pub fn on_port(port: u16) -> MotoEndpoint {
        MotoEndpoint { port }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// kiln's AWS settings pointed at this server (short timeouts and backoff).
    pub fn settings(&self) -> AwsSettings {
        AwsSettings::for_endpoint(self.url())
    }

    /// The static test credentials (moto's default account).
    pub fn static_credentials() -> Credentials {
        Credentials::new(STATIC_ACCESS_KEY, "test", None, None, "kiln-testkit-static")
    }

    /// Clients acting in moto's default account ([`DEFAULT_ACCOUNT`], [`REGION`]) with static test
    /// credentials.
    pub async fn clients(&self) -> Clients {
        static_clients(&self.url()).await
    }

    /// An AWS Query-protocol call made by hand as `access_key` in `region` (moto does not check
    /// signatures; it reads the access key, region and service from the `Authorization` header and
    /// acts in the account the key belongs to). Returns the XML body; a non-2xx answer is an error
    /// carrying the body.
    pub fn query(
        &self,
        region: &str,
        service: &str,
        version: &str,
        access_key: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        let mut body = format!("Version={version}");
        for (k, v) in params {
            body.push('&');
            body.push_str(&encode(k));
            body.push('=');
            body.push_str(&encode(v));
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={access_key}/20250101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let action = params.iter().find(|(k, _)| *k == "Action").map_or("?", |(_, v)| *v);
        let (status, out) = http(
            self.port,
            "POST",
            "/",
            &[("Authorization", &auth), ("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        )
        .map_err(|e| format!("{service} {action} to moto on port {}: {e}", self.port))?;
        if (200..300).contains(&status) {
            Ok(out)
        } else {
            Err(format!("{service} {action} as {access_key}: HTTP {status}: {out}"))
        }
    }

    /// An EC2 Query call (API version 2016-11-15) as `access_key` in `region`.
    pub fn ec2(&self, region: &str, access_key: &str, params: &[(&str, &str)]) -> Result<String, String> {
        self.query(region, "ec2", "2016-11-15", access_key, params)
    }

    /// An IAM Query call (API version 2010-05-08) as `access_key` (IAM is global).
    pub fn iam(&self, access_key: &str, params: &[(&str, &str)]) -> Result<String, String> {
        self.query("us-east-1", "iam", "2010-05-08", access_key, params)
    }

    /// An IAM role Lambda can assume, named `name`, in `access_key`'s account; returns its ARN.
    pub fn lambda_role(&self, access_key: &str, name: &str) -> Result<String, String> {
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let out = self
            .iam(access_key, &[("Action", "CreateRole"), ("RoleName", name), ("AssumeRolePolicyDocument", policy)])?;
        xml_tag(&out, "Arn")
    }

    /// A VPC (10.0.0.0/16) with two subnets in two availability zones (`<region>a`, `<region>b`)
    /// and a security group named `sg_name`, in `access_key`'s account.
    pub fn vpc(&self, region: &str, access_key: &str, sg_name: &str) -> Result<Vpc, String> {
        let out = self.ec2(region, access_key, &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")])?;
        let id = xml_tag(&out, "vpcId")?;
        let mut subnets = Vec::new();
        for (i, zone) in ["a", "b"].iter().enumerate() {
            let cidr = format!("10.0.{i}.0/24");
            let az = format!("{region}{zone}");
            let out = self.ec2(
                region,
                access_key,
                &[("Action", "CreateSubnet"), ("VpcId", &id), ("CidrBlock", &cidr), ("AvailabilityZone", &az)],
            )?;
            subnets.push(xml_tag(&out, "subnetId")?);
        }
        let out = self.ec2(
            region,
            access_key,
            &[
                ("Action", "CreateSecurityGroup"),
                ("GroupName", sg_name),
                ("GroupDescription", "kiln test"),
                ("VpcId", &id),
            ],
        )?;
        let security_group = xml_tag(&out, "groupId")?;
        Ok(Vpc { id, subnets, security_group })
    }
}

/// A VPC made by [`MotoEndpoint::vpc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    /// `vpc-…`.
    pub id: String,
    /// Two subnets, in `<region>a` and `<region>b`.
    pub subnets: Vec<String>,
    /// A security group in the VPC.
    pub security_group: String,
}

/// The text of the first `<name>…</name>` element in `xml` (Query-protocol answers).
pub fn xml_tag(xml: &str, name: &str) -> Result<String, String> {
    let open = format!("<{name}>");
    let start = xml.find(&open).map(|i| i + open.len()).ok_or_else(|| format!("no <{name}> in {xml}"))?;
    let end = xml[start..].find('<').map(|i| i + start).ok_or_else(|| format!("<{name}> is not closed in {xml}"))?;
    Ok(xml[start..end].to_string())
}

/// Percent-encoding for `application/x-www-form-urlencoded` (RFC 3986 unreserved kept).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal HTTP/1.1 request to 127.0.0.1:`port`; returns the status and the body.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((out.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_tags_are_read_or_named_missing() {
        assert_eq!(xml_tag("<a><vpcId>vpc-1</vpcId></a>", "vpcId"), Ok("vpc-1".to_string()));
        assert!(xml_tag("<a/>", "vpcId").is_err_and(|e| e.contains("no <vpcId>")));
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(encode(r#"{"a": 1}"#), "%7B%22a%22%3A%201%7D");
        assert_eq!(encode("abc-_.~"), "abc-_.~");
    }

    #[test]
    fn the_repo_root_holds_the_lock_file() {
        let root = repo_root();
        assert!(root.as_ref().is_ok_and(|r| r.join("Cargo.lock").is_file()), "{root:?}");
    }
}
