//! ECS task hooks and S3 evidence against moto (Lambda hooks need a function runtime moto does
//! not have here: tested against the fake).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_ecs::types as ecs;
use kiln_aws::evidence::{EvidenceStore, S3Evidence};
use kiln_aws::hooks::{AwsHooks, HookRunner, HookState, HookTarget};
use kiln_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_task_hook_runs_once_and_reports_the_stop() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    clients.ecs.create_cluster().cluster_name("hk").send().await.unwrap();
    clients
        .ecs
        .register_task_definition()
        .family("hk-migrate")
        // moto fails building awsvpc task network interfaces; bridge keeps tasks simple here.
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
    let hook = HookTarget::EcsTask {
        cluster: "hk".into(),
        task_definition: "hk-migrate".into(),
        network: None,
        launch_type: ecs::LaunchType::Fargate,
    };
    let hooks = AwsHooks::new(clients.clone());
    let HookState::Running(task) = hooks.start("uid-hk", "preTraffic", &hook, Duration::from_secs(60)).await.unwrap()
    else {
        panic!("an ECS hook starts a task")
    };
    // A repeat finds the running task instead of starting another.
    assert_eq!(
        hooks.start("uid-hk", "preTraffic", &hook, Duration::from_secs(60)).await.unwrap(),
        HookState::Running(task.clone())
    );
    let listed = clients.ecs.list_tasks().cluster("hk").send().await.unwrap();
    assert_eq!(listed.task_arns().len(), 1);

    assert_eq!(hooks.poll(&hook, &task).await.unwrap(), HookState::Running(task.clone()));
    clients.ecs.stop_task().cluster("hk").task(&task).reason("done").send().await.unwrap();
    // moto reports exit code 0 for every stopped container; the failure verdict (non-zero or
    // missing exit codes) is unit-tested on SDK values in hooks.rs.
    assert_eq!(hooks.poll(&hook, &task).await.unwrap(), HookState::Succeeded);
    // A repeat after a crash, once the task stopped, finds it (no second RunTask) and judges it.
    assert_eq!(
        hooks.start("uid-hk", "preTraffic", &hook, Duration::from_secs(60)).await.unwrap(),
        HookState::Succeeded
    );
    // (moto's ListTasks without desiredStatus lists stopped tasks too, unlike ECS, which lists
    // RUNNING only: this passes in moto without the STOPPED lookup; it proves the filter works.)
    let all = clients.ecs.list_tasks().cluster("hk").send().await.unwrap();
    assert_eq!(all.task_arns().to_vec(), vec![task.clone()], "no second RunTask");
    let stopped =
        clients.ecs.list_tasks().cluster("hk").desired_status(ecs::DesiredStatus::Stopped).send().await.unwrap();
    assert_eq!(stopped.task_arns().to_vec(), vec![task.clone()]);
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
