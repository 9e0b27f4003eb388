//! The heart of the center: from the coverages that carry a card's numbers, decide the
//! QualificationValidity (資格有効性) for a date of care. Pure: the caller fetches the
//! candidates from the register and passes them in.

use crate::codes::{QualificationValidity, ReasonOfLoss};
use crate::date::Date;
use crate::ids::{CardBranch, InsurerKind};

/// A coverage (資格) as far as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageSpan {
    /// The register's id of this coverage.
    pub coverage_id: i64,
    /// The register's opaque id of the person holding it.
    pub person_id: i64,
    pub branch: CardBranch,
    pub birth_date: Date,
    /// 資格取得日: the first day covered.
    pub acquired_on: Date,
    /// 資格喪失日: the first day *not* covered (the day after retirement, the day of death
    /// plus one, the 75th birthday, …).
    pub lost_on: Option<Date>,
    pub loss_reason: Option<ReasonOfLoss>,
}

impl CoverageSpan {
    /// Covered on `on`: acquired on or before it and not yet lost.
    pub fn covers(&self, on: Date) -> bool {
        self.acquired_on <= on && self.lost_on.is_none_or(|lost| on < lost)
    }
}

/// What the card's numbers and birth date identify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardMatch<'a> {
    /// No coverage carries these numbers.
    NoSuchNumbers,
    /// Coverages carry these numbers, but none with this birth date.
    BirthDateMismatch,
    /// The numbers and birth date fit more than one person (no 枝番 given: twins, say).
    SeveralPeople(usize),
    /// Exactly one person; the coverage that carries the numbers.
    One(&'a CoverageSpan),
}

/// Narrows the coverages that carry the queried 保険者番号・記号・番号 down to one.
/// `branch` is the queried 枝番, if any. When one person holds several coverages with the same
/// numbers over time (left and re-joined), the one covering `on` or else the latest is taken.
pub fn match_card(candidates: &[CoverageSpan], branch: Option<CardBranch>, birth_date: Date, on: Date) -> CardMatch<'_> {
    let by_branch: Vec<&CoverageSpan> = candidates.iter().filter(|c| branch.is_none_or(|b| b == c.branch)).collect();
    if by_branch.is_empty() {
        return CardMatch::NoSuchNumbers;
    }
    let by_birth: Vec<&CoverageSpan> = by_branch.into_iter().filter(|c| c.birth_date == birth_date).collect();
    if by_birth.is_empty() {
        return CardMatch::BirthDateMismatch;
    }
    let mut people: Vec<i64> = by_birth.iter().map(|c| c.person_id).collect();
    people.sort_unstable();
    people.dedup();
    if people.len() > 1 {
        return CardMatch::SeveralPeople(people.len());
    }
    let chosen = by_birth.iter().copied().max_by_key(|c| (c.covers(on), c.acquired_on)).expect("by_birth is not empty");
    CardMatch::One(chosen)
}

/// 資格喪失日 by law for a coverage of an insurer of `kind`: every coverage but 後期高齢者医療's
/// ends on the 75th birthday, when the person becomes a 後期高齢者医療 insured
/// (高齢者の医療の確保に関する法律 §50–52), whether or not the insurer has registered it yet.
pub fn statutory_loss(kind: InsurerKind, birth: Date) -> Option<Date> {
    (kind != InsurerKind::LateElderly).then(|| birth.add_years(75))
}

impl CoverageSpan {
    /// The span as the law has it: lost on the earlier of the registered loss and the
    /// statutory one (see [`statutory_loss`]). The second value is `true` when the law's date
    /// ends the coverage before (or without) the insurer's registration.
    pub fn under_law(self, kind: InsurerKind) -> (CoverageSpan, bool) {
        match statutory_loss(kind, self.birth_date).filter(|by_law| *by_law > self.acquired_on) {
            Some(by_law) if self.lost_on.is_none_or(|registered| registered > by_law) => {
                (CoverageSpan { lost_on: Some(by_law), loss_reason: Some(ReasonOfLoss::OtherInsuranceAcquired), ..self }, true)
            }
            _ => (self, false),
        }
    }
}

/// The decision for one identified coverage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Covered on the date of care.
    Valid,
    /// The coverage starts after the date of care.
    NotYetAcquired { acquired_on: Date },
    /// The coverage had ended, and no other coverage of the person covers the date.
    Lost { lost_on: Date },
    /// The coverage had ended and the person holds another coverage on the date (振替 target).
    LostNewerExists { lost_on: Date, newer_coverage_id: i64 },
}

impl Judgement {
    pub fn validity(&self) -> QualificationValidity {
        match self {
            Judgement::Valid => QualificationValidity::Valid,
            Judgement::NotYetAcquired { .. } | Judgement::Lost { .. } => QualificationValidity::Invalid,
            Judgement::LostNewerExists { .. } => QualificationValidity::InvalidNewerExists,
        }
    }
}

/// Judges `coverage` on `on`, given every coverage the same person holds (it may include
/// `coverage` itself). The newer coverage is the one covering the date, latest acquired first.
pub fn judge(coverage: &CoverageSpan, person_coverages: &[CoverageSpan], on: Date) -> Judgement {
    if coverage.covers(on) {
        return Judgement::Valid;
    }
    if on < coverage.acquired_on {
        return Judgement::NotYetAcquired { acquired_on: coverage.acquired_on };
    }
    let lost_on = coverage.lost_on.expect("not covered, not before acquisition: must be lost");
    debug_assert!(lost_on <= on);
    let newer = person_coverages
        .iter()
        .filter(|other| other.coverage_id != coverage.coverage_id && other.person_id == coverage.person_id)
        .filter(|other| other.covers(on))
        .max_by_key(|other| other.acquired_on);
    match newer {
        Some(newer) => Judgement::LostNewerExists { lost_on, newer_coverage_id: newer.coverage_id },
        None => Judgement::Lost { lost_on },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse_yyyymmdd(text).unwrap()
    }

    fn span(coverage_id: i64, person_id: i64, branch: u8, birth: &str, acquired: &str, lost: Option<&str>) -> CoverageSpan {
        CoverageSpan {
            coverage_id,
            person_id,
            branch: CardBranch::new(branch).unwrap(),
            birth_date: d(birth),
            acquired_on: d(acquired),
            lost_on: lost.map(d),
            loss_reason: lost.map(|_| ReasonOfLoss::OtherInsuranceAcquired),
        }
    }

    #[test]
    fn every_coverage_but_the_late_elderly_one_ends_on_the_75th_birthday() {
        let born = "19511210";
        // 75th birthday: 2026-12-10, the first day not covered (資格喪失日).
        let open = span(1, 1, 0, born, "20111210", None);
        let (by_law, decided) = open.clone().under_law(InsurerKind::NationalHealthInsurance);
        assert!(decided);
        assert_eq!(by_law.lost_on, Some(d("20261210")));
        assert!(by_law.covers(d("20261209")) && !by_law.covers(d("20261210")));
        assert_eq!(open.clone().under_law(InsurerKind::LateElderly), (open.clone(), false), "後期高齢 goes on");
        for kind in [InsurerKind::KyokaiKenpo, InsurerKind::HealthInsuranceSociety, InsurerKind::MutualAid, InsurerKind::Other] {
            assert_eq!(open.clone().under_law(kind).0.lost_on, Some(d("20261210")), "{kind:?}");
        }
        let registered_earlier = span(1, 1, 0, born, "20111210", Some("20260401"));
        assert_eq!(registered_earlier.clone().under_law(InsurerKind::KyokaiKenpo), (registered_earlier, false));
        let registered_same = span(1, 1, 0, born, "20111210", Some("20261210"));
        assert!(!registered_same.under_law(InsurerKind::KyokaiKenpo).1, "the insurer registered it already");
        let registered_later = span(1, 1, 0, born, "20111210", Some("20270331"));
        assert_eq!(registered_later.under_law(InsurerKind::KyokaiKenpo).0.lost_on, Some(d("20261210")));
        let acquired_after = span(1, 1, 0, born, "20270101", None);
        assert!(!acquired_after.under_law(InsurerKind::KyokaiKenpo).1, "nothing to end before it began");
    }

    #[test]
    fn matching() {
        let twins = [span(1, 10, 1, "20200505", "20200505", None), span(2, 11, 2, "20200505", "20200505", None)];
        let on = d("20261125");
        assert_eq!(match_card(&twins, None, d("20200505"), on), CardMatch::SeveralPeople(2));
        assert_eq!(match_card(&twins, CardBranch::new(2), d("20200505"), on), CardMatch::One(&twins[1]));
        assert_eq!(match_card(&twins, CardBranch::new(3), d("20200505"), on), CardMatch::NoSuchNumbers);
        assert_eq!(match_card(&twins, None, d("20200506"), on), CardMatch::BirthDateMismatch);
        assert_eq!(match_card(&[], None, d("20200506"), on), CardMatch::NoSuchNumbers);
    }

    #[test]
    fn judging_the_loss_day_and_the_newer_coverage() {
        let old = span(1, 10, 0, "19800101", "20100401", Some("20261101"));
        let new = span(2, 10, 0, "19800101", "20261101", None);
        let both = [old.clone(), new.clone()];
        assert_eq!(judge(&old, &both, d("20261031")), Judgement::Valid);
        assert_eq!(judge(&old, &both, d("20261101")), Judgement::LostNewerExists { lost_on: d("20261101"), newer_coverage_id: 2 });
        assert_eq!(judge(&old, std::slice::from_ref(&old), d("20261101")), Judgement::Lost { lost_on: d("20261101") });
        assert_eq!(judge(&new, &both, d("20261031")), Judgement::NotYetAcquired { acquired_on: d("20261101") });
        assert_eq!(judge(&new, &both, d("20261031")).validity(), QualificationValidity::Invalid);
    }

    #[test]
    fn rejoined_numbers_take_the_covering_span() {
        let first = span(1, 10, 0, "19800101", "20100401", Some("20150401"));
        let again = span(2, 10, 0, "19800101", "20200401", None);
        let both = [first.clone(), again.clone()];
        assert_eq!(match_card(&both, None, d("19800101"), d("20120101")), CardMatch::One(&both[0]));
        assert_eq!(match_card(&both, None, d("19800101"), d("20261125")), CardMatch::One(&both[1]));
    }
}
