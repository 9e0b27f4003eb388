//! From a claim and the center's answers for its days of care to a verdict: will the claim be
//! paid, come back (返戻), be re-routed to the newer coverage (振替), or is it too early to tell
//! because the insurer may not have registered yet.
//!
//! A claim is asked about on its first and its last day of care (a coverage is one interval of
//! days, so the ends decide the whole span). When a recorded 枝番 finds nothing, the caller asks
//! once more without it to tell a wrong 枝番 from a missing coverage.

use onshi_api::subsidy::{SubsidyAnswer, VerifySubsidyRequest, state as subsidy_state};
use onshi_api::verify::{ApiError, Coverage, VerifyAnswer, VerifyAttributesRequest, VerifyNumberRequest};
use onshi_domain::Date;
use onshi_domain::date::japanese_text as date_ja;
use onshi_domain::ids::{InsurerKind, InsurerNumber};

use crate::uke::{Claim, Institution};

/// The verdict, from best to worst for the clinic's cash flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// The register confirms the claim's coverage on every day of care.
    Ok,
    /// Nothing to ask the register: a 公費-only claim.
    NotChecked,
    /// The coverage had ended and the person holds a newer one: bill that one (振替).
    Reroute,
    /// No answer yet: the insurer may still be registering the coverage.
    Pending,
    /// The claim will come back as it stands.
    Bounce,
}

impl Class {
    pub const ALL: [Class; 5] = [Class::Ok, Class::NotChecked, Class::Reroute, Class::Pending, Class::Bounce];

    /// What reception reads.
    pub fn label_ja(self) -> &'static str {
        match self {
            Class::Ok => "問題なし",
            Class::NotChecked => "確認対象外",
            Class::Reroute => "振替（新しい資格で請求）",
            Class::Pending => "確認待ち",
            Class::Bounce => "返戻のおそれ",
        }
    }

    /// A stable word for files and scripts.
    pub fn code(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::NotChecked => "not_checked",
            Class::Reroute => "reroute",
            Class::Pending => "pending",
            Class::Bounce => "bounce",
        }
    }
}

/// One reason behind a verdict, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub class: Class,
    /// Stable code (`COVERAGE_LOST`, `BRANCH_MISSING`, …).
    pub code: &'static str,
    /// What is wrong, in plain Japanese.
    pub detail_ja: String,
    /// What to do, in plain Japanese.
    pub action_ja: String,
}

/// A correction with exactly one right answer, which `--fix` may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Record the register's 枝番 in the claim's SN record.
    AddBranch { branch: String },
    /// Bill the newer coverage of the same person: HO numbers and the SN 枝番.
    Reroute { coverage: Box<Coverage> },
    /// A 不詳 claim without its 摘要: add the 被保険者資格申立書 the clinic recorded at reception
    /// for this patient, as a free-text comment (CO) at the claim's end.
    AddNote { text: String },
}

/// The verdict on one claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub class: Class,
    pub findings: Vec<Finding>,
    pub fix: Option<Fix>,
    /// The coverage the register found for the claim's numbers, if any.
    pub coverage: Option<Coverage>,
    /// The newer coverage to bill instead (振替), if any.
    pub newer: Option<Coverage>,
}

/// The center's answer to one request: an answer, or its refusal of the entry.
pub type Reply = Result<VerifyAnswer, ApiError>;

/// What the center answered for a claim.
#[derive(Clone, Debug, Default)]
pub struct Replies {
    /// For the first and, when it differs, the last day of care.
    pub with_numbers: Vec<Reply>,
    /// The same days asked without the recorded 枝番 (only when it found nothing).
    pub without_branch: Vec<Reply>,
    /// For a claim billed as 不詳: the same days asked by the patient's attributes.
    pub by_attributes: Vec<Reply>,
    /// For a claim billed as 不詳: the 摘要 of the 被保険者資格申立書 the clinic's gateway
    /// recorded for this patient (same カナ氏名 and birth date), when it was given one.
    pub declaration: Option<String>,
    /// The answers about the claim's KO lines, in the order of [`subsidy_requests`].
    pub subsidies: Vec<Result<SubsidyAnswer, ApiError>>,
    /// For a claim with a 医療扶助 KO line (法別 12): the clinic's 医療扶助 recipients of the
    /// claim's month as the center lists them (`None` when not asked or not answered).
    pub welfare: Option<Vec<onshi_api::subsidy::WelfareRecipient>>,
}

/// The 診療年月 (`YYYYMM`) whose 医療扶助 list a claim needs: one with a readable KO line of
/// 法別 12.
pub fn welfare_month(claim: &Claim) -> Option<String> {
    let month = claim.treatment_month?;
    claim
        .public_expenses
        .iter()
        .any(|k| k.payer.as_ref().is_ok_and(|p| p.as_str().starts_with("12")) && matches!(k.recipient, Some(Ok(_))))
        .then(|| month.to_string())
}

/// A claim's 医療扶助 KO lines against the month's 医療券 for this clinic: a recipient the office
/// has not issued a ticket to this clinic for the month (or has withheld) is to be confirmed
/// with the office before billing; one listed as 有効（未登録） waits for the office to register it.
fn welfare_findings(claim: &Claim, replies: &Replies, findings: &mut Vec<Finding>) {
    let Some(listed) = replies.welfare.as_deref() else { return };
    // Only offices that register with the center: of one that does not, the list says nothing.
    let connected: Vec<String> = subsidy_requests(claim)
        .into_iter()
        .zip(&replies.subsidies)
        .filter(|(_, reply)| reply.as_ref().is_ok_and(|a| a.state != subsidy_state::PAYER_NOT_CONNECTED))
        .map(|(request, _)| request.payer_number)
        .collect();
    for public in &claim.public_expenses {
        let (Ok(payer), Some(Ok(recipient))) = (&public.payer, &public.recipient) else { continue };
        if !payer.as_str().starts_with("12") || !connected.iter().any(|c| c == payer.as_str()) {
            continue;
        }
        let numbers = format!("公費負担者番号 {} 受給者番号 {}", payer.as_str(), recipient.as_str());
        match listed.iter().find(|r| r.payer_number == payer.as_str() && r.recipient_number == recipient.as_str()) {
            Some(r) if r.validity.code == "1" && !r.tickets.is_empty() => {}
            Some(_) => findings.push(finding(
                Class::Pending,
                "WELFARE_TICKET_NOT_REGISTERED",
                format!("{numbers} は当院を指定されていますが、この月の医療券がまだ登録されていません（有効（未登録））。"),
                "福祉事務所に医療券の発行・登録を確認してから請求してください。",
            )),
            None => findings.push(finding(
                Class::Pending,
                "WELFARE_NO_TICKET",
                format!("{numbers} の、この月に当院あての医療券が登録されていません。"),
                "紙の医療券（診療年月・指定医療機関）を確かめ、福祉事務所に確認してから請求してください。",
            )),
        }
    }
}

/// Default days an insurer may take to register a coverage (employer → insurer → register,
/// DOMAIN.md §6) when its own measured lag is shorter or unknown.
pub const REGISTRATION_WINDOW_DAYS: i64 = 10;

/// The requests that check `claim`, or `None` when there is nothing the register can say.
pub fn requests(claim: &Claim, without_branch: bool) -> Option<Vec<VerifyNumberRequest>> {
    if !claim.unreadable.is_empty() {
        return None;
    }
    let insurance = claim.insurance.as_ref().filter(|i| !i.unknown)?;
    let insurer = insurance.insurer.as_ref().ok()?;
    let birth_date = claim.birth_date?;
    let (first, last) = claim.care_span()?;
    let branch = if without_branch { None } else { claim.branch().map(str::to_string) };
    let request = |date: Date| VerifyNumberRequest {
        institution_code: None,
        insurer_number: insurer.as_str().to_string(),
        symbol: (!insurance.symbol.is_empty()).then(|| insurance.symbol.clone()),
        number: insurance.number.clone(),
        branch: branch.clone(),
        birth_date: birth_date.yyyymmdd(),
        date_of_care: Some(date.yyyymmdd()),
        limit_consent: false,
        reverification: false,
        document: None,
    };
    let mut asked = vec![request(first)];
    if last != first {
        asked.push(request(last));
    }
    Some(asked)
}

/// For a claim billed as 不詳, the searches by attributes (カナ氏名, else 氏名; birth date; sex)
/// for its first and last day of care; `None` for any other claim or one that lacks them.
pub fn attribute_requests(claim: &Claim) -> Option<Vec<VerifyAttributesRequest>> {
    if !claim.unreadable.is_empty() || !claim.insurance.as_ref().is_some_and(|i| i.unknown) {
        return None;
    }
    let birth_date = claim.birth_date?;
    let (first, last) = claim.care_span()?;
    let text = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
    let (name_kana, name) = (text(&claim.name_kana), text(&claim.name));
    if name_kana.is_none() && name.is_none() {
        return None;
    }
    let request = |date: Date| VerifyAttributesRequest {
        institution_code: None,
        name_kana: name_kana.clone(),
        name: name.clone(),
        birth_date: birth_date.yyyymmdd(),
        sex: claim.sex.trim().to_string(),
        date_of_care: date.yyyymmdd(),
    };
    let mut asked = vec![request(first)];
    if last != first {
        asked.push(request(last));
    }
    Some(asked)
}

/// The questions about a claim's 公費 (KO lines): each readable 公費負担者番号 and 受給者番号 with
/// the patient's birth date, on the first and, when it differs, the last day of care, in KO
/// order. Empty when the claim has none or lacks the birth date.
pub fn subsidy_requests(claim: &Claim) -> Vec<VerifySubsidyRequest> {
    let (Some(birth_date), Some((first, last))) = (claim.birth_date, claim.care_span()) else { return Vec::new() };
    let mut asked = Vec::new();
    for public in &claim.public_expenses {
        let (Ok(payer), Some(Ok(recipient))) = (&public.payer, &public.recipient) else { continue };
        for day in if first == last { vec![first] } else { vec![first, last] } {
            asked.push(VerifySubsidyRequest {
                institution_code: None,
                payer_number: payer.as_str().to_string(),
                recipient_number: recipient.as_str().to_string(),
                birth_date: birth_date.yyyymmdd(),
                date_of_care: day.yyyymmdd(),
            });
        }
    }
    asked
}

/// The claim's KO lines against what their payers registered: a certificate not valid on a day
/// of care, or one that does not name this clinic among its designated institutions, will come
/// back; a recipient the payer does not have (for this birth date) is to be confirmed first (a
/// late registration and a certificate the payer withholds look the same, on purpose). A payer that registers
/// nothing says nothing either way (the paper certificate is all there is). Returns whether
/// every KO line was confirmed valid on every day asked.
fn subsidy_findings(claim: &Claim, replies: &[Result<SubsidyAnswer, ApiError>], findings: &mut Vec<Finding>) -> bool {
    let asked = subsidy_requests(claim);
    if asked.is_empty() || asked.len() != replies.len() {
        return false;
    }
    let mut all_valid = true;
    let mut said: Vec<(String, &'static str)> = Vec::new();
    for (request, reply) in asked.iter().zip(replies) {
        let numbers = format!("公費負担者番号 {} 受給者番号 {}", request.payer_number, request.recipient_number);
        let answer = match reply {
            Ok(answer) => answer,
            Err(refused) => {
                // Not asked (the day's misses used up, a refusal): said, not passed over.
                all_valid = false;
                if !said.iter().any(|(n, c)| *n == numbers && *c == "PUBLIC_NOT_ASKED") {
                    said.push((numbers.clone(), "PUBLIC_NOT_ASKED"));
                    findings.push(finding(
                        Class::NotChecked,
                        "PUBLIC_NOT_ASKED",
                        format!("{numbers} を照会できませんでした（{}）。", refused.reception_ja),
                        "時間をおいてもう一度点検してください。",
                    ));
                }
                continue;
            }
        };
        if answer.state != subsidy_state::VALID || answer.subsidy.as_ref().is_some_and(|s| s.designated == Some(false)) {
            all_valid = false;
        }
        let found = match answer.state.as_str() {
            subsidy_state::NOT_REGISTERED => Some((
                Class::Pending,
                "PUBLIC_NOT_REGISTERED",
                format!(
                    "{numbers} は、この生年月日の方の受給者証として実施機関に登録されていません（登録の遅れ、または実施機関が表示しない受給者証のこともあります）。"
                ),
                "受給者証の番号・生年月日・有効期間を原本で確かめ、記載どおりなら実施機関（自治体）に問い合わせてから請求してください。",
            )),
            subsidy_state::NOT_VALID_ON_DATE => {
                let period = answer.subsidy.as_ref().map_or_else(String::new, |s| {
                    format!(
                        "（登録されている有効期間 {}〜{}）",
                        date_ja(&s.valid_from),
                        s.valid_to.as_deref().map(date_ja).unwrap_or_default()
                    )
                });
                Some((
                    Class::Bounce,
                    "PUBLIC_NOT_VALID_ON_DATE",
                    format!("{numbers} の受給者証は、診療日 {} に有効ではありません{period}。", date_ja(&request.date_of_care)),
                    "受給者証の有効期間を確かめ、期間外の日は公費なしで請求してください。",
                ))
            }
            subsidy_state::VALID if answer.subsidy.as_ref().is_some_and(|s| s.designated == Some(false)) => Some((
                Class::Bounce,
                "PUBLIC_NOT_DESIGNATED",
                format!("{numbers} の受給者証の指定医療機関に当院が含まれていません。"),
                "受給者証の指定医療機関を確かめ、実施機関（自治体）に問い合わせてください。",
            )),
            _ => None,
        };
        // One finding per KO line and kind, not one per day asked.
        if let Some((class, code, detail, action)) = found
            && !said.iter().any(|(n, c)| *n == numbers && *c == code)
        {
            said.push((numbers, code));
            findings.push(finding(class, code, detail, action));
        }
    }
    all_valid
}

/// Whether the recorded 枝番 found nothing, so that asking without it tells more.
pub fn needs_retry_without_branch(claim: &Claim, replies: &[Reply]) -> bool {
    claim.branch().is_some() && replies.iter().any(|r| matches!(state(r), State::NoSuch))
}

/// What one reply says, in the terms the verdict needs.
#[derive(Clone, Copy, Debug)]
enum State<'a> {
    Valid(&'a Coverage),
    NotYetStarted(&'a Coverage),
    Lost(&'a Coverage),
    Newer { old: &'a Coverage, newer: &'a Coverage },
    NoSuch,
    BirthDateMismatch,
    Several,
    Refused(&'a ApiError),
}

fn state(reply: &Reply) -> State<'_> {
    let answer = match reply {
        Ok(answer) => answer,
        Err(error) => return State::Refused(error),
    };
    let notice = answer.notice.as_ref().map(|n| n.code.as_str());
    match (answer.validity.code.as_str(), &answer.coverage, &answer.newer_coverage) {
        ("1", Some(coverage), _) => State::Valid(coverage),
        ("3", Some(old), Some(newer)) => State::Newer { old, newer },
        ("2", Some(coverage), _) if notice == Some("COVERAGE_NOT_YET_STARTED") => State::NotYetStarted(coverage),
        ("2" | "3", Some(coverage), _) => State::Lost(coverage),
        ("5", _, _) => State::Several,
        _ if notice == Some("BIRTH_DATE_MISMATCH") => State::BirthDateMismatch,
        _ => State::NoSuch,
    }
}

fn same_coverage(a: &Coverage, b: &Coverage) -> bool {
    (a.insurer_number.as_str(), a.symbol.as_deref(), a.number.as_str(), a.branch.as_str())
        == (b.insurer_number.as_str(), b.symbol.as_deref(), b.number.as_str(), b.branch.as_str())
}

/// Why a number cannot be right, for reception (the English reason stays in the file's
/// diagnostics for the vendor).
fn impossible_ja(problem: &onshi_domain::FieldError) -> &'static str {
    let reason = problem.reason.as_str();
    if reason.contains("check digit") {
        "検証番号（最後の1桁）が合いません"
    } else if reason.contains("law number") {
        "法別番号（最初の2桁）が保険者のものではありません"
    } else if reason.contains("prefecture") {
        "都道府県番号が存在しません"
    } else {
        "桁数が正しくありません"
    }
}

fn finding(class: Class, code: &'static str, detail_ja: impl Into<String>, action_ja: impl Into<String>) -> Finding {
    Finding { class, code, detail_ja: detail_ja.into(), action_ja: action_ja.into() }
}

/// The review body (審査支払機関) that pays for an insurer: 国保 and 後期高齢 claims go to the
/// 国保連 (2), the others to the 支払基金 (1).
pub fn review_body_of(insurer: &str) -> Option<&'static str> {
    let number = InsurerNumber::parse(insurer).ok()?;
    Some(match number.kind() {
        InsurerKind::NationalHealthInsurance | InsurerKind::LateElderly => "2",
        _ => "1",
    })
}

/// Judges one claim. `today` decides whether a missing coverage may still be on its way.
pub fn assess(claim: &Claim, institution: &Institution, replies: &Replies, today: Date) -> Assessment {
    let mut assessment = Assessment { class: Class::Ok, findings: Vec::new(), fix: None, coverage: None, newer: None };
    for problem in &claim.unreadable {
        assessment.findings.push(finding(
            Class::Bounce,
            "UNREADABLE",
            format!("レセプトの記録が読めません（{problem}）。"),
            "レセコンで患者情報を確認し、請求データを作り直してください。",
        ));
    }
    public_expense_findings(claim, &mut assessment.findings);
    let subsidies_confirmed = subsidy_findings(claim, &replies.subsidies, &mut assessment.findings);
    welfare_findings(claim, replies, &mut assessment.findings);
    let subsidies_confirmed = subsidies_confirmed && !assessment.findings.iter().any(|f| f.code.starts_with("WELFARE_"));
    match &claim.insurance {
        None if subsidies_confirmed => assessment.findings.push(finding(
            Class::Ok,
            "PUBLIC_CONFIRMED",
            "公費単独のレセプトです。受給者証は診療日に有効と実施機関が登録しています。",
            "このまま請求できます。",
        )),
        None => assessment.findings.push(finding(
            Class::NotChecked,
            "PUBLIC_ONLY",
            "公費単独のレセプトです。医療保険の資格確認の対象外です。",
            "公費の受給者証の有効期間を確認してください。",
        )),
        Some(insurance) if insurance.unknown => {
            if claim.unreadable.is_empty() {
                judge_unknown(claim, institution, replies, &mut assessment);
            }
        }
        Some(insurance) => match &insurance.insurer {
            Err(e) => assessment.findings.push(finding(
                Class::Bounce,
                "INSURER_NUMBER_IMPOSSIBLE",
                format!("保険者番号「{}」はありえない番号です（{}）。", insurance.insurer_text.trim(), impossible_ja(e)),
                "保険証・資格確認書の保険者番号を確かめて、レセコンの登録を直してください。",
            )),
            Ok(_) if claim.unreadable.is_empty() => judge(claim, institution, replies, today, &mut assessment),
            Ok(_) => {}
        },
    }
    assessment.class = assessment.findings.iter().map(|f| f.class).max().unwrap_or(Class::Ok);
    if assessment.findings.is_empty() {
        assessment.findings.push(finding(Class::Ok, "OK", "診療日の資格が確認できました。", "このまま請求できます。"));
    }
    assessment
}

/// The 摘要 a 不詳 claim must carry (MHLW 2023-07), named for staff.
const UNKNOWN_NOTE_JA: &str = "カナ氏名・保険の種類・事業所名・住所・連絡先・患者に連絡した日";

/// A claim billed as 不詳: asked again by the patient's attributes. Coverage registered since
/// on every day of care turns it into a 振替 to that insurer; otherwise it stays 不詳, which
/// needs its 摘要.
fn judge_unknown(claim: &Claim, institution: &Institution, replies: &Replies, out: &mut Assessment) {
    let states: Vec<State> = replies.by_attributes.iter().map(state).collect();
    let found = match (states.first().copied(), states.last().copied()) {
        (Some(State::Valid(first)), Some(State::Valid(last))) if same_coverage(first, last) => Some(first),
        _ => None,
    };
    if let Some(coverage) = found {
        out.newer = Some(coverage.clone());
        let (fixable, why_not) = unknown_fixable(claim, coverage, institution);
        out.findings.push(finding(
            Class::Reroute,
            "UNKNOWN_NOW_REGISTERED",
            format!(
                "不詳（保険者番号 {}）で請求していますが、診療日の資格が登録されました（保険者番号 {}、記号 {}、番号 {}、枝番 {}）。",
                claim.insurance.as_ref().map_or("", |i| i.insurer_text.trim()),
                coverage.insurer_number,
                coverage.symbol.as_deref().unwrap_or("-"),
                coverage.number,
                coverage.branch
            ),
            // Found by name, birth date and sex, not by a card: staff confirm it is the patient.
            if fixable {
                "カナ氏名・生年月日・性別の一致した方の資格です。患者さんご本人の資格か確かめて、この保険者に請求してください（--fix で自動修正できます）。".to_string()
            } else {
                format!("カナ氏名・生年月日・性別の一致した方の資格です。患者さんご本人の資格か確かめて、この保険者に請求してください。{why_not}ため自動修正はできません。レセコンで保険を登録してください。")
            },
        ));
        if fixable {
            out.fix = Some(Fix::Reroute { coverage: Box::new(coverage.clone()) });
        }
        return;
    }
    let several = states.iter().any(|s| matches!(s, State::Several));
    if states.iter().any(|s| matches!(s, State::Valid(_))) {
        // Found on one end of the care span only: the coverage began or ended within it.
        out.findings.push(finding(
            Class::Pending,
            "UNKNOWN_PARTLY_REGISTERED",
            "不詳の請求ですが、氏名・生年月日・性別の一致する方の資格が診療期間の一部にしかありません。",
            "月の途中で資格が変わった可能性があります。レセコンで資格を確かめ、分割請求か振替かを判断してください。",
        ));
        return;
    }
    let refused = states.iter().find_map(|s| match s {
        State::Refused(error) => Some(error.reception_ja.clone()),
        _ => None,
    });
    let (class, code, detail, action) = match (refused, several) {
        (Some(reason), _) => (Class::Pending, "UNKNOWN_NOT_ASKED", "不詳の請求をセンターに照会できませんでした。".to_string(), reason),
        (None, _) if replies.by_attributes.is_empty() => (
            Class::Pending,
            "UNKNOWN_NOT_ASKED",
            "不詳の請求ですが、カナ氏名・氏名が記録されていないため照会していません。".to_string(),
            "レセコンで患者のカナ氏名を登録してから、もう一度点検してください。".to_string(),
        ),
        (None, true) => (
            Class::Pending,
            "UNKNOWN_SEVERAL",
            "不詳の請求ですが、同じ氏名・生年月日・性別の方が複数登録されていて特定できません。".to_string(),
            "患者に連絡して保険証・資格確認書の番号を確かめてください。".to_string(),
        ),
        (None, false) if claim.comments == 0 => (
            Class::Bounce,
            "UNKNOWN_WITHOUT_NOTE",
            "不詳の請求で、資格はまだ登録されていません。摘要（コメント）がありません。".to_string(),
            match &replies.declaration {
                Some(note) => format!("受付で記録した被保険者資格申立書の内容を摘要欄に記載してください: {note}"),
                None => format!(
                    "摘要欄に被保険者資格申立書の内容（{UNKNOWN_NOTE_JA}）を記載してください。申立書は受付画面の「資格が確認できないとき」で記録できます。"
                ),
            },
        ),
        (None, false) => (
            Class::Pending,
            "UNKNOWN_NOT_REGISTERED",
            "不詳の請求で、資格はまだ登録されていません。".to_string(),
            format!("摘要（{UNKNOWN_NOTE_JA}）のとおり不詳で請求できます。来月の点検でもう一度照会します。"),
        ),
    };
    if code == "UNKNOWN_WITHOUT_NOTE"
        && let Some(note) = &replies.declaration
    {
        // Exactly one right answer: the declaration the patient made for this visit.
        out.fix = Some(Fix::AddNote { text: note.clone() });
    }
    out.findings.push(finding(class, code, detail, action));
}

/// Whether a 不詳 claim can be moved to the coverage found by rewriting its numbers alone: the
/// same review body as the file, a レセプト種別 (別表5: 医科 1, then 医保 1 or 後期 3, the
/// number of payers, and the person: 1/2 本人, 3/4 未就学者, 5/6 家族, 7–0 高齢受給者) whose
/// kind of insurance and person agree with the coverage; a 高齢受給者's claim (its share
/// depends on the income class) is left to the receipt computer.
fn unknown_fixable(claim: &Claim, coverage: &Coverage, institution: &Institution) -> (bool, &'static str) {
    if review_body_of(&coverage.insurer_number) != Some(institution.review_body.as_str()) {
        return (false, "登録された保険者の請求先（支払基金・国保連）がこのファイルと違う");
    }
    let digits: Vec<char> = claim.claim_kind.trim().chars().collect();
    let late = InsurerNumber::parse(&coverage.insurer_number).is_ok_and(|n| n.kind() == InsurerKind::LateElderly);
    let insurance_agrees = match digits.get(1) {
        Some('1') => !late,
        Some('3') => late,
        _ => false,
    };
    if digits.len() != 4 || !insurance_agrees {
        return (false, "レセプト種別（医保・後期の別）を確かめる必要がある");
    }
    let person_agrees = matches!((digits[3], coverage.relationship.code.as_str()), ('1' | '2', "1") | ('3' | '4' | '5' | '6', "2"));
    if !person_agrees || coverage.elderly_recipient {
        return (false, "レセプト種別（本人・家族・高齢受給者の別）を確かめる必要がある");
    }
    (true, "")
}

/// The claim's 公費 (KO) against the 公費 the register holds for its coverage on the date of
/// care: the same 公費負担者番号 with another 受給者番号 will come back. A 公費 the register does
/// not list says nothing (payers do not register their recipients with the register yet).
fn registered_public_findings(claim: &Claim, coverage: &Coverage, findings: &mut Vec<Finding>) {
    for public in &claim.public_expenses {
        let (Ok(payer), Some(Ok(recipient))) = (&public.payer, &public.recipient) else { continue };
        let Some(registered) = coverage.public_expense.iter().find(|p| p.payer_number == payer.as_str()) else { continue };
        if registered.recipient_number != recipient.as_str() {
            findings.push(finding(
                Class::Bounce,
                "PUBLIC_RECIPIENT_DIFFERS",
                format!(
                    "公費負担者番号 {} の受給者番号が、登録されている {} と違います（レセプトは {}）。",
                    payer.as_str(),
                    registered.recipient_number,
                    recipient.as_str()
                ),
                "受給者証の受給者番号を確かめて、レセコンの登録を直してください。",
            ));
        }
    }
}

fn public_expense_findings(claim: &Claim, findings: &mut Vec<Finding>) {
    for public in &claim.public_expenses {
        if let Err(e) = &public.payer {
            findings.push(finding(
                Class::Bounce,
                "PUBLIC_NUMBER_IMPOSSIBLE",
                format!("公費負担者番号「{}」はありえない番号です（{}）。", public.payer_text, impossible_ja(e)),
                "受給者証の公費負担者番号を確かめて、レセコンの登録を直してください。",
            ));
        }
        if let Some(Err(e)) = &public.recipient {
            findings.push(finding(
                Class::Bounce,
                "PUBLIC_NUMBER_IMPOSSIBLE",
                format!("公費受給者番号「{}」はありえない番号です（{}）。", public.recipient_text, impossible_ja(e)),
                "受給者証の受給者番号を確かめて、レセコンの登録を直してください。",
            ));
        }
    }
}

fn judge(claim: &Claim, institution: &Institution, replies: &Replies, today: Date, out: &mut Assessment) {
    let states: Vec<State> = replies.with_numbers.iter().map(state).collect();
    let (Some(first), Some(last)) = (states.first().copied(), states.last().copied()) else {
        out.findings.push(finding(
            Class::Pending,
            "NOT_ASKED",
            "センターに照会できませんでした。",
            "回線とセンターの状態を確かめて、もう一度点検してください。",
        ));
        return;
    };
    let findings = &mut out.findings;
    match (first, last) {
        (State::Refused(error), _) | (_, State::Refused(error)) => findings.push(finding(
            Class::Bounce,
            "CENTER_REFUSED",
            format!("センターが照会を受け付けませんでした（{}）。", error.detail),
            error.reception_ja.clone(),
        )),
        (State::Valid(coverage), State::Valid(_)) => {
            out.coverage = Some(coverage.clone());
            registered_public_findings(claim, coverage, findings);
            if claim.branch().is_none() {
                findings.push(finding(
                    Class::Bounce,
                    "BRANCH_MISSING",
                    format!("枝番が記録されていません（登録されている枝番は {}）。", coverage.branch),
                    format!("資格確認レコード（SN）に枝番 {} を記録してください（--fix で自動修正できます）。", coverage.branch),
                ));
                out.fix = Some(Fix::AddBranch { branch: coverage.branch.clone() });
            }
        }
        (State::Newer { old, newer }, State::Newer { newer: newer_last, .. }) if same_coverage(newer, newer_last) => {
            out.coverage = Some(old.clone());
            out.newer = Some(newer.clone());
            let (fixable, why_not) = reroute_fixable(old, newer, institution);
            findings.push(finding(
                Class::Reroute,
                "REROUTE",
                format!(
                    "{}に資格を喪失しています。診療日には新しい資格（保険者番号 {}、記号 {}、番号 {}、枝番 {}）があります。",
                    date_ja(old.lost_on.as_deref().unwrap_or("")),
                    newer.insurer_number,
                    newer.symbol.as_deref().unwrap_or("-"),
                    newer.number,
                    newer.branch
                ),
                if fixable {
                    "新しい資格の保険者に請求してください（--fix で自動修正できます）。".to_string()
                } else {
                    format!("新しい資格の保険者に請求してください。{why_not}ため自動修正はできません。レセコンで保険を変更してください。")
                },
            ));
            if fixable {
                out.fix = Some(Fix::Reroute { coverage: Box::new(newer.clone()) });
            }
        }
        (State::Valid(coverage), State::Lost(_) | State::Newer { .. }) => {
            out.coverage = Some(coverage.clone());
            findings.push(finding(
                Class::Bounce,
                "CHANGED_MID_MONTH",
                format!(
                    "月の途中（{}）で資格を喪失していますが、その後の診療もこの資格で請求されています。",
                    date_ja(coverage.lost_on.as_deref().unwrap_or(""))
                ),
                "喪失日の前と後で請求を分けてください（分割請求）。喪失後の分は新しい資格で請求します。",
            ));
        }
        (State::NotYetStarted(coverage), State::Valid(_)) => {
            out.coverage = Some(coverage.clone());
            findings.push(finding(
                Class::Bounce,
                "CHANGED_MID_MONTH",
                format!("資格は{}からですが、それより前の診療もこの資格で請求されています。", date_ja(&coverage.acquired_on)),
                "取得日の前と後で請求を分けてください（分割請求）。取得前の分は前の資格で請求します。",
            ));
        }
        (State::NotYetStarted(coverage), _) | (_, State::NotYetStarted(coverage)) => {
            out.coverage = Some(coverage.clone());
            findings.push(finding(
                Class::Bounce,
                "NOT_YET_STARTED",
                format!("この資格は{}からで、診療日にはまだ有効ではありません。", date_ja(&coverage.acquired_on)),
                "診療日に有効だった保険を患者さんに確かめて、レセコンの保険を直してください。",
            ));
        }
        (State::Lost(coverage), _) | (_, State::Lost(coverage)) | (State::Newer { old: coverage, .. }, _) => {
            out.coverage = Some(coverage.clone());
            findings.push(finding(
                Class::Bounce,
                "COVERAGE_LOST",
                format!("{}に資格を喪失しています。喪失後の診療です。", date_ja(coverage.lost_on.as_deref().unwrap_or(""))),
                "新しい保険証・資格確認書を患者さんに確かめて、その保険で請求してください。",
            ));
        }
        (State::BirthDateMismatch, _) | (_, State::BirthDateMismatch) => findings.push(finding(
            Class::Bounce,
            "BIRTH_DATE_MISMATCH",
            "番号は登録されていますが、生年月日が一致しません。",
            "患者さんの生年月日をレセコンの登録と照らして直してください。",
        )),
        (State::Several, _) | (_, State::Several) => findings.push(finding(
            Class::Bounce,
            "SEVERAL_MATCHES",
            "同じ番号・生年月日の方が複数登録されています。枝番がないと誰の請求か決まりません。",
            "保険証・資格確認書の枝番（2桁）を資格確認レコード（SN）に記録してください。",
        )),
        (State::NoSuch, _) | (_, State::NoSuch) => no_such_coverage(claim, replies, today, findings),
    }
}

/// Whether rewriting HO and SN is all a 振替 needs. It is not when the claim type or the file
/// would have to change too: another review body, a move into or out of 後期高齢, or 本人 ↔ 家族.
fn reroute_fixable(old: &Coverage, newer: &Coverage, institution: &Institution) -> (bool, &'static str) {
    if review_body_of(&newer.insurer_number) != Some(institution.review_body.as_str()) {
        return (false, "新しい保険者の請求先（支払基金・国保連）がこのファイルと違う");
    }
    let late = |c: &Coverage| InsurerNumber::parse(&c.insurer_number).is_ok_and(|n| n.kind() == InsurerKind::LateElderly);
    if late(old) != late(newer) {
        return (false, "後期高齢者医療への移行でレセプト種別も変わる");
    }
    if old.relationship.code != newer.relationship.code {
        return (false, "本人・家族の別が変わりレセプト種別も変わる");
    }
    (true, "")
}

fn no_such_coverage(claim: &Claim, replies: &Replies, today: Date, findings: &mut Vec<Finding>) {
    let registered = replies.without_branch.first().and_then(|r| r.as_ref().ok()).and_then(|a| a.coverage.as_ref());
    if let Some(coverage) = registered {
        findings.push(finding(
            Class::Bounce,
            "BRANCH_WRONG",
            format!("記録された枝番 {} の資格はありません（登録されている枝番は {}）。", claim.branch().unwrap_or(""), coverage.branch),
            "保険証・資格確認書の枝番を確かめて、資格確認レコード（SN）の枝番を直してください。",
        ));
        return;
    }
    let last_day = claim.care_span().map(|(_, last)| last).unwrap_or(today);
    let lag = replies.with_numbers.iter().find_map(|r| r.as_ref().ok()).and_then(|a| a.insurer_lag.as_ref());
    let Some(lag) = lag else {
        findings.push(finding(
            Class::Pending,
            "INSURER_NOT_REGISTERED",
            "この保険者はまだ資格を1件も登録していないため、センターでは確認できません。",
            "保険証・資格確認書で確認した内容のまま請求するか、保険者に資格を確かめてください。",
        ));
        return;
    };
    let window = REGISTRATION_WINDOW_DAYS.max(i64::from(lag.max_days));
    let settled_on = last_day.add_days(window);
    if today <= settled_on {
        findings.push(finding(
            Class::Pending,
            "REGISTRATION_PENDING",
            format!(
                "この番号の資格はまだ登録されていません。この保険者の登録は最大{}日遅れるため、{}までは登録待ちの可能性があります。",
                lag.max_days,
                date_ja(&settled_on.yyyymmdd())
            ),
            format!("{}以降にもう一度点検してください。", date_ja(&settled_on.yyyymmdd())),
        ));
    } else {
        findings.push(finding(
            Class::Bounce,
            "NO_SUCH_COVERAGE",
            "この番号・生年月日の資格は登録されていません。",
            "保険証・資格確認書の保険者番号・記号・番号・生年月日を確かめて、レセコンの登録を直してください。",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uke::{self, TextEncoding, UkeFile};
    use onshi_api::verify::{CodeLabel, InsurerLag, Notice};

    const TODAY: &str = "20211110";

    /// A file with one claim per `(HO, SN-branch)`, all for 2021-10 with care on the 5th and 20th.
    fn file(claims: &[(&str, Option<&str>)]) -> UkeFile {
        let mut text = String::from("IR,1,13,1,1234569,,テスト医院,202111,00,0312345678\r\n");
        for (n, (insurer, branch)) in claims.iter().enumerate() {
            text.push_str(&format!("RE,{},1112,202110,テスト　太郎,1,19800101,,,,,,,001\r\n", n + 1));
            text.push_str(&format!("HO,{insurer},１２,３４,2,100\r\n"));
            if let Some(branch) = branch {
                text.push_str(&format!("SN,1,01,,,,{branch},,\r\n"));
            }
            let mut days = vec![""; 31];
            days[4] = "1";
            days[19] = "1";
            text.push_str(&format!("SI,11,1,111000110,,288,2,,,,,,,{}\r\n", days.join(",")));
        }
        text.push_str(&format!("GO,{},{},99\r\n", claims.len(), claims.len() * 100));
        uke::read(&uke::encode_line(&text, TextEncoding::Cp932).unwrap()).expect("reads")
    }

    fn coverage(insurer: &str, branch: &str, acquired: &str, lost: Option<&str>) -> Coverage {
        crate::fixtures::coverage(insurer, "12", "34", branch, acquired, lost)
    }

    fn answer(validity: &str, notice: Option<&str>, coverage: Option<Coverage>, newer: Option<Coverage>, lag: Option<u32>) -> Reply {
        Ok(VerifyAnswer {
            validity: CodeLabel { code: validity.into(), label: String::new() },
            notice: notice.map(|code| Notice { code: code.into(), reception_ja: String::new(), operator_en: String::new() }),
            date_of_care: String::new(),
            coverage,
            newer_coverage: newer,
            pending: Vec::new(),
            as_of: None,
            insurer_lag: lag.map(|max_days| InsurerLag { events: 10, mean_days: 3.0, max_days }),
            answered_at: String::new(),
            replica_as_of: None,
            document: None,
            subsidies: Vec::new(),
            welfare: None,
        })
    }

    fn judge_one(branch: Option<&str>, with_numbers: Vec<Reply>, without_branch: Vec<Reply>) -> Assessment {
        let file = file(&[("06130488", branch)]);
        let replies = Replies { with_numbers, without_branch, ..Replies::default() };
        assess(&file.claims[0], &file.institution, &replies, Date::parse_yyyymmdd(TODAY).unwrap())
    }

    fn codes(assessment: &Assessment) -> Vec<&'static str> {
        assessment.findings.iter().map(|f| f.code).collect()
    }

    /// A 公費単独 claim's KO line against what its payer registered: confirmed, not registered
    /// for this birth date, not valid on the day, this clinic not designated, or a payer that
    /// registers nothing (no finding: nothing is known either way). Expected codes written out.
    #[test]
    fn a_claims_public_expense_is_checked_against_what_its_payer_registered() {
        let payer = onshi_domain::ids::PublicPayerNumber::with_check_digit("5413100").unwrap();
        let recipient = onshi_domain::ids::RecipientNumber::with_check_digit("123456").unwrap();
        let text = format!(
            "IR,1,13,1,1234569,,テスト医院,202111,00,0312345678\r\nRE,1,1122,202110,テスト　太郎,1,19800101,,,,,,,001\r\n\
             KO,{},{},,2,100\r\nSI,11,1,111000110,,288,2,,,,,,,,,,,1\r\nGO,1,100,99\r\n",
            payer.as_str(),
            recipient.as_str()
        );
        let file = uke::read(&uke::encode_line(&text, TextEncoding::Cp932).unwrap()).expect("reads");
        let claim = &file.claims[0];
        let asked = subsidy_requests(claim);
        assert!(!asked.is_empty() && asked.iter().all(|r| r.birth_date == "19800101" && r.payer_number == payer.as_str()));
        let subsidy = |designated: Option<bool>| onshi_api::subsidy::Subsidy {
            payer_number: payer.as_str().into(),
            recipient_number: recipient.as_str().into(),
            law: onshi_api::verify::CodeLabel { code: "54".into(), label: "難病医療（指定難病）".into() },
            name: "特定医療費（指定難病）受給者証".into(),
            valid_from: "20210401".into(),
            valid_to: Some("20220331".into()),
            self_pay_cap_yen: Some(10_000),
            income_segment: None,
            designated,
        };
        let judged = |state: &str, shown: Option<onshi_api::subsidy::Subsidy>| {
            let reply = onshi_api::subsidy::SubsidyAnswer {
                state: state.into(),
                reception_ja: String::new(),
                subsidy: shown,
                date_of_care: "20211001".into(),
                answered_at: "20211101090000".into(),
            };
            let replies = Replies { subsidies: vec![Ok(reply); asked.len()], ..Replies::default() };
            let judged = assess(claim, &file.institution, &replies, Date::parse_yyyymmdd(TODAY).unwrap());
            (judged.class, codes(&judged))
        };
        assert_eq!(judged("valid", Some(subsidy(None))), (Class::Ok, vec!["PUBLIC_CONFIRMED"]));
        assert_eq!(judged("valid", Some(subsidy(Some(false)))), (Class::Bounce, vec!["PUBLIC_NOT_DESIGNATED", "PUBLIC_ONLY"]));
        // Not registered may be a late registration or a certificate its payer does not show:
        // confirm before billing, not a certain bounce.
        assert_eq!(judged("not_registered", None), (Class::Pending, vec!["PUBLIC_NOT_REGISTERED", "PUBLIC_ONLY"]));
        assert_eq!(judged("not_valid_on_date", Some(subsidy(None))), (Class::Bounce, vec!["PUBLIC_NOT_VALID_ON_DATE", "PUBLIC_ONLY"]));
        assert_eq!(judged("payer_not_connected", None), (Class::NotChecked, vec!["PUBLIC_ONLY"]));
        // A question the center refused is said, once per KO line.
        let refused = onshi_api::verify::ApiError {
            code: "SUBSIDY_MISSES_EXCEEDED".into(),
            field: None,
            detail: String::new(),
            reception_ja: "本日、登録のない受給者証の照会が上限に達しました。".into(),
            operator_en: String::new(),
        };
        let replies = Replies { subsidies: vec![Err(refused); asked.len()], ..Replies::default() };
        let judged = assess(claim, &file.institution, &replies, Date::parse_yyyymmdd(TODAY).unwrap());
        assert_eq!((judged.class, codes(&judged)), (Class::NotChecked, vec!["PUBLIC_NOT_ASKED", "PUBLIC_ONLY"]));
        assert!(judged.findings[0].detail_ja.contains("上限に達しました"));
    }

    /// A 医療扶助 KO line (法別 12) against the month's list of this clinic: a ticket here passes,
    /// 有効（未登録） and no ticket wait for the office; an office that registers nothing says
    /// nothing (its paper 医療券 is all there is).
    #[test]
    fn a_medical_assistance_line_is_checked_against_the_months_tickets() {
        let office = onshi_domain::ids::PublicPayerNumber::with_check_digit("1213601").unwrap();
        let recipient = onshi_domain::ids::RecipientNumber::with_check_digit("000006").unwrap();
        let text = format!(
            "IR,1,13,1,1234569,,テスト医院,202111,00,0312345678\r\nRE,1,1212,202110,テスト　太郎,1,19600606,,,,,,,001\r\n\
             KO,{},{},,1,300\r\nSI,11,1,111000110,,300,1,,,,,1\r\nGO,1,300,99\r\n",
            office.as_str(),
            recipient.as_str()
        );
        let file = uke::read(&uke::encode_line(&text, TextEncoding::Cp932).unwrap()).expect("reads");
        let claim = &file.claims[0];
        assert_eq!(welfare_month(claim).as_deref(), Some("202110"));
        let listed = |validity: &str, tickets: usize| onshi_api::subsidy::WelfareRecipient {
            validity: onshi_api::verify::CodeLabel { code: validity.into(), label: String::new() },
            payer_number: office.as_str().into(),
            recipient_number: recipient.as_str().into(),
            office_name: "千代田区福祉事務所".into(),
            qualification_date: "20210101".into(),
            disqualification_date: None,
            designated: true,
            name: None,
            name_kana: None,
            birth_date: None,
            sex: None,
            tickets: vec![onshi_api::subsidy::MedicalTicket::default(); tickets],
        };
        let judged = |state: &str, welfare: Vec<onshi_api::subsidy::WelfareRecipient>| {
            let answer = onshi_api::subsidy::SubsidyAnswer {
                state: state.into(),
                reception_ja: String::new(),
                subsidy: None,
                date_of_care: "20211001".into(),
                answered_at: "20211101090000".into(),
            };
            let replies =
                Replies { subsidies: vec![Ok(answer); subsidy_requests(claim).len()], welfare: Some(welfare), ..Replies::default() };
            let judged = assess(claim, &file.institution, &replies, Date::parse_yyyymmdd(TODAY).unwrap());
            (judged.class, codes(&judged))
        };
        assert_eq!(judged("valid", vec![listed("1", 1)]), (Class::Ok, vec!["PUBLIC_CONFIRMED"]));
        assert_eq!(judged("valid", vec![listed("6", 0)]), (Class::Pending, vec!["WELFARE_TICKET_NOT_REGISTERED", "PUBLIC_ONLY"]));
        assert_eq!(judged("valid", vec![]), (Class::Pending, vec!["WELFARE_NO_TICKET", "PUBLIC_ONLY"]));
        assert_eq!(judged("payer_not_connected", vec![]), (Class::NotChecked, vec!["PUBLIC_ONLY"]), "an office that registers nothing");
    }

    #[test]
    fn a_public_expense_is_checked_against_the_one_registered_for_the_coverage() {
        // 公費 51 (特定疾患) with recipient numbers that pass their check digits.
        let payer = onshi_domain::ids::PublicPayerNumber::with_check_digit("5113100").unwrap();
        let (ours, other) = (
            onshi_domain::ids::RecipientNumber::with_check_digit("123456").unwrap(),
            onshi_domain::ids::RecipientNumber::with_check_digit("654321").unwrap(),
        );
        let text = format!(
            "IR,1,13,1,1234569,,テスト医院,202111,00,0312345678\r\nRE,1,1122,202110,テスト　太郎,1,19800101,,,,,,,001\r\n\
             HO,06130488,１２,３４,2,100\r\nKO,{},{},,2,100\r\nSN,1,01,,,,01,,\r\nSI,11,1,111000110,,288,2,,,,,,,,,,,1\r\nGO,1,100,99\r\n",
            payer.as_str(),
            other.as_str()
        );
        let file = uke::read(&uke::encode_line(&text, TextEncoding::Cp932).unwrap()).expect("reads");
        let with_public = |recipient: &str| {
            let mut c = coverage("06130488", "01", "20200101", None);
            c.public_expense = vec![onshi_api::verify::PublicExpense {
                payer_number: payer.as_str().into(),
                recipient_number: recipient.into(),
                valid_from: "20200101".into(),
                valid_to: None,
            }];
            answer("1", None, Some(c), None, Some(5))
        };
        let judged = |recipient: &str| {
            let replies = Replies { with_numbers: vec![with_public(recipient), with_public(recipient)], ..Replies::default() };
            assess(&file.claims[0], &file.institution, &replies, Date::parse_yyyymmdd(TODAY).unwrap())
        };
        let differs = judged(ours.as_str());
        assert_eq!((differs.class, codes(&differs)), (Class::Bounce, vec!["PUBLIC_RECIPIENT_DIFFERS"]));
        assert!(differs.findings[0].detail_ja.contains(ours.as_str()) && differs.findings[0].detail_ja.contains(other.as_str()));
        let same = judged(other.as_str());
        assert_eq!((same.class, codes(&same)), (Class::Ok, vec!["OK"]));
    }

    #[test]
    fn the_first_and_last_day_of_care_are_asked_with_the_recorded_branch() {
        let file = file(&[("06130488", Some("01")), ("  138057", None)]);
        let asked = requests(&file.claims[0], false).expect("asks");
        let dates: Vec<_> = asked.iter().map(|r| r.date_of_care.clone().unwrap()).collect();
        assert_eq!(dates, ["20211005", "20211020"]);
        assert_eq!(asked[0].branch.as_deref(), Some("01"));
        assert_eq!((asked[0].symbol.as_deref(), asked[0].number.as_str()), (Some("12"), "34"));
        assert_eq!(requests(&file.claims[0], true).unwrap()[0].branch, None);
        assert_eq!(requests(&file.claims[1], false).unwrap()[0].insurer_number, "138057");
    }

    #[test]
    fn valid_on_every_day_with_a_branch_is_ok_and_without_one_gets_it_added() {
        let valid = || answer("1", None, Some(coverage("06130488", "01", "20200101", None)), None, Some(5));
        let ok = judge_one(Some("01"), vec![valid(), valid()], vec![]);
        assert_eq!((ok.class, codes(&ok), ok.fix), (Class::Ok, vec!["OK"], None));
        let missing = judge_one(None, vec![valid(), valid()], vec![]);
        assert_eq!((missing.class, codes(&missing)), (Class::Bounce, vec!["BRANCH_MISSING"]));
        assert_eq!(missing.fix, Some(Fix::AddBranch { branch: "01".into() }));
    }

    #[test]
    fn a_newer_coverage_on_every_day_is_a_reroute_fixed_only_when_nothing_else_changes() {
        let old = coverage("06130488", "00", "20150101", Some("20210901"));
        let same_body = coverage("01130012", "00", "20210901", None);
        let reroute = |newer: &Coverage| {
            let reply = || answer("3", Some("NEWER_COVERAGE"), Some(old.clone()), Some(newer.clone()), Some(5));
            judge_one(Some("00"), vec![reply(), reply()], vec![])
        };
        let fixable = reroute(&same_body);
        assert_eq!((fixable.class, codes(&fixable)), (Class::Reroute, vec!["REROUTE"]));
        assert_eq!(fixable.fix, Some(Fix::Reroute { coverage: Box::new(same_body.clone()) }));
        // 国保 is paid by the 国保連, not by the 支払基金 this file goes to.
        let kokuho = reroute(&coverage("138057", "00", "20210901", None));
        assert_eq!((kokuho.class, kokuho.fix.clone()), (Class::Reroute, None));
        assert!(kokuho.findings[0].action_ja.contains("支払基金・国保連"), "{:?}", kokuho.findings);
        let mut dependant = same_body.clone();
        dependant.relationship.code = "2".into();
        assert_eq!(reroute(&dependant).fix, None);
    }

    #[test]
    fn a_coverage_ending_mid_month_or_before_care_will_bounce() {
        let lost_mid = coverage("06130488", "00", "20150101", Some("20211010"));
        let valid = answer("1", None, Some(lost_mid.clone()), None, Some(5));
        let lost = answer("2", Some("COVERAGE_LOST"), Some(lost_mid.clone()), None, Some(5));
        assert_eq!(codes(&judge_one(Some("00"), vec![valid, lost.clone()], vec![])), ["CHANGED_MID_MONTH"]);
        let both = judge_one(Some("00"), vec![lost.clone(), lost], vec![]);
        assert_eq!((both.class, codes(&both)), (Class::Bounce, vec!["COVERAGE_LOST"]));
        let later = coverage("06130488", "00", "20211101", None);
        let not_yet = || answer("2", Some("COVERAGE_NOT_YET_STARTED"), Some(later.clone()), None, Some(5));
        assert_eq!(codes(&judge_one(Some("00"), vec![not_yet(), not_yet()], vec![])), ["NOT_YET_STARTED"]);
    }

    #[test]
    fn a_missing_coverage_is_pending_while_the_insurer_may_still_register_it() {
        let none = |lag: Option<u32>| answer("4", Some("NO_SUCH_COVERAGE"), None, None, lag);
        // Last care 2021-10-20; today 2021-11-10 is 21 days later.
        let slow = judge_one(Some("00"), vec![none(Some(25)), none(Some(25))], vec![]);
        assert_eq!((slow.class, codes(&slow)), (Class::Pending, vec!["REGISTRATION_PENDING"]));
        assert!(slow.findings[0].action_ja.contains("2021年11月14日"), "{:?}", slow.findings);
        let fast = judge_one(Some("00"), vec![none(Some(3)), none(Some(3))], vec![]);
        assert_eq!((fast.class, codes(&fast)), (Class::Bounce, vec!["NO_SUCH_COVERAGE"]));
        let unknown = judge_one(None, vec![none(None), none(None)], vec![]);
        assert_eq!((unknown.class, codes(&unknown)), (Class::Pending, vec!["INSURER_NOT_REGISTERED"]));
    }

    #[test]
    fn a_wrong_branch_is_told_apart_from_a_missing_coverage() {
        let none = || answer("4", Some("NO_SUCH_COVERAGE"), None, None, Some(3));
        let file = file(&[("06130488", Some("05"))]);
        assert!(needs_retry_without_branch(&file.claims[0], &[none()]));
        let found = answer("1", None, Some(coverage("06130488", "01", "20200101", None)), None, Some(3));
        let wrong = judge_one(Some("05"), vec![none(), none()], vec![found]);
        assert_eq!((wrong.class, codes(&wrong), wrong.fix), (Class::Bounce, vec!["BRANCH_WRONG"], None));
        assert!(wrong.findings[0].detail_ja.contains("登録されている枝番は 01"));
    }

    #[test]
    fn birth_date_several_people_refusals_public_only_and_impossible_numbers() {
        let mismatch = || answer("4", Some("BIRTH_DATE_MISMATCH"), None, None, Some(3));
        assert_eq!(codes(&judge_one(Some("00"), vec![mismatch(), mismatch()], vec![])), ["BIRTH_DATE_MISMATCH"]);
        let several = || answer("5", Some("SEVERAL_MATCHES"), None, None, Some(3));
        assert_eq!(codes(&judge_one(None, vec![several(), several()], vec![])), ["SEVERAL_MATCHES"]);
        let refused = ApiError {
            code: "INVALID_FIELD".into(),
            field: Some("number".into()),
            detail: "number is too long".into(),
            reception_ja: "番号を確かめてください。".into(),
            operator_en: String::new(),
        };
        let judged = judge_one(None, vec![Err(refused.clone()), Err(refused)], vec![]);
        assert_eq!((judged.class, codes(&judged)), (Class::Bounce, vec!["CENTER_REFUSED"]));

        let sample = uke::read(&std::fs::read(crate::fixtures::sample_uke()).unwrap()).unwrap();
        let today = Date::parse_yyyymmdd(TODAY).unwrap();
        let public_only = sample.claims.iter().find(|c| c.insurance.is_none() && c.public_expenses[0].payer.is_ok()).unwrap();
        assert_eq!(requests(public_only, false), None, "nothing to ask the register");
        assert_eq!(assess(public_only, &sample.institution, &Replies::default(), today).class, Class::NotChecked);
        let bad_payer = assess(&sample.claims[0], &sample.institution, &Replies::default(), today);
        let finding = bad_payer.findings.iter().find(|f| f.code == "PUBLIC_NUMBER_IMPOSSIBLE").expect("reported");
        assert!(finding.detail_ja.contains("検証番号（最後の1桁）が合いません"), "{finding:?}");

        let impossible = file(&[("06130489", None)]);
        assert_eq!(requests(&impossible.claims[0], false), None);
        let judged = assess(&impossible.claims[0], &impossible.institution, &Replies::default(), today);
        assert_eq!((judged.class, codes(&judged)), (Class::Bounce, vec!["INSURER_NUMBER_IMPOSSIBLE"]));
        assert!(judged.findings[0].detail_ja.contains("検証番号"), "{:?}", judged.findings);
        let payer = file(&[("81136010", None)]);
        let judged = assess(&payer.claims[0], &payer.institution, &Replies::default(), today);
        assert!(judged.findings[0].detail_ja.contains("法別番号"), "{:?}", judged.findings);
    }
}
