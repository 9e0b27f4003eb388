//! A deterministic synthetic population for the register, and the ground truth a verification
//! must answer.
//!
//! `generate` writes, under the output directory:
//! - `events/<kind>.jsonl`: insurer events notified on or before `today`, one file per insurer
//!   kind (協会けんぽ, 健保組合, 共済, 国保, 後期高齢). Each coverage's events are in order.
//! - `late/late-events.jsonl`: events whose notification falls after `today`: the registration
//!   lag in which valid coverage answers 該当資格なし.
//! - `ground-truth.jsonl`: verification cases with the answer the center must give once
//!   `events/` is imported (and `late/` is not).
//! - `medical/medical.jsonl`: dispensed drugs and 特定健診 results known on `today`.
//! - `manifest.json`: options and counts.
//!
//! The truth is computed from the population's own timeline, not by calling the center.

pub mod medical;
mod names;
pub mod rng;
mod rules;
pub mod subsidy;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use onshi_api::events::{
    CardFields, EventKind, InsurerEvent, LimitCertificate, Member, PublicExpenseCertificate, SpecificDiseaseCertificate, Terms,
};
use onshi_api::verify::{VerifyAttributesRequest, VerifyNumberRequest};
use onshi_domain::codes::Sex;
use onshi_domain::copay::IncomeClass;
use onshi_domain::ids::{InsurerNumber, PublicPayerNumber, RecipientNumber};
use onshi_domain::limit::LimitCategory;
use onshi_domain::{Date, Timestamp};
use serde::{Deserialize, Serialize};

use rng::{Rng, person_ref};

/// How to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub persons: u64,
    pub seed: u64,
    /// The synthetic world's today: events notified later go to `late/`.
    pub today: Date,
    pub out: PathBuf,
}

/// The default synthetic today, fixed so that output does not depend on when it is run.
pub const DEFAULT_TODAY: (u16, u8, u8) = (2026, 11, 25);

/// Most truth cases kept per category, so that ten million persons do not mean ten million cases.
const CASES_PER_CATEGORY_MAX: u64 = 2_000;
/// One ordinary person in this many becomes a `valid` truth case.
const VALID_SAMPLE_EVERY: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("nothing to generate: --persons must be at least 1")]
    NoPersons,
}

/// What was written.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SynthSummary {
    pub persons: u64,
    pub households: u64,
    pub insurers: u64,
    pub events: u64,
    pub late_events: u64,
    pub truth_cases: u64,
    pub cases_by_category: BTreeMap<String, u64>,
    pub today: String,
    pub seed: u64,
    pub event_files: Vec<String>,
    /// Medical-information records written to [`MEDICAL_FILE`].
    #[serde(default)]
    pub medical_records: u64,
    /// 公費 payers' events, and the files they are in ([`subsidy::SUBSIDY_FILE`]).
    #[serde(default)]
    pub subsidy_events: u64,
    #[serde(default)]
    pub subsidy_files: Vec<String>,
}

/// Where the medical information goes, under the output directory.
pub const MEDICAL_FILE: &str = "medical/medical.jsonl";

/// One ground-truth case: a request and what the answer must contain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TruthCase {
    pub case: String,
    pub category: String,
    pub request: VerifyNumberRequest,
    pub expect: Expectation,
    /// For a claim billed as 不詳: the same person asked by attributes (カナ氏名, birth date,
    /// sex), which must give the same answer as `request` (address aside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<VerifyAttributesRequest>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Expectation {
    /// QualificationValidity code "1"–"5".
    pub validity: String,
    /// The notice code, when one must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// The copay ratio, when the answer must state it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copay_ratio_percent: Option<u8>,
    /// The limit category that must be shown, or none (checked exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_category: Option<String>,
    /// The newer coverage's insurer number (振替 target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_insurer_number: Option<String>,
    /// The pending change kinds the answer lists, exactly (as a set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// A public-expense payer that must be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_payer: Option<String>,
    /// What the paper named in the request is worth (`accepted`, `accepted_with_confirmation`,
    /// `not_alone`), when the request names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_worth: Option<String>,
    /// The insurer number of the coverage the answer is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer_number: Option<String>,
    /// The name exactly as the insurer wrote it (JIS X 0213 characters, variation sequences),
    /// for the cases that check that it arrives unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The same name as a Shift_JIS answer carries it, by the written rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_shift_jis: Option<String>,
}

struct Insurer {
    number: InsurerNumber,
    name: String,
    next_number: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Family {
    Kyokai,
    Kumiai,
    Kyosai,
    Kokuho,
    Kouki,
}

impl Family {
    const ALL: [Family; 5] = [Family::Kyokai, Family::Kumiai, Family::Kyosai, Family::Kokuho, Family::Kouki];
    fn file(self) -> &'static str {
        match self {
            Family::Kyokai => "kyokai",
            Family::Kumiai => "kumiai",
            Family::Kyosai => "kyosai",
            Family::Kokuho => "kokuho",
            Family::Kouki => "kouki",
        }
    }
}

/// A card issued to a household (or a person): insurer, 記号, 番号.
#[derive(Clone, Debug)]
struct Card {
    family: Family,
    insurer: usize,
    symbol: Option<String>,
    number: String,
}

/// One synthetic person.
#[derive(Clone, Debug)]
struct Person {
    reference: String,
    name: String,
    /// The name in CP932 when its family name is one of [`names::RARE_FAMILY`].
    name_cp932: Option<String>,
    kana: String,
    sex: Sex,
    birth: Date,
    income: IncomeClass,
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Writer {
    fn create(path: PathBuf) -> Result<Writer, SynthError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| SynthError::Write { path: parent.to_path_buf(), source })?;
        }
        let file = File::create(&path).map_err(|source| SynthError::Write { path: path.clone(), source })?;
        Ok(Writer { path, out: BufWriter::with_capacity(1 << 20, file) })
    }

    fn line<T: Serialize>(&mut self, value: &T) -> Result<(), SynthError> {
        let error = |source| SynthError::Write { path: self.path.clone(), source };
        serde_json::to_writer(&mut self.out, value).map_err(|e| error(std::io::Error::other(e)))?;
        self.out.write_all(b"\n").map_err(error)
    }

    fn finish(mut self) -> Result<(), SynthError> {
        self.out.flush().map_err(|source| SynthError::Write { path: self.path.clone(), source })?;
        self.out.get_ref().sync_all().map_err(|source| SynthError::Write { path: self.path.clone(), source })
    }
}

struct Generator {
    rng: Rng,
    seed: u64,
    today: Date,
    insurers: Vec<Insurer>,
    by_family: BTreeMap<Family, Vec<usize>>,
    files: BTreeMap<Family, Writer>,
    late: Writer,
    truth: Writer,
    medical: Writer,
    summary: SynthSummary,
    next_event: u64,
    next_person: u64,
    /// 後期高齢 insurer index per prefecture (1-based code − 1).
    kouki_by_prefecture: Vec<usize>,
    /// What the register will know of each coverage (only events notified by today), by
    /// (insurer, number, branch): the timeline the ground truth is computed from.
    timeline: HashMap<(usize, String, u8), Registered>,
    /// Each person's coverages in the timeline.
    coverages_of: HashMap<String, Vec<(usize, String, u8)>>,
}

/// One coverage as the register will hold it.
#[derive(Clone, Debug)]
struct Registered {
    insurer_number: String,
    late_elderly: bool,
    birth: Date,
    acquired: Date,
    /// A registered loss (資格喪失日).
    lost_on: Option<Date>,
    /// Dated terms changes registered after the acquisition.
    changes: Vec<Date>,
}

impl Registered {
    /// The first day not covered, as the law has it: every coverage but 後期高齢's ends on the
    /// 75th birthday, registered or not.
    fn end(&self) -> Option<Date> {
        let by_law = (!self.late_elderly).then(|| rules::seventy_five(self.birth)).filter(|end| *end > self.acquired);
        match (self.lost_on, by_law) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn covers(&self, on: Date) -> bool {
        self.acquired <= on && self.end().is_none_or(|end| on < end)
    }
}

fn d(y: u16, m: u8, day: u8) -> Date {
    Date::new(y, m, day).expect("generator dates are valid")
}

fn insurer_numbers(rng: &mut Rng) -> Vec<(Family, InsurerNumber, String)> {
    let mut list = Vec::new();
    for pref in 1..=47u8 {
        let name = names::PREFECTURES[pref as usize - 1];
        let number = InsurerNumber::with_check_digit(&format!("01{pref:02}001")).expect("valid body");
        list.push((Family::Kyokai, number, format!("全国健康保険協会{name}支部")));
        let number = InsurerNumber::with_check_digit(&format!("39{pref:02}101")).expect("valid body");
        list.push((Family::Kouki, number, format!("{name}後期高齢者医療広域連合")));
        for town in 0..2u16 {
            let number = InsurerNumber::with_check_digit(&format!("{pref:02}{:03}", 101 + town * 2)).expect("valid body");
            list.push((Family::Kokuho, number, format!("{name}第{}市国民健康保険", town + 1)));
        }
    }
    for society in 0..60u16 {
        let pref = 1 + rng.below(47) as u8;
        let number = InsurerNumber::with_check_digit(&format!("06{pref:02}{:03}", 100 + society * 7)).expect("valid body");
        list.push((Family::Kumiai, number, format!("第{}健康保険組合", society + 1)));
    }
    for (i, law) in ["31", "32", "33", "34"].iter().enumerate() {
        for branch in 0..4u16 {
            let pref = 1 + rng.below(47) as u8;
            let number =
                InsurerNumber::with_check_digit(&format!("{law}{pref:02}{:03}", 100 + i as u16 * 10 + branch)).expect("valid body");
            list.push((Family::Kyosai, number, format!("共済組合{}-{}", law, branch + 1)));
        }
    }
    list
}

/// How one coverage of one person looks for the truth file.
struct Held {
    card: Card,
    branch: u8,
}

impl Generator {
    fn new(options: &SynthOptions) -> Result<Generator, SynthError> {
        let mut rng = Rng::new(options.seed);
        let mut insurers = Vec::new();
        let mut by_family: BTreeMap<Family, Vec<usize>> = BTreeMap::new();
        let mut kouki_by_prefecture = Vec::new();
        for (family, number, name) in insurer_numbers(&mut rng) {
            if insurers.iter().any(|i: &Insurer| i.number == number) {
                continue;
            }
            by_family.entry(family).or_default().push(insurers.len());
            if family == Family::Kouki {
                kouki_by_prefecture.push(insurers.len());
            }
            insurers.push(Insurer { number, name, next_number: 1 });
        }
        let mut files = BTreeMap::new();
        for family in Family::ALL {
            files.insert(family, Writer::create(options.out.join("events").join(format!("{}.jsonl", family.file())))?);
        }
        let summary = SynthSummary {
            insurers: insurers.len() as u64,
            today: options.today.to_string(),
            seed: options.seed,
            event_files: Family::ALL.iter().map(|f| format!("events/{}.jsonl", f.file())).collect(),
            ..SynthSummary::default()
        };
        Ok(Generator {
            rng,
            seed: options.seed,
            today: options.today,
            insurers,
            by_family,
            files,
            late: Writer::create(options.out.join("late").join("late-events.jsonl"))?,
            truth: Writer::create(options.out.join("ground-truth.jsonl"))?,
            medical: Writer::create(options.out.join(MEDICAL_FILE))?,
            summary,
            next_event: 1,
            next_person: 0,
            kouki_by_prefecture,
            timeline: HashMap::new(),
            coverages_of: HashMap::new(),
        })
    }

    fn person(&mut self, birth: Date, sex: Sex, family_name: (&str, &str)) -> Result<Person, SynthError> {
        let given = if sex == Sex::Male { *self.rng.pick(names::GIVEN_MALE) } else { *self.rng.pick(names::GIVEN_FEMALE) };
        let age = birth.age_on(self.today);
        let income = if age >= 75 {
            *self.rng.pick(&[
                IncomeClass::General,
                IncomeClass::General,
                IncomeClass::General,
                IncomeClass::GeneralII,
                IncomeClass::ActiveHigh,
            ])
        } else if age >= 70 {
            *self.rng.pick(&[IncomeClass::General, IncomeClass::General, IncomeClass::General, IncomeClass::ActiveHigh])
        } else {
            IncomeClass::General
        };
        let index = self.next_person;
        self.next_person += 1;
        let reference = person_ref(self.seed, index);
        for record in medical::records(self.seed, index, &reference, birth, self.today) {
            self.medical.line(&record)?;
            self.summary.medical_records += 1;
        }
        Ok(Person {
            reference,
            name: format!("{}　{}", family_name.0, given.0),
            name_cp932: names::cp932_form(family_name.0).map(|family| format!("{family}　{}", given.0)),
            kana: if family_name == names::UNKNOWN_FAMILY {
                format!("{} {}", family_name.1, names::kana_serial(index))
            } else {
                format!("{} {}", family_name.1, given.1)
            },
            sex,
            birth,
            income,
        })
    }

    fn birth_for_age(&mut self, age: u16) -> Date {
        let days = self.rng.between(0, 364);
        self.today.add_days(-(i64::from(age) * 36525 / 100) - days)
    }

    fn new_card(&mut self, family: Family, insurer: usize) -> Card {
        let serial = self.insurers[insurer].next_number;
        self.insurers[insurer].next_number += 1;
        let (symbol, number) = match family {
            Family::Kyokai => (Some(format!("{}", 1_000_000 + self.rng.below(8_999_999))), format!("{serial}")),
            Family::Kumiai | Family::Kyosai => (Some(format!("{}", 10 + self.rng.below(90))), format!("{serial}")),
            Family::Kokuho => (Some(format!("{:02}", 1 + self.rng.below(40))), format!("{serial:07}")),
            Family::Kouki => (None, format!("{serial:08}")),
        };
        Card { family, insurer, symbol, number }
    }

    fn pick_insurer(&mut self, family: Family) -> usize {
        let list = &self.by_family[&family];
        list[self.rng.below(list.len() as u64) as usize]
    }

    fn event_id(&mut self) -> String {
        let id = self.next_event;
        self.next_event += 1;
        format!("ev{id:010}")
    }

    /// Writes an event to its insurer's file, or to `late/` when notified after today.
    /// Returns whether the register will know it.
    fn emit(&mut self, family: Family, event: InsurerEvent) -> Result<bool, SynthError> {
        let notified = Timestamp::parse(&event.notified_at).expect("generated timestamps are valid");
        if notified.date() > self.today {
            self.summary.late_events += 1;
            self.late.line(&event)?;
            Ok(false)
        } else {
            self.summary.events += 1;
            self.files.get_mut(&family).expect("a file per family").line(&event)?;
            Ok(true)
        }
    }

    fn notified(&mut self, occurred: Date, lag_days: i64) -> String {
        let seconds = self.rng.between(9 * 3600, 18 * 3600);
        Timestamp::from_jst_seconds(Timestamp::at_start_of(occurred.add_days(lag_days)).jst_seconds() + seconds).to_string()
    }

    fn terms(&mut self, person: &Person, acquired: Date, pref: u8) -> Terms {
        let mut terms = Terms { income_class: person.income.code().to_string(), ..Terms::default() };
        let age = person.birth.age_on(self.today);
        let year_start = if self.today.month() >= 8 { d(self.today.year(), 8, 1) } else { d(self.today.year() - 1, 8, 1) };
        if age >= 18 && self.rng.chance(80) {
            let valid_from = year_start.max(acquired);
            let category = if valid_from >= rules::seventy_start(person.birth) {
                match person.income {
                    IncomeClass::ActiveHigh => *self.rng.pick(&[LimitCategory::B01, LimitCategory::B02, LimitCategory::B03]),
                    IncomeClass::GeneralII => LimitCategory::B09,
                    IncomeClass::General if age >= 75 => *self.rng.pick(&[LimitCategory::B10, LimitCategory::B05, LimitCategory::B06]),
                    IncomeClass::General => *self.rng.pick(&[LimitCategory::B04, LimitCategory::B05, LimitCategory::B06]),
                }
            } else {
                *self.rng.pick(&[LimitCategory::A01, LimitCategory::A02, LimitCategory::A03, LimitCategory::A04, LimitCategory::A05])
            };
            let classification = if matches!(category, LimitCategory::B05 | LimitCategory::B06 | LimitCategory::A05) { "02" } else { "01" };
            terms.limit = Some(LimitCertificate {
                category: category.code().into(),
                classification: classification.into(),
                valid_from: valid_from.to_string(),
                valid_to: Some(d(year_start.year() + 1, 7, 31).to_string()),
            });
        }
        if self.rng.chance(1) {
            terms.specific_diseases.push(SpecificDiseaseCertificate {
                category: "1".into(),
                valid_from: acquired.max(self.today.add_days(-400)).to_string(),
                valid_to: None,
                self_pay_yen: 10_000,
            });
        }
        if self.rng.chance(20) {
            let payer = PublicPayerNumber::with_check_digit(&format!("54{pref:02}001")).expect("valid body");
            let recipient = RecipientNumber::with_check_digit(&format!("{:06}", self.rng.below(1_000_000))).expect("valid body");
            terms.public_expense.push(PublicExpenseCertificate {
                payer_number: payer.as_str().into(),
                recipient_number: recipient.as_str().into(),
                valid_from: acquired.max(self.today.add_days(-100)).to_string(),
                valid_to: Some(self.today.add_days(265).to_string()),
            });
        }
        terms
    }

    #[allow(clippy::too_many_arguments)]
    fn acquire(
        &mut self,
        card: &Card,
        branch: u8,
        person: &Person,
        relationship: &str,
        insured_name: &str,
        pref: u8,
        on: Date,
        lag: i64,
    ) -> Result<(bool, Terms), SynthError> {
        let mut terms = self.terms(person, on, pref);
        if card.family == Family::Kouki {
            terms.qualification_certificate = Some(rules::late_elderly_certificate(person.birth));
        }
        let notified = self.notified(on, lag);
        let mut event = self.skeleton(EventKind::Acquire, card, branch, person, on, notified);
        event.member = Some(Member {
            relationship: relationship.into(),
            card_classification: "01".into(),
            name: person.name.clone(),
            name_kana: person.kana.clone(),
            sex: person.sex.code().into(),
            birth_date: person.birth.to_string(),
            insured_name: (insured_name != person.name).then(|| insured_name.to_string()),
            address: Some(format!(
                "{}{}市{}丁目{}番",
                names::PREFECTURES[pref as usize - 1],
                "中央",
                1 + self.rng.below(9),
                1 + self.rng.below(30)
            )),
            post_code: Some(format!("{:03}-{:04}", 100 + self.rng.below(900), self.rng.below(10_000))),
        });
        event.terms = Some(terms.clone());
        let known = self.emit(card.family, event)?;
        if known {
            let key = (card.insurer, card.number.clone(), branch);
            let registered = Registered {
                insurer_number: self.insurers[card.insurer].number.as_str().to_string(),
                late_elderly: card.family == Family::Kouki,
                birth: person.birth,
                acquired: on,
                lost_on: None,
                changes: Vec::new(),
            };
            self.timeline.insert(key.clone(), registered);
            self.coverages_of.entry(person.reference.clone()).or_default().push(key);
        }
        Ok((known, terms))
    }

    /// An event for one person's card with no member, terms or loss reason yet.
    fn skeleton(&mut self, kind: EventKind, card: &Card, branch: u8, person: &Person, on: Date, notified: String) -> InsurerEvent {
        InsurerEvent {
            event_id: self.event_id(),
            kind,
            insurer_number: self.insurers[card.insurer].number.as_str().to_string(),
            person_ref: person.reference.clone(),
            card: CardFields { symbol: card.symbol.clone(), number: card.number.clone(), branch: format!("{branch:02}") },
            occurred_on: on.to_string(),
            notified_at: notified,
            member: None,
            terms: None,
            loss_reason: None,
        }
    }

    fn lose(&mut self, card: &Card, branch: u8, person: &Person, on: Date, reason: &str, notified: String) -> Result<bool, SynthError> {
        let mut event = self.skeleton(EventKind::Lose, card, branch, person, on, notified);
        event.loss_reason = Some(reason.into());
        let known = self.emit(card.family, event)?;
        if known && let Some(registered) = self.timeline.get_mut(&(card.insurer, card.number.clone(), branch)) {
            registered.lost_on = Some(on);
        }
        Ok(known)
    }

    #[allow(clippy::too_many_arguments)]
    fn change_income(
        &mut self,
        card: &Card,
        branch: u8,
        person: &Person,
        on: Date,
        terms: &Terms,
        income: IncomeClass,
        notified: String,
    ) -> Result<bool, SynthError> {
        let mut event = self.skeleton(EventKind::Change, card, branch, person, on, notified);
        event.terms = Some(Terms { income_class: income.code().into(), ..terms.clone() });
        let known = self.emit(card.family, event)?;
        if known && let Some(registered) = self.timeline.get_mut(&(card.insurer, card.number.clone(), branch)) {
            registered.changes.push(on);
        }
        Ok(known)
    }

    fn request(&self, held: &Held, person: &Person, on: Date, consent: bool) -> VerifyNumberRequest {
        VerifyNumberRequest {
            institution_code: None,
            insurer_number: self.insurers[held.card.insurer].number.as_str().to_string(),
            symbol: held.card.symbol.clone(),
            number: held.card.number.clone(),
            branch: Some(format!("{:02}", held.branch)),
            birth_date: person.birth.to_string(),
            date_of_care: Some(on.to_string()),
            limit_consent: consent,
            reverification: false,
            document: None,
        }
    }

    fn case(&mut self, category: &str, request: VerifyNumberRequest, expect: Expectation) -> Result<(), SynthError> {
        self.case_with(category, request, expect, None)
    }

    fn case_with(
        &mut self,
        category: &str,
        request: VerifyNumberRequest,
        expect: Expectation,
        attributes: Option<VerifyAttributesRequest>,
    ) -> Result<(), SynthError> {
        let count = self.summary.cases_by_category.entry(category.to_string()).or_default();
        if *count >= CASES_PER_CATEGORY_MAX {
            return Ok(());
        }
        *count += 1;
        self.summary.truth_cases += 1;
        let case =
            TruthCase { case: format!("c{:07}", self.summary.truth_cases), category: category.to_string(), request, expect, attributes };
        self.truth.line(&case)
    }

    fn room(&self, category: &str) -> bool {
        self.summary.cases_by_category.get(category).copied().unwrap_or(0) < CASES_PER_CATEGORY_MAX
    }

    /// The truth of a valid coverage on `on`.
    fn valid_expectation(&self, held: &Held, person: &Person, terms: &Terms, income: IncomeClass, on: Date, consent: bool) -> Expectation {
        self.truth_of(held, person, terms, income, on, consent, "1", None)
    }

    /// The whole truth about a coverage the register identifies, on `on`: the validity and
    /// notice the scenario decides, and everything else from the timeline (what the register
    /// will know) and the rules written out in [`rules`]: the copay while covered, the limit
    /// under consent, the public expense, the newer coverage, and every pending change.
    #[allow(clippy::too_many_arguments)]
    fn truth_of(
        &self,
        held: &Held,
        person: &Person,
        terms: &Terms,
        income: IncomeClass,
        on: Date,
        consent: bool,
        validity: &str,
        notice: Option<&str>,
    ) -> Expectation {
        let within = |from: &str, to: Option<&str>| {
            let from = Date::parse_yyyymmdd(from).expect("generated");
            let to = to.map(|t| Date::parse_yyyymmdd(t).expect("generated"));
            from <= on && to.is_none_or(|to| on <= to)
        };
        let limit = terms.limit.as_ref().filter(|l| consent && within(&l.valid_from, l.valid_to.as_deref()));
        let public = terms.public_expense.first().filter(|p| within(&p.valid_from, p.valid_to.as_deref()));
        let key = (held.card.insurer, held.card.number.clone(), held.branch);
        let this = self.timeline.get(&key).expect("a case is about a registered coverage");
        let others: Vec<&Registered> =
            self.coverages_of[&person.reference].iter().filter(|k| **k != key).map(|k| &self.timeline[k]).collect();
        let covered = this.covers(on);
        let late = this.late_elderly;
        let mut pending = Vec::new();
        if this.lost_on.is_some_and(|lost| lost > on) {
            pending.push("loss".to_string());
        }
        // The loss on the 75th birthday by law, announced like the copay changes, and stated
        // after the birthday while the insurer has not registered it.
        let by_law = rules::seventy_five(person.birth);
        if !late
            && by_law > this.acquired
            && this.lost_on.is_none_or(|lost| lost > by_law)
            && (by_law <= on || by_law.to_days() - on.to_days() <= rules::NOTICE_DAYS)
        {
            pending.push("loss".to_string());
        }
        if this.changes.iter().any(|c| *c > on && *c > this.acquired) {
            pending.push("terms_change".to_string());
        }
        if others.iter().any(|o| o.acquired > on) {
            pending.push("newer_coverage".to_string());
        }
        if covered {
            let now = rules::copay_percent(person.birth, on, income, late);
            let boundaries = [rules::school_entry(person.birth), rules::seventy_start(person.birth), rules::seventy_five(person.birth)];
            let changes = boundaries.into_iter().filter(|b| this.end().is_none_or(|end| *b < end)).any(|b| {
                b > on && b.to_days() - on.to_days() <= rules::NOTICE_DAYS && rules::copay_percent(person.birth, b, income, late) != now
            });
            if changes {
                pending.push("copay_change".to_string());
            }
        }
        let newer = (validity == "3")
            .then(|| others.iter().filter(|o| o.covers(on)).max_by_key(|o| o.acquired).map(|o| o.insurer_number.clone()))
            .flatten();
        Expectation {
            validity: validity.into(),
            notice: notice.map(str::to_string),
            copay_ratio_percent: covered.then(|| rules::copay_percent(person.birth, on, income, late)),
            limit_category: limit.map(|l| l.category.clone()),
            newer_insurer_number: newer,
            pending,
            public_payer: public.map(|p| p.payer_number.clone()),
            name: person.name_cp932.as_ref().map(|_| person.name.clone()),
            name_shift_jis: person.name_cp932.clone(),
            insurer_number: None,
            document_worth: None,
        }
    }

    /// Truth cases for an ordinary, currently valid coverage.
    fn ordinary_cases(&mut self, held: &Held, person: &Person, terms: &Terms, twins: bool) -> Result<(), SynthError> {
        let today = self.today;
        // Every rare name is a case (no draw from the generator, so the population stays as
        // it was for a seed).
        if let Some(cp932) = &person.name_cp932 {
            let expect = self.valid_expectation(held, person, terms, person.income, today, false);
            debug_assert_eq!(expect.name_shift_jis.as_ref(), Some(cp932));
            self.case("name_as_written", self.request(held, person, today, false), expect)?;
        }
        // Every member of a 不詳 household is a case: billed as 不詳 today, asked again by
        // attributes, which must find this coverage (no draw from the generator either).
        if person.kana.starts_with(names::UNKNOWN_FAMILY.1) && self.room("unknown_claim") {
            let expect = Expectation {
                insurer_number: Some(self.insurers[held.card.insurer].number.as_str().to_string()),
                ..self.valid_expectation(held, person, terms, person.income, today, false)
            };
            let attributes = VerifyAttributesRequest {
                institution_code: None,
                name_kana: Some(person.kana.clone()),
                name: Some(person.name.clone()),
                birth_date: person.birth.to_string(),
                sex: person.sex.code().to_string(),
                date_of_care: today.to_string(),
            };
            self.case_with("unknown_claim", self.request(held, person, today, false), expect, Some(attributes))?;
        }
        // Every 後期高齢者 shows the 資格確認書 its insurer registered: what it is worth today
        // follows from its validity (rules::late_elderly_certificate), no draw either.
        if let (Family::Kouki, Some(certificate)) = (held.card.family, &terms.qualification_certificate)
            && self.room("late_elderly_certificate")
        {
            let mut request = self.request(held, person, today, false);
            request.document = Some("qualification_certificate".into());
            let expect = Expectation {
                document_worth: Some(rules::certificate_worth(&certificate.valid_to, today).to_string()),
                ..self.valid_expectation(held, person, terms, person.income, today, false)
            };
            self.case("late_elderly_certificate", request, expect)?;
        }
        let sample = self.rng.below(VALID_SAMPLE_EVERY) == 0;
        if !sample && !twins {
            return Ok(());
        }
        let consent = self.rng.chance(500);
        let expect = self.valid_expectation(held, person, terms, person.income, today, consent);
        if twins {
            let mut request = self.request(held, person, today, consent);
            request.branch = None;
            let expect = Expectation { validity: "5".into(), notice: Some("SEVERAL_MATCHES".into()), ..Expectation::default() };
            self.case("twins_without_branch", request, expect)?;
            return self.case(
                "twins_with_branch",
                self.request(held, person, today, consent),
                self.valid_expectation(held, person, terms, person.income, today, consent),
            );
        }
        if expect.limit_category.is_some() {
            self.case("limit_with_consent", self.request(held, person, today, true), expect.clone())?;
            let mut without = expect.clone();
            without.limit_category = None;
            self.case("limit_without_consent", self.request(held, person, today, false), without)?;
        }
        if expect.public_payer.is_some() {
            self.case("public_expense", self.request(held, person, today, consent), expect.clone())?;
        }
        match self.rng.below(6) {
            0 => {
                let mut request = self.request(held, person, today, consent);
                request.branch = None;
                self.case("valid_without_branch", request, expect)
            }
            1 => {
                let mut request = self.request(held, person, today, consent);
                request.number = full_width(&request.number);
                request.symbol = request.symbol.map(|s| full_width(&s));
                request.branch = request.branch.map(|b| full_width(&b));
                if request.insurer_number.len() == 6 {
                    request.insurer_number = format!("  {}", request.insurer_number);
                }
                self.case("valid_full_width_or_padded", request, expect)
            }
            2 => {
                let mut request = self.request(held, person, today, consent);
                request.birth_date = person.birth.add_days(1).to_string();
                let expect = Expectation { validity: "4".into(), notice: Some("BIRTH_DATE_MISMATCH".into()), ..Expectation::default() };
                self.case("wrong_birth_date", request, expect)
            }
            3 => {
                let mut request = self.request(held, person, today, consent);
                // Serial numbers never reach this length, so no coverage carries it.
                request.number = format!("{}0000000", request.number);
                let expect = Expectation { validity: "4".into(), notice: Some("NO_SUCH_COVERAGE".into()), ..Expectation::default() };
                self.case("unknown_number", request, expect)
            }
            _ => {
                // One ordinary person in seven of these is also cared for at home (訪問診療): the
                // demo checks their card at home with a 居宅同意取得型 consent and re-confirms
                // without the card (no draw: by the case count, so the world stays the same).
                if self.summary.truth_cases.is_multiple_of(7) && self.room("home_visit_patient") {
                    let request = self.request(held, person, today, consent);
                    self.case("home_visit_patient", request, expect.clone())?;
                }
                // One in three names the paper the numbers were read from (no draw: by the
                // case count), and the answer must say what it is worth today.
                let mut request = self.request(held, person, today, consent);
                let mut expect = expect;
                let documents = [None, Some("qualification_certificate"), Some("qualification_notice"), Some("insurance_card")];
                if let Some(document) = documents[(self.summary.truth_cases % 4) as usize] {
                    let regional = matches!(held.card.family, Family::Kokuho | Family::Kouki);
                    // A 後期高齢者 shows the 資格確認書 the insurer registered (see
                    // rules::late_elderly_certificate): most of them ended on 2026-07-31.
                    let document = if held.card.family == Family::Kouki { "qualification_certificate" } else { document };
                    request.document = Some(document.to_string());
                    let worth = match (&terms.qualification_certificate, document) {
                        (Some(c), "qualification_certificate") => rules::certificate_worth(&c.valid_to, today),
                        _ => rules::document_worth(document, today, regional),
                    };
                    expect.document_worth = Some(worth.to_string());
                }
                self.case("valid", request, expect)
            }
        }
    }

    fn household(&mut self) -> Result<u64, SynthError> {
        let draw = self.rng.below(100);
        let pref = 1 + self.rng.below(47) as u8;
        let mut family_name = *self.rng.pick(names::FAMILY);
        if self.summary.households % names::RARE_EVERY == names::RARE_EVERY - 1 {
            let (written, _, kana) = names::RARE_FAMILY[(self.summary.households / names::RARE_EVERY) as usize % names::RARE_FAMILY.len()];
            family_name = (written, kana);
        }
        if self.summary.households % names::UNKNOWN_EVERY == names::UNKNOWN_EVERY - 1 {
            family_name = names::UNKNOWN_FAMILY;
        }
        self.summary.households += 1;
        if draw < 16 {
            self.elderly_household(pref, family_name)
        } else if draw < 30 {
            self.young_old_household(pref, family_name)
        } else {
            self.working_household(pref, family_name, draw < 52)
        }
    }

    /// 75 and over: each person holds a 後期高齢 coverage of their own.
    fn elderly_household(&mut self, pref: u8, family_name: (&str, &str)) -> Result<u64, SynthError> {
        let members = if self.rng.chance(400) { 2 } else { 1 };
        let insurer = self.kouki_by_prefecture[pref as usize - 1];
        for i in 0..members {
            let age = 75 + self.rng.below(26) as u16;
            let mut birth = self.birth_for_age(age);
            // An age in days can fall a day short of the birthday: 75 and over means turned 75.
            while rules::seventy_five(birth) > self.today {
                birth = birth.add_days(-1);
            }
            let sex = if i == 0 { Sex::Male } else { Sex::Female };
            let person = self.person(birth, sex, family_name)?;
            let start = rules::seventy_five(birth).max(d(2008, 4, 1));
            let card = self.new_card(Family::Kouki, insurer);
            let held = Held { card, branch: 0 };
            // Turned 75 within the last three years: the earlier 国保 coverage ended that day.
            let turned_recently = start > self.today.add_days(-3 * 365) && start > d(2008, 4, 1);
            let mut previous: Option<(Held, Terms)> = None;
            if turned_recently {
                let kokuho = self.pick_insurer(Family::Kokuho);
                let old = Held { card: self.new_card(Family::Kokuho, kokuho), branch: 0 };
                let acquired = start.add_days(-365 * 20).max(birth.add_years(60));
                let (_, old_terms) = self.acquire(&old.card, 0, &person, "1", &person.name, pref, acquired, 3)?;
                let notified = self.notified(start, -20);
                self.lose(&old.card, 0, &person, start, "03", notified)?;
                previous = Some((old, old_terms));
            }
            let lag = self.rng.between(0, 3);
            let notified_early = start > self.today.add_days(-30);
            let (_, terms) =
                self.acquire(&held.card, 0, &person, "1", &person.name, pref, start, if notified_early { -10 } else { lag })?;
            // A few have died this year: the coverage is lost with reason 01.
            if self.rng.chance(5) {
                let died = self.today.add_days(-self.rng.between(5, 300)).max(start);
                let notified = self.notified(died, 3);
                self.lose(&held.card, 0, &person, died.add_days(1), "01", notified)?;
                let expect = self.truth_of(&held, &person, &terms, person.income, self.today, false, "2", Some("COVERAGE_LOST"));
                self.case("died", self.request(&held, &person, self.today, false), expect)?;
                continue;
            }
            if let Some((old, old_terms)) = previous {
                let today = self.today;
                let expect = self.truth_of(&old, &person, &old_terms, person.income, today, false, "3", Some("NEWER_COVERAGE"));
                self.case("turned_75_old_card", self.request(&old, &person, today, false), expect)?;
                let before = start.add_days(-1);
                let expect = self.truth_of(&old, &person, &old_terms, person.income, before, false, "1", None);
                self.case("turned_75_old_card_before", self.request(&old, &person, before, false), expect)?;
            }
            self.income_change(&held, &person, &terms, start)?;
            self.ordinary_cases(&held, &person, &terms, false)?;
        }
        Ok(members)
    }

    /// A yearly income reassessment from 1 August for some people of 70 and over, and an
    /// announced change next month for a few.
    fn income_change(&mut self, held: &Held, person: &Person, terms: &Terms, acquired: Date) -> Result<(), SynthError> {
        let august = if self.today.month() >= 8 { d(self.today.year(), 8, 1) } else { d(self.today.year() - 1, 8, 1) };
        let acquired_before = acquired <= august.add_days(-365);
        if person.birth.age_on(august) >= 71 && acquired_before && self.rng.chance(30) && self.room("income_changed") {
            let previous = if person.income == IncomeClass::ActiveHigh { IncomeClass::General } else { IncomeClass::ActiveHigh };
            // The history: the old class first (as an earlier change), the current class from August.
            let notified = self.notified(august, 4);
            let notified_before = self.notified(august.add_days(-365), 4);
            self.change_income(&held.card, held.branch, person, august.add_days(-365), terms, previous, notified_before)?;
            self.change_income(&held.card, held.branch, person, august, terms, person.income, notified)?;
            let before = august.add_days(-1);
            let expect_before = self.truth_of(held, person, terms, previous, before, false, "1", None);
            self.case("income_changed_before", self.request(held, person, before, false), expect_before)?;
            let expect_now = self.valid_expectation(held, person, terms, person.income, self.today, false);
            self.case("income_changed", self.request(held, person, self.today, false), expect_now)?;
        } else if self.rng.chance(5) && self.room("terms_change_pending") {
            let next = self.today.first_of_next_month();
            let ahead = self.rng.between(1, 10);
            let notified = self.notified(self.today, -ahead);
            self.change_income(&held.card, held.branch, person, next, terms, person.income, notified)?;
            let expect = self.valid_expectation(held, person, terms, person.income, self.today, false);
            self.case("terms_change_pending", self.request(held, person, self.today, false), expect)?;
        }
        Ok(())
    }

    /// 65–74 in 国保, one card per household with a branch per person; some turn 75 soon.
    fn young_old_household(&mut self, pref: u8, family_name: (&str, &str)) -> Result<u64, SynthError> {
        let members = if self.rng.chance(600) { 2 } else { 1 };
        let insurer = self.pick_insurer(Family::Kokuho);
        let card = self.new_card(Family::Kokuho, insurer);
        let mut head_name = String::new();
        for i in 0..members {
            let age = 65 + self.rng.below(10) as u16;
            let birth = self.birth_for_age(age);
            let sex = if i == 0 { Sex::Male } else { Sex::Female };
            let person = self.person(birth, sex, family_name)?;
            if i == 0 {
                head_name = person.name.clone();
            }
            let held = Held { card: card.clone(), branch: i as u8 };
            let acquired = birth.add_years(60).min(self.today.add_days(-400));
            let (_, terms) = self.acquire(&held.card, held.branch, &person, "1", &head_name, pref, acquired, 4)?;
            let birthday_75 = rules::seventy_five(birth);
            let seventy = rules::seventy_start(birth);
            if birthday_75 > self.today && birthday_75 <= self.today.add_days(60) {
                // 後期高齢 from the 75th birthday, known and notified in advance.
                let kouki = self.kouki_by_prefecture[pref as usize - 1];
                let new = Held { card: self.new_card(Family::Kouki, kouki), branch: 0 };
                let ahead = self.rng.between(1, 20);
                let notice = self.notified(self.today, -ahead);
                self.lose(&held.card, held.branch, &person, birthday_75, "03", notice.clone())?;
                let (_, new_terms) = self.acquire(
                    &new.card,
                    0,
                    &person,
                    "1",
                    &person.name,
                    pref,
                    birthday_75,
                    (self.today.to_days() - birthday_75.to_days()) - 3,
                )?;
                let today = self.today;
                let expect = self.truth_of(&held, &person, &terms, person.income, today, false, "1", None);
                self.case("turning_75_today", self.request(&held, &person, today, false), expect)?;
                let expect = self.truth_of(&held, &person, &terms, person.income, birthday_75, false, "3", Some("NEWER_COVERAGE"));
                self.case("turning_75_on_birthday", self.request(&held, &person, birthday_75, false), expect)?;
                let expect = self.valid_expectation(&new, &person, &new_terms, person.income, birthday_75, false);
                self.case("turning_75_new_card", self.request(&new, &person, birthday_75, false), expect)?;
                continue;
            }
            if seventy > self.today && seventy <= self.today.add_days(60) {
                // The copay change is announced, unless 現役並み income keeps 3割.
                let expect = self.valid_expectation(&held, &person, &terms, person.income, self.today, false);
                self.case("turning_70_today", self.request(&held, &person, self.today, false), expect)?;
                let expect = self.valid_expectation(&held, &person, &terms, person.income, seventy, false);
                self.case("turning_70_after", self.request(&held, &person, seventy, false), expect)?;
                continue;
            }
            self.income_change(&held, &person, &terms, acquired)?;
            self.ordinary_cases(&held, &person, &terms, false)?;
        }
        Ok(members)
    }

    /// Under 65: an employee household (協会けんぽ, 健保組合, 共済) or a 国保 household, some of
    /// whom changed jobs this year.
    fn working_household(&mut self, pref: u8, family_name: (&str, &str), kokuho: bool) -> Result<u64, SynthError> {
        let family = if kokuho {
            Family::Kokuho
        } else {
            *self.rng.pick(&[Family::Kyokai, Family::Kyokai, Family::Kyokai, Family::Kumiai, Family::Kumiai, Family::Kyosai])
        };
        let head_age = 22 + self.rng.below(43) as u16;
        let head_birth = self.birth_for_age(head_age);
        let head_sex = if self.rng.chance(700) { Sex::Male } else { Sex::Female };
        let mut people = vec![(self.person(head_birth, head_sex, family_name)?, "1")];
        if head_age >= 25 && self.rng.chance(600) {
            let age = (head_age as i64 + self.rng.between(-5, 5)).clamp(20, 64) as u16;
            let birth = self.birth_for_age(age);
            let sex = if head_sex == Sex::Male { Sex::Female } else { Sex::Male };
            people.push((self.person(birth, sex, family_name)?, "2"));
        }
        let children = if head_age >= 24 { self.rng.below(4) } else { 0 };
        for _ in 0..children {
            let age = self.rng.below(u64::from((head_age - 22).min(20)) + 1) as u16;
            let birth = self.birth_for_age(age);
            let sex = if self.rng.chance(500) { Sex::Male } else { Sex::Female };
            people.push((self.person(birth, sex, family_name)?, "2"));
            if age < 15 && self.rng.chance(15) {
                // Twins: same birth date, same numbers, different branches.
                let sex = if self.rng.chance(500) { Sex::Male } else { Sex::Female };
                people.push((self.person(birth, sex, family_name)?, "2"));
            }
        }
        let twins: Vec<bool> = people.iter().map(|(p, _)| people.iter().filter(|(q, _)| q.birth == p.birth).count() > 1).collect();
        let head_name = people[0].0.name.clone();
        let insurer = self.pick_insurer(family);
        let card = self.new_card(family, insurer);
        let join = self.today.add_days(-self.rng.between(30, 365 * 20)).max(head_birth.add_years(18));
        // Job change: the household's previous coverage ended on `change`, the new one starts
        // then. The insurers notify 0–10 days later, so recent changes may not be registered.
        let changed = !kokuho && self.rng.chance(60);
        let change = self.today.add_days(-self.rng.between(0, 120));
        let previous = if changed {
            let old_family = *self.rng.pick(&[Family::Kyokai, Family::Kumiai, Family::Kokuho]);
            let old_insurer = self.pick_insurer(old_family);
            Some(self.new_card(old_family, old_insurer))
        } else {
            None
        };
        // One notification per household: its members (twins among them) are registered together.
        let lose_lag = self.rng.between(0, 10);
        let acquire_lag = self.rng.between(0, 10);
        for (branch, ((person, relationship), twin)) in people.iter().zip(&twins).enumerate() {
            let branch = branch as u8;
            let held = Held { card: card.clone(), branch };
            let relationship = if family == Family::Kokuho { "1" } else { relationship };
            if let Some(old_card) = previous.as_ref().filter(|_| person.birth < change) {
                let old = Held { card: old_card.clone(), branch };
                let old_relationship = if old_card.family == Family::Kokuho { "1" } else { relationship };
                let since = join.min(change.add_days(-30)).max(person.birth);
                let (_, old_terms) = self.acquire(&old.card, branch, person, old_relationship, &head_name, pref, since, 2)?;
                let notified = self.notified(change, lose_lag);
                let loss_known = self.lose(&old.card, branch, person, change, "03", notified)?;
                let starts = change.max(person.birth);
                let (new_known, terms) = self.acquire(&held.card, branch, person, relationship, &head_name, pref, starts, acquire_lag)?;
                let (validity, notice) = match (loss_known, new_known) {
                    (true, true) => ("3", Some("NEWER_COVERAGE")),
                    (true, false) => ("2", Some("COVERAGE_LOST")),
                    // The register has not heard of the loss yet: the old card still answers valid.
                    (false, _) => ("1", None),
                };
                let today = self.today;
                let expect = if self.timeline.contains_key(&(old.card.insurer, old.card.number.clone(), branch)) {
                    self.truth_of(&old, person, &old_terms, person.income, today, false, validity, notice)
                } else {
                    // Born a day or two ago: not registered on the old card either.
                    Expectation { validity: "4".into(), notice: Some("NO_SUCH_COVERAGE".into()), ..Expectation::default() }
                };
                let category = if loss_known && new_known { "job_change_old_card" } else { "job_change_old_card_unregistered" };
                self.case(category, self.request(&old, person, self.today, false), expect)?;
                if new_known {
                    let expect = self.valid_expectation(&held, person, &terms, person.income, self.today, false);
                    self.case("job_change_new_card", self.request(&held, person, self.today, false), expect)?;
                    if starts > person.birth {
                        let before = starts.add_days(-1);
                        let expect =
                            self.truth_of(&held, person, &terms, person.income, before, false, "2", Some("COVERAGE_NOT_YET_STARTED"));
                        self.case("job_change_new_card_before_start", self.request(&held, person, before, false), expect)?;
                    }
                } else {
                    let expect = Expectation { validity: "4".into(), notice: Some("NO_SUCH_COVERAGE".into()), ..Expectation::default() };
                    self.case("late_registration_new_card", self.request(&held, person, self.today, false), expect)?;
                }
                continue;
            }
            let acquired = join.max(person.birth);
            // Newborns and recent joiners are notified 0–10 days late, like everyone.
            let (known, terms) = self.acquire(&held.card, branch, person, relationship, &head_name, pref, acquired, acquire_lag)?;
            if !known {
                let expect = Expectation { validity: "4".into(), notice: Some("NO_SUCH_COVERAGE".into()), ..Expectation::default() };
                self.case("late_registration_new_card", self.request(&held, person, self.today, false), expect)?;
                continue;
            }
            let entry = rules::school_entry(person.birth);
            if person.birth.age_on(self.today) < 8 && entry.add_days(-1) >= acquired && self.room("preschool_boundary") {
                // 2割 the day before school, 3割 from the first day (the rules written out).
                let before = self.valid_expectation(&held, person, &terms, person.income, entry.add_days(-1), false);
                debug_assert_eq!(before.copay_ratio_percent, Some(20));
                self.case("preschool_boundary", self.request(&held, person, entry.add_days(-1), false), before)?;
                let after = self.valid_expectation(&held, person, &terms, person.income, entry, false);
                self.case("preschool_boundary", self.request(&held, person, entry, false), after)?;
            }
            self.ordinary_cases(&held, person, &terms, *twin)?;
        }
        Ok(people.len() as u64)
    }

    /// The 公費 payers' recipients, among the persons the register will know by today (their
    /// birth date is what a by-numbers question is checked against), in a fixed order.
    fn subsidies(&mut self, out: &Path) -> Result<(), SynthError> {
        let mut events = Writer::create(out.join(subsidy::SUBSIDY_FILE))?;
        let mut truth = Writer::create(out.join(subsidy::SUBSIDY_TRUTH_FILE))?;
        let mut welfare = Writer::create(out.join(subsidy::WELFARE_TRUTH_FILE))?;
        let mut known: Vec<(String, Date)> = self
            .coverages_of
            .iter()
            .filter_map(|(reference, held)| held.first().and_then(|key| self.timeline.get(key)).map(|c| (reference.clone(), c.birth)))
            .collect();
        known.sort();
        let mut payers = subsidy::Payers::new();
        for (reference, birth) in &known {
            let prefecture = 1 + self.rng.below(47) as u8;
            let resident = subsidy::Resident { reference, birth: *birth, prefecture };
            let outcome = payers.person(&mut self.rng, &resident, self.today);
            for event in &outcome.events {
                events.line(event)?;
                self.summary.subsidy_events += 1;
            }
            for case in outcome.cases {
                let count = self.summary.cases_by_category.entry(case.category.clone()).or_default();
                if *count < CASES_PER_CATEGORY_MAX {
                    *count += 1;
                    self.summary.truth_cases += 1;
                    truth.line(&case)?;
                }
            }
            // Every 医療扶助 case is kept: a month's answer lists them all, and the check compares
            // the whole list.
            for case in outcome.welfare {
                *self.summary.cases_by_category.entry(case.category.clone()).or_default() += 1;
                self.summary.truth_cases += 1;
                welfare.line(&case)?;
            }
        }
        // 生活保護 recipients no insurer registers, one in five hundred persons (at least six:
        // each clinic two with a ticket and one without), after everyone else so that the rest
        // of the world stays as it was.
        for index in 0..(self.summary.persons / 500).max(6) {
            let mut outcome = subsidy::Outcome::default();
            payers.welfare_only(&mut self.rng, self.seed, index, self.today, &mut outcome);
            for event in &outcome.events {
                events.line(event)?;
                self.summary.subsidy_events += 1;
            }
            for case in outcome.welfare {
                *self.summary.cases_by_category.entry(case.category.clone()).or_default() += 1;
                self.summary.truth_cases += 1;
                welfare.line(&case)?;
            }
        }
        events.finish()?;
        welfare.finish()?;
        truth.finish()
    }

    fn finish(mut self, out: &Path) -> Result<SynthSummary, SynthError> {
        self.subsidies(out)?;
        self.summary.subsidy_files = vec![subsidy::SUBSIDY_FILE.to_string()];
        for (_, writer) in std::mem::take(&mut self.files) {
            writer.finish()?;
        }
        self.late.finish()?;
        self.truth.finish()?;
        self.medical.finish()?;
        let manifest = out.join("manifest.json");
        let text = serde_json::to_string_pretty(&self.summary).expect("plain data");
        fs::write(&manifest, text).map_err(|source| SynthError::Write { path: manifest, source })?;
        let insurers = out.join("insurers.tsv");
        let list: String = self.insurers.iter().map(|i| format!("{}\t{}\n", i.number, i.name)).collect();
        fs::write(&insurers, list).map_err(|source| SynthError::Write { path: insurers, source })?;
        Ok(self.summary)
    }
}

fn full_width(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_digit() { char::from_u32(c as u32 + 0xFEE0).unwrap_or(c) } else { c }).collect()
}

/// Generates the population, calling `progress(persons_done)` every few thousand persons.
pub fn generate(options: &SynthOptions, mut progress: impl FnMut(u64)) -> Result<SynthSummary, SynthError> {
    if options.persons == 0 {
        return Err(SynthError::NoPersons);
    }
    fs::create_dir_all(&options.out).map_err(|source| SynthError::Write { path: options.out.clone(), source })?;
    let mut generator = Generator::new(options)?;
    let mut done = 0u64;
    let mut reported = 0u64;
    while done < options.persons {
        done += generator.household()?;
        if done - reported >= 10_000 {
            progress(done);
            reported = done;
        }
    }
    progress(done);
    generator.summary.persons = done;
    generator.finish(&options.out)
}

/// Compares an answer with the expectation, both ways: what the truth expects must be there,
/// and what the truth does not expect must not be (a field the truth leaves empty is checked
/// to be empty, pending changes are compared as a set). The error says what differs. Used by
/// `onshi demo --check` and the end-to-end tests.
pub fn check_answer(answer: &onshi_api::verify::VerifyAnswer, expect: &Expectation) -> Result<(), String> {
    let mut problems = Vec::new();
    if answer.validity.code != expect.validity {
        problems.push(format!("validity {} (expected {})", answer.validity.code, expect.validity));
    }
    let notice = answer.notice.as_ref().map(|n| n.code.as_str());
    if notice != expect.notice.as_deref() {
        problems.push(format!("notice {notice:?} (expected {:?})", expect.notice));
    }
    let coverage = answer.coverage.as_ref();
    let copay = coverage.and_then(|c| c.copay_ratio_percent);
    if copay != expect.copay_ratio_percent {
        problems.push(format!("copay {copay:?} (expected {:?})", expect.copay_ratio_percent));
    }
    let limit = coverage.and_then(|c| c.limit.as_ref()).map(|l| l.category.code.clone());
    if limit != expect.limit_category {
        problems.push(format!("limit {limit:?} (expected {:?})", expect.limit_category));
    }
    let newer = answer.newer_coverage.as_ref().map(|c| c.insurer_number.clone());
    if newer != expect.newer_insurer_number {
        problems.push(format!("newer coverage {newer:?} (expected {:?})", expect.newer_insurer_number));
    }
    let mut pending: Vec<&str> = answer.pending.iter().map(|p| p.kind.as_str()).collect();
    pending.sort_unstable();
    pending.dedup();
    let mut wanted: Vec<&str> = expect.pending.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if pending != wanted {
        problems.push(format!("pending {pending:?} (expected {wanted:?})"));
    }
    let payers: Vec<&str> = coverage.map(|c| c.public_expense.iter().map(|p| p.payer_number.as_str()).collect()).unwrap_or_default();
    if payers != expect.public_payer.iter().map(String::as_str).collect::<Vec<_>>() {
        problems.push(format!("public expense {payers:?} (expected {:?})", expect.public_payer));
    }
    let worth = answer.document.as_ref().map(|d| d.worth.as_str());
    if worth != expect.document_worth.as_deref() {
        problems.push(format!("document {worth:?} (expected {:?})", expect.document_worth));
    }
    if let Some(insurer) = &expect.insurer_number {
        let got = coverage.map(|c| c.insurer_number.as_str());
        if got != Some(insurer.as_str()) {
            problems.push(format!("coverage of insurer {got:?} (expected {insurer})"));
        }
    }
    if let Some(name) = &expect.name {
        let got = coverage.map(|c| c.name.as_str());
        if got != Some(name.as_str()) {
            problems.push(format!("name {got:?} (expected {name:?} as the insurer wrote it)"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Reads a JSON Lines truth file, naming the file and line of what it cannot read.
fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// Reads the ground truth written by [`generate`].
pub fn read_truth(path: &Path) -> Result<Vec<TruthCase>, String> {
    read_lines(path)
}

/// Reads the by-numbers 公費 ground truth ([`subsidy::SUBSIDY_TRUTH_FILE`]).
pub fn read_subsidy_truth(path: &Path) -> Result<Vec<subsidy::SubsidyCase>, String> {
    read_lines(path)
}

/// Reads the 医療扶助 ground truth ([`subsidy::WELFARE_TRUTH_FILE`]).
pub fn read_welfare_truth(path: &Path) -> Result<Vec<subsidy::WelfareCase>, String> {
    read_lines(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, seed: u64) -> SynthOptions {
        SynthOptions { persons: 3_000, seed, today: d(2026, 11, 25), out: dir.to_path_buf() }
    }

    #[test]
    fn same_seed_same_files_and_every_event_is_valid() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let summary = generate(&options(a.path(), 7), |_| {}).unwrap();
        generate(&options(b.path(), 7), |_| {}).unwrap();
        let others = ["ground-truth.jsonl".to_string(), "late/late-events.jsonl".to_string(), MEDICAL_FILE.to_string()];
        for file in summary.event_files.iter().chain(&others) {
            assert_eq!(fs::read(a.path().join(file)).unwrap(), fs::read(b.path().join(file)).unwrap(), "{file} differs");
        }
        let medical = fs::read_to_string(a.path().join(MEDICAL_FILE)).unwrap();
        assert_eq!(medical.lines().count() as u64, summary.medical_records);
        let today = d(2026, 11, 25).yyyymmdd();
        let (mut claims, mut checkups) = (0, 0);
        for line in medical.lines() {
            match serde_json::from_str::<onshi_api::medical::MedicalRecord>(line).unwrap() {
                onshi_api::medical::MedicalRecord::Drug { drug, .. } => {
                    assert!(drug.arrived_on <= today && drug.dispensed_on <= drug.arrived_on, "{line}");
                    claims += usize::from(drug.source == "claim");
                }
                onshi_api::medical::MedicalRecord::Checkup { item, .. } => {
                    assert!(item.arrived_on <= today && item.examined_on < item.arrived_on, "{line}");
                    checkups += 1;
                }
            }
        }
        assert!(claims > 100 && checkups > 100, "both kinds occur: {claims} claim drugs, {checkups} checkup items");
        assert!(summary.persons >= 3_000 && summary.events > summary.persons);
        let text = fs::read_to_string(a.path().join("events/kyokai.jsonl")).unwrap();
        for line in text.lines() {
            let event: InsurerEvent = serde_json::from_str(line).unwrap();
            assert!(InsurerNumber::parse(&event.insurer_number).is_ok());
            assert!(!event.person_ref.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn a_different_seed_differs() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate(&options(a.path(), 1), |_| {}).unwrap();
        generate(&options(b.path(), 2), |_| {}).unwrap();
        assert_ne!(fs::read(a.path().join("ground-truth.jsonl")).unwrap(), fs::read(b.path().join("ground-truth.jsonl")).unwrap());
    }
}
