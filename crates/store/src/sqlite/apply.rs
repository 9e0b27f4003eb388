//! The SQLite side of applying a batch of insurer events in one transaction: what the batch
//! touches is read in one set-based statement per kind (`json_each` over the batch's keys), the
//! register's rules decide in memory (`crate::rules`, shared with every engine), and the result
//! is written with one prepared statement per table, executed per row. (Passing each table's
//! rows as one JSON array to an `INSERT … SELECT … FROM json_each` was tried: a third slower.)

use std::collections::{HashMap, HashSet};

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
    fn applied(&mut self, ids: &[(&str, &str)]) -> Result<HashSet<(String, String)>, StoreError> {
        let mut seen = HashSet::new();
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

    fn persons(&mut self, refs: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        let mut persons = HashMap::new();
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

/// Writes what the batch changed: persons, coverages, stamps, terms, then the events, one
/// prepared statement per table executed per row. (Passing each table's rows as one JSON
/// array to an `INSERT … SELECT … FROM json_each` was tried: a third slower.)
fn write(tx: &Transaction<'_>, decision: &Decision, applied: &[EventRow], registered_at: Timestamp) -> Result<(), StoreError> {
    let registered = registered_at.jst_seconds();
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO persons (person_id, person_ref) VALUES (?1, ?2)")
            .map_err(sqlite("preparing the person insert"))?;
        for (id, person_ref) in &decision.new_persons {
            insert.execute(params![id, person_ref]).map_err(sqlite("adding a person"))?;
        }
    }
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO coverages (coverage_id, person_id, insurer_number, card_symbol, card_number, card_branch, birth_date, sex,
                    relationship, card_classification, acquired_on, lost_on, loss_reason, acquired_notified_at, lost_notified_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .map_err(sqlite("preparing the coverage insert"))?;
        for c in &decision.new_coverages {
            let (insurer, number, symbol, branch) = &c.key;
            insert
                .execute(params![
                    c.coverage_id,
                    c.person_id,
                    insurer,
                    symbol,
                    number,
                    branch,
                    day(c.holder.birth_date),
                    c.holder.sex.code(),
                    c.holder.relationship.code(),
                    c.holder.card_classification.code(),
                    day(c.acquired_on),
                    opt_day(c.lost.map(|l| l.0)),
                    c.lost.map(|l| l.1.code()),
                    c.acquired_notified_at,
                    c.lost.map(|l| l.2),
                    registered
                ])
                .map_err(sqlite("adding a coverage"))?;
        }
    }
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
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO coverage_terms (coverage_id, effective_from, name, name_kana, insured_name, address,
                    post_code, income_class, limit_category, limit_classification, limit_valid_from, limit_valid_to,
                    specific_diseases, public_expense, notified_at, registered_at, qualification_certificate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )
            .map_err(sqlite("preparing the terms insert"))?;
        for (coverage_id, row) in &decision.terms {
            let from = &row.effective_from;
            let limit = row.terms.limit.as_ref();
            insert
                .execute(params![
                    coverage_id,
                    day(*from),
                    row.details.name,
                    row.details.name_kana,
                    row.details.insured_name,
                    row.details.address,
                    row.details.post_code,
                    row.terms.income.code(),
                    limit.map(|l| l.category.code()),
                    limit.map(|l| l.classification.code()),
                    limit.map(|l| day(l.valid_from)),
                    limit.and_then(|l| opt_day(l.valid_to)),
                    diseases_json(&row.terms.specific_diseases),
                    public_expense_json(&row.terms.public_expense),
                    row.notified_at.jst_seconds(),
                    registered,
                    crate::rows::qualification_certificate_text(row.terms.qualification_certificate.as_ref())
                ])
                .map_err(sqlite("writing terms"))?;
        }
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT OR FAIL INTO insurer_events (insurer_number, event_id, kind, coverage_id, occurred_on, notified_at, registered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sqlite("preparing the event insert"))?;
    for event in applied {
        insert
            .execute(params![
                event.insurer,
                event.event_id,
                event.kind,
                event.coverage_id,
                day(event.occurred_on),
                event.notified_at.jst_seconds(),
                registered
            ])
            .map_err(sqlite("recording an event"))?;
    }
    Ok(())
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
