//! [`CardRegistry`] on SQLite.

use onshi_domain::Timestamp;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteRegister, sqlite};
use crate::StoreError;
use crate::cards::{
    BindingApplied, BindingChange, BoundAttributes, CardBinding, CardLink, CardRegistry, Consent, LinkReportRow, LinkState, Reader,
    ReaderRegistration, ReportForInsurer,
};

const LINK_COLUMNS: &str = "serial, holder_ref, person_id, state, linked_at, flag_reason";
const REPORT_COLUMNS: &str = "r.report_id, r.serial, r.person_id, r.reporter, r.reason, r.filed_at, r.state";

fn report_of(row: &Row<'_>) -> rusqlite::Result<LinkReportRow> {
    Ok(LinkReportRow {
        report_id: row.get(0)?,
        serial: row.get(1)?,
        person_id: row.get(2)?,
        reporter: row.get(3)?,
        reason: row.get(4)?,
        filed_at: Timestamp::from_jst_seconds(row.get(5)?),
        state: row.get(6)?,
    })
}

fn link_of(row: &Row<'_>) -> rusqlite::Result<(String, String, i64, String, i64, Option<String>)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn decode(
    (serial, holder_ref, person_id, state, linked_at, flag_reason): (String, String, i64, String, i64, Option<String>),
) -> Result<CardLink, StoreError> {
    Ok(CardLink {
        serial,
        holder_ref,
        person_id,
        state: LinkState::parse(&state)?,
        linked_at: Timestamp::from_jst_seconds(linked_at),
        flag_reason,
    })
}

impl SqliteRegister {
    pub(super) fn with_writer<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = writer.transaction().map_err(sqlite("starting a card transaction"))?;
        let result = f(&tx)?;
        tx.commit().map_err(sqlite("committing a card change"))?;
        Ok(result)
    }
}

/// A person's consents to one institution, unsorted: with the bundled SQLite's STAT4, an ORDER
/// BY over a key the WHERE fixes makes the cached statement re-prepare at every use (measured:
/// 1,998 re-preparations in 2,000 runs, none without it).
pub(super) const CONSENTS_SQL: &str = "SELECT scope, given_at, available_until FROM consents WHERE person_id = ?1 AND institution = ?2";

impl CardRegistry for SqliteRegister {
    fn link_card(&self, serial: &str, holder_ref: &str, person_id: i64, at: Timestamp) -> Result<CardLink, StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                "INSERT INTO card_links (serial, holder_ref, person_id, state, linked_at, changed_at) VALUES (?1, ?2, ?3, 'active', ?4, ?4)
                 ON CONFLICT (serial) DO UPDATE SET person_id = excluded.person_id, state = 'active', linked_at = excluded.linked_at,
                 changed_at = excluded.changed_at, flag_reason = NULL WHERE card_links.state = 'unlinked'",
                params![serial, holder_ref, person_id, at.jst_seconds()],
            )
            .map_err(sqlite("linking a card"))?;
            let row = tx
                .query_row(&format!("SELECT {LINK_COLUMNS} FROM card_links WHERE serial = ?1"), [serial], link_of)
                .map_err(sqlite("reading a card link"))?;
            decode(row)
        })
    }

    fn card_link(&self, serial: &str) -> Result<Option<CardLink>, StoreError> {
        self.read(|c| {
            let row = c
                .prepare_cached(&format!("SELECT {LINK_COLUMNS} FROM card_links WHERE serial = ?1"))
                .and_then(|mut s| s.query_row([serial], link_of).optional())
                .map_err(sqlite("reading a card link"))?;
            row.map(decode).transpose()
        })
    }

    fn holder_link(&self, holder_ref: &str) -> Result<Option<CardLink>, StoreError> {
        self.read(|c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {LINK_COLUMNS} FROM card_links WHERE holder_ref = ?1 AND state <> 'moved' ORDER BY changed_at DESC LIMIT 1"
                ))
                .and_then(|mut s| s.query_row([holder_ref], link_of).optional())
                .map_err(sqlite("reading a holder's card link"))?;
            row.map(decode).transpose()
        })
    }

    fn move_card_link(&self, holder_ref: &str, new_serial: &str, at: Timestamp) -> Result<Option<CardLink>, StoreError> {
        self.with_writer(|tx| {
            let old = tx
                .query_row(
                    &format!(
                        "SELECT {LINK_COLUMNS} FROM card_links WHERE holder_ref = ?1 AND state IN ('active', 'flagged') AND serial <> ?2"
                    ),
                    [holder_ref, new_serial],
                    link_of,
                )
                .optional()
                .map_err(sqlite("reading a holder's card link"))?;
            let Some(old) = old.map(decode).transpose()? else { return Ok(None) };
            tx.execute("UPDATE card_links SET state = 'moved', changed_at = ?2 WHERE serial = ?1", params![old.serial, at.jst_seconds()])
                .map_err(sqlite("retiring a renewed card's link"))?;
            tx.execute(
                "INSERT INTO card_links (serial, holder_ref, person_id, state, linked_at, changed_at, flag_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)
                 ON CONFLICT (serial) DO NOTHING",
                params![new_serial, holder_ref, old.person_id, old.state.code(), at.jst_seconds(), old.flag_reason],
            )
            .map_err(sqlite("moving a card link"))?;
            Ok(Some(CardLink { serial: new_serial.to_string(), linked_at: at, ..old }))
        })
    }

    fn register_reader(&self, reader: &Reader, at: Timestamp) -> Result<ReaderRegistration, StoreError> {
        self.with_writer(|tx| {
            let existing: Option<(String, Vec<u8>)> = tx
                .query_row("SELECT institution, public_key FROM card_readers WHERE reader_id = ?1", [&reader.reader_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(sqlite("reading a reader"))?;
            let outcome = match existing {
                Some((institution, _)) if institution != reader.institution => {
                    return Ok(ReaderRegistration::OwnedElsewhere { institution });
                }
                Some((_, key)) if key == reader.public_key => return Ok(ReaderRegistration::Unchanged),
                Some(_) => ReaderRegistration::Rotated,
                None => ReaderRegistration::New,
            };
            tx.execute(
                "INSERT INTO card_readers (reader_id, institution, public_key, registered_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (reader_id) DO UPDATE SET public_key = excluded.public_key, registered_at = excluded.registered_at
                 WHERE card_readers.institution = excluded.institution",
                params![reader.reader_id, reader.institution, reader.public_key, at.jst_seconds()],
            )
            .map_err(sqlite("registering a reader"))?;
            Ok(outcome)
        })
    }

    fn reader(&self, reader_id: &str) -> Result<Option<Reader>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT reader_id, institution, public_key FROM card_readers WHERE reader_id = ?1")
                .and_then(|mut s| {
                    s.query_row([reader_id], |r| Ok(Reader { reader_id: r.get(0)?, institution: r.get(1)?, public_key: r.get(2)? }))
                        .optional()
                })
                .map_err(sqlite("reading a reader"))
        })
    }

    fn record_consent(&self, person_id: i64, institution: &str, consent: &Consent) -> Result<(), StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                "INSERT INTO consents (person_id, institution, scope, given_at, available_until) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (person_id, institution, scope) DO UPDATE SET given_at = excluded.given_at,
                 available_until = excluded.available_until",
                params![person_id, institution, consent.scope, consent.given_at.jst_seconds(), consent.available_until.jst_seconds()],
            )
            .map_err(sqlite("recording a consent"))?;
            Ok(())
        })
    }

    fn consents(&self, person_id: i64, institution: &str) -> Result<Vec<Consent>, StoreError> {
        self.read(|c| {
            let mut statement = c.prepare_cached(CONSENTS_SQL).map_err(sqlite("reading consents"))?;
            let rows = statement
                .query_map(params![person_id, institution], |r| {
                    Ok(Consent {
                        scope: r.get(0)?,
                        given_at: Timestamp::from_jst_seconds(r.get(1)?),
                        available_until: Timestamp::from_jst_seconds(r.get(2)?),
                    })
                })
                .map_err(sqlite("reading consents"))?;
            let mut consents = rows.collect::<Result<Vec<_>, _>>().map_err(sqlite("reading consents"))?;
            // Sorted here, not by ORDER BY (see CONSENTS_SQL).
            consents.sort_by(|a, b| a.scope.cmp(&b.scope));
            Ok(consents)
        })
    }

    fn consents_of_person(&self, person_id: i64) -> Result<Vec<(String, Consent)>, StoreError> {
        self.read(|c| {
            let mut statement = c
                .prepare_cached(
                    "SELECT institution, scope, given_at, available_until FROM consents WHERE person_id = ?1 ORDER BY institution, scope",
                )
                .map_err(sqlite("reading a person's consents"))?;
            let rows = statement
                .query_map([person_id], |r| {
                    Ok((
                        r.get(0)?,
                        Consent {
                            scope: r.get(1)?,
                            given_at: Timestamp::from_jst_seconds(r.get(2)?),
                            available_until: Timestamp::from_jst_seconds(r.get(3)?),
                        },
                    ))
                })
                .map_err(sqlite("reading a person's consents"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite("reading a person's consents"))
        })
    }

    fn reports_of_person(&self, person_id: i64) -> Result<Vec<LinkReportRow>, StoreError> {
        self.read(|c| {
            let mut statement = c
                .prepare_cached(&format!("SELECT {REPORT_COLUMNS} FROM link_reports r WHERE r.person_id = ?1 ORDER BY r.report_id"))
                .map_err(sqlite("reading a person's reports"))?;
            let rows = statement.query_map([person_id], report_of).map_err(sqlite("reading a person's reports"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite("reading a person's reports"))
        })
    }

    fn report_states(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| {
            let mut statement = c
                .prepare_cached("SELECT state, count(*) FROM link_reports GROUP BY state ORDER BY state")
                .map_err(sqlite("counting reports"))?;
            let rows =
                statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))).map_err(sqlite("counting reports"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite("counting reports"))
        })
    }

    fn withdraw_consent(&self, person_id: i64, institution: &str, scope: &str) -> Result<bool, StoreError> {
        self.with_writer(|tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM consents WHERE person_id = ?1 AND institution = ?2 AND scope = ?3",
                    params![person_id, institution, scope],
                )
                .map_err(sqlite("withdrawing a consent"))?;
            Ok(deleted > 0)
        })
    }

    fn apply_binding(&self, change: &BindingChange, at: Timestamp) -> Result<BindingApplied, StoreError> {
        self.with_writer(|tx| {
            let fresh = tx
                .execute(
                    "INSERT INTO card_binding_feed (seq, kind, serial, applied_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (seq) DO NOTHING",
                    params![change.seq, change.kind, change.serial, at.jst_seconds()],
                )
                .map_err(sqlite("recording a binding entry"))?;
            if fresh == 0 {
                return Ok(BindingApplied::AlreadyApplied);
            }
            match (change.kind.as_str(), &change.attributes) {
                ("issue" | "renew", Some(a)) => {
                    tx.execute(
                        "INSERT INTO card_bindings (serial, holder_ref, person_ref, name, name_kana, birth_date, sex, address, state, seq, face_only, phone_of)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?9, ?10, ?11)
                         ON CONFLICT (serial) DO UPDATE SET holder_ref = excluded.holder_ref, person_ref = excluded.person_ref,
                         name = excluded.name, name_kana = excluded.name_kana, birth_date = excluded.birth_date, sex = excluded.sex,
                         address = excluded.address, seq = excluded.seq, state = 'active', face_only = excluded.face_only, phone_of = excluded.phone_of",
                        params![
                            change.serial,
                            change.holder_ref,
                            change.person_ref,
                            a.name,
                            a.name_kana,
                            a.birth_date,
                            a.sex,
                            a.address,
                            change.seq,
                            change.face_only,
                            change.phone_of
                        ],
                    )
                    .map_err(sqlite("recording a card binding"))?;
                    Ok(BindingApplied::Applied { unlinked_person: None })
                }
                ("revoke", _) => {
                    tx.execute(
                        "UPDATE card_bindings SET state = 'revoked', seq = ?2 WHERE serial = ?1",
                        params![change.serial, change.seq],
                    )
                    .map_err(sqlite("revoking a card binding"))?;
                    let person: Option<i64> = tx
                        .query_row(
                            "UPDATE card_links SET state = 'unlinked', changed_at = ?2 WHERE serial = ?1 AND state IN ('active', 'flagged')
                             RETURNING person_id",
                            params![change.serial, at.jst_seconds()],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(sqlite("undoing a revoked card's link"))?;
                    Ok(BindingApplied::Applied { unlinked_person: person })
                }
                (kind, _) => Err(StoreError::Corrupt(format!("binding entry {} of kind {kind:?} without attributes", change.seq))),
            }
        })
    }

    fn binding_seq_max(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT coalesce(max(seq), 0) FROM card_binding_feed", [], |r| r.get(0)).map_err(sqlite("reading the binding feed"))
        })
    }

    fn binding(&self, serial: &str) -> Result<Option<CardBinding>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT serial, holder_ref, person_ref, name, name_kana, birth_date, sex, address, state, face_only, phone_of FROM card_bindings WHERE serial = ?1",
            )
            .and_then(|mut s| {
                s.query_row([serial], |r| {
                    Ok(CardBinding {
                        serial: r.get(0)?,
                        holder_ref: r.get(1)?,
                        person_ref: r.get(2)?,
                        attributes: BoundAttributes {
                            name: r.get(3)?,
                            name_kana: r.get(4)?,
                            birth_date: r.get(5)?,
                            sex: r.get(6)?,
                            address: r.get(7)?,
                        },
                        state: r.get(8)?,
                        face_only: r.get(9)?,
                        phone_of: r.get(10)?,
                    })
                })
                .optional()
            })
            .map_err(sqlite("reading a card binding"))
        })
    }

    fn person_of_ref(&self, person_ref: &str) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT person_id FROM persons WHERE person_ref = ?1")
                .and_then(|mut s| s.query_row([person_ref], |r| r.get(0)).optional())
                .map_err(sqlite("reading a person"))
        })
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
            let id = tx
                .query_row(
                    "INSERT INTO link_reports (serial, person_id, reporter, reason, filed_at, state) VALUES (?1, ?2, ?3, ?4, ?5, 'open')
                     RETURNING report_id",
                    params![serial, person_id, reporter, reason, at.jst_seconds()],
                    |r| r.get(0),
                )
                .map_err(sqlite("filing a report"))?;
            if block {
                tx.execute(
                    "UPDATE card_links SET state = 'flagged', flag_reason = ?2, changed_at = ?3 WHERE serial = ?1 AND state IN ('active', 'flagged')",
                    params![serial, reason, at.jst_seconds()],
                )
                .map_err(sqlite("flagging a card link"))?;
            }
            Ok(id)
        })
    }

    fn report(&self, report_id: i64) -> Result<Option<LinkReportRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {REPORT_COLUMNS} FROM link_reports r WHERE r.report_id = ?1"))
                .and_then(|mut s| s.query_row([report_id], report_of).optional())
                .map_err(sqlite("reading a report"))
        })
    }

    fn open_reports_for_insurer(&self, insurer_number: &str, today: onshi_domain::Date) -> Result<Vec<ReportForInsurer>, StoreError> {
        let today = i64::from(today.year()) * 10_000 + i64::from(today.month()) * 100 + i64::from(today.day());
        self.read(|c| {
            let mut statement = c
                .prepare_cached(&format!(
                    "SELECT {REPORT_COLUMNS}, c.insurer_number, c.card_symbol, c.card_number, c.card_branch
                     FROM link_reports r JOIN coverages c ON c.coverage_id =
                        (SELECT max(c2.coverage_id) FROM coverages c2 WHERE c2.person_id = r.person_id AND c2.insurer_number = ?1
                         AND c2.acquired_on <= ?2 AND (c2.lost_on IS NULL OR c2.lost_on > ?2))
                     WHERE r.state = 'open' ORDER BY r.report_id"
                ))
                .map_err(sqlite("reading reports"))?;
            let rows = statement
                .query_map(params![insurer_number, today], |r| {
                    Ok(ReportForInsurer {
                        report: report_of(r)?,
                        insurer_number: r.get(7)?,
                        symbol: r.get(8)?,
                        number: r.get(9)?,
                        branch: r.get(10)?,
                    })
                })
                .map_err(sqlite("reading reports"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite("reading reports"))
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
                    "UPDATE link_reports SET state = ?2, reviewed_by = ?3, reviewed_at = ?4, review_note = ?5 WHERE report_id = ?1 AND state = 'open'",
                    params![report_id, state, reviewer, at.jst_seconds(), note],
                )
                .map_err(sqlite("reviewing a report"))?;
            if changed == 0 {
                return Ok(None);
            }
            let report = tx
                .query_row(&format!("SELECT {REPORT_COLUMNS} FROM link_reports r WHERE r.report_id = ?1"), [report_id], report_of)
                .map_err(sqlite("reading a report"))?;
            // The decision is about the holder's card, whatever certificate it carries now: a
            // link (and a flag) moved to a renewed certificate since the report is included.
            let holder: Option<String> = tx
                .query_row("SELECT holder_ref FROM card_links WHERE serial = ?1", [&report.serial], |r| r.get(0))
                .optional()
                .map_err(sqlite("reading a reported link"))?;
            let holder = holder.unwrap_or_default();
            if confirm {
                tx.execute(
                    "UPDATE card_links SET state = 'unlinked', changed_at = ?3
                     WHERE (serial = ?1 OR holder_ref = ?2) AND state IN ('active', 'flagged')",
                    params![report.serial, holder, at.jst_seconds()],
                )
                .map_err(sqlite("undoing a wrong link"))?;
                tx.execute(
                    "UPDATE card_bindings SET state = 'disputed' WHERE (serial = ?1 OR holder_ref = ?2) AND state = 'active'",
                    params![report.serial, holder],
                )
                .map_err(sqlite("disputing a card binding"))?;
            } else {
                // A holder's own open report still blocks the card; otherwise it verifies again.
                tx.execute(
                    "UPDATE card_links SET state = 'active', flag_reason = NULL, changed_at = ?3
                     WHERE (serial = ?1 OR holder_ref = ?2) AND state = 'flagged'
                     AND NOT EXISTS (SELECT 1 FROM link_reports r JOIN card_links l ON l.serial = r.serial
                                     WHERE (r.serial = ?1 OR l.holder_ref = ?2) AND r.state = 'open' AND r.reporter = 'patient')",
                    params![report.serial, holder, at.jst_seconds()],
                )
                .map_err(sqlite("clearing a flagged link"))?;
            }
            Ok(Some(report))
        })
    }

    fn trust_value(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT value FROM trust_state WHERE name = ?1", [name], |r| r.get(0))
                .optional()
                .map_err(sqlite("reading trust state"))
        })
    }

    fn raise_trust_value(&self, name: &str, value: i64) -> Result<bool, StoreError> {
        self.with_writer(|tx| {
            let current: Option<i64> = tx
                .query_row("SELECT value FROM trust_state WHERE name = ?1", [name], |r| r.get(0))
                .optional()
                .map_err(sqlite("reading trust state"))?;
            if current.is_some_and(|c| c > value) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO trust_state (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map_err(sqlite("writing trust state"))?;
            Ok(true)
        })
    }
}
