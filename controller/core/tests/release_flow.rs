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
    }
}

fn status(phase: PromotionPhase) -> PromotionStatus {
    PromotionStatus { phase, message: Some(format!("{phase}")), ..Default::default() }
}

fn decide(promotions: &[PromotionView<'_>], problems: &[Problem]) -> release::ReleaseDecision {
    let spec = ecs_release();
    let envs = envs();
    let st = ReleaseStatus::default();
    release::decide(&ReleaseInput {
        now: ts("2026-11-18T15:00:00Z"),
        name: "ingest-worker-v1-4-2",
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
    let d = decide(&[PromotionView { name: "ingest-worker-v1-4-2-dev", spec: &dev, status: Some(&done) }], &[]);
    assert_eq!(d.create, vec![NewPromotion { name: "ingest-worker-v1-4-2-stg".into(), environment: "stg".into() }]);

    // prod is not auto: kiln shows how to promote instead of creating it.
    let d = decide(
        &[
            PromotionView { name: "ingest-worker-v1-4-2-dev", spec: &dev, status: Some(&done) },
            PromotionView { name: "ingest-worker-v1-4-2-stg", spec: &stg, status: Some(&done) },
        ],
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
    let d = decide(
        &[
            PromotionView { name: "a", spec: &dev, status: Some(&done) },
            PromotionView { name: "b", spec: &stg, status: Some(&done) },
            PromotionView { name: "c", spec: &prod, status: Some(&done) },
        ],
        &[],
    );
    assert_eq!(d.status.phase, ReleasePhase::Succeeded);
    let ready = d.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert!(d.create.is_empty());
}

#[test]
fn a_rollback_marks_the_release_rolled_back_and_stalled() {
    let (dev, stg) = (promo("dev"), promo("stg"));
    let (done, rolled) = (status(PromotionPhase::Succeeded), status(PromotionPhase::RolledBack));
    let d = decide(
        &[
            PromotionView { name: "a", spec: &dev, status: Some(&done) },
            PromotionView { name: "b", spec: &stg, status: Some(&rolled) },
        ],
        &[],
    );
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
    let d = decide(&[PromotionView { name: "rb", spec: &rb, status: Some(&done) }], &[]);
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
