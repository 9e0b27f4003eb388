//! A client of the center API over HTTPS with a client certificate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::card::Challenge;

use crate::events::ImportReport;
use crate::verify::{BatchVerifyRequest, BatchVerifyResponse, ErrorBody, VerifyAnswer, VerifyNumberRequest};

/// What went wrong talking to the center.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the TLS material: {0}")]
    Tls(String),
    /// The center could not be reached, or the connection failed (DNS, TCP, TLS).
    #[error("cannot reach the center at {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    /// The center answered with an error it explains.
    #[error("the center refused the request ({status}): {} — {}", .body.error.code, .body.error.detail)]
    Refused { status: u16, body: Box<ErrorBody> },
    /// The center answered something this client does not understand.
    #[error("unexpected answer from the center ({status}): {text}")]
    Unexpected { status: u16, text: String },
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://host:port`.
    pub base_url: String,
    /// The center CA certificate (PEM) that the server certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// The client certificate and its private key (PEM), or none to connect anonymously.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub timeout: Duration,
}

/// A connection pool to the center.
#[derive(Clone, Debug)]
pub struct CenterClient {
    http: reqwest::Client,
    base_url: String,
    /// Challenges the center handed out on answers for this client's institution (a card
    /// check's answer carries the next one), newest last, each with when it arrived.
    kept: Arc<Mutex<VecDeque<(Challenge, Instant)>>>,
}

/// How long a kept challenge is used: the center allows 60 seconds from issue; what is left
/// covers the way back, a slow card and a PIN typed with care.
pub const KEPT_CHALLENGE_SECONDS: u64 = 30;
/// Kept challenges at most: one per check in flight is enough.
const KEPT_MAX: usize = 8;

impl CenterClient {
    pub fn new(config: ClientConfig) -> Result<CenterClient, ClientError> {
        let ca = reqwest::Certificate::from_pem(&config.ca_pem).map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
        let mut builder =
            reqwest::Client::builder().tls_certs_only([ca]).https_only(true).timeout(config.timeout).pool_max_idle_per_host(64);
        if let Some((cert, key)) = &config.identity_pem {
            let mut both = cert.clone();
            both.extend_from_slice(b"\n");
            both.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&both).map_err(|e| ClientError::Tls(format!("client certificate or key: {e}")))?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(CenterClient { http, base_url: config.base_url.trim_end_matches('/').to_string(), kept: Arc::default() })
    }

    /// Keeps a challenge the center handed out on an answer, for the next card check.
    pub fn keep_challenge(&self, challenge: Challenge) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT_MAX {
            kept.pop_front();
        }
        kept.push_back((challenge, Instant::now()));
    }

    /// The newest kept challenge still young enough to use, taken (each is used once); older
    /// ones are forgotten.
    pub fn take_kept_challenge(&self) -> Option<Challenge> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|(_, at)| at.elapsed() < Duration::from_secs(KEPT_CHALLENGE_SECONDS));
        kept.pop_back().map(|(challenge, _)| challenge)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{}", self.base_url, crate::API_PREFIX, path)
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ClientError> {
        let response = response.map_err(|source| ClientError::Transport { url: url.to_string(), source })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|_| ClientError::Unexpected { status, text });
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ClientError::Refused { status, body: Box::new(body) }),
            Err(_) => Err(ClientError::Unexpected { status, text }),
        }
    }

    pub async fn verify_number(&self, request: &VerifyNumberRequest) -> Result<VerifyAnswer, ClientError> {
        let url = self.url("/verify/number");
        let response = self.http.post(&url).json(request).send().await;
        self.decode(&url, response).await
    }

    /// Asks by attributes (a claim billed as 不詳); see [`crate::verify::VerifyAttributesRequest`].
    pub async fn verify_attributes(&self, request: &crate::verify::VerifyAttributesRequest) -> Result<VerifyAnswer, ClientError> {
        let url = self.url("/verify/attributes");
        let response = self.http.post(&url).json(request).send().await;
        self.decode(&url, response).await
    }

    pub async fn verify_batch(&self, request: &BatchVerifyRequest) -> Result<BatchVerifyResponse, ClientError> {
        let url = self.url("/verify/number/batch");
        let response = self.http.post(&url).json(request).send().await;
        self.decode(&url, response).await
    }

    /// Uploads insurer events as JSON Lines (insurer certificate required).
    pub async fn upload_events(&self, jsonl: String) -> Result<ImportReport, ClientError> {
        let url = self.url("/insurer/events");
        let response = self.http.post(&url).header("content-type", "application/x-ndjson").body(jsonl).send().await;
        self.decode(&url, response).await
    }

    /// Uploads a 公費 payer's events as JSON Lines (payer certificate required).
    pub async fn upload_subsidy_events(&self, jsonl: String) -> Result<ImportReport, ClientError> {
        let url = self.url("/payer/events");
        let response = self.http.post(&url).header("content-type", "application/x-ndjson").body(jsonl).send().await;
        self.decode(&url, response).await
    }

    /// Asks about one 受給者証 by its numbers and the patient's birth date.
    pub async fn verify_subsidy(
        &self,
        request: &crate::subsidy::VerifySubsidyRequest,
    ) -> Result<crate::subsidy::SubsidyAnswer, ClientError> {
        let url = self.url("/verify/subsidy");
        let response = self.http.post(&url).json(request).send().await;
        self.decode(&url, response).await
    }

    /// The month's 医療扶助 recipients at this institution (`OQSmutic01/02`).
    pub async fn welfare_month(
        &self,
        request: &crate::subsidy::WelfareMonthRequest,
    ) -> Result<crate::subsidy::WelfareMonthAnswer, ClientError> {
        let url = self.url("/verify/welfare-month");
        let response = self.http.post(&url).json(request).send().await;
        self.decode(&url, response).await
    }

    /// 再照会 under a home-care consent, by its key.
    pub async fn verify_home(&self, request: &crate::card::HomeReverify) -> Result<VerifyAnswer, ClientError> {
        let url = self.url("/verify/home");
        let response = self.http.post(&url).json(request).send().await;
        self.decode(&url, response).await
    }

    /// The home-care consents given on some days, with each patient's coverage (`OQSmuhvq/onq`).
    pub async fn home_list(&self, request: &crate::card::HomeListRequest) -> Result<crate::card::HomeList, ClientError> {
        let url = self.url("/verify/home-list");
        let response = self.http.post(&url).json(request).send().await;
        self.decode(&url, response).await
    }

    /// A POST of a JSON body to an API path (`/card/challenge`, …), decoded as `T`.
    pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self.http.post(&url).json(body).send().await;
        self.decode(&url, response).await
    }

    /// The center's health document.
    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        let url = self.url("/health");
        let response = self.http.get(&url).send().await;
        self.decode(&url, response).await
    }

    /// A raw POST of any body, for tests of malformed input.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Result<(u16, String), ClientError> {
        let url = format!("{}{}", self.base_url, path);
        let response = self
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|source| ClientError::Transport { url: url.clone(), source })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| ClientError::Transport { url, source })?;
        Ok((status, text))
    }

    /// A raw GET, for health, metrics and the OpenAPI document.
    pub async fn get_raw(&self, path: &str) -> Result<(u16, String), ClientError> {
        let url = format!("{}{}", self.base_url, path);
        let response = self.http.get(&url).send().await.map_err(|source| ClientError::Transport { url: url.clone(), source })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| ClientError::Transport { url, source })?;
        Ok((status, text))
    }
}
