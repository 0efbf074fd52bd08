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

#[path = "../suite/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use kiln_api::promotion::{DeployedResources, LambdaSnapshot, Snapshot};
use kiln_api::{Environment, FIELD_MANAGER, Promotion, PromotionPhase, PromotionStatus, Release};
use kiln_core::machine::{Action, Outcome};
use kiln_testkit::process::{ControllerProcess, Launch, cpu_seconds, free_port, proc_status_kib};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// Every measured wait gives up after this long.
const LIMIT: Duration = Duration::from_secs(300);
/// Namespaces the Releases are spread over.
const NAMESPACES: usize = 4;
/// Releases per service (versions v1.0.0 … v1.9.0).
const VERSIONS: usize = 10;
/// Writes in flight during setup.
const SETUP_CONCURRENCY: usize = 32;
/// Releases taken dev → stg → prod one after another in the lead-time part.
const LEAD_ROUNDS: u32 = 5;
/// Idle time after everything is reconciled.
const IDLE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if let [cmd, kind, mode, path] = args.as_slice()
        && cmd == "typed-size"
    {
        // Internal: run by `typed_sizes` in a fresh process.
        typed_size_child(kind, mode == "cached", path);
        return ExitCode::SUCCESS;
    }
    let want = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    let n: usize = std::env::var("KILN_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut ok = true;
    if want("cold") {
        ok &= report(runtime.block_on(cold_start(n)));
    }
    if want("lead") {
        ok &= report(runtime.block_on(lead_time()));
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn report(r: Result<(), String>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            eprintln!("\nBENCHMARK FAILED: {e}");
            false
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn client_for(server: &kiln_test_apiserver::TestServer) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
    Client::try_from(cfg).expect("client")
}

// ---------------------------------------------------------------------------------------------
// Part 1: cold start with N Releases and N finished Promotions.

async fn cold_start(n: usize) -> Result<(), String> {
    println!("== cold start: {n} Releases, {n} finished dev Promotions ==");
    let server = kiln_test_apiserver::start(kiln_test_apiserver::Config::default())
        .await
        .map_err(|e| format!("start the API test server: {e}"))?;
    let client = client_for(&server).await;
    let handle = server.handle.clone();

    // --- setup (not measured) ---
    let setup = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in (0..NAMESPACES).map(|k| format!("team-{k}")).chain(["kiln-system".to_string()]) {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        namespaces.create(&PostParams::default(), &obj).await.map_err(|e| format!("namespace {ns}: {e}"))?;
    }
    let envs_api: Api<Environment> = Api::all(client.clone());
    let mut dev = None;
    for (env, id, upstream, rules) in [
        ("dev", "111111111111", json!([]), json!({"auto": true})),
        ("stg", "222222222222", json!(["dev"]), json!({"approvals": [{"role": "release-engineering", "count": 1}]})),
        (
            "prod",
            "333333333333",
            json!(["stg"]),
            json!({"requireChangeRef": true,
                   "approvals": [{"role": "security", "count": 1}, {"role": "product", "count": 1}]}),
        ),
    ] {
        let obj: Environment = serde_json::from_value(json!({
            "apiVersion": "kiln.dev/v1alpha1", "kind": "Environment", "metadata": {"name": env},
            "spec": {"upstream": upstream,
                     "aws": {"accountId": id, "region": "us-east-1", "roleArn": format!("arn:aws:iam::{id}:role/kiln-deploy")},
                     "promotion": rules, "bake": {"duration": "10m"}}
        }))
        .expect("environment");
        let created =
            envs_api.create(&PostParams::default(), &obj).await.map_err(|e| format!("Environment {env}: {e}"))?;
        if env == "dev" {
            dev = Some(created);
        }
    }
    let dev = dev.expect("dev");

    let created = std::sync::atomic::AtomicUsize::new(0);
    let deadline = Instant::now() + LIMIT;
    let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let dev = &dev;
            let created = &created;
            async move {
                if Instant::now() > deadline {
                    return Err(format!("setup did not finish within {LIMIT:?}"));
                }
                create_release_with_finished_dev(&client, dev, i).await?;
                let c = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if c.is_multiple_of(2000) {
                    println!("  setup: {c}/{n} Releases with their dev Promotion ({:.0?})", setup.elapsed());
                }
                Ok(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    let sample = handle.get("promotions", Some("team-0"), "svc-0-v0-dev").unwrap_or_default();
    let status_bytes = serde_json::to_vec(&sample["status"]).map(|v| v.len()).unwrap_or(0);
    let promotion_bytes = serde_json::to_vec(&sample).map(|v| v.len()).unwrap_or(0);
    let release_bytes = handle
        .get("releases", Some("team-0"), "svc-0-v0")
        .and_then(|r| serde_json::to_vec(&r).ok())
        .map(|v| v.len())
        .unwrap_or(0);
    println!(
        "  setup done in {:.1?}: {n} Releases (~{release_bytes} B of JSON each), {n} Succeeded Promotions \
         (~{promotion_bytes} B each, status {status_bytes} B, {} timeline entries)",
        setup.elapsed(),
        sample["status"]["timeline"].as_array().map(Vec::len).unwrap_or(0)
    );

    // Progress probe: a watch on Releases in this process (event-driven, exact to a few ms).
    // `KILN_BENCH_PROBE=list` polls the store instead (a full copy of every Release under the
    // API server's store lock every 250 ms; it slows the server down, see docs/benchmarks.md).
    let probe = if std::env::var("KILN_BENCH_PROBE").as_deref() == Ok("list") {
        Probe::List
    } else {
        Probe::Watch(watch_reconciled(client.clone()).await?)
    };
    // Its watch request follows the list: let it land before the request counts are taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(p) = handle.get("promotions", Some("team-0"), "svc-0-v0-dev") {
        let path = std::env::temp_dir().join("kiln-bench-promotion.json");
        let _ = std::fs::write(&path, serde_json::to_vec_pretty(&p).unwrap_or_default());
        println!("  a finished Promotion as stored: {}", path.display());
    }

    // --- measured: the controller from process start ---
    let before = requests(&handle);
    let bench_cpu_before = cpu_seconds("/proc/self/stat");
    let aws_port = free_port(); // nothing listens there: an AWS call fails at once, in the log
    let mut ctl = spawn_controller(&server, aws_port, "cold-start")?;

    let perf = std::env::var("KILN_BENCH_PERF").ok().map(|out| start_perf(ctl.pid(), &out));

    let mut ready_at = None;
    let mut rss_ready = 0;
    let mut polls = 0u32;
    let mut poll_time = Duration::ZERO;
    let mut last_done = 0;
    let mut progress = Vec::new();
    let reconciled_at = loop {
        if !ctl.running() {
            return Err(format!("the controller exited\n{}", log_tail(&ctl)));
        }
        if ready_at.is_none() && ctl.http_get("/readyz").is_some_and(|(c, _)| c == 200) {
            ready_at = Some(ctl.started.elapsed());
            rss_ready = ctl.status_kib("VmRSS");
        }
        let (done, at) = match &probe {
            Probe::Watch(rx) => *rx.borrow(),
            Probe::List => {
                let t = Instant::now();
                let releases = handle.list("releases");
                let done = releases.iter().filter(|r| reconciled(r)).count();
                poll_time += t.elapsed();
                polls += 1;
                (done, Instant::now())
            }
        };
        if done != last_done {
            progress.push((at.saturating_duration_since(ctl.started), done, ctl.status_kib("VmRSS")));
            last_done = done;
        }
        if done == n {
            break at.saturating_duration_since(ctl.started);
        }
        if ctl.started.elapsed() > LIMIT {
            return Err(format!(
                "only {done} of {n} Releases reconciled within {LIMIT:?}; RSS {}\n{}",
                mib(ctl.status_kib("VmRSS")),
                log_tail(&ctl)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if let Some(p) = perf {
        stop_perf(p);
    }
    if let Some(r) = handle.get("releases", Some("team-0"), "svc-0-v0") {
        let path = std::env::temp_dir().join("kiln-bench-release.json");
        let _ = std::fs::write(&path, serde_json::to_vec_pretty(&r).unwrap_or_default());
    }
    let hwm_reconciled = ctl.status_kib("VmHWM");
    let rss_reconciled = ctl.status_kib("VmRSS");
    let cpu_reconciled = ctl.cpu_seconds();
    let at_reconciled = requests(&handle);
    let bench_cpu_reconciled = cpu_seconds("/proc/self/stat");

    tokio::time::sleep(IDLE).await;
    let hwm_idle = ctl.status_kib("VmHWM");
    let rss_idle = ctl.status_kib("VmRSS");
    let cpu_idle = ctl.cpu_seconds();
    let after_idle = requests(&handle);
    let metrics = ctl.http_get("/metrics").map(|(_, b)| b).unwrap_or_default();
    let log_lines = std::fs::read_to_string(&ctl.log).map(|t| t.lines().count()).unwrap_or(0);
    let aws_errors = std::fs::read_to_string(&ctl.log)
        .map(|t| t.lines().filter(|l| l.contains(&format!("127.0.0.1:{aws_port}")) || l.contains("aws")).count())
        .unwrap_or(0);
    drop(ctl);

    // --- measured: a restart (every object already has the status the first run wrote) ---
    let restart = warm_restart(&server, aws_port, n).await?;
    let sizes = typed_sizes(&handle);

    // --- report ---
    println!("\n  progress (s since process start, Releases with observedGeneration, RSS):");
    let step = (progress.len() / 12).max(1);
    for (i, (t, done, rss)) in progress.iter().enumerate() {
        if i % step == 0 || i + 1 == progress.len() {
            println!("    {:>6.2} s  {done:>6}  {}", t.as_secs_f64(), mib(*rss));
        }
    }
    let writes = |a: &BTreeMap<(String, String), u64>, b: &BTreeMap<(String, String), u64>| {
        diff(a, b).into_iter().filter(|((v, _), _)| WRITE_VERBS.contains(&v.as_str())).collect::<BTreeMap<_, _>>()
    };
    let cold_writes = writes(&before, &at_reconciled);
    let idle_writes = writes(&at_reconciled, &after_idle);
    let reads = diff(&before, &at_reconciled)
        .into_iter()
        .filter(|((v, _), _)| !WRITE_VERBS.contains(&v.as_str()))
        .collect::<BTreeMap<_, _>>();
    let fmt = |m: &BTreeMap<(String, String), u64>| {
        if m.is_empty() {
            "0".to_string()
        } else {
            m.iter().map(|((v, r), c)| format!("{c} {v} {r}")).collect::<Vec<_>>().join(", ")
        }
    };
    let total = |m: &BTreeMap<(String, String), u64>| m.values().sum::<u64>();
    let metric = |name: &str| {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).unwrap_or("?").to_string()
    };
    println!("\n  | Measure (N = {n}) | Result |");
    println!("  |---|---|");
    println!(
        "  | process start → /readyz 200 (caches synced) | {} |",
        ready_at.map(|t| format!("{:.2} s", t.as_secs_f64())).unwrap_or("not seen".into())
    );
    println!(
        "  | process start → every Release has status.observedGeneration | {:.2} s |",
        reconciled_at.as_secs_f64()
    );
    println!("  | RSS when /readyz turned 200 (caches full, nothing reconciled yet) | {} |", mib(rss_ready));
    println!("  | peak RSS (VmHWM) when all reconciled | {} (RSS then {}) |", mib(hwm_reconciled), mib(rss_reconciled));
    println!("  | peak RSS (VmHWM) after {IDLE:?} idle | {} (RSS then {}) |", mib(hwm_idle), mib(rss_idle));
    println!("  | controller CPU until all reconciled | {cpu_reconciled:.2} s (user+sys) |");
    println!("  | controller CPU during {IDLE:?} idle | {:.2} s |", cpu_idle - cpu_reconciled);
    println!(
        "  | bench process CPU (API server + polling) until all reconciled | {:.2} s |",
        bench_cpu_reconciled - bench_cpu_before
    );
    println!("  | API writes until all reconciled | {} ({}) |", total(&cold_writes), fmt(&cold_writes));
    println!("  | API writes during {IDLE:?} idle | {} ({}) |", total(&idle_writes), fmt(&idle_writes));
    println!("  | API reads until all reconciled | {} |", fmt(&reads));
    println!(
        "  | reconciles (kiln_reconciles_total) | Release {}, Promotion {} |",
        metric("kiln_reconciles_total{kind=\"release\"}"),
        metric("kiln_reconciles_total{kind=\"promotion\"}")
    );
    println!(
        "  | time inside reconciles (kiln_reconcile_duration_seconds_sum) | Release {} s, Promotion {} s |",
        metric("kiln_reconcile_duration_seconds_sum{kind=\"release\"}"),
        metric("kiln_reconcile_duration_seconds_sum{kind=\"promotion\"}")
    );
    let errors: Vec<&str> = metrics.lines().filter(|l| l.starts_with("kiln_reconcile_errors_total")).collect();
    println!("  | reconcile errors | {} |", if errors.is_empty() { "0".to_string() } else { errors.join("; ") });
    println!("  | controller log lines at warn (lines mentioning AWS) | {log_lines} ({aws_errors}) |");
    if polls > 0 {
        println!(
            "  | bench polls of the Release list | {polls}, {:.1} ms each on average |",
            poll_time.as_secs_f64() * 1000.0 / f64::from(polls.max(1))
        );
    }

    let mut failures = Vec::new();
    if total(&idle_writes) != 0 {
        failures.push(format!("{} API writes while idle: {}", total(&idle_writes), fmt(&idle_writes)));
    }
    if diff(&before, &at_reconciled).keys().any(|(v, r)| r == "promotions" && WRITE_VERBS.contains(&v.as_str())) {
        failures.push("the controller wrote finished Promotions at rest".to_string());
    }
    println!(
        "\n  goals: all reconciled ≤ 60 s: {}; RSS ≤ 128 MiB: {}; no writes at rest: {}",
        verdict(reconciled_at <= Duration::from_secs(60)),
        verdict(hwm_idle <= 128 * 1024),
        verdict(total(&idle_writes) == 0)
    );
    println!("\n  restart of the controller (every object already carries the first run's status):");
    println!("  | Measure (N = {n}) | Result |");
    println!("  |---|---|");
    println!("  | process start → /readyz 200 | {:.2} s |", restart.ready.as_secs_f64());
    println!(
        "  | process start → every Release and Promotion reconciled (kiln_reconciles_total ≥ N each) | {:.2} s |",
        restart.reconciled.as_secs_f64()
    );
    println!("  | peak RSS (VmHWM) then | {} |", mib(restart.hwm));
    println!("  | controller CPU until then | {:.2} s |", restart.cpu);
    println!("  | API writes until then and {IDLE:?} after | {} ({}) |", total(&restart.writes), fmt(&restart.writes));
    println!("\n  the stored objects deserialized as kiln's types in a fresh process (RSS growth, glibc malloc):");
    println!("  | {n} objects | as stored | as kiln's caches keep them (cache.rs) |");
    println!("  |---|---|---|");
    for (kind, full, stripped, json) in &sizes {
        println!("  | {kind} ({json} B of JSON each) | {} | {} |", mib(*full), mib(*stripped));
    }
    if total(&restart.writes) != 0 {
        failures.push(format!("{} API writes on a restart with nothing to do", total(&restart.writes)));
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

/// Starts `kiln-controller` against `server` (no leader election, AWS pointed at `aws_port`).
fn spawn_controller(
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
fn log_tail(ctl: &ControllerProcess) -> String {
    format!("controller log {} (last 30 lines):\n{}", ctl.log.display(), ctl.log_tail(30))
}

struct Restart {
    ready: Duration,
    reconciled: Duration,
    hwm: u64,
    cpu: f64,
    writes: BTreeMap<(String, String), u64>,
}

/// A second controller process on the same objects: how long until it has looked at every
/// Release and Promotion (its reconcile counters), and that it writes nothing.
async fn warm_restart(server: &kiln_test_apiserver::TestServer, aws_port: u16, n: usize) -> Result<Restart, String> {
    let before = requests(&server.handle);
    let mut ctl = spawn_controller(server, aws_port, "restart")?;
    let mut ready = None;
    let reconciled = loop {
        if !ctl.running() {
            return Err(format!("the restarted controller exited\n{}", log_tail(&ctl)));
        }
        if ready.is_none() && ctl.http_get("/readyz").is_some_and(|(c, _)| c == 200) {
            ready = Some(ctl.started.elapsed());
        }
        let metrics = ctl.http_get("/metrics").map(|(_, b)| b).unwrap_or_default();
        let count = |kind: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("kiln_reconciles_total{{kind=\"{kind}\"}}")))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if count("release") >= n as f64 && count("promotion") >= n as f64 {
            break ctl.started.elapsed();
        }
        if ctl.started.elapsed() > LIMIT {
            return Err(format!(
                "restart: not every object reconciled within {LIMIT:?} (Release {}, Promotion {})\n{}",
                count("release"),
                count("promotion"),
                log_tail(&ctl)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let hwm = ctl.status_kib("VmHWM");
    let cpu = ctl.cpu_seconds();
    tokio::time::sleep(IDLE).await;
    let writes = diff(&before, &requests(&server.handle))
        .into_iter()
        .filter(|((v, _), _)| WRITE_VERBS.contains(&v.as_str()))
        .collect();
    Ok(Restart { ready: ready.unwrap_or(Duration::ZERO), reconciled, hwm, cpu, writes })
}

/// How the bench sees progress.
enum Probe {
    /// (Releases reconciled, when the count last changed), from a watch.
    Watch(tokio::sync::watch::Receiver<(usize, Instant)>),
    /// Copy the store every 250 ms.
    List,
}

/// Whether a Release (JSON) has `status.observedGeneration == metadata.generation`.
fn reconciled(r: &Value) -> bool {
    let g = r.pointer("/metadata/generation");
    g.is_some() && r.pointer("/status/observedGeneration") == g
}

/// Follows every Release and counts those reconciled; returns once the initial list is in.
async fn watch_reconciled(client: Client) -> Result<tokio::sync::watch::Receiver<(usize, Instant)>, String> {
    use kube::runtime::watcher::{self, Event};
    let (tx, rx) = tokio::sync::watch::channel((0usize, Instant::now()));
    let (init_tx, init_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut done = std::collections::HashSet::new();
        let mut init_tx = Some(init_tx);
        let stream = kube::runtime::watcher(Api::<Release>::all(client), watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let r = match ev {
                Ok(Event::InitApply(r) | Event::Apply(r)) => r,
                Ok(Event::InitDone) => {
                    if let Some(t) = init_tx.take() {
                        let _ = t.send(());
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("  (probe watch error: {e}; retrying)");
                    continue;
                }
            };
            let ok =
                r.status.as_ref().and_then(|s| s.observed_generation).is_some_and(|g| Some(g) == r.metadata.generation);
            if ok && done.insert((r.namespace().unwrap_or_default(), r.name_any())) {
                let _ = tx.send((done.len(), Instant::now()));
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), init_rx)
        .await
        .map_err(|_| "the progress watch did not list the Releases within 60 s".to_string())?
        .map_err(|_| "the progress watch ended".to_string())?;
    Ok(rx)
}

/// `perf record` of the controller (flat profile, 499 Hz) into `out`, when `KILN_BENCH_PERF` is set.
fn start_perf(pid: u32, out: &str) -> Child {
    Command::new("perf")
        .args(["record", "-F", "499", "-o", out, "-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf record (KILN_BENCH_PERF set)")
}

fn stop_perf(mut p: Child) {
    let _ = Command::new("kill").args(["-INT", &p.id().to_string()]).status();
    let _ = p.wait();
}

/// For Releases and Promotions as the server holds them: the RSS a fresh process grows by when
/// it deserializes all of them into kiln's types, as they are and slimmed as the controller's
/// caches keep them (`kiln_controller::cache`), and the average JSON size. Each figure is
/// measured in its own process (a clean heap).
fn typed_sizes(handle: &kiln_test_apiserver::Handle) -> Vec<(&'static str, u64, u64, usize)> {
    let mut out = Vec::new();
    for (kind, resource) in [("Release", "releases"), ("Promotion", "promotions")] {
        let items = handle.list(resource);
        let mut text = String::new();
        for v in &items {
            text.push_str(&v.to_string());
            text.push('\n');
        }
        let per = text.len() / items.len().max(1);
        let path = std::env::temp_dir().join(format!("kiln-bench-{resource}-{}.jsonl", std::process::id()));
        if std::fs::write(&path, text).is_err() {
            continue;
        }
        let measure = |mode: &str| {
            let exe = std::env::current_exe().ok()?;
            let out = Command::new(exe).args(["typed-size", kind, mode, &path.to_string_lossy()]).output().ok();
            String::from_utf8_lossy(&out?.stdout).trim().parse::<u64>().ok()
        };
        out.push((kind, measure("stored").unwrap_or(0), measure("cached").unwrap_or(0), per));
        let _ = std::fs::remove_file(&path);
    }
    out
}

/// In a fresh process: prints how many KiB RSS grows by while the objects of `path` (JSON, one
/// a line) are held as kiln's typed objects — as stored, or (`cached`) each slimmed as it is
/// read, like the controller's watch streams do. The text is one large (mmap-backed)
/// allocation read before the first measurement, so nothing freed is there to be reused.
fn typed_size_child(kind: &str, cached: bool, path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let grown = if kind == "Release" {
        rss_growth_holding::<Release>(&text, cached.then_some(kiln_controller::cache::slim::<Release>))
    } else {
        rss_growth_holding::<Promotion>(&text, cached.then_some(kiln_controller::cache::slim_promotion))
    };
    println!("{grown}");
}

/// KiB of RSS growth while the objects of `text` (one a line) are held as `K`, each passed
/// through `slim` first when given.
fn rss_growth_holding<K: serde::de::DeserializeOwned>(text: &str, slim: Option<fn(&mut K)>) -> u64 {
    let before = proc_status_kib("/proc/self/status", "VmRSS");
    let typed: Vec<K> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .map(|mut k| {
            if let Some(slim) = slim {
                slim(&mut k);
            }
            k
        })
        .collect();
    let after = proc_status_kib("/proc/self/status", "VmRSS");
    std::hint::black_box(&typed);
    after.saturating_sub(before)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
const VERBS: [&str; 10] =
    ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "apply", "post"];
const RESOURCES: [&str; 9] = [
    "releases",
    "promotions",
    "environments",
    "freezewindows",
    "rollbackpolicies",
    "events",
    "leases",
    "namespaces",
    "customresourcedefinitions",
];

fn requests(h: &kiln_test_apiserver::Handle) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for v in VERBS {
        for r in RESOURCES {
            let c = h.requests(Some(v), Some(r));
            if c > 0 {
                m.insert((v.to_string(), r.to_string()), c);
            }
        }
    }
    m
}

fn diff(a: &BTreeMap<(String, String), u64>, b: &BTreeMap<(String, String), u64>) -> BTreeMap<(String, String), u64> {
    b.iter()
        .filter_map(|(k, v)| {
            let d = v - a.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Release `svc-<s>-v<k>` (service `svc-<s>`, 10 versions a service, namespace by service) with
/// its dev Promotion as kiln creates it (label, owner reference) and a finished status.
async fn create_release_with_finished_dev(client: &Client, dev: &Environment, i: usize) -> Result<(), String> {
    let service = i / VERSIONS;
    let version = i % VERSIONS;
    let ns = format!("team-{}", service % NAMESPACES);
    let name = format!("svc-{service}-v{version}");
    let svc = format!("svc-{service}");
    let release: Release = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": name, "namespace": ns},
        "spec": {
            "service": svc, "version": format!("v1.{version}.0"), "changeRef": format!("CHG-{i}"),
            "commit": format!("{:040x}", i * 7919 + 1),
            "author": "dev@example.com",
            "artifacts": [{"name": "fn", "image": harness::image(&svc, u32::try_from(i + 1).unwrap_or(1))}],
            "target": {"lambda": {"functionName": svc, "alias": "live", "strategy": "allAtOnce"}},
            "environments": ["dev", "stg", "prod"]
        }
    }))
    .map_err(|e| e.to_string())?;
    let releases: Api<Release> = Api::namespaced(client.clone(), &ns);
    let release =
        releases.create(&PostParams::default(), &release).await.map_err(|e| format!("Release {name}: {e}"))?;

    let promo_name = format!("{name}-dev");
    let owner = release.controller_owner_ref(&()).map(|o| {
        let mut o = serde_json::to_value(o).unwrap_or_default();
        o["controller"] = json!(false);
        o
    });
    let promotion: Promotion = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": promo_name, "namespace": ns,
                     "labels": {"kiln.dev/release": name}, "ownerReferences": [owner]},
        "spec": {"release": name, "environment": "dev"}
    }))
    .map_err(|e| e.to_string())?;
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), &ns);
    let promotion = promotions
        .create(&PostParams::default(), &promotion)
        .await
        .map_err(|e| format!("Promotion {promo_name}: {e}"))?;

    // Started a while ago (staggered), finished after the dev bake.
    let t0 = Timestamp::now() - SignedDuration::from_secs(3600 + i64::try_from(i).unwrap_or(0));
    let mut status = finished_status(&release, &promotion, &dev.spec, t0)?;
    match std::env::var("KILN_BENCH_STATUS").as_deref() {
        // Experiment: what the caches would hold without the evidence record (it repeats the
        // gates and the timeline; the controller never reads it back).
        Ok("no-evidence") => status.evidence = None,
        // Experiment: only what decisions about a finished Promotion read (phase, generations,
        // times, message), as a cache that trimmed finished Promotions would hold.
        Ok("minimal") => {
            status = PromotionStatus {
                observed_generation: status.observed_generation,
                phase: status.phase,
                observed_retry: status.observed_retry,
                started_at: status.started_at,
                completed_at: status.completed_at,
                full_traffic_at: status.full_traffic_at,
                message: status.message,
                ..PromotionStatus::default()
            }
        }
        _ => {}
    }
    let body = json!({"apiVersion": Promotion::api_version(&()), "kind": "Promotion", "status": status});
    promotions
        .patch_status(&promo_name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(|e| format!("status of {promo_name}: {e}"))?;
    Ok(())
}

/// The status kiln writes when a Lambda `allAtOnce` Promotion without a RollbackPolicy goes
/// through: kiln-core's state machine driven from `t0`, with the outcomes the Lambda target
/// reports (snapshot of the alias on version 1, version 2 published, traffic shifted, finalized).
fn finished_status(
    release: &Release,
    promotion: &Promotion,
    env: &kiln_api::EnvironmentSpec,
    t0: Timestamp,
) -> Result<PromotionStatus, String> {
    let name = promotion.name_any();
    let ns = promotion.namespace().unwrap_or_default();
    let mut w = kiln_core::sim::World::of(&ns, &name, promotion.spec.clone(), release.spec.clone(), env.clone(), t0);
    w.generation = promotion.metadata.generation;
    for _ in 0..32 {
        let decision = w.decide();
        let Some(action) = decision.action else {
            if decision.status.phase == PromotionPhase::Succeeded {
                return Ok(decision.status);
            }
            // Baking: the next look is when the bake ends.
            let wait = decision.requeue_after.unwrap_or(SignedDuration::from_secs(1));
            w.status = decision.status;
            w.now += wait.max(SignedDuration::from_secs(1));
            continue;
        };
        let outcome = match &action {
            Action::CaptureSnapshot => Outcome::Snapshot(Box::new(Snapshot {
                captured_at: None,
                account_id: Some(env.aws.account_id.clone()),
                region: Some(env.aws.region.clone()),
                role_arn: Some(env.aws.role_arn.clone()),
                ecs: None,
                lambda: Some(LambdaSnapshot {
                    function_name: Some(release.spec.service.clone()),
                    alias: Some("live".into()),
                    version: "1".into(),
                    routing: BTreeMap::new(),
                }),
            })),
            Action::Prepare => {
                Outcome::Prepared(DeployedResources { lambda_version: Some("2".into()), ..Default::default() })
            }
            Action::RunHook(_) | Action::ShiftTraffic { .. } | Action::Finalize | Action::ArchiveEvidence => {
                Outcome::Done
            }
            Action::Restore => return Err(format!("{name}: the simulated promotion rolled back")),
        };
        w.status = decision.status;
        w.now += SignedDuration::from_secs(2);
        w.complete(&action, outcome);
        w.now += SignedDuration::from_secs(1);
    }
    Err(format!("{name}: the simulated promotion did not finish"))
}

// ---------------------------------------------------------------------------------------------
// Part 2: controller overhead on lead time dev → stg → prod (moto).

async fn lead_time() -> Result<(), String> {
    println!("\n== lead time dev → stg → prod: zero bake, approvals given up front (moto) ==");
    let service = "lead";
    let mut w = harness::lambda_world("bench-lead", service, ["0s", "0s", "0s"]).await;
    // The harness's settings (alarm poll 500 ms, log filter from KILN_E2E_LOG, default
    // `info,kiln_controller=debug`).
    w.start_controller(harness::ControllerOptions::default());
    // Ready (caches synced) before the clock starts: lead time is about promotions, not startup.
    let ready_deadline = Instant::now() + Duration::from_secs(60);
    while w.controllers[0].http_get("/readyz").is_none_or(|(c, _)| c != 200) {
        if Instant::now() > ready_deadline {
            return Err(format!("controller not ready within 60 s\n{}", w.logs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let at = harness::World::at(0);
    let approvals = |list: &[(&str, &str)]| -> Value {
        list.iter().map(|(u, r)| json!({"user": u, "role": r, "at": at})).collect::<Vec<_>>().into()
    };
    println!("  | Release | → dev Succeeded | → stg Succeeded | → prod Succeeded (lead time) |");
    println!("  |---|---|---|---|");
    let mut totals = Vec::new();
    for k in 2..2 + LEAD_ROUNDS {
        let t0 = Instant::now();
        let release = w.lambda_release(service, k, &["dev", "stg", "prod"], json!({})).await;
        for (env, who) in [
            ("stg", approvals(&[("rel@example.com", "release-engineering")])),
            ("prod", approvals(&[("sec@example.com", "security"), ("pm@example.com", "product")])),
        ] {
            w.create::<Promotion>(json!({
                "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
                "metadata": {"name": format!("{release}-{env}")},
                "spec": {"release": release, "environment": env, "requestedBy": "alice@example.com", "approvals": who}
            }))
            .await;
        }
        let mut reached: BTreeMap<&str, Duration> = BTreeMap::new();
        while reached.len() < 3 {
            for env in ["dev", "stg", "prod"] {
                if reached.contains_key(env) {
                    continue;
                }
                if let Some(p) = w.promotion(&format!("{release}-{env}")).await {
                    let phase = p.status.as_ref().map(|s| s.phase);
                    if phase == Some(PromotionPhase::Succeeded) {
                        reached.insert(env, t0.elapsed());
                    } else if phase.is_some_and(PromotionPhase::is_terminal) {
                        return Err(format!("{release} in {env}: {phase:?}\n{}", w.logs()));
                    }
                }
            }
            if t0.elapsed() > LIMIT {
                return Err(format!("{release}: not in every environment within {LIMIT:?}: {reached:?}\n{}", w.logs()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // It really is there: prod's alias serves the new image.
        let served = w.alias_image("prod", service).await;
        if served != harness::image(service, k) {
            return Err(format!("{release}: prod's alias serves {served}, not the release's image"));
        }
        println!(
            "  | {release} | {:.2} s | {:.2} s | {:.2} s |",
            reached["dev"].as_secs_f64(),
            reached["stg"].as_secs_f64(),
            reached["prod"].as_secs_f64()
        );
        totals.push(reached["prod"]);
    }
    totals.sort();
    let worst = totals.last().copied().unwrap_or_default();
    println!(
        "\n  lead time over {LEAD_ROUNDS} releases: median {:.2} s, max {:.2} s (moto's time included)",
        totals[totals.len() / 2].as_secs_f64(),
        worst.as_secs_f64()
    );
    println!("  goal: overhead ≤ 5 s: {}", verdict(worst <= Duration::from_secs(5)));
    Ok(())
}
