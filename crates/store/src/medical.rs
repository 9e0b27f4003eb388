//! Medical information in the register: dispensed drugs and 特定健診 results per person, behind
//! [`MedicalStore`]. Shown only under a live consent, which the center checks.

use onshi_domain::Date;

use crate::StoreError;

#[derive(Clone, Debug, PartialEq)]
pub struct DrugRow {
    pub dispensed_on: Date,
    pub drug_code: String,
    pub drug_name: String,
    pub quantity: f64,
    pub unit: String,
    pub days: u32,
    pub dispensed_by: String,
    /// `claim` or `pharmacy`.
    pub source: String,
    pub arrived_on: Date,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckupRow {
    pub examined_on: Date,
    pub item_code: String,
    pub item_name: String,
    pub value: String,
    pub unit: String,
    pub arrived_on: Date,
}

/// A row to add for a person.
#[derive(Clone, Debug, PartialEq)]
pub enum MedicalRow {
    Drug(DrugRow),
    Checkup(CheckupRow),
}

pub trait MedicalStore: Send + Sync {
    /// The register's id of a person reference, if the register knows the person.
    fn person_id(&self, person_ref: &str) -> Result<Option<i64>, StoreError>;

    /// Adds rows in one transaction; a row already present is skipped (idempotent). Returns
    /// how many were new.
    fn add_medical(&self, rows: &[(i64, MedicalRow)]) -> Result<u64, StoreError>;

    /// A person's dispensed drugs, newest first.
    fn drugs_of(&self, person_id: i64) -> Result<Vec<DrugRow>, StoreError>;

    /// A person's checkup results, newest first.
    fn checkups_of(&self, person_id: i64) -> Result<Vec<CheckupRow>, StoreError>;
}
