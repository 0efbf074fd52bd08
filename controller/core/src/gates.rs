//! The gates a Promotion must pass before it deploys, each with a one-line human message.
//!
//! Gates are evaluated from observations the controller gathered (the upstream Promotions of the
//! same Release, alarm health upstream, freeze windows, the queue) and the time passed in. A
//! rollback Promotion skips every gate but `validation`: rollbacks are never blocked by a
//! freeze, an approval or a queue.

use jiff::{SignedDuration, Timestamp};
use kiln_api::PromotionPhase;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::{GateResult, PromotionSpec, ReleaseIdentity};
use kiln_api::release::ReleaseSpec;
use kiln_api::{Approval, ApprovalRequirement};

use crate::approvals::{self, SelfApprovalRule};
use crate::duration;
use crate::freeze::{self, CompiledWindow};
use crate::integrity;
use crate::problem::Problem;
use crate::running::{self, RunningState, Verdict};

/// Gate names as they appear in status.
pub mod name {
    /// References resolve and the spec is valid.
    pub const VALIDATION: &str = "validation";
    /// No earlier Promotion of the same service holds the environment.
    pub const QUEUE: &str = "queue";
    /// Upstream environments succeeded and baked long enough.
    pub const UPSTREAM: &str = "upstream";
    /// Upstream rollback alarms are green now.
    pub const UPSTREAM_HEALTH: &str = "upstreamHealth";
    /// The target environment's own rollback signals are green now.
    pub const HEALTH: &str = "health";
    /// A change reference is present where required.
    pub const CHANGE_REF: &str = "changeRef";
    /// No freeze window blocks the deployment (or an exception is satisfied).
    pub const FREEZE: &str = "freeze";
    /// Approval quorums are met.
    pub const APPROVALS: &str = "approvals";
    /// The Release is newer than what the environment runs (read from AWS).
    pub const NEWER: &str = "newer";
}

/// The same Release's Promotion in an upstream environment, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamObservation {
    /// The upstream environment.
    pub environment: String,
    /// The phase of this Release's Promotion there, if one exists.
    pub phase: Option<PromotionPhase>,
    /// When it reached full traffic there.
    pub full_traffic_at: Option<Timestamp>,
    /// Which Release it deployed there (UID and digests), once it started.
    pub deployed: Option<ReleaseIdentity>,
    /// Whether the upstream's rollback signals are green now: `None` if not read,
    /// `Some(Err(why))` if something is firing.
    pub health: Option<Result<(), String>>,
    /// A rollback Promotion that replaced this Release in the upstream environment after it
    /// succeeded there: the Release is no longer what runs upstream.
    pub superseded_by: Option<String>,
}

/// The target environment's own signals, read before deploying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHealth {
    /// The environment has no RollbackPolicy.
    NoPolicy,
    /// The signals have not been read yet.
    NotRead,
    /// Nothing is firing.
    Green,
    /// Something is firing (or missing): why.
    Red(String),
}

/// Another Promotion driving the same AWS resource that is ahead in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAhead {
    /// Its name.
    pub name: String,
    /// Its phase.
    pub phase: PromotionPhase,
    /// Whether it is a rollback Promotion.
    pub rollback: bool,
}

/// What the gates are evaluated from.
#[derive(Debug, Clone)]
pub struct GateInput<'a> {
    /// The time of evaluation.
    pub now: Timestamp,
    /// The Promotion's spec (approvals, requester, rollback request).
    pub promotion: &'a PromotionSpec,
    /// The Release it promotes (change ref, type, author, service).
    pub release: &'a ReleaseSpec,
    /// Which Release exactly (UID and digests), if known.
    pub release_identity: Option<&'a ReleaseIdentity>,
    /// The target Environment.
    pub environment: &'a EnvironmentSpec,
    /// Problems found validating references (unknown environment, missing policy, ...).
    pub problems: &'a [Problem],
    /// This Release's Promotions in the environment's upstreams.
    pub upstream: &'a [UpstreamObservation],
    /// Unfinished Promotions driving the same AWS resource ahead of this one.
    pub ahead: &'a [QueuedAhead],
    /// Freeze windows in scope for this Promotion's namespace.
    pub freezes: &'a [CompiledWindow],
    /// The Promotion's approvals that count now ([`approvals::standing`]).
    pub approvals: Vec<Approval>,
    /// Its approvals that no longer count, and why (reported in the approval messages).
    pub stale_approvals: Vec<approvals::Refused>,
    /// The target environment's signals now.
    pub health: TargetHealth,
    /// What the environment runs now ([`crate::running`]).
    pub running: &'a RunningState,
}

/// The result of all gates.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    /// Each gate in evaluation order.
    pub results: Vec<GateResult>,
    /// The freeze exception granted, if a freeze was passed by exception.
    pub freeze_exception: Option<String>,
    /// When something time-based may change a result (bake satisfied, freeze over).
    pub recheck_at: Option<Timestamp>,
}

impl GateReport {
    /// True when every gate passes.
    pub fn all_ok(&self) -> bool {
        self.results.iter().all(|g| g.ok)
    }

    /// Whether the named gate failed.
    pub fn failed(&self, gate: &str) -> bool {
        self.results.iter().any(|g| g.name == gate && !g.ok)
    }

    /// The waiting phase these results put a Promotion in, by precedence: an invalid spec first,
    /// then the queue, the freeze, any other gate, and finally approvals.
    pub fn waiting_phase(&self) -> PromotionPhase {
        if self.failed(name::VALIDATION) {
            PromotionPhase::WaitingForGates
        } else if self.failed(name::QUEUE) {
            PromotionPhase::Queued
        } else if self.failed(name::FREEZE) {
            PromotionPhase::Frozen
        } else if self.results.iter().any(|g| !g.ok && g.name != name::APPROVALS) {
            PromotionPhase::WaitingForGates
        } else {
            PromotionPhase::WaitingForApproval
        }
    }

    /// One line for `kubectl get`: `ok`, or the failing gates.
    pub fn summary(&self) -> String {
        let failing: Vec<&str> = self.results.iter().filter(|g| !g.ok).map(|g| g.name.as_str()).collect();
        if failing.is_empty() { "ok".to_string() } else { format!("waiting: {}", failing.join(",")) }
    }

    /// The message of the first failing gate (or a summary when all pass).
    pub fn headline(&self) -> String {
        match self.results.iter().find(|g| !g.ok) {
            Some(g) => format!("{}: {}", g.name, g.message),
            None => "all gates passed".to_string(),
        }
    }
}

fn gate(name: &str, ok: bool, message: impl Into<String>) -> GateResult {
    GateResult { name: name.to_string(), ok, message: message.into() }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn newer_gate(input: &GateInput<'_>) -> GateResult {
    let env = &input.promotion.environment;
    match input.running {
        RunningState::NotRead => gate(name::NEWER, false, format!("what {env} runs has not been read from AWS yet")),
        RunningState::Unreadable(why) => {
            gate(name::NEWER, false, format!("what {env} runs cannot be read yet: {why}; reading again"))
        }
        RunningState::Unknown(why) => gate(
            name::NEWER,
            true,
            format!("what {env} runs cannot be ordered ({why}); the deployment checks the target itself"),
        ),
        RunningState::Runs(r) => {
            match running::judge(env, &input.release.service, &input.release.version, r, input.promotion.downgrade) {
                Verdict::Deploy(m) => gate(name::NEWER, true, m),
                Verdict::Older(m) | Verdict::VersionReused(m) => gate(name::NEWER, false, m),
            }
        }
    }
}

/// Evaluates every gate.
pub fn evaluate(input: &GateInput<'_>) -> GateReport {
    let mut results = Vec::new();
    let mut recheck_at = None;
    let mut freeze_exception = None;

    results.push(if input.problems.is_empty() {
        gate(name::VALIDATION, true, "release and environment are valid")
    } else {
        gate(name::VALIDATION, false, crate::problem::joined(input.problems))
    });

    if input.promotion.rollback.is_some() {
        // Rollbacks skip every other gate, by policy, and take over from forward Promotions
        // (they are preempted); but one rollback at a time drives a resource.
        results.push(match input.ahead.iter().find(|a| a.rollback) {
            None => gate(name::QUEUE, true, "rollback: no other rollback holds the target"),
            Some(a) => gate(name::QUEUE, false, format!("queued behind rollback {} ({})", a.name, a.phase)),
        });
        return GateReport { results, freeze_exception, recheck_at };
    }

    // Queue: earlier unfinished Promotions of the same AWS resource (any namespace) hold it.
    results.push(match input.ahead.first() {
        None => {
            gate(name::QUEUE, true, format!("{} is free for {}", input.promotion.environment, input.release.service))
        }
        Some(a) => {
            let more =
                if input.ahead.len() > 1 { format!(" and {} more", input.ahead.len() - 1) } else { String::new() };
            gate(name::QUEUE, false, format!("queued behind {} ({}){more}", a.name, a.phase))
        }
    });

    // Newer than what runs: read from AWS once the queue is clear and nothing else is wrong (so
    // what is read is what this Promotion would replace).
    if input.ahead.is_empty() && input.problems.is_empty() {
        results.push(newer_gate(input));
    }

    // Upstream environments: succeeded and baked long enough.
    let rules = &input.environment.promotion;
    let min_bake = rules
        .min_upstream_bake
        .as_deref()
        .and_then(|d| duration::parse("minUpstreamBake", d).ok())
        .unwrap_or(SignedDuration::ZERO);
    let mut upstream_msgs = Vec::new();
    let mut upstream_ok = true;
    for up in &input.environment.upstream {
        let obs = input.upstream.iter().find(|u| &u.environment == up);
        if let Some(by) = obs.and_then(|o| o.superseded_by.as_ref()) {
            upstream_ok = false;
            upstream_msgs.push(format!("{up} was rolled back by {by} after this release succeeded there"));
            continue;
        }
        // What succeeded there must be this Release, byte for byte: not another one that had
        // its name (deleted and created again with other artifacts).
        if let Some(there) = obs.and_then(|o| o.deployed.as_ref())
            && let Some(here) = input.release_identity
            && !integrity::same(there, here)
        {
            upstream_ok = false;
            upstream_msgs.push(format!(
                "{up} ran another Release named {}: {} there, this one is {}; promote this Release through {up} first",
                input.promotion.release,
                integrity::describe(there),
                integrity::describe(here)
            ));
            continue;
        }
        match obs.and_then(|o| o.phase.map(|p| (p, o.full_traffic_at))) {
            Some((PromotionPhase::Succeeded, Some(full))) => {
                let ready = full.checked_add(min_bake).unwrap_or(full);
                if input.now >= ready {
                    upstream_msgs.push(format!("{up} succeeded"));
                } else {
                    upstream_ok = false;
                    recheck_at = earliest(recheck_at, Some(ready));
                    upstream_msgs.push(format!(
                        "{up} must bake {} (ready at {})",
                        rules.min_upstream_bake.as_deref().unwrap_or("0s"),
                        ready.strftime("%Y-%m-%dT%H:%M:%SZ")
                    ));
                }
            }
            Some((phase, _)) => {
                upstream_ok = false;
                upstream_msgs.push(format!("{up} is {phase}, needs Succeeded"));
            }
            None => {
                upstream_ok = false;
                upstream_msgs.push(format!("not promoted to {up} yet"));
            }
        }
    }
    results.push(if input.environment.upstream.is_empty() {
        gate(name::UPSTREAM, true, "no upstream environment")
    } else {
        gate(name::UPSTREAM, upstream_ok, upstream_msgs.join("; "))
    });

    if rules.require_upstream_green && !input.environment.upstream.is_empty() {
        let mut msgs = Vec::new();
        let mut ok = true;
        for up in &input.environment.upstream {
            match input.upstream.iter().find(|u| &u.environment == up).and_then(|o| o.health.clone()) {
                Some(Ok(())) => msgs.push(format!("{up} alarms green")),
                Some(Err(why)) => {
                    ok = false;
                    msgs.push(format!("{up}: {why}"));
                }
                None => {
                    ok = false;
                    msgs.push(format!("{up} alarms not read yet"));
                }
            }
        }
        results.push(gate(name::UPSTREAM_HEALTH, ok, msgs.join("; ")));
    }

    let env_name = &input.promotion.environment;
    results.push(match &input.health {
        TargetHealth::NoPolicy => gate(name::HEALTH, true, format!("{env_name} has no RollbackPolicy to check")),
        TargetHealth::Green => gate(name::HEALTH, true, format!("{env_name} alarms green")),
        TargetHealth::NotRead => gate(name::HEALTH, false, format!("{env_name} alarms not read yet")),
        TargetHealth::Red(why) => gate(
            name::HEALTH,
            false,
            format!("{env_name}: {why}; kiln does not deploy into an environment whose alarms are firing"),
        ),
    });

    if rules.require_change_ref {
        results.push(match input.release.change_ref.as_deref().filter(|c| !c.trim().is_empty()) {
            Some(c) => gate(name::CHANGE_REF, true, format!("change {c}")),
            None => gate(
                name::CHANGE_REF,
                false,
                format!(
                    "{} requires a change reference: set spec.changeRef on the Release",
                    input.promotion.environment
                ),
            ),
        });
    }

    // Freeze windows, with exceptions for eligible release types.
    let verdict = freeze::evaluate(input.freezes, &input.promotion.environment, &input.release.service, input.now);
    let rule = SelfApprovalRule {
        forbid: rules.forbid_self_approval,
        author: input.release.author.as_deref(),
        requester: input.promotion.requested_by.as_deref(),
    };
    if verdict.active.is_empty() {
        let msg = match verdict.next_start {
            Some(next) => format!("not frozen (next freeze starts {})", next.strftime("%Y-%m-%dT%H:%M:%SZ")),
            None => "not frozen".to_string(),
        };
        results.push(gate(name::FREEZE, true, msg));
    } else {
        let frozen: Vec<String> = verdict.active.iter().map(freeze::describe).collect();
        match freeze::exception_eligible(&verdict.active, input.release.release_type) {
            Ok(needed) => {
                // The exception's approvals are in addition to the environment's own: one
                // matching over both, so nobody counts toward both.
                let both: Vec<ApprovalRequirement> = needed.iter().chain(rules.approvals.iter()).cloned().collect();
                let mut report = approvals::evaluate(&both, &input.approvals, &rule);
                report.refused.extend(input.stale_approvals.iter().cloned());
                if report.met() {
                    let granted =
                        format!("{} release allowed by exception ({})", input.release.release_type, report.message());
                    freeze_exception = Some(format!("{}; {granted}", frozen.join("; ")));
                    results.push(gate(name::FREEZE, true, format!("{}; {granted}", frozen.join("; "))));
                } else {
                    recheck_at = earliest(recheck_at, verdict.frozen_until);
                    results.push(gate(
                        name::FREEZE,
                        false,
                        format!(
                            "{}; exception for {} releases {}",
                            frozen.join("; "),
                            input.release.release_type,
                            report.message()
                        ),
                    ));
                }
            }
            Err(why) => {
                recheck_at = earliest(recheck_at, verdict.frozen_until);
                results.push(gate(name::FREEZE, false, format!("{}; {why}", frozen.join("; "))));
            }
        }
    }

    // Approvals (an environment with no quorum needs none: for a non-auto environment, the
    // person who created the Promotion said go).
    let mut report = approvals::evaluate(&rules.approvals, &input.approvals, &rule);
    report.refused.extend(input.stale_approvals.iter().cloned());
    results.push(gate(name::APPROVALS, report.met(), report.message()));

    GateReport { results, freeze_exception, recheck_at }
}

/// Whether a forward traffic change may happen now: the freeze is re-checked before every
/// traffic step, because a freeze can begin while a deployment is in progress. Returns the
/// reason to hold, if any.
pub fn traffic_hold(input: &GateInput<'_>) -> Option<(String, Option<Timestamp>)> {
    if input.promotion.rollback.is_some() {
        return None;
    }
    let verdict = freeze::evaluate(input.freezes, &input.promotion.environment, &input.release.service, input.now);
    if verdict.active.is_empty() {
        return None;
    }
    let rule = SelfApprovalRule {
        forbid: input.environment.promotion.forbid_self_approval,
        author: input.release.author.as_deref(),
        requester: input.promotion.requested_by.as_deref(),
    };
    let exception = freeze::exception_eligible(&verdict.active, input.release.release_type)
        .map(|needed| {
            let both: Vec<ApprovalRequirement> =
                needed.iter().chain(input.environment.promotion.approvals.iter()).cloned().collect();
            approvals::evaluate(&both, &input.approvals, &rule).met()
        })
        .unwrap_or(false);
    if exception {
        return None;
    }
    let frozen: Vec<String> = verdict.active.iter().map(freeze::describe).collect();
    Some((format!("holding traffic: {}", frozen.join("; ")), verdict.frozen_until))
}
