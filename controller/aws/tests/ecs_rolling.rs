//! ECS rolling against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kiln_aws::ecs::EcsService;
use kiln_aws::ecs::rolling::EcsRolling;
use kiln_aws::traffic::TrafficTarget;
use kiln_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_service_and_restore_previous_task_definition() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let v1 = rolling_service(&clients, "roll", "web", "roll-web").await.unwrap();
    let service = |c: &kiln_aws::credentials::Clients| {
        let c = c.clone();
        async move {
            let out = c.ecs.describe_services().cluster("roll").services("web").send().await.unwrap();
            out.services()[0].task_definition().unwrap().to_string()
        }
    };

    let image = format!("registry.example/app@{DIGEST}");
    let r = EcsRolling::new(
        clients.clone(),
        None,
        "uid-roll",
        EcsService {
            cluster: "roll".into(),
            service: "web".into(),
            container: "app".into(),
            image: image.clone(),
            sidecars: Vec::new(),
            mark: None,
        },
    );
    let snap = r.snapshot().await.unwrap();
    let deployed = r.prepare().await.unwrap();
    assert_eq!(r.prepare().await.unwrap(), deployed, "a repeat registers nothing new");
    let v2 = deployed.task_definition.clone().unwrap();
    assert!(v2.ends_with("roll-web:2"), "{v2}");
    assert_eq!(kiln_aws::ecs::container_image(&clients.ecs, &v2, "app").await.unwrap(), Some(image));

    r.shift(&deployed, 100).await.unwrap();
    assert_eq!(service(&clients).await, v2);
    r.restore(&snap).await.unwrap();
    assert_eq!(service(&clients).await, v1);
    r.restore(&snap).await.unwrap();
    assert_eq!(service(&clients).await, v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_cluster_or_service_is_named_with_account_and_region() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let target = |cluster: &str, service: &str| {
        EcsRolling::new(
            clients.clone(),
            None,
            "uid-missing",
            EcsService {
                cluster: cluster.into(),
                service: service.into(),
                container: "app".into(),
                image: format!("registry.example/app@{DIGEST}"),
                sidecars: Vec::new(),
                mark: None,
            },
        )
    };
    let err = target("no-such-cluster", "web").snapshot().await.unwrap_err();
    assert!(err.to_string().starts_with("ECS cluster no-such-cluster not found in account"), "{err}");
    clients.ecs.create_cluster().cluster_name("empty").send().await.unwrap();
    let err = target("empty", "web").snapshot().await.unwrap_err();
    assert!(err.to_string().starts_with("ECS service web in cluster empty not found in account"), "{err}");
    assert!(err.to_string().ends_with("region us-east-1"), "{err}");
}
