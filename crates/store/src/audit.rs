//! The audit log (監査ログ): every verification, every view and every refusal, appended to a
//! SQLite file of its own, each entry carrying the HMAC-SHA256 of its fields chained to the
//! entry before it. Without the center's audit key nobody can write an entry that verifies, so
//! [`AuditLog::verify`] finds a changed, inserted or deleted entry and says where.
//!
//! Entries hold ids and codes only: the institution code, an opaque person id, a certificate
//! serial or reader id, the action and its result code. Never a name or a birth date.
//!
//! Durability: WAL with `synchronous = NORMAL` — a committed entry survives a crash of the
//! process; an OS crash may lose the last commits (the center answers only after the commit).

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use onshi_domain::Timestamp;
use rusqlite::{Connection, params};

use crate::StoreError;

/// One audited event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: Timestamp,
    /// 医療機関コード of the caller, `patient` for a card holder, or `-`.
    pub actor: String,
    /// `verify_number`, `verify_card`, `link_card`, `flag_card`, `view_drug`, `view_checkup`,
    /// `access_log`, …
    pub action: String,
    /// The register's opaque person id, when known.
    pub person_id: Option<i64>,
    /// A certificate serial, a reader id or an insurer number: what the action was about.
    pub object: String,
    /// The outcome: a validity code, `ok`, or the refusal's stable code.
    pub code: String,
}

/// An entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub record: AuditRecord,
    pub mac: String,
}

/// How many entries of one kind an actor left on one Japan day, with one outcome code: what
/// the operator's dashboard and `/metrics` count from. Derived from the sealed entries only
/// (see [`tally_kinds`]), so a recount of the log must give the same figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Japan day, `YYYYMMDD` as a number.
    pub day: u32,
    pub actor: String,
    pub kind: String,
    pub code: String,
    pub count: u64,
}

/// The tallies being summed, by (day, actor, kind, code).
pub type TallyMap = std::collections::BTreeMap<(u32, String, String, String), u64>;

/// What an entry counts as: its action, except that a card verification (and a recorded one
/// asked again after an outage, `reverify_card`) counts by its method (`verify_card:pin`,
/// `:face`, `:visual`, from the object `method:serial[:scopes]`) and once
/// more for each consent scope given with it (`consent:drug`, …). One rule, used when entries
/// are tallied, when a tally is read with the entries not tallied yet, and by a recount.
pub fn tally_kinds(record: &AuditRecord) -> Vec<String> {
    if record.action != "verify_card" && record.action != "reverify_card" {
        return vec![record.action.clone()];
    }
    let mut parts = record.object.splitn(3, ':');
    let method = parts.next().filter(|m| !m.is_empty() && record.object.contains(':')).unwrap_or("unknown");
    let mut kinds = vec![format!("{}:{method}", record.action)];
    if let Some(scopes) = parts.nth(1) {
        kinds.extend(scopes.split(',').filter(|s| !s.is_empty()).map(|scope| format!("consent:{scope}")));
    }
    kinds
}

/// Adds one entry to `tallies`.
pub fn tally_into(tallies: &mut TallyMap, record: &AuditRecord) {
    let day = record.at.date();
    let day = u32::from(day.year()) * 10_000 + u32::from(day.month()) * 100 + u32::from(day.day());
    for kind in tally_kinds(record) {
        *tallies.entry((day, record.actor.clone(), kind, record.code.clone())).or_default() += 1;
    }
}

/// The tallies as rows, in key order.
pub fn tally_rows(tallies: TallyMap) -> Vec<Tally> {
    tallies.into_iter().map(|((day, actor, kind, code), count)| Tally { day, actor, kind, code, count }).collect()
}

/// Where the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// The entry's fields, its position or its predecessor are not what its seal covers: it
    /// was changed, written by someone without the audit key (an insertion), or the entries
    /// around it were renumbered.
    #[error(
        "entry {seq} does not carry the center's seal for its place in the chain: it was changed, inserted, or the entries before it were renumbered"
    )]
    Unsealed { seq: i64 },
    #[error("entries after {after} up to {seq} (exclusive) are missing: deleted")]
    Deleted { after: i64, seq: i64 },
    /// The newest entries were removed: the last checkpoint names an entry the log no longer
    /// has, or one with another seal.
    #[error(
        "the last checkpoint names entry {checkpoint} with seal {seal}, but the log ends at entry {head} or differs there: the newest entries were deleted or replaced"
    )]
    Truncated { checkpoint: i64, seal: String, head: i64 },
    /// The log has entries but no checkpoint beside it: deleted (perhaps with the newest
    /// entries), or the log was never run by a center that exports its head.
    #[error(
        "the log has entries but no checkpoint at {0}: it was deleted (with the newest entries, perhaps), or no center of this version ran on this log; compare the head with a copy kept elsewhere"
    )]
    CheckpointMissing(String),
    /// The chain is intact but the index a patient's access log is read by lists an entry
    /// under another person, lists one the log does not have, or leaves one out: someone
    /// edited it to hide (or show) an access.
    #[error(
        "entry {seq} is missing from, or wrongly placed in, the index the patients' access logs are read by: it was edited (the chain itself is intact)"
    )]
    PersonIndex { seq: i64 },
    /// The tallies the dashboard shows differ from a recount of the (intact) log.
    #[error(
        "the tally of {kind} by {actor} on {day} with outcome {code} differs from a recount of the log: the tallies were edited (the chain itself is intact)"
    )]
    Tally { day: u32, actor: String, kind: String, code: String },
    /// The checkpoint file itself does not carry the center's seal.
    #[error("the checkpoint file {0} does not carry the center's seal: it was edited")]
    CheckpointUnsealed(String),
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    person_id INTEGER,
    object    TEXT NOT NULL,
    code      TEXT NOT NULL,
    mac       TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit_meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit_tally (
    day    INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    kind   TEXT NOT NULL,
    code   TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (day, actor, kind, code)
) STRICT, WITHOUT ROWID;";

/// The person index (see [`PERSON_CHUNK_BITS`]), created apart from [`SCHEMA`] so that a log
/// with the former layout is first moved (`migrate_person_index`).
const PERSON_TABLE: &str = "CREATE TABLE IF NOT EXISTS audit_person (
    chunk     INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (chunk, person_id, seq)
) STRICT, WITHOUT ROWID;";

/// Up to which entry `audit_tally` counts the log; the entries after it are counted when read.
const TALLIED_UPTO: &str = "tallied_upto";

/// Up to which entry `audit_person` lists the entries about each person. The entries after it
/// are found by a range scan of the log's newest entries (see [`AuditLog::index_persons`]).
const PERSON_INDEXED_UPTO: &str = "person_indexed_upto";

/// Entries indexed and tallied per transaction of [`AuditLog::index_persons`].
const INDEX_STEP_ENTRIES: i64 = 16_384;
/// Entries indexed and tallied between two pauses of [`AuditLog::index_persons_paced`]: about
/// 0.4 ms of the writer's CPU (1.4–1.5 µs an entry at 10 M persons: 17 ms for a second's
/// 11,600 entries, `perf sched`).
pub const INDEX_SLICE_ENTRIES: i64 = 256;

/// The person index is keyed by the chunk of the log an entry falls in (`seq >>` this), then
/// the person: each second's entries go into the newest chunk's small subtree. Keyed by person
/// alone, they landed on random pages of one tree as large as the log's history, and at 8 M
/// entries each second's sorted insert rewrote most of that tree: the writer fell behind,
/// its queue filled, and verifications were refused (`AUDIT_UNAVAILABLE`). A person's entries
/// are read with one seek per chunk of 2^18 entries (entries ÷ 2^18 seeks per statement: about
/// 3,800 for a log of a billion). The size is a trade: a pass of the index writes about the
/// newest chunk's subtree into the WAL at its commit, about 1,300 pages and 2–4 ms of the core
/// the request workers share, once a second at 10 M persons; chunks of 2^16 entries (330
/// pages, about 1 ms) were tried and left, their gain in the latency tail within the runs'
/// spread (docs/PERFORMANCE.md). The unit tests use chunks of four entries, so every read in
/// them crosses chunks.
const PERSON_CHUNK_BITS: u32 = if cfg!(test) { 2 } else { 18 };

/// Where the chunk size the person index was built with is recorded: a log is read with its
/// own, and a center whose [`PERSON_CHUNK_BITS`] differs rebuilds the index on opening.
const PERSON_CHUNK_BITS_KEY: &str = "person_chunk_bits";

/// The chunk size a log's person index was built with (the current one if it says none).
fn chunk_bits(connection: &Connection) -> Result<u32, StoreError> {
    Ok(meta_value(connection, PERSON_CHUNK_BITS_KEY)?.and_then(|bits| u32::try_from(bits).ok()).unwrap_or(PERSON_CHUNK_BITS).min(62))
}

/// The seqs of one person (`?1`) that the person index lists, up to entry `?2` (where it is
/// complete, and never past the log's newest entry): one seek per chunk, chunk by chunk.
fn indexed_seqs_sql(connection: &Connection) -> Result<String, StoreError> {
    Ok(if person_index_layout(connection)? == Some(PersonIndex::Chunked) {
        let bits = chunk_bits(connection)?;
        format!(
            "SELECT p.seq FROM (WITH RECURSIVE chunks(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM chunks
                 WHERE n < (min(?2, (SELECT coalesce(max(seq), 0) FROM audit_log)) >> {bits}))
               SELECT n FROM chunks) AS c CROSS JOIN audit_person p ON p.chunk = c.n AND p.person_id = ?1"
        )
    } else {
        // A log made before the chunks, read without writing: keyed by person.
        "SELECT seq FROM audit_person WHERE person_id = ?1".to_string()
    })
}

/// The layouts of the person table a log may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PersonIndex {
    /// Keyed by person alone (a log this version has not opened for writing yet).
    ByPerson,
    /// Keyed by chunk, then person ([`PERSON_CHUNK_BITS`]).
    Chunked,
}

/// The person table's layout; `None` when the log has none (made before it existed).
fn person_index_layout(connection: &Connection) -> Result<Option<PersonIndex>, StoreError> {
    let (columns, chunk): (i64, i64) = connection
        .query_row("SELECT count(*), count(*) FILTER (WHERE name = 'chunk') FROM pragma_table_info('audit_person')", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sqlite("reading the audit log's person index"))?;
    Ok(match (columns, chunk) {
        (0, _) => None,
        (_, 0) => Some(PersonIndex::ByPerson),
        _ => Some(PersonIndex::Chunked),
    })
}

/// From which entry the seals are length-prefixed (format 2). Earlier entries of a log made
/// before keep their format-1 seals, which still verify.
const LENGTH_PREFIXED_FROM: &str = "length_prefixed_from";

/// The seal of the first entry's predecessor.
pub(crate) const GENESIS: &str = "onshi-audit-genesis";

fn sqlite(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Engine { doing, source: Box::new(source) }
}

/// The seal of an entry. Format 2 prefixes every field with its length, so that no field's
/// content can move a boundary between fields (format 1 joined them with U+001F, which a
/// field could contain: an entry re-split across its fields kept its seal).
pub(crate) fn seal(key: &hmac::Key, previous: &str, seq: i64, r: &AuditRecord, length_prefixed: bool) -> String {
    let person = r.person_id.map_or(String::new(), |p| p.to_string());
    let fields = [previous, &seq.to_string(), &r.at.jst_seconds().to_string(), &r.actor, &r.action, &person, &r.object, &r.code];
    let bytes = if length_prefixed {
        let mut bytes = Vec::with_capacity(256);
        for field in fields {
            bytes.extend_from_slice(&(field.len() as u64).to_be_bytes());
            bytes.extend_from_slice(field.as_bytes());
        }
        bytes
    } else {
        fields.join("\u{1f}").into_bytes()
    };
    onshi_domain::hex::encode(hmac::sign(key, &bytes).as_ref())
}

/// Where the chain's head is exported beside the log at `log`.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    log.with_extension("checkpoint")
}

fn checkpoint_seal(key: &hmac::Key, seq: i64, seal: &str, at: i64) -> String {
    let text = format!("onshi-audit-checkpoint/1\n{seq}\n{seal}\n{at}");
    onshi_domain::hex::encode(hmac::sign(key, text.as_bytes()).as_ref())
}

/// Every entry about one person from the log at `path`, read-only beside the writer.
pub fn read_person_entries(path: &Path, person_id: i64) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(read_newest_person_entries(path, person_id, i64::MAX)?.1)
}

/// How many entries one person has, and the newest `limit` of them, oldest first: what a
/// patient's own request reads (bounded, however long the log).
pub fn read_newest_person_entries(path: &Path, person_id: i64, limit: i64) -> Result<(i64, Vec<AuditEntry>), StoreError> {
    let mut connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open { path: path.display().to_string(), source: Box::new(source) })?;
    connection.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite("configuring an audit reader"))?;
    newest_person_entries(&mut connection, person_id, limit)
}

/// One snapshot: the person's indexed entries and those the index does not cover yet.
fn newest_person_entries(connection: &mut Connection, person_id: i64, limit: i64) -> Result<(i64, Vec<AuditEntry>), StoreError> {
    let tx = connection.transaction().map_err(sqlite("reading a person's audit entries"))?;
    // An index claimed complete past the log's end cannot be right (an edit; the writer indexes
    // again from the start at its next step): the log itself is read then, as for a log
    // without the index.
    let newest: i64 =
        tx.query_row("SELECT coalesce(max(seq), 0) FROM audit_log", [], |r| r.get(0)).map_err(sqlite("reading the audit log"))?;
    let entries = match meta_value(&tx, PERSON_INDEXED_UPTO)?.filter(|upto| *upto <= newest) {
        Some(upto) => {
            // UNION, so that a row copied in the index cannot take a place among the newest.
            let seqs = format!("{} UNION SELECT seq FROM audit_log WHERE seq > ?2 AND person_id = ?1", indexed_seqs_sql(&tx)?);
            let total: i64 = tx
                .query_row(&format!("SELECT count(*) FROM ({seqs})"), params![person_id, upto], |r| r.get(0))
                .map_err(sqlite("counting a person's audit entries"))?;
            let filter = format!("WHERE seq IN (SELECT seq FROM ({seqs}) ORDER BY seq DESC LIMIT ?3)");
            (total, entries_where(&tx, &filter, &[&person_id, &upto, &limit])?)
        }
        // A log no center of this version has opened yet (its entries carry their own index),
        // or one whose index claims too much (a scan of the log).
        None => {
            let total: i64 = tx
                .query_row("SELECT count(*) FROM audit_log WHERE person_id = ?1", [person_id], |r| r.get(0))
                .map_err(sqlite("counting a person's audit entries"))?;
            let filter = "WHERE seq IN (SELECT seq FROM audit_log WHERE person_id = ?1 ORDER BY seq DESC LIMIT ?2)";
            (total, entries_where(&tx, filter, &[&person_id, &limit])?)
        }
    };
    tx.commit().map_err(sqlite("reading a person's audit entries"))?;
    Ok(entries)
}

/// Tallies of the days `from..=to`: the table, plus the entries it does not count yet, in
/// one snapshot.
fn tallies_between(connection: &mut Connection, from: u32, to: u32) -> Result<Vec<Tally>, StoreError> {
    let tx = connection.transaction().map_err(sqlite("reading the audit tallies"))?;
    let tallies = tallies_in(&tx, from, to)?;
    drop(tx);
    Ok(tallies)
}

/// [`tallies_between`] inside a transaction the caller holds.
fn tallies_in(tx: &Connection, from: u32, to: u32) -> Result<Vec<Tally>, StoreError> {
    let mut tallies = TallyMap::new();
    let tallied = match meta_value(tx, TALLIED_UPTO)? {
        Some(upto) => {
            let mut statement = tx
                .prepare("SELECT day, actor, kind, code, n FROM audit_tally WHERE day BETWEEN ?1 AND ?2")
                .map_err(sqlite("reading the audit tallies"))?;
            let mut rows = statement.query(params![from, to]).map_err(sqlite("reading the audit tallies"))?;
            while let Some(r) = rows.next().map_err(sqlite("reading the audit tallies"))? {
                let key = (
                    r.get(0).map_err(sqlite("reading the audit tallies"))?,
                    r.get(1).map_err(sqlite("reading the audit tallies"))?,
                    r.get(2).map_err(sqlite("reading the audit tallies"))?,
                    r.get(3).map_err(sqlite("reading the audit tallies"))?,
                );
                *tallies.entry(key).or_default() += r.get::<_, i64>(4).map_err(sqlite("reading the audit tallies"))?.max(0) as u64;
            }
            upto
        }
        None => 0,
    };
    for_each_entry(tx, tallied, i64::MAX, |entry| tally_into(&mut tallies, &entry.record))?;
    tallies.retain(|(day, ..), _| (from..=to).contains(day));
    Ok(tally_rows(tallies))
}

/// The first key where a recount and the stored tallies differ.
pub(crate) fn compare_tallies(recount: TallyMap, stored: Vec<Tally>) -> Result<(), Tamper> {
    let stored: TallyMap = stored.into_iter().map(|t| ((t.day, t.actor, t.kind, t.code), t.count)).collect();
    let differs = recount
        .iter()
        .find(|(key, count)| stored.get(*key) != Some(count))
        .map(|(key, _)| key.clone())
        .or_else(|| stored.keys().find(|key| !recount.contains_key(*key)).cloned());
    match differs {
        Some((day, actor, kind, code)) => Err(Tamper::Tally { day, actor, kind, code }),
        None => Ok(()),
    }
}

/// Calls `each` with every entry after `after` up to `upto`, oldest first, one at a time.
fn for_each_entry(connection: &Connection, after: i64, upto: i64, mut each: impl FnMut(AuditEntry)) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT seq, at, actor, action, person_id, object, code, mac FROM audit_log WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        )
        .map_err(sqlite("reading the audit log"))?;
    let mut rows = statement.query(params![after, upto]).map_err(sqlite("reading the audit log"))?;
    while let Some(row) = rows.next().map_err(sqlite("reading the audit log"))? {
        each(entry_of(row).map_err(sqlite("reading the audit log"))?);
    }
    Ok(())
}

/// The tallies of the log at `path` for the days `from..=to`, read-only beside the writer.
pub fn read_tallies(path: &Path, from: u32, to: u32) -> Result<Vec<Tally>, StoreError> {
    let mut connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open { path: path.display().to_string(), source: Box::new(source) })?;
    connection.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite("configuring an audit reader"))?;
    tallies_between(&mut connection, from, to)
}

/// A value of `audit_meta`; `None` when the log has no such record (or no such table: a log
/// made by an older version, read without writing).
fn meta_value(connection: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    use rusqlite::OptionalExtension;
    connection
        .query_row("SELECT value FROM audit_meta WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .or_else(|e| if e.to_string().contains("no such table") { Ok(None) } else { Err(e) })
        .map_err(sqlite("reading the audit log's records"))
}

fn entries_where(connection: &Connection, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<AuditEntry>, StoreError> {
    let mut statement = connection
        .prepare(&format!("SELECT seq, at, actor, action, person_id, object, code, mac FROM audit_log {filter} ORDER BY seq"))
        .map_err(sqlite("reading the audit log"))?;
    let rows = statement.query_map(args, entry_of).map_err(sqlite("reading the audit log"))?;
    rows.collect::<Result<_, _>>().map_err(sqlite("reading the audit log"))
}

/// An entry from a row of `seq, at, actor, action, person_id, object, code, mac`.
fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        record: AuditRecord {
            at: Timestamp::from_jst_seconds(r.get(1)?),
            actor: r.get(2)?,
            action: r.get(3)?,
            person_id: r.get(4)?,
            object: r.get(5)?,
            code: r.get(6)?,
        },
        mac: r.get(7)?,
    })
}

/// Copies the write-ahead log of the audit file at `path` into the file on a connection of its
/// own (PASSIVE: it never blocks the appender). The appender's connection has automatic
/// checkpoints switched off so that no answer waits for one.
pub fn checkpoint(connection: &Connection) -> Result<(), StoreError> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(sqlite("checkpointing the audit log"))
}

/// A connection for [`checkpoint`].
pub fn checkpoint_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection =
        Connection::open(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source: Box::new(source) })?;
    connection.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite("configuring the audit checkpointer"))?;
    Ok(connection)
}

/// The audit log file.
pub struct AuditLog {
    path: PathBuf,
    connection: Connection,
    key: hmac::Key,
    /// The last entry's seq and seal, so that appends need no read.
    head: (i64, String),
    /// Entries from this seq on carry format-2 (length-prefixed) seals.
    length_prefixed_from: i64,
}

/// The first entry sealed in format 2; a log without the record (read before this version
/// wrote to it) has format-1 seals only.
fn length_prefixed_from(connection: &Connection) -> Result<i64, StoreError> {
    Ok(meta_value(connection, LENGTH_PREFIXED_FROM)?.unwrap_or(i64::MAX))
}

/// Brings a log's person index to this version's layout, in one transaction before anything is
/// served: a log made before the index became a table of its own (the index on the log itself
/// made every group commit write one page per person it touched; the table is filled in sorted
/// batches instead), and one whose table is keyed by person alone or chunked by another size
/// ([`PERSON_CHUNK_BITS`]). One way: an older binary cannot write the chunked table.
fn migrate_person_index(connection: &mut Connection) -> Result<(), StoreError> {
    let tx = connection.transaction().map_err(sqlite("moving the audit log's person index"))?;
    // A person table keyed by person alone (the version before the chunks), or in chunks of
    // another size than this version's: rebuilt in this version's chunks, sorted once. Both
    // carry the person and the seq, which is all the rebuild reads.
    let rebuild = match person_index_layout(&tx)? {
        Some(PersonIndex::ByPerson) => true,
        Some(PersonIndex::Chunked) => chunk_bits(&tx)? != PERSON_CHUNK_BITS,
        None => false,
    };
    if rebuild {
        tx.execute_batch(&format!(
            "ALTER TABLE audit_person RENAME TO audit_person_before;
             {PERSON_TABLE}
             INSERT INTO audit_person (chunk, person_id, seq)
               SELECT seq >> {PERSON_CHUNK_BITS}, person_id, seq FROM audit_person_before ORDER BY 1, 2, 3;
             DROP TABLE audit_person_before;"
        ))
        .map_err(sqlite("moving the audit log's person index into chunks"))?;
    }
    // A new log, or one from before the person table.
    tx.execute_batch(PERSON_TABLE).map_err(sqlite("creating the audit log's person index"))?;
    tx.execute("INSERT OR REPLACE INTO audit_meta (name, value) VALUES (?1, ?2)", params![PERSON_CHUNK_BITS_KEY, PERSON_CHUNK_BITS])
        .map_err(sqlite("recording the audit log's person index chunk size"))?;
    if meta_value(&tx, PERSON_INDEXED_UPTO)?.is_none() {
        tx.execute_batch(&format!(
            "INSERT OR IGNORE INTO audit_person (chunk, person_id, seq)
               SELECT seq >> {PERSON_CHUNK_BITS}, person_id, seq FROM audit_log WHERE person_id IS NOT NULL ORDER BY 1, 2, 3;
             INSERT INTO audit_meta (name, value) SELECT 'person_indexed_upto', coalesce(max(seq), 0) FROM audit_log;
             DROP INDEX IF EXISTS audit_by_person;"
        ))
        .map_err(sqlite("moving the audit log's person index"))?;
    }
    tx.commit().map_err(sqlite("moving the audit log's person index"))
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`, sealed with `key` (at least 32 bytes).
    pub fn open(path: &Path, key: &[u8]) -> Result<AuditLog, StoreError> {
        let connection =
            Connection::open(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source: Box::new(source) })?;
        connection
            // Checkpoints run on their own connection (see `checkpoint`), never on the append path.
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 0;",
            )
            .map_err(sqlite("configuring the audit log"))?;
        let mut connection = connection;
        connection.execute_batch(SCHEMA).map_err(sqlite("creating the audit log"))?;
        migrate_person_index(&mut connection)?;
        let head: (i64, String) = connection
            .query_row("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap_or((0, GENESIS.to_string()));
        // Entries appended from now on are sealed in format 2 (a new log: all of them).
        connection
            .execute("INSERT OR IGNORE INTO audit_meta (name, value) VALUES (?1, ?2)", params![LENGTH_PREFIXED_FROM, head.0 + 1])
            .map_err(sqlite("recording the audit seal format"))?;
        let length_prefixed_from = length_prefixed_from(&connection)?;
        let log =
            AuditLog { path: path.to_path_buf(), connection, key: hmac::Key::new(hmac::HMAC_SHA256, key), head, length_prefixed_from };
        // A log left by a process that did not stop cleanly may carry a long write-ahead log:
        // it is copied in now, before anything is served, not while verifications wait.
        log.truncate_wal()?;
        Ok(log)
    }

    /// Opens an existing log read-only, to check it: nothing is created or written (not even
    /// the write-ahead log's settings).
    pub fn open_read_only(path: &Path, key: &[u8]) -> Result<AuditLog, StoreError> {
        let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source: Box::new(source) })?;
        connection.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite("configuring an audit reader"))?;
        let head = connection
            .query_row("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap_or((0, GENESIS.to_string()));
        let length_prefixed_from = length_prefixed_from(&connection)?;
        Ok(AuditLog { path: path.to_path_buf(), connection, key: hmac::Key::new(hmac::HMAC_SHA256, key), head, length_prefixed_from })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records in one transaction; returns their sequence numbers.
    pub fn append(&mut self, records: &[AuditRecord]) -> Result<Vec<i64>, StoreError> {
        let tx = self.connection.transaction().map_err(sqlite("starting an audit append"))?;
        let (mut seq, mut previous) = self.head.clone();
        let mut sequences = Vec::with_capacity(records.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO audit_log (seq, at, actor, action, person_id, object, code, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sqlite("preparing an audit append"))?;
            for record in records {
                seq += 1;
                let mac = seal(&self.key, &previous, seq, record, seq >= self.length_prefixed_from);
                insert
                    .execute(params![
                        seq,
                        record.at.jst_seconds(),
                        record.actor,
                        record.action,
                        record.person_id,
                        record.object,
                        record.code,
                        mac
                    ])
                    .map_err(sqlite("appending to the audit log"))?;
                previous = mac;
                sequences.push(seq);
            }
        }
        tx.commit().map_err(sqlite("committing to the audit log"))?;
        self.head = (seq, previous);
        Ok(sequences)
    }

    /// Brings the person index and the tallies up to the newest entry, in steps of
    /// [`INDEX_STEP_ENTRIES`], each its own transaction with its progress (a log indexed for
    /// the first time, millions of entries, commits as it goes). For a stop, a test, a tool:
    /// the center's writer, sharing a core with the requests, uses [`Self::index_persons_paced`].
    pub fn index_persons(&mut self) -> Result<(), StoreError> {
        while !self.index_persons_paced(INDEX_STEP_ENTRIES, || {})? {}
        Ok(())
    }

    /// Indexes and tallies at most `most` entries past what is done, in one transaction, in
    /// slices of [`INDEX_SLICE_ENTRIES`] with `pause` called between two slices; true once both
    /// reach the head.
    ///
    /// Why the pause: the writer shares the center's core with the request workers, and the
    /// kernel only takes the core back from a thread that keeps it at its next tick (4 ms at
    /// 250 Hz). A second's entries indexed in one go held the core 2–5 ms at a time while the
    /// requests queued behind it; yielding between pieces did not help (a fair scheduler gives
    /// the core back to the writer, owed its share). A writer that sleeps between slices of
    /// a few hundred microseconds keeps a request waiting at most one slice, or the pass's
    /// commit (about 2 ms at 10 M persons: writing the pages the pass changed into the WAL;
    /// docs/PERFORMANCE.md, the latency tail). One transaction for all the slices: the
    /// newest chunk's pages are written once per call, not once per slice.
    pub fn index_persons_paced(&mut self, most: i64, mut pause: impl FnMut()) -> Result<bool, StoreError> {
        let head = self.head.0;
        let tx = self.connection.transaction().map_err(sqlite("indexing the audit log by person"))?;
        let mut upto = meta_value(&tx, PERSON_INDEXED_UPTO)?.unwrap_or(0);
        if upto > head {
            // Claimed beyond the log (an edit): indexed again from the start, so that no new
            // entry is left out (the rows already there are kept, the insert ignores them).
            tracing::warn!(claimed = upto, head, "the audit person index claimed entries the log does not have; indexing again");
            upto = 0;
        }
        let indexed_to = head.min(upto.saturating_add(most));
        // The tallies, in the same transaction: entries up to the head counted once. A log
        // made before tallies existed is counted from its first entry the first time.
        let tallied = meta_value(&tx, TALLIED_UPTO)?.unwrap_or(0);
        let tallied_to = head.min(tallied.saturating_add(most));
        let mut tallies = TallyMap::new();
        let (mut indexing, mut tallying) = (upto, tallied);
        while indexing < indexed_to || tallying < tallied_to {
            if indexing > upto || tallying > tallied {
                pause();
            }
            if indexing < indexed_to {
                let next = indexed_to.min(indexing.saturating_add(INDEX_SLICE_ENTRIES));
                tx.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO audit_person (chunk, person_id, seq)
                     SELECT seq >> {PERSON_CHUNK_BITS}, person_id, seq FROM audit_log
                      WHERE seq > ?1 AND seq <= ?2 AND person_id IS NOT NULL ORDER BY 1, 2, 3"
                ))
                .and_then(|mut insert| insert.execute(params![indexing, next]))
                .map_err(sqlite("indexing the audit log by person"))?;
                indexing = next;
            }
            if tallying < tallied_to {
                let next = tallied_to.min(tallying.saturating_add(INDEX_SLICE_ENTRIES));
                for_each_entry(&tx, tallying, next, |entry| tally_into(&mut tallies, &entry.record))?;
                tallying = next;
            }
        }
        if upto != indexed_to {
            tx.execute("UPDATE audit_meta SET value = ?2 WHERE name = ?1", params![PERSON_INDEXED_UPTO, indexed_to])
                .map_err(sqlite("indexing the audit log by person"))?;
        }
        if tallied < tallied_to {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO audit_tally (day, actor, kind, code, n) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (day, actor, kind, code) DO UPDATE SET n = n + excluded.n",
                )
                .map_err(sqlite("tallying the audit log"))?;
            for ((day, actor, kind, code), count) in tallies {
                upsert.execute(params![day, actor, kind, code, count as i64]).map_err(sqlite("tallying the audit log"))?;
            }
            drop(upsert);
            tx.execute("INSERT OR REPLACE INTO audit_meta (name, value) VALUES (?1, ?2)", params![TALLIED_UPTO, tallied_to])
                .map_err(sqlite("tallying the audit log"))?;
        }
        tx.commit().map_err(sqlite("indexing the audit log by person"))?;
        Ok(indexed_to >= head && tallied_to >= head)
    }

    /// Up to which entry both the person index and the tallies are complete.
    pub fn indexed_upto(&self) -> Result<i64, StoreError> {
        let indexed = meta_value(&self.connection, PERSON_INDEXED_UPTO)?.unwrap_or(0);
        let tallied = meta_value(&self.connection, TALLIED_UPTO)?.unwrap_or(0);
        Ok(indexed.min(tallied))
    }

    /// The tallies of the Japan days `from..=to` (`YYYYMMDD`), exact to the newest entry.
    pub fn tallies(&mut self, from: u32, to: u32) -> Result<Vec<Tally>, StoreError> {
        tallies_between(&mut self.connection, from, to)
    }

    /// Recounts the whole log and compares the count with the tallies: the first (day, actor,
    /// kind, code) whose tally differs, when one does (someone edited the tallies to change
    /// what the dashboard shows).
    pub fn check_tallies(&mut self) -> Result<Result<(), Tamper>, StoreError> {
        // One snapshot for both: a center appending meanwhile must not look like an edit.
        let tx = self.connection.transaction().map_err(sqlite("reading the audit log"))?;
        let mut recount = TallyMap::new();
        for_each_entry(&tx, 0, i64::MAX, |entry| tally_into(&mut recount, &entry.record))?;
        let stored = tallies_in(&tx, 0, u32::MAX)?;
        drop(tx);
        Ok(compare_tallies(recount, stored))
    }

    /// Every entry about one person, oldest first.
    pub fn entries_for_person(&mut self, person_id: i64) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(newest_person_entries(&mut self.connection, person_id, i64::MAX)?.1)
    }

    /// Walks the whole chain; `Ok(count)` when every entry is intact. Removing the newest
    /// entries leaves an intact shorter chain: compare the head ([`AuditLog::head`]) with a
    /// copy kept elsewhere to catch that.
    ///
    /// The entries are read one at a time, never held together: a log of years verifies in
    /// the memory of one entry.
    pub fn verify(&self) -> Result<Result<usize, Tamper>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT seq, at, actor, action, person_id, object, code, mac FROM audit_log ORDER BY seq")
            .map_err(sqlite("reading the audit log"))?;
        let mut rows = statement.query([]).map_err(sqlite("reading the audit log"))?;
        let mut previous = (0, GENESIS.to_string());
        let mut count = 0;
        while let Some(row) = rows.next().map_err(sqlite("reading the audit log"))? {
            let entry = entry_of(row).map_err(sqlite("reading the audit log"))?;
            if entry.seq != previous.0 + 1 {
                return Ok(Err(Tamper::Deleted { after: previous.0, seq: entry.seq }));
            }
            if seal(&self.key, &previous.1, entry.seq, &entry.record, entry.seq >= self.length_prefixed_from) != entry.mac {
                return Ok(Err(Tamper::Unsealed { seq: entry.seq }));
            }
            previous = (entry.seq, entry.mac);
            count += 1;
        }
        Ok(Ok(count))
    }

    /// Compares the person index (what a patient's access log is read by) with the log, up to
    /// where it claims to be complete: the first entry it lists wrongly (under another person,
    /// or one the log does not have) or leaves out. Run after [`AuditLog::verify`] and
    /// [`AuditLog::check_checkpoint`], which name a deletion more precisely.
    pub fn check_person_index(&self) -> Result<Result<(), Tamper>, StoreError> {
        use rusqlite::OptionalExtension;
        // One snapshot: a center indexing meanwhile must not look like an edit.
        let tx = self.connection.unchecked_transaction().map_err(sqlite("checking the audit log's person index"))?;
        let Some(upto) = meta_value(&tx, PERSON_INDEXED_UPTO)? else { return Ok(Ok(())) };
        // Claiming more than the log holds is an edit (the writer indexes again from the start
        // when it sees one; readers stop at the log's end).
        let newest: i64 = tx
            .query_row("SELECT coalesce(max(seq), 0) FROM audit_log", [], |r| r.get(0))
            .map_err(sqlite("checking the audit log's person index"))?;
        if upto > newest {
            return Ok(Err(Tamper::PersonIndex { seq: upto }));
        }
        let bits = chunk_bits(&tx)?;
        // A row stored as text reads as its number when compared with the log's column, but not
        // when the reader binds the person: only integers count. A row in another chunk than
        // its entry's is as good as missing: the reader looks for each entry in its own chunk.
        let (same_chunk, find) = match person_index_layout(&tx)? {
            Some(PersonIndex::Chunked) => (
                format!("typeof(p.chunk) = 'integer' AND p.chunk = (p.seq >> {bits})"),
                format!("p.chunk = (l.seq >> {bits}) AND p.person_id = l.person_id AND p.seq = l.seq"),
            ),
            // A log this version has not opened for writing (`onshi audit verify` of a copy).
            Some(PersonIndex::ByPerson) => ("1".to_string(), "p.person_id = l.person_id AND p.seq = l.seq".to_string()),
            None => return Ok(Ok(())),
        };
        // A row listed twice (a table rebuilt without its key) is an edit too.
        let differs = tx
            .query_row(
                &format!(
                    "SELECT min(seq) FROM (
                   SELECT CAST(p.seq AS INTEGER) AS seq FROM audit_person p LEFT JOIN audit_log l ON l.seq = p.seq
                    WHERE p.seq > ?1 OR l.person_id IS NOT p.person_id
                       OR typeof(p.person_id) <> 'integer' OR typeof(p.seq) <> 'integer' OR NOT ({same_chunk})
                   UNION ALL
                   SELECT CAST(seq AS INTEGER) FROM audit_person GROUP BY person_id, seq HAVING count(*) > 1
                   UNION ALL
                   SELECT l.seq FROM audit_log l
                    WHERE l.seq <= ?1 AND l.person_id IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM audit_person p WHERE {find}))"
                ),
                [upto],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(sqlite("checking the audit log's person index"))?;
        Ok(differs.map_or(Ok(()), |seq| Err(Tamper::PersonIndex { seq })))
    }

    /// The newest entry's sequence number and seal.
    /// Copies the whole write-ahead log into the file and truncates it to nothing, on the
    /// appender's own connection (so no append can come between). Passive checkpoints from
    /// another connection never finish while entries keep coming: the appender commits again
    /// before each one is through, the log is never restarted, and it grows without bound (a
    /// bench log reached 2.9 GB, and a center started on it spent its first seconds copying
    /// it, refusing verifications meanwhile). Returns false when a reader kept it from
    /// finishing (it is tried again later).
    pub fn truncate_wal(&self) -> Result<bool, StoreError> {
        let busy: i64 = self
            .connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(sqlite("truncating the audit log's WAL"))?;
        Ok(busy == 0)
    }

    pub fn head(&self) -> (i64, String) {
        self.head.clone()
    }

    /// Exports the chain's head to [`checkpoint_path`], sealed with the audit key (written
    /// aside and renamed: a crash leaves the old one or the new one). Removing the newest
    /// entries leaves an intact shorter chain; the checkpoint, kept elsewhere too (it is also
    /// logged), shows that entries up to it existed.
    pub fn write_checkpoint(&self, at: Timestamp) -> Result<(), StoreError> {
        write_checkpoint_file(&checkpoint_path(&self.path), &self.key, &self.head, at)
    }

    /// Compares the log with its last checkpoint, when there is one.
    pub fn check_checkpoint(&self) -> Result<Result<(), Tamper>, StoreError> {
        check_checkpoint_file(&checkpoint_path(&self.path), &self.key, self.head.0, |seq| {
            use rusqlite::OptionalExtension;
            self.connection
                .query_row("SELECT mac FROM audit_log WHERE seq = ?1", [seq], |r| r.get(0))
                .optional()
                .map_err(sqlite("reading the audit log"))
        })
    }
}

/// Writes the chain's head `(seq, seal)` to the checkpoint file `path`, sealed with `key`
/// (written aside and renamed: a crash leaves the old one or the new one).
pub(crate) fn write_checkpoint_file(path: &Path, key: &hmac::Key, head: &(i64, String), at: Timestamp) -> Result<(), StoreError> {
    let (seq, seal) = head;
    let text = format!(
        "{{\"seq\":{seq},\"seal\":\"{seal}\",\"at\":{},\"mac\":\"{}\"}}\n",
        at.jst_seconds(),
        checkpoint_seal(key, *seq, seal, at.jst_seconds())
    );
    let partial = path.with_extension("checkpoint.partial");
    let io = |source: std::io::Error| StoreError::Write { path: path.display().to_string(), source };
    std::fs::write(&partial, text).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

/// Compares a log whose newest entry is `head` with the checkpoint file at `path`; `seal_of`
/// reads the seal of one entry of the log.
pub(crate) fn check_checkpoint_file(
    path: &Path,
    key: &hmac::Key,
    head: i64,
    seal_of: impl FnOnce(i64) -> Result<Option<String>, StoreError>,
) -> Result<Result<(), Tamper>, StoreError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(if head == 0 { Ok(()) } else { Err(Tamper::CheckpointMissing(path.display().to_string())) });
    };
    let unsealed = || Ok(Err(Tamper::CheckpointUnsealed(path.display().to_string())));
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else { return unsealed() };
    let (Some(seq), Some(seal), Some(at), Some(mac)) =
        (value["seq"].as_i64(), value["seal"].as_str(), value["at"].as_i64(), value["mac"].as_str())
    else {
        return unsealed();
    };
    if checkpoint_seal(key, seq, seal, at) != mac {
        return unsealed();
    }
    if seq == 0 {
        return Ok(Ok(()));
    }
    if seal_of(seq)?.as_deref() == Some(seal) {
        Ok(Ok(()))
    } else {
        Ok(Err(Tamper::Truncated { checkpoint: seq, seal: seal.to_string(), head }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// Entry `n` of the test logs: person `n % 3`.
    pub(crate) fn record(n: i64) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_jst_seconds(1_800_000_000 + n),
            actor: "1311234569".into(),
            action: "verify_card".into(),
            person_id: Some(n % 3),
            object: format!("serial-{n}"),
            code: "1".into(),
        }
    }

    fn log_with(dir: &Path, count: i64) -> AuditLog {
        let mut log = AuditLog::open(&dir.join("audit.sqlite"), KEY).unwrap();
        for n in 1..=count {
            log.append(&[record(n)]).unwrap();
        }
        log
    }

    fn tamper(dir: &Path, sql: &str) -> Result<usize, Tamper> {
        Connection::open(dir.join("audit.sqlite")).unwrap().execute_batch(sql).unwrap();
        AuditLog::open(&dir.join("audit.sqlite"), KEY).unwrap().verify().unwrap()
    }

    #[test]
    fn tallies_count_each_entry_once_whether_tallied_yet_or_not_and_an_edit_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        let mut log = AuditLog::open(&path, KEY).unwrap();
        // A Japan midnight and the day after it.
        let day1 = Timestamp::from_jst_seconds(1_800_000_000 - 1_800_000_000 % 86_400);
        let day1_text = day1.date().yyyymmdd();
        let at = |days: i64| Timestamp::from_jst_seconds(day1.jst_seconds() + days * 86_400 + 3_600);
        let entry = |days, action: &str, object: &str, code: &str| AuditRecord {
            at: at(days),
            actor: "1311234569".into(),
            action: action.into(),
            person_id: Some(1),
            object: object.into(),
            code: code.into(),
        };
        log.append(&[
            entry(0, "verify_card", "pin:0A:drug,checkup", "1"),
            entry(0, "verify_card", "face:0B:", "1"),
            entry(0, "verify_number", "06139999", "1"),
        ])
        .unwrap();
        log.index_persons().unwrap();
        // Not tallied yet: read from the entries themselves.
        log.append(&[entry(1, "verify_card", "pin:0C:drug", "1"), entry(1, "verify_number", "06139999", "CARD_UNKNOWN")]).unwrap();
        let day1: u32 = day1_text.parse().unwrap();
        let day2 = day1 + 1;
        let expected: Vec<(u32, &str, &str, u64)> = vec![
            (day1, "consent:checkup", "1", 1),
            (day1, "consent:drug", "1", 1),
            (day1, "verify_card:face", "1", 1),
            (day1, "verify_card:pin", "1", 1),
            (day1, "verify_number", "1", 1),
            (day2, "consent:drug", "1", 1),
            (day2, "verify_card:pin", "1", 1),
            (day2, "verify_number", "CARD_UNKNOWN", 1),
        ];
        let shown = |tallies: Vec<Tally>| -> Vec<(u32, String, String, u64)> {
            tallies.into_iter().map(|t| (t.day, t.kind, t.code, t.count)).collect()
        };
        let expected: Vec<_> = expected.into_iter().map(|(d, k, c, n)| (d, k.to_string(), c.to_string(), n)).collect();
        assert_eq!(shown(log.tallies(0, u32::MAX).unwrap()), expected);
        assert_eq!(shown(read_tallies(&path, day2, day2).unwrap()), expected[5..].to_vec());
        log.index_persons().unwrap();
        assert_eq!(shown(log.tallies(0, u32::MAX).unwrap()), expected);
        assert_eq!(log.check_tallies().unwrap(), Ok(()));
        // Someone lowers a refusal count to hide it.
        Connection::open(&path).unwrap().execute_batch("UPDATE audit_tally SET n = 0 WHERE code = 'CARD_UNKNOWN'").unwrap();
        let found = log.check_tallies().unwrap();
        assert!(matches!(&found, Err(Tamper::Tally { day, code, .. }) if *day == day2 && code == "CARD_UNKNOWN"), "{found:?}");
    }

    #[test]
    fn an_intact_log_verifies_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 5);
        assert_eq!(log.verify().unwrap(), Ok(5));
        drop(log);
        let mut reopened = AuditLog::open(&dir.path().join("audit.sqlite"), KEY).unwrap();
        assert_eq!(reopened.append(&[record(6), record(7)]).unwrap(), [6, 7], "appends continue the chain");
        assert_eq!(reopened.verify().unwrap(), Ok(7));
        assert_eq!(reopened.entries_for_person(1).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 4, 7]);
        let other_key = AuditLog::open(&dir.path().join("audit.sqlite"), b"another key of thirty-two bytes!").unwrap();
        assert_eq!(other_key.verify().unwrap(), Err(Tamper::Unsealed { seq: 1 }), "only the center's key verifies");
    }

    #[test]
    fn an_edit_is_caught_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        drop(log_with(dir.path(), 6));
        assert_eq!(tamper(dir.path(), "UPDATE audit_log SET actor = '2711234563' WHERE seq = 4"), Err(Tamper::Unsealed { seq: 4 }));
    }

    #[test]
    fn an_insertion_is_caught_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        drop(log_with(dir.path(), 6));
        // Make room after entry 3 and slip an entry in, copying a genuine seal.
        let sql = "UPDATE audit_log SET seq = -seq WHERE seq >= 4; UPDATE audit_log SET seq = 1 - seq WHERE seq < 0;
                   INSERT INTO audit_log SELECT 4, at, actor, 'view_drug', person_id, object, code, mac FROM audit_log WHERE seq = 3;";
        assert_eq!(tamper(dir.path(), sql), Err(Tamper::Unsealed { seq: 4 }));
        let dir = tempfile::tempdir().unwrap();
        drop(log_with(dir.path(), 6));
        let at_end = "INSERT INTO audit_log SELECT 7, at, actor, action, person_id, object, code, mac FROM audit_log WHERE seq = 6;";
        assert_eq!(tamper(dir.path(), at_end), Err(Tamper::Unsealed { seq: 7 }));
    }

    #[test]
    fn a_deletion_is_caught_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        drop(log_with(dir.path(), 6));
        assert_eq!(tamper(dir.path(), "DELETE FROM audit_log WHERE seq = 3"), Err(Tamper::Deleted { after: 2, seq: 4 }));
        let dir = tempfile::tempdir().unwrap();
        drop(log_with(dir.path(), 6));
        // Deleting and renumbering to hide the gap breaks the seals instead.
        let hidden = "DELETE FROM audit_log WHERE seq = 3; UPDATE audit_log SET seq = seq - 1 WHERE seq > 3;";
        assert_eq!(tamper(dir.path(), hidden), Err(Tamper::Unsealed { seq: 3 }));
    }

    #[test]
    fn a_field_re_split_across_its_neighbours_loses_its_seal() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(&dir.path().join("audit.sqlite"), KEY).unwrap();
        let record = AuditRecord { actor: "1311234569\u{1f}verify_card".into(), action: "x".into(), ..record(1) };
        log.append(&[record]).unwrap();
        // Format 1 joined the fields with U+001F: moving it from one field to the next kept the seal.
        log.connection.execute("UPDATE audit_log SET actor = '1311234569', action = 'verify_card\u{1f}x' WHERE seq = 1", []).unwrap();
        assert_eq!(log.verify().unwrap(), Err(Tamper::Unsealed { seq: 1 }));
    }

    #[test]
    fn a_log_made_before_length_prefixed_seals_still_verifies_and_goes_on_in_the_new_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        {
            let mut log = AuditLog::open(&path, KEY).unwrap();
            log.append(&[record(1), record(2)]).unwrap();
        }
        // As an older version left it: format-1 seals and no format record.
        {
            let connection = Connection::open(&path).unwrap();
            let key = hmac::Key::new(hmac::HMAC_SHA256, KEY);
            let mut previous = GENESIS.to_string();
            for seq in 1..=2 {
                let mac = seal(&key, &previous, seq, &record(seq), false);
                connection.execute("UPDATE audit_log SET mac = ?1 WHERE seq = ?2", params![mac, seq]).unwrap();
                previous = mac;
            }
            connection.execute("DROP TABLE audit_meta", []).unwrap();
        }
        let mut log = AuditLog::open(&path, KEY).unwrap();
        log.append(&[record(3)]).unwrap();
        assert_eq!(log.verify().unwrap(), Ok(3));
        assert_eq!(log.length_prefixed_from, 3);
    }

    #[test]
    fn deleting_the_newest_entries_is_found_against_the_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 5);
        log.write_checkpoint(Timestamp::from_jst_seconds(1_800_000_100)).unwrap();
        assert_eq!(log.check_checkpoint().unwrap(), Ok(()));
        log.connection.execute("DELETE FROM audit_log WHERE seq > 3", []).unwrap();
        let reopened = AuditLog::open_read_only(&dir.path().join("audit.sqlite"), KEY).unwrap();
        assert_eq!(reopened.verify().unwrap(), Ok(3), "the shorter chain is intact by itself");
        let saved = std::fs::read(checkpoint_path(&dir.path().join("audit.sqlite"))).unwrap();
        std::fs::remove_file(checkpoint_path(&dir.path().join("audit.sqlite"))).unwrap();
        assert!(matches!(reopened.check_checkpoint().unwrap(), Err(Tamper::CheckpointMissing(_))), "deleting the checkpoint too is seen");
        std::fs::write(checkpoint_path(&dir.path().join("audit.sqlite")), saved).unwrap();
        assert!(matches!(reopened.check_checkpoint().unwrap(), Err(Tamper::Truncated { checkpoint: 5, head: 3, .. })));
        // A checkpoint edited to match is not the center's.
        let path = checkpoint_path(&dir.path().join("audit.sqlite"));
        let edited = std::fs::read_to_string(&path).unwrap().replace("\"seq\":5", "\"seq\":3");
        std::fs::write(&path, edited).unwrap();
        assert!(matches!(reopened.check_checkpoint().unwrap(), Err(Tamper::CheckpointUnsealed(_))));
    }

    #[test]
    fn a_person_sees_every_entry_whether_the_person_index_has_caught_up_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        let mut log = log_with(dir.path(), 6);
        // Person 1's entries are 1 and 4 (record(n) is about person n % 3), none indexed yet.
        let indexed = |log: &AuditLog| -> i64 { log.connection.query_row("SELECT count(*) FROM audit_person", [], |r| r.get(0)).unwrap() };
        assert_eq!(indexed(&log), 0);
        assert_eq!(read_person_entries(&path, 1).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 4]);
        log.index_persons().unwrap();
        assert_eq!(indexed(&log), 6, "every entry names a person");
        log.append(&[record(7), record(8)]).unwrap();
        // 1 and 4 from the index, 7 from the newest entries.
        assert_eq!(read_person_entries(&path, 1).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 4, 7]);
        let (total, newest) = read_newest_person_entries(&path, 1, 2).unwrap();
        assert_eq!((total, newest.iter().map(|e| e.seq).collect::<Vec<_>>()), (3, vec![4, 7]), "one indexed, one not");
        assert_eq!(newest[1].record, record(7));
        log.index_persons().unwrap();
        assert_eq!(indexed(&log), 8);
        assert_eq!(read_person_entries(&path, 1).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 4, 7]);
        assert_eq!(log.verify().unwrap(), Ok(8));
        assert_eq!(log.check_person_index().unwrap(), Ok(()));
    }

    #[test]
    fn an_access_hidden_from_the_patient_by_editing_the_person_index_is_found() {
        for (edit, seq) in [
            ("DELETE FROM audit_person WHERE seq = 4", 4),
            ("UPDATE audit_person SET person_id = 0 WHERE seq = 5", 5),
            ("INSERT INTO audit_person VALUES (24, 1, 99)", 99),
            // Moved to another chunk: the reader, which looks in the entry's own chunk, would
            // not find it.
            ("UPDATE audit_person SET chunk = chunk + 1 WHERE seq = 5", 5),
            // Rebuilt without types, one person stored as text: compared with the log's
            // column it still reads as the number, but the reader, binding the number, misses it.
            (
                "CREATE TABLE loose (chunk, person_id, seq, PRIMARY KEY (chunk, person_id, seq)) WITHOUT ROWID;
                 INSERT INTO loose SELECT chunk, CASE WHEN seq = 5 THEN CAST(person_id AS TEXT) ELSE person_id END, seq FROM audit_person;
                 DROP TABLE audit_person; ALTER TABLE loose RENAME TO audit_person;",
                5,
            ),
            // Complete beyond the log's end: the newest entries would fall between the index
            // and the range scan.
            ("UPDATE audit_meta SET value = 1000000 WHERE name = 'person_indexed_upto'", 1_000_000),
            // Rebuilt without its key, one row copied: the copy would take a place among a
            // person's newest entries.
            (
                "CREATE TABLE keyless (chunk INTEGER NOT NULL, person_id INTEGER NOT NULL, seq INTEGER NOT NULL) STRICT;
                 INSERT INTO keyless SELECT * FROM audit_person; INSERT INTO keyless SELECT * FROM audit_person WHERE seq = 6;
                 DROP TABLE audit_person; ALTER TABLE keyless RENAME TO audit_person;",
                6,
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = log_with(dir.path(), 6);
            log.index_persons().unwrap();
            log.connection.execute_batch(edit).unwrap();
            assert_eq!(log.verify().unwrap(), Ok(6), "the chain itself is intact");
            assert_eq!(log.check_person_index().unwrap(), Err(Tamper::PersonIndex { seq }), "{edit}");
        }
    }

    #[test]
    fn a_log_with_the_former_person_index_is_moved_to_the_table_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        drop(log_with(dir.path(), 5));
        // As the previous version left it: the index on the log itself, no person table.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "DROP TABLE audit_person; DELETE FROM audit_meta WHERE name = 'person_indexed_upto';
                 CREATE INDEX audit_by_person ON audit_log (person_id) WHERE person_id IS NOT NULL;",
            )
            .unwrap();
        assert_eq!(read_person_entries(&path, 2).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 5], "read as it is");
        let mut log = AuditLog::open(&path, KEY).unwrap();
        let old_index: i64 =
            log.connection.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'audit_by_person'", [], |r| r.get(0)).unwrap();
        assert_eq!(old_index, 0, "the index on the log is gone");
        assert_eq!(log.entries_for_person(2).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 5]);
        log.append(&[record(6)]).unwrap();
        assert_eq!(read_person_entries(&path, 0).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 6]);
        assert_eq!(log.verify().unwrap(), Ok(6));
        assert_eq!(log.check_person_index().unwrap(), Ok(()), "the moved index agrees with the log");
    }

    #[test]
    fn a_log_with_the_person_index_keyed_by_person_alone_is_moved_into_chunks_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        let mut log = log_with(dir.path(), 9);
        log.index_persons().unwrap();
        drop(log);
        // As the version before the chunks left it: the same rows, keyed by person alone.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE by_person (person_id INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (person_id, seq)) STRICT, WITHOUT ROWID;
                 INSERT INTO by_person SELECT person_id, seq FROM audit_person;
                 DROP TABLE audit_person; ALTER TABLE by_person RENAME TO audit_person;",
            )
            .unwrap();
        // Person 2's entries are 2, 5 and 8 (record(n) is about person n % 3).
        let seqs = |entries: Vec<AuditEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(read_person_entries(&path, 2).unwrap()), [2, 5, 8], "read as it is, without writing");
        assert_eq!(AuditLog::open_read_only(&path, KEY).unwrap().check_person_index().unwrap(), Ok(()), "and checked as it is");
        let mut log = AuditLog::open(&path, KEY).unwrap();
        assert_eq!(person_index_layout(&log.connection).unwrap(), Some(PersonIndex::Chunked));
        let chunks: i64 = log.connection.query_row("SELECT count(DISTINCT chunk) FROM audit_person", [], |r| r.get(0)).unwrap();
        assert_eq!(chunks, 3, "nine entries in chunks of four: 1–3, 4–7, 8–9");
        assert_eq!(seqs(log.entries_for_person(2).unwrap()), [2, 5, 8]);
        // Entry 10, about person 2 (11 % 3), in the third chunk.
        log.append(&[record(11)]).unwrap();
        log.index_persons().unwrap();
        assert_eq!(seqs(read_person_entries(&path, 2).unwrap()), [2, 5, 8, 10]);
        assert_eq!(log.verify().unwrap(), Ok(10));
        assert_eq!(log.check_person_index().unwrap(), Ok(()), "the moved index agrees with the log");
    }

    /// The frames an index run wrote to the (freshly truncated) write-ahead log.
    fn wal_frames(connection: &Connection) -> i64 {
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap()
    }

    /// The bug this layout fixed: keyed by person, each second's batch rewrote most of an index
    /// as large as the log's history. A batch of 1,000 entries about random persons, indexed
    /// after 50,000 others, must write about the pages of the newest chunks only; the same rows
    /// keyed by person alone, for contrast, touch page after page of the whole table.
    #[test]
    fn each_batch_of_the_person_index_writes_the_newest_chunks_not_the_whole_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(&dir.path().join("audit.sqlite"), KEY).unwrap();
        let about = |n: i64| AuditRecord { person_id: Some(n.wrapping_mul(2_654_435_761) % 10_007), ..record(n) };
        log.append(&(1..=50_000).map(about).collect::<Vec<_>>()).unwrap();
        log.index_persons().unwrap();
        log.append(&(50_001..=51_000).map(about).collect::<Vec<_>>()).unwrap();
        assert!(log.truncate_wal().unwrap());
        log.index_persons().unwrap();
        let chunked = wal_frames(&log.connection);
        // The same 51,000 rows keyed by person alone, the last 1,000 inserted in one sorted
        // batch, as the former layout did.
        let pages = |c: &Connection| -> i64 { c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap() };
        let before = pages(&log.connection);
        log.connection
            .execute_batch(
                "CREATE TABLE by_person (person_id INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (person_id, seq)) STRICT, WITHOUT ROWID;
                 INSERT INTO by_person SELECT person_id, seq FROM audit_person WHERE seq <= 50000 ORDER BY 1, 2;",
            )
            .unwrap();
        let table_pages = pages(&log.connection) - before;
        assert!(log.truncate_wal().unwrap());
        log.connection
            .execute("INSERT INTO by_person SELECT person_id, seq FROM audit_person WHERE seq > 50000 ORDER BY 1, 2", [])
            .unwrap();
        let by_person = wal_frames(&log.connection);
        assert!(chunked <= 40, "an index batch of 1,000 entries wrote {chunked} pages (keyed by person: {by_person}, table {table_pages})");
        assert!(by_person >= 4 * chunked && by_person >= table_pages / 2, "keyed by person: {by_person} pages against {chunked}");
    }

    /// The index and the tallies are made in pieces, each its own transaction with its
    /// progress: after each piece the progress recorded is exactly what that piece covered, a
    /// patient reads every entry indexed so far, and the pieces together make what one pass
    /// makes.
    #[test]
    fn the_person_index_is_made_in_pieces_each_committed_with_its_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        let mut log = log_with(dir.path(), 10);
        let progress = |log: &AuditLog| {
            (meta_value(&log.connection, PERSON_INDEXED_UPTO).unwrap(), meta_value(&log.connection, TALLIED_UPTO).unwrap())
        };
        let mut pieces = Vec::new();
        loop {
            let done = log.index_persons_paced(4, || {}).unwrap();
            pieces.push(progress(&log));
            if done {
                break;
            }
        }
        assert_eq!(pieces, [(Some(4), Some(4)), (Some(8), Some(8)), (Some(10), Some(10))]);
        // Person 1 holds seqs 1, 4, 7, 10 (`record` gives entry n to person n % 3).
        let seqs: Vec<i64> = read_person_entries(&path, 1).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 4, 7, 10]);
        assert_eq!(log.check_person_index().unwrap(), Ok(()));
        let in_pieces = log.tallies(0, 99_999_999).unwrap();
        assert_eq!(in_pieces.iter().map(|t| t.count).sum::<u64>(), 10, "each of the ten entries counted once");
        // One pass over the same entries in another log counts the same.
        let other_dir = tempfile::tempdir().unwrap();
        let mut other = log_with(other_dir.path(), 10);
        assert!(other.index_persons_paced(100, || {}).unwrap(), "one piece covers ten entries");
        assert_eq!(other.tallies(0, 99_999_999).unwrap(), in_pieces);
    }

    /// The writer's paced pass: the pause comes between slices of `INDEX_SLICE_ENTRIES` (600
    /// entries are three slices, so two pauses), nothing of the pass is visible to a reader
    /// during a pause (one transaction), and at its end it has made what the unpaced pass makes.
    #[test]
    fn a_paced_index_pass_pauses_between_slices_and_commits_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        let mut log = log_with(dir.path(), 600);
        let reader = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let progress =
            || (meta_value(&reader, PERSON_INDEXED_UPTO).unwrap().unwrap_or(0), meta_value(&reader, TALLIED_UPTO).unwrap().unwrap_or(0));
        assert_eq!(progress(), (0, 0), "nothing indexed or tallied before the pass");
        let mut seen_in_pauses = Vec::new();
        let done = log.index_persons_paced(100_000, || seen_in_pauses.push(progress())).unwrap();
        assert!(done);
        assert_eq!(seen_in_pauses, [(0, 0), (0, 0)], "two pauses, the pass not committed during either");
        assert_eq!(progress(), (600, 600));
        assert_eq!(log.check_person_index().unwrap(), Ok(()));
        // Person 1 holds every third entry from 1 (`record` gives entry n to person n % 3).
        let seqs: Vec<i64> = read_person_entries(&path, 1).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=600).step_by(3).collect::<Vec<i64>>());
        let other_dir = tempfile::tempdir().unwrap();
        let mut other = log_with(other_dir.path(), 600);
        other.index_persons().unwrap();
        assert_eq!(log.tallies(0, 99_999_999).unwrap(), other.tallies(0, 99_999_999).unwrap());
        // Bounded: a pass of at most 300 entries stops there, the rest is left for the next.
        let third_dir = tempfile::tempdir().unwrap();
        let mut third = log_with(third_dir.path(), 600);
        assert!(!third.index_persons_paced(300, || {}).unwrap());
        assert_eq!(meta_value(&third.connection, PERSON_INDEXED_UPTO).unwrap(), Some(300));
        assert!(third.index_persons_paced(300, || {}).unwrap());
    }

    /// Edits of `audit_meta` a reader must not follow: an index claimed complete past the log's
    /// end, and another chunk size than the one the index was built with.
    #[test]
    fn a_person_sees_every_entry_whatever_the_index_s_records_claim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sqlite");
        let mut log = log_with(dir.path(), 9);
        log.index_persons().unwrap();
        let seqs = |entries: Vec<AuditEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        log.connection.execute("UPDATE audit_meta SET value = 1000 WHERE name = 'person_indexed_upto'", []).unwrap();
        // Entry 10, about person 2 (11 % 3), after the edit: not in the index yet.
        log.append(&[record(11)]).unwrap();
        assert_eq!(seqs(read_person_entries(&path, 2).unwrap()), [2, 5, 8, 10], "the range scan starts at the log's end at the latest");
        let (total, newest) = read_newest_person_entries(&path, 2, 1).unwrap();
        assert_eq!((total, seqs(newest)), (4, vec![10]));
        // The writer indexes from the start again.
        log.index_persons().unwrap();
        assert_eq!(log.check_person_index().unwrap(), Ok(()));
        // Another chunk size recorded: the next center rebuilds the index with its own.
        drop(log);
        Connection::open(&path).unwrap().execute("UPDATE audit_meta SET value = 5 WHERE name = 'person_chunk_bits'", []).unwrap();
        let log = AuditLog::open(&path, KEY).unwrap();
        assert_eq!(chunk_bits(&log.connection).unwrap(), PERSON_CHUNK_BITS);
        assert_eq!(log.check_person_index().unwrap(), Ok(()));
        assert_eq!(seqs(read_person_entries(&path, 2).unwrap()), [2, 5, 8, 10]);
    }

    #[test]
    fn a_person_reads_the_newest_entries_and_how_many_there_are() {
        let dir = tempfile::tempdir().unwrap();
        drop(log_with(dir.path(), 10));
        // Person 1 has entries 1, 4, 7 and 10 (record(n) is about person n % 3).
        let (total, newest) = read_newest_person_entries(&dir.path().join("audit.sqlite"), 1, 2).unwrap();
        assert_eq!(total, 4);
        assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 10], "the newest two, oldest first");
        assert_eq!(read_person_entries(&dir.path().join("audit.sqlite"), 1).unwrap().len(), 4);
    }
}
