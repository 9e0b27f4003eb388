//! `onshi payer …`: what a 公費 payer (a prefecture's or a city's programme, a welfare office)
//! does at the center over HTTPS with its own certificate, and `onshi payer check`, what staff
//! ask about a 受給者証 with the institution's certificate.

use std::process::ExitCode;

use anyhow::Context;
use onshi_api::subsidy::VerifySubsidyRequest;

use crate::tls_args::{CenterArgs, explain};

#[derive(clap::Subcommand, Debug)]
pub enum PayerCommand {
    /// Upload recipient events (JSON Lines: grant / end) for the payer the certificate names.
    Upload {
        #[command(flatten)]
        center: CenterArgs,
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Ask about one 受給者証 by the numbers printed on it and the patient's birth date
    /// (institution certificate).
    Check {
        #[command(flatten)]
        center: CenterArgs,
        /// 公費負担者番号.
        #[arg(long)]
        payer: String,
        /// 公費受給者番号.
        #[arg(long)]
        recipient: String,
        /// YYYYMMDD.
        #[arg(long)]
        birth_date: String,
        /// 診療日 YYYYMMDD.
        #[arg(long)]
        date_of_care: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: PayerCommand) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    match command {
        PayerCommand::Upload { center, file, json } => {
            let body = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let report = runtime.block_on(center.client()?.upload_subsidy_events(body)).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", crate::center_cmd::report_text(&file, &report, ("applied", "already applied")));
            }
            Ok(if report.rejected_total > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        PayerCommand::Check { center, payer, recipient, birth_date, date_of_care, json } => {
            let request =
                VerifySubsidyRequest { institution_code: None, payer_number: payer, recipient_number: recipient, birth_date, date_of_care };
            let answer = runtime.block_on(center.client()?.verify_subsidy(&request)).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("{} ({})", answer.reception_ja, answer.state);
                if let Some(s) = &answer.subsidy {
                    println!(
                        "  {} {}  {}  有効 {}〜{}  上限 {}  指定医療機関 {}",
                        s.law.code,
                        s.law.label,
                        s.name,
                        s.valid_from,
                        s.valid_to.as_deref().unwrap_or(""),
                        s.self_pay_cap_yen.map_or_else(|| "なし".to_string(), |y| format!("{y}円/月")),
                        match s.designated {
                            None => "指定なし",
                            Some(true) => "当院",
                            Some(false) => "当院ではない",
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
