//! Typed validation errors for what a schema cannot decide.

use thiserror::Error;

/// A problem in user input that only kiln can detect (it needs other objects, the time-zone
/// database or graph analysis). Each message says what is wrong and how to fix it; the controller
/// reports it as a `Stalled` condition with reason [`SpecError::reason`] and waits for a change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// A time zone name that is not in the IANA database.
    #[error("time zone {name:?} is not a known IANA time zone; use a name such as America/New_York or UTC")]
    UnknownTimeZone {
        /// The name as written.
        name: String,
    },
    /// A reference to an Environment that does not exist.
    #[error("{field}: environment {name:?} does not exist; create the Environment or fix the name (known: {known})")]
    UnknownEnvironment {
        /// Where the reference is.
        field: String,
        /// The missing environment.
        name: String,
        /// Environments that do exist, comma separated.
        known: String,
    },
    /// The upstream graph of Environments has a cycle.
    #[error("environment upstreams form a cycle: {path}; remove one of these upstream links")]
    UpstreamCycle {
        /// The cycle, e.g. "stg -> prod -> stg".
        path: String,
    },
    /// A Release lists an environment before one of its upstreams, or leaves an upstream out.
    #[error("environments: {environment} requires upstream {upstream}, which must come before it in spec.environments")]
    UpstreamOrder {
        /// The environment.
        environment: String,
        /// Its upstream that is missing or late.
        upstream: String,
    },
    /// A duration that cannot be parsed (the schema normally catches this).
    #[error("{field}: {value:?} is not a duration; use Go form such as 30s, 5m or 1h30m")]
    BadDuration {
        /// Where it is.
        field: String,
        /// The value as written.
        value: String,
    },
    /// A duration longer than the field accepts (the schema normally catches this).
    #[error("{field}: {value:?} is too long; use at most {max}")]
    DurationTooLong {
        /// Where it is.
        field: String,
        /// The value as written.
        value: String,
        /// The longest allowed (720h for waits, 2160h for SLO periods and windows).
        max: &'static str,
    },
    /// A wall-clock time that cannot be parsed.
    #[error("{field}: {value:?} is not a time of day; use HH:MM such as 17:00")]
    BadTimeOfDay {
        /// Where it is.
        field: String,
        /// The value as written.
        value: String,
    },
    /// Traffic steps that are not strictly increasing percentages ending at 100.
    #[error("{field}: {steps:?} must be strictly increasing percentages between 1 and 100 ending at 100")]
    BadSteps {
        /// Where they are.
        field: String,
        /// The steps as written.
        steps: Vec<i32>,
    },
    /// A reference to an artifact the Release does not have, or an ambiguous default.
    #[error("{field}: {message}")]
    Artifact {
        /// Where the problem is.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An environment override for an environment the Release does not go through.
    #[error("{field}: {environment:?} is not in spec.environments; remove the override or add the environment")]
    StrayOverride {
        /// Where it is.
        field: String,
        /// The environment named.
        environment: String,
    },
    /// A Promotion whose Release or Environment does not fit.
    #[error("{0}")]
    Promotion(String),
    /// An absolute freeze span whose end is not after its start.
    #[error("{field}: end {end} is not after start {start}")]
    EmptySpan {
        /// Where it is.
        field: String,
        /// Start as written.
        start: String,
        /// End as written.
        end: String,
    },
    /// A RollbackPolicy that cannot be evaluated.
    #[error("{field}: {message}")]
    Policy {
        /// Where the problem is.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl SpecError {
    /// The condition reason for this error (always `InvalidSpec`, kept as a method so callers
    /// never format the error into a label).
    pub fn reason(&self) -> &'static str {
        "InvalidSpec"
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SpecError::UnknownTimeZone { .. } => "unknown_time_zone",
            SpecError::UnknownEnvironment { .. } => "unknown_environment",
            SpecError::UpstreamCycle { .. } => "upstream_cycle",
            SpecError::UpstreamOrder { .. } => "upstream_order",
            SpecError::BadDuration { .. } | SpecError::DurationTooLong { .. } => "bad_duration",
            SpecError::BadTimeOfDay { .. } => "bad_time_of_day",
            SpecError::BadSteps { .. } => "bad_steps",
            SpecError::Artifact { .. } => "artifact",
            SpecError::StrayOverride { .. } => "stray_override",
            SpecError::Promotion(_) => "promotion",
            SpecError::EmptySpan { .. } => "empty_span",
            SpecError::Policy { .. } => "policy",
        }
    }
}
