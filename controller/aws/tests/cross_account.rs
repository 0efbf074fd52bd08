//! Three environments in three accounts via STS AssumeRole in one moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use kiln_api::release::{EcsTraffic, ListenerRef, TargetGroupRef};
use kiln_aws::credentials::{EnvironmentAws, Sessions, StsAssumeRole, session_name};
use kiln_aws::ecs::EcsService;
use kiln_aws::ecs::blue_green::EcsBlueGreen;
use kiln_aws::traffic::TrafficTarget;
use support::*;

fn env(account: &str) -> EnvironmentAws {
    EnvironmentAws {
        account_id: account.into(),
        region: REGION.into(),
        role_arn: format!("arn:aws:iam::{account}:role/kiln-deploy"),
        external_id: Some("kiln-test".into()),
    }
}

fn traffic() -> EcsTraffic {
    EcsTraffic {
        listener: ListenerRef { arn: None, load_balancer_name: Some("web-alb".into()), port: Some(80) },
        rule: None,
        blue_target_group: TargetGroupRef { name: Some("web-blue".into()), arn: None, tags: None },
        green_target_group: TargetGroupRef { name: Some("web-green".into()), arn: None, tags: None },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_environments_three_accounts_isolated() {
    let moto = Moto::start();
    let settings = moto.settings();
    let controller = settings
        .sdk_config(
            REGION,
            SharedCredentialsProvider::new(Credentials::new("AKIATESTTESTTEST", "test", None, None, "static")),
        )
        .await;
    let sessions = Sessions::new(settings, Arc::new(StsAssumeRole::new(&controller)));
    let session = session_name("web-v1.2.3-dev", "0b7c6a1e-1111");

    // The same names in every account: only isolation keeps them apart.
    let mut envs = Vec::new();
    for account in ["111111111111", "222222222222", "333333333333"] {
        let e = env(account);
        let creds = sessions.credentials(&e, &session).await.unwrap();
        let clients = sessions.clients(&e, &session).await.unwrap();
        assert_eq!(clients.scope.account_id, account);
        let f = ecs_fixture(&moto, &clients, creds.credentials.access_key_id(), "web").await;
        assert!(f.listener_arn.contains(account), "{} is in {account}", f.listener_arn);
        envs.push((e, clients, f));
    }

    let (dev_env, dev, dev_f) = &envs[0];
    let bg = EcsBlueGreen::new(
        dev.clone(),
        Some(dev_env.role_arn.clone()),
        "uid-dev",
        EcsService {
            cluster: dev_f.cluster.clone(),
            service: dev_f.service.clone(),
            container: "app".into(),
            image: format!("registry.example/app@{DIGEST}"),
        },
        traffic(),
    );
    let snap = bg.snapshot().await.unwrap();
    assert_eq!(snap.account_id.as_deref(), Some("111111111111"));
    assert_eq!(snap.role_arn.as_deref(), Some(dev_env.role_arn.as_str()));
    let deployed = bg.prepare().await.unwrap();
    bg.shift(&deployed, 10).await.unwrap();

    assert_eq!(
        listener_weights(dev, &dev_f.listener_arn).await,
        vec![(dev_f.blue_tg.clone(), 90), (dev_f.green_tg.clone(), 10)]
    );
    for (_, clients, f) in &envs[1..] {
        assert_eq!(
            listener_weights(clients, &f.listener_arn).await,
            vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)]
        );
        assert_eq!(task_sets(clients, f).await.len(), 1, "no task set created outside dev");
    }

    // A resource that exists only in dev is reported missing in prod, naming prod's account.
    let (_, prod, _) = &envs[2];
    let err = kiln_aws::elb::resolve_target_group(
        &prod.elb,
        &prod.scope,
        &TargetGroupRef { name: None, arn: Some(dev_f.green_tg.clone()), tags: None },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not found in account 333333333333 region us-east-1"), "{err}");

    bg.restore(&snap).await.unwrap();
    assert_eq!(
        listener_weights(dev, &dev_f.listener_arn).await,
        vec![(dev_f.blue_tg.clone(), 100), (dev_f.green_tg.clone(), 0)]
    );
}

/// Clients kept across a credentials expiry (a shared alarm cache lives for hours) ask
/// `Sessions` again instead of signing with expired credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_clients_reassume_the_role_when_credentials_expire() {
    let moto = Moto::start();
    // Every assumed credential is already expired: each call must fetch new ones.
    let assumer = Arc::new(kiln_aws::fake::FakeAssumeRole::new(jiff::SignedDuration::from_mins(-1)));
    let sessions = Sessions::new(moto.settings(), assumer.clone());
    let clients = sessions.clients(&env("111111111111"), "kiln.expiry").await.unwrap();
    assert_eq!(assumer.calls(), 1);
    for _ in 0..3 {
        clients.ecs.list_clusters().send().await.unwrap();
    }
    assert!(assumer.calls() >= 4, "AssumeRole calls: {}", assumer.calls());

    // Fresh credentials are reused by the clients.
    let assumer = Arc::new(kiln_aws::fake::FakeAssumeRole::new(jiff::SignedDuration::from_hours(1)));
    let sessions = Sessions::new(moto.settings(), assumer.clone());
    let clients = sessions.clients(&env("111111111111"), "kiln.expiry").await.unwrap();
    for _ in 0..3 {
        clients.ecs.list_clusters().send().await.unwrap();
    }
    assert_eq!(assumer.calls(), 1);
}
