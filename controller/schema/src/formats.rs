//! String `format`s the apiserver checks on custom resources (kube-openapi's strfmt registry).
//! Formats it does not know, and integer/number formats (`int32`, `double`, ...), are not checked,
//! exactly as the apiserver ignores them.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

/// Constant patterns (covered by the tests below); a pattern that failed to compile would reject
/// every value (fail closed) rather than panic.
fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

fn matches(re: &Option<Regex>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

// strfmt's date-time layouts: RFC 3339 with optional fractional seconds, a `Z` or `±hh:mm` /
// `±hhmm` offset, plus the ISO 8601 local forms it also accepts.
static DATE_TIME: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"));
static DATE: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"^(\d{4})-(\d{2})-(\d{2})$"));
static UUID: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"));
static BASE64: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"));

/// Whether `s` is valid for `format`. Unknown formats are accepted.
pub(crate) fn check(format: &str, s: &str) -> bool {
    match format.replace('-', "").as_str() {
        "datetime" => is_date_time(s),
        "date" => is_date(s),
        "uuid" => matches(&UUID, s),
        "byte" => matches(&BASE64, s),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        _ => true,
    }
}

fn valid_ymd(y: &str, m: &str, d: &str) -> bool {
    match (y.parse::<i16>(), m.parse::<i8>(), d.parse::<i8>()) {
        (Ok(y), Ok(m), Ok(d)) => jiff::civil::Date::new(y, m, d).is_ok(),
        _ => false,
    }
}

fn is_date(s: &str) -> bool {
    DATE.as_ref().and_then(|r| r.captures(s)).is_some_and(|c| valid_ymd(&c[1], &c[2], &c[3]))
}

/// strfmt accepts the empty string as a date-time (it parses to the zero time).
fn is_date_time(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let Some(c) = DATE_TIME.as_ref().and_then(|r| r.captures(s)) else {
        return false;
    };
    let hour_min_ok = matches!((c[4].parse::<u8>(), c[5].parse::<u8>()), (Ok(h), Ok(m)) if h < 24 && m < 60);
    let sec_ok = c.get(6).is_none_or(|sec| sec.as_str().parse::<u8>().is_ok_and(|s| s < 61));
    valid_ymd(&c[1], &c[2], &c[3]) && hour_min_ok && sec_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time() {
        for ok in
            ["2026-12-21T00:00:00-05:00", "2025-10-28T10:00:00Z", "2025-10-28T10:00:00.123Z", "2025-10-28T10:00:00"]
        {
            assert!(check("date-time", ok), "{ok}");
        }
        for bad in [
            "2026-13-21T00:00:00Z",
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-12-21 00:00:00Z",
            "2026-12-21T25:00:00Z",
        ] {
            assert!(!check("date-time", bad), "{bad}");
        }
        assert!(check("int32", "anything"));
        assert!(check("byte", "aGVsbG8="));
        assert!(!check("byte", "not base64!"));
    }
}
