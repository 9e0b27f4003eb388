//! The gateway's work: checks by numbers and by card against the center, falling back to the
//! cache or a visual check when the line or the center is down, and recording each check with
//! what goes with it (queue entry, cache, answer files) in one transaction.

use std::sync::{Arc, Mutex};

use onshi_api::card::ConsentChoice;
use onshi_api::client::{CenterClient, ClientConfig, ClientError};
use onshi_api::verify::{VerifyAnswer, VerifyNumberRequest};
use onshi_domain::date::Timestamp;
use onshi_reader::ReaderFile;
use onshi_reader::flow::{self, FlowError, How};

use crate::card_reader::GatewayReader;
use tokio::sync::Notify;

use crate::check::{self, FileReply, Job, Outcome, Source};
use crate::config::GatewayConfig;
use crate::store::{NewCheck, OutFile, Store, StoreError};

/// The gateway's clock (Japan time); tests inject their own.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(onshi_pki::now)
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {what} {path}: {detail}")]
    File { what: &'static str, path: std::path::PathBuf, detail: String },
    #[error("the center client cannot be set up: {0}")]
    Client(String),
    #[error("{0}")]
    Reader(String),
    /// The card path needs the line; staff switch to visual mode.
    #[error("{0}")]
    CardOffline(String),
}

/// Whether the center answered the last time it was asked.
#[derive(Clone, Debug, Default)]
pub struct Line {
    pub up: Option<bool>,
    pub since: Option<String>,
    pub detail: Option<String>,
    /// Down because the last call ran into the timeout: the center hangs rather than refuses.
    pub hangs: bool,
}

/// The offline reason of a check not sent while the center hangs.
pub const NOT_SENT_WHILE_HANGING: &str =
    "センターが応答しません（直前の照会が時間切れになったため、回線が戻るまではセンターを待たずに受け付けます）";

/// The result of asking, before it is recorded.
pub struct Checked {
    pub outcome: Outcome,
    pub changes: Vec<String>,
    pub method: &'static str,
    pub subject: String,
    queue: Option<Job>,
    cache: Option<(String, String)>,
}

impl Checked {
    pub fn queued(&self) -> bool {
        self.queue.is_some()
    }
}

/// How the card holder is checked at the reader.
#[derive(Clone, Debug)]
pub enum CardHow {
    Pin(String),
    /// An iPhone on a PC/SC reader: its owner confirms with Face ID / Touch ID.
    Phone,
    Face,
    Visual,
}

impl CardHow {
    /// How the reader flow proves it.
    fn flow(&self) -> How<'_> {
        match self {
            CardHow::Pin(pin) => How::Pin(pin),
            CardHow::Phone => How::Phone,
            CardHow::Face => How::Face,
            CardHow::Visual => How::Visual,
        }
    }
}

/// The serial of the card (or phone) on the reader, or what staff read when there is none.
fn placed_serial(reader: &dyn onshi_reader::CardReader) -> Result<String, GatewayError> {
    match reader.state() {
        onshi_reader::ReaderState::Empty => {
            Err(GatewayError::Reader("カードリーダーにカードがありません。カードを置いてください。".into()))
        }
        onshi_reader::ReaderState::CardPresent { serial } => Ok(serial),
    }
}

pub struct Gateway {
    pub config: GatewayConfig,
    pub store: Store,
    pub client: CenterClient,
    pub reader: tokio::sync::Mutex<GatewayReader>,
    clock: Clock,
    /// Wakes the re-verifier when something was queued.
    pub wake: Notify,
    /// Wakes the line's diagnosis when the line goes down or comes back.
    pub line_changed: Notify,
    line: Mutex<Line>,
    diagnosis: Mutex<Option<LineDiagnosis>>,
    /// Counts for `/metrics`.
    pub metrics: crate::metrics::GatewayMetrics,
}

/// What `onshi doctor`'s checks found while the line was down, for the page: the first broken
/// link with its detail and action, or `None` when every link it can check works (then the
/// center itself is failing).
#[derive(Clone, Debug)]
pub struct LineDiagnosis {
    pub at: String,
    pub broken: Option<(&'static str, String, String)>,
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, GatewayError> {
    std::fs::read(path).map_err(|e| GatewayError::File { what, path: path.to_path_buf(), detail: e.to_string() })
}

/// A client of the center as the configuration says (URL, CA, client certificate, timeout).
pub fn client_for(config: &GatewayConfig) -> Result<CenterClient, GatewayError> {
    CenterClient::new(ClientConfig {
        base_url: config.center_url.clone(),
        ca_pem: read("the center CA certificate", &config.center_ca)?,
        identity_pem: Some((read("the client certificate", &config.center_cert)?, read("the client key", &config.center_key)?)),
        timeout: config.center_timeout,
    })
    .map_err(|e| GatewayError::Client(e.to_string()))
}

impl Gateway {
    pub fn open(config: GatewayConfig, clock: Clock) -> Result<Gateway, GatewayError> {
        for dir in [config.req_dir(), config.res_dir(), config.face_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| GatewayError::File { what: "folder", path: dir.clone(), detail: e.to_string() })?;
        }
        let client = client_for(&config)?;
        let reader_file = ReaderFile::load(&config.reader_file).map_err(|e| GatewayError::Reader(e.to_string()))?;
        let reader = match (&config.reader_pcsc, config.reader_simulator) {
            (Some(name), _) => GatewayReader::pcsc(reader_file, name),
            (None, true) => GatewayReader::simulated(reader_file),
            (None, false) => GatewayReader::None,
        };
        let store = Store::open(&config.store)?;
        Ok(Gateway {
            config,
            store,
            client,
            reader: tokio::sync::Mutex::new(reader),
            clock,
            wake: Notify::new(),
            line_changed: Notify::new(),
            line: Mutex::new(Line::default()),
            diagnosis: Mutex::new(None),
            metrics: Default::default(),
        })
    }

    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    pub fn diagnosis(&self) -> Option<LineDiagnosis> {
        self.diagnosis.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_diagnosis(&self, diagnosis: Option<LineDiagnosis>) {
        *self.diagnosis.lock().unwrap_or_else(|p| p.into_inner()) = diagnosis;
    }

    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// A short random tag for file and reception names (the time and process id should the
    /// system's random source fail).
    pub fn tag(&self) -> String {
        onshi_pki::random_hex(4).unwrap_or_else(|_| format!("{:x}{:x}", std::process::id(), self.now().jst_seconds() % 65536))
    }

    pub fn line(&self) -> Line {
        self.line.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note_line(&self, up: bool, detail: Option<String>) {
        self.set_line(up, detail, false);
    }

    /// The line is down because of `error`.
    fn note_down(&self, error: &ClientError) {
        let hangs = matches!(error, ClientError::Transport { source, .. } if source.is_timeout());
        self.set_line(false, Some(error.to_string()), hangs);
    }

    fn set_line(&self, up: bool, detail: Option<String>, hangs: bool) {
        let mut line = self.line.lock().unwrap_or_else(|p| p.into_inner());
        if line.up != Some(up) {
            line.since = Some(self.now().to_string());
            self.line_changed.notify_one();
        }
        line.up = Some(up);
        line.detail = detail;
        line.hangs = hangs;
    }

    /// Whether the center is known to hang: then checks by number are not sent (each would
    /// wait for the whole timeout, and reception with it); the re-verifier's probe, every few
    /// seconds, finds the line back.
    fn hangs(&self) -> bool {
        let line = self.line.lock().unwrap_or_else(|p| p.into_inner());
        line.up == Some(false) && line.hangs
    }

    /// Asks the center's health, so that the page shows the line's state before anyone is
    /// checked. Returns whether the center answered.
    pub async fn probe(&self) -> bool {
        match self.client.health().await {
            Ok(_) => {
                self.note_line(true, None);
                true
            }
            Err(error) if Self::offline_reason(&error).is_none() => {
                self.note_line(true, None);
                true
            }
            Err(error) => {
                self.note_down(&error);
                false
            }
        }
    }

    /// `Some(reason)` when an error means the line or the center is down (as opposed to the
    /// center refusing this request).
    pub fn offline_reason(error: &ClientError) -> Option<String> {
        match error {
            ClientError::Transport { .. } => Some("センターに接続できません（回線またはセンターの停止）".to_string()),
            ClientError::Unexpected { status, .. } if *status >= 500 => Some(format!("センターが応答できません（HTTP {status}）")),
            ClientError::Refused { status: 503, body } => Some(format!("センターが一時的に停止しています（{}）", body.error.code)),
            // Over this clinic's rate: answered from the cache or queued, re-verified shortly.
            ClientError::Refused { status: 429, body } => Some(format!("センターへの確認が集中しています（{}）", body.error.code)),
            _ => None,
        }
    }

    /// Asks the center about a coverage by its numbers; when the line is down, answers from the
    /// cache or as a visual check, to be re-verified.
    pub async fn ask_number(&self, request: &VerifyNumberRequest, reply: Option<FileReply>) -> Result<Checked, GatewayError> {
        let key = check::patient_key(request);
        let subject = subject_of(request);
        let asked = if self.hangs() { None } else { Some(self.client.verify_number(request).await) };
        let (outcome, cache, queue) = match asked {
            None => {
                let job = Job::Number { request: request.clone(), reply };
                (self.offline_outcome(&key, request.limit_consent, NOT_SENT_WHILE_HANGING.to_string())?, None, Some(job))
            }
            Some(Ok(answer)) => {
                self.note_line(true, None);
                let cached = serde_json::to_string(&answer).expect("answers serialise");
                (Outcome::Answered { answer, consents: None, certificate: None }, Some((key.clone(), cached)), None)
            }
            Some(Err(error)) => match Self::offline_reason(&error) {
                None => {
                    self.note_line(true, None);
                    (refused_outcome(error), None, None)
                }
                Some(reason) => {
                    self.note_down(&error);
                    let job = Job::Number { request: request.clone(), reply };
                    (self.offline_outcome(&key, request.limit_consent, reason)?, None, Some(job))
                }
            },
        };
        let changes = self.changes_since_batch(&key, &outcome)?;
        Ok(Checked { outcome, changes, method: "number", subject, queue, cache })
    }

    /// The answer without the center: the cached one for these numbers, or a visual check.
    /// The cache is kept per patient, not per consent: an answer cached for a request that
    /// consented to limit information (限度額) still holds it, so it is taken out unless this
    /// request consents too.
    fn offline_outcome(&self, key: &str, limit_consent: bool, reason: String) -> Result<Outcome, GatewayError> {
        Ok(match self.store.cached(key)? {
            Some((answer, fetched_at)) => match serde_json::from_str::<VerifyAnswer>(&answer) {
                // What an earlier request's paper was worth is not this request's.
                Ok(answer) => Outcome::Cached {
                    answer: VerifyAnswer { document: None, ..check::as_consented(answer, limit_consent) },
                    fetched_at,
                    reason,
                },
                Err(_) => Outcome::Queued { reason },
            },
            None => Outcome::Queued { reason },
        })
    }

    /// What changed since the newest 一括照会 answer for these numbers.
    fn changes_since_batch(&self, key: &str, outcome: &Outcome) -> Result<Vec<String>, GatewayError> {
        if outcome.answer().is_none() {
            return Ok(Vec::new());
        }
        Ok(match self.store.batch_outcome(key, None)? {
            Some((_, before)) => check::changes(Some(&before), outcome),
            None => Vec::new(),
        })
    }

    /// Records a check with its files; a request file's journal row goes in the same
    /// transaction. Wakes the re-verifier when the check was queued.
    pub fn record(&self, checked: &Checked, source: Source, request: Option<(&str, &str)>, files: &[OutFile]) -> Result<i64, GatewayError> {
        let at = self.now().to_string();
        let new = NewCheck {
            at: &at,
            source,
            method: checked.method,
            subject: &checked.subject,
            outcome: &checked.outcome,
            changes: &checked.changes,
            queue: checked.queue.as_ref(),
            cache: checked.cache.as_ref().map(|(k, a)| (k.as_str(), a.as_str())),
        };
        let id = self.store.record(&new, request, files)?;
        self.metrics.check(source, &checked.outcome);
        if checked.queue.is_some() {
            self.wake.notify_one();
        }
        Ok(id)
    }

    /// 初回登録 (利用登録) of the card on the reader, at the counter: the patient agrees with
    /// the card's PIN (or an iPhone's own confirmation; a card issued without a PIN by face).
    /// Whose coverage it links to is the card authority's word. Returns what reception reads.
    pub async fn link_card(&self, how: CardHow) -> Result<String, GatewayError> {
        let mut guard = self.reader.lock().await;
        if matches!(how, CardHow::Visual) {
            return Err(GatewayError::Reader(
                "利用登録は目視ではできません。暗証番号（顔認証マイナンバーカードは顔認証）で行ってください。".into(),
            ));
        }
        let reader = guard.card_reader().map_err(|e| GatewayError::Reader(reader_message(&e)))?;
        placed_serial(reader)?;
        let linked = flow::link_by(&self.client, reader, how.flow()).await;
        if let Err(FlowError::Reader(e)) = &linked {
            guard.reset_after(e);
        }
        match linked {
            Ok(linked) => {
                self.note_line(true, None);
                Ok(format!("利用登録しました（証明書 {}）。続けて資格確認をしてください。", linked.serial))
            }
            Err(FlowError::Reader(e)) => Err(GatewayError::Reader(reader_message(&e))),
            Err(FlowError::Center(error)) => match Self::offline_reason(&error) {
                Some(reason) => {
                    self.note_down(&error);
                    Err(GatewayError::CardOffline(format!("{reason}。利用登録は回線が戻ってから行ってください。")))
                }
                None => {
                    self.note_line(true, None);
                    Err(GatewayError::Reader(match error {
                        ClientError::Refused { body, .. } => format!("利用登録できませんでした: {}", body.error.reception_ja),
                        other => format!("利用登録できませんでした: {other}"),
                    }))
                }
            },
        }
    }

    /// 再照会: a later visit in ongoing home or online care, by the consent's key, without the
    /// card. Needs the line (a home visit confirms again once it is back).
    pub async fn ask_home(&self, key: &str, label: &str) -> Result<Checked, GatewayError> {
        let request = onshi_api::card::HomeReverify { key: key.to_string(), date_of_care: Some(self.now().date().yyyymmdd()) };
        let subject = format!("在宅・オンライン診療の再照会（{label}）");
        match self.client.verify_home(&request).await {
            Ok(answer) => {
                self.note_line(true, None);
                let outcome = Outcome::Answered { answer, consents: None, certificate: None };
                Ok(Checked { outcome, changes: Vec::new(), method: "home", subject, queue: None, cache: None })
            }
            Err(error @ onshi_api::client::ClientError::Refused { .. }) => {
                self.note_line(true, None);
                Ok(Checked { outcome: refused_outcome(error), changes: Vec::new(), method: "home", subject, queue: None, cache: None })
            }
            Err(e) => Err(GatewayError::CardOffline(format!(
                "センターに接続できません（{e}）。再照会は回線が戻ってからもう一度行ってください。保険証・資格確認書があれば目視で確認してください。"
            ))),
        }
    }

    /// A check with the card on the reader. On the PIN and face paths a line failure is an
    /// error telling staff to switch to visual mode; in visual mode it is recorded and queued.
    pub async fn ask_card(&self, how: CardHow, consent: ConsentChoice) -> Result<Checked, GatewayError> {
        let mut guard = self.reader.lock().await;
        let reader = guard.card_reader().map_err(|e| GatewayError::Reader(reader_message(&e)))?;
        let serial = placed_serial(reader)?;
        // The certificate is kept for a visual check, which may have to wait for the line; an
        // Android phone gives it only after its PIN, on the PIN path.
        let certificate = match how {
            CardHow::Visual => reader.certificate().map_err(|e| GatewayError::Reader(reader_message(&e)))?,
            _ => String::new(),
        };
        let method = match &how {
            CardHow::Pin(_) | CardHow::Phone => "pin",
            CardHow::Face => "face",
            CardHow::Visual => "visual",
        };
        let flow_how = how.flow();
        // A visual check confirms coverage only: the medical-information consents need the
        // patient's own PIN or face (the center refuses them otherwise).
        let consent = if matches!(how, CardHow::Visual) { consent.for_visual_check() } else { consent };
        let date_of_care = self.now().date().yyyymmdd();
        let subject = format!("マイナ保険証（証明書 {serial}）");
        let offline = |reason: String| {
            if !matches!(how, CardHow::Visual) {
                return Err(GatewayError::CardOffline(format!(
                    "{reason}。顔認証・暗証番号では確認できません。施設パスワードで目視モードにして、券面の写真で本人確認してください（回線復旧後に自動で再照会します）。"
                )));
            }
            let job =
                Job::CardVisual { certificate: certificate.clone(), serial: serial.clone(), consent, date_of_care: date_of_care.clone() };
            Ok(Checked {
                outcome: Outcome::Queued { reason },
                changes: Vec::new(),
                method,
                subject: subject.clone(),
                queue: Some(job),
                cache: None,
            })
        };
        if self.hangs() {
            guard.end_visual_mode();
            return offline(NOT_SENT_WHILE_HANGING.to_string());
        }
        let verified = flow::verify(&self.client, reader, flow_how, consent, Some(date_of_care.clone())).await;
        // Visual mode was for this patient only: the next one is offered face recognition.
        guard.end_visual_mode();
        if let Err(FlowError::Reader(e)) = &verified {
            guard.reset_after(e);
        }
        match verified {
            Ok(answer) => {
                self.note_line(true, None);
                // A home-care consent: its key stays here for the later visits' 再照会.
                if let (Some(consent), Some(coverage)) = (&answer.home_consent, &answer.answer.coverage) {
                    self.store.record_home_key(consent, &coverage.name, &coverage.birth_date, &self.now().to_string())?;
                }
                let outcome = Outcome::Answered { answer: answer.answer, consents: Some(answer.consents), certificate: answer.certificate };
                Ok(Checked { outcome, changes: Vec::new(), method, subject, queue: None, cache: None })
            }
            Err(FlowError::Reader(e)) => Err(GatewayError::Reader(reader_message(&e))),
            Err(FlowError::Center(error)) => match Self::offline_reason(&error) {
                None => {
                    self.note_line(true, None);
                    Ok(Checked { outcome: refused_outcome(error), changes: Vec::new(), method, subject, queue: None, cache: None })
                }
                Some(reason) => {
                    self.note_down(&error);
                    offline(reason)
                }
            },
        }
    }
}

/// The outcome of a request the center refused (or answered unreadably).
pub fn refused_outcome(error: ClientError) -> Outcome {
    match error {
        ClientError::Refused { body, .. } => Outcome::Refused { error: body.error },
        other => Outcome::Refused {
            error: onshi_api::verify::ApiError {
                code: "ONSHI-GW-CENTER-ANSWER".into(),
                field: None,
                detail: other.to_string(),
                reception_ja: "センターの応答を読めませんでした。時間をおいて再度照会してください。".into(),
                operator_en: "The center answered something the gateway does not understand; check both versions.".into(),
            },
        },
    }
}

/// What staff read when the reader or card fails (PIN errors, lock, face mismatch).
pub(crate) fn reader_message(error: &onshi_reader::ReaderError) -> String {
    use onshi_pki::card::CardError;
    use onshi_reader::ReaderError;
    match error {
        ReaderError::NoCard => "カードリーダーにカードがありません。カードを置いてください。".into(),
        ReaderError::FaceMismatch => "顔認証で本人と確認できませんでした。暗証番号で確認するか、目視モードで確認してください。".into(),
        ReaderError::VisualModeOff => "目視モードになっていません。施設パスワードを入力してください。".into(),
        ReaderError::WrongFacilityPassword => "施設パスワードが違います。".into(),
        ReaderError::Card(CardError::WrongPin { retries_left }) => {
            format!("暗証番号が違います（あと{retries_left}回でロックされます）。")
        }
        ReaderError::Card(CardError::Locked) => {
            "暗証番号がロックされています。顔認証か目視で確認してください。ロック解除は市区町村の窓口です。".into()
        }
        ReaderError::Card(CardError::NoPin) => "このカードは暗証番号のないカードです。顔認証か目視で確認してください。".into(),
        ReaderError::Card(CardError::PinFormat) => "暗証番号は数字4桁です。".into(),
        other => format!("カードを読めませんでした: {other}"),
    }
}

/// The numbers of a check, for the page (no name, no birth date).
pub fn subject_of(request: &VerifyNumberRequest) -> String {
    let mut text = format!("保険者 {}", request.insurer_number.trim());
    if let Some(symbol) = &request.symbol {
        text.push_str(&format!(" 記号 {symbol}"));
    }
    text.push_str(&format!(" 番号 {}", request.number));
    if let Some(branch) = &request.branch {
        text.push_str(&format!(" 枝番 {branch}"));
    }
    text
}
