//! Verification by card numbers: parse the request, ask the register, decide with the domain,
//! and build the answer with copay, limit, pending changes and `as_of`.

use std::borrow::Borrow;

use onshi_api::verify::{self as wire, CodeLabel, Pending, VerifyAnswer, VerifyNumberRequest};
use onshi_domain::codes::QualificationValidity;
use onshi_domain::copay::{self, AgeBand, copay_ratio_percent};
use onshi_domain::eligibility::{CardMatch, CoverageSpan, Judgement, judge, match_card};
use onshi_domain::ids::{CardBranch, CardNumber, CardSymbol, InstitutionCode, InsurerKind, InsurerNumber};
use onshi_domain::limit::{CareSetting, monthly_cap_yen};
use onshi_domain::{Date, Timestamp};
use onshi_store::Register;
use onshi_store::model::{CoverageRecord, CoverageWithTerms, InsurerLag, TermsRecord, window_covers};

use crate::errors::{self, CenterError};

/// A verification request whose fields passed their rules.
#[derive(Clone, Debug)]
pub struct NumberQuery {
    pub insurer: InsurerNumber,
    pub symbol: CardSymbol,
    pub number: CardNumber,
    pub branch: Option<CardBranch>,
    pub birth_date: Date,
    pub date_of_care: Date,
    pub limit_consent: bool,
    /// The paper the numbers were read from, when the request named it.
    pub document: Option<onshi_domain::documents::Document>,
}

impl NumberQuery {
    /// The query that names exactly this coverage of the register (its own values, no need to
    /// format and check them again), for a person already identified (by card or attributes).
    pub fn for_coverage(c: &onshi_store::model::CoverageRecord, date_of_care: Date, limit_consent: bool) -> NumberQuery {
        NumberQuery {
            insurer: c.insurer.clone(),
            symbol: c.symbol.clone(),
            number: c.number.clone(),
            branch: Some(c.branch),
            birth_date: c.holder.birth_date,
            date_of_care,
            limit_consent,
            document: None,
        }
    }
}

/// The numbers printed on a card, checked: what 初回登録 and the medical views are asked with.
#[derive(Clone, Debug)]
pub struct CardNumbers {
    pub insurer: InsurerNumber,
    pub symbol: CardSymbol,
    pub number: CardNumber,
    pub branch: Option<CardBranch>,
}

impl CardNumbers {
    /// Checks the four fields, naming the one at fault.
    pub fn parse(insurer: &str, symbol: Option<&str>, number: &str, branch: Option<&str>) -> Result<CardNumbers, CenterError> {
        fn field(name: &'static str) -> impl Fn(onshi_domain::FieldError) -> CenterError {
            move |e| errors::invalid_field(name, &e)
        }
        Ok(CardNumbers {
            insurer: InsurerNumber::parse(insurer).map_err(field("insurer_number"))?,
            symbol: CardSymbol::parse(symbol.unwrap_or("")).map_err(field("symbol"))?,
            number: CardNumber::parse(number).map_err(field("number"))?,
            branch: CardBranch::parse(branch.unwrap_or("")).map_err(field("branch"))?,
        })
    }

    /// Every coverage carrying these numbers (a missing 記号 or 枝番 matches any).
    pub fn coverages(&self, register: &dyn Register) -> Result<Vec<CoverageRecord>, CenterError> {
        let all = register.coverages_by_number(&self.insurer, &self.number).map_err(store_error)?;
        Ok(all
            .into_iter()
            .filter(|c| self.symbol.is_empty() || c.symbol == self.symbol)
            .filter(|c| self.branch.is_none_or(|b| b == c.branch))
            .collect())
    }
}

/// Checks a request's fields. `today` is the default date of care. The institution code is
/// checked separately against the certificate ([`check_institution`]).
pub fn parse_request(request: &VerifyNumberRequest, today: Date) -> Result<NumberQuery, CenterError> {
    fn field(name: &'static str) -> impl Fn(onshi_domain::FieldError) -> CenterError {
        move |e| errors::invalid_field(name, &e)
    }
    let card = CardNumbers::parse(&request.insurer_number, request.symbol.as_deref(), &request.number, request.branch.as_deref())?;
    Ok(NumberQuery {
        insurer: card.insurer,
        symbol: card.symbol,
        number: card.number,
        branch: card.branch,
        birth_date: Date::parse_yyyymmdd(&request.birth_date).map_err(field("birth_date"))?,
        date_of_care: match &request.date_of_care {
            Some(text) => Date::parse_yyyymmdd(text).map_err(field("date_of_care"))?,
            None => today,
        },
        limit_consent: request.limit_consent,
        document: match &request.document {
            None => None,
            Some(code) => Some(onshi_domain::documents::Document::parse(code).ok_or_else(|| {
                errors::invalid_field(
                    "document",
                    &onshi_domain::FieldError::new("is not qualification_certificate, insurance_card or qualification_notice", code),
                )
            })?),
        },
    })
}

/// What the paper the numbers came from is worth on the date of care, for the answer about
/// `coverage` (`onshi_domain::documents`): the transition's end for the old 保険証 and the
/// お知らせ, the 高齢受給者 part and the 後期高齢 issuance rule for the 資格確認書.
pub fn document_note(document: onshi_domain::documents::Document, coverage: &wire::Coverage, on: Date) -> wire::DocumentNote {
    use onshi_domain::documents::{self, Document, Worth};
    use onshi_domain::ids::InsurerKind;
    let kind = InsurerNumber::parse(&coverage.insurer_number).ok().map(|n| n.kind());
    let late_elderly = kind == Some(InsurerKind::LateElderly);
    let regional = late_elderly || kind == Some(InsurerKind::NationalHealthInsurance);
    let certificate_to = coverage.qualification_certificate.as_ref().and_then(|c| Date::parse_yyyymmdd(&c.valid_to).ok());
    let worth = documents::worth(document, on, regional, certificate_to);
    let label = document.label_ja();
    let mut text = match worth {
        Worth::Accepted if document == Document::QualificationCertificate => match certificate_to {
            Some(to) => format!("資格確認書で確認しました（保険者が登録した有効期限 {}）。", to.japanese()),
            None => "資格確認書で確認しました。券面の有効期限（保険者が定める、最長5年）を確かめてください。".to_string(),
        },
        Worth::Expired { valid_to } => format!(
            "この資格確認書の有効期限（{}）は過ぎています。オン資ではこの番号の資格を確認できています。保険者から新しい資格確認書が届いていないか確かめ、届いていなければ保険者への交付申請をご案内ください。",
            valid_to.japanese()
        ),
        Worth::Accepted => format!("{label}（有効期限内）で確認しました。"),
        Worth::AcceptedWithConfirmation => format!(
            "{label}は、オン資でこの番号の資格が確認できたため受付できます（{}までの特例）。",
            documents::transition_last_day().japanese()
        ),
        Worth::NotAlone => format!(
            "{label}だけでの受付は{}で終わりました。オン資ではこの番号の資格を確認できています。マイナ保険証か資格確認書の提示をお願いし、お持ちでなければ保険者への資格確認書の交付申請をご案内ください。",
            documents::transition_last_day().japanese()
        ),
    };
    if document == Document::QualificationCertificate {
        if coverage.elderly_recipient
            && let Some(ratio) = coverage.copay_ratio_percent
        {
            text.push_str(&format!("70〜74歳の方の資格確認書には高齢受給者証の内容（負担割合{}割）が記載されています。", ratio / 10));
        }
        if late_elderly && let Ok(birth) = Date::parse_yyyymmdd(&coverage.birth_date) {
            text.push_str(if documents::late_elderly_certificate_without_application(birth, on) {
                "後期高齢者のこの方には資格確認書が申請なしで交付されています。"
            } else {
                "2026年8月以降、85歳未満の後期高齢者の資格確認書は申請による交付です。お持ちでなければ広域連合への申請をご案内ください。"
            });
        }
    }
    let worth = match worth {
        Worth::Accepted => "accepted",
        Worth::AcceptedWithConfirmation => "accepted_with_confirmation",
        Worth::NotAlone => "not_alone",
        Worth::Expired { .. } => "expired",
    };
    wire::DocumentNote {
        document: wire::CodeLabel { code: document.code().to_string(), label: label.to_string() },
        worth: worth.to_string(),
        reception_ja: text,
    }
}

/// The institution code a request names, if any, must be the certificate's.
pub fn check_institution(claimed: Option<&str>, certified: &InstitutionCode) -> Result<(), CenterError> {
    let Some(claimed) = claimed else { return Ok(()) };
    let parsed = InstitutionCode::parse(claimed).map_err(|e| errors::invalid_field("institution_code", &e))?;
    if &parsed != certified {
        return Err(errors::institution_mismatch(parsed.as_str(), certified.as_str()));
    }
    Ok(())
}

/// A coverage as the law has it (lost on the 75th birthday unless 後期高齢, whatever the
/// insurer has registered yet).
fn span(record: &CoverageRecord) -> CoverageSpan {
    lawful_span(record).0
}

/// As [`span`], with whether the law's date ends the coverage before the insurer's registration.
fn lawful_span(record: &CoverageRecord) -> (CoverageSpan, bool) {
    CoverageSpan {
        coverage_id: record.coverage_id,
        person_id: record.person_id,
        branch: record.branch,
        birth_date: record.holder.birth_date,
        acquired_on: record.acquired_on,
        lost_on: record.lost_on,
        loss_reason: record.loss_reason,
    }
    .under_law(record.insurer.kind())
}

fn code_label(code: &str, label: &str) -> CodeLabel {
    CodeLabel { code: code.to_string(), label: label.to_string() }
}

pub(crate) fn store_error(e: onshi_store::StoreError) -> CenterError {
    errors::register_unavailable(e.to_string())
}

/// The terms row in effect on `on`, or the first row when `on` precedes them all.
fn terms_on(rows: &[TermsRecord], on: Date) -> Option<&TermsRecord> {
    rows.iter().rev().find(|row| row.effective_from <= on).or(rows.first())
}

/// Builds the wire coverage as it stands on `on`.
fn coverage_on(record: &CoverageRecord, rows: &[TermsRecord], on: Date, limit_consent: bool) -> Option<wire::Coverage> {
    let row = terms_on(rows, on)?;
    let birth = record.holder.birth_date;
    let late_elderly = record.insurer.kind() == InsurerKind::LateElderly;
    let band = copay::age_band(birth, on, late_elderly);
    let covered = span(record).covers(on);
    let limit =
        row.terms.limit.filter(|limit| limit_consent && window_covers(limit.valid_from, limit.valid_to, on)).map(|limit| wire::Limit {
            category: code_label(limit.category.code(), limit.category.label_ja()),
            classification: code_label(limit.classification.code(), limit.classification.label_ja()),
            valid_from: limit.valid_from.to_string(),
            valid_to: limit.valid_to.map(|d| d.to_string()),
            outpatient_cap_base_yen: monthly_cap_yen(limit.category, on, CareSetting::Outpatient, 0),
        });
    let public_expense = row
        .terms
        .public_expense
        .iter()
        .filter(|p| window_covers(p.valid_from, p.valid_to, on))
        .map(|p| wire::PublicExpense {
            payer_number: p.payer.as_str().to_string(),
            recipient_number: p.recipient.as_str().to_string(),
            valid_from: p.valid_from.to_string(),
            valid_to: p.valid_to.map(|d| d.to_string()),
        })
        .collect();
    Some(wire::Coverage {
        insurer_number: record.insurer.as_str().to_string(),
        symbol: (!record.symbol.is_empty()).then(|| record.symbol.as_str().to_string()),
        number: record.number.as_str().to_string(),
        branch: record.branch.to_string(),
        card_classification: code_label(record.holder.card_classification.code(), record.holder.card_classification.label_ja()),
        relationship: code_label(record.holder.relationship.code(), record.holder.relationship.label_ja()),
        name: row.details.name.clone(),
        name_kana: row.details.name_kana.clone(),
        insured_name: row.details.insured_name.clone(),
        sex: code_label(record.holder.sex.code(), record.holder.sex.label_ja()),
        birth_date: birth.to_string(),
        address: row.details.address.clone(),
        post_code: row.details.post_code.clone(),
        acquired_on: record.acquired_on.to_string(),
        lost_on: record.lost_on.map(|d| d.to_string()),
        loss_reason: record.loss_reason.map(|r| code_label(r.code(), r.label_ja())),
        copay_ratio_percent: if covered { copay_ratio_percent(birth, on, row.terms.income, late_elderly) } else { None },
        preschool: covered && band == AgeBand::Preschool,
        elderly_recipient: covered && band == AgeBand::SeventyToSeventyFour,
        limit,
        public_expense,
        qualification_certificate: row
            .terms
            .qualification_certificate
            .map(|c| wire::Validity { valid_from: c.valid_from.to_string(), valid_to: c.valid_to.to_string() }),
    })
}

/// How far ahead an age-rule change of the copay is announced.
const COPAY_CHANGE_NOTICE_DAYS: i64 = 62;

/// Changes that take effect after the date of care: a notified loss, dated terms, a newer
/// coverage starting later, and a copay change by age coming soon.
fn pending_changes(record: &CoverageRecord, rows: &[TermsRecord], person: &[&CoverageRecord], on: Date) -> Vec<Pending> {
    let mut pending = Vec::new();
    let (lawful, by_law) = lawful_span(record);
    if let Some(lost) = lawful.lost_on.filter(|lost| by_law && (*lost <= on || lost.to_days() - on.to_days() <= COPAY_CHANGE_NOTICE_DAYS)) {
        // Said even when the date of care is past it: the insurer has not registered it yet.
        pending.push(Pending {
            kind: "loss".into(),
            effective_on: lost.to_string(),
            description_ja: format!(
                "75歳の誕生日（{}）に後期高齢者医療制度へ移るため、この資格は法律により喪失します（保険者の届出はまだ登録されていません）。",
                lost.japanese()
            ),
        });
    }
    if let Some(lost) = record.lost_on.filter(|lost| *lost > on) {
        pending.push(Pending {
            kind: "loss".into(),
            effective_on: lost.to_string(),
            description_ja: format!("{}に資格を喪失する予定です（保険者から届出済み）。", lost.japanese()),
        });
    }
    for row in rows.iter().filter(|row| row.effective_from > on && row.effective_from > record.acquired_on) {
        pending.push(Pending {
            kind: "terms_change".into(),
            effective_on: row.effective_from.to_string(),
            description_ja: format!("{}から資格内容（負担割合・限度額等）が変わります。", row.effective_from.japanese()),
        });
    }
    for other in person.iter().filter(|c| c.coverage_id != record.coverage_id && c.acquired_on > on) {
        pending.push(Pending {
            kind: "newer_coverage".into(),
            effective_on: other.acquired_on.to_string(),
            description_ja: format!(
                "{}から新しい資格（保険者番号 {}）が有効になります。",
                other.acquired_on.japanese(),
                other.insurer.as_str()
            ),
        });
    }
    if span(record).covers(on)
        && let Some(row) = terms_on(rows, on)
    {
        let birth = record.holder.birth_date;
        let late = record.insurer.kind() == InsurerKind::LateElderly;
        let ratio_on_date = copay_ratio_percent(birth, on, row.terms.income, late);
        let boundaries = [copay::school_entry(birth), copay::seventy_rule_start(birth), copay::late_elderly_start(birth)];
        // A coverage that ends on a boundary (the 75th birthday, for all but 後期高齢) has no
        // copay after it: the loss is announced instead.
        let boundaries = boundaries.into_iter().filter(|b| lawful.lost_on.is_none_or(|lost| *b < lost));
        for boundary in boundaries.filter(|b| *b > on && b.to_days() - on.to_days() <= COPAY_CHANGE_NOTICE_DAYS) {
            let ratio_then = copay_ratio_percent(birth, boundary, row.terms.income, late);
            if let (Some(before), Some(after)) = (ratio_on_date, ratio_then)
                && before != after
            {
                pending.push(Pending {
                    kind: "copay_change".into(),
                    effective_on: boundary.to_string(),
                    description_ja: format!(
                        "{}から年齢により負担割合が{}割から{}割に変わります。",
                        boundary.japanese(),
                        before / 10,
                        after / 10
                    ),
                });
            }
        }
    }
    pending.sort_by(|a, b| (&a.effective_on, &a.kind).cmp(&(&b.effective_on, &b.kind)));
    pending
}

pub(crate) fn validity(value: QualificationValidity) -> CodeLabel {
    code_label(value.code(), value.label_ja())
}

/// How long an insurer's lag statistics are reused before they are read again. They change
/// only with imports, and reading them on every verification would cost a query each time.
const LAG_CACHE_SECONDS: u64 = 30;

/// Insurer lag statistics, cached per insurer.
#[derive(Default)]
pub struct LagCache {
    entries: std::sync::RwLock<std::collections::HashMap<InsurerNumber, (std::time::Instant, Option<InsurerLag>)>>,
}

impl LagCache {
    pub(crate) fn get(&self, register: &dyn Register, insurer: &InsurerNumber) -> Result<Option<InsurerLag>, CenterError> {
        let fresh = |at: &std::time::Instant| at.elapsed().as_secs() < LAG_CACHE_SECONDS;
        if let Some((at, lag)) = self.entries.read().unwrap_or_else(|p| p.into_inner()).get(insurer)
            && fresh(at)
        {
            return Ok(*lag);
        }
        let lag = register.insurer_lag(insurer).map_err(store_error)?;
        self.entries.write().unwrap_or_else(|p| p.into_inner()).insert(insurer.clone(), (std::time::Instant::now(), lag));
        Ok(lag)
    }
}

/// Answers one verification from the register, from one read: the card's holders with all
/// their coverages and terms, taken from a single snapshot.
pub fn verify_number(register: &dyn Register, lags: &LagCache, query: &NumberQuery, now: Timestamp) -> Result<VerifyAnswer, CenterError> {
    verify_number_person(register, lags, query, now).map(|(answer, _)| answer)
}

/// As [`verify_number`], with the opaque id of the person the answer is about (for the audit
/// log), when one person was identified.
pub fn verify_number_person(
    register: &dyn Register,
    lags: &LagCache,
    query: &NumberQuery,
    now: Timestamp,
) -> Result<(VerifyAnswer, Option<i64>), CenterError> {
    let lag = lags.get(register, &query.insurer)?;
    let (view, replica_as_of) = register.card_holders_view_at(&query.insurer, &query.number).map_err(store_error)?;
    Ok(answer_from_read(&view, replica_as_of, lag, query, now))
}

/// As [`verify_number_person`], from an async handler: the register's read waits without
/// holding a thread where the engine can (PostgreSQL).
pub async fn verify_number_person_async(
    register: &dyn Register,
    lags: &LagCache,
    query: &NumberQuery,
    now: Timestamp,
) -> Result<(VerifyAnswer, Option<i64>), CenterError> {
    let lag = lags.get(register, &query.insurer)?;
    let (view, replica_as_of) = register.card_holders_view_async(&query.insurer, &query.number).await.map_err(store_error)?;
    Ok(answer_from_read(&view, replica_as_of, lag, query, now))
}

fn answer_from_read<V: Borrow<CoverageWithTerms>>(
    view: &[V],
    replica_as_of: Option<Timestamp>,
    lag: Option<InsurerLag>,
    query: &NumberQuery,
    now: Timestamp,
) -> (VerifyAnswer, Option<i64>) {
    let (mut answer, person) = answer_from_view(view, lag, query, now);
    answer.replica_as_of = replica_as_of.map(|at| at.to_string());
    // Only beside a valid coverage: for a lost one the validity says what matters.
    if let (Some(document), Some(coverage), "1") = (query.document, &answer.coverage, answer.validity.code.as_str()) {
        answer.document = Some(document_note(document, coverage, query.date_of_care));
    }
    (answer, person)
}

/// 該当資格なし on `on`, before anything is found.
pub fn no_coverage_answer(on: Date, now: Timestamp) -> VerifyAnswer {
    VerifyAnswer {
        validity: validity(QualificationValidity::NoSuchCoverage),
        notice: None,
        date_of_care: on.to_string(),
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
    }
}

/// The answer from `view`, every coverage with its terms of each person the query may mean
/// (the card's holders, or the one person a card names), with the person the answer is about.
/// The view's coverages are owned or shared with the card index (`Borrow`).
pub fn answer_from_view<V: Borrow<CoverageWithTerms>>(
    view: &[V],
    lag: Option<InsurerLag>,
    query: &NumberQuery,
    now: Timestamp,
) -> (VerifyAnswer, Option<i64>) {
    let view = || view.iter().map(Borrow::<CoverageWithTerms>::borrow);
    let on = query.date_of_care;
    let mut answer = no_coverage_answer(on, now);
    answer.insurer_lag =
        lag.map(|l| wire::InsurerLag { events: l.events, mean_days: (l.mean_days * 10.0).round() / 10.0, max_days: l.max_days });
    let candidates: Vec<&CoverageWithTerms> = view()
        .filter(|v| v.coverage.insurer == query.insurer && v.coverage.number == query.number)
        .filter(|v| query.symbol.is_empty() || v.coverage.symbol == query.symbol)
        .collect();
    let spans: Vec<CoverageSpan> = candidates.iter().map(|v| span(&v.coverage)).collect();
    let chosen = match match_card(&spans, query.branch, query.birth_date, on) {
        CardMatch::NoSuchNumbers => {
            answer.notice = Some(errors::no_such_coverage(lag.map(|l| (l.mean_days, l.max_days))));
            return (answer, None);
        }
        CardMatch::BirthDateMismatch => {
            answer.notice = Some(errors::birth_date_mismatch());
            return (answer, None);
        }
        CardMatch::SeveralPeople(count) => {
            answer.validity = validity(QualificationValidity::SeveralMatches);
            answer.notice = Some(errors::several_matches(count));
            return (answer, None);
        }
        CardMatch::One(chosen) => chosen.coverage_id,
    };
    let found = *candidates.iter().find(|v| v.coverage.coverage_id == chosen).expect("chosen from these candidates");
    let record = &found.coverage;
    let person: Vec<&CoverageRecord> = view().filter(|v| v.coverage.person_id == record.person_id).map(|v| &v.coverage).collect();
    let person_spans: Vec<CoverageSpan> = person.iter().map(|c| span(c)).collect();
    let judgement = judge(&span(record), &person_spans, on);
    answer.validity = validity(judgement.validity());
    answer.coverage = coverage_on(record, &found.terms, on, query.limit_consent);
    answer.pending = pending_changes(record, &found.terms, &person, on);
    let mut as_of = record.updated_at;
    match judgement {
        Judgement::Valid => {}
        Judgement::NotYetAcquired { acquired_on } => answer.notice = Some(errors::not_yet_started(acquired_on)),
        Judgement::Lost { lost_on } if lawful_span(record).1 => answer.notice = Some(errors::coverage_lost_at_75(lost_on)),
        Judgement::Lost { lost_on } => answer.notice = Some(errors::coverage_lost(lost_on)),
        Judgement::LostNewerExists { lost_on, newer_coverage_id } => {
            let newer = view().find(|v| v.coverage.coverage_id == newer_coverage_id).expect("judged from these coverages");
            answer.notice = Some(errors::newer_coverage(lost_on, newer.coverage.insurer.as_str()));
            answer.newer_coverage = coverage_on(&newer.coverage, &newer.terms, on, query.limit_consent);
            as_of = as_of.max(newer.coverage.updated_at);
        }
    }
    answer.as_of = Some(as_of.to_string());
    (answer, Some(record.person_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, import_jsonl};
    use onshi_store::sqlite::{SqliteOptions, SqliteRegister};

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    fn event(id: &str, kind: &str, insurer: &str, number: &str, occurred: &str, notified: &str, extra: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","kind":"{kind}","insurer_number":"{insurer}","person_ref":"r1","card":{{"number":"{number}","branch":"00"}},"occurred_on":"{occurred}","notified_at":"{notified}"{extra}}}"#
        )
    }

    const MEMBER: &str = r#","member":{"relationship":"1","card_classification":"01","name":"試験 一郎","name_kana":"ｼｹﾝ ｲﾁﾛｳ","sex":"1","birth_date":"19511210"}"#;

    /// A person born 1951-12-10 in 国保 (131016): 後期高齢 (39131011) from the 75th birthday,
    /// notified in advance; a 限度額 certificate; an income change announced for 2027-01-01.
    fn register() -> (tempfile::TempDir, SqliteRegister, Timestamp) {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("r.sqlite"), SqliteOptions::SERVER).unwrap();
        let kokuho = InsurerNumber::with_check_digit("13101").unwrap();
        let kouki = InsurerNumber::with_check_digit("3913101").unwrap();
        let limit = r#","terms":{"income_class":"general","limit":{"category":"B04","classification":"01","valid_from":"20260801","valid_to":"20270731"}}"#;
        let lines = [
            event("k1", "acquire", kokuho.as_str(), "1000001", "20111210", "20111212090000", &format!("{MEMBER}{limit}")),
            event("k2", "lose", kokuho.as_str(), "1000001", "20261210", "20261101090000", r#","loss_reason":"03""#),
            event(
                "l1",
                "acquire",
                kouki.as_str(),
                "20000001",
                "20261210",
                "20261101090000",
                &format!("{MEMBER}{}", r#","terms":{"income_class":"general"}"#),
            ),
            event("l2", "change", kouki.as_str(), "20000001", "20270101", "20261120090000", r#","terms":{"income_class":"general2"}"#),
        ];
        let registered = Timestamp::parse("20261124120000").unwrap();
        let options = ImportOptions { batch_events: 10, only_insurer: None, registered_at: registered };
        let report = import_jsonl(&register, lines.join("\n").as_bytes(), &options, |_| {}).unwrap();
        assert_eq!((report.applied, report.rejected_total), (4, 0), "{report:?}");
        (dir, register, registered)
    }

    fn ask(register: &SqliteRegister, insurer: &str, number: &str, on: &str, consent: bool) -> VerifyAnswer {
        let request = VerifyNumberRequest {
            insurer_number: insurer.into(),
            number: number.into(),
            birth_date: "19511210".into(),
            date_of_care: Some(on.into()),
            limit_consent: consent,
            ..Default::default()
        };
        let query = parse_request(&request, d("20261125")).unwrap();
        verify_number(register, &LagCache::default(), &query, Timestamp::parse("20261125100000").unwrap()).unwrap()
    }

    fn kinds(answer: &VerifyAnswer) -> Vec<(&str, &str)> {
        answer.pending.iter().map(|p| (p.kind.as_str(), p.effective_on.as_str())).collect()
    }

    #[test]
    fn the_day_before_75_announces_everything_known() {
        let (_dir, register, registered) = register();
        let kokuho = InsurerNumber::with_check_digit("13101").unwrap();
        let answer = ask(&register, &format!("  {kokuho}"), "１０００００１", "20261125", true);
        assert_eq!(answer.validity.code, "1");
        let coverage = answer.coverage.as_ref().unwrap();
        assert_eq!((coverage.copay_ratio_percent, coverage.elderly_recipient), (Some(20), true));
        assert_eq!(coverage.limit.as_ref().map(|l| (l.category.code.as_str(), l.outpatient_cap_base_yen)), Some(("B04", Some(18_000))));
        // The 国保 coverage ends on the birthday: its copay after it is not announced, the loss
        // and the 後期高齢 coverage are.
        assert_eq!(kinds(&answer), [("loss", "20261210"), ("newer_coverage", "20261210")]);
        assert_eq!(answer.as_of.as_deref(), Some(registered.to_string().as_str()));
        let lag = answer.insurer_lag.unwrap();
        assert_eq!((lag.events, lag.max_days), (2, 2), "the advance loss notice counts as no lag");

        let without_consent = ask(&register, kokuho.as_str(), "1000001", "20261125", false);
        assert!(without_consent.coverage.unwrap().limit.is_none());
    }

    #[test]
    fn on_the_birthday_the_old_card_points_to_the_new_one() {
        let (_dir, register, _) = register();
        let kokuho = InsurerNumber::with_check_digit("13101").unwrap();
        let kouki = InsurerNumber::with_check_digit("3913101").unwrap();
        let answer = ask(&register, kokuho.as_str(), "1000001", "20261210", false);
        assert_eq!(answer.validity.code, "3");
        assert_eq!(answer.notice.unwrap().code, "NEWER_COVERAGE");
        let newer = answer.newer_coverage.unwrap();
        assert_eq!((newer.insurer_number.as_str(), newer.copay_ratio_percent), (kouki.as_str(), Some(10)));
        assert_eq!(answer.coverage.unwrap().copay_ratio_percent, None, "no copay on an ended coverage");

        let new_card = ask(&register, kouki.as_str(), "20000001", "20261215", false);
        assert_eq!(new_card.validity.code, "1");
        assert_eq!(kinds(&new_card), [("terms_change", "20270101")]);
        let next_year = ask(&register, kouki.as_str(), "20000001", "20270101", false);
        assert_eq!(next_year.coverage.unwrap().copay_ratio_percent, Some(20), "一定以上所得 from 2027-01-01");
        let before = ask(&register, kouki.as_str(), "20000001", "20261209", false);
        assert_eq!(before.notice.unwrap().code, "COVERAGE_NOT_YET_STARTED");
    }

    #[test]
    fn turning_75_ends_the_old_coverage_by_law_before_the_insurer_registers_it() {
        let dir = tempfile::tempdir().unwrap();
        let register = SqliteRegister::open(&dir.path().join("r.sqlite"), SqliteOptions::SERVER).unwrap();
        let kokuho = InsurerNumber::with_check_digit("13101").unwrap();
        // Born 1951-12-10: 75 on 2026-12-10. The 国保 has registered neither the loss nor has
        // the 広域連合 registered the 後期高齢 coverage yet.
        let terms = r#","terms":{"income_class":"general"}"#;
        let line = event("k1", "acquire", kokuho.as_str(), "1000001", "20111210", "20111212090000", &format!("{MEMBER}{terms}"));
        let options = ImportOptions { batch_events: 10, only_insurer: None, registered_at: Timestamp::parse("20261124120000").unwrap() };
        assert_eq!(import_jsonl(&register, line.as_bytes(), &options, |_| {}).unwrap().applied, 1);

        let before = ask(&register, kokuho.as_str(), "1000001", "20261125", false);
        assert_eq!(before.validity.code, "1");
        assert_eq!(before.coverage.as_ref().unwrap().copay_ratio_percent, Some(20), "70–74, 一般: 2割");
        assert_eq!(kinds(&before), [("loss", "20261210")], "the loss by law, not a copay of 1割 on this coverage");
        assert!(before.pending[0].description_ja.contains("75歳"), "{}", before.pending[0].description_ja);

        for on in ["20261210", "20270115"] {
            let after = ask(&register, kokuho.as_str(), "1000001", on, false);
            assert_eq!(after.validity.code, "2", "{on}: not valid, whatever the register still says");
            assert_eq!(after.notice.as_ref().map(|n| n.code.as_str()), Some("COVERAGE_LOST_AT_75"), "{on}");
            assert_eq!(after.coverage.as_ref().unwrap().copay_ratio_percent, None, "{on}: no 1割 on the 国保 coverage");
            assert_eq!(kinds(&after), [("loss", "20261210")], "{on}: the reason stays in the answer");
        }
        // Far from the birthday nothing is announced.
        assert!(ask(&register, kokuho.as_str(), "1000001", "20260101", false).pending.is_empty());
    }

    proptest::proptest! {
        /// Any text in any field gives an answer or a field error, never a panic.
        #[test]
        fn any_request_text_is_answered_or_refused(insurer in "\\PC{0,12}", symbol in "\\PC{0,25}", number in "\\PC{0,25}", branch in "\\PC{0,3}", birth in "\\PC{0,10}") {
            let request = VerifyNumberRequest { insurer_number: insurer, symbol: Some(symbol), number, branch: Some(branch), birth_date: birth, ..Default::default() };
            if let Err(error) = parse_request(&request, d("20261125")) {
                proptest::prop_assert!(error.status == 400 && error.body.field.is_some() && !error.body.reception_ja.is_empty());
            }
        }
    }

    #[test]
    fn institution_codes_must_match_the_certificate() {
        let certified = InstitutionCode::parse("3410712362").unwrap();
        assert!(check_institution(None, &certified).is_ok());
        assert!(check_institution(Some("3410712362"), &certified).is_ok());
        assert_eq!(check_institution(Some("1311234569"), &certified).unwrap_err().body.code, "INSTITUTION_MISMATCH");
        assert_eq!(check_institution(Some("123"), &certified).unwrap_err().body.code, "INVALID_INSTITUTION_CODE");
    }
}
