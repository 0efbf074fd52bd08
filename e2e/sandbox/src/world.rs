//! The sandbox's world: moto with three accounts and the examples' AWS resources, a Kubernetes API
//! with kiln's CRDs and a few users, and the controller process.
//!
//! The Kubernetes API is the in-repo API test server by default (starts in a blink, no Go needed)
//! or, with `--real`, a real kube-apiserver + etcd ([`kiln_testkit::ControlPlane`], built by
//! `scripts/controlplane.sh`) with the Helm chart installed as a user would: its CRDs, RBAC and
//! approval admission policy, the people bound to the chart's roles, and the controller running as
//! the chart's ServiceAccount.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kiln_test_apiserver::TestServer;
use kiln_testkit::{Account, ControlPlane, EcsFixture, EcsNames, LambdaFixture, Moto, MotoEndpoint, User};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use crate::Options;

/// The accounts of the examples' environments.
pub const ACCOUNTS: [(&str, &str); 3] = [("dev", "111111111111"), ("stg", "222222222222"), ("prod", "333333333333")];
/// The examples' region.
pub const REGION: &str = "ca-central-1";

/// A person with a token (their kubeconfig is written to the work dir).
pub struct Person {
    /// Their user name (what kiln records on approvals).
    pub user: &'static str,
    /// Groups.
    pub groups: &'static [&'static str],
    /// Their kubeconfig file.
    pub kubeconfig: PathBuf,
    /// A client acting as them.
    pub client: kube::Client,
}

/// Everything running.
pub struct World {
    /// moto (killed on drop).
    pub moto: Moto,
    /// The Kubernetes API (stopped on drop).
    pub cluster: Cluster,
    /// An admin client.
    pub client: kube::Client,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// dev, stg, prod.
    pub accounts: Vec<(String, Account)>,
    /// People who release and approve.
    pub people: Vec<Person>,
    /// The controller (killed on drop).
    pub controller: tokio::process::Child,
    /// Its log.
    pub controller_log: PathBuf,
    /// When the sandbox started (narration times are relative to it).
    pub started: Instant,
    /// The repository root.
    pub repo: PathBuf,
}

/// The people: (user, groups, the chart's ClusterRole bound to them on a real cluster).
const PEOPLE: [(&str, &[&str], &str); 5] = [
    ("alice@example.com", &["kiln:releasers"], "kiln-releaser"),
    ("relmgr@example.com", &["kiln:release-engineering"], "kiln-approver"),
    ("seclead@example.com", &["kiln:security"], "kiln-approver"),
    ("pm-ingest@example.com", &["kiln:product"], "kiln-approver"),
    ("oncall@example.com", &["kiln:sre"], "kiln-rollbacker"),
];

/// kiln's namespace (the chart's, and the controller's default).
const KILN_NS: &str = "kiln-system";
/// The chart's ServiceAccount, which the controller runs as on a real cluster.
const CONTROLLER_ACCOUNT: &str = "kiln";

/// The Kubernetes API the sandbox runs on.
pub enum Cluster {
    /// The in-repo API test server (the default).
    TestServer(TestServer),
    /// A real kube-apiserver + etcd (`--real`).
    Real(ControlPlane),
}

impl Cluster {
    /// The API server's URL.
    pub fn url(&self) -> &str {
        match self {
            Cluster::TestServer(s) => &s.url,
            Cluster::Real(cp) => cp.server(),
        }
    }

    /// What it is, for the narration.
    pub fn describe(&self) -> String {
        match self {
            Cluster::TestServer(s) => format!("the in-repo Kubernetes API test server at {}", s.url),
            Cluster::Real(cp) => format!("a real kube-apiserver + etcd at {}", cp.server()),
        }
    }
}

async fn client_for(kubeconfig: &str) -> Result<kube::Client, String> {
    let kc = Kubeconfig::from_yaml(kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    kube::Client::try_from(cfg).map_err(|e| format!("client: {e}"))
}

impl World {
    /// Starts moto, the Kubernetes API and the controller, and sets up the accounts.
    pub async fn start(options: &Options, say: &(dyn Fn(&str) + Send + Sync)) -> Result<World, String> {
        let started = Instant::now();
        std::fs::create_dir_all(&options.work_dir).map_err(|e| format!("{}: {e}", options.work_dir.display()))?;

        say("starting moto (simulated AWS) on 127.0.0.1");
        let moto = Moto::try_start()?;
        let api = if options.real { real_cluster(options, say).await? } else { test_server(options).await? };
        say(&format!("started {}", api.cluster.describe()));

        let mut accounts = Vec::new();
        for (env, id) in ACCOUNTS {
            let account = Account::assume(&moto, id, REGION).await?;
            fixtures(&account, env).await?;
            say(&format!(
                "{env}: account {id} ({REGION}) has ECS service ingest-worker behind an ALB (blue 100 / green 0), Lambda api-adapter (alias live → 1) and the SLO alarms"
            ));
            accounts.push((env.to_string(), account));
        }

        let controller_log = options.work_dir.join("controller.log");
        let controller = start_controller(options, &api, &moto, &controller_log)?;
        say(&format!("started kiln-controller (log: {})", controller_log.display()));

        Ok(World {
            moto,
            kubeconfig: api.kubeconfig,
            cluster: api.cluster,
            client: api.client,
            accounts,
            people: api.people,
            controller,
            controller_log,
            started,
            repo: options.repo.clone(),
        })
    }

    /// The account of environment `env`.
    pub fn account(&self, env: &str) -> Option<&Account> {
        self.accounts.iter().find(|(e, _)| e == env).map(|(_, a)| a)
    }

    /// The person named `user`.
    pub fn person(&self, user: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.user == user)
    }

    /// Prints how to reach the sandbox.
    pub fn print_access(&self, say: &(dyn Fn(&str) + Send + Sync)) {
        let kc = self.kubeconfig.display();
        say(&format!(
            "the sandbox is up (Kubernetes API {}); drive it with kubectl (Ctrl-C stops everything):",
            self.cluster.url()
        ));
        say(&format!("  export KUBECONFIG={kc}"));
        say("  kubectl get releases,promotions -A");
        say("  kubectl describe promotion -n ingest ingest-worker-v1-4-2-dev");
        say("  kubectl apply -f examples/promotion-stg.yaml       # ingest-worker into stg (approved by relmgr)");
        say(
            "  kubectl apply -f examples/promotion-prod.yaml      # into prod: frozen until the compressed weekend ends",
        );
        for p in &self.people {
            say(&format!("  as {} ({}): KUBECONFIG={}", p.user, p.groups.join(","), p.kubeconfig.display()));
        }
        say(&format!(
            "  AWS (moto): {}  (any access key; accounts {})",
            self.moto.url(),
            ACCOUNTS.map(|(_, id)| id).join(", ")
        ));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.controller.start_kill();
    }
}

/// A Kubernetes API ready for the scenario: kiln's CRDs served, namespaces made, people with
/// kubeconfigs, and how the controller reaches it.
struct ApiReady {
    cluster: Cluster,
    client: kube::Client,
    kubeconfig: PathBuf,
    people: Vec<Person>,
    /// The controller's kubeconfig.
    controller_kubeconfig: PathBuf,
    /// The controller's extra arguments.
    controller_args: Vec<String>,
}

/// Writes a person's kubeconfig and makes a client acting as them.
async fn person(
    options: &Options,
    user: &'static str,
    groups: &'static [&'static str],
    yaml: &str,
) -> Result<Person, String> {
    let short = user.split('@').next().unwrap_or(user);
    let path = options.work_dir.join(format!("kubeconfig-{short}"));
    std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Person { user, groups, kubeconfig: path, client: client_for(yaml).await? })
}

async fn create_namespaces(client: &kube::Client) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [KILN_NS, "ingest", "api"] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).map_err(|e| e.to_string())?;
        namespaces.create(&PostParams::default(), &obj).await.map_err(|e| format!("namespace {ns}: {e}"))?;
    }
    Ok(())
}

/// The in-repo API test server with kiln's CRDs; the controller runs as its admin.
async fn test_server(options: &Options) -> Result<ApiReady, String> {
    let mut config = kiln_test_apiserver::Config {
        crd_dir: options.repo.join("crds"),
        kubeconfig_path: Some(options.work_dir.join("kubeconfig")),
        ..kiln_test_apiserver::Config::default()
    }
    .with_user("sandbox-admin", "admin", &["system:masters"]);
    for (i, (user, groups, _)) in PEOPLE.iter().enumerate() {
        config = config.with_user(&format!("sandbox-user-{i}"), user, groups);
    }
    let server = kiln_test_apiserver::start(config).await.map_err(|e| format!("API test server: {e}"))?;
    let client = client_for(&server.kubeconfig).await?;
    let mut people = Vec::new();
    for (i, (user, groups, _)) in PEOPLE.iter().enumerate() {
        people.push(person(options, user, groups, &server.kubeconfig_for_token(&format!("sandbox-user-{i}"))).await?);
    }
    create_namespaces(&client).await?;
    Ok(ApiReady {
        kubeconfig: server.kubeconfig_path.clone(),
        controller_kubeconfig: server.kubeconfig_path.clone(),
        controller_args: Vec::new(),
        cluster: Cluster::TestServer(server),
        client,
        people,
    })
}

/// A real kube-apiserver + etcd with the Helm chart installed as `helm install` would (its CRDs
/// first, then the templates rendered by the real Helm engine, server-side applied), each person
/// bound to the chart's ClusterRole for what they do, and the controller running as the chart's
/// ServiceAccount (a TokenRequest token): RBAC and the approval admission policy are the real
/// server's.
async fn real_cluster(options: &Options, say: &(dyn Fn(&str) + Send + Sync)) -> Result<ApiReady, String> {
    say("starting a real kube-apiserver + etcd (scripts/controlplane.sh built it)");
    let users: Vec<User> =
        PEOPLE.iter().map(|(user, groups, _)| groups.iter().fold(User::new(user), |u, g| u.in_group(g))).collect();
    // Starting waits (blocking) for the control plane's `ready` line.
    let cp = tokio::task::spawn_blocking(move || ControlPlane::try_start(&users))
        .await
        .map_err(|e| format!("starting the control plane: {e}"))??;
    let client = cp.client("admin").await?;
    let kubeconfig = options.work_dir.join("kubeconfig");
    std::fs::copy(cp.kubeconfig(), &kubeconfig).map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    let mut people = Vec::new();
    for (user, groups, _) in PEOPLE {
        people.push(person(options, user, groups, &cp.kubeconfig_for_token(&cp.token(user)?)).await?);
    }
    create_namespaces(&client).await?;

    say("installing the Helm chart (charts/kiln: CRDs, RBAC, approval admission policy, ServiceAccount)");
    let crds = options.repo.join("charts/kiln/crds");
    kiln_testkit::chart::install(&client, &options.repo, &crds, "", KILN_NS).await?;

    // What a platform team does after installing: bind people to the chart's roles.
    let bindings: Vec<Value> = PEOPLE
        .iter()
        .map(|(user, _, role)| {
            let short = user.split('@').next().unwrap_or(user);
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("sandbox-{short}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
            })
        })
        .collect();
    let yaml = bindings.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n");
    kiln_testkit::controlplane::apply_yaml(&client, &yaml, "sandbox")
        .await
        .map_err(|e| format!("role bindings: {e}"))?;

    let token = cp.service_account_token(KILN_NS, CONTROLLER_ACCOUNT).await?;
    let controller_kubeconfig = options.work_dir.join("kubeconfig-controller");
    std::fs::write(&controller_kubeconfig, cp.kubeconfig_for_token(&token))
        .map_err(|e| format!("{}: {e}", controller_kubeconfig.display()))?;
    Ok(ApiReady {
        kubeconfig,
        controller_kubeconfig,
        // As the chart runs it: kiln stamps its ServiceAccount's name as the requester.
        controller_args: vec![format!("--requested-by=system:serviceaccount:{KILN_NS}:{CONTROLLER_ACCOUNT}")],
        cluster: Cluster::Real(cp),
        client,
        people,
    })
}

/// The examples' AWS resources in one account.
async fn fixtures(account: &Account, env: &str) -> Result<(), String> {
    let prod = env == "prod";
    let names = EcsNames {
        prefix: "ingest".into(),
        cluster: if prod { "nc-core-prod" } else { "nc-core" }.into(),
        service: "ingest-worker".into(),
        load_balancer: if prod { "ingest-prod-alb" } else { "ingest-alb" }.into(),
        listener_port: 443,
        blue_target_group: if prod { "ingest-worker-prod-blue" } else { "ingest-worker-blue" }.into(),
        green_target_group: if prod { "ingest-worker-prod-green" } else { "ingest-worker-green" }.into(),
    };
    EcsFixture::create_named(account, &names, "api").await?;
    let v1 = "111111111111.dkr.ecr.ca-central-1.amazonaws.com/api-adapter@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    LambdaFixture::create_image(account, "api-adapter", "live", v1).await?;
    for alarm in ["ingest-5xx", "ingest-p95-checkout", "api-adapter-errors", "api-adapter-p95-invoke"] {
        kiln_testkit::put_alarm(&account.clients, alarm).await?;
        kiln_testkit::set_alarm_state(&account.clients, alarm, "OK").await?;
    }
    Ok(())
}

fn start_controller(
    options: &Options,
    api: &ApiReady,
    moto: &Moto,
    log: &PathBuf,
) -> Result<tokio::process::Child, String> {
    if !options.controller.exists() {
        return Err(format!(
            "kiln-controller not found at {}: build it first (cargo build -p kiln-controller) or pass --controller",
            options.controller.display()
        ));
    }
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let creds = MotoEndpoint::static_credentials();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?;
    tokio::process::Command::new(&options.controller)
        .env("KUBECONFIG", &api.controller_kubeconfig)
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env("AWS_REGION", REGION)
        .args(["--aws-endpoint-url", &moto.url(), "--aws-region", REGION])
        .args(["--metrics-addr", &metrics.to_string()])
        .args(["--alarm-poll-interval", "1s", "--alarm-history=false"])
        .args(["--lease-duration", "4s", "--lease-renew-deadline", "3s", "--lease-retry-period", "500ms"])
        .args(["--log-format", "text", "--log-level", "info"])
        .args(&api.controller_args)
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start {}: {e}", options.controller.display()))
}

/// Reads every YAML document of `examples/<file>`.
pub fn example(repo: &std::path::Path, file: &str) -> Result<Vec<Value>, String> {
    let path = repo.join("examples").join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_multiple::<Value>(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// How long to wait between polls.
pub const POLL: Duration = Duration::from_millis(300);
