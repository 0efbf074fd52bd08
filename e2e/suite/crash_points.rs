//! Every crash point: for each AWS write kiln makes, the controller is killed (SIGKILL) after the
//! write reached moto and before its answer came back — the fault proxy in front of moto holds
//! the answer and tells the test — and a new controller takes over. The Promotion must end as
//! it would have without the crash: no duplicate AWS resources (one task definition revision,
//! one task set, one Lambda version per attempt), the snapshot of what ran before intact, the
//! traffic where the final phase says, the evidence complete.
//!
//! The matrix is derived from the adapters: [`every_aws_write_kiln_makes_has_a_crash_point`]
//! lists every operation of the AWS SDK crates kiln-aws calls and fails when a write is neither
//! in [`CRASH_POINTS`] nor in [`NO_CRASH_POINT_YET`] (which says why).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use kiln_api::{Promotion, PromotionPhase, Release};
use kiln_aws::credentials::Clients;
use kiln_testkit::{Action, AliasState, EcsFixture, FaultProxy, Match, Rule, Upstream, When};
use serde_json::json;

use crate::harness::{ControllerOptions, World, image};

const MIN: Duration = Duration::from_secs(90);

/// The scenario that kills the controller at each write (the write's action as the AWS API
/// reference names it).
const CRASH_POINTS: &[(&str, &str)] = &[
    ("RegisterTaskDefinition", "ecs_blue_green_canary_survives_a_crash_at_every_write"),
    ("CreateTaskSet", "ecs_blue_green_canary_survives_a_crash_at_every_write"),
    ("ModifyListener", "ecs_blue_green_canary_survives_a_crash_at_every_write"),
    ("UpdateServicePrimaryTaskSet", "ecs_blue_green_canary_survives_a_crash_at_every_write"),
    ("DeleteTaskSet", "ecs_blue_green_canary_survives_a_crash_at_every_write"),
    ("UpdateFunctionCode", "lambda_canary_survives_a_crash_at_every_write"),
    ("PublishVersion", "lambda_canary_survives_a_crash_at_every_write"),
    ("UpdateAlias", "lambda_canary_survives_a_crash_at_every_write"),
    ("PutObject", "lambda_canary_survives_a_crash_at_every_write"),
    ("Invoke", "lambda_canary_survives_a_crash_at_every_write"),
    ("ModifyRule", "ecs_blue_green_canary_survives_a_crash_at_every_write"),
    ("UpdateService", "ecs_rolling_survives_a_crash_at_every_write"),
    ("RunTask", "an_ecs_hook_survives_a_crash_at_every_write"),
    ("StopTask", "an_ecs_hook_survives_a_crash_at_every_write"),
    ("CreateDeployment", "ecs_through_codedeploy_survives_a_crash_at_every_write"),
    ("TagResource", "ecs_through_codedeploy_survives_a_crash_at_every_write"),
    ("StopDeployment", "ecs_through_codedeploy_survives_a_crash_at_every_write"),
    ("UntagResource", "ecs_through_codedeploy_survives_a_crash_at_every_write"),
];

/// Writes kiln makes that have no end-to-end crash point yet, and why (none today; a write
/// listed here is a known gap, said in docs/operations.md "Known limits").
const NO_CRASH_POINT_YET: &[(&str, &str)] = &[];

/// Operations that change nothing in the environment's account although their names are not
/// reads.
const NOT_WRITES: &[(&str, &str)] = &[("AssumeRole", "STS: issues kiln's own credentials")];

/// `create_task_set` → `CreateTaskSet`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The operations (snake case) of every `aws-sdk-*` crate in the build, from each crate's
/// `src/operation/` modules, found with `cargo metadata`.
fn sdk_operations(root: &Path) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        // Offline: only the packages this platform builds (their sources are on disk).
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let mut ops = BTreeSet::new();
    let mut crates = 0;
    for package in meta["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        if !name.starts_with("aws-sdk-") {
            continue;
        }
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest.parent().unwrap().join("src/operation");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        crates += 1;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            ops.insert(file.trim_end_matches(".rs").to_owned());
        }
    }
    assert!(crates >= 7, "found {crates} aws-sdk crates: the inventory cannot be trusted");
    ops
}

/// The Rust sources under `dir`.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
    }
}

#[test]
fn every_aws_write_kiln_makes_has_a_crash_point() {
    let root = kiln_testkit::repo_root().expect("repository root");
    let ops = sdk_operations(&root);
    let mut code = Vec::new();
    sources(&root.join("controller/aws/src"), &mut code);
    let code = code.join("\n");
    // A call of an SDK operation is its fluent builder: `.create_task_set()`.
    let called: BTreeSet<String> =
        ops.iter().filter(|op| code.contains(&format!(".{op}()"))).map(|op| camel(op)).collect();
    let reads = ["Describe", "Get", "List", "Head", "BatchGet"];
    let writes: BTreeSet<String> = called
        .iter()
        .filter(|op| !reads.iter().any(|r| op.starts_with(r)))
        .filter(|op| !NOT_WRITES.iter().any(|(w, _)| w == *op))
        .cloned()
        .collect();
    assert!(writes.contains("CreateTaskSet") && writes.contains("UpdateAlias"), "the inventory found {writes:?}");
    let listed: BTreeSet<String> =
        CRASH_POINTS.iter().chain(NO_CRASH_POINT_YET).map(|(op, _)| (*op).to_owned()).collect();
    let missing: Vec<&String> = writes.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "kiln-aws makes AWS writes with no crash point: {missing:?}. Add each to CRASH_POINTS with a \
         scenario that kills the controller there (or, with a reason, to NO_CRASH_POINT_YET)"
    );
    let stale: Vec<&String> = listed.difference(&writes).collect();
    assert!(stale.is_empty(), "listed as crash points but kiln-aws no longer calls them: {stale:?}");
    let both: Vec<&&str> =
        CRASH_POINTS.iter().map(|(op, _)| op).filter(|op| NO_CRASH_POINT_YET.iter().any(|(o, _)| o == *op)).collect();
    assert!(both.is_empty(), "both covered and not: {both:?}");
}

/// A proxy in front of moto for the controllers of `w`.
async fn aws_proxy(w: &World) -> FaultProxy {
    FaultProxy::start(Upstream::Http(w.moto.url()), false).await.expect("AWS proxy")
}

fn via(proxy: &FaultProxy) -> ControllerOptions {
    ControllerOptions { aws_endpoint: Some(proxy.url().to_owned()), ..ControllerOptions::default() }
}

/// Creates Release `name` with `spec`, released into dev only; returns its dev Promotion's name.
async fn release(w: &World, name: &str, mut spec: serde_json::Value) -> String {
    spec["environments"] = json!(["dev"]);
    w.create::<Release>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": name}, "spec": spec
    }))
    .await;
    format!("{name}-dev")
}

/// Waits until the proxy holds an `action` call (by a rule the caller added), kills the
/// controller, lets the proxy go on with `keep` as its only rules (e.g. answers moto cannot
/// give), and starts a new controller.
async fn crash_at(w: &mut World, proxy: &FaultProxy, action: &str, promotion: &str, keep: &[Rule]) {
    let held = proxy.wait_holding(1, MIN).await;
    if let Err(e) = held {
        let p = w.promotion(promotion).await;
        panic!("no {action} call held: {e}\nPromotion: {:?}\n{}", p.and_then(|p| p.status), w.logs());
    }
    let last = w.controllers.len() - 1;
    w.controllers[last].kill();
    // The answer goes to a connection nobody reads any more.
    proxy.clear();
    for rule in keep {
        proxy.add(rule.clone());
    }
    proxy.release();
    w.start_controller(via(proxy));
}

/// A listener rule (priority 10, `/api/*`) forwarding to the fixture's blue target group.
async fn api_rule(clients: &Clients, f: &EcsFixture) -> String {
    use aws_sdk_elasticloadbalancingv2::types as elb;
    let fwd = elb::ForwardActionConfig::builder()
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&f.blue_tg).weight(100).build())
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&f.green_tg).weight(0).build())
        .build();
    let path = elb::PathPatternConditionConfig::builder().values("/api/*").build();
    let out = clients
        .elb
        .create_rule()
        .listener_arn(&f.listener_arn)
        .priority(10)
        .conditions(elb::RuleCondition::builder().field("path-pattern").path_pattern_config(path).build())
        .actions(elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).forward_config(fwd).build())
        .send()
        .await
        .unwrap();
    out.rules()[0].rule_arn().unwrap().to_owned()
}

/// One scenario's world: the three Environments (bake 2 s), RollbackPolicy `slo` watching
/// `alarm`, a fault proxy in front of moto and a controller reaching AWS through it; with dev's
/// AWS clients and the scenario's actions from [`CRASH_POINTS`].
async fn scenario(name: &str, alarm: &str, scenario: &str) -> (World, FaultProxy, Clients, Vec<&'static str>) {
    let mut w = World::new(name).await;
    w.environments("2s").await;
    w.policy(alarm).await;
    let proxy = aws_proxy(&w).await;
    let clients = w.account("dev").clients.clone();
    w.start_controller(via(&proxy));
    let actions = CRASH_POINTS.iter().filter(|(_, s)| *s == scenario).map(|(a, _)| *a).collect();
    (w, proxy, clients, actions)
}

fn reasons(p: &Promotion) -> Vec<String> {
    p.status.as_ref().map(|s| s.timeline.iter().map(|t| t.reason.clone()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_blue_green_canary_survives_a_crash_at_every_write() {
    let (mut w, proxy, clients, actions) =
        scenario("crash-ecs", "crash-ecs-5xx", "ecs_blue_green_canary_survives_a_crash_at_every_write").await;
    for (i, action) in actions.iter().enumerate() {
        let prefix = format!("cp{i}");
        let f = EcsFixture::create(w.account("dev"), &prefix, "api").await.unwrap();
        // ModifyRule: the Release shifts a listener rule's weights instead of the default action.
        let rule_arn = if *action == "ModifyRule" { Some(api_rule(&clients, &f).await) } else { None };
        let mut traffic = json!({"listener": {"loadBalancerName": f.lb_name, "port": f.listener_port},
                                 "blueTargetGroup": {"name": f.blue_tg_name},
                                 "greenTargetGroup": {"name": f.green_tg_name}});
        if rule_arn.is_some() {
            traffic["rule"] = json!({"priority": 10});
        }
        proxy.add(Rule::times(Match::action(action), Action::Hold(When::After), 1));
        let name = format!("{prefix}-v2");
        let spec = json!({
            "service": prefix, "version": "v2.0.0", "artifacts": [{"name": "api", "image": image(&prefix, 2)}],
            "target": {"ecs": {"cluster": f.cluster, "service": f.service, "container": "api",
                               "strategy": "canary", "steps": [10, 100], "stepBake": "1s", "traffic": traffic}}
        });
        let p = release(&w, &name, spec).await;
        crash_at(&mut w, &proxy, action, &p, &[]).await;

        let done = w.wait_phase(&p, PromotionPhase::Succeeded, MIN).await;
        let at = format!("crash after {action}");
        let uid = done.metadata.uid.clone().unwrap_or_default();
        let sets = f.task_sets(&clients).await.unwrap();
        assert_eq!(sets.len(), 1, "{at}: one task set, the old one retired, no duplicate: {sets:?}");
        assert_eq!((sets[0].status.as_str(), sets[0].external_id.as_str()), ("PRIMARY", uid.as_str()), "{at}");
        let weights = match &rule_arn {
            Some(rule) => kiln_testkit::listener_weights(&clients, rule).await.unwrap(),
            None => f.weights(&clients).await.unwrap(),
        };
        let green = sets[0].target_group.clone().unwrap_or_default();
        assert!(
            weights.iter().any(|(tg, wt)| *tg == green && *wt == 100),
            "{at}: all traffic on the new set: {weights:?}"
        );
        if rule_arn.is_some() {
            let default = f.weights(&clients).await.unwrap();
            assert!(
                default.iter().any(|(tg, wt)| *tg == f.blue_tg && *wt == 100),
                "{at}: the listener's default action untouched: {default:?}"
            );
        }
        assert!(sets[0].task_definition.ends_with(":2"), "{at}: exactly one new revision: {}", sets[0].task_definition);
        let status = done.status.clone().unwrap_or_default();
        let snapshot = status.previous.as_ref().and_then(|s| s.ecs.as_ref()).expect("snapshot");
        assert_eq!(snapshot.task_definition.as_deref(), Some(f.task_definition.as_str()), "{at}: snapshot intact");
        assert_eq!(snapshot.primary_task_set.as_deref(), Some(f.blue_task_set.as_str()), "{at}: snapshot intact");
        assert_eq!(reasons(&done).iter().filter(|r| *r == "Prepared").count(), 1, "{at}: {:?}", reasons(&done));
        let evidence = status.evidence.as_ref().expect("evidence");
        assert!(status.evidence_sha256.is_some(), "{at}: evidence digest");
        assert!(
            evidence.resources.iter().any(|r| r == &sets[0].arn),
            "{at}: evidence names the task set: {:?}",
            evidence.resources
        );
    }
    // Each attempt's CreateTaskSet carried its own client token, and none was sent twice with
    // another body (a repeat after a crash reuses the attempt's token, which ECS answers with
    // the same task set).
    let tokens: Vec<String> = proxy
        .log()
        .iter()
        .filter(|l| l.aws_action().as_deref() == Some("CreateTaskSet"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.body).ok())
        .filter_map(|b| b["clientToken"].as_str().map(str::to_owned))
        .collect();
    assert!(!tokens.is_empty() && tokens.iter().all(|t| !t.is_empty() && t.len() <= 36), "{tokens:?}");
}

/// Lambda with zip packages, evidence archived to S3. Zips because moto shares an image
/// function's code between $LATEST and its published versions (a shallow copy), so after an
/// interrupted image update version 1 reports the new image, which real Lambda never does; zip
/// versions keep their own CodeSha256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_canary_survives_a_crash_at_every_write() {
    use base64::Engine;
    use sha2::Digest;
    let (mut w, proxy, clients, actions) =
        scenario("crash-lambda", "crash-lambda-errors", "lambda_canary_survives_a_crash_at_every_write").await;
    let bucket = "crash-lambda-code";
    clients.s3.create_bucket().bucket(bucket).send().await.unwrap();
    // Evidence archived in dev's account (PutObject is a crash point too).
    let evidence_bucket = "crash-lambda-evidence";
    kiln_testkit::object_lock_bucket(&clients, evidence_bucket, 1).await.unwrap();
    let envs: kube::Api<kiln_api::Environment> = kube::Api::all(w.client.clone());
    let patch = json!({"spec": {"evidence": {"bucket": evidence_bucket}}});
    envs.patch("dev", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    for (i, action) in actions.iter().enumerate() {
        let function = format!("crash-fn{i}");
        let f = kiln_testkit::LambdaFixture::create(w.account("dev"), &function, "live").await.unwrap();
        let zip = kiln_testkit::zip_file("index.py", format!("def handler(e, c):\n    return {i}\n").as_bytes());
        let key = format!("{function}/v2.zip");
        let body = aws_sdk_s3::primitives::ByteStream::from(zip.clone());
        clients.s3.put_object().bucket(bucket).key(&key).body(body).send().await.unwrap();
        let sha = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip));
        // Invoke: a pre-traffic Lambda hook. moto needs a container runtime to run a function,
        // so the invocation is held before it (kiln cannot tell) and then answered as Lambda
        // would, with success.
        let invoked = Rule::always(Match::action("Invoke"), Action::fail_json(200, r#"{"ok":true}"#));
        let (hooks, keep) = if *action == "Invoke" {
            proxy.add(Rule::times(Match::action(action), Action::Hold(When::Before), 1));
            (json!({"preTraffic": {"lambdaFunction": "crash-smoke"}}), vec![invoked])
        } else {
            proxy.add(Rule::times(Match::action(action), Action::Hold(When::After), 1));
            (json!(null), vec![])
        };
        let name = format!("{function}-v2");
        let spec = json!({
            "service": function, "version": "v1.2.0",
            "artifacts": [{"name": "fn", "zip": {"s3Bucket": bucket, "s3Key": key, "codeSha256": sha}}],
            "target": {"lambda": {"functionName": function, "alias": "live", "artifact": "fn",
                                  "strategy": "canary", "steps": [25, 100], "stepBake": "1s", "hooks": hooks}}
        });
        let p = release(&w, &name, spec).await;
        crash_at(&mut w, &proxy, action, &p, &keep).await;

        let done = w
            .eventually(MIN, "Succeeded with its evidence archived", || async {
                w.promotion(&p).await.filter(|p| {
                    p.status.as_ref().is_some_and(|s| {
                        s.phase == PromotionPhase::Succeeded
                            && s.evidence_archive.as_ref().is_some_and(|a| a.archived_at.is_some())
                    })
                })
            })
            .await;
        let at = format!("crash after {action}");
        // The record was written once: one version of its key in the versioned (locked) bucket.
        let archive = done.status.as_ref().and_then(|s| s.evidence_archive.clone()).unwrap();
        let listed =
            clients.s3.list_object_versions().bucket(evidence_bucket).prefix(&archive.key).send().await.unwrap();
        assert_eq!(listed.versions().len(), 1, "{at}: the evidence record written once: {:?}", listed.versions());
        assert_eq!(f.alias_state(&clients).await.unwrap(), AliasState::on("2"), "{at}: all traffic on the new version");
        assert_eq!(f.versions(&clients).await.unwrap(), vec!["$LATEST", "1", "2"], "{at}: one new version");
        let v2 = clients.lambda.get_function_configuration().function_name(&function).qualifier("2").send().await;
        assert_eq!(v2.unwrap().code_sha256(), Some(sha.as_str()), "{at}: version 2 runs the Release's package");
        let status = done.status.clone().unwrap_or_default();
        let snapshot = status.previous.as_ref().and_then(|s| s.lambda.as_ref()).expect("snapshot");
        assert_eq!(snapshot.version, "1", "{at}: snapshot intact: {snapshot:?}");
        assert_eq!(reasons(&done).iter().filter(|r| *r == "Prepared").count(), 1, "{at}: {:?}", reasons(&done));
        assert!(status.evidence_sha256.is_some() && status.evidence.is_some(), "{at}: evidence");
        if *action == "Invoke" {
            assert_eq!(status.hooks_passed.len(), 1, "{at}: {:?}", status.hooks_passed);
            // At least once: the restarted controller cannot know whether the function ran, so
            // it invokes it again with the same run key, which the function can dedupe on.
            let runs: Vec<serde_json::Value> = proxy
                .log()
                .iter()
                .filter(|l| l.aws_action().as_deref() == Some("Invoke"))
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.body).ok())
                .map(|b| b["kiln"]["run"].clone())
                .collect();
            assert!(runs.len() >= 2 && runs.iter().all(|r| r.is_string() && *r == runs[0]), "{at}: {runs:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_rolling_survives_a_crash_at_every_write() {
    let (mut w, proxy, clients, actions) =
        scenario("crash-rolling", "crash-rolling-5xx", "ecs_rolling_survives_a_crash_at_every_write").await;
    for (i, action) in actions.iter().enumerate() {
        let (cluster, service) = (format!("roll{i}"), format!("roll{i}-web"));
        let baseline = kiln_testkit::rolling_service(&clients, &cluster, &service, &service).await.unwrap();
        proxy.add(Rule::times(Match::action(action), Action::Hold(When::After), 1));
        let name = format!("roll{i}-v2");
        let spec = json!({
            "service": service, "version": "v2.0.0", "artifacts": [{"name": "app", "image": image(&service, 2)}],
            "target": {"ecs": {"cluster": cluster, "service": service, "container": "app", "strategy": "rolling"}}
        });
        let p = release(&w, &name, spec).await;
        crash_at(&mut w, &proxy, action, &p, &[]).await;

        let done = w.wait_phase(&p, PromotionPhase::Succeeded, MIN).await;
        let at = format!("crash after {action}");
        let running = kiln_testkit::service_task_definition(&clients, &cluster, &service).await.unwrap();
        let running = running.unwrap_or_default();
        assert!(running.ends_with(":2"), "{at}: the service runs the one new revision: {running}");
        let td = clients.ecs.describe_task_definition().task_definition(&running).send().await.unwrap();
        let images: Vec<&str> = td
            .task_definition()
            .map(|d| d.container_definitions().iter().filter_map(|c| c.image()).collect())
            .unwrap_or_default();
        assert_eq!(images, vec![image(&service, 2).as_str()], "{at}");
        let status = done.status.clone().unwrap_or_default();
        let snapshot = status.previous.as_ref().and_then(|s| s.ecs.as_ref()).expect("snapshot");
        assert_eq!(snapshot.task_definition.as_deref(), Some(baseline.as_str()), "{at}: snapshot intact");
        assert_eq!(reasons(&done).iter().filter(|r| *r == "Prepared").count(), 1, "{at}: {:?}", reasons(&done));
        assert!(status.evidence_sha256.is_some() && status.evidence.is_some(), "{at}: evidence");
    }
}

/// ECS hooks on a rolling service. moto starts a task but never runs it to its end: the test
/// stops it (moto then reports exit code 0) where the task would finish, and, for the timeout,
/// the proxy answers DescribeTasks as ECS would for a task created 20 minutes ago. The hook
/// task definition is bridge-mode (moto cannot start awsvpc tasks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_hook_survives_a_crash_at_every_write() {
    use aws_sdk_ecs::types as ecs;
    let (mut w, proxy, clients, actions) =
        scenario("crash-hooks", "crash-hooks-5xx", "an_ecs_hook_survives_a_crash_at_every_write").await;
    for (i, action) in actions.iter().enumerate() {
        let (cluster, service, migrate) = (format!("hook{i}"), format!("hook{i}-web"), format!("hook{i}-migrate"));
        // A Fargate service (a hook task runs as the service's tasks do; moto starts Fargate
        // tasks of a bridge-mode task definition, not EC2 ones without container instances).
        clients.ecs.create_cluster().cluster_name(&cluster).send().await.unwrap();
        let app = ecs::ContainerDefinition::builder().name("app").image("registry.example/app:v1").memory(256);
        let td = clients.ecs.register_task_definition().family(&service).container_definitions(app.build()).send();
        let td = td.await.unwrap();
        let baseline = td.task_definition().and_then(|d| d.task_definition_arn()).unwrap().to_owned();
        let created = clients
            .ecs
            .create_service()
            .cluster(&cluster)
            .service_name(&service)
            .task_definition(&baseline)
            .launch_type(ecs::LaunchType::Fargate)
            .desired_count(0)
            .send();
        created.await.unwrap();
        let container =
            ecs::ContainerDefinition::builder().name("migrate").image("registry.example/migrate:v1").memory(256);
        clients
            .ecs
            .register_task_definition()
            .family(&migrate)
            .network_mode(ecs::NetworkMode::Bridge)
            .container_definitions(container.build())
            .send()
            .await
            .unwrap();
        let tasks = |status: ecs::DesiredStatus| {
            let (clients, cluster) = (clients.clone(), cluster.clone());
            async move {
                let out = clients.ecs.list_tasks().cluster(cluster).desired_status(status).send().await.unwrap();
                out.task_arns().to_vec()
            }
        };
        // StopTask: kiln stops a hook task that outlived its timeout.
        let timeout = if *action == "StopTask" { "1m" } else { "10m" };
        let hold = Rule::times(Match::action(action), Action::Hold(When::After), 1);
        if *action == "RunTask" {
            proxy.add(hold.clone());
        }
        let name = format!("hook{i}-v2");
        let spec = json!({
            "service": service, "version": "v2.0.0", "artifacts": [{"name": "app", "image": image(&service, 2)}],
            "target": {"ecs": {"cluster": cluster, "service": service, "container": "app", "strategy": "rolling",
                               "hooks": {"preTraffic": {"ecsTaskDefinition": migrate, "timeout": timeout}}}}
        });
        let p = release(&w, &name, spec).await;
        if *action == "StopTask" {
            let started = w
                .eventually(MIN, "the hook task started", || async {
                    tasks(ecs::DesiredStatus::Running).await.first().cloned()
                })
                .await;
            let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 1200;
            let running =
                json!({"tasks": [{"taskArn": started, "lastStatus": "RUNNING", "createdAt": created}], "failures": []});
            let described = Match { body: Some(started.clone()), ..Match::action("DescribeTasks") };
            proxy.add(hold.clone());
            proxy.add(Rule::always(described, Action::fail_json(200, &running.to_string())));
        }
        crash_at(&mut w, &proxy, action, &p, &[]).await;
        let at = format!("crash after {action}");

        if *action == "RunTask" {
            // The migration finishes (moto: the task stops with exit code 0).
            let task = w
                .eventually(MIN, "the hook task running", || async {
                    tasks(ecs::DesiredStatus::Running).await.first().cloned()
                })
                .await;
            clients.ecs.stop_task().cluster(&cluster).task(&task).reason("migrated").send().await.unwrap();
            let done = w.wait_phase(&p, PromotionPhase::Succeeded, MIN).await;
            let all = [tasks(ecs::DesiredStatus::Running).await, tasks(ecs::DesiredStatus::Stopped).await].concat();
            assert_eq!(all, vec![task.clone()], "{at}: one hook task, never started twice");
            let running = kiln_testkit::service_task_definition(&clients, &cluster, &service).await.unwrap();
            assert!(running.unwrap_or_default().ends_with(":2"), "{at}: the new revision runs");
            let status = done.status.clone().unwrap_or_default();
            assert_eq!(status.hooks_passed.len(), 1, "{at}: {:?}", status.hooks_passed);
            assert!(status.evidence_sha256.is_some(), "{at}: evidence");
        } else {
            // The task kiln stopped for its timeout failed the hook, whatever its exit code
            // (moto reports 0): the Promotion fails and the service keeps running what it ran.
            let done = w
                .eventually(MIN, "the Promotion ended", || async {
                    w.promotion(&p).await.filter(|p| p.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
                })
                .await;
            let status = done.status.clone().unwrap_or_default();
            assert!(
                matches!(status.phase, PromotionPhase::Failed | PromotionPhase::RolledBack),
                "{at}: the timed-out hook fails the Promotion: {:?} {:?}",
                status.phase,
                status.message
            );
            let said = status.timeline.iter().any(|t| t.message.contains("did not finish within 1m"));
            assert!(said, "{at}: the timeline says why: {:?}", status.timeline);
            assert!(status.hooks_passed.is_empty(), "{at}: {:?}", status.hooks_passed);
            let running = kiln_testkit::service_task_definition(&clients, &cluster, &service).await.unwrap();
            assert_eq!(running.as_deref(), Some(baseline.as_str()), "{at}: the service runs what it ran");
            let stops = proxy.log().iter().filter(|l| l.aws_action().as_deref() == Some("StopTask")).count();
            assert!(stops >= 1, "{at}: kiln stopped the task");
        }
    }
}

/// What CodeDeploy does in ECS when deployment `id` of `td` completes: a task set of `td` (made
/// if none runs it, external ID `id`) becomes primary and every other task set is removed.
async fn codedeploy_swaps_to(clients: &Clients, cluster: &str, service: &str, td: &str, id: &str) {
    use aws_sdk_ecs::types as ecs;
    let sets = kiln_testkit::task_sets(clients, cluster, service).await.unwrap();
    let new = match sets.iter().find(|t| t.task_definition == td) {
        Some(t) => t.arn.clone(),
        None => {
            let scale = ecs::Scale::builder().unit(ecs::ScaleUnit::Percent).value(100.0).build();
            let created = clients
                .ecs
                .create_task_set()
                .cluster(cluster)
                .service(service)
                .task_definition(td)
                .external_id(id)
                .launch_type(ecs::LaunchType::Fargate)
                .scale(scale)
                .send();
            created.await.unwrap().task_set().and_then(|t| t.task_set_arn()).unwrap().to_owned()
        }
    };
    let primary =
        clients.ecs.update_service_primary_task_set().cluster(cluster).service(service).primary_task_set(&new);
    primary.send().await.unwrap();
    for old in kiln_testkit::task_sets(clients, cluster, service).await.unwrap().into_iter().filter(|t| t.arn != new) {
        let deleted = clients.ecs.delete_task_set().cluster(cluster).service(service).task_set(old.arn).force(true);
        deleted.send().await.unwrap();
    }
}

/// The task definition kiln registered for Promotion `p` (its `status.deployed`) and the
/// CodeDeploy deployment recorded on it, once recorded.
async fn tagged(w: &World, clients: &Clients, p: &str) -> Option<(String, String)> {
    let promotion = w.promotion(p).await?;
    let td = promotion.status.as_ref()?.deployed.as_ref()?.task_definition.clone()?;
    let id = td_tag(clients, &td, kiln_aws::ecs::code_deploy::DEPLOYMENT_TAG).await?;
    Some((td, id))
}

/// The value of tag `key` on task definition `td`.
async fn td_tag(clients: &Clients, td: &str, key: &str) -> Option<String> {
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(td)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    out.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_owned)
}

/// ECS through CodeDeploy. moto creates and lists deployments but never moves one on and has no
/// StopDeployment: the test plays CodeDeploy — its task set swap in ECS, and GetDeployment (and
/// StopDeployment) answered through the proxy as CodeDeploy would. Forward: CreateDeployment and
/// TagResource (the deployment recorded on the task definition). Breach: StopDeployment and
/// UntagResource (the records removed once the restore is done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_through_codedeploy_survives_a_crash_at_every_write() {
    use aws_sdk_codedeploy::types as cd;
    use aws_sdk_ecs::types as ecs;
    use kiln_aws::ecs::code_deploy::DEPLOYMENT_TAG;
    let alarm = "crash-cd-5xx";
    let (mut w, proxy, clients, actions) =
        scenario("crash-cd", alarm, "ecs_through_codedeploy_survives_a_crash_at_every_write").await;
    for (i, action) in actions.iter().enumerate() {
        let (cluster, service, app, group) =
            (format!("cd{i}"), format!("cd{i}-web"), format!("cd{i}-app"), format!("cd{i}-dg"));
        clients.ecs.create_cluster().cluster_name(&cluster).send().await.unwrap();
        let port = ecs::PortMapping::builder().container_port(8080).build();
        let container = ecs::ContainerDefinition::builder().name("app").image("registry.example/app:v1").memory(256);
        let td = clients
            .ecs
            .register_task_definition()
            .family(&service)
            .requires_compatibilities(ecs::Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .container_definitions(container.port_mappings(port).build())
            .send()
            .await
            .unwrap();
        let baseline = td.task_definition().and_then(|d| d.task_definition_arn()).unwrap().to_owned();
        let controller = ecs::DeploymentController::builder().r#type(ecs::DeploymentControllerType::CodeDeploy).build();
        clients
            .ecs
            .create_service()
            .cluster(&cluster)
            .service_name(&service)
            .task_definition(&baseline)
            .desired_count(0)
            .deployment_controller(controller.unwrap())
            .send()
            .await
            .unwrap();
        codedeploy_swaps_to(&clients, &cluster, &service, &baseline, "d-ORIGINAL").await;
        let created =
            clients.codedeploy.create_application().application_name(&app).compute_platform(cd::ComputePlatform::Ecs);
        created.send().await.unwrap();
        let style = cd::DeploymentStyle::builder()
            .deployment_type(cd::DeploymentType::BlueGreen)
            .deployment_option(cd::DeploymentOption::WithTrafficControl)
            .build();
        clients
            .codedeploy
            .create_deployment_group()
            .application_name(&app)
            .deployment_group_name(&group)
            .service_role_arn("arn:aws:iam::111111111111:role/codedeploy")
            .deployment_style(style)
            .ecs_services(cd::EcsService::builder().cluster_name(&cluster).service_name(&service).build())
            .send()
            .await
            .unwrap();
        let deployments = || {
            let (clients, app, group) = (clients.clone(), app.clone(), group.clone());
            async move {
                let out = clients.codedeploy.list_deployments().application_name(app).deployment_group_name(group);
                out.send().await.unwrap().deployments().to_vec()
            }
        };

        // The previous iteration's answers were for its deployment.
        proxy.clear();
        // CodeDeploy's answers: StopDeployment (moto lacks it), then GetDeployment once stopped.
        let stop_answer = Rule::always(
            Match::action("StopDeployment"),
            Action::fail_json(200, r#"{"status":"Pending","statusMessage":"stopping with rollback"}"#),
        );
        let breach = matches!(*action, "StopDeployment" | "UntagResource");
        if *action == "StopDeployment" {
            // Before: moto has no StopDeployment to reach.
            proxy.add(Rule::times(Match::action(action), Action::Hold(When::Before), 1));
        } else {
            proxy.add(Rule::times(Match::action(action), Action::Hold(When::After), 1));
        }
        if breach {
            proxy.add(stop_answer.clone());
        }
        let name = format!("cd{i}-v2");
        let spec = json!({
            "service": service, "version": "v2.0.0", "artifacts": [{"name": "app", "image": image(&service, 2)}],
            "target": {"ecs": {"cluster": cluster, "service": service, "container": "app", "strategy": "codeDeploy",
                               "codeDeploy": {"application": app, "deploymentGroup": group, "containerPort": 8080}}}
        });
        let p = release(&w, &name, spec).await;
        let at = format!("crash after {action}");
        let stopped = |id: &str| {
            let body = json!({"deploymentInfo": {"deploymentId": id, "status": "Stopped",
                                                 "errorInformation": {"code": "STOPPED", "message": "stopped by kiln"}}});
            Rule::always(Match::action("GetDeployment"), Action::fail_json(200, &body.to_string()))
        };

        if !breach {
            crash_at(&mut w, &proxy, action, &p, &[]).await;
            // CodeDeploy finishes the deployment the restarted controller follows.
            let (td, id) =
                w.eventually(MIN, "the deployment recorded on the task definition", || tagged(&w, &clients, &p)).await;
            codedeploy_swaps_to(&clients, &cluster, &service, &td, &id).await;
            let body = json!({"deploymentInfo": {"deploymentId": id, "status": "Succeeded"}});
            proxy.add(Rule::always(Match::action("GetDeployment"), Action::fail_json(200, &body.to_string())));
            let done = w.wait_phase(&p, PromotionPhase::Succeeded, MIN).await;
            assert_eq!(deployments().await, vec![id.clone()], "{at}: one deployment");
            let sets = kiln_testkit::task_sets(&clients, &cluster, &service).await.unwrap();
            let primary: Vec<&str> =
                sets.iter().filter(|t| t.status == "PRIMARY").map(|t| t.task_definition.as_str()).collect();
            assert_eq!(primary, vec![td.as_str()], "{at}: the new revision serves");
            assert!(td.ends_with(":2"), "{at}: one new revision: {td}");
            let status = done.status.clone().unwrap_or_default();
            let snapshot = status.previous.as_ref().and_then(|s| s.ecs.as_ref()).expect("snapshot");
            assert_eq!(snapshot.task_definition.as_deref(), Some(baseline.as_str()), "{at}: snapshot intact");
        } else {
            // A breach while CodeDeploy is still deploying: kiln stops the deployment.
            let (td, id) =
                w.eventually(MIN, "the deployment recorded on the task definition", || tagged(&w, &clients, &p)).await;
            kiln_testkit::set_alarm_state(&clients, alarm, "ALARM").await.unwrap();
            proxy
                .wait_for(MIN, "StopDeployment", |log| {
                    log.iter().any(|l| l.aws_action().as_deref() == Some("StopDeployment") && l.body.contains(&id))
                })
                .await
                .unwrap();
            if *action == "UntagResource" {
                proxy.add(stopped(&id));
            }
            crash_at(&mut w, &proxy, action, &p, &[stop_answer.clone(), stopped(&id)]).await;
            let done = w.wait_phase(&p, PromotionPhase::RolledBack, MIN).await;
            kiln_testkit::set_alarm_state(&clients, alarm, "OK").await.unwrap();
            assert_eq!(deployments().await, vec![id.clone()], "{at}: one deployment, no restore deployment");
            assert_eq!(td_tag(&clients, &td, DEPLOYMENT_TAG).await, None, "{at}: the record removed after the restore");
            let sets = kiln_testkit::task_sets(&clients, &cluster, &service).await.unwrap();
            let primary: Vec<&str> =
                sets.iter().filter(|t| t.status == "PRIMARY").map(|t| t.task_definition.as_str()).collect();
            assert_eq!(primary, vec![baseline.as_str()], "{at}: the old revision serves");
            let cause = done.status.and_then(|s| s.rollback).map(|r| r.cause);
            assert_eq!(cause, Some(kiln_api::RollbackCause::Alarm), "{at}");
        }
    }
}
