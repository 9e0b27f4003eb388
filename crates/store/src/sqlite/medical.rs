//! [`MedicalStore`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{SqliteRegister, day, sqlite, to_date as date};
use crate::StoreError;
use crate::medical::{CheckupRow, DrugRow, MedicalRow, MedicalStore};

impl MedicalStore for SqliteRegister {
    fn person_id(&self, person_ref: &str) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT person_id FROM persons WHERE person_ref = ?1")
                .and_then(|mut s| s.query_row([person_ref], |r| r.get(0)).optional())
                .map_err(sqlite("finding a person"))
        })
    }

    fn add_medical(&self, rows: &[(i64, MedicalRow)]) -> Result<u64, StoreError> {
        self.with_writer(|tx| {
            let mut added = 0;
            for (person, row) in rows {
                added += match row {
                    MedicalRow::Drug(d) => tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO dispensed_drugs (person_id, dispensed_on, drug_code, drug_name, quantity, unit, days,
                             dispensed_by, source, arrived_on) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                person,
                                day(d.dispensed_on),
                                d.drug_code,
                                d.drug_name,
                                d.quantity,
                                d.unit,
                                d.days,
                                d.dispensed_by,
                                d.source,
                                day(d.arrived_on)
                            ])
                        })
                        .map_err(sqlite("adding a dispensed drug"))?,
                    MedicalRow::Checkup(c) => tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO checkup_results (person_id, examined_on, item_code, item_name, value, unit, arrived_on)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![person, day(c.examined_on), c.item_code, c.item_name, c.value, c.unit, day(c.arrived_on)])
                        })
                        .map_err(sqlite("adding a checkup result"))?,
                } as u64;
            }
            Ok(added)
        })
    }

    fn drugs_of(&self, person_id: i64) -> Result<Vec<DrugRow>, StoreError> {
        self.read(|c| {
            let mut statement = c
                .prepare_cached(
                    "SELECT dispensed_on, drug_code, drug_name, quantity, unit, days, dispensed_by, source, arrived_on
                     FROM dispensed_drugs WHERE person_id = ?1 ORDER BY dispensed_on DESC, drug_code",
                )
                .map_err(sqlite("reading dispensed drugs"))?;
            let rows = statement
                .query_map([person_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get::<_, i64>(8)?,
                    ))
                })
                .map_err(sqlite("reading dispensed drugs"))?;
            let mut out = Vec::new();
            for row in rows {
                let (dispensed_on, drug_code, drug_name, quantity, unit, days, dispensed_by, source, arrived_on) =
                    row.map_err(sqlite("reading dispensed drugs"))?;
                out.push(DrugRow {
                    dispensed_on: date(dispensed_on)?,
                    drug_code,
                    drug_name,
                    quantity,
                    unit,
                    days,
                    dispensed_by,
                    source,
                    arrived_on: date(arrived_on)?,
                });
            }
            Ok(out)
        })
    }

    fn checkups_of(&self, person_id: i64) -> Result<Vec<CheckupRow>, StoreError> {
        self.read(|c| {
            let mut statement = c
                .prepare_cached(
                    "SELECT examined_on, item_code, item_name, value, unit, arrived_on
                     FROM checkup_results WHERE person_id = ?1 ORDER BY examined_on DESC, item_code",
                )
                .map_err(sqlite("reading checkup results"))?;
            let rows = statement
                .query_map([person_id], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, i64>(5)?)))
                .map_err(sqlite("reading checkup results"))?;
            let mut out = Vec::new();
            for row in rows {
                let (examined_on, item_code, item_name, value, unit, arrived_on) = row.map_err(sqlite("reading checkup results"))?;
                out.push(CheckupRow { examined_on: date(examined_on)?, item_code, item_name, value, unit, arrived_on: date(arrived_on)? });
            }
            Ok(out)
        })
    }
}
