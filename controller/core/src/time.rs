//! Conversions between the API's `Time` and jiff's `Timestamp`, and human formatting.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Wraps a timestamp for status.
pub fn to_time(ts: Timestamp) -> Time {
    Time(ts)
}

/// Unwraps a status time.
pub fn from_time(t: &Time) -> Timestamp {
    t.0
}

/// Formats a span of time for people: "4m 30s", "2h 5m", "3d 4h".
pub fn human_duration(d: jiff::SignedDuration) -> String {
    let total = d.as_secs().max(0);
    let (days, hours, mins, secs) = (total / 86_400, (total / 3600) % 24, (total / 60) % 60, total % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) if secs == 0 => format!("{m}m"),
        (0, 0, m) => format!("{m}m {secs}s"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn formats_durations_for_people() {
        assert_eq!(human_duration(SignedDuration::from_secs(42)), "42s");
        assert_eq!(human_duration(SignedDuration::from_secs(270)), "4m 30s");
        assert_eq!(human_duration(SignedDuration::from_secs(600)), "10m");
        assert_eq!(human_duration(SignedDuration::from_secs(7500)), "2h 5m");
        assert_eq!(human_duration(SignedDuration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
        assert_eq!(human_duration(SignedDuration::from_secs(-5)), "0s");
    }
}
