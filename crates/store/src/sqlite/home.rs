//! [`HomeCareStore`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{SqliteRegister, sqlite};
use crate::StoreError;
use crate::home::{COLUMNS, HomeCareStore, HomeConsentRow, RawHome, home_row};
use crate::rows::day;
use onshi_domain::Date;

impl HomeCareStore for SqliteRegister {
    fn record_home_consent(&self, c: &HomeConsentRow) -> Result<(), StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                &format!("INSERT INTO home_consents ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![c.key, c.person_id, c.institution, c.kind, day(c.valid_from), day(c.valid_to), c.given_at.jst_seconds()],
            )
            .map_err(sqlite("recording a home-care consent"))?;
            Ok(())
        })
    }

    fn end_home_consents(&self, person_id: i64, institution: &str, on: Date) -> Result<u64, StoreError> {
        // A consent that had not begun by `on` ends before it begins: its period becomes empty
        // by ending it on its first day minus one is impossible (valid_to >= valid_from), so it
        // is deleted instead.
        self.with_writer(|tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM home_consents WHERE person_id = ?1 AND institution = ?2 AND valid_from >= ?3",
                    params![person_id, institution, day(on)],
                )
                .map_err(sqlite("withdrawing home-care consents"))?;
            let ended = tx
                .execute(
                    "UPDATE home_consents SET valid_to = ?3 WHERE person_id = ?1 AND institution = ?2 AND valid_to >= ?4",
                    params![person_id, institution, day(on.add_days(-1)), day(on)],
                )
                .map_err(sqlite("withdrawing home-care consents"))?;
            Ok((deleted + ended) as u64)
        })
    }

    fn home_consents_of_person(&self, person_id: i64) -> Result<Vec<HomeConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM home_consents WHERE person_id = ?1 ORDER BY given_at DESC, key");
        let raws: Vec<RawHome> = self.read(|c| {
            let mut statement = c.prepare_cached(&sql).map_err(sqlite("reading home-care consents"))?;
            statement
                .query_map([person_id], |r| RawHome::try_from(r))
                .map_err(sqlite("reading home-care consents"))?
                .collect::<Result<_, _>>()
                .map_err(sqlite("reading home-care consents"))
        })?;
        raws.into_iter().map(home_row).collect()
    }

    fn home_consent(&self, key: &str) -> Result<Option<HomeConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM home_consents WHERE key = ?1");
        let found = self.read(|c| {
            c.prepare_cached(&sql)
                .and_then(|mut s| s.query_row([key], |r| RawHome::try_from(r)).optional())
                .map_err(sqlite("reading a home-care consent"))
        })?;
        found.map(home_row).transpose()
    }

    fn home_consents_given(&self, institution: &str, kind: &str, from: Date, to: Date) -> Result<Vec<HomeConsentRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM home_consents WHERE institution = ?1 AND kind = ?2 AND given_at >= ?3 AND given_at < ?4 ORDER BY given_at, key"
        );
        let (start, end) =
            (onshi_domain::Timestamp::at_start_of(from).jst_seconds(), onshi_domain::Timestamp::at_start_of(to.add_days(1)).jst_seconds());
        let raws: Vec<RawHome> = self.read(|c| {
            let mut statement = c.prepare_cached(&sql).map_err(sqlite("reading home-care consents"))?;
            statement
                .query_map(params![institution, kind, start, end], |r| RawHome::try_from(r))
                .map_err(sqlite("reading home-care consents"))?
                .collect::<Result<_, _>>()
                .map_err(sqlite("reading home-care consents"))
        })?;
        raws.into_iter().map(home_row).collect()
    }
}
