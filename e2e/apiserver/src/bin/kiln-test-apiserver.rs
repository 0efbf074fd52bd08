//! Runs the kiln Kubernetes API **test** server by hand (never for production): prints the
//! kubeconfig path and serves until Ctrl-C.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The in-repo Kubernetes API test server (test infrastructure, in memory, 127.0.0.1 only).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Static token file: `token,user,uid,"group1,group2"` per line (default: one admin token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Directory of CRD YAML files to serve (default: the repository's crds/).
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Where to write the kubeconfig (default: a file in the temp directory).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve requests without a token as this user (in group system:masters). For kubectl over
    /// `--plain-http`, which does not send tokens over an unencrypted connection. Off by default.
    #[arg(long)]
    anonymous_user: Option<String>,
    /// Watch events retained per resource type (older resourceVersions get 410 Gone).
    #[arg(long, default_value_t = 10_000)]
    event_window: usize,
    /// Serve plain HTTP instead of HTTPS with a generated CA.
    #[arg(long)]
    plain_http: bool,
    /// Log every request (method, URL, Accept, Content-Type, status) to stderr.
    #[arg(long)]
    log_requests: bool,
    /// Authorize requests with RBAC (system:masters always allowed).
    #[arg(long)]
    rbac: bool,
    /// A YAML file of objects to create at start (repeatable), e.g. a rendered Helm chart.
    #[arg(long = "manifest")]
    manifests: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = kiln_test_apiserver::Config {
        port: args.port,
        token_file: args.token_file,
        kubeconfig_path: args.kubeconfig,
        event_window: args.event_window,
        tls: !args.plain_http,
        log_requests: args.log_requests,
        rbac: args.rbac,
        anonymous_user: args.anonymous_user.map(|u| kiln_test_apiserver::UserInfo::new(&u, &["system:masters"])),
        ..kiln_test_apiserver::Config::default()
    };
    if let Some(dir) = args.crds {
        config.crd_dir = dir;
    }
    for path in &args.manifests {
        match std::fs::read_to_string(path) {
            Ok(text) => config.manifests.push(text),
            Err(e) => {
                eprintln!("kiln-test-apiserver: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let server = match kiln_test_apiserver::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiln-test-apiserver: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("kiln-test-apiserver (test infrastructure) listening on {}", server.url);
    for skipped in &server.skipped_manifests {
        eprintln!("kiln-test-apiserver: not served, skipped: {skipped}");
    }
    println!("{}", server.kubeconfig_path.display());
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("kiln-test-apiserver: waiting for Ctrl-C: {e}");
        return ExitCode::FAILURE;
    }
    drop(server);
    ExitCode::SUCCESS
}
