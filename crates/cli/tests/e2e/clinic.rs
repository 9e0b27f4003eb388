//! A clinic beside a center: a small register whose truth the tests know, a card CA, a
//! registered reader with a linked card, and `onshi gateway serve` as a child process.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use onshi_domain::ids::InsurerNumber;
use serde_json::json;

use crate::common::{CLINIC, Server, onshi, run_ok};

pub const KYOKAI: &str = "06130488";
pub const FACILITY_PASSWORD: &str = "pass-1";
pub const PIN: &str = "1234";

/// A member of the test register: its card numbers and birth date.
#[derive(Clone, Debug)]
pub struct Member {
    pub person: &'static str,
    pub insurer: String,
    pub symbol: &'static str,
    pub number: &'static str,
    pub branch: &'static str,
    pub birth: &'static str,
    pub name: &'static str,
}

/// 国保 insurer number (6 digits with its check digit).
pub fn kokuho() -> String {
    InsurerNumber::with_check_digit("13101").expect("a 国保 number").as_str().to_string()
}

/// The card holder (P1), a member to be lost (P2), a 国保 member (P3), one never checked (P4).
pub fn members() -> Vec<Member> {
    vec![
        Member {
            person: "p1", insurer: KYOKAI.into(), symbol: "12", number: "345", branch: "00", birth: "19800101", name: "試験　花子"
        },
        Member {
            person: "p2", insurer: KYOKAI.into(), symbol: "12", number: "346", branch: "00", birth: "19750505", name: "試験　次郎"
        },
        Member { person: "p3", insurer: kokuho(), symbol: "3", number: "77", branch: "01", birth: "19600303", name: "国保　三郎" },
        Member {
            person: "p4", insurer: KYOKAI.into(), symbol: "12", number: "347", branch: "00", birth: "19900909", name: "試験　四子"
        },
    ]
}

const ADDRESS: &str = "東京都千代田区霞が関1-2-2";

fn acquire(m: &Member) -> serde_json::Value {
    json!({
        "event_id": format!("acq-{}", m.person), "kind": "acquire", "insurer_number": m.insurer, "person_ref": m.person,
        "card": {"symbol": m.symbol, "number": m.number, "branch": m.branch},
        "occurred_on": "20200401", "notified_at": "20200402090000",
        "member": {"relationship": "1", "card_classification": "01", "name": m.name, "name_kana": "シケン　ハナコ",
                   "sex": "2", "birth_date": m.birth, "address": ADDRESS},
        "terms": {"income_class": "general"}
    })
}

/// The loss of `m`'s coverage from `on` (the first day not covered).
pub fn lose(m: &Member, on: &str) -> String {
    json!({
        "event_id": format!("lose-{}-{on}", m.person), "kind": "lose", "insurer_number": m.insurer, "person_ref": m.person,
        "card": {"symbol": m.symbol, "number": m.number, "branch": m.branch},
        "occurred_on": on, "notified_at": "20260101090000", "loss_reason": "03"
    })
    .to_string()
}

/// Today in Japan time, `YYYYMMDD`, and a day `offset` days away.
pub fn today_plus(offset: i64) -> String {
    onshi_pki::now().date().add_days(offset).yyyymmdd()
}

pub struct ClinicWorld {
    pub dir: tempfile::TempDir,
    pub server: Option<Server>,
    pub addr: String,
}

impl ClinicWorld {
    pub fn new() -> ClinicWorld {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let events: String = members().iter().map(|m| format!("{}\n", acquire(m))).collect();
        std::fs::write(root.join("events.jsonl"), events).expect("events");
        run_ok(onshi().args(["center", "import", "--db"]).arg(root.join("center.sqlite")).arg(root.join("events.jsonl")));
        let pki = root.join("pki");
        run_ok(onshi().args(["center", "pki", "init", "--dir"]).arg(&pki));
        run_ok(onshi().args(["center", "pki", "issue-institution", "--code", CLINIC, "--dir"]).arg(&pki));
        run_ok(onshi().args(["center", "pki", "issue-insurer", "--number", KYOKAI, "--dir"]).arg(&pki));
        run_ok(onshi().args(["jpki", "init", "--dir"]).arg(root.join("jpki")));
        run_ok(onshi().args(["jpki", "crl", "--dir"]).arg(root.join("jpki")));
        let mut world = ClinicWorld { dir, server: None, addr: String::new() };
        world.start_center("127.0.0.1:0");
        let reader = world.path("reader.json");
        run_ok(onshi().args(["reader", "init", "--id", "reader-1", "--facility-password", FACILITY_PASSWORD, "--out"]).arg(&reader));
        run_ok(onshi().args(["reader", "register", "--reader"]).arg(&reader).args(world.center_args()));
        let card = world.path("cards/card-1.json");
        std::fs::create_dir_all(card.parent().unwrap()).unwrap();
        world.issue_card(&card);
        run_ok(
            onshi().args(["card", "link", "--card"]).arg(&card).arg("--reader").arg(&reader).args(world.center_args()).args(["--pin", PIN]),
        );
        world.write_config(&world.url(), "");
        world
    }

    /// Issues a card (PIN [`PIN`]) to the first member from the world's card authority.
    pub fn issue_card(&self, card: &std::path::Path) {
        let p1 = &members()[0];
        run_ok(onshi().args(["jpki", "issue", "--dir"]).arg(self.path("jpki")).arg("--out").arg(card).args([
            "--person-ref",
            p1.person,
            "--name",
            p1.name,
            "--kana",
            "シケン　ハナコ",
            "--birth",
            p1.birth,
            "--sex",
            "2",
            "--address",
            ADDRESS,
            "--pin",
            PIN,
        ]));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn center_args(&self) -> Vec<String> {
        crate::common::institution_args(&self.url(), &self.path("pki"), CLINIC)
    }

    pub fn start_center(&mut self, listen: &str) {
        let jpki = self.path("jpki");
        let server = Server::start_listening(&self.path("center.sqlite"), &self.path("pki"), listen, &["--jpki", jpki.to_str().unwrap()]);
        self.addr = server.addr.clone();
        self.server = Some(server);
    }

    pub fn stop_center(&mut self) {
        self.server = None;
    }

    /// The gateway's configuration file, with `extra` top-level TOML.
    pub fn write_config(&self, url: &str, extra: &str) -> PathBuf {
        write_gateway_config(self.dir.path(), url, extra)
    }

    /// Uploads insurer events to the running center with the insurer's certificate.
    pub fn upload(&self, lines: &[String]) {
        let pki = self.path("pki");
        let server = self.server.as_ref().expect("the center runs");
        let identity = (pki.join(format!("insurers/{KYOKAI}.pem")), pki.join(format!("insurers/{KYOKAI}.key")));
        let client = server.client_with_ca(&pki.join("ca.pem"), Some(identity));
        let report = blocking(client.upload_events(lines.join("\n") + "\n")).expect("upload accepted");
        assert_eq!(report.rejected_total, 0, "{report:?}");
    }

    pub fn req(&self) -> PathBuf {
        self.path("files/req")
    }
    pub fn res(&self) -> PathBuf {
        self.path("files/res")
    }
    pub fn face(&self) -> PathBuf {
        self.path("files/face")
    }
}

/// A gateway configuration in `root` (pki/, reader.json and cards/ beside it), with `extra`
/// top-level TOML.
pub fn write_gateway_config(root: &Path, url: &str, extra: &str) -> PathBuf {
    let config = onshi_gateway::config::standard_text(CLINIC, url, &root.join("pki"), "files", extra);
    let path = root.join("gateway.toml");
    std::fs::write(&path, config).expect("config");
    path
}

/// The page's browser cookie of `get` and `post`: one reception PC, which sees the messages
/// of its own forms (reqwest keeps it on the same-site redirect after a post).
const BROWSER: &str = "onshi_browser=00000000000000000000000000000001";

/// `onshi gateway serve` as a child process on a free port; SIGKILLed when dropped.
pub struct GatewayProcess {
    child: Child,
    pub page: String,
}

impl GatewayProcess {
    pub fn start(world: &ClinicWorld) -> GatewayProcess {
        GatewayProcess::start_with(&world.path("gateway.toml"))
    }

    pub fn start_with(config: &Path) -> GatewayProcess {
        let (child, addr) =
            crate::common::spawn_listening(onshi().args(["gateway", "serve", "--listen", "127.0.0.1:0", "--config"]).arg(config));
        GatewayProcess { child, page: format!("http://{addr}") }
    }

    /// The process id, to read what the gateway did from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to tidy up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn get(&self, path: &str) -> String {
        let url = format!("{}{path}", self.page);
        blocking(async move {
            let client = reqwest::Client::new();
            client.get(&url).header("cookie", BROWSER).send().await.expect("page answers").text().await.expect("text")
        })
    }

    /// Posts a form as the browser does; returns the page the redirect leads to.
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> String {
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
        let url = format!("{}{path}", self.page);
        let body = body.join("&");
        blocking(async move {
            let client = reqwest::Client::new();
            let response = client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", BROWSER)
                .body(body)
                .send()
                .await
                .expect("page answers");
            assert!(response.status().is_success(), "{url}: {}", response.status());
            response.text().await.expect("text")
        })
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status")).expect("status JSON")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn blocking<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Waits until `condition` holds, looking every few milliseconds; panics with `what` after a
/// generous deadline (the machine may be busy with other tests).
pub fn wait_for<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes a request file the way clients do: to a temporary name, then renamed into `req/`.
pub fn drop_request(req: &Path, name: &str, bytes: &[u8]) {
    let tmp = req.join(format!("{name}.part"));
    std::fs::write(&tmp, bytes).expect("request written");
    std::fs::rename(&tmp, req.join(name)).expect("request renamed");
}

/// Waits for a file and reads it as text (decoding Shift_JIS when it says so).
pub fn read_answer(path: &Path) -> String {
    let bytes = wait_for(&format!("{}", path.display()), || std::fs::read(path).ok());
    let (text, _) = onshi_gateway::xml::decode(&bytes).expect("the answer decodes");
    text
}

/// The text of the first element `name` in an answer.
pub fn element(xml: &str, name: &str) -> Option<String> {
    let root = onshi_gateway::xml::parse(xml).expect("the answer parses");
    if root.name == name {
        return Some(root.text);
    }
    root.find(name).map(|e| e.text.trim().to_string())
}

/// A single-check request for `m` in UTF-8 (or Shift_JIS) with the usual header.
pub fn single_request(m: &Member, id: &str, date: &str, sjis: bool) -> Vec<u8> {
    let encoding = if sjis { "Shift_JIS" } else { "UTF-8" };
    let insurer = if m.insurer.len() == 6 { format!("  {}", m.insurer) } else { m.insurer.clone() };
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"{encoding}\" standalone=\"no\"?>\n<XmlMsg><MessageHeader>\
         <QualificationConfirmationDate>{date}</QualificationConfirmationDate><MedicalInstitutionCode>{CLINIC}</MedicalInstitutionCode>\
         <ArbitraryFileIdentifier>{id}</ArbitraryFileIdentifier></MessageHeader><MessageBody><QualificationConfirmSearchInfo>\
         <InsurerNumber>{insurer}</InsurerNumber><InsuredCardSymbol>{}</InsuredCardSymbol><InsuredIdentificationNumber>{}</InsuredIdentificationNumber>\
         <InsuredBranchNumber>{}</InsuredBranchNumber><Birthdate>{}</Birthdate>\
         <LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg></QualificationConfirmSearchInfo></MessageBody></XmlMsg>",
        m.symbol, m.number, m.branch, m.birth
    );
    if sjis { encoding_rs::SHIFT_JIS.encode(&text).0.into_owned() } else { text.into_bytes() }
}

/// The names in a folder, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
        .unwrap_or_default();
    names.sort();
    names
}
