//! Lambda alias shifting against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionCode, PackageType};
use kiln_aws::ErrorClass;
use kiln_aws::credentials::Clients;
use kiln_aws::lambda::alias::{LambdaAlias, LambdaCode};
use kiln_aws::traffic::TrafficTarget;
use support::*;

const KEY: &str = "AKIATESTTESTTEST";

fn image(n: u8) -> String {
    format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:{}", format!("{n:02x}").repeat(32))
}

/// A function on image 1 with version 1 published and alias `live` → 1.
async fn function(moto: &Moto, clients: &Clients, name: &str) {
    let role = moto.lambda_role(KEY, &format!("{name}-role"));
    clients
        .lambda
        .create_function()
        .function_name(name)
        .role(role)
        .package_type(PackageType::Image)
        .code(FunctionCode::builder().image_uri(image(1)).build())
        .send()
        .await
        .unwrap();
    clients.lambda.publish_version().function_name(name).send().await.unwrap();
    clients.lambda.create_alias().function_name(name).name("live").function_version("1").send().await.unwrap();
}

async fn alias(clients: &Clients, name: &str) -> (String, HashMap<String, f64>) {
    let a = clients.lambda.get_alias().function_name(name).name("live").send().await.unwrap();
    let routing = a.routing_config().and_then(|r| r.additional_version_weights().cloned()).unwrap_or_default();
    (a.function_version().unwrap().to_string(), routing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_weights_then_new_version_then_back() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    function(&moto, &clients, "fn1").await;
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
    assert_eq!(alias(&clients, "fn1").await, ("1".to_string(), [("2".to_string(), 0.1)].into()));
    target.shift(&deployed, 100).await.unwrap();
    assert_eq!(alias(&clients, "fn1").await, ("2".to_string(), HashMap::new()));

    target.restore(&snap).await.unwrap();
    assert_eq!(alias(&clients, "fn1").await, ("1".to_string(), HashMap::new()));
    target.restore(&snap).await.unwrap();
    assert_eq!(alias(&clients, "fn1").await, ("1".to_string(), HashMap::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_returns_to_a_weighted_alias_exactly() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    function(&moto, &clients, "fn2").await;
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
    assert_eq!(alias(&clients, "fn2").await, ("1".to_string(), [("1".to_string(), 0.0)].into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_hash_is_checked_by_kiln() {
    use base64::Engine;
    use sha2::Digest;
    let moto = Moto::start();
    let clients = moto.clients().await;
    // A zip function: created from S3, then updated to a new package whose hash kiln checks.
    let role = moto.lambda_role(KEY, "fn4-role");
    clients.s3.create_bucket().bucket("kiln-fn4-code").send().await.unwrap();
    let zip1 = empty_zip(b"v1");
    let zip2 = empty_zip(b"v2");
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
    assert_eq!(alias(&clients, "fn4").await, ("1".to_string(), HashMap::new()));

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

/// A valid zip archive holding one stored file `index.py` with `content`.
fn empty_zip(content: &[u8]) -> Vec<u8> {
    let name = b"index.py";
    let crc = crc32(content);
    let mut out = Vec::new();
    let local = out.len() as u32;
    out.extend_from_slice(&0x04034b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(content);
    let central = out.len() as u32;
    out.extend_from_slice(&0x02014b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&local.to_le_bytes());
    out.extend_from_slice(name);
    let size = out.len() as u32 - central;
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&central.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_not_pinned_by_digest_is_refused_before_any_change() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    function(&moto, &clients, "fn9").await;
    let uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest".to_string();
    let target = LambdaAlias::new(clients.clone(), None, "uid-fn9", "fn9", "live", LambdaCode::Image { uri });
    let err = target.prepare().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::SpecWrong);
    assert!(err.to_string().contains("not pinned by digest"), "{err}");
    // $LATEST keeps its image and nothing was published.
    let latest = clients.lambda.get_function().function_name("fn9").send().await.unwrap();
    assert_eq!(latest.code().unwrap().image_uri(), Some(image(1).as_str()));
    let versions = clients.lambda.list_versions_by_function().function_name("fn9").send().await.unwrap();
    assert_eq!(versions.versions().len(), 2, "$LATEST and 1");
}
