//! `kubectl kiln status`: one document describing a Release across its environments, built
//! from the Release, its Promotions and the Environments (a pure function of what was read), and
//! rendered as a tree for people or as JSON/YAML for scripts.
//!
//! The JSON document is stable: its fields come in the order declared here, every field is always
//! present (`null` or `[]` when there is nothing), and it holds no value that changes by itself
//! with time (no "time left": scripts compute that from `bake.endsAt`). docs/cli.md documents it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{Promotion, PromotionStatus};
use kiln_api::release::Release;
use kiln_core::approvals::{self, SelfApprovalRule};
use serde::Serialize;

use crate::timefmt;

/// `apiVersion` of the document.
pub const API_VERSION: &str = "cli.kiln.dev/v1";
/// `kind` of the document.
pub const KIND: &str = "ReleaseReport";

/// A Release across its environments.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseReport {
    /// Always [`API_VERSION`].
    pub api_version: &'static str,
    /// Always [`KIND`].
    pub kind: &'static str,
    /// The Release's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `spec.service`.
    pub service: String,
    /// `spec.version`.
    pub version: String,
    /// `spec.type`.
    #[serde(rename = "type")]
    pub release_type: String,
    /// `spec.changeRef`.
    pub change_ref: Option<String>,
    /// `spec.author`.
    pub author: Option<String>,
    /// `spec.commit`.
    pub commit: Option<String>,
    /// `status.phase` (`Pending` before kiln has looked at it).
    pub phase: String,
    /// `status.currentEnvironment`.
    pub current_environment: Option<String>,
    /// The message of the Release's conditions (what it waits for, or what to fix).
    pub message: Option<String>,
    /// The artifacts, each pinned by digest.
    pub artifacts: Vec<ArtifactReport>,
    /// One entry per environment of `spec.environments`, in order.
    pub environments: Vec<EnvironmentReport>,
}

/// One artifact.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactReport {
    /// The artifact's name.
    pub name: String,
    /// The image reference, or `s3://bucket/key` for a zip.
    pub reference: String,
}

/// The Release in one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentReport {
    /// The environment.
    pub name: String,
    /// The Promotion's phase; without a Promotion, the Release's view (`Pending`,
    /// `AwaitingPromotion`).
    pub phase: String,
    /// Whether kiln creates the Promotion by itself (`null`: the Environment could not be read).
    pub auto: Option<bool>,
    /// The Promotion carrying the release into the environment.
    pub promotion: Option<String>,
    /// Whether that Promotion is a rollback to this release.
    pub rollback: bool,
    /// Who asked for the Promotion.
    pub requested_by: Option<String>,
    /// The Promotion's (or the Release's) one-line explanation.
    pub message: Option<String>,
    /// When the deployment started.
    pub started_at: Option<String>,
    /// When the Promotion ended.
    pub completed_at: Option<String>,
    /// The traffic step.
    pub step: Option<StepReport>,
    /// Every gate as last evaluated.
    pub gates: Vec<GateReport>,
    /// The bake, while there is one.
    pub bake: Option<BakeReport>,
    /// The rollback signals as last observed.
    pub signals: Vec<SignalReport>,
    /// Approvals: what the environment requires and what was given.
    pub approvals: ApprovalsReport,
    /// Why and when the Promotion rolled back.
    pub rolled_back: Option<RollbackReport>,
    /// A later rollback Promotion that took the environment away from this release.
    pub rolled_back_by: Option<RolledBackBy>,
    /// `spec.abort`.
    pub abort: bool,
    /// `spec.retry`.
    pub retry: i32,
    /// SHA-256 of the evidence record, once written.
    pub evidence_sha256: Option<String>,
}

/// The traffic step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// 1-based step number.
    pub number: i32,
    /// How many steps.
    pub total: i32,
    /// Percent of traffic on the new version.
    pub weight: i32,
}

/// One gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    /// The gate.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What it found.
    pub message: String,
}

/// A bake.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BakeReport {
    /// When it started.
    pub started_at: Option<String>,
    /// When it ends if nothing breaches.
    pub ends_at: Option<String>,
}

/// One signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalReport {
    /// The alarm, metric trigger or `errorBudget`.
    pub name: String,
    /// alarm | metric | errorBudget | summary.
    pub kind: String,
    /// The state (`OK`, `ALARM`, `BREACH`, ...).
    pub state: String,
    /// Since when.
    pub since: Option<String>,
    /// The value, on a breach.
    pub value: Option<f64>,
}

/// Approvals of a Promotion against its environment's quorums.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsReport {
    /// Each quorum with who counts toward it; `null` when the Environment could not be read.
    pub required: Option<Vec<RequirementReport>>,
    /// Every approval given, in order.
    pub given: Vec<GivenApproval>,
    /// kiln's summary (`needs 1 product approval (have security: ...)`); `null` without rules.
    pub summary: Option<String>,
}

/// One quorum.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequirementReport {
    /// The role.
    pub role: String,
    /// How many distinct people.
    pub count: u32,
    /// Who counts toward it.
    pub approvers: Vec<String>,
    /// Whether it is met.
    pub met: bool,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GivenApproval {
    /// The approver.
    pub user: String,
    /// The role.
    pub role: String,
    /// When.
    pub at: String,
    /// The comment.
    pub comment: Option<String>,
    /// Whether kiln counts it toward a quorum.
    pub counted: bool,
    /// Why it does not count, when kiln says so (self-approval).
    pub not_counted_because: Option<String>,
}

/// A rollback of the Promotion.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    /// alarm | metric | errorBudget | hookFailed | deploymentFailed | abort | superseded.
    pub cause: String,
    /// The signal or hook.
    pub signal: Option<String>,
    /// What happened.
    pub message: String,
    /// When the breach began.
    pub breach_started_at: Option<String>,
    /// When kiln detected it.
    pub detected_at: String,
    /// When the previous state was restored.
    pub completed_at: Option<String>,
    /// Breach (or detection) to restore, in milliseconds.
    pub breach_to_restore_millis: Option<i64>,
}

/// A rollback Promotion away from this release.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBackBy {
    /// The rollback Promotion.
    pub promotion: String,
    /// The release it returned to.
    pub release: String,
    /// Why.
    pub reason: String,
    /// Its phase.
    pub phase: String,
}

fn ts(t: &Time) -> String {
    t.0.to_string()
}

fn opt_ts(t: Option<&Time>) -> Option<String> {
    t.map(ts)
}

/// A serde enum's name (`Succeeded`, `standard`).
pub fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// When an object was created, for ordering "newest".
pub fn created(p: &Promotion) -> (Option<Timestamp>, String) {
    (p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.metadata.name.clone().unwrap_or_default())
}

/// The newest forward Promotion of `release` into `env` (the one kiln's Release status follows).
pub fn forward_promotion<'a>(promotions: &'a [Promotion], release: &Release, env: &str) -> Option<&'a Promotion> {
    let name = release.metadata.name.as_deref().unwrap_or_default();
    let uid = release.metadata.uid.as_deref();
    promotions
        .iter()
        .filter(|p| p.spec.release == name && p.spec.environment == env && p.spec.rollback.is_none())
        // Not those of an earlier Release that had this name.
        .filter(|p| p.belongs_to(uid))
        .max_by_key(|p| created(p))
}

/// Builds the report. `environments` holds the Environments that could be read (possibly none).
pub fn build(
    release: &Release,
    promotions: &[Promotion],
    environments: &BTreeMap<String, EnvironmentSpec>,
) -> ReleaseReport {
    let name = release.metadata.name.clone().unwrap_or_default();
    let spec = &release.spec;
    let status = release.status.clone().unwrap_or_default();
    let message = status.conditions.iter().map(|c| c.message.clone()).find(|m| !m.is_empty());
    let artifacts = spec
        .artifacts
        .iter()
        .map(|a| ArtifactReport { name: a.name.clone(), reference: kiln_core::integrity::reference(a) })
        .collect();
    let envs = spec
        .environments
        .iter()
        .map(|env| {
            let env_status = status.environments.iter().find(|e| &e.name == env);
            let named = env_status
                .and_then(|e| e.promotion.as_deref())
                .and_then(|n| promotions.iter().find(|p| p.metadata.name.as_deref() == Some(n)));
            let rollback_into = || {
                promotions
                    .iter()
                    .filter(|p| p.spec.release == name && &p.spec.environment == env && p.spec.rollback.is_some())
                    .max_by_key(|p| created(p))
            };
            let promotion = named.or_else(|| forward_promotion(promotions, release, env)).or_else(rollback_into);
            let rolled_back_by = promotions
                .iter()
                .filter(|p| {
                    &p.spec.environment == env
                        && p.spec.rollback.as_ref().and_then(|r| r.from_release.as_deref()) == Some(name.as_str())
                })
                .max_by_key(|p| created(p))
                .map(|p| RolledBackBy {
                    promotion: p.metadata.name.clone().unwrap_or_default(),
                    release: p.spec.release.clone(),
                    reason: p.spec.rollback.as_ref().map(|r| r.reason.clone()).unwrap_or_default(),
                    phase: p.status.as_ref().map(|s| enum_name(&s.phase)).unwrap_or_else(|| "Pending".into()),
                });
            let fallback_phase = env_status.map(|e| enum_name(&e.phase)).unwrap_or_else(|| "Pending".into());
            let env_spec = environments.get(env);
            let mut report = match promotion {
                Some(p) => promotion_report(env, p, release, env_spec, &fallback_phase),
                None => EnvironmentReport {
                    name: env.clone(),
                    phase: fallback_phase,
                    auto: None,
                    promotion: None,
                    rollback: false,
                    requested_by: None,
                    message: env_status.and_then(|e| e.message.clone()),
                    started_at: None,
                    completed_at: None,
                    step: None,
                    gates: Vec::new(),
                    bake: None,
                    signals: Vec::new(),
                    approvals: approvals_report(env_spec, &[], release, None, false),
                    rolled_back: None,
                    rolled_back_by: None,
                    abort: false,
                    retry: 0,
                    evidence_sha256: None,
                },
            };
            report.auto = env_spec.map(|e| e.promotion.auto);
            report.rolled_back_by = rolled_back_by;
            report
        })
        .collect();
    ReleaseReport {
        api_version: API_VERSION,
        kind: KIND,
        name,
        namespace: release.metadata.namespace.clone().unwrap_or_default(),
        service: spec.service.clone(),
        version: spec.version.clone(),
        release_type: spec.release_type.as_str().to_string(),
        change_ref: spec.change_ref.clone(),
        author: spec.author.clone(),
        commit: spec.commit.clone(),
        phase: if release.status.is_some() { enum_name(&status.phase) } else { "Pending".into() },
        current_environment: status.current_environment.clone(),
        message,
        artifacts,
        environments: envs,
    }
}

fn promotion_report(
    env: &str,
    p: &Promotion,
    release: &Release,
    env_spec: Option<&EnvironmentSpec>,
    fallback_phase: &str,
) -> EnvironmentReport {
    let st: PromotionStatus = p.status.clone().unwrap_or_default();
    let phase = if p.status.is_some() { enum_name(&st.phase) } else { fallback_phase.to_string() };
    let baking = st.phase == kiln_api::PromotionPhase::Baking;
    EnvironmentReport {
        name: env.to_string(),
        phase,
        auto: None,
        promotion: p.metadata.name.clone(),
        rollback: p.spec.rollback.is_some(),
        requested_by: p.spec.requested_by.clone(),
        message: st.message.clone(),
        started_at: opt_ts(st.started_at.as_ref()),
        completed_at: opt_ts(st.completed_at.as_ref()),
        step: st.step.as_ref().map(|s| StepReport { number: s.index + 1, total: s.total, weight: s.weight }),
        gates: st
            .gates
            .iter()
            .map(|g| GateReport { name: g.name.clone(), ok: g.ok, message: g.message.clone() })
            .collect(),
        bake: st
            .bake
            .as_ref()
            .filter(|_| baking)
            .map(|b| BakeReport { started_at: opt_ts(b.started_at.as_ref()), ends_at: opt_ts(b.ends_at.as_ref()) }),
        signals: st
            .bake
            .as_ref()
            .map(|b| {
                b.signals
                    .iter()
                    .map(|s| SignalReport {
                        name: s.name.clone(),
                        kind: s.kind.clone(),
                        state: s.state.clone(),
                        since: opt_ts(s.since.as_ref()),
                        value: s.value,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        approvals: approvals_report(
            env_spec,
            &p.spec.approvals,
            release,
            p.spec.requested_by.as_deref(),
            p.spec.rollback.is_some(),
        ),
        rolled_back: st.rollback.as_ref().map(|r| RollbackReport {
            cause: r.cause.to_string(),
            signal: r.signal.clone(),
            message: r.message.clone(),
            breach_started_at: opt_ts(r.breach_started_at.as_ref()),
            detected_at: ts(&r.detected_at),
            completed_at: opt_ts(r.completed_at.as_ref()),
            breach_to_restore_millis: r.breach_to_restore_millis,
        }),
        rolled_back_by: None,
        abort: p.spec.abort,
        retry: p.spec.retry,
        evidence_sha256: st.evidence_sha256.clone(),
    }
}

fn approvals_report(
    env_spec: Option<&EnvironmentSpec>,
    given: &[kiln_api::Approval],
    release: &Release,
    requester: Option<&str>,
    rollback: bool,
) -> ApprovalsReport {
    let Some(env) = env_spec else {
        return ApprovalsReport {
            required: None,
            given: given.iter().map(|a| given_approval(a, true, None)).collect(),
            summary: None,
        };
    };
    if rollback {
        return ApprovalsReport {
            required: Some(Vec::new()),
            given: given.iter().map(|a| given_approval(a, false, None)).collect(),
            summary: Some("a rollback needs no approvals".into()),
        };
    }
    let rule = SelfApprovalRule {
        forbid: env.promotion.forbid_self_approval,
        author: release.spec.author.as_deref(),
        requester,
    };
    let quorum = approvals::evaluate(&env.promotion.approvals, given, &rule);
    let given = given
        .iter()
        .map(|a| {
            let counted = quorum
                .requirements
                .iter()
                .any(|r| r.role == a.role && r.approvers.iter().any(|u| u.eq_ignore_ascii_case(&a.user)));
            let refused = quorum
                .refused
                .iter()
                .find(|r| r.user.eq_ignore_ascii_case(&a.user) && r.role == a.role)
                .map(|r| r.reason.clone());
            given_approval(a, counted, refused)
        })
        .collect();
    ApprovalsReport {
        required: Some(
            quorum
                .requirements
                .iter()
                .map(|r| RequirementReport {
                    role: r.role.clone(),
                    count: r.needed,
                    approvers: r.approvers.clone(),
                    met: r.met(),
                })
                .collect(),
        ),
        given,
        summary: Some(quorum.message()),
    }
}

fn given_approval(a: &kiln_api::Approval, counted: bool, refused: Option<String>) -> GivenApproval {
    GivenApproval {
        user: a.user.clone(),
        role: a.role.clone(),
        at: ts(&a.at),
        comment: a.comment.clone(),
        counted,
        not_counted_because: refused,
    }
}

/// How a set of quorums reads in one phrase: `security+product approvals`,
/// `1 release-engineering approval`, `2×security approvals`.
pub fn needs_phrase(requirements: &[kiln_api::ApprovalRequirement]) -> String {
    if requirements.is_empty() {
        return "no approvals".into();
    }
    let total: u32 = requirements.iter().map(|r| r.count).sum();
    let parts: Vec<String> = requirements
        .iter()
        .map(|r| if r.count == 1 { r.role.clone() } else { format!("{}×{}", r.count, r.role) })
        .collect();
    format!("{} {}", parts.join("+"), if total == 1 { "approval" } else { "approvals" })
}

// ---- the tree ----

const OK: &str = "✓";
const NO: &str = "✗";

/// The report as a tree for people. `now` is used for the time left in a bake.
pub fn render(report: &ReleaseReport, now: Timestamp) -> String {
    let mut out = String::new();
    let ns = &report.namespace;
    out.push_str(&format!(
        "Release {ns}/{}  {} {} ({})  {}\n",
        report.name, report.service, report.version, report.release_type, report.phase
    ));
    let mut facts = Vec::new();
    if let Some(c) = &report.change_ref {
        facts.push(format!("change {c}"));
    }
    if let Some(a) = &report.author {
        facts.push(format!("author {a}"));
    }
    if let Some(c) = &report.commit {
        facts.push(format!("commit {}", c.chars().take(12).collect::<String>()));
    }
    if !facts.is_empty() {
        out.push_str(&format!("  {}\n", facts.join(" · ")));
    }
    for a in &report.artifacts {
        out.push_str(&format!("  artifact {}: {}\n", a.name, a.reference));
    }
    if let Some(m) = &report.message {
        out.push_str(&format!("  {m}\n"));
    }
    let n = report.environments.len();
    for (i, env) in report.environments.iter().enumerate() {
        let last = i + 1 == n;
        let (branch, indent) = if last { ("└─", "   ") } else { ("├─", "│  ") };
        let mut head = format!("{branch} {}  {}", env.name, env.phase);
        if let Some(p) = &env.promotion {
            head.push_str(&format!("  ({}{p}", if env.rollback { "rollback " } else { "" }));
            if let Some(by) = &env.requested_by {
                head.push_str(&format!(", requested by {by}"));
            }
            head.push(')');
        }
        out.push_str(&head);
        out.push('\n');
        for line in env_lines(env, now) {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn env_lines(env: &EnvironmentReport, now: Timestamp) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(m) = &env.message {
        lines.push(m.clone());
    }
    if env.promotion.is_none() {
        if let Some(req) = &env.approvals.required {
            let rules: Vec<kiln_api::ApprovalRequirement> =
                req.iter().map(|r| kiln_api::ApprovalRequirement { role: r.role.clone(), count: r.count }).collect();
            let auto = if env.auto == Some(true) { "auto; " } else { "" };
            lines.push(format!("rules: {auto}needs {}", needs_phrase(&rules)));
        }
        return lines;
    }
    if let Some(s) = &env.step {
        lines.push(format!("traffic: step {}/{} at {}%", s.number, s.total, s.weight));
    }
    if let Some(b) = &env.bake {
        let left = b.ends_at.as_deref().and_then(|e| e.parse::<Timestamp>().ok()).map(|end| {
            if end > now {
                format!(
                    "{} left (ends {})",
                    kiln_core::time::human_duration(end.duration_since(now)),
                    timefmt::local(end)
                )
            } else {
                format!("ended {}", timefmt::local(end))
            }
        });
        lines.push(format!("bake: {}", left.unwrap_or_else(|| "no end recorded".into())));
    }
    if !env.signals.is_empty() {
        let sigs: Vec<String> = env
            .signals
            .iter()
            .map(|s| {
                let mark = if s.state == "OK" { OK } else { NO };
                let since = s
                    .since
                    .as_deref()
                    .filter(|_| s.state != "OK")
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .map(|t| format!(" since {}", timefmt::local(t)))
                    .unwrap_or_default();
                format!("{mark} {} {}{since}", s.name, s.state)
            })
            .collect();
        lines.push(format!("signals: {}", sigs.join(" · ")));
    }
    if !env.gates.is_empty() {
        if env.gates.iter().all(|g| g.ok) {
            let n = env.gates.len();
            lines.push(if n == 1 {
                format!("gates: {OK} 1 gate passed")
            } else {
                format!("gates: {OK} all {n} gates passed")
            });
        } else {
            lines.push("gates:".into());
            let width = env.gates.iter().map(|g| g.name.len()).max().unwrap_or(0);
            for g in &env.gates {
                lines.push(format!("  {} {:<width$}  {}", if g.ok { OK } else { NO }, g.name, g.message));
            }
        }
    }
    let ap = &env.approvals;
    if let Some(req) = &ap.required
        && !req.is_empty()
    {
        let parts: Vec<String> = req
            .iter()
            .map(|r| {
                let who = if r.approvers.is_empty() { String::new() } else { format!(" ({})", r.approvers.join(", ")) };
                format!("{} {} {}/{}{who}", if r.met { OK } else { NO }, r.role, r.approvers.len(), r.count)
            })
            .collect();
        lines.push(format!("approvals: {}", parts.join(" · ")));
    } else if !ap.given.is_empty() {
        lines.push("approvals:".into());
    }
    for a in &ap.given {
        let at = a.at.parse::<Timestamp>().map(timefmt::local).unwrap_or_else(|_| a.at.clone());
        let comment = a.comment.as_deref().map(|c| format!(" \"{c}\"")).unwrap_or_default();
        let why = a.not_counted_because.as_deref().map(|w| format!(" — not counted: {w}")).unwrap_or_default();
        let mark = if a.counted || ap.required.is_none() { "•" } else { "·" };
        lines.push(format!("  {mark} {} as {} at {at}{comment}{why}", a.user, a.role));
    }
    if let Some(r) = &env.rolled_back {
        let signal = r.signal.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
        let since = if r.breach_started_at.is_some() { "the breach" } else { "detection" };
        let restored = match (&r.completed_at, r.breach_to_restore_millis) {
            (Some(c), Some(ms)) => {
                format!("; restored {} ({:.1} s after {since})", local_str(c), ms as f64 / 1000.0)
            }
            (Some(c), None) => format!("; restored {}", local_str(c)),
            (None, _) => "; restoring".into(),
        };
        lines.push(format!("rollback: {}{signal}: {}{restored}", r.cause, r.message));
    }
    if let Some(by) = &env.rolled_back_by {
        lines.push(format!("rolled back by {} to {} ({}): {}", by.promotion, by.release, by.phase, by.reason));
    }
    if let Some(done) = &env.completed_at {
        let evidence = env
            .evidence_sha256
            .as_deref()
            .map(|e| format!(" · evidence sha256 {}…", e.chars().take(12).collect::<String>()))
            .unwrap_or_default();
        lines.push(format!("ended {}{evidence}", local_str(done)));
    }
    if env.abort && !matches!(env.phase.as_str(), "RolledBack" | "Aborted") {
        lines.push("abort requested".into());
    }
    lines
}

fn local_str(t: &str) -> String {
    t.parse::<Timestamp>().map(timefmt::local).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::ApprovalRequirement;

    #[test]
    fn needs_phrases() {
        let r = |role: &str, count| ApprovalRequirement { role: role.into(), count };
        assert_eq!(needs_phrase(&[]), "no approvals");
        assert_eq!(needs_phrase(&[r("release-engineering", 1)]), "release-engineering approval");
        assert_eq!(needs_phrase(&[r("security", 1), r("product", 1)]), "security+product approvals");
        assert_eq!(needs_phrase(&[r("security", 2)]), "2×security approvals");
    }
}
