//! `kubectl kiln lint <files|dirs>...`: offline checks of kiln manifests for GitOps CI.
//!
//! 1. Every kiln document is admitted as kube-apiserver would admit it (kiln-schema with the CRDs
//!    embedded in this binary at build time: OpenAPI schema, defaults, CEL rules — digests,
//!    SemVer, durations, immutability rules are all schema rules).
//! 2. What only kiln checks, across the given files: a Release naming an unknown Environment or
//!    listing an environment before its upstream, an Environment whose `rollbackPolicyRef` has no
//!    RollbackPolicy in a Release's namespace, a Promotion naming an unknown Release or
//!    Environment, upstream cycles, unknown time zones, duplicate objects. A kind that none of the
//!    files holds is not checked against (a team repository may hold Releases but not the
//!    platform's Environments); a note says so.
//! 3. A plan line per Release and environment: freeze now, approvals, promotion, strategy.
//!
//! Every message carries `file:line`, the line of the offending field where it can be found.

pub mod lines;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kiln_api::environment::EnvironmentSpec;
use kiln_api::{Environment, FreezeWindow, Promotion, Release, RollbackPolicy};
use kiln_core::SpecError;
use kiln_core::freeze::{self, CompiledWindow};
use kiln_core::{approvals, plan, signals, validate};
use kiln_schema::Validator;
use serde::Serialize;
use serde_json::Value;

use crate::cli::{LintArgs, Output};
use crate::error::CliError;
use crate::report::needs_phrase;
use crate::timefmt;
use lines::LineMap;

/// The CRDs this binary was built with (`crds/`, generated from kiln-api), so `lint` checks the
/// exact schema and CEL rules a cluster with these CRDs enforces, wherever it runs.
const CRDS: [(&str, &str); 5] = [
    ("environments.kiln.dev.yaml", include_str!("../../../../crds/environments.kiln.dev.yaml")),
    ("freezewindows.kiln.dev.yaml", include_str!("../../../../crds/freezewindows.kiln.dev.yaml")),
    ("promotions.kiln.dev.yaml", include_str!("../../../../crds/promotions.kiln.dev.yaml")),
    ("releases.kiln.dev.yaml", include_str!("../../../../crds/releases.kiln.dev.yaml")),
    ("rollbackpolicies.kiln.dev.yaml", include_str!("../../../../crds/rollbackpolicies.kiln.dev.yaml")),
];

/// A validator for the embedded CRDs.
pub fn validator() -> Result<Validator, CliError> {
    let mut crds = Vec::new();
    for (file, text) in CRDS {
        let crd: Value = serde_saphyr::from_str(text)
            .map_err(|e| CliError::Other(format!("the embedded CRD {file} cannot be read: {e}")))?;
        crds.push(crd);
    }
    Validator::from_crds(&crds).map_err(|e| CliError::Other(format!("the embedded CRDs cannot be used: {e}")))
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// The apiserver would refuse it, or kiln would hold it as `InvalidSpec`: exit status 1.
    Error,
    /// Probably wrong, but kiln would go on (e.g. a missing change ref, an approval that will not
    /// count).
    Warning,
    /// What was not checked, and why.
    Note,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// How serious.
    pub severity: Severity,
    /// `Kind/namespace/name` of the object, when known.
    pub object: Option<String>,
    /// What is wrong and, where there is one, what to do.
    pub message: String,
}

/// A plan line: what kiln will do with a Release in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanLine {
    /// The file of the Release.
    pub file: String,
    /// The line of the environment in `spec.environments`.
    pub line: usize,
    /// `namespace/name` of the Release.
    pub release: String,
    /// The environment.
    pub environment: String,
    /// The plan, e.g. `frozen now (weekend) until Mon 09:00 America/New_York; needs security+product approvals`.
    pub text: String,
}

/// The whole result (`-o json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LintReport {
    /// Always `cli.kiln.dev/v1`.
    pub api_version: &'static str,
    /// Always `LintReport`.
    pub kind: &'static str,
    /// Files read.
    pub files: usize,
    /// kiln objects checked.
    pub objects: usize,
    /// Documents of other API groups, skipped.
    pub skipped: usize,
    /// Findings with severity error.
    pub errors: usize,
    /// Findings with severity warning.
    pub warnings: usize,
    /// Every finding, by file and line.
    pub findings: Vec<Finding>,
    /// The plan.
    pub plans: Vec<PlanLine>,
}

/// What the plan is evaluated with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace of objects that do not name one.
    pub namespace: String,
    /// The controller's namespace (its FreezeWindows apply everywhere).
    pub controller_namespace: String,
    /// The instant freezes are evaluated at.
    pub at: Timestamp,
    /// Whether to compute plan lines.
    pub plan: bool,
}

/// Where an object is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    file: usize,
    doc_line: usize,
    next_doc_line: Option<usize>,
}

struct Obj<T> {
    loc: Loc,
    namespace: String,
    name: String,
    value: T,
}

impl<T> Obj<T> {
    fn new(loc: Loc, namespace: &str, name: &str, value: T) -> Self {
        Obj { loc, namespace: namespace.to_string(), name: name.to_string(), value }
    }

    fn label(&self, kind: &str, namespaced: bool) -> String {
        if namespaced { format!("{kind}/{}/{}", self.namespace, self.name) } else { format!("{kind}/{}", self.name) }
    }
}

struct Linter<'a> {
    files: &'a [(String, String)],
    maps: Vec<LineMap>,
    findings: Vec<Finding>,
}

impl Linter<'_> {
    fn line(&self, loc: Loc, field: &str) -> usize {
        self.maps.get(loc.file).map(|m| m.line_of(loc.doc_line, loc.next_doc_line, field)).unwrap_or(loc.doc_line)
    }

    fn file(&self, loc: Loc) -> String {
        self.files.get(loc.file).map(|(n, _)| n.clone()).unwrap_or_default()
    }

    fn push(&mut self, loc: Loc, field: &str, severity: Severity, object: Option<String>, message: String) {
        let line = self.line(loc, field);
        self.findings.push(Finding { file: self.file(loc), line, severity, object, message });
    }

    fn note(&mut self, message: String) {
        self.findings.push(Finding {
            file: self.files.first().map(|(n, _)| n.clone()).unwrap_or_default(),
            line: 1,
            severity: Severity::Note,
            object: None,
            message,
        });
    }
}

/// The field a kiln decision-core error is about, for its line.
fn spec_error_field(e: &SpecError, environments: &[String]) -> String {
    match e {
        SpecError::UnknownTimeZone { .. } => "spec.timeZone".into(),
        SpecError::UnknownEnvironment { field, .. }
        | SpecError::BadDuration { field, .. }
        | SpecError::DurationTooLong { field, .. }
        | SpecError::BadTimeOfDay { field, .. }
        | SpecError::BadSteps { field, .. }
        | SpecError::Artifact { field, .. }
        | SpecError::EmptySpan { field, .. }
        | SpecError::Policy { field, .. } => field.clone(),
        SpecError::StrayOverride { field, environment } => format!("{field}[{environment}]"),
        SpecError::UpstreamOrder { environment, .. } => environments
            .iter()
            .position(|e| e == environment)
            .map(|i| format!("spec.environments[{i}]"))
            .unwrap_or_else(|| "spec.environments".into()),
        SpecError::UpstreamCycle { .. } => "spec.upstream".into(),
        SpecError::Promotion(_) => "spec".into(),
    }
}

/// Lints file contents: `(name as shown, text)`. No I/O.
pub fn lint_texts(files: &[(String, String)], validator: &Validator, opts: &Options) -> LintReport {
    let mut l = Linter { files, maps: files.iter().map(|(_, t)| LineMap::build(t)).collect(), findings: Vec::new() };
    let mut envs: Vec<Obj<Environment>> = Vec::new();
    let mut releases: Vec<Obj<Release>> = Vec::new();
    let mut promotions: Vec<Obj<Promotion>> = Vec::new();
    let mut windows: Vec<Obj<FreezeWindow>> = Vec::new();
    let mut policies: Vec<Obj<RollbackPolicy>> = Vec::new();
    let (mut objects, mut skipped) = (0, 0);

    for (fi, (_, text)) in files.iter().enumerate() {
        let docs = kiln_schema::parse_documents(text);
        let starts: Vec<usize> = docs.iter().map(|d| d.as_ref().map(|d| d.line).unwrap_or_else(|e| e.line)).collect();
        for (di, doc) in docs.into_iter().enumerate() {
            let loc = Loc { file: fi, doc_line: starts[di], next_doc_line: starts.get(di + 1).copied() };
            let doc = match doc {
                Ok(d) => d,
                Err(e) => {
                    let line = e.error_line.unwrap_or(e.line);
                    l.findings.push(Finding {
                        file: l.file(loc),
                        line,
                        severity: Severity::Error,
                        object: None,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let api_version = doc.value.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            if !api_version.is_empty() && !api_version.starts_with(&format!("{}/", kiln_api::GROUP)) {
                skipped += 1;
                continue;
            }
            objects += 1;
            let kind = doc.value.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = doc.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            let namespaced = validator.is_namespaced(api_version, &kind).unwrap_or(true);
            let namespace = if namespaced {
                doc.value
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| opts.namespace.clone())
            } else {
                String::new()
            };
            let label = match (kind.is_empty(), name.is_empty(), namespaced) {
                (true, _, _) => None,
                (false, true, _) => Some(kind.clone()),
                (false, false, true) => Some(format!("{kind}/{namespace}/{name}")),
                (false, false, false) => Some(format!("{kind}/{name}")),
            };
            let admitted = match validator.validate_create(&doc.value) {
                Ok(v) => v,
                Err(errs) => {
                    for e in errs {
                        l.push(loc, &e.field, Severity::Error, label.clone(), e.to_string());
                    }
                    continue;
                }
            };
            fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
                serde_json::from_value(v.clone()).map_err(|e| e.to_string())
            }
            let result = match kind.as_str() {
                "Environment" => typed(&admitted).map(|v| envs.push(Obj::new(loc, &namespace, &name, v))),
                "Release" => typed(&admitted).map(|v| releases.push(Obj::new(loc, &namespace, &name, v))),
                "Promotion" => typed(&admitted).map(|v| promotions.push(Obj::new(loc, &namespace, &name, v))),
                "FreezeWindow" => typed(&admitted).map(|v| windows.push(Obj::new(loc, &namespace, &name, v))),
                "RollbackPolicy" => typed(&admitted).map(|v| policies.push(Obj::new(loc, &namespace, &name, v))),
                _ => Ok(()),
            };
            if let Err(e) = result {
                l.push(loc, "<nil>", Severity::Error, label, format!("cannot be read as a {kind}: {e}"));
            }
        }
    }

    duplicates(&mut l, "Environment", false, &envs);
    duplicates(&mut l, "Release", true, &releases);
    duplicates(&mut l, "Promotion", true, &promotions);
    duplicates(&mut l, "FreezeWindow", true, &windows);
    duplicates(&mut l, "RollbackPolicy", true, &policies);

    let env_specs: BTreeMap<String, EnvironmentSpec> =
        envs.iter().map(|e| (e.name.clone(), e.value.spec.clone())).collect();
    let have_envs = !envs.is_empty();

    // Environments: upstreams, cycles, durations.
    for (name, errs) in validate::environments(&env_specs) {
        let Some(e) = envs.iter().find(|e| e.name == name) else { continue };
        for err in errs {
            let field = match &err {
                SpecError::UnknownEnvironment { name: missing, .. } => e
                    .value
                    .spec
                    .upstream
                    .iter()
                    .position(|u| u == missing)
                    .map(|i| format!("spec.upstream[{i}]"))
                    .unwrap_or_else(|| "spec.upstream".into()),
                other => spec_error_field(other, &[]),
            };
            l.push(e.loc, &field, Severity::Error, Some(e.label("Environment", false)), err.to_string());
        }
    }

    // Releases against Environments and RollbackPolicies.
    for r in &releases {
        let label = Some(r.label("Release", true));
        for err in validate::release(&r.value.spec, &env_specs) {
            if !have_envs && matches!(err, SpecError::UnknownEnvironment { .. }) {
                continue;
            }
            let field = spec_error_field(&err, &r.value.spec.environments);
            l.push(r.loc, &field, Severity::Error, label.clone(), err.to_string());
        }
        for (i, env) in r.value.spec.environments.iter().enumerate() {
            let Some(spec) = env_specs.get(env) else { continue };
            let field = format!("spec.environments[{i}]");
            if let Some(policy) = &spec.rollback_policy_ref
                && !policies.is_empty()
                && !policies.iter().any(|p| &p.name == policy && p.namespace == r.namespace)
            {
                l.push(
                    r.loc,
                    &field,
                    Severity::Error,
                    label.clone(),
                    format!(
                        "environment {env} requires RollbackPolicy {policy} (rollbackPolicyRef), and none of the given files \
                         defines it in namespace {}; kiln holds every Promotion into {env} until it exists (fail closed)",
                        r.namespace
                    ),
                );
            }
            if spec.promotion.require_change_ref && r.value.spec.change_ref.as_deref().is_none_or(str::is_empty) {
                l.push(
                    r.loc,
                    &field,
                    Severity::Warning,
                    label.clone(),
                    format!("{env} requires a change reference: set spec.changeRef, or the Promotion waits at the changeRef gate"),
                );
            }
        }
    }

    // Promotions against Releases and Environments.
    for p in &promotions {
        let label = Some(p.label("Promotion", true));
        let release = releases.iter().find(|r| r.name == p.value.spec.release && r.namespace == p.namespace);
        if !releases.is_empty() && release.is_none() {
            l.push(
                p.loc,
                "spec.release",
                Severity::Error,
                label.clone(),
                format!(
                    "Release {} is not defined in namespace {} by any of the given files; kiln holds the Promotion as InvalidSpec",
                    p.value.spec.release, p.namespace
                ),
            );
        }
        let env = env_specs.get(&p.value.spec.environment);
        if have_envs && env.is_none() {
            l.push(
                p.loc,
                "spec.environment",
                Severity::Error,
                label.clone(),
                format!(
                    "environment {:?} does not exist among the given files (known: {})",
                    p.value.spec.environment,
                    env_specs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if let Some(r) = release {
            for err in validate::promotion(&p.value.spec.environment, &r.value.spec, &r.name) {
                l.push(p.loc, "spec.environment", Severity::Error, label.clone(), err.to_string());
            }
            if let Some(env) = env
                && p.value.spec.rollback.is_none()
            {
                let rule = approvals::SelfApprovalRule {
                    forbid: env.promotion.forbid_self_approval,
                    author: r.value.spec.author.as_deref(),
                    requester: p.value.spec.requested_by.as_deref(),
                };
                let report = approvals::evaluate(&env.promotion.approvals, &p.value.spec.approvals, &rule);
                for refused in &report.refused {
                    let i =
                        p.value.spec.approvals.iter().position(|a| a.user == refused.user && a.role == refused.role);
                    let field = i.map(|i| format!("spec.approvals[{i}]")).unwrap_or_else(|| "spec.approvals".into());
                    l.push(
                        p.loc,
                        &field,
                        Severity::Warning,
                        label.clone(),
                        format!("approval by {} ({}) will not count: {}", refused.user, refused.role, refused.reason),
                    );
                }
            }
        }
    }

    // FreezeWindows and RollbackPolicies kiln must be able to evaluate.
    for w in &windows {
        if let Err(err) = CompiledWindow::compile(&w.namespace, &w.name, &w.value.spec) {
            let field = spec_error_field(&err, &[]);
            l.push(
                w.loc,
                &field,
                Severity::Error,
                Some(w.label("FreezeWindow", true)),
                format!("{err}; kiln holds every Promotion this window could cover until it is fixed"),
            );
        }
        if have_envs {
            for (i, e) in w.value.spec.environments.iter().enumerate() {
                if !env_specs.contains_key(e) {
                    l.push(
                        w.loc,
                        &format!("spec.environments[{i}]"),
                        Severity::Warning,
                        Some(w.label("FreezeWindow", true)),
                        format!(
                            "environment {e:?} does not exist among the given files; this span freezes nothing there"
                        ),
                    );
                }
            }
        }
    }
    for p in &policies {
        if let Err(err) = signals::validate_policy(&p.value.spec) {
            let field = spec_error_field(&err, &[]);
            l.push(p.loc, &field, Severity::Error, Some(p.label("RollbackPolicy", true)), err.to_string());
        }
    }

    if !releases.is_empty() && !have_envs {
        l.note(
            "no Environment among the given files: Releases' environments, upstreams and RollbackPolicies are not \
             checked and there is no plan (lint the platform's Environments too, e.g. kubectl kiln lint environments.yaml releases/)"
                .into(),
        );
    }
    if !promotions.is_empty() && releases.is_empty() {
        l.note("no Release among the given files: the Releases Promotions name are not checked".into());
    }
    if !releases.is_empty()
        && have_envs
        && policies.is_empty()
        && env_specs.values().any(|e| e.rollback_policy_ref.is_some())
    {
        l.note("no RollbackPolicy among the given files: the Environments' rollbackPolicyRef is not checked".into());
    }

    let plans = if opts.plan && have_envs { plan_lines(&l, &releases, &env_specs, &windows, opts) } else { Vec::new() };

    let mut findings = l.findings;
    // In file order (as given), then by line.
    findings.sort_by_key(|f| (files.iter().position(|(n, _)| n == &f.file).unwrap_or(usize::MAX), f.line, f.severity));
    findings.dedup();
    LintReport {
        api_version: "cli.kiln.dev/v1",
        kind: "LintReport",
        files: files.len(),
        objects,
        skipped,
        errors: findings.iter().filter(|f| f.severity == Severity::Error).count(),
        warnings: findings.iter().filter(|f| f.severity == Severity::Warning).count(),
        findings,
        plans,
    }
}

fn duplicates<T>(l: &mut Linter<'_>, kind: &str, namespaced: bool, objs: &[Obj<T>]) {
    for (i, o) in objs.iter().enumerate() {
        if o.name.is_empty() {
            continue;
        }
        if let Some(first) = objs[..i].iter().find(|p| p.name == o.name && p.namespace == o.namespace) {
            let at = format!("{}:{}", l.file(first.loc), l.line(first.loc, "metadata.name"));
            l.push(
                o.loc,
                "metadata.name",
                Severity::Error,
                Some(o.label(kind, namespaced)),
                format!("defined twice (first at {at}); applying both keeps only the last"),
            );
        }
    }
}

/// `Mon 09:00 America/New_York`, with the date when it is more than six days after `at` (as the
/// freeze gate writes it).
fn until_text(until: Timestamp, zone: &str, at: Timestamp) -> String {
    let tz = TimeZone::get(zone).unwrap_or(TimeZone::UTC);
    let z = until.to_zoned(tz);
    let far = until.duration_since(at) > SignedDuration::from_hours(6 * 24);
    let date = if far { z.strftime(" %Y-%m-%d").to_string() } else { String::new() };
    format!("{}{date} {} {zone}", z.strftime("%a"), z.strftime("%H:%M"))
}

fn plan_lines(
    l: &Linter<'_>,
    releases: &[Obj<Release>],
    envs: &BTreeMap<String, EnvironmentSpec>,
    windows: &[Obj<FreezeWindow>],
    opts: &Options,
) -> Vec<PlanLine> {
    let mut out = Vec::new();
    for r in releases {
        let spec = &r.value.spec;
        let compiled: Vec<CompiledWindow> = windows
            .iter()
            .filter(|w| w.namespace == r.namespace || w.namespace == opts.controller_namespace)
            .filter_map(|w| CompiledWindow::compile(&w.namespace, &w.name, &w.value.spec).ok())
            .collect();
        for (i, env_name) in spec.environments.iter().enumerate() {
            let Some(env) = envs.get(env_name) else { continue };
            let mut parts: Vec<String> = Vec::new();
            let verdict = freeze::evaluate(&compiled, env_name, &spec.service, opts.at);
            if let (Some(first), Some(until)) = (verdict.active.first(), verdict.frozen_until) {
                let names: Vec<&str> =
                    verdict.active.iter().map(|a| a.window.rsplit('/').next().unwrap_or(&a.window)).collect();
                let mut text =
                    format!("frozen now ({}) until {}", names.join(", "), until_text(until, &first.time_zone, opts.at));
                if let Ok(reqs) = freeze::exception_eligible(&verdict.active, spec.release_type) {
                    text.push_str(&format!(" (a {} release may pass with {})", spec.release_type, needs_phrase(&reqs)));
                }
                parts.push(text);
            } else if let Some(next) =
                verdict.next_start.filter(|n| n.duration_since(opts.at) <= SignedDuration::from_hours(7 * 24))
            {
                let zone = compiled
                    .iter()
                    .find(|w| w.applies_to(env_name, &spec.service) && w.next_start(opts.at) == Some(next))
                    .map(|w| w.time_zone().to_string())
                    .unwrap_or_else(|| "UTC".into());
                parts.push(format!("not frozen (next freeze {})", until_text(next, &zone, opts.at)));
            }
            parts.push(format!("needs {}", needs_phrase(&env.promotion.approvals)));
            let mut how = if env.promotion.auto { "auto".to_string() } else { "promoted by hand".to_string() };
            if !env.upstream.is_empty() {
                how.push_str(&format!(" after {}", env.upstream.join(", ")));
                if let Some(bake) = &env.promotion.min_upstream_bake {
                    how.push_str(&format!(" (baked ≥ {bake})"));
                }
            }
            parts.push(how);
            if env.promotion.require_change_ref {
                parts.push(match spec.change_ref.as_deref() {
                    Some(c) if !c.is_empty() => format!("change {c}"),
                    _ => "missing the change ref it requires".to_string(),
                });
            }
            match plan::resolve(spec, env, false) {
                Ok(p) => parts.push(p.summary),
                Err(e) => parts.push(format!("no plan: {e}")),
            }
            out.push(PlanLine {
                file: l.file(r.loc),
                line: l.line(r.loc, &format!("spec.environments[{i}]")),
                release: format!("{}/{}", r.namespace, r.name),
                environment: env_name.clone(),
                text: parts.join("; "),
            });
        }
    }
    out
}

/// The files to read: files as given, directories' `*.yaml`, `*.yml` and `*.json` (sorted;
/// subdirectories only with `-R`).
fn collect(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, CliError> {
    fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
        let io = |source| CliError::Io { path: dir.display().to_string(), source };
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).map_err(io)?.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if recursive {
                    walk(&p, recursive, out)?;
                }
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, recursive, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Prints the report for people.
pub fn render(report: &LintReport) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let object = f.object.as_deref().map(|o| format!("{o}: ")).unwrap_or_default();
        out.push_str(&format!("{}:{}: {}: {object}{}\n", f.file, f.line, f.severity.label(), f.message));
    }
    for p in &report.plans {
        out.push_str(&format!("{}:{}: plan: Release {} → {}: {}\n", p.file, p.line, p.release, p.environment, p.text));
    }
    let skipped =
        if report.skipped > 0 { format!(" ({} non-kiln documents skipped)", report.skipped) } else { String::new() };
    out.push_str(&format!(
        "{} kiln objects in {} files{skipped}: {} {}, {} {}\n",
        report.objects,
        report.files,
        report.errors,
        if report.errors == 1 { "error" } else { "errors" },
        report.warnings,
        if report.warnings == 1 { "warning" } else { "warnings" },
    ));
    out
}

/// Runs the command; the result is whether there were errors (exit status 1).
pub fn run(args: &LintArgs, namespace: Option<&str>, controller_namespace: &str) -> Result<bool, CliError> {
    let at = timefmt::instant(args.at.as_deref())?;
    let validator = validator()?;
    let mut files = Vec::new();
    for path in collect(&args.paths, args.recursive)? {
        let text = std::fs::read_to_string(&path)
            .map_err(|source| CliError::Io { path: path.display().to_string(), source })?;
        files.push((path.display().to_string(), text));
    }
    if files.is_empty() {
        return Err(CliError::Usage("no *.yaml, *.yml or *.json files in the given paths".into()));
    }
    let opts = Options {
        namespace: namespace.unwrap_or("default").to_string(),
        controller_namespace: controller_namespace.to_string(),
        at,
        plan: !args.no_plan,
    };
    let report = lint_texts(&files, &validator, &opts);
    match args.output {
        Output::Text => print!("{}", render(&report)),
        other => print!("{}", crate::status::document(other, &report)?),
    }
    Ok(report.errors > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            namespace: "default".into(),
            controller_namespace: "kiln-system".into(),
            at: "2026-11-21T17:00:00Z".parse().expect("valid"),
            plan: true,
        }
    }

    #[test]
    fn the_embedded_crds_are_the_generated_ones() {
        let embedded = validator().expect("embedded CRDs");
        let generated = Validator::new().expect("kiln-api CRDs");
        let sorted = |mut v: Vec<(String, String)>| {
            v.sort();
            v
        };
        assert_eq!(sorted(embedded.kinds()), sorted(generated.kinds()));
        let rules = |v: &Validator| {
            let mut r: Vec<String> =
                v.rules().iter().map(|r| format!("{} {} {:?}", r.kind, r.schema_path, r.rule)).collect();
            r.sort();
            r
        };
        assert_eq!(rules(&embedded), rules(&generated), "crds/ is stale: regenerate it with crdgen");
    }

    #[test]
    fn field_errors_point_at_their_line() {
        let text = "apiVersion: kiln.dev/v1alpha1\nkind: FreezeWindow\nmetadata:\n  name: w\n  namespace: kiln-system\nspec:\n  recurring:\n    - from: { day: Friday, time: \"17:00\" }\n      to: { day: Monday, time: \"9:00\" }\n";
        let report = lint_texts(&[("w.yaml".into(), text.into())], &validator().expect("crds"), &opts());
        assert_eq!(report.errors, 1, "{report:?}");
        let f = &report.findings[0];
        assert_eq!((f.line, f.object.as_deref()), (9, Some("FreezeWindow/kiln-system/w")));
        assert!(f.message.contains("time must be HH:MM"), "{}", f.message);
    }

    #[test]
    fn other_api_groups_are_skipped_and_bad_yaml_reported() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ingest}\n---\nkind: [unclosed\n";
        let report = lint_texts(&[("x.yaml".into(), text.into())], &validator().expect("crds"), &opts());
        assert_eq!(report.skipped, 1);
        assert_eq!(report.errors, 1);
        assert!(report.findings[0].message.starts_with("invalid YAML"), "{:?}", report.findings);
    }
}
