//! The embedded backend: one SQLite file in WAL mode, `synchronous = FULL` so that a commit
//! survives a crash or power loss, STRICT tables, versioned migrations.
//!
//! Concurrency: one writer connection behind a mutex (SQLite allows one writer anyway) and a
//! small pool of read-only connections, so verifications never wait for an import.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use onshi_domain::Timestamp;
use onshi_domain::codes::Sex;
use onshi_domain::date::Date;
use onshi_domain::ids::{CardNumber, InsurerNumber};

use crate::rows::{
    COVERAGE_COLUMNS, DUMP_QUERIES, DumpValue, RawCoverage, RawTerms, TERMS_COLUMNS, coverage_record, day, diseases_json, dump_line,
    group_view, opt_day, public_expense_json, terms_record, to_date, to_opt_date,
};

use crate::model::*;
use crate::{Register, StoreError};

/// Schema migrations, applied in order; a version once released is never edited.
mod apply;
mod cards;
mod home;
mod index;
mod load;
mod medical;
mod subsidy;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("sqlite/0001_register.sql")),
    (2, include_str!("sqlite/0002_cards.sql")),
    (3, include_str!("sqlite/0003_medical.sql")),
    (4, include_str!("sqlite/0004_trust.sql")),
    (5, include_str!("sqlite/0005_face_only.sql")),
    (6, include_str!("sqlite/0006_phone.sql")),
    (7, include_str!("sqlite/0007_born_on.sql")),
    (8, include_str!("sqlite/0008_qualification_certificate.sql")),
    (9, include_str!("sqlite/0009_subsidies.sql")),
    (10, include_str!("sqlite/0010_medical_tickets.sql")),
    (11, include_str!("sqlite/0011_home_consents.sql")),
    (12, include_str!("sqlite/0012_welfare_holders.sql")),
    (13, include_str!("sqlite/0013_register_changes.sql")),
    (14, include_str!("sqlite/0014_register_load.sql")),
    (15, include_str!("sqlite/0015_persons_index.sql")),
];

/// Migrations that rebuild a table other tables refer to, and that table: SQLite's procedure
/// wants foreign keys off while the old table is dropped and the new one renamed into its
/// place, and the references to it checked before the commit. Migration 15 copies every person
/// and sorts their references into the new index: once, at the first open by the new version
/// (22.3 s measured on a register of 10 M persons, docs/PERFORMANCE.md).
const REBUILDS: &[(i64, &str)] = &[(15, "persons")];

/// Process-wide SQLite settings, taken before the first connection opens (SQLite accepts them
/// only then; later they are refused and the defaults stay, which is correct, only slower).
///
/// Memory statistics off: with them on, SQLite takes a global mutex around every allocation
/// and free to keep `sqlite3_memory_used` current, which nothing here reads (no soft heap
/// limit is set). That mutex was 6 % of a load's writing thread (docs/PERFORMANCE.md).
pub fn configure_process() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` is safe to call before `sqlite3_initialize` with no
        // connection open; called later it only returns SQLITE_MISUSE and changes nothing.
        let code = unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
        if code != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(code, "SQLite was already initialised: its memory statistics stay on");
        }
    });
}

/// Prepared statements kept per connection: more than the register ever uses.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Readers map the file so that a lookup reads pages from the OS page cache without a system
/// call per page. Mapped pages are file-backed: they count in the page cache, not in the
/// process's anonymous memory. SQLite's compiled maximum is raised above this for the bundled
/// build (`.cargo/config.toml`); its default, 2 GB, left most of a large register to `pread`.
const READER_MMAP_BYTES: u64 = 16 << 30;

/// Read connections kept open; more are opened on demand and closed when returned.
const READERS_KEPT_MAX: usize = 16;

/// Tuning for how the file is used.
#[derive(Clone, Copy, Debug)]
pub struct SqliteOptions {
    /// SQLite page cache of the writer, in KiB. Imports want it large; a server moderate.
    pub writer_cache_kib: u32,
    /// Page cache of each reader, in KiB. Counts towards the server's resident memory.
    pub reader_cache_kib: u32,
}

impl SqliteOptions {
    /// For the server: bounded memory.
    pub const SERVER: SqliteOptions = SqliteOptions { writer_cache_kib: 64 * 1024, reader_cache_kib: 16 * 1024 };
    /// For a bulk import: a large writer cache keeps index pages resident.
    pub const IMPORT: SqliteOptions = SqliteOptions { writer_cache_kib: 1024 * 1024, reader_cache_kib: 8 * 1024 };
}

pub struct SqliteRegister {
    path: PathBuf,
    options: SqliteOptions,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// The card index, once built (`Register::build_card_index`).
    index: std::sync::OnceLock<index::IndexHandle>,
}

fn sqlite(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Engine { doing, source: Box::new(source) }
}

impl SqliteRegister {
    /// The card view read from the file itself (the card index behind or not kept).
    fn card_holders_view_from_file(&self, insurer: &InsurerNumber, number: &CardNumber) -> Result<Vec<CoverageWithTerms>, StoreError> {
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql =
            SQL.get_or_init(|| view_sql("c.person_id IN (SELECT person_id FROM coverages WHERE insurer_number = ?1 AND card_number = ?2)"));
        self.read(|connection| read_view(connection, sql, params![insurer.as_str(), number.as_str()]))
    }

    /// Opens (creating if needed) the register at `path` and brings its schema up to date.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteRegister, StoreError> {
        let mut writer = open_writer(path, options)?;
        migrate(&mut writer)?;
        Ok(SqliteRegister {
            path: path.to_path_buf(),
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            index: std::sync::OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)
            .map_err(|source| StoreError::Open { path: self.path.display().to_string(), source: Box::new(source) })?;
        connection
            .execute_batch(&format!(
                "PRAGMA busy_timeout = 10000; PRAGMA cache_size = -{}; PRAGMA mmap_size = {};",
                self.options.reader_cache_kib, READER_MMAP_BYTES
            ))
            .map_err(sqlite("configuring a reader"))?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        Ok(connection)
    }

    /// Runs `f` on a pooled read connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => self.open_reader()?,
        };
        let result = f(&connection);
        let mut readers = self.readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if readers.len() < READERS_KEPT_MAX {
            readers.push(connection);
        }
        result
    }
}

/// A connection that writes the register, with the settings every writer uses.
fn open_writer(path: &Path, options: SqliteOptions) -> Result<Connection, StoreError> {
    let open_error = |source| StoreError::Open { path: path.display().to_string(), source: Box::new(source) };
    // NO_MUTEX: a writer is only ever used by one thread at a time (under `writer`'s lock, or
    // by a load's own writing thread), so SQLite's own per-call mutex is pure cost (about 8 %
    // of an import's CPU).
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let writer = Connection::open_with_flags(path, flags).map_err(open_error)?;
    // Explicit settings rather than defaults: durability first.
    writer
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 10000;
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -{};",
            options.writer_cache_kib
        ))
        .map_err(open_error)?;
    // Every statement of an import stays prepared; the default cache of 16 would thrash.
    writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(writer)
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    migrate_with(connection, MIGRATIONS)
}

/// The migration of version 14 made `register_load`, whose row keeps the CREATE statements of
/// the indexes an unfinished load dropped.
const LOAD_TABLE_VERSION: i64 = 14;

fn migrate_with(connection: &mut Connection, migrations: &[(i64, &str)]) -> Result<(), StoreError> {
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT;")
        .map_err(sqlite("creating the migrations table"))?;
    let current: i64 = connection
        .query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |row| row.get(0))
        .map_err(sqlite("reading the schema version"))?;
    let known = migrations.last().map_or(0, |(version, _)| *version);
    if current > known {
        return Err(StoreError::SchemaTooNew { found: current, known });
    }
    // A load replays its dropped indexes' statements when it ends: a migration in between
    // could change those indexes under it. The load is finished first, by the program that
    // started it.
    if current >= LOAD_TABLE_VERSION
        && known > current
        && let Some(started_at) = load::unfinished(connection)?
    {
        return Err(StoreError::LoadBeforeUpgrade { started_at });
    }
    for (version, sql) in migrations.iter().filter(|(version, _)| *version > current) {
        let rebuilt = REBUILDS.iter().find(|(v, _)| v == version).map(|(_, table)| *table);
        let Some(table) = rebuilt else {
            apply_migration(connection, *version, sql, None)?;
            continue;
        };
        let enforced: i64 =
            connection.query_row("PRAGMA foreign_keys", [], |row| row.get(0)).map_err(sqlite("preparing a table rebuild"))?;
        // Outside the transaction: inside one SQLite ignores this pragma.
        connection.execute_batch("PRAGMA foreign_keys = OFF").map_err(sqlite("preparing a table rebuild"))?;
        let applied = apply_migration(connection, *version, sql, Some(table));
        let restored = connection
            .execute_batch(&format!("PRAGMA foreign_keys = {enforced}"))
            .map_err(sqlite("enforcing foreign keys again after a table rebuild"));
        applied?;
        restored?;
    }
    Ok(())
}

/// Applies one migration in its own transaction; for one that rebuilt `rebuilt`, the rows that
/// refer to it are checked before the commit (and the migration is not applied if one names
/// a row that is not there).
fn apply_migration(connection: &mut Connection, version: i64, sql: &str, rebuilt: Option<&str>) -> Result<(), StoreError> {
    let tx = connection.transaction().map_err(sqlite("starting a migration"))?;
    tx.execute_batch(sql).map_err(sqlite("applying a migration"))?;
    if let Some(parent) = rebuilt {
        let children: Vec<String> = tx
            .prepare(
                "SELECT DISTINCT m.name FROM sqlite_schema m, pragma_foreign_key_list(m.name) f
                 WHERE m.type = 'table' AND f.\"table\" = ?1 ORDER BY m.name",
            )
            .and_then(|mut statement| statement.query_map([parent], |row| row.get(0))?.collect())
            .map_err(sqlite("listing the tables that refer to a rebuilt table"))?;
        for child in children {
            let dangling: Option<Option<i64>> = tx
                .query_row(&format!("SELECT rowid FROM pragma_foreign_key_check('{child}') WHERE parent = ?1 LIMIT 1"), [parent], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sqlite("checking references after a table rebuild"))?;
            if let Some(rowid) = dangling {
                return Err(StoreError::Corrupt(format!(
                    "migration {version}: a row of {child} (rowid {}) refers to a row of {parent} that does not exist; \
                     the migration was not applied: keep the file for a bug report and ask for help before going on",
                    rowid.map_or("none".to_string(), |r| r.to_string())
                )));
            }
        }
    }
    tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())", [version])
        .map_err(sqlite("recording a migration"))?;
    tx.commit().map_err(sqlite("committing a migration"))
}

fn raw_coverage(row: &Row<'_>) -> rusqlite::Result<RawCoverage> {
    Ok(RawCoverage(
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
        row.get(13)?,
    ))
}

fn query_coverages(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<CoverageRecord>, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(sqlite("preparing a coverage query"))?;
    let raws = statement
        .query_map(params, raw_coverage)
        .map_err(sqlite("querying coverages"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite("reading coverages"))?;
    raws.into_iter().map(coverage_record).collect()
}

fn raw_terms(row: &Row<'_>) -> rusqlite::Result<RawTerms> {
    raw_terms_at(row, 0)
}

/// The terms columns starting at column `at` (after the coverage columns in a join).
fn raw_terms_at(row: &Row<'_>, at: usize) -> rusqlite::Result<RawTerms> {
    Ok(RawTerms(
        row.get(at)?,
        row.get(at + 1)?,
        row.get(at + 2)?,
        row.get(at + 3)?,
        row.get(at + 4)?,
        row.get(at + 5)?,
        row.get(at + 6)?,
        row.get(at + 7)?,
        row.get(at + 8)?,
        row.get(at + 9)?,
        row.get(at + 10)?,
        row.get(at + 11)?,
        row.get(at + 12)?,
        row.get(at + 13)?,
        row.get(at + 14)?,
        row.get(at + 15)?,
    ))
}

fn load_terms(connection: &Connection, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError> {
    // No ORDER BY: with bundled SQLite's STAT4, an ORDER BY over a key the WHERE fixes makes
    // the cached statement re-prepare at every use; the few rows are sorted here instead.
    let mut statement = connection.prepare_cached(terms_sql()).map_err(sqlite("preparing a terms query"))?;
    let raws = statement
        .query_map([coverage_id], raw_terms)
        .map_err(sqlite("querying terms"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite("reading terms"))?;
    let mut terms = raws.into_iter().map(terms_record).collect::<Result<Vec<_>, _>>()?;
    terms.sort_by_key(|t| t.effective_from);
    Ok(terms)
}

/// One person's coverages with their terms. `CAST(?1 AS INTEGER)`, not a bare `?1`: with the
/// bundled SQLite's STAT4, this join on a bare parameter makes the cached statement re-prepare
/// at every use (measured: 1,999 re-preparations in 2,000 runs, none with the cast; same plan).
fn person_view_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| view_sql("c.person_id = CAST(?1 AS INTEGER)"))
}

/// A coverage's terms, unsorted (see [`load_terms`]).
fn terms_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {TERMS_COLUMNS} FROM coverage_terms WHERE coverage_id = ?1"))
}

/// The coverages with their terms of the persons `filter` selects (`c` is the coverage).
fn view_sql(filter: &str) -> String {
    let coverage_columns: String = COVERAGE_COLUMNS.split(", ").map(|c| format!("c.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let terms_columns: String = TERMS_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {coverage_columns}, {terms_columns} FROM coverages c JOIN coverage_terms t ON t.coverage_id = c.coverage_id WHERE {filter}"
    )
}

/// Runs a [`view_sql`] statement and groups its rows by coverage.
fn read_view(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<CoverageWithTerms>, StoreError> {
    // No ORDER BY: a sort costs a temporary B-tree per call, half the query's time (and makes
    // the statement re-prepare at every use). The rows are grouped and ordered below instead;
    // there are only a handful.
    let mut statement = connection.prepare_cached(sql).map_err(sqlite("preparing the card view"))?;
    let width = COVERAGE_COLUMNS.split(", ").count();
    let raws = statement
        .query_map(params, |row| Ok((raw_coverage(row)?, raw_terms_at(row, width)?)))
        .map_err(sqlite("querying the card view"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite("reading the card view"))?;
    group_view(raws)
}

impl Register for SqliteRegister {
    fn apply_events(&self, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = writer.transaction().map_err(sqlite("starting an import transaction"))?;
        let outcomes = apply::apply_batch(&tx, events, registered_at)?;
        tx.commit().map_err(sqlite("committing an import transaction"))?;
        Ok(outcomes)
    }

    fn begin_load(&self) -> Result<Option<Box<dyn crate::RegisterLoad + '_>>, StoreError> {
        Ok(self.begin_sqlite_load()?.map(|load| Box::new(load) as Box<dyn crate::RegisterLoad + '_>))
    }

    fn unfinished_load(&self) -> Result<Option<String>, StoreError> {
        self.read(load::unfinished)
    }

    fn coverages_by_number(&self, insurer: &InsurerNumber, number: &CardNumber) -> Result<Vec<CoverageRecord>, StoreError> {
        let sql = format!("SELECT {COVERAGE_COLUMNS} FROM coverages WHERE insurer_number = ?1 AND card_number = ?2");
        self.read(|c| query_coverages(c, &sql, params![insurer.as_str(), number.as_str()]))
    }

    fn card_holders_view(&self, insurer: &InsurerNumber, number: &CardNumber) -> Result<Vec<CoverageWithTerms>, StoreError> {
        if let Some(view) = self.read_index(|index| index.card_view(insurer.as_str(), number.as_str())) {
            return Ok(view);
        }
        self.card_holders_view_from_file(insurer, number)
    }

    fn card_holders_view_async<'a>(&'a self, insurer: &'a InsurerNumber, number: &'a CardNumber) -> crate::ViewFuture<'a> {
        let read = match self.read_index(|index| index.card_view_shared(insurer.as_str(), number.as_str())) {
            Some(view) => Ok((view, None)),
            None => self.card_holders_view_from_file(insurer, number).map(|view| (crate::shared(view), None)),
        };
        Box::pin(std::future::ready(read))
    }

    fn person_view(&self, person_id: i64) -> Result<Vec<CoverageWithTerms>, StoreError> {
        if let Some(view) = self.read_index(|index| index.person_view(person_id)) {
            return Ok(view);
        }
        self.read(|connection| read_view(connection, person_view_sql(), params![person_id]))
    }

    fn build_card_index(&self, max_persons: u64) -> Result<crate::card_index::CardIndexStatus, StoreError> {
        self.build_index(max_persons)
    }

    fn card_index_counts(&self) -> crate::card_index::CardIndexCounts {
        self.index_counts()
    }

    fn born_on(&self, birth_date: Date, sex: Sex) -> Result<Vec<CoverageWithTerms>, StoreError> {
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| view_sql("c.person_id IN (SELECT person_id FROM coverages WHERE birth_date = ?1 AND sex = ?2)"));
        self.read(|connection| read_view(connection, sql, params![crate::rows::day(birth_date), sex.code()]))
    }

    fn coverages_of_person(&self, person_id: i64) -> Result<Vec<CoverageRecord>, StoreError> {
        let sql = format!("SELECT {COVERAGE_COLUMNS} FROM coverages WHERE person_id = ?1");
        self.read(|c| query_coverages(c, &sql, [person_id]))
    }

    fn terms_of(&self, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError> {
        self.read(|c| load_terms(c, coverage_id))
    }

    fn insurer_lag(&self, insurer: &InsurerNumber) -> Result<Option<InsurerLag>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT events, lag_days_sum, lag_days_max FROM insurer_stats WHERE insurer_number = ?1")
                .map_err(sqlite("preparing the lag query"))?
                .query_row([insurer.as_str()], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))
                .optional()
                .map_err(sqlite("reading insurer statistics"))
                .map(|found| {
                    found.filter(|(events, _, _)| *events > 0).map(|(events, sum, max)| InsurerLag {
                        events: events as u64,
                        mean_days: sum as f64 / events as f64,
                        max_days: max.clamp(0, i64::from(u32::MAX)) as u32,
                    })
                })
        })
    }

    fn lag_by_month(&self) -> Result<Vec<crate::model::LagMonth>, StoreError> {
        self.read(|c| {
            let mut statement = c
                .prepare("SELECT insurer_number, occurred_on, notified_at, registered_at FROM insurer_events")
                .map_err(sqlite("reading the registration lag"))?;
            let mut rows = statement.query([]).map_err(sqlite("reading the registration lag"))?;
            let mut profile = crate::rules::LagProfile::default();
            while let Some(r) = rows.next().map_err(sqlite("reading the registration lag"))? {
                let insurer: String = r.get(0).map_err(sqlite("reading the registration lag"))?;
                let occurred = crate::rows::to_date(r.get(1).map_err(sqlite("reading the registration lag"))?)?;
                let notified = Timestamp::from_jst_seconds(r.get(2).map_err(sqlite("reading the registration lag"))?);
                let registered = Timestamp::from_jst_seconds(r.get(3).map_err(sqlite("reading the registration lag"))?);
                profile.add(&insurer, occurred, notified, registered);
            }
            Ok(profile.months())
        })
    }

    fn counts(&self) -> Result<RegisterCounts, StoreError> {
        self.read(|c| {
            let count = |sql: &str| -> Result<u64, StoreError> {
                c.query_row(sql, [], |row| row.get::<_, i64>(0)).map(|n| n as u64).map_err(sqlite("counting"))
            };
            Ok(RegisterCounts {
                persons: count("SELECT count(*) FROM persons")?,
                coverages: count("SELECT count(*) FROM coverages")?,
                events: count("SELECT count(*) FROM insurer_events")?,
            })
        })
    }

    fn canonical_dump(&self) -> Result<String, StoreError> {
        self.read(|c| {
            let mut lines = Vec::new();
            for sql in DUMP_QUERIES {
                let mut statement = c.prepare(sql).map_err(sqlite("preparing the dump"))?;
                let width = statement.column_count();
                let mut rows = statement.query([]).map_err(sqlite("dumping"))?;
                while let Some(row) = rows.next().map_err(sqlite("dumping"))? {
                    let mut values = Vec::with_capacity(width);
                    for i in 0..width {
                        values.push(match row.get_ref(i).map_err(sqlite("dumping"))? {
                            rusqlite::types::ValueRef::Integer(n) => DumpValue::Int(n),
                            rusqlite::types::ValueRef::Text(t) => DumpValue::Text(String::from_utf8_lossy(t).into_owned()),
                            rusqlite::types::ValueRef::Null => DumpValue::Null,
                            other => return Err(StoreError::Corrupt(format!("unexpected value in the register: {other:?}"))),
                        });
                    }
                    lines.push(dump_line(&values));
                }
            }
            lines.sort();
            Ok(lines.join("\n"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The card path's statements stay prepared across uses (a re-preparation per use cost a
    /// quarter of a card verification's server time). Counted by SQLite itself.
    #[test]
    fn the_card_paths_statements_are_not_prepared_again_at_every_use() {
        use crate::cards::CardRegistry as _;
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("register.sqlite"), SqliteOptions::SERVER).unwrap();
        crate::conformance::run_all(&register);
        for person in 1..=100 {
            register.person_view(person).unwrap();
            register.consents(person, "1311234569").unwrap();
            register.terms_of(person).unwrap();
        }
        for sql in [person_view_sql(), cards::CONSENTS_SQL, terms_sql()] {
            let (runs, again) = register
                .read(|c| {
                    let statement = c.prepare_cached(sql).map_err(sqlite("probe"))?;
                    Ok((statement.get_status(rusqlite::StatementStatus::Run), statement.get_status(rusqlite::StatementStatus::RePrepare)))
                })
                .unwrap();
            assert!(runs >= 100, "{sql}: the statement was used ({runs} runs)");
            assert!(again <= 1, "{sql}: prepared again {again} times in {runs} runs");
        }
    }

    /// The card index answers exactly what the engine does after every commit, whether this
    /// register or another connection to the file wrote it, and a register loaded from a full
    /// file holds what the engine holds.
    #[test]
    fn the_card_index_follows_every_commit_to_the_file() {
        use crate::card_index::CardIndexStatus;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.sqlite");
        let indexed = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        assert_eq!(indexed.build_card_index(10).unwrap(), CardIndexStatus::Built { persons: 0 });
        let writer = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        crate::conformance::the_card_index_follows_every_writer(&indexed, &writer, &|| {});
        let counts = indexed.card_index_counts();
        assert_eq!(counts.behind, 0, "one thread reads: the index always caught up");
        // Four card views and four person views after each of the 15 events and before them,
        // and the last look: every read went through the index.
        assert_eq!(counts.served, 16 * 8 + 1, "{counts:?}");

        let loaded = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        assert_eq!(loaded.build_card_index(2).unwrap(), CardIndexStatus::TooLarge { persons: 3, max_persons: 2 });
        assert_eq!(loaded.card_index_counts(), Default::default());
        assert_eq!(loaded.build_card_index(3).unwrap(), CardIndexStatus::Built { persons: 3 });
        for number in ["5001", "5002", "5003"] {
            let number = CardNumber::parse(number).unwrap();
            let insurer = InsurerNumber::parse("06130488").unwrap();
            assert_eq!(loaded.card_holders_view(&insurer, &number).unwrap(), writer.card_holders_view(&insurer, &number).unwrap());
        }
        assert_eq!(loaded.card_index_counts().served, 3);

        // A fourth person: the register outgrew the bound, the index is given up and every read
        // goes to the engine (still right).
        let fourth = crate::conformance::acquisition("grow-1", "P4", "5004");
        assert_eq!(
            writer.apply_events(&[fourth], Timestamp::at_start_of(Date::parse_yyyymmdd("20261125").unwrap())).unwrap(),
            [ApplyOutcome::Applied]
        );
        let insurer = InsurerNumber::parse("06130488").unwrap();
        for _ in 0..2 {
            let number = CardNumber::parse("5004").unwrap();
            assert_eq!(loaded.card_holders_view(&insurer, &number).unwrap().len(), 1, "the new person, from the engine");
        }
        let counts = loaded.card_index_counts();
        assert_eq!((counts.served, counts.persons), (3, 0), "given up: nothing more from the index, nothing held: {counts:?}");
    }

    #[test]
    fn the_card_index_is_never_behind_under_concurrent_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.sqlite");
        let indexed = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        indexed.build_card_index(u64::MAX).unwrap();
        let writer = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        crate::conformance::the_card_index_is_never_behind_a_finished_commit(&indexed, &writer);
        assert!(indexed.card_index_counts().served > 0, "{:?}", indexed.card_index_counts());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
        /// Random histories, in random transaction sizes: the index never differs from the engine.
        #[test]
        fn the_card_index_matches_the_engine_after_any_history(
            steps in crate::conformance::history_steps(1),
            batch in 1usize..6,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("register.sqlite");
            let indexed = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
            indexed.build_card_index(u64::MAX).unwrap();
            let writer = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
            crate::conformance::the_card_index_matches_the_engine_after_any_history(&indexed, &writer, &steps, batch);
            proptest::prop_assert_eq!(indexed.card_index_counts().behind, 0);
        }
    }

    /// The whole conformance suite with every card view read through the index.
    #[test]
    fn conformance_through_the_card_index() {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("register.sqlite"), SqliteOptions::SERVER).unwrap();
        register.build_card_index(u64::MAX).unwrap();
        crate::conformance::run_all(&register);
        assert!(register.card_index_counts().served > 0);
    }

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("register.sqlite"), SqliteOptions::SERVER).unwrap();
        crate::conformance::run_all(&register);
        crate::conformance::run_cards(&register);
        crate::conformance::run_medical(&register);
        crate::conformance::run_subsidies(&register);
        crate::conformance::run_home(&register);
    }

    #[test]
    fn a_batch_ends_as_its_events_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let whole = SqliteRegister::open(&dir.path().join("whole.sqlite"), SqliteOptions::SERVER).unwrap();
        let one_by_one = SqliteRegister::open(&dir.path().join("single.sqlite"), SqliteOptions::SERVER).unwrap();
        crate::conformance::batches_and_single_events_agree(&whole, &one_by_one);
    }

    /// Large enough that rows go several to a statement (`apply::insert_rows`).
    #[test]
    fn a_large_batch_ends_as_its_events_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let whole = SqliteRegister::open(&dir.path().join("whole.sqlite"), SqliteOptions::SERVER).unwrap();
        let one_by_one = SqliteRegister::open(&dir.path().join("single.sqlite"), SqliteOptions::SERVER).unwrap();
        crate::conformance::a_large_batch_and_single_events_agree(&whole, &one_by_one);
    }

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.sqlite");
        {
            let register = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
            crate::conformance::run_all(&register);
        }
        let register = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        assert_eq!(
            register.counts().unwrap().persons,
            11,
            "three persons of the conformance run, three of its lag check, three of born_on, one with a 資格確認書, one of the async read"
        );
        let version: i64 =
            register.writer.lock().unwrap().query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.last().map(|m| m.0).unwrap());
    }

    /// A register whose first load has not finished is not migrated: the load's stored index
    /// statements must be replayed on the schema they came from.
    #[test]
    fn an_unfinished_load_is_finished_before_the_schema_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.sqlite");
        let register = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        drop(register.begin_load().unwrap().expect("an empty register is loaded"));
        drop(register);
        let mut newer = MIGRATIONS.to_vec();
        newer.push((99, "CREATE TABLE later (x INTEGER) STRICT;"));
        let mut connection = Connection::open(&path).unwrap();
        let refused = migrate_with(&mut connection, &newer);
        assert!(matches!(&refused, Err(StoreError::LoadBeforeUpgrade { .. })), "{refused:?}");
        assert!(refused.unwrap_err().to_string().contains("before upgrading"));
        // Finished by the program that started it, the upgrade goes on.
        let register = SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap();
        register.begin_load().unwrap().expect("continued").finish().unwrap();
        drop(register);
        migrate_with(&mut connection, &newer).expect("migrated after the load");
    }

    /// The tables whose foreign keys name `persons`, as the schema declares them.
    fn referring_to_persons(connection: &Connection) -> Vec<(String, String)> {
        connection
            .prepare(
                "SELECT m.name, f.\"from\" FROM sqlite_schema m, pragma_foreign_key_list(m.name) f
                 WHERE m.type = 'table' AND f.\"table\" = 'persons' ORDER BY m.name, f.\"from\"",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    const COVERAGE_OF: &str = "INSERT INTO coverages (coverage_id, person_id, insurer_number, card_symbol, card_number, card_branch,
        birth_date, sex, relationship, card_classification, acquired_on, acquired_notified_at, updated_at)
        VALUES (?1, ?2, '06130488', '12', ?3, 0, 19800101, '1', '1', '01', 20240401, 0, 0)";

    /// Migration 15 rebuilds `persons` under the tables that refer to it: a register holding
    /// persons and coverages at version 14 keeps every row, every table that referred to
    /// persons still does, references are still enforced (a coverage of a person who exists is
    /// taken, one of nobody refused), and a person's reference is still unique.
    #[test]
    fn the_persons_rebuild_keeps_rows_references_and_uniqueness() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.sqlite");
        let mut connection = Connection::open(&path).unwrap();
        migrate_with(&mut connection, &MIGRATIONS[..14]).unwrap();
        let referring = referring_to_persons(&connection);
        assert!(referring.contains(&("coverages".to_string(), "person_id".to_string())), "{referring:?}");
        connection.execute_batch("INSERT INTO persons (person_id, person_ref) VALUES (1, 'P1'), (2, 'P2'), (5, 'P5');").unwrap();
        connection.execute(COVERAGE_OF, params![10, 2, "7001"]).unwrap();
        connection.execute(COVERAGE_OF, params![11, 5, "7002"]).unwrap();
        migrate_with(&mut connection, MIGRATIONS).unwrap();
        let persons: Vec<(i64, String)> = connection
            .prepare("SELECT person_id, person_ref FROM persons ORDER BY person_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(persons, vec![(1, "P1".to_string()), (2, "P2".to_string()), (5, "P5".to_string())]);
        let held: i64 =
            connection.query_row("SELECT count(*) FROM coverages c JOIN persons p ON p.person_id = c.person_id", [], |r| r.get(0)).unwrap();
        assert_eq!(held, 2);
        assert_eq!(referring_to_persons(&connection), referring, "every reference to persons survives the rebuild");
        let broken: i64 = connection.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(broken, 0);
        let foreign_keys: i64 = connection.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(foreign_keys, 1, "enforced again after the rebuild");
        connection.execute(COVERAGE_OF, params![12, 1, "7003"]).expect("a coverage of a person who exists");
        let dangling = connection.execute(COVERAGE_OF, params![13, 9, "7004"]);
        assert!(
            matches!(&dangling, Err(rusqlite::Error::SqliteFailure(e, _)) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            "a coverage of no person is refused by its foreign key: {dangling:?}"
        );
        assert!(connection.execute("INSERT INTO persons (person_id, person_ref) VALUES (6, 'P2')", []).is_err(), "P2 is taken");
        let indexes: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'persons'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, vec!["persons_by_ref".to_string()]);
    }

    /// A register at version 14 with a coverage naming no person (possible only if written
    /// with foreign keys off): migration 15 is not applied, the file stays at version 14 with
    /// its old table, and foreign keys are enforced again.
    #[test]
    fn the_persons_rebuild_is_not_applied_over_a_dangling_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.sqlite");
        let mut connection = Connection::open(&path).unwrap();
        migrate_with(&mut connection, &MIGRATIONS[..14]).unwrap();
        connection.execute_batch("PRAGMA foreign_keys = OFF; INSERT INTO persons (person_id, person_ref) VALUES (1, 'P1');").unwrap();
        connection.execute(COVERAGE_OF, params![10, 9, "7001"]).unwrap();
        connection.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        match migrate_with(&mut connection, MIGRATIONS) {
            Err(StoreError::Corrupt(message)) => assert!(message.contains("coverages") && message.contains("persons"), "{message}"),
            other => panic!("the rebuild must not be applied: {other:?}"),
        }
        let version: i64 = connection.query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 14);
        let old_index: i64 =
            connection.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_autoindex_persons_1'", [], |r| r.get(0)).unwrap();
        assert_eq!(old_index, 1, "the old table is still there");
        let foreign_keys: i64 = connection.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(foreign_keys, 1);
    }

    /// The readers map as much of the file as they ask for: the bundled SQLite is built with a
    /// maximum above `READER_MMAP_BYTES` (`.cargo/config.toml`); with SQLite's default the
    /// setting reads back as 2 GB.
    #[test]
    fn readers_map_the_whole_register() {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("register.sqlite"), SqliteOptions::SERVER).unwrap();
        let mapped: i64 = register
            .read(|connection| connection.query_row("PRAGMA mmap_size", [], |r| r.get(0)).map_err(sqlite("reading mmap_size")))
            .unwrap();
        assert_eq!(mapped, READER_MMAP_BYTES as i64);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.sqlite");
        drop(SqliteRegister::open(&path, SqliteOptions::SERVER).unwrap());
        Connection::open(&path).unwrap().execute("INSERT INTO schema_migrations VALUES (99, 0)", []).unwrap();
        assert!(matches!(SqliteRegister::open(&path, SqliteOptions::SERVER), Err(StoreError::SchemaTooNew { found: 99, .. })));
    }
}
