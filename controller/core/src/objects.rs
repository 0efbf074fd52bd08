//! Status of the kinds the platform and service teams configure kiln with — Environments,
//! FreezeWindows and RollbackPolicies — so `kubectl get`, dashboards, Argo CD and Flux show
//! whether each is usable, and a FreezeWindow whether it is in effect.
//!
//! Pure: the controller passes the spec, what it knows of the cluster, the current status and
//! the time, and writes the result only if it differs. Nothing here carries elapsed times, so a
//! status changes only when something real does (no write on every reconcile).

use std::collections::BTreeMap;

use jiff::Timestamp;
use kiln_api::common::condition;
use kiln_api::environment::{EnvironmentSpec, EnvironmentStatus};
use kiln_api::freeze_window::FreezeWindowStatus;
use kiln_api::rollback_policy::{RollbackPolicySpec, RollbackPolicyStatus};

use crate::freeze::{self, CompiledWindow};
use crate::machine::set_condition;
use crate::signals;
use crate::time::to_time;

/// The reason of a Ready condition that is True.
pub const VALID: &str = "Valid";
/// The reason of a Ready condition that is False because of the spec.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// An Environment's status: Ready unless it names an unknown upstream, forms a cycle, or has an
/// invalid duration. `environments` is every Environment in the cluster, by name.
pub fn environment_status(
    name: &str,
    environments: &BTreeMap<String, EnvironmentSpec>,
    generation: Option<i64>,
    current: &EnvironmentStatus,
    now: Timestamp,
) -> EnvironmentStatus {
    let errors = crate::validate::environments(environments).remove(name).unwrap_or_default();
    let mut status = current.clone();
    status.observed_generation = generation;
    if errors.is_empty() {
        let env = environments.get(name);
        let upstream = env.map(|e| e.upstream.join(", ")).filter(|u| !u.is_empty());
        let message = match upstream {
            Some(u) => format!("valid; Promotions come from {u}"),
            None => "valid; the first environment".to_string(),
        };
        set_condition(&mut status.conditions, condition::READY, true, VALID, &message, generation, now);
    } else {
        let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        set_condition(&mut status.conditions, condition::READY, false, INVALID_SPEC, &message, generation, now);
    }
    status
}

/// A FreezeWindow's status at `now`: whether it is in effect, until when, when it next starts,
/// and Ready (False for a window that does not compile, e.g. an unknown time zone). Also returns
/// when the status next changes on its own (the controller looks again then).
pub fn freeze_window_status(
    compiled: &Result<CompiledWindow, String>,
    generation: Option<i64>,
    current: &FreezeWindowStatus,
    now: Timestamp,
) -> (FreezeWindowStatus, Option<Timestamp>) {
    let mut status = current.clone();
    status.observed_generation = generation;
    match compiled {
        Ok(window) => {
            let w = freeze::window_status(window, now);
            status.active = w.active;
            status.active_until = w.active_until.map(to_time);
            status.next_start = w.next_start.map(to_time);
            let message = match (w.active_until, w.next_start) {
                (Some(until), _) => format!("in effect until {}", until.strftime("%Y-%m-%dT%H:%M:%SZ")),
                (None, Some(next)) => format!("not in effect; next starts {}", next.strftime("%Y-%m-%dT%H:%M:%SZ")),
                (None, None) => "not in effect, and no freeze is scheduled".to_string(),
            };
            set_condition(&mut status.conditions, condition::READY, true, VALID, &message, generation, now);
            let next_change = match (w.active_until, w.next_start) {
                (Some(until), _) => Some(until),
                (None, next) => next,
            };
            (status, next_change)
        }
        Err(why) => {
            status.active = false;
            status.active_until = None;
            status.next_start = None;
            let message = format!("{why}; Promotions this window could cover wait until it is fixed");
            set_condition(&mut status.conditions, condition::READY, false, INVALID_SPEC, &message, generation, now);
            (status, None)
        }
    }
}

/// A RollbackPolicy's status: how many alarm selectors it has, and Ready unless it cannot be
/// evaluated (bad durations, an error budget that does not add up).
pub fn rollback_policy_status(
    spec: &RollbackPolicySpec,
    generation: Option<i64>,
    current: &RollbackPolicyStatus,
    now: Timestamp,
) -> RollbackPolicyStatus {
    let mut status = current.clone();
    status.observed_generation = generation;
    status.alarm_selectors = i32::try_from(spec.alarms.len()).unwrap_or(i32::MAX);
    match signals::validate_policy(spec) {
        Ok(()) => {
            let message = format!(
                "valid; {} alarm selector(s), {} metric trigger(s){}, read every {}",
                spec.alarms.len(),
                spec.metrics.len(),
                if spec.error_budget.is_some() { ", an error budget" } else { "" },
                spec.interval
            );
            set_condition(&mut status.conditions, condition::READY, true, VALID, &message, generation, now);
        }
        Err(e) => {
            let message = format!("{e}; Promotions guarded by this policy wait until it is fixed");
            set_condition(&mut status.conditions, condition::READY, false, INVALID_SPEC, &message, generation, now);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::common::ApprovalRequirement;
    use kiln_api::environment::PromotionRules;
    use kiln_api::fixtures;
    use kiln_api::freeze_window::FreezeWindowSpec;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn env(upstream: &[&str]) -> EnvironmentSpec {
        EnvironmentSpec {
            promotion: PromotionRules {
                approvals: vec![ApprovalRequirement { role: "security".into(), count: 1 }],
                ..PromotionRules::default()
            },
            ..fixtures::environment("111111111111", upstream)
        }
    }

    fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> (String, String, String) {
        let c = conditions.iter().find(|c| c.type_ == "Ready").unwrap_or_else(|| panic!("no Ready in {conditions:?}"));
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn environments_are_ready_unless_their_upstreams_are_wrong() {
        let now = ts("2026-11-30T12:00:00Z");
        let envs: BTreeMap<String, EnvironmentSpec> =
            [("dev".to_string(), env(&[])), ("stg".to_string(), env(&["dev"])), ("prod".to_string(), env(&["qa"]))]
                .into();
        let dev = environment_status("dev", &envs, Some(1), &EnvironmentStatus::default(), now);
        assert_eq!(ready(&dev.conditions), ("True".into(), VALID.into(), "valid; the first environment".into()));
        let stg = environment_status("stg", &envs, Some(2), &EnvironmentStatus::default(), now);
        assert_eq!(ready(&stg.conditions).2, "valid; Promotions come from dev");
        assert_eq!(stg.observed_generation, Some(2));
        let prod = environment_status("prod", &envs, Some(1), &EnvironmentStatus::default(), now);
        let (status, reason, message) = ready(&prod.conditions);
        assert_eq!((status.as_str(), reason.as_str()), ("False", INVALID_SPEC));
        assert!(message.contains("qa"), "{message}");

        // The same inputs later: the same status (nothing to write).
        let again = environment_status("dev", &envs, Some(1), &dev, ts("2026-11-30T13:00:00Z"));
        assert_eq!(again, dev);
    }

    fn weekend() -> FreezeWindowSpec {
        serde_json::from_value(serde_json::json!({
            "timeZone": "America/New_York",
            "recurring": [{"from": {"day": "Friday", "time": "17:00"}, "to": {"day": "Monday", "time": "09:00"}}]
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_freeze_window_says_whether_it_is_in_effect_and_when_that_changes() {
        let compiled = CompiledWindow::compile("kiln-system", "weekend", &weekend()).map_err(|e| e.to_string());
        // Wednesday: not in effect, next Friday 17:00 New York (22:00 UTC).
        let (wed, change) =
            freeze_window_status(&compiled, Some(1), &FreezeWindowStatus::default(), ts("2026-11-25T15:00:00Z"));
        assert!(!wed.active);
        assert_eq!(wed.next_start.as_ref().map(|t| t.0), Some(ts("2026-11-27T22:00:00Z")));
        assert_eq!(change, Some(ts("2026-11-27T22:00:00Z")));
        assert_eq!(ready(&wed.conditions).2, "not in effect; next starts 2026-11-27T22:00:00Z");
        // Saturday: in effect until Monday 09:00 (14:00 UTC), then next Friday.
        let (sat, change) = freeze_window_status(&compiled, Some(1), &wed, ts("2026-11-28T15:00:00Z"));
        assert!(sat.active);
        assert_eq!(sat.active_until.as_ref().map(|t| t.0), Some(ts("2026-11-30T14:00:00Z")));
        assert_eq!(sat.next_start.as_ref().map(|t| t.0), Some(ts("2026-12-04T22:00:00Z")));
        assert_eq!(change, Some(ts("2026-11-30T14:00:00Z")));
        assert_eq!(
            ready(&sat.conditions),
            ("True".into(), VALID.into(), "in effect until 2026-11-30T14:00:00Z".into())
        );
    }

    #[test]
    fn a_freeze_window_that_does_not_compile_is_not_ready() {
        let mut spec = weekend();
        spec.time_zone = "Mars/Olympus".into();
        let compiled = CompiledWindow::compile("kiln-system", "weekend", &spec).map_err(|e| e.to_string());
        let (st, change) =
            freeze_window_status(&compiled, Some(3), &FreezeWindowStatus::default(), ts("2026-11-28T15:00:00Z"));
        let (status, reason, message) = ready(&st.conditions);
        assert_eq!((status.as_str(), reason.as_str()), ("False", INVALID_SPEC));
        assert!(message.contains("Mars/Olympus"), "{message}");
        assert!(!st.active && change.is_none());
    }

    #[test]
    fn a_rollback_policy_counts_its_selectors_and_says_if_it_can_be_evaluated() {
        let now = ts("2026-11-30T12:00:00Z");
        let mut spec: RollbackPolicySpec = serde_json::from_value(serde_json::json!({
            "alarms": [{"name": "ingest-5xx"}, {"prefix": "ingest-"}], "interval": "30s"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let st = rollback_policy_status(&spec, Some(1), &RollbackPolicyStatus::default(), now);
        assert_eq!(st.alarm_selectors, 2);
        assert_eq!(
            ready(&st.conditions),
            ("True".into(), VALID.into(), "valid; 2 alarm selector(s), 0 metric trigger(s), read every 30s".into())
        );
        spec.interval = "0s".into();
        let st = rollback_policy_status(&spec, Some(2), &st, now);
        let (status, reason, message) = ready(&st.conditions);
        assert_eq!((status.as_str(), reason.as_str()), ("False", INVALID_SPEC));
        assert!(message.contains("spec.interval"), "{message}");
    }
}
