use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use onshi_api::events::ImportReport;
use onshi_center::import::{BATCH_EVENTS_DEFAULT, ImportOptions, import_jsonl_into};
use onshi_center::server::{CenterState, RunningCenter, serve_with_revocation, system_clock};
use onshi_domain::ids::{InstitutionCode, InsurerNumber};
use onshi_pki::{CenterCa, DEFAULT_VALIDITY_DAYS};
use onshi_store::cards::CardRegistry;
use onshi_store::medical::MedicalStore;
use onshi_store::postgres::PgRegister;
use onshi_store::sqlite::{SqliteOptions, SqliteRegister};
use onshi_store::subsidy::SubsidyStore;
use onshi_store::{Direct, EventSink, Register};

use crate::progress::Progress;

#[derive(clap::Subcommand, Debug)]
pub enum CenterCommand {
    /// Import insurer event files (JSON Lines) into the register.
    Import {
        /// The register: a SQLite file (created if missing) or a PostgreSQL database
        /// (`postgres://user@host:port/dbname`).
        #[arg(long, default_value = "onshi-center.sqlite")]
        db: PathBuf,
        /// Events per transaction.
        #[arg(long, default_value_t = BATCH_EVENTS_DEFAULT)]
        batch: usize,
        /// Event files, imported in the order given.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import medical information (dispensed drugs, 特定健診 results; JSON Lines) for persons
    /// already in the register.
    ImportMedical {
        #[arg(long, default_value = "onshi-center.sqlite")]
        db: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import 公費 payers' recipient events (JSON Lines, as `onshi synth` writes them under
    /// subsidies/) on the operator's side; a payer uploads its own with `onshi payer upload`.
    ImportSubsidies {
        #[arg(long, default_value = "onshi-center.sqlite")]
        db: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Serve the center API over HTTPS with mutual TLS.
    Serve {
        /// The register: a SQLite file or a PostgreSQL database (`postgres://…`).
        #[arg(long, default_value = "onshi-center.sqlite")]
        db: PathBuf,
        /// The PKI directory made by `onshi center pki init`.
        #[arg(long, default_value = "onshi-pki")]
        pki: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// The card CA directory (`onshi jpki`): enables the マイナ保険証 path; a newly
        /// published crl.pem there takes effect on the next card request.
        #[arg(long)]
        jpki: Option<PathBuf>,
        /// Requests per second each institution or insurer certificate may sustain (bursts of
        /// twice that); more are answered 429 with Retry-After. 0 turns the limit off.
        #[arg(long, default_value_t = onshi_center::rate::DEFAULT_PER_SECOND)]
        rate_limit: u32,
        /// Searches by attributes (for claims billed as 不詳) each institution may make per
        /// day (Japan time); more are answered 429 ATTRIBUTE_QUOTA_EXCEEDED.
        #[arg(long, default_value_t = onshi_center::attributes::ATTRIBUTE_SEARCHES_PER_DAY)]
        attribute_searches_per_day: u32,
        /// By-numbers 受給者証 questions answered not_registered each institution may have per
        /// day; then its questions are answered 429 SUBSIDY_MISSES_EXCEEDED until tomorrow.
        #[arg(long, default_value_t = onshi_center::subsidy::SUBSIDY_MISSES_PER_DAY)]
        subsidy_misses_per_day: u32,
        /// The audit log file (default: beside a SQLite register, `X.audit.sqlite`; for a
        /// register on PostgreSQL, onshi-center.audit.sqlite here).
        #[arg(long)]
        audit: Option<PathBuf>,
        /// A streaming replica of the PostgreSQL register for verification reads
        /// (`postgres://…`); answers read there carry `replica_as_of`.
        #[arg(long)]
        read_db: Option<String>,
        /// Keep the card view of a register of at most this many persons in memory (about
        /// 0.86 kB each; on SQLite exactly in step with every commit, on PostgreSQL only with
        /// --card-index-on-postgres); given up if the register outgrows it; 0 turns it off.
        #[arg(long, default_value_t = onshi_store::card_index::DEFAULT_MAX_PERSONS)]
        card_index_max_persons: u64,
        /// For a register on PostgreSQL, keep the card index too: a copy that follows the
        /// register every 50 ms; its answers carry `replica_as_of` (every change up to then is
        /// in them), as a replica's do. Not with --read-db.
        #[arg(long)]
        card_index_on_postgres: bool,
    },
    /// Certificates: the center CA, institution and insurer certificates.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// A local PostgreSQL cluster for a trial of the center on PostgreSQL, made and run with the
    /// server binaries on this machine.
    Pg {
        #[command(subcommand)]
        command: PgCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum PgCommand {
    /// Make a cluster in DIR, start it, and print the `--db` value for `onshi center serve` and
    /// `onshi center import`. It listens on 127.0.0.1 only; every connection proves a password
    /// made for it (in DIR/password, readable by its owner only).
    Init {
        dir: PathBuf,
        /// TCP port (a free one when not given).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Start a cluster made by `init` again.
    Start { dir: PathBuf },
    /// Stop it (a clean shutdown).
    Stop { dir: PathBuf },
}

#[derive(clap::Subcommand, Debug)]
pub enum PkiCommand {
    /// Create the center CA and the server certificate.
    Init {
        #[arg(long, default_value = "onshi-pki")]
        dir: PathBuf,
        /// Host names and IP addresses the server certificate is for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
    },
    /// Issue a certificate to a medical institution; the code is written into it.
    IssueInstitution {
        #[arg(long, default_value = "onshi-pki")]
        dir: PathBuf,
        /// The 10-digit 医療機関コード.
        #[arg(long)]
        code: String,
        #[arg(long, default_value = "clinic")]
        name: String,
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
        days: u32,
    },
    /// Revoke an institution's or insurer's certificates (a stolen or lost key, a closed
    /// clinic) and publish a new signed CRL (crl.pem); the running center refuses them from
    /// its next connection, without a restart. Issue a new certificate afterwards as usual.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["code", "insurer", "serial"])))]
    Revoke {
        #[arg(long, default_value = "onshi-pki")]
        dir: PathBuf,
        /// Every certificate issued to this 医療機関コード.
        #[arg(long)]
        code: Option<String>,
        /// Every certificate issued to this 保険者番号.
        #[arg(long)]
        insurer: Option<String>,
        /// One certificate by its serial number (hex).
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, value_enum, default_value_t = RevokeReasonArg::KeyCompromise)]
        reason: RevokeReasonArg,
        /// Days until the CRL's next update.
        #[arg(long, default_value_t = onshi_pki::revocation::CRL_NEXT_UPDATE_DAYS)]
        next_update_days: u32,
    },
    /// Publish the center CRL again (before its next update passes), with a new number.
    Crl {
        #[arg(long, default_value = "onshi-pki")]
        dir: PathBuf,
        #[arg(long, default_value_t = onshi_pki::revocation::CRL_NEXT_UPDATE_DAYS)]
        next_update_days: u32,
    },
    /// Issue a certificate to one of the center's operators: it opens the operator's
    /// dashboard (/dashboard) from any host, and nothing of the API.
    IssueOperator {
        #[arg(long, default_value = "onshi-pki")]
        dir: PathBuf,
        /// The operator's name (a-z, 0-9, -).
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
        days: u32,
    },
    /// Issue a certificate to a 公費 payer (公費負担者), which may then register recipients for
    /// its own number only.
    IssuePayer {
        #[arg(long, default_value = "onshi-pki")]
        dir: PathBuf,
        /// The 公費負担者番号 (8 digits with its check digit).
        #[arg(long)]
        number: String,
        #[arg(long, default_value = "payer")]
        name: String,
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
        days: u32,
    },
    /// Issue a certificate to an insurer, which may then upload events for its own number.
    IssueInsurer {
        #[arg(long, default_value = "onshi-pki")]
        dir: PathBuf,
        /// The 保険者番号.
        #[arg(long)]
        number: String,
        #[arg(long, default_value = "insurer")]
        name: String,
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
        days: u32,
    },
}

/// Why a certificate is revoked, as typed on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RevokeReasonArg {
    /// The key was stolen or may have been copied.
    KeyCompromise,
    /// Replaced by a new certificate.
    Superseded,
    /// The institution closed or the insurer merged.
    CessationOfOperation,
    Unspecified,
}

impl From<RevokeReasonArg> for onshi_pki::revocation::CenterRevokeReason {
    fn from(reason: RevokeReasonArg) -> Self {
        use onshi_pki::revocation::CenterRevokeReason as R;
        match reason {
            RevokeReasonArg::KeyCompromise => R::KeyCompromise,
            RevokeReasonArg::Superseded => R::Superseded,
            RevokeReasonArg::CessationOfOperation => R::CessationOfOperation,
            RevokeReasonArg::Unspecified => R::Unspecified,
        }
    }
}

/// Where the register is: a SQLite file (the default), or a PostgreSQL database named by a
/// `postgres://` URL or a libpq `host=… dbname=…` string in `--db`.
pub fn postgres_url(db: &Path) -> Option<&str> {
    let text = db.to_str()?;
    (text.starts_with("postgres://") || text.starts_with("postgresql://") || text.contains("dbname=") || text.starts_with("host="))
        .then_some(text)
}

/// The register's three faces, from one engine.
pub struct Stores {
    pub register: Arc<dyn Register>,
    pub cards: Arc<dyn CardRegistry>,
    pub medical: Arc<dyn MedicalStore>,
    pub subsidies: Arc<dyn SubsidyStore>,
    pub home: Arc<dyn onshi_store::home::HomeCareStore>,
}

fn stores<T: Register + CardRegistry + MedicalStore + SubsidyStore + onshi_store::home::HomeCareStore + 'static>(engine: Arc<T>) -> Stores {
    Stores { register: engine.clone(), cards: engine.clone(), medical: engine.clone(), subsidies: engine.clone(), home: engine }
}

/// Opens the register `db` names, on its engine; `options` tunes SQLite.
pub fn open_stores(db: &Path, options: SqliteOptions) -> anyhow::Result<Stores> {
    open_stores_reading(db, None, options)
}

/// As [`open_stores`], with verification reads from the read replica `read_db` (PostgreSQL).
pub fn open_stores_reading(db: &Path, read_db: Option<&str>, options: SqliteOptions) -> anyhow::Result<Stores> {
    Ok(match (postgres_url(db), read_db) {
        (Some(url), None) => stores(Arc::new(PgRegister::open(url).context("cannot open the register on PostgreSQL")?)),
        (Some(url), Some(replica)) => stores(Arc::new(
            PgRegister::open_with_replica(url, replica).context("cannot open the register on PostgreSQL with its read replica")?,
        )),
        (None, Some(_)) => anyhow::bail!("--read-db names a PostgreSQL replica; a SQLite register (--db a file) has none"),
        (None, None) => {
            stores(Arc::new(SqliteRegister::open(db, options).with_context(|| format!("cannot open the register {}", db.display()))?))
        }
    })
}

/// Totals of an import of several files.
#[derive(Debug, Default)]
pub struct ImportTotals {
    pub applied: u64,
    pub already_applied: u64,
    pub rejected: u64,
    pub lines: u64,
    pub seconds: f64,
}

fn now() -> onshi_domain::Timestamp {
    (system_clock())()
}

/// Imports files one after another with a progress bar over all their bytes; prints a summary
/// and the refused lines.
pub fn import_files(register: &dyn Register, files: &[PathBuf], batch: usize) -> anyhow::Result<ImportTotals> {
    let started = Instant::now();
    let total_bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    let mut progress = Progress::new("import", "bytes", Some(total_bytes));
    let mut totals = ImportTotals::default();
    let mut done_bytes = 0u64;
    let mut reports: Vec<(PathBuf, ImportReport)> = Vec::new();
    // An empty register (or one whose load was interrupted) is loaded with its secondary
    // indexes built once at the end; any other imports batch by batch.
    // Every file opened before a load starts: a wrong path must not leave a load begun.
    let mut opened = Vec::with_capacity(files.len());
    for path in files {
        opened.push(File::open(path).with_context(|| format!("cannot open {}", path.display()))?);
    }
    let mut load = register.begin_load().context("cannot start the import")?;
    if load.is_some() {
        eprintln!("import: the register is empty (or its first load was interrupted): loading, the card-number indexes built at the end");
    }
    let mut direct = Direct(register);
    for (path, file) in files.iter().zip(opened) {
        let options = ImportOptions { batch_events: batch, only_insurer: None, registered_at: now() };
        let base = done_bytes;
        let sink: &mut dyn EventSink = match load.as_mut() {
            Some(load) => load.as_mut(),
            None => &mut direct,
        };
        let report = import_jsonl_into(sink, BufReader::with_capacity(1 << 20, file), &options, |p| progress.set(base + p.bytes_read))
            .with_context(|| format!("import of {} stopped; what was committed stays, re-run to continue", path.display()))?;
        done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        totals.applied += report.applied;
        totals.already_applied += report.already_applied;
        totals.rejected += report.rejected_total;
        totals.lines += report.lines;
        reports.push((path.clone(), report));
    }
    progress.finish();
    if let Some(load) = load {
        let building = Instant::now();
        eprintln!("import: building the register's indexes…");
        load.finish().context("the import stopped before its end (its last batch or the indexes); what was committed stays: run the import again to finish it")?;
        eprintln!("import: indexes built in {:.1} s", building.elapsed().as_secs_f64());
    }
    totals.seconds = started.elapsed().as_secs_f64();
    for (path, report) in &reports {
        eprintln!(
            "{}: {} lines, {} applied, {} already applied, {} refused",
            path.display(),
            report.lines,
            report.applied,
            report.already_applied,
            report.rejected_total
        );
        for rejected in report.rejected.iter().take(20) {
            eprintln!("  {}:{}: {}: {}", path.display(), rejected.line, rejected.field, rejected.reason);
        }
        if report.rejected_total > 20 {
            eprintln!("  … and {} more refused lines", report.rejected_total - 20);
        }
    }
    eprintln!(
        "import: {} applied, {} already applied, {} refused in {:.1} s ({:.0} events/s)",
        totals.applied,
        totals.already_applied,
        totals.rejected,
        totals.seconds,
        (totals.applied + totals.already_applied) as f64 / totals.seconds.max(1e-9)
    );
    Ok(totals)
}

/// An import report as operators read it: the totals (`words` name what was applied and what
/// was there already), then each refused line with its field and reason.
pub(crate) fn report_text(file: &Path, report: &onshi_api::events::ImportReport, words: (&str, &str)) -> String {
    let mut text = format!(
        "{}: {} lines, {} {}, {} {}, {} refused\n",
        file.display(),
        report.lines,
        report.applied,
        words.0,
        report.already_applied,
        words.1,
        report.rejected_total
    );
    for line in &report.rejected {
        text.push_str(&format!("  line {}: {}: {}\n", line.line, line.field, line.reason));
    }
    text
}

/// Imports 公費 payers' event files; prints a summary and the refused lines. Returns how many
/// lines were refused.
pub fn import_subsidy_files(subsidies: &dyn SubsidyStore, files: &[PathBuf]) -> anyhow::Result<u64> {
    let mut refused = 0;
    for file in files {
        let input = BufReader::new(File::open(file).with_context(|| format!("cannot open {}", file.display()))?);
        let report = onshi_center::subsidy::import_subsidy_jsonl(subsidies, input, None, onshi_pki::now())?;
        eprint!("{}", report_text(file, &report, ("applied", "already applied")));
        refused += report.rejected_total;
    }
    Ok(refused)
}

/// Imports medical-information files with progress; prints a summary and the refused lines.
/// Returns how many lines were refused.
pub fn import_medical_files(register: &dyn MedicalStore, files: &[PathBuf]) -> anyhow::Result<u64> {
    let mut refused = 0;
    for file in files {
        let input = BufReader::new(File::open(file).with_context(|| format!("cannot open {}", file.display()))?);
        let mut progress = crate::progress::Progress::new("medical", "lines", None);
        let report = onshi_center::medical::import_medical(register, input, |line| progress.set(line))?;
        progress.finish();
        eprint!("{}", report_text(file, &report, ("added", "already present")));
        refused += report.rejected_total;
    }
    Ok(refused)
}

/// The audit log beside the register (`X.sqlite` → `X.audit.sqlite`). A register on
/// PostgreSQL keeps its audit log in the same database; this path then only names where the
/// process exports the chain's head (`onshi-center.audit.checkpoint` in the working directory).
pub fn audit_path(db: &Path) -> PathBuf {
    if postgres_url(db).is_some() {
        return PathBuf::from("onshi-center.audit.sqlite");
    }
    db.with_extension("audit.sqlite")
}

/// The audit key in the PKI directory. Made on first use only when there is no audit log
/// yet: a log without its key could not be verified, and a new key would silently start a
/// second chain that hides the first (restore the key from the backup instead).
pub fn audit_key(pki: &Path, audit: &Path) -> anyhow::Result<Vec<u8>> {
    let path = pki.join("audit.key");
    if !path.exists() {
        anyhow::ensure!(
            !audit.exists(),
            "the audit log {} exists but its key {} does not: restore audit.key from the backup of the PKI directory; \
             a new key would make every existing entry unverifiable",
            audit.display(),
            path.display()
        );
        let key = onshi_pki::random_hex(32)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&path).with_context(|| format!("cannot create {}", path.display()))?, key.as_bytes())?;
    }
    read_audit_key(&path)
}

pub(crate) fn read_audit_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let key = std::fs::read_to_string(path).with_context(|| format!("cannot read the audit key {}", path.display()))?;
    anyhow::ensure!(key.trim().len() >= 64, "{} is not an audit key (64 hex digits); restore it from the backup", path.display());
    Ok(key.trim().as_bytes().to_vec())
}

pub fn open_audit(audit: &Path, pki: &Path) -> anyhow::Result<onshi_store::audit::AuditLog> {
    onshi_store::audit::AuditLog::open(audit, &audit_key(pki, audit)?)
        .with_context(|| format!("cannot open the audit log {}", audit.display()))
}

/// Opens the audit log to check it: read-only, with the existing key only.
pub fn open_audit_to_verify(path: &Path, pki: &Path) -> anyhow::Result<onshi_store::audit::AuditLog> {
    let key = read_audit_key(&pki.join("audit.key"))?;
    onshi_store::audit::AuditLog::open_read_only(path, &key).with_context(|| format!("cannot open the audit log {}", path.display()))
}

/// What a center process lets each caller do.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests per second per certified caller (0: no limit).
    pub rate_per_second: u32,
    /// Searches by attributes per institution per day.
    pub attribute_searches_per_day: u32,
    /// By-numbers 受給者証 questions answered not_registered per institution per day.
    pub subsidy_misses_per_day: u32,
    /// The largest register whose card view is kept in memory (0: none).
    pub card_index_max_persons: u64,
    /// Keep it for a register on PostgreSQL too (a copy that follows by polling, whose answers
    /// carry `replica_as_of`).
    pub card_index_on_postgres: bool,
}

/// Loads the card index beside the serving center (reads go to the register until it is
/// built) and says what became of it.
fn build_card_index(register: &Arc<dyn Register>, max_persons: u64) {
    use onshi_store::card_index::CardIndexStatus;
    if max_persons == 0 {
        return;
    }
    let register = register.clone();
    let spawned = std::thread::Builder::new().name("card-index".into()).spawn(move || {
        let started = Instant::now();
        match register.build_card_index(max_persons) {
            Ok(CardIndexStatus::Built { persons }) => eprintln!(
                "card index: {persons} persons' coverages in memory after {:.1} s; card views are answered from it",
                started.elapsed().as_secs_f64()
            ),
            Ok(CardIndexStatus::TooLarge { persons, max_persons }) => eprintln!(
                "card index: not kept, the register holds {persons} persons (--card-index-max-persons {max_persons}); card views are read from the register"
            ),
            Ok(CardIndexStatus::Unsupported) => {}
            Err(e) => eprintln!("card index: not built ({e}); card views are read from the register"),
        }
    });
    if let Err(e) = spawned {
        eprintln!("card index: not built (no thread: {e}); card views are read from the register");
    }
}

pub async fn start_center(
    db: &Path,
    read_db: Option<&str>,
    audit: &Path,
    pki: &Path,
    jpki: Option<&Path>,
    listen: SocketAddr,
    limits: Limits,
) -> anyhow::Result<RunningCenter> {
    let Stores { register, cards, medical, subsidies, home } = open_stores_reading(db, read_db, SqliteOptions::SERVER)?;
    if let Some(started) = register.unfinished_load().context("cannot read the register's state")? {
        eprintln!(
            "warning: the register's first load (started {started}) has not finished: insurers' uploads are refused and verifications are slow until `onshi center import` is run again with its files to finish it"
        );
        tracing::warn!(started = %started, "the register's first load has not finished");
    }
    if postgres_url(db).is_none() || limits.card_index_on_postgres {
        build_card_index(&register, limits.card_index_max_persons);
    }
    let card = onshi_center::card::CardPath::new(cards, jpki)?;
    let audit = match postgres_url(db) {
        // One chain for every center process on the cluster; this process's checkpoint file is
        // where --audit points.
        Some(url) => {
            let checkpoint = onshi_store::audit::checkpoint_path(audit);
            // The chain is in the database, not beside this process: ask it whether it has
            // entries before a missing key is made anew (a new key would leave them unverifiable).
            if !pki.join("audit.key").exists() {
                let probe = onshi_store::postgres::audit::PgAuditLog::open(url, &checkpoint, b"the head is read without the key")
                    .context("cannot open the audit log in PostgreSQL")?;
                anyhow::ensure!(
                    probe.head().0 == 0,
                    "the audit log in PostgreSQL has {} entries but the key {} does not exist: restore audit.key from the backup of the PKI directory; \
                     a new key would make every existing entry unverifiable",
                    probe.head().0,
                    pki.join("audit.key").display()
                );
            }
            let key = audit_key(pki, &checkpoint)?;
            onshi_center::audit::AuditSink::start_postgres(
                onshi_store::postgres::audit::PgAuditLog::open(url, &checkpoint, &key)
                    .context("cannot open the audit log in PostgreSQL")?,
                onshi_store::postgres::audit::PgAuditReader::new(url),
            )
        }
        None => onshi_center::audit::AuditSink::start(open_audit(audit, pki)?),
    };
    let read = |name: &str| {
        let path = pki.join(name);
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}; run `onshi center pki init --dir {}`", path.display(), pki.display()))
    };
    // The center CRL (`onshi center pki revoke`) is read now and looked at again before each
    // handshake; an invalid one stops the start here.
    let crl = pki.join(onshi_pki::revocation::CRL_FILE);
    let revocation = Arc::new(
        onshi_pki::revocation::RevocationVerifier::new(&read("ca.pem")?, Some(&crl))
            .with_context(|| format!("cannot use the center CRL {}; publish it again with `onshi center pki revoke`", crl.display()))?,
    );
    let tls = onshi_pki::tls_config_with_verifier(revocation.clone(), &read("server.pem")?, &read("server.key")?)?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let state = Arc::new(CenterState {
        card,
        audit,
        medical,
        subsidies,
        home,
        register,
        lags: Default::default(),
        metrics: Default::default(),
        clock: system_clock(),
        started: Instant::now(),
        rate: onshi_center::rate::RateLimiter::new(limits.rate_per_second),
        patient_rate: onshi_center::rate::RateLimiter::new(onshi_center::server::PATIENT_REQUESTS_PER_SECOND),
        attribute_quota: onshi_center::rate::DailyQuota::new(limits.attribute_searches_per_day),
        subsidy_misses: onshi_center::rate::DailyQuota::new(limits.subsidy_misses_per_day),
        dashboard: Default::default(),
    });
    Ok(serve_with_revocation(listener, tls, Some(revocation), state)?)
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM (what service managers send to stop).
pub(crate) async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

pub fn run(command: CenterCommand) -> anyhow::Result<ExitCode> {
    match command {
        CenterCommand::Import { db, batch, files } => {
            anyhow::ensure!(batch > 0, "--batch must be at least 1");
            let stores = open_stores(&db, SqliteOptions::IMPORT)?;
            let totals = import_files(stores.register.as_ref(), &files, batch)?;
            // Some lines refused: the good ones are in; say so in the exit code for pipelines.
            Ok(if totals.rejected > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        CenterCommand::ImportSubsidies { db, files } => {
            let stores = open_stores(&db, SqliteOptions::IMPORT)?;
            let refused = import_subsidy_files(stores.subsidies.as_ref(), &files)?;
            Ok(if refused > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        CenterCommand::ImportMedical { db, files } => {
            let stores = open_stores(&db, SqliteOptions::IMPORT)?;
            let refused = import_medical_files(stores.medical.as_ref(), &files)?;
            Ok(if refused > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        CenterCommand::Serve {
            db,
            pki,
            listen,
            jpki,
            rate_limit,
            attribute_searches_per_day,
            subsidy_misses_per_day,
            audit,
            read_db,
            card_index_max_persons,
            card_index_on_postgres,
        } => {
            anyhow::ensure!(
                !(card_index_on_postgres && read_db.is_some()),
                "--card-index-on-postgres and --read-db: choose one (each answers from a copy that says how old it is)"
            );
            let limits = Limits {
                rate_per_second: rate_limit,
                attribute_searches_per_day,
                subsidy_misses_per_day,
                card_index_max_persons,
                card_index_on_postgres,
            };
            let audit = audit.unwrap_or_else(|| audit_path(&db));
            let runtime = crate::runtime()?;
            let stopped = runtime.block_on(async {
                let center = start_center(&db, read_db.as_deref(), &audit, &pki, jpki.as_deref(), listen, limits).await?;
                eprintln!("onshi center listening on https://{} (Ctrl-C or SIGTERM to stop)", center.addr);
                println!("listening {}", center.addr);
                stop_signal().await?;
                eprintln!("stopping: finishing the requests in flight, then committing the audit log");
                Ok::<_, anyhow::Error>(center.shutdown().await)
            })?;
            anyhow::ensure!(stopped.audit_flushed, "the audit log could not commit everything queued before the stop; see the log above");
            eprintln!(
                "stopped{}",
                if stopped.drained { "" } else { " (some connections were still busy after the drain timeout and were cut)" }
            );
            Ok(ExitCode::SUCCESS)
        }
        CenterCommand::Pki { command } => pki(command),
        CenterCommand::Pg { command } => pg(command),
    }
}

fn pg(command: PgCommand) -> anyhow::Result<ExitCode> {
    use onshi_store::postgres::cluster::{Binaries, Cluster, free_port};
    let binaries = Binaries::find()?;
    match command {
        PgCommand::Init { dir, port } => {
            anyhow::ensure!(!dir.join("data").exists(), "{} already holds a cluster; start it with `onshi center pg start`", dir.display());
            let port = match port {
                Some(port) => port,
                None => free_port()?,
            };
            let mut cluster = Cluster::init(&dir, &binaries, port)?;
            cluster.start()?;
            println!("PostgreSQL {} running in {} on 127.0.0.1:{port}", binaries.version()?, dir.display());
            println!(
                "--db 'postgres://{}:{}@127.0.0.1:{port}/{}'   (the password is in {})",
                onshi_store::postgres::cluster::USER,
                cluster.password(),
                onshi_store::postgres::cluster::DATABASE,
                dir.join("password").display()
            );
            cluster.leave_running();
        }
        PgCommand::Start { dir } => {
            let mut cluster = Cluster::existing(&dir, &binaries)?;
            cluster.start()?;
            println!("running on 127.0.0.1:{}", cluster.port());
            cluster.leave_running();
        }
        PgCommand::Stop { dir } => {
            let mut cluster = Cluster::existing(&dir, &binaries)?;
            cluster.mark_running();
            cluster.stop(false)?;
            println!("stopped");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pki(command: PkiCommand) -> anyhow::Result<ExitCode> {
    match command {
        PkiCommand::Init { dir, hosts } => {
            let ca = CenterCa::create(&dir, "onshi center CA")?;
            let server = ca.issue_server(&hosts)?;
            println!("created {} and {}", dir.join("ca.pem").display(), server.cert_path.display());
        }
        PkiCommand::IssueInstitution { dir, code, name, days } => {
            let code = InstitutionCode::parse(&code).map_err(|e| anyhow::anyhow!("--code: the value {e}"))?;
            let issued = CenterCa::load(&dir)?.issue_institution(&code, &name, days)?;
            println!("{}\n{}", issued.cert_path.display(), issued.key_path.display());
        }
        PkiCommand::Revoke { dir, code, insurer, serial, reason, next_update_days } => {
            use onshi_pki::revocation::RevokeTarget;
            let target = match (code, insurer, serial) {
                (Some(code), _, _) => {
                    RevokeTarget::Institution(InstitutionCode::parse(&code).map_err(|e| anyhow::anyhow!("--code: the value {e}"))?)
                }
                (_, Some(number), _) => {
                    RevokeTarget::Insurer(InsurerNumber::parse(&number).map_err(|e| anyhow::anyhow!("--insurer: the value {e}"))?)
                }
                (_, _, Some(serial)) => RevokeTarget::Serial(serial),
                _ => anyhow::bail!("name what to revoke: --code, --insurer or --serial"),
            };
            let revoked = CenterCa::load(&dir)?.revoke(&target, reason.into(), next_update_days)?;
            for serial in &revoked.newly {
                println!("revoked {serial}");
            }
            for serial in &revoked.already {
                println!("already revoked {serial}");
            }
            println!(
                "published {} (CRL number {}, {} revoked, next update {}); the running center refuses these certificates from its next connection",
                revoked.crl.path.display(),
                revoked.crl.number,
                revoked.crl.revoked_count,
                revoked.crl.next_update
            );
        }
        PkiCommand::Crl { dir, next_update_days } => {
            let crl = CenterCa::load(&dir)?.publish_crl(next_update_days)?;
            println!(
                "published {} (CRL number {}, {} revoked, next update {})",
                crl.path.display(),
                crl.number,
                crl.revoked_count,
                crl.next_update
            );
        }
        PkiCommand::IssueOperator { dir, name, days } => {
            let issued = CenterCa::load(&dir)?.issue_operator(&name, days)?;
            println!("{}\n{}", issued.cert_path.display(), issued.key_path.display());
        }
        PkiCommand::IssuePayer { dir, number, name, days } => {
            let number = onshi_domain::ids::PublicPayerNumber::parse(&number).map_err(|e| anyhow::anyhow!("--number: the value {e}"))?;
            let issued = CenterCa::load(&dir)?.issue_payer(&number, &name, days)?;
            println!("{}\n{}", issued.cert_path.display(), issued.key_path.display());
        }
        PkiCommand::IssueInsurer { dir, number, name, days } => {
            let number = InsurerNumber::parse(&number).map_err(|e| anyhow::anyhow!("--number: the value {e}"))?;
            let issued = CenterCa::load(&dir)?.issue_insurer(&number, &name, days)?;
            println!("{}\n{}", issued.cert_path.display(), issued.key_path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
