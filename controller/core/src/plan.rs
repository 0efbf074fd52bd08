//! The deployment plan of a Promotion: traffic steps, bakes and hooks, resolved from the Release,
//! the Environment and the strategy defaults.

use jiff::SignedDuration;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::release::{EcsStrategy, LambdaStrategy, ReleaseSpec};

use crate::SpecError;
use crate::duration;

/// How long an intermediate step bakes when the Release does not say.
pub const DEFAULT_STEP_BAKE: SignedDuration = SignedDuration::from_mins(5);

/// Where a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// Before the first traffic change.
    PreTraffic,
    /// After all traffic moved, before the bake.
    PostTraffic,
}

impl HookPoint {
    /// The name recorded in `status.hooksPassed`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::PreTraffic => "preTraffic",
            HookPoint::PostTraffic => "postTraffic",
        }
    }
}

/// The resolved plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Traffic percentages on the new version, strictly increasing, ending at 100.
    pub steps: Vec<i32>,
    /// Bake between intermediate steps.
    pub step_bake: SignedDuration,
    /// Hooks to run, in order.
    pub hooks: Vec<HookPoint>,
    /// Bake at full traffic.
    pub bake: SignedDuration,
    /// A human summary, e.g. "blueGreen 10% → 100%".
    pub summary: String,
}

fn default_steps_ecs(s: EcsStrategy) -> Vec<i32> {
    match s {
        EcsStrategy::Canary => vec![10, 100],
        EcsStrategy::Linear => vec![25, 50, 75, 100],
        EcsStrategy::BlueGreen | EcsStrategy::Rolling | EcsStrategy::CodeDeploy => vec![100],
    }
}

fn default_steps_lambda(s: LambdaStrategy) -> Vec<i32> {
    match s {
        LambdaStrategy::Canary => vec![10, 100],
        LambdaStrategy::Linear => vec![25, 50, 75, 100],
        LambdaStrategy::AllAtOnce => vec![100],
    }
}

/// Checks steps are strictly increasing percentages in 1..=100 ending at 100.
pub fn check_steps(field: &str, steps: &[i32]) -> Result<(), SpecError> {
    let increasing = steps.windows(2).all(|w| w[0] < w[1]);
    let in_range = steps.iter().all(|s| (1..=100).contains(s));
    if steps.is_empty() || !increasing || !in_range || steps.last() != Some(&100) {
        return Err(SpecError::BadSteps { field: field.to_string(), steps: steps.to_vec() });
    }
    Ok(())
}

/// Resolves the plan. A rollback Promotion takes the fast path: all traffic at once, no hooks,
/// no bake wait.
pub fn resolve(release: &ReleaseSpec, env: &EnvironmentSpec, rollback: bool) -> Result<Plan, SpecError> {
    let (strategy, steps, step_bake, hooks) = match (&release.target.ecs, &release.target.lambda) {
        (Some(ecs), _) => {
            let strategy = format!("{:?}", ecs.strategy);
            let steps = ecs.steps.clone().unwrap_or_else(|| default_steps_ecs(ecs.strategy));
            check_steps("spec.target.ecs.steps", &steps)?;
            (strategy, steps, ecs.step_bake.as_deref(), ecs.hooks.as_ref())
        }
        (None, Some(l)) => {
            let strategy = format!("{:?}", l.strategy);
            let steps = l.steps.clone().unwrap_or_else(|| default_steps_lambda(l.strategy));
            check_steps("spec.target.lambda.steps", &steps)?;
            (strategy, steps, l.step_bake.as_deref(), l.hooks.as_ref())
        }
        (None, None) => {
            return Err(SpecError::Artifact {
                field: "spec.target".into(),
                message: "set target.ecs or target.lambda".into(),
            });
        }
    };
    let step_bake = match step_bake {
        Some(d) => duration::parse("spec.target.stepBake", d)?,
        None => DEFAULT_STEP_BAKE,
    };
    let bake = duration::parse_or_zero("spec.bake.duration", &env.bake.duration)?;
    let strategy = lower_first(&strategy);
    if rollback {
        return Ok(Plan {
            steps: vec![100],
            step_bake: SignedDuration::ZERO,
            hooks: Vec::new(),
            bake: SignedDuration::ZERO,
            summary: format!("rollback: {strategy} 100% at once, no bake wait"),
        });
    }
    let mut hook_points = Vec::new();
    if hooks.is_some_and(|h| h.pre_traffic.is_some()) {
        hook_points.push(HookPoint::PreTraffic);
    }
    if hooks.is_some_and(|h| h.post_traffic.is_some()) {
        hook_points.push(HookPoint::PostTraffic);
    }
    let arrows: Vec<String> = steps.iter().map(|s| format!("{s}%")).collect();
    Ok(Plan {
        summary: format!("{strategy} {}, bake {}", arrows.join(" → "), env.bake.duration),
        steps,
        step_bake,
        hooks: hook_points,
        bake,
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_increase_and_end_at_100() {
        assert!(check_steps("s", &[10, 100]).is_ok());
        assert!(check_steps("s", &[100]).is_ok());
        for bad in [&[][..], &[10, 10, 100], &[50, 10, 100], &[10, 50], &[0, 100], &[10, 101]] {
            assert!(check_steps("s", bad).is_err(), "{bad:?}");
        }
    }
}
