//! The demo's card path: a card CA, virtual cards for a few people of the synthetic population
//! (with the attributes their insurer registered), a reader, the medical information, and the
//! scripted card checks of `onshi demo --check`.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use onshi_api::card::{CardAnswer, ConsentChoice, HomeCare, HomeCareKind, HomeListRequest, HomeReverify, VerifyCard};
use onshi_api::client::{CenterClient, ClientError};
use onshi_api::events::{EventKind, InsurerEvent};
use onshi_api::medical::{Drug, MedicalAnswer, MedicalQuery, MedicalRecord};
use onshi_api::subsidy::SubsidyEvent;
use onshi_pki::card::CardAttributes;
use onshi_pki::jpki::{CardCa, CardValidity};
use onshi_reader::flow::{self, How};
use onshi_reader::{ReaderFile, SimulatedReader};
use onshi_synth::TruthCase;
use serde::{Deserialize, Serialize};

/// The demo PIN of every demo card.
pub const DEMO_PIN: &str = "1234";
/// The facility password of the demo reader (visual mode).
pub const FACILITY_PASSWORD: &str = "onshi-demo";
const READER_ID: &str = "demo-reader-1";

/// One demo card and what the register and the medical file hold for its holder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DemoCard {
    pub path: PathBuf,
    pub insurer_number: String,
    pub symbol: Option<String>,
    pub number: String,
    pub branch: String,
    /// Linked at start (初回登録); the third card is left unlinked on purpose.
    pub linked: bool,
    pub drugs: usize,
    pub checkups: usize,
    /// The ground truth for the card's coverage today (the number path's truth case it was
    /// issued for), to check card answers field by field. Absent in data of older demos.
    #[serde(default)]
    pub expect: Option<onshi_synth::Expectation>,
}

/// What the demo wrote for the card path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DemoCards {
    pub jpki: PathBuf,
    pub reader: PathBuf,
    pub cards: Vec<DemoCard>,
    /// The card of a 生活保護 recipient no insurer registers, linked at start against their
    /// welfare office's record, with the ground truth of their month at the demo clinic.
    #[serde(default)]
    pub welfare: Option<WelfareDemoCard>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WelfareDemoCard {
    pub path: PathBuf,
    pub expect: onshi_synth::subsidy::WelfareCase,
}

/// The welfare office's grant that carries a recipient's own record, and whose it is.
fn welfare_grant(subsidy_files: &[PathBuf], case: &onshi_synth::subsidy::WelfareCase) -> anyhow::Result<Option<SubsidyEvent>> {
    for file in subsidy_files {
        let reader = std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?);
        for line in reader.lines() {
            let event: SubsidyEvent = serde_json::from_str(&line?)?;
            if event.payer_number == case.payer_number
                && event.recipient_number == case.recipient_number
                && event.certificate.as_ref().is_some_and(|c| c.recipient.is_some())
            {
                return Ok(Some(event));
            }
        }
    }
    Ok(None)
}

/// The card of the first recipient no insurer registers who holds this month's 医療券 at
/// `institution`, issued with the attributes their welfare office registered.
fn welfare_card(
    ca: &CardCa,
    root: &Path,
    subsidy_files: &[PathBuf],
    welfare: &[onshi_synth::subsidy::WelfareCase],
    institution: &str,
) -> anyhow::Result<WelfareDemoCard> {
    let case = welfare
        .iter()
        .find(|c| c.category == "welfare_only_ticket" && c.institution == institution)
        .context("the synthetic world has no 医療扶助 recipient without an insurer at the demo clinic")?;
    let grant = welfare_grant(subsidy_files, case)?.context("the recipient's grant is not in the payers' files")?;
    let record = grant.certificate.and_then(|c| c.recipient).expect("found by its record");
    let path = root.join("cards").join("welfare-1.json");
    let attributes = CardAttributes {
        name: record.name,
        name_kana: record.name_kana,
        birth_date: record.birth_date,
        sex: record.sex,
        address: record.address.unwrap_or_default(),
    };
    ca.issue_card(attributes, &grant.person_ref, Some(DEMO_PIN), CardValidity::Statutory { issued_on: onshi_pki::today() }, &path)?;
    Ok(WelfareDemoCard { path, expect: case.clone() })
}

/// The member record of the acquisition that gave these card numbers.
fn member_of(event_files: &[PathBuf], case: &TruthCase) -> anyhow::Result<Option<InsurerEvent>> {
    let r = &case.request;
    for file in event_files {
        let reader = std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?);
        for line in reader.lines() {
            let event: InsurerEvent = serde_json::from_str(&line?)?;
            if event.kind == EventKind::Acquire
                && event.insurer_number == r.insurer_number
                && event.card.number == r.number
                && Some(&event.card.branch) == r.branch.as_ref()
            {
                return Ok(Some(event));
            }
        }
    }
    Ok(None)
}

/// The 券面事項 of a card for the member an insurer registered (the demo's and the bench's
/// cards must match the register, or 初回登録 refuses them).
pub fn card_attributes(member: onshi_api::events::Member) -> CardAttributes {
    CardAttributes {
        name: member.name,
        name_kana: member.name_kana,
        birth_date: member.birth_date,
        sex: member.sex,
        address: member.address.unwrap_or_default(),
    }
}

/// (drugs, checkup items) per person reference in the synthetic medical file, for the given
/// people, in one pass.
fn medical_counts(path: &Path, people: &[&str]) -> anyhow::Result<Vec<(usize, usize)>> {
    let reader = std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?);
    let mut counts = vec![(0, 0); people.len()];
    for line in reader.lines() {
        let (person_ref, drug) = match serde_json::from_str::<MedicalRecord>(&line?)? {
            MedicalRecord::Drug { person_ref, .. } => (person_ref, true),
            MedicalRecord::Checkup { person_ref, .. } => (person_ref, false),
        };
        if let Some(i) = people.iter().position(|p| *p == person_ref) {
            if drug { counts[i].0 += 1 } else { counts[i].1 += 1 }
        }
    }
    Ok(counts)
}

/// The payers' files and 医療扶助 ground truth the demo's welfare card comes from, and the
/// demo clinic.
pub struct WelfareSource<'a> {
    pub subsidy_files: &'a [PathBuf],
    pub cases: &'a [onshi_synth::subsidy::WelfareCase],
    pub institution: &'a str,
}

/// Issues the demo cards and the reader (offline: before the center starts).
pub fn prepare(
    root: &Path,
    event_files: &[PathBuf],
    medical_file: &Path,
    cases: &[TruthCase],
    welfare: &WelfareSource<'_>,
    today: &str,
) -> anyhow::Result<DemoCards> {
    let jpki = root.join("jpki");
    let ca = CardCa::create(&jpki)?;
    ca.publish_crl(30)?;
    let reader = root.join("reader.json");
    ReaderFile::create(&reader, READER_ID, FACILITY_PASSWORD)?;
    let usable = |c: &&TruthCase| c.request.date_of_care.as_deref().is_none_or(|d| d == today) && c.request.branch.is_some();
    let mut valid: Vec<&TruthCase> = cases.iter().filter(|c| c.category == "valid").filter(usable).take(3).collect();
    anyhow::ensure!(valid.len() == 3, "the synthetic population has too few valid cases for the demo cards");
    // The fourth card: a patient the ground truth has cared for at home (訪問診療).
    valid.extend(cases.iter().filter(|c| c.category == "home_visit_patient").filter(usable).take(1));
    let events = valid
        .iter()
        .map(|case| member_of(event_files, case)?.context("a demo card's acquisition is not in the event files"))
        .collect::<anyhow::Result<Vec<InsurerEvent>>>()?;
    let people: Vec<&str> = events.iter().map(|e| e.person_ref.as_str()).collect();
    let counts = medical_counts(medical_file, &people)?;
    let mut cards = Vec::new();
    for (i, ((case, event), (drugs, checkups))) in valid.into_iter().zip(events.iter()).zip(counts).enumerate() {
        let member = event.member.clone().context("an acquisition without member details")?;
        let path = root.join("cards").join(format!("card-{}.json", i + 1));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        // The card authority binds the card to the person the insurer registered (its signed
        // feed tells the center); the clinic never names the person.
        ca.issue_card(
            card_attributes(member),
            &event.person_ref,
            Some(DEMO_PIN),
            CardValidity::Statutory { issued_on: onshi_pki::today() },
            &path,
        )?;
        let r = &case.request;
        cards.push(DemoCard {
            path,
            insurer_number: r.insurer_number.clone(),
            symbol: r.symbol.clone(),
            number: r.number.clone(),
            branch: r.branch.clone().unwrap_or_default(),
            // The third card is left unlinked on purpose.
            linked: i != 2,
            drugs,
            checkups,
            expect: Some(case.expect.clone()),
        });
    }
    let welfare = Some(welfare_card(&ca, root, welfare.subsidy_files, welfare.cases, welfare.institution)?);
    Ok(DemoCards { jpki, reader, cards, welfare })
}

fn reader_with(cards: &DemoCards, card: &Path) -> anyhow::Result<SimulatedReader> {
    let mut reader = SimulatedReader::new(ReaderFile::load(&cards.reader)?);
    reader.place_card(card)?;
    Ok(reader)
}

/// Registers the reader and links the cards meant to be linked (idempotent).
pub async fn enroll(client: &CenterClient, cards: &DemoCards) -> anyhow::Result<()> {
    let file = ReaderFile::load(&cards.reader)?;
    let body = onshi_api::card::RegisterReader { reader_id: file.reader_id.clone(), public_key: file.public_key_hex()? };
    let _: serde_json::Value = client.post_json("/readers", &body).await.map_err(crate::tls_args::explain)?;
    let linked = cards.cards.iter().filter(|c| c.linked).map(|c| &c.path);
    for path in linked.chain(cards.welfare.iter().map(|w| &w.path)) {
        let mut reader = reader_with(cards, path)?;
        flow::link(client, &mut reader, DEMO_PIN).await.with_context(|| format!("linking {}", path.display()))?;
    }
    Ok(())
}

fn refusal_code(error: &flow::FlowError) -> Option<&str> {
    match error {
        flow::FlowError::Center(ClientError::Refused { body, .. }) => Some(&body.error.code),
        _ => None,
    }
}

/// The card path's scripted checks; each outcome goes to `record(category, outcome)`.
/// Verifications are dated `today`, the synthetic population's day.
pub async fn check(
    client: &CenterClient,
    cards: &DemoCards,
    scratch: &Path,
    today: &str,
    mut record: impl FnMut(&str, Result<(), String>),
) -> anyhow::Result<()> {
    let day = || Some(today.to_string());
    let pin_card = &cards.cards[0];
    let second = &cards.cards[1];
    let unlinked = &cards.cards[2];
    // Field by field against the card's truth case; the card path consents to no 限度額 here,
    // so the truth's limit is not shown.
    let valid = |card: &DemoCard, answer: &CardAnswer, method: &str| {
        if answer.method.code() != method {
            return Err(format!("checked by {} (expected {method})", answer.method.code()));
        }
        match &card.expect {
            Some(expect) => {
                // A card names no paper, so nothing is said about one.
                let expect = onshi_synth::Expectation { limit_category: None, document_worth: None, ..expect.clone() };
                onshi_synth::check_answer(&answer.answer, &expect)
            }
            None if answer.answer.validity.code == "1" => Ok(()),
            None => Err(format!("validity {}", answer.answer.validity.code)),
        }
    };

    let mut reader = reader_with(cards, &pin_card.path)?;
    let consent = ConsentChoice { drug: true, ..ConsentChoice::default() };
    let outcome = flow::verify(client, &mut reader, How::Pin(DEMO_PIN), consent, day()).await;
    record("card_pin_with_drug_consent", outcome.as_ref().map_err(|e| e.to_string()).and_then(|a| valid(pin_card, a, "pin")));

    // A home visit (居宅同意取得型): the card check at the patient's home carries a 訪問診療 consent
    // for thirty days; the next visit re-confirms by its key without the card, with the same
    // answer the ground truth gives for the card's coverage; the clinic's list of today's
    // consents holds it.
    // The ground truth's home-care patient's card (older demo data: the first card).
    let home_card = cards.cards.get(3).unwrap_or(pin_card);
    let mut reader = reader_with(cards, &home_card.path)?;
    let until = onshi_pki::today().add_days(30).yyyymmdd().parse().expect("eight digits");
    let home = ConsentChoice { home: Some(HomeCare { kind: HomeCareKind::Visit, until }), ..ConsentChoice::default() };
    let visit = flow::verify(client, &mut reader, How::Pin(DEMO_PIN), home, day()).await;
    let key = visit.as_ref().ok().and_then(|a| a.home_consent.as_ref()).map(|c| c.key.clone());
    record(
        "home_visit_card",
        visit.as_ref().map_err(|e| e.to_string()).and_then(|a| valid(home_card, a, "pin")).and_then(|()| match &key {
            Some(_) => Ok(()),
            None => Err("no home-care consent recorded".into()),
        }),
    );
    if let Some(key) = key {
        let again = client.verify_home(&HomeReverify { key: key.clone(), date_of_care: day() }).await;
        record(
            "home_visit_reverify",
            match (&again, &home_card.expect) {
                (Ok(answer), Some(expect)) => {
                    let expect = onshi_synth::Expectation { limit_category: None, document_worth: None, ..expect.clone() };
                    onshi_synth::check_answer(answer, &expect)
                }
                (Ok(answer), None) if answer.validity.code == "1" => Ok(()),
                (Ok(answer), None) => Err(format!("validity {}", answer.validity.code)),
                (Err(e), _) => Err(e.to_string()),
            },
        );
        let real_today = onshi_pki::today().yyyymmdd();
        let window = HomeListRequest { kind: HomeCareKind::Visit, from: real_today.clone(), to: real_today };
        record(
            "home_visit_listed",
            match client.home_list(&window).await {
                Ok(list) if list.entries.iter().any(|e| e.consent.key == key) => Ok(()),
                Ok(list) => Err(format!("today's list of {} consents lacks the one just given", list.entries.len())),
                Err(e) => Err(e.to_string()),
            },
        );
    }

    // A 生活保護 recipient no insurer registers: their card, linked against the welfare
    // office's record, answers 該当資格なし for insurance and their 医療扶助 at this clinic as the
    // ground truth has it (the month's ticket), which is what reception reads as the headline.
    if let Some(welfare) = &cards.welfare {
        let mut reader = reader_with(cards, &welfare.path)?;
        let answer = flow::verify(client, &mut reader, How::Pin(DEMO_PIN), ConsentChoice::default(), day()).await;
        record("welfare_only_card", answer.map_err(|e| e.to_string()).and_then(|a| welfare_answer(&a.answer, &welfare.expect)));
    }

    let query = |card: &DemoCard| MedicalQuery {
        insurer_number: card.insurer_number.clone(),
        symbol: card.symbol.clone(),
        number: card.number.clone(),
        branch: card.branch.clone(),
    };
    let drugs: Result<MedicalAnswer<Drug>, _> = client.post_json("/medical/drugs", &query(pin_card)).await;
    record(
        "medical_drugs_with_consent",
        match drugs {
            Ok(answer) if answer.records.len() == pin_card.drugs => Ok(()),
            Ok(answer) => Err(format!("{} drugs shown, {} in the synthetic file", answer.records.len(), pin_card.drugs)),
            Err(e) => Err(e.to_string()),
        },
    );
    let checkups: Result<serde_json::Value, _> = client.post_json("/medical/checkups", &query(second)).await;
    record(
        "medical_checkups_without_consent",
        match checkups {
            Err(ClientError::Refused { body, .. }) if body.error.code == "CONSENT_NOT_GIVEN" => Ok(()),
            other => Err(format!("expected CONSENT_NOT_GIVEN, got {other:?}")),
        },
    );

    let mut reader = reader_with(cards, &second.path)?;
    let face = flow::verify(client, &mut reader, How::Face, ConsentChoice::default(), day()).await;
    record("card_face", face.as_ref().map_err(|e| e.to_string()).and_then(|a| valid(second, a, "face")));
    reader.enable_visual_mode(FACILITY_PASSWORD)?;
    let visual = flow::verify(client, &mut reader, How::Visual, ConsentChoice::default(), day()).await;
    record("card_visual", visual.as_ref().map_err(|e| e.to_string()).and_then(|a| valid(second, a, "visual")));

    let mut reader = reader_with(cards, &unlinked.path)?;
    let outcome = flow::verify(client, &mut reader, How::Pin(DEMO_PIN), ConsentChoice::default(), day()).await;
    record(
        "card_unlinked",
        match outcome {
            Err(e) if refusal_code(&e) == Some("CARD_NOT_LINKED") => Ok(()),
            other => Err(format!("expected CARD_NOT_LINKED, got {:?}", other.map(|a| a.answer.validity.code))),
        },
    );

    // The lock is tried on a copy, so that the demo card stays usable.
    let copy = scratch.join("pin-lock-trial.json");
    std::fs::copy(&second.path, &copy)?;
    let mut reader = reader_with(cards, &copy)?;
    let mut last = String::new();
    for wrong in ["0000", "0001", "0002", DEMO_PIN] {
        last = match flow::verify(client, &mut reader, How::Pin(wrong), ConsentChoice::default(), day()).await {
            Ok(_) => "verified".into(),
            Err(e) => e.to_string(),
        };
    }
    record("card_pin_locked_after_three", if last.contains("locked") { Ok(()) } else { Err(format!("after three wrong PINs: {last}")) });
    let _ = std::fs::remove_file(&copy);

    let mut reader = reader_with(cards, &pin_card.path)?;
    let proof = flow::prove_verify(client, &mut reader, How::Pin(DEMO_PIN), &ConsentChoice::default()).await?;
    let request = VerifyCard { proof, date_of_care: day(), consent: ConsentChoice::default(), chosen_at: None };
    let first: Result<CardAnswer, _> = client.post_json("/verify/card", &request).await;
    let replay: Result<CardAnswer, _> = client.post_json("/verify/card", &request).await;
    record(
        "card_replayed_challenge",
        match (first, replay) {
            (Ok(_), Err(ClientError::Refused { body, .. })) if body.error.code == "CHALLENGE_UNKNOWN" => Ok(()),
            (first, replay) => Err(format!("first {:?}, replay {:?}", first.map(|_| "ok"), replay.map(|_| "ok"))),
        },
    );
    Ok(())
}

/// A card answer of a recipient no insurer registers against their ground truth.
fn welfare_answer(answer: &onshi_api::verify::VerifyAnswer, expect: &onshi_synth::subsidy::WelfareCase) -> Result<(), String> {
    if answer.validity.code != "4" || answer.coverage.is_some() {
        return Err(format!("insurance answered {} (expected 該当資格なし: no insurer registers them)", answer.validity.code));
    }
    let Some(welfare) = &answer.welfare else { return Err("no 医療扶助 in the answer".into()) };
    let month = onshi_api::subsidy::WelfareMonthAnswer {
        month: expect.month.clone(),
        recipients: vec![welfare.clone()],
        answered_at: answer.answered_at.clone(),
    };
    onshi_synth::subsidy::check_welfare(&month, expect)?;
    match answer.headline_validity().code.as_str() {
        "1" => Ok(()),
        other => Err(format!("headline validity {other} (expected the recipient's 1)")),
    }
}
