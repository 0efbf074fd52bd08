//! `kiln-sandbox`: see `kiln-sandbox --help` (normally run through `./scripts/sandbox`).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Runs kiln end to end on this machine: the in-repo Kubernetes API test server (or with --real a
/// real kube-apiserver + etcd with the Helm chart installed), moto as three
/// AWS accounts, the real kiln-controller and the manifests in examples/. By default a release
/// is walked from dev to prod (a freeze, approvals) and a second one is rolled back by an alarm.
#[derive(Debug, Parser)]
#[command(name = "kiln-sandbox", version, about)]
struct Args {
    /// Set everything up and stay up for kubectl and kubectl kiln (Ctrl-C stops it) instead of
    /// running the scripted release.
    #[arg(long)]
    interactive: bool,
    /// Run on a real kube-apiserver + etcd (built by scripts/controlplane.sh) with the Helm chart
    /// installed (CRDs, RBAC, the approval admission policy; the controller runs as the chart's
    /// ServiceAccount) instead of the in-repo API test server. Slower to start.
    #[arg(long)]
    real: bool,
    /// The kiln-controller binary (default: next to this one).
    #[arg(long)]
    controller: Option<PathBuf>,
    /// The repository root (default: found from the current directory).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Where kubeconfigs and the controller log go (default: <repo>/.sandbox).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Give up on the scripted release after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

fn find_repo() -> Option<PathBuf> {
    let start = std::env::current_dir().ok()?;
    start.ancestors().find(|d| d.join("examples").is_dir() && d.join("crds").is_dir()).map(Path::to_path_buf)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(repo) = args.repo.clone().or_else(find_repo) else {
        eprintln!("kiln-sandbox: run it from the kiln repository (or pass --repo): examples/ and crds/ not found");
        return ExitCode::FAILURE;
    };
    let controller = args.controller.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("kiln-controller")))
            .unwrap_or_else(|| PathBuf::from("kiln-controller"))
    });
    let options = kiln_sandbox::Options {
        controller,
        work_dir: args.work_dir.clone().unwrap_or_else(|| repo.join(".sandbox")),
        repo,
        interactive: args.interactive,
        real: args.real,
        timeout: Duration::from_secs(args.timeout),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln-sandbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let say = |line: &str| println!("{line}");
    match runtime.block_on(kiln_sandbox::run(&options, &say)) {
        Ok(_) if options.interactive => ExitCode::SUCCESS,
        Ok(outcome) if outcome.ok() => {
            println!(
                "sandbox: every expected end state reached (prod live after the freeze; stg rolled back by the alarm)"
            );
            ExitCode::SUCCESS
        }
        Ok(outcome) => {
            eprintln!("kiln-sandbox: the release did not end as expected: {outcome:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kiln-sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}
