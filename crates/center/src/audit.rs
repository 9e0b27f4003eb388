//! Writes the audit log from request handlers: one writer thread commits whatever has queued
//! up in one transaction (group commit), in arrival order. Views of personal data,
//! registrations, flags and uploads answer only after their entries are committed
//! ([`AuditSink::record`]); verifications, by number or by card, the high-volume paths, answer
//! once their entries are queued
//! ([`AuditSink::enqueue`]) and are committed within the next group — and because the queue is
//! FIFO, any later committed entry proves the earlier ones are in. If the log cannot be written,
//! accesses are refused (fail closed) until it can.

use std::sync::mpsc;

use onshi_store::audit::{AuditEntry, AuditLog, AuditRecord};
use onshi_store::postgres::audit::{PgAuditLog, PgAuditReader};

use crate::errors::CenterError;

/// Most records committed in one transaction (a single job, such as a batch check's 10,000
/// records, is written whole): about 0.7 ms of the writer's CPU (sealing and inserting, 2–3 µs
/// a record). The writer shares a core with the request workers, and a group of 1,024 held it
/// 3–4 ms when a backlog was written (docs/PERFORMANCE.md, the latency tail; what still holds it
/// longer: the person index's commit, 2–4 ms once a second, and a WAL truncation). A full
/// group is followed by the next at once, without gathering.
const GROUP_MAX: usize = 256;
/// How long a group that nobody waits for gathers entries before its commit. Entries answered
/// in this window are lost with the process if it crashes inside it (the verifications' risk,
/// see above; a stop commits them). A group someone waits for (a view, a stop) commits at
/// once, or, arriving during a gathering, at its end.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// How often the person index (what a patient's access log is read by) is brought up to the
/// newest entry while entries come in, once more within this time when they stop coming, and
/// on every stop.
/// Readers see the newer entries meanwhile by a range scan (see `onshi_store::audit`).
const PERSON_INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Most entries one pass of the person index covers before the writer turns back to the
/// queue: 64 slices, with their pauses about 60 ms, which the queue absorbs (8,192 jobs; at
/// 26,000 verifications/s about 1,600 come meanwhile). A pass left unfinished (a log indexed
/// for the first time) goes on only once the queue's backlog is written.
const INDEX_PASS_MOST: i64 = 16_384;
/// The writer's sleep between two slices of a pass of the person index (see
/// `AuditLog::index_persons_paced`): the core is the request workers' meanwhile.
const INDEX_PAUSE: std::time::Duration = std::time::Duration::from_micros(500);
/// Commits between two checkpoints of the write-ahead log (done by another thread, or by
/// the writer when the log has outgrown [`WAL_BOUND`]).
const CHECKPOINT_EVERY_COMMITS: u32 = 500;
/// The write-ahead log's size above which the writer checkpoints it completely and truncates
/// it itself (a pause of its own, absorbed by the queue), instead of asking the passive
/// checkpointer, which never finishes while entries keep coming.
pub const WAL_BOUND: u64 = 64 << 20;
/// The chain's head is exported (a sealed checkpoint file and a log line) at least this often
/// while entries come in, and on every flush (a stop).
const HEAD_EXPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Where to say that a job was committed; `None` for jobs nobody waits for.
type Ack = Option<tokio::sync::oneshot::Sender<Result<(), String>>>;

/// Records to commit, and what their commit means to the sender.
struct Job {
    records: Vec<AuditRecord>,
    ack: Ack,
    /// Answered before its commit (a verification queued while the log worked): its records
    /// are kept and written again until a write works, never dropped.
    answered: bool,
    /// A stop's flush: acknowledged once the person index is complete and the head exported.
    flush: bool,
}

/// How often records of answered accesses that could not be written are tried again while
/// nothing else arrives (the log's database switching to a replica, a full disk cleared).
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The log the writer appends to: the center's own file, or the chain in PostgreSQL that every
/// center process on the cluster shares.
enum Log {
    File(Box<AuditLog>),
    Postgres(Box<PgAuditLog>),
}

impl Log {
    fn append(&mut self, records: &[AuditRecord]) -> Result<(), String> {
        match self {
            Log::File(log) => log.append(records).map(|_| ()),
            Log::Postgres(log) => log.append(records).map(|_| ()),
        }
        .map_err(|e| e.to_string())
    }

    /// The file log's person index (PostgreSQL's log is indexed by person as it is written):
    /// all of it (a stop), or one paced pass (while serving). True once it is complete.
    fn index_persons(&mut self, all: bool) -> Result<bool, String> {
        match self {
            Log::File(log) if all => log.index_persons().map(|()| true).map_err(|e| e.to_string()),
            Log::File(log) => log.index_persons_paced(INDEX_PASS_MOST, || std::thread::sleep(INDEX_PAUSE)).map_err(|e| e.to_string()),
            Log::Postgres(_) => Ok(true),
        }
    }

    fn head(&self) -> (i64, String) {
        match self {
            Log::File(log) => log.head(),
            Log::Postgres(log) => log.head(),
        }
    }

    fn write_checkpoint(&self, at: onshi_domain::Timestamp) -> Result<(), String> {
        match self {
            Log::File(log) => log.write_checkpoint(at),
            Log::Postgres(log) => log.write_checkpoint(at),
        }
        .map_err(|e| e.to_string())
    }
}

/// Where a patient's access log is read from.
#[derive(Clone)]
pub enum AuditReader {
    File(std::path::PathBuf),
    Postgres(std::sync::Arc<PgAuditReader>),
}

impl AuditReader {
    /// How many entries one person has, and the newest `limit` of them, oldest first.
    pub fn newest_person_entries(&self, person_id: i64, limit: i64) -> Result<(i64, Vec<AuditEntry>), onshi_store::StoreError> {
        match self {
            AuditReader::File(path) => onshi_store::audit::read_newest_person_entries(path, person_id, limit),
            AuditReader::Postgres(reader) => reader.newest_person_entries(person_id, limit),
        }
    }

    /// The tallies of the Japan days `from..=to` (`YYYYMMDD`), exact to the newest entry.
    pub fn tallies(&self, from: u32, to: u32) -> Result<Vec<onshi_store::audit::Tally>, onshi_store::StoreError> {
        match self {
            AuditReader::File(path) => onshi_store::audit::read_tallies(path, from, to),
            AuditReader::Postgres(reader) => reader.tallies(from, to),
        }
    }
}

/// The handle handlers write through.
pub struct AuditSink {
    queue: mpsc::SyncSender<Job>,
    reader: AuditReader,
    /// Set while the last write failed: even un-awaited accesses are refused then.
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set on a stop, after the drain: nothing more is accepted, so nothing can be answered
    /// that the final flush does not commit.
    closed: std::sync::atomic::AtomicBool,
}

impl AuditSink {
    /// Starts the writer thread over `log`.
    pub fn start(log: AuditLog) -> AuditSink {
        AuditSink::start_bounded(log, WAL_BOUND)
    }

    /// Starts the writer thread over the shared log in PostgreSQL.
    pub fn start_postgres(log: PgAuditLog, reader: PgAuditReader) -> AuditSink {
        AuditSink::start_log(Log::Postgres(Box::new(log)), AuditReader::Postgres(std::sync::Arc::new(reader)), WAL_BOUND)
    }

    /// As [`AuditSink::start`], with the write-ahead log truncated once it exceeds `wal_bound`
    /// bytes at a checkpoint (tests use a small bound).
    pub fn start_bounded(log: AuditLog, wal_bound: u64) -> AuditSink {
        let path = log.path().to_path_buf();
        AuditSink::start_log(Log::File(Box::new(log)), AuditReader::File(path), wal_bound)
    }

    fn start_log(mut log: Log, reader: AuditReader, wal_bound: u64) -> AuditSink {
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer_failing = failing.clone();
        let (queue, jobs) = mpsc::sync_channel::<Job>(8_192);
        // The checkpointer copies the WAL into the file when asked, so that no answer waits
        // for the copy and its fsync; a request that finds it busy is simply dropped. (The file
        // log only: PostgreSQL checkpoints by itself.)
        let (checkpoint_due, checkpoints) = mpsc::sync_channel::<()>(1);
        let file = match &log {
            Log::File(file) => Some(file.path().to_path_buf()),
            Log::Postgres(_) => None,
        };
        let wal_path = file.as_ref().map(|path| {
            let mut name = path.clone().into_os_string();
            name.push("-wal");
            std::path::PathBuf::from(name)
        });
        if let Some(checkpoint_path) = file {
            std::thread::Builder::new()
                .name("audit-checkpoint".into())
                .spawn(move || match onshi_store::audit::checkpoint_connection(&checkpoint_path) {
                    Ok(connection) => {
                        while checkpoints.recv().is_ok() {
                            if let Err(e) = onshi_store::audit::checkpoint(&connection) {
                                tracing::warn!(error = %e, "audit checkpoint failed; the WAL grows until the next one");
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the audit checkpointer cannot open the log; the WAL will grow"),
                })
                .expect("the audit checkpoint thread starts");
        }
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut commits = 0u32;
                // The first commit exports at once: a log always has a checkpoint beside it.
                let mut exported: Option<std::time::Instant> = None;
                let mut indexed = std::time::Instant::now();
                // Entries appended since the person index was last complete (at the start,
                // perhaps an earlier run's), and whether a pass stopped at its bound with more
                // to do.
                let (mut unindexed, mut pass_unfinished) = (matches!(log, Log::File(_)), false);
                // The last group was full: a backlog, written without gathering.
                let mut backlog = false;
                // Records of answered accesses whose write failed: written first, with the next
                // group, until a write works (bounded: once a write fails, no access is answered
                // before its records are committed).
                let mut retained: Vec<AuditRecord> = Vec::new();
                loop {
                    let first = if retained.is_empty() && (unindexed || pass_unfinished) {
                        // Entries not indexed yet: indexed when the next job comes or, when
                        // none does, once the time is up (a pass left unfinished continues
                        // at once; after a failed turn, a second later), so that a quiet
                        // center's index is complete.
                        let wait = if writer_failing.load(std::sync::atomic::Ordering::SeqCst) {
                            RETRY_EVERY
                        } else if pass_unfinished {
                            std::time::Duration::ZERO
                        } else {
                            PERSON_INDEX_EVERY.saturating_sub(indexed.elapsed())
                        };
                        match jobs.recv_timeout(wait) {
                            Ok(job) => Some(job),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    } else if retained.is_empty() {
                        match jobs.recv() {
                            Ok(job) => Some(job),
                            Err(_) => break,
                        }
                    } else {
                        match jobs.recv_timeout(RETRY_EVERY) {
                            Ok(job) => Some(job),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => {
                                if let Err(e) = log.append(&retained) {
                                    tracing::error!(error = %e, lost = retained.len(), "audit records of answered accesses could not be written before the stop");
                                }
                                break;
                            }
                        }
                    };
                    let mut batch: Vec<Job> = first.into_iter().collect();
                    let mut count = batch.first().map_or(0, |job| job.records.len());
                    // Someone waits (a view, a stop): commit now. Otherwise sleep GATHER and take
                    // what came meanwhile: a commit costs the same pages whether it carries one
                    // entry or fifty, and a writer asleep (not blocked in `recv`) costs the
                    // senders no wake-up per entry.
                    if !backlog && batch.first().is_some_and(|job| job.ack.is_none() && !job.records.is_empty()) {
                        std::thread::sleep(GATHER);
                    }
                    // Whatever else is already queued goes along.
                    while count < GROUP_MAX {
                        match jobs.try_recv() {
                            Ok(job) => {
                                count += job.records.len();
                                batch.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    let carried = std::mem::take(&mut retained);
                    let records: Vec<AuditRecord> =
                        carried.iter().cloned().chain(batch.iter().flat_map(|job| job.records.iter().cloned())).collect();
                    // A stop's flush: the index completed and the head exported before it is acked.
                    let flush = batch.iter().any(|job| job.flush);
                    backlog = count >= GROUP_MAX;
                    // Also when there is nothing to write (a turn for the index, a flush): on
                    // PostgreSQL that reaches the database; a failure is a failure either way.
                    let appended = log.append(&records);
                    unindexed |= matches!(log, Log::File(_)) && !records.is_empty() && appended.is_ok();
                    let append_failed = appended.is_err();
                    if let Err(e) = &appended {
                        retained = carried;
                        retained.extend(batch.iter().filter(|job| job.answered && job.ack.is_none()).flat_map(|job| job.records.iter().cloned()));
                        tracing::error!(error = %e, kept = retained.len(), "audit log write failed; accesses are refused until it works again, answered ones are written then");
                    }
                    // Whoever waits for a commit hears of it now, not after the upkeep below (a
                    // paced pass of the index takes tens of milliseconds); a flush waits for it.
                    let mut flushes = Vec::new();
                    for job in batch {
                        if job.flush {
                            flushes.push(job);
                        } else if let Some(ack) = job.ack {
                            let _ = ack.send(appended.clone());
                        }
                    }
                    let mut result = appended;
                    // Whether this turn wrote anything: only then may it say the log works again
                    // (an empty transaction touches no disk).
                    let mut wrote = !records.is_empty();
                    if result.is_ok() && (flush || (pass_unfinished && !backlog) || (unindexed && indexed.elapsed() >= PERSON_INDEX_EVERY)) {
                        indexed = std::time::Instant::now();
                        wrote = true;
                        match log.index_persons(flush) {
                            Ok(complete) => {
                                pass_unfinished = !complete;
                                unindexed &= !complete;
                            }
                            Err(e) => {
                                // Tried again a second later, not at once: a failing disk must
                                // not spin the writer.
                                pass_unfinished = false;
                                result = Err(e);
                            }
                        }
                    }
                    if result.is_ok() && (flush || exported.is_none_or(|at| at.elapsed() >= HEAD_EXPORT_EVERY)) {
                        exported = Some(std::time::Instant::now());
                        let (seq, seal) = log.head();
                        // Also a log line, so that a copy of the head lands outside the center's files.
                        tracing::info!(seq, seal = %seal, "audit checkpoint");
                        if let Err(e) = log.write_checkpoint(onshi_pki::now()) {
                            result = Err(e);
                        }
                    }
                    if let Err(e) = &result
                        && !append_failed
                    {
                        tracing::error!(error = %e, "audit log upkeep (person index or checkpoint) failed; accesses are refused until it works again");
                    }
                    if wrote || result.is_err() {
                        writer_failing.store(result.is_err(), std::sync::atomic::Ordering::SeqCst);
                    }
                    for job in flushes {
                        if let Some(ack) = job.ack {
                            let _ = ack.send(result.clone());
                        }
                    }
                    commits = commits.saturating_add(1);
                    if let (Log::File(file), Some(wal_path)) = (&log, &wal_path)
                        && commits >= CHECKPOINT_EVERY_COMMITS
                    {
                        commits = 0;
                        let wal = std::fs::metadata(wal_path).map(|m| m.len()).unwrap_or(0);
                        if wal > wal_bound {
                            match file.truncate_wal() {
                                Ok(true) => tracing::debug!(wal, "audit WAL checkpointed and truncated"),
                                Ok(false) => tracing::info!(wal, "audit WAL not truncated: a reader held it; tried again later"),
                                Err(e) => tracing::warn!(error = %e, wal, "audit WAL checkpoint failed; tried again later"),
                            }
                        } else {
                            let _ = checkpoint_due.try_send(());
                        }
                    }
                }
            })
            .expect("the audit writer thread starts");
        AuditSink { queue, reader, failing, closed: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Where a patient's access log is read from.
    pub fn reader(&self) -> AuditReader {
        self.reader.clone()
    }

    fn submit(&self, records: Vec<AuditRecord>) -> Result<tokio::sync::oneshot::Receiver<Result<(), String>>, CenterError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(unavailable("the center is stopping".into()));
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        self.queue
            .try_send(Job { records, ack: Some(ack), answered: false, flush: false })
            .map_err(|_| unavailable("the audit queue is full or closed".into()))?;
        Ok(done)
    }

    /// Queues records without waiting for their commit (the verifications). The access is
    /// refused when the queue is full or the last write failed; the records are still queued
    /// then, so the writer keeps trying and clears the failure once a write works.
    pub fn enqueue(&self, records: Vec<AuditRecord>) -> Result<(), CenterError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(unavailable("the center is stopping".into()));
        }
        // Answered only while the log works: then its records are kept until written.
        let answered = !self.failing.load(std::sync::atomic::Ordering::SeqCst);
        self.queue
            .try_send(Job { records, ack: None, answered, flush: false })
            .map_err(|_| unavailable("the audit queue is full or closed".into()))?;
        if !answered {
            return Err(unavailable("the audit log's last write failed".into()));
        }
        Ok(())
    }

    /// On a stop: accepts nothing more, then waits until everything queued before is committed
    /// (and the chain's head exported). The flush waits for room in a full queue instead of
    /// failing, so that entries already answered are never dropped.
    pub async fn close(&self) -> Result<(), CenterError> {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let (ack, done) = tokio::sync::oneshot::channel();
        let queue = self.queue.clone();
        tokio::task::spawn_blocking(move || queue.send(Job { records: Vec::new(), ack: Some(ack), answered: false, flush: true }))
            .await
            .map_err(|e| unavailable(format!("the audit flush failed: {e}")))?
            .map_err(|_| unavailable("the audit writer stopped".into()))?;
        done.await.map_err(|_| unavailable("the audit writer stopped".into()))?.map_err(unavailable)
    }

    /// Records and waits for the commit (from async handlers).
    pub async fn record(&self, records: Vec<AuditRecord>) -> Result<(), CenterError> {
        let done = self.submit(records)?;
        done.await.map_err(|_| unavailable("the audit writer stopped".into()))?.map_err(unavailable)
    }
}

fn unavailable(detail: String) -> CenterError {
    crate::errors::audit_unavailable(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::Timestamp;

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_jst_seconds(1_800_000_000 + i64::from(n)),
            actor: "1311234569".into(),
            action: "verify_number".into(),
            person_id: Some(i64::from(n % 7)),
            object: "06139999".into(),
            code: "1".into(),
        }
    }

    fn wal_size(path: &std::path::Path) -> u64 {
        let mut name = path.as_os_str().to_owned();
        name.push("-wal");
        std::fs::metadata(std::path::PathBuf::from(name)).map(|m| m.len()).unwrap_or(0)
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A sink writing a fresh log in `dir`, and the log's path.
    fn started(dir: &std::path::Path) -> (std::path::PathBuf, AuditSink) {
        let path = dir.join("audit.sqlite");
        let sink = AuditSink::start(AuditLog::open(&path, KEY).unwrap());
        (path, sink)
    }

    /// A center whose entries stop coming completes the person index and the tallies by itself
    /// within a second, not only at its next entry or its stop (a patient's access log is then
    /// read by the index alone, and the next busy second does not start with the index).
    #[tokio::test]
    async fn a_quiet_center_completes_its_person_index_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sink) = started(dir.path());
        for n in 0..10 {
            sink.record(vec![record(n)]).await.unwrap();
        }
        // Waited for on its condition, with a deadline: nothing else is sent meanwhile, so only
        // the writer's own pass can complete the index.
        let reader = AuditLog::open_read_only(&path, KEY).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let upto = reader.indexed_upto().unwrap();
            if upto == 10 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the person index stayed at {upto} of 10 entries");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        sink.close().await.unwrap();
    }

    /// An empty record (what a refused card flag or consent withdrawal submits: a request that
    /// proved nothing, which anyone holding a card's public certificate can send) is committed
    /// as any other, not taken for a stop's flush. Before, each made the writer complete the
    /// whole person index and export the chain's head.
    #[tokio::test]
    async fn an_empty_record_is_not_a_stop_s_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sink) = started(dir.path());
        let exported = || std::fs::read_to_string(onshi_store::audit::checkpoint_path(&path)).unwrap();
        // The first commit exports the head at once; the next one not before HEAD_EXPORT_EVERY.
        sink.record(vec![record(1)]).await.unwrap();
        sink.record(vec![record(2)]).await.unwrap();
        for _ in 0..3 {
            sink.record(Vec::new()).await.unwrap();
        }
        assert!(exported().contains("\"seq\":1,"), "an empty record exported the head: {}", exported());
        sink.close().await.unwrap();
        assert!(exported().contains("\"seq\":2,"), "a stop exports the head: {}", exported());
    }

    /// The write-ahead log stays bounded while entries keep coming: at every
    /// CHECKPOINT_EVERY_COMMITS-th commit the writer finds it over the bound and truncates it.
    /// (Passive checkpoints alone let a bench log grow to 2.9 GB.)
    #[tokio::test]
    async fn the_write_ahead_log_is_truncated_once_it_outgrows_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        let log = AuditLog::open(&path, b"0123456789abcdef0123456789abcdef").unwrap();
        let sink = AuditSink::start_bounded(log, 64 << 10);
        let mut largest = 0;
        // Each awaited entry is a commit of its own, and the writer takes jobs in order: once the
        // entry after the checkpointing commit is acknowledged, the truncation is behind it.
        for n in 0..CHECKPOINT_EVERY_COMMITS {
            sink.record(vec![record(n)]).await.unwrap();
            largest = largest.max(wal_size(&path));
        }
        sink.record(vec![record(CHECKPOINT_EVERY_COMMITS)]).await.unwrap();
        let after = wal_size(&path);
        // Every commit appends at least one page of 4 KiB to the log.
        assert!(largest >= u64::from(CHECKPOINT_EVERY_COMMITS - 1) * 4096, "the log grew to {largest} bytes");
        assert!(after <= 64 << 10, "the log was {largest} bytes and is still {after} bytes after the checkpoint");
        sink.close().await.unwrap();
        let verified = AuditLog::open_read_only(&path, b"0123456789abcdef0123456789abcdef").unwrap().verify().unwrap();
        assert_eq!(verified, Ok(CHECKPOINT_EVERY_COMMITS as usize + 1), "every entry is in the chain after the truncations");
    }
}
