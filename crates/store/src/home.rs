//! Home visits and online care (居宅同意取得型): the consent a patient gives an institution with
//! their card at home (or from their own device) for an ongoing period of care, behind
//! [`HomeCareStore`]. Later visits in that period are re-confirmed (再照会) by the consent's key,
//! without the card.

use onshi_domain::{Date, Timestamp};

use crate::StoreError;

/// One home-care consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeConsentRow {
    /// Random, given to the institution once; what a 再照会 presents.
    pub key: String,
    pub person_id: i64,
    pub institution: String,
    /// `visit` (訪問診療等) or `online` (オンライン診療等).
    pub kind: String,
    pub valid_from: Date,
    pub valid_to: Date,
    pub given_at: Timestamp,
}

pub trait HomeCareStore: Send + Sync {
    fn record_home_consent(&self, consent: &HomeConsentRow) -> Result<(), StoreError>;

    /// Every home-care consent of a person, newest first (the patient's own record).
    fn home_consents_of_person(&self, person_id: i64) -> Result<Vec<HomeConsentRow>, StoreError>;

    /// The consent with this key, if any.
    fn home_consent(&self, key: &str) -> Result<Option<HomeConsentRow>, StoreError>;

    /// The holder withdraws: every consent of `person` to `institution` still running on `on`
    /// ends the day before (`on` and later are no longer covered). Returns how many ended.
    fn end_home_consents(&self, person_id: i64, institution: &str, on: Date) -> Result<u64, StoreError>;

    /// An institution's consents of one kind given between `from` and `to` (given dates,
    /// inclusive), oldest first: the batch kinds' window.
    fn home_consents_given(&self, institution: &str, kind: &str, from: Date, to: Date) -> Result<Vec<HomeConsentRow>, StoreError>;
}

/// The columns every read selects, in this order (both engines).
pub(crate) const COLUMNS: &str = "key, person_id, institution, kind, valid_from, valid_to, given_at";

pub(crate) type RawHome = (String, i64, String, String, i64, i64, i64);

pub(crate) fn home_row(raw: RawHome) -> Result<HomeConsentRow, StoreError> {
    let (key, person_id, institution, kind, from, to, given) = raw;
    Ok(HomeConsentRow {
        key,
        person_id,
        institution,
        kind,
        valid_from: crate::rows::to_date(from)?,
        valid_to: crate::rows::to_date(to)?,
        given_at: Timestamp::from_jst_seconds(given),
    })
}
