//! Medical information at the center: importing dispensed drugs and 特定健診 results, and
//! showing them to an institution only under a live consent for that scope, with how old the
//! newest record is.

use std::io::BufRead;

use onshi_api::card::ConsentState;
use onshi_api::events::{ImportReport, REJECTED_LISTED_MAX, RejectedLine};
use onshi_api::medical::{CheckupItem, Drug, MedicalAnswer, MedicalQuery, MedicalRecord};
use onshi_domain::ids::InstitutionCode;
use onshi_domain::{Date, Timestamp};
use onshi_store::medical::{CheckupRow, DrugRow, MedicalRow, MedicalStore};
use onshi_store::{Register, StoreError};

use crate::card::CardPath;
use crate::errors::{self, CenterError};
use crate::verify::CardNumbers;

/// Rows written per transaction while importing.
const BATCH_ROWS: usize = 20_000;

fn date(text: &str, field: &str) -> Result<Date, (String, String)> {
    Date::parse_yyyymmdd(text).map_err(|e| (field.to_string(), e.reason))
}

/// Checks one record and turns it into a row (without the person): the import's whole check of
/// a line before the store is asked (public for the fuzz target).
pub fn row_of(record: &MedicalRecord) -> Result<(&str, MedicalRow), (String, String)> {
    match record {
        MedicalRecord::Drug { person_ref, drug } => {
            let dispensed_on = date(&drug.dispensed_on, "dispensed_on")?;
            let arrived_on = date(&drug.arrived_on, "arrived_on")?;
            if arrived_on < dispensed_on {
                return Err(("arrived_on".into(), "is before dispensed_on".into()));
            }
            if drug.drug_code.len() != 9 || !drug.drug_code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(("drug_code".into(), "must be the 9-digit レセ電 drug code".into()));
            }
            if !drug.quantity.is_finite() || drug.quantity <= 0.0 {
                return Err(("quantity".into(), "must be a positive number".into()));
            }
            InstitutionCode::parse(&drug.dispensed_by).map_err(|e| ("dispensed_by".to_string(), e.reason))?;
            if drug.source != "claim" && drug.source != "pharmacy" {
                return Err(("source".into(), "must be claim or pharmacy".into()));
            }
            Ok((
                person_ref,
                MedicalRow::Drug(DrugRow {
                    dispensed_on,
                    drug_code: drug.drug_code.clone(),
                    drug_name: drug.drug_name.clone(),
                    quantity: drug.quantity,
                    unit: drug.unit.clone(),
                    days: drug.days,
                    dispensed_by: drug.dispensed_by.clone(),
                    source: drug.source.clone(),
                    arrived_on,
                }),
            ))
        }
        MedicalRecord::Checkup { person_ref, item } => {
            let examined_on = date(&item.examined_on, "examined_on")?;
            let arrived_on = date(&item.arrived_on, "arrived_on")?;
            if arrived_on < examined_on {
                return Err(("arrived_on".into(), "is before examined_on".into()));
            }
            if item.item_code.is_empty() || item.item_code.len() > 17 {
                return Err(("item_code".into(), "must be a JLAC10 code (up to 17 characters)".into()));
            }
            Ok((
                person_ref,
                MedicalRow::Checkup(CheckupRow {
                    examined_on,
                    item_code: item.item_code.clone(),
                    item_name: item.item_name.clone(),
                    value: item.value.clone(),
                    unit: item.unit.clone(),
                    arrived_on,
                }),
            ))
        }
    }
}

/// Imports medical-information JSON Lines. A line naming a person the register does not know
/// is refused (import the insurer events first); the rest are applied.
pub fn import_medical(store: &dyn MedicalStore, input: impl BufRead, mut progress: impl FnMut(u64)) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    let mut pending: Vec<(i64, MedicalRow)> = Vec::with_capacity(BATCH_ROWS);
    let refuse = |report: &mut ImportReport, line: u64, field: String, reason: String| {
        report.rejected_total += 1;
        if report.rejected.len() < REJECTED_LISTED_MAX {
            report.rejected.push(RejectedLine { line, event_id: None, field, reason });
        }
    };
    let flush = |store: &dyn MedicalStore, pending: &mut Vec<(i64, MedicalRow)>, report: &mut ImportReport| -> Result<(), StoreError> {
        let added = store.add_medical(pending)?;
        report.applied += added;
        report.already_applied += pending.len() as u64 - added;
        pending.clear();
        Ok(())
    };
    let mut input = input;
    let mut buffer = Vec::with_capacity(1024);
    let mut number = 0u64;
    loop {
        // Bounded: a file of one endless line cannot exhaust memory.
        match crate::import::read_line_bounded(&mut input, &mut buffer, crate::import::LINE_BYTES_MAX) {
            Ok(0) => break,
            Ok(_) => number += 1,
            Err(e) => {
                // What was read stays imported; the rest of the file is not read.
                refuse(&mut report, number + 1, "input".into(), format!("cannot be read any further: {e}"));
                break;
            }
        }
        if buffer.len() > crate::import::LINE_BYTES_MAX {
            report.lines += 1;
            refuse(&mut report, number, "line".into(), format!("is longer than {} bytes", crate::import::LINE_BYTES_MAX));
            continue;
        }
        let line = match std::str::from_utf8(&buffer) {
            Ok(line) => line,
            Err(e) => {
                report.lines += 1;
                refuse(&mut report, number, "line".into(), format!("not UTF-8 (byte {}); save the file as UTF-8", e.valid_up_to()));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let record: MedicalRecord = match serde_json::from_str(line.trim()) {
            Ok(record) => record,
            Err(e) => {
                // The position and kind of the problem, never the values (they are health data).
                refuse(&mut report, number, "line".into(), format!("not a medical record ({:?} at column {})", e.classify(), e.column()));
                continue;
            }
        };
        let (person_ref, row) = match row_of(&record) {
            Ok(checked) => checked,
            Err((field, reason)) => {
                refuse(&mut report, number, field, reason);
                continue;
            }
        };
        match store.person_id(person_ref)? {
            Some(person) => pending.push((person, row)),
            None => {
                refuse(&mut report, number, "person_ref".into(), "no such person in the register; import the insurer events first".into())
            }
        }
        if pending.len() >= BATCH_ROWS {
            flush(store, &mut pending, &mut report)?;
            progress(number);
        }
    }
    flush(store, &mut pending, &mut report)?;
    Ok(report)
}

/// The one person whose card carries these numbers.
fn person_of(register: &dyn Register, query: &MedicalQuery) -> Result<i64, CenterError> {
    let numbers = CardNumbers::parse(&query.insurer_number, query.symbol.as_deref(), &query.number, Some(&query.branch))?;
    let mut people: Vec<i64> = numbers.coverages(register)?.iter().map(|c| c.person_id).collect();
    people.sort_unstable();
    people.dedup();
    match people.as_slice() {
        [one] => Ok(*one),
        [] => Err(errors::card::no_such_coverage()),
        _ => Err(errors::medical::branch_needed()),
    }
}

/// Records as shown, with the arrival of the newest and its age in days.
fn answer<R, T>(
    rows: Vec<R>,
    arrived: impl Fn(&R) -> Date,
    shown: impl Fn(R) -> T,
    consent: ConsentState,
    now: Timestamp,
) -> MedicalAnswer<T> {
    let newest = rows.iter().map(&arrived).max();
    MedicalAnswer {
        records: rows.into_iter().map(shown).collect(),
        newest_arrived_on: newest.map(Date::yyyymmdd),
        newest_age_days: newest.map(|d| now.date().to_days() - d.to_days()),
        consent,
        answered_at: now.to_string(),
    }
}

fn drug_of(r: DrugRow) -> Drug {
    Drug {
        drug_code: r.drug_code,
        drug_name: r.drug_name,
        quantity: r.quantity,
        unit: r.unit,
        days: r.days,
        dispensed_on: r.dispensed_on.yyyymmdd(),
        dispensed_by: r.dispensed_by,
        source: r.source,
        arrived_on: r.arrived_on.yyyymmdd(),
    }
}

fn checkup_of(r: CheckupRow) -> CheckupItem {
    CheckupItem {
        item_code: r.item_code,
        item_name: r.item_name,
        value: r.value,
        unit: r.unit,
        examined_on: r.examined_on.yyyymmdd(),
        arrived_on: r.arrived_on.yyyymmdd(),
    }
}

/// Which information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Drug,
    Checkup,
}

impl Scope {
    pub fn action(self) -> &'static str {
        match self {
            Scope::Drug => "view_drug",
            Scope::Checkup => "view_checkup",
        }
    }
}

/// Either answer, for the handlers.
pub enum Shown {
    Drugs(MedicalAnswer<Drug>),
    Checkups(MedicalAnswer<CheckupItem>),
}

/// Shows a person's information to `institution` if it holds a live consent for the scope.
/// Returns the person id for the audit log alongside (also on refusal, when known).
pub fn show(
    register: &dyn Register,
    store: &dyn MedicalStore,
    card: &CardPath,
    scope: Scope,
    query: &MedicalQuery,
    institution: &InstitutionCode,
    now: Timestamp,
) -> (Option<i64>, Result<Shown, CenterError>) {
    let person = match person_of(register, query) {
        Ok(person) => person,
        Err(e) => return (None, Err(e)),
    };
    let result = (|| {
        let consents = card.consents(person, institution, now)?;
        let consent = match scope {
            Scope::Drug => consents.pharmacists_info,
            Scope::Checkup => consents.specific_health_checkups_info,
        };
        match consent.flag.as_str() {
            "1" => {}
            "2" => return Err(errors::medical::consent_expired(consent.available_time.as_deref().unwrap_or("?"))),
            _ => return Err(errors::medical::consent_not_given()),
        }
        let store_error = |e: StoreError| errors::register_unavailable(e.to_string());
        Ok(match scope {
            Scope::Drug => {
                let rows = store.drugs_of(person).map_err(store_error)?;
                Shown::Drugs(answer(rows, |r| r.arrived_on, drug_of, consent, now))
            }
            Scope::Checkup => {
                let rows = store.checkups_of(person).map_err(store_error)?;
                Shown::Checkups(answer(rows, |r| r.arrived_on, checkup_of, consent, now))
            }
        })
    })();
    (Some(person), result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_store::sqlite::{SqliteOptions, SqliteRegister};

    /// An endless line is refused as too long without being held whole; the lines after it are
    /// still read (here refused for a person nobody registered), and invalid UTF-8 is named.
    #[test]
    fn a_line_far_over_the_limit_or_not_utf8_is_refused_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("r.sqlite"), SqliteOptions::SERVER).unwrap();
        let mut input = vec![b'{'; 3_000_000];
        input.push(b'\n');
        input.extend_from_slice(b"\xff\xfe\n");
        input.extend_from_slice(br#"{"kind":"drug","person_ref":"nobody","drug_code":"620004628","drug_name":"x","quantity":1.0,"unit":"x","days":28,"dispensed_on":"20261101","dispensed_by":"1311234569","source":"pharmacy","arrived_on":"20261101"}"#);
        let report = import_medical(&register, input.as_slice(), |_| {}).unwrap();
        let refused: Vec<(u64, &str, &str)> =
            report.rejected.iter().map(|r| (r.line, r.field.as_str(), r.reason.split(' ').next().unwrap_or(""))).collect();
        assert_eq!(refused, vec![(1, "line", "is"), (2, "line", "not"), (3, "person_ref", "no")], "{report:?}");
        assert!(report.rejected[0].reason.contains("longer than 65536 bytes"));
        assert_eq!((report.lines, report.applied), (3, 0));
    }
}
