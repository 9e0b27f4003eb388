//! 公費 and local subsidies (医療費助成) in the register, behind [`SubsidyStore`]: each payer's
//! recipients with their dated certificates. The rules of applying a payer's event live here
//! once ([`decide`]); each engine reads a recipient's rows, lets the rules decide, and writes the
//! result.
//!
//! A recipient is named by the insurers' pseudonymous `person_ref`; a payer may register a
//! recipient before any insurer has (the person then has 公費 but no coverage yet).

use onshi_domain::ids::{PublicPayerNumber, RecipientNumber};
use onshi_domain::{Date, Timestamp};

use crate::StoreError;
use crate::model::ApplyOutcome;

/// The terms printed on one 受給者証 from its first day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsidyTerms {
    /// 受給者証名.
    pub name: String,
    /// Last valid day; open-ended when none.
    pub valid_to: Option<Date>,
    /// 自己負担上限額 (月額), yen.
    pub self_pay_cap_yen: Option<u32>,
    pub income_segment: Option<String>,
    /// 指定医療機関 codes; any institution when empty.
    pub designated_institutions: Vec<String>,
    /// Never shown to an institution (DV and abuse cases).
    pub withheld: bool,
}

/// What a payer event does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubsidyChange {
    /// A certificate from the event's day with these terms.
    Grant(SubsidyTerms),
    /// The certificate ends: the event's day is the first day not valid.
    End,
    /// 医療扶助: a 医療券・調剤券 for a month and an institution.
    Ticket(MedicalTicketRecord),
}

/// 医療券・調剤券 as stored (see `onshi_api::subsidy::MedicalTicket`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MedicalTicketRecord {
    /// OQSCD018 `01` / `02`.
    pub ticket_type: String,
    pub valid_from: Date,
    pub valid_to: Date,
    pub issue_number: String,
    /// 診療年月 as `YYYYMM`.
    pub month: u32,
    pub institution_code: String,
    pub institution_name: String,
    pub injuries: Vec<String>,
    /// OQSCD019 `01`–`05`.
    pub treatment_type: String,
    pub self_pay_yen: u32,
    pub combined: bool,
}

/// A stored ticket with whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRow {
    pub payer: PublicPayerNumber,
    pub recipient: RecipientNumber,
    pub ticket: MedicalTicketRecord,
}

/// A payer event after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsidyEventRecord {
    pub event_id: String,
    pub payer: PublicPayerNumber,
    pub recipient: RecipientNumber,
    pub person_ref: String,
    pub occurred_on: Date,
    pub notified_at: Timestamp,
    pub change: SubsidyChange,
    /// 医療扶助 grants only: the recipient as the welfare office records them.
    pub holder: Option<WelfareHolder>,
}

/// A 医療扶助 recipient as their welfare office records them: what 初回登録 compares the card
/// authority's attested attributes with when no insurer registers the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WelfareHolder {
    pub name: String,
    pub name_kana: String,
    pub birth_date: Date,
    pub sex: onshi_domain::codes::Sex,
    pub address: Option<String>,
}

/// One certificate period as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsidyRow {
    pub payer: PublicPayerNumber,
    pub recipient: RecipientNumber,
    pub person_ref: String,
    pub valid_from: Date,
    pub terms: SubsidyTerms,
    pub notified_at: Timestamp,
    pub registered_at: Timestamp,
}

impl SubsidyRow {
    pub fn covers(&self, on: Date) -> bool {
        self.valid_from <= on && self.terms.valid_to.is_none_or(|to| on <= to)
    }
}

pub trait SubsidyStore: Send + Sync {
    /// Applies a payer's events in order, in one transaction. Events already applied (by payer
    /// and event id) are skipped; an event that contradicts the register is rejected and writes
    /// nothing.
    fn apply_subsidy_events(&self, events: &[SubsidyEventRecord], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError>;

    /// Every certificate period of the person with this register id, withheld ones included
    /// (the caller decides what may be shown), by payer, recipient and first day.
    fn subsidies_of_person(&self, person_id: i64) -> Result<Vec<SubsidyRow>, StoreError>;

    /// Every certificate period of one recipient number, oldest first.
    fn subsidies_of_recipient(&self, payer: &PublicPayerNumber, recipient: &RecipientNumber) -> Result<Vec<SubsidyRow>, StoreError>;

    /// Whether this payer has registered anything: if not, the register knows nothing of its
    /// recipients either way, and a missing certificate means nothing.
    fn payer_registers(&self, payer: &PublicPayerNumber) -> Result<bool, StoreError>;

    /// 医療扶助: every ticket of month `month` (`YYYYMM`) naming this institution, withheld
    /// recipients' included (the caller decides what may be shown).
    fn tickets_at(&self, institution: &str, month: u32) -> Result<Vec<TicketRow>, StoreError>;

    /// 医療扶助: every ticket of month `month` (`YYYYMM`) of one recipient, at any institution
    /// (the card path answers those naming the asking institution).
    fn tickets_of_recipient(
        &self,
        payer: &PublicPayerNumber,
        recipient: &RecipientNumber,
        month: u32,
    ) -> Result<Vec<TicketRow>, StoreError>;

    /// 医療扶助: every certificate period of a welfare office (法別 12) that names this
    /// institution among its designated ones.
    fn welfare_designating(&self, institution: &str) -> Result<Vec<SubsidyRow>, StoreError>;

    /// 医療扶助: one recipient's own record from their welfare office, if it registered one
    /// (by recipient, never across offices: another office may have withheld the person).
    fn welfare_holder(&self, payer: &PublicPayerNumber, recipient: &RecipientNumber) -> Result<Option<WelfareHolder>, StoreError>;
}

/// The raw columns of `welfare_holders` as both engines read them: name, kana, birth date,
/// sex, address.
pub(crate) type RawHolder = (String, String, i64, String, Option<String>);

pub(crate) fn holder_of(raw: RawHolder) -> Result<WelfareHolder, StoreError> {
    let (name, name_kana, birth, sex, address) = raw;
    Ok(WelfareHolder {
        name,
        name_kana,
        birth_date: crate::rows::to_date(birth)?,
        sex: onshi_domain::codes::Sex::parse(&sex).map_err(|e| StoreError::Corrupt(format!("welfare_holders.sex: {e}")))?,
        address,
    })
}

/// The rule for a ticket: only a welfare office (法別 12) issues them, for a recipient it has
/// granted, under the same person.
pub fn check_ticket(existing: &[SubsidyRow], event: &SubsidyEventRecord) -> Result<(), ApplyOutcome> {
    let reject = |field, reason: String| ApplyOutcome::Rejected { field, reason };
    if !event.payer.as_str().starts_with("12") {
        return Err(reject("kind", "only a welfare office (法別 12, 医療扶助) issues 医療券・調剤券".into()));
    }
    if existing.is_empty() {
        return Err(reject(
            "recipient_number",
            format!("no grant of recipient {} is registered; grant before issuing tickets", event.recipient.as_str()),
        ));
    }
    if existing.iter().any(|r| r.person_ref != event.person_ref) {
        return Err(reject("person_ref", format!("recipient number {} is registered for another person", event.recipient.as_str())));
    }
    Ok(())
}

/// Tickets' columns, in this order (both engines).
pub(crate) const TICKET_COLUMNS: &str = "payer_number, recipient_number, month, institution_code, ticket_type, valid_from, valid_to, \
     issue_number, institution_name, injuries, treatment_type, self_pay_yen, combined";

/// A stored ticket as either engine reads it, in [`TICKET_COLUMNS`] order.
pub(crate) type RawTicket = (String, String, i64, String, String, i64, i64, String, String, String, String, i64, i64);

pub(crate) fn ticket_row(raw: RawTicket) -> Result<TicketRow, StoreError> {
    let (
        payer,
        recipient,
        month,
        institution_code,
        ticket_type,
        from,
        to,
        issue_number,
        institution_name,
        injuries,
        treatment,
        pay,
        combined,
    ) = raw;
    let corrupt = |what: &str, detail: String| StoreError::Corrupt(format!("ticket {what}: {detail}"));
    Ok(TicketRow {
        payer: PublicPayerNumber::parse(&payer).map_err(|e| corrupt("payer number", e.to_string()))?,
        recipient: RecipientNumber::parse(&recipient).map_err(|e| corrupt("recipient number", e.to_string()))?,
        ticket: MedicalTicketRecord {
            ticket_type,
            valid_from: crate::rows::to_date(from)?,
            valid_to: crate::rows::to_date(to)?,
            issue_number,
            month: u32::try_from(month).map_err(|_| corrupt("month", month.to_string()))?,
            institution_code,
            institution_name,
            injuries: injuries.split('\n').filter(|i| !i.is_empty()).map(str::to_string).collect(),
            treatment_type: treatment,
            self_pay_yen: u32::try_from(pay).map_err(|_| corrupt("self pay", pay.to_string()))?,
            combined: combined != 0,
        },
    })
}

/// The injuries as stored: joined by a newline (a name holds none; validation refuses one).
pub(crate) fn injuries_text(injuries: &[String]) -> String {
    injuries.join("\n")
}

/// The rules: one recipient's certificate periods before an event (all of this payer and
/// recipient number) → after it, or why the event is refused.
pub fn decide(existing: &[SubsidyRow], event: &SubsidyEventRecord, registered_at: Timestamp) -> Result<Vec<SubsidyRow>, ApplyOutcome> {
    let reject = |field, reason: String| ApplyOutcome::Rejected { field, reason };
    if event.holder.is_some() && !(event.payer.as_str().starts_with("12") && matches!(event.change, SubsidyChange::Grant(_))) {
        // Only a welfare office stands in for an insurer's member record, on its grant.
        return Err(reject(
            "certificate.recipient",
            "only a welfare office's grant (法別 12, 医療扶助) carries the recipient's own record".into(),
        ));
    }
    if existing.iter().any(|r| r.person_ref != event.person_ref) {
        // A recipient number names one person for good; a different person_ref is either a
        // mistake in the payer's file or an attempt to move someone's certificate.
        return Err(reject(
            "person_ref",
            format!(
                "recipient number {} of payer {} is registered for another person; a recipient number is never moved to someone else — give the new recipient a new number",
                event.recipient.as_str(),
                event.payer.as_str()
            ),
        ));
    }
    let day = event.occurred_on;
    let mut rows: Vec<SubsidyRow> = Vec::with_capacity(existing.len() + 1);
    match &event.change {
        SubsidyChange::Grant(terms) => {
            let new_end = terms.valid_to;
            for row in existing {
                if row.valid_from == day {
                    continue; // replaced: a correction of the certificate starting that day
                }
                if row.valid_from > day {
                    if new_end.is_none_or(|end| end >= row.valid_from) {
                        return Err(reject(
                            "occurred_on",
                            format!(
                                "a later certificate from {} is registered for this recipient; end or correct that one before granting one from {day} that overlaps it",
                                row.valid_from
                            ),
                        ));
                    }
                    rows.push(row.clone());
                } else {
                    let mut kept = row.clone();
                    if row.terms.valid_to.is_none_or(|to| to >= day) {
                        kept.terms.valid_to = Some(day.add_days(-1));
                    }
                    rows.push(kept);
                }
            }
            rows.push(SubsidyRow {
                payer: event.payer.clone(),
                recipient: event.recipient.clone(),
                person_ref: event.person_ref.clone(),
                valid_from: day,
                terms: terms.clone(),
                notified_at: event.notified_at,
                registered_at,
            });
        }
        SubsidyChange::Ticket(_) => {
            check_ticket(existing, event)?;
            rows.extend(existing.iter().cloned());
        }
        SubsidyChange::End => {
            if existing.is_empty() {
                return Err(reject(
                    "recipient_number",
                    format!("no certificate of recipient {} is registered; grant one before ending it", event.recipient.as_str()),
                ));
            }
            for row in existing {
                if row.valid_from >= day {
                    continue; // never valid now
                }
                let mut kept = row.clone();
                if row.terms.valid_to.is_none_or(|to| to >= day) {
                    kept.terms.valid_to = Some(day.add_days(-1));
                    kept.notified_at = event.notified_at;
                    kept.registered_at = registered_at;
                }
                rows.push(kept);
            }
        }
    }
    rows.sort_by_key(|r| r.valid_from);
    Ok(rows)
}

/// The designated institutions as stored: codes joined by `,` (empty for any institution).
pub(crate) fn designated_text(codes: &[String]) -> String {
    codes.join(",")
}

pub(crate) fn designated_list(text: &str) -> Vec<String> {
    text.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect()
}

/// The columns every read selects, in this order (both engines).
pub(crate) const COLUMNS: &str = "payer_number, recipient_number, person_ref, valid_from, valid_to, name, self_pay_cap_yen, \
     income_segment, designated, withheld, notified_at, registered_at";

/// One stored row as read by either engine, in [`COLUMNS`] order.
pub(crate) type RawSubsidy = (String, String, String, i64, Option<i64>, String, Option<i64>, Option<String>, String, i64, i64, i64);

pub(crate) fn subsidy_row(raw: RawSubsidy) -> Result<SubsidyRow, StoreError> {
    let (payer, recipient, person_ref, valid_from, valid_to, name, cap, income_segment, designated, withheld, notified, registered) = raw;
    let corrupt = |what: &str, detail: String| StoreError::Corrupt(format!("subsidy {what}: {detail}"));
    Ok(SubsidyRow {
        payer: PublicPayerNumber::parse(&payer).map_err(|e| corrupt("payer number", e.to_string()))?,
        recipient: RecipientNumber::parse(&recipient).map_err(|e| corrupt("recipient number", e.to_string()))?,
        person_ref,
        valid_from: crate::rows::to_date(valid_from)?,
        terms: SubsidyTerms {
            name,
            valid_to: crate::rows::to_opt_date(valid_to)?,
            self_pay_cap_yen: cap.map(|c| u32::try_from(c).map_err(|_| corrupt("self-pay cap", c.to_string()))).transpose()?,
            income_segment,
            designated_institutions: designated_list(&designated),
            withheld: withheld != 0,
        },
        notified_at: Timestamp::from_jst_seconds(notified),
        registered_at: Timestamp::from_jst_seconds(registered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    fn event(id: &str, person: &str, on: &str, change: SubsidyChange) -> SubsidyEventRecord {
        SubsidyEventRecord {
            event_id: id.into(),
            payer: PublicPayerNumber::with_check_digit("5413001").unwrap(),
            recipient: RecipientNumber::with_check_digit("123456").unwrap(),
            person_ref: person.into(),
            occurred_on: d(on),
            notified_at: Timestamp::at_start_of(d(on)),
            change,
            holder: None,
        }
    }

    fn grant(to: Option<&str>, cap: u32) -> SubsidyChange {
        SubsidyChange::Grant(SubsidyTerms {
            name: "特定医療費（指定難病）受給者証".into(),
            valid_to: to.map(d),
            self_pay_cap_yen: Some(cap),
            income_segment: None,
            designated_institutions: vec![],
            withheld: false,
        })
    }

    fn apply(rows: &[SubsidyRow], e: &SubsidyEventRecord) -> Result<Vec<SubsidyRow>, ApplyOutcome> {
        decide(rows, e, Timestamp::at_start_of(d("20261201")))
    }

    #[test]
    fn new_terms_from_a_day_close_the_period_before_it() {
        let rows = apply(&[], &event("1", "p1", "20260401", grant(Some("20270331"), 10_000))).unwrap();
        let rows = apply(&rows, &event("2", "p1", "20261001", grant(Some("20270331"), 5_000))).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].terms.valid_to, Some(d("20260930")));
        assert_eq!(rows[1].valid_from, d("20261001"));
        assert_eq!(rows[1].terms.self_pay_cap_yen, Some(5_000));
    }

    #[test]
    fn a_grant_on_the_same_day_corrects_the_certificate() {
        let rows = apply(&[], &event("1", "p1", "20260401", grant(None, 10_000))).unwrap();
        let rows = apply(&rows, &event("2", "p1", "20260401", grant(None, 2_500))).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].terms.self_pay_cap_yen, Some(2_500));
    }

    #[test]
    fn a_recipient_number_is_never_moved_to_another_person() {
        let rows = apply(&[], &event("1", "p1", "20260401", grant(None, 10_000))).unwrap();
        let refused = apply(&rows, &event("2", "p2", "20260501", grant(None, 0))).unwrap_err();
        assert!(matches!(refused, ApplyOutcome::Rejected { field: "person_ref", .. }), "{refused:?}");
    }

    #[test]
    fn an_end_closes_the_certificate_and_drops_what_had_not_begun() {
        let rows = apply(&[], &event("1", "p1", "20260401", grant(Some("20270331"), 10_000))).unwrap();
        let rows = apply(&rows, &event("2", "p1", "20270101", grant(None, 5_000))).unwrap();
        let rows = apply(&rows, &event("3", "p1", "20261201", SubsidyChange::End)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].terms.valid_to, Some(d("20261130")));
        assert!(rows[0].covers(d("20261130")) && !rows[0].covers(d("20261201")));
    }

    #[test]
    fn an_end_without_a_certificate_and_an_overlapping_earlier_grant_are_refused() {
        assert!(matches!(apply(&[], &event("1", "p1", "20260401", SubsidyChange::End)), Err(ApplyOutcome::Rejected { .. })));
        let rows = apply(&[], &event("1", "p1", "20260401", grant(None, 10_000))).unwrap();
        let refused = apply(&rows, &event("2", "p1", "20260101", grant(Some("20260601"), 0))).unwrap_err();
        assert!(matches!(refused, ApplyOutcome::Rejected { field: "occurred_on", .. }), "{refused:?}");
        // Ending before the later one begins is fine.
        let rows = apply(&rows, &event("3", "p1", "20260101", grant(Some("20260331"), 0))).unwrap();
        assert_eq!(rows.len(), 2);
    }
}
