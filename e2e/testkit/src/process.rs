//! The real `kiln-controller` binary as a child process: started against a kubeconfig and an
//! AWS endpoint with a log file and a metrics port of its own, watched through `/proc` and its
//! metrics server, and killed on drop. The e2e suite and the cold-start benchmark both use it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::MotoEndpoint;

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or_else(|e| {
        panic!("no free port on 127.0.0.1: {e}");
    })
}

/// How to start a controller process.
#[derive(Clone, Debug)]
pub struct Launch<'a> {
    /// The `kiln-controller` binary.
    pub binary: &'a Path,
    /// The kubeconfig it reads (`KUBECONFIG`).
    pub kubeconfig: &'a Path,
    /// Where its AWS SDK clients go (`--aws-endpoint-url`): moto, a proxy or a stub.
    pub aws_endpoint: &'a str,
    /// Names its log file (`<temp>/kiln-<tag>-<pid>.log`).
    pub tag: &'a str,
    /// Further arguments (leader election, log level, intervals, ...).
    pub args: Vec<String>,
}

/// A `kiln-controller` child process, killed on drop.
pub struct ControllerProcess {
    child: Child,
    /// Its log file (stderr).
    pub log: PathBuf,
    /// Its `/metrics` (and `/readyz`) port on 127.0.0.1.
    pub metrics_port: u16,
    /// When it was started.
    pub started: Instant,
}

impl ControllerProcess {
    /// Starts it with moto's static credentials, the test region and no instance metadata, so
    /// nothing reaches outside this machine.
    pub fn start(launch: Launch<'_>) -> Result<ControllerProcess, String> {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("kiln-{}-{}.log", launch.tag, std::process::id()));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let creds = MotoEndpoint::static_credentials();
        let started = Instant::now();
        let child = Command::new(launch.binary)
            .env("KUBECONFIG", launch.kubeconfig)
            .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
            .env("AWS_REGION", crate::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .args(["--aws-endpoint-url", launch.aws_endpoint])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(&launch.args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("start {}: {e}", launch.binary.display()))?;
        Ok(ControllerProcess { child, log, metrics_port, started })
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it at once (SIGKILL: no cleanup, no lease release), like a crashed pod.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop (SIGTERM), as Kubernetes does before killing a pod.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Its exit code once it has exited (waiting up to `timeout`).
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            // Polling a child process: there is no async wait on std::process::Child.
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// GET a path on its metrics server: status code and body.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`); 0 once it has exited.
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(&format!("/proc/{}/status", self.pid()), field)
    }

    /// User + system CPU seconds it has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `/proc/<pid>/status` field in KiB (0 when absent).
pub fn proc_status_kib(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a `/proc/<pid>/stat`, in seconds (USER_HZ = 100 on Linux).
pub fn cpu_seconds(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The command name (field 2) may contain spaces; count fields after its closing ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After ')': state is index 0, utime (field 14) index 11, stime (field 15) index 12.
    (ticks(11) + ticks(12)) as f64 / 100.0
}
