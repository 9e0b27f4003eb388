//! The patient's page (患者さん用の画面, issue 16 item 3): on a kiosk in the waiting room, the
//! patient places their card on the reader, enters the PIN, and sees their coverage as the
//! register holds it, the consents they gave (and withdraws one), who looked at their records
//! and when, and the reports about their card; they can flag a wrong link and later see what
//! became of it. Large type, Japanese, one thing per screen section, no script.
//!
//! Served on an address of its own (`[patient] listen`), never on the reception page's: a
//! kiosk must not reach today's list of patients. Every request to the center is the card
//! holder's own (the patient endpoints, no clinic certificate): the card's PIN signature over a
//! fresh challenge proves who asks, and nothing on this page can ask about anyone else.
//!
//! What was read stays in memory for this browser only until the patient ends, the card leaves
//! the reader, or [`SESSION_IDLE`] passes; the PIN is used for the one request it was typed for
//! and never kept. An action (a withdrawal, a flag) signs twice with the one PIN entry, as a
//! card does after one VERIFY: the action, then the fresh record that shows its effect.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use onshi_api::card::PatientRecord;
use onshi_api::client::{CenterClient, ClientConfig, ClientError};
use onshi_domain::markup::escape as esc;
use onshi_reader::CardReader;
use onshi_reader::flow::{self, FlowError};

use crate::card_reader::GatewayReader;
use crate::check::time_ja;
use crate::config::PatientPage;
use crate::gateway::{Gateway, GatewayError};
use crate::page::{Browser, same_origin};

/// A patient's record leaves memory this long after their last action.
pub const SESSION_IDLE: Duration = Duration::from_secs(180);
/// Sessions kept at once (a kiosk has one patient at a time; a bound against a flood).
const SESSIONS_MAX: usize = 16;
/// Longest reason for a flag (the center keeps 200 characters).
const REASON_CHARS_MAX: usize = 200;

/// One patient's reading: the record, the card it was read with, and when.
struct Session {
    record: PatientRecord,
    serial: String,
    touched: Instant,
}

/// The patient page's state.
pub struct PatientDesk {
    /// The kiosk's own card reader: the patient's PIN never goes into reception's.
    reader: tokio::sync::Mutex<GatewayReader>,
    /// Where the simulated reader's card files are (a trial).
    card_folder: Option<std::path::PathBuf>,
    /// The center without a clinic certificate: the card holder proves themselves.
    client: CenterClient,
    sessions: Mutex<HashMap<String, Session>>,
    /// The message after an action, for its browser's next page.
    messages: Mutex<HashMap<String, (&'static str, String)>>,
}

/// A client of the center that carries no certificate (the patient endpoints need none).
pub fn holder_client(gateway: &Gateway) -> Result<CenterClient, GatewayError> {
    let config = &gateway.config;
    let ca_pem = std::fs::read(&config.center_ca)
        .map_err(|e| GatewayError::Client(format!("cannot read the center CA {}: {e}", config.center_ca.display())))?;
    CenterClient::new(ClientConfig { base_url: config.center_url.clone(), ca_pem, identity_pem: None, timeout: config.center_timeout })
        .map_err(|e| GatewayError::Client(e.to_string()))
}

/// The patient page's routes, behind the kiosk's access list, with the kiosk's own reader.
pub fn router(gateway: Arc<Gateway>, kiosk: &PatientPage) -> Result<Router, GatewayError> {
    let client = holder_client(&gateway)?;
    // The reader's device key is the gateway's (the kiosk only carries the card's own PIN
    // signatures; it attests nothing).
    let file = onshi_reader::ReaderFile::load(&gateway.config.reader_file).map_err(|e| GatewayError::Reader(e.to_string()))?;
    let reader = match &kiosk.pcsc {
        Some(name) => GatewayReader::pcsc(file, name),
        None => GatewayReader::simulated(file),
    };
    Ok(routes(client, reader, gateway.config.card_folder.clone(), kiosk.access.clone()))
}

/// The patients' page on the patient's own PC (`onshi patient page`): their reader, the center
/// asked without any certificate, this PC only.
pub fn own_pc_router(client: CenterClient, reader: GatewayReader, card_folder: Option<std::path::PathBuf>) -> Router {
    routes(client, reader, card_folder, crate::access::Access::default())
}

fn routes(client: CenterClient, reader: GatewayReader, card_folder: Option<std::path::PathBuf>, access: crate::access::Access) -> Router {
    let simulator = reader.is_simulator();
    let desk = Arc::new(PatientDesk {
        reader: tokio::sync::Mutex::new(reader),
        card_folder,
        client,
        sessions: Mutex::new(HashMap::new()),
        messages: Mutex::new(HashMap::new()),
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/present", get(present))
        .route("/open", post(open))
        .route("/withdraw", post(withdraw))
        .route("/flag", post(flag))
        .route("/close", post(close));
    let router = if simulator { router.route("/place", post(place)).route("/remove", post(remove)) } else { router };
    router
        .with_state(desk)
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::from_fn_with_state(Arc::new(access), crate::access::guard))
}

/// Nothing of a patient's record is kept by the browser (the Back button after 終わる, the
/// next patient at the same kiosk).
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

impl PatientDesk {
    fn say(&self, browser: &Browser, ok: bool, message: impl Into<String>) -> Response {
        if let Some(id) = &browser.id {
            let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
            if messages.len() >= SESSIONS_MAX {
                messages.clear();
            }
            messages.insert(id.clone(), (if ok { "ok" } else { "bad" }, message.into()));
        }
        browser.finish(Redirect::to("/").into_response())
    }

    fn forget(&self, browser: &Browser) {
        if let Some(id) = &browser.id {
            self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        }
    }

    /// The card on the reader now, if any (its serial).
    async fn card_on_reader(&self) -> Option<String> {
        match self.reader.lock().await.view() {
            crate::card_reader::ReaderView::CardPresent { serial } => Some(serial),
            _ => None,
        }
    }

    /// Reads the record with the card on the reader, after `action` (if any) on the same
    /// PIN entry; keeps it for this browser.
    async fn read(&self, browser: &Browser, pin: &str, action: Action) -> Result<String, String> {
        let mut guard = self.reader.lock().await;
        let reader = guard.card_reader().map_err(|e| crate::gateway::reader_message(&e))?;
        let serial = match reader.state() {
            onshi_reader::ReaderState::CardPresent { serial } => serial,
            onshi_reader::ReaderState::Empty => return Err("カードリーダーにカードを置いてください。".into()),
        };
        let action_kind = match &action {
            Action::Open => ActionKind::Open,
            _ => ActionKind::Change,
        };
        let done = match action {
            Action::Open => "あなたの情報を表示しました。".to_string(),
            Action::Withdraw { institution, scope } => {
                let answer =
                    flow::withdraw_on_reader(&self.client, reader, pin, &institution, vec![scope.clone()]).await.map_err(flow_message)?;
                let withdrawn = answer["withdrawn"].as_array().is_some_and(|w| !w.is_empty());
                if withdrawn {
                    format!("医療機関 {institution} への「{}」の同意を取り消しました。", scope_ja(&scope))
                } else {
                    format!("医療機関 {institution} への「{}」の有効な同意はありませんでした。", scope_ja(&scope))
                }
            }
            Action::Flag { reason } => {
                let filed = flow::flag_on_reader(&self.client, reader, pin, &reason).await.map_err(flow_message)?;
                format!(
                    "届け出ました（報告番号 {}）。保険者が確認するまで、このカードは保険証として使えません。受付では資格確認書か、保険者番号などで確認します。",
                    filed.report_id
                )
            }
        };
        // The action is done even when the fresh record cannot be read: say both.
        let record = match flow::own_record(&self.client, reader, pin).await {
            Ok(record) => record,
            Err(e) if matches!(action_kind, ActionKind::Open) => return Err(flow_message(e)),
            Err(e) => return Err(format!("{done}（ただし、最新の内容を表示できませんでした: {}）", flow_message(e))),
        };
        drop(guard);
        if let Some(id) = &browser.id {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|_, s| s.touched.elapsed() < SESSION_IDLE);
            if sessions.len() >= SESSIONS_MAX {
                sessions.clear();
            }
            sessions.insert(id.clone(), Session { record, serial, touched: Instant::now() });
        }
        Ok(done)
    }
}

#[derive(Clone, Copy)]
enum ActionKind {
    Open,
    Change,
}

enum Action {
    Open,
    Withdraw { institution: String, scope: String },
    Flag { reason: String },
}

/// What the patient reads when the card or the center refuses.
fn flow_message(error: FlowError) -> String {
    match error {
        FlowError::Reader(e) => crate::gateway::reader_message(&e),
        FlowError::Center(ClientError::Refused { body, .. }) => body.error.reception_ja,
        FlowError::Center(_) => "センターにつながりません。しばらくしてからもう一度お試しください（受付にお声がけください）。".into(),
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5rem;background:#fbfaf6;color:#111;font-size:1.35rem;line-height:1.7}
h1{font-size:2rem}h2{font-size:1.6rem;margin-top:2rem;border-bottom:3px solid #bbb}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border:1px solid #ccc;padding:.5rem .7rem;text-align:left;vertical-align:top}
.ok{color:#075e2b}.bad{color:#a40000;font-weight:bold}.flash{padding:1rem;border-radius:6px;margin:1rem 0}.flash.ok{background:#e4f4e8}.flash.bad{background:#fbe5e5}
form{margin:.6rem 0}button{font-size:1.35rem;padding:.6rem 1.4rem;margin:.3rem}input,select{font-size:1.35rem;padding:.4rem}
.note{font-size:1.1rem;color:#444}";

fn page(title: &str, head: &str, body: &str) -> Response {
    Html(format!(
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} — onshi</title><style>{STYLE}</style>{head}</head><body>{body}</body></html>"
    ))
    .into_response()
}

/// While a record is shown: the page leaves it as soon as the card leaves the reader (asked
/// every two seconds), and without script when the session's idle time is up.
fn watch_head() -> String {
    format!(
        "<meta http-equiv=\"refresh\" content=\"{}\"><script>setInterval(function(){{fetch('/present').then(function(r){{return r.text()}})\
         .then(function(t){{if(t!=='1'){{location.replace('/')}}}}).catch(function(){{location.replace('/')}})}},2000);</script>",
        SESSION_IDLE.as_secs()
    )
}

/// Whether this browser's record may stay on the screen: its card is still on the reader and
/// the session is not idle. A record that may not is forgotten here.
async fn present(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap) -> Response {
    let browser = Browser::of(&headers);
    let on_reader = desk.card_on_reader().await;
    let Some(id) = &browser.id else { return "0".into_response() };
    let mut sessions = desk.sessions.lock().unwrap_or_else(|p| p.into_inner());
    let keep = sessions.get(id).is_some_and(|s| s.touched.elapsed() < SESSION_IDLE && on_reader.as_deref() == Some(&s.serial));
    if !keep {
        sessions.remove(id);
    }
    if keep { "1" } else { "0" }.into_response()
}

async fn index(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap) -> Response {
    let browser = Browser::of(&headers);
    let message = browser.id.as_ref().and_then(|id| desk.messages.lock().unwrap_or_else(|p| p.into_inner()).remove(id));
    let on_reader = desk.card_on_reader().await;
    // The record shows only while the card it was read with is on the reader.
    let record = browser.id.as_ref().and_then(|id| {
        let mut sessions = desk.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let keep = sessions.get(id).is_some_and(|s| s.touched.elapsed() < SESSION_IDLE && on_reader.as_deref() == Some(&s.serial));
        if keep { sessions.get(id).map(|s| s.record.clone()) } else { sessions.remove(id).and(None) }
    });
    let mut html = String::from("<h1>ご自身の情報の確認</h1>");
    if let Some((class, text)) = message {
        let _ = write!(html, "<div id=\"flash\" class=\"flash {class}\">{}</div>", esc(&text));
    }
    if desk.reader.lock().await.is_simulator() {
        html.push_str(&simulator_forms(desk.card_folder.as_deref(), on_reader.is_some()));
    }
    let head = if record.is_some() { watch_head() } else { String::new() };
    match record {
        None => {
            let _ = write!(
                html,
                "<p id=\"reader\">{}</p>\
                 <form method=\"post\" action=\"/open\"><label>暗証番号（数字4桁） <input type=\"password\" name=\"pin\" id=\"pin\" inputmode=\"numeric\" maxlength=\"4\" autocomplete=\"off\"></label>\
                 <button id=\"open\">表示する</button></form>\
                 <p class=\"note\">利用者証明用の暗証番号（数字4桁）です。3回続けて間違えるとロックされ、市区町村の窓口での解除が必要です。\
                 表示した内容は、カードを取るか「終わる」を押すと画面から消えます。</p>",
                if on_reader.is_some() {
                    "カードを確認しました。暗証番号を入力してください。"
                } else {
                    "マイナンバーカードをカードリーダーに置いてください。"
                }
            );
        }
        Some(record) => html.push_str(&record_html(&record)),
    }
    browser.finish(page("ご自身の情報の確認", &head, &html))
}

fn simulator_forms(card_folder: Option<&std::path::Path>, placed: bool) -> String {
    let cards = crate::page::card_files_in(card_folder);
    let options: String = cards.iter().map(|c| format!("<option>{}</option>", esc(c))).collect();
    let mut html = format!(
        "<form method=\"post\" action=\"/place\" class=\"note\">（シミュレーター）<select name=\"card\" id=\"card\">{options}</select>\
         <button id=\"place\">カードを置く</button></form>"
    );
    if placed {
        html.push_str("<form method=\"post\" action=\"/remove\" class=\"note\"><button id=\"remove\">カードを取る</button></form>");
    }
    html
}

/// The record in sections, each with what the patient can do there.
fn record_html(record: &PatientRecord) -> String {
    let mut html = String::new();
    html.push_str("<form method=\"post\" action=\"/close\"><button id=\"close\">終わる（画面から消す）</button></form>");
    if record.blocked {
        html.push_str(
            "<p id=\"blocked\" class=\"bad\">このカードは、登録（ひも付け）の誤りの届け出があったため、保険者が確認するまで保険証として使えません。\
             確認が終わるまでは、届け出の状況だけを表示します。受付では資格確認書か、保険者番号などで確認します。</p>",
        );
        html.push_str(&reports_html(record));
        return html;
    }
    html.push_str("<h2>あなたの保険資格（登録されている内容）</h2><table id=\"coverages\"><tr><th>保険者番号</th><th>記号・番号・枝番</th><th>お名前</th><th>期間</th><th>負担割合</th><th>状態</th></tr>");
    if record.coverages.is_empty() {
        html.push_str(
            "<tr><td colspan=\"6\">登録されている資格はありません。保険者（加入している健康保険）にお問い合わせください。</td></tr>",
        );
    }
    for answer in &record.coverages {
        let Some(c) = &answer.coverage else { continue };
        let period = format!(
            "{} から{}",
            onshi_domain::date::japanese_text(&c.acquired_on),
            c.lost_on.as_deref().map(|l| format!(" {} まで", onshi_domain::date::japanese_text(l))).unwrap_or_default()
        );
        let state = if answer.validity.code == "1" { "<span class=\"ok\">有効</span>" } else { "終了" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{} {} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
            esc(&c.insurer_number),
            esc(c.symbol.as_deref().unwrap_or("")),
            esc(&c.number),
            esc(&c.branch),
            esc(&c.name),
            esc(&period),
            c.copay_ratio_percent.map(|p| format!("{}割", p / 10)).unwrap_or_else(|| "—".into()),
        );
    }
    html.push_str("</table><p class=\"note\">違っているときは、加入している保険者にお問い合わせください。</p>");

    html.push_str("<h2>同意の状況</h2><table id=\"consents\"><tr><th>医療機関</th><th>情報</th><th>同意した日時</th><th>閲覧できる期限</th><th></th></tr>");
    if record.consents.is_empty() {
        html.push_str("<tr><td colspan=\"5\">同意した記録はありません。</td></tr>");
    }
    for c in &record.consents {
        let action = if c.in_force {
            format!(
                "<form method=\"post\" action=\"/withdraw\"><input type=\"hidden\" name=\"institution\" value=\"{}\"><input type=\"hidden\" name=\"scope\" value=\"{}\">\
                 <label>暗証番号 <input type=\"password\" name=\"pin\" class=\"withdraw-pin\" inputmode=\"numeric\" maxlength=\"4\" autocomplete=\"off\" size=\"4\"></label>\
                 <button class=\"withdraw\">取り消す</button></form>",
                esc(&c.institution_code),
                esc(&c.scope)
            )
        } else {
            "期限切れ".to_string()
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(&c.institution_code),
            scope_ja(&c.scope),
            esc(&time_ja(&c.given_at)),
            esc(&time_ja(&c.available_until))
        );
    }
    html.push_str("</table>");

    let _ = write!(
        html,
        "<h2>あなたの情報を見た記録</h2><p>全{}件{}</p><table id=\"access-log\"><tr><th>日時</th><th>だれが</th><th>何を</th><th>結果</th></tr>",
        record.access_log.total,
        if record.access_log.total as usize > record.access_log.entries.len() {
            format!("（新しい{}件を表示）", record.access_log.entries.len())
        } else {
            String::new()
        }
    );
    for e in record.access_log.entries.iter().rev() {
        let by = if e.by == "patient" {
            "ご本人".to_string()
        } else if e.by == "jpki" {
            "カードの発行者".to_string()
        } else {
            format!("医療機関 {}", e.by)
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&time_ja(&e.at)),
            esc(&by),
            action_ja(&e.action),
            esc(&outcome_ja(&e.code))
        );
    }
    html.push_str("</table>");

    html.push_str(&reports_html(record));
    html.push_str(
        "<p>上の保険資格が自分のものでないときは、届け出てください。保険者が確認するまで、このカードは保険証として使えなくなります。</p>\
         <form method=\"post\" action=\"/flag\" id=\"flag-form\"><label>理由 <input type=\"text\" name=\"reason\" id=\"reason\" maxlength=\"200\" size=\"30\"></label>\
         <label>暗証番号 <input type=\"password\" name=\"pin\" id=\"flag-pin\" inputmode=\"numeric\" maxlength=\"4\" autocomplete=\"off\" size=\"4\"></label>\
         <button id=\"flag\">届け出る</button></form>",
    );
    html
}

/// The reports about the patient's cards and their review state.
fn reports_html(record: &PatientRecord) -> String {
    let mut html = String::new();
    html.push_str("<h2>カードの登録（ひも付け）の誤りの届け出</h2><table id=\"reports\"><tr><th>報告番号</th><th>届け出た人</th><th>日時</th><th>理由</th><th>状況</th></tr>");
    if record.reports.is_empty() {
        html.push_str("<tr><td colspan=\"5\">届け出はありません。</td></tr>");
    }
    for r in &record.reports {
        let by = if r.reporter == "patient" { "ご本人".to_string() } else { format!("医療機関 {}", r.reporter) };
        let state = match r.state.as_str() {
            "open" => "保険者が確認中です",
            "confirmed" => "誤りと確認され、登録は取り消されました",
            "cleared" => "正しい登録と確認されました",
            _ => "不明",
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
            r.report_id,
            esc(&by),
            esc(&time_ja(&r.filed_at)),
            esc(&r.reason)
        );
    }
    html.push_str("</table>");
    html
}

fn scope_ja(scope: &str) -> &'static str {
    match scope {
        "drug" => "薬剤情報",
        "checkup" => "特定健診",
        "diagnosis" => "診療・手術",
        "limit" => "限度額情報",
        "specific_disease" => "特定疾病",
        "home" => "在宅・オンライン診療（カードなしの再照会）",
        _ => "その他",
    }
}

/// The audit log's actions as the patient reads them.
fn action_ja(action: &str) -> &'static str {
    match action {
        "verify_number" => "保険証の番号で資格を確認",
        "reverify_number" => "回線の復旧後に資格を再確認",
        "verify_card" => "マイナ保険証で資格を確認",
        "reverify_card" => "回線の復旧後にマイナ保険証の確認を再確認",
        "verify_number_batch" => "予約の事前確認（一括照会）",
        "verify_attributes" => "保険証の番号が分からない請求のため、氏名・生年月日・性別で資格を照会",
        "verify_subsidy" => "受給者証（公費・医療費助成）を番号で照会",
        "verify_welfare" => "医療扶助の医療券を照会",
        "reverify_home" => "在宅・オンライン診療でカードなしに資格を再照会",
        "verify_home_list" => "在宅・オンライン診療の同意者として資格を照会",
        "give_online_consent" => "オンライン診療に同意",
        "view_drug" => "薬剤情報を閲覧",
        "view_checkup" => "健診結果を閲覧",
        "link_card" => "マイナ保険証の利用登録",
        "report_link" => "登録の誤りを報告",
        "flag_card" => "登録の誤りを届け出",
        "withdraw_consent" => "同意を取り消し",
        "access_log" => "見た記録を確認",
        "view_own_record" => "ご自身の情報を確認",
        "unlink_card" => "カードの失効で登録を解除",
        "review_link" => "保険者が届け出を確認",
        _ => "その他の操作",
    }
}

fn outcome_ja(code: &str) -> String {
    match code {
        "ok" | "1" => "完了".into(),
        "2" | "3" => "資格なし（終了した資格）".into(),
        "4" => "該当する資格なし".into(),
        "5" => "複数該当".into(),
        "none_in_force" => "取り消す同意なし".into(),
        "cleared" | "confirmed" => "確認済み".into(),
        other => format!("お断り（{other}）"),
    }
}

fn field(form: &HashMap<String, String>, name: &str) -> Option<String> {
    form.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn refused_cross_site() -> Response {
    (StatusCode::FORBIDDEN, "cross-site form refused").into_response()
}

async fn open(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    act(&desk, &headers, &form, Action::Open).await
}

async fn withdraw(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let (Some(institution), Some(scope)) = (field(&form, "institution"), field(&form, "scope")) else {
        return desk.say(&Browser::of(&headers), false, "取り消す同意を選んでください。");
    };
    act(&desk, &headers, &form, Action::Withdraw { institution, scope }).await
}

async fn flag(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(reason) = field(&form, "reason") else {
        return desk.say(&Browser::of(&headers), false, "理由を書いてください（例: 自分の保険ではない）。");
    };
    let reason: String = reason.chars().take(REASON_CHARS_MAX).collect();
    act(&desk, &headers, &form, Action::Flag { reason }).await
}

async fn act(desk: &PatientDesk, headers: &HeaderMap, form: &HashMap<String, String>, action: Action) -> Response {
    if !same_origin(headers) {
        return refused_cross_site();
    }
    let browser = Browser::of(headers);
    let Some(pin) = field(form, "pin") else {
        return desk.say(&browser, false, "暗証番号（数字4桁）を入力してください。");
    };
    match desk.read(&browser, &pin, action).await {
        Ok(message) => desk.say(&browser, true, message),
        Err(message) => {
            desk.forget(&browser);
            desk.say(&browser, false, message)
        }
    }
}

async fn close(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return refused_cross_site();
    }
    let browser = Browser::of(&headers);
    desk.forget(&browser);
    desk.say(&browser, true, "表示を終わりました。カードをお取りください。")
}

async fn place(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return refused_cross_site();
    }
    let browser = Browser::of(&headers);
    let (Some(dir), Some(card)) = (&desk.card_folder, field(&form, "card")) else {
        return desk.say(&browser, false, "カードを選んでください。");
    };
    if card.contains(['/', '\\']) || card.starts_with('.') {
        return desk.say(&browser, false, "カードの名前が正しくありません。");
    }
    let placed = desk.reader.lock().await.simulator().map(|simulator| simulator.place_card(&dir.join(&card)));
    match placed {
        Some(Ok(())) => desk.say(&browser, true, "カードを置きました。"),
        Some(Err(e)) => desk.say(&browser, false, format!("カードを読めませんでした: {e}")),
        None => (StatusCode::NOT_FOUND, header::HeaderMap::new()).into_response(),
    }
}

async fn remove(State(desk): State<Arc<PatientDesk>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return refused_cross_site();
    }
    let browser = Browser::of(&headers);
    if let Some(simulator) = desk.reader.lock().await.simulator() {
        simulator.remove_card();
    }
    desk.forget(&browser);
    desk.say(&browser, true, "カードを取りました。")
}
