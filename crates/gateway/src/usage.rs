//! This month's マイナ保険証 利用率 at this clinic (issue 16, item 2), on MHLW's basis: checks
//! made with the card ÷ all オンライン資格確認 checks (DOMAIN-2026.md; the FY2026 加算 needs at
//! least 30 %). Pure: the checks come from the gateway's store, the rules are here.
//!
//! How each case is counted, where the sources leave it open (the page says so too):
//! - a check with the card counts as a card use whatever identified the patient: PIN, face, or
//!   a visual check of the card's photo (the card was presented);
//! - a check by the numbers (request file or page) counts in the denominator only;
//! - a check made while the line was down counts once, when it was made: its
//!   re-verification later is the same check, not another;
//! - a check the center refused (a card not linked, numbers it does not know) still counts:
//!   the patient was checked;
//! - 一括照会 (batch checks the day before, of appointment lists) does not count: nobody
//!   presented anything at the counter.

use crate::store::CheckRow;

/// The 加算's threshold since FY2026 (電子的診療情報連携体制整備加算).
pub const THRESHOLD_PERCENT: f64 = 30.0;

/// A month's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct MonthUsage {
    pub card_checks: u32,
    pub all_checks: u32,
    /// (day of month, card checks, all checks), for the days with a check.
    pub days: Vec<(u8, u32, u32)>,
}

impl MonthUsage {
    /// The rate in percent, `None` before the month's first check.
    pub fn percent(&self) -> Option<f64> {
        (self.all_checks > 0).then(|| f64::from(self.card_checks) * 100.0 / f64::from(self.all_checks))
    }

    pub fn meets_threshold(&self) -> bool {
        self.percent().is_some_and(|p| p >= THRESHOLD_PERCENT)
    }
}

/// Whether a check's method is the card's.
pub fn is_card(method: &str) -> bool {
    matches!(method, "pin" | "face" | "visual")
}

/// The figures of the month `yyyymm` (e.g. `202612`) from the checks recorded in it.
pub fn month_usage(yyyymm: &str, checks: &[(String, String)]) -> MonthUsage {
    let mut usage = MonthUsage { card_checks: 0, all_checks: 0, days: Vec::new() };
    for (at, method) in checks.iter().filter(|(at, _)| at.starts_with(yyyymm)) {
        let Some(day) = at.get(6..8).and_then(|d| d.parse::<u8>().ok()) else { continue };
        let card = u32::from(is_card(method));
        usage.card_checks += card;
        usage.all_checks += 1;
        match usage.days.iter_mut().find(|(d, _, _)| *d == day) {
            Some(entry) => {
                entry.1 += card;
                entry.2 += 1;
            }
            None => usage.days.push((day, card, 1)),
        }
    }
    usage.days.sort();
    usage
}

/// The (time, method) pairs [`month_usage`] counts, from the store's check rows.
pub fn counted(rows: &[CheckRow]) -> Vec<(String, String)> {
    rows.iter().map(|row| (row.at.clone(), row.method.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(at, method)| (at.to_string(), method.to_string())).collect()
    }

    /// A month worked by hand: 3 card checks (PIN, face, visual) of 8 checks = 37.5 %, over the
    /// threshold; a check of the month before and one of the month after are not counted.
    #[test]
    fn an_ordinary_month() {
        let month = checks(&[
            ("20261130170000", "pin"),
            ("20261201090000", "number"),
            ("20261201091000", "pin"),
            ("20261201092000", "number"),
            ("20261202100000", "face"),
            ("20261202101000", "number"),
            ("20261215110000", "visual"),
            ("20261215111000", "number"),
            ("20261231180000", "number"),
            ("20270101090000", "face"),
        ]);
        let usage = month_usage("202612", &month);
        assert_eq!((usage.card_checks, usage.all_checks), (3, 8));
        assert_eq!(usage.percent(), Some(37.5));
        assert!(usage.meets_threshold());
        assert_eq!(usage.days, vec![(1, 1, 3), (2, 1, 2), (15, 1, 2), (31, 0, 1)]);
    }

    /// A month with an outage: on the 10th the line was down; two card checks by visual check
    /// and three by numbers were made then (queued, re-verified on the 11th). Each counts once,
    /// on the day it was made: the store records a check once, whatever its re-verification.
    /// 2 + 1 card checks of 2 + 1 + 3 + 4 = 10 checks: 30 %, exactly at the threshold.
    #[test]
    fn a_month_with_an_outage_and_its_re_verifications() {
        let month = checks(&[
            ("20261209090000", "pin"),
            ("20261209091000", "number"),
            ("20261210090000", "visual"),
            ("20261210091000", "visual"),
            ("20261210092000", "number"),
            ("20261210093000", "number"),
            ("20261210094000", "number"),
            ("20261211090000", "number"),
            ("20261211091000", "number"),
            ("20261211092000", "number"),
        ]);
        let usage = month_usage("202612", &month);
        assert_eq!((usage.card_checks, usage.all_checks), (3, 10));
        assert_eq!(usage.percent(), Some(30.0));
        assert!(usage.meets_threshold(), "30 % meets a threshold of at least 30 %");
        assert_eq!(usage.days, vec![(9, 1, 2), (10, 2, 5), (11, 0, 3)]);
    }

    /// Batch checks are not check rows at all, so a month with a big 一括照会 changes nothing:
    /// 1 card check of 4 = 25 %, under the threshold. Before the first check there is no rate.
    #[test]
    fn a_month_with_batch_checks_and_an_empty_one() {
        let usage = month_usage(
            "202612",
            &checks(&[
                ("20261203090000", "face"),
                ("20261203091000", "number"),
                ("20261204090000", "number"),
                ("20261204091000", "number"),
            ]),
        );
        assert_eq!(usage.percent(), Some(25.0));
        assert!(!usage.meets_threshold());
        let empty = month_usage("202611", &[]);
        assert_eq!((empty.percent(), empty.meets_threshold()), (None, false));
    }
}
