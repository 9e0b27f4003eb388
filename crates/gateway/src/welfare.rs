//! 医療扶助 (生活保護) through the request files, as the public clients write and read them
//! (`../shared/docs/OQS-2024.md` §3 and §5):
//!
//! - `OQSmutic01req_` names a 診療年月 (`MedicalTreatmentMonth`); the gateway asks the center for
//!   that month's recipients at this institution and answers with a ReceptionNumber. While the
//!   center cannot be reached the request stays in `req/` and is asked again on every pass (a
//!   month's list cannot be made up from a cache).
//! - `OQSmutic02req_` fetches the list by its ReceptionNumber: one `BulkConfirmUnit` per
//!   recipient, with `QualificationValidity` 1 (a ticket names this institution) or 6 有効（未登録）
//!   (designated, no ticket registered yet), a `ResultOfQualificationConfirmation` with card
//!   classification `A1`, the 公費負担者番号 and 受給者番号 in the insurer's and insured's number
//!   elements and the 福祉事務所名 as InsurerName, and the month's `MedicalTicketInfo` in
//!   `PublicExpenseResultList`. A recipient the office withheld (DV) is never in the list.

use onshi_api::subsidy::{MedicalTicket, WelfareMonthAnswer, WelfareRecipient};

use crate::request::{Header, RequestError};
use crate::xml::{Charset, Element, XmlWriter};

/// The month a `OQSmutic01req_` asks for.
pub fn read_month(body: &Element) -> Result<String, RequestError> {
    let info = body.find("QualificationConfirmSearchInfo").ok_or(RequestError::Missing("QualificationConfirmSearchInfo"))?;
    let month = info.value("MedicalTreatmentMonth").ok_or(RequestError::Missing("MedicalTreatmentMonth"))?.trim();
    let ok = month.len() == 6
        && month.bytes().all(|b| b.is_ascii_digit())
        && month[4..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
        && month[..4].parse::<u16>().is_ok_and(|y| y >= 1900);
    if !ok {
        return Err(RequestError::Invalid {
            element: "MedicalTreatmentMonth",
            detail: "must be the 診療年月 as YYYYMM (e.g. 202612)".into(),
        });
    }
    Ok(month.to_string())
}

fn ticket(w: &mut XmlWriter, t: &MedicalTicket) {
    w.open("MedicalTicketInfo");
    w.leaf("TicketType", &t.ticket_type);
    w.leaf("MedicalTicketValidDate", &t.valid_from);
    w.leaf("MedicalTicketExpirationDate", &t.valid_to);
    w.leaf("IssueNumber", &t.issue_number);
    w.leaf("MedicalTreatmentMonth", &t.month);
    w.leaf("DesignatedMedicalInstitutionCode", &t.institution_code);
    // The center lists only tickets naming this institution: 0 一致.
    w.leaf("DesignatedMedicalInstitutionFlag", "0");
    w.leaf("DesignatedMedicalInstitutionName", &t.institution_name);
    for (i, injury) in t.injuries.iter().enumerate().take(3) {
        w.leaf(["InjuryName1", "InjuryName2", "InjuryName3"][i], injury);
    }
    w.leaf("MedicalTreatmentType", &t.treatment_type);
    w.leaf("SelfPayAmount", &t.self_pay_yen.to_string());
    w.leaf("SingleOrCombinedUse", if t.combined { "02" } else { "01" });
    w.close();
}

/// One recipient's `BulkConfirmUnit` content.
fn recipient(w: &mut XmlWriter, r: &WelfareRecipient) {
    w.leaf("QualificationValidity", &r.validity.code);
    w.leaf("ProcessingResultStatus", "1");
    if let Some((code, message)) = crate::answer_xml::welfare_note(r, w.charset()) {
        w.leaf("ProcessingResultCode", &code);
        w.leaf("ProcessingResultMessage", &message);
    }
    write_result(w, r, None);
}

/// The recipient's `ResultOfQualificationConfirmation` (A1): in a month's unit, and in a card
/// check's `ResultList` after the insurance result.
/// `consents`: the card check's consent flags, for a recipient no insurer registers (they
/// follow `PublicExpenseResultList`, as `SpecificHealthCheckupsInfoConsFlg` does in the public
/// clients' field order).
pub(crate) fn write_result(w: &mut XmlWriter, r: &WelfareRecipient, consents: Option<&onshi_api::card::Consents>) {
    let charset = w.charset();
    let carried = |text: Option<&str>| text.map(|t| crate::answer_xml::carried(t, charset).into_owned());
    w.open("ResultOfQualificationConfirmation");
    w.leaf("InsuredCardClassification", "A1");
    w.leaf("InsurerNumber", &r.payer_number);
    w.leaf("InsuredIdentificationNumber", &r.recipient_number);
    w.opt("Name", carried(r.name.as_deref()).as_deref());
    w.opt("NameKana", carried(r.name_kana.as_deref()).as_deref());
    w.opt("Sex1", r.sex.as_deref());
    w.opt("Birthdate", r.birth_date.as_deref());
    w.leaf("QualificationDate", &r.qualification_date);
    w.opt("DisqualificationDate", r.disqualification_date.as_deref());
    w.leaf("InsurerName", &crate::answer_xml::carried(&r.office_name, charset));
    w.leaf("QualificationValidity", &r.validity.code);
    if !r.tickets.is_empty() {
        w.open("PublicExpenseResultList");
        for t in &r.tickets {
            ticket(w, t);
        }
        w.close();
    }
    if let Some(consents) = consents {
        crate::answer_xml::write_consents(w, consents);
    }
    w.close();
}

/// `OQSmutic02res_`: the month's list by its ReceptionNumber (SegmentOfResult 9 for a number
/// this gateway never gave).
pub fn results(
    header: &Header,
    reception_number: &str,
    stored: Option<&(Header, WelfareMonthAnswer)>,
    now: &str,
    institution_code: &str,
    charset: Charset,
) -> Vec<u8> {
    let unknown = "この受付番号の医療扶助の照会はありません。OQSmutic01req で照会し直してください。";
    let stored = stored.map(|(h, answer)| (h, answer.recipients.as_slice()));
    crate::answer_xml::list_results(header, reception_number, stored, unknown, now, institution_code, charset, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_must_be_yyyymm() {
        let read = |month: &str| {
            let text = format!(
                "<XmlMsg><MessageBody><QualificationConfirmSearchInfo><MedicalTreatmentMonth>{month}</MedicalTreatmentMonth></QualificationConfirmSearchInfo></MessageBody></XmlMsg>"
            );
            let root = crate::xml::parse_within(&text, crate::xml::Limits::REQUEST).unwrap();
            read_month(root.child("MessageBody").unwrap())
        };
        assert_eq!(read("202612").unwrap(), "202612");
        for bad in ["2026-12", "202613", "20261", "abcdef", "000012"] {
            assert!(matches!(read(bad), Err(RequestError::Invalid { element: "MedicalTreatmentMonth", .. })), "{bad}");
        }
    }
}
