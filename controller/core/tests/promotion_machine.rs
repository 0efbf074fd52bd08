//! The Promotion state machine, transition by transition, asserting what a user would see:
//! phases, gate messages, traffic weights, rollback cause, timeline and evidence.

use jiff::SignedDuration;
use kiln_api::promotion::StepStatus;
use kiln_api::{PromotionPhase, RollbackCause};
use kiln_core::Problem;
use kiln_core::evidence;
use kiln_core::machine::{self, Action, Outcome};
use kiln_core::plan::HookPoint;
use kiln_core::signals::AlarmState;
use kiln_core::sim::*;

#[test]
fn dev_auto_promotion_deploys_step_by_step_and_succeeds() {
    let mut w = World::new("dev");
    let actions = w.run();
    assert_eq!(actions, vec![Action::CaptureSnapshot, Action::Prepare, Action::ShiftTraffic { step: 0, weight: 10 }]);
    assert_eq!(w.phase(), PromotionPhase::Baking);
    assert_eq!(w.weight(), Some(10));
    let bake = w.status.bake.clone().unwrap();
    assert_eq!(bake.ends_at.unwrap().0, ts("2026-11-18T15:05:00Z"), "step bake is 5m");

    // Still baking one second before the step ends: nothing to do, requeue at the end.
    w.advance(299);
    let d = w.decide();
    assert_eq!(d.action, None);
    assert_eq!(d.requeue_after, Some(SignedDuration::from_secs(1)));

    w.advance(1);
    assert_eq!(w.run(), vec![Action::ShiftTraffic { step: 1, weight: 100 }]);
    assert_eq!(w.weight(), Some(100));
    assert_eq!(w.phase(), PromotionPhase::Baking, "dev bakes 5m at full traffic");
    w.advance(300);
    assert_eq!(w.run(), vec![Action::Finalize]);
    assert_eq!(w.phase(), PromotionPhase::Succeeded);

    let ev = w.status.evidence.clone().expect("evidence");
    assert_eq!(ev.outcome, PromotionPhase::Succeeded);
    assert_eq!(ev.artifacts[0].digest, DIGEST.rsplit_once('@').unwrap().1);
    assert_eq!(ev.account_id, "111111111111");
    assert_eq!(w.status.evidence_sha256.as_deref(), Some(evidence::digest(&ev).as_str()));
    assert_eq!(
        w.reasons(),
        [
            "Created",
            "GatesPassed",
            "SnapshotCaptured",
            "Prepared",
            "TrafficShifted",
            "Baking",
            "Deploying",
            "TrafficShifted",
            "Baking",
            "Finalizing",
            "Succeeded"
        ]
    );
    assert!(w.events.iter().any(|e| e.reason == "Evidence" && e.message.contains("sha256:")));
    let ready = w.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
}

#[test]
fn prod_waits_for_security_and_product_approvals() {
    let mut w = World::new("prod");
    assert_eq!(w.step(), None);
    assert_eq!(w.phase(), PromotionPhase::WaitingForApproval);
    assert_eq!(w.gate("approvals"), (false, "needs 1 security approval and 1 product approval (have none)".into()));
    assert_eq!(w.status.gate_summary.as_deref(), Some("waiting: approvals"));

    w.approve("seclead@example.com", "security");
    w.step();
    assert_eq!(w.gate("approvals").1, "needs 1 product approval (have security: seclead@example.com)");

    w.approve("pm@example.com", "product");
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    assert_eq!(w.phase(), PromotionPhase::Deploying);
    assert!(w.gate("approvals").0);
    let ev_gates = w.status.gates.clone();
    w.run();
    w.advance(300);
    w.run();
    w.advance(600);
    w.run();
    assert_eq!(w.phase(), PromotionPhase::Succeeded);
    let ev = w.status.evidence.unwrap();
    assert_eq!(ev.approvals.len(), 2);
    assert_eq!(ev.gates, ev_gates, "evidence keeps gate results at decision time");
    assert_eq!(ev.change_ref.as_deref(), Some("CHG-20251028-001"));
}

#[test]
fn self_approval_is_not_counted_in_prod() {
    let mut w = World::new("prod").approved_by("dev@example.com", "security").approved_by("pm@example.com", "product");
    w.step();
    let (ok, msg) = w.gate("approvals");
    assert!(!ok);
    assert!(msg.contains("dev@example.com is the release author"), "{msg}");
}

#[test]
fn prod_requires_a_change_ref() {
    let mut w = World::approved_prod();
    if let Some(r) = w.release.as_mut() {
        r.change_ref = None;
    }
    w.assert_waiting_on("changeRef", "prod requires a change reference: set spec.changeRef on the Release");
}

#[test]
fn a_zero_bake_succeeds_once_all_traffic_has_moved() {
    let mut w = World::new("dev");
    if let Some(env) = w.env.as_mut() {
        env.bake.duration = "0s".into();
    }
    assert_eq!(w.run(), vec![Action::CaptureSnapshot, Action::Prepare, Action::ShiftTraffic { step: 0, weight: 10 }]);
    // Intermediate steps still bake (and watch the signals): only the final bake is zero.
    assert_eq!(w.phase(), PromotionPhase::Baking);
    w.advance(300);
    assert_eq!(w.run(), vec![Action::ShiftTraffic { step: 1, weight: 100 }, Action::Finalize]);
    assert_eq!(w.phase(), PromotionPhase::Succeeded);
    assert_eq!(w.weight(), Some(100));
    assert!(!w.reasons().ends_with(&["Baking".to_string(), "Finalizing".to_string(), "Succeeded".to_string()]));
}

#[test]
fn prod_waits_until_stg_has_baked_30_minutes() {
    let mut w = World::approved_prod();
    w.upstream[0].full_traffic_at = Some(ts("2026-11-18T14:50:00Z"));
    let d = w.decide();
    w.status = d.status.clone();
    assert_eq!(w.phase(), PromotionPhase::WaitingForGates);
    assert_eq!(w.gate("upstream"), (false, "stg must bake 30m (ready at 2026-11-18T15:20:00Z)".into()));
    assert_eq!(d.requeue_after, Some(SignedDuration::from_mins(20)), "wakes up exactly when the bake is satisfied");
    w.advance(1200);
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
}

#[test]
fn prod_is_blocked_while_stg_alarms_are_red() {
    let mut w = World::approved_prod();
    w.upstream[0].health = Some(Err("alarm ingest-5xx is in ALARM".into()));
    let d = w.decide();
    w.status = d.status.clone();
    assert_eq!(w.phase(), PromotionPhase::WaitingForGates);
    assert_eq!(w.gate("upstreamHealth"), (false, "stg: alarm ingest-5xx is in ALARM".into()));
    assert_eq!(d.requeue_after, Some(SignedDuration::from_secs(30)));
}

#[test]
fn upstream_not_promoted_yet() {
    let mut w = World::approved_prod();
    w.upstream.clear();
    w.step();
    assert_eq!(w.gate("upstream"), (false, "not promoted to stg yet".into()));
    w.upstream.push(kiln_core::gates::UpstreamObservation {
        environment: "stg".into(),
        phase: Some(PromotionPhase::Baking),
        full_traffic_at: None,
        deployed: None,
        health: Some(Ok(())),
        superseded_by: None,
    });
    w.step();
    assert_eq!(w.gate("upstream"), (false, "stg is Baking, needs Succeeded".into()));
}

#[test]
fn a_release_rolled_back_upstream_cannot_go_further() {
    let mut w = World::approved_prod();
    w.upstream[0].superseded_by = Some("ingest-worker-v1-4-1-stg-rollback".into());
    w.assert_waiting_on(
        "upstream",
        "stg was rolled back by ingest-worker-v1-4-1-stg-rollback after this release succeeded there",
    );
}

#[test]
fn weekend_freeze_blocks_prod_until_monday_morning() {
    // Saturday 2026-11-21 12:00 New York (EST, -05:00).
    let mut w =
        World::new("prod").at("2026-11-21T17:00:00Z").approved_by("sec", "security").approved_by("pm", "product");
    let d = w.decide();
    w.status = d.status.clone();
    assert_eq!(w.phase(), PromotionPhase::Frozen);
    let (ok, msg) = w.gate("freeze");
    assert!(!ok);
    assert!(
        msg.starts_with("FreezeWindow kiln-system/weekend active until Mon 09:00 America/New_York (weekend freeze)"),
        "{msg}"
    );
    assert!(msg.contains("standard"), "{msg}");
    // Monday 09:00 EST is 14:00Z.
    assert_eq!(d.requeue_after, Some(ts("2026-11-23T14:00:00Z").duration_since(w.now)));
    w.now = ts("2026-11-23T14:00:00Z");
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
}

/// The exception's approvals are in addition to prod's own (issue "Tenancy and release
/// integrity" §3): the security lead who approved for prod does not also count for the
/// exception's security approval.
#[test]
fn hotfix_passes_the_freeze_with_security_and_sre_approvals() {
    let mut w = World::new("prod")
        .at("2026-11-21T17:00:00Z")
        .hotfix()
        .approved_by("sec", "security")
        .approved_by("pm", "product");
    w.step();
    assert_eq!(w.phase(), PromotionPhase::Frozen);
    assert!(
        w.gate("freeze").1.contains("exception for hotfix releases needs 1 sre approval"),
        "{}",
        w.gate("freeze").1
    );
    w.approve("oncall", "sre");
    w.step();
    assert_eq!(w.phase(), PromotionPhase::Frozen, "one security approval cannot count twice");
    let (_, msg) = w.gate("freeze");
    assert!(msg.contains("needs 1 security approval"), "{msg}");
    w.approve("sec2", "security");
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    let exception = w.status.freeze_exception.clone().expect("exception recorded");
    assert!(exception.contains("hotfix release allowed by exception"), "{exception}");
    assert!(w.events.iter().any(|e| e.warning && e.reason == "FreezeException"));
}

#[test]
fn later_promotions_queue_behind_the_active_one() {
    let mut w = World::new("dev");
    w.behind("ingest-worker-v1-4-1-dev", PromotionPhase::Baking);
    w.step();
    assert_eq!(w.phase(), PromotionPhase::Queued);
    assert_eq!(w.gate("queue"), (false, "queued behind ingest-worker-v1-4-1-dev (Baking)".into()));
    w.ahead.clear();
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
}

#[test]
fn breach_during_a_step_bake_restores_the_previous_state() {
    let mut w = World::new("dev");
    w.run();
    assert_eq!(w.weight(), Some(10));
    w.advance(60);
    w.breach();
    w.advance(2);
    let actions = w.run();
    assert_eq!(actions, vec![Action::Restore]);
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    let rb = w.status.rollback.clone().unwrap();
    assert_eq!(rb.cause, RollbackCause::Alarm);
    assert_eq!(rb.signal.as_deref(), Some("ingest-5xx"));
    assert!(rb.message.contains("detected 2s after it began"), "{}", rb.message);
    assert_eq!(rb.breach_started_at.unwrap().0, ts("2026-11-18T15:01:00Z"));
    assert!(rb.completed_at.is_some());
    assert!(w.reasons().contains(&"BreachDetected".to_string()));
    let ev = w.status.evidence.unwrap();
    assert_eq!(ev.rollback.unwrap().cause, RollbackCause::Alarm);
    assert!(ev.signals.iter().any(|s| s.name == "ingest-5xx" && s.state == "ALARM"));
    let stalled = w.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.status, "True");
}

#[test]
fn breach_during_the_final_bake_restores() {
    let mut w = World::new("dev");
    w.run();
    w.advance(300);
    w.run();
    assert_eq!(w.weight(), Some(100));
    w.advance(100);
    w.breach();
    assert_eq!(w.step(), Some(Action::Restore));
    assert_eq!(w.phase(), PromotionPhase::RollingBack);
}

#[test]
fn abort_rolls_back_in_flight_and_cancels_waiting() {
    let mut w = World::new("dev");
    w.run();
    w.spec.abort = true;
    assert_eq!(w.run(), vec![Action::Restore]);
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    assert_eq!(w.status.rollback.as_ref().unwrap().cause, RollbackCause::Abort);

    let mut w = World::new("prod");
    w.step();
    w.spec.abort = true;
    assert_eq!(w.step(), None);
    assert_eq!(w.phase(), PromotionPhase::Aborted);
    assert!(w.status.evidence.is_some());
}

#[test]
fn failed_pre_traffic_hook_rolls_back_before_any_traffic_moves() {
    let mut w = World::new("dev");
    w.set_hooks(Some(lambda_hook("migrate")), None);
    let actions =
        w.run_with(|a| (*a == Action::RunHook(HookPoint::PreTraffic)).then(|| Outcome::Failed("exit 1".into())));
    assert_eq!(
        actions,
        vec![Action::CaptureSnapshot, Action::Prepare, Action::RunHook(HookPoint::PreTraffic), Action::Restore]
    );
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    assert_eq!(w.weight(), None, "no traffic ever moved");
    assert_eq!(w.status.rollback.unwrap().cause, RollbackCause::HookFailed);
}

#[test]
fn hooks_that_pass_gate_the_steps() {
    let mut w = World::new("dev");
    w.set_hooks(Some(lambda_hook("smoke")), Some(lambda_hook("smoke")));
    if let Some(ecs) = w.release.as_mut().and_then(|r| r.target.ecs.as_mut()) {
        ecs.steps = Some(vec![100]);
    }
    let actions = w.run();
    assert_eq!(
        actions,
        vec![
            Action::CaptureSnapshot,
            Action::Prepare,
            Action::RunHook(HookPoint::PreTraffic),
            Action::ShiftTraffic { step: 0, weight: 100 },
            Action::RunHook(HookPoint::PostTraffic)
        ]
    );
    assert_eq!(w.status.hooks_passed, vec!["preTraffic", "postTraffic"]);
}

#[test]
fn hook_in_progress_is_asked_again() {
    let mut w = World::new("dev");
    w.set_hooks(
        Some(kiln_api::release::Hook {
            lambda_function: None,
            ecs_task_definition: Some("migrate:3".into()),
            timeout: None,
        }),
        None,
    );
    let mut first = true;
    let actions = w.run_with(|a| {
        (matches!(a, Action::RunHook(_)) && std::mem::take(&mut first))
            .then(|| Outcome::InProgress("task running".into()))
    });
    assert_eq!(actions.iter().filter(|a| matches!(a, Action::RunHook(_))).count(), 2);
    assert_eq!(w.weight(), Some(10));
}

#[test]
fn permanent_failure_after_the_snapshot_restores_and_before_it_fails() {
    let mut w = World::new("dev");
    let actions =
        w.run_with(|a| (*a == Action::Prepare).then(|| Outcome::Failed("container api not in task definition".into())));
    assert_eq!(actions, vec![Action::CaptureSnapshot, Action::Prepare, Action::Restore]);
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    assert_eq!(w.status.rollback.as_ref().unwrap().cause, RollbackCause::DeploymentFailed);

    let mut w = World::new("dev");
    w.run_with(|a| (*a == Action::CaptureSnapshot).then(|| Outcome::Failed("service not found".into())));
    assert_eq!(w.phase(), PromotionPhase::Failed);
    assert!(w.status.message.unwrap().contains("nothing had changed in AWS"));
}

#[test]
fn a_failed_restore_is_retried_forever() {
    let mut w = World::new("dev");
    w.run();
    w.breach();
    let mut failures = 3;
    let actions = w.run_with(|a| {
        (*a == Action::Restore && failures > 0).then(|| {
            failures -= 1;
            Outcome::Failed("throttled".into())
        })
    });
    assert_eq!(actions, vec![Action::Restore; 4]);
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    assert_eq!(w.events.iter().filter(|e| e.reason == "RestoreFailed").count(), 3);
}

#[test]
fn retry_restarts_a_rolled_back_promotion_from_its_gates() {
    let mut w = World::new("dev");
    w.run();
    w.breach();
    w.run();
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    let before = w.status.timeline.len();
    w.alarm = Some((AlarmState::Ok, w.now));
    w.advance(60);
    w.spec.retry = 1;
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    assert_eq!(w.status.observed_retry, 1);
    assert!(w.status.rollback.is_none() && w.status.evidence.is_none());
    assert!(w.status.timeline.len() > before, "the timeline keeps the first attempt");
    assert!(w.reasons().contains(&"Retry".to_string()));
}

#[test]
fn retry_while_in_flight_is_acknowledged_and_ignored() {
    let mut w = World::new("dev");
    w.run();
    w.spec.retry = 1;
    w.step();
    assert_eq!(w.status.observed_retry, 1);
    assert_eq!(w.phase(), PromotionPhase::Baking);
}

#[test]
fn rollback_promotion_is_never_blocked_by_freeze_approvals_or_queue() {
    // Saturday, prod, no approvals, another promotion queued ahead (waiting, not in flight).
    let mut w = World::new("prod").at("2026-11-21T17:00:00Z").rollback_promotion();
    w.behind("ingest-worker-v1-4-3-prod", PromotionPhase::WaitingForApproval);
    let actions = w.run();
    assert_eq!(
        actions,
        vec![Action::CaptureSnapshot, Action::Prepare, Action::ShiftTraffic { step: 0, weight: 100 }, Action::Finalize]
    );
    assert_eq!(w.phase(), PromotionPhase::Succeeded);
    let ev = w.status.evidence.unwrap();
    assert_eq!(ev.kind, "rollback");
}

#[test]
fn rollback_promotion_takes_over_from_an_in_flight_promotion() {
    let mut rollback = World::new("prod").rollback_promotion();
    rollback.behind("ingest-worker-v1-4-3-prod", PromotionPhase::Baking);
    assert_eq!(rollback.step(), None);
    assert_eq!(rollback.phase(), PromotionPhase::Deploying);
    assert!(rollback.status.message.clone().unwrap().contains("waiting for ingest-worker-v1-4-3-prod to restore"));

    // The in-flight one sees it is preempted and restores at once.
    let mut forward = World::new("dev");
    forward.run();
    forward.preempted_by = Some("ingest-worker-v1-4-2-prod".into());
    assert_eq!(forward.run(), vec![Action::Restore]);
    assert_eq!(forward.status.rollback.unwrap().cause, RollbackCause::Superseded);

    rollback.ahead.clear();
    assert_eq!(rollback.step(), Some(Action::CaptureSnapshot));
}

#[test]
fn after_a_crash_the_same_step_is_repeated() {
    let mut w = World::new("dev");
    w.run();
    w.advance(300);
    // The controller shifted traffic to 100% and crashed before writing status.
    let action = w.step().unwrap();
    assert_eq!(action, Action::ShiftTraffic { step: 1, weight: 100 });
    let again = w.step().unwrap();
    assert_eq!(again, action, "a restarted controller repeats the idempotent step");
}

#[test]
fn resumes_from_any_recorded_phase() {
    // A status written by an earlier controller in the middle of RollingBack.
    let mut w = World::new("dev");
    w.run();
    w.breach();
    w.step();
    assert_eq!(w.phase(), PromotionPhase::RollingBack);
    let mut restarted = w.clone();
    restarted.events.clear();
    assert_eq!(restarted.step(), Some(Action::Restore));
}

#[test]
fn a_freeze_starting_mid_deploy_holds_traffic_but_not_rollback() {
    // Friday 2026-11-20 16:58 New York; 10% step bake ends 17:03, inside the freeze.
    let mut w =
        World::new("prod").at("2026-11-20T21:58:00Z").approved_by("sec", "security").approved_by("pm", "product");
    w.run();
    assert_eq!(w.weight(), Some(10));
    w.advance(300);
    let d = w.decide();
    assert_eq!(d.action, None);
    assert_eq!(d.status.phase, PromotionPhase::Baking);
    assert!(d.status.message.clone().unwrap().starts_with("holding traffic: FreezeWindow kiln-system/weekend"));
    assert_eq!(d.requeue_after, Some(SignedDuration::from_secs(2)), "keeps watching signals while holding");
    w.status = d.status;
    w.breach();
    assert_eq!(w.step(), Some(Action::Restore), "rollbacks are never blocked by a freeze");
}

#[test]
fn bake_does_not_end_without_a_fresh_signal_read() {
    let mut w = World::new("dev");
    if let Some(ecs) = w.release.as_mut().and_then(|r| r.target.ecs.as_mut()) {
        ecs.steps = Some(vec![100]);
    }
    w.run();
    w.advance(300);
    w.signals_fresh = false;
    assert_eq!(w.step(), None);
    assert!(w.status.message.clone().unwrap().contains("waiting for a signal read"));
    w.signals_fresh = true;
    assert_eq!(w.step(), Some(Action::Finalize));
}

#[test]
fn missing_rollback_policy_blocks_and_fails_closed_in_flight() {
    let mut w = World::new("dev");
    w.policy = None;
    w.step();
    assert_eq!(w.phase(), PromotionPhase::WaitingForGates);
    assert!(w.gate("validation").1.contains("RollbackPolicy slo-default (required by Environment dev) not found"));

    let mut w = World::new("dev");
    w.run();
    w.policy = None;
    assert_eq!(w.step(), Some(Action::Restore));
    assert!(w.status.rollback.unwrap().message.contains("fail closed"));
}

#[test]
fn missing_release_is_reported_and_stalls() {
    let mut w = World::new("dev");
    w.release = None;
    w.step();
    assert_eq!(w.phase(), PromotionPhase::WaitingForGates);
    assert_eq!(w.gate("validation").1, "Release ingest-worker-v1-4-2 not found in this namespace");
    let stalled = w.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "InvalidSpec"));
}

#[test]
fn a_waiting_promotion_at_rest_writes_nothing() {
    let mut w = World::new("prod");
    w.step();
    let resting = w.status.clone();
    for _ in 0..5 {
        w.advance(3600);
        let d = w.decide();
        assert_eq!(d.status, resting, "no time-varying status while waiting");
        assert!(d.events.is_empty());
    }
}

#[test]
fn a_baking_promotion_writes_only_on_signal_changes() {
    let mut w = World::new("dev");
    w.run();
    let baking = w.status.clone();
    w.advance(2);
    assert_eq!(w.decide().status, baking);
    w.advance(2);
    assert_eq!(w.decide().status, baking);
}

#[test]
fn abort_after_success_explains_how_to_roll_back() {
    let mut w = World::new("dev");
    w.run();
    w.advance(300);
    w.run();
    w.advance(300);
    w.run();
    assert_eq!(w.phase(), PromotionPhase::Succeeded);
    w.spec.abort = true;
    assert_eq!(w.step(), None);
    assert!(w.status.message.unwrap().contains("kubectl kiln rollback ingest-worker --env dev"));
}

#[test]
fn step_status_is_reported_for_dashboards() {
    let mut w = World::new("dev");
    w.run();
    assert_eq!(
        w.status.step,
        Some(StepStatus {
            index: 0,
            weight: 10,
            total: 2,
            applied_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(w.now))
        })
    );
}

#[test]
fn a_bake_that_passes_on_silence_says_so() {
    let mut w = World::new("dev");
    if let Some(ecs) = w.release.as_mut().and_then(|r| r.target.ecs.as_mut()) {
        ecs.steps = Some(vec![100]);
    }
    w.alarm = Some((AlarmState::InsufficientData, ts("2026-11-01T00:00:00Z")));
    w.run();
    w.advance(300);
    assert_eq!(w.run(), vec![Action::Finalize]);
    let finalizing = w.status.timeline.iter().find(|t| t.reason == "Finalizing").unwrap();
    assert!(finalizing.message.contains("inconclusive signals: no data from ingest-5xx"), "{}", finalizing.message);
    assert_eq!(w.phase(), PromotionPhase::Succeeded);
}

/// A rollback to a Release that never succeeded here is refused at once (issue "Tenancy and
/// release integrity" §3): it ends `Failed`, so it holds nothing up.
#[test]
fn only_a_release_that_succeeded_here_can_take_the_rollback_fast_path() {
    let mut w = World::new("prod").at("2026-11-21T17:00:00Z").rollback_promotion();
    w.release_was_good_here = false;
    assert_eq!(w.step(), None);
    assert_eq!(w.phase(), PromotionPhase::Failed);
    assert!(w.reasons().contains(&"RollbackRefused".to_string()), "{:?}", w.reasons());
    let (ok, msg) = w.gate("validation");
    assert!(!ok);
    assert!(msg.contains("ingest-worker-v1-4-2 never did; promote it normally instead"), "{msg}");
    assert!(w.status.message.clone().unwrap_or_default().contains("nothing was changed"));
}

/// §3: nothing unrelated holds a rollback up: an invalid FreezeWindow elsewhere, a broken
/// Environment graph, a missing RollbackPolicy.
#[test]
fn a_rollback_is_not_blocked_by_unrelated_problems() {
    let mut w = World::new("prod").rollback_promotion();
    w.problems = vec![
        Problem::FreezeWindow { namespace: "kiln-system".into(), name: "weekend".into(), message: "bad zone".into() },
        Problem::Environment {
            environment: "prod".into(),
            error: kiln_core::SpecError::UpstreamCycle { path: "prod -> stg -> prod".into() },
        },
    ];
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    // A forward Promotion waits on the same problems.
    let mut f = World::approved_prod();
    f.problems = w.problems.clone();
    assert_eq!(f.step(), None);
    assert_eq!(f.phase(), PromotionPhase::WaitingForGates);
}

#[test]
fn a_rollback_promotion_does_not_undo_itself_on_the_alarm_that_caused_it() {
    let mut w = World::new("prod").rollback_promotion();
    w.breach(); // the bad release is still firing
    let actions = w.run();
    assert_eq!(
        actions,
        vec![Action::CaptureSnapshot, Action::Prepare, Action::ShiftTraffic { step: 0, weight: 100 }, Action::Finalize]
    );
    assert_eq!(w.phase(), PromotionPhase::Succeeded);
    let ev = w.status.evidence.unwrap();
    assert!(ev.signals.iter().any(|s| s.name == "ingest-5xx" && s.state == "ALARM"), "signals are recorded");
    assert!(ev.rollback.is_none());
}

#[test]
fn kiln_does_not_deploy_into_an_environment_whose_alarms_are_firing() {
    let mut w = World::new("dev");
    w.breach();
    let d = w.decide();
    w.status = d.status.clone();
    assert_eq!(w.phase(), PromotionPhase::WaitingForGates);
    let (ok, msg) = w.gate("health");
    assert!(!ok);
    assert!(msg.starts_with("dev: alarm ingest-5xx is in ALARM"), "{msg}");
    assert_eq!(d.requeue_after, Some(SignedDuration::from_secs(30)));
    w.alarm = Some((AlarmState::Ok, w.now));
    w.advance(30);
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));

    let mut unread = World::new("dev");
    unread.signals_fresh = false;
    let d = unread.decide();
    unread.status = d.status;
    assert_eq!(unread.gate("health"), (false, "dev alarms not read yet".into()));
    assert_eq!(d.requeue_after, Some(SignedDuration::from_secs(5)));
}

#[test]
fn a_release_deleted_mid_deployment_is_restored_with_evidence() {
    let mut w = World::new("dev");
    w.run();
    assert_eq!(w.weight(), Some(10));
    w.release = None;
    assert_eq!(w.run(), vec![Action::Restore]);
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    let ev = w.status.evidence.clone().unwrap();
    assert_eq!(ev.version, "unknown (deleted)");
    assert_eq!(ev.account_id, "111111111111");
    assert!(ev.rollback.unwrap().message.contains("Release ingest-worker-v1-4-2 was deleted during the deployment"));
}

#[test]
fn deleting_a_promotion_restores_traffic_first() {
    let mut w = World::new("dev");
    w.run();
    w.deleting = true;
    assert_eq!(w.run(), vec![Action::Restore]);
    assert_eq!(w.status.rollback.unwrap().message, "the Promotion is being deleted");

    let mut waiting = World::new("prod");
    waiting.step();
    waiting.deleting = true;
    waiting.step();
    assert_eq!(waiting.phase(), PromotionPhase::Aborted);
}

#[test]
fn a_freeze_that_starts_before_a_migration_hook_holds_it() {
    // Gates pass at Friday 16:59:59 New York; the snapshot and Prepare happen, then 17:00 comes.
    let mut w =
        World::new("prod").at("2026-11-20T21:59:59Z").approved_by("sec", "security").approved_by("pm", "product");
    w.set_hooks(Some(lambda_hook("migrate")), None);
    let a = w.step().unwrap();
    assert_eq!(a, Action::CaptureSnapshot);
    w.complete(&a, success(&a));
    w.advance(1);
    assert_eq!(w.step(), None, "Prepare waits for the freeze to end");
    assert_eq!(w.reasons().last().map(String::as_str), Some("Holding"));
    w.advance(3600);
    assert_eq!(w.step(), None);
    assert_eq!(w.reasons().iter().filter(|r| *r == "Holding").count(), 1, "the hold is noted once");
    assert!(w.events.iter().any(|e| e.warning && e.reason == "Holding"));
    // Monday 09:00 New York.
    w.now = ts("2026-11-23T14:00:00Z");
    assert_eq!(w.step(), Some(Action::Prepare));
}

#[test]
fn a_rollback_takes_over_if_the_preempted_promotion_cannot_restore() {
    let mut w = World::new("prod").rollback_promotion();
    w.behind("ingest-worker-v1-4-3-prod", PromotionPhase::RollingBack);
    assert_eq!(w.step(), None);
    w.advance(59);
    assert_eq!(w.step(), None);
    w.advance(1);
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    assert!(w.reasons().contains(&"TakingOver".to_string()));
}

#[test]
fn retry_keeps_the_earlier_attempt_and_abort_cannot_be_retried() {
    let mut w = World::new("dev");
    w.run();
    w.breach();
    w.run();
    let first_sha = w.status.evidence_sha256.clone();
    w.alarm = Some((AlarmState::Ok, w.now));
    w.spec.retry = 1;
    w.step();
    assert_eq!(w.status.attempts.len(), 1);
    assert_eq!(w.status.attempts[0].outcome, PromotionPhase::RolledBack);
    assert_eq!(w.status.attempts[0].evidence_sha256, first_sha);
    assert_eq!(w.status.attempts[0].rollback.as_ref().unwrap().cause, RollbackCause::Alarm);

    let mut aborted = World::new("prod");
    aborted.step();
    aborted.spec.abort = true;
    aborted.step();
    aborted.spec.retry = 1;
    aborted.step();
    assert_eq!(aborted.phase(), PromotionPhase::Aborted);
    assert!(aborted.status.message.unwrap().contains("create a new Promotion"));
}

fn with_evidence_bucket(mut w: World) -> World {
    if let Some(env) = w.env.as_mut() {
        env.evidence =
            Some(kiln_api::environment::EvidenceArchiveSettings { bucket: "nc-audit-dev".into(), prefix: None });
    }
    w
}

#[test]
fn a_finished_promotion_archives_its_evidence_once_after_finishing() {
    let mut w = with_evidence_bucket(World::new("dev"));
    w.run();
    w.advance(300);
    // Finalize ends the Promotion; the archive is the next (and last) action.
    assert_eq!(w.run(), vec![Action::ShiftTraffic { step: 1, weight: 100 }]);
    w.advance(300);
    assert_eq!(w.run(), vec![Action::Finalize, Action::ArchiveEvidence]);
    assert_eq!(w.phase(), PromotionPhase::Succeeded);
    let sha = w.status.evidence_sha256.clone().expect("evidence digest");
    let archive = w.status.evidence_archive.clone().expect("an archive place");
    assert_eq!(archive.bucket, "nc-audit-dev");
    assert_eq!(archive.key, format!("kiln/evidence/ingest/p/{sha}.json"));
    assert_eq!(archive.archived_at.map(|t| t.0), Some(w.now), "written now");
    assert!(w.events.iter().any(|e| e.reason == "EvidenceArchived"
        && e.message
            == format!("evidence sha256:{sha} written to s3://nc-audit-dev/kiln/evidence/ingest/p/{sha}.json")));
    assert!(!machine::archive_pending(&w.status));
    // Nothing more to do, ever.
    w.advance(3600);
    assert_eq!(w.decide().action, None);
}

#[test]
fn evidence_refused_by_s3_waits_and_says_why_without_touching_the_outcome() {
    let mut w = with_evidence_bucket(World::new("dev"));
    if let Some(env) = w.env.as_mut() {
        env.bake.duration = "0s".into();
    }
    w.spec.abort = true;
    // Aborted before deploying still leaves a record; the decision after the one that ended
    // the Promotion (the controller's next reconcile, woken by its own status write) archives it.
    assert!(w.run().is_empty());
    assert_eq!(w.phase(), PromotionPhase::Aborted);
    assert!(machine::archive_pending(&w.status));
    let refused = "evidence bucket nc-audit-dev has no Object Lock: evidence must not be changeable";
    let actions = w.run_with(|a| (*a == Action::ArchiveEvidence).then(|| Outcome::Failed(refused.into())));
    assert_eq!(actions, vec![Action::ArchiveEvidence; 50], "refused every time (no requeue in this loop)");
    assert_eq!(w.phase(), PromotionPhase::Aborted, "the outcome stands");
    assert!(machine::archive_pending(&w.status));
    let message = w.status.message.clone().unwrap_or_default();
    assert!(message.starts_with("evidence not archived to s3://nc-audit-dev/kiln/evidence/ingest/p/"), "{message}");
    assert!(message.contains(refused), "{message}");
    assert!(w.events.iter().any(|e| e.warning && e.reason == "EvidenceArchiveFailed"));
    let d = w.with_input(|i| machine::complete(i, &Action::ArchiveEvidence, Outcome::Failed(refused.into())));
    assert_eq!(d.requeue_after, Some(machine::ARCHIVE_RETRY));
    // Fixed: the next try writes it.
    assert_eq!(w.run(), vec![Action::ArchiveEvidence]);
    assert!(!machine::archive_pending(&w.status));
}

#[test]
fn a_retry_waits_until_the_ended_attempt_is_archived() {
    let mut w = with_evidence_bucket(World::new("dev"));
    w.run();
    w.breach();
    let refused = "AccessDenied";
    w.run_with(|a| (*a == Action::ArchiveEvidence).then(|| Outcome::Failed(refused.into())));
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    let first_sha = w.status.evidence_sha256.clone();
    w.spec.retry = 1;
    assert_eq!(w.step(), Some(Action::ArchiveEvidence), "the record first");
    assert_eq!(w.phase(), PromotionPhase::RolledBack, "not restarted yet");
    assert!(w.status.message.clone().unwrap_or_default().starts_with("retry #1 waits until this attempt's evidence"));
    w.complete(&Action::ArchiveEvidence, Outcome::Done);
    // Archived: now the retry starts, and the attempt keeps its digest.
    w.step();
    assert_eq!(w.status.observed_retry, 1);
    assert_eq!(w.status.attempts.last().and_then(|a| a.evidence_sha256.clone()), first_sha);
    assert!(w.status.evidence_archive.is_none(), "the new attempt has no record yet");
}

#[test]
fn without_an_evidence_bucket_nothing_is_archived() {
    let mut w = World::new("dev");
    w.spec.abort = true;
    assert!(w.run().is_empty());
    assert_eq!(w.phase(), PromotionPhase::Aborted);
    assert!(w.status.evidence_sha256.is_some() && w.status.evidence_archive.is_none());
    assert!(!machine::archive_pending(&w.status));
}

#[test]
fn a_bake_too_long_to_add_to_a_time_blocks_instead_of_skipping_the_bake() {
    // Issue "Safety under partition" §3: a huge bake.duration used to overflow the end time and
    // end the bake at once. Durations are capped at 720h; past that the Promotion is invalid.
    let mut w = World::new("dev");
    if let Some(env) = w.env.as_mut() {
        env.bake.duration = "100000h".into();
    }
    let actions = w.run();
    assert!(actions.is_empty(), "nothing deployed: {actions:?}");
    assert_eq!(w.phase(), PromotionPhase::WaitingForGates);
    let (ok, message) = w.gate("validation");
    assert!(!ok);
    assert!(message.contains("spec.bake.duration") && message.contains("at most 720h"), "{message}");
}

/// The Stalled condition of a status, as (status, reason, message).
fn stalled(w: &World) -> (String, String, String) {
    let c = w.status.conditions.iter().find(|c| c.type_ == "Stalled").expect("Stalled condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// A deployment baking at 10% whose signal reads fail (AccessDenied, throttling, an outage).
fn baking_with_failing_reads(env: &str) -> World {
    let mut w = World::new(env);
    w.run();
    assert_eq!(w.phase(), PromotionPhase::Baking);
    assert_eq!(w.weight(), Some(10));
    w.signal_read_error = Some("cloudwatch:DescribeAlarms denied: not authorized".into());
    w
}

#[test]
fn failing_signal_reads_stall_at_once_then_roll_back_after_the_environments_window() {
    let mut w = baking_with_failing_reads("dev");
    let d = w.decide();
    assert_eq!(d.action, None);
    assert_eq!(d.requeue_after, Some(SignedDuration::from_secs(2)), "signals are still read every interval");
    w.step();
    let (status, reason, message) = stalled(&w);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "SignalReadFailing"));
    assert!(
        message.contains("DescribeAlarms denied") && message.contains("rolling back at 2026-11-18T15:02:00Z"),
        "{message}"
    );
    assert_eq!(w.status.bake.as_ref().and_then(|b| b.read_failing_since.clone()).map(|t| t.0), Some(w.now));
    let warned: Vec<_> = w.events.iter().filter(|e| e.reason == "SignalReadFailing").collect();
    assert_eq!(warned.len(), 1, "one Warning Event when reads start failing");
    assert!(warned[0].warning);

    // Still failing a minute later: still stalled, one Event only, the traffic as it was.
    w.advance(60);
    assert_eq!(w.step(), None);
    assert_eq!(w.events.iter().filter(|e| e.reason == "SignalReadFailing").count(), 1);
    assert_eq!(w.weight(), Some(10));

    // Two minutes after the first failure: fail closed.
    w.advance(60);
    assert_eq!(w.step(), Some(Action::Restore));
    assert_eq!(w.phase(), PromotionPhase::RollingBack);
    let rollback = w.status.rollback.clone().expect("rollback");
    assert_eq!(rollback.cause, RollbackCause::SignalsUnreadable);
    assert!(rollback.message.contains("could not be read for 2m"), "{}", rollback.message);
}

#[test]
fn a_good_read_clears_a_signal_read_failure() {
    let mut w = baking_with_failing_reads("dev");
    w.step();
    w.advance(90);
    w.step();
    w.signal_read_error = None;
    w.advance(10);
    w.step();
    assert_eq!(stalled(&w).0, "False", "{:?}", stalled(&w));
    assert_eq!(w.status.bake.as_ref().and_then(|b| b.read_failing_since.clone()), None);
    // Failing again starts a fresh window.
    w.signal_read_error = Some("throttled".into());
    w.advance(100);
    assert_eq!(w.step(), None);
    assert_eq!(w.phase(), PromotionPhase::Baking, "a new 2m window, not the old one");
}

#[test]
fn with_hold_failing_reads_keep_the_traffic_and_never_finish_the_bake() {
    let mut w = baking_with_failing_reads("dev");
    if let Some(env) = w.env.as_mut() {
        env.bake.signal_read_failure.action = kiln_api::environment::SignalReadFailureAction::Hold;
        env.bake.signal_read_failure.after = "30s".into();
    }
    w.step();
    w.advance(3600);
    assert_eq!(w.step(), None);
    assert_eq!(w.phase(), PromotionPhase::Baking);
    assert_eq!(w.weight(), Some(10), "held where it was");
    let (status, reason, message) = stalled(&w);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "SignalReadFailing"));
    assert!(message.contains("holding traffic as it is"), "{message}");
    // Reads work again: the deployment goes on.
    w.signal_read_error = None;
    assert!(w.step().is_some());
    assert_eq!(stalled(&w).0, "False");
}

/// Issue "Safety under partition" §3: a step AWS never finishes (a task set that never reaches
/// steady state) does not hold the Promotion in `Deploying` forever: past the progress deadline
/// (the Environment's 10m by default, or the Release's own) the previous state is restored and
/// the rollback says what was still pending.
#[test]
fn a_step_that_never_finishes_is_rolled_back_at_the_progress_deadline() {
    let mut w = World::new("dev");
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    w.complete(&Action::CaptureSnapshot, Outcome::Snapshot(Box::default()));
    assert_eq!(w.step(), Some(Action::Prepare));
    let pending = "task set ts/abc: 1 of 3 tasks running";
    w.complete(&Action::Prepare, Outcome::InProgress(pending.into()));
    let since = w.status.in_progress.clone().expect("in progress");
    assert_eq!((since.action.as_str(), since.since.0), ("prepare", w.now));
    // Nine minutes of "still in progress": still deploying, the clock kept from the first.
    for _ in 0..9 {
        w.advance(60);
        assert_eq!(w.step(), Some(Action::Prepare));
        w.complete(&Action::Prepare, Outcome::InProgress(pending.into()));
        assert_eq!(w.phase(), PromotionPhase::Deploying);
    }
    assert_eq!(w.status.in_progress.as_ref().map(|p| p.since.0), Some(since.since.0));
    w.advance(60);
    assert_eq!(w.step(), Some(Action::Prepare));
    w.complete(&Action::Prepare, Outcome::InProgress(pending.into()));
    assert_eq!(w.phase(), PromotionPhase::RollingBack);
    let rollback = w.status.rollback.clone().expect("rollback");
    assert_eq!(rollback.cause, RollbackCause::ProgressDeadline);
    assert_eq!(rollback.message, format!("prepare still in progress after 10m: {pending}"));
    assert!(w.events.iter().any(|e| e.warning && e.reason == "ProgressDeadlineExceeded"));
    assert_eq!(w.step(), Some(Action::Restore));
}

#[test]
fn a_release_may_set_its_own_progress_deadline_and_progress_resets_it() {
    let mut w = World::new("dev");
    if let Some(r) = w.release.as_mut() {
        r.progress_deadline = Some("30m".into());
    }
    w.step();
    w.complete(&Action::CaptureSnapshot, Outcome::Snapshot(Box::default()));
    w.step();
    w.complete(&Action::Prepare, Outcome::InProgress("waiting".into()));
    w.advance(20 * 60);
    w.step();
    w.complete(&Action::Prepare, Outcome::InProgress("waiting".into()));
    assert_eq!(w.phase(), PromotionPhase::Deploying, "20m is within the Release's 30m");
    // Done: the clock is cleared; the next step gets a fresh deadline.
    w.complete(&Action::Prepare, Outcome::Prepared(Default::default()));
    assert_eq!(w.status.in_progress, None);
}

/// Issue "Tenancy and release integrity" §3: an approval expires by kiln's clock (from when kiln
/// first saw it), and where the Environment says so a retry after a rollback needs fresh
/// approvals.
#[test]
fn approvals_expire_and_a_retry_asks_for_fresh_ones() {
    let mut w = World::approved_prod();
    if let Some(env) = w.env.as_mut() {
        env.promotion.approvals_expire_after = Some("24h".into());
        env.promotion.fresh_approvals_on_retry = true;
    }
    // Approved, but stg has not been promoted yet: kiln records when it saw the approvals.
    let upstream = std::mem::take(&mut w.upstream);
    w.step();
    assert_eq!(w.status.approvals_seen.len(), 2);
    // A day later stg is done; the approvals have expired.
    w.advance(24 * 3600);
    w.upstream = upstream;
    w.step();
    assert_eq!(w.phase(), PromotionPhase::WaitingForApproval);
    let (ok, msg) = w.gate("approvals");
    assert!(!ok && msg.contains("approvals expire after 24h here"), "{msg}");
    // Approved again: it goes.
    w.approve("sec", "security");
    w.approve("pm", "product");
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));

    // It rolls back; the retry needs fresh approvals.
    w.run();
    w.breach();
    w.run();
    assert_eq!(w.phase(), PromotionPhase::RolledBack);
    w.alarm = Some((AlarmState::Ok, w.now));
    w.advance(60);
    w.spec.retry = 1;
    w.step();
    assert_eq!(w.phase(), PromotionPhase::WaitingForApproval);
    let (_, msg) = w.gate("approvals");
    assert!(msg.contains("before the retry, which asks for fresh approvals"), "{msg}");
    w.advance(1);
    w.approve("sec", "security");
    w.approve("pm", "product");
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
}

/// Issue "Tenancy and release integrity" §4: the evidence tells the whole story (the Release's
/// UID, what ran before, the AWS resources acted on, when kiln saw each approval) and is
/// versioned; a record written before version 2 (none of those fields) still hashes to the
/// digest it was written with, whatever kiln reads it.
#[test]
fn evidence_is_versioned_and_old_records_keep_verifying() {
    let mut w = World::approved_prod();
    w.status.target = Some("arn:aws:ecs:ca-central-1:333333333333:service/nc-core/ingest-worker".into());
    for _ in 0..10 {
        w.run();
        if w.phase().is_terminal() {
            break;
        }
        w.advance(600);
    }
    assert_eq!(w.phase(), PromotionPhase::Succeeded, "{:?}", w.status.message);
    let ev = w.status.evidence.clone().expect("evidence");
    assert_eq!(ev.schema_version, Some(kiln_api::promotion::EVIDENCE_SCHEMA_VERSION));
    assert_eq!(ev.release_uid.as_deref(), Some(RELEASE_UID));
    assert_eq!(ev.approvals_seen.len(), 2, "when kiln saw the two approvals");
    let previous = ev.previous.clone().expect("what ran before");
    assert!(previous.task_definition.is_some(), "{previous:?}");
    for part in ["service/nc-core/ingest-worker", "tg/ingest-blue", "tg/ingest-green", "listener/ingest/443"] {
        assert!(ev.resources.iter().any(|r| r.contains(part)), "{part} in {:?}", ev.resources);
    }

    // A version-1 record: the fields version 2 added are absent from its bytes.
    let v1 = kiln_api::promotion::Evidence {
        schema_version: None,
        release_uid: None,
        approvals_seen: Vec::new(),
        previous: None,
        resources: Vec::new(),
        ..ev
    };
    let bytes = serde_json::to_vec(&v1).expect("serialize");
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    for field in ["schemaVersion", "releaseUid", "approvalsSeen", "previous", "resources"] {
        assert!(!text.contains(&format!("\"{field}\"")), "{field} in a version-1 record");
    }
    let read: kiln_api::promotion::Evidence = serde_json::from_slice(&bytes).expect("a version-1 record parses");
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(evidence::digest(&read), sha, "a version-1 record keeps its digest");
}

/// What runs in the environment, marked by kiln as `version` of ingest-worker.
fn runs(version: &str, same_artifacts: bool) -> kiln_core::running::RunningState {
    use kiln_core::running::{ReleaseMark, Running, RunningState};
    RunningState::Runs(Running {
        what: "ECS service ingest-worker in cluster nc-core (task definition ingest-worker:50)".into(),
        mark: Some(ReleaseMark {
            service: "ingest-worker".into(),
            version: version.into(),
            release_uid: Some("uid-running".into()),
        }),
        same_artifacts,
        artifact: "registry.example/ingest-worker@sha256:running".into(),
    })
}

#[test]
fn an_older_version_than_the_one_running_is_refused_at_once_even_unapproved() {
    // Prod, no approvals yet: the refusal does not wait for them (re-created history must not sit
    // in the queue).
    let mut w = World::new("prod");
    w.running = runs("v1.5.0", false);
    assert_eq!(w.step(), None, "nothing is done in AWS");
    assert_eq!(w.phase(), PromotionPhase::Failed);
    assert_eq!(w.reasons().last().map(String::as_str), Some("OlderThanRunning"));
    let (ok, message) = w.gate("newer");
    assert!(!ok);
    for part in ["prod runs ECS service ingest-worker", "ingest-worker v1.5.0", "newer than v1.4.2", "downgrade"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(w.status.message.as_deref().is_some_and(|m| m.contains("nothing was changed")));
    assert!(w.status.previous.is_none() && w.status.release.is_none());
}

#[test]
fn the_running_version_built_again_is_refused_and_the_same_build_deploys_again() {
    let mut w = World::new("dev");
    w.running = runs("v1.4.2", false);
    assert_eq!(w.step(), None);
    assert_eq!(w.phase(), PromotionPhase::Failed);
    assert_eq!(w.reasons().last().map(String::as_str), Some("VersionReused"));
    assert!(w.gate("newer").1.contains("give the new build a new version"), "{:?}", w.gate("newer"));

    // The very artifacts that run: deployed again (traffic sees no change; the Release gets its
    // record in this environment).
    let mut w = World::new("dev");
    w.running = runs("v1.4.2", true);
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    assert!(w.gate("newer").0);
}

#[test]
fn a_downgrade_on_purpose_passes_the_newer_gate_and_keeps_every_other_gate() {
    let mut w = World::new("prod");
    w.running = runs("v2.0.0-rc.1", false);
    w.spec.downgrade = true;
    w.step();
    assert_eq!(w.phase(), PromotionPhase::WaitingForApproval, "approvals still apply");
    let (ok, message) = w.gate("newer");
    assert!(ok && message.contains("downgrade"), "{message}");
    let mut w = World::approved_prod();
    w.running = runs("v2.0.0-rc.1", false);
    w.spec.downgrade = true;
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
}

#[test]
fn what_runs_must_be_read_before_deploying_unless_aws_cannot_say() {
    use kiln_core::running::RunningState;
    // Not read yet (or the read keeps failing): wait, read again soon.
    for (state, says) in [
        (RunningState::NotRead, "what dev runs has not been read from AWS yet"),
        (RunningState::Unreadable("Throttling: rate exceeded".into()), "cannot be read yet: Throttling"),
    ] {
        let mut w = World::new("dev");
        w.running = state;
        assert_eq!(w.step(), None);
        assert_eq!(w.phase(), PromotionPhase::WaitingForGates);
        let (ok, message) = w.gate("newer");
        assert!(!ok && message.contains(says), "{message}");
    }
    // AWS cannot say (e.g. the service is missing): the deployment reports it itself.
    let mut w = World::new("dev");
    w.running = RunningState::Unknown("ECS service ingest-worker not found".into());
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
    // Queued behind another: not read, and no gate about it until the queue is clear.
    let mut w = World::new("dev");
    w.running = RunningState::NotRead;
    w.behind("ingest-worker-v1-4-1-dev", PromotionPhase::Baking);
    w.step();
    assert_eq!(w.phase(), PromotionPhase::Queued);
    assert!(w.status.gates.iter().all(|g| g.name != "newer"));
    // A rollback Promotion returns to an older Release by design: never judged.
    let mut w = World::new("prod").rollback_promotion();
    w.running = runs("v9.0.0", false);
    assert_eq!(w.step(), Some(Action::CaptureSnapshot));
}
