//! [`CardRegistry`] on SQLite.

use onshi_domain::Timestamp;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteRegister, sqlite};
use crate::StoreError;
use crate::cards::{CardLink, CardRegistry, Consent, LinkState, Reader};

const LINK_COLUMNS: &str = "serial, holder_ref, person_id, state, linked_at, flag_reason";

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

impl CardRegistry for SqliteRegister {
    fn link_card(&self, serial: &str, holder_ref: &str, person_id: i64, at: Timestamp) -> Result<CardLink, StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                "INSERT INTO card_links (serial, holder_ref, person_id, state, linked_at, changed_at) VALUES (?1, ?2, ?3, 'active', ?4, ?4)
                 ON CONFLICT (serial) DO NOTHING",
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
                    &format!("SELECT {LINK_COLUMNS} FROM card_links WHERE holder_ref = ?1 AND state <> 'moved' AND serial <> ?2"),
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

    fn flag_card_link(&self, serial: &str, reason: &str, at: Timestamp) -> Result<bool, StoreError> {
        self.with_writer(|tx| {
            let changed = tx
                .execute(
                    "UPDATE card_links SET state = 'flagged', flag_reason = ?2, changed_at = ?3 WHERE serial = ?1 AND state <> 'moved'",
                    params![serial, reason, at.jst_seconds()],
                )
                .map_err(sqlite("flagging a card link"))?;
            Ok(changed > 0)
        })
    }

    fn register_reader(&self, reader: &Reader, at: Timestamp) -> Result<(), StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                "INSERT INTO card_readers (reader_id, institution, public_key, registered_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (reader_id) DO UPDATE SET institution = excluded.institution, public_key = excluded.public_key,
                 registered_at = excluded.registered_at",
                params![reader.reader_id, reader.institution, reader.public_key, at.jst_seconds()],
            )
            .map_err(sqlite("registering a reader"))?;
            Ok(())
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
            let mut statement = c
                .prepare_cached(
                    "SELECT scope, given_at, available_until FROM consents WHERE person_id = ?1 AND institution = ?2 ORDER BY scope",
                )
                .map_err(sqlite("reading consents"))?;
            let rows = statement
                .query_map(params![person_id, institution], |r| {
                    Ok(Consent {
                        scope: r.get(0)?,
                        given_at: Timestamp::from_jst_seconds(r.get(1)?),
                        available_until: Timestamp::from_jst_seconds(r.get(2)?),
                    })
                })
                .map_err(sqlite("reading consents"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite("reading consents"))
        })
    }
}
