//! `onshi doctor` against a real center: healthy first, then each link broken in turn, and the
//! diagnosis must name that link (and only that one) with what to do.

use std::path::Path;
use std::sync::Arc;

use crate::clinic::{ClinicWorld, blocking};
use crate::common::{CLINIC, onshi, run_ok};

fn doctor(config: &Path) -> (Option<i32>, String) {
    let output = onshi().args(["doctor", "--config"]).arg(config).output().expect("doctor runs");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The report names `link` as the broken one, with the links before it fine.
fn assert_broken_at(report: &str, code: Option<i32>, link: &str, detail: &str) {
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains(&format!("[NG] {link}")), "{link} not named:\n{report}");
    assert!(report.contains(&format!("故障箇所: {link}")), "{report}");
    assert_eq!(report.matches("[NG]").count(), 1, "one broken link:\n{report}");
    assert!(report.contains(detail), "{detail:?} missing:\n{report}");
    let broken_line = report.lines().position(|l| l.starts_with("[NG]")).unwrap();
    assert!(
        report.lines().take(broken_line).filter(|l| l.starts_with('[')).all(|l| l.starts_with("[OK]") || l.starts_with("[注意]")),
        "{report}"
    );
    assert!(report.lines().skip(broken_line + 1).filter(|l| l.starts_with('[')).all(|l| l.starts_with("[--]")), "{report}");
}

#[test]
fn doctor_names_each_broken_link_in_turn() {
    let world = ClinicWorld::new();
    let config = world.path("gateway.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    let (code, report) = doctor(&config);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report.matches("[OK]").count(), 8, "{report}");
    assert!(report.contains("すべて正常です"));
    assert!(report.contains("ゲートウェイ（onshi gateway serve）: 動いていません"), "{report}");
    let gateway = crate::clinic::GatewayProcess::start(&world);
    let (code, report) = doctor(&config);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("ゲートウェイ（onshi gateway serve）: 動いています"), "{report}");
    drop(gateway);

    // The reader's file is damaged.
    let reader = std::fs::read(world.path("reader.json")).unwrap();
    std::fs::write(world.path("reader.json"), b"{not a reader").unwrap();
    let (code, report) = doctor(&config);
    assert_broken_at(&report, code, "カードリーダー", "onshi reader init");
    std::fs::write(world.path("reader.json"), &reader).unwrap();

    // A wrong institution code in the configuration.
    std::fs::write(&config, good.replace(CLINIC, "1311234560")).unwrap();
    let (code, report) = doctor(&config);
    assert_eq!(code, Some(1));
    assert!(report.contains("[NG] 設定ファイル") && report.contains("`institution_code`"), "{report}");

    // A certificate that expires in ten days works but is reported for attention.
    let pki_soon = world.path("pki-soon");
    copy_dir(&world.path("pki"), &pki_soon);
    run_ok(onshi().args(["center", "pki", "issue-institution", "--code", CLINIC, "--days", "10", "--dir"]).arg(&pki_soon));
    let soon = good.replace(&format!("pki/institutions/{CLINIC}"), &format!("pki-soon/institutions/{CLINIC}"));
    std::fs::write(&config, &soon).unwrap();
    let (code, report) = doctor(&config);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("[注意] 証明書") && report.contains("有効期限まであと"), "{report}");

    // The center's host name does not resolve; nothing listens on the port; the port speaks
    // something other than TLS; the URL's path is not the center's.
    let url = world.url();
    std::fs::write(&config, good.replace(&url, "https://center.invalid:8443")).unwrap();
    let (code, report) = doctor(&config);
    assert_broken_at(&report, code, "名前解決 (DNS)", "center.invalid");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(&config, good.replace(&url, &format!("https://{closed}"))).unwrap();
    let (code, report) = doctor(&config);
    assert_broken_at(&report, code, "接続 (TCP)", &closed.to_string());

    let not_tls = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let not_tls_addr = not_tls.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in not_tls.incoming().flatten() {
            let mut stream = stream;
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    std::fs::write(&config, good.replace(&url, &format!("https://{not_tls_addr}"))).unwrap();
    let (code, report) = doctor(&config);
    assert_broken_at(&report, code, "暗号化通信 (TLS)", "TLS で接続できません");

    std::fs::write(&config, good.replace(&format!("url = \"{url}\""), &format!("url = \"{url}/wrong\""))).unwrap();
    let (code, report) = doctor(&config);
    assert_broken_at(&report, code, "センターの状態", "center.url");

    // The clock and an expired certificate, with the real diagnosis run on a shifted clock.
    std::fs::write(&config, &good).unwrap();
    let at = |offset_seconds: i64| -> onshi_gateway::gateway::Clock {
        Arc::new(move || onshi_domain::date::Timestamp::from_jst_seconds(onshi_pki::now().jst_seconds() + offset_seconds))
    };
    let ahead = blocking(onshi_gateway::doctor::diagnose(&config, at(600))).report();
    assert_broken_at(&ahead, Some(1), "時計のずれ", "秒進んでいます");
    let years_later = blocking(onshi_gateway::doctor::diagnose(&config, at(20 * 365 * 86_400))).report();
    assert_broken_at(&years_later, Some(1), "証明書", "有効期限が");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
