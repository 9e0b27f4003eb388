//! The card flows against the center: take a challenge, have the card or the reader prove it,
//! then link (初回登録) or verify. The challenge is requested right before the proof, as it
//! expires after 60 seconds.

use onshi_api::card::{CardAnswer, CardProof, Challenge, ConsentChoice, FlagLink, LinkCard, Linked, Method, VerifyCard};
use onshi_api::client::{CenterClient, ClientError};

use crate::{CardReader, ReaderError};

/// How the holder is authenticated at the reader.
#[derive(Clone, Copy, Debug)]
pub enum How<'a> {
    Pin(&'a str),
    Face,
    /// Visual mode must have been switched on with the facility password.
    Visual,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Reader(#[from] ReaderError),
    #[error(transparent)]
    Center(#[from] ClientError),
}

/// A fresh challenge and the proof for it.
pub async fn prove(client: &CenterClient, reader: &mut dyn CardReader, how: How<'_>) -> Result<CardProof, FlowError> {
    let certificate = reader.certificate()?;
    let Challenge { challenge, .. } = client.post_json(INSTITUTION_CHALLENGE, &serde_json::json!({})).await?;
    let mut proof = CardProof { challenge: challenge.clone(), certificate, method: Method::Pin, card_signature: None, attestation: None };
    match how {
        How::Pin(pin) => proof.card_signature = Some(onshi_domain::hex::encode(&reader.sign_with_pin(pin, challenge.as_bytes())?)),
        How::Face => {
            proof.method = Method::Face;
            proof.attestation = Some(reader.attest_face(&challenge)?);
        }
        How::Visual => {
            proof.method = Method::Visual;
            proof.attestation = Some(reader.attest_visual(&challenge)?);
        }
    }
    Ok(proof)
}

/// Verification by card with the consents chosen on the reader.
pub async fn verify(
    client: &CenterClient,
    reader: &mut dyn CardReader,
    how: How<'_>,
    consent: ConsentChoice,
    date_of_care: Option<String>,
) -> Result<CardAnswer, FlowError> {
    let proof = prove(client, reader, how).await?;
    Ok(client.post_json("/verify/card", &VerifyCard { proof, date_of_care, consent }).await?)
}

/// The card's numbers of the coverage to link at 初回登録.
#[derive(Clone, Debug)]
pub struct CoverageNumbers {
    pub insurer_number: String,
    pub symbol: Option<String>,
    pub number: String,
    pub branch: String,
}

/// 初回登録 on the PIN path.
pub async fn link(client: &CenterClient, reader: &mut dyn CardReader, pin: &str, numbers: CoverageNumbers) -> Result<Linked, FlowError> {
    let attributes = reader.attributes()?;
    let proof = prove(client, reader, How::Pin(pin)).await?;
    let request = LinkCard {
        proof,
        attributes,
        insurer_number: numbers.insurer_number,
        symbol: numbers.symbol,
        number: numbers.number,
        branch: numbers.branch,
    };
    Ok(client.post_json("/card/link", &request).await?)
}

/// Where an institution's reader takes its challenges.
pub const INSTITUTION_CHALLENGE: &str = "/card/challenge";
/// Where a card holder acting for themselves takes theirs (no client certificate).
pub const PATIENT_CHALLENGE: &str = "/patient/challenge";

/// A PIN proof made with the card alone, no reader: the patient's own requests, the bench.
pub async fn card_pin_proof(
    client: &CenterClient,
    challenge_path: &str,
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
) -> Result<CardProof, FlowError> {
    let Challenge { challenge, .. } = client.post_json(challenge_path, &serde_json::json!({})).await?;
    let signature = card.sign_with_pin(pin, challenge.as_bytes()).map_err(ReaderError::from)?;
    Ok(CardProof {
        challenge,
        certificate: card.certificate_pem().to_string(),
        method: Method::Pin,
        card_signature: Some(onshi_domain::hex::encode(&signature)),
        attestation: None,
    })
}

/// The patient's own access log, with their card's PIN signature.
pub async fn access_log(
    client: &CenterClient,
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
) -> Result<onshi_api::card::AccessLog, FlowError> {
    let proof = card_pin_proof(client, PATIENT_CHALLENGE, card, pin).await?;
    Ok(client.post_json("/patient/access-log", &proof).await?)
}

/// The holder reports their own card's link as wrong: a patient challenge, the card's PIN
/// signature, no clinic certificate needed.
pub async fn flag_as_holder(
    client: &CenterClient,
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
    reason: &str,
) -> Result<serde_json::Value, FlowError> {
    let proof = card_pin_proof(client, PATIENT_CHALLENGE, card, pin).await?;
    Ok(client.post_json("/patient/flag", &onshi_api::card::PatientFlag { proof, reason: reason.to_string() }).await?)
}

/// Reports a suspected wrong link for the card on the reader.
pub async fn flag(client: &CenterClient, reader: &dyn CardReader, reason: &str) -> Result<serde_json::Value, FlowError> {
    let request = FlagLink { certificate: reader.certificate()?, reason: reason.to_string() };
    Ok(client.post_json("/card/flag", &request).await?)
}
