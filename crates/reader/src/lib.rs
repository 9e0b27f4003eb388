//! The card reader (顔認証付きカードリーダー) behind one interface, [`CardReader`], and a
//! simulator over virtual card files ([`SimulatedReader`]). A PC/SC driver implements the
//! same trait later: read the user certificate, have the card sign after its PIN, and have the
//! reader attest a face match or a visual check with its own device key.
//!
//! [`flow`] runs the card flows against the center: challenge → proof → link or verify.

pub mod flow;
pub mod jpki_host;
pub mod pcsc;
pub mod pcsc_reader;
pub mod vpcd;

use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA256, digest};
use onshi_api::card::{Attestation, Purpose, attestation_message};
use onshi_domain::hex;
use onshi_pki::card::{CardError, VirtualCard, sign_pem};
use serde::{Deserialize, Serialize};

/// What a reader can fail at, for reception.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("no card on the reader: place the card")]
    NoCard,
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("the face does not match the card")]
    FaceMismatch,
    #[error("visual mode is off: staff switch it on with the facility password")]
    VisualModeOff,
    #[error("wrong facility password: visual mode stays off")]
    WrongFacilityPassword,
    #[error("reader file {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error(
        "reader file {path} keeps the facility password as a fast SHA-256 (an older onshi); run `onshi reader init` again to write it with a slow hash, then `onshi reader register`"
    )]
    OldPasswordHash { path: PathBuf },
    #[error(transparent)]
    Pki(#[from] onshi_pki::PkiError),
    #[error(transparent)]
    Pcsc(#[from] crate::pcsc::PcscError),
    #[error("the card on the reader is not a My Number card (no JPKI application): use the insurance number instead")]
    NotJpki,
    #[error("this phone reads its certificate only after its PIN: enter the smartphone PIN")]
    PinNeededToRead,
    #[error("this reader has no camera: use the PIN, or visual mode")]
    NoCamera,
    #[error("the card answered {status:04X} to {step}: place it again, or use the insurance number")]
    CardStatus { step: &'static str, status: u16 },
}

/// What the reader sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ReaderState {
    Empty,
    /// A card is on the reader; `serial` of its certificate.
    CardPresent {
        serial: String,
    },
}

/// A card reader: the card's certificate and signature, and the reader's own attestations.
pub trait CardReader: Send {
    /// The reader's identity and device key.
    fn reader_file(&self) -> &ReaderFile;

    fn reader_id(&self) -> &str {
        &self.reader_file().reader_id
    }

    fn state(&self) -> ReaderState;

    /// The user certificate (PEM) of the card on the reader.
    fn certificate(&self) -> Result<String, ReaderError>;

    /// The user certificate, giving the PIN first where the token wants it to read (an
    /// Android phone); other tokens read without it.
    fn certificate_with_pin(&mut self, pin: &str) -> Result<String, ReaderError> {
        let _ = pin;
        self.certificate()
    }

    /// The card signs `message` after `pin` (counts a wrong PIN on the card).
    fn sign_with_pin(&mut self, pin: &str, message: &[u8]) -> Result<Vec<u8>, ReaderError>;

    /// An iPhone signs `message` after its owner confirmed with Face ID / Touch ID on it.
    fn sign_on_device(&mut self, message: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let _ = message;
        Err(ReaderError::PinNeededToRead)
    }

    /// The camera compares the face with the card; on a match the reader attests it, with the
    /// purpose and the details the patient chose on its screens ([`attestation_message`]).
    fn attest_face(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError>;

    /// Staff checked the card photo (visual mode must be on); the reader attests it.
    fn attest_visual(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError>;

    /// The reader attests a visual check staff recorded earlier for the card with this
    /// certificate, while the line was down (`recorded_visual`; `details` carry the counter
    /// time): the gateway re-verifies it once the line returns, when the card has long left.
    fn attest_recorded_visual(&self, challenge: &str, certificate_pem: &str, details: &str) -> Result<Attestation, ReaderError> {
        self.reader_file().attest_recorded_visual(challenge, certificate_pem, details)
    }

    fn remove_card(&mut self);
}

/// PBKDF2-HMAC-SHA256 iterations for the facility password: OWASP's 2023 figure. The
/// password guards visual mode only, but the file travels in backups, so a stolen copy must
/// not give the password up to a fast offline search (a single SHA-256 did).
pub const PASSWORD_ITERATIONS: u32 = 600_000;
/// Files naming more iterations are refused: a checked password would block the reader for
/// seconds, and no onshi writes them.
const PASSWORD_ITERATIONS_MAX: u32 = 10_000_000;
/// Salt bytes, random per file, so two readers with one password have different hashes.
const PASSWORD_SALT_BYTES: usize = 16;
const PASSWORD_HASH_BYTES: usize = 32;
const PASSWORD_ALGORITHM: &str = "pbkdf2-hmac-sha256";

/// The facility password as the reader file keeps it: a slow, salted hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordHash {
    /// Always `pbkdf2-hmac-sha256`; named so that a later algorithm can be told apart.
    pub algorithm: String,
    pub iterations: u32,
    /// Random per file (hex).
    pub salt: String,
    /// The derived key (hex).
    pub hash: String,
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str) -> Result<PasswordHash, ReaderError> {
        use aws_lc_rs::rand::SecureRandom;
        let mut salt = [0u8; PASSWORD_SALT_BYTES];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| ReaderError::File { path: PathBuf::new(), detail: "the system random source failed".into() })?;
        let mut hash = [0u8; PASSWORD_HASH_BYTES];
        aws_lc_rs::pbkdf2::derive(pbkdf2_algorithm(), iterations(PASSWORD_ITERATIONS), &salt, password.as_bytes(), &mut hash);
        Ok(PasswordHash {
            algorithm: PASSWORD_ALGORITHM.into(),
            iterations: PASSWORD_ITERATIONS,
            salt: hex::encode(&salt),
            hash: hex::encode(&hash),
        })
    }

    /// Whether `password` is the one hashed; compared in constant time by aws-lc-rs. A hash
    /// this build cannot read matches nothing ([`ReaderFile::load`] refuses such files).
    pub fn matches(&self, password: &str) -> bool {
        let (Ok(()), Some(salt), Some(hash)) = (self.check(), hex::decode(&self.salt), hex::decode(&self.hash)) else {
            return false;
        };
        aws_lc_rs::pbkdf2::verify(pbkdf2_algorithm(), iterations(self.iterations), &salt, password.as_bytes(), &hash).is_ok()
    }

    /// The shape this build writes: algorithm, iterations within bounds, salt and hash sizes.
    fn check(&self) -> Result<(), String> {
        if self.algorithm != PASSWORD_ALGORITHM {
            return Err(format!("facility_password.algorithm is {:?}; this onshi reads {PASSWORD_ALGORITHM:?}", self.algorithm));
        }
        if !(PASSWORD_ITERATIONS..=PASSWORD_ITERATIONS_MAX).contains(&self.iterations) {
            return Err(format!(
                "facility_password.iterations is {}; expected {PASSWORD_ITERATIONS} to {PASSWORD_ITERATIONS_MAX}",
                self.iterations
            ));
        }
        if hex::decode(&self.salt).is_none_or(|s| s.len() != PASSWORD_SALT_BYTES) {
            return Err(format!("facility_password.salt is not {PASSWORD_SALT_BYTES} bytes of hex"));
        }
        if hex::decode(&self.hash).is_none_or(|h| h.len() != PASSWORD_HASH_BYTES) {
            return Err(format!("facility_password.hash is not {PASSWORD_HASH_BYTES} bytes of hex"));
        }
        Ok(())
    }
}

fn pbkdf2_algorithm() -> aws_lc_rs::pbkdf2::Algorithm {
    aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256
}

fn iterations(count: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(count).unwrap_or(std::num::NonZeroU32::MIN)
}

/// A reader's identity and settings, one JSON file (the device key never leaves it). The file
/// is written readable by its owner only: it holds the key that signs face and visual checks.
#[derive(Clone, Debug, Serialize)]
pub struct ReaderFile {
    pub reader_id: String,
    /// The device key (PKCS#8 PEM, P-256).
    pub device_key_pem: String,
    /// The facility password (施設パスワード) for visual mode, PBKDF2-hashed.
    pub facility_password: PasswordHash,
}

/// The file as stored, with the field of the files older onshi wrote, so that such a file is
/// named for what it is instead of failing as "unknown field".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredReaderFile {
    reader_id: String,
    device_key_pem: String,
    #[serde(default)]
    facility_password: Option<PasswordHash>,
    /// The single salted SHA-256 of older files: refused, never checked against.
    #[serde(default)]
    facility_password_sha256: Option<String>,
}

impl ReaderFile {
    /// A new reader with a fresh device key, written owner-only (see [`write_private`]).
    pub fn create(path: &Path, reader_id: &str, facility_password: &str) -> Result<ReaderFile, ReaderError> {
        let key = rcgen::KeyPair::generate().map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        let file = ReaderFile {
            reader_id: reader_id.to_string(),
            device_key_pem: key.serialize_pem(),
            facility_password: PasswordHash::new(facility_password)?,
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        write_private(path, text.as_bytes()).map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        Ok(file)
    }

    /// A reader kept in memory only, for a patient's own PC: it carries the card's own PIN
    /// signatures and attests nothing (no registration, a facility password nobody knows).
    pub fn ephemeral(reader_id: &str) -> Result<ReaderFile, ReaderError> {
        let unusable = |detail: String| ReaderError::File { path: PathBuf::new(), detail };
        let key = rcgen::KeyPair::generate().map_err(|e| unusable(e.to_string()))?;
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| unusable("the system random source failed".into()))?;
        Ok(ReaderFile {
            reader_id: reader_id.to_string(),
            device_key_pem: key.serialize_pem(),
            facility_password: PasswordHash::new(&onshi_domain::hex::encode(&secret))?,
        })
    }

    /// Reads a reader file. A file of an older onshi (a fast SHA-256 of the facility
    /// password) is refused with what to do: it is not migrated here, because only
    /// `onshi reader init` is given the password to hash again.
    pub fn load(path: &Path) -> Result<ReaderFile, ReaderError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        let stored: StoredReaderFile = serde_json::from_str(&text)
            .map_err(|e| ReaderError::File { path: path.into(), detail: format!("{e}; made by `onshi reader init`") })?;
        let facility_password = match (stored.facility_password, stored.facility_password_sha256) {
            (Some(hash), None) => hash,
            (None, Some(_)) => return Err(ReaderError::OldPasswordHash { path: path.into() }),
            _ => {
                return Err(ReaderError::File {
                    path: path.into(),
                    detail: "expected exactly one facility_password; made by `onshi reader init`".into(),
                });
            }
        };
        facility_password.check().map_err(|detail| ReaderError::File { path: path.into(), detail })?;
        Ok(ReaderFile { reader_id: stored.reader_id, device_key_pem: stored.device_key_pem, facility_password })
    }

    /// The reader's attestation, signed with its device key, that `result` happened for the
    /// card whose certificate is `der`, for `purpose`, `challenge` and what the patient chose
    /// (`details`): see [`attestation_message`].
    pub fn attest(&self, purpose: Purpose, challenge: &str, der: &[u8], result: &str, details: &str) -> Result<Attestation, ReaderError> {
        let fingerprint = hex::encode(digest(&SHA256, der).as_ref());
        let signature = sign_pem(&self.device_key_pem, &attestation_message(purpose, challenge, &fingerprint, result, details))?;
        Ok(Attestation { reader_id: self.reader_id.clone(), result: result.to_string(), signature: hex::encode(&signature) })
    }

    /// The attestation of a visual check recorded while the line was down, for the card with
    /// this certificate (see [`CardReader::attest_recorded_visual`]).
    pub fn attest_recorded_visual(&self, challenge: &str, certificate_pem: &str, details: &str) -> Result<Attestation, ReaderError> {
        let der = onshi_pki::card::certificate_der(certificate_pem)?;
        self.attest(Purpose::Verify, challenge, &der, "recorded_visual", details)
    }

    /// The device public key (uncompressed point, hex) that the center registers.
    pub fn public_key_hex(&self) -> Result<String, ReaderError> {
        let key = rcgen::KeyPair::from_pem(&self.device_key_pem)
            .map_err(|e| ReaderError::File { path: PathBuf::from(&self.reader_id), detail: e.to_string() })?;
        Ok(hex::encode(key.public_key_raw()))
    }
}

/// Whether people other than the file's owner may read it (`None`: cannot be told here). On
/// Windows the ACL is not read back: that needs the Win32 security API, and
/// [`write_private`] set it when the file was made.
pub fn readable_by_others(path: &Path) -> std::io::Result<Option<bool>> {
    let metadata = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(Some(metadata.permissions().mode() & 0o077 != 0))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Ok(None)
    }
}

/// Writes `contents` to `path` so that only the current user can read it. The bytes go to a
/// new temporary file beside `path` that is private from its creation (mode 0600 on Unix, so
/// there is no moment when others could open it; on Windows `icacls` removes the inherited
/// entries and grants the current user alone before anything is written, which needs no
/// extra crate), then the file is renamed over `path`: an older file with looser permissions
/// is replaced, not rewritten in place.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("reader.json");
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        #[cfg(windows)]
        restrict_to_current_user(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// `icacls FILE /inheritance:r /grant:r USER:F`: no inherited entries, full control for the
/// current user and nobody else. Failing to restrict is an error: the file holds a secret.
#[cfg(windows)]
fn restrict_to_current_user(path: &Path) -> std::io::Result<()> {
    let user = std::env::var("USERNAME").map_err(|_| std::io::Error::other("USERNAME is not set; cannot restrict the file"))?;
    let status = std::process::Command::new("icacls")
        .arg(path)
        .args(["/inheritance:r", "/grant:r"])
        .arg(format!("{user}:F"))
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() { Ok(()) } else { Err(std::io::Error::other(format!("icacls failed ({status}); cannot restrict the file"))) }
}

/// What the simulated camera will see next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// The card holder.
    Holder,
    /// Someone else.
    Stranger,
}

/// A reader simulator over virtual card files.
pub struct SimulatedReader {
    file: ReaderFile,
    card: Option<VirtualCard>,
    face: Face,
    visual_mode: bool,
}

impl SimulatedReader {
    pub fn new(file: ReaderFile) -> SimulatedReader {
        SimulatedReader { file, card: None, face: Face::Holder, visual_mode: false }
    }

    /// Places the card at `path` on the reader.
    pub fn place_card(&mut self, path: &Path) -> Result<(), ReaderError> {
        self.card = Some(VirtualCard::load(path)?);
        Ok(())
    }

    /// Sets who stands in front of the camera.
    pub fn present_face(&mut self, face: Face) {
        self.face = face;
    }

    /// Staff switch visual mode on with the facility password.
    pub fn enable_visual_mode(&mut self, password: &str) -> Result<(), ReaderError> {
        if !self.file.facility_password.matches(password) {
            return Err(ReaderError::WrongFacilityPassword);
        }
        self.visual_mode = true;
        Ok(())
    }

    pub fn visual_mode(&self) -> bool {
        self.visual_mode
    }

    /// Visual mode ends with the patient it was switched on for (real readers must be switched
    /// back by hand, and the next patient then cannot use face recognition).
    pub fn end_visual_mode(&mut self) {
        self.visual_mode = false;
    }

    /// PIN tries left on the card on the reader (`None` without a card or PIN).
    pub fn pin_retries_left(&self) -> Option<u8> {
        self.card.as_ref().and_then(VirtualCard::pin_retries_left)
    }

    fn card(&self) -> Result<&VirtualCard, ReaderError> {
        self.card.as_ref().ok_or(ReaderError::NoCard)
    }

    fn attest(&self, purpose: Purpose, challenge: &str, result: &str, details: &str) -> Result<Attestation, ReaderError> {
        self.file.attest(purpose, challenge, &self.card()?.certificate_der()?, result, details)
    }
}

impl CardReader for SimulatedReader {
    fn reader_file(&self) -> &ReaderFile {
        &self.file
    }

    fn state(&self) -> ReaderState {
        match &self.card {
            None => ReaderState::Empty,
            Some(card) => ReaderState::CardPresent { serial: card.serial().to_string() },
        }
    }

    fn certificate(&self) -> Result<String, ReaderError> {
        Ok(self.card()?.certificate_pem().to_string())
    }

    fn sign_with_pin(&mut self, pin: &str, message: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let card = self.card.as_mut().ok_or(ReaderError::NoCard)?;
        Ok(card.sign_with_pin(pin, message)?)
    }

    fn attest_face(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError> {
        let face = self.face;
        let card = self.card.as_mut().ok_or(ReaderError::NoCard)?;
        // The simulated camera sees either the card's own template or another one; the card
        // counts the failures (ten lock face recognition for it).
        let live = match face {
            Face::Holder => card.face_template().to_string(),
            Face::Stranger => "0".repeat(card.face_template().len()),
        };
        if !card.match_face(&live)? {
            return Err(ReaderError::FaceMismatch);
        }
        self.attest(purpose, challenge, "face_match", details)
    }

    fn attest_visual(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError> {
        if !self.visual_mode {
            return Err(ReaderError::VisualModeOff);
        }
        let attestation = self.attest(purpose, challenge, "visual", details)?;
        // Staff saw the card photo: face recognition works again for this card. Visual mode
        // ends with this patient, so that the next one is offered face recognition.
        self.card.as_mut().ok_or(ReaderError::NoCard)?.clear_face_failures()?;
        self.visual_mode = false;
        Ok(attestation)
    }

    fn remove_card(&mut self) {
        self.card = None;
        self.face = Face::Holder;
        self.visual_mode = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_pki::card::{CardAttributes, CardError};
    use onshi_pki::jpki::CardCa;
    use onshi_pki::verify::signature_valid;

    fn setup(dir: &Path) -> (SimulatedReader, PathBuf, ReaderFile) {
        let ca = CardCa::create(&dir.join("jpki")).unwrap();
        let attributes = CardAttributes::fictitious();
        let card = dir.join("card.json");
        ca.issue_card(
            attributes,
            "person-1",
            Some("1234"),
            onshi_pki::jpki::CardValidity::Days { from: onshi_pki::today(), days: 30 },
            &card,
        )
        .unwrap();
        let file = ReaderFile::create(&dir.join("reader.json"), "r1", "facility").unwrap();
        (SimulatedReader::new(ReaderFile::load(&dir.join("reader.json")).unwrap()), card, file)
    }

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    #[test]
    fn attestations_are_signed_by_the_device_key_over_challenge_certificate_and_result() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, card, file) = setup(dir.path());
        assert!(matches!(reader.attest_face(Purpose::Verify, "c1", "d"), Err(ReaderError::NoCard)));
        reader.place_card(&card).unwrap();
        let attestation = reader.attest_face(Purpose::Verify, "c1", "d").unwrap();
        assert_eq!((attestation.reader_id.as_str(), attestation.result.as_str()), ("r1", "face_match"));
        let der = VirtualCard::load(&card).unwrap().certificate_der().unwrap();
        let fingerprint = hex::encode(digest(&SHA256, &der).as_ref());
        let key = unhex(&file.public_key_hex().unwrap());
        assert_eq!(key.len(), 65, "an uncompressed P-256 point");
        let signed = |purpose, challenge, details| {
            signature_valid(
                &key,
                &attestation_message(purpose, challenge, &fingerprint, "face_match", details),
                &unhex(&attestation.signature),
            )
        };
        assert!(signed(Purpose::Verify, "c1", "d"));
        assert!(!signed(Purpose::Verify, "c2", "d"), "another challenge");
        assert!(!signed(Purpose::Verify, "c1", "e"), "other details (consents) than the patient chose");
        assert!(!signed(Purpose::Report, "c1", "d"), "another purpose");
        reader.present_face(Face::Stranger);
        assert!(matches!(reader.attest_face(Purpose::Verify, "c3", "d"), Err(ReaderError::FaceMismatch)));
    }

    #[test]
    fn visual_mode_needs_the_facility_password_and_removal_empties_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, card, _) = setup(dir.path());
        reader.place_card(&card).unwrap();
        assert!(matches!(reader.attest_visual(Purpose::Verify, "c", "d"), Err(ReaderError::VisualModeOff)));
        assert!(matches!(reader.enable_visual_mode("guess"), Err(ReaderError::WrongFacilityPassword)));
        assert!(!reader.visual_mode());
        reader.enable_visual_mode("facility").unwrap();
        assert_eq!(reader.attest_visual(Purpose::Verify, "c", "d").unwrap().result, "visual");
        assert!(!reader.visual_mode(), "visual mode ends with the patient");
        assert!(matches!(reader.attest_visual(Purpose::Verify, "c2", "d"), Err(ReaderError::VisualModeOff)));
        reader.enable_visual_mode("facility").unwrap();
        assert_eq!(reader.pin_retries_left(), Some(3));
        assert!(matches!(reader.state(), ReaderState::CardPresent { .. }));
        reader.remove_card();
        assert!(!reader.visual_mode(), "nor does it outlive the card");
        assert_eq!(reader.state(), ReaderState::Empty);
        assert!(matches!(reader.certificate(), Err(ReaderError::NoCard)));
    }

    #[test]
    fn the_facility_password_hash_is_slow_salted_and_checks_only_the_right_password() {
        let one = PasswordHash::new("施設-pass").unwrap();
        assert!(one.matches("施設-pass"));
        assert!(!one.matches("施設-pas"));
        assert!(!one.matches(""));
        assert_eq!((one.algorithm.as_str(), one.iterations), ("pbkdf2-hmac-sha256", 600_000));
        let two = PasswordHash::new("施設-pass").unwrap();
        assert_ne!(one.salt, two.salt, "a fresh salt per file");
        assert_ne!(one.hash, two.hash);
        // Tampered parameters match nothing, not even the right password.
        let weak = PasswordHash { iterations: 1, ..one.clone() };
        assert!(!weak.matches("施設-pass"));
    }

    #[test]
    fn reader_files_are_private_hold_no_fast_hash_and_old_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reader.json");
        // An older, world-readable file is replaced, not rewritten in place.
        std::fs::write(&path, "{}").unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        #[cfg(unix)]
        assert_eq!(readable_by_others(&path).unwrap(), Some(true), "the doctor's warning has something to find");
        let first = ReaderFile::create(&path, "r1", "facility").unwrap();
        assert_eq!(readable_by_others(&path).unwrap(), if cfg!(unix) { Some(false) } else { None });
        #[cfg(unix)]
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions()) & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let fast = hex::encode(digest(&SHA256, b"r1:facility").as_ref());
        assert!(!text.contains(&fast) && !text.contains("facility\""), "{text}");
        let loaded = ReaderFile::load(&path).unwrap();
        assert!(loaded.facility_password.matches("facility"));
        let second = ReaderFile::create(&dir.path().join("other.json"), "r1", "facility").unwrap();
        assert_ne!(first.facility_password.salt, second.facility_password.salt);

        let old = serde_json::json!({
            "reader_id": "r1",
            "device_key_pem": first.device_key_pem,
            "facility_password_sha256": fast,
        });
        std::fs::write(&path, old.to_string()).unwrap();
        let refused = ReaderFile::load(&path).unwrap_err();
        assert!(matches!(refused, ReaderError::OldPasswordHash { .. }));
        assert!(refused.to_string().contains("onshi reader init"), "{refused}");
    }

    #[test]
    fn ten_failed_faces_lock_face_recognition_on_the_card_until_a_pin_or_a_visual_check() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reader, card, _) = setup(dir.path());
        reader.place_card(&card).unwrap();
        reader.present_face(Face::Stranger);
        for attempt in 1..=9 {
            assert!(matches!(reader.attest_face(Purpose::Verify, "c", "d"), Err(ReaderError::FaceMismatch)), "attempt {attempt}");
        }
        let tenth = reader.attest_face(Purpose::Verify, "c", "d").unwrap_err();
        assert!(matches!(tenth, ReaderError::Card(CardError::FaceLocked)), "{tenth}");
        // Locked on the card: another reader (a fresh load of the file), even the holder's face.
        let mut other = SimulatedReader::new(ReaderFile::load(&dir.path().join("reader.json")).unwrap());
        other.place_card(&card).unwrap();
        assert!(matches!(other.attest_face(Purpose::Verify, "c", "d"), Err(ReaderError::Card(CardError::FaceLocked))));
        // The PIN unlocks it.
        other.sign_with_pin("1234", b"m").unwrap();
        assert!(other.attest_face(Purpose::Verify, "c", "d").is_ok());
        // So does a visual check.
        other.present_face(Face::Stranger);
        for _ in 0..10 {
            let _ = other.attest_face(Purpose::Verify, "c", "d");
        }
        assert!(VirtualCard::load(&card).unwrap().face_locked());
        other.enable_visual_mode("facility").unwrap();
        other.attest_visual(Purpose::Verify, "c", "d").unwrap();
        assert!(!VirtualCard::load(&card).unwrap().face_locked());
    }
}
