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
    /// 医療扶助 only (法別 12, a welfare office): a 医療券 or 調剤券 for one month and one
    /// institution, in `ticket`; the recipient must have been granted before. A ticket for the
    /// same month, institution and type again replaces it (a correction).
    Ticket,
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
    /// Required for `grant`. For 医療扶助 (法別 12) its `name` is the welfare office's name
    /// (福祉事務所名), which answers carry as the InsurerName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SubsidyCertificate>,
    /// Required for `ticket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<MedicalTicket>,
}

/// 医療券・調剤券: what a welfare office issues a 生活保護 recipient for one month's care at one
/// designated institution (the structure of the national system's MedicalTicketInfo).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicalTicket {
    /// OQSCD018: `01` 医療券, `02` 調剤券.
    pub ticket_type: String,
    /// 有効開始年月日 / 有効終了年月日, `YYYYMMDD`.
    pub valid_from: String,
    pub valid_to: String,
    /// 交付番号.
    pub issue_number: String,
    /// 診療年月, `YYYYMM`.
    pub month: String,
    /// 指定医療機関コード (10 digits) and its name.
    pub institution_code: String,
    pub institution_name: String,
    /// 傷病名, at most three.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injuries: Vec<String>,
    /// OQSCD019: `01` 入院, `02` 入院外, `03` 歯科, `04` 調剤, `05` 訪問看護.
    pub treatment_type: String,
    /// 本人支払額 (自己負担額), yen.
    pub self_pay_yen: u32,
    /// 単独・併用別: false 単独 (01), true 併用 (02, with health insurance).
    #[serde(default)]
    pub combined: bool,
}

/// The 医療扶助 recipients of one month at the asking institution (`OQSmutic01/02`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WelfareMonthRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_code: Option<String>,
    /// 診療年月, `YYYYMM`.
    pub month: String,
}

/// One 医療扶助 recipient: of the month's list (`OQSmutic`), or of a card check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelfareRecipient {
    /// QualificationValidity: `1` 有効 (a ticket names this institution for the month), `6`
    /// 有効（未登録） (the office designated this institution but registered no ticket yet).
    pub validity: CodeLabel,
    /// 公費負担者番号 (法別 12) and 受給者番号.
    pub payer_number: String,
    pub recipient_number: String,
    /// 福祉事務所名.
    pub office_name: String,
    /// 生活保護 start (or restart) date, and its stop or abolition date when registered.
    pub qualification_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disqualification_date: Option<String>,
    /// Whether the office designated the asking institution (or a ticket names it). Always
    /// true in a month's list; on a card check false means: call the welfare office before
    /// treating under 医療扶助.
    #[serde(default)]
    pub designated: bool,
    /// The recipient as the register's coverages record them (absent for someone no insurer
    /// ever registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_kana: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// OQSCD007.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// The month's tickets naming this institution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<MedicalTicket>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelfareMonthAnswer {
    pub month: String,
    pub recipients: Vec<WelfareRecipient>,
    /// `YYYYMMDDHHmmss`.
    pub answered_at: String,
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
    /// 医療扶助 only: the recipient as the welfare office records them, for someone no insurer
    /// registers (most recipients leave 国保 when the assistance begins). 初回登録 of their card
    /// compares the card authority's attested attributes with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<RecipientRecord>,
}

/// A 医療扶助 recipient's own record at their welfare office.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientRecord {
    pub name: String,
    pub name_kana: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// OQSCD007 `1` 男, `2` 女, `3` 未設定.
    pub sex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
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
