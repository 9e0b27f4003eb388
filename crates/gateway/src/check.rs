//! What a check (資格確認) at the clinic came to, and what changed between two answers.
//! Pure: no I/O, so the file interface, the page and the queue all speak the same outcome.

use onshi_api::card::{CertificateNotice, ConsentChoice, Consents};
use onshi_api::verify::{ApiError, VerifyAnswer, VerifyNumberRequest};
use serde::{Deserialize, Serialize};

use crate::request::{Header, SearchInfo};

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per check, never in bulk in memory
pub enum Outcome {
    /// The center answered.
    Answered {
        answer: VerifyAnswer,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consents: Option<Consents>,
        /// A card check: the certificate near or past its end ("更新のご案内", grace).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate: Option<CertificateNotice>,
    },
    /// The center refused the request as written (a wrong number, a revoked card, …).
    Refused { error: ApiError },
    /// The line or the center is down: the last answer for these numbers, with when it was
    /// fetched. Queued for re-verification.
    Cached { answer: VerifyAnswer, fetched_at: String, reason: String },
    /// The line or the center is down and nothing is cached: staff check the card or
    /// certificate visually; queued for re-verification.
    Queued { reason: String },
}

impl Outcome {
    /// The answer this outcome rests on, if any.
    pub fn answer(&self) -> Option<&VerifyAnswer> {
        match self {
            Outcome::Answered { answer, .. } | Outcome::Cached { answer, .. } => Some(answer),
            Outcome::Refused { .. } | Outcome::Queued { .. } => None,
        }
    }

    pub fn is_offline(&self) -> bool {
        matches!(self, Outcome::Cached { .. } | Outcome::Queued { .. })
    }

    /// One line for reception, Japanese first.
    pub fn summary_ja(&self) -> String {
        match self {
            Outcome::Answered { answer, certificate: None, .. } => validity_sentence(answer),
            Outcome::Answered { answer, certificate: Some(notice), .. } => format!("{}（{}）", validity_sentence(answer), notice.reception_ja),
            Outcome::Refused { error } => format!("照会できませんでした: {}", error.reception_ja),
            // The date of care is stated because the cached answer may be for another day
            // than the one asked about (a copay change or a loss may fall in between).
            Outcome::Cached { answer, fetched_at, .. } => format!(
                "【オフライン】{}（{} 取得の控え・診療日 {} についての回答。回線復旧後に自動で再照会します）",
                validity_sentence(answer),
                time_ja(fetched_at),
                onshi_domain::date::japanese_text(&answer.date_of_care)
            ),
            Outcome::Queued { .. } => {
                "【オフライン】センターに接続できません。保険証・資格確認書・マイナ保険証を目視で確認して受付を続けてください。回線復旧後に自動で再照会します。".to_string()
            }
        }
    }
}

/// An answer as a request with or without the oral limit-information consent may see it:
/// without it, no coverage carries its 限度額 category (the center gives it only with consent,
/// and a cached answer may have been fetched for a request that had it).
pub fn as_consented(mut answer: VerifyAnswer, limit_consent: bool) -> VerifyAnswer {
    // A 受給者証 is shown on the patient's yes at the reader, for that check only: never again
    // from a cache.
    answer.subsidies.clear();
    // 医療扶助 comes with card checks only, and its 医療券 carry 傷病名: never from a cache.
    answer.welfare = None;
    if !limit_consent {
        for coverage in answer.coverage.iter_mut().chain(answer.newer_coverage.iter_mut()) {
            coverage.limit = None;
        }
    }
    answer
}

fn validity_sentence(answer: &VerifyAnswer) -> String {
    let mut text = if answer.covered_by_welfare() {
        format!("{}（医療扶助）・医療保険は{}", answer.headline_validity().label, answer.validity.label)
    } else {
        answer.validity.label.to_string()
    };
    if let Some(coverage) = &answer.coverage
        && let Some(ratio) = coverage.copay_ratio_percent
    {
        text.push_str(&format!("・負担割合 {}割", ratio / 10));
    }
    if let Some(notice) = &answer.notice {
        text.push_str(&format!("。{}", notice.reception_ja));
    }
    for subsidy in &answer.subsidies {
        text.push_str(&subsidy_sentence(subsidy));
    }
    if let Some(welfare) = &answer.welfare {
        text.push_str(&welfare_sentence(welfare));
    }
    text
}

/// The patient's 医療扶助 as reception reads it: the standing, the office, the numbers for the
/// claim, and what to do when no 医療券 names this clinic.
pub fn welfare_sentence(r: &onshi_api::subsidy::WelfareRecipient) -> String {
    let mut text = format!(
        "。医療扶助（生活保護）: {}・{}・公費負担者番号 {} 受給者番号 {}",
        r.validity.label, r.office_name, r.payer_number, r.recipient_number
    );
    for t in &r.tickets {
        let kind = if t.ticket_type == "02" { "調剤券" } else { "医療券" };
        let use_ = if t.combined { "併用" } else { "単独" };
        text.push_str(&format!(
            "・{kind} 交付番号 {}（{}〜{}、本人支払額 {}円、{use_}）",
            t.issue_number,
            onshi_domain::date::japanese_text(&t.valid_from),
            onshi_domain::date::japanese_text(&t.valid_to),
            t.self_pay_yen
        ));
    }
    match (r.validity.code.as_str(), r.designated) {
        ("6", true) => text.push_str("。今月の医療券は未登録です（福祉事務所が登録すると表示されます）"),
        ("6", false) => text.push_str("。当院は指定されていません。受診前に福祉事務所へ連絡してください"),
        ("2", _) => text.push_str(&format!(
            "。医療扶助は{}に廃止されています。福祉事務所へ確認してください",
            r.disqualification_date.as_deref().map_or_else(String::new, onshi_domain::date::japanese_text)
        )),
        _ => {}
    }
    text
}

/// One 受給者証 the patient chose to show at the reader, as reception reads it: programme,
/// numbers for the claim's KO line, the monthly cap, and whether this clinic may use it.
pub fn subsidy_sentence(s: &onshi_api::subsidy::Subsidy) -> String {
    let cap = match s.self_pay_cap_yen {
        Some(0) => "自己負担なし".to_string(),
        Some(yen) => format!("自己負担上限 月{yen}円"),
        None => "上限の定めなし".to_string(),
    };
    let place = match s.designated {
        Some(false) => "。当院はこの受給者証の指定医療機関ではありません（助成は使えません）",
        _ => "",
    };
    format!(
        "。医療費助成: {}（{}）公費負担者番号 {} 受給者番号 {}・{}・有効期限 {}{place}",
        s.law.label,
        s.name,
        s.payer_number,
        s.recipient_number,
        cap,
        s.valid_to.as_deref().map_or_else(|| "定めなし".to_string(), onshi_domain::date::japanese_text)
    )
}

/// `YYYYMMDDHHmmss` as `2026年11月25日 09:30`.
pub fn time_ja(stamp: &str) -> String {
    if stamp.len() != 14 {
        return stamp.to_string();
    }
    format!(
        "{}年{}月{}日 {}:{}",
        &stamp[..4],
        stamp[4..6].trim_start_matches('0'),
        stamp[6..8].trim_start_matches('0'),
        &stamp[8..10],
        &stamp[10..12]
    )
}

/// The numbers that identify a patient's coverage, normalised so that a request written with
/// full-width digits or a padded 国保 number finds the same cache entry and batch answer.
pub fn patient_key(request: &VerifyNumberRequest) -> String {
    use crate::reference::{branch_key, numbers_key};
    format!(
        "{}|{}|{}",
        numbers_key(&request.insurer_number, request.symbol.as_deref(), &request.number),
        // "00" stays distinct from no 枝番 (which may match several family members).
        branch_key(request.branch.as_deref()),
        request.birth_date.trim()
    )
}

/// What changed between an earlier answer (the batch, a cached answer, or a visual check that
/// had none) and a newer one, in words for reception. Empty when nothing that matters at the
/// counter changed.
pub fn changes(before: Option<&Outcome>, after: &Outcome) -> Vec<String> {
    let Some(after_answer) = after.answer() else {
        return match (before.and_then(Outcome::answer), after) {
            (_, Outcome::Refused { error }) => vec![format!("再照会で照会できませんでした: {}", error.reception_ja)],
            _ => Vec::new(),
        };
    };
    let Some(before_answer) = before.and_then(Outcome::answer) else {
        // A visual check with no answer behind it: only a coverage that is not valid is news.
        let headline = after_answer.headline_validity();
        return if headline.code == "1" {
            Vec::new()
        } else {
            vec![format!("目視確認で受け付けた資格が「{}」でした", headline.label)]
        };
    };
    let mut found = Vec::new();
    let (was, is) = (before_answer.headline_validity(), after_answer.headline_validity());
    if was.code != is.code {
        found.push(format!("資格: {} → {}", was.label, is.label));
    }
    let (b, a) = (before_answer.coverage.as_ref(), after_answer.coverage.as_ref());
    if let (Some(b), Some(a)) = (b, a) {
        if b.insurer_number != a.insurer_number || b.number != a.number || b.symbol != a.symbol {
            found.push(format!("保険者番号・記号番号: {} → {}", b.insurer_number, a.insurer_number));
        }
        if b.lost_on != a.lost_on
            && let Some(lost) = &a.lost_on
        {
            found.push(format!("資格喪失日 {}", onshi_domain::date::japanese_text(lost)));
        }
        if b.copay_ratio_percent != a.copay_ratio_percent {
            let show = |r: Option<u8>| r.map_or("なし".to_string(), |r| format!("{}割", r / 10));
            found.push(format!("負担割合: {} → {}", show(b.copay_ratio_percent), show(a.copay_ratio_percent)));
        }
        let category = |c: &onshi_api::verify::Coverage| c.limit.as_ref().map(|l| l.category.label.clone());
        if category(b) != category(a) {
            found.push(format!(
                "限度額区分: {} → {}",
                category(b).unwrap_or_else(|| "なし".into()),
                category(a).unwrap_or_else(|| "なし".into())
            ));
        }
    }
    if after_answer.newer_coverage.is_some() && before_answer.newer_coverage.is_none() {
        found.push("新しい資格があります（振替）".to_string());
    }
    found
}

/// Where a check came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A request file in `req/`.
    File,
    /// The reception page.
    Page,
    /// The card reader.
    Reader,
}

/// What a queued check asks again when the line returns, and where its answer goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per queued check
pub enum Job {
    /// A check by numbers; a file request's re-verified answer goes to `res/`.
    Number {
        request: VerifyNumberRequest,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<FileReply>,
    },
    /// A card checked visually while the line was down; the answer goes to `face/`.
    CardVisual { certificate: String, serial: String, consent: ConsentChoice, date_of_care: String },
}

/// How to write a file answer: the request's name, header and search echo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReply {
    pub request_name: String,
    pub header: Header,
    pub search: SearchInfo,
    pub charset: crate::xml::Charset,
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_api::verify::CodeLabel;

    fn answer(validity: &str, label: &str) -> VerifyAnswer {
        VerifyAnswer {
            validity: CodeLabel { code: validity.into(), label: label.into() },
            notice: None,
            date_of_care: "20261125".into(),
            coverage: None,
            newer_coverage: None,
            pending: vec![],
            as_of: None,
            insurer_lag: None,
            answered_at: "20261125090000".into(),
            replica_as_of: None,
            document: None,
            subsidies: Vec::new(),
            welfare: None,
        }
    }

    #[test]
    fn a_lost_coverage_is_a_change_and_the_same_answer_is_not() {
        let valid = Outcome::Answered { answer: answer("1", "有効"), consents: None, certificate: None };
        let lost = Outcome::Answered { answer: answer("2", "無効"), consents: None, certificate: None };
        assert_eq!(changes(Some(&valid), &lost), vec!["資格: 有効 → 無効".to_string()]);
        assert!(changes(Some(&valid), &valid).is_empty());
        let queued = Outcome::Queued { reason: "down".into() };
        assert_eq!(changes(Some(&queued), &lost), vec!["目視確認で受け付けた資格が「無効」でした".to_string()]);
        assert!(changes(Some(&queued), &valid).is_empty());
    }

    /// Issue 11: an answer cached for a request with the 限度額 consent was handed to a later
    /// offline request without it.
    #[test]
    fn a_cached_answer_carries_limit_information_only_with_consent_and_names_its_date() {
        let coverage: onshi_api::verify::Coverage = serde_json::from_value(serde_json::json!({
            "insurer_number": "06130488", "number": "345", "branch": "00",
            "card_classification": {"code": "01", "label": "x"}, "relationship": {"code": "1", "label": "本人"},
            "name": "試験", "name_kana": "シケン", "sex": {"code": "2", "label": "女"}, "birth_date": "19800101",
            "acquired_on": "20200401", "preschool": false, "elderly_recipient": false,
            "limit": {"category": {"code": "A01", "label": "ア"}, "classification": {"code": "01", "label": "限度額"}, "valid_from": "20260401"}
        }))
        .unwrap();
        let mut with_limit = answer("1", "有効");
        with_limit.coverage = Some(coverage.clone());
        with_limit.newer_coverage = Some(coverage);
        let limits =
            |a: &VerifyAnswer| [&a.coverage, &a.newer_coverage].iter().filter(|c| c.as_ref().is_some_and(|c| c.limit.is_some())).count();
        assert_eq!(limits(&as_consented(with_limit.clone(), true)), 2, "kept with consent");
        assert_eq!(limits(&as_consented(with_limit.clone(), false)), 0, "taken out of both coverages without it");
        let cached = Outcome::Cached { answer: with_limit, fetched_at: "20261124090000".into(), reason: "down".into() };
        assert!(cached.summary_ja().contains("診療日 2026年11月25日 についての回答"), "{}", cached.summary_ja());
    }

    #[test]
    fn keys_ignore_width_and_padding() {
        let a = VerifyNumberRequest {
            insurer_number: "  123456".into(),
            symbol: Some("１２".into()),
            number: "３４".into(),
            birth_date: "19800101".into(),
            ..Default::default()
        };
        let b = VerifyNumberRequest { insurer_number: "00123456".into(), symbol: Some("12".into()), number: "34".into(), ..a.clone() };
        assert_eq!(patient_key(&a), patient_key(&b));
        assert_ne!(patient_key(&a), patient_key(&VerifyNumberRequest { number: "35".into(), ..b.clone() }));
        let with = |branch: &str| VerifyNumberRequest { branch: Some(branch.into()), ..b.clone() };
        assert_eq!(patient_key(&with("０1")), patient_key(&with("1")));
        assert_ne!(patient_key(&with("00")), patient_key(&b), "00 is not the same as no 枝番");
    }
}
