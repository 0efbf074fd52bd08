//! The fixtures in two accounts of one moto: each starts where it says, lives in its own account
//! only, and is what kiln's controller sees when it assumes the account's role itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use kiln_aws::credentials::{Sessions, StsAssumeRole};
use kiln_testkit::*;

const A: &str = "111111111111";
const B: &str = "222222222222";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_fixtures_start_blue_and_stay_in_their_account() {
    let moto = Moto::start();
    let a = Account::assume(&moto, A, REGION).await.unwrap();
    let b = Account::assume(&moto, B, REGION).await.unwrap();
    assert_eq!((a.clients.scope.account_id.as_str(), b.clients.scope.account_id.as_str()), (A, B));
    assert_eq!(a.role_arn(), "arn:aws:iam::111111111111:role/kiln-deploy");
    assert_eq!(a.environment().role_arn, a.role_arn());
    assert_ne!(a.access_key, b.access_key);

    // The same names in both accounts: only isolation keeps them apart.
    let fa = EcsFixture::create(&a, "web", "app").await.unwrap();
    let fb = EcsFixture::create(&b, "web", "api").await.unwrap();
    for (f, account) in [(&fa, &a), (&fb, &b)] {
        for arn in [&f.lb_arn, &f.listener_arn, &f.blue_tg, &f.green_tg, &f.blue_task_set, &f.task_definition] {
            assert!(arn.contains(&format!(":{}:", account.id)), "{arn} is in {}", account.id);
        }
        assert_eq!(f.weights(&account.clients).await.unwrap(), vec![(f.blue_tg.clone(), 100), (f.green_tg.clone(), 0)]);
        assert_eq!(
            f.task_sets(&account.clients).await.unwrap(),
            vec![TaskSet {
                arn: f.blue_task_set.clone(),
                status: "PRIMARY".into(),
                external_id: "initial".into(),
                task_definition: f.task_definition.clone(),
                target_group: Some(f.blue_tg.clone()),
            }]
        );
        // The container is named as asked, next to the sidecar.
        let td =
            account.clients.ecs.describe_task_definition().task_definition(&f.task_definition).send().await.unwrap();
        let names: Vec<&str> =
            td.task_definition().unwrap().container_definitions().iter().filter_map(|c| c.name()).collect();
        assert_eq!(names, [f.container.as_str(), "sidecar"]);
        // The EXTERNAL service reports its PRIMARY task set's task definition.
        assert_eq!(f.service_task_definition(&account.clients).await.unwrap(), Some(f.task_definition.clone()));
    }

    // A change in A leaves B alone.
    use aws_sdk_elasticloadbalancingv2::types as elb;
    let half = elb::ForwardActionConfig::builder()
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&fa.blue_tg).weight(50).build())
        .target_groups(elb::TargetGroupTuple::builder().target_group_arn(&fa.green_tg).weight(50).build())
        .build();
    a.clients
        .elb
        .modify_listener()
        .listener_arn(&fa.listener_arn)
        .default_actions(elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).forward_config(half).build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        listener_weights(&a.clients, &fa.listener_arn).await.unwrap(),
        vec![(fa.blue_tg.clone(), 50), (fa.green_tg.clone(), 50)]
    );
    assert_eq!(fb.weights(&b.clients).await.unwrap(), vec![(fb.blue_tg.clone(), 100), (fb.green_tg.clone(), 0)]);

    // A's resources are not visible from B, and the error says where it looked.
    let err = listener_weights(&b.clients, &fa.listener_arn).await.unwrap_err();
    assert!(err.contains("account 222222222222"), "{err}");
    let only_a = EcsFixture::create(&a, "only-a", "app").await.unwrap();
    assert!(task_sets(&b.clients, &only_a.cluster, &only_a.service).await.is_err());
    assert!(service_task_definition(&b.clients, &only_a.cluster, &only_a.service).await.is_err());

    // kiln's controller assuming the same role (its own session) sees the fixture.
    let settings = moto.settings();
    let controller =
        settings.sdk_config(REGION, SharedCredentialsProvider::new(MotoEndpoint::static_credentials())).await;
    let sessions = Sessions::new(settings, Arc::new(StsAssumeRole::new(&controller)));
    let kiln = sessions.clients(&a.environment(), "kiln.web-v2.0b7c6a1e").await.unwrap();
    assert_eq!(fa.weights(&kiln).await.unwrap(), vec![(fa.blue_tg.clone(), 50), (fa.green_tg.clone(), 50)]);
    assert_eq!(fa.task_sets(&kiln).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_aliases_and_alarms_stay_in_their_account() {
    let moto = Moto::start();
    let a = Account::assume(&moto, A, REGION).await.unwrap();
    let b = Account::assume(&moto, B, REGION).await.unwrap();

    let fa = LambdaFixture::create(&a, "api", "live").await.unwrap();
    assert!(fa.arn.contains(A) && fa.alias_arn.ends_with(":api:live") && fa.role_arn.contains(A), "{fa:?}");
    assert_eq!(fa.version, "1");
    assert!(!fa.code_sha256.is_empty());
    assert_eq!(fa.alias_state(&a.clients).await.unwrap(), AliasState::on("1"));
    assert_eq!(fa.versions(&a.clients).await.unwrap(), ["$LATEST", "1"]);
    let zip = a.clients.lambda.get_function_configuration().function_name("api").qualifier("1").send().await.unwrap();
    assert_eq!(zip.handler(), Some("index.handler"));

    // Not in B until B makes its own (an image function this time).
    let err = lambda_alias(&b.clients, "api", "live").await.unwrap_err();
    assert!(err.contains("account 222222222222"), "{err}");
    let versions = lambda_versions(&b.clients, "api").await;
    assert!(versions.is_err(), "{versions:?}");
    let image = format!("{B}.dkr.ecr.{REGION}.amazonaws.com/api@{DIGEST}");
    let fb = LambdaFixture::create_image(&b, "api", "live", &image).await.unwrap();
    assert!(fb.arn.contains(B));
    assert_eq!(lambda_alias(&b.clients, "api", "live").await.unwrap(), AliasState::on("1"));

    // Moving A's alias leaves B's on 1.
    a.clients
        .lambda
        .update_alias()
        .function_name("api")
        .name("live")
        .function_version("1")
        .routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder().additional_version_weights("1", 0.25).build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(fa.alias_state(&a.clients).await.unwrap(), AliasState::weighted("1", "1", 0.25));
    assert_eq!(fb.alias_state(&b.clients).await.unwrap(), AliasState::on("1"));

    // Alarms: the same name in both accounts, breached in A only.
    for account in [&a, &b] {
        assert_eq!(alarm_state(&account.clients, "api-errors").await.unwrap(), None);
        put_alarm(&account.clients, "api-errors").await.unwrap();
        set_alarm_state(&account.clients, "api-errors", "OK").await.unwrap();
    }
    set_alarm_state(&a.clients, "api-errors", "ALARM").await.unwrap();
    assert_eq!(alarm_state(&a.clients, "api-errors").await.unwrap().as_deref(), Some("ALARM"));
    assert_eq!(alarm_state(&b.clients, "api-errors").await.unwrap().as_deref(), Some("OK"));
    let err = set_alarm_state(&a.clients, "api-errors", "BROKEN").await.unwrap_err();
    assert!(err.contains("use ALARM, OK or INSUFFICIENT_DATA"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_what_was_wrong() {
    let moto = Moto::start();
    let err = Account::assume(&moto, "1234", REGION).await.unwrap_err();
    assert_eq!(err, "account ID \"1234\" is not 12 digits");

    let default = Account::moto_default(&moto).await;
    assert_eq!((default.id.as_str(), default.access_key.as_str()), (DEFAULT_ACCOUNT, STATIC_ACCESS_KEY));
    let err = EcsFixture::create(&default, "bad_prefix", "app").await.unwrap_err();
    assert!(err.contains("fixture prefix"), "{err}");
    let err = EcsFixture::create(&default, "ok", "sidecar").await.unwrap_err();
    assert!(err.contains("sidecar"), "{err}");

    // A raw call moto refuses is an error carrying moto's answer and the account.
    let err =
        default.ec2(&[("Action", "CreateSubnet"), ("VpcId", "vpc-nope"), ("CidrBlock", "10.0.0.0/24")]).unwrap_err();
    assert!(err.contains("HTTP 4") && err.contains("vpc-nope") && err.contains("account 123456789012"), "{err}");
}
