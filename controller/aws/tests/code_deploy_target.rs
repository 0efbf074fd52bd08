//! ECS strategy codeDeploy (`EcsCodeDeploy`) on moto's ECS: with `FakeCodeDeploy` (deployments
//! that progress when the test says so, StopDeployment — which moto lacks), the test playing
//! CodeDeploy's part in ECS (replacement task set with `externalId` = deployment ID, made
//! primary, original removed); and with moto's CodeDeploy (`CodeDeployEcs`) for the create path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_sdk_codedeploy::types as cd;
use aws_sdk_ecs::types as ecs;
use kiln_api::promotion::PromotionStatus;
use kiln_api::release::CodeDeploySettings;
use kiln_aws::codedeploy::{CodeDeploy, CodeDeployEcs, DeploymentState};
use kiln_aws::credentials::Clients;
use kiln_aws::ecs::EcsService;
use kiln_aws::ecs::code_deploy::{DEPLOYMENT_TAG, EcsCodeDeploy, RESTORE_DEPLOYMENT_TAG};
use kiln_aws::execute::traffic_action;
use kiln_aws::fake::FakeCodeDeploy;
use kiln_aws::traffic::TrafficTarget;
use kiln_aws::{AwsError, ErrorClass};
use kiln_core::machine::{Action, Outcome};
use kiln_testkit::{DIGEST, EcsFixture, Moto};

const CLUSTER: &str = "cd";
const SERVICE: &str = "web";
const UID: &str = "uid-cd";

/// A cluster and a CODE_DEPLOY service running `cd-web:1` from a PRIMARY task set (as CodeDeploy
/// leaves it after an earlier deployment `d-ORIGINAL`). Returns the task definition ARN.
async fn service(clients: &Clients, controller: ecs::DeploymentControllerType) -> String {
    clients.ecs.create_cluster().cluster_name(CLUSTER).send().await.unwrap();
    let td = clients
        .ecs
        .register_task_definition()
        .family("cd-web")
        .requires_compatibilities(ecs::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ecs::ContainerDefinition::builder()
                .name("app")
                .image("registry.example/app:v1")
                .memory(256)
                .port_mappings(ecs::PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .container_definitions(
            ecs::ContainerDefinition::builder().name("sidecar").image(EcsFixture::SIDECAR_IMAGE).memory(128).build(),
        )
        .send()
        .await
        .unwrap();
    let v1 = td.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    clients
        .ecs
        .create_service()
        .cluster(CLUSTER)
        .service_name(SERVICE)
        .task_definition(&v1)
        .desired_count(0)
        .deployment_controller(ecs::DeploymentController::builder().r#type(controller.clone()).build().unwrap())
        .send()
        .await
        .unwrap();
    if controller == ecs::DeploymentControllerType::CodeDeploy {
        codedeploy_swaps_to(clients, &v1, "d-ORIGINAL").await;
    }
    v1
}

/// What CodeDeploy does in ECS when deployment `id` of `td` starts: a replacement task set.
async fn codedeploy_starts(clients: &Clients, td: &str, id: &str) -> String {
    let ts = clients
        .ecs
        .create_task_set()
        .cluster(CLUSTER)
        .service(SERVICE)
        .task_definition(td)
        .external_id(id)
        .launch_type(ecs::LaunchType::Fargate)
        .scale(ecs::Scale::builder().unit(ecs::ScaleUnit::Percent).value(100.0).build())
        .send()
        .await
        .unwrap();
    ts.task_set().unwrap().task_set_arn().unwrap().to_string()
}

/// What CodeDeploy does in ECS when deployment `id` of `td` completes: its task set primary, every
/// other task set removed.
async fn codedeploy_swaps_to(clients: &Clients, td: &str, id: &str) {
    let existing = task_sets(clients).await;
    let new = match existing.iter().find(|(_, t, _, _)| t == td) {
        Some((arn, _, _, _)) => arn.clone(),
        None => codedeploy_starts(clients, td, id).await,
    };
    clients
        .ecs
        .update_service_primary_task_set()
        .cluster(CLUSTER)
        .service(SERVICE)
        .primary_task_set(&new)
        .send()
        .await
        .unwrap();
    for (arn, _, _, _) in task_sets(clients).await.into_iter().filter(|(arn, _, _, _)| *arn != new) {
        clients.ecs.delete_task_set().cluster(CLUSTER).service(SERVICE).task_set(arn).force(true).send().await.unwrap();
    }
}

/// What CodeDeploy's reroute does in ECS: task set `arn` becomes primary (the other stays).
async fn make_primary(clients: &Clients, arn: &str) {
    clients
        .ecs
        .update_service_primary_task_set()
        .cluster(CLUSTER)
        .service(SERVICE)
        .primary_task_set(arn)
        .send()
        .await
        .unwrap();
}

/// What CodeDeploy's rollback does in ECS: the task sets running `td` removed.
async fn codedeploy_removes(clients: &Clients, td: &str) {
    for (arn, _, _, _) in task_sets(clients).await.into_iter().filter(|(_, t, _, _)| t == td) {
        clients.ecs.delete_task_set().cluster(CLUSTER).service(SERVICE).task_set(arn).force(true).send().await.unwrap();
    }
}

/// The service's task sets as (ARN, task definition, status, externalId), from DescribeServices.
async fn task_sets(clients: &Clients) -> Vec<(String, String, String, String)> {
    let out = clients.ecs.describe_services().cluster(CLUSTER).services(SERVICE).send().await.unwrap();
    out.services()[0]
        .task_sets()
        .iter()
        .map(|t| {
            (
                t.task_set_arn().unwrap_or_default().to_string(),
                t.task_definition().unwrap_or_default().to_string(),
                t.status().unwrap_or_default().to_string(),
                t.external_id().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The primary task set's task definition.
async fn primary_td(clients: &Clients) -> String {
    task_sets(clients).await.into_iter().find(|(_, _, s, _)| s == "PRIMARY").map(|t| t.1).unwrap()
}

async fn tag(clients: &Clients, td: &str, key: &str) -> Option<String> {
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(td)
        .include(ecs::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    out.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string)
}

fn settings(app: &str) -> CodeDeploySettings {
    CodeDeploySettings {
        application: app.into(),
        deployment_group: "web-dg".into(),
        deployment_config: Some("CodeDeployDefault.ECSAllAtOnce".into()),
        container_port: 8080,
    }
}

/// A fresh adapter (no memory of earlier calls: what a restarted controller builds).
fn target(clients: &Clients, deployer: Arc<dyn CodeDeploy>, app: &str) -> EcsCodeDeploy {
    EcsCodeDeploy::new(
        clients.clone(),
        Some("arn:aws:iam::123456789012:role/kiln".into()),
        UID,
        EcsService {
            cluster: CLUSTER.into(),
            service: SERVICE.into(),
            container: "app".into(),
            image: format!("registry.example/app@{DIGEST}"),
            sidecars: Vec::new(),
            mark: None,
        },
        settings(app),
        deployer,
    )
}

fn wait_message(r: Result<(), AwsError>) -> String {
    match r {
        Err(e) if e.class() == ErrorClass::Wait => e.to_string(),
        other => panic!("expected Wait, got {other:?}"),
    }
}

fn spec_wrong(r: Result<(), AwsError>) -> String {
    match r {
        Err(e) if e.class() == ErrorClass::SpecWrong => e.to_string(),
        other => panic!("expected SpecWrong, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_follows_the_deployment_until_it_succeeds_and_a_repeat_creates_nothing() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let v1 = service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");

    let snap = t.snapshot().await.unwrap();
    let e = snap.ecs.clone().unwrap();
    assert_eq!(e.task_definition.as_deref(), Some(v1.as_str()));
    assert_eq!(e.primary_task_set, task_sets(&clients).await.first().map(|t| t.0.clone()));
    assert!(e.listener_weights.is_empty() && e.listener_or_rule_arn.is_none());

    let deployed = t.prepare().await.unwrap();
    assert_eq!(deployed.code_deploy_deployment, None, "prepare creates no deployment (no traffic yet)");
    assert_eq!(fake.count(), 0);
    let v2 = deployed.task_definition.clone().unwrap();
    assert!(v2.ends_with("task-definition/cd-web:2"), "{v2}");
    assert_eq!(t.prepare().await.unwrap(), deployed, "a repeat registers nothing new");

    // The core's view: ShiftTraffic is "still in progress" while CodeDeploy works.
    let status = PromotionStatus { deployed: Some(deployed.clone()), ..PromotionStatus::default() };
    let shift = Action::ShiftTraffic { step: 0, weight: 100 };
    match traffic_action(&t, &shift, &status).await {
        Some(Ok(Outcome::InProgress(m))) => {
            assert!(m.contains("CodeDeploy deployment d-000000001") && m.contains("still in progress"), "{m}")
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
    assert_eq!(fake.created(), vec![("d-000000001".to_string(), UID.to_string(), v2.clone())]);
    assert_eq!(tag(&clients, &v2, DEPLOYMENT_TAG).await.as_deref(), Some("d-000000001"));

    // CodeDeploy starts the replacement; a restarted controller asks again: same deployment.
    codedeploy_starts(&clients, &v2, "d-000000001").await;
    let t = target(&clients, fake.clone(), "web");
    wait_message(t.shift(&deployed, 100).await);
    assert_eq!(fake.count(), 1);

    // CodeDeploy says Succeeded but ECS does not show the new task definition serving: refused.
    fake.set_state("d-000000001", DeploymentState::Succeeded);
    let m = spec_wrong(t.shift(&deployed, 100).await);
    assert!(m.contains("succeeded but ECS service web runs") && m.contains("cd-web:1"), "{m}");

    codedeploy_swaps_to(&clients, &v2, "d-000000001").await;
    t.shift(&deployed, 100).await.unwrap();
    assert!(matches!(traffic_action(&t, &shift, &status).await, Some(Ok(Outcome::Done))));
    // A repeat after success (the core crashed before recording the step) creates nothing:
    // CodeDeploy's own lookup only finds active deployments, the tag finds this one.
    let t = target(&clients, fake.clone(), "web");
    t.shift(&deployed, 100).await.unwrap();
    t.finalize(&deployed).await.unwrap();
    t.finalize(&deployed).await.unwrap();
    assert_eq!(fake.count(), 1);
    assert_eq!(primary_td(&clients).await, v2);
    assert!(fake.stopped().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deployment_fails_the_step_with_its_reason_and_is_not_retried() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");
    let deployed = t.prepare().await.unwrap();
    wait_message(t.shift(&deployed, 100).await);
    let id = fake.created()[0].0.clone();
    fake.set_state(&id, DeploymentState::Failed(format!("deployment {id} failed: the BeforeAllowTraffic hook failed")));

    let status = PromotionStatus { deployed: Some(deployed.clone()), ..PromotionStatus::default() };
    match traffic_action(&t, &Action::ShiftTraffic { step: 0, weight: 100 }, &status).await {
        Some(Ok(Outcome::Failed(m))) => {
            assert!(m.contains(&format!("CodeDeploy deployment {id}")), "{m}");
            assert!(m.contains("the BeforeAllowTraffic hook failed"), "{m}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // Repeated (the failure was not recorded): the same failure, no second deployment.
    let m = spec_wrong(target(&clients, fake.clone(), "web").shift(&deployed, 100).await);
    assert!(m.contains("the BeforeAllowTraffic hook failed"), "{m}");
    spec_wrong(t.finalize(&deployed).await);
    assert_eq!(fake.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_create_and_the_record_finds_the_deployment_again() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");
    let deployed = t.prepare().await.unwrap();
    let v2 = deployed.task_definition.clone().unwrap();

    // The deployment was created, then the controller died before tagging the task definition.
    let id = fake.create(UID, &t.request(&v2)).await.unwrap();
    assert_eq!(tag(&clients, &v2, DEPLOYMENT_TAG).await, None);
    let m = wait_message(t.shift(&deployed, 100).await);
    assert!(m.contains(&id), "{m}");
    assert_eq!(fake.count(), 1, "CodeDeploy's active-deployment lookup found it");
    assert_eq!(tag(&clients, &v2, DEPLOYMENT_TAG).await, Some(id.clone()));

    // Same crash, but the deployment completed while the controller was down: the task set
    // CodeDeploy made primary names it (externalId).
    let fake2 = Arc::new(FakeCodeDeploy::new());
    clients.ecs.untag_resource().resource_arn(&v2).tag_keys(DEPLOYMENT_TAG).send().await.unwrap();
    let id2 = fake2.create(UID, &t.request(&v2)).await.unwrap();
    fake2.set_state(&id2, DeploymentState::Succeeded);
    codedeploy_swaps_to(&clients, &v2, &id2).await;
    let t2 = target(&clients, fake2.clone(), "web");
    t2.shift(&deployed, 100).await.unwrap();
    assert_eq!(fake2.count(), 1, "a finished deployment is found through ECS, not created again");
    assert_eq!(tag(&clients, &v2, DEPLOYMENT_TAG).await, Some(id2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_stops_the_deployment_with_rollback_once() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let v1 = service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");
    let snap = t.snapshot().await.unwrap();
    let deployed = t.prepare().await.unwrap();
    let v2 = deployed.task_definition.clone().unwrap();
    wait_message(t.shift(&deployed, 100).await);
    let id = fake.created()[0].0.clone();
    // CodeDeploy created the replacement task set and rerouted production traffic to it; the
    // original task set waits for termination.
    let replacement = codedeploy_starts(&clients, &v2, &id).await;
    make_primary(&clients, &replacement).await;

    let status = PromotionStatus { previous: Some(snap.clone()), ..PromotionStatus::default() };
    match traffic_action(&t, &Action::Restore, &status).await {
        Some(Ok(Outcome::InProgress(m))) => assert!(m.contains(&format!("rollback of deployment {id}")), "{m}"),
        other => panic!("expected InProgress, got {other:?}"),
    }
    assert_eq!(fake.stopped(), vec![id.clone()]);
    // Stopped, but the replacement still serves until CodeDeploy has moved traffic back.
    let t = target(&clients, fake.clone(), "web");
    let m = wait_message(t.restore(&snap).await);
    assert!(m.contains(&format!("CodeDeploy's rollback of deployment {id}")) && m.contains(&v2), "{m}");
    assert_eq!(fake.stopped(), vec![id.clone()], "not stopped again");
    // CodeDeploy rolls back: the original primary again, the replacement removed.
    let original = task_sets(&clients).await.into_iter().find(|t| t.1 == v1).unwrap().0;
    make_primary(&clients, &original).await;
    codedeploy_removes(&clients, &v2).await;
    assert!(matches!(traffic_action(&t, &Action::Restore, &status).await, Some(Ok(Outcome::Done))));
    t.restore(&snap).await.unwrap();
    assert_eq!(fake.stopped(), vec![id], "stopped once");
    assert_eq!(fake.count(), 1, "no restore deployment: the rollback restored the service");
    assert_eq!(primary_td(&clients).await, v1);
    assert_eq!(tag(&clients, &v2, DEPLOYMENT_TAG).await, None, "a retry of the Promotion starts afresh");

    // A retry (same UID, status reset): the same task definition, a new deployment.
    let again = t.prepare().await.unwrap();
    assert_eq!(again, deployed);
    wait_message(t.shift(&again, 100).await);
    assert_eq!(fake.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_before_the_reroute_is_done_once_stopped() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let v1 = service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");
    let snap = t.snapshot().await.unwrap();
    let deployed = t.prepare().await.unwrap();
    let v2 = deployed.task_definition.clone().unwrap();
    wait_message(t.shift(&deployed, 100).await);
    codedeploy_starts(&clients, &v2, "d-000000001").await;

    wait_message(t.restore(&snap).await);
    // Production traffic never left the original task set: restored, even while CodeDeploy still
    // removes the replacement (kiln cannot delete task sets of a CODE_DEPLOY service).
    t.restore(&snap).await.unwrap();
    assert_eq!(fake.stopped(), vec!["d-000000001".to_string()]);
    assert_eq!(primary_td(&clients).await, v1);
    assert_eq!(fake.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_after_codedeploy_completed_redeploys_the_previous_task_definition_once() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let v1 = service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");
    let snap = t.snapshot().await.unwrap();
    let deployed = t.prepare().await.unwrap();
    let v2 = deployed.task_definition.clone().unwrap();
    wait_message(t.shift(&deployed, 100).await);
    let id = fake.created()[0].0.clone();
    fake.set_state(&id, DeploymentState::Succeeded);
    codedeploy_swaps_to(&clients, &v2, &id).await;
    t.shift(&deployed, 100).await.unwrap();

    // A breach during the bake: the deployment is over, stopping it rolls nothing back.
    let m = wait_message(t.restore(&snap).await);
    assert_eq!(fake.stopped(), Vec::<String>::new(), "a finished deployment is not stopped");
    let created = fake.created();
    assert_eq!(created.len(), 2);
    let (rid, ruid, rtd) = created[1].clone();
    assert_eq!((ruid.as_str(), rtd.as_str()), ("uid-cd/restore", v1.as_str()));
    assert!(m.contains(&format!("CodeDeploy deployment {rid} restoring {v1}")), "{m}");
    assert_eq!(tag(&clients, &v2, RESTORE_DEPLOYMENT_TAG).await, Some(rid.clone()));
    // Repeats (also by a restarted controller) follow the same restore deployment.
    wait_message(target(&clients, fake.clone(), "web").restore(&snap).await);
    fake.set_state(&rid, DeploymentState::Succeeded);
    let m = wait_message(t.restore(&snap).await);
    assert!(m.contains("waiting for ECS"), "{m}");
    assert_eq!(fake.count(), 2);

    codedeploy_swaps_to(&clients, &v1, &rid).await;
    t.restore(&snap).await.unwrap();
    t.restore(&snap).await.unwrap();
    assert_eq!(fake.count(), 2, "one restore deployment");
    assert_eq!(primary_td(&clients).await, v1);
    assert_eq!(tag(&clients, &v2, RESTORE_DEPLOYMENT_TAG).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_deployment_is_reported_not_repeated() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");
    let snap = t.snapshot().await.unwrap();
    let deployed = t.prepare().await.unwrap();
    let v2 = deployed.task_definition.clone().unwrap();
    wait_message(t.shift(&deployed, 100).await);
    fake.set_state("d-000000001", DeploymentState::Succeeded);
    codedeploy_swaps_to(&clients, &v2, "d-000000001").await;

    wait_message(t.restore(&snap).await);
    fake.set_state("d-000000002", DeploymentState::Failed("deployment d-000000002 failed: tasks failed".into()));
    for _ in 0..2 {
        let m = spec_wrong(t.restore(&snap).await);
        assert!(m.contains("tasks failed") && m.contains("start a rollback Promotion"), "{m}");
    }
    assert_eq!(fake.count(), 2);
    assert_eq!(primary_td(&clients).await, v2, "nothing else was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_the_code_deploy_controller_is_refused() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    service(&clients, ecs::DeploymentControllerType::Ecs).await;
    let fake = Arc::new(FakeCodeDeploy::new());
    let t = target(&clients, fake.clone(), "web");
    let e = t.snapshot().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::SpecWrong);
    assert!(e.to_string().contains("uses the ECS deployment controller; strategy codeDeploy needs CODE_DEPLOY"), "{e}");
    assert_eq!(t.prepare().await.unwrap_err().class(), ErrorClass::SpecWrong);
    assert_eq!(fake.count(), 0);
}

/// With moto's CodeDeploy: the digest-pinned task definition goes into exactly one deployment's
/// AppSpec, however often shift runs (moto's deployments never progress, so shift keeps waiting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_moto_prepare_pins_the_digest_and_shift_creates_one_deployment() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let v1 = service(&clients, ecs::DeploymentControllerType::CodeDeploy).await;
    clients
        .codedeploy
        .create_application()
        .application_name("web")
        .compute_platform(cd::ComputePlatform::Ecs)
        .send()
        .await
        .unwrap();
    clients
        .codedeploy
        .create_deployment_group()
        .application_name("web")
        .deployment_group_name("web-dg")
        .service_role_arn("arn:aws:iam::123456789012:role/codedeploy")
        .deployment_style(
            cd::DeploymentStyle::builder()
                .deployment_type(cd::DeploymentType::BlueGreen)
                .deployment_option(cd::DeploymentOption::WithTrafficControl)
                .build(),
        )
        .ecs_services(cd::EcsService::builder().cluster_name(CLUSTER).service_name(SERVICE).build())
        .send()
        .await
        .unwrap();
    let api: Arc<dyn CodeDeploy> = Arc::new(CodeDeployEcs::new(clients.clone()));
    let t = target(&clients, api.clone(), "web");
    let deployed = t.prepare().await.unwrap();
    let v2 = deployed.task_definition.clone().unwrap();
    assert_ne!(v2, v1);
    assert_eq!(
        kiln_aws::ecs::container_image(&clients.ecs, &v2, "app").await.unwrap(),
        Some(format!("registry.example/app@{DIGEST}"))
    );
    assert_eq!(
        kiln_aws::ecs::container_image(&clients.ecs, &v2, "sidecar").await.unwrap().as_deref(),
        Some(EcsFixture::SIDECAR_IMAGE)
    );
    assert_eq!(t.prepare().await.unwrap(), deployed);

    let m = wait_message(t.shift(&deployed, 100).await);
    let id = tag(&clients, &v2, DEPLOYMENT_TAG).await.unwrap();
    assert!(m.contains(&format!("CodeDeploy deployment {id}")), "{m}");
    wait_message(target(&clients, api.clone(), "web").shift(&deployed, 100).await);
    // Without the record, CodeDeploy's lookup of active deployments still finds it.
    clients.ecs.untag_resource().resource_arn(&v2).tag_keys(DEPLOYMENT_TAG).send().await.unwrap();
    wait_message(t.shift(&deployed, 100).await);
    assert_eq!(tag(&clients, &v2, DEPLOYMENT_TAG).await, Some(id.clone()));

    let listed = clients
        .codedeploy
        .list_deployments()
        .application_name("web")
        .deployment_group_name("web-dg")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.deployments(), std::slice::from_ref(&id), "exactly one deployment");
    let got = clients.codedeploy.get_deployment().deployment_id(&id).send().await.unwrap();
    let info = got.deployment_info().unwrap();
    assert_eq!(info.description(), Some("kiln promotion uid-cd"));
    assert_eq!(info.deployment_config_name(), Some("CodeDeployDefault.ECSAllAtOnce"));
    let content = info.revision().unwrap().app_spec_content().unwrap().content().unwrap().to_string();
    let spec: serde_json::Value = serde_json::from_str(&content).unwrap();
    let props = &spec["Resources"][0]["TargetService"]["Properties"];
    assert_eq!(props["TaskDefinition"], v2.as_str());
    assert_eq!(props["LoadBalancerInfo"]["ContainerName"], "app");
    assert_eq!(props["LoadBalancerInfo"]["ContainerPort"], 8080);
    assert!(spec.get("Hooks").is_none(), "kiln runs its own hooks");
}
