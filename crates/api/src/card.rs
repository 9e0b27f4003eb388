//! The マイナ保険証 path on the wire: challenges, reader registration, 初回登録 (card link),
//! verification by card with consent, and flagging a suspected wrong link.
//!
//! Proof of the card: on the PIN path the card signs the challenge itself; on the face path
//! (and in visual mode) a reader registered to the calling institution signs an attestation of
//! [`attestation_message`]. Signatures are ECDSA P-256 / SHA-256, DER, in lower-case hex.

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
    /// `face_match`, `face_mismatch` or `visual`.
    pub result: String,
    pub signature: String,
}

/// The message a reader signs: the challenge, the card certificate's SHA-256 and the result.
pub fn attestation_message(challenge: &str, certificate_sha256_hex: &str, result: &str) -> Vec<u8> {
    format!("onshi-attestation/1\n{challenge}\n{certificate_sha256_hex}\n{result}").into_bytes()
}

/// Proof that the card is present and its holder authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardProof {
    pub challenge: String,
    /// The card's user certificate (PEM).
    pub certificate: String,
    pub method: Method,
    /// PIN path: the card's signature over the challenge (its hex text as bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_signature: Option<String>,
    /// Face and visual paths: the reader's attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
}

/// 券面事項 as the card presents them at 初回登録.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardHolderAttributes {
    pub name: String,
    pub name_kana: String,
    pub birth_date: String,
    pub sex: String,
    pub address: String,
}

/// 初回登録: link this card to the coverage with these numbers, if the holder is its member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCard {
    /// Must be the PIN path: registration needs the card's own signature.
    pub proof: CardProof,
    pub attributes: CardHolderAttributes,
    pub insurer_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub number: String,
    pub branch: String,
}

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
}

/// Verify by card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCard {
    pub proof: CardProof,
    /// `YYYYMMDD`; today when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_care: Option<String>,
    /// What the patient chose on the reader's consent screens.
    #[serde(default)]
    pub consent: ConsentChoice,
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
}

/// A clinic or the patient reports that a card seems linked to the wrong person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagLink {
    /// The card's user certificate (PEM).
    pub certificate: String,
    pub reason: String,
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
    pub entries: Vec<AccessLogEntry>,
}

/// The card holder reports, with their own card (PIN), that it seems linked to the wrong person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientFlag {
    pub proof: CardProof,
    pub reason: String,
}
