//! Home visits and online care (居宅同意取得型): what the center records when a patient consents
//! with their card to an institution's ongoing home or online care, the 再照会 that later visits
//! make by the consent's key without the card, and the batch list (`OQSmuhvq` / `OQSmuonq`).
//!
//! The consent is inside what the card (or the reader) signed, like every other consent; the key
//! is random, given to the institution once, and answers only that institution, only within the
//! period, and only with coverage (never medical information, which needs the card each time).

use onshi_api::card::{HomeCare, HomeConsent, HomeList, HomeListEntry, HomeListRequest};
use onshi_api::verify::VerifyAnswer;
use onshi_domain::ids::InstitutionCode;
use onshi_domain::{Date, Timestamp};
use onshi_store::Register;
use onshi_store::home::{HomeCareStore, HomeConsentRow};

use crate::card::CardPath;
use crate::errors::{self, CenterError};
use crate::verify::LagCache;

/// The longest ongoing care one consent covers (the patient consents again after it).
pub const HOME_CARE_DAYS_MAX: i64 = 366;

fn store(e: onshi_store::StoreError) -> CenterError {
    errors::register_unavailable(e.to_string())
}

fn wire(row: &HomeConsentRow) -> Result<HomeConsent, CenterError> {
    let kind = match row.kind.as_str() {
        "visit" => onshi_api::card::HomeCareKind::Visit,
        "online" => onshi_api::card::HomeCareKind::Online,
        other => return Err(errors::register_unavailable(format!("a home-care consent of kind {other:?}"))),
    };
    Ok(HomeConsent { key: row.key.clone(), kind, valid_from: row.valid_from.to_string(), valid_to: row.valid_to.to_string() })
}

/// Checks the consent's last day (today up to [`HOME_CARE_DAYS_MAX`] ahead) before anything is
/// answered, so that a refused consent records nothing.
pub fn check(choice: &HomeCare, today: Date) -> Result<Date, CenterError> {
    let until = Date::parse_yyyymmdd(&format!("{:08}", choice.until))
        .map_err(|e| errors::home_care_invalid(format!("consent.home.until: the value {e}")))?;
    if until < today || until > today.add_days(HOME_CARE_DAYS_MAX) {
        return Err(errors::home_care_invalid(format!(
            "consent.home.until {until} is not between today ({today}) and {HOME_CARE_DAYS_MAX} days ahead"
        )));
    }
    Ok(until)
}

/// Records the consent a card check carried, with a new key, from `from` (the check's date of
/// care: the visit it was given at) to `until`.
pub fn record(
    home: &dyn HomeCareStore,
    person: i64,
    institution: &InstitutionCode,
    choice: &HomeCare,
    (from, until): (Date, Date),
    now: Timestamp,
) -> Result<HomeConsent, CenterError> {
    debug_assert!(from <= until, "checked by the caller before anything was recorded");
    let key = onshi_pki::random_hex(16).map_err(|e| errors::register_unavailable(e.to_string()))?;
    let row = HomeConsentRow {
        key,
        person_id: person,
        institution: institution.as_str().to_string(),
        kind: choice.kind.code().to_string(),
        valid_from: from,
        valid_to: until,
        given_at: now,
    };
    home.record_home_consent(&row).map_err(store)?;
    wire(&row)
}

/// 再照会: the person's coverage on `on` under the consent with `key`, for the institution it
/// was given to, within its period. Returns the answer and the person (for the audit log).
#[allow(clippy::too_many_arguments)]
pub fn reverify(
    home: &dyn HomeCareStore,
    card: &CardPath,
    register: &dyn Register,
    lags: &LagCache,
    key: &str,
    institution: &InstitutionCode,
    on: Date,
    now: Timestamp,
) -> Result<(VerifyAnswer, i64), CenterError> {
    let Some(consent) = home.home_consent(key).map_err(store)?.filter(|c| c.institution == institution.as_str()) else {
        return Err(errors::home_consent_unknown());
    };
    if on < consent.valid_from || on > consent.valid_to {
        return Err(errors::home_consent_expired(&consent.valid_from.to_string(), &consent.valid_to.to_string()));
    }
    let answer = card.answer_for_person(register, lags, consent.person_id, institution, on, now)?;
    Ok((answer, consent.person_id))
}

/// The batch list: every consent of one kind this institution was given on the days asked,
/// with the patient's coverage today (or on the consent's last day, if that is earlier).
/// Returns the list and the persons in it.
pub fn list(
    home: &dyn HomeCareStore,
    card: &CardPath,
    register: &dyn Register,
    lags: &LagCache,
    request: &HomeListRequest,
    institution: &InstitutionCode,
    now: Timestamp,
) -> Result<(HomeList, Vec<i64>), CenterError> {
    let day = |field: &str, text: &str| Date::parse_yyyymmdd(text).map_err(|e| errors::invalid_field(field, &e));
    let (from, to) = (day("from", &request.from)?, day("to", &request.to)?);
    if to < from || (to.to_days() - from.to_days()) > HOME_CARE_DAYS_MAX {
        return Err(errors::invalid_field(
            "to",
            &onshi_domain::FieldError::new(format!("must be from `from` to {HOME_CARE_DAYS_MAX} days after it"), &request.to),
        ));
    }
    let mut entries = Vec::new();
    let mut persons = Vec::new();
    for row in home.home_consents_given(institution.as_str(), request.kind.code(), from, to).map_err(store)? {
        let on = now.date().min(row.valid_to);
        let answer = card.answer_for_person(register, lags, row.person_id, institution, on, now)?;
        persons.push(row.person_id);
        entries.push(HomeListEntry { consent: wire(&row)?, answer });
    }
    Ok((HomeList { entries }, persons))
}
