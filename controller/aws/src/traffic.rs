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
    /// What the target serves now, read only: kiln's mark on it and whether it already runs this
    /// Release's artifacts (read before a forward Promotion deploys: [`kiln_core::running`]).
    async fn running(&self) -> Result<kiln_core::running::RunningState>;
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

/// Refuses an image that is not pinned by digest (`repo@sha256:<64 hex>`): kiln deploys exactly
/// the artifact the Release names, never a tag that can move. The Release types validate this
/// too; the adapters check again (defense in depth).
pub(crate) fn require_digest(image: &str, scope: &crate::error::Scope) -> crate::error::Result<()> {
    let pinned = image.split_once("@sha256:").is_some_and(|(repo, hex)| {
        !repo.is_empty() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if pinned {
        Ok(())
    } else {
        Err(crate::error::AwsError::Invalid {
            message: format!("image {image} is not pinned by digest (expected repo@sha256:<64 lowercase hex>)"),
            scope: scope.clone(),
        })
    }
}

/// Now, as a status time.
pub(crate) fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    kiln_core::time::to_time(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digest_pinned_images_pass() {
        let scope = crate::error::Scope { account_id: "111111111111".into(), region: "us-east-1".into() };
        let hex = "0123456789abcdef".repeat(4);
        assert!(require_digest(&format!("r.example/app@sha256:{hex}"), &scope).is_ok());
        for bad in [
            "r.example/app:latest".to_string(),
            format!("r.example/app:v1@sha256:{}", &hex[..63]),
            format!("r.example/app@sha256:{}", hex.to_uppercase()),
            format!("@sha256:{hex}"),
            format!("r.example/app@sha256:{hex}0"),
            format!("r.example/app@sha512:{hex}"),
        ] {
            let err = require_digest(&bad, &scope).unwrap_err();
            assert_eq!(err.class(), crate::ErrorClass::SpecWrong, "{bad}");
        }
    }
}
