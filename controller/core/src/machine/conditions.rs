//! The kstatus conditions (`Ready`, `Reconciling`, `Stalled`) derived from the phase.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kiln_api::PromotionPhase;
use kiln_api::common::condition;
use kiln_api::promotion::PromotionStatus;

use crate::gates;
use crate::reason;
use crate::time::to_time;

/// Sets the kstatus conditions from the phase. `lastTransitionTime` only moves when a
/// condition's status flips.
pub(super) fn set_conditions(status: &mut PromotionStatus, generation: Option<i64>, now: Timestamp, invalid: bool) {
    let phase = status.phase;
    let message = status.message.clone().unwrap_or_default();
    let invalid = invalid || status.gates.iter().any(|g| g.name == gates::name::VALIDATION && !g.ok);
    let ready = phase == PromotionPhase::Succeeded;
    let stalled = (invalid && !phase.is_terminal() && !phase.is_in_flight())
        || matches!(phase, PromotionPhase::Failed | PromotionPhase::RolledBack | PromotionPhase::Aborted);
    let reconciling = !phase.is_terminal() && !stalled;
    let reason =
        if invalid && !phase.is_in_flight() && !phase.is_terminal() { reason::INVALID_SPEC } else { phase.as_str() };
    set_condition(&mut status.conditions, condition::READY, ready, reason, &message, generation, now);
    set_condition(&mut status.conditions, condition::RECONCILING, reconciling, reason, &message, generation, now);
    set_condition(&mut status.conditions, condition::STALLED, stalled, reason, &message, generation, now);
}

/// Sets one condition, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if value { "True" } else { "False" }.to_string();
    // Kubernetes limits condition messages to 32768 characters.
    let message: String = message.chars().take(32_000).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = to_time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: to_time(now),
        }),
    }
}
