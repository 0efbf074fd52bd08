//! Conformance of the in-repo API test server, driven through kube-rs (`kube::Api`,
//! `kube::runtime::watcher`, `kube::Discovery`) over real HTTP on 127.0.0.1.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kiln_test_apiserver::{AdmissionOperation, Config, FaultRule, Faults, TestServer, start};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Discovery};
use serde_json::{Value, json};

async fn client_for(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::from_yaml(kubeconfig).expect("test setup");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("test setup");
    Client::try_from(cfg).expect("test setup")
}

async fn setup() -> (TestServer, Client) {
    let server = start(Config::default().with_user("admin-token", "admin", &["system:masters"]).with_user(
        "alice-token",
        "alice@example.com",
        &["security"],
    ))
    .await
    .expect("test setup");
    let client = client_for(&server.kubeconfig).await;
    (server, client)
}

fn kiln(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kiln.dev", "v1alpha1", kind), plural)
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("test setup");
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("test setup");
}

fn release(ns: &str, name: &str) -> DynamicObject {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/release-ingest-worker.yaml"))
            .expect("test setup");
    let mut v: Value = serde_saphyr::from_str(&text).expect("test setup");
    v["metadata"] = json!({"name": name, "namespace": ns});
    serde_json::from_value(v).expect("test setup")
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "x"}}, "data": data}))
        .expect("test setup")
}

fn api_err(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_lists_kiln_and_core_types() {
    let (_server, client) = setup().await;
    let discovery = Discovery::new(client).run().await.unwrap();
    let kiln = discovery.get("kiln.dev").expect("kiln.dev group");
    let (rel, caps) = kiln.recommended_kind("Release").expect("Release");
    assert_eq!(rel.plural, "releases");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let (_, caps) = kiln.recommended_kind("Environment").expect("Environment");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    assert!(discovery.get("coordination.k8s.io").is_some());
    assert!(discovery.get("events.k8s.io").is_some());
    assert!(discovery.get("").is_some_and(|g| g.recommended_kind("ConfigMap").is_some()));
}

#[tokio::test]
async fn unauthenticated_requests_get_401_and_tokens_map_to_users() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let server = start(Config::default().with_user("good", "alice", &["security"]).with_admission_hook(
        std::sync::Arc::new(move |req: &kiln_test_apiserver::AdmissionRequest<'_>| {
            seen2.lock().unwrap().push((req.operation, req.user.username.clone(), req.user.groups.clone()));
            if req.name == "forbidden" { Err("not allowed".into()) } else { Ok(()) }
        }),
    ))
    .await
    .unwrap();
    let bad = client_for(&server.kubeconfig_for_token("wrong")).await;
    let err = Api::<ConfigMap>::default_namespaced(bad).list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_err(err).0, 401);
    let good = client_for(&server.kubeconfig).await;
    let api = Api::<ConfigMap>::default_namespaced(good);
    api.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let (op, user, groups) = seen.lock().unwrap()[0].clone();
    assert_eq!(op, AdmissionOperation::Create);
    assert_eq!(user, "alice");
    assert_eq!(groups, ["security", "system:authenticated"]);
    let (code, reason, msg) = api_err(api.create(&PostParams::default(), &cm("forbidden", &[])).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(msg.contains("not allowed"), "{msg}");
}

#[tokio::test]
async fn self_subject_review_names_the_caller() {
    // What `kubectl auth whoami` and `kubectl kiln approve` ask: the identity behind the token.
    let (server, admin) = setup().await;
    let alice = client_for(&server.kubeconfig_for_token("alice-token")).await;
    let review = Api::<SelfSubjectReview>::all(alice)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let info = review.status.and_then(|s| s.user_info).expect("userInfo");
    assert_eq!(info.username.as_deref(), Some("alice@example.com"));
    assert_eq!(info.groups.unwrap_or_default(), ["security", "system:authenticated"]);
    let review = Api::<SelfSubjectReview>::all(admin.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    assert_eq!(review.status.and_then(|s| s.user_info).and_then(|u| u.username).as_deref(), Some("admin"));
    // Listed in discovery like the real server's.
    let groups = admin.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "authentication.k8s.io"));
    let list = admin.list_api_group_resources("authentication.k8s.io/v1").await.unwrap();
    let ssr = list.resources.iter().find(|r| r.name == "selfsubjectreviews").expect("selfsubjectreviews");
    assert_eq!(
        (ssr.kind.as_str(), ssr.namespaced, ssr.verbs.clone()),
        ("SelfSubjectReview", false, vec!["create".to_string()])
    );
    // A wrong token is still 401.
    let bad = client_for(&server.kubeconfig_for_token("wrong")).await;
    let err = Api::<SelfSubjectReview>::all(bad)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap_err();
    assert_eq!(api_err(err).0, 401);
}

#[tokio::test]
async fn json_patch_test_op_guards_concurrent_appends() {
    // kubectl kiln approve appends with [test <the list as read>, add /-]: a writer that read an
    // older list fails with 422 and changes nothing (as kube-apiserver answers a failed test).
    let (_server, client) = setup().await;
    namespace(&client, "jp").await;
    let promos = Api::<DynamicObject>::namespaced_with(client.clone(), "jp", &kiln("Promotion", "promotions"));
    let promo: DynamicObject = serde_json::from_value(json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": "p"}, "spec": {"release": "r", "environment": "prod"}}))
    .unwrap();
    let created = promos.create(&PostParams::default(), &promo).await.unwrap();
    assert_eq!(created.data["spec"]["approvals"], json!([]), "defaulted");
    let approval = |user: &str| json!({"user": user, "role": "security", "at": "2026-01-01T00:00:00Z"});
    let append = |seen: Value, user: &str| -> json_patch::Patch {
        serde_json::from_value(json!([
            {"op": "test", "path": "/spec/approvals", "value": seen},
            {"op": "add", "path": "/spec/approvals/-", "value": approval(user)},
        ]))
        .unwrap()
    };
    promos.patch("p", &PatchParams::default(), &Patch::Json::<()>(append(json!([]), "a"))).await.unwrap();
    let (code, _, msg) = api_err(
        promos.patch("p", &PatchParams::default(), &Patch::Json::<()>(append(json!([]), "b"))).await.unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");
    let now = promos.get("p").await.unwrap();
    assert_eq!(now.data["spec"]["approvals"], json!([approval("a")]));
    promos.patch("p", &PatchParams::default(), &Patch::Json::<()>(append(json!([approval("a")]), "b"))).await.unwrap();
    let now = promos.get("p").await.unwrap();
    assert_eq!(now.data["spec"]["approvals"], json!([approval("a"), approval("b")]));
}

#[tokio::test]
async fn crud_with_resource_versions_and_status_errors() {
    let (server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    let created = api.create(&PostParams::default(), &cm("one", &[("k", "v")])).await.unwrap();
    let rv1: u64 = created.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert!(created.metadata.managed_fields.as_ref().is_some_and(|m| !m.is_empty()));
    let (code, reason, msg) = api_err(api.create(&PostParams::default(), &cm("one", &[])).await.unwrap_err());
    assert_eq!((code, reason.as_str(), msg.as_str()), (409, "AlreadyExists", "configmaps \"one\" already exists"));

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api.replace("one", &PostParams::default(), &changed).await.unwrap();
    let rv2: u64 = updated.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    // A stale resourceVersion conflicts.
    let (code, reason, _) = api_err(api.replace("one", &PostParams::default(), &changed).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    // Identical content is a no-op: no new resourceVersion.
    let same = api.replace("one", &PostParams::default(), &updated).await.unwrap();
    assert_eq!(same.metadata.resource_version, updated.metadata.resource_version);

    // Cluster-scoped and namespace checks.
    let in_missing = Api::<ConfigMap>::namespaced(client.clone(), "nope");
    let (code, _, msg) = api_err(in_missing.create(&PostParams::default(), &cm("x", &[])).await.unwrap_err());
    assert_eq!((code, msg.as_str()), (404, "namespaces \"nope\" not found"));

    // generateName.
    let mut g = cm("", &[]);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &g).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("gen-"));

    // Delete of a built-in returns a Success Status; then 404.
    let deleted = api.delete("one", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right());
    let (code, reason, msg) = api_err(api.get("one").await.unwrap_err());
    assert_eq!((code, reason.as_str(), msg.as_str()), (404, "NotFound", "configmaps \"one\" not found"));
    assert!(server.handle.get("configmaps", Some("default"), "one").is_none());
    assert!(server.handle.resource_version() > rv2);
}

#[tokio::test]
async fn custom_resources_generation_status_and_admission() {
    let (_server, client) = setup().await;
    namespace(&client, "ingest").await;
    let ar = kiln("Release", "releases");
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), "ingest", &ar);
    let mut rel = release("ingest", "r1");
    rel.data["status"] = json!({"phase": "Succeeded"});
    let created = api.create(&PostParams::default(), &rel).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.data.get("status").is_none(), "status is dropped on create");

    // Status subresource: only status changes, generation stays.
    let st = api
        .patch_status(
            "r1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Progressing"}, "spec": {"changeRef": "X"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["phase"], "Progressing");
    assert_eq!(st.data["spec"]["changeRef"], "CHG-20251028-001");
    assert_eq!(st.metadata.generation, Some(1));

    // Main resource: status ignored, spec change bumps generation; label change does not.
    let main = api
        .patch(
            "r1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}, "spec": {"environments": ["dev", "stg"]}})),
        )
        .await
        .unwrap();
    assert_eq!(main.data["status"]["phase"], "Progressing");
    assert_eq!(main.metadata.generation, Some(2));
    let labelled = api
        .patch("r1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));

    // Admission: schema (422 with causes) and CEL transition rules (immutable artifacts).
    let mut bad = release("ingest", "bad");
    bad.data["spec"]["version"] = json!("1.2");
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(s.message.starts_with("Release.kiln.dev \"bad\" is invalid: spec.version"), "{}", s.message);
    let (code, _, msg) = api_err(
        api.patch("r1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"changeRef": "CHG-2"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");
    assert!(msg.contains("spec.changeRef") && msg.contains("cannot be changed"), "{msg}");
    // Unknown fields with fieldValidation=Strict are 400.
    let mut unknown = release("ingest", "unk");
    unknown.data["spec"]["bogus"] = json!(1);
    let req = axum::http::Request::post("/apis/kiln.dev/v1alpha1/namespaces/ingest/releases?fieldValidation=Strict")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&unknown).unwrap())
        .unwrap();
    let (code, _, msg) = api_err(client.request::<Value>(req).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(msg.contains("unknown field \"spec.bogus\""), "{msg}");

    // Cluster-scoped Environment.
    let envs = Api::<DynamicObject>::all_with(client.clone(), &kiln("Environment", "environments"));
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/environments.yaml")).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    for d in docs {
        let obj: DynamicObject = serde_json::from_value(d).unwrap();
        envs.create(&PostParams::default(), &obj).await.unwrap();
    }
    assert_eq!(envs.list(&ListParams::default()).await.unwrap().items.len(), 3);
}

#[tokio::test]
async fn finalizers_and_graceful_deletion() {
    let (_server, client) = setup().await;
    namespace(&client, "fin").await;
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), "fin", &kiln("Release", "releases"));
    let mut rel = release("fin", "r");
    rel.metadata.finalizers = Some(vec!["kiln.dev/cleanup".into()]);
    api.create(&PostParams::default(), &rel).await.unwrap();
    let first = api.delete("r", &DeleteParams::default()).await.unwrap();
    let obj = first.left().expect("object still there");
    assert!(obj.metadata.deletion_timestamp.is_some());
    assert!(api.get("r").await.unwrap().metadata.deletion_timestamp.is_some());
    // No new finalizers while deleting.
    let (code, _, _) = api_err(
        api.patch(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["kiln.dev/cleanup", "x/y"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422);
    api.patch("r", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(api_err(api.get("r").await.unwrap_err()).0, 404);

    // Immediate deletion of a custom resource returns the object.
    api.create(&PostParams::default(), &release("fin", "r2")).await.unwrap();
    assert!(api.delete("r2", &DeleteParams::default()).await.unwrap().is_left());

    // Deleting a namespace removes its content.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "fin");
    cms.create(&PostParams::default(), &cm("c", &[])).await.unwrap();
    Api::<Namespace>::all(client.clone()).delete("fin", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(cms.get("c").await.unwrap_err()).0, 404);
    assert_eq!(api_err(Api::<Namespace>::all(client).get("fin").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn list_selectors_and_pagination() {
    let (_server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    for i in 0..7 {
        let mut c = cm(&format!("c{i}"), &[]);
        c.metadata.labels = Some([("parity".to_string(), if i % 2 == 0 { "even" } else { "odd" }.to_string())].into());
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let even = api.list(&ListParams::default().labels("parity=even")).await.unwrap();
    assert_eq!(even.items.len(), 4);
    let set = api.list(&ListParams::default().labels("parity in (odd),parity!=even")).await.unwrap();
    assert_eq!(set.items.len(), 3);
    let by_name = api.list(&ListParams::default().fields("metadata.name=c3")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    let (code, _, _) = api_err(api.list(&ListParams::default().fields("data.x=1")).await.unwrap_err());
    assert_eq!(code, 400);

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    let mut rvs = Vec::new();
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        rvs.push(page.metadata.resource_version.clone());
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    assert!(rvs.windows(2).all(|w| w[0] == w[1]), "pages share the list's resourceVersion");
}

#[tokio::test]
async fn raw_watch_events_in_order_with_bookmarks_and_timeout() {
    let (server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    let rv = server.handle.resource_version().to_string();
    let wp = WatchParams::default().timeout(2);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    api.create(&PostParams::default(), &cm("w", &[])).await.unwrap();
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await.unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    let mut last_rv = 0u64;
    while let Some(ev) = stream.try_next().await.unwrap() {
        let (k, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => ("BOOKMARK", ConfigMap::default()),
            WatchEvent::Error(e) => panic!("{e:?}"),
        };
        if k != "BOOKMARK" {
            let r: u64 = o.metadata.resource_version.unwrap().parse().unwrap();
            assert!(r > last_rv);
            last_rv = r;
            kinds.push(k);
        } else {
            kinds.push(k);
        }
    }
    // timeoutSeconds ended the stream; bookmarks were asked for (kube's default).
    let events: Vec<&str> = kinds.iter().copied().filter(|k| *k != "BOOKMARK").collect();
    assert_eq!(events, ["ADDED", "MODIFIED", "DELETED"]);
    assert!(kinds.contains(&"BOOKMARK"), "{kinds:?}");

    // 410 Gone for a resourceVersion older than the retained window.
    server.handle.compact();
    let mut stream = api.watch(&WatchParams::default().timeout(1), &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_with_selector_transitions() {
    let (server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("s", &[])).await.unwrap();
    let rv = server.handle.resource_version().to_string();
    let mut stream =
        api.watch(&WatchParams::default().labels("app=x").timeout(1).disable_bookmarks(), &rv).await.unwrap().boxed();
    api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})))
        .await
        .unwrap();
    api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while let Some(ev) = stream.try_next().await.unwrap() {
        kinds.push(match ev {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        });
    }
    assert_eq!(kinds, ["DELETED", "ADDED"]);
}

async fn next_event<K: std::fmt::Debug>(
    s: &mut (impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin),
) -> watcher::Event<K> {
    let ev =
        tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("event in time").expect("stream open");
    ev.expect("no error")
}

#[tokio::test]
async fn runtime_watcher_lists_watches_and_relists_after_410() {
    let (server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("pre", &[])).await.unwrap();
    // page_size 1 forces several list pages.
    let mut w = watcher(api.clone(), watcher::Config::default().page_size(1)).boxed();
    assert!(matches!(dbg!(next_event(&mut w).await), watcher::Event::Init));
    assert!(
        matches!(dbg!(next_event(&mut w).await), watcher::Event::InitApply(c) if c.metadata.name.as_deref() == Some("pre"))
    );
    assert!(matches!(next_event(&mut w).await, watcher::Event::InitDone));
    api.create(&PostParams::default(), &cm("live", &[])).await.unwrap();
    assert!(matches!(next_event(&mut w).await, watcher::Event::Apply(c) if c.metadata.name.as_deref() == Some("live")));

    // A dropped connection resumes from the last version: nothing is replayed or lost.
    server.handle.drop_watches();
    // Let the change land while the watch is down (the outcome does not depend on it: the watcher
    // resumes from its resourceVersion either way, which is what is asserted).
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.delete("live", &DeleteParams::default()).await.unwrap();
    assert!(
        matches!(next_event(&mut w).await, watcher::Event::Delete(c) if c.metadata.name.as_deref() == Some("live"))
    );

    // Compaction + dropped connection: the watcher gets 410 and relists.
    // Compaction while disconnected: the watcher's version is too old, it gets 410 Gone and
    // relists (as against a real server), and sees what changed meanwhile.
    server.handle.drop_watches();
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.create(&PostParams::default(), &cm("after", &[])).await.unwrap();
    server.handle.compact();
    let lists_before = server.handle.requests(Some("list"), Some("configmaps"));
    let (mut seen_gone, mut seen_init) = (false, false);
    let mut names = Vec::new();
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap() {
            Err(watcher::Error::WatchError(e)) if e.code == 410 => seen_gone = true,
            Err(e) => panic!("{e:?}"),
            Ok(watcher::Event::Init) => seen_init = true,
            Ok(watcher::Event::InitApply(c)) => names.extend(c.metadata.name),
            Ok(watcher::Event::InitDone) if seen_init => break,
            Ok(_) => {}
        }
    }
    assert!(seen_gone && seen_init);
    assert!(server.handle.requests(Some("list"), Some("configmaps")) > lists_before);
    assert!(names.contains(&"after".to_string()), "{names:?}");
}

#[tokio::test]
async fn runtime_watcher_streaming_list() {
    let (_server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("pre", &[])).await.unwrap();
    let mut w = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert!(matches!(next_event(&mut w).await, watcher::Event::Init));
    assert!(matches!(next_event(&mut w).await, watcher::Event::InitApply(_)));
    assert!(matches!(next_event(&mut w).await, watcher::Event::InitDone));
}

#[tokio::test]
async fn patches_merge_json_and_server_side_apply() {
    let (_server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("p", &[("a", "1")])).await.unwrap();
    let j: json_patch::Patch = serde_json::from_value(json!([{"op": "add", "path": "/data/b", "value": "2"}])).unwrap();
    let out = api.patch("p", &PatchParams::default(), &Patch::Json::<()>(j)).await.unwrap();
    assert_eq!(out.data.unwrap().len(), 2);
    // Strategic merge (kubectl's default for core types) behaves as a merge here.
    let out = api.patch("p", &PatchParams::default(), &Patch::Strategic(json!({"data": {"a": null}}))).await.unwrap();
    assert_eq!(out.data.unwrap().len(), 1);

    // Server-side apply: create, conflict between managers, force, removal of dropped fields.
    let leases = Api::<Lease>::default_namespaced(client.clone());
    let lease = |holder: &str, extra: bool| {
        let mut spec = json!({"holderIdentity": holder});
        if extra {
            spec["leaseDurationSeconds"] = json!(15);
        }
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": spec})
    };
    let a = PatchParams::apply("a");
    let made = leases.patch("l", &a, &Patch::Apply(lease("a", true))).await.unwrap();
    assert_eq!(made.spec.as_ref().unwrap().holder_identity.as_deref(), Some("a"));
    let mf = made.metadata.managed_fields.unwrap();
    assert_eq!((mf[0].manager.as_deref(), mf[0].operation.as_deref()), (Some("a"), Some("Apply")));
    let (code, reason, msg) =
        api_err(leases.patch("l", &PatchParams::apply("b"), &Patch::Apply(lease("b", false))).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(msg.contains("conflict with \"a\"") && msg.contains(".spec.holderIdentity"), "{msg}");
    let forced = leases.patch("l", &PatchParams::apply("b").force(), &Patch::Apply(lease("b", false))).await.unwrap();
    assert_eq!(forced.spec.as_ref().unwrap().holder_identity.as_deref(), Some("b"));
    // a re-applies without leaseDurationSeconds: a owned it alone, so it is removed.
    let mut only_name = lease("b", false);
    only_name["spec"] = json!({});
    let out = leases.patch("l", &a, &Patch::Apply(only_name)).await.unwrap();
    assert_eq!(out.spec.as_ref().unwrap().lease_duration_seconds, None);
    assert_eq!(out.spec.as_ref().unwrap().holder_identity.as_deref(), Some("b"));

    // Apply on a kiln status subresource, with force (the controller's pattern).
    namespace(&client, "ssa").await;
    let rels = Api::<DynamicObject>::namespaced_with(client.clone(), "ssa", &kiln("Release", "releases"));
    let mut body = serde_json::to_value(release("ssa", "r")).unwrap();
    rels.patch("r", &PatchParams::apply("ci"), &Patch::Apply(body.clone())).await.unwrap();
    let status = json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": "r"},
        "status": {"phase": "Progressing"}});
    let out = rels
        .patch_status("r", &PatchParams::apply("kiln.dev/controller").force(), &Patch::Apply(status))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["phase"], "Progressing");
    assert_eq!(out.metadata.generation, Some(1));
    // The status apply is tracked (subresource "status"), so a field the controller stops
    // applying is removed, maps and all, as kube-apiserver does.
    let mf = out.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        mf.iter().any(|e| e.manager.as_deref() == Some("kiln.dev/controller")
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref() == Some("status")),
        "{mf:?}"
    );
    let with_env = json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": "r"},
        "status": {"phase": "Progressing", "currentEnvironment": "dev",
                   "environments": [{"name": "dev", "phase": "Deploying"}]}});
    let out = rels
        .patch_status("r", &PatchParams::apply("kiln.dev/controller").force(), &Patch::Apply(with_env))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["currentEnvironment"], "dev");
    let without = json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "metadata": {"name": "r"},
        "status": {"phase": "Progressing"}});
    let out = rels
        .patch_status("r", &PatchParams::apply("kiln.dev/controller").force(), &Patch::Apply(without))
        .await
        .unwrap();
    assert_eq!(out.data["status"], json!({"phase": "Progressing"}));
    body["spec"]["environments"] = json!(["dev", "stg"]);
    let out = rels.patch("r", &PatchParams::apply("ci"), &Patch::Apply(body)).await.unwrap();
    assert_eq!((out.metadata.generation, out.data["status"]["phase"].as_str()), (Some(2), Some("Progressing")));
}

#[tokio::test]
async fn faults_on_demand() {
    let (server, client) = setup().await;
    let api = Api::<ConfigMap>::default_namespaced(client.clone());
    server.handle.set_faults(Faults {
        rules: vec![
            FaultRule::times(Some("create"), Some("configmaps"), 500, 1),
            FaultRule::times(Some("get"), None, 429, 1),
        ],
        ..Faults::default()
    });
    assert_eq!(api_err(api.create(&PostParams::default(), &cm("f", &[])).await.unwrap_err()).0, 500);
    api.create(&PostParams::default(), &cm("f", &[])).await.unwrap();
    // kube-rs retries 429 by itself: the first GET is refused, the retry succeeds.
    let before = server.handle.requests(Some("get"), Some("configmaps"));
    api.get("f").await.unwrap();
    assert_eq!(server.handle.requests(Some("get"), Some("configmaps")) - before, 2);
    server.handle.set_faults(Faults { latency: Duration::from_millis(150), ..Faults::default() });
    let t = std::time::Instant::now();
    api.get("f").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));
    server.handle.clear_faults();
    assert!(server.handle.requests(Some("create"), Some("configmaps")) >= 2);
}
