//! The real control plane does what kiln's tests rely on it for: token users and RBAC, TokenRequest
//! for ServiceAccounts, ValidatingAdmissionPolicy, garbage collection of dependents and namespace
//! deletion that waits for finalizers. One control plane serves every case (they use their own
//! namespaces), so the file costs one start.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kiln_testkit::{ControlPlane, User};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

const WAIT: Duration = Duration::from_secs(60);

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {}s waiting for {what}", WAIT.as_secs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn namespace(admin: &kube::Client, name: &str) {
    let ns = Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_control_plane_authenticates_authorizes_admits_and_collects() {
    let cp = ControlPlane::start(&[User::new("alice").in_group("team-a")]);
    let admin = cp.client("admin").await.expect("admin client");
    let alice = cp.client("alice").await.expect("alice client");

    // Token users: the server knows who is calling, with their groups.
    let review: SelfSubjectReview = Api::all(alice.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("alice's SelfSubjectReview");
    let info = review.status.and_then(|s| s.user_info).expect("user info");
    assert_eq!(info.username.as_deref(), Some("alice"));
    assert!(info.groups.unwrap_or_default().contains(&"team-a".to_owned()));

    // RBAC: alice has no grant, so she cannot read Secrets.
    namespace(&admin, "t-rbac").await;
    let denied = Api::<Secret>::namespaced(alice.clone(), "t-rbac").list(&Default::default()).await;
    match denied {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("alice listed Secrets: {other:?}"),
    }

    // The ServiceAccount controller gives each namespace its default account; TokenRequest issues
    // a token the server then authenticates as that account.
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), "t-rbac");
    eventually("the default ServiceAccount", || {
        let accounts = accounts.clone();
        async move { accounts.get_opt("default").await.ok().flatten() }
    })
    .await;
    let request = TokenRequest {
        spec: TokenRequestSpec { audiences: vec![], expiration_seconds: Some(600), ..Default::default() },
        ..Default::default()
    };
    let issued: TokenRequest =
        accounts.create_subresource("token", "default", &PostParams::default(), &request).await.expect("TokenRequest");
    let token = issued.status.expect("token status").token;
    let as_account = cp.client_with_token(&token).await.expect("ServiceAccount client");
    let review: SelfSubjectReview = Api::all(as_account)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("the ServiceAccount's SelfSubjectReview");
    assert_eq!(
        review.status.and_then(|s| s.user_info).and_then(|u| u.username).as_deref(),
        Some("system:serviceaccount:t-rbac:default")
    );

    // ValidatingAdmissionPolicy: a policy refusing ConfigMaps named "forbidden" refuses them, with
    // its message, once the binding is in force.
    let policy: serde_json::Value = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "no-forbidden"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]
            }]},
            "validations": [{"expression": "object.metadata.name != 'forbidden'", "message": "that name is forbidden"}]
        }
    });
    let binding: serde_json::Value = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "no-forbidden"},
        "spec": {"policyName": "no-forbidden", "validationActions": ["Deny"]}
    });
    apply(&admin, &policy).await;
    apply(&admin, &binding).await;
    namespace(&admin, "t-vap").await;
    let maps = Api::<ConfigMap>::namespaced(admin.clone(), "t-vap");
    let message = eventually("the admission policy to refuse", || {
        let maps = maps.clone();
        async move {
            match maps.create(&PostParams::default(), &config_map("forbidden")).await {
                Err(kube::Error::Api(e)) => Some(e.message),
                Ok(_) => {
                    // Not in force yet: remove it and try again.
                    let _ = maps.delete("forbidden", &DeleteParams::default()).await;
                    None
                }
                Err(_) => None,
            }
        }
    })
    .await;
    assert!(message.contains("that name is forbidden"), "{message}");
    maps.create(&PostParams::default(), &config_map("allowed")).await.expect("other names pass");

    // Garbage collection: deleting an owner deletes what it owns.
    namespace(&admin, "t-gc").await;
    let maps = Api::<ConfigMap>::namespaced(admin.clone(), "t-gc");
    let owner = maps.create(&PostParams::default(), &config_map("owner")).await.expect("owner");
    let mut dependent = config_map("dependent");
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().expect("uid"),
        ..Default::default()
    }]);
    maps.create(&PostParams::default(), &dependent).await.expect("dependent");
    maps.delete("owner", &DeleteParams::background()).await.expect("delete owner");
    eventually("the dependent to be collected", || {
        let maps = maps.clone();
        async move { matches!(maps.get_opt("dependent").await, Ok(None)).then_some(()) }
    })
    .await;

    // Namespace deletion waits for finalizers on what the namespace holds, then completes.
    namespace(&admin, "t-ns").await;
    let maps = Api::<ConfigMap>::namespaced(admin.clone(), "t-ns");
    let mut held = config_map("held");
    held.metadata.finalizers = Some(vec!["kiln.dev/test".into()]);
    maps.create(&PostParams::default(), &held).await.expect("held");
    let namespaces = Api::<Namespace>::all(admin.clone());
    namespaces.delete("t-ns", &DeleteParams::default()).await.expect("delete namespace");
    eventually("the held ConfigMap to be marked for deletion", || {
        let maps = maps.clone();
        async move { maps.get_opt("held").await.ok().flatten().and_then(|m| m.metadata.deletion_timestamp) }
    })
    .await;
    let phase = namespaces.get("t-ns").await.expect("namespace still there").status.and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Terminating"));
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    maps.patch("held", &PatchParams::default(), &Patch::Merge(&release)).await.expect("remove finalizer");
    eventually("the namespace to be gone", || {
        let namespaces = namespaces.clone();
        async move { matches!(namespaces.get_opt("t-ns").await, Ok(None)).then_some(()) }
    })
    .await;
}

async fn apply(client: &kube::Client, object: &serde_json::Value) {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().expect("kind");
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.expect("discovery");
    let api = Api::<kube::api::DynamicObject>::all_with(client.clone(), &resource);
    let name = object["metadata"]["name"].as_str().expect("name");
    api.patch(name, &PatchParams::apply("kiln-test").force(), &Patch::Apply(object)).await.expect("apply");
}
