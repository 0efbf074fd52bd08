//! Watching the signals while traffic is on the new version: breaches, and reads that fail.

use jiff::{SignedDuration, Timestamp};
use kiln_api::RollbackCause;
use kiln_api::environment::SignalReadFailureAction;
use kiln_api::promotion::BakeStatus;

use super::draft::Draft;
use super::in_flight::begin_rollback;
use super::{Action, EventNote};
use crate::observe::PolicyState;
use crate::reason;
use crate::signals;
use crate::time::{human_duration, to_time};

/// Evaluates the signals and records them; with `act`, starts a rollback on a breach.
pub(super) fn watch_signals(d: &mut Draft<'_, '_>, act: bool) -> Option<Action> {
    let input = d.input;
    // Nothing the new version did can show before the deployment started.
    let since = d.status.started_at.as_ref().map(|t| t.0)?;
    d.status.previous.as_ref()?;
    match &input.observed.policy {
        PolicyState::NotRequired => None,
        PolicyState::Missing(_) if !act => None,
        PolicyState::Missing(name) => begin_rollback(
            d,
            RollbackCause::Alarm,
            Some(name.to_string()),
            format!("RollbackPolicy {name} disappeared during the deployment; signals cannot be watched (fail closed)"),
            None,
        ),
        PolicyState::Found(policy) => {
            let Some(obs) = input.observed.signals.as_ref() else {
                return signal_read_failed(d, act);
            };
            let previous = d.status.bake.as_ref().map(|b| b.signals.clone()).unwrap_or_default();
            let ev = signals::evaluate(policy, obs, since, &previous);
            let bake = d.status.bake.get_or_insert_with(BakeStatus::default);
            bake.signals = ev.signals.clone();
            bake.read_failing_since = None;
            if let signals::Verdict::Inconclusive(why) = ev.verdict() {
                d.inconclusive = Some(why);
            }
            if let Some(b) = ev.first_breach().filter(|_| act) {
                let latency = b.started_at.map(|s| human_duration(input.now.duration_since(s)));
                let message = match latency {
                    Some(l) => format!("{} (detected {l} after it began)", b.message),
                    None => b.message.clone(),
                };
                return begin_rollback(d, b.kind.cause(), Some(b.signal.clone()), message, b.started_at);
            }
            None
        }
    }
}

/// The signals could not be read this time. Reported at once (`Stalled`, reason
/// `SignalReadFailing`, a Warning Event when it starts); once reads have failed for the
/// Environment's `bake.signalReadFailure.after`, the Promotion rolls back (fail closed: no breach
/// can be seen without a read) or, with `action: hold`, keeps holding.
fn signal_read_failed(d: &mut Draft<'_, '_>, act: bool) -> Option<Action> {
    let error = d.input.observed.signal_read_error.clone()?;
    // A rollback Promotion restores a known-good state and never rolls itself back on signals.
    if !act {
        return None;
    }
    let settings =
        d.input.observed.environment.as_ref().map(|e| e.bake.signal_read_failure.clone()).unwrap_or_default();
    let after =
        crate::duration::parse("bake.signalReadFailure.after", &settings.after).unwrap_or(SignedDuration::from_mins(2));
    let now = d.now();
    let bake = d.status.bake.get_or_insert_with(BakeStatus::default);
    let since = match bake.read_failing_since.as_ref() {
        Some(t) => t.0,
        None => {
            bake.read_failing_since = Some(to_time(now));
            now
        }
    };
    let deadline = since.checked_add(after).unwrap_or(since);
    let at = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    if since == now {
        let then = match settings.action {
            SignalReadFailureAction::RollBack => format!("rolling back at {} unless a read succeeds", at(deadline)),
            SignalReadFailureAction::Hold => format!("will hold traffic as it is from {}", at(deadline)),
        };
        d.events.push(EventNote {
            warning: true,
            reason: reason::SIGNAL_READ_FAILING.into(),
            message: format!("rollback signals cannot be read: {error}; {then}"),
        });
    }
    if now >= deadline && settings.action == SignalReadFailureAction::RollBack {
        let message = format!(
            "rollback signals could not be read for {} (since {}): {error}; no breach can be seen without them",
            human_duration(now.duration_since(since)),
            at(since)
        );
        return begin_rollback(d, RollbackCause::SignalsUnreadable, None, message, Some(since));
    }
    let next = if now >= deadline {
        "holding traffic as it is until reads work again or the Promotion is aborted".to_string()
    } else {
        match settings.action {
            SignalReadFailureAction::RollBack => format!("rolling back at {} unless a read succeeds", at(deadline)),
            SignalReadFailureAction::Hold => format!("will hold traffic as it is from {}", at(deadline)),
        }
    };
    d.stalled = Some((
        reason::SIGNAL_READ_FAILING,
        format!("rollback signals cannot be read since {}: {error}; {next}", at(since)),
    ));
    if now < deadline {
        d.requeue_at(deadline);
    }
    None
}
