//! `onshi insurer …`: what an insurer does at the center over HTTPS with its own certificate:
//! review the reports of cards that may be linked to the wrong member.

use std::process::ExitCode;

use onshi_api::card::{LinkReports, ReviewLink};

use crate::tls_args::{CenterArgs, explain};

#[derive(clap::Subcommand, Debug)]
pub enum InsurerCommand {
    /// The open wrong-link reports about this insurer's members, with the numbers to look
    /// each member up by.
    LinkReports {
        #[command(flatten)]
        center: CenterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Decide a report: `confirm` (the link is wrong: it is undone, the holder registers the
    /// card again once the card authority is corrected) or `clear` (the link is right: a card
    /// its holder blocked verifies again).
    ReviewLink {
        #[command(flatten)]
        center: CenterArgs,
        #[arg(long)]
        report: i64,
        #[arg(long, value_parser = ["confirm", "clear"])]
        decision: String,
        #[arg(long, default_value = "")]
        note: String,
    },
}

pub fn run(command: InsurerCommand) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    match command {
        InsurerCommand::LinkReports { center, json } => {
            let client = center.client()?;
            let reports: LinkReports =
                runtime.block_on(client.post_json("/insurer/link-reports", &serde_json::json!({}))).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                println!("未確認のひも付け誤り報告: {}件", reports.reports.len());
                for r in &reports.reports {
                    println!(
                        "  報告 {}  {}  報告者 {}  記号 {} 番号 {} 枝番 {}  証明書 {}  理由: {}",
                        r.report_id,
                        r.filed_at,
                        r.reporter,
                        r.symbol.as_deref().unwrap_or("-"),
                        r.number,
                        r.branch,
                        r.serial,
                        r.reason
                    );
                }
            }
        }
        InsurerCommand::ReviewLink { center, report, decision, note } => {
            let client = center.client()?;
            let request = ReviewLink { report_id: report, decision, note };
            let answer: serde_json::Value = runtime.block_on(client.post_json("/insurer/link-review", &request)).map_err(explain)?;
            println!("{answer}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
