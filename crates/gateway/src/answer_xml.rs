//! Result files (DOMAIN.md §2.2, §2.3): `OQSsiquc01res_…` for a request, the same shape in
//! `face/` after a card check, and the 一括照会 answers. Written strictly: only elements public
//! clients read, in their order.

use onshi_api::card::{ConsentState, Consents};
use onshi_api::verify::{Coverage, VerifyAnswer};

use crate::check::Outcome;
use crate::reference::{Found, Judged};
use crate::request::{Header, SearchInfo};
use crate::xml::{Charset, XmlWriter};

/// ReferenceClassification (OQSCD002).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    Card,
    Numbers,
}

/// Everything a single result file says.
pub struct SingleResult<'a> {
    pub header: &'a Header,
    pub search: Option<&'a SearchInfo>,
    pub outcome: &'a Outcome,
    pub reference: Reference,
    /// What changed since the batch (or since the answer given offline), for staff.
    pub changes: &'a [String],
    /// Since what: `一括照会` or `オフライン受付時`.
    pub changes_against: &'a str,
    /// `YYYYMMDDHHmmss`.
    pub now: &'a str,
    /// The clinic's code, written when the request did not carry one.
    pub institution_code: &'a str,
    pub charset: Charset,
    /// The 照会番号 registered for the answer's coverages ([`crate::reference::find`]).
    pub references: &'a Found,
}

/// Codes this gateway puts in ErrorCode / ProcessingResultCode for what it says itself.
pub const CODE_CACHED: &str = "ONSHI-GW-CACHED";
pub const CODE_QUEUED: &str = "ONSHI-GW-QUEUED";
pub const CODE_CHANGED: &str = "ONSHI-GW-CHANGED";
/// A card whose certificate ends soon ("更新のご案内") or has ended (eligibility only), when the
/// center's answer has no notice of its own (else its code stays and the text is added).
pub const CODE_CERTIFICATE: &str = "ONSHI-GW-CERTIFICATE";
/// Characters of a name, kana or address that Shift_JIS cannot hold were replaced by the rule
/// of [`crate::names`]; the message lists each one.
pub const CODE_CHARACTERS: &str = "ONSHI-GW-CHARACTERS";

pub fn single(result: &SingleResult<'_>) -> Vec<u8> {
    let mut w = XmlWriter::new(result.charset);
    w.open("XmlMsg");
    write_header(&mut w, result);
    w.open("MessageBody");
    write_body(&mut w, result);
    w.close();
    w.finish()
}

fn write_header(w: &mut XmlWriter, r: &SingleResult<'_>) {
    let h = r.header;
    w.open("MessageHeader");
    w.leaf("ProcessExecutionTime", r.now);
    w.leaf("QualificationConfirmationDate", h.confirmation_date.as_deref().unwrap_or(&r.now[..8]));
    w.leaf("MedicalInstitutionCode", h.institution_code.as_deref().unwrap_or(r.institution_code));
    w.opt("ArbitraryFileIdentifier", h.arbitrary_file_identifier.as_deref());
    w.leaf("ReferenceClassification", if r.reference == Reference::Card { "1" } else { "2" });
    match r.outcome {
        // 処理中: the answer will come by itself once the line is back.
        Outcome::Queued { .. } => {
            w.leaf("SegmentOfResult", "2");
            w.leaf("ErrorCode", CODE_QUEUED);
            w.leaf("ErrorMessage", &r.outcome.summary_ja());
        }
        _ => {
            w.leaf("SegmentOfResult", "1");
        }
    }
    w.leaf("CharacterCodeIdentifier", r.charset.identifier());
    w.close();
}

fn write_body(w: &mut XmlWriter, r: &SingleResult<'_>) {
    match r.outcome {
        Outcome::Refused { error } => {
            w.leaf("ProcessingResultStatus", "2");
            w.leaf("ProcessingResultCode", &error.code);
            w.leaf("ProcessingResultMessage", &refusal_message(error));
        }
        Outcome::Queued { .. } => {}
        Outcome::Answered { answer, .. } | Outcome::Cached { answer, .. } => {
            w.leaf("ProcessingResultStatus", "1");
            let coverages: Vec<&Coverage> = answer.coverage.iter().chain(answer.newer_coverage.iter()).collect();
            let withheld = r.references.notes(&coverages);
            if let Some((code, message)) =
                with_notes(processing_note(r, answer), answer_texts(&coverages, answer.welfare.as_ref()), r.charset, &withheld)
            {
                w.leaf("ProcessingResultCode", &code);
                w.leaf("ProcessingResultMessage", &message);
            }
            w.leaf("QualificationValidity", &answer.headline_validity().code);
        }
    }
    if let Some(search) = r.search {
        write_search(w, search);
    }
    if let Some(answer) = r.outcome.answer() {
        let consents = match r.outcome {
            Outcome::Answered { consents, .. } => consents.as_ref(),
            _ => None,
        };
        let limit_consent = r.search.map(|s| s.limit_consent);
        let coverages: Vec<&Coverage> = answer.coverage.iter().chain(answer.newer_coverage.iter()).collect();
        if !coverages.is_empty() || answer.welfare.is_some() {
            w.open("ResultList");
            // The consent flags ride on the insurance result, or on the 医療扶助 one for a
            // recipient no insurer registers.
            let welfare_consents = if coverages.is_empty() { consents } else { None };
            for coverage in coverages {
                let reference = reference_of(r.references, coverage);
                write_coverage(w, coverage, consents, limit_consent, r.charset, reference.as_deref());
            }
            // 医療扶助 after the insurance, as its own result (A1), as the public clients read
            // a unit holding both (OQS-2024.md §3, §5).
            if let Some(welfare) = &answer.welfare {
                crate::welfare::write_result(w, welfare, welfare_consents);
            }
            w.close();
        }
    }
}

/// What a result file says about a refusal: the action for reception, and for a field the
/// center refused, the center's detail too (which rule, and for a check digit which digit it
/// should be), as `onshi verify number` prints it: staff holding the card can then see a
/// mistyped last digit without asking the vendor. The detail never repeats a My Number (the
/// center withholds it).
pub fn refusal_message(error: &onshi_api::verify::ApiError) -> String {
    if error.field.is_none() || error.detail.trim().is_empty() {
        return error.reception_ja.clone();
    }
    let digit = if error.detail.contains("check digit") { "検証番号（最後の桁）が合いません。" } else { "" };
    format!("{}{digit}（{}）", error.reception_ja, error.detail)
}

/// The note beside a valid answer: an offline answer's age, a change since the batch, or the
/// center's own notice.
fn processing_note(r: &SingleResult<'_>, answer: &VerifyAnswer) -> Option<(String, String)> {
    if let Outcome::Cached { .. } = r.outcome {
        return Some((CODE_CACHED.to_string(), r.outcome.summary_ja()));
    }
    if !r.changes.is_empty() {
        return Some((CODE_CHANGED.to_string(), format!("{}から変更があります: {}", r.changes_against, r.changes.join("、"))));
    }
    let certificate = match r.outcome {
        Outcome::Answered { certificate: Some(notice), .. } => Some(notice),
        _ => None,
    };
    // The center's own code stays (receipt computers act on it); the card's notice is added to
    // the message after the center's.
    match (certificate, &answer.notice) {
        (Some(c), Some(n)) => Some((n.code.clone(), format!("{} {}", n.reception_ja, c.reception_ja))),
        (Some(c), None) => Some((CODE_CERTIFICATE.to_string(), c.reception_ja.clone())),
        (None, notice) => notice.as_ref().map(|n| (n.code.clone(), n.reception_ja.clone())),
    }
}

/// The fields whose text comes from the insurer as a person wrote it, with the name staff know
/// them by.
fn insurer_texts(c: &Coverage) -> [(&'static str, Option<&str>); 4] {
    [("氏名", Some(&c.name)), ("カナ氏名", Some(&c.name_kana)), ("被保険者氏名", c.insured_name.as_deref()), ("住所", c.address.as_deref())]
}

/// `text` as the answer carries it: unchanged in UTF-8, fitted to CP932 in Shift_JIS.
pub(crate) fn carried(text: &str, charset: Charset) -> std::borrow::Cow<'_, str> {
    match charset {
        Charset::Utf8 => std::borrow::Cow::Borrowed(text),
        Charset::ShiftJis => std::borrow::Cow::Owned(crate::names::fit_cp932(text).text),
    }
}

/// Every replacement a Shift_JIS answer makes in these coverages, described for staff
/// (`氏名 1文字目 U+20BB7→吉`); empty in UTF-8, which carries every character.
pub fn replacements(coverages: &[&Coverage], charset: Charset) -> Vec<String> {
    replacements_in(coverages.iter().flat_map(|c| insurer_texts(c)), charset)
}

/// The same for any labelled texts (a 医療扶助 result's names and office too).
fn replacements_in<'a>(texts: impl IntoIterator<Item = (&'static str, Option<&'a str>)>, charset: Charset) -> Vec<String> {
    if charset == Charset::Utf8 {
        return Vec::new();
    }
    let mut said = Vec::new();
    for (label, text) in texts {
        for replaced in text.map(|t| crate::names::fit_cp932(t).replaced).unwrap_or_default() {
            let line = format!("{label} {}", replaced.describe());
            if !said.contains(&line) {
                said.push(line);
            }
        }
    }
    said
}

/// The texts of an answer a result file carries as registered: its coverages' and its
/// 医療扶助 result's.
fn answer_texts<'a>(
    coverages: &[&'a Coverage],
    welfare: Option<&'a onshi_api::subsidy::WelfareRecipient>,
) -> Vec<(&'static str, Option<&'a str>)> {
    let mut texts: Vec<(&'static str, Option<&str>)> = coverages.iter().flat_map(|c| insurer_texts(c)).collect();
    if let Some(w) = welfare {
        texts.extend([("氏名", w.name.as_deref()), ("カナ氏名", w.name_kana.as_deref()), ("福祉事務所名", Some(w.office_name.as_str()))]);
    }
    texts
}

/// A 医療扶助 list unit's note when Shift_JIS could not carry its names as registered.
pub(crate) fn welfare_note(r: &onshi_api::subsidy::WelfareRecipient, charset: Charset) -> Option<(String, String)> {
    with_notes(None, answer_texts(&[], Some(r)), charset, &[])
}

/// The note with the replacements added (the receipt computer is told which characters are
/// not as registered, so that it keeps the spelling it has instead of overwriting it), and
/// the 照会番号 withheld from a person other than the one registered.
fn with_notes(
    note: Option<(String, String)>,
    texts: Vec<(&'static str, Option<&str>)>,
    charset: Charset,
    withheld: &[String],
) -> Option<(String, String)> {
    let replaced = replacements_in(texts, charset);
    let mut said: Vec<(&str, String)> = Vec::new();
    if !replaced.is_empty() {
        let text = format!(
            "Shift_JISで表せない文字を置き換えました（{}）。レセコンに登録済みの表記はそのままにしてください。",
            replaced.join("、")
        );
        said.push((CODE_CHARACTERS, text));
    }
    said.extend(withheld.iter().map(|w| (crate::reference::CODE_WITHHELD, w.clone())));
    let (code, mut message) = match note {
        Some(note) => note,
        None if said.is_empty() => return None,
        None => {
            let (code, text) = said.remove(0);
            (code.to_string(), text)
        }
    };
    for (_, text) in said {
        message.push(' ');
        message.push_str(&text);
    }
    Some((code, message))
}

pub fn write_search(w: &mut XmlWriter, s: &SearchInfo) {
    w.open("QualificationConfirmSearchInfo");
    w.leaf("InsurerNumber", &s.insurer_number);
    w.opt("InsuredCardSymbol", s.symbol.as_deref());
    w.leaf("InsuredIdentificationNumber", &s.number);
    w.opt("InsuredBranchNumber", s.branch.as_deref());
    w.leaf("Birthdate", &s.birth_date);
    w.leaf("LimitApplicationCertificateRelatedConsFlg", if s.limit_consent { "1" } else { "0" });
    w.opt("ArbitraryIdentifier", s.arbitrary_identifier.as_deref());
    w.close();
}

/// 6-digit 国保 numbers are written left-padded with spaces to 8 (MTS onshi-face.test.ts).
fn insurer_number_8(number: &str) -> String {
    format!("{number:>8}")
}

/// The 照会番号 a coverage's answer carries, if one is registered for it and the person is the
/// one registered.
fn reference_of(references: &Found, coverage: &Coverage) -> Option<String> {
    match references.for_coverage(coverage) {
        Some(Judged::Carried(number)) => Some(number),
        _ => None,
    }
}

/// One `ResultOfQualificationConfirmation`; `reference` is its 照会番号, written as the last
/// child, where public clients read it (OQS-2024.md §9).
pub(crate) fn write_coverage(
    w: &mut XmlWriter,
    c: &Coverage,
    consents: Option<&Consents>,
    limit_consent: Option<bool>,
    charset: Charset,
    reference: Option<&str>,
) {
    w.open("ResultOfQualificationConfirmation");
    w.leaf("InsuredCardClassification", &c.card_classification.code);
    w.leaf("InsurerNumber", &insurer_number_8(&c.insurer_number));
    w.opt("InsuredCardSymbol", c.symbol.as_deref());
    w.leaf("InsuredIdentificationNumber", &c.number);
    w.leaf("InsuredBranchNumber", &c.branch);
    w.leaf("PersonalFamilyClassification", &c.relationship.code);
    w.opt("InsuredName", c.insured_name.as_deref().map(|n| carried(n, charset)).as_deref());
    w.leaf("Name", &carried(&c.name, charset));
    w.leaf("NameKana", &carried(&c.name_kana, charset));
    w.leaf("Sex1", &c.sex.code);
    w.leaf("Birthdate", &c.birth_date);
    w.opt("Address", c.address.as_deref().map(|a| carried(a, charset)).as_deref());
    w.opt("PostNumber", c.post_code.as_deref());
    w.leaf("QualificationDate", &c.acquired_on);
    w.opt("DisqualificationDate", c.lost_on.as_deref());
    w.opt("ReasonOfLoss", c.loss_reason.as_ref().map(|r| r.code.as_str()));
    if let Some(ratio) = c.copay_ratio_percent {
        w.leaf("InsuredPartialContributionRatio", &format!("{ratio:03}"));
    }
    if c.preschool {
        w.leaf("PreschoolClassification", "1");
    }
    if c.elderly_recipient
        && let Some(ratio) = c.copay_ratio_percent
    {
        w.open("ElderlyRecipientCertificateInfo");
        w.leaf("ElderlyRecipientContributionRatio", &format!("{ratio:03}"));
        w.close();
    }
    match consents {
        Some(consents) => write_consents(w, consents),
        None => {
            if let Some(given) = limit_consent {
                w.leaf("LimitApplicationCertificateRelatedConsFlg", if given { "1" } else { "0" });
            }
        }
    }
    if let Some(limit) = &c.limit {
        w.open("LimitApplicationCertificateRelatedInfo");
        w.leaf("LimitApplicationCertificateClassification", &limit.classification.code);
        w.leaf("LimitApplicationCertificateClassificationFlag", &limit.category.code);
        w.leaf("LimitApplicationCertificateValidStartDate", &limit.valid_from);
        w.opt("LimitApplicationCertificateValidEndDate", limit.valid_to.as_deref());
        w.close();
    }
    w.opt("ReferenceNumber", reference);
    w.close();
}

fn write_consent(w: &mut XmlWriter, prefix: &str, state: &ConsentState, with_available: bool) {
    w.leaf(&format!("{prefix}ConsFlg"), &state.flag);
    w.opt(&format!("{prefix}ConsTime"), state.consent_time.as_deref());
    if with_available {
        w.opt(&format!("{prefix}AvailableTime"), state.available_time.as_deref());
    }
}

pub(crate) fn write_consents(w: &mut XmlWriter, c: &Consents) {
    write_consent(w, "LimitApplicationCertificateRelated", &c.limit_application_certificate_related, false);
    write_consent(w, "SpecificDiseasesCertificateRelated", &c.specific_diseases_certificate_related, false);
    write_consent(w, "SpecificHealthCheckupsInfo", &c.specific_health_checkups_info, true);
    write_consent(w, "PharmacistsInfo", &c.pharmacists_info, true);
    write_consent(w, "DiagnosisInfo", &c.diagnosis_info, true);
    write_consent(w, "OperationInfo", &c.diagnosis_info, true);
}

/// `OQSmuquc01res_`: the upload was taken under a reception number.
pub fn bulk_accepted(header: &Header, reception_number: &str, now: &str, institution_code: &str, charset: Charset) -> Vec<u8> {
    let mut w = XmlWriter::new(charset);
    w.open("XmlMsg").open("MessageHeader");
    w.leaf("ProcessExecutionTime", now);
    w.leaf("MedicalInstitutionCode", header.institution_code.as_deref().unwrap_or(institution_code));
    w.opt("ArbitraryFileIdentifier", header.arbitrary_file_identifier.as_deref());
    w.leaf("CharacterCodeIdentifier", charset.identifier());
    w.close().open("MessageBody");
    w.leaf("ReceptionNumber", reception_number);
    w.leaf("ReceptionDateTime", now);
    w.finish()
}

/// The `…02res_` of a list the center gave for a two-phase request (医療扶助's month, the
/// home-care consents): the header of the `…01req_` it answers, then one `BulkConfirmUnit` per
/// item written by `unit`; SegmentOfResult 9 and `unknown_ja` for a number never given.
#[allow(clippy::too_many_arguments)]
pub fn list_results<T>(
    header: &Header,
    reception_number: &str,
    stored: Option<(&Header, &[T])>,
    unknown_ja: &str,
    now: &str,
    institution_code: &str,
    charset: Charset,
    mut unit: impl FnMut(&mut XmlWriter, &T),
) -> Vec<u8> {
    let first = stored.map(|(h, _)| h).unwrap_or(header);
    let mut w = XmlWriter::new(charset);
    w.open("XmlMsg").open("MessageHeader");
    w.leaf("ProcessExecutionTime", now);
    w.leaf("MedicalInstitutionCode", first.institution_code.as_deref().unwrap_or(institution_code));
    w.opt("ArbitraryFileIdentifier", first.arbitrary_file_identifier.as_deref());
    w.leaf("ReceptionNumber", reception_number);
    w.leaf("CharacterCodeIdentifier", charset.identifier());
    let Some((_, items)) = stored else {
        w.leaf("SegmentOfResult", "9");
        w.leaf("ErrorCode", "ONSHI-GW-RECEPTION-UNKNOWN");
        w.leaf("ErrorMessage", unknown_ja);
        return w.finish();
    };
    w.leaf("SegmentOfResult", "1");
    w.leaf("NumberOfProcessingResult", &items.len().to_string());
    w.close().open("MessageBody");
    w.leaf("ProcessingResultStatus", "1");
    for item in items {
        w.open("BulkConfirmUnit");
        unit(&mut w, item);
        w.close();
    }
    w.finish()
}

/// One entry of a 一括照会 result.
pub struct BulkUnit<'a> {
    pub search: &'a SearchInfo,
    /// `None` while the entry waits for the line.
    pub outcome: Option<&'a Outcome>,
    pub changes: &'a [String],
}

/// `OQSmuquc02res_`: the results of a reception number (SegmentOfResult 2 while some entries
/// still wait for the line; 9 for an unknown reception number).
pub fn bulk_results(
    header: &Header,
    reception_number: &str,
    units: Option<&[BulkUnit<'_>]>,
    now: &str,
    institution_code: &str,
    charset: Charset,
    references: &Found,
) -> Vec<u8> {
    let mut w = XmlWriter::new(charset);
    w.open("XmlMsg").open("MessageHeader");
    w.leaf("ProcessExecutionTime", now);
    w.leaf("MedicalInstitutionCode", header.institution_code.as_deref().unwrap_or(institution_code));
    w.opt("ArbitraryFileIdentifier", header.arbitrary_file_identifier.as_deref());
    w.leaf("ReceptionNumber", reception_number);
    let Some(units) = units else {
        w.leaf("SegmentOfResult", "9");
        w.leaf("ErrorCode", "ONSHI-GW-RECEPTION-UNKNOWN");
        w.leaf("ErrorMessage", "この受付番号の一括照会はありません。OQSmuquc01req で照会し直してください。");
        w.leaf("CharacterCodeIdentifier", charset.identifier());
        return w.finish();
    };
    let waiting = units.iter().filter(|u| u.outcome.is_none()).count();
    let errors = units.iter().filter(|u| matches!(u.outcome, Some(Outcome::Refused { .. }))).count();
    w.leaf("SegmentOfResult", if waiting > 0 { "2" } else { "1" });
    if waiting > 0 {
        w.leaf("ErrorCode", CODE_QUEUED);
        w.leaf("ErrorMessage", &format!("{waiting} 件は回線復旧後に照会します。しばらくしてから再度取得してください。"));
    }
    w.leaf("NumberOfProcessingResult", &units.len().to_string());
    w.leaf("NumberOfNormalProcessing", &(units.len() - waiting - errors).to_string());
    w.leaf("NumberOfError", &errors.to_string());
    w.leaf("CharacterCodeIdentifier", charset.identifier());
    w.close().open("MessageBody");
    for unit in units {
        w.open("BulkConfirmUnit");
        write_search(&mut w, unit.search);
        match unit.outcome {
            None => {}
            Some(Outcome::Refused { error }) => {
                w.leaf("ProcessingResultStatus", "2");
                w.leaf("ProcessingResultCode", &error.code);
                w.leaf("ProcessingResultMessage", &refusal_message(error));
            }
            Some(outcome) => {
                w.leaf("ProcessingResultStatus", "1");
                let changed = (!unit.changes.is_empty())
                    .then(|| (CODE_CHANGED.to_string(), format!("前回の一括照会から変更: {}", unit.changes.join("、"))));
                let coverages: Vec<&Coverage> = outcome.answer().and_then(|a| a.coverage.as_ref()).into_iter().collect();
                if let Some((code, message)) = with_notes(changed, answer_texts(&coverages, None), charset, &references.notes(&coverages)) {
                    w.leaf("ProcessingResultCode", &code);
                    w.leaf("ProcessingResultMessage", &message);
                }
                if let Some(answer) = outcome.answer() {
                    w.leaf("QualificationValidity", &answer.validity.code);
                    if let Some(coverage) = &answer.coverage {
                        write_coverage(&mut w, coverage, None, Some(unit.search.limit_consent), charset, None);
                        // In a bulk answer the 照会番号 is a child of the unit (OQS-2024.md §9).
                        w.opt("ReferenceNumber", reference_of(references, coverage).as_deref());
                    }
                }
            }
        }
        w.close();
    }
    w.finish()
}

/// The `.err` file beside a refused request: what is wrong and what to do, Japanese first, in
/// the character set the client asked for (see [`crate::xml::err_charset`]): a Shift_JIS
/// receipt computer shows UTF-8 Japanese as garbage, and the Japanese line is the one staff read.
pub fn error_file(for_staff: &str, problem: &str, charset: Charset) -> Vec<u8> {
    crate::xml::encode(format!("{for_staff}\r\nThe request file was refused: {problem}\r\n"), charset)
}

/// What an `.err` says to staff first, by why the request was refused.
pub mod refusal_ja {
    pub const UNREADABLE: &str = "この照会ファイルは読めませんでした。ファイルを直してから、新しい名前で req/ に置き直してください。";
    pub const MY_NUMBER: &str = "番号欄にマイナンバー（個人番号）が入っています。保険証・資格確認書の記号・番号で照会し直してください（マイナンバーは受け付けず、記録もしません）。";
    pub const OTHER_INSTITUTION: &str =
        "照会ファイルの医療機関コードがこのゲートウェイと違います。レセコンの医療機関コードの設定を確かめてください。";
    pub const UNSUPPORTED: &str = "この種類の照会にはこのゲートウェイは答えません。レセコンの設定か、照会の方法を確かめてください。";
    pub const NO_BRANCH: &str =
        "枝番がありません。薬剤情報・特定健診情報はご本人ごとの情報のため、保険証・資格確認書の枝番（2桁）を入れて照会し直してください。";
    pub const TOO_LARGE: &str = "照会ファイルが大きすぎるため、読まずに受け付けませんでした。ファイルは req/ に残してあります。削除してから、正しい照会ファイルを置き直してください（一括照会は分けて送ってください）。";
    pub const TOO_MANY: &str =
        "照会ファイルの要素が多すぎるか、項目の文字が長すぎます。ファイルを直してから、新しい名前で req/ に置き直してください。";
    pub const INCOMPLETE: &str = "照会ファイルが書きかけのまま変わらないため、受け付けられませんでした。ファイルは req/ にそのまま残してあります（書き込みが続いて完成すれば、その時点で回答します）。書き込みが止まっている場合はレセコンを確かめ、req/ のファイルを削除してから照会し直してください。";
    pub const NOT_A_FILE: &str = "req/ に照会ファイルではないもの（ショートカット・リンクや特殊ファイル）が置かれたため、読みませんでした。そのまま残してあります。削除して、通常のファイルとして置き直してください。";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(field: Option<&str>, detail: &str) -> onshi_api::verify::ApiError {
        onshi_api::verify::ApiError {
            code: "INVALID_INSURER_NUMBER".into(),
            field: field.map(str::to_string),
            detail: detail.into(),
            reception_ja: "保険者番号が正しくありません。".into(),
            operator_en: String::new(),
        }
    }

    /// A card check's result file for `outcome`.
    fn card_result(outcome: &Outcome, charset: Charset) -> Vec<u8> {
        single(&SingleResult {
            header: &Header::default(),
            search: None,
            outcome,
            reference: Reference::Card,
            changes: &[],
            changes_against: "",
            now: "20261204090000",
            institution_code: "1311234569",
            charset,
            references: &Found::none(),
        })
    }

    #[test]
    fn a_check_digit_refusal_names_the_digit() {
        let detail = "insurer_number: the value fails the insurer number check digit (the last digit should be 8) (given \"06130480\")";
        let message = refusal_message(&refused(Some("insurer_number"), detail));
        assert!(message.starts_with("保険者番号が正しくありません。検証番号（最後の桁）が合いません。"), "{message}");
        assert!(message.contains("the last digit should be 8"), "{message}");
        assert_eq!(refusal_message(&refused(None, "anything")), "保険者番号が正しくありません。", "no field: the action alone");
    }

    #[test]
    fn a_card_result_carries_the_certificate_notice_after_the_centers_own_code_and_text() {
        let answer = VerifyAnswer {
            validity: onshi_api::verify::CodeLabel { code: "1".into(), label: "有効".into() },
            notice: Some(onshi_api::verify::Notice {
                code: "PENDING".into(),
                reception_ja: "来月から負担割合が変わります。".into(),
                operator_en: String::new(),
            }),
            date_of_care: "20261204".into(),
            coverage: None,
            newer_coverage: None,
            pending: vec![],
            as_of: None,
            insurer_lag: None,
            answered_at: "20261204090000".into(),
            replica_as_of: None,
            document: None,
            subsidies: Vec::new(),
            welfare: None,
        };
        let notice = onshi_api::card::CertificateNotice {
            state: "expiring".into(),
            expires_on: "20270201".into(),
            grace_until: None,
            consent_refused: false,
            reception_ja: "更新のご案内: 電子証明書は2027年2月1日に有効期限を迎えます。".into(),
        };
        let write = |outcome: &Outcome| String::from_utf8(card_result(outcome, Charset::Utf8)).unwrap();
        let with = write(&Outcome::Answered { answer: answer.clone(), consents: None, certificate: Some(notice) });

        assert!(with.contains("<ProcessingResultCode>PENDING</ProcessingResultCode>"), "the center's code stays: {with}");
        assert!(
            with.contains("<ProcessingResultMessage>来月から負担割合が変わります。 更新のご案内: 電子証明書は2027年2月1日に有効期限を迎えます。</ProcessingResultMessage>"),
            "both notices, the center's first: {with}"
        );
        let alone = write(&Outcome::Answered {
            answer: VerifyAnswer { notice: None, ..answer.clone() },
            consents: None,
            certificate: Some(onshi_api::card::CertificateNotice {
                state: "grace".into(),
                expires_on: "20261101".into(),
                grace_until: Some("20270228".into()),
                consent_refused: true,
                reception_ja: "電子証明書の有効期限が切れています。".into(),
            }),
        });
        assert!(alone.contains("<ProcessingResultCode>ONSHI-GW-CERTIFICATE</ProcessingResultCode>"), "{alone}");
        let without = write(&Outcome::Answered { answer, consents: None, certificate: None });
        assert!(without.contains("<ProcessingResultCode>PENDING</ProcessingResultCode>"), "{without}");
        assert!(!without.contains("更新のご案内"));
    }

    /// A 生活保護 recipient no insurer registers, whose name Shift_JIS cannot carry: the file's
    /// validity is the 医療扶助's (not 該当資格なし), the A1 result carries the name fitted by
    /// the documented rule, and the note says which character was replaced.
    #[test]
    fn a_welfare_only_card_result_heads_with_the_assistance_and_reports_a_replaced_character() {
        let code = |code: &str, label: &str| onshi_api::verify::CodeLabel { code: code.into(), label: label.into() };
        let answer = VerifyAnswer {
            validity: code("4", "該当資格なし"),
            notice: None,
            date_of_care: "20261204".into(),
            coverage: None,
            newer_coverage: None,
            pending: vec![],
            as_of: None,
            insurer_lag: None,
            answered_at: "20261204090000".into(),
            replica_as_of: None,
            document: None,
            subsidies: Vec::new(),
            welfare: Some(onshi_api::subsidy::WelfareRecipient {
                validity: code("1", "有効"),
                payer_number: "12136016".into(),
                recipient_number: "0000018".into(),
                office_name: "千代田区福祉事務所".into(),
                qualification_date: "20260101".into(),
                disqualification_date: None,
                designated: true,
                name: Some("\u{20BB7}田　一郎".into()),
                name_kana: Some("ﾖｼﾀﾞ ｲﾁﾛｳ".into()),
                birth_date: Some("19580707".into()),
                sex: Some("1".into()),
                tickets: Vec::new(),
            }),
        };
        let outcome = Outcome::Answered { answer, consents: None, certificate: None };
        let (xml, _) = crate::xml::decode(&card_result(&outcome, Charset::ShiftJis)).unwrap();
        let body = xml.split("<MessageBody>").nth(1).unwrap();
        assert!(body.contains("<QualificationValidity>1</QualificationValidity>"), "{body}");
        assert!(
            body.contains("<InsuredCardClassification>A1</InsuredCardClassification>") && body.contains("<Name>吉田　一郎</Name>"),
            "{body}"
        );
        assert!(
            body.contains(&format!("<ProcessingResultCode>{CODE_CHARACTERS}</ProcessingResultCode>")) && body.contains("U+20BB7"),
            "{body}"
        );
    }

    #[test]
    fn an_err_file_is_written_in_the_charset_asked_for() {
        let sjis = error_file(refusal_ja::UNREADABLE, "<Birthdate> is missing", Charset::ShiftJis);
        let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&sjis);
        assert!(!bad && text.starts_with(refusal_ja::UNREADABLE), "{text}");
        assert!(std::str::from_utf8(&sjis).is_err(), "not UTF-8");
        let utf8 = error_file(refusal_ja::UNREADABLE, "x", Charset::Utf8);
        assert!(std::str::from_utf8(&utf8).unwrap().starts_with(refusal_ja::UNREADABLE));
    }
}
