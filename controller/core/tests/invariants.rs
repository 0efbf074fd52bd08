//! Property tests for PRODUCT.md's "Must never happen" list, over random histories: time
//! passing (across weekends and their freezes), approvals arriving, alarms firing and clearing,
//! aborts, retries, failing AWS steps and controller crashes that lose a status write.

use kiln_api::PromotionPhase;
use kiln_api::common::ReleaseType;
use kiln_core::approvals::{self, SelfApprovalRule};
use kiln_core::evidence;
use kiln_core::freeze;
use kiln_core::machine::{Action, Decision, Outcome};
use kiln_core::signals::AlarmState;
use kiln_core::sim::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    Advance(i64),
    Approve(usize, usize),
    Abort,
    Breach,
    Heal,
    FailNext,
    CrashNext,
    Retry,
    SignalsStale(bool),
    Preempt,
    DeleteRelease,
    DeletePromotion,
    AheadInFlight(bool),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (1i64..3000).prop_map(Event::Advance),
        3 => (0usize..5, 0usize..4).prop_map(|(u, r)| Event::Approve(u, r)),
        1 => Just(Event::Abort),
        2 => Just(Event::Breach),
        2 => Just(Event::Heal),
        1 => Just(Event::FailNext),
        1 => Just(Event::CrashNext),
        1 => Just(Event::Retry),
        1 => any::<bool>().prop_map(Event::SignalsStale),
        1 => Just(Event::Preempt),
        1 => Just(Event::DeleteRelease),
        1 => Just(Event::DeletePromotion),
        1 => any::<bool>().prop_map(Event::AheadInFlight),
    ]
}

const USERS: [&str; 5] = ["dev@example.com", "sec", "pm", "oncall", "kiln"];
const ROLES: [&str; 4] = ["security", "product", "sre", "release-engineering"];

fn check(w: &World, d: &Decision) -> Result<(), TestCaseError> {
    let env = w.env.as_ref().expect("env");
    let forward_action =
        matches!(d.action, Some(Action::Prepare | Action::RunHook(_) | Action::ShiftTraffic { .. } | Action::Finalize));
    if forward_action {
        prop_assert!(!w.spec.abort, "moved forward after an abort: {:?}", d.action);
        prop_assert!(!w.deleting, "moved forward while the Promotion is being deleted");
        prop_assert!(w.preempted_by.is_none(), "moved forward after being superseded");
        prop_assert!(w.release.is_some(), "moved forward without a Release");
        if let (Some(release), None) = (w.release.as_ref(), &w.spec.rollback) {
            let rule = SelfApprovalRule {
                forbid: env.promotion.forbid_self_approval,
                author: release.author.as_deref(),
                requester: w.spec.requested_by.as_deref(),
            };
            let verdict = freeze::evaluate(&w.freezes, &w.env_name, &release.service, w.now);
            if verdict.is_frozen() {
                let needed = freeze::exception_eligible(&verdict.active, release.release_type);
                prop_assert!(needed.is_ok(), "{:?} during a freeze with no exception: {:?}", d.action, verdict.active);
                let needed = needed.unwrap_or_default();
                prop_assert!(
                    approvals::evaluate(&needed, &w.spec.approvals, &rule).met(),
                    "freeze exception without its approvals"
                );
            }
            prop_assert!(
                approvals::evaluate(&env.promotion.approvals, &w.spec.approvals, &rule).met(),
                "moved forward without the environment's approvals"
            );
        }
    }

    // A breach while the new version is live always leads to a restore (a rollback Promotion
    // restores a known-good release and never undoes itself on the alarm that caused it).
    let live =
        matches!(w.status.phase, PromotionPhase::Deploying | PromotionPhase::Baking) && w.status.previous.is_some();
    let alarming = w.signals_fresh && matches!(w.alarm, Some((AlarmState::Alarm, _)));
    if live && alarming && w.spec.rollback.is_none() {
        prop_assert_eq!(d.action.clone(), Some(Action::Restore), "breach while live did not restore");
    }
    // Nobody is left driving a split: a live Promotion that lost its Release, is being deleted,
    // was superseded or aborted restores.
    if live && (w.release.is_none() || w.deleting || w.preempted_by.is_some() || w.spec.abort) {
        prop_assert_eq!(d.action.clone(), Some(Action::Restore), "live Promotion left without a driver");
    }
    if d.status.phase == PromotionPhase::RollingBack {
        prop_assert_eq!(d.action.clone(), Some(Action::Restore), "RollingBack without a restore action");
    }

    if w.spec.rollback.is_some() && w.release.is_some() {
        prop_assert!(
            !matches!(
                d.status.phase,
                PromotionPhase::Queued
                    | PromotionPhase::Frozen
                    | PromotionPhase::WaitingForApproval
                    | PromotionPhase::WaitingForGates
            ),
            "rollback waiting on a gate: {:?} {:?}",
            d.status.phase,
            d.status.gates
        );
    }

    if d.status.phase.is_terminal() {
        // Nobody leaves traffic split: a finished Promotion either never moved traffic, finished
        // at 100%, or restored the previous state.
        let moved = d.status.step.is_some();
        if moved && d.status.phase != PromotionPhase::Succeeded {
            prop_assert_eq!(d.status.phase, PromotionPhase::RolledBack);
            prop_assert!(d.status.rollback.as_ref().is_some_and(|r| r.completed_at.is_some()));
        }
        if d.status.phase == PromotionPhase::Succeeded {
            prop_assert_eq!(d.status.step.as_ref().map(|s| s.weight), Some(100));
        }
        // Evidence for every finished Promotion, with its digest; every approval and any
        // rollback is in it.
        let ev = d.status.evidence.as_ref();
        prop_assert!(ev.is_some(), "terminal without evidence");
        if let Some(ev) = ev {
            prop_assert_eq!(d.status.evidence_sha256.clone(), Some(evidence::digest(ev)));
            prop_assert_eq!(&ev.rollback, &d.status.rollback);
            if !w.status.phase.is_terminal() {
                // Just finished: every approval given so far is in the record.
                prop_assert_eq!(&ev.approvals, &w.spec.approvals);
            }
        }
    }

    // Decisions are a pure function of the input.
    prop_assert_eq!(&w.decide(), d);
    Ok(())
}

fn run_history(
    env: &str,
    rollback: bool,
    hotfix: bool,
    start_offset_mins: i64,
    events: Vec<Event>,
) -> Result<(), TestCaseError> {
    // Start somewhere in the week of Monday 2026-11-16 (EST), so weekends and freezes come up.
    let mut w = World::new(env).at("2026-11-16T05:00:00Z");
    w.advance(start_offset_mins * 60);
    if rollback {
        w = w.rollback_promotion();
    }
    if hotfix {
        w = w.hotfix();
    }
    let mut fail_next = false;
    let mut crash_next = false;
    for ev in events {
        match ev {
            Event::Advance(s) => w.advance(s),
            Event::Approve(u, r) => w.approve(USERS[u], ROLES[r]),
            Event::Abort => w.spec.abort = true,
            Event::Breach => w.breach(),
            Event::Heal => w.alarm = Some((AlarmState::Ok, w.now)),
            Event::FailNext => fail_next = true,
            Event::CrashNext => crash_next = true,
            Event::Retry => w.spec.retry += 1,
            Event::SignalsStale(s) => w.signals_fresh = !s,
            Event::Preempt => w.preempted_by = Some("ingest-worker-v1-4-1-rollback".into()),
            Event::DeleteRelease => w.release = None,
            Event::DeletePromotion => w.deleting = true,
            Event::AheadInFlight(on) => {
                w.ahead.clear();
                if on {
                    w.ahead.push(kiln_core::gates::QueuedAhead {
                        name: "ingest-worker-v1-4-1-x".into(),
                        phase: PromotionPhase::Baking,
                        rollback: false,
                    });
                }
            }
        }
        // Let the controller act until it rests (bounded).
        for _ in 0..12 {
            let d = w.decide();
            check(&w, &d)?;
            w.status = d.status.clone();
            let Some(action) = d.action else { break };
            if std::mem::take(&mut crash_next) {
                // The action ran but the controller died before recording it.
                continue;
            }
            let outcome =
                if std::mem::take(&mut fail_next) { Outcome::Failed("injected".into()) } else { success(&action) };
            let before = w.status.phase;
            w.complete(&action, outcome);
            if !before.is_terminal() && w.status.phase.is_terminal() {
                let ev = w.status.evidence.as_ref();
                prop_assert!(ev.is_some_and(|e| e.approvals == w.spec.approvals && e.rollback == w.status.rollback));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn never_happens_in_prod(start in 0i64..(14 * 24 * 60), hotfix in any::<bool>(), events in proptest::collection::vec(event(), 1..40)) {
        run_history("prod", false, hotfix, start, events)?;
    }

    #[test]
    fn never_happens_in_dev_and_stg(stg in any::<bool>(), start in 0i64..(14 * 24 * 60), events in proptest::collection::vec(event(), 1..40)) {
        run_history(if stg { "stg" } else { "dev" }, false, false, start, events)?;
    }

    #[test]
    fn rollbacks_are_never_blocked(start in 0i64..(14 * 24 * 60), events in proptest::collection::vec(event(), 1..30)) {
        run_history("prod", true, false, start, events)?;
    }
}

#[test]
fn release_types_cover_the_exception_rules() {
    // A guard that the fixture's freeze allows exactly emergency and hotfix.
    let w = World::new("prod");
    let verdict = freeze::evaluate(&w.freezes, "prod", "ingest-worker", ts("2026-11-21T17:00:00Z"));
    assert!(freeze::exception_eligible(&verdict.active, ReleaseType::Hotfix).is_ok());
    assert!(freeze::exception_eligible(&verdict.active, ReleaseType::Emergency).is_ok());
    assert!(freeze::exception_eligible(&verdict.active, ReleaseType::Standard).is_err());
    assert!(freeze::exception_eligible(&verdict.active, ReleaseType::Normal).is_err());
}
