//! The trust attacks of docs/SECURITY.md, each performed through the real center over mutual
//! TLS: a clinic choosing whose card it links, consents the patient never gave, a reader taken
//! over by another clinic, a card blocked with its public certificate, a forged binding feed
//! and a card revocation list played back. Each is refused with its stable code; where it
//! touches a patient, the patient sees the attempt in their own access log.

use std::path::{Path, PathBuf};
use std::process::Output;

use onshi_api::card::{
    CardAnswer, CardProof, Challenge, ConsentChoice, LINK_DETAILS, LinkCard, Method, Purpose, VerifyCard, consent_details,
};
use onshi_api::client::{CenterClient, ClientError};
use onshi_reader::flow::{self, How};
use onshi_reader::{CardReader, ReaderFile, SimulatedReader};
use serde_json::{Value, json};

use crate::clinic::kokuho;
use crate::common::{CLINIC, OTHER_CLINIC, Server, onshi, run_ok};

const INSURER: &str = "06130488";
const PIN: &str = "1234";

/// A person of the synthetic world as the insurer registered them and the card authority
/// knows them.
struct Person {
    reference: &'static str,
    number: &'static str,
    name: &'static str,
    kana: &'static str,
    birth: &'static str,
    sex: &'static str,
    address: &'static str,
}

const A: Person = Person {
    reference: "trust-a",
    number: "345",
    name: "試験　花子",
    kana: "シケン　ハナコ",
    birth: "19800101",
    sex: "2",
    address: "東京都千代田区霞が関1-2-2",
};
const B: Person = Person {
    reference: "trust-b",
    number: "346",
    name: "試験　次郎",
    kana: "シケン　ジロウ",
    birth: "19750505",
    sex: "1",
    address: "大阪府大阪市北区1-1",
};

fn acquire(insurer: &str, p: &Person) -> Value {
    json!({
        "event_id": format!("acq-{}", p.reference), "kind": "acquire", "insurer_number": insurer, "person_ref": p.reference,
        "card": {"symbol": "12", "number": p.number, "branch": "00"},
        "occurred_on": "20200401", "notified_at": "20200402090000",
        "member": {"relationship": "1", "card_classification": "01", "name": p.name, "name_kana": p.kana,
                   "sex": p.sex, "birth_date": p.birth, "address": p.address},
        "terms": {"income_class": "general"}
    })
}

/// A register with A and B at one insurer, a third person at another, A's dispensed drugs, the
/// center and card CAs, two clinics with a reader each, an insurer certificate for each insurer.
struct World {
    dir: tempfile::TempDir,
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let other = Person { reference: "trust-c", number: "77", ..B };
        let events = [acquire(INSURER, &A), acquire(INSURER, &B), acquire(&kokuho(), &other)];
        std::fs::write(root.join("events.jsonl"), events.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
        run_ok(onshi().args(["center", "import", "--db"]).arg(root.join("center.sqlite")).arg(root.join("events.jsonl")));
        let drug = json!({"kind": "drug", "person_ref": A.reference, "drug_code": "610443047", "drug_name": "アムロジピン錠５ｍｇ",
            "quantity": 28.0, "unit": "錠", "days": 28, "dispensed_on": "20260901", "dispensed_by": "1341040010",
            "source": "claim", "arrived_on": "20261014"});
        std::fs::write(root.join("medical.jsonl"), format!("{drug}\n")).unwrap();
        run_ok(onshi().args(["center", "import-medical", "--db"]).arg(root.join("center.sqlite")).arg(root.join("medical.jsonl")));
        let pki = root.join("pki");
        run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(&pki));
        for code in [CLINIC, OTHER_CLINIC] {
            run_ok(onshi().args(["center", "pki", "issue-institution", "--code", code, "--dir"]).arg(&pki));
        }
        for number in [INSURER.to_string(), kokuho()] {
            run_ok(onshi().args(["center", "pki", "issue-insurer", "--number", &number, "--dir"]).arg(&pki));
        }
        run_ok(onshi().args(["jpki", "init", "--dir"]).arg(root.join("jpki")));
        run_ok(onshi().args(["jpki", "crl", "--dir"]).arg(root.join("jpki")));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut world = World { dir, server: None, runtime };
        world.start();
        for (reader, code) in [("reader-clinic", CLINIC), ("reader-other", OTHER_CLINIC)] {
            run_ok(onshi().args(["reader", "init", "--id", reader, "--facility-password", "pass-1", "--out"]).arg(world.path(reader)));
            run_ok(onshi().args(["reader", "register", "--reader"]).arg(world.path(reader)).args(world.center_args(code)));
        }
        world
    }

    fn start(&mut self) {
        self.server = None;
        let jpki = self.path("jpki");
        self.server = Some(Server::start_with(&self.path("center.sqlite"), &self.path("pki"), &["--jpki", jpki.to_str().unwrap()]));
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn center_args(&self, code: &str) -> Vec<String> {
        crate::common::institution_args(&self.server().url(), &self.path("pki"), code)
    }

    fn client(&self, code: &str) -> CenterClient {
        self.server().client_at(&self.path("pki"), Some(code))
    }

    fn insurer(&self, number: &str) -> CenterClient {
        let pki = self.path("pki");
        let identity = (pki.join(format!("insurers/{number}.pem")), pki.join(format!("insurers/{number}.key")));
        self.server().client_with_ca(&pki.join("ca.pem"), Some(identity))
    }

    /// The card authority issues a card to `person`, attesting `attested` (normally the same).
    fn issue(&self, file: &str, person: &Person, attested: &Person) -> PathBuf {
        let path = self.path(file);
        run_ok(
            onshi()
                .args(["jpki", "issue", "--dir"])
                .arg(self.path("jpki"))
                .arg("--out")
                .arg(&path)
                .args(["--person-ref", person.reference, "--name", attested.name, "--kana", attested.kana])
                .args(["--birth", attested.birth, "--sex", attested.sex, "--address", attested.address, "--pin", PIN]),
        );
        path
    }

    fn card(&self, action: &str, card: &Path, reader: &str, code: &str, args: &[&str]) -> Output {
        crate::common::card_command(action, card, &self.path(reader), &self.center_args(code), args)
    }

    fn link(&self, card: &Path) -> Output {
        self.card("link", card, "reader-clinic", CLINIC, &["--pin", PIN])
    }

    fn verify(&self, card: &Path, args: &[&str]) -> Output {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.card("verify", card, "reader-clinic", CLINIC, &all)
    }

    fn reader(&self, name: &str, card: &Path) -> SimulatedReader {
        let mut reader = SimulatedReader::new(ReaderFile::load(&self.path(name)).unwrap());
        reader.place_card(card).unwrap();
        reader
    }

    /// The patient's own access log, read with their card: (by, action, code) per entry.
    fn access_log(&self, card: &Path) -> Vec<(String, String, String)> {
        let output = run_ok(
            onshi()
                .args(["audit", "access-log", "--json", "--pin", PIN, "--center", &self.server().url(), "--ca"])
                .arg(self.path("pki/ca.pem"))
                .arg("--card")
                .arg(card),
        );
        let log: Value = serde_json::from_slice(&output.stdout).expect("json");
        log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| (e["by"].as_str().unwrap().into(), e["action"].as_str().unwrap().into(), e["code"].as_str().unwrap().into()))
            .collect()
    }

    fn drugs(&self, code: &str) -> Output {
        onshi()
            .args(["medical", "drugs", "--json", "--insurer", INSURER, "--symbol", "12", "--number", A.number, "--branch", "00"])
            .args(self.center_args(code))
            .output()
            .unwrap()
    }
}

fn ok_json(output: &Output) -> Value {
    assert!(output.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    serde_json::from_slice(&output.stdout).expect("a JSON answer")
}

/// The refusal's stable code and its Japanese action are both there.
fn refused(output: &Output, code: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected {code}, got success: {}", String::from_utf8_lossy(&output.stdout));
    assert!(stderr.contains(code), "expected {code} in:\n{stderr}");
    assert!(stderr.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)), "an action in Japanese: {stderr}");
    stderr
}

/// A refusal by the API: its code, checked to carry an action in Japanese.
fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(ClientError::Refused { body, .. }) => {
            assert!(body.error.reception_ja.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)), "{:?}", body.error);
            body.error.code
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn has(log: &[(String, String, String)], by: &str, action: &str, code: &str) -> bool {
    log.iter().any(|(b, a, c)| b == by && a == action && c == code)
}

#[test]
fn a_clinic_cannot_choose_whose_card_it_links() {
    let world = World::new();
    let card_a = world.issue("a.card", &A, &A);
    let client = world.client(CLINIC);

    // The 2023 failure: a clinic with A's card and PIN sends B's numbers and 券面事項 to link
    // the card to B. The request has no place for them any more.
    let mut reader = world.reader("reader-clinic", &card_a);
    let forged = world.runtime.block_on(async {
        let proof = flow::prove(&client, &mut reader, How::Pin(PIN), Purpose::Link, LINK_DETAILS).await.unwrap();
        let mut body = serde_json::to_value(LinkCard { proof }).unwrap();
        body["attributes"] = json!({"name": B.name, "name_kana": B.kana, "birth_date": B.birth, "sex": B.sex, "address": B.address});
        body["insurer_number"] = json!(INSURER);
        body["number"] = json!(B.number);
        body["branch"] = json!("00");
        client.post_json::<_, Value>("/card/link", &body).await
    });
    assert_eq!(refusal(forged), "MALFORMED_REQUEST");

    // Linked as the card authority says: A's coverage, whatever the clinic would like.
    assert!(String::from_utf8_lossy(&world.link(&card_a).stdout).contains("利用登録しました"));
    let answer = ok_json(&world.verify(&card_a, &["--pin", PIN]));
    assert_eq!((answer["validity"]["code"].as_str(), answer["coverage"]["number"].as_str()), (Some("1"), Some(A.number)));

    // A card the authority issued for A but whose attested 券面事項 are B's (a clerical error, or
    // a clinic that got one issued): the five-attribute match refuses it, and A sees the attempt.
    let mismatched = world.issue("mismatch.card", &A, &B);
    let stderr = refused(&world.link(&mismatched), "CARD_ATTRIBUTES_MISMATCH");
    for field in ["name", "name_kana", "birth_date", "sex", "address"] {
        assert!(stderr.contains(field), "{field} named: {stderr}");
    }
    assert!(!stderr.contains(B.name) && !stderr.contains(B.birth), "fields named, values never: {stderr}");
    refused(&world.verify(&mismatched, &["--pin", PIN]), "CARD_NOT_LINKED");

    // A card bound to nobody the register knows; then a forged feed line binding it to B,
    // signed by another CA's key, and one with the real format but a broken signature.
    let stray = Person { reference: "not-registered", ..A };
    let stray_card = world.issue("stray.card", &stray, &A);
    refused(&world.link(&stray_card), "CARD_PERSON_NOT_REGISTERED");
    let serial = onshi_pki::card::VirtualCard::load(&stray_card).unwrap().serial().to_string();
    let holder = onshi_pki::card::VirtualCard::load(&stray_card).unwrap().holder_ref().unwrap();
    let rogue = onshi_pki::jpki::CardCa::create(&world.path("rogue-jpki")).unwrap();
    let entry = json!({"seq": 1000, "kind": "issue", "serial": serial, "holder_ref": holder, "person_ref": B.reference,
        "attributes": {"name": A.name, "name_kana": A.kana, "birth_date": A.birth, "sex": A.sex, "address": A.address},
        "on": "20261201"})
    .to_string();
    let rogue_key = std::fs::read_to_string(world.path("rogue-jpki/ca.key")).unwrap();
    let signature = onshi_domain::hex::encode(&onshi_pki::card::sign_pem(&rogue_key, entry.as_bytes()).unwrap());
    let _ = rogue;
    let forged_line = json!({"entry": entry, "signature": signature}).to_string();
    let broken_line = json!({"entry": entry.replace("1000", "1001"), "signature": signature}).to_string();
    let feed = world.path("jpki/bindings.jsonl");
    let mut text = std::fs::read_to_string(&feed).unwrap();
    text.push_str(&format!("{forged_line}\n{broken_line}\nnot json at all\n"));
    std::fs::write(&feed, text).unwrap();
    refused(&world.link(&stray_card), "CARD_PERSON_NOT_REGISTERED");

    // A lost card: the authority's revocation refuses the card and undoes its link at once
    // through the feed (before any CRL is published), and A sees it with a second card of hers.
    let second = world.issue("a2.card", &A, &A);
    world.link(&second);
    run_ok(onshi().args(["jpki", "revoke", "--reason", "lost", "--card"]).arg(&card_a).arg("--dir").arg(world.path("jpki")));
    refused(&world.verify(&card_a, &["--pin", PIN]), "CARD_CERTIFICATE_REVOKED");
    let log = world.access_log(&second);
    assert!(has(&log, CLINIC, "link_card", "CARD_ATTRIBUTES_MISMATCH"), "A sees the refused link: {log:?}");
    assert!(has(&log, "jpki", "unlink_card", "revoked"), "A sees the link undone: {log:?}");
    assert!(has(&log, CLINIC, "link_card", "ok"), "{log:?}");
    assert!(!log.iter().any(|(_, action, code)| action == "link_card" && code == "CARD_PERSON_NOT_REGISTERED"), "not A's card: {log:?}");
}

#[test]
fn consent_is_what_the_patient_signed_and_a_visual_check_never_opens_medical_information() {
    let world = World::new();
    let card = world.issue("a.card", &A, &A);
    world.link(&card);
    let client = world.client(CLINIC);
    let drug = ConsentChoice { drug: true, ..ConsentChoice::default() };

    // The card signed "no consent"; the request claims drugs. So does the reader's face
    // attestation. Both are refused, and nothing opens.
    let mut reader = world.reader("reader-clinic", &card);
    let (pin, face) = world.runtime.block_on(async {
        let proof = flow::prove_verify(&client, &mut reader, How::Pin(PIN), &ConsentChoice::default()).await.unwrap();
        let claimed = VerifyCard { proof, date_of_care: None, consent: drug, chosen_at: None };
        let pin = client.post_json::<_, CardAnswer>("/verify/card", &claimed).await;
        let proof = flow::prove_verify(&client, &mut reader, How::Face, &ConsentChoice::default()).await.unwrap();
        let claimed = VerifyCard { proof, date_of_care: None, consent: drug, chosen_at: None };
        (pin, client.post_json::<_, CardAnswer>("/verify/card", &claimed).await)
    });
    assert_eq!(refusal(pin), "CARD_SIGNATURE_INVALID");
    assert_eq!(refusal(face), "CARD_SIGNATURE_INVALID");
    refused(&world.drugs(CLINIC), "CONSENT_NOT_GIVEN");
    // Nor can a clinic add the patient's yes to showing their 受給者証 (公費) after the card signed.
    let subsidy = world.runtime.block_on(async {
        let proof = flow::prove_verify(&client, &mut reader, How::Pin(PIN), &ConsentChoice::default()).await.unwrap();
        let claimed =
            VerifyCard { proof, date_of_care: None, consent: ConsentChoice { subsidy: true, ..ConsentChoice::default() }, chosen_at: None };
        client.post_json::<_, CardAnswer>("/verify/card", &claimed).await
    });
    assert_eq!(refusal(subsidy), "CARD_SIGNATURE_INVALID");
    // Nor a home-care consent (再照会 without the card for months) the patient never gave.
    let home = world.runtime.block_on(async {
        let proof = flow::prove_verify(&client, &mut reader, How::Pin(PIN), &ConsentChoice::default()).await.unwrap();
        let until = onshi_pki::today().add_days(30).yyyymmdd().parse().unwrap();
        let home = Some(onshi_api::card::HomeCare { kind: onshi_api::card::HomeCareKind::Visit, until });
        let claimed =
            VerifyCard { proof, date_of_care: None, consent: ConsentChoice { home, ..ConsentChoice::default() }, chosen_at: None };
        client.post_json::<_, CardAnswer>("/verify/card", &claimed).await
    });
    assert_eq!(refusal(home), "CARD_SIGNATURE_INVALID");

    // A visual check by staff confirms coverage, never opens medical information.
    refused(&world.verify(&card, &["--visual", "--facility-password", "pass-1", "--consent", "drug"]), "CONSENT_NEEDS_CARD");
    let visual = ok_json(&world.verify(&card, &["--visual", "--facility-password", "pass-1", "--consent", "limit"]));
    assert_eq!(
        (visual["validity"]["code"].as_str(), visual["consents"]["limit_application_certificate_related"]["flag"].as_str()),
        (Some("1"), Some("1"))
    );

    // A recorded visual check (the gateway after an outage, as any clinic's gateway could make
    // one for a certificate it once saw): no drugs either; and it keeps its counter time.
    let certificate = reader.certificate().unwrap();
    let recorded = |consent: ConsentChoice, chosen_at: Option<String>| {
        let details = consent_details(&consent, chosen_at.as_deref().unwrap_or("-"));
        world.runtime.block_on(async {
            let Challenge { challenge, .. } = client.post_json(flow::INSTITUTION_CHALLENGE, &json!({})).await.unwrap();
            let attestation = reader.attest_recorded_visual(&challenge, &certificate, &details).unwrap();
            let proof = CardProof {
                challenge,
                certificate: certificate.clone(),
                method: Method::Visual,
                card_signature: None,
                attestation: Some(attestation),
            };
            client.post_json::<_, CardAnswer>("/verify/card", &VerifyCard { proof, date_of_care: None, consent, chosen_at }).await
        })
    };
    let counter = onshi_domain::Timestamp::from_jst_seconds(onshi_pki::now().jst_seconds() - 3 * 3600);
    assert_eq!(refusal(recorded(drug, Some(counter.to_string()))), "CONSENT_NEEDS_CARD");
    assert_eq!(refusal(recorded(ConsentChoice::default(), None)), "CONSENT_TIME_INVALID");
    let future = onshi_domain::Timestamp::from_jst_seconds(onshi_pki::now().jst_seconds() + 3600);
    assert_eq!(refusal(recorded(ConsentChoice::default(), Some(future.to_string()))), "CONSENT_TIME_INVALID");
    let limit = ConsentChoice { limit: true, ..ConsentChoice::default() };
    let answer = recorded(limit, Some(counter.to_string())).expect("a recorded visual check re-verifies");
    let state = &answer.consents.limit_application_certificate_related;
    assert_eq!(state.consent_time.as_deref(), Some(counter.to_string().as_str()), "the consent keeps the counter time");
    let until = onshi_domain::Timestamp::from_jst_seconds(counter.jst_seconds() + 24 * 3600);
    assert_eq!(state.available_time.as_deref(), Some(until.to_string().as_str()), "its window runs from the counter");
    refused(&world.drugs(CLINIC), "CONSENT_NOT_GIVEN");

    // The patient consents with their PIN, then withdraws it with their own card.
    let given = ok_json(&world.verify(&card, &["--pin", PIN, "--consent", "drug"]));
    assert_eq!(given["consents"]["pharmacists_info"]["flag"], "1");
    ok_json(&world.drugs(CLINIC));
    let withdrawn = run_ok(
        onshi()
            .args(["audit", "withdraw-consent", "--pin", PIN, "--institution", CLINIC, "--scope", "drug"])
            .args(["--center", &world.server().url(), "--ca"])
            .arg(world.path("pki/ca.pem"))
            .arg("--card")
            .arg(&card),
    );
    assert!(String::from_utf8_lossy(&withdrawn.stdout).contains("取り消しました"));
    refused(&world.drugs(CLINIC), "CONSENT_NOT_GIVEN");

    let log = world.access_log(&card);
    assert!(has(&log, CLINIC, "verify_card", "CARD_SIGNATURE_INVALID"), "A sees the forged consents: {log:?}");
    assert!(has(&log, CLINIC, "verify_card", "CONSENT_NEEDS_CARD"), "{log:?}");
    assert!(has(&log, "patient", "withdraw_consent", "ok"), "{log:?}");
    assert!(has(&log, CLINIC, "view_drug", "CONSENT_NOT_GIVEN"), "{log:?}");
}

#[test]
fn a_reader_belongs_to_one_institution_which_may_rotate_its_key() {
    let world = World::new();
    let card = world.issue("a.card", &A, &A);
    world.link(&card);

    // Another clinic registers a reader under this clinic's reader id, with its own key, to
    // take it over (and turn off its face and visual paths).
    run_ok(onshi().args(["reader", "init", "--id", "reader-clinic", "--facility-password", "x", "--out"]).arg(world.path("hijack")));
    let hijack =
        onshi().args(["reader", "register", "--reader"]).arg(world.path("hijack")).args(world.center_args(OTHER_CLINIC)).output().unwrap();
    refused(&hijack, "READER_OWNED_ELSEWHERE");
    let face = ok_json(&world.verify(&card, &["--face", "holder"]));
    assert_eq!(face["validity"]["code"], "1", "the clinic's reader still works");
    let theirs = world.card("verify", &card, "hijack", OTHER_CLINIC, &["--json", "--face", "holder"]);
    refused(&theirs, "READER_NOT_REGISTERED");

    // The clinic rotates its own reader's key: a new device key under the same id.
    run_ok(onshi().args(["reader", "init", "--id", "reader-clinic", "--facility-password", "pass-2", "--out"]).arg(world.path("rotated")));
    let rotated = run_ok(onshi().args(["reader", "register", "--reader"]).arg(world.path("rotated")).args(world.center_args(CLINIC)));
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("rotated"), "{}", String::from_utf8_lossy(&rotated.stdout));
    refused(&world.verify(&card, &["--face", "holder"]), "CARD_SIGNATURE_INVALID");
    let fresh = ok_json(&world.card("verify", &card, "rotated", CLINIC, &["--json", "--face", "holder"]));
    assert_eq!(fresh["validity"]["code"], "1");
}

#[test]
fn nobody_blocks_a_card_with_its_certificate_and_the_insurer_reviews_reports() {
    let world = World::new();
    let card = world.issue("a.card", &A, &A);
    world.link(&card);
    let other = world.client(OTHER_CLINIC);
    let pem = onshi_pki::card::VirtualCard::load(&card).unwrap().certificate_pem().to_string();

    // The old attack: any clinic names the public certificate and blocks the card.
    let (old_route, no_proof) = world.runtime.block_on(async {
        let body = json!({"certificate": pem, "reason": "block"});
        (other.post_json::<_, Value>("/card/flag", &body).await, other.post_json::<_, Value>("/card/report", &body).await)
    });
    assert_eq!(refusal(old_route), "NOT_FOUND");
    assert_eq!(refusal(no_proof), "MALFORMED_REQUEST");
    assert_eq!(ok_json(&world.verify(&card, &["--pin", PIN]))["validity"]["code"], "1", "still verifies");

    // A clinic with the card on its reader files a report: the card keeps working.
    let reported = run_ok(&mut {
        let mut command = onshi();
        command.args(["card", "report", "--face", "--reason", "another name shown", "--card"]).arg(&card);
        command.arg("--reader").arg(world.path("reader-other")).args(world.center_args(OTHER_CLINIC));
        command
    });
    assert!(String::from_utf8_lossy(&reported.stdout).contains("報告しました"));
    assert_eq!(ok_json(&world.verify(&card, &["--pin", PIN]))["validity"]["code"], "1", "a clinic's report does not block");

    // The holder flags it with their own card: blocked until the insurer reviews.
    run_ok(
        onshi()
            .args(["audit", "flag-link", "--pin", PIN, "--reason", "not my coverage", "--center", &world.server().url(), "--ca"])
            .arg(world.path("pki/ca.pem"))
            .arg("--card")
            .arg(&card),
    );
    refused(&world.verify(&card, &["--pin", PIN]), "CARD_LINK_FLAGGED");

    // Another insurer neither sees nor reviews the reports.
    let (listed, foreign) = world.runtime.block_on(async {
        let kokuho = world.insurer(&kokuho());
        let listed: onshi_api::card::LinkReports = kokuho.post_json("/insurer/link-reports", &json!({})).await.unwrap();
        let review = json!({"report_id": 1, "decision": "clear"});
        (listed, kokuho.post_json::<_, Value>("/insurer/link-review", &review).await)
    });
    assert!(listed.reports.is_empty(), "{listed:?}");
    assert_eq!(refusal(foreign), "LINK_REPORT_OTHER_INSURER");
    // Nor does a clinic.
    let clinic = world.runtime.block_on(other.post_json::<_, Value>("/insurer/link-review", &json!({"report_id": 1, "decision": "clear"})));
    assert_eq!(refusal(clinic), "WRONG_ROLE");

    // The member's insurer sees both reports by the numbers it holds, and clears the holder's.
    let insurer = world.insurer(INSURER);
    let reports: onshi_api::card::LinkReports = world.runtime.block_on(insurer.post_json("/insurer/link-reports", &json!({}))).unwrap();
    let seen: Vec<(&str, &str)> = reports.reports.iter().map(|r| (r.reporter.as_str(), r.number.as_str())).collect();
    assert_eq!(seen, [(OTHER_CLINIC, A.number), ("patient", A.number)]);
    let holders = reports.reports[1].report_id;
    let cleared = onshi()
        .args(["insurer", "review-link", "--report", &holders.to_string(), "--decision", "clear", "--note", "checked"])
        .args(crate::common::institution_args(&world.server().url(), &world.path("pki"), CLINIC).iter().take(4))
        .arg("--cert")
        .arg(world.path(&format!("pki/insurers/{INSURER}.pem")))
        .arg("--key")
        .arg(world.path(&format!("pki/insurers/{INSURER}.key")))
        .output()
        .unwrap();
    assert!(cleared.status.success(), "{}", String::from_utf8_lossy(&cleared.stderr));
    assert_eq!(ok_json(&world.verify(&card, &["--pin", PIN]))["validity"]["code"], "1", "cleared: verifies again");
    let again = world
        .runtime
        .block_on(insurer.post_json::<_, Value>("/insurer/link-review", &json!({"report_id": holders, "decision": "confirm"})));
    assert_eq!(refusal(again), "LINK_REPORT_CLOSED");

    // The patient sees who reported, their own flag and the review.
    let log = world.access_log(&card);
    assert!(has(&log, OTHER_CLINIC, "report_link", "ok"), "{log:?}");
    assert!(has(&log, "patient", "flag_card", "ok"), "{log:?}");
    assert!(has(&log, &format!("insurer:{INSURER}"), "review_link", "cleared"), "{log:?}");

    // The insurer confirms the clinic's report: the link is undone.
    let clinics = reports.reports[0].report_id;
    world
        .runtime
        .block_on(insurer.post_json::<_, Value>("/insurer/link-review", &json!({"report_id": clinics, "decision": "confirm"})))
        .unwrap();
    refused(&world.verify(&card, &["--pin", PIN]), "CARD_NOT_LINKED");
    // And it is not linked again from the binding the insurer found wrong.
    refused(&world.link(&card), "CARD_BINDING_DISPUTED");
}

#[test]
fn an_older_card_revocation_list_played_back_is_refused_even_across_a_restart() {
    let mut world = World::new();
    let card = world.issue("a.card", &A, &A);
    world.link(&card);
    let crl = world.path("jpki/crl.pem");
    let first = std::fs::read(&crl).unwrap();
    run_ok(onshi().args(["jpki", "crl", "--dir"]).arg(world.path("jpki")));
    assert_eq!(ok_json(&world.verify(&card, &["--pin", PIN]))["validity"]["code"], "1", "the newer list is taken");

    // Someone who can write the card CA's folder puts the older list back. While running, the
    // center keeps the newer one; restarted on the older one, it trusts no card at all.
    std::fs::write(&crl, &first).unwrap();
    assert_eq!(ok_json(&world.verify(&card, &["--pin", PIN]))["validity"]["code"], "1", "the newer list stays in force");
    world.start();
    let stderr = refused(&world.verify(&card, &["--pin", PIN]), "CARD_PATH_UNAVAILABLE");
    assert!(stderr.contains("older"), "{stderr}");
    run_ok(onshi().args(["jpki", "crl", "--dir"]).arg(world.path("jpki")));
    assert_eq!(ok_json(&world.verify(&card, &["--pin", PIN]))["validity"]["code"], "1", "a newer list brings it back, no restart");
}

#[test]
fn a_patients_record_is_the_card_holders_own_and_nobody_elses() {
    let world = World::new();
    let card_a = world.issue("a.card", &A, &A);
    let card_b = world.issue("b.card", &B, &B);
    world.link(&card_a);
    world.link(&card_b);
    ok_json(&world.verify(&card_a, &["--pin", PIN, "--consent", "drug"]));
    // The patient's page asks without a clinic certificate.
    let anonymous = world.server().client_at(&world.path("pki"), None);
    let mut a = onshi_pki::card::VirtualCard::load(&card_a).unwrap();
    let mut b = onshi_pki::card::VirtualCard::load(&card_b).unwrap();
    // The patients' endpoints take 5 requests a second from one address; this test sends more,
    // so a request answered 429 is sent again after the Retry-After the center gave (1 s), within
    // a deadline, as any client must. The wait is the protocol's (the server's instruction), not
    // a stand-in for synchronisation: a proof's retry takes a fresh patient challenge, and polling
    // faster would spend them.
    fn honouring_retry_after<T>(mut call: impl FnMut() -> Result<T, ClientError>) -> Result<T, ClientError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match call() {
                Err(ClientError::Refused { status: 429, .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_secs(1))
                }
                other => return other,
            }
        }
    }
    let center_error = |e: flow::FlowError| match e {
        flow::FlowError::Center(e) => e,
        other => panic!("the card: {other}"),
    };
    let proof = |card: &mut onshi_pki::card::VirtualCard, purpose| {
        honouring_retry_after(|| {
            world.runtime.block_on(flow::card_pin_proof(&anonymous, flow::PATIENT_CHALLENGE, card, PIN, purpose, "")).map_err(center_error)
        })
        .unwrap()
    };
    let read =
        |proof: &CardProof| honouring_retry_after(|| world.runtime.block_on(anonymous.post_json::<_, Value>("/patient/record", proof)));

    // A reads her own record: her coverage, the consent she gave at the clinic, who looked.
    let honest = proof(&mut a, Purpose::Record);
    let record = read(&honest).expect("A's record");
    let numbers: Vec<&str> = record["coverages"].as_array().unwrap().iter().filter_map(|c| c["coverage"]["number"].as_str()).collect();
    assert_eq!(numbers, [A.number], "{record}");
    assert_eq!(record["coverages"][0]["coverage"]["name"], A.name);
    let consents = record["consents"].as_array().unwrap();
    assert!(consents.iter().any(|c| c["institution_code"] == CLINIC && c["scope"] == "drug" && c["in_force"] == true), "{record}");
    let log = record["access_log"]["entries"].as_array().unwrap();
    assert!(log.iter().any(|e| e["by"] == CLINIC && e["action"] == "verify_card" && e["code"] == "1"), "{record}");
    assert!(log.iter().any(|e| e["by"] == "patient" && e["action"] == "view_own_record"), "the read itself is recorded: {record}");

    // The same proof again: the challenge was used.
    assert_eq!(refusal(read(&honest)), "CHALLENGE_UNKNOWN");
    // B's card signs, A's public certificate is sent: whose record it is cannot be chosen.
    let mut forged = proof(&mut b, Purpose::Record);
    forged.certificate = a.certificate_pem().to_string();
    assert_eq!(refusal(read(&forged)), "CARD_SIGNATURE_INVALID");
    // A signature A gave for another purpose (reading her access log) does not open the record.
    let other_purpose = proof(&mut a, Purpose::AccessLog);
    assert_eq!(refusal(read(&other_purpose)), "CARD_SIGNATURE_INVALID");
    // B reads his own, and sees none of A's.
    let record_b = read(&proof(&mut b, Purpose::Record)).expect("B's record");
    assert_eq!(record_b["coverages"][0]["coverage"]["number"], B.number);
    assert!(record_b["consents"].as_array().unwrap().is_empty(), "{record_b}");
    let log_b = record_b["access_log"]["entries"].as_array().unwrap();
    assert!(!log_b.iter().any(|e| e["action"] == "verify_card"), "A's check is not in B's log: {record_b}");

    // A card flagged as linked to the wrong person may be someone else's: its record then holds
    // the report about this card and nothing of the person it is linked to.
    let filed = honouring_retry_after(|| {
        world.runtime.block_on(flow::flag_as_holder(&anonymous, &mut a, PIN, "not my coverage")).map_err(center_error)
    })
    .unwrap();
    let flagged = read(&proof(&mut a, Purpose::Record)).expect("the flag's state");
    assert_eq!(flagged["blocked"], true, "{flagged}");
    assert!(flagged["coverages"].as_array().unwrap().is_empty() && flagged["consents"].as_array().unwrap().is_empty(), "{flagged}");
    assert!(flagged["access_log"]["entries"].as_array().unwrap().is_empty(), "{flagged}");
    let reports = flagged["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{flagged}");
    assert_eq!((reports[0]["report_id"].as_i64(), reports[0]["state"].as_str()), (Some(filed.report_id), Some("open")));
}
