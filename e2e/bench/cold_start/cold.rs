//! Part 1: cold start with N Releases and N finished Promotions, then a restart.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kiln_api::Release;
use kiln_testkit::process::{cpu_seconds, free_port};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::requests::{WRITE_VERBS, diff, requests};
use crate::sizes::typed_sizes;
use crate::{IDLE, LIMIT, client_for, log_tail, mib, setup, spawn_controller, verdict};

pub(crate) async fn cold_start(n: usize) -> Result<(), String> {
    println!("== cold start: {n} Releases, {n} finished dev Promotions ==");
    let server = kiln_test_apiserver::start(kiln_test_apiserver::Config::default())
        .await
        .map_err(|e| format!("start the API test server: {e}"))?;
    let client = client_for(&server).await;
    let handle = server.handle.clone();

    setup::populate(&client, &handle, n).await?;

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

pub(crate) struct Restart {
    ready: Duration,
    reconciled: Duration,
    hwm: u64,
    cpu: f64,
    writes: BTreeMap<(String, String), u64>,
}

/// A second controller process on the same objects: how long until it has looked at every
/// Release and Promotion (its reconcile counters), and that it writes nothing.
pub(crate) async fn warm_restart(
    server: &kiln_test_apiserver::TestServer,
    aws_port: u16,
    n: usize,
) -> Result<Restart, String> {
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
pub(crate) enum Probe {
    /// (Releases reconciled, when the count last changed), from a watch.
    Watch(tokio::sync::watch::Receiver<(usize, Instant)>),
    /// Copy the store every 250 ms.
    List,
}

/// Whether a Release (JSON) has `status.observedGeneration == metadata.generation`.
pub(crate) fn reconciled(r: &Value) -> bool {
    let g = r.pointer("/metadata/generation");
    g.is_some() && r.pointer("/status/observedGeneration") == g
}

/// Follows every Release and counts those reconciled; returns once the initial list is in.
pub(crate) async fn watch_reconciled(client: Client) -> Result<tokio::sync::watch::Receiver<(usize, Instant)>, String> {
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
pub(crate) fn start_perf(pid: u32, out: &str) -> Child {
    Command::new("perf")
        .args(["record", "-F", "499", "-o", out, "-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf record (KILN_BENCH_PERF set)")
}

pub(crate) fn stop_perf(mut p: Child) {
    let _ = Command::new("kill").args(["-INT", &p.id().to_string()]).status();
    let _ = p.wait();
}
