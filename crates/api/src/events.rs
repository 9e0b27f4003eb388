//! Insurer coverage events (資格異動): what an insurer sends the register, one JSON object per
//! line (JSON Lines). `onshi synth` writes them, `onshi center import` and the upload endpoint
//! read them.
//!
//! A person is named by `person_ref`, a pseudonymous reference like the 中間サーバー's 機関別符号:
//! stable across insurers (so a job change links old and new coverage), revealing nothing.
//! There is no field for a My Number, and unknown fields are refused.

use serde::{Deserialize, Serialize};

/// What happened to a coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// 資格取得: a new coverage from `occurred_on`.
    Acquire,
    /// 変更: new terms or member details from `occurred_on` (income class, 限度額, name, …).
    Change,
    /// 資格喪失: the coverage ends; `occurred_on` is the 喪失日, the first day not covered.
    Lose,
}

/// One insurer event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsurerEvent {
    /// The insurer's own id of this event; importing it again changes nothing.
    pub event_id: String,
    pub kind: EventKind,
    /// 保険者番号 (8 digits, or 6 for 国保).
    pub insurer_number: String,
    /// Pseudonymous person reference (機関別符号-like), never a My Number.
    pub person_ref: String,
    pub card: CardFields,
    /// The day the event takes effect, `YYYYMMDD`.
    pub occurred_on: String,
    /// When the insurer notified it, `YYYYMMDDHHmmss` (Japan time).
    pub notified_at: String,
    /// Required for `acquire`; optional for `change`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
    /// Required for `acquire`; optional for `change`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<Terms>,
    /// 喪失事由 (OQSCD008), required for `lose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_reason: Option<String>,
}

/// 記号・番号・枝番 as printed on the card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub number: String,
    /// 枝番, two digits.
    pub branch: String,
}

/// Who holds the coverage, as the insurer records them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// 本人・家族 (OQSCD009): "1" or "2".
    pub relationship: String,
    /// 被保険者証区分 (OQSCD010), e.g. "01".
    pub card_classification: String,
    /// 氏名 (kanji).
    pub name: String,
    /// 氏名カナ.
    pub name_kana: String,
    /// OQSCD007: "1", "2" or "3".
    pub sex: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// 被保険者氏名 (世帯主 for 国保), when it differs from `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_code: Option<String>,
}

/// The terms of the coverage from `occurred_on`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// "general", "general2" (一定以上所得) or "active_high" (現役並み).
    pub income_class: String,
    /// 限度額適用認定 (shown to an institution only with the patient's consent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitCertificate>,
    /// 特定疾病療養受療証 (not shown on the number path, as in the national system).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specific_diseases: Vec<SpecificDiseaseCertificate>,
    /// 公費 recipient certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_expense: Vec<PublicExpenseCertificate>,
    /// The 資格確認書 the insurer issued to this member, with its printed validity (the
    /// insurer's, at most five years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification_certificate: Option<QualificationCertificate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualificationCertificate {
    pub valid_from: String,
    pub valid_to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitCertificate {
    /// OQSCD012, A01–A06 or B01–B10.
    pub category: String,
    /// OQSCD011, "01"–"03".
    pub classification: String,
    pub valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecificDiseaseCertificate {
    /// OQSCD013, "1"–"3".
    pub category: String,
    pub valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
    /// 自己負担限度額 in yen (10,000 or 20,000).
    pub self_pay_yen: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicExpenseCertificate {
    /// 公費負担者番号, 8 digits.
    pub payer_number: String,
    /// 公費受給者番号, 7 digits.
    pub recipient_number: String,
    pub valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
}

/// The answer to an import, by file or by upload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Lines read (blank lines excluded).
    pub lines: u64,
    /// Events applied now.
    pub applied: u64,
    /// Events skipped because their event id was applied before (idempotence).
    pub already_applied: u64,
    /// Lines refused; the count may exceed `rejected.len()`, which is capped.
    pub rejected_total: u64,
    pub rejected: Vec<RejectedLine>,
}

/// A refused line: where, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedLine {
    /// 1-based line number within the file or upload body.
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The field at fault (`insurer_number`, `member.birth_date`, …), or `line` for the whole.
    pub field: String,
    pub reason: String,
}

/// Most refused lines listed in one report; the rest are counted only.
pub const REJECTED_LISTED_MAX: usize = 1_000;
