//! The README's first command in its scripted mode: the sandbox walks the examples through a
//! release (freeze, approvals, prod) and an automatic rollback, and reaches every end state — on
//! the in-repo API test server (the default) and with `--real` on kube-apiserver with the chart.

use std::time::Duration;

use kiln_api::PromotionPhase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_reaches_its_end_states() {
    sandbox(false).await;
}

/// `./scripts/sandbox --real`: the same release on a real kube-apiserver + etcd, the chart
/// installed (its RBAC, and its admission policy checking each approval's author), the controller
/// running as the chart's ServiceAccount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_reaches_its_end_states_on_kube_apiserver() {
    sandbox(true).await;
}

async fn sandbox(real: bool) {
    let repo = kiln_testkit::repo_root().expect("repository root");
    let work_dir = std::env::temp_dir().join(format!("kiln-sandbox-test-{}-{real}", std::process::id()));
    let options = kiln_sandbox::Options {
        controller: env!("CARGO_BIN_EXE_kiln-controller").into(),
        repo,
        work_dir: work_dir.clone(),
        interactive: false,
        real,
        timeout: Duration::from_secs(300),
    };
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let say = |l: &str| {
        println!("{l}");
        if let Ok(mut v) = lines.lock() {
            v.push(l.to_string());
        }
    };
    let outcome = kiln_sandbox::run(&options, &say).await.unwrap_or_else(|e| panic!("sandbox: {e}"));
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(outcome.ingest_prod, Some(PromotionPhase::Succeeded));
    assert_eq!(outcome.api_stg_cause.as_deref(), Some("alarm"));
    let ms = outcome.breach_to_restore_ms.expect("measured breach-to-restore time");
    assert!((0..30_000).contains(&ms), "{ms} ms");
    let lines = lines.into_inner().unwrap();
    let narrated = |needle: &str| lines.iter().any(|l| l.contains(needle));
    let backend = if real { "a real kube-apiserver" } else { "the in-repo Kubernetes API test server" };
    for needle in [
        backend,
        "10% of traffic on v1.4.2",
        "Frozen",
        "WaitingForApproval",
        "RolledBack",
        "breach to traffic restored",
    ] {
        assert!(narrated(needle), "the narration mentions {needle:?}:\n{}", lines.join("\n"));
    }
    let _ = std::fs::remove_dir_all(work_dir);
}
