//! Evidence records in S3: written once under a key that includes their digest.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

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

#[async_trait]
impl EvidenceStore for S3Evidence {
    async fn put(&self, key: &str, body: &[u8], sha256_hex: &str) -> Result<String> {
        let uri = format!("s3://{}/{key}", self.bucket);
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
