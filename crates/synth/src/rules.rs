//! The counter rules the ground truth is computed with, written out again from DOMAIN.md §6 on
//! plain year/month/day numbers, without calling `onshi_domain::copay` or anything else the
//! center uses: a wrong table or boundary in the center then shows as a mismatch in
//! `onshi demo --check` instead of passing because both sides share it. The tests below
//! compare the two implementations over every day of many births.

use onshi_domain::Date;
use onshi_domain::copay::IncomeClass;

/// Days ahead an age change of the copay is announced (as `pending`).
pub const NOTICE_DAYS: i64 = 62;

fn ymd(date: Date) -> (u16, u8, u8) {
    (date.year(), date.month(), date.day())
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).expect("a calendar date")
}

/// The `years`-th birthday. A 29 February birth has its birthday on 1 March in other years
/// (the day after 28 February, when the age is legally reached).
pub fn birthday(birth: Date, years: u16) -> Date {
    let (y, m, d) = ymd(birth);
    Date::new(y + years, m, d).unwrap_or_else(|| date(y + years, 3, 1))
}

/// 未就学 ends on 31 March after the child legally reaches 6 (the day before the 6th
/// birthday): school starts on the next 1 April. Born 1 April: school in the year they turn 6.
pub fn school_entry(birth: Date) -> Date {
    let (y, m, d) = ymd(birth);
    // Reaching 6 on or before 31 March of year y+6 ⇔ born between 2 April of y and 1 April of y+1.
    let born_by_april_first = m < 4 || (m == 4 && d == 1);
    date(if born_by_april_first { y + 6 } else { y + 7 }, 4, 1)
}

/// The 70–74 rules start on the first of the month after the 70th birthday, or on the birthday
/// itself when it is the 1st.
pub fn seventy_start(birth: Date) -> Date {
    let (y, m, d) = ymd(birth);
    if d == 1 {
        return date(y + 70, m, 1);
    }
    if m == 12 { date(y + 71, 1, 1) } else { date(y + 70, m + 1, 1) }
}

/// 後期高齢者医療 starts on the 75th birthday; every other coverage ends that day.
pub fn seventy_five(birth: Date) -> Date {
    birthday(birth, 75)
}

/// 一部負担金割合 in percent on `on`, for a coverage that is 後期高齢 (`late`) or not.
pub fn copay_percent(birth: Date, on: Date, income: IncomeClass, late: bool) -> u8 {
    if late || on >= seventy_five(birth) {
        return match income {
            IncomeClass::ActiveHigh => 30,
            // 一定以上所得 pays 2割 since 2022-10-01.
            IncomeClass::GeneralII if on >= date(2022, 10, 1) => 20,
            _ => 10,
        };
    }
    if on >= seventy_start(birth) {
        return if income == IncomeClass::ActiveHigh { 30 } else { 20 };
    }
    if on < school_entry(birth) { 20 } else { 30 }
}

/// What the paper a patient shows is worth on `on`, written out from the notices
/// (DOMAIN-2026.md): a 資格確認書 is accepted; the old 保険証 until its end (国保・後期
/// 2025-07-31, 被用者 2025-12-01), then, like the 資格情報のお知らせ alone, only with an
/// オン資 confirmation until 2026-03-31; after that not alone.
pub fn document_worth(document: &str, on: Date, regional: bool) -> &'static str {
    let ymd = |y, m, d| Date::new(y, m, d).expect("a valid date");
    let card_end = if regional { ymd(2025, 7, 31) } else { ymd(2025, 12, 1) };
    match document {
        "qualification_certificate" => "accepted",
        "insurance_card" if on <= card_end => "accepted",
        _ if on <= ymd(2026, 3, 31) => "accepted_with_confirmation",
        _ => "not_alone",
    }
}

/// The 資格確認書 a 後期高齢 insurer registered for a member, written out from the notices
/// (DOMAIN-2026.md): everyone received one valid until 2026-07-31 without applying; from
/// 2026-08-01 only those 85 or over on that day received a new one (a year, to 2027-07-31), so
/// the others' registered certificate is the one that ended on 2026-07-31.
pub fn late_elderly_certificate(birth: Date) -> onshi_api::events::QualificationCertificate {
    let ymd = |y, m, d| Date::new(y, m, d).expect("a valid date");
    let turn = ymd(2026, 8, 1);
    let eighty_five_by_then = birthday(birth, 85) <= turn;
    let (from, to) = if eighty_five_by_then { (turn, ymd(2027, 7, 31)) } else { (ymd(2025, 8, 1), ymd(2026, 7, 31)) };
    onshi_api::events::QualificationCertificate { valid_from: from.to_string(), valid_to: to.to_string() }
}

/// What a 資格確認書 is worth on `on` with the validity the insurer registered: expired after its
/// last day.
pub fn certificate_worth(valid_to: &str, on: Date) -> &'static str {
    if on.to_string().as_str() > valid_to { "expired" } else { "accepted" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::copay;

    fn d(y: u16, m: u8, day: u8) -> Date {
        date(y, m, day)
    }

    #[test]
    fn the_boundaries_as_written() {
        assert_eq!(school_entry(d(2020, 4, 1)), d(2026, 4, 1));
        assert_eq!(school_entry(d(2020, 4, 2)), d(2027, 4, 1));
        assert_eq!(school_entry(d(2020, 3, 31)), d(2026, 4, 1));
        assert_eq!(seventy_start(d(1956, 3, 1)), d(2026, 3, 1));
        assert_eq!(seventy_start(d(1956, 3, 2)), d(2026, 4, 1));
        assert_eq!(seventy_start(d(1956, 12, 15)), d(2027, 1, 1));
        assert_eq!(seventy_five(d(1951, 12, 10)), d(2026, 12, 10));
        assert_eq!(copay_percent(d(1951, 12, 10), d(2026, 12, 9), IncomeClass::General, false), 20);
        assert_eq!(copay_percent(d(1951, 12, 10), d(2026, 12, 10), IncomeClass::GeneralII, true), 20);
        assert_eq!(copay_percent(d(1946, 1, 5), d(2022, 9, 30), IncomeClass::GeneralII, true), 10, "2割 from 2022-10-01");
    }

    /// The center's rules and these agree on every day around each boundary of many births:
    /// two implementations written apart.
    #[test]
    fn the_center_s_rules_agree_with_these() {
        let mut birth = d(1940, 1, 1);
        while birth < d(2024, 12, 31) {
            let days = [school_entry(birth), seventy_start(birth), seventy_five(birth)];
            for boundary in days {
                for offset in -2..=2 {
                    let on = boundary.add_days(offset);
                    for income in IncomeClass::ALL {
                        for late in [false, true] {
                            let center = copay::copay_ratio_percent(birth, on, income, late);
                            if let Some(center) = center {
                                assert_eq!(center, copay_percent(birth, on, income, late), "{birth} on {on} {income:?} late {late}");
                            }
                        }
                    }
                }
            }
            assert_eq!(copay::school_entry(birth), school_entry(birth), "{birth}");
            assert_eq!(copay::seventy_rule_start(birth), seventy_start(birth), "{birth}");
            assert_eq!(copay::late_elderly_start(birth), seventy_five(birth), "{birth}");
            birth = birth.add_days(13);
        }
    }
}
