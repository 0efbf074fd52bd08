//! The manifests in `examples/` are consistent with each other and with the decision core: no
//! unknown environments or cycles, every freeze window compiles, every policy is usable, and the
//! prod Promotion example behaves as its comments say (frozen at the weekend, deploys midweek
//! with its approvals).

use std::collections::BTreeMap;
use std::path::Path;

use jiff::Timestamp;
use kiln_api::{Environment, FreezeWindow, Promotion, PromotionPhase, Release, RollbackPolicy};
use kiln_core::freeze::CompiledWindow;
use kiln_core::gates::UpstreamObservation;
use kiln_core::machine::{self, Action, Context, Observations, PolicyState, PromotionInput};
use kiln_core::signals::{self, AlarmObservation, AlarmState, SignalObservations};
use kiln_core::validate;

#[derive(Default)]
struct Examples {
    environments: BTreeMap<String, kiln_api::EnvironmentSpec>,
    releases: Vec<Release>,
    promotions: Vec<Promotion>,
    freezes: Vec<FreezeWindow>,
    policies: Vec<RollbackPolicy>,
}

fn load() -> Examples {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut ex = Examples::default();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<_> =
        entries.map(|e| e.expect("dir entry").path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let ctx = format!("{} ({kind})", file.display());
            match kind.as_str() {
                "Environment" => {
                    let e: Environment = serde_json::from_value(doc).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    ex.environments.insert(e.metadata.name.clone().expect("name"), e.spec);
                }
                "Release" => ex.releases.push(serde_json::from_value(doc).unwrap_or_else(|e| panic!("{ctx}: {e}"))),
                "Promotion" => ex.promotions.push(serde_json::from_value(doc).unwrap_or_else(|e| panic!("{ctx}: {e}"))),
                "FreezeWindow" => ex.freezes.push(serde_json::from_value(doc).unwrap_or_else(|e| panic!("{ctx}: {e}"))),
                "RollbackPolicy" => {
                    ex.policies.push(serde_json::from_value(doc).unwrap_or_else(|e| panic!("{ctx}: {e}")))
                }
                other => panic!("{ctx}: unexpected kind {other:?}"),
            }
        }
    }
    ex
}

fn windows(ex: &Examples) -> Vec<CompiledWindow> {
    ex.freezes
        .iter()
        .map(|f| {
            let ns = f.metadata.namespace.as_deref().unwrap_or("default");
            let name = f.metadata.name.as_deref().unwrap_or_default();
            CompiledWindow::compile(ns, name, &f.spec).unwrap_or_else(|e| panic!("FreezeWindow {ns}/{name}: {e}"))
        })
        .collect()
}

#[test]
fn examples_pass_the_cross_object_checks() {
    let ex = load();
    assert_eq!(ex.environments.keys().collect::<Vec<_>>(), ["dev", "prod", "stg"]);
    for (name, errs) in validate::environments(&ex.environments) {
        assert!(errs.is_empty(), "Environment {name}: {errs:?}");
    }
    for r in &ex.releases {
        let errs = validate::release(&r.spec, &ex.environments);
        assert!(errs.is_empty(), "Release {:?}: {errs:?}", r.metadata.name);
        // Every environment's rollback policy exists in the release's namespace.
        for env in &r.spec.environments {
            if let Some(policy) = &ex.environments[env].rollback_policy_ref {
                assert!(
                    ex.policies
                        .iter()
                        .any(|p| p.metadata.name.as_ref() == Some(policy)
                            && p.metadata.namespace == r.metadata.namespace),
                    "Release {:?} in {env} needs RollbackPolicy {policy} in its namespace",
                    r.metadata.name
                );
            }
        }
    }
    for p in &ex.promotions {
        let r = ex
            .releases
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(&p.spec.release))
            .expect("promotion's release exists");
        assert!(validate::promotion(&p.spec.environment, &r.spec, &p.spec.release).is_empty());
    }
    for p in &ex.policies {
        signals::validate_policy(&p.spec).unwrap_or_else(|e| panic!("RollbackPolicy {:?}: {e}", p.metadata.name));
    }
    assert_eq!(windows(&ex).len(), 2);
}

fn decide_prod_at(ex: &Examples, now: &str) -> machine::Decision {
    let promo = ex.promotions.iter().find(|p| p.spec.environment == "prod").expect("prod promotion example");
    let release =
        &ex.releases.iter().find(|r| r.metadata.name.as_deref() == Some(&promo.spec.release)).expect("release").spec;
    let env = &ex.environments["prod"];
    let policy = &ex.policies.iter().find(|p| p.metadata.namespace.as_deref() == Some("ingest")).expect("policy").spec;
    let now: Timestamp = now.parse().expect("time");
    let upstream = [UpstreamObservation {
        environment: "stg".into(),
        phase: Some(PromotionPhase::Succeeded),
        full_traffic_at: Some(now.checked_sub(jiff::SignedDuration::from_hours(2)).expect("time")),
        deployed: None,
        health: Some(Ok(())),
        superseded_by: None,
    }];
    let freezes = windows(ex);
    let status = Default::default();
    let alarms = vec![
        AlarmObservation {
            name: "ingest-5xx".into(),
            state: AlarmState::Ok,
            state_changed_at: "2026-01-01T00:00:00Z".parse().expect("t"),
            history: None,
        },
        AlarmObservation {
            name: "ingest-p95-api".into(),
            state: AlarmState::Ok,
            state_changed_at: "2026-01-01T00:00:00Z".parse().expect("t"),
            history: None,
        },
    ];
    let obs = SignalObservations { observed_at: now, alarms, metrics: vec![], error_budget: None };
    let observed = Observations {
        release: Some(release.clone()),
        environment: Some(env.clone()),
        policy: PolicyState::Found(Box::new(policy.clone())),
        upstream: upstream.to_vec(),
        freezes,
        signals: Some(obs),
        running: kiln_core::sim::previous_version_runs(),
        ..Observations::default()
    };
    machine::decide(&PromotionInput {
        now,
        generation: Some(1),
        spec: &promo.spec,
        status: &status,
        deleting: false,
        observed: &observed,
        context: Context {
            namespace: "ingest",
            promotion: "ingest-worker-v1-4-2-prod",
            release_name: &promo.spec.release,
            controller_version: "test",
        },
    })
}

#[test]
fn the_prod_promotion_example_is_frozen_at_the_weekend_and_deploys_midweek() {
    let ex = load();
    // Saturday 2026-11-21 noon in New York.
    let d = decide_prod_at(&ex, "2026-11-21T17:00:00Z");
    assert_eq!(d.status.phase, PromotionPhase::Frozen);
    let freeze = d.status.gates.iter().find(|g| g.name == "freeze").expect("freeze gate");
    assert!(
        freeze.message.contains("kiln-system/weekend active until Mon 09:00 America/New_York"),
        "{}",
        freeze.message
    );
    // Inside the holiday freeze, a weekday.
    let d = decide_prod_at(&ex, "2026-12-23T15:00:00Z");
    assert_eq!(d.status.phase, PromotionPhase::Frozen);
    assert!(d.status.gates.iter().any(|g| g.message.contains("holidays")), "{:?}", d.status.gates);
    // Wednesday 2026-11-18 10:00 New York: the approvals in the example are enough.
    let d = decide_prod_at(&ex, "2026-11-18T15:00:00Z");
    assert_eq!(d.status.phase, PromotionPhase::Deploying, "{:?}", d.status.gates);
    assert_eq!(d.action, Some(Action::CaptureSnapshot));
}
