//! The controller's settings, from flags or environment variables (every flag has a `KILN_*`
//! variable so a Helm chart or a sandbox can set them either way).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// `kiln-controller` — releases services on AWS from `Release` and `Promotion` resources.
#[derive(Debug, Clone, Parser)]
#[command(name = "kiln-controller", version, about)]
pub struct Config {
    /// Namespaces to watch (comma-separated). Empty: all namespaces. Environments are
    /// cluster-scoped and always watched.
    #[arg(long, env = "KILN_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Only reconcile Releases and Promotions matching this label selector (e.g.
    /// `kiln.dev/shard=a`), so several controllers can split the work.
    #[arg(long, env = "KILN_SHARD_SELECTOR")]
    pub shard_selector: Option<String>,

    /// The namespace kiln runs in: its Lease lives there, and FreezeWindows there apply to every
    /// namespace.
    #[arg(long, env = "KILN_NAMESPACE", default_value = "kiln-system")]
    pub controller_namespace: String,

    /// How often alarms are read per AWS account while something bakes (the batched
    /// DescribeAlarms interval), e.g. `2s`.
    #[arg(long, env = "KILN_ALARM_POLL_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub alarm_poll_interval: Duration,

    /// Send every AWS call to this endpoint instead of AWS (moto, a sandbox).
    #[arg(long, env = "KILN_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// Send STS calls (AssumeRole into each environment's role) here instead, e.g. a VPC
    /// endpoint for STS. Defaults to `--aws-endpoint-url`, else the regional STS endpoint.
    #[arg(long, env = "KILN_STS_ENDPOINT_URL")]
    pub sts_endpoint_url: Option<String>,

    /// Read CloudWatch alarm history (DescribeAlarmHistory) to see alarms that flapped between
    /// two polls. Turn off only for emulators without the API: a state change between polls is
    /// then treated as a breach (fail closed).
    #[arg(long, env = "KILN_ALARM_HISTORY", default_value_t = true, action = clap::ArgAction::Set)]
    pub alarm_history: bool,

    /// The region of the controller's own identity (where STS is called).
    #[arg(long, env = "KILN_AWS_REGION", default_value = "us-east-1")]
    pub aws_region: String,

    /// Address of `/metrics`, `/livez` and `/readyz`.
    #[arg(long, env = "KILN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log filter (`info`, `debug`, `kiln_controller=debug,kube=info`, ...).
    #[arg(long, env = "KILN_LOG", default_value = "info")]
    pub log_level: String,

    /// Log format: `json` (one object per line, for log pipelines) or `text`.
    #[arg(long, env = "KILN_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Take part in leader election (one active controller per Lease). Turn off only when a
    /// single replica runs.
    #[arg(long, env = "KILN_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// The Lease's name.
    #[arg(long, env = "KILN_LEASE_NAME", default_value = "kiln-controller")]
    pub lease_name: String,

    /// kiln's own username, written as `spec.requestedBy` of the Promotions it creates (the
    /// chart sets its ServiceAccount's, `system:serviceaccount:<namespace>:<name>`, which the
    /// chart's admission policy accepts as the requester's own name).
    #[arg(long, env = "KILN_REQUESTED_BY")]
    pub requested_by: Option<String>,

    /// How long a leader's Lease holds without renewal before a standby takes over.
    #[arg(long, env = "KILN_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// A leader that cannot renew within this time stops acting (and exits).
    #[arg(long, env = "KILN_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: Duration,

    /// How often the Lease is renewed or, by a standby, tried.
    #[arg(long, env = "KILN_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub lease_retry_period: Duration,

    /// This replica's identity in the Lease (defaults to the pod name or hostname plus a
    /// random suffix).
    #[arg(long, env = "KILN_IDENTITY")]
    pub identity: Option<String>,

    /// How many Promotions are reconciled at once.
    #[arg(long, env = "KILN_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Resolve HOST as the controller resolves the API server and AWS endpoints (the C library's
    /// resolver: /etc/hosts, then DNS per /etc/resolv.conf), print its addresses and exit without
    /// starting. Checks a container image's resolver (scripts/image-check).
    #[arg(long, value_name = "HOST")]
    pub check_resolve: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON lines.
    Json,
    /// Human-readable text.
    Text,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = kiln_core::duration::parse("duration", s).map_err(|e| e.to_string())?;
    Duration::try_from(d).map_err(|_| format!("{s}: must not be negative"))
}

impl Config {
    /// The Lease identity: `--identity`, else `$POD_NAME` or the hostname, plus the process id
    /// so two processes on one host differ.
    pub fn identity(&self) -> String {
        if let Some(id) = &self.identity {
            return id.clone();
        }
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "kiln-controller".to_string());
        format!("{host}-{}", std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults() {
        let c = Config::try_parse_from(["kiln-controller", "--namespaces", "a,b", "--alarm-poll-interval", "500ms"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.namespaces, vec!["a", "b"]);
        assert_eq!(c.alarm_poll_interval, Duration::from_millis(500));
        assert!(c.leader_election);
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        let bad = Config::try_parse_from(["kiln-controller", "--alarm-poll-interval", "soon"]);
        assert!(bad.is_err());
    }
}
