//! `onshi receipt check`: read the month's claim file, ask the center about every claim in
//! batches, print what will bounce and why, and write reports and a corrected copy on request.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use onshi_api::BATCH_ENTRIES_MAX;
use onshi_api::client::{CenterClient, ClientError};
use onshi_api::verify::{BatchVerifyRequest, VerifyNumberRequest};
use onshi_domain::Date;
use onshi_receipt::classify::{self, Assessment, Class, Fix, Replies, Reply};
use onshi_receipt::report::Report;
use onshi_receipt::uke::{self, Severity, UkeFile};

use crate::progress::Progress;
use crate::tls_args::CenterArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ReceiptCommand {
    /// Check every claim of a UKE claim file against the center before it is sent.
    ///
    /// Exit status: 0 when every claim is fine, 3 when some claim will bounce, must be
    /// re-routed or cannot be judged yet (or the file has errors), 1 when the check could not run.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The claim file (RECEIPTC.UKE). It is only read, never changed.
    pub file: PathBuf,
    #[command(flatten)]
    pub center: CenterArgs,
    /// Write a CSV report (UTF-8 with BOM, for spreadsheets).
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// Write an HTML report with a chart.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// Write a corrected copy for the unambiguous cases (a missing 枝番, the newer coverage of
    /// the same person), in the same encoding and line endings, and list every change.
    #[arg(long, value_name = "OUT.UKE")]
    pub fix: Option<PathBuf>,
    /// List every claim, not only those that need attention.
    #[arg(long)]
    pub all: bool,
    /// The day of the check, YYYYMMDD (today in Japan when absent); decides whether a missing
    /// coverage may still be registered.
    #[arg(long, value_name = "YYYYMMDD")]
    pub today: Option<String>,
    /// Also tell the clinic's gateway (its gateway.toml) how many claims each treatment month
    /// of the file has: the reception page then shows the 利用率 on the claims basis too.
    #[arg(long, value_name = "gateway.toml")]
    pub gateway: Option<PathBuf>,
}

pub fn run(command: ReceiptCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReceiptCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let today = match &args.today {
        Some(text) => Date::parse_yyyymmdd(text).map_err(|e| anyhow::anyhow!("--today {e}"))?,
        None => onshi_pki::today(),
    };
    if let Some(out) = &args.fix {
        refuse_same_file(&args.file, out)?;
    }
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read the claim file {}", args.file.display()))?;
    let file = uke::read(&bytes).with_context(|| format!("{} cannot be read as a claim file", args.file.display()))?;
    for diagnostic in &file.diagnostics {
        eprintln!("{}: {diagnostic}", args.file.display());
    }
    if let Some(config) = &args.gateway {
        record_claims(config, &args.file, &file)?;
    }
    let declarations = match &args.gateway {
        Some(config) => declarations(config, today)?,
        None => Vec::new(),
    };
    let client = args.center.client()?;
    let assessments = crate::runtime()?.block_on(assess_all(&client, &file, today, &declarations))?;

    let changes = match &args.fix {
        Some(out) => write_fixed(&file, &assessments, out)?,
        None => Vec::new(),
    };
    let source = args.file.file_name().map_or_else(|| args.file.display().to_string(), |n| n.to_string_lossy().into_owned());
    let report = Report { source: &source, file: &file, assessments: &assessments, changes: &changes, checked_on: today };
    print!("{}", report.summary_text());
    let table = report.table_text(args.all);
    if !table.is_empty() {
        println!();
        print!("{table}");
    }
    if let Some(out) = &args.fix {
        println!("\n{}: {}件の修正を書きました（元のファイルは変更していません）", out.display(), changes.len());
        print!("{}", report.changes_text());
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, report.csv()).with_context(|| format!("cannot write the CSV report {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.html()).with_context(|| format!("cannot write the HTML report {}", path.display()))?;
    }
    let attention = assessments.iter().any(|a| !matches!(a.class, Class::Ok | Class::NotChecked));
    let file_errors = file.diagnostics.iter().any(|d| d.severity == Severity::Error);
    Ok(if attention || file_errors { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

/// The 被保険者資格申立書 the gateway recorded within a year before `today`: (カナ reading,
/// birth date, the 摘要 to write).
fn declarations(config: &Path, today: Date) -> anyhow::Result<Vec<(String, Date, String)>> {
    let config = onshi_gateway::config::GatewayConfig::load(config)?;
    let store = onshi_gateway::store::Store::open(&config.store)
        .with_context(|| format!("the gateway's store {} (from {})", config.store.display(), config.source.display()))?;
    let since = onshi_domain::Timestamp::at_start_of(today.add_days(-400)).to_string();
    Ok(store
        .declarations_since(&since)?
        .into_iter()
        .map(|(_, d)| (onshi_domain::kana::reading(&d.name_kana), d.birth_date, onshi_gateway::declaration::note(&d)))
        .collect())
}

/// Writes the number of claims per treatment month into the gateway's store (the claims
/// basis of the 利用率 on its reception page).
fn record_claims(config: &Path, path: &Path, file: &UkeFile) -> anyhow::Result<()> {
    let config = onshi_gateway::config::GatewayConfig::load(config)?;
    let store = onshi_gateway::store::Store::open(&config.store)
        .with_context(|| format!("the gateway's store {} (from {})", config.store.display(), config.source.display()))?;
    let mut months: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for claim in &file.claims {
        if let Some(month) = claim.treatment_month {
            *months.entry(format!("{:04}{:02}", month.year, month.month)).or_default() += 1;
        }
    }
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let now = onshi_pki::now().to_string();
    for (month, claims) in &months {
        store.record_claims(month, *claims, &name, &now)?;
        println!("ゲートウェイに記録しました: 診療年月 {month} のレセプト {claims} 件（利用率のレセプト件数の基準）");
    }
    Ok(())
}

/// The corrected copy must never overwrite the claim file it was made from.
fn refuse_same_file(input: &Path, out: &Path) -> anyhow::Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => input == out,
    };
    if same {
        bail!("--fix {} names the claim file itself; give another file name (the original is never changed)", out.display());
    }
    Ok(())
}

/// Asks the center about every claim: first with the recorded numbers, then once more without
/// the 枝番 for the claims whose 枝番 found nothing.
pub(crate) async fn assess_all(
    client: &CenterClient,
    file: &UkeFile,
    today: Date,
    declarations: &[(String, Date, String)],
) -> anyhow::Result<Vec<Assessment>> {
    let institution = file.institution.code.as_ref().map(|c| c.as_str().to_string());
    let first: Vec<Option<Vec<VerifyNumberRequest>>> = file.claims.iter().map(|c| classify::requests(c, false)).collect();
    let mut with_numbers = ask(client, institution.as_deref(), first, "checking").await?;
    let retry: Vec<Option<Vec<VerifyNumberRequest>>> = file
        .claims
        .iter()
        .zip(&with_numbers)
        .map(|(claim, replies)| if classify::needs_retry_without_branch(claim, replies) { classify::requests(claim, true) } else { None })
        .collect();
    let mut without_branch = ask(client, institution.as_deref(), retry, "re-asking").await?;
    let mut by_attributes = ask_by_attributes(client, institution.as_deref(), file).await?;
    let mut subsidies = ask_subsidies(client, institution.as_deref(), file).await?;
    let welfare = ask_welfare(client, institution.as_deref(), file).await?;
    Ok(file
        .claims
        .iter()
        .enumerate()
        .map(|(i, claim)| {
            let replies = Replies {
                with_numbers: std::mem::take(&mut with_numbers[i]),
                without_branch: std::mem::take(&mut without_branch[i]),
                by_attributes: std::mem::take(&mut by_attributes[i]),
                subsidies: std::mem::take(&mut subsidies[i]),
                welfare: classify::welfare_month(claim).and_then(|month| welfare.get(&month).cloned()),
                // The declaration recorded for a 不詳 claim's patient (newest first).
                declaration: claim.insurance.as_ref().filter(|h| h.unknown).and_then(|_| {
                    let reading = onshi_domain::kana::reading(&claim.name_kana);
                    declarations
                        .iter()
                        .find(|(kana, birth, _)| !reading.is_empty() && *kana == reading && Some(*birth) == claim.birth_date)
                        .map(|(_, _, note)| note.clone())
                }),
            };
            classify::assess(claim, &file.institution, &replies, today)
        })
        .collect())
}

/// Asks the center each claim's questions one at a time, with progress: a refusal of one
/// question (a day's quota) is that question's reply; a failure to reach the center stops the
/// check.
async fn ask_one_by_one<Q, A, Fut>(
    label: &'static str,
    unit: &'static str,
    per_claim: Vec<Vec<Q>>,
    ask: impl Fn(Q) -> Fut,
) -> anyhow::Result<Vec<Vec<Result<A, onshi_api::verify::ApiError>>>>
where
    Fut: std::future::Future<Output = Result<A, ClientError>>,
{
    let total: usize = per_claim.iter().map(Vec::len).sum();
    let mut replies: Vec<Vec<Result<A, onshi_api::verify::ApiError>>> = per_claim.iter().map(|_| Vec::new()).collect();
    if total == 0 {
        return Ok(replies);
    }
    let mut progress = Progress::new(label, unit, Some(total as u64));
    let mut done = 0;
    for (claim, questions) in per_claim.into_iter().enumerate() {
        for question in questions {
            let reply = match ask(question).await {
                Ok(answer) => Ok(answer),
                Err(ClientError::Refused { body, .. }) => Err(body.error),
                Err(other) => return Err(explain(other)),
            };
            replies[claim].push(reply);
            done += 1;
            progress.set(done);
        }
    }
    progress.finish();
    Ok(replies)
}

/// Asks again about each claim billed as 不詳, by the patient's attributes (a month holds a
/// handful; the center limits them per day).
async fn ask_by_attributes(client: &CenterClient, institution: Option<&str>, file: &UkeFile) -> anyhow::Result<Vec<Vec<Reply>>> {
    let per_claim = file
        .claims
        .iter()
        .map(|c| {
            let mut asked = classify::attribute_requests(c).unwrap_or_default();
            asked.iter_mut().for_each(|r| r.institution_code = institution.map(str::to_string));
            asked
        })
        .collect();
    ask_one_by_one("asking about 不詳 claims", "searches", per_claim, |r| async move { client.verify_attributes(&r).await }).await
}

/// Asks about every claim's 公費 (KO lines) by their numbers and the patient's birth date.
async fn ask_subsidies(
    client: &CenterClient,
    institution: Option<&str>,
    file: &UkeFile,
) -> anyhow::Result<Vec<Vec<Result<onshi_api::subsidy::SubsidyAnswer, onshi_api::verify::ApiError>>>> {
    let per_claim = file
        .claims
        .iter()
        .map(|c| {
            let mut asked = classify::subsidy_requests(c);
            asked.iter_mut().for_each(|r| r.institution_code = institution.map(str::to_string));
            asked
        })
        .collect();
    ask_one_by_one("checking 公費", "questions", per_claim, |r| async move { client.verify_subsidy(&r).await }).await
}

/// This clinic's 医療扶助 recipients for every month a claim bills 医療扶助 (法別 12), one
/// question per month. A refused month is left unchecked; a failure to reach the center stops
/// the check.
async fn ask_welfare(
    client: &CenterClient,
    institution: Option<&str>,
    file: &UkeFile,
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<onshi_api::subsidy::WelfareRecipient>>> {
    let months: std::collections::BTreeSet<String> = file.claims.iter().filter_map(classify::welfare_month).collect();
    let mut lists = std::collections::BTreeMap::new();
    for month in months {
        let request = onshi_api::subsidy::WelfareMonthRequest { institution_code: institution.map(str::to_string), month: month.clone() };
        match client.welfare_month(&request).await {
            Ok(answer) => {
                lists.insert(month, answer.recipients);
            }
            Err(ClientError::Refused { body, .. }) => eprintln!("医療扶助 {month}: {}", body.error.reception_ja),
            Err(other) => return Err(explain(other)),
        }
    }
    Ok(lists)
}

/// Sends the requests of every claim in batches and hands back the replies per claim.
async fn ask(
    client: &CenterClient,
    institution: Option<&str>,
    per_claim: Vec<Option<Vec<VerifyNumberRequest>>>,
    label: &'static str,
) -> anyhow::Result<Vec<Vec<Reply>>> {
    let claims = per_claim.len();
    let mut owners = Vec::new();
    let mut entries = Vec::new();
    for (claim, requests) in per_claim.into_iter().enumerate() {
        for request in requests.into_iter().flatten() {
            owners.push(claim);
            entries.push(request);
        }
    }
    let mut replies: Vec<Vec<Reply>> = vec![Vec::new(); claims];
    if entries.is_empty() {
        return Ok(replies);
    }
    let mut progress = Progress::new(label, "requests", Some(entries.len() as u64));
    let mut done = 0;
    let mut owner = owners.iter();
    let mut rest = entries;
    while !rest.is_empty() {
        let chunk: Vec<VerifyNumberRequest> = rest.drain(..rest.len().min(BATCH_ENTRIES_MAX)).collect();
        let sent = chunk.len();
        let request = BatchVerifyRequest { institution_code: institution.map(str::to_string), entries: chunk };
        let response = client.verify_batch(&request).await.map_err(explain)?;
        if response.results.len() != sent {
            bail!("the center answered {} results for {sent} requests; the check was stopped", response.results.len());
        }
        for result in response.results {
            let reply = match (result.answer, result.error) {
                (Some(answer), _) => Ok(answer),
                (None, Some(error)) => Err(error),
                (None, None) => bail!("the center answered an entry with neither an answer nor an error"),
            };
            let claim = *owner.next().expect("one owner per entry");
            replies[claim].push(reply);
        }
        done += sent;
        progress.set(done as u64);
    }
    progress.finish();
    Ok(replies)
}

/// The center's own explanation when it refused the whole batch (another institution's file,
/// an expired certificate, …).
fn explain(error: ClientError) -> anyhow::Error {
    crate::tls_args::explain(error).context("the claims could not be checked")
}

fn write_fixed(file: &UkeFile, assessments: &[Assessment], out: &Path) -> anyhow::Result<Vec<onshi_receipt::fix::Change>> {
    let fixes: Vec<(usize, Fix)> = assessments.iter().enumerate().filter_map(|(i, a)| a.fix.clone().map(|f| (i, f))).collect();
    let fixed = onshi_receipt::fix::apply(file, &fixes)?;
    // Write beside the target and rename, so that a crash never leaves half a claim file.
    let partial = out.with_extension("partial");
    std::fs::write(&partial, &fixed.bytes).with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("cannot move the corrected copy to {}", out.display()))?;
    Ok(fixed.changes)
}
