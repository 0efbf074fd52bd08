//! The controller as the Helm chart installs it: kube-apiserver's RBAC authorizer enforces the
//! chart's roles and its admission chain the approval-identity policy (rendered by the real Helm
//! engine, server-side applied), and the controller runs as the chart's ServiceAccount. A
//! permission the chart lacks fails these tests.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kiln_api::{Promotion, PromotionPhase};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::harness::{ControllerOptions, World, lambda_setup};

const MIN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_works_with_exactly_the_charts_permissions() {
    let mut w = World::with_chart("s12-rbac").await;
    lambda_setup(&w, "invoice", ["1s", "1s", "1s"]).await;
    w.start_controller(ControllerOptions::default());
    let r = w.lambda_release("invoice", 2, &["dev", "stg", "prod"], json!({})).await;
    let done = w.wait_phase(&format!("{r}-dev"), PromotionPhase::Succeeded, MIN).await;
    // kiln requested it, by its own ServiceAccount's name (the admission policy requires one).
    assert_eq!(done.spec.requested_by.as_deref(), Some("system:serviceaccount:kiln-system:kiln"));
    assert!(done.status.and_then(|s| s.evidence_sha256).is_some());
    // Events and the Release status were written with the chart's permissions too.
    assert!(!w.events(&format!("{r}-dev")).await.is_empty(), "Events were published");
    w.eventually(MIN, "Release status written", || async {
        w.release(&r).await.filter(|r| r.status.as_ref().is_some_and(|s| s.observed_generation.is_some()))
    })
    .await;
    let log = std::fs::read_to_string(&w.controllers[0].log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the controller was refused something:\n{}", w.logs());

    // The ServiceAccount cannot read Secrets, in its namespace or anywhere.
    let sa = w.controller_client().await;
    for api in [Api::<Secret>::namespaced(sa.clone(), crate::harness::KILN_NS), Api::<Secret>::all(sa.clone())] {
        let err = api.list(&ListParams::default()).await.expect_err("secrets must be forbidden");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 403 && s.message.contains("system:serviceaccount:kiln-system:kiln")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_bound_to_the_person_who_makes_them() {
    let w = World::with_chart("s12-vap").await;
    lambda_setup(&w, "ledger", ["1s", "1s", "1s"]).await;
    let r = w.lambda_release("ledger", 2, &["dev", "stg", "prod"], json!({})).await;
    // requestedBy is required on create and must be the creator's own name, admin's too.
    let unnamed: Promotion = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": "ledger-prod"},
        "spec": {"release": r, "environment": "prod"}
    }))
    .unwrap();
    match Api::<Promotion>::namespaced(w.client.clone(), &w.ns).create(&Default::default(), &unnamed).await {
        Err(kube::Error::Api(s)) if s.message.contains("spec.requestedBy is required") => {}
        other => panic!("a Promotion without requestedBy: expected the admission policy to refuse, got {other:?}"),
    }
    w.create::<Promotion>(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": "ledger-prod"},
        "spec": {"release": r, "environment": "prod", "requestedBy": "admin"}
    }))
    .await;
    // The four people approve through the chart's kiln-approver role (get, list, watch, patch on
    // Promotions): what is refused below is refused by the admission policy, not by RBAC.
    let subjects: Vec<serde_json::Value> =
        ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
            .into_iter()
            .map(user)
            .collect();
    bind(&w, "approvers", "kiln-approver", json!(subjects)).await;
    let at = World::at(0);
    let approval = |user: &str, role: &str| json!({"user": user, "role": role, "at": at});
    let append = |who: &'static str, entry: serde_json::Value| {
        let w = &w;
        async move {
            let client = w.client_as(who).await;
            let api: Api<Promotion> = Api::namespaced(client, &w.ns);
            let p = api.get("ledger-prod").await.expect("read promotion");
            let mut list = serde_json::to_value(&p.spec.approvals).expect("approvals");
            if let Some(l) = list.as_array_mut() {
                l.push(entry);
            }
            api.patch("ledger-prod", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"approvals": list}})))
                .await
        }
    };
    let refused = |r: Result<Promotion, kube::Error>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.message.contains("ValidatingAdmissionPolicy") => s.message,
        other => panic!("{what}: expected the admission policy to refuse, got {other:?}"),
    };

    // Alice cannot approve as Bob.
    let m = refused(append("alice@example.com", approval("bob@example.com", "product")).await, "alice as bob");
    assert!(m.contains("alice@example.com"), "{m}");
    // A user without the group cannot approve as security.
    refused(append("dave@example.com", approval("dave@example.com", "security")).await, "dave as security");
    // Alice approves as herself, in her role.
    append("alice@example.com", approval("alice@example.com", "security")).await.expect("alice's own approval");
    // Bob cannot edit Alice's approval.
    let bob: Api<Promotion> = Api::namespaced(w.client_as("bob@example.com").await, &w.ns);
    let edited = json!({"spec": {"approvals": [approval("alice@example.com", "product")]}});
    // (The CRD's own append-only rule refuses this before the policy runs; either must.)
    match bob.patch("ledger-prod", &PatchParams::default(), &Patch::Merge(&edited)).await {
        Err(kube::Error::Api(s))
            if s.code == 422
                && (s.message.contains("append-only") || s.message.contains("ValidatingAdmissionPolicy")) => {}
        other => panic!("bob edits alice's approval: expected a refusal, got {other:?}"),
    }
    // Bob approves as himself.
    append("bob@example.com", approval("bob@example.com", "product")).await.expect("bob's own approval");

    // The requester cannot approve their own Promotion.
    let carol: Api<Promotion> = Api::namespaced(w.client_as("carol@example.com").await, &w.ns);
    // Nobody may name someone else as the requester (not even an admin).
    let theirs: Promotion = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": "ledger-stg"},
        "spec": {"release": r, "environment": "stg", "requestedBy": "carol@example.com"}
    }))
    .unwrap();
    let admin: Api<Promotion> = Api::namespaced(w.client.clone(), &w.ns);
    refused(admin.create(&Default::default(), &theirs).await, "admin names carol as requester");
    // Carol (a releaser) requests it herself...
    bind(&w, "releasers", "kiln-releaser", json!([user("carol@example.com")])).await;
    let p = carol.create(&Default::default(), &theirs).await.expect("carol requests her own promotion");
    // ...and cannot approve it.
    let own = json!({"spec": {"approvals": [approval("carol@example.com", "security")]}});
    refused(carol.patch("ledger-stg", &PatchParams::default(), &Patch::Merge(&own)).await, "carol approves her own");
    assert!(p.spec.approvals.is_empty());

    // Rolling back is its own permission (issue "Tenancy and release integrity" §3): RBAC cannot
    // see spec.rollback, so the policy asks the real authorizer for the `rollback` verb. Carol
    // may create Promotions but not rollback ones, until she is given kiln-rollbacker.
    let rollback: Promotion = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": "ledger-stg-rollback"},
        "spec": {"release": r, "environment": "stg", "requestedBy": "carol@example.com",
                 "rollback": {"reason": "errors after the last release", "fromRelease": "ledger-v3"}}
    }))
    .unwrap();
    let m = refused(carol.create(&Default::default(), &rollback).await, "carol creates a rollback Promotion");
    assert!(m.contains("rollback verb"), "{m}");
    bind(&w, "rollbackers", "kiln-rollbacker", json!([user("carol@example.com")])).await;
    // RBAC changes reach the authorizer's cache within moments.
    w.eventually(std::time::Duration::from_secs(30), "carol creates the rollback Promotion", || {
        let (carol, rollback) = (carol.clone(), rollback.clone());
        async move { carol.create(&Default::default(), &rollback).await.ok() }
    })
    .await;
}

/// A user, as an RBAC subject.
fn user(name: &str) -> serde_json::Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

/// Binds ClusterRole `role` to `subjects` cluster-wide, as binding `name`.
async fn bind(w: &World, name: &str, role: &str, subjects: serde_json::Value) {
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(w.client.clone())
        .create(&Default::default(), &crb)
        .await
        .unwrap_or_else(|e| panic!("bind {role}: {e}"));
}
