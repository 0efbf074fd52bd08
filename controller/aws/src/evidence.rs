//! Evidence records in S3: written once under a key that includes their digest, only into a
//! bucket whose Object Lock keeps them from being changed or deleted.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use kiln_api::promotion::PromotionStatus;
use kiln_core::machine::Outcome;

use crate::credentials::Clients;
use crate::error::{AwsError, Result};

/// Stores evidence records.
#[async_trait]
pub trait EvidenceStore: Send + Sync {
    /// Stores `body` (canonical JSON whose SHA-256 is `sha256_hex`) under `key`; returns the
    /// `s3://` URI. Storing the same record again is a no-op; a different record under the same
    /// key is refused (evidence is immutable).
    async fn put(&self, key: &str, body: &[u8], sha256_hex: &str) -> Result<String>;
}

/// Evidence in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Evidence {
    clients: Clients,
    bucket: String,
}

impl S3Evidence {
    /// Evidence in `bucket` in the account of `clients`.
    pub fn new(clients: Clients, bucket: &str) -> Self {
        S3Evidence { clients, bucket: bucket.to_string() }
    }
}

const SHA_META: &str = "kiln-sha256";

impl S3Evidence {
    /// Refuses a bucket without Object Lock and a default retention rule: a record there could be
    /// overwritten or deleted, which evidence must never be.
    async fn require_object_lock(&self) -> Result<()> {
        let refused = |why: &str| AwsError::Invalid {
            message: format!(
                "evidence bucket {} {why}: evidence must not be changeable; enable S3 Object Lock on the bucket with a default retention rule (COMPLIANCE mode recommended; docs/install.md)",
                self.bucket
            ),
            scope: self.clients.scope.clone(),
        };
        let out = match self.clients.s3.get_object_lock_configuration().bucket(&self.bucket).send().await {
            Ok(out) => out,
            Err(e) => {
                let err = crate::error::from_sdk("s3", "GetObjectLockConfiguration", e);
                return Err(match err.code() {
                    Some("ObjectLockConfigurationNotFoundError") => refused("has no Object Lock"),
                    Some("NoSuchBucket") => AwsError::NotFound {
                        kind: "evidence bucket",
                        name: self.bucket.clone(),
                        scope: self.clients.scope.clone(),
                    },
                    _ => err,
                });
            }
        };
        let config = out.object_lock_configuration();
        let enabled = config.and_then(|c| c.object_lock_enabled()).map(|e| e.as_str()) == Some("Enabled");
        if !enabled {
            return Err(refused("has no Object Lock"));
        }
        if config.and_then(|c| c.rule()).and_then(|r| r.default_retention()).is_none() {
            return Err(refused("has Object Lock without a default retention rule"));
        }
        Ok(())
    }
}

/// Writes the finished Promotion's evidence record where `status.evidenceArchive` says, and
/// turns the result into the core's outcome: `Done` once it is there (written now or found
/// from an earlier try), `Failed` for what needs a person (no bucket, no Object Lock, access
/// denied, a different record under the key), an error for what a retry fixes (throttling, 5xx).
pub async fn archive(store: &dyn EvidenceStore, status: &PromotionStatus) -> Result<Outcome> {
    let (Some(evidence), Some(sha), Some(place)) =
        (&status.evidence, &status.evidence_sha256, &status.evidence_archive)
    else {
        return Ok(Outcome::Failed("nothing to archive: status.evidence is not recorded".into()));
    };
    // The bytes whose SHA-256 status records (kiln-core's canonical JSON).
    if &kiln_core::evidence::digest(evidence) != sha {
        return Ok(Outcome::Failed(format!(
            "status.evidence does not match status.evidenceSha256 {sha} (status was edited); not archived"
        )));
    }
    let body = match serde_json::to_vec(evidence) {
        Ok(b) => b,
        Err(e) => return Ok(Outcome::Failed(format!("evidence cannot be serialized: {e}"))),
    };
    match store.put(&place.key, &body, sha).await {
        Ok(_) => Ok(Outcome::Done),
        Err(e) => match e.class() {
            crate::error::ErrorClass::Wait => Ok(Outcome::InProgress(e.to_string())),
            crate::error::ErrorClass::SpecWrong => Ok(Outcome::Failed(e.to_string())),
            crate::error::ErrorClass::RetryLater => Err(e),
        },
    }
}

#[async_trait]
impl EvidenceStore for S3Evidence {
    async fn put(&self, key: &str, body: &[u8], sha256_hex: &str) -> Result<String> {
        let uri = format!("s3://{}/{key}", self.bucket);
        self.require_object_lock().await?;
        match self.clients.s3.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(head) => {
                let existing = head.metadata().and_then(|m| m.get(SHA_META)).map(String::as_str);
                return if existing == Some(sha256_hex) {
                    Ok(uri)
                } else {
                    Err(AwsError::Invalid {
                        message: format!("{uri} already holds a different evidence record; evidence is immutable"),
                        scope: self.clients.scope.clone(),
                    })
                };
            }
            Err(e) => {
                let err = crate::error::from_sdk("s3", "HeadObject", e);
                let missing = matches!(&err, AwsError::Api { code, .. } if code == "NotFound" || code == "NoSuchKey");
                if !missing {
                    return Err(err);
                }
            }
        }
        self.clients
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .metadata(SHA_META, sha256_hex)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map_err(|e| {
                let err = crate::error::from_sdk("s3", "PutObject", e);
                if err.code() == Some("NoSuchBucket") {
                    AwsError::NotFound {
                        kind: "evidence bucket",
                        name: self.bucket.clone(),
                        scope: self.clients.scope.clone(),
                    }
                } else {
                    err
                }
            })?;
        Ok(uri)
    }
}
