//! Identifiers printed on cards and claims: insurer numbers (保険者番号), public-expense payer
//! and recipient numbers (公費負担者番号・受給者番号), the medical-institution code (医療機関コード)
//! and the card's 記号・番号・枝番. Each type can only hold a value that passed its rules.

use std::fmt;

use crate::check_digit::weighted_2_1;
use crate::error::FieldError;

/// Turns full-width ASCII (`０-９`, `Ａ-Ｚ`, `－`, …) and the ideographic space into their
/// half-width forms and trims surrounding spaces. Cards, claim files and receipt computers
/// write numbers both ways; the register stores one form so that they compare equal.
pub fn to_half_width(text: &str) -> String {
    let converted: String = text
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            // The minus sign and the long-vowel mark are often typed for a hyphen in numbers.
            '\u{2212}' | '\u{2010}' | '\u{2011}' => '-',
            _ => c,
        })
        .collect();
    converted.trim_matches(' ').to_string()
}

fn digits_only(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the last digit of `digits` against the body before it.
fn check_last_digit(digits: &str, what: &str) -> Result<(), FieldError> {
    let (body, last) = digits.split_at(digits.len() - 1);
    let expected = weighted_2_1(body).expect("caller checked digits");
    if last.as_bytes()[0] - b'0' != expected {
        return Err(FieldError::new(format!("fails the {what} check digit (the last digit should be {expected})"), digits));
    }
    Ok(())
}

/// 法別番号 (the first two digits of an 8-digit insurer number) that belong to insurers.
const INSURER_LAW_NUMBERS: [&str; 17] =
    ["01", "02", "03", "04", "06", "07", "31", "32", "33", "34", "39", "63", "67", "72", "73", "74", "75"];

/// The kind of insurer, read from the law number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InsurerKind {
    /// 全国健康保険協会 (協会けんぽ), law number 01.
    KyokaiKenpo,
    /// 健康保険組合, law number 06.
    HealthInsuranceSociety,
    /// 共済組合, law numbers 31–34.
    MutualAid,
    /// 国民健康保険 (6-digit number, no law number).
    NationalHealthInsurance,
    /// 後期高齢者医療広域連合, law number 39.
    LateElderly,
    /// Anything else that is still an insurer (船員, 日雇, 自衛官, 特例退職, 退職者医療).
    Other,
}

/// 保険者番号: 8 digits (法別 2 + 都道府県 2 + 保険者別 3 + 検証 1), or 6 digits for 国保
/// (都道府県 2 + 保険者別 3 + 検証 1), which files write left-padded with spaces to 8.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct InsurerNumber(String);

impl InsurerNumber {
    /// Accepts `06130488`, `  131011` (国保, space-padded), `131011`, `00131011` (zero-padded
    /// 国保) and the same in full-width digits.
    pub fn parse(text: &str) -> Result<InsurerNumber, FieldError> {
        let half = to_half_width(text);
        if !digits_only(&half) {
            return Err(FieldError::new("must be 6 or 8 digits", text));
        }
        let digits = match half.len() {
            6 => half,
            8 if half.starts_with("00") => half[2..].to_string(),
            8 => {
                if !INSURER_LAW_NUMBERS.contains(&&half[..2]) {
                    return Err(FieldError::new(
                        format!("starts with law number {} which is not an insurer's (a 公費 payer number?)", &half[..2]),
                        text,
                    ));
                }
                half
            }
            _ => return Err(FieldError::new("must be 6 digits (国保) or 8 digits", text)),
        };
        check_last_digit(&digits, "insurer number")?;
        let prefecture: u8 = digits[digits.len() - 6..digits.len() - 4].parse().expect("digits");
        if !valid_prefecture(prefecture) {
            return Err(FieldError::new(format!("names prefecture {prefecture:02}, which does not exist"), text));
        }
        Ok(InsurerNumber(digits))
    }

    /// The canonical digits: 6 for 国保, 8 otherwise.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 8-character form of the XML files: 国保 numbers left-padded with spaces.
    pub fn padded(&self) -> String {
        format!("{:>8}", self.0)
    }

    pub fn kind(&self) -> InsurerKind {
        if self.0.len() == 6 {
            return InsurerKind::NationalHealthInsurance;
        }
        match &self.0[..2] {
            "01" => InsurerKind::KyokaiKenpo,
            "06" => InsurerKind::HealthInsuranceSociety,
            "31" | "32" | "33" | "34" => InsurerKind::MutualAid,
            "39" => InsurerKind::LateElderly,
            _ => InsurerKind::Other,
        }
    }

    /// Builds the number for a body, appending its check digit (for synthetic data and tests).
    pub fn with_check_digit(body: &str) -> Result<InsurerNumber, FieldError> {
        let digit = weighted_2_1(body).ok_or_else(|| FieldError::new("must be digits", body))?;
        InsurerNumber::parse(&format!("{body}{digit}"))
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 都道府県番号 01–47, plus the alternates 51–97 used once a prefecture's range runs out.
fn valid_prefecture(code: u8) -> bool {
    (1..=47).contains(&code) || (51..=97).contains(&code)
}

/// 公費負担者番号: 8 digits (法別 2 + 都道府県 2 + 実施機関 3 + 検証 1).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PublicPayerNumber(String);

impl PublicPayerNumber {
    pub fn parse(text: &str) -> Result<PublicPayerNumber, FieldError> {
        let half = to_half_width(text);
        if half.len() != 8 || !digits_only(&half) {
            return Err(FieldError::new("must be 8 digits", text));
        }
        check_last_digit(&half, "public-expense payer number")?;
        Ok(PublicPayerNumber(half))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn with_check_digit(body: &str) -> Result<PublicPayerNumber, FieldError> {
        let digit = weighted_2_1(body).ok_or_else(|| FieldError::new("must be digits", body))?;
        PublicPayerNumber::parse(&format!("{body}{digit}"))
    }
}

/// 公費受給者番号: 7 digits, the last a check digit over the first six.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RecipientNumber(String);

impl RecipientNumber {
    pub fn parse(text: &str) -> Result<RecipientNumber, FieldError> {
        let half = to_half_width(text);
        if half.len() != 7 || !digits_only(&half) {
            return Err(FieldError::new("must be 7 digits", text));
        }
        check_last_digit(&half, "public-expense recipient number")?;
        Ok(RecipientNumber(half))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn with_check_digit(body: &str) -> Result<RecipientNumber, FieldError> {
        let digit = weighted_2_1(body).ok_or_else(|| FieldError::new("must be digits", body))?;
        RecipientNumber::parse(&format!("{body}{digit}"))
    }
}

/// 点数表番号 of an institution code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreTable {
    /// 医科 (1).
    Medical,
    /// 歯科 (3).
    Dental,
    /// 薬局 (4).
    Pharmacy,
}

/// 医療機関コード, 10 digits: 都道府県 2 + 点数表 1 + 郡市区 2 + 医療機関番号 4 + 検証 1, the check
/// digit computed over the first nine.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct InstitutionCode(String);

impl InstitutionCode {
    pub fn parse(text: &str) -> Result<InstitutionCode, FieldError> {
        let half = to_half_width(text);
        if half.len() != 10 || !digits_only(&half) {
            return Err(FieldError::new("must be 10 digits", text));
        }
        let prefecture: u8 = half[..2].parse().expect("digits");
        if !valid_prefecture(prefecture) {
            return Err(FieldError::new(format!("names prefecture {prefecture:02}, which does not exist"), text));
        }
        if !matches!(&half[2..3], "1" | "3" | "4") {
            return Err(FieldError::new("has score-table digit (3rd) other than 1 医科, 3 歯科 or 4 薬局", text));
        }
        check_last_digit(&half, "institution code")?;
        Ok(InstitutionCode(half))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn score_table(&self) -> ScoreTable {
        match &self.0[2..3] {
            "1" => ScoreTable::Medical,
            "3" => ScoreTable::Dental,
            _ => ScoreTable::Pharmacy,
        }
    }
    pub fn with_check_digit(body: &str) -> Result<InstitutionCode, FieldError> {
        let digit = weighted_2_1(body).ok_or_else(|| FieldError::new("must be digits", body))?;
        InstitutionCode::parse(&format!("{body}{digit}"))
    }
}

impl fmt::Display for InstitutionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest 記号 or 番号 accepted, in characters. Real cards print far fewer; the limit keeps
/// garbage out of the index.
pub const CARD_FIELD_CHARS_MAX: usize = 20;

/// Whether a value typed as a card number is in fact a My Number (12 digits with its check
/// digit, spaces and hyphens aside, full-width digits too): then it is refused and not kept.
pub fn looks_like_my_number(text: &str) -> bool {
    let digits: String = to_half_width(text).chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    crate::check_digit::is_my_number(&digits)
}

/// The refusal of a My Number typed into a card field, without the value.
pub const MY_NUMBER_REFUSED: &str = "looks like a My Number (個人番号: 12 digits with its check digit); write the 記号・番号 printed on the 保険証 or 資格確認書 (a My Number is never accepted or kept)";

fn card_text(text: &str, what: &str) -> Result<String, FieldError> {
    if looks_like_my_number(text) {
        return Err(FieldError::withheld(format!("{what} {MY_NUMBER_REFUSED}")));
    }
    let half = to_half_width(text);
    if half.chars().count() > CARD_FIELD_CHARS_MAX {
        return Err(FieldError::new(format!("is longer than {CARD_FIELD_CHARS_MAX} characters"), text));
    }
    if half.chars().any(|c| c.is_control()) {
        return Err(FieldError::new(format!("{what} contains a control character"), text));
    }
    Ok(half)
}

/// 被保険者証記号: optional on many cards; empty means absent.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct CardSymbol(String);

impl CardSymbol {
    pub fn parse(text: &str) -> Result<CardSymbol, FieldError> {
        card_text(text, "symbol").map(CardSymbol)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// 被保険者証番号: required.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(text: &str) -> Result<CardNumber, FieldError> {
        let half = card_text(text, "number")?;
        if half.is_empty() {
            return Err(FieldError::new("must not be empty", text));
        }
        Ok(CardNumber(half))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 枝番: two digits since 2021 (`1` and `１` become `01`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct CardBranch(u8);

impl CardBranch {
    /// `Ok(None)` for an empty value (the branch is optional in a query).
    pub fn parse(text: &str) -> Result<Option<CardBranch>, FieldError> {
        let half = to_half_width(text);
        if half.is_empty() {
            return Ok(None);
        }
        if half.len() > 2 || !digits_only(&half) {
            return Err(FieldError::new("must be 1 or 2 digits", text));
        }
        Ok(Some(CardBranch(half.parse().expect("digits"))))
    }
    pub fn new(value: u8) -> Option<CardBranch> {
        (value < 100).then_some(CardBranch(value))
    }
    pub fn value(self) -> u8 {
        self.0
    }
}

impl fmt::Display for CardBranch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

/// The keys printed on a card that find a coverage: insurer, 記号, 番号 and (optionally) 枝番.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CardKeys {
    pub insurer: InsurerNumber,
    pub symbol: CardSymbol,
    pub number: CardNumber,
    pub branch: Option<CardBranch>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn insurer_numbers_in_every_written_form() {
        let kokuho = InsurerNumber::with_check_digit("13101").unwrap();
        let digits = kokuho.as_str().to_string();
        assert_eq!(digits.len(), 6);
        for written in [
            digits.clone(),
            format!("  {digits}"),
            format!("00{digits}"),
            digits.chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap()).collect(),
        ] {
            assert_eq!(InsurerNumber::parse(&written).unwrap(), kokuho, "{written:?}");
        }
        assert_eq!(kokuho.padded(), format!("  {digits}"));
        assert_eq!(kokuho.kind(), InsurerKind::NationalHealthInsurance);
        assert_eq!(InsurerNumber::parse("06130488").unwrap().kind(), InsurerKind::HealthInsuranceSociety);
    }

    #[test]
    fn insurer_number_refusals_say_why() {
        let wrong_digit = InsurerNumber::parse("06130487").unwrap_err();
        assert!(wrong_digit.reason.contains("should be 8"), "{wrong_digit}");
        assert!(InsurerNumber::parse("81140048").unwrap_err().reason.contains("law number 81"));
        assert!(InsurerNumber::parse("0613048").unwrap_err().reason.contains("6 digits"));
        assert!(InsurerNumber::parse("0613O488").unwrap_err().reason.contains("digits"));
        let no_prefecture = InsurerNumber::with_check_digit("0649001").unwrap_err();
        assert!(no_prefecture.reason.contains("prefecture 49"), "{no_prefecture}");
    }

    #[test]
    fn institution_codes() {
        assert!(InstitutionCode::parse("3410712362").is_ok());
        assert!(InstitutionCode::parse("3410712363").unwrap_err().reason.contains("should be 2"));
        assert!(InstitutionCode::parse("3420712362").unwrap_err().reason.contains("score-table"));
        assert!(InstitutionCode::parse("341071236").is_err());
        assert_eq!(InstitutionCode::parse("3410712362").unwrap().score_table(), ScoreTable::Medical);
    }

    #[test]
    fn public_expense_numbers() {
        for payer in ["81140048", "28140507", "83120063", "12143210"] {
            assert!(PublicPayerNumber::parse(payer).is_ok(), "{payer}");
        }
        assert!(PublicPayerNumber::parse("83136019").is_err());
        let recipient = RecipientNumber::with_check_digit("123456").unwrap();
        assert!(RecipientNumber::parse(recipient.as_str()).is_ok());
    }

    #[test]
    fn card_fields_normalise() {
        assert_eq!(CardSymbol::parse("　１２３ ").unwrap().as_str(), "123");
        assert_eq!(CardNumber::parse("６４４４０７１８").unwrap().as_str(), "64440718");
        assert!(CardNumber::parse("  ").is_err());
        assert_eq!(CardBranch::parse("１").unwrap().unwrap().to_string(), "01");
        assert_eq!(CardBranch::parse("").unwrap(), None);
        assert!(CardBranch::parse("123").is_err());
        assert!(CardNumber::parse("12\u{0}3").is_err());
        for my_number in ["123456789018", "１２３４ ５６７８ ９０１８", "1234-5678-9018"] {
            let refused = CardNumber::parse(my_number).unwrap_err();
            assert!(refused.reason.contains("My Number") && !refused.to_string().contains("9018"), "{refused}");
            assert!(CardSymbol::parse(my_number).is_err());
        }
        assert!(CardNumber::parse("123456789010").is_ok(), "12 digits without the check digit are a card number");
    }

    fn full_width(text: &str) -> String {
        text.chars().map(|c| if c.is_ascii_graphic() { char::from_u32(c as u32 + 0xFEE0).unwrap() } else { c }).collect()
    }

    proptest! {
        #[test]
        fn any_body_gets_a_check_digit_that_passes(body in "[0-9]{7}") {
            let digit = weighted_2_1(&body).unwrap();
            let full = format!("{body}{digit}");
            prop_assert!(PublicPayerNumber::parse(&full).is_ok());
            // Changing any one digit breaks the check (the 2-1 weighting catches every single
            // substitution).
            for i in 0..8 {
                let mut bytes = full.clone().into_bytes();
                bytes[i] = b'0' + (bytes[i] - b'0' + 1) % 10;
                let changed = String::from_utf8(bytes).unwrap();
                prop_assert!(PublicPayerNumber::parse(&changed).is_err(), "{} passed", changed);
            }
        }

        #[test]
        fn normalisation_is_idempotent_and_width_blind(text in "[ -~]{0,18}") {
            let once = to_half_width(&text);
            prop_assert_eq!(to_half_width(&once), once.clone());
            prop_assert_eq!(to_half_width(&full_width(&text)), once.clone());
            if let Ok(number) = CardNumber::parse(&text) {
                prop_assert_eq!(CardNumber::parse(&full_width(&text)).unwrap(), number);
            }
        }

        #[test]
        fn branches_are_two_digits(value in 0u8..100) {
            let branch = CardBranch::parse(&value.to_string()).unwrap().unwrap();
            prop_assert_eq!(branch.to_string().len(), 2);
            prop_assert_eq!(CardBranch::parse(&full_width(&format!("{value:02}"))).unwrap().unwrap(), branch);
        }
    }
}
