//! Why a Promotion cannot go ahead as specified, typed: what the controller observed (an invalid
//! FreezeWindow, signals it cannot read) and what validation found, each with the message the
//! user reads in the `validation` gate and the `Stalled` condition.

use crate::SpecError;

/// One problem with a Promotion's inputs. It blocks a Promotion that has not changed anything
/// yet; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The Release, or how the Promotion fits it (`validate::release`, `validate::promotion`,
    /// the deployment plan).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The target Environment's own spec (`validate::environments`).
    #[error("Environment {environment}: {error}")]
    Environment {
        /// The Environment.
        environment: String,
        /// What is wrong with it.
        error: SpecError,
    },
    /// The RollbackPolicy the Environment names does not validate.
    #[error("RollbackPolicy {policy}: {error}")]
    Policy {
        /// The policy.
        policy: String,
        /// What is wrong with it.
        error: SpecError,
    },
    /// The Environment requires a RollbackPolicy that does not exist in the namespace (a
    /// forward Promotion would bake unguarded).
    #[error(
        "RollbackPolicy {policy} (required by Environment {environment}) not found in this namespace; create it so the bake is guarded"
    )]
    PolicyMissing {
        /// The policy the Environment names.
        policy: String,
        /// The Environment.
        environment: String,
    },
    /// A FreezeWindow that could cover this Promotion does not compile: it cannot be checked, so
    /// it blocks rather than being ignored.
    #[error("FreezeWindow {namespace}/{name} is invalid ({message}); fix it so freezes can be checked")]
    FreezeWindow {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why it does not compile.
        message: String,
    },
    /// AWS refused to read the policy's signals (a role that cannot be assumed, a missing or
    /// invalid alarm).
    #[error(
        "cannot read the signals of RollbackPolicy {policy} in {environment} (account {account}, role {role}): {message}; check the Environment's aws.roleArn, its trust policy and the alarms"
    )]
    SignalsUnreadable {
        /// The policy.
        policy: String,
        /// The environment read.
        environment: String,
        /// Its account.
        account: String,
        /// The role assumed.
        role: String,
        /// AWS's refusal.
        message: String,
    },
    /// The Environment's `spec.tenants` does not let the Promotion's namespace act on resources
    /// the Release names.
    #[error(
        "Environment {environment} does not let namespace {namespace} release onto {resources}; target your own team's resources, or ask the platform team to list them for this namespace in the Environment's spec.tenants"
    )]
    Tenancy {
        /// The Environment.
        environment: String,
        /// The Promotion's namespace.
        namespace: String,
        /// The resources refused, with their kind (`Lambda function arn:aws:lambda:…`).
        resources: String,
    },
    /// A rollback Promotion to a Release that never succeeded in the environment.
    #[error(
        "a rollback must return {environment} to a Release that succeeded there before, and {release} never did; promote it normally instead"
    )]
    RollbackNotKnownGood {
        /// The environment.
        environment: String,
        /// The Release.
        release: String,
    },
    /// kiln created this Promotion for a Release that has since been deleted; the Release of
    /// that name now is another one (other UID, possibly other artifacts), which nobody asked to
    /// promote with this Promotion's approvals.
    #[error(
        "this Promotion was created for Release {release} with UID {was}, which was deleted; the Release of that name now has UID {now}. Delete this Promotion; the new Release gets its own"
    )]
    ReleaseReplaced {
        /// The Release name.
        release: String,
        /// The UID the Promotion was created for.
        was: String,
        /// The UID of the Release of that name now.
        now: String,
    },
}

impl Problem {
    /// Whether it stops a rollback Promotion. A rollback needs only its Release (its artifact,
    /// known-good here, still the Release of that name), the environment and the namespace's
    /// right to the resources; nothing unrelated may hold it up: an invalid FreezeWindow
    /// elsewhere, the Environment graph (upstreams, cycles), the Release's other environments or
    /// steps, the RollbackPolicy or its signals.
    pub fn blocks_rollback(&self) -> bool {
        match self {
            Problem::Spec(e) => matches!(e, SpecError::Artifact { .. } | SpecError::Promotion(_)),
            Problem::Tenancy { .. } | Problem::RollbackNotKnownGood { .. } | Problem::ReleaseReplaced { .. } => true,
            Problem::Environment { .. }
            | Problem::Policy { .. }
            | Problem::PolicyMissing { .. }
            | Problem::FreezeWindow { .. }
            | Problem::SignalsUnreadable { .. } => false,
        }
    }
}

/// The problems as one message (`; ` between them), as the gate and conditions show them.
pub fn joined(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
