//! The fault proxy in front of moto (HTTP, the AWS SDK as client) and in front of kube-apiserver
//! (HTTPS on both sides, kube-rs as client, a watch streaming through): every action does what it
//! says, as seen from the upstream (read directly, not through the proxy) and from the log.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kiln_aws::credentials::Clients;
use kiln_testkit::controlplane::{client_from_kubeconfig, kubeconfig_yaml};
use kiln_testkit::{
    Action, ControlPlane, FaultProxy, Match, Moto, Outcome, Rule, Upstream, When, alarm_state, put_alarm,
    set_alarm_state, static_clients,
};
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};

const WAIT: Duration = Duration::from_secs(30);

/// The alarm's state read from moto directly (not through the proxy).
async fn state(direct: &Clients) -> String {
    alarm_state(direct, "web-5xx").await.expect("alarm state").unwrap_or_default()
}

fn set_state() -> Match {
    Match { body: Some("Action=SetAlarmState".into()), ..Match::any() }
}

async fn wait_holding(proxy: &FaultProxy, n: usize) {
    proxy.wait_holding(n, WAIT).await.expect("held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_front_of_moto_it_forwards_holds_delays_fails_black_holes_and_logs() {
    let moto = Moto::start();
    let direct = moto.clients().await;
    let proxy = FaultProxy::start(Upstream::Http(moto.url()), false).await.expect("proxy");
    let via = static_clients(proxy.url()).await;

    // Forwarded and logged, with the AWS Query action in the body.
    put_alarm(&via, "web-5xx").await.expect("put alarm through the proxy");
    assert_eq!(state(&direct).await, "OK", "put_alarm leaves a new alarm OK");
    let log = proxy.log();
    let put = log.iter().find(|e| e.body.contains("Action=PutMetricAlarm")).expect("logged");
    assert_eq!((put.method.as_str(), &put.outcome), ("POST", &Outcome::Forwarded(200)));
    assert!(put.answered.is_some_and(|a| a >= put.received));

    // Held before the upstream: moto has not seen the write until release.
    proxy.add(Rule::times(set_state(), Action::Hold(When::Before), 1));
    let writer = {
        let via = via.clone();
        tokio::spawn(async move { set_alarm_state(&via, "web-5xx", "ALARM").await })
    };
    wait_holding(&proxy, 1).await;
    assert_eq!(state(&direct).await, "OK", "not applied while held");
    assert!(!writer.is_finished());
    proxy.release();
    writer.await.expect("task").expect("the held write completes after release");
    assert_eq!(state(&direct).await, "ALARM");

    // Held after the upstream: applied, the answer withheld until release.
    proxy.add(Rule::times(set_state(), Action::Hold(When::After), 1));
    let writer = {
        let via = via.clone();
        tokio::spawn(async move { set_alarm_state(&via, "web-5xx", "OK").await })
    };
    wait_holding(&proxy, 1).await;
    assert_eq!(state(&direct).await, "OK", "applied, answer withheld");
    assert!(!writer.is_finished());
    proxy.release();
    writer.await.expect("task").expect("answer delivered after release");

    // A held request whose client gave up still lands on release (it was sent).
    let mark = proxy.log().len() as u64;
    proxy.add(Rule::times(set_state(), Action::Hold(When::Before), 1));
    let writer = {
        let via = via.clone();
        tokio::spawn(async move { set_alarm_state(&via, "web-5xx", "ALARM").await })
    };
    wait_holding(&proxy, 1).await;
    writer.abort();
    let _ = writer.await;
    assert_eq!(state(&direct).await, "OK");
    proxy.release();
    proxy
        .wait_for(WAIT, "the abandoned write forwarded", |log| {
            log.iter().any(|e| e.seq >= mark && e.held && e.outcome == Outcome::Forwarded(200))
        })
        .await
        .expect("forwarded");
    assert_eq!(state(&direct).await, "ALARM");

    // Failed by the proxy, as AWS would answer: moto never sees it.
    let denied = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                  <Message>denied by the fault proxy</Message></Error></ErrorResponse>";
    proxy.add(Rule::times(
        set_state(),
        Action::Fail { status: 403, content_type: "text/xml".into(), body: denied.into() },
        1,
    ));
    let refused = set_alarm_state(&via, "web-5xx", "OK").await.expect_err("refused");
    assert!(refused.contains("AccessDenied") || refused.contains("denied"), "{refused}");
    assert_eq!(state(&direct).await, "ALARM");
    assert!(proxy.log().iter().any(|e| e.outcome == Outcome::Failed(403)));

    // Delayed by at least the delay.
    proxy.add(Rule::times(set_state(), Action::Delay(Duration::from_millis(700)), 1));
    let started = Instant::now();
    set_alarm_state(&via, "web-5xx", "OK").await.expect("delayed write");
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(state(&direct).await, "OK");

    // Black-holed: never answered, never forwarded.
    proxy.add(Rule::always(set_state(), Action::BlackHole));
    let lost = tokio::time::timeout(Duration::from_secs(2), set_alarm_state(&via, "web-5xx", "ALARM")).await;
    assert!(lost.is_err(), "a black-holed call never returns: {lost:?}");
    assert_eq!(state(&direct).await, "OK");
    proxy.clear();
    set_alarm_state(&via, "web-5xx", "ALARM").await.expect("rules cleared");
    assert_eq!(state(&direct).await, "ALARM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_front_of_kube_apiserver_it_terminates_tls_streams_watches_and_holds_writes() {
    let cp = ControlPlane::start(&[]);
    let ca = std::fs::read(cp.ca_path()).expect("CA");
    let proxy =
        FaultProxy::start(Upstream::Https { url: cp.server().to_owned(), ca_pem: ca }, true).await.expect("proxy");
    let ca_file = std::env::temp_dir().join(format!("kiln-proxy-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, proxy.ca_pem().expect("the proxy serves HTTPS")).expect("write CA");
    let admin_token = cp.token("admin").expect("admin token");
    let via = client_from_kubeconfig(&kubeconfig_yaml(proxy.url(), &ca_file, &admin_token)).await.expect("client");
    let direct = cp.client("admin").await.expect("direct client");

    let maps: Api<ConfigMap> = Api::namespaced(via.clone(), "default");
    let direct_maps: Api<ConfigMap> = Api::namespaced(direct, "default");
    let map = |name: &str| ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        ..Default::default()
    };

    // A watch streams through the proxy.
    let list = maps.list(&Default::default()).await.expect("list through the proxy");
    let version = list.metadata.resource_version.expect("resourceVersion");
    let watcher = {
        let maps = maps.clone();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            let mut stream = maps.watch(&WatchParams::default().timeout(20), &version).await.expect("watch").boxed();
            while let Some(event) = stream.next().await {
                if let Ok(WatchEvent::Added(m)) = event
                    && m.metadata.name.as_deref() == Some("first")
                {
                    return true;
                }
            }
            false
        })
    };
    maps.create(&PostParams::default(), &map("first")).await.expect("create through the proxy");
    assert!(tokio::time::timeout(WAIT, watcher).await.expect("in time").expect("task"), "the watch saw the create");

    // A write held before the server: not stored until release.
    proxy.add(Rule::times(Match::path("/configmaps").and_method("POST"), Action::Hold(When::Before), 1));
    let writer = {
        let maps = maps.clone();
        let second = map("second");
        tokio::spawn(async move { maps.create(&PostParams::default(), &second).await.map(|_| ()) })
    };
    wait_holding(&proxy, 1).await;
    assert!(direct_maps.get_opt("second").await.expect("direct read").is_none(), "not stored while held");
    proxy.release();
    writer.await.expect("task").expect("stored after release");
    assert!(direct_maps.get_opt("second").await.expect("direct read").is_some());

    // A refusal the server would give.
    let conflict = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected conflict","reason":"Conflict","code":409}"#;
    proxy.add(Rule::times(Match::path("/configmaps").and_method("POST"), Action::fail_json(409, conflict), 1));
    match maps.create(&PostParams::default(), &map("third")).await {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.message.as_str()), (409, "injected conflict")),
        other => panic!("expected the injected conflict, got {other:?}"),
    }
    let log = proxy.log();
    assert!(log.iter().any(|e| e.path.contains("watch=true") && e.method == "GET"), "the watch is logged");
    assert!(log.iter().filter(|e| e.method == "POST").count() >= 3);
    let _ = std::fs::remove_file(&ca_file);
}
