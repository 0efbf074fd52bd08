//! Executes the decision core's traffic actions on a [`TrafficTarget`] and turns the result into
//! the [`Outcome`] the core folds into status with `machine::complete`.
//!
//! Error classes map onto the core's vocabulary: `Wait` (still in progress in AWS) becomes
//! `Outcome::InProgress` so the machine asks again; `SpecWrong` becomes `Outcome::Failed` (the
//! machine rolls back, or fails if nothing changed yet); `RetryLater` (throttling, 5xx, timeouts)
//! is returned as an error so the controller requeues with backoff and the status is not touched
//! — the action is idempotent and will simply be repeated.

use kiln_api::promotion::PromotionStatus;
use kiln_core::machine::{Action, Outcome};

use crate::error::{AwsError, ErrorClass};
use crate::traffic::TrafficTarget;

/// Runs a traffic action (everything but hooks, which go through the hook runner, and the
/// evidence archive, see `evidence::archive`: both return `None` here). `status` is the status the core's `decide` returned with the action.
pub async fn traffic_action(
    target: &dyn TrafficTarget,
    action: &Action,
    status: &PromotionStatus,
) -> Option<Result<Outcome, AwsError>> {
    let result = match action {
        Action::RunHook(_) | Action::ArchiveEvidence => return None,
        Action::CaptureSnapshot => target.snapshot().await.map(|s| Outcome::Snapshot(Box::new(s))),
        Action::Prepare => target.prepare().await.map(Outcome::Prepared),
        Action::ShiftTraffic { weight, .. } => match &status.deployed {
            Some(deployed) => target.shift(deployed, *weight).await.map(|()| Outcome::Done),
            None => return Some(Ok(missing("shift traffic", "status.deployed"))),
        },
        Action::Finalize => match &status.deployed {
            Some(deployed) => target.finalize(deployed).await.map(|()| Outcome::Done),
            None => return Some(Ok(missing("finalize", "status.deployed"))),
        },
        // The core only restores with a snapshot; without one there is nothing to return to.
        Action::Restore => match &status.previous {
            Some(previous) => target.restore(previous).await.map(|()| Outcome::Done),
            None => Ok(Outcome::Done),
        },
    };
    Some(result.or_else(outcome_of))
}

/// What an AWS error means to the decision core: `Wait` → still in progress, `SpecWrong` →
/// failed, `RetryLater` stays an error (retried with backoff, the status untouched). The one
/// place error classes become outcomes.
pub fn outcome_of(e: AwsError) -> Result<Outcome, AwsError> {
    match e.class() {
        ErrorClass::Wait => Ok(Outcome::InProgress(e.to_string())),
        ErrorClass::SpecWrong => Ok(Outcome::Failed(e.to_string())),
        ErrorClass::RetryLater => Err(e),
    }
}

fn missing(what: &str, field: &str) -> Outcome {
    Outcome::Failed(format!("cannot {what}: {field} is not recorded (status was edited or lost)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Scope;
    use crate::fake::FakeTraffic;

    fn scope() -> Scope {
        Scope { account_id: "111111111111".into(), region: "us-east-1".into() }
    }

    #[tokio::test]
    async fn error_classes_become_outcomes_or_retries() {
        let fake = FakeTraffic::new("uid-x");
        let status = PromotionStatus::default();
        fake.fail_next("prepare", AwsError::InProgress { what: "task set".into(), scope: scope() });
        let r = traffic_action(&fake, &Action::Prepare, &status).await;
        assert!(matches!(r, Some(Ok(Outcome::InProgress(m))) if m.contains("still in progress")));
        fake.fail_next("prepare", AwsError::NotFound { kind: "ECS service", name: "web".into(), scope: scope() });
        let r = traffic_action(&fake, &Action::Prepare, &status).await;
        assert!(matches!(r, Some(Ok(Outcome::Failed(m))) if m.contains("ECS service web not found")));
        fake.fail_next(
            "prepare",
            AwsError::Throttled { service: "ecs", operation: "CreateTaskSet", message: "slow down".into() },
        );
        let r = traffic_action(&fake, &Action::Prepare, &status).await;
        assert!(matches!(r, Some(Err(e)) if e.class() == ErrorClass::RetryLater));
        let r = traffic_action(&fake, &Action::ShiftTraffic { step: 0, weight: 10 }, &status).await;
        assert!(matches!(r, Some(Ok(Outcome::Failed(m))) if m.contains("status.deployed")));
        assert!(
            traffic_action(&fake, &Action::RunHook(kiln_core::plan::HookPoint::PreTraffic), &status).await.is_none()
        );
    }
}
