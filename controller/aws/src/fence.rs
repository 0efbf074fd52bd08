//! Fencing inside an action: every AWS call that changes something asks, right before its bytes
//! go out (each attempt, SDK retries included), whether this process may still write.
//!
//! The controller checks its Lease before it starts an action, but one action is several SDK
//! calls (a restore moves weights, then the primary task set, then deletes a task set) and each
//! may be retried by the SDK for seconds. A replica that lost its Lease in between must not send
//! the rest: the new leader may already have acted. The [`WriteFence`] is the controller's
//! clock-based leadership check; clients built with one ([`crate::credentials::Clients::fenced`])
//! refuse a write once it says no, before anything is sent, with [`crate::AwsError::Fenced`].
//! Reads (`Get*`, `Describe*`, `List*`, `BatchGet*`, `Head*`) always pass: observing is harmless.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Whether this process may write to AWS now (for the controller: it holds the Lease by its clock).
#[derive(Clone)]
pub struct WriteFence(Arc<dyn Fn() -> bool + Send + Sync>);

impl WriteFence {
    /// A fence that asks `may_write` before every write.
    pub fn new(may_write: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        WriteFence(Arc::new(may_write))
    }

    /// Whether a write may go out now.
    pub fn may_write(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for WriteFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFence").field("may_write", &self.may_write()).finish()
    }
}

/// A write refused by the fence (found in an SDK error's sources by [`crate::error`]).
#[derive(Debug, thiserror::Error)]
#[error("{service}:{operation} not sent: this replica no longer holds the leader Lease")]
pub struct Fenced {
    /// The service, as the SDK names it.
    pub service: String,
    /// The operation.
    pub operation: String,
}

/// Whether `operation` only reads.
pub fn is_read(operation: &str) -> bool {
    ["Get", "Describe", "List", "BatchGet", "Head"].iter().any(|p| operation.starts_with(p))
}

/// The interceptor the fenced clients carry.
#[derive(Debug, Clone)]
pub(crate) struct FenceInterceptor(pub WriteFence);

impl Intercept for FenceInterceptor {
    fn name(&self) -> &'static str {
        "kiln-write-fence"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        if is_read(meta.name()) || self.0.may_write() {
            return Ok(());
        }
        Err(Box::new(Fenced { service: meta.service().to_owned(), operation: meta.name().to_owned() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_told_from_writes() {
        for read in ["GetAlias", "DescribeAlarms", "ListVersionsByFunction", "DescribeTaskSets", "HeadObject"] {
            assert!(is_read(read), "{read}");
        }
        for write in [
            "UpdateAlias",
            "UpdateFunctionCode",
            "PublishVersion",
            "ModifyListener",
            "ModifyRule",
            "CreateTaskSet",
            "UpdateServicePrimaryTaskSet",
            "DeleteTaskSet",
            "UpdateService",
            "RegisterTaskDefinition",
            "TagResource",
            "RunTask",
            "Invoke",
            "PutObject",
            "CreateDeployment",
            "StopDeployment",
        ] {
            assert!(!is_read(write), "{write}");
        }
    }
}
