//! [`HomeCareStore`] on PostgreSQL.

use super::{PgRegister, pg};
use crate::StoreError;
use crate::home::{COLUMNS, HomeCareStore, HomeConsentRow, home_row};
use crate::rows::day;
use onshi_domain::Date;

fn rows(found: &[postgres::Row]) -> Result<Vec<HomeConsentRow>, StoreError> {
    found.iter().map(|r| home_row((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))).collect()
}

impl HomeCareStore for PgRegister {
    fn record_home_consent(&self, c: &HomeConsentRow) -> Result<(), StoreError> {
        self.with_writer(|tx| {
            tx.execute(
                &format!("INSERT INTO home_consents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[&c.key, &c.person_id, &c.institution, &c.kind, &day(c.valid_from), &day(c.valid_to), &c.given_at.jst_seconds()],
            )
            .map_err(pg("recording a home-care consent"))?;
            Ok(())
        })
    }

    fn end_home_consents(&self, person_id: i64, institution: &str, on: Date) -> Result<u64, StoreError> {
        self.with_writer(|tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM home_consents WHERE person_id = $1 AND institution = $2 AND valid_from >= $3",
                    &[&person_id, &institution, &day(on)],
                )
                .map_err(pg("withdrawing home-care consents"))?;
            let ended = tx
                .execute(
                    "UPDATE home_consents SET valid_to = $3 WHERE person_id = $1 AND institution = $2 AND valid_to >= $4",
                    &[&person_id, &institution, &day(on.add_days(-1)), &day(on)],
                )
                .map_err(pg("withdrawing home-care consents"))?;
            Ok(deleted + ended)
        })
    }

    fn home_consents_of_person(&self, person_id: i64) -> Result<Vec<HomeConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM home_consents WHERE person_id = $1 ORDER BY given_at DESC, key");
        self.read(|c| rows(&c.query(&sql, &[&person_id]).map_err(pg("reading home-care consents"))?))
    }

    fn home_consent(&self, key: &str) -> Result<Option<HomeConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM home_consents WHERE key = $1");
        self.read(|c| Ok(rows(&c.query(&sql, &[&key]).map_err(pg("reading a home-care consent"))?)?.into_iter().next()))
    }

    fn home_consents_given(&self, institution: &str, kind: &str, from: Date, to: Date) -> Result<Vec<HomeConsentRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM home_consents WHERE institution = $1 AND kind = $2 AND given_at >= $3 AND given_at < $4 ORDER BY given_at, key"
        );
        let (start, end) =
            (onshi_domain::Timestamp::at_start_of(from).jst_seconds(), onshi_domain::Timestamp::at_start_of(to.add_days(1)).jst_seconds());
        self.read(|c| rows(&c.query(&sql, &[&institution, &kind, &start, &end]).map_err(pg("reading home-care consents"))?))
    }
}
