//! `promote`, `abort`, `retry` and `rollback`: the writes a person makes to a Promotion. Each
//! checks first what kiln would do with the write and refuses, with the reason and what to do
//! instead, when it would have no effect.

use std::time::Duration;

use jiff::Timestamp;
use kiln_api::promotion::{PromotionSpec, RollbackRequest};
use kiln_api::{Promotion, PromotionPhase, Release};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cli::{AbortArgs, PromoteArgs, RetryArgs, RollbackArgs};
use crate::cluster::Cluster;
use crate::error::CliError;
use crate::report::{created, forward_promotion};
use crate::{target, timefmt};

fn phase_of(p: &Promotion) -> Option<PromotionPhase> {
    p.status.as_ref().map(|s| s.phase)
}

fn phase_text(p: &Promotion) -> String {
    phase_of(p).map(|ph| ph.to_string()).unwrap_or_else(|| "not yet seen by kiln".into())
}

async fn get_promotion(cluster: &Cluster, name: &str) -> Result<Promotion, CliError> {
    cluster.promotions().get(name).await.map_err(|e| cluster.error(&format!("reading promotion {name}"), e))
}

/// `promote <release> --env <env>`.
pub async fn promote(cluster: &Cluster, args: &PromoteArgs) -> Result<(), CliError> {
    cluster.preflight().await?;
    let me = cluster.whoami().await?;
    let release = cluster.release(&args.release).await?;
    if !release.spec.environments.iter().any(|e| e == &args.env) {
        return Err(CliError::Refused(format!(
            "release {} does not go through environment {} (its environments: {}); kiln would refuse the Promotion",
            args.release,
            args.env,
            release.spec.environments.join(", ")
        )));
    }
    let env = cluster.environment(&args.env).await?;
    let promotions = cluster.list_promotions().await?;
    if args.name.is_none()
        && let Some(existing) = forward_promotion(&promotions, &release, &args.env)
    {
        let name = existing.metadata.name.clone().unwrap_or_default();
        let hint = match phase_of(existing) {
            Some(PromotionPhase::Failed | PromotionPhase::RolledBack) if !existing.spec.abort => format!(
                "retry it (kubectl kiln retry {} --env {}) or create another with --name",
                args.release, args.env
            ),
            Some(PromotionPhase::Aborted) => "it was aborted; create another with --name".to_string(),
            _ if existing.spec.abort => "it was aborted; create another with --name".to_string(),
            _ => format!("follow it with kubectl kiln status {}", args.release),
        };
        return Err(CliError::Refused(format!(
            "release {} already has promotion {name} into {} ({}): {hint}",
            args.release,
            args.env,
            phase_text(existing)
        )));
    }
    // The usual name may still be held by a Promotion of an earlier Release of this name.
    let name = args.name.clone().unwrap_or_else(|| {
        kiln_core::release::new_promotion_name(&args.release, &args.env, release.metadata.uid.as_deref(), |n| {
            promotions.iter().any(|p| p.metadata.name.as_deref() == Some(n))
        })
    });
    let spec = PromotionSpec {
        release: args.release.clone(),
        environment: args.env.clone(),
        requested_by: Some(me.username.clone()),
        approvals: Vec::new(),
        abort: false,
        retry: 0,
        rollback: None,
        downgrade: args.downgrade,
    };
    let promotion = Promotion::new(&name, spec);
    cluster
        .promotions()
        .create(&PostParams::default(), &promotion)
        .await
        .map_err(|e| cluster.error(&format!("creating promotion {name}"), e))?;
    println!("promotion.kiln.dev/{name} created: {} into {}, requested by {}", args.release, args.env, me.username);
    let rules = &env.spec.promotion;
    if !rules.approvals.is_empty() {
        println!(
            "{} needs {}: kubectl kiln approve {} --env {}",
            args.env,
            crate::report::needs_phrase(&rules.approvals),
            args.release,
            args.env
        );
    }
    if rules.auto {
        eprintln!(
            "note: environment {} is auto: kiln creates its Promotions by itself once the upstreams succeeded",
            args.env
        );
    }
    Ok(())
}

/// `abort <release> --env <env>`.
pub async fn abort(cluster: &Cluster, args: &AbortArgs) -> Result<(), CliError> {
    let timeout = timefmt::duration("--timeout", &args.timeout)?;
    cluster.preflight().await?;
    let release = cluster.release(&args.target.release).await?;
    let name = target::promotion_name(cluster, &release, &args.target).await?;
    let promo = get_promotion(cluster, &name).await?;
    let env = &args.target.env;
    if promo.spec.abort {
        println!("promotion.kiln.dev/{name} was already aborted ({})", phase_text(&promo));
    } else {
        match phase_of(&promo) {
            Some(PromotionPhase::Succeeded) => {
                return Err(CliError::Refused(format!(
                    "{name} already succeeded; abort has no effect. To return {env} to an earlier release: \
                     kubectl kiln rollback {} --env {env} --reason \"...\"",
                    release.spec.service
                )));
            }
            Some(p @ (PromotionPhase::RolledBack | PromotionPhase::Failed | PromotionPhase::Aborted)) => {
                return Err(CliError::Refused(format!("{name} already ended ({p}); there is nothing to abort")));
            }
            _ => {}
        }
        cluster
            .promotions()
            .patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"abort": true}})))
            .await
            .map_err(|e| cluster.error(&format!("aborting promotion {name}"), e))?;
        let what = match phase_of(&promo) {
            Some(p) if p.is_in_flight() => {
                let weight = promo
                    .status
                    .as_ref()
                    .and_then(|s| s.step.as_ref())
                    .map(|s| format!(" at {}%", s.weight))
                    .unwrap_or_default();
                format!("it was {p}{weight}: kiln restores the previous state now")
            }
            Some(p) => format!("it was {p}: it ends Aborted, nothing had changed"),
            None => "kiln had not acted on it yet: it ends Aborted".to_string(),
        };
        println!("promotion.kiln.dev/{name} abort requested ({what})");
    }
    if args.wait {
        let done = wait_until_finished(cluster, &name, timeout).await?;
        print_outcome(&done);
    }
    Ok(())
}

/// `retry <release> --env <env>`.
pub async fn retry(cluster: &Cluster, args: &RetryArgs) -> Result<(), CliError> {
    cluster.preflight().await?;
    let release = cluster.release(&args.target.release).await?;
    let name = target::promotion_name(cluster, &release, &args.target).await?;
    let promo = get_promotion(cluster, &name).await?;
    let (r, e) = (&args.target.release, &args.target.env);
    if promo.spec.abort || phase_of(&promo) == Some(PromotionPhase::Aborted) {
        return Err(CliError::Refused(format!(
            "{name} was aborted and cannot be retried; to try again, create a new Promotion: \
             kubectl kiln promote {r} --env {e} --name {r}-{e}-2"
        )));
    }
    let observed = promo.status.as_ref().map(|s| s.observed_retry).unwrap_or(0);
    if promo.spec.retry > observed {
        return Err(CliError::Refused(format!(
            "{name} already has retry #{} pending; kiln has not acted on it yet",
            promo.spec.retry
        )));
    }
    match phase_of(&promo) {
        Some(PromotionPhase::Failed | PromotionPhase::RolledBack) => {}
        _ => {
            return Err(CliError::Refused(format!(
                "only a Failed or RolledBack Promotion can be retried; {name} is {}",
                phase_text(&promo)
            )));
        }
    }
    let next = promo.spec.retry + 1;
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/retry", "value": promo.spec.retry},
        {"op": "add", "path": "/spec/retry", "value": next},
    ]))
    .map_err(|e| CliError::Other(format!("building the patch: {e}")))?;
    cluster
        .promotions()
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| cluster.error(&format!("retrying promotion {name}"), e))?;
    let cause = promo
        .status
        .as_ref()
        .and_then(|s| s.rollback.as_ref())
        .map(|rb| format!(", cause {}", rb.cause))
        .unwrap_or_default();
    println!(
        "promotion.kiln.dev/{name} retry #{next} requested (it was {}{cause}): kiln evaluates its gates again",
        phase_text(&promo)
    );
    Ok(())
}

/// What `rollback` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackChoice {
    /// The release running in the environment now.
    pub current: String,
    /// The release to return to.
    pub target: String,
}

/// When a Promotion took effect: its start, else its creation.
fn started(p: &Promotion) -> Option<Timestamp> {
    p.status
        .as_ref()
        .and_then(|s| s.started_at.as_ref())
        .map(|t| t.0)
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// When a Promotion succeeded: its completion, else its start.
fn succeeded_at(p: &Promotion) -> Option<Timestamp> {
    p.status.as_ref().and_then(|s| s.completed_at.as_ref()).map(|t| t.0).or_else(|| started(p))
}

/// Picks the release running in `env` now and the one to return to, without any I/O.
///
/// The current release is the one of the newest Promotion into `env` (forward or rollback) that
/// deployed or is deploying (Succeeded, Deploying, Baking). The target is `to`, or else the
/// release whose forward Promotion into `env` succeeded most recently before the current one
/// started, skipping releases a rollback already took the environment away from. kiln only lets
/// a rollback return to a release that succeeded in the environment before.
pub fn choose_rollback(
    service: &str,
    env: &str,
    releases: &[Release],
    promotions: &[Promotion],
    to: Option<&str>,
) -> Result<RollbackChoice, CliError> {
    let of_service: Vec<&str> =
        releases.iter().filter(|r| r.spec.service == service).filter_map(|r| r.metadata.name.as_deref()).collect();
    if of_service.is_empty() {
        return Err(CliError::NotFound(format!("no release of service {service} in this namespace")));
    }
    let here: Vec<&Promotion> = promotions
        .iter()
        .filter(|p| p.spec.environment == env && of_service.contains(&p.spec.release.as_str()))
        .collect();
    let deployed = |p: &&&Promotion| {
        matches!(phase_of(p), Some(PromotionPhase::Succeeded | PromotionPhase::Deploying | PromotionPhase::Baking))
    };
    let current = here.iter().filter(deployed).max_by_key(|p| (started(p), created(p))).ok_or_else(|| {
        CliError::Refused(format!("nothing to roll back: no release of {service} is deployed in {env}"))
    })?;
    let current_name = current.spec.release.clone();
    let current_start = started(current);
    let good = |release: &str| -> Option<Timestamp> {
        here.iter()
            .filter(|p| {
                p.spec.release == release && p.spec.rollback.is_none() && phase_of(p) == Some(PromotionPhase::Succeeded)
            })
            .filter_map(|p| succeeded_at(p))
            .max()
    };
    if let Some(to) = to {
        if !releases.iter().any(|r| r.metadata.name.as_deref() == Some(to)) {
            return Err(CliError::NotFound(format!("release {to} not found in this namespace")));
        }
        if !of_service.contains(&to) {
            return Err(CliError::Refused(format!("release {to} is not a release of service {service}")));
        }
        if to == current_name {
            return Err(CliError::Refused(format!("{to} is what runs in {env} now")));
        }
        if good(to).is_none() {
            return Err(CliError::Refused(format!(
                "a rollback must return {env} to a Release that succeeded there before, and {to} never did; promote it normally instead"
            )));
        }
        return Ok(RollbackChoice { current: current_name, target: to.to_string() });
    }
    let rolled_away_from = |release: &str, after: Timestamp| {
        here.iter().any(|p| {
            p.spec.rollback.as_ref().and_then(|r| r.from_release.as_deref()) == Some(release)
                && !matches!(phase_of(p), Some(PromotionPhase::Aborted | PromotionPhase::Failed))
                && created(p).0.is_some_and(|c| c >= after)
        })
    };
    let target = of_service
        .iter()
        .filter(|r| **r != current_name)
        .filter_map(|r| good(r).map(|at| (at, *r)))
        .filter(|(at, _)| current_start.is_none_or(|start| *at <= start))
        .filter(|(at, r)| !rolled_away_from(r, *at))
        .max()
        .map(|(_, r)| r.to_string())
        .ok_or_else(|| {
            CliError::Refused(format!(
                "no earlier release of {service} succeeded in {env} before {current_name}: nothing to roll back to \
                 (name one with --to)"
            ))
        })?;
    Ok(RollbackChoice { current: current_name, target })
}

/// `rollback <service> --env <env> [--to <release>] --reason ...`.
pub async fn rollback(cluster: &Cluster, args: &RollbackArgs) -> Result<(), CliError> {
    let timeout = timefmt::duration("--timeout", &args.timeout)?;
    if args.reason.trim().is_empty() {
        return Err(CliError::Usage("--reason must say why (it goes into the evidence)".into()));
    }
    cluster.preflight().await?;
    let me = cluster.whoami().await?;
    let releases = cluster.list_releases().await?;
    let promotions = cluster.list_promotions().await?;
    let choice = choose_rollback(&args.service, &args.env, &releases, &promotions, args.to.as_deref())?;
    let spec = PromotionSpec {
        release: choice.target.clone(),
        environment: args.env.clone(),
        requested_by: Some(me.username.clone()),
        approvals: Vec::new(),
        abort: false,
        retry: 0,
        rollback: Some(RollbackRequest { reason: args.reason.clone(), from_release: Some(choice.current.clone()) }),
        downgrade: false,
    };
    let base = kiln_core::release::promotion_name(&choice.target, &format!("{}-rollback", args.env));
    let mut created_name = None;
    for n in 1..=9 {
        let name = if n == 1 { base.clone() } else { format!("{base}-{n}") };
        match cluster.promotions().create(&PostParams::default(), &Promotion::new(&name, spec.clone())).await {
            Ok(_) => {
                created_name = Some(name);
                break;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(cluster.error(&format!("creating rollback promotion {name}"), e)),
        }
    }
    let name = created_name.ok_or_else(|| {
        CliError::Refused(format!("promotions {base} to {base}-9 all exist; delete old ones or roll back with kubectl"))
    })?;
    println!(
        "promotion.kiln.dev/{name} created: rollback of {} from {} to {}, requested by {}",
        args.env, choice.current, choice.target, me.username
    );
    if args.wait {
        let done = wait_until_finished(cluster, &name, timeout).await?;
        print_outcome(&done);
    }
    Ok(())
}

/// Polls a Promotion until it has ended, or fails after `timeout`.
async fn wait_until_finished(
    cluster: &Cluster,
    name: &str,
    timeout: jiff::SignedDuration,
) -> Result<Promotion, CliError> {
    let deadline = tokio::time::Instant::now() + Duration::try_from(timeout).unwrap_or(Duration::from_secs(300));
    loop {
        let p = get_promotion(cluster, name).await?;
        if phase_of(&p).is_some_and(PromotionPhase::is_terminal) {
            return Ok(p);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Other(format!(
                "{name} has not finished after {}: it is {}",
                kiln_core::time::human_duration(timeout),
                phase_text(&p)
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_outcome(p: &Promotion) {
    let name = p.metadata.name.as_deref().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    let detail = match &status.rollback {
        Some(r) => {
            let ms =
                r.breach_to_restore_millis.map(|ms| format!(" in {:.1} s", ms as f64 / 1000.0)).unwrap_or_default();
            format!(": {} (cause {}){ms}", r.message, r.cause)
        }
        None => status.message.map(|m| format!(": {m}")).unwrap_or_default(),
    };
    println!("promotion.kiln.dev/{name} {}{detail}", status.phase);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kiln_api::fixtures;
    use kiln_api::promotion::PromotionStatus;

    fn release(name: &str, service: &str) -> Release {
        Release::new(name, fixtures::lambda_release(service, &["dev", "prod"]))
    }

    fn at(minute: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + minute * 60).expect("in range"))
    }

    fn promo(release: &str, env: &str, phase: PromotionPhase, minute: i64, from: Option<&str>) -> Promotion {
        let mut p = Promotion::new(
            &format!("{release}-{env}-{minute}"),
            PromotionSpec {
                release: release.into(),
                environment: env.into(),
                requested_by: None,
                approvals: vec![],
                abort: false,
                retry: 0,
                rollback: from.map(|f| RollbackRequest { reason: "r".into(), from_release: Some(f.into()) }),
                downgrade: false,
            },
        );
        p.metadata.creation_timestamp = Some(at(minute));
        p.status = Some(PromotionStatus {
            phase,
            started_at: Some(at(minute + 1)),
            completed_at: phase.is_terminal().then(|| at(minute + 5)),
            ..Default::default()
        });
        p
    }

    fn rels() -> Vec<Release> {
        vec![release("v1", "api"), release("v2", "api"), release("v3", "api"), release("o1", "other")]
    }

    #[test]
    fn the_last_good_release_before_the_current_one() {
        let promos = vec![
            promo("v1", "prod", PromotionPhase::Succeeded, 0, None),
            promo("v2", "prod", PromotionPhase::Succeeded, 10, None),
            promo("v3", "prod", PromotionPhase::Baking, 20, None),
            promo("v2", "dev", PromotionPhase::Succeeded, 25, None),
        ];
        let c = choose_rollback("api", "prod", &rels(), &promos, None).unwrap();
        assert_eq!(c, RollbackChoice { current: "v3".into(), target: "v2".into() });
        // Roll back a succeeded one.
        let mut promos = promos;
        promos[2] = promo("v3", "prod", PromotionPhase::Succeeded, 20, None);
        assert_eq!(choose_rollback("api", "prod", &rels(), &promos, None).unwrap().target, "v2");
        // After rolling v3 back to v2, the next rollback goes to v1, not "forward" to v3.
        promos.push(promo("v2", "prod", PromotionPhase::Succeeded, 30, Some("v3")));
        let c = choose_rollback("api", "prod", &rels(), &promos, None).unwrap();
        assert_eq!(c, RollbackChoice { current: "v2".into(), target: "v1".into() });
    }

    #[test]
    fn to_must_have_succeeded_in_the_environment() {
        let promos = vec![
            promo("v1", "prod", PromotionPhase::Succeeded, 0, None),
            promo("v2", "prod", PromotionPhase::RolledBack, 10, None),
            promo("v3", "prod", PromotionPhase::Succeeded, 20, None),
        ];
        let err = choose_rollback("api", "prod", &rels(), &promos, Some("v2")).unwrap_err().to_string();
        assert!(err.contains("v2 never did; promote it normally instead"), "{err}");
        assert_eq!(choose_rollback("api", "prod", &rels(), &promos, Some("v1")).unwrap().target, "v1");
        assert!(choose_rollback("api", "prod", &rels(), &promos, Some("o1")).is_err());
        assert!(choose_rollback("api", "prod", &rels(), &promos, Some("v3")).is_err());
        // The rolled-back v2 is skipped by default too.
        assert_eq!(choose_rollback("api", "prod", &rels(), &promos, None).unwrap().target, "v1");
    }

    #[test]
    fn nothing_deployed_or_nothing_earlier() {
        assert!(
            choose_rollback("api", "prod", &rels(), &[], None)
                .unwrap_err()
                .to_string()
                .contains("nothing to roll back")
        );
        let promos = vec![promo("v1", "prod", PromotionPhase::Succeeded, 0, None)];
        assert!(
            choose_rollback("api", "prod", &rels(), &promos, None)
                .unwrap_err()
                .to_string()
                .contains("no earlier release")
        );
        assert!(choose_rollback("nope", "prod", &rels(), &promos, None).is_err());
    }
}
