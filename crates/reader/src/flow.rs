//! The card flows against the center: take a challenge, have the card or the reader prove it
//! for a purpose and with what the patient decided, then link (初回登録), verify, report, or act
//! as the patient. A challenge expires 60 seconds after issue: each card check's answer carries
//! the institution's next one, which the client keeps for half that time, so that a check at
//! the counter is one request; without a kept one the challenge is requested right before the
//! proof.

use onshi_api::card::{
    CardAnswer, CardProof, Challenge, ConsentChoice, LINK_DETAILS, LinkCard, Linked, Method, PatientRecord, Purpose, ReportFiled,
    ReportLink, VerifyCard, WithdrawConsent, card_message, consent_details, withdraw_details,
};
use onshi_api::client::{CenterClient, ClientError};

use crate::{CardReader, ReaderError};

/// How the holder is authenticated at the reader.
#[derive(Clone, Copy, Debug)]
pub enum How<'a> {
    Pin(&'a str),
    /// An iPhone: the owner confirms with Face ID / Touch ID on the phone, which then signs
    /// (the center sees a card signature, as for the PIN).
    Phone,
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

/// Where a proof's challenge came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Kept from an earlier answer: the center may have forgotten it (a restart), so a refusal
    /// of it is worth one more try with a fresh one.
    Kept,
    Fresh,
}

/// The institution's next challenge: a kept one, or a fresh one from the center.
async fn institution_challenge(client: &CenterClient, prefer_kept: bool) -> Result<(String, Source), FlowError> {
    if prefer_kept && let Some(kept) = client.take_kept_challenge() {
        return Ok((kept.challenge, Source::Kept));
    }
    let Challenge { challenge, .. } = client.post_json(INSTITUTION_CHALLENGE, &serde_json::json!({})).await?;
    Ok((challenge, Source::Fresh))
}

/// Whether the center refused a proof for its challenge alone (unknown, expired).
fn challenge_refused(error: &ClientError) -> bool {
    matches!(error, ClientError::Refused { body, .. } if matches!(body.error.code.as_str(), "CHALLENGE_UNKNOWN" | "CHALLENGE_EXPIRED"))
}

/// A fresh challenge and the proof for it: the card (PIN) or the reader (face, visual) signs
/// the purpose, the challenge and `details`.
pub async fn prove(
    client: &CenterClient,
    reader: &mut dyn CardReader,
    how: How<'_>,
    purpose: Purpose,
    details: &str,
) -> Result<CardProof, FlowError> {
    Ok(prove_from(client, reader, how, purpose, details, false).await?.0)
}

async fn prove_from(
    client: &CenterClient,
    reader: &mut dyn CardReader,
    how: How<'_>,
    purpose: Purpose,
    details: &str,
    prefer_kept: bool,
) -> Result<(CardProof, Source), FlowError> {
    let certificate = match how {
        How::Pin(pin) => reader.certificate_with_pin(pin)?,
        _ => reader.certificate()?,
    };
    let (challenge, source) = institution_challenge(client, prefer_kept).await?;
    let mut proof = CardProof { challenge: challenge.clone(), certificate, method: Method::Pin, card_signature: None, attestation: None };
    match how {
        How::Pin(pin) => {
            let signature = reader.sign_with_pin(pin, &card_message(purpose, &challenge, details))?;
            proof.card_signature = Some(onshi_domain::hex::encode(&signature));
        }
        How::Phone => {
            let signature = reader.sign_on_device(&card_message(purpose, &challenge, details))?;
            proof.card_signature = Some(onshi_domain::hex::encode(&signature));
        }
        How::Face => {
            proof.method = Method::Face;
            proof.attestation = Some(reader.attest_face(purpose, &challenge, details)?);
        }
        How::Visual => {
            proof.method = Method::Visual;
            proof.attestation = Some(reader.attest_visual(purpose, &challenge, details)?);
        }
    }
    Ok((proof, source))
}

/// The proof of a verification at the counter: the consents travel inside it.
pub async fn prove_verify(
    client: &CenterClient,
    reader: &mut dyn CardReader,
    how: How<'_>,
    consent: &ConsentChoice,
) -> Result<CardProof, FlowError> {
    prove(client, reader, how, Purpose::Verify, &consent_details(consent, "-")).await
}

/// Verification by card with the consents chosen on the reader: on the challenge the last
/// answer carried when there is one (one request), else on a fresh one (two).
pub async fn verify(
    client: &CenterClient,
    reader: &mut dyn CardReader,
    how: How<'_>,
    consent: ConsentChoice,
    date_of_care: Option<String>,
) -> Result<CardAnswer, FlowError> {
    let details = consent_details(&consent, "-");
    // A retry after a forgotten challenge proves again: free for the PIN already typed and for
    // the face still at the camera, but visual mode ends with its one attestation and an
    // iPhone would ask its owner twice. Those take a fresh challenge.
    let prefer_kept = matches!(how, How::Pin(_) | How::Face);
    let (proof, source) = prove_from(client, reader, how, Purpose::Verify, &details, prefer_kept).await?;
    let request = VerifyCard { proof, date_of_care, consent, chosen_at: None };
    match send_verify(client, &request).await {
        Err(e) if source == Source::Kept && challenge_refused(&e) => {
            let (proof, _) = prove_from(client, reader, how, Purpose::Verify, &details, false).await?;
            Ok(send_verify(client, &VerifyCard { proof, ..request }).await?)
        }
        answer => Ok(answer?),
    }
}

/// Sends a verification by card and keeps the next challenge its answer carries.
pub async fn send_verify(client: &CenterClient, request: &VerifyCard) -> Result<CardAnswer, ClientError> {
    let mut answer: CardAnswer = client.post_json("/verify/card", request).await?;
    if let Some(next) = answer.next_challenge.take() {
        client.keep_challenge(next);
    }
    Ok(answer)
}

/// 初回登録 on the PIN path: the holder agrees to use the card as an insurance card. Whose
/// coverage it links to is the card authority's word, not ours.
pub async fn link(client: &CenterClient, reader: &mut dyn CardReader, pin: &str) -> Result<Linked, FlowError> {
    link_by(client, reader, How::Pin(pin)).await
}

/// 初回登録 by the card's own signature: the PIN, or an iPhone's owner confirming on it.
pub async fn link_by(client: &CenterClient, reader: &mut dyn CardReader, how: How<'_>) -> Result<Linked, FlowError> {
    let proof = prove(client, reader, how, Purpose::Link, LINK_DETAILS).await?;
    Ok(client.post_json("/card/link", &LinkCard { proof }).await?)
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
    purpose: Purpose,
    details: &str,
) -> Result<CardProof, FlowError> {
    // Only an institution's checks carry its next challenge; a holder's own requests ask.
    let challenge = if challenge_path == INSTITUTION_CHALLENGE {
        institution_challenge(client, true).await?.0
    } else {
        client.post_json::<_, Challenge>(challenge_path, &serde_json::json!({})).await?.challenge
    };
    signed_pin_proof(card, pin, purpose, challenge, details)
}

/// The card's PIN proof over a challenge already in hand (the bench signs challenges ahead).
pub fn signed_pin_proof(
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
    purpose: Purpose,
    challenge: String,
    details: &str,
) -> Result<CardProof, FlowError> {
    let signature = card.sign_with_pin(pin, &card_message(purpose, &challenge, details)).map_err(ReaderError::from)?;
    Ok(CardProof {
        challenge,
        certificate: card.certificate_pem().to_string(),
        method: Method::Pin,
        card_signature: Some(onshi_domain::hex::encode(&signature)),
        attestation: None,
    })
}

/// A holder's own proof on a reader (the patient's page at a kiosk or at home): a patient
/// challenge, and the card's signature after the PIN over the purpose and `details`.
pub async fn holder_proof(
    client: &CenterClient,
    reader: &mut dyn CardReader,
    pin: &str,
    purpose: Purpose,
    details: &str,
) -> Result<CardProof, FlowError> {
    let certificate = reader.certificate_with_pin(pin)?;
    let challenge = client.post_json::<_, Challenge>(PATIENT_CHALLENGE, &serde_json::json!({})).await?.challenge;
    let signature = reader.sign_with_pin(pin, &card_message(purpose, &challenge, details))?;
    Ok(CardProof {
        challenge,
        certificate,
        method: Method::Pin,
        card_signature: Some(onshi_domain::hex::encode(&signature)),
        attestation: None,
    })
}

/// The holder's own record (coverage, consents, reports, access log), with the card on a reader.
pub async fn own_record(client: &CenterClient, reader: &mut dyn CardReader, pin: &str) -> Result<PatientRecord, FlowError> {
    let proof = holder_proof(client, reader, pin, Purpose::Record, "").await?;
    Ok(client.post_json("/patient/record", &proof).await?)
}

/// The holder withdraws consents they gave an institution, with the card on a reader.
pub async fn withdraw_on_reader(
    client: &CenterClient,
    reader: &mut dyn CardReader,
    pin: &str,
    institution_code: &str,
    scopes: Vec<String>,
) -> Result<serde_json::Value, FlowError> {
    let proof = holder_proof(client, reader, pin, Purpose::Withdraw, &withdraw_details(institution_code, &scopes)).await?;
    let request = WithdrawConsent { proof, institution_code: institution_code.to_string(), scopes };
    Ok(client.post_json("/patient/consent/withdraw", &request).await?)
}

/// The holder flags their card's link as wrong, with the card on a reader.
pub async fn flag_on_reader(client: &CenterClient, reader: &mut dyn CardReader, pin: &str, reason: &str) -> Result<ReportFiled, FlowError> {
    let proof = holder_proof(client, reader, pin, Purpose::Flag, reason).await?;
    Ok(client.post_json("/patient/flag", &onshi_api::card::PatientFlag { proof, reason: reason.to_string() }).await?)
}

/// The patient's own access log, with their card's PIN signature.
pub async fn access_log(
    client: &CenterClient,
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
) -> Result<onshi_api::card::AccessLog, FlowError> {
    let proof = card_pin_proof(client, PATIENT_CHALLENGE, card, pin, Purpose::AccessLog, "").await?;
    Ok(client.post_json("/patient/access-log", &proof).await?)
}

/// The holder reports their own card's link as wrong: a patient challenge, the card's PIN
/// signature over the reason, no clinic certificate needed. The card is blocked until the
/// insurer reviews it.
pub async fn flag_as_holder(
    client: &CenterClient,
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
    reason: &str,
) -> Result<ReportFiled, FlowError> {
    let proof = card_pin_proof(client, PATIENT_CHALLENGE, card, pin, Purpose::Flag, reason).await?;
    Ok(client.post_json("/patient/flag", &onshi_api::card::PatientFlag { proof, reason: reason.to_string() }).await?)
}

/// The holder withdraws consents given to an institution, with their own card.
pub async fn withdraw_consent(
    client: &CenterClient,
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
    institution_code: &str,
    scopes: Vec<String>,
) -> Result<serde_json::Value, FlowError> {
    let details = withdraw_details(institution_code, &scopes);
    let proof = card_pin_proof(client, PATIENT_CHALLENGE, card, pin, Purpose::Withdraw, &details).await?;
    let request = WithdrawConsent { proof, institution_code: institution_code.to_string(), scopes };
    Ok(client.post_json("/patient/consent/withdraw", &request).await?)
}

/// The holder consents to an institution's online care from their own device, with their own
/// card and PIN.
pub async fn give_online_consent(
    client: &CenterClient,
    card: &mut onshi_pki::card::VirtualCard,
    pin: &str,
    institution_code: &str,
    until: &str,
) -> Result<onshi_api::card::OnlineConsentGiven, FlowError> {
    let details = onshi_api::card::online_consent_details(institution_code, until);
    let proof = card_pin_proof(client, PATIENT_CHALLENGE, card, pin, Purpose::OnlineConsent, &details).await?;
    let request = onshi_api::card::GiveOnlineConsent { proof, institution_code: institution_code.to_string(), until: until.to_string() };
    Ok(client.post_json("/patient/online-consent", &request).await?)
}

/// A clinic reports the card on its reader as possibly linked to the wrong person; the proof
/// (PIN, face or visual) covers the reason.
pub async fn report(client: &CenterClient, reader: &mut dyn CardReader, how: How<'_>, reason: &str) -> Result<ReportFiled, FlowError> {
    let proof = prove(client, reader, how, Purpose::Report, reason).await?;
    Ok(client.post_json("/card/report", &ReportLink { proof, reason: reason.to_string() }).await?)
}
