//! kubectl-kiln against the running controller: a person approves with the CLI, and `abort`
//! makes kiln restore the previous state.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kiln_api::PromotionPhase;
use kiln_testkit::AliasState;
use serde_json::json;

use crate::harness::{ControllerOptions, lambda_world};

const MIN: Duration = Duration::from_secs(90);

/// The CLI binary, built by the workspace next to the controller.
fn kubectl_kiln() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_kiln-controller")).with_file_name("kubectl-kiln");
    assert!(
        path.exists(),
        "{} not built: run the workspace tests (cargo test --workspace) or cargo build -p kubectl-kiln",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_with_the_cli_restores_the_alias() {
    let mut w = lambda_world("s11-cli", "pricing", ["3s", "3s", "3s"]).await;
    w.start_controller(ControllerOptions::default());
    let r = w
        .lambda_release("pricing", 2, &["dev", "stg", "prod"], json!({
            "target": {"lambda": {"functionName": "pricing", "alias": "live", "strategy": "canary", "steps": [20, 100], "stepBake": "60s"}}
        }))
        .await;
    let p = format!("{r}-dev");
    w.wait_promotion(&p, MIN, "canary at 20%", |p| p.status.as_ref().is_some_and(|s| s.step.is_some())).await;
    assert_eq!(w.alias("dev", "pricing").await, AliasState::weighted("1", "2", 0.2));

    let kubeconfig = w.cp.kubeconfig();
    let out = Command::new(kubectl_kiln())
        .args(["--kubeconfig"])
        .arg(&kubeconfig)
        .args(["-n", &w.ns, "abort", &r, "--env", "dev", "--wait", "--timeout", "60s"])
        .output()
        .expect("run kubectl-kiln");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl kiln abort failed:\n{stdout}\n{stderr}\n{}", w.logs());
    let rolled = w.wait_phase(&p, PromotionPhase::RolledBack, MIN).await;
    assert_eq!(rolled.status.and_then(|s| s.rollback).map(|r| r.cause), Some(kiln_api::RollbackCause::Abort));
    assert_eq!(w.alias("dev", "pricing").await, AliasState::on("1"), "alias restored");
    assert!(stdout.contains("abort") || stdout.contains("RolledBack") || stdout.contains("rolled back"), "{stdout}");

    // The status tree shows it.
    let out = Command::new(kubectl_kiln())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", &w.ns, "status", &r, "-o", "json"])
        .output()
        .expect("run kubectl-kiln");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status -o json is JSON");
    let text = doc.to_string();
    assert!(text.contains("RolledBack") && text.contains("abort"), "{text}");
}
