//! `onshi receipt check` on the published sample claim file, against a register seeded so that
//! every verdict occurs for its claims; and on broken files.

use std::path::{Path, PathBuf};

use onshi_domain::Date;
use onshi_domain::ids::InsurerNumber;
use onshi_receipt::uke::{self, Claim, UkeFile};
use serde_json::json;

use crate::common::{CLINIC, Server, onshi, run_ok};

/// The day of the check: early in the month after treatment, as clinics check before the 10th.
const TODAY: &str = "20211108";

/// Insurer events written for the sample's claims.
#[derive(Default)]
struct Seed {
    lines: Vec<String>,
}

struct Holder<'a> {
    person: &'a str,
    insurer: &'a str,
    symbol: &'a str,
    number: &'a str,
    branch: &'a str,
    birth: &'a str,
    relationship: &'a str,
}

fn notified(occurred: &str, lag_days: i64) -> String {
    format!("{}090000", Date::parse_yyyymmdd(occurred).unwrap().add_days(lag_days).yyyymmdd())
}

impl Seed {
    fn acquire(&mut self, h: &Holder, on: &str, lag_days: i64) {
        let id = self.lines.len();
        self.lines.push(
            json!({
                "event_id": format!("e{id}"), "kind": "acquire", "insurer_number": h.insurer, "person_ref": h.person,
                "card": {"symbol": h.symbol, "number": h.number, "branch": h.branch},
                "occurred_on": on, "notified_at": notified(on, lag_days),
                "member": {"relationship": h.relationship, "card_classification": "01", "name": "試験　患者", "name_kana": "シケン　カンジャ",
                           "sex": "1", "birth_date": h.birth},
                "terms": {"income_class": "general"}
            })
            .to_string(),
        );
    }

    fn lose(&mut self, h: &Holder, on: &str, lag_days: i64) {
        let id = self.lines.len();
        self.lines.push(
            json!({
                "event_id": format!("e{id}"), "kind": "lose", "insurer_number": h.insurer, "person_ref": h.person,
                "card": {"symbol": h.symbol, "number": h.number, "branch": h.branch},
                "occurred_on": on, "notified_at": notified(on, lag_days), "loss_reason": "03"
            })
            .to_string(),
        );
    }
}

/// 協会けんぽ, registering on the day (lag 0): a missing coverage is missing.
const PROMPT: &str = "01010016";
/// Registers 45 days late: a missing coverage may still come.
const SLOW: &str = "01350016";
/// Never registered anything.
const SILENT: &str = "34130021";
/// The sample's insurer of claim 2.
const OTHER: &str = "01130012";
/// A 健康保険組合 (paid by the 支払基金, like the sample's file).
const SOCIETY: &str = "06130488";

/// The register for the sample, with the claim each entry is meant for.
fn seed() -> Seed {
    let kokuho = InsurerNumber::with_check_digit("13100").unwrap().as_str().to_string();
    let mut seed = Seed::default();
    let h = |person, insurer, symbol, number, branch, birth| Holder { person, insurer, symbol, number, branch, birth, relationship: "2" };
    // No.2: valid, 枝番 00 recorded → ok.
    seed.acquire(&h("p2", OTHER, "64440718", "7", "00", "19910125"), "20150401", 0);
    // No.1 and No.3: valid, 枝番 01 registered but not recorded → bounce, fixable.
    seed.acquire(&h("p3", PROMPT, "1", "1", "01", "19911121"), "20150401", 0);
    // No.22: lost on 2021-09-01, nothing newer → bounce.
    let p22 = h("p22", PROMPT, "1", "1", "02", "20201004");
    seed.acquire(&p22, "20201004", 0);
    seed.lose(&p22, "20210901", 0);
    // No.23: lost, newer coverage with a 健保組合 → reroute, fixable.
    let p23 = h("p23", PROMPT, "1", "1", "03", "20161004");
    seed.acquire(&p23, "20161004", 0);
    seed.lose(&p23, "20210901", 0);
    seed.acquire(&h("p23", SOCIETY, "77", "8", "04", "20161004"), "20210901", 0);
    // No.26: lost, newer coverage with 国保 (paid by the 国保連) → reroute, not fixable here.
    let p26 = h("p26", PROMPT, "1", "1", "04", "20091004");
    seed.acquire(&p26, "20091004", 0);
    seed.lose(&p26, "20210901", 0);
    seed.acquire(&h("p26", &kokuho, "", "99", "00", "20091004"), "20210901", 0);
    // No.27: starts after the month of care → bounce.
    seed.acquire(&h("p27", PROMPT, "1", "1", "05", "20150127"), "20211101", 0);
    // No.24 (care on the 6th and 11th): lost on the 8th → bounce, split needed.
    let p24 = h("p24", PROMPT, "1", "3", "00", "20100508");
    seed.acquire(&p24, "20100508", 0);
    seed.lose(&p24, "20211008", 0);
    // No.51 and the others born 2019-08-08: twins under the same numbers → several.
    seed.acquire(&h("p51a", PROMPT, "1", "1", "06", "20190808"), "20190808", 0);
    seed.acquire(&h("p51b", PROMPT, "1", "1", "07", "20190808"), "20190808", 0);
    // No.15: 枝番 03 recorded, 02 registered → wrong 枝番. Registered 45 days late.
    seed.acquire(&h("p15", SLOW, "11", "1", "02", "20180909"), "20180909", 45);
    seed
}

struct Setup {
    dir: tempfile::TempDir,
    server: Server,
}

impl Setup {
    fn new(seed: &Seed) -> Setup {
        Setup::new_with(seed, |_| {})
    }

    /// As [`Setup::new`], with `more` done to the register (its path) before the center starts.
    fn new_with(seed: &Seed, more: impl FnOnce(&Path)) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::write(root.join("events.jsonl"), seed.lines.join("\n") + "\n").expect("events");
        run_ok(onshi().args(["center", "import", "--db"]).arg(root.join("center.sqlite")).arg(root.join("events.jsonl")));
        more(&root.join("center.sqlite"));
        run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(root.join("pki")));
        run_ok(onshi().args(["center", "pki", "issue-institution", "--code", CLINIC, "--dir"]).arg(root.join("pki")));
        let server = Server::start_at(&root.join("center.sqlite"), &root.join("pki"));
        Setup { dir, server }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn check(&self, file: &Path, extra: &[&str]) -> std::process::Output {
        self.check_on(TODAY, file, extra)
    }

    fn check_on(&self, today: &str, file: &Path, extra: &[&str]) -> std::process::Output {
        let pki = self.path("pki");
        onshi()
            .args(["receipt", "check"])
            .arg(file)
            .args(["--today", today, "--center", &self.server.url(), "--ca"])
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join(format!("institutions/{CLINIC}.pem")))
            .arg("--key")
            .arg(pki.join(format!("institutions/{CLINIC}.key")))
            .args(extra)
            .output()
            .expect("onshi runs")
    }
}

/// Reads the CSV report into (receipt number → (verdict code, reason codes)).
fn read_verdicts(csv: &str) -> std::collections::HashMap<String, (String, String)> {
    let body = csv.strip_prefix('\u{FEFF}').expect("a BOM for spreadsheets");
    let mut lines = body.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (number, class, reasons) = (column("レセプト番号"), column("判定コード"), column("理由コード"));
    lines
        .map(|line| {
            // The fields before the free text never hold commas.
            let fields: Vec<&str> = line.split(',').collect();
            (fields[number].to_string(), (fields[class].to_string(), fields[reasons].to_string()))
        })
        .collect()
}

fn sample() -> PathBuf {
    onshi_receipt::fixtures::sample_uke()
}

#[test]
fn every_verdict_occurs_for_the_sample_and_the_fix_changes_exactly_what_it_lists() {
    let setup = Setup::new(&seed());
    let (csv, html, fixed) = (setup.path("report.csv"), setup.path("report.html"), setup.path("FIXED.UKE"));
    let original = std::fs::read(sample()).expect("sample");
    let output =
        setup.check(&sample(), &["--csv", csv.to_str().unwrap(), "--html", html.to_str().unwrap(), "--fix", fixed.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "claims need attention\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("GO states 140 claims but the file holds 75"), "{stderr}");
    assert!(stdout.contains("レセプト 75件、合計 86392点"), "{stdout}");

    let verdicts = read_verdicts(&std::fs::read_to_string(&csv).expect("csv"));
    assert_eq!(verdicts.len(), 75, "one row per claim");
    let expect = |receipt: &str, class: &str, reason: &str| {
        let (got_class, got_reasons) = &verdicts[receipt];
        assert_eq!(got_class, class, "No.{receipt}: {got_reasons}");
        assert!(got_reasons.split(' ').any(|r| r == reason), "No.{receipt}: expected {reason} in {got_reasons}");
    };
    expect("2", "ok", "OK");
    expect("3", "bounce", "BRANCH_MISSING");
    expect("1", "bounce", "BRANCH_MISSING");
    expect("1", "bounce", "PUBLIC_NUMBER_IMPOSSIBLE");
    expect("22", "bounce", "COVERAGE_LOST");
    expect("23", "reroute", "REROUTE");
    expect("26", "reroute", "REROUTE");
    expect("27", "bounce", "NOT_YET_STARTED");
    expect("24", "bounce", "CHANGED_MID_MONTH");
    expect("51", "bounce", "SEVERAL_MATCHES");
    expect("15", "bounce", "BRANCH_WRONG");
    expect("28", "bounce", "NO_SUCH_COVERAGE");
    expect("25", "bounce", "BIRTH_DATE_MISMATCH");
    expect("10", "pending", "REGISTRATION_PENDING");
    expect("6", "pending", "INSURER_NOT_REGISTERED");
    expect("4", "not_checked", "PUBLIC_ONLY");

    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("<svg class=\"chart\"") && page.contains("返戻のおそれ") && page.contains("自動修正した箇所"));

    assert_eq!(std::fs::read(sample()).expect("sample"), original, "the input is never modified");
    let before = uke::read(&original).expect("reads");
    let after = uke::read(&std::fs::read(&fixed).expect("fixed copy")).expect("the copy reads");
    assert_eq!(after.layout, before.layout, "same encoding and line endings");
    let listed: Vec<&str> = stdout.lines().skip_while(|l| !l.contains("件の修正を書きました")).skip(1).collect();
    let differences = differences(&before, &after);
    assert_eq!(listed.len(), differences.len(), "listed:\n{}\ndiffer:\n{differences:#?}", listed.join("\n"));
    for difference in &differences {
        assert!(
            listed.iter().any(|l| difference.iter().all(|piece| l.contains(piece.as_str()))),
            "{difference:?} is not listed:\n{}",
            listed.join("\n")
        );
    }
    let claim = |file: &UkeFile, n: &str| file.claims.iter().find(|c| c.receipt_number == n).cloned().expect("claim");
    assert_eq!(claim(&after, "3").branch(), Some("01"));
    assert_eq!(
        claim(&after, "23").insurance.map(|h| (h.insurer_text, h.symbol, h.number)),
        Some((SOCIETY.into(), "77".into(), "8".into()))
    );
    assert_eq!(claim(&after, "23").branch(), Some("04"));
    let numbers = |c: Claim| c.insurance.map(|h| (h.insurer_text, h.symbol, h.number));
    assert_eq!(numbers(claim(&after, "26")), numbers(claim(&before, "26")), "a 振替 to another review body is not rewritten");
    assert_eq!(numbers(claim(&before, "6")).map(|n| n.0), Some(SILENT.to_string()), "No.6's insurer never registered");

    // Checked again, the corrected copy has no fixable claims left.
    let again = setup.check(&fixed, &["--csv", setup.path("again.csv").to_str().unwrap()]);
    let rechecked = read_verdicts(&std::fs::read_to_string(setup.path("again.csv")).expect("csv"));
    assert_eq!(rechecked["3"].0, "ok", "{}", String::from_utf8_lossy(&again.stdout));
    assert_eq!(rechecked["23"].0, "ok");
}

/// What differs between two reads of a file, each as the pieces its `--fix` listing line must
/// hold: the position ("line L, column C" or "new line after line L") and the new value.
fn differences(before: &UkeFile, after: &UkeFile) -> Vec<[String; 2]> {
    let mut out = Vec::new();
    let mut old = before.records.iter().peekable();
    let mut previous_line = 0;
    for record in &after.records {
        if old.peek().is_none_or(|o| o.kind() != record.kind()) {
            out.push([format!("new line after line {previous_line} ("), format!("→ {:?}", record.fields.join(","))]);
            continue;
        }
        let original = old.next().expect("peeked");
        previous_line = original.line;
        for column in 0..original.fields.len().max(record.fields.len()) {
            if original.field(column) != record.field(column) {
                out.push([
                    format!("line {}, column {} ({}", original.line, column + 1, record.kind()),
                    format!("{:?} → {:?}", original.field(column), record.field(column)),
                ]);
            }
        }
    }
    assert!(old.next().is_none(), "no record was dropped");
    out
}

#[test]
fn truncated_mis_encoded_and_malformed_files_get_clear_errors() {
    let setup = Setup::new(&seed());
    let whole = std::fs::read(sample()).expect("sample");
    let write = |name: &str, bytes: &[u8]| {
        let path = setup.path(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let run = |path: &Path| {
        let output = setup.check(path, &[]);
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };

    // Cut in the middle of a line: what is there is checked, the cut is an error.
    let (code, stdout, stderr) = run(&write("CUT.UKE", &whole[..whole.len() * 2 / 3]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("without the closing GO record") && stderr.contains("export the claim file again"), "{stderr}");
    assert!(stdout.contains("レセプト"), "the claims read were still checked: {stdout}");

    // The same text in EUC-JP: refused at the first line CP932 cannot hold (EUC-JP kana bytes
    // also read as CP932 half-width kana, so lines 2–6 pass unnoticed; line 7 does not).
    let text = encoding_rs::SHIFT_JIS.decode(&whole).0.into_owned();
    let (code, _, stderr) = run(&write("EUC.UKE", &encoding_rs::EUC_JP.encode(&text).0));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("line 7, byte") && stderr.contains("neither CP932 (Shift_JIS) nor UTF-8"), "{stderr}");

    // Not a claim file at all.
    let (code, _, stderr) = run(&write("NOTES.UKE", b"hello,world\r\n"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not a UKE claim file"), "{stderr}");

    // A malformed birth date and a non-numeric total: reported with line and column, the rest checked.
    let broken = text.replacen("RE,2,1112,202110,カキクケコ,1,19910125", "RE,2,1112,202110,カキクケコ,1,1991-01-25", 1).replacen(
        "GO,140,86392,99",
        "GO,140,8639X,99",
        1,
    );
    let (code, stdout, stderr) = run(&write("BROKEN.UKE", &encoding_rs::SHIFT_JIS.encode(&broken).0));
    assert_eq!(code, Some(3));
    assert!(stderr.contains("line 32, column 7: 生年月日 is not a date written YYYYMMDD"), "{stderr}");
    assert!(!stderr.contains("1991-01-25"), "a birth date is never repeated");
    assert!(stderr.contains("line 636, column 3: 総合計点数 \"8639X\" is not a number"), "{stderr}");
    assert!(!stderr.contains("GO states 0 points"), "an unreadable total is not compared: {stderr}");
    assert!(stdout.contains("UNREADABLE"), "{stdout}");
}

#[test]
fn a_file_of_another_institution_is_refused_by_the_center() {
    let setup = Setup::new(&seed());
    let whole = encoding_rs::SHIFT_JIS.decode(&std::fs::read(sample()).expect("sample")).0.into_owned();
    // The IR record of another clinic: 都道府県, 点数表 and the 7-digit code.
    let other = crate::common::OTHER_CLINIC;
    let ir = format!("IR,1,{},{},{},", &other[..2], &other[2..3], &other[3..]);
    let moved = whole.replacen("IR,1,12,1,0000000,", &ir, 1);
    let path = setup.path("OTHER.UKE");
    std::fs::write(&path, encoding_rs::SHIFT_JIS.encode(&moved).0).expect("write");
    let output = setup.check(&path, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("INSTITUTION_MISMATCH"), "{stderr}");
}

/// An acquisition for a person known by name, kana, birth date and sex (the claims below).
fn acquire_named(id: &str, person: &str, insurer: &str, card: (&str, &str, &str), who: (&str, &str, &str, &str), on: &str) -> String {
    let (symbol, number, branch) = card;
    let (name, kana, birth, sex) = who;
    json!({
        "event_id": id, "kind": "acquire", "insurer_number": insurer, "person_ref": person,
        "card": {"symbol": symbol, "number": number, "branch": branch},
        "occurred_on": on, "notified_at": notified(on, 0),
        "member": {"relationship": "1", "card_classification": "01", "name": name, "name_kana": kana, "sex": sex, "birth_date": birth},
        "terms": {"income_class": "general"}
    })
    .to_string()
}

/// Claims billed as 不詳 (issue 15, item 5): the pre-check asks the register again by the
/// patient's attributes. One whose coverage has been registered since becomes a fixable 振替
/// to that insurer (the --fix copy bills it); one still unregistered keeps its 摘要 and waits,
/// or bounces without one (the --fix copy writes it from the declaration recorded at reception);
/// one whose attributes two people share cannot be decided.
#[test]
fn a_claim_billed_as_unknown_becomes_a_reroute_once_its_coverage_is_registered() {
    // Registered since the visit: a 健保組合 member (paid by the 支払基金, as this file).
    let mut seed = Seed::default();
    seed.lines.push(acquire_named("u1", "pu1", SOCIETY, ("77", "9", "00"), ("不詳　一郎", "ﾌｼｮｳ ｲﾁﾛｳ", "19700707", "1"), "20210401"));
    // Two people with one name, birth date and sex.
    seed.lines.push(acquire_named("u4a", "pu4a", PROMPT, ("1", "41", "00"), ("双子　太郎", "ﾌﾀｺﾞ ﾀﾛｳ", "20100101", "1"), "20150401"));
    seed.lines.push(acquire_named("u4b", "pu4b", OTHER, ("5", "42", "00"), ("双子　太郎", "ﾌﾀｺﾞ ﾀﾛｳ", "20100101", "1"), "20150401"));
    let setup = Setup::new(&seed);
    // Last month's claims, checked today: the center answers searches by attributes only for
    // dates of care of the last 400 days (its own clock).
    let today = onshi_pki::now().date();
    let month = onshi_receipt::uke::YearMonth::from_date(today.first_of_month().add_days(-1));
    let billing = onshi_receipt::uke::YearMonth::from_date(today);
    let re = |n: usize, name: &str, sex: &str, birth: &str, kana: &str| {
        format!("RE,{n},1112,{month},{name},{sex},{birth},,,,,,,{n:08},,,,,,,,,,,,,,,,,,,,,,,{kana},\r\n")
    };
    let ho = |insurer: &str| format!("HO,{insurer},,,1,300,,,,,,,,,\r\nSI,11,1,111000110,,300,1,,,,,1\r\n");
    let note = "CO,11,1,810000001,不詳（被保険者資格申立書）カナ氏名 ミトウ ジロウ 健保 事業所 オンシ商事 住所 東京都 連絡先 0300000000 連絡日 20211020\r\n";
    let mut text = format!("IR,1,{},{},{},,オンシ医院,{billing},00,0312345678\r\n", &CLINIC[..2], &CLINIC[2..3], &CLINIC[3..]);
    text += &re(1, "不詳　一郎", "1", "19700707", "フショウ　イチロウ");
    text += &ho("77777777");
    text += &re(2, "未登　次郎", "1", "19650505", "ミトウ　ジロウ");
    text += &ho("77777779");
    text += note;
    text += &re(3, "未登　三郎", "1", "19650506", "ミトウ　サブロウ");
    text += &ho("77777777");
    text += &re(4, "双子　太郎", "1", "20100101", "フタゴ　タロウ");
    text += &ho("77777777");
    text += "GO,4,1200,99\r\n";
    let path = setup.path("FUSHO.UKE");
    std::fs::write(&path, encoding_rs::SHIFT_JIS.encode(&text).0).expect("write");
    // No.3's patient filled in a 被保険者資格申立書 at reception, recorded by the gateway.
    run_ok(onshi().args(["reader", "init", "--id", "reader-1", "--facility-password", "x", "--out"]).arg(setup.path("reader.json")));
    let config = crate::clinic::write_gateway_config(setup.dir.path(), &setup.server.url(), "");
    let store =
        onshi_gateway::store::Store::open(&onshi_gateway::config::GatewayConfig::load(&config).expect("config").store).expect("store");
    let typed = onshi_gateway::declaration::Typed {
        name_kana: "ﾐﾄｳ ｻﾌﾞﾛｳ",
        birth_date: "19650506",
        sex: "1",
        kind: "kokuho",
        employer: "",
        address: "東京都千代田区",
        contact: "03-0000-0000",
    };
    let declared = onshi_gateway::declaration::check(typed, today).expect("a declaration");
    store.record_declaration(&onshi_pki::now().to_string(), &declared).expect("recorded");
    drop(store);
    let (csv, fixed) = (setup.path("fusho.csv"), setup.path("FUSHO-FIXED.UKE"));
    let today = today.yyyymmdd();
    let output = setup.check_on(
        &today,
        &path,
        &["--csv", csv.to_str().unwrap(), "--fix", fixed.to_str().unwrap(), "--gateway", config.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("cannot be right") && !stderr.contains("番号 is empty"), "a 不詳 claim is written so on purpose: {stderr}");
    let verdicts = read_verdicts(&std::fs::read_to_string(&csv).expect("csv"));
    let expect = |receipt: &str, class: &str, reason: &str| {
        let (got_class, got_reasons) = &verdicts[receipt];
        assert_eq!((got_class.as_str(), got_reasons.as_str()), (class, reason), "No.{receipt}\n{stdout}\n{stderr}");
    };
    expect("1", "reroute", "UNKNOWN_NOW_REGISTERED");
    expect("2", "pending", "UNKNOWN_NOT_REGISTERED");
    expect("3", "bounce", "UNKNOWN_WITHOUT_NOTE");
    // The 摘要 the declaration gives, piece by piece as MHLW lists them (not the gateway's own text).
    let no3: String = stdout.lines().skip_while(|l| !l.starts_with("No.3 ")).take(3).collect::<Vec<_>>().join("\n");
    for piece in ["被保険者資格申立書", "ﾐﾄｳ ｻﾌﾞﾛｳ", "国民健康保険", "東京都千代田区", "03-0000-0000", today.as_str()]
    {
        assert!(no3.contains(piece), "No.3's action quotes the declaration recorded at reception ({piece}):\n{no3}");
    }
    expect("4", "pending", "UNKNOWN_SEVERAL");

    // The corrected copy bills No.1 to the insurer found, and leaves the others as they are.
    let before = uke::read(&std::fs::read(&path).unwrap()).expect("reads");
    let after = uke::read(&std::fs::read(&fixed).expect("the fixed copy")).expect("the copy reads");
    let numbers = |file: &UkeFile, n: &str| {
        let claim = file.claims.iter().find(|c| c.receipt_number == n).expect("claim");
        (claim.insurance.as_ref().map(|h| (h.insurer_text.clone(), h.symbol.clone(), h.number.clone())), claim.branch().map(str::to_string))
    };
    assert_eq!(numbers(&after, "1"), (Some((SOCIETY.into(), "77".into(), "9".into())), Some("00".into())));
    for n in ["2", "3", "4"] {
        assert_eq!(numbers(&after, n), numbers(&before, n), "No.{n} unchanged");
    }
    // No.3 gets its 摘要 from the declaration recorded at reception, as a comment at its end.
    let no3 = |file: &UkeFile| file.claims.iter().find(|c| c.receipt_number == "3").expect("No.3").clone();
    assert_eq!(no3(&after).comments, no3(&before).comments + 1);
    let note = after.records[no3(&after).end - 1].fields.join(",");
    assert!(note.starts_with("CO,") && note.contains("被保険者資格申立書") && note.contains("ﾐﾄｳ ｻﾌﾞﾛｳ"), "{note}");
    assert!(note.contains("東京都千代田区") && note.contains("03-0000-0000"), "{note}");
    // Checked again, the 振替 claim is an ordinary one the register confirms, and No.3 is a
    // 不詳 claim with its 摘要 that waits.
    setup.check_on(&today, &fixed, &["--csv", setup.path("again.csv").to_str().unwrap()]);
    let again = read_verdicts(&std::fs::read_to_string(setup.path("again.csv")).expect("csv"));
    assert_eq!(again["1"].0, "ok", "{:?}", again["1"]);
    assert_eq!((again["3"].0.as_str(), again["3"].1.as_str()), ("pending", "UNKNOWN_NOT_REGISTERED"));
}

/// The claims' 公費 (KO lines) against what their payers registered (issue 15, item 1): a
/// certificate valid in the month passes, also on a 公費単独 claim; one ended before the visit
/// bounces; a recipient its payer does not have is to be confirmed; a programme that registers
/// nothing says nothing either way. Expected verdicts written out from the payers' events here.
#[test]
fn a_claims_public_expense_is_checked_against_what_its_payer_registered() {
    const NANBYO: &str = "54136015"; // 法別 54, 東京都, registers its recipients
    const CHILDREN: &str = "88136015"; // a 地方単独 programme that registers nothing
    let mut seed = Seed::default();
    let people = [
        ("k1", "19800101", "11"),
        ("k2", "19900202", "12"),
        ("k3", "19750303", "13"),
        ("k4", "19850404", "14"),
        ("k5", "20150305", "15"),
        ("k6", "19600606", "16"),
        ("k7", "19610707", "17"),
        ("k8", "19620808", "18"),
    ];
    for (person, birth, number) in people {
        let h = Holder { person, insurer: PROMPT, symbol: "1", number, branch: "00", birth, relationship: "1" };
        seed.acquire(&h, "20150401", 0);
    }
    let grant = |id: &str, person: &str, recipient: &str, from: &str| {
        json!({"event_id": id, "kind": "grant", "payer_number": NANBYO, "recipient_number": recipient, "person_ref": person,
               "occurred_on": from, "notified_at": notified(from, 0),
               "certificate": {"name": "特定医療費（指定難病）受給者証", "valid_to": "20220331", "self_pay_cap_yen": 5000}})
        .to_string()
    };
    let ended = json!({"event_id": "s4e", "kind": "end", "payer_number": NANBYO, "recipient_number": "0000042", "person_ref": "k4",
                       "occurred_on": "20211001", "notified_at": notified("20211001", 0)})
    .to_string();
    // 医療扶助 (法別 12): k6 has October's 医療券 for this clinic, k7 is designated here without
    // one yet, k8 has none for this clinic.
    const OFFICE: &str = "12136016";
    let welfare = |id: &str, person: &str, recipient: &str, designated: &str| {
        json!({"event_id": id, "kind": "grant", "payer_number": OFFICE, "recipient_number": recipient, "person_ref": person,
               "occurred_on": "20210101", "notified_at": notified("20210101", 0),
               "certificate": {"name": "千代田区福祉事務所", "designated_institutions": [designated]}})
        .to_string()
    };
    let ticket = json!({"event_id": "w6t", "kind": "ticket", "payer_number": OFFICE, "recipient_number": "0000067", "person_ref": "k6",
                        "occurred_on": "20211001", "notified_at": notified("20211001", 0),
                        "ticket": {"ticket_type": "01", "valid_from": "20211001", "valid_to": "20211031", "issue_number": "K-6",
                                   "month": "202110", "institution_code": CLINIC, "institution_name": "オンシ医院",
                                   "treatment_type": "02", "self_pay_yen": 0}})
    .to_string();
    let subsidies = [
        grant("s1", "k1", "0000018", "20210401"),
        grant("s2", "k2", "0000026", "20210401"),
        grant("s4", "k4", "0000042", "20210401"),
        ended,
        welfare("w6", "k6", "0000067", CLINIC),
        ticket,
        welfare("w7", "k7", "0000075", CLINIC),
        welfare("w8", "k8", "0000083", crate::common::OTHER_CLINIC),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("subsidies.jsonl"), subsidies.join("\n") + "\n").unwrap();
    let setup = Setup::new_with(&seed, |db| {
        run_ok(onshi().args(["center", "import-subsidies", "--db"]).arg(db).arg(dir.path().join("subsidies.jsonl")));
    });
    let re = |n: usize, kind: &str, birth: &str| format!("RE,{n},{kind},202110,試験　患者,1,{birth},,,,,,,{n:08}\r\n");
    let ho = |number: &str| format!("HO,{PROMPT},１,{number},1,300\r\n");
    let ko = |payer: &str, recipient: &str| format!("KO,{payer},{recipient},,1,300\r\n");
    let si = "SN,1,01,,,,00,,\r\nSI,11,1,111000110,,300,1,,,,,1\r\n";
    let mut text = format!("IR,1,{},{},{},,オンシ医院,202111,00,0312345678\r\n", &CLINIC[..2], &CLINIC[2..3], &CLINIC[3..]);
    text += &(re(1, "1122", "19800101") + &ho("11") + &ko(NANBYO, "0000018") + si);
    text += &(re(2, "1212", "19900202") + &ko(NANBYO, "0000026") + "SI,11,1,111000110,,300,1,,,,,1\r\n");
    text += &(re(3, "1122", "19750303") + &ho("13") + &ko(NANBYO, "0000034") + si);
    text += &(re(4, "1122", "19850404") + &ho("14") + &ko(NANBYO, "0000042") + si);
    text += &(re(5, "1122", "20150305") + &ho("15") + &ko(CHILDREN, "0000059") + si);
    text += &(re(6, "1212", "19600606") + &ko(OFFICE, "0000067") + "SI,11,1,111000110,,300,1,,,,,1\r\n");
    text += &(re(7, "1212", "19610707") + &ko(OFFICE, "0000075") + "SI,11,1,111000110,,300,1,,,,,1\r\n");
    text += &(re(8, "1212", "19620808") + &ko(OFFICE, "0000083") + "SI,11,1,111000110,,300,1,,,,,1\r\n");
    text += "GO,8,2400,99\r\n";
    let path = setup.path("KOHI.UKE");
    std::fs::write(&path, encoding_rs::SHIFT_JIS.encode(&text).0).expect("write");
    let csv = setup.path("kohi.csv");
    let output = setup.check(&path, &["--csv", csv.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let verdicts = read_verdicts(&std::fs::read_to_string(&csv).unwrap_or_else(|_| panic!("csv\n{stdout}\n{stderr}")));
    let expect = |receipt: &str, class: &str, reasons: &str| {
        let (got_class, got_reasons) = &verdicts[receipt];
        assert_eq!((got_class.as_str(), got_reasons.as_str()), (class, reasons), "No.{receipt}\n{stdout}\n{stderr}");
    };
    expect("1", "ok", "OK");
    expect("2", "ok", "PUBLIC_CONFIRMED");
    expect("3", "pending", "PUBLIC_NOT_REGISTERED");
    expect("4", "bounce", "PUBLIC_NOT_VALID_ON_DATE");
    expect("5", "ok", "OK");
    expect("6", "ok", "PUBLIC_CONFIRMED");
    expect("7", "pending", "WELFARE_TICKET_NOT_REGISTERED PUBLIC_ONLY");
    // Designated to another clinic: the office named someone else (bounce), and no ticket here.
    expect("8", "bounce", "PUBLIC_NOT_DESIGNATED WELFARE_NO_TICKET PUBLIC_ONLY");
    assert!(stdout.contains("2021年9月30日"), "the registered end of No.4's certificate is quoted:\n{stdout}");
}
