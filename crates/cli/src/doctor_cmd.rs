//! `onshi doctor`: names the broken link between this clinic and the center.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The gateway's configuration file.
    #[arg(long, default_value = "gateway.toml")]
    pub config: PathBuf,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let diagnosis = crate::runtime()?.block_on(onshi_gateway::doctor::diagnose(&args.config, onshi_gateway::gateway::system_clock()));
    print!("{}", diagnosis.report());
    Ok(if diagnosis.broken().is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
