use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use onshi_domain::Date;
use onshi_synth::{DEFAULT_TODAY, SynthOptions, SynthSummary, generate};

use crate::progress::Progress;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// How many persons.
    #[arg(long, default_value_t = 100_000)]
    pub persons: u64,
    /// Same seed, same population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The synthetic world's today (YYYYMMDD); events notified later go to late/.
    #[arg(long, value_parser = parse_date)]
    pub today: Option<Date>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn parse_date(text: &str) -> Result<Date, String> {
    Date::parse_yyyymmdd(text).map_err(|e| e.to_string())
}

pub fn default_today() -> Date {
    let (y, m, d) = DEFAULT_TODAY;
    Date::new(y, m, d).expect("constant date")
}

/// Generates with a progress bar; shared by `synth`, `demo` and `bench`.
pub fn synthesize(options: &SynthOptions) -> anyhow::Result<SynthSummary> {
    let started = Instant::now();
    let mut progress = Progress::new("synth", "persons", Some(options.persons));
    let summary = generate(options, |done| progress.set(done))?;
    progress.finish();
    eprintln!(
        "synth: {} persons in {} households, {} insurers, {} events (+{} late), {} truth cases in {:.1} s",
        summary.persons,
        summary.households,
        summary.insurers,
        summary.events,
        summary.late_events,
        summary.truth_cases,
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let options = SynthOptions { persons: args.persons, seed: args.seed, today: args.today.unwrap_or_else(default_today), out: args.out };
    synthesize(&options)?;
    println!("wrote {}", options.out.display());
    Ok(ExitCode::SUCCESS)
}
