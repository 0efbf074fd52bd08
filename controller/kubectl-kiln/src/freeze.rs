//! `kubectl kiln freeze list|status [--env E] [--service S] [--at TIME]`: the FreezeWindows in
//! scope for the namespace (its own and the controller namespace's), evaluated by kiln's own
//! decision core, with every time in the window's zone and the viewer's.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::{ApprovalRequirement, FreezeWindow};
use kiln_core::freeze::{self, CompiledWindow};
use serde::Serialize;

use crate::cli::{FreezeCommand, FreezeQuery, Output};
use crate::cluster::Cluster;
use crate::error::CliError;
use crate::report::needs_phrase;
use crate::status::document;
use crate::timefmt;

/// `apiVersion` of the document.
pub const API_VERSION: &str = "cli.kiln.dev/v1";

/// What `freeze list` and `freeze status` print as JSON/YAML.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FreezeReport {
    /// Always [`API_VERSION`].
    pub api_version: &'static str,
    /// Always `FreezeReport`.
    pub kind: &'static str,
    /// The instant evaluated (RFC 3339, UTC).
    pub at: String,
    /// The viewer's time zone.
    pub viewer_time_zone: String,
    /// The windows in scope (`list`; `status` also fills it).
    pub windows: Vec<WindowReport>,
    /// Per environment (`status`; empty for `list`).
    pub environments: Vec<EnvironmentFreeze>,
}

/// One FreezeWindow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowReport {
    /// `namespace/name`.
    pub name: String,
    /// The environments it freezes (empty: all).
    pub environments: Vec<String>,
    /// The services it freezes (empty: all).
    pub services: Vec<String>,
    /// Its IANA time zone.
    pub time_zone: String,
    /// Why it exists.
    pub reason: Option<String>,
    /// Weekly spans, e.g. `Friday 17:00 → Monday 09:00`.
    pub recurring: Vec<String>,
    /// One-off spans.
    pub absolute: Vec<AbsoluteReport>,
    /// Who may deploy anyway.
    pub exceptions: Option<ExceptionsReport>,
    /// Why kiln cannot evaluate it (then every Promotion it could cover waits).
    pub error: Option<String>,
    /// Whether it is in effect at `at`.
    pub active: bool,
    /// While active: when its freeze (adjoining spans chained) ends.
    pub active_until: Option<String>,
    /// When its next freeze starts (after `activeUntil` while active).
    pub next_start: Option<String>,
}

/// A one-off span.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AbsoluteReport {
    /// Start.
    pub start: String,
    /// End (exclusive).
    pub end: String,
    /// Why.
    pub reason: Option<String>,
}

/// A window's exceptions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionsReport {
    /// Release types that may ask.
    pub release_types: Vec<String>,
    /// Approvals needed.
    pub approvals: Vec<ApprovalRequirement>,
}

/// One environment's freeze state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentFreeze {
    /// The environment.
    pub environment: String,
    /// Whether it is frozen at `at`.
    pub frozen: bool,
    /// When the whole frozen period (every window chained) ends.
    pub frozen_until: Option<String>,
    /// The active windows, each with kiln's gate message.
    pub active: Vec<ActiveReport>,
    /// When the next freeze begins.
    pub next_start: Option<String>,
    /// Windows covering this environment that kiln cannot evaluate.
    pub invalid: Vec<String>,
}

/// An active window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveReport {
    /// `namespace/name`.
    pub window: String,
    /// Why.
    pub reason: Option<String>,
    /// When this window's freeze ends.
    pub until: String,
    /// The window's zone.
    pub time_zone: String,
    /// The message kiln's freeze gate shows.
    pub message: String,
}

fn weekday(d: kiln_api::freeze_window::Weekday) -> String {
    crate::report::enum_name(&d)
}

/// A window with services cleared unless the viewer asked about one service, so "frozen or not"
/// is about the environment; the services are shown next to it.
fn compile(w: &FreezeWindow, service: Option<&str>) -> Result<CompiledWindow, String> {
    let mut spec = w.spec.clone();
    if service.is_none() {
        spec.services.clear();
    }
    CompiledWindow::compile(
        w.metadata.namespace.as_deref().unwrap_or_default(),
        w.metadata.name.as_deref().unwrap_or_default(),
        &spec,
    )
    .map_err(|e| e.to_string())
}

fn covers(w: &FreezeWindow, env: Option<&str>, service: Option<&str>) -> bool {
    env.is_none_or(|e| w.spec.environments.is_empty() || w.spec.environments.iter().any(|x| x == e))
        && service.is_none_or(|s| w.spec.services.is_empty() || w.spec.services.iter().any(|x| x == s))
}

/// Builds the report, without any I/O. `env_names` are the environments `status` reports on.
pub fn build(
    windows: &[FreezeWindow],
    env_names: &[String],
    query_env: Option<&str>,
    service: Option<&str>,
    at: Timestamp,
    with_environments: bool,
) -> FreezeReport {
    let mut sorted: Vec<&FreezeWindow> = windows.iter().filter(|w| covers(w, query_env, service)).collect();
    sorted.sort_by_key(|w| (w.metadata.namespace.clone(), w.metadata.name.clone()));
    let compiled: Vec<(&FreezeWindow, Result<CompiledWindow, String>)> =
        sorted.iter().map(|w| (*w, compile(w, service))).collect();
    let window_reports = compiled
        .iter()
        .map(|(w, c)| {
            let status = c.as_ref().ok().map(|c| freeze::window_status(c, at)).unwrap_or_default();
            WindowReport {
                name: format!(
                    "{}/{}",
                    w.metadata.namespace.as_deref().unwrap_or_default(),
                    w.metadata.name.as_deref().unwrap_or_default()
                ),
                environments: w.spec.environments.clone(),
                services: w.spec.services.clone(),
                time_zone: c.as_ref().map(|c| c.time_zone().to_string()).unwrap_or_else(|_| w.spec.time_zone.clone()),
                reason: w.spec.reason.clone(),
                recurring: w
                    .spec
                    .recurring
                    .iter()
                    .map(|s| format!("{} {} → {} {}", weekday(s.from.day), s.from.time, weekday(s.to.day), s.to.time))
                    .collect(),
                absolute: w
                    .spec
                    .absolute
                    .iter()
                    .map(|s| AbsoluteReport {
                        start: s.start.0.to_string(),
                        end: s.end.0.to_string(),
                        reason: s.reason.clone(),
                    })
                    .collect(),
                exceptions: w.spec.exceptions.as_ref().map(|e| ExceptionsReport {
                    release_types: e.release_types.iter().map(|t| t.as_str().to_string()).collect(),
                    approvals: e.approvals.clone(),
                }),
                error: c.as_ref().err().cloned(),
                active: status.active,
                active_until: status.active_until.map(|t| t.to_string()),
                next_start: status.next_start.map(|t| t.to_string()),
            }
        })
        .collect();
    let environments = if with_environments {
        env_names
            .iter()
            .map(|env| {
                let valid: Vec<CompiledWindow> = compiled
                    .iter()
                    .filter(|(w, _)| covers(w, Some(env), service))
                    .filter_map(|(_, c)| c.as_ref().ok().cloned())
                    .collect();
                let invalid = compiled
                    .iter()
                    .filter(|(w, _)| covers(w, Some(env), service))
                    .filter_map(|(w, c)| {
                        c.as_ref().err().map(|e| {
                            format!(
                                "FreezeWindow {}/{} is invalid ({e}); kiln holds every Promotion it could cover",
                                w.metadata.namespace.as_deref().unwrap_or_default(),
                                w.metadata.name.as_deref().unwrap_or_default()
                            )
                        })
                    })
                    .collect();
                let verdict = freeze::evaluate(&valid, env, service.unwrap_or_default(), at);
                EnvironmentFreeze {
                    environment: env.clone(),
                    frozen: verdict.is_frozen(),
                    frozen_until: verdict.frozen_until.map(|t| t.to_string()),
                    active: verdict
                        .active
                        .iter()
                        .map(|a| ActiveReport {
                            window: a.window.clone(),
                            reason: a.reason.clone(),
                            until: a.until.to_string(),
                            time_zone: a.time_zone.clone(),
                            message: freeze::describe(a),
                        })
                        .collect(),
                    next_start: verdict.next_start.map(|t| t.to_string()),
                    invalid,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    FreezeReport {
        api_version: API_VERSION,
        kind: "FreezeReport",
        at: at.to_string(),
        viewer_time_zone: timefmt::local_zone_name(at),
        windows: window_reports,
        environments,
    }
}

fn when(t: &str, zone: &str) -> String {
    t.parse::<Timestamp>().map(|t| timefmt::both(t, zone)).unwrap_or_else(|_| t.to_string())
}

fn exceptions_line(e: &ExceptionsReport) -> String {
    if e.release_types.is_empty() {
        return "none".into();
    }
    let approvals =
        if e.approvals.is_empty() { String::new() } else { format!(" with {}", needs_phrase(&e.approvals)) };
    format!("{} releases{approvals}", e.release_types.join(", "))
}

/// `freeze list` for people.
pub fn render_list(report: &FreezeReport) -> String {
    let mut out = String::new();
    if report.windows.is_empty() {
        out.push_str("no FreezeWindows in scope\n");
        return out;
    }
    for w in &report.windows {
        let envs = if w.environments.is_empty() { "every environment".into() } else { w.environments.join(", ") };
        let reason = w.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default();
        out.push_str(&format!("FreezeWindow {}  ({envs}; {}){reason}\n", w.name, w.time_zone));
        if !w.services.is_empty() {
            out.push_str(&format!("  only services: {}\n", w.services.join(", ")));
        }
        for r in &w.recurring {
            out.push_str(&format!("  weekly: {r} {}\n", w.time_zone));
        }
        for a in &w.absolute {
            let reason = a.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            out.push_str(&format!(
                "  from {} to {}{reason}\n",
                when(&a.start, &w.time_zone),
                when(&a.end, &w.time_zone)
            ));
        }
        if let Some(e) = &w.exceptions {
            out.push_str(&format!("  exceptions: {}\n", exceptions_line(e)));
        }
        if let Some(err) = &w.error {
            out.push_str(&format!("  ✗ invalid: {err}; kiln holds every Promotion it could cover\n"));
            continue;
        }
        match (&w.active, &w.active_until) {
            (true, Some(until)) => out.push_str(&format!("  ACTIVE now, until {}\n", when(until, &w.time_zone))),
            _ => out.push_str("  not active now\n"),
        }
        match &w.next_start {
            Some(n) => out.push_str(&format!("  next: {}\n", when(n, &w.time_zone))),
            None => out.push_str("  next: none ahead\n"),
        }
    }
    out
}

/// `freeze status` for people.
pub fn render_status(report: &FreezeReport) -> String {
    let mut out = String::new();
    let at = report.at.parse::<Timestamp>().map(timefmt::in_local_zone).unwrap_or_else(|_| report.at.clone());
    out.push_str(&format!("at {at}\n"));
    let zone_of = |window: &str| {
        report.windows.iter().find(|w| w.name == window).map(|w| w.time_zone.clone()).unwrap_or_else(|| "UTC".into())
    };
    for e in &report.environments {
        let first_zone = e.active.first().map(|a| a.time_zone.clone()).unwrap_or_else(|| "UTC".into());
        match (&e.frozen, &e.frozen_until) {
            (true, Some(until)) => {
                out.push_str(&format!("{}: FROZEN until {}\n", e.environment, when(until, &first_zone)));
            }
            _ if !e.invalid.is_empty() => {
                out.push_str(&format!("{}: held (a window cannot be evaluated)\n", e.environment))
            }
            _ => out.push_str(&format!("{}: not frozen\n", e.environment)),
        }
        for a in &e.active {
            let w = report.windows.iter().find(|w| w.name == a.window);
            let exceptions = w
                .and_then(|w| w.exceptions.as_ref())
                .map(|x| format!("; exceptions: {}", exceptions_line(x)))
                .unwrap_or_else(|| "; no exceptions".into());
            out.push_str(&format!("  ✗ {}{exceptions}\n", a.message));
        }
        for i in &e.invalid {
            out.push_str(&format!("  ✗ {i}\n"));
        }
        let next_zone = e
            .active
            .first()
            .map(|a| a.time_zone.clone())
            .or_else(|| {
                report
                    .windows
                    .iter()
                    .filter(|w| w.environments.is_empty() || w.environments.contains(&e.environment))
                    .filter(|w| w.next_start.is_some() && w.next_start == e.next_start)
                    .map(|w| zone_of(&w.name))
                    .next()
            })
            .unwrap_or_else(|| "UTC".into());
        match &e.next_start {
            Some(n) => out.push_str(&format!("  next freeze: {}\n", when(n, &next_zone))),
            None => out.push_str("  next freeze: none ahead\n"),
        }
    }
    out
}

/// Environments in promotion order (by depth in the upstream graph, then name).
pub fn ordered_environments(envs: &BTreeMap<String, EnvironmentSpec>) -> Vec<String> {
    fn depth(name: &str, envs: &BTreeMap<String, EnvironmentSpec>, seen: &mut Vec<String>) -> usize {
        if seen.iter().any(|s| s == name) {
            return 0; // a cycle: kiln reports it; here it only must not loop
        }
        seen.push(name.to_string());
        let d =
            envs.get(name).map(|e| e.upstream.iter().map(|u| 1 + depth(u, envs, seen)).max().unwrap_or(0)).unwrap_or(0);
        seen.pop();
        d
    }
    let mut names: Vec<(usize, String)> = envs.keys().map(|n| (depth(n, envs, &mut Vec::new()), n.clone())).collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}

/// Runs `freeze list` or `freeze status`.
pub async fn run(cluster: &Cluster, command: &FreezeCommand, controller_namespace: &str) -> Result<(), CliError> {
    let (query, status) = match command {
        FreezeCommand::List(q) => (q, false),
        FreezeCommand::Status(q) => (q, true),
    };
    let at = timefmt::instant(query.at.as_deref())?;
    cluster.preflight().await?;
    let windows = cluster.freeze_windows(controller_namespace).await?;
    let env_names = match &query.env {
        Some(e) => vec![e.clone()],
        None => {
            let envs: BTreeMap<String, EnvironmentSpec> = cluster
                .list_environments()
                .await?
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| e.metadata.name.clone().map(|n| (n, e.spec)))
                .collect();
            let mut names = ordered_environments(&envs);
            for w in &windows {
                for e in &w.spec.environments {
                    if !names.contains(e) {
                        names.push(e.clone());
                    }
                }
            }
            names
        }
    };
    let report = build(&windows, &env_names, query.env.as_deref(), query.service.as_deref(), at, status);
    print(query, &report, status)
}

fn print(query: &FreezeQuery, report: &FreezeReport, status: bool) -> Result<(), CliError> {
    match query.output {
        Output::Text if status => print!("{}", render_status(report)),
        Output::Text => print!("{}", render_list(report)),
        other => print!("{}", document(other, report)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::freeze_window::{FreezeExceptions, FreezeWindowSpec, RecurringSpan, Weekday, WeeklyTime};

    fn weekend() -> FreezeWindow {
        let mut w = FreezeWindow::new(
            "weekend",
            FreezeWindowSpec {
                environments: vec!["prod".into()],
                services: vec![],
                time_zone: "America/New_York".into(),
                recurring: vec![RecurringSpan {
                    from: WeeklyTime { day: Weekday::Friday, time: "17:00".into() },
                    to: WeeklyTime { day: Weekday::Monday, time: "09:00".into() },
                }],
                absolute: vec![],
                exceptions: Some(FreezeExceptions {
                    release_types: vec![kiln_api::ReleaseType::Emergency],
                    approvals: vec![ApprovalRequirement { role: "sre".into(), count: 1 }],
                }),
                reason: Some("weekend freeze".into()),
            },
        );
        w.metadata.namespace = Some("kiln-system".into());
        w
    }

    #[test]
    fn a_weekend_freeze_is_active_on_saturday_until_monday() {
        // Saturday 2026-11-21 12:00 New York.
        let at: Timestamp = "2026-11-21T17:00:00Z".parse().unwrap();
        let r = build(&[weekend()], &["stg".into(), "prod".into()], None, None, at, true);
        assert_eq!(r.windows[0].active_until.as_deref(), Some("2026-11-23T14:00:00Z"));
        assert_eq!(r.windows[0].next_start.as_deref(), Some("2026-11-27T22:00:00Z"));
        assert!(!r.environments[0].frozen);
        let prod = &r.environments[1];
        assert!(prod.frozen);
        assert_eq!(
            prod.active[0].message,
            "FreezeWindow kiln-system/weekend active until Mon 09:00 America/New_York (weekend freeze)"
        );
        let text = render_status(&r);
        assert!(text.contains("prod: FROZEN until Mon 2026-11-23 09:00 America/New_York"), "{text}");
        assert!(text.contains("exceptions: emergency releases with sre approval"), "{text}");
    }

    #[test]
    fn an_invalid_window_holds_the_environments_it_covers() {
        let mut w = weekend();
        w.spec.time_zone = "America/New_Yrok".into();
        let at: Timestamp = "2026-11-18T17:00:00Z".parse().unwrap();
        let r = build(&[w], &["prod".into()], None, None, at, true);
        assert!(r.windows[0].error.as_deref().is_some_and(|e| e.contains("not a known IANA time zone")));
        assert_eq!(r.environments[0].invalid.len(), 1);
        assert!(render_list(&r).contains("✗ invalid"));
    }
}
