//! Times for people: in the viewer's zone (the `TZ` environment variable, else the system's) and,
//! for freeze windows, also in the window's own zone.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::error::CliError;

/// The viewer's time zone.
pub fn local_zone() -> TimeZone {
    TimeZone::system()
}

/// A short name for the viewer's zone: its IANA name when known (`Europe/Paris`), else its
/// abbreviation at `t`.
pub fn local_zone_name(t: Timestamp) -> String {
    let tz = local_zone();
    match tz.iana_name() {
        Some(name) => name.to_string(),
        None => t.to_zoned(tz).strftime("%Z").to_string(),
    }
}

/// `2026-11-20 14:05:03 EST`: an instant in the viewer's zone, for status trees.
pub fn local(t: Timestamp) -> String {
    t.to_zoned(local_zone()).strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// `Mon 2026-11-23 09:00 America/New_York`: an instant in a named zone, with the weekday (the way
/// people think about freezes).
pub fn in_zone(t: Timestamp, zone: &str) -> String {
    match TimeZone::get(zone) {
        Ok(tz) => format!("{} {zone}", t.to_zoned(tz).strftime("%a %Y-%m-%d %H:%M")),
        Err(_) => format!("{} UTC", t.to_zoned(TimeZone::UTC).strftime("%a %Y-%m-%d %H:%M")),
    }
}

/// `Mon 2026-11-23 15:00 CET`: an instant in the viewer's zone with the weekday.
pub fn in_local_zone(t: Timestamp) -> String {
    t.to_zoned(local_zone()).strftime("%a %Y-%m-%d %H:%M %Z").to_string()
}

/// Both: the window's zone first (the one the window is written in), then the viewer's, e.g.
/// `Mon 2026-11-23 09:00 America/New_York (Mon 2026-11-23 15:00 CET your time)`. When the two
/// read the same, once.
pub fn both(t: Timestamp, zone: &str) -> String {
    let theirs = in_zone(t, zone);
    let mine = in_local_zone(t);
    let same_zone = TimeZone::get(zone).ok().and_then(|z| z.iana_name().map(str::to_string))
        == local_zone().iana_name().map(str::to_string);
    if same_zone { theirs } else { format!("{theirs} ({mine} your time)") }
}

/// An RFC 3339 instant from `--at`, or now.
pub fn instant(at: Option<&str>) -> Result<Timestamp, CliError> {
    match at {
        None => Ok(Timestamp::now()),
        Some(s) => s.parse::<Timestamp>().map_err(|e| {
            CliError::Usage(format!("--at {s:?} is not an RFC 3339 time such as 2026-11-20T23:00:00Z ({e})"))
        }),
    }
}

/// A Go duration from a flag (`5m`, `90s`).
pub fn duration(flag: &str, value: &str) -> Result<SignedDuration, CliError> {
    kiln_core::duration::parse(flag, value).map_err(|e| CliError::Usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_named_with_the_weekday() {
        let t: Timestamp = "2026-11-23T14:00:00Z".parse().expect("valid");
        assert_eq!(in_zone(t, "America/New_York"), "Mon 2026-11-23 09:00 America/New_York");
        assert_eq!(in_zone(t, "Nowhere/Atlantis"), "Mon 2026-11-23 14:00 UTC");
    }

    #[test]
    fn at_must_be_rfc3339() {
        assert!(instant(Some("2026-11-20T23:00:00Z")).is_ok());
        assert!(instant(Some("2026-11-20T23:00:00-05:00")).is_ok());
        assert!(matches!(instant(Some("friday")), Err(CliError::Usage(_))));
    }
}
