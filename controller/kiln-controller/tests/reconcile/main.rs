//! The Promotion reconciler called in process (as controller-rs tests its `reconcile`): the real
//! `promotion::reconcile` against the in-repo API server, on kiln-aws's in-memory cloud with a
//! manual clock. Fast enough to try every crash point; the e2e suite runs the binary.

mod support;

use std::time::Duration;

use std::sync::Arc;

use jiff::SignedDuration;
use kiln_api::promotion::TargetGroupWeight;
use kiln_api::{PromotionPhase, RollbackCause};
use kiln_aws::fake::Hold;
use kiln_controller::context::Clock;
use kiln_core::signals::AlarmState;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use support::{Bench, DEV_ACCOUNT, PROD_ACCOUNT, crash_at};

const MINUTE: SignedDuration = SignedDuration::from_mins(1);
const FINALIZER: &str = "kiln.dev/restore";

fn weights(blue: i32, green: i32) -> Vec<TargetGroupWeight> {
    let tg = |color| kiln_aws::fake::target_group_arn(&kiln_aws::fake::scope(), support::SERVICE, color);
    vec![
        TargetGroupWeight { target_group_arn: tg("blue"), weight: blue },
        TargetGroupWeight { target_group_arn: tg("green"), weight: green },
    ]
}

/// What a user checks after a Promotion of `uid` succeeded in dev: all traffic on green, the new
/// task set primary and alone, one new task definition, the snapshot of blue at 100 %, evidence.
async fn assert_succeeded_once(bench: &Bench, name: &str) {
    let p = bench.read(name).await;
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Succeeded, "{:?}", status.message);
    let ecs = bench.ecs(DEV_ACCOUNT).state();
    assert_eq!(ecs.weights, weights(0, 100), "listener weights");
    assert_eq!(ecs.primary, format!("ts/{uid}"), "the new task set is primary");
    assert_eq!(ecs.task_sets, vec![(format!("ts/{uid}"), uid.clone())], "one task set, the new one");
    assert_eq!(ecs.task_definitions, vec!["td/web:1".to_string(), format!("td/web:{uid}")], "one new task definition");
    let previous = status.previous.and_then(|s| s.ecs).map(|e| e.listener_weights);
    assert_eq!(previous, Some(weights(100, 0)), "the snapshot is the state before the change");
    assert!(status.evidence.is_some(), "evidence recorded");
    assert!(!p.finalizers().iter().any(|f| f == FINALIZER), "the finalizer is removed once finished");
}

#[tokio::test]
async fn a_promotion_goes_to_succeeded_step_by_step() {
    let bench = Bench::new("happy").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    assert_succeeded_once(&bench, "web-v1-dev").await;
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls(), ["snapshot", "prepare", "shift 10", "shift 100", "finalize"]);
    let reasons: Vec<String> = bench.events("web-v1-dev").await.into_iter().map(|(r, _)| r).collect();
    assert!(reasons.iter().any(|r| r == "Succeeded"), "a Succeeded Event: {reasons:?}");
    // Everything was done as dev's role.
    let roles: Vec<String> = bench.cloud.identities().into_iter().map(|(role, _)| role).collect();
    assert!(roles.iter().all(|r| r == "arn:aws:iam::111111111111:role/kiln-deploy"), "{roles:?}");
}

#[tokio::test]
async fn a_stale_cache_is_read_again_before_anything_is_repeated() {
    let bench = Bench::new("stale").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    r.sync().await;
    // The Promotion as first listed: no status yet.
    let stale = r.cached(&bench.ns, "web-v1-dev");
    r.reconcile_until_call(&bench, "web-v1-dev", "shift 10", 5).await;
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(90, 10));
    // A watch that lags hands the reconciler the old object: deciding on it would take a new
    // snapshot of the split traffic and overwrite the real one.
    r.reconcile(stale).await.unwrap_or_else(|e| panic!("{e}"));
    let calls = bench.ecs(DEV_ACCOUNT).calls();
    assert_eq!(calls.iter().filter(|c| *c == "snapshot").count(), 1, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| *c == "prepare").count(), 1, "{calls:?}");
    let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Baking);
    assert_eq!(status.previous.and_then(|s| s.ecs).map(|e| e.listener_weights), Some(weights(100, 0)));
    r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    assert_succeeded_once(&bench, "web-v1-dev").await;
}

#[tokio::test]
async fn the_finalizer_is_on_before_the_first_aws_call_and_off_at_the_end() {
    let bench = Bench::new("finalizer").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    bench.promotion("web-v1-prod", "web-v1", "prod").await;
    let mut r = bench.replica("kiln-0");
    r.sync().await;

    // prod waits (dev has not succeeded, approvals missing): nothing to restore, no finalizer.
    r.reconcile(r.cached(&bench.ns, "web-v1-prod")).await.unwrap_or_else(|e| panic!("{e}"));
    let prod = bench.read("web-v1-prod").await;
    assert!(!prod.status.as_ref().is_some_and(|s| s.phase.is_in_flight()), "{:?}", prod.status);
    assert!(prod.finalizers().is_empty(), "{:?}", prod.finalizers());
    assert!(bench.ecs(PROD_ACCOUNT).calls().is_empty());

    let held = bench.ecs(DEV_ACCOUNT).hold_next("snapshot", Hold::Before);
    let ctx = r.ctx.clone();
    let obj = r.cached(&bench.ns, "web-v1-dev");
    let task = tokio::spawn(kiln_controller::promotion::reconcile(obj, ctx));
    tokio::time::timeout(Duration::from_secs(20), held.reached()).await.unwrap_or_else(|_| panic!("never reached"));
    let dev = bench.read("web-v1-dev").await;
    assert!(dev.finalizers().iter().any(|f| f == FINALIZER), "finalizer before the first AWS call");
    held.release();
    task.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    assert_succeeded_once(&bench, "web-v1-dev").await;
}

#[tokio::test]
async fn a_replica_that_loses_the_lease_mid_reconcile_writes_nothing_more() {
    // Issue "Safety under partition" §1: after the Lease is lost, not even the result of the
    // call in flight is written; the new leader finds the call's effect and carries on.
    let bench = Bench::new("lease").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut old = bench.replica("kiln-0");
    old.sync().await;
    let held = bench.ecs(DEV_ACCOUNT).hold_next("prepare", Hold::After);
    let task =
        tokio::spawn(kiln_controller::promotion::reconcile(old.cached(&bench.ns, "web-v1-dev"), old.ctx.clone()));
    tokio::time::timeout(Duration::from_secs(20), held.reached()).await.unwrap_or_else(|_| panic!("never reached"));
    old.set_leading(false);
    let before = bench.read("web-v1-dev").await;
    held.release();
    let result = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(result, Err(kiln_controller::error::Error::NotLeader)), "{result:?}");
    let after = bench.read("web-v1-dev").await;
    assert_eq!(after.resource_version(), before.resource_version(), "no write after the Lease was lost");
    assert!(after.status.and_then(|s| s.deployed).is_none(), "the prepared version is not recorded by the old leader");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls(), ["snapshot", "prepare"], "no traffic moved after the Lease was lost");
    let events = bench.events("web-v1-dev").await;
    assert!(!events.iter().any(|(r, _)| r == "Prepared" || r == "ReconcileFailed"), "{events:?}");

    let mut new = bench.replica("kiln-1");
    new.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    assert_succeeded_once(&bench, "web-v1-dev").await;
}

#[tokio::test]
async fn a_status_decided_on_stale_state_never_overwrites_a_newer_one() {
    // Issue "Safety under partition" §1: two replicas both believe they lead (the window before
    // the old one's clock runs out). The old one's step lands after the new one restored; its
    // status write carries the resourceVersion it decided on, is refused, and it decides again
    // on the rollback instead of recording a success over it.
    let bench = Bench::new("stale-writer").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut old = bench.replica("kiln-0");
    old.reconcile_until_call(&bench, "web-v1-dev", "shift 10", 5).await;
    bench.clock.advance(MINUTE);
    let held = bench.ecs(DEV_ACCOUNT).hold_next("shift", Hold::After);
    old.sync().await;
    let task =
        tokio::spawn(kiln_controller::promotion::reconcile(old.cached(&bench.ns, "web-v1-dev"), old.ctx.clone()));
    tokio::time::timeout(Duration::from_secs(20), held.reached()).await.unwrap_or_else(|_| panic!("never reached"));
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(0, 100), "the old replica's step reached AWS");

    // A person aborts; the new replica rolls back.
    let abort = serde_json::json!({"spec": {"abort": true}});
    bench
        .api::<kiln_api::Promotion>()
        .patch("web-v1-dev", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&abort))
        .await
        .unwrap_or_else(|e| panic!("abort: {e}"));
    let mut new = bench.replica("kiln-1");
    for _ in 0..5 {
        new.sync().await;
        new.reconcile(new.cached(&bench.ns, "web-v1-dev")).await.unwrap_or_else(|e| panic!("{e}"));
        if bench.phase("web-v1-dev").await == PromotionPhase::RolledBack {
            break;
        }
    }
    assert_eq!(bench.phase("web-v1-dev").await, PromotionPhase::RolledBack);
    let calls_before = bench.ecs(DEV_ACCOUNT).calls().len();

    // The old replica's answer comes back now.
    held.release();
    task.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    let p = bench.read("web-v1-dev").await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::RolledBack, "{:?}", status.message);
    assert_eq!(status.rollback.map(|r| r.cause), Some(RollbackCause::Abort));
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(100, 0), "traffic stays restored");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls().len(), calls_before, "the old replica acted no further");
}

#[tokio::test]
async fn a_reconcile_hands_back_to_the_queue_after_its_rounds() {
    let bench = Bench::new("rounds").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica_with_rounds("kiln-0", 2);
    r.sync().await;
    let requeue = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(requeue, Requeue::requeue(Duration::from_millis(100)), "still moving: back to the queue at once");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls(), ["snapshot", "prepare"], "two rounds, two actions");
    r.sync().await;
    let requeue = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(requeue, Requeue::requeue(Duration::from_secs(1)), "baking: the policy is read every interval (1s)");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls(), ["snapshot", "prepare", "shift 10"]);
    r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    assert_succeeded_once(&bench, "web-v1-dev").await;
}

/// What a user checks after a Promotion in dev rolled back on an alarm: blue serves everything
/// again and alone, the cause recorded, evidence, no finalizer.
async fn assert_rolled_back_once(bench: &Bench, name: &str) {
    let p = bench.read(name).await;
    let status = p.status.clone().unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::RolledBack, "{:?}", status.message);
    assert_eq!(status.rollback.as_ref().map(|r| r.cause), Some(RollbackCause::Alarm));
    let ecs = bench.ecs(DEV_ACCOUNT).state();
    assert_eq!(ecs.weights, weights(100, 0), "listener weights");
    assert_eq!(ecs.primary, "ts/blue");
    assert_eq!(ecs.task_sets, vec![("ts/blue".to_string(), "initial".to_string())], "the new task set is gone");
    let previous = status.previous.and_then(|s| s.ecs).map(|e| e.listener_weights);
    assert_eq!(previous, Some(weights(100, 0)), "the snapshot is the state before the change");
    assert!(status.evidence.is_some(), "evidence recorded");
    assert!(!p.finalizers().iter().any(|f| f == FINALIZER), "the finalizer is removed once restored");
}

/// One reconcile of the dev Promotion as the controller would run it, then the clock moves a
/// minute. With `breach`, the alarm fires a second after the first traffic shift.
async fn tick(r: &mut support::Replica, bench: &Bench, breach: bool) -> bool {
    r.sync().await;
    let _ = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await;
    if breach && bench.ecs(DEV_ACCOUNT).calls().iter().any(|c| c.starts_with("shift")) {
        let cw = bench.cloud.cloudwatch(DEV_ACCOUNT);
        bench.clock.advance(SignedDuration::from_secs(1));
        cw.set_state(support::ALARM, AlarmState::Alarm, bench.clock.now());
    }
    let done = bench.read("web-v1-dev").await.status.is_some_and(|s| s.phase.is_terminal());
    bench.clock.advance(MINUTE);
    done
}

/// Kills the controller at the `n`-th AWS call of a canary with `steps` (before the call reaches
/// AWS, or after AWS applied it and before the answer came back), restarts it, and checks the
/// Promotion finishes exactly once: succeeded, or with `breach` (the alarm fires after the first
/// shift) rolled back.
async fn crash_and_resume(case: &str, steps: &[i32], n: usize, when: Hold, breach: bool) {
    let bench = Arc::new(Bench::new(case).await);
    bench.release("web-v1", 1, steps).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let held = bench.ecs(DEV_ACCOUNT).hold_call(n, when);
    let mut first = bench.replica("kiln-0");
    let b = bench.clone();
    crash_at(
        async move {
            for _ in 0..40 {
                if tick(&mut first, &b, breach).await {
                    return;
                }
            }
        },
        &held,
    )
    .await;
    assert!(!bench.phase("web-v1-dev").await.is_terminal(), "{case}: crashed mid-way");

    // The restarted controller lists everything afresh and finishes the job.
    let mut second = bench.replica("kiln-1");
    let mut finished = false;
    for _ in 0..40 {
        if tick(&mut second, &bench, breach).await {
            finished = true;
            break;
        }
    }
    assert!(finished, "{case}: not finished after the restart: {:?}", bench.read("web-v1-dev").await.status);
    if breach {
        assert_rolled_back_once(&bench, "web-v1-dev").await;
    } else {
        assert_succeeded_once(&bench, "web-v1-dev").await;
    }
    // A call is repeated at most once (the one the crash interrupted).
    let calls = bench.ecs(DEV_ACCOUNT).calls();
    for op in ["snapshot", "prepare", "finalize", "restore"] {
        assert!(calls.iter().filter(|c| *c == op).count() <= 2, "{case}: {calls:?}");
    }
}

/// Every AWS call of a canary with `steps`, crashed before and after.
async fn crash_everywhere(label: &str, steps: &[i32]) {
    // snapshot, prepare, one shift per step, finalize.
    let calls = steps.len() + 3;
    for n in 0..calls {
        for (when, at) in [(Hold::Before, "before"), (Hold::After, "after")] {
            crash_and_resume(&format!("crash-{label}-{n}-{at}"), steps, n, when, false).await;
        }
    }
}

#[tokio::test]
async fn a_crash_at_any_aws_call_of_a_two_step_canary_is_resumed_without_duplicates() {
    crash_everywhere("canary", &[10, 100]).await;
}

#[tokio::test]
async fn a_crash_at_any_aws_call_of_a_linear_rollout_is_resumed_without_duplicates() {
    crash_everywhere("linear", &[25, 50, 75, 100]).await;
}

#[tokio::test]
async fn a_crash_at_any_aws_call_of_a_breach_still_restores() {
    // snapshot, prepare, shift 10, restore: the alarm fires after the shift.
    for n in 0..4 {
        for (when, at) in [(Hold::Before, "before"), (Hold::After, "after")] {
            crash_and_resume(&format!("breach-{n}-{at}"), &[10, 100], n, when, true).await;
        }
    }
}

/// Issue "Safety under partition" §3: alarm reads that fail mid-canary (the role lost
/// cloudwatch:DescribeAlarms) are reported at once and, after the Environment's window (2m by
/// default), roll the canary back, fail closed; before, the bake waited for a read forever with
/// the traffic split.
#[tokio::test]
async fn alarm_reads_failing_mid_canary_stall_then_roll_back() {
    let bench = Bench::new("unreadable-signals").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    let cw = bench.cloud.cloudwatch(DEV_ACCOUNT);
    // Until the first traffic step.
    r.reconcile_until_call(&bench, "web-v1-dev", "shift 10", 10).await;
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(90, 10));
    cw.deny_reads(true);
    bench.clock.advance(SignedDuration::from_secs(5));
    r.sync().await;
    let _ = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await;
    let p = bench.read("web-v1-dev").await;
    let status = p.status.clone().unwrap_or_default();
    assert!(status.phase.is_in_flight(), "{:?}", status.phase);
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").expect("Stalled");
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "SignalReadFailing"), "{stalled:?}");
    assert!(stalled.message.contains("DescribeAlarms"), "{}", stalled.message);
    let events = bench.events("web-v1-dev").await;
    assert!(events.iter().any(|(reason, _)| reason == "SignalReadFailing"), "{events:?}");
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(90, 10), "nothing decided blind yet");

    // Past the window: restored, cause signalsUnreadable.
    for _ in 0..6 {
        bench.clock.advance(MINUTE);
        r.sync().await;
        let _ = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await;
    }
    let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::RolledBack, "{:?}", status.message);
    assert_eq!(status.rollback.map(|r| r.cause), Some(RollbackCause::SignalsUnreadable));
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(100, 0), "blue serves everything again");
}

/// Issue "Safety under partition" §3: a new task set that never reaches steady state does not
/// hold the Promotion in Deploying forever: past the progress deadline (10m by default) the
/// reconciler restores blue and records why.
#[tokio::test]
async fn a_task_set_that_never_becomes_steady_is_rolled_back_at_the_progress_deadline() {
    let bench = Bench::new("progress-deadline").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    bench.ecs(DEV_ACCOUNT).stick("prepare", true);
    let mut r = bench.replica("kiln-0");
    for _ in 0..14 {
        r.sync().await;
        let _ = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await;
        let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
        if status.phase.is_terminal() {
            break;
        }
        bench.clock.advance(MINUTE);
    }
    let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::RolledBack, "{:?}", status.message);
    let rollback = status.rollback.expect("rollback");
    assert_eq!(rollback.cause, RollbackCause::ProgressDeadline);
    assert!(rollback.message.contains("1 of 3 tasks running"), "{}", rollback.message);
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(100, 0), "blue serves everything");
    let events = bench.events("web-v1-dev").await;
    assert!(events.iter().any(|(reason, _)| reason == "ProgressDeadlineExceeded"), "{events:?}");
}

/// Issue "Safety under partition" §3: deleting a Promotion never wedges. Its evidence bucket
/// refuses every write: while it is deleted kiln retries a few times, then lets it go with a
/// Warning Event naming the record, so neither the Promotion nor its namespace waits forever.
#[tokio::test]
async fn a_deleted_promotion_stops_waiting_for_an_evidence_bucket_that_refuses_it() {
    let bench = Bench::new("archive-refused").await;
    bench.evidence_bucket("dev", "kiln-evidence").await;
    let bucket = bench.cloud.bucket(DEV_ACCOUNT, "kiln-evidence");
    bucket.deny_writes(true);
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    for _ in 0..40 {
        r.sync().await;
        let _ = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await;
        let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
        if status.evidence_archive.as_ref().and_then(|a| a.failed_attempts).is_some() {
            break;
        }
        bench.clock.advance(MINUTE);
    }
    // Succeeded, the record not written yet: retried every minute, the finalizer stays.
    let p = bench.read("web-v1-dev").await;
    let status = p.status.clone().unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Succeeded, "{:?}", status.message);
    let sha = status.evidence_sha256.clone().expect("an evidence record");
    assert_eq!(status.evidence_archive.as_ref().and_then(|a| a.failed_attempts), Some(1));
    assert!(p.finalizers().iter().any(|f| f == FINALIZER), "{:?}", p.finalizers());

    bench.delete_promotion("web-v1-dev").await;
    let puts = bucket.puts();
    let took = r.reconcile_until_gone(&bench, "web-v1-dev", SignedDuration::from_secs(5), 10).await;
    assert!(took.is_some(), "the deletion completes although the bucket still refuses the record");
    assert_eq!(bucket.puts() - puts, 2, "tried again while deleted, up to 3 failures in a row in all");
    assert!(bucket.get(&format!("kiln/evidence/{}/web-v1-dev/{sha}.json", bench.ns)).is_none());
    let events = bench.events("web-v1-dev").await;
    let abandoned = events.iter().find(|(reason, _)| reason == "EvidenceArchiveAbandoned");
    let (_, message) = abandoned.unwrap_or_else(|| panic!("an EvidenceArchiveAbandoned Event: {events:?}"));
    assert!(message.contains(&sha) && message.contains("s3://kiln-evidence/kiln/evidence/"), "{message}");
}

/// Issue "Safety under partition" §3: a Promotion deleted mid-canary after its Environment was
/// deleted still restores (the snapshot records the role) and then goes.
#[tokio::test]
async fn a_promotion_deleted_mid_canary_restores_after_its_environment_is_gone() {
    let bench = Bench::new("env-gone").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    r.reconcile_until_call(&bench, "web-v1-dev", "shift 10", 10).await;
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(90, 10));
    kube::Api::<kiln_api::Environment>::all(bench.client.clone())
        .delete("dev", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("delete Environment dev: {e}"));
    bench.delete_promotion("web-v1-dev").await;
    let took = r.reconcile_until_gone(&bench, "web-v1-dev", SignedDuration::from_secs(5), 10).await;
    assert!(took.is_some(), "the deletion completes");
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(100, 0), "blue serves everything again");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls().last().map(String::as_str), Some("restore"));
    let roles: Vec<String> = bench.cloud.identities().into_iter().map(|(role, _)| role).collect();
    assert_eq!(roles.last().map(String::as_str), Some("arn:aws:iam::111111111111:role/kiln-deploy"), "{roles:?}");
}

/// Issue "Tenancy and release integrity" §1: what only the snapshot resolves (the listener,
/// named by load balancer and port, and the target groups) is checked before the first write. A
/// namespace given the ECS service but not the listener fails with nothing changed in AWS; once
/// the platform team gives it the load balancer too, a retry deploys.
#[tokio::test]
async fn a_listener_the_namespace_is_not_given_fails_the_promotion_before_any_write() {
    let bench = Bench::new("tenancy-snapshot").await;
    let service = format!("arn:aws:ecs:*:{DEV_ACCOUNT}:service/{}/{}", support::CLUSTER, support::SERVICE);
    bench
        .tenants("dev", serde_json::json!([{"namespaces": [bench.ns.as_str()], "resources": [service.as_str()]}]))
        .await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    let p = r.drive(&bench, "web-v1-dev", MINUTE, 20).await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Failed, "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    for part in [
        "namespace tenancy-snapshot",
        "listener/app/web-alb/",
        "targetgroup/web-blue/",
        "targetgroup/web-green/",
        "nothing had changed in AWS",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls(), vec!["snapshot".to_string()], "only the snapshot's reads");
    let events = bench.events("web-v1-dev").await;
    assert!(events.iter().any(|(reason, _)| reason == "TenancyRefused"), "{events:?}");

    // The platform team adds the load balancer's listener and target groups; a retry deploys.
    let elb = format!("arn:aws:elasticloadbalancing:*:{DEV_ACCOUNT}:*/web-*");
    bench
        .tenants(
            "dev",
            serde_json::json!([{"namespaces": [bench.ns.as_str()], "resources": [service.as_str(), elb.as_str()]}]),
        )
        .await;
    let patch = serde_json::json!({"spec": {"retry": 1}});
    bench
        .api::<kiln_api::Promotion>()
        .patch("web-v1-dev", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("retry: {e}"));
    let p = r.drive(&bench, "web-v1-dev", MINUTE, 60).await;
    assert_eq!(p.status.map(|s| s.phase), Some(PromotionPhase::Succeeded));
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(0, 100));
}

/// The same check at the gates: a Release naming a service the namespace is not given waits on
/// the validation gate naming it, and nothing is read or written in AWS.
#[tokio::test]
async fn a_service_the_namespace_is_not_given_blocks_at_the_gates() {
    let bench = Bench::new("tenancy-gate").await;
    bench
        .tenants("dev", serde_json::json!([{"namespaces": ["team-web"], "resources": ["arn:aws:ecs:*:*:service/*/*"]}]))
        .await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    r.settle(&bench.ns, "web-v1-dev", 3).await;
    let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::WaitingForGates);
    let gate = status.gates.iter().find(|g| g.name == "validation").map(|g| (g.ok, g.message.clone()));
    let (ok, message) = gate.unwrap_or_else(|| panic!("a validation gate: {:?}", status.gates));
    assert!(!ok);
    let arn =
        format!("arn:aws:ecs:{}:{DEV_ACCOUNT}:service/{}/{}", support::REGION, support::CLUSTER, support::SERVICE);
    assert!(message.contains(&arn) && message.contains("namespace tenancy-gate"), "{message}");
    assert!(bench.ecs(DEV_ACCOUNT).calls().is_empty(), "nothing read or written in AWS");
}

/// Issue "Tenancy and release integrity" §1: Promotions queue by the AWS resource they drive, not
/// by (namespace, service, environment). Team b's Release, under another service name, deploys
/// the ECS service team a is rolling out: it waits, naming the one ahead, and changes nothing in
/// AWS until team a's has finished; then it goes.
#[tokio::test]
async fn two_namespaces_driving_one_ecs_service_take_turns() {
    let bench = Bench::new("queue-a").await;
    bench.namespace("queue-b").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.release_in("queue-b", "shop", "shop-v1", 2, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    r.reconcile_until_call(&bench, "web-v1-dev", "shift 10", 10).await;
    bench.promotion_in("queue-b", "shop-v1-dev", serde_json::json!({"release": "shop-v1", "environment": "dev"})).await;
    r.settle("queue-b", "shop-v1-dev", 3).await;
    let status = bench.read_in("queue-b", "shop-v1-dev").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Queued, "{:?}", status.message);
    let queue = status.gates.iter().find(|g| g.name == "queue").map(|g| (g.ok, g.message.clone()));
    let (ok, message) = queue.unwrap_or_else(|| panic!("a queue gate: {:?}", status.gates));
    assert!(!ok && message.contains("queued behind queue-a/web-v1-dev"), "{message}");
    let arn =
        format!("arn:aws:ecs:{}:{DEV_ACCOUNT}:service/{}/{}", support::REGION, support::CLUSTER, support::SERVICE);
    assert_eq!(status.target.as_deref(), Some(arn.as_str()), "the resource it queues for");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls(), ["snapshot", "prepare", "shift 10"], "team b changed nothing");

    // Team a's finishes; team b's goes next, from the state team a left.
    r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    let p = r.drive_in(&bench, "queue-b", "shop-v1-dev", MINUTE, 40).await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Succeeded, "{:?}", status.message);
    let calls = bench.ecs(DEV_ACCOUNT).calls();
    let one = ["snapshot", "prepare", "shift 10", "shift 100", "finalize"];
    assert_eq!(calls, [one, one].concat(), "one rollout after the other");
}

/// Issue "Tenancy and release integrity" §1 and §3: two rollback Promotions of one service (two
/// people ran `kubectl kiln rollback`) never drive it at once: the later one waits for the
/// earlier, then runs.
#[tokio::test]
async fn two_rollback_promotions_of_one_service_take_turns() {
    let bench = Bench::new("two-rollbacks").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.release("web-v2", 2, &[10, 100]).await;
    let mut r = bench.replica("kiln-0");
    for (promotion, release) in [("web-v1-dev", "web-v1"), ("web-v2-dev", "web-v2")] {
        bench.promotion(promotion, release, "dev").await;
        r.drive(&bench, promotion, MINUTE, 40).await;
    }
    let rollback = serde_json::json!({
        "release": "web-v1", "environment": "dev", "rollback": {"reason": "5xx after web-v2", "fromRelease": "web-v2"}
    });
    bench.promotion_in(&bench.ns, "rollback-1", rollback.clone()).await;
    bench.promotion_in(&bench.ns, "rollback-2", rollback).await;
    // One round: the first rollback is caught in flight (a rollback runs at once, unbaked).
    let mut one_round = bench.replica_with_rounds("kiln-0", 1);
    one_round.sync().await;
    let _ = one_round.reconcile(one_round.cached(&bench.ns, "rollback-1")).await;
    assert!(bench.phase("rollback-1").await.is_in_flight(), "{:?}", bench.read("rollback-1").await.status);
    let before = bench.ecs(DEV_ACCOUNT).calls().len();
    r.settle(&bench.ns, "rollback-2", 3).await;
    let status = bench.read("rollback-2").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Queued, "{:?}", status.message);
    let queue = status.gates.iter().find(|g| g.name == "queue").map(|g| g.message.clone()).unwrap_or_default();
    assert!(queue.starts_with("queued behind rollback rollback-1"), "{queue}");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls().len(), before, "the second rollback changed nothing");

    r.drive(&bench, "rollback-1", MINUTE, 40).await;
    let p = r.drive(&bench, "rollback-2", MINUTE, 40).await;
    assert_eq!(p.status.map(|s| s.phase), Some(PromotionPhase::Succeeded));
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().task_sets.len(), 1, "one task set serves");
}

/// Deletes Release `name` and creates it again with image `n`: another Release under the name.
async fn recreate_release(bench: &Bench, name: &str, n: u32) {
    let api = bench.api::<kiln_api::Release>();
    api.delete(name, &kube::api::DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete {name}: {e}"));
    bench.release(name, n, &[10, 100]).await;
}

/// Issue "Tenancy and release integrity" §2, the reproduction: web-v1 succeeded in dev, then the
/// Release was deleted and created again under its name with another digest. A prod Promotion
/// with its approval must not take dev's success for this Release: the upstream gate names both
/// digests and nothing happens in prod. Once this Release passes dev itself, prod may go.
#[tokio::test]
async fn a_release_created_again_under_its_name_must_pass_upstream_again() {
    let bench = Bench::new("same-digest").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    recreate_release(&bench, "web-v1", 2).await;
    let approved = serde_json::json!({
        "release": "web-v1", "environment": "prod",
        "approvals": [{"user": "sec@example.com", "role": "security", "at": "2026-12-07T10:00:00Z"}]
    });
    bench.promotion_in(&bench.ns, "web-v1-prod", approved).await;
    r.settle(&bench.ns, "web-v1-prod", 3).await;
    let status = bench.read("web-v1-prod").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::WaitingForGates, "{:?}", status.message);
    let gate = status.gates.iter().find(|g| g.name == "upstream").map(|g| (g.ok, g.message.clone()));
    let (ok, message) = gate.unwrap_or_else(|| panic!("an upstream gate: {:?}", status.gates));
    let (was, now) = (support::image(1), support::image(2));
    let digest = |image: &str| image.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
    assert!(!ok, "{message}");
    for part in
        ["dev ran another Release named web-v1", &digest(&was), &digest(&now), "promote this Release through dev"]
    {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(bench.ecs(PROD_ACCOUNT).calls().is_empty(), "nothing read or written in prod");

    // This Release goes through dev itself; then prod's upstream gate passes.
    bench.promotion("web-v1-dev-again", "web-v1", "dev").await;
    let dev = r.drive(&bench, "web-v1-dev-again", MINUTE, 40).await;
    let deployed = dev.status.and_then(|s| s.release).unwrap_or_default();
    assert_eq!(deployed.artifacts.first().map(|a| a.digest.clone()), Some(digest(&now)), "status.release pins it");
    r.sync().await;
    let _ = r.reconcile(r.cached(&bench.ns, "web-v1-prod")).await;
    let status = bench.read("web-v1-prod").await.status.unwrap_or_default();
    let upstream = status.gates.iter().find(|g| g.name == "upstream").map(|g| (g.ok, g.message.clone()));
    assert_eq!(upstream, Some((true, "dev succeeded".to_string())), "{:?}", status.message);
}

/// §2: a rollback may only return to a Release that succeeded here, by UID and digests: a
/// Release created again under a good Release's name is not known-good.
#[tokio::test]
async fn a_rollback_to_a_release_created_again_under_a_good_name_is_refused() {
    let bench = Bench::new("rollback-namesake").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.release("web-v2", 2, &[10, 100]).await;
    let mut r = bench.replica("kiln-0");
    for (promotion, release) in [("web-v1-dev", "web-v1"), ("web-v2-dev", "web-v2")] {
        bench.promotion(promotion, release, "dev").await;
        r.drive(&bench, promotion, MINUTE, 40).await;
    }
    recreate_release(&bench, "web-v1", 3).await;
    let rollback = serde_json::json!({
        "release": "web-v1", "environment": "dev", "rollback": {"reason": "5xx", "fromRelease": "web-v2"}
    });
    bench.promotion_in(&bench.ns, "rollback", rollback).await;
    let calls = bench.ecs(DEV_ACCOUNT).calls().len();
    r.sync().await;
    let _ = r.reconcile(r.cached(&bench.ns, "rollback")).await;
    let status = bench.read("rollback").await.status.unwrap_or_default();
    assert!(!status.phase.is_in_flight() && status.phase != PromotionPhase::Succeeded, "{:?}", status.phase);
    let message = status.message.unwrap_or_default();
    assert!(message.contains("web-v1 never did"), "{message}");
    assert_eq!(bench.ecs(DEV_ACCOUNT).calls().len(), calls, "nothing changed in AWS");
}

/// §2: a Release deleted and created again with another digest while its Promotion is in flight
/// is not driven forward with the new artifacts: the Promotion rolls back.
#[tokio::test]
async fn a_release_replaced_mid_deployment_rolls_back() {
    let bench = Bench::new("replaced-mid-flight").await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    r.reconcile_until_call(&bench, "web-v1-dev", "shift 10", 10).await;
    recreate_release(&bench, "web-v1", 2).await;
    let p = r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::RolledBack, "{:?}", status.message);
    let why = status.rollback.map(|r| r.message).unwrap_or_default();
    assert!(why.contains("was replaced during the deployment"), "{why}");
    assert_eq!(bench.ecs(DEV_ACCOUNT).state().weights, weights(100, 0), "traffic back on blue");
    assert!(!bench.ecs(DEV_ACCOUNT).calls().iter().any(|c| c == "shift 100"), "never went further");
}

/// §2: a Promotion kiln created for a Release that was deleted since (its ownerReference names
/// the old UID) does not go on with the new Release of that name: its approvals were for the
/// other one. It waits at validation saying so.
#[tokio::test]
async fn a_promotion_created_for_a_deleted_release_does_not_deploy_its_namesake() {
    let bench = Bench::new("owner-replaced").await;
    let old = bench.release("web-v1", 1, &[10, 100]).await;
    let uid = old.metadata.uid.clone().unwrap_or_default();
    let p: kiln_api::Promotion = serde_json::from_value(serde_json::json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": "web-v1-dev", "ownerReferences": [
            {"apiVersion": "kiln.dev/v1alpha1", "kind": "Release", "name": "web-v1", "uid": uid, "controller": false}
        ]},
        "spec": {"release": "web-v1", "environment": "dev"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    bench.api::<kiln_api::Promotion>().create(&Default::default(), &p).await.unwrap_or_else(|e| panic!("{e}"));
    recreate_release(&bench, "web-v1", 2).await;
    let mut r = bench.replica("kiln-0");
    r.sync().await;
    let _ = r.reconcile(r.cached(&bench.ns, "web-v1-dev")).await;
    let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::WaitingForGates, "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    assert!(message.contains(&format!("created for Release web-v1 with UID {uid}, which was deleted")), "{message}");
    assert!(bench.ecs(DEV_ACCOUNT).calls().is_empty(), "nothing read or written in AWS");
}

/// §1: the queue is per resource across namespaces, but a Promotion of a namespace the
/// Environment does not give the resource (refused at validation) never holds it: otherwise any
/// team could block another team's service by naming it.
#[tokio::test]
async fn a_promotion_refused_by_tenancy_does_not_hold_the_queue() {
    let bench = Bench::new("queue-owner").await;
    bench.namespace("queue-intruder").await;
    let service = format!("arn:aws:ecs:*:{DEV_ACCOUNT}:service/{}/{}", support::CLUSTER, support::SERVICE);
    let elb = format!("arn:aws:elasticloadbalancing:*:{DEV_ACCOUNT}:*/web-*");
    bench.tenants("dev", serde_json::json!([{"namespaces": [bench.ns.as_str()], "resources": [service, elb]}])).await;
    bench.release_in("queue-intruder", "web", "hijack", 9, &[10, 100]).await;
    bench
        .promotion_in("queue-intruder", "hijack-dev", serde_json::json!({"release": "hijack", "environment": "dev"}))
        .await;
    let mut r = bench.replica("kiln-0");
    r.sync().await;
    let _ = r.reconcile(r.cached("queue-intruder", "hijack-dev")).await;
    let intruder = bench.read_in("queue-intruder", "hijack-dev").await.status.unwrap_or_default();
    assert_eq!(intruder.phase, PromotionPhase::WaitingForGates, "{:?}", intruder.message);

    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let p = r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Succeeded, "{:?}", status.gates);
}

/// §2: every image kiln ships is pinned by digest, not only the Release's. A sidecar on a
/// mutable tag in the service's task definition fails the Promotion before the first write,
/// naming the container; a Release that lists the sidecar with an artifact pinned by digest
/// deploys it. An Environment with `containerImages: fromRelease` refuses even a pinned sidecar
/// the Release does not list.
#[tokio::test]
async fn a_sidecar_on_a_mutable_tag_fails_the_promotion_before_any_write() {
    let bench = Bench::new("sidecar-tag").await;
    let ecs = bench.ecs(DEV_ACCOUNT);
    ecs.set_containers(&[("app", "registry.example/web:v1"), ("proxy", "registry.example/proxy:v7")]);
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    let p = r.drive(&bench, "web-v1-dev", MINUTE, 20).await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Failed, "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    for part in ["container proxy runs registry.example/proxy:v7, not pinned by digest", "nothing had changed in AWS"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_eq!(ecs.calls(), ["snapshot"], "only the snapshot's reads");
    let events = bench.events("web-v1-dev").await;
    assert!(events.iter().any(|(reason, _)| reason == "ContainerImageRefused"), "{events:?}");

    // The Release lists the sidecar with an artifact pinned by digest: it deploys.
    let proxy = kiln_api::fixtures::artifact("proxy", 7);
    let listed = |spec: &mut kiln_api::release::ReleaseSpec| {
        spec.artifacts.push(proxy.clone());
        if let Some(e) = spec.target.ecs.as_mut() {
            e.sidecars.push(kiln_api::release::Sidecar { container: "proxy".into(), artifact: "proxy".into() });
        }
    };
    let ns = bench.ns.clone();
    bench.release_with(&ns, support::SERVICE, "web-v2", 2, &[10, 100], listed).await;
    bench.promotion("web-v2-dev", "web-v2", "dev").await;
    let p = r.drive(&bench, "web-v2-dev", MINUTE, 40).await;
    assert_eq!(p.status.map(|s| s.phase), Some(PromotionPhase::Succeeded));

    // fromRelease: a pinned sidecar the Release does not list is refused too.
    let pinned = format!("registry.example/proxy@sha256:{}", kiln_api::fixtures::digest(7));
    ecs.set_containers(&[("app", "registry.example/web:v1"), ("proxy", pinned.as_str())]);
    let patch = serde_json::json!({"spec": {"containerImages": "fromRelease"}});
    kube::Api::<kiln_api::Environment>::all(bench.client.clone())
        .patch("dev", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bench.release("web-v3", 3, &[10, 100]).await;
    bench.promotion("web-v3-dev", "web-v3", "dev").await;
    let p = r.drive(&bench, "web-v3-dev", MINUTE, 20).await;
    let message = p.status.and_then(|s| s.message).unwrap_or_default();
    assert!(message.contains("come from the Release") && message.contains("container proxy"), "{message}");
}

/// §1: a namespace whose tenants entry names a role acts as that role (the snapshot records it,
/// so a restore does too).
#[tokio::test]
async fn a_namespace_with_its_own_role_acts_as_that_role() {
    let bench = Bench::new("tenant-role").await;
    let role = format!("arn:aws:iam::{DEV_ACCOUNT}:role/kiln-team-web");
    bench
        .tenants(
            "dev",
            serde_json::json!([{"namespaces": [bench.ns.as_str()], "resources": ["arn:aws:*"], "roleArn": role.as_str()}]),
        )
        .await;
    bench.release("web-v1", 1, &[10, 100]).await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let mut r = bench.replica("kiln-0");
    let p = r.drive(&bench, "web-v1-dev", MINUTE, 40).await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Succeeded, "{:?}", status.message);
    assert_eq!(status.previous.and_then(|s| s.role_arn), Some(role));
}

/// §2, last bullet: Promotions deleted by a cleanup job (or a cluster rebuilt from Git) leave no
/// record, so what runs is read from AWS. Re-created history is refused at once without touching
/// AWS; the same version built again is refused; a downgrade on purpose goes ahead; a read that
/// fails for a while holds the Promotion until it succeeds.
#[tokio::test]
async fn a_promotion_of_an_older_version_than_aws_runs_is_refused_before_any_write() {
    let bench = Bench::new("older").await;
    bench.release("web-v1", 1, &[100]).await;
    bench.release("web-v2", 2, &[100]).await;
    let mut r = bench.replica("kiln-0");
    for (promotion, release) in [("web-v1-dev", "web-v1"), ("web-v2-dev", "web-v2")] {
        bench.promotion(promotion, release, "dev").await;
        r.drive(&bench, promotion, MINUTE, 40).await;
    }
    let ecs = bench.ecs(DEV_ACCOUNT);
    let v2_uid = bench.api::<kiln_api::Release>().get("web-v2").await.ok().and_then(|r| r.metadata.uid);
    let mark = ecs.serving_mark().unwrap_or_else(|| panic!("kiln marks what it deploys"));
    assert_eq!((mark.version.as_str(), mark.release_uid.clone()), ("v1.0.2", v2_uid));

    // A cleanup job deletes the finished Promotions; GitOps re-creates v1's.
    bench.delete_promotion("web-v1-dev").await;
    bench.delete_promotion("web-v2-dev").await;
    bench.promotion("web-v1-dev", "web-v1", "dev").await;
    let (state, calls) = (ecs.state(), ecs.calls().len());
    r.settle(&bench.ns, "web-v1-dev", 3).await;
    let status = bench.read("web-v1-dev").await.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Failed, "{:?}", status.message);
    assert_eq!(status.timeline.last().map(|t| t.reason.as_str()), Some("OlderThanRunning"));
    let message = status.message.unwrap_or_default();
    for part in ["dev runs ECS service web", "web v1.0.2", "newer than v1.0.1", "nothing was changed"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(status.evidence.is_some(), "the refusal is on record");
    assert_eq!((ecs.state(), ecs.calls().len()), (state, calls), "AWS untouched");
    let events = bench.events("web-v1-dev").await;
    assert!(events.iter().any(|(reason, _)| reason == "OlderThanRunning"), "{events:?}");

    // v1.0.2 built again from other artifacts: a version names one build.
    bench.release_with(&bench.ns, support::SERVICE, "web-v2-rebuilt", 3, &[100], |s| s.version = "v1.0.2".into()).await;
    bench.promotion("web-v2-rebuilt-dev", "web-v2-rebuilt", "dev").await;
    r.settle(&bench.ns, "web-v2-rebuilt-dev", 3).await;
    let status = bench.read("web-v2-rebuilt-dev").await.status.unwrap_or_default();
    assert_eq!(status.timeline.last().map(|t| t.reason.as_str()), Some("VersionReused"), "{:?}", status.message);
    assert_eq!(ecs.calls().len(), calls, "AWS untouched");

    // Going back on purpose: spec.downgrade. A throttled read first holds it at the gate.
    ecs.fail_next(
        "running",
        kiln_aws::AwsError::Throttled { service: "ecs", operation: "DescribeServices", message: "slow down".into() },
    );
    bench
        .promotion_in(
            &bench.ns,
            "web-v1-back",
            serde_json::json!({"release": "web-v1", "environment": "dev", "downgrade": true}),
        )
        .await;
    r.settle(&bench.ns, "web-v1-back", 1).await;
    let status = bench.read("web-v1-back").await.status.unwrap_or_default();
    let newer = status.gates.iter().find(|g| g.name == "newer").map(|g| (g.ok, g.message.clone()));
    assert!(newer.as_ref().is_some_and(|(ok, m)| !ok && m.contains("slow down")), "{newer:?}");
    assert_eq!(ecs.calls().len(), calls, "nothing done while it cannot tell");
    let p = r.drive(&bench, "web-v1-back", MINUTE, 40).await;
    let status = p.status.unwrap_or_default();
    assert_eq!(status.phase, PromotionPhase::Succeeded, "{:?}", status.message);
    let newer = status.gates.iter().find(|g| g.name == "newer").map(|g| g.message.clone()).unwrap_or_default();
    assert!(newer.contains("deployed as a downgrade"), "{newer}");
    assert_eq!(ecs.serving_mark().map(|m| m.version), Some("v1.0.1".to_string()));
}
