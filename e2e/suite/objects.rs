//! The status of the kinds kiln is configured with, as `kubectl get` shows it: Environments and
//! RollbackPolicies say whether they are valid, a FreezeWindow whether it is in effect and
//! until when — and it changes by itself when the window ends.

use std::time::Duration;

use kiln_api::{Environment, FreezeWindow, RollbackPolicy};
use kube::api::Api;
use serde_json::json;

use crate::harness::{ControllerOptions, KILN_NS, World};

const MIN: Duration = Duration::from_secs(60);

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Option<(String, String, String)> {
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_policies_and_freeze_windows_report_their_state() {
    let mut w = World::new("objects").await;
    w.environments_with(["1s", "1s", "1s"]).await;
    w.policy("objects-errors").await;
    let env = |name: &str, upstream: &[&str], account: &str| {
        json!({"apiVersion": "kiln.dev/v1alpha1", "kind": "Environment", "metadata": {"name": name},
               "spec": {"upstream": upstream,
                        "aws": {"accountId": account, "region": "us-east-1", "roleArn": format!("arn:aws:iam::{account}:role/kiln-deploy")}}})
    };
    // qa names an upstream that does not exist (yet).
    w.create_environment(env("qa", &["uat"], "444444444444")).await;
    let ends = World::at(6);
    w.freeze(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "FreezeWindow",
        "metadata": {"name": "deploy-party", "namespace": KILN_NS},
        "spec": {"environments": ["prod"], "timeZone": "UTC", "absolute": [{"start": World::at(-60), "end": ends}]}
    }))
    .await;
    w.freeze(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "FreezeWindow",
        "metadata": {"name": "typo", "namespace": KILN_NS},
        "spec": {"timeZone": "America/New_Yrok", "recurring": [{"from": {"day": "Friday", "time": "17:00"}, "to": {"day": "Monday", "time": "09:00"}}]}
    }))
    .await;
    w.start_controller(ControllerOptions::default());

    let envs: Api<Environment> = Api::all(w.client.clone());
    let get_ready = |name: &'static str| {
        let envs = envs.clone();
        async move { envs.get(name).await.ok().and_then(|e| e.status).and_then(|s| ready(&s.conditions)) }
    };
    let (status, reason, message) =
        w.eventually(MIN, "qa's Ready", || async { get_ready("qa").await.filter(|r| r.0 == "False") }).await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("uat"), "says which upstream: {message}");
    let stg = w.eventually(MIN, "stg's Ready", || get_ready("stg")).await;
    assert_eq!(stg, ("True".into(), "Valid".into(), "valid; Promotions come from dev".into()));

    // Creating the missing upstream makes qa valid: every Environment is looked at again.
    w.create_environment(env("uat", &[], "555555555555")).await;
    let qa = w.eventually(MIN, "qa Ready", || async { get_ready("qa").await.filter(|r| r.0 == "True") }).await;
    assert_eq!(qa.2, "valid; Promotions come from uat");

    let policies: Api<RollbackPolicy> = Api::namespaced(w.client.clone(), &w.ns);
    let policy = w
        .eventually(MIN, "the policy's status", || async {
            policies.get("slo").await.ok().and_then(|p| p.status).filter(|s| !s.conditions.is_empty())
        })
        .await;
    assert_eq!(policy.alarm_selectors, 1);
    assert_eq!(
        ready(&policy.conditions),
        Some(("True".into(), "Valid".into(), "valid; 1 alarm selector(s), 0 metric trigger(s), read every 1s".into()))
    );

    // The freeze: in effect until its end, then not, without anyone touching it.
    let windows: Api<FreezeWindow> = Api::namespaced(w.client.clone(), KILN_NS);
    let active = w
        .eventually(MIN, "the freeze in effect", || async {
            windows.get("deploy-party").await.ok().and_then(|f| f.status).filter(|s| s.active)
        })
        .await;
    let end: jiff::Timestamp = ends.parse().unwrap();
    assert_eq!(active.active_until.map(|t| t.0), Some(end));
    assert!(active.next_start.is_none(), "a one-off window has no next start");
    let over = w
        .eventually(MIN, "the freeze over", || async {
            windows.get("deploy-party").await.ok().and_then(|f| f.status).filter(|s| !s.active)
        })
        .await;
    assert!(jiff::Timestamp::now() >= end);
    assert!(over.active_until.is_none(), "a status field kiln stops applying is removed");
    assert_eq!(ready(&over.conditions).map(|r| r.2), Some("not in effect, and no freeze is scheduled".to_string()));
    let typo = w
        .eventually(MIN, "the invalid window's status", || async {
            windows.get("typo").await.ok().and_then(|f| f.status).filter(|s| !s.conditions.is_empty())
        })
        .await;
    let (status, reason, message) = ready(&typo.conditions).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("America/New_Yrok"), "{message}");
}
