//! Counters and a latency histogram in Prometheus text format. Hand-rolled: a handful of
//! atomics is all the center needs, and it keeps the dependency tree small.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the verify latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 10] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000];

#[derive(Default)]
pub struct Metrics {
    /// Verify answers by QualificationValidity 1–5 (index 0 unused).
    answers_by_validity: [AtomicU64; 6],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    batch_calls: AtomicU64,
    events_applied: AtomicU64,
    events_rejected: AtomicU64,
    health_calls: AtomicU64,
    /// Errors by stable code; rare, so a mutex is fine.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Refusals before the caller was authenticated (handshakes refused or timed out, full
    /// pools, requests without a certificate), by reason: counted here, never written to the
    /// audit log, which anyone could otherwise fill.
    unauthenticated: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests refused by the per-caller rate limit.
    rate_limited: AtomicU64,
}

impl Metrics {
    pub fn answer(&self, validity_code: &str) {
        if let Ok(index) = validity_code.parse::<usize>()
            && let Some(counter) = self.answers_by_validity.get(index)
        {
            counter.fetch_add(1, Relaxed);
        }
    }

    pub fn verify_latency(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
        if let Some(index) = LATENCY_BUCKETS_US.iter().position(|bound| us <= *bound) {
            self.latency_buckets[index].fetch_add(1, Relaxed);
        }
    }

    pub fn error(&self, code: &str) {
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(code.to_string()).or_default() += 1;
    }

    pub fn unauthenticated(&self, reason: &'static str) {
        *self.unauthenticated.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    pub fn batch(&self) {
        self.batch_calls.fetch_add(1, Relaxed);
    }

    pub fn health(&self) {
        self.health_calls.fetch_add(1, Relaxed);
    }

    pub fn import(&self, applied: u64, rejected: u64) {
        self.events_applied.fetch_add(applied, Relaxed);
        self.events_rejected.fetch_add(rejected, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP onshi_verify_answers_total Verification answers by QualificationValidity (1 valid … 5 several matches).\n");
        out.push_str("# TYPE onshi_verify_answers_total counter\n");
        for (validity, counter) in self.answers_by_validity.iter().enumerate().skip(1) {
            let _ = writeln!(out, "onshi_verify_answers_total{{validity=\"{validity}\"}} {}", counter.load(Relaxed));
        }
        out.push_str("# HELP onshi_verify_seconds Time to answer one verification inside the center.\n");
        out.push_str("# TYPE onshi_verify_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, counter) in LATENCY_BUCKETS_US.iter().zip(&self.latency_buckets) {
            cumulative += counter.load(Relaxed);
            let _ = writeln!(out, "onshi_verify_seconds_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "onshi_verify_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "onshi_verify_seconds_sum {}", self.latency_sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "onshi_verify_seconds_count {count}");
        let counters = [
            ("onshi_batch_calls_total", "Batch verification calls.", &self.batch_calls),
            ("onshi_insurer_events_applied_total", "Insurer events applied through the API.", &self.events_applied),
            ("onshi_insurer_events_rejected_total", "Insurer events refused through the API.", &self.events_rejected),
            ("onshi_health_calls_total", "Health checks.", &self.health_calls),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", counter.load(Relaxed));
        }
        out.push_str(
            "# HELP onshi_unauthenticated_refusals_total Refusals before authentication, by reason (not in the audit log).\n\
             # TYPE onshi_unauthenticated_refusals_total counter\n",
        );
        for (reason, count) in self.unauthenticated.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "onshi_unauthenticated_refusals_total{{reason=\"{reason}\"}} {count}");
        }
        out.push_str("# HELP onshi_rate_limited_total Requests refused by the per-caller rate limit.\n");
        out.push_str("# TYPE onshi_rate_limited_total counter\n");
        let _ = writeln!(out, "onshi_rate_limited_total {}", self.rate_limited.load(Relaxed));
        out.push_str("# HELP onshi_errors_total Errors returned, by stable code.\n# TYPE onshi_errors_total counter\n");
        for (code, count) in self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "onshi_errors_total{{code=\"{code}\"}} {count}");
        }
        out
    }
}
