//! Three environments in three accounts via STS AssumeRole in one moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use kiln_api::environment::AwsTarget;
use kiln_api::fixtures;
use kiln_api::release::{EcsTraffic, TargetGroupRef};
use kiln_aws::credentials::{EnvironmentAws, Sessions, StsAssumeRole, session_name};
use kiln_aws::ecs::EcsService;
use kiln_aws::ecs::blue_green::EcsBlueGreen;
use kiln_aws::traffic::TrafficTarget;
use kiln_testkit::*;

fn env(account: &str) -> EnvironmentAws {
    EnvironmentAws::from_spec(&AwsTarget { external_id: Some("kiln-test".into()), ..fixtures::aws_target(account) })
}

fn traffic() -> EcsTraffic {
    fixtures::ecs_traffic("web")
}

/// The controller's own identity (static test keys) assuming each environment's role.
async fn controller_sessions(moto: &Moto) -> Sessions {
    let settings = moto.settings();
    let controller = settings
        .sdk_config(
            REGION,
            SharedCredentialsProvider::new(Credentials::new("AKIATESTTESTTEST", "test", None, None, "static")),
        )
        .await;
    Sessions::new(settings, Arc::new(StsAssumeRole::new(&controller)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_environments_three_accounts_isolated() {
    let moto = Moto::start();
    let sessions = controller_sessions(&moto).await;
    let session = session_name("web-v1.2.3-dev", "0b7c6a1e-1111");

    // The same names in every account: only isolation keeps them apart.
    let mut envs = Vec::new();
    for account in ["111111111111", "222222222222", "333333333333"] {
        let e = env(account);
        // The fixture is made through the test kit's own session on the same role; kiln acts
        // through the controller's sessions.
        let fixture_account = Account::assume(&moto, account, REGION).await.unwrap();
        let f = EcsFixture::create(&fixture_account, "web", "app").await.unwrap();
        let clients = sessions.clients(&e, &session).await.unwrap();
        assert_eq!(clients.scope.account_id, account);
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
            sidecars: Vec::new(),
            mark: None,
        },
        traffic(),
    );
    let snap = bg.snapshot().await.unwrap();
    assert_eq!(snap.account_id.as_deref(), Some("111111111111"));
    assert_eq!(snap.role_arn.as_deref(), Some(dev_env.role_arn.as_str()));
    let deployed = bg.prepare().await.unwrap();
    bg.shift(&deployed, 10).await.unwrap();

    assert_eq!(
        listener_weights(dev, &dev_f.listener_arn).await.unwrap(),
        vec![(dev_f.blue_tg.clone(), 90), (dev_f.green_tg.clone(), 10)]
    );
    for (_, clients, f) in &envs[1..] {
        assert_eq!(
            listener_weights(clients, &f.listener_arn).await.unwrap(),
            vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)]
        );
        assert_eq!(f.task_sets(clients).await.unwrap().len(), 1, "no task set created outside dev");
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
        listener_weights(dev, &dev_f.listener_arn).await.unwrap(),
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

fn lambda_image(n: u8) -> String {
    format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:{}", format!("{n:02x}").repeat(32))
}

/// Lambda aliases and alarms, like ECS, are per environment: the same function, alias and alarm
/// names in three accounts; moving dev's alias and breaching dev's alarm leave stg and prod alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_aliases_and_alarms_isolated_across_three_accounts() {
    use kiln_aws::lambda::alias::{LambdaAlias, LambdaCode};
    use kiln_aws::signals::AlarmCaches;
    use kiln_aws::signals::cloudwatch::CloudWatch;
    use kiln_core::signals::AlarmState;

    let moto = Moto::start();
    let sessions = controller_sessions(&moto).await;
    let session = session_name("api-v2-dev", "5d1f0c2a-2222");

    let mut envs = Vec::new();
    for account in ["111111111111", "222222222222", "333333333333"] {
        let e = env(account);
        let fixture_account = Account::assume(&moto, account, REGION).await.unwrap();
        let function = LambdaFixture::create_image(&fixture_account, "api", "live", &lambda_image(1)).await.unwrap();
        assert!(function.role_arn.contains(account), "{} is in {account}", function.role_arn);
        assert!(function.arn.contains(account), "{} is in {account}", function.arn);
        let clients = sessions.clients(&e, &session).await.unwrap();
        put_alarm(&clients, "api-errors").await.unwrap();
        set_alarm_state(&clients, "api-errors", "OK").await.unwrap();
        envs.push((e, clients));
    }

    let alias_of = |clients: &kiln_aws::credentials::Clients| {
        let clients = clients.clone();
        async move { lambda_alias(&clients, "api", "live").await.unwrap() }
    };

    // dev: new version, alias weighted 10% to it, and its alarm breached.
    let (dev_env, dev) = &envs[0];
    let target = LambdaAlias::new(
        dev.clone(),
        Some(dev_env.role_arn.clone()),
        "uid-api-dev",
        "api",
        "live",
        LambdaCode::Image { uri: lambda_image(2) },
    );
    let snap = target.snapshot().await.unwrap();
    assert_eq!(snap.account_id.as_deref(), Some("111111111111"));
    let deployed = target.prepare().await.unwrap();
    assert_eq!(deployed.lambda_version.as_deref(), Some("2"));
    target.shift(&deployed, 10).await.unwrap();
    set_alarm_state(dev, "api-errors", "ALARM").await.unwrap();

    assert_eq!(alias_of(dev).await, AliasState::weighted("1", "2", 0.1));
    let caches = AlarmCaches::new(std::time::Duration::ZERO);
    let names = vec!["api-errors".to_string()];
    for (i, (_, clients)) in envs.iter().enumerate() {
        let source = Arc::new(CloudWatch::new(clients.cloudwatch.clone(), clients.scope.clone()).without_history());
        let cache = caches.get(&clients.scope, || source.clone() as Arc<dyn kiln_aws::signals::AlarmSource>).await;
        assert_eq!(cache.scope().account_id, clients.scope.account_id);
        let read = cache.read(&names, &[], None).await.unwrap();
        assert_eq!(read.alarms.len(), 1);
        let expected = if i == 0 { AlarmState::Alarm } else { AlarmState::Ok };
        assert_eq!(read.alarms[0].state, expected, "api-errors in {}", clients.scope.account_id);
        if i > 0 {
            // No version published, alias untouched outside dev.
            assert_eq!(alias_of(clients).await, AliasState::on("1"));
            let versions = lambda_versions(clients, "api").await.unwrap();
            assert_eq!(versions, ["$LATEST", "1"], "in {}", clients.scope.account_id);
        }
    }

    target.shift(&deployed, 100).await.unwrap();
    assert_eq!(alias_of(dev).await, AliasState::on("2"));
    for (_, clients) in &envs[1..] {
        assert_eq!(alias_of(clients).await, AliasState::on("1"));
    }
    target.restore(&snap).await.unwrap();
    assert_eq!(alias_of(dev).await, AliasState::on("1"));
}

/// Issue "Tenancy and release integrity" §1: moto checks no IAM, so this asserts what kiln sends
/// STS (through the fault proxy's log): a namespace given its own role in the Environment's
/// tenants assumes that role, with the namespace and environment as session tags when the
/// Environment asks for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_assumes_its_tenant_role_with_session_tags() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(Upstream::Http(moto.url()), false).await.unwrap();
    let settings = kiln_aws::credentials::AwsSettings::for_endpoint(proxy.url());
    let controller = settings
        .sdk_config(
            REGION,
            SharedCredentialsProvider::new(Credentials::new("AKIATESTTESTTEST", "test", None, None, "static")),
        )
        .await;
    let sessions = Sessions::new(settings, Arc::new(StsAssumeRole::new(&controller)));
    let mut spec = fixtures::environment("222222222222", &[]);
    spec.aws.session_tags = true;
    spec.tenants = Some(vec![kiln_api::environment::Tenant {
        namespaces: vec!["team-api".into()],
        resources: vec!["arn:aws:lambda:*:222222222222:function:api-*".into()],
        role_arn: Some("arn:aws:iam::222222222222:role/kiln-team-api".into()),
    }]);
    let env = EnvironmentAws::for_namespace("stg", &spec, "team-api");
    let clients = sessions.clients(&env, &session_name("api-v2-stg", "5f1e2d3c-4444")).await.unwrap();
    assert_eq!(clients.scope.account_id, "222222222222");

    let assume: Vec<String> =
        proxy.log().into_iter().filter(|e| e.body.contains("Action=AssumeRole")).map(|e| e.body).collect();
    assert_eq!(assume.len(), 1, "{assume:?}");
    let body = &assume[0];
    for part in [
        "RoleArn=arn%3Aaws%3Aiam%3A%3A222222222222%3Arole%2Fkiln-team-api",
        "Tags.member.1.Key=kiln-namespace",
        "Tags.member.1.Value=team-api",
        "Tags.member.2.Key=kiln-environment",
        "Tags.member.2.Value=stg",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }
}
