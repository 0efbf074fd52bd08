//! The port through which kiln moves traffic, whatever the strategy.

use async_trait::async_trait;
use kiln_api::promotion::{DeployedResources, Snapshot};

use crate::error::Result;

/// The tag (and ECS `externalId`) that marks what kiln created for a Promotion, so a repeat after
/// a crash finds it instead of creating a duplicate.
pub const PROMOTION_UID_TAG: &str = "kiln.dev/promotion-uid";

/// One deployment target under one strategy: ECS blue/green by target-group weights, ECS
/// rolling, a Lambda alias. Each method is idempotent: repeating it leaves the same state.
#[async_trait]
pub trait TrafficTarget: Send + Sync {
    /// The exact state a rollback returns to. Taken before anything changes.
    async fn snapshot(&self) -> Result<Snapshot>;
    /// Creates the new version without traffic (task definition and green task set at weight 0,
    /// or a published Lambda version checked against the artifact's hash).
    async fn prepare(&self) -> Result<DeployedResources>;
    /// Sends `weight` percent of traffic to the new version.
    async fn shift(&self, deployed: &DeployedResources, weight: i32) -> Result<()>;
    /// Makes the new version primary and retires the old one.
    async fn finalize(&self, deployed: &DeployedResources) -> Result<()>;
    /// Returns AWS to `snapshot` and removes what this Promotion created. Needs nothing but the
    /// snapshot (and the Promotion UID the target was built with).
    async fn restore(&self, snapshot: &Snapshot) -> Result<()>;
}

/// Now, as a status time.
pub(crate) fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    kiln_core::time::to_time(jiff::Timestamp::now())
}
