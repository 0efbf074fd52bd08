//! Faults on demand for reliability tests: error rates per verb/resource, added latency, watch
//! connections dropped after a while. Off by default and bounded: rates are clamped to [0, 1],
//! latency to 5 s, codes to 409/429/500, and each rule can fire a limited number of times.

use std::sync::Mutex;
use std::time::Duration;

/// The longest latency that can be injected.
pub const MAX_LATENCY: Duration = Duration::from_secs(5);

/// One error rule.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`); `None`: any.
    pub verb: Option<String>,
    /// Resource plural (`promotions`, `leases`); `None`: any.
    pub resource: Option<String>,
    /// 409, 429 or 500 (anything else is treated as 500).
    pub code: u16,
    /// Probability per matching request, 0.0–1.0.
    pub rate: f64,
    /// How many times it may still fire; `None`: unlimited.
    pub remaining: Option<u64>,
}

impl FaultRule {
    /// Every matching request fails with `code`, at most `times` times.
    pub fn times(verb: Option<&str>, resource: Option<&str>, code: u16, times: u64) -> Self {
        FaultRule {
            verb: verb.map(str::to_string),
            resource: resource.map(str::to_string),
            code,
            rate: 1.0,
            remaining: Some(times),
        }
    }
}

/// What to inject.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Error rules, first match wins.
    pub rules: Vec<FaultRule>,
    /// Latency added to every request (clamped to [`MAX_LATENCY`]).
    pub latency: Duration,
    /// Close every watch connection after this long.
    pub drop_watches_after: Option<Duration>,
}

/// The injector.
#[derive(Debug)]
pub struct Injector {
    state: Mutex<(Faults, u64)>,
}

impl Injector {
    /// Off, with a seed for the random numbers.
    pub fn new(seed: u64) -> Self {
        Injector { state: Mutex::new((Faults::default(), seed | 1)) }
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = faults;
        }
    }

    /// Latency to add now.
    pub fn latency(&self) -> Duration {
        self.state.lock().map(|s| s.0.latency.min(MAX_LATENCY)).unwrap_or_default()
    }

    /// When to drop watches.
    pub fn drop_watches_after(&self) -> Option<Duration> {
        self.state.lock().ok().and_then(|s| s.0.drop_watches_after)
    }

    /// The error code to inject for a request, if any.
    pub fn error_for(&self, verb: &str, resource: &str) -> Option<u16> {
        let mut s = self.state.lock().ok()?;
        let (faults, rng) = &mut *s;
        for rule in &mut faults.rules {
            if rule.verb.as_deref().is_some_and(|v| v != verb)
                || rule.resource.as_deref().is_some_and(|r| r != resource)
                || rule.remaining == Some(0)
            {
                continue;
            }
            // xorshift64
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let roll = (*rng >> 11) as f64 / (1u64 << 53) as f64;
            if roll < rule.rate.clamp(0.0, 1.0) {
                if let Some(n) = &mut rule.remaining {
                    *n -= 1;
                }
                return Some(match rule.code {
                    409 | 429 => rule.code,
                    _ => 500,
                });
            }
            return None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_rules() {
        let inj = Injector::new(1);
        assert_eq!(inj.error_for("get", "leases"), None);
        inj.set(Faults { rules: vec![FaultRule::times(Some("update"), Some("leases"), 409, 2)], ..Faults::default() });
        assert_eq!(inj.error_for("get", "leases"), None);
        assert_eq!(inj.error_for("update", "leases"), Some(409));
        assert_eq!(inj.error_for("update", "leases"), Some(409));
        assert_eq!(inj.error_for("update", "leases"), None);
        inj.set(Faults { latency: Duration::from_secs(60), ..Faults::default() });
        assert_eq!(inj.latency(), MAX_LATENCY);
    }
}
