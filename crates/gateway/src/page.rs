//! The reception page (受付画面): server-rendered HTML in Japanese that any browser on the
//! reception PC shows. Forms post and redirect back; a few lines of script refresh the live
//! part (line state, reader, today's checks, the queue, changes) every few seconds without
//! touching what staff are typing. No script is needed to use it.
//!
//! Names appear here (reception needs them); they never go to logs.
//!
//! The message after a form (照会の結果) belongs to the browser that posted it: each browser
//! gets a random id in an HttpOnly, SameSite=Strict cookie, and the message waits under that
//! id for that browser's next page, so one PC's result never shows on another's screen. The
//! simulated reader's controls (card files, the camera) exist only with `[reader] simulator`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use onshi_api::card::ConsentChoice;
use onshi_api::verify::VerifyNumberRequest;
use onshi_reader::{CardReader, Face};

use crate::card_reader::ReaderView;

use crate::check::{Outcome, Source, time_ja};
use crate::gateway::{CardHow, Gateway, GatewayError};
use crate::store::CheckRow;

/// The page's state: the gateway and the messages to show after the next redirect.
pub struct Page {
    gateway: Arc<Gateway>,
    /// Each browser's message (class `ok`, `warn` or `bad`, and text) until its next page.
    flash: Mutex<Flashes>,
}

/// The cookie that names a browser (a reception PC) for its messages.
const BROWSER_COOKIE: &str = "onshi_browser";
/// Random bytes in a browser id: not guessable by another PC on the LAN.
const BROWSER_ID_BYTES: usize = 16;
/// Messages waiting for their browser; beyond this the oldest is dropped (a browser that
/// posted and was closed never collects its message, and memory must not grow with them).
const FLASH_PENDING_MAX: usize = 64;

/// Messages waiting for their browsers, oldest first.
#[derive(Default)]
struct Flashes {
    by_browser: HashMap<String, (&'static str, String)>,
    order: VecDeque<String>,
}

impl Flashes {
    fn put(&mut self, browser: &str, class: &'static str, message: String) {
        if self.by_browser.insert(browser.to_string(), (class, message)).is_some() {
            self.order.retain(|b| b != browser);
        }
        self.order.push_back(browser.to_string());
        while self.order.len() > FLASH_PENDING_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.by_browser.remove(&oldest);
            }
        }
        debug_assert_eq!(self.order.len(), self.by_browser.len());
    }

    fn take(&mut self, browser: &str) -> Option<(&'static str, String)> {
        let message = self.by_browser.remove(browser)?;
        self.order.retain(|b| b != browser);
        Some(message)
    }
}

/// Who is asking: the browser's id from its cookie, or a new one to set.
pub(crate) struct Browser {
    /// `None` only if the system's random source failed: then no message is kept.
    pub(crate) id: Option<String>,
    /// The id was made for this request and goes out in `Set-Cookie`.
    new: bool,
}

impl Browser {
    pub(crate) fn of(headers: &HeaderMap) -> Browser {
        let sent = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(BROWSER_COOKIE)?.strip_prefix('='))
            .find(|id| id.len() == 2 * BROWSER_ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit()));
        match sent {
            Some(id) => Browser { id: Some(id.to_ascii_lowercase()), new: false },
            None => Browser { id: onshi_pki::random_hex(BROWSER_ID_BYTES).ok(), new: true },
        }
    }

    /// Adds `Set-Cookie` for a new id. HttpOnly: no script reads it; SameSite=Strict: another
    /// site's form does not carry it. No Secure flag, since the page is plain HTTP on the LAN.
    pub(crate) fn finish(&self, mut response: Response) -> Response {
        if let (true, Some(id)) = (self.new, &self.id)
            && let Ok(value) = header::HeaderValue::from_str(&format!("{BROWSER_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"))
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

/// The page's routes behind [`crate::access::guard`]; serve them with
/// `into_make_service_with_connect_info::<access::Peer>()`, without which every request is refused.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let access = Arc::new(gateway.config.page_access.clone());
    let simulator = gateway.config.reader_simulator;
    let page = Arc::new(Page { gateway, flash: Mutex::new(Flashes::default()) });
    let router = Router::new()
        .route("/", get(index))
        .route("/live", get(live))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/report/{month}", get(report))
        .route("/check", post(check_number))
        .route("/declaration", post(record_declaration))
        .route("/subsidy", post(check_subsidy))
        .route("/welfare", post(check_welfare))
        .route("/home/reverify", post(home_reverify))
        .route("/home/fetch", post(home_fetch));
    // The simulator's controls stand for a hand placing a card and a face before the camera;
    // with a real reader they must not exist, so their routes answer 404.
    let router = if simulator {
        router.route("/reader/place", post(place_card)).route("/reader/remove", post(remove_card)).route("/reader/camera", post(camera))
    } else {
        router
            .route("/reader/place", post(no_simulator))
            .route("/reader/remove", post(no_simulator))
            .route("/reader/camera", post(no_simulator))
    };
    router
        .route("/reader/verify", post(verify_card))
        .route("/reader/link", post(link_card))
        .route("/visual", post(visual_check))
        .with_state(page)
        .layer(axum::middleware::from_fn_with_state(access, crate::access::guard))
}

use onshi_domain::markup::escape as esc;

impl Page {
    fn say(&self, browser: &Browser, ok: bool, message: impl Into<String>) -> Response {
        self.say_as(browser, if ok { "ok" } else { "bad" }, message.into())
    }

    /// A check's outcome in the colour of its result (a lost coverage is not green), with the
    /// action for reception.
    fn say_outcome(&self, browser: &Browser, outcome: &Outcome) -> Response {
        let (class, what_to_do) = action(outcome);
        // What the paper the numbers came from is worth today, when staff named it.
        let paper = outcome.answer().and_then(|a| a.document.as_ref()).map(|d| format!(" {}", d.reception_ja)).unwrap_or_default();
        self.say_as(browser, class, format!("{} {what_to_do}{paper}", outcome.summary_ja()))
    }

    /// Leaves the message for `browser`'s next page and sends it there.
    fn say_as(&self, browser: &Browser, class: &'static str, message: String) -> Response {
        if let Some(id) = &browser.id {
            self.flash.lock().unwrap_or_else(|p| p.into_inner()).put(id, class, message);
        }
        browser.finish(Redirect::to("/").into_response())
    }
}

/// A simulator route on a gateway with a real reader (or none).
async fn no_simulator() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "カードリーダーのシミュレーターは設定されていません（gateway.toml の [reader] simulator）。この操作はできません。\nthe simulated reader is not configured ([reader] simulator = true in gateway.toml)",
    )
        .into_response()
}

/// Refuses a form posted from another site (a page on the internet cannot drive the
/// reception PC's gateway through the browser).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()), host) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
    }
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "cross-site form refused").into_response()
}

const STYLE: &str = "body{font-family:sans-serif;margin:1rem;background:#f7f7f5;color:#222}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.4rem;border-bottom:2px solid #ccc}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.ok{color:#075e2b}.bad{color:#a40000;font-weight:bold}.warn{color:#8a5300;font-weight:bold}
.flash{padding:.6rem;border-radius:4px;margin:.5rem 0}.flash.ok{background:#e4f4e8}.flash.warn{background:#fdf1dc}.flash.bad{background:#fbe5e5}
form{display:inline-block;margin:.2rem 1rem .2rem 0;padding:.5rem;background:#fff;border:1px solid #ddd}
label{margin-right:.6rem}input[type=text],input[type=password]{width:8rem}.line{padding:.4rem;display:inline-block}
@media (max-width:600px){body{margin:.5rem}form{display:block;margin:.4rem 0}label{display:block;margin:.3rem 0}
input[type=text],input[type=password],select{width:100%;box-sizing:border-box;font-size:1rem}button{font-size:1rem;padding:.5rem 1rem;margin:.2rem 0}
table{display:block;overflow-x:auto;font-size:.85rem}svg{max-width:100%;height:auto}}";

const REFRESH: &str = "setInterval(function(){fetch('/live').then(function(r){return r.text()}).then(function(t){document.getElementById('live').innerHTML=t})},3000);";

async fn index(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    let browser = Browser::of(&headers);
    let flash = match (&browser.id, browser.new) {
        (Some(id), false) => page.flash.lock().unwrap_or_else(|p| p.into_inner()).take(id),
        _ => None,
    };
    let live = render_live(&page.gateway).await;
    let mut html = String::with_capacity(16 * 1024);
    let code = esc(&page.gateway.config.institution_code);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>受付 — onshi</title><style>{STYLE}</style></head><body>\
         <h1>オンライン資格確認 受付（医療機関コード {code}）</h1>"
    );
    if let Some((class, message)) = flash {
        let _ = write!(html, "<div id=\"flash\" class=\"flash {class}\">{}</div>", esc(&message));
    }
    html.push_str(&forms(&page.gateway));
    html.push_str(&home_section(&page.gateway));
    html.push_str(&declaration_section(&page.gateway));
    html.push_str(&usage_section(&page.gateway));
    let _ = write!(html, "<div id=\"live\">{live}</div><script>{REFRESH}</script></body></html>");
    browser.finish(Html(html).into_response())
}

async fn live(State(page): State<Arc<Page>>) -> Response {
    Html(render_live(&page.gateway).await).into_response()
}

/// 在宅・オンライン診療: the consents in force that this clinic holds keys for, each with a
/// button for the later visit's 再照会 without the card (the doctor's phone or tablet at the
/// patient's home).
fn home_section(gateway: &Gateway) -> String {
    let today = gateway.now().date().yyyymmdd();
    let keys = gateway.store.home_keys(&today).unwrap_or_default();
    let mut html = String::from(
        "<h2 id=\"home\">在宅・オンライン診療（再照会）</h2><form method=\"post\" action=\"/home/fetch\" id=\"home-fetch-form\">\
         <button id=\"home-fetch\">患者さんが自分の端末でした同意を取得（過去30日）</button></form>",
    );
    if keys.is_empty() {
        html.push_str("<p id=\"home-empty\">同意をいただいている患者さんはいません。初回はマイナ保険証で確認し、上の「在宅・オンライン診療の同意」を選んでください。</p>");
        return html;
    }
    html.push_str("<table id=\"home-keys\"><tr><th>患者さん</th><th>種類</th><th>同意の期間</th><th></th></tr>");
    for (i, (consent, name, birth)) in keys.iter().enumerate() {
        let kind = match consent.kind {
            onshi_api::card::HomeCareKind::Visit => "訪問診療",
            onshi_api::card::HomeCareKind::Online => "オンライン診療",
        };
        let _ = write!(
            html,
            "<tr class=\"home-key\"><td>{}<br><small>{}生</small></td><td>{kind}</td><td>{}〜{}</td>\
             <td><form method=\"post\" action=\"/home/reverify\"><input type=\"hidden\" name=\"key\" value=\"{}\">\
             <button id=\"home-reverify-{i}\">再照会</button></form></td></tr>",
            esc(name),
            esc(&onshi_domain::date::japanese_text(birth)),
            esc(&onshi_domain::date::japanese_text(&consent.valid_from)),
            esc(&onshi_domain::date::japanese_text(&consent.valid_to)),
            esc(&consent.key)
        );
    }
    html.push_str("</table>");
    html
}

/// The consents patients gave this clinic on their own devices (online care) or at home in the
/// last 30 days, from the center: their keys are kept here for the 再照会.
async fn home_fetch(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let now = page.gateway.now();
    let mut kept = 0;
    for kind in [onshi_api::card::HomeCareKind::Online, onshi_api::card::HomeCareKind::Visit] {
        let request = onshi_api::card::HomeListRequest { kind, from: now.date().add_days(-30).yyyymmdd(), to: now.date().yyyymmdd() };
        match page.gateway.client.home_list(&request).await {
            Ok(list) => match crate::home::keep_keys(&page.gateway.store, &list, &now.to_string()) {
                Ok(n) => kept += n,
                Err(e) => return page.say(&browser, false, format!("同意を記録できませんでした: {e}")),
            },
            Err(onshi_api::client::ClientError::Refused { body, .. }) => return page.say(&browser, false, body.error.reception_ja),
            Err(e) => {
                return page.say(&browser, false, format!("センターに接続できません（{e}）。回線が戻ってからもう一度取得してください。"));
            }
        }
    }
    page.say(&browser, true, format!("在宅・オンライン診療の同意 {kept}件を取得しました。"))
}

async fn home_reverify(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let today = page.gateway.now().date().yyyymmdd();
    let key = field(&form, "key").unwrap_or_default();
    // Only a key this gateway holds: the page never sends one it was not given.
    let held = page.gateway.store.home_keys(&today).unwrap_or_default().into_iter().find(|(c, _, _)| c.key == key);
    let Some((_, name, _)) = held else {
        return page.say(
            &browser,
            false,
            "この再照会の同意は見つかりません（期間が終わったか、当院の同意ではありません）。マイナ保険証で確認してください。",
        );
    };
    let result = async {
        let checked = page.gateway.ask_home(&key, &name).await?;
        page.gateway.record(&checked, Source::Page, None, &[])?;
        crate::files::flush(&page.gateway.store)?;
        Ok::<_, GatewayError>(checked)
    }
    .await;
    match result {
        Ok(checked) => page.say_outcome(&browser, &checked.outcome),
        Err(e) => page.say(&browser, false, e.to_string()),
    }
}

/// This month's マイナ保険証 利用率 on MHLW's basis, against the 加算's threshold, with the days
/// behind it and how each case was counted (`crate::usage`), and a link to its printable report.
fn usage_section(gateway: &Gateway) -> String {
    let today = gateway.now().to_string();
    let month = &today[..6];
    format!(
        "<section id=\"usage\">{}<p><a href=\"/report/{month}\" id=\"usage-report\">今月の報告書（印刷・保存用）</a></p></section>",
        usage_html(gateway, month)
    )
}

/// The month `yyyymm`'s rate, days and counting rules.
fn usage_html(gateway: &Gateway, month: &str) -> String {
    let rows = gateway.store.checks_since(&format!("{month}01000000")).unwrap_or_default();
    let counted = crate::usage::counted(&rows);
    let usage = crate::usage::month_usage(month, &counted);
    let persons = crate::usage::persons_usage(month, &counted);
    let claims = gateway.store.claims_of(month).ok().flatten();
    let threshold = crate::usage::THRESHOLD_PERCENT;
    let mut html = format!("<h2>マイナ保険証利用率（{}年{}月）</h2>", &month[..4], month[4..].trim_start_matches('0'));
    let rate = |percent: Option<f64>| match percent {
        Some(p) => format!("<strong class=\"{}\">{p:.1} %</strong>", if p >= threshold { "ok" } else { "bad" }),
        None => "—".to_string(),
    };
    let verdict = if usage.meets_threshold() { "達成" } else { "未達" };
    let _ = write!(
        html,
        "<p id=\"usage-rate\">{}（マイナ保険証 {} 件／オンライン資格確認 {} 件）　加算の基準 {threshold:.0} %: {verdict}（厚生労働省の基準）</p>",
        rate(usage.percent()),
        usage.card_checks,
        usage.all_checks
    );
    html.push_str("<table id=\"usage-bases\"><tr><th>基準</th><th>利用率</th><th>分子</th><th>分母</th></tr>");
    let _ = write!(
        html,
        "<tr><td>件数（厚生労働省の基準）</td><td>{}</td><td>マイナ保険証での確認 {} 件</td><td>確認 {} 件</td></tr>",
        rate(usage.percent()),
        usage.card_checks,
        usage.all_checks
    );
    let _ = write!(
        html,
        "<tr><td>人数</td><td>{}</td><td>マイナ保険証を使った患者 {} 人</td><td>確認した患者 {} 人</td></tr>",
        rate(crate::usage::percent(u64::from(persons.card_persons), u64::from(persons.persons))),
        persons.card_persons,
        persons.persons
    );
    match &claims {
        Some((count, file, at)) => {
            let _ = write!(
                html,
                "<tr><td>レセプト件数</td><td>{}</td><td>マイナ保険証を使った患者 {} 人</td><td>レセプト {count} 件（{}、{}）</td></tr>",
                rate(crate::usage::percent(u64::from(persons.card_persons), *count)),
                persons.card_persons,
                esc(file),
                esc(&time_ja(at))
            );
        }
        None => html.push_str(
            "<tr><td>レセプト件数</td><td>—</td><td colspan=\"2\">この月の請求ファイルは未確認です（<code>onshi receipt check RECEIPTC.UKE --gateway gateway.toml</code> で表示されます）</td></tr>",
        ),
    }
    html.push_str("</table>");
    if usage.all_checks > 0 {
        let labels: Vec<String> = usage.days.iter().map(|(day, _, _)| day.to_string()).collect();
        let values: Vec<Vec<u64>> = usage.days.iter().map(|(_, card, all)| vec![u64::from(*card), u64::from(all - card)]).collect();
        html.push_str(&onshi_domain::chart::stacked_bars(
            "chart-usage-days",
            "日別の確認件数",
            &labels,
            &["マイナ保険証", "保険者番号等"],
            &values,
        ));
        html.push_str("<table id=\"usage-days\"><tr><th>日</th><th>マイナ保険証</th><th>照会</th></tr>");
        for (day, card, all) in &usage.days {
            let _ = write!(html, "<tr><td>{day}日</td><td>{card}</td><td>{all}</td></tr>");
        }
        html.push_str("</table>");
        html.push_str("<table id=\"usage-methods\"><tr><th>経路</th><th>件数</th></tr>");
        for (method, n) in crate::usage::by_method(month, &counted) {
            let _ = write!(html, "<tr><td>{}</td><td>{n}</td></tr>", method_ja(&method));
        }
        html.push_str("</table>");
        let reverified: Vec<&CheckRow> =
            rows.iter().filter(|r| r.at.starts_with(month) && r.requeued.as_ref().is_some_and(|q| q.done)).collect();
        let changed = reverified.iter().filter(|r| r.requeued.as_ref().is_some_and(|q| !q.changes.is_empty())).count();
        let _ = write!(
            html,
            "<p id=\"usage-reverified\">回線不通中の確認の再照会: {} 件（うち答えが変わったもの {changed} 件）</p>",
            reverified.len()
        );
        if changed > 0 {
            html.push_str("<table id=\"usage-changes\"><tr><th>確認した時刻</th><th>照会</th><th>再照会で変わったこと</th></tr>");
            for row in reverified.iter().filter(|r| r.requeued.as_ref().is_some_and(|q| !q.changes.is_empty())) {
                let changes = row.requeued.as_ref().map(|q| q.changes.join("、")).unwrap_or_default();
                let _ =
                    write!(html, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&time_ja(&row.at)), esc(&row.subject), esc(&changes));
            }
            html.push_str("</table>");
        }
    } else {
        html.push_str("<p>この月の照会はありません（記録は設定の keep_days 日分です）。</p>");
    }
    html.push_str(
        "<p class=\"note\">数え方: 厚生労働省の基準（マイナ保険証での確認 ÷ オンライン資格確認の全件）。暗証番号・顔認証・目視確認（カード提示）はマイナ保険証として数えます。\
         回線不通中の確認は行った時に1件（後の再照会は数えません）。センターが断った確認も1件。一括照会は数えません。\
         人数の基準は同じ患者（保険者番号・記号・番号・枝番）を1人と数え、一度でもマイナ保険証を使えば利用者です。\
         レセプト件数の基準の分母は、請求ファイルのこの診療年月のレセプトの件数です。</p>",
    );
    html
}

/// The printable monthly report of `/report/YYYYMM` (print or save it as PDF from the browser).
async fn report(State(page): State<Arc<Page>>, axum::extract::Path(month): axum::extract::Path<String>) -> Response {
    let valid =
        month.len() == 6 && month.bytes().all(|b| b.is_ascii_digit()) && month[4..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    if !valid {
        return (StatusCode::NOT_FOUND, Html("<p>月は /report/202612 のように年4桁と月2桁で指定してください。</p>")).into_response();
    }
    let code = esc(&page.gateway.config.institution_code);
    let printed = time_ja(&page.gateway.now().to_string());
    Html(format!(
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>マイナ保険証利用率 {month} — onshi</title>\
         <style>{STYLE}@media print{{a{{display:none}}}}</style></head><body>\
         <h1>マイナ保険証利用率の報告（医療機関コード {code}）</h1>{}<p>作成: {printed}（onshi ゲートウェイの記録から）</p>\
         <p><a href=\"/\">受付画面へ戻る</a></p></body></html>",
        usage_html(&page.gateway, &month)
    ))
    .into_response()
}

/// A small JSON status for scripts and `onshi doctor`.
async fn status(State(page): State<Arc<Page>>) -> Response {
    let line = page.gateway.line();
    let waiting = page.gateway.store.waiting().map(|w| w.len()).unwrap_or(0);
    Json(serde_json::json!({ "line_up": line.up, "since": line.since, "waiting": waiting })).into_response()
}

/// The gateway's figures in Prometheus text (counts only, no personal data), for this PC and
/// the PCs the page allows.
async fn metrics(State(page): State<Arc<Page>>) -> Response {
    let waiting = page.gateway.store.waiting().map(|w| w.len()).unwrap_or(0);
    let text = page.gateway.metrics.render(waiting, page.gateway.line().up);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn card_files(gateway: &Gateway) -> Vec<String> {
    card_files_in(gateway.config.card_folder.as_deref())
}

/// The card files (`*.json`) in the simulator's card folder, by name.
pub(crate) fn card_files_in(dir: Option<&std::path::Path>) -> Vec<String> {
    let Some(dir) = dir else { return Vec::new() };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The consent screens, as the patient answered them.
const CONSENT_FIELDS: &str = "<fieldset><legend>同意（患者さんが選んだもの）</legend>\
     <label><input type=\"checkbox\" name=\"drug\" value=\"1\">薬剤情報</label>\
     <label><input type=\"checkbox\" name=\"checkup\" value=\"1\">特定健診</label>\
     <label><input type=\"checkbox\" name=\"diagnosis\" value=\"1\">診療・手術</label>\
     <label><input type=\"checkbox\" name=\"limit\" value=\"1\">限度額情報</label>\
     <label><input type=\"checkbox\" name=\"specific_disease\" value=\"1\">特定疾病</label>\
     <label><input type=\"checkbox\" name=\"subsidy\" value=\"1\">医療費助成の受給者証を利用する</label>\
     <label>在宅・オンライン診療の同意 <select name=\"home_kind\" id=\"home-kind\"><option value=\"\">—</option>\
     <option value=\"visit\">訪問診療</option><option value=\"online\">オンライン診療</option></select></label>\
     <label>同意の最終日 <input type=\"text\" name=\"home_until\" id=\"home-until\" placeholder=\"20270331\" maxlength=\"8\"></label></fieldset>";

const VISUAL_FORM: &str = "<h2>目視確認</h2><p>顔認証・暗証番号ができないとき、回線が不通のときは、職員が券面の写真で本人確認します。施設パスワードで目視モードにします（記録され、この患者さんの確認が終わると自動で戻ります）。</p>\
     <form method=\"post\" action=\"/visual\" id=\"visual-form\"><label>施設パスワード <input type=\"password\" name=\"facility_password\" id=\"facility-password\"></label>\
     <button id=\"visual\">目視で本人確認した</button></form>";

/// The card path with a PC/SC reader at this PC: the patient places the card (or holds the
/// phone to the reader) and enters the PIN; no simulator controls.
fn pcsc_forms() -> String {
    let mut html = String::from(
        "<p id=\"reader-help\">カード（またはスマートフォン）をカードリーダーに置いてください。置いたまま、患者さんが暗証番号を入力します。iPhone は本人が画面で Face ID / Touch ID を確認します。</p>",
    );
    html.push_str(&verify_forms(
        "<option value=\"pin\">暗証番号（カード・Android）</option><option value=\"phone\">iPhone（本人が端末で確認）</option>",
    ));
    html
}

/// The check at the reader (methods offered as `options`), visual mode, and the number form.
fn verify_forms(options: &str) -> String {
    let mut html = format!(
        "<form method=\"post\" action=\"/reader/verify\" id=\"verify-form\"><label>方法 <select name=\"method\" id=\"method\">{options}</select></label>\
         <label>暗証番号 <input type=\"password\" name=\"pin\" id=\"pin\" inputmode=\"numeric\" maxlength=\"4\" autocomplete=\"off\"></label>"
    );
    html.push_str(CONSENT_FIELDS);
    html.push_str("<button id=\"verify\">資格確認</button>");
    // 初回登録 with the same method and PIN; the consents above are not part of it.
    html.push_str("<button id=\"link\" formaction=\"/reader/link\">利用登録（初回のみ）</button></form>");
    html.push_str(VISUAL_FORM);
    html.push_str(&number_form());
    html
}

fn forms(gateway: &Gateway) -> String {
    let mut html = String::new();
    html.push_str("<h2>マイナ保険証（カードリーダー）</h2>");
    if gateway.config.reader_pcsc.is_some() {
        html.push_str(&pcsc_forms());
        return html;
    }
    if !gateway.config.reader_simulator {
        html.push_str(
            "<p class=\"warn\" id=\"no-reader\">カードリーダーのドライバーが設定されていないため、この画面ではマイナ保険証を読み取れません（顔認証・暗証番号・目視確認）。\
             保険証・資格確認書での照会（下）、レセコンの照会ファイル、一括照会、回線が戻ったときの再照会は、これまでどおり使えます。</p>",
        );
        html.push_str(&number_form());
        return html;
    }
    let cards = card_files(gateway);
    if !cards.is_empty() {
        html.push_str("<form method=\"post\" action=\"/reader/place\"><label>カード <select name=\"card\" id=\"card\">");
        for card in &cards {
            let _ = write!(html, "<option value=\"{0}\">{0}</option>", esc(card));
        }
        html.push_str("</select></label><button id=\"place\">カードを置く</button></form>");
    }
    html.push_str(
        "<form method=\"post\" action=\"/reader/camera\"><label><input type=\"radio\" name=\"who\" value=\"holder\" checked>本人</label>\
         <label><input type=\"radio\" name=\"who\" value=\"stranger\">別人</label><button>カメラの前の人</button></form>\
         <form method=\"post\" action=\"/reader/remove\"><button id=\"remove\">カードを取る</button></form><br>",
    );
    html.push_str(&verify_forms("<option value=\"face\">顔認証</option><option value=\"pin\">暗証番号</option>"));
    html
}

fn number_form() -> String {
    String::from(
        "<h2>保険証・資格確認書で照会</h2><form method=\"post\" action=\"/check\" id=\"number-form\">\
         <label>保険者番号 <input type=\"text\" name=\"insurer_number\" id=\"insurer\" required></label>\
         <label>記号 <input type=\"text\" name=\"symbol\" id=\"symbol\"></label>\
         <label>番号 <input type=\"text\" name=\"number\" id=\"number\" required></label>\
         <label>枝番 <input type=\"text\" name=\"branch\" id=\"branch\" maxlength=\"2\"></label>\
         <label>生年月日 <input type=\"text\" name=\"birth_date\" id=\"birth\" placeholder=\"19800101\" required></label>\
         <label>提示された書類 <select name=\"document\" id=\"document\"><option value=\"\">—</option>\
         <option value=\"qualification_certificate\">資格確認書</option><option value=\"qualification_notice\">資格情報のお知らせ</option>\
         <option value=\"insurance_card\">健康保険証（旧）</option></select></label>\
         <label><input type=\"checkbox\" name=\"limit_consent\" value=\"1\">限度額情報の提供に口頭で同意</label>\
         <button id=\"check\">照会</button></form>",
    ) + SUBSIDY_FORM
}

/// 受給者証 (公費・医療費助成) asked by the numbers printed on it, as staff do when the patient
/// shows the paper certificate (or did not say yes at the reader).
const SUBSIDY_FORM: &str = "<h2>受給者証（公費・医療費助成）で照会</h2><form method=\"post\" action=\"/subsidy\" id=\"subsidy-form\">\
     <label>公費負担者番号 <input type=\"text\" name=\"payer_number\" id=\"payer\" maxlength=\"8\" required></label>\
     <label>受給者番号 <input type=\"text\" name=\"recipient_number\" id=\"recipient\" maxlength=\"7\" required></label>\
     <label>生年月日 <input type=\"text\" name=\"birth_date\" id=\"subsidy-birth\" placeholder=\"19800101\" required></label>\
     <button id=\"check-subsidy\">受給者証を照会</button></form>\
     <h2>医療扶助（生活保護）</h2><form method=\"post\" action=\"/welfare\" id=\"welfare-form\">\
     <label>診療年月 <input type=\"text\" name=\"month\" id=\"welfare-month\" placeholder=\"202612\" maxlength=\"6\"></label>\
     <button id=\"check-welfare\">当院あての医療券を照会</button></form>";

/// 医療扶助: this clinic's recipients of a month (this month when none is typed), as the
/// welfare offices registered them; a recipient without a ticket yet is named so that staff
/// call the office before the visit, not after the claim bounces.
async fn check_welfare(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let today = page.gateway.now().date();
    let month = field(&form, "month").unwrap_or_else(|| format!("{:04}{:02}", today.year(), today.month()));
    let request = onshi_api::subsidy::WelfareMonthRequest {
        institution_code: Some(page.gateway.config.institution_code.as_str().to_string()),
        month: month.clone(),
    };
    match page.gateway.client.welfare_month(&request).await {
        Ok(answer) => {
            let ticketed: Vec<&onshi_api::subsidy::WelfareRecipient> =
                answer.recipients.iter().filter(|r| r.validity.code == "1").collect();
            let waiting: Vec<&onshi_api::subsidy::WelfareRecipient> = answer.recipients.iter().filter(|r| r.validity.code != "1").collect();
            let who = |r: &onshi_api::subsidy::WelfareRecipient| {
                format!("{}（受給者番号 {}、{}）", r.name.as_deref().unwrap_or("氏名未登録"), r.recipient_number, r.office_name)
            };
            let mut text = format!("{month} の医療扶助: 医療券あり {}名", ticketed.len());
            for r in &ticketed {
                let issued: Vec<&str> = r.tickets.iter().map(|t| t.issue_number.as_str()).collect();
                text.push_str(&format!("。{} 交付番号 {}", who(r), issued.join("・")));
            }
            if !waiting.is_empty() {
                text.push_str(&format!(
                    "。有効（未登録）{}名: 医療券がまだ登録されていません。受診前に福祉事務所に連絡してください",
                    waiting.len()
                ));
                for r in &waiting {
                    text.push_str(&format!("。{}", who(r)));
                }
            }
            page.say_as(&browser, if waiting.is_empty() { "ok" } else { "warn" }, text)
        }
        Err(onshi_api::client::ClientError::Refused { body, .. }) => page.say(&browser, false, body.error.reception_ja),
        Err(e) => page.say(&browser, false, format!("センターに接続できません（{e}）。紙の医療券で確認して受け付けてください。")),
    }
}

async fn check_subsidy(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let request = onshi_api::subsidy::VerifySubsidyRequest {
        institution_code: Some(page.gateway.config.institution_code.as_str().to_string()),
        payer_number: field(&form, "payer_number").unwrap_or_default(),
        recipient_number: field(&form, "recipient_number").unwrap_or_default(),
        birth_date: field(&form, "birth_date").unwrap_or_default(),
        date_of_care: page.gateway.now().date().yyyymmdd(),
    };
    match page.gateway.client.verify_subsidy(&request).await {
        Ok(answer) => {
            let class = match answer.state.as_str() {
                onshi_api::subsidy::state::VALID if answer.subsidy.as_ref().is_some_and(|s| s.designated != Some(false)) => "ok",
                onshi_api::subsidy::state::PAYER_NOT_CONNECTED => "warn",
                _ => "bad",
            };
            let shown = answer.subsidy.as_ref().map(crate::check::subsidy_sentence).unwrap_or_default();
            page.say_as(&browser, class, format!("{}{shown}", answer.reception_ja))
        }
        Err(onshi_api::client::ClientError::Refused { body, .. }) => page.say(&browser, false, body.error.reception_ja),
        Err(e) => page.say(
            &browser,
            false,
            format!("センターに接続できません（{e}）。紙の受給者証の有効期間・自己負担上限額を確認して受け付けてください。"),
        ),
    }
}

/// Which link the background diagnosis found broken while the line is down.
fn diagnosis_section(gateway: &Gateway) -> String {
    let Some(diagnosis) = gateway.diagnosis() else { return String::new() };
    let at = esc(&time_ja(&diagnosis.at));
    match diagnosis.broken {
        Some((link, detail, action)) => format!(
            "<p class=\"bad\" id=\"diagnosis\">故障箇所: {}（{at} に自動診断）: {}<br>対処: {}</p>",
            esc(link),
            esc(&detail),
            esc(&action)
        ),
        None => format!(
            "<p id=\"diagnosis\">自動診断（{at}）: 証明書・名前解決・接続・暗号化通信・センターの応答に異常は見つかりません。センター側の一時的な停止と考えられます。</p>"
        ),
    }
}

async fn render_live(gateway: &Gateway) -> String {
    let mut html = String::with_capacity(8 * 1024);
    let line = gateway.line();
    match line.up {
        Some(false) => {
            let _ = write!(
                html,
                "<p class=\"line bad\" id=\"line\">回線: 不通（{} から）。照会は控えと目視で続けられます。回線が戻ると自動で再照会します。</p>",
                esc(&line.since.as_deref().map(time_ja).unwrap_or_default())
            );
            html.push_str(&diagnosis_section(gateway));
        }
        Some(true) => html.push_str("<p class=\"line ok\" id=\"line\">回線: 正常</p>"),
        None => html.push_str("<p class=\"line\" id=\"line\">回線: まだ照会していません</p>"),
    }
    {
        let mut reader = gateway.reader.lock().await;
        let card = match reader.view() {
            ReaderView::NotConfigured => "ドライバー未設定".to_string(),
            ReaderView::Unavailable(problem) => format!("使えません（{}）", esc(&problem)),
            // A real reader waits for the patient; the simulator for staff to place a file.
            ReaderView::Empty if reader.is_pcsc() => "カードを置いてください".to_string(),
            ReaderView::Empty => "カードなし".to_string(),
            ReaderView::CardPresent { serial } if serial.is_empty() => {
                "カードあり（スマートフォン: 暗証番号の入力後に読み取ります）".to_string()
            }
            ReaderView::CardPresent { serial } => format!("カードあり（証明書 {}）", esc(&serial)),
        };
        let pin = reader.pin_retries_left().map(|n| format!("・暗証番号 残り{n}回")).unwrap_or_default();
        let visual = if reader.visual_mode() { "・目視モード" } else { "" };
        let _ = write!(html, "<p id=\"reader\">カードリーダー: {card}{pin}{visual}</p>");
    }
    let today = onshi_domain::date::Timestamp::at_start_of(gateway.now().date()).to_string();
    let checks = gateway.store.checks_since(&today).unwrap_or_default();
    html.push_str(&queue_section(&checks));
    html.push_str(&changes_section(gateway, &checks, &today));
    html.push_str(&checks_section(&checks));
    html
}

fn queue_section(checks: &[CheckRow]) -> String {
    let waiting: Vec<&CheckRow> = checks.iter().filter(|c| c.requeued.as_ref().is_some_and(|q| !q.done)).collect();
    let mut html = format!("<h2>回線待ちの照会（{}件）</h2>", waiting.len());
    if waiting.is_empty() {
        html.push_str("<p id=\"queue-empty\">ありません。</p>");
        return html;
    }
    html.push_str("<table id=\"queue\"><tr><th>受付</th><th>方法</th><th>照会内容</th><th>受付時の扱い</th></tr>");
    for c in waiting {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&time_ja(&c.at)),
            method_ja(&c.method),
            esc(&c.subject),
            esc(&c.outcome.summary_ja())
        );
    }
    html.push_str("</table>");
    html
}

fn changes_section(gateway: &Gateway, checks: &[CheckRow], today: &str) -> String {
    let mut rows = String::new();
    for c in checks {
        if !c.changes.is_empty() {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>一括照会から: {}</td></tr>",
                esc(&time_ja(&c.at)),
                esc(&who(c)),
                esc(&c.changes.join("、"))
            );
        }
        if let Some(q) = &c.requeued
            && q.done
            && !q.changes.is_empty()
        {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>再照会で判明: {}</td></tr>",
                esc(&time_ja(&c.at)),
                esc(&who(c)),
                esc(&q.changes.join("、"))
            );
        }
    }
    // Batches made since yesterday: what changed since the batch before them.
    let yesterday = onshi_domain::date::Timestamp::from_jst_seconds(
        onshi_domain::date::Timestamp::parse(today).map(|t| t.jst_seconds()).unwrap_or(0) - 86_400,
    )
    .to_string();
    for (at, label, changes) in gateway.store.batch_changes_since(&yesterday).unwrap_or_default() {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>一括照会で: {}</td></tr>",
            esc(&time_ja(&at)),
            esc(&label),
            esc(&changes.join("、"))
        );
    }
    if rows.is_empty() {
        return "<h2>変更のあった患者さん</h2><p id=\"changes-empty\">ありません。</p>".into();
    }
    format!("<h2>変更のあった患者さん</h2><table id=\"changes\"><tr><th>時刻</th><th>患者さん</th><th>変更</th></tr>{rows}</table>")
}

fn who(c: &CheckRow) -> String {
    let answer = c.requeued.as_ref().and_then(|q| q.outcome.as_ref()).and_then(Outcome::answer).or_else(|| c.outcome.answer());
    answer.and_then(|a| a.coverage.as_ref()).map(|cov| cov.name.clone()).unwrap_or_else(|| c.subject.clone())
}

fn method_ja(method: &str) -> &'static str {
    match method {
        "home" => "在宅・オンライン（再照会）",
        "pin" => "マイナ保険証（暗証番号）",
        "face" => "マイナ保険証（顔認証）",
        "visual" => "マイナ保険証（目視）",
        _ => "保険証・資格確認書",
    }
}

fn source_ja(source: Source) -> &'static str {
    match source {
        Source::File => "レセコン",
        Source::Page => "受付画面",
        Source::Reader => "カードリーダー",
    }
}

/// The class and the action for reception for an outcome.
fn action(outcome: &Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Answered { answer, .. } => match answer.headline_validity().code.as_str() {
            "1" if answer.covered_by_welfare() => ("ok", "医療扶助で受け付けてください（医療券の内容を確認してください）。"),
            "1" => ("ok", "受付を続けてください。"),
            "6" if answer.welfare.as_ref().is_some_and(|w| !w.designated) => (
                "warn",
                "医療扶助の受給者ですが、当院は福祉事務所の指定先ではありません。受診の前に福祉事務所へ連絡し、医療券の発行を依頼してください。",
            ),
            "6" => (
                "warn",
                "医療扶助の受給者です。当院宛ての今月の医療券がまだ登録されていません。福祉事務所に確認して受け付けてください（10割負担にはしません）。",
            ),
            "3" => ("warn", "新しい資格で受け付けてください（振替）。"),
            "4" => (
                "warn",
                "保険者の登録遅れの場合があります。保険証・資格確認書を確認し、確認できれば受付を続けてください。確認できないときは下の「資格が確認できないとき」の順に進めてください（10割負担にはしません）。",
            ),
            "5" => ("warn", "枝番を確認して照会し直してください。"),
            _ => ("bad", "資格が無効です。新しい保険証・資格確認書をお持ちでないか確認してください。"),
        },
        Outcome::Refused { .. } => ("bad", "入力内容・カードを確認してください。"),
        Outcome::Cached { .. } => ("warn", "控えで受け付けました。再照会の結果が変わればここに表示します。"),
        Outcome::Queued { .. } => ("warn", "目視で確認して受け付けてください。回線が戻ると自動で再照会します。"),
    }
}

fn checks_section(checks: &[CheckRow]) -> String {
    let mut html = format!("<h2>本日の照会（{}件）</h2>", checks.len());
    if checks.is_empty() {
        html.push_str("<p id=\"checks-empty\">まだありません。</p>");
        return html;
    }
    html.push_str("<table id=\"checks\"><tr><th>時刻</th><th>経路</th><th>方法</th><th>患者さん</th><th>結果</th><th>対応</th></tr>");
    for c in checks {
        let (class, todo) = action(&c.outcome);
        let mut result = esc(&c.outcome.summary_ja());
        if let Some(q) = &c.requeued {
            match (&q.done, &q.outcome) {
                (true, Some(outcome)) => {
                    let _ = write!(result, "<br><span class=\"{}\">再照会済み: {}</span>", action(outcome).0, esc(&outcome.summary_ja()));
                    if !q.changes.is_empty() {
                        let _ = write!(result, "<br><span class=\"bad\">変更あり: {}</span>", esc(&q.changes.join("、")));
                    }
                }
                _ => result.push_str("<br><span class=\"warn\">回線待ち</span>"),
            }
        }
        if !c.changes.is_empty() {
            let _ = write!(result, "<br><span class=\"bad\">一括照会から変更: {}</span>", esc(&c.changes.join("、")));
        }
        let _ = write!(
            html,
            "<tr class=\"check\"><td>{}</td><td>{}</td><td>{}</td><td>{}<br><small>{}</small></td><td class=\"{class}\">{result}</td><td>{}</td></tr>",
            esc(&time_ja(&c.at)),
            source_ja(c.source),
            method_ja(&c.method),
            esc(&who(c)),
            esc(&c.subject),
            todo
        );
    }
    html.push_str("</table>");
    html
}

/// When the line cannot confirm a patient: MHLW's chain, the 被保険者資格申立書 form, and the
/// declarations of today with what the patient pays and the 摘要 to bill with
/// (`crate::declaration`).
fn declaration_section(gateway: &Gateway) -> String {
    let mut html = String::from(
        "<h2 id=\"unconfirmed\">資格が確認できないとき</h2><ol id=\"chain\">\
         <li>今の保険証・資格確認書（または資格情報のお知らせ）の番号で照会する（上）。</li>\
         <li>確認できなければ、以前の保険の番号で照会し、有効ならその保険で請求する。</li>\
         <li>それでも確認できなければ、患者さんに被保険者資格申立書を書いてもらい、下に記録する。\
         窓口負担は通常の割合で受け付け、<strong>10割（全額）にはしません</strong>。レセプトは不詳（保険者番号 77777777）で請求し、\
         レセプト点検（onshi receipt check）が毎月センターに照会し直して、登録されれば振替にします。</li></ol>\
         <form method=\"post\" action=\"/declaration\" id=\"declaration-form\">\
         <label>カナ氏名 <input type=\"text\" name=\"name_kana\" id=\"decl-kana\" required></label>\
         <label>生年月日 <input type=\"text\" name=\"birth_date\" id=\"decl-birth\" placeholder=\"19800101\" required></label>\
         <label>性別 <select name=\"sex\" id=\"decl-sex\"><option value=\"1\">男</option><option value=\"2\">女</option></select></label>\
         <label>保険の種類 <select name=\"kind\" id=\"decl-kind\">",
    );
    for (key, ja) in crate::declaration::KINDS {
        let _ = write!(html, "<option value=\"{key}\">{ja}</option>");
    }
    html.push_str(
        "</select></label><label>事業所名 <input type=\"text\" name=\"employer\" id=\"decl-employer\"></label>\
         <label>住所 <input type=\"text\" name=\"address\" id=\"decl-address\"></label>\
         <label>連絡先 <input type=\"text\" name=\"contact\" id=\"decl-contact\"></label>\
         <button id=\"declare\">申立書を記録</button></form>",
    );
    let today = gateway.now().date();
    let since = onshi_domain::date::Timestamp::at_start_of(today).to_string();
    let declarations = gateway.store.declarations_since(&since).unwrap_or_default();
    if declarations.is_empty() {
        return html;
    }
    html.push_str("<table id=\"declarations\"><tr><th>時刻</th><th>申立書</th><th>窓口負担</th><th>摘要（レセプトに記載）</th></tr>");
    for (at, d) in &declarations {
        let _ = write!(
            html,
            "<tr class=\"declaration\"><td>{}</td><td>{}（{}生・{}）</td><td class=\"share\">{}割</td><td class=\"note\">{}</td></tr>",
            esc(&time_ja(at)),
            esc(&d.name_kana),
            esc(&d.birth_date.japanese()),
            esc(crate::declaration::kind_ja(&d.kind)),
            crate::declaration::counter_share(d, today) / 10,
            esc(&crate::declaration::note(d))
        );
    }
    html.push_str("</table>");
    html
}

async fn record_declaration(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let text = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let now = page.gateway.now();
    let typed = crate::declaration::Typed {
        name_kana: text("name_kana"),
        birth_date: text("birth_date"),
        sex: text("sex"),
        kind: text("kind"),
        employer: text("employer"),
        address: text("address"),
        contact: text("contact"),
    };
    let checked = crate::declaration::check(typed, now.date());
    let declaration = match checked {
        Ok(declaration) => declaration,
        Err(problem) => return page.say(&browser, false, problem.to_string()),
    };
    if let Err(e) = page.gateway.store.record_declaration(&now.to_string(), &declaration) {
        return page.say(&browser, false, format!("申立書を記録できませんでした: {e}"));
    }
    page.say_as(&browser, "warn", format!("被保険者資格申立書を記録しました。{}", crate::declaration::counter_ja(&declaration, now.date())))
}

fn checked(form: &HashMap<String, String>, name: &str) -> bool {
    form.get(name).is_some_and(|v| !v.is_empty() && v != "0")
}

fn field(form: &HashMap<String, String>, name: &str) -> Option<String> {
    form.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

async fn check_number(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let (Some(insurer_number), Some(number), Some(birth_date)) =
        (field(&form, "insurer_number"), field(&form, "number"), field(&form, "birth_date"))
    else {
        return page.say(&browser, false, "保険者番号・番号・生年月日を入力してください。");
    };
    // Refused before anything is asked or recorded: a My Number is never sent or kept.
    if crate::request::holding_my_number(&[("number", Some(&number)), ("symbol", field(&form, "symbol").as_deref())]).is_some() {
        return page.say(
            &browser,
            false,
            "マイナンバー（個人番号）が入力されたようです。保険証・資格確認書の記号・番号を入力してください（マイナンバーは受け付けず、記録もしません）。",
        );
    }
    let request = VerifyNumberRequest {
        institution_code: None,
        insurer_number,
        symbol: field(&form, "symbol"),
        number,
        branch: field(&form, "branch"),
        birth_date,
        date_of_care: None,
        limit_consent: checked(&form, "limit_consent"),
        reverification: false,
        document: field(&form, "document"),
    };
    let result = async {
        let checked = page.gateway.ask_number(&request, None).await?;
        page.gateway.record(&checked, Source::Page, None, &[])?;
        Ok::<_, GatewayError>(checked)
    }
    .await;
    match result {
        Ok(checked) => page.say_outcome(&browser, &checked.outcome),
        Err(e) => page.say(&browser, false, format!("照会を記録できませんでした: {e}")),
    }
}

async fn place_card(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let (Some(dir), Some(card)) = (&page.gateway.config.card_folder, field(&form, "card")) else {
        return page.say(&browser, false, "カードを選んでください。");
    };
    // Only a file name from the card folder, never a path.
    if card.contains(['/', '\\']) || card.starts_with('.') {
        return page.say(&browser, false, "カードの名前が正しくありません。");
    }
    let placed = page.gateway.reader.lock().await.simulator().map(|simulator| simulator.place_card(&dir.join(&card)));
    match placed {
        Some(Ok(())) => page.say(&browser, true, "カードを置きました。"),
        Some(Err(e)) => page.say(&browser, false, format!("カードを読めませんでした: {e}")),
        None => no_simulator().await,
    }
}

async fn remove_card(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    if let Some(simulator) = page.gateway.reader.lock().await.simulator() {
        simulator.remove_card();
    }
    page.say(&browser, true, "カードを取りました。")
}

async fn camera(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let face = if field(&form, "who").as_deref() == Some("stranger") { Face::Stranger } else { Face::Holder };
    if let Some(simulator) = page.gateway.reader.lock().await.simulator() {
        simulator.present_face(face);
    }
    page.say(&browser, true, if face == Face::Holder { "カメラの前: 本人" } else { "カメラの前: 別人" })
}

fn consent_of(form: &HashMap<String, String>) -> ConsentChoice {
    ConsentChoice {
        drug: checked(form, "drug"),
        checkup: checked(form, "checkup"),
        diagnosis: checked(form, "diagnosis"),
        limit: checked(form, "limit"),
        specific_disease: checked(form, "specific_disease"),
        subsidy: checked(form, "subsidy"),
        // 居宅同意取得型: the kind and the last day of the ongoing care, both or neither (a
        // last day that is not a number reaches the center as 0 and is refused there, named).
        home: match field(form, "home_kind").as_deref() {
            Some(kind @ ("visit" | "online")) => Some(onshi_api::card::HomeCare {
                kind: if kind == "visit" { onshi_api::card::HomeCareKind::Visit } else { onshi_api::card::HomeCareKind::Online },
                until: field(form, "home_until").and_then(|t| t.parse().ok()).unwrap_or(0),
            }),
            _ => None,
        },
    }
}

async fn verify_card(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let (browser, how) = match reader_form(&page, &headers, &form) {
        Ok(checked) => checked,
        Err(response) => return *response,
    };
    card_check(&page, &browser, how, consent_of(&form)).await
}

/// A reader form's request: refused unless from this page, then the browser and how the
/// patient proves the card (or the message asking for what is missing).
fn reader_form(page: &Page, headers: &HeaderMap, form: &HashMap<String, String>) -> Result<(Browser, CardHow), Box<Response>> {
    if !same_origin(headers) {
        return Err(Box::new(forbidden()));
    }
    let browser = Browser::of(headers);
    match card_how(form) {
        Ok(how) => Ok((browser, how)),
        Err(message) => Err(Box::new(page.say(&browser, false, message))),
    }
}

/// How the patient proves the card at the reader, as the form says.
fn card_how(form: &HashMap<String, String>) -> Result<CardHow, &'static str> {
    Ok(match field(form, "method").as_deref() {
        Some("pin") => CardHow::Pin(field(form, "pin").ok_or("暗証番号を入力してください。")?),
        Some("phone") => CardHow::Phone,
        _ => CardHow::Face,
    })
}

/// 初回登録 at the counter, for a card that answered 利用登録されていません.
async fn link_card(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let (browser, how) = match reader_form(&page, &headers, &form) {
        Ok(checked) => checked,
        Err(response) => return *response,
    };
    match page.gateway.link_card(how).await {
        Ok(message) => page.say(&browser, true, message),
        Err(e) => page.say(&browser, false, e.to_string()),
    }
}

async fn visual_check(State(page): State<Arc<Page>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let browser = Browser::of(&headers);
    let password = field(&form, "facility_password").unwrap_or_default();
    if let Err(e) = page.gateway.reader.lock().await.enable_visual_mode(&password) {
        tracing::info!(error = %e, "visual mode refused");
        return page.say(&browser, false, "施設パスワードが違います。目視モードにできません。");
    }
    // Recorded: who may switch it on is whoever knows the facility password; it ends with
    // this check by itself.
    tracing::info!("visual mode switched on with the facility password for one check");
    card_check(&page, &browser, CardHow::Visual, consent_of(&form)).await
}

async fn card_check(page: &Page, browser: &Browser, how: CardHow, consent: ConsentChoice) -> Response {
    let result = async {
        let checked = page.gateway.ask_card(how, consent).await?;
        let face = crate::files::face_file(&page.gateway, &checked.outcome, &checked.changes, "一括照会");
        page.gateway.record(&checked, Source::Reader, None, &[face])?;
        crate::files::flush(&page.gateway.store)?;
        Ok::<_, GatewayError>(checked)
    }
    .await;
    match result {
        Ok(checked) => page.say_outcome(browser, &checked.outcome),
        Err(e) => page.say(browser, false, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wait_for_their_own_browser_and_their_number_is_bounded() {
        let mut flashes = Flashes::default();
        flashes.put("a", "ok", "A's result".into());
        assert_eq!(flashes.take("b"), None);
        assert_eq!(flashes.take("a"), Some(("ok", "A's result".to_string())));
        assert_eq!(flashes.take("a"), None, "shown once");
        for n in 0..FLASH_PENDING_MAX + 10 {
            flashes.put(&format!("browser-{n}"), "ok", format!("{n}"));
        }
        flashes.put("browser-20", "bad", "replaced".into());
        assert_eq!(flashes.by_browser.len(), FLASH_PENDING_MAX);
        assert_eq!(flashes.take("browser-0"), None, "the oldest was dropped");
        assert_eq!(flashes.take("browser-20"), Some(("bad", "replaced".to_string())));
        let last = format!("browser-{}", FLASH_PENDING_MAX + 9);
        assert!(flashes.take(&last).is_some());
    }

    #[test]
    fn a_browser_is_known_by_a_well_formed_cookie_and_otherwise_gets_a_new_one() {
        let mut headers = HeaderMap::new();
        let id = "0123456789abcdef0123456789ABCDEF";
        headers.insert(header::COOKIE, format!("other=1; {BROWSER_COOKIE}={id}").parse().unwrap());
        let known = Browser::of(&headers);
        assert_eq!((known.id.as_deref(), known.new), (Some(id.to_ascii_lowercase().as_str()), false));
        assert!(known.finish(Response::default()).headers().get(header::SET_COOKIE).is_none());
        headers.insert(header::COOKIE, format!("{BROWSER_COOKIE}=short").parse().unwrap());
        let fresh = Browser::of(&headers);
        assert!(fresh.new);
        let fresh_id = fresh.id.clone().unwrap();
        assert_eq!(fresh_id.len(), 32);
        assert_ne!(Browser::of(&HeaderMap::new()).id.unwrap(), fresh_id, "random per browser");
        let response = fresh.finish(Response::default());
        let cookie = response.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap();
        assert_eq!(cookie, format!("{BROWSER_COOKIE}={fresh_id}; Path=/; HttpOnly; SameSite=Strict"));
    }
}
