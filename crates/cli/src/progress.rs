//! Progress for long work: a bar on a terminal, plain lines otherwise (logs, CI, tests).
//! Plain lines come at most once a second, or at every update with `ONSHI_PROGRESS=every`
//! (tests use it to act at a known point).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    label: &'static str,
    unit: &'static str,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    every: bool,
    last_line: Option<Instant>,
}

impl Progress {
    pub fn new(label: &'static str, unit: &'static str, total: Option<u64>) -> Progress {
        let every = std::env::var("ONSHI_PROGRESS").is_ok_and(|v| v == "every");
        let bar = (std::io::stderr().is_terminal() && !every).then(|| {
            let bar = ProgressBar::new(total.unwrap_or(0));
            let template = if total.is_some() {
                "{msg:>10} [{bar:40}] {percent:>3}% {human_pos}/{human_len} {per_sec} eta {eta}"
            } else {
                "{msg:>10} {human_pos} {per_sec}"
            };
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
            bar.set_message(label);
            bar
        });
        Progress { label, unit, total, bar, every, last_line: None }
    }

    pub fn set(&mut self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            return;
        }
        let due = self.every || self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            self.last_line = Some(Instant::now());
            match self.total {
                Some(total) => eprintln!("progress: {} {position}/{total} {}", self.label, self.unit),
                None => eprintln!("progress: {} {position} {}", self.label, self.unit),
            }
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
