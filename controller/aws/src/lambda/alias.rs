//! A Lambda function behind an alias: reuse the published version that already runs the
//! Release's artifact (a rollback or a re-promotion: never rebuilt), else update the code (image
//! by digest, or an S3 zip pinned by CodeSha256), wait for the update, publish a version whose
//! hash kiln checks itself; then move the alias by weighted routing per step.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionCodeLocation, LastUpdateStatus, State};
use kiln_api::promotion::{DeployedResources, LambdaSnapshot, Snapshot};

use kiln_core::running::{ReleaseMark, Running, RunningState};

use crate::credentials::Clients;
use crate::error::{AwsError, Result, sdk};
use crate::traffic::{TrafficTarget, now_time, require_digest};

/// How many of the newest published versions `prepare` inspects, one GetFunction each, for a
/// version that already runs a Release's image. The cap keeps a function with thousands of
/// versions cheap (ListVersionsByFunction itself is paged 50 a call and read in full); a rollback
/// returns to a recent version, and an image that only older versions run is published again as
/// a new version, as for a new image. Zip artifacts need no cap: the listing carries CodeSha256.
pub const IMAGE_VERSIONS_INSPECTED: usize = 25;

/// A published version as ListVersionsByFunction lists it.
#[derive(Debug, Clone)]
struct Listed {
    /// The version number, for ordering.
    number: u64,
    /// The version as Lambda names it.
    version: String,
    /// Its CodeSha256.
    code_sha256: Option<String>,
}

/// The code to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LambdaCode {
    /// A container image pinned by digest (`repo@sha256:…`).
    Image {
        /// The image reference.
        uri: String,
    },
    /// A zip package in S3 pinned by its CodeSha256 (base64).
    Zip {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The object version, if the bucket is versioned.
        object_version: Option<String>,
        /// The expected CodeSha256.
        code_sha256: String,
    },
}

/// A function and its alias.
#[derive(Debug, Clone)]
pub struct LambdaAlias {
    clients: Clients,
    role_arn: Option<String>,
    uid: String,
    function: String,
    alias: String,
    code: LambdaCode,
    /// The Release's mark, written into the description of the version kiln publishes.
    mark: Option<ReleaseMark>,
    /// How long `prepare` waits for a code update before answering "still in progress".
    pub update_wait: Duration,
}

impl LambdaAlias {
    /// `function`'s `alias` in the account of `clients`, for the Promotion `uid`.
    pub fn new(
        clients: Clients,
        role_arn: Option<String>,
        uid: &str,
        function: &str,
        alias: &str,
        code: LambdaCode,
    ) -> Self {
        LambdaAlias {
            clients,
            role_arn,
            uid: uid.to_string(),
            function: function.to_string(),
            alias: alias.to_string(),
            code,
            mark: None,
            update_wait: Duration::from_secs(60),
        }
    }

    /// The same, publishing versions marked as the Release's ([`ReleaseMark::description`]).
    pub fn marked(mut self, mark: Option<ReleaseMark>) -> Self {
        self.mark = mark;
        self
    }

    fn not_found(&self, e: AwsError, kind: &'static str, name: String) -> AwsError {
        if e.code() == Some("ResourceNotFoundException") {
            AwsError::NotFound { kind, name, scope: self.clients.scope.clone() }
        } else {
            e
        }
    }

    async fn alias_state(&self) -> Result<(String, HashMap<String, f64>)> {
        alias_state(&self.clients, &self.function, &self.alias).await.map(|a| (a.version, a.routing))
    }

    async fn set_alias(&self, version: &str, routing: HashMap<String, f64>) -> Result<()> {
        set_alias(&self.clients, &self.function, &self.alias, version, routing).await
    }

    /// GetFunction of `qualifier` (a version; `None`: $LATEST).
    async fn get_function(
        &self,
        qualifier: Option<&str>,
    ) -> Result<aws_sdk_lambda::operation::get_function::GetFunctionOutput> {
        self.clients
            .lambda
            .get_function()
            .function_name(&self.function)
            .set_qualifier(qualifier.map(str::to_string))
            .send()
            .await
            .map_err(sdk("lambda", "GetFunction"))
    }

    /// Checks that `qualifier` (`None`: $LATEST) of the function runs the image `uri` exactly.
    async fn check_image(&self, qualifier: Option<&str>, uri: &str) -> Result<()> {
        let f = self.get_function(qualifier).await?;
        let what = format!(
            "Lambda function {} {}",
            self.function,
            qualifier.map_or("$LATEST".into(), |v| format!("version {v}"))
        );
        image_is(f.code(), uri, what, &self.clients.scope)
    }

    /// The function's published versions (ListVersionsByFunction, every page; `$LATEST`
    /// skipped), newest first.
    async fn published_versions(&self) -> Result<Vec<Listed>> {
        let mut versions = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .clients
                .lambda
                .list_versions_by_function()
                .function_name(&self.function)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(sdk("lambda", "ListVersionsByFunction"))?;
            for cfg in out.versions() {
                // `$LATEST` is no published version (published versions are numbers).
                let Some(version) = cfg.version() else { continue };
                let Ok(number) = version.parse::<u64>() else { continue };
                versions.push(Listed {
                    number,
                    version: version.to_string(),
                    code_sha256: cfg.code_sha256().map(str::to_string),
                });
            }
            match out.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        versions.sort_by_key(|l| std::cmp::Reverse(l.number));
        Ok(versions)
    }

    /// The newest published version that already runs the Release's artifact, if any: for a
    /// zip, the Release's CodeSha256 (as listed, and again on the version itself); for an image,
    /// `Code.ImageUri` (or `ResolvedImageUri`) of the version equal to the pinned reference,
    /// among the [`IMAGE_VERSIONS_INSPECTED`] newest. A version in state `Failed` cannot serve
    /// and is passed over (ListVersionsByFunction does not report the state: it is read on the
    /// version).
    async fn existing_version(&self) -> Result<Option<String>> {
        let versions = self.published_versions().await?;
        match &self.code {
            LambdaCode::Zip { code_sha256, .. } => {
                for listed in versions.iter().filter(|l| l.code_sha256.as_deref() == Some(code_sha256.as_str())) {
                    let cfg = self
                        .clients
                        .lambda
                        .get_function_configuration()
                        .function_name(&self.function)
                        .qualifier(&listed.version)
                        .send()
                        .await
                        .map_err(sdk("lambda", "GetFunctionConfiguration"))?;
                    if cfg.code_sha256() == Some(code_sha256.as_str()) && cfg.state() != Some(&State::Failed) {
                        return Ok(Some(listed.version.clone()));
                    }
                }
                Ok(None)
            }
            LambdaCode::Image { uri } => {
                // One GetFunction per version: only the newest IMAGE_VERSIONS_INSPECTED (see there).
                for listed in versions.iter().take(IMAGE_VERSIONS_INSPECTED) {
                    let f = self.get_function(Some(&listed.version)).await?;
                    let failed = f.configuration().and_then(|c| c.state()) == Some(&State::Failed);
                    if runs_image(f.code(), uri) && !failed {
                        return Ok(Some(listed.version.clone()));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Waits until the function's last update is done; returns its $LATEST CodeSha256.
    async fn wait_updated(&self) -> Result<String> {
        let deadline = tokio::time::Instant::now() + self.update_wait;
        let mut delay = Duration::from_millis(250);
        loop {
            let cfg = self
                .clients
                .lambda
                .get_function_configuration()
                .function_name(&self.function)
                .send()
                .await
                .map_err(sdk("lambda", "GetFunctionConfiguration"))?;
            match cfg.last_update_status() {
                Some(LastUpdateStatus::Failed) => {
                    return Err(AwsError::Invalid {
                        message: format!(
                            "updating the code of Lambda function {} failed: {}",
                            self.function,
                            cfg.last_update_status_reason().unwrap_or("no reason given")
                        ),
                        scope: self.clients.scope.clone(),
                    });
                }
                Some(LastUpdateStatus::InProgress) => {}
                _ => return Ok(cfg.code_sha256().unwrap_or_default().to_string()),
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(AwsError::InProgress {
                    what: format!("the code update of Lambda function {}", self.function),
                    scope: self.clients.scope.clone(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Whether the code location runs exactly `uri` (its `ImageUri` or `ResolvedImageUri` is the
/// pinned reference).
fn runs_image(code: Option<&FunctionCodeLocation>, uri: &str) -> bool {
    code.and_then(|c| c.image_uri()) == Some(uri) || code.and_then(|c| c.resolved_image_uri()) == Some(uri)
}

/// The code location runs exactly `uri` ([`runs_image`]), else `Invalid` naming both images.
fn image_is(code: Option<&FunctionCodeLocation>, uri: &str, what: String, scope: &crate::error::Scope) -> Result<()> {
    if runs_image(code, uri) {
        return Ok(());
    }
    let image = code.and_then(|c| c.image_uri());
    let resolved = code.and_then(|c| c.resolved_image_uri());
    Err(AwsError::Invalid {
        message: format!(
            "{what} runs image {} (resolved {}), not the pinned {uri}",
            image.unwrap_or("none"),
            resolved.unwrap_or("none")
        ),
        scope: scope.clone(),
    })
}

/// An alias as GetAlias reads it.
struct AliasRead {
    version: String,
    routing: HashMap<String, f64>,
    /// The alias's revision: UpdateAlias with it succeeds only if nobody changed the alias since.
    revision_id: Option<String>,
}

/// The version, routing and revision of `function`'s `alias`.
async fn alias_state(clients: &Clients, function: &str, alias: &str) -> Result<AliasRead> {
    let out = clients.lambda.get_alias().function_name(function).name(alias).send().await.map_err(|e| {
        let e = crate::error::from_sdk("lambda", "GetAlias", e);
        if e.code() == Some("ResourceNotFoundException") {
            AwsError::NotFound {
                kind: "Lambda alias",
                name: format!("{function}:{alias}"),
                scope: clients.scope.clone(),
            }
        } else {
            e
        }
    })?;
    let version = out.function_version().unwrap_or("$LATEST").to_string();
    let routing = out.routing_config().and_then(|r| r.additional_version_weights().cloned()).unwrap_or_default();
    Ok(AliasRead { version, routing, revision_id: out.revision_id().map(str::to_string) })
}

/// Points `function`'s `alias` at `version` with `routing` (nothing when it already is). Needs only
/// names, so a restore without the Release can use it ([`crate::restore::RestoreOnly`]).
///
/// The update is conditional on the alias's RevisionId as just read: if anyone changed the alias
/// in between (another controller replica that took over, a person), Lambda answers
/// `PreconditionFailedException`, which is [`crate::ErrorClass::Wait`]: the reconcile observes
/// again and decides on what is there now instead of overwriting it.
pub(crate) async fn set_alias(
    clients: &Clients,
    function: &str,
    alias: &str,
    version: &str,
    routing: HashMap<String, f64>,
) -> Result<()> {
    let current = alias_state(clients, function, alias).await?;
    if current.version == version && current.routing == routing {
        return Ok(());
    }
    clients
        .lambda
        .update_alias()
        .function_name(function)
        .name(alias)
        .function_version(version)
        .set_revision_id(current.revision_id)
        // An empty map clears the routing.
        .routing_config(AliasRoutingConfiguration::builder().set_additional_version_weights(Some(routing)).build())
        .send()
        .await
        .map_err(sdk("lambda", "UpdateAlias"))?;
    Ok(())
}

/// Returns the function and alias `l` names to the version and routing it recorded.
pub(crate) async fn restore(clients: &Clients, l: &LambdaSnapshot, function: &str, alias: &str) -> Result<()> {
    let mut routing = HashMap::new();
    for (v, w) in &l.routing {
        let w: f64 = w.parse().map_err(|_| AwsError::Invalid {
            message: format!("snapshot routing weight {w:?} for version {v} is not a number"),
            scope: clients.scope.clone(),
        })?;
        routing.insert(v.clone(), w);
    }
    set_alias(clients, function, alias, &l.version, routing).await
}

#[async_trait]
impl TrafficTarget for LambdaAlias {
    async fn running(&self) -> Result<RunningState> {
        let (version, _) = self.alias_state().await?;
        let f = self.get_function(Some(&version)).await?;
        let cfg = f.configuration();
        let sha = cfg.and_then(|c| c.code_sha256()).unwrap_or_default();
        let (same_artifacts, artifact) = match &self.code {
            LambdaCode::Image { uri } => (
                runs_image(f.code(), uri),
                f.code().and_then(|c| c.image_uri().or(c.resolved_image_uri())).unwrap_or_default().to_string(),
            ),
            LambdaCode::Zip { code_sha256, .. } => (sha == code_sha256, format!("CodeSha256 {sha}")),
        };
        Ok(RunningState::Runs(Running {
            what: format!("Lambda function {} alias {} (version {version})", self.function, self.alias),
            mark: cfg.and_then(|c| c.description()).and_then(ReleaseMark::from_description),
            same_artifacts,
            artifact,
        }))
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let (version, routing) = self.alias_state().await?;
        Ok(Snapshot {
            captured_at: Some(now_time()),
            account_id: Some(self.clients.scope.account_id.clone()),
            region: Some(self.clients.scope.region.clone()),
            role_arn: self.role_arn.clone(),
            ecs: None,
            lambda: Some(LambdaSnapshot {
                function_name: Some(self.function.clone()),
                alias: Some(self.alias.clone()),
                version,
                routing: routing.into_iter().map(|(v, w)| (v, w.to_string())).collect(),
            }),
        })
    }

    async fn prepare(&self) -> Result<DeployedResources> {
        if let LambdaCode::Image { uri } = &self.code {
            require_digest(uri, &self.clients.scope)?;
        }
        let f = self.clients.lambda.get_function().function_name(&self.function).send().await.map_err(|e| {
            self.not_found(crate::error::from_sdk("lambda", "GetFunction", e), "Lambda function", self.function.clone())
        })?;
        // An artifact that a published version already runs (a rollback Promotion returning to
        // the last good release, a re-promotion) gets that very version back: nothing is rebuilt,
        // $LATEST is not touched and nothing is published. The match is the safety check (the
        // version's own CodeSha256 or image is the Release's). A repeat finds the same version:
        // it is still the newest that matches, this path publishing nothing, and a version
        // published by an interrupted earlier attempt is the newest of all.
        if let Some(version) = self.existing_version().await? {
            return Ok(DeployedResources { lambda_version: Some(version), ..DeployedResources::default() });
        }
        let cfg = f.configuration();
        let current_sha = cfg.and_then(|c| c.code_sha256()).unwrap_or_default();
        let up_to_date = match &self.code {
            LambdaCode::Image { uri } => f.code().and_then(|c| c.image_uri()) == Some(uri.as_str()),
            LambdaCode::Zip { code_sha256, .. } => current_sha == code_sha256,
        };
        if !up_to_date {
            // Conditional on the function's revision as read above: a concurrent change (another
            // replica's deploy) makes Lambda refuse this one (PreconditionFailedException → Wait),
            // and the next reconcile reads again.
            let mut req = self
                .clients
                .lambda
                .update_function_code()
                .function_name(&self.function)
                .set_revision_id(cfg.and_then(|c| c.revision_id()).map(str::to_string));
            req = match &self.code {
                LambdaCode::Image { uri } => req.image_uri(uri),
                LambdaCode::Zip { bucket, key, object_version, .. } => {
                    req.s3_bucket(bucket).s3_key(key).set_s3_object_version(object_version.clone())
                }
            };
            req.send().await.map_err(sdk("lambda", "UpdateFunctionCode"))?;
        }
        let latest_sha = self.wait_updated().await?;
        // For an image the CodeSha256 is whatever Lambda computed for it (kiln has nothing to
        // compare it with): what is checked is the image itself, on $LATEST and on the version.
        if let LambdaCode::Image { uri } = &self.code {
            self.check_image(None, uri).await?;
        }
        // The hash the published version must have: the Release's for a zip; for an image,
        // $LATEST's (a precondition that nothing changed $LATEST between the check and publish).
        let expected = match &self.code {
            LambdaCode::Zip { code_sha256, .. } => code_sha256.clone(),
            LambdaCode::Image { .. } => latest_sha.clone(),
        };
        if latest_sha != expected {
            return Err(AwsError::HashMismatch {
                what: format!("Lambda function {} ($LATEST)", self.function),
                expected,
                actual: latest_sha,
                scope: self.clients.scope.clone(),
            });
        }
        // PublishVersion returns the existing version when nothing changed since the last one,
        // so a repeat does not publish a duplicate.
        let published = self
            .clients
            .lambda
            .publish_version()
            .function_name(&self.function)
            .code_sha256(&expected)
            .description(match &self.mark {
                Some(mark) => mark.description(&self.uid),
                None => format!("kiln promotion {}", self.uid),
            })
            .send()
            .await
            .map_err(sdk("lambda", "PublishVersion"))?;
        let version = published.version().map(str::to_string).ok_or(AwsError::Incomplete {
            service: "lambda",
            operation: "PublishVersion",
            field: "Version",
        })?;
        // Not every endpoint enforces the CodeSha256 precondition (moto does not): check it.
        let actual = published.code_sha256().unwrap_or_default();
        if actual != expected {
            return Err(AwsError::HashMismatch {
                what: format!("Lambda function {} version {version}", self.function),
                expected,
                actual: actual.to_string(),
                scope: self.clients.scope.clone(),
            });
        }
        if let LambdaCode::Image { uri } = &self.code {
            self.check_image(Some(&version), uri).await?;
        }
        Ok(DeployedResources { lambda_version: Some(version), ..DeployedResources::default() })
    }

    async fn shift(&self, deployed: &DeployedResources, weight: i32) -> Result<()> {
        let new = deployed.lambda_version.as_deref().ok_or_else(|| AwsError::Invalid {
            message: "no published Lambda version to shift to (prepare first)".into(),
            scope: self.clients.scope.clone(),
        })?;
        if weight >= 100 {
            return self.set_alias(new, HashMap::new()).await;
        }
        let (current, _) = self.alias_state().await?;
        if current == new {
            return Err(AwsError::Invalid {
                message: format!(
                    "alias {} already points at version {new}; a partial shift needs the previous version (restore first)",
                    self.alias
                ),
                scope: self.clients.scope.clone(),
            });
        }
        let mut routing = HashMap::new();
        if weight > 0 {
            routing.insert(new.to_string(), f64::from(weight) / 100.0);
        }
        self.set_alias(&current, routing).await
    }

    async fn finalize(&self, deployed: &DeployedResources) -> Result<()> {
        self.shift(deployed, 100).await
    }

    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let Some(l) = &snapshot.lambda else {
            return Err(AwsError::Invalid {
                message: "the snapshot has no Lambda state to restore".into(),
                scope: self.clients.scope.clone(),
            });
        };
        // The snapshot is self-contained: restore the function and alias it names.
        let function = l.function_name.as_deref().unwrap_or(&self.function);
        let alias = l.alias.as_deref().unwrap_or(&self.alias);
        restore(&self.clients, l, function, alias).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_must_be_the_pinned_one() {
        let scope = crate::error::Scope { account_id: "111111111111".into(), region: "us-east-1".into() };
        let pinned = format!("r.example/app@sha256:{}", "ab".repeat(32));
        let other = format!("r.example/app@sha256:{}", "cd".repeat(32));
        let by_uri = FunctionCodeLocation::builder().image_uri(&pinned).build();
        assert!(image_is(Some(&by_uri), &pinned, "f".into(), &scope).is_ok());
        let by_resolved =
            FunctionCodeLocation::builder().image_uri("r.example/app:v2").resolved_image_uri(&pinned).build();
        assert!(image_is(Some(&by_resolved), &pinned, "f".into(), &scope).is_ok());
        let wrong = FunctionCodeLocation::builder().image_uri(&other).resolved_image_uri(&other).build();
        let err = image_is(Some(&wrong), &pinned, "Lambda function f version 3".into(), &scope).unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::SpecWrong);
        assert!(err.to_string().contains("version 3 runs image"), "{err}");
        assert!(image_is(None, &pinned, "f".into(), &scope).is_err());
    }
}
