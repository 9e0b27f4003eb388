//! The center over HTTPS with mutual TLS: every result code, consent, batch, insurer upload,
//! certificates, malformed input.

use onshi_api::client::ClientError;
use onshi_api::verify::{BatchVerifyRequest, VerifyNumberRequest};

use crate::common::{CLINIC, Engine, Fixture, OTHER_CLINIC, Server, onshi, run_ok};

fn clinic() -> String {
    format!("institutions/{CLINIC}")
}

async fn stats(client: &onshi_api::client::CenterClient) -> serde_json::Value {
    let (status, text) = client.get_raw("/v1/stats").await.expect("stats");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("stats json")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_center_answers_and_refuses_as_specified() {
    answers_and_refusals_on(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_center_answers_and_refuses_as_specified_on_postgres() {
    answers_and_refusals_on(Engine::Postgres).await;
}

/// A counter or gauge of the center's `/metrics`.
async fn metric(client: &onshi_api::client::CenterClient, name: &str) -> u64 {
    let (status, text) = client.get_raw("/metrics").await.expect("metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} in /metrics"))
        .trim()
        .parse()
        .expect("a count")
}

/// Once the card index is loaded, every verification by number is answered from it, with
/// exactly the ground truth's answers and no read of the register (SQLite: the index answers
/// only while nothing has been committed since it caught up; an insurer's upload then moves it
/// on, and the next answer holds the upload).
#[tokio::test(flavor = "multi_thread")]
async fn verifications_are_answered_from_the_card_index_exactly_as_the_register_would() {
    let fixture = Fixture::on(Engine::Sqlite, 3_000);
    let server = Server::start(&fixture);
    let client = server.client(&fixture, Some(&clinic()));
    crate::common::until("the card index is built", || async { (metric(&client, "onshi_card_index_persons").await > 0).then_some(()) })
        .await;
    let from_index = r#"onshi_card_index_reads_total{from="index"}"#;
    let from_register = r#"onshi_card_index_reads_total{from="register"}"#;
    let (index_before, register_before) = (metric(&client, from_index).await, metric(&client, from_register).await);
    let truth = fixture.truth();
    for case in &truth {
        let answer = client.verify_number(&case.request).await.unwrap_or_else(|e| panic!("{}: {e}", case.case));
        onshi_synth::check_answer(&answer, &case.expect).unwrap_or_else(|why| panic!("{} ({}): {why}", case.case, case.category));
        assert_eq!(answer.replica_as_of, None, "the index is never behind the file: nothing to say");
    }
    assert_eq!(metric(&client, from_index).await - index_before, truth.len() as u64, "one card view per verification, each from the index");
    assert_eq!(metric(&client, from_register).await, register_before, "none read from the register");

    // An upload commits to the file; the next answer holds it.
    let insurer = server.client(&fixture, Some(&format!("insurers/{}", fixture.insurer)));
    let event = format!(
        r#"{{"event_id":"index-1","kind":"acquire","insurer_number":"{}","person_ref":"index-person-1","card":{{"symbol":"77","number":"770001","branch":"00"}},"occurred_on":"20261101","notified_at":"20261102090000","member":{{"relationship":"1","card_classification":"01","name":"試験 一郎","name_kana":"ｼｹﾝ ｲﾁﾛｳ","sex":"1","birth_date":"19850505"}},"terms":{{"income_class":"general"}}}}"#,
        fixture.insurer
    );
    let request = crate::common::number_request(&fixture.insurer, "77", "770001");
    assert_eq!(client.verify_number(&request).await.unwrap().validity.code, "4", "該当資格なし before the upload");
    assert_eq!(insurer.upload_events(event).await.unwrap().applied, 1);
    assert_eq!(client.verify_number(&request).await.unwrap().validity.code, "1", "valid at once after the upload");
}

async fn answers_and_refusals_on(engine: Engine) {
    let fixture = Fixture::on(engine, 6_000);
    let server = Server::start(&fixture);
    let client = server.client(&fixture, Some(&clinic()));
    let truth = fixture.truth();

    // Every ground-truth case of every category, through the real API.
    let mut seen = std::collections::BTreeSet::new();
    for case in &truth {
        let answer = client.verify_number(&case.request).await.unwrap_or_else(|e| panic!("{}: {e}", case.case));
        onshi_synth::check_answer(&answer, &case.expect).unwrap_or_else(|why| panic!("{} ({}): {why}", case.case, case.category));
        seen.insert(answer.validity.code.clone());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["1", "2", "3", "4", "5"], "every result code occurs");
    // What a paper is worth occurs in every kind the ground truth writes out (issue 15, item 4).
    let worths: std::collections::BTreeSet<&str> = truth.iter().filter_map(|c| c.expect.document_worth.as_deref()).collect();
    assert_eq!(worths.into_iter().collect::<Vec<_>>(), ["accepted", "expired", "not_alone"], "the papers' worths occur");

    // The consent flag decides whether the limit category is shown.
    let with_limit = truth.iter().find(|c| c.category == "limit_with_consent").expect("a limit case");
    let mut request = with_limit.request.clone();
    request.limit_consent = true;
    let shown = client.verify_number(&request).await.unwrap();
    assert!(shown.coverage.as_ref().unwrap().limit.is_some());
    request.limit_consent = false;
    let hidden = client.verify_number(&request).await.unwrap();
    assert!(hidden.coverage.as_ref().unwrap().limit.is_none());
    assert!(shown.as_of.is_some() && shown.insurer_lag.is_some());

    // Batch: answers in order, a bad entry answered with its own error, limits enforced.
    let mut entries: Vec<VerifyNumberRequest> = truth.iter().take(50).map(|c| c.request.clone()).collect();
    entries.push(VerifyNumberRequest {
        insurer_number: "06130487".into(),
        number: "1".into(),
        birth_date: "19800101".into(),
        ..Default::default()
    });
    let response = client.verify_batch(&BatchVerifyRequest { institution_code: None, entries: entries.clone() }).await.unwrap();
    assert_eq!(response.results.len(), 51);
    for (result, case) in response.results.iter().take(50).zip(&truth) {
        assert_eq!(result.answer.as_ref().map(|a| a.validity.code.as_str()), Some(case.expect.validity.as_str()), "{}", case.case);
    }
    assert_eq!(response.results[50].error.as_ref().map(|e| e.code.as_str()), Some("INVALID_INSURER_NUMBER"));
    let too_many = BatchVerifyRequest { institution_code: None, entries: vec![entries[0].clone(); 10_001] };
    match client.verify_batch(&too_many).await {
        Err(ClientError::Refused { status: 400, body }) => assert_eq!(body.error.code, "BATCH_SIZE"),
        other => panic!("10,001 entries: {other:?}"),
    }
    let mut foreign_entry = entries[0].clone();
    foreign_entry.institution_code = Some(OTHER_CLINIC.into());
    let mixed = client
        .verify_batch(&BatchVerifyRequest { institution_code: None, entries: vec![entries[0].clone(), foreign_entry] })
        .await
        .unwrap();
    assert!(mixed.results[0].answer.is_some());
    assert_eq!(mixed.results[1].error.as_ref().map(|e| e.code.as_str()), Some("INSTITUTION_MISMATCH"));
    match client.verify_batch(&BatchVerifyRequest { institution_code: Some(OTHER_CLINIC.into()), entries: vec![entries[0].clone()] }).await
    {
        Err(ClientError::Refused { status: 403, body }) => assert_eq!(body.error.code, "INSTITUTION_MISMATCH"),
        other => panic!("batch naming another institution: {other:?}"),
    }
    let full = BatchVerifyRequest { institution_code: None, entries: vec![entries[0].clone(); 10_000] };
    assert_eq!(client.verify_batch(&full).await.unwrap().results.len(), 10_000);

    // No certificate: a clear refusal, not a bare handshake failure.
    let anonymous = server.client(&fixture, None);
    match anonymous.verify_number(&truth[0].request).await {
        Err(ClientError::Refused { status: 401, body }) => {
            assert_eq!(body.error.code, "CLIENT_CERTIFICATE_REQUIRED");
            assert!(!body.error.reception_ja.is_empty());
        }
        other => panic!("anonymous: {other:?}"),
    }
    assert_eq!(anonymous.get_raw("/v1/health").await.unwrap().0, 200, "health needs no certificate");

    // A certificate from another CA does not get through TLS.
    let stranger = tempfile::tempdir().unwrap();
    run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(stranger.path()));
    run_ok(onshi().args(["center", "pki", "issue-institution", "--code", CLINIC, "--dir"]).arg(stranger.path()));
    let forged = server.client_with_ca(
        &fixture.pki().join("ca.pem"),
        Some((stranger.path().join(format!("institutions/{CLINIC}.pem")), stranger.path().join(format!("institutions/{CLINIC}.key")))),
    );
    assert!(
        matches!(forged.verify_number(&truth[0].request).await, Err(ClientError::Transport { .. })),
        "a foreign CA's certificate must fail TLS"
    );

    // The institution comes from the certificate: a body naming another institution is refused,
    // and another institution's certificate works as itself.
    let mut body = serde_json::to_value(&truth[0].request).unwrap();
    body["institution_code"] = serde_json::json!(OTHER_CLINIC);
    let (status, text) = client.post_raw("/v1/verify/number", "application/json", body.to_string().into_bytes()).await.unwrap();
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("INSTITUTION_MISMATCH"), "{text}");
    let other = server.client(&fixture, Some(&format!("institutions/{OTHER_CLINIC}")));
    let (status, _) = other.post_raw("/v1/verify/number", "application/json", body.to_string().into_bytes()).await.unwrap();
    assert_eq!(status, 200, "the other clinic's own certificate may name itself");

    // Malformed input: a clear error naming the problem.
    let malformed: &[(&str, &[u8], u16, &str)] = &[
        ("not JSON", b"{insurer", 400, "MALFORMED_REQUEST"),
        ("not UTF-8", b"\xff\xfe{}", 400, "MALFORMED_REQUEST"),
        ("array", b"[]", 400, "MALFORMED_REQUEST"),
        ("missing birth date", br#"{"insurer_number":"06130488","number":"1"}"#, 400, "MALFORMED_REQUEST"),
        (
            "My Number field",
            br#"{"insurer_number":"06130488","number":"1","birth_date":"19800101","my_number":"123456789012"}"#,
            400,
            "MALFORMED_REQUEST",
        ),
        ("check digit", br#"{"insurer_number":"06130480","number":"1","birth_date":"19800101"}"#, 400, "INVALID_INSURER_NUMBER"),
        ("prefecture", br#"{"insurer_number":"06990001","number":"1","birth_date":"19800101"}"#, 400, "INVALID_INSURER_NUMBER"),
        ("birth date", br#"{"insurer_number":"06130488","number":"1","birth_date":"1980-01-01"}"#, 400, "INVALID_BIRTH_DATE"),
        (
            "date of care",
            br#"{"insurer_number":"06130488","number":"1","birth_date":"19800101","date_of_care":"20261332"}"#,
            400,
            "INVALID_DATE_OF_CARE",
        ),
        ("branch", br#"{"insurer_number":"06130488","number":"1","branch":"1a","birth_date":"19800101"}"#, 400, "INVALID_BRANCH"),
        ("empty number", br#"{"insurer_number":"06130488","number":"  ","birth_date":"19800101"}"#, 400, "INVALID_NUMBER"),
    ];
    for (what, body, status, code) in malformed {
        let (got, text) = client.post_raw("/v1/verify/number", "application/json", body.to_vec()).await.unwrap();
        assert_eq!((got, text.contains(&format!("\"code\":\"{code}\""))), (*status, true), "{what}: {got} {text}");
        let error: onshi_api::verify::ErrorBody = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert!(!error.error.detail.is_empty() && !error.error.reception_ja.is_empty(), "{what}");
    }
    let huge = vec![b' '; 20_000];
    assert_eq!(client.post_raw("/v1/verify/number", "application/json", huge).await.unwrap().0, 413);
    let (status, text) = client.get_raw("/v1/no-such-thing").await.unwrap();
    assert_eq!(status, 404, "{text}");

    // OpenAPI document and metrics.
    let (status, text) = anonymous.get_raw("/v1/openapi.json").await.unwrap();
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    for path in [
        "/v1/health",
        "/v1/verify/number",
        "/v1/verify/number/batch",
        "/v1/insurer/events",
        "/metrics",
        "/v1/card/challenge",
        "/v1/readers",
        "/v1/card/link",
        "/v1/verify/card",
        "/v1/card/report",
        "/v1/patient/flag",
        "/v1/patient/consent/withdraw",
        "/v1/insurer/link-reports",
        "/v1/insurer/link-review",
        "/v1/medical/drugs",
        "/v1/medical/checkups",
        "/v1/patient/challenge",
        "/v1/patient/access-log",
        "/v1/patient/record",
    ] {
        assert!(document["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let (_, metrics) = anonymous.get_raw("/metrics").await.unwrap();
    assert!(metrics.contains("onshi_verify_answers_total{validity=\"5\"}"), "{metrics}");
    assert!(metrics.contains("onshi_errors_total{code=\"INSTITUTION_MISMATCH\"} 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insurer_uploads_only_its_own_members() {
    let fixture = Fixture::new(2_000);
    let server = Server::start(&fixture);
    let insurer = server.client(&fixture, Some(&format!("insurers/{}", fixture.insurer)));
    let clinic = server.client(&fixture, Some(&clinic()));
    let before = stats(&clinic).await;

    let own = &fixture.insurer;
    let event = |id: &str, insurer_number: &str, number: &str| {
        format!(
            r#"{{"event_id":"{id}","kind":"acquire","insurer_number":"{insurer_number}","person_ref":"up-{id}","card":{{"symbol":"77","number":"{number}","branch":"00"}},"occurred_on":"20261101","notified_at":"20261102090000","member":{{"relationship":"1","card_classification":"01","name":"試験 一郎","name_kana":"ｼｹﾝ ｲﾁﾛｳ","sex":"1","birth_date":"19850505"}},"terms":{{"income_class":"general"}}}}"#
        )
    };
    let body = [
        event("u1", own, "990001"),
        event("u2", "06130488", "990002"),
        "{not json".to_string(),
        event("u3", own, "990003").replace("19850505", "19850230"),
        event("u4", own, "990004").replace(r#""person_ref":"up-u4""#, r#""person_ref":"123456789012""#),
        event("u5", own, "990005").replace(r#""terms""#, r#""my_number":"123456789012","terms""#),
    ]
    .join("\n");
    let report = insurer.upload_events(body.clone()).await.unwrap();
    assert_eq!((report.lines, report.applied, report.rejected_total), (6, 1, 5), "{report:?}");
    let fields: Vec<(u64, &str)> = report.rejected.iter().map(|r| (r.line, r.field.as_str())).collect();
    assert_eq!(fields, [(2, "insurer_number"), (3, "line"), (4, "member.birth_date"), (5, "person_ref"), (6, "my_number")]);
    assert!(report.rejected[0].reason.contains("only write its own"), "{:?}", report.rejected[0]);

    // Uploaded coverage answers at once; the same upload again changes nothing.
    let request = crate::common::number_request(own, "77", "990001");
    assert_eq!(clinic.verify_number(&request).await.unwrap().validity.code, "1");
    let again = insurer.upload_events(body).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 1));
    let after = stats(&clinic).await;
    assert_eq!(after["coverages"].as_u64().unwrap(), before["coverages"].as_u64().unwrap() + 1, "only the one good line was stored");

    // A clinic cannot upload, an insurer cannot verify, and nobody anonymous can do either.
    for (client, what) in [(&clinic, "clinic")] {
        match client.upload_events(event("x1", own, "990009")).await {
            Err(ClientError::Refused { status: 403, body }) => assert_eq!(body.error.code, "WRONG_ROLE", "{what}"),
            other => panic!("{what} upload: {other:?}"),
        }
    }
    match insurer.verify_number(&request).await {
        Err(ClientError::Refused { status: 403, body }) => assert_eq!(body.error.code, "WRONG_ROLE"),
        other => panic!("insurer verify: {other:?}"),
    }
    match server.client(&fixture, None).upload_events(event("x2", own, "990010")).await {
        Err(ClientError::Refused { status: 401, body }) => assert_eq!(body.error.code, "CLIENT_CERTIFICATE_REQUIRED"),
        other => panic!("anonymous upload: {other:?}"),
    }
    assert_eq!(stats(&clinic).await["coverages"], after["coverages"], "refused uploads stored nothing");
}

#[test]
fn verify_number_prints_japanese_and_json() {
    let fixture = Fixture::new(1_500);
    let server = Server::start(&fixture);
    let case = fixture.truth().into_iter().find(|c| c.category == "job_change_old_card").expect("a job change");
    let (cert, key) = fixture.identity(&clinic());
    let command = |args: &[&str]| {
        let mut command = onshi();
        command.args(["verify", "number", "--center", &server.url(), "--ca"]).arg(fixture.pki().join("ca.pem"));
        command.arg("--cert").arg(&cert).arg("--key").arg(&key).args(args);
        command
    };
    let r = &case.request;
    let mut args = vec!["--insurer", &r.insurer_number, "--number", &r.number, "--birth", &r.birth_date];
    args.extend(["--date", r.date_of_care.as_deref().unwrap()]);
    if let Some(symbol) = &r.symbol {
        args.extend(["--symbol", symbol]);
    }
    if let Some(branch) = &r.branch {
        args.extend(["--branch", branch]);
    }
    let verify = |json: bool| {
        let mut args = args.clone();
        if json {
            args.push("--json");
        }
        String::from_utf8(run_ok(&mut command(&args)).stdout).unwrap()
    };
    let text = verify(false);
    assert!(text.contains("資格有効性: 3 無効（新しい資格あり）"), "{text}");
    assert!(text.contains("新しい資格（振替先）"), "{text}");
    assert!(text.contains("お知らせ [NEWER_COVERAGE]"), "{text}");
    let answer: onshi_api::verify::VerifyAnswer = serde_json::from_str(&verify(true)).unwrap();
    assert_eq!(answer.validity.code, "3");

    // A refusal prints the code and the Japanese action, and exits 2.
    let output = command(&["--insurer", "06130480", "--number", "1", "--birth", "19800101"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("INVALID_INSURER_NUMBER") && text.contains("保険者番号"), "{text}");
}

/// The search by attributes (issue 15, claims billed as 不詳) attacked through the real server as
/// a clinic that would use it as a directory: another sex or a date long past names nobody; an
/// insurer's certificate or none is refused; the answer carries no address, relative's name or
/// 公費; and each institution's day of searches runs out (another clinic keeps its own).
#[tokio::test(flavor = "multi_thread")]
async fn the_search_by_attributes_answers_a_claim_and_nothing_more() {
    use onshi_api::verify::VerifyAttributesRequest;
    let fixture = Fixture::new(2_000);
    let server = Server::start_with(&fixture.db(), &fixture.pki(), &["--attribute-searches-per-day", "3"]);
    let client = server.client(&fixture, Some(&clinic()));
    let truth = fixture.truth();
    let case = truth.iter().find(|c| c.attributes.is_some()).expect("a patient billed as 不詳 in the ground truth");
    let search = case.attributes.clone().unwrap();
    let refused = |result: Result<onshi_api::verify::VerifyAnswer, ClientError>| match result {
        Err(ClientError::Refused { status, body }) => (status, body.error.code),
        other => panic!("expected a refusal, got {other:?}"),
    };

    // Found: the coverage the ground truth knows, with what a claim needs only.
    let found = client.verify_attributes(&search).await.expect("an answer");
    let coverage = found.coverage.as_ref().expect("the one person's coverage");
    assert_eq!(Some(&coverage.insurer_number), case.expect.insurer_number.as_ref());
    assert!(coverage.address.is_none() && coverage.post_code.is_none() && coverage.insured_name.is_none());
    assert!(coverage.public_expense.is_empty() && coverage.limit.is_none() && found.pending.is_empty());
    // The same name and birth date with the other sex: nobody.
    let other_sex = VerifyAttributesRequest { sex: if search.sex == "1" { "2".into() } else { "1".into() }, ..search.clone() };
    let nobody = client.verify_attributes(&other_sex).await.expect("an answer");
    assert_eq!((nobody.validity.code.as_str(), nobody.coverage.is_none()), ("4", true));
    // A date of care two years back: refused before anything is read (and no search used up).
    let long_ago = VerifyAttributesRequest { date_of_care: "20241110".into(), ..search.clone() };
    assert_eq!(refused(client.verify_attributes(&long_ago).await), (400, "INVALID_DATE_OF_CARE".to_string()));
    // Not a clinic: an insurer's certificate, or none.
    let insurer = server.client(&fixture, Some(&format!("insurers/{}", fixture.insurer)));
    assert_eq!(refused(insurer.verify_attributes(&search).await).0, 403);
    let anonymous = server.client(&fixture, None);
    assert_eq!(refused(anonymous.verify_attributes(&search).await).0, 401);
    // The third search of the day is the last.
    client.verify_attributes(&search).await.expect("the third search");
    assert_eq!(refused(client.verify_attributes(&search).await), (429, "ATTRIBUTE_QUOTA_EXCEEDED".to_string()));
    let other_clinic = server.client(&fixture, Some(&format!("institutions/{OTHER_CLINIC}")));
    assert!(other_clinic.verify_attributes(&search).await.expect("another clinic's own day").coverage.is_some());
}
