//! The SQLite side of applying a batch of insurer events in one transaction: what the batch
//! touches is read in one set-based statement per kind (`json_each` over the batch's keys), the
//! register's rules decide in memory (`crate::rules`, shared with every engine), and the result
//! is written with one prepared statement per table, appended rows several to a statement.
//! (Passing each table's rows as one JSON array to an `INSERT … SELECT … FROM json_each` was
//! tried: a third slower.)

use rusqlite::{Transaction, params};

use onshi_domain::Timestamp;

use super::{day, diseases_json, load_terms, opt_day, public_expense_json, sqlite};
use crate::StoreError;
use crate::model::{ApplyOutcome, CoverageEvent, TermsRecord};
use crate::rules::{CardKey, Decision, RegisterReads, Span, decide};

/// insurer, number, symbol, branch, coverage, person, acquired, lost: a row of the card lookup.
pub(super) type CardRow = (String, String, String, i64, i64, i64, i64, Option<i64>);

pub(super) fn card_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CardRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?))
}

/// The rules' reads, inside the batch's transaction.
struct SqliteReads<'t, 'c> {
    tx: &'t Transaction<'c>,
}

impl RegisterReads for SqliteReads<'_, '_> {
    fn applied(&mut self, ids: &[(&str, &str)]) -> Result<crate::rules::Set<(String, String)>, StoreError> {
        let mut seen = crate::rules::Set::default();
        let mut statement = self
            .tx
            .prepare_cached(
                "SELECT e.insurer_number, e.event_id FROM json_each(?1) j
                 JOIN insurer_events e ON e.insurer_number = j.value ->> 0 AND e.event_id = j.value ->> 1",
            )
            .map_err(sqlite("preparing the batch's event lookup"))?;
        let mut rows = statement.query([json(&ids)?]).map_err(sqlite("looking up the batch's event ids"))?;
        while let Some(row) = rows.next().map_err(sqlite("looking up the batch's event ids"))? {
            seen.insert((row.get(0).map_err(sqlite("reading an event id"))?, row.get(1).map_err(sqlite("reading an event id"))?));
        }
        Ok(seen)
    }

    fn persons(&mut self, refs: &[&str]) -> Result<crate::rules::Map<String, i64>, StoreError> {
        let mut persons = crate::rules::Map::default();
        let mut statement = self
            .tx
            .prepare_cached("SELECT p.person_ref, p.person_id FROM json_each(?1) j JOIN persons p ON p.person_ref = j.value")
            .map_err(sqlite("preparing the batch's person lookup"))?;
        let mut rows = statement.query([json(&refs)?]).map_err(sqlite("looking up the batch's persons"))?;
        while let Some(row) = rows.next().map_err(sqlite("looking up the batch's persons"))? {
            persons.insert(row.get(0).map_err(sqlite("reading a person"))?, row.get(1).map_err(sqlite("reading a person"))?);
        }
        Ok(persons)
    }

    fn cards(&mut self, keys: &[CardKey]) -> Result<Vec<(CardKey, Span)>, StoreError> {
        let mut cards = Vec::new();
        let mut statement = self
            .tx
            .prepare_cached(
                "SELECT c.insurer_number, c.card_number, c.card_symbol, c.card_branch, c.coverage_id, c.person_id, c.acquired_on, c.lost_on
                 FROM json_each(?1) j
                 JOIN coverages c ON c.insurer_number = j.value ->> 0 AND c.card_number = j.value ->> 1
                                 AND c.card_symbol = j.value ->> 2 AND c.card_branch = j.value ->> 3",
            )
            .map_err(sqlite("preparing the batch's card lookup"))?;
        let mut rows = statement.query([json(&keys)?]).map_err(sqlite("looking up the batch's card numbers"))?;
        while let Some(row) = rows.next().map_err(sqlite("looking up the batch's card numbers"))? {
            let (insurer, number, symbol, branch, coverage_id, person_id, acquired, lost) =
                card_row(row).map_err(sqlite("reading a coverage"))?;
            let branch = u8::try_from(branch).map_err(|_| StoreError::Corrupt(format!("coverage {coverage_id}: branch {branch}")))?;
            cards.push((
                (insurer, number, symbol, branch),
                Span { coverage_id, person_id, acquired_on: super::to_date(acquired)?, lost_on: super::to_opt_date(lost)? },
            ));
        }
        Ok(cards)
    }

    fn terms(&mut self, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError> {
        load_terms(self.tx, coverage_id)
    }

    fn next_ids(&mut self) -> Result<(i64, i64), StoreError> {
        self.tx
            .query_row(
                "SELECT (SELECT coalesce(max(person_id), 0) + 1 FROM persons), (SELECT coalesce(max(coverage_id), 0) + 1 FROM coverages)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sqlite("reading the next ids"))
    }
}

/// Rows per multi-row INSERT. A statement's fixed cost (opening and closing its cursors,
/// halting its program) is paid once per this many rows instead of once per row: about a
/// tenth of a load's writing thread (docs/PERFORMANCE.md, issue 13). 32 rows of the widest
/// table are 544 parameters, far below SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 32;

/// `head VALUES (?, …), …` for `rows` rows of `columns` columns.
fn values_sql(head: &str, columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("{head} VALUES {}", vec![row; rows].join(", "))
}

/// Inserts `rows` by `head` (`INSERT … INTO table (columns)`), [`ROWS_PER_STATEMENT`] at a
/// time, the rest one by one; `bind` binds one row's values, as many as `head` names columns,
/// from a parameter index on. Rows go in the order given, so a later row meets an earlier one
/// exactly as it would one statement later (`OR REPLACE` replaces it, a constraint fails the
/// batch).
fn insert_rows<R>(
    tx: &Transaction<'_>,
    head: &str,
    rows: &[R],
    doing: &'static str,
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &R) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    // The column list is the last parenthesis of `head`: the count comes from the same text
    // the statement is made of.
    let columns = head.rsplit_once('(').map_or(0, |(_, list)| list.split(',').count());
    let mut chunks = rows.chunks_exact(ROWS_PER_STATEMENT);
    if rows.len() >= ROWS_PER_STATEMENT {
        let mut statement = tx.prepare_cached(&values_sql(head, columns, ROWS_PER_STATEMENT)).map_err(sqlite(doing))?;
        for chunk in &mut chunks {
            for (i, row) in chunk.iter().enumerate() {
                bind(&mut statement, 1 + i * columns, row).map_err(sqlite(doing))?;
            }
            statement.raw_execute().map_err(sqlite(doing))?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut statement = tx.prepare_cached(&values_sql(head, columns, 1)).map_err(sqlite(doing))?;
        for row in rest {
            bind(&mut statement, 1, row).map_err(sqlite(doing))?;
            statement.raw_execute().map_err(sqlite(doing))?;
        }
    }
    Ok(())
}

/// Writes what the batch changed: persons, coverages, stamps, terms, then the events; the
/// appended rows by multi-row statements ([`insert_rows`]), the updates one by one. (Passing
/// each table's rows as one JSON array to an `INSERT … SELECT … FROM json_each` was tried: a
/// third slower.)
fn write(tx: &Transaction<'_>, decision: &Decision, applied: &[EventRow], registered_at: Timestamp) -> Result<(), StoreError> {
    let registered = registered_at.jst_seconds();
    insert_rows(tx, "INSERT INTO persons (person_id, person_ref)", &decision.new_persons, "adding a person", |s, at, (id, person_ref)| {
        s.raw_bind_parameter(at, id)?;
        s.raw_bind_parameter(at + 1, person_ref)
    })?;
    insert_rows(
        tx,
        "INSERT INTO coverages (coverage_id, person_id, insurer_number, card_symbol, card_number, card_branch, birth_date, sex,
            relationship, card_classification, acquired_on, lost_on, loss_reason, acquired_notified_at, lost_notified_at, updated_at)",
        &decision.new_coverages,
        "adding a coverage",
        |s, at, c| {
            let (insurer, number, symbol, branch) = &c.key;
            s.raw_bind_parameter(at, c.coverage_id)?;
            s.raw_bind_parameter(at + 1, c.person_id)?;
            s.raw_bind_parameter(at + 2, insurer)?;
            s.raw_bind_parameter(at + 3, symbol)?;
            s.raw_bind_parameter(at + 4, number)?;
            s.raw_bind_parameter(at + 5, branch)?;
            s.raw_bind_parameter(at + 6, day(c.holder.birth_date))?;
            s.raw_bind_parameter(at + 7, c.holder.sex.code())?;
            s.raw_bind_parameter(at + 8, c.holder.relationship.code())?;
            s.raw_bind_parameter(at + 9, c.holder.card_classification.code())?;
            s.raw_bind_parameter(at + 10, day(c.acquired_on))?;
            s.raw_bind_parameter(at + 11, opt_day(c.lost.map(|l| l.0)))?;
            s.raw_bind_parameter(at + 12, c.lost.map(|l| l.1.code()))?;
            s.raw_bind_parameter(at + 13, c.acquired_notified_at)?;
            s.raw_bind_parameter(at + 14, c.lost.map(|l| l.2))?;
            s.raw_bind_parameter(at + 15, registered)
        },
    )?;
    {
        let mut update = tx
            .prepare_cached(
                "UPDATE coverages SET
                    birth_date = coalesce(?2, birth_date), sex = coalesce(?3, sex), relationship = coalesce(?4, relationship),
                    card_classification = coalesce(?5, card_classification),
                    lost_on = coalesce(?6, lost_on), loss_reason = coalesce(?7, loss_reason),
                    lost_notified_at = coalesce(?8, lost_notified_at), updated_at = ?9
                 WHERE coverage_id = ?1",
            )
            .map_err(sqlite("preparing the coverage update"))?;
        for (id, u) in &decision.updates {
            let h = u.holder.as_ref();
            update
                .execute(params![
                    id,
                    h.map(|h| day(h.birth_date)),
                    h.map(|h| h.sex.code()),
                    h.map(|h| h.relationship.code()),
                    h.map(|h| h.card_classification.code()),
                    opt_day(u.lost.map(|l| l.0)),
                    u.lost.map(|l| l.1.code()),
                    u.lost.map(|l| l.2),
                    registered
                ])
                .map_err(sqlite("updating a coverage"))?;
        }
    }
    insert_rows(
        tx,
        "INSERT OR REPLACE INTO coverage_terms (coverage_id, effective_from, name, name_kana, insured_name, address,
            post_code, income_class, limit_category, limit_classification, limit_valid_from, limit_valid_to,
            specific_diseases, public_expense, notified_at, registered_at, qualification_certificate)",
        &decision.terms,
        "writing terms",
        |s, at, (coverage_id, row)| {
            let limit = row.terms.limit.as_ref();
            s.raw_bind_parameter(at, coverage_id)?;
            s.raw_bind_parameter(at + 1, day(row.effective_from))?;
            s.raw_bind_parameter(at + 2, &row.details.name)?;
            s.raw_bind_parameter(at + 3, &row.details.name_kana)?;
            s.raw_bind_parameter(at + 4, &row.details.insured_name)?;
            s.raw_bind_parameter(at + 5, &row.details.address)?;
            s.raw_bind_parameter(at + 6, &row.details.post_code)?;
            s.raw_bind_parameter(at + 7, row.terms.income.code())?;
            s.raw_bind_parameter(at + 8, limit.map(|l| l.category.code()))?;
            s.raw_bind_parameter(at + 9, limit.map(|l| l.classification.code()))?;
            s.raw_bind_parameter(at + 10, limit.map(|l| day(l.valid_from)))?;
            s.raw_bind_parameter(at + 11, limit.and_then(|l| opt_day(l.valid_to)))?;
            s.raw_bind_parameter(at + 12, diseases_json(&row.terms.specific_diseases))?;
            s.raw_bind_parameter(at + 13, public_expense_json(&row.terms.public_expense))?;
            s.raw_bind_parameter(at + 14, row.notified_at.jst_seconds())?;
            s.raw_bind_parameter(at + 15, registered)?;
            s.raw_bind_parameter(at + 16, crate::rows::qualification_certificate_text(row.terms.qualification_certificate.as_ref()))
        },
    )?;
    insert_rows(
        tx,
        "INSERT OR FAIL INTO insurer_events (insurer_number, event_id, kind, coverage_id, occurred_on, notified_at, registered_at)",
        applied,
        "recording an event",
        |s, at, event| {
            s.raw_bind_parameter(at, &event.insurer)?;
            s.raw_bind_parameter(at + 1, &event.event_id)?;
            s.raw_bind_parameter(at + 2, event.kind)?;
            s.raw_bind_parameter(at + 3, event.coverage_id)?;
            s.raw_bind_parameter(at + 4, day(event.occurred_on))?;
            s.raw_bind_parameter(at + 5, event.notified_at.jst_seconds())?;
            s.raw_bind_parameter(at + 6, registered)
        },
    )
}

/// An applied event's row of `insurer_events`, owned: a load writes its batches on a thread of
/// their own, after the events themselves have gone back to the import.
pub(super) struct EventRow {
    insurer: String,
    event_id: String,
    kind: &'static str,
    coverage_id: i64,
    occurred_on: onshi_domain::Date,
    notified_at: Timestamp,
}

/// The rows of the events `decision` applied, in the order it applied them.
pub(super) fn event_rows(decision: &Decision, events: &[CoverageEvent]) -> Vec<EventRow> {
    decision
        .applied
        .iter()
        .map(|(index, coverage_id)| {
            let event = &events[*index];
            EventRow {
                insurer: event.insurer.as_str().to_string(),
                event_id: event.event_id.clone(),
                kind: event.body.kind(),
                coverage_id: *coverage_id,
                occurred_on: event.occurred_on,
                notified_at: event.notified_at,
            }
        })
        .collect()
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("the batch's keys do not serialise: {e}")))
}

fn write_lag_totals(tx: &Transaction<'_>, decision: &Decision, registered: i64) -> Result<(), StoreError> {
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO insurer_stats (insurer_number, events, lag_days_sum, lag_days_max, last_registered_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (insurer_number) DO UPDATE SET
                events = events + excluded.events,
                lag_days_sum = lag_days_sum + excluded.lag_days_sum,
                lag_days_max = max(lag_days_max, excluded.lag_days_max),
                last_registered_at = excluded.last_registered_at",
        )
        .map_err(sqlite("preparing the insurer statistics"))?;
    for (insurer, t) in &decision.lag {
        statement
            .execute(params![insurer, t.events, t.lag_days_sum, t.lag_days_max, registered])
            .map_err(sqlite("updating insurer statistics"))?;
    }
    Ok(())
}

/// One row of the change log for a batch that changed anything (see the migration 0013).
fn record_changes(tx: &Transaction<'_>, decision: &Decision, registered: i64) -> Result<(), StoreError> {
    let changed = decision.changed_coverages();
    if changed.is_empty() {
        return Ok(());
    }
    tx.prepare_cached("INSERT INTO register_changes (registered_at, coverage_ids) VALUES (?1, ?2)")
        .map_err(sqlite("preparing the change log"))?
        .execute(params![registered, crate::card_index::encode_ids(&changed)])
        .map_err(sqlite("recording the batch in the change log"))?;
    Ok(())
}

/// Applies `events` in `tx`, in order; one outcome per event.
pub(super) fn apply_batch(
    tx: &Transaction<'_>,
    events: &[CoverageEvent],
    registered_at: Timestamp,
) -> Result<Vec<ApplyOutcome>, StoreError> {
    super::load::refuse_while_loading(tx)?;
    Ok(decide_and_write(tx, &mut SqliteReads { tx }, events, registered_at)?.outcomes)
}

/// Decides `events` over what `reads` returns and writes the result in `tx`: the one way a
/// batch reaches the file, whether read from the file (above) or from a load's memory.
pub(super) fn decide_and_write(
    tx: &Transaction<'_>,
    reads: &mut dyn RegisterReads,
    events: &[CoverageEvent],
    registered_at: Timestamp,
) -> Result<Decision, StoreError> {
    let decision = decide(reads, events, registered_at)?;
    write_decision(tx, &decision, &event_rows(&decision, events), registered_at)?;
    Ok(decision)
}

/// Writes what `decision` changed, its events' rows, the insurers' lag totals and the change log.
pub(super) fn write_decision(
    tx: &Transaction<'_>,
    decision: &Decision,
    applied: &[EventRow],
    registered_at: Timestamp,
) -> Result<(), StoreError> {
    write(tx, decision, applied, registered_at)?;
    write_lag_totals(tx, decision, registered_at.jst_seconds())?;
    record_changes(tx, decision, registered_at.jst_seconds())
}
