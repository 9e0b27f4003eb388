//! 公費 and local subsidies (医療費助成): a payer's uploads, and what a clinic is told.
//!
//! What a clinic may see, and when, is decided here once:
//! - on the card path, the certificates valid on the date of care, when the patient said yes at
//!   the reader (「医療費助成の各種受給者証を利用しますか」) in the signed consent;
//! - by the numbers printed on a 受給者証 with the patient's birth date, as the number path asks
//!   for coverage: a wrong birth date is answered exactly as a number never registered, so the
//!   numbers alone do not reveal who holds them;
//! - a certificate its payer marked `withheld` (DV and abuse cases) is never shown on either
//!   path, and its absence looks like any other.

use std::io::BufRead;

use onshi_api::events::{ImportReport, REJECTED_LISTED_MAX, RejectedLine};
use onshi_api::subsidy::{Subsidy, SubsidyAnswer, SubsidyEvent, VerifySubsidyRequest, WelfareRecipient, state};
use onshi_api::verify::CodeLabel;
use onshi_domain::codes::QualificationValidity;
use onshi_domain::ids::{InstitutionCode, PublicPayerNumber, RecipientNumber};
use onshi_domain::{Date, Timestamp};
use onshi_store::Register;
use onshi_store::medical::MedicalStore;
use onshi_store::model::ApplyOutcome;
use onshi_store::model::CoverageWithTerms;
use onshi_store::subsidy::{MedicalTicketRecord, SubsidyEventRecord, SubsidyRow, SubsidyStore};

use crate::errors::{self, CenterError};
use crate::import::{LINE_BYTES_MAX, read_line_bounded};
use crate::validate::subsidy_event;

/// By-numbers questions a clinic may have answered `not_registered` per day (Japan time)
/// before its further questions that day are refused: the answer needs the holder's birth date,
/// and this keeps a clinic holding someone's 受給者証 numbers from trying birth dates until one
/// answers. A month's receipt pre-check asks far fewer that miss.
pub const SUBSIDY_MISSES_PER_DAY: u32 = 100;

/// Events applied per transaction in a payer's upload.
const SUBSIDY_BATCH_EVENTS: usize = 10_000;

/// The programme a 法別番号 names, for the label staff read. 地方単独 numbers are assigned by
/// each prefecture (commonly in the 80s and 90s), so they are labelled as local subsidies.
pub fn law_label(law: &str) -> &'static str {
    match law {
        "10" => "感染症（結核患者の適正医療）",
        "11" => "感染症（結核患者の入院）",
        "12" => "生活保護（医療扶助）",
        "15" => "自立支援医療（更生医療）",
        "16" => "自立支援医療（育成医療）",
        "17" => "児童福祉法（療育の給付）",
        "19" => "原爆被爆者（認定疾病）",
        "21" => "自立支援医療（精神通院医療）",
        "22" => "精神保健福祉法（措置入院）",
        "51" => "特定疾患治療研究事業",
        "52" => "小児慢性特定疾病医療支援",
        "53" => "児童福祉施設措置医療",
        "54" => "難病医療（指定難病）",
        "79" => "障害者総合支援法（療養介護医療）",
        l if l.starts_with('8') || l.starts_with('9') => "地方単独医療費助成",
        _ => "公費負担医療",
    }
}

fn shown(row: &SubsidyRow, institution: &InstitutionCode) -> Subsidy {
    let law = row.payer.as_str()[..2].to_string();
    Subsidy {
        payer_number: row.payer.as_str().to_string(),
        recipient_number: row.recipient.as_str().to_string(),
        law: CodeLabel { label: law_label(&law).to_string(), code: law },
        name: row.terms.name.clone(),
        valid_from: row.valid_from.to_string(),
        valid_to: row.terms.valid_to.map(|d| d.to_string()),
        self_pay_cap_yen: row.terms.self_pay_cap_yen,
        income_segment: row.terms.income_segment.clone(),
        designated: (!row.terms.designated_institutions.is_empty())
            .then(|| row.terms.designated_institutions.iter().any(|c| c == institution.as_str())),
    }
}

/// Whether a recipient's periods are withheld: a payer's DV mark on any period hides them all
/// (an earlier, unmarked period must not show what the mark hides).
fn withheld(rows: &[SubsidyRow], payer: &PublicPayerNumber, recipient: &RecipientNumber) -> bool {
    rows.iter().any(|r| r.terms.withheld && r.payer == *payer && r.recipient == *recipient)
}

/// The certificates of a person a clinic may see on `on`: valid that day and not withheld.
/// 医療扶助 (法別 12) is not among them: a card check answers it on its own
/// ([`welfare_on_card`]), with the month's tickets, whatever the patient chose.
pub fn shown_on(rows: &[SubsidyRow], institution: &InstitutionCode, on: Date) -> Vec<Subsidy> {
    rows.iter()
        .filter(|r| !r.payer.as_str().starts_with("12") && r.covers(on) && !withheld(rows, &r.payer, &r.recipient))
        .map(|r| shown(r, institution))
        .collect()
}

/// A checked by-numbers question.
#[derive(Clone, Debug)]
pub struct SubsidyQuery {
    pub payer: PublicPayerNumber,
    pub recipient: RecipientNumber,
    pub birth_date: Date,
    pub date_of_care: Date,
}

pub fn parse_query(request: &VerifySubsidyRequest) -> Result<SubsidyQuery, CenterError> {
    let field = |name: &'static str| move |e: onshi_domain::FieldError| errors::invalid_field(name, &e);
    Ok(SubsidyQuery {
        payer: PublicPayerNumber::parse(&request.payer_number).map_err(field("payer_number"))?,
        recipient: RecipientNumber::parse(&request.recipient_number).map_err(field("recipient_number"))?,
        birth_date: Date::parse_yyyymmdd(&request.birth_date).map_err(field("birth_date"))?,
        date_of_care: Date::parse_yyyymmdd(&request.date_of_care).map_err(field("date_of_care"))?,
    })
}

fn reception(state: &str) -> &'static str {
    match state {
        state::VALID => "受給者証は診療日に有効です。自己負担上限額と指定医療機関を確認してください。",
        state::NOT_VALID_ON_DATE => {
            "受給者証は登録されていますが、診療日には有効ではありません。有効期間を患者さんの受給者証で確認してください。"
        }
        state::NOT_REGISTERED => {
            "この番号と生年月日の受給者証は登録されていません。受給者証の番号と生年月日を確認し、記載どおりなら実施機関（自治体）に問い合わせてください。"
        }
        _ => "この実施機関は受給者情報を登録していません。紙の受給者証で確認してください（有効・無効のどちらとも言えません）。",
    }
}

/// The answer by numbers, and the person it was about (for the audit log) when one was found.
pub fn verify_subsidy(
    subsidies: &dyn SubsidyStore,
    persons: &dyn MedicalStore,
    register: &dyn Register,
    query: &SubsidyQuery,
    institution: &InstitutionCode,
    now: Timestamp,
) -> Result<(SubsidyAnswer, Option<i64>), CenterError> {
    let store = |e: onshi_store::StoreError| errors::register_unavailable(e.to_string());
    let answer = |state: &str, subsidy: Option<Subsidy>| SubsidyAnswer {
        state: state.to_string(),
        reception_ja: reception(state).to_string(),
        subsidy,
        date_of_care: query.date_of_care.to_string(),
        answered_at: now.to_string(),
    };
    let mut rows: Vec<SubsidyRow> = subsidies.subsidies_of_recipient(&query.payer, &query.recipient).map_err(store)?;
    if withheld(&rows, &query.payer, &query.recipient) {
        rows.clear();
    }
    if rows.is_empty() {
        let connected = subsidies.payer_registers(&query.payer).map_err(store)?;
        return Ok((answer(if connected { state::NOT_REGISTERED } else { state::PAYER_NOT_CONNECTED }, None), None));
    }
    // The birth date must be the holder's, as the register's coverages record it: without it,
    // the numbers printed on someone else's certificate would open it.
    let person = persons.person_id(&rows[0].person_ref).map_err(store)?;
    let born_so = match person {
        Some(id) => register.person_view(id).map_err(store)?.iter().any(|v| v.coverage.holder.birth_date == query.birth_date),
        None => false,
    };
    if !born_so {
        return Ok((answer(state::NOT_REGISTERED, None), None));
    }
    let on = query.date_of_care;
    Ok(match rows.iter().find(|r| r.covers(on)) {
        Some(row) => (answer(state::VALID, Some(shown(row, institution))), person),
        None => {
            // The nearest period: the latest that began before the date, else the first.
            let nearest = rows.iter().rev().find(|r| r.valid_from <= on).or(rows.first()).expect("rows is not empty");
            (answer(state::NOT_VALID_ON_DATE, Some(shown(nearest, institution))), person)
        }
    })
}

/// Imports a payer's JSON Lines: each line checked (a line for another payer than `only_payer`
/// is refused), applied in transactions of bounded size, refusals reported by line.
pub fn import_subsidy_jsonl(
    subsidies: &dyn SubsidyStore,
    mut input: impl BufRead,
    only_payer: Option<&PublicPayerNumber>,
    registered_at: Timestamp,
) -> Result<ImportReport, crate::import::ImportError> {
    let mut report = ImportReport::default();
    let mut pending: Vec<(u64, SubsidyEventRecord)> = Vec::new();
    fn refuse(report: &mut ImportReport, line: u64, event_id: Option<String>, field: &str, reason: String) {
        report.rejected_total += 1;
        if report.rejected.len() < REJECTED_LISTED_MAX {
            report.rejected.push(RejectedLine { line, event_id, field: field.to_string(), reason });
        }
    }
    let flush = |report: &mut ImportReport, pending: &mut Vec<(u64, SubsidyEventRecord)>| -> Result<(), crate::import::ImportError> {
        let events: Vec<SubsidyEventRecord> = pending.iter().map(|(_, e)| e.clone()).collect();
        let outcomes = subsidies.apply_subsidy_events(&events, registered_at)?;
        for ((line, event), outcome) in pending.drain(..).zip(outcomes) {
            match outcome {
                ApplyOutcome::Applied => report.applied += 1,
                ApplyOutcome::AlreadyApplied => report.already_applied += 1,
                ApplyOutcome::Rejected { field, reason } => refuse(report, line, Some(event.event_id), field, reason),
            }
        }
        Ok(())
    };
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        let read = read_line_bounded(&mut input, &mut line, LINE_BYTES_MAX)
            .map_err(|source| crate::import::ImportError::Read { line: number, source })?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        report.lines += 1;
        if line.len() > LINE_BYTES_MAX {
            refuse(&mut report, number, None, "line", format!("is longer than {LINE_BYTES_MAX} bytes"));
            continue;
        }
        let parsed: SubsidyEvent = match serde_json::from_slice(&line) {
            Ok(parsed) => parsed,
            Err(e) => {
                let (field, reason) = crate::import::describe_json_error(&e);
                refuse(&mut report, number, None, &field, reason);
                continue;
            }
        };
        match subsidy_event(&parsed) {
            Ok(event) if only_payer.is_some_and(|p| *p != event.payer) => {
                let certified = only_payer.map(|p| p.as_str().to_string()).unwrap_or_default();
                refuse(
                    &mut report,
                    number,
                    Some(event.event_id),
                    "payer_number",
                    format!("is not {certified}, the payer named by your certificate"),
                );
            }
            Ok(event) => pending.push((number, event)),
            Err(refusal) => refuse(&mut report, number, Some(parsed.event_id.chars().take(64).collect()), &refusal.field, refusal.reason),
        }
        if pending.len() >= SUBSIDY_BATCH_EVENTS {
            flush(&mut report, &mut pending)?;
        }
    }
    flush(&mut report, &mut pending)?;
    report.rejected.sort_by_key(|r| r.line);
    Ok(report)
}

/// 医療扶助 (生活保護): the recipients of one month at the asking institution, as `OQSmutic`
/// answers them. A recipient is listed with `1` 有効 when a 医療券・調剤券 of that month names the
/// institution (with those tickets), or with `6` 有効（未登録） when their welfare office
/// designated the institution and the recipient is granted in that month but no ticket is
/// registered yet. A recipient whose office withheld them (DV) is never listed. Returns the
/// answer and the persons listed (for the audit log, each patient's own entry).
pub fn welfare_month(
    subsidies: &dyn SubsidyStore,
    persons: &dyn MedicalStore,
    register: &dyn Register,
    institution: &InstitutionCode,
    month: u32,
    now: Timestamp,
) -> Result<(onshi_api::subsidy::WelfareMonthAnswer, Vec<i64>), CenterError> {
    use onshi_api::subsidy::WelfareMonthAnswer;
    let first = Date::new((month / 100) as u16, (month % 100) as u8, 1)
        .ok_or_else(|| errors::invalid_field("month", &onshi_domain::FieldError::new("is not a month (YYYYMM)", &month.to_string())))?;
    let last = first.add_days(40).first_of_month().add_days(-1);
    let mut tickets: std::collections::BTreeMap<(String, String), Vec<MedicalTicketRecord>> = Default::default();
    for row in subsidies.tickets_at(institution.as_str(), month).map_err(store)? {
        tickets.entry((row.payer.as_str().to_string(), row.recipient.as_str().to_string())).or_default().push(row.ticket);
    }
    let mut keys: Vec<(String, String, bool)> = tickets.keys().map(|(p, r)| (p.clone(), r.clone(), true)).collect();
    for row in subsidies.welfare_designating(institution.as_str()).map_err(store)? {
        let key = (row.payer.as_str().to_string(), row.recipient.as_str().to_string());
        if !tickets.contains_key(&key) && !keys.iter().any(|(p, r, _)| *p == key.0 && *r == key.1) {
            keys.push((key.0, key.1, false));
        }
    }
    let mut answer = WelfareMonthAnswer { month: month.to_string(), recipients: Vec::new(), answered_at: now.to_string() };
    let mut listed = Vec::new();
    for (payer, recipient, ticketed) in keys {
        let (Ok(payer_number), Ok(recipient_number)) = (PublicPayerNumber::parse(&payer), RecipientNumber::parse(&recipient)) else {
            continue;
        };
        let rows = subsidies.subsidies_of_recipient(&payer_number, &recipient_number).map_err(store)?;
        // Withheld once, withheld: the office's DV mark hides every ticket and period.
        if rows.is_empty() || rows.iter().any(|r| r.terms.withheld) {
            continue;
        }
        let in_month = |r: &&SubsidyRow| r.valid_from <= last && r.terms.valid_to.is_none_or(|to| to >= first);
        let Some(period) = rows.iter().rev().find(in_month) else { continue };
        let validity = if ticketed { QualificationValidity::Valid } else { QualificationValidity::ValidUnregistered };
        if !ticketed && !period.terms.designated_institutions.iter().any(|c| c == institution.as_str()) {
            continue;
        }
        let here = tickets.remove(&(payer, recipient)).unwrap_or_default();
        let mut shown = recipient_shown(&rows, period, validity, true, here);
        if let Some(id) = persons.person_id(&period.person_ref).map_err(store)? {
            listed.push(id);
            let view = register.person_view(id).map_err(store)?;
            with_holder(&view, subsidies, &mut shown)?;
        }
        answer.recipients.push(shown);
    }
    Ok((answer, listed))
}

/// What the card path says of a person's 医療扶助 on the date of care, at the asking
/// institution: `1` 有効 with the 医療券 valid that day that name it; `6` 有効（未登録） when none
/// does (`designated` says whether the office designated the institution at all, so that
/// staff know to call the office); `2` 無効 with the stop date when the recipient's last period
/// ended in the month of care or the one before (a patient still holding last month's 医療券);
/// nothing for a recipient the office withheld (DV), or when the person is no recipient. A
/// person who moved between offices has one recipient number per office: the one granted on
/// the day, else the one stopped most recently. Other institutions' tickets are never shown:
/// they carry 傷病名.
pub fn welfare_on_card(
    subsidies: &dyn SubsidyStore,
    view: &[CoverageWithTerms],
    rows: &[SubsidyRow],
    institution: &InstitutionCode,
    on: Date,
) -> Result<Option<WelfareRecipient>, CenterError> {
    let mut recipients: Vec<Vec<SubsidyRow>> = Vec::new();
    for row in rows.iter().filter(|r| r.payer.as_str().starts_with("12")) {
        match recipients.iter_mut().find(|g| g[0].payer == row.payer && g[0].recipient == row.recipient) {
            Some(group) => group.push(row.clone()),
            None => recipients.push(vec![row.clone()]),
        }
    }
    // Granted on the day first, then a recent stop; among equals the later period.
    let chosen = recipients.iter().filter_map(|periods| welfare_standing(periods, on).map(|standing| (standing, periods))).max_by_key(
        |(standing, periods)| match standing {
            WelfareStanding::Granted(index) => (1, periods[*index].valid_from),
            WelfareStanding::Ended => (0, periods.last().map_or(on, |p| p.valid_from)),
        },
    );
    let Some((standing, recipient)) = chosen else { return Ok(None) };
    let month = u32::from(on.year()) * 100 + u32::from(on.month());
    let mut shown = match standing {
        WelfareStanding::Ended => {
            let last = recipient.last().expect("the recipient has a period");
            recipient_shown(recipient, last, QualificationValidity::Invalid, false, Vec::new())
        }
        WelfareStanding::Granted(index) => {
            let period = &recipient[index];
            let here: Vec<MedicalTicketRecord> = subsidies
                .tickets_of_recipient(&period.payer, &period.recipient, month)
                .map_err(store)?
                .into_iter()
                .map(|t| t.ticket)
                .filter(|t| t.institution_code == institution.as_str() && t.valid_from <= on && on <= t.valid_to)
                .collect();
            let designated = !here.is_empty() || period.terms.designated_institutions.iter().any(|c| c == institution.as_str());
            let validity = if here.is_empty() { QualificationValidity::ValidUnregistered } else { QualificationValidity::Valid };
            recipient_shown(recipient, period, validity, designated, here)
        }
    };
    with_holder(view, subsidies, &mut shown)?;
    Ok(Some(shown))
}

/// Where one recipient stands on a date of care (its periods oldest first).
#[derive(Debug, PartialEq, Eq)]
enum WelfareStanding {
    /// The period at this index covers the date.
    Granted(usize),
    /// The last period ended in the month of care or the month before.
    Ended,
}

fn welfare_standing(periods: &[SubsidyRow], on: Date) -> Option<WelfareStanding> {
    // Withheld once, withheld (as in the month's list).
    if periods.is_empty() || periods.iter().any(|r| r.terms.withheld) {
        return None;
    }
    if let Some(index) = periods.iter().rposition(|r| r.covers(on)) {
        return Some(WelfareStanding::Granted(index));
    }
    let last_day = periods.last().and_then(|r| r.terms.valid_to)?;
    let month_before = on.first_of_month().add_days(-1).first_of_month();
    (last_day < on && last_day >= month_before).then_some(WelfareStanding::Ended)
}

fn store(e: onshi_store::StoreError) -> CenterError {
    errors::register_unavailable(e.to_string())
}

/// One recipient as answers carry it: the office's numbers and name, the 生活保護 start (the
/// first period's) and stop, the validity and the tickets given.
fn recipient_shown(
    periods: &[SubsidyRow],
    period: &SubsidyRow,
    validity: QualificationValidity,
    designated: bool,
    tickets: Vec<MedicalTicketRecord>,
) -> WelfareRecipient {
    let started = periods.iter().map(|r| r.valid_from).min().unwrap_or(period.valid_from);
    let stopped = periods.last().and_then(|r| r.terms.valid_to).map(|to| to.add_days(1));
    WelfareRecipient {
        validity: CodeLabel { code: validity.code().to_string(), label: validity.label_ja().to_string() },
        payer_number: period.payer.as_str().to_string(),
        recipient_number: period.recipient.as_str().to_string(),
        office_name: period.terms.name.clone(),
        qualification_date: started.to_string(),
        disqualification_date: stopped.map(|d| d.to_string()),
        designated,
        name: None,
        name_kana: None,
        birth_date: None,
        sex: None,
        tickets: tickets
            .into_iter()
            .map(|t| onshi_api::subsidy::MedicalTicket {
                ticket_type: t.ticket_type,
                valid_from: t.valid_from.to_string(),
                valid_to: t.valid_to.to_string(),
                issue_number: t.issue_number,
                month: t.month.to_string(),
                institution_code: t.institution_code,
                institution_name: t.institution_name,
                injuries: t.injuries,
                treatment_type: t.treatment_type,
                self_pay_yen: t.self_pay_yen,
                combined: t.combined,
            })
            .collect(),
    }
}

/// The recipient's name, kana, birth date and sex: as their welfare office records them when
/// it sent a record (the A1 result is that office's), else as the register's latest coverage
/// does (`view`, the person's coverages).
fn with_holder(view: &[CoverageWithTerms], subsidies: &dyn SubsidyStore, shown: &mut WelfareRecipient) -> Result<(), CenterError> {
    if let Some(holder) = subsidies.welfare_holder(&payer_of(shown)?, &recipient_of(shown)?).map_err(store)? {
        shown.birth_date = Some(holder.birth_date.to_string());
        shown.sex = Some(holder.sex.code().to_string());
        shown.name = Some(holder.name);
        shown.name_kana = Some(holder.name_kana);
    } else if let Some(latest) = view.iter().max_by_key(|v| v.coverage.acquired_on) {
        shown.birth_date = Some(latest.coverage.holder.birth_date.to_string());
        shown.sex = Some(latest.coverage.holder.sex.code().to_string());
        if let Some(terms) = latest.terms.last() {
            shown.name = Some(terms.details.name.clone());
            shown.name_kana = Some(terms.details.name_kana.clone());
        }
    }
    Ok(())
}

fn payer_of(shown: &WelfareRecipient) -> Result<PublicPayerNumber, CenterError> {
    PublicPayerNumber::parse(&shown.payer_number).map_err(|e| errors::register_unavailable(format!("a stored payer number: {e}")))
}

fn recipient_of(shown: &WelfareRecipient) -> Result<RecipientNumber, CenterError> {
    RecipientNumber::parse(&shown.recipient_number).map_err(|e| errors::register_unavailable(format!("a stored recipient number: {e}")))
}

/// The welfare office's record of the person to compare at 初回登録 when no insurer covers them
/// now: the record of the recipient covering `today` (else whose period began last) — by
/// recipient, so one office's record never stands for another's.
pub fn welfare_record_for_link(
    subsidies: &dyn SubsidyStore,
    person: i64,
    today: Date,
) -> Result<Option<onshi_store::subsidy::WelfareHolder>, CenterError> {
    let rows = subsidies.subsidies_of_person(person).map_err(store)?;
    let Some(latest) = rows.iter().filter(|r| r.payer.as_str().starts_with("12")).max_by_key(|r| (r.covers(today), r.valid_from)) else {
        return Ok(None);
    };
    subsidies.welfare_holder(&latest.payer, &latest.recipient).map_err(store)
}

/// A month as `YYYYMM`, checked.
pub fn parse_month(text: &str) -> Result<u32, CenterError> {
    match (text.len(), text.parse::<u32>()) {
        (6, Ok(m)) if (1..=12).contains(&(m % 100)) && m / 100 >= 1900 => Ok(m),
        _ => Err(errors::invalid_field("month", &onshi_domain::FieldError::new("must be the 診療年月 as YYYYMM", text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_store::subsidy::SubsidyTerms;

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    /// One certificate period of recipient 0000018 of `payer`.
    fn period(payer: &str, from: &str, to: Option<&str>, withheld: bool) -> SubsidyRow {
        SubsidyRow {
            payer: PublicPayerNumber::with_check_digit(payer).unwrap(),
            recipient: RecipientNumber::with_check_digit("000001").unwrap(),
            person_ref: "p".into(),
            valid_from: d(from),
            terms: SubsidyTerms {
                name: "x".into(),
                valid_to: to.map(d),
                self_pay_cap_yen: None,
                income_segment: None,
                designated_institutions: vec![],
                withheld,
            },
            notified_at: Timestamp::at_start_of(d(from)),
            registered_at: Timestamp::at_start_of(d(from)),
        }
    }

    /// A DV mark on a later period hides the earlier, unmarked one too.
    #[test]
    fn a_mark_on_any_period_hides_the_recipient() {
        let row = |from: &str, to: Option<&str>, withheld: bool| period("5413601", from, to, withheld);
        let clinic = InstitutionCode::parse("1311234569").unwrap();
        let open = [row("20260101", Some("20260630"), false)];
        assert_eq!(shown_on(&open, &clinic, d("20260301")).len(), 1);
        let marked = [row("20260101", Some("20260630"), false), row("20260701", None, true)];
        assert!(shown_on(&marked, &clinic, d("20260301")).is_empty(), "the earlier period is hidden too");
        assert!(shown_on(&marked, &clinic, d("20260801")).is_empty());
    }

    /// The card path's standing of one 医療扶助 recipient, by the rules in the doc of
    /// [`welfare_on_card`]: granted on the day; ended in the month of care or the month before;
    /// older stops and withheld recipients not at all.
    #[test]
    fn a_welfare_recipient_stands_by_the_day_and_a_recent_stop_is_said() {
        let period = |from: &str, to: Option<&str>, withheld: bool| period("1213601", from, to, withheld);
        let two = [period("20250401", Some("20260331"), false), period("20260401", Some("20261015"), false)];
        assert_eq!(welfare_standing(&two, d("20250501")), Some(WelfareStanding::Granted(0)));
        assert_eq!(welfare_standing(&two, d("20261015")), Some(WelfareStanding::Granted(1)), "the last day is still covered");
        assert_eq!(welfare_standing(&two, d("20261016")), Some(WelfareStanding::Ended), "stopped this month");
        assert_eq!(welfare_standing(&two, d("20261130")), Some(WelfareStanding::Ended), "stopped last month");
        assert_eq!(welfare_standing(&two, d("20261201")), None, "stopped two months before: no longer said");
        assert_eq!(welfare_standing(&two, d("20250301")), None, "before the first period");
        let marked = [period("20250401", Some("20260331"), false), period("20260401", None, true)];
        assert_eq!(welfare_standing(&marked, d("20250501")), None, "a DV mark on any period hides them all");
        let shown = recipient_shown(&two, &two[1], QualificationValidity::Invalid, false, Vec::new());
        assert_eq!(
            (shown.qualification_date.as_str(), shown.disqualification_date.as_deref()),
            ("20250401", Some("20261016")),
            "the first start, and the stop as the first day no longer covered"
        );
    }
}
