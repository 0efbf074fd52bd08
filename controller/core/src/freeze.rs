//! Freeze windows: is an environment frozen at an instant, until when, and when does the next
//! freeze begin.
//!
//! A `FreezeWindow` spec is first compiled ([`CompiledWindow::compile`]): the time zone is looked
//! up, the weekly times are parsed and every span is checked to be non-empty. Evaluation is then a
//! pure function of the compiled windows and an instant passed in by the caller.
//!
//! # Spans
//!
//! - A recurring span "day A time a → day B time b" starts every week at A a local time and ends
//!   at the next B b after that start, so it may cross the end of the week (Friday 17:00 → Monday
//!   09:00). It covers `[start, end)`.
//! - An absolute span covers `[start, end)` between two instants.
//!
//! Spans that overlap or adjoin (one ends exactly where another starts) form one continuous
//! freeze; [`evaluate`] reports the end of that whole period, across every window that applies.
//!
//! # Daylight saving time
//!
//! Recurring spans are written in local civil time: "Friday 17:00" is 17:00 on the clocks of the
//! window's time zone all year, so a Friday 17:00 → Monday 09:00 span lasts 64 hours on most
//! weekends and 63 or 65 hours on a weekend with a DST change. Each boundary is turned into an
//! instant with jiff's "compatible" disambiguation (the same rule as RFC 5545 and JavaScript's
//! Temporal): a local time skipped by a spring-forward gap is read with the offset from before
//! the gap (02:30 becomes 03:30 after a 02:00 → 03:00 jump), and a local time that occurs twice
//! in a fall-back fold means its first occurrence. One adjustment: when that would move a start
//! past its span's end (a span shorter than the gap, starting in it: 02:45 → 03:15), the span
//! starts when the clocks jump (03:00), so a freeze never silently disappears.
//!
//! # Bounds
//!
//! All searches are bounded: a recurring span is only looked for in the few weeks around the
//! instant, and chaining spans into one freeze follows at most [`MAX_CHAINED_SPANS`] spans.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use kiln_api::common::{ApprovalRequirement, ReleaseType};
use kiln_api::freeze_window::{FreezeExceptions, FreezeWindowSpec, RecurringSpan, Weekday, WeeklyTime};

use crate::SpecError;

const MINUTES_PER_DAY: i64 = 24 * 60;
const MINUTES_PER_WEEK: i64 = 7 * MINUTES_PER_DAY;

/// How many overlapping or adjoining spans [`evaluate`] and [`window_status`] follow to find where
/// a freeze ends. Real calendars need a handful (a weekend, a holiday, the next weekend); the
/// bound keeps a window that is frozen forever from looping. If a freeze goes on beyond it, the
/// reported end is where the search stopped: still frozen then, and a later evaluation goes on.
pub const MAX_CHAINED_SPANS: usize = 64;

/// Weeks around an instant's local week searched for a recurring occurrence containing it. A
/// span is shorter than a week, so the previous and current weeks suffice; one more on each side
/// absorbs offset changes near the week boundary.
const ACTIVE_WEEKS: std::ops::RangeInclusive<i64> = -2..=1;
/// Weeks searched for the next start: the current week and the following ones, with room to
/// spare for offset changes (Samoa once skipped a whole day).
const NEXT_WEEKS: std::ops::RangeInclusive<i64> = -1..=3;

/// A validated FreezeWindow, ready to be evaluated at any instant.
#[derive(Debug, Clone)]
pub struct CompiledWindow {
    name: String,
    time_zone: TimeZone,
    time_zone_name: String,
    reason: Option<String>,
    environments: Vec<String>,
    services: Vec<String>,
    exceptions: Option<FreezeExceptions>,
    recurring: Vec<WeeklySpan>,
    absolute: Vec<InstantSpan>,
}

/// A recurring span in minutes of the local week (Monday 00:00 is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WeeklySpan {
    /// Start, in minutes after Monday 00:00 local time.
    from: i64,
    /// Length in local civil minutes, between 1 and a week minus one minute.
    len: i64,
}

/// An absolute span.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InstantSpan {
    start: Timestamp,
    end: Timestamp,
    reason: Option<String>,
}

/// One span of a window that contains an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSpan {
    /// When the span started.
    pub start: Timestamp,
    /// When it ends (exclusive).
    pub end: Timestamp,
    /// The absolute span's own reason, else the window's.
    pub reason: Option<String>,
}

/// A window that freezes an environment at the evaluated instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFreeze {
    /// The window, as "namespace/name".
    pub window: String,
    /// Why it is frozen: the active absolute span's reason, else the window's.
    pub reason: Option<String>,
    /// When this window's freeze ends, including its own overlapping or adjoining spans.
    pub until: Timestamp,
    /// The window's IANA time zone, for showing `until` to people.
    pub time_zone: String,
    /// Who may deploy anyway.
    pub exceptions: Option<FreezeExceptions>,
    /// The instant the freeze was evaluated at; [`describe`] adds the date to `until` when it is
    /// more than six days after this.
    pub evaluated_at: Timestamp,
}

/// Whether an environment and service are frozen at an instant, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FreezeVerdict {
    /// The applicable windows active at the instant, in the order given. Empty when not frozen.
    pub active: Vec<ActiveFreeze>,
    /// When frozen: the end of the continuous frozen period starting at the instant, all
    /// applicable windows chained together (a holiday overlapping a weekend extends it).
    pub frozen_until: Option<Timestamp>,
    /// When the next freeze begins: after the instant, or, when frozen, after `frozen_until`.
    /// `None` when no freeze is ahead (only past absolute spans).
    pub next_start: Option<Timestamp>,
}

impl FreezeVerdict {
    /// Whether any applicable window is active.
    pub fn is_frozen(&self) -> bool {
        !self.active.is_empty()
    }
}

/// A FreezeWindow's own state at an instant, for its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowStatus {
    /// Whether the window is in effect.
    pub active: bool,
    /// While active: when the window's freeze (including adjoining spans) ends.
    pub active_until: Option<Timestamp>,
    /// When the window's next freeze starts (after `active_until` while active).
    pub next_start: Option<Timestamp>,
}

impl CompiledWindow {
    /// Validates a FreezeWindow spec: the time zone must be in the IANA database, weekly times
    /// must be HH:MM, and no span may be empty. `namespace` and `name` identify the window in
    /// messages.
    pub fn compile(namespace: &str, name: &str, spec: &FreezeWindowSpec) -> Result<CompiledWindow, SpecError> {
        let unknown = || SpecError::UnknownTimeZone { name: spec.time_zone.clone() };
        let time_zone = TimeZone::get(&spec.time_zone).map_err(|_| unknown())?;
        // jiff resolves "Etc/Unknown" to its placeholder zone, which is not an IANA zone.
        let time_zone_name = time_zone.iana_name().ok_or_else(unknown)?.to_string();

        let recurring = spec
            .recurring
            .iter()
            .enumerate()
            .map(|(i, span)| compile_recurring(&format!("spec.recurring[{i}]"), span))
            .collect::<Result<Vec<_>, _>>()?;

        let absolute = spec
            .absolute
            .iter()
            .enumerate()
            .map(|(i, span)| {
                let (start, end) = (span.start.0, span.end.0);
                if end <= start {
                    return Err(SpecError::EmptySpan {
                        field: format!("spec.absolute[{i}]"),
                        start: start.to_string(),
                        end: end.to_string(),
                    });
                }
                Ok(InstantSpan { start, end, reason: span.reason.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(CompiledWindow {
            name: format!("{namespace}/{name}"),
            time_zone,
            time_zone_name,
            reason: spec.reason.clone(),
            environments: spec.environments.clone(),
            services: spec.services.clone(),
            exceptions: spec.exceptions.clone(),
            recurring,
            absolute,
        })
    }

    /// The window as "namespace/name".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The canonical IANA name of the window's time zone.
    pub fn time_zone(&self) -> &str {
        &self.time_zone_name
    }

    /// Why the window exists.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The environments frozen (empty: all).
    pub fn environments(&self) -> &[String] {
        &self.environments
    }

    /// The services frozen (empty: all).
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// Who may deploy during the freeze anyway.
    pub fn exceptions(&self) -> Option<&FreezeExceptions> {
        self.exceptions.as_ref()
    }

    /// Whether the window covers this environment and service. An empty list covers all.
    pub fn applies_to(&self, environment: &str, service: &str) -> bool {
        (self.environments.is_empty() || self.environments.iter().any(|e| e == environment))
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
    }

    /// The span of this window containing `t`. When several do (overlapping spans), the one that
    /// ends last.
    pub fn active_at(&self, t: Timestamp) -> Option<ActiveSpan> {
        self.spans_containing(t).max_by_key(|(_, end, _)| *end).map(|(start, end, reason)| ActiveSpan {
            start,
            end,
            reason: reason.map(str::to_string),
        })
    }

    /// The earliest start of a span of this window strictly after `t`; `None` when there is none
    /// (a window with only past absolute spans).
    pub fn next_start(&self, t: Timestamp) -> Option<Timestamp> {
        let recurring = self.recurring_occurrences(t, NEXT_WEEKS).map(|(start, _)| start);
        let absolute = self.absolute.iter().map(|span| span.start);
        recurring.chain(absolute).filter(|start| *start > t).min()
    }

    /// The latest end among this window's spans containing `t`.
    fn active_end(&self, t: Timestamp) -> Option<Timestamp> {
        self.spans_containing(t).map(|(_, end, _)| end).max()
    }

    /// Every span (start, end, reason) of this window containing `t`.
    fn spans_containing(&self, t: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp, Option<&str>)> + '_ {
        let window_reason = self.reason.as_deref();
        let recurring =
            self.recurring_occurrences(t, ACTIVE_WEEKS).map(move |(start, end)| (start, end, window_reason));
        let absolute =
            self.absolute.iter().map(move |span| (span.start, span.end, span.reason.as_deref().or(window_reason)));
        recurring.chain(absolute).filter(move |(start, end, _)| *start <= t && t < *end)
    }

    /// The occurrences (start, end) of every recurring span in the given weeks, counted from the
    /// local week of `t`. Occurrences outside jiff's range (or inside a single gap) are skipped.
    fn recurring_occurrences(
        &self,
        t: Timestamp,
        weeks: std::ops::RangeInclusive<i64>,
    ) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let monday = if self.recurring.is_empty() { None } else { local_monday(&self.time_zone, t) };
        weeks.filter_map(move |k| monday?.checked_add(SignedDuration::from_hours(7 * 24 * k)).ok()).flat_map(
            move |monday| self.recurring.iter().filter_map(move |span| span.occurrence(&self.time_zone, monday)),
        )
    }
}

impl WeeklySpan {
    /// The occurrence starting in the local week beginning on `monday`, as instants. `None` when
    /// it is out of jiff's range or empty after disambiguation.
    fn occurrence(&self, tz: &TimeZone, monday: Date) -> Option<(Timestamp, Timestamp)> {
        let week: DateTime = monday.to_datetime(jiff::civil::Time::midnight());
        let start = week.checked_add(SignedDuration::from_mins(self.from)).ok()?;
        let end = start.checked_add(SignedDuration::from_mins(self.len)).ok()?;
        let start_at = tz.to_timestamp(start).ok()?;
        let end_at = tz.to_timestamp(end).ok()?;
        if start_at < end_at {
            return Some((start_at, end_at));
        }
        // Compatible disambiguation moves a start inside a gap forward by the gap's length
        // (02:45 → 03:45), past the end of a span shorter than that (02:45 → 03:15). Start when
        // the clocks jump instead, so the part of the span they do show (03:00 → 03:15) stays
        // frozen.
        let jump = gap_end(tz, start)?;
        (jump < end_at).then_some((jump, end_at))
    }
}

/// The instant the clocks jump forward over `dt`, when `dt` is inside a gap.
fn gap_end(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, `dt` is an instant shortly before the jump.
            let before_jump = after.to_timestamp(dt).ok()?;
            tz.following(before_jump).next().map(|transition| transition.timestamp())
        }
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => None,
    }
}

/// The Monday of the local week containing `t`.
fn local_monday(tz: &TimeZone, t: Timestamp) -> Option<Date> {
    let date = tz.to_datetime(t).date();
    let days_since_monday = i64::from(date.weekday().to_monday_zero_offset());
    date.checked_sub(SignedDuration::from_hours(24 * days_since_monday)).ok()
}

fn compile_recurring(field: &str, span: &RecurringSpan) -> Result<WeeklySpan, SpecError> {
    let from = minute_of_week(&format!("{field}.from.time"), &span.from)?;
    let to = minute_of_week(&format!("{field}.to.time"), &span.to)?;
    let len = (to - from).rem_euclid(MINUTES_PER_WEEK);
    if len == 0 {
        return Err(SpecError::EmptySpan {
            field: field.to_string(),
            start: format!("{:?} {}", span.from.day, span.from.time),
            end: format!("{:?} {}", span.to.day, span.to.time),
        });
    }
    Ok(WeeklySpan { from, len })
}

fn minute_of_week(field: &str, at: &WeeklyTime) -> Result<i64, SpecError> {
    let day = match at.day {
        Weekday::Monday => 0,
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
    };
    Ok(day * MINUTES_PER_DAY + parse_time_of_day(field, &at.time)?)
}

/// Parses strict 24-hour "HH:MM" into minutes after midnight.
fn parse_time_of_day(field: &str, value: &str) -> Result<i64, SpecError> {
    let bad = || SpecError::BadTimeOfDay { field: field.to_string(), value: value.to_string() };
    let (hours, minutes) = value.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| -> Option<i64> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    match (two_digits(hours), two_digits(minutes)) {
        (Some(h), Some(m)) if h < 24 && m < 60 => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// The end of the continuous frozen period starting at `t`, following overlapping and adjoining
/// spans of all `windows`; `None` when none is active at `t`.
fn frozen_until(windows: &[&CompiledWindow], t: Timestamp) -> Option<Timestamp> {
    let mut until = None;
    let mut at = t;
    for _ in 0..MAX_CHAINED_SPANS {
        // Spans are [start, end): whatever is active at the previous end overlaps or adjoins.
        match windows.iter().filter_map(|w| w.active_end(at)).max() {
            Some(end) => {
                until = Some(end);
                at = end;
            }
            None => break,
        }
    }
    until
}

/// Whether `environment`/`service` is frozen at `t` by any window that applies to it, until
/// when, and when the next freeze begins. Windows that do not apply are ignored.
pub fn evaluate(windows: &[CompiledWindow], environment: &str, service: &str, t: Timestamp) -> FreezeVerdict {
    let applicable: Vec<&CompiledWindow> = windows.iter().filter(|w| w.applies_to(environment, service)).collect();
    let active: Vec<ActiveFreeze> = applicable
        .iter()
        .filter_map(|w| {
            let span = w.active_at(t)?;
            Some(ActiveFreeze {
                window: w.name.clone(),
                reason: span.reason,
                until: frozen_until(&[w], t).unwrap_or(span.end),
                time_zone: w.time_zone_name.clone(),
                exceptions: w.exceptions.clone(),
                evaluated_at: t,
            })
        })
        .collect();
    let frozen_until = if active.is_empty() { None } else { frozen_until(&applicable, t) };
    let after = frozen_until.unwrap_or(t);
    let next_start = applicable.iter().filter_map(|w| w.next_start(after)).min();
    FreezeVerdict { active, frozen_until, next_start }
}

/// A window's own state at `t`, for `FreezeWindow.status`, regardless of environments.
pub fn window_status(window: &CompiledWindow, t: Timestamp) -> WindowStatus {
    let active_until = frozen_until(&[window], t);
    WindowStatus {
        active: active_until.is_some(),
        active_until,
        next_start: window.next_start(active_until.unwrap_or(t)),
    }
}

/// Whether a release of `release_type` may ask for a freeze exception, and with which approvals.
///
/// Every active window must list the type in its exceptions; the approvals required are the union
/// of the windows' (the highest count for a role named twice). With no active window there is
/// nothing to except and nothing is required. The error names a window that allows no exception
/// for this type.
pub fn exception_eligible(
    active: &[ActiveFreeze],
    release_type: ReleaseType,
) -> Result<Vec<ApprovalRequirement>, String> {
    let mut required: Vec<ApprovalRequirement> = Vec::new();
    for freeze in active {
        let exceptions = match &freeze.exceptions {
            Some(e) if e.release_types.contains(&release_type) => e,
            Some(e) if !e.release_types.is_empty() => {
                let allowed: Vec<&str> = e.release_types.iter().map(|t| t.as_str()).collect();
                return Err(format!(
                    "FreezeWindow {} allows exceptions only for {} releases, not {release_type}",
                    freeze.window,
                    allowed.join(", ")
                ));
            }
            _ => {
                return Err(format!(
                    "FreezeWindow {} allows no exceptions; {release_type} releases must wait until it ends",
                    freeze.window
                ));
            }
        };
        for requirement in &exceptions.approvals {
            match required.iter_mut().find(|r| r.role == requirement.role) {
                Some(r) => r.count = r.count.max(requirement.count),
                None => required.push(requirement.clone()),
            }
        }
    }
    Ok(required)
}

/// A message for people: "FreezeWindow kiln-system/weekend active until Mon 09:00
/// America/New_York (weekend freeze)". The end is shown in the window's time zone, with its date
/// when it is more than six days after the evaluated instant.
pub fn describe(active: &ActiveFreeze) -> String {
    // The name came from a compiled window, so the lookup succeeds; UTC is only a fallback for
    // hand-built values.
    let tz = TimeZone::get(&active.time_zone).unwrap_or(TimeZone::UTC);
    let local = tz.to_datetime(active.until);
    let weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .get(usize::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0))
        .copied()
        .unwrap_or("");
    let far = active.until.duration_since(active.evaluated_at) > SignedDuration::from_hours(6 * 24);
    let date =
        if far { format!(" {:04}-{:02}-{:02}", local.year(), local.month(), local.day()) } else { String::new() };
    let reason = active.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    format!(
        "FreezeWindow {} active until {weekday}{date} {:02}:{:02} {}{reason}",
        active.window,
        local.hour(),
        local.minute(),
        active.time_zone
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::DateTime;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kiln_api::freeze_window::AbsoluteSpan;
    use proptest::prelude::*;

    const NEW_YORK: &str = "America/New_York";

    /// A local civil time ("2026-03-06T17:00") in a time zone, as an instant.
    fn local(tz: &str, civil: &str) -> Timestamp {
        let dt: DateTime = civil.parse().unwrap();
        TimeZone::get(tz).unwrap().to_timestamp(dt).unwrap()
    }

    /// An RFC 3339 instant with its offset, e.g. "2026-03-09T09:00:00-04:00".
    fn ts(rfc3339: &str) -> Timestamp {
        rfc3339.parse().unwrap()
    }

    fn weekly(from_day: Weekday, from: &str, to_day: Weekday, to: &str) -> RecurringSpan {
        RecurringSpan {
            from: WeeklyTime { day: from_day, time: from.to_string() },
            to: WeeklyTime { day: to_day, time: to.to_string() },
        }
    }

    fn absolute(start: &str, end: &str, reason: Option<&str>) -> AbsoluteSpan {
        AbsoluteSpan { start: Time(ts(start)), end: Time(ts(end)), reason: reason.map(str::to_string) }
    }

    fn approval(role: &str, count: u32) -> ApprovalRequirement {
        ApprovalRequirement { role: role.to_string(), count }
    }

    fn base(time_zone: &str) -> FreezeWindowSpec {
        FreezeWindowSpec {
            environments: vec![],
            services: vec![],
            time_zone: time_zone.to_string(),
            recurring: vec![],
            absolute: vec![],
            exceptions: None,
            reason: None,
        }
    }

    /// The product's prod weekend freeze: Friday 17:00 to Monday 09:00 US Eastern time.
    fn weekend_spec(time_zone: &str) -> FreezeWindowSpec {
        FreezeWindowSpec {
            environments: vec!["prod".to_string()],
            recurring: vec![weekly(Weekday::Friday, "17:00", Weekday::Monday, "09:00")],
            exceptions: Some(FreezeExceptions {
                release_types: vec![ReleaseType::Emergency, ReleaseType::Hotfix],
                approvals: vec![approval("sre", 1), approval("release-engineering", 1)],
            }),
            reason: Some("weekend freeze".to_string()),
            ..base(time_zone)
        }
    }

    fn weekend() -> CompiledWindow {
        CompiledWindow::compile("kiln-system", "weekend", &weekend_spec(NEW_YORK)).unwrap()
    }

    /// Year-end holidays 2026: starts inside the Christmas weekend, ends exactly when the New
    /// Year weekend starts.
    fn holidays() -> CompiledWindow {
        let spec = FreezeWindowSpec {
            environments: vec!["prod".to_string()],
            absolute: vec![absolute(
                "2026-12-28T00:00:00-05:00",
                "2027-01-01T17:00:00-05:00",
                Some("year-end holidays"),
            )],
            exceptions: Some(FreezeExceptions {
                release_types: vec![ReleaseType::Hotfix],
                approvals: vec![approval("sre", 2), approval("product", 1)],
            }),
            ..base(NEW_YORK)
        };
        CompiledWindow::compile("kiln-system", "holidays", &spec).unwrap()
    }

    #[test]
    fn weekend_freeze_covers_friday_evening_to_monday_morning() {
        let w = weekend();
        // 2026-07-10 is a Friday, in daylight saving time (-04:00).
        assert!(w.active_at(local(NEW_YORK, "2026-07-10T16:59:59")).is_none());
        let friday = w.active_at(local(NEW_YORK, "2026-07-10T17:00")).unwrap();
        assert_eq!(friday.start, ts("2026-07-10T17:00:00-04:00"));
        let saturday = w.active_at(local(NEW_YORK, "2026-07-11T12:00")).unwrap();
        assert_eq!(saturday.end, ts("2026-07-13T09:00:00-04:00"));
        assert_eq!(saturday.reason.as_deref(), Some("weekend freeze"));
        assert!(w.active_at(local(NEW_YORK, "2026-07-13T08:59:59")).is_some());
        assert!(w.active_at(local(NEW_YORK, "2026-07-13T09:00")).is_none());

        let wednesday = local(NEW_YORK, "2026-07-08T10:00");
        assert_eq!(w.next_start(wednesday), Some(ts("2026-07-10T17:00:00-04:00")));
        // From inside the weekend, the next start is the following Friday.
        assert_eq!(w.next_start(local(NEW_YORK, "2026-07-11T12:00")), Some(ts("2026-07-17T17:00:00-04:00")));
    }

    #[test]
    fn weekend_freeze_follows_local_time_across_dst_changes() {
        let w = weekend();
        // US DST starts Sunday 2026-03-08: the weekend is 63 hours long.
        let saturday = local(NEW_YORK, "2026-03-07T12:00");
        let span = w.active_at(saturday).unwrap();
        assert_eq!(span.start, ts("2026-03-06T17:00:00-05:00"));
        assert_eq!(span.end, ts("2026-03-09T09:00:00-04:00"));
        assert_eq!(span.end, ts("2026-03-09T13:00:00Z"));
        assert_eq!(span.end.duration_since(span.start), SignedDuration::from_hours(63));
        assert_eq!(w.next_start(local(NEW_YORK, "2026-03-04T12:00")), Some(ts("2026-03-06T22:00:00Z")));
        assert_eq!(w.next_start(saturday), Some(ts("2026-03-13T17:00:00-04:00")));

        // US DST ends Sunday 2026-11-01: the weekend is 65 hours long.
        let span = w.active_at(local(NEW_YORK, "2026-10-31T12:00")).unwrap();
        assert_eq!(span.start, ts("2026-10-30T17:00:00-04:00"));
        assert_eq!(span.start, ts("2026-10-30T21:00:00Z"));
        assert_eq!(span.end, ts("2026-11-02T09:00:00-05:00"));
        assert_eq!(span.end, ts("2026-11-02T14:00:00Z"));
        assert_eq!(span.end.duration_since(span.start), SignedDuration::from_hours(65));
        // Sunday 01:30 happens twice that night; both are frozen.
        assert!(w.active_at(ts("2026-11-01T01:30:00-04:00")).is_some());
        assert!(w.active_at(ts("2026-11-01T01:30:00-05:00")).is_some());
        assert!(w.active_at(ts("2026-11-02T08:59:59-05:00")).is_some());
        assert!(w.active_at(ts("2026-11-02T09:00:00-05:00")).is_none());
        assert_eq!(w.next_start(ts("2026-11-02T09:00:00-05:00")), Some(ts("2026-11-06T17:00:00-05:00")));
    }

    #[test]
    fn southern_hemisphere_dst_starts_in_october() {
        // Sydney moves from +10:00 to +11:00 on Sunday 2026-10-04.
        let w = CompiledWindow::compile("prod", "weekend", &weekend_spec("Australia/Sydney")).unwrap();
        let span = w.active_at(local("Australia/Sydney", "2026-10-03T12:00")).unwrap();
        assert_eq!(span.start, ts("2026-10-02T17:00:00+10:00"));
        assert_eq!(span.end, ts("2026-10-05T09:00:00+11:00"));
        assert_eq!(span.end.duration_since(span.start), SignedDuration::from_hours(63));
    }

    #[test]
    fn boundaries_in_a_gap_or_fold_use_compatible_disambiguation() {
        let spec = FreezeWindowSpec {
            recurring: vec![
                // 02:30 does not exist on 2026-03-08 in New York: the span starts at 03:30 EDT.
                weekly(Weekday::Sunday, "02:30", Weekday::Sunday, "06:00"),
                // 01:30 happens twice on 2026-11-01: the span ends at the first one (EDT).
                weekly(Weekday::Saturday, "22:00", Weekday::Sunday, "01:30"),
            ],
            ..base(NEW_YORK)
        };
        let w = CompiledWindow::compile("ops", "night", &spec).unwrap();
        assert_eq!(w.next_start(ts("2026-03-08T00:00:00-05:00")), Some(ts("2026-03-08T03:30:00-04:00")));
        assert!(w.active_at(ts("2026-03-08T03:29:59-04:00")).is_none());
        assert!(w.active_at(ts("2026-03-08T03:30:00-04:00")).is_some());
        let fold = w.active_at(ts("2026-11-01T01:00:00-04:00")).unwrap();
        assert_eq!(fold.end, ts("2026-11-01T01:30:00-04:00"));
        assert!(w.active_at(ts("2026-11-01T01:15:00-05:00")).is_none());
    }

    #[test]
    fn a_span_shorter_than_a_gap_starts_when_the_clocks_jump() {
        // 02:45 → 03:15 on 2026-03-08 in New York: compatible would start it at 03:45, after its
        // end; it runs from the jump (03:00 EDT) to 03:15 instead.
        let spec = FreezeWindowSpec {
            recurring: vec![weekly(Weekday::Sunday, "02:45", Weekday::Sunday, "03:15")],
            ..base(NEW_YORK)
        };
        let w = CompiledWindow::compile("ops", "short", &spec).unwrap();
        let span = w.active_at(ts("2026-03-08T03:10:00-04:00")).unwrap();
        assert_eq!((span.start, span.end), (ts("2026-03-08T03:00:00-04:00"), ts("2026-03-08T03:15:00-04:00")));
        assert_eq!(w.next_start(ts("2026-03-08T00:00:00-05:00")), Some(ts("2026-03-08T03:00:00-04:00")));

        // Samoa skipped Friday 2011-12-30: a Friday noon to Saturday 06:00 freeze keeps its
        // Saturday part.
        let spec = FreezeWindowSpec {
            recurring: vec![weekly(Weekday::Friday, "12:00", Weekday::Saturday, "06:00")],
            ..base("Pacific/Apia")
        };
        let w = CompiledWindow::compile("ops", "samoa", &spec).unwrap();
        let span = w.active_at(local("Pacific/Apia", "2011-12-31T03:00")).unwrap();
        assert_eq!((span.start, span.end), (ts("2011-12-31T00:00:00+14:00"), ts("2011-12-31T06:00:00+14:00")));
    }

    #[test]
    fn spans_may_cross_the_week_boundary_or_last_almost_a_week() {
        let spec = FreezeWindowSpec {
            recurring: vec![weekly(Weekday::Sunday, "22:00", Weekday::Monday, "02:00")],
            ..base("UTC")
        };
        let w = CompiledWindow::compile("ops", "maintenance", &spec).unwrap();
        // 2026-07-12 is a Sunday.
        assert!(w.active_at(ts("2026-07-12T23:00:00Z")).is_some());
        assert_eq!(w.active_at(ts("2026-07-13T01:00:00Z")).unwrap().end, ts("2026-07-13T02:00:00Z"));
        assert!(w.active_at(ts("2026-07-13T02:00:00Z")).is_none());

        // Monday 09:00 to the next Monday 08:00: open only one hour a week.
        let spec = FreezeWindowSpec {
            recurring: vec![weekly(Weekday::Monday, "09:00", Weekday::Monday, "08:00")],
            ..base("UTC")
        };
        let w = CompiledWindow::compile("ops", "lockdown", &spec).unwrap();
        let thursday = w.active_at(ts("2026-07-16T12:00:00Z")).unwrap();
        assert_eq!((thursday.start, thursday.end), (ts("2026-07-13T09:00:00Z"), ts("2026-07-20T08:00:00Z")));
        assert!(w.active_at(ts("2026-07-20T08:30:00Z")).is_none());
        assert_eq!(w.next_start(ts("2026-07-20T08:30:00Z")), Some(ts("2026-07-20T09:00:00Z")));
    }

    #[test]
    fn a_holiday_overlapping_a_weekend_extends_the_freeze() {
        let windows = [weekend(), holidays()];
        let saturday = local(NEW_YORK, "2026-12-26T12:00");
        let verdict = evaluate(&windows, "prod", "web", saturday);
        // Christmas weekend (until Mon 28 09:00) → holidays (28 00:00 to Fri Jan 1 17:00) → the
        // New Year weekend that starts exactly then (until Mon Jan 4 09:00).
        assert_eq!(verdict.frozen_until, Some(ts("2027-01-04T09:00:00-05:00")));
        assert_eq!(verdict.next_start, Some(ts("2027-01-08T17:00:00-05:00")));
        assert_eq!(verdict.active.len(), 1);
        assert_eq!(verdict.active[0].window, "kiln-system/weekend");
        assert_eq!(verdict.active[0].until, ts("2026-12-28T09:00:00-05:00"));

        let monday = local(NEW_YORK, "2026-12-28T08:00");
        let verdict = evaluate(&windows, "prod", "web", monday);
        let names: Vec<&str> = verdict.active.iter().map(|a| a.window.as_str()).collect();
        assert_eq!(names, ["kiln-system/weekend", "kiln-system/holidays"]);
        assert_eq!(verdict.active[1].reason.as_deref(), Some("year-end holidays"));
        assert_eq!(verdict.active[1].until, ts("2027-01-01T17:00:00-05:00"));
        assert_eq!(verdict.frozen_until, Some(ts("2027-01-04T09:00:00-05:00")));

        // Without the holidays window the freeze ends Monday morning.
        let verdict = evaluate(&windows[..1], "prod", "web", saturday);
        assert_eq!(verdict.frozen_until, Some(ts("2026-12-28T09:00:00-05:00")));
        assert_eq!(verdict.next_start, Some(ts("2027-01-01T17:00:00-05:00")));
    }

    #[test]
    fn not_frozen_reports_the_next_freeze() {
        let windows = [weekend(), holidays()];
        let verdict = evaluate(&windows, "prod", "web", local(NEW_YORK, "2026-12-22T10:00"));
        assert!(!verdict.is_frozen());
        assert_eq!(verdict.frozen_until, None);
        assert_eq!(verdict.next_start, Some(ts("2026-12-25T17:00:00-05:00")));

        // A window with only past absolute spans has no next start.
        let verdict = evaluate(&windows[1..], "prod", "web", local(NEW_YORK, "2027-02-01T10:00"));
        assert_eq!(verdict, FreezeVerdict::default());
    }

    #[test]
    fn windows_scoped_elsewhere_do_not_apply() {
        let staging = FreezeWindowSpec { environments: vec!["staging".to_string()], ..weekend_spec(NEW_YORK) };
        let billing = FreezeWindowSpec {
            environments: vec![],
            services: vec!["billing".to_string()],
            absolute: vec![absolute("2026-07-01T00:00:00Z", "2026-07-03T00:00:00Z", Some("billing cycle"))],
            recurring: vec![],
            ..weekend_spec(NEW_YORK)
        };
        let windows = [
            CompiledWindow::compile("team", "staging-weekend", &staging).unwrap(),
            CompiledWindow::compile("team", "billing-cycle", &billing).unwrap(),
        ];
        let saturday = local(NEW_YORK, "2026-07-11T12:00");
        assert!(windows[0].applies_to("staging", "web"));
        assert!(!windows[0].applies_to("prod", "web"));
        assert!(!evaluate(&windows, "prod", "web", saturday).is_frozen());
        assert!(evaluate(&windows, "staging", "web", saturday).is_frozen());

        let cycle = ts("2026-07-02T12:00:00Z");
        assert!(!evaluate(&windows, "prod", "web", cycle).is_frozen());
        let verdict = evaluate(&windows, "prod", "billing", cycle);
        assert_eq!(verdict.active[0].reason.as_deref(), Some("billing cycle"));
        assert_eq!(verdict.frozen_until, Some(ts("2026-07-03T00:00:00Z")));
        assert_eq!(verdict.next_start, None);
    }

    #[test]
    fn exceptions_need_every_active_window_to_allow_the_release_type() {
        let windows = [weekend(), holidays()];
        let monday = local(NEW_YORK, "2026-12-28T08:00");
        let verdict = evaluate(&windows, "prod", "web", monday);

        let needed = exception_eligible(&verdict.active, ReleaseType::Hotfix).unwrap();
        assert_eq!(needed, [approval("sre", 2), approval("release-engineering", 1), approval("product", 1)]);

        let err = exception_eligible(&verdict.active, ReleaseType::Emergency).unwrap_err();
        assert_eq!(err, "FreezeWindow kiln-system/holidays allows exceptions only for hotfix releases, not emergency");
        let err = exception_eligible(&verdict.active, ReleaseType::Standard).unwrap_err();
        assert!(
            err.starts_with("FreezeWindow kiln-system/weekend allows exceptions only for emergency, hotfix"),
            "{err}"
        );

        // Only the weekend is active on the Saturday before: emergencies may pass with its approvals.
        let verdict = evaluate(&windows, "prod", "web", local(NEW_YORK, "2026-12-26T12:00"));
        let needed = exception_eligible(&verdict.active, ReleaseType::Emergency).unwrap();
        assert_eq!(needed, [approval("sre", 1), approval("release-engineering", 1)]);

        let no_exceptions = FreezeWindowSpec { exceptions: None, ..weekend_spec(NEW_YORK) };
        let w = [CompiledWindow::compile("prod", "weekend", &no_exceptions).unwrap()];
        let verdict = evaluate(&w, "prod", "web", local(NEW_YORK, "2026-12-26T12:00"));
        let err = exception_eligible(&verdict.active, ReleaseType::Emergency).unwrap_err();
        assert_eq!(err, "FreezeWindow prod/weekend allows no exceptions; emergency releases must wait until it ends");

        assert_eq!(exception_eligible(&[], ReleaseType::Standard), Ok(vec![]));
    }

    #[test]
    fn describe_shows_the_end_in_the_window_time_zone() {
        let windows = [weekend(), holidays()];
        let verdict = evaluate(&windows, "prod", "web", local(NEW_YORK, "2026-07-11T12:00"));
        assert_eq!(
            describe(&verdict.active[0]),
            "FreezeWindow kiln-system/weekend active until Mon 09:00 America/New_York (weekend freeze)"
        );
        // Less than six days ahead: the weekday is enough.
        let verdict = evaluate(&windows[1..], "prod", "web", local(NEW_YORK, "2026-12-28T00:00"));
        assert_eq!(
            describe(&verdict.active[0]),
            "FreezeWindow kiln-system/holidays active until Fri 17:00 America/New_York (year-end holidays)"
        );
        let long = FreezeWindowSpec {
            absolute: vec![absolute("2026-12-20T00:00:00Z", "2027-01-04T14:00:00Z", None)],
            recurring: vec![],
            reason: None,
            ..weekend_spec("Europe/London")
        };
        // More than six days ahead: the date too.
        let w = [CompiledWindow::compile("kiln-system", "year-end", &long).unwrap()];
        let verdict = evaluate(&w, "prod", "web", ts("2026-12-21T09:00:00Z"));
        assert_eq!(
            describe(&verdict.active[0]),
            "FreezeWindow kiln-system/year-end active until Mon 2027-01-04 14:00 Europe/London"
        );
    }

    #[test]
    fn window_status_reports_active_until_and_next_start() {
        let w = weekend();
        let status = window_status(&w, local(NEW_YORK, "2026-07-11T12:00"));
        assert_eq!(
            status,
            WindowStatus {
                active: true,
                active_until: Some(ts("2026-07-13T09:00:00-04:00")),
                next_start: Some(ts("2026-07-17T17:00:00-04:00")),
            }
        );
        let status = window_status(&w, local(NEW_YORK, "2026-07-08T12:00"));
        assert_eq!(
            status,
            WindowStatus { active: false, active_until: None, next_start: Some(ts("2026-07-10T17:00:00-04:00")) }
        );
        // Environments do not matter for a window's own status.
        let staging = FreezeWindowSpec { environments: vec!["staging".to_string()], ..weekend_spec(NEW_YORK) };
        let w = CompiledWindow::compile("team", "staging", &staging).unwrap();
        assert!(window_status(&w, local(NEW_YORK, "2026-07-11T12:00")).active);
    }

    #[test]
    fn adjoining_spans_of_one_window_merge() {
        let spec = FreezeWindowSpec {
            recurring: vec![
                weekly(Weekday::Friday, "17:00", Weekday::Saturday, "00:00"),
                weekly(Weekday::Saturday, "00:00", Weekday::Monday, "09:00"),
            ],
            ..base("UTC")
        };
        let w = CompiledWindow::compile("ops", "split", &spec).unwrap();
        let status = window_status(&w, ts("2026-07-10T18:00:00Z"));
        assert_eq!(status.active_until, Some(ts("2026-07-13T09:00:00Z")));
        assert_eq!(w.active_at(ts("2026-07-10T18:00:00Z")).unwrap().end, ts("2026-07-11T00:00:00Z"));
    }

    #[test]
    fn a_permanent_freeze_is_bounded() {
        // Two spans that together cover the whole week, every week.
        let spec = FreezeWindowSpec {
            recurring: vec![
                weekly(Weekday::Monday, "00:00", Weekday::Thursday, "00:00"),
                weekly(Weekday::Thursday, "00:00", Weekday::Monday, "00:00"),
            ],
            ..base(NEW_YORK)
        };
        let w = [CompiledWindow::compile("ops", "forever", &spec).unwrap()];
        let t = ts("2026-07-08T12:00:00Z");
        let verdict = evaluate(&w, "prod", "web", t);
        let until = verdict.frozen_until.unwrap();
        assert!(until > t + SignedDuration::from_hours(24 * 7 * 20));
        assert!(w[0].active_at(until).is_some(), "still frozen where the search stopped");
    }

    #[test]
    fn invalid_specs_are_rejected_with_a_fix() {
        let err = CompiledWindow::compile("prod", "weekend", &weekend_spec("America/New_Yrok")).unwrap_err();
        assert_eq!(err, SpecError::UnknownTimeZone { name: "America/New_Yrok".to_string() });
        assert_eq!(
            err.to_string(),
            "time zone \"America/New_Yrok\" is not a known IANA time zone; use a name such as America/New_York or UTC"
        );
        // jiff maps this name to a placeholder zone rather than failing.
        let err = CompiledWindow::compile("prod", "weekend", &weekend_spec("Etc/Unknown")).unwrap_err();
        assert_eq!(err.metric_label(), "unknown_time_zone");
        // Names are looked up case-insensitively and shown canonically.
        let w = CompiledWindow::compile("prod", "weekend", &weekend_spec("america/new_york")).unwrap();
        assert_eq!(w.time_zone(), NEW_YORK);

        for bad in ["9:00", "24:00", "17:60", "17:00 ", "1700", "", "+1:00", "17:0a"] {
            let spec = FreezeWindowSpec {
                recurring: vec![weekly(Weekday::Friday, bad, Weekday::Monday, "09:00")],
                ..base(NEW_YORK)
            };
            let err = CompiledWindow::compile("prod", "weekend", &spec).unwrap_err();
            assert_eq!(
                err,
                SpecError::BadTimeOfDay { field: "spec.recurring[0].from.time".to_string(), value: bad.to_string() }
            );
        }
        let spec = FreezeWindowSpec {
            recurring: vec![
                weekly(Weekday::Friday, "17:00", Weekday::Monday, "09:00"),
                weekly(Weekday::Friday, "17:00", Weekday::Friday, "17:00"),
            ],
            ..base(NEW_YORK)
        };
        let err = CompiledWindow::compile("prod", "weekend", &spec).unwrap_err();
        assert_eq!(err.to_string(), "spec.recurring[1]: end Friday 17:00 is not after start Friday 17:00");

        let spec = FreezeWindowSpec {
            absolute: vec![absolute("2026-12-28T00:00:00-05:00", "2026-12-28T00:00:00-05:00", None)],
            ..base(NEW_YORK)
        };
        let err = CompiledWindow::compile("prod", "holidays", &spec).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.absolute[0]: end 2026-12-28T05:00:00Z is not after start 2026-12-28T05:00:00Z"
        );
    }

    // ---- Property tests ----

    const ZONES: [&str; 8] = [
        "America/New_York",
        "Europe/London",
        "Australia/Sydney",
        "America/Toronto",
        "Asia/Kolkata",
        "UTC",
        // 30-minute DST shifts.
        "Australia/Lord_Howe",
        // Skipped Friday 2011-12-30 entirely (a 24-hour gap).
        "Pacific/Apia",
    ];
    const WEEKDAYS: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    /// 2000-01-01T00:00:00Z and 2041-01-01T00:00:00Z.
    const YEARS_2000_2040: std::ops::Range<i64> = 946_684_800..2_240_524_800;

    fn zone() -> impl Strategy<Value = &'static str> {
        prop::sample::select(&ZONES[..])
    }

    /// A point of the week; times near the hours DST changes happen are over-represented.
    fn weekly_time() -> impl Strategy<Value = WeeklyTime> {
        let time = prop_oneof![(0u32..24, 0u32..60), (0u32..4, 0u32..60)];
        (prop::sample::select(&WEEKDAYS[..]), time)
            .prop_map(|(day, (h, m))| WeeklyTime { day, time: format!("{h:02}:{m:02}") })
    }

    /// The product's weekend span half of the time, a random one otherwise.
    fn recurring_span() -> impl Strategy<Value = RecurringSpan> {
        prop_oneof![
            Just(weekly(Weekday::Friday, "17:00", Weekday::Monday, "09:00")),
            (weekly_time(), weekly_time())
                .prop_filter("from and to must differ", |(f, t)| f != t)
                .prop_map(|(from, to)| RecurringSpan { from, to }),
        ]
    }

    /// An instant in 2000–2040, half of the time within four days of a DST transition of `tz`.
    fn instant_near_transitions(tz: &'static str) -> impl Strategy<Value = Timestamp> {
        (YEARS_2000_2040, any::<bool>(), -4 * 86_400i64..4 * 86_400).prop_map(move |(secs, near, offset)| {
            let t = Timestamp::from_second(secs).unwrap();
            if !near {
                return t;
            }
            match TimeZone::get(tz).unwrap().following(t).next() {
                Some(transition) => transition.timestamp() + SignedDuration::from_secs(offset),
                None => t,
            }
        })
    }

    fn zone_span_instant() -> impl Strategy<Value = (&'static str, RecurringSpan, Timestamp)> {
        (zone(), recurring_span()).prop_flat_map(|(tz, span)| (Just(tz), Just(span), instant_near_transitions(tz)))
    }

    fn recurring_window(tz: &str, span: &RecurringSpan) -> CompiledWindow {
        let spec = FreezeWindowSpec { recurring: vec![span.clone()], ..base(tz) };
        CompiledWindow::compile("prop", "window", &spec).unwrap()
    }

    fn seconds_of_week(day: Weekday, time: &str) -> i64 {
        let day = WEEKDAYS.iter().position(|d| *d == day).unwrap() as i64;
        let (h, m) = time.split_once(':').unwrap();
        day * 86_400 + h.parse::<i64>().unwrap() * 3600 + m.parse::<i64>().unwrap() * 60
    }

    /// Reference: is the local civil time of `t` inside the weekly span?
    fn civil_reference(tz: &TimeZone, span: &RecurringSpan, t: Timestamp) -> bool {
        let week = 7 * 86_400;
        let dt = tz.to_datetime(t);
        let now = i64::from(dt.weekday().to_monday_zero_offset()) * 86_400
            + i64::from(dt.hour()) * 3600
            + i64::from(dt.minute()) * 60
            + i64::from(dt.second());
        let from = seconds_of_week(span.from.day, &span.from.time);
        let len = (seconds_of_week(span.to.day, &span.to.time) - from).rem_euclid(week);
        (now - from).rem_euclid(week) < len
    }

    /// Whether a boundary of the span in the weeks around `t` falls in a gap or fold, where civil
    /// comparison and instants legitimately disagree.
    fn boundary_is_ambiguous(tz: &TimeZone, span: &RecurringSpan, t: Timestamp) -> bool {
        let monday = local_monday(tz, t).unwrap().to_datetime(jiff::civil::Time::midnight());
        let from = seconds_of_week(span.from.day, &span.from.time);
        let len = (seconds_of_week(span.to.day, &span.to.time) - from).rem_euclid(7 * 86_400);
        (-2i64..=1).any(|k| {
            let start = monday + SignedDuration::from_secs(k * 7 * 86_400 + from);
            let end = start + SignedDuration::from_secs(len);
            tz.to_ambiguous_timestamp(start).is_ambiguous() || tz.to_ambiguous_timestamp(end).is_ambiguous()
        })
    }

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig { cases, ..ProptestConfig::default() }
    }

    const NS: SignedDuration = SignedDuration::from_nanos(1);

    proptest! {
        #![proptest_config(config(3000))]

        /// (1) A recurring window is active exactly when the local civil time is inside the span.
        #[test]
        fn active_at_matches_local_civil_time((tz, span, t) in zone_span_instant()) {
            let w = recurring_window(tz, &span);
            let zone = TimeZone::get(tz).unwrap();
            let is_weekend = span == weekly(Weekday::Friday, "17:00", Weekday::Monday, "09:00");
            if boundary_is_ambiguous(&zone, &span, t) {
                // Only Apia's skipped Friday swallows 17:00; no other zone here changes its
                // clocks at 17:00 or 09:00.
                prop_assert!(!is_weekend || tz == "Pacific/Apia");
                return Ok(());
            }
            let active = w.active_at(t);
            prop_assert_eq!(active.is_some(), civil_reference(&zone, &span, t), "{} at {}", tz, zone.to_datetime(t));
            if let Some(span) = active {
                prop_assert!(span.start <= t && t < span.end);
                // The boundaries are the span's local times.
                let (from, to) = (zone.to_datetime(span.start), zone.to_datetime(span.end));
                prop_assert_eq!(format!("{:02}:{:02}", from.hour(), from.minute()), w_time(&w, true));
                prop_assert_eq!(format!("{:02}:{:02}", to.hour(), to.minute()), w_time(&w, false));
            }
        }

        /// (2) and (3): a window's own `until` and `next_start` are exact boundaries.
        #[test]
        fn until_and_next_start_are_boundaries((tz, span, t) in zone_span_instant(), holiday in proptest::option::of((YEARS_2000_2040, 60i64..20 * 86_400))) {
            let mut spec = FreezeWindowSpec { recurring: vec![span], ..base(tz) };
            if let Some((start, len)) = holiday {
                let start = Timestamp::from_second(start).unwrap();
                spec.absolute.push(AbsoluteSpan { start: Time(start), end: Time(start + SignedDuration::from_secs(len)), reason: None });
            }
            let w = CompiledWindow::compile("prop", "window", &spec).unwrap();
            let status = window_status(&w, t);
            prop_assert_eq!(status.active, w.active_at(t).is_some());
            let after = match status.active_until {
                Some(until) => {
                    prop_assert!(status.active);
                    prop_assert!(until > t);
                    prop_assert!(w.active_at(until - NS).is_some());
                    prop_assert!(w.active_at(until).is_none());
                    until
                }
                None => t,
            };
            let next = status.next_start.unwrap();
            prop_assert!(next > after);
            prop_assert!(w.active_at(next).is_some());
            prop_assert!(w.active_at(next - NS).is_none());
            // A weekly span recurs every week, even across Apia's skipped day.
            prop_assert!(next.duration_since(after) < SignedDuration::from_hours(24 * 8));
        }

        /// The verdict over several windows chains them: frozen exactly up to `frozen_until`, free
        /// just before `next_start`.
        #[test]
        fn verdict_chains_windows(
            windows in prop::collection::vec((zone(), recurring_span(), prop::option::of((YEARS_2000_2040, 60i64..20 * 86_400))), 1..4),
            t in YEARS_2000_2040,
        ) {
            let windows: Vec<CompiledWindow> = windows.iter().map(|(tz, span, holiday)| {
                let mut spec = FreezeWindowSpec { recurring: vec![span.clone()], ..base(tz) };
                if let Some((start, len)) = holiday {
                    let start = Timestamp::from_second(*start).unwrap();
                    spec.absolute.push(AbsoluteSpan { start: Time(start), end: Time(start + SignedDuration::from_secs(*len)), reason: None });
                }
                CompiledWindow::compile("prop", "window", &spec).unwrap()
            }).collect();
            let frozen = |at: Timestamp| windows.iter().any(|w| w.active_at(at).is_some());
            let t = Timestamp::from_second(t).unwrap();
            let verdict = evaluate(&windows, "prod", "web", t);
            prop_assert_eq!(verdict.is_frozen(), frozen(t));
            prop_assert_eq!(verdict.is_frozen(), verdict.frozen_until.is_some());
            let after = match verdict.frozen_until {
                Some(until) => {
                    prop_assert!(until > t);
                    prop_assert!(frozen(until - NS));
                    prop_assert!(verdict.active.iter().all(|a| a.until <= until));
                    if frozen(until) {
                        // Windows that together cover the whole week: the search stopped after
                        // MAX_CHAINED_SPANS spans, which with these windows is months.
                        prop_assert!(until.duration_since(t) > SignedDuration::from_hours(24 * 7 * 10));
                        return Ok(());
                    }
                    until
                }
                None => t,
            };
            let next = verdict.next_start.unwrap();
            prop_assert!(next > after && frozen(next) && !frozen(next - NS));
        }
    }

    fn w_time(w: &CompiledWindow, from: bool) -> String {
        let span = w.recurring[0];
        let minute = if from { span.from } else { span.from + span.len };
        let minute = minute.rem_euclid(MINUTES_PER_DAY);
        format!("{:02}:{:02}", minute / 60, minute % 60)
    }

    fn any_timestamp() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            (Timestamp::MIN.as_second()..=Timestamp::MAX.as_second()).prop_map(|s| Timestamp::from_second(s).unwrap()),
            Just(Timestamp::MIN),
            Just(Timestamp::MAX),
            YEARS_2000_2040.prop_map(|s| Timestamp::from_second(s).unwrap()),
        ]
    }

    fn any_spec() -> impl Strategy<Value = FreezeWindowSpec> {
        let tz = prop_oneof![zone().prop_map(str::to_string), Just("Pacific/Apia".to_string()), ".{0,20}"];
        let time = prop_oneof![weekly_time().prop_map(|w| w.time), ".{0,6}"];
        let weekly = (prop::sample::select(&WEEKDAYS[..]), time).prop_map(|(day, time)| WeeklyTime { day, time });
        let recurring =
            prop::collection::vec((weekly.clone(), weekly).prop_map(|(from, to)| RecurringSpan { from, to }), 0..6);
        let absolute = prop::collection::vec(
            (any_timestamp(), any_timestamp()).prop_map(|(start, end)| AbsoluteSpan {
                start: Time(start),
                end: Time(end),
                reason: None,
            }),
            0..4,
        );
        let names =
            prop::collection::vec(prop::sample::select(vec!["prod", "web", "staging"]).prop_map(str::to_string), 0..2);
        (tz, recurring, absolute, names.clone(), names).prop_map(
            |(time_zone, recurring, absolute, environments, services)| FreezeWindowSpec {
                environments,
                services,
                time_zone,
                recurring,
                absolute,
                exceptions: None,
                reason: None,
            },
        )
    }

    proptest! {
        #![proptest_config(config(500))]

        /// (4) Arbitrary specs and instants, to the ends of jiff's range, never panic.
        #[test]
        fn evaluate_never_panics(specs in prop::collection::vec(any_spec(), 0..4), t in any_timestamp()) {
            let windows: Vec<CompiledWindow> =
                specs.iter().filter_map(|s| CompiledWindow::compile("prop", "any", s).ok()).collect();
            let verdict = evaluate(&windows, "prod", "web", t);
            prop_assert_eq!(verdict.is_frozen(), verdict.frozen_until.is_some());
            for active in &verdict.active {
                let _ = describe(active);
            }
            let _ = exception_eligible(&verdict.active, ReleaseType::Hotfix);
            for w in &windows {
                let _ = window_status(w, t);
            }
        }
    }
}
