//! The clinic gateway end to end: `onshi gateway serve` and `onshi gateway batch` as child
//! processes beside a real center over mutual TLS, fed through the req/ folder and the page.

use crate::clinic::{
    ClinicWorld, FACILITY_PASSWORD, GatewayProcess, Member, PIN, drop_request, element, members, names_in, read_answer, single_request,
    today_plus, wait_for,
};
use std::io::Write as _;

use crate::common::onshi;

/// The center stops while the clinic keeps checking by numbers (files and page) and by card
/// (visual); the gateway is killed and restarted in the middle; when the center returns,
/// every queued check is re-verified exactly once and the one whose coverage was lost in the
/// meantime is flagged.
#[test]
fn reception_goes_on_through_an_outage_and_every_queued_check_is_reverified_once() {
    let mut world = ClinicWorld::new();
    let [p1, p2, p3, p4] = <[_; 4]>::try_from(members()).unwrap();
    let today = today_plus(0);
    let gateway = GatewayProcess::start(&world);

    // Online: P2 is checked, so the gateway holds an answer for P2.
    drop_request(&world.req(), "OQSsiquc01req_0001.xml", &single_request(&p2, "a-1", &today, false));
    let first = read_answer(&world.res().join("OQSsiquc01res_0001.xml"));
    assert_eq!(element(&first, "QualificationValidity").as_deref(), Some("1"));
    assert_eq!(element(&first, "ArbitraryFileIdentifier").as_deref(), Some("a-1"));

    // The insurer then reports P2's coverage lost since yesterday, and the center goes down.
    world.upload(&[crate::clinic::lose(&p2, &today_plus(-1))]);
    let center_addr = world.addr.clone();
    world.stop_center();

    // Offline: P2 from the cache (marked as such), P4 never seen (visual check, queued).
    drop_request(&world.req(), "OQSsiquc01req_0002.xml", &single_request(&p2, "a-2", &today, false));
    drop_request(&world.req(), "OQSsiquc01req_0003.xml", &single_request(&p4, "a-3", &today, true));
    let cached = read_answer(&world.res().join("OQSsiquc01res_0002.xml"));
    assert_eq!(element(&cached, "QualificationValidity").as_deref(), Some("1"), "the cached answer is given");
    assert_eq!(element(&cached, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-CACHED"));
    assert!(element(&cached, "ProcessingResultMessage").unwrap().contains("取得の控え"));
    let queued = read_answer(&world.res().join("OQSsiquc01res_0003.xml"));
    assert_eq!(element(&queued, "SegmentOfResult").as_deref(), Some("2"), "処理中 until the line returns");
    assert_eq!(element(&queued, "ErrorCode").as_deref(), Some("ONSHI-GW-QUEUED"));
    // The page says which link is broken without anyone running `onshi doctor`.
    let diagnosed = wait_for("the page to name the broken link", || {
        let page = gateway.get("/");
        page.contains("故障箇所: 接続 (TCP)").then_some(page)
    });
    assert!(diagnosed.contains(&center_addr) && diagnosed.contains("対処:"), "the address and what to do");

    // The page: P3 by numbers (queued); the card: PIN refused for want of the line, then a
    // visual check with the facility password (queued).
    let queued_on_page = gateway.post(
        "/check",
        &[("insurer_number", &p3.insurer), ("symbol", p3.symbol), ("number", p3.number), ("branch", p3.branch), ("birth_date", p3.birth)],
    );
    assert!(
        queued_on_page.contains("class=\"flash warn\"") && queued_on_page.contains("目視で確認して受け付けてください"),
        "not green, and what to do"
    );
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let refused = gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN)]);
    assert!(refused.contains("顔認証・暗証番号では確認できません"), "staff are told to switch to visual mode");
    gateway.post("/visual", &[("facility_password", FACILITY_PASSWORD)]);
    let face_while_down = wait_for("a face file", || names_in(&world.face()).into_iter().next());
    let face_xml = read_answer(&world.face().join(&face_while_down));
    assert_eq!(element(&face_xml, "SegmentOfResult").as_deref(), Some("2"));
    assert_eq!(element(&face_xml, "ReferenceClassification").as_deref(), Some("1"));
    assert_eq!(gateway.status()["waiting"], 4, "P2, P4, P3 and the card wait (P2 was answered from the cache but is re-verified)");
    // The gateway's figures say the same, counted from the story above.
    let metrics = gateway.get("/metrics");
    for line in [
        r#"onshi_gateway_checks_total{source="file",outcome="answered"} 1"#,
        r#"onshi_gateway_checks_total{source="file",outcome="offline_cached"} 1"#,
        r#"onshi_gateway_checks_total{source="file",outcome="offline_queued"} 1"#,
        r#"onshi_gateway_checks_total{source="page",outcome="offline_queued"} 1"#,
        r#"onshi_gateway_checks_total{source="reader",outcome="offline_queued"} 1"#,
        "onshi_gateway_queue_waiting 4",
        "onshi_gateway_line_up 0",
        "onshi_gateway_file_seconds_count 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(!metrics.contains(p2.name) && !metrics.contains(p2.number), "counts only, nobody's name or numbers");

    // SIGKILL; a request arrives while the gateway is down; the gateway restarts offline.
    gateway.kill();
    drop_request(&world.req(), "OQSsiquc01req_0004.xml", &single_request(&p1, "a-4", &today, false));
    let gateway = GatewayProcess::start(&world);
    let late = read_answer(&world.res().join("OQSsiquc01res_0004.xml"));
    assert_eq!(element(&late, "SegmentOfResult").as_deref(), Some("2"));
    assert_eq!(gateway.status()["waiting"], 5, "nothing queued was lost to the kill");
    let page = gateway.get("/");
    assert!(page.contains("回線: 不通"), "the page says the line is down");
    assert!(page.contains("回線待ちの照会（5件）"), "the page lists the queue");

    // The center returns on its old address: everything is re-verified by itself.
    world.start_center(&center_addr);
    wait_for("the queue to drain", || (gateway.status()["waiting"] == 0).then_some(()));
    gateway.kill();
    // A restart after the re-verification repeats nothing.
    let gateway = GatewayProcess::start(&world);
    assert_eq!(gateway.status()["waiting"], 0);

    let reverified: Vec<String> = names_in(&world.res()).into_iter().filter(|n| n.contains("_reverified")).collect();
    assert_eq!(
        reverified,
        ["OQSsiquc01res_0002_reverified.xml", "OQSsiquc01res_0003_reverified.xml", "OQSsiquc01res_0004_reverified.xml"],
        "one re-verified answer per queued file request"
    );
    let p2_again = read_answer(&world.res().join("OQSsiquc01res_0002_reverified.xml"));
    assert_eq!(element(&p2_again, "QualificationValidity").as_deref(), Some("2"), "P2 turned out lost");
    assert_eq!(element(&p2_again, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-CHANGED"));
    assert!(element(&p2_again, "ProcessingResultMessage").unwrap().contains("有効 → 無効"));
    assert_eq!(element(&p2_again, "ArbitraryFileIdentifier").as_deref(), Some("a-2"));
    for name in ["OQSsiquc01res_0003_reverified.xml", "OQSsiquc01res_0004_reverified.xml"] {
        let answer = read_answer(&world.res().join(name));
        assert_eq!(element(&answer, "QualificationValidity").as_deref(), Some("1"), "{name}");
        assert_eq!(element(&answer, "ProcessingResultCode"), None, "{name}: no change to flag");
    }
    let faces = names_in(&world.face());
    assert_eq!(faces.len(), 2, "the visual check's face file and its re-verified one: {faces:?}");
    let card_again =
        faces.iter().map(|f| read_answer(&world.face().join(f))).find(|x| element(x, "SegmentOfResult").as_deref() == Some("1")).unwrap();
    assert_eq!(element(&card_again, "QualificationValidity").as_deref(), Some("1"));
    assert_eq!(element(&card_again, "Name").as_deref(), Some(p1.name));
    assert!(names_in(&world.req()).is_empty(), "every request was answered and removed");

    wait_for("the line to be seen up", || (gateway.status()["line_up"] == true).then_some(()));
    let page = gateway.get("/");
    assert!(page.contains("再照会で判明: 資格: 有効 → 無効"), "the change is flagged for staff");
    // This month's 利用率 from the story: one check with the card (the visual check) among six
    // (four request files, the page, the card); the re-verifications are the same checks.
    // (Unless the month turned during the test, near midnight at a month's end.)
    if today_plus(0)[..6] == today[..6] {
        assert!(page.contains("16.7 %</strong>（マイナ保険証 1 件／オンライン資格確認 6 件）"), "the month's rate");
        assert!(page.contains("加算の基準 30 %: 未達") && page.contains("数え方"), "against the threshold, and how it was counted");
        let report = gateway.get(&format!("/report/{}", &today[..6]));
        assert!(
            report.contains("マイナ保険証利用率の報告") && report.contains("（マイナ保険証 1 件／オンライン資格確認 6 件）"),
            "{report}"
        );
        // The re-verifications after the outage, and the one whose answer changed, with what.
        assert!(report.contains("うち答えが変わったもの 1 件") && report.contains("資格: 有効 → 無効"), "{report}");
    }
    // A month with no checks says so; a malformed month is not found.
    assert!(gateway.get("/report/200001").contains("この月の照会はありません"));
    assert!(gateway.get("/report/2026-1").contains("年4桁と月2桁"));
    assert!(page.contains("回線: 正常") && !page.contains("故障箇所"));
    let store = rusqlite::Connection::open(world.path("gateway.sqlite")).unwrap();
    let (queued, done): (i64, i64) =
        store.query_row("SELECT count(*), count(done_at) FROM queue", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((queued, done), (5, 5));
    // The center counts the five re-verifications as such, for this clinic, on the dashboard's
    // figures (the outage seen from the center); none of the checks made while it was up.
    if today_plus(0)[..6] == today[..6] {
        let client = world.server.as_ref().unwrap().client_with_ca(&world.path("pki/ca.pem"), None);
        let line = format!("onshi_checks_month{{month=\"{}\",path=\"reverify\"}} 5", &today[..6]);
        // (A re-verification answers once its audit entry is queued; the entry is committed
        // right after, and the figures are counted again every few seconds.)
        crate::clinic::wait_for("the five re-verifications in /metrics", || {
            let (_, metrics) = crate::clinic::blocking(client.get_raw("/metrics")).unwrap();
            metrics.lines().any(|l| l == line).then_some(())
        });
    }
}

/// 一括照会 from an appointment list the day before; the insurer reports a loss; on the day
/// the check by file and the next batch both say what changed.
#[test]
fn a_batch_ahead_of_the_day_flags_what_changed_since() {
    let month = today_plus(0)[..6].to_string();
    let mut world = ClinicWorld::new();
    let [_, p2, _, p4] = <[_; 4]>::try_from(members()).unwrap();
    let tomorrow = today_plus(1);
    let csv = format!(
        "patient_id,date,insurer_number,symbol,number,branch,birth_date\nK002,{tomorrow},{},{},{},{},{}\nK004,{tomorrow},{},{},{},{},{}\n",
        p2.insurer, p2.symbol, p2.number, p2.branch, p2.birth, p4.insurer, p4.symbol, p4.number, p4.branch, p4.birth
    );
    std::fs::write(world.path("appointments.csv"), csv).unwrap();
    let batch = || {
        onshi()
            .args(["gateway", "batch", "--config"])
            .arg(world.path("gateway.toml"))
            .arg("--appointments")
            .arg(world.path("appointments.csv"))
            .output()
            .unwrap()
    };
    let first = batch();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("2 人, 照会済み 2 人"), "{stdout}");
    let result_name = names_in(&world.res()).into_iter().find(|n| n.starts_with("OQSmuquc02res_")).expect("a batch result file");
    let result = read_answer(&world.res().join(&result_name));
    assert_eq!(element(&result, "NumberOfNormalProcessing").as_deref(), Some("2"));

    // P2 loses the coverage from tomorrow.
    world.upload(&[crate::clinic::lose(&p2, &tomorrow)]);

    // On the day (the request is dated tomorrow), the file check says what changed.
    let gateway = GatewayProcess::start(&world);
    drop_request(&world.req(), "OQSsiquc01req_day.xml", &single_request(&p2, "d-1", &tomorrow, false));
    let day = read_answer(&world.res().join("OQSsiquc01res_day.xml"));
    assert_eq!(element(&day, "QualificationValidity").as_deref(), Some("2"));
    assert_eq!(element(&day, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-CHANGED"));
    assert!(element(&day, "ProcessingResultMessage").unwrap().starts_with("一括照会から変更があります"));
    let page = gateway.get("/");
    assert!(page.contains("一括照会から: 資格: 有効 → 無効"), "the page flags the patient");

    // The next batch reports the change too, and exits 3 so that a script notices.
    let second = batch();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert_eq!(second.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("変更あり K002: 資格: 有効 → 無効"), "{stdout}");
    assert!(!stdout.contains("変更あり K004"), "{stdout}");
    assert!(gateway.get("/").contains("一括照会で: 資格: 有効 → 無効"));
    // Two batches of two patients each, and one check at the counter: the month's 利用率
    // counts the one check only (none by card), not the four batch entries.
    // (Unless the month turned during the test.)
    if today_plus(0)[..6] == month {
        let usage = gateway.get(&format!("/report/{month}"));
        assert!(usage.contains("0.0 %</strong>（マイナ保険証 0 件／オンライン資格確認 1 件）"), "{usage}");
    }

    // A list with a bad line is refused with the line named.
    std::fs::write(world.path("bad.csv"), "patient_id,date,insurer_number,number,birth_date\nK9,2026/11/26,06130488,1,19800101\n").unwrap();
    let bad = onshi()
        .args(["gateway", "batch", "--config"])
        .arg(world.path("gateway.toml"))
        .arg("--appointments")
        .arg(world.path("bad.csv"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("YYYYMMDD"), "{stderr}");

    // The line goes down on the day: P4, checked only by the batch, is answered from it.
    world.stop_center();
    drop_request(&world.req(), "OQSsiquc01req_down.xml", &single_request(&p4, "d-2", &tomorrow, false));
    let cached = read_answer(&world.res().join("OQSsiquc01res_down.xml"));
    assert_eq!(element(&cached, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-CACHED"), "{cached}");
    assert_eq!(element(&cached, "QualificationValidity").as_deref(), Some("1"));
    assert_eq!(element(&cached, "Name").as_deref(), Some(p4.name), "the batch's answer");
}

/// A request for a ground-truth case, in one of the ways public clients write them.
fn truth_request(case: &onshi_synth::TruthCase, id: &str, variant: usize) -> Vec<u8> {
    let r = &case.request;
    let full_width = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii_digit() { char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap() } else { c })
            .collect::<String>()
    };
    let mut insurer = r.insurer_number.clone();
    let (mut symbol, mut number) = (r.symbol.clone(), r.number.clone());
    let mut header_extra = String::new();
    let mut body_extra = String::new();
    let declaration = match variant {
        0 => "<?xml version='1.0' encoding='UTF-8' standalone='no'?>",
        1 => {
            header_extra.push_str("<CharacterCodeIdentifier>1</CharacterCodeIdentifier>");
            "<?xml version=\"1.0\" encoding=\"Shift_JIS\" standalone=\"no\"?>"
        }
        _ => {
            // 国保 numbers padded with spaces, full-width digits, unknown elements.
            if insurer.len() == 6 {
                insurer = format!("  {insurer}");
            }
            symbol = symbol.map(|s| full_width(&s));
            number = full_width(&number);
            header_extra.push_str("<VendorSpecific><Terminal>3</Terminal></VendorSpecific>");
            body_extra.push_str("<NotInTheSpec>x</NotInTheSpec>");
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        }
    };
    let optional = |name: &str, value: &Option<String>| value.as_ref().map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default();
    let id_element = if variant == 2 { String::new() } else { format!("<ArbitraryFileIdentifier>{id}</ArbitraryFileIdentifier>") };
    let consent = if r.limit_consent {
        "<LimitApplicationCertificateRelatedConsFlg>1</LimitApplicationCertificateRelatedConsFlg>"
    } else if variant == 2 {
        ""
    } else {
        "<LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg>"
    };
    let text = format!(
        "{declaration}\n<XmlMsg>\n<MessageHeader><QualificationConfirmationDate>{}</QualificationConfirmationDate><MedicalInstitutionCode>{}</MedicalInstitutionCode>{id_element}{header_extra}</MessageHeader>\n<MessageBody><QualificationConfirmSearchInfo><InsurerNumber>{insurer}</InsurerNumber>{}<InsuredIdentificationNumber>{number}</InsuredIdentificationNumber>{}<Birthdate>{}</Birthdate>{consent}{body_extra}</QualificationConfirmSearchInfo></MessageBody>\n</XmlMsg>\n",
        r.date_of_care.as_deref().unwrap(),
        crate::common::CLINIC,
        optional("InsuredCardSymbol", &symbol),
        optional("InsuredBranchNumber", &r.branch),
        r.birth_date
    );
    match variant {
        1 => encoding_rs::SHIFT_JIS.encode(&text).0.into_owned(),
        2 => [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
        _ => text.into_bytes(),
    }
}

/// Requests written the way public clients write them (UTF-8 with standalone="no", Shift_JIS,
/// a BOM, 国保 numbers padded with spaces, full-width digits, optional elements absent, unknown
/// ones present) are answered as the register's ground truth and the center's own answer say;
/// bad files get a `.err`; a file still being written is not read half-way; 一括照会 files
/// work in two phases; a drug request without consent says so.
#[test]
fn the_file_interface_answers_requests_as_public_clients_write_them() {
    use crate::common::{CLINIC, Fixture, Server, run_ok};
    let fixture = Fixture::new(2_000);
    let server = Server::start(&fixture);
    let root = fixture.root();
    run_ok(onshi().args(["reader", "init", "--id", "reader-1", "--facility-password", "x", "--out"]).arg(root.join("reader.json")));
    let config = crate::clinic::write_gateway_config(root, &server.url(), "settle_ms = 60000");
    let gateway = GatewayProcess::start_with(&config);
    let (req, res) = (root.join("files/req"), root.join("files/res"));

    let mut per_category: std::collections::BTreeMap<String, usize> = Default::default();
    let cases: Vec<onshi_synth::TruthCase> = fixture
        .truth()
        .into_iter()
        .filter(|c| {
            let n = per_category.entry(c.category.clone()).or_default();
            *n += 1;
            *n <= 3
        })
        .collect();
    assert!(cases.len() >= 40, "enough cases: {}", cases.len());
    // Each case in one of three ways (below); the rare names alternate Shift_JIS and UTF-8, so
    // that both the substitution and the name as written are seen.
    let mut rare = 0;
    let variants: Vec<usize> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.category != "name_as_written" {
                return i % 3;
            }
            rare += 1;
            if rare % 2 == 1 { 1 } else { 0 }
        })
        .collect();
    let padded = cases.iter().zip(&variants).filter(|(c, v)| **v == 2 && c.request.insurer_number.len() == 6).count();
    let sjis = variants.iter().filter(|v| **v == 1).count();
    assert!(padded >= 3 && sjis >= 10, "the variants cover space-padded 国保 numbers ({padded}) and Shift_JIS ({sjis})");
    for (i, case) in cases.iter().enumerate() {
        drop_request(&req, &format!("OQSsiquc01req_{i:04}.xml"), &truth_request(case, &format!("id-{i}"), variants[i]));
    }
    let center = server.client_at(&fixture.pki(), Some(CLINIC));
    let mut replaced_for_shift_jis = 0;
    for (i, case) in cases.iter().enumerate() {
        let path = res.join(format!("OQSsiquc01res_{i:04}.xml"));
        let bytes = wait_for(&path.display().to_string(), || std::fs::read(&path).ok());
        let (xml, charset) = onshi_gateway::xml::decode(&bytes).expect("answer decodes");
        let variant = variants[i];
        let what = format!("{} ({}, variant {variant})", case.case, case.category);
        let expected_charset = if variant == 1 { onshi_gateway::xml::Charset::ShiftJis } else { onshi_gateway::xml::Charset::Utf8 };
        assert_eq!(charset, expected_charset, "{what}: written in the encoding asked for");
        assert_eq!(element(&xml, "QualificationValidity").as_deref(), Some(case.expect.validity.as_str()), "{what}");
        if variant != 2 {
            assert_eq!(element(&xml, "ArbitraryFileIdentifier"), Some(format!("id-{i}")), "{what}");
        }
        if let Some(ratio) = case.expect.copay_ratio_percent {
            assert_eq!(element(&xml, "InsuredPartialContributionRatio"), Some(format!("{ratio:03}")), "{what}");
        }
        assert_eq!(element(&xml, "LimitApplicationCertificateClassificationFlag"), case.expect.limit_category.clone(), "{what}");
        let truth = crate::clinic::blocking(center.verify_number(&case.request)).expect("the center answers");
        let name = truth.coverage.as_ref().map(|c| c.name.clone());
        if let Some(written) = &case.expect.name {
            assert_eq!(name.as_ref(), Some(written), "{what}: the center keeps the name as the insurer wrote it");
        }
        match (&case.expect.name_shift_jis, variant == 1) {
            // A Shift_JIS client gets the name by the written rule (the synthetic world's own
            // table of each rare name's CP932 form), and is told what was replaced.
            (Some(cp932), true) => {
                assert_eq!(element(&xml, "Name").as_ref(), Some(cp932), "{what}: the CP932 form");
                let message = element(&xml, "ProcessingResultMessage").unwrap_or_default();
                if Some(cp932) != case.expect.name.as_ref() {
                    replaced_for_shift_jis += 1;
                    assert_eq!(element(&xml, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-CHARACTERS"), "{what}");
                    assert!(message.contains("氏名 ") && message.contains("U+"), "{what}: {message}");
                } else {
                    assert!(!message.contains("U+"), "{what}: nothing replaced, nothing said: {message}");
                }
            }
            _ => assert_eq!(element(&xml, "Name"), name, "{what}: as the center says"),
        }
        if let Some(c) = &truth.coverage {
            assert_eq!(element(&xml, "InsurerNumber").map(|n| n.trim().to_string()), Some(c.insurer_number.clone()), "{what}");
        }
    }

    let written_as_is = cases.iter().filter(|c| c.category == "name_as_written").count();
    assert!(
        written_as_is >= 3 && replaced_for_shift_jis >= 1,
        "rare names: {written_as_is} cases, {replaced_for_shift_jis} replaced for Shift_JIS"
    );

    // Refused files: a DTD (XXE), a missing required element, another document.
    let good = truth_request(&cases[0], "x", 0);
    let text = String::from_utf8(good.clone()).unwrap();
    let xxe = text.replacen("<XmlMsg>", "<!DOCTYPE XmlMsg [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><XmlMsg>", 1);
    drop_request(&req, "OQSsiquc01req_xxe.xml", xxe.as_bytes());
    let no_birth = text.replace(&format!("<Birthdate>{}</Birthdate>", cases[0].request.birth_date), "");
    drop_request(&req, "OQSsiquc01req_nobirth.xml", no_birth.as_bytes());
    drop_request(&req, "OQSsiquc01req_html.xml", b"<html><body>not a request</body></html>");
    // A control character (as a reference) that an answer echoing it could not carry.
    let control = text.replacen("<InsuredIdentificationNumber>", "<InsuredIdentificationNumber>&#1;", 1);
    drop_request(&req, "OQSsiquc01req_control.xml", control.as_bytes());
    // A receipt computer set up with another clinic's code.
    let other_clinic = onshi_domain::ids::InstitutionCode::with_check_digit("131123457").unwrap();
    let other = text.replacen(CLINIC, other_clinic.as_str(), 1);
    drop_request(&req, "OQSsiquc01req_other.xml", other.as_bytes());
    for (name, expected) in [
        ("xxe", "DOCTYPE"),
        ("nobirth", "<Birthdate> is missing"),
        ("html", "not <XmlMsg>"),
        ("control", "U+0001"),
        ("other", &format!("set the receipt computer's 医療機関コード to {CLINIC}")),
    ] {
        let err = read_answer_text(&res.join(format!("OQSsiquc01req_{name}.err")));
        assert!(err.contains(expected), "{name}: {err}");
        assert!(res.join(format!("OQSsiquc01req_{name}.xml")).exists(), "{name}: the request sits beside its .err");
        assert!(!req.join(format!("OQSsiquc01req_{name}.xml")).exists());
    }

    // A file still being written: half of it now, the rest after another request was answered.
    let half = req.join("OQSsiquc01req_half.xml");
    std::fs::write(&half, &good[..good.len() / 2]).unwrap();
    drop_request(&req, "OQSsiquc01req_zz.xml", &good);
    read_answer(&res.join("OQSsiquc01res_zz.xml"));
    assert!(!res.join("OQSsiquc01res_half.xml").exists() && !res.join("OQSsiquc01req_half.err").exists(), "not read half-way");
    std::fs::OpenOptions::new().append(true).open(&half).unwrap().write_all(&good[good.len() / 2..]).unwrap();
    let whole = read_answer(&res.join("OQSsiquc01res_half.xml"));
    assert_eq!(element(&whole, "QualificationValidity").as_deref(), Some(cases[0].expect.validity.as_str()));

    // A client with a fixed file name checks the same patient again as soon as it has taken the
    // first answer: the same bytes under the same name are a new request, answered again.
    for round in 0..3 {
        let answer = res.join("OQSsiquc01res_again.xml");
        drop_request(&req, "OQSsiquc01req_again.xml", &good);
        let again = read_answer(&answer);
        assert_eq!(element(&again, "QualificationValidity").as_deref(), Some(cases[0].expect.validity.as_str()), "round {round}");
        std::fs::remove_file(&answer).unwrap();
    }

    // 一括照会 in two phases.
    let entries: String = cases[..5]
        .iter()
        .map(|c| {
            let r = &c.request;
            format!(
                "<QualificationConfirmSearchInfo><InsurerNumber>{}</InsurerNumber>{}<InsuredIdentificationNumber>{}</InsuredIdentificationNumber>{}<Birthdate>{}</Birthdate><LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg></QualificationConfirmSearchInfo>",
                r.insurer_number,
                r.symbol.as_ref().map(|s| format!("<InsuredCardSymbol>{s}</InsuredCardSymbol>")).unwrap_or_default(),
                r.number,
                r.branch.as_ref().map(|b| format!("<InsuredBranchNumber>{b}</InsuredBranchNumber>")).unwrap_or_default(),
                r.birth_date
            )
        })
        .collect();
    let upload = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?><XmlMsg><MessageHeader><QualificationConfirmationDate>{}</QualificationConfirmationDate><MedicalInstitutionCode>{CLINIC}</MedicalInstitutionCode><ArbitraryFileIdentifier>bulk-1</ArbitraryFileIdentifier></MessageHeader><MessageBody>{entries}</MessageBody></XmlMsg>",
        cases[0].request.date_of_care.as_deref().unwrap()
    );
    drop_request(&req, "OQSmuquc01req_20261125.xml", upload.as_bytes());
    let accepted = read_answer(&res.join("OQSmuquc01res_20261125.xml"));
    let reception = element(&accepted, "ReceptionNumber").expect("a reception number");
    assert_eq!(element(&accepted, "ArbitraryFileIdentifier").as_deref(), Some("bulk-1"));
    let download = format!(
        "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><XmlMsg><MessageHeader><MedicalInstitutionCode>{CLINIC}</MedicalInstitutionCode></MessageHeader><MessageBody><ReceptionNumber>{reception}</ReceptionNumber></MessageBody></XmlMsg>"
    );
    drop_request(&req, "OQSmuquc02req_20261125.xml", &encoding_rs::SHIFT_JIS.encode(&download).0);
    let results = read_answer(&res.join("OQSmuquc02res_20261125.xml"));
    assert_eq!(element(&results, "NumberOfProcessingResult").as_deref(), Some("5"));
    let root_element = onshi_gateway::xml::parse(&results).unwrap();
    let units: Vec<_> = root_element.child("MessageBody").unwrap().children_named("BulkConfirmUnit").collect();
    assert_eq!(units.len(), 5);
    for (unit, case) in units.iter().zip(&cases[..5]) {
        assert_eq!(unit.value("QualificationValidity"), Some(case.expect.validity.as_str()), "{}", case.case);
    }

    // Drug information without the patient's consent: refused with the reason.
    let p = &cases.iter().find(|c| c.expect.validity == "1" && c.request.branch.is_some()).unwrap().request;
    let yzk = format!(
        "<?xml version=\"1.0\" encoding=\"Shift_JIS\" standalone=\"no\"?><XmlMsg><MessageHeader><MedicalInstitutionCode>{CLINIC}</MedicalInstitutionCode><InsurerNumber>{}</InsurerNumber>{}<InsuredPersonIdentificationNumber>{}</InsuredPersonIdentificationNumber><BranchNumber>{}</BranchNumber><ArbitraryFileIdentifier>yzk-1</ArbitraryFileIdentifier></MessageHeader><MessageBody><FileCategory>2</FileCategory></MessageBody></XmlMsg>",
        p.insurer_number,
        p.symbol.as_ref().map(|s| format!("<InsuranceCardSymbol>{s}</InsuranceCardSymbol>")).unwrap_or_default(),
        p.number,
        p.branch.as_deref().unwrap()
    );
    drop_request(&req, "YZKsiquc01req_01.xml", &encoding_rs::SHIFT_JIS.encode(&yzk).0);
    let drugs = read_answer(&res.join("YZKsiquc01res_01.xml"));
    assert_eq!(element(&drugs, "ResultCode").as_deref(), Some("2"));
    assert!(element(&drugs, "MessageContents").unwrap().contains("同意"), "{drugs}");
    drop(gateway);
}

fn read_answer_text(path: &std::path::Path) -> String {
    let bytes = wait_for(&path.display().to_string(), || std::fs::read(path).ok());
    String::from_utf8(bytes).expect("UTF-8 .err")
}

/// A レセコン that takes every answer as soon as it appears, while the gateway is SIGKILLed
/// twice in the middle of a stream of requests: every request is answered, none twice.
#[test]
fn killed_in_the_middle_of_a_stream_every_request_is_answered_exactly_once() {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    let world = ClinicWorld::new();
    let people = members();
    let today = today_plus(0);
    const REQUESTS: usize = 60;
    std::fs::create_dir_all(world.req()).unwrap();
    for i in 0..REQUESTS {
        let m = &people[i % people.len()];
        drop_request(&world.req(), &format!("OQSsiquc01req_{i:03}.xml"), &single_request(m, &format!("s-{i}"), &today, i % 2 == 1));
    }
    // The receipt computer: takes each answer (reads it whole, deletes it) whenever the test
    // looks, as clients do; an answer written twice would be taken twice.
    let taken: RefCell<BTreeMap<String, usize>> = Default::default();
    let take = || {
        for name in names_in(&world.res()).into_iter().filter(|n| n.starts_with("OQSsiquc01res_")) {
            let path = world.res().join(&name);
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let (xml, _) = onshi_gateway::xml::decode(&bytes).expect("a whole answer, never half of one");
            assert_eq!(element(&xml, "QualificationValidity").as_deref(), Some("1"), "{name}");
            std::fs::remove_file(&path).expect("taken");
            *taken.borrow_mut().entry(name).or_default() += 1;
        }
        taken.borrow().len()
    };
    let gateway = GatewayProcess::start(&world);
    wait_for("some answers", || (take() >= 10).then_some(()));
    gateway.kill();
    let gateway = GatewayProcess::start(&world);
    wait_for("more answers", || (take() >= 30).then_some(()));
    gateway.kill();
    let gateway = GatewayProcess::start(&world);
    wait_for("every answer", || (take() == REQUESTS && names_in(&world.req()).is_empty()).then_some(()));
    drop(gateway);
    take();
    let taken = taken.borrow();
    assert_eq!(taken.len(), REQUESTS);
    assert!(taken.values().all(|n| *n == 1), "an answer was written twice: {taken:?}");
    let leftovers: Vec<String> = names_in(&world.res()).into_iter().filter(|n| n.starts_with('.')).collect();
    assert!(leftovers.is_empty(), "no temporary files left: {leftovers:?}");
}

/// YZK/TKK request files: refused before the patient consents at the reader, answered with the
/// records (and how fresh they are) once the card check on the page carried the consent.
#[test]
fn drug_and_checkup_files_follow_the_consent_given_at_the_reader() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let records = [
        r#"{"kind":"drug","person_ref":"p1","drug_code":"620004628","drug_name":"アムロジピン錠５ｍｇ","quantity":1.0,"unit":"錠","days":28,"dispensed_on":"20261101","dispensed_by":"1311234569","source":"pharmacy","arrived_on":"20261101"}"#,
        r#"{"kind":"checkup","person_ref":"p1","item_code":"3D046000001920402","item_name":"HbA1c","value":"5.6","unit":"%","examined_on":"20260601","arrived_on":"20260701"}"#,
    ];
    std::fs::write(world.path("medical.jsonl"), records.join("\n") + "\n").unwrap();
    crate::common::run_ok(
        onshi().args(["center", "import-medical", "--db"]).arg(world.path("center.sqlite")).arg(world.path("medical.jsonl")),
    );
    // This clinic's receipt computer reads face/ in Shift_JIS.
    world.write_config(&world.url(), "face_encoding = \"Shift_JIS\"");
    let gateway = GatewayProcess::start(&world);
    let request = |kind: &str, id: &str| {
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"Shift_JIS\" standalone=\"no\"?><XmlMsg><MessageHeader><MedicalInstitutionCode>{}</MedicalInstitutionCode><InsurerNumber>{}</InsurerNumber><InsuranceCardSymbol>{}</InsuranceCardSymbol><InsuredPersonIdentificationNumber>{}</InsuredPersonIdentificationNumber><BranchNumber>{}</BranchNumber><ArbitraryFileIdentifier>{id}</ArbitraryFileIdentifier></MessageHeader><MessageBody><FileCategory>2</FileCategory></MessageBody></XmlMsg>",
            crate::common::CLINIC,
            p1.insurer,
            p1.symbol,
            p1.number,
            p1.branch
        );
        drop_request(&world.req(), &format!("{kind}siquc01req_{id}.xml"), &encoding_rs::SHIFT_JIS.encode(&text).0);
        read_answer(&world.res().join(format!("{kind}siquc01res_{id}.xml")))
    };
    let before = request("YZK", "1");
    assert_eq!(element(&before, "ResultCode").as_deref(), Some("2"), "{before}");

    // At the reader the patient consents to drug and checkup information (PIN path).
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let page = gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN), ("drug", "1"), ("checkup", "1")]);
    assert!(page.contains("有効"), "the card check answered");
    let face = wait_for("the card's face file", || names_in(&world.face()).into_iter().next());
    let (face_xml, charset) = onshi_gateway::xml::decode(&std::fs::read(world.face().join(face)).unwrap()).unwrap();
    assert_eq!(charset, onshi_gateway::xml::Charset::ShiftJis, "face/ in the configured encoding");
    assert_eq!(element(&face_xml, "CharacterCodeIdentifier").as_deref(), Some("1"));
    assert!(element(&face_xml, "Name").is_some_and(|n| n == p1.name), "the name survives Shift_JIS");
    assert_eq!(element(&face_xml, "PharmacistsInfoConsFlg").as_deref(), Some("1"));
    assert_eq!(element(&face_xml, "SpecificHealthCheckupsInfoConsFlg").as_deref(), Some("1"));
    assert!(element(&face_xml, "PharmacistsInfoAvailableTime").is_some(), "the viewing deadline is given");

    let drugs = request("YZK", "2");
    assert_eq!(element(&drugs, "ResultCode").as_deref(), Some("1"), "{drugs}");
    assert_eq!(element(&drugs, "CzDrugN").as_deref(), Some("アムロジピン錠５ｍｇ"));
    assert_eq!(element(&drugs, "CzDiDate").as_deref(), Some("20261101"));
    assert!(element(&drugs, "MessageContents").unwrap().contains("最新の記録の到着日"), "freshness is stated");
    let checkups = request("TKK", "3");
    assert_eq!(element(&checkups, "ResultCode").as_deref(), Some("1"), "{checkups}");
    assert_eq!(element(&checkups, "ItemName").as_deref(), Some("HbA1c"));
    assert_eq!(element(&checkups, "DataValue").as_deref(), Some("5.6"));
    assert_eq!(element(&checkups, "ArbitraryFileIdentifier").as_deref(), Some("3"));
}

/// The reception page shows names: a client other than this PC is refused until the
/// configuration lists it, and so is a host name that is not the clinic's (DNS rebinding).
#[test]
fn the_page_opens_only_for_this_pc_the_listed_clients_and_the_clinic_s_host_names() {
    let world = ClinicWorld::new();
    // Another end of the loopback network stands in for a PC on the clinic's LAN.
    let other_pc: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let get = |page: &str, from: Option<std::net::IpAddr>, host: Option<&str>| {
        let url = format!("{page}/");
        let host = host.map(str::to_string);
        crate::clinic::blocking(async move {
            let client = reqwest::Client::builder().local_address(from).build().unwrap();
            let mut request = client.get(&url);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let response = request.send().await.expect("the page answers");
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };

    let gateway = GatewayProcess::start(&world);
    let (status, body) = get(&gateway.page, None, None);
    assert_eq!(status, 200, "this PC opens the page");
    assert!(body.contains("オンライン資格確認 受付"));
    let (status, body) = get(&gateway.page, Some(other_pc), None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("この端末からは受付画面を開けません") && body.contains("127.0.0.3") && body.contains("[page] allow"), "{body}");
    assert!(!body.contains("受付（医療機関コード"), "nothing of the page itself");
    let (status, body) = get(&gateway.page, None, Some("attacker.example:8080"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("[page] hosts"), "{body}");
    drop(gateway);

    let config = world.path("gateway.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[page]\nallow = [\"127.0.0.3\"]\nhosts = [\"uketsuke.local\"]\n");
    std::fs::write(&config, text).unwrap();
    let gateway = GatewayProcess::start(&world);
    let (status, body) = get(&gateway.page, Some(other_pc), None);
    assert_eq!(status, 200, "a listed PC opens the page: {body}");
    let (status, _) = get(&gateway.page, None, Some("uketsuke.local:8080"));
    assert_eq!(status, 200, "under a listed name");
    let (status, _) = get(&gateway.page, Some("127.0.0.4".parse().unwrap()), None);
    assert_eq!(status, 403, "a PC not listed still cannot");
}

/// Two gateways on one folder or one store would answer the same requests and re-verify the
/// same checks twice: the second refuses to start and says why; once the first is gone (even
/// killed), a new one starts.
#[test]
fn a_second_gateway_on_the_same_folder_or_store_refuses_to_start() {
    use std::io::BufRead as _;
    let world = ClinicWorld::new();
    let start_second = |config: &std::path::Path| {
        let mut child = onshi()
            .args(["gateway", "serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        if !line.is_empty() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        assert!(line.is_empty(), "the second gateway started: {line}");
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let gateway = GatewayProcess::start(&world);
    let (code, stderr) = start_second(&world.path("gateway.toml"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("another `onshi gateway serve` is running") && stderr.contains("gateway.sqlite.serve.lock"), "{stderr}");

    // Another store, the same folder: the folder's watcher is taken.
    let text = std::fs::read_to_string(world.path("gateway.toml")).unwrap();
    let other_store = world.path("other-store.toml");
    std::fs::write(&other_store, text.replace("store = \"gateway.sqlite\"", "store = \"other.sqlite\"")).unwrap();
    let (code, stderr) = start_second(&other_store);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(".onshi-serve.lock"), "{stderr}");

    gateway.kill();
    let again = GatewayProcess::start(&world);
    assert_eq!(again.status()["waiting"], 0, "a gateway starts once the first is gone");
}

/// A request of a kind of the interface that the gateway does not answer (a single 訪問診療 kind
/// whose structure nobody has published)
/// gets an `.err` naming what it does answer, instead of lying in `req/` with its sender
/// waiting; other files in `req/` are left alone.
#[test]
fn a_request_of_a_kind_the_gateway_does_not_answer_gets_an_err() {
    let world = ClinicWorld::new();
    let gateway = GatewayProcess::start(&world);
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader><MedicalInstitutionCode>{}</MedicalInstitutionCode></MessageHeader><MessageBody/></XmlMsg>",
        crate::common::CLINIC
    );
    drop_request(&world.req(), "OQSsihvq01req_202612020001.xml", text.as_bytes());
    drop_request(&world.req(), "notes.xml", b"kept");
    let err = wait_for("the .err", || std::fs::read_to_string(world.res().join("OQSsihvq01req_202612020001.err")).ok());
    assert!(err.contains("OQSsihvq01 requests are not answered") && err.contains("OQSsiquc01"), "{err}");
    assert!(err.starts_with("この種類の照会にはこのゲートウェイは答えません"), "Japanese first: {err}");
    assert!(world.res().join("OQSsihvq01req_202612020001.xml").exists(), "the request sits beside its .err");
    assert_eq!(names_in(&world.req()), ["notes.xml"], "only the request was taken");
    assert_eq!(gateway.status()["waiting"], 0);
}

/// A My Number typed into the 番号 field (from the back of the card) is refused at the gateway,
/// by file and on the page, and nothing of it is kept: not in an answer, not in the store, not
/// in the request folder (the copy beside the `.err` is blanked). The center refuses it too,
/// without repeating it.
#[test]
fn a_my_number_in_the_number_field_is_refused_and_never_kept() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let my_number = "123456789018";
    let gateway = GatewayProcess::start(&world);
    let typed = crate::clinic::Member { insurer: p1.insurer.clone(), number: my_number, ..*p1 };
    drop_request(&world.req(), "OQSsiquc01req_mn.xml", &single_request(&typed, "mn-1", &today_plus(0), false));
    let err = wait_for("the .err", || std::fs::read_to_string(world.res().join("OQSsiquc01req_mn.err")).ok());
    assert!(err.contains("My Number") && !err.contains(my_number), "{err}");
    assert!(err.starts_with("番号欄にマイナンバー（個人番号）が入っています"), "Japanese first: {err}");
    let copy = read_answer(&world.res().join("OQSsiquc01req_mn.xml"));
    assert_eq!(element(&copy, "InsuredIdentificationNumber").as_deref(), Some("************"), "the copy beside the .err is blanked");
    assert_eq!(element(&copy, "Birthdate").as_deref(), Some(p1.birth), "and otherwise the request as sent");
    assert!(names_in(&world.req()).is_empty(), "nor left in req/");

    let page = gateway
        .post("/check", &[("insurer_number", &p1.insurer), ("symbol", p1.symbol), ("number", "1234 5678 9018"), ("birth_date", p1.birth)]);
    assert!(page.contains("マイナンバー（個人番号）が入力されたようです"), "staff are told");
    assert_eq!(gateway.status()["waiting"], 0, "nothing was queued");
    drop(gateway);

    // Not a byte of it in any file the gateway keeps (store, WAL, lock files, answers).
    let mut kept = Vec::new();
    for root in [world.path("gateway.sqlite"), world.path("files")] {
        let files: Vec<std::path::PathBuf> = if root.is_dir() { walk(&root) } else { vec![root] };
        for file in files.into_iter().chain(["gateway.sqlite-wal", "gateway.sqlite-shm"].map(|n| world.path(n))) {
            let holds = |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
            if std::fs::read(&file).is_ok_and(|b| holds(&b, my_number) || holds(&b, "1234 5678 9018")) {
                kept.push(file.display().to_string());
            }
        }
    }
    assert!(kept.is_empty(), "the My Number is kept in {kept:?}");

    let center = crate::common::onshi()
        .args(["verify", "number", "--insurer", &p1.insurer, "--number", my_number, "--birth", p1.birth])
        .args(world.center_args())
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&center.stdout), String::from_utf8_lossy(&center.stderr));
    assert!(!center.status.success() && said.contains("My Number") && !said.contains(my_number), "{said}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { found.extend(walk(&path)) } else { found.push(path) }
    }
    found
}

/// A center that accepts connections and never answers costs reception one timeout, not one
/// per check: once a call has run into it, checks go to the offline path at once until the
/// re-verifier's probe finds the line back.
#[test]
fn a_hanging_center_costs_one_timeout_not_one_per_check() {
    let world = ClinicWorld::new();
    let people = members();
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", hanging.local_addr().unwrap());
    std::thread::spawn(move || {
        // Holds every connection open without a byte in answer.
        let held: Vec<_> = hanging.incoming().flatten().collect();
        drop(held);
    });
    let config = world.write_config(&url, "");
    let text = std::fs::read_to_string(&config).unwrap().replacen("[center]\n", "[center]\ntimeout_ms = 1000\n", 1);
    std::fs::write(&config, text).unwrap();
    let gateway = GatewayProcess::start(&world);
    for (i, m) in people.iter().enumerate() {
        drop_request(&world.req(), &format!("OQSsiquc01req_h{i}.xml"), &single_request(m, &format!("h-{i}"), &today_plus(0), false));
        let answer = read_answer(&world.res().join(format!("OQSsiquc01res_h{i}.xml")));
        assert_eq!(element(&answer, "SegmentOfResult").as_deref(), Some("2"), "queued while the center hangs");
    }
    assert_eq!(gateway.status()["waiting"], people.len());
    let store = rusqlite::Connection::open(world.path("gateway.sqlite")).unwrap();
    let reasons: Vec<String> = store
        .prepare("SELECT outcome FROM checks ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|o| serde_json::from_str::<serde_json::Value>(&o.unwrap()).unwrap()["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(reasons.len(), people.len());
    let not_sent = reasons.iter().filter(|r| r.as_str() == onshi_gateway::gateway::NOT_SENT_WHILE_HANGING).count();
    // The first check may have waited for the timeout, or the probe at start ran into it first.
    assert!(not_sent >= people.len() - 1, "after the first timeout the checks did not wait for the center: {reasons:?}");
}

/// An `OQSsiimm01`/`OQSmuimm01` registration request in Shift_JIS as [MYNA] writes it (insurer
/// number padded with spaces), for `m`, with the receipt computer's own facts when given.
fn registration_request(kind: &str, people: &[(&Member, &str, &str)]) -> Vec<u8> {
    let infos: String = people
        .iter()
        .map(|(m, reference, extra)| {
            format!(
                "<ReferenceNumberRegistrationInfo><ReferenceNumber>{reference}</ReferenceNumber><InsurerNumber>{:>8}</InsurerNumber><InsuredCardSymbol>{}</InsuredCardSymbol><InsuredIdentificationNumber>{}</InsuredIdentificationNumber><InsuredBranchNumber>{}</InsuredBranchNumber>{extra}</ReferenceNumberRegistrationInfo>",
                m.insurer, m.symbol, m.number, m.branch
            )
        })
        .collect();
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"shift_jis\" standalone=\"no\"?>\r\n<XmlMsg><MessageHeader><MedicalInstitutionCode>{}</MedicalInstitutionCode><ArbitraryFileIdentifier>{kind}-afi</ArbitraryFileIdentifier></MessageHeader><MessageBody>{infos}</MessageBody></XmlMsg>",
        crate::common::CLINIC
    );
    encoding_rs::SHIFT_JIS.encode(&text).0.into_owned()
}

/// 照会番号 (issue 15, item 7): the receipt computer registers its patient number against a
/// coverage (one at a time, and in bulk in two phases), and later answers for that patient —
/// by numbers in `res/`, and the card check's file in `face/` — carry it; a registration whose
/// birth date differs from what the gateway's answers showed is refused, and an answer for a
/// person other than the one registered does not carry the number and says why.
#[test]
fn a_reference_number_comes_back_in_later_answers_for_the_patient_registered_and_nobody_else() {
    let world = ClinicWorld::new();
    let gateway = GatewayProcess::start(&world);
    let [p1, p2, p3, p4] = <[Member; 4]>::try_from(members()).unwrap();
    let today = today_plus(0);
    let ask = |m: &Member, id: &str| {
        drop_request(&world.req(), &format!("OQSsiquc01req_{id}.xml"), &single_request(m, id, &today, false));
        read_answer(&world.res().join(format!("OQSsiquc01res_{id}.xml")))
    };
    let register = |people: &[(&Member, &str, &str)], id: &str| {
        drop_request(&world.req(), &format!("OQSsiimm01req_{id}.xml"), &registration_request("si", people));
        read_answer(&world.res().join(format!("OQSsiimm01res_{id}.xml")))
    };

    // The gateway has answered for p1 once; the registration takes p1 as the person.
    let first = ask(&p1, "0001");
    assert_eq!(element(&first, "ReferenceNumber"), None, "nothing registered yet");
    let registered = register(&[(&p1, "24434", "")], "202612040001");
    assert_eq!(element(&registered, "SegmentOfResult").as_deref(), Some("1"), "{registered}");
    assert_eq!(element(&registered, "ProcessingResultStatus").as_deref(), Some("1"), "{registered}");
    assert_eq!(element(&registered, "ReferenceNumber").as_deref(), Some("24434"), "echoed");
    assert_eq!(element(&registered, "ArbitraryFileIdentifier").as_deref(), Some("si-afi"), "echoed");
    assert_eq!(element(&registered, "MedicalInstitutionCode").as_deref(), Some(crate::common::CLINIC));
    assert_eq!(element(&registered, "ProcessingResultCode"), None, "nothing to say on success");

    // Every later answer for p1 carries it: by numbers, and the card's face/ file.
    let again = ask(&p1, "0002");
    assert_eq!(element(&again, "ReferenceNumber").as_deref(), Some("24434"), "{again}");
    let root = onshi_gateway::xml::parse(&again).unwrap();
    let result = root.find("ResultOfQualificationConfirmation").unwrap();
    assert_eq!(result.children.last().map(|c| c.name.as_str()), Some("ReferenceNumber"), "the result's last child");
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let page = gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN)]);
    assert!(page.contains("有効"), "the card check answered");
    let face = wait_for("the card's face file", || names_in(&world.face()).into_iter().next());
    let face_xml = read_answer(&world.face().join(face));
    assert_eq!(element(&face_xml, "ReferenceNumber").as_deref(), Some("24434"), "{face_xml}");
    // Another patient's answer carries nothing.
    assert_eq!(element(&ask(&p2, "0003"), "ReferenceNumber"), None);

    // The receipt computer's birth date for p1's numbers is not p1's: refused, saying what.
    let wrong = register(&[(&p1, "55555", "<Birthdate>19800102</Birthdate>")], "202612040002");
    assert_eq!(element(&wrong, "ProcessingResultStatus").as_deref(), Some("2"), "{wrong}");
    assert!(element(&wrong, "ProcessingResultMessage").unwrap().contains("生年月日"), "{wrong}");
    assert_eq!(element(&ask(&p1, "0004"), "ReferenceNumber").as_deref(), Some("24434"), "the earlier registration stands");

    // Nobody seen yet under p4's numbers: the receipt computer's record (a wrong birth date)
    // stands, and p4's answer then withholds the number and says why.
    let unseen = register(&[(&p4, "777", "<Birthdate>19990101</Birthdate><Sex1>2</Sex1>")], "202612040003");
    assert_eq!(element(&unseen, "ProcessingResultStatus").as_deref(), Some("1"), "{unseen}");
    let withheld = ask(&p4, "0005");
    assert_eq!(element(&withheld, "ReferenceNumber"), None, "{withheld}");
    assert_eq!(element(&withheld, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-REFERENCE-WITHHELD"), "{withheld}");
    assert!(element(&withheld, "ProcessingResultMessage").unwrap().contains("照会番号 777"), "{withheld}");

    // In bulk, two phases: p2 and p3 (a 国保 number, padded); the results by ReceptionNumber.
    drop_request(&world.req(), "OQSmuimm01req_202612040001.xml", &registration_request("mu", &[(&p2, "100", ""), (&p3, "200", "")]));
    let accepted = read_answer(&world.res().join("OQSmuimm01res_202612040001.xml"));
    let reception = element(&accepted, "ReceptionNumber").expect("a reception number");
    let download = |reception: &str, suffix: &str| {
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"Shift_JIS\" standalone=\"no\"?><XmlMsg><MessageHeader><MedicalInstitutionCode>{}</MedicalInstitutionCode></MessageHeader><MessageBody><ReceptionNumber>{reception}</ReceptionNumber></MessageBody></XmlMsg>",
            crate::common::CLINIC
        );
        drop_request(&world.req(), &format!("OQSmuimm02req_{suffix}.xml"), &encoding_rs::SHIFT_JIS.encode(&text).0);
        read_answer(&world.res().join(format!("OQSmuimm02res_{suffix}.xml")))
    };
    let results = download(&reception, "202612040002");
    assert_eq!(element(&results, "ArbitraryFileIdentifier").as_deref(), Some("mu-afi"), "the 01 request's");
    let root = onshi_gateway::xml::parse(&results).unwrap();
    let units: Vec<_> = root.child("MessageBody").unwrap().children_named("BulkRegistrationUnit").collect();
    assert_eq!(units.len(), 2, "{results}");
    for (unit, number) in units.iter().zip(["100", "200"]) {
        assert_eq!(unit.value("ProcessingResultStatus"), Some("1"), "{results}");
        assert_eq!(unit.child("ReferenceNumberRegistrationInfo").and_then(|i| i.value("ReferenceNumber")), Some(number));
    }
    assert_eq!(element(&ask(&p3, "0006"), "ReferenceNumber").as_deref(), Some("200"));
    assert_eq!(element(&ask(&p2, "0007"), "ReferenceNumber").as_deref(), Some("100"));
    let unknown = download("NO-SUCH", "202612040003");
    assert_eq!(element(&unknown, "SegmentOfResult").as_deref(), Some("9"), "{unknown}");
    assert_eq!(gateway.status()["waiting"], 0);
}

/// When the line cannot confirm a patient (issue 15, item 5, the counter's side): the page
/// answers 該当なし with the official chain, records the patient's 被保険者資格申立書, says what
/// the patient pays (the usual share for the age, never 10割) and writes the 摘要 the 不詳 claim
/// must carry; a declaration missing what the insurer needs to reach the patient is refused.
#[test]
fn a_patient_the_line_cannot_confirm_is_received_on_their_declaration_at_the_usual_share() {
    let world = ClinicWorld::new();
    let gateway = GatewayProcess::start(&world);
    // 71 or 72 years old today, whatever the year the test runs in: 70–74.
    let today = today_plus(0);
    let birth = format!("{}1010", today[..4].parse::<u32>().unwrap() - 72);
    // Numbers nobody registered: 該当なし, and the page says what to do next.
    let page = gateway
        .post("/check", &[("insurer_number", crate::clinic::KYOKAI), ("symbol", "12"), ("number", "999"), ("birth_date", birth.as_str())]);
    assert!(page.contains("資格が確認できないとき") && page.contains("10割負担にはしません"), "{page}");
    assert!(page.contains("以前の保険の番号で照会"), "the chain, step 2");

    // The paper the numbers came from (issue 15, item 4): what it is worth today, by the dates
    // of the notices (a 資格情報のお知らせ alone until 2026-03-31, not after).
    let p1 = &members()[0];
    let shown = |document: &str| {
        gateway.post(
            "/check",
            &[
                ("insurer_number", p1.insurer.as_str()),
                ("symbol", p1.symbol),
                ("number", p1.number),
                ("branch", p1.branch),
                ("birth_date", p1.birth),
                ("document", document),
            ],
        )
    };
    let notice = shown("qualification_notice");
    if today.as_str() > "20260331" {
        assert!(
            notice.contains("資格情報のお知らせだけでの受付は2026年3月31日で終わりました") && notice.contains("資格確認書の交付申請"),
            "{notice}"
        );
    } else {
        assert!(notice.contains("特例"), "{notice}");
    }
    assert!(shown("qualification_certificate").contains("資格確認書で確認しました"));

    let refused = gateway.post(
        "/declaration",
        &[
            ("name_kana", "ミトウ　ジロウ"),
            ("birth_date", birth.as_str()),
            ("sex", "1"),
            ("kind", "kyokai"),
            ("address", ""),
            ("contact", ""),
        ],
    );
    assert!(refused.contains("住所か連絡先のどちらかを入力してください"), "{refused}");
    assert!(!refused.contains("class=\"declaration\""), "nothing recorded");

    let recorded = gateway.post(
        "/declaration",
        &[
            ("name_kana", "ミトウ　ジロウ"),
            ("birth_date", birth.as_str()),
            ("sex", "1"),
            ("kind", "kyokai"),
            ("employer", "オンシ商事"),
            ("address", "東京都千代田区"),
            ("contact", "03-0000-0000"),
        ],
    );
    // 2割 for 70–74 (一般), from the rules written out, not 10割.
    assert!(recorded.contains("通常の2割"), "{recorded}");
    let row = recorded.split("<tr class=\"declaration\">").nth(1).expect("the declaration is listed");
    assert!(row.contains("<td class=\"share\">2割</td>"), "{row}");
    for piece in
        ["被保険者資格申立書による", "ミトウ　ジロウ", "協会けんぽ", "オンシ商事", "東京都千代田区", "03-0000-0000", today.as_str()]
    {
        assert!(row.contains(piece), "the 摘要 names {piece}: {row}");
    }
}

/// 公費 and local subsidies at the counter (issue 15, item 1): the patient's yes at the reader
/// shows their 受給者証 with the verification on the page (cap, numbers for the claim, whether
/// this clinic is designated), and nothing without it; staff ask by the numbers on a paper
/// 受給者証 and the birth date; a programme that registers nothing is said to be unknown, not
/// invalid.
#[test]
fn the_page_shows_a_patients_subsidy_on_their_yes_and_by_the_certificates_numbers() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    // 法別 54 (指定難病) of 東京都 and a 地方単独 programme that registers nothing, with check digits.
    let (nanbyo, recipient, unconnected) = ("54136015", "0000018", "88136015");
    let grant = format!(
        r#"{{"event_id":"g1","kind":"grant","payer_number":"{nanbyo}","recipient_number":"{recipient}","person_ref":"{}","occurred_on":"20260101","notified_at":"20260105100000","certificate":{{"name":"特定医療費（指定難病）受給者証","valid_to":"20301231","self_pay_cap_yen":5000}}}}"#,
        p1.person
    );
    std::fs::write(world.path("subsidies.jsonl"), grant + "\n").unwrap();
    crate::common::run_ok(
        onshi().args(["center", "import-subsidies", "--db"]).arg(world.path("center.sqlite")).arg(world.path("subsidies.jsonl")),
    );
    let gateway = GatewayProcess::start(&world);

    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let without = gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN)]);
    assert!(without.contains("有効") && !without.contains("医療費助成:"), "no yes at the reader, no 受給者証: {without}");
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let with = gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN), ("subsidy", "1")]);
    for piece in ["医療費助成: 難病医療（指定難病）", nanbyo, recipient, "自己負担上限 月5000円"] {
        assert!(with.contains(piece), "the yes at the reader shows {piece}: {with}");
    }

    // The message the page shows for the question (the day's checks listed below carry the card
    // check's 受給者証 too).
    let ask = |payer: &str, birth: &str| {
        let page = gateway.post("/subsidy", &[("payer_number", payer), ("recipient_number", recipient), ("birth_date", birth)]);
        let flash = page.split("<div id=\"flash\"").nth(1).and_then(|rest| rest.split("</div>").next()).map(str::to_string);
        flash.unwrap_or_else(|| panic!("a message: {page}"))
    };
    let valid = ask(nanbyo, p1.birth);
    assert!(valid.contains("受給者証は診療日に有効です") && valid.contains("自己負担上限 月5000円"), "{valid}");
    let wrong_birth = ask(nanbyo, "19800102");
    assert!(wrong_birth.contains("登録されていません") && !wrong_birth.contains("5000円"), "nothing of it shown: {wrong_birth}");
    let paper_only = ask(unconnected, p1.birth);
    assert!(paper_only.contains("受給者情報を登録していません") && paper_only.contains("紙の受給者証で確認"), "{paper_only}");
    let impossible = ask("54136016", p1.birth);
    assert!(impossible.contains("公費負担者番号が正しくありません"), "a wrong check digit is named: {impossible}");
}

/// 医療扶助 through the request files (issue 15, item 2): `OQSmutic01req_` for a month answers
/// with a ReceptionNumber, `OQSmutic02req_` with one unit per recipient: a recipient whose 医療券
/// names this clinic (validity 1, card classification A1, the ticket's fields), one the office
/// designated this clinic for without a ticket yet (6 有効（未登録）), and never one the office
/// withheld (DV), nor another clinic's; the page lists the same. Expected values written out
/// from the office's events.
#[test]
fn a_months_medical_assistance_recipients_are_answered_through_the_request_files() {
    let world = ClinicWorld::new();
    let m = members();
    let office = "12136016"; // 法別 12, 東京都, with its check digit
    let grant = |id: &str, person: &str, recipient: &str, clinic: &str, withheld: bool| {
        format!(
            r#"{{"event_id":"{id}","kind":"grant","payer_number":"{office}","recipient_number":"{recipient}","person_ref":"{person}","occurred_on":"20260101","notified_at":"20260101100000","certificate":{{"name":"千代田区福祉事務所","designated_institutions":["{clinic}"],"withheld":{withheld}}}}}"#
        )
    };
    let ticket = |id: &str, person: &str, recipient: &str, clinic: &str| {
        format!(
            r#"{{"event_id":"{id}","kind":"ticket","payer_number":"{office}","recipient_number":"{recipient}","person_ref":"{person}","occurred_on":"20261201","notified_at":"20261201100000","ticket":{{"ticket_type":"01","valid_from":"20261201","valid_to":"20261231","issue_number":"K-{recipient}","month":"202612","institution_code":"{clinic}","institution_name":"オンシ医院","injuries":["高血圧症","2型糖尿病"],"treatment_type":"02","self_pay_yen":1200}}}}"#
        )
    };
    let clinic = crate::common::CLINIC;
    let other = crate::common::OTHER_CLINIC;
    let lines = [
        grant("w1", m[0].person, "0000018", clinic, false),
        ticket("w2", m[0].person, "0000018", clinic),
        grant("w3", m[1].person, "0000026", clinic, false),
        grant("w4", m[2].person, "0000034", clinic, true),
        ticket("w5", m[2].person, "0000034", clinic),
        grant("w6", m[3].person, "0000042", other, false),
        ticket("w7", m[3].person, "0000042", other),
    ];
    std::fs::write(world.path("welfare.jsonl"), lines.join("\n") + "\n").unwrap();
    crate::common::run_ok(
        onshi().args(["center", "import-subsidies", "--db"]).arg(world.path("center.sqlite")).arg(world.path("welfare.jsonl")),
    );
    let gateway = GatewayProcess::start(&world);
    let month = |body: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"Shift_JIS\" standalone=\"no\"?>\r\n<XmlMsg><MessageHeader><MedicalInstitutionCode>{clinic}</MedicalInstitutionCode><ArbitraryFileIdentifier>afi-1</ArbitraryFileIdentifier></MessageHeader><MessageBody>{body}</MessageBody></XmlMsg>"
        )
    };
    let first =
        month("<QualificationConfirmSearchInfo><MedicalTreatmentMonth>202612</MedicalTreatmentMonth></QualificationConfirmSearchInfo>");
    drop_request(&world.req(), "OQSmutic01req_202612040001.xml", &encoding_rs::SHIFT_JIS.encode(&first).0);
    let accepted = read_answer(&world.res().join("OQSmutic01res_202612040001.xml"));
    let reception = element(&accepted, "ReceptionNumber").expect("a ReceptionNumber");
    assert_eq!(element(&accepted, "ArbitraryFileIdentifier").as_deref(), Some("afi-1"));
    let second = month(&format!("<ReceptionNumber>{reception}</ReceptionNumber>"));
    drop_request(&world.req(), "OQSmutic02req_202612040002.xml", &encoding_rs::SHIFT_JIS.encode(&second).0);
    let list = read_answer(&world.res().join("OQSmutic02res_202612040002.xml"));
    assert_eq!(element(&list, "SegmentOfResult").as_deref(), Some("1"), "{list}");
    let units: Vec<&str> = list.split("<BulkConfirmUnit>").skip(1).collect();
    assert_eq!(units.len(), 2, "the ticketed and the designated recipient only: {list}");
    let unit = |recipient: &str| {
        *units
            .iter()
            .find(|u| u.contains(&format!("<InsuredIdentificationNumber>{recipient}<")))
            .unwrap_or_else(|| panic!("{recipient} listed: {list}"))
    };
    let ticketed = unit("0000018");
    for piece in [
        "<QualificationValidity>1</QualificationValidity>",
        "<InsuredCardClassification>A1</InsuredCardClassification>",
        &format!("<InsurerNumber>{office}</InsurerNumber>"),
        "<InsurerName>千代田区福祉事務所</InsurerName>",
        &format!("<Name>{}</Name>", m[0].name),
        &format!("<Birthdate>{}</Birthdate>", m[0].birth),
        "<QualificationDate>20260101</QualificationDate>",
        "<IssueNumber>K-0000018</IssueNumber>",
        "<MedicalTreatmentMonth>202612</MedicalTreatmentMonth>",
        &format!("<DesignatedMedicalInstitutionCode>{clinic}</DesignatedMedicalInstitutionCode>"),
        "<DesignatedMedicalInstitutionFlag>0</DesignatedMedicalInstitutionFlag>",
        "<InjuryName1>高血圧症</InjuryName1>",
        "<InjuryName2>2型糖尿病</InjuryName2>",
        "<SelfPayAmount>1200</SelfPayAmount>",
        "<SingleOrCombinedUse>01</SingleOrCombinedUse>",
    ] {
        assert!(ticketed.contains(piece), "{piece} in {ticketed}");
    }
    let designated = unit("0000026");
    assert!(
        designated.contains("<QualificationValidity>6</QualificationValidity>") && !designated.contains("MedicalTicketInfo"),
        "{designated}"
    );
    assert!(!list.contains("0000034"), "the withheld recipient is never listed");
    assert!(!list.contains("0000042"), "another clinic's recipient is not this clinic's");

    // The page names the month's recipients, and the one whose ticket is not registered yet.
    let page = gateway.post("/welfare", &[("month", "202612")]);
    let flash = page.split("<div id=\"flash\"").nth(1).and_then(|rest| rest.split("</div>").next()).expect("a message").to_string();
    assert!(flash.contains("医療券あり 1名") && flash.contains("K-0000018") && flash.contains(m[0].name), "{flash}");
    assert!(flash.contains("有効（未登録）1名") && flash.contains("0000026") && flash.contains("福祉事務所に連絡"), "{flash}");
    assert!(!flash.contains("0000034") && !flash.contains(m[2].name), "the withheld recipient is not on the page either: {flash}");

    // An unknown ReceptionNumber: SegmentOfResult 9.
    let unknown = month("<ReceptionNumber>nothing</ReceptionNumber>");
    drop_request(&world.req(), "OQSmutic02req_202612040003.xml", unknown.as_bytes());
    let refused = read_answer(&world.res().join("OQSmutic02res_202612040003.xml"));
    assert_eq!(element(&refused, "SegmentOfResult").as_deref(), Some("9"));
}

/// 医療扶助 on a card check (issue 15, item 2): the face/ file carries the recipient's own
/// result (InsuredCardClassification A1, the office's numbers and name) after the insurance
/// result, with this month's 医療券 naming this clinic; 6 有効（未登録） and whether the clinic
/// is designated when no ticket names it yet; nothing at all once the office withholds the
/// recipient (DV). Each step is the welfare office's upload, then the patient's card at the
/// reader.
#[test]
fn a_card_check_answers_medical_assistance_beside_the_insurance() {
    let world = ClinicWorld::new();
    let gateway = GatewayProcess::start(&world);
    let p1 = &members()[0];
    let office = "12136016";
    let today = today_plus(0);
    let month = &today[..6];
    let month_end =
        onshi_domain::Date::parse_yyyymmdd(&today).unwrap().first_of_month().add_days(40).first_of_month().add_days(-1).yyyymmdd();
    let clinic = crate::common::CLINIC;
    let upload = |line: String| {
        std::fs::write(world.path("welfare.jsonl"), line + "\n").unwrap();
        crate::common::run_ok(
            onshi().args(["center", "import-subsidies", "--db"]).arg(world.path("center.sqlite")).arg(world.path("welfare.jsonl")),
        );
    };
    let grant = |id: &str, designated: &str, withheld: bool| {
        format!(
            r#"{{"event_id":"{id}","kind":"grant","payer_number":"{office}","recipient_number":"0000018","person_ref":"{}","occurred_on":"20260101","notified_at":"20260101100000","certificate":{{"name":"千代田区福祉事務所","designated_institutions":["{designated}"],"withheld":{withheld}}}}}"#,
            p1.person
        )
    };
    // The card at the reader, by PIN; the page's message and the face/ file it wrote.
    let check = || {
        for name in names_in(&world.face()) {
            std::fs::remove_file(world.face().join(name)).unwrap();
        }
        gateway.post("/reader/place", &[("card", "card-1.json")]);
        let page = gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN)]);
        let flash = page.split("<div id=\"flash\"").nth(1).and_then(|rest| rest.split("</div>").next()).expect("a message").to_string();
        let face = wait_for("the card's face file", || names_in(&world.face()).into_iter().next());
        (flash, read_answer(&world.face().join(face)))
    };
    let welfare_result = |face: &str| -> Option<String> {
        face.split("<ResultOfQualificationConfirmation>")
            .skip(1)
            .find(|r| r.contains("<InsuredCardClassification>A1</InsuredCardClassification>"))
            .map(|r| r.split("</ResultOfQualificationConfirmation>").next().unwrap().to_string())
    };

    // Granted, the office designating another clinic: valid, no ticket here, not designated.
    upload(grant("w1", crate::common::OTHER_CLINIC, false));
    let (flash, face) = check();
    assert_eq!(element(&face, "QualificationValidity").as_deref(), Some("1"), "the insurance stays first: {face}");
    let a1 = welfare_result(&face).unwrap_or_else(|| panic!("an A1 result: {face}"));
    for piece in [
        "<QualificationValidity>6</QualificationValidity>".to_string(),
        format!("<InsurerNumber>{office}</InsurerNumber>"),
        "<InsuredIdentificationNumber>0000018</InsuredIdentificationNumber>".into(),
        "<InsurerName>千代田区福祉事務所</InsurerName>".into(),
        format!("<Name>{}</Name>", p1.name),
        format!("<Birthdate>{}</Birthdate>", p1.birth),
        "<QualificationDate>20260101</QualificationDate>".into(),
    ] {
        assert!(a1.contains(&piece), "{piece} in {a1}");
    }
    assert!(!a1.contains("MedicalTicketInfo"), "{a1}");
    assert!(flash.contains("医療扶助") && flash.contains("当院は指定されていません"), "{flash}");

    // The office corrects the grant to designate this clinic: still 6, the ticket not registered.
    upload(grant("w2", clinic, false));
    let (flash, face) = check();
    let a1 = welfare_result(&face).unwrap_or_else(|| panic!("an A1 result: {face}"));
    assert!(a1.contains("<QualificationValidity>6</QualificationValidity>") && !a1.contains("MedicalTicketInfo"), "{a1}");
    assert!(flash.contains("今月の医療券は未登録"), "{flash}");

    // A 調剤券 of this month naming another institution (a pharmacy) is not this clinic's: still
    // 6, and nothing of it (its 傷病名 above all) in the answer.
    let ticket = |id: &str, kind: &str, number: &str, at: &str, injury: &str| {
        format!(
            r#"{{"event_id":"{id}","kind":"ticket","payer_number":"{office}","recipient_number":"0000018","person_ref":"{}","occurred_on":"{month}01","notified_at":"{month}01100000","ticket":{{"ticket_type":"{kind}","valid_from":"{month}01","valid_to":"{month_end}","issue_number":"{number}","month":"{month}","institution_code":"{at}","institution_name":"オンシ医院","injuries":["{injury}"],"treatment_type":"02","self_pay_yen":1200,"combined":true}}}}"#,
            p1.person
        )
    };
    upload(ticket("w2b", "02", "K-ELSEWHERE", crate::common::OTHER_CLINIC, "気管支喘息"));
    let (_, face) = check();
    let a1 = welfare_result(&face).unwrap_or_else(|| panic!("an A1 result: {face}"));
    assert!(a1.contains("<QualificationValidity>6</QualificationValidity>"), "{a1}");
    assert!(!face.contains("K-ELSEWHERE") && !face.contains("気管支喘息"), "another institution's ticket: {face}");

    // This month's 医療券 naming this clinic: 1 with the ticket.
    upload(ticket("w3", "01", "K-0000018", clinic, "高血圧症"));
    let (flash, face) = check();
    let a1 = welfare_result(&face).unwrap_or_else(|| panic!("an A1 result: {face}"));
    for piece in [
        "<QualificationValidity>1</QualificationValidity>".to_string(),
        "<IssueNumber>K-0000018</IssueNumber>".into(),
        format!("<MedicalTreatmentMonth>{month}</MedicalTreatmentMonth>"),
        format!("<DesignatedMedicalInstitutionCode>{clinic}</DesignatedMedicalInstitutionCode>"),
        "<DesignatedMedicalInstitutionFlag>0</DesignatedMedicalInstitutionFlag>".into(),
        "<InjuryName1>高血圧症</InjuryName1>".into(),
        "<SelfPayAmount>1200</SelfPayAmount>".into(),
        "<SingleOrCombinedUse>02</SingleOrCombinedUse>".into(),
    ] {
        assert!(a1.contains(&piece), "{piece} in {a1}");
    }
    assert!(flash.contains("交付番号 K-0000018") && flash.contains("本人支払額 1200円"), "{flash}");

    // The office marks the recipient not to be shown (DV): no 医療扶助 at all, the insurance
    // as before.
    upload(grant("w4", clinic, true));
    let (flash, face) = check();
    assert!(welfare_result(&face).is_none() && !face.contains(office) && !face.contains("K-0000018"), "{face}");
    assert!(!flash.contains("医療扶助"), "{flash}");
    assert_eq!(element(&face, "QualificationValidity").as_deref(), Some("1"), "{face}");
}

/// A 生活保護 recipient no insurer registers (most leave 国保 when the assistance begins): the
/// welfare office's grant carries its record of them, 初回登録 compares the card authority's
/// attested attributes with that record (a record that differs links nothing), and the card
/// check answers with the 医療扶助 alone — the face/ file's QualificationValidity is the
/// recipient's, never 該当資格なし. Only a welfare office may send such a record.
#[test]
fn a_welfare_recipient_no_insurer_registers_registers_their_card_and_is_answered_by_the_assistance() {
    let world = ClinicWorld::new();
    let gateway = GatewayProcess::start(&world);
    let office = "12136016";
    let clinic = crate::common::CLINIC;
    let today = today_plus(0);
    let month = &today[..6];
    let month_end =
        onshi_domain::Date::parse_yyyymmdd(&today).unwrap().first_of_month().add_days(40).first_of_month().add_days(-1).yyyymmdd();
    let upload = |lines: &[String]| {
        std::fs::write(world.path("welfare.jsonl"), lines.join("\n") + "\n").unwrap();
        onshi()
            .args(["center", "import-subsidies", "--db"])
            .arg(world.path("center.sqlite"))
            .arg(world.path("welfare.jsonl"))
            .output()
            .unwrap()
    };
    let grant = |id: &str, payer: &str, recipient: &str, person: &str, birth: &str| {
        format!(
            r#"{{"event_id":"{id}","kind":"grant","payer_number":"{payer}","recipient_number":"{recipient}","person_ref":"{person}","occurred_on":"20260101","notified_at":"20260101100000","certificate":{{"name":"千代田区福祉事務所","designated_institutions":["{clinic}"],"recipient":{{"name":"福祉 太郎","name_kana":"フクシ　タロウ","birth_date":"{birth}","sex":"1","address":"東京都千代田区一番町1-1"}}}}}}"#
        )
    };
    let ticket = |id: &str| {
        format!(
            r#"{{"event_id":"{id}","kind":"ticket","payer_number":"{office}","recipient_number":"0000018","person_ref":"welfare-only-1","occurred_on":"{month}01","notified_at":"{month}01100000","ticket":{{"ticket_type":"01","valid_from":"{month}01","valid_to":"{month_end}","issue_number":"K-W1","month":"{month}","institution_code":"{clinic}","institution_name":"オンシ医院","injuries":["腰痛症"],"treatment_type":"02","self_pay_yen":0}}}}"#
        )
    };
    // A 難病 payer may not stand in for an insurer's member record.
    let refused = upload(&[grant("n1", "54136015", "0000018", "welfare-only-9", "19580707")]);
    let report = String::from_utf8_lossy(&refused.stdout).into_owned() + &String::from_utf8_lossy(&refused.stderr);
    assert!(report.contains("certificate.recipient"), "{report}");
    // Two recipients: one whose office's record matches the card authority's, one whose does not.
    let applied = upload(&[
        grant("w1", office, "0000018", "welfare-only-1", "19580707"),
        ticket("w2"),
        grant("w3", office, "0000026", "welfare-only-2", "19580708"),
    ]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let issue = |card: &str, person: &str| {
        crate::common::run_ok(onshi().args(["jpki", "issue", "--dir"]).arg(world.path("jpki")).arg("--out").arg(world.path(card)).args([
            "--person-ref",
            person,
            "--name",
            "福祉 太郎",
            "--kana",
            "フクシ　タロウ",
            "--birth",
            "19580707",
            "--sex",
            "1",
            "--address",
            "東京都千代田区一番町1-1",
            "--pin",
            PIN,
        ]))
    };
    let link = |card: &str| {
        onshi()
            .args(["card", "link", "--card"])
            .arg(world.path(card))
            .arg("--reader")
            .arg(world.path("reader.json"))
            .args(world.center_args())
            .args(["--pin", PIN])
            .output()
            .unwrap()
    };
    issue("cards/welfare-1.json", "welfare-only-1");
    issue("cards/welfare-2.json", "welfare-only-2");
    let linked = link("cards/welfare-1.json");
    assert!(linked.status.success(), "{}", String::from_utf8_lossy(&linked.stderr));
    let mismatch = link("cards/welfare-2.json");
    let said = String::from_utf8_lossy(&mismatch.stderr);
    assert!(!mismatch.status.success() && said.contains("CARD_ATTRIBUTES_MISMATCH") && said.contains("birth_date"), "{said}");

    gateway.post("/reader/place", &[("card", "welfare-1.json")]);
    let page = gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN), ("drug", "1")]);
    let flash = page.split("<div id=\"flash\"").nth(1).and_then(|rest| rest.split("</div>").next()).expect("a message").to_string();
    assert!(flash.contains("有効（医療扶助）") && flash.contains("交付番号 K-W1"), "{flash}");
    let face = wait_for("the card's face file", || names_in(&world.face()).into_iter().next());
    let face = read_answer(&world.face().join(face));
    assert_eq!(element(&face, "QualificationValidity").as_deref(), Some("1"), "the recipient's, not 該当資格なし: {face}");
    assert_eq!(face.matches("<ResultOfQualificationConfirmation>").count(), 1, "the 医療扶助 alone: {face}");
    for piece in [
        "<InsuredCardClassification>A1</InsuredCardClassification>",
        "<InsuredIdentificationNumber>0000018</InsuredIdentificationNumber>",
        "<Name>福祉 太郎</Name>",
        "<Birthdate>19580707</Birthdate>",
        "<Sex1>1</Sex1>",
        "<IssueNumber>K-W1</IssueNumber>",
        // The consent the patient gave rides on the only result there is.
        "<PharmacistsInfoConsFlg>1</PharmacistsInfoConsFlg>",
    ] {
        assert!(face.contains(piece), "{piece} in {face}");
    }

    // The recipient moves: this office stops the assistance from the first of this month and
    // another office grants it, withholding the person (DV) and sending a record under another
    // name. Last month's list at this clinic shows this office's recipient with this office's
    // record, never the other's; today's card check says the stop (2) and nothing of the
    // withheld grant.
    let first = onshi_domain::Date::parse_yyyymmdd(&today).unwrap().first_of_month();
    let last_month = first.add_days(-1).yyyymmdd()[..6].to_string();
    let stop = format!(
        r#"{{"event_id":"w4","kind":"end","payer_number":"{office}","recipient_number":"0000018","person_ref":"welfare-only-1","occurred_on":"{}","notified_at":"{}100000"}}"#,
        first.yyyymmdd(),
        first.yyyymmdd()
    );
    let elsewhere = format!(
        r#"{{"event_id":"b1","kind":"grant","payer_number":"12276010","recipient_number":"0000018","person_ref":"welfare-only-1","occurred_on":"{}","notified_at":"{}100000","certificate":{{"name":"大阪市福祉事務所","designated_institutions":["{clinic}"],"withheld":true,"recipient":{{"name":"仮名 花子","name_kana":"カメイ　ハナコ","birth_date":"19580707","sex":"2","address":"大阪府大阪市北区1-1"}}}}}}"#,
        first.yyyymmdd(),
        first.yyyymmdd()
    );
    let moved = upload(&[stop, elsewhere]);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    let page = gateway.post("/welfare", &[("month", last_month.as_str())]);
    let listed = page.split("<div id=\"flash\"").nth(1).and_then(|rest| rest.split("</div>").next()).expect("a message").to_string();
    assert!(listed.contains("福祉 太郎") && listed.contains("0000018"), "{listed}");
    assert!(
        !listed.contains("仮名") && !listed.contains("大阪市福祉事務所") && !listed.contains("12276010"),
        "the withheld office's record: {listed}"
    );
    for name in names_in(&world.face()) {
        std::fs::remove_file(world.face().join(name)).unwrap();
    }
    gateway.post("/reader/place", &[("card", "welfare-1.json")]);
    gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN)]);
    let face = wait_for("the card's face file", || names_in(&world.face()).into_iter().next());
    let face = read_answer(&world.face().join(face));
    assert!(
        face.contains("<QualificationValidity>2</QualificationValidity>")
            && face.contains(&format!("<DisqualificationDate>{}</DisqualificationDate>", first.yyyymmdd())),
        "{face}"
    );
    assert!(face.contains("<Name>福祉 太郎</Name>") && !face.contains("仮名") && !face.contains("12276010"), "{face}");
}

/// 居宅同意取得型 through the request files (issue 15, item 3): a card check at the patient's
/// home carrying a 訪問診療 consent (the page's choice, signed by the card), then the receipt
/// computer's `OQSmuhvq01req_` for the consent days answers with a ReceptionNumber and
/// `OQSmuhvq02req_` with the patient's qualification; `OQSmuonq` (online care) for the same days
/// lists nobody, and a flag that is not the kind's is refused with an `.err`.
#[test]
fn home_visit_consents_are_listed_through_the_request_files() {
    let world = ClinicWorld::new();
    let gateway = GatewayProcess::start(&world);
    let p1 = &members()[0];
    let today = today_plus(0);
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let checked =
        gateway.post("/reader/verify", &[("method", "pin"), ("pin", PIN), ("home_kind", "visit"), ("home_until", today_plus(60).as_str())]);
    assert!(checked.contains("有効"), "the card check at home answered");
    let request = |name: &str, body: &str| {
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"Shift_JIS\" standalone=\"no\"?>\r\n<XmlMsg><MessageHeader><MedicalInstitutionCode>{}</MedicalInstitutionCode><ArbitraryFileIdentifier>afi-h</ArbitraryFileIdentifier></MessageHeader><MessageBody>{body}</MessageBody></XmlMsg>",
            crate::common::CLINIC
        );
        drop_request(&world.req(), name, &encoding_rs::SHIFT_JIS.encode(&text).0);
    };
    let window = |flag: &str| {
        format!(
            "<QualificationConfirmSearchInfo><ConsentDateFrom>{today}</ConsentDateFrom><ConsentDateTo>{today}</ConsentDateTo><MedicalTreatmentFlag>{flag}</MedicalTreatmentFlag></QualificationConfirmSearchInfo>"
        )
    };
    let listed = |prefix: &str, flag: &str, n: u32| {
        request(&format!("{prefix}01req_20261204{n:04}.xml"), &window(flag));
        let accepted = read_answer(&world.res().join(format!("{prefix}01res_20261204{n:04}.xml")));
        let reception = element(&accepted, "ReceptionNumber").expect("a ReceptionNumber");
        request(&format!("{prefix}02req_20261204{:04}.xml", n + 1), &format!("<ReceptionNumber>{reception}</ReceptionNumber>"));
        read_answer(&world.res().join(format!("{prefix}02res_20261204{:04}.xml", n + 1)))
    };
    let visits = listed("OQSmuhvq", "2", 1);
    assert_eq!(element(&visits, "SegmentOfResult").as_deref(), Some("1"), "{visits}");
    assert_eq!(visits.matches("<BulkConfirmUnit>").count(), 1, "{visits}");
    for piece in [
        "<QualificationValidity>1</QualificationValidity>".to_string(),
        format!("<InsuredIdentificationNumber>{}</InsuredIdentificationNumber>", p1.number),
        format!("<Birthdate>{}</Birthdate>", p1.birth),
    ] {
        assert!(visits.contains(&piece), "{piece} in {visits}");
    }
    let online = listed("OQSmuonq", "3", 3);
    assert_eq!(online.matches("<BulkConfirmUnit>").count(), 0, "no online-care consent: {online}");
    // 4 (救急時) is no home-visit flag.
    request("OQSmuhvq01req_202612040005.xml", &window("4"));
    // The .err is in the request's own character set (Shift_JIS here).
    let err = wait_for("the .err", || std::fs::read(world.res().join("OQSmuhvq01req_202612040005.err")).ok());
    let err = encoding_rs::SHIFT_JIS.decode(&err).0.into_owned();
    assert!(err.contains("MedicalTreatmentFlag"), "{err}");
}
