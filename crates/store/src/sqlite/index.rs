//! The card index on SQLite, and when it may answer.
//!
//! SQLite counts the commits other connections make to the file (`PRAGMA data_version`, a
//! local read of the shared WAL index, no I/O). The index records that count when it has caught
//! up with the change log; a read answers from memory only while the count is unchanged, so an
//! answer from the index is exactly what the engine would have said at that moment, whichever
//! process or connection imported. When the count has moved, the reading thread catches up (the
//! change log after the index's position, then the views of the persons it names) unless
//! another thread is doing so, in which case it reads the engine as before.
//!
//! The register's import is the only writer of coverages and terms, and it writes the change
//! log in the same transaction. A hand edit of those tables in SQL is not in the log: a running
//! center sees it after a restart (the index is loaded afresh).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use rusqlite::{Connection, params};

use super::{SqliteRegister, read_view, sqlite, view_sql};
use crate::StoreError;
use crate::card_index::{CardIndex, CardIndexCounts, CardIndexStatus, LOAD_CHUNK, by_person, decode_ids};

pub(super) struct IndexHandle {
    state: RwLock<Current>,
    /// The index may hold at most this many persons; past it, it is given up.
    max_persons: u64,
    /// Given up: the register outgrew `max_persons`. Every read goes to the engine.
    given_up: AtomicBool,
    /// A catch-up failed and nothing has been said of it yet.
    failing: AtomicBool,
    /// Runs nothing but `PRAGMA data_version`: its count moves with every other connection's
    /// commit.
    checker: Mutex<Connection>,
    /// Reads the change log and the changed persons when the index catches up.
    updater: Mutex<Connection>,
    served: AtomicU64,
    behind: AtomicU64,
}

struct Current {
    index: CardIndex,
    /// The checker's `data_version` at which the index was known to hold every commit.
    version: i64,
}

fn data_version(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .prepare_cached("PRAGMA data_version")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(sqlite("reading the file's change counter"))
}

fn persons_view_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| view_sql("c.person_id IN (SELECT value FROM json_each(?1))"))
}

fn range_view_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| view_sql("c.person_id BETWEEN ?1 AND ?2"))
}

impl SqliteRegister {
    /// Loads the card index (every person's coverages with their terms, about 0.85 kB a person)
    /// and answers card views from it from then on, unless the register holds more than
    /// `max_persons` persons. Reads meanwhile go to the engine.
    pub(super) fn build_index(&self, max_persons: u64) -> Result<CardIndexStatus, StoreError> {
        if self.index.get().is_some() {
            let current = self.index.get().map(|h| h.state.read().unwrap_or_else(|p| p.into_inner()).index.persons()).unwrap_or(0);
            return Ok(CardIndexStatus::Built { persons: current });
        }
        let checker = self.open_reader()?;
        let loader = self.open_reader()?;
        let persons: i64 = loader.query_row("SELECT count(*) FROM persons", [], |row| row.get(0)).map_err(sqlite("counting persons"))?;
        if persons as u64 > max_persons {
            return Ok(CardIndexStatus::TooLarge { persons: persons as u64, max_persons });
        }
        // The counter before the snapshot: the snapshot holds at least every commit it counts.
        let version = data_version(&checker)?;
        let index = in_snapshot(&loader, load)?;
        let persons = index.persons();
        let handle = IndexHandle {
            state: RwLock::new(Current { index, version }),
            max_persons,
            given_up: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            checker: Mutex::new(checker),
            updater: Mutex::new(loader),
            served: AtomicU64::new(0),
            behind: AtomicU64::new(0),
        };
        let _ = self.index.set(handle);
        Ok(CardIndexStatus::Built { persons })
    }

    /// How the index has answered so far.
    pub(super) fn index_counts(&self) -> CardIndexCounts {
        self.index
            .get()
            .map(|h| CardIndexCounts {
                persons: h.state.read().unwrap_or_else(|p| p.into_inner()).index.persons(),
                served: h.served.load(Ordering::Relaxed),
                behind: h.behind.load(Ordering::Relaxed),
            })
            .unwrap_or_default()
    }

    /// `f` over the index if it holds every commit made to the file until now, catching up
    /// first when it can; `None`: read the engine.
    pub(super) fn read_index<T>(&self, f: impl FnOnce(&CardIndex) -> T) -> Option<T> {
        let handle = self.index.get()?;
        if handle.given_up.load(Ordering::Relaxed) {
            handle.behind.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let counted = {
            let checker = handle.checker.lock().unwrap_or_else(|p| p.into_inner());
            data_version(&checker)
        };
        let Ok(now) = counted else {
            handle.behind.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        {
            let current = handle.state.read().unwrap_or_else(|p| p.into_inner());
            if current.version == now {
                handle.served.fetch_add(1, Ordering::Relaxed);
                return Some(f(&current.index));
            }
        }
        if handle.catch_up(now) {
            let current = handle.state.read().unwrap_or_else(|p| p.into_inner());
            if current.version == now {
                handle.served.fetch_add(1, Ordering::Relaxed);
                return Some(f(&current.index));
            }
        }
        handle.behind.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn load(connection: &Connection) -> Result<CardIndex, StoreError> {
    let (seq, max_person): (i64, i64) = connection
        .query_row(
            "SELECT (SELECT coalesce(max(seq), 0) FROM register_changes), (SELECT coalesce(max(person_id), 0) FROM persons)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(sqlite("reading the change log's position"))?;
    let mut index = CardIndex::new(seq);
    let mut from = 1;
    while from <= max_person {
        let to = from.saturating_add(LOAD_CHUNK - 1);
        for (person, view) in by_person(read_view(connection, range_view_sql(), params![from, to])?) {
            index.set_person(person, view);
        }
        from = to.saturating_add(1);
    }
    Ok(index)
}

/// `read` inside one read transaction on `connection` (one snapshot), ended whatever happens:
/// a transaction left open would hold the snapshot and keep the WAL from being checkpointed.
fn in_snapshot<T>(connection: &Connection, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    connection.execute_batch("BEGIN").map_err(sqlite("starting a snapshot for the card index"))?;
    let result = read(connection);
    let ended = connection.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    if ended.is_err() && !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    let value = result?;
    ended.map_err(sqlite("ending a snapshot for the card index"))?;
    Ok(value)
}

impl IndexHandle {
    /// Brings the index up to the file's commit count `now`, unless another thread is at it
    /// (then `true`: the caller looks again). `false` when the catch-up failed (said once) or
    /// the register outgrew the index (said, and the index given up).
    fn catch_up(&self, now: i64) -> bool {
        let Ok(updater) = self.updater.try_lock() else {
            return true;
        };
        let position = {
            let current = self.state.read().unwrap_or_else(|p| p.into_inner());
            if current.version == now {
                return true;
            }
            current.index.seq
        };
        let (seq, changed) = match in_snapshot(&updater, |c| changed_views(c, position)) {
            Ok(read) => read,
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the card index cannot catch up with the register; card views are read from the register until it can");
                }
                return false;
            }
        };
        self.failing.store(false, Ordering::Relaxed);
        let mut current = self.state.write().unwrap_or_else(|p| p.into_inner());
        for (person, view) in changed {
            current.index.set_person(person, view);
        }
        current.index.seq = seq;
        current.version = now;
        if current.index.persons() > self.max_persons {
            self.given_up.store(true, Ordering::Relaxed);
            tracing::warn!(
                persons = current.index.persons(),
                max_persons = self.max_persons,
                "the register outgrew the card index; card views are read from the register from now on"
            );
            current.index = CardIndex::new(seq);
            return false;
        }
        true
    }
}

/// The change log after `position`: its new position and the view of every person it names.
#[allow(clippy::type_complexity)]
fn changed_views(connection: &Connection, position: i64) -> Result<(i64, Vec<(i64, Vec<crate::model::CoverageWithTerms>)>), StoreError> {
    let mut seq = position;
    let mut coverages = Vec::new();
    {
        let mut statement = connection
            .prepare_cached("SELECT seq, coverage_ids FROM register_changes WHERE seq > ?1")
            .map_err(sqlite("preparing the change log's read"))?;
        let mut rows = statement.query([position]).map_err(sqlite("reading the change log"))?;
        while let Some(row) = rows.next().map_err(sqlite("reading the change log"))? {
            seq = seq.max(row.get(0).map_err(sqlite("reading the change log"))?);
            let ids: Vec<u8> = row.get(1).map_err(sqlite("reading the change log"))?;
            coverages.extend(decode_ids(&ids)?);
        }
    }
    if coverages.is_empty() {
        return Ok((seq, Vec::new()));
    }
    coverages.sort_unstable();
    coverages.dedup();
    let ids = serde_json::to_string(&coverages).map_err(|e| StoreError::Corrupt(format!("coverage ids: {e}")))?;
    let persons: Vec<i64> = connection
        .prepare_cached("SELECT DISTINCT person_id FROM coverages WHERE coverage_id IN (SELECT value FROM json_each(?1))")
        .map_err(sqlite("preparing the changed persons' read"))?
        .query_map([&ids], |row| row.get(0))
        .map_err(sqlite("reading the changed persons"))?
        .collect::<Result<_, _>>()
        .map_err(sqlite("reading the changed persons"))?;
    let persons_json = serde_json::to_string(&persons).map_err(|e| StoreError::Corrupt(format!("person ids: {e}")))?;
    let mut views = by_person(read_view(connection, persons_view_sql(), params![persons_json])?);
    // A person named by the log keeps at least the coverage that named them (coverages are
    // never deleted nor moved to another person); an empty view would mean their coverages
    // have no terms, which the register never writes.
    Ok((seq, persons.into_iter().map(|p| (p, views.remove(&p).unwrap_or_default())).collect()))
}
