//! The command line: kubectl's connection flags on every command, one subcommand per task.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The kubectl plugin for kiln: see where a release stands, approve, promote, abort, retry and
/// roll back, check freeze windows, and lint manifests before they reach the cluster.
///
/// Installed on PATH as `kubectl-kiln`, it runs as `kubectl kiln ...`.
#[derive(Debug, Parser)]
#[command(name = "kubectl-kiln", bin_name = "kubectl-kiln", version, propagate_version = true)]
pub struct Cli {
    /// Connection and namespace flags (as kubectl's).
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl's connection flags, accepted before or after the subcommand.
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use (default: the context's).
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use (default: the context's).
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The namespace kiln's controller runs in: its FreezeWindows apply to every namespace.
    #[arg(long, global = true, value_name = "NAMESPACE", default_value = "kiln-system")]
    pub controller_namespace: String,
}

/// Output formats of commands that print a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// A stable JSON document (see docs/cli.md).
    Json,
    /// The same document as YAML.
    Yaml,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a release across its environments: phase, traffic step, gates, bake, signals,
    /// approvals and rollbacks.
    #[command(visible_alias = "get")]
    Status(StatusArgs),
    /// Approve the Promotion of a release into an environment, as the user the API server says
    /// you are.
    Approve(ApproveArgs),
    /// Create the Promotion of a release into an environment (for environments that are not
    /// `auto`).
    Promote(PromoteArgs),
    /// Abort the Promotion of a release into an environment: kiln rolls traffic back now.
    Abort(AbortArgs),
    /// Retry a Failed or RolledBack Promotion from its gates.
    Retry(RetryArgs),
    /// Roll an environment back to the last Release of a service that succeeded there.
    Rollback(RollbackArgs),
    /// Freeze windows: which are active now, until when, and which come next.
    Freeze(FreezeArgs),
    /// Evidence records: check an archived record against the Promotion's status.
    Evidence(EvidenceArgs),
    /// Check manifests offline (schema, CEL rules, references between files) and print the plan.
    Lint(LintArgs),
    /// Print the user the API server sees (what approvals and requests are recorded as).
    Whoami,
    /// Print a shell completion script.
    Completion(CompletionArgs),
}

/// `status <release>`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The Release.
    pub release: String,
    /// Keep watching and redraw on every change (Ctrl-C stops).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Which Promotion a command acts on.
#[derive(Debug, Args)]
pub struct Target {
    /// The Release.
    pub release: String,
    /// The environment.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub env: String,
    /// Act on this Promotion instead of the release's newest one into the environment (e.g. a
    /// Promotion named by GitOps).
    #[arg(long, value_name = "NAME")]
    pub promotion: Option<String>,
}

/// `approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The Promotion to approve.
    #[command(flatten)]
    pub target: Target,
    /// The role you approve in (default: the one role the environment still needs).
    #[arg(long)]
    pub role: Option<String>,
    /// A note for the audit trail, e.g. a CAB reference.
    #[arg(long)]
    pub comment: Option<String>,
}

/// `promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The Release.
    pub release: String,
    /// The environment.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub env: String,
    /// The Promotion's name (default: `<release>-<env>`, the name kiln itself uses).
    #[arg(long)]
    pub name: Option<String>,
    /// Deploy even though the environment runs a newer version of the service (a deliberate
    /// downgrade: sets spec.downgrade). Without it kiln refuses an older version.
    #[arg(long)]
    pub downgrade: bool,
}

/// `abort`.
#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The Promotion to abort.
    #[command(flatten)]
    pub target: Target,
    /// Wait until the Promotion has ended (RolledBack or Aborted) and print how.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (Go duration).
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub timeout: String,
}

/// `retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The Promotion to retry.
    #[command(flatten)]
    pub target: Target,
}

/// `rollback <service>`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The service (`spec.service` of its Releases).
    pub service: String,
    /// The environment to roll back.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub env: String,
    /// The Release to return to (default: the last one that succeeded in the environment before
    /// the current one).
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    /// Why (recorded in the Promotion and its evidence).
    #[arg(long)]
    pub reason: String,
    /// Wait until the rollback has ended and print how.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (Go duration).
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub timeout: String,
}

/// `evidence`.
#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// verify.
    #[command(subcommand)]
    pub command: EvidenceCommand,
}

/// Evidence subcommands.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Fetch a Promotion's archived evidence record from S3 with your own AWS credentials,
    /// recompute its SHA-256 and compare it with the Promotion's status.evidenceSha256. Exits
    /// non-zero on any mismatch.
    Verify(EvidenceVerifyArgs),
}

/// `evidence verify <promotion>`.
#[derive(Debug, Args)]
pub struct EvidenceVerifyArgs {
    /// The Promotion (its name).
    pub promotion: String,
    /// The bucket's AWS region (default: the region the Promotion changed, from its status).
    #[arg(long)]
    pub region: Option<String>,
}

/// `freeze`.
#[derive(Debug, Args)]
pub struct FreezeArgs {
    /// list or status.
    #[command(subcommand)]
    pub command: FreezeCommand,
}

/// Freeze subcommands.
#[derive(Debug, Subcommand)]
pub enum FreezeCommand {
    /// Every window in scope, with its spans, whether it is active and when it next starts.
    List(FreezeQuery),
    /// Per environment: frozen or not, until when, by which windows, and the next freeze.
    Status(FreezeQuery),
}

/// What `freeze list|status` looks at.
#[derive(Debug, Args)]
pub struct FreezeQuery {
    /// Only this environment.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub env: Option<String>,
    /// Only windows that cover this service (default: every window, whatever its services).
    #[arg(long)]
    pub service: Option<String>,
    /// Evaluate at this instant (RFC 3339, e.g. 2026-11-20T23:00:00Z) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files and directories (directories: their *.yaml, *.yml and *.json files).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Descend into subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Evaluate freeze windows in the plan at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Do not print the plan lines.
    #[arg(long)]
    pub no_plan: bool,
    /// Output format (text or json).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Shells `completion` knows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}
