//! ECS blue/green by target-group weights against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kiln_api::release::{EcsTraffic, ListenerRef, TargetGroupRef};
use kiln_aws::ErrorClass;
use kiln_aws::ecs::EcsService;
use kiln_aws::ecs::blue_green::EcsBlueGreen;
use kiln_aws::traffic::TrafficTarget;
use kiln_testkit::*;

fn by_name(prefix: &str) -> EcsTraffic {
    EcsTraffic {
        listener: ListenerRef { arn: None, load_balancer_name: Some(format!("{prefix}-alb")), port: Some(80) },
        rule: None,
        blue_target_group: TargetGroupRef { name: Some(format!("{prefix}-blue")), arn: None, tags: None },
        green_target_group: TargetGroupRef {
            name: None,
            arn: None,
            tags: Some([("kiln.test/color".to_string(), format!("{prefix}-green"))].into()),
        },
    }
}

fn image() -> String {
    format!("registry.example/app@{DIGEST}")
}

fn service(f: &EcsFixture) -> EcsService {
    EcsService {
        cluster: f.cluster.clone(),
        service: f.service.clone(),
        container: "app".into(),
        image: image(),
        sidecars: Vec::new(),
        mark: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_shift_and_restore_exactly() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bg1", "app").await.unwrap();
    let uid = "0b7c6a1e-1111-4222-8333-944445555666";
    let bg = EcsBlueGreen::new(clients.clone(), None, uid, service(&f), by_name("bg1"));

    let snap = bg.snapshot().await.unwrap();
    let ecs = snap.ecs.clone().unwrap();
    assert_eq!(ecs.primary_task_set.as_deref(), Some(f.blue_task_set.as_str()));
    assert_eq!(ecs.task_definition.as_deref(), Some(f.task_definition.as_str()));
    let containers: Vec<(String, String)> = ecs.containers.iter().map(|c| (c.name.clone(), c.image.clone())).collect();
    assert_eq!(
        containers,
        [
            ("app".to_string(), EcsFixture::BASELINE_IMAGE.to_string()),
            ("sidecar".to_string(), EcsFixture::SIDECAR_IMAGE.to_string())
        ],
        "the snapshot records what ran"
    );
    assert_eq!(ecs.listener_or_rule_arn.as_deref(), Some(f.listener_arn.as_str()));
    let start = vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)];
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), start);

    let deployed = bg.prepare().await.unwrap();
    let td = deployed.task_definition.clone().unwrap();
    assert_ne!(td, f.task_definition);
    // Only the named container's image changed, to the digest.
    let app = kiln_aws::ecs::container_image(&clients.ecs, &td, "app").await.unwrap();
    assert_eq!(app.as_deref(), Some(image().as_str()));
    let sidecar = kiln_aws::ecs::container_image(&clients.ecs, &td, "sidecar").await.unwrap();
    assert_eq!(
        sidecar.as_deref(),
        Some(EcsFixture::SIDECAR_IMAGE),
        "a container the Release does not list is unchanged"
    );
    let green = deployed.task_set.clone().unwrap();

    // A repeat (crash between the call and the status write) finds what exists.
    let again = bg.prepare().await.unwrap();
    assert_eq!(again, deployed);
    let sets = task_set_rows(&clients, &f).await;
    assert_eq!(sets.len(), 2, "{sets:?}");
    assert!(sets.iter().any(|(id, _, ext)| *id == green && ext == uid));

    bg.shift(&deployed, 10).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 90), (f.green_tg.clone(), 10)]
    );
    bg.shift(&deployed, 10).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 90), (f.green_tg.clone(), 10)]
    );
    bg.shift(&deployed, 100).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 0), (f.green_tg.clone(), 100)]
    );

    bg.restore(&snap).await.unwrap();
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), start);
    let after = task_set_rows(&clients, &f).await;
    assert_eq!(after, vec![(f.blue_task_set.clone(), "PRIMARY".to_string(), "initial".to_string())]);

    // Restoring twice changes nothing.
    bg.restore(&snap).await.unwrap();
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), start);
    assert_eq!(task_set_rows(&clients, &f).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_makes_green_primary_and_retires_blue() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bg2", "app").await.unwrap();
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg2", service(&f), by_name("bg2"));
    let deployed = bg.prepare().await.unwrap();
    bg.shift(&deployed, 100).await.unwrap();
    bg.finalize(&deployed).await.unwrap();
    bg.finalize(&deployed).await.unwrap();
    let sets = task_set_rows(&clients, &f).await;
    assert_eq!(sets, vec![(deployed.task_set.clone().unwrap(), "PRIMARY".to_string(), "uid-bg2".to_string())]);
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 0), (f.green_tg.clone(), 100)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_resources_are_named_with_account_and_region() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bg3", "app").await.unwrap();
    let mut traffic = by_name("bg3");
    traffic.green_target_group = TargetGroupRef { name: Some("nope-green".into()), arn: None, tags: None };
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg3", service(&f), traffic);
    let err = bg.snapshot().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert_eq!(err.to_string(), "target group nope-green not found in account 123456789012 region us-east-1");

    let mut traffic = by_name("bg3");
    traffic.listener.port = Some(8443);
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg3", service(&f), traffic);
    let err = bg.snapshot().await.unwrap_err();
    assert_eq!(err.to_string(), "listener bg3-alb port 8443 not found in account 123456789012 region us-east-1");

    let mut svc = service(&f);
    svc.container = "web".into();
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg3", svc, by_name("bg3"));
    let err = bg.prepare().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("no container named web"), "{err}");

    let mut svc = service(&f);
    svc.image = "registry.example/app:latest".into();
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg3", svc, by_name("bg3"));
    let err = bg.prepare().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("not pinned by digest"), "{err}");
    assert_eq!(task_set_rows(&clients, &f).await.len(), 1, "nothing created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_rule_by_priority_is_weighted_instead_of_the_default_action() {
    use aws_sdk_elasticloadbalancingv2::types as elb;
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bg4", "app").await.unwrap();
    let fwd = elb::ForwardActionConfig::builder()
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&f.blue_tg).weight(100).build())
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&f.green_tg).weight(0).build())
        .build();
    let rule = clients
        .elb
        .create_rule()
        .listener_arn(&f.listener_arn)
        .priority(10)
        .conditions(
            elb::RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(elb::PathPatternConditionConfig::builder().values("/api/*").build())
                .build(),
        )
        .actions(elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).forward_config(fwd).build())
        .send()
        .await
        .unwrap();
    let rule_arn = rule.rules()[0].rule_arn().unwrap().to_string();
    let mut traffic = by_name("bg4");
    traffic.rule = Some(kiln_api::release::RuleRef { arn: None, priority: Some(10), tags: None });
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg4", service(&f), traffic);

    let snap = bg.snapshot().await.unwrap();
    assert_eq!(snap.ecs.as_ref().unwrap().listener_or_rule_arn.as_deref(), Some(rule_arn.as_str()));
    let deployed = bg.prepare().await.unwrap();
    bg.shift(&deployed, 25).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &rule_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 75), (f.green_tg.clone(), 25)]
    );
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)],
        "the listener's default action is untouched"
    );
    bg.restore(&snap).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &rule_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)]
    );

    // The same rule found by its tags.
    clients
        .elb
        .add_tags()
        .resource_arns(&rule_arn)
        .tags(elb::Tag::builder().key("kiln.dev/route").value("api").build())
        .send()
        .await
        .unwrap();
    let mut by_tags = by_name("bg4");
    by_tags.rule = Some(kiln_api::release::RuleRef {
        arn: None,
        priority: None,
        tags: Some([("kiln.dev/route".to_string(), "api".to_string())].into_iter().collect()),
    });
    let tagged = EcsBlueGreen::new(clients.clone(), None, "uid-bg4-tags", service(&f), by_tags);
    let snap = tagged.snapshot().await.unwrap();
    assert_eq!(snap.ecs.as_ref().unwrap().listener_or_rule_arn.as_deref(), Some(rule_arn.as_str()));
    let mut missing = by_name("bg4");
    missing.rule = Some(kiln_api::release::RuleRef {
        arn: None,
        priority: None,
        tags: Some([("kiln.dev/route".to_string(), "nope".to_string())].into_iter().collect()),
    });
    let err =
        EcsBlueGreen::new(clients.clone(), None, "uid-bg4-missing", service(&f), missing).snapshot().await.unwrap_err();
    assert!(err.to_string().starts_with("listener rule with tags kiln.dev/route=nope not found in account"), "{err}");
}

/// The service's task sets as (ARN, status, externalId), sorted.
async fn task_set_rows(clients: &kiln_aws::credentials::Clients, f: &EcsFixture) -> Vec<(String, String, String)> {
    f.task_sets(clients).await.unwrap().into_iter().map(|t| (t.arn, t.status, t.external_id)).collect()
}

/// The target group each task set of the service is registered with, by task set ARN.
async fn task_set_target_groups(clients: &kiln_aws::credentials::Clients, f: &EcsFixture) -> Vec<(String, String)> {
    f.task_sets(clients).await.unwrap().into_iter().map(|t| (t.arn, t.target_group.unwrap_or_default())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_promotion_shifts_from_the_live_group_to_the_idle_one() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bg5", "app").await.unwrap();
    let blue_100 = vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)];
    let green_100 = vec![(f.blue_tg.clone(), 0), (f.green_tg.clone(), 100)];

    // v1 → v2, finalized: the v2 task set on green serves everything.
    let first = EcsBlueGreen::new(clients.clone(), None, "uid-bg5-v2", service(&f), by_name("bg5"));
    let d2 = first.prepare().await.unwrap();
    first.shift(&d2, 10).await.unwrap();
    first.finalize(&d2).await.unwrap();
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), green_100);
    let v2 = d2.task_set.clone().unwrap();
    assert_eq!(task_set_target_groups(&clients, &f).await, vec![(v2.clone(), f.green_tg.clone())]);

    // v2 → v3: the new task set goes on the idle blue group and traffic moves from green to blue.
    let mut svc = service(&f);
    svc.image = format!("registry.example/app@sha256:{}", "ab".repeat(32));
    let second = EcsBlueGreen::new(clients.clone(), None, "uid-bg5-v3", svc, by_name("bg5"));
    let snap = second.snapshot().await.unwrap();
    assert_eq!(snap.ecs.as_ref().unwrap().primary_task_set.as_deref(), Some(v2.as_str()));
    let before = task_set_rows(&clients, &f).await;
    let d3 = second.prepare().await.unwrap();
    let v3 = d3.task_set.clone().unwrap();
    let mut placed = vec![(v2.clone(), f.green_tg.clone()), (v3.clone(), f.blue_tg.clone())];
    placed.sort();
    assert_eq!(task_set_target_groups(&clients, &f).await, placed);
    assert_eq!(second.prepare().await.unwrap(), d3, "a repeat finds the same task set");
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), green_100, "prepare moves no traffic");
    second.shift(&d3, 10).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 10), (f.green_tg.clone(), 90)]
    );

    // Restore returns exactly to the state before the second promotion.
    second.restore(&snap).await.unwrap();
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), green_100);
    assert_eq!(task_set_rows(&clients, &f).await, before);
    second.restore(&snap).await.unwrap();
    assert_eq!(task_set_rows(&clients, &f).await, before);

    // Promoted again and finalized: blue serves, v3 alone.
    let d3 = second.prepare().await.unwrap();
    second.shift(&d3, 50).await.unwrap();
    assert_eq!(
        listener_weights(&clients, &f.listener_arn).await.unwrap(),
        vec![(f.blue_tg.clone(), 50), (f.green_tg.clone(), 50)]
    );
    second.finalize(&d3).await.unwrap();
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), blue_100);
    let sets = task_set_rows(&clients, &f).await;
    assert_eq!(sets, vec![(d3.task_set.clone().unwrap(), "PRIMARY".to_string(), "uid-bg5-v3".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_refuses_when_the_idle_group_still_carries_traffic() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bg6", "app").await.unwrap();
    // A shift left half-way by someone else.
    let half = [
        kiln_api::promotion::TargetGroupWeight { target_group_arn: f.blue_tg.clone(), weight: 70 },
        kiln_api::promotion::TargetGroupWeight { target_group_arn: f.green_tg.clone(), weight: 30 },
    ];
    kiln_aws::elb::set_weights(&clients.elb, &f.listener_arn, &half).await.unwrap();
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg6", service(&f), by_name("bg6"));
    let err = bg.prepare().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("both target groups carry traffic"), "{err}");
    assert_eq!(task_set_rows(&clients, &f).await.len(), 1, "no task set created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_after_finalize_refuses_and_changes_nothing() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bg7", "app").await.unwrap();
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bg7", service(&f), by_name("bg7"));
    let snap = bg.snapshot().await.unwrap();
    let deployed = bg.prepare().await.unwrap();
    bg.finalize(&deployed).await.unwrap();
    let weights = listener_weights(&clients, &f.listener_arn).await.unwrap();
    let sets = task_set_rows(&clients, &f).await;

    let err = bg.restore(&snap).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("no longer exists"), "{err}");
    // The only serving task set is kept and traffic stays on it.
    assert_eq!(listener_weights(&clients, &f.listener_arn).await.unwrap(), weights);
    assert_eq!(weights, vec![(f.blue_tg.clone(), 0), (f.green_tg.clone(), 100)]);
    assert_eq!(task_set_rows(&clients, &f).await, sets);
    assert_eq!(sets.len(), 1);
}

/// Issue "Safety under partition" §2: each attempt sends its own CreateTaskSet clientToken (at
/// most 36 characters). A repeat within an attempt sends the same one; a retry after a restore
/// deleted the task set sends a new one, so ECS creates afresh rather than answering with the
/// deleted set or IdempotentParameterMismatch (moto ignores the token: asserted from the proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_creates_its_task_set_with_its_own_client_token() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let f = EcsFixture::create(&account, "bg9", "app").await.unwrap();
    let proxy = FaultProxy::start(Upstream::Http(moto.url()), false).await.unwrap();
    let via = static_clients(proxy.url()).await;
    let uid = "0b7c6a1e-1111-4222-8333-944445555666";
    let first = EcsBlueGreen::new(via.clone(), None, uid, service(&f), by_name("bg9"));
    let snap = first.snapshot().await.unwrap();
    let deployed = first.prepare().await.unwrap();
    // A crash before the status write: the same attempt asks again.
    assert_eq!(first.prepare().await.unwrap(), deployed);
    first.restore(&snap).await.unwrap();
    let retry = EcsBlueGreen::new(via, None, uid, service(&f), by_name("bg9")).on_attempt(1);
    let again = retry.prepare().await.unwrap();
    assert_ne!(again.task_set, deployed.task_set, "the retry has a task set of its own");

    let tokens: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|e| e.target.contains("CreateTaskSet"))
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["clientToken"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        tokens,
        vec!["0b7c6a1e111142228333944445555666-0".to_string(), "0b7c6a1e111142228333944445555666-1".to_string()]
    );
    assert!(tokens.iter().all(|t| t.len() <= 36));
}

/// Issue "Tenancy and release integrity" §2: a sidecar the Release lists runs the Release's
/// image (pinned by digest) in the task definition kiln registers, beside the main container's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_the_release_lists_runs_its_digest() {
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bgsc", "app").await.unwrap();
    let proxy = format!("registry.example/proxy@sha256:{}", "8".repeat(64));
    let target = EcsService { sidecars: vec![("sidecar".into(), proxy.clone())], ..service(&f) };
    let bg = EcsBlueGreen::new(clients.clone(), None, "5d1c0f3a-2222-4333-8444-955556666777", target, by_name("bgsc"));
    bg.snapshot().await.unwrap();
    let td = bg.prepare().await.unwrap().task_definition.unwrap();
    let image_of = |c: &'static str| {
        let (clients, td) = (clients.clone(), td.clone());
        async move { kiln_aws::ecs::container_image(&clients.ecs, &td, c).await.unwrap() }
    };
    assert_eq!(image_of("app").await.as_deref(), Some(image().as_str()));
    assert_eq!(image_of("sidecar").await.as_deref(), Some(proxy.as_str()));

    // A sidecar the task definition does not have is refused before anything is registered.
    let missing = EcsService { sidecars: vec![("envoy".into(), proxy.clone())], ..service(&f) };
    let other =
        EcsBlueGreen::new(clients.clone(), None, "6e2d1a4b-3333-4444-8555-a66667777888", missing, by_name("bgsc"));
    let err = other.prepare().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong, "{err}");
    assert!(err.to_string().contains("no container named envoy"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_definition_kiln_registers_carries_the_release_and_is_read_back_once_primary() {
    use kiln_core::running::{ReleaseMark, RunningState};
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let f = EcsFixture::create(&account, "bgm", "app").await.unwrap();
    let mark = ReleaseMark { service: "web".into(), version: "v2.0.0-rc.1".into(), release_uid: Some("uid-r".into()) };
    let target = EcsService { mark: Some(mark.clone()), ..service(&f) };
    let bg = EcsBlueGreen::new(clients.clone(), None, "uid-bgm", target, by_name("bgm"));

    // The fixture's revision: not kiln's, not the Release's image.
    let RunningState::Runs(before) = bg.running().await.unwrap() else { panic!("read") };
    assert_eq!((before.mark, before.same_artifacts), (None, false));
    assert_eq!(before.artifact, EcsFixture::BASELINE_IMAGE);

    let deployed = bg.prepare().await.unwrap();
    let td = deployed.task_definition.clone().unwrap();
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(&td)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> =
        out.tags().iter().map(|t| (t.key().unwrap_or("").into(), t.value().unwrap_or("").into())).collect();
    for (k, v) in [
        ("kiln.dev/promotion-uid", "uid-bgm"),
        ("kiln.dev/service", "web"),
        ("kiln.dev/version", "v2.0.0-rc.1"),
        ("kiln.dev/release-uid", "uid-r"),
    ] {
        assert!(tags.contains(&(k.to_string(), v.to_string())), "{k}={v} in {tags:?}");
    }
    // Not serving yet: what runs is still the fixture's.
    let RunningState::Runs(mid) = bg.running().await.unwrap() else { panic!("read") };
    assert_eq!(mid.mark, None);
    bg.shift(&deployed, 100).await.unwrap();
    bg.finalize(&deployed).await.unwrap();
    let RunningState::Runs(after) = bg.running().await.unwrap() else { panic!("read") };
    assert_eq!((after.mark, after.same_artifacts), (Some(mark), true));
    assert!(after.what.contains("ECS service bgm"), "{}", after.what);
}
