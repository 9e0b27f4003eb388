use std::fmt::Write;
use std::process::ExitCode;

use onshi_api::client::ClientError;
use onshi_api::verify::{Coverage, VerifyAnswer, VerifyNumberRequest};

use crate::tls_args::CenterArgs;

#[derive(clap::Subcommand, Debug)]
pub enum VerifyCommand {
    /// By the numbers on a 保険証 or 資格確認書.
    Number {
        #[command(flatten)]
        center: CenterArgs,
        /// 保険者番号.
        #[arg(long)]
        insurer: String,
        /// 記号.
        #[arg(long)]
        symbol: Option<String>,
        /// 番号.
        #[arg(long)]
        number: String,
        /// 枝番.
        #[arg(long)]
        branch: Option<String>,
        /// 生年月日 YYYYMMDD.
        #[arg(long)]
        birth: String,
        /// 診療日 YYYYMMDD (today when absent).
        #[arg(long)]
        date: Option<String>,
        /// The patient consented (orally) to limit information.
        #[arg(long)]
        limit_consent: bool,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

use onshi_domain::date::japanese_text as date_ja;

fn time_ja(text: &str) -> String {
    if text.len() == 14 {
        format!("{} {}:{}:{}", date_ja(&text[..8]), &text[8..10], &text[10..12], &text[12..14])
    } else {
        text.to_string()
    }
}

fn coverage_lines(out: &mut String, coverage: &Coverage) {
    let _ = writeln!(
        out,
        "  保険者番号 {}  記号 {}  番号 {}  枝番 {}",
        coverage.insurer_number,
        coverage.symbol.as_deref().unwrap_or("-"),
        coverage.number,
        coverage.branch
    );
    let _ = writeln!(
        out,
        "  氏名 {}（{}）  性別 {}  生年月日 {}",
        coverage.name,
        coverage.name_kana,
        coverage.sex.label,
        date_ja(&coverage.birth_date)
    );
    let _ = writeln!(out, "  本人・家族 {}  証区分 {}", coverage.relationship.label, coverage.card_classification.label);
    let lost = coverage.lost_on.as_deref().map(date_ja).unwrap_or_else(|| "-".into());
    let reason = coverage.loss_reason.as_ref().map(|r| format!("（{}）", r.label)).unwrap_or_default();
    let _ = writeln!(out, "  資格取得日 {}  資格喪失日 {lost}{reason}", date_ja(&coverage.acquired_on));
    if let Some(ratio) = coverage.copay_ratio_percent {
        let mut note = String::new();
        if coverage.preschool {
            note.push_str("（未就学）");
        }
        if coverage.elderly_recipient {
            note.push_str("（高齢受給者）");
        }
        let _ = writeln!(out, "  一部負担金割合 {}割{note}", ratio / 10);
    }
    if let Some(limit) = &coverage.limit {
        let cap = limit.outpatient_cap_base_yen.map(|yen| format!("  外来上限（基本）{yen}円")).unwrap_or_default();
        let _ = writeln!(out, "  限度額適用区分 {} {}（{}）{cap}", limit.category.code, limit.category.label, limit.classification.label);
    }
    for public in &coverage.public_expense {
        let _ = writeln!(out, "  公費 負担者番号 {}  受給者番号 {}", public.payer_number, public.recipient_number);
    }
}

/// The answer as reception reads it.
pub fn render_ja(answer: &VerifyAnswer) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "資格有効性: {} {}（診療日 {}）", answer.validity.code, answer.validity.label, date_ja(&answer.date_of_care));
    if let Some(notice) = &answer.notice {
        let _ = writeln!(out, "お知らせ [{}]: {}", notice.code, notice.reception_ja);
    }
    if let Some(coverage) = &answer.coverage {
        let _ = writeln!(out, "資格:");
        coverage_lines(&mut out, coverage);
    }
    if let Some(newer) = &answer.newer_coverage {
        let _ = writeln!(out, "新しい資格（振替先）:");
        coverage_lines(&mut out, newer);
    }
    for pending in &answer.pending {
        let _ = writeln!(out, "予定: {}", pending.description_ja);
    }
    if let Some(as_of) = &answer.as_of {
        let _ = writeln!(out, "データ更新 {}", time_ja(as_of));
    }
    if let Some(lag) = &answer.insurer_lag {
        let _ = writeln!(out, "この保険者の登録までの日数: 平均{:.1}日・最大{}日", lag.mean_days, lag.max_days);
    }
    out
}

pub fn run(command: VerifyCommand) -> anyhow::Result<ExitCode> {
    let VerifyCommand::Number { center, insurer, symbol, number, branch, birth, date, limit_consent, json } = command;
    let client = center.client()?;
    let request = VerifyNumberRequest {
        institution_code: None,
        insurer_number: insurer,
        symbol,
        number,
        branch,
        birth_date: birth,
        date_of_care: date,
        limit_consent,
        reverification: false,
        document: None,
    };
    let runtime = crate::runtime()?;
    match runtime.block_on(client.verify_number(&request)) {
        Ok(answer) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", render_ja(&answer));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Refused { status, body }) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                println!("エラー [{}]: {}", body.error.code, body.error.reception_ja);
                println!("  detail ({status}): {}", body.error.detail);
                println!("  operator: {}", body.error.operator_en);
            }
            Ok(ExitCode::from(2))
        }
        Err(other) => Err(crate::tls_args::explain(other)),
    }
}
