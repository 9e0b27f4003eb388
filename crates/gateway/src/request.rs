//! The requests of the file interface (DOMAIN.md §2.1, §2.3, §2.4), read from their file name
//! prefix and their element tree. Element names follow public clients; optional elements may be
//! absent and unknown ones are ignored.

use onshi_api::verify::VerifyNumberRequest;
use onshi_domain::ids::{MY_NUMBER_REFUSED, looks_like_my_number};

use crate::xml::{self, Charset, Element, XmlError};

/// The kinds of request file, by name prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `OQSsiquc01req_`: one qualification check.
    Single,
    /// `OQSmuquc01req_`: 一括照会 upload, answered with a ReceptionNumber.
    BulkUpload,
    /// `OQSmuquc02req_`: 一括照会 results by ReceptionNumber.
    BulkDownload,
    /// `YZKsiquc01req_`: 薬剤情報.
    Drugs,
    /// `TKKsiquc01req_`: 特定健診.
    Checkups,
    /// `OQSsiimm01req_`: register one 照会番号.
    RegisterReference,
    /// `OQSmuimm01req_`: register 照会番号 in bulk, answered with a ReceptionNumber.
    RegisterReferences,
    /// `OQSmuimm02req_`: the bulk registration's results by ReceptionNumber.
    RegisteredReferences,
    /// `OQSmutic01req_`: 医療扶助, one month's recipients at this institution.
    WelfareMonth,
    /// `OQSmutic02req_`: that month's list by ReceptionNumber.
    WelfareResults,
    /// `OQSmuhvq01req_` / `OQSmuonq01req_`: the home-care consents given on some days.
    HomeVisitList,
    OnlineList,
    /// `OQSmuhvq02req_` / `OQSmuonq02req_`: that list by ReceptionNumber.
    HomeVisitResults,
    OnlineResults,
}

impl Kind {
    const ALL: [(Kind, &'static str); 14] = [
        (Kind::Single, "OQSsiquc01req_"),
        (Kind::BulkUpload, "OQSmuquc01req_"),
        (Kind::BulkDownload, "OQSmuquc02req_"),
        (Kind::Drugs, "YZKsiquc01req_"),
        (Kind::Checkups, "TKKsiquc01req_"),
        (Kind::RegisterReference, "OQSsiimm01req_"),
        (Kind::RegisterReferences, "OQSmuimm01req_"),
        (Kind::RegisteredReferences, "OQSmuimm02req_"),
        (Kind::WelfareMonth, "OQSmutic01req_"),
        (Kind::WelfareResults, "OQSmutic02req_"),
        (Kind::HomeVisitList, "OQSmuhvq01req_"),
        (Kind::HomeVisitResults, "OQSmuhvq02req_"),
        (Kind::OnlineList, "OQSmuonq01req_"),
        (Kind::OnlineResults, "OQSmuonq02req_"),
    ];

    /// The kind of a request file name (`….xml`), `None` for other files.
    pub fn of_file_name(name: &str) -> Option<Kind> {
        if !name.to_ascii_lowercase().ends_with(".xml") {
            return None;
        }
        Kind::ALL.iter().find(|(_, prefix)| name.starts_with(prefix)).map(|(kind, _)| *kind)
    }

    /// The prefix of a request of the interface that this gateway does not answer (the
    /// 医療扶助/訪問診療/オンライン診療 bulk kinds, …): ten letters
    /// and digits, then `req_`, then a name ending `.xml`. Such a file gets an `.err` rather
    /// than lying in `req/` with its sender waiting.
    pub fn unsupported(name: &str) -> Option<&str> {
        (Kind::is_request_name(name) && Kind::of_file_name(name).is_none()).then(|| &name[..10])
    }

    /// Whether a file name has the shape of a request of the interface, answered or not (every
    /// kind in [`Kind::ALL`] has it).
    pub fn is_request_name(name: &str) -> bool {
        name.get(..10).is_some_and(|prefix| prefix.bytes().all(|b| b.is_ascii_alphanumeric()))
            && name.get(10..14) == Some("req_")
            && name.to_ascii_lowercase().ends_with(".xml")
    }

    /// What a refused unsupported request's `.err` says.
    pub fn unsupported_message(prefix: &str) -> String {
        let answered: Vec<&str> = Kind::ALL.iter().map(|(_, p)| p.trim_end_matches("req_")).collect();
        format!(
            "{prefix} requests are not answered by this gateway (it answers {}); send this one through the vendor's terminal or the center's own channel",
            answered.join(", ")
        )
    }

    /// What a request file of this kind may hold (see [`xml::Limits`]).
    pub fn limits(self) -> xml::Limits {
        match self {
            Kind::BulkUpload | Kind::RegisterReferences => xml::Limits::BULK_UPLOAD,
            _ => xml::Limits::REQUEST,
        }
    }

    /// The answer's file name: `req` replaced by `res`, same suffix.
    pub fn answer_name(request_name: &str) -> String {
        request_name.replacen("req_", "res_", 1)
    }
}

/// The header fields the gateway uses from any request.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub confirmation_date: Option<String>,
    pub institution_code: Option<String>,
    pub arbitrary_file_identifier: Option<String>,
    /// The character set the result is to be written in.
    pub charset: Option<Charset>,
}

/// One `QualificationConfirmSearchInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SearchInfo {
    pub insurer_number: String,
    pub symbol: Option<String>,
    pub number: String,
    pub branch: Option<String>,
    pub birth_date: String,
    pub limit_consent: bool,
    pub arbitrary_identifier: Option<String>,
}

impl SearchInfo {
    pub fn to_request(&self, date_of_care: Option<&str>) -> VerifyNumberRequest {
        VerifyNumberRequest {
            institution_code: None,
            // Kept as written (a 国保 number padded with spaces is accepted by the center).
            insurer_number: self.insurer_number.clone(),
            symbol: self.symbol.clone(),
            number: self.number.clone(),
            branch: self.branch.clone(),
            birth_date: self.birth_date.clone(),
            date_of_care: date_of_care.map(str::to_string),
            limit_consent: self.limit_consent,
            reverification: false,
            document: None,
        }
    }
}

/// A drug (YZK) or checkup (TKK) request: the patient by card numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MedicalRequest {
    pub insurer_number: String,
    pub symbol: Option<String>,
    pub number: String,
    /// Required, not optional as in a qualification check: medical information belongs to one
    /// person, and without the 枝番 the card's numbers name the whole family.
    pub branch: String,
}

/// A request read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Single {
        header: Header,
        search: SearchInfo,
    },
    BulkUpload {
        header: Header,
        entries: Vec<SearchInfo>,
    },
    BulkDownload {
        header: Header,
        reception_number: String,
    },
    Medical {
        header: Header,
        kind: Kind,
        patient: MedicalRequest,
    },
    /// 照会番号 registrations: one (`OQSsiimm01`) or a bulk file (`OQSmuimm01`).
    Register {
        header: Header,
        entries: Vec<crate::reference::Registration>,
        bulk: bool,
    },
    /// The results of a bulk registration (`OQSmuimm02`).
    Registered {
        header: Header,
        reception_number: String,
    },
    /// 医療扶助: one month's recipients (`OQSmutic01`).
    WelfareMonth {
        header: Header,
        month: String,
    },
    /// 医療扶助: that month's list by ReceptionNumber (`OQSmutic02`).
    WelfareResults {
        header: Header,
        reception_number: String,
    },
    /// Home-care consents given on some days (`OQSmuhvq01`, `OQSmuonq01`).
    HomeList {
        header: Header,
        query: crate::home::ListQuery,
    },
    /// That list by ReceptionNumber (`OQSmuhvq02`, `OQSmuonq02`).
    HomeResults {
        header: Header,
        kind: onshi_api::card::HomeCareKind,
        reception_number: String,
    },
}

impl Request {
    pub fn header(&self) -> &Header {
        match self {
            Request::Single { header, .. }
            | Request::BulkUpload { header, .. }
            | Request::BulkDownload { header, .. }
            | Request::Medical { header, .. }
            | Request::Register { header, .. }
            | Request::Registered { header, .. }
            | Request::WelfareMonth { header, .. }
            | Request::WelfareResults { header, .. }
            | Request::HomeList { header, .. }
            | Request::HomeResults { header, .. } => header,
        }
    }
}

/// Why a request cannot be answered as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("<{0}> is missing; add it to the request")]
    Missing(&'static str),
    #[error("<{element}> {detail}")]
    Invalid { element: &'static str, detail: String },
    /// A My Number typed into a card field: refused without repeating it, and the request
    /// file is not kept (see `files::refuse`).
    #[error("<{0}> {MY_NUMBER_REFUSED}")]
    MyNumber(&'static str),
    /// A YZK/TKK request without the 枝番: refused rather than read as 00, which would show the
    /// 本人's drug list or checkups to a family member asking under the same card numbers.
    #[error(
        "<BranchNumber> is missing; drug and checkup information belongs to one person and the 記号・番号 name the whole family, so write the 2-digit 枝番 printed on the card (it is never assumed to be 00)"
    )]
    NoBranch,
    /// A problem in one entry of a 一括照会 upload, counted from 1 so that staff can find it.
    #[error("{entry} number {index} of the file: {source}")]
    InEntry { entry: &'static str, index: usize, source: Box<RequestError> },
}

impl RequestError {
    /// The element that holds a My Number, when that is the problem.
    pub fn my_number_element(&self) -> Option<&'static str> {
        match self {
            RequestError::MyNumber(element) => Some(element),
            RequestError::InEntry { source, .. } => source.my_number_element(),
            _ => None,
        }
    }
}

/// The first of `fields` (name, value), in the caller's own names, that holds a My Number
/// instead of a card's 記号 or 番号.
pub fn holding_my_number<'a>(fields: &[(&'a str, Option<&str>)]) -> Option<&'a str> {
    fields.iter().find(|(_, value)| value.is_some_and(looks_like_my_number)).map(|(name, _)| *name)
}

/// Reads a request file of `kind`; returns it with the character set the file was in.
pub fn read(kind: Kind, bytes: &[u8]) -> Result<(Request, Charset), RequestError> {
    let limits = kind.limits();
    if bytes.len() as u64 > limits.bytes {
        return Err(XmlError::TooLarge { bytes: bytes.len() as u64, limit: limits.bytes }.into());
    }
    let (text, charset) = xml::decode(bytes)?;
    let root = xml::parse_within(&text, limits)?;
    let header_element = root.child("MessageHeader").ok_or(RequestError::Missing("MessageHeader"))?;
    let body = root.child("MessageBody").ok_or(RequestError::Missing("MessageBody"))?;
    let header = read_header(header_element)?;
    let request = match kind {
        Kind::Single => {
            let info = body.find("QualificationConfirmSearchInfo").ok_or(RequestError::Missing("QualificationConfirmSearchInfo"))?;
            Request::Single { header, search: read_search(info)? }
        }
        Kind::BulkUpload => {
            let entries = body
                .children_named("QualificationConfirmSearchInfo")
                .enumerate()
                .map(|(i, info)| {
                    read_search(info).map_err(|e| RequestError::InEntry {
                        entry: "QualificationConfirmSearchInfo",
                        index: i + 1,
                        source: Box::new(e),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if entries.is_empty() {
                return Err(RequestError::Missing("QualificationConfirmSearchInfo"));
            }
            Request::BulkUpload { header, entries }
        }
        Kind::BulkDownload => {
            let reception_number = body.value("ReceptionNumber").ok_or(RequestError::Missing("ReceptionNumber"))?.to_string();
            Request::BulkDownload { header, reception_number }
        }
        Kind::Drugs | Kind::Checkups => Request::Medical { header, kind, patient: read_medical(header_element)? },
        Kind::RegisterReference | Kind::RegisterReferences => {
            let bulk = kind == Kind::RegisterReferences;
            let entries = body
                .children_named("ReferenceNumberRegistrationInfo")
                .enumerate()
                .map(|(i, info)| {
                    crate::reference::read_registration(info).map_err(|e| {
                        if bulk {
                            RequestError::InEntry { entry: "ReferenceNumberRegistrationInfo", index: i + 1, source: Box::new(e) }
                        } else {
                            e
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            match entries.len() {
                0 => return Err(RequestError::Missing("ReferenceNumberRegistrationInfo")),
                1 => {}
                n if !bulk => {
                    return Err(RequestError::Invalid {
                        element: "ReferenceNumberRegistrationInfo",
                        detail: format!("occurs {n} times; OQSsiimm01 registers one patient (send several in OQSmuimm01)"),
                    });
                }
                _ => {}
            }
            Request::Register { header, entries, bulk }
        }
        Kind::RegisteredReferences => {
            let reception_number = body.value("ReceptionNumber").ok_or(RequestError::Missing("ReceptionNumber"))?.to_string();
            Request::Registered { header, reception_number }
        }
        Kind::WelfareMonth => Request::WelfareMonth { header, month: crate::welfare::read_month(body)? },
        Kind::WelfareResults => {
            let reception_number = body.value("ReceptionNumber").ok_or(RequestError::Missing("ReceptionNumber"))?.to_string();
            Request::WelfareResults { header, reception_number }
        }
        Kind::HomeVisitList | Kind::OnlineList => {
            let kind =
                if kind == Kind::HomeVisitList { onshi_api::card::HomeCareKind::Visit } else { onshi_api::card::HomeCareKind::Online };
            Request::HomeList { header, query: crate::home::read_query(body, kind)? }
        }
        Kind::HomeVisitResults | Kind::OnlineResults => {
            let kind =
                if kind == Kind::HomeVisitResults { onshi_api::card::HomeCareKind::Visit } else { onshi_api::card::HomeCareKind::Online };
            let reception_number = body.value("ReceptionNumber").ok_or(RequestError::Missing("ReceptionNumber"))?.to_string();
            Request::HomeResults { header, kind, reception_number }
        }
    };
    Ok((request, charset))
}

fn read_header(header: &Element) -> Result<Header, RequestError> {
    let charset = match header.value("CharacterCodeIdentifier") {
        None => None,
        Some(code) => Some(Charset::from_identifier(code).ok_or_else(|| RequestError::Invalid {
            element: "CharacterCodeIdentifier",
            detail: format!("is {code:?}; write 0 for UTF-8 or 1 for Shift_JIS"),
        })?),
    };
    if let Some(date) = header.value("QualificationConfirmationDate") {
        check_date("QualificationConfirmationDate", date)?;
    }
    Ok(Header {
        confirmation_date: header.value("QualificationConfirmationDate").map(str::to_string),
        institution_code: header.value("MedicalInstitutionCode").map(str::to_string),
        arbitrary_file_identifier: header.child("ArbitraryFileIdentifier").map(|e| e.text.clone()),
        charset,
    })
}

fn check_date(element: &'static str, value: &str) -> Result<(), RequestError> {
    onshi_domain::date::Date::parse_yyyymmdd(value)
        .map(|_| ())
        .map_err(|_| RequestError::Invalid { element, detail: format!("is {value:?}; write the date as YYYYMMDD") })
}

fn required<'a>(info: &'a Element, name: &'static str) -> Result<&'a str, RequestError> {
    info.value(name).ok_or(RequestError::Missing(name))
}

fn read_search(info: &Element) -> Result<SearchInfo, RequestError> {
    let consent = match info.value("LimitApplicationCertificateRelatedConsFlg") {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(RequestError::Invalid {
                element: "LimitApplicationCertificateRelatedConsFlg",
                detail: format!("is {other:?}; write 1 (同意) or 0 (未同意)"),
            });
        }
    };
    // The insurer number keeps its padding spaces: the center reads them as a 国保 number.
    let insurer_number = info
        .child("InsurerNumber")
        .map(|e| e.text.trim_end_matches(|c: char| c.is_whitespace()).to_string())
        .filter(|t| !t.trim().is_empty())
        .ok_or(RequestError::Missing("InsurerNumber"))?;
    let symbol = info.value("InsuredCardSymbol").map(str::to_string);
    let number = required(info, "InsuredIdentificationNumber")?.to_string();
    if let Some(field) = holding_my_number(&[("InsuredIdentificationNumber", Some(&number)), ("InsuredCardSymbol", symbol.as_deref())]) {
        return Err(RequestError::MyNumber(field));
    }
    Ok(SearchInfo {
        insurer_number,
        symbol,
        number,
        branch: info.value("InsuredBranchNumber").map(str::to_string),
        birth_date: required(info, "Birthdate")?.to_string(),
        limit_consent: consent,
        arbitrary_identifier: info.value("ArbitraryIdentifier").map(str::to_string),
    })
}

/// YZK/TKK requests carry the card numbers in the header, under their own names (OQD).
fn read_medical(header: &Element) -> Result<MedicalRequest, RequestError> {
    let symbol = header.value("InsuranceCardSymbol").map(str::to_string);
    let number = required(header, "InsuredPersonIdentificationNumber")?.to_string();
    if let Some(field) =
        holding_my_number(&[("InsuredPersonIdentificationNumber", Some(&number)), ("InsuranceCardSymbol", symbol.as_deref())])
    {
        return Err(RequestError::MyNumber(field));
    }
    Ok(MedicalRequest {
        insurer_number: required(header, "InsurerNumber")?.to_string(),
        symbol,
        number,
        branch: header.value("BranchNumber").ok_or(RequestError::NoBranch)?.to_string(),
    })
}

/// A single-check request file as a レセコン writes it (UTF-8, `standalone="no"`), for the
/// demo, the bench and tools that feed the interface.
pub fn single_request_xml(request: &VerifyNumberRequest, institution_code: &str, file_id: &str) -> String {
    let mut w = crate::xml::XmlWriter::new(Charset::Utf8);
    w.open("XmlMsg").open("MessageHeader");
    w.opt("QualificationConfirmationDate", request.date_of_care.as_deref());
    w.leaf("MedicalInstitutionCode", institution_code);
    w.leaf("ArbitraryFileIdentifier", file_id);
    w.close().open("MessageBody");
    let search = SearchInfo {
        insurer_number: request.insurer_number.clone(),
        symbol: request.symbol.clone(),
        number: request.number.clone(),
        branch: request.branch.clone(),
        birth_date: request.birth_date.clone(),
        limit_consent: request.limit_consent,
        arbitrary_identifier: None,
    };
    crate::answer_xml::write_search(&mut w, &search);
    String::from_utf8(w.finish()).expect("UTF-8 was asked for")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINGLE: &str = r#"<?xml version='1.0' encoding='UTF-8' standalone='no'?>
<XmlMsg>
  <MessageHeader>
    <QualificationConfirmationDate>20261125</QualificationConfirmationDate>
    <MedicalInstitutionCode>1310000001</MedicalInstitutionCode>
    <ArbitraryFileIdentifier>abc-1</ArbitraryFileIdentifier>
    <VendorExtension>x</VendorExtension>
  </MessageHeader>
  <MessageBody>
    <QualificationConfirmSearchInfo>
      <InsurerNumber>  123456</InsurerNumber>
      <InsuredCardSymbol>１２</InsuredCardSymbol>
      <InsuredIdentificationNumber>34</InsuredIdentificationNumber>
      <Birthdate>19800101</Birthdate>
      <LimitApplicationCertificateRelatedConsFlg>1</LimitApplicationCertificateRelatedConsFlg>
    </QualificationConfirmSearchInfo>
  </MessageBody>
</XmlMsg>"#;

    #[test]
    fn a_written_request_reads_back_the_same() {
        let request = VerifyNumberRequest {
            insurer_number: "06130488".into(),
            symbol: Some("12".into()),
            number: "345".into(),
            branch: Some("00".into()),
            birth_date: "19800101".into(),
            date_of_care: Some("20261125".into()),
            limit_consent: true,
            ..Default::default()
        };
        let (read_back, _) = read(Kind::Single, single_request_xml(&request, "1311234569", "f-1").as_bytes()).unwrap();
        let Request::Single { header, search } = read_back else { panic!("not a single check") };
        assert_eq!(header.arbitrary_file_identifier.as_deref(), Some("f-1"));
        assert_eq!(search.to_request(header.confirmation_date.as_deref()), request);
    }

    #[test]
    fn kinds_come_from_the_file_name() {
        assert_eq!(Kind::of_file_name("OQSsiquc01req_0001.xml"), Some(Kind::Single));
        assert_eq!(Kind::of_file_name("OQSmuquc02req_x.XML"), Some(Kind::BulkDownload));
        assert_eq!(Kind::of_file_name("OQSsiquc01req_0001.xml.tmp"), None);
        assert_eq!(Kind::of_file_name("notes.xml"), None);
        assert_eq!(Kind::of_file_name("OQSsiimm01req_2021081611906.xml"), Some(Kind::RegisterReference));
        assert_eq!(Kind::of_file_name("OQSmuimm02req_202612040001.xml"), Some(Kind::RegisteredReferences));
        assert_eq!(Kind::unsupported("OQSmutic01req_2021081611906.xml"), None, "answered since issue 15");
        assert_eq!(Kind::of_file_name("OQSmutic02req_202612040001.xml"), Some(Kind::WelfareResults));
        assert_eq!(Kind::unsupported("OQSsihvq01req_x.XML"), Some("OQSsihvq01"));
        for not_unsupported in ["OQSsiquc01req_1.xml", "notes.xml", "OQSsiimm01req_1.xml.part", "OQS-iimm01req_1.xml", "短い.xml"] {
            assert_eq!(Kind::unsupported(not_unsupported), None, "{not_unsupported}");
        }
        assert!(Kind::ALL.iter().all(|(_, prefix)| Kind::is_request_name(&format!("{prefix}1.xml"))), "every answered kind has the shape");
        assert!(
            Kind::unsupported_message("OQSsihvq01")
                .contains("OQSsiquc01, OQSmuquc01, OQSmuquc02, YZKsiquc01, TKKsiquc01, OQSsiimm01, OQSmuimm01, OQSmuimm02")
        );
        assert_eq!(Kind::answer_name("OQSsiquc01req_0001.xml"), "OQSsiquc01res_0001.xml");
    }

    #[test]
    fn reads_a_single_check_with_padding_full_width_digits_and_extra_elements() {
        let (request, charset) = read(Kind::Single, SINGLE.as_bytes()).unwrap();
        assert_eq!(charset, Charset::Utf8);
        let Request::Single { header, search } = request else { panic!("not a single check") };
        assert_eq!(header.arbitrary_file_identifier.as_deref(), Some("abc-1"));
        assert_eq!(header.charset, None);
        assert_eq!(search.insurer_number, "  123456");
        assert_eq!(search.symbol.as_deref(), Some("１２"));
        assert_eq!(search.branch, None);
        assert!(search.limit_consent);
        assert_eq!(search.to_request(header.confirmation_date.as_deref()).date_of_care.as_deref(), Some("20261125"));
    }

    /// Damaged copies of a request (bytes changed, inserted, removed, the file cut short; in
    /// UTF-8 and Shift_JIS) are read or refused with a message, never a panic.
    #[test]
    fn damaged_requests_are_refused_with_a_message_and_never_panic() {
        let utf8 = SINGLE.as_bytes().to_vec();
        let sjis = encoding_rs::SHIFT_JIS.encode(&SINGLE.replace("UTF-8", "Shift_JIS")).0.into_owned();
        // xorshift64: the same damaged files on every run.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const MARKUP: [u8; 13] = [b'<', b'>', b'&', b';', b'/', b'"', b'\'', b'!', b'?', b'#', b'x', 0x81, 0xEF];
        let (mut read_ok, mut refused) = (0, 0);
        for round in 0..10_000 {
            let mut bytes = if round % 2 == 0 { utf8.clone() } else { sjis.clone() };
            for _ in 0..1 + next() % 4 {
                let at = next() as usize % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at.max(1)),
                    2 => bytes.insert(at, MARKUP[next() as usize % MARKUP.len()]),
                    _ if bytes.len() > 1 => drop(bytes.remove(at)),
                    _ => {}
                }
            }
            for kind in [Kind::Single, Kind::BulkUpload, Kind::BulkDownload, Kind::Drugs] {
                match read(kind, &bytes) {
                    Ok(_) => read_ok += 1,
                    Err(e) => {
                        assert!(!e.to_string().trim().is_empty(), "an error without a message for {:?}", String::from_utf8_lossy(&bytes));
                        refused += 1;
                    }
                }
            }
        }
        // Both sides were exercised: damage that leaves a readable request, and damage that does not.
        assert!(read_ok > 0 && refused > 0, "read {read_ok}, refused {refused}");
    }

    #[test]
    fn a_my_number_in_a_card_field_is_refused_without_repeating_it() {
        let with_my_number = SINGLE.replace(
            "<InsuredIdentificationNumber>34</InsuredIdentificationNumber>",
            "<InsuredIdentificationNumber>１２３４５６７８９０１８</InsuredIdentificationNumber>",
        );
        let refused = read(Kind::Single, with_my_number.as_bytes()).unwrap_err();
        assert_eq!(refused, RequestError::MyNumber("InsuredIdentificationNumber"));
        assert!(refused.to_string().contains("My Number") && !refused.to_string().contains("9018"), "{refused}");
    }

    #[test]
    fn a_bulk_upload_names_the_entry_at_fault() {
        let entry = |number: &str, birth: &str| {
            format!(
                "<QualificationConfirmSearchInfo><InsurerNumber>06130488</InsurerNumber><InsuredIdentificationNumber>{number}</InsuredIdentificationNumber>{birth}</QualificationConfirmSearchInfo>"
            )
        };
        let upload = |entries: &[String]| {
            format!(
                "<XmlMsg><MessageHeader><MedicalInstitutionCode>1310000001</MedicalInstitutionCode></MessageHeader><MessageBody>{}</MessageBody></XmlMsg>",
                entries.concat()
            )
        };
        let good = entry("1", "<Birthdate>19800101</Birthdate>");
        let no_birth = upload(&[good.clone(), good.clone(), entry("3", "")]);
        let e = read(Kind::BulkUpload, no_birth.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "QualificationConfirmSearchInfo number 3 of the file: <Birthdate> is missing; add it to the request");
        let my_number = upload(&[good.clone(), entry("123456789018", "<Birthdate>19800101</Birthdate>")]);
        let e = read(Kind::BulkUpload, my_number.as_bytes()).unwrap_err();
        assert_eq!(e.my_number_element(), Some("InsuredIdentificationNumber"));
        assert!(e.to_string().contains("number 2") && !e.to_string().contains("9018"), "{e}");
    }

    /// Issue 11: a drug request without the 枝番 was read as 00, the 本人's.
    #[test]
    fn a_drug_or_checkup_request_without_a_branch_number_is_refused() {
        let yzk = |branch: &str| {
            format!(
                "<XmlMsg><MessageHeader><InsurerNumber>06130488</InsurerNumber><InsuredPersonIdentificationNumber>345</InsuredPersonIdentificationNumber>{branch}</MessageHeader><MessageBody/></XmlMsg>"
            )
        };
        for kind in [Kind::Drugs, Kind::Checkups] {
            for without in ["", "<BranchNumber></BranchNumber>", "<BranchNumber>  </BranchNumber>"] {
                assert_eq!(read(kind, yzk(without).as_bytes()).unwrap_err(), RequestError::NoBranch, "{kind:?} {without:?}");
            }
            let (request, _) = read(kind, yzk("<BranchNumber>01</BranchNumber>").as_bytes()).unwrap();
            let Request::Medical { patient, .. } = request else { panic!("not a medical request") };
            assert_eq!(patient.branch, "01");
        }
        assert!(RequestError::NoBranch.to_string().contains("枝番"));
    }

    #[test]
    fn names_what_is_missing_or_wrong() {
        let no_number = SINGLE.replace("<InsuredIdentificationNumber>34</InsuredIdentificationNumber>", "");
        assert_eq!(read(Kind::Single, no_number.as_bytes()).unwrap_err(), RequestError::Missing("InsuredIdentificationNumber"));
        let bad_flag = SINGLE.replace("ConsFlg>1<", "ConsFlg>yes<");
        assert!(read(Kind::Single, bad_flag.as_bytes()).unwrap_err().to_string().contains("write 1 (同意) or 0 (未同意)"));
        let bad_date = SINGLE.replace("20261125", "2026-11-25");
        assert!(read(Kind::Single, bad_date.as_bytes()).unwrap_err().to_string().contains("YYYYMMDD"));
        let bad_charset = SINGLE.replace("<VendorExtension>x</VendorExtension>", "<CharacterCodeIdentifier>9</CharacterCodeIdentifier>");
        assert!(read(Kind::Single, bad_charset.as_bytes()).unwrap_err().to_string().contains("0 for UTF-8 or 1 for Shift_JIS"));
    }
}
