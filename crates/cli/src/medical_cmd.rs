//! `onshi medical drugs|checkups`: an institution views a patient's information, which the
//! center shows only under the patient's live consent.

use std::process::ExitCode;

use onshi_api::medical::{CheckupItem, Drug, MedicalAnswer, MedicalQuery};

use crate::tls_args::{CenterArgs, explain};

#[derive(clap::Args, Debug)]
pub struct Numbers {
    #[command(flatten)]
    pub center: CenterArgs,
    #[arg(long)]
    pub insurer: String,
    #[arg(long)]
    pub symbol: Option<String>,
    #[arg(long)]
    pub number: String,
    #[arg(long)]
    pub branch: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum MedicalCommand {
    /// 薬剤情報: dispensed drugs.
    Drugs(Numbers),
    /// 特定健診情報: checkup results.
    Checkups(Numbers),
}

fn query(n: &Numbers) -> MedicalQuery {
    MedicalQuery { insurer_number: n.insurer.clone(), symbol: n.symbol.clone(), number: n.number.clone(), branch: n.branch.clone() }
}

fn freshness<T>(answer: &MedicalAnswer<T>) -> String {
    match (&answer.newest_arrived_on, answer.newest_age_days) {
        (Some(on), Some(days)) => {
            format!("最新の記録は{on}に届いたもの（{days}日前）。レセプト由来の情報は調剤から約6週間遅れて届きます。")
        }
        _ => "記録はありません。".into(),
    }
}

pub fn run(command: MedicalCommand) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    match command {
        MedicalCommand::Drugs(n) => {
            let client = n.center.client()?;
            let answer: MedicalAnswer<Drug> = runtime.block_on(client.post_json("/medical/drugs", &query(&n))).map_err(explain)?;
            if n.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("薬剤情報 {}件。{}", answer.records.len(), freshness(&answer));
                for d in &answer.records {
                    println!("  {} {} {}{} {}日分 ({})", d.dispensed_on, d.drug_name, d.quantity, d.unit, d.days, d.source);
                }
            }
        }
        MedicalCommand::Checkups(n) => {
            let client = n.center.client()?;
            let answer: MedicalAnswer<CheckupItem> =
                runtime.block_on(client.post_json("/medical/checkups", &query(&n))).map_err(explain)?;
            if n.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("特定健診 {}項目。{}", answer.records.len(), freshness(&answer));
                for c in &answer.records {
                    println!("  {} {} {} {}", c.examined_on, c.item_name, c.value, c.unit);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
