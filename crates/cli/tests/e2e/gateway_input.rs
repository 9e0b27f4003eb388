//! The clinic gateway under odd input (issue 11, item 3): every test drops the odd file into
//! the `req/` folder of a real `onshi gateway serve` beside a real center, and reads what
//! appears in `res/` (and what stays in `req/`).

use std::io::Write as _;
use std::path::Path;

use crate::clinic::{
    ClinicWorld, GatewayProcess, KYOKAI, Member, drop_request, element, members, names_in, read_answer, today_plus, wait_for,
};
use crate::common::CLINIC;

/// A single-check request written as a client would, with the choices these tests vary.
struct Request<'a> {
    member: &'a Member,
    date: String,
    /// `Shift_JIS` or `UTF-8`, as declared and encoded.
    encoding: &'a str,
    /// CharacterCodeIdentifier, when the client sets one.
    asked: Option<&'a str>,
    limit_consent: bool,
    /// Extra header elements (to make a file odd).
    header_extra: String,
    birth: bool,
}

impl<'a> Request<'a> {
    fn of(member: &'a Member) -> Request<'a> {
        Request {
            member,
            date: today_plus(0),
            encoding: "UTF-8",
            asked: None,
            limit_consent: false,
            header_extra: String::new(),
            birth: true,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let m = self.member;
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"{}\" standalone=\"no\"?>\n<XmlMsg><MessageHeader><QualificationConfirmationDate>{}</QualificationConfirmationDate>\
             <MedicalInstitutionCode>{CLINIC}</MedicalInstitutionCode>{}{}</MessageHeader><MessageBody><QualificationConfirmSearchInfo>\
             <InsurerNumber>{}</InsurerNumber><InsuredCardSymbol>{}</InsuredCardSymbol><InsuredIdentificationNumber>{}</InsuredIdentificationNumber>\
             <InsuredBranchNumber>{}</InsuredBranchNumber>{}<LimitApplicationCertificateRelatedConsFlg>{}</LimitApplicationCertificateRelatedConsFlg>\
             </QualificationConfirmSearchInfo></MessageBody></XmlMsg>\n",
            self.encoding,
            self.date,
            self.asked.map(|a| format!("<CharacterCodeIdentifier>{a}</CharacterCodeIdentifier>")).unwrap_or_default(),
            self.header_extra,
            m.insurer,
            m.symbol,
            m.number,
            m.branch,
            if self.birth { format!("<Birthdate>{}</Birthdate>", m.birth) } else { String::new() },
            if self.limit_consent { "1" } else { "0" },
        );
        if self.encoding == "Shift_JIS" { encoding_rs::SHIFT_JIS.encode(&text).0.into_owned() } else { text.into_bytes() }
    }
}

/// Waits for an `.err` and decodes it from the encoding it is expected in, refusing bytes
/// that are not that encoding.
fn read_err(path: &Path, encoding: &'static encoding_rs::Encoding) -> String {
    let bytes = wait_for(&path.display().to_string(), || std::fs::read(path).ok());
    let (text, _, malformed) = encoding.decode(&bytes);
    assert!(!malformed, "{} is not {}: {:?}", path.display(), encoding.name(), String::from_utf8_lossy(&bytes));
    text.into_owned()
}

/// Bytes this process has read from files and pipes so far (Linux's per-process I/O count;
/// every thread of the gateway is included).
#[cfg(target_os = "linux")]
fn bytes_read_by(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/<pid>/io");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|n| n.trim().parse().ok()).expect("rchar")
}

/// Issue 11: a 50 MB request file was read whole and echoed into a 52 MB answer; nothing
/// capped the elements or the text. Now the size is taken from the metadata (the gateway reads
/// no more than the head it needs for the `.err`'s encoding), and elements and text have caps;
/// each refusal names its limit.
#[test]
#[cfg(target_os = "linux")]
fn request_files_over_the_limits_are_refused_with_an_err_naming_the_limit() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let gateway = GatewayProcess::start(&world);
    let (req, res) = (world.req(), world.res());

    // 50 MB (sparse: the disk is spared), written aside and renamed in, as clients do. Its head
    // asks for Shift_JIS, so its .err is in Shift_JIS.
    const BIG: u64 = 50_000_000;
    let aside = world.path("big.part");
    let mut file = std::fs::File::create(&aside).unwrap();
    file.write_all(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader><CharacterCodeIdentifier>1</CharacterCodeIdentifier>",
    )
    .unwrap();
    file.set_len(BIG).unwrap();
    drop(file);
    let read_before = bytes_read_by(gateway.pid());
    std::fs::rename(&aside, req.join("OQSsiquc01req_big.xml")).unwrap();
    let err = read_err(&res.join("OQSsiquc01req_big.err"), encoding_rs::SHIFT_JIS);
    assert!(err.starts_with("照会ファイルが大きすぎるため"), "Japanese first: {err}");
    assert!(err.contains("50000000 bytes") && err.contains("over 1048576 bytes are refused unread"), "the size and the limit: {err}");
    let read = bytes_read_by(gateway.pid()) - read_before;
    assert!(read < BIG / 10, "the file was read ({read} bytes) before it was refused");
    assert_eq!(std::fs::metadata(res.join("OQSsiquc01req_big.xml")).unwrap().len(), 0, "nothing of it is echoed beside the .err");
    assert_eq!(std::fs::metadata(req.join("OQSsiquc01req_big.xml")).unwrap().len(), BIG, "left in req/ as it was");
    assert!(!res.join("OQSsiquc01res_big.xml").exists());

    // More elements than any request holds, and a field longer than any field.
    let mut many = Request::of(p1);
    many.header_extra = "<Padding/>".repeat(1_000);
    drop_request(&req, "OQSsiquc01req_many.xml", &many.bytes());
    let mut long = Request::of(p1);
    long.header_extra = format!("<ArbitraryFileIdentifier>{}</ArbitraryFileIdentifier>", "x".repeat(1_001));
    drop_request(&req, "OQSsiquc01req_long.xml", &long.bytes());
    let err = read_err(&res.join("OQSsiquc01req_many.err"), encoding_rs::UTF_8);
    assert!(err.contains("more than 1000 elements"), "{err}");
    let err = read_err(&res.join("OQSsiquc01req_long.err"), encoding_rs::UTF_8);
    assert!(err.contains("<ArbitraryFileIdentifier> holds more than 1000 characters"), "{err}");
    assert!(err.starts_with("照会ファイルの要素が多すぎるか"), "{err}");
    for name in ["many", "long"] {
        assert!(!res.join(format!("OQSsiquc01res_{name}.xml")).exists(), "{name}: not answered");
        assert!(!req.join(format!("OQSsiquc01req_{name}.xml")).exists(), "{name}: read whole, so moved beside its .err");
    }

    // Just under every limit, a request is answered as usual.
    let mut fine = Request::of(p1);
    fine.header_extra = format!("{}<ArbitraryFileIdentifier>{}</ArbitraryFileIdentifier>", "<Padding/>".repeat(900), "x".repeat(1_000));
    drop_request(&req, "OQSsiquc01req_fine.xml", &fine.bytes());
    let answer = read_answer(&res.join("OQSsiquc01res_fine.xml"));
    assert_eq!(element(&answer, "QualificationValidity").as_deref(), Some("1"));
}

/// Issue 11: a writer that paused 2.5 s had its half file moved away (and the rest of its
/// bytes lost), and a large half-written file was read again every 10 ms. Now a file that is
/// not whole is read again only once it changes, is refused after its settle period with an
/// `.err` saying it is incomplete, and stays in `req/` with every byte; when its writer
/// finishes it, it is answered.
#[test]
#[cfg(target_os = "linux")]
fn a_half_written_request_keeps_its_bytes_is_not_read_again_unchanged_and_is_answered_when_finished() {
    let world = ClinicWorld::new();
    let [p1, _, _, p4] = <[_; 4]>::try_from(members()).unwrap();
    // A short settle period, so that the refusal comes within the test.
    world.write_config(&world.url(), "settle_ms = 300");
    let gateway = GatewayProcess::start(&world);
    let (req, res) = (world.req(), world.res());

    // Written in place (no rename), in Shift_JIS: half of it, then the writer stops.
    let mut request = Request::of(&p1);
    request.encoding = "Shift_JIS";
    let whole = request.bytes();
    let half = &whole[..whole.len() / 2];
    let path = req.join("OQSsiquc01req_slow.xml");
    let mut writer = std::fs::OpenOptions::new().create_new(true).write(true).open(&path).unwrap();
    writer.write_all(half).unwrap();
    writer.sync_all().unwrap();
    let err = read_err(&res.join("OQSsiquc01req_slow.err"), encoding_rs::SHIFT_JIS);
    assert!(err.starts_with("照会ファイルが書きかけのまま変わらないため"), "Japanese first, in the request's encoding: {err}");
    assert!(err.contains("not a whole request") && err.contains("left in req/ as it is, with every byte"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), half, "not moved, not cut: the writer's file is as it left it");
    assert_eq!(std::fs::metadata(res.join("OQSsiquc01req_slow.xml")).unwrap().len(), 0, "the pair, with none of the bytes");

    // Meanwhile other requests are answered; the unchanged half file is not read again on any
    // of those passes (the gateway reads far less than the file each time).
    let mut large = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><!-- ".to_vec();
    large.extend(std::iter::repeat_n(b'x', 900_000));
    large.extend_from_slice(b" --><MessageHeader>");
    let before = bytes_read_by(gateway.pid());
    // Renamed in whole, so that its first read is of all of it.
    drop_request(&req, "OQSsiquc01req_large.xml", &large);
    wait_for("the large half file to be read once", || (bytes_read_by(gateway.pid()) - before >= large.len() as u64).then_some(()));
    let read_once = bytes_read_by(gateway.pid());
    for i in 0..5 {
        drop_request(&req, &format!("OQSsiquc01req_other{i}.xml"), &Request::of(&p4).bytes());
        read_answer(&res.join(format!("OQSsiquc01res_other{i}.xml")));
    }
    let since = bytes_read_by(gateway.pid()) - read_once;
    assert!(since < large.len() as u64, "the unchanged half file was read again: {since} bytes over five answers");

    // The writer comes back and finishes: the request is answered, and leaves req/.
    writer.write_all(&whole[half.len()..]).unwrap();
    drop(writer);
    let answer = read_answer(&res.join("OQSsiquc01res_slow.xml"));
    assert_eq!(element(&answer, "QualificationValidity").as_deref(), Some("1"));
    assert_eq!(element(&answer, "Name").as_deref(), Some(p1.name));
    assert!(!path.exists(), "answered, so taken from req/");
}

/// Issue 11: a symbolic link or a FIFO in `req/` was passed over without a word (and a link
/// would have been followed had it been a file). Each now gets an `.err` naming what it is,
/// is left alone, and the gateway goes on answering (a FIFO does not block it).
#[test]
#[cfg(unix)]
fn links_fifos_and_folders_in_req_are_refused_with_an_err_and_never_followed() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let gateway = GatewayProcess::start(&world);
    let (req, res) = (world.req(), world.res());

    // The link points at a whole, valid request outside req/: following it would answer it.
    let outside = world.path("outside.xml");
    std::fs::write(&outside, Request::of(p1).bytes()).unwrap();
    std::os::unix::fs::symlink(&outside, req.join("OQSsiquc01req_link.xml")).unwrap();
    let made = std::process::Command::new("mkfifo").arg(req.join("OQSsiquc01req_fifo.xml")).status().expect("mkfifo runs");
    assert!(made.success());
    std::fs::create_dir(req.join("OQSsiquc01req_dir.xml")).unwrap();

    for (name, what) in [("link", "a symbolic link"), ("fifo", "a FIFO (named pipe)"), ("dir", "a folder")] {
        let err = read_err(&res.join(format!("OQSsiquc01req_{name}.err")), encoding_rs::UTF_8);
        assert!(err.starts_with("req/ に照会ファイルではないもの"), "{name}: Japanese first: {err}");
        assert!(err.contains(&format!("this is {what} in req/")) && err.contains("never through a link"), "{name}: {err}");
        assert!(std::fs::symlink_metadata(req.join(format!("OQSsiquc01req_{name}.xml"))).is_ok(), "{name}: left where it is");
    }
    // Still answering (the FIFO did not block the watcher), and the link's target was not.
    drop_request(&req, "OQSsiquc01req_after.xml", &Request::of(p1).bytes());
    read_answer(&res.join("OQSsiquc01res_after.xml"));
    assert!(!res.join("OQSsiquc01res_link.xml").exists(), "the link was not followed");
    assert_eq!(std::fs::read(&outside).unwrap(), Request::of(p1).bytes(), "its target untouched");
    let errs: Vec<String> = names_in(&res).into_iter().filter(|n| n.ends_with(".err")).collect();
    assert_eq!(errs.len(), 3, "told once each, not on every pass: {errs:?}");
    drop(gateway);
}

/// Issue 11: a second request under the same file name silently replaced the first answer
/// before the receipt computer had taken it. Now the second answer takes the next free name.
#[test]
fn a_second_request_under_the_same_name_does_not_replace_an_answer_not_yet_taken() {
    let world = ClinicWorld::new();
    let [p1, _, _, p4] = <[_; 4]>::try_from(members()).unwrap();
    let _gateway = GatewayProcess::start(&world);
    let (req, res) = (world.req(), world.res());
    drop_request(&req, "OQSsiquc01req_fixed.xml", &Request::of(&p1).bytes());
    let first = read_answer(&res.join("OQSsiquc01res_fixed.xml"));
    drop_request(&req, "OQSsiquc01req_fixed.xml", &Request::of(&p4).bytes());
    let second = read_answer(&res.join("OQSsiquc01res_fixed.2.xml"));
    assert_eq!(element(&first, "Name").as_deref(), Some(p1.name));
    assert_eq!(element(&second, "Name").as_deref(), Some(p4.name));
    let again = read_answer(&res.join("OQSsiquc01res_fixed.xml"));
    assert_eq!(element(&again, "Name").as_deref(), Some(p1.name), "the first answer is still there, unchanged");
    // Refusals too: a second .err under the same name does not replace the first.
    let mut broken = Request::of(&p1);
    broken.birth = false;
    drop_request(&req, "OQSsiquc01req_bad.xml", &broken.bytes());
    read_err(&res.join("OQSsiquc01req_bad.err"), encoding_rs::UTF_8);
    drop_request(&req, "OQSsiquc01req_bad.xml", &broken.bytes());
    let err = read_err(&res.join("OQSsiquc01req_bad.2.err"), encoding_rs::UTF_8);
    assert!(err.contains("<Birthdate> is missing"), "{err}");
    assert!(res.join("OQSsiquc01req_bad.2.xml").exists(), "the copy beside it takes the same name: the pair stays a pair");
}

/// Issue 11: `.err` files were always UTF-8. They now follow CharacterCodeIdentifier (0 UTF-8,
/// 1 or 2 Shift_JIS), and otherwise the request's own encoding.
#[test]
fn err_files_are_written_in_the_encoding_the_client_asked_for() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let _gateway = GatewayProcess::start(&world);
    let (req, res) = (world.req(), world.res());
    let cases: [(&str, &str, Option<&str>, &'static encoding_rs::Encoding); 4] = [
        ("u1", "UTF-8", Some("1"), encoding_rs::SHIFT_JIS),
        ("u2", "UTF-8", Some("2"), encoding_rs::SHIFT_JIS),
        ("s0", "Shift_JIS", Some("0"), encoding_rs::UTF_8),
        ("sx", "Shift_JIS", None, encoding_rs::SHIFT_JIS),
    ];
    for (name, encoding, asked, _) in cases {
        let mut request = Request::of(p1);
        (request.encoding, request.asked, request.birth) = (encoding, asked, false);
        drop_request(&req, &format!("OQSsiquc01req_{name}.xml"), &request.bytes());
    }
    for (name, _, _, expected) in cases {
        let err = read_err(&res.join(format!("OQSsiquc01req_{name}.err")), expected);
        assert!(err.starts_with("この照会ファイルは読めませんでした"), "{name}: {err}");
        assert!(err.contains("<Birthdate> is missing"), "{name}: {err}");
    }
}

/// Issue 11: the refusal of a mistyped insurer number said only "保険者番号が正しくありません";
/// `onshi verify number` also names the check digit. The result file now does too.
#[test]
fn the_check_digit_refusal_in_a_result_file_names_the_check_digit() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let _gateway = GatewayProcess::start(&world);
    // 協会けんぽ 東京 is 06130488: its check digit is 8, and the request says 0.
    assert_eq!(KYOKAI, "06130488");
    let typo = Member { insurer: "06130480".into(), ..p1.clone() };
    drop_request(&world.req(), "OQSsiquc01req_typo.xml", &Request::of(&typo).bytes());
    let answer = read_answer(&world.res().join("OQSsiquc01res_typo.xml"));
    assert_eq!(element(&answer, "ProcessingResultStatus").as_deref(), Some("2"));
    assert_eq!(element(&answer, "ProcessingResultCode").as_deref(), Some("INVALID_INSURER_NUMBER"));
    let message = element(&answer, "ProcessingResultMessage").unwrap();
    assert!(message.contains("検証番号（最後の桁）が合いません"), "{message}");
    assert!(message.contains("check digit (the last digit should be 8)"), "{message}");
}

/// A member with a 限度額 certificate (ウ), added for the cache test.
fn with_limit() -> (Member, String) {
    let m =
        Member {
            person: "p5", insurer: KYOKAI.into(), symbol: "12", number: "348", branch: "00", birth: "19850505", name: "限度　五郎"
        };
    let event = serde_json::json!({
        "event_id": "acq-p5", "kind": "acquire", "insurer_number": m.insurer, "person_ref": m.person,
        "card": {"symbol": m.symbol, "number": m.number, "branch": m.branch},
        "occurred_on": "20200401", "notified_at": "20200402090000",
        "member": {"relationship": "1", "card_classification": "01", "name": m.name, "name_kana": "ゲンド　ゴロウ",
                   "sex": "1", "birth_date": m.birth, "address": "東京都千代田区霞が関1-2-2"},
        "terms": {"income_class": "general", "limit": {"category": "A03", "classification": "01", "valid_from": "20200401", "valid_to": "20991231"}}
    });
    (m, event.to_string())
}

/// `YYYYMMDD` as 2026年12月3日, written here rather than by the code under test.
fn japanese_date(yyyymmdd: &str) -> String {
    let n = |r: std::ops::Range<usize>| yyyymmdd[r].parse::<u32>().unwrap();
    format!("{}年{}月{}日", n(0..4), n(4..6), n(6..8))
}

/// Issue 11: the offline cache kept one answer per patient, limit information included, and
/// handed it to the next request whether or not that one consented; nor did it say which day
/// of care it was for. Now the limit is given only with consent, and the date is stated.
#[test]
fn the_offline_cache_gives_limit_information_only_with_consent_and_says_for_which_day() {
    let mut world = ClinicWorld::new();
    let (p5, event) = with_limit();
    world.upload(&[event]);
    let gateway = GatewayProcess::start(&world);
    let (req, res) = (world.req(), world.res());
    let today = today_plus(0);
    let mut consented = Request::of(&p5);
    consented.limit_consent = true;
    drop_request(&req, "OQSsiquc01req_on.xml", &consented.bytes());
    let online = read_answer(&res.join("OQSsiquc01res_on.xml"));
    assert_eq!(element(&online, "LimitApplicationCertificateClassificationFlag").as_deref(), Some("A03"), "online, with consent");

    world.stop_center();
    // Tomorrow's check, without consent, while the line is down.
    let mut tomorrow = Request::of(&p5);
    tomorrow.date = today_plus(1);
    drop_request(&req, "OQSsiquc01req_off.xml", &tomorrow.bytes());
    let offline = read_answer(&res.join("OQSsiquc01res_off.xml"));
    assert_eq!(element(&offline, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-CACHED"), "{offline}");
    assert_eq!(element(&offline, "Name").as_deref(), Some(p5.name));
    assert_eq!(element(&offline, "LimitApplicationCertificateClassificationFlag"), None, "no consent, no limit: {offline}");
    assert_eq!(element(&offline, "LimitApplicationCertificateRelatedInfo"), None);
    let message = element(&offline, "ProcessingResultMessage").unwrap();
    assert!(message.contains(&format!("診療日 {} についての回答", japanese_date(&today))), "the day it was answered for: {message}");

    // With consent, the cached limit is given.
    let mut consented_offline = Request::of(&p5);
    consented_offline.limit_consent = true;
    drop_request(&req, "OQSsiquc01req_off2.xml", &consented_offline.bytes());
    let offline = read_answer(&res.join("OQSsiquc01res_off2.xml"));
    assert_eq!(element(&offline, "ProcessingResultCode").as_deref(), Some("ONSHI-GW-CACHED"));
    assert_eq!(element(&offline, "LimitApplicationCertificateClassificationFlag").as_deref(), Some("A03"));
    drop(gateway);
}

/// Issue 11: a drug (YZK) or checkup (TKK) request without the 枝番 was asked for 枝番 00, the
/// 本人: a family member's request under the same card numbers got the 本人's drug list. Now it
/// is refused with an `.err` asking for the 枝番; with it, the same request is answered.
#[test]
fn a_drug_or_checkup_request_without_a_branch_number_is_refused() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let record = r#"{"kind":"drug","person_ref":"p1","drug_code":"620004628","drug_name":"アムロジピン錠５ｍｇ","quantity":1.0,"unit":"錠","days":28,"dispensed_on":"20261101","dispensed_by":"1311234569","source":"pharmacy","arrived_on":"20261101"}"#;
    std::fs::write(world.path("medical.jsonl"), format!("{record}\n")).unwrap();
    crate::common::run_ok(
        crate::common::onshi().args(["center", "import-medical", "--db"]).arg(world.path("center.sqlite")).arg(world.path("medical.jsonl")),
    );
    let gateway = GatewayProcess::start(&world);
    // The 本人 consents to drug information at the reader.
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    gateway.post("/reader/verify", &[("method", "pin"), ("pin", crate::clinic::PIN), ("drug", "1"), ("checkup", "1")]);
    let request = |kind: &str, id: &str, branch: Option<&str>| {
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader><MedicalInstitutionCode>{CLINIC}</MedicalInstitutionCode><InsurerNumber>{}</InsurerNumber><InsuranceCardSymbol>{}</InsuranceCardSymbol><InsuredPersonIdentificationNumber>{}</InsuredPersonIdentificationNumber>{}<ArbitraryFileIdentifier>{id}</ArbitraryFileIdentifier></MessageHeader><MessageBody><FileCategory>2</FileCategory></MessageBody></XmlMsg>",
            p1.insurer,
            p1.symbol,
            p1.number,
            branch.map(|b| format!("<BranchNumber>{b}</BranchNumber>")).unwrap_or_default()
        );
        drop_request(&world.req(), &format!("{kind}siquc01req_{id}.xml"), text.as_bytes());
    };
    for kind in ["YZK", "TKK"] {
        request(kind, "nobranch", None);
        let err = read_err(&world.res().join(format!("{kind}siquc01req_nobranch.err")), encoding_rs::UTF_8);
        assert!(err.starts_with("枝番がありません"), "{kind}: {err}");
        assert!(err.contains("<BranchNumber> is missing") && err.contains("never assumed to be 00"), "{kind}: {err}");
        assert!(!world.res().join(format!("{kind}siquc01res_nobranch.xml")).exists(), "{kind}: nothing answered");
    }
    // The same request with the 本人's 枝番 is answered with the drug list.
    request("YZK", "withbranch", Some(p1.branch));
    let drugs = read_answer(&world.res().join("YZKsiquc01res_withbranch.xml"));
    assert_eq!(element(&drugs, "ResultCode").as_deref(), Some("1"), "{drugs}");
    assert_eq!(element(&drugs, "CzDrugN").as_deref(), Some("アムロジピン錠５ｍｇ"));
}
