//! The マイナ保険証 path at the center: single-use challenges, readers registered to an
//! institution, 初回登録, verification by card (PIN signature, or a reader's attestation of a
//! face match or a visual check) with the consents chosen at the reader, wrong-link reports and
//! their review, and the patient's own requests.
//!
//! What the center believes, and on whose word (ARCHITECTURE.md, "Trust model"):
//! - whose card a certificate is: the card authority's signed binding feed, never the clinic;
//! - that the holder was there and chose: the card's signature (PIN) or the registered reader's
//!   attestation (face, visual), each over the purpose, the challenge and what was chosen;
//! - which institution asks: its TLS client certificate; which reader: its registered key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use onshi_api::card::{
    CardAnswer, CardProof, CertificateNotice, Challenge, ConsentChoice, ConsentState, Consents, LINK_DETAILS, LinkCard, LinkReport,
    LinkReports, Linked, Method, PatientConsent, PatientRecord, PatientReport, Purpose, RegisterReader, ReviewLink, VerifyCard,
    WithdrawConsent, attestation_message, card_message, consent_details, withdraw_details,
};
use onshi_domain::certificate::{self, Standing};
use onshi_domain::eligibility::CoverageSpan;
use onshi_domain::hex::{decode as unhex, encode as hex};
use onshi_domain::ids::{InstitutionCode, InsurerNumber, to_half_width};
use onshi_domain::{Date, Timestamp};
use onshi_pki::verify::{CardCertError, CardCertificate, CardTrust, signature_valid};
use onshi_store::Register;
use onshi_store::cards::{
    BindingApplied, BindingChange, BoundAttributes, CardRegistry, Consent, LinkReportRow, LinkState, Reader, ReaderRegistration,
};
use onshi_store::subsidy::SubsidyStore;

use crate::errors::{self, CenterError, card as refuse};
use crate::verify::{LagCache, NumberQuery, answer_from_view};

/// The owner of challenges taken by card holders themselves (no institution certificate).
pub const PATIENT: &str = "patient";

/// Seconds a challenge stays usable.
pub const CHALLENGE_SECONDS: i64 = 60;
/// Hours a consent given at the reader lets the institution view (閲覧有効期限).
pub const CONSENT_HOURS: i64 = 24;
/// Open challenges one institution may hold: far more than its readers can use in a minute,
/// few enough that one clinic cannot fill the table for the others.
const CHALLENGES_PER_INSTITUTION_MAX: usize = 1_000;
/// Open challenges an institution may hold for answers to carry one more: a gateway keeps at
/// most 8, a reader at a time uses one; far under the quota above.
const ANSWER_CHALLENGES_HELD_MAX: usize = 64;
/// Open challenges of card holders acting for themselves, all together: that endpoint needs
/// no certificate, so it has a pool of its own.
const PATIENT_CHALLENGES_MAX: usize = 10_000;
/// How old the counter time of a recorded visual check may be when the line returns.
const RECORDED_DAYS_MAX: i64 = 31;
/// Clock difference tolerated between a gateway and the center for a recorded counter time.
const CLOCK_SKEW_SECONDS: i64 = 300;
/// The highest card CRL number loaded, kept in the register so that a restart cannot be made
/// to accept an older list.
const CRL_NUMBER: &str = "card_crl_number";

/// The scopes of a consent, as stored, in the order of the answer.
const SCOPES: [&str; 5] = ["drug", "checkup", "diagnosis", "limit", "specific_disease"];
/// The withdrawal scope of a home-care consent.
pub const HOME_SCOPE: &str = "home";

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

/// A link the card authority's feed undid (a lost or stolen card): audited with the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlinked {
    pub person: i64,
    pub serial: String,
}

/// The card CA's files and what was last read of them.
struct Source {
    dir: PathBuf,
    /// `crl.pem`'s modification time when last looked at.
    crl_seen: Mutex<Option<(SystemTime, SystemTime)>>,
    /// `bindings.jsonl`'s modification time and length when last applied.
    feed_seen: Mutex<Option<(SystemTime, u64)>>,
}

/// The card path's state: the trusted card CA with its revocations, and the open challenges.
pub struct CardPath {
    trust: RwLock<Option<CardTrust>>,
    /// Why the card path is off although a card CA is configured (a stale or older CRL).
    trust_problem: RwLock<Option<String>>,
    source: Option<Source>,
    /// Open challenges: the owner (an institution code, or [`PATIENT`]) and when issued; and
    /// how many each owner holds. In this process's memory, or in the register when several
    /// center processes share it (a challenge one issued must be accepted once by any).
    challenges: ChallengeStore,
    /// Certificates already checked against the current CA and CRL, by the SHA-256 of their
    /// DER: a returning card costs no signature check. Emptied when a new CRL is loaded.
    checked: Mutex<HashMap<[u8; 32], CardCertificate>>,
    cards: Arc<dyn CardRegistry>,
}

enum ChallengeStore {
    Memory(Mutex<Challenges>),
    /// In the card registry ([`CardRegistry::shares_challenges`]).
    Shared,
}

#[derive(Default)]
struct Challenges {
    open: HashMap<String, (String, Timestamp)>,
    per_owner: HashMap<String, usize>,
    /// When expired challenges were last forgotten: at most once a second, so that an owner
    /// at its limit cannot make every request walk the whole table under the lock.
    pruned_at: Option<Timestamp>,
}

impl Challenges {
    fn quota(owner: &str) -> usize {
        if owner == PATIENT { PATIENT_CHALLENGES_MAX } else { CHALLENGES_PER_INSTITUTION_MAX }
    }

    #[cfg(test)]
    fn insert(&mut self, challenge: String, owner: &str, now: Timestamp) -> bool {
        self.insert_within(challenge, owner, now, Self::quota(owner))
    }

    /// Inserts while `owner` holds fewer than `limit` open challenges.
    fn insert_within(&mut self, challenge: String, owner: &str, now: Timestamp, limit: usize) -> bool {
        if self.per_owner.get(owner).copied().unwrap_or(0) >= limit {
            if self.pruned_at.is_none_or(|at| at.jst_seconds() < now.jst_seconds()) {
                self.prune(now);
            }
            if self.per_owner.get(owner).copied().unwrap_or(0) >= limit {
                return false;
            }
        }
        *self.per_owner.entry(owner.to_string()).or_default() += 1;
        self.open.insert(challenge, (owner.to_string(), now));
        true
    }

    fn take(&mut self, challenge: &str) -> Option<(String, Timestamp)> {
        let taken = self.open.remove(challenge)?;
        if let Some(count) = self.per_owner.get_mut(&taken.0) {
            *count = count.saturating_sub(1);
        }
        Some(taken)
    }

    /// Forgets expired challenges (they could not be used any more).
    fn prune(&mut self, now: Timestamp) {
        self.pruned_at = Some(now);
        self.open.retain(|_, (_, issued)| seconds_later(*issued, CHALLENGE_SECONDS) >= now);
        self.per_owner.clear();
        for (owner, _) in self.open.values() {
            *self.per_owner.entry(owner.clone()).or_default() += 1;
        }
    }
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

fn load_trust(dir: &Path) -> Result<CardTrust, TrustError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| TrustError::Read { path, source })
    };
    Ok(CardTrust::load(&read("ca.pem")?, &read("crl.pem")?)?)
}

/// The number a feed line claims, read without checking its signature.
fn unverified_seq(line: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Line {
        entry: String,
    }
    #[derive(serde::Deserialize)]
    struct Numbered {
        seq: u64,
    }
    let line: Line = serde_json::from_str(line).ok()?;
    let numbered: Numbered = serde_json::from_str(&line.entry).ok()?;
    i64::try_from(numbered.seq).ok()
}

/// What a checked proof established.
struct Proven {
    certificate: CardCertificate,
    /// A visual check recorded at the counter earlier and attested now.
    recorded: bool,
    /// Where the certificate stands: near its end, or expired and confirming eligibility only.
    standing: Standing,
}

/// A person's answer on `on` from their coverages: the one covering that day (else the latest),
/// judged as the number path judges it.
fn answer_for_view(
    register: &dyn Register,
    lags: &LagCache,
    view: &[onshi_store::model::CoverageWithTerms],
    on: Date,
    limit_live: bool,
    now: Timestamp,
) -> Result<onshi_api::verify::VerifyAnswer, CenterError> {
    let span = |c: &onshi_store::model::CoverageRecord| CoverageSpan {
        coverage_id: c.coverage_id,
        person_id: c.person_id,
        branch: c.branch,
        birth_date: c.holder.birth_date,
        acquired_on: c.acquired_on,
        lost_on: c.lost_on,
        loss_reason: c.loss_reason,
    };
    let chosen =
        view.iter().map(|v| &v.coverage).max_by_key(|c| (span(c).covers(on), c.acquired_on)).ok_or_else(refuse::no_coverage_for_person)?;
    let query = NumberQuery::for_coverage(chosen, on, limit_live);
    Ok(answer_from_view(view, lags.get(register, &query.insurer)?, &query, now).0)
}

/// What reception tells the holder about the certificate, if anything.
fn certificate_notice(standing: Standing, consent_chosen: bool) -> Option<CertificateNotice> {
    match standing {
        Standing::ExpiringSoon { expires_on } => Some(CertificateNotice {
            state: "expiring".into(),
            expires_on: expires_on.yyyymmdd(),
            grace_until: None,
            consent_refused: false,
            reception_ja: format!(
                "更新のご案内: このカードの電子証明書は{}に有効期限を迎えます。市区町村の窓口で更新するようお伝えください。",
                expires_on.japanese()
            ),
        }),
        Standing::Grace { expired_on, grace_until } => Some(CertificateNotice {
            state: "grace".into(),
            expires_on: expired_on.yyyymmdd(),
            grace_until: Some(grace_until.yyyymmdd()),
            consent_refused: consent_chosen,
            reception_ja: format!(
                "このカードの電子証明書は{}に有効期限が切れています。{}までは資格の確認のみできます（薬剤・健診・診療情報の提供には同意できません）。市区町村の窓口で更新するようお伝えください。",
                expired_on.japanese(),
                grace_until.japanese()
            ),
        }),
        Standing::Valid | Standing::Expired { .. } => None,
    }
}

/// Who an attestation result may be and which method it proves.
fn attestation_fits(method: Method, result: &str) -> Result<bool, CenterError> {
    match (method, result) {
        (Method::Face, "face_match") | (Method::Visual, "visual") => Ok(false),
        (Method::Visual, "recorded_visual") => Ok(true),
        (Method::Face, "face_mismatch") => Err(refuse::face_mismatch()),
        _ => Err(refuse::proof_incomplete("the attestation's result does not fit the method")),
    }
}

/// The stores a card verification reads and writes beside the card registry.
pub struct Stores<'a> {
    pub register: &'a dyn Register,
    pub home: &'a dyn onshi_store::home::HomeCareStore,
    pub subsidies: &'a dyn SubsidyStore,
}

impl CardPath {
    /// Without a JPKI directory the card path refuses every request with CARD_PATH_UNAVAILABLE.
    /// With one, the CA and CRL must load (the center refuses to start otherwise); whether the
    /// list is current and the binding feed are judged by [`CardPath::sync`], which the server
    /// runs at start and before each card request.
    pub fn new(cards: Arc<dyn CardRegistry>, jpki: Option<&Path>) -> Result<CardPath, TrustError> {
        if let Some(dir) = jpki {
            load_trust(dir)?;
        }
        Ok(CardPath {
            trust: RwLock::new(None),
            trust_problem: RwLock::new(None),
            source: jpki.map(|dir| Source { dir: dir.to_path_buf(), crl_seen: Mutex::new(None), feed_seen: Mutex::new(None) }),
            challenges: if cards.shares_challenges() {
                ChallengeStore::Shared
            } else {
                ChallengeStore::Memory(Mutex::new(Challenges::default()))
            },
            checked: Mutex::new(HashMap::new()),
            cards,
        })
    }

    /// Takes in what the card CA published since the last look: a new CRL (refused when stale
    /// or older than one already loaded, so a list played back cannot undo revocations) and new
    /// binding-feed entries (each line checked against the CA's key, each number applied once).
    /// Returns the links that revocations undid, for the audit log.
    pub fn sync(&self, now: Timestamp) -> Vec<Unlinked> {
        let Some(source) = &self.source else { return Vec::new() };
        self.refresh_crl(source, now);
        match self.apply_feed(source, now) {
            Ok(unlinked) => unlinked,
            Err(e) => {
                tracing::warn!(error = %e, "the card binding feed was not applied; it is tried again on the next card request");
                Vec::new()
            }
        }
    }

    fn refresh_crl(&self, source: &Source, now: Timestamp) {
        // The list, and the CA's certificates: a roll-over adds a generation to `ca.pem`, and
        // the feed lines it signs must verify from then on.
        let modified_of = |name: &str| std::fs::metadata(source.dir.join(name)).and_then(|m| m.modified()).ok();
        let modified = modified_of("crl.pem").zip(modified_of("ca.pem"));
        let mut seen = source.crl_seen.lock().unwrap_or_else(|p| p.into_inner());
        if modified.is_some() && modified == *seen {
            return;
        }
        *seen = modified;
        let problem = match load_trust(&source.dir) {
            Err(e) => Some(format!("the card revocation list does not load: {e}")),
            Ok(trust) => match self.judge_crl(&trust, now) {
                Err(problem) => Some(problem),
                Ok(()) => {
                    tracing::info!(revoked = trust.revoked_count(), number = trust.crl_number(), "card revocation list loaded");
                    *self.trust.write().unwrap_or_else(|p| p.into_inner()) = Some(trust);
                    self.checked.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    None
                }
            },
        };
        if let Some(problem) = &problem {
            let kept = self.trust.read().unwrap_or_else(|p| p.into_inner()).is_some();
            tracing::warn!(problem = %problem, kept_previous = kept, "card revocation list refused");
        }
        *self.trust_problem.write().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    /// A list is taken when current and not older than the newest one ever loaded here.
    fn judge_crl(&self, trust: &CardTrust, now: Timestamp) -> Result<(), String> {
        if let Some(next) = trust.next_update()
            && now.date() > next
        {
            return Err(format!("the card revocation list is stale (next update was due {next}); publish a new one"));
        }
        let number = i64::try_from(trust.crl_number()).map_err(|_| "the card CRL number is too large".to_string())?;
        match self.cards.raise_trust_value(CRL_NUMBER, number) {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(format!("the card revocation list number {number} is older than one already loaded (an old list played back)"))
            }
            Err(e) => Err(format!("the card CRL number cannot be recorded: {e}")),
        }
    }

    fn apply_feed(&self, source: &Source, now: Timestamp) -> Result<Vec<Unlinked>, String> {
        let path = source.dir.join(onshi_pki::jpki::BINDING_FEED);
        let stamp = match std::fs::metadata(&path) {
            Ok(m) => m.modified().ok().map(|t| (t, m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut seen = source.feed_seen.lock().unwrap_or_else(|p| p.into_inner());
        if stamp.is_some() && stamp == *seen {
            return Ok(Vec::new());
        }
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        // Without a trusted CA key no line can be checked: try again once there is one.
        let Some(trust) = trust.as_ref() else { return Ok(Vec::new()) };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut applied = self.cards.binding_seq_max().map_err(|e| e.to_string())?;
        let mut unlinked = Vec::new();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            // Lines applied before are passed over unverified: a file of many cards is not
            // checked again in full at every change. Only the number is read for that; a
            // forged line claiming an old number changes nothing, a new one is verified below.
            if unverified_seq(line).is_some_and(|seq| seq <= applied) {
                continue;
            }
            let entry = match trust.binding(line) {
                Ok(entry) => entry,
                Err(problem) => {
                    // Passed over: a forged or broken line changes nothing. A genuine line
                    // that does not verify yet (a CA generation not loaded yet) is not lost:
                    // the lines after it wait for its number (below).
                    tracing::warn!(line = number + 1, problem = %problem, "card binding feed line refused");
                    continue;
                }
            };
            let Ok(seq) = i64::try_from(entry.seq) else { continue };
            if seq <= applied {
                continue;
            }
            // The CA numbers its lines 1, 2, 3, … under a lock: a gap means a line this center
            // could not verify yet. Applying past it would lose it for good (each number is
            // applied once, in order), so the feed waits and is read again on the next request.
            if seq != applied + 1 {
                tracing::warn!(waiting_for = applied + 1, next = seq, "card binding feed has a gap; it waits for the missing number");
                return Ok(unlinked);
            }
            let change = BindingChange {
                seq,
                kind: match entry.kind {
                    onshi_pki::jpki::BindingKind::Issue => "issue",
                    onshi_pki::jpki::BindingKind::Renew => "renew",
                    onshi_pki::jpki::BindingKind::Revoke => "revoke",
                }
                .into(),
                serial: entry.serial.clone(),
                holder_ref: entry.holder_ref,
                person_ref: entry.person_ref,
                attributes: entry.attributes.map(|a| BoundAttributes {
                    name: a.name,
                    name_kana: a.name_kana,
                    birth_date: a.birth_date,
                    sex: a.sex,
                    address: a.address,
                }),
                face_only: entry.face_only,
                phone_of: entry.phone_of,
            };
            match self.cards.apply_binding(&change, now) {
                Ok(BindingApplied::Applied { unlinked_person: Some(person) }) => {
                    applied = seq;
                    unlinked.push(Unlinked { person, serial: entry.serial })
                }
                Ok(BindingApplied::Applied { unlinked_person: None } | BindingApplied::AlreadyApplied) => applied = seq,
                // What was applied before the failure is committed: its unlinks must still be
                // audited; the rest is tried again on the next request.
                Err(e) => {
                    tracing::warn!(error = %e, seq, "a card binding entry was not applied");
                    return Ok(unlinked);
                }
            }
        }
        *seen = stamp;
        Ok(unlinked)
    }

    /// A fresh challenge for `owner` (an institution code, or [`PATIENT`]), usable once within
    /// [`CHALLENGE_SECONDS`].
    pub fn challenge(&self, owner: &str, now: Timestamp) -> Result<Challenge, CenterError> {
        // Each owner has its quota: a flood of patient challenges (no certificate needed) or
        // one clinic's cannot take the others' challenges away.
        self.issue(owner, now, Challenges::quota(owner))?.ok_or_else(|| errors::rate_limited(CHALLENGE_SECONDS as u64))
    }

    /// A fresh challenge for `owner` while it holds fewer than `limit` open ones (`None` at
    /// the limit).
    fn issue(&self, owner: &str, now: Timestamp, limit: usize) -> Result<Option<Challenge>, CenterError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| errors::register_unavailable("the random source failed".into()))?;
        let challenge = hex(&bytes);
        let issued = match &self.challenges {
            ChallengeStore::Memory(open) => {
                open.lock().unwrap_or_else(|p| p.into_inner()).insert_within(challenge.clone(), owner, now, limit)
            }
            ChallengeStore::Shared => {
                let live_from = Timestamp::from_jst_seconds(now.jst_seconds() - CHALLENGE_SECONDS);
                self.cards.issue_challenge(&challenge, owner, now, live_from, limit).map_err(store_error)?
            }
        };
        Ok(issued.then(|| Challenge { challenge, expires_at: seconds_later(now, CHALLENGE_SECONDS).to_string() }))
    }

    /// The institution's next challenge, carried on a card answer; none while the institution
    /// already holds [`ANSWER_CHALLENGES_HELD_MAX`] open ones. Answers whose challenge is never
    /// used (a one-shot CLI, a client that keeps fewer) thus never eat into the quota that the
    /// institution's own requests for challenges draw on.
    fn next_challenge(&self, owner: &str, now: Timestamp) -> Option<Challenge> {
        self.issue(owner, now, ANSWER_CHALLENGES_HELD_MAX).ok().flatten()
    }

    /// Uses up a challenge: whatever happens next, it cannot be presented again.
    fn take_challenge(&self, challenge: &str, owner: &str, now: Timestamp) -> Result<(), CenterError> {
        let taken = match &self.challenges {
            ChallengeStore::Memory(open) => open.lock().unwrap_or_else(|p| p.into_inner()).take(challenge),
            ChallengeStore::Shared => self.cards.take_challenge(challenge).map_err(store_error)?,
        };
        let (issued_to, issued) = taken.ok_or_else(refuse::challenge_unknown)?;
        if issued_to != owner {
            return Err(refuse::challenge_other_institution());
        }
        if now.jst_seconds() - issued.jst_seconds() > CHALLENGE_SECONDS {
            return Err(refuse::challenge_expired());
        }
        Ok(())
    }

    /// Checks a card certificate for `purpose`: an expired one still confirms eligibility (and
    /// nothing else) for a while, as the real system does ([`certificate::standing`]).
    fn check_certificate(&self, pem: &str, today: Date, purpose: Purpose) -> Result<(Vec<u8>, CardCertificate, Standing), CenterError> {
        let (der, checked) = self.check_certificate_any_end(pem, today)?;
        let standing = certificate::standing(checked.not_after, today);
        match standing {
            Standing::Expired { expired_on } => Err(refuse::certificate_expired(&expired_on.to_string())),
            Standing::Grace { expired_on, grace_until } if purpose != Purpose::Verify => {
                Err(refuse::certificate_expired_grace_only(&expired_on.to_string(), &grace_until.to_string()))
            }
            _ => Ok((der, checked, standing)),
        }
    }

    fn check_certificate_any_end(&self, pem: &str, today: Date) -> Result<(Vec<u8>, CardCertificate), CenterError> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| refuse::certificate_malformed(format!("not a PEM certificate: {e}")))?
            .to_vec();
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let Some(trust) = trust.as_ref() else {
            let problem = self.trust_problem.read().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(problem.map_or_else(refuse::path_unavailable, refuse::path_unavailable_because));
        };
        // A list past its next update may miss revocations: no card is trusted on it.
        if let Some(next) = trust.next_update()
            && today > next
        {
            return Err(refuse::path_unavailable_because(format!(
                "the card revocation list is stale (next update was due {next}); publish a new one"
            )));
        }
        let fingerprint: [u8; 32] = digest(&SHA256, &der).as_ref().try_into().expect("SHA-256 is 32 bytes");
        let remembered = self.checked.lock().unwrap_or_else(|p| p.into_inner()).get(&fingerprint).cloned();
        if let Some(certificate) = remembered.filter(|c| today <= c.not_after) {
            return Ok((der, certificate));
        }
        let checked = trust.check_any_end(&der, today).map_err(certificate_refusal)?;
        let mut cache = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CHECKED_MAX {
            cache.clear();
        }
        cache.insert(fingerprint, checked.clone());
        Ok((der, checked))
    }

    /// Checks a proof: the challenge (single use, this owner, in time), the certificate, and
    /// the card's signature or the registered reader's attestation over the purpose, the
    /// challenge and `details` (what the holder decided). A proof made for another purpose or
    /// other details does not verify.
    fn check_proof(&self, proof: &CardProof, owner: &str, purpose: Purpose, details: &str, now: Timestamp) -> Result<Proven, CenterError> {
        self.take_challenge(&proof.challenge, owner, now)?;
        let (der, certificate, standing) = self.check_certificate(&proof.certificate, now.date(), purpose)?;
        let recorded = match proof.method {
            Method::Pin => {
                let signature =
                    proof.card_signature.as_deref().ok_or_else(|| refuse::proof_incomplete("the PIN path needs card_signature"))?;
                let signature = unhex(signature).ok_or_else(|| refuse::proof_incomplete("card_signature is not hex"))?;
                if !certificate.public_key.verify(&card_message(purpose, &proof.challenge, details), &signature) {
                    return Err(refuse::signature_invalid("card's signature"));
                }
                false
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
                let fingerprint = hex(digest(&SHA256, &der).as_ref());
                let message = attestation_message(purpose, &proof.challenge, &fingerprint, &attestation.result, details);
                if !signature_valid(&reader.public_key, &message, &signature) {
                    return Err(refuse::signature_invalid("reader's attestation"));
                }
                attestation_fits(proof.method, &attestation.result)?
            }
        };
        if recorded && purpose != Purpose::Verify {
            return Err(refuse::proof_incomplete("a recorded visual check only re-verifies coverage"));
        }
        Ok(Proven { certificate, recorded, standing })
    }

    /// The person a card certificate is linked to, whatever the fate of the request that
    /// carried it: a refused attempt with a patient's card (a forged consent, a replay, a
    /// reader of another clinic) is audited with the patient, so they see it in their own log.
    pub fn person_hint(&self, certificate_pem: &str) -> Option<i64> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(certificate_pem.as_bytes()).ok()?;
        let serial = self.trust.read().unwrap_or_else(|p| p.into_inner()).as_ref()?.issued_serial(&der).ok()?;
        match self.cards.card_link(&serial).ok()? {
            Some(link) => Some(link.person_id),
            None => self.cards.binding(&serial).ok()?.and_then(|b| self.cards.person_of_ref(&b.person_ref).ok()?),
        }
    }

    /// Registers a reader's device key to the calling institution. The same institution may
    /// register a new key (rotation); a reader id another institution holds is refused. The
    /// outcome (`registered`, `rotated`, `unchanged`) goes to the audit log.
    pub fn register_reader(
        &self,
        request: &RegisterReader,
        institution: &InstitutionCode,
        now: Timestamp,
    ) -> Result<&'static str, CenterError> {
        let key = unhex(&request.public_key)
            .filter(|k| k.len() == 65 && k[0] == 4)
            .ok_or_else(|| errors::malformed_body("public_key must be the uncompressed P-256 point (65 bytes) in hex".into()))?;
        if request.reader_id.is_empty() || request.reader_id.len() > 64 || request.reader_id.chars().any(char::is_control) {
            return Err(errors::malformed_body("reader_id must be 1 to 64 printable characters".into()));
        }
        let reader = Reader { reader_id: request.reader_id.clone(), institution: institution.as_str().to_string(), public_key: key };
        match self.cards.register_reader(&reader, now).map_err(store_error)? {
            ReaderRegistration::New => Ok("registered"),
            ReaderRegistration::Rotated => Ok("rotated"),
            ReaderRegistration::Unchanged => Ok("unchanged"),
            ReaderRegistration::OwnedElsewhere { .. } => Err(refuse::reader_owned_elsewhere(&request.reader_id)),
        }
    }

    /// 初回登録: the holder's PIN-signed agreement to use this card as an insurance card. The
    /// person comes from the card authority's binding; its attested attributes must match the
    /// insurer's record (氏名, カナ, 生年月日, 性別, 住所). Returns the person (when known, also on
    /// refusal) for the audit log.
    pub fn link(
        &self,
        register: &dyn Register,
        subsidies: &dyn SubsidyStore,
        request: &LinkCard,
        institution: &InstitutionCode,
        now: Timestamp,
    ) -> (Option<i64>, Result<Linked, CenterError>) {
        // The holder's own agreement: the card's signature after the PIN, or for a card the
        // authority issued without a PIN (顔認証マイナンバーカード), the face at the reader.
        if !matches!(request.proof.method, Method::Pin | Method::Face) {
            return (
                None,
                Err(refuse::proof_incomplete("初回登録 needs the card's own signature (PIN) or, for a card without a PIN, the face")),
            );
        }
        let proven = match self.check_proof(&request.proof, institution.as_str(), Purpose::Link, LINK_DETAILS, now) {
            Ok(proven) => proven,
            Err(e) => return (None, Err(e)),
        };
        let certificate = proven.certificate;
        let person = match self.bound_person(&certificate.serial) {
            Ok(found) => found,
            Err(e) => return (None, Err(e)),
        };
        let (person, attributes, face_only) = person;
        if request.proof.method == Method::Face && !face_only {
            return (Some(person), Err(refuse::link_needs_pin()));
        }
        let result = (|| {
            let coverages = register.coverages_of_person(person).map_err(store_error)?;
            let span = |c: &onshi_store::model::CoverageRecord| (c.lost_on.is_none_or(|lost| lost > now.date()), c.acquired_on);
            let latest = coverages.iter().max_by_key(|c| span(c));
            let current = latest.is_some_and(|c| span(c).0);
            // No insurer covers the person now (most 生活保護 recipients left 国保 when the
            // assistance began): their welfare office's record is the current one, before a
            // lost coverage's old address.
            let welfare = if current { None } else { crate::subsidy::welfare_record_for_link(subsidies, person, now.date())? };
            let differ = match (welfare, latest) {
                (Some(holder), _) => attributes_differ(&attributes, &Recorded::of_welfare(&holder)),
                (None, Some(coverage)) => {
                    let terms = register.terms_of(coverage.coverage_id).map_err(store_error)?;
                    attributes_differ(&attributes, &Recorded::of_member(coverage, terms.last().map(|t| &t.details)))
                }
                (None, None) => return Err(refuse::person_not_registered()),
            };
            if !differ.is_empty() {
                return Err(refuse::attributes_mismatch(&differ));
            }
            let link = self.cards.link_card(&certificate.serial, &certificate.holder_ref, person, now).map_err(store_error)?;
            if link.person_id != person {
                return Err(refuse::already_linked());
            }
            Ok(Linked { serial: link.serial, linked_at: link.linked_at.to_string() })
        })();
        (Some(person), result)
    }

    /// The person the card authority bound a certificate to, with the attributes it attests.
    fn bound_person(&self, serial: &str) -> Result<(i64, BoundAttributes, bool), CenterError> {
        let binding = self.cards.binding(serial).map_err(store_error)?.ok_or_else(refuse::not_bound)?;
        match binding.state.as_str() {
            "revoked" => return Err(refuse::certificate_revoked("revoked by the card authority")),
            // The insurer confirmed a wrong link from this binding: not again until the
            // authority sends a corrected one.
            "disputed" => return Err(refuse::binding_disputed()),
            _ => {}
        }
        let person = self.cards.person_of_ref(&binding.person_ref).map_err(store_error)?.ok_or_else(refuse::person_not_registered)?;
        Ok((person, binding.attributes, binding.face_only))
    }

    /// Finds the person of a verified certificate, moving the link when the certificate is a
    /// renewal of a linked one.
    fn person_of(&self, certificate: &CardCertificate, now: Timestamp) -> Result<i64, CenterError> {
        self.holder_of(certificate, now).map(|(person, _)| person)
    }

    /// As [`CardPath::person_of`], with whether the certificate is a smartphone's (the card
    /// authority's feed says which card certificate it was issued from).
    fn holder_of(&self, certificate: &CardCertificate, now: Timestamp) -> Result<(i64, bool), CenterError> {
        // The card authority's word comes first: a certificate it revoked (a lost renewed card
        // before the next CRL) or whose binding was confirmed wrong is never used.
        let binding = self.cards.binding(&certificate.serial).map_err(store_error)?;
        let smartphone = binding.as_ref().is_some_and(|b| b.phone_of.is_some());
        match binding.as_ref().map(|b| b.state.as_str()) {
            Some("revoked") => return Err(refuse::certificate_revoked("revoked by the card authority")),
            Some("disputed") => return Err(refuse::not_linked()),
            _ => {}
        }
        let link = match self.cards.card_link(&certificate.serial).map_err(store_error)? {
            Some(link) => Some(link),
            None => {
                // A renewal moves the link only when the authority bound the new certificate
                // to the person the old one was linked to.
                let Some(old) = self.cards.holder_link(&certificate.holder_ref).map_err(store_error)? else {
                    return Err(refuse::not_linked());
                };
                let bound = match &binding {
                    Some(b) => self.cards.person_of_ref(&b.person_ref).map_err(store_error)?,
                    None => return Err(refuse::not_bound()),
                };
                if bound != Some(old.person_id) {
                    return Err(refuse::not_linked());
                }
                self.cards.move_card_link(&certificate.holder_ref, &certificate.serial, now).map_err(store_error)?
            }
        };
        let link = link.ok_or_else(refuse::not_linked)?;
        match link.state {
            LinkState::Active => Ok((link.person_id, smartphone)),
            LinkState::Flagged => Err(refuse::link_flagged()),
            LinkState::Unlinked => Err(refuse::not_linked()),
            // A moved link's certificate was renewed and is revoked; the CRL check refuses it
            // first, but a CRL not yet reloaded must not let it through.
            LinkState::Moved => Err(refuse::certificate_revoked("superseded by a renewed certificate")),
        }
    }

    /// Verification by card: the proof (covering the consents and, for a recorded visual
    /// check, the counter time), the person's coverage on the date of care, their 医療扶助 at
    /// this institution (a recipient no insurer registers is answered by it alone), the 受給者証
    /// when the patient said yes to showing them, the consents chosen then and those still in
    /// force, and a home-care consent with its key when the patient gave one.
    pub fn verify(
        &self,
        stores: &Stores<'_>,
        lags: &LagCache,
        request: &VerifyCard,
        institution: &InstitutionCode,
        now: Timestamp,
    ) -> Result<(CardAnswer, i64, bool), CenterError> {
        let details = consent_details(&request.consent, request.chosen_at.as_deref().unwrap_or("-"));
        let proven = self.check_proof(&request.proof, institution.as_str(), Purpose::Verify, &details, now)?;
        if request.proof.method == Method::Visual && request.consent.opens_medical_information() {
            return Err(refuse::consent_needs_card());
        }
        // A home-care consent's last day is checked before anything is recorded.
        let home_until = request.consent.home.as_ref().map(|h| crate::home::check(h, now.date())).transpose()?;
        let given_at = match (proven.recorded, request.chosen_at.as_deref()) {
            (false, None) => now,
            (false, Some(_)) => return Err(refuse::consent_time_invalid("chosen_at is sent only with a recorded visual check".into())),
            (true, None) => return Err(refuse::consent_time_invalid("a recorded visual check needs its counter time".into())),
            (true, Some(text)) => {
                let at = Timestamp::parse(text).map_err(|e| refuse::consent_time_invalid(format!("chosen_at: {e}")))?;
                if at.jst_seconds() > now.jst_seconds() + CLOCK_SKEW_SECONDS {
                    return Err(refuse::consent_time_invalid(format!("chosen_at {text} is in the future")));
                }
                if at.jst_seconds() < now.jst_seconds() - RECORDED_DAYS_MAX * 86_400 {
                    return Err(refuse::consent_time_invalid(format!("chosen_at {text} is older than {RECORDED_DAYS_MAX} days")));
                }
                at
            }
        };
        let on = match &request.date_of_care {
            Some(text) => Date::parse_yyyymmdd(text).map_err(|e| errors::invalid_field("date_of_care", &e))?,
            None => given_at.date(),
        };
        // A home-care consent runs from the visit's date of care to its last day, checked
        // before anything is recorded.
        if let (Some(until), Some(_)) = (home_until, request.consent.home.as_ref())
            && until < on
        {
            return Err(errors::home_care_invalid(format!("consent.home.until {until} is before the date of care {on}")));
        }
        let certificate = proven.certificate;
        let (person, smartphone) = self.holder_of(&certificate, now)?;
        let register = stores.register;
        // The person's coverages with their terms, in one read: the card named the person, so
        // the number path's second lookup (every holder of the card's 番号) is not needed.
        let view = register.person_view(person).map_err(store_error)?;
        // 医療扶助 is part of the qualification answer, as the national system gives it (A1).
        let subsidies = stores.subsidies.subsidies_of_person(person).map_err(store_error)?;
        let welfare = crate::subsidy::welfare_on_card(stores.subsidies, &view, &subsidies, institution, on)?;
        if view.is_empty() && welfare.is_none() {
            return Err(refuse::no_coverage_for_person());
        }
        // Recorded once the person and a coverage are found, so that a refused check opens no
        // consent window. An expired certificate in its grace confirms eligibility only: the
        // consents chosen with it are not taken (the notice says so).
        let in_grace = matches!(proven.standing, Standing::Grace { .. });
        let consents = if in_grace {
            self.consents(person, institution, now)?
        } else {
            self.record_consents(person, institution, &request.consent, given_at, now)?
        };
        let chosen_any = request.consent.opens_medical_information() || request.consent.limit || request.consent.specific_disease;
        let notice = certificate_notice(proven.standing, chosen_any);
        let limit_live = consents.limit_application_certificate_related.flag == "1";
        let mut answer = if view.is_empty() {
            // A 生活保護 recipient no insurer registers: 該当資格なし for insurance, and the
            // 医療扶助 that covers them.
            crate::verify::no_coverage_answer(on, now)
        } else {
            answer_for_view(register, lags, &view, on, limit_live, now)?
        };
        answer.welfare = welfare;
        // 「医療費助成の各種受給者証を利用しますか」: yes in the signed consent shows the
        // certificates valid on the date of care, for this answer only.
        if request.consent.subsidy {
            answer.subsidies = crate::subsidy::shown_on(&subsidies, institution, on);
        }
        // The home-care consent, like the others, is not taken in the grace period; it runs from
        // the visit's date of care.
        let home_consent = match (request.consent.home.as_ref(), home_until) {
            (Some(choice), Some(until)) if !in_grace => {
                Some(crate::home::record(stores.home, person, institution, choice, (on, until), now)?)
            }
            _ => None,
        };
        // The reader's next challenge rides on this answer: a check at the counter is then one
        // request (proof and answer), not two. None when the institution already holds many:
        // the next check then asks for one.
        let next_challenge = self.next_challenge(institution.as_str(), now);
        let answer = CardAnswer {
            answer,
            method: request.proof.method,
            serial: certificate.serial,
            consents,
            certificate: notice,
            next_challenge,
            home_consent,
        };
        Ok((answer, person, smartphone))
    }

    /// 再照会 under a home-care consent: the person's coverage on `on` as the card path answers
    /// it (the 限度額 only under a live consent), without the card.
    pub fn answer_for_person(
        &self,
        register: &dyn Register,
        lags: &LagCache,
        person: i64,
        institution: &InstitutionCode,
        on: Date,
        now: Timestamp,
    ) -> Result<onshi_api::verify::VerifyAnswer, CenterError> {
        let view = register.person_view(person).map_err(store_error)?;
        if view.is_empty() {
            return Err(refuse::no_coverage_for_person());
        }
        let limit_live = self.consents(person, institution, now)?.limit_application_certificate_related.flag == "1";
        answer_for_view(register, lags, &view, on, limit_live, now)
    }

    fn record_consents(
        &self,
        person: i64,
        institution: &InstitutionCode,
        choice: &ConsentChoice,
        given_at: Timestamp,
        now: Timestamp,
    ) -> Result<Consents, CenterError> {
        let chosen = [choice.drug, choice.checkup, choice.diagnosis, choice.limit, choice.specific_disease];
        for (scope, given) in SCOPES.iter().zip(chosen) {
            if given {
                let consent =
                    Consent { scope: scope.to_string(), given_at, available_until: seconds_later(given_at, CONSENT_HOURS * 3600) };
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

    /// The person whose own card signed `proof` for `purpose` and `details` (PIN path,
    /// challenge taken as [`PATIENT`]).
    pub fn holder(&self, proof: &CardProof, purpose: Purpose, details: &str, now: Timestamp) -> Result<(i64, String), CenterError> {
        if proof.method != Method::Pin {
            return Err(refuse::proof_incomplete("the patient's own requests need the card's signature (the PIN path)"));
        }
        let certificate = self.check_proof(proof, PATIENT, purpose, details, now)?.certificate;
        Ok((self.person_of(&certificate, now)?, certificate.serial))
    }

    /// The holder's own record, with their card's PIN signature: every coverage as a clinic
    /// would be answered (today, or the coverage's last covered day), the consents they gave
    /// and the reports about their cards. A card blocked by a flag still reads it: its holder
    /// must see what became of the flag, but only that: the reports about this card, none of
    /// the linked person's data. Returns the person and the card's serial with it, and whether
    /// the whole record was given (then the access log is the audit log's to fill).
    pub fn record(
        &self,
        register: &dyn Register,
        lags: &LagCache,
        proof: &CardProof,
        now: Timestamp,
    ) -> Result<(i64, String, PatientRecord, bool), CenterError> {
        if proof.method != Method::Pin {
            return Err(refuse::proof_incomplete("the patient's own requests need the card's signature (the PIN path)"));
        }
        let certificate = self.check_proof(proof, PATIENT, Purpose::Record, "", now)?.certificate;
        let person = match self.person_of(&certificate, now) {
            Ok(person) => person,
            // A card whose link is flagged may be someone else's card: its holder sees what
            // became of the reports about this card, and nothing of the linked person.
            Err(refused) => {
                let binding = self.cards.binding(&certificate.serial).map_err(store_error)?;
                if binding.is_some_and(|b| b.state != "active") {
                    return Err(refused);
                }
                return match self.cards.card_link(&certificate.serial).map_err(store_error)? {
                    Some(link) if link.state == LinkState::Flagged => {
                        let reports = self
                            .cards
                            .reports_of_person(link.person_id)
                            .map_err(store_error)?
                            .into_iter()
                            .filter(|r| r.serial == certificate.serial)
                            .map(patient_report)
                            .collect();
                        let access_log = onshi_api::card::AccessLog { entries: Vec::new(), total: 0 };
                        let record = PatientRecord { coverages: Vec::new(), consents: Vec::new(), reports, access_log, blocked: true };
                        Ok((link.person_id, certificate.serial, record, false))
                    }
                    _ => Err(refused),
                };
            }
        };
        let view = register.person_view(person).map_err(store_error)?;
        let today = now.date();
        let mut coverages = Vec::with_capacity(view.len());
        for held in &view {
            let c = &held.coverage;
            let on = match c.lost_on {
                _ if today < c.acquired_on => c.acquired_on,
                Some(lost) if lost <= today => lost.add_days(-1).max(c.acquired_on),
                _ => today,
            };
            // The patient's own data: the limit category is theirs to see.
            let query = NumberQuery::for_coverage(c, on, true);
            coverages.push(answer_from_view(&view, lags.get(register, &c.insurer)?, &query, now).0);
        }
        let consents = self
            .cards
            .consents_of_person(person)
            .map_err(store_error)?
            .into_iter()
            .map(|(institution_code, c)| PatientConsent {
                institution_code,
                scope: c.scope,
                given_at: c.given_at.to_string(),
                available_until: c.available_until.to_string(),
                in_force: c.available_until > now,
            })
            .collect();
        let reports = self.cards.reports_of_person(person).map_err(store_error)?.into_iter().map(patient_report).collect();
        let access_log = onshi_api::card::AccessLog { entries: Vec::new(), total: 0 };
        Ok((person, certificate.serial, PatientRecord { coverages, consents, reports, access_log, blocked: false }, true))
    }

    /// The card registry behind this path (the dashboard counts its reports).
    pub fn registry(&self) -> &Arc<dyn CardRegistry> {
        &self.cards
    }

    /// The link of a certificate whatever its state, and its person (a report must be
    /// possible for a blocked card).
    fn linked_person(&self, serial: &str) -> Result<i64, CenterError> {
        let link = self.cards.card_link(serial).map_err(store_error)?.ok_or_else(refuse::not_linked)?;
        match link.state {
            LinkState::Active | LinkState::Flagged => Ok(link.person_id),
            LinkState::Moved | LinkState::Unlinked => Err(refuse::not_linked()),
        }
    }

    /// The holder flags their own card's link (the reason signed by the card); it blocks the
    /// card until the insurer reviews it. Returns (person, serial, report id).
    pub fn flag_by_holder(&self, proof: &CardProof, reason: &str, now: Timestamp) -> Result<(i64, String, i64), CenterError> {
        if proof.method != Method::Pin {
            return Err(refuse::proof_incomplete("the patient's own requests need the card's signature (the PIN path)"));
        }
        let certificate = self.check_proof(proof, PATIENT, Purpose::Flag, reason, now)?.certificate;
        let person = self.linked_person(&certificate.serial)?;
        let reason: String = reason.chars().take(200).collect();
        let report = self.cards.file_report(&certificate.serial, person, PATIENT, &reason, true, now).map_err(store_error)?;
        Ok((person, certificate.serial, report))
    }

    /// A clinic reports the card on its reader (PIN, face or visual proof over the reason). The
    /// card keeps working: the insurer reviews the report. Returns (person, serial, report id).
    pub fn report(
        &self,
        proof: &CardProof,
        reason: &str,
        institution: &InstitutionCode,
        now: Timestamp,
    ) -> Result<(i64, String, i64), CenterError> {
        let proven = self.check_proof(proof, institution.as_str(), Purpose::Report, reason, now)?;
        let person = self.linked_person(&proven.certificate.serial)?;
        let reason: String = reason.chars().take(200).collect();
        let report =
            self.cards.file_report(&proven.certificate.serial, person, institution.as_str(), &reason, false, now).map_err(store_error)?;
        Ok((person, proven.certificate.serial, report))
    }

    /// The holder withdraws consents given to an institution (the institution and scopes
    /// signed by the card). Returns the person and the scopes that were in force.
    pub fn withdraw(&self, request: &WithdrawConsent, now: Timestamp) -> Result<(i64, Vec<String>), CenterError> {
        let institution = InstitutionCode::parse(&request.institution_code).map_err(|e| errors::invalid_field("institution_code", &e))?;
        // `home` is the home-care consent (居宅同意取得型), ended by the caller (its store).
        if request.scopes.is_empty() || request.scopes.iter().any(|s| !SCOPES.contains(&s.as_str()) && s != HOME_SCOPE) {
            return Err(errors::malformed_body(format!("scopes must be some of {}, {HOME_SCOPE}", SCOPES.join(", "))));
        }
        let details = withdraw_details(&request.institution_code, &request.scopes);
        let (person, _) = self.holder(&request.proof, Purpose::Withdraw, &details, now)?;
        let mut withdrawn = Vec::new();
        for scope in request.scopes.iter().filter(|s| *s != HOME_SCOPE) {
            if self.cards.withdraw_consent(person, institution.as_str(), scope).map_err(store_error)? {
                withdrawn.push(scope.clone());
            }
        }
        Ok((person, withdrawn))
    }

    /// The holder's online-care consent from their own device: the proof covers the institution
    /// and the last day. Returns the person and the institution.
    pub fn online_consent(
        &self,
        request: &onshi_api::card::GiveOnlineConsent,
        now: Timestamp,
    ) -> Result<(i64, InstitutionCode), CenterError> {
        let institution = InstitutionCode::parse(&request.institution_code).map_err(|e| errors::invalid_field("institution_code", &e))?;
        let details = onshi_api::card::online_consent_details(&request.institution_code, &request.until);
        let (person, _) = self.holder(&request.proof, Purpose::OnlineConsent, &details, now)?;
        Ok((person, institution))
    }

    /// The open reports about an insurer's members, with the numbers it knows them by.
    pub fn reports_for(&self, insurer: &InsurerNumber, today: Date) -> Result<LinkReports, CenterError> {
        let rows = self.cards.open_reports_for_insurer(insurer.as_str(), today).map_err(store_error)?;
        let reports = rows
            .into_iter()
            .map(|r| LinkReport {
                report_id: r.report.report_id,
                serial: r.report.serial,
                reporter: r.report.reporter,
                reason: r.report.reason,
                filed_at: r.report.filed_at.to_string(),
                state: r.report.state,
                insurer_number: r.insurer_number,
                symbol: Some(r.symbol).filter(|s| !s.is_empty()),
                number: r.number,
                branch: format!("{:02}", r.branch),
            })
            .collect();
        Ok(LinkReports { reports })
    }

    /// The insurer's review of a report about one of its members: `confirm` undoes the link,
    /// `clear` lets a blocked card verify again. Returns the person (also on refusal, when
    /// known) for the audit log.
    pub fn review(
        &self,
        register: &dyn Register,
        request: &ReviewLink,
        insurer: &InsurerNumber,
        now: Timestamp,
    ) -> (Option<i64>, Result<LinkReportRow, CenterError>) {
        let confirm = match request.decision.as_str() {
            "confirm" => true,
            "clear" => false,
            _ => return (None, Err(errors::malformed_body("decision must be \"confirm\" or \"clear\"".into()))),
        };
        let report = match self.cards.report(request.report_id).map_err(store_error) {
            Ok(Some(report)) => report,
            Ok(None) => return (None, Err(refuse::report_unknown())),
            Err(e) => return (None, Err(e)),
        };
        let person = report.person_id;
        let result = (|| {
            // Only an insurer that covers the person now decides (a former one could otherwise
            // clear the holder's own flag).
            let coverages = register.coverages_of_person(person).map_err(store_error)?;
            let today = now.date();
            if !coverages.iter().any(|c| &c.insurer == insurer && c.acquired_on <= today && c.lost_on.is_none_or(|l| l > today)) {
                return Err(refuse::report_other_insurer());
            }
            let note: String = request.note.chars().take(200).collect();
            let reviewer = format!("insurer:{}", insurer.as_str());
            self.cards
                .review_report(report.report_id, &reviewer, confirm, &note, now)
                .map_err(store_error)?
                .ok_or_else(refuse::report_closed)
        })();
        (Some(person), result)
    }
}

/// What 初回登録 compares the card authority's attested attributes with: the insurer's member
/// record or, for someone no insurer registers, their welfare office's.
struct Recorded<'a> {
    /// None when the insurer sent no names (they then differ).
    name: Option<&'a str>,
    name_kana: Option<&'a str>,
    birth_date: Date,
    sex: onshi_domain::codes::Sex,
    /// Insurers do not always register an address; when they do, it must match.
    address: Option<&'a str>,
}

impl<'a> Recorded<'a> {
    fn of_member(coverage: &'a onshi_store::model::CoverageRecord, details: Option<&'a onshi_store::model::MemberDetails>) -> Self {
        Recorded {
            name: details.map(|d| d.name.as_str()),
            name_kana: details.map(|d| d.name_kana.as_str()),
            birth_date: coverage.holder.birth_date,
            sex: coverage.holder.sex,
            address: details.and_then(|d| d.address.as_deref()),
        }
    }

    fn of_welfare(holder: &'a onshi_store::subsidy::WelfareHolder) -> Self {
        Recorded {
            name: Some(&holder.name),
            name_kana: Some(&holder.name_kana),
            birth_date: holder.birth_date,
            sex: holder.sex,
            address: holder.address.as_deref(),
        }
    }
}

/// The fields where the card authority's attested attributes and the record differ.
fn attributes_differ(attested: &BoundAttributes, recorded: &Recorded<'_>) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if recorded.name.is_none_or(|name| comparable(name) != comparable(&attested.name)) {
        differ.push("name");
    }
    if recorded.name_kana.is_none_or(|kana| onshi_domain::kana::reading(kana) != onshi_domain::kana::reading(&attested.name_kana)) {
        differ.push("name_kana");
    }
    if recorded.birth_date.yyyymmdd() != attested.birth_date {
        differ.push("birth_date");
    }
    if recorded.sex.code() != attested.sex {
        differ.push("sex");
    }
    if let Some(address) = recorded.address
        && comparable(address) != comparable(&attested.address)
    {
        differ.push("address");
    }
    differ
}

/// A name or address as compared at 初回登録: half-width, without spaces, one hyphen.
pub(crate) fn comparable(text: &str) -> String {
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
    fn names_and_addresses_compare_across_widths_and_hyphens() {
        assert_eq!(comparable("東京都千代田区霞が関１－２－２"), comparable("東京都千代田区霞が関1-2-2"));
    }

    #[test]
    fn each_owner_has_its_own_challenge_quota() {
        let mut challenges = Challenges::default();
        let now = Timestamp::from_jst_seconds(1_000_000);
        for i in 0..PATIENT_CHALLENGES_MAX {
            assert!(challenges.insert(format!("p{i}"), PATIENT, now));
        }
        assert!(!challenges.insert("one more".into(), PATIENT, now), "the patients' pool is full");
        assert!(challenges.insert("c0".into(), "1311234569", now), "a clinic is not affected");
        for i in 1..CHALLENGES_PER_INSTITUTION_MAX {
            assert!(challenges.insert(format!("c{i}"), "1311234569", now));
        }
        assert!(!challenges.insert("c-more".into(), "1311234569", now), "nor can one clinic take more than its share");
        assert!(challenges.insert("d0".into(), "2711234563", now), "another clinic still gets one");
        assert!(challenges.take("c0").is_some());
        assert!(challenges.insert("c-again".into(), "1311234569", now), "a used challenge frees its place");
        let later = seconds_later(now, CHALLENGE_SECONDS + 1);
        assert!(challenges.insert("after".into(), PATIENT, later), "expired ones are pruned when the pool is full");
    }
}

/// The certificate's life through the card path, with the clock moved as the world's own
/// timeline says (a certificate issued for 30 days, checked on day 10, 40 and 200).
#[cfg(test)]
mod life_tests {
    use super::*;
    use crate::import::{ImportOptions, import_jsonl};
    use onshi_api::card::{HomeCare, HomeCareKind};
    use onshi_pki::card::{CardAttributes, VirtualCard};
    use onshi_pki::jpki::{CardCa, CardValidity};
    use onshi_store::sqlite::{SqliteOptions, SqliteRegister};

    const CLINIC: &str = "1311234569";

    struct World {
        _dir: tempfile::TempDir,
        register: Arc<SqliteRegister>,
        path: CardPath,
        card: VirtualCard,
        issued: Timestamp,
    }

    fn world() -> World {
        world_from(&CardAttributes::fictitious().address, &[])
    }

    /// The world whose insurer registered the holder at `address`, then `more` events.
    fn world_from(address: &str, more: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let register = Arc::new(SqliteRegister::open(&dir.path().join("r.sqlite"), SqliteOptions::SERVER).unwrap());
        let holder = CardAttributes::fictitious();
        let event = format!(
            r#"{{"event_id":"e1","kind":"acquire","insurer_number":"06130488","person_ref":"p1","card":{{"symbol":"12","number":"345","branch":"00"}},"occurred_on":"20200401","notified_at":"20200402090000","member":{{"relationship":"1","card_classification":"01","name":"{}","name_kana":"{}","sex":"{}","birth_date":"{}","address":"{}"}},"terms":{{"income_class":"general"}}}}"#,
            holder.name, holder.name_kana, holder.sex, holder.birth_date, address
        );
        let events = std::iter::once(event.as_str()).chain(more.iter().copied()).collect::<Vec<_>>().join("\n");
        let issued = onshi_pki::now();
        let options = ImportOptions { batch_events: 10, only_insurer: None, registered_at: issued };
        let report = import_jsonl(register.as_ref(), events.as_bytes(), &options, |_| {}).unwrap();
        assert_eq!(report.applied, 1 + more.len() as u64, "{report:?}");
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let card = ca
            .issue_card(holder, "p1", Some("1234"), CardValidity::Days { from: issued.date(), days: 30 }, &dir.path().join("card.json"))
            .unwrap();
        // A list that stays current across the whole timeline of the test.
        ca.publish_crl(400).unwrap();
        let cards: Arc<dyn CardRegistry> = register.clone();
        let path = CardPath::new(cards, Some(&dir.path().join("jpki"))).unwrap();
        path.sync(issued);
        World { _dir: dir, register, path, card, issued }
    }

    fn days_later(at: Timestamp, days: i64) -> Timestamp {
        Timestamp::from_jst_seconds(at.jst_seconds() + days * 86_400)
    }

    impl World {
        fn stores(&self) -> Stores<'_> {
            let r = self.register.as_ref();
            Stores { register: r, home: r, subsidies: r }
        }

        fn proof(&mut self, purpose: Purpose, details: &str, now: Timestamp) -> CardProof {
            let challenge = self.path.challenge(CLINIC, now).unwrap().challenge;
            let signature = self.card.sign_with_pin("1234", &card_message(purpose, &challenge, details)).unwrap();
            CardProof {
                challenge,
                certificate: self.card.certificate_pem().to_string(),
                method: Method::Pin,
                card_signature: Some(hex(&signature)),
                attestation: None,
            }
        }

        fn verify(&mut self, consent: ConsentChoice, now: Timestamp) -> Result<CardAnswer, CenterError> {
            let proof = self.proof(Purpose::Verify, &consent_details(&consent, "-"), now);
            let request = VerifyCard { proof, date_of_care: None, consent, chosen_at: None };
            let clinic = InstitutionCode::parse(CLINIC).unwrap();
            self.path.verify(&self.stores(), &LagCache::default(), &request, &clinic, now).map(|(answer, _, _)| answer)
        }
    }

    #[test]
    fn each_answer_carries_the_institutions_next_challenge_usable_once_and_by_it_alone() {
        let mut world = world();
        let now = world.issued;
        let clinic = InstitutionCode::parse(CLINIC).unwrap();
        let proof = world.proof(Purpose::Link, LINK_DETAILS, now);
        world.path.link(world.register.as_ref(), world.register.as_ref(), &LinkCard { proof }, &clinic, now).1.unwrap();
        let first = world.verify(ConsentChoice::default(), now).unwrap();
        let next = first.next_challenge.expect("the answer carries the next challenge").challenge;
        let details = consent_details(&ConsentChoice::default(), "-");
        let signed = |world: &mut World, challenge: &str| {
            let signature = world.card.sign_with_pin("1234", &card_message(Purpose::Verify, challenge, &details)).unwrap();
            let proof = CardProof {
                challenge: challenge.to_string(),
                certificate: world.card.certificate_pem().to_string(),
                method: Method::Pin,
                card_signature: Some(hex(&signature)),
                attestation: None,
            };
            VerifyCard { proof, date_of_care: None, consent: ConsentChoice::default(), chosen_at: None }
        };
        let other = InstitutionCode::parse("2711234563").unwrap();
        let lags = LagCache::default();
        let request = signed(&mut world, &next);
        let stolen = world.path.verify(&world.stores(), &lags, &request, &other, now).unwrap_err();
        assert_eq!(stolen.body.code, "CHALLENGE_OTHER_INSTITUTION", "another clinic cannot use it");
        // Taking it for the wrong owner used it up: the clinic's own next answer brings another.
        let request = signed(&mut world, &next);
        let again = world.path.verify(&world.stores(), &lags, &request, &clinic, now).unwrap_err();
        assert_eq!(again.body.code, "CHALLENGE_UNKNOWN");
        let second = world.verify(ConsentChoice::default(), now).unwrap();
        let next = second.next_challenge.unwrap().challenge;
        let request = signed(&mut world, &next);
        let third = world.path.verify(&world.stores(), &lags, &request, &clinic, now).unwrap();
        assert_eq!(third.0.answer.validity.code, "1", "the world's member is covered since 2020 (its acquisition event)");
        let request = signed(&mut world, &next);
        let replay = world.path.verify(&world.stores(), &lags, &request, &clinic, now).unwrap_err();
        assert_eq!(replay.body.code, "CHALLENGE_UNKNOWN", "used once");
        let late = Timestamp::from_jst_seconds(now.jst_seconds() + CHALLENGE_SECONDS + 1);
        let stale = third.0.next_challenge.unwrap().challenge;
        let request = signed(&mut world, &stale);
        let expired = world.path.verify(&world.stores(), &lags, &request, &clinic, late).unwrap_err();
        assert_eq!(expired.body.code, "CHALLENGE_EXPIRED");

        // An institution holding many open challenges gets no more on its answers (they would
        // eat into the quota its own requests draw on); its requests still get theirs.
        let later = Timestamp::from_jst_seconds(late.jst_seconds() + 2 * CHALLENGE_SECONDS);
        for _ in 0..ANSWER_CHALLENGES_HELD_MAX {
            world.path.challenge(CLINIC, later).unwrap();
        }
        let full = world.verify(ConsentChoice::default(), later).unwrap();
        assert_eq!(full.next_challenge, None);
        assert!(world.path.challenge(CLINIC, later).is_ok(), "the quota itself is far from full");
    }

    /// A 生活保護 recipient whose 国保 ended when the assistance began still has that lost
    /// coverage, with the address of before. 初回登録 compares the card with their welfare
    /// office's record, the current one, once the office registered it; before, the old
    /// address refuses the link.
    #[test]
    fn a_recipient_whose_insurance_ended_registers_their_card_against_the_welfare_office_record() {
        use onshi_store::subsidy::{SubsidyChange, SubsidyEventRecord, SubsidyStore, SubsidyTerms, WelfareHolder};
        let lose = r#"{"event_id":"e2","kind":"lose","insurer_number":"06130488","person_ref":"p1","card":{"symbol":"12","number":"345","branch":"00"},"occurred_on":"20250101","notified_at":"20250105100000","loss_reason":"02"}"#;
        let mut world = world_from("東京都旧市一丁目1番", &[lose]);
        let now = world.issued;
        let clinic = InstitutionCode::parse(CLINIC).unwrap();
        let link = |world: &mut World| {
            let proof = world.proof(Purpose::Link, LINK_DETAILS, now);
            world.path.link(world.register.as_ref(), world.register.as_ref(), &LinkCard { proof }, &clinic, now).1
        };
        let refused = link(&mut world).unwrap_err();
        assert_eq!(refused.body.code, "CARD_ATTRIBUTES_MISMATCH");
        assert!(refused.body.detail.contains("address"), "{}", refused.body.detail);

        let attested = CardAttributes::fictitious();
        let grant = SubsidyEventRecord {
            event_id: "w1".into(),
            payer: onshi_domain::ids::PublicPayerNumber::parse("12136016").unwrap(),
            recipient: onshi_domain::ids::RecipientNumber::parse("0000018").unwrap(),
            person_ref: "p1".into(),
            occurred_on: Date::parse_yyyymmdd("20250101").unwrap(),
            notified_at: Timestamp::at_start_of(Date::parse_yyyymmdd("20250101").unwrap()),
            change: SubsidyChange::Grant(SubsidyTerms {
                name: "千代田区福祉事務所".into(),
                valid_to: None,
                self_pay_cap_yen: None,
                income_segment: None,
                designated_institutions: vec![CLINIC.into()],
                withheld: false,
            }),
            holder: Some(WelfareHolder {
                name: attested.name.clone(),
                name_kana: attested.name_kana.clone(),
                birth_date: Date::parse_yyyymmdd(&attested.birth_date).unwrap(),
                sex: onshi_domain::codes::Sex::parse(&attested.sex).unwrap(),
                address: Some(attested.address.clone()),
            }),
        };
        assert_eq!(world.register.apply_subsidy_events(&[grant], now).unwrap(), [onshi_store::model::ApplyOutcome::Applied]);
        link(&mut world).expect("linked against the office's record");
        let answer = world.verify(ConsentChoice::default(), now).unwrap().answer;
        assert_eq!(answer.validity.code, "2", "the insurance ended");
        assert_eq!(answer.headline_validity().code, "6", "covered by the assistance, no ticket yet");
    }

    #[test]
    fn an_expired_certificate_confirms_eligibility_only_for_three_months_after_its_month() {
        let mut world = world();
        let clinic = InstitutionCode::parse(CLINIC).unwrap();
        let issued = world.issued;
        let proof = world.proof(Purpose::Link, LINK_DETAILS, issued);
        let (_, linked) = world.path.link(world.register.as_ref(), world.register.as_ref(), &LinkCard { proof }, &clinic, issued);
        linked.unwrap();
        let drug = ConsentChoice { drug: true, ..ConsentChoice::default() };

        // Day 10: 20 days left, within three months: "更新のご案内", consents taken as usual.
        let expires_on = issued.date().add_days(30);
        let soon = world.verify(drug, days_later(issued, 10)).unwrap();
        let notice = soon.certificate.expect("a renewal notice");
        assert_eq!((notice.state.as_str(), notice.expires_on.clone()), ("expiring", expires_on.yyyymmdd()));
        assert!(notice.reception_ja.contains("更新"), "{}", notice.reception_ja);
        assert_eq!(soon.consents.pharmacists_info.flag, "1");

        // Day 40 (expired ten days ago): eligibility is confirmed, consents are refused.
        let grace = world.verify(drug, days_later(issued, 40)).unwrap();
        assert_eq!(grace.answer.validity.code, "1", "coverage still confirmed");
        let notice = grace.certificate.expect("a grace notice");
        let grace_until = certificate::standing(expires_on, days_later(issued, 40).date());
        let Standing::Grace { grace_until, .. } = grace_until else { panic!("in grace: {grace_until:?}") };
        // Independently: the end of the third month after the month of expiry.
        let mut end = expires_on.first_of_month();
        for _ in 0..4 {
            end = end.first_of_next_month();
        }
        assert_eq!(grace_until, end.add_days(-1));
        assert_eq!((notice.state.as_str(), notice.grace_until.clone()), ("grace", Some(grace_until.yyyymmdd())));
        assert!(notice.consent_refused);
        // The consent given on day 10 has run out (24 hours); none was taken on day 40.
        assert_ne!(grace.consents.pharmacists_info.flag, "1", "no medical information on an expired certificate");
        // Nor a home-care consent: 再照会 without the card on a certificate past its end.
        let until = days_later(issued, 60).date().yyyymmdd().parse().unwrap();
        let home = ConsentChoice { home: Some(HomeCare { kind: HomeCareKind::Visit, until }), ..ConsentChoice::default() };
        let grace_home = world.verify(home, days_later(issued, 40)).unwrap();
        assert_eq!(grace_home.home_consent, None, "no home-care consent on an expired certificate");
        // Within the validity it is taken (day 10 + 1), from the date of care.
        let taken = world.verify(home, days_later(issued, 11)).unwrap().home_consent.expect("taken before the expiry");
        assert_eq!(taken.valid_from, days_later(issued, 11).date().yyyymmdd());
        // Nothing else than eligibility: a report needs a valid certificate.
        let now = days_later(issued, 40);
        let proof = world.proof(Purpose::Report, "wrong person", now);
        let refused = world.path.report(&proof, "wrong person", &clinic, now).unwrap_err();
        assert_eq!(refused.body.code, "CARD_CERTIFICATE_EXPIRED");

        // Day 200: past the grace, refused.
        let late = world.verify(ConsentChoice::default(), days_later(issued, 200)).unwrap_err();
        assert_eq!(late.body.code, "CARD_CERTIFICATE_EXPIRED");
    }
}

fn patient_report(r: onshi_store::cards::LinkReportRow) -> PatientReport {
    PatientReport {
        report_id: r.report_id,
        serial: r.serial,
        reporter: r.reporter,
        reason: r.reason,
        filed_at: r.filed_at.to_string(),
        state: r.state,
    }
}
