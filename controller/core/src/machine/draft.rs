//! The status being decided, with the Events, requeue and `Stalled` reason that go with it.

use jiff::{SignedDuration, Timestamp};
use kiln_api::PromotionPhase;
use kiln_api::common::condition;
use kiln_api::promotion::{EvidenceArchive, MAX_TIMELINE, PromotionStatus, TimelineEntry};

use super::conditions::{set_condition, set_conditions};
use super::{Action, Decision, EventNote, PromotionInput};
use crate::evidence;
use crate::reason;
use crate::time::to_time;

pub(super) struct Draft<'i, 'a> {
    pub(super) input: &'i PromotionInput<'a>,
    pub(super) status: PromotionStatus,
    pub(super) events: Vec<EventNote>,
    pub(super) requeue: Option<SignedDuration>,
    /// Signals that had no data at the last read (ignored by the policy), for the record.
    pub(super) inconclusive: Option<String>,
    /// In flight but not progressing: (reason, message) for the `Stalled` condition.
    pub(super) stalled: Option<(&'static str, String)>,
}

impl<'i, 'a> Draft<'i, 'a> {
    pub(super) fn new(input: &'i PromotionInput<'a>) -> Self {
        let mut status = input.status.clone();
        status.observed_generation = input.generation;
        Draft { input, status, events: Vec::new(), requeue: None, inconclusive: None, stalled: None }
    }

    pub(super) fn now(&self) -> Timestamp {
        self.input.now
    }

    /// Records a transition (or a notable step) in the timeline and as an Event.
    pub(super) fn note(&mut self, phase: PromotionPhase, reason: &str, message: String, warning: bool) {
        self.status.phase = phase;
        self.status.message = Some(message.clone());
        self.status.timeline.push(TimelineEntry {
            at: to_time(self.now()),
            phase,
            reason: reason.into(),
            message: message.clone(),
        });
        if self.status.timeline.len() > MAX_TIMELINE {
            // Keep the first entry (creation) and the most recent ones.
            self.status.timeline.remove(1);
        }
        self.events.push(EventNote { warning, reason: reason.into(), message });
    }

    /// Changes phase, noting it only if it is a change.
    pub(super) fn enter(&mut self, phase: PromotionPhase, reason: &str, message: String) {
        if self.status.phase != phase || self.status.timeline.is_empty() {
            self.note(phase, reason, message, false);
        } else {
            self.status.message = Some(message);
        }
    }

    pub(super) fn requeue_at(&mut self, at: Timestamp) {
        let d = at.duration_since(self.now()).max(SignedDuration::from_secs(1));
        self.requeue_in(d);
    }

    pub(super) fn requeue_in(&mut self, d: SignedDuration) {
        self.requeue = Some(match self.requeue {
            Some(cur) => cur.min(d),
            None => d,
        });
    }

    pub(super) fn finish(mut self, action: Option<Action>) -> Decision {
        let now = self.now();
        set_conditions(&mut self.status, self.input.generation, now, !self.input.observed.problems.is_empty());
        if let Some((reason, message)) = self.stalled.take().filter(|_| self.status.phase.is_in_flight()) {
            let generation = self.input.generation;
            set_condition(&mut self.status.conditions, condition::STALLED, true, reason, &message, generation, now);
            set_condition(
                &mut self.status.conditions,
                condition::RECONCILING,
                false,
                reason,
                &message,
                generation,
                now,
            );
        }
        Decision { status: self.status, action, requeue_after: self.requeue, events: self.events }
    }

    /// Ends the Promotion: completion time, evidence and its digest.
    pub(super) fn terminate(&mut self, phase: PromotionPhase, reason: &str, message: String, warning: bool) {
        self.note(phase, reason, message, warning);
        self.status.completed_at = Some(to_time(self.now()));
        let ev = evidence::build(
            &self.input.context,
            self.input.spec,
            self.input.observed.release.as_ref(),
            self.input.observed.environment.as_ref(),
            &self.status,
        );
        let sha = evidence::digest(&ev);
        self.events.push(EventNote {
            warning: false,
            reason: reason::EVIDENCE.into(),
            message: evidence::summary(&ev, &sha),
        });
        // Where the record goes, decided now: a later change to the Environment does not move it.
        self.status.evidence_archive =
            self.input.observed.environment.as_ref().and_then(|e| e.evidence.as_ref()).map(|a| {
                let prefix = a.prefix.as_deref().unwrap_or(kiln_api::environment::DEFAULT_EVIDENCE_PREFIX);
                let ctx = &self.input.context;
                EvidenceArchive {
                    bucket: a.bucket.clone(),
                    key: format!("{prefix}{}/{}/{sha}.json", ctx.namespace, ctx.promotion),
                    archived_at: None,
                    failed_attempts: None,
                    abandoned_at: None,
                }
            });
        self.status.evidence_sha256 = Some(sha);
        self.status.evidence = Some(ev);
    }
}
