//! 限度額適用認定 categories (OQSCD012) and the monthly cap on what a patient pays
//! (高額療養費自己負担限度額), per person per institution per month. The caps are dated rows
//! ([`LIMIT_TABLE`]) so that an announced revision is a new row.

use crate::date::Date;
use crate::error::FieldError;

/// 限度額適用区分 (OQSCD012), A for under 70, B for 70 and over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitCategory {
    A01,
    A02,
    A03,
    A04,
    A05,
    A06,
    B01,
    B02,
    B03,
    B04,
    B05,
    B06,
    B07,
    B08,
    B09,
    B10,
}

impl LimitCategory {
    pub const ALL: [LimitCategory; 16] = {
        use LimitCategory::*;
        [A01, A02, A03, A04, A05, A06, B01, B02, B03, B04, B05, B06, B07, B08, B09, B10]
    };

    pub fn code(self) -> &'static str {
        use LimitCategory::*;
        match self {
            A01 => "A01",
            A02 => "A02",
            A03 => "A03",
            A04 => "A04",
            A05 => "A05",
            A06 => "A06",
            B01 => "B01",
            B02 => "B02",
            B03 => "B03",
            B04 => "B04",
            B05 => "B05",
            B06 => "B06",
            B07 => "B07",
            B08 => "B08",
            B09 => "B09",
            B10 => "B10",
        }
    }

    pub fn label_ja(self) -> &'static str {
        use LimitCategory::*;
        match self {
            A01 => "区分ア",
            A02 => "区分イ",
            A03 => "区分ウ",
            A04 => "区分エ",
            A05 => "区分オ",
            A06 => "区分オ（境）",
            B01 => "現役並みⅢ",
            B02 => "現役並みⅡ",
            B03 => "現役並みⅠ",
            B04 => "一般",
            B05 => "低所得Ⅱ",
            B06 => "低所得Ⅰ",
            B07 => "低所得Ⅰ（老福）",
            B08 => "低所得Ⅰ（境）",
            B09 => "一般Ⅱ",
            B10 => "一般Ⅰ",
        }
    }

    pub fn parse(text: &str) -> Result<LimitCategory, FieldError> {
        LimitCategory::ALL
            .into_iter()
            .find(|category| category.code() == text.trim())
            .ok_or_else(|| FieldError::new("is not a limit category of OQSCD012 (A01–A06, B01–B10)", text))
    }

    /// A categories are for patients under 70, B categories for 70 and over.
    pub fn is_seventy_and_over(self) -> bool {
        self.code().starts_with('B')
    }
}

/// How a cap is computed from the month's total medical cost (10割, in yen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapRule {
    /// A fixed amount.
    Flat(u32),
    /// `base + (total − threshold) × percent / 100` once the total passes the threshold, rounded
    /// to the yen, and never above `ceiling` when one is set.
    Progressive { base: u32, threshold: u32, percent: u32, ceiling: Option<u32> },
}

impl CapRule {
    fn apply(self, total_cost_yen: u64) -> u64 {
        match self {
            CapRule::Flat(amount) => u64::from(amount),
            CapRule::Progressive { base, threshold, percent, ceiling } => {
                let excess = total_cost_yen.saturating_sub(u64::from(threshold));
                // Round half up to the yen (一円未満四捨五入).
                let extra = (excess * u64::from(percent) + 50) / 100;
                let cap = u64::from(base) + extra;
                ceiling.map_or(cap, |ceiling| cap.min(u64::from(ceiling)))
            }
        }
    }
}

/// One dated row: from `effective_from`, `category` is capped by `outpatient` for 外来 alone and
/// by `overall` for the whole (外来＋入院, the 世帯 cap for 70 and over).
#[derive(Clone, Copy, Debug)]
pub struct LimitRow {
    pub effective_from: (u16, u8, u8),
    pub category: LimitCategory,
    pub outpatient: CapRule,
    pub overall: CapRule,
}

const fn progressive(base: u32, threshold: u32) -> CapRule {
    CapRule::Progressive { base, threshold, percent: 1, ceiling: None }
}

const fn row(effective_from: (u16, u8, u8), category: LimitCategory, outpatient: CapRule, overall: CapRule) -> LimitRow {
    LimitRow { effective_from, category, outpatient, overall }
}

const AUG_2018: (u16, u8, u8) = (2018, 8, 1);
const ROW_A: CapRule = progressive(252_600, 842_000);
const ROW_I: CapRule = progressive(167_400, 558_000);
const ROW_U: CapRule = progressive(80_100, 267_000);

/// The 2018-08 tables, and 一般Ⅱ (B09) from 2022-10: its 外来 cap was 6,000 + (total − 30,000)
/// × 10 % up to 18,000 during the 配慮措置 (2022-10-01 to 2025-09-30) and is a flat 18,000 since
/// 2025-10-01. Not modelled: 多数回該当 (the lower cap from the fourth month in a year) and the
/// yearly 外来 cap of 144,000 for 一般.
pub const LIMIT_TABLE: &[LimitRow] = {
    use CapRule::Flat;
    use LimitCategory::*;
    &[
        row(AUG_2018, A01, ROW_A, ROW_A),
        row(AUG_2018, A02, ROW_I, ROW_I),
        row(AUG_2018, A03, ROW_U, ROW_U),
        row(AUG_2018, A04, Flat(57_600), Flat(57_600)),
        row(AUG_2018, A05, Flat(35_400), Flat(35_400)),
        row(AUG_2018, A06, Flat(35_400), Flat(35_400)),
        row(AUG_2018, B01, ROW_A, ROW_A),
        row(AUG_2018, B02, ROW_I, ROW_I),
        row(AUG_2018, B03, ROW_U, ROW_U),
        row(AUG_2018, B04, Flat(18_000), Flat(57_600)),
        row(AUG_2018, B05, Flat(8_000), Flat(24_600)),
        row(AUG_2018, B06, Flat(8_000), Flat(15_000)),
        row(AUG_2018, B07, Flat(8_000), Flat(15_000)),
        row(AUG_2018, B08, Flat(8_000), Flat(15_000)),
        row(AUG_2018, B10, Flat(18_000), Flat(57_600)),
        row((2022, 10, 1), B09, CapRule::Progressive { base: 6_000, threshold: 30_000, percent: 10, ceiling: Some(18_000) }, Flat(57_600)),
        // The 配慮措置 ended on 2025-09-30.
        row((2025, 10, 1), B09, Flat(18_000), Flat(57_600)),
    ]
};

/// Whether the cap is for 外来 (outpatient care alone) or for the whole month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CareSetting {
    Outpatient,
    Overall,
}

/// The monthly cap in yen for `category` on `on`, given the month's total medical cost.
/// `None` when no row is in effect (before the category existed).
pub fn monthly_cap_yen(category: LimitCategory, on: Date, setting: CareSetting, total_cost_yen: u64) -> Option<u64> {
    let row = LIMIT_TABLE
        .iter()
        .filter(|row| row.category == category)
        .filter(|row| {
            let (y, m, d) = row.effective_from;
            Date::new(y, m, d).expect("table dates are valid") <= on
        })
        .max_by_key(|row| row.effective_from)?;
    let rule = match setting {
        CareSetting::Outpatient => row.outpatient,
        CareSetting::Overall => row.overall,
    };
    Some(rule.apply(total_cost_yen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use CareSetting::*;
    use LimitCategory::*;

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    #[test]
    fn caps_from_the_tables() {
        let on = d("20261125");
        let cases: &[(LimitCategory, CareSetting, u64, u64)] = &[
            // ア: 252,600 + (1,000,000 − 842,000) × 1 % = 254,180.
            (A01, Overall, 1_000_000, 254_180),
            (A01, Overall, 500_000, 252_600),
            // ウ: 80,100 + (300,000 − 267,000) × 1 % = 80,430; the textbook 1,000,000 → 87,430.
            (A03, Overall, 300_000, 80_430),
            (A03, Overall, 1_000_000, 87_430),
            // ウ rounding: an excess of 50 yen is 0.5 yen, rounded up.
            (A03, Overall, 267_050, 80_101),
            (A02, Overall, 558_000, 167_400),
            (A04, Overall, 1_000_000, 57_600),
            (A05, Outpatient, 1_000_000, 35_400),
            (A06, Outpatient, 1_000_000, 35_400),
            (B01, Overall, 1_000_000, 254_180),
            (B03, Outpatient, 1_000_000, 87_430),
            (B04, Outpatient, 1_000_000, 18_000),
            (B04, Overall, 1_000_000, 57_600),
            (B05, Outpatient, 100_000, 8_000),
            (B05, Overall, 100_000, 24_600),
            (B06, Overall, 100_000, 15_000),
            (B07, Overall, 100_000, 15_000),
            (B08, Overall, 100_000, 15_000),
            // 一般Ⅱ since the 配慮措置 ended (2025-10-01): 18,000 whatever the month's cost.
            (B09, Outpatient, 100_000, 18_000),
            (B09, Outpatient, 1_000_000, 18_000),
            (B09, Outpatient, 20_000, 18_000),
            (B09, Overall, 1_000_000, 57_600),
            (B10, Outpatient, 1_000_000, 18_000),
        ];
        for &(category, setting, total, expected) in cases {
            assert_eq!(monthly_cap_yen(category, on, setting, total), Some(expected), "{category:?} {setting:?} {total}");
        }
    }

    #[test]
    fn rows_are_dated() {
        assert_eq!(monthly_cap_yen(B09, d("20220930"), Outpatient, 100_000), None);
        // The 配慮措置: 6,000 + (100,000 − 30,000) × 10 % = 13,000; at most 18,000; its last day.
        assert_eq!(monthly_cap_yen(B09, d("20221001"), Outpatient, 100_000), Some(13_000));
        assert_eq!(monthly_cap_yen(B09, d("20221001"), Outpatient, 20_000), Some(6_000));
        assert_eq!(monthly_cap_yen(B09, d("20250930"), Outpatient, 100_000), Some(13_000));
        assert_eq!(monthly_cap_yen(B09, d("20250930"), Outpatient, 1_000_000), Some(18_000));
        assert_eq!(monthly_cap_yen(B09, d("20251001"), Outpatient, 100_000), Some(18_000), "ended on 2025-09-30");
        assert_eq!(monthly_cap_yen(A01, d("20180731"), Overall, 100_000), None);
    }

    #[test]
    fn categories_parse() {
        for category in LimitCategory::ALL {
            assert_eq!(LimitCategory::parse(category.code()).unwrap(), category);
        }
        assert!(LimitCategory::parse("A07").unwrap_err().reason.contains("OQSCD012"));
        assert!(B04.is_seventy_and_over() && !A04.is_seventy_and_over());
    }
}
