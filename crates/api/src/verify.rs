//! Verification by card numbers (保険証 / 資格確認書 path): request, answer, batch, errors.

use serde::{Deserialize, Serialize};

/// "Can this person be treated on this coverage on this date, and on what terms?"
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyNumberRequest {
    /// 医療機関コード, optional (the XML header carries one). The center takes the institution
    /// from the client certificate and refuses a request naming another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_code: Option<String>,
    /// 保険者番号: 8 digits, or 6 for 国保 (space- or zero-padded forms are accepted).
    pub insurer_number: String,
    /// 記号 (optional; full-width digits are accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番 (optional; without it several family members may match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// 診療日 `YYYYMMDD`; today (Japan time) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_care: Option<String>,
    /// 限度額適用認定証関連情報の提供に口頭で同意 (OQSCD001 1). Without it no limit category is
    /// returned.
    #[serde(default)]
    pub limit_consent: bool,
    /// The gateway asks again about a check it answered offline (再照会 after an outage):
    /// audited as `reverify_number`, so that the operator's dashboard counts it as such.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverification: bool,
    /// The paper the numbers were read from: `qualification_certificate` (資格確認書),
    /// `insurance_card` (the old 保険証), `qualification_notice` (資格情報のお知らせ). The answer
    /// then says what that paper is worth on the date of care.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
}

/// "Who covers this patient?" when the card's numbers are not known: a claim billed as 不詳
/// (保険者番号 77777777) on the patient's 被保険者資格申立書, asked again by the attributes the
/// claim carries. The center answers only when exactly one person has them, and audits the
/// search where the patient sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyAttributesRequest {
    /// 医療機関コード, optional; as in [`VerifyNumberRequest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_code: Option<String>,
    /// カナ氏名 (half- or full-width katakana, or hiragana; spaces ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_kana: Option<String>,
    /// 氏名, compared when no kana is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// 1 男, 2 女.
    pub sex: String,
    /// 診療日 `YYYYMMDD`.
    pub date_of_care: String,
}

/// A code with the label staff read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeLabel {
    pub code: String,
    pub label: String,
}

/// A stable code with what to do about it: for reception in plain Japanese, for the vendor or
/// operator in English.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub code: String,
    pub reception_ja: String,
    pub operator_en: String,
}

/// The answer to a verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    /// QualificationValidity (OQSCD006) 1–5.
    pub validity: CodeLabel,
    /// Why the answer is what it is, when there is more to say than the validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
    /// The date the answer is for, `YYYYMMDD`.
    pub date_of_care: String,
    /// The coverage the card's numbers identify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    /// The coverage the same person holds on the date of care when this one has ended (振替).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_coverage: Option<Coverage>,
    /// Changes the insurer has notified that take effect after the date of care.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// When the register last changed the data behind this answer, `YYYYMMDDHHmmss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// How late this insurer registers, so that "該当資格なし" can be read with care.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer_lag: Option<InsurerLag>,
    /// When the center answered, `YYYYMMDDHHmmss`.
    pub answered_at: String,
    /// Present when the answer was read from a copy of the register that follows it,
    /// `YYYYMMDDHHmmss`: from a read replica, the commit time of the last change it had
    /// replayed; from the card index of a center on PostgreSQL, a second before it last caught
    /// up (every change committed by then is in it). Registrations after it may not be in this
    /// answer (a 該当資格なし may be one of them: ask again later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_as_of: Option<String>,
    /// What the paper the numbers came from is worth on the date of care, when the request
    /// named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentNote>,
    /// The patient's 公費 and local subsidies valid on the date of care: on the card path only,
    /// and only when the patient said yes at the reader to showing them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsidies: Vec<crate::subsidy::Subsidy>,
    /// 医療扶助 (生活保護) on a card check: the recipient's standing at the asking institution
    /// on the date of care (InsuredCardClassification A1 in the result files), with the
    /// month's 医療券・調剤券 naming it. Not kept in a gateway's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welfare: Option<crate::subsidy::WelfareRecipient>,
}

impl VerifyAnswer {
    /// The validity a result file's `QualificationValidity` and reception's headline carry:
    /// the insurance's, unless it is not valid on the date of care and the patient's 医療扶助 is
    /// (`1`, or `6` 有効（未登録）). A 生活保護 recipient whose 国保 ended when the assistance
    /// began must not be shown 無効: they are covered, by the welfare office.
    pub fn headline_validity(&self) -> &CodeLabel {
        match &self.welfare {
            Some(w) if self.covered_by_welfare() => &w.validity,
            _ => &self.validity,
        }
    }

    /// Whether the headline is the 医療扶助's, not the insurance's.
    pub fn covered_by_welfare(&self) -> bool {
        self.validity.code != "1" && self.welfare.as_ref().is_some_and(|w| w.validity.code == "1" || w.validity.code == "6")
    }
}

/// What a paper is worth on the date of care (`onshi_domain::documents`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentNote {
    /// The paper, as the request named it, with its Japanese name.
    pub document: CodeLabel,
    /// `accepted`, `accepted_with_confirmation` (the transition until 2026-03-31) or
    /// `not_alone` (not accepted on its own on that day).
    pub worth: String,
    pub reception_ja: String,
}

/// A coverage as reception needs it, with copay and limit ready for the counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub insurer_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub number: String,
    pub branch: String,
    pub card_classification: CodeLabel,
    pub relationship: CodeLabel,
    pub name: String,
    pub name_kana: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_name: Option<String>,
    pub sex: CodeLabel,
    pub birth_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_code: Option<String>,
    pub acquired_on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_reason: Option<CodeLabel>,
    /// 一部負担金割合 on the date of care, in percent (30 = 3割).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copay_ratio_percent: Option<u8>,
    /// 未就学 on the date of care.
    pub preschool: bool,
    /// 高齢受給者 (70–74) on the date of care.
    pub elderly_recipient: bool,
    /// 限度額適用認定: only with the patient's consent, and only when valid on the date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// 公費 certificates valid on the date of care.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_expense: Vec<PublicExpense>,
    /// The 資格確認書 the insurer issued, with its printed validity, when it registered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification_certificate: Option<Validity>,
}

/// A paper's printed validity, `YYYYMMDD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub valid_from: String,
    pub valid_to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// OQSCD012 category and label.
    pub category: CodeLabel,
    /// OQSCD011 certificate classification.
    pub classification: CodeLabel,
    pub valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
    /// The month's outpatient cap when the total cost stays at the base (the flat part), yen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outpatient_cap_base_yen: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicExpense {
    pub payer_number: String,
    pub recipient_number: String,
    pub valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
}

/// A change notified but not yet in effect on the date of care.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// `loss`, `terms_change` or `newer_coverage`.
    pub kind: String,
    /// `YYYYMMDD`.
    pub effective_on: String,
    /// Japanese description for reception.
    pub description_ja: String,
}

/// An insurer's registration lag, from the events it sent: days from the event to its
/// notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InsurerLag {
    pub events: u64,
    pub mean_days: f64,
    pub max_days: u32,
}

/// Up to [`crate::BATCH_ENTRIES_MAX`] verifications in one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchVerifyRequest {
    /// As in [`VerifyNumberRequest::institution_code`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_code: Option<String>,
    pub entries: Vec<VerifyNumberRequest>,
}

/// One answer per entry, in order: either an answer or the error for that entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchVerifyResponse {
    pub results: Vec<BatchResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<VerifyAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

/// Every error the API returns: a stable code, the field at fault if any, and the actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was wrong, in English, with the value's problem spelled out.
    pub detail: String,
    pub reception_ja: String,
    pub operator_en: String,
}

/// The body of an error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}
