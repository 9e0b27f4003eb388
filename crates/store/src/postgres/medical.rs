//! [`MedicalStore`] on PostgreSQL.

use super::{PgRegister, pg};
use crate::StoreError;
use crate::medical::{CheckupRow, DrugRow, MedicalRow, MedicalStore};
use crate::rows::{day, to_date};

impl MedicalStore for PgRegister {
    fn person_id(&self, person_ref: &str) -> Result<Option<i64>, StoreError> {
        self.person_by_ref(person_ref)
    }

    fn add_medical(&self, rows: &[(i64, MedicalRow)]) -> Result<u64, StoreError> {
        self.with_writer(|tx| {
            let mut added = 0;
            for (person, row) in rows {
                added += match row {
                    MedicalRow::Drug(d) => tx
                        .execute(
                            "INSERT INTO dispensed_drugs (person_id, dispensed_on, drug_code, drug_name, quantity, unit, days,
                             dispensed_by, source, arrived_on) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                            &[
                                person,
                                &day(d.dispensed_on),
                                &d.drug_code,
                                &d.drug_name,
                                &d.quantity,
                                &d.unit,
                                &i64::from(d.days),
                                &d.dispensed_by,
                                &d.source,
                                &day(d.arrived_on),
                            ],
                        )
                        .map_err(pg("adding a dispensed drug"))?,
                    MedicalRow::Checkup(c) => tx
                        .execute(
                            "INSERT INTO checkup_results (person_id, examined_on, item_code, item_name, value, unit, arrived_on)
                             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                            &[person, &day(c.examined_on), &c.item_code, &c.item_name, &c.value, &c.unit, &day(c.arrived_on)],
                        )
                        .map_err(pg("adding a checkup result"))?,
                };
            }
            Ok(added)
        })
    }

    fn drugs_of(&self, person_id: i64) -> Result<Vec<DrugRow>, StoreError> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT dispensed_on, drug_code, drug_name, quantity, unit, days, dispensed_by, source, arrived_on
                     FROM dispensed_drugs WHERE person_id = $1 ORDER BY dispensed_on DESC, drug_code",
                    &[&person_id],
                )
                .map_err(pg("reading dispensed drugs"))?;
            rows.iter()
                .map(|r| {
                    let days: i64 = r.get(5);
                    Ok(DrugRow {
                        dispensed_on: to_date(r.get(0))?,
                        drug_code: r.get(1),
                        drug_name: r.get(2),
                        quantity: r.get(3),
                        unit: r.get(4),
                        days: u32::try_from(days).map_err(|_| StoreError::Corrupt(format!("dispensed days {days}")))?,
                        dispensed_by: r.get(6),
                        source: r.get(7),
                        arrived_on: to_date(r.get(8))?,
                    })
                })
                .collect()
        })
    }

    fn checkups_of(&self, person_id: i64) -> Result<Vec<CheckupRow>, StoreError> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT examined_on, item_code, item_name, value, unit, arrived_on
                     FROM checkup_results WHERE person_id = $1 ORDER BY examined_on DESC, item_code",
                    &[&person_id],
                )
                .map_err(pg("reading checkup results"))?;
            rows.iter()
                .map(|r| {
                    Ok(CheckupRow {
                        examined_on: to_date(r.get(0))?,
                        item_code: r.get(1),
                        item_name: r.get(2),
                        value: r.get(3),
                        unit: r.get(4),
                        arrived_on: to_date(r.get(5))?,
                    })
                })
                .collect()
        })
    }
}
