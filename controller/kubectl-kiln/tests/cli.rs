//! `kubectl-kiln` as people run it: the built binary as a separate process, one kubeconfig per
//! user, against a real kube-apiserver (`kiln_testkit::ControlPlane`) with kiln's CRDs. No controller runs here: where a test needs a Promotion's status it writes it as
//! the controller would. (Abort actually restoring traffic needs the controller and moto: that is
//! the e2e suite's.)

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Run, TempDir, World, offline, repo};

const R: &str = "ingest-worker-v1-4-2";

/// The three example Environments, the ingest RollbackPolicy and the example Release (author
/// dana@example.com).
async fn examples(w: &World) {
    w.example("environments.yaml").await;
    w.example("rollback-policy.yaml").await;
    w.example("release-ingest-worker.yaml").await;
}

async fn approvals(w: &World, name: &str) -> Vec<Value> {
    let p = w.get("Promotion", Some("ingest"), name).await.expect("promotion exists");
    p["spec"]["approvals"].as_array().cloned().unwrap_or_default()
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

fn refused(run: &Run, fragment: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(fragment), "expected {fragment:?} in stderr: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_as_two_users_and_refuse_self_approval() {
    let w = World::new("approve").await;
    examples(&w).await;
    let prod = format!("{R}-prod");
    w.promotion(&prod, R, "prod", json!({"requestedBy": "ci-bot"})).await;

    // The author: refused with the reason, nothing written.
    let writes = w.api_writes(&["promotions"]).await;
    assert!(writes > 0, "the metric counted the Promotion's creation");
    let run = w.kiln("dana", &["approve", R, "--env", "prod", "--role", "security", "-n", "ingest"]);
    refused(
        &run,
        "error: you (dana@example.com) authored release ingest-worker-v1-4-2; environment prod forbids self-approval — ask someone else",
    );
    assert!(approvals(&w, &prod).await.is_empty());
    assert_eq!(w.api_writes(&["promotions"]).await, writes, "refused before any write");

    // Two roles are missing: the role must be chosen.
    let run = w.kiln("alice", &["approve", R, "--env", "prod", "-n", "ingest"]);
    refused(
        &run,
        "environment prod still needs security and product approvals; choose one with --role security or --role product",
    );
    // A role prod does not ask for.
    let run = w.kiln("alice", &["approve", R, "--env", "prod", "--role", "sre", "-n", "ingest"]);
    refused(&run, "does not ask for a sre approval");

    let run = w.kiln(
        "alice",
        &["approve", R, "--env", "prod", "--role", "security", "--comment", "CAB 2025-10-28", "-n", "ingest"],
    );
    ok(&run);
    assert!(
        run.stdout.contains("promotion.kiln.dev/ingest-worker-v1-4-2-prod approved by alice@example.com as security"),
        "{run:?}"
    );
    // bob needs no --role: product is the one role left.
    let run = w.kiln("bob", &["approve", R, "--env", "prod", "-n", "ingest"]);
    ok(&run);
    assert!(run.stdout.contains("approved by bob@example.com as product"), "{run:?}");

    let list = approvals(&w, &prod).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!((list[0]["user"].as_str(), list[0]["role"].as_str()), (Some("alice@example.com"), Some("security")));
    assert_eq!(list[0]["comment"], "CAB 2025-10-28");
    assert_eq!((list[1]["user"].as_str(), list[1]["role"].as_str()), (Some("bob@example.com"), Some("product")));
    for a in &list {
        assert!(a["at"].as_str().is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()), "{a}");
    }

    // A second approval by the same person is refused, and so is approving a finished Promotion.
    refused(
        &w.kiln("alice", &["approve", R, "--env", "prod", "--role", "security", "-n", "ingest"]),
        "you already approved",
    );
    let run = w.kiln("alice", &["approve", R, "--env", "prod", "-n", "ingest"]);
    refused(&run, "needs no more approvals (approved (security: alice@example.com; product: bob@example.com))");

    // The requester may not approve either (stg: requested by rel@, who is release engineering).
    let stg = format!("{R}-stg");
    w.promotion(&stg, R, "stg", json!({"requestedBy": "rel@example.com"})).await;
    refused(
        &w.kiln("rel", &["approve", R, "--env", "stg", "-n", "ingest"]),
        "you (rel@example.com) requested promotion ingest-worker-v1-4-2-stg",
    );
    assert_eq!(approvals(&w, &prod).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_do_not_clobber_each_other() {
    let w = World::new("race").await;
    examples(&w).await;
    let stg = format!("{R}-stg");
    w.promotion(&stg, R, "stg", json!({})).await;
    // Two people approve at the same moment: both read [], one patch fails its `test` and is
    // re-read and re-sent. Both approvals end up in the list.
    let spawn = |user: &str| {
        support::bin()
            .arg("--kubeconfig")
            .arg(w.kubeconfig(user))
            .args(["approve", R, "--env", "stg", "--role", "release-engineering", "-n", "ingest"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn("rel"), spawn("alice"));
    let (a, b): (Run, Run) = (a.wait_with_output().expect("wait").into(), b.wait_with_output().expect("wait").into());
    ok(&a);
    ok(&b);
    let mut users: Vec<String> =
        approvals(&w, &stg).await.iter().filter_map(|a| a["user"].as_str().map(str::to_string)).collect();
    users.sort();
    assert_eq!(users, ["alice@example.com", "rel@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_abort_retry_and_rollback_write_the_expected_spec() {
    let w = World::new("actions").await;
    examples(&w).await;

    // promote: the Promotion kiln itself would name, requested by the caller.
    let run = w.kiln("alice", &["promote", R, "--env", "stg", "-n", "ingest"]);
    ok(&run);
    assert!(run.stdout.contains("promotion.kiln.dev/ingest-worker-v1-4-2-stg created"), "{run:?}");
    assert!(run.stdout.contains("stg needs release-engineering approval: kubectl kiln approve"), "{run:?}");
    let stg = w.get("Promotion", Some("ingest"), &format!("{R}-stg")).await.expect("created");
    assert_eq!(
        stg["spec"],
        json!({"release": R, "environment": "stg", "requestedBy": "alice@example.com", "approvals": [], "abort": false, "retry": 0})
    );
    refused(
        &w.kiln("alice", &["promote", R, "--env", "stg", "-n", "ingest"]),
        "already has promotion ingest-worker-v1-4-2-stg into stg",
    );
    refused(&w.kiln("alice", &["promote", R, "--env", "qa", "-n", "ingest"]), "does not go through environment qa");

    // abort while baking at 10%.
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-stg"),
        json!({"phase": "Baking", "step": {"index": 0, "weight": 10, "total": 2}}),
    )
    .await;
    let run = w.kiln("bob", &["abort", R, "--env", "stg", "-n", "ingest"]);
    ok(&run);
    assert!(
        run.stdout.contains("abort requested (it was Baking at 10%: kiln restores the previous state now)"),
        "{run:?}"
    );
    let stg = w.get("Promotion", Some("ingest"), &format!("{R}-stg")).await.expect("exists");
    assert_eq!(stg["spec"]["abort"], true);
    let again = w.kiln("bob", &["abort", R, "--env", "stg", "-n", "ingest"]);
    ok(&again);
    assert!(again.stdout.contains("was already aborted"), "{again:?}");
    refused(&w.kiln("bob", &["retry", R, "--env", "stg", "-n", "ingest"]), "was aborted and cannot be retried");

    // retry a rolled-back Promotion: spec.retry counts up once; a second retry waits for kiln.
    w.promotion(&format!("{R}-prod"), R, "prod", json!({})).await;
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-prod"),
        json!({"phase": "RolledBack", "rollback": {"cause": "alarm", "message": "ingest-5xx in ALARM", "detectedAt": "2026-11-18T15:00:00Z"}}),
    )
    .await;
    let run = w.kiln("alice", &["retry", R, "--env", "prod", "-n", "ingest"]);
    ok(&run);
    assert!(run.stdout.contains("retry #1 requested (it was RolledBack, cause alarm)"), "{run:?}");
    assert_eq!(w.get("Promotion", Some("ingest"), &format!("{R}-prod")).await.expect("exists")["spec"]["retry"], 1);
    refused(&w.kiln("alice", &["retry", R, "--env", "prod", "-n", "ingest"]), "already has retry #1 pending");

    // abort after success: no effect, and says how to roll back instead.
    w.set_status("Promotion", "ingest", &format!("{R}-prod"), json!({"phase": "Succeeded", "observedRetry": 1})).await;
    refused(
        &w.kiln("alice", &["abort", R, "--env", "prod", "-n", "ingest"]),
        "already succeeded; abort has no effect. To return prod to an earlier release: kubectl kiln rollback ingest-worker --env prod",
    );

    // rollback: v1.4.1 succeeded in prod before v1.4.2.
    w.release("ingest-worker-v1-4-1", "v1.4.1").await;
    w.promotion("ingest-worker-v1-4-1-prod", "ingest-worker-v1-4-1", "prod", json!({})).await;
    w.set_status(
        "Promotion",
        "ingest",
        "ingest-worker-v1-4-1-prod",
        json!({"phase": "Succeeded", "startedAt": "2026-11-01T10:00:00Z", "completedAt": "2026-11-01T10:20:00Z"}),
    )
    .await;
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-prod"),
        json!({"startedAt": "2026-11-18T10:00:00Z", "completedAt": "2026-11-18T10:20:00Z"}),
    )
    .await;
    let run = w.kiln(
        "bob",
        &[
            "rollback",
            "ingest-worker",
            "--env",
            "prod",
            "--reason",
            "v1.4.2 leaks connections (INC-4711)",
            "-n",
            "ingest",
        ],
    );
    ok(&run);
    assert!(
        run.stdout.contains("promotion.kiln.dev/ingest-worker-v1-4-1-prod-rollback created: rollback of prod from ingest-worker-v1-4-2 to ingest-worker-v1-4-1"),
        "{run:?}"
    );
    let rb = w.get("Promotion", Some("ingest"), "ingest-worker-v1-4-1-prod-rollback").await.expect("created");
    assert_eq!(
        rb["spec"],
        json!({"release": "ingest-worker-v1-4-1", "environment": "prod", "requestedBy": "bob@example.com",
               "approvals": [], "abort": false, "retry": 0,
               "rollback": {"reason": "v1.4.2 leaks connections (INC-4711)", "fromRelease": R}})
    );
    // A second rollback request gets its own name.
    ok(&w.kiln(
        "bob",
        &[
            "rollback",
            "ingest-worker",
            "--env",
            "prod",
            "--to",
            "ingest-worker-v1-4-1",
            "--reason",
            "again",
            "-n",
            "ingest",
        ],
    ));
    assert!(w.get("Promotion", Some("ingest"), "ingest-worker-v1-4-1-prod-rollback-2").await.is_some());
    // Only a release that succeeded there may be the target.
    w.release("ingest-worker-v1-4-0", "v1.4.0").await;
    refused(
        &w.kiln(
            "bob",
            &[
                "rollback",
                "ingest-worker",
                "--env",
                "prod",
                "--to",
                "ingest-worker-v1-4-0",
                "--reason",
                "x",
                "-n",
                "ingest",
            ],
        ),
        "a rollback must return prod to a Release that succeeded there before, and ingest-worker-v1-4-0 never did",
    );
    refused(
        &w.kiln("bob", &["rollback", "ingest-worker", "--env", "dev", "--reason", "x", "-n", "ingest"]),
        "nothing to roll back",
    );
}

/// Compares a document with its snapshot in `tests/snapshots/`. Nothing in the document depends
/// on the run (every time in it was written by the test), so the comparison is byte for byte.
fn snapshot(name: &str, text: &str) {
    let path = repo().join("controller/kubectl-kiln/tests/snapshots").join(name);
    if std::env::var_os("KILN_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, text).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (KILN_UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert_eq!(
        text, expected,
        "the JSON document changed; if on purpose, rerun with KILN_UPDATE_SNAPSHOTS=1 and update docs/cli.md"
    );
}

/// A Release in three environments as the controller would have recorded it: dev done, stg
/// baking at 100% with two signals, prod waiting for Product (with a refused self-approval).
async fn release_in_flight(w: &World) {
    examples(w).await;
    w.promotion(&format!("{R}-dev"), R, "dev", json!({})).await;
    w.promotion(
        &format!("{R}-stg"),
        R,
        "stg",
        json!({"requestedBy": "rel@example.com",
        "approvals": [{"user": "alice@example.com", "role": "release-engineering", "at": "2026-11-18T13:00:00Z"}]}),
    )
    .await;
    w.promotion(
        &format!("{R}-prod"),
        R,
        "prod",
        json!({"requestedBy": "ci-bot", "approvals": [
        {"user": "dana@example.com", "role": "security", "at": "2026-11-18T14:00:00Z"},
        {"user": "alice@example.com", "role": "security", "at": "2026-11-18T14:05:00Z", "comment": "CAB 2026-11-18"}]}),
    )
    .await;
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-dev"),
        json!({
        "phase": "Succeeded", "startedAt": "2026-11-18T12:00:00Z", "completedAt": "2026-11-18T12:10:00Z",
        "step": {"index": 1, "weight": 100, "total": 2}, "evidenceSha256": "ab".repeat(32),
        "gates": [{"name": "validation", "ok": true, "message": "release and environment are valid"}]}),
    )
    .await;
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-stg"),
        json!({
        "phase": "Baking", "startedAt": "2026-11-18T13:10:00Z", "message": "baking at 100% until 2026-11-18T13:50:00Z",
        "step": {"index": 1, "weight": 100, "total": 2, "appliedAt": "2026-11-18T13:20:00Z"},
        "bake": {"startedAt": "2026-11-18T13:20:00Z", "endsAt": "2026-11-18T13:50:00Z", "signals": [
            {"name": "ingest-5xx", "kind": "alarm", "state": "OK", "since": "2026-11-01T00:00:00Z"},
            {"name": "error-rate", "kind": "metric", "state": "OK"}]},
        "gates": [{"name": "validation", "ok": true, "message": "release and environment are valid"},
                  {"name": "approvals", "ok": true, "message": "approved (release-engineering: alice@example.com)"}]}),
    )
    .await;
    w.set_status("Promotion", "ingest", &format!("{R}-prod"), json!({
        "phase": "WaitingForApproval",
        "message": "approvals: needs 1 product approval (have security: alice@example.com)",
        "gates": [{"name": "validation", "ok": true, "message": "release and environment are valid"},
                  {"name": "upstream", "ok": true, "message": "stg succeeded"},
                  {"name": "approvals", "ok": false, "message": "needs 1 product approval (have security: alice@example.com)"}]})).await;
    w.set_status("Release", "ingest", R, json!({"phase": "Progressing", "currentEnvironment": "prod",
        "environments": [
            {"name": "dev", "phase": "Succeeded", "promotion": format!("{R}-dev")},
            {"name": "stg", "phase": "Baking", "promotion": format!("{R}-stg")},
            {"name": "prod", "phase": "WaitingForApproval", "promotion": format!("{R}-prod")}],
        "conditions": [{"type": "Ready", "status": "False", "reason": "Progressing", "lastTransitionTime": "2026-11-18T12:00:00Z",
                        "message": "Progressing in prod: approvals: needs 1 product approval"}]})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_is_stable_and_the_tree_shows_each_environment() {
    let w = World::new("status").await;
    release_in_flight(&w).await;

    let first = w.kiln("bob", &["status", R, "-n", "ingest", "-o", "json"]);
    ok(&first);
    let second = w.kiln("bob", &["get", R, "-n", "ingest", "-o", "json"]);
    assert_eq!(first.stdout, second.stdout, "same cluster state, same bytes");
    // The bytes, field order included, are the contract (docs/cli.md).
    snapshot("status.json", &first.stdout);
    let doc: Value = serde_json::from_str(&first.stdout).expect("JSON");
    let yaml = w.kiln("bob", &["status", R, "-n", "ingest", "-o", "yaml"]);
    ok(&yaml);
    let from_yaml: Value = serde_saphyr::from_str(&yaml.stdout).expect("YAML");
    assert_eq!(from_yaml, doc);

    let tree = w.kiln("bob", &["status", R, "-n", "ingest"]);
    ok(&tree);
    let t = &tree.stdout;
    for expected in [
        "Release ingest/ingest-worker-v1-4-2  ingest-worker v1.4.2 (standard)  Progressing",
        "├─ dev  Succeeded  (ingest-worker-v1-4-2-dev)",
        "├─ stg  Baking  (ingest-worker-v1-4-2-stg, requested by rel@example.com)",
        "│  traffic: step 2/2 at 100%",
        "│  bake: ended 2026-11-18 13:50:00 UTC",
        "│  signals: ✓ ingest-5xx OK · ✓ error-rate OK",
        "│  approvals: ✓ release-engineering 1/1 (alice@example.com)",
        "└─ prod  WaitingForApproval  (ingest-worker-v1-4-2-prod, requested by ci-bot)",
        "     ✗ approvals   needs 1 product approval (have security: alice@example.com)",
        "   approvals: ✓ security 1/1 (alice@example.com) · ✗ product 0/1",
        "dana@example.com as security at 2026-11-18 14:00:00 UTC — not counted: dana@example.com is the release author",
        "alice@example.com as security at 2026-11-18 14:05:00 UTC \"CAB 2026-11-18\"",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_redraws_on_change_and_stops_on_ctrl_c() {
    let w = World::new("watch").await;
    release_in_flight(&w).await;
    let mut child = support::bin()
        .arg("--kubeconfig")
        .arg(w.kubeconfig("bob"))
        .args(["status", R, "-n", "ingest", "--watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for doc in serde_json::Deserializer::from_reader(std::io::BufReader::new(stdout)).into_iter::<Value>() {
            let Ok(doc) = doc else { break };
            if tx.send(doc).is_err() {
                break;
            }
        }
    });
    let Ok(first) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        panic!("no first document; stderr: {}", String::from_utf8_lossy(&out.stderr));
    };
    assert_eq!(first["environments"][2]["phase"], "WaitingForApproval");
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-prod"),
        json!({"phase": "Deploying", "step": {"index": 0, "weight": 10, "total": 2}}),
    )
    .await;
    let next = rx.recv_timeout(Duration::from_secs(20)).expect("a redraw after the change");
    assert_eq!(next["environments"][2]["phase"], "Deploying");
    assert_eq!(next["environments"][2]["step"], json!({"number": 1, "total": 2, "weight": 10}));
    // Ctrl-C ends it cleanly.
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_status_and_list_in_both_zones() {
    let w = World::new("freeze").await;
    w.example("environments.yaml").await;
    w.example("freeze-windows.yaml").await;
    // Saturday 2026-11-21 12:00 in New York: the weekend freeze is on.
    let run = w.kiln("bob", &["freeze", "status", "-n", "ingest", "--at", "2026-11-21T17:00:00Z"]);
    ok(&run);
    let t = &run.stdout;
    for expected in [
        "dev: not frozen",
        "prod: FROZEN until Mon 2026-11-23 09:00 America/New_York (Mon 2026-11-23 14:00 UTC your time)",
        "✗ FreezeWindow kiln-system/weekend active until Mon 09:00 America/New_York",
        "exceptions: emergency, hotfix releases with security+sre approvals",
        "next freeze: Fri 2026-11-27 17:00 America/New_York (Fri 2026-11-27 22:00 UTC your time)",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
    let run = w.kiln("bob", &["freeze", "list", "--env", "prod", "-o", "json", "--at", "2026-11-21T17:00:00Z"]);
    ok(&run);
    let doc: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let weekend = doc["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .find(|x| x["name"] == "kiln-system/weekend")
        .cloned()
        .expect("weekend");
    assert_eq!(
        (weekend["active"].clone(), weekend["activeUntil"].clone()),
        (json!(true), json!("2026-11-23T14:00:00Z"))
    );
    assert_eq!(weekend["recurring"], json!(["Friday 17:00 → Monday 09:00"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_and_helpful_errors() {
    let w = World::new("errors").await;
    let run = w.kiln("alice", &["whoami"]);
    ok(&run);
    assert!(run.stdout.starts_with("alice@example.com\ngroups: security, system:authenticated"), "{run:?}");

    refused(&w.kiln("alice", &["status", "nope", "-n", "ingest"]), "error: release nope not found in namespace ingest");
    refused(&w.kiln("wrong-token", &["status", "nope"]), "does not accept your credentials");

    // Nothing listens on the port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = TempDir::new("unreachable");
    let kc = std::fs::read_to_string(w.kubeconfig("alice"))
        .expect("alice's kubeconfig")
        .replace(w.cp.server(), &format!("https://127.0.0.1:{port}"));
    let path = dir.write("kubeconfig", &kc);
    let run: Run = support::bin().arg("--kubeconfig").arg(&path).args(["status", R]).output().expect("run").into();
    refused(&run, &format!("error: cannot reach the Kubernetes API at https://127.0.0.1:{port}: "));

    // A cluster without kiln's CRDs.
    let bare = World::bare("bare").await;
    let run = bare.kiln("alice", &["status", R]);
    refused(&run, "the kiln CRDs are not installed in the cluster at");
    assert!(run.stderr.contains("kubectl apply -f crds/"), "{run:?}");
    refused(&bare.kiln("alice", &["approve", R, "--env", "prod"]), "the kiln CRDs are not installed");

    // No kubeconfig at all, and not in a cluster.
    let run: Run = support::bin().env("HOME", dir.path()).args(["status", R]).output().expect("run").into();
    refused(&run, "cannot load the kubeconfig");
}

fn expectations(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("# expect:"))
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

#[test]
fn lint_passes_the_examples_and_fails_each_invalid_one_with_file_and_line() {
    let examples = repo().join("examples");
    let run = offline(&["lint", examples.to_str().expect("utf-8"), "--at", "2026-11-21T17:00:00Z"]);
    ok(&run);
    assert!(run.stdout.contains("11 kiln objects in 7 files: 0 errors, 0 warnings"), "{run:?}");
    assert!(
        run.stdout.contains(
            "release-ingest-worker.yaml:54: plan: Release ingest/ingest-worker-v1-4-2 → prod: frozen now (weekend) until Mon 09:00 America/New_York; needs security+product approvals"
        ),
        "{run:?}"
    );

    let mut files: Vec<_> = std::fs::read_dir(examples.join("invalid"))
        .expect("examples/invalid")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "only {} invalid examples", files.len());
    for path in files {
        let shown = path.to_str().expect("utf-8");
        let run = offline(&["lint", shown]);
        assert_eq!(run.code, 1, "{shown} should fail: {run:?}");
        for fragment in expectations(&path) {
            let line = run
                .stdout
                .lines()
                .find(|l| l.contains(&fragment))
                .unwrap_or_else(|| panic!("{shown}: no message contains {fragment:?}: {run:?}"));
            let rest = line.strip_prefix(&format!("{shown}:")).unwrap_or_else(|| panic!("no file in {line:?}"));
            let (num, rest) = rest.split_once(':').unwrap_or_else(|| panic!("no line in {line:?}"));
            assert!(num.parse::<usize>().is_ok_and(|n| n > 0), "no line number in {line:?}");
            assert!(rest.starts_with(" error: "), "{line:?}");
        }
    }
    // The field's own line, not only the document's.
    let run = offline(&["lint", examples.join("invalid/freeze-bad-time.yaml").to_str().expect("utf-8")]);
    assert!(run.stdout.contains("freeze-bad-time.yaml:14: error: FreezeWindow/kiln-system/holidays-2026: spec.recurring[0].to.time: Invalid value"), "{run:?}");
}

#[test]
fn lint_finds_references_across_files() {
    let dir = TempDir::new("lint-refs");
    let envs = repo().join("examples/environments.yaml");
    // A policy for team-a only; team-b's Release goes to prod (which needs slo-default) and to qa.
    let policy = dir.write(
        "policy.yaml",
        "apiVersion: kiln.dev/v1alpha1\nkind: RollbackPolicy\nmetadata:\n  name: slo-default\n  namespace: team-a\nspec:\n  alarms:\n    - name: a-5xx\n",
    );
    let release_text = std::fs::read_to_string(repo().join("examples/release-api-adapter.yaml"))
        .expect("example")
        .replace("namespace: api", "namespace: team-b")
        .replace("environments: [dev, stg, prod]", "environments:\n    - dev\n    - qa\n    - prod");
    assert!(release_text.contains("    - qa\n"), "the example changed: {release_text}");
    let release = dir.write("release.yaml", &release_text);
    let promotions = dir.write(
        "promotions.yaml",
        "apiVersion: kiln.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: ghost-prod\n  namespace: team-b\nspec:\n  release: ghost\n  environment: prod\n---\napiVersion: kiln.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: x-uat\n  namespace: team-b\nspec:\n  release: api-adapter-v2-3-0\n  environment: uat\n",
    );
    let p = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let run = offline(&["lint", &p(&envs), &p(&policy), &p(&release), &p(&promotions), "--no-plan"]);
    assert_eq!(run.code, 1, "{run:?}");
    let line_of = |file: &std::path::Path, needle: &str| -> usize {
        std::fs::read_to_string(file).expect("read").lines().position(|l| l.contains(needle)).expect("needle") + 1
    };
    let qa = line_of(&release, "    - qa");
    let prod = line_of(&release, "    - prod");
    let rel = p(&release);
    let prom = p(&promotions);
    for expected in [
        format!(
            "{rel}:{qa}: error: Release/team-b/api-adapter-v2-3-0: spec.environments[1]: environment \"qa\" does not exist"
        ),
        format!("{rel}:{prod}: error: Release/team-b/api-adapter-v2-3-0: environments: prod requires upstream stg"),
        format!(
            "{rel}:{prod}: error: Release/team-b/api-adapter-v2-3-0: environment prod requires RollbackPolicy slo-default (rollbackPolicyRef), and none of the given files defines it in namespace team-b"
        ),
        format!("{prom}:7: error: Promotion/team-b/ghost-prod: Release ghost is not defined in namespace team-b"),
        format!("{prom}:17: error: Promotion/team-b/x-uat: environment \"uat\" does not exist among the given files"),
        format!(
            "{prom}:17: error: Promotion/team-b/x-uat: Release api-adapter-v2-3-0 does not go through environment uat"
        ),
    ] {
        assert!(run.stdout.contains(&expected), "missing {expected:?} in:\n{}", run.stdout);
    }

    // Defined twice, and a freeze window kiln cannot evaluate.
    let twice = dir.write(
        "twice.yaml",
        "apiVersion: kiln.dev/v1alpha1\nkind: FreezeWindow\nmetadata: {name: w, namespace: kiln-system}\nspec:\n  timeZone: America/New_Yrok\n  recurring: [{from: {day: Friday, time: \"17:00\"}, to: {day: Monday, time: \"09:00\"}}]\n---\napiVersion: kiln.dev/v1alpha1\nkind: FreezeWindow\nmetadata: {name: w, namespace: kiln-system}\nspec:\n  absolute: [{start: \"2026-12-21T00:00:00Z\", end: \"2026-12-22T00:00:00Z\"}]\n",
    );
    let run = offline(&["lint", &p(&twice)]);
    assert_eq!(run.code, 1, "{run:?}");
    let t = p(&twice);
    assert!(
        run.stdout.contains(&format!(
            "{t}:5: error: FreezeWindow/kiln-system/w: time zone \"America/New_Yrok\" is not a known IANA time zone"
        )),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!("{t}:10: error: FreezeWindow/kiln-system/w: defined twice (first at {t}:3)")),
        "{run:?}"
    );

    // Without the platform's Environments, references to them are not checked, and lint says so.
    let run = offline(&["lint", &p(&release)]);
    ok(&run);
    assert!(run.stdout.contains("note: no Environment among the given files"), "{run:?}");
}

#[test]
fn completions_for_three_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let run = offline(&["completion", shell]);
        ok(&run);
        assert!(run.stdout.contains("kubectl-kiln") && run.stdout.contains("approve"), "{shell}: {run:?}");
    }
    let run = offline(&["completion", "tcsh"]);
    assert_eq!(run.code, 2, "{run:?}");
}

/// Issue "Tenancy and release integrity" §4: `evidence verify` fetches the archived record with
/// the user's own AWS credentials (moto here), recomputes its SHA-256 and compares it with the
/// Promotion's status; a record of the first schema version verifies too; a record changed in the
/// bucket does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_verify_checks_the_archived_record_against_status() {
    let w = World::new("cli-evidence").await;
    examples(&w).await;
    let moto = kiln_testkit::Moto::start();
    let account = kiln_testkit::Account::moto_default(&moto).await;
    let s3 = &account.clients.s3;
    s3.create_bucket().bucket("audit").send().await.expect("create bucket");
    // A record as kiln wrote it before schema version 2 (no schemaVersion): the bytes as stored.
    let record = json!({
        "kind": "promotion", "release": R, "service": "ingest-worker", "version": "v1.4.2",
        "releaseType": "standard", "artifacts": [], "environment": "prod",
        "accountId": "333333333333", "region": kiln_testkit::REGION, "approvals": [], "gates": [],
        "timeline": [], "signals": [], "outcome": "Succeeded", "controllerVersion": "0.1.0"
    });
    let bytes = serde_json::to_vec(&record).expect("record");
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
    };
    let key = format!("kiln-evidence/ingest/{R}-prod/{sha}.json");
    let put = |body: Vec<u8>| {
        let (s3, key) = (s3.clone(), key.clone());
        async move {
            s3.put_object().bucket("audit").key(key).body(body.into()).send().await.expect("put object");
        }
    };
    put(bytes.clone()).await;
    w.promotion(&format!("{R}-prod"), R, "prod", json!({})).await;
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-prod"),
        json!({"phase": "Succeeded", "evidenceSha256": sha,
               "evidenceArchive": {"bucket": "audit", "key": key, "archivedAt": "2026-12-07T10:00:00Z"},
               "previous": {"region": kiln_testkit::REGION, "accountId": "333333333333"}}),
    )
    .await;
    let url = moto.url();
    let aws = [
        ("AWS_ENDPOINT_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", kiln_testkit::STATIC_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let verify =
        |w: &World| w.kiln_with_env("alice", &["evidence", "verify", &format!("{R}-prod"), "-n", "ingest"], &aws);
    let run = verify(&w);
    ok(&run);
    assert!(run.stdout.contains(&format!("sha256:{sha} matches status.evidenceSha256")), "{run:?}");
    assert!(run.stdout.contains("schema version 1"), "{run:?}");

    // Someone rewrites the object: the check fails, naming both hashes.
    let mut forged = record.clone();
    forged["outcome"] = json!("RolledBack");
    put(serde_json::to_vec(&forged).expect("record")).await;
    let run = verify(&w);
    refused(&run, "MISMATCH");
    assert!(run.stderr.contains(&format!("records sha256:{sha}")), "{run:?}");

    // Not archived: says why instead of guessing.
    w.set_status(
        "Promotion",
        "ingest",
        &format!("{R}-prod"),
        json!({"phase": "Succeeded", "evidenceSha256": sha, "evidenceArchive": null}),
    )
    .await;
    refused(&verify(&w), "is not archived: its Environment sets no spec.evidence");
}
