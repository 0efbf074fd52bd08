//! Which Promotion `approve`, `abort` and `retry` act on: the one named by `--promotion`, else
//! the one the Release's status names for the environment, else the release's newest forward
//! Promotion into it (GitOps may have named it anything).

use kiln_api::Release;

use crate::cli::Target;
use crate::cluster::Cluster;
use crate::error::CliError;
use crate::report;

/// The Promotion's name, checked to exist and to carry this release into this environment.
pub async fn promotion_name(cluster: &Cluster, release: &Release, target: &Target) -> Result<String, CliError> {
    let release_name = &target.release;
    if !release.spec.environments.iter().any(|e| e == &target.env) {
        return Err(CliError::NotFound(format!(
            "release {release_name} does not go through environment {} (its environments: {})",
            target.env,
            release.spec.environments.join(", ")
        )));
    }
    let promotions = cluster.list_promotions().await?;
    if let Some(name) = &target.promotion {
        let p = promotions.iter().find(|p| p.metadata.name.as_deref() == Some(name)).ok_or_else(|| {
            CliError::NotFound(format!("promotion {name} not found in namespace {}", cluster.namespace))
        })?;
        if p.spec.release != *release_name || p.spec.environment != target.env {
            return Err(CliError::Refused(format!(
                "promotion {name} carries release {} into {}, not {release_name} into {}",
                p.spec.release, p.spec.environment, target.env
            )));
        }
        return Ok(name.clone());
    }
    let named = release
        .status
        .as_ref()
        .and_then(|s| s.environments.iter().find(|e| e.name == target.env))
        .and_then(|e| e.promotion.clone())
        .filter(|n| promotions.iter().any(|p| p.metadata.name.as_deref() == Some(n.as_str())));
    if let Some(n) = named {
        return Ok(n);
    }
    match report::forward_promotion(&promotions, release, &target.env) {
        Some(p) => Ok(p.metadata.name.clone().unwrap_or_default()),
        None => Err(CliError::NotFound(format!(
            "release {release_name} has no Promotion into {env} yet; create it with: kubectl kiln promote {release_name} --env {env}",
            env = target.env
        ))),
    }
}
