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
CREATE INDEX IF NOT EXISTS audit_by_person ON audit_log (person_id) WHERE person_id IS NOT NULL;";

/// The seal of the first entry's predecessor.
const GENESIS: &str = "onshi-audit-genesis";

fn sqlite(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { doing, source }
}

fn seal(key: &hmac::Key, previous: &str, seq: i64, r: &AuditRecord) -> String {
    let person = r.person_id.map_or(String::new(), |p| p.to_string());
    let text =
        [previous, &seq.to_string(), &r.at.jst_seconds().to_string(), &r.actor, &r.action, &person, &r.object, &r.code].join("\u{1f}");
    onshi_domain::hex::encode(hmac::sign(key, text.as_bytes()).as_ref())
}

/// Every entry about one person from the log at `path`, read-only beside the writer.
pub fn read_person_entries(path: &Path, person_id: i64) -> Result<Vec<AuditEntry>, StoreError> {
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
    connection.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite("configuring an audit reader"))?;
    entries_where(&connection, "WHERE person_id = ?1", &[&person_id])
}

fn entries_where(connection: &Connection, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<AuditEntry>, StoreError> {
    let mut statement = connection
        .prepare(&format!("SELECT seq, at, actor, action, person_id, object, code, mac FROM audit_log {filter} ORDER BY seq"))
        .map_err(sqlite("reading the audit log"))?;
    let rows = statement
        .query_map(args, |r| {
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
        })
        .map_err(sqlite("reading the audit log"))?;
    rows.collect::<Result<_, _>>().map_err(sqlite("reading the audit log"))
}

/// Copies the write-ahead log of the audit file at `path` into the file on a connection of its
/// own (PASSIVE: it never blocks the appender). The appender's connection has automatic
/// checkpoints switched off so that no answer waits for one.
pub fn checkpoint(connection: &Connection) -> Result<(), StoreError> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(sqlite("checkpointing the audit log"))
}

/// A connection for [`checkpoint`].
pub fn checkpoint_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
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
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`, sealed with `key` (at least 32 bytes).
    pub fn open(path: &Path, key: &[u8]) -> Result<AuditLog, StoreError> {
        let connection = Connection::open(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        connection
            // Checkpoints run on their own connection (see `checkpoint`), never on the append path.
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 0;",
            )
            .map_err(sqlite("configuring the audit log"))?;
        connection.execute_batch(SCHEMA).map_err(sqlite("creating the audit log"))?;
        let head = connection
            .query_row("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap_or((0, GENESIS.to_string()));
        Ok(AuditLog { path: path.to_path_buf(), connection, key: hmac::Key::new(hmac::HMAC_SHA256, key), head })
    }

    /// Opens an existing log read-only, to check it: nothing is created or written (not even
    /// the write-ahead log's settings).
    pub fn open_read_only(path: &Path, key: &[u8]) -> Result<AuditLog, StoreError> {
        let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        connection.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite("configuring an audit reader"))?;
        let head = connection
            .query_row("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap_or((0, GENESIS.to_string()));
        Ok(AuditLog { path: path.to_path_buf(), connection, key: hmac::Key::new(hmac::HMAC_SHA256, key), head })
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
                let mac = seal(&self.key, &previous, seq, record);
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

    fn entries_where(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<AuditEntry>, StoreError> {
        entries_where(&self.connection, filter, args)
    }

    /// Every entry about one person, oldest first.
    pub fn entries_for_person(&self, person_id: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.entries_where("WHERE person_id = ?1", &[&person_id])
    }

    /// Walks the whole chain; `Ok(count)` when every entry is intact. Removing the newest
    /// entries leaves an intact shorter chain: compare the head ([`AuditLog::head`]) with a
    /// copy kept elsewhere to catch that.
    pub fn verify(&self) -> Result<Result<usize, Tamper>, StoreError> {
        let entries = self.entries_where("", &[])?;
        let mut previous = (0, GENESIS.to_string());
        for entry in &entries {
            if entry.seq != previous.0 + 1 {
                return Ok(Err(Tamper::Deleted { after: previous.0, seq: entry.seq }));
            }
            if seal(&self.key, &previous.1, entry.seq, &entry.record) != entry.mac {
                return Ok(Err(Tamper::Unsealed { seq: entry.seq }));
            }
            previous = (entry.seq, entry.mac.clone());
        }
        Ok(Ok(entries.len()))
    }

    /// The newest entry's sequence number and seal.
    pub fn head(&self) -> (i64, String) {
        self.head.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn record(n: i64) -> AuditRecord {
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
}
