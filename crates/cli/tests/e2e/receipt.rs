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
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::write(root.join("events.jsonl"), seed.lines.join("\n") + "\n").expect("events");
        run_ok(onshi().args(["center", "import", "--db"]).arg(root.join("center.sqlite")).arg(root.join("events.jsonl")));
        run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(root.join("pki")));
        run_ok(onshi().args(["center", "pki", "issue-institution", "--code", CLINIC, "--dir"]).arg(root.join("pki")));
        let server = Server::start_at(&root.join("center.sqlite"), &root.join("pki"));
        Setup { dir, server }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn check(&self, file: &Path, extra: &[&str]) -> std::process::Output {
        let pki = self.path("pki");
        onshi()
            .args(["receipt", "check"])
            .arg(file)
            .args(["--today", TODAY, "--center", &self.server.url(), "--ca"])
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
