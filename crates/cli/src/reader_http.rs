//! `onshi reader serve`: the simulated card reader driven over HTTP on loopback, as the
//! reception page and tests drive it: place a card, say who stands before the camera, switch
//! visual mode on with the facility password, verify (PIN, face, visual), remove the card.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use onshi_api::card::ConsentChoice;
use onshi_api::client::{CenterClient, ClientError};
use onshi_reader::flow::{self, FlowError, How};
use onshi_reader::{CardReader, Face, ReaderState, SimulatedReader};
use serde::Deserialize;
use tokio::sync::Mutex;

struct Shared {
    reader: Mutex<SimulatedReader>,
    client: CenterClient,
}

fn problem(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

fn flow_problem(error: FlowError) -> Response {
    match error {
        FlowError::Center(ClientError::Refused { status, body }) => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), Json(*body)).into_response()
        }
        FlowError::Center(other) => problem(StatusCode::BAD_GATEWAY, "CENTER_UNREACHABLE", other.to_string()),
        FlowError::Reader(e) => problem(StatusCode::CONFLICT, "READER", e.to_string()),
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let reader = shared.reader.lock().await;
    let card = match reader.state() {
        ReaderState::Empty => serde_json::Value::Null,
        ReaderState::CardPresent { serial } => serde_json::Value::String(serial),
    };
    Json(serde_json::json!({
        "reader_id": reader.reader_id(),
        "card": card,
        "visual_mode": reader.visual_mode(),
        "pin_retries_left": reader.pin_retries_left(),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceCard {
    path: PathBuf,
}

async fn place(State(shared): State<Arc<Shared>>, Json(body): Json<PlaceCard>) -> Response {
    match shared.reader.lock().await.place_card(&body.path) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, "CARD_UNREADABLE", e.to_string()),
    }
}

async fn remove(State(shared): State<Arc<Shared>>) -> Response {
    shared.reader.lock().await.remove_card();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Camera {
    /// `holder` or `stranger`.
    who: String,
}

async fn camera(State(shared): State<Arc<Shared>>, Json(body): Json<Camera>) -> Response {
    let face = match body.who.as_str() {
        "holder" => Face::Holder,
        "stranger" => Face::Stranger,
        other => return problem(StatusCode::BAD_REQUEST, "BAD_FACE", format!("who is holder or stranger, not {other:?}")),
    };
    shared.reader.lock().await.present_face(face);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Visual {
    facility_password: String,
}

async fn visual(State(shared): State<Arc<Shared>>, Json(body): Json<Visual>) -> Response {
    match shared.reader.lock().await.enable_visual_mode(&body.facility_password) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::FORBIDDEN, "WRONG_FACILITY_PASSWORD", e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verify {
    /// `pin`, `face` or `visual`.
    method: String,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    consent: ConsentChoice,
    #[serde(default)]
    date_of_care: Option<String>,
}

async fn verify(State(shared): State<Arc<Shared>>, Json(body): Json<Verify>) -> Response {
    let mut reader = shared.reader.lock().await;
    let how = match (body.method.as_str(), body.pin.as_deref()) {
        ("pin", Some(pin)) => How::Pin(pin),
        ("face", _) => How::Face,
        ("visual", _) => How::Visual,
        _ => return problem(StatusCode::BAD_REQUEST, "BAD_METHOD", "method is pin (with pin), face or visual".into()),
    };
    match flow::verify(&shared.client, &mut *reader, how, body.consent, body.date_of_care).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => flow_problem(e),
    }
}

/// Serves the reader on `listen` until Ctrl-C; prints `listening ADDR` first.
pub async fn serve(reader: SimulatedReader, client: CenterClient, listen: SocketAddr) -> anyhow::Result<()> {
    let shared = Arc::new(Shared { reader: Mutex::new(reader), client });
    let app = Router::new()
        .route("/reader", get(state))
        .route("/reader/card", put(place).delete(remove))
        .route("/reader/camera", post(camera))
        .route("/reader/visual", post(visual))
        .route("/reader/verify", post(verify))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    anyhow::ensure!(addr.ip().is_loopback(), "the reader listens on loopback only, not {addr}");
    println!("listening {addr}");
    eprintln!("onshi reader on http://{addr}/reader (Ctrl-C to stop)");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
