//! 照会番号: the clinic's own patient number registered against a coverage (`OQSsiimm01`, one
//! at a time; `OQSmuimm01/02`, in bulk, two phases), so that every later answer for that
//! coverage (`res/` and the `face/` file of a card check) carries it as `ReferenceNumber` and
//! the receipt computer opens the right chart without asking staff (OQS-2024.md §7–§9).
//!
//! The real system keeps the number on the center. Here it stays in the clinic's gateway:
//! the gateway writes every answer file the receipt computer reads, and the clinic's patient
//! numbers are no business of the center's.
//!
//! A number attached to the wrong person is worse than none: the receipt computer would file a
//! card result in another patient's chart. So the registration records who the coverage
//! belonged to (birth date and sex: from the receipt computer when it sends them, else from the
//! last answer the gateway gave for those numbers, else from the first answer after), and:
//! - a registration whose birth date or sex differs from the answer the gateway knows is
//!   refused (status 2) with what differs; a differing name is said but does not refuse (names
//!   change on marriage, and spellings differ by character set);
//! - a registration without 枝番 is refused unless it says whom it means (Birthdate, Sex1) or
//!   the numbers are a person's own (後期高齢者医療): the 記号・番号 name the whole family;
//! - a registration for another person under numbers and 枝番 already registered is refused;
//! - a later answer whose birth date or sex differs from the registration's does not carry the
//!   number, and says why (the numbers were given to someone else, or the 枝番 was left out).
//!
//! Only birth date and sex are kept with a registration, not the name: they are enough to tell
//! two people apart, and a registration lives as long as the clinic's patient does.

use onshi_api::verify::{Coverage, VerifyAnswer};
use onshi_domain::ids::{InsurerNumber, to_half_width};

use crate::request::{Header, RequestError};
use crate::xml::{Charset, Element, XmlWriter};

/// Longest 照会番号 (the interface allows 50 characters, [MYNA]).
pub const REFERENCE_CHARS_MAX: usize = 50;
/// Longest 記号 and 番号 (20 characters in the interface).
const CARD_FIELD_CHARS_MAX: usize = 20;

/// Codes the gateway puts in ProcessingResultCode for a registration or an answer.
pub const CODE_REFUSED: &str = "ONSHI-GW-REFERENCE-REFUSED";
pub const CODE_NAME_DIFFERS: &str = "ONSHI-GW-REFERENCE-NAME";
pub const CODE_WITHHELD: &str = "ONSHI-GW-REFERENCE-WITHHELD";

/// One `ReferenceNumberRegistrationInfo`, as written (echoed back as it came).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    pub reference_number: String,
    pub insurer_number: String,
    pub symbol: Option<String>,
    pub number: String,
    pub branch: Option<String>,
    /// What the receipt computer knows of the patient, when it sends it (onshi reads
    /// `Name`, `Birthdate` and `Sex1` here, the answer's own element names; public clients
    /// send none of them).
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
}

/// Reads one `ReferenceNumberRegistrationInfo`.
pub fn read_registration(info: &Element) -> Result<Registration, RequestError> {
    let bounded = |name: &'static str, max: usize| -> Result<Option<String>, RequestError> {
        match info.value(name) {
            Some(value) if value.chars().count() > max => {
                Err(RequestError::Invalid { element: name, detail: format!("is longer than {max} characters") })
            }
            value => Ok(value.map(str::to_string)),
        }
    };
    let reference_number = bounded("ReferenceNumber", REFERENCE_CHARS_MAX)?.ok_or(RequestError::Missing("ReferenceNumber"))?;
    let number =
        bounded("InsuredIdentificationNumber", CARD_FIELD_CHARS_MAX)?.ok_or(RequestError::Missing("InsuredIdentificationNumber"))?;
    let symbol = bounded("InsuredCardSymbol", CARD_FIELD_CHARS_MAX)?;
    // A My Number is refused wherever it is typed, the clinic's own patient number included.
    if let Some(field) = crate::request::holding_my_number(&[
        ("ReferenceNumber", Some(&reference_number)),
        ("InsuredIdentificationNumber", Some(&number)),
        ("InsuredCardSymbol", symbol.as_deref()),
    ]) {
        return Err(RequestError::MyNumber(field));
    }
    // Space-padded to 8 by public clients (「ゼロ埋めではなくスペース埋め」): kept as written.
    let insurer_number = info
        .child("InsurerNumber")
        .map(|e| e.text.trim_end().to_string())
        .filter(|t| !t.trim().is_empty())
        .ok_or(RequestError::Missing("InsurerNumber"))?;
    InsurerNumber::parse(&insurer_number).map_err(|e| RequestError::Invalid { element: "InsurerNumber", detail: e.to_string() })?;
    let branch = bounded("InsuredBranchNumber", 2)?;
    if let Some(branch) = &branch
        && !to_half_width(branch).bytes().all(|b| b.is_ascii_digit())
    {
        return Err(RequestError::Invalid { element: "InsuredBranchNumber", detail: format!("is {branch:?}; write the 2-digit 枝番") });
    }
    let birth_date = info.value("Birthdate").map(str::to_string);
    if let Some(date) = &birth_date
        && onshi_domain::date::Date::parse_yyyymmdd(date).is_err()
    {
        return Err(RequestError::Invalid { element: "Birthdate", detail: format!("is {date:?}; write the date as YYYYMMDD") });
    }
    let sex = info.value("Sex1").map(str::to_string);
    if let Some(sex) = &sex
        && !matches!(sex.as_str(), "1" | "2")
    {
        return Err(RequestError::Invalid { element: "Sex1", detail: format!("is {sex:?}; write 1 (男) or 2 (女)") });
    }
    Ok(Registration { reference_number, insurer_number, symbol, number, branch, name: bounded("Name", 100)?, birth_date, sex })
}

/// The coverage's numbers without the 枝番, as the gateway compares them (width, padding and
/// leading zeros of the insurer number aside): the start of the answer cache's key
/// (`check::patient_key`), so that `Store::cached_under` finds a patient's answers by it.
pub fn numbers_key(insurer_number: &str, symbol: Option<&str>, number: &str) -> String {
    format!(
        "{}|{}|{}",
        to_half_width(insurer_number.trim()).trim_start_matches('0'),
        symbol.map(to_half_width).unwrap_or_default().trim(),
        to_half_width(number).trim()
    )
}

/// The 枝番 as two digits, or empty for none.
pub fn branch_key(branch: Option<&str>) -> String {
    branch.map(|b| format!("{:0>2}", to_half_width(b.trim()))).unwrap_or_default()
}

/// A registration as stored: the number, and who the coverage belonged to when it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub numbers: String,
    /// Two digits, or empty when registered without 枝番.
    pub branch: String,
    pub reference_number: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
}

/// A person as an answer shows them: birth date, sex, name, 枝番.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub birth_date: String,
    pub sex: String,
    pub name: String,
    pub branch: String,
}

impl Shown {
    pub fn of(coverage: &Coverage) -> Shown {
        Shown {
            birth_date: coverage.birth_date.clone(),
            sex: coverage.sex.code.clone(),
            name: coverage.name.clone(),
            branch: branch_key(Some(&coverage.branch)),
        }
    }
}

/// The people the answers in `cached` show under these numbers (and this 枝番, when given),
/// newest answer first, each once.
pub fn people_in(cached: &[VerifyAnswer], registration: &Registration) -> Vec<Shown> {
    let numbers = numbers_key(&registration.insurer_number, registration.symbol.as_deref(), &registration.number);
    let branch = registration.branch.as_deref().map(|b| branch_key(Some(b)));
    let mut people: Vec<Shown> = Vec::new();
    for answer in cached {
        for coverage in answer.coverage.iter().chain(answer.newer_coverage.iter()) {
            if numbers_key(&coverage.insurer_number, coverage.symbol.as_deref(), &coverage.number) != numbers {
                continue;
            }
            let shown = Shown::of(coverage);
            if branch.as_ref().is_some_and(|b| *b != shown.branch) {
                continue;
            }
            if !people.iter().any(|p| p.birth_date == shown.birth_date && p.sex == shown.sex && p.branch == shown.branch) {
                people.push(shown);
            }
        }
    }
    people
}

/// Names compared as people write them: spaces and character width aside.
fn same_name(a: &str, b: &str) -> bool {
    let plain = |s: &str| to_half_width(s).chars().filter(|c| !c.is_whitespace()).collect::<String>();
    plain(a) == plain(b)
}

/// What a registration comes to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// Registered; with a note when the receipt computer's name differs from the answer's.
    Registered { birth_date: Option<String>, sex: Option<String>, note: Option<String> },
    /// Not registered, with why (for staff).
    Refused { message: String },
}

/// Decides a registration from what the receipt computer sent and the people the gateway's
/// answers show under those numbers (and its 枝番, when given).
///
/// Without a 枝番 the 記号・番号 name a whole family, so the receipt computer must say whom it
/// means (Birthdate and Sex1), except for 後期高齢者医療, whose numbers are each person's own.
pub fn decide(registration: &Registration, people: &[Shown]) -> Verdict {
    let refuse = |message: &str| Verdict::Refused { message: message.to_string() };
    let own_numbers =
        InsurerNumber::parse(&registration.insurer_number).is_ok_and(|n| n.kind() == onshi_domain::ids::InsurerKind::LateElderly);
    let facts_given = registration.birth_date.is_some() && registration.sex.is_some();
    if registration.branch.is_none() && !own_numbers && !facts_given {
        return refuse(
            "枝番がありません。家族で同じ記号・番号を使う保険では、枝番（2桁）を付けて登録し直してください（照会番号が別の方のカルテに付かないように）。",
        );
    }
    let mut distinct: Vec<&Shown> = Vec::new();
    for p in people {
        if !distinct.iter().any(|s| s.birth_date == p.birth_date && s.sex == p.sex) {
            distinct.push(p);
        }
    }
    // Whom the receipt computer means: the person with its birth date and sex, when it says.
    let meant: Vec<&Shown> = distinct
        .iter()
        .copied()
        .filter(|p| registration.birth_date.as_ref().is_none_or(|b| *b == p.birth_date))
        .filter(|p| registration.sex.as_ref().is_none_or(|s| *s == p.sex))
        .collect();
    let known = match (distinct.len(), meant.as_slice()) {
        // Nobody seen yet: what the receipt computer says stands (the first answer settles it
        // when it says nothing, which only a 枝番 or a 後期 number allows).
        (0, _) => {
            return Verdict::Registered { birth_date: registration.birth_date.clone(), sex: registration.sex.clone(), note: None };
        }
        (_, [one]) => *one,
        (_, []) => {
            return refuse(
                "レセコンの生年月日・性別が、この記号・番号の資格情報の方と異なります。別の方の保険証の番号ではないか確かめてから登録し直してください。",
            );
        }
        (_, several) => {
            return Verdict::Refused {
                message: format!(
                    "この記号・番号には{}人の方がいます。枝番を付けて登録し直してください（照会番号が別の方のカルテに付かないように）。",
                    several.len()
                ),
            };
        }
    };
    let note = registration.name.as_ref().filter(|name| !same_name(name, &known.name)).map(|_| {
        "レセコンの氏名が資格情報の氏名と異なります（改姓や文字の違いの可能性）。登録はしました。氏名を確かめてください。".to_string()
    });
    Verdict::Registered { birth_date: Some(known.birth_date.clone()), sex: Some(known.sex.clone()), note }
}

/// What an answer does with a registered number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judged {
    /// Written as `ReferenceNumber`.
    Carried(String),
    /// Not written: the person differs from the registration's; the note says so.
    Withheld { reference_number: String, note: String },
}

/// Whether an answer's coverage may carry a registration's number: the same birth date and sex
/// as when it was registered (when those are known).
pub fn judge(registered: &Registered, coverage: &Coverage) -> Judged {
    let shown = Shown::of(coverage);
    let mut differs = Vec::new();
    if registered.birth_date.as_ref().is_some_and(|b| *b != shown.birth_date) {
        differs.push("生年月日");
    }
    if registered.sex.as_ref().is_some_and(|s| *s != shown.sex) {
        differs.push("性別");
    }
    if differs.is_empty() {
        return Judged::Carried(registered.reference_number.clone());
    }
    Judged::Withheld {
        reference_number: registered.reference_number.clone(),
        note: format!(
            "照会番号 {} は登録時と{}が異なる方の資格のため付けていません。別の患者のカルテと取り違えていないか確かめ、照会番号を登録し直してください。",
            registered.reference_number,
            differs.join("・")
        ),
    }
}

/// The registrations that the coverages of one answer file may carry, looked up before it is
/// written.
#[derive(Clone, Debug, Default)]
pub struct Found(pub Vec<Registered>);

impl Found {
    pub fn none() -> Found {
        Found(Vec::new())
    }

    /// The registration for this coverage: for its 枝番, else one made without 枝番.
    pub fn for_coverage(&self, coverage: &Coverage) -> Option<Judged> {
        let numbers = numbers_key(&coverage.insurer_number, coverage.symbol.as_deref(), &coverage.number);
        let branch = branch_key(Some(&coverage.branch));
        let mine = |b: &str| self.0.iter().find(|r| r.numbers == numbers && r.branch == b);
        mine(&branch).or_else(|| mine("")).map(|r| judge(r, coverage))
    }

    /// What staff are told about numbers withheld from these coverages.
    pub fn notes(&self, coverages: &[&Coverage]) -> Vec<String> {
        coverages
            .iter()
            .filter_map(|c| match self.for_coverage(c) {
                Some(Judged::Withheld { note, .. }) => Some(note),
                _ => None,
            })
            .collect()
    }
}

/// Decides each registration against the answers the gateway has given under its numbers;
/// returns the units to answer with and the rows to store (one per registration made).
pub fn decide_all(store: &crate::store::Store, entries: &[Registration]) -> Result<(Vec<Unit>, Vec<Registered>), crate::store::StoreError> {
    let mut units = Vec::with_capacity(entries.len());
    let mut rows = Vec::new();
    for registration in entries {
        let numbers = numbers_key(&registration.insurer_number, registration.symbol.as_deref(), &registration.number);
        let cached: Vec<VerifyAnswer> =
            store.cached_under(&numbers)?.iter().filter_map(|text| serde_json::from_str::<VerifyAnswer>(text).ok()).collect();
        let branch = branch_key(registration.branch.as_deref());
        let mut verdict = decide(registration, &people_in(&cached, registration));
        // A registration for another person under the same numbers and 枝番 is not replaced
        // (renumbering the same patient is).
        if let Verdict::Registered { birth_date: Some(birth), sex: Some(sex), .. } = &verdict
            && let Some(earlier) = store.references_for(std::slice::from_ref(&numbers))?.into_iter().find(|r| r.branch == branch)
            && (earlier.birth_date.as_ref().is_some_and(|b| b != birth) || earlier.sex.as_ref().is_some_and(|s| s != sex))
        {
            verdict = Verdict::Refused {
                message: format!(
                    "この記号・番号・枝番には別の方の照会番号（{}）が登録されています。患者さんを取り違えていないか確かめてください。",
                    earlier.reference_number
                ),
            };
        }
        if let Verdict::Registered { birth_date, sex, .. } = &verdict {
            rows.push(Registered {
                numbers,
                branch,
                reference_number: registration.reference_number.clone(),
                birth_date: birth_date.clone(),
                sex: sex.clone(),
            });
        }
        // The name was only compared: a registration keeps no name.
        units.push(Unit { registration: Registration { name: None, ..registration.clone() }, verdict });
    }
    Ok((units, rows))
}

/// The registrations the coverages of an answer may carry. A registration made before anyone
/// was seen under its numbers takes the person this answer shows.
pub fn find(store: &crate::store::Store, coverages: &[&Coverage]) -> Result<Found, crate::store::StoreError> {
    if coverages.is_empty() {
        return Ok(Found::none());
    }
    let numbers: Vec<String> = coverages.iter().map(|c| numbers_key(&c.insurer_number, c.symbol.as_deref(), &c.number)).collect();
    let mut found = store.references_for(&numbers)?;
    for registered in found.iter_mut().filter(|r| r.birth_date.is_none() && r.sex.is_none()) {
        let mine = coverages.iter().find(|c| {
            numbers_key(&c.insurer_number, c.symbol.as_deref(), &c.number) == registered.numbers
                && (registered.branch.is_empty() || branch_key(Some(&c.branch)) == registered.branch)
        });
        if let Some(coverage) = mine {
            if !store.settle_reference(&registered.numbers, &registered.branch, &coverage.birth_date, &coverage.sex.code)? {
                // Another answer settled it first: its person stands.
                let again = store.references_for(std::slice::from_ref(&registered.numbers))?;
                if let Some(settled) = again.into_iter().find(|r| r.branch == registered.branch) {
                    *registered = settled;
                }
                continue;
            }
            registered.birth_date = Some(coverage.birth_date.clone());
            registered.sex = Some(coverage.sex.code.clone());
        }
    }
    Ok(Found(found))
}

/// The registrations for the coverages an outcome shows. A store that cannot be read costs the
/// 照会番号, not the answer: it is logged and the answer goes out without it.
pub fn for_outcome(store: &crate::store::Store, outcome: &crate::check::Outcome) -> Found {
    let coverages: Vec<&Coverage> =
        outcome.answer().map(|a| a.coverage.iter().chain(a.newer_coverage.iter()).collect()).unwrap_or_default();
    find(store, &coverages).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "照会番号 not looked up; the answer goes out without it");
        Found::none()
    })
}

/// The registrations for the coverages of several outcomes (a 一括照会's results).
pub fn for_outcomes<'a>(store: &crate::store::Store, outcomes: impl Iterator<Item = &'a crate::check::Outcome>) -> Found {
    let coverages: Vec<&Coverage> = outcomes.filter_map(|o| o.answer()).flat_map(|a| a.coverage.iter()).collect();
    find(store, &coverages).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "照会番号 not looked up; the answer goes out without it");
        Found::none()
    })
}

/// The result of one registration, as the answer files echo it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    pub registration: Registration,
    pub verdict: Verdict,
}

fn write_info(w: &mut XmlWriter, r: &Registration, bulk: bool) {
    w.open("ReferenceNumberRegistrationInfo");
    if bulk {
        // [MYNA]'s bulk parser reads them in this order.
        w.leaf("ReferenceNumber", &r.reference_number);
        w.leaf("InsurerNumber", &r.insurer_number);
        w.leaf("InsuredCardSymbol", r.symbol.as_deref().unwrap_or_default());
        w.leaf("InsuredIdentificationNumber", &r.number);
        w.leaf("InsuredBranchNumber", r.branch.as_deref().unwrap_or_default());
    } else {
        // The order of the real single answer (OQS-2024.md §7).
        w.leaf("InsurerNumber", &r.insurer_number);
        w.leaf("InsuredIdentificationNumber", &r.number);
        w.leaf("ReferenceNumber", &r.reference_number);
        w.opt("InsuredCardSymbol", r.symbol.as_deref());
        w.opt("InsuredBranchNumber", r.branch.as_deref());
    }
    w.close();
}

fn write_status(w: &mut XmlWriter, verdict: &Verdict) {
    match verdict {
        Verdict::Registered { note: None, .. } => {
            w.leaf("ProcessingResultStatus", "1");
        }
        Verdict::Registered { note: Some(note), .. } => {
            w.leaf("ProcessingResultStatus", "1");
            w.leaf("ProcessingResultCode", CODE_NAME_DIFFERS);
            w.leaf("ProcessingResultMessage", note);
        }
        Verdict::Refused { message } => {
            w.leaf("ProcessingResultStatus", "2");
            w.leaf("ProcessingResultCode", CODE_REFUSED);
            w.leaf("ProcessingResultMessage", message);
        }
    }
}

/// `OQSsiimm01res_`: one registration, answered at once.
pub fn single_answer(header: &Header, unit: &Unit, now: &str, institution_code: &str, charset: Charset) -> Vec<u8> {
    let mut w = XmlWriter::new(charset);
    w.open("XmlMsg").open("MessageHeader");
    w.leaf("ProcessExecutionTime", now);
    w.leaf("CharacterCodeIdentifier", charset.identifier());
    w.leaf("SegmentOfResult", "1");
    w.opt("ArbitraryFileIdentifier", header.arbitrary_file_identifier.as_deref());
    w.leaf("MedicalInstitutionCode", header.institution_code.as_deref().unwrap_or(institution_code));
    w.close().open("MessageBody");
    write_info(&mut w, &unit.registration, false);
    write_status(&mut w, &unit.verdict);
    w.finish()
}

/// `OQSmuimm02res_`: the registrations of a reception number (9 for one this gateway does not
/// know). `header` is the 01 request's, whose ArbitraryFileIdentifier [MYNA] expects echoed.
pub fn bulk_answer(
    header: Option<&Header>,
    reception_number: &str,
    units: Option<&[Unit]>,
    now: &str,
    institution_code: &str,
    charset: Charset,
) -> Vec<u8> {
    let mut w = XmlWriter::new(charset);
    w.open("XmlMsg").open("MessageHeader");
    w.leaf("ProcessExecutionTime", now);
    w.leaf("MedicalInstitutionCode", header.and_then(|h| h.institution_code.as_deref()).unwrap_or(institution_code));
    w.opt("ArbitraryFileIdentifier", header.and_then(|h| h.arbitrary_file_identifier.as_deref()));
    w.leaf("ReceptionNumber", reception_number);
    let Some(units) = units else {
        w.leaf("SegmentOfResult", "9");
        w.leaf("ErrorCode", "ONSHI-GW-RECEPTION-UNKNOWN");
        w.leaf("ErrorMessage", "この受付番号の照会番号登録はありません。OQSmuimm01req で登録し直してください。");
        w.leaf("CharacterCodeIdentifier", charset.identifier());
        return w.finish();
    };
    w.leaf("SegmentOfResult", "1");
    w.leaf("CharacterCodeIdentifier", charset.identifier());
    w.close().open("MessageBody");
    for unit in units {
        w.open("BulkRegistrationUnit");
        write_info(&mut w, &unit.registration, true);
        write_status(&mut w, &unit.verdict);
        w.close();
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(branch: &str, birth: &str, sex: &str, name: &str) -> Coverage {
        serde_json::from_value(serde_json::json!({
            "insurer_number": "06130488", "symbol": "12", "number": "345", "branch": branch,
            "card_classification": {"code": "01", "label": "x"}, "relationship": {"code": "1", "label": "本人"},
            "name": name, "name_kana": "ｼｹﾝ", "sex": {"code": sex, "label": "x"}, "birth_date": birth,
            "acquired_on": "20200401", "preschool": false, "elderly_recipient": false
        }))
        .unwrap()
    }

    fn answer(coverage: Coverage) -> VerifyAnswer {
        serde_json::from_value(serde_json::json!({
            "validity": {"code": "1", "label": "有効"}, "date_of_care": "20261204", "coverage": coverage,
            "pending": [], "answered_at": "20261204090000"
        }))
        .unwrap()
    }

    fn registration(branch: Option<&str>) -> Registration {
        Registration {
            reference_number: "24434".into(),
            insurer_number: "06130488".into(),
            symbol: Some("１２".into()),
            number: "345".into(),
            branch: branch.map(str::to_string),
            ..Registration::default()
        }
    }

    #[test]
    fn a_registration_takes_who_the_answers_showed_and_refuses_another_person() {
        let known = [answer(coverage("00", "19800101", "2", "試験　花子")), answer(coverage("01", "20100505", "1", "試験　一郎"))];
        // With 枝番 01: the child, whatever the family.
        let people = people_in(&known, &registration(Some("01")));
        assert_eq!(people.len(), 1);
        assert_eq!(
            decide(&registration(Some("01")), &people),
            Verdict::Registered { birth_date: Some("20100505".into()), sex: Some("1".into()), note: None }
        );
        // Without 枝番 the numbers name a family: refused unless the receipt computer says whom
        // it means, and then that person (the child here) is taken.
        let people = people_in(&known, &registration(None));
        assert!(matches!(decide(&registration(None), &people), Verdict::Refused { message } if message.contains("枝番")));
        let the_child = Registration { birth_date: Some("20100505".into()), sex: Some("1".into()), ..registration(None) };
        assert_eq!(
            decide(&the_child, &people_in(&known, &the_child)),
            Verdict::Registered { birth_date: Some("20100505".into()), sex: Some("1".into()), note: None }
        );
        // 後期高齢者医療 numbers are each person's own: no 枝番 needed.
        let kouki_number = InsurerNumber::with_check_digit("3913101").unwrap().as_str().to_string();
        let kouki = Registration { insurer_number: kouki_number, ..registration(None) };
        assert!(matches!(decide(&kouki, &[]), Verdict::Registered { birth_date: None, .. }));
        // The receipt computer's birth date differs from the answer's: refused, saying what.
        let with_birth = Registration { birth_date: Some("19800102".into()), ..registration(Some("00")) };
        let people = people_in(&known, &with_birth);
        assert!(matches!(decide(&with_birth, &people), Verdict::Refused { message } if message.contains("生年月日")));
        // Only the name differs (a space, full-width): the same; another name: said, registered.
        let same = Registration { name: Some("試験花子".into()), ..registration(Some("00")) };
        assert!(matches!(decide(&same, &people_in(&known, &same)), Verdict::Registered { note: None, .. }));
        let renamed = Registration { name: Some("山田　花子".into()), ..registration(Some("00")) };
        assert!(matches!(decide(&renamed, &people_in(&known, &renamed)), Verdict::Registered { note: Some(_), .. }));
        // Nobody known: the receipt computer's facts stand.
        let unknown = Registration { birth_date: Some("19990101".into()), sex: Some("2".into()), ..registration(None) };
        assert_eq!(decide(&unknown, &[]), Verdict::Registered { birth_date: Some("19990101".into()), sex: Some("2".into()), note: None });
    }

    #[test]
    fn an_answer_carries_the_number_only_for_the_person_registered() {
        let registered = Registered {
            numbers: numbers_key("06130488", Some("12"), "345"),
            branch: String::new(),
            reference_number: "24434".into(),
            birth_date: Some("19800101".into()),
            sex: Some("2".into()),
        };
        let found = Found(vec![registered]);
        assert_eq!(found.for_coverage(&coverage("00", "19800101", "2", "試験　花子")), Some(Judged::Carried("24434".into())));
        match found.for_coverage(&coverage("01", "20100505", "1", "試験　一郎")) {
            Some(Judged::Withheld { note, .. }) => assert!(note.contains("生年月日・性別"), "{note}"),
            other => panic!("{other:?}"),
        }
        let mut other_numbers = coverage("00", "19800101", "2", "x");
        other_numbers.number = "346".into();
        assert_eq!(found.for_coverage(&other_numbers), None);
    }
}
