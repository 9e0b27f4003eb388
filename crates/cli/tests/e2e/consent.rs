//! Consent and medical information with a clock the test moves: the real center code over
//! real TLS, started in this process so that its clock can be injected.

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use onshi_center::server::{CenterState, serve};
use onshi_domain::Timestamp;
use onshi_store::sqlite::{SqliteOptions, SqliteRegister};
use serde_json::json;

use crate::common::{CLINIC, OTHER_CLINIC, onshi, run_ok};

struct World {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    url: String,
    /// Seconds added to the system clock.
    offset: Arc<AtomicI64>,
}

const PERSON: &str = "consent-person-1";
/// 法別 54 (指定難病), 東京都 (13), and a recipient number, each with its check digit.
const NANBYO_PAYER: &str = "54136015";
const NANBYO_RECIPIENT: &str = "0000026";

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let event = json!({
            "event_id": "e1", "kind": "acquire", "insurer_number": "06130488", "person_ref": PERSON,
            "card": {"symbol": "12", "number": "345", "branch": "00"},
            "occurred_on": "20200401", "notified_at": "20200402090000",
            "member": {"relationship": "1", "card_classification": "01", "name": "試験　花子", "name_kana": "シケン　ハナコ",
                       "sex": "2", "birth_date": "19600101"},
            "terms": {"income_class": "general"}
        });
        std::fs::write(root.join("events.jsonl"), format!("{event}\n")).unwrap();
        run_ok(onshi().args(["center", "import", "--db"]).arg(root.join("center.sqlite")).arg(root.join("events.jsonl")));
        let drug = |on: &str, arrived: &str, code: &str| {
            json!({"kind": "drug", "person_ref": PERSON, "drug_code": code,
            "drug_name": "アムロジピン錠５ｍｇ", "quantity": 28.0, "unit": "錠", "days": 28, "dispensed_on": on,
            "dispensed_by": "1341040010", "source": "claim", "arrived_on": arrived})
        };
        let checkup = json!({"kind": "checkup", "person_ref": PERSON, "item_code": "9N001000000000001", "item_name": "身長",
            "value": "158.0", "unit": "cm", "examined_on": "20260601", "arrived_on": "20260720"});
        let stranger = json!({"kind": "checkup", "person_ref": "nobody", "item_code": "9N001000000000001", "item_name": "身長",
            "value": "170.0", "unit": "cm", "examined_on": "20260601", "arrived_on": "20260720"});
        let lines = [drug("20260801", "20260915", "610443047"), drug("20260901", "20261014", "620098801"), checkup, stranger];
        std::fs::write(root.join("medical.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let imported = onshi()
            .args(["center", "import-medical", "--db"])
            .arg(root.join("center.sqlite"))
            .arg(root.join("medical.jsonl"))
            .output()
            .unwrap();
        assert_eq!(imported.status.code(), Some(3), "the unknown person's line is refused, the rest added");
        assert!(String::from_utf8_lossy(&imported.stderr).contains("3 added, 0 already present, 1 refused"));
        // Two 受給者証 from two payers: a 指定難病 one the clinic may see, and a 自立支援 one its
        // payer withheld (DV): never shown.
        let grant = |id: &str, payer: &str, recipient: &str, name: &str, withheld: bool| {
            json!({"event_id": id, "kind": "grant", "payer_number": payer, "recipient_number": recipient, "person_ref": PERSON,
                   "occurred_on": "20260101", "notified_at": "20260105100000",
                   "certificate": {"name": name, "valid_to": "20301231", "self_pay_cap_yen": 10000,
                                   "designated_institutions": [CLINIC], "withheld": withheld}})
        };
        let lines = [
            grant("s1", NANBYO_PAYER, NANBYO_RECIPIENT, "特定医療費（指定難病）受給者証", false),
            grant("s2", "21136015", "0000018", "自立支援医療受給者証（精神通院）", true),
        ];
        std::fs::write(root.join("subsidies.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        run_ok(onshi().args(["center", "import-subsidies", "--db"]).arg(root.join("center.sqlite")).arg(root.join("subsidies.jsonl")));

        run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(root.join("pki")));
        for code in [CLINIC, OTHER_CLINIC] {
            run_ok(onshi().args(["center", "pki", "issue-institution", "--code", code, "--dir"]).arg(root.join("pki")));
        }
        run_ok(onshi().args(["jpki", "init", "--dir"]).arg(root.join("jpki")));
        run_ok(onshi().args(["jpki", "crl", "--dir"]).arg(root.join("jpki")));

        let offset = Arc::new(AtomicI64::new(0));
        let clock_offset = offset.clone();
        let clock: onshi_center::server::Clock =
            Arc::new(move || Timestamp::from_jst_seconds(onshi_pki::now().jst_seconds() + clock_offset.load(Ordering::SeqCst)));
        let register = Arc::new(SqliteRegister::open(&root.join("center.sqlite"), SqliteOptions::SERVER).unwrap());
        let read = |name: &str| std::fs::read_to_string(root.join("pki").join(name)).unwrap();
        let tls = onshi_pki::server_tls_config(&read("ca.pem"), &read("server.pem"), &read("server.key")).unwrap();
        let audit = onshi_store::audit::AuditLog::open(&root.join("center.audit.sqlite"), b"an audit key for this test only..").unwrap();
        let state = Arc::new(CenterState {
            card: onshi_center::card::CardPath::new(register.clone(), Some(&root.join("jpki"))).unwrap(),
            audit: onshi_center::audit::AuditSink::start(audit),
            medical: register.clone(),
            subsidies: register.clone(),
            home: register.clone(),
            register,
            lags: Default::default(),
            metrics: Default::default(),
            clock,
            started: std::time::Instant::now(),
            rate: onshi_center::rate::RateLimiter::new(onshi_center::rate::DEFAULT_PER_SECOND),
            patient_rate: onshi_center::rate::RateLimiter::new(onshi_center::server::PATIENT_REQUESTS_PER_SECOND),
            attribute_quota: onshi_center::rate::DailyQuota::new(onshi_center::attributes::ATTRIBUTE_SEARCHES_PER_DAY),
            subsidy_misses: onshi_center::rate::DailyQuota::new(onshi_center::subsidy::SUBSIDY_MISSES_PER_DAY),
            dashboard: Default::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let addr = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let running = serve(listener, tls, state).unwrap();
            let addr = running.addr;
            std::mem::forget(running); // served until the runtime is dropped with the test
            addr
        });
        let world = World { dir, runtime, url: format!("https://{addr}"), offset };
        run_ok(onshi().args(["reader", "init", "--id", "r1", "--facility-password", "p", "--out"]).arg(world.path("reader.json")));
        run_ok(onshi().args(["reader", "register", "--reader"]).arg(world.path("reader.json")).args(world.center_args(CLINIC)));
        run_ok(onshi().args(["jpki", "issue", "--dir"]).arg(world.path("jpki")).arg("--out").arg(world.path("card.json")).args([
            "--person-ref",
            PERSON,
            "--name",
            "試験 花子",
            "--kana",
            "シケン ハナコ",
            "--birth",
            "19600101",
            "--sex",
            "2",
            "--address",
            "東京都",
            "--pin",
            "1234",
        ]));
        run_ok(
            onshi()
                .args(["card", "link", "--card"])
                .arg(world.path("card.json"))
                .arg("--reader")
                .arg(world.path("reader.json"))
                .args(world.center_args(CLINIC))
                .args(["--pin", "1234"]),
        );
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn center_args(&self, code: &str) -> Vec<String> {
        crate::common::institution_args(&self.url, &self.path("pki"), code)
    }

    fn verify(&self, consent: &str) -> serde_json::Value {
        let mut command = onshi();
        command
            .args(["card", "verify", "--json", "--pin", "1234", "--card"])
            .arg(self.path("card.json"))
            .arg("--reader")
            .arg(self.path("reader.json"))
            .args(self.center_args(CLINIC));
        if !consent.is_empty() {
            command.args(["--consent", consent]);
        }
        serde_json::from_slice(&run_ok(&mut command).stdout).unwrap()
    }

    fn view(&self, what: &str, code: &str) -> Output {
        onshi()
            .args(["medical", what, "--json", "--insurer", "06130488", "--symbol", "12", "--number", "345", "--branch", "00"])
            .args(self.center_args(code))
            .output()
            .unwrap()
    }

    fn advance_hours(&self, hours: i64) {
        self.offset.fetch_add(hours * 3600, Ordering::SeqCst);
    }
}

fn refused_with(output: &Output, code: &str) {
    assert!(!output.status.success(), "expected {code}: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(code), "expected {code} in {stderr}");
}

fn flags(answer: &serde_json::Value) -> Vec<String> {
    [
        "pharmacists_info",
        "specific_health_checkups_info",
        "diagnosis_info",
        "limit_application_certificate_related",
        "specific_diseases_certificate_related",
    ]
    .iter()
    .map(|k| answer["consents"][k]["flag"].as_str().unwrap().to_string())
    .collect()
}

#[test]
fn consent_given_not_given_and_expired_decide_what_is_shown() {
    let world = World::new();
    let _keep = &world.runtime;

    let none = world.verify("");
    assert_eq!(flags(&none), ["0", "0", "0", "0", "0"], "no consent yet");
    refused_with(&world.view("drugs", CLINIC), "CONSENT_NOT_GIVEN");

    let given = world.verify("drug,limit");
    assert_eq!(flags(&given), ["1", "0", "0", "1", "0"]);
    let drug = &given["consents"]["pharmacists_info"];
    let (time, until) = (drug["consent_time"].as_str().unwrap(), drug["available_time"].as_str().unwrap());
    let seconds = |t: &str| Timestamp::parse(t).unwrap().jst_seconds();
    assert_eq!(seconds(until) - seconds(time), 24 * 3600, "viewable for 24 hours");

    let drugs = world.view("drugs", CLINIC);
    assert!(drugs.status.success(), "{}", String::from_utf8_lossy(&drugs.stderr));
    let drugs: serde_json::Value = serde_json::from_slice(&drugs.stdout).unwrap();
    assert_eq!(drugs["records"].as_array().unwrap().len(), 2);
    assert_eq!(drugs["records"][0]["dispensed_on"], "20260901", "newest first");
    assert_eq!(drugs["newest_arrived_on"], "20261014");
    assert!(drugs["newest_age_days"].as_i64().unwrap() >= 0, "the age of the newest record is stated");
    refused_with(&world.view("checkups", CLINIC), "CONSENT_NOT_GIVEN");
    refused_with(&world.view("drugs", OTHER_CLINIC), "CONSENT_NOT_GIVEN");

    let checkup_consent = world.verify("checkup");
    assert_eq!(flags(&checkup_consent)[1], "1");
    let checkups: serde_json::Value = serde_json::from_slice(&world.view("checkups", CLINIC).stdout).unwrap();
    assert_eq!(checkups["records"][0]["item_name"], "身長");

    // A list current over the day to come: the default one is due tomorrow (a date), which
    // 25 hours on is already past when this runs in the last hour of a Japanese day.
    run_ok(onshi().args(["jpki", "crl", "--days", "3", "--dir"]).arg(world.path("jpki")));
    world.advance_hours(25);
    refused_with(&world.view("drugs", CLINIC), "CONSENT_EXPIRED");
    let later = world.verify("");
    assert_eq!(flags(&later), ["2", "2", "0", "2", "0"], "expired consents answer flag 2");
    let renewed = world.verify("drug");
    assert_eq!(flags(&renewed)[0], "1", "a new consent at the reader");
    assert!(world.view("drugs", CLINIC).status.success());
}

#[test]
fn a_challenge_expires_after_sixty_seconds() {
    let world = World::new();
    let pki = world.path("pki");
    let client = onshi_api::client::CenterClient::new(onshi_api::client::ClientConfig {
        base_url: world.url.clone(),
        ca_pem: std::fs::read(pki.join("ca.pem")).unwrap(),
        identity_pem: Some((
            std::fs::read(pki.join(format!("institutions/{CLINIC}.pem"))).unwrap(),
            std::fs::read(pki.join(format!("institutions/{CLINIC}.key"))).unwrap(),
        )),
        timeout: std::time::Duration::from_secs(30),
    })
    .unwrap();
    let mut reader = onshi_reader::SimulatedReader::new(onshi_reader::ReaderFile::load(&world.path("reader.json")).unwrap());
    reader.place_card(&world.path("card.json")).unwrap();
    world.runtime.block_on(async {
        let proof = onshi_reader::flow::prove_verify(&client, &mut reader, onshi_reader::flow::How::Pin("1234"), &Default::default())
            .await
            .unwrap();
        world.offset.fetch_add(61, Ordering::SeqCst);
        let request = onshi_api::card::VerifyCard { proof, date_of_care: None, consent: Default::default(), chosen_at: None };
        match client.post_json::<_, onshi_api::card::CardAnswer>("/verify/card", &request).await {
            Err(onshi_api::client::ClientError::Refused { body, .. }) => assert_eq!(body.error.code, "CHALLENGE_EXPIRED"),
            other => panic!("an expired challenge must be refused, got {other:?}"),
        }
        let fresh = onshi_reader::flow::prove_verify(&client, &mut reader, onshi_reader::flow::How::Pin("1234"), &Default::default())
            .await
            .unwrap();
        world.offset.fetch_add(59, Ordering::SeqCst);
        let request = onshi_api::card::VerifyCard { proof: fresh, date_of_care: None, consent: Default::default(), chosen_at: None };
        assert!(client.post_json::<_, onshi_api::card::CardAnswer>("/verify/card", &request).await.is_ok(), "59 seconds is in time");
    });
}

#[test]
fn a_card_revocation_list_past_its_next_update_trusts_no_card_until_a_new_one_is_out() {
    let world = World::new();
    let _keep = &world.runtime;
    assert_eq!(world.verify("")["validity"]["code"], "1");
    // `onshi jpki crl` publishes a list whose next update is due tomorrow; two days on, it may
    // miss revocations made since.
    world.advance_hours(49);
    let stale = onshi()
        .args(["card", "verify", "--json", "--pin", "1234", "--card"])
        .arg(world.path("card.json"))
        .arg("--reader")
        .arg(world.path("reader.json"))
        .args(world.center_args(CLINIC))
        .output()
        .unwrap();
    refused_with(&stale, "CARD_PATH_UNAVAILABLE");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("stale"), "{}", String::from_utf8_lossy(&stale.stderr));
    run_ok(onshi().args(["jpki", "crl", "--days", "5", "--dir"]).arg(world.path("jpki")));
    assert_eq!(world.verify("")["validity"]["code"], "1", "a current list is taken without a restart");
}

/// 「医療費助成の各種受給者証を利用しますか」 through the real server: no answer shows a 受給者証
/// unless the patient said yes in the signed consent; a yes shows the one the clinic may use and
/// never the one its payer withheld; the yes is not kept for the next check; and a yes added to
/// the request after the card signed is refused as a forged consent.
#[test]
fn a_subsidy_is_shown_only_when_the_patient_says_yes_at_the_reader() {
    let world = World::new();
    let _keep = &world.runtime;
    let shown = |answer: &serde_json::Value| -> Vec<String> {
        answer["subsidies"]
            .as_array()
            .map(|list| list.iter().map(|s| s["recipient_number"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    assert!(shown(&world.verify("")).is_empty(), "no yes at the reader: nothing shown");
    let yes = world.verify("subsidy");
    assert_eq!(shown(&yes), [NANBYO_RECIPIENT], "the one the clinic may see, not the withheld one");
    let subsidy = &yes["subsidies"][0];
    assert_eq!(subsidy["payer_number"], NANBYO_PAYER);
    assert_eq!(subsidy["law"]["code"], "54");
    assert_eq!(subsidy["self_pay_cap_yen"], 10000);
    assert_eq!(subsidy["designated"], true, "this clinic is the designated one");
    assert!(shown(&world.verify("drug")).is_empty(), "a yes is for that check only");
}

/// 居宅同意取得型 (issue 15, item 3) through the real server with a clock the test moves: the
/// patient's card check at home carries a consent to re-confirm until a day; later visits
/// re-confirm (再照会) by its key without the card — for that clinic only, within the period
/// only; a period past a year is refused before anything is recorded. (A consent added to the
/// request after the card signed is refused: `trust::consent_is_what_the_patient_signed…`.)
#[test]
fn a_home_care_consent_lets_later_visits_reconfirm_without_the_card_within_its_period() {
    let world = World::new();
    let _keep = &world.runtime;
    let today = Timestamp::from_jst_seconds(onshi_pki::now().jst_seconds() + world.offset.load(Ordering::SeqCst)).date();
    let card_check = |home: &str| {
        onshi()
            .args(["card", "verify", "--json", "--pin", "1234", "--card"])
            .arg(world.path("card.json"))
            .arg("--reader")
            .arg(world.path("reader.json"))
            .args(world.center_args(CLINIC))
            .args(["--home", home])
            .output()
            .unwrap()
    };
    refused_with(&card_check(&format!("visit:{}", today.add_days(400).yyyymmdd())), "HOME_CARE_INVALID");
    let given = card_check(&format!("visit:{}", today.add_days(30).yyyymmdd()));
    assert!(given.status.success(), "{}", String::from_utf8_lossy(&given.stderr));
    let given: serde_json::Value = serde_json::from_slice(&given.stdout).unwrap();
    let consent = &given["home_consent"];
    assert_eq!(consent["kind"], "visit");
    assert_eq!(consent["valid_to"].as_str(), Some(today.add_days(30).yyyymmdd().as_str()));
    let key = consent["key"].as_str().expect("a key").to_string();
    assert_eq!(key.len(), 32, "sixteen random bytes");

    let reverify = |code: &str| {
        onshi().args(["card", "home-reverify", "--json", "--consent-key", &key]).args(world.center_args(code)).output().unwrap()
    };
    let later = reverify(CLINIC);
    assert!(later.status.success(), "{}", String::from_utf8_lossy(&later.stderr));
    let later: serde_json::Value = serde_json::from_slice(&later.stdout).unwrap();
    assert_eq!((later["validity"]["code"].as_str(), later["coverage"]["number"].as_str()), (Some("1"), Some("345")));
    refused_with(&reverify(OTHER_CLINIC), "HOME_CONSENT_UNKNOWN");
    world.advance_hours(20 * 24);
    assert!(reverify(CLINIC).status.success(), "day 20 of 30");
    world.advance_hours(11 * 24);
    refused_with(&reverify(CLINIC), "HOME_CONSENT_EXPIRED");

    // A new consent, withdrawn by the patient with their own card: no 再照会 from that day on.
    // (A month on, the card authority has published its revocation list again.)
    run_ok(onshi().args(["jpki", "crl", "--days", "60", "--dir"]).arg(world.path("jpki")));
    let today = Timestamp::from_jst_seconds(onshi_pki::now().jst_seconds() + world.offset.load(Ordering::SeqCst)).date();
    let given = card_check(&format!("visit:{}", today.add_days(30).yyyymmdd()));
    assert!(given.status.success(), "{}", String::from_utf8_lossy(&given.stderr));
    let given: serde_json::Value = serde_json::from_slice(&given.stdout).unwrap();
    let key = given["home_consent"]["key"].as_str().expect("a key").to_string();
    let again =
        || onshi().args(["card", "home-reverify", "--json", "--consent-key", &key]).args(world.center_args(CLINIC)).output().unwrap();
    assert!(again().status.success());
    let withdrawn = onshi()
        .args(["audit", "withdraw-consent", "--institution", CLINIC, "--scope", "home", "--pin", "1234", "--center", &world.url, "--ca"])
        .arg(world.path("pki/ca.pem"))
        .arg("--card")
        .arg(world.path("card.json"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&withdrawn.stdout).contains("home"), "{}", String::from_utf8_lossy(&withdrawn.stderr));
    // It began today, so nothing of it remains: its key is unknown from now on.
    refused_with(&again(), "HOME_CONSENT_UNKNOWN");
}

/// オンライン診療 (issue 15, item 3): the patient consents on their own device with their own
/// card and PIN (no clinic certificate); the consent lands in that clinic's list (`OQSmuonq`'s
/// source) with a key that re-confirms their coverage without the card, and in nobody else's;
/// the patient's own access log shows both the consent and the clinic's look.
#[test]
fn a_patient_consents_to_online_care_from_their_own_device_and_it_lands_in_the_clinics_list() {
    let world = World::new();
    let today = Timestamp::from_jst_seconds(onshi_pki::now().jst_seconds() + world.offset.load(Ordering::SeqCst)).date();
    let patient = |args: &[&str]| {
        let mut command = onshi();
        command
            .args(args)
            .args(["--pin", "1234", "--center", &world.url, "--ca"])
            .arg(world.path("pki/ca.pem"))
            .arg("--card")
            .arg(world.path("card.json"));
        command.output().unwrap()
    };
    let until = today.add_days(90).yyyymmdd();
    let given = patient(&["audit", "online-consent", "--institution", CLINIC, "--until", &until]);
    assert!(given.status.success(), "{}", String::from_utf8_lossy(&given.stderr));
    assert!(String::from_utf8_lossy(&given.stdout).contains("オンライン診療に同意しました"));
    refused_with(&patient(&["audit", "online-consent", "--institution", CLINIC, "--until", "20991231"]), "HOME_CARE_INVALID");

    let client = |code: &str| {
        let pki = world.path("pki");
        onshi_api::client::CenterClient::new(onshi_api::client::ClientConfig {
            base_url: world.url.clone(),
            ca_pem: std::fs::read(pki.join("ca.pem")).unwrap(),
            identity_pem: Some((
                std::fs::read(pki.join(format!("institutions/{code}.pem"))).unwrap(),
                std::fs::read(pki.join(format!("institutions/{code}.key"))).unwrap(),
            )),
            timeout: std::time::Duration::from_secs(30),
        })
        .unwrap()
    };
    let window =
        onshi_api::card::HomeListRequest { kind: onshi_api::card::HomeCareKind::Online, from: today.yyyymmdd(), to: today.yyyymmdd() };
    let (ours, theirs) = world
        .runtime
        .block_on(async { (client(CLINIC).home_list(&window).await.unwrap(), client(OTHER_CLINIC).home_list(&window).await.unwrap()) });
    assert_eq!(ours.entries.len(), 1, "{ours:?}");
    assert!(theirs.entries.is_empty(), "another clinic's list does not have it");
    let entry = &ours.entries[0];
    assert_eq!((entry.consent.valid_to.as_str(), entry.answer.validity.code.as_str()), (until.as_str(), "1"));
    let visits = onshi_api::card::HomeListRequest { kind: onshi_api::card::HomeCareKind::Visit, ..window };
    assert!(
        world.runtime.block_on(client(CLINIC).home_list(&visits)).unwrap().entries.is_empty(),
        "an online consent is not a home visit's"
    );
    let reverified = onshi()
        .args(["card", "home-reverify", "--json", "--consent-key", &entry.consent.key])
        .args(world.center_args(CLINIC))
        .output()
        .unwrap();
    assert!(reverified.status.success(), "{}", String::from_utf8_lossy(&reverified.stderr));

    // The patient's own record lists the consent beside the others (scope home, no key).
    let record = world.runtime.block_on(async {
        let anonymous = onshi_api::client::CenterClient::new(onshi_api::client::ClientConfig {
            base_url: world.url.clone(),
            ca_pem: std::fs::read(world.path("pki/ca.pem")).unwrap(),
            identity_pem: None,
            timeout: std::time::Duration::from_secs(30),
        })
        .unwrap();
        let mut reader = onshi_reader::SimulatedReader::new(onshi_reader::ReaderFile::load(&world.path("reader.json")).unwrap());
        reader.place_card(&world.path("card.json")).unwrap();
        onshi_reader::flow::own_record(&anonymous, &mut reader, "1234").await.unwrap()
    });
    let home: Vec<&onshi_api::card::PatientConsent> = record.consents.iter().filter(|c| c.scope == "home").collect();
    assert_eq!(home.len(), 1, "{:?}", record.consents);
    assert_eq!((home[0].institution_code.as_str(), home[0].in_force), (CLINIC, true));
    assert!(home[0].available_until.starts_with(&until));
    assert!(!serde_json::to_string(&record).unwrap().contains(&entry.consent.key), "the key stays with the clinic");

    let log = patient(&["audit", "access-log", "--json"]);
    let log: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap();
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["give_online_consent", "verify_home_list", "reverify_home"] {
        assert!(actions.contains(&action), "{action} in the patient's own log: {actions:?}");
    }
}
