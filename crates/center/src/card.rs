//! The マイナ保険証 path at the center: single-use challenges, readers registered to an
//! institution, 初回登録 (linking a card to a coverage after comparing the holder's attributes),
//! verification by card (PIN signature, or a reader's attestation of a face match or a visual
//! check) and the consents chosen at the reader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use onshi_api::card::{
    CardAnswer, CardProof, Challenge, ConsentChoice, ConsentState, Consents, FlagLink, LinkCard, Linked, Method, RegisterReader,
    VerifyCard, attestation_message,
};
use onshi_domain::eligibility::CoverageSpan;
use onshi_domain::hex::{decode as unhex, encode as hex};
use onshi_domain::ids::{InstitutionCode, to_half_width};
use onshi_domain::{Date, Timestamp};
use onshi_pki::verify::{CardCertError, CardCertificate, CardTrust, signature_valid};
use onshi_store::Register;
use onshi_store::cards::{CardRegistry, Consent, LinkState, Reader};

use crate::errors::{self, CenterError, card as refuse};
use crate::verify::{CardNumbers, LagCache, NumberQuery, verify_number};

/// The owner of challenges taken by card holders themselves (no institution certificate).
pub const PATIENT: &str = "patient";

/// Seconds a challenge stays usable.
pub const CHALLENGE_SECONDS: i64 = 60;
/// Hours a consent given at the reader lets the institution view (閲覧有効期限).
pub const CONSENT_HOURS: i64 = 24;
/// Challenges kept at most; older ones are pruned first (they would have expired anyway).
const CHALLENGES_MAX: usize = 100_000;

/// The scopes of a consent, as stored, in the order of the answer.
const SCOPES: [&str; 5] = ["drug", "checkup", "diagnosis", "limit", "specific_disease"];

fn seconds_later(t: Timestamp, seconds: i64) -> Timestamp {
    Timestamp::from_jst_seconds(t.jst_seconds() + seconds)
}

/// Each reason a card certificate fails, as the API refuses it.
fn certificate_refusal(e: CardCertError) -> CenterError {
    match e {
        CardCertError::Malformed(detail) => refuse::certificate_malformed(detail),
        CardCertError::UnknownIssuer => refuse::certificate_unknown_issuer(),
        CardCertError::Expired(on) => refuse::certificate_expired(&on.to_string()),
        CardCertError::NotYetValid(on) => refuse::certificate_malformed(format!("not valid before {on}")),
        CardCertError::Revoked(reason) => refuse::certificate_revoked(&reason),
    }
}

fn store_error(e: onshi_store::StoreError) -> CenterError {
    errors::register_unavailable(e.to_string())
}

/// The card path's state: the trusted card CA with its revocations, and the open challenges.
pub struct CardPath {
    trust: RwLock<Option<CardTrust>>,
    /// The JPKI directory (`ca.pem`, `crl.pem`) and the CRL's modification time when loaded.
    source: Option<(PathBuf, Mutex<Option<SystemTime>>)>,
    /// Open challenges: the owner (an institution code, or [`PATIENT`]) and when issued.
    challenges: Mutex<HashMap<String, (String, Timestamp)>>,
    /// Certificates already checked against the current CA and CRL, by the SHA-256 of their
    /// DER: a returning card costs no signature check. Emptied when a new CRL is loaded.
    checked: Mutex<HashMap<[u8; 32], CardCertificate>>,
    cards: Arc<dyn CardRegistry>,
}

/// Most checked certificates remembered; the cache is emptied when full.
const CHECKED_MAX: usize = 200_000;

/// Why the card CA could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {path}: {source}; run `onshi jpki init` and `onshi jpki crl`")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Invalid(#[from] onshi_pki::PkiError),
}

fn load_trust(dir: &Path) -> Result<(CardTrust, Option<SystemTime>), TrustError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| TrustError::Read { path, source })
    };
    let modified = std::fs::metadata(dir.join("crl.pem")).and_then(|m| m.modified()).ok();
    Ok((CardTrust::load(&read("ca.pem")?, &read("crl.pem")?)?, modified))
}

impl CardPath {
    /// Without a JPKI directory the card path refuses every request with CARD_PATH_UNAVAILABLE.
    pub fn new(cards: Arc<dyn CardRegistry>, jpki: Option<&Path>) -> Result<CardPath, TrustError> {
        let (trust, source) = match jpki {
            Some(dir) => {
                let (trust, modified) = load_trust(dir)?;
                (Some(trust), Some((dir.to_path_buf(), Mutex::new(modified))))
            }
            None => (None, None),
        };
        Ok(CardPath {
            trust: RwLock::new(trust),
            source,
            challenges: Mutex::new(HashMap::new()),
            checked: Mutex::new(HashMap::new()),
            cards,
        })
    }

    /// Reloads the card CA and CRL when `crl.pem` changed since it was loaded (a newly
    /// published list takes effect on the next card request). A list that fails to load keeps
    /// the previous one in force and is logged.
    fn refresh(&self) {
        let Some((dir, loaded)) = &self.source else { return };
        let modified = std::fs::metadata(dir.join("crl.pem")).and_then(|m| m.modified()).ok();
        let mut loaded = loaded.lock().unwrap_or_else(|p| p.into_inner());
        if modified == *loaded {
            return;
        }
        match load_trust(dir) {
            Ok((trust, modified)) => {
                tracing::info!(revoked = trust.revoked_count(), "card revocation list reloaded");
                *self.trust.write().unwrap_or_else(|p| p.into_inner()) = Some(trust);
                self.checked.lock().unwrap_or_else(|p| p.into_inner()).clear();
                *loaded = modified;
            }
            Err(e) => tracing::warn!(error = %e, "the new card revocation list was not loaded; the previous one stays in force"),
        }
    }

    /// A fresh challenge for `owner` (an institution code, or [`PATIENT`]), usable once within
    /// [`CHALLENGE_SECONDS`].
    pub fn challenge(&self, owner: &str, now: Timestamp) -> Result<Challenge, CenterError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| errors::register_unavailable("the random source failed".into()))?;
        let challenge = hex(&bytes);
        let expires = seconds_later(now, CHALLENGE_SECONDS);
        let mut open = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= CHALLENGES_MAX {
            open.retain(|_, (_, issued)| seconds_later(*issued, CHALLENGE_SECONDS) >= now);
            // Still full of live challenges: a flood (the patient endpoint needs no
            // certificate). Refuse rather than grow without bound.
            if open.len() >= CHALLENGES_MAX {
                return Err(errors::register_unavailable("too many open card challenges; try again in a minute".into()));
            }
        }
        open.insert(challenge.clone(), (owner.to_string(), now));
        Ok(Challenge { challenge, expires_at: expires.to_string() })
    }

    /// Uses up a challenge: whatever happens next, it cannot be presented again.
    fn take_challenge(&self, challenge: &str, owner: &str, now: Timestamp) -> Result<(), CenterError> {
        let taken = self.challenges.lock().unwrap_or_else(|p| p.into_inner()).remove(challenge);
        let (issued_to, issued) = taken.ok_or_else(refuse::challenge_unknown)?;
        if issued_to != owner {
            return Err(refuse::challenge_other_institution());
        }
        if now.jst_seconds() - issued.jst_seconds() > CHALLENGE_SECONDS {
            return Err(refuse::challenge_expired());
        }
        Ok(())
    }

    fn check_certificate(&self, pem: &str, today: Date) -> Result<(Vec<u8>, CardCertificate), CenterError> {
        use rustls::pki_types::pem::PemObject;
        self.refresh();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| refuse::certificate_malformed(format!("not a PEM certificate: {e}")))?
            .to_vec();
        let fingerprint: [u8; 32] = digest(&SHA256, &der).as_ref().try_into().expect("SHA-256 is 32 bytes");
        let remembered = self.checked.lock().unwrap_or_else(|p| p.into_inner()).get(&fingerprint).cloned();
        if let Some(certificate) = remembered.filter(|c| today <= c.not_after) {
            return Ok((der, certificate));
        }
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let trust = trust.as_ref().ok_or_else(refuse::path_unavailable)?;
        let checked = trust.check(&der, today).map_err(certificate_refusal)?;
        let mut cache = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CHECKED_MAX {
            cache.clear();
        }
        cache.insert(fingerprint, checked.clone());
        Ok((der, checked))
    }

    /// Checks a proof: the challenge (single use, this institution, in time), the certificate,
    /// and the PIN signature or the registered reader's attestation.
    fn check_proof(&self, proof: &CardProof, owner: &str, now: Timestamp) -> Result<CardCertificate, CenterError> {
        self.take_challenge(&proof.challenge, owner, now)?;
        let (der, certificate) = self.check_certificate(&proof.certificate, now.date())?;
        match proof.method {
            Method::Pin => {
                let signature =
                    proof.card_signature.as_deref().ok_or_else(|| refuse::proof_incomplete("the PIN path needs card_signature"))?;
                let signature = unhex(signature).ok_or_else(|| refuse::proof_incomplete("card_signature is not hex"))?;
                if !signature_valid(&certificate.public_key, proof.challenge.as_bytes(), &signature) {
                    return Err(refuse::signature_invalid("card's signature"));
                }
            }
            Method::Face | Method::Visual => {
                let attestation =
                    proof.attestation.as_ref().ok_or_else(|| refuse::proof_incomplete("the face and visual paths need an attestation"))?;
                let reader = self.cards.reader(&attestation.reader_id).map_err(store_error)?;
                let reader = reader
                    .filter(|r| r.institution == owner && owner != PATIENT)
                    .ok_or_else(|| refuse::reader_not_registered(&attestation.reader_id))?;
                let signature =
                    unhex(&attestation.signature).ok_or_else(|| refuse::proof_incomplete("the attestation signature is not hex"))?;
                let message = attestation_message(&proof.challenge, &hex(digest(&SHA256, &der).as_ref()), &attestation.result);
                if !signature_valid(&reader.public_key, &message, &signature) {
                    return Err(refuse::signature_invalid("reader's attestation"));
                }
                match (proof.method, attestation.result.as_str()) {
                    (Method::Face, "face_match") | (Method::Visual, "visual") => {}
                    (Method::Face, "face_mismatch") => return Err(refuse::face_mismatch()),
                    _ => return Err(refuse::proof_incomplete("the attestation's result does not fit the method")),
                }
            }
        }
        Ok(certificate)
    }

    /// Registers a reader's device key to the calling institution.
    pub fn register_reader(&self, request: &RegisterReader, institution: &InstitutionCode, now: Timestamp) -> Result<(), CenterError> {
        let key = unhex(&request.public_key)
            .filter(|k| k.len() == 65 && k[0] == 4)
            .ok_or_else(|| errors::malformed_body("public_key must be the uncompressed P-256 point (65 bytes) in hex".into()))?;
        if request.reader_id.is_empty() || request.reader_id.len() > 64 {
            return Err(errors::malformed_body("reader_id must be 1 to 64 characters".into()));
        }
        let reader = Reader { reader_id: request.reader_id.clone(), institution: institution.as_str().to_string(), public_key: key };
        self.cards.register_reader(&reader, now).map_err(store_error)
    }

    /// 初回登録: links the card to the coverage named by the numbers when the card's holder
    /// attributes match the insurer's record. A mismatch is refused (the caller audits it).
    pub fn link(
        &self,
        register: &dyn Register,
        request: &LinkCard,
        institution: &InstitutionCode,
        now: Timestamp,
    ) -> Result<Linked, CenterError> {
        if request.proof.method != Method::Pin {
            return Err(refuse::proof_incomplete("初回登録 needs the card's own signature (the PIN path)"));
        }
        let certificate = self.check_proof(&request.proof, institution.as_str(), now)?;
        let numbers = CardNumbers::parse(&request.insurer_number, request.symbol.as_deref(), &request.number, Some(&request.branch))?;
        let coverages = numbers.coverages(register)?;
        let coverage = coverages.iter().max_by_key(|c| c.acquired_on).ok_or_else(refuse::no_such_coverage)?;
        let terms = register.terms_of(coverage.coverage_id).map_err(store_error)?;
        let details = terms.last().map(|t| &t.details);
        let mut differ = Vec::new();
        let attributes = &request.attributes;
        if details.is_none_or(|d| comparable(&d.name) != comparable(&attributes.name)) {
            differ.push("name");
        }
        if details.is_none_or(|d| kana_comparable(&d.name_kana) != kana_comparable(&attributes.name_kana)) {
            differ.push("name_kana");
        }
        if coverage.holder.birth_date.yyyymmdd() != attributes.birth_date {
            differ.push("birth_date");
        }
        if coverage.holder.sex.code() != attributes.sex {
            differ.push("sex");
        }
        if let Some(address) = details.and_then(|d| d.address.as_deref())
            && comparable(address) != comparable(&attributes.address)
        {
            differ.push("address");
        }
        if !differ.is_empty() {
            return Err(refuse::attributes_mismatch(&differ));
        }
        let link = self.cards.link_card(&certificate.serial, &certificate.holder_ref, coverage.person_id, now).map_err(store_error)?;
        if link.person_id != coverage.person_id {
            return Err(refuse::already_linked());
        }
        Ok(Linked { serial: link.serial, linked_at: link.linked_at.to_string() })
    }

    /// Finds the person of a verified certificate, moving the link when the certificate is a
    /// renewal of a linked one.
    fn person_of(&self, certificate: &CardCertificate, now: Timestamp) -> Result<i64, CenterError> {
        let link = match self.cards.card_link(&certificate.serial).map_err(store_error)? {
            Some(link) => Some(link),
            None => self.cards.move_card_link(&certificate.holder_ref, &certificate.serial, now).map_err(store_error)?,
        };
        let link = link.ok_or_else(refuse::not_linked)?;
        match link.state {
            LinkState::Active => Ok(link.person_id),
            LinkState::Flagged => Err(refuse::link_flagged()),
            // A moved link's certificate was renewed and is revoked; the CRL check refuses it
            // first, but a CRL not yet reloaded must not let it through.
            LinkState::Moved => Err(refuse::certificate_revoked("superseded by a renewed certificate")),
        }
    }

    /// Verification by card: the proof, the person's coverage on the date of care, the
    /// consents chosen now and those still in force.
    pub fn verify(
        &self,
        register: &dyn Register,
        lags: &LagCache,
        request: &VerifyCard,
        institution: &InstitutionCode,
        now: Timestamp,
    ) -> Result<(CardAnswer, i64), CenterError> {
        let certificate = self.check_proof(&request.proof, institution.as_str(), now)?;
        let person = self.person_of(&certificate, now)?;
        let consents = self.record_consents(person, institution, &request.consent, now)?;
        let limit_live = consents.limit_application_certificate_related.flag == "1";
        let coverages = register.coverages_of_person(person).map_err(store_error)?;
        let on = match &request.date_of_care {
            Some(text) => Date::parse_yyyymmdd(text).map_err(|e| errors::invalid_field("date_of_care", &e))?,
            None => now.date(),
        };
        let span = |c: &onshi_store::model::CoverageRecord| CoverageSpan {
            coverage_id: c.coverage_id,
            person_id: c.person_id,
            branch: c.branch,
            birth_date: c.holder.birth_date,
            acquired_on: c.acquired_on,
            lost_on: c.lost_on,
            loss_reason: c.loss_reason,
        };
        let chosen = coverages.iter().max_by_key(|c| (span(c).covers(on), c.acquired_on)).ok_or_else(refuse::no_coverage_for_person)?;
        // The register's own values: no need to format them and check them again.
        let query = NumberQuery {
            insurer: chosen.insurer.clone(),
            symbol: chosen.symbol.clone(),
            number: chosen.number.clone(),
            branch: Some(chosen.branch),
            birth_date: chosen.holder.birth_date,
            date_of_care: on,
            limit_consent: limit_live,
        };
        let answer = verify_number(register, lags, &query, now)?;
        Ok((CardAnswer { answer, method: request.proof.method, serial: certificate.serial, consents }, person))
    }

    fn record_consents(
        &self,
        person: i64,
        institution: &InstitutionCode,
        choice: &ConsentChoice,
        now: Timestamp,
    ) -> Result<Consents, CenterError> {
        let chosen = [choice.drug, choice.checkup, choice.diagnosis, choice.limit, choice.specific_disease];
        for (scope, given) in SCOPES.iter().zip(chosen) {
            if given {
                let consent =
                    Consent { scope: scope.to_string(), given_at: now, available_until: seconds_later(now, CONSENT_HOURS * 3600) };
                self.cards.record_consent(person, institution.as_str(), &consent).map_err(store_error)?;
            }
        }
        self.consents(person, institution, now)
    }

    /// The consent states a person has given an institution, as of `now`.
    pub fn consents(&self, person: i64, institution: &InstitutionCode, now: Timestamp) -> Result<Consents, CenterError> {
        let stored = self.cards.consents(person, institution.as_str()).map_err(store_error)?;
        let state = |scope: &str| match stored.iter().find(|c| c.scope == scope) {
            None => ConsentState { flag: "0".into(), consent_time: None, available_time: None },
            Some(c) => ConsentState {
                flag: if c.available_until > now { "1" } else { "2" }.into(),
                consent_time: Some(c.given_at.to_string()),
                available_time: Some(c.available_until.to_string()),
            },
        };
        Ok(Consents {
            pharmacists_info: state("drug"),
            specific_health_checkups_info: state("checkup"),
            diagnosis_info: state("diagnosis"),
            limit_application_certificate_related: state("limit"),
            specific_diseases_certificate_related: state("specific_disease"),
        })
    }

    /// The person whose own card signed `proof` (PIN path, challenge taken as [`PATIENT`]): for
    /// the patient's own access log.
    pub fn holder(&self, proof: &CardProof, now: Timestamp) -> Result<(i64, String), CenterError> {
        if proof.method != Method::Pin {
            return Err(refuse::proof_incomplete("the patient's own requests need the card's signature (the PIN path)"));
        }
        let certificate = self.check_proof(proof, PATIENT, now)?;
        Ok((self.person_of(&certificate, now)?, certificate.serial))
    }

    /// The holder flags their own card's link (authenticated by the card's PIN signature).
    pub fn flag_by_holder(&self, proof: &CardProof, reason: &str, now: Timestamp) -> Result<(i64, String), CenterError> {
        if proof.method != Method::Pin {
            return Err(refuse::proof_incomplete("the patient's own requests need the card's signature (the PIN path)"));
        }
        let certificate = self.check_proof(proof, PATIENT, now)?;
        let link = self.cards.card_link(&certificate.serial).map_err(store_error)?.ok_or_else(refuse::not_linked)?;
        let reason: String = reason.chars().take(200).collect();
        self.cards.flag_card_link(&certificate.serial, &reason, now).map_err(store_error)?;
        Ok((link.person_id, certificate.serial))
    }

    /// Flags a suspected wrong link; it blocks the card until reviewed.
    pub fn flag(&self, request: &FlagLink, now: Timestamp) -> Result<String, CenterError> {
        use rustls::pki_types::pem::PemObject;
        self.refresh();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(request.certificate.as_bytes())
            .map_err(|e| refuse::certificate_malformed(format!("not a PEM certificate: {e}")))?;
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let serial = trust.as_ref().ok_or_else(refuse::path_unavailable)?.issued_serial(&der).map_err(certificate_refusal)?;
        drop(trust);
        let reason: String = request.reason.chars().take(200).collect();
        if !self.cards.flag_card_link(&serial, &reason, now).map_err(store_error)? {
            return Err(refuse::not_linked());
        }
        Ok(serial)
    }
}

/// Half-width katakana (U+FF66–U+FF9D) in their full-width order.
const HALF_KANA: &str = "ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";

/// A kana reading as compared at 初回登録: full-width katakana, voiced marks joined, no spaces.
/// Insurers send half-width (ｼｹﾝ ﾊﾅｺ), cards print full-width; both must compare equal.
fn kana_comparable(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\u{FF66}'..='\u{FF9D}' => out.push(HALF_KANA.chars().nth(c as usize - 0xFF66).unwrap_or(c)),
            // Voiced and semi-voiced marks join the previous kana: カ + ﾞ → ガ, ハ + ﾟ → パ.
            '\u{FF9E}' | '\u{309B}' | '\u{3099}' => {
                if let Some(last) = out.pop() {
                    out.push(
                        char::from_u32(last as u32 + 1)
                            .filter(|_| "カキクケコサシスセソタチツテトハヒフヘホ".contains(last))
                            .unwrap_or(last),
                    );
                    if last == 'ウ' {
                        out.pop();
                        out.push('ヴ');
                    }
                }
            }
            '\u{FF9F}' | '\u{309C}' | '\u{309A}' => {
                if let Some(last) = out.pop() {
                    out.push(char::from_u32(last as u32 + 2).filter(|_| "ハヒフヘホ".contains(last)).unwrap_or(last));
                }
            }
            // Hiragana to katakana.
            '\u{3041}'..='\u{3096}' => out.push(char::from_u32(c as u32 + 0x60).unwrap_or(c)),
            c if c.is_whitespace() || c == '\u{3000}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A name or address as compared at 初回登録: half-width, without spaces, one hyphen.
fn comparable(text: &str) -> String {
    to_half_width(text)
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if matches!(c, 'ー' | '－' | '―' | '‐' | '−') { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kana_readings_compare_across_widths_scripts_and_spaces() {
        assert_eq!(kana_comparable("ｼｹﾝ ﾊﾅｺ"), "シケンハナコ");
        assert_eq!(kana_comparable("シケン　ハナコ"), "シケンハナコ");
        assert_eq!(kana_comparable("しけん はなこ"), "シケンハナコ");
        assert_eq!(kana_comparable("ｶﾞｯｺｳ ﾊﾟﾝ ｳﾞｨ"), "ガッコウパンヴィ");
        assert_ne!(kana_comparable("ｼｹﾝ ﾀﾛｳ"), kana_comparable("シケン　ハナコ"));
        assert_eq!(comparable("東京都千代田区霞が関１－２－２"), comparable("東京都千代田区霞が関1-2-2"));
    }
}
