//! The kiln sandbox: everything kiln needs, on 127.0.0.1, in one process tree.
//!
//! - moto plays AWS: three accounts (dev, stg, prod) each with the ECS service behind an ALB and
//!   the Lambda function and alarms the `examples/` manifests name;
//! - the in-repo Kubernetes API test server plays the cluster (kiln's CRDs, admission, users), or
//!   with [`Options::real`] a real kube-apiserver + etcd with the Helm chart installed;
//! - the real `kiln-controller` binary runs against both;
//! - `examples/` are applied, with the clock compressed (bakes of seconds, a freeze that ends
//!   shortly), and a release is narrated as kiln records it in the Promotions' timelines.
//!
//! Scripted (default): the scenario runs itself and [`run`] reports whether it reached the
//! expected end states. Interactive: the same world stays up for `kubectl` and `kubectl kiln`.
#![forbid(unsafe_code)]

mod scenario;
mod world;

use std::path::PathBuf;
use std::time::Duration;

pub use scenario::Outcome;

/// How to run the sandbox.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `kiln-controller` binary.
    pub controller: PathBuf,
    /// The repository root (for `examples/` and `crds/`).
    pub repo: PathBuf,
    /// Where kubeconfigs and the controller's log go.
    pub work_dir: PathBuf,
    /// Stay up after setting up, for `kubectl` (no scripted scenario).
    pub interactive: bool,
    /// Run on a real kube-apiserver + etcd (`scripts/controlplane.sh` builds them; the chart's
    /// Helm engine must be in `.venv-chart`) with the chart installed, instead of the in-repo API
    /// test server.
    pub real: bool,
    /// Give up on the scripted scenario after this long.
    pub timeout: Duration,
}

/// Runs the sandbox until the scenario ends (scripted) or Ctrl-C (interactive). Progress lines
/// go to `say`.
pub async fn run(options: &Options, say: &(dyn Fn(&str) + Send + Sync)) -> Result<Outcome, String> {
    let world = world::World::start(options, say).await?;
    if options.interactive {
        scenario::interactive_setup(&world, say).await?;
        world.print_access(say);
        let narrator = scenario::Narrator::new(&world);
        tokio::select! {
            _ = narrator.follow(say) => {},
            _ = tokio::signal::ctrl_c() => say("stopping (Ctrl-C)"),
        }
        return Ok(Outcome::default());
    }
    let outcome = tokio::select! {
        r = tokio::time::timeout(options.timeout, scenario::scripted(&world, say)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(format!("the scenario did not finish within {:?}; controller log: {}", options.timeout, world.controller_log.display())),
        },
        _ = tokio::signal::ctrl_c() => return Err("stopped (Ctrl-C)".into()),
    };
    Ok(outcome)
}
