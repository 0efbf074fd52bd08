//! A Release's aggregate status and the Promotions kiln creates for it, from the first
//! environment to the last.

use std::collections::BTreeMap;

use kiln_api::PromotionPhase;
use kiln_api::promotion::{PromotionSpec, PromotionStatus, RollbackRequest};
use kiln_api::release::{ReleaseEnvironmentPhase, ReleasePhase, ReleaseStatus};
use kiln_core::release::{self, NewPromotion, PromotionView, ReleaseInput};
use kiln_core::sim::*;
use kiln_core::{Problem, SpecError};

fn envs() -> BTreeMap<String, kiln_api::environment::EnvironmentSpec> {
    ["dev", "stg", "prod"].iter().map(|n| (n.to_string(), environment(n))).collect()
}

fn promo(env: &str) -> PromotionSpec {
    PromotionSpec {
        release: "ingest-worker-v1-4-2".into(),
        environment: env.into(),
        requested_by: None,
        approvals: vec![],
        abort: false,
        retry: 0,
        rollback: None,
        downgrade: false,
    }
}

fn status(phase: PromotionPhase) -> PromotionStatus {
    PromotionStatus { phase, message: Some(format!("{phase}")), ..Default::default() }
}

fn view<'a>(name: &'a str, spec: &'a PromotionSpec, status: Option<&'a PromotionStatus>) -> PromotionView<'a> {
    PromotionView { name, spec, status, release_uid: None }
}

fn decide(promotions: &[PromotionView<'_>], problems: &[Problem]) -> release::ReleaseDecision {
    let spec = ecs_release();
    let envs = envs();
    let st = ReleaseStatus::default();
    release::decide(&ReleaseInput {
        now: ts("2026-11-18T15:00:00Z"),
        name: "ingest-worker-v1-4-2",
        uid: Some(RELEASE_UID),
        generation: Some(1),
        spec: &spec,
        status: &st,
        environments: &envs,
        promotions,
        problems,
    })
}

#[test]
fn a_new_release_gets_its_first_promotion() {
    let d = decide(&[], &[]);
    assert_eq!(d.create, vec![NewPromotion { name: "ingest-worker-v1-4-2-dev".into(), environment: "dev".into() }]);
    assert_eq!(d.status.phase, ReleasePhase::Progressing);
    assert_eq!(d.status.current_environment.as_deref(), Some("dev"));
    assert_eq!(d.status.environments.len(), 3);
    assert_eq!(d.status.environments[1].phase, ReleaseEnvironmentPhase::Pending);
}

#[test]
fn success_upstream_creates_the_next_auto_promotion_only() {
    let (dev, stg) = (promo("dev"), promo("stg"));
    let done = status(PromotionPhase::Succeeded);
    let d = decide(&[view("ingest-worker-v1-4-2-dev", &dev, Some(&done))], &[]);
    assert_eq!(d.create, vec![NewPromotion { name: "ingest-worker-v1-4-2-stg".into(), environment: "stg".into() }]);

    // prod is not auto: kiln shows how to promote instead of creating it.
    let d = decide(
        &[view("ingest-worker-v1-4-2-dev", &dev, Some(&done)), view("ingest-worker-v1-4-2-stg", &stg, Some(&done))],
        &[],
    );
    assert!(d.create.is_empty());
    let prod = &d.status.environments[2];
    assert_eq!(prod.phase, ReleaseEnvironmentPhase::AwaitingPromotion);
    assert!(prod.message.as_deref().unwrap().contains("kubectl kiln promote ingest-worker-v1-4-2 --env prod"));
    assert_eq!(d.status.current_environment.as_deref(), Some("stg"));
}

#[test]
fn the_release_succeeds_when_prod_succeeds() {
    let (dev, stg, prod) = (promo("dev"), promo("stg"), promo("prod"));
    let done = status(PromotionPhase::Succeeded);
    let d = decide(&[view("a", &dev, Some(&done)), view("b", &stg, Some(&done)), view("c", &prod, Some(&done))], &[]);
    assert_eq!(d.status.phase, ReleasePhase::Succeeded);
    let ready = d.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert!(d.create.is_empty());
}

#[test]
fn a_rollback_marks_the_release_rolled_back_and_stalled() {
    let (dev, stg) = (promo("dev"), promo("stg"));
    let (done, rolled) = (status(PromotionPhase::Succeeded), status(PromotionPhase::RolledBack));
    let d = decide(&[view("a", &dev, Some(&done)), view("b", &stg, Some(&rolled))], &[]);
    assert_eq!(d.status.phase, ReleasePhase::RolledBack);
    assert_eq!(d.status.environments[1].phase, ReleaseEnvironmentPhase::RolledBack);
    let stalled = d.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.status, "True");
    assert!(d.create.is_empty(), "nothing goes to prod after a rollback in stg");
}

#[test]
fn rollback_promotions_do_not_count_as_progress() {
    let mut rb = promo("dev");
    rb.rollback = Some(RollbackRequest { reason: "r".into(), from_release: None });
    let done = status(PromotionPhase::Succeeded);
    let d = decide(&[view("rb", &rb, Some(&done))], &[]);
    assert_eq!(d.create.len(), 1, "the forward dev Promotion is still created");
}

#[test]
fn invalid_release_creates_nothing_and_says_why() {
    let qa = SpecError::UnknownEnvironment {
        field: "spec.environments[2]".into(),
        name: "qa".into(),
        known: "dev, stg, prod".into(),
    };
    let d = decide(&[], &[Problem::Spec(qa)]);
    assert!(d.create.is_empty());
    let stalled = d.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "InvalidSpec"));
    assert!(stalled.message.contains("qa"));
}

#[test]
fn promotion_names_fit_kubernetes_limits() {
    assert_eq!(release::promotion_name("ingest-worker-v1-4-2", "prod"), "ingest-worker-v1-4-2-prod");
    let long = "a".repeat(300);
    assert_eq!(release::promotion_name(&long, "prod").len(), 253);
}

/// Issue "Tenancy and release integrity" §2: the Release was deleted and created again under its
/// name. What the earlier one did (dev succeeded, kiln's dev Promotion still there: no garbage
/// collector, or a Promotion made by hand) is not this Release's progress: dev shows nothing yet,
/// and kiln creates this Release's own dev Promotion beside the old one.
#[test]
fn promotions_of_an_earlier_release_of_the_name_are_not_this_ones() {
    let (dev, stg) = (promo("dev"), promo("stg"));
    let done = status(PromotionPhase::Succeeded);
    let earlier = "0a1b2c3d-0000-4000-8000-00000000000e";
    let old = [
        PromotionView { release_uid: Some(earlier), ..view("ingest-worker-v1-4-2-dev", &dev, Some(&done)) },
        PromotionView { release_uid: Some(earlier), ..view("ingest-worker-v1-4-2-stg", &stg, Some(&done)) },
    ];
    let d = decide(&old, &[]);
    assert_eq!(d.status.phase, ReleasePhase::Progressing, "not Succeeded on the earlier Release's record");
    assert_eq!(
        d.create,
        vec![NewPromotion { name: "ingest-worker-v1-4-2-dev-6f1c2a9e".into(), environment: "dev".into() }]
    );
    assert_eq!(d.status.environments[1].phase, ReleaseEnvironmentPhase::Pending);
    // Its own, once created, counts.
    let mine = PromotionView {
        release_uid: Some(RELEASE_UID),
        ..view("ingest-worker-v1-4-2-dev-6f1c2a9e", &dev, Some(&done))
    };
    let d = decide(&[old[0].clone(), old[1].clone(), mine], &[]);
    assert_eq!(d.status.environments[0].promotion.as_deref(), Some("ingest-worker-v1-4-2-dev-6f1c2a9e"));
    assert_eq!(d.status.environments[0].phase, ReleaseEnvironmentPhase::Succeeded);
    assert_eq!(
        d.create,
        vec![NewPromotion { name: "ingest-worker-v1-4-2-stg-6f1c2a9e".into(), environment: "stg".into() }]
    );
}
