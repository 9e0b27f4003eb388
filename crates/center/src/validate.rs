//! From wire events to register events: every field checked, every refusal naming its field.

use onshi_api::events::{self as wire, EventKind, InsurerEvent};
use onshi_domain::codes::{CardClassification, LimitCertificateClassification, ReasonOfLoss, Relationship, Sex, SpecificDisease};
use onshi_domain::copay::IncomeClass;
use onshi_domain::ids::{CardBranch, CardNumber, CardSymbol, InsurerNumber, PublicPayerNumber, RecipientNumber};
use onshi_domain::limit::LimitCategory;
use onshi_domain::{Date, FieldError, Timestamp};
use onshi_store::model::*;

/// A refused field: its dotted path and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub reason: String,
}

type Checked<T> = Result<T, Refusal>;

fn at<T>(field: &str, result: Result<T, FieldError>) -> Checked<T> {
    result.map_err(|e| {
        // Refusals end up in import reports and operators' logs: personal details (birth date,
        // names) are described, never echoed.
        let reason = if field.starts_with("member.") { format!("the value {}", e.reason) } else { format!("the value {e}") };
        Refusal { field: field.to_string(), reason }
    })
}

fn refuse<T>(field: &str, reason: &str) -> Checked<T> {
    Err(Refusal { field: field.to_string(), reason: reason.to_string() })
}

fn date(field: &str, text: &str) -> Checked<Date> {
    at(field, Date::parse_yyyymmdd(text))
}

fn opt_date(field: &str, text: Option<&String>) -> Checked<Option<Date>> {
    text.map(|t| date(field, t)).transpose()
}

/// Longest event id and person reference accepted.
const ID_CHARS_MAX: usize = 64;
/// Longest name, kana, address accepted.
const TEXT_CHARS_MAX: usize = 100;

fn bounded_text(field: &str, text: &str, required: bool) -> Checked<String> {
    let trimmed = text.trim();
    if required && trimmed.is_empty() {
        return refuse(field, "must not be empty");
    }
    if trimmed.chars().count() > TEXT_CHARS_MAX {
        return refuse(field, &format!("is longer than {TEXT_CHARS_MAX} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return refuse(field, "contains a control character");
    }
    Ok(trimmed.to_string())
}

fn identifier(field: &str, text: &str) -> Checked<String> {
    let ok = !text.is_empty()
        && text.len() <= ID_CHARS_MAX
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !ok {
        return refuse(field, &format!("must be 1–{ID_CHARS_MAX} ASCII letters, digits or - _ . :"));
    }
    // A bare 12-digit reference looks like a My Number (個人番号); the register never accepts one.
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return refuse(field, "looks like a My Number (12 digits); send the pseudonymous person reference instead, never the My Number");
    }
    Ok(text.to_string())
}

fn holder(member: &wire::Member) -> Checked<Holder> {
    Ok(Holder {
        birth_date: date("member.birth_date", &member.birth_date)?,
        sex: at("member.sex", Sex::parse(&member.sex))?,
        relationship: at("member.relationship", Relationship::parse(&member.relationship))?,
        card_classification: at("member.card_classification", CardClassification::parse(&member.card_classification))?,
    })
}

fn details(member: &wire::Member) -> Checked<MemberDetails> {
    let optional = |field: &str, value: &Option<String>| -> Checked<Option<String>> {
        value.as_deref().map(|v| bounded_text(field, v, false)).transpose().map(|v| v.filter(|s| !s.is_empty()))
    };
    Ok(MemberDetails {
        name: bounded_text("member.name", &member.name, true)?,
        name_kana: bounded_text("member.name_kana", &member.name_kana, true)?,
        insured_name: optional("member.insured_name", &member.insured_name)?,
        address: optional("member.address", &member.address)?,
        post_code: optional("member.post_code", &member.post_code)?,
    })
}

fn terms(terms: &wire::Terms, birth: Option<Date>) -> Checked<Terms> {
    let limit = match &terms.limit {
        None => None,
        Some(limit) => {
            let category = at("terms.limit.category", LimitCategory::parse(&limit.category))?;
            let valid_from = date("terms.limit.valid_from", &limit.valid_from)?;
            let valid_to = opt_date("terms.limit.valid_to", limit.valid_to.as_ref())?;
            if valid_to.is_some_and(|to| to < valid_from) {
                return refuse("terms.limit.valid_to", "is before valid_from");
            }
            if let Some(birth) = birth {
                let seventy = onshi_domain::copay::seventy_rule_start(birth);
                // Certificates are reissued when the 70 rule starts: B categories are for
                // certificates valid from then on, A categories for those valid from before.
                if category.is_seventy_and_over() && valid_from < seventy {
                    return refuse(
                        "terms.limit.category",
                        &format!("is a 70-and-over (B) category valid from before the 70 rule applies (from {seventy})"),
                    );
                }
                if !category.is_seventy_and_over() && valid_from >= seventy {
                    return refuse("terms.limit.category", "is an under-70 (A) category for a period after the 70 rule applies");
                }
            }
            Some(LimitCertificate {
                category,
                classification: at("terms.limit.classification", LimitCertificateClassification::parse(&limit.classification))?,
                valid_from,
                valid_to,
            })
        }
    };
    let specific_diseases = terms
        .specific_diseases
        .iter()
        .map(|d| {
            Ok(SpecificDiseaseCertificate {
                disease: at("terms.specific_diseases.category", SpecificDisease::parse(&d.category))?,
                valid_from: date("terms.specific_diseases.valid_from", &d.valid_from)?,
                valid_to: opt_date("terms.specific_diseases.valid_to", d.valid_to.as_ref())?,
                self_pay_yen: d.self_pay_yen,
            })
        })
        .collect::<Checked<Vec<_>>>()?;
    let public_expense = terms
        .public_expense
        .iter()
        .map(|p| {
            Ok(PublicExpenseCertificate {
                payer: at("terms.public_expense.payer_number", PublicPayerNumber::parse(&p.payer_number))?,
                recipient: at("terms.public_expense.recipient_number", RecipientNumber::parse(&p.recipient_number))?,
                valid_from: date("terms.public_expense.valid_from", &p.valid_from)?,
                valid_to: opt_date("terms.public_expense.valid_to", p.valid_to.as_ref())?,
            })
        })
        .collect::<Checked<Vec<_>>>()?;
    let qualification_certificate = match &terms.qualification_certificate {
        None => None,
        Some(c) => {
            let valid_from = date("terms.qualification_certificate.valid_from", &c.valid_from)?;
            let valid_to = date("terms.qualification_certificate.valid_to", &c.valid_to)?;
            let longest = onshi_domain::documents::CERTIFICATE_YEARS_MAX;
            let latest = Date::new(valid_from.year() + longest, valid_from.month(), 1)
                .map_or(valid_from, |first| first.add_days(i64::from(valid_from.day()) - 1));
            if valid_to < valid_from || valid_to > latest {
                return refuse(
                    "terms.qualification_certificate.valid_to",
                    &format!("must be on or after valid_from and at most {longest} years after it (the longest validity of a 資格確認書)"),
                );
            }
            Some(onshi_store::model::QualificationCertificate { valid_from, valid_to })
        }
    };
    Ok(Terms {
        income: at("terms.income_class", IncomeClass::parse(&terms.income_class))?,
        limit,
        specific_diseases,
        public_expense,
        qualification_certificate,
    })
}

/// Checks every field of a wire event and builds the register event.
pub fn coverage_event(event: &InsurerEvent) -> Checked<CoverageEvent> {
    let event_id = identifier("event_id", &event.event_id)?;
    let person_ref = identifier("person_ref", &event.person_ref)?;
    let insurer = at("insurer_number", InsurerNumber::parse(&event.insurer_number))?;
    let symbol = at("card.symbol", CardSymbol::parse(event.card.symbol.as_deref().unwrap_or("")))?;
    let number = at("card.number", CardNumber::parse(&event.card.number))?;
    let branch = match at("card.branch", CardBranch::parse(&event.card.branch))? {
        Some(branch) => branch,
        None => return refuse("card.branch", "must be given in insurer events (2 digits)"),
    };
    let occurred_on = date("occurred_on", &event.occurred_on)?;
    let notified_at = at("notified_at", Timestamp::parse(&event.notified_at))?;
    let body = match event.kind {
        EventKind::Acquire => {
            let Some(member) = &event.member else { return refuse("member", "is required for an acquisition") };
            let Some(wire_terms) = &event.terms else { return refuse("terms", "is required for an acquisition") };
            if event.loss_reason.is_some() {
                return refuse("loss_reason", "belongs only to a loss");
            }
            let holder = holder(member)?;
            if holder.birth_date > occurred_on {
                return refuse("occurred_on", "is before the member's birth date");
            }
            EventBody::Acquire { holder, details: details(member)?, terms: terms(wire_terms, Some(holder.birth_date))? }
        }
        EventKind::Change => {
            if event.member.is_none() && event.terms.is_none() {
                return refuse("member", "a change needs member or terms (or both)");
            }
            if event.loss_reason.is_some() {
                return refuse("loss_reason", "belongs only to a loss");
            }
            let holder = event.member.as_ref().map(holder).transpose()?;
            EventBody::Change {
                holder,
                details: event.member.as_ref().map(details).transpose()?,
                terms: event.terms.as_ref().map(|t| terms(t, holder.map(|h| h.birth_date))).transpose()?,
            }
        }
        EventKind::Lose => {
            let Some(reason) = &event.loss_reason else { return refuse("loss_reason", "is required for a loss (OQSCD008)") };
            if event.member.is_some() || event.terms.is_some() {
                return refuse("member", "a loss carries no member or terms");
            }
            EventBody::Lose { reason: at("loss_reason", ReasonOfLoss::parse(reason))? }
        }
    };
    Ok(CoverageEvent { event_id, insurer, person_ref, symbol, number, branch, occurred_on, notified_at, body })
}

/// A 医療券・調剤券, field by field.
fn medical_ticket(t: &onshi_api::subsidy::MedicalTicket) -> Checked<onshi_store::subsidy::MedicalTicketRecord> {
    let code = |field: &str, text: &str, allowed: &[&str]| -> Checked<String> {
        if allowed.contains(&text) { Ok(text.to_string()) } else { refuse(field, &format!("must be one of {}", allowed.join(", "))) }
    };
    let valid_from = date("ticket.valid_from", &t.valid_from)?;
    let valid_to = date("ticket.valid_to", &t.valid_to)?;
    if valid_to < valid_from {
        return refuse("ticket.valid_to", "is before ticket.valid_from");
    }
    let month = match (t.month.len(), t.month.parse::<u32>()) {
        (6, Ok(m)) if (1..=12).contains(&(m % 100)) && m / 100 >= 1900 => m,
        _ => return refuse("ticket.month", "must be the 診療年月 as YYYYMM"),
    };
    if t.injuries.len() > 3 {
        return refuse("ticket.injuries", "lists more than three 傷病名");
    }
    let injuries = t.injuries.iter().map(|i| bounded_text("ticket.injuries", i, true)).collect::<Checked<Vec<_>>>()?;
    Ok(onshi_store::subsidy::MedicalTicketRecord {
        ticket_type: code("ticket.ticket_type", &t.ticket_type, &["01", "02"])?,
        valid_from,
        valid_to,
        issue_number: bounded_text("ticket.issue_number", &t.issue_number, true)?,
        month,
        institution_code: at("ticket.institution_code", onshi_domain::ids::InstitutionCode::parse(&t.institution_code))?
            .as_str()
            .to_string(),
        institution_name: bounded_text("ticket.institution_name", &t.institution_name, true)?,
        injuries,
        treatment_type: code("ticket.treatment_type", &t.treatment_type, &["01", "02", "03", "04", "05"])?,
        self_pay_yen: t.self_pay_yen,
        combined: t.combined,
    })
}

/// Longest 受給者証名 and 所得区分 accepted, and most designated institutions on one certificate.
const DESIGNATED_MAX: usize = 50;

/// A 公費 payer's event, checked field by field like an insurer's.
pub fn subsidy_event(event: &onshi_api::subsidy::SubsidyEvent) -> Checked<onshi_store::subsidy::SubsidyEventRecord> {
    use onshi_api::subsidy::SubsidyEventKind;
    use onshi_store::subsidy::{SubsidyChange, SubsidyEventRecord, SubsidyTerms};
    let event_id = identifier("event_id", &event.event_id)?;
    let person_ref = identifier("person_ref", &event.person_ref)?;
    let payer = at("payer_number", PublicPayerNumber::parse(&event.payer_number))?;
    let recipient = at("recipient_number", RecipientNumber::parse(&event.recipient_number))?;
    let occurred_on = date("occurred_on", &event.occurred_on)?;
    let notified_at = at("notified_at", Timestamp::parse(&event.notified_at))?;
    if event.ticket.is_some() && event.kind != SubsidyEventKind::Ticket {
        return refuse("ticket", "belongs only to a ticket event");
    }
    let change = match (event.kind, &event.certificate) {
        (SubsidyEventKind::Grant, None) => return refuse("certificate", "is required for a grant"),
        (SubsidyEventKind::End | SubsidyEventKind::Ticket, Some(_)) => return refuse("certificate", "only a grant carries a certificate"),
        (SubsidyEventKind::End, None) => SubsidyChange::End,
        (SubsidyEventKind::Ticket, None) => {
            let Some(t) = &event.ticket else { return refuse("ticket", "is required for a ticket event") };
            SubsidyChange::Ticket(medical_ticket(t)?)
        }
        (SubsidyEventKind::Grant, Some(c)) => {
            let valid_to = opt_date("certificate.valid_to", c.valid_to.as_ref())?;
            if valid_to.is_some_and(|to| to < occurred_on) {
                return refuse("certificate.valid_to", "is before the certificate's first day (occurred_on)");
            }
            if c.designated_institutions.len() > DESIGNATED_MAX {
                return refuse("certificate.designated_institutions", &format!("lists more than {DESIGNATED_MAX} institutions"));
            }
            let designated_institutions = c
                .designated_institutions
                .iter()
                .map(|code| {
                    at("certificate.designated_institutions", onshi_domain::ids::InstitutionCode::parse(code))
                        .map(|c| c.as_str().to_string())
                })
                .collect::<Checked<Vec<_>>>()?;
            SubsidyChange::Grant(SubsidyTerms {
                name: bounded_text("certificate.name", &c.name, true)?,
                valid_to,
                self_pay_cap_yen: c.self_pay_cap_yen,
                income_segment: c.income_segment.as_deref().map(|t| bounded_text("certificate.income_segment", t, true)).transpose()?,
                designated_institutions,
                withheld: c.withheld,
            })
        }
    };
    let holder = match event.certificate.as_ref().and_then(|c| c.recipient.as_ref()) {
        None => None,
        Some(_) if !payer.as_str().starts_with("12") => {
            return refuse("certificate.recipient", "only a welfare office (法別 12, 医療扶助) sends the recipient's own record");
        }
        Some(r) => Some(onshi_store::subsidy::WelfareHolder {
            name: bounded_text("certificate.recipient.name", &r.name, true)?,
            name_kana: bounded_text("certificate.recipient.name_kana", &r.name_kana, true)?,
            birth_date: date("certificate.recipient.birth_date", &r.birth_date)?,
            sex: at("certificate.recipient.sex", Sex::parse(&r.sex))?,
            address: r
                .address
                .as_deref()
                .map(|a| bounded_text("certificate.recipient.address", a, false))
                .transpose()?
                .filter(|a| !a.is_empty()),
        }),
    };
    Ok(SubsidyEventRecord { event_id, payer, recipient, person_ref, occurred_on, notified_at, change, holder })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire() -> InsurerEvent {
        serde_json::from_str(
            r#"{"event_id":"e1","kind":"acquire","insurer_number":"06130488","person_ref":"r1",
                "card":{"symbol":"１２","number":"３４５","branch":"1"},"occurred_on":"20240401","notified_at":"20240403100000",
                "member":{"relationship":"1","card_classification":"01","name":"試験 花子","name_kana":"ｼｹﾝ ﾊﾅｺ","sex":"2","birth_date":"19560315"},
                "terms":{"income_class":"general"}}"#,
        )
        .unwrap()
    }

    fn refused_field(event: &InsurerEvent) -> String {
        coverage_event(event).unwrap_err().field
    }

    #[test]
    fn a_good_event_is_normalised() {
        let event = coverage_event(&acquire()).unwrap();
        assert_eq!((event.symbol.as_str(), event.number.as_str(), event.branch.to_string().as_str()), ("12", "345", "01"));
        assert_eq!(event.body.kind(), "acquire");
    }

    #[test]
    fn every_refusal_names_its_field() {
        let mut event = acquire();
        event.member = None;
        assert_eq!(refused_field(&event), "member");

        let mut event = acquire();
        event.person_ref = "123456789012".into();
        let refusal = coverage_event(&event).unwrap_err();
        assert_eq!(refusal.field, "person_ref");
        assert!(refusal.reason.contains("My Number"), "{}", refusal.reason);

        let mut event = acquire();
        event.kind = EventKind::Lose;
        event.member = None;
        event.terms = None;
        assert_eq!(refused_field(&event), "loss_reason");

        let mut event = acquire();
        event.kind = EventKind::Change;
        event.member = None;
        event.terms = None;
        assert_eq!(refused_field(&event), "member");

        let mut event = acquire();
        event.card.branch = String::new();
        assert_eq!(refused_field(&event), "card.branch");

        let mut event = acquire();
        event.member.as_mut().unwrap().birth_date = "19560230".into();
        let refusal = coverage_event(&event).unwrap_err();
        assert_eq!(refusal.field, "member.birth_date");
        assert!(!refusal.reason.contains("19560230"), "a birth date is never echoed: {}", refusal.reason);

        let mut event = acquire();
        event.occurred_on = "19500101".into();
        assert_eq!(refused_field(&event), "occurred_on", "acquired before birth");

        let mut event = acquire();
        event.notified_at = "2024040310".into();
        assert_eq!(refused_field(&event), "notified_at");

        let mut event = acquire();
        event.member.as_mut().unwrap().name = "a\u{7}b".into();
        assert_eq!(refused_field(&event), "member.name");
    }

    #[test]
    fn limit_categories_follow_the_seventy_rule() {
        // Born 1956-03-15: the 70 rule starts 2026-04-01.
        let with_limit = |category: &str, from: &str| {
            let mut event = acquire();
            event.terms.as_mut().unwrap().limit = Some(wire::LimitCertificate {
                category: category.into(),
                classification: "01".into(),
                valid_from: from.into(),
                valid_to: None,
            });
            coverage_event(&event)
        };
        assert!(with_limit("A03", "20250801").is_ok());
        assert_eq!(with_limit("B04", "20250801").unwrap_err().field, "terms.limit.category");
        assert!(with_limit("B04", "20260401").is_ok());
        assert_eq!(with_limit("A03", "20260401").unwrap_err().field, "terms.limit.category");
        assert_eq!(with_limit("C01", "20260401").unwrap_err().field, "terms.limit.category");
    }
}
