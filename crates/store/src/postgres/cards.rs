//! [`CardRegistry`] on PostgreSQL: the SQLite engine's statements in PostgreSQL's dialect,
//! each change in one transaction. Where two center processes could race (a reader's key, a
//! value that only goes up), the statement itself decides (an upsert with a condition, a row
//! lock), not a read before it.

use onshi_domain::Timestamp;
use postgres::Row;

use super::{PgRegister, pg};
use crate::StoreError;
use crate::cards::{
    BindingApplied, BindingChange, BoundAttributes, CardBinding, CardLink, CardRegistry, Consent, LinkReportRow, LinkState, Reader,
    ReaderRegistration, ReportForInsurer,
};

const LINK_COLUMNS: &str = "serial, holder_ref, person_id, state, linked_at, flag_reason";
const REPORT_COLUMNS: &str = "r.report_id, r.serial, r.person_id, r.reporter, r.reason, r.filed_at, r.state";

fn report_of(row: &Row) -> LinkReportRow {
    LinkReportRow {
        report_id: row.get(0),
        serial: row.get(1),
        person_id: row.get(2),
        reporter: row.get(3),
        reason: row.get(4),
        filed_at: Timestamp::from_jst_seconds(row.get(5)),
        state: row.get(6),
    }
}

fn link_of(row: &Row) -> Result<CardLink, StoreError> {
    Ok(CardLink {
        serial: row.get(0),
        holder_ref: row.get(1),
        person_id: row.get(2),
        state: LinkState::parse(row.get(3))?,
        linked_at: Timestamp::from_jst_seconds(row.get(4)),
        flag_reason: row.get(5),
    })
}

impl CardRegistry for PgRegister {
    fn link_card(&self, serial: &str, holder_ref: &str, person_id: i64, at: Timestamp) -> Result<CardLink, StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                "INSERT INTO card_links (serial, holder_ref, person_id, state, linked_at, changed_at) VALUES ($1, $2, $3, 'active', $4, $4)
                 ON CONFLICT (serial) DO UPDATE SET person_id = excluded.person_id, state = 'active', linked_at = excluded.linked_at,
                 changed_at = excluded.changed_at, flag_reason = NULL WHERE card_links.state = 'unlinked'",
                &[&serial, &holder_ref, &person_id, &at.jst_seconds()],
            )
            .map_err(pg("linking a card"))?;
            let row = tx
                .query_one(&format!("SELECT {LINK_COLUMNS} FROM card_links WHERE serial = $1"), &[&serial])
                .map_err(pg("reading a card link"))?;
            link_of(&row)
        })
    }

    fn card_link(&self, serial: &str) -> Result<Option<CardLink>, StoreError> {
        self.read(|c| {
            let row = c
                .query_opt(&format!("SELECT {LINK_COLUMNS} FROM card_links WHERE serial = $1"), &[&serial])
                .map_err(pg("reading a card link"))?;
            row.as_ref().map(link_of).transpose()
        })
    }

    fn holder_link(&self, holder_ref: &str) -> Result<Option<CardLink>, StoreError> {
        self.read(|c| {
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {LINK_COLUMNS} FROM card_links WHERE holder_ref = $1 AND state <> 'moved' ORDER BY changed_at DESC LIMIT 1"
                    ),
                    &[&holder_ref],
                )
                .map_err(pg("reading a holder's card link"))?;
            row.as_ref().map(link_of).transpose()
        })
    }

    fn move_card_link(&self, holder_ref: &str, new_serial: &str, at: Timestamp) -> Result<Option<CardLink>, StoreError> {
        self.with_writer(|tx| {
            let old = tx
                .query_opt(
                    &format!(
                        "SELECT {LINK_COLUMNS} FROM card_links WHERE holder_ref = $1 AND state IN ('active', 'flagged') AND serial <> $2 FOR UPDATE"
                    ),
                    &[&holder_ref, &new_serial],
                )
                .map_err(pg("reading a holder's card link"))?;
            let Some(old) = old.as_ref().map(link_of).transpose()? else { return Ok(None) };
            tx.execute("UPDATE card_links SET state = 'moved', changed_at = $2 WHERE serial = $1", &[&old.serial, &at.jst_seconds()])
                .map_err(pg("retiring a renewed card's link"))?;
            tx.execute(
                "INSERT INTO card_links (serial, holder_ref, person_id, state, linked_at, changed_at, flag_reason) VALUES ($1, $2, $3, $4, $5, $5, $6)
                 ON CONFLICT (serial) DO NOTHING",
                &[&new_serial, &holder_ref, &old.person_id, &old.state.code(), &at.jst_seconds(), &old.flag_reason],
            )
            .map_err(pg("moving a card link"))?;
            Ok(Some(CardLink { serial: new_serial.to_string(), linked_at: at, ..old }))
        })
    }

    fn register_reader(&self, reader: &Reader, at: Timestamp) -> Result<ReaderRegistration, StoreError> {
        self.with_writer(|tx| {
            let existing = tx
                .query_opt("SELECT institution, public_key FROM card_readers WHERE reader_id = $1 FOR UPDATE", &[&reader.reader_id])
                .map_err(pg("reading a reader"))?
                .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)));
            let outcome = match existing {
                Some((institution, _)) if institution != reader.institution => {
                    return Ok(ReaderRegistration::OwnedElsewhere { institution });
                }
                Some((_, key)) if key == reader.public_key => return Ok(ReaderRegistration::Unchanged),
                Some(_) => ReaderRegistration::Rotated,
                None => ReaderRegistration::New,
            };
            let written = tx
                .execute(
                    "INSERT INTO card_readers (reader_id, institution, public_key, registered_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (reader_id) DO UPDATE SET public_key = excluded.public_key, registered_at = excluded.registered_at
                     WHERE card_readers.institution = excluded.institution",
                    &[&reader.reader_id, &reader.institution, &reader.public_key, &at.jst_seconds()],
                )
                .map_err(pg("registering a reader"))?;
            if written == 0 {
                // Another process registered the id to another institution meanwhile.
                let institution: String = tx
                    .query_one("SELECT institution FROM card_readers WHERE reader_id = $1", &[&reader.reader_id])
                    .map_err(pg("reading a reader"))?
                    .get(0);
                return Ok(ReaderRegistration::OwnedElsewhere { institution });
            }
            Ok(outcome)
        })
    }

    fn reader(&self, reader_id: &str) -> Result<Option<Reader>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt("SELECT reader_id, institution, public_key FROM card_readers WHERE reader_id = $1", &[&reader_id])
                .map_err(pg("reading a reader"))?
                .map(|r| Reader { reader_id: r.get(0), institution: r.get(1), public_key: r.get(2) }))
        })
    }

    fn record_consent(&self, person_id: i64, institution: &str, consent: &Consent) -> Result<(), StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                "INSERT INTO consents (person_id, institution, scope, given_at, available_until) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (person_id, institution, scope) DO UPDATE SET given_at = excluded.given_at,
                 available_until = excluded.available_until",
                &[&person_id, &institution, &consent.scope, &consent.given_at.jst_seconds(), &consent.available_until.jst_seconds()],
            )
            .map_err(pg("recording a consent"))?;
            Ok(())
        })
    }

    fn consents(&self, person_id: i64, institution: &str) -> Result<Vec<Consent>, StoreError> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT scope, given_at, available_until FROM consents WHERE person_id = $1 AND institution = $2 ORDER BY scope",
                    &[&person_id, &institution],
                )
                .map_err(pg("reading consents"))?;
            Ok(rows
                .iter()
                .map(|r| Consent {
                    scope: r.get(0),
                    given_at: Timestamp::from_jst_seconds(r.get(1)),
                    available_until: Timestamp::from_jst_seconds(r.get(2)),
                })
                .collect())
        })
    }

    fn consents_of_person(&self, person_id: i64) -> Result<Vec<(String, Consent)>, StoreError> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT institution, scope, given_at, available_until FROM consents WHERE person_id = $1 ORDER BY institution, scope",
                    &[&person_id],
                )
                .map_err(pg("reading a person's consents"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        Consent {
                            scope: r.get(1),
                            given_at: Timestamp::from_jst_seconds(r.get(2)),
                            available_until: Timestamp::from_jst_seconds(r.get(3)),
                        },
                    )
                })
                .collect())
        })
    }

    fn reports_of_person(&self, person_id: i64) -> Result<Vec<LinkReportRow>, StoreError> {
        self.read(|c| {
            Ok(c.query(&format!("SELECT {REPORT_COLUMNS} FROM link_reports r WHERE r.person_id = $1 ORDER BY r.report_id"), &[&person_id])
                .map_err(pg("reading a person's reports"))?
                .iter()
                .map(report_of)
                .collect())
        })
    }

    fn report_states(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| {
            Ok(c.query("SELECT state, count(*) FROM link_reports GROUP BY state ORDER BY state", &[])
                .map_err(pg("counting reports"))?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
                .collect())
        })
    }

    fn withdraw_consent(&self, person_id: i64, institution: &str, scope: &str) -> Result<bool, StoreError> {
        self.with_writer(|tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM consents WHERE person_id = $1 AND institution = $2 AND scope = $3",
                    &[&person_id, &institution, &scope],
                )
                .map_err(pg("withdrawing a consent"))?;
            Ok(deleted > 0)
        })
    }

    fn apply_binding(&self, change: &BindingChange, at: Timestamp) -> Result<BindingApplied, StoreError> {
        self.with_writer(|tx| {
            let fresh = tx
                .execute(
                    "INSERT INTO card_binding_feed (seq, kind, serial, applied_at) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING",
                    &[&change.seq, &change.kind, &change.serial, &at.jst_seconds()],
                )
                .map_err(pg("recording a binding entry"))?;
            if fresh == 0 {
                return Ok(BindingApplied::AlreadyApplied);
            }
            match (change.kind.as_str(), &change.attributes) {
                ("issue" | "renew", Some(a)) => {
                    tx.execute(
                        "INSERT INTO card_bindings (serial, holder_ref, person_ref, name, name_kana, birth_date, sex, address, state, seq, face_only, phone_of)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $11)
                         ON CONFLICT (serial) DO UPDATE SET holder_ref = excluded.holder_ref, person_ref = excluded.person_ref,
                         name = excluded.name, name_kana = excluded.name_kana, birth_date = excluded.birth_date, sex = excluded.sex,
                         address = excluded.address, seq = excluded.seq, state = 'active', face_only = excluded.face_only, phone_of = excluded.phone_of",
                        &[
                            &change.serial,
                            &change.holder_ref,
                            &change.person_ref,
                            &a.name,
                            &a.name_kana,
                            &a.birth_date,
                            &a.sex,
                            &a.address,
                            &change.seq,
                            &change.face_only,
                            &change.phone_of,
                        ],
                    )
                    .map_err(pg("recording a card binding"))?;
                    Ok(BindingApplied::Applied { unlinked_person: None })
                }
                ("revoke", _) => {
                    tx.execute("UPDATE card_bindings SET state = 'revoked', seq = $2 WHERE serial = $1", &[&change.serial, &change.seq])
                        .map_err(pg("revoking a card binding"))?;
                    let person: Option<i64> = tx
                        .query_opt(
                            "UPDATE card_links SET state = 'unlinked', changed_at = $2 WHERE serial = $1 AND state IN ('active', 'flagged')
                             RETURNING person_id",
                            &[&change.serial, &at.jst_seconds()],
                        )
                        .map_err(pg("undoing a revoked card's link"))?
                        .map(|r| r.get(0));
                    Ok(BindingApplied::Applied { unlinked_person: person })
                }
                (kind, _) => Err(StoreError::Corrupt(format!("binding entry {} of kind {kind:?} without attributes", change.seq))),
            }
        })
    }

    fn binding_seq_max(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            Ok(c.query_one("SELECT coalesce(max(seq), 0) FROM card_binding_feed", &[]).map_err(pg("reading the binding feed"))?.get(0))
        })
    }

    fn binding(&self, serial: &str) -> Result<Option<CardBinding>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT serial, holder_ref, person_ref, name, name_kana, birth_date, sex, address, state, face_only, phone_of FROM card_bindings WHERE serial = $1",
                &[&serial],
            )
            .map_err(pg("reading a card binding"))?
            .map(|r| CardBinding {
                serial: r.get(0),
                holder_ref: r.get(1),
                person_ref: r.get(2),
                attributes: BoundAttributes { name: r.get(3), name_kana: r.get(4), birth_date: r.get(5), sex: r.get(6), address: r.get(7) },
                state: r.get(8),
                face_only: r.get(9),
                phone_of: r.get(10),
            }))
        })
    }

    fn person_of_ref(&self, person_ref: &str) -> Result<Option<i64>, StoreError> {
        self.person_by_ref(person_ref)
    }

    fn file_report(
        &self,
        serial: &str,
        person_id: i64,
        reporter: &str,
        reason: &str,
        block: bool,
        at: Timestamp,
    ) -> Result<i64, StoreError> {
        self.with_writer(|tx| {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO link_reports (serial, person_id, reporter, reason, filed_at, state) VALUES ($1, $2, $3, $4, $5, 'open')
                     RETURNING report_id",
                    &[&serial, &person_id, &reporter, &reason, &at.jst_seconds()],
                )
                .map_err(pg("filing a report"))?
                .get(0);
            if block {
                tx.execute(
                    "UPDATE card_links SET state = 'flagged', flag_reason = $2, changed_at = $3 WHERE serial = $1 AND state IN ('active', 'flagged')",
                    &[&serial, &reason, &at.jst_seconds()],
                )
                .map_err(pg("flagging a card link"))?;
            }
            Ok(id)
        })
    }

    fn report(&self, report_id: i64) -> Result<Option<LinkReportRow>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(&format!("SELECT {REPORT_COLUMNS} FROM link_reports r WHERE r.report_id = $1"), &[&report_id])
                .map_err(pg("reading a report"))?
                .map(|r| report_of(&r)))
        })
    }

    fn open_reports_for_insurer(&self, insurer_number: &str, today: onshi_domain::Date) -> Result<Vec<ReportForInsurer>, StoreError> {
        let today = crate::rows::day(today);
        self.read(|c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {REPORT_COLUMNS}, c.insurer_number, c.card_symbol, c.card_number, c.card_branch
                         FROM link_reports r JOIN coverages c ON c.coverage_id =
                            (SELECT max(c2.coverage_id) FROM coverages c2 WHERE c2.person_id = r.person_id AND c2.insurer_number = $1
                             AND c2.acquired_on <= $2 AND (c2.lost_on IS NULL OR c2.lost_on > $2))
                         WHERE r.state = 'open' ORDER BY r.report_id"
                    ),
                    &[&insurer_number, &today],
                )
                .map_err(pg("reading reports"))?;
            rows.iter()
                .map(|r| {
                    let branch: i64 = r.get(10);
                    Ok(ReportForInsurer {
                        report: report_of(r),
                        insurer_number: r.get(7),
                        symbol: r.get(8),
                        number: r.get(9),
                        branch: u8::try_from(branch).map_err(|_| StoreError::Corrupt(format!("branch {branch}")))?,
                    })
                })
                .collect()
        })
    }

    fn review_report(
        &self,
        report_id: i64,
        reviewer: &str,
        confirm: bool,
        note: &str,
        at: Timestamp,
    ) -> Result<Option<LinkReportRow>, StoreError> {
        self.with_writer(|tx| {
            let state = if confirm { "confirmed" } else { "cleared" };
            let changed = tx
                .execute(
                    "UPDATE link_reports SET state = $2, reviewed_by = $3, reviewed_at = $4, review_note = $5 WHERE report_id = $1 AND state = 'open'",
                    &[&report_id, &state, &reviewer, &at.jst_seconds(), &note],
                )
                .map_err(pg("reviewing a report"))?;
            if changed == 0 {
                return Ok(None);
            }
            let report = report_of(
                &tx.query_one(&format!("SELECT {REPORT_COLUMNS} FROM link_reports r WHERE r.report_id = $1"), &[&report_id])
                    .map_err(pg("reading a report"))?,
            );
            // The decision is about the holder's card, whatever certificate it carries now.
            let holder: String = tx
                .query_opt("SELECT holder_ref FROM card_links WHERE serial = $1", &[&report.serial])
                .map_err(pg("reading a reported link"))?
                .map(|r| r.get(0))
                .unwrap_or_default();
            if confirm {
                tx.execute(
                    "UPDATE card_links SET state = 'unlinked', changed_at = $3
                     WHERE (serial = $1 OR holder_ref = $2) AND state IN ('active', 'flagged')",
                    &[&report.serial, &holder, &at.jst_seconds()],
                )
                .map_err(pg("undoing a wrong link"))?;
                tx.execute(
                    "UPDATE card_bindings SET state = 'disputed' WHERE (serial = $1 OR holder_ref = $2) AND state = 'active'",
                    &[&report.serial, &holder],
                )
                .map_err(pg("disputing a card binding"))?;
            } else {
                // A holder's own open report still blocks the card; otherwise it verifies again.
                tx.execute(
                    "UPDATE card_links SET state = 'active', flag_reason = NULL, changed_at = $3
                     WHERE (serial = $1 OR holder_ref = $2) AND state = 'flagged'
                     AND NOT EXISTS (SELECT 1 FROM link_reports r JOIN card_links l ON l.serial = r.serial
                                     WHERE (r.serial = $1 OR l.holder_ref = $2) AND r.state = 'open' AND r.reporter = 'patient')",
                    &[&report.serial, &holder, &at.jst_seconds()],
                )
                .map_err(pg("clearing a flagged link"))?;
            }
            Ok(Some(report))
        })
    }

    fn shares_challenges(&self) -> bool {
        true
    }

    fn issue_challenge(
        &self,
        challenge: &str,
        owner: &str,
        issued_at: Timestamp,
        live_from: Timestamp,
        limit: usize,
    ) -> Result<bool, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            c.query("DELETE FROM card_challenges WHERE owner = $1 AND issued_at < $2", &[&owner, &live_from.jst_seconds()])
                .map_err(pg("forgetting expired challenges"))?;
            // The count and the insert in one statement; two processes at once may pass the
            // quota by one each (it bounds a flood, it is not a security property).
            let inserted = c
                .query(
                    "INSERT INTO card_challenges (challenge, owner, issued_at)
                     SELECT $1, $2, $3 WHERE (SELECT count(*) FROM card_challenges WHERE owner = $2 AND issued_at >= $4) < $5
                     RETURNING 1",
                    &[&challenge, &owner, &issued_at.jst_seconds(), &live_from.jst_seconds(), &limit],
                )
                .map_err(pg("recording a challenge"))?;
            Ok(!inserted.is_empty())
        })
    }

    fn take_challenge(&self, challenge: &str) -> Result<Option<(String, Timestamp)>, StoreError> {
        // One statement: of two processes presented the same challenge, one deletes the row.
        self.read(|c| {
            Ok(c.query_opt("DELETE FROM card_challenges WHERE challenge = $1 RETURNING owner, issued_at", &[&challenge])
                .map_err(pg("using up a challenge"))?
                .map(|r| (r.get(0), Timestamp::from_jst_seconds(r.get(1)))))
        })
    }

    fn challenges_held(&self, owner: &str, live_from: Timestamp) -> Result<usize, StoreError> {
        self.read(|c| {
            let held: i64 = c
                .query_one("SELECT count(*) FROM card_challenges WHERE owner = $1 AND issued_at >= $2", &[&owner, &live_from.jst_seconds()])
                .map_err(pg("counting challenges"))?
                .get(0);
            Ok(held as usize)
        })
    }

    fn trust_value(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt("SELECT value FROM trust_state WHERE name = $1", &[&name]).map_err(pg("reading trust state"))?.map(|r| r.get(0)))
        })
    }

    fn raise_trust_value(&self, name: &str, value: i64) -> Result<bool, StoreError> {
        self.with_writer(|tx| {
            // One statement decides, so that two processes cannot lower it between a read and a write.
            let written = tx
                .execute(
                    "INSERT INTO trust_state (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value WHERE trust_state.value <= excluded.value",
                    &[&name, &value],
                )
                .map_err(pg("writing trust state"))?;
            Ok(written > 0)
        })
    }
}
