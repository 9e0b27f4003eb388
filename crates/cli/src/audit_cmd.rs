//! `onshi audit`: check the audit log's seals, and a patient's own access log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use onshi_api::client::{CenterClient, ClientConfig};
use onshi_pki::card::VirtualCard;

use crate::center_cmd::{audit_path, open_audit_to_verify};
use crate::tls_args::explain_flow;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check every entry's seal and the chain: a changed, inserted or deleted entry is named.
    Verify {
        /// The register; the audit log is beside it (`X.audit.sqlite`).
        #[arg(long, default_value = "onshi-center.sqlite")]
        db: PathBuf,
        /// The PKI directory holding `audit.key`.
        #[arg(long, default_value = "onshi-pki")]
        pki: PathBuf,
        /// The audit log, when the center was given one with `--audit`.
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// As a patient: report that my card seems linked to someone else (my own card, PIN).
    FlagLink {
        #[command(flatten)]
        patient: PatientArgs,
        #[arg(long)]
        reason: String,
    },
    /// As a patient: withdraw consents I gave an institution (my own card, PIN).
    WithdrawConsent {
        #[command(flatten)]
        patient: PatientArgs,
        /// The institution's 医療機関コード.
        #[arg(long)]
        institution: String,
        /// drug, checkup, diagnosis, limit, specific_disease, home (the home-care consent for
        /// 再照会), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
    },
    /// As a patient: consent, from my own device, to an institution's online care until a day
    /// (my own card, PIN); the institution re-confirms my coverage without the card until then.
    OnlineConsent {
        #[command(flatten)]
        patient: PatientArgs,
        /// The institution's 医療機関コード.
        #[arg(long)]
        institution: String,
        /// The last day, YYYYMMDD.
        #[arg(long)]
        until: String,
    },
    /// As a patient: who looked at my records, with my own card (PIN) — no clinic certificate.
    AccessLog {
        #[command(flatten)]
        patient: PatientArgs,
        #[arg(long)]
        json: bool,
    },
}

/// A client without a certificate: the card holder authenticates with the card itself.
fn anonymous_client(center: String, ca: &std::path::Path) -> anyhow::Result<CenterClient> {
    Ok(CenterClient::new(ClientConfig {
        base_url: center,
        ca_pem: std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?,
        identity_pem: None,
        timeout: Duration::from_secs(30),
    })?)
}

/// A card holder acting for themselves: the center, its CA, their card and PIN.
#[derive(clap::Args, Debug)]
pub struct PatientArgs {
    #[arg(long, env = "ONSHI_CENTER", default_value = "https://127.0.0.1:8443")]
    center: String,
    #[arg(long, env = "ONSHI_CA")]
    ca: PathBuf,
    /// My card file.
    #[arg(long)]
    card: PathBuf,
    #[arg(long)]
    pin: String,
}

/// `onshi patient …`: the patient's own tools.
#[derive(clap::Subcommand, Debug)]
pub enum PatientCommand {
    /// The patients' page on this PC, with this PC's card reader: my coverage as registered,
    /// who looked at my records, my consents (withdraw one), a wrong link flagged — with my
    /// card and PIN, no clinic certificate. Open it in this PC's browser.
    Page {
        #[arg(long, env = "ONSHI_CENTER", default_value = "https://127.0.0.1:8443")]
        center: String,
        #[arg(long, env = "ONSHI_CA")]
        ca: PathBuf,
        /// The PC/SC reader, by (the start of) its name; "" the first one.
        #[arg(long, conflicts_with = "cards")]
        pcsc: Option<String>,
        /// A trial without a reader: the simulated reader, with the card files in this folder.
        #[arg(long)]
        cards: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
}

pub fn run_patient(command: PatientCommand) -> anyhow::Result<ExitCode> {
    let PatientCommand::Page { center, ca, pcsc, cards, listen } = command;
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "--listen {listen}: the patients' page on a patient's own PC answers this PC only; use 127.0.0.1"
    );
    let client = anonymous_client(center, &ca)?;
    let file = onshi_reader::ReaderFile::ephemeral("patient-pc")?;
    let reader = match (&pcsc, &cards) {
        (Some(name), _) => onshi_gateway::card_reader::GatewayReader::pcsc(file, name),
        (None, Some(_)) => onshi_gateway::card_reader::GatewayReader::simulated(file),
        (None, None) => {
            anyhow::bail!("name the card reader: --pcsc NAME (\"\" for the first one), or --cards DIR for a trial with card files")
        }
    };
    let router = onshi_gateway::patient::own_pc_router(client, reader, cards);
    crate::runtime()?.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}; give another --listen"))?;
        let address = listener.local_addr()?;
        println!("listening {address}");
        eprintln!("onshi: ご自身の情報の確認 http://{address}/ (カードをカードリーダーに置いて、このPCのブラウザで開いてください)");
        axum::serve(listener, router.into_make_service_with_connect_info::<onshi_gateway::access::Peer>())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { db, pki, audit } => {
            let audit = audit.unwrap_or_else(|| audit_path(&db));
            if let Some(url) = crate::center_cmd::postgres_url(&db) {
                return verify_postgres(url, &audit, &pki);
            }
            anyhow::ensure!(
                audit.exists(),
                "no audit log at {}; the center writes it beside the register or where --audit says",
                audit.display()
            );
            let mut log = open_audit_to_verify(&audit, &pki)?;
            let checked = match log.verify()? {
                Ok(count) => log.check_checkpoint()?.and(log.check_person_index()?).and(log.check_tallies()?).map(|()| count),
                Err(tamper) => Err(tamper),
            };
            match checked {
                Ok(count) => {
                    let (seq, seal) = log.head();
                    println!("{}: {count} entries, every seal and link intact", log.path().display());
                    println!("head: entry {seq}, seal {seal}");
                    println!(
                        "(the center exports the head to {} and its log every few seconds and on a stop; removing the newest \
                         entries after the last export leaves a shorter intact chain, so keep those copies elsewhere)",
                        onshi_store::audit::checkpoint_path(log.path()).display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(tamper) => {
                    println!("{}: TAMPERED: {tamper}", log.path().display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        AuditCommand::FlagLink { patient: PatientArgs { center, ca, card, pin }, reason } => {
            let client = anonymous_client(center, &ca)?;
            let mut card = VirtualCard::load(&card)?;
            let filed =
                crate::runtime()?.block_on(onshi_reader::flow::flag_as_holder(&client, &mut card, &pin, &reason)).map_err(explain_flow)?;
            println!(
                "届け出ました（報告番号 {}）。保険者が確認するまで、このカードは保険証として使えません（資格確認書・保険証をお使いください）。",
                filed.report_id
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::WithdrawConsent { patient: PatientArgs { center, ca, card, pin }, institution, scope } => {
            let client = anonymous_client(center, &ca)?;
            let mut card = VirtualCard::load(&card)?;
            let answer = crate::runtime()?
                .block_on(onshi_reader::flow::withdraw_consent(&client, &mut card, &pin, &institution, scope))
                .map_err(explain_flow)?;
            let withdrawn: Vec<String> = serde_json::from_value(answer["withdrawn"].clone()).unwrap_or_default();
            if withdrawn.is_empty() {
                println!("医療機関 {institution} への有効な同意はありませんでした。");
            } else {
                println!("医療機関 {institution} への同意を取り消しました: {}", withdrawn.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::OnlineConsent { patient: PatientArgs { center, ca, card, pin }, institution, until } => {
            let client = anonymous_client(center, &ca)?;
            let mut card = VirtualCard::load(&card)?;
            let given = crate::runtime()?
                .block_on(onshi_reader::flow::give_online_consent(&client, &mut card, &pin, &institution, &until))
                .map_err(explain_flow)?;
            println!("医療機関 {} のオンライン診療に同意しました（{}〜{}）。", given.institution_code, given.valid_from, given.valid_to);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::AccessLog { patient: PatientArgs { center, ca, card, pin }, json } => {
            let client = anonymous_client(center, &ca)?;
            let mut card = VirtualCard::load(&card)?;
            let log = crate::runtime()?.block_on(onshi_reader::flow::access_log(&client, &mut card, &pin)).map_err(explain_flow)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else {
                if log.total as usize > log.entries.len() {
                    println!("あなたの情報を確認・閲覧した記録（全{}件のうち新しい{}件）", log.total, log.entries.len());
                } else {
                    println!("あなたの情報を確認・閲覧した記録（{}件）", log.entries.len());
                }
                for e in &log.entries {
                    println!("  {}  {}  {}  {}", e.at, e.by, e.action, e.code);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `onshi audit verify` for the chain in PostgreSQL that every center process appends to,
/// against the checkpoint that the center given `audit` exports.
fn verify_postgres(url: &str, audit: &std::path::Path, pki: &std::path::Path) -> anyhow::Result<ExitCode> {
    let key = crate::center_cmd::read_audit_key(&pki.join("audit.key"))?;
    let checkpoint = onshi_store::audit::checkpoint_path(audit);
    let mut log = onshi_store::postgres::audit::PgAuditLog::open(url, &checkpoint, &key)?;
    let checked = match log.verify()? {
        Ok(count) => log.check_checkpoint()?.and(log.check_tallies()?).map(|()| count),
        Err(tamper) => Err(tamper),
    };
    match checked {
        Ok(count) => {
            let (seq, seal) = log.head();
            println!("audit log in PostgreSQL: {count} entries, every seal and link intact");
            println!("head: entry {seq}, seal {seal}");
            println!("(compared with the checkpoint {}; each center process exports its own)", checkpoint.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(tamper) => {
            println!("audit log in PostgreSQL: TAMPERED: {tamper}");
            Ok(ExitCode::from(2))
        }
    }
}
