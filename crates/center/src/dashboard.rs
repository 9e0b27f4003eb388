//! The operator's dashboard (運用者ダッシュボード, issue 16 item 1): checks per day and month by
//! path, the マイナ保険証 利用率 nationally and per institution, consent rates per scope, refusals
//! by code, each insurer's registration lag (the seed's 該当資格なし complaint made visible),
//! and the wrong-link reports by review state. Charts are inline SVG drawn here; every table
//! has a CSV download.
//!
//! Every figure comes from the audit log's tallies (`onshi_store::audit::tally_kinds`: each
//! sealed entry counted once, by day, institution, kind and outcome), through [`Figures`], and
//! `/metrics` renders the same [`Figures`] (see [`metrics_text`]), so the page and the scrape
//! cannot disagree; `onshi audit verify` recounts the tallies from the sealed entries.
//!
//! Who may open it: an operator's certificate (`urn:onshi:operator:NAME`, which opens nothing
//! of the API), or a browser on the center's own machine (loopback). Institutions' and
//! insurers' certificates open the API, not this page: it names institutions and insurers.
//!
//! How each case is counted, where the sources leave it open (the page says so too):
//! - 利用率 on MHLW's basis: checks with the card (PIN, face, a visual check of the card) ÷
//!   all checks at the counter; batch checks (一括照会) are not checks at the counter;
//! - a check made while a gateway's line was down reaches the center only when the gateway
//!   asks again: it is counted once, then, on the path "再照会", and as a card use when it was
//!   a recorded visual check of the card;
//! - a refused check still counts (the patient was checked);
//! - a smartphone's マイナ保険証 is told from the card by its certificate (the card authority's
//!   feed binds it as issued from a card certificate), whatever the phone's own check (PIN on
//!   Android, Face ID on an iPhone).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use onshi_domain::chart;
use onshi_domain::markup::escape as esc;
use onshi_store::audit::Tally;
use onshi_store::model::{LAG_BUCKETS, LagMonth};

use crate::server::CenterState;

/// The paths a check takes, in the order the page lists them: (id, Japanese label).
pub const PATHS: [(&str, &str); 7] = [
    ("card_pin", "マイナ保険証（暗証番号）"),
    ("card_face", "マイナ保険証（顔認証）"),
    ("card_visual", "マイナ保険証（目視）"),
    ("smartphone", "スマートフォンのマイナ保険証"),
    ("number", "保険者番号等"),
    ("reverify", "再照会（回線復旧後）"),
    ("batch", "一括照会"),
];

/// The re-verification path's index in [`PATHS`].
const REVERIFY: usize = 5;
/// The batch path's index in [`PATHS`]: not a check at the counter.
const BATCH: usize = 6;

/// The consent scopes, as audited, with their Japanese names.
pub const SCOPES: [(&str, &str); 5] =
    [("drug", "薬剤情報"), ("checkup", "特定健診"), ("diagnosis", "診療・手術"), ("limit", "限度額情報"), ("specific_disease", "特定疾病")];

/// The 加算's threshold since FY2026.
pub const THRESHOLD_PERCENT: f64 = 30.0;

/// An insurer whose mean lag is above this many days is named as late.
pub const LATE_MEAN_DAYS: f64 = 14.0;

/// The path of a tally's kind, as an index into [`PATHS`]; `None` for what is not a check.
pub fn path_of(kind: &str) -> Option<usize> {
    match kind {
        "verify_card:pin" => Some(0),
        "verify_card:face" => Some(1),
        "verify_card:visual" => Some(2),
        "verify_card:smartphone" => Some(3),
        "verify_number" => Some(4),
        "reverify_number" => Some(REVERIFY),
        k if k.starts_with("reverify_card:") => Some(REVERIFY),
        "verify_number_batch" => Some(BATCH),
        _ => None,
    }
}

/// Whether a kind is a use of the card (the 利用率's numerator).
pub fn is_card_use(kind: &str) -> bool {
    kind.starts_with("verify_card:") || kind.starts_with("reverify_card:")
}

/// Whether an outcome code is an answer (a validity, `ok`, or what an action did, such as a
/// reader's `registered`) rather than a refusal: refusals carry the catalogue's stable codes,
/// which are upper case (`CARD_NOT_LINKED`); nothing else is.
pub fn is_answer(code: &str) -> bool {
    !code.bytes().any(|b| b.is_ascii_uppercase())
}

/// The figures of one month, from the tallies of that month (and of the months before it for
/// the trend).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// `YYYYMM`.
    pub month: u32,
    /// Day of the month → checks by path.
    pub days: BTreeMap<u32, [u64; PATHS.len()]>,
    /// `YYYYMM` → checks by path.
    pub months: BTreeMap<u32, [u64; PATHS.len()]>,
    /// `YYYYMM` → (card uses, checks at the counter).
    pub usage_by_month: BTreeMap<u32, (u64, u64)>,
    /// 医療機関コード → (card uses, checks at the counter), this month.
    pub institutions: BTreeMap<String, (u64, u64)>,
    /// Consents given with card checks this month, by scope ([`SCOPES`]).
    pub consents: [u64; SCOPES.len()],
    /// Card checks answered this month (the consent rates' denominator).
    pub card_answers: u64,
    /// Refusals this month by code.
    pub refusals: BTreeMap<String, u64>,
    /// 医療機関コード → checks re-verified after an outage this month (what the center sees of
    /// the gateways' outages).
    pub reverified: BTreeMap<String, u64>,
}

impl Figures {
    /// The figures of `month` (`YYYYMM`) from tallies covering it and any months before.
    pub fn from_tallies(tallies: &[Tally], month: u32) -> Figures {
        let mut figures = Figures { month, ..Figures::default() };
        for t in tallies {
            let t_month = t.day / 100;
            let this_month = t_month == month;
            if let Some(path) = path_of(&t.kind) {
                figures.months.entry(t_month).or_default()[path] += t.count;
                if path != BATCH {
                    let usage = figures.usage_by_month.entry(t_month).or_default();
                    usage.1 += t.count;
                    if is_card_use(&t.kind) {
                        usage.0 += t.count;
                    }
                }
                if this_month {
                    figures.days.entry(t.day % 100).or_default()[path] += t.count;
                    if path == REVERIFY {
                        *figures.reverified.entry(t.actor.clone()).or_default() += t.count;
                    }
                    if path != BATCH {
                        let institution = figures.institutions.entry(t.actor.clone()).or_default();
                        institution.1 += t.count;
                        if is_card_use(&t.kind) {
                            institution.0 += t.count;
                        }
                    }
                    if is_card_use(&t.kind) && is_answer(&t.code) {
                        figures.card_answers += t.count;
                    }
                }
            }
            if !this_month {
                continue;
            }
            if let Some(scope) = t.kind.strip_prefix("consent:")
                && let Some(index) = SCOPES.iter().position(|(s, _)| *s == scope)
            {
                figures.consents[index] += t.count;
            } else if !is_answer(&t.code) {
                *figures.refusals.entry(t.code.clone()).or_default() += t.count;
            }
        }
        figures
    }

    /// This month's checks by path.
    pub fn month_checks(&self) -> [u64; PATHS.len()] {
        self.months.get(&self.month).copied().unwrap_or_default()
    }

    /// This month's (card uses, checks at the counter).
    pub fn month_usage(&self) -> (u64, u64) {
        self.usage_by_month.get(&self.month).copied().unwrap_or_default()
    }
}

/// Card uses ÷ checks in percent; `None` without checks.
pub fn percent((card, all): (u64, u64)) -> Option<f64> {
    (all > 0).then(|| card as f64 * 100.0 / all as f64)
}

/// The months of a year up to `month`, oldest first (the trend's range).
pub fn year_up_to(month: u32) -> Vec<u32> {
    let (mut year, mut m) = (month / 100, month % 100);
    let mut months = Vec::with_capacity(12);
    for _ in 0..12 {
        months.push(year * 100 + m);
        if m == 1 {
            year -= 1;
            m = 12;
        } else {
            m -= 1;
        }
    }
    months.reverse();
    months
}

/// One insurer's lag over the whole profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InsurerLagRow {
    pub insurer: String,
    pub events: u64,
    pub mean_days: f64,
    pub max_days: u32,
    pub by_lag: [u64; 5],
}

/// Each insurer's totals, latest mean first; and the national mean by month.
pub fn lag_rows(profile: &[LagMonth]) -> (Vec<InsurerLagRow>, BTreeMap<u32, f64>) {
    let mut insurers: BTreeMap<&str, (InsurerLagRow, u64)> = BTreeMap::new();
    let mut months: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for m in profile {
        let (row, sum) =
            insurers.entry(&m.insurer).or_insert_with(|| (InsurerLagRow { insurer: m.insurer.clone(), ..Default::default() }, 0));
        row.events += m.events;
        *sum += m.lag_days_sum;
        row.max_days = row.max_days.max(m.lag_days_max);
        for (total, n) in row.by_lag.iter_mut().zip(m.by_lag) {
            *total += n;
        }
        let month = months.entry(m.month).or_default();
        month.0 += m.events;
        month.1 += m.lag_days_sum;
    }
    let mut rows: Vec<InsurerLagRow> = insurers
        .into_values()
        .map(|(mut row, sum)| {
            row.mean_days = if row.events > 0 { sum as f64 / row.events as f64 } else { 0.0 };
            row
        })
        .collect();
    rows.sort_by(|a, b| b.mean_days.total_cmp(&a.mean_days).then_with(|| a.insurer.cmp(&b.insurer)));
    let trend = months.into_iter().filter(|(_, (n, _))| *n > 0).map(|(month, (n, sum))| (month, sum as f64 / n as f64)).collect();
    (rows, trend)
}

/// What the page and `/metrics` read seldom: the lag profile at most once a minute (it reads
/// every event), each month's figures at most every few seconds (a scrape needs no login, so
/// its cost must not grow with how often it is asked). Both then show the same figures.
#[derive(Default)]
pub struct DashboardCache {
    lag: Mutex<Option<(Instant, Arc<Vec<LagMonth>>)>>,
    figures: Mutex<BTreeMap<u32, (Instant, Arc<Figures>)>>,
}

const LAG_PROFILE_FRESH: Duration = Duration::from_secs(60);
/// How long a month's figures are served before they are counted again.
pub const FIGURES_FRESH: Duration = Duration::from_secs(5);
/// Months whose figures are kept at once (a bound against asking for every month).
const FIGURES_KEPT: usize = 24;

impl DashboardCache {
    fn figures(&self, month: u32, count: impl FnOnce() -> Result<Figures, String>) -> Result<Arc<Figures>, String> {
        if let Some((at, figures)) = self.figures.lock().unwrap_or_else(|p| p.into_inner()).get(&month)
            && at.elapsed() < FIGURES_FRESH
        {
            return Ok(figures.clone());
        }
        let figures = Arc::new(count()?);
        let mut kept = self.figures.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|_, (at, _)| at.elapsed() < FIGURES_FRESH);
        if kept.len() >= FIGURES_KEPT {
            kept.clear();
        }
        kept.insert(month, (Instant::now(), figures.clone()));
        Ok(figures)
    }

    fn lag_profile(&self, register: &dyn onshi_store::Register) -> Result<Arc<Vec<LagMonth>>, onshi_store::StoreError> {
        if let Some((at, profile)) = &*self.lag.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < LAG_PROFILE_FRESH
        {
            return Ok(profile.clone());
        }
        let profile = Arc::new(register.lag_by_month()?);
        *self.lag.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), profile.clone()));
        Ok(profile)
    }
}

/// Everything the page shows, read in one go (blocking: the stores).
struct Reading {
    figures: Arc<Figures>,
    lag: Arc<Vec<LagMonth>>,
    reports: Vec<(String, u64)>,
}

/// A month's figures, from the tallies of the year up to it (counted again every few seconds).
fn figures_of(state: &CenterState, month: u32) -> Result<Arc<Figures>, String> {
    state.dashboard.figures(month, || {
        let first = year_up_to(month)[0];
        let tallies = state.audit.reader().tallies(first * 100 + 1, month * 100 + 31).map_err(|e| e.to_string())?;
        Ok(Figures::from_tallies(&tallies, month))
    })
}

fn read(state: &CenterState, month: u32) -> Result<Reading, String> {
    let figures = figures_of(state, month)?;
    let lag = state.dashboard.lag_profile(state.register.as_ref()).map_err(|e| e.to_string())?;
    let reports = state.card.registry().report_states().map_err(|e| e.to_string())?;
    Ok(Reading { figures, lag, reports })
}

/// The figures `/metrics` adds: this month's checks by path, the 利用率, and the reports by
/// state — from the same [`Figures`] as the page.
pub fn metrics_text(state: &CenterState) -> String {
    let month = current_month(state);
    let mut out = String::new();
    let figures = match figures_of(state, month) {
        Ok(figures) => figures,
        Err(e) => {
            tracing::warn!(error = %e, "the audit tallies could not be read for /metrics");
            return out;
        }
    };
    out.push_str("# HELP onshi_checks_month Checks this month (Japan time) by path, from the audit log's tallies.\n# TYPE onshi_checks_month gauge\n");
    for ((path, _), n) in PATHS.iter().zip(figures.month_checks()) {
        let _ = writeln!(out, "onshi_checks_month{{month=\"{month}\",path=\"{path}\"}} {n}");
    }
    let (card, all) = figures.month_usage();
    out.push_str(
        "# HELP onshi_card_uses_month Checks with the card this month (the 利用率's numerator).\n# TYPE onshi_card_uses_month gauge\n",
    );
    let _ = writeln!(out, "onshi_card_uses_month{{month=\"{month}\"}} {card}");
    out.push_str("# HELP onshi_counter_checks_month Checks at the counter this month (the 利用率's denominator; batch checks excluded).\n# TYPE onshi_counter_checks_month gauge\n");
    let _ = writeln!(out, "onshi_counter_checks_month{{month=\"{month}\"}} {all}");
    if let Ok(reports) = state.card.registry().report_states() {
        out.push_str("# HELP onshi_link_reports Wrong-link reports by review state.\n# TYPE onshi_link_reports gauge\n");
        for (report_state, n) in reports {
            let _ = writeln!(out, "onshi_link_reports{{state=\"{}\"}} {n}", report_state.replace(['"', '\\', '\n'], "_"));
        }
    }
    out
}

fn current_month(state: &CenterState) -> u32 {
    let today = (state.clock)().date();
    u32::from(today.year()) * 100 + u32::from(today.month())
}

/// `YYYYMM` from the query (`?month=202612`), or this month; an error message for anything
/// else.
fn month_of(state: &CenterState, uri: &Uri) -> Result<u32, Box<Response>> {
    let asked = uri.query().unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("month="));
    match asked {
        None => Ok(current_month(state)),
        Some(text) => {
            text.parse::<u32>().ok().filter(|m| text.len() == 6 && (1..=12).contains(&(m % 100)) && m / 100 >= 2000).ok_or_else(|| {
                Box::new(
                    (StatusCode::BAD_REQUEST, "月は ?month=202612 のように年4桁と月2桁で指定してください。 (month must be YYYYMM)")
                        .into_response(),
                )
            })
        }
    }
}

async fn reading(state: Arc<CenterState>, month: u32) -> Result<Reading, Response> {
    tokio::task::spawn_blocking(move || read(&state, month)).await.map_err(|e| e.to_string()).and_then(|r| r).map_err(|e| {
        (StatusCode::SERVICE_UNAVAILABLE, format!("集計を読めませんでした。 the figures could not be read: {e}")).into_response()
    })
}

pub async fn page_handler(State(state): State<Arc<CenterState>>, uri: Uri) -> Response {
    let month = match month_of(&state, &uri) {
        Ok(month) => month,
        Err(response) => return *response,
    };
    match reading(state, month).await {
        Ok(reading) => Html(page_html(&reading, month)).into_response(),
        Err(response) => response,
    }
}

pub async fn csv_handler(State(state): State<Arc<CenterState>>, Path(table): Path<String>, uri: Uri) -> Response {
    let month = match month_of(&state, &uri) {
        Ok(month) => month,
        Err(response) => return *response,
    };
    let Some(name) = table.strip_suffix(".csv").filter(|name| TABLES.contains(name)) else {
        return (StatusCode::NOT_FOUND, format!("表は {} のどれかです。 tables: {}", TABLES.join(", "), TABLES.join(", "))).into_response();
    };
    let name = name.to_string();
    match reading(state, month).await {
        Ok(reading) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"onshi-{name}-{month}.csv\"")),
            ],
            csv(&reading, &name),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// The tables with a CSV download.
pub const TABLES: [&str; 9] = [
    "checks-by-day",
    "checks-by-month",
    "usage-by-institution",
    "consents",
    "refusals",
    "insurer-lag",
    "lag-trend",
    "link-reports",
    "reverifications",
];

/// A table as CSV (UTF-8, header row, no personal data: codes and counts only).
fn csv(reading: &Reading, table: &str) -> String {
    let f = &reading.figures;
    let mut out = String::new();
    let path_header: Vec<&str> = PATHS.iter().map(|(id, _)| *id).collect();
    match table {
        "checks-by-day" => {
            let _ = writeln!(out, "day,{}", path_header.join(","));
            for (day, counts) in &f.days {
                let _ = writeln!(out, "{}{day:02},{}", f.month, join(counts));
            }
        }
        "checks-by-month" => {
            let _ = writeln!(out, "month,{},card_uses,counter_checks,card_use_percent", path_header.join(","));
            for month in year_up_to(f.month) {
                let counts = f.months.get(&month).copied().unwrap_or_default();
                let usage = f.usage_by_month.get(&month).copied().unwrap_or_default();
                let _ = writeln!(out, "{month},{},{},{},{}", join(&counts), usage.0, usage.1, percent_text(usage));
            }
        }
        "usage-by-institution" => {
            out.push_str("institution,card_uses,counter_checks,card_use_percent\n");
            for (institution, usage) in &f.institutions {
                let _ = writeln!(out, "{},{},{},{}", csv_field(institution), usage.0, usage.1, percent_text(*usage));
            }
        }
        "consents" => {
            out.push_str("scope,consents,card_answers,percent\n");
            for ((scope, _), n) in SCOPES.iter().zip(f.consents) {
                let _ = writeln!(out, "{scope},{n},{},{}", f.card_answers, percent_text((n, f.card_answers)));
            }
        }
        "refusals" => {
            out.push_str("code,count\n");
            for (code, n) in &f.refusals {
                let _ = writeln!(out, "{},{n}", csv_field(code));
            }
        }
        "insurer-lag" => {
            let buckets: Vec<String> = bucket_names().iter().map(|b| format!("lag_{b}")).collect();
            let _ = writeln!(out, "insurer,events,mean_days,max_days,{}", buckets.join(","));
            for row in lag_rows(&reading.lag).0 {
                let _ =
                    writeln!(out, "{},{},{:.1},{},{}", csv_field(&row.insurer), row.events, row.mean_days, row.max_days, join(&row.by_lag));
            }
        }
        "lag-trend" => {
            out.push_str("month,mean_lag_days\n");
            for (month, mean) in lag_rows(&reading.lag).1 {
                let _ = writeln!(out, "{month},{mean:.1}");
            }
        }
        "reverifications" => {
            out.push_str("institution,reverified\n");
            for (institution, n) in &f.reverified {
                let _ = writeln!(out, "{},{n}", csv_field(institution));
            }
        }
        "link-reports" => {
            out.push_str("state,count\n");
            for (state, n) in &reading.reports {
                let _ = writeln!(out, "{},{n}", csv_field(state));
            }
        }
        _ => {}
    }
    out
}

fn join(values: &[u64]) -> String {
    values.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn percent_text(usage: (u64, u64)) -> String {
    percent(usage).map_or(String::new(), |p| format!("{p:.1}"))
}

/// A CSV field: quoted when it holds a separator, a quote or a line break; a leading
/// formula character is neutralised (a spreadsheet must not run it).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn bucket_names() -> Vec<String> {
    let mut names = Vec::new();
    let mut from = 0;
    for bound in LAG_BUCKETS {
        names.push(format!("{from}_{bound}d"));
        from = bound + 1;
    }
    names.push(format!("over_{}d", LAG_BUCKETS[LAG_BUCKETS.len() - 1]));
    names
}

fn bucket_labels_ja() -> Vec<String> {
    let mut names = Vec::new();
    let mut from = 0;
    for bound in LAG_BUCKETS {
        names.push(format!("{from}〜{bound}日"));
        from = bound + 1;
    }
    names.push(format!("{}日超", LAG_BUCKETS[LAG_BUCKETS.len() - 1]));
    names
}

fn month_ja(month: u32) -> String {
    format!("{}年{}月", month / 100, month % 100)
}

const STYLE: &str = "body{font-family:sans-serif;margin:1rem 2rem;background:#f7f7f5;color:#222;max-width:70rem}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:2px solid #ccc}
table{border-collapse:collapse;background:#fff;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
td:first-child,th:first-child{text-align:left}.bad{color:#a40000;font-weight:bold}.ok{color:#075e2b}.note{font-size:.9rem;color:#444}
a.csv{font-size:.9rem;margin-left:1rem}svg{background:#fff;border:1px solid #ddd;margin:.5rem 0}";

fn csv_link(table: &str, month: u32) -> String {
    format!("<a class=\"csv\" href=\"/dashboard/{table}.csv?month={month}\">CSV</a>")
}

fn page_html(reading: &Reading, month: u32) -> String {
    let f = &reading.figures;
    let mut html = String::with_capacity(64 * 1024);
    let previous = year_up_to(month)[10];
    let next = if month % 100 == 12 { (month / 100 + 1) * 100 + 1 } else { month + 1 };
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>運用者ダッシュボード {month} — onshi</title><style>{STYLE}</style></head><body>\
         <h1>オンライン資格確認 運用者ダッシュボード（{}）</h1>\
         <p><a href=\"/dashboard?month={previous}\">← 前の月</a>　<a href=\"/dashboard?month={next}\">次の月 →</a>　<a href=\"/metrics\">/metrics</a></p>",
        month_ja(month)
    );

    // 利用率, nationally.
    let usage = f.month_usage();
    let _ = write!(html, "<h2>マイナ保険証 利用率（全国）{}</h2>", csv_link("checks-by-month", month));
    match percent(usage) {
        Some(p) => {
            let class = if p >= THRESHOLD_PERCENT { "ok" } else { "bad" };
            let _ = write!(
                html,
                "<p id=\"national-usage\"><strong class=\"{class}\">{p:.1} %</strong>（マイナ保険証 {} 件 ／ 窓口での確認 {} 件）　加算の基準 {THRESHOLD_PERCENT:.0} %</p>",
                usage.0, usage.1
            );
        }
        None => html.push_str("<p id=\"national-usage\">この月の確認はありません。</p>"),
    }
    let months = year_up_to(month);
    let labels: Vec<String> = months.iter().map(|m| format!("{}月", m % 100)).collect();
    let percents: Vec<Option<f64>> = months.iter().map(|m| f.usage_by_month.get(m).copied().and_then(percent)).collect();
    html.push_str(&chart::percent_line("chart-usage", "マイナ保険証利用率の推移（月別）", &labels, &percents, THRESHOLD_PERCENT));

    // Checks by day and path.
    let _ = write!(html, "<h2>確認件数（日別・経路別）{}</h2>", csv_link("checks-by-day", month));
    let series: Vec<&str> = PATHS.iter().map(|(_, label)| *label).collect();
    let days: Vec<u32> = f.days.keys().copied().collect();
    let day_labels: Vec<String> = days.iter().map(|d| d.to_string()).collect();
    let day_values: Vec<Vec<u64>> = days.iter().map(|d| f.days[d].to_vec()).collect();
    html.push_str(&chart::stacked_bars("chart-days", "確認件数（日別・経路別）", &day_labels, &series, &day_values));
    html.push_str("<table id=\"checks-by-path\"><tr><th>経路</th><th>この月</th></tr>");
    for ((_, label), n) in PATHS.iter().zip(f.month_checks()) {
        let _ = write!(html, "<tr><td>{label}</td><td>{n}</td></tr>");
    }
    html.push_str("</table>");
    let _ = write!(html, "<h2>確認件数（月別・経路別）{}</h2>", csv_link("checks-by-month", month));
    let month_values: Vec<Vec<u64>> = months.iter().map(|m| f.months.get(m).copied().unwrap_or_default().to_vec()).collect();
    html.push_str(&chart::stacked_bars("chart-months", "確認件数（月別・経路別）", &labels, &series, &month_values));

    // Per institution.
    let _ = write!(html, "<h2>医療機関別の利用率（この月）{}</h2>", csv_link("usage-by-institution", month));
    let mut institutions: Vec<(&String, &(u64, u64))> = f.institutions.iter().collect();
    institutions.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(b.0)));
    let below = institutions.iter().filter(|(_, u)| percent(**u).is_some_and(|p| p < THRESHOLD_PERCENT)).count();
    let _ = write!(
        html,
        "<p>{} 機関のうち、基準 {THRESHOLD_PERCENT:.0} % 未満: <strong>{below}</strong> 機関（確認件数の多い順に50機関まで。全機関は CSV）</p>\
         <table id=\"institutions\"><tr><th>医療機関コード</th><th>マイナ保険証</th><th>窓口での確認</th><th>利用率</th></tr>",
        institutions.len()
    );
    for (code, usage) in institutions.iter().take(50) {
        let p = percent(**usage);
        let class = if p.is_some_and(|p| p < THRESHOLD_PERCENT) { " class=\"bad\"" } else { "" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td{class}>{}</td></tr>",
            esc(code),
            usage.0,
            usage.1,
            p.map_or("—".into(), |p| format!("{p:.1} %"))
        );
    }
    html.push_str("</table>");

    // Consents.
    let _ = write!(
        html,
        "<h2>同意率（範囲別、この月）{}</h2><table id=\"consents\"><tr><th>範囲</th><th>同意</th><th>率</th></tr>",
        csv_link("consents", month)
    );
    for ((_, label), n) in SCOPES.iter().zip(f.consents) {
        let _ = write!(
            html,
            "<tr><td>{label}</td><td>{n}</td><td>{}</td></tr>",
            percent((n, f.card_answers)).map_or("—".into(), |p| format!("{p:.1} %"))
        );
    }
    let _ = write!(html, "</table><p class=\"note\">率の分母: この月にマイナ保険証で答えた確認 {} 件。</p>", f.card_answers);

    // Refusals.
    let _ = write!(
        html,
        "<h2>お断り・エラー（コード別、この月）{}</h2><table id=\"refusals\"><tr><th>コード</th><th>件数</th></tr>",
        csv_link("refusals", month)
    );
    if f.refusals.is_empty() {
        html.push_str("<tr><td colspan=\"2\">ありません。</td></tr>");
    }
    let mut refusals: Vec<_> = f.refusals.iter().collect();
    refusals.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (code, n) in refusals {
        let _ = write!(html, "<tr><td>{}</td><td>{n}</td></tr>", esc(code));
    }
    html.push_str("</table><p class=\"note\">認証の前に断った接続（証明書なし、上限超過）は監査ログに残らないため、/metrics の onshi_unauthenticated_refusals_total と onshi_rate_limited_total にあります。</p>");

    // Insurers' registration lag.
    let (rows, trend) = lag_rows(&reading.lag);
    let _ = write!(html, "<h2>保険者の登録の遅れ（「該当資格なし」の原因）{}</h2>", csv_link("insurer-lag", month));
    let mut distribution = [0u64; 5];
    for row in &rows {
        for (total, n) in distribution.iter_mut().zip(row.by_lag) {
            *total += n;
        }
    }
    let bucket_labels = bucket_labels_ja();
    let bars: Vec<Vec<u64>> = distribution.iter().map(|n| vec![*n]).collect();
    html.push_str(&chart::stacked_bars("chart-lag", "届出までの日数の分布（全保険者）", &bucket_labels, &["届出件数"], &bars));
    let late: Vec<&InsurerLagRow> = rows.iter().filter(|r| r.mean_days > LATE_MEAN_DAYS).collect();
    let _ = write!(
        html,
        "<p id=\"late-insurers\">平均 {LATE_MEAN_DAYS:.0} 日を超えて遅れている保険者: <strong>{}</strong>（遅れの大きい順に20保険者。全保険者は CSV）</p>",
        late.len()
    );
    html.push_str("<table id=\"insurer-lag\"><tr><th>保険者番号</th><th>届出</th><th>平均（日）</th><th>最大（日）</th>");
    for label in &bucket_labels {
        let _ = write!(html, "<th>{label}</th>");
    }
    html.push_str("</tr>");
    for row in rows.iter().take(20) {
        let class = if row.mean_days > LATE_MEAN_DAYS { " class=\"bad\"" } else { "" };
        let _ = write!(
            html,
            "<tr><td{class}>{}</td><td>{}</td><td{class}>{:.1}</td><td>{}</td>",
            esc(&row.insurer),
            row.events,
            row.mean_days,
            row.max_days
        );
        for n in row.by_lag {
            let _ = write!(html, "<td>{n}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    let trend_months: Vec<u32> = trend.keys().copied().collect();
    if !trend_months.is_empty() {
        let labels: Vec<String> = trend_months.iter().map(|m| month_ja(*m)).collect();
        let _ = write!(html, "<h3>遅れの推移（登録月別の平均）{}</h3>", csv_link("lag-trend", month));
        let bars: Vec<Vec<u64>> = trend_months.iter().map(|m| vec![trend[m].round() as u64]).collect();
        html.push_str(&chart::stacked_bars("chart-lag-trend", "登録月別の平均の遅れ（日）", &labels, &["平均の遅れ（日）"], &bars));
        html.push_str("<table id=\"lag-trend\"><tr><th>登録月</th><th>平均の遅れ（日）</th></tr>");
        for (label, m) in labels.iter().zip(&trend_months) {
            let _ = write!(html, "<tr><td>{label}</td><td>{:.1}</td></tr>", trend[m]);
        }
        html.push_str("</table>");
    }
    html.push_str("<p class=\"note\">遅れ = 保険者が届け出た日 − 資格の変わった日。登録の遅れている保険者の加入者は、届出までの間「該当資格なし」と答えられます（確認の回答には保険者の遅れが添えられます）。</p>");

    // Wrong-link reports.
    let _ = write!(
        html,
        "<h2>ひも付け誤りの報告（審査状況）{}</h2><table id=\"link-reports\"><tr><th>状況</th><th>件数</th></tr>",
        csv_link("link-reports", month)
    );
    for (label, key) in [("保険者が確認中", "open"), ("誤りと確認（取り消し済み）", "confirmed"), ("正しいと確認", "cleared")]
    {
        let n = reading.reports.iter().find(|(s, _)| s == key).map_or(0, |(_, n)| *n);
        let _ = write!(html, "<tr><td>{label}</td><td>{n}</td></tr>");
    }
    html.push_str("</table>");

    let _ = write!(
        html,
        "<h2>回線断の影響（医療機関別の再照会、この月）{}</h2><table id=\"reverifications\"><tr><th>医療機関コード</th><th>再照会</th></tr>",
        csv_link("reverifications", month)
    );
    if f.reverified.is_empty() {
        html.push_str("<tr><td colspan=\"2\">ありません。</td></tr>");
    }
    let mut reverified: Vec<_> = f.reverified.iter().collect();
    reverified.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (code, n) in reverified.iter().take(50) {
        let _ = write!(html, "<tr><td>{}</td><td>{n}</td></tr>", esc(code));
    }
    html.push_str("</table>");
    html.push_str(
        "<h2>ゲートウェイ</h2><p class=\"note\">回線が切れている間、ゲートウェイは受付を続け、確認を待ち行列に入れて、復旧後に自分で再照会します。\
         センターに見えるのはその再照会（上の表）で、待ち行列の長さや回線の状態は各ゲートウェイが自分の /metrics（Prometheus 形式: onshi_gateway_queue_waiting、onshi_gateway_line_up）で公開します。\
         センターへの報告はまだありません。</p>\
         <h2>数え方</h2><ul class=\"note\">\
         <li>利用率は厚生労働省の基準: マイナ保険証での確認（暗証番号・顔認証・券面の目視）÷ 窓口での確認の全件。一括照会は窓口での確認ではないので数えません。</li>\
         <li>回線不通中の確認はセンターに届かず、回線復旧後の再照会で1件として数えます（目視の記録はマイナ保険証の利用として）。</li>\
         <li>センターが断った確認も1件です（患者さんは確認を受けました）。</li>\
         <li>スマートフォンのマイナ保険証は、その電子証明書（カードから発行されたもの）で見分けます。</li>\
         <li>すべての数は監査ログ（改ざん検知つき）の集計から。/metrics も同じ集計です。</li></ul></body></html>",
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(day: u32, actor: &str, kind: &str, code: &str, count: u64) -> Tally {
        Tally { day, actor: actor.into(), kind: kind.into(), code: code.into(), count }
    }

    /// A month worked by hand: clinic A checks 3 by card (PIN 2, face 1 refused), 1 with a
    /// smartphone and 2 by number, re-verifies 1 number after an outage and 1 recorded visual check, and batches 10;
    /// clinic B checks 4 by number. The month before, A had 1 card check.
    #[test]
    fn a_month_counted_by_hand() {
        let tallies = [
            tally(20261130, "A", "verify_card:pin", "1", 1),
            tally(20261201, "A", "verify_card:pin", "1", 2),
            tally(20261201, "A", "consent:drug", "1", 2),
            tally(20261201, "A", "consent:checkup", "1", 1),
            tally(20261202, "A", "verify_card:face", "CARD_NOT_LINKED", 1),
            tally(20261202, "A", "verify_card:smartphone", "1", 1),
            tally(20261202, "A", "verify_number", "1", 1),
            tally(20261202, "A", "verify_number", "4", 1),
            tally(20261203, "A", "reverify_number", "1", 1),
            tally(20261203, "A", "reverify_card:visual", "1", 1),
            tally(20261203, "A", "verify_number_batch", "1", 10),
            tally(20261203, "A", "view_drug", "ok", 2),
            tally(20261204, "B", "verify_number", "1", 4),
            tally(20261204, "B", "view_drug", "CONSENT_REQUIRED", 1),
            // What an action did is not a refusal.
            tally(20261204, "B", "register_reader", "registered", 1),
        ];
        let f = Figures::from_tallies(&tallies, 202612);
        // Paths: pin 2, face 1, visual 0, smartphone 1, number 2 + 4, re-verified 2, batch 10.
        assert_eq!(f.month_checks(), [2, 1, 0, 1, 6, 2, 10]);
        // Card uses: 2 PIN + 1 face (refused, still a check) + 1 smartphone + 1 recorded
        // visual = 5, of 2 + 1 + 1 + 6 + 2 = 12 checks at the counter (batch excluded).
        assert_eq!(f.month_usage(), (5, 12));
        assert_eq!(f.usage_by_month.get(&202611), Some(&(1, 1)));
        assert_eq!(f.institutions.get("A"), Some(&(5, 8)));
        assert_eq!(f.institutions.get("B"), Some(&(0, 4)));
        // Consents over the card checks answered (2 PIN + 1 smartphone + 1 visual; the refused
        // face is not).
        assert_eq!(f.consents, [2, 1, 0, 0, 0]);
        assert_eq!(f.card_answers, 4);
        assert_eq!(
            f.refusals.into_iter().collect::<Vec<_>>(),
            vec![("CARD_NOT_LINKED".to_string(), 1), ("CONSENT_REQUIRED".to_string(), 1)]
        );
        assert_eq!(f.days.get(&1), Some(&[2, 0, 0, 0, 0, 0, 0]));
        assert_eq!(f.days.get(&3), Some(&[0, 0, 0, 0, 0, 2, 10]));
        assert_eq!(f.reverified.into_iter().collect::<Vec<_>>(), vec![("A".to_string(), 2)]);
    }

    #[test]
    fn a_year_runs_back_across_new_year_and_lags_are_averaged_over_events() {
        assert_eq!(
            year_up_to(202702),
            vec![202603, 202604, 202605, 202606, 202607, 202608, 202609, 202610, 202611, 202612, 202701, 202702]
        );
        let month = |insurer: &str, month, events, sum, max, by_lag| LagMonth {
            insurer: insurer.into(),
            month,
            events,
            lag_days_sum: sum,
            lag_days_max: max,
            by_lag,
        };
        let (rows, trend) = lag_rows(&[
            month("01", 202611, 2, 4, 3, [2, 0, 0, 0, 0]),
            month("02", 202611, 1, 40, 40, [0, 0, 0, 0, 1]),
            month("02", 202612, 3, 20, 10, [1, 1, 1, 0, 0]),
        ]);
        // Insurer 02: 60 days over 4 events = 15.0, late; insurer 01: 2.0.
        assert_eq!(
            rows.iter().map(|r| (r.insurer.as_str(), r.events, r.mean_days, r.max_days)).collect::<Vec<_>>(),
            vec![("02", 4, 15.0, 40), ("01", 2, 2.0, 3)]
        );
        assert_eq!(rows[0].by_lag, [1, 1, 1, 0, 1]);
        // November: 44 days over 3 events; December: 20 over 3.
        assert_eq!(
            trend.into_iter().map(|(m, d)| (m, (d * 100.0).round() / 100.0)).collect::<Vec<_>>(),
            vec![(202611, 14.67), (202612, 6.67)]
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("1311234569"), "1311234569");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }
}
