//! Connection settings shared by every command that talks to the center.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use onshi_api::client::{CenterClient, ClientConfig};

#[derive(clap::Args, Debug, Clone)]
pub struct CenterArgs {
    /// The center's address.
    #[arg(long, env = "ONSHI_CENTER", default_value = "https://127.0.0.1:8443")]
    pub center: String,
    /// The center CA certificate (PEM).
    #[arg(long, env = "ONSHI_CA")]
    pub ca: PathBuf,
    /// This client's certificate (PEM), issued by `onshi center pki`.
    #[arg(long, env = "ONSHI_CERT")]
    pub cert: PathBuf,
    /// This client's private key (PEM).
    #[arg(long, env = "ONSHI_KEY")]
    pub key: PathBuf,
}

impl CenterArgs {
    pub fn client(&self) -> anyhow::Result<CenterClient> {
        let read = |path: &PathBuf, what: &str| std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()));
        let config = ClientConfig {
            base_url: self.center.clone(),
            ca_pem: read(&self.ca, "CA certificate")?,
            identity_pem: Some((read(&self.cert, "client certificate")?, read(&self.key, "client key")?)),
            timeout: Duration::from_secs(30),
        };
        Ok(CenterClient::new(config)?)
    }
}

/// A center refusal as people read it: the code and detail for the vendor, then the action for
/// reception in Japanese.
pub fn explain(error: onshi_api::client::ClientError) -> anyhow::Error {
    match error {
        onshi_api::client::ClientError::Refused { status, body } => {
            anyhow::anyhow!(
                "the center refused the request ({status} {}): {}\n{}",
                body.error.code,
                body.error.detail,
                body.error.reception_ja
            )
        }
        onshi_api::client::ClientError::Transport { url, source } if onshi_pki::revocation::revoked_by_peer(&source) => {
            anyhow::anyhow!(
                "センターがこのクライアント証明書を失効させています（接続を拒否されました）。運用者に新しい証明書の発行を依頼し、届いた証明書と秘密鍵に差し替えてください。\n\
                 the center refused the TLS handshake at {url}: this client certificate is revoked (CERTIFICATE_REVOKED); ask the operator for a new certificate (`onshi center pki issue-institution` or `issue-insurer`) and use it with its key"
            )
        }
        other => anyhow::Error::new(other),
    }
}

/// Reader problems as they are; center refusals with their Japanese action.
pub fn explain_flow(error: onshi_reader::flow::FlowError) -> anyhow::Error {
    match error {
        onshi_reader::flow::FlowError::Center(e) => explain(e),
        onshi_reader::flow::FlowError::Reader(e) => anyhow::Error::new(e),
    }
}
