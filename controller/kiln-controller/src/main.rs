//! `kiln-controller`: see `kiln-controller --help`.
#![forbid(unsafe_code)]

use clap::Parser;
use kiln_controller::config::Config;
use kiln_controller::run::{Exit, run};

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    if let Some(host) = &config.check_resolve {
        return check_resolve(host);
    }
    kiln_controller::logging::init(&config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln-controller: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(Exit::Shutdown) => std::process::ExitCode::SUCCESS,
        Ok(Exit::LostLease) => {
            tracing::error!("lost the leader Lease; exiting so a restart begins as a standby");
            std::process::ExitCode::from(2)
        }
        Ok(Exit::CachesFailed) => {
            tracing::error!("a watch ended before its first list; exiting");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "kiln-controller stopped");
            eprintln!("kiln-controller: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--check-resolve HOST`: the addresses HOST resolves to, one per line, through the same
/// resolver the HTTP clients use (getaddrinfo).
fn check_resolve(host: &str) -> std::process::ExitCode {
    use std::net::ToSocketAddrs;
    match (host, 443).to_socket_addrs() {
        Ok(addrs) => {
            let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            ips.dedup();
            if ips.is_empty() {
                eprintln!("kiln-controller: {host} resolves to no address");
                return std::process::ExitCode::FAILURE;
            }
            println!("{}", ips.join("\n"));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln-controller: cannot resolve {host}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
