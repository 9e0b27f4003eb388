//! 公費 and local subsidies through the real server (issue 15, item 1): a payer registers only
//! its own recipients, with its own certificate; a clinic asks by the numbers on a 受給者証 and
//! gets what the payers' own timeline says; the attacks on both are refused.

use onshi_api::client::ClientError;
use onshi_api::subsidy::{SubsidyEvent, VerifySubsidyRequest, state};
use onshi_synth::subsidy::{SUBSIDY_FILE, SUBSIDY_TRUTH_FILE, check_subsidy};

use crate::common::{CLINIC, Fixture, Server, onshi, run_ok};

fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, body }) => (status, body.error.code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// One payer uploads its events over HTTPS with its certificate (the operator imports the other
/// payers' files), with four hostile lines among them: another payer's recipient, a My Number
/// field, a recipient moved to another person, and a birth date the payer may not send. Then
/// every kind of by-numbers question is asked and compared with the payers' timeline, and the
/// wrong certificates are refused at each endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_payer_registers_only_its_own_recipients_and_a_clinic_sees_only_what_it_may() {
    let fixture = Fixture::new(2_000);
    let synth = fixture.root().join("synth");
    let events: Vec<SubsidyEvent> =
        std::fs::read_to_string(synth.join(SUBSIDY_FILE)).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let cases = onshi_synth::read_subsidy_truth(&synth.join(SUBSIDY_TRUTH_FILE)).unwrap();
    let valid = cases.iter().find(|c| c.state == state::VALID).expect("a valid 受給者証 in the world");
    let payer = valid.request.payer_number.clone();
    let (own, others): (Vec<&SubsidyEvent>, Vec<&SubsidyEvent>) = events.iter().partition(|e| e.payer_number == payer);

    // The operator imports every other payer's file before the center starts.
    let rest = synth.join("other-payers.jsonl");
    std::fs::write(&rest, others.iter().map(|e| format!("{}\n", serde_json::to_string(e).unwrap())).collect::<String>()).unwrap();
    run_ok(onshi().args(["center", "import-subsidies", "--db"]).arg(fixture.db()).arg(&rest));
    run_ok(onshi().args(["center", "pki", "issue-payer", "--number", &payer, "--dir"]).arg(fixture.pki()));
    let server = Server::start(&fixture);
    let payer_client = server.client(&fixture, Some(&format!("payers/{payer}")));
    let clinic = server.client(&fixture, Some(&format!("institutions/{CLINIC}")));

    // A recipient of a payer that registers nothing, claimed by this payer's certificate.
    let unconnected = cases.iter().find(|c| c.state == state::PAYER_NOT_CONNECTED).expect("a payer that registers nothing");
    let mut foreign = (*own[0]).clone();
    foreign.event_id = "attack-1".into();
    foreign.payer_number = unconnected.request.payer_number.clone();
    foreign.recipient_number = unconnected.request.recipient_number.clone();
    // The valid case's recipient, moved to someone else.
    let mut moved = own.iter().find(|e| e.recipient_number == valid.request.recipient_number).map(|e| (*e).clone()).unwrap();
    moved.event_id = "attack-2".into();
    moved.person_ref = "someone-else".into();
    moved.occurred_on = valid.request.date_of_care.clone();
    let line = |e: &SubsidyEvent| serde_json::to_string(e).unwrap();
    let with_my_number = line(own[0]).replacen('{', r#"{"my_number":"123456789012","#, 1);
    let with_birth_date = line(own[0]).replacen('{', r#"{"birth_date":"19800101","#, 1);
    let mut body: Vec<String> = own.iter().map(|e| line(e)).collect();
    body.extend([line(&foreign), with_my_number, line(&moved), with_birth_date]);
    let report = payer_client.upload_subsidy_events(body.join("\n")).await.expect("an upload report");
    assert_eq!((report.applied, report.rejected_total), (own.len() as u64, 4), "{report:?}");
    let fields: Vec<&str> = report.rejected.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(fields, ["payer_number", "my_number", "person_ref", "birth_date"], "{report:?}");
    let again = payer_client.upload_subsidy_events(own.iter().map(|e| line(e)).collect::<Vec<_>>().join("\n")).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, own.len() as u64), "the same events again change nothing");

    // Every question, against the payers' own timeline: the refused lines changed nothing (the
    // unconnected payer still registers nothing; the moved recipient is still its holder's).
    let mut asked = std::collections::BTreeMap::<&str, usize>::new();
    for case in &cases {
        let count = asked.entry(case.category.as_str()).or_default();
        if *count >= 40 {
            continue;
        }
        *count += 1;
        let answer = clinic.verify_subsidy(&case.request).await.expect("an answer");
        check_subsidy(&answer, case).unwrap();
    }
    for category in ["subsidy_valid", "subsidy_withheld", "subsidy_ended", "subsidy_wrong_birth_date", "subsidy_payer_not_connected"] {
        assert!(asked.contains_key(category), "the world has a {category} case: {asked:?}");
    }
    assert_eq!(clinic.verify_subsidy(&unconnected.request).await.unwrap().state, state::PAYER_NOT_CONNECTED);
    assert_eq!(clinic.verify_subsidy(&valid.request).await.unwrap().state, state::VALID);

    // A programme that is not a welfare office issues a 医療券 for its own recipient: refused,
    // only 法別 12 issues them.
    let mut ticket = (*own[0]).clone();
    ticket.event_id = "attack-ticket".into();
    ticket.kind = onshi_api::subsidy::SubsidyEventKind::Ticket;
    ticket.certificate = None;
    ticket.ticket = Some(onshi_api::subsidy::MedicalTicket {
        ticket_type: "01".into(),
        valid_from: valid.request.date_of_care.clone(),
        valid_to: valid.request.date_of_care.clone(),
        issue_number: "K-1".into(),
        month: valid.request.date_of_care[..6].to_string(),
        institution_code: CLINIC.into(),
        institution_name: "オンシ医院".into(),
        injuries: vec![],
        treatment_type: "02".into(),
        self_pay_yen: 0,
        combined: false,
    });
    let refused = payer_client.upload_subsidy_events(line(&ticket)).await.unwrap();
    assert_eq!((refused.applied, refused.rejected.iter().map(|r| r.field.as_str()).collect::<Vec<_>>()), (0, vec!["kind"]), "{refused:?}");

    // The wrong certificates, endpoint by endpoint.
    let insurer = server.client(&fixture, Some(&format!("insurers/{}", fixture.insurer)));
    let anonymous = server.client(&fixture, None);
    let one = line(own[0]);
    assert_eq!(refusal(clinic.upload_subsidy_events(one.clone()).await), (403, "WRONG_ROLE".into()), "a clinic is no payer");
    assert_eq!(refusal(insurer.upload_subsidy_events(one.clone()).await), (403, "WRONG_ROLE".into()), "an insurer is no payer");
    assert_eq!(refusal(anonymous.upload_subsidy_events(one).await), (401, "CLIENT_CERTIFICATE_REQUIRED".into()));
    assert_eq!(refusal(payer_client.verify_subsidy(&valid.request).await), (403, "WRONG_ROLE".into()), "a payer asks nothing");
    assert_eq!(refusal(payer_client.upload_events(line(own[0])).await), (403, "WRONG_ROLE".into()), "a payer writes no coverage");
    assert_eq!(refusal(anonymous.verify_subsidy(&valid.request).await), (401, "CLIENT_CERTIFICATE_REQUIRED".into()));
    let mismatch = VerifySubsidyRequest { institution_code: Some(crate::common::OTHER_CLINIC.into()), ..valid.request.clone() };
    assert_eq!(refusal(clinic.verify_subsidy(&mismatch).await), (403, "INSTITUTION_MISMATCH".into()));
    let bad = VerifySubsidyRequest { recipient_number: "1234567".into(), ..valid.request.clone() };
    let (status, code) = refusal(clinic.verify_subsidy(&bad).await);
    assert_eq!((status, code.as_str()), (400, "INVALID_RECIPIENT_NUMBER"), "a recipient number with a wrong check digit");
}

/// Trying birth dates against the numbers of someone's 受給者証: the clinic's questions that
/// found nothing run out for the day (`--subsidy-misses-per-day`), after which even a right
/// guess is refused; questions that found the certificate do not count; another clinic keeps
/// its own day.
#[tokio::test(flavor = "multi_thread")]
async fn guessing_birth_dates_for_a_subsidy_runs_out_for_the_day() {
    let fixture = Fixture::new(2_000);
    let synth = fixture.root().join("synth");
    run_ok(onshi().args(["center", "import-subsidies", "--db"]).arg(fixture.db()).arg(synth.join(SUBSIDY_FILE)));
    let server = Server::start_with(&fixture.db(), &fixture.pki(), &["--subsidy-misses-per-day", "2"]);
    let clinic = server.client(&fixture, Some(&format!("institutions/{CLINIC}")));
    let cases = onshi_synth::read_subsidy_truth(&synth.join(SUBSIDY_TRUTH_FILE)).unwrap();
    let valid = cases.iter().find(|c| c.state == state::VALID).expect("a valid 受給者証").request.clone();
    let guess = |day: u32| VerifySubsidyRequest { birth_date: format!("1900010{day}"), ..valid.clone() };
    for _ in 0..3 {
        assert_eq!(clinic.verify_subsidy(&valid).await.unwrap().state, state::VALID, "found: not a miss");
    }
    assert_eq!(clinic.verify_subsidy(&guess(1)).await.unwrap().state, state::NOT_REGISTERED);
    assert_eq!(clinic.verify_subsidy(&guess(2)).await.unwrap().state, state::NOT_REGISTERED);
    assert_eq!(refusal(clinic.verify_subsidy(&guess(3)).await), (429, "SUBSIDY_MISSES_EXCEEDED".into()));
    assert_eq!(refusal(clinic.verify_subsidy(&valid).await), (429, "SUBSIDY_MISSES_EXCEEDED".into()), "the right guess too");
    let other = server.client(&fixture, Some(&format!("institutions/{}", crate::common::OTHER_CLINIC)));
    assert_eq!(other.verify_subsidy(&valid).await.unwrap().state, state::VALID, "another clinic's own day");
}
