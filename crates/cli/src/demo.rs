//! `onshi demo`: a complete center on this machine with no set-up, and `--check`, a scripted
//! morning at reception compared with the synthetic population's ground truth.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use onshi_api::client::{CenterClient, ClientConfig, ClientError};
use onshi_api::verify::{BatchVerifyRequest, VerifyAnswer};
use onshi_domain::ids::{InstitutionCode, InsurerNumber};
use onshi_pki::CenterCa;
use onshi_store::sqlite::{SqliteOptions, SqliteRegister};
use onshi_synth::{SynthOptions, TruthCase, check_answer, read_truth};
use serde::{Deserialize, Serialize};

use crate::center_cmd::{import_files, start_center};
use crate::synth_cmd::{default_today, synthesize};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where the demo keeps its data (made if missing; reused when it matches).
    #[arg(long, default_value = "onshi-demo")]
    pub dir: PathBuf,
    /// Size of the synthetic population.
    #[arg(long, default_value_t = 100_000)]
    pub persons: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Port on 127.0.0.1 (0 picks a free one; a busy port falls back to a free one).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Run the scripted morning against the ground truth and exit (non-zero on any mismatch).
    #[arg(long)]
    pub check: bool,
    /// Port of the clinic gateway's reception page on 127.0.0.1 (a busy port falls back to a
    /// free one).
    #[arg(long, default_value_t = 8080)]
    pub page_port: u16,
    /// Cases taken from each ground-truth category by --check.
    #[arg(long, default_value_t = 25)]
    pub per_category: usize,
    /// The gateway uses this PC/SC card reader instead of the simulator (no name: the first
    /// one); needs the smart-card service (pcscd on Linux).
    #[arg(long, num_args = 0..=1, default_missing_value = "", conflicts_with = "check")]
    pub pcsc: Option<String>,
}

/// What a finished set-up wrote; its presence means the directory can be reused.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct DemoManifest {
    /// The set-up's layout; a directory of another version is set up again.
    #[serde(default)]
    version: u32,
    persons: u64,
    seed: u64,
    today: String,
    institution_code: String,
    insurer_number: String,
    cards: crate::demo_cards::DemoCards,
}

/// Bumped whenever the set-up writes something new (2: card path and medical information).
const DEMO_VERSION: u32 = 5;

/// The demo clinic: 東京都 (13), 医科 (1), 郡市区 12, number 3456, with its check digit.
pub(crate) fn demo_institution() -> InstitutionCode {
    InstitutionCode::with_check_digit("131123456").expect("valid body")
}

struct DemoPaths {
    root: PathBuf,
}

impl DemoPaths {
    fn synth(&self) -> PathBuf {
        self.root.join("synth")
    }
    fn db(&self) -> PathBuf {
        self.root.join("center.sqlite")
    }
    fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    fn manifest(&self) -> PathBuf {
        self.root.join("demo.json")
    }
    fn truth(&self) -> PathBuf {
        self.synth().join("ground-truth.jsonl")
    }
    fn institution_cert(&self, code: &str) -> (PathBuf, PathBuf) {
        let stem = self.pki().join("institutions").join(code);
        (stem.with_extension("pem"), stem.with_extension("key"))
    }
}

fn set_up(paths: &DemoPaths, args: &DemoArgs) -> anyhow::Result<DemoManifest> {
    let wanted_today = default_today().to_string();
    if let Ok(text) = std::fs::read_to_string(paths.manifest())
        && let Ok(manifest) = serde_json::from_str::<DemoManifest>(&text)
        && manifest.persons == args.persons
        && manifest.seed == args.seed
        && manifest.today == wanted_today
        && manifest.version == DEMO_VERSION
    {
        eprintln!("demo: reusing {}", paths.root.display());
        return Ok(manifest);
    }
    eprintln!("demo: setting up {} ({} persons)", paths.root.display(), args.persons);
    for stale in [paths.synth(), paths.pki(), paths.root.join("jpki"), paths.root.join("cards")] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale).with_context(|| format!("cannot clear {}", stale.display()))?;
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", paths.db().display()));
        if file.exists() {
            std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
        }
    }
    let _ = std::fs::remove_file(paths.manifest());
    std::fs::create_dir_all(&paths.root)?;
    let options = SynthOptions { persons: args.persons, seed: args.seed, today: default_today(), out: paths.synth() };
    let summary = synthesize(&options)?;
    let register = SqliteRegister::open(&paths.db(), SqliteOptions::IMPORT)?;
    let files: Vec<PathBuf> = summary.event_files.iter().map(|f| paths.synth().join(f)).collect();
    let totals = import_files(&register, &files, onshi_center::import::BATCH_EVENTS_DEFAULT)?;
    anyhow::ensure!(totals.rejected == 0, "the synthetic population had {} refused events; this is a bug in onshi synth", totals.rejected);
    let medical_file = paths.synth().join(onshi_synth::MEDICAL_FILE);
    // Records of people whose coverage is still only in late/ are refused: they are not in the register yet.
    crate::center_cmd::import_medical_files(&register, std::slice::from_ref(&medical_file))?;
    let subsidy_files: Vec<PathBuf> = summary.subsidy_files.iter().map(|f| paths.synth().join(f)).collect();
    let refused = crate::center_cmd::import_subsidy_files(&register, &subsidy_files)?;
    anyhow::ensure!(refused == 0, "the synthetic 公費 payers had {refused} refused events; this is a bug in onshi synth");
    drop(register);
    let cases = read_truth(&paths.truth()).map_err(anyhow::Error::msg)?;
    let welfare_cases =
        onshi_synth::read_welfare_truth(&paths.synth().join(onshi_synth::subsidy::WELFARE_TRUTH_FILE)).map_err(anyhow::Error::msg)?;
    let institution = demo_institution();
    let welfare =
        crate::demo_cards::WelfareSource { subsidy_files: &subsidy_files, cases: &welfare_cases, institution: institution.as_str() };
    let cards = crate::demo_cards::prepare(&paths.root, &files, &medical_file, &cases, &welfare, &wanted_today)?;
    let ca = CenterCa::create(&paths.pki(), "onshi demo center CA")?;
    ca.issue_server(&["localhost".to_string(), "127.0.0.1".to_string()])?;
    ca.issue_institution(&institution, "onshi demo clinic", 825)?;
    let insurer_line = std::fs::read_to_string(paths.synth().join("insurers.tsv"))?;
    let insurer = insurer_line.lines().next().and_then(|l| l.split('\t').next()).context("no insurer in the synthetic population")?;
    let insurer = InsurerNumber::parse(insurer).map_err(|e| anyhow::anyhow!("synthetic insurer: {e}"))?;
    ca.issue_insurer(&insurer, "onshi demo insurer", 825)?;
    let manifest = DemoManifest {
        version: DEMO_VERSION,
        cards,
        persons: args.persons,
        seed: args.seed,
        today: wanted_today,
        institution_code: institution.as_str().to_string(),
        insurer_number: insurer.as_str().to_string(),
    };
    std::fs::write(paths.manifest(), serde_json::to_string_pretty(&manifest)?)?;
    Ok(manifest)
}

/// The demo's one clinic runs the scripted morning (thousands of checks in seconds) against its
/// own center on loopback: the per-caller limit, meant for many clinics sharing one center, is off.
/// Its questions about withheld and mistyped 受給者証 (the ground truth's) are not a clinic guessing.
const DEMO_LIMITS: crate::center_cmd::Limits = crate::center_cmd::Limits {
    rate_per_second: 0,
    attribute_searches_per_day: onshi_center::attributes::ATTRIBUTE_SEARCHES_PER_DAY,
    subsidy_misses_per_day: u32::MAX,
    card_index_max_persons: onshi_store::card_index::DEFAULT_MAX_PERSONS,
    card_index_on_postgres: false,
};

async fn start(paths: &DemoPaths, port: u16) -> anyhow::Result<onshi_center::server::RunningCenter> {
    let wanted: SocketAddr = ([127, 0, 0, 1], port).into();
    let jpki = paths.root.join("jpki");
    match start_center(&paths.db(), None, &crate::center_cmd::audit_path(&paths.db()), &paths.pki(), Some(&jpki), wanted, DEMO_LIMITS).await
    {
        Ok(center) => Ok(center),
        Err(e) if port != 0 => {
            eprintln!("demo: port {port} unavailable ({e:#}); using a free port");
            start_center(
                &paths.db(),
                None,
                &crate::center_cmd::audit_path(&paths.db()),
                &paths.pki(),
                Some(&jpki),
                ([127, 0, 0, 1], 0).into(),
                DEMO_LIMITS,
            )
            .await
        }
        Err(e) => Err(e),
    }
}

fn client(paths: &DemoPaths, addr: SocketAddr, identity: Option<(PathBuf, PathBuf)>) -> anyhow::Result<CenterClient> {
    let identity_pem = match identity {
        Some((cert, key)) => Some((std::fs::read(cert)?, std::fs::read(key)?)),
        None => None,
    };
    Ok(CenterClient::new(ClientConfig {
        base_url: format!("https://{addr}"),
        ca_pem: std::fs::read(paths.pki().join("ca.pem"))?,
        identity_pem,
        timeout: Duration::from_secs(30),
    })?)
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let paths = DemoPaths { root: args.dir.clone() };
    let manifest = set_up(&paths, &args)?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let center = start(&paths, if args.check { 0 } else { args.port }).await?;
        let institution = client(&paths, center.addr, Some(paths.institution_cert(&manifest.institution_code)))?;
        crate::demo_cards::enroll(&institution, &manifest.cards).await?;
        let page_port = if args.check { 0 } else { args.page_port };
        let gateway =
            crate::demo_gateway::start(&paths.root, center.addr, &manifest.institution_code, page_port, args.pcsc.as_deref()).await?;
        let code = if args.check {
            let cases = read_truth(&paths.truth()).map_err(anyhow::Error::msg)?;
            let anonymous = client(&paths, center.addr, None)?;
            let mut report = morning(&institution, &anonymous, &manifest, &cases, args.per_category).await;
            subsidies(&institution, &paths, args.per_category, &mut report).await?;
            crate::demo_cards::check(&institution, &manifest.cards, &paths.root, &manifest.today, |category, outcome| {
                report.record(category, outcome)
            })
            .await?;
            for (i, case) in gateway_cases(&cases).into_iter().enumerate() {
                let outcome = gateway.check_file(case, &manifest.institution_code, i).await;
                report.record("gateway_request_file", outcome);
            }
            print!("{}", report.table());
            if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
        } else {
            print_try_next(&paths, &manifest, center.addr)?;
            print_gateway(&paths, &manifest, &gateway)?;
            tokio::signal::ctrl_c().await?;
            ExitCode::SUCCESS
        };
        gateway.shutdown().await;
        center.shutdown().await;
        Ok(code)
    })
}

fn print_try_next(paths: &DemoPaths, manifest: &DemoManifest, addr: SocketAddr) -> anyhow::Result<()> {
    let cases = read_truth(&paths.truth()).map_err(anyhow::Error::msg)?;
    let (cert, key) = paths.institution_cert(&manifest.institution_code);
    let ca = paths.pki().join("ca.pem");
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "onshi".into());
    println!("\nonshi demo center: https://{addr}  ({} persons, synthetic today {})", manifest.persons, manifest.today);
    println!("institution certificate: {} (医療機関コード {})\n", cert.display(), manifest.institution_code);
    println!("Set the connection once:");
    println!("  export ONSHI_CENTER=https://{addr} ONSHI_CA={} ONSHI_CERT={} ONSHI_KEY={}\n", ca.display(), cert.display(), key.display());
    println!("Then try (each is a real person of the synthetic population):");
    for category in [
        "valid",
        "limit_with_consent",
        "job_change_old_card",
        "turning_75_today",
        "wrong_birth_date",
        "twins_without_branch",
        "late_registration_new_card",
    ] {
        if let Some(case) = cases.iter().find(|c| c.category == category) {
            let r = &case.request;
            let mut line = format!("  {exe} verify number --insurer '{}' --number {} --birth {}", r.insurer_number, r.number, r.birth_date);
            if let Some(symbol) = &r.symbol {
                line.push_str(&format!(" --symbol {symbol}"));
            }
            if let Some(branch) = &r.branch {
                line.push_str(&format!(" --branch {branch}"));
            }
            if let Some(date) = &r.date_of_care {
                line.push_str(&format!(" --date {date}"));
            }
            if r.limit_consent {
                line.push_str(" --limit-consent");
            }
            println!("  # {category}: expect validity {}\n{line}", case.expect.validity);
        }
    }
    let claims = write_demo_claims(paths, manifest, &cases)?;
    println!("\nA claim file of this month's patients (some will bounce, some need 振替) is in {}:", claims.display());
    println!(
        "  {exe} receipt check {} --today {} --html {} --fix {}",
        claims.display(),
        manifest.today,
        paths.root.join("receipt-check.html").display(),
        paths.root.join("RECEIPTC.fixed.UKE").display()
    );
    let cards = &manifest.cards;
    let card = |i: usize| cards.cards[i].path.display().to_string();
    let reader = cards.reader.display();
    println!(
        "\nThe マイナ保険証 path (virtual cards in {}, PIN {}, reader {reader}):",
        paths.root.join("cards").display(),
        crate::demo_cards::DEMO_PIN
    );
    println!("  {exe} card verify --card {} --reader {reader} --pin {} --consent drug,checkup", card(0), crate::demo_cards::DEMO_PIN);
    println!("  {exe} card verify --card {} --reader {reader} --face holder", card(1));
    println!(
        "  {exe} card verify --card {} --reader {reader} --visual --facility-password {}",
        card(1),
        crate::demo_cards::FACILITY_PASSWORD
    );
    println!(
        "  {exe} card verify --card {} --reader {reader} --pin {}    # not registered for insurance use",
        card(2),
        crate::demo_cards::DEMO_PIN
    );
    let first = &cards.cards[0];
    println!(
        "  {exe} medical drugs --insurer '{}' {}--number {} --branch {}    # after the consent above",
        first.insurer_number,
        first.symbol.as_ref().map(|s| format!("--symbol {s} ")).unwrap_or_default(),
        first.number,
        first.branch
    );
    println!("  {exe} audit access-log --card {} --pin {}    # as the patient: who looked", card(0), crate::demo_cards::DEMO_PIN);
    println!("  {exe} audit verify --db {} --pki {}", paths.db().display(), paths.pki().display());
    println!("\nAdd --json for the full answer. Also:");
    println!("  curl --cacert {} https://{addr}/v1/health", ca.display());
    println!("  curl --cacert {} https://{addr}/metrics", ca.display());
    println!(
        "  https://{addr}/dashboard    # the operator's dashboard, in a browser on this PC (it trusts the demo CA {} or you accept it)",
        ca.display()
    );
    println!("  curl --cacert {} https://{addr}/v1/openapi.json", ca.display());
    println!("  {exe} demo --check --dir {}    # the scripted morning against the ground truth", paths.root.display());
    Ok(())
}

/// One case of each category whose answer file says something different: the gateway's
/// part of `--check`.
fn gateway_cases(cases: &[onshi_synth::TruthCase]) -> Vec<&onshi_synth::TruthCase> {
    ["valid", "job_change_old_card", "died", "wrong_birth_date", "twins_without_branch", "unknown_number", "valid_full_width_or_padded"]
        .iter()
        .filter_map(|category| cases.iter().find(|c| c.category == *category))
        .collect()
}

fn print_gateway(paths: &DemoPaths, manifest: &DemoManifest, gateway: &crate::demo_gateway::DemoGateway) -> anyhow::Result<()> {
    let cases = read_truth(&paths.truth()).map_err(anyhow::Error::msg)?;
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "onshi".into());
    println!(
        "
The clinic gateway (configuration {}):",
        gateway.config.display()
    );
    println!("  reception page (受付画面):  http://{}/", gateway.page);
    if let Some(kiosk) = gateway.patient {
        println!(
            "  patients' page (kiosk, 患者さん用):  http://{kiosk}/   (its own reader: the patient's card and PIN; coverage, consents, who looked)"
        );
    }
    println!("  drop request files into:   {}   (answers in res/, card results in face/)", gateway.folder.join("req").display());
    if let Some(case) = cases.iter().find(|c| c.category == "valid") {
        let example = crate::demo_gateway::write_example(&paths.root, case, &manifest.institution_code)?;
        println!("  cp {} {}", example.display(), gateway.folder.join("req").display());
    }
    println!("  {exe} doctor --config {}    # which link is broken, if any", gateway.config.display());
    if gateway.pcsc {
        println!(
            "  On the page: place a card on the PC/SC reader and have the patient type the PIN, or check it visually with the facility password {}.",
            crate::demo_cards::FACILITY_PASSWORD
        );
    } else {
        println!(
            "  On the page: place a card from {}, verify by face or PIN {}, or visually with the facility password {}.",
            paths.root.join("cards").display(),
            crate::demo_cards::DEMO_PIN,
            crate::demo_cards::FACILITY_PASSWORD
        );
    }
    println!("\nWith a real card reader (PC/SC: any contact or NFC reader the smart-card service sees), run the demo as");
    println!("  {exe} demo --dir {} --pcsc [NAME]    # the first reader, or the one whose name starts with NAME", paths.root.display());
    println!("  the page then says カードを置いてください and checks the card with the patient's PIN. A clinic writes");
    println!("  pcsc = \"\"  under [reader] in its gateway.toml instead of  simulator = true.");
    println!("  Linux needs pcscd (Debian: apt-get install pcscd); Windows has it built in (the Smart Card service).");
    println!(
        "  Without a physical card, a virtual one in the virtual reader of vsmartcard-vpcd (Debian: apt-get install vsmartcard-vpcd):"
    );
    if let Some(first) = manifest.cards.cards.first() {
        println!("    {exe} card insert --card {}    # Ctrl-C takes it away", first.path.display());
    }
    println!("\nCtrl-C stops the center and the gateway; the data stays in {}.", paths.root.display());
    Ok(())
}

/// Categories of the ground truth that make telling claims, one claim each.
const DEMO_CLAIM_CATEGORIES: [&str; 8] = [
    "valid",
    "valid_without_branch",
    "job_change_old_card",
    "died",
    "wrong_birth_date",
    "twins_without_branch",
    "unknown_number",
    "late_registration_new_card",
];

/// Writes `RECEIPTC.UKE` with one claim per category above, dated in the synthetic month.
fn write_demo_claims(paths: &DemoPaths, manifest: &DemoManifest, cases: &[onshi_synth::TruthCase]) -> anyhow::Result<PathBuf> {
    use onshi_receipt::sample::{ClaimSpec, claim_file};
    use onshi_receipt::uke::YearMonth;
    let today = onshi_domain::Date::parse_yyyymmdd(&manifest.today).map_err(|e| anyhow::anyhow!("manifest today: {e}"))?;
    let month = YearMonth::from_date(today);
    let mut claims = Vec::new();
    for category in DEMO_CLAIM_CATEGORIES {
        let in_month = |case: &&onshi_synth::TruthCase| {
            let date = case.request.date_of_care.as_deref().unwrap_or(&manifest.today);
            onshi_domain::Date::parse_yyyymmdd(date).is_ok_and(|d| YearMonth::from_date(d) == month)
        };
        let Some(case) = cases.iter().filter(|c| c.category == category).find(in_month) else { continue };
        let r = &case.request;
        let day = r.date_of_care.as_deref().unwrap_or(&manifest.today)[6..8].parse().unwrap_or(1);
        claims.push(ClaimSpec {
            insurer: onshi_domain::ids::to_half_width(&r.insurer_number),
            symbol: r.symbol.clone().unwrap_or_default(),
            number: r.number.clone(),
            branch: r.branch.clone(),
            birth_date: onshi_domain::Date::parse_yyyymmdd(&r.birth_date).map_err(|e| anyhow::anyhow!("ground truth: {e}"))?,
            sex: "1".into(),
            care_days: vec![day],
            points: 288,
            name: None,
        });
    }
    // A patient the line could not confirm, billed as 不詳 on their declaration: the check asks
    // by name, birth date and sex and finds the coverage registered since (振替).
    if let Some(attributes) = cases
        .iter()
        .filter_map(|c| c.attributes.as_ref())
        .find(|a| a.date_of_care.get(..6).is_some_and(|month| manifest.today.starts_with(month)))
    {
        claims.push(ClaimSpec {
            insurer: "77777777".into(),
            symbol: String::new(),
            number: String::new(),
            branch: None,
            birth_date: onshi_domain::Date::parse_yyyymmdd(&attributes.birth_date).map_err(|e| anyhow::anyhow!("ground truth: {e}"))?,
            sex: attributes.sex.clone(),
            care_days: vec![attributes.date_of_care.get(6..8).and_then(|d| d.parse().ok()).unwrap_or(1)],
            points: 288,
            name: Some((attributes.name.clone().unwrap_or_default(), attributes.name_kana.clone().unwrap_or_default())),
        });
    }
    let institution = onshi_domain::ids::InstitutionCode::parse(&manifest.institution_code).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = paths.root.join("RECEIPTC.UKE");
    std::fs::write(&path, claim_file(&institution, month, &claims)).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// One line of the morning's result table.
#[derive(Default)]
struct Tally {
    cases: usize,
    passed: usize,
}

#[derive(Default)]
struct MorningReport {
    tallies: BTreeMap<String, Tally>,
    failures: Vec<String>,
}

impl MorningReport {
    fn record(&mut self, category: &str, outcome: Result<(), String>) {
        let tally = self.tallies.entry(category.to_string()).or_default();
        tally.cases += 1;
        match outcome {
            Ok(()) => tally.passed += 1,
            Err(why) => self.failures.push(format!("{category}: {why}")),
        }
    }

    fn failed(&self) -> usize {
        self.tallies.values().map(|t| t.cases - t.passed).sum()
    }

    fn table(&self) -> String {
        let mut out = String::from("\ncategory                              cases  passed  failed\n");
        for (category, tally) in &self.tallies {
            out.push_str(&format!("{category:<36} {:>6}  {:>6}  {:>6}\n", tally.cases, tally.passed, tally.cases - tally.passed));
        }
        let cases: usize = self.tallies.values().map(|t| t.cases).sum();
        out.push_str(&format!("{:<36} {cases:>6}  {:>6}  {:>6}\n", "TOTAL", cases - self.failed(), self.failed()));
        // A few of each failing category, so that one category cannot hide the others.
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for failure in &self.failures {
            let category = failure.split(':').next().unwrap_or_default();
            let count = shown.entry(category).or_default();
            *count += 1;
            if *count <= 3 {
                out.push_str(&format!("FAIL {failure}\n"));
            }
        }
        out.push_str(if self.failed() == 0 {
            "\nmorning check: all answers match the ground truth\n"
        } else {
            "\nmorning check: MISMATCHES\n"
        });
        out
    }
}

/// Malformed requests reception software might send: (name, body, status, code).
fn malformed_requests(manifest: &DemoManifest) -> Vec<(&'static str, String, u16, &'static str)> {
    let other_institution = InstitutionCode::with_check_digit("271123456").expect("valid body");
    vec![
        ("bad_check_digit", r#"{"insurer_number":"06130487","number":"1","birth_date":"19800101"}"#.into(), 400, "INVALID_INSURER_NUMBER"),
        (
            "impossible_birth_date",
            r#"{"insurer_number":"06130488","number":"1","birth_date":"20230229"}"#.into(),
            400,
            "INVALID_BIRTH_DATE",
        ),
        (
            "three_digit_branch",
            r#"{"insurer_number":"06130488","number":"1","branch":"123","birth_date":"19800101"}"#.into(),
            400,
            "INVALID_BRANCH",
        ),
        ("missing_number", r#"{"insurer_number":"06130488","birth_date":"19800101"}"#.into(), 400, "MALFORMED_REQUEST"),
        ("not_json", "insurer=06130488".into(), 400, "MALFORMED_REQUEST"),
        (
            "my_number_field",
            r#"{"insurer_number":"06130488","number":"1","birth_date":"19800101","my_number":"123456789012"}"#.into(),
            400,
            "MALFORMED_REQUEST",
        ),
        (
            "other_institution_in_body",
            format!(r#"{{"institution_code":"{}","insurer_number":"06130488","number":"1","birth_date":"19800101"}}"#, other_institution),
            403,
            "INSTITUTION_MISMATCH",
        ),
        (
            "own_institution_in_body",
            format!(
                r#"{{"institution_code":"{}","insurer_number":"06130488","number":"0000000000","birth_date":"19800101"}}"#,
                manifest.institution_code
            ),
            200,
            "",
        ),
    ]
}

/// 受給者証 asked by their numbers: each answer against the payers' own timeline (valid with the
/// cap in force, ended, withheld, a wrong birth date, a payer that registers nothing).
async fn subsidies(institution: &CenterClient, paths: &DemoPaths, per_category: usize, report: &mut MorningReport) -> anyhow::Result<()> {
    let cases =
        onshi_synth::read_subsidy_truth(&paths.synth().join(onshi_synth::subsidy::SUBSIDY_TRUTH_FILE)).map_err(anyhow::Error::msg)?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        let count = counts.entry(case.category.as_str()).or_default();
        if *count >= per_category {
            continue;
        }
        *count += 1;
        let outcome = match institution.verify_subsidy(&case.request).await {
            Ok(answer) => onshi_synth::subsidy::check_subsidy(&answer, case),
            Err(e) => Err(format!("{} request failed: {e}", case.case)),
        };
        report.record(&case.category, outcome);
    }
    for category in ["subsidy_valid", "subsidy_withheld", "subsidy_ended", "subsidy_payer_not_connected", "subsidy_wrong_birth_date"] {
        if !counts.contains_key(category) {
            report.record(category, Err(format!("the synthetic world has no {category} case")));
        }
    }
    // 医療扶助: this clinic's month, asked once per month the truth names, each case against it.
    let welfare =
        onshi_synth::read_welfare_truth(&paths.synth().join(onshi_synth::subsidy::WELFARE_TRUTH_FILE)).map_err(anyhow::Error::msg)?;
    let ours: Vec<&onshi_synth::subsidy::WelfareCase> = welfare.iter().filter(|c| c.institution == demo_institution().as_str()).collect();
    let months: std::collections::BTreeSet<&str> = ours.iter().map(|c| c.month.as_str()).collect();
    for month in months {
        let request = onshi_api::subsidy::WelfareMonthRequest { institution_code: None, month: month.to_string() };
        match institution.welfare_month(&request).await {
            Ok(answer) => {
                for case in ours.iter().filter(|c| c.month == month) {
                    report.record(&case.category, onshi_synth::subsidy::check_welfare(&answer, case));
                }
                // Nobody listed whom the truth does not know (another clinic's, a withheld one).
                let known = |r: &onshi_api::subsidy::WelfareRecipient| {
                    ours.iter().any(|c| c.listed && c.payer_number == r.payer_number && c.recipient_number == r.recipient_number)
                };
                let strangers = answer.recipients.iter().filter(|r| !known(r)).count();
                report.record(
                    "welfare_nobody_else",
                    if strangers == 0 { Ok(()) } else { Err(format!("{strangers} recipients listed that the truth does not list")) },
                );
            }
            Err(e) => report.record("welfare_ticket", Err(format!("month {month}: {e}"))),
        }
    }
    for category in [
        "welfare_ticket",
        "welfare_unregistered",
        "welfare_withheld",
        "welfare_stopped",
        "welfare_only_ticket",
        "welfare_only_unregistered",
    ] {
        if !ours.iter().any(|c| c.category == category) {
            report.record(category, Err(format!("the synthetic world has no {category} case at this clinic")));
        }
    }
    Ok(())
}

async fn morning(
    institution: &CenterClient,
    anonymous: &CenterClient,
    manifest: &DemoManifest,
    cases: &[TruthCase],
    per_category: usize,
) -> MorningReport {
    let mut report = MorningReport::default();
    let mut chosen: Vec<&TruthCase> = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for case in cases {
        let count = counts.entry(case.category.as_str()).or_default();
        if *count < per_category {
            *count += 1;
            chosen.push(case);
        }
    }
    // Several receptions at once: eight verifications in flight.
    let mut answers: Vec<Option<VerifyAnswer>> = vec![None; chosen.len()];
    let mut done = vec![false; chosen.len()];
    for (chunk_index, chunk) in chosen.chunks(8).enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for (i, case) in chunk.iter().enumerate() {
            let client = institution.clone();
            let request = case.request.clone();
            set.spawn(async move { (chunk_index * 8 + i, client.verify_number(&request).await) });
        }
        while let Some(joined) = set.join_next().await {
            // A task that panicked lost its case: counted as a failure below, not skipped.
            let Ok((index, result)) = joined else { continue };
            let case = chosen[index];
            done[index] = true;
            match result {
                Ok(answer) => {
                    report.record(&case.category, check_answer(&answer, &case.expect).map_err(|why| format!("{} {why}", case.case)));
                    answers[index] = Some(answer);
                }
                Err(e) => report.record(&case.category, Err(format!("{} request failed: {e}", case.case))),
            }
        }
    }
    for (case, _) in chosen.iter().zip(&done).filter(|(_, done)| !**done) {
        report.record(&case.category, Err(format!("{} lost: its request task ended without an answer", case.case)));
    }
    // Claims billed as 不詳: the same patients asked by name, birth date and sex must be found
    // on the coverage the ground truth knows, with the same answer.
    for case in chosen.iter().filter(|c| c.attributes.is_some()) {
        let attributes = case.attributes.as_ref().expect("filtered");
        // The search answers what a claim needs: no pending changes, no 公費 the insurer reported.
        let expect = onshi_synth::Expectation { pending: Vec::new(), public_payer: None, ..case.expect.clone() };
        let result = match institution.verify_attributes(attributes).await {
            Ok(answer) => check_answer(&answer, &expect).map_err(|why| format!("{} by attributes: {why}", case.case)),
            Err(e) => Err(format!("{} search by attributes failed: {e}", case.case)),
        };
        report.record("unknown_claim_by_attributes", result);
    }
    // Every result code must have been seen.
    for code in ["1", "2", "3", "4", "5"] {
        let seen = answers.iter().flatten().any(|a| a.validity.code == code);
        report.record("every_result_code", if seen { Ok(()) } else { Err(format!("no answer had validity {code}")) });
    }
    // The same requests in batches must give the same answers, field by field (only the time
    // of answering may differ).
    let comparable = |answer: &VerifyAnswer| VerifyAnswer { answered_at: String::new(), ..answer.clone() };
    for (part, cases) in chosen.chunks(onshi_api::BATCH_ENTRIES_MAX).enumerate() {
        let offset = part * onshi_api::BATCH_ENTRIES_MAX;
        let batch = BatchVerifyRequest {
            institution_code: Some(manifest.institution_code.clone()),
            entries: cases.iter().map(|c| c.request.clone()).collect(),
        };
        let outcome = match institution.verify_batch(&batch).await {
            Ok(response) if response.results.len() != cases.len() => {
                Err(format!("{} results for {} entries", response.results.len(), cases.len()))
            }
            Ok(response) => {
                let differ: Vec<&str> = response
                    .results
                    .iter()
                    .zip(&answers[offset..offset + cases.len()])
                    .zip(cases)
                    .filter(|((r, single), _)| r.answer.as_ref().map(comparable) != single.as_ref().map(comparable))
                    .map(|(_, case)| case.case.as_str())
                    .collect();
                if differ.is_empty() { Ok(()) } else { Err(format!("batch answers differ from single answers for {differ:?}")) }
            }
            Err(e) => Err(format!("batch failed: {e}")),
        };
        report.record("batch_matches_singles", outcome);
    }
    for (name, body, status, code) in malformed_requests(manifest) {
        let outcome = match institution.post_raw("/v1/verify/number", "application/json", body.into_bytes()).await {
            Ok((got, text)) if got == status && (code.is_empty() || text.contains(&format!("\"code\":\"{code}\""))) => Ok(()),
            Ok((got, text)) => Err(format!("{name}: status {got} body {text} (expected {status} {code})")),
            Err(e) => Err(format!("{name}: {e}")),
        };
        report.record("malformed_input", outcome);
    }
    let outcome = match anonymous.verify_number(&chosen[0].request).await {
        Err(ClientError::Refused { status: 401, body }) if body.error.code == "CLIENT_CERTIFICATE_REQUIRED" => Ok(()),
        other => Err(format!("a client without a certificate got {other:?}")),
    };
    report.record("no_client_certificate", outcome);
    report
}
