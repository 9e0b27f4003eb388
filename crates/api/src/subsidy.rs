//! 公費 and local subsidies (医療費助成): what a public-expense payer registers about its
//! recipients, and what a clinic is told.
//!
//! A payer (a prefecture's 難病 or 小児慢性 programme, a city's 子ども医療費助成, 自立支援) holds
//! its own certificate (`urn:onshi:payer:<公費負担者番号>`) and writes only its own number, as an
//! insurer does. Its recipients are named by the same pseudonymous `person_ref` as insurers use,
//! never a My Number. A clinic sees a recipient's certificate only when the patient said yes at
//! the reader (「医療費助成の各種受給者証を利用しますか」) or when staff ask with the numbers
//! printed on the certificate and the patient's birth date.

use serde::{Deserialize, Serialize};

use crate::verify::CodeLabel;

/// What happened to a recipient's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubsidyEventKind {
    /// A certificate (受給者証) valid from `occurred_on`: a new one, a renewal, or new terms from
    /// that day (a certificate already starting that day is replaced, i.e. corrected).
    Grant,
    /// The certificate ends: `occurred_on` is the first day it is no longer valid.
    End,
}

/// One payer event, one JSON object per line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsidyEvent {
    /// The payer's own id of this event; importing it again changes nothing.
    pub event_id: String,
    pub kind: SubsidyEventKind,
    /// 公費負担者番号, 8 digits with its check digit.
    pub payer_number: String,
    /// 公費受給者番号, 7 digits with its check digit.
    pub recipient_number: String,
    /// Pseudonymous person reference, as the insurers use it.
    pub person_ref: String,
    /// `YYYYMMDD`.
    pub occurred_on: String,
    /// When the payer notified it, `YYYYMMDDHHmmss` (Japan time).
    pub notified_at: String,
    /// Required for `grant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SubsidyCertificate>,
}

/// The terms printed on a 受給者証.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsidyCertificate {
    /// 受給者証名, e.g. 特定医療費（指定難病）受給者証, 子ども医療費受給者証.
    pub name: String,
    /// Last valid day, `YYYYMMDD`; open-ended when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
    /// 自己負担上限額 (月額) in yen; 0 means no self-pay; absent when the programme has no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_pay_cap_yen: Option<u32>,
    /// 所得区分 as the programme writes it (e.g. 一般所得Ⅰ), shown as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income_segment: Option<String>,
    /// 指定医療機関: the institution codes (10 digits) where the certificate may be used; any
    /// institution when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub designated_institutions: Vec<String>,
    /// Not to be shown to any institution (DV and abuse cases): the register keeps it, no answer
    /// reveals it, not even that it exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
}

/// One certificate as a clinic sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subsidy {
    pub payer_number: String,
    pub recipient_number: String,
    /// 法別番号 (the payer number's first two digits) with the programme's name.
    pub law: CodeLabel,
    /// 受給者証名.
    pub name: String,
    pub valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_pay_cap_yen: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income_segment: Option<String>,
    /// Whether the asking institution is one of the certificate's designated institutions;
    /// absent when the certificate names none (usable anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub designated: Option<bool>,
}

/// Staff ask by the numbers printed on a 受給者証 (and the patient's birth date, as on the number
/// path), or the receipt pre-check asks about a claim's KO line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySubsidyRequest {
    /// Optional: must equal the certificate's code when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_code: Option<String>,
    pub payer_number: String,
    pub recipient_number: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// 診療日 `YYYYMMDD`.
    pub date_of_care: String,
}

/// The answer about one 受給者証.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidyAnswer {
    /// `valid` (the certificate covers the date of care), `not_valid_on_date` (registered, but
    /// not for that day), `not_registered` (the payer registers its recipients, this one is not
    /// among them for this birth date), `payer_not_connected` (the payer registers nothing with
    /// the center: the paper certificate is all there is, and nothing is known either way).
    pub state: String,
    pub reception_ja: String,
    /// The certificate on the date of care, or the nearest one registered for another date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsidy: Option<Subsidy>,
    pub date_of_care: String,
    /// `YYYYMMDDHHmmss`.
    pub answered_at: String,
}

/// The answer's states, in one place for the center, the receipt pre-check and the gateway.
pub mod state {
    pub const VALID: &str = "valid";
    pub const NOT_VALID_ON_DATE: &str = "not_valid_on_date";
    pub const NOT_REGISTERED: &str = "not_registered";
    pub const PAYER_NOT_CONNECTED: &str = "payer_not_connected";
}
