//! A restore with nothing but the snapshot (the Release was deleted mid-deployment), against moto:
//! the `RestoreOnly` target `cloud::AwsCloud` builds for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kiln_api::release::{EcsTraffic, ListenerRef, TargetGroupRef};
use kiln_aws::ErrorClass;
use kiln_aws::ecs::EcsService;
use kiln_aws::ecs::blue_green::EcsBlueGreen;
use kiln_aws::ecs::rolling::EcsRolling;
use kiln_aws::lambda::alias::{LambdaAlias, LambdaCode};
use kiln_aws::restore::RestoreOnly;
use kiln_aws::traffic::TrafficTarget;
use kiln_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_weights_come_back_and_the_new_task_set_goes() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "ro1", "app").await.unwrap();
    let uid = "6f1d2c3b-1111-4222-8333-944445555666";
    let traffic = EcsTraffic {
        listener: ListenerRef { arn: Some(f.listener_arn.clone()), load_balancer_name: None, port: None },
        rule: None,
        blue_target_group: TargetGroupRef { name: Some(f.blue_tg_name.clone()), arn: None, tags: None },
        green_target_group: TargetGroupRef { name: Some(f.green_tg_name.clone()), arn: None, tags: None },
    };
    let service = EcsService {
        cluster: f.cluster.clone(),
        service: f.service.clone(),
        container: "app".into(),
        image: format!("registry.example/app@{DIGEST}"),
        sidecars: Vec::new(),
        mark: None,
    };
    let bg = EcsBlueGreen::new(clients.clone(), None, uid, service, traffic);
    let snap = bg.snapshot().await.unwrap();
    let deployed = bg.prepare().await.unwrap();
    bg.shift(&deployed, 50).await.unwrap();
    assert_eq!(f.task_sets(&clients).await.unwrap().len(), 2);

    let restore = RestoreOnly::new(clients.clone(), uid);
    restore.restore(&snap).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)]
    );
    let sets = f.task_sets(&clients).await.unwrap();
    assert_eq!(
        sets.iter().map(|t| t.arn.as_str()).collect::<Vec<_>>(),
        [f.blue_task_set.as_str()],
        "only blue is left"
    );
    // Idempotent.
    restore.restore(&snap).await.unwrap();
    // It can do nothing else.
    let err = restore.shift(&deployed, 100).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("only a restore"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_service_gets_its_task_definition_back() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let v1 = rolling_service(&clients, "ro2", "web", "ro2-web").await.unwrap();
    let rolling = EcsRolling::new(
        clients.clone(),
        None,
        "uid-ro2",
        EcsService {
            cluster: "ro2".into(),
            service: "web".into(),
            container: "app".into(),
            image: format!("registry.example/app@{DIGEST}"),
            sidecars: Vec::new(),
            mark: None,
        },
    );
    let snap = rolling.snapshot().await.unwrap();
    let deployed = rolling.prepare().await.unwrap();
    rolling.shift(&deployed, 100).await.unwrap();

    RestoreOnly::new(clients.clone(), "uid-ro2").restore(&snap).await.unwrap();
    let out = clients.ecs.describe_services().cluster("ro2").services("web").send().await.unwrap();
    assert_eq!(out.services()[0].task_definition(), Some(v1.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_alias_goes_back_and_an_incomplete_snapshot_is_refused() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let image =
        |n: u8| format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:{}", format!("{n:02x}").repeat(32));
    LambdaFixture::create_image(&account, "ro3", "live", &image(1)).await.unwrap();
    let clients = account.clients.clone();
    let alias = LambdaAlias::new(clients.clone(), None, "uid-ro3", "ro3", "live", LambdaCode::Image { uri: image(2) });
    let snap = alias.snapshot().await.unwrap();
    let deployed = alias.prepare().await.unwrap();
    alias.shift(&deployed, 100).await.unwrap();
    assert_eq!(lambda_alias(&clients, "ro3", "live").await.unwrap(), AliasState::on("2"));

    RestoreOnly::new(clients.clone(), "uid-ro3").restore(&snap).await.unwrap();
    assert_eq!(lambda_alias(&clients, "ro3", "live").await.unwrap(), AliasState::on("1"));

    // A snapshot that does not name the function cannot be restored without the Release.
    let mut unnamed = snap.clone();
    if let Some(l) = unnamed.lambda.as_mut() {
        l.function_name = None;
    }
    let err = RestoreOnly::new(clients.clone(), "uid-ro3").restore(&unnamed).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("does not record the Lambda function and alias"), "{err}");
}
