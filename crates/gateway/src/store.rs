//! The gateway's own SQLite file: today's checks, the answer cache, the durable queue of checks
//! made while the line was down, 一括照会 snapshots, the journal of answered request files and
//! the outbox of files to write.
//!
//! Exactly-once across SIGKILL rests on two rules: a check's record, its queue entry, its
//! request's journal row and its answer file's outbox row are committed in one transaction
//! (`synchronous = FULL`), and an answer file is written from the outbox in three recorded
//! steps (pending → staged → written) so that a restart knows whether a file that is gone was
//! never written or already taken by the レセコン.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::check::{Job, Outcome, Source};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("gateway store {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("gateway store: a stored record does not parse ({0}); the file was written by another version")]
    Corrupt(String),
    #[error("gateway store: cannot lock {path}: {detail}; check that the store's folder is writable")]
    Lock { path: PathBuf, detail: String },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL,
    changes TEXT NOT NULL,
    queue_id INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS checks_at ON checks(at);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    check_id INTEGER NOT NULL,
    job TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at TEXT,
    outcome TEXT,
    changes TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    fetched_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS batches (
    reception_number TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL,
    header TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS batch_entries (
    reception_number TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    label TEXT NOT NULL,
    search TEXT NOT NULL,
    outcome TEXT,
    changes TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (reception_number, seq)
) STRICT;
CREATE INDEX IF NOT EXISTS batch_entries_key ON batch_entries(key);
CREATE TABLE IF NOT EXISTS requests (
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    PRIMARY KEY (name, digest)
) STRICT;
CREATE TABLE IF NOT EXISTS claim_months (
    month TEXT NOT NULL,
    file TEXT NOT NULL,
    claims INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (month, file)
) STRICT;
CREATE TABLE IF NOT EXISTS reference_numbers (
    numbers TEXT NOT NULL,
    branch TEXT NOT NULL,
    reference_number TEXT NOT NULL,
    birth_date TEXT,
    sex TEXT,
    registered_at TEXT NOT NULL,
    PRIMARY KEY (numbers, branch)
) STRICT;
CREATE TABLE IF NOT EXISTS reference_batches (
    reception_number TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    header TEXT NOT NULL,
    units TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS home_keys (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_to TEXT NOT NULL,
    name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS list_batches (
    reception_number TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    header TEXT NOT NULL,
    answer TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS declarations (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    name_kana TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL,
    kind TEXT NOT NULL,
    employer TEXT NOT NULL,
    address TEXT NOT NULL,
    contact TEXT NOT NULL,
    declared_on TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS declarations_at ON declarations(at);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    bytes BLOB NOT NULL,
    state TEXT NOT NULL,
    remove_after TEXT
) STRICT;
";

/// A check as recorded for the page.
#[derive(Clone, Debug)]
pub struct CheckRow {
    pub id: i64,
    pub at: String,
    pub source: Source,
    /// `number`, `pin`, `face` or `visual`.
    pub method: String,
    /// What was asked, for staff (numbers, or the card's serial).
    pub subject: String,
    pub outcome: Outcome,
    pub changes: Vec<String>,
    /// Waiting in the queue (`Some(false)`), re-verified (`Some(true)`), or never queued.
    pub requeued: Option<QueueState>,
}

#[derive(Clone, Debug)]
pub struct QueueState {
    pub done: bool,
    pub outcome: Option<Outcome>,
    pub changes: Vec<String>,
}

/// A queued check waiting for the line.
#[derive(Clone, Debug)]
pub struct QueuedJob {
    pub id: i64,
    pub check_id: i64,
    pub job: Job,
    pub recorded_at: String,
    /// The outcome given when the check was made (cached answer, or none).
    pub first: Outcome,
}

/// A batch entry waiting for its answer.
#[derive(Clone, Debug)]
pub struct BatchEntry {
    pub reception_number: String,
    pub seq: i64,
    pub key: String,
    pub search: crate::request::SearchInfo,
    pub created_at: String,
    pub header: crate::request::Header,
}

/// A file to write: where, what, and the request file to remove once it is written.
#[derive(Clone, Debug)]
pub struct OutFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub remove_after: Option<PathBuf>,
}

/// A new check to record, with what goes with it in the same transaction.
pub struct NewCheck<'a> {
    pub at: &'a str,
    pub source: Source,
    pub method: &'a str,
    pub subject: &'a str,
    pub outcome: &'a Outcome,
    pub changes: &'a [String],
    /// Queue it for re-verification.
    pub queue: Option<&'a Job>,
    /// The cache entry to refresh (key, answer JSON) when the center answered.
    pub cache: Option<(&'a str, &'a str)>,
}

/// A 一括照会 to store: its entries are (key for matching, label for staff, search).
#[derive(Clone, Copy)]
pub struct NewBatch<'a> {
    pub reception_number: &'a str,
    pub at: &'a str,
    /// `file` or `appointments`.
    pub source: &'a str,
    pub header: &'a crate::request::Header,
    pub entries: &'a [(String, String, crate::request::SearchInfo)],
}

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// `<store>.outbox.lock`: whoever writes the outbox out holds it, in this process (the
    /// mutex) and across processes (the file lock), so that each file is written once.
    outbox_lock: (PathBuf, Mutex<std::fs::File>),
}

/// The outbox is being written out by this holder alone; released when dropped.
pub struct OutboxGuard<'a>(std::sync::MutexGuard<'a, std::fs::File>);

impl Drop for OutboxGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// A lock file beside the store: `gateway.sqlite` → `gateway.sqlite.<what>.lock`.
pub fn lock_path(store: &Path, what: &str) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}.lock"));
    store.with_file_name(name)
}

/// Opens (creating it) a file that is only ever locked, never written.
pub fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let wrap = |source| StoreError::Sqlite { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;").map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        let lock = lock_path(path, "outbox");
        let file = lock_file(&lock).map_err(|e| StoreError::Lock { path: lock.clone(), detail: e.to_string() })?;
        Ok(Store { path: path.to_path_buf(), conn: Mutex::new(conn), outbox_lock: (lock, Mutex::new(file)) })
    }

    /// Waits until no one else (thread or process) is writing the outbox out.
    pub fn outbox_guard(&self) -> Result<OutboxGuard<'_>, StoreError> {
        let (path, file) = &self.outbox_lock;
        let file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.lock().map_err(|e| StoreError::Lock { path: path.clone(), detail: e.to_string() })?;
        Ok(OutboxGuard(file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn).map_err(|source| StoreError::Sqlite { path: self.path.clone(), source })
    }

    /// Records how many claims (レセプト) of the treatment month `month` (`YYYYMM`) the claim
    /// file `file` holds, as `onshi receipt check --gateway` read it: the 利用率's claims basis.
    /// Files add up (社保 and 国保 are separate files, and a late claim of an earlier month
    /// comes in a later file); the same file name again replaces its count (a corrected file
    /// is sent whole).
    pub fn record_claims(&self, month: &str, claims: u64, file: &str, at: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO claim_months (month, file, claims, recorded_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (month, file) DO UPDATE SET claims = excluded.claims, recorded_at = excluded.recorded_at",
                params![month, file, claims as i64, at],
            )
            .map(|_| ())
        })
    }

    /// The claims recorded for `month`: the count over every file, the files' names, and when
    /// the last was recorded.
    pub fn claims_of(&self, month: &str) -> Result<Option<(u64, String, String)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT sum(claims), group_concat(file, '・'), max(recorded_at) FROM (SELECT * FROM claim_months WHERE month = ?1 ORDER BY file)
                 HAVING count(*) > 0",
                [month],
                |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
    }

    /// Whether this request file (by name and content digest) has been answered already.
    pub fn request_answered(&self, name: &str, digest: &str) -> Result<bool, StoreError> {
        self.with(|c| c.query_row("SELECT 1 FROM requests WHERE name = ?1 AND digest = ?2", params![name, digest], |_| Ok(())).optional())
            .map(|found| found.is_some())
    }

    /// Records a check (and its queue entry, cache refresh, request journal row and answer
    /// files) in one transaction. Returns the check id.
    pub fn record(&self, check: &NewCheck<'_>, request: Option<(&str, &str)>, files: &[OutFile]) -> Result<i64, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let id = insert_check(&tx, check)?;
            if let Some((name, digest)) = request {
                journal(&tx, name, digest, check.at)?;
            }
            queue_files(&tx, files)?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// Journals a request answered without a check of its own (a batch upload, a download, a
    /// refused file) together with its files.
    pub fn answer_request(&self, name: &str, digest: &str, at: &str, files: &[OutFile]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            journal(&tx, name, digest, at)?;
            queue_files(&tx, files)?;
            tx.commit()
        })
    }

    /// The last answer the center gave for these numbers, with when it was fetched.
    pub fn cached(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        self.with(|c| c.query_row("SELECT answer, fetched_at FROM cache WHERE key = ?1", [key], |r| Ok((r.get(0)?, r.get(1)?))).optional())
    }

    /// Records a 被保険者資格申立書 (`at` is `YYYYMMDDHHmmss`).
    pub fn record_declaration(&self, at: &str, d: &crate::declaration::Declaration) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO declarations (at, name_kana, birth_date, sex, kind, employer, address, contact, declared_on)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    at,
                    d.name_kana,
                    d.birth_date.yyyymmdd(),
                    d.sex.code(),
                    d.kind,
                    d.employer,
                    d.address,
                    d.contact,
                    d.declared_on.yyyymmdd()
                ],
            )
            .map(|_| ())
        })
    }

    /// The declarations recorded since `since` (`YYYYMMDDHHmmss`), newest first.
    pub fn declarations_since(&self, since: &str) -> Result<Vec<(String, crate::declaration::Declaration)>, StoreError> {
        let rows: Vec<[String; 9]> = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT at, name_kana, birth_date, sex, kind, employer, address, contact, declared_on FROM declarations
                 WHERE at >= ?1 ORDER BY at DESC, id DESC",
            )?;
            let rows = statement.query_map([since], |r| {
                Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?])
            })?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|[at, name_kana, birth, sex, kind, employer, address, contact, declared]| {
                let date = |t: &str| onshi_domain::date::Date::parse_yyyymmdd(t).map_err(|e| StoreError::Corrupt(e.to_string()));
                let sex = onshi_domain::codes::Sex::parse(&sex).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let declaration = crate::declaration::Declaration {
                    name_kana,
                    birth_date: date(&birth)?,
                    sex,
                    kind,
                    employer,
                    address,
                    contact,
                    declared_on: date(&declared)?,
                };
                Ok((at, declaration))
            })
            .collect()
    }

    /// The answers cached for these numbers (a [`crate::reference::numbers_key`]), any 枝番 and
    /// birth date, newest first: who the gateway has seen under them.
    pub fn cached_under(&self, numbers: &str) -> Result<Vec<String>, StoreError> {
        // The keys from `numbers|` up to `numbers}` ('}' follows '|'): a range on the primary key.
        let (from, to) = (format!("{numbers}|"), format!("{numbers}}}"));
        self.with(|c| {
            let mut statement = c.prepare("SELECT answer FROM cache WHERE key >= ?1 AND key < ?2 ORDER BY fetched_at DESC LIMIT 50")?;
            let rows = statement.query_map(params![from, to], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Records 照会番号 registrations (a later one for the same numbers and 枝番 replaces the
    /// earlier), with the request's journal row, its answer files and, for a bulk file, the
    /// results its ReceptionNumber fetches, in one transaction.
    pub fn register_references(
        &self,
        registered: &[crate::reference::Registered],
        batch: Option<(&str, &crate::request::Header, &[crate::reference::Unit])>,
        request: (&str, &str),
        at: &str,
        files: &[OutFile],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            for r in registered {
                tx.execute(
                    "INSERT INTO reference_numbers (numbers, branch, reference_number, birth_date, sex, registered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (numbers, branch) DO UPDATE SET reference_number = excluded.reference_number,
                       birth_date = excluded.birth_date, sex = excluded.sex, registered_at = excluded.registered_at",
                    params![r.numbers, r.branch, r.reference_number, r.birth_date, r.sex, at],
                )?;
            }
            if let Some((reception_number, header, units)) = batch {
                tx.execute(
                    "INSERT INTO reference_batches (reception_number, created_at, header, units) VALUES (?1, ?2, ?3, ?4)",
                    params![reception_number, at, json(header), json(&units)],
                )?;
            }
            journal(&tx, request.0, request.1, at)?;
            queue_files(&tx, files)?;
            tx.commit()
        })
    }

    /// The registrations for these numbers (any 枝番).
    pub fn references_for(&self, numbers: &[String]) -> Result<Vec<crate::reference::Registered>, StoreError> {
        self.with(|c| {
            let mut statement =
                c.prepare_cached("SELECT numbers, branch, reference_number, birth_date, sex FROM reference_numbers WHERE numbers = ?1")?;
            let mut found = Vec::new();
            for numbers in numbers {
                let rows = statement.query_map([numbers], |r| {
                    Ok(crate::reference::Registered {
                        numbers: r.get(0)?,
                        branch: r.get(1)?,
                        reference_number: r.get(2)?,
                        birth_date: r.get(3)?,
                        sex: r.get(4)?,
                    })
                })?;
                for row in rows {
                    found.push(row?);
                }
            }
            Ok(found)
        })
    }

    /// Gives a registration made before anyone was seen under its numbers the person the first
    /// answer after it showed. Returns whether it did (another answer may have settled it first).
    pub fn settle_reference(&self, numbers: &str, branch: &str, birth_date: &str, sex: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE reference_numbers SET birth_date = ?3, sex = ?4 WHERE numbers = ?1 AND branch = ?2 AND birth_date IS NULL AND sex IS NULL",
                params![numbers, branch, birth_date, sex],
            )
            .map(|changed| changed == 1)
        })
    }

    /// A home-care consent a card check recorded: its key, for the 再照会 of later visits, with
    /// whom it is for (as the answer named them), kept until its last day.
    pub fn record_home_key(
        &self,
        consent: &onshi_api::card::HomeConsent,
        name: &str,
        birth_date: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO home_keys (key, kind, valid_from, valid_to, name, birth_date, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![consent.key, consent.kind.code(), consent.valid_from, consent.valid_to, name, birth_date, at],
            )
            .map(|_| ())
        })
    }

    /// The home-care consents in force on `today` (`YYYYMMDD`), by name: (consent, name, birth date).
    pub fn home_keys(&self, today: &str) -> Result<Vec<(onshi_api::card::HomeConsent, String, String)>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT key, kind, valid_from, valid_to, name, birth_date FROM home_keys WHERE valid_from <= ?1 AND valid_to >= ?1 ORDER BY name, key",
            )?;
            let rows = statement.query_map([today], |r| {
                let kind: String = r.get(1)?;
                let kind = if kind == "online" { onshi_api::card::HomeCareKind::Online } else { onshi_api::card::HomeCareKind::Visit };
                Ok((onshi_api::card::HomeConsent { key: r.get(0)?, kind, valid_from: r.get(2)?, valid_to: r.get(3)? }, r.get(4)?, r.get(5)?))
            })?;
            rows.collect()
        })
    }

    /// A list the center answered for a two-phase request (医療扶助's month, the home-care
    /// consents) under its ReceptionNumber and `kind`, with the request's journal row and its
    /// answer file, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn record_list<T: serde::Serialize>(
        &self,
        kind: &str,
        reception_number: &str,
        header: &crate::request::Header,
        answer: &T,
        request: (&str, &str),
        at: &str,
        files: &[OutFile],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO list_batches (reception_number, kind, created_at, header, answer) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![reception_number, kind, at, json(header), json(answer)],
            )?;
            journal(&tx, request.0, request.1, at)?;
            queue_files(&tx, files)?;
            tx.commit()
        })
    }

    /// A list of `kind` by its ReceptionNumber (none for another kind's number).
    pub fn list_batch<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        reception_number: &str,
    ) -> Result<Option<(crate::request::Header, T)>, StoreError> {
        let row: Option<(String, String)> = self.with(|c| {
            c.query_row(
                "SELECT header, answer FROM list_batches WHERE reception_number = ?1 AND kind = ?2",
                [reception_number, kind],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        row.map(|(header, answer)| Ok((parse(&header)?, parse(&answer)?))).transpose()
    }

    /// A bulk registration's header and results, by its ReceptionNumber.
    pub fn reference_batch(
        &self,
        reception_number: &str,
    ) -> Result<Option<(crate::request::Header, Vec<crate::reference::Unit>)>, StoreError> {
        let row: Option<(String, String)> = self.with(|c| {
            c.query_row("SELECT header, units FROM reference_batches WHERE reception_number = ?1", [reception_number], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })?;
        row.map(|(header, units)| Ok((parse(&header)?, parse(&units)?))).transpose()
    }

    /// The newest batch answer for these numbers; with `before`, only from batches stored
    /// before that reception number (the batch a batch entry is compared with).
    pub fn batch_outcome(&self, key: &str, before: Option<&str>) -> Result<Option<(String, Outcome)>, StoreError> {
        let row: Option<(String, String)> = self.with(|c| {
            c.query_row(
                "SELECT b.created_at, e.outcome FROM batch_entries e JOIN batches b USING (reception_number)
                 WHERE e.key = ?1 AND e.outcome IS NOT NULL
                   AND (?2 IS NULL OR b.rowid < (SELECT rowid FROM batches WHERE reception_number = ?2))
                 ORDER BY b.rowid DESC LIMIT 1",
                params![key, before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        row.map(|(at, outcome)| Ok((at, parse(&outcome)?))).transpose()
    }

    /// Checks made since `since` (`YYYYMMDDHHmmss`), newest first.
    pub fn checks_since(&self, since: &str) -> Result<Vec<CheckRow>, StoreError> {
        type Raw = (i64, String, String, String, String, String, String, Option<i64>, Option<String>, Option<String>, Option<String>);
        let raw: Vec<Raw> = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT c.id, c.at, c.source, c.method, c.subject, c.outcome, c.changes, q.id, q.done_at, q.outcome, q.changes
                 FROM checks c LEFT JOIN queue q ON q.id = c.queue_id WHERE c.at >= ?1 ORDER BY c.id DESC",
            )?;
            let rows = statement.query_map([since], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })?;
            rows.collect()
        })?;
        raw.into_iter()
            .map(|(id, at, source, method, subject, outcome, changes, queue_id, done_at, q_outcome, q_changes)| {
                let requeued = queue_id.map(|_| -> Result<QueueState, StoreError> {
                    Ok(QueueState {
                        done: done_at.is_some(),
                        outcome: q_outcome.as_deref().map(parse).transpose()?,
                        changes: q_changes.as_deref().map(parse).transpose()?.unwrap_or_default(),
                    })
                });
                Ok(CheckRow {
                    id,
                    at,
                    source: parse(&format!("\"{source}\""))?,
                    method,
                    subject,
                    outcome: parse(&outcome)?,
                    changes: parse(&changes)?,
                    requeued: requeued.transpose()?,
                })
            })
            .collect()
    }

    /// Checks waiting for the line, oldest first.
    pub fn waiting(&self) -> Result<Vec<QueuedJob>, StoreError> {
        let raw: Vec<(i64, i64, String, String, String)> = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT q.id, q.check_id, q.job, q.recorded_at, c.outcome FROM queue q JOIN checks c ON c.id = q.check_id
                 WHERE q.done_at IS NULL ORDER BY q.id",
            )?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
            rows.collect()
        })?;
        raw.into_iter()
            .map(|(id, check_id, job, recorded_at, first)| {
                Ok(QueuedJob { id, check_id, job: parse(&job)?, recorded_at, first: parse(&first)? })
            })
            .collect()
    }

    /// Closes a queued check with its re-verified outcome and the files that carry it, once.
    /// Returns false when it was closed already.
    pub fn complete(
        &self,
        queue_id: i64,
        at: &str,
        outcome: &Outcome,
        changes: &[String],
        cache: Option<(&str, &str)>,
        files: &[OutFile],
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let closed = tx.execute(
                "UPDATE queue SET done_at = ?2, outcome = ?3, changes = ?4 WHERE id = ?1 AND done_at IS NULL",
                params![queue_id, at, json(outcome), json(&changes)],
            )?;
            if closed == 1 {
                if let Some((key, answer)) = cache {
                    refresh_cache(&tx, key, answer, at)?;
                }
                queue_files(&tx, files)?;
            }
            tx.commit()?;
            Ok(closed == 1)
        })
    }

    pub fn note_attempt(&self, queue_id: i64) -> Result<(), StoreError> {
        self.with(|c| c.execute("UPDATE queue SET attempts = attempts + 1 WHERE id = ?1", [queue_id]).map(|_| ()))
    }

    /// Stores a 一括照会 with its entries (labels for staff, keys for matching, searches).
    pub fn add_batch(&self, batch: &NewBatch<'_>, request: Option<(&str, &str)>, files: &[OutFile]) -> Result<(), StoreError> {
        let NewBatch { reception_number, at, source, header, entries } = *batch;
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO batches (reception_number, created_at, source, header) VALUES (?1, ?2, ?3, ?4)",
                params![reception_number, at, source, json(header)],
            )?;
            {
                let mut insert =
                    tx.prepare("INSERT INTO batch_entries (reception_number, seq, key, label, search) VALUES (?1, ?2, ?3, ?4, ?5)")?;
                for (seq, (key, label, search)) in entries.iter().enumerate() {
                    insert.execute(params![reception_number, seq as i64, key, label, json(search)])?;
                }
            }
            if let Some((name, digest)) = request {
                journal(&tx, name, digest, at)?;
            }
            queue_files(&tx, files)?;
            tx.commit()
        })
    }

    /// Batch entries still without an answer, oldest batch first.
    pub fn unanswered_batch_entries(&self) -> Result<Vec<BatchEntry>, StoreError> {
        type Raw = (String, i64, String, String, String, String);
        let raw: Vec<Raw> = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT e.reception_number, e.seq, e.key, e.search, b.created_at, b.header
                 FROM batch_entries e JOIN batches b USING (reception_number)
                 WHERE e.outcome IS NULL ORDER BY b.created_at, e.reception_number, e.seq",
            )?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?;
            rows.collect()
        })?;
        raw.into_iter()
            .map(|(reception_number, seq, key, search, created_at, header)| {
                Ok(BatchEntry { reception_number, seq, key, search: parse(&search)?, created_at, header: parse(&header)? })
            })
            .collect()
    }

    /// Files to write, on their own (a batch's result file).
    pub fn queue_files(&self, files: &[OutFile]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            queue_files(&tx, files)?;
            tx.commit()
        })
    }

    /// Answers for batch entries, with the changes since the previous batch; in one transaction.
    pub fn answer_batch_entries(&self, at: &str, answers: &[(String, i64, String, Outcome, Vec<String>)]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut update = tx.prepare(
                    "UPDATE batch_entries SET outcome = ?3, changes = ?4 WHERE reception_number = ?1 AND seq = ?2 AND outcome IS NULL",
                )?;
                for (reception_number, seq, key, outcome, changes) in answers {
                    update.execute(params![reception_number, seq, json(outcome), json(changes)])?;
                    if let Some(answer) = outcome.answer() {
                        refresh_cache(&tx, key, &json(answer), at)?;
                    }
                }
            }
            tx.commit()
        })
    }

    /// A batch's header and entries: (label, search, outcome, changes).
    #[allow(clippy::type_complexity)]
    pub fn batch(
        &self,
        reception_number: &str,
    ) -> Result<Option<(crate::request::Header, Vec<(String, crate::request::SearchInfo, Option<Outcome>, Vec<String>)>)>, StoreError> {
        let header: Option<String> = self
            .with(|c| c.query_row("SELECT header FROM batches WHERE reception_number = ?1", [reception_number], |r| r.get(0)).optional())?;
        let Some(header) = header else { return Ok(None) };
        let raw: Vec<(String, String, Option<String>, String)> = self.with(|c| {
            let mut statement =
                c.prepare("SELECT label, search, outcome, changes FROM batch_entries WHERE reception_number = ?1 ORDER BY seq")?;
            let rows = statement.query_map([reception_number], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect()
        })?;
        let entries = raw
            .into_iter()
            .map(|(label, search, outcome, changes)| {
                Ok((label, parse(&search)?, outcome.as_deref().map(parse).transpose()?, parse(&changes)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((parse(&header)?, entries)))
    }

    /// Batch entries of batches made since `since` whose answer changed from the batch before.
    pub fn batch_changes_since(&self, since: &str) -> Result<Vec<(String, String, Vec<String>)>, StoreError> {
        let raw: Vec<(String, String, String)> = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT b.created_at, e.label, e.changes FROM batch_entries e JOIN batches b USING (reception_number)
                 WHERE b.created_at >= ?1 AND e.changes != '[]' ORDER BY b.created_at DESC, e.seq",
            )?;
            let rows = statement.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        raw.into_iter().map(|(at, label, changes)| Ok((at, label, parse(&changes)?))).collect()
    }

    /// Files not yet fully written, with whether each is staged.
    pub fn unwritten(&self) -> Result<Vec<(i64, OutFile, bool)>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT id, path, bytes, state, remove_after FROM outbox ORDER BY id")?;
            let rows = statement.query_map([], |r| {
                let remove_after: Option<String> = r.get(4)?;
                let state: String = r.get(3)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    OutFile {
                        path: PathBuf::from(r.get::<_, String>(1)?),
                        bytes: r.get(2)?,
                        remove_after: remove_after.map(PathBuf::from),
                    },
                    state == "staged",
                ))
            })?;
            rows.collect()
        })
    }

    /// Marks a file staged: written and synced under its temporary name. When it answers a
    /// request, that request has been removed by now, so its journal rows go in the same
    /// transaction: they guard only the moment between answering and removing, and they must
    /// be gone before the answer appears, because a client that then sends the same file again
    /// (the same patient checked twice under a fixed file name) is asking anew.
    pub fn mark_staged(&self, id: i64, removed_request: Option<&str>) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("UPDATE outbox SET state = 'staged' WHERE id = ?1", [id])?;
            if let Some(name) = removed_request {
                tx.execute("DELETE FROM requests WHERE name = ?1", [name])?;
            }
            tx.commit()
        })
    }

    /// A file is out under its own name: its row (and its bytes) are no longer needed.
    pub fn mark_written(&self, id: i64) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM outbox WHERE id = ?1", [id]).map(|_| ()))
    }

    /// Forgets what is older than `cutoff` (`YYYYMMDDHHmmss`): checks and their finished queue
    /// entries, batches, cached answers and journal rows. A check still waiting for the line is
    /// kept whatever its age. Returns the number of checks forgotten.
    pub fn forget_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let checks = tx.execute(
                "DELETE FROM checks WHERE at < ?1 AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.check_id = checks.id AND q.done_at IS NULL)",
                [cutoff],
            )?;
            tx.execute("DELETE FROM queue WHERE done_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM checks c WHERE c.id = queue.check_id)", [])?;
            tx.execute(
                "DELETE FROM batch_entries WHERE reception_number IN (SELECT reception_number FROM batches WHERE created_at < ?1)
                   AND NOT EXISTS (SELECT 1 FROM batch_entries w WHERE w.reception_number = batch_entries.reception_number AND w.outcome IS NULL)",
                [cutoff],
            )?;
            tx.execute(
                "DELETE FROM batches WHERE created_at < ?1 AND NOT EXISTS (SELECT 1 FROM batch_entries e WHERE e.reception_number = batches.reception_number)",
                [cutoff],
            )?;
            tx.execute("DELETE FROM cache WHERE fetched_at < ?1", [cutoff])?;
            // A declaration holds a name and an address: kept no longer than the checks.
            tx.execute("DELETE FROM declarations WHERE at < ?1", [cutoff])?;
            // The results of a bulk registration; the registrations themselves stay.
            tx.execute("DELETE FROM reference_batches WHERE created_at < ?1", [cutoff])?;
            // The lists name patients: kept no longer than the checks.
            tx.execute("DELETE FROM list_batches WHERE created_at < ?1", [cutoff])?;
            // A home-care key is kept while its consent lasts, not longer.
            tx.execute("DELETE FROM home_keys WHERE valid_to < substr(?1, 1, 8)", [cutoff])?;
            tx.execute("DELETE FROM requests WHERE answered_at < ?1", [cutoff])?;
            tx.commit()?;
            Ok(checks)
        })
    }
}

fn insert_check(tx: &rusqlite::Transaction<'_>, check: &NewCheck<'_>) -> rusqlite::Result<i64> {
    let source = json(&check.source);
    tx.execute(
        "INSERT INTO checks (at, source, method, subject, outcome, changes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![check.at, source.trim_matches('"'), check.method, check.subject, json(check.outcome), json(&check.changes)],
    )?;
    let id = tx.last_insert_rowid();
    if let Some(job) = check.queue {
        tx.execute("INSERT INTO queue (check_id, job, recorded_at) VALUES (?1, ?2, ?3)", params![id, json(job), check.at])?;
        let queue_id = tx.last_insert_rowid();
        tx.execute("UPDATE checks SET queue_id = ?2 WHERE id = ?1", params![id, queue_id])?;
    }
    if let Some((key, answer)) = check.cache {
        refresh_cache(tx, key, answer, check.at)?;
    }
    Ok(id)
}

fn refresh_cache(tx: &rusqlite::Transaction<'_>, key: &str, answer: &str, at: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO cache (key, answer, fetched_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET answer = excluded.answer, fetched_at = excluded.fetched_at",
        params![key, answer, at],
    )
    .map(|_| ())
}

fn journal(tx: &rusqlite::Transaction<'_>, name: &str, digest: &str, at: &str) -> rusqlite::Result<()> {
    tx.execute("INSERT OR IGNORE INTO requests (name, digest, answered_at) VALUES (?1, ?2, ?3)", params![name, digest, at]).map(|_| ())
}

fn queue_files(tx: &rusqlite::Transaction<'_>, files: &[OutFile]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare("INSERT INTO outbox (path, bytes, state, remove_after) VALUES (?1, ?2, 'pending', ?3)")?;
    for file in files {
        insert.execute(params![
            file.path.to_string_lossy(),
            file.bytes,
            file.remove_after.as_ref().map(|p| p.to_string_lossy().into_owned())
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Outcome;

    fn check(store: &Store, at: &str, queue: bool) -> i64 {
        let outcome = Outcome::Queued { reason: "down".into() };
        let job = Job::Number { request: Default::default(), reply: None };
        let new = NewCheck {
            at,
            source: Source::Page,
            method: "number",
            subject: "s",
            outcome: &outcome,
            changes: &[],
            queue: queue.then_some(&job),
            cache: Some(("k", "{}")),
        };
        store.record(&new, Some((at, "digest")), &[]).unwrap()
    }

    /// 社保 and 国保 files add up; a corrected 社保 file replaces its own count; a late claim of
    /// November in December's file counts for November.
    #[test]
    fn claims_add_up_over_the_files_of_a_month() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite")).unwrap();
        assert_eq!(store.claims_of("202612").unwrap(), None);
        store.record_claims("202612", 10, "SHAHO.UKE", "20270105090000").unwrap();
        store.record_claims("202612", 5, "KOKUHO.UKE", "20270105091000").unwrap();
        assert_eq!(store.claims_of("202612").unwrap(), Some((15, "KOKUHO.UKE・SHAHO.UKE".into(), "20270105091000".into())));
        store.record_claims("202612", 12, "SHAHO.UKE", "20270106090000").unwrap();
        assert_eq!(store.claims_of("202612").unwrap().map(|c| c.0), Some(17));
        store.record_claims("202611", 1, "SHAHO.UKE", "20270106090000").unwrap();
        assert_eq!(store.claims_of("202611").unwrap().map(|c| c.0), Some(1));
        assert_eq!(store.claims_of("202612").unwrap().map(|c| c.0), Some(17));
    }

    #[test]
    fn old_checks_are_forgotten_but_nothing_still_waiting_for_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite")).unwrap();
        check(&store, "20260101090000", false);
        check(&store, "20260101100000", true);
        check(&store, "20261125090000", false);
        assert_eq!(store.forget_before("20261001000000").unwrap(), 1, "the old answered check goes");
        let left: Vec<String> = store.checks_since("20250101000000").unwrap().into_iter().map(|c| c.at).collect();
        assert_eq!(left, ["20261125090000", "20260101100000"], "the waiting one stays whatever its age");
        assert_eq!(store.waiting().unwrap().len(), 1);
        assert!(!store.request_answered("20260101090000", "digest").unwrap(), "old journal rows go");
        assert!(store.request_answered("20261125090000", "digest").unwrap());
    }
}
