//! The behaviour every [`Register`] backend must show. Each backend's tests call [`run_all`]
//! on a fresh, empty register.

use onshi_domain::codes::{CardClassification, ReasonOfLoss, Relationship, Sex};
use onshi_domain::copay::IncomeClass;
use onshi_domain::ids::{CardBranch, CardNumber, CardSymbol, InsurerNumber};
use onshi_domain::{Date, Timestamp};

use crate::Register;
use crate::model::*;

fn d(text: &str) -> Date {
    Date::parse_yyyymmdd(text).expect("test date")
}

fn insurer() -> InsurerNumber {
    InsurerNumber::parse("06130488").expect("valid")
}

fn event(id: &str, person: &str, number: &str, branch: u8, on: &str, body: EventBody) -> CoverageEvent {
    CoverageEvent {
        event_id: id.into(),
        insurer: insurer(),
        person_ref: person.into(),
        symbol: CardSymbol::parse("12").expect("valid"),
        number: CardNumber::parse(number).expect("valid"),
        branch: CardBranch::new(branch).expect("valid"),
        occurred_on: d(on),
        notified_at: Timestamp::at_start_of(d(on).add_days(3)),
        body,
    }
}

fn acquire(birth: &str, income: IncomeClass) -> EventBody {
    EventBody::Acquire {
        holder: Holder {
            birth_date: d(birth),
            sex: Sex::Female,
            relationship: Relationship::Insured,
            card_classification: CardClassification::General,
        },
        details: MemberDetails { name: "試験 花子".into(), name_kana: "ｼｹﾝ ﾊﾅｺ".into(), ..MemberDetails::default() },
        terms: Terms { income, limit: None, specific_diseases: vec![], public_expense: vec![], qualification_certificate: None },
    }
}

/// An acquisition of the conformance insurer's card `number` (symbol 12, branch 0) by a new
/// person, from 2025-04-01.
pub fn acquisition(id: &str, person: &str, number: &str) -> CoverageEvent {
    event(id, person, number, 0, "20250401", acquire("19900101", IncomeClass::General))
}

fn now() -> Timestamp {
    Timestamp::at_start_of(d("20261125"))
}

/// Runs every conformance check against `register`, which must start empty.
pub fn run_all(register: &dyn Register) {
    applies_and_reads_back(register);
    is_idempotent_by_event_id(register);
    refuses_contradictions_without_writing(register);
    changes_are_dated(register);
    lag_is_profiled_by_month(register);
    born_on_finds_everyone_born_that_day_with_that_sex(register);
    a_qualification_certificate_reads_back(register);
    the_async_card_view_is_the_synchronous_one(register);
}

/// The number path's async read answers what the synchronous one does, on a runtime, and
/// again on a second runtime after the first (which ran an engine's connections) is gone.
fn the_async_card_view_is_the_synchronous_one(register: &dyn Register) {
    register.apply_events(&[event("as-1", "as-p1", "9391", 0, "20240401", acquire("19700101", IncomeClass::General))], now()).unwrap();
    let number = CardNumber::parse("9391").unwrap();
    let expected = register.card_holders_view_at(&insurer(), &number).unwrap();
    assert_eq!(expected.0.len(), 1, "the coverage just applied");
    let nobody = CardNumber::parse("9399").unwrap();
    // More reads per round than an engine keeps connections, so that the second round uses
    // connections the first opened on its runtime.
    for round in 0..2 {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        for i in 0..6 {
            let (view, at) = runtime.block_on(register.card_holders_view_async(&insurer(), &number)).unwrap();
            let read: (Vec<CoverageWithTerms>, _) = (view.into_iter().map(std::sync::Arc::unwrap_or_clone).collect(), at);
            assert_eq!(read, expected, "round {round}, read {i}");
            let none = runtime.block_on(register.card_holders_view_async(&insurer(), &nobody)).unwrap();
            assert!(none.0.is_empty(), "round {round}, read {i}: nobody holds 9399");
        }
    }
}

/// The 資格確認書's registered validity is stored with the terms and read back as it came.
fn a_qualification_certificate_reads_back(register: &dyn Register) {
    let certificate = crate::model::QualificationCertificate { valid_from: d("20250801"), valid_to: d("20260731") };
    let body = match acquire("19450505", IncomeClass::General) {
        EventBody::Acquire { holder, details, terms } => {
            EventBody::Acquire { holder, details, terms: Terms { qualification_certificate: Some(certificate), ..terms } }
        }
        other => other,
    };
    assert_eq!(register.apply_events(&[event("qc-1", "QC1", "9601", 0, "20250801", body)], now()).unwrap(), vec![ApplyOutcome::Applied]);
    let view = register.card_holders_view(&insurer(), &CardNumber::parse("9601").unwrap()).unwrap();
    assert_eq!(view[0].terms[0].terms.qualification_certificate, Some(certificate));
}

/// `born_on`: every coverage of each person with a coverage of that birth date and sex (their
/// other coverages too), and nobody else.
fn born_on_finds_everyone_born_that_day_with_that_sex(register: &dyn Register) {
    let with_sex = |birth: &str, sex: Sex| match acquire(birth, IncomeClass::General) {
        EventBody::Acquire { holder, details, terms } => EventBody::Acquire { holder: Holder { sex, ..holder }, details, terms },
        other => other,
    };
    let events = [
        event("born-1", "BORN1", "8001", 0, "20200401", with_sex("19610707", Sex::Female)),
        event("born-2", "BORN1", "8001", 0, "20250401", EventBody::Lose { reason: ReasonOfLoss::OtherInsuranceAcquired }),
        event("born-3", "BORN1", "8002", 0, "20250401", with_sex("19610707", Sex::Female)),
        event("born-4", "BORN2", "8003", 0, "20200401", with_sex("19610707", Sex::Male)),
        event("born-5", "BORN3", "8004", 0, "20200401", with_sex("19610708", Sex::Female)),
    ];
    assert_eq!(register.apply_events(&events, now()).unwrap(), vec![ApplyOutcome::Applied; 5]);
    let mut numbers: Vec<String> =
        register.born_on(d("19610707"), Sex::Female).unwrap().iter().map(|v| v.coverage.number.as_str().to_string()).collect();
    numbers.sort();
    assert_eq!(numbers, ["8001", "8002"], "both coverages of the one woman born that day");
    let men = register.born_on(d("19610707"), Sex::Male).unwrap();
    assert_eq!(men.len(), 1);
    assert_eq!(men[0].terms.len(), 1, "with its terms");
    assert!(register.born_on(d("19610706"), Sex::Female).unwrap().is_empty());
}

/// Each insurer's registrations by the month they reached the register, with their lag
/// (notification day minus event day) counted into buckets, worked out by hand.
fn lag_is_profiled_by_month(register: &dyn Register) {
    let late = |id: &str, person: &str, number: &str, on: &str, notified_after: i64| CoverageEvent {
        notified_at: Timestamp::at_start_of(d(on).add_days(notified_after)),
        ..event(id, person, number, 0, on, acquire("19700101", IncomeClass::General))
    };
    let registered = Timestamp::at_start_of(d("20270115"));
    let events = [
        late("lag-1", "LAG1", "7001", "20261201", 3),
        late("lag-2", "LAG2", "7002", "20261201", 20),
        late("lag-3", "LAG3", "7003", "20261120", 45),
    ];
    assert_eq!(register.apply_events(&events, registered).unwrap(), vec![ApplyOutcome::Applied; 3]);
    let january: Vec<_> = register.lag_by_month().unwrap().into_iter().filter(|m| m.month == 202701).collect();
    assert_eq!(
        january,
        vec![crate::model::LagMonth {
            insurer: insurer().as_str().to_string(),
            month: 202701,
            events: 3,
            lag_days_sum: 3 + 20 + 45,
            lag_days_max: 45,
            by_lag: [1, 0, 0, 1, 1],
        }]
    );
}

fn applies_and_reads_back(register: &dyn Register) {
    let events = [
        event("a1", "P1", "1001", 0, "20200401", acquire("19800101", IncomeClass::General)),
        event("a2", "P1", "1001", 0, "20261101", EventBody::Lose { reason: ReasonOfLoss::OtherInsuranceAcquired }),
    ];
    let outcomes = register.apply_events(&events, now()).expect("apply");
    assert_eq!(outcomes, vec![ApplyOutcome::Applied, ApplyOutcome::Applied]);
    let found = register.coverages_by_number(&insurer(), &CardNumber::parse("１００１").unwrap()).expect("query");
    assert_eq!(found.len(), 1);
    let coverage = &found[0];
    assert_eq!(coverage.acquired_on, d("20200401"));
    assert_eq!(coverage.lost_on, Some(d("20261101")));
    assert_eq!(coverage.loss_reason, Some(ReasonOfLoss::OtherInsuranceAcquired));
    assert_eq!(coverage.holder.birth_date, d("19800101"));
    assert_eq!(coverage.updated_at, now());
    assert_eq!(register.coverages_of_person(coverage.person_id).expect("query").len(), 1);
    let terms = register.terms_of(coverage.coverage_id).expect("terms");
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].details.name, "試験 花子");
    let view = register.card_holders_view(&insurer(), &CardNumber::parse("1001").unwrap()).expect("query");
    assert_eq!(view.iter().map(|v| v.coverage.clone()).collect::<Vec<_>>(), found);
    assert_eq!(view[0].terms, terms);
    let lag = register.insurer_lag(&insurer()).expect("lag").expect("has events");
    assert_eq!((lag.events, lag.max_days), (2, 3));
}

fn is_idempotent_by_event_id(register: &dyn Register) {
    let before = register.canonical_dump().expect("dump");
    let again = [event("a1", "P1", "1001", 0, "20200401", acquire("19800101", IncomeClass::General))];
    assert_eq!(register.apply_events(&again, now()).expect("apply"), vec![ApplyOutcome::AlreadyApplied]);
    let later = Timestamp::at_start_of(d("20261201"));
    register.apply_events(&again, later).expect("apply");
    assert_eq!(register.canonical_dump().expect("dump"), before);
}

fn refuses_contradictions_without_writing(register: &dyn Register) {
    let before = register.canonical_dump().expect("dump");
    let counted = register.counts().expect("counts");
    let contradictions = [
        // A change and a loss for numbers nobody holds.
        event("r1", "P9", "9999", 0, "20260101", EventBody::Lose { reason: ReasonOfLoss::Death }),
        event("r2", "P9", "9999", 0, "20260101", EventBody::Change { holder: None, details: None, terms: None }),
        // A second loss of a lost coverage.
        event("r3", "P1", "1001", 0, "20261120", EventBody::Lose { reason: ReasonOfLoss::Death }),
        // A change after the loss.
        event("r4", "P1", "1001", 0, "20261115", EventBody::Change { holder: None, details: None, terms: None }),
        // The same acquisition under a new event id.
        event("r5", "P1", "1001", 0, "20200401", acquire("19800101", IncomeClass::General)),
        // A person the register has never seen, taking numbers another person held then:
        // refused, and not even the person is recorded.
        event("r6", "P8", "1001", 0, "20200501", acquire("19700101", IncomeClass::General)),
    ];
    let outcomes = register.apply_events(&contradictions, now()).expect("apply");
    for (event, outcome) in contradictions.iter().zip(&outcomes) {
        assert!(matches!(outcome, ApplyOutcome::Rejected { .. }), "{} was {outcome:?}", event.event_id);
    }
    assert_eq!(register.canonical_dump().expect("dump"), before, "a rejected event must not write");
    assert_eq!(register.counts().expect("counts"), counted, "nor add a person");
    // Another person may take over numbers only once the first holder has lost them.
    let takeover = [
        event("t1", "P2", "1001", 0, "20261001", acquire("19900101", IncomeClass::General)),
        event("t2", "P2", "1001", 0, "20261101", acquire("19900101", IncomeClass::General)),
    ];
    let outcomes = register.apply_events(&takeover, now()).expect("apply");
    assert!(matches!(outcomes[0], ApplyOutcome::Rejected { field: "card", .. }), "{outcomes:?}");
    assert_eq!(outcomes[1], ApplyOutcome::Applied);
    // Both holders of number 1001 come back with all their coverages, and P1's other card too.
    let other_card = [event("t3", "P1", "1002", 0, "20261101", acquire("19800101", IncomeClass::General))];
    assert_eq!(register.apply_events(&other_card, now()).expect("apply"), vec![ApplyOutcome::Applied]);
    let holders = register.card_holders_view(&insurer(), &CardNumber::parse("1001").unwrap()).expect("query");
    let mut numbers: Vec<&str> = holders.iter().map(|v| v.coverage.number.as_str()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["1001", "1001", "1002"]);
    // One person's view: exactly that person's coverages with their terms, as the holders'
    // view has them.
    let p1 = holders.iter().find(|v| v.coverage.number.as_str() == "1002").expect("P1's other card").coverage.person_id;
    let mine: Vec<&CoverageWithTerms> = holders.iter().filter(|v| v.coverage.person_id == p1).collect();
    let view = register.person_view(p1).expect("query");
    assert_eq!(view.iter().collect::<Vec<_>>(), mine);
    assert_eq!(view.len(), 2);
    assert!(register.person_view(-1).expect("query").is_empty());
}

fn changes_are_dated(register: &dyn Register) {
    let events = [
        event("c1", "P3", "2002", 1, "20100401", acquire("19551201", IncomeClass::General)),
        event(
            "c2",
            "P3",
            "2002",
            1,
            "20260801",
            EventBody::Change {
                holder: None,
                details: None,
                terms: Some(Terms {
                    income: IncomeClass::ActiveHigh,
                    limit: None,
                    specific_diseases: vec![],
                    public_expense: vec![],
                    qualification_certificate: None,
                }),
            },
        ),
    ];
    assert_eq!(register.apply_events(&events, now()).expect("apply"), vec![ApplyOutcome::Applied, ApplyOutcome::Applied]);
    let coverage = register.coverages_by_number(&insurer(), &CardNumber::parse("2002").unwrap()).expect("query").remove(0);
    let terms = register.terms_of(coverage.coverage_id).expect("terms");
    let dated: Vec<(Date, IncomeClass, &str)> = terms.iter().map(|t| (t.effective_from, t.terms.income, t.details.name.as_str())).collect();
    assert_eq!(dated, vec![(d("20100401"), IncomeClass::General, "試験 花子"), (d("20260801"), IncomeClass::ActiveHigh, "試験 花子")]);
    let counts = register.counts().expect("counts");
    assert_eq!((counts.persons, counts.coverages), (3, 4));
}

/// A sequence applied as one batch ends exactly as the same events applied one per batch:
/// the rules see, within a batch, what the batch's earlier events did. Both registers start
/// empty.
pub fn batches_and_single_events_agree(whole: &dyn Register, one_by_one: &dyn Register) {
    let events = mixed_history();
    let together = whole.apply_events(&events, now()).expect("apply");
    let apart: Vec<ApplyOutcome> =
        events.iter().flat_map(|e| one_by_one.apply_events(std::slice::from_ref(e), now()).expect("apply")).collect();
    assert_eq!(together, apart);
    check_mixed_history(whole, one_by_one, &together);
}

/// A batch large enough that an engine writes its rows several to a statement (a hundred
/// acquisitions, half of them changed and a fifth lost again, then the mixed history) ends as
/// the same events applied one at a time: the same outcomes and the same rows.
pub fn a_large_batch_and_single_events_agree(whole: &dyn Register, one_by_one: &dyn Register) {
    let events = large_batch();
    let together = whole.apply_events(&events, now()).expect("apply");
    a_large_batch_ends_as_single_events(whole, one_by_one, &events, &together);
}

/// What [`a_large_batch_and_single_events_agree`] applies in one batch.
pub fn large_batch() -> Vec<CoverageEvent> {
    let mut events: Vec<CoverageEvent> = (0..100)
        .map(|i| {
            event(&format!("m{i}"), &format!("M{i}"), &(7000 + i).to_string(), 0, "20240401", acquire("19800101", IncomeClass::General))
        })
        .collect();
    for i in (0..100).step_by(2) {
        let details = MemberDetails { name: format!("試験 {i}"), name_kana: "ｼｹﾝ".into(), ..Default::default() };
        let body = EventBody::Change { holder: None, details: Some(details), terms: None };
        let on = if i % 4 == 0 { "20240401" } else { "20240501" };
        events.push(event(&format!("c{i}"), &format!("M{i}"), &(7000 + i).to_string(), 0, on, body));
    }
    for i in (0..100).step_by(5) {
        let body = EventBody::Lose { reason: ReasonOfLoss::Other };
        events.push(event(&format!("l{i}"), &format!("M{i}"), &(7000 + i).to_string(), 0, "20240601", body));
    }
    events.extend(mixed_history());
    events
}

/// `whole` took [`large_batch`] in one batch with the outcomes `together`; `one_by_one` (empty)
/// takes it one event at a time and must end the same.
pub fn a_large_batch_ends_as_single_events(
    whole: &dyn Register,
    one_by_one: &dyn Register,
    events: &[CoverageEvent],
    together: &[ApplyOutcome],
) {
    let apart: Vec<ApplyOutcome> =
        events.iter().flat_map(|e| one_by_one.apply_events(std::slice::from_ref(e), now()).expect("apply")).collect();
    assert_eq!(together, apart);
    // The hundred acquisitions, fifty changes and twenty losses are each valid by the rules.
    assert!(together[..170].iter().all(|o| matches!(o, ApplyOutcome::Applied)), "{together:?}");
    assert_eq!(whole.canonical_dump().expect("dump"), one_by_one.canonical_dump().expect("dump"));
}

/// A copy of the card view that an engine keeps (its card index) answers exactly what the
/// engine answers after every commit of another writer: `indexed` reads, `writer` writes and
/// reads the engine itself. The history moves a card's numbers between persons and gives a
/// holder a second card (whose coverage then appears in the first card's view). Both start
/// empty. `settle` returns once the copy holds the writer's last commit (at once where the
/// engine keeps the copy exact; a copy that follows by polling waits for its follower).
pub fn the_card_index_follows_every_writer(indexed: &dyn Register, writer: &dyn Register, settle: &dyn Fn()) {
    let mut events = mixed_history().to_vec();
    events.push(event("x1", "P2", "5003", 0, "20250101", acquire("19900101", IncomeClass::General)));
    events.push(event(
        "x2",
        "P2",
        "5003",
        0,
        "20250201",
        EventBody::Change {
            holder: None,
            details: Some(MemberDetails { name: "試験 花子".into(), name_kana: "ｼｹﾝ ﾊﾅｺ".into(), ..Default::default() }),
            terms: None,
        },
    ));
    let numbers = ["5001", "5002", "5003", "9999"].map(|n| CardNumber::parse(n).unwrap());
    let compare = |step: &str| {
        for number in &numbers {
            assert_eq!(
                indexed.card_holders_view(&insurer(), number).expect("indexed view"),
                writer.card_holders_view(&insurer(), number).expect("engine view"),
                "the card view of {number:?} after {step}"
            );
        }
        for person in 1..=4 {
            assert_eq!(
                indexed.person_view(person).expect("indexed view"),
                writer.person_view(person).expect("engine view"),
                "person {person}'s view after {step}"
            );
        }
    };
    compare("nothing");
    for e in &events {
        writer.apply_events(std::slice::from_ref(e), now()).expect("apply");
        settle();
        compare(&e.event_id);
    }
    // The holder of 5001 since 20240401 holds 5003 too: both coverages are in 5001's view.
    let view = indexed.card_holders_view(&insurer(), &numbers[0]).expect("view");
    let held: Vec<&str> = view.iter().map(|v| v.coverage.number.as_str()).collect();
    assert_eq!(held, ["5001", "5001", "5003"], "P1's lost coverage, then P2's two");
}

/// One step of a random history for [`the_card_index_matches_the_engine_after_any_history`]:
/// who (one of four persons), which card (one of three numbers, two branches), what (acquire,
/// change, lose), and on which of forty days.
#[derive(Clone, Copy, Debug)]
pub struct HistoryStep {
    pub person: u8,
    pub number: u8,
    pub branch: u8,
    pub kind: u8,
    pub day: u8,
}

/// Whatever the history — most of a random one is refused by the rules, the rest moves numbers
/// between persons, changes terms and ends coverages — the card index answers every card and
/// person view exactly as the engine does after each batch. `indexed` reads through its index;
/// `writer` writes and reads the engine; both start empty; `batch` steps go in per transaction.
pub fn the_card_index_matches_the_engine_after_any_history(
    indexed: &dyn Register,
    writer: &dyn Register,
    steps: &[HistoryStep],
    batch: usize,
) {
    let numbers = ["6001", "6002", "6003"];
    let events = history_events(steps);
    for chunk in events.chunks(batch.max(1)) {
        writer.apply_events(chunk, now()).expect("apply");
        for number in numbers {
            let number = CardNumber::parse(number).unwrap();
            assert_eq!(
                indexed.card_holders_view(&insurer(), &number).expect("indexed view"),
                writer.card_holders_view(&insurer(), &number).expect("engine view"),
                "card {number:?} after {}",
                chunk.last().map(|e| e.event_id.as_str()).unwrap_or("")
            );
        }
        for person in 1..=5 {
            assert_eq!(indexed.person_view(person).expect("indexed"), writer.person_view(person).expect("engine"), "person {person}");
        }
    }
}

/// Under concurrent readers, a card view read after another writer's commit has returned holds
/// that commit: readers that find the index behind catch it up or read the engine, never an
/// older copy. `writer` acquires 200 cards one per transaction while four threads read the card
/// last acquired; both start empty.
pub fn the_card_index_is_never_behind_a_finished_commit(indexed: &dyn Register, writer: &dyn Register) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CARDS: usize = 200;
    let acquired = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut seen = 0;
                while seen < CARDS {
                    seen = acquired.load(Ordering::SeqCst);
                    if seen == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    let number = CardNumber::parse(&format!("{}", 70_000 + seen)).unwrap();
                    let view = indexed.card_holders_view(&insurer(), &number).expect("view");
                    assert_eq!(view.len(), 1, "card {seen} was committed before this read began");
                }
            });
        }
        for card in 1..=CARDS {
            let e = event(
                &format!("n{card}"),
                &format!("N{card}"),
                &format!("{}", 70_000 + card),
                0,
                "20250401",
                acquire("19900101", IncomeClass::General),
            );
            assert_eq!(writer.apply_events(&[e], now()).expect("apply"), [ApplyOutcome::Applied]);
            acquired.store(card, Ordering::SeqCst);
        }
    });
}

/// Thirteen events over three persons: changes on and after the acquisition's day, an event
/// again, numbers taken by another person before and after their loss, a coverage lost on its
/// first day and acquired again.
/// A random history's events: most are refused by the rules, the rest move numbers 6001–6003
/// between persons H0–H3, change terms and end coverages.
fn history_events(steps: &[HistoryStep]) -> Vec<CoverageEvent> {
    let numbers = ["6001", "6002", "6003"];
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let on = d("20250101").add_days(i64::from(step.day % 40));
            let body = match step.kind % 3 {
                0 => acquire("19800101", IncomeClass::General),
                1 => EventBody::Change {
                    holder: None,
                    details: Some(MemberDetails {
                        name: format!("試験 {i}"),
                        name_kana: "ｼｹﾝ".into(),
                        address: Some(format!("{i}番地")),
                        ..Default::default()
                    }),
                    terms: None,
                },
                _ => EventBody::Lose { reason: ReasonOfLoss::Other },
            };
            let mut e = event(
                &format!("h{i}"),
                &format!("H{}", step.person % 4),
                numbers[usize::from(step.number % 3)],
                step.branch % 2,
                "20250101",
                body,
            );
            e.occurred_on = on;
            e.notified_at = Timestamp::at_start_of(on.add_days(1));
            e
        })
        .collect()
}

/// Random histories of up to 40 steps, for the property tests over [`HistoryStep`]s.
#[cfg(test)]
pub(crate) fn history_steps(min: usize) -> impl proptest::strategy::Strategy<Value = Vec<HistoryStep>> {
    use proptest::strategy::Strategy as _;
    proptest::collection::vec(
        (0u8..4, 0u8..3, 0u8..2, 0u8..3, 0u8..40).prop_map(|(person, number, branch, kind, day)| HistoryStep {
            person,
            number,
            branch,
            kind,
            day,
        }),
        min..40,
    )
}

/// The mixed history (every rule, an event id repeated) followed by a random one.
pub fn load_history(steps: &[HistoryStep]) -> Vec<CoverageEvent> {
    let mut events = mixed_history().to_vec();
    events.extend(history_events(steps));
    events
}

/// A load of an empty register ([`Register::begin_load`]) ends exactly as the same events
/// imported batch by batch ([`Register::apply_events`]): the same outcome for every event, the
/// same rows, the same card views. The history is the mixed one (every rule, an event id
/// repeated) followed by a random one; `batch` events go in per transaction, so the load's
/// memory is read across batches. Both registers start empty; `loaded`'s engine must load.
pub fn a_load_ends_as_batch_imports(loaded: &dyn Register, imported: &dyn Register, steps: &[HistoryStep], batch: usize) {
    let events = load_history(steps);
    let mut load = loaded.begin_load().expect("begin a load").expect("an empty register is loaded");
    for chunk in events.chunks(batch.max(1)) {
        let by_load = load.apply_events(chunk, now()).expect("load a batch");
        let by_import = imported.apply_events(chunk, now()).expect("import a batch");
        assert_eq!(by_load, by_import, "batch ending with {}", chunk.last().map(|e| e.event_id.as_str()).unwrap_or(""));
    }
    load.finish().expect("finish the load");
    assert_eq!(loaded.canonical_dump().expect("dump"), imported.canonical_dump().expect("dump"));
    for number in ["5001", "5002", "6001", "6002", "6003"] {
        let number = CardNumber::parse(number).unwrap();
        assert_eq!(
            loaded.card_holders_view(&insurer(), &number).expect("loaded view"),
            imported.card_holders_view(&insurer(), &number).expect("imported view"),
            "card {number:?}"
        );
    }
}

fn mixed_history() -> [CoverageEvent; 13] {
    let moved = MemberDetails {
        name: "試験 花子".into(),
        name_kana: "ｼｹﾝ ﾊﾅｺ".into(),
        address: Some("東京都千代田区".into()),
        ..Default::default()
    };
    let change =
        |details: Option<MemberDetails>, terms: Option<Terms>, holder: Option<Holder>| EventBody::Change { holder, details, terms };
    let high = Terms {
        income: IncomeClass::ActiveHigh,
        limit: None,
        specific_diseases: vec![],
        public_expense: vec![],
        qualification_certificate: None,
    };
    let older = Holder {
        birth_date: d("19790101"),
        sex: Sex::Female,
        relationship: Relationship::Insured,
        card_classification: CardClassification::General,
    };
    [
        event("s1", "P1", "5001", 0, "20200401", acquire("19800101", IncomeClass::General)),
        // Same date: replaces the acquisition's terms row; later: a row of its own.
        event("s2", "P1", "5001", 0, "20200401", change(Some(moved.clone()), None, None)),
        event("s3", "P1", "5001", 0, "20220101", change(None, Some(high), Some(older))),
        // The same event again, inside the batch.
        event("s3", "P1", "5001", 0, "20220101", change(None, None, None)),
        // Another person cannot take the numbers while they are held...
        event("s4", "P2", "5001", 0, "20230101", acquire("19900101", IncomeClass::General)),
        event("s5", "P1", "5001", 0, "20240331", EventBody::Lose { reason: ReasonOfLoss::OtherInsuranceAcquired }),
        event("s6", "P1", "5001", 0, "20240401", EventBody::Lose { reason: ReasonOfLoss::Death }),
        event("s7", "P1", "5001", 0, "20240401", change(Some(moved), None, None)),
        // ...but can once they are lost, and a change then refers to the new coverage.
        event("s8", "P2", "5001", 0, "20240401", acquire("19900101", IncomeClass::General)),
        event("s9", "P2", "5001", 0, "20240501", change(None, None, Some(older))),
        event("s10", "P3", "5002", 1, "20240501", acquire("20100101", IncomeClass::General)),
        event("s11", "P3", "5002", 1, "20240501", EventBody::Lose { reason: ReasonOfLoss::Other }),
        event("s12", "P3", "5002", 1, "20240601", acquire("20100101", IncomeClass::General)),
    ]
}

fn check_mixed_history(whole: &dyn Register, one_by_one: &dyn Register, together: &[ApplyOutcome]) {
    // As the rules written above decide them, event by event.
    let kinds: Vec<&str> = together
        .iter()
        .map(|o| match o {
            ApplyOutcome::Applied => "applied",
            ApplyOutcome::AlreadyApplied => "again",
            ApplyOutcome::Rejected { field, .. } => field,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "applied",
            "applied",
            "applied",
            "again",
            "card",
            "applied",
            "occurred_on",
            "occurred_on",
            "applied",
            "applied",
            "applied",
            "applied",
            "applied"
        ]
    );
    assert_eq!(whole.canonical_dump().expect("dump"), one_by_one.canonical_dump().expect("dump"));
    assert_eq!(whole.counts().expect("counts"), one_by_one.counts().expect("counts"));
    // What the batch left, against the events themselves: 5001 held by P1 until its loss, then
    // by P2 with the corrected holder; P1's rows dated 20200401 (moved) and 20220101 (high).
    let mut held = whole.coverages_by_number(&insurer(), &CardNumber::parse("5001").unwrap()).expect("query");
    held.sort_by_key(|c| c.acquired_on);
    let spans: Vec<(Date, Option<Date>, Date)> = held.iter().map(|c| (c.acquired_on, c.lost_on, c.holder.birth_date)).collect();
    assert_eq!(spans, [(d("20200401"), Some(d("20240331")), d("19790101")), (d("20240401"), None, d("19790101"))]);
    let rows = whole.terms_of(held[0].coverage_id).expect("terms");
    let dated: Vec<(Date, IncomeClass, Option<&str>)> =
        rows.iter().map(|t| (t.effective_from, t.terms.income, t.details.address.as_deref())).collect();
    assert_eq!(
        dated,
        [(d("20200401"), IncomeClass::General, Some("東京都千代田区")), (d("20220101"), IncomeClass::ActiveHigh, Some("東京都千代田区"))]
    );
    let counts = whole.counts().expect("counts");
    assert_eq!(
        (counts.persons, counts.coverages, counts.events),
        (3, 4, 9),
        "P1, P2 and P3; two coverages of 5002 (lost on its first day, acquired again)"
    );
}

/// The card-link and reader behaviour every backend must show, on a fresh register.
pub fn run_cards<R: Register + crate::cards::CardRegistry>(register: &R) {
    use crate::cards::{LinkState, Reader};
    let outcomes =
        register.apply_events(&[event("card-e1", "card-p1", "9001", 0, "20200401", acquire("19800101", IncomeClass::General))], now());
    assert!(matches!(outcomes.as_deref(), Ok([ApplyOutcome::Applied])), "{outcomes:?}");
    let person = register.coverages_by_number(&insurer(), &CardNumber::parse("9001").unwrap()).unwrap()[0].person_id;

    let link = register.link_card("0a01", "holder-1", person, now()).unwrap();
    assert_eq!((link.person_id, link.state), (person, LinkState::Active));
    assert_eq!(register.link_card("0a01", "holder-1", person, now()).unwrap(), link, "linking again changes nothing");
    assert_eq!(register.card_link("0a01").unwrap(), Some(link.clone()));
    assert_eq!(register.card_link("ffff").unwrap(), None);
    assert_eq!(register.holder_link("holder-1").unwrap().map(|l| l.serial), Some("0a01".to_string()));

    // A renewal moves the link; the old serial no longer answers as active.
    let moved = register.move_card_link("holder-1", "0a02", now()).unwrap().expect("moved");
    assert_eq!((moved.serial.as_str(), moved.person_id, moved.state), ("0a02", person, LinkState::Active));
    assert_eq!(register.card_link("0a01").unwrap().map(|l| l.state), Some(LinkState::Moved));
    assert_eq!(register.holder_link("holder-1").unwrap().map(|l| l.serial), Some("0a02".to_string()));
    assert_eq!(register.move_card_link("nobody", "0b01", now()).unwrap(), None);

    // A flag blocks the link and survives a later renewal.
    register.file_report("0a02", person, "patient", "not my coverage", true, now()).unwrap();
    register.file_report("0a01", person, "patient", "moved links are not flagged", true, now()).unwrap();
    assert_eq!(register.card_link("0a01").unwrap().map(|l| l.state), Some(LinkState::Moved));
    let renewed = register.move_card_link("holder-1", "0a03", now()).unwrap().expect("moved");
    assert_eq!(renewed.state, LinkState::Flagged);

    // A reader belongs to the institution that registered it: another cannot take it over;
    // its own institution may rotate the key.
    use crate::cards::ReaderRegistration;
    let reader = Reader { reader_id: "reader-1".into(), institution: "1311234569".into(), public_key: vec![4, 1, 2, 3] };
    assert_eq!(register.register_reader(&reader, now()).unwrap(), ReaderRegistration::New);
    assert_eq!(register.reader("reader-1").unwrap(), Some(reader.clone()));
    assert_eq!(register.register_reader(&reader, now()).unwrap(), ReaderRegistration::Unchanged);
    let hijack = Reader { institution: "2711234563".into(), public_key: vec![4, 9, 9, 9], ..reader.clone() };
    assert_eq!(register.register_reader(&hijack, now()).unwrap(), ReaderRegistration::OwnedElsewhere { institution: "1311234569".into() });
    assert_eq!(register.reader("reader-1").unwrap(), Some(reader.clone()), "another institution changes nothing");
    let rotated = Reader { public_key: vec![4, 5, 6, 7], ..reader };
    assert_eq!(register.register_reader(&rotated, now()).unwrap(), ReaderRegistration::Rotated);
    assert_eq!(register.reader("reader-1").unwrap(), Some(rotated), "its own institution rotates the key");
    assert_eq!(register.reader("reader-2").unwrap(), None);

    use crate::cards::Consent;
    let consent = |scope: &str, hour: i64| Consent {
        scope: scope.into(),
        given_at: Timestamp::from_jst_seconds(now().jst_seconds() + hour * 3600),
        available_until: Timestamp::from_jst_seconds(now().jst_seconds() + (hour + 24) * 3600),
    };
    register.record_consent(person, "1311234569", &consent("drug", 0)).unwrap();
    register.record_consent(person, "1311234569", &consent("checkup", 0)).unwrap();
    register.record_consent(person, "1311234569", &consent("drug", 5)).unwrap();
    assert_eq!(register.consents(person, "1311234569").unwrap(), [consent("checkup", 0), consent("drug", 5)], "latest per scope");
    assert_eq!(register.consents(person, "2711234563").unwrap(), [], "per institution");
    let refused = register.record_consent(person, "1311234569", &consent("everything", 0));
    assert!(refused.is_err(), "scopes are a closed list");
    assert!(register.withdraw_consent(person, "1311234569", "drug").unwrap());
    assert!(!register.withdraw_consent(person, "1311234569", "drug").unwrap(), "nothing left to withdraw");
    assert_eq!(register.consents(person, "1311234569").unwrap(), [consent("checkup", 0)]);
    register.record_consent(person, "2711234563", &consent("limit", 1)).unwrap();
    assert_eq!(
        register.consents_of_person(person).unwrap(),
        [("1311234569".to_string(), consent("checkup", 0)), ("2711234563".to_string(), consent("limit", 1))],
        "every institution's, for the patient's own page"
    );
    assert_eq!(register.consents_of_person(person + 1_000).unwrap(), [], "nobody else's");

    run_trust(register, person);
}

/// The card authority's bindings, wrong-link reports and their review, and values that only go
/// up, on the person `person` (holding coverage 9001 of the test insurer).
fn run_trust<R: Register + crate::cards::CardRegistry>(register: &R, person: i64) {
    use crate::cards::{BindingApplied, BindingChange, BoundAttributes, LinkState};
    let attributes = BoundAttributes {
        name: "試験　花子".into(),
        name_kana: "シケン　ハナコ".into(),
        birth_date: "19800101".into(),
        sex: "2".into(),
        address: "東京都".into(),
    };
    let change = |seq: i64, kind: &str, serial: &str| BindingChange {
        seq,
        kind: kind.into(),
        serial: serial.into(),
        holder_ref: "holder-9".into(),
        person_ref: "card-p1".into(),
        attributes: (kind != "revoke").then(|| attributes.clone()),
        face_only: false,
        phone_of: None,
    };
    assert_eq!(register.binding_seq_max().unwrap(), 0);
    assert_eq!(register.apply_binding(&change(1, "issue", "0c01"), now()).unwrap(), BindingApplied::Applied { unlinked_person: None });
    assert_eq!(register.apply_binding(&change(1, "issue", "0c01"), now()).unwrap(), BindingApplied::AlreadyApplied);
    let bound = register.binding("0c01").unwrap().expect("bound");
    assert_eq!((bound.person_ref.as_str(), &bound.attributes, bound.state.as_str()), ("card-p1", &attributes, "active"));
    assert!(!bound.face_only);
    assert_eq!(register.person_of_ref("card-p1").unwrap(), Some(person));
    assert_eq!(register.person_of_ref("nobody").unwrap(), None);

    // A revocation undoes the link and names the person, once.
    register.link_card("0c01", "holder-9", person, now()).unwrap();
    assert_eq!(
        register.apply_binding(&change(2, "revoke", "0c01"), now()).unwrap(),
        BindingApplied::Applied { unlinked_person: Some(person) }
    );
    assert_eq!(register.apply_binding(&change(2, "revoke", "0c01"), now()).unwrap(), BindingApplied::AlreadyApplied);
    assert_eq!(register.card_link("0c01").unwrap().map(|l| l.state), Some(LinkState::Unlinked));
    assert_eq!(register.binding("0c01").unwrap().expect("kept").state, "revoked");
    assert_eq!(register.binding_seq_max().unwrap(), 2);

    // A clinic's report does not block; the holder's does; the review decides.
    register.apply_binding(&change(3, "issue", "0c02"), now()).unwrap();
    register.link_card("0c02", "holder-9", person, now()).unwrap();
    let clinic = register.file_report("0c02", person, "1311234569", "another name shown", false, now()).unwrap();
    assert_eq!(register.card_link("0c02").unwrap().map(|l| l.state), Some(LinkState::Active));
    let holder = register.file_report("0c02", person, "patient", "not me", true, now()).unwrap();
    assert_eq!(register.card_link("0c02").unwrap().map(|l| l.state), Some(LinkState::Flagged));
    let open: Vec<_> = register
        .open_reports_for_insurer(insurer().as_str(), d("20261125"))
        .unwrap()
        .into_iter()
        .filter(|r| r.report.serial == "0c02")
        .collect();
    assert_eq!(open.iter().map(|r| r.report.report_id).collect::<Vec<_>>(), [clinic, holder]);
    assert_eq!(open[0].number, "9001");
    assert!(register.open_reports_for_insurer("39999990", d("20261125")).unwrap().is_empty(), "another insurer's members are not listed");
    assert!(register.open_reports_for_insurer(insurer().as_str(), d("20200331")).unwrap().is_empty(), "nor before the coverage began");
    let cleared = register.review_report(clinic, "insurer:x", false, "right link", now()).unwrap().expect("open");
    assert_eq!(cleared.state, "cleared");
    assert_eq!(register.card_link("0c02").unwrap().map(|l| l.state), Some(LinkState::Flagged), "the holder's report still blocks");
    assert_eq!(register.review_report(clinic, "insurer:x", true, "", now()).unwrap(), None, "reviewed once");
    register.review_report(holder, "insurer:x", false, "right link", now()).unwrap().expect("open");
    assert_eq!(register.card_link("0c02").unwrap().map(|l| l.state), Some(LinkState::Active));
    let wrong = register.file_report("0c02", person, "patient", "not me", true, now()).unwrap();
    register.review_report(wrong, "insurer:x", true, "wrong person", now()).unwrap().expect("open");
    assert_eq!(register.card_link("0c02").unwrap().map(|l| l.state), Some(LinkState::Unlinked));
    assert_eq!(register.report(wrong).unwrap().map(|r| r.state), Some("confirmed".to_string()));
    let about_0c02: Vec<_> = register
        .reports_of_person(person)
        .unwrap()
        .into_iter()
        .filter(|r| r.serial == "0c02")
        .map(|r| (r.report_id, r.reporter, r.state))
        .collect();
    assert_eq!(
        about_0c02,
        [
            (clinic, "1311234569".to_string(), "cleared".to_string()),
            (holder, "patient".to_string(), "cleared".to_string()),
            (wrong, "patient".to_string(), "confirmed".to_string())
        ]
    );
    assert!(register.reports_of_person(person + 1_000).unwrap().is_empty());
    let states = register.report_states().unwrap();
    let state = |name: &str| states.iter().find(|(s, _)| s == name).map_or(0, |(_, n)| *n);
    assert_eq!((state("cleared"), state("confirmed")), (2, 1), "{states:?}");
    assert_eq!(register.binding("0c02").unwrap().map(|b| b.state), Some("disputed".to_string()), "no new link from it");
    // A corrected binding from the card authority makes it usable again; linked again, an
    // undone link is active again.
    register.apply_binding(&change(4, "issue", "0c02"), now()).unwrap();
    assert_eq!(register.binding("0c02").unwrap().map(|b| b.state), Some("active".to_string()));
    assert_eq!(register.link_card("0c02", "holder-9", person, now()).unwrap().state, LinkState::Active);

    assert_eq!(register.trust_value("crl").unwrap(), None);
    // A flag carried to a renewed certificate is cleared by the review of the report filed
    // under the old one.
    register.apply_binding(&change(5, "issue", "0d01"), now()).unwrap();
    register.link_card("0d01", "holder-d", person, now()).unwrap();
    let flagged = register.file_report("0d01", person, "patient", "not me", true, now()).unwrap();
    let renewed = register.move_card_link("holder-d", "0d02", now()).unwrap().expect("moved");
    assert_eq!(renewed.state, LinkState::Flagged);
    register.review_report(flagged, "insurer:x", false, "right link", now()).unwrap().expect("open");
    assert_eq!(register.card_link("0d02").unwrap().map(|l| l.state), Some(LinkState::Active), "the renewed card verifies again");

    // A card without a PIN is bound as such (it registers by face).
    register.apply_binding(&BindingChange { face_only: true, ..change(6, "issue", "0e01") }, now()).unwrap();
    assert!(register.binding("0e01").unwrap().expect("bound").face_only);
    // A smartphone's certificate is bound with the card certificate it was issued from.
    register.apply_binding(&BindingChange { phone_of: Some("0e01".into()), ..change(7, "issue", "0f01") }, now()).unwrap();
    assert_eq!(register.binding("0f01").unwrap().expect("bound").phone_of.as_deref(), Some("0e01"));
    assert_eq!(register.binding("0e01").unwrap().expect("bound").phone_of, None);

    assert!(register.raise_trust_value("crl", 5).unwrap());
    assert!(register.raise_trust_value("crl", 5).unwrap(), "the same value again");
    assert!(!register.raise_trust_value("crl", 4).unwrap(), "never down");
    assert_eq!(register.trust_value("crl").unwrap(), Some(5));
}

/// The medical-information behaviour every backend must show, on a fresh register.
pub fn run_medical<R: Register + crate::medical::MedicalStore>(register: &R) {
    use crate::medical::{CheckupRow, DrugRow, MedicalRow};
    register.apply_events(&[event("med-e1", "med-p1", "9101", 0, "20200401", acquire("19600101", IncomeClass::General))], now()).unwrap();
    let person = register.person_id("med-p1").unwrap().expect("known");
    assert_eq!(register.person_id("nobody").unwrap(), None);
    let drug = |on: &str, code: &str| DrugRow {
        dispensed_on: d(on),
        drug_code: code.into(),
        drug_name: "アムロジピン錠５ｍｇ".into(),
        quantity: 1.0,
        unit: "錠".into(),
        days: 28,
        dispensed_by: "1341234567".into(),
        source: "claim".into(),
        arrived_on: d(on).add_days(42),
    };
    let checkup = CheckupRow {
        examined_on: d("20260601"),
        item_code: "9N001000000000001".into(),
        item_name: "身長".into(),
        value: "160.2".into(),
        unit: "cm".into(),
        arrived_on: d("20260715"),
    };
    let rows = vec![
        (person, MedicalRow::Drug(drug("20260801", "620000001"))),
        (person, MedicalRow::Drug(drug("20260901", "620000002"))),
        (person, MedicalRow::Checkup(checkup.clone())),
    ];
    assert_eq!(register.add_medical(&rows).unwrap(), 3);
    assert_eq!(register.add_medical(&rows).unwrap(), 0, "adding the same rows again changes nothing");
    let drugs = register.drugs_of(person).unwrap();
    assert_eq!(drugs, [drug("20260901", "620000002"), drug("20260801", "620000001")], "newest first");
    assert_eq!(register.checkups_of(person).unwrap(), [checkup]);
    assert!(register.drugs_of(person + 1000).unwrap().is_empty());
}

/// The 公費 register's behaviour every backend must show, on a fresh register: a payer's
/// events applied once, dated certificates read back exactly, by person and by number, refusals
/// writing nothing, and whether a payer registers at all.
pub fn run_subsidies<R: Register + crate::subsidy::SubsidyStore + crate::medical::MedicalStore>(register: &R) {
    use crate::subsidy::{SubsidyChange, SubsidyEventRecord, SubsidyTerms};
    use onshi_domain::ids::{PublicPayerNumber, RecipientNumber};
    register.apply_events(&[event("sub-e1", "sub-p1", "9201", 0, "20200401", acquire("20150601", IncomeClass::General))], now()).unwrap();
    let person = register.person_id("sub-p1").unwrap().expect("known");
    let payer = PublicPayerNumber::with_check_digit("8813001").unwrap();
    let other_payer = PublicPayerNumber::with_check_digit("5413001").unwrap();
    let recipient = RecipientNumber::with_check_digit("000123").unwrap();
    let terms = |cap: u32, withheld: bool| SubsidyTerms {
        name: "子ども医療費受給者証".into(),
        valid_to: Some(d("20270331")),
        self_pay_cap_yen: Some(cap),
        income_segment: Some("一般".into()),
        designated_institutions: vec!["1312345678".into(), "1312345679".into()],
        withheld,
    };
    let event = |id: &str, person_ref: &str, on: &str, change: SubsidyChange| SubsidyEventRecord {
        event_id: id.into(),
        payer: payer.clone(),
        recipient: recipient.clone(),
        person_ref: person_ref.into(),
        occurred_on: d(on),
        notified_at: Timestamp::at_start_of(d(on)),
        change,
        holder: None,
    };
    assert!(!register.payer_registers(&payer).unwrap(), "nothing registered yet");
    let first = [
        event("s1", "sub-p1", "20260401", SubsidyChange::Grant(terms(500, false))),
        event("s2", "sub-p1", "20261001", SubsidyChange::Grant(terms(0, true))),
    ];
    assert_eq!(register.apply_subsidy_events(&first, now()).unwrap(), [ApplyOutcome::Applied, ApplyOutcome::Applied]);
    assert_eq!(register.apply_subsidy_events(&first, now()).unwrap(), [ApplyOutcome::AlreadyApplied, ApplyOutcome::AlreadyApplied]);
    assert!(register.payer_registers(&payer).unwrap());
    assert!(!register.payer_registers(&other_payer).unwrap());
    let rows = register.subsidies_of_recipient(&payer, &recipient).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].valid_from, rows[0].terms.valid_to), (d("20260401"), Some(d("20260930"))), "closed by the new terms");
    assert_eq!(rows[1].terms, terms(0, true), "read back exactly, designated institutions and the withheld mark included");
    assert_eq!(rows[1].person_ref, "sub-p1");
    assert_eq!(register.subsidies_of_person(person).unwrap(), rows);
    assert!(register.subsidies_of_person(person + 1000).unwrap().is_empty());
    // Another person on the same number: refused, and nothing written (not even the event id).
    let moved = [event("s3", "sub-p2", "20261101", SubsidyChange::Grant(terms(0, false)))];
    assert!(matches!(register.apply_subsidy_events(&moved, now()).unwrap()[0], ApplyOutcome::Rejected { field: "person_ref", .. }));
    assert_eq!(register.subsidies_of_recipient(&payer, &recipient).unwrap(), rows);
    let ended = [event("s4", "sub-p1", "20261201", SubsidyChange::End)];
    assert_eq!(register.apply_subsidy_events(&ended, now()).unwrap(), [ApplyOutcome::Applied]);
    let rows = register.subsidies_of_recipient(&payer, &recipient).unwrap();
    assert_eq!(rows[1].terms.valid_to, Some(d("20261130")));
    assert!(rows.iter().all(|r| !r.covers(d("20261201"))));

    // 医療扶助: a welfare office (法別 12) grants, designates an institution, issues a ticket.
    use crate::subsidy::MedicalTicketRecord;
    let office = PublicPayerNumber::with_check_digit("1213001").unwrap();
    let welfare = RecipientNumber::with_check_digit("000777").unwrap();
    let ticket = MedicalTicketRecord {
        ticket_type: "01".into(),
        valid_from: d("20261101"),
        valid_to: d("20261130"),
        issue_number: "K-0001".into(),
        month: 202611,
        institution_code: "1312345678".into(),
        institution_name: "オンシ医院".into(),
        injuries: vec!["高血圧症".into(), "糖尿病".into()],
        treatment_type: "02".into(),
        self_pay_yen: 1200,
        combined: false,
    };
    let by_office = |id: &str, on: &str, change: SubsidyChange| SubsidyEventRecord {
        payer: office.clone(),
        recipient: welfare.clone(),
        ..event(id, "sub-p1", on, change)
    };
    let ticket_event = by_office("w0", "20261101", SubsidyChange::Ticket(ticket.clone()));
    assert!(
        matches!(
            register.apply_subsidy_events(std::slice::from_ref(&ticket_event), now()).unwrap()[0],
            ApplyOutcome::Rejected { field: "recipient_number", .. }
        ),
        "no ticket before a grant"
    );
    let office_terms = SubsidyTerms {
        name: "千代田区福祉事務所".into(),
        valid_to: None,
        self_pay_cap_yen: None,
        income_segment: None,
        designated_institutions: vec!["1312345678".into()],
        withheld: false,
    };
    let welfare_events =
        [by_office("w1", "20260601", SubsidyChange::Grant(office_terms)), SubsidyEventRecord { event_id: "w2".into(), ..ticket_event }];
    assert_eq!(register.apply_subsidy_events(&welfare_events, now()).unwrap(), [ApplyOutcome::Applied, ApplyOutcome::Applied]);
    let at = register.tickets_at("1312345678", 202611).unwrap();
    assert_eq!(at.len(), 1);
    assert_eq!((&at[0].payer, &at[0].recipient, &at[0].ticket), (&office, &welfare, &ticket), "read back exactly, injuries included");
    assert!(register.tickets_at("1312345678", 202610).unwrap().is_empty() && register.tickets_at("1312345679", 202611).unwrap().is_empty());
    let of = register.tickets_of_recipient(&office, &welfare, 202611).unwrap();
    assert_eq!(of.iter().map(|t| &t.ticket).collect::<Vec<_>>(), [&ticket], "the recipient's month, read back exactly");
    assert!(register.tickets_of_recipient(&office, &welfare, 202612).unwrap().is_empty(), "another month");
    let other = RecipientNumber::with_check_digit("000099").unwrap();
    assert!(register.tickets_of_recipient(&office, &other, 202611).unwrap().is_empty(), "another recipient");
    let designating = register.welfare_designating("1312345678").unwrap();
    assert_eq!(
        designating.iter().map(|r| r.recipient.as_str()).collect::<Vec<_>>(),
        [welfare.as_str()],
        "only the welfare office's, not the 公費 one naming it too"
    );
    assert!(register.welfare_designating("131234567").unwrap().is_empty(), "a whole code, not a prefix");
    // A ticket from a payer that is not a welfare office.
    let not_welfare = SubsidyEventRecord { event_id: "w3".into(), ..event("w3", "sub-p1", "20261101", SubsidyChange::Ticket(ticket)) };
    assert!(matches!(register.apply_subsidy_events(&[not_welfare], now()).unwrap()[0], ApplyOutcome::Rejected { field: "kind", .. }));
    welfare_recipients_no_insurer_registers(register, &office, &office_terms_for_holders());
}

fn office_terms_for_holders() -> crate::subsidy::SubsidyTerms {
    crate::subsidy::SubsidyTerms {
        name: "千代田区福祉事務所".into(),
        valid_to: None,
        self_pay_cap_yen: None,
        income_segment: None,
        designated_institutions: vec!["1312345678".into()],
        withheld: false,
    }
}

/// A welfare office's grant carrying the recipient's own record: the person is recorded (the
/// card authority's binding can name them), the record reads back and a later grant replaces
/// it; only a welfare office's grant may carry one; an insurer registering the same person
/// later finds them, not a second one.
fn welfare_recipients_no_insurer_registers<R: Register + crate::subsidy::SubsidyStore + crate::medical::MedicalStore>(
    register: &R,
    office: &onshi_domain::ids::PublicPayerNumber,
    terms: &crate::subsidy::SubsidyTerms,
) {
    use crate::subsidy::{SubsidyChange, SubsidyEventRecord, WelfareHolder};
    use onshi_domain::codes::Sex;
    use onshi_domain::ids::{PublicPayerNumber, RecipientNumber};
    let holder = |name: &str| WelfareHolder {
        name: name.into(),
        name_kana: "フクシ　タロウ".into(),
        birth_date: d("19580707"),
        sex: Sex::Male,
        address: Some("東京都千代田区一番町1-1".into()),
    };
    let grant = |id: &str, payer: &PublicPayerNumber, name: &str| SubsidyEventRecord {
        event_id: id.into(),
        payer: payer.clone(),
        recipient: RecipientNumber::with_check_digit("000555").unwrap(),
        person_ref: "sub-w9".into(),
        occurred_on: d("20260501"),
        notified_at: Timestamp::at_start_of(d("20260501")),
        change: SubsidyChange::Grant(terms.clone()),
        holder: Some(holder(name)),
    };
    let nanbyo = PublicPayerNumber::with_check_digit("5413001").unwrap();
    assert!(
        matches!(
            register.apply_subsidy_events(&[grant("h0", &nanbyo, "福祉 太郎")], now()).unwrap()[0],
            ApplyOutcome::Rejected { field: "certificate.recipient", .. }
        ),
        "a 難病 payer is no welfare office"
    );
    assert_eq!(register.person_id("sub-w9").unwrap(), None, "a refused grant records nobody");
    assert_eq!(register.apply_subsidy_events(&[grant("h1", office, "福祉 太郎")], now()).unwrap(), [ApplyOutcome::Applied]);
    let person = register.person_id("sub-w9").unwrap().expect("the recipient is recorded");
    assert!(register.coverages_of_person(person).unwrap().is_empty(), "no insurer registers them");
    let recipient = RecipientNumber::with_check_digit("000555").unwrap();
    assert_eq!(register.welfare_holder(office, &recipient).unwrap(), Some(holder("福祉 太郎")));
    assert_eq!(register.welfare_holder(&nanbyo, &recipient).unwrap(), None, "by recipient: another payer's number holds nothing");
    let later = Timestamp::from_jst_seconds(now().jst_seconds() + 60);
    assert_eq!(register.apply_subsidy_events(&[grant("h2", office, "福祉 太朗")], later).unwrap(), [ApplyOutcome::Applied]);
    assert_eq!(register.welfare_holder(office, &recipient).unwrap(), Some(holder("福祉 太朗")), "the latest record replaces it");
    // An insurer registering the same person later finds the same person.
    register.apply_events(&[event("sub-w9e", "sub-w9", "9209", 0, "20260801", acquire("19580707", IncomeClass::General))], later).unwrap();
    assert_eq!(register.person_id("sub-w9").unwrap(), Some(person));
    assert_eq!(register.coverages_of_person(person).unwrap().len(), 1);
}

/// Home-care consents every backend must keep: read back exactly by key, listed by institution,
/// kind and the day they were given.
pub fn run_home<R: Register + crate::home::HomeCareStore + crate::medical::MedicalStore>(register: &R) {
    use crate::home::HomeConsentRow;
    register.apply_events(&[event("home-e1", "home-p1", "9301", 0, "20200401", acquire("19500101", IncomeClass::General))], now()).unwrap();
    let person = register.person_id("home-p1").unwrap().expect("known");
    let consent = |key: &str, kind: &str, given: &str| HomeConsentRow {
        key: key.into(),
        person_id: person,
        institution: "1311234569".into(),
        kind: kind.into(),
        valid_from: d(given),
        valid_to: d("20270331"),
        given_at: Timestamp::from_jst_seconds(Timestamp::at_start_of(d(given)).jst_seconds() + 10 * 3600),
    };
    for (key, kind, given) in [("k1", "visit", "20261201"), ("k2", "visit", "20261203"), ("k3", "online", "20261202")] {
        register.record_home_consent(&consent(key, kind, given)).unwrap();
    }
    assert!(register.record_home_consent(&consent("k1", "visit", "20261201")).is_err(), "a key is given once");
    assert_eq!(register.home_consent("k2").unwrap(), Some(consent("k2", "visit", "20261203")));
    assert_eq!(register.home_consent("nothing").unwrap(), None);
    let keys: Vec<String> = register.home_consents_of_person(person).unwrap().into_iter().map(|c| c.key).collect();
    assert_eq!(keys, ["k2", "k3", "k1"], "the person's own, newest first");
    assert!(register.home_consents_of_person(person + 1000).unwrap().is_empty());
    let listed = |kind: &str, from: &str, to: &str| -> Vec<String> {
        register.home_consents_given("1311234569", kind, d(from), d(to)).unwrap().into_iter().map(|c| c.key).collect()
    };
    assert_eq!(listed("visit", "20261201", "20261203"), ["k1", "k2"], "both ends of the window count");
    assert_eq!(listed("visit", "20261202", "20261202"), Vec::<String>::new());
    assert_eq!(listed("online", "20261201", "20261231"), ["k3"]);
    assert!(register.home_consents_given("2711234563", "visit", d("20261201"), d("20261231")).unwrap().is_empty(), "another clinic's");
    // The holder withdraws on the 10th: the running ones end on the 9th, another clinic's stay.
    let mut theirs = consent("k4", "visit", "20261201");
    theirs.institution = "2711234563".into();
    register.record_home_consent(&theirs).unwrap();
    assert_eq!(register.end_home_consents(person, "1311234569", d("20261210")).unwrap(), 3);
    assert_eq!(register.home_consent("k2").unwrap().map(|c| c.valid_to), Some(d("20261209")));
    assert_eq!(register.home_consent("k4").unwrap(), Some(theirs), "another clinic's consent is untouched");
    assert_eq!(register.end_home_consents(person, "1311234569", d("20261210")).unwrap(), 0, "nothing left running");
    // One that had not begun yet is gone.
    register.record_home_consent(&consent("k5", "online", "20261220")).unwrap();
    assert_eq!(register.end_home_consents(person, "1311234569", d("20261215")).unwrap(), 1);
    assert_eq!(register.home_consent("k5").unwrap(), None);
}

/// The card path's shared single-use challenges, for an engine that keeps them
/// ([`crate::cards::CardRegistry::shares_challenges`]): issued within the owner's limit, used once,
/// expired ones forgotten.
pub fn run_challenges<R: crate::cards::CardRegistry>(registry: &R) {
    assert!(registry.shares_challenges());
    let at = |s: i64| Timestamp::from_jst_seconds(1_800_000_000 + s);
    assert!(registry.issue_challenge("c1", "1311234569", at(0), at(-60), 2).unwrap());
    assert!(registry.issue_challenge("c2", "1311234569", at(1), at(-59), 2).unwrap());
    assert!(!registry.issue_challenge("c3", "1311234569", at(2), at(-58), 2).unwrap(), "the owner's limit holds");
    assert!(registry.issue_challenge("p1", "patient", at(2), at(-58), 2).unwrap(), "another owner has its own");
    assert_eq!(registry.challenges_held("1311234569", at(-58)).unwrap(), 2);
    assert_eq!(registry.take_challenge("c1").unwrap(), Some(("1311234569".to_string(), at(0))));
    assert_eq!(registry.take_challenge("c1").unwrap(), None, "used once");
    assert_eq!(registry.take_challenge("never").unwrap(), None);
    // A minute later c2 has expired: it no longer counts, and it is forgotten.
    assert!(registry.issue_challenge("c4", "1311234569", at(70), at(10), 1).unwrap());
    assert_eq!(registry.take_challenge("c2").unwrap(), None, "an expired challenge is gone");
    assert_eq!(registry.challenges_held("1311234569", at(10)).unwrap(), 1);
}
