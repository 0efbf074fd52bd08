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

/// A LambdaAlias on `live` of `function`, for Promotion `uid`, deploying `code`.
fn promotion(clients: &Clients, uid: &str, function: &str, code: LambdaCode) -> LambdaAlias {
    LambdaAlias::new(clients.clone(), None, uid, function, "live", code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_a_version_already_runs_gets_that_version_back() {
    use base64::Engine;
    use sha2::Digest;
    let moto = Moto::start();
    let account = Account::moto_default(&moto).await;
    let clients = account.clients.clone();
    let role = account.lambda_role("fn6-role").unwrap();
    clients.s3.create_bucket().bucket("kiln-fn6-code").send().await.unwrap();
    let zips: Vec<Vec<u8>> = (1..=3).map(|n| zip_file("index.py", format!("v{n}").as_bytes())).collect();
    for (n, body) in zips.iter().enumerate() {
        clients
            .s3
            .put_object()
            .bucket("kiln-fn6-code")
            .key(format!("v{}.zip", n + 1))
            .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
    }
    clients
        .lambda
        .create_function()
        .function_name("fn6")
        .role(role)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .handler("index.handler")
        .code(FunctionCode::builder().s3_bucket("kiln-fn6-code").s3_key("v1.zip").build())
        .send()
        .await
        .unwrap();
    clients.lambda.publish_version().function_name("fn6").send().await.unwrap();
    clients.lambda.create_alias().function_name("fn6").name("live").function_version("1").send().await.unwrap();
    let sha = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b));
    let zip = |n: usize| LambdaCode::Zip {
        bucket: "kiln-fn6-code".into(),
        key: format!("v{n}.zip"),
        object_version: None,
        code_sha256: sha(&zips[n - 1]),
    };

    // Release 2 then release 3 go out, each by its own Promotion.
    let forward2 = promotion(&clients, "uid-fn6-a", "fn6", zip(2));
    let v2 = forward2.prepare().await.unwrap();
    assert_eq!(v2.lambda_version.as_deref(), Some("2"));
    forward2.finalize(&v2).await.unwrap();
    let forward3 = promotion(&clients, "uid-fn6-b", "fn6", zip(3));
    let v3 = forward3.prepare().await.unwrap();
    assert_eq!(v3.lambda_version.as_deref(), Some("3"));
    forward3.finalize(&v3).await.unwrap();
    assert_eq!(alias(&clients, "fn6").await, AliasState::on("3"));

    // A rollback Promotion to release 2: version 2 itself, nothing published, $LATEST untouched.
    let rollback = promotion(&clients, "uid-fn6-c", "fn6", zip(2));
    let back = rollback.prepare().await.unwrap();
    assert_eq!(back.lambda_version.as_deref(), Some("2"));
    assert_eq!(rollback.prepare().await.unwrap(), back, "a repeat returns the same version");
    assert_eq!(lambda_versions(&clients, "fn6").await.unwrap(), ["$LATEST", "1", "2", "3"]);
    let latest = clients.lambda.get_function_configuration().function_name("fn6").send().await.unwrap();
    assert_eq!(latest.code_sha256(), Some(sha(&zips[2]).as_str()), "$LATEST still has release 3's code");
    rollback.finalize(&back).await.unwrap();
    assert_eq!(alias(&clients, "fn6").await, AliasState::on("2"));

    // A re-promotion of release 3 by canary: version 3 again, split off version 2.
    let again = promotion(&clients, "uid-fn6-d", "fn6", zip(3));
    let v3_again = again.prepare().await.unwrap();
    assert_eq!(v3_again.lambda_version.as_deref(), Some("3"));
    again.shift(&v3_again, 10).await.unwrap();
    assert_eq!(alias(&clients, "fn6").await, AliasState::weighted("2", "3", 0.1));
    // Version 1 (published outside kiln) is found the same way.
    let first = promotion(&clients, "uid-fn6-e", "fn6", zip(1)).prepare().await.unwrap();
    assert_eq!(first.lambda_version.as_deref(), Some("1"));
    assert_eq!(lambda_versions(&clients, "fn6").await.unwrap(), ["$LATEST", "1", "2", "3"]);
}

/// In moto, published versions share `$LATEST`'s code location: every version reports the image
/// `$LATEST` has now. A rollback to an older image is proven on the stub instead
/// (`an_image_a_version_already_runs_gets_that_version_back_on_the_stub`); this test shows the
/// newest match wins and that the gap is still there (if it fails there, move that test to moto).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_newest_version_runs_is_reused_in_moto() {
    let moto = Moto::start();
    let clients = function(&moto, "fn5").await;
    let image_code = |n: u8| LambdaCode::Image { uri: image(n) };
    let v2 = promotion(&clients, "uid-fn5-a", "fn5", image_code(2)).prepare().await.unwrap();
    assert_eq!(v2.lambda_version.as_deref(), Some("2"));
    let v3 = promotion(&clients, "uid-fn5-b", "fn5", image_code(3)).prepare().await.unwrap();
    assert_eq!(v3.lambda_version.as_deref(), Some("3"));

    let again = promotion(&clients, "uid-fn5-c", "fn5", image_code(3)).prepare().await.unwrap();
    assert_eq!(again.lambda_version.as_deref(), Some("3"));
    assert_eq!(lambda_versions(&clients, "fn5").await.unwrap(), ["$LATEST", "1", "2", "3"]);

    let moto_gap = clients.lambda.get_function().function_name("fn5").qualifier("2").send().await.unwrap();
    assert_eq!(moto_gap.code().unwrap().image_uri(), Some(image(3).as_str()), "moto reports $LATEST's image");
}

const JSON: &str = "application/json";

/// A Lambda REST call as the stub sees it: (method, path after the function name, qualifier,
/// marker).
fn lambda_call(r: &StubRequest) -> (String, String, Option<String>, Option<String>) {
    let (path, query) = r.path.split_once('?').unwrap_or((r.path.as_str(), ""));
    // `/2015-03-31/functions/<name>/<rest>`
    let rest = path.splitn(5, '/').nth(4).unwrap_or_default().to_string();
    let param = |name: &str| {
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    };
    (r.method.clone(), rest, param("Qualifier"), param("Marker"))
}

/// A version's entry in ListVersionsByFunction.
fn listed(version: &str) -> serde_json::Value {
    serde_json::json!({"FunctionName": "fn", "Version": version, "CodeSha256": format!("h{version}"), "PackageType": "Image"})
}

/// GetFunction of `version` running `uri`.
fn get_function(version: &str, uri: &str, state: &str) -> StubResponse {
    let body = serde_json::json!({
        "Configuration": {"FunctionName": "fn", "Version": version, "CodeSha256": format!("h{version}"),
                          "PackageType": "Image", "State": state, "LastUpdateStatus": "Successful",
                          "RevisionId": format!("rev-{version}")},
        "Code": {"RepositoryType": "ECR", "ImageUri": uri},
    });
    (200, JSON, body.to_string())
}

fn unexpected(r: &StubRequest) -> StubResponse {
    (
        400,
        JSON,
        format!(r#"{{"__type":"InvalidParameterValueException","message":"unexpected {} {}"}}"#, r.method, r.path),
    )
}

/// The calls the stub saw, as `METHOD rest Qualifier=q Marker=m` (empty parts left out).
fn calls(stub: &Stub) -> Vec<String> {
    stub.requests()
        .iter()
        .map(|r| {
            let (method, rest, qualifier, marker) = lambda_call(r);
            let qualifier = qualifier.map(|q| format!("Qualifier={q}"));
            let marker = marker.map(|m| format!("Marker={m}"));
            [Some(method), Some(rest), qualifier, marker]
                .into_iter()
                .flatten()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// What moto cannot show (see `an_image_the_newest_version_runs_is_reused_in_moto`), as AWS
/// answers: version 2 runs image 2 and version 3 image 3, listed over two pages; a Promotion of
/// image 2 gets version 2 back with no UpdateFunctionCode and no PublishVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_a_version_already_runs_gets_that_version_back_on_the_stub() {
    let stub = Stub::start(|r, _| match lambda_call(r) {
        (m, rest, None, None) if m == "GET" && rest.is_empty() => get_function("$LATEST", &image(3), "Active"),
        (m, rest, None, None) if m == "GET" && rest == "versions" => {
            let page =
                serde_json::json!({"Versions": [listed("$LATEST"), listed("1"), listed("2")], "NextMarker": "page-2"});
            (200, JSON, page.to_string())
        }
        (m, rest, None, Some(marker)) if m == "GET" && rest == "versions" && marker == "page-2" => {
            (200, JSON, serde_json::json!({"Versions": [listed("3")]}).to_string())
        }
        (m, rest, Some(q), None) if m == "GET" && rest.is_empty() => {
            let n: u8 = q.parse().unwrap();
            get_function(&q, &image(n), "Active")
        }
        _ => unexpected(r),
    });
    let clients = stub.clients().await;
    let target = promotion(&clients, "uid-rollback", "fn", LambdaCode::Image { uri: image(2) });
    let deployed = target.prepare().await.unwrap();
    assert_eq!(deployed.lambda_version.as_deref(), Some("2"));
    assert_eq!(
        calls(&stub),
        ["GET", "GET versions", "GET versions Marker=page-2", "GET Qualifier=3", "GET Qualifier=2",],
        "newest first, every page, nothing updated or published"
    );
}

/// A version in state `Failed` cannot serve: the next older match is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_version_is_passed_over() {
    let stub = Stub::start(|r, _| match lambda_call(r) {
        (m, rest, None, None) if m == "GET" && rest.is_empty() => get_function("$LATEST", &image(3), "Active"),
        (m, rest, None, None) if m == "GET" && rest == "versions" => {
            let page = serde_json::json!({"Versions": [listed("$LATEST"), listed("1"), listed("2"), listed("3")]});
            (200, JSON, page.to_string())
        }
        (m, rest, Some(q), None) if m == "GET" && rest.is_empty() => match q.as_str() {
            "3" => get_function("3", &image(2), "Failed"),
            "2" => get_function("2", &image(2), "Active"),
            _ => get_function(&q, &image(1), "Active"),
        },
        _ => unexpected(r),
    });
    let clients = stub.clients().await;
    let deployed = promotion(&clients, "uid-x", "fn", LambdaCode::Image { uri: image(2) }).prepare().await.unwrap();
    assert_eq!(deployed.lambda_version.as_deref(), Some("2"));
    assert_eq!(calls(&stub), ["GET", "GET versions", "GET Qualifier=3", "GET Qualifier=2"]);
}

/// Only the newest `IMAGE_VERSIONS_INSPECTED` versions are inspected for an image: an image that
/// only version 3 of 30 runs is deployed as today (UpdateFunctionCode, wait, PublishVersion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_lookups_stop_at_the_newest_versions() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    assert_eq!(kiln_aws::lambda::alias::IMAGE_VERSIONS_INSPECTED, 25);
    let updated = Arc::new(AtomicBool::new(false));
    let seen = updated.clone();
    let stub = Stub::start(move |r, _| match lambda_call(r) {
        (m, rest, None, None) if m == "GET" && rest.is_empty() => {
            let now = if seen.load(Ordering::SeqCst) { image(3) } else { image(30) };
            get_function("$LATEST", &now, "Active")
        }
        (m, rest, None, None) if m == "GET" && rest == "versions" => {
            let mut versions = vec![listed("$LATEST")];
            versions.extend((1..=30).map(|n| listed(&n.to_string())));
            (200, JSON, serde_json::json!({ "Versions": versions }).to_string())
        }
        (m, rest, Some(q), None) if m == "GET" && rest.is_empty() => {
            let n: u8 = q.parse().unwrap();
            let uri = if n == 31 { image(3) } else { image(n) };
            get_function(&q, &uri, "Active")
        }
        (m, rest, None, None) if m == "PUT" && rest == "code" => {
            seen.store(true, Ordering::SeqCst);
            (
                200,
                JSON,
                serde_json::json!({"FunctionName": "fn", "Version": "$LATEST", "LastUpdateStatus": "InProgress"})
                    .to_string(),
            )
        }
        (m, rest, None, None) if m == "GET" && rest == "configuration" => {
            let cfg = serde_json::json!({"FunctionName": "fn", "Version": "$LATEST", "CodeSha256": "h31", "LastUpdateStatus": "Successful"});
            (200, JSON, cfg.to_string())
        }
        (m, rest, None, None) if m == "POST" && rest == "versions" => {
            (201, JSON, serde_json::json!({"FunctionName": "fn", "Version": "31", "CodeSha256": "h31"}).to_string())
        }
        _ => unexpected(r),
    });
    let clients = stub.clients().await;
    let deployed = promotion(&clients, "uid-old", "fn", LambdaCode::Image { uri: image(3) }).prepare().await.unwrap();
    assert_eq!(deployed.lambda_version.as_deref(), Some("31"));
    assert!(updated.load(Ordering::SeqCst));
    let mut expected = vec!["GET".to_string(), "GET versions".to_string()];
    expected.extend((6..=30).rev().map(|n| format!("GET Qualifier={n}")));
    expected.extend(["PUT code", "GET configuration", "GET", "POST versions", "GET Qualifier=31"].map(str::to_string));
    assert_eq!(calls(&stub), expected);
    // The code update is conditional on the revision GetFunction returned (moto has none).
    let put = stub.requests().into_iter().find(|r| r.method == "PUT").expect("UpdateFunctionCode");
    let body: serde_json::Value = serde_json::from_str(&put.body).expect("JSON body");
    assert_eq!(body["RevisionId"], "rev-$LATEST", "{body}");
}

/// Alias updates are conditional on the RevisionId just read, and a refusal because the alias
/// changed meanwhile (another replica restored it) is a wait, never an overwrite. moto keeps an
/// alias's RevisionId but neither changes nor checks it, so the proxy in front of moto shows what
/// was sent and answers as Lambda would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_updates_are_conditional_and_a_changed_alias_is_not_overwritten() {
    let moto = Moto::start();
    let direct = function(&moto, "fn5").await;
    let proxy = FaultProxy::start(Upstream::Http(moto.url()), false).await.unwrap();
    let via = static_clients(proxy.url()).await;
    let target = LambdaAlias::new(via, None, "uid-fn5", "fn5", "live", LambdaCode::Image { uri: image(2) });
    let deployed = target.prepare().await.unwrap();
    let revision = direct.lambda.get_alias().function_name("fn5").name("live").send().await.unwrap();
    let revision = revision.revision_id().expect("moto keeps an alias RevisionId").to_string();

    target.shift(&deployed, 10).await.unwrap();
    let updates: Vec<Logged> =
        proxy.log().into_iter().filter(|e| e.method == "PUT" && e.path.contains("/aliases/live")).collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let sent: serde_json::Value = serde_json::from_str(&updates[0].body).unwrap();
    assert_eq!(sent["RevisionId"], revision.as_str(), "UpdateAlias carries the revision read: {sent}");

    // The alias changed under kiln: Lambda refuses the conditional update with 412.
    let changed = r#"{"__type":"PreconditionFailedException","message":"The Revision Id provided does not match the latest Revision Id."}"#;
    proxy.add(Rule::times(
        Match::path("/aliases/live").and_method("PUT"),
        Action::Fail { status: 412, content_type: "application/json".into(), body: changed.into() },
        1,
    ));
    let err = target.shift(&deployed, 100).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Wait, "{err}");
    assert_eq!(err.code(), Some("PreconditionFailedException"), "{err}");
    assert_eq!(alias(&direct, "fn5").await, AliasState::weighted("1", "2", 0.1), "nothing overwritten");
    // The next reconcile reads again and, if still right, moves on with the new revision.
    target.shift(&deployed, 100).await.unwrap();
    assert_eq!(alias(&direct, "fn5").await, AliasState::on("2"));
}

/// For a zip, the listing's CodeSha256 selects candidates; each is read again (its own hash and
/// its state): a `Failed` one is passed over, so is one whose own hash is not the Release's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_match_is_confirmed_on_the_version() {
    let stub = Stub::start(|r, _| match lambda_call(r) {
        (m, rest, None, None) if m == "GET" && rest.is_empty() => {
            let body = serde_json::json!({"Configuration": {"FunctionName": "fn", "Version": "$LATEST", "CodeSha256": "other"}});
            (200, JSON, body.to_string())
        }
        (m, rest, None, None) if m == "GET" && rest == "versions" => {
            let v = |n: &str, sha: &str| serde_json::json!({"FunctionName": "fn", "Version": n, "CodeSha256": sha});
            let page = serde_json::json!({"Versions": [v("$LATEST", "other"), v("1", "want"), v("2", "want"), v("3", "want"), v("4", "other")]});
            (200, JSON, page.to_string())
        }
        (m, rest, Some(q), None) if m == "GET" && rest == "configuration" => {
            let (sha, state) = match q.as_str() {
                "3" => ("want", "Failed"),
                "2" => ("not-what-was-listed", "Active"),
                _ => ("want", "Active"),
            };
            let cfg = serde_json::json!({"FunctionName": "fn", "Version": q, "CodeSha256": sha, "State": state});
            (200, JSON, cfg.to_string())
        }
        _ => unexpected(r),
    });
    let clients = stub.clients().await;
    let code =
        LambdaCode::Zip { bucket: "b".into(), key: "k.zip".into(), object_version: None, code_sha256: "want".into() };
    let deployed = promotion(&clients, "uid-z", "fn", code).prepare().await.unwrap();
    assert_eq!(deployed.lambda_version.as_deref(), Some("1"));
    assert_eq!(
        calls(&stub),
        [
            "GET",
            "GET versions",
            "GET configuration Qualifier=3",
            "GET configuration Qualifier=2",
            "GET configuration Qualifier=1"
        ]
    );
}

/// A replica that loses the Lease between two SDK calls of one action (here the GetAlias and the
/// UpdateAlias of one shift) sends nothing more: the fenced clients ask before every write and
/// refuse it unsent ([`kiln_aws::AwsError::Fenced`]); reads still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_lease_is_lost_mid_action_is_not_sent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use aws_credential_types::provider::SharedCredentialsProvider;
    use kiln_aws::credentials::AwsSettings;
    use kiln_aws::{Scope, WriteFence};

    let moto = Moto::start();
    let direct = function(&moto, "fn6").await;
    let proxy = FaultProxy::start(Upstream::Http(moto.url()), false).await.unwrap();
    let leading = Arc::new(AtomicBool::new(true));
    let fence = {
        let leading = leading.clone();
        WriteFence::new(move || leading.load(Ordering::SeqCst))
    };
    let config = AwsSettings::for_endpoint(proxy.url())
        .sdk_config(REGION, SharedCredentialsProvider::new(MotoEndpoint::static_credentials()))
        .await;
    let via =
        Clients::fenced(&config, Scope { account_id: DEFAULT_ACCOUNT.into(), region: REGION.into() }, Some(&fence));
    let target = LambdaAlias::new(via, None, "uid-fn6", "fn6", "live", LambdaCode::Image { uri: image(2) });
    let deployed = target.prepare().await.unwrap();
    target.shift(&deployed, 10).await.unwrap();
    assert_eq!(alias(&direct, "fn6").await, AliasState::weighted("1", "2", 0.1));

    // The shift's read is answered only after the Lease is gone.
    proxy.add(Rule::times(Match::path("/aliases/live").and_method("GET"), Action::Hold(When::After), 1));
    let mark = proxy.log().len() as u64;
    let shift = {
        let (target, deployed) = (target.clone(), deployed.clone());
        tokio::spawn(async move { target.shift(&deployed, 100).await })
    };
    proxy.wait_holding(1, std::time::Duration::from_secs(30)).await.expect("the GetAlias is held");
    leading.store(false, Ordering::SeqCst);
    proxy.release();
    let err = shift.await.unwrap().unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(err.class(), ErrorClass::RetryLater, "never recorded as a failure of the Promotion");
    let sent: Vec<String> =
        proxy.log().iter().filter(|e| e.seq >= mark).map(|e| format!("{} {}", e.method, e.path)).collect();
    assert!(sent.iter().all(|c| c.starts_with("GET")), "only the read went out: {sent:?}");
    assert_eq!(alias(&direct, "fn6").await, AliasState::weighted("1", "2", 0.1), "nothing moved");
    // Reads are not fenced.
    assert_eq!(target.snapshot().await.unwrap().lambda.unwrap().version, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_runs_is_read_back_with_the_release_mark_kiln_published() {
    use kiln_core::running::{ReleaseMark, RunningState};
    let moto = Moto::start();
    let clients = function(&moto, "fnm").await;
    let mark = ReleaseMark { service: "orders".into(), version: "v1.2.0".into(), release_uid: Some("uid-r2".into()) };
    let target = LambdaAlias::new(clients.clone(), None, "uid-fnm", "fnm", "live", LambdaCode::Image { uri: image(2) })
        .marked(Some(mark.clone()));
    // Before: version 1, published by someone else: no mark, not the Release's image.
    let RunningState::Runs(before) = target.running().await.unwrap() else { panic!("read") };
    assert_eq!((before.mark, before.same_artifacts), (None, false));
    assert!(before.what.contains("alias live (version 1)"), "{}", before.what);
    assert_eq!(before.artifact, image(1));

    let deployed = target.prepare().await.unwrap();
    target.shift(&deployed, 100).await.unwrap();
    // The published version says whose it is, in AWS itself.
    let v = clients.lambda.get_function_configuration().function_name("fnm").qualifier("2").send().await.unwrap();
    assert_eq!(v.description(), Some("kiln service=orders version=v1.2.0 release=uid-r2 promotion=uid-fnm"));
    let RunningState::Runs(after) = target.running().await.unwrap() else { panic!("read") };
    assert_eq!((after.mark, after.same_artifacts), (Some(mark), true));

    // Another Release's target reads the same version as not its artifacts.
    let other = LambdaAlias::new(clients.clone(), None, "uid-x", "fnm", "live", LambdaCode::Image { uri: image(3) });
    let RunningState::Runs(seen) = other.running().await.unwrap() else { panic!("read") };
    assert!(!seen.same_artifacts && seen.mark.is_some_and(|m| m.version == "v1.2.0"));
    // A missing alias is an error the deployment would hit too (the controller's "unknown").
    let missing = LambdaAlias::new(clients.clone(), None, "uid-y", "nope", "live", LambdaCode::Image { uri: image(3) });
    assert_eq!(missing.running().await.err().map(|e| e.class()), Some(ErrorClass::SpecWrong));
}
