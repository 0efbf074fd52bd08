//! The connection to the cluster, as kubectl makes it: the kubeconfig (`--kubeconfig`, else
//! `$KUBECONFIG`, else `~/.kube/config`, else the in-cluster service account), its context
//! (`--context`, `--cluster`, `--user`) and namespace (`-n`, else the context's, else `default`).
//! Errors from the API are turned into messages that say what to do.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kiln_api::{Environment, FreezeWindow, Promotion, Release};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::Global;
use crate::error::{CliError, causes};

/// The kiln resources a command may use, as served under `kiln.dev/v1alpha1`.
const KILN_RESOURCES: [&str; 5] = ["environments", "releases", "promotions", "freezewindows", "rollbackpolicies"];

/// A connected client and where it points.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The namespace commands act in.
    pub namespace: String,
    /// The API server URL (for messages).
    pub url: String,
}

/// The identity the API server sees (what `kubectl auth whoami` prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub username: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// Loads the kubeconfig as kubectl does and connects (no request is made yet).
pub async fn connect(global: &Global) -> Result<Cluster, CliError> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        cluster: global.cluster.clone(),
        user: global.user.clone(),
    };
    let kubeconfig = match &global.kubeconfig {
        Some(path) => Some(Kubeconfig::read_from(path).map_err(|e| CliError::Kubeconfig(e.to_string()))?),
        None => match Kubeconfig::read() {
            Ok(k) => Some(k),
            // No file at all: try the in-cluster service account before giving up, as client-go does.
            Err(kube::config::KubeconfigError::FindPath | kube::config::KubeconfigError::ReadConfig(..))
                if std::env::var_os("KUBECONFIG").is_none() =>
            {
                None
            }
            Err(e) => return Err(CliError::Kubeconfig(e.to_string())),
        },
    };
    let mut config = match kubeconfig {
        Some(k) => {
            Config::from_custom_kubeconfig(k, &options).await.map_err(|e| CliError::Kubeconfig(e.to_string()))?
        }
        None => Config::incluster().map_err(|e| {
            CliError::Kubeconfig(format!(
                "no kubeconfig found (set KUBECONFIG or pass --kubeconfig) and not running in a cluster ({e})"
            ))
        })?,
    };
    config.connect_timeout = Some(Duration::from_secs(10));
    let url = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let namespace = global.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| CliError::Kubeconfig(causes(&e)))?;
    Ok(Cluster { client, namespace, url })
}

impl Cluster {
    /// Turns a client error into a message for people; `context` says what we were doing.
    pub fn error(&self, context: &str, err: kube::Error) -> CliError {
        match err {
            kube::Error::Api(status) if status.code == 401 => {
                CliError::Unauthorized { url: self.url.clone(), message: status.message.clone() }
            }
            kube::Error::Api(status) => {
                CliError::Api { context: context.to_string(), message: status.message.clone(), code: status.code }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::RustlsTls(_) | kube::Error::Auth(_) => {
                CliError::Unreachable { url: self.url.clone(), cause: causes(&err) }
            }
            other => CliError::Other(format!("{context}: {}", causes(&other))),
        }
    }

    /// Checks that the API answers and serves the kiln CRDs: one discovery request, so the first
    /// failure a person sees is the helpful one rather than a 404 on some object.
    pub async fn preflight(&self) -> Result<(), CliError> {
        match self.client.list_api_group_resources(&format!("{}/{}", kiln_api::GROUP, kiln_api::VERSION)).await {
            Ok(list) => {
                let missing: Vec<&str> =
                    KILN_RESOURCES.iter().copied().filter(|r| !list.resources.iter().any(|x| x.name == *r)).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(CliError::CrdsMissing { url: self.url.clone(), missing: qualified(&missing) })
                }
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Err(CliError::CrdsMissing { url: self.url.clone(), missing: qualified(&KILN_RESOURCES) })
            }
            Err(e) => Err(self.error("reading API discovery", e)),
        }
    }

    /// Who the API server says we are, from a `SelfSubjectReview` (authentication.k8s.io/v1):
    /// the name kiln's admission policy will bind an approval or a request to. There is no flag
    /// to type a name.
    pub async fn whoami(&self) -> Result<Identity, CliError> {
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let review = api.create(&PostParams::default(), &SelfSubjectReview::default()).await.map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => CliError::Other(format!(
                "cannot tell who you are: the API server at {} does not serve SelfSubjectReview \
                 (authentication.k8s.io/v1, Kubernetes 1.28 or later)",
                self.url
            )),
            e => self.error("asking the API server who you are (SelfSubjectReview)", e),
        })?;
        let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
        match info.username {
            Some(username) if !username.is_empty() => {
                Ok(Identity { username, groups: info.groups.unwrap_or_default() })
            }
            _ => Err(CliError::Refused(format!(
                "the API server at {} knows you only as an anonymous user; kiln binds approvals and requests \
                 to a user name, so log in with a kubeconfig user that has one",
                self.url
            ))),
        }
    }

    /// Releases in the namespace.
    pub fn releases(&self) -> Api<Release> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Promotions in the namespace.
    pub fn promotions(&self) -> Api<Promotion> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Environments (cluster-scoped).
    pub fn environments(&self) -> Api<Environment> {
        Api::all(self.client.clone())
    }

    /// A Release by name, with a helpful message when it does not exist.
    pub async fn release(&self, name: &str) -> Result<Release, CliError> {
        match self.releases().get_opt(name).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(CliError::NotFound(format!(
                "release {name} not found in namespace {ns} (kubectl get releases -n {ns} lists them; -n picks another namespace)",
                ns = self.namespace
            ))),
            Err(e) => Err(self.error(&format!("reading release {name}"), e)),
        }
    }

    /// An Environment by name, with a helpful message when it does not exist.
    pub async fn environment(&self, name: &str) -> Result<Environment, CliError> {
        match self.environments().get_opt(name).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => {
                Err(CliError::NotFound(format!("environment {name} not found (kubectl get environments lists them)")))
            }
            Err(e) => Err(self.error(&format!("reading environment {name}"), e)),
        }
    }

    /// Every Promotion in the namespace.
    pub async fn list_promotions(&self) -> Result<Vec<Promotion>, CliError> {
        self.promotions()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| self.error("listing promotions", e))
    }

    /// Every Release in the namespace.
    pub async fn list_releases(&self) -> Result<Vec<Release>, CliError> {
        self.releases()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| self.error("listing releases", e))
    }

    /// Every Environment; `None` when the user may not list them (RBAC), so callers can go on
    /// without the environments' rules.
    pub async fn list_environments(&self) -> Result<Option<Vec<Environment>>, CliError> {
        match self.environments().list(&ListParams::default()).await {
            Ok(l) => Ok(Some(l.items)),
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(None),
            Err(e) => Err(self.error("listing environments", e)),
        }
    }

    /// The FreezeWindows that apply in the namespace: those in the namespace itself and those in
    /// the controller's namespace (which apply everywhere), each with the namespace it lives in.
    pub async fn freeze_windows(&self, controller_namespace: &str) -> Result<Vec<FreezeWindow>, CliError> {
        let mut out = Vec::new();
        let mut namespaces = vec![controller_namespace.to_string()];
        if self.namespace != controller_namespace {
            namespaces.push(self.namespace.clone());
        }
        for ns in namespaces {
            let api: Api<FreezeWindow> = Api::namespaced(self.client.clone(), &ns);
            match api.list(&ListParams::default()).await {
                Ok(l) => out.extend(l.items),
                // A namespace that does not exist has no windows.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(self.error(&format!("listing freeze windows in {ns}"), e)),
            }
        }
        Ok(out)
    }
}

fn qualified(resources: &[&str]) -> String {
    resources.iter().map(|r| format!("{r}.{}", kiln_api::GROUP)).collect::<Vec<_>>().join(", ")
}
