//! Rows as every engine stores them, and their decoding into the register's model: dates as
//! `YYYYMMDD` integers, times as seconds, codes as their text, the certificate lists as compact
//! JSON. One decoding for SQLite and PostgreSQL, so that a value the one accepts the other
//! reads back alike; a damaged value becomes [`StoreError::Corrupt`], never a panic.

use serde::{Deserialize, Serialize};

use onshi_domain::codes::{CardClassification, LimitCertificateClassification, ReasonOfLoss, Relationship, Sex, SpecificDisease};
use onshi_domain::copay::IncomeClass;
use onshi_domain::ids::{CardBranch, CardNumber, CardSymbol, InsurerNumber, PublicPayerNumber, RecipientNumber};
use onshi_domain::limit::LimitCategory;
use onshi_domain::{Date, Timestamp};

use crate::StoreError;
use crate::model::*;

pub(crate) fn day(date: Date) -> i64 {
    i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day())
}

pub(crate) fn opt_day(date: Option<Date>) -> Option<i64> {
    date.map(day)
}

pub(crate) fn to_date(value: i64) -> Result<Date, StoreError> {
    let (year, month, day) = (value / 10_000, value / 100 % 100, value % 100);
    u16::try_from(year)
        .ok()
        .and_then(|year| Date::new(year, month as u8, day as u8))
        .ok_or_else(|| StoreError::Corrupt(format!("date {value}")))
}

pub(crate) fn to_opt_date(value: Option<i64>) -> Result<Option<Date>, StoreError> {
    value.map(to_date).transpose()
}

pub(crate) fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

/// The lists are stored as compact JSON in one column each: they are read whole, never queried.
#[derive(Serialize, Deserialize)]
struct StoredDisease {
    c: String,
    f: i64,
    #[serde(default)]
    t: Option<i64>,
    y: u32,
}

#[derive(Serialize, Deserialize)]
struct StoredPublicExpense {
    p: String,
    r: String,
    f: i64,
    #[serde(default)]
    t: Option<i64>,
}

pub(crate) fn diseases_json(list: &[SpecificDiseaseCertificate]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    let stored: Vec<StoredDisease> = list
        .iter()
        .map(|d| StoredDisease { c: d.disease.code().into(), f: day(d.valid_from), t: opt_day(d.valid_to), y: d.self_pay_yen })
        .collect();
    Some(serde_json::to_string(&stored).expect("plain data serialises"))
}

pub(crate) fn public_expense_json(list: &[PublicExpenseCertificate]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    let stored: Vec<StoredPublicExpense> = list
        .iter()
        .map(|p| StoredPublicExpense {
            p: p.payer.as_str().into(),
            r: p.recipient.as_str().into(),
            f: day(p.valid_from),
            t: opt_day(p.valid_to),
        })
        .collect();
    Some(serde_json::to_string(&stored).expect("plain data serialises"))
}

pub(crate) fn parse_diseases(json: Option<String>) -> Result<Vec<SpecificDiseaseCertificate>, StoreError> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let stored: Vec<StoredDisease> = serde_json::from_str(&json).map_err(corrupt("specific_diseases"))?;
    stored
        .into_iter()
        .map(|d| {
            Ok(SpecificDiseaseCertificate {
                disease: SpecificDisease::parse(&d.c).map_err(corrupt("disease"))?,
                valid_from: to_date(d.f)?,
                valid_to: to_opt_date(d.t)?,
                self_pay_yen: d.y,
            })
        })
        .collect()
}

pub(crate) fn parse_public_expense(json: Option<String>) -> Result<Vec<PublicExpenseCertificate>, StoreError> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let stored: Vec<StoredPublicExpense> = serde_json::from_str(&json).map_err(corrupt("public_expense"))?;
    stored
        .into_iter()
        .map(|p| {
            Ok(PublicExpenseCertificate {
                payer: PublicPayerNumber::parse(&p.p).map_err(corrupt("payer"))?,
                recipient: RecipientNumber::parse(&p.r).map_err(corrupt("recipient"))?,
                valid_from: to_date(p.f)?,
                valid_to: to_opt_date(p.t)?,
            })
        })
        .collect()
}

pub(crate) const COVERAGE_COLUMNS: &str = "coverage_id, person_id, insurer_number, card_symbol, card_number, card_branch, \
     birth_date, sex, relationship, card_classification, acquired_on, lost_on, loss_reason, updated_at";

/// Raw column values of a coverage row; converted outside rusqlite's row closure so that a
/// damaged value becomes a [`StoreError::Corrupt`] rather than a panic.
pub(crate) struct RawCoverage(
    pub i64,
    pub i64,
    pub String,
    pub String,
    pub String,
    pub i64,
    pub i64,
    pub String,
    pub String,
    pub String,
    pub i64,
    pub Option<i64>,
    pub Option<String>,
    pub i64,
);

pub(crate) fn coverage_record(raw: RawCoverage) -> Result<CoverageRecord, StoreError> {
    let RawCoverage(
        coverage_id,
        person_id,
        insurer,
        symbol,
        number,
        branch,
        birth,
        sex,
        relationship,
        class,
        acquired,
        lost,
        reason,
        updated,
    ) = raw;
    Ok(CoverageRecord {
        coverage_id,
        person_id,
        insurer: InsurerNumber::parse(&insurer).map_err(corrupt("insurer_number"))?,
        symbol: CardSymbol::parse(&symbol).map_err(corrupt("card_symbol"))?,
        number: CardNumber::parse(&number).map_err(corrupt("card_number"))?,
        branch: u8::try_from(branch).ok().and_then(CardBranch::new).ok_or_else(|| StoreError::Corrupt(format!("branch {branch}")))?,
        holder: Holder {
            birth_date: to_date(birth)?,
            sex: Sex::parse(&sex).map_err(corrupt("sex"))?,
            relationship: Relationship::parse(&relationship).map_err(corrupt("relationship"))?,
            card_classification: CardClassification::parse(&class).map_err(corrupt("card_classification"))?,
        },
        acquired_on: to_date(acquired)?,
        lost_on: to_opt_date(lost)?,
        loss_reason: reason.map(|r| ReasonOfLoss::parse(&r)).transpose().map_err(corrupt("loss_reason"))?,
        updated_at: Timestamp::from_jst_seconds(updated),
    })
}

/// A 資格確認書's validity as stored: `YYYYMMDD-YYYYMMDD`.
pub(crate) fn qualification_certificate_text(c: Option<&QualificationCertificate>) -> Option<String> {
    c.map(|c| format!("{}-{}", c.valid_from.yyyymmdd(), c.valid_to.yyyymmdd()))
}

fn parse_qualification_certificate(text: Option<String>) -> Result<Option<QualificationCertificate>, StoreError> {
    let Some(text) = text else { return Ok(None) };
    let parse = |part: Option<&str>| Date::parse_yyyymmdd(part.unwrap_or_default()).map_err(corrupt("qualification_certificate"));
    let mut parts = text.split('-');
    Ok(Some(QualificationCertificate { valid_from: parse(parts.next())?, valid_to: parse(parts.next())? }))
}

pub(crate) const TERMS_COLUMNS: &str = "effective_from, name, name_kana, insured_name, address, post_code, income_class, \
     limit_category, limit_classification, limit_valid_from, limit_valid_to, specific_diseases, public_expense, \
     notified_at, registered_at, qualification_certificate";

pub(crate) struct RawTerms(
    pub i64,
    pub String,
    pub String,
    pub Option<String>,
    pub Option<String>,
    pub Option<String>,
    pub String,
    pub Option<String>,
    pub Option<String>,
    pub Option<i64>,
    pub Option<i64>,
    pub Option<String>,
    pub Option<String>,
    pub i64,
    pub i64,
    pub Option<String>,
);

pub(crate) fn terms_record(raw: RawTerms) -> Result<TermsRecord, StoreError> {
    let RawTerms(
        from,
        name,
        kana,
        insured,
        address,
        post,
        income,
        category,
        class,
        limit_from,
        limit_to,
        diseases,
        public,
        notified,
        registered,
        certificate,
    ) = raw;
    let limit = match (category, class, limit_from) {
        (Some(category), Some(class), Some(limit_from)) => Some(LimitCertificate {
            category: LimitCategory::parse(&category).map_err(corrupt("limit_category"))?,
            classification: LimitCertificateClassification::parse(&class).map_err(corrupt("limit_classification"))?,
            valid_from: to_date(limit_from)?,
            valid_to: to_opt_date(limit_to)?,
        }),
        _ => None,
    };
    Ok(TermsRecord {
        effective_from: to_date(from)?,
        details: MemberDetails { name, name_kana: kana, insured_name: insured, address, post_code: post },
        terms: Terms {
            income: IncomeClass::parse(&income).map_err(corrupt("income_class"))?,
            limit,
            specific_diseases: parse_diseases(diseases)?,
            public_expense: parse_public_expense(public)?,
            qualification_certificate: parse_qualification_certificate(certificate)?,
        },
        notified_at: Timestamp::from_jst_seconds(notified),
        registered_at: Timestamp::from_jst_seconds(registered),
    })
}

/// Groups the rows of a view (a coverage's columns, then one terms row's) by coverage: coverages
/// by id, each one's terms oldest first.
pub(crate) fn group_view(mut rows: Vec<(RawCoverage, RawTerms)>) -> Result<Vec<CoverageWithTerms>, StoreError> {
    // Sorted by coverage first, then grouped with the neighbour: linear in the rows after the
    // sort, for a card's handful as for the card index's load of thousands of persons.
    rows.sort_by_key(|(coverage, _)| coverage.0);
    let mut view: Vec<CoverageWithTerms> = Vec::new();
    for (raw_coverage, raw_terms) in rows {
        let terms = terms_record(raw_terms)?;
        match view.last_mut() {
            Some(known) if known.coverage.coverage_id == raw_coverage.0 => known.terms.push(terms),
            _ => view.push(CoverageWithTerms { coverage: coverage_record(raw_coverage)?, terms: vec![terms] }),
        }
    }
    for v in &mut view {
        v.terms.sort_by_key(|t| t.effective_from);
    }
    Ok(view)
}

/// A value of the canonical dump, whichever engine read it.
pub(crate) enum DumpValue {
    Int(i64),
    Text(String),
    Null,
}

/// One line of the canonical dump: the same text from every engine for the same register.
pub(crate) fn dump_line(values: &[DumpValue]) -> String {
    values
        .iter()
        .map(|v| match v {
            DumpValue::Int(n) => n.to_string(),
            DumpValue::Text(t) => format!("{t:?}"),
            DumpValue::Null => "NULL".to_string(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The canonical dump's queries, by natural keys and without registration times (which differ
/// between two imports of the same data); valid SQL on every engine.
pub(crate) const DUMP_QUERIES: [&str; 4] = [
    "SELECT 'coverage', p.person_ref, c.insurer_number, c.card_symbol, c.card_number, c.card_branch, c.birth_date,
            c.sex, c.relationship, c.card_classification, c.acquired_on, c.lost_on, c.loss_reason,
            c.acquired_notified_at, c.lost_notified_at
     FROM coverages c JOIN persons p USING (person_id)",
    "SELECT 'terms', p.person_ref, c.insurer_number, c.card_number, c.card_branch, c.acquired_on, t.effective_from,
            t.name, t.name_kana, t.insured_name, t.address, t.post_code, t.income_class, t.limit_category,
            t.limit_classification, t.limit_valid_from, t.limit_valid_to, t.specific_diseases,
            t.public_expense, t.notified_at, t.qualification_certificate
     FROM coverage_terms t JOIN coverages c USING (coverage_id) JOIN persons p USING (person_id)",
    "SELECT 'event', e.insurer_number, e.event_id, e.kind, c.card_number, c.card_branch, e.occurred_on, e.notified_at
     FROM insurer_events e JOIN coverages c USING (coverage_id)",
    "SELECT 'insurer', insurer_number, events, lag_days_sum, lag_days_max FROM insurer_stats",
];
