//! One AWS account in moto, reached the way kiln's controller reaches it.
//!
//! moto holds many accounts in one server: STS AssumeRole into `arn:aws:iam::<id>:role/…`
//! returns credentials that moto maps to account `<id>`, and resources made with them are
//! isolated from other accounts. [`Account::assume`] assumes [`DEPLOY_ROLE`] from the static
//! default credentials through kiln's own [`Sessions`] and [`StsAssumeRole`], so the
//! [`Clients`] it gives act exactly where kiln's controller acts when an Environment names that
//! account and role.

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use kiln_aws::credentials::{Clients, EnvironmentAws, Sessions, StsAssumeRole};

use crate::moto::{Moto, MotoEndpoint, Vpc};
use crate::{DEFAULT_ACCOUNT, REGION, STATIC_ACCESS_KEY};

/// The name of the role kiln assumes in every account (`arn:aws:iam::<id>:role/kiln-deploy`).
pub const DEPLOY_ROLE: &str = "kiln-deploy";

/// The STS session name the test kit's own sessions use.
const SESSION: &str = "kiln-testkit";

/// An account in moto: SDK clients acting in it and the access key for raw Query calls.
#[derive(Debug, Clone)]
pub struct Account {
    /// The 12-digit account ID.
    pub id: String,
    /// The region the clients act in.
    pub region: String,
    /// Clients acting in this account and region (their scope is `id`/`region`).
    pub clients: Clients,
    /// The credentials (assumed-role or static) the clients started with. moto keeps mapping
    /// every key it issued to this account, so they stay usable for raw calls even after the
    /// clients have refreshed theirs.
    pub credentials: Credentials,
    /// `credentials`' access key ID, for raw Query calls ([`Account::ec2`], [`Account::iam`]).
    pub access_key: String,
    moto: MotoEndpoint,
}

impl Account {
    /// Assumes `arn:aws:iam::<id>:role/kiln-deploy` in moto from the static default credentials
    /// (the controller's identity in tests) and returns the account with clients in `region`.
    /// `id` must be 12 digits.
    pub async fn assume(moto: &Moto, id: &str, region: &str) -> Result<Account, String> {
        Account::assume_at(moto.endpoint(), id, region).await
    }

    /// [`Account::assume`] against a moto server given by its address.
    pub async fn assume_at(moto: MotoEndpoint, id: &str, region: &str) -> Result<Account, String> {
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("account ID {id:?} is not 12 digits"));
        }
        let settings = moto.settings();
        let controller =
            settings.sdk_config(region, SharedCredentialsProvider::new(MotoEndpoint::static_credentials())).await;
        let sessions = Sessions::new(settings, Arc::new(StsAssumeRole::new(&controller)));
        let env = environment(id, region);
        let assumed = sessions
            .credentials(&env, SESSION)
            .await
            .map_err(|e| format!("STS AssumeRole {} in moto: {e}", env.role_arn))?;
        let clients =
            sessions.clients(&env, SESSION).await.map_err(|e| format!("clients for {} in moto: {e}", env.role_arn))?;
        let access_key = assumed.credentials.access_key_id().to_string();
        Ok(Account {
            id: id.into(),
            region: region.into(),
            clients,
            credentials: assumed.credentials,
            access_key,
            moto,
        })
    }

    /// moto's default account ([`DEFAULT_ACCOUNT`], [`REGION`]) with the static test credentials,
    /// no role assumed (what single-account adapter tests use).
    pub async fn moto_default(moto: &Moto) -> Account {
        let endpoint = moto.endpoint();
        Account {
            id: DEFAULT_ACCOUNT.into(),
            region: REGION.into(),
            clients: endpoint.clients().await,
            credentials: MotoEndpoint::static_credentials(),
            access_key: STATIC_ACCESS_KEY.into(),
            moto: endpoint,
        }
    }

    /// The role kiln assumes in this account: `arn:aws:iam::<id>:role/kiln-deploy`.
    pub fn role_arn(&self) -> String {
        role_arn(&self.id)
    }

    /// The account as an Environment's `spec.aws` declares it (the role above, no external ID).
    pub fn environment(&self) -> EnvironmentAws {
        environment(&self.id, &self.region)
    }

    /// The moto server this account lives in.
    pub fn moto(&self) -> MotoEndpoint {
        self.moto
    }

    /// An EC2 Query call in this account and region.
    pub fn ec2(&self, params: &[(&str, &str)]) -> Result<String, String> {
        self.moto.ec2(&self.region, &self.access_key, params).map_err(|e| self.in_account(e))
    }

    /// An IAM Query call in this account.
    pub fn iam(&self, params: &[(&str, &str)]) -> Result<String, String> {
        self.moto.iam(&self.access_key, params).map_err(|e| self.in_account(e))
    }

    /// An IAM role Lambda can assume, named `name`, in this account; returns its ARN.
    pub fn lambda_role(&self, name: &str) -> Result<String, String> {
        self.moto.lambda_role(&self.access_key, name).map_err(|e| self.in_account(e))
    }

    /// A VPC with two subnets and a security group named `sg_name` in this account and region.
    pub fn vpc(&self, sg_name: &str) -> Result<Vpc, String> {
        self.moto.vpc(&self.region, &self.access_key, sg_name).map_err(|e| self.in_account(e))
    }

    /// `message`, saying which account it happened in.
    pub(crate) fn in_account(&self, message: impl std::fmt::Display) -> String {
        format!("{message} (account {} region {})", self.id, self.region)
    }
}

fn role_arn(id: &str) -> String {
    format!("arn:aws:iam::{id}:role/{DEPLOY_ROLE}")
}

fn environment(id: &str, region: &str) -> EnvironmentAws {
    EnvironmentAws {
        account_id: id.into(),
        region: region.into(),
        role_arn: role_arn(id),
        external_id: None,
        session_tags: Vec::new(),
    }
}
