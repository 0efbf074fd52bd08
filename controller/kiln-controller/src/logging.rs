//! Logs: JSON lines (or text) filtered by `--log-level`; reconcile spans carry the release,
//! environment and digest fields.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. A bad filter falls back to `info` (and says so) rather than
/// refusing to start.
pub fn init(level: &str, format: LogFormat) {
    let (filter, bad) = match EnvFilter::try_new(level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if let Err(e) = result {
        eprintln!("kiln-controller: logging already initialised: {e}");
    }
    if let Some(e) = bad {
        tracing::warn!(filter = level, error = %e, "invalid log filter; using info");
    }
}
