//! The card reader (顔認証付きカードリーダー) behind one interface, [`CardReader`], and a
//! simulator over virtual card files ([`SimulatedReader`]). A PC/SC driver implements the
//! same trait later: read the user certificate, have the card sign after its PIN, and have the
//! reader attest a face match or a visual check with its own device key.
//!
//! [`flow`] runs the card flows against the center: challenge → proof → link or verify.

pub mod flow;

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
    #[error(transparent)]
    Pki(#[from] onshi_pki::PkiError),
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
    fn reader_id(&self) -> &str;

    fn state(&self) -> ReaderState;

    /// The user certificate (PEM) of the card on the reader.
    fn certificate(&self) -> Result<String, ReaderError>;

    /// The card signs `message` after `pin` (counts a wrong PIN on the card).
    fn sign_with_pin(&mut self, pin: &str, message: &[u8]) -> Result<Vec<u8>, ReaderError>;

    /// The camera compares the face with the card; on a match the reader attests it, with the
    /// purpose and the details the patient chose on its screens ([`attestation_message`]).
    fn attest_face(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError>;

    /// Staff checked the card photo (visual mode must be on); the reader attests it.
    fn attest_visual(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError>;

    /// The reader attests a visual check staff recorded earlier for the card with this
    /// certificate, while the line was down (`recorded_visual`; `details` carry the counter
    /// time): the gateway re-verifies it once the line returns, when the card has long left.
    fn attest_recorded_visual(&self, challenge: &str, certificate_pem: &str, details: &str) -> Result<Attestation, ReaderError>;

    fn remove_card(&mut self);
}

/// A reader's identity and settings, one JSON file (the device key never leaves it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderFile {
    pub reader_id: String,
    /// The device key (PKCS#8 PEM, P-256).
    pub device_key_pem: String,
    /// SHA-256 (hex) of `reader_id:facility password`.
    pub facility_password_sha256: String,
}

fn password_hash(reader_id: &str, password: &str) -> String {
    hex::encode(digest(&SHA256, format!("{reader_id}:{password}").as_bytes()).as_ref())
}

impl ReaderFile {
    /// A new reader with a fresh device key.
    pub fn create(path: &Path, reader_id: &str, facility_password: &str) -> Result<ReaderFile, ReaderError> {
        let key = rcgen::KeyPair::generate().map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        let file = ReaderFile {
            reader_id: reader_id.to_string(),
            device_key_pem: key.serialize_pem(),
            facility_password_sha256: password_hash(reader_id, facility_password),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        std::fs::write(path, text).map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        Ok(file)
    }

    pub fn load(path: &Path) -> Result<ReaderFile, ReaderError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReaderError::File { path: path.into(), detail: e.to_string() })?;
        serde_json::from_str(&text)
            .map_err(|e| ReaderError::File { path: path.into(), detail: format!("{e}; made by `onshi reader init`") })
    }

    /// The device public key (uncompressed point, hex) that the center registers.
    pub fn public_key_hex(&self) -> Result<String, ReaderError> {
        let key = rcgen::KeyPair::from_pem(&self.device_key_pem)
            .map_err(|e| ReaderError::File { path: PathBuf::from(&self.reader_id), detail: e.to_string() })?;
        Ok(hex::encode(key.public_key_raw()))
    }
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
        if password_hash(&self.file.reader_id, password) != self.file.facility_password_sha256 {
            return Err(ReaderError::WrongFacilityPassword);
        }
        self.visual_mode = true;
        Ok(())
    }

    pub fn visual_mode(&self) -> bool {
        self.visual_mode
    }

    /// PIN tries left on the card on the reader (`None` without a card or PIN).
    pub fn pin_retries_left(&self) -> Option<u8> {
        self.card.as_ref().and_then(VirtualCard::pin_retries_left)
    }

    fn card(&self) -> Result<&VirtualCard, ReaderError> {
        self.card.as_ref().ok_or(ReaderError::NoCard)
    }

    fn attest(&self, purpose: Purpose, challenge: &str, result: &str, details: &str) -> Result<Attestation, ReaderError> {
        let der = self.card()?.certificate_der()?;
        self.attest_der(purpose, challenge, &der, result, details)
    }

    fn attest_der(&self, purpose: Purpose, challenge: &str, der: &[u8], result: &str, details: &str) -> Result<Attestation, ReaderError> {
        let fingerprint = hex::encode(digest(&SHA256, der).as_ref());
        let message = attestation_message(purpose, challenge, &fingerprint, result, details);
        let signature = sign_pem(&self.file.device_key_pem, &message)?;
        Ok(Attestation { reader_id: self.file.reader_id.clone(), result: result.to_string(), signature: hex::encode(&signature) })
    }
}

impl CardReader for SimulatedReader {
    fn reader_id(&self) -> &str {
        &self.file.reader_id
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
        let card = self.card()?;
        // The simulated camera sees either the card's own template or another one.
        let live = match self.face {
            Face::Holder => card.face_template().to_string(),
            Face::Stranger => "0".repeat(card.face_template().len()),
        };
        if !card.face_matches(&live) {
            return Err(ReaderError::FaceMismatch);
        }
        self.attest(purpose, challenge, "face_match", details)
    }

    fn attest_visual(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError> {
        if !self.visual_mode {
            return Err(ReaderError::VisualModeOff);
        }
        self.attest(purpose, challenge, "visual", details)
    }

    fn attest_recorded_visual(&self, challenge: &str, certificate_pem: &str, details: &str) -> Result<Attestation, ReaderError> {
        let der = onshi_pki::card::certificate_der(certificate_pem)?;
        self.attest_der(Purpose::Verify, challenge, &der, "recorded_visual", details)
    }

    fn remove_card(&mut self) {
        self.card = None;
        self.face = Face::Holder;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_pki::card::CardAttributes;
    use onshi_pki::jpki::CardCa;
    use onshi_pki::verify::signature_valid;

    fn setup(dir: &Path) -> (SimulatedReader, PathBuf, ReaderFile) {
        let ca = CardCa::create(&dir.join("jpki")).unwrap();
        let attributes = CardAttributes {
            name: "試験　花子".into(),
            name_kana: "シケン　ハナコ".into(),
            birth_date: "19800101".into(),
            sex: "2".into(),
            address: "東京都".into(),
        };
        let card = dir.join("card.json");
        ca.issue_card(attributes, "person-1", Some("1234"), onshi_pki::today(), 30, &card).unwrap();
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
        assert_eq!(reader.pin_retries_left(), Some(3));
        assert!(matches!(reader.state(), ReaderState::CardPresent { .. }));
        reader.remove_card();
        assert_eq!(reader.state(), ReaderState::Empty);
        assert!(matches!(reader.certificate(), Err(ReaderError::NoCard)));
    }
}
