//! [`SubsidyStore`] on PostgreSQL: the same rules, under their own advisory lock so that the
//! read-decide-write of one recipient is not interleaved between center processes.

use super::{PgRegister, pg};
use crate::StoreError;
use crate::model::ApplyOutcome;
use crate::rows::{day, opt_day};
use crate::subsidy::RawSubsidy;
use crate::subsidy::{
    COLUMNS, SubsidyChange, SubsidyEventRecord, SubsidyRow, SubsidyStore, TICKET_COLUMNS, TicketRow, WelfareHolder, decide,
    designated_text, holder_of, injuries_text, subsidy_row, ticket_row,
};
use onshi_domain::Timestamp;
use onshi_domain::ids::{PublicPayerNumber, RecipientNumber};

/// The advisory lock payer batches take (another number than the insurers' batches).
const SUBSIDY_LOCK: i64 = 0x6f6e_7368_6902;

fn rows(found: &[postgres::Row]) -> Result<Vec<SubsidyRow>, StoreError> {
    found
        .iter()
        .map(|r| {
            let raw: RawSubsidy =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8), r.get(9), r.get(10), r.get(11));
            subsidy_row(raw)
        })
        .collect()
}

impl SubsidyStore for PgRegister {
    fn apply_subsidy_events(&self, events: &[SubsidyEventRecord], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError> {
        let by_recipient = format!("SELECT {COLUMNS} FROM subsidies WHERE payer_number = $1 AND recipient_number = $2 ORDER BY valid_from");
        let insert = format!("INSERT INTO subsidies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
        self.with_writer(|tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SUBSIDY_LOCK]).map_err(pg("waiting for other payer imports"))?;
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                let seen = tx
                    .query_opt(
                        "SELECT 1 FROM subsidy_events WHERE payer_number = $1 AND event_id = $2",
                        &[&event.payer.as_str(), &event.event_id],
                    )
                    .map_err(pg("reading applied payer events"))?;
                if seen.is_some() {
                    outcomes.push(ApplyOutcome::AlreadyApplied);
                    continue;
                }
                let found =
                    tx.query(&by_recipient, &[&event.payer.as_str(), &event.recipient.as_str()]).map_err(pg("reading subsidies"))?;
                let new_rows = match decide(&rows(&found)?, event, registered_at) {
                    Ok(new_rows) => new_rows,
                    Err(refused) => {
                        outcomes.push(refused);
                        continue;
                    }
                };
                if let SubsidyChange::Ticket(t) = &event.change {
                    tx.execute(
                        &format!(
                            "INSERT INTO medical_tickets ({TICKET_COLUMNS}, registered_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                             ON CONFLICT (payer_number, recipient_number, month, institution_code, ticket_type) DO UPDATE SET
                             valid_from = excluded.valid_from, valid_to = excluded.valid_to, issue_number = excluded.issue_number,
                             institution_name = excluded.institution_name, injuries = excluded.injuries,
                             treatment_type = excluded.treatment_type, self_pay_yen = excluded.self_pay_yen,
                             combined = excluded.combined, registered_at = excluded.registered_at"
                        ),
                        &[
                            &event.payer.as_str(),
                            &event.recipient.as_str(),
                            &i64::from(t.month),
                            &t.institution_code,
                            &t.ticket_type,
                            &day(t.valid_from),
                            &day(t.valid_to),
                            &t.issue_number,
                            &t.institution_name,
                            &injuries_text(&t.injuries),
                            &t.treatment_type,
                            &i64::from(t.self_pay_yen),
                            &i64::from(t.combined),
                            &registered_at.jst_seconds(),
                        ],
                    )
                    .map_err(pg("writing a medical ticket"))?;
                }
                tx.execute(
                    "DELETE FROM subsidies WHERE payer_number = $1 AND recipient_number = $2",
                    &[&event.payer.as_str(), &event.recipient.as_str()],
                )
                .map_err(pg("replacing a recipient's certificates"))?;
                for row in &new_rows {
                    tx.execute(
                        &insert,
                        &[
                            &row.payer.as_str(),
                            &row.recipient.as_str(),
                            &row.person_ref,
                            &day(row.valid_from),
                            &opt_day(row.terms.valid_to),
                            &row.terms.name,
                            &row.terms.self_pay_cap_yen.map(i64::from),
                            &row.terms.income_segment,
                            &designated_text(&row.terms.designated_institutions),
                            &i64::from(row.terms.withheld),
                            &row.notified_at.jst_seconds(),
                            &row.registered_at.jst_seconds(),
                        ],
                    )
                    .map_err(pg("writing a recipient's certificate"))?;
                }
                if let Some(holder) = &event.holder {
                    tx.execute(
                        "INSERT INTO welfare_holders (payer_number, recipient_number, person_ref, name, name_kana, birth_date, sex, address, registered_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (payer_number, recipient_number) DO UPDATE SET name = excluded.name,
                         name_kana = excluded.name_kana, birth_date = excluded.birth_date, sex = excluded.sex,
                         address = excluded.address, registered_at = excluded.registered_at",
                        &[
                            &event.payer.as_str(),
                            &event.recipient.as_str(),
                            &event.person_ref,
                            &holder.name,
                            &holder.name_kana,
                            &day(holder.birth_date),
                            &holder.sex.code(),
                            &holder.address,
                            &registered_at.jst_seconds(),
                        ],
                    )
                    .map_err(pg("writing a recipient's own record"))?;
                    // The person, so that the card authority's binding finds them: ids as the
                    // register's import gives them, under the register's own lock.
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::APPLY_LOCK]).map_err(pg("waiting for the register's writer"))?;
                    tx.execute(
                        "INSERT INTO persons (person_id, person_ref)
                         SELECT (SELECT coalesce(max(person_id), 0) + 1 FROM persons), $1
                         WHERE NOT EXISTS (SELECT 1 FROM persons WHERE person_ref = $1)",
                        &[&event.person_ref],
                    )
                    .map_err(pg("recording a welfare recipient"))?;
                }
                tx.execute(
                    "INSERT INTO subsidy_events (payer_number, event_id, registered_at) VALUES ($1, $2, $3)",
                    &[&event.payer.as_str(), &event.event_id, &registered_at.jst_seconds()],
                )
                .map_err(pg("recording a payer event"))?;
                outcomes.push(ApplyOutcome::Applied);
            }
            Ok(outcomes)
        })
    }

    fn subsidies_of_person(&self, person_id: i64) -> Result<Vec<SubsidyRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM subsidies WHERE person_ref = (SELECT person_ref FROM persons WHERE person_id = $1)
             ORDER BY payer_number, recipient_number, valid_from"
        );
        self.read(|c| rows(&c.query(&sql, &[&person_id]).map_err(pg("reading subsidies"))?))
    }

    fn subsidies_of_recipient(&self, payer: &PublicPayerNumber, recipient: &RecipientNumber) -> Result<Vec<SubsidyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM subsidies WHERE payer_number = $1 AND recipient_number = $2 ORDER BY valid_from");
        self.read(|c| rows(&c.query(&sql, &[&payer.as_str(), &recipient.as_str()]).map_err(pg("reading subsidies"))?))
    }

    fn tickets_at(&self, institution: &str, month: u32) -> Result<Vec<TicketRow>, StoreError> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM medical_tickets WHERE institution_code = $1 AND month = $2
             ORDER BY payer_number, recipient_number, ticket_type"
        );
        self.read(|c| tickets(&c.query(&sql, &[&institution, &i64::from(month)]).map_err(pg("reading medical tickets"))?))
    }

    fn tickets_of_recipient(
        &self,
        payer: &PublicPayerNumber,
        recipient: &RecipientNumber,
        month: u32,
    ) -> Result<Vec<TicketRow>, StoreError> {
        // The primary key's prefix: (payer, recipient, month).
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM medical_tickets WHERE payer_number = $1 AND recipient_number = $2 AND month = $3
             ORDER BY institution_code, ticket_type"
        );
        self.read(|c| {
            tickets(&c.query(&sql, &[&payer.as_str(), &recipient.as_str(), &i64::from(month)]).map_err(pg("reading medical tickets"))?)
        })
    }

    fn welfare_holder(&self, payer: &PublicPayerNumber, recipient: &RecipientNumber) -> Result<Option<WelfareHolder>, StoreError> {
        self.read(|c| {
            let row = c
                .query_opt(
                    "SELECT name, name_kana, birth_date, sex, address FROM welfare_holders WHERE payer_number = $1 AND recipient_number = $2",
                    &[&payer.as_str(), &recipient.as_str()],
                )
                .map_err(pg("reading a recipient's own record"))?;
            row.map(|r| holder_of((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))).transpose()
        })
    }

    fn welfare_designating(&self, institution: &str) -> Result<Vec<SubsidyRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM subsidies WHERE payer_number LIKE '12%' AND position(',' || $1 || ',' in ',' || designated || ',') > 0
             ORDER BY payer_number, recipient_number, valid_from"
        );
        self.read(|c| rows(&c.query(&sql, &[&institution]).map_err(pg("reading designated recipients"))?))
    }

    fn payer_registers(&self, payer: &PublicPayerNumber) -> Result<bool, StoreError> {
        self.read(|c| {
            c.query_opt("SELECT 1 FROM subsidy_events WHERE payer_number = $1 LIMIT 1", &[&payer.as_str()])
                .map(|found| found.is_some())
                .map_err(pg("reading whether a payer registers"))
        })
    }
}

fn tickets(rows: &[postgres::Row]) -> Result<Vec<TicketRow>, StoreError> {
    rows.iter()
        .map(|r| {
            ticket_row((
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
                r.get(10),
                r.get(11),
                r.get(12),
            ))
        })
        .collect()
}
