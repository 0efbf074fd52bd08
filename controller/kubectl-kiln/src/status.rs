//! `kubectl kiln status <release> [--watch] [-o json|yaml]`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::{Promotion, Release};
use kube::runtime::{WatchStreamExt, reflector, watcher};

use crate::cli::{Output, StatusArgs};
use crate::cluster::Cluster;
use crate::error::CliError;
use crate::report::{self, ReleaseReport};

/// Serializes a document as pretty JSON or YAML.
pub fn document<T: serde::Serialize>(output: Output, doc: &T) -> Result<String, CliError> {
    match output {
        Output::Yaml => serde_saphyr::to_string(doc).map_err(|e| CliError::Other(format!("writing YAML: {e}"))),
        _ => serde_json::to_string_pretty(doc)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Other(format!("writing JSON: {e}"))),
    }
}

fn render(output: Output, report: &ReleaseReport, now: Timestamp) -> Result<String, CliError> {
    match output {
        Output::Text => Ok(report::render(report, now)),
        other => document(other, report),
    }
}

async fn environments(cluster: &Cluster) -> Result<BTreeMap<String, EnvironmentSpec>, CliError> {
    Ok(cluster
        .list_environments()
        .await?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.metadata.name.clone().map(|n| (n, e.spec)))
        .collect())
}

/// Runs the command.
pub async fn run(cluster: &Cluster, args: &StatusArgs) -> Result<(), CliError> {
    cluster.preflight().await?;
    let release = cluster.release(&args.release).await?;
    let envs = environments(cluster).await?;
    if !args.watch {
        let promotions = cluster.list_promotions().await?;
        let report = report::build(&release, &promotions, &envs);
        print!("{}", render(args.output, &report, Timestamp::now())?);
        return Ok(());
    }
    watch(cluster, args, envs).await
}

/// Watches the Release and the namespace's Promotions and redraws whenever what would be printed
/// changes (in text mode also as a bake's time left counts down). Ctrl-C stops.
async fn watch(cluster: &Cluster, args: &StatusArgs, envs: BTreeMap<String, EnvironmentSpec>) -> Result<(), CliError> {
    let (releases, release_writer) = reflector::store::<Release>();
    let (promotions, promotion_writer) = reflector::store::<Promotion>();
    let release_events = reflector(
        release_writer,
        watcher(cluster.releases(), watcher::Config::default().fields(&format!("metadata.name={}", args.release)))
            .default_backoff(),
    )
    .map(|e| classify(e, 0))
    .boxed();
    let promotion_events =
        reflector(promotion_writer, watcher(cluster.promotions(), watcher::Config::default()).default_backoff())
            .map(|e| classify(e, 1))
            .boxed();
    let mut events = futures::stream::select(release_events, promotion_events);
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = String::new();
    let mut dirty = true;
    let mut last_error = String::new();
    // Draw only once both caches hold their first full list (a watcher's InitDone).
    let mut synced = [false, false];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            event = events.next() => match event {
                Some(Change::Error(err)) => {
                    if err != last_error {
                        eprintln!("warning: watch: {err} (retrying)");
                        last_error = err;
                    }
                }
                Some(Change::Synced(i)) => {
                    if let Some(s) = synced.get_mut(i) {
                        *s = true;
                    }
                    dirty = true;
                }
                Some(Change::Object) => dirty = true,
                None => return Err(CliError::Other("the watch ended".into())),
            },
            _ = tick.tick() => {
                // Redraw at most once a tick: a burst of status writes becomes one frame.
                // Without changes, only a terminal's tree is redrawn (a bake's time left counts down).
                let countdown = tty && args.output == Output::Text;
                if !synced.iter().all(|s| *s) || (!dirty && !countdown) {
                    continue;
                }
                dirty = false;
                let Some(release) = releases.get(&reflector::ObjectRef::new(&args.release).within(&cluster.namespace)) else {
                    let text = format!("release {} not found in namespace {} (deleted?)\n", args.release, cluster.namespace);
                    if text != last {
                        print!("{text}");
                        last = text;
                    }
                    continue;
                };
                let promos: Vec<Promotion> = promotions
                    .state()
                    .iter()
                    .filter(|p| p.spec.release == args.release || p.spec.rollback.as_ref().and_then(|r| r.from_release.as_deref()) == Some(args.release.as_str()))
                    .map(|p| (**p).clone())
                    .collect();
                let report = report::build(&release, &promos, &envs);
                let text = render(args.output, &report, Timestamp::now())?;
                if text == last {
                    continue;
                }
                let mut out = std::io::stdout().lock();
                let frame = if tty && args.output == Output::Text {
                    // Clear the screen and draw from the top, like `watch`.
                    format!("\x1b[2J\x1b[H{text}")
                } else if last.is_empty() || args.output != Output::Text {
                    text.clone()
                } else {
                    format!("\n{text}")
                };
                let _ = out.write_all(frame.as_bytes());
                let _ = out.flush();
                last = text;
            }
        }
    }
}

/// What a watch event means for the picture.
enum Change {
    /// An object changed.
    Object,
    /// Watch `i` holds its first full list.
    Synced(usize),
    /// The watch failed (it retries with backoff).
    Error(String),
}

fn classify<K>(event: Result<watcher::Event<K>, watcher::Error>, i: usize) -> Change {
    match event {
        Ok(watcher::Event::InitDone) => Change::Synced(i),
        Ok(_) => Change::Object,
        Err(e) => Change::Error(e.to_string()),
    }
}
