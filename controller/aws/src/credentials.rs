//! Credentials per environment: the controller's own identity assumes each Environment's role
//! (STS AssumeRole, with the external ID when set, and a session name that identifies the
//! Promotion in CloudTrail). Credentials are cached per role and session and refreshed before
//! they expire. The endpoint override (moto, a sandbox) is a setting, not a code path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::Mutex;

use crate::error::{AwsError, Result, Scope, sdk};
use crate::fence::{FenceInterceptor, WriteFence};

/// How kiln talks to AWS: timeouts, retries and an optional endpoint override.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Send every call here instead of the AWS endpoints (moto, a sandbox).
    pub endpoint_url: Option<String>,
    /// Total time for one operation including retries.
    pub operation_timeout: Duration,
    /// Time for one attempt.
    pub attempt_timeout: Duration,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Attempts per operation (throttling, 5xx, timeouts; exponential backoff with jitter).
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Refresh assumed-role credentials this long before they expire.
    pub refresh_before_expiry: SignedDuration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            endpoint_url: None,
            operation_timeout: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            refresh_before_expiry: SignedDuration::from_mins(5),
        }
    }
}

impl AwsSettings {
    /// Settings for an emulator at `endpoint_url`: short timeouts and backoff.
    pub fn for_endpoint(endpoint_url: impl Into<String>) -> Self {
        AwsSettings {
            endpoint_url: Some(endpoint_url.into()),
            operation_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(50),
            ..AwsSettings::default()
        }
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig::standard().with_max_attempts(self.max_attempts).with_initial_backoff(self.initial_backoff)
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_timeout(self.operation_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .connect_timeout(self.connect_timeout)
            .build()
    }

    /// An `SdkConfig` for `region` with these settings and `credentials`, on an HTTPS client of
    /// its own.
    pub async fn sdk_config(&self, region: &str, credentials: SharedCredentialsProvider) -> SdkConfig {
        self.sdk_config_with(region, Some(credentials), http_client()).await
    }

    /// An `SdkConfig` for `region` with these settings, on `http`; without `credentials` the
    /// config has none (callers add an identity's with `to_builder`).
    async fn sdk_config_with(
        &self,
        region: &str,
        credentials: Option<SharedCredentialsProvider>,
        http: aws_sdk_sts::config::SharedHttpClient,
    ) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .http_client(http)
            .retry_config(self.retry())
            .timeout_config(self.timeouts());
        loader = match credentials {
            Some(c) => loader.credentials_provider(c),
            None => loader.no_credentials(),
        };
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        loader.load().await
    }

    /// The controller's own identity from the default provider chain (IRSA / EKS Pod Identity
    /// in a cluster; environment variables elsewhere), with these settings.
    pub async fn load_default(&self, region: &str) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .http_client(http_client())
            .retry_config(self.retry())
            .timeout_config(self.timeouts());
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        loader.load().await
    }
}

/// The HTTPS client (rustls on ring: no aws-lc C build).
fn http_client() -> aws_sdk_sts::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// An environment's AWS identity as its Environment declares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvironmentAws {
    /// The 12-digit account ID.
    pub account_id: String,
    /// The region.
    pub region: String,
    /// The role kiln assumes there.
    pub role_arn: String,
    /// The external ID the role's trust policy requires, if any.
    pub external_id: Option<String>,
    /// STS session tags (key, value) sent with AssumeRole: the Promotion's namespace and
    /// environment, where the Environment asks for them (`aws.sessionTags`).
    pub session_tags: Vec<(String, String)>,
}

/// The session tag naming the Promotion's namespace.
pub const NAMESPACE_TAG: &str = "kiln-namespace";
/// The session tag naming the Promotion's environment.
pub const ENVIRONMENT_TAG: &str = "kiln-environment";

impl EnvironmentAws {
    /// From an Environment's `spec.aws` (its own role, no session tags).
    pub fn from_spec(aws: &kiln_api::environment::AwsTarget) -> Self {
        EnvironmentAws {
            account_id: aws.account_id.clone(),
            region: aws.region.clone(),
            role_arn: aws.role_arn.clone(),
            external_id: aws.external_id.clone(),
            session_tags: Vec::new(),
        }
    }

    /// How kiln acts in Environment `env_name` (`env`) for a Promotion in `namespace`: the role
    /// of the first `spec.tenants` entry covering the namespace that names one, else the
    /// Environment's; with the namespace and environment as session tags where the Environment
    /// asks for them.
    pub fn for_namespace(env_name: &str, env: &kiln_api::environment::EnvironmentSpec, namespace: &str) -> Self {
        let mut out = EnvironmentAws::from_spec(&env.aws);
        let tenant_role = env
            .tenants
            .iter()
            .flatten()
            .filter(|t| t.namespaces.iter().any(|n| kiln_core::tenancy::glob(n, namespace)))
            .find_map(|t| t.role_arn.clone());
        if let Some(role) = tenant_role {
            out.role_arn = role;
        }
        if env.aws.session_tags {
            out.session_tags = vec![
                (NAMESPACE_TAG.to_string(), namespace.to_string()),
                (ENVIRONMENT_TAG.to_string(), env_name.to_string()),
            ];
        }
        out
    }

    /// The identity `snapshot` was taken with: a restore acts there, whatever the Environment
    /// says now (its account may have been edited since). `current` (the Environment's identity,
    /// if it still exists) supplies what the snapshot does not record: the external ID, and the
    /// account, region or role of snapshots taken before they were recorded.
    pub fn for_restore(
        snapshot: &kiln_api::promotion::Snapshot,
        current: Option<&EnvironmentAws>,
    ) -> std::result::Result<EnvironmentAws, String> {
        let pick = |recorded: &Option<String>, now: Option<&String>, what: &str| {
            recorded.clone().or_else(|| now.cloned()).ok_or_else(|| {
                format!("cannot restore: the snapshot does not record the {what} and the Environment is gone")
            })
        };
        Ok(EnvironmentAws {
            account_id: pick(&snapshot.account_id, current.map(|c| &c.account_id), "account")?,
            region: pick(&snapshot.region, current.map(|c| &c.region), "region")?,
            role_arn: pick(&snapshot.role_arn, current.map(|c| &c.role_arn), "role")?,
            external_id: current.and_then(|c| c.external_id.clone()),
            session_tags: current.map(|c| c.session_tags.clone()).unwrap_or_default(),
        })
    }

    /// Where resources are looked up.
    pub fn scope(&self) -> Scope {
        Scope { account_id: self.account_id.clone(), region: self.region.clone() }
    }
}

/// An STS session name that identifies the Promotion (`[\w+=,.@-]`, 2-64 characters).
pub fn session_name(promotion: &str, uid: &str) -> String {
    let clean: String =
        promotion.chars().map(|c| if c.is_ascii_alphanumeric() || "+=,.@-".contains(c) { c } else { '-' }).collect();
    let short_uid: String = uid.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
    let mut name = format!("kiln.{clean}");
    name.truncate(64 - short_uid.len() - 1);
    format!("{name}.{short_uid}")
}

/// Temporary credentials for a role.
#[derive(Debug, Clone)]
pub struct RoleCredentials {
    /// The credentials.
    pub credentials: Credentials,
    /// When they expire.
    pub expires_at: Timestamp,
}

/// Assumes an environment's role. The real one calls STS; the fake counts calls.
#[async_trait]
pub trait AssumeRole: Send + Sync {
    /// Assumes `env.role_arn` (with `env.external_id`) as `session`.
    async fn assume(&self, env: &EnvironmentAws, session: &str) -> Result<RoleCredentials>;
}

/// STS AssumeRole with the controller's own identity.
#[derive(Debug, Clone)]
pub struct StsAssumeRole {
    sts: aws_sdk_sts::Client,
}

impl StsAssumeRole {
    /// From the controller's own `SdkConfig`.
    pub fn new(base: &SdkConfig) -> Self {
        StsAssumeRole { sts: aws_sdk_sts::Client::new(base) }
    }
}

#[async_trait]
impl AssumeRole for StsAssumeRole {
    async fn assume(&self, env: &EnvironmentAws, session: &str) -> Result<RoleCredentials> {
        let out = self
            .sts
            .assume_role()
            .role_arn(&env.role_arn)
            .role_session_name(session)
            .set_external_id(env.external_id.clone())
            .set_tags(session_tags(&env.session_tags)?)
            .duration_seconds(3600)
            .send()
            .await
            .map_err(sdk("sts", "AssumeRole"))?;
        let c = out.credentials().ok_or(AwsError::Incomplete {
            service: "sts",
            operation: "AssumeRole",
            field: "Credentials",
        })?;
        let expires_at = Timestamp::new(c.expiration().secs(), 0).unwrap_or(Timestamp::UNIX_EPOCH);
        let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
        Ok(RoleCredentials {
            credentials: Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                expiry,
                "kiln-assume-role",
            ),
            expires_at,
        })
    }
}

/// The STS tags of `tags`, or None when there are none (the request then carries no tags).
fn session_tags(tags: &[(String, String)]) -> Result<Option<Vec<aws_sdk_sts::types::Tag>>> {
    if tags.is_empty() {
        return Ok(None);
    }
    let built: std::result::Result<Vec<_>, _> =
        tags.iter().map(|(k, v)| aws_sdk_sts::types::Tag::builder().key(k).value(v).build()).collect();
    // Key and value are always set, so the builder cannot fail; say so rather than panic.
    built.map(Some).map_err(|_| AwsError::Incomplete { service: "sts", operation: "AssumeRole", field: "Tags" })
}

/// (role, external ID, session, session tags): one identity.
type CacheKey = (String, Option<String>, String, Vec<(String, String)>);

fn cache_key(env: &EnvironmentAws, session: &str) -> CacheKey {
    (env.role_arn.clone(), env.external_id.clone(), session.to_string(), env.session_tags.clone())
}

/// One identity's credentials. Its async lock is held across the AssumeRole call, so callers of
/// the same identity wait for the one call in flight (single flight) while other identities go
/// ahead.
type Slot = Arc<Mutex<Option<RoleCredentials>>>;

/// Identities (role, external ID, session) kept beyond which the idle ones are dropped: one per
/// Promotion acting now plus the shared signal sessions, so this bounds memory, not work.
const MAX_IDENTITIES: usize = 512;
/// An identity unused this long is dropped first once [`MAX_IDENTITIES`] is reached (its
/// credentials, valid an hour, would have to be assumed again anyway).
const IDLE_IDENTITY: SignedDuration = SignedDuration::from_hours(1);

/// Clients built for one identity, and when they were last handed out.
struct CachedClients {
    clients: Clients,
    used: Timestamp,
}

/// Per-environment AWS access: assumes each environment's role once per session and reuses the
/// credentials until `refresh_before_expiry` before they expire. Cheap to clone (the caches are
/// shared): the clients it builds hold a [`SessionCredentials`] provider over it, so a client kept
/// for hours (a shared alarm cache) re-assumes the role instead of failing with ExpiredToken.
///
/// One HTTPS client (connection pool) serves every identity, one base `SdkConfig` is loaded per
/// region, and each identity's clients are built once and reused, so a reconcile does not pay
/// for a config load, a connection pool and TLS handshakes. AssumeRole is single-flight per
/// identity: after a failover, N Promotions assume their roles in parallel instead of queueing
/// behind one lock.
#[derive(Clone)]
pub struct Sessions {
    settings: AwsSettings,
    assumer: Arc<dyn AssumeRole>,
    http: aws_sdk_sts::config::SharedHttpClient,
    slots: Arc<std::sync::Mutex<HashMap<CacheKey, Slot>>>,
    clients: Arc<std::sync::Mutex<HashMap<(CacheKey, String), CachedClients>>>,
    bases: Arc<Mutex<HashMap<String, SdkConfig>>>,
    fence: Option<WriteFence>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// `m`'s guard; a panic elsewhere while it was held leaves plain data behind, still usable.
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sessions {
    /// Sessions that assume roles with `assumer`.
    pub fn new(settings: AwsSettings, assumer: Arc<dyn AssumeRole>) -> Self {
        Sessions {
            settings,
            assumer,
            http: http_client(),
            slots: Arc::default(),
            clients: Arc::default(),
            bases: Arc::default(),
            fence: None,
        }
    }

    /// The same sessions, whose clients ask `fence` before every write ([`crate::fence`]).
    pub fn with_fence(mut self, fence: WriteFence) -> Self {
        self.fence = Some(fence);
        // Clients built before were unfenced.
        locked(&self.clients).clear();
        self
    }

    /// The settings.
    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// How many identities have clients built and cached.
    pub fn cached_identities(&self) -> usize {
        locked(&self.clients).len()
    }

    fn slot(&self, key: &CacheKey) -> Slot {
        let mut slots = locked(&self.slots);
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        if slots.len() >= MAX_IDENTITIES {
            // Drop identities nobody is assuming now whose credentials are gone or expired.
            let now = Timestamp::now();
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(c) => c.as_ref().is_some_and(|c| c.expires_at > now),
                Err(_) => true,
            });
        }
        slots.entry(key.clone()).or_default().clone()
    }

    /// Credentials for `env` as `session`, from the cache unless they expire soon.
    pub async fn credentials(&self, env: &EnvironmentAws, session: &str) -> Result<RoleCredentials> {
        let key = cache_key(env, session);
        let slot = self.slot(&key);
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref()
            && Timestamp::now() + self.settings.refresh_before_expiry < c.expires_at
        {
            return Ok(c.clone());
        }
        let fresh = self.assumer.assume(env, session).await?;
        *held = Some(fresh.clone());
        Ok(fresh)
    }

    /// A credentials provider for `env` as `session`, backed by this cache.
    pub fn provider(&self, env: &EnvironmentAws, session: &str) -> SessionCredentials {
        SessionCredentials { sessions: self.clone(), env: env.clone(), session: session.to_string() }
    }

    /// The base `SdkConfig` of `region` (settings, the shared HTTPS client, no credentials),
    /// loaded once.
    async fn base(&self, region: &str) -> SdkConfig {
        let mut bases = self.bases.lock().await;
        if let Some(base) = bases.get(region) {
            return base.clone();
        }
        let base = self.settings.sdk_config_with(region, None, self.http.clone()).await;
        bases.insert(region.to_string(), base.clone());
        base
    }

    /// Clients for `env`, acting as `session`. The role is assumed now (a refused role is an
    /// error here, not on the first call); the clients ask the cache again before the
    /// credentials expire. Built once per identity and reused.
    pub async fn clients(&self, env: &EnvironmentAws, session: &str) -> Result<Clients> {
        self.credentials(env, session).await?;
        let key = (cache_key(env, session), env.region.clone());
        let now = Timestamp::now();
        if let Some(cached) = locked(&self.clients).get_mut(&key) {
            cached.used = now;
            return Ok(cached.clients.clone());
        }
        let provider = SharedCredentialsProvider::new(self.provider(env, session));
        let config = self.base(&env.region).await.to_builder().credentials_provider(provider).build();
        let clients = Clients::fenced(&config, env.scope(), self.fence.as_ref());
        let mut cache = locked(&self.clients);
        if cache.len() >= MAX_IDENTITIES {
            cache.retain(|_, c| now.duration_since(c.used) < IDLE_IDENTITY);
            if cache.len() >= MAX_IDENTITIES
                && let Some(oldest) = cache.iter().min_by_key(|(_, c)| c.used).map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(key, CachedClients { clients: clients.clone(), used: now });
        Ok(clients)
    }
}

/// The credentials of one environment's role and session, from [`Sessions`]: the SDK's identity
/// cache asks again when the credentials it holds near their expiry (which is set from STS's), and
/// `Sessions` re-assumes the role when they expire within `refresh_before_expiry`.
#[derive(Clone)]
pub struct SessionCredentials {
    sessions: Sessions,
    env: EnvironmentAws,
    session: String,
}

impl std::fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("role_arn", &self.env.role_arn)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl SessionCredentials {
    async fn load(&self) -> std::result::Result<Credentials, CredentialsError> {
        let c = self.sessions.credentials(&self.env, &self.session).await.map_err(CredentialsError::provider_error)?;
        let expiry = Some(std::time::SystemTime::from(c.expires_at));
        Ok(Credentials::new(
            c.credentials.access_key_id(),
            c.credentials.secret_access_key(),
            c.credentials.session_token().map(str::to_string),
            expiry,
            "kiln-sessions",
        ))
    }
}

impl ProvideCredentials for SessionCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// The service clients for one environment.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Where they act.
    pub scope: Scope,
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// ELBv2.
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// Lambda.
    pub lambda: aws_sdk_lambda::Client,
    /// CloudWatch.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// CodeDeploy.
    pub codedeploy: aws_sdk_codedeploy::Client,
    /// S3 (path-style addressing when an endpoint override is set is up to the caller).
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    /// Clients from an `SdkConfig`.
    pub fn new(config: &SdkConfig, scope: Scope) -> Self {
        Clients::fenced(config, scope, None)
    }

    /// Clients from an `SdkConfig` whose writes each ask `fence` first, right before they are
    /// sent (every attempt): see [`crate::fence`]. `None`: unfenced.
    pub fn fenced(config: &SdkConfig, scope: Scope, fence: Option<&WriteFence>) -> Self {
        // One builder per service, each with the fence's interceptor when there is one.
        macro_rules! client {
            ($service:ident, $builder:expr) => {{
                let mut builder = $builder;
                if let Some(f) = fence {
                    builder = builder.interceptor(FenceInterceptor(f.clone()));
                }
                $service::Client::from_conf(builder.build())
            }};
        }
        Clients {
            scope,
            ecs: client!(aws_sdk_ecs, aws_sdk_ecs::config::Builder::from(config)),
            elb: client!(aws_sdk_elasticloadbalancingv2, aws_sdk_elasticloadbalancingv2::config::Builder::from(config)),
            lambda: client!(aws_sdk_lambda, aws_sdk_lambda::config::Builder::from(config)),
            cloudwatch: client!(aws_sdk_cloudwatch, aws_sdk_cloudwatch::config::Builder::from(config)),
            codedeploy: client!(aws_sdk_codedeploy, aws_sdk_codedeploy::config::Builder::from(config)),
            // Path-style S3 addressing works against endpoint overrides (moto) and AWS alike.
            s3: client!(aws_sdk_s3, aws_sdk_s3::config::Builder::from(config).force_path_style(true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeAssumeRole;

    #[test]
    fn a_restore_acts_where_the_snapshot_was_taken() {
        let snapshot = kiln_api::promotion::Snapshot {
            account_id: Some("222222222222".into()),
            region: Some("eu-west-1".into()),
            role_arn: Some("arn:aws:iam::222222222222:role/old".into()),
            ..Default::default()
        };
        // The Environment moved to another account since: the restore still goes to the old one.
        let now = env("arn:aws:iam::111111111111:role/new");
        let aws = EnvironmentAws::for_restore(&snapshot, Some(&now)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (aws.account_id.as_str(), aws.region.as_str(), aws.role_arn.as_str()),
            ("222222222222", "eu-west-1", "arn:aws:iam::222222222222:role/old")
        );
        assert_eq!(aws.external_id.as_deref(), Some("x"));
        // The Environment is gone: the snapshot alone is enough.
        assert!(EnvironmentAws::for_restore(&snapshot, None).is_ok());
        // An old snapshot without its role, and no Environment: refused with the reason.
        let bare = kiln_api::promotion::Snapshot { role_arn: None, ..snapshot };
        let err = EnvironmentAws::for_restore(&bare, None).unwrap_err();
        assert!(err.contains("does not record the role"), "{err}");
    }

    fn env(role: &str) -> EnvironmentAws {
        EnvironmentAws {
            account_id: "111111111111".into(),
            region: "us-east-1".into(),
            role_arn: role.into(),
            external_id: Some("x".into()),
            session_tags: Vec::new(),
        }
    }

    /// Issue "Tenancy and release integrity" §1: a namespace's own role (its tenants entry), and
    /// the namespace and environment as session tags where the Environment asks for them; each is
    /// its own identity in the cache.
    #[tokio::test]
    async fn a_namespace_acts_as_its_tenant_role_with_its_tags() {
        let mut spec = kiln_api::fixtures::environment("333333333333", &[]);
        spec.aws.session_tags = true;
        spec.tenants = Some(vec![
            kiln_api::environment::Tenant {
                namespaces: vec!["team-api-*".into()],
                resources: vec!["arn:aws:lambda:*:333333333333:function:api-*".into()],
                role_arn: Some("arn:aws:iam::333333333333:role/kiln-team-api".into()),
            },
            kiln_api::environment::Tenant {
                namespaces: vec!["*".into()],
                resources: vec!["arn:aws:ecs:*:333333333333:service/shared/*".into()],
                role_arn: None,
            },
        ]);
        let api = EnvironmentAws::for_namespace("prod", &spec, "team-api-payments");
        assert_eq!(api.role_arn, "arn:aws:iam::333333333333:role/kiln-team-api");
        assert_eq!(
            api.session_tags,
            vec![
                (NAMESPACE_TAG.to_string(), "team-api-payments".to_string()),
                (ENVIRONMENT_TAG.to_string(), "prod".to_string())
            ]
        );
        let other = EnvironmentAws::for_namespace("prod", &spec, "team-web");
        assert_eq!(other.role_arn, spec.aws.role_arn, "no tenant role: the Environment's");
        spec.aws.session_tags = false;
        assert!(EnvironmentAws::for_namespace("prod", &spec, "team-web").session_tags.is_empty());

        // Two namespaces on one role are two identities (their tags differ).
        let fake = Arc::new(FakeAssumeRole::new(SignedDuration::from_hours(1)));
        let s = Sessions::new(AwsSettings::default(), fake.clone());
        let mut web = other.clone();
        web.session_tags = vec![(NAMESPACE_TAG.to_string(), "team-web".to_string())];
        let mut shop = other.clone();
        shop.session_tags = vec![(NAMESPACE_TAG.to_string(), "team-shop".to_string())];
        s.credentials(&web, "signals").await.unwrap();
        s.credentials(&shop, "signals").await.unwrap();
        s.credentials(&web, "signals").await.unwrap();
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test]
    async fn cached_per_role_until_near_expiry() {
        let long = Arc::new(FakeAssumeRole::new(SignedDuration::from_hours(1)));
        let s = Sessions::new(AwsSettings::default(), long.clone());
        for _ in 0..3 {
            s.credentials(&env("arn:aws:iam::111111111111:role/a"), "kiln.p.1").await.map(|_| ()).ok();
        }
        s.credentials(&env("arn:aws:iam::111111111111:role/b"), "kiln.p.1").await.map(|_| ()).ok();
        assert_eq!(long.calls(), 2);

        // Credentials that expire within the refresh margin are assumed again.
        let short = Arc::new(FakeAssumeRole::new(SignedDuration::from_mins(2)));
        let s = Sessions::new(AwsSettings::default(), short.clone());
        for _ in 0..3 {
            s.credentials(&env("arn:aws:iam::111111111111:role/a"), "kiln.p.1").await.map(|_| ()).ok();
        }
        assert_eq!(short.calls(), 3);
    }

    /// Issue "Safety under partition" §3: after a failover N Promotions assume their roles at
    /// once; they must not queue behind one lock held across STS calls.
    #[tokio::test]
    async fn different_identities_assume_their_roles_in_parallel() {
        let sts = Arc::new(FakeAssumeRole::meeting(8));
        let s = Sessions::new(AwsSettings::default(), sts.clone());
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..8 {
            let s = s.clone();
            calls.spawn(async move {
                s.credentials(&env("arn:aws:iam::111111111111:role/a"), &format!("kiln.p{i}.x")).await
            });
        }
        // Each call is answered only once all eight are in flight together.
        let all = tokio::time::timeout(Duration::from_secs(30), calls.join_all()).await;
        let all = all.unwrap_or_else(|_| panic!("AssumeRole calls were serialized: {} of 8 reached STS", sts.calls()));
        assert!(all.iter().all(|c| c.is_ok()));
        assert_eq!(sts.calls(), 8);
    }

    #[tokio::test]
    async fn one_identity_is_assumed_once_however_many_ask_at_once() {
        let sts = Arc::new(FakeAssumeRole::new(SignedDuration::from_hours(1)));
        let s = Sessions::new(AwsSettings::default(), sts.clone());
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let s = s.clone();
            calls.spawn(async move { s.credentials(&env("arn:aws:iam::111111111111:role/a"), "kiln.p.1").await });
        }
        let keys: Vec<String> =
            calls.join_all().await.into_iter().flatten().map(|c| c.credentials.access_key_id().to_string()).collect();
        assert_eq!(keys.len(), 16);
        assert!(keys.iter().all(|k| k == "ASIAFAKE0"), "{keys:?}");
        assert_eq!(sts.calls(), 1);
    }

    #[tokio::test]
    async fn clients_are_built_once_per_identity_and_reused() {
        let sts = Arc::new(FakeAssumeRole::new(SignedDuration::from_hours(1)));
        let s = Sessions::new(AwsSettings::for_endpoint("http://127.0.0.1:9"), sts.clone());
        let a = env("arn:aws:iam::111111111111:role/a");
        for _ in 0..5 {
            s.clients(&a, "kiln.p.1").await.map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(s.cached_identities(), 1);
        s.clients(&a, "kiln.p.2").await.map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
        s.clients(&env("arn:aws:iam::111111111111:role/b"), "kiln.p.1")
            .await
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.cached_identities(), 3);
        assert_eq!(sts.calls(), 3);
        // Clients made for another region act there.
        let west = EnvironmentAws { region: "eu-west-1".into(), ..a.clone() };
        let c = s.clients(&west, "kiln.p.1").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.ecs.config().region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(s.cached_identities(), 4);
    }

    #[tokio::test]
    async fn the_clients_provider_reassumes_expired_credentials() {
        // Credentials that expired a minute ago: every ask re-assumes the role.
        let expired = Arc::new(FakeAssumeRole::new(SignedDuration::from_mins(-1)));
        let s = Sessions::new(AwsSettings::default(), expired.clone());
        let e = env("arn:aws:iam::111111111111:role/a");
        let p = s.provider(&e, "kiln.p.1");
        let mut keys = Vec::new();
        for _ in 0..3 {
            let c = p.provide_credentials().await.map_err(|e| e.to_string());
            assert!(c.as_ref().is_ok_and(|c| c.expiry().is_some()), "{c:?}");
            keys.extend(c.ok().map(|c| c.access_key_id().to_string()));
        }
        assert_eq!(keys, vec!["ASIAFAKE0".to_string(), "ASIAFAKE1".to_string(), "ASIAFAKE2".to_string()]);
        assert_eq!(expired.calls(), 3);

        // Long-lived credentials come from the cache.
        let long = Arc::new(FakeAssumeRole::new(SignedDuration::from_hours(1)));
        let s = Sessions::new(AwsSettings::default(), long.clone());
        let p = s.provider(&e, "kiln.p.1");
        for _ in 0..3 {
            assert!(p.provide_credentials().await.is_ok());
        }
        assert_eq!(long.calls(), 1);
    }

    #[test]
    fn session_names_are_valid() {
        let n = session_name("checkout/v1.2.3 to prod", "5f0c1d2e-aaaa-bbbb-cccc-111111111111");
        assert_eq!(n, "kiln.checkout-v1.2.3-to-prod.5f0c1d2e");
        let long = session_name(&"x".repeat(200), "5f0c1d2e-aaaa");
        assert!(long.len() <= 64 && long.ends_with(".5f0c1d2e"), "{long}");
    }
}
