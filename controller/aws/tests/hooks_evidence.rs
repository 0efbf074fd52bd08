//! ECS task hooks and S3 evidence against moto; Lambda hooks against a stub behind the fault
//! proxy (moto needs a container runtime to run a function).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_ecs::types as ecs;
use kiln_aws::evidence::{EvidenceStore, S3Evidence};
use kiln_aws::hooks::{AwsHooks, HookRun, HookRunner, HookState, HookTarget, Invocations};
use kiln_core::plan::HookPoint;
use kiln_testkit::*;

/// A bridge-mode task definition `family` (moto cannot start awsvpc tasks) for hooks.
async fn hook_task_definition(clients: &kiln_aws::credentials::Clients, family: &str) {
    clients
        .ecs
        .register_task_definition()
        .family(family)
        .network_mode(ecs::NetworkMode::Bridge)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ecs::ContainerDefinition::builder()
                .name("migrate")
                .image("registry.example/migrate:v1")
                .memory(256)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Cluster `name` with a Fargate service `<name>-web` and the hook task definition
/// `<name>-migrate`; the hook that runs it.
async fn hook_service(clients: &kiln_aws::credentials::Clients, name: &str) -> HookTarget {
    clients.ecs.create_cluster().cluster_name(name).send().await.unwrap();
    clients
        .ecs
        .create_service()
        .cluster(name)
        .service_name(format!("{name}-web"))
        .launch_type(ecs::LaunchType::Fargate)
        .desired_count(0)
        .send()
        .await
        .unwrap();
    hook_task_definition(clients, &format!("{name}-migrate")).await;
    HookTarget::EcsTask {
        cluster: name.into(),
        service: format!("{name}-web"),
        task_definition: format!("{name}-migrate"),
    }
}

/// Waits for run `key`'s answer; a bound only so a broken build fails instead of hanging.
async fn answered(invocations: &Invocations, key: &str) {
    let waited = tokio::time::timeout(Duration::from_secs(60), invocations.answered(key)).await;
    waited.unwrap_or_else(|_| panic!("hook run {key} got no answer within a minute"));
}

fn run(uid: &str, attempt: i32, timeout: Duration) -> HookRun<'_> {
    HookRun { uid, point: HookPoint::PreTraffic, attempt, timeout }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_task_hook_runs_once_per_attempt_and_reports_the_stop() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let hook = hook_service(&clients, "hk").await;
    let hooks = AwsHooks::new(clients.clone(), Invocations::default());
    let first = run("uid-hk", 0, Duration::from_secs(600));
    let HookState::Running(task) = hooks.start(&first, &hook).await.unwrap() else {
        panic!("an ECS hook starts a task")
    };
    // A repeat finds the running task instead of starting another.
    assert_eq!(hooks.start(&first, &hook).await.unwrap(), HookState::Running(task.clone()));
    let listed = clients.ecs.list_tasks().cluster("hk").send().await.unwrap();
    assert_eq!(listed.task_arns().len(), 1);

    assert_eq!(hooks.poll(&first, &hook, &task).await.unwrap(), HookState::Running(task.clone()));
    clients.ecs.stop_task().cluster("hk").task(&task).reason("done").send().await.unwrap();
    // moto reports exit code 0 for every stopped container; the failure verdict (non-zero or
    // missing exit codes) is unit-tested on SDK values in hooks.rs.
    assert_eq!(hooks.poll(&first, &hook, &task).await.unwrap(), HookState::Succeeded);
    // A repeat after a crash, once the task stopped, finds it (no second RunTask) and judges it.
    assert_eq!(hooks.start(&first, &hook).await.unwrap(), HookState::Succeeded);
    // (moto's ListTasks without desiredStatus lists stopped tasks too, unlike ECS, which lists
    // RUNNING only: this passes in moto without the STOPPED lookup; it proves the filter works.)
    let all = clients.ecs.list_tasks().cluster("hk").send().await.unwrap();
    assert_eq!(all.task_arns().to_vec(), vec![task.clone()], "no second RunTask");
    let stopped =
        clients.ecs.list_tasks().cluster("hk").desired_status(ecs::DesiredStatus::Stopped).send().await.unwrap();
    assert_eq!(stopped.task_arns().to_vec(), vec![task.clone()]);

    // A retry of the Promotion (attempt 1) runs the hook again rather than reusing attempt 0's.
    let retry = run("uid-hk", 1, Duration::from_secs(600));
    let HookState::Running(again) = hooks.start(&retry, &hook).await.unwrap() else {
        panic!("a new attempt starts a new task")
    };
    assert_ne!(again, task);
    let all = clients.ecs.list_tasks().cluster("hk").send().await.unwrap();
    assert_eq!(all.task_arns().len(), 2);
}

/// Issue "Safety under partition" §3: an ECS hook task that outlives its timeout is stopped and
/// fails the hook. moto's tasks have no `createdAt`: DescribeTasks is answered through the proxy
/// as ECS would for a task created 20 minutes ago; StopTask reaches moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_hook_task_past_its_timeout_is_stopped_and_fails() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let hook = hook_service(&clients, "hk2").await;
    let proxy = FaultProxy::start(Upstream::Http(moto.url()), false).await.unwrap();
    let hooks = AwsHooks::new(static_clients(proxy.url()).await, Invocations::default());
    let r = run("uid-hk2", 0, Duration::from_secs(600));
    let HookState::Running(task) = hooks.start(&r, &hook).await.unwrap() else { panic!("an ECS hook starts a task") };
    // Within its timeout (moto's own answer, no createdAt): still running, not stopped.
    assert_eq!(hooks.poll(&r, &hook, &task).await.unwrap(), HookState::Running(task.clone()));

    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 1200;
    let running = serde_json::json!({"tasks": [{"taskArn": task, "lastStatus": "RUNNING", "createdAt": created}], "failures": []});
    proxy.add(Rule::always(
        Match { target: Some("DescribeTasks".into()), ..Match::any() },
        Action::fail_json(200, &running.to_string()),
    ));
    let HookState::Failed(why) = hooks.poll(&r, &hook, &task).await.unwrap() else {
        panic!("the hook fails at its timeout")
    };
    assert!(why.contains("did not finish within 10m") && why.contains(&task), "{why}");
    let stops: Vec<Logged> = proxy.log().into_iter().filter(|e| e.target.contains("StopTask")).collect();
    assert_eq!(stops.len(), 1, "kiln stopped the task");
    let described = clients.ecs.describe_tasks().cluster("hk2").tasks(&task).send().await.unwrap();
    assert_eq!(described.tasks()[0].desired_status(), Some("STOPPED"), "moto has it stopping");
}

/// Issue "Safety under partition" §3: a hook task runs the way its service's tasks run. The
/// fixture's service is EXTERNAL: its network configuration lives on the primary task set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_hook_task_gets_its_services_network_configuration() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let f = EcsFixture::create(&account, "hk3", "app").await.unwrap();
    let proxy = FaultProxy::start(Upstream::Http(moto.url()), false).await.unwrap();
    let via = static_clients(proxy.url()).await;
    hook_task_definition(&via, "hk3-migrate").await;
    // moto cannot start awsvpc tasks: RunTask is answered as ECS would.
    let arn = format!("arn:aws:ecs:{REGION}:{DEFAULT_ACCOUNT}:task/{}/0123456789abcdef", f.cluster);
    proxy.add(Rule::always(
        Match { target: Some("RunTask".into()), ..Match::any() },
        Action::fail_json(200, &serde_json::json!({"tasks": [{"taskArn": arn}], "failures": []}).to_string()),
    ));
    let hook = HookTarget::EcsTask {
        cluster: f.cluster.clone(),
        service: f.service.clone(),
        task_definition: "hk3-migrate".into(),
    };
    let hooks = AwsHooks::new(via, Invocations::default());
    let state = hooks.start(&run("uid-hk3", 0, Duration::from_secs(600)), &hook).await.unwrap();
    assert_eq!(state, HookState::Running(arn));
    let sent: Vec<serde_json::Value> = proxy
        .log()
        .into_iter()
        .filter(|e| e.target.contains("RunTask"))
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let net = &sent[0]["networkConfiguration"]["awsvpcConfiguration"];
    let mut subnets: Vec<String> =
        net["subnets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    subnets.sort();
    let mut want = f.vpc.subnets.clone();
    want.sort();
    assert_eq!(subnets, want, "{}", sent[0]);
    assert_eq!(net["securityGroups"][0], f.vpc.security_group.as_str());
    assert_eq!(sent[0]["launchType"], "FARGATE");
    assert_eq!(sent[0]["startedBy"], "kiln-pre-0-uidhk3");
}

/// Issue "Safety under partition" §3: a Lambda hook never holds the caller: sixteen hooks whose
/// functions have not answered all report "running" at once, and each is judged when its answer
/// comes. A function that outlives the hook's timeout fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_hooks_run_in_the_background_and_report_when_they_answer() {
    let stub = Stub::start(|_, _| (200, "application/json", r#"{"ok":true}"#.to_string()));
    let proxy = FaultProxy::start(Upstream::Http(stub.url()), false).await.unwrap();
    proxy.add(Rule::always(Match::path("/invocations"), Action::Hold(When::Before)));
    let invocations = Invocations::default();
    let hooks = AwsHooks::new(static_clients(proxy.url()).await, invocations.clone());
    let smoke = HookTarget::Lambda { function: "smoke".into() };
    let uids: Vec<String> = (0..16).map(|i| format!("uid-l{i:02}")).collect();
    for uid in &uids {
        let r = run(uid, 0, Duration::from_secs(600));
        let start = hooks.start(&r, &smoke);
        let state = tokio::time::timeout(Duration::from_secs(20), start)
            .await
            .unwrap_or_else(|_| panic!("start waited for the function to answer"))
            .unwrap();
        assert!(matches!(state, HookState::Running(_)), "{state:?}");
    }
    proxy.wait_holding(16, Duration::from_secs(30)).await.unwrap();
    let first = run(&uids[0], 0, Duration::from_secs(600));
    let HookState::Running(handle) = hooks.start(&first, &smoke).await.unwrap() else { panic!("still running") };
    assert_eq!(hooks.poll(&first, &smoke, &handle).await.unwrap(), HookState::Running(handle.clone()));
    let payload: serde_json::Value = serde_json::from_str(&proxy.log()[0].body).unwrap();
    assert_eq!(payload["kiln"]["hook"], "preTraffic", "{payload}");

    proxy.clear();
    proxy.release();
    for uid in &uids {
        let r = run(uid, 0, Duration::from_secs(600));
        answered(&invocations, &r.key()).await;
        assert_eq!(hooks.start(&r, &smoke).await.unwrap(), HookState::Succeeded, "{uid}");
    }
    assert_eq!(stub.requests().len(), 16, "each hook invoked once, repeats included");

    // A function that never answers fails its hook at the timeout.
    proxy.add(Rule::always(Match::path("/functions/slow/"), Action::BlackHole));
    let slow = HookTarget::Lambda { function: "slow".into() };
    let r = run("uid-slow", 0, Duration::from_secs(1));
    assert_eq!(hooks.start(&r, &slow).await.unwrap(), HookState::Running(r.key()));
    answered(&invocations, &r.key()).await;
    let state = hooks.start(&r, &slow).await.unwrap();
    assert_eq!(state, HookState::Failed("hook function slow did not finish within 1s".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_written_once_and_immutable() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    object_lock_bucket(&clients, "kiln-evidence-test", 365).await.unwrap();
    let store = S3Evidence::new(clients.clone(), "kiln-evidence-test");
    let body = br#"{"kind":"kiln.dev/evidence","outcome":"Succeeded"}"#;
    let key = "prod/web/promo-1/abc123.json";
    let uri = store.put(key, body, "abc123").await.unwrap();
    assert_eq!(uri, "s3://kiln-evidence-test/prod/web/promo-1/abc123.json");
    assert_eq!(store.put(key, body, "abc123").await.unwrap(), uri, "the same record again is a no-op");
    let err = store.put(key, b"{}", "def456").await.unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    let got = clients.s3.get_object().bucket("kiln-evidence-test").key(key).send().await.unwrap();
    assert_eq!(got.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"), "the bucket's retention applies");
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body);

    // A bucket without Object Lock (or without a default retention) is refused: records there
    // could be changed or deleted.
    clients.s3.create_bucket().bucket("kiln-evidence-plain").send().await.unwrap();
    let plain = S3Evidence::new(clients.clone(), "kiln-evidence-plain");
    let err = plain.put(key, body, "abc123").await.unwrap_err();
    assert!(err.to_string().starts_with("evidence bucket kiln-evidence-plain has no Object Lock"), "{err}");
    assert_eq!(err.class(), kiln_aws::ErrorClass::SpecWrong);
    clients
        .s3
        .create_bucket()
        .bucket("kiln-evidence-lock-only")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let lock_only = S3Evidence::new(clients.clone(), "kiln-evidence-lock-only");
    let err = lock_only.put(key, body, "abc123").await.unwrap_err();
    assert!(err.to_string().contains("has Object Lock without a default retention rule"), "{err}");
    let listed = clients.s3.list_objects_v2().bucket("kiln-evidence-plain").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing written to a bucket that was refused");

    let missing = S3Evidence::new(clients, "kiln-no-such-bucket");
    let err = missing.put(key, body, "abc123").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "evidence bucket kiln-no-such-bucket not found in account 123456789012 region us-east-1"
    );
}
