//! Home visits and online care (居宅同意取得型) through the request files, as OQD writes and reads
//! them (`../shared/docs/OQS-2024.md` §4): `OQSmuhvq01req_` (訪問診療等, MedicalTreatmentFlag 2)
//! and `OQSmuonq01req_` (オンライン診療等, flag 3) name a window of consent dates
//! (`ConsentDateFrom`/`To`, or for online care `ExaminationDateFrom`/`To`); the gateway asks the
//! center for the patients who gave this institution such a consent on those days and answers
//! with a ReceptionNumber; `…02req_` fetches one `BulkConfirmUnit` per patient with their
//! qualification today, parsed like `OQSmutic02res_`. While the center cannot be reached the
//! request waits in `req/`.

use onshi_api::card::{HomeCareKind, HomeList};

use crate::request::{Header, RequestError};
use crate::xml::{Charset, Element};

/// What a `…01req_` asks: the kind (from its prefix, checked against its flag) and the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub kind: HomeCareKind,
    pub from: String,
    pub to: String,
}

fn day(info: &Element, name: &'static str) -> Result<Option<String>, RequestError> {
    let Some(text) = info.value(name).map(str::trim) else { return Ok(None) };
    onshi_domain::Date::parse_yyyymmdd(text)
        .map(|_| Some(text.to_string()))
        .map_err(|_| RequestError::Invalid { element: name, detail: "must be a date YYYYMMDD".into() })
}

/// Reads a `…01req_` body for `kind`.
pub fn read_query(body: &Element, kind: HomeCareKind) -> Result<ListQuery, RequestError> {
    let info = body.find("QualificationConfirmSearchInfo").ok_or(RequestError::Missing("QualificationConfirmSearchInfo"))?;
    let expected = match kind {
        HomeCareKind::Visit => "2",
        HomeCareKind::Online => "3",
    };
    match info.value("MedicalTreatmentFlag").map(str::trim) {
        Some(flag) if flag == expected => {}
        Some(_) => {
            return Err(RequestError::Invalid {
                element: "MedicalTreatmentFlag",
                detail: format!("must be {expected} for this request kind (2 訪問診療等 in OQSmuhvq, 3 オンライン診療等 in OQSmuonq)"),
            });
        }
        None => return Err(RequestError::Missing("MedicalTreatmentFlag")),
    }
    let window = match (day(info, "ConsentDateFrom")?, day(info, "ConsentDateTo")?) {
        (Some(from), Some(to)) => (from, to),
        _ => match (day(info, "ExaminationDateFrom")?, day(info, "ExaminationDateTo")?) {
            (Some(from), Some(to)) => (from, to),
            _ => return Err(RequestError::Missing("ConsentDateFrom")),
        },
    };
    if window.1 < window.0 {
        return Err(RequestError::Invalid { element: "ConsentDateTo", detail: "is before ConsentDateFrom".into() });
    }
    Ok(ListQuery { kind, from: window.0, to: window.1 })
}

/// Keeps the keys of a list the center gave (a page fetch, or a `…01req_`), with whom each is
/// for, for the 再照会 of later visits. Returns how many.
pub fn keep_keys(store: &crate::store::Store, list: &HomeList, at: &str) -> Result<usize, crate::store::StoreError> {
    let mut kept = 0;
    for entry in &list.entries {
        if let Some(coverage) = &entry.answer.coverage {
            store.record_home_key(&entry.consent, &coverage.name, &coverage.birth_date, at)?;
            kept += 1;
        }
    }
    Ok(kept)
}

/// `…02res_`: the list by its ReceptionNumber (SegmentOfResult 9 for a number never given).
pub fn results(
    header: &Header,
    reception_number: &str,
    stored: Option<&(Header, HomeList)>,
    now: &str,
    institution_code: &str,
    charset: Charset,
) -> Vec<u8> {
    let unknown = "この受付番号の在宅・オンライン診療の照会はありません。01req で照会し直してください。";
    let stored = stored.map(|(h, list)| (h, list.entries.as_slice()));
    crate::answer_xml::list_results(header, reception_number, stored, unknown, now, institution_code, charset, |w, entry| {
        w.leaf("QualificationValidity", &entry.answer.validity.code);
        w.leaf("ProcessingResultStatus", "1");
        if let Some(coverage) = &entry.answer.coverage {
            crate::answer_xml::write_coverage(w, coverage, None, None, charset, None);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(kind: HomeCareKind, info: &str) -> Result<ListQuery, RequestError> {
        let text =
            format!("<XmlMsg><MessageBody><QualificationConfirmSearchInfo>{info}</QualificationConfirmSearchInfo></MessageBody></XmlMsg>");
        let root = crate::xml::parse_within(&text, crate::xml::Limits::REQUEST).unwrap();
        read_query(root.child("MessageBody").unwrap(), kind)
    }

    #[test]
    fn the_window_and_the_flag_are_read_as_oqd_writes_them() {
        let visit = "<ConsentDateFrom>20261201</ConsentDateFrom><ConsentDateTo>20261203</ConsentDateTo><MedicalTreatmentFlag>2</MedicalTreatmentFlag>";
        assert_eq!(
            read(HomeCareKind::Visit, visit).unwrap(),
            ListQuery { kind: HomeCareKind::Visit, from: "20261201".into(), to: "20261203".into() }
        );
        assert!(
            matches!(read(HomeCareKind::Online, visit), Err(RequestError::Invalid { element: "MedicalTreatmentFlag", .. })),
            "flag 2 in an online request"
        );
        let online = "<ExaminationDateFrom>20261201</ExaminationDateFrom><ExaminationDateTo>20261201</ExaminationDateTo><MedicalTreatmentFlag>3</MedicalTreatmentFlag>";
        assert_eq!(read(HomeCareKind::Online, online).unwrap().from, "20261201");
        let reversed = "<ConsentDateFrom>20261203</ConsentDateFrom><ConsentDateTo>20261201</ConsentDateTo><MedicalTreatmentFlag>2</MedicalTreatmentFlag>";
        assert!(read(HomeCareKind::Visit, reversed).is_err());
        assert!(matches!(read(HomeCareKind::Visit, "<MedicalTreatmentFlag>2</MedicalTreatmentFlag>"), Err(RequestError::Missing(_))));
    }
}
