//! One error type for every adapter, classified for the controller's `error_policy`.

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::error::SdkError;

/// Where an AWS resource lives: named in every "not found" message so the user knows which
/// environment's account to look in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The 12-digit account ID.
    pub account_id: String,
    /// The region.
    pub region: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account {} region {}", self.account_id, self.region)
    }
}

/// What the controller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not a failure: something is still in progress in AWS; look again soon.
    Wait,
    /// Transient (throttling, 5xx, timeouts, connection errors): retry later with backoff.
    RetryLater,
    /// The spec (or the account) is wrong: a missing resource, a refused permission, a hash that
    /// does not match. Retrying will not help; wait for a change and say what to fix.
    SpecWrong,
}

/// An AWS adapter error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    /// A resource the spec names does not exist.
    #[error("{kind} {name} not found in {scope}")]
    NotFound {
        /// What kind of resource (e.g. "target group").
        kind: &'static str,
        /// How it was named in the spec.
        name: String,
        /// Where kiln looked.
        scope: Scope,
    },
    /// The spec is inconsistent with what exists (e.g. the container is not in the task
    /// definition, several target groups match the tags).
    #[error("{message} (in {scope})")]
    Invalid {
        /// What is wrong and how to fix it.
        message: String,
        /// Where.
        scope: Scope,
    },
    /// The published artifact's hash is not the one the Release pins.
    #[error("{what}: expected CodeSha256 {expected}, AWS reports {actual} (in {scope})")]
    HashMismatch {
        /// The function and version.
        what: String,
        /// The hash the Release pins.
        expected: String,
        /// The hash AWS reported.
        actual: String,
        /// Where.
        scope: Scope,
    },
    /// Something is still in progress in AWS (a function update, a deployment).
    #[error("{what} is still in progress (in {scope})")]
    InProgress {
        /// What is in progress.
        what: String,
        /// Where.
        scope: Scope,
    },
    /// An account quota is reached (`LimitExceededException`): retrying will not help until the
    /// quota is raised or resources are freed.
    #[error("{service}:{operation}: an account quota is reached ({message}); raise the quota or free resources")]
    Quota {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// AWS's message.
        message: String,
    },
    /// The resource is busy with another change (Lambda `ResourceConflictException`, ECS
    /// `UpdateInProgressException`, CodeDeploy `DeploymentLimitExceededException`) or changed since
    /// kiln read it (Lambda `PreconditionFailedException` on a conditional update): wait for it
    /// and look again.
    #[error("{service}:{operation}: busy ({code}): {message}")]
    Busy {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// The AWS error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// AWS refused the call (credentials, role trust, external ID, permissions).
    #[error("{service}:{operation} denied: {message}")]
    AccessDenied {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// AWS's message.
        message: String,
    },
    /// Throttled after the SDK's own retries.
    #[error("{service}:{operation} throttled: {message}")]
    Throttled {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// AWS's message.
        message: String,
    },
    /// A timeout, connection failure or 5xx after the SDK's own retries.
    #[error("{service}:{operation} failed transiently: {message}")]
    Transient {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// What happened.
        message: String,
    },
    /// Any other error AWS returned (a 4xx kiln does not expect).
    #[error("{service}:{operation} failed: {code}: {message}")]
    Api {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// The AWS error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// A write not sent: this replica lost the leader Lease ([`crate::fence`]). Retried later in
    /// name only; the controller stops writing altogether.
    #[error("{service}:{operation} not sent: this replica no longer holds the leader Lease")]
    Fenced {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
    },
    /// AWS answered without a field kiln needs.
    #[error("{service}:{operation}: response lacks {field}")]
    Incomplete {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

impl AwsError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            AwsError::NotFound { .. } => "not_found",
            AwsError::Invalid { .. } => "invalid",
            AwsError::HashMismatch { .. } => "hash_mismatch",
            AwsError::InProgress { .. } => "in_progress",
            AwsError::Quota { .. } => "quota",
            AwsError::Busy { .. } => "busy",
            AwsError::AccessDenied { .. } => "access_denied",
            AwsError::Throttled { .. } => "throttled",
            AwsError::Transient { .. } => "transient",
            AwsError::Api { .. } => "api",
            AwsError::Incomplete { .. } => "incomplete",
            AwsError::Fenced { .. } => "fenced",
        }
    }

    /// AWS throttled the call (after the SDK's own retries): retry later than other transient
    /// failures.
    pub fn is_throttled(&self) -> bool {
        matches!(self, AwsError::Throttled { .. })
    }

    /// What the controller should do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            AwsError::InProgress { .. } | AwsError::Busy { .. } => ErrorClass::Wait,
            // Fenced: never an outcome recorded on the Promotion (the new leader carries on).
            AwsError::Throttled { .. }
            | AwsError::Transient { .. }
            | AwsError::Incomplete { .. }
            | AwsError::Fenced { .. } => ErrorClass::RetryLater,
            AwsError::NotFound { .. }
            | AwsError::Invalid { .. }
            | AwsError::HashMismatch { .. }
            | AwsError::AccessDenied { .. }
            | AwsError::Quota { .. }
            | AwsError::Api { .. } => ErrorClass::SpecWrong,
        }
    }

    /// The write fence refused the call: this replica lost the Lease.
    pub fn is_fenced(&self) -> bool {
        matches!(self, AwsError::Fenced { .. })
    }

    /// The AWS error code, if AWS returned one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } | AwsError::Busy { code, .. } => Some(code),
            AwsError::Quota { .. } => Some("LimitExceededException"),
            _ => None,
        }
    }
}

/// The result type of the adapters.
pub type Result<T, E = AwsError> = std::result::Result<T, E>;

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "ProvisionedThroughputExceededException",
];

/// The resource is busy with another change, or changed since kiln read it (a conditional write's
/// `PreconditionFailedException`): wait, then observe again and decide anew.
const BUSY: &[&str] = &[
    "ResourceConflictException",
    "UpdateInProgressException",
    "DeploymentLimitExceededException",
    "PreconditionFailedException",
];

/// Expired credentials: transient, the credentials provider refreshes them.
const EXPIRED: &[&str] = &["ExpiredToken", "ExpiredTokenException", "RequestExpired"];

/// Converts an SDK error into an [`AwsError`], classifying it by AWS error code and HTTP status.
pub(crate) fn from_sdk<E>(service: &'static str, operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if refused_by_fence(&err) {
        return AwsError::Fenced { service, operation };
    }
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = match e.message() {
                Some(m) => m.to_string(),
                // Say so instead of an empty message; the answer itself is never quoted.
                None => format!("AWS's answer (HTTP {status}) could not be read"),
            };
            classify(service, operation, status, code, message)
        }
        SdkError::TimeoutError(_) => AwsError::Transient { service, operation, message: "timed out".into() },
        // Only the errors' own text: a raw response (its Debug form holds the body, e.g. an STS
        // answer with credentials) never reaches a message, hence logs, Events or status.
        SdkError::DispatchFailure(e) => {
            let message = match e.as_connector_error() {
                Some(c) => format!("dispatch: {}", aws_sdk_sts::error::DisplayErrorContext(c)),
                None => "dispatch failed".to_string(),
            };
            AwsError::Transient { service, operation, message }
        }
        // Not even the parser's complaint, which may quote the answer.
        SdkError::ResponseError(_) => AwsError::Transient {
            service,
            operation,
            message: "AWS's answer could not be read (not quoted: it may hold credentials)".into(),
        },
        other => {
            let message = format!("{}", aws_sdk_sts::error::DisplayErrorContext(&other));
            match other.raw_response().map(|r| r.status().as_u16()) {
                Some(s) if s >= 500 => AwsError::Transient { service, operation, message },
                _ => AwsError::Api { service, operation, code: "Construction".into(), message },
            }
        }
    }
}

/// Whether the write fence refused the call (its error is somewhere in the SDK error's sources).
fn refused_by_fence(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<crate::fence::Fenced>() {
            return true;
        }
        cause = e.source();
    }
    false
}

pub(crate) fn classify(
    service: &'static str,
    operation: &'static str,
    status: u16,
    code: String,
    message: String,
) -> AwsError {
    if THROTTLING.contains(&code.as_str()) || status == 429 {
        AwsError::Throttled { service, operation, message }
    } else if status >= 500 {
        AwsError::Transient { service, operation, message: format!("{code} (HTTP {status}): {message}") }
    } else if code == "LimitExceededException" {
        AwsError::Quota { service, operation, message }
    } else if BUSY.contains(&code.as_str()) {
        AwsError::Busy { service, operation, code, message }
    } else if EXPIRED.contains(&code.as_str()) {
        // Credentials expired in flight: the provider re-assumes the role on the next call.
        AwsError::Transient { service, operation, message: format!("{code}: {message}") }
    } else if code.contains("AccessDenied") || code == "UnrecognizedClientException" || code == "InvalidClientTokenId" {
        AwsError::AccessDenied { service, operation, message }
    } else {
        AwsError::Api { service, operation, code, message }
    }
}

/// `?` on an SDK call: `.await.map_err(sdk("ecs", "DescribeServices"))?`.
pub(crate) fn sdk<E>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| from_sdk(service, operation, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let t = classify("ecs", "DescribeServices", 400, "ThrottlingException".into(), "slow down".into());
        assert_eq!(t.class(), ErrorClass::RetryLater);
        assert_eq!(t.metric_label(), "throttled");
        assert!(t.is_throttled());
        let t = classify("ecs", "DescribeServices", 503, "ServiceUnavailable".into(), String::new());
        assert_eq!(t.class(), ErrorClass::RetryLater);
        let t = classify("sts", "AssumeRole", 403, "AccessDenied".into(), "no".into());
        assert_eq!(t.class(), ErrorClass::SpecWrong);
        for expired in ["ExpiredToken", "ExpiredTokenException"] {
            let t = classify("cloudwatch", "DescribeAlarms", 400, expired.into(), "expired".into());
            assert_eq!(t.class(), ErrorClass::RetryLater, "{expired}");
        }
        for (service, code) in [
            ("lambda", "ResourceConflictException"),
            ("ecs", "UpdateInProgressException"),
            ("codedeploy", "DeploymentLimitExceededException"),
            ("lambda", "PreconditionFailedException"),
        ] {
            let t = classify(service, "X", 409, code.into(), "busy".into());
            assert_eq!(t.class(), ErrorClass::Wait, "{code}");
            assert_eq!(t.metric_label(), "busy");
            assert_eq!(t.code(), Some(code));
        }
        let q = classify("ecs", "CreateTaskSet", 400, "LimitExceededException".into(), "too many".into());
        assert_eq!(q.class(), ErrorClass::SpecWrong, "a quota is not retried forever");
        assert_eq!(q.metric_label(), "quota");
        assert!(q.to_string().contains("raise the quota"), "{q}");
        let scope = Scope { account_id: "111111111111".into(), region: "us-east-1".into() };
        let e = AwsError::NotFound { kind: "target group", name: "web-green".into(), scope };
        assert_eq!(e.to_string(), "target group web-green not found in account 111111111111 region us-east-1");
        assert_eq!(e.class(), ErrorClass::SpecWrong);
    }
}
