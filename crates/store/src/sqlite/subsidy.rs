//! [`SubsidyStore`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{SqliteRegister, sqlite};
use crate::StoreError;
use crate::model::ApplyOutcome;
use crate::rows::{day, opt_day};
use crate::subsidy::{
    COLUMNS, RawHolder, RawSubsidy, RawTicket, SubsidyChange, SubsidyEventRecord, SubsidyRow, SubsidyStore, TICKET_COLUMNS, TicketRow,
    WelfareHolder, decide, designated_text, holder_of, injuries_text, subsidy_row, ticket_row,
};
use onshi_domain::Timestamp;
use onshi_domain::ids::{PublicPayerNumber, RecipientNumber};

fn rows_of(c: &rusqlite::Connection, sql: &str, key: &[&dyn rusqlite::ToSql]) -> Result<Vec<SubsidyRow>, StoreError> {
    let mut statement = c.prepare_cached(sql).map_err(sqlite("reading subsidies"))?;
    let raws: Vec<RawSubsidy> = statement
        .query_map(key, |r| RawSubsidy::try_from(r))
        .map_err(sqlite("reading subsidies"))?
        .collect::<Result<_, _>>()
        .map_err(sqlite("reading subsidies"))?;
    raws.into_iter().map(subsidy_row).collect()
}

impl SubsidyStore for SqliteRegister {
    fn apply_subsidy_events(&self, events: &[SubsidyEventRecord], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError> {
        let by_recipient = format!("SELECT {COLUMNS} FROM subsidies WHERE payer_number = ?1 AND recipient_number = ?2 ORDER BY valid_from");
        self.with_writer(|tx| {
            // It may add persons, which a load of the register numbers itself.
            super::load::refuse_while_loading(tx)?;
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                let seen: Option<i64> = tx
                    .prepare_cached("SELECT 1 FROM subsidy_events WHERE payer_number = ?1 AND event_id = ?2")
                    .and_then(|mut s| s.query_row(params![event.payer.as_str(), event.event_id], |r| r.get(0)).optional())
                    .map_err(sqlite("reading applied payer events"))?;
                if seen.is_some() {
                    outcomes.push(ApplyOutcome::AlreadyApplied);
                    continue;
                }
                let existing = rows_of(tx, &by_recipient, &[&event.payer.as_str(), &event.recipient.as_str()])?;
                let rows = match decide(&existing, event, registered_at) {
                    Ok(rows) => rows,
                    Err(refused) => {
                        outcomes.push(refused);
                        continue;
                    }
                };
                if let SubsidyChange::Ticket(t) = &event.change {
                    tx.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO medical_tickets ({TICKET_COLUMNS}, registered_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                    ))
                    .and_then(|mut st| {
                        st.execute(params![
                            event.payer.as_str(),
                            event.recipient.as_str(),
                            i64::from(t.month),
                            t.institution_code,
                            t.ticket_type,
                            day(t.valid_from),
                            day(t.valid_to),
                            t.issue_number,
                            t.institution_name,
                            injuries_text(&t.injuries),
                            t.treatment_type,
                            i64::from(t.self_pay_yen),
                            i64::from(t.combined),
                            registered_at.jst_seconds(),
                        ])
                    })
                    .map_err(sqlite("writing a medical ticket"))?;
                }
                tx.execute(
                    "DELETE FROM subsidies WHERE payer_number = ?1 AND recipient_number = ?2",
                    params![event.payer.as_str(), event.recipient.as_str()],
                )
                .map_err(sqlite("replacing a recipient's certificates"))?;
                for row in &rows {
                    tx.prepare_cached(&format!(
                        "INSERT INTO subsidies ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                    ))
                    .and_then(|mut s| {
                        s.execute(params![
                            row.payer.as_str(),
                            row.recipient.as_str(),
                            row.person_ref,
                            day(row.valid_from),
                            opt_day(row.terms.valid_to),
                            row.terms.name,
                            row.terms.self_pay_cap_yen.map(i64::from),
                            row.terms.income_segment,
                            designated_text(&row.terms.designated_institutions),
                            i64::from(row.terms.withheld),
                            row.notified_at.jst_seconds(),
                            row.registered_at.jst_seconds(),
                        ])
                    })
                    .map_err(sqlite("writing a recipient's certificate"))?;
                }
                if let Some(holder) = &event.holder {
                    tx.prepare_cached(
                        "INSERT INTO welfare_holders (payer_number, recipient_number, person_ref, name, name_kana, birth_date, sex, address, registered_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (payer_number, recipient_number) DO UPDATE SET name = excluded.name,
                         name_kana = excluded.name_kana, birth_date = excluded.birth_date, sex = excluded.sex,
                         address = excluded.address, registered_at = excluded.registered_at",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            event.payer.as_str(),
                            event.recipient.as_str(),
                            event.person_ref,
                            holder.name,
                            holder.name_kana,
                            day(holder.birth_date),
                            holder.sex.code(),
                            holder.address,
                            registered_at.jst_seconds(),
                        ])
                    })
                    .map_err(sqlite("writing a recipient's own record"))?;
                    // The person, so that the card authority's binding finds them; ids as the
                    // register's import gives them (one writer: this transaction).
                    tx.prepare_cached(
                        "INSERT INTO persons (person_id, person_ref)
                         SELECT (SELECT coalesce(max(person_id), 0) + 1 FROM persons), ?1
                         WHERE NOT EXISTS (SELECT 1 FROM persons WHERE person_ref = ?1)",
                    )
                    .and_then(|mut s| s.execute(params![event.person_ref]))
                    .map_err(sqlite("recording a welfare recipient"))?;
                }
                tx.execute(
                    "INSERT INTO subsidy_events (payer_number, event_id, registered_at) VALUES (?1, ?2, ?3)",
                    params![event.payer.as_str(), event.event_id, registered_at.jst_seconds()],
                )
                .map_err(sqlite("recording a payer event"))?;
                outcomes.push(ApplyOutcome::Applied);
            }
            Ok(outcomes)
        })
    }

    fn subsidies_of_person(&self, person_id: i64) -> Result<Vec<SubsidyRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM subsidies WHERE person_ref = (SELECT person_ref FROM persons WHERE person_id = ?1)
             ORDER BY payer_number, recipient_number, valid_from"
        );
        self.read(|c| rows_of(c, &sql, &[&person_id]))
    }

    fn subsidies_of_recipient(&self, payer: &PublicPayerNumber, recipient: &RecipientNumber) -> Result<Vec<SubsidyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM subsidies WHERE payer_number = ?1 AND recipient_number = ?2 ORDER BY valid_from");
        self.read(|c| rows_of(c, &sql, &[&payer.as_str(), &recipient.as_str()]))
    }

    fn tickets_at(&self, institution: &str, month: u32) -> Result<Vec<TicketRow>, StoreError> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM medical_tickets WHERE institution_code = ?1 AND month = ?2
             ORDER BY payer_number, recipient_number, ticket_type"
        );
        self.read(|c| tickets(c, &sql, params![institution, i64::from(month)]))
    }

    fn tickets_of_recipient(
        &self,
        payer: &PublicPayerNumber,
        recipient: &RecipientNumber,
        month: u32,
    ) -> Result<Vec<TicketRow>, StoreError> {
        // The primary key's prefix: (payer, recipient, month).
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM medical_tickets WHERE payer_number = ?1 AND recipient_number = ?2 AND month = ?3
             ORDER BY institution_code, ticket_type"
        );
        self.read(|c| tickets(c, &sql, params![payer.as_str(), recipient.as_str(), i64::from(month)]))
    }

    fn welfare_designating(&self, institution: &str) -> Result<Vec<SubsidyRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM subsidies WHERE payer_number LIKE '12%' AND instr(',' || designated || ',', ',' || ?1 || ',') > 0
             ORDER BY payer_number, recipient_number, valid_from"
        );
        self.read(|c| rows_of(c, &sql, &[&institution]))
    }

    fn welfare_holder(&self, payer: &PublicPayerNumber, recipient: &RecipientNumber) -> Result<Option<WelfareHolder>, StoreError> {
        self.read(|c| {
            let raw: Option<RawHolder> = c
                .prepare_cached(
                    "SELECT name, name_kana, birth_date, sex, address FROM welfare_holders WHERE payer_number = ?1 AND recipient_number = ?2",
                )
                .and_then(|mut s| s.query_row(params![payer.as_str(), recipient.as_str()], |r| RawHolder::try_from(r)).optional())
                .map_err(sqlite("reading a recipient's own record"))?;
            raw.map(holder_of).transpose()
        })
    }

    fn payer_registers(&self, payer: &PublicPayerNumber) -> Result<bool, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT 1 FROM subsidy_events WHERE payer_number = ?1 LIMIT 1")
                .and_then(|mut s| s.query_row([payer.as_str()], |r| r.get::<_, i64>(0)).optional())
                .map(|found| found.is_some())
                .map_err(sqlite("reading whether a payer registers"))
        })
    }
}

fn tickets(c: &rusqlite::Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<TicketRow>, StoreError> {
    let mut statement = c.prepare_cached(sql).map_err(sqlite("reading medical tickets"))?;
    let raws: Vec<RawTicket> = statement
        .query_map(params, |r| RawTicket::try_from(r))
        .map_err(sqlite("reading medical tickets"))?
        .collect::<Result<_, _>>()
        .map_err(sqlite("reading medical tickets"))?;
    raws.into_iter().map(ticket_row).collect()
}
