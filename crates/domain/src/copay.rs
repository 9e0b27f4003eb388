//! 一部負担金割合: the share of the cost a patient pays at the counter, decided by age on the date
//! of care, the income class the insurer records and whether the coverage is 後期高齢者医療.
//! The ratios are dated rows ([`COPAY_TABLE`]): a revision is a new row, not a code edit.

use crate::date::Date;
use crate::error::FieldError;

/// 所得区分 as far as it decides the copay ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IncomeClass {
    /// 一般 (and 低所得, whose ratio is the same).
    General,
    /// 一定以上所得 (後期高齢者 2割, since 2022-10-01).
    GeneralII,
    /// 現役並み所得 (3割 from 70 on).
    ActiveHigh,
}

impl IncomeClass {
    pub const ALL: [IncomeClass; 3] = [IncomeClass::General, IncomeClass::GeneralII, IncomeClass::ActiveHigh];

    pub fn code(self) -> &'static str {
        match self {
            IncomeClass::General => "general",
            IncomeClass::GeneralII => "general2",
            IncomeClass::ActiveHigh => "active_high",
        }
    }
    pub fn parse(text: &str) -> Result<IncomeClass, FieldError> {
        IncomeClass::ALL
            .into_iter()
            .find(|class| class.code() == text)
            .ok_or_else(|| FieldError::new("is not an income class (general, general2, active_high)", text))
    }
}

/// Which rule band a patient falls in on the date of care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgeBand {
    /// 義務教育就学前 (未就学).
    Preschool,
    /// From school age until the 70 rule applies.
    UnderSeventy,
    /// 70–74 (高齢受給者).
    SeventyToSeventyFour,
    /// 後期高齢者: from the 75th birthday, or covered by a 後期高齢者医療広域連合 earlier
    /// (障害認定 from 65).
    LateElderly,
}

/// The first day of compulsory schooling: the 1 April after the child legally reaches 6.
/// Japanese law counts an age as reached at the end of the day before the birthday, so a child
/// born on 1 April starts school in the year of the 6th birthday, one born on 2 April a year later.
pub fn school_entry(birth: Date) -> Date {
    let reaches_six = birth.add_years(6).add_days(-1);
    let april_first = Date::new(reaches_six.year(), 4, 1).expect("1 April exists");
    if reaches_six < april_first { april_first } else { april_first.add_years(1) }
}

/// The day the 70–74 rules start: the first of the month after the 70th birthday, or the
/// birthday itself when it falls on the 1st (the age is reached on the last day of the month
/// before).
pub fn seventy_rule_start(birth: Date) -> Date {
    let birthday = birth.add_years(70);
    if birthday.day() == 1 { birthday } else { birthday.first_of_next_month() }
}

/// The day 後期高齢者医療 starts by age: the 75th birthday itself.
pub fn late_elderly_start(birth: Date) -> Date {
    birth.add_years(75)
}

/// The band a patient is in on `on`.
pub fn age_band(birth: Date, on: Date, late_elderly_coverage: bool) -> AgeBand {
    if late_elderly_coverage || on >= late_elderly_start(birth) {
        AgeBand::LateElderly
    } else if on >= seventy_rule_start(birth) {
        AgeBand::SeventyToSeventyFour
    } else if on < school_entry(birth) {
        AgeBand::Preschool
    } else {
        AgeBand::UnderSeventy
    }
}

/// One dated row of the copay table. `income: None` matches every income class.
#[derive(Clone, Copy, Debug)]
pub struct CopayRow {
    pub effective_from: (u16, u8, u8),
    pub band: AgeBand,
    pub income: Option<IncomeClass>,
    pub ratio_percent: u8,
}

/// Rows from the 2008-04 reform (後期高齢者医療制度) on. The 70–74 special 1割 measure that ran
/// until 2014-03 for people born before 1944-04-02 is not modelled; dates before 2008-04-01 have
/// no rule at all and are refused.
pub const COPAY_TABLE: &[CopayRow] = &[
    CopayRow { effective_from: (2008, 4, 1), band: AgeBand::Preschool, income: None, ratio_percent: 20 },
    CopayRow { effective_from: (2008, 4, 1), band: AgeBand::UnderSeventy, income: None, ratio_percent: 30 },
    CopayRow { effective_from: (2008, 4, 1), band: AgeBand::SeventyToSeventyFour, income: None, ratio_percent: 20 },
    CopayRow {
        effective_from: (2008, 4, 1),
        band: AgeBand::SeventyToSeventyFour,
        income: Some(IncomeClass::ActiveHigh),
        ratio_percent: 30,
    },
    CopayRow { effective_from: (2008, 4, 1), band: AgeBand::LateElderly, income: None, ratio_percent: 10 },
    CopayRow { effective_from: (2008, 4, 1), band: AgeBand::LateElderly, income: Some(IncomeClass::ActiveHigh), ratio_percent: 30 },
    // 一定以上所得のある後期高齢者の2割負担 (2022-10-01).
    CopayRow { effective_from: (2022, 10, 1), band: AgeBand::LateElderly, income: Some(IncomeClass::GeneralII), ratio_percent: 20 },
];

/// The copay ratio in percent on the date of care, or `None` before the table starts.
/// A row for the exact income class wins over a row for every class; among those, the latest
/// row in effect on the date wins.
pub fn copay_ratio_percent(birth: Date, on: Date, income: IncomeClass, late_elderly_coverage: bool) -> Option<u8> {
    let band = age_band(birth, on, late_elderly_coverage);
    COPAY_TABLE
        .iter()
        .filter(|row| row.band == band && row.income.is_none_or(|class| class == income))
        .filter(|row| {
            let (y, m, d) = row.effective_from;
            Date::new(y, m, d).expect("table dates are valid") <= on
        })
        .max_by_key(|row| (row.income.is_some(), row.effective_from))
        .map(|row| row.ratio_percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    /// Every boundary of the rules: (birth, date of care, income, 後期 coverage, expected %).
    #[test]
    fn every_boundary() {
        use IncomeClass::*;
        let cases: &[(&str, &str, IncomeClass, bool, Option<u8>)] = &[
            // Pre-school: born 1 April enters school in the year of the 6th birthday...
            ("20200401", "20260331", General, false, Some(20)),
            ("20200401", "20260401", General, false, Some(30)),
            // ...born 2 April a year later.
            ("20200402", "20270331", General, false, Some(20)),
            ("20200402", "20270401", General, false, Some(30)),
            ("20191231", "20260331", General, false, Some(20)),
            ("20191231", "20260401", General, false, Some(30)),
            // 70: first of the month after the birthday...
            ("19560315", "20260315", General, false, Some(30)),
            ("19560315", "20260331", General, false, Some(30)),
            ("19560315", "20260401", General, false, Some(20)),
            ("19560315", "20260401", ActiveHigh, false, Some(30)),
            // ...or the birthday itself when born on the 1st.
            ("19560401", "20260331", General, false, Some(30)),
            ("19560401", "20260401", General, false, Some(20)),
            // Born on 29 February: the birthday in a common year is taken as 1 March.
            ("19560229", "20260228", General, false, Some(30)),
            ("19560229", "20260301", General, false, Some(20)),
            // 75: the birthday itself.
            ("19511126", "20261125", General, false, Some(20)),
            ("19511126", "20261126", General, false, Some(10)),
            ("19511126", "20261126", GeneralII, false, Some(20)),
            ("19511126", "20261126", ActiveHigh, false, Some(30)),
            // 一定以上所得 2割 starts 2022-10-01.
            ("19400101", "20220930", GeneralII, false, Some(10)),
            ("19400101", "20221001", GeneralII, false, Some(20)),
            // 後期高齢 by disability before 75.
            ("19580101", "20261125", General, true, Some(10)),
            // No rule before 2008-04-01.
            ("19300101", "20080331", General, false, None),
            ("19300101", "20080401", General, false, Some(10)),
            // 一般Ⅱ under 70 is simply 3割.
            ("19800101", "20261125", GeneralII, false, Some(30)),
        ];
        for &(birth, on, income, late, expected) in cases {
            assert_eq!(copay_ratio_percent(d(birth), d(on), income, late), expected, "born {birth} on {on} {income:?} late={late}");
        }
    }
}
