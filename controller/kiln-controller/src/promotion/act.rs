//! The act step: one idempotent action in AWS through kiln-aws's [`kiln_aws::cloud::Cloud`],
//! as the identity the action needs (a restore acts where the snapshot was taken). Transient
//! failures come back as errors (retried with backoff, the status untouched); everything else
//! as an [`Outcome`] the core folds into status.

use kiln_api::Promotion;
use kiln_api::promotion::PromotionStatus;
use kiln_aws::AwsError;
use kiln_aws::cloud::{TargetError, TargetOf};
use kiln_aws::credentials::EnvironmentAws;
use kiln_aws::execute::{outcome_of, traffic_action};
use kiln_aws::hooks::{HookRun, HookState, HookTarget};
use kiln_core::machine::{Action, Observations, Outcome};
use kiln_core::plan::HookPoint;
use kube::ResourceExt;

use crate::context::Context;
use crate::error::Error;

/// Executes one action; transient AWS failures come back as errors (retried with backoff, the
/// status untouched), everything else as an outcome for the decision core.
pub(super) async fn act(
    ctx: &Context,
    p: &Promotion,
    observed: &Observations,
    status: &PromotionStatus,
    action: &Action,
) -> Result<Outcome, Error> {
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let name = p.name_any();
    let ns = p.metadata.namespace.as_deref().unwrap_or_default();
    let current = observed.environment.as_ref().map(|e| EnvironmentAws::for_namespace(&p.spec.environment, e, ns));
    let env_aws = match (&current, &status.previous) {
        // A restore acts where the snapshot was taken, even if the Environment changed or is gone.
        (_, Some(s)) if *action == Action::Restore => match EnvironmentAws::for_restore(s, current.as_ref()) {
            Ok(aws) => aws,
            Err(m) => return Ok(Outcome::Failed(m)),
        },
        (Some(e), _) => e.clone(),
        (None, _) => return Ok(Outcome::Failed(format!("Environment {} not found", p.spec.environment))),
    };
    tracing::info!(action = action.metric_label(), account = %env_aws.account_id, "acting");

    if *action == Action::ArchiveEvidence {
        let Some(bucket) = status.evidence_archive.as_ref().map(|a| a.bucket.clone()) else {
            return Ok(Outcome::Done);
        };
        let store = match ctx.cloud.evidence(&env_aws, &name, &uid, &bucket).await {
            Ok(s) => s,
            Err(e) => return classify(e),
        };
        return kiln_aws::evidence::archive(store.as_ref(), status).await.map_err(Error::from_aws);
    }
    if let Action::RunHook(point) = action {
        return run_hook(ctx, p, observed, status, &env_aws, &uid, *point).await;
    }

    let target = match (&observed.release, &status.previous) {
        (Some(r), _) => TargetOf::Release {
            release: r,
            environment: &p.spec.environment,
            attempt: status.observed_retry,
            // The Release this Promotion pinned when its gates passed.
            release_uid: status.release.as_ref().or(observed.release_identity.as_ref()).map(|id| id.uid.as_str()),
        },
        (None, Some(s)) if *action == Action::Restore => TargetOf::RestoreOnly(s),
        (None, _) => return Ok(Outcome::Failed(format!("Release {} not found", p.spec.release))),
    };
    let target = match ctx.cloud.traffic(&env_aws, &name, &uid, target).await {
        Ok(t) => t,
        Err(TargetError::Spec(m)) => return Ok(Outcome::Failed(m)),
        Err(TargetError::Aws(e)) => return classify(e),
    };
    match traffic_action(target.as_ref(), action, status).await {
        Some(Ok(outcome)) => Ok(outcome),
        Some(Err(e)) => Err(Error::from_aws(e)),
        None => Ok(Outcome::Failed("no traffic action for a hook".into())),
    }
}

/// An AWS error as an outcome for the core, or a retry.
fn classify(e: AwsError) -> Result<Outcome, Error> {
    outcome_of(e).map_err(Error::from_aws)
}

async fn run_hook(
    ctx: &Context,
    p: &Promotion,
    observed: &Observations,
    status: &PromotionStatus,
    env_aws: &EnvironmentAws,
    uid: &str,
    point: HookPoint,
) -> Result<Outcome, Error> {
    let Some(release) = &observed.release else {
        return Ok(Outcome::Failed(format!("Release {} not found", p.spec.release)));
    };
    let (target, timeout) = match HookTarget::for_release(release, &p.spec.environment, point) {
        Ok(Some(hook)) => hook,
        Ok(None) => return Ok(Outcome::Done),
        Err(m) => return Ok(Outcome::Failed(m)),
    };
    let runner = match ctx.cloud.hooks(env_aws, &p.name_any(), uid).await {
        Ok(r) => r,
        Err(e) => return classify(e),
    };
    // `start` finds the run this Promotion already started, so asking again after a restart
    // follows the same run; a retry (a new attempt) runs the hook again.
    let run = HookRun { uid, point, attempt: status.observed_retry, timeout };
    match runner.start(&run, &target).await {
        Ok(HookState::Succeeded) => Ok(Outcome::Done),
        Ok(HookState::Failed(why)) => Ok(Outcome::Failed(why)),
        Ok(HookState::Running(handle)) => match runner.poll(&run, &target, &handle).await {
            Ok(HookState::Succeeded) => Ok(Outcome::Done),
            Ok(HookState::Failed(why)) => Ok(Outcome::Failed(why)),
            Ok(HookState::Running(_)) => Ok(Outcome::InProgress(format!("{} hook running ({handle})", point.as_str()))),
            Err(e) => classify(e),
        },
        Err(e) => classify(e),
    }
}
