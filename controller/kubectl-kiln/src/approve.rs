//! `kubectl kiln approve <release> --env <env> [--role <role>] [--comment ...]`.
//!
//! The approval is written in the name the API server gives the caller (SelfSubjectReview); there
//! is no flag to type a name. Before writing, the command refuses what kiln would not count, with
//! the reason: the requester's own approval, the author's where the environment forbids it, a second approval by the same
//! person, a role the environment does not ask for. The write is a JSON patch that appends to
//! `spec.approvals` after a `test` of the array as read, so two people approving at once cannot
//! overwrite each other: the second patch fails the test, is re-read, re-checked and re-sent.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kiln_api::environment::EnvironmentSpec;
use kiln_api::promotion::MAX_APPROVALS;
use kiln_api::{Approval, ApprovalRequirement, Promotion, PromotionPhase};
use kiln_core::approvals::{self, QuorumReport, SelfApprovalRule};
use kiln_core::freeze::{self, CompiledWindow};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::{Value, json};

use crate::cli::ApproveArgs;
use crate::cluster::{Cluster, Identity};
use crate::error::CliError;
use crate::target;

/// What the approval would be checked against.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// The approver.
    pub user: &'a str,
    /// The Release's name.
    pub release: &'a str,
    /// The Release's author.
    pub author: Option<&'a str>,
    /// The environment's name.
    pub env_name: &'a str,
    /// The environment.
    pub env: &'a EnvironmentSpec,
    /// The Promotion's name.
    pub promotion: &'a str,
    /// The Promotion (spec and status).
    pub promo: &'a Promotion,
    /// Approvals a freeze exception needs now (empty when not frozen, or not eligible).
    pub exception: &'a [ApprovalRequirement],
}

/// The approval to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The role.
    pub role: String,
    /// Something the approver should know (it is recorded but adds nothing to a quorum).
    pub note: Option<String>,
}

fn filled(report: &QuorumReport) -> usize {
    report.requirements.iter().map(|r| r.approvers.len().min(r.needed as usize)).sum()
}

fn unmet(report: &QuorumReport) -> impl Iterator<Item = &str> {
    report.requirements.iter().filter(|r| !r.met()).map(|r| r.role.as_str())
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Decides the role and whether kiln would count the approval, without any I/O.
pub fn decide(s: &Situation<'_>, role: Option<&str>) -> Result<Plan, CliError> {
    let refuse = |m: String| Err(CliError::Refused(m));
    let phase = s.promo.status.as_ref().map(|st| st.phase);
    if s.promo.spec.rollback.is_some() {
        return refuse(format!("{} is a rollback Promotion: rollbacks need no approvals", s.promotion));
    }
    if s.promo.spec.abort || phase == Some(PromotionPhase::Aborted) {
        return refuse(format!("{} was aborted; approvals no longer matter (create a new Promotion)", s.promotion));
    }
    if phase == Some(PromotionPhase::Succeeded) {
        return refuse(format!("{} already succeeded; approvals no longer matter", s.promotion));
    }
    let rules = &s.env.promotion;
    if rules.forbid_self_approval && s.author.is_some_and(|a| a.eq_ignore_ascii_case(s.user)) {
        return refuse(format!(
            "you ({}) authored release {}; environment {} forbids self-approval — ask someone else",
            s.user, s.release, s.env_name
        ));
    }
    // kiln never counts the requester's approval, whatever the environment says.
    if s.promo.spec.requested_by.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(s.user)) {
        return refuse(format!(
            "you ({}) requested promotion {}; the requester's approval never counts — ask someone else",
            s.user, s.promotion
        ));
    }
    if s.promo.spec.approvals.len() >= MAX_APPROVALS {
        return refuse(format!("{} already holds the maximum of {MAX_APPROVALS} approvals", s.promotion));
    }
    let rule = SelfApprovalRule {
        forbid: rules.forbid_self_approval,
        author: s.author,
        requester: s.promo.spec.requested_by.as_deref(),
    };
    let given = &s.promo.spec.approvals;
    let env_report = approvals::evaluate(&rules.approvals, given, &rule);
    let exc_report = approvals::evaluate(s.exception, given, &rule);
    let mut known: Vec<String> = rules.approvals.iter().map(|r| r.role.clone()).collect();
    for r in s.exception {
        if !known.contains(&r.role) {
            known.push(r.role.clone());
        }
    }
    if known.is_empty() {
        return refuse(format!("environment {} needs no approvals", s.env_name));
    }
    let role = match role {
        Some(r) if known.iter().any(|k| k == r) => r.to_string(),
        Some(r) => {
            let exception = if s.exception.is_empty() { "" } else { " (including the freeze exception's)" };
            return refuse(format!(
                "environment {} does not ask for a {r} approval, so kiln would not count it; the roles it asks for{exception}: {}",
                s.env_name,
                known.join(", ")
            ));
        }
        None => {
            let mut still: Vec<String> = Vec::new();
            for r in unmet(&env_report).chain(unmet(&exc_report)) {
                if !still.iter().any(|x| x == r) {
                    still.push(r.to_string());
                }
            }
            match still.as_slice() {
                [one] => one.clone(),
                [] => {
                    return refuse(format!(
                        "{} needs no more approvals ({}); to add one anyway, pass --role",
                        s.promotion,
                        env_report.message()
                    ));
                }
                many => {
                    let flags: Vec<String> = many.iter().map(|r| format!("--role {r}")).collect();
                    return refuse(format!(
                        "environment {} still needs {} approvals; choose one with {}",
                        s.env_name,
                        join_or(many),
                        flags.join(" or ")
                    ));
                }
            }
        }
    };
    if let Some(mine) = given.iter().find(|a| a.user.eq_ignore_ascii_case(s.user) && a.role == role) {
        return refuse(format!("you already approved {} as {role} at {}", s.promotion, mine.at.0));
    }
    // Would it count? Add it and see whether any quorum gains a slot.
    let mut after = given.clone();
    after.push(Approval {
        user: s.user.to_string(),
        role: role.clone(),
        at: Time(Timestamp::UNIX_EPOCH),
        comment: None,
    });
    let gained = filled(&approvals::evaluate(&rules.approvals, &after, &rule)) > filled(&env_report)
        || filled(&approvals::evaluate(s.exception, &after, &rule)) > filled(&exc_report);
    if gained {
        return Ok(Plan { role, note: None });
    }
    if let Some(other) = given.iter().find(|a| a.user.eq_ignore_ascii_case(s.user)) {
        return refuse(format!(
            "you already approved {} as {}; one person counts toward one role only, so a {role} approval from you would not count — ask someone else",
            s.promotion, other.role
        ));
    }
    let holders: Vec<String> = env_report
        .requirements
        .iter()
        .chain(exc_report.requirements.iter())
        .filter(|r| r.role == role)
        .flat_map(|r| r.approvers.clone())
        .collect();
    Ok(Plan {
        role: role.clone(),
        note: Some(format!(
            "the {role} approval is already complete ({}); yours is recorded for the audit trail but not needed",
            holders.join(", ")
        )),
    })
}

/// Approvals a freeze exception needs for this release in this environment now, when it is frozen
/// and the release type may ask for one.
fn exception_requirements(
    windows: &[kiln_api::FreezeWindow],
    env: &str,
    service: &str,
    release_type: kiln_api::ReleaseType,
) -> Vec<ApprovalRequirement> {
    let compiled: Vec<CompiledWindow> = windows
        .iter()
        .filter_map(|w| {
            CompiledWindow::compile(
                w.metadata.namespace.as_deref().unwrap_or_default(),
                w.metadata.name.as_deref().unwrap_or_default(),
                &w.spec,
            )
            .ok()
        })
        .collect();
    let verdict = freeze::evaluate(&compiled, env, service, Timestamp::now());
    if !verdict.is_frozen() {
        return Vec::new();
    }
    freeze::exception_eligible(&verdict.active, release_type).unwrap_or_default()
}

/// Runs the command.
pub async fn run(cluster: &Cluster, args: &ApproveArgs, controller_namespace: &str) -> Result<(), CliError> {
    cluster.preflight().await?;
    let me: Identity = cluster.whoami().await?;
    let release = cluster.release(&args.target.release).await?;
    let env = cluster.environment(&args.target.env).await?;
    // FreezeWindows only add roles (a freeze exception's); if they cannot be read, go on without.
    let windows = cluster.freeze_windows(controller_namespace).await.unwrap_or_default();
    let exception =
        exception_requirements(&windows, &args.target.env, &release.spec.service, release.spec.release_type);
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &ApiResource::erase::<Promotion>(&()));
    let name = target::promotion_name(cluster, &release, &args.target).await?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let raw = api.get(&name).await.map_err(|e| cluster.error(&format!("reading promotion {name}"), e))?;
        let raw = serde_json::to_value(&raw).map_err(|e| CliError::Other(e.to_string()))?;
        let promo: Promotion = serde_json::from_value(raw.clone())
            .map_err(|e| CliError::Other(format!("promotion {name} cannot be read: {e}")))?;
        let situation = Situation {
            user: &me.username,
            release: &args.target.release,
            author: release.spec.author.as_deref(),
            env_name: &args.target.env,
            env: &env.spec,
            promotion: &name,
            promo: &promo,
            exception: &exception,
        };
        let plan = decide(&situation, args.role.as_deref())?;
        let mut approval = json!({"user": me.username, "role": plan.role, "at": Timestamp::now().round(jiff::Unit::Second).map_err(|e| CliError::Other(e.to_string()))?.to_string()});
        if let (Some(c), Some(map)) = (&args.comment, approval.as_object_mut()) {
            map.insert("comment".into(), Value::String(c.clone()));
        }
        let ops = match raw.pointer("/spec/approvals") {
            // Append only if the list is still what we read: a concurrent approval fails the test.
            Some(current) => json!([
                {"op": "test", "path": "/spec/approvals", "value": current},
                {"op": "add", "path": "/spec/approvals/-", "value": approval},
            ]),
            // The schema defaults approvals to []; an object stored without it gets the list.
            None => json!([{"op": "add", "path": "/spec/approvals", "value": [approval]}]),
        };
        let patch: json_patch::Patch =
            serde_json::from_value(ops).map_err(|e| CliError::Other(format!("building the patch: {e}")))?;
        match api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
            Ok(_) => {
                if let Some(note) = &plan.note {
                    eprintln!("note: {note}");
                }
                println!(
                    "promotion.kiln.dev/{name} approved by {} as {}{}",
                    me.username,
                    plan.role,
                    args.comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
                );
                return Ok(());
            }
            // The test failed because someone approved meanwhile: read again, check again. (A 422
            // for any other reason, e.g. admission, leaves the list as it was and is reported.)
            Err(kube::Error::Api(status)) if matches!(status.code, 409 | 422) && attempts < 5 => {
                let again = api.get(&name).await.map_err(|e| cluster.error(&format!("reading promotion {name}"), e))?;
                let again = serde_json::to_value(&again).map_err(|e| CliError::Other(e.to_string()))?;
                if again.pointer("/spec/approvals") != raw.pointer("/spec/approvals") {
                    continue;
                }
                return Err(cluster.error(&format!("approving promotion {name}"), kube::Error::Api(status)));
            }
            Err(e) => return Err(cluster.error(&format!("approving promotion {name}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::environment::PromotionRules;
    use kiln_api::fixtures;
    use kiln_api::promotion::{PromotionSpec, PromotionStatus};

    fn env(reqs: &[(&str, u32)]) -> EnvironmentSpec {
        EnvironmentSpec {
            promotion: PromotionRules {
                approvals: reqs.iter().map(|(r, c)| ApprovalRequirement { role: (*r).into(), count: *c }).collect(),
                ..PromotionRules::default()
            },
            ..fixtures::environment("333333333333", &[])
        }
    }

    fn promo(approvals: &[(&str, &str)], requested_by: Option<&str>) -> Promotion {
        let mut p = Promotion::new(
            "r-prod",
            PromotionSpec {
                release: "r".into(),
                environment: "prod".into(),
                requested_by: requested_by.map(str::to_string),
                approvals: approvals
                    .iter()
                    .map(|(u, r)| Approval {
                        user: (*u).into(),
                        role: (*r).into(),
                        at: Time(Timestamp::UNIX_EPOCH),
                        comment: None,
                    })
                    .collect(),
                abort: false,
                retry: 0,
                rollback: None,
                downgrade: false,
            },
        );
        p.status = Some(PromotionStatus { phase: PromotionPhase::WaitingForApproval, ..Default::default() });
        p
    }

    fn check(user: &str, env: &EnvironmentSpec, p: &Promotion, role: Option<&str>) -> Result<Plan, String> {
        let s = Situation {
            user,
            release: "r",
            author: Some("dana@example.com"),
            env_name: "prod",
            env,
            promotion: "r-prod",
            promo: p,
            exception: &[],
        };
        decide(&s, role).map_err(|e| e.to_string())
    }

    #[test]
    fn the_author_and_the_requester_are_refused() {
        let e = env(&[("security", 1), ("product", 1)]);
        let err = check("Dana@example.com", &e, &promo(&[], None), Some("security")).unwrap_err();
        assert_eq!(
            err,
            "you (Dana@example.com) authored release r; environment prod forbids self-approval — ask someone else"
        );
        let err = check("ci-bot", &e, &promo(&[], Some("ci-bot")), Some("security")).unwrap_err();
        assert!(err.contains("you (ci-bot) requested promotion r-prod"), "{err}");
        let mut allowed = e.clone();
        allowed.promotion.forbid_self_approval = false;
        assert!(check("dana@example.com", &allowed, &promo(&[], None), Some("security")).is_ok());
        // The requester never, whatever forbidSelfApproval says.
        let err = check("ci-bot", &allowed, &promo(&[], Some("ci-bot")), Some("security")).unwrap_err();
        assert!(err.contains("the requester's approval never counts"), "{err}");
    }

    #[test]
    fn the_role_defaults_to_the_one_still_needed() {
        let e = env(&[("security", 1), ("product", 1)]);
        let err = check("sam", &e, &promo(&[], None), None).unwrap_err();
        assert_eq!(
            err,
            "environment prod still needs security and product approvals; choose one with --role security or --role product"
        );
        let plan = check("pm", &e, &promo(&[("sec", "security")], None), None).unwrap();
        assert_eq!(plan, Plan { role: "product".into(), note: None });
        let err = check("x", &e, &promo(&[("sec", "security"), ("pm", "product")], None), None).unwrap_err();
        assert!(err.contains("needs no more approvals (approved (security: sec; product: pm))"), "{err}");
    }

    #[test]
    fn unknown_roles_and_second_approvals_are_refused() {
        let e = env(&[("security", 1), ("product", 1)]);
        let err = check("sam", &e, &promo(&[], None), Some("sre")).unwrap_err();
        assert!(err.contains("does not ask for a sre approval"), "{err}");
        let err = check("SEC", &e, &promo(&[("sec", "security")], None), Some("security")).unwrap_err();
        assert!(err.starts_with("you already approved r-prod as security"), "{err}");
        let err = check("sec", &e, &promo(&[("sec", "security")], None), Some("product")).unwrap_err();
        assert!(err.contains("one person counts toward one role only"), "{err}");
    }

    #[test]
    fn a_complete_role_is_recorded_with_a_note() {
        let e = env(&[("security", 1), ("product", 1)]);
        let plan = check("sec2", &e, &promo(&[("sec", "security")], None), Some("security")).unwrap();
        assert!(plan.note.is_some_and(|n| n.contains("already complete (sec)")));
    }

    #[test]
    fn freeze_exception_roles_can_be_approved() {
        let e = env(&[("security", 1)]);
        let p = promo(&[("sec", "security")], None);
        let exception = [ApprovalRequirement { role: "sre".into(), count: 1 }];
        let s = Situation {
            user: "oncall",
            release: "r",
            author: None,
            env_name: "prod",
            env: &e,
            promotion: "r-prod",
            promo: &p,
            exception: &exception,
        };
        assert_eq!(decide(&s, None).unwrap().role, "sre");
    }

    #[test]
    fn finished_and_rollback_promotions_take_no_approvals() {
        let e = env(&[("security", 1)]);
        let mut p = promo(&[], None);
        p.spec.abort = true;
        assert!(check("sam", &e, &p, None).unwrap_err().contains("was aborted"));
        let mut p = promo(&[], None);
        p.status = Some(PromotionStatus { phase: PromotionPhase::Succeeded, ..Default::default() });
        assert!(check("sam", &e, &p, None).unwrap_err().contains("already succeeded"));
        let e = env(&[]);
        assert!(check("sam", &e, &promo(&[], None), None).unwrap_err().contains("needs no approvals"));
    }
}
