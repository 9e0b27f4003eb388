//! The register on PostgreSQL, for an operator who outgrows one machine (issue 14): the same
//! tables as the SQLite engine, the same rules (`crate::rules`), the same decoding
//! (`crate::rows`); only the reading and writing differ. A batch is applied in one transaction
//! that first takes a transaction-scoped advisory lock, so that any number of center processes
//! on one cluster apply batches one after another (the rules read, decide, then write; two at
//! once could both take the same card numbers); verifications read without it. The rows a
//! batch decided go in by binary `COPY` (persons, coverages, events), by `COPY` into a
//! temporary table and one upsert (terms), and by one `UPDATE … FROM unnest(…)` (the coverages
//! it changed).
//!
//! The client is the synchronous `postgres` crate (a thin layer over tokio-postgres with a
//! small runtime per connection), so that the engine fits the register's synchronous trait.
//! Blocking on that runtime from a tokio worker thread would panic (the center's handlers call
//! the register from async code): every call therefore runs in [`blocking`], which hands the
//! worker's other tasks to the rest of the pool for its duration.
//! Connections here are plain TCP: run the cluster on this machine or a private network (the
//! center's own clients are what mutual TLS protects).

pub mod audit;
mod cards;
pub mod cluster;
mod home;
mod index;
mod medical;
mod pipelined;
mod pool;
mod subsidy;

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Row, Transaction};

use onshi_domain::Timestamp;
use onshi_domain::codes::Sex;
use onshi_domain::date::Date;
use onshi_domain::ids::{CardNumber, InsurerNumber};

use crate::model::*;
use crate::rows::{
    COVERAGE_COLUMNS, DUMP_QUERIES, DumpValue, RawCoverage, RawTerms, TERMS_COLUMNS, coverage_record, day, diseases_json, dump_line,
    group_view, opt_day, public_expense_json, terms_record, to_date, to_opt_date,
};
use crate::rules::{CardKey, Decision, RegisterReads, Span, decide};
use crate::{Register, StoreError};

/// Schema migrations, applied in order; a version once released is never edited.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("postgres/0001_register.sql")),
    (2, include_str!("postgres/0002_cards_medical.sql")),
    (3, include_str!("postgres/0003_challenges.sql")),
    (4, include_str!("postgres/0004_audit.sql")),
    (5, include_str!("postgres/0005_audit_tally.sql")),
    (6, include_str!("postgres/0006_phone.sql")),
    (7, include_str!("postgres/0007_born_on.sql")),
    (8, include_str!("postgres/0008_qualification_certificate.sql")),
    (9, include_str!("postgres/0009_subsidies.sql")),
    (10, include_str!("postgres/0010_medical_tickets.sql")),
    (11, include_str!("postgres/0011_home_consents.sql")),
    (12, include_str!("postgres/0012_welfare_holders.sql")),
    (13, include_str!("postgres/0013_register_changes.sql")),
];

/// The advisory lock every batch and every migration takes (one number for the register).
const APPLY_LOCK: i64 = 0x6f6e_7368_6901;

/// Japan time is UTC+9 without daylight saving; the register's times are Japan-time seconds.
const JST_OFFSET_SECONDS: i64 = 9 * 3600;

fn pg(doing: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |source| StoreError::Engine { doing, source: Box::new(source) }
}

pub struct PgRegister {
    url: String,
    /// `None` only while being dropped.
    writer: Mutex<Option<Client>>,
    readers: pool::ReadPool,
    /// A streaming replica the verification reads go to, when given.
    replica: Option<pool::ReadPool>,
    /// The number path's read from async callers, without a replica.
    pipelined: pipelined::Pipelined,
    /// The card index, when the operator asked for it (`Register::build_card_index`).
    index: std::sync::OnceLock<std::sync::Arc<index::PgIndex>>,
}

impl Drop for PgRegister {
    /// Closing a connection blocks on its runtime too.
    fn drop(&mut self) {
        if let Some(index) = self.index.get() {
            index.stop();
        }
        let writer = self.writer.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let readers = self.readers.drain();
        let replica = self.replica.as_mut().map(pool::ReadPool::drain);
        blocking(move || {
            drop(writer);
            drop(readers);
            drop(replica);
        });
    }
}

/// Runs `f`, which blocks on a connection's own runtime, so that it may be called from a tokio
/// worker: there it runs under `block_in_place` (the multi-threaded runtime moves the worker's
/// queued tasks elsewhere meanwhile). Elsewhere it runs as it is.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A read connection with the statements it has prepared: preparing costs a round trip, so each
/// read statement (a fixed, small set) is prepared once per connection.
pub(crate) struct Conn {
    client: Client,
    prepared: HashMap<String, postgres::Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn { client, prepared: HashMap::new() }
    }

    pub(crate) fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    pub(crate) fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params)
    }

    pub(crate) fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }
}

fn connect(url: &str) -> Result<Client, StoreError> {
    Client::connect(url, NoTls).map_err(|source| StoreError::Open { path: redacted(url), source: Box::new(source) })
}

/// The connection string without a password, for messages.
fn redacted(url: &str) -> String {
    // postgres://user:password@host/…
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:…@{host}");
    }
    url.split_whitespace().map(|part| if part.starts_with("password=") { "password=…" } else { part }).collect::<Vec<_>>().join(" ")
}

impl PgRegister {
    /// Connects to the database `url` names (a libpq key=value string or a `postgres://` URL)
    /// and brings its schema up to date.
    pub fn open(url: &str) -> Result<PgRegister, StoreError> {
        blocking(|| {
            let mut writer = connect(url)?;
            migrate(&mut writer)?;
            Ok(PgRegister {
                url: url.to_string(),
                writer: Mutex::new(Some(writer)),
                readers: pool::ReadPool::new(url),
                replica: None,
                pipelined: pipelined::Pipelined::new(url, card_view_sql()),
                index: std::sync::OnceLock::new(),
            })
        })
    }

    /// As [`PgRegister::open`], with the verification reads (the card's holders, a person's
    /// coverages, the insurer's lag) sent to the streaming replica `replica_url`; writes, and the
    /// card registry's reads (a link or consent just written must be seen), go to `url`.
    pub fn open_with_replica(url: &str, replica_url: &str) -> Result<PgRegister, StoreError> {
        let mut register = PgRegister::open(url)?;
        // Reached now, so that a wrong address stops the start; closed inside `blocking` too.
        blocking(|| connect(replica_url).map(drop))?;
        register.replica = Some(pool::ReadPool::new(replica_url));
        Ok(register)
    }

    /// Runs `f` in a transaction on the writer connection and commits it.
    fn with_writer<T>(&self, f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        blocking(|| {
            let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let client = writer.as_mut().ok_or_else(|| StoreError::Corrupt("the register is closing".into()))?;
            if client.is_closed() {
                // The server restarted or the connection broke: one new attempt per call.
                *client = connect(&self.url)?;
            }
            let mut tx = client.transaction().map_err(pg("starting a transaction"))?;
            let result = f(&mut tx)?;
            tx.commit().map_err(pg("committing"))?;
            Ok(result)
        })
    }

    /// The register's person with this pseudonymous reference.
    fn person_by_ref(&self, person_ref: &str) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt("SELECT person_id FROM persons WHERE person_ref = $1", &[&person_ref])
                .map_err(pg("finding a person"))?
                .map(|r| r.get(0)))
        })
    }

    fn read<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.readers.read(f)
    }

    /// A verification read: on the replica when there is one.
    fn read_for_verification<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match &self.replica {
            Some(replica) => replica.read(f),
            None => self.read(f),
        }
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(pg("starting a migration"))?;
    // Two processes opening one new database at once: one migrates, the other then finds it done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK]).map_err(pg("locking for a migration"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .map_err(pg("creating the migrations table"))?;
    let current: i64 =
        tx.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).map_err(pg("reading the schema version"))?.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::SchemaTooNew { found: current, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).map_err(pg("migrating the schema"))?;
        tx.execute("INSERT INTO schema_migrations VALUES ($1, extract(epoch FROM now())::bigint)", &[version])
            .map_err(pg("recording a migration"))?;
    }
    tx.commit().map_err(pg("committing a migration"))
}

fn raw_coverage(row: &Row, at: usize) -> Result<RawCoverage, StoreError> {
    let get = |i: usize| row.try_get::<_, i64>(at + i).map_err(pg("reading a coverage"));
    let text = |i: usize| row.try_get::<_, String>(at + i).map_err(pg("reading a coverage"));
    Ok(RawCoverage(
        get(0)?,
        get(1)?,
        text(2)?,
        text(3)?,
        text(4)?,
        get(5)?,
        get(6)?,
        text(7)?,
        text(8)?,
        text(9)?,
        get(10)?,
        row.try_get(at + 11).map_err(pg("reading a coverage"))?,
        row.try_get(at + 12).map_err(pg("reading a coverage"))?,
        get(13)?,
    ))
}

fn raw_terms(row: &Row, at: usize) -> Result<RawTerms, StoreError> {
    let e = || pg("reading terms");
    Ok(RawTerms(
        row.try_get(at).map_err(e())?,
        row.try_get(at + 1).map_err(e())?,
        row.try_get(at + 2).map_err(e())?,
        row.try_get(at + 3).map_err(e())?,
        row.try_get(at + 4).map_err(e())?,
        row.try_get(at + 5).map_err(e())?,
        row.try_get(at + 6).map_err(e())?,
        row.try_get(at + 7).map_err(e())?,
        row.try_get(at + 8).map_err(e())?,
        row.try_get(at + 9).map_err(e())?,
        row.try_get(at + 10).map_err(e())?,
        row.try_get(at + 11).map_err(e())?,
        row.try_get(at + 12).map_err(e())?,
        row.try_get(at + 13).map_err(e())?,
        row.try_get(at + 14).map_err(e())?,
        row.try_get(at + 15).map_err(e())?,
    ))
}

fn view_sql(filter: &str) -> String {
    let coverage_columns: String = COVERAGE_COLUMNS.split(", ").map(|c| format!("c.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let terms_columns: String = TERMS_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {coverage_columns}, {terms_columns} FROM coverages c JOIN coverage_terms t ON t.coverage_id = c.coverage_id WHERE {filter}"
    )
}

fn read_view(client: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<CoverageWithTerms>, StoreError> {
    view_of_rows(&client.query(sql, params).map_err(pg("querying the card view"))?)
}

/// The rows of a [`view_sql`] query as coverages with their terms.
fn view_of_rows(rows: &[Row]) -> Result<Vec<CoverageWithTerms>, StoreError> {
    let width = COVERAGE_COLUMNS.split(", ").count();
    let raws = rows.iter().map(|row| Ok((raw_coverage(row, 0)?, raw_terms(row, width)?))).collect::<Result<Vec<_>, StoreError>>()?;
    group_view(raws)
}

/// The card's holders' view, by insurer number (`$1`) and card number (`$2`).
fn card_view_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| view_sql("c.person_id IN (SELECT person_id FROM coverages WHERE insurer_number = $1 AND card_number = $2)"))
}

fn query_coverages(client: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<CoverageRecord>, StoreError> {
    let rows = client.query(sql, params).map_err(pg("querying coverages"))?;
    rows.iter().map(|row| coverage_record(raw_coverage(row, 0)?)).collect()
}

/// The rules' reads, inside the batch's transaction (which holds the advisory lock).
struct PgReads<'a, 't> {
    tx: &'a mut Transaction<'t>,
}

impl RegisterReads for PgReads<'_, '_> {
    fn applied(&mut self, ids: &[(&str, &str)]) -> Result<crate::rules::Set<(String, String)>, StoreError> {
        let insurers: Vec<&str> = ids.iter().map(|(i, _)| *i).collect();
        let events: Vec<&str> = ids.iter().map(|(_, e)| *e).collect();
        let rows = self
            .tx
            .query(
                // LATERAL: one index probe per key, whatever the planner estimates for a batch of
                // 100,000 keys (a hash join would read the whole table at every batch).
                "SELECT e.insurer_number, e.event_id FROM unnest($1::text[], $2::text[]) AS k (insurer, event)
                 CROSS JOIN LATERAL (SELECT insurer_number, event_id FROM insurer_events
                                     WHERE insurer_number = k.insurer AND event_id = k.event) e",
                &[&insurers, &events],
            )
            .map_err(pg("looking up the batch's event ids"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn persons(&mut self, refs: &[&str]) -> Result<crate::rules::Map<String, i64>, StoreError> {
        let rows = self
            .tx
            .query("SELECT person_ref, person_id FROM persons WHERE person_ref = ANY($1::text[])", &[&refs])
            .map_err(pg("looking up the batch's persons"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn cards(&mut self, keys: &[CardKey]) -> Result<Vec<(CardKey, Span)>, StoreError> {
        let insurers: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let numbers: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let symbols: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
        let branches: Vec<i64> = keys.iter().map(|k| i64::from(k.3)).collect();
        let rows = self
            .tx
            .query(
                "SELECT c.insurer_number, c.card_number, c.card_symbol, c.card_branch, c.coverage_id, c.person_id, c.acquired_on, c.lost_on
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS k (insurer, number, symbol, branch)
                 CROSS JOIN LATERAL (SELECT * FROM coverages
                                     WHERE insurer_number = k.insurer AND card_number = k.number
                                       AND card_symbol = k.symbol AND card_branch = k.branch) c",
                &[&insurers, &numbers, &symbols, &branches],
            )
            .map_err(pg("looking up the batch's card numbers"))?;
        rows.iter()
            .map(|r| {
                let coverage_id: i64 = r.get(4);
                let branch: i64 = r.get(3);
                let branch = u8::try_from(branch).map_err(|_| StoreError::Corrupt(format!("coverage {coverage_id}: branch {branch}")))?;
                Ok((
                    (r.get(0), r.get(1), r.get(2), branch),
                    Span { coverage_id, person_id: r.get(5), acquired_on: to_date(r.get(6))?, lost_on: to_opt_date(r.get(7))? },
                ))
            })
            .collect()
    }

    fn terms(&mut self, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError> {
        let rows = self
            .tx
            .query(&format!("SELECT {TERMS_COLUMNS} FROM coverage_terms WHERE coverage_id = $1"), &[&coverage_id])
            .map_err(pg("reading terms"))?;
        rows.iter().map(|row| terms_record(raw_terms(row, 0)?)).collect()
    }

    fn next_ids(&mut self) -> Result<(i64, i64), StoreError> {
        let row = self
            .tx
            .query_one(
                "SELECT (SELECT coalesce(max(person_id), 0) + 1 FROM persons), (SELECT coalesce(max(coverage_id), 0) + 1 FROM coverages)",
                &[],
            )
            .map_err(pg("reading the next ids"))?;
        Ok((row.get(0), row.get(1)))
    }
}

/// The column types of a binary `COPY`, one letter per column: `i` BIGINT, `t` TEXT.
fn copy_types(spec: &str) -> Vec<Type> {
    spec.chars().map(|c| if c == 'i' { Type::INT8 } else { Type::TEXT }).collect()
}

/// Writes a batch's decided rows inside its transaction.
fn write(tx: &mut Transaction<'_>, decision: &Decision, events: &[CoverageEvent], registered_at: Timestamp) -> Result<(), StoreError> {
    let registered = registered_at.jst_seconds();
    if !decision.new_persons.is_empty() {
        let sink = tx.copy_in("COPY persons (person_id, person_ref) FROM STDIN BINARY").map_err(pg("copying persons"))?;
        let mut writer = BinaryCopyInWriter::new(sink, &copy_types("it"));
        for (id, person_ref) in &decision.new_persons {
            writer.write(&[id, person_ref]).map_err(pg("copying a person"))?;
        }
        writer.finish().map_err(pg("copying persons"))?;
    }
    if !decision.new_coverages.is_empty() {
        let sink = tx
            .copy_in(
                "COPY coverages (coverage_id, person_id, insurer_number, card_symbol, card_number, card_branch, birth_date, sex,
                    relationship, card_classification, acquired_on, lost_on, loss_reason, acquired_notified_at, lost_notified_at, updated_at)
                 FROM STDIN BINARY",
            )
            .map_err(pg("copying coverages"))?;
        let types = copy_types("iitttiitttiitiii");
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for c in &decision.new_coverages {
            let (insurer, number, symbol, branch) = &c.key;
            let branch = i64::from(*branch);
            let lost_on = opt_day(c.lost.map(|l| l.0));
            let loss_reason = c.lost.map(|l| l.1.code());
            let lost_notified = c.lost.map(|l| l.2);
            writer
                .write(&[
                    &c.coverage_id,
                    &c.person_id,
                    insurer,
                    symbol,
                    number,
                    &branch,
                    &day(c.holder.birth_date),
                    &c.holder.sex.code(),
                    &c.holder.relationship.code(),
                    &c.holder.card_classification.code(),
                    &day(c.acquired_on),
                    &lost_on,
                    &loss_reason,
                    &c.acquired_notified_at,
                    &lost_notified,
                    &registered,
                ])
                .map_err(pg("copying a coverage"))?;
        }
        writer.finish().map_err(pg("copying coverages"))?;
    }
    if !decision.updates.is_empty() {
        let mut ids = Vec::new();
        let (mut births, mut sexes, mut relationships, mut classes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut lost_on, mut reasons, mut lost_notified) = (Vec::new(), Vec::new(), Vec::new());
        for (id, u) in &decision.updates {
            let h = u.holder.as_ref();
            ids.push(*id);
            births.push(h.map(|h| day(h.birth_date)));
            sexes.push(h.map(|h| h.sex.code()));
            relationships.push(h.map(|h| h.relationship.code()));
            classes.push(h.map(|h| h.card_classification.code()));
            lost_on.push(opt_day(u.lost.map(|l| l.0)));
            reasons.push(u.lost.map(|l| l.1.code()));
            lost_notified.push(u.lost.map(|l| l.2));
        }
        tx.execute(
            "UPDATE coverages c SET
                birth_date = coalesce(u.birth, c.birth_date), sex = coalesce(u.sex, c.sex),
                relationship = coalesce(u.relationship, c.relationship),
                card_classification = coalesce(u.class, c.card_classification),
                lost_on = coalesce(u.lost_on, c.lost_on), loss_reason = coalesce(u.reason, c.loss_reason),
                lost_notified_at = coalesce(u.lost_notified, c.lost_notified_at), updated_at = $9
             FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::int8[])
                  AS u (id, birth, sex, relationship, class, lost_on, reason, lost_notified)
             WHERE c.coverage_id = u.id",
            &[&ids, &births, &sexes, &relationships, &classes, &lost_on, &reasons, &lost_notified, &registered],
        )
        .map_err(pg("updating coverages"))?;
    }
    if !decision.terms.is_empty() {
        // A change may replace a row of the same date (as SQLite's INSERT OR REPLACE): staged,
        // then one upsert.
        tx.batch_execute("CREATE TEMPORARY TABLE IF NOT EXISTS staged_terms (LIKE coverage_terms) ON COMMIT DELETE ROWS;")
            .map_err(pg("staging terms"))?;
        let sink = tx
            .copy_in(
                "COPY staged_terms (coverage_id, effective_from, name, name_kana, insured_name, address, post_code, income_class,
                    limit_category, limit_classification, limit_valid_from, limit_valid_to, specific_diseases, public_expense,
                    notified_at, registered_at, qualification_certificate)
                 FROM STDIN BINARY",
            )
            .map_err(pg("copying terms"))?;
        let types = copy_types("iittttttttiittiit");
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for (coverage_id, row) in &decision.terms {
            let limit = row.terms.limit.as_ref();
            writer
                .write(&[
                    coverage_id,
                    &day(row.effective_from),
                    &row.details.name,
                    &row.details.name_kana,
                    &row.details.insured_name,
                    &row.details.address,
                    &row.details.post_code,
                    &row.terms.income.code(),
                    &limit.map(|l| l.category.code()),
                    &limit.map(|l| l.classification.code()),
                    &limit.map(|l| day(l.valid_from)),
                    &limit.and_then(|l| opt_day(l.valid_to)),
                    &diseases_json(&row.terms.specific_diseases),
                    &public_expense_json(&row.terms.public_expense),
                    &row.notified_at.jst_seconds(),
                    &registered,
                    &crate::rows::qualification_certificate_text(row.terms.qualification_certificate.as_ref()),
                ])
                .map_err(pg("copying a terms row"))?;
        }
        writer.finish().map_err(pg("copying terms"))?;
        tx.execute(
            "INSERT INTO coverage_terms SELECT * FROM staged_terms
             ON CONFLICT (coverage_id, effective_from) DO UPDATE SET
                name = excluded.name, name_kana = excluded.name_kana, insured_name = excluded.insured_name,
                address = excluded.address, post_code = excluded.post_code, income_class = excluded.income_class,
                limit_category = excluded.limit_category, limit_classification = excluded.limit_classification,
                limit_valid_from = excluded.limit_valid_from, limit_valid_to = excluded.limit_valid_to,
                specific_diseases = excluded.specific_diseases, public_expense = excluded.public_expense,
                notified_at = excluded.notified_at, registered_at = excluded.registered_at,
                qualification_certificate = excluded.qualification_certificate",
            &[],
        )
        .map_err(pg("writing terms"))?;
    }
    if !decision.applied.is_empty() {
        let sink = tx
            .copy_in(
                "COPY insurer_events (insurer_number, event_id, kind, coverage_id, occurred_on, notified_at, registered_at) FROM STDIN BINARY",
            )
            .map_err(pg("recording events"))?;
        let mut writer = BinaryCopyInWriter::new(sink, &copy_types("tttiiii"));
        for (index, coverage_id) in &decision.applied {
            let event = &events[*index];
            writer
                .write(&[
                    &event.insurer.as_str(),
                    &event.event_id,
                    &event.body.kind(),
                    coverage_id,
                    &day(event.occurred_on),
                    &event.notified_at.jst_seconds(),
                    &registered,
                ])
                .map_err(pg("recording an event"))?;
        }
        writer.finish().map_err(pg("recording events"))?;
    }
    for (insurer, t) in &decision.lag {
        tx.execute(
            "INSERT INTO insurer_stats (insurer_number, events, lag_days_sum, lag_days_max, last_registered_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (insurer_number) DO UPDATE SET
                events = insurer_stats.events + excluded.events,
                lag_days_sum = insurer_stats.lag_days_sum + excluded.lag_days_sum,
                lag_days_max = greatest(insurer_stats.lag_days_max, excluded.lag_days_max),
                last_registered_at = excluded.last_registered_at",
            &[insurer, &t.events, &t.lag_days_sum, &t.lag_days_max, &registered],
        )
        .map_err(pg("updating insurer statistics"))?;
    }
    let changed = decision.changed_coverages();
    if !changed.is_empty() {
        // Under the apply lock: the sequence's order is the commit order (migration 0013).
        tx.execute(
            "INSERT INTO register_changes (registered_at, coverage_ids) VALUES ($1, $2)",
            &[&registered, &crate::card_index::encode_ids(&changed)],
        )
        .map_err(pg("recording the batch in the change log"))?;
    }
    Ok(())
}

impl Register for PgRegister {
    fn apply_events(&self, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.with_writer(|tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK]).map_err(pg("waiting for other imports"))?;
            let decision = decide(&mut PgReads { tx }, events, registered_at)?;
            write(tx, &decision, events, registered_at)?;
            Ok(decision.outcomes)
        })
    }

    fn coverages_by_number(&self, insurer: &InsurerNumber, number: &CardNumber) -> Result<Vec<CoverageRecord>, StoreError> {
        let sql = format!("SELECT {COVERAGE_COLUMNS} FROM coverages WHERE insurer_number = $1 AND card_number = $2");
        self.read_for_verification(|c| query_coverages(c, &sql, &[&insurer.as_str(), &number.as_str()]))
    }

    fn card_holders_view(&self, insurer: &InsurerNumber, number: &CardNumber) -> Result<Vec<CoverageWithTerms>, StoreError> {
        self.card_holders_view_at(insurer, number).map(|(view, _)| view)
    }

    fn card_holders_view_at(
        &self,
        insurer: &InsurerNumber,
        number: &CardNumber,
    ) -> Result<(Vec<CoverageWithTerms>, Option<Timestamp>), StoreError> {
        if let Some((view, as_of)) = self.index.get().and_then(|index| index.card_view(insurer.as_str(), number.as_str())) {
            return Ok((view, Some(as_of)));
        }
        let sql = card_view_sql();
        let params: [&(dyn ToSql + Sync); 2] = [&insurer.as_str(), &number.as_str()];
        if let Some(replica) = &self.replica {
            // The replica's position first, then the view on the same connection: replay only
            // moves forward, so the view holds at least every change up to that time.
            let read = replica.read(|c| {
                let position: Option<i64> = c
                    .query_one("SELECT floor(extract(epoch FROM pg_last_xact_replay_timestamp()))::bigint", &[])
                    .map_err(pg("reading the replica's position"))?
                    .get(0);
                match position {
                    Some(utc) => Ok(Some((read_view(c, sql, &params)?, Some(Timestamp::from_jst_seconds(utc + JST_OFFSET_SECONDS))))),
                    None => Ok(None),
                }
            })?;
            // A replica that has replayed nothing since it started cannot say how current it
            // is: the primary answers instead.
            if let Some(read) = read {
                return Ok(read);
            }
        }
        Ok((self.read(|c| read_view(c, sql, &params))?, None))
    }

    fn card_holders_view_async<'a>(&'a self, insurer: &'a InsurerNumber, number: &'a CardNumber) -> crate::ViewFuture<'a> {
        if let Some((view, as_of)) = self.index.get().and_then(|index| index.card_view_shared(insurer.as_str(), number.as_str())) {
            return Box::pin(std::future::ready(Ok((view, Some(as_of)))));
        }
        if self.replica.is_some() {
            return Box::pin(std::future::ready(self.card_holders_view_at(insurer, number).map(|(view, at)| (crate::shared(view), at))));
        }
        Box::pin(async move { Ok((crate::shared(self.pipelined.view(insurer.as_str(), number.as_str()).await?), None)) })
    }

    fn person_view(&self, person_id: i64) -> Result<Vec<CoverageWithTerms>, StoreError> {
        // Not from the card index: this read's callers (the card path) cannot say how old an
        // answer is, so it comes from the register.
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        self.read(|c| read_view(c, SQL.get_or_init(|| view_sql("c.person_id = $1")), &[&person_id]))
    }

    /// A copy that follows the register by polling (`postgres::index`); its answers carry the
    /// time up to which it holds every commit, as a replica's do. Not beside a read replica.
    fn build_card_index(&self, max_persons: u64) -> Result<crate::card_index::CardIndexStatus, StoreError> {
        use crate::card_index::CardIndexStatus;
        if self.replica.is_some() {
            return Ok(CardIndexStatus::Unsupported);
        }
        if let Some(index) = self.index.get() {
            return Ok(CardIndexStatus::Built { persons: index.persons() });
        }
        match blocking(|| index::PgIndex::start(&self.url, max_persons))? {
            Ok(index) => {
                let persons = index.persons();
                if let Err(extra) = self.index.set(index) {
                    extra.stop();
                }
                Ok(CardIndexStatus::Built { persons })
            }
            Err(persons) => Ok(CardIndexStatus::TooLarge { persons, max_persons }),
        }
    }

    fn card_index_counts(&self) -> crate::card_index::CardIndexCounts {
        self.index.get().map(|index| index.counts()).unwrap_or_default()
    }

    fn born_on(&self, birth_date: Date, sex: Sex) -> Result<Vec<CoverageWithTerms>, StoreError> {
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| view_sql("c.person_id IN (SELECT person_id FROM coverages WHERE birth_date = $1 AND sex = $2)"));
        let day = crate::rows::day(birth_date);
        let sex = sex.code();
        self.read(|c| read_view(c, sql, &[&day, &sex]))
    }

    fn coverages_of_person(&self, person_id: i64) -> Result<Vec<CoverageRecord>, StoreError> {
        let sql = format!("SELECT {COVERAGE_COLUMNS} FROM coverages WHERE person_id = $1");
        self.read(|c| query_coverages(c, &sql, &[&person_id]))
    }

    fn terms_of(&self, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError> {
        self.read(|c| {
            let rows = c
                .query(&format!("SELECT {TERMS_COLUMNS} FROM coverage_terms WHERE coverage_id = $1"), &[&coverage_id])
                .map_err(pg("reading terms"))?;
            let mut terms = rows.iter().map(|row| terms_record(raw_terms(row, 0)?)).collect::<Result<Vec<_>, StoreError>>()?;
            terms.sort_by_key(|t| t.effective_from);
            Ok(terms)
        })
    }

    fn insurer_lag(&self, insurer: &InsurerNumber) -> Result<Option<InsurerLag>, StoreError> {
        self.read_for_verification(|c| {
            let row = c
                .query_opt("SELECT events, lag_days_sum, lag_days_max FROM insurer_stats WHERE insurer_number = $1", &[&insurer.as_str()])
                .map_err(pg("reading insurer statistics"))?;
            Ok(row.map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))).filter(|(events, _, _)| *events > 0).map(
                |(events, sum, max)| InsurerLag {
                    events: events as u64,
                    mean_days: sum as f64 / events as f64,
                    max_days: max.clamp(0, i64::from(u32::MAX)) as u32,
                },
            ))
        })
    }

    fn lag_by_month(&self) -> Result<Vec<crate::model::LagMonth>, StoreError> {
        self.read(|c| {
            let mut tx = c.client.build_transaction().read_only(true).start().map_err(pg("reading the registration lag"))?;
            let portal = tx
                .bind("SELECT insurer_number, occurred_on, notified_at, registered_at FROM insurer_events", &[])
                .map_err(pg("reading the registration lag"))?;
            let mut profile = crate::rules::LagProfile::default();
            loop {
                let rows = tx.query_portal(&portal, 10_000).map_err(pg("reading the registration lag"))?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    let occurred = crate::rows::to_date(r.get::<_, i64>(1))?;
                    let notified = Timestamp::from_jst_seconds(r.get(2));
                    let registered = Timestamp::from_jst_seconds(r.get(3));
                    profile.add(r.get(0), occurred, notified, registered);
                }
            }
            tx.commit().map_err(pg("reading the registration lag"))?;
            Ok(profile.months())
        })
    }

    fn counts(&self) -> Result<RegisterCounts, StoreError> {
        self.read(|c| {
            let row = c
                .query_one(
                    "SELECT (SELECT count(*) FROM persons), (SELECT count(*) FROM coverages), (SELECT count(*) FROM insurer_events)",
                    &[],
                )
                .map_err(pg("counting"))?;
            Ok(RegisterCounts {
                persons: row.get::<_, i64>(0) as u64,
                coverages: row.get::<_, i64>(1) as u64,
                events: row.get::<_, i64>(2) as u64,
            })
        })
    }

    fn canonical_dump(&self) -> Result<String, StoreError> {
        self.read(|c| {
            let mut lines = Vec::new();
            for sql in DUMP_QUERIES {
                for row in c.query(sql, &[]).map_err(pg("dumping"))? {
                    let mut values = Vec::with_capacity(row.len());
                    for (i, column) in row.columns().iter().enumerate() {
                        let value = if *column.type_() == Type::INT8 {
                            row.try_get::<_, Option<i64>>(i).map_err(pg("dumping"))?.map_or(DumpValue::Null, DumpValue::Int)
                        } else {
                            row.try_get::<_, Option<String>>(i).map_err(pg("dumping"))?.map_or(DumpValue::Null, DumpValue::Text)
                        };
                        values.push(value);
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

    fn register() -> PgRegister {
        let url = cluster::test_database().unwrap_or_else(|e| panic!("a PostgreSQL cluster for the tests: {e}"));
        PgRegister::open(&url).expect("the register opens")
    }

    #[test]
    fn conformance() {
        let register = register();
        crate::conformance::run_all(&register);
        crate::conformance::run_cards(&register);
        crate::conformance::run_medical(&register);
        crate::conformance::run_subsidies(&register);
        crate::conformance::run_home(&register);
        crate::conformance::run_challenges(&register);
    }

    /// The copy follows another writer's every commit within its polls, says up to when it
    /// holds every commit, and answers nothing once its follower has stopped for longer than
    /// the bound (the register answers instead).
    #[test]
    fn the_card_index_follows_the_register_and_says_how_old_it_is() {
        use crate::card_index::CardIndexStatus;
        let url = cluster::test_database().expect("a cluster");
        let indexed = PgRegister::open(&url).unwrap();
        assert_eq!(indexed.build_card_index(10).unwrap(), CardIndexStatus::Built { persons: 0 });
        let writer = PgRegister::open(&url).unwrap();
        let settle = || {
            let last: i64 =
                writer.read(|c| Ok(c.query_one("SELECT coalesce(max(seq), 0) FROM register_changes", &[]).unwrap().get(0))).unwrap();
            assert!(
                indexed.index.get().unwrap().wait_for_position(last, std::time::Duration::from_secs(30)),
                "the copy did not reach change {last} in 30 s"
            );
        };
        let started = Timestamp::from_jst_seconds(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + JST_OFFSET_SECONDS,
        );
        crate::conformance::the_card_index_follows_every_writer(&indexed, &writer, &settle);
        let insurer = InsurerNumber::parse("06130488").unwrap();
        let number = CardNumber::parse("5001").unwrap();
        let (view, as_of) = indexed.card_holders_view_at(&insurer, &number).unwrap();
        assert_eq!(view, writer.card_holders_view(&insurer, &number).unwrap());
        let as_of = as_of.expect("an answer from the copy says up to when it holds every commit");
        assert!(as_of.jst_seconds() >= started.jst_seconds() - 1, "{as_of} is from a read after the test began at {started}");
        let counts = indexed.card_index_counts();
        assert!(counts.served > 0 && counts.persons == 3, "P1, P2 and P3 of the history: {counts:?}");

        let index = indexed.index.get().unwrap();
        index.stop_and_join();
        index.age(index::MAX_LAG - std::time::Duration::from_millis(500));
        assert!(indexed.card_holders_view_at(&insurer, &number).unwrap().1.is_some(), "within the bound the copy still answers");
        index.age(index::MAX_LAG + std::time::Duration::from_millis(500));
        assert_eq!(indexed.card_holders_view_at(&insurer, &number).unwrap().1, None, "past the bound the copy answers nothing");
        assert!(indexed.card_index_counts().behind > 0);
        assert_eq!(indexed.card_holders_view_at(&insurer, &number).unwrap().0, view, "the register answers instead");
    }

    #[test]
    fn a_batch_ends_as_its_events_one_by_one() {
        crate::conformance::batches_and_single_events_agree(&register(), &register());
    }

    #[test]
    fn a_large_batch_ends_as_its_events_one_by_one() {
        crate::conformance::a_large_batch_and_single_events_agree(&register(), &register());
    }

    #[test]
    fn reopening_keeps_data_and_a_newer_schema_is_refused() {
        let url = cluster::test_database().expect("a cluster");
        crate::conformance::run_all(&PgRegister::open(&url).unwrap());
        let register = PgRegister::open(&url).unwrap();
        assert_eq!(
            register.counts().unwrap().persons,
            11,
            "three persons of the conformance run, three of its lag check, three of born_on, one with a 資格確認書, one of the async read"
        );
        register.writer.lock().unwrap().as_mut().unwrap().execute("INSERT INTO schema_migrations VALUES (99, 0)", &[]).unwrap();
        assert!(matches!(PgRegister::open(&url), Err(StoreError::SchemaTooNew { found: 99, .. })));
    }

    /// Another user of the machine, without the cluster's password, is refused (SCRAM on every
    /// connection, by TCP and by the socket).
    #[test]
    fn a_connection_without_the_password_is_refused() {
        let url = cluster::test_database().expect("a cluster");
        assert!(PgRegister::open(&url).is_ok());
        let without: String = url.split_whitespace().filter(|part| !part.starts_with("password=")).collect::<Vec<_>>().join(" ");
        let guessed = url.replace("password=", "password=x");
        let secret = url.split_whitespace().find_map(|part| part.strip_prefix("password=")).expect("the test URL carries it").to_string();
        for attempt in [without, guessed] {
            let refused = PgRegister::open(&attempt).err().map(|e| format!("{e} {e:?}")).expect("refused");
            assert!(!refused.contains(&secret), "the message carries no password: {refused}");
        }
    }

    /// The same events give the same register on both engines, to the character of the dump.
    #[test]
    fn both_engines_end_with_the_same_register() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = crate::sqlite::SqliteRegister::open(&dir.path().join("r.sqlite"), crate::sqlite::SqliteOptions::SERVER).unwrap();
        let postgres = register();
        crate::conformance::run_all(&sqlite);
        crate::conformance::run_all(&postgres);
        let (a, b) = (sqlite.canonical_dump().unwrap(), postgres.canonical_dump().unwrap());
        assert!(a.lines().count() > 10, "the dump holds the register: {a}");
        assert_eq!(a, b);
    }
}

#[cfg(test)]
mod redaction {
    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(super::redacted("host=h port=1 user=onshi password=s3cret dbname=d"), "host=h port=1 user=onshi password=… dbname=d");
        assert_eq!(super::redacted("postgres://onshi:s3cret@127.0.0.1:5432/onshi"), "postgres://onshi:…@127.0.0.1:5432/onshi");
        assert_eq!(super::redacted("postgres://onshi@127.0.0.1/onshi"), "postgres://onshi@127.0.0.1/onshi");
    }
}
