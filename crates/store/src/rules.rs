//! The register's rules for applying insurer events, in one place for every engine (issue 14:
//! SQLite and PostgreSQL must not drift). An engine supplies what a batch touches
//! ([`RegisterReads`]: the events already applied, the persons, every coverage with the batch's
//! card numbers, a coverage's dated terms, the next ids), the rules decide in memory, event by
//! event in file order, over that state as the batch changes it, and the engine writes the
//! [`Decision`] in its own way (row statements in SQLite, `COPY` in PostgreSQL).
//!
//! The rules and the refusals' words: an event id applies once; an acquisition is refused while
//! another person holds a live coverage with the same card numbers and branch, or when the person
//! already holds it from that date; a change or a loss refers to the person's latest coverage
//! with those numbers acquired on or before its date, and is refused after a loss (a second loss
//! too). An applied event counts towards its insurer's registration lag (notification day minus
//! event day).

use std::collections::{HashMap, HashSet};

use onshi_domain::codes::ReasonOfLoss;
use onshi_domain::{Date, Timestamp};

use crate::StoreError;
use crate::model::{ApplyOutcome, CoverageEvent, EventBody, Holder, MemberDetails, Terms, TermsRecord};

/// The hasher of the rules' maps and the load's tables: foldhash, seeded at random per map,
/// instead of the standard library's SipHash, which was a tenth of a load's deciding thread
/// (docs/PERFORMANCE.md, issue 13). foldhash claims only minimal resistance to chosen
/// collisions: enough here, where the keys come from authenticated insurers' uploads, each
/// map lives for one batch (or one load) and its seed is never seen outside the process.
pub(crate) type FastHasher = foldhash::fast::RandomState;
pub(crate) type Map<K, V> = HashMap<K, V, FastHasher>;
pub(crate) type Set<K> = HashSet<K, FastHasher>;

/// (insurer, number, symbol, branch): the key every rule of a coverage is checked on.
pub(crate) type CardKey = (String, String, String, u8);

pub(crate) fn card_key(event: &CoverageEvent) -> CardKey {
    (event.insurer.as_str().to_string(), event.number.as_str().to_string(), event.symbol.as_str().to_string(), event.branch.value())
}

/// A coverage as the rules see it, with what the batch changed.
pub(crate) struct Span {
    pub coverage_id: i64,
    pub person_id: i64,
    pub acquired_on: Date,
    pub lost_on: Option<Date>,
}

/// A coverage the batch creates: written whole, in its final state.
pub(crate) struct NewCoverage {
    pub coverage_id: i64,
    pub person_id: i64,
    pub key: CardKey,
    pub holder: Holder,
    pub acquired_on: Date,
    pub acquired_notified_at: i64,
    pub lost: Option<(Date, ReasonOfLoss, i64)>,
}

/// What the batch changes on a coverage that was in the register before it.
#[derive(Default)]
pub(crate) struct CoverageUpdate {
    pub holder: Option<Holder>,
    pub lost: Option<(Date, ReasonOfLoss, i64)>,
}

/// One insurer's share of the batch's applied events, for its registration lag.
#[derive(Default)]
pub(crate) struct LagTotals {
    pub events: i64,
    pub lag_days_sum: i64,
    pub lag_days_max: i64,
}

/// What an engine reads for the rules. Each set-based read takes the whole batch's keys.
pub(crate) trait RegisterReads {
    /// Which of these (insurer, event id) pairs are already applied.
    fn applied(&mut self, ids: &[(&str, &str)]) -> Result<Set<(String, String)>, StoreError>;
    /// The ids of the persons with these references that the register holds.
    fn persons(&mut self, refs: &[&str]) -> Result<Map<String, i64>, StoreError>;
    /// Every coverage with one of these card keys, in any order.
    fn cards(&mut self, keys: &[CardKey]) -> Result<Vec<(CardKey, Span)>, StoreError>;
    /// A coverage's dated terms rows, in any order.
    fn terms(&mut self, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError>;
    /// The next person id and coverage id (one past the largest held).
    fn next_ids(&mut self) -> Result<(i64, i64), StoreError>;
}

/// The batch's result, for the engine to write: the outcomes in event order, then the rows.
pub(crate) struct Decision {
    pub outcomes: Vec<ApplyOutcome>,
    pub new_persons: Vec<(i64, String)>,
    pub new_coverages: Vec<NewCoverage>,
    /// By coverage id, ascending.
    pub updates: Vec<(i64, CoverageUpdate)>,
    /// Each (coverage, effective_from) once, with its final content, in the order first written.
    pub terms: Vec<(i64, TermsRecord)>,
    /// (index of the event in the batch, its coverage), for the events applied.
    pub applied: Vec<(usize, i64)>,
    /// By insurer number, ascending.
    pub lag: Vec<(String, LagTotals)>,
}

impl Decision {
    /// The coverages this batch changes, each once, ascending: what the engine records in the
    /// change log (`register_changes`) for copies of the register that follow it.
    pub fn changed_coverages(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.applied.iter().map(|(_, coverage_id)| *coverage_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

const NO_SUCH_COVERAGE: &str =
    "no coverage of this person with these card numbers was acquired on or before this date; send the acquisition first";

fn rejected(field: &'static str, reason: impl Into<String>) -> ApplyOutcome {
    ApplyOutcome::Rejected { field, reason: reason.into() }
}

fn was_applied(seen: &Map<String, Set<String>>, event: &CoverageEvent) -> bool {
    seen.get(event.insurer.as_str()).is_some_and(|ids| ids.contains(&event.event_id))
}

/// The register as far as this batch touches it, and what the batch changes.
struct Batch<'r> {
    reads: &'r mut dyn RegisterReads,
    registered_at: Timestamp,
    /// Event ids applied, by insurer: looked up by `&str` without building a key per event.
    seen: Map<String, Set<String>>,
    persons: Map<String, i64>,
    new_persons: Vec<(i64, String)>,
    next_person_id: i64,
    cards: Map<CardKey, Vec<Span>>,
    next_coverage_id: i64,
    new_coverages: Vec<NewCoverage>,
    /// Index into `new_coverages` by id.
    new_index: Map<i64, usize>,
    updates: Map<i64, CoverageUpdate>,
    /// Terms rows of the coverages the batch changes, oldest first (read on first use).
    terms: Map<i64, Vec<TermsRecord>>,
    /// (coverage, effective_from) of the rows the batch writes.
    dirty_terms: Vec<(i64, Date)>,
    applied: Vec<(usize, i64)>,
}

impl<'r> Batch<'r> {
    fn read(reads: &'r mut dyn RegisterReads, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Batch<'r>, StoreError> {
        let ids: Vec<(&str, &str)> = events.iter().map(|e| (e.insurer.as_str(), e.event_id.as_str())).collect();
        let mut seen: Map<String, Set<String>> = Map::default();
        for (insurer, event_id) in reads.applied(&ids)? {
            seen.entry(insurer).or_default().insert(event_id);
        }
        // Only what the events not yet applied can touch (a re-run reads nothing more).
        let fresh: Vec<&CoverageEvent> = events.iter().filter(|e| !was_applied(&seen, e)).collect();
        let refs: Vec<&str> = fresh.iter().map(|e| e.person_ref.as_str()).collect::<Set<_>>().into_iter().collect();
        let persons = reads.persons(&refs)?;
        let keys: Vec<CardKey> = fresh.iter().map(|e| card_key(e)).collect::<Set<_>>().into_iter().collect();
        let mut cards: Map<CardKey, Vec<Span>> = Map::default();
        for (key, span) in reads.cards(&keys)? {
            cards.entry(key).or_default().push(span);
        }
        // Ordered by coverage id, as the rules meet them (a refusal names the first).
        for spans in cards.values_mut() {
            spans.sort_by_key(|s| s.coverage_id);
        }
        let (next_person_id, next_coverage_id) = reads.next_ids()?;
        Ok(Batch {
            reads,
            registered_at,
            seen,
            persons,
            new_persons: Vec::new(),
            next_person_id,
            cards,
            next_coverage_id,
            new_coverages: Vec::new(),
            new_index: Map::default(),
            updates: Map::default(),
            terms: Map::default(),
            dirty_terms: Vec::new(),
            applied: Vec::new(),
        })
    }

    fn apply(&mut self, index: usize, event: &CoverageEvent) -> Result<ApplyOutcome, StoreError> {
        if was_applied(&self.seen, event) {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let outcome = match &event.body {
            EventBody::Acquire { holder, details, terms } => self.acquire(event, holder, details, terms)?,
            EventBody::Change { holder, details, terms } => self.change(event, holder.as_ref(), details.as_ref(), terms.as_ref())?,
            EventBody::Lose { reason } => self.lose(event, *reason)?,
        };
        match outcome {
            Ok(coverage_id) => {
                match self.seen.get_mut(event.insurer.as_str()) {
                    Some(ids) => ids.insert(event.event_id.clone()),
                    None => self.seen.entry(event.insurer.as_str().to_string()).or_default().insert(event.event_id.clone()),
                };
                self.applied.push((index, coverage_id));
                Ok(ApplyOutcome::Applied)
            }
            Err(refused) => Ok(refused),
        }
    }

    fn acquire(
        &mut self,
        event: &CoverageEvent,
        holder: &Holder,
        details: &MemberDetails,
        terms: &Terms,
    ) -> Result<Result<i64, ApplyOutcome>, StoreError> {
        let person = self.persons.get(&event.person_ref).copied();
        let key = card_key(event);
        for span in self.cards.get(&key).into_iter().flatten() {
            let still_live = span.lost_on.is_none_or(|lost| lost > event.occurred_on);
            if Some(span.person_id) != person && still_live {
                return Ok(Err(rejected(
                    "card",
                    "these card numbers and branch belong to another person's coverage that has not been lost; send the loss first or correct the numbers",
                )));
            }
            if Some(span.person_id) == person && span.acquired_on == event.occurred_on {
                return Ok(Err(rejected(
                    "occurred_on",
                    "this person already holds this coverage from this date; send a change event instead",
                )));
            }
        }
        let person = match person {
            Some(person) => person,
            None => {
                let person = self.next_person_id;
                self.next_person_id += 1;
                self.persons.insert(event.person_ref.clone(), person);
                self.new_persons.push((person, event.person_ref.clone()));
                person
            }
        };
        let coverage_id = self.next_coverage_id;
        self.next_coverage_id += 1;
        self.cards.entry(key.clone()).or_default().push(Span {
            coverage_id,
            person_id: person,
            acquired_on: event.occurred_on,
            lost_on: None,
        });
        self.new_index.insert(coverage_id, self.new_coverages.len());
        self.new_coverages.push(NewCoverage {
            coverage_id,
            person_id: person,
            key,
            holder: *holder,
            acquired_on: event.occurred_on,
            acquired_notified_at: event.notified_at.jst_seconds(),
            lost: None,
        });
        self.terms.insert(coverage_id, Vec::new());
        self.put_terms(
            coverage_id,
            TermsRecord {
                effective_from: event.occurred_on,
                details: details.clone(),
                terms: terms.clone(),
                notified_at: event.notified_at,
                registered_at: self.registered_at,
            },
        );
        Ok(Ok(coverage_id))
    }

    /// The person's coverage with the event's card numbers that the event can refer to: the
    /// latest acquired on or before the event's date.
    fn target(&mut self, event: &CoverageEvent) -> Option<&mut Span> {
        let person = *self.persons.get(&event.person_ref)?;
        self.cards
            .get_mut(&card_key(event))?
            .iter_mut()
            .filter(|s| s.person_id == person && s.acquired_on <= event.occurred_on)
            .max_by_key(|s| s.acquired_on)
    }

    fn change(
        &mut self,
        event: &CoverageEvent,
        holder: Option<&Holder>,
        details: Option<&MemberDetails>,
        terms: Option<&Terms>,
    ) -> Result<Result<i64, ApplyOutcome>, StoreError> {
        let Some(span) = self.target(event) else { return Ok(Err(rejected("card", NO_SUCH_COVERAGE))) };
        if span.lost_on.is_some_and(|lost| lost <= event.occurred_on) {
            return Ok(Err(rejected(
                "occurred_on",
                "the coverage is lost on or before this date; a change cannot take effect after the loss",
            )));
        }
        let coverage_id = span.coverage_id;
        let rows = self.terms_of(coverage_id)?;
        let base = rows.iter().rev().find(|row| row.effective_from <= event.occurred_on).or(rows.first());
        let Some(base) = base else { return Err(StoreError::Corrupt(format!("coverage {coverage_id} has no terms"))) };
        let row = TermsRecord {
            effective_from: event.occurred_on,
            details: details.unwrap_or(&base.details).clone(),
            terms: terms.unwrap_or(&base.terms).clone(),
            notified_at: event.notified_at,
            registered_at: self.registered_at,
        };
        self.put_terms(coverage_id, row);
        if let Some(holder) = holder {
            match self.new_index.get(&coverage_id) {
                Some(&i) => self.new_coverages[i].holder = *holder,
                None => self.updates.entry(coverage_id).or_default().holder = Some(*holder),
            }
        } else if !self.new_index.contains_key(&coverage_id) {
            // Stamped as changed even when only its terms changed.
            self.updates.entry(coverage_id).or_default();
        }
        Ok(Ok(coverage_id))
    }

    fn lose(&mut self, event: &CoverageEvent, reason: ReasonOfLoss) -> Result<Result<i64, ApplyOutcome>, StoreError> {
        // A loss may be dated on the acquisition day itself (a coverage that never took effect).
        let Some(span) = self.target(event) else { return Ok(Err(rejected("card", NO_SUCH_COVERAGE))) };
        if let Some(lost) = span.lost_on {
            return Ok(Err(rejected(
                "occurred_on",
                format!(
                    "the coverage is already lost from {lost}; a second loss is refused (ask the register operator to correct a wrong loss date)"
                ),
            )));
        }
        span.lost_on = Some(event.occurred_on);
        let coverage_id = span.coverage_id;
        let lost = Some((event.occurred_on, reason, event.notified_at.jst_seconds()));
        match self.new_index.get(&coverage_id) {
            Some(&i) => self.new_coverages[i].lost = lost,
            None => self.updates.entry(coverage_id).or_default().lost = lost,
        }
        Ok(Ok(coverage_id))
    }

    /// The terms rows of a coverage, oldest first: the batch's own state once it touched them.
    fn terms_of(&mut self, coverage_id: i64) -> Result<&Vec<TermsRecord>, StoreError> {
        if !self.terms.contains_key(&coverage_id) {
            let mut stored = self.reads.terms(coverage_id)?;
            stored.sort_by_key(|t| t.effective_from);
            self.terms.insert(coverage_id, stored);
        }
        Ok(&self.terms[&coverage_id])
    }

    /// A row from its date on; one of the same date is replaced (as `INSERT OR REPLACE`).
    fn put_terms(&mut self, coverage_id: i64, row: TermsRecord) {
        let rows = self.terms.entry(coverage_id).or_default();
        let from = row.effective_from;
        match rows.binary_search_by_key(&from, |r| r.effective_from) {
            Ok(i) => rows[i] = row,
            Err(i) => rows.insert(i, row),
        }
        self.dirty_terms.push((coverage_id, from));
    }

    /// The batch's rows in their final state.
    fn finish(mut self, events: &[CoverageEvent], outcomes: Vec<ApplyOutcome>) -> Decision {
        let mut updates: Vec<(i64, CoverageUpdate)> = self.updates.drain().collect();
        updates.sort_by_key(|(id, _)| *id);
        // Each dirty row moved out once (the batch's rows are not needed after this), in the
        // order first written; a row written twice was replaced in place and is taken once.
        let mut terms = Vec::with_capacity(self.dirty_terms.len());
        for (coverage_id, from) in &self.dirty_terms {
            let Some(rows) = self.terms.get_mut(coverage_id) else { continue };
            if let Some(at) = rows.iter().position(|r| r.effective_from == *from) {
                terms.push((*coverage_id, rows.swap_remove(at)));
            }
        }
        debug_assert_eq!(terms.len(), self.dirty_terms.iter().collect::<HashSet<_>>().len(), "every dirty terms row is written once");
        let mut lag: Map<String, LagTotals> = Map::default();
        for (index, _) in &self.applied {
            let event = &events[*index];
            let days = lag_days(event.occurred_on, event.notified_at);
            let totals = lag.entry(event.insurer.as_str().to_string()).or_default();
            totals.events += 1;
            totals.lag_days_sum += days;
            totals.lag_days_max = totals.lag_days_max.max(days);
        }
        let mut lag: Vec<(String, LagTotals)> = lag.into_iter().collect();
        lag.sort_by(|a, b| a.0.cmp(&b.0));
        Decision { outcomes, new_persons: self.new_persons, new_coverages: self.new_coverages, updates, terms, applied: self.applied, lag }
    }
}

/// Decides `events`, in order, over what `reads` returns: one outcome per event, and the rows.
pub(crate) fn decide(reads: &mut dyn RegisterReads, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Decision, StoreError> {
    let mut batch = Batch::read(reads, events, registered_at)?;
    let outcomes = events.iter().enumerate().map(|(i, event)| batch.apply(i, event)).collect::<Result<Vec<_>, _>>()?;
    Ok(batch.finish(events, outcomes))
}

/// An event's registration lag: the day the insurer notified it minus the day it happened,
/// never negative. One rule for the per-insurer totals kept at import and the monthly profile.
pub(crate) fn lag_days(occurred_on: Date, notified_at: Timestamp) -> i64 {
    (notified_at.date().to_days() - occurred_on.to_days()).max(0)
}

/// Folds events, read by an engine as (insurer, event day, notification time, registration
/// time), into each insurer's months.
#[derive(Default)]
pub(crate) struct LagProfile {
    months: std::collections::BTreeMap<(String, u32), crate::model::LagMonth>,
}

impl LagProfile {
    pub(crate) fn add(&mut self, insurer: &str, occurred_on: Date, notified_at: Timestamp, registered_at: Timestamp) {
        let registered = registered_at.date();
        let month = u32::from(registered.year()) * 100 + u32::from(registered.month());
        let days = lag_days(occurred_on, notified_at);
        let entry = self.months.entry((insurer.to_string(), month)).or_insert_with(|| crate::model::LagMonth {
            insurer: insurer.to_string(),
            month,
            ..Default::default()
        });
        entry.events += 1;
        entry.lag_days_sum += days as u64;
        entry.lag_days_max = entry.lag_days_max.max(days.min(i64::from(u32::MAX)) as u32);
        let bucket =
            crate::model::LAG_BUCKETS.iter().position(|bound| days <= i64::from(*bound)).unwrap_or(crate::model::LAG_BUCKETS.len());
        entry.by_lag[bucket] += 1;
    }

    pub(crate) fn months(self) -> Vec<crate::model::LagMonth> {
        self.months.into_values().collect()
    }
}
