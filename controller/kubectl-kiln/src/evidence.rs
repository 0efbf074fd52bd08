//! `evidence verify <promotion>`: an auditor's check that the record kiln archived is the one the
//! Promotion's status vouches for. The object is read from S3 with the user's own AWS credentials
//! (the default chain: environment, profile, SSO, instance role), never kiln's, its SHA-256
//! recomputed over the stored bytes and compared with `status.evidenceSha256`. Records of every
//! schema version verify: kiln only ever adds fields, left out when empty, and the hash is over
//! the bytes as stored.

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::Region;
use kiln_api::Promotion;
use kiln_api::promotion::Evidence;
use sha2::{Digest, Sha256};

use crate::cli::EvidenceVerifyArgs;
use crate::cluster::Cluster;
use crate::error::{CliError, causes};

/// Fetches and checks the archived record of `args.promotion`; prints what matched.
pub async fn verify(cluster: &Cluster, args: &EvidenceVerifyArgs) -> Result<(), CliError> {
    let name = &args.promotion;
    let p: Promotion = match cluster.promotions().get_opt(name).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(CliError::NotFound(format!("promotion {name} not found in namespace {}", cluster.namespace)));
        }
        Err(e) => return Err(cluster.error(&format!("reading promotion {name}"), e)),
    };
    let status = p.status.clone().unwrap_or_default();
    let Some(sha) = status.evidence_sha256.clone() else {
        return Err(CliError::Refused(format!("promotion {name} has no evidence yet: it has not finished")));
    };
    let Some(archive) = status.evidence_archive.clone() else {
        return Err(CliError::Refused(format!(
            "promotion {name}'s evidence (sha256:{sha}) is not archived: its Environment sets no spec.evidence; \
             the record is in status.evidence"
        )));
    };
    if archive.archived_at.is_none() {
        let why = if archive.abandoned_at.is_some() {
            "kiln gave up writing it when the Promotion was deleted (see the EvidenceArchiveAbandoned Event)"
        } else {
            "kiln has not written it yet"
        };
        return Err(CliError::Refused(format!("{} (sha256:{sha}) is not archived: {why}", archive.uri())));
    }
    // The region the Promotion acted in, where the Environment's bucket lives.
    let region = args.region.clone().or_else(|| status.previous.as_ref().and_then(|s| s.region.clone()));
    // HTTPS with rustls (the SDK's own default client is not built in: one TLS stack, as kiln's).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(Region::new(r));
    }
    let conf = loader.load().await;
    // An endpoint override (AWS_ENDPOINT_URL: a VPC endpoint, an emulator) is addressed by path.
    let s3_conf = aws_sdk_s3::config::Builder::from(&conf).force_path_style(conf.endpoint_url().is_some()).build();
    let s3 = aws_sdk_s3::Client::from_conf(s3_conf);
    let uri = archive.uri();
    let object = s3
        .get_object()
        .bucket(&archive.bucket)
        .key(&archive.key)
        .send()
        .await
        .map_err(|e| CliError::Other(format!("reading {uri} with your AWS credentials: {}", causes(&e))))?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| CliError::Other(format!("reading {uri}: {}", causes(&e))))?
        .into_bytes();
    let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if got != sha {
        return Err(CliError::Refused(format!(
            "MISMATCH: {uri} hashes to sha256:{got}, but promotion {name} records sha256:{sha}; \
             the archived record is not the one kiln wrote"
        )));
    }
    // The right hash; make sure it is this Promotion's record, not another's copied here.
    let record: Evidence = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::Refused(format!("{uri} matches sha256:{sha} but is not an evidence record: {e}")))?;
    if record.release != p.spec.release || record.environment != p.spec.environment {
        return Err(CliError::Refused(format!(
            "MISMATCH: {uri} is the record of release {} into {}, not of promotion {name} ({} into {})",
            record.release, record.environment, p.spec.release, p.spec.environment
        )));
    }
    println!(
        "verified: {uri}\n  sha256:{sha} matches status.evidenceSha256 of {}/{name}\n  {} {} {} into {} ({}), schema version {}",
        cluster.namespace,
        record.kind,
        record.service,
        record.version,
        record.environment,
        record.outcome,
        record.schema_version.unwrap_or(1)
    );
    Ok(())
}
