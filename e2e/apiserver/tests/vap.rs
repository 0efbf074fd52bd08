//! ValidatingAdmissionPolicy evaluation in the API test server, through kube-rs clients acting as
//! different users: identity-bound approvals on a kiln Promotion (`object` vs `oldObject`,
//! `request.userInfo`), kube-apiserver's denial Status, subresources, `failurePolicy`,
//! `validationActions` (Deny, Warn, Audit), namespace and object selectors, `matchConditions`,
//! parameters, DELETE, and policies that do not compile.

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kiln_test_apiserver::{Config, TestServer, start};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
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
    async fn new() -> World {
        let server = start(
            Config::default()
                .with_user("admin-token", "admin", &["system:masters"])
                .with_user("alice-token", "alice", &["kiln:security"])
                .with_user("bob-token", "bob", &["kiln:product"])
                .with_service_account("kiln-token", "kiln-system", "kiln"),
        )
        .await
        .expect("test setup");
        let admin = client_for(&server.kubeconfig).await;
        let namespaces = Api::<Namespace>::all(admin.clone());
        for (ns, labels) in [("ingest", json!({"kiln.dev/policy": "enforce"})), ("other", json!({}))] {
            namespaces
                .create(&PostParams::default(), &obj(json!({"metadata": {"name": ns, "labels": labels}})))
                .await
                .expect("test setup");
        }
        World { server, admin }
    }

    async fn as_user(&self, token: &str) -> Client {
        client_for(&self.server.kubeconfig_for_token(token)).await
    }

    /// A policy and its binding (named alike; `binding` is merged into the binding's spec).
    async fn policy(&self, name: &str, spec: Value, binding: Value) {
        let policy: ValidatingAdmissionPolicy = obj(json!({"metadata": {"name": name}, "spec": spec}));
        Api::<ValidatingAdmissionPolicy>::all(self.admin.clone())
            .create(&PostParams::default(), &policy)
            .await
            .expect("test setup");
        let mut bspec = json!({"policyName": name, "validationActions": ["Deny"]});
        if let (Some(b), Some(extra)) = (bspec.as_object_mut(), binding.as_object()) {
            b.extend(extra.clone());
        }
        let binding: ValidatingAdmissionPolicyBinding = obj(json!({"metadata": {"name": name}, "spec": bspec}));
        Api::<ValidatingAdmissionPolicyBinding>::all(self.admin.clone())
            .create(&PostParams::default(), &binding)
            .await
            .expect("test setup");
    }
}

fn promotions(client: Client, ns: &str) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kiln.dev", "v1alpha1", "Promotion"), "promotions");
    Api::namespaced_with(client, ns, &ar)
}

fn promotion(name: &str, approvals: Value) -> DynamicObject {
    obj(json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": name},
        "spec": {"release": "r1", "environment": "prod", "approvals": approvals}}))
}

fn approval(user: &str, role: &str) -> Value {
    json!({"user": user, "role": role, "at": "2025-10-28T14:05:00Z"})
}

fn append(a: Value) -> Patch<Value> {
    Patch::Json(obj(json!([{"op": "add", "path": "/spec/approvals/-", "value": a}])))
}

/// (code, reason, message, the first cause's message).
fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String, String) {
    match r {
        Err(kube::Error::Api(s)) => {
            let cause =
                s.details.as_ref().and_then(|d| d.causes.first()).map(|c| c.message.clone()).unwrap_or_default();
            (s.code, s.reason.clone(), s.message.clone(), cause)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The identity-binding rules of kiln's approvals: a new approval names its author, old ones stay.
fn approval_policy() -> Value {
    json!({
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{"apiGroups": ["kiln.dev"], "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"], "resources": ["promotions"]}]},
        "variables": [
            {"name": "old", "expression": "oldObject == null ? [] : oldObject.spec.approvals"},
            {"name": "added", "expression": "object.spec.approvals.filter(a, !(a in variables.old))"},
        ],
        "validations": [
            {"expression": "variables.added.all(a, a.user == request.userInfo.username)",
             "messageExpression": "'an approval must name the person who gives it: set user to ' + request.userInfo.username"},
            {"expression": "variables.added.all(a, !has(a.comment) || a.comment != 'lgtm')",
             "message": "say why you approve", "reason": "Forbidden"},
            // `at` is a date-time in the CRD: a timestamp in CEL.
            {"expression": "variables.added.all(a, a.at < timestamp('2100-01-01T00:00:00Z'))"},
        ],
    })
}

#[tokio::test]
async fn approvals_are_bound_to_the_requesting_identity() {
    let w = World::new().await;
    w.policy("approval-identity", approval_policy(), json!({})).await;
    let alice = promotions(w.as_user("alice-token").await, "ingest");
    let bob = promotions(w.as_user("bob-token").await, "ingest");
    alice.create(&PostParams::default(), &promotion("p", json!([]))).await.unwrap();
    // Alice's own approval.
    alice.patch("p", &PatchParams::default(), &append(approval("alice", "security"))).await.unwrap();
    // Alice approving as Bob: 422 Invalid (no reason given), the policy's message.
    let denied = "ValidatingAdmissionPolicy 'approval-identity' with binding 'approval-identity' denied request: an approval must name the person who gives it: set user to alice";
    let (code, reason, message, cause) =
        api_err(alice.patch("p", &PatchParams::default(), &append(approval("bob", "product"))).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(message, format!(r#"promotions.kiln.dev "p" is forbidden: {denied}"#));
    assert_eq!(cause, denied);
    // Bob's own approval passes; the existing ones are not "added".
    bob.patch("p", &PatchParams::default(), &append(approval("bob", "product"))).await.unwrap();
    let stored = w.server.handle.get("promotions", Some("ingest"), "p").expect("stored");
    assert_eq!(stored["spec"]["approvals"].as_array().map(Vec::len), Some(2));
    // A validation with reason Forbidden: 403.
    let mut lgtm = approval("alice", "security");
    lgtm["comment"] = json!("lgtm");
    let (code, reason, message, _) = api_err(alice.patch("p", &PatchParams::default(), &append(lgtm)).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(message.ends_with("denied request: say why you approve"), "{message}");
    // On CREATE oldObject is null: an approval in Bob's name is refused from the start.
    let (code, _, message, _) =
        api_err(alice.create(&PostParams::default(), &promotion("q", json!([approval("bob", "product")]))).await);
    assert_eq!(code, 422);
    assert_eq!(message, format!(r#"promotions.kiln.dev "q" is forbidden: {denied}"#));
    // A merge patch replacing the list with Bob's approval added is the same request.
    let all = json!({"spec": {"approvals": [approval("alice", "security"), approval("bob", "product"),
        approval("bob", "release")]}});
    assert_eq!(api_err(alice.patch("p", &PatchParams::default(), &Patch::Merge(&all)).await).0, 422);
    // The status subresource is another resource: not matched by `promotions`.
    let status = json!({"status": {"phase": "Queued"}});
    alice.patch_status("p", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

#[tokio::test]
async fn subresources_and_service_accounts() {
    let w = World::new().await;
    w.policy(
        "status-by-kiln",
        json!({"matchConstraints": {"resourceRules": [{"apiGroups": ["kiln.dev"], "apiVersions": ["v1alpha1"],
            "operations": ["UPDATE"], "resources": ["promotions/status"]}]},
            "validations": [{"expression": "request.userInfo.username == 'system:serviceaccount:kiln-system:kiln' && 'system:serviceaccounts' in request.userInfo.groups && request.subResource == 'status'",
                "messageExpression": "request.userInfo.username + ' may not write the status of ' + request.namespace + '/' + request.name"}]}),
        json!({}),
    )
    .await;
    promotions(w.admin.clone(), "ingest").create(&PostParams::default(), &promotion("p", json!([]))).await.unwrap();
    let status = json!({"status": {"phase": "Queued"}});
    let alice = promotions(w.as_user("alice-token").await, "ingest");
    let (code, _, message, _) = api_err(alice.patch_status("p", &PatchParams::default(), &Patch::Merge(&status)).await);
    assert_eq!(code, 422);
    assert!(message.ends_with("denied request: alice may not write the status of ingest/p"), "{message}");
    // The main resource is not matched by promotions/status.
    alice.patch("p", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"retry": 1}}))).await.unwrap();
    let kiln = promotions(w.as_user("kiln-token").await, "ingest");
    kiln.patch_status("p", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

#[tokio::test]
async fn failure_policy_decides_on_errors() {
    let w = World::new().await;
    let spec = |failure: &str| {
        json!({"failurePolicy": failure,
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]}]},
            "validations": [{"expression": "object.data.nope == '1'"}]})
    };
    w.policy("broken", spec("Ignore"), json!({})).await;
    let cms = Api::<ConfigMap>::namespaced(w.as_user("alice-token").await, "ingest");
    cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "c1"}, "data": {"a": "b"}}))).await.unwrap();
    // The same policy failing closed.
    let policies = Api::<ValidatingAdmissionPolicy>::all(w.admin.clone());
    policies
        .patch("broken", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"failurePolicy": "Fail"}})))
        .await
        .unwrap();
    let (code, reason, message, _) = api_err(
        cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "c2"}, "data": {"a": "b"}}))).await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        message,
        r#"configmaps "c2" is forbidden: ValidatingAdmissionPolicy 'broken' with binding 'broken' denied request: expression 'object.data.nope == '1'' resulted in error: no such key: nope"#
    );
    // Without a message, the expression is the message.
    policies
        .patch(
            "broken",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"validations": [{"expression": "has(object.data.nope)"}]}})),
        )
        .await
        .unwrap();
    let (_, _, message, _) = api_err(
        cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "c3"}, "data": {"a": "b"}}))).await,
    );
    assert!(message.ends_with("denied request: failed expression: has(object.data.nope)"), "{message}");
    // A policy whose CEL does not compile is refused.
    let bad: ValidatingAdmissionPolicy = obj(json!({"metadata": {"name": "bad"}, "spec": {
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["*"]}]},
        "validations": [{"expression": "object.("}]}}));
    let (code, _, message, _) = api_err(policies.create(&PostParams::default(), &bad).await);
    assert_eq!(code, 422);
    assert!(
        message.starts_with(r#"ValidatingAdmissionPolicy.admissionregistration.k8s.io "bad" is invalid: spec.validations[0].expression: Invalid value: "object.(": compilation failed: "#),
        "{message}"
    );
}

/// POST a ConfigMap and return (status, Warning headers).
async fn create_raw(client: &Client, ns: &str, name: &str) -> (u16, Vec<String>) {
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}))
        .expect("test setup");
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/configmaps"))
        .header("Content-Type", "application/json")
        .body(Body::from(body))
        .expect("test setup");
    let resp = client.send(req).await.expect("response");
    let warnings =
        resp.headers().get_all("warning").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    (resp.status().as_u16(), warnings)
}

#[tokio::test]
async fn warn_and_audit_actions_do_not_deny() {
    let w = World::new().await;
    let spec = json!({"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["configmaps"]}]},
        "validations": [{"expression": "has(object.metadata.labels)", "message": "label your ConfigMaps"}]});
    w.policy("labels-warn", spec.clone(), json!({"validationActions": ["Warn"]})).await;
    w.policy("labels-audit", spec, json!({"validationActions": ["Audit"]})).await;
    let alice = w.as_user("alice-token").await;
    let (code, warnings) = create_raw(&alice, "ingest", "unlabelled").await;
    assert_eq!(code, 201);
    assert_eq!(
        warnings,
        [
            r#"299 - "Validation failed for ValidatingAdmissionPolicy 'labels-warn' with binding 'labels-warn': label your ConfigMaps""#
        ]
    );
    // Deny and Warn together are refused by validation.
    let both: ValidatingAdmissionPolicyBinding = obj(json!({"metadata": {"name": "both"},
        "spec": {"policyName": "labels-warn", "validationActions": ["Deny", "Warn"]}}));
    let (code, _, message, _) = api_err(
        Api::<ValidatingAdmissionPolicyBinding>::all(w.admin.clone()).create(&PostParams::default(), &both).await,
    );
    assert_eq!(code, 422);
    assert!(message.contains("must not contain both Deny and Warn"), "{message}");
}

#[tokio::test]
async fn selectors_match_conditions_and_delete() {
    let w = World::new().await;
    w.policy(
        "keep-protected",
        json!({"matchConstraints": {
                "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"], "resources": ["configmaps"]}],
                "namespaceSelector": {"matchLabels": {"kiln.dev/policy": "enforce"}},
                "objectSelector": {"matchExpressions": [{"key": "protected", "operator": "In", "values": ["true"]}]}},
            "matchConditions": [{"name": "not-admin", "expression": "request.userInfo.username != 'admin'"}],
            "validations": [{"expression": "object == null && request.operation == 'DELETE' && false",
                "messageExpression": "'cannot delete ' + oldObject.metadata.name + ' in ' + namespaceObject.metadata.name"}]}),
        json!({}),
    )
    .await;
    for ns in ["ingest", "other"] {
        let cms = Api::<ConfigMap>::namespaced(w.admin.clone(), ns);
        for (name, labels) in [("guarded", json!({"protected": "true"})), ("free", json!({}))] {
            cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": name, "labels": labels}})))
                .await
                .expect("test setup");
        }
    }
    let alice = w.as_user("alice-token").await;
    let (code, _, message, _) = api_err(
        Api::<ConfigMap>::namespaced(alice.clone(), "ingest").delete("guarded", &DeleteParams::default()).await,
    );
    assert_eq!(code, 422);
    assert!(message.ends_with("denied request: cannot delete guarded in ingest"), "{message}");
    // Not matched: an unlabelled object, an unlabelled namespace, the admin (match condition).
    Api::<ConfigMap>::namespaced(alice.clone(), "ingest").delete("free", &DeleteParams::default()).await.unwrap();
    Api::<ConfigMap>::namespaced(alice, "other").delete("guarded", &DeleteParams::default()).await.unwrap();
    Api::<ConfigMap>::namespaced(w.admin.clone(), "ingest").delete("guarded", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn parameters_from_configmaps() {
    let w = World::new().await;
    Api::<ConfigMap>::namespaced(w.admin.clone(), "ingest")
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "roles"},
            "data": {"kiln:security": "security", "kiln:product": "product"}})),
        )
        .await
        .expect("test setup");
    w.policy(
        "approval-roles",
        json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{"apiGroups": ["kiln.dev"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": ["promotions"]}]},
            "variables": [{"name": "roles", "expression": "request.userInfo.groups.filter(g, g in params.data).map(g, params.data[g])"}],
            "validations": [{"expression": "object.spec.approvals.all(a, a.role in variables.roles)",
                "messageExpression": "'your groups grant the roles ' + variables.roles.join(',')"}]}),
        json!({"paramRef": {"name": "roles", "parameterNotFoundAction": "Deny"}}),
    )
    .await;
    let alice = w.as_user("alice-token").await;
    promotions(alice.clone(), "ingest")
        .create(&PostParams::default(), &promotion("ok", json!([approval("alice", "security")])))
        .await
        .unwrap();
    let (code, _, message, _) = api_err(
        promotions(alice.clone(), "ingest")
            .create(&PostParams::default(), &promotion("no", json!([approval("alice", "product")])))
            .await,
    );
    assert_eq!(code, 422);
    assert!(message.ends_with("denied request: your groups grant the roles security"), "{message}");
    // No parameter object in that namespace, and the binding says Deny.
    let (code, _, message, _) =
        api_err(promotions(alice, "other").create(&PostParams::default(), &promotion("p", json!([]))).await);
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "promotions.kiln.dev \"p\" is forbidden: ValidatingAdmissionPolicy 'approval-roles' with binding 'approval-roles' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
    );
}
