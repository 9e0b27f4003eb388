//! Medical information (薬剤情報 and 特定健診): the records insurers and the claims system feed
//! the center (JSON Lines), and what an institution with a live consent is shown.

use serde::{Deserialize, Serialize};

use crate::card::ConsentState;

/// One line of a medical-information file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MedicalRecord {
    /// A dispensed drug (調剤), from a claim or a pharmacy.
    Drug {
        person_ref: String,
        #[serde(flatten)]
        drug: Drug,
    },
    /// One result item of a 特定健診.
    Checkup {
        person_ref: String,
        #[serde(flatten)]
        item: CheckupItem,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drug {
    /// 医薬品コード (レセ電, 9 digits).
    pub drug_code: String,
    pub drug_name: String,
    pub quantity: f64,
    pub unit: String,
    /// 調剤日数 (days supplied).
    pub days: u32,
    /// `YYYYMMDD`.
    pub dispensed_on: String,
    /// 医療機関コード of the pharmacy or institution that dispensed it.
    pub dispensed_by: String,
    /// `claim` (from the monthly claims, about six weeks late) or `pharmacy` (sent the same day).
    pub source: String,
    /// `YYYYMMDD`: when the record reached the center.
    pub arrived_on: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckupItem {
    /// JLAC10 item code.
    pub item_code: String,
    pub item_name: String,
    pub value: String,
    pub unit: String,
    /// `YYYYMMDD`: the examination day.
    pub examined_on: String,
    /// `YYYYMMDD`: when the result reached the center.
    pub arrived_on: String,
}

/// Whose information: the card numbers, as in the YZK/TKK request header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicalQuery {
    pub insurer_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub number: String,
    pub branch: String,
}

/// What the institution is shown, with how fresh it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MedicalAnswer<T> {
    pub records: Vec<T>,
    /// `YYYYMMDD` of the newest record's arrival, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_arrived_on: Option<String>,
    /// Days between the newest record's arrival and today: how stale the view may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_age_days: Option<i64>,
    /// The consent this view relies on.
    pub consent: ConsentState,
    /// `YYYYMMDDHHmmss`.
    pub answered_at: String,
}
