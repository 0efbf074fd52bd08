//! RBAC authorization of the API test server (`Config::rbac`), through kube-rs clients acting as
//! different users and ServiceAccounts: verbs, resources and subresources, namespaced and
//! cluster bindings, resourceNames, aggregated ClusterRoles, non-resource URLs, access reviews,
//! impersonation, manifests loaded at start, and kube-apiserver's exact 403 messages.

use std::path::PathBuf;
use std::process::Command;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kiln_test_apiserver::{Config, TestServer, start};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Discovery};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

async fn client_for(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::from_yaml(kubeconfig).expect("test setup");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("test setup");
    Client::try_from(cfg).expect("test setup")
}

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test setup")
}

struct World {
    server: TestServer,
    admin: Client,
}

impl World {
    async fn new(config: Config) -> World {
        let server = start(
            config
                .with_rbac()
                .with_user("admin-token", "admin", &["system:masters"])
                .with_user("alice-token", "alice", &["kiln:security"])
                .with_user("bob-token", "bob", &["readers"])
                .with_user("carol-token", "carol", &[])
                .with_service_account("kiln-sa-token", "kiln-system", "kiln"),
        )
        .await
        .expect("test setup");
        let admin = client_for(&server.kubeconfig).await;
        for ns in ["ingest", "other", "kiln-system"] {
            Api::<Namespace>::all(admin.clone())
                .create(&PostParams::default(), &obj(json!({"metadata": {"name": ns}})))
                .await
                .expect("test setup");
        }
        World { server, admin }
    }

    async fn as_user(&self, token: &str) -> Client {
        client_for(&self.server.kubeconfig_for_token(token)).await
    }

    async fn create<K>(&self, api: Api<K>, v: Value)
    where
        K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        api.create(&PostParams::default(), &obj(v)).await.expect("test setup");
    }
}

fn promotions(client: Client, ns: &str) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kiln.dev", "v1alpha1", "Promotion"), "promotions");
    Api::namespaced_with(client, ns, &ar)
}

fn promotion(name: &str) -> DynamicObject {
    obj(json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": name},
        "spec": {"release": "r1", "environment": "prod"}}))
}

/// (code, reason, message) of an API error.
fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    let (code, reason, message) = api_err(r);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{message}");
    message
}

#[tokio::test]
async fn namespaced_roles_grant_verbs_on_resources_and_subresources() {
    let w = World::new(Config::default()).await;
    w.create(
        Api::<Role>::namespaced(w.admin.clone(), "ingest"),
        json!({"metadata": {"name": "promotion-status"}, "rules": [
            {"apiGroups": ["kiln.dev"], "resources": ["promotions"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["kiln.dev"], "resources": ["promotions/status"], "verbs": ["patch"]}]}),
    )
    .await;
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "ingest"),
        json!({"metadata": {"name": "alice-promotion-status"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "promotion-status"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}),
    )
    .await;
    promotions(w.admin.clone(), "ingest").create(&PostParams::default(), &promotion("p")).await.unwrap();
    promotions(w.admin.clone(), "other").create(&PostParams::default(), &promotion("p")).await.unwrap();

    let alice = w.as_user("alice-token").await;
    let mine = promotions(alice.clone(), "ingest");
    assert_eq!(mine.list(&ListParams::default()).await.unwrap().items.len(), 1);
    mine.get("p").await.unwrap();
    let status = json!({"status": {"phase": "Queued"}});
    mine.patch_status("p", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    // The main resource is not the status subresource.
    assert_eq!(
        forbidden(mine.patch("p", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"retry": 1}}))).await),
        r#"promotions.kiln.dev "p" is forbidden: User "alice" cannot patch resource "promotions" in API group "kiln.dev" in the namespace "ingest""#
    );
    assert_eq!(
        forbidden(mine.create(&PostParams::default(), &promotion("q")).await),
        r#"promotions.kiln.dev is forbidden: User "alice" cannot create resource "promotions" in API group "kiln.dev" in the namespace "ingest""#
    );
    assert_eq!(
        forbidden(mine.delete("p", &DeleteParams::default()).await),
        r#"promotions.kiln.dev "p" is forbidden: User "alice" cannot delete resource "promotions" in API group "kiln.dev" in the namespace "ingest""#
    );
    assert_eq!(
        forbidden(mine.delete_collection(&DeleteParams::default(), &ListParams::default()).await),
        r#"promotions.kiln.dev is forbidden: User "alice" cannot deletecollection resource "promotions" in API group "kiln.dev" in the namespace "ingest""#
    );
    // A RoleBinding grants nothing in another namespace, nor cluster-wide.
    assert_eq!(
        forbidden(promotions(alice.clone(), "other").list(&ListParams::default()).await),
        r#"promotions.kiln.dev is forbidden: User "alice" cannot list resource "promotions" in API group "kiln.dev" in the namespace "other""#
    );
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kiln.dev", "v1alpha1", "Promotion"), "promotions");
    assert_eq!(
        forbidden(Api::<DynamicObject>::all_with(alice.clone(), &ar).list(&ListParams::default()).await),
        r#"promotions.kiln.dev is forbidden: User "alice" cannot list resource "promotions" in API group "kiln.dev" at the cluster scope"#
    );
    assert_eq!(
        forbidden(
            promotions(alice.clone(), "other").patch_status("p", &PatchParams::default(), &Patch::Merge(&status)).await
        ),
        r#"promotions.kiln.dev "p" is forbidden: User "alice" cannot patch resource "promotions/status" in API group "kiln.dev" in the namespace "other""#
    );
    // watch is a verb of its own.
    let mut events = mine.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    assert!(matches!(events.next().await, Some(Ok(WatchEvent::Added(_)))));
    // Bob has no binding at all.
    let bob = w.as_user("bob-token").await;
    assert_eq!(
        forbidden(promotions(bob, "ingest").get("p").await),
        r#"promotions.kiln.dev "p" is forbidden: User "bob" cannot get resource "promotions" in API group "kiln.dev" in the namespace "ingest""#
    );
    // A binding whose role does not exist: the reason says so.
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "other"),
        json!({"metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"},
            "subjects": [{"kind": "User", "name": "alice"}]}),
    )
    .await;
    assert_eq!(
        forbidden(promotions(alice, "other").get("p").await),
        r#"promotions.kiln.dev "p" is forbidden: User "alice" cannot get resource "promotions" in API group "kiln.dev" in the namespace "other": RBAC: role.rbac.authorization.k8s.io "missing" not found"#
    );
}

#[tokio::test]
async fn cluster_bindings_groups_resource_names_and_clusterroles_in_namespaces() {
    let w = World::new(Config::default()).await;
    for ns in ["ingest", "other"] {
        let cms = Api::<ConfigMap>::namespaced(w.admin.clone(), ns);
        for name in ["allowed", "private"] {
            w.create(cms.clone(), json!({"metadata": {"name": name}})).await;
        }
    }
    w.create(
        Api::<ClusterRole>::all(w.admin.clone()),
        json!({"metadata": {"name": "read-allowed"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"], "verbs": ["get", "list", "watch"]}]}),
    )
    .await;
    w.create(
        Api::<ClusterRoleBinding>::all(w.admin.clone()),
        json!({"metadata": {"name": "readers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "read-allowed"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "readers"}]}),
    )
    .await;
    let bob = w.as_user("bob-token").await;
    for ns in ["ingest", "other"] {
        let cms = Api::<ConfigMap>::namespaced(bob.clone(), ns);
        cms.get("allowed").await.unwrap();
        assert_eq!(
            forbidden(cms.get("private").await),
            format!(
                r#"configmaps "private" is forbidden: User "bob" cannot get resource "configmaps" in API group "" in the namespace "{ns}""#
            )
        );
        // A list names no object, unless its field selector does (kube-apiserver's RequestInfo).
        assert_eq!(
            forbidden(cms.list(&ListParams::default()).await),
            format!(
                r#"configmaps is forbidden: User "bob" cannot list resource "configmaps" in API group "" in the namespace "{ns}""#
            )
        );
        let one = cms.list(&ListParams::default().fields("metadata.name=allowed")).await.unwrap();
        assert_eq!(one.items.len(), 1);
    }
    // A ClusterRole bound by a RoleBinding grants only in that namespace, deletecollection too.
    w.create(
        Api::<ClusterRole>::all(w.admin.clone()),
        json!({"metadata": {"name": "cm-cleaner"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "deletecollection"]}]}),
    )
    .await;
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "other"),
        json!({"metadata": {"name": "carol-cleans"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-cleaner"},
            "subjects": [{"kind": "User", "name": "carol"}]}),
    )
    .await;
    let carol = w.as_user("carol-token").await;
    Api::<ConfigMap>::namespaced(carol.clone(), "other")
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    assert!(w.server.handle.get("configmaps", Some("other"), "private").is_none());
    assert_eq!(
        forbidden(
            Api::<ConfigMap>::namespaced(carol, "ingest")
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
        ),
        r#"configmaps is forbidden: User "carol" cannot deletecollection resource "configmaps" in API group "" in the namespace "ingest""#
    );
    // The roleRef of a binding cannot change (kube-apiserver's validation).
    let rb = Api::<RoleBinding>::namespaced(w.admin.clone(), "other");
    let patch = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}});
    let (code, reason, message) =
        api_err(rb.patch("carol-cleans", &PatchParams::default(), &Patch::Merge(&patch)).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        message,
        r#"RoleBinding.rbac.authorization.k8s.io "carol-cleans" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"admin"}: cannot change roleRef"#
    );
}

#[tokio::test]
async fn aggregated_cluster_roles_follow_their_labelled_roles() {
    let w = World::new(Config::default()).await;
    let roles = Api::<ClusterRole>::all(w.admin.clone());
    w.create(
        roles.clone(),
        json!({"metadata": {"name": "kiln-aggregate"}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"kiln.dev/aggregate-to-kiln": "true"}},
            {"matchExpressions": [{"key": "kiln.dev/tier", "operator": "In", "values": ["gold"]}]}]}}),
    )
    .await;
    w.create(
        Api::<ClusterRoleBinding>::all(w.admin.clone()),
        json!({"metadata": {"name": "carol-aggregate"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kiln-aggregate"},
            "subjects": [{"kind": "User", "name": "carol"}]}),
    )
    .await;
    let carol = w.as_user("carol-token").await;
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kiln.dev", "v1alpha1", "Release"), "releases");
    let releases = Api::<DynamicObject>::namespaced_with(carol.clone(), "ingest", &ar);
    forbidden(releases.list(&ListParams::default()).await);
    // Labelling a ClusterRole adds its rules to the aggregate (and its object shows them).
    w.create(
        roles.clone(),
        json!({"metadata": {"name": "release-reader", "labels": {"kiln.dev/aggregate-to-kiln": "true"}},
            "rules": [{"apiGroups": ["kiln.dev"], "resources": ["releases"], "verbs": ["list"]}]}),
    )
    .await;
    releases.list(&ListParams::default()).await.unwrap();
    let aggregate = roles.get("kiln-aggregate").await.unwrap();
    assert_eq!(aggregate.rules.unwrap_or_default().len(), 1);
    // A matchExpressions selector aggregates too.
    w.create(
        roles.clone(),
        json!({"metadata": {"name": "gold", "labels": {"kiln.dev/tier": "gold"}},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
    )
    .await;
    w.create(Api::<ConfigMap>::namespaced(w.admin.clone(), "ingest"), json!({"metadata": {"name": "c"}})).await;
    Api::<ConfigMap>::namespaced(carol.clone(), "ingest").get("c").await.unwrap();
    // Removing the label takes the rules away again.
    let unlabel = json!({"metadata": {"labels": {"kiln.dev/aggregate-to-kiln": null}}});
    roles.patch("release-reader", &PatchParams::default(), &Patch::Merge(&unlabel)).await.unwrap();
    forbidden(releases.list(&ListParams::default()).await);
    // The built-in aggregated roles: a role labelled aggregate-to-view joins `view` (and through
    // it `edit` and `admin`); `view` itself reads ConfigMaps but not Secrets.
    w.create(
        roles.clone(),
        json!({"metadata": {"name": "kiln-viewer", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": ["kiln.dev"], "resources": ["releases"], "verbs": ["get", "list", "watch"]}]}),
    )
    .await;
    for name in ["view", "edit", "admin"] {
        let rules = roles.get(name).await.unwrap().rules.unwrap_or_default();
        assert!(
            rules.iter().any(|r| r.resources.as_ref().is_some_and(|rs| rs.contains(&"releases".to_string()))),
            "{name}"
        );
    }
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "other"),
        json!({"metadata": {"name": "bob-views"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "bob"}]}),
    )
    .await;
    let bob = w.as_user("bob-token").await;
    Api::<DynamicObject>::namespaced_with(bob.clone(), "other", &ar).list(&ListParams::default()).await.unwrap();
    Api::<ConfigMap>::namespaced(bob.clone(), "other").list(&ListParams::default()).await.unwrap();
    forbidden(Api::<Secret>::namespaced(bob, "other").list(&ListParams::default()).await);
}

#[tokio::test]
async fn service_account_tokens_and_the_controllers_least_privilege() {
    let w = World::new(Config::default()).await;
    let sa = w.as_user("kiln-sa-token").await;
    let me = Api::<SelfSubjectReview>::all(sa.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap()
        .status
        .and_then(|s| s.user_info)
        .expect("userInfo");
    assert_eq!(me.username.as_deref(), Some("system:serviceaccount:kiln-system:kiln"));
    assert_eq!(
        me.groups.unwrap_or_default(),
        ["system:serviceaccounts", "system:serviceaccounts:kiln-system", "system:authenticated"]
    );
    // A ServiceAccount subject without a namespace is the binding's namespace's.
    w.create(
        Api::<Role>::namespaced(w.admin.clone(), "kiln-system"),
        json!({"metadata": {"name": "leader"}, "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["kiln"], "verbs": ["get", "update"]}]}),
    )
    .await;
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "kiln-system"),
        json!({"metadata": {"name": "leader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader"},
            "subjects": [{"kind": "ServiceAccount", "name": "kiln"}]}),
    )
    .await;
    let leases = Api::<Lease>::namespaced(sa.clone(), "kiln-system");
    let lease: Lease = obj(json!({"metadata": {"name": "kiln"}, "spec": {"holderIdentity": "a"}}));
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut got = leases.get("kiln").await.unwrap();
    got.spec.get_or_insert_with(Default::default).holder_identity = Some("b".into());
    leases.replace("kiln", &PostParams::default(), &got).await.unwrap();
    assert_eq!(
        forbidden(leases.get("other").await),
        r#"leases.coordination.k8s.io "other" is forbidden: User "system:serviceaccount:kiln-system:kiln" cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "kiln-system""#
    );
    // Nothing on Secrets.
    assert_eq!(
        forbidden(Api::<Secret>::namespaced(sa.clone(), "kiln-system").list(&ListParams::default()).await),
        r#"secrets is forbidden: User "system:serviceaccount:kiln-system:kiln" cannot list resource "secrets" in API group "" in the namespace "kiln-system""#
    );
    // Group subjects of ServiceAccounts.
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "ingest"),
        json!({"metadata": {"name": "all-kiln-system-sas-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:kiln-system"}]}),
    )
    .await;
    Api::<ConfigMap>::namespaced(sa, "ingest").list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn discovery_and_non_resource_urls() {
    let w = World::new(Config::default()).await;
    let carol = w.as_user("carol-token").await;
    // system:discovery and system:basic-user, bound to system:authenticated.
    let discovery = Discovery::new(carol.clone()).run().await.unwrap();
    assert!(discovery.get("kiln.dev").is_some());
    assert!(discovery.get("rbac.authorization.k8s.io").is_some());
    carol.apiserver_version().await.unwrap();
    let get = |path: &str| http::Request::get(path).body(Vec::new()).expect("test setup");
    let (code, _, message) = api_err(carol.request_text(get("/metrics")).await);
    assert_eq!((code, message.as_str()), (403, r#"forbidden: User "carol" cannot get path "/metrics""#));
    w.create(
        Api::<ClusterRole>::all(w.admin.clone()),
        json!({"metadata": {"name": "metrics-reader"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
    )
    .await;
    w.create(
        Api::<ClusterRoleBinding>::all(w.admin.clone()),
        json!({"metadata": {"name": "carol-metrics"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics-reader"},
            "subjects": [{"kind": "User", "name": "carol"}]}),
    )
    .await;
    // Allowed now; this server has no /metrics, so: 404.
    assert_eq!(api_err(carol.request_text(get("/metrics")).await).0, 404);
    // A resource nobody serves is still authorized first.
    let (code, _, message) = api_err(carol.request_text(get("/apis/example.com/v1/widgets")).await);
    assert_eq!(
        (code, message.as_str()),
        (
            403,
            r#"widgets.example.com is forbidden: User "carol" cannot list resource "widgets" in API group "example.com" at the cluster scope"#
        )
    );
}

#[tokio::test]
async fn access_reviews_answer_from_rbac() {
    let w = World::new(Config::default()).await;
    w.create(
        Api::<Role>::namespaced(w.admin.clone(), "ingest"),
        json!({"metadata": {"name": "approver"}, "rules": [
            {"apiGroups": ["kiln.dev"], "resources": ["promotions"], "verbs": ["get", "patch"]}]}),
    )
    .await;
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "ingest"),
        json!({"metadata": {"name": "security-approves"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "approver"},
            "subjects": [{"kind": "Group", "name": "kiln:security"}]}),
    )
    .await;
    let alice = w.as_user("alice-token").await;
    let reviews = Api::<SelfSubjectAccessReview>::all(alice.clone());
    let ask = |verb: &str, ns: &str| -> SelfSubjectAccessReview {
        obj(json!({"spec": {"resourceAttributes": {"group": "kiln.dev", "resource": "promotions", "verb": verb,
            "namespace": ns}}}))
    };
    let yes = reviews.create(&PostParams::default(), &ask("patch", "ingest")).await.unwrap().status.expect("status");
    assert!(yes.allowed);
    assert_eq!(
        yes.reason.as_deref(),
        Some(r#"RBAC: allowed by RoleBinding "security-approves/ingest" of Role "approver" to Group "kiln:security""#)
    );
    let no = reviews.create(&PostParams::default(), &ask("delete", "ingest")).await.unwrap().status.expect("status");
    assert!(!no.allowed);
    let no = reviews.create(&PostParams::default(), &ask("patch", "other")).await.unwrap().status.expect("status");
    assert!(!no.allowed);
    let rules = Api::<SelfSubjectRulesReview>::all(alice)
        .create(&PostParams::default(), &obj(json!({"spec": {"namespace": "ingest"}})))
        .await
        .unwrap()
        .status
        .expect("status");
    assert!(rules.resource_rules.iter().any(|r| r.resources.as_ref().is_some_and(|rs| rs == &["promotions"])));
    assert!(
        rules
            .non_resource_rules
            .iter()
            .any(|r| r.non_resource_urls.as_ref().is_some_and(|u| u.contains(&"/version".to_string())))
    );
}

#[tokio::test]
async fn masters_bypass_and_rbac_is_off_by_default() {
    let w = World::new(Config::default()).await;
    // system:masters needs no binding (the cluster-admin binding is there too, like on a cluster).
    Api::<Secret>::namespaced(w.admin.clone(), "ingest").list(&ListParams::default()).await.unwrap();
    let open = start(Config::default().with_user("alice-token", "alice", &[])).await.unwrap();
    let alice = client_for(&open.kubeconfig).await;
    Api::<Secret>::namespaced(alice.clone(), "default").list(&ListParams::default()).await.unwrap();
    let review: SelfSubjectAccessReview =
        obj(json!({"spec": {"resourceAttributes": {"resource": "secrets", "verb": "delete"}}}));
    let status =
        Api::<SelfSubjectAccessReview>::all(alice).create(&PostParams::default(), &review).await.unwrap().status;
    assert!(status.expect("status").allowed);
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let w = World::new(Config::default()).await;
    let as_user =
        |kubeconfig: &str, who: &str| kubeconfig.replace("    token: ", &format!("    as: {who}\n    token: "));
    // The admin acting as alice gets alice's permissions (none here).
    let admin_as_alice = client_for(&as_user(&w.server.kubeconfig, "alice")).await;
    assert_eq!(
        forbidden(Api::<Secret>::namespaced(admin_as_alice.clone(), "ingest").list(&ListParams::default()).await),
        r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "ingest""#
    );
    let me = Api::<SelfSubjectReview>::all(admin_as_alice)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    assert_eq!(me.status.and_then(|s| s.user_info).and_then(|u| u.username).as_deref(), Some("alice"));
    // Alice may not act as bob.
    let alice_as_bob = client_for(&as_user(&w.server.kubeconfig_for_token("alice-token"), "bob")).await;
    assert_eq!(
        forbidden(Api::<ConfigMap>::namespaced(alice_as_bob, "ingest").list(&ListParams::default()).await),
        r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
}

#[tokio::test]
async fn apply_that_creates_needs_create() {
    let w = World::new(Config::default()).await;
    w.create(
        Api::<Role>::namespaced(w.admin.clone(), "ingest"),
        json!({"metadata": {"name": "cm-patch"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}]}),
    )
    .await;
    w.create(
        Api::<RoleBinding>::namespaced(w.admin.clone(), "ingest"),
        json!({"metadata": {"name": "carol-cm-patch"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-patch"},
            "subjects": [{"kind": "User", "name": "carol"}]}),
    )
    .await;
    let carol = Api::<ConfigMap>::namespaced(w.as_user("carol-token").await, "ingest");
    let pp = PatchParams::apply("carol");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"a": "1"}});
    assert_eq!(
        forbidden(carol.patch("new", &pp, &Patch::Apply(&cm)).await),
        r#"configmaps "new" is forbidden: User "carol" cannot create resource "configmaps" in API group "" in the namespace "ingest""#
    );
    w.create(Api::<ConfigMap>::namespaced(w.admin.clone(), "ingest"), json!({"metadata": {"name": "new"}})).await;
    carol.patch("new", &pp, &Patch::Apply(&cm)).await.unwrap();
}

/// A chart-like set of manifests, loaded at start: the served objects are created (namespaces
/// too), the others reported as skipped.
const CHART: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: kiln, namespace: kiln-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kiln-controller}
rules:
  - apiGroups: [kiln.dev]
    resources: [releases, promotions, environments, freezewindows, rollbackpolicies]
    verbs: [list, watch]
  - apiGroups: [kiln.dev]
    resources: [promotions/status, releases/status]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kiln-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kiln-controller}
subjects:
  - {kind: ServiceAccount, name: kiln, namespace: kiln-system}
---
# a comment-only document
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kiln, namespace: kiln-system}
spec: {}
"#;

#[tokio::test]
async fn manifests_are_loaded_at_start() {
    let server = start(
        Config::default()
            .with_rbac()
            .with_user("admin-token", "admin", &["system:masters"])
            .with_service_account("sa-token", "kiln-system", "kiln")
            .with_manifests(CHART),
    )
    .await
    .unwrap();
    assert_eq!(server.skipped_manifests, ["Deployment kiln-system/kiln"]);
    assert!(server.handle.get("namespaces", None, "kiln-system").is_some());
    assert!(server.handle.get("serviceaccounts", Some("kiln-system"), "kiln").is_some());
    let sa = client_for(&server.kubeconfig_for_token("sa-token")).await;
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kiln.dev", "v1alpha1", "Release"), "releases");
    Api::<DynamicObject>::all_with(sa.clone(), &ar).list(&ListParams::default()).await.unwrap();
    forbidden(Api::<DynamicObject>::namespaced_with(sa, "kiln-system", &ar).get("x").await);
    // A manifest the server refuses fails the start, naming the object.
    let err = start(Config::default().with_manifests(
        "apiVersion: kiln.dev/v1alpha1\nkind: Release\nmetadata: {name: bad, namespace: x}\nspec: {nope: 1}\n",
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().starts_with("manifests: Release bad: "), "{err}");
}

fn kubectl_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_KUBECTL") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("kubectl")).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("kubectl not found: install it or set KILN_KUBECTL"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_roles_and_bindings_and_auth_can_i_answers() {
    let w = World::new(Config::default()).await;
    let home = std::env::temp_dir().join(format!("kiln-kubectl-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("test setup");
    let (admin_kc, alice_kc) = (home.join("admin"), home.join("alice"));
    std::fs::write(&admin_kc, &w.server.kubeconfig).expect("test setup");
    std::fs::write(&alice_kc, w.server.kubeconfig_for_token("alice-token")).expect("test setup");
    let kubectl = |kubeconfig: &PathBuf, args: &[&str]| -> (bool, String) {
        let out = Command::new(kubectl_binary())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &home)
            .output()
            .expect("kubectl runs");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // kubectl ≥ 1.30 sends these built-ins in protobuf.
    let (ok, out) = kubectl(
        &admin_kc,
        &["create", "role", "status", "--verb=patch", "--resource=promotions.kiln.dev/status", "-n", "ingest"],
    );
    assert!(ok, "{out}");
    let (ok, out) =
        kubectl(&admin_kc, &["create", "rolebinding", "alice-status", "--role=status", "--user=alice", "-n", "ingest"]);
    assert!(ok, "{out}");
    let can_i = |args: &[&str]| kubectl(&alice_kc, &[&["auth", "can-i"], args].concat()).1;
    assert_eq!(can_i(&["patch", "promotions.kiln.dev", "--subresource=status", "-n", "ingest"]), "yes");
    assert_eq!(can_i(&["patch", "promotions.kiln.dev", "-n", "ingest"]), "no");
    assert_eq!(can_i(&["patch", "promotions.kiln.dev", "--subresource=status", "-n", "other"]), "no");
    assert_eq!(kubectl(&admin_kc, &["auth", "can-i", "delete", "secrets", "--as=alice", "-n", "ingest"]).1, "no");
    let (_, table) = kubectl(&admin_kc, &["get", "rolebindings", "-n", "ingest", "-o", "wide"]);
    assert!(
        table.lines().any(|l| l.starts_with("alice-status") && l.contains("Role/status") && l.contains("alice")),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&home);
}
