//! Lambda alias shifting against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionCode};
use kiln_aws::ErrorClass;
use kiln_aws::credentials::Clients;
use kiln_aws::lambda::alias::{LambdaAlias, LambdaCode};
use kiln_aws::traffic::TrafficTarget;
use kiln_testkit::*;

fn image(n: u8) -> String {
    format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:{}", format!("{n:02x}").repeat(32))
}

/// A function on image 1 with version 1 published and alias `live` → 1, in moto's default account.
async fn function(moto: &Moto, name: &str) -> Clients {
    let account = Account::moto_default(moto).await;
    LambdaFixture::create_image(&account, name, "live", &image(1)).await.unwrap();
    account.clients
}

async fn alias(clients: &Clients, name: &str) -> AliasState {
    lambda_alias(clients, name, "live").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_weights_then_new_version_then_back() {
    let moto = Moto::start();
    let clients = function(&moto, "fn1").await;
    let target = LambdaAlias::new(clients.clone(), None, "uid-fn1", "fn1", "live", LambdaCode::Image { uri: image(2) });

    let snap = target.snapshot().await.unwrap();
    assert_eq!(snap.lambda.as_ref().unwrap().version, "1");
    assert!(snap.lambda.as_ref().unwrap().routing.is_empty());

    let deployed = target.prepare().await.unwrap();
    assert_eq!(deployed.lambda_version.as_deref(), Some("2"));
    // A repeat publishes nothing new.
    assert_eq!(target.prepare().await.unwrap(), deployed);
    let code = clients.lambda.get_function().function_name("fn1").qualifier("2").send().await.unwrap();
    assert_eq!(code.code().unwrap().image_uri(), Some(image(2).as_str()));

    target.shift(&deployed, 10).await.unwrap();
    assert_eq!(alias(&clients, "fn1").await, AliasState::weighted("1", "2", 0.1));
    target.shift(&deployed, 100).await.unwrap();
    assert_eq!(alias(&clients, "fn1").await, AliasState::on("2"));

    target.restore(&snap).await.unwrap();
    assert_eq!(alias(&clients, "fn1").await, AliasState::on("1"));
    target.restore(&snap).await.unwrap();
    assert_eq!(alias(&clients, "fn1").await, AliasState::on("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_returns_to_a_weighted_alias_exactly() {
    let moto = Moto::start();
    let clients = function(&moto, "fn2").await;
    // Someone left the alias split 1 / 0.2 on version 1 (published again as the same version).
    clients
        .lambda
        .update_alias()
        .function_name("fn2")
        .name("live")
        .function_version("1")
        .routing_config(AliasRoutingConfiguration::builder().additional_version_weights("1", 0.0).build())
        .send()
        .await
        .unwrap();
    let target = LambdaAlias::new(clients.clone(), None, "uid-fn2", "fn2", "live", LambdaCode::Image { uri: image(3) });
    let snap = target.snapshot().await.unwrap();
    assert_eq!(snap.lambda.as_ref().unwrap().routing, BTreeMap::from([("1".to_string(), "0".to_string())]));
    let deployed = target.prepare().await.unwrap();
    target.shift(&deployed, 100).await.unwrap();
    target.restore(&snap).await.unwrap();
    assert_eq!(alias(&clients, "fn2").await, AliasState::weighted("1", "1", 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_hash_is_checked_by_kiln() {
    use base64::Engine;
    use sha2::Digest;
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    // A zip function: created from S3, then updated to a new package whose hash kiln checks.
    let role = account.lambda_role("fn4-role").unwrap();
    clients.s3.create_bucket().bucket("kiln-fn4-code").send().await.unwrap();
    let zip1 = zip_file("index.py", b"v1");
    let zip2 = zip_file("index.py", b"v2");
    for (key, body) in [("v1.zip", &zip1), ("v2.zip", &zip2)] {
        clients
            .s3
            .put_object()
            .bucket("kiln-fn4-code")
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
    }
    clients
        .lambda
        .create_function()
        .function_name("fn4")
        .role(role)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .handler("index.handler")
        .code(FunctionCode::builder().s3_bucket("kiln-fn4-code").s3_key("v1.zip").build())
        .send()
        .await
        .unwrap();
    clients.lambda.publish_version().function_name("fn4").send().await.unwrap();
    clients.lambda.create_alias().function_name("fn4").name("live").function_version("1").send().await.unwrap();
    let sha = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b));

    // The Release pins the wrong hash: kiln refuses, the alias does not move.
    let wrong = LambdaCode::Zip {
        bucket: "kiln-fn4-code".into(),
        key: "v2.zip".into(),
        object_version: None,
        code_sha256: sha(b"something else"),
    };
    let target = LambdaAlias::new(clients.clone(), None, "uid-fn4", "fn4", "live", wrong);
    let err = target.prepare().await.unwrap_err();
    assert_eq!(err.metric_label(), "hash_mismatch", "{err}");
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert_eq!(alias(&clients, "fn4").await, AliasState::on("1"));

    let right = LambdaCode::Zip {
        bucket: "kiln-fn4-code".into(),
        key: "v2.zip".into(),
        object_version: None,
        code_sha256: sha(&zip2),
    };
    let target = LambdaAlias::new(clients.clone(), None, "uid-fn4", "fn4", "live", right);
    let deployed = target.prepare().await.unwrap();
    assert_eq!(deployed.lambda_version.as_deref(), Some("2"));
    let v2 = clients.lambda.get_function_configuration().function_name("fn4").qualifier("2").send().await.unwrap();
    assert_eq!(v2.code_sha256(), Some(sha(&zip2).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_function_is_named() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let target = LambdaAlias::new(clients.clone(), None, "uid-x", "nope", "live", LambdaCode::Image { uri: image(2) });
    let err = target.snapshot().await.unwrap_err();
    assert_eq!(err.to_string(), "Lambda alias nope:live not found in account 123456789012 region us-east-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_not_pinned_by_digest_is_refused_before_any_change() {
    let moto = Moto::start();
    let clients = function(&moto, "fn9").await;
    let uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest".to_string();
    let target = LambdaAlias::new(clients.clone(), None, "uid-fn9", "fn9", "live", LambdaCode::Image { uri });
    let err = target.prepare().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("not pinned by digest"), "{err}");
    // $LATEST keeps its image and nothing was published.
    let latest = clients.lambda.get_function().function_name("fn9").send().await.unwrap();
    assert_eq!(latest.code().unwrap().image_uri(), Some(image(1).as_str()));
    assert_eq!(lambda_versions(&clients, "fn9").await.unwrap(), ["$LATEST", "1"]);
}
