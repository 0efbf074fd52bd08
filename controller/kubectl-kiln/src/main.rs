//! `kubectl-kiln`: the kubectl plugin for kiln. See `kubectl kiln --help` and docs/cli.md.
//!
//! - [`cli`]: the command line (kubectl's connection flags on every command).
//! - [`cluster`]: kubeconfig, client, discovery preflight, `SelfSubjectReview`, helpful errors.
//! - [`report`] and [`status`]: `status`/`get`, the tree and the stable JSON document, `--watch`.
//! - [`approve`]: approvals bound to the caller's identity, checked before writing.
//! - [`actions`]: `promote`, `abort`, `retry`, `rollback`.
//! - [`freeze`]: `freeze list|status`.
//! - [`lint`]: offline checks of manifests with the embedded CRDs, references and a plan.
//!
//! Exit status: 0 on success, 1 on an error (or lint errors), 2 on a command-line error.
#![forbid(unsafe_code)]

mod actions;
mod approve;
mod cli;
mod cluster;
mod error;
mod evidence;
mod freeze;
mod lint;
mod report;
mod status;
mod target;
mod timefmt;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, EvidenceCommand, Shell};
use error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // Offline commands need no runtime and no kubeconfig.
        Command::Lint(args) => {
            return match lint::run(args, cli.global.namespace.as_deref(), &cli.global.controller_namespace) {
                Ok(false) => ExitCode::SUCCESS,
                Ok(true) => ExitCode::FAILURE,
                Err(e) => fail(&e),
            };
        }
        Command::Completion(args) => {
            let shell = match args.shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "kubectl-kiln", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&CliError::Other(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(online(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &CliError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        CliError::Usage(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

async fn online(cli: &Cli) -> Result<(), CliError> {
    let cluster = cluster::connect(&cli.global).await?;
    let controller_ns = &cli.global.controller_namespace;
    match &cli.command {
        Command::Status(args) => status::run(&cluster, args).await,
        Command::Approve(args) => approve::run(&cluster, args, controller_ns).await,
        Command::Promote(args) => actions::promote(&cluster, args).await,
        Command::Abort(args) => actions::abort(&cluster, args).await,
        Command::Retry(args) => actions::retry(&cluster, args).await,
        Command::Rollback(args) => actions::rollback(&cluster, args).await,
        Command::Freeze(args) => freeze::run(&cluster, &args.command, controller_ns).await,
        Command::Evidence(args) => match &args.command {
            EvidenceCommand::Verify(v) => evidence::verify(&cluster, v).await,
        },
        Command::Whoami => {
            let me = cluster.whoami().await?;
            println!("{}", me.username);
            if !me.groups.is_empty() {
                println!("groups: {}", me.groups.join(", "));
            }
            Ok(())
        }
        Command::Lint(_) | Command::Completion(_) => Ok(()),
    }
}
