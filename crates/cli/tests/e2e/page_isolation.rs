//! Issue 10, item 7: the reception page in production. A result posted from one PC shows on
//! that PC's next page and never on another's (a per-browser cookie), and a gateway without
//! `[reader] simulator` neither shows nor accepts the simulator's card files and camera.

use crate::clinic::{ClinicWorld, GatewayProcess, blocking, members};
use crate::common::CLINIC;

/// A reception PC's browser: its own cookie, redirects looked at one by one.
struct Pc {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Answer {
    status: u16,
    set_cookie: Option<String>,
    text: String,
}

impl Pc {
    fn new(base: &str) -> Pc {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Pc { http, base: base.to_string(), cookie: None }
    }

    fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie.clone()),
            None => request,
        };
        let answer = blocking(async {
            let response = request.send().await.expect("the page answers");
            let status = response.status().as_u16();
            let set_cookie = response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
            Answer { status, set_cookie, text: response.text().await.unwrap() }
        });
        if let Some(set) = &answer.set_cookie {
            // Kept as a browser keeps it: the name=value pair, sent back on the next request.
            self.cookie = Some(set.split(';').next().unwrap().to_string());
        }
        answer
    }

    fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let request =
            self.http.post(format!("{}{path}", self.base)).header("content-type", "application/x-www-form-urlencoded").body(body.join("&"));
        self.send(request)
    }
}

fn check_form(m: &crate::clinic::Member) -> Vec<(&'static str, String)> {
    vec![
        ("insurer_number", m.insurer.clone()),
        ("symbol", m.symbol.to_string()),
        ("number", m.number.to_string()),
        ("branch", m.branch.to_string()),
        ("birth_date", m.birth.to_string()),
    ]
}

fn form_ref<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn a_result_is_shown_on_the_pc_that_asked_and_never_on_another() {
    let world = ClinicWorld::new();
    let gateway = GatewayProcess::start(&world);
    let p2 = &members()[1];
    let mut a = Pc::new(&gateway.page);
    let mut b = Pc::new(&gateway.page);

    // Each browser is given its own random id, HttpOnly and SameSite=Strict.
    let first_a = a.get("/");
    let first_b = b.get("/");
    let cookie_a = first_a.set_cookie.expect("a cookie for A");
    let cookie_b = first_b.set_cookie.expect("a cookie for B");
    for cookie in [&cookie_a, &cookie_b] {
        assert!(cookie.starts_with("onshi_browser=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    }
    assert_ne!(a.cookie, b.cookie);
    assert!(a.get("/").set_cookie.is_none(), "a known browser keeps its id");

    // A checks a patient; the answer is a redirect to the page.
    let posted = a.post("/check", &form_ref(&check_form(p2)));
    assert_eq!(posted.status, 303, "{}", posted.text);
    // B loads the page first: A's result is not there (the checks table may list the check,
    // but the message with its action is A's).
    let on_b = b.get("/");
    assert!(!on_b.text.contains("id=\"flash\""), "B sees A's message:\n{}", on_b.text);
    let on_a = a.get("/");
    assert!(on_a.text.contains("id=\"flash\"") && on_a.text.contains("受付を続けてください"), "{}", on_a.text);
    assert!(!a.get("/").text.contains("id=\"flash\""), "shown once");

    // B's own refusal goes to B only.
    let refused = b.post("/check", &[("insurer_number", "06130488")]);
    assert_eq!(refused.status, 303);
    assert!(!a.get("/").text.contains("id=\"flash\""));
    assert!(b.get("/").text.contains("保険者番号・番号・生年月日を入力してください"));

    // A browser without a cookie that posts gets one with the redirect, and its message.
    let mut c = Pc::new(&gateway.page);
    let posted = c.post("/check", &form_ref(&check_form(p2)));
    assert!(posted.set_cookie.is_some());
    assert!(c.get("/").text.contains("受付を続けてください"));
    assert!(!b.get("/").text.contains("id=\"flash\""));

    // The simulator is on in this configuration: its controls are there and answer.
    assert!(on_a.text.contains("action=\"/reader/place\"") && on_a.text.contains("action=\"/reader/camera\""));
    assert_eq!(a.post("/reader/camera", &[("who", "stranger")]).status, 303);
}

#[test]
fn without_the_simulator_setting_the_page_neither_shows_nor_accepts_its_controls() {
    let world = ClinicWorld::new();
    let standard = std::fs::read_to_string(world.path("gateway.toml")).unwrap();
    assert!(standard.contains("simulator = true\ncards = \"cards\"\n"), "{standard}");
    let production = standard.replace("simulator = true\ncards = \"cards\"\n", "");
    let config = world.path("gateway-production.toml");
    std::fs::write(&config, &production).unwrap();
    let gateway = GatewayProcess::start_with(&config);
    let mut pc = Pc::new(&gateway.page);

    let page = pc.get("/").text;
    assert!(page.contains("カードリーダーのドライバーが設定されていない"), "{page}");
    assert!(page.contains("保険証・資格確認書での照会"), "{page}");
    for absent in ["/reader/place", "/reader/camera", "/reader/remove", "name=\"who\"", "別人", "card-1.json"] {
        assert!(!page.contains(absent), "{absent} on the production page:\n{page}");
    }
    for (path, form) in
        [("/reader/place", ("card", "card-1.json")), ("/reader/camera", ("who", "stranger")), ("/reader/remove", ("x", "1"))]
    {
        let refused = pc.post(path, &[form]);
        assert_eq!(refused.status, 404, "{path}: {}", refused.text);
        assert!(refused.text.contains("シミュレーターは設定されていません"), "{path}: {}", refused.text);
    }
    let live = pc.get("/live").text;
    assert!(live.contains("ドライバー未設定") && !live.contains("カードあり"), "{live}");

    // The number check works as before.
    let p2 = &members()[1];
    assert_eq!(pc.post("/check", &form_ref(&check_form(p2))).status, 303);
    assert!(pc.get("/").text.contains("受付を続けてください"));
    assert!(production.contains(CLINIC));
}
