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
//!
//! The other two bases the sources name: persons (patients who used the card at least once
//! this month ÷ patients checked this month) and claims (patients who used the card ÷ the
//! claims of the treatment month in the claim file `onshi receipt check --gateway` read). A
//! patient is the coverage the answer named (insurer, 記号, 番号, 枝番), or, without an answer,
//! what was asked.

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

/// One check as the bases count it: when (`YYYYMMDDHHmmss`), how, and whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub at: String,
    /// `number`, `pin`, `face` or `visual`.
    pub method: String,
    /// The patient: the coverage the answer named, or what was asked.
    pub person: String,
}

/// A month's figures on the persons basis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonsUsage {
    /// Patients who used the card at least once this month.
    pub card_persons: u32,
    /// Patients checked this month.
    pub persons: u32,
}

/// The persons basis of `yyyymm`.
pub fn persons_usage(yyyymm: &str, checks: &[Counted]) -> PersonsUsage {
    let mut persons: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
    for check in checks.iter().filter(|c| c.at.starts_with(yyyymm)) {
        *persons.entry(&check.person).or_default() |= is_card(&check.method);
    }
    PersonsUsage { card_persons: persons.values().filter(|card| **card).count() as u32, persons: persons.len() as u32 }
}

/// A rate in percent, `None` without a denominator.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// This month's checks by method (`number`, `pin`, `face`, `visual`).
pub fn by_method(yyyymm: &str, checks: &[Counted]) -> std::collections::BTreeMap<String, u32> {
    let mut methods = std::collections::BTreeMap::new();
    for check in checks.iter().filter(|c| c.at.starts_with(yyyymm)) {
        *methods.entry(check.method.clone()).or_default() += 1;
    }
    methods
}

/// Whether a check's method is the card's.
pub fn is_card(method: &str) -> bool {
    matches!(method, "pin" | "face" | "visual")
}

/// The figures of the month `yyyymm` (e.g. `202612`) from the checks recorded in it.
pub fn month_usage(yyyymm: &str, checks: &[Counted]) -> MonthUsage {
    let mut usage = MonthUsage { card_checks: 0, all_checks: 0, days: Vec::new() };
    for Counted { at, method, .. } in checks.iter().filter(|c| c.at.starts_with(yyyymm)) {
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

/// The checks the bases count, from the store's check rows. The patient is taken from the
/// last answer (a re-verified check's, when it was queued).
pub fn counted(rows: &[CheckRow]) -> Vec<Counted> {
    rows.iter().map(|row| Counted { at: row.at.clone(), method: row.method.clone(), person: person_of(row) }).collect()
}

fn person_of(row: &CheckRow) -> String {
    use crate::check::Outcome;
    let latest = row.requeued.as_ref().and_then(|q| q.outcome.as_ref()).unwrap_or(&row.outcome);
    let coverage = match latest {
        Outcome::Answered { answer, .. } | Outcome::Cached { answer, .. } => answer.coverage.as_ref(),
        Outcome::Refused { .. } | Outcome::Queued { .. } => None,
    };
    match coverage {
        Some(c) => format!("{}:{}:{}:{}", c.insurer_number, c.symbol.as_deref().unwrap_or(""), c.number, c.branch),
        None => format!("asked:{}", row.subject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(list: &[(&str, &str)]) -> Vec<Counted> {
        list.iter()
            .enumerate()
            .map(|(i, (at, method))| Counted { at: at.to_string(), method: method.to_string(), person: format!("p{i}") })
            .collect()
    }

    fn of(list: &[(&str, &str, &str)]) -> Vec<Counted> {
        list.iter()
            .map(|(at, method, person)| Counted { at: at.to_string(), method: method.to_string(), person: person.to_string() })
            .collect()
    }

    /// Persons by hand: A comes three times (numbers twice, the card once), B twice by numbers,
    /// C once by face, D by PIN in November only. This month: A and C used the card, of A, B,
    /// C: 2 of 3 persons (66.7 %), while the checks basis says 2 of 6 (33.3 %). With 5 claims
    /// in the claim file, the claims basis is 2 of 5 (40 %).
    #[test]
    fn the_persons_and_claims_bases() {
        let month = of(&[
            ("20261130090000", "pin", "D"),
            ("20261201090000", "number", "A"),
            ("20261202090000", "number", "A"),
            ("20261203090000", "pin", "A"),
            ("20261203091000", "number", "B"),
            ("20261210090000", "number", "B"),
            ("20261211090000", "face", "C"),
        ]);
        assert_eq!(persons_usage("202612", &month), PersonsUsage { card_persons: 2, persons: 3 });
        let checks = month_usage("202612", &month);
        assert_eq!((checks.card_checks, checks.all_checks), (2, 6));
        assert_eq!(percent(2, 5), Some(40.0));
        assert_eq!(percent(2, 0), None);
        let methods: Vec<(String, u32)> = by_method("202612", &month).into_iter().collect();
        assert_eq!(methods, vec![("face".to_string(), 1), ("number".to_string(), 4), ("pin".to_string(), 1)]);
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
