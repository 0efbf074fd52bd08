//! Go-style durations ("30s", "5m", "1h30m", "1.5h", "250ms"), the form Kubernetes users write
//! and the CRD schema's CEL rule accepts.

use jiff::SignedDuration;

use crate::SpecError;

/// The longest duration any field accepts: 30 days (`720h`), the same cap as the CRD's rules.
/// Longer waits are mistakes (and a duration too large to add to a time would end a bake at
/// once instead of never).
pub const MAX: SignedDuration = SignedDuration::from_hours(720);

/// The longest SLO period or error-budget window: 90 days (`2160h`), for quarterly objectives.
pub const MAX_SLO: SignedDuration = SignedDuration::from_hours(2160);

/// Parses an error budget's period or window: positive, at most [`MAX_SLO`].
pub fn parse_slo(field: &str, value: &str) -> Result<SignedDuration, SpecError> {
    let d = parse_unbounded(field, value)?;
    if d.is_zero() {
        return Err(SpecError::BadDuration { field: field.to_string(), value: value.to_string() });
    }
    if d > MAX_SLO {
        return Err(SpecError::DurationTooLong { field: field.to_string(), value: value.to_string(), max: "2160h" });
    }
    Ok(d)
}

/// Parses a positive Go-style duration. `field` names the place for the error message.
pub fn parse(field: &str, value: &str) -> Result<SignedDuration, SpecError> {
    let d = parse_or_zero(field, value)?;
    if d.is_zero() {
        return Err(SpecError::BadDuration { field: field.to_string(), value: value.to_string() });
    }
    Ok(d)
}

/// Parses a Go-style duration that may be zero (`0s`: no wait), for the fields whose schema
/// allows it (an Environment's `bake.duration`).
pub fn parse_or_zero(field: &str, value: &str) -> Result<SignedDuration, SpecError> {
    let d = parse_unbounded(field, value)?;
    if d > MAX {
        return Err(SpecError::DurationTooLong { field: field.to_string(), value: value.to_string(), max: "720h" });
    }
    Ok(d)
}

/// The Go-style duration, zero included, with no cap.
fn parse_unbounded(field: &str, value: &str) -> Result<SignedDuration, SpecError> {
    let bad = || SpecError::BadDuration { field: field.to_string(), value: value.to_string() };
    let mut rest = value;
    let mut total_nanos: i128 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: i128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) if !i.is_empty() && !f.is_empty() => (i, f),
            Some(_) => return Err(bad()),
            None => (num, ""),
        };
        if int_part.is_empty() {
            return Err(bad());
        }
        let int: i128 = int_part.parse().map_err(|_| bad())?;
        let mut nanos = int.checked_mul(scale).ok_or_else(bad)?;
        if !frac_part.is_empty() {
            // Only the first 9 fractional digits can matter at nanosecond resolution.
            let digits = &frac_part[..frac_part.len().min(9)];
            let frac: i128 = digits.parse().map_err(|_| bad())?;
            nanos += frac * scale / 10_i128.pow(digits.len() as u32);
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(bad)?;
        rest = tail;
    }
    if total_nanos < 0 {
        return Err(bad());
    }
    let secs = i64::try_from(total_nanos / 1_000_000_000).map_err(|_| bad())?;
    let nanos = i32::try_from(total_nanos % 1_000_000_000).map_err(|_| bad())?;
    Ok(SignedDuration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("250ms", 250),
            ("2h0m10s", 7_210_000),
        ];
        for (text, millis) in cases {
            assert_eq!(parse("f", text).unwrap().as_millis(), millis, "{text}");
        }
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for text in ["", "0s", "5", "m", "5d", "-5m", ".5h", "5.m", "1h 30m", "5M", "0m0s"] {
            let err = parse("spec.bake.duration", text).unwrap_err();
            assert!(err.to_string().contains("spec.bake.duration"), "{err}");
        }
    }

    #[test]
    fn zero_only_where_allowed() {
        for text in ["0s", "0m0s", "0ms", "0.0h"] {
            assert_eq!(parse_or_zero("spec.bake.duration", text).map(|d| d.is_zero()), Ok(true), "{text}");
        }
        assert_eq!(parse_or_zero("f", "1m30s").map(|d| d.as_secs()), Ok(90));
        for text in ["", "-5m", "5", "0"] {
            assert!(parse_or_zero("f", text).is_err(), "{text}");
        }
    }

    #[test]
    fn at_most_thirty_days() {
        assert_eq!(parse("f", "720h").map(|d| d.as_hours()), Ok(720));
        for text in ["720h0m1s", "721h", "100000h"] {
            let err = parse_or_zero("spec.bake.duration", text).unwrap_err();
            assert!(err.to_string().contains("at most 720h"), "{text}: {err}");
        }
        assert_eq!(parse_slo("f", "2160h").map(|d| d.as_hours()), Ok(2160));
        assert!(parse_slo("f", "2161h").unwrap_err().to_string().contains("at most 2160h"));
        // Too large to represent at all: still refused, never wrapped.
        assert!(parse_or_zero("f", "99999999999999999999h").is_err());
    }

    proptest! {
        #[test]
        fn composed_units_add_up(h in 0u32..100, m in 0u32..60, s in 1u32..60) {
            let text = format!("{h}h{m}m{s}s");
            let d = parse("f", &text).unwrap();
            prop_assert_eq!(d.as_secs(), i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s));
        }

        #[test]
        fn never_panics(text in ".{0,24}") {
            let _ = parse("f", &text);
        }
    }
}
