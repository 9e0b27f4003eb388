//! `onshi reader …` and `onshi card …`: a card reader driven from the command line against the
//! center: the simulator over a card file (`--card`), or a PC/SC reader (`--pcsc`) with a real
//! card, a phone, or a virtual card put into pcscd's virtual reader by `onshi card insert`.

use std::path::PathBuf;
use std::process::ExitCode;

use onshi_api::card::{CardAnswer, ConsentChoice};
use onshi_reader::flow::{self, How};
use onshi_reader::pcsc_reader::PcscReader;
use onshi_reader::{CardReader, Face, ReaderFile, SimulatedReader};

use crate::tls_args::{CenterArgs, explain, explain_flow};

#[derive(clap::Subcommand, Debug)]
pub enum ReaderCommand {
    /// Create a reader: an id, a device key and the facility password for visual mode.
    Init {
        #[arg(long, default_value = "onshi-reader.json")]
        out: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        facility_password: String,
    },
    /// Drive the simulated reader over HTTP on loopback (place card, camera, visual mode,
    /// verify, remove card).
    Serve {
        #[command(flatten)]
        center: CenterArgs,
        #[arg(long, default_value = "onshi-reader.json")]
        reader: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
    /// Register the reader's device key with the center, for this institution.
    Register {
        #[command(flatten)]
        center: CenterArgs,
        #[arg(long, default_value = "onshi-reader.json")]
        reader: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct ReaderArgs {
    #[arg(long, default_value = "onshi-reader.json")]
    pub reader: PathBuf,
    /// The card file placed on the simulated reader.
    #[arg(long, required_unless_present = "pcsc", conflicts_with = "pcsc")]
    pub card: Option<PathBuf>,
    /// Use a PC/SC reader: its name (or the start of it); empty for the first one. The card
    /// (or phone) on it is recognised by its JPKI application.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub pcsc: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum CardCommand {
    /// 初回登録: the holder agrees, with the PIN, to use the card as an insurance card. Whose
    /// coverage it is comes from the card authority, never from the clinic.
    Link {
        #[command(flatten)]
        center: CenterArgs,
        #[command(flatten)]
        reader: ReaderArgs,
        #[arg(long, required_unless_present_any = ["phone", "face"])]
        pin: Option<String>,
        /// An iPhone: its owner confirms with Face ID / Touch ID on the phone.
        #[arg(long, conflicts_with = "pin")]
        phone: bool,
        /// By face at the reader: only for a card issued without a PIN (顔認証マイナンバーカード).
        #[arg(long, value_enum, conflicts_with_all = ["pin", "phone"])]
        face: Option<FaceArg>,
    },
    /// Verify by card: PIN, face, or visual mode (staff, facility password).
    Verify {
        #[command(flatten)]
        center: CenterArgs,
        #[command(flatten)]
        reader: ReaderArgs,
        /// PIN path.
        #[arg(long, conflicts_with_all = ["face", "visual"])]
        pin: Option<String>,
        /// iPhone: the owner confirms with Face ID / Touch ID on the phone instead of a PIN.
        #[arg(long, conflicts_with_all = ["face", "visual"])]
        phone: bool,
        /// Face path: who stands in front of the camera.
        #[arg(long, value_enum, conflicts_with = "visual")]
        face: Option<FaceArg>,
        /// Visual mode, switched on with the facility password.
        #[arg(long, requires = "facility_password")]
        visual: bool,
        #[arg(long)]
        facility_password: Option<String>,
        /// Consents chosen on the reader: drug, checkup, diagnosis, limit, specific_disease, and
        /// subsidy (「医療費助成の各種受給者証を利用しますか」: yes).
        #[arg(long, value_delimiter = ',')]
        consent: Vec<String>,
        /// 居宅同意取得型: `visit:YYYYMMDD` or `online:YYYYMMDD`, the consent to re-confirm without
        /// the card (再照会) until that day; the answer gives the key (`onshi card home-reverify`).
        #[arg(long)]
        home: Option<String>,
        /// 診療日 YYYYMMDD (today when absent).
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// 再照会: a later visit in the ongoing home or online care, by the key the consenting card
    /// check gave, without the card.
    HomeReverify {
        #[command(flatten)]
        center: CenterArgs,
        /// The consent's key.
        #[arg(long)]
        consent_key: String,
        /// 診療日 YYYYMMDD (today when absent).
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Place a virtual card into pcscd's virtual reader (vpcd) until Ctrl-C, --seconds, or the
    /// reader closes: any PC/SC application then sees a card, as with a real one.
    Insert(InsertArgs),
    /// Report that the card on the reader seems linked to the wrong person (the patient proves
    /// the card is theirs by PIN or face); the insurer reviews the report.
    Report {
        #[command(flatten)]
        center: CenterArgs,
        #[command(flatten)]
        reader: ReaderArgs,
        #[arg(long, conflicts_with = "face")]
        pin: Option<String>,
        #[arg(long)]
        face: bool,
        #[arg(long)]
        reason: String,
    },
}

/// `onshi card insert`: a virtual card in pcscd's virtual reader.
#[derive(clap::Args, Debug)]
pub struct InsertArgs {
    /// The card file.
    #[arg(long)]
    pub card: PathBuf,
    /// vpcd's address (its port is in /etc/reader.conf.d/vpcd).
    #[arg(long, default_value = "127.0.0.1:35963")]
    pub vpcd: std::net::SocketAddr,
    /// Remove the card after this many seconds (default: when stopped or the reader goes).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Take the card away after answering this many commands: a patient who pulls the card
    /// during the check (for trying how reception software copes).
    #[arg(long)]
    pub leave_after: Option<u64>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FaceArg {
    Holder,
    Stranger,
}

pub fn run_reader(command: ReaderCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReaderCommand::Init { out, id, facility_password } => {
            ReaderFile::create(&out, &id, &facility_password)?;
            println!("reader {id} written to {}", out.display());
        }
        ReaderCommand::Serve { center, reader, listen } => {
            let simulated = SimulatedReader::new(ReaderFile::load(&reader)?);
            let client = center.client()?;
            crate::runtime()?.block_on(crate::reader_http::serve(simulated, client, listen))?;
        }
        ReaderCommand::Register { center, reader } => {
            let file = ReaderFile::load(&reader)?;
            let client = center.client()?;
            let body = onshi_api::card::RegisterReader { reader_id: file.reader_id.clone(), public_key: file.public_key_hex()? };
            let answer: serde_json::Value = crate::runtime()?.block_on(client.post_json("/readers", &body)).map_err(explain)?;
            println!("{answer}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The reader a command uses: the simulator with a card file, or a PC/SC reader.
enum AnyReader {
    Simulated(Box<SimulatedReader>),
    Pcsc(PcscReader),
}

impl AnyReader {
    fn reader(&mut self) -> &mut dyn CardReader {
        match self {
            AnyReader::Simulated(r) => r.as_mut(),
            AnyReader::Pcsc(r) => r,
        }
    }
}

fn reader_with_card(args: &ReaderArgs) -> anyhow::Result<AnyReader> {
    let file = ReaderFile::load(&args.reader)?;
    match (&args.card, &args.pcsc) {
        (Some(card), _) => {
            let mut reader = SimulatedReader::new(file);
            reader.place_card(card)?;
            Ok(AnyReader::Simulated(Box::new(reader)))
        }
        (None, Some(name)) => {
            let reader = PcscReader::open(file, Some(name.as_str()).filter(|n| !n.is_empty()))?;
            Ok(AnyReader::Pcsc(reader))
        }
        (None, None) => anyhow::bail!("give --card FILE (the simulator) or --pcsc [READER]"),
    }
}

/// `visit:YYYYMMDD` / `online:YYYYMMDD` into the consent the card signs.
fn with_home(mut choice: ConsentChoice, home: Option<&str>) -> anyhow::Result<ConsentChoice> {
    if let Some(text) = home {
        let (kind, until) =
            text.split_once(':').ok_or_else(|| anyhow::anyhow!("--home {text:?}: write visit:YYYYMMDD or online:YYYYMMDD"))?;
        let kind = match kind {
            "visit" => onshi_api::card::HomeCareKind::Visit,
            "online" => onshi_api::card::HomeCareKind::Online,
            other => anyhow::bail!("--home {other:?}: the kinds are visit and online"),
        };
        let until = until.parse().map_err(|_| anyhow::anyhow!("--home: {until:?} is not a day YYYYMMDD"))?;
        choice.home = Some(onshi_api::card::HomeCare { kind, until });
    }
    Ok(choice)
}

fn consent_choice(scopes: &[String]) -> anyhow::Result<ConsentChoice> {
    let mut choice = ConsentChoice::default();
    for scope in scopes {
        match scope.as_str() {
            "drug" => choice.drug = true,
            "checkup" => choice.checkup = true,
            "diagnosis" => choice.diagnosis = true,
            "limit" => choice.limit = true,
            "specific_disease" => choice.specific_disease = true,
            "subsidy" => choice.subsidy = true,
            other => anyhow::bail!("--consent {other:?}: the scopes are drug, checkup, diagnosis, limit, specific_disease, subsidy"),
        }
    }
    Ok(choice)
}

fn print_answer(answer: &CardAnswer) {
    let a = &answer.answer;
    println!("資格有効性: {} ({})  確認方法: {}  証明書 {}", a.validity.label, a.validity.code, answer.method.code(), answer.serial);
    if let Some(c) = &a.coverage {
        println!("  保険者番号 {}  記号 {}  番号 {}  枝番 {}", c.insurer_number, c.symbol.as_deref().unwrap_or("-"), c.number, c.branch);
    }
    if let Some(notice) = &a.notice {
        println!("  {}", notice.reception_ja);
    }
    if let Some(certificate) = &answer.certificate {
        println!("  {}", certificate.reception_ja);
    }
    if let Some(home) = &answer.home_consent {
        println!(
            "  在宅・オンライン診療の同意 {}〜{}（再照会の鍵 {}: onshi card home-reverify --consent-key）",
            home.valid_from, home.valid_to, home.key
        );
    }
    for subsidy in &a.subsidies {
        println!("  {}", onshi_gateway::check::subsidy_sentence(subsidy).trim_start_matches('。'));
    }
    let c = &answer.consents;
    for (label, state) in [
        ("薬剤情報", &c.pharmacists_info),
        ("特定健診", &c.specific_health_checkups_info),
        ("診療・手術", &c.diagnosis_info),
        ("限度額", &c.limit_application_certificate_related),
        ("特定疾病", &c.specific_diseases_certificate_related),
    ] {
        println!(
            "  同意 {label}: {} {}",
            state.flag,
            state.available_time.as_deref().map(|t| format!("（閲覧期限 {t}）")).unwrap_or_default()
        );
    }
}

pub fn run_card(command: CardCommand) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    match command {
        CardCommand::Link { center, reader, pin, phone, face } => {
            let client = center.client()?;
            let mut any = reader_with_card(&reader)?;
            let how = match (pin.as_deref(), phone, face) {
                (Some(pin), _, _) => How::Pin(pin),
                (None, true, _) => How::Phone,
                (None, false, face) => {
                    if let (AnyReader::Simulated(simulated), Some(face)) = (&mut any, face) {
                        simulated.present_face(match face {
                            FaceArg::Holder => Face::Holder,
                            FaceArg::Stranger => Face::Stranger,
                        });
                    }
                    How::Face
                }
            };
            let linked = runtime.block_on(flow::link_by(&client, any.reader(), how)).map_err(explain_flow)?;
            println!("利用登録しました: 証明書 {} ({})", linked.serial, linked.linked_at);
        }
        CardCommand::HomeReverify { center, consent_key: key, date, json } => {
            let client = center.client()?;
            let answer = runtime
                .block_on(client.verify_home(&onshi_api::card::HomeReverify { key, date_of_care: date }))
                .map_err(crate::tls_args::explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("資格有効性: {} ({})", answer.validity.label, answer.validity.code);
            }
        }
        CardCommand::Verify { center, reader, pin, phone, face, visual, facility_password, consent, home, date, json } => {
            let client = center.client()?;
            let mut any = reader_with_card(&reader)?;
            let how = match (pin.as_deref(), phone, face, visual) {
                (Some(pin), _, _, _) => How::Pin(pin),
                (None, true, _, _) => How::Phone,
                (None, false, Some(face), _) => {
                    if let AnyReader::Simulated(simulated) = &mut any {
                        simulated.present_face(match face {
                            FaceArg::Holder => Face::Holder,
                            FaceArg::Stranger => Face::Stranger,
                        });
                    }
                    How::Face
                }
                (None, false, None, true) => {
                    let password = facility_password.as_deref().unwrap_or("");
                    match &mut any {
                        AnyReader::Simulated(r) => r.enable_visual_mode(password)?,
                        AnyReader::Pcsc(r) => r.enable_visual_mode(password)?,
                    }
                    How::Visual
                }
                _ => anyhow::bail!("choose --pin, --phone (iPhone), --face holder|stranger or --visual with --facility-password"),
            };
            let answer = runtime
                .block_on(flow::verify(&client, any.reader(), how, with_home(consent_choice(&consent)?, home.as_deref())?, date))
                .map_err(explain_flow)?;
            any.reader().remove_card();
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print_answer(&answer);
            }
        }
        CardCommand::Report { center, reader, pin, face, reason } => {
            let client = center.client()?;
            let mut any = reader_with_card(&reader)?;
            let how = match (pin.as_deref(), face) {
                (Some(pin), _) => How::Pin(pin),
                (None, true) => How::Face,
                (None, false) => anyhow::bail!("the patient proves the card is theirs: --pin or --face"),
            };
            let filed = runtime.block_on(flow::report(&client, any.reader(), how, &reason)).map_err(explain_flow)?;
            println!(
                "報告しました（報告番号 {}、証明書 {}）。保険者が確認します。カードはそのまま使えます。",
                filed.report_id, filed.serial
            );
        }
        CardCommand::Insert(args) => insert(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Places the card into vpcd and answers its APDUs until Ctrl-C / SIGTERM, `--seconds`, or the
/// reader closing the connection.
fn insert(args: &InsertArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let card = onshi_pki::card::VirtualCard::load(&args.card)?;
    let serial = card.serial().to_string();
    let mut applet = onshi_pki::applet::Applet::new(card);
    let placed = onshi_reader::vpcd::PlacedCard::place(args.vpcd, Duration::from_secs(10))?;
    println!("card {serial} placed in the virtual reader at {} (Ctrl-C to remove it)", args.vpcd);
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C or SIGTERM removes the card cleanly (the reader sees it leave).
    let runtime = crate::runtime()?;
    let flag = Arc::clone(&stop);
    runtime.spawn(async move {
        let _ = crate::center_cmd::stop_signal().await;
        flag.store(true, Ordering::Relaxed);
    });
    let until = args.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let keep_going = || !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u);
    placed.serve(&mut applet, Duration::from_millis(100), args.leave_after, &keep_going)?;
    // Whoever started us may have stopped reading: the card is out either way.
    let _ = writeln!(std::io::stdout(), "card {serial} removed");
    Ok(())
}
