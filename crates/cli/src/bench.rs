//! `onshi bench`: the reproducible benchmark of docs/PERFORMANCE.md. It generates (or reuses)
//! a population, imports it into a fresh SQLite register (timed), starts the center as a child
//! process, and drives it from this process over real TLS:
//! trivial-endpoint throughput and verify throughput in the same run (their ratio is the
//! budget), latency at half the verify load (open loop, timed from the intended send time so
//! that queueing is not hidden), and the server's peak resident memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use onshi_api::BATCH_ENTRIES_MAX;
use onshi_api::client::{CenterClient, ClientConfig};
use onshi_api::events::{EventKind, InsurerEvent};
use onshi_api::verify::VerifyNumberRequest;
use onshi_pki::CenterCa;
use onshi_store::sqlite::SqliteOptions;
use onshi_synth::SynthOptions;

use crate::center_cmd::import_files;
use crate::synth_cmd::{default_today, synthesize};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Persons in the register.
    #[arg(long, default_value_t = 10_000_000)]
    pub persons: u64,
    #[arg(long, default_value = "onshi-bench")]
    pub dir: PathBuf,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Reuse the register of an earlier run instead of importing again.
    #[arg(long)]
    pub skip_import: bool,
    /// Only the card-verify ratio (trivial, card verifications, trivial again), on the
    /// register of an earlier run: for working on the card path.
    #[arg(long)]
    pub card_only: bool,
    /// Only verify throughput and latency without, then during, a flood of idle and half-open
    /// connections (docs/PERFORMANCE.md, "Under attack"), with the server's CPU per request.
    #[arg(long)]
    pub hostile: bool,
    /// Let the center and the load generator share every core, as before issue 13 (by default
    /// each gets half of them, see `pinning`).
    #[arg(long)]
    pub shared_cores: bool,
    /// Let the load generator sleep while it waits for answers, as before 2026-12-05: the
    /// center then pays for waking it at each answer (see `keep_polling`). By default it polls.
    #[arg(long)]
    pub load_cpus_may_halt: bool,
    /// The register on PostgreSQL instead of `DIR/center.sqlite`: a `postgres://…` database,
    /// empty unless `--skip-import` (issue 14's side-by-side measurement).
    #[arg(long)]
    pub db: Option<String>,
    /// Center processes serving the register, the load generator's connections spread over
    /// them (above 1 only with `--db postgres://…`: a SQLite register has one process).
    #[arg(long, default_value_t = 1)]
    pub centers: usize,
    /// The centers' `--card-index-max-persons` (0: every card view read from the register),
    /// also used by the in-process measurement: the card index on and off in one binary.
    #[arg(long, default_value_t = onshi_store::card_index::DEFAULT_MAX_PERSONS)]
    pub card_index_max_persons: u64,
    /// With `--db postgres://…`: the centers keep the card index too (`onshi center serve
    /// --card-index-on-postgres`).
    #[arg(long)]
    pub card_index_on_postgres: bool,
}

/// `BenchArgs::card_index_max_persons`, for every center this run starts.
static CARD_INDEX_MAX_PERSONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `BenchArgs::card_index_on_postgres`.
static CARD_INDEX_ON_POSTGRES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn card_index_max_persons() -> u64 {
    CARD_INDEX_MAX_PERSONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Distinct verify requests drawn from the population.
const REQUESTS_SAMPLED: usize = 100_000;

fn sample_requests(files: &[PathBuf], persons: u64, today: &str) -> anyhow::Result<Vec<VerifyNumberRequest>> {
    let every = (persons as usize / REQUESTS_SAMPLED).max(1);
    let mut requests = Vec::new();
    for file in files {
        let reader = BufReader::new(std::fs::File::open(file)?);
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if i % every != 0 {
                continue;
            }
            let event: InsurerEvent = serde_json::from_str(&line)?;
            if event.kind != EventKind::Acquire {
                continue;
            }
            let member = event.member.context("acquire without member")?;
            requests.push(VerifyNumberRequest {
                institution_code: None,
                insurer_number: event.insurer_number,
                symbol: event.card.symbol,
                number: event.card.number,
                branch: Some(event.card.branch),
                birth_date: member.birth_date,
                date_of_care: Some(today.to_string()),
                limit_consent: true,
                reverification: false,
                document: None,
            });
        }
    }
    anyhow::ensure!(!requests.is_empty(), "no requests sampled");
    Ok(requests)
}

struct ServerProcess {
    child: Child,
    addr: String,
}

impl Drop for ServerProcess {
    /// Stops the center as an operator would (SIGTERM: it drains, commits its audit log and
    /// exports the chain's head), killing it only if it has not stopped within a minute.
    fn drop(&mut self) {
        // SAFETY: a plain signal to the child this struct owns (it has not been waited for).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the bench places the center and its own load: pinned apart (the default where there
/// are two CPUs or more) or sharing the cores.
fn placement(args: &BenchArgs) -> (Option<crate::pinning::Split>, String) {
    if args.shared_cores {
        return (None, "center and load generator share every core (--shared-cores)".to_string());
    }
    match crate::pinning::split() {
        Ok(split) => {
            let described = split.describe();
            (Some(split), described)
        }
        Err(why) => (None, format!("not pinned: {why}")),
    }
}

/// Pins this thread, and so the load generator's runtime built after it, to the load half.
fn pin_load(split: Option<&crate::pinning::Split>) -> anyhow::Result<()> {
    if let Some(split) = split {
        crate::pinning::pin_current_thread(&split.load).context("pinning the load generator")?;
    }
    Ok(())
}

/// Keeps the load generator's runtime polling instead of sleeping while it waits for answers,
/// until dropped (unless `--load-cpus-may-halt`). Call inside the runtime.
///
/// Why: the loopback delivers an answer in the sender's context, so a load generator asleep in
/// `epoll_wait` is woken by the center, and on a virtual machine waking a thread on another vCPU
/// is an inter-processor interrupt that exits to the host (measured here: about 20 µs of the
/// center's CPU per answer). The trivial endpoint never pays it, because there the generator is
/// the bottleneck and never waits; verifications pay it whenever the center is the bottleneck;
/// a client on another machine never puts it on the center. A task that only yields keeps a
/// worker of the generator busy, so its I/O driver is polled without blocking and nobody sleeps
/// on the sockets to be woken; there is one such task per worker, since an idle worker would
/// take the driver and sleep in it (idle workers steal the spare tasks, so each gets one).
/// Only when the generator has CPUs of its own: on the center's cores the tasks would take the
/// center's CPU. (A spinner at `SCHED_IDLE` priority on the generator's CPU was tried first:
/// the wake-up then still needs an interrupt to preempt it, and cost the same.)
fn keep_polling(args: &BenchArgs, split: Option<&crate::pinning::Split>) -> Option<Polling> {
    (split.is_some() && !args.load_cpus_may_halt).then(Polling::start)
}

/// How the CPU phases' load generator waited, for the reports.
fn waiting_note(args: &BenchArgs, split: Option<&crate::pinning::Split>) -> String {
    match (split, args.load_cpus_may_halt) {
        (None, _) => "the load generator slept while it waited for answers (not on CPUs of its own: polling would take the center's)".into(),
        (Some(_), true) => "the load generator slept while it waited for answers (--load-cpus-may-halt: each answer then pays the center's CPU for waking it)".into(),
        (Some(split), false) => format!(
            "in the phases compared by server CPU and in the latency phases, the load generator polled instead of sleeping while it waited for answers (one polling task per worker of its runtime, on its {} CPU(s); asleep, each answer pays the center's CPU for waking it on another vCPU, a cost no remote client puts on the center; --load-cpus-may-halt measures that way), and its open loops sent each request at its time instead of on tokio's millisecond timer",
            split.load.len()
        ),
    }
}

/// The tasks behind [`keep_polling`], aborted when dropped.
struct Polling(Vec<tokio::task::JoinHandle<()>>);

impl Polling {
    /// One yielding task per worker of the current runtime; call inside it.
    fn start() -> Polling {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let spin = || {
            tokio::spawn(async {
                loop {
                    tokio::task::yield_now().await;
                }
            })
        };
        Polling((0..workers).map(|_| spin()).collect())
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn start_server(db: &Path, pki: &Path, jpki: &Path, split: Option<&crate::pinning::Split>) -> anyhow::Result<ServerProcess> {
    start_server_logging(db, pki, jpki, split, &pki.with_file_name("center.audit.sqlite"))
}

/// As [`start_server`], with the audit log (or, on PostgreSQL, its checkpoint) at `audit`.
fn start_server_logging(
    db: &Path,
    pki: &Path,
    jpki: &Path,
    split: Option<&crate::pinning::Split>,
    audit: &Path,
) -> anyhow::Result<ServerProcess> {
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(split) = split {
        use std::os::unix::process::CommandExt;
        let cpus = split.server.clone();
        // SAFETY: runs in the child between fork and exec and only makes the affinity syscall.
        unsafe { command.pre_exec(move || crate::pinning::pin_current_thread(&cpus)) };
    }
    let mut child = command
        .args(["center", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .arg("--audit")
        .arg(audit)
        .arg("--pki")
        .arg(pki)
        .arg("--jpki")
        .arg(jpki)
        // The bench measures capacity from one certificate: the per-caller limit is off.
        .args(["--rate-limit", "0"])
        .arg("--card-index-max-persons")
        .arg(card_index_max_persons().to_string())
        .args(CARD_INDEX_ON_POSTGRES.load(std::sync::atomic::Ordering::Relaxed).then_some("--card-index-on-postgres"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line.trim().strip_prefix("listening ").context("the server did not report its address")?.to_string();
    Ok(ServerProcess { child, addr })
}

/// Microseconds per verification called in-process on one thread, with no HTTP or TLS: how
/// much of a verification's cost is the register and the answer itself.
fn in_process_verify_us(db: &Path, bodies: &[Vec<u8>]) -> anyhow::Result<f64> {
    use onshi_center::verify::{LagCache, parse_request, verify_number};
    let stores = crate::center_cmd::open_stores(db, SqliteOptions::SERVER)?;
    let register = stores.register.as_ref();
    if crate::center_cmd::postgres_url(db).is_none() || CARD_INDEX_ON_POSTGRES.load(std::sync::atomic::Ordering::Relaxed) {
        register.build_card_index(card_index_max_persons())?;
    }
    let lags = LagCache::default();
    let now = onshi_domain::Timestamp::parse("20261125100000").expect("constant");
    let requests: Vec<VerifyNumberRequest> = bodies.iter().map(|b| serde_json::from_slice(b)).collect::<Result<_, _>>()?;
    let rounds = requests.len().min(50_000);
    // Warm the page cache and the statement cache first, then time.
    for request in requests.iter().take(rounds) {
        let query = parse_request(request, now.date()).map_err(|e| anyhow::anyhow!(e.body.detail))?;
        verify_number(register, &lags, &query, now).map_err(|e| anyhow::anyhow!(e.body.detail))?;
    }
    let started = Instant::now();
    let mut bytes = 0usize;
    for request in requests.iter().take(rounds) {
        let query = parse_request(request, now.date()).map_err(|e| anyhow::anyhow!(e.body.detail))?;
        let answer = verify_number(register, &lags, &query, now).map_err(|e| anyhow::anyhow!(e.body.detail))?;
        bytes += serde_json::to_vec(&answer)?.len();
    }
    let per_call = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    eprintln!("bench: in-process verify {per_call:.1} µs per call, answers {} bytes on average", bytes / rounds);
    Ok(per_call)
}

/// This thread's CPU time so far, in seconds (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// Records in the in-process audit measurement, and how many per group commit.
const AUDIT_RECORDS: usize = 200_000;
const AUDIT_GROUP: usize = 256;

/// CPU per audit record, a lower bound of what the center's audit threads spend, in-process: verification
/// records about `persons` random persons appended to a fresh log in group commits of
/// [`AUDIT_GROUP`], the person index and the tallies brought up every 40,000 records (about a
/// second of verifications at full load, as the writer does each second), and the write-ahead
/// log checkpointed into the file once at the end (the center checkpoints about every second,
/// copying pages rewritten since more than once). This thread's CPU time, µs per record: part
/// of the floor of a verification, which no answer may skip.
fn audit_record_us(dir: &Path, persons: u64) -> anyhow::Result<f64> {
    let scratch = dir.join("audit-floor");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let mut log = onshi_store::audit::AuditLog::open(&scratch.join("audit.sqlite"), &[7u8; 32])?;
    let at = onshi_domain::Timestamp::parse("20261125100000").expect("constant");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let started = thread_cpu_seconds();
    for group in 0..AUDIT_RECORDS / AUDIT_GROUP {
        let records: Vec<onshi_store::audit::AuditRecord> = (0..AUDIT_GROUP)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                onshi_store::audit::AuditRecord {
                    at,
                    actor: "1311234563".into(),
                    action: "verify_number".into(),
                    person_id: Some(((state >> 33) % persons.max(1)) as i64),
                    object: "06139999".into(),
                    code: "1".into(),
                }
            })
            .collect();
        log.append(&records)?;
        if (group + 1) * AUDIT_GROUP % 40_000 < AUDIT_GROUP {
            log.index_persons()?;
        }
    }
    log.index_persons()?;
    // Every page the records wrote to the write-ahead log is copied into the file once (by the
    // center's checkpointer, or by the writer when the WAL outgrows its bound): counted here.
    anyhow::ensure!(log.truncate_wal()?, "the scratch audit log's WAL could not be checkpointed");
    let per_record = (thread_cpu_seconds() - started) * 1e6 / AUDIT_RECORDS as f64;
    drop(log);
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("bench: one audit record {per_record:.2} µs of the audit threads' CPU (in-process)");
    Ok(per_record)
}

/// Waits until the center that `client` reaches reports its card index loaded (`/metrics`), for at
/// most a minute plus a second per 20,000 persons; says so if it never is.
async fn wait_for_card_index(client: &CenterClient, persons: u64) {
    let started = Instant::now();
    let deadline = std::time::Duration::from_secs(60 + persons / 20_000);
    loop {
        let loaded = match client.get_raw("/metrics").await {
            Ok((200, text)) => text
                .lines()
                .find_map(|line| line.strip_prefix("onshi_card_index_persons "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0),
            _ => false,
        };
        if loaded {
            eprintln!("bench: card index loaded after {:.1} s", started.elapsed().as_secs_f64());
            return;
        }
        if started.elapsed() > deadline {
            eprintln!("bench: the card index was not loaded in {} s; measuring without it", deadline.as_secs());
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Seconds for one batch call of the largest size, median of three, each with different members.
async fn batch_timing(client: &CenterClient, bodies: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for round in 0..3 {
        let entries: Vec<VerifyNumberRequest> = bodies
            .iter()
            .cycle()
            .skip(round * BATCH_ENTRIES_MAX)
            .take(BATCH_ENTRIES_MAX)
            .map(|b| serde_json::from_slice(b))
            .collect::<Result<_, _>>()?;
        let body = serde_json::to_vec(&onshi_api::verify::BatchVerifyRequest { institution_code: None, entries })?;
        let started = Instant::now();
        let (status, _) = client.post_raw("/v1/verify/number/batch", "application/json", body).await?;
        anyhow::ensure!(status == 200, "batch answered {status}");
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// Claims in the receipt pre-check measurement (a large clinic's month).
const RECEIPT_CLAIMS: usize = 10_000;

/// Seconds to check a claim file of [`RECEIPT_CLAIMS`] claims, median of three: read the file,
/// ask the center (both phases), classify and render the CSV report. One claim in ten leaves
/// out its 枝番, as many receipt computers still do.
async fn receipt_timing(
    client: &CenterClient,
    institution: &onshi_domain::ids::InstitutionCode,
    bodies: &[Vec<u8>],
    today: onshi_domain::Date,
) -> anyhow::Result<f64> {
    use onshi_receipt::sample::{ClaimSpec, claim_file};
    use onshi_receipt::uke::{self, YearMonth};
    let treatment_month = YearMonth::from_date(today.first_of_month().add_days(-1));
    let mut claims = Vec::with_capacity(RECEIPT_CLAIMS);
    for (i, body) in bodies.iter().cycle().take(RECEIPT_CLAIMS).enumerate() {
        let request: VerifyNumberRequest = serde_json::from_slice(body)?;
        claims.push(ClaimSpec {
            insurer: request.insurer_number,
            symbol: request.symbol.unwrap_or_default(),
            number: request.number,
            branch: request.branch.filter(|_| i % 10 != 0),
            birth_date: onshi_domain::Date::parse_yyyymmdd(&request.birth_date).map_err(|e| anyhow::anyhow!("{e}"))?,
            sex: "1".into(),
            care_days: vec![5, 20],
            points: 300,
            name: None,
        });
    }
    let bytes = claim_file(institution, treatment_month, &claims);
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let file = uke::read(&bytes)?;
        let assessments = crate::receipt_cmd::assess_all(client, &file, today, &[]).await?;
        let report =
            onshi_receipt::report::Report { source: "bench", file: &file, assessments: &assessments, changes: &[], checked_on: today };
        let csv = report.csv();
        times.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(assessments.len() == RECEIPT_CLAIMS && !csv.is_empty(), "every claim is assessed");
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// Resident memory of a process from /proc (Linux), in KiB: (VmHWM, RssAnon). VmHWM is the
/// peak of everything resident, including pages of the mapped register file, which belong to
/// the OS page cache; RssAnon is the process's own memory.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok();
    Some((field("VmHWM:")?, field("RssAnon:")?))
}

/// Samples a process's anonymous memory every 100 ms until stopped; returns the peak in KiB.
/// The kernel keeps a peak only for the total (VmHWM), not for the anonymous part.
fn sample_anonymous_peak(pid: u32, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some((_, anonymous)) = memory_kib(pid) {
                peak = peak.max(anonymous);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

#[derive(Clone, Copy)]
enum Endpoint {
    Trivial,
    Verify,
}

/// One request; the body is read but not decoded, so that the load generator (which shares
/// the machine) spends about the same on both endpoints.
async fn one(client: &CenterClient, endpoint: Endpoint, body: &[u8]) -> bool {
    match endpoint {
        Endpoint::Trivial => client.get_raw("/v1/health").await.is_ok_and(|(status, _)| status == 200),
        Endpoint::Verify => {
            client.post_raw("/v1/verify/number", "application/json", body.to_vec()).await.is_ok_and(|(status, _)| status == 200)
        }
    }
}

/// Closed loop: every connection sends as fast as answers come. Returns requests per second.
async fn throughput(clients: &[CenterClient], endpoint: Endpoint, requests: &std::sync::Arc<Vec<Vec<u8>>>, seconds: u64) -> (f64, u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (worker, client) in clients.iter().enumerate() {
        let client = client.clone();
        let requests = requests.clone();
        set.spawn(async move {
            let (mut done, mut failed) = (0u64, 0u64);
            let mut index = worker * 7919;
            while Instant::now() < deadline {
                index = (index + 1) % requests.len();
                if one(&client, endpoint, &requests[index]).await { done += 1 } else { failed += 1 }
            }
            (done, failed)
        });
    }
    let (mut done, mut failed) = (0, 0);
    while let Some(Ok((d, f))) = set.join_next().await {
        done += d;
        failed += f;
    }
    (done as f64 / started.elapsed().as_secs_f64(), failed)
}

/// Open loop at `rate` per second: latencies (µs) measured from each request's intended start.
async fn latency_at(clients: &[CenterClient], rate: f64, requests: &std::sync::Arc<Vec<Vec<u8>>>, seconds: u64) -> Vec<u64> {
    open_loop(clients, Endpoint::Verify, rate, requests, seconds, Pacing::Timer).await.latencies
}

/// The trivial endpoint at `rate` per second (open loop), with the server's CPU per request: the
/// cost of one request at the load the card verifications ran at, where each request wakes the
/// server on its own instead of sharing a wake-up with others as at full load. The rate is the
/// answered requests over the loop's scheduled span; the CPU is counted over the whole phase.
async fn trivial_at(
    pids: &[u32],
    clients: &[CenterClient],
    rate: f64,
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    seconds: u64,
    pacing: Pacing,
) -> anyhow::Result<Measured> {
    let cpu = || cpu_of(pids);
    let before = cpu()?;
    let OpenLoop { latencies, failed, .. } = open_loop(clients, Endpoint::Trivial, rate, requests, seconds, pacing).await;
    let after = cpu()?;
    anyhow::ensure!(failed == 0, "{failed} trivial requests failed at {rate:.0}/s");
    anyhow::ensure!(!latencies.is_empty(), "nothing was answered in the phase");
    let answered = latencies.len() as f64;
    Ok(Measured { rate: answered / seconds as f64, failed, cpu_us: (after - before) / answered * 1e6 })
}

/// How the open loop waits for each request's start.
#[derive(Clone, Copy)]
enum Pacing {
    /// tokio's timer, which wakes in whole milliseconds: every connection whose start fell
    /// within a millisecond leaves at its end, together (at 13,000 requests/s bursts of about
    /// 13, and of 30–60 when the timer is 2–5 ms late). For a generator without CPUs of its own.
    Timer,
    /// Yielding until the start, so that each request leaves within microseconds of it: only
    /// while [`Polling`] keeps the generator's own CPUs busy anyway. Clinics do not send in
    /// step with one clock, and under bursts the center's latency is the burst's length.
    Spinning,
}

impl Pacing {
    fn of(polling: &Option<Polling>) -> Pacing {
        if polling.is_some() { Pacing::Spinning } else { Pacing::Timer }
    }
}

/// Open loop at `rate` per second on `endpoint` for `seconds` (starting 0.1 s after the call):
/// the latencies (µs) of the requests answered, measured from each request's intended start (or
/// from when the generator let it go, when that was later), and how many failed.
async fn open_loop(
    clients: &[CenterClient],
    endpoint: Endpoint,
    rate: f64,
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    seconds: u64,
    pacing: Pacing,
) -> OpenLoop {
    let interval = Duration::from_secs_f64(clients.len() as f64 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(seconds);
    let mut set = tokio::task::JoinSet::new();
    for (worker, client) in clients.iter().enumerate() {
        let client = client.clone();
        let requests = requests.clone();
        let offset = interval.mul_f64(worker as f64 / clients.len() as f64);
        set.spawn(async move {
            let (mut latencies, mut late) = (Vec::new(), Vec::new());
            let mut failed = 0u64;
            let mut intended = start + offset;
            let mut index = worker * 104_729;
            while intended < end {
                // Behind schedule because the last answer came late: the wait counts (the
                // server's backlog, no coordinated omission). Ahead of it: the request leaves
                // when the generator gets to it (see `Pacing`), and how late that is is the
                // load generator's, not the server's.
                let sent = if Instant::now() < intended {
                    if matches!(pacing, Pacing::Spinning) {
                        while Instant::now() < intended {
                            tokio::task::yield_now().await;
                        }
                    } else {
                        tokio::time::sleep_until(intended.into()).await;
                    }
                    let woke = Instant::now();
                    late.push(woke.duration_since(intended).as_micros() as u64);
                    woke
                } else {
                    intended
                };
                index = (index + 1) % requests.len();
                if one(&client, endpoint, &requests[index]).await {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    failed += 1;
                }
                intended += interval;
            }
            (latencies, late, failed)
        });
    }
    let mut outcome = OpenLoop { latencies: Vec::new(), timer_late: Vec::new(), failed: 0 };
    // A connection's task that did not finish counts as one failure; the others still count.
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((latencies, late, failed)) => {
                outcome.latencies.extend(latencies);
                outcome.timer_late.extend(late);
                outcome.failed += failed;
            }
            Err(_) => outcome.failed += 1,
        }
    }
    outcome.latencies.sort_unstable();
    outcome.timer_late.sort_unstable();
    outcome
}

/// What an open loop measured: the latencies (µs, sorted), how late the generator let the
/// on-time requests go (µs, sorted; its timer's lateness, or its own stalls when spinning; not
/// counted in their latencies), and the failures.
struct OpenLoop {
    latencies: Vec<u64>,
    timer_late: Vec<u64>,
    failed: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// The bench clinic's connection to the server at `addr`.
fn client_config(addr: &str, pki: &Path, institution: &onshi_domain::ids::InstitutionCode) -> anyhow::Result<ClientConfig> {
    let file = |ext: &str| std::fs::read(pki.join("institutions").join(format!("{institution}.{ext}")));
    Ok(ClientConfig {
        base_url: format!("https://{addr}"),
        ca_pem: std::fs::read(pki.join("ca.pem"))?,
        identity_pem: Some((file("pem")?, file("key")?)),
        timeout: Duration::from_secs(30),
    })
}

/// CPU seconds the center processes `pids` have used together.
fn cpu_of(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|pid| cpu_seconds(*pid).context("the server's CPU time is not readable from /proc")).sum()
}

/// CPU seconds (user + system) a process has used, from /proc (Linux; 100 ticks per second).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Sockets held against the center for `--hostile`: idle ones and ones that start a TLS
/// record and stall. Closed when dropped.
fn flood(addr: &str, idle: usize, half_open: usize) -> anyhow::Result<Vec<std::net::TcpStream>> {
    use std::io::Write;
    let mut held = Vec::with_capacity(idle + half_open);
    for i in 0..idle + half_open {
        let mut socket = std::net::TcpStream::connect(addr)?;
        if i >= idle {
            socket.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])?;
        }
        held.push(socket);
    }
    Ok(held)
}

/// Verify throughput (closed loop), latency at a fixed rate (open loop), new-connection
/// latency, and the server's CPU per verification, measured in one phase.
struct Phase {
    rate: f64,
    failed: u64,
    latencies: Vec<u64>,
    fresh: Vec<u64>,
    cpu_us_per_request: f64,
}

async fn phase(
    clients: &[CenterClient],
    config: &ClientConfig,
    pid: u32,
    rate: f64,
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
    seconds: u64,
) -> anyhow::Result<Phase> {
    let cpu_before = cpu_seconds(pid).unwrap_or(f64::NAN);
    let (throughput_rate, failed) = throughput(clients, Endpoint::Verify, requests, seconds).await;
    let cpu_after = cpu_seconds(pid).unwrap_or(f64::NAN);
    let done = throughput_rate * seconds as f64;
    let latencies = latency_at(clients, rate, requests, seconds).await;
    // A clinic's new connection (a new handshake) per check, one after another.
    let mut fresh = Vec::new();
    for i in 0..50 {
        let client = CenterClient::new(config.clone())?;
        let started = Instant::now();
        if one(&client, Endpoint::Verify, &requests[i % requests.len()]).await {
            fresh.push(started.elapsed().as_micros() as u64);
        }
    }
    fresh.sort_unstable();
    Ok(Phase { rate: throughput_rate, failed, latencies, fresh, cpu_us_per_request: (cpu_after - cpu_before) / done * 1e6 })
}

/// `--hostile`: verify without, then during, a flood of 2,000 idle and 300 half-open sockets.
fn hostile(
    args: &BenchArgs,
    db: &Path,
    pki: &Path,
    institution: &onshi_domain::ids::InstitutionCode,
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<ExitCode> {
    const IDLE: usize = 2_000;
    const HALF_OPEN: usize = 300;
    let jpki = args.dir.join("jpki");
    if !jpki.join("ca.pem").exists() {
        let ca = onshi_pki::jpki::CardCa::create(&jpki)?;
        ca.publish_crl(30)?;
    }
    let (split, placed) = placement(args);
    eprintln!("bench: {placed}");
    let server = start_server(db, pki, &jpki, split.as_ref())?;
    pin_load(split.as_ref())?;
    let pid = server.child.id();
    let config = client_config(&server.addr, pki, institution)?;
    let (calm, attacked, fresh_during) = crate::runtime()?.block_on(async {
        let clients: Vec<CenterClient> = (0..args.connections).map(|_| CenterClient::new(config.clone())).collect::<Result<_, _>>()?;
        eprintln!("bench: warming up");
        throughput(&clients, Endpoint::Verify, requests, 3).await;
        eprintln!("bench: verify, no attack");
        let (probe, _) = throughput(&clients, Endpoint::Verify, requests, 3).await;
        let rate = probe / 2.0;
        let calm = phase(&clients, &config, pid, rate, requests, args.seconds).await?;
        eprintln!("bench: holding {IDLE} idle and {HALF_OPEN} half-open sockets");
        let held = flood(&server.addr, IDLE, HALF_OPEN)?;
        eprintln!("bench: verify during the attack");
        let first = phase(&clients, &config, pid, rate, requests, args.seconds).await?;
        eprintln!("bench: verify during the attack, again");
        let attacked = phase(&clients, &config, pid, rate, requests, args.seconds).await?;
        eprintln!(
            "bench: first phase of the attack: {:.0} req/s, p99 {:.2} ms, CPU {:.1} µs/request",
            first.rate,
            percentile(&first.latencies, 0.99),
            first.cpu_us_per_request
        );
        let fresh_during = held.len();
        drop(held);
        anyhow::Ok((calm, attacked, fresh_during))
    })?;
    let mut out = String::from("| measure | no attack | during the attack | ratio |\n|---|---|---|---|\n");
    let row = |out: &mut String, name: &str, calm: f64, attacked: f64, unit: &str| {
        out.push_str(&format!("| {name} | {calm:.2} {unit} | {attacked:.2} {unit} | {:.2} |\n", attacked / calm));
    };
    row(&mut out, "verify throughput, kept-alive connections", calm.rate, attacked.rate, "req/s");
    row(&mut out, "latency at a fixed rate, p50", percentile(&calm.latencies, 0.5), percentile(&attacked.latencies, 0.5), "ms");
    row(&mut out, "latency at a fixed rate, p99", percentile(&calm.latencies, 0.99), percentile(&attacked.latencies, 0.99), "ms");
    row(
        &mut out,
        "verify on a new connection (handshake + request), p50",
        percentile(&calm.fresh, 0.5),
        percentile(&attacked.fresh, 0.5),
        "ms",
    );
    row(&mut out, "verify on a new connection, p99", percentile(&calm.fresh, 0.99), percentile(&attacked.fresh, 0.99), "ms");
    row(&mut out, "server CPU per verification (user + system)", calm.cpu_us_per_request, attacked.cpu_us_per_request, "µs");
    out.push_str(&format!(
        "\n{placed}; {} connections; {} s per measurement; {fresh_during} sockets held; failed requests: {} without, {} during; new-connection checks answered: {}/50 and {}/50.\n",
        args.connections,
        args.seconds,
        calm.failed,
        attacked.failed,
        calm.fresh.len(),
        attacked.fresh.len()
    ));
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `--card-only`: the trivial endpoint, card verifications, the trivial endpoint again.
fn card_only(
    args: &BenchArgs,
    db: &Path,
    pki: &Path,
    events: &Path,
    institution: &onshi_domain::ids::InstitutionCode,
    requests: &std::sync::Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<ExitCode> {
    let mut bench_cards = crate::bench_card::prepare(&args.dir, events)?;
    let (split, placed) = placement(args);
    let server = start_server(db, pki, &bench_cards.jpki, split.as_ref())?;
    pin_load(split.as_ref())?;
    let config = client_config(&server.addr, pki, institution)?;
    let pid = server.child.id();
    let seconds = args.seconds;
    let institutions = crate::bench_card::institution_clients(pki, &config, args.connections)?;
    let (trivial, cards, again, paced, (full, (burst_rate, busy))) = crate::runtime()?.block_on(async {
        let polling = keep_polling(args, split.as_ref());
        let clients: Vec<CenterClient> = (0..args.connections).map(|_| CenterClient::new(config.clone())).collect::<Result<_, _>>()?;
        if card_index_max_persons() >= args.persons && args.db.is_none() {
            wait_for_card_index(&clients[0], args.persons).await;
        }
        throughput(&clients, Endpoint::Trivial, requests, 3).await;
        let trivial = with_cpu(pid, async { Ok(throughput(&clients, Endpoint::Trivial, requests, seconds).await) }).await?;
        crate::bench_card::link(&clients[0], &mut bench_cards).await?;
        let cards = with_cpu(pid, crate::bench_card::throughput(&clients, &bench_cards, seconds)).await?;
        anyhow::ensure!(cards.failed == 0, "{} card verifications failed", cards.failed);
        let again = with_cpu(pid, async { Ok(throughput(&clients, Endpoint::Trivial, requests, seconds).await) }).await?;
        let paced = trivial_at(&[pid], &clients, cards.rate, requests, seconds, Pacing::of(&polling)).await?;
        let full = card_full_load(&[pid], &institutions, &bench_cards, seconds).await?;
        anyhow::Ok((trivial, cards, again, paced, full))
    })?;
    let signature_us = crate::bench_card::signature_check_us(&bench_cards)?;
    println!(
        "trivial {:.0} req/s ({:.1} µs server CPU each); card verifications {:.0} /s ({:.1} µs each); trivial again {:.0} req/s ({:.1} µs each); trivial at the cards' rate {:.0} req/s ({:.1} µs each); one RSA-2048 signature check {signature_us:.1} µs",
        trivial.rate, trivial.cpu_us, cards.rate, cards.cpu_us, again.rate, again.cpu_us, paced.rate, paced.cpu_us
    );
    println!("{placed}; {}", waiting_note(args, split.as_ref()));
    let trivial_cpu = (trivial.cpu_us + again.cpu_us) / 2.0;
    println!(
        "card / trivial: throughput {:.3} (against the trivial run after); server CPU {:.2}× against the mean of both trivial runs (floor: one such request + one signature check, {:.2}×), {:.2}× against the trivial endpoint at the cards' rate (floor {:.2}×)",
        cards.rate / again.rate,
        cards.cpu_us / trivial_cpu,
        (trivial_cpu + signature_us) / trivial_cpu,
        cards.cpu_us / paced.cpu_us,
        (paced.cpu_us + signature_us) / paced.cpu_us
    );
    println!(
        "card verifications at full load (proofs signed ahead, {AHEAD_NOTE}): {burst_rate:.0} /s while sending, the center busy {:.0} % of a core then; {:.1} µs server CPU each: {:.2}× the mean of both trivial runs (floor {:.2}×)",
        busy * 100.0,
        full.cpu_us,
        full.cpu_us / trivial_cpu,
        (trivial_cpu + signature_us) / trivial_cpu
    );
    Ok(ExitCode::SUCCESS)
}

/// How the full-load card phase gets its proofs, for the reports.
const AHEAD_NOTE: &str = "one institution per connection, each answer carrying that institution's next challenge";

/// The full-load card phase ([`crate::bench_card::full_load`]) with the centers' CPU over it:
/// the measurement, and the rate and the centers' busy share while the signed proofs were sent.
async fn card_full_load(
    pids: &[u32],
    institutions: &[CenterClient],
    cards: &crate::bench_card::BenchCards,
    seconds: u64,
) -> anyhow::Result<(Measured, (f64, f64))> {
    let open = crate::bench_card::first_challenges(institutions).await?;
    let mut sending = (0.0, 0.0);
    let server_cpu = || cpu_of(pids);
    let measured = with_cpu_of(pids, async {
        let full = crate::bench_card::full_load(institutions, cards, open, seconds, server_cpu).await?;
        sending = (full.burst_rate, full.busy_while_sending);
        Ok((full.rate, full.failed))
    })
    .await?;
    anyhow::ensure!(measured.failed == 0, "{} card verifications at full load failed", measured.failed);
    Ok((measured, sending))
}

/// A closed-loop phase with the server's CPU time over it.
struct Measured {
    rate: f64,
    failed: u64,
    /// Server CPU (user + system, from the server process's own accounting) per request, µs.
    cpu_us: f64,
}

async fn with_cpu(pid: u32, phase: impl std::future::Future<Output = anyhow::Result<(f64, u64)>>) -> anyhow::Result<Measured> {
    with_cpu_of(&[pid], phase).await
}

/// As [`with_cpu`], summed over the center processes `pids`.
async fn with_cpu_of(pids: &[u32], phase: impl std::future::Future<Output = anyhow::Result<(f64, u64)>>) -> anyhow::Result<Measured> {
    let cpu = || cpu_of(pids);
    let before = cpu()?;
    let started = Instant::now();
    let (rate, failed) = phase.await?;
    let after = cpu()?;
    // `rate` was taken over the phase's own elapsed time (a little past `seconds` while the
    // last requests finish): the same span gives the number answered.
    let answered = rate * started.elapsed().as_secs_f64();
    anyhow::ensure!(answered >= 1.0, "nothing was answered in the phase");
    Ok(Measured { rate, failed, cpu_us: (after - before) / answered * 1e6 })
}

/// A day's changes for a full register, written to `out`: an address change (a `change`
/// event dated on the acquisition, so that it applies whatever happened to the coverage
/// later, short of a loss that same day) for every 100th acquisition of the event files,
/// i.e. about 1 % of persons, then the synthetic world's late events (the acquisitions,
/// changes and losses notified after its today). Returns (changes, late events).
fn day_of_changes(files: &[PathBuf], late: &Path, today: &str, out: &Path) -> anyhow::Result<(u64, u64)> {
    use std::io::Write;
    let mut writer = std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?);
    let (mut acquisitions, mut changes) = (0u64, 0u64);
    for file in files {
        for line in BufReader::new(std::fs::File::open(file)?).lines() {
            let line = line?;
            if !line.contains("\"kind\":\"acquire\"") {
                continue;
            }
            acquisitions += 1;
            if acquisitions % 100 != 0 {
                continue;
            }
            let mut event: InsurerEvent = serde_json::from_str(&line).with_context(|| format!("{}: not an event", file.display()))?;
            changes += 1;
            event.event_id = format!("day-{changes:08}");
            event.kind = EventKind::Change;
            event.notified_at = format!("{today}090000");
            event.terms = None;
            if let Some(member) = event.member.as_mut() {
                member.address = Some(format!("東京都千代田区千代田{}丁目{}番", changes % 9 + 1, changes % 40 + 1));
            }
            serde_json::to_writer(&mut writer, &event)?;
            writer.write_all(b"\n")?;
        }
    }
    let mut late_events = 0u64;
    if let Ok(file) = std::fs::File::open(late) {
        for line in BufReader::new(file).lines() {
            writer.write_all(line?.as_bytes())?;
            writer.write_all(b"\n")?;
            late_events += 1;
        }
    }
    writer.flush()?;
    Ok((changes, late_events))
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    CARD_INDEX_MAX_PERSONS.store(args.card_index_max_persons, std::sync::atomic::Ordering::Relaxed);
    CARD_INDEX_ON_POSTGRES.store(args.card_index_on_postgres, std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(&args.dir)?;
    let synth_dir = args.dir.join("synth");
    let manifest_path = synth_dir.join("manifest.json");
    let reuse = std::fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|t| serde_json::from_str::<onshi_synth::SynthSummary>(&t).ok())
        .filter(|s| s.persons >= args.persons && s.persons < args.persons + 10);
    let synth_started = Instant::now();
    let summary = match reuse {
        Some(summary) => summary,
        None => synthesize(&SynthOptions { persons: args.persons, seed: 1, today: default_today(), out: synth_dir.clone() })?,
    };
    let synth_seconds = synth_started.elapsed().as_secs_f64();
    let files: Vec<PathBuf> = summary.event_files.iter().map(|f| synth_dir.join(f)).collect();
    let db = match &args.db {
        Some(url) => {
            anyhow::ensure!(crate::center_cmd::postgres_url(Path::new(url)).is_some(), "--db names a PostgreSQL database (postgres://…)");
            PathBuf::from(url)
        }
        None => args.dir.join("center.sqlite"),
    };
    let on_postgres = args.db.is_some();
    let mut import_rate = None;
    let mut day_rate = None;
    if !args.skip_import || !(on_postgres || db.exists()) {
        if !on_postgres {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        }
        let stores = crate::center_cmd::open_stores(&db, SqliteOptions::IMPORT)?;
        let register = stores.register.as_ref();
        anyhow::ensure!(
            register.counts()?.events == 0,
            "the register at --db is not empty: give an empty database, or --skip-import to measure on what it holds"
        );
        let totals = import_files(register, &files, onshi_center::import::BATCH_EVENTS_DEFAULT)?;
        import_rate = Some((totals.applied as f64 / totals.seconds, totals.applied, totals.seconds));
        eprintln!("bench: a day's changes into the full register");
        let day = args.dir.join("day-of-changes.jsonl");
        let (changes, late) = day_of_changes(&files, &synth_dir.join("late").join("late-events.jsonl"), &summary.today, &day)?;
        let totals = import_files(register, std::slice::from_ref(&day), onshi_center::import::BATCH_EVENTS_DEFAULT)?;
        day_rate = Some((totals.applied as f64 / totals.seconds, totals.applied, totals.lines, changes, late, totals.seconds));
    }
    let pki = args.dir.join("pki");
    let institution = crate::demo::demo_institution();
    if !pki.join("ca.pem").exists() {
        let ca = CenterCa::create(&pki, "onshi bench CA")?;
        ca.issue_server(&["127.0.0.1".to_string()])?;
        ca.issue_institution(&institution, "bench clinic", 30)?;
    }
    let bodies: Vec<Vec<u8>> = sample_requests(&files, summary.persons, &summary.today)?
        .iter()
        .map(|request| serde_json::to_vec(request).expect("plain data"))
        .collect();
    let requests = std::sync::Arc::new(bodies);
    if args.card_only {
        return card_only(&args, &db, &pki, &files[0], &institution, &requests);
    }
    if args.hostile {
        return hostile(&args, &db, &pki, &institution, &requests);
    }
    let in_process_us = in_process_verify_us(&db, &requests)?;
    let audit_us = audit_record_us(&args.dir, summary.persons)?;
    let mut bench_cards = crate::bench_card::prepare(&args.dir, &files[0])?;
    let (split, placed) = placement(&args);
    eprintln!("bench: {placed}");
    anyhow::ensure!(args.centers >= 1, "--centers must be at least 1");
    anyhow::ensure!(
        args.centers == 1 || on_postgres,
        "--centers above 1 needs --db postgres://…: a SQLite register is served by one process"
    );
    let servers: Vec<ServerProcess> = (0..args.centers)
        .map(|i| {
            let audit = if i == 0 { "center.audit.sqlite".to_string() } else { format!("center{i}.audit.sqlite") };
            start_server_logging(&db, &pki, &bench_cards.jpki, split.as_ref(), &args.dir.join(audit))
        })
        .collect::<anyhow::Result<_>>()?;
    let server = &servers[0];
    let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    pin_load(split.as_ref())?;
    let configs: Vec<ClientConfig> = servers.iter().map(|s| client_config(&s.addr, &pki, &institution)).collect::<anyhow::Result<_>>()?;
    let institutions = crate::bench_card::institution_clients(&pki, &configs[0], args.connections)?;
    let server_cores =
        split.as_ref().map_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get), |s| s.server.len());
    let stop_sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_anonymous_peak(server.child.id(), stop_sampling.clone());
    let runtime = crate::runtime()?;
    let report = runtime.block_on(async {
        // Connection i goes to center i mod N.
        let clients: Vec<CenterClient> =
            (0..args.connections).map(|i| CenterClient::new(configs[i % configs.len()].clone())).collect::<Result<_, _>>()?;
        // A card index is loaded beside serving: measured before it is ready, a phase would
        // count the load's CPU against its requests.
        let index_expected = card_index_max_persons() >= summary.persons
            && (!on_postgres || CARD_INDEX_ON_POSTGRES.load(std::sync::atomic::Ordering::Relaxed));
        if index_expected {
            for client in clients.iter().take(servers.len()) {
                wait_for_card_index(client, summary.persons).await;
            }
        }
        // The phases whose server CPU per request is compared, and the latency phases, run with
        // the load generator polling; the batch, the receipt check and the gateway as before.
        let polling = keep_polling(&args, split.as_ref());
        eprintln!("bench: warming up");
        throughput(&clients, Endpoint::Verify, &requests, 3).await;
        let mut trivial = Vec::new();
        let mut verify = Vec::new();
        let mut failures = 0;
        let seconds = args.seconds;
        for round in 1..=2 {
            eprintln!("bench: round {round}: trivial endpoint");
            let measured = with_cpu_of(&pids, async { Ok(throughput(&clients, Endpoint::Trivial, &requests, seconds).await) }).await?;
            failures += measured.failed;
            trivial.push(measured);
            eprintln!("bench: round {round}: verify by number");
            let measured = with_cpu_of(&pids, async { Ok(throughput(&clients, Endpoint::Verify, &requests, seconds).await) }).await?;
            failures += measured.failed;
            verify.push(measured);
        }
        let mean = |phases: &[Measured], f: fn(&Measured) -> f64| phases.iter().map(f).sum::<f64>() / phases.len() as f64;
        let trivial_rate = mean(&trivial, |m| m.rate);
        let verify_rate = mean(&verify, |m| m.rate);
        // The verify phase runs at a fraction of the trivial one's rate: the trivial endpoint at
        // the verify phase's own rate says what a request costs the center at that pace (its
        // own wake-ups between requests), beside the full-load figure.
        eprintln!("bench: trivial endpoint at the verify phase's rate ({verify_rate:.0}/s)");
        let trivial_paced = trivial_at(&pids, &clients, verify_rate, &requests, seconds, Pacing::of(&polling)).await?;
        let number_cpu = (mean(&verify, |m| m.cpu_us), mean(&trivial, |m| m.cpu_us), trivial_paced.cpu_us);
        // The latency phases too: the generator then sends each request at its time instead
        // of in the timer's millisecond bursts (see `Pacing`).
        eprintln!("bench: latency at half load ({:.0}/s)", verify_rate / 2.0);
        let verify_loop = open_loop(&clients, Endpoint::Verify, verify_rate / 2.0, &requests, args.seconds, Pacing::of(&polling)).await;
        failures += verify_loop.failed;
        eprintln!("bench: trivial endpoint at the same rate, for the latency's floor");
        let trivial_loop = open_loop(&clients, Endpoint::Trivial, verify_rate / 2.0, &requests, args.seconds, Pacing::of(&polling)).await;
        failures += trivial_loop.failed;
        drop(polling);
        eprintln!("bench: batches of {BATCH_ENTRIES_MAX}");
        let batch_seconds = batch_timing(&clients[0], &requests).await?;
        eprintln!("bench: receipt check of {RECEIPT_CLAIMS} claims");
        let today = onshi_domain::Date::parse_yyyymmdd(&summary.today).map_err(|e| anyhow::anyhow!("{e}"))?;
        let receipt_seconds = receipt_timing(&clients[0], &institution, &requests, today).await?;
        eprintln!("bench: card verification (PIN signature over the kept challenge, verify)");
        let polling = keep_polling(&args, split.as_ref());
        crate::bench_card::link(&clients[0], &mut bench_cards).await?;
        let cards = with_cpu_of(&pids, crate::bench_card::throughput(&clients, &bench_cards, seconds)).await?;
        eprintln!("bench: trivial endpoint again, for the card ratio");
        let again = with_cpu_of(&pids, async { Ok(throughput(&clients, Endpoint::Trivial, &requests, seconds).await) }).await?;
        failures += again.failed + cards.failed;
        eprintln!("bench: trivial endpoint at the card verifications' rate ({:.0}/s)", cards.rate);
        let paced = trivial_at(&pids, &clients, cards.rate, &requests, seconds, Pacing::of(&polling)).await?;
        eprintln!("bench: card verifications at full load, proofs signed ahead");
        let (full, sending) = card_full_load(&pids, &institutions, &bench_cards, seconds).await?;
        let card = (cards, again, paced, full, sending);
        drop(polling);
        eprintln!("bench: gateway, request file → result file ({} files)", crate::bench_gateway::FILES);
        let files = crate::bench_gateway::file_latencies(&args.dir, &server.addr, &pki, institution.as_str(), &requests).await?;
        anyhow::Ok((
            trivial_rate,
            verify_rate,
            number_cpu,
            failures,
            (verify_loop, trivial_loop),
            batch_seconds,
            receipt_seconds,
            card,
            files,
        ))
    })?;
    let (
        trivial_rate,
        verify_rate,
        (verify_cpu_us, trivial_cpu_us, trivial_paced_us),
        failures,
        (OpenLoop { latencies, timer_late, .. }, OpenLoop { latencies: trivial_latencies, .. }),
        batch_seconds,
        receipt_seconds,
        (cards, again, paced, full, (burst_rate, busy)),
        file_latencies,
    ) = report;
    let signature_us = crate::bench_card::signature_check_us(&bench_cards)?;
    let (card_rate, trivial_again) = (cards.rate, again.rate);
    let (total_peak_kib, _) = memory_kib(server.child.id()).unwrap_or((0, 0));
    stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    let anonymous_peak_kib = sampler.join().unwrap_or(0);
    drop(servers);
    let db_bytes = if on_postgres { 0 } else { std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) };
    let ratio = verify_rate / trivial_rate;
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut out = String::new();
    out.push_str(&format!(
        "Population: {} persons, {} events ({} late, not imported); register {}\n\n",
        summary.persons,
        summary.events,
        summary.late_events,
        if on_postgres { "on PostgreSQL".to_string() } else { format!("file {:.2} GiB", db_bytes as f64 / (1u64 << 30) as f64) }
    ));
    out.push_str("| measure | result | target | verdict |\n|---|---|---|---|\n");
    if let Some((rate, events, seconds)) = import_rate {
        out.push_str(&format!(
            "| import throughput | {rate:.0} events/s ({events} events in {seconds:.1} s) | ≥ 300,000 events/s | {} |\n",
            verdict(rate >= 300_000.0)
        ));
    }
    if let Some((rate, applied, lines, changes, late, seconds)) = day_rate {
        out.push_str(&format!(
            "| import of a day's changes into the full register ({lines} events: address changes of 1 % of persons ({changes}) and the synthetic world's {late} late events; {applied} applied, in {seconds:.1} s) | {rate:.0} events/s | ≥ 100,000 events/s | {} |\n",
            verdict(rate >= 100_000.0)
        ));
    }
    out.push_str(&format!("| trivial endpoint (/v1/health) | {trivial_rate:.0} req/s | — | — |\n"));
    out.push_str(&format!("| verify by number | {verify_rate:.0} req/s | — | — |\n"));
    out.push_str(&format!("| verify / trivial | {ratio:.2} | ≥ 0.80 | {} |\n", verdict(ratio >= 0.8)));
    let number_cpu_ratio = verify_cpu_us / trivial_cpu_us;
    out.push_str(&format!(
        "| server CPU per verification by number / per trivial request (server's own accounting) | {verify_cpu_us:.1} µs / {trivial_cpu_us:.1} µs = {number_cpu_ratio:.2}× | ≤ 1.25× | {} |\n",
        verdict(number_cpu_ratio <= 1.25)
    ));
    out.push_str(&format!(
        "| the same against the trivial endpoint at the verify phase's rate (open loop) | {verify_cpu_us:.1} µs / {trivial_paced_us:.1} µs = {:.2}× (floor {:.2}×) | — | — |\n",
        verify_cpu_us / trivial_paced_us,
        (trivial_paced_us + in_process_us + audit_us) / trivial_paced_us
    ));
    out.push_str(&format!(
        "| verify in-process, one thread, no HTTP/TLS (parse + register + answer + JSON) | {in_process_us:.1} µs per call | — | — |\n"
    ));
    out.push_str(&format!(
        "| one audit record, in-process (seal, insert, group commit, person index, tallies, checkpoint: the audit threads' CPU) | {audit_us:.2} µs | — | — |\n"
    ));
    let number_floor_us = trivial_cpu_us + in_process_us + audit_us;
    out.push_str(&format!(
        "| floor of a verification by number: a trivial request + the in-process verification + its audit record | {number_floor_us:.1} µs = {:.2}× the trivial request | ≤ 1.25× | {} |\n",
        number_floor_us / trivial_cpu_us,
        if number_floor_us / trivial_cpu_us <= 1.25 { "goal above the floor" } else { "goal below the floor" }
    ));
    let ceiling = server_cores as f64 / (number_floor_us / 1e6);
    out.push_str(&format!(
        "| ceiling of verify throughput at that floor on the center's {server_cores} core(s), against the trivial rate measured | {ceiling:.0} req/s = {:.2} | ≥ 0.80 | {} |\n",
        ceiling / trivial_rate,
        if ceiling / trivial_rate >= 0.8 { "goal under the ceiling" } else { "goal above the ceiling" }
    ));
    out.push_str(&format!("| latency at half load ({:.0} req/s), p50 | {p50:.2} ms | — | — |\n", verify_rate / 2.0));
    out.push_str(&format!("| latency at half load, p99 | {p99:.2} ms | ≤ 5 ms | {} |\n", verdict(p99 <= 5.0)));
    out.push_str(&format!(
        "| how late the load generator let go the requests it sent on time (its timer, or its own stalls; not counted in their latency), p99 / max | {:.2} / {:.2} ms | — | — |\n",
        percentile(&timer_late, 0.99),
        percentile(&timer_late, 1.0)
    ));
    out.push_str(&format!(
        "| the trivial endpoint at the same rate, open loop: p50 / p99 (the latency's floor on this placement) | {:.2} / {:.2} ms | — | — |\n",
        percentile(&trivial_latencies, 0.50),
        percentile(&trivial_latencies, 0.99)
    ));
    out.push_str(&format!(
        "| batch of {BATCH_ENTRIES_MAX} entries, one call (median of 3) | {batch_seconds:.2} s | < 1 s (DESIGN.md) | {} |\n",
        verdict(batch_seconds < 1.0)
    ));
    let card_ratio = card_rate / trivial_again;
    out.push_str(&format!(
        "| card verifications (PIN signature over the challenge the last answer carried + verify: one request each) | {card_rate:.0} /s | — | — |\n"
    ));
    out.push_str(&format!("| trivial endpoint, measured right after | {trivial_again:.0} req/s | — | — |\n"));
    out.push_str(&format!("| card verifications / trivial requests | {card_ratio:.2} | ≥ 0.50 | {} |\n", verdict(card_ratio >= 0.5)));
    let cpu_ratio = cards.cpu_us / again.cpu_us;
    out.push_str(&format!(
        "| server CPU per card verification / per trivial request (server's own accounting) | {:.0} µs / {:.0} µs = {cpu_ratio:.2}× | ≤ 2.5× | {} |\n",
        cards.cpu_us,
        again.cpu_us,
        verdict(cpu_ratio <= 2.5)
    ));
    out.push_str(&format!(
        "| the same against the trivial endpoint at the card verifications' rate ({:.0} req/s, open loop: each request wakes the server alone, as the cards' do) | {:.0} µs / {:.0} µs = {:.2}× | — | — |\n",
        paced.rate,
        cards.cpu_us,
        paced.cpu_us,
        cards.cpu_us / paced.cpu_us
    ));
    out.push_str(&format!(
        "| floor of a card verification: one trivial request + one RSA-2048 signature check (in-process, as the center checks it: {signature_us:.1} µs), against the trivial request at full load / at the cards' rate | {:.2}× / {:.2}× | — | — |\n",
        (again.cpu_us + signature_us) / again.cpu_us,
        (paced.cpu_us + signature_us) / paced.cpu_us
    ));
    out.push_str(&format!(
        "| card verifications at full load, proofs signed ahead ({AHEAD_NOTE}): {burst_rate:.0} /s while sending, the center's cores {:.0} % busy then | {:.0} µs / {:.0} µs = {:.2}× | ≤ 2.5× | {} |\n",
        busy * 100.0 / server_cores as f64,
        full.cpu_us,
        again.cpu_us,
        full.cpu_us / again.cpu_us,
        verdict(full.cpu_us / again.cpu_us <= 2.5)
    ));
    out.push_str(&format!(
        "| receipt pre-check of a {RECEIPT_CLAIMS}-claim UKE file (read, 2 batch phases, classify, CSV; median of 3) | {receipt_seconds:.2} s | < 2 s | {} |\n",
        verdict(receipt_seconds < 2.0)
    ));
    let file_p50 = percentile(&file_latencies, 0.50);
    out.push_str(&format!(
        "| gateway: request file in req/ → result file in res/ ({} files, one at a time), median | {file_p50:.1} ms (p90 {:.1} ms, max {:.1} ms) | < 50 ms | {} |\n",
        file_latencies.len(),
        percentile(&file_latencies, 0.90),
        percentile(&file_latencies, 1.0),
        verdict(file_p50 < 50.0)
    ));
    out.push_str(&format!(
        "| server peak RSS, page cache aside (RssAnon, sampled every 100 ms) | {:.0} MiB | ≤ 1024 MiB | {} |\n",
        anonymous_peak_kib as f64 / 1024.0,
        verdict(anonymous_peak_kib > 0 && anonymous_peak_kib <= 1024 * 1024)
    ));
    out.push_str(&format!(
        "| server peak RSS including mapped register pages (VmHWM) | {:.0} MiB | — | — |\n",
        total_peak_kib as f64 / 1024.0
    ));
    out.push_str(&format!(
        "\nPlacement: {placed}; {}; {} center process(es); card index for registers of up to {} persons (0: off{}). Synthesis took {synth_seconds:.1} s; {} connections; {} s per measurement; {} failed requests; {} latency samples.\n",
        waiting_note(&args, split.as_ref()),
        args.centers,
        args.card_index_max_persons,
        if args.card_index_on_postgres { "; on PostgreSQL too, following by polling" } else { "; on PostgreSQL none" },
        args.connections,
        args.seconds,
        failures,
        latencies.len()
    ));
    println!("{out}");
    std::fs::write(args.dir.join("bench-report.md"), &out)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    /// Whether the runtime under test keeps its polling tasks.
    #[derive(Clone, Copy, Debug)]
    enum Waiting {
        Sleeps,
        Polls,
    }

    /// How many times the runtime's one worker went to sleep while it answered `rounds` pings
    /// from a peer thread on loopback (its voluntary context switches).
    fn worker_sleeps(waiting: Waiting, rounds: usize) -> u64 {
        // At most 15 characters: the kernel cuts a thread's name there.
        let name = format!("poll-test-{}", matches!(waiting, Waiting::Polls) as u8);
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(name.clone()).enable_all().build().expect("runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        // Connected before the peer thread starts: a failure here cannot leave accept waiting.
        let mut peer_stream = std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (stream, _) = listener.accept().expect("accept");
        stream.set_nonblocking(true).expect("non-blocking");
        let switches = || -> u64 {
            let tasks = std::fs::read_dir("/proc/self/task").expect("tasks");
            let counts: Vec<u64> = tasks
                .filter_map(Result::ok)
                .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
                .map(|t| {
                    let status = std::fs::read_to_string(t.path().join("status")).expect("status");
                    let field = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).expect("field");
                    field.trim().parse::<u64>().expect("count")
                })
                .collect();
            assert_eq!(counts.len(), 1, "the runtime's one worker, named {name}, is found");
            counts[0]
        };
        runtime.block_on(async {
            let polling = matches!(waiting, Waiting::Polls).then(super::Polling::start);
            let mut stream = tokio::net::TcpStream::from_std(stream).expect("tokio stream");
            // A task run to its end: the worker has started and named itself.
            tokio::spawn(async {}).await.expect("a first task");
            let before = switches();
            let peer = std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                for _ in 0..rounds {
                    peer_stream.write_all(b"p").expect("ping");
                    peer_stream.read_exact(&mut byte).expect("pong");
                }
            });
            let echo = tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut byte = [0u8; 1];
                for _ in 0..rounds {
                    stream.read_exact(&mut byte).await.expect("ping");
                    stream.write_all(&byte).await.expect("pong");
                }
            });
            echo.await.expect("echo task");
            let after = switches();
            drop(polling);
            peer.join().expect("peer");
            after - before
        })
    }

    /// The property the CPU phases rely on: with the polling tasks the generator's worker does
    /// not sleep while it waits for an answer, so no answer has to wake it; without them the
    /// worker sleeps on many of the answers.
    #[test]
    fn with_the_polling_task_the_worker_waits_for_answers_without_sleeping() {
        // Not every round sleeps without it (a ping may come before the worker has gone to
        // sleep: 156 of 400 in one run on the project's machine), so the bounds are far apart.
        let rounds = 1_000;
        let without = worker_sleeps(Waiting::Sleeps, rounds);
        let with = worker_sleeps(Waiting::Polls, rounds);
        assert!(without >= rounds as u64 / 20, "without polling the worker sleeps while it waits: {without} sleeps in {rounds} rounds");
        assert!(with <= rounds as u64 / 100, "with polling the worker does not sleep: {with} sleeps in {rounds} rounds");
    }
}
