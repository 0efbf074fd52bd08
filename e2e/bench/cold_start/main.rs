//! Benchmark (not a test) of PRODUCT's scale goals, against the real `kiln-controller` binary:
//!
//! 1. **cold start** — "10,000 Releases and 10,000 Promotions: controller RSS ≤ 128 MiB; all
//!    reconciled after a cold start within 60 s on 2 cores". The in-repo API test server runs in
//!    this process; N Releases (Lambda, `allAtOnce`, through dev → stg → prod) each with a
//!    finished dev Promotion (status written the way the controller writes it, computed by
//!    kiln-core's own state machine) are created first (setup, not measured). Then the
//!    controller starts and we measure the time until every Release has
//!    `status.observedGeneration`, its peak RSS then and after 10 s idle, its CPU time and the
//!    API requests it made (writes while idle must be 0); then the same for a restart (a second
//!    process on the reconciled objects), and what the stored objects weigh as kiln's types.
//! 2. **lead time** — "Controller overhead on lead time dev→stg→prod with zero bake and
//!    approvals given: ≤ 5 s", against moto (needs `./scripts/moto.sh`).
//!
//! `cargo bench -p kiln-controller --bench cold_start` (both parts);
//! `cargo bench -p kiln-controller --bench cold_start -- cold` or `-- lead` for one.
//! `KILN_BENCH_N` (default 10000) sets N. Experiments: `KILN_BENCH_PROBE=list` (poll the store
//! instead of watching), `KILN_BENCH_STATUS=no-evidence|minimal` (finished Promotions without
//! `status.evidence`, or with only phase, generations, times and message),
//! `KILN_BENCH_PERF=<file>` (`perf record` the controller until all are reconciled),
//! `KILN_BENCH_CONTROLLER=<path>` (another build of `kiln-controller`, cold-start part only).
//! Method and numbers: docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../suite/harness.rs"]
mod harness;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use kiln_testkit::process::{ControllerProcess, Launch};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Every measured wait gives up after this long.
pub(crate) const LIMIT: Duration = Duration::from_secs(300);
/// Namespaces the Releases are spread over.
pub(crate) const NAMESPACES: usize = 4;
/// Releases per service (versions v1.0.0 … v1.9.0).
pub(crate) const VERSIONS: usize = 10;
/// Writes in flight during setup.
pub(crate) const SETUP_CONCURRENCY: usize = 32;
/// Releases taken dev → stg → prod one after another in the lead-time part.
pub(crate) const LEAD_ROUNDS: u32 = 5;
/// Idle time after everything is reconciled.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if let [cmd, kind, mode, path] = args.as_slice()
        && cmd == "typed-size"
    {
        // Internal: run by `typed_sizes` in a fresh process.
        sizes::typed_size_child(kind, mode == "cached", path);
        return ExitCode::SUCCESS;
    }
    let want = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    let n: usize = std::env::var("KILN_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut ok = true;
    if want("cold") {
        ok &= report(runtime.block_on(cold::cold_start(n)));
    }
    if want("lead") {
        ok &= report(runtime.block_on(lead::lead_time()));
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

pub(crate) fn report(r: Result<(), String>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            eprintln!("\nBENCHMARK FAILED: {e}");
            false
        }
    }
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(crate) async fn client_for(server: &kiln_test_apiserver::TestServer) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
    Client::try_from(cfg).expect("client")
}

mod cold;
mod lead;
mod requests;
mod setup;
mod sizes;

/// Starts `kiln-controller` against `server` (no leader election, AWS pointed at `aws_port`).
pub(crate) fn spawn_controller(
    server: &kiln_test_apiserver::TestServer,
    aws_port: u16,
    tag: &str,
) -> Result<ControllerProcess, String> {
    // `KILN_BENCH_CONTROLLER=<path>`: measure another build of the controller.
    let binary =
        std::env::var("KILN_BENCH_CONTROLLER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kiln-controller").into());
    let args = [
        "--leader-election=false",
        "--controller-namespace",
        "kiln-system",
        "--log-format",
        "text",
        "--log-level",
        "warn",
    ];
    ControllerProcess::start(Launch {
        binary: Path::new(&binary),
        kubeconfig: &server.kubeconfig_path,
        aws_endpoint: &format!("http://127.0.0.1:{aws_port}"),
        tag: &format!("bench-{tag}"),
        args: args.map(String::from).to_vec(),
    })
}

/// The last lines of a controller's log, for a failure message.
pub(crate) fn log_tail(ctl: &ControllerProcess) -> String {
    format!("controller log {} (last 30 lines):\n{}", ctl.log.display(), ctl.log_tail(30))
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
