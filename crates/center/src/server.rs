//! The center's HTTPS server: a TLS accept loop that reads the client certificate and hands
//! each connection to the axum router with the peer's identity attached.
//!
//! Why not axum-server: it gives handlers no access to the client certificate (axum-server
//! #162); the loop below is the pattern of axum's `low-level-rustls` example.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use onshi_api::BATCH_ENTRIES_MAX;
use onshi_api::verify::{BatchResult, BatchVerifyRequest, BatchVerifyResponse, ErrorBody, VerifyNumberRequest};
use onshi_domain::ids::InstitutionCode;
use onshi_domain::{Date, Timestamp};
use onshi_pki::PeerIdentity;
use onshi_store::Register;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::errors::{self, CenterError};
use crate::import::{BATCH_EVENTS_DEFAULT, ImportOptions, import_jsonl};
use crate::metrics::Metrics;
use crate::verify::{check_institution, parse_request, verify_number_person};
use onshi_store::audit::AuditRecord;

/// Most connections of certified clients (institutions, insurers) served at once.
const CONNECTIONS_MAX: usize = 4_096;
/// Most connections without a client certificate (health, metrics, the API document, patients
/// with their card) served at once: anyone can open one, so they get a small pool of their own
/// and cannot starve the clinics.
const ANONYMOUS_CONNECTIONS_MAX: usize = 64;
/// Of those, most from one address: one host cannot hold the whole pool against patients.
const ANONYMOUS_CONNECTIONS_PER_ADDRESS_MAX: usize = 8;
/// Requests per second one address may make to the patients' endpoints (bursts of twice
/// that): a patient makes a handful; a flood of challenges from one host is cut off.
pub const PATIENT_REQUESTS_PER_SECOND: u32 = 5;
/// Most TLS handshakes in progress. When full, the oldest of the address holding the most is
/// dropped for the newest: a flood of sockets that never finish a handshake cannot keep a
/// clinic's connection waiting.
const HANDSHAKES_MAX: usize = 1_024;
/// Most handshakes in progress from one address: a flood from one host takes at most this many
/// of the slots, whatever its rate; its own oldest go first.
const HANDSHAKES_PER_ADDRESS_MAX: usize = 256;
/// Refused handshakes closed gently (see [`close_gently`]) at once; more are closed at once.
const LINGERING_MAX: usize = 256;
/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A request's header must arrive within this; it is also how long a kept-alive connection may
/// sit idle between requests (hyper starts the clock when it waits for the next header).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A verification's body must arrive within this (a slow-loris body is cut off).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// An insurer's upload (up to 64 MiB) may take longer.
const UPLOAD_BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// On a stop, in-flight requests get this long to finish before the center exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After a refused handshake, how long and how much of what the client already sent is read
/// and dropped before the socket closes (see `close_gently`).
const REFUSED_LINGER: Duration = Duration::from_secs(2);
const REFUSED_DRAIN_BYTES_MAX: usize = 64 * 1024;
/// Largest single-verify body.
const VERIFY_BODY_BYTES_MAX: usize = 16 * 1024;
/// Largest batch body: 10,000 entries of a few hundred bytes each.
const BATCH_BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest insurer upload per call; bigger files go through `onshi center import`.
const UPLOAD_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The current time; injectable so that tests can fix it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock in Japan time.
pub fn system_clock() -> Clock {
    Arc::new(onshi_pki::now)
}

/// Shared by all requests.
pub struct CenterState {
    pub register: Arc<dyn Register>,
    pub lags: crate::verify::LagCache,
    pub metrics: Metrics,
    pub clock: Clock,
    pub started: Instant,
    /// The マイナ保険証 path (refuses with CARD_PATH_UNAVAILABLE when no card CA is loaded).
    pub card: crate::card::CardPath,
    /// Every verification, view and refusal is recorded here before the answer goes out.
    pub audit: crate::audit::AuditSink,
    /// Dispensed drugs and checkup results, shown under a live consent.
    pub medical: Arc<dyn onshi_store::medical::MedicalStore>,
    /// 公費 payers' recipients ([`crate::subsidy`]).
    pub subsidies: Arc<dyn onshi_store::subsidy::SubsidyStore>,
    /// Home-care consents ([`crate::home`]).
    pub home: Arc<dyn onshi_store::home::HomeCareStore>,
    /// Requests per second per certified caller.
    pub rate: crate::rate::RateLimiter,
    /// Requests per second per address to the patients' endpoints (no certificate there).
    pub patient_rate: crate::rate::RateLimiter,
    /// Searches by attributes per institution per day ([`crate::attributes`]).
    pub attribute_quota: crate::rate::DailyQuota,
    /// By-numbers 受給者証 questions answered `not_registered` per institution per day
    /// ([`crate::subsidy::SUBSIDY_MISSES_PER_DAY`]).
    pub subsidy_misses: crate::rate::DailyQuota,
    /// What the operator's dashboard reads seldom (the registration lag profile).
    pub dashboard: crate::dashboard::DashboardCache,
}

/// The address a request came from (set by the accept loop).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Remote(pub(crate) std::net::IpAddr);

fn actor(peer: &Peer) -> String {
    match peer {
        Peer::Known(PeerIdentity::Institution(code)) => code.as_str().to_string(),
        Peer::Known(PeerIdentity::Insurer(number)) => format!("insurer:{number}"),
        Peer::Known(PeerIdentity::Operator(name)) => format!("operator:{name}"),
        Peer::Known(PeerIdentity::Payer(number)) => format!("payer:{}", number.as_str()),
        Peer::Unusable(_) | Peer::Anonymous => "-".into(),
    }
}

fn audit_record(at: Timestamp, actor: String, action: &str, person_id: Option<i64>, object: String, code: &str) -> AuditRecord {
    AuditRecord { at, actor, action: action.to_string(), person_id, object, code: code.to_string() }
}

/// The outcome code of a result for the audit log: the validity, `ok`, or the refusal's code.
fn outcome<T>(result: &Result<T, CenterError>, ok: impl Fn(&T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(error) => error.body.code.clone(),
    }
}

/// Who is on the other end of a connection, from the TLS client certificate.
#[derive(Clone, Debug)]
enum Peer {
    Anonymous,
    Known(PeerIdentity),
    /// A certificate that chained to the CA but names no usable role.
    Unusable(String),
}

impl IntoResponse for CenterError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: *self.body })).into_response()
    }
}

fn refuse(state: &CenterState, error: CenterError) -> Response {
    state.metrics.error(&error.body.code);
    tracing::info!(code = %error.body.code, status = error.status, "refused");
    error.into_response()
}

fn institution(peer: &Peer) -> Result<&InstitutionCode, CenterError> {
    match peer {
        Peer::Known(PeerIdentity::Institution(code)) => Ok(code),
        Peer::Known(PeerIdentity::Insurer(_) | PeerIdentity::Operator(_) | PeerIdentity::Payer(_)) => {
            Err(errors::wrong_role("medical-institution"))
        }
        Peer::Unusable(detail) => Err(errors::wrong_role(&format!("medical-institution ({detail})"))),
        Peer::Anonymous => Err(errors::certificate_required()),
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, CenterError> {
    read_body_within(body, limit, BODY_TIMEOUT).await
}

/// Reads a body of at most `limit` bytes arriving within `timeout`.
async fn read_body_within(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, CenterError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(errors::body_too_large(limit)),
        Err(_) => Err(errors::body_timeout(timeout.as_secs())),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CenterError> {
    serde_json::from_slice(bytes).map_err(|e| errors::malformed_body(format!("invalid JSON: {e}")))
}

async fn verify_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let started = Instant::now();
    let now = (state.clock)();
    let mut object = "-".to_string();
    let mut reverification = false;
    let result = async {
        let certified = institution(&peer)?;
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: VerifyNumberRequest = parse_json(&bytes)?;
        reverification = request.reverification;
        check_institution(request.institution_code.as_deref(), certified)?;
        let query = parse_request(&request, now.date())?;
        object = query.insurer.as_str().to_string();
        crate::verify::verify_number_person_async(state.register.as_ref(), &state.lags, &query, now).await
    }
    .await;
    let person = result.as_ref().ok().and_then(|(_, person)| *person);
    let code = outcome(&result, |(answer, _)| answer.validity.code.clone());
    let action = if reverification { "reverify_number" } else { "verify_number" };
    let audited = state.audit.enqueue(vec![audit_record(now, actor(&peer), action, person, object, &code)]);
    let result = audited.and(result).map(|(answer, _)| answer);
    match result {
        Ok(answer) => {
            state.metrics.answer(&answer.validity.code);
            state.metrics.verify_latency(started.elapsed());
            Json(answer).into_response()
        }
        Err(error) => refuse(&state, error),
    }
}

/// A search by attributes (a claim billed as 不詳): institution certificate, a daily quota per
/// institution, audited as `verify_attributes` with the person found.
async fn attributes_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let result = async {
        let certified = institution(&peer)?;
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::verify::VerifyAttributesRequest = parse_json(&bytes)?;
        check_institution(request.institution_code.as_deref(), certified)?;
        let query = crate::attributes::parse_attributes(&request, now.date())?;
        state
            .attribute_quota
            .take(certified.as_str(), now.date())
            .map_err(|_| errors::attribute_quota(crate::attributes::ATTRIBUTE_SEARCHES_PER_DAY))?;
        let worker = state.clone();
        tokio::task::spawn_blocking(move || crate::attributes::verify_attributes(worker.register.as_ref(), &worker.lags, &query, now))
            .await
            .map_err(|e| errors::register_unavailable(format!("attribute search failed: {e}")))?
    }
    .await;
    let person = result.as_ref().ok().and_then(|(_, person)| *person);
    let code = outcome(&result, |(answer, _)| answer.validity.code.clone());
    let audited = state.audit.enqueue(vec![audit_record(now, actor(&peer), "verify_attributes", person, "-".into(), &code)]);
    match audited.and(result).map(|(answer, _)| answer) {
        Ok(answer) => {
            state.metrics.answer(&answer.validity.code);
            Json(answer).into_response()
        }
        Err(error) => refuse(&state, error),
    }
}

/// Staff ask about a 受給者証 by its numbers and the patient's birth date (or the receipt
/// pre-check about a claim's KO line): institution certificate, audited as `verify_subsidy` with
/// the person when one was found.
async fn subsidy_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let mut object = "-".to_string();
    let result = async {
        let certified = institution(&peer)?.clone();
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::subsidy::VerifySubsidyRequest = parse_json(&bytes)?;
        check_institution(request.institution_code.as_deref(), &certified)?;
        let query = crate::subsidy::parse_query(&request)?;
        object = format!("payer:{}", query.payer.as_str());
        if !state.subsidy_misses.has_left(certified.as_str(), now.date()) {
            return Err(errors::subsidy_misses(crate::subsidy::SUBSIDY_MISSES_PER_DAY));
        }
        let worker = state.clone();
        let asked_by = certified.as_str().to_string();
        let answered = tokio::task::spawn_blocking(move || {
            crate::subsidy::verify_subsidy(
                worker.subsidies.as_ref(),
                worker.medical.as_ref(),
                worker.register.as_ref(),
                &query,
                &certified,
                now,
            )
        })
        .await
        .map_err(|e| errors::register_unavailable(format!("subsidy check failed: {e}")))??;
        if answered.0.state == onshi_api::subsidy::state::NOT_REGISTERED {
            let _ = state.subsidy_misses.take(&asked_by, now.date());
        }
        Ok(answered)
    }
    .await;
    let person = result.as_ref().ok().and_then(|(_, person)| *person);
    let code = outcome(&result, |(answer, _)| answer.state.clone());
    let audited = state.audit.enqueue(vec![audit_record(now, actor(&peer), "verify_subsidy", person, object, &code)]);
    match audited.and(result).map(|(answer, _)| answer) {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => refuse(&state, error),
    }
}

/// 再照会 under a home-care consent: institution certificate, the key, audited as
/// `reverify_home` in the patient's access log.
async fn home_reverify_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let result = async {
        let certified = institution(&peer)?.clone();
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::card::HomeReverify = parse_json(&bytes)?;
        let on = match &request.date_of_care {
            Some(text) => Date::parse_yyyymmdd(text).map_err(|e| errors::invalid_field("date_of_care", &e))?,
            None => now.date(),
        };
        let worker = state.clone();
        tokio::task::spawn_blocking(move || {
            crate::home::reverify(
                worker.home.as_ref(),
                &worker.card,
                worker.register.as_ref(),
                &worker.lags,
                &request.key,
                &certified,
                on,
                now,
            )
        })
        .await
        .map_err(|e| errors::register_unavailable(format!("home-care check failed: {e}")))?
    }
    .await;
    let person = result.as_ref().ok().map(|(_, person)| *person);
    let code = outcome(&result, |(answer, _)| answer.validity.code.clone());
    let audited = state.audit.enqueue(vec![audit_record(now, actor(&peer), "reverify_home", person, "-".into(), &code)]);
    match audited.and(result).map(|(answer, _)| answer) {
        Ok(answer) => {
            state.metrics.answer(&answer.validity.code);
            Json(answer).into_response()
        }
        Err(error) => refuse(&state, error),
    }
}

/// The batch list of home-care consents (`OQSmuhvq` / `OQSmuonq`): institution certificate;
/// every patient listed gets a `verify_home_list` entry in their access log.
async fn home_list_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let result = async {
        let certified = institution(&peer)?.clone();
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::card::HomeListRequest = parse_json(&bytes)?;
        let worker = state.clone();
        tokio::task::spawn_blocking(move || {
            crate::home::list(worker.home.as_ref(), &worker.card, worker.register.as_ref(), &worker.lags, &request, &certified, now)
        })
        .await
        .map_err(|e| errors::register_unavailable(format!("home-care list failed: {e}")))?
    }
    .await;
    let records = match &result {
        Ok((_, persons)) if !persons.is_empty() => {
            persons.iter().map(|p| audit_record(now, actor(&peer), "verify_home_list", Some(*p), "-".into(), "ok")).collect()
        }
        _ => vec![audit_record(now, actor(&peer), "verify_home_list", None, "-".into(), &outcome(&result, |_| "ok".into()))],
    };
    let audited = state.audit.enqueue(records);
    match audited.and(result).map(|(list, _)| list) {
        Ok(list) => Json(list).into_response(),
        Err(error) => refuse(&state, error),
    }
}

/// 医療扶助: the month's recipients at the asking institution (`OQSmutic`), institution
/// certificate; every recipient listed gets an entry `verify_welfare` in their access log.
async fn welfare_month_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let mut object = "-".to_string();
    let result = async {
        let certified = institution(&peer)?.clone();
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::subsidy::WelfareMonthRequest = parse_json(&bytes)?;
        check_institution(request.institution_code.as_deref(), &certified)?;
        let month = crate::subsidy::parse_month(&request.month)?;
        object = format!("month:{month}");
        let worker = state.clone();
        tokio::task::spawn_blocking(move || {
            crate::subsidy::welfare_month(
                worker.subsidies.as_ref(),
                worker.medical.as_ref(),
                worker.register.as_ref(),
                &certified,
                month,
                now,
            )
        })
        .await
        .map_err(|e| errors::register_unavailable(format!("welfare month failed: {e}")))?
    }
    .await;
    let records = match &result {
        Ok((_, listed)) if !listed.is_empty() => {
            listed.iter().map(|person| audit_record(now, actor(&peer), "verify_welfare", Some(*person), object.clone(), "ok")).collect()
        }
        _ => vec![audit_record(now, actor(&peer), "verify_welfare", None, object.clone(), &outcome(&result, |_| "ok".into()))],
    };
    let audited = state.audit.enqueue(records);
    match audited.and(result).map(|(answer, _)| answer) {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => refuse(&state, error),
    }
}

/// A 公費 payer uploads its recipients' events (JSON Lines): payer certificate, its own number
/// only, audited as `payer_upload`.
async fn payer_upload_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let result = async {
        let payer = match &peer {
            Peer::Known(PeerIdentity::Payer(number)) => number.clone(),
            Peer::Known(PeerIdentity::Institution(_) | PeerIdentity::Insurer(_) | PeerIdentity::Operator(_)) => {
                return Err(errors::wrong_role("public-expense payer"));
            }
            Peer::Unusable(detail) => return Err(errors::wrong_role(&format!("public-expense payer ({detail})"))),
            Peer::Anonymous => return Err(errors::certificate_required()),
        };
        let bytes = read_body_within(body, UPLOAD_BODY_BYTES_MAX, UPLOAD_BODY_TIMEOUT).await?;
        let worker = state.clone();
        tokio::task::spawn_blocking(move || {
            crate::subsidy::import_subsidy_jsonl(worker.subsidies.as_ref(), &bytes[..], Some(&payer), (worker.clock)())
        })
        .await
        .map_err(|e| errors::register_unavailable(format!("import worker failed: {e}")))?
        .map_err(errors::upload_failed)
    }
    .await;
    let code = outcome(&result, |report| format!("applied:{} refused:{}", report.applied, report.rejected_total));
    let result = state.audit.record(vec![audit_record(now, actor(&peer), "payer_upload", None, "-".into(), &code)]).await.and(result);
    match result {
        Ok(report) => {
            tracing::info!(applied = report.applied, already = report.already_applied, rejected = report.rejected_total, "payer upload");
            Json(report).into_response()
        }
        Err(error) => refuse(&state, error),
    }
}

async fn batch_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let result = async {
        let certified = institution(&peer)?.clone();
        let bytes = read_body(body, BATCH_BODY_BYTES_MAX).await?;
        let request: BatchVerifyRequest = parse_json(&bytes)?;
        check_institution(request.institution_code.as_deref(), &certified)?;
        if request.entries.is_empty() || request.entries.len() > BATCH_ENTRIES_MAX {
            return Err(errors::batch_size(request.entries.len(), BATCH_ENTRIES_MAX));
        }
        state.metrics.batch();
        let worker = state.clone();
        // Thousands of lookups: keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let now = (worker.clock)();
            let mut audit = Vec::with_capacity(request.entries.len());
            let results = request
                .entries
                .iter()
                .map(|entry| {
                    let started = Instant::now();
                    let answer = check_institution(entry.institution_code.as_deref(), &certified)
                        .and_then(|()| parse_request(entry, now.date()))
                        .and_then(|query| verify_number_person(worker.register.as_ref(), &worker.lags, &query, now));
                    let person = answer.as_ref().ok().and_then(|(_, person)| *person);
                    let code = outcome(&answer, |(a, _)| a.validity.code.clone());
                    audit.push(audit_record(
                        now,
                        certified.as_str().to_string(),
                        "verify_number_batch",
                        person,
                        entry.insurer_number.chars().take(8).collect(),
                        &code,
                    ));
                    match answer.map(|(answer, _)| answer) {
                        Ok(answer) => {
                            worker.metrics.answer(&answer.validity.code);
                            worker.metrics.verify_latency(started.elapsed());
                            BatchResult { answer: Some(answer), error: None }
                        }
                        Err(error) => {
                            worker.metrics.error(&error.body.code);
                            BatchResult { answer: None, error: Some(*error.body) }
                        }
                    }
                })
                .collect();
            worker.audit.enqueue(audit)?;
            Ok(BatchVerifyResponse { results })
        })
        .await
        .map_err(|e| errors::register_unavailable(format!("batch worker failed: {e}")))?
    }
    .await;
    match result {
        Ok(response) => Json(response).into_response(),
        Err(error) => refuse(&state, error),
    }
}

async fn upload_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let result = async {
        let insurer = match &peer {
            Peer::Known(PeerIdentity::Insurer(number)) => number.clone(),
            Peer::Known(PeerIdentity::Institution(_) | PeerIdentity::Operator(_) | PeerIdentity::Payer(_)) => {
                return Err(errors::wrong_role("insurer"));
            }
            Peer::Unusable(detail) => return Err(errors::wrong_role(&format!("insurer ({detail})"))),
            Peer::Anonymous => return Err(errors::certificate_required()),
        };
        let bytes = read_body_within(body, UPLOAD_BODY_BYTES_MAX, UPLOAD_BODY_TIMEOUT).await?;
        let worker = state.clone();
        tokio::task::spawn_blocking(move || {
            let options =
                ImportOptions { batch_events: BATCH_EVENTS_DEFAULT, only_insurer: Some(insurer), registered_at: (worker.clock)() };
            import_jsonl(worker.register.as_ref(), &bytes[..], &options, |_| {})
        })
        .await
        .map_err(|e| errors::register_unavailable(format!("import worker failed: {e}")))?
        .map_err(errors::upload_failed)
    }
    .await;
    let code = outcome(&result, |report| format!("applied:{} refused:{}", report.applied, report.rejected_total));
    let result = state.audit.record(vec![audit_record(now, actor(&peer), "insurer_upload", None, "-".into(), &code)]).await.and(result);
    match result {
        Ok(report) => {
            state.metrics.import(report.applied, report.rejected_total);
            tracing::info!(applied = report.applied, already = report.already_applied, rejected = report.rejected_total, "insurer upload");
            Json(report).into_response()
        }
        Err(error) => refuse(&state, error),
    }
}

/// Reads a small JSON body from an institution for the card path.
async fn card_request<T: serde::de::DeserializeOwned>(peer: &Peer, body: Body) -> Result<(InstitutionCode, T), CenterError> {
    let certified = institution(peer)?.clone();
    let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
    Ok((certified, parse_json(&bytes)?))
}

fn card_response<T: serde::Serialize>(state: &CenterState, result: Result<T, CenterError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => refuse(state, error),
    }
}

async fn challenge_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>) -> Response {
    let result = institution(&peer).and_then(|code| state.card.challenge(code.as_str(), (state.clock)()));
    card_response(&state, result)
}

/// A challenge for a card holder acting for themselves: no client certificate needed.
async fn patient_challenge_handler(State(state): State<Arc<CenterState>>) -> Response {
    let result = state.card.challenge(crate::card::PATIENT, (state.clock)());
    card_response(&state, result)
}

/// The audit records of what the card authority's feed changed since the last look (links
/// undone by a revocation), taken in before a card request is judged.
fn card_sync(state: &CenterState, now: Timestamp) -> Vec<AuditRecord> {
    state.card.sync(now).into_iter().map(|u| audit_record(now, "jpki".into(), "unlink_card", Some(u.person), u.serial, "revoked")).collect()
}

/// The patient's own access log: who looked at their records, what and when. The card's own
/// signature (PIN) authenticates; no client certificate is needed.
async fn access_log_handler(State(state): State<Arc<CenterState>>, body: Body) -> Response {
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let result = async {
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let proof: onshi_api::card::CardProof = parse_json(&bytes)?;
        let (person, serial) = state.card.holder(&proof, onshi_api::card::Purpose::AccessLog, "", now)?;
        records.push(audit_record(now, crate::card::PATIENT.into(), "access_log", Some(person), serial, "ok"));
        state.audit.record(std::mem::take(&mut records)).await?;
        access_log_of(&state, person).await
    }
    .await;
    if !records.is_empty() {
        let _ = state.audit.record(records).await;
    }
    card_response(&state, result)
}

/// The newest entries of a person's access log (at most `ACCESS_LOG_ENTRIES_MAX`) and their
/// total: what the patient reads, by the access-log request or on their own record.
async fn access_log_of(state: &CenterState, person: i64) -> Result<onshi_api::card::AccessLog, CenterError> {
    let reader = state.audit.reader();
    let limit = onshi_api::card::ACCESS_LOG_ENTRIES_MAX as i64;
    let (total, entries) = tokio::task::spawn_blocking(move || reader.newest_person_entries(person, limit))
        .await
        .map_err(|e| errors::register_unavailable(format!("audit reader failed: {e}")))?
        .map_err(|e| errors::audit_unavailable(e.to_string()))?;
    let entries = entries
        .into_iter()
        .map(|e| onshi_api::card::AccessLogEntry {
            at: e.record.at.to_string(),
            by: e.record.actor,
            action: e.record.action,
            code: e.record.code,
        })
        .collect();
    Ok(onshi_api::card::AccessLog { entries, total: total.max(0) as u64 })
}

/// The holder's own record (coverage, consents, reports, access log) with their card: what
/// the patient's page shows. Sealed in the log like an access-log read, before it is read.
async fn record_handler(State(state): State<Arc<CenterState>>, body: Body) -> Response {
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let result = async {
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let proof: onshi_api::card::CardProof = parse_json(&bytes)?;
        let worker = state.clone();
        let (person, serial, mut record, whole) =
            tokio::task::spawn_blocking(move || worker.card.record(worker.register.as_ref(), &worker.lags, &proof, now))
                .await
                .map_err(|e| errors::register_unavailable(format!("record worker failed: {e}")))??;
        records.push(audit_record(
            now,
            crate::card::PATIENT.into(),
            "view_own_record",
            Some(person),
            serial,
            if whole { "ok" } else { "flagged" },
        ));
        state.audit.record(std::mem::take(&mut records)).await?;
        if !whole {
            return Ok(record);
        }
        record.access_log = access_log_of(&state, person).await?;
        // The home-care consents beside the others (scope `home`, withdrawn the same way); the
        // key stays with the clinic.
        let home = state.home.home_consents_of_person(person).map_err(|e| errors::register_unavailable(e.to_string()))?;
        record.consents.extend(home.into_iter().map(|c| onshi_api::card::PatientConsent {
            institution_code: c.institution,
            scope: crate::card::HOME_SCOPE.to_string(),
            given_at: c.given_at.to_string(),
            available_until: format!("{}235959", c.valid_to.yyyymmdd()),
            in_force: c.valid_from <= now.date() && now.date() <= c.valid_to,
        }));
        Ok(record)
    }
    .await;
    if result.is_err() {
        state.metrics.unauthenticated("PATIENT_PROOF_REFUSED");
    }
    if !records.is_empty() {
        let _ = state.audit.record(records).await;
    }
    card_response(&state, result)
}

async fn reader_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let mut object = "-".to_string();
    let result = async {
        let (code, request): (_, onshi_api::card::RegisterReader) = card_request(&peer, body).await?;
        object = request.reader_id.chars().take(64).collect();
        let outcome = state.card.register_reader(&request, &code, now)?;
        Ok((outcome, serde_json::json!({ "registered": request.reader_id, "institution": code.as_str(), "outcome": outcome })))
    }
    .await;
    // A refused takeover of another institution's reader is audited with its code.
    let code = outcome(&result, |(outcome, _)| (*outcome).to_string());
    let result = state.audit.record(vec![audit_record(now, actor(&peer), "register_reader", None, object, &code)]).await.and(result);
    card_response(&state, result.map(|(_, body)| body))
}

async fn link_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let (person, result) = match card_request::<onshi_api::card::LinkCard>(&peer, body).await {
        Err(e) => (None, Err(e)),
        Ok((code, request)) => {
            let worker = state.clone();
            tokio::task::spawn_blocking(move || {
                let (person, result) = worker.card.link(worker.register.as_ref(), worker.subsidies.as_ref(), &request, &code, now);
                (person.or_else(|| result.is_err().then(|| worker.card.person_hint(&request.proof.certificate)).flatten()), result)
            })
            .await
            .unwrap_or_else(|e| (None, Err(errors::register_unavailable(format!("link worker failed: {e}")))))
        }
    };
    let code = outcome(&result, |_| "ok".into());
    let serial = result.as_ref().map_or("-".to_string(), |linked| linked.serial.clone());
    // A refused registration (an attribute mismatch above all) is audited with the person, so
    // that the patient sees the attempt in their own access log.
    records.push(audit_record(now, actor(&peer), "link_card", person, serial, &code));
    let result = state.audit.record(records).await.and(result);
    card_response(&state, result)
}

async fn verify_card_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let started = Instant::now();
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let mut certificate = None;
    let mut consent = None;
    let mut recorded = false;
    let mut method = None;
    let result = async {
        let (code, request): (_, onshi_api::card::VerifyCard) = card_request(&peer, body).await?;
        certificate = Some(request.proof.certificate.clone());
        consent = Some(request.consent);
        method = Some(request.proof.method);
        recorded = request.chosen_at.is_some();
        let stores =
            crate::card::Stores { register: state.register.as_ref(), home: state.home.as_ref(), subsidies: state.subsidies.as_ref() };
        state.card.verify(&stores, &state.lags, &request, &code, now)
    }
    .await;
    // The headline: a recipient no insurer registers is counted as covered by the 医療扶助.
    let code = outcome(&result, |(answer, _, _)| answer.answer.headline_validity().code.clone());
    let (person, object) = match &result {
        // The method, the serial and the consent scopes given, which the dashboard counts
        // (`onshi_store::audit::tally_kinds`).
        // A smartphone's マイナ保険証 signs as the card does: its certificate says it is a phone.
        Ok((answer, person, smartphone)) => {
            let scopes = consent.as_ref().map(|c| c.scope_codes().join(",")).unwrap_or_default();
            let method = if *smartphone { "smartphone" } else { answer.method.code() };
            (Some(*person), format!("{method}:{}:{scopes}", answer.serial))
        }
        // A refused check still counts, by the method it came with (a body the center could
        // not read has none, and is not a check).
        Err(_) => (certificate.and_then(|c| state.card.person_hint(&c)), method.map_or_else(|| "-".into(), |m| format!("{}:-:", m.code()))),
    };
    // A recorded visual check asked again after an outage (it carries its counter time).
    let action = if recorded { "reverify_card" } else { "verify_card" };
    records.push(audit_record(now, actor(&peer), action, person, object, &code));
    // Like a verification by number, a card verification answers once its entries are queued
    // (FIFO: any later committed entry, such as a view's, proves them in). What it opens, the
    // drug and checkup views, waits for its own commit.
    let audited = state.audit.enqueue(records);
    let result = audited.and(result).map(|(answer, _, _)| answer);
    if let Ok(answer) = &result {
        state.metrics.answer(&answer.answer.validity.code);
        state.metrics.verify_latency(started.elapsed());
    }
    card_response(&state, result)
}

/// A clinic reports the card on its reader as possibly linked to the wrong person. The card
/// keeps working until the insurer confirms; the patient sees the report in their log.
async fn report_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let mut certificate = None;
    let result = async {
        let (code, request): (_, onshi_api::card::ReportLink) = card_request(&peer, body).await?;
        certificate = Some(request.proof.certificate.clone());
        state.card.report(&request.proof, &request.reason, &code, now)
    }
    .await;
    let code = outcome(&result, |_| "ok".into());
    let (person, object) = match &result {
        Ok((person, serial, report)) => (Some(*person), format!("{serial} report {report}")),
        Err(_) => (certificate.and_then(|c| state.card.person_hint(&c)), "-".into()),
    };
    records.push(audit_record(now, actor(&peer), "report_link", person, object, &code));
    let result = state.audit.record(records).await.and(result);
    card_response(&state, result.map(|(_, serial, report_id)| onshi_api::card::ReportFiled { report_id, serial, blocked: false }))
}

async fn medical_handler(state: Arc<CenterState>, peer: Peer, body: Body, scope: crate::medical::Scope) -> Response {
    let now = (state.clock)();
    let (person, result) = match card_request::<onshi_api::medical::MedicalQuery>(&peer, body).await {
        Err(e) => (None, Err(e)),
        Ok((code, query)) => {
            let worker = state.clone();
            tokio::task::spawn_blocking(move || {
                crate::medical::show(worker.register.as_ref(), worker.medical.as_ref(), &worker.card, scope, &query, &code, now)
            })
            .await
            .unwrap_or_else(|e| (None, Err(errors::register_unavailable(format!("medical worker failed: {e}")))))
        }
    };
    let code = outcome(&result, |_| "ok".into());
    let audited = state.audit.record(vec![audit_record(now, actor(&peer), scope.action(), person, "-".into(), &code)]).await;
    match audited.and(result) {
        Ok(crate::medical::Shown::Drugs(answer)) => Json(answer).into_response(),
        Ok(crate::medical::Shown::Checkups(answer)) => Json(answer).into_response(),
        Err(error) => refuse(&state, error),
    }
}

/// The holder flags their own card's link: no client certificate, the card's PIN signature
/// over the reason. The card is blocked until the insurer reviews it.
async fn patient_flag_handler(State(state): State<Arc<CenterState>>, body: Body) -> Response {
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let result = async {
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::card::PatientFlag = parse_json(&bytes)?;
        state.card.flag_by_holder(&request.proof, &request.reason, now)
    }
    .await;
    let code = outcome(&result, |_| "ok".into());
    let (person, object) = match &result {
        Ok((person, serial, report)) => (Some(*person), format!("{serial} report {report}")),
        Err(_) => (None, "-".into()),
    };
    // A refused request on this endpoint proved nothing (anyone can send one with a card's
    // public certificate): counted, never sealed with the patient's id.
    if person.is_some() {
        records.push(audit_record(now, crate::card::PATIENT.into(), "flag_card", person, object, &code));
    } else {
        state.metrics.unauthenticated("PATIENT_PROOF_REFUSED");
    }
    let audited = state.audit.record(records).await;
    card_response(
        &state,
        audited.and(result).map(|(_, serial, report_id)| onshi_api::card::ReportFiled { report_id, serial, blocked: true }),
    )
}

/// オンライン診療: the holder consents from their own device with their own card and PIN; the
/// consent lands in the institution's list (`OQSmuonq`). Audited as `give_online_consent` in
/// the holder's own log.
async fn online_consent_handler(State(state): State<Arc<CenterState>>, body: Body) -> Response {
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let result = async {
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::card::GiveOnlineConsent = parse_json(&bytes)?;
        let until = Date::parse_yyyymmdd(&request.until).map_err(|e| errors::invalid_field("until", &e))?;
        let (person, institution) = state.card.online_consent(&request, now)?;
        let until_number: u32 = until.yyyymmdd().parse().unwrap_or(0);
        let choice = onshi_api::card::HomeCare { kind: onshi_api::card::HomeCareKind::Online, until: until_number };
        let until = crate::home::check(&choice, now.date())?;
        let consent = crate::home::record(state.home.as_ref(), person, &institution, &choice, (now.date(), until), now)?;
        let given = onshi_api::card::OnlineConsentGiven {
            institution_code: institution.as_str().to_string(),
            valid_from: consent.valid_from,
            valid_to: consent.valid_to,
        };
        Ok::<_, CenterError>((person, given))
    }
    .await;
    let person = result.as_ref().ok().map(|(person, _)| *person);
    let object = result.as_ref().map(|(_, g)| g.institution_code.clone()).unwrap_or_else(|_| "-".into());
    let code = outcome(&result, |_| "ok".into());
    records.push(audit_record(now, crate::card::PATIENT.into(), "give_online_consent", person, object, &code));
    let audited = state.audit.enqueue(records);
    card_response(&state, audited.and(result).map(|(_, given)| given))
}

/// The holder withdraws consents given to an institution, with their own card.
async fn withdraw_handler(State(state): State<Arc<CenterState>>, body: Body) -> Response {
    let now = (state.clock)();
    let mut records = card_sync(&state, now);
    let mut object = "-".to_string();
    let result = async {
        let bytes = read_body(body, VERIFY_BODY_BYTES_MAX).await?;
        let request: onshi_api::card::WithdrawConsent = parse_json(&bytes)?;
        object = format!("{}:{}", request.institution_code.chars().take(10).collect::<String>(), request.scopes.join(","));
        let (person, mut withdrawn) = state.card.withdraw(&request, now)?;
        // The home-care consent ends today: no 再照会 from today on.
        if request.scopes.iter().any(|s| s == crate::card::HOME_SCOPE)
            && state
                .home
                .end_home_consents(person, &request.institution_code, now.date())
                .map_err(|e| errors::register_unavailable(e.to_string()))?
                > 0
        {
            withdrawn.push(crate::card::HOME_SCOPE.to_string());
        }
        Ok::<_, CenterError>((person, withdrawn))
    }
    .await;
    let code = outcome(&result, |(_, withdrawn)| if withdrawn.is_empty() { "none_in_force".into() } else { "ok".into() });
    // As for a flag: only a proven holder's withdrawal is sealed with their id.
    let person = result.as_ref().ok().map(|(person, _)| *person);
    if person.is_some() {
        records.push(audit_record(now, crate::card::PATIENT.into(), "withdraw_consent", person, object, &code));
    } else {
        state.metrics.unauthenticated("PATIENT_PROOF_REFUSED");
    }
    let audited = state.audit.record(records).await;
    card_response(&state, audited.and(result).map(|(_, withdrawn)| serde_json::json!({ "withdrawn": withdrawn })))
}

fn insurer_of(peer: &Peer) -> Result<onshi_domain::ids::InsurerNumber, CenterError> {
    match peer {
        Peer::Known(PeerIdentity::Insurer(number)) => Ok(number.clone()),
        Peer::Known(PeerIdentity::Institution(_) | PeerIdentity::Operator(_) | PeerIdentity::Payer(_)) => {
            Err(errors::wrong_role("insurer"))
        }
        Peer::Unusable(detail) => Err(errors::wrong_role(&format!("insurer ({detail})"))),
        Peer::Anonymous => Err(errors::certificate_required()),
    }
}

/// The open wrong-link reports about the calling insurer's members.
async fn link_reports_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>) -> Response {
    let result = insurer_of(&peer).and_then(|insurer| state.card.reports_for(&insurer, (state.clock)().date()));
    card_response(&state, result)
}

/// The insurer's review of a report about one of its members.
async fn link_review_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    let now = (state.clock)();
    let mut object = "-".to_string();
    let (person, result) = async {
        let insurer = match insurer_of(&peer) {
            Ok(insurer) => insurer,
            Err(e) => return (None, Err(e)),
        };
        let request: onshi_api::card::ReviewLink = match read_body(body, VERIFY_BODY_BYTES_MAX).await.and_then(|b| parse_json(&b)) {
            Ok(request) => request,
            Err(e) => return (None, Err(e)),
        };
        object = format!("report {}", request.report_id);
        state.card.review(state.register.as_ref(), &request, &insurer, now)
    }
    .await;
    let code = outcome(&result, |report| report.state.clone());
    let audited = state.audit.record(vec![audit_record(now, actor(&peer), "review_link", person, object, &code)]).await;
    card_response(&state, audited.and(result).map(|report| serde_json::json!({ "report_id": report.report_id, "state": report.state })))
}

async fn drugs_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    medical_handler(state, peer, body, crate::medical::Scope::Drug).await
}

async fn checkups_handler(State(state): State<Arc<CenterState>>, Extension(peer): Extension<Peer>, body: Body) -> Response {
    medical_handler(state, peer, body, crate::medical::Scope::Checkup).await
}

async fn health_handler(State(state): State<Arc<CenterState>>) -> Response {
    state.metrics.health();
    Json(serde_json::json!({
        "status": "ok",
        "service": "onshi-center",
        "version": env!("CARGO_PKG_VERSION"),
        "time": (state.clock)().to_string(),
    }))
    .into_response()
}

async fn stats_handler(State(state): State<Arc<CenterState>>) -> Response {
    let register = state.register.clone();
    match tokio::task::spawn_blocking(move || register.counts()).await {
        Ok(Ok(counts)) => Json(serde_json::json!({
            "persons": counts.persons, "coverages": counts.coverages, "events": counts.events,
            "uptime_seconds": state.started.elapsed().as_secs(),
        }))
        .into_response(),
        Ok(Err(e)) => refuse(&state, errors::register_unavailable(e.to_string())),
        Err(e) => refuse(&state, errors::register_unavailable(e.to_string())),
    }
}

async fn metrics_handler(State(state): State<Arc<CenterState>>) -> Response {
    let mut text = state.metrics.render();
    let index = state.register.card_index_counts();
    let _ = std::fmt::Write::write_fmt(
        &mut text,
        format_args!(
            "# HELP onshi_card_index_reads_total Card and person views by where they were read: the card index in memory, or the register because the index was behind (or given up).\n\
             # TYPE onshi_card_index_reads_total counter\n\
             onshi_card_index_reads_total{{from=\"index\"}} {}\n\
             onshi_card_index_reads_total{{from=\"register\"}} {}\n\
             # HELP onshi_card_index_persons Persons whose coverages the card index holds (0: none kept, or not built yet).\n\
             # TYPE onshi_card_index_persons gauge\n\
             onshi_card_index_persons {}\n",
            index.served, index.behind, index.persons
        ),
    );
    // The checks this month, from the audit log's tallies: the dashboard's own figures.
    let reader = state.clone();
    text.push_str(&tokio::task::spawn_blocking(move || crate::dashboard::metrics_text(&reader)).await.unwrap_or_default());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The operator's pages answer an operator's certificate, or a browser on this machine (an
/// operator without one comes through an SSH tunnel); they name institutions and insurers.
async fn operator_only(request: Request, next: axum::middleware::Next) -> Response {
    let local = request.extensions().get::<Remote>().is_some_and(|remote| remote.0.to_canonical().is_loopback());
    let operator = matches!(request.extensions().get::<Peer>(), Some(Peer::Known(PeerIdentity::Operator(_))));
    if !local && !operator {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "運用者ダッシュボードは、運用者の証明書か、センターのマシン上（127.0.0.1）からだけ開けます。\n\
             the operator's dashboard answers an operator certificate (onshi center pki issue-operator) or loopback only",
        )
            .into_response();
    }
    next.run(request).await
}

async fn openapi_handler() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn fallback(State(state): State<Arc<CenterState>>, request: Request) -> Response {
    refuse(&state, errors::not_found(request.uri().path()))
}

/// The API document, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// 429 with `Retry-After` (seconds) and the action in Japanese: one answer for every limit.
fn too_many_requests(wait: u64) -> Response {
    let mut response = errors::rate_limited(wait).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
    response
}

/// Refuses a request without a usable client certificate before any handler runs, and a
/// certified caller over its rate. Neither is sealed into the audit log (anyone could fill
/// it): both are counted in the metrics.
async fn certified_only(State(state): State<Arc<CenterState>>, request: Request, next: axum::middleware::Next) -> Response {
    let caller = match request.extensions().get::<Peer>() {
        Some(Peer::Known(PeerIdentity::Institution(code))) => code.as_str().to_string(),
        Some(Peer::Known(PeerIdentity::Insurer(number))) => format!("insurer:{number}"),
        Some(Peer::Known(PeerIdentity::Payer(number))) => format!("payer:{}", number.as_str()),
        // An operator's certificate opens the dashboard, not the API.
        Some(Peer::Known(PeerIdentity::Operator(_))) => {
            state.metrics.unauthenticated("OPERATOR_ON_THE_API");
            return errors::wrong_role("medical-institution or insurer (an operator's certificate opens /dashboard only)").into_response();
        }
        Some(Peer::Unusable(detail)) => {
            state.metrics.unauthenticated("CERTIFICATE_WITHOUT_ROLE");
            return errors::wrong_role(&format!("a certified one ({detail})")).into_response();
        }
        Some(Peer::Anonymous) | None => {
            state.metrics.unauthenticated("CLIENT_CERTIFICATE_REQUIRED");
            return errors::certificate_required().into_response();
        }
    };
    if let Err(wait) = state.rate.take(&caller, Instant::now()) {
        state.metrics.rate_limited();
        return too_many_requests(wait);
    }
    next.run(request).await
}

/// The patients' endpoints take no certificate: each address has a rate of its own, so that
/// one host cannot use up the challenges or the connections every patient needs.
async fn patient_rate(State(state): State<Arc<CenterState>>, request: Request, next: axum::middleware::Next) -> Response {
    let address = request.extensions().get::<Remote>().map_or_else(|| "-".to_string(), |r| r.0.to_string());
    if let Err(wait) = state.patient_rate.take(&address, Instant::now()) {
        state.metrics.unauthenticated("PATIENT_RATE_LIMITED");
        return too_many_requests(wait);
    }
    next.run(request).await
}

/// The router with every endpoint.
pub fn router(state: Arc<CenterState>) -> Router {
    let certified = Router::new()
        .route("/v1/verify/number", post(verify_handler))
        .route("/v1/verify/number/batch", post(batch_handler))
        .route("/v1/verify/attributes", post(attributes_handler))
        .route("/v1/insurer/events", post(upload_handler))
        .route("/v1/payer/events", post(payer_upload_handler))
        .route("/v1/verify/subsidy", post(subsidy_handler))
        .route("/v1/verify/welfare-month", post(welfare_month_handler))
        .route("/v1/verify/home", post(home_reverify_handler))
        .route("/v1/verify/home-list", post(home_list_handler))
        .route("/v1/card/challenge", post(challenge_handler))
        .route("/v1/readers", post(reader_handler))
        .route("/v1/card/link", post(link_handler))
        .route("/v1/card/report", post(report_handler))
        .route("/v1/insurer/link-reports", post(link_reports_handler))
        .route("/v1/insurer/link-review", post(link_review_handler))
        .route("/v1/verify/card", post(verify_card_handler))
        .route("/v1/medical/drugs", post(drugs_handler))
        .route("/v1/medical/checkups", post(checkups_handler))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), certified_only));
    let operator = Router::new()
        .route("/dashboard", get(crate::dashboard::page_handler))
        .route("/dashboard/{table}", get(crate::dashboard::csv_handler))
        .route_layer(axum::middleware::from_fn(operator_only));
    let patients = Router::new()
        .route("/v1/patient/challenge", post(patient_challenge_handler))
        .route("/v1/patient/access-log", post(access_log_handler))
        .route("/v1/patient/record", post(record_handler))
        .route("/v1/patient/flag", post(patient_flag_handler))
        .route("/v1/patient/consent/withdraw", post(withdraw_handler))
        .route("/v1/patient/online-consent", post(online_consent_handler))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), patient_rate));
    Router::new()
        .route("/v1/health", get(health_handler))
        .route("/v1/openapi.json", get(openapi_handler))
        .route("/v1/stats", get(stats_handler))
        .route("/metrics", get(metrics_handler))
        .merge(patients)
        .merge(operator)
        .merge(certified)
        .fallback(fallback)
        .with_state(state)
}

/// A running center: its address, and a way to stop it.
pub struct RunningCenter {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Dropped on a stop; `connections_done` then ends when the last connection has ended.
    connections: tokio::sync::mpsc::Sender<()>,
    connections_done: tokio::sync::mpsc::Receiver<()>,
    state: Arc<CenterState>,
}

/// What a stop did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Every connection ended within [`DRAIN_TIMEOUT`].
    pub drained: bool,
    /// Every audit entry queued before the stop is committed.
    pub audit_flushed: bool,
}

impl RunningCenter {
    /// Stops: no new connection is accepted, every open one finishes the request it is on
    /// (bounded by [`DRAIN_TIMEOUT`]) and is closed, then the audit log commits everything
    /// queued (the number path answers once its entries are queued: a stop must not lose them).
    pub async fn shutdown(self) -> Stopped {
        let RunningCenter { shutdown, task, connections, mut connections_done, state, .. } = self;
        let _ = shutdown.send(true);
        let _ = task.await;
        drop(connections);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, connections_done.recv()).await.is_ok();
        if !drained {
            tracing::warn!("some connections were still busy after the drain timeout");
        }
        let audit_flushed = match state.audit.close().await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e.body.detail, "the audit log could not be flushed on stop");
                false
            }
        };
        Stopped { drained, audit_flushed }
    }
}

/// One of an address's anonymous connections, given back when dropped.
struct AddressSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    address: std::net::IpAddr,
}

impl AddressSlot {
    fn take(
        counts: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        address: std::net::IpAddr,
    ) -> Option<AddressSlot> {
        let mut held = counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(address).or_default();
        if *count >= ANONYMOUS_CONNECTIONS_PER_ADDRESS_MAX {
            return None;
        }
        *count += 1;
        Some(AddressSlot { counts: counts.clone(), address })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.address);
            }
        }
    }
}

/// The TLS handshakes in progress, by address, oldest first, so that the oldest of the address
/// holding the most can be dropped for a new one.
#[derive(Default)]
struct Handshakes {
    next: u64,
    by_address: std::collections::HashMap<std::net::IpAddr, std::collections::VecDeque<u64>>,
    running: std::collections::HashMap<u64, (std::net::IpAddr, tokio::task::AbortHandle)>,
}

impl Handshakes {
    /// Registers a handshake task from `address`; over a cap, aborts the oldest of that
    /// address, or of the address holding the most. Returns its id and how many were dropped.
    fn start(&mut self, address: std::net::IpAddr, task: tokio::task::AbortHandle) -> (u64, u32) {
        let id = self.next;
        self.next += 1;
        self.by_address.entry(address).or_default().push_back(id);
        self.running.insert(id, (address, task));
        let mut dropped = 0;
        while self.by_address.get(&address).is_some_and(|ids| ids.len() > HANDSHAKES_PER_ADDRESS_MAX) {
            dropped += self.drop_oldest_of(address);
        }
        while self.running.len() > HANDSHAKES_MAX {
            let Some(busiest) = self.by_address.iter().max_by_key(|(_, ids)| ids.len()).map(|(a, _)| *a) else { break };
            dropped += self.drop_oldest_of(busiest);
        }
        (id, dropped)
    }

    fn drop_oldest_of(&mut self, address: std::net::IpAddr) -> u32 {
        let Some(ids) = self.by_address.get_mut(&address) else { return 0 };
        let Some(oldest) = ids.pop_front() else { return 0 };
        if ids.is_empty() {
            self.by_address.remove(&address);
        }
        match self.running.remove(&oldest) {
            Some((_, task)) => {
                task.abort();
                1
            }
            None => 0,
        }
    }

    fn finish(&mut self, id: u64) {
        if let Some((address, _)) = self.running.remove(&id)
            && let Some(ids) = self.by_address.get_mut(&address)
        {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_address.remove(&address);
            }
        }
    }
}

fn peer_of(connection: &rustls::ServerConnection) -> Peer {
    match connection.peer_certificates().and_then(|chain| chain.first()) {
        None => Peer::Anonymous,
        Some(cert) => match onshi_pki::peer_identity(cert.as_ref()) {
            Ok(identity) => Peer::Known(identity),
            Err(e) => Peer::Unusable(e.to_string()),
        },
    }
}

/// Closes a connection whose handshake was refused without resetting it. In TLS 1.3 the client
/// sends its request right after its Finished, before it learns the verdict; closing a socket
/// with that request unread makes the kernel send a reset, and a client on Windows then drops
/// the alert that says why (`certificate_revoked`) unread. So: FIN first, then read and drop
/// what arrives until the client closes, a byte limit or a timeout.
async fn close_gently(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buffer = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSED_DRAIN_BYTES_MAX {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSED_LINGER, drain).await;
}

/// Binds `listener` and serves the API on it until shut down.
pub fn serve(listener: TcpListener, tls: rustls::ServerConfig, state: Arc<CenterState>) -> std::io::Result<RunningCenter> {
    serve_with_revocation(listener, tls, None, state)
}

/// As [`serve`]; `revocation` is the verifier inside `tls`, asked before each request whether
/// the peer's certificate was revoked after its connection was opened (a kept-alive
/// connection would otherwise outlive the revocation).
pub fn serve_with_revocation(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    revocation: Option<Arc<onshi_pki::revocation::RevocationVerifier>>,
    state: Arc<CenterState>,
) -> std::io::Result<RunningCenter> {
    let addr = listener.local_addr()?;
    // What the card authority published while the center was down (a CRL, the binding feed)
    // is taken in before the first request; links it undid are audited.
    let undone = card_sync(&state, (state.clock)());
    if !undone.is_empty() && state.audit.enqueue(undone).is_err() {
        tracing::error!("the audit log refused the links undone at start");
    }
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let app = router(state.clone());
    let (shutdown, mut stopped) = watch::channel(false);
    let (connections, connections_done) = tokio::sync::mpsc::channel::<()>(1);
    let certified = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let anonymous = Arc::new(Semaphore::new(ANONYMOUS_CONNECTIONS_MAX));
    let handshakes = Arc::new(std::sync::Mutex::new(Handshakes::default()));
    let lingering = Arc::new(Semaphore::new(LINGERING_MAX));
    let anonymous_by_address: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> = Arc::default();
    let metrics_state = state.clone();
    let tracker = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            let revocation = revocation.clone();
            let (certified, anonymous) = (certified.clone(), anonymous.clone());
            let registry = handshakes.clone();
            let lingering = lingering.clone();
            let anonymous_by_address = anonymous_by_address.clone();
            let metrics = metrics_state.clone();
            let tracker = tracker.clone();
            let mut stopping = stopped.clone();
            // The handshake runs in its own task so that it can be dropped for a newer one.
            let (id_sender, id_receiver) = tokio::sync::oneshot::channel::<u64>();
            let handshake = tokio::spawn(async move {
                let id = id_receiver.await.unwrap_or(u64::MAX);
                let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream).into_fallible()).await;
                registry.lock().unwrap_or_else(|p| p.into_inner()).finish(id);
                let tls = match outcome {
                    Ok(Ok(tls)) => tls,
                    Ok(Err((e, stream))) => {
                        tracing::debug!(error = %e, "TLS handshake refused");
                        metrics.metrics.unauthenticated("HANDSHAKE_REFUSED");
                        // Lingering is bounded too: past the cap, a refused connection is
                        // simply dropped (its client may then miss why).
                        if let Ok(_lingering) = lingering.clone().try_acquire_owned() {
                            close_gently(stream).await;
                        }
                        return;
                    }
                    Err(_) => {
                        metrics.metrics.unauthenticated("HANDSHAKE_TIMEOUT");
                        return;
                    }
                };
                let peer = peer_of(tls.get_ref().1);
                let address = remote.ip();
                // Certified clients and anonymous ones draw on pools of their own; an address
                // holds at most a few of the anonymous ones.
                let _per_address = match &peer {
                    Peer::Anonymous => match AddressSlot::take(&anonymous_by_address, address) {
                        Some(slot) => Some(slot),
                        None => {
                            metrics.metrics.unauthenticated("ANONYMOUS_CONNECTIONS_PER_ADDRESS_FULL");
                            return;
                        }
                    },
                    _ => None,
                };
                let pool = if matches!(peer, Peer::Anonymous) { &anonymous } else { &certified };
                let Ok(_permit) = pool.clone().try_acquire_owned() else {
                    metrics.metrics.unauthenticated(if matches!(peer, Peer::Anonymous) {
                        "ANONYMOUS_CONNECTIONS_FULL"
                    } else {
                        "CONNECTIONS_FULL"
                    });
                    return;
                };
                let _tracker = tracker;
                let serial = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| onshi_pki::revocation::serial_of_der(cert.as_ref()).ok());
                let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    let revoked = match (&revocation, &serial) {
                        (Some(revocation), Some(serial)) => revocation.is_revoked(serial),
                        _ => false,
                    };
                    request.extensions_mut().insert(peer.clone());
                    request.extensions_mut().insert(Remote(address));
                    let app = app.clone();
                    async move {
                        if revoked {
                            tracing::info!(code = "CERTIFICATE_REVOKED", "refused on a connection opened before the revocation");
                            let mut response = errors::certificate_revoked().into_response();
                            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                            return Ok(response);
                        }
                        tower::ServiceExt::oneshot(app, request.map(Body::new)).await
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), service);
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    _ = stopping.changed() => {
                        // A stop: finish the request in flight, then close.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
            let (id, dropped) = handshakes.lock().unwrap_or_else(|p| p.into_inner()).start(remote.ip(), handshake.abort_handle());
            for _ in 0..dropped {
                metrics_state.metrics.unauthenticated("HANDSHAKE_DROPPED_FOR_NEWER");
            }
            let _ = id_sender.send(id);
        }
    });
    Ok(RunningCenter { addr, shutdown, task, connections, connections_done, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_from_one_address_drops_its_own_oldest_and_never_a_quiet_address() {
        let mut handshakes = Handshakes::default();
        let never = || tokio::spawn(std::future::pending::<()>()).abort_handle();
        let flood: std::net::IpAddr = [10, 0, 0, 66].into();
        let clinic: std::net::IpAddr = [192, 168, 1, 20].into();
        let (clinic_id, _) = handshakes.start(clinic, never());
        let mut dropped = 0;
        for _ in 0..5_000 {
            dropped += handshakes.start(flood, never()).1;
        }
        assert_eq!(dropped as usize, 5_000 - HANDSHAKES_PER_ADDRESS_MAX, "the flood keeps its own 256 newest");
        assert!(handshakes.running.contains_key(&clinic_id), "the clinic's handshake was never dropped");
        // Many addresses: the total stays capped, and the busiest loses first.
        for i in 0..8u8 {
            for _ in 0..HANDSHAKES_PER_ADDRESS_MAX {
                handshakes.start([10, 0, 1, i].into(), never());
            }
        }
        assert!(handshakes.running.len() <= HANDSHAKES_MAX);
        assert!(handshakes.running.contains_key(&clinic_id), "the quiet address keeps its one handshake");
        handshakes.finish(clinic_id);
        assert!(!handshakes.running.contains_key(&clinic_id));
    }
}
