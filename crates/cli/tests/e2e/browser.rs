//! The reception page in a real headless browser (Chromium driven over W3C WebDriver by
//! chromedriver): a check by numbers, a visual check of a card, and a check queued while the
//! center is down, which the page then shows re-verified by itself.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::clinic::{ClinicWorld, FACILITY_PASSWORD, GatewayProcess, blocking, members, wait_for};

/// chromedriver from `ONSHI_CHROMEDRIVER` or the PATH; installed by `scripts/install-browser.sh`
/// when missing.
fn chromedriver() -> PathBuf {
    if let Ok(path) = std::env::var("ONSHI_CHROMEDRIVER") {
        return PathBuf::from(path);
    }
    let find =
        || std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("chromedriver")).find(|p| p.is_file()));
    if let Some(found) = find() {
        return found;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-browser.sh");
    let status = Command::new("bash").arg(&script).status().expect("bash runs the install script");
    assert!(status.success(), "the browser test needs Chromium and chromedriver; {} could not install them", script.display());
    find().expect("chromedriver on the PATH after installing it")
}

fn chromium() -> String {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")
                .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
                .map(|p| p.display().to_string())
        })
        .expect("a Chromium binary (scripts/install-browser.sh installs it)")
}

/// A WebDriver session in headless Chromium.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether a WebDriver error means the element was replaced after it was found: the standard
/// "stale element reference", or chromedriver's inspector error for a node of a swapped document.
fn replaced(error: &Value) -> bool {
    error["error"] == "stale element reference" || error["message"].as_str().is_some_and(|m| m.contains("does not belong to the document"))
}

impl Browser {
    fn start() -> Browser {
        // A free port, released just before chromedriver takes it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to be ready", || {
            let status: Value = blocking(async { reqwest::get(format!("{base}/status")).await?.json().await }).ok()?;
            (status["value"]["ready"] == true).then_some(())
        });
        let http = reqwest::Client::new();
        // The center's pages are HTTPS under the demo's own CA, which this browser does not know.
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "acceptInsecureCerts": true, "goog:chromeOptions": {
            "binary": chromium(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=ja"]
        }}}});
        let created: Value = blocking(async { http.post(format!("{base}/session")).json(&capabilities).send().await?.json().await })
            .expect("a browser session");
        let session = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        Browser { driver, base, session, http }
    }

    fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = self.http.request(method, &url).json(&body.unwrap_or(json!({})));
        let answer: Value = blocking(async { request.send().await?.json().await }).expect("webdriver answers");
        if answer["value"].get("error").is_some() { Err(answer["value"].clone()) } else { Ok(answer["value"].clone()) }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})));
    }

    fn find(&self, css: &str) -> String {
        let found = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: {found}")).to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    /// Clicks a form's button and waits until the page it posts to has replaced this one and
    /// finished loading, so that what is read next is the new page. The old document's window
    /// carries a mark; a navigation brings a fresh window without it. (Watching an element of
    /// the old document go stale is not enough: while the document is being swapped chromedriver
    /// may answer with an "unknown error" instead.)
    fn submit(&self, css: &str) {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": "window.onshiOldPage = true;", "args": []})));
        let id = self.find(css);
        // chromedriver waits for the navigation a click starts and may answer it with an error
        // while the document is swapped; whether the click worked is told by the new page.
        let clicked = self.try_call(reqwest::Method::POST, &format!("/element/{id}/click"), None).err();
        let probe = json!({"script": "return window.onshiOldPage ? 'old' : document.readyState;", "args": []});
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            // Asked mid-navigation, chromedriver may answer with an error: asked again.
            let state = self.try_call(reqwest::Method::POST, "/execute/sync", Some(probe.clone())).unwrap_or_else(|e| e);
            if state == "complete" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page after {css} did not load; last state: {state}; the click answered {clicked:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The text of an element. The page replaces its live part every few seconds, so an
    /// element found may be gone by the time its text is asked for: then it is found again.
    /// A page that navigates by itself (the kiosk leaving a record) has no document for a moment:
    /// an element not found then is waited for (`wait_for`'s deadline).
    fn text(&self, css: &str) -> String {
        loop {
            let id = wait_for(&format!("the element {css}"), || {
                match self.try_call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))) {
                    Ok(found) => Some(found[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: {found}")).to_string()),
                    Err(e) if e["error"] == "no such element" => None,
                    Err(e) => panic!("/element {css}: {e}"),
                }
            });
            match self.try_call(reqwest::Method::GET, &format!("/element/{id}/text"), None) {
                Ok(text) => return text.as_str().unwrap_or_default().to_string(),
                Err(e) if replaced(&e) => continue,
                Err(e) => panic!("text of {css}: {e}"),
            }
        }
    }

    /// Clicks an element that does not navigate (a checkbox).
    fn click(&self, css: &str) {
        let id = self.find(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), None);
    }

    /// The visible text of the whole page.
    fn page_text(&self) -> String {
        self.text("body")
    }

    /// A screenshot of the window as PNG, checked to be one. With `ONSHI_SCREENSHOTS=DIR` it
    /// is also saved there as `NAME.png` (how the pictures in docs/screenshots are made:
    /// `ONSHI_SCREENSHOTS=docs/screenshots cargo test -p onshi --test e2e browser`).
    fn screenshot(&self, name: &str) {
        // The whole page, not just the first screen: the window is made as tall as the page.
        let height = self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": "return document.documentElement.scrollHeight;", "args": []})),
        );
        let height = height.as_u64().unwrap_or(900).clamp(600, 4000);
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1200, "height": height + 120})));
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = base64_decode(encoded.as_str().expect("a base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{name}: not a picture of a page ({} bytes)", png.len());
        if let Some(dir) = std::env::var_os("ONSHI_SCREENSHOTS") {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }
}

/// Standard base64 (WebDriver's screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        other => panic!("not base64: {other}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = blocking(self.http.delete(url).send());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_reception_page_shows_a_check_a_visual_check_and_a_queued_check() {
    let mut world = ClinicWorld::new();
    let [_, p2, _, p4] = <[_; 4]>::try_from(members()).unwrap();
    let gateway = GatewayProcess::start(&world);
    let browser = Browser::start();
    browser.open(&format!("{}/", gateway.page));
    assert!(browser.page_text().contains("オンライン資格確認 受付"));

    // A check by numbers, typed by staff.
    let by_numbers = |m: &crate::clinic::Member| {
        browser.type_into("#insurer", &m.insurer);
        browser.type_into("#symbol", m.symbol);
        browser.type_into("#number", m.number);
        browser.type_into("#branch", m.branch);
        browser.type_into("#birth", m.birth);
        browser.submit("#check");
    };
    by_numbers(&p2);
    assert!(browser.text("#flash").contains("有効"), "{}", browser.text("#flash"));
    let table = browser.text("#checks");
    assert!(table.contains(p2.name) && table.contains("受付を続けてください"), "{table}");

    // A visual check of the card on the reader, with the facility password.
    browser.submit("#place");
    assert!(browser.text("#reader").contains("カードあり"));
    browser.type_into("#facility-password", FACILITY_PASSWORD);
    browser.submit("#visual");
    let table = browser.text("#checks");
    assert!(table.contains("マイナ保険証（目視）"), "{table}");
    // Visual mode switched itself back after the patient: the next one is offered face
    // recognition without anyone touching the reader.
    let reader = browser.text("#reader");
    assert!(reader.contains("カードあり") && !reader.contains("目視モード"), "{reader}");

    // The center goes down: a check by numbers is queued and shown as such.
    let center_addr = world.addr.clone();
    world.stop_center();
    by_numbers(&p4);
    assert!(browser.text("#flash").contains("オフライン"), "{}", browser.text("#flash"));
    assert!(browser.text("#line").contains("不通"));
    let queue = browser.text("#queue");
    assert!(queue.contains(p4.number) && queue.contains("目視"), "{queue}");
    // The live part names the broken link by itself.
    wait_for("the page to name the broken link", || browser.page_text().contains("故障箇所: 接続 (TCP)").then_some(()));

    // The center returns; the page updates by itself (no reload) once the check is re-verified.
    world.start_center(&center_addr);
    wait_for("the page to show the re-verified check", || {
        let text = browser.page_text();
        (text.contains("回線待ちの照会（0件）") && text.contains("再照会済み")).then_some(())
    });
    assert!(browser.text("#line").contains("正常"));
}

#[test]
fn the_reception_page_with_a_pc_sc_reader_waits_for_the_card_and_checks_it_with_the_patients_pin() {
    let world = ClinicWorld::new();
    let reader = crate::pcsc::VirtualReader::take();
    // The clinic's gateway.toml names its reader instead of the simulator.
    let config = world.path("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("simulator = true\ncards = \"cards\"\n"), "{text}");
    let text = text.replace("simulator = true\ncards = \"cards\"\n", &format!("pcsc = \"{}\"\n", reader.name));
    std::fs::write(&config, text).unwrap();
    let gateway = GatewayProcess::start(&world);
    let browser = Browser::start();
    browser.open(&format!("{}/", gateway.page));
    assert!(browser.text("#reader").contains("カードを置いてください"), "{}", browser.text("#reader"));
    let page = browser.page_text();
    assert!(!page.contains("カードを置く") && !page.contains("カメラの前の人"), "no simulator controls: {page}");

    // The patient places the card: the page sees it by itself (PC/SC status, live refresh).
    let inserted = reader.insert(&world.path("cards/card-1.json"), &[]);
    wait_for("the page to see the card", || browser.text("#reader").contains("カードあり").then_some(()));
    browser.type_into("#pin", crate::clinic::PIN);
    browser.click("input[name=drug]");
    browser.submit("#verify");
    let flash = browser.text("#flash");
    assert!(flash.contains("有効"), "{flash}");
    let table = browser.text("#checks");
    assert!(table.contains("マイナ保険証"), "{table}");

    // A wrong PIN: the card counts it and the page says how many tries are left.
    browser.type_into("#pin", "0000");
    browser.submit("#verify");
    let flash = browser.text("#flash");
    assert!(flash.contains("2"), "the tries left: {flash}");

    // The card leaves the reader; the page asks for the next one.
    inserted.remove();
    wait_for("the page to see the card gone", || browser.text("#reader").contains("カードを置いてください").then_some(()));

    // A new card of the same patient, not yet registered for insurance use: reception
    // registers it at the counter with the patient's PIN (初回登録), then checks it.
    let second = world.path("cards/card-2.json");
    world.issue_card(&second);
    let inserted = reader.insert(&second, &[]);
    wait_for("the page to see the new card", || browser.text("#reader").contains("カードあり").then_some(()));
    browser.type_into("#pin", crate::clinic::PIN);
    browser.submit("#verify");
    let flash = browser.text("#flash");
    assert!(flash.contains("利用登録されていません"), "{flash}");
    browser.type_into("#pin", crate::clinic::PIN);
    browser.submit("#link");
    let flash = browser.text("#flash");
    assert!(flash.contains("利用登録しました"), "{flash}");
    browser.type_into("#pin", crate::clinic::PIN);
    browser.submit("#verify");
    let flash = browser.text("#flash");
    assert!(flash.contains("有効"), "{flash}");
    inserted.remove();
}

#[test]
fn the_patients_page_shows_the_holders_record_and_withdraws_and_flags_with_the_pin() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    // The patients' page on an address of its own (a free port, released just before).
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let config = world.path("gateway.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[patient]\nlisten = \"127.0.0.1:{port}\"\nsimulator = true\n"));
    std::fs::write(&config, text).unwrap();
    let gateway = GatewayProcess::start(&world);
    // At the counter: the patient's card check, with consent to the drug information.
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let flash = gateway.post("/reader/verify", &[("method", "pin"), ("pin", crate::clinic::PIN), ("drug", "1")]);
    assert!(flash.contains("有効"), "{flash}");
    // The reception page is not on the patients' address.
    let browser = Browser::start();
    let kiosk = format!("http://127.0.0.1:{port}");
    browser.open(&format!("{kiosk}/live"));
    assert!(!browser.page_text().contains(p1.name), "the kiosk does not reach today's checks");

    browser.open(&format!("{kiosk}/"));
    // The kiosk has a reader of its own: the card on reception's is not on it.
    assert!(browser.text("#reader").contains("カードをカードリーダーに置いてください"), "{}", browser.text("#reader"));
    browser.submit("#place");
    assert!(browser.text("#reader").contains("カードを確認しました"), "{}", browser.text("#reader"));
    // A wrong PIN: the card counts it, the page says how many tries are left and shows nothing.
    browser.type_into("#pin", "9999");
    browser.submit("#open");
    let flash = browser.text("#flash");
    assert!(flash.contains("暗証番号が違います") && flash.contains('2'), "{flash}");
    assert!(!browser.page_text().contains(p1.name));

    browser.type_into("#pin", crate::clinic::PIN);
    browser.submit("#open");
    let coverages = browser.text("#coverages");
    assert!(coverages.contains(p1.name) && coverages.contains(p1.number) && coverages.contains("有効"), "{coverages}");
    let consents = browser.text("#consents");
    assert!(consents.contains(crate::common::CLINIC) && consents.contains("薬剤情報"), "{consents}");
    let log = browser.text("#access-log");
    assert!(log.contains("マイナ保険証で資格を確認") && log.contains(crate::common::CLINIC), "{log}");

    // The patient withdraws the consent with the PIN: the fresh record no longer has it.
    browser.type_into(".withdraw-pin", crate::clinic::PIN);
    browser.submit(".withdraw");
    assert!(browser.text("#flash").contains("同意を取り消しました"), "{}", browser.text("#flash"));
    assert!(browser.text("#consents").contains("同意した記録はありません"), "{}", browser.text("#consents"));
    assert!(browser.text("#access-log").contains("同意を取り消し"));

    // The patient flags the link; the report shows as being reviewed.
    browser.type_into("#reason", "自分の保険ではない");
    browser.type_into("#flag-pin", crate::clinic::PIN);
    browser.submit("#flag");
    assert!(browser.text("#flash").contains("届け出ました"), "{}", browser.text("#flash"));
    let reports = browser.text("#reports");
    assert!(reports.contains("自分の保険ではない") && reports.contains("保険者が確認中です") && reports.contains("ご本人"), "{reports}");
    // The card is now blocked: the page shows the flag's state, nothing of the linked person.
    assert!(browser.text("#blocked").contains("保険者が確認するまで"));
    assert!(!browser.page_text().contains(p1.name), "{}", browser.page_text());

    // The record stays on the screen only while its card is on the reader: taken away (here
    // by another client, as a hand would, not by this page), the page leaves it by itself.
    let taken = reqwest::Client::new();
    let removed = blocking(async { taken.post(format!("{kiosk}/remove")).send().await.unwrap().status().as_u16() });
    assert_eq!(removed, 200);
    wait_for("the kiosk to leave the record", || browser.page_text().contains("カードをカードリーダーに置いてください").then_some(()));
    assert!(!browser.page_text().contains("自分の保険ではない"), "{}", browser.page_text());
}

/// Counts a client reads over HTTPS from the center, trusting its CA (no client certificate).
fn center_get(url: &str, ca: &std::path::Path) -> (u16, String) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    blocking(async {
        let response = client.get(url).send().await.expect("the center answers");
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// The paths of the dashboard, counted independently from the sealed audit entries of `month`
/// (`YYYYMM`) with the rules written out: a card check by its method (the object's prefix), a
/// check by numbers, a re-verification, a batch entry.
fn counted_from_the_audit_log(audit: &std::path::Path, month: &str) -> Vec<(String, u64)> {
    let connection = rusqlite::Connection::open_with_flags(audit, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (year, m): (i32, u32) = (month[..4].parse().unwrap(), month[4..].parse().unwrap());
    // Japan-time seconds at the month's start and the next month's (days from the epoch by
    // the civil calendar, written out).
    let days = |y: i32, m: u32| {
        let (y, m) = if m > 12 { (y + 1, 1) } else { (y, m) };
        let (y2, m2) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
        i64::from(365 * y2 + y2 / 4 - y2 / 100 + y2 / 400) + i64::from((153 * (m2 - 3) + 2) / 5) + 1 - 719_469
    };
    let (from, to) = (days(year, m) * 86_400, days(year, m + 1) * 86_400);
    let count = |filter: &str| -> u64 {
        connection
            .query_row(&format!("SELECT count(*) FROM audit_log WHERE at >= ?1 AND at < ?2 AND ({filter})"), [from, to], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as u64
    };
    vec![
        ("card_pin".into(), count("action = 'verify_card' AND object LIKE 'pin:%'")),
        ("card_face".into(), count("action = 'verify_card' AND object LIKE 'face:%'")),
        ("card_visual".into(), count("action = 'verify_card' AND object LIKE 'visual:%'")),
        ("smartphone".into(), count("action = 'verify_card' AND object LIKE 'smartphone:%'")),
        ("number".into(), count("action = 'verify_number'")),
        ("reverify".into(), count("action IN ('reverify_number', 'reverify_card')")),
        ("batch".into(), count("action = 'verify_number_batch'")),
    ]
}

#[test]
fn the_operators_dashboard_shows_the_demos_morning_as_metrics_and_the_audit_log_count_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    let demo = crate::common::onshi().args(["demo", "--check", "--persons", "3000", "--dir"]).arg(&root).output().unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    // The demo's center again, on its register and audit log, reachable from other hosts too.
    let server = crate::common::Server::start_listening(&root.join("center.sqlite"), &root.join("pki"), "0.0.0.0:0", &[]);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    let ca = root.join("pki/ca.pem");
    let base = format!("https://127.0.0.1:{port}");

    // Three counts of this month's checks by path: the dashboard's CSV, /metrics, and the
    // audit log counted here by its own rules.
    // The month of the demo's morning (Japan time), from its newest entry.
    let newest: i64 = rusqlite::Connection::open_with_flags(root.join("center.audit.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
        .query_row("SELECT max(at) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    let month = onshi_domain::Timestamp::from_jst_seconds(newest).date().yyyymmdd()[..6].to_string();
    let (status, csv) = center_get(&format!("{base}/dashboard/checks-by-month.csv?month={month}"), &ca);
    assert_eq!(status, 200, "{csv}");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().last().unwrap().split(',').collect();
    assert_eq!(row[0], month, "the table's last row is the month asked for: {csv}");
    let from_csv: Vec<(String, u64)> =
        header[1..8].iter().zip(&row[1..8]).map(|(path, n)| (path.to_string(), n.parse().unwrap())).collect();
    let from_audit = counted_from_the_audit_log(&root.join("center.audit.sqlite"), &month);
    assert_eq!(from_csv, from_audit, "the dashboard against the audit log");
    // /metrics shows this month: the demo's, unless the month turned since (near midnight at a
    // month's end), which is then checked to be so.
    let (_, metrics) = center_get(&format!("{base}/metrics"), &ca);
    let value = |path: &str| -> Option<u64> {
        let key = format!("onshi_checks_month{{month=\"{month}\",path=\"{path}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&key)).map(|n| n.parse().unwrap())
    };
    if value("number").is_some() {
        let from_metrics: Vec<(String, u64)> = from_csv.iter().map(|(path, _)| (path.clone(), value(path).unwrap())).collect();
        assert_eq!(from_metrics, from_audit, "/metrics against the audit log");
    } else {
        assert_ne!(crate::clinic::today_plus(0)[..6], month, "/metrics lacks this month's figures: {metrics}");
    }
    // Every table the page links to is served.
    for table in onshi_center::dashboard::TABLES {
        let (status, text) = center_get(&format!("{base}/dashboard/{table}.csv?month={month}"), &ca);
        assert!(status == 200 && text.lines().count() >= 1, "{table}: {status} {text}");
    }
    let total = |counts: &[(String, u64)], path: &str| counts.iter().find(|(p, _)| p == path).map_or(0, |(_, n)| *n);
    assert!(total(&from_audit, "number") > 0 && total(&from_audit, "card_pin") > 0, "the demo's morning is there: {from_audit:?}");
    // The 利用率 as the CSV says it, worked from its own counts.
    let card = ["card_pin", "card_face", "card_visual", "smartphone"].iter().map(|path| total(&from_audit, path)).sum::<u64>();
    let counter = card + total(&from_audit, "number") + total(&from_audit, "reverify");
    assert_eq!((row[8].parse::<u64>().unwrap(), row[9].parse::<u64>().unwrap()), (card, counter), "{csv}");

    // The page in the browser: the same figures, charts drawn, a CSV link per table.
    let browser = Browser::start();
    browser.open(&format!("{base}/dashboard?month={month}"));
    let usage = browser.text("#national-usage");
    let expected = format!("{:.1} %", card as f64 * 100.0 / counter as f64);
    assert!(usage.contains(&expected), "{usage} shows {expected}");
    let paths = browser.text("#checks-by-path");
    assert!(paths.contains(&format!("保険者番号等 {}", total(&from_audit, "number"))), "{paths}");
    for chart in ["#chart-usage", "#chart-days", "#chart-months", "#chart-lag"] {
        browser.find(chart);
    }
    let lag = browser.text("#insurer-lag");
    assert!(lag.lines().count() > 1, "the insurers' lag from the register: {lag}");
    browser.screenshot("operator-dashboard");

    // From another host the page is refused (it names institutions and insurers).
    let outside = a_non_loopback_address();
    assert!(!outside.is_loopback(), "{outside}");
    // (The center's certificate names 127.0.0.1, not this address: these clients do not check it.)
    let from_outside = |identity: Option<&str>, path: &str| -> u16 {
        let mut builder = reqwest::Client::builder().danger_accept_invalid_certs(true);
        if let Some(name) = identity {
            let pem = [
                std::fs::read(root.join(format!("pki/{name}.pem"))).unwrap(),
                std::fs::read(root.join(format!("pki/{name}.key"))).unwrap(),
            ]
            .concat();
            builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        let client = builder.build().unwrap();
        blocking(async { client.get(format!("https://{outside}:{port}{path}")).send().await.unwrap().status().as_u16() })
    };
    assert_eq!(from_outside(None, "/dashboard"), 403, "the dashboard from {outside}");
    let clinic = format!("institutions/{}", crate::common::CLINIC);
    assert_eq!(from_outside(Some(&clinic), "/dashboard"), 403, "a clinic's certificate does not open it");
    // An operator's certificate opens it from anywhere, and opens nothing of the API.
    crate::common::run_ok(crate::common::onshi().args(["center", "pki", "issue-operator", "--name", "ops", "--dir"]).arg(root.join("pki")));
    assert_eq!(from_outside(Some("operators/ops"), "/dashboard"), 200);
    assert_eq!(from_outside(Some("operators/ops"), "/dashboard/refusals.csv"), 200);
    assert_eq!(from_outside(Some("operators/ops"), "/v1/insurer/link-reports"), 403, "not the API");
}

/// The clinic's own figures on the reception page, worked by hand: P1 checked once with the
/// card, P1 once and P2 twice by numbers: 1 card check of 4 (25 %), 1 card patient of 2
/// (50 %); the month's claim file has 3 claims: 1 of 3 (33.3 %).
#[test]
fn the_reception_page_shows_this_months_usage_on_each_basis_with_the_claims_from_the_claim_file() {
    let world = ClinicWorld::new();
    let [p1, p2, ..] = <[_; 4]>::try_from(members()).unwrap();
    let gateway = GatewayProcess::start(&world);
    gateway.post("/reader/place", &[("card", "card-1.json")]);
    let flash = gateway.post("/reader/verify", &[("method", "pin"), ("pin", crate::clinic::PIN)]);
    assert!(flash.contains("有効"), "{flash}");
    let by_numbers = |m: &crate::clinic::Member| {
        let page = gateway.post(
            "/check",
            &[("insurer_number", &m.insurer), ("symbol", m.symbol), ("number", m.number), ("branch", m.branch), ("birth_date", m.birth)],
        );
        assert!(page.contains("class=\"flash ok\""), "{page}");
    };
    by_numbers(&p1);
    by_numbers(&p2);
    by_numbers(&p2);

    // The month's claim file, as the receipt computer writes it, checked with --gateway.
    let today = crate::clinic::today_plus(0);
    let month = onshi_receipt::uke::YearMonth::parse(&today[..6]).unwrap();
    let claim = |m: &crate::clinic::Member| onshi_receipt::sample::ClaimSpec {
        insurer: m.insurer.clone(),
        symbol: m.symbol.into(),
        number: m.number.into(),
        branch: Some(m.branch.into()),
        birth_date: onshi_domain::Date::parse_yyyymmdd(m.birth).unwrap(),
        sex: "2".into(),
        care_days: vec![1],
        points: 100,
        name: None,
    };
    let members = members();
    let institution = onshi_domain::ids::InstitutionCode::parse(crate::common::CLINIC).unwrap();
    let file = world.path("RECEIPTC.UKE");
    std::fs::write(
        &file,
        onshi_receipt::sample::claim_file(&institution, month, &[claim(&members[0]), claim(&members[1]), claim(&members[3])]),
    )
    .unwrap();
    let output = crate::common::onshi()
        .args(["receipt", "check"])
        .arg(&file)
        .arg("--gateway")
        .arg(world.path("gateway.toml"))
        .args(world.center_args())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("診療年月 {} のレセプト 3 件", &today[..6])), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let browser = Browser::start();
    browser.open(&format!("{}/", gateway.page));
    // (Unless the month turned during the test, near midnight at a month's end.)
    if crate::clinic::today_plus(0)[..6] == today[..6] {
        let bases = browser.text("#usage-bases");
        let row = |name: &str| bases.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {bases}")).to_string();
        assert!(row("件数").contains("25.0 %") && row("件数").contains("1 件") && row("件数").contains("4 件"), "{bases}");
        assert!(row("人数").contains("50.0 %") && row("人数").contains("1 人") && row("人数").contains("2 人"), "{bases}");
        assert!(row("レセプト件数").contains("33.3 %") && row("レセプト件数").contains("レセプト 3 件"), "{bases}");
        let methods = browser.text("#usage-methods");
        assert!(methods.contains("保険証・資格確認書 3") && methods.contains("マイナ保険証（暗証番号） 1"), "{methods}");
        browser.find("#chart-usage-days");
    }
    browser.screenshot("reception-page");
    browser.open(&format!("{}/report/{}", gateway.page, &today[..6]));
    assert!(browser.page_text().contains("マイナ保険証利用率の報告"));
    browser.screenshot("clinic-report");
}

/// `onshi demo` as a user runs it: its reception page checks a demo card by PIN with a consent,
/// its patients' page shows that card's holder the check and the consent, and its center's
/// dashboard counts the check; Ctrl-C stops it.
#[test]
fn the_demo_serves_the_reception_page_the_patients_page_and_the_dashboard_with_its_own_data() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    let mut demo = crate::common::onshi()
        .args(["demo", "--persons", "3000", "--port", "0", "--page-port", "0", "--dir"])
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut center, mut reception, mut kiosk) = (None, None, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let url_after = |line: &str, marker: &str| line.split_once(marker).map(|(_, rest)| rest.split_whitespace().next().unwrap().to_string());
    while center.is_none() || reception.is_none() || kiosk.is_none() {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(wait).expect("the demo prints its addresses");
        center = center.or_else(|| url_after(&line, "onshi demo center: "));
        reception = reception.or_else(|| url_after(&line, "reception page (受付画面): "));
        kiosk = kiosk.or_else(|| url_after(&line, "patients' page (kiosk, 患者さん用): "));
    }
    let (center, reception, kiosk) = (center.unwrap(), reception.unwrap(), kiosk.unwrap());

    let browser = Browser::start();
    browser.open(&reception);
    browser.submit("#place");
    browser.click("#method option[value=pin]");
    browser.type_into("#pin", "1234");
    browser.click("input[name=drug]");
    browser.submit("#verify");
    assert!(browser.text("#flash").contains("有効"), "{}", browser.text("#flash"));

    browser.open(&kiosk);
    browser.submit("#place");
    browser.type_into("#pin", "1234");
    browser.submit("#open");
    let consents = browser.text("#consents");
    assert!(consents.contains("薬剤情報"), "{consents}");
    let log = browser.text("#access-log");
    assert!(log.contains("マイナ保険証で資格を確認"), "{log}");
    let coverages = browser.text("#coverages");
    assert!(coverages.contains("有効"), "{coverages}");
    browser.screenshot("patient-page");

    browser.open(&format!("{}/dashboard", center.trim_end_matches('/')));
    let paths = browser.text("#checks-by-path");
    let pin_row = paths.lines().find(|l| l.starts_with("マイナ保険証（暗証番号）")).unwrap_or_default().to_string();
    let pin_checks: u64 = pin_row.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0);
    assert!(pin_checks >= 1, "the reception's check is counted: {paths}");
    let consents = browser.text("#consents");
    assert!(consents.lines().any(|l| l.starts_with("薬剤情報") && !l.starts_with("薬剤情報 0")), "{consents}");

    let stopped = Command::new("kill").args(["-INT", &demo.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert!(demo.wait().unwrap().success(), "Ctrl-C stops the demo cleanly");
}

/// An address of this machine that is not loopback: the one a route out would use, or else
/// one the kernel lists as local (`/proc/net/fib_trie`), which works without any route.
fn a_non_loopback_address() -> std::net::IpAddr {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = routed {
        return ip;
    }
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let mut last = None;
    for line in trie.lines() {
        if let Some(ip) = line.trim().strip_prefix("|-- ").and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
            last = Some(ip);
        } else if line.contains("/32 host LOCAL")
            && let Some(ip) = last.filter(|ip| !ip.is_loopback())
        {
            return ip;
        }
    }
    panic!("this machine has no address but loopback: the refusal from another host cannot be tried here")
}

/// `onshi patient page` on a patient's own PC: their reader (here the simulated one with their
/// card file), the center asked with no certificate, this PC only.
#[test]
fn a_patient_reads_their_record_on_their_own_pc() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let refused = crate::common::onshi()
        .args(["patient", "page", "--center", &world.url(), "--ca"])
        .arg(world.path("pki/ca.pem"))
        .arg("--cards")
        .arg(world.path("cards"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("127.0.0.1"), "this PC only");
    let (mut page, addr) = crate::common::spawn_listening(
        crate::common::onshi()
            .args(["patient", "page", "--center", &world.url(), "--ca"])
            .arg(world.path("pki/ca.pem"))
            .arg("--cards")
            .arg(world.path("cards"))
            .args(["--listen", "127.0.0.1:0"]),
    );
    let browser = Browser::start();
    browser.open(&format!("http://{addr}/"));
    browser.submit("#place");
    browser.type_into("#pin", crate::clinic::PIN);
    browser.submit("#open");
    let coverages = browser.text("#coverages");
    assert!(coverages.contains(p1.name) && coverages.contains("有効"), "{coverages}");
    assert!(browser.text("#access-log").contains("ご自身の情報を確認"));
    let _ = page.kill();
    let _ = page.wait();
}

/// A home visit on a phone-sized window (issue 15, item 3): the doctor's phone at the patient's
/// home shows the reception page without sideways scrolling; the patient's card and PIN confirm
/// coverage with a 訪問診療 consent until a day; the page then lists the patient, and the next
/// visit re-confirms (再照会) with one button, without the card.
#[test]
fn a_home_visit_is_checked_on_a_phone_sized_window_and_the_next_visit_without_the_card() {
    let world = ClinicWorld::new();
    let p1 = &members()[0];
    let gateway = GatewayProcess::start(&world);
    let browser = Browser::start();
    browser.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 390, "height": 844})));
    browser.open(&format!("{}/", gateway.page));
    let fits = || {
        browser.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": "return [document.documentElement.scrollWidth, window.innerWidth];", "args": []})),
        )
    };
    let widths = fits();
    assert!(widths[0].as_u64() <= widths[1].as_u64() && widths[1].as_u64() <= Some(390), "no sideways scrolling on a phone: {widths}");
    assert!(browser.page_text().contains("同意をいただいている患者さんはいません"));

    browser.submit("#place");
    let choose = |css: &str, value: &str| {
        let script = format!("document.querySelector('{css}').value = '{value}';");
        browser.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []})));
    };
    choose("#method", "pin");
    browser.type_into("#pin", crate::clinic::PIN);
    choose("#home-kind", "visit");
    let until = onshi_pki::today().add_days(60).yyyymmdd();
    browser.type_into("#home-until", &until);
    browser.submit("#verify");
    assert!(browser.text("#flash").contains("有効"), "{}", browser.text("#flash"));
    let listed = browser.text("#home-keys");
    assert!(listed.contains(p1.name) && listed.contains("訪問診療"), "{listed}");
    // What sticks out, if anything (named in the failure).
    let widest = browser.call(
        reqwest::Method::POST,
        "/execute/sync",
        Some(json!({"script": "var w=[];document.querySelectorAll('body *').forEach(function(e){if(e.getBoundingClientRect().right>window.innerWidth+1){w.push(e.tagName+'#'+e.id)}});return w.slice(0,8);", "args": []})),
    );
    let widths = fits();
    assert!(widths[0].as_u64() <= widths[1].as_u64(), "still no sideways scrolling with the lists and the chart: {widths} {widest}");

    // The next visit: the card stays with the patient; one button on the phone.
    browser.submit("#remove");
    browser.submit("#home-reverify-0");
    assert!(browser.text("#flash").contains("有効"), "{}", browser.text("#flash"));
    let checks = browser.text("#checks");
    assert!(checks.contains("在宅・オンライン（再照会）") && checks.contains(p1.name), "{checks}");
}
