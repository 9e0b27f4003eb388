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
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
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
    fn text(&self, css: &str) -> String {
        loop {
            let id = self.find(css);
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
