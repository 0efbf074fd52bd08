//! Reconcile errors and how each is retried.

use std::time::Duration;

use kiln_aws::{AwsError, ErrorClass};

/// Why a reconcile did not finish. "Still waiting" is never an error (that is a requeue).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed or refused (conflicts are retried at once).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// AWS failed transiently (throttling, 5xx, timeouts); the action is retried.
    #[error("AWS: {0}")]
    Aws(#[source] AwsError),
    /// A namespaced object without a namespace (never from a real apiserver).
    #[error("object has no namespace")]
    NoNamespace,
    /// This replica no longer holds the Lease: it writes nothing more (the process exits and
    /// restarts as a standby; the new leader carries on from status).
    #[error("not the leader: the Lease was lost")]
    NotLeader,
}

impl Error {
    /// An AWS error as a reconcile error: a write the fence refused means this replica lost the
    /// Lease ([`Error::NotLeader`]), whatever call it happened in.
    pub fn from_aws(e: AwsError) -> Error {
        if e.is_fenced() { Error::NotLeader } else { Error::Aws(e) }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "kube_api",
            Error::Kube(_) => "kube_client",
            Error::Aws(e) => e.metric_label(),
            Error::NoNamespace => "no_namespace",
            Error::NotLeader => "not_leader",
        }
    }

    /// How soon to try again.
    pub fn retry_after(&self) -> Duration {
        match self {
            // Someone else wrote first: decide again on the newer object.
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_millis(200),
            Error::Kube(_) => Duration::from_secs(2),
            Error::Aws(e) if e.is_throttled() => Duration::from_secs(15),
            Error::Aws(e) if e.class() == ErrorClass::RetryLater => Duration::from_secs(3),
            Error::Aws(_) => Duration::from_secs(5),
            Error::NoNamespace => Duration::from_secs(300),
            // Only reached if the process outlives its Lease; the new leader does the work.
            Error::NotLeader => Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_aws_write_is_a_lost_lease() {
        let fenced = AwsError::Fenced { service: "lambda", operation: "UpdateAlias" };
        assert!(matches!(Error::from_aws(fenced), Error::NotLeader));
        let other = AwsError::Transient { service: "lambda", operation: "UpdateAlias", message: "503".into() };
        assert!(matches!(Error::from_aws(other), Error::Aws(_)));
    }
}
