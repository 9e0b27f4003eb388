//! The gateway's own figures in Prometheus text (issue 16, item 4): checks by where they came
//! from and how they ended, the re-verification queue, the line, and how long a request file
//! waits for its result file. Counters count since the gateway started (Prometheus reads a
//! restart as a reset); the queue and the line are read when asked. No names, numbers or other
//! personal data: only counts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::check::{Outcome, Source};

/// Upper bounds of the file-latency histogram, in seconds: a result within 50 ms is the
/// target (docs/PERFORMANCE.md), the larger ones show a line that is slow or down.
const FILE_SECONDS: [f64; 8] = [0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// The counters, shared by the watcher, the page and the re-verifier.
#[derive(Default)]
pub struct GatewayMetrics {
    checks: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Cumulative counts per bucket of [`FILE_SECONDS`], then the total.
    file_buckets: [AtomicU64; FILE_SECONDS.len()],
    file_count: AtomicU64,
    file_micros: AtomicU64,
}

fn source_label(source: Source) -> &'static str {
    match source {
        Source::File => "file",
        Source::Page => "page",
        Source::Reader => "reader",
    }
}

/// How a check ended, as a label: answered by the center, refused by it, answered from the
/// last known answer while the line is down, or queued with no answer to give.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Answered { .. } => "answered",
        Outcome::Refused { .. } => "refused",
        Outcome::Cached { .. } => "offline_cached",
        Outcome::Queued { .. } => "offline_queued",
    }
}

impl GatewayMetrics {
    pub fn check(&self, source: Source, outcome: &Outcome) {
        *self.checks.lock().unwrap_or_else(|p| p.into_inner()).entry((source_label(source), outcome_label(outcome))).or_default() += 1;
    }

    /// A request file answered `waited` after it was written.
    pub fn file_answered(&self, waited: Duration) {
        let seconds = waited.as_secs_f64();
        for (bound, bucket) in FILE_SECONDS.iter().zip(&self.file_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.file_count.fetch_add(1, Ordering::Relaxed);
        self.file_micros.fetch_add(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The text `/metrics` serves, with the queue length and the line's state read now (`None`
    /// before the gateway has talked to the center: then the line gauge is left out).
    pub fn render(&self, waiting: usize, line_up: Option<bool>) -> String {
        let mut out = String::new();
        out.push_str("# HELP onshi_gateway_checks_total Checks since the gateway started, by where they came from and how they ended.\n");
        out.push_str("# TYPE onshi_gateway_checks_total counter\n");
        for ((source, outcome), count) in self.checks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            out.push_str(&format!("onshi_gateway_checks_total{{source=\"{source}\",outcome=\"{outcome}\"}} {count}\n"));
        }
        out.push_str("# HELP onshi_gateway_queue_waiting Checks waiting to be verified again when the line returns.\n");
        out.push_str("# TYPE onshi_gateway_queue_waiting gauge\n");
        out.push_str(&format!("onshi_gateway_queue_waiting {waiting}\n"));
        out.push_str("# HELP onshi_gateway_line_up 1 while the center answers, 0 while the line or the center is down.\n");
        out.push_str("# TYPE onshi_gateway_line_up gauge\n");
        if let Some(up) = line_up {
            out.push_str(&format!("onshi_gateway_line_up {}\n", u8::from(up)));
        }
        out.push_str("# HELP onshi_gateway_file_seconds From a request file written in req/ to its result file in res/.\n");
        out.push_str("# TYPE onshi_gateway_file_seconds histogram\n");
        for (bound, bucket) in FILE_SECONDS.iter().zip(&self.file_buckets) {
            out.push_str(&format!("onshi_gateway_file_seconds_bucket{{le=\"{bound}\"}} {}\n", bucket.load(Ordering::Relaxed)));
        }
        let count = self.file_count.load(Ordering::Relaxed);
        out.push_str(&format!("onshi_gateway_file_seconds_bucket{{le=\"+Inf\"}} {count}\n"));
        out.push_str(&format!("onshi_gateway_file_seconds_sum {}\n", self.file_micros.load(Ordering::Relaxed) as f64 / 1e6));
        out.push_str(&format!("onshi_gateway_file_seconds_count {count}\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_counts_each_file_in_every_bucket_at_or_above_its_wait() {
        let metrics = GatewayMetrics::default();
        metrics.file_answered(Duration::from_millis(20));
        metrics.file_answered(Duration::from_millis(300));
        let text = metrics.render(2, Some(false));
        // 20 ms: in 0.025 and above; 300 ms: in 1 and above.
        for (bound, expected) in [("0.01", 0), ("0.025", 1), ("0.05", 1), ("0.25", 1), ("1", 2), ("+Inf", 2)] {
            assert!(text.contains(&format!("onshi_gateway_file_seconds_bucket{{le=\"{bound}\"}} {expected}\n")), "{bound}: {text}");
        }
        assert!(text.contains("onshi_gateway_file_seconds_sum 0.32\n"), "{text}");
        assert!(text.contains("onshi_gateway_queue_waiting 2\n") && text.contains("onshi_gateway_line_up 0\n"), "{text}");
    }
}
