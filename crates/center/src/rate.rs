//! A request rate limit per certified caller (an institution's or an insurer's certificate): a
//! token bucket each, so that one receipt computer stuck in a loop, or a stolen clinic key,
//! cannot take the center's capacity from every other clinic. Refused requests answer 429 with
//! `Retry-After` and an action in Japanese.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second a caller may sustain unless configured otherwise. A clinic's reception
/// makes a few a minute; a hospital's receipt computer checks many at once through the batch
/// endpoint, which is one request.
pub const DEFAULT_PER_SECOND: u32 = 200;

/// Callers remembered at most; the idlest are forgotten first (a forgotten caller starts full).
const CALLERS_MAX: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limiter: `per_second` sustained, bursts of twice that. Zero turns it off.
pub struct RateLimiter {
    per_second: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter { per_second, buckets: Mutex::new(HashMap::new()) }
    }

    fn burst(&self) -> f64 {
        f64::from(self.per_second) * 2.0
    }

    /// Takes one request's token for `caller`: `Ok` or `Err(seconds to wait)`.
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), u64> {
        if self.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_second);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= CALLERS_MAX && !buckets.contains_key(caller) {
            // Full buckets carry no information: forget those first.
            let burst = self.burst();
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(caller.to_string()).or_insert(Bucket { tokens: self.burst(), at: now });
        bucket.tokens = (bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * rate).min(self.burst());
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// The day's requests are used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaUsed;

/// A number of requests per caller per day (Japan time), for what a caller needs a few of and
/// should never be able to run through (searches by attributes).
pub struct DailyQuota {
    per_day: u32,
    used: Mutex<HashMap<String, (onshi_domain::Date, u32)>>,
}

impl DailyQuota {
    pub fn new(per_day: u32) -> DailyQuota {
        DailyQuota { per_day, used: Mutex::new(HashMap::new()) }
    }

    /// Takes one of `caller`'s requests of `day`: `Ok`, or `Err(QuotaUsed)` when the day's are
    /// used up.
    pub fn take(&self, caller: &str, day: onshi_domain::Date) -> Result<(), QuotaUsed> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() >= CALLERS_MAX {
            used.retain(|_, (d, _)| *d == day);
        }
        let entry = used.entry(caller.to_string()).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        if entry.1 >= self.per_day {
            return Err(QuotaUsed);
        }
        entry.1 += 1;
        Ok(())
    }

    /// Whether `caller` has any of `day`'s left, without taking one (for a quota counted only
    /// on some outcomes, taken once the outcome is known).
    pub fn has_left(&self, caller: &str, day: onshi_domain::Date) -> bool {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.get(caller).is_none_or(|(d, n)| *d != day || *n < self.per_day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_caller_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        for i in 0..20 {
            assert_eq!(limiter.take("1311234569", start), Ok(()), "request {i} of the burst of 20");
        }
        assert_eq!(limiter.take("1311234569", start), Err(1), "the 21st waits a second");
        assert_eq!(limiter.take("2711234563", start), Ok(()), "another clinic has its own bucket");
        // Ten per second come back: after half a second, five more.
        let later = start + Duration::from_millis(500);
        for _ in 0..5 {
            assert_eq!(limiter.take("1311234569", later), Ok(()));
        }
        assert!(limiter.take("1311234569", later).is_err());
        assert!(RateLimiter::new(0).take("x", start).is_ok(), "zero is off");
    }

    #[test]
    fn a_daily_quota_is_per_caller_and_per_day() {
        let day = onshi_domain::Date::new(2026, 12, 4).unwrap();
        let quota = DailyQuota::new(2);
        assert!(quota.take("a", day).is_ok() && quota.take("a", day).is_ok());
        assert!(quota.take("a", day).is_err(), "the third of the day is refused");
        assert!(quota.take("b", day).is_ok(), "another caller has its own");
        assert!(quota.take("a", day.add_days(1)).is_ok(), "a new day, a new quota");
        // Looking does not take one.
        let misses = DailyQuota::new(1);
        assert!(misses.has_left("a", day) && misses.has_left("a", day), "nothing taken by looking");
        misses.take("a", day).unwrap();
        assert!(!misses.has_left("a", day) && misses.has_left("b", day) && misses.has_left("a", day.add_days(1)));
    }
}
