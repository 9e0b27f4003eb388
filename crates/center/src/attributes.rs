//! Asking by attributes: the coverage of a patient whose card numbers are not known, from the
//! birth date, sex and name a claim billed as 不詳 carries (MHLW 2023-07: a patient the line
//! could not confirm is billed on their 被保険者資格申立書 under 保険者番号 77777777; the real
//! system's answer to the 2025-02 outage was the same: note four attributes, ask afterwards).
//!
//! A search by attributes could be used to find anyone's insurer, so it is narrow on purpose:
//! - the register is read by birth date and sex only (`Register::born_on`); the name is
//!   compared here, exactly (kana readings across widths and scripts, or the kanji name with
//!   spaces and widths aside), never searched;
//! - an answer names a coverage only when exactly one person has all three and that coverage
//!   covers the date of care; two or more answer 複数該当 (without saying how many), none
//!   answers 該当なし; the date of care is at most [`LOOKBACK_DAYS`] back and not ahead;
//! - each institution has a small daily quota ([`ATTRIBUTE_SEARCHES_PER_DAY`]): a month's 不詳
//!   claims, not a directory;
//! - every search is audited as `verify_attributes` and the patient sees it in their access log.
//!
//! The answer holds what a claim needs (validity, the coverage's numbers and dates, copay), not
//! the address, the insured person's name, the 公費 the insurer reported, the limit category
//! or pending changes. The numbers it gives open the ordinary number path like a card's would;
//! that path is audited in its turn.

use onshi_api::verify::{VerifyAnswer, VerifyAttributesRequest};
use onshi_domain::codes::Sex;
use onshi_domain::{Date, Timestamp};
use onshi_store::Register;
use onshi_store::model::CoverageWithTerms;

use crate::card::comparable;
use crate::errors::{self, CenterError};
use crate::verify::{LagCache, NumberQuery, answer_from_view};
use onshi_domain::kana::reading as kana_comparable;

/// Searches by attributes an institution may make per day (Japan time). A clinic bills a
/// handful of 不詳 claims a month; a large hospital perhaps a hundred.
pub const ATTRIBUTE_SEARCHES_PER_DAY: u32 = 200;

/// How far back a date of care may be: claims are billed within a year (and returned ones
/// billed again a little later); nothing older needs asking.
pub const LOOKBACK_DAYS: i64 = 400;

/// What the search compares, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeQuery {
    /// The kana reading as compared, or `None` when only the name was given.
    pub kana: Option<String>,
    /// The name as compared, used when no kana was given.
    pub name: Option<String>,
    pub birth_date: Date,
    pub sex: Sex,
    pub date_of_care: Date,
}

fn field(name: &'static str) -> impl Fn(onshi_domain::FieldError) -> CenterError {
    move |e| errors::invalid_field(name, &e)
}

/// Checks a request: a birth date, a sex, a date of care within [`LOOKBACK_DAYS`] of `today`,
/// and a name (kana or kanji) that is not blank.
pub fn parse_attributes(request: &VerifyAttributesRequest, today: Date) -> Result<AttributeQuery, CenterError> {
    let kana = request.name_kana.as_deref().map(kana_comparable).filter(|k| !k.is_empty());
    let name = request.name.as_deref().map(comparable).filter(|n| !n.is_empty());
    if kana.is_none() && name.is_none() {
        return Err(errors::invalid_field(
            "name_kana",
            &onshi_domain::FieldError::new("is empty, and so is name; give the カナ氏名 (or the 氏名) the claim carries", ""),
        ));
    }
    for (what, text) in [("name_kana", &request.name_kana), ("name", &request.name)] {
        if text.as_ref().is_some_and(|t| t.chars().count() > 100 || t.chars().any(char::is_control)) {
            return Err(errors::invalid_field(
                what,
                &onshi_domain::FieldError::new("is longer than 100 characters or holds a control character", ""),
            ));
        }
    }
    let date_of_care = Date::parse_yyyymmdd(&request.date_of_care).map_err(field("date_of_care"))?;
    if date_of_care > today || date_of_care < today.add_days(-LOOKBACK_DAYS) {
        return Err(errors::invalid_field(
            "date_of_care",
            &onshi_domain::FieldError::new(
                format!("is not within the last {LOOKBACK_DAYS} days; a search by attributes is for claims of this year"),
                &request.date_of_care,
            ),
        ));
    }
    Ok(AttributeQuery {
        kana,
        name,
        birth_date: Date::parse_yyyymmdd(&request.birth_date).map_err(field("birth_date"))?,
        sex: match Sex::parse(&request.sex).map_err(field("sex"))? {
            // A search needs a sex the register can hold for the patient: 男 or 女.
            Sex::Unset => {
                return Err(errors::invalid_field("sex", &onshi_domain::FieldError::new("must be 1 (男) or 2 (女)", &request.sex)));
            }
            sex => sex,
        },
        date_of_care,
    })
}

/// Whether one of a person's coverages carries the name asked for, in any of its dated terms
/// (a name changed on marriage still matches the claim made under it).
fn carries_name(coverages: &[&CoverageWithTerms], query: &AttributeQuery) -> bool {
    coverages.iter().flat_map(|c| c.terms.iter()).any(|t| match (&query.kana, &query.name) {
        (Some(kana), _) => kana_comparable(&t.details.name_kana) == *kana,
        (None, Some(name)) => comparable(&t.details.name) == *name,
        (None, None) => false,
    })
}

/// The answer for the one person with these attributes (validity 4 for none, 5 for several),
/// with that person for the audit log.
pub fn verify_attributes(
    register: &dyn Register,
    lags: &LagCache,
    query: &AttributeQuery,
    now: Timestamp,
) -> Result<(VerifyAnswer, Option<i64>), CenterError> {
    let view = register.born_on(query.birth_date, query.sex).map_err(crate::verify::store_error)?;
    let mut people: Vec<i64> = view.iter().map(|v| v.coverage.person_id).collect();
    people.sort_unstable();
    people.dedup();
    let matching: Vec<i64> = people
        .into_iter()
        .filter(|person| {
            let theirs: Vec<&CoverageWithTerms> = view.iter().filter(|v| v.coverage.person_id == *person).collect();
            carries_name(&theirs, query)
        })
        .collect();
    let empty = |notice| VerifyAnswer {
        validity: crate::verify::validity(match notice {
            Some(_) => onshi_domain::codes::QualificationValidity::SeveralMatches,
            None => onshi_domain::codes::QualificationValidity::NoSuchCoverage,
        }),
        notice: Some(notice.unwrap_or_else(|| errors::no_such_coverage(None))),
        date_of_care: query.date_of_care.to_string(),
        coverage: None,
        newer_coverage: None,
        pending: Vec::new(),
        as_of: None,
        insurer_lag: None,
        answered_at: now.to_string(),
        replica_as_of: None,
        document: None,
        subsidies: Vec::new(),
        welfare: None,
    };
    let person = match matching.as_slice() {
        [] => return Ok((empty(None), None)),
        [one] => *one,
        _several => return Ok((empty(Some(errors::several_with_these_attributes())), None)),
    };
    let theirs: Vec<CoverageWithTerms> = view.into_iter().filter(|v| v.coverage.person_id == person).collect();
    let on = query.date_of_care;
    // Only the coverage of the date of care: the search is not a way to read someone's history.
    let Some(chosen) = theirs.iter().map(|v| &v.coverage).find(|c| c.acquired_on <= on && c.lost_on.is_none_or(|lost| on < lost)) else {
        return Ok((empty(None), Some(person)));
    };
    let number_query = NumberQuery::for_coverage(chosen, on, false);
    let (mut answer, _) = answer_from_view(&theirs, lags.get(register, &number_query.insurer)?, &number_query, now);
    // What a claim needs, and nothing more (see the module's comment).
    answer.pending.clear();
    answer.newer_coverage = None;
    for coverage in answer.coverage.iter_mut() {
        coverage.address = None;
        coverage.post_code = None;
        coverage.insured_name = None;
        coverage.public_expense.clear();
        coverage.limit = None;
    }
    Ok((answer, Some(person)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kana: Option<&str>, name: Option<&str>) -> VerifyAttributesRequest {
        VerifyAttributesRequest {
            institution_code: None,
            name_kana: kana.map(str::to_string),
            name: name.map(str::to_string),
            birth_date: "19800101".into(),
            sex: "2".into(),
            date_of_care: "20261110".into(),
        }
    }

    #[test]
    fn a_search_needs_a_name_and_compares_kana_across_widths() {
        let today = Date::parse_yyyymmdd("20261204").unwrap();
        let parse_attributes = |r: &VerifyAttributesRequest| super::parse_attributes(r, today);
        assert_eq!(parse_attributes(&request(None, None)).unwrap_err().body.field.as_deref(), Some("name_kana"));
        assert_eq!(parse_attributes(&request(Some("  "), None)).unwrap_err().body.field.as_deref(), Some("name_kana"));
        let half = parse_attributes(&request(Some("ｼｹﾝ ﾊﾅｺ"), None)).unwrap();
        let full = parse_attributes(&request(Some("シケン　ハナコ"), None)).unwrap();
        assert_eq!(half.kana, full.kana);
        let bad_sex = VerifyAttributesRequest { sex: "3".into(), ..request(Some("ｼｹﾝ"), None) };
        assert_eq!(parse_attributes(&bad_sex).unwrap_err().body.field.as_deref(), Some("sex"));
        for (date, ok) in [("20261204", true), ("20251030", true), ("20251029", false), ("20261205", false)] {
            let r = VerifyAttributesRequest { date_of_care: date.into(), ..request(Some("ｼｹﾝ"), None) };
            assert_eq!(parse_attributes(&r).is_ok(), ok, "{date}: within 400 days back, not ahead");
        }
    }
}
