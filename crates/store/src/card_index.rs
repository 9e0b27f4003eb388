//! The card index: the register's card view held in memory, so that a verification by number or
//! by card finds the holders without reading the engine.
//!
//! It is a copy, and a copy is only worth having if it is never wrong. It follows the register by
//! the change log (`register_changes`, migration 0013): every import transaction records the
//! coverages it touched, in commit order, and the index re-reads the persons who hold them. Each
//! engine decides when the copy may answer (SQLite: only when no commit has happened since the
//! index caught up, by the file's own change counter; see `sqlite::index`). This module only
//! holds the data and knows nothing of engines.

use std::collections::HashMap;
use std::sync::Arc;

use crate::SharedView;
use crate::StoreError;
use crate::model::CoverageWithTerms;

/// The change log's list of coverage ids: little-endian 64-bit integers, back to back.
pub(crate) fn encode_ids(ids: &[i64]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

pub(crate) fn decode_ids(bytes: &[u8]) -> Result<Vec<i64>, StoreError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!("a change log entry of {} bytes (not whole ids)", bytes.len())));
    }
    Ok(bytes.chunks_exact(8).map(|chunk| i64::from_le_bytes(chunk.try_into().expect("chunks of eight"))).collect())
}

/// The largest register a center keeps the card index of unless told otherwise: about 1.7 GB
/// of memory at 0.86 kB per person (measured in docs/PERFORMANCE.md before each coverage got
/// its own reference count, which adds a few tens of bytes per coverage).
pub const DEFAULT_MAX_PERSONS: u64 = 2_000_000;

/// Persons read per statement while an engine loads the index.
pub(crate) const LOAD_CHUNK: i64 = 20_000;

/// Why a register serves no card index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardIndexStatus {
    /// Built: this many persons with coverages held in memory.
    Built { persons: u64 },
    /// The register has more persons than the index may hold (its memory is about 1 kB each).
    TooLarge { persons: u64, max_persons: u64 },
    /// This engine keeps no index (it answers from the engine).
    Unsupported,
}

/// How many answers the index gave, and how many went to the engine because it was behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CardIndexCounts {
    /// Persons held (0 until the index is built).
    pub persons: u64,
    pub served: u64,
    pub behind: u64,
}

/// Each person's coverages with their terms, and which persons hold each card's numbers.
#[derive(Default)]
pub(crate) struct CardIndex {
    /// (insurer number, 番号) → the persons holding a coverage with them, over all periods.
    holders: HashMap<Box<str>, Vec<i64>>,
    /// Each coverage behind its own `Arc`, so that a verification takes the view by counting
    /// references instead of copying every name and terms row (a seventh of the number path's
    /// CPU when copied, measured in docs/PERFORMANCE.md).
    persons: HashMap<i64, Box<[Arc<CoverageWithTerms>]>>,
    /// The change log's position the index has applied.
    pub seq: i64,
}

fn card_key(insurer: &str, number: &str) -> String {
    let mut key = String::with_capacity(insurer.len() + number.len() + 1);
    key.push_str(insurer);
    key.push(' ');
    key.push_str(number);
    key
}

impl CardIndex {
    pub fn new(seq: i64) -> CardIndex {
        CardIndex { seq, ..CardIndex::default() }
    }

    pub fn persons(&self) -> u64 {
        self.persons.len() as u64
    }

    /// Replaces what the index holds of a person by `view`, their every coverage with terms as
    /// the register has it now (empty: the person holds none).
    pub fn set_person(&mut self, person_id: i64, view: Vec<CoverageWithTerms>) {
        if let Some(old) = self.persons.remove(&person_id) {
            for covered in old.iter() {
                let key = card_key(covered.coverage.insurer.as_str(), covered.coverage.number.as_str());
                if let Some(holders) = self.holders.get_mut(key.as_str()) {
                    holders.retain(|p| *p != person_id);
                    if holders.is_empty() {
                        self.holders.remove(key.as_str());
                    }
                }
            }
        }
        if view.is_empty() {
            return;
        }
        for covered in &view {
            let holders =
                self.holders.entry(card_key(covered.coverage.insurer.as_str(), covered.coverage.number.as_str()).into()).or_default();
            if !holders.contains(&person_id) {
                holders.push(person_id);
            }
        }
        self.persons.insert(person_id, view.into_iter().map(Arc::new).collect());
    }

    /// As `Register::card_holders_view`: every coverage of every person holding a coverage of
    /// this insurer with this 番号, ordered as the engines order it (by coverage id).
    pub fn card_view(&self, insurer: &str, number: &str) -> Vec<CoverageWithTerms> {
        self.card_view_shared(insurer, number).into_iter().map(Arc::unwrap_or_clone).collect()
    }

    /// As [`CardIndex::card_view`], sharing the index's coverages instead of copying them.
    pub fn card_view_shared(&self, insurer: &str, number: &str) -> SharedView {
        let Some(holders) = self.holders.get(card_key(insurer, number).as_str()) else {
            return Vec::new();
        };
        let mut view: SharedView =
            holders.iter().filter_map(|p| self.persons.get(p)).flat_map(|coverages| coverages.iter().cloned()).collect();
        view.sort_by_key(|v| v.coverage.coverage_id);
        view
    }

    /// As `Register::person_view`.
    pub fn person_view(&self, person_id: i64) -> Vec<CoverageWithTerms> {
        self.persons.get(&person_id).map(|coverages| coverages.iter().map(|c| CoverageWithTerms::clone(c)).collect()).unwrap_or_default()
    }
}

/// The views of several persons read together, split by person.
pub(crate) fn by_person(view: Vec<CoverageWithTerms>) -> HashMap<i64, Vec<CoverageWithTerms>> {
    let mut persons: HashMap<i64, Vec<CoverageWithTerms>> = HashMap::new();
    for covered in view {
        persons.entry(covered.coverage.person_id).or_default().push(covered);
    }
    persons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CoverageRecord, Holder, MemberDetails, Terms, TermsRecord};
    use onshi_domain::codes::{CardClassification, Relationship, Sex};
    use onshi_domain::copay::IncomeClass;
    use onshi_domain::ids::{CardBranch, CardNumber, CardSymbol, InsurerNumber};
    use onshi_domain::{Date, Timestamp};

    fn covered(coverage_id: i64, person_id: i64, number: &str) -> CoverageWithTerms {
        let day = Date::parse_yyyymmdd("20250401").unwrap();
        CoverageWithTerms {
            coverage: CoverageRecord {
                coverage_id,
                person_id,
                insurer: InsurerNumber::parse("06130488").unwrap(),
                symbol: CardSymbol::parse("12").unwrap(),
                number: CardNumber::parse(number).unwrap(),
                branch: CardBranch::new(0).unwrap(),
                holder: Holder {
                    birth_date: day,
                    sex: Sex::Female,
                    relationship: Relationship::Insured,
                    card_classification: CardClassification::General,
                },
                acquired_on: day,
                lost_on: None,
                loss_reason: None,
                updated_at: Timestamp::at_start_of(day),
            },
            terms: vec![TermsRecord {
                effective_from: day,
                details: MemberDetails::default(),
                terms: Terms {
                    income: IncomeClass::General,
                    limit: None,
                    specific_diseases: vec![],
                    public_expense: vec![],
                    qualification_certificate: None,
                },
                notified_at: Timestamp::at_start_of(day),
                registered_at: Timestamp::at_start_of(day),
            }],
        }
    }

    fn ids(view: &[CoverageWithTerms]) -> Vec<i64> {
        view.iter().map(|v| v.coverage.coverage_id).collect()
    }

    /// What the register's view says, written out: a card's view is every coverage of everyone
    /// who ever held its numbers, by coverage id; a person's new view replaces the old one in
    /// every card it touched.
    #[test]
    fn a_persons_new_view_replaces_the_old_in_every_card_it_touches() {
        let mut index = CardIndex::new(0);
        index.set_person(1, vec![covered(1, 1, "100")]);
        index.set_person(2, vec![covered(3, 2, "100"), covered(4, 2, "200")]);
        assert_eq!(ids(&index.card_view("06130488", "100")), [1, 3, 4], "both holders of 100, and 2's other card");
        assert_eq!(ids(&index.card_view("06130488", "200")), [3, 4]);
        // Person 2 now holds only 200 (as if 100 had been another's all along): 100 loses them.
        index.set_person(2, vec![covered(4, 2, "200")]);
        assert_eq!(ids(&index.card_view("06130488", "100")), [1]);
        assert_eq!(ids(&index.card_view("06130488", "200")), [4]);
        // Person 1 gains a second card: both cards show both coverages.
        index.set_person(1, vec![covered(1, 1, "100"), covered(5, 1, "300")]);
        assert_eq!(ids(&index.card_view("06130488", "300")), [1, 5]);
        // A person with nothing left is forgotten, and so are the cards only they held.
        index.set_person(1, Vec::new());
        assert!(index.card_view("06130488", "100").is_empty() && index.card_view("06130488", "300").is_empty());
        assert_eq!((index.persons(), ids(&index.person_view(2))), (1, vec![4]));
        assert!(index.card_view("06130489", "200").is_empty(), "another insurer's 200 is another card");
    }

    #[test]
    fn ids_survive_the_change_log_and_a_torn_entry_is_named() {
        let ids = [1, 2, 1 << 40, i64::MAX];
        assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
        let error = decode_ids(&[0; 12]).unwrap_err().to_string();
        assert!(error.contains("12 bytes"), "{error}");
    }
}
