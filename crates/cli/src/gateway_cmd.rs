//! `onshi gateway …`: the clinic gateway (file interface, reception page, re-verifier) and its
//! 一括照会 from an appointment list.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use onshi_gateway::config::GatewayConfig;
use onshi_gateway::gateway::{Gateway, system_clock};

use crate::progress::Progress;

#[derive(clap::Subcommand, Debug)]
pub enum GatewayCommand {
    /// Watch req/, answer into res/ and face/, serve the reception page, re-verify queued
    /// checks when the line returns.
    Serve {
        /// The configuration file (see `onshi_gateway::config` for its settings).
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// Serve the page here instead of the configured address (port 0: any free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// 一括照会: check the patients of an appointment list ahead of their day, cache the
    /// answers and report what changed since the previous batch.
    Batch {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// CSV with a header row: patient_id,date,insurer_number,symbol,number,branch,birth_date
        #[arg(long)]
        appointments: PathBuf,
    },
}

pub fn run(command: GatewayCommand) -> anyhow::Result<ExitCode> {
    match command {
        GatewayCommand::Serve { config, listen } => serve(config, listen),
        GatewayCommand::Batch { config, appointments } => batch(config, appointments),
    }
}

fn open(config: &std::path::Path) -> anyhow::Result<Gateway> {
    let config = GatewayConfig::load(config)?;
    Ok(Gateway::open(config, system_clock())?)
}

fn serve(config: PathBuf, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let gateway = Arc::new(open(&config)?);
    let folder = gateway.config.folder.clone();
    let patient = gateway.config.patient.as_ref().map(|kiosk| kiosk.listen);
    crate::runtime()?.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        onshi_gateway::serve::serve(
            gateway,
            listen,
            onshi_gateway::serve::RETRY,
            |addr| {
                println!("listening {addr}");
                eprintln!("onshi gateway: reception page http://{addr}/ ; requests into {}", folder.join("req").display());
                if let Some(patient) = patient {
                    eprintln!("onshi gateway: patients' page (for the kiosk) http://{patient}/");
                }
            },
            stop,
        )
        .await
        .with_context(|| format!("configuration {}", config.display()))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, or SIGTERM where there is one.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn batch(config: PathBuf, appointments: PathBuf) -> anyhow::Result<ExitCode> {
    let gateway = open(&config)?;
    let bytes = std::fs::read(&appointments).with_context(|| format!("cannot read {}", appointments.display()))?;
    let list = onshi_gateway::batch::read_appointments(&bytes).with_context(|| appointments.display().to_string())?;
    let progress = std::sync::Mutex::new(Progress::new("batch", "patients", Some(list.len() as u64)));
    let report = |done: usize, _total: usize| progress.lock().unwrap_or_else(|p| p.into_inner()).set(done as u64);
    let summaries = crate::runtime()?.block_on(onshi_gateway::batch::from_appointments(&gateway, list, Some(&report)))?;
    progress.into_inner().unwrap_or_else(|p| p.into_inner()).finish();
    let mut attention = false;
    for s in &summaries {
        println!("受付番号 {}: {} 人, 照会済み {} 人, 結果 {}", s.reception_number, s.patients, s.answered, s.result_file.display());
        if s.answered < s.patients {
            println!("  {} 人は回線不通のため未照会です。gateway serve が回線復旧後に照会します。", s.patients - s.answered);
        }
        for (patient, changes) in &s.changed {
            println!("  変更あり {patient}: {}", changes.join("、"));
        }
        for (patient, what) in &s.attention {
            println!("  要確認 {patient}: {what}");
        }
        attention |= !s.changed.is_empty() || !s.attention.is_empty();
    }
    // 3: some patients need a look before their visit (scripts notice, as with receipt check).
    Ok(if attention { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
