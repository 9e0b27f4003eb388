//! The マイナ保険証 path on the wire: challenges, reader registration, 初回登録 (card link),
//! verification by card with consent, and flagging a suspected wrong link.
//!
//! Proof of the card: on the PIN path the card signs [`card_message`]; on the face path (and in
//! visual mode) a reader registered to the calling institution signs [`attestation_message`].
//! Either message names the purpose of the request and carries what the patient chose (the
//! consent scopes and the time of the choice, the reason of a report, the consent withdrawn),
//! so that nothing the patient decides travels beside the proof where a caller could change
//! it. Signatures are ECDSA P-256 / SHA-256, DER, in lower-case hex.

use serde::{Deserialize, Serialize};

use crate::verify::VerifyAnswer;

/// A fresh single-use challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes, hex.
    pub challenge: String,
    /// `YYYYMMDDHHmmss` (Japan time); a proof after this is refused.
    pub expires_at: String,
}

/// A card reader's device key, registered to the calling institution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterReader {
    pub reader_id: String,
    /// The uncompressed P-256 public key (65 bytes), hex.
    pub public_key: String,
}

/// How the holder was authenticated at the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// 暗証番号: the card signed the challenge after its PIN.
    Pin,
    /// 顔認証: the reader matched the face and signed an attestation.
    Face,
    /// 目視: staff compared the card photo with the patient (visual mode, facility password).
    Visual,
}

impl Method {
    pub fn code(self) -> &'static str {
        match self {
            Method::Pin => "pin",
            Method::Face => "face",
            Method::Visual => "visual",
        }
    }
}

/// What a reader attests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub reader_id: String,
    /// `face_match`, `face_mismatch`, `visual`, or `recorded_visual` (a visual check staff
    /// recorded at the counter while the line was down, attested when it returns).
    pub result: String,
    pub signature: String,
}

/// What a request with a card proof is for; the card or the reader signs it, so a proof made
/// for one purpose cannot be used for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Verification at the counter, with the consents chosen on the reader.
    Verify,
    /// 初回登録: the holder agrees to use this card as an insurance card.
    Link,
    /// A clinic reports a suspected wrong link for the card on its reader.
    Report,
    /// The holder reads their own access log.
    AccessLog,
    /// The holder flags their own card's link.
    Flag,
    /// The holder withdraws a consent.
    Withdraw,
    /// The holder reads their own record: coverage, consents, reports, access log.
    Record,
    /// The holder, on their own device, consents to an institution's online care (再照会 without
    /// the card until a day).
    OnlineConsent,
}

impl Purpose {
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Link => "link",
            Purpose::Report => "report",
            Purpose::AccessLog => "access_log",
            Purpose::Flag => "flag",
            Purpose::Withdraw => "withdraw",
            Purpose::Record => "record",
            Purpose::OnlineConsent => "online_consent",
        }
    }
}

/// The message the card signs after its PIN: the purpose, the challenge and the details the
/// holder decided (see [`consent_details`], [`withdraw_details`]; a report's reason as is).
pub fn card_message(purpose: Purpose, challenge: &str, details: &str) -> Vec<u8> {
    format!("onshi-card/2\n{}\n{challenge}\n{details}", purpose.code()).into_bytes()
}

/// The message a reader signs: the purpose, the challenge, the card certificate's SHA-256, the
/// result of its check and the details the holder decided on its screens.
pub fn attestation_message(purpose: Purpose, challenge: &str, certificate_sha256_hex: &str, result: &str, details: &str) -> Vec<u8> {
    format!("onshi-attestation/2\n{}\n{challenge}\n{certificate_sha256_hex}\n{result}\n{details}", purpose.code()).into_bytes()
}

/// The details of a verification: every consent scope with its answer, and the counter time of
/// a recorded visual check (`YYYYMMDDHHmmss`, Japan time), `-` on a live check.
pub fn consent_details(choice: &ConsentChoice, chosen_at: &str) -> String {
    let bit = |b: bool| if b { '1' } else { '0' };
    let home = choice.home.map(|h| format!(" home={}:{}", h.kind.code(), h.until)).unwrap_or_default();
    format!(
        "drug={} checkup={} diagnosis={} limit={} specific_disease={} subsidy={}{home} chosen_at={chosen_at}",
        bit(choice.drug),
        bit(choice.checkup),
        bit(choice.diagnosis),
        bit(choice.limit),
        bit(choice.specific_disease),
        bit(choice.subsidy)
    )
}

/// The details of an online-care consent: the institution and the last day.
pub fn online_consent_details(institution_code: &str, until: &str) -> String {
    format!("institution={institution_code} online_until={until}")
}

/// The holder consents, from their own device with their own card and PIN, to an institution's
/// online care: the consent lands in that institution's list (`OQSmuonq`) with its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiveOnlineConsent {
    pub proof: CardProof,
    pub institution_code: String,
    /// `YYYYMMDD`.
    pub until: String,
}

/// What the holder is told: the period (the key goes to the institution only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineConsentGiven {
    pub institution_code: String,
    pub valid_from: String,
    pub valid_to: String,
}

/// The details of a withdrawal: the institution and the scopes, in the order given.
pub fn withdraw_details(institution_code: &str, scopes: &[String]) -> String {
    format!("institution={institution_code} scopes={}", scopes.join(","))
}

/// Proof that the card is present and its holder authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardProof {
    pub challenge: String,
    /// The card's user certificate (PEM).
    pub certificate: String,
    pub method: Method,
    /// PIN path: the card's signature over [`card_message`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_signature: Option<String>,
    /// Face and visual paths: the reader's attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
}

/// 初回登録: the holder's PIN-signed consent to use this card as an insurance card
/// ([`Purpose::Link`]). Nothing else is sent: whose card it is comes from the card authority's
/// binding, never from the clinic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCard {
    /// Must be the PIN path: registration needs the card's own signature.
    pub proof: CardProof,
}

/// The details a card signs at 初回登録.
pub const LINK_DETAILS: &str = "use-as-insurance-card";

/// The outcome of 初回登録.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linked {
    /// The certificate serial now linked.
    pub serial: String,
    /// `YYYYMMDDHHmmss`.
    pub linked_at: String,
}

/// The scopes a patient may consent to at the reader (DOMAIN.md §2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentChoice {
    /// 薬剤情報.
    #[serde(default)]
    pub drug: bool,
    /// 特定健診情報.
    #[serde(default)]
    pub checkup: bool,
    /// 診療・手術情報.
    #[serde(default)]
    pub diagnosis: bool,
    /// 限度額適用認定証関連情報.
    #[serde(default)]
    pub limit: bool,
    /// 特定疾病療養受療証.
    #[serde(default)]
    pub specific_disease: bool,
    /// 「医療費助成の各種受給者証を利用しますか」: the patient's 公費 and local subsidies are
    /// shown with this one answer (nothing is kept for later checks).
    #[serde(default)]
    pub subsidy: bool,
    /// 居宅同意取得型: the patient consents, at home or from their own device, to this
    /// institution re-confirming their coverage without the card until `until` (再照会).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomeCare>,
}

/// What a home-care consent covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeCare {
    pub kind: HomeCareKind,
    /// The last day of the ongoing care, `YYYYMMDD` as a number (the center refuses one that
    /// is not a date, in the past, or more than a year ahead).
    pub until: u32,
}

/// 訪問診療等 or オンライン診療等 (OQSCD028 MedicalTreatmentFlag 2 and 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeCareKind {
    Visit,
    Online,
}

impl HomeCareKind {
    pub fn code(self) -> &'static str {
        match self {
            HomeCareKind::Visit => "visit",
            HomeCareKind::Online => "online",
        }
    }
}

/// A home-care consent as recorded: the key a 再照会 presents, and its period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeConsent {
    pub key: String,
    pub kind: HomeCareKind,
    pub valid_from: String,
    pub valid_to: String,
}

/// 再照会: a later visit in the ongoing care, without the card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeReverify {
    pub key: String,
    /// `YYYYMMDD`; today when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_care: Option<String>,
}

/// The batch kinds (`OQSmuhvq` / `OQSmuonq`): the patients who gave this institution a
/// home-care consent of one kind on the days `from`–`to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeListRequest {
    pub kind: HomeCareKind,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HomeListEntry {
    pub consent: HomeConsent,
    /// Their coverage today.
    pub answer: VerifyAnswer,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HomeList {
    pub entries: Vec<HomeListEntry>,
}

impl ConsentChoice {
    /// Whether any medical-information scope (drugs, checkups, diagnoses) is chosen: those need
    /// the patient's own PIN or face, never a visual check by staff.
    /// The scopes given, by their codes (`drug`, `checkup`, `diagnosis`, `limit`,
    /// `specific_disease`, `subsidy`), in that order.
    pub fn scope_codes(&self) -> Vec<&'static str> {
        [
            (self.drug, "drug"),
            (self.checkup, "checkup"),
            (self.diagnosis, "diagnosis"),
            (self.limit, "limit"),
            (self.specific_disease, "specific_disease"),
            (self.subsidy, "subsidy"),
            (self.home.is_some_and(|h| h.kind == HomeCareKind::Visit), "home_visit"),
            (self.home.is_some_and(|h| h.kind == HomeCareKind::Online), "home_online"),
        ]
        .into_iter()
        .filter_map(|(given, code)| given.then_some(code))
        .collect()
    }

    pub fn opens_medical_information(&self) -> bool {
        self.drug || self.checkup || self.diagnosis
    }

    /// What a visual check may carry: the coverage-related scopes only (限度額, 特定疾病),
    /// asked orally by staff as on the number path.
    pub fn for_visual_check(self) -> ConsentChoice {
        ConsentChoice { drug: false, checkup: false, diagnosis: false, ..self }
    }
}

/// Verify by card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCard {
    pub proof: CardProof,
    /// `YYYYMMDD`; today when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_care: Option<String>,
    /// What the patient chose on the reader's consent screens; signed with `chosen_at` by the
    /// card or the reader ([`consent_details`]).
    #[serde(default)]
    pub consent: ConsentChoice,
    /// `YYYYMMDDHHmmss`: the counter time of a recorded visual check re-verified after an
    /// outage (signed by the reader), so that the check and its consent keep the time they
    /// were made. Absent on a live check: its time is the center's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_at: Option<String>,
}

/// One consent area of the result: `…ConsFlg`, `…ConsTime`, `…AvailableTime`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// OQSCD016: 0 同意なし, 1 同意あり, 2 同意有効期限切れ.
    pub flag: String,
    /// `YYYYMMDDHHmmss`, when consent was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_time: Option<String>,
    /// `YYYYMMDDHHmmss`, the viewing deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_time: Option<String>,
}

/// The consent areas, named as in the result XML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consents {
    /// `PharmacistsInfo*`.
    pub pharmacists_info: ConsentState,
    /// `SpecificHealthCheckupsInfo*`.
    pub specific_health_checkups_info: ConsentState,
    /// `DiagnosisInfo*` (and `OperationInfo*`).
    pub diagnosis_info: ConsentState,
    /// `LimitApplicationCertificateRelated*`.
    pub limit_application_certificate_related: ConsentState,
    /// `SpecificDiseasesCertificateRelated*`.
    pub specific_diseases_certificate_related: ConsentState,
}

/// The answer to a card verification: the coverage answer plus how the card was checked and
/// the consents in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardAnswer {
    #[serde(flatten)]
    pub answer: VerifyAnswer,
    pub method: Method,
    /// The card certificate's serial.
    pub serial: String,
    pub consents: Consents,
    /// The certificate near its end or past it (absent when neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateNotice>,
    /// A fresh challenge for this institution's next card check, so that a check needs one
    /// request, not two (absent when the institution's quota is full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_challenge: Option<Challenge>,
    /// The home-care consent this check recorded, with the key later visits present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_consent: Option<HomeConsent>,
}

/// What reception tells the holder about the card's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateNotice {
    /// `expiring` (renew soon) or `grace` (expired: eligibility only, no new consent).
    pub state: String,
    /// The certificate's last valid day, `YYYYMMDD`.
    pub expires_on: String,
    /// In grace: the last day eligibility is still confirmed, `YYYYMMDD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<String>,
    /// Whether consents chosen at the reader were refused for it (grace).
    pub consent_refused: bool,
    pub reception_ja: String,
}

/// A clinic reports that the card on its reader seems linked to the wrong person. The proof
/// ([`Purpose::Report`], the reason as details) shows the card was there; the report does not
/// block the card: the insurer reviews it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportLink {
    pub proof: CardProof,
    pub reason: String,
}

/// A report filed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFiled {
    pub report_id: i64,
    /// The certificate serial reported.
    pub serial: String,
    /// Whether the card is blocked until the review (a holder's own flag blocks it).
    pub blocked: bool,
}

/// A wrong-link report as the reviewing insurer sees it (no names: the insurer looks its
/// member up by the numbers it holds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    pub report_id: i64,
    pub serial: String,
    /// The reporting 医療機関コード, or `patient`.
    pub reporter: String,
    pub reason: String,
    /// `YYYYMMDDHHmmss`.
    pub filed_at: String,
    /// `open`, `confirmed` or `cleared`.
    pub state: String,
    /// The member's numbers at this insurer, to look the member up.
    pub insurer_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub number: String,
    pub branch: String,
}

/// The open reports about an insurer's members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReports {
    pub reports: Vec<LinkReport>,
}

/// The insurer's decision on a report: `confirm` (the link is wrong: it is undone) or `clear`
/// (the link is right: a blocked card verifies again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewLink {
    pub report_id: i64,
    pub decision: String,
    #[serde(default)]
    pub note: String,
}

/// The holder withdraws consents given to an institution, with their own card
/// ([`Purpose::Withdraw`], [`withdraw_details`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawConsent {
    pub proof: CardProof,
    pub institution_code: String,
    /// `drug`, `checkup`, `diagnosis`, `limit`, `specific_disease`.
    pub scopes: Vec<String>,
}

/// One line of a patient's access log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLogEntry {
    /// `YYYYMMDDHHmmss`.
    pub at: String,
    /// The 医療機関コード that looked, or `patient`.
    pub by: String,
    /// `verify_number`, `verify_card`, `view_drug`, `view_checkup`, `access_log`, …
    pub action: String,
    /// The outcome: a validity code, `ok`, or a refusal's code.
    pub code: String,
}

/// Who looked at a patient's records, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLog {
    /// The newest entries (at most [`ACCESS_LOG_ENTRIES_MAX`]), oldest first.
    pub entries: Vec<AccessLogEntry>,
    /// How many entries there are in all.
    #[serde(default)]
    pub total: u64,
}

/// Most entries one access-log answer carries.
pub const ACCESS_LOG_ENTRIES_MAX: usize = 1_000;

/// The card holder reports, with their own card (PIN; the reason signed as details), that it
/// seems linked to the wrong person. It blocks the card until the insurer reviews it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientFlag {
    pub proof: CardProof,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signed messages byte for byte, typed out here rather than built with the functions:
    /// a change that dropped a scope or the purpose from what is signed fails this.
    #[test]
    fn the_signed_messages_are_fixed_byte_for_byte() {
        let consent =
            ConsentChoice { drug: true, checkup: false, diagnosis: false, limit: true, specific_disease: false, subsidy: true, home: None };
        let home = ConsentChoice { home: Some(HomeCare { kind: HomeCareKind::Visit, until: 20270331 }), ..ConsentChoice::default() };
        assert_eq!(
            consent_details(&home, "-"),
            "drug=0 checkup=0 diagnosis=0 limit=0 specific_disease=0 subsidy=0 home=visit:20270331 chosen_at=-"
        );
        assert_eq!(consent_details(&consent, "-"), "drug=1 checkup=0 diagnosis=0 limit=1 specific_disease=0 subsidy=1 chosen_at=-");
        assert_eq!(
            card_message(Purpose::Verify, "c0ffee", &consent_details(&consent, "-")),
            b"onshi-card/2\nverify\nc0ffee\ndrug=1 checkup=0 diagnosis=0 limit=1 specific_disease=0 subsidy=1 chosen_at=-".to_vec()
        );
        assert_eq!(
            attestation_message(Purpose::Report, "c0ffee", "ab12", "face_match", "another name shown"),
            b"onshi-attestation/2\nreport\nc0ffee\nab12\nface_match\nanother name shown".to_vec()
        );
        assert_eq!(withdraw_details("1311234569", &["drug".into(), "checkup".into()]), "institution=1311234569 scopes=drug,checkup");
        assert_eq!(card_message(Purpose::Link, "c", LINK_DETAILS), b"onshi-card/2\nlink\nc\nuse-as-insurance-card".to_vec());
        for (purpose, code) in [
            (Purpose::Verify, "verify"),
            (Purpose::Link, "link"),
            (Purpose::Report, "report"),
            (Purpose::AccessLog, "access_log"),
            (Purpose::Flag, "flag"),
            (Purpose::Withdraw, "withdraw"),
        ] {
            assert_eq!(purpose.code(), code);
        }
    }
}

/// A consent as the patient sees it on their own page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientConsent {
    /// The 医療機関コード it was given to.
    pub institution_code: String,
    /// `drug`, `checkup`, `diagnosis`, `limit`, `specific_disease`.
    pub scope: String,
    /// `YYYYMMDDHHmmss`.
    pub given_at: String,
    /// The viewing deadline (閲覧有効期限), `YYYYMMDDHHmmss`.
    pub available_until: String,
    /// Whether the deadline is still ahead.
    pub in_force: bool,
}

/// A wrong-link report about one of the patient's cards, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientReport {
    pub report_id: i64,
    /// The card certificate's serial.
    pub serial: String,
    /// `patient` (the holder flagged it) or the 医療機関コード of the clinic that reported it.
    pub reporter: String,
    pub reason: String,
    /// `YYYYMMDDHHmmss`.
    pub filed_at: String,
    /// `open` (the insurer has not reviewed it yet), `confirmed` (the link was wrong and is
    /// undone), `cleared` (the link was right).
    pub state: String,
}

/// The patient's own record, read with their card (PIN, [`Purpose::Record`]): their coverage
/// as registered, the consents they gave, the reports about their cards, and who looked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatientRecord {
    /// One answer per coverage the register holds for the patient, as a clinic would be
    /// answered on its date: today for a coverage in force, else its last covered day.
    pub coverages: Vec<crate::verify::VerifyAnswer>,
    pub consents: Vec<PatientConsent>,
    pub reports: Vec<PatientReport>,
    pub access_log: AccessLog,
    /// The card's link is blocked by a wrong-link report until the insurer reviews it: the
    /// record then holds the reports about this card only, nothing of the person it is linked
    /// to (the card may be someone else's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}
