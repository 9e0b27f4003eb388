//! `onshi`: the one binary. Each subcommand is glue over the library crates.

/// mimalloc instead of glibc's allocator: the register's import and its rules make and free
/// millions of small strings per batch, and glibc's slow paths (`malloc_consolidate`,
/// `_int_malloc` splitting and unlinking chunks) were 40 % of the deciding thread's time in a
/// load (docs/PERFORMANCE.md, issue 13).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit_cmd;
mod bench;
mod bench_card;
mod bench_gateway;
mod card_cmd;
mod center_cmd;
mod demo;
mod demo_cards;
mod demo_gateway;
mod doctor_cmd;
mod gateway_cmd;
mod insurer_cmd;
mod jpki_cmd;
mod medical_cmd;
mod payer_cmd;
mod pinning;
mod progress;
mod reader_http;
mod receipt_cmd;
mod synth_cmd;
mod tls_args;
mod verify_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// onshi: online insurance-eligibility verification (オンライン資格確認).
#[derive(Parser, Debug)]
#[command(name = "onshi", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a complete center with a synthetic population on this machine.
    Demo(demo::DemoArgs),
    /// The qualification center: import, serve, certificates.
    Center {
        #[command(subcommand)]
        command: center_cmd::CenterCommand,
    },
    /// The demo card CA (a stand-in for JPKI): issue, revoke and renew virtual My Number cards.
    Jpki {
        #[command(subcommand)]
        command: jpki_cmd::JpkiCommand,
    },
    /// The simulated card reader: create it, register its device key with the center.
    Reader {
        #[command(subcommand)]
        command: card_cmd::ReaderCommand,
    },
    /// A virtual card on the reader: 初回登録, verify (PIN, face, visual), flag a wrong link.
    Card {
        #[command(subcommand)]
        command: card_cmd::CardCommand,
    },
    /// An insurer's side over HTTPS: review reports of cards linked to the wrong member.
    Insurer {
        #[command(subcommand)]
        command: insurer_cmd::InsurerCommand,
    },
    /// The audit log: verify its seals; a patient's own access log, flag and consents.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// The patient's own page on their PC with a card reader (coverage, who looked, consents,
    /// a wrong link flagged), with their own card and PIN.
    Patient {
        #[command(subcommand)]
        command: audit_cmd::PatientCommand,
    },
    /// 公費 and local subsidies: a payer uploads its recipients; staff check a 受給者証.
    Payer {
        #[command(subcommand)]
        command: payer_cmd::PayerCommand,
    },
    /// Medical information under the patient's consent: dispensed drugs, checkup results.
    Medical {
        #[command(subcommand)]
        command: medical_cmd::MedicalCommand,
    },
    /// The clinic gateway: the req/res/face file interface, the reception page, 一括照会,
    /// hybrid/offline mode.
    Gateway {
        #[command(subcommand)]
        command: gateway_cmd::GatewayCommand,
    },
    /// Check the chain from this clinic to the center (reader, configuration, certificates,
    /// DNS, TCP, TLS, center, clock) and name the first broken link.
    Doctor(doctor_cmd::DoctorArgs),
    /// Generate a synthetic population (insurer event files and a ground truth).
    Synth(synth_cmd::SynthArgs),
    /// Ask the center whether a coverage is valid.
    Verify {
        #[command(subcommand)]
        command: verify_cmd::VerifyCommand,
    },
    /// Receipt pre-check: find the claims that will bounce before the claim file is sent.
    Receipt {
        #[command(subcommand)]
        command: receipt_cmd::ReceiptCommand,
    },
    /// Measure import, verify throughput and latency, and memory (see docs/PERFORMANCE.md).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs each refusal at info; a scripted check makes many on purpose.
    let quiet = matches!(&cli.command, Command::Demo(args) if args.check) || matches!(&cli.command, Command::Bench(_));
    let default_filter = if quiet { "warn" } else { "warn,onshi_center=info,onshi_gateway=info" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ONSHI_LOG").unwrap_or_else(|_| default_filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Before any SQLite connection opens, after the log can say if it was too late.
    onshi_store::sqlite::configure_process();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Center { command } => center_cmd::run(command),
        Command::Jpki { command } => jpki_cmd::run(command),
        Command::Reader { command } => card_cmd::run_reader(command),
        Command::Card { command } => card_cmd::run_card(command),
        Command::Insurer { command } => insurer_cmd::run(command),
        Command::Audit { command } => audit_cmd::run(command),
        Command::Patient { command } => audit_cmd::run_patient(command),
        Command::Medical { command } => medical_cmd::run(command),
        Command::Payer { command } => payer_cmd::run(command),
        Command::Gateway { command } => gateway_cmd::run(command),
        Command::Doctor(args) => doctor_cmd::run(args),
        Command::Synth(args) => synth_cmd::run(args),
        Command::Verify { command } => verify_cmd::run(command),
        Command::Receipt { command } => receipt_cmd::run(command),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// A multi-threaded runtime for commands that serve or call the center.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
