//! 被保険者資格申立書: when the line cannot confirm a patient's coverage, MHLW's chain (2023-07)
//! is the current numbers, then the previous ones, then a claim billed as 不詳 (保険者番号
//! 77777777) on the patient's own declaration. The gateway records the declaration, says what
//! the patient pays at the counter (the usual share for their age, never 10割 "for now": about
//! 3,400 patients were charged 10割 in 2025), and writes the 摘要 the claim must carry, which
//! `onshi receipt check` then asks the register about again.

use onshi_domain::codes::Sex;
use onshi_domain::copay::IncomeClass;
use onshi_domain::date::Date;

/// The kinds of insurance a patient may declare, as the page offers them.
pub const KINDS: [(&str, &str); 6] = [
    ("kyokai", "協会けんぽ"),
    ("kumiai", "健康保険組合"),
    ("kyosai", "共済組合"),
    ("kokuho", "国民健康保険"),
    ("kouki", "後期高齢者医療"),
    ("unknown", "分からない"),
];

/// The insurer number a 不詳 claim is billed under.
pub const UNKNOWN_INSURER: &str = "77777777";

/// One declaration, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declaration {
    pub name_kana: String,
    pub birth_date: Date,
    pub sex: Sex,
    /// A key of [`KINDS`].
    pub kind: String,
    pub employer: String,
    pub address: String,
    pub contact: String,
    /// When the patient filled it in (the 連絡日 of the 摘要).
    pub declared_on: Date,
}

/// Why a declaration cannot be recorded, for staff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeclarationError {
    #[error("カナ氏名を入力してください。")]
    NoKana,
    #[error("生年月日を西暦8桁（例: 19800101）で入力してください。")]
    BirthDate,
    #[error("性別を選んでください。")]
    Sex,
    #[error("保険の種類を選んでください（分からなければ「分からない」）。")]
    Kind,
    #[error("住所か連絡先のどちらかを入力してください（保険者に確認するため）。")]
    NoWayToReach,
    #[error("入力が長すぎます（各欄100文字まで）。")]
    TooLong,
}

/// What staff typed from the patient's form, as typed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Typed<'a> {
    pub name_kana: &'a str,
    pub birth_date: &'a str,
    pub sex: &'a str,
    pub kind: &'a str,
    pub employer: &'a str,
    pub address: &'a str,
    pub contact: &'a str,
}

/// Checks what staff typed. `today` is the declaration's date.
pub fn check(typed: Typed<'_>, today: Date) -> Result<Declaration, DeclarationError> {
    let Typed { name_kana, birth_date, sex, kind, employer, address, contact } = typed;
    let fields = [name_kana, birth_date, sex, kind, employer, address, contact];
    if fields.iter().any(|f| f.chars().count() > 100 || f.chars().any(char::is_control)) {
        return Err(DeclarationError::TooLong);
    }
    let name_kana = name_kana.trim();
    if name_kana.is_empty() {
        return Err(DeclarationError::NoKana);
    }
    let birth = Date::parse_yyyymmdd(&onshi_domain::ids::to_half_width(birth_date.trim())).map_err(|_| DeclarationError::BirthDate)?;
    if birth > today {
        return Err(DeclarationError::BirthDate);
    }
    let sex = match Sex::parse(sex.trim()) {
        Ok(sex @ (Sex::Male | Sex::Female)) => sex,
        _ => return Err(DeclarationError::Sex),
    };
    if !KINDS.iter().any(|(key, _)| *key == kind) {
        return Err(DeclarationError::Kind);
    }
    if address.trim().is_empty() && contact.trim().is_empty() {
        return Err(DeclarationError::NoWayToReach);
    }
    Ok(Declaration {
        name_kana: name_kana.to_string(),
        birth_date: birth,
        sex,
        kind: kind.to_string(),
        employer: employer.trim().to_string(),
        address: address.trim().to_string(),
        contact: contact.trim().to_string(),
        declared_on: today,
    })
}

/// The kind's name as the page and the 摘要 write it.
pub fn kind_ja(kind: &str) -> &'static str {
    KINDS.iter().find(|(key, _)| *key == kind).map_or("分からない", |(_, ja)| ja)
}

/// The share the patient pays at the counter on `on`, in percent: the usual one for their
/// age with the general income class (the class is not known without the coverage), 後期高齢
/// from 75 whatever was declared. Never 100.
pub fn counter_share(d: &Declaration, on: Date) -> u8 {
    // 後期高齢 before 75 only for some from 65 (障害認定); a younger person declaring it is
    // mistaken, and pays the share of their age.
    let late = d.kind == "kouki" && d.birth_date.age_on(on) >= 65;
    onshi_domain::copay::copay_ratio_percent(d.birth_date, on, IncomeClass::General, late)
        .or_else(|| onshi_domain::copay::copay_ratio_percent(d.birth_date, on, IncomeClass::General, !late))
        .unwrap_or(30)
}

/// What staff tell the patient and do at the counter.
pub fn counter_ja(d: &Declaration, on: Date) -> String {
    let share = counter_share(d, on);
    format!(
        "窓口負担は通常の{}割（年齢による割合、所得区分は一般として）で受け付けてください。10割（全額自己負担）にはしません。\
         レセプトは保険者番号 {UNKNOWN_INSURER}（不詳）で、下の摘要を付けて請求します。",
        share / 10
    )
}

/// The 摘要 the 不詳 claim carries (MHLW: カナ氏名, kind of insurance, employer, address,
/// contact, the date the patient was contacted).
pub fn note(d: &Declaration) -> String {
    let or_dash = |s: &str| if s.is_empty() { "－".to_string() } else { s.to_string() };
    format!(
        "被保険者資格申立書による（カナ氏名 {}、保険の種類 {}、事業所名 {}、住所 {}、連絡先 {}、連絡日 {}）",
        d.name_kana,
        kind_ja(&d.kind),
        or_dash(&d.employer),
        or_dash(&d.address),
        or_dash(&d.contact),
        d.declared_on.yyyymmdd()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    fn typed<'a>(name_kana: &'a str, birth_date: &'a str, sex: &'a str, kind: &'a str, address: &'a str) -> Typed<'a> {
        Typed { name_kana, birth_date, sex, kind, employer: "オンシ商事", address, contact: "" }
    }

    fn declared(birth: &str, kind: &str) -> Declaration {
        let form = Typed { contact: "03-0000-0000", ..typed("ミトウ　ジロウ", birth, "1", kind, "東京都千代田区") };
        check(form, d("20261204")).unwrap()
    }

    #[test]
    fn the_counter_share_is_the_usual_one_for_the_age_never_ten_tenths() {
        // Written out from the rules: 3割 from school age to 69, 2割 for 70–74 (一般, born after
        // 1944-04-01), 1割 for 75 and over in 後期高齢 (一般), 2割 before school age.
        assert_eq!(counter_share(&declared("19800101", "kyokai"), d("20261204")), 30);
        assert_eq!(counter_share(&declared("19550101", "kokuho"), d("20261204")), 20);
        assert_eq!(counter_share(&declared("19450101", "kouki"), d("20261204")), 10);
        assert_eq!(counter_share(&declared("19450101", "unknown"), d("20261204")), 10, "75 and over is 後期 whatever was declared");
        assert_eq!(counter_share(&declared("20230101", "kumiai"), d("20261204")), 20);
        assert_eq!(counter_share(&declared("19960101", "kouki"), d("20261204")), 30, "後期 declared at 30: the share of 30");
        assert!(counter_ja(&declared("19800101", "kyokai"), d("20261204")).contains("通常の3割"));
    }

    #[test]
    fn a_declaration_names_what_is_missing_and_writes_the_note_the_claim_needs() {
        let today = d("20261204");
        assert_eq!(check(typed(" ", "19800101", "1", "kyokai", "x"), today), Err(DeclarationError::NoKana));
        assert_eq!(check(typed("ア", "1980-01-01", "1", "kyokai", "x"), today), Err(DeclarationError::BirthDate));
        assert_eq!(check(typed("ア", "20270101", "1", "kyokai", "x"), today), Err(DeclarationError::BirthDate), "born in the future");
        assert_eq!(check(typed("ア", "19800101", "3", "kyokai", "x"), today), Err(DeclarationError::Sex));
        assert_eq!(check(typed("ア", "19800101", "1", "other", "x"), today), Err(DeclarationError::Kind));
        assert_eq!(check(typed("ア", "19800101", "1", "kyokai", " "), today), Err(DeclarationError::NoWayToReach));
        let note = note(&declared("19800101", "kyokai"));
        for piece in ["ミトウ　ジロウ", "協会けんぽ", "オンシ商事", "東京都千代田区", "03-0000-0000", "20261204"] {
            assert!(note.contains(piece), "{note} lacks {piece}");
        }
    }
}
