//! The sandbox's world: moto with three accounts and the examples' AWS resources, the API test
//! server with kiln's CRDs and a few users, and the controller process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kiln_test_apiserver::TestServer;
use kiln_testkit::{Account, EcsFixture, EcsNames, LambdaFixture, Moto, MotoEndpoint};
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
    /// The API server (stopped on drop).
    pub server: TestServer,
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

const PEOPLE: [(&str, &[&str]); 5] = [
    ("alice@example.com", &["kiln:releasers"]),
    ("relmgr@example.com", &["kiln:release-engineering"]),
    ("seclead@example.com", &["kiln:security"]),
    ("pm-ingest@example.com", &["kiln:product"]),
    ("oncall@example.com", &["kiln:sre"]),
];

async fn client_for(kubeconfig: &str) -> Result<kube::Client, String> {
    let kc = Kubeconfig::from_yaml(kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    kube::Client::try_from(cfg).map_err(|e| format!("client: {e}"))
}

impl World {
    /// Starts moto, the API server and the controller, and sets up the accounts.
    pub async fn start(options: &Options, say: &(dyn Fn(&str) + Send + Sync)) -> Result<World, String> {
        let started = Instant::now();
        std::fs::create_dir_all(&options.work_dir).map_err(|e| format!("{}: {e}", options.work_dir.display()))?;

        say("starting moto (simulated AWS) on 127.0.0.1");
        let moto = Moto::try_start()?;
        let mut config = kiln_test_apiserver::Config {
            crd_dir: options.repo.join("crds"),
            kubeconfig_path: Some(options.work_dir.join("kubeconfig")),
            ..kiln_test_apiserver::Config::default()
        }
        .with_user("sandbox-admin", "admin", &["system:masters"]);
        for (i, (user, groups)) in PEOPLE.iter().enumerate() {
            config = config.with_user(&format!("sandbox-user-{i}"), user, groups);
        }
        let server = kiln_test_apiserver::start(config).await.map_err(|e| format!("API test server: {e}"))?;
        say(&format!("started the Kubernetes API test server at {}", server.url));
        let client = client_for(&server.kubeconfig).await?;
        let mut people = Vec::new();
        for (i, (user, groups)) in PEOPLE.iter().enumerate() {
            let yaml = server.kubeconfig_for_token(&format!("sandbox-user-{i}"));
            let short = user.split('@').next().unwrap_or(user);
            let path = options.work_dir.join(format!("kubeconfig-{short}"));
            std::fs::write(&path, &yaml).map_err(|e| format!("{}: {e}", path.display()))?;
            people.push(Person { user, groups, kubeconfig: path, client: client_for(&yaml).await? });
        }

        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in ["kiln-system", "ingest", "api"] {
            let obj: Namespace =
                serde_json::from_value(json!({"metadata": {"name": ns}})).map_err(|e| e.to_string())?;
            namespaces.create(&PostParams::default(), &obj).await.map_err(|e| format!("namespace {ns}: {e}"))?;
        }

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
        let controller = start_controller(options, &server, &moto, &controller_log)?;
        say(&format!("started kiln-controller (log: {})", controller_log.display()));

        Ok(World {
            moto,
            kubeconfig: server.kubeconfig_path.clone(),
            server,
            client,
            accounts,
            people,
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
            self.server.url
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
    server: &TestServer,
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
        .env("KUBECONFIG", &server.kubeconfig_path)
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env("AWS_REGION", REGION)
        .args(["--aws-endpoint-url", &moto.url(), "--aws-region", REGION])
        .args(["--metrics-addr", &metrics.to_string()])
        .args(["--alarm-poll-interval", "1s", "--alarm-history=false"])
        .args(["--lease-duration", "4s", "--lease-renew-deadline", "3s", "--lease-retry-period", "500ms"])
        .args(["--log-format", "text", "--log-level", "info"])
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
