//! CodeDeploy create/follow against moto (StopDeployment is not emulated: see the fake tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_codedeploy::types as cd;
use kiln_aws::codedeploy::{CodeDeploy, CodeDeployEcs, CodeDeployRequest, DeploymentState};
use kiln_testkit::*;

fn request(app: &str) -> CodeDeployRequest {
    CodeDeployRequest {
        application: app.into(),
        deployment_group: "web-dg".into(),
        deployment_config: Some("CodeDeployDefault.ECSCanary10Percent5Minutes".into()),
        task_definition: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7".into(),
        container_name: "app".into(),
        container_port: 8080,
        hooks: vec![("BeforeAllowTraffic".into(), "web-smoke".into())],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_and_followed() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    clients
        .codedeploy
        .create_application()
        .application_name("cd1")
        .compute_platform(cd::ComputePlatform::Ecs)
        .send()
        .await
        .unwrap();
    clients
        .codedeploy
        .create_deployment_group()
        .application_name("cd1")
        .deployment_group_name("web-dg")
        .service_role_arn("arn:aws:iam::123456789012:role/codedeploy")
        .deployment_style(
            cd::DeploymentStyle::builder()
                .deployment_type(cd::DeploymentType::BlueGreen)
                .deployment_option(cd::DeploymentOption::WithTrafficControl)
                .build(),
        )
        .ecs_services(cd::EcsService::builder().cluster_name("web").service_name("web").build())
        .send()
        .await
        .unwrap();
    let api = CodeDeployEcs::new(clients.clone());
    let id = api.create("uid-cd1", &request("cd1")).await.unwrap();
    assert_eq!(api.create("uid-cd1", &request("cd1")).await.unwrap(), id, "a repeat finds the deployment");
    let other = api.create("uid-cd1-retry", &request("cd1")).await.unwrap();
    assert_ne!(other, id);
    // moto's deployments never progress on their own.
    assert!(matches!(api.state(&id).await.unwrap(), DeploymentState::InProgress(_)));
    let got = clients.codedeploy.get_deployment().deployment_id(&id).send().await.unwrap();
    let content =
        got.deployment_info().unwrap().revision().unwrap().app_spec_content().unwrap().content().unwrap().to_string();
    let spec: serde_json::Value = serde_json::from_str(&content).unwrap();
    assert_eq!(spec["Resources"][0]["TargetService"]["Properties"]["LoadBalancerInfo"]["ContainerPort"], 8080);
    assert_eq!(spec["Hooks"][0]["BeforeAllowTraffic"], "web-smoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_application_is_named() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let err = CodeDeployEcs::new(clients).create("uid", &request("nope")).await.unwrap_err();
    assert_eq!(err.to_string(), "CodeDeploy application nope not found in account 123456789012 region us-east-1");
}
