//! The re-verifier: checks made while the line was down are asked again, by themselves, once it
//! is back. Each new answer goes to `res/` (a file request) or `face/` (a card), is compared
//! with what staff were told at the counter, and a change is flagged. A queue entry is closed
//! in the same transaction as its answer file's outbox row, so a kill at any moment neither
//! loses an entry nor answers one twice.

use std::sync::Arc;
use std::time::Duration;

use onshi_api::card::{CardProof, Challenge, Method, VerifyCard};

use crate::answer_xml::{self, Reference, SingleResult};
use crate::check::{self, Job, Outcome};
use crate::gateway::{Gateway, GatewayError};
use crate::request::Kind;
use crate::store::{OutFile, QueuedJob};

/// What a pass over the queue came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub reverified: usize,
    pub batch_answered: usize,
    /// The line was still down when the pass stopped.
    pub offline: bool,
}

/// Asks the center again about every waiting check, oldest first; stops at the first sign
/// that the line is still down.
pub async fn run_once(gateway: &Gateway) -> Result<Pass, GatewayError> {
    let mut pass = Pass::default();
    for job in gateway.store.waiting()? {
        gateway.store.note_attempt(job.id)?;
        let Some(outcome) = ask_again(gateway, &job).await? else {
            pass.offline = true;
            return Ok(pass);
        };
        let changes = check::changes(Some(&job.first), &outcome);
        let files = answer_files(gateway, &job, &outcome, &changes);
        let cache = match (&job.job, outcome.answer()) {
            (Job::Number { request, .. }, Some(answer)) => {
                Some((check::patient_key(request), serde_json::to_string(answer).expect("answers serialise")))
            }
            _ => None,
        };
        let at = gateway.now().to_string();
        if gateway.store.complete(job.id, &at, &outcome, &changes, cache.as_ref().map(|(k, a)| (k.as_str(), a.as_str())), &files)? {
            pass.reverified += 1;
            if !changes.is_empty() {
                tracing::warn!(queue_id = job.id, "re-verification changed the answer given offline; flagged for staff");
            }
        }
        crate::files::flush(&gateway.store)?;
    }
    pass.batch_answered = crate::batch::answer_waiting(gateway, None).await?;
    pass.offline = gateway.line().up == Some(false) && !gateway.store.unanswered_batch_entries()?.is_empty();
    crate::files::flush(&gateway.store)?;
    Ok(pass)
}

/// The new outcome, or `None` while the line is still down.
async fn ask_again(gateway: &Gateway, job: &QueuedJob) -> Result<Option<Outcome>, GatewayError> {
    match &job.job {
        Job::Number { request, .. } => {
            let again = onshi_api::verify::VerifyNumberRequest { reverification: true, ..request.clone() };
            let checked = gateway.ask_number(&again, None).await?;
            Ok((!checked.queued()).then_some(checked.outcome))
        }
        Job::CardVisual { certificate, consent, date_of_care, .. } => {
            let challenge =
                match gateway.client.post_json::<_, Challenge>(onshi_reader::flow::INSTITUTION_CHALLENGE, &serde_json::json!({})).await {
                    Ok(c) => c.challenge,
                    Err(e) if Gateway::offline_reason(&e).is_some() => return Ok(None),
                    Err(e) => return Ok(Some(crate::gateway::refused_outcome(e))),
                };
            // The check keeps the time it was made at the counter: the reader signs it with
            // the consents, and the center starts their window then, not now. A visual check
            // never opens medical information, whatever was ticked.
            let consent = consent.for_visual_check();
            let chosen_at = job.recorded_at.clone();
            let details = onshi_api::card::consent_details(&consent, &chosen_at);
            let attestation = gateway
                .reader
                .lock()
                .await
                .attest_recorded_visual(&challenge, certificate, &details)
                .map_err(|e| GatewayError::Reader(e.to_string()))?;
            let proof = CardProof {
                challenge,
                certificate: certificate.clone(),
                method: Method::Visual,
                card_signature: None,
                attestation: Some(attestation),
            };
            let request = VerifyCard { proof, date_of_care: Some(date_of_care.clone()), consent, chosen_at: Some(chosen_at) };
            match onshi_reader::flow::send_verify(&gateway.client, &request).await {
                Ok(answer) => {
                    Ok(Some(Outcome::Answered { answer: answer.answer, consents: Some(answer.consents), certificate: answer.certificate }))
                }
                Err(e) if Gateway::offline_reason(&e).is_some() => Ok(None),
                Err(e) => Ok(Some(crate::gateway::refused_outcome(e))),
            }
        }
    }
}

/// A file request's new answer goes to `res/` under the request's answer name with
/// `_reverified` before `.xml` (the first answer may already have been taken); a card's to
/// `face/`.
fn answer_files(gateway: &Gateway, job: &QueuedJob, outcome: &Outcome, changes: &[String]) -> Vec<OutFile> {
    match &job.job {
        Job::Number { reply: Some(reply), .. } => {
            let name = Kind::answer_name(&reply.request_name);
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(stem, _)| stem);
            let now = gateway.now().to_string();
            let bytes = answer_xml::single(&SingleResult {
                header: &reply.header,
                search: Some(&reply.search),
                outcome,
                reference: Reference::Numbers,
                changes,
                changes_against: "オフライン受付時",
                now: &now,
                institution_code: &gateway.config.institution_code,
                charset: reply.charset,
                references: &crate::reference::for_outcome(&gateway.store, outcome),
            });
            vec![OutFile { path: gateway.config.res_dir().join(format!("{stem}_reverified.xml")), bytes, remove_after: None }]
        }
        Job::Number { reply: None, .. } => Vec::new(),
        Job::CardVisual { .. } => vec![crate::files::face_file(gateway, outcome, changes, "オフライン受付時")],
    }
}

/// Forgets what is older than the configured number of days (once an hour).
fn forget_old(gateway: &Gateway) {
    let cutoff =
        onshi_domain::date::Timestamp::from_jst_seconds(gateway.now().jst_seconds() - i64::from(gateway.config.keep_days) * 86_400);
    match gateway.store.forget_before(&cutoff.to_string()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(checks = n, keep_days = gateway.config.keep_days, "old checks forgotten"),
        Err(e) => tracing::warn!(error = %e, "cannot forget old checks; retried in an hour"),
    }
}

/// Runs passes until `stop`: right after something is queued, and every `retry` while checks
/// wait for the line.
pub async fn run(gateway: Arc<Gateway>, retry: Duration, stop: tokio::sync::watch::Receiver<bool>) {
    let mut forgotten_at: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if forgotten_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            forgotten_at = Some(std::time::Instant::now());
            forget_old(&gateway);
        }
        gateway.probe().await;
        let waiting = match run_once(&gateway).await {
            Ok(pass) => pass.offline,
            Err(e) => {
                tracing::warn!(error = %e, "re-verification pass failed; retried");
                true
            }
        };
        let mut stop = stop.clone();
        // Nothing waits: sleep until woken (a periodic pass still catches a batch stored by
        // another process, such as `onshi gateway batch` while the line was down).
        let pause = if waiting { retry } else { retry * 10 };
        tokio::select! {
            _ = gateway.wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}
