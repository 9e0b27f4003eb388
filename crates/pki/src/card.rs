//! A virtual My Number card: one file holding what the card's chip holds — the private key, the
//! 利用者証明用 user certificate, a 4-digit PIN with its retry counter, a face template — and
//! the 券面事項 (holder attributes) used at 初回登録.
//!
//! The PIN is kept as a salted SHA-256, and the retry counter is written to the file *before*
//! the result of an entry is returned, so a lock survives a crash or restart: after three wrong
//! entries the card is locked for good (in real life only the municipal office unlocks it).
//! A card issued without a PIN is a 顔認証マイナンバーカード: face or visual check only.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{Digest, SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde::{Deserialize, Serialize};

use crate::{PkiError, random_hex, read, write};

/// Wrong PIN entries allowed before the card locks.
pub const PIN_TRIES: u8 = 3;

/// Failed face matches after which face recognition is locked for the card, until its PIN or
/// a staff visual check succeeds (as the real readers do).
pub const FACE_TRIES: u8 = 10;

const FORMAT: &str = "onshi-virtual-card/1";

/// 券面事項: what the card says about its holder (基本4情報 and the kana reading).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardAttributes {
    /// 氏名 (kanji).
    pub name: String,
    /// 氏名カナ.
    pub name_kana: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// OQSCD007 "1"/"2"/"3".
    pub sex: String,
    pub address: String,
}

impl CardAttributes {
    /// A fictitious holder (試験　花子, born 1980-01-01) for tests and examples.
    pub fn fictitious() -> CardAttributes {
        CardAttributes {
            name: "試験　花子".into(),
            name_kana: "シケン　ハナコ".into(),
            birth_date: "19800101".into(),
            sex: "2".into(),
            address: "東京都千代田区霞が関1-2-2".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinState {
    salt: String,
    sha256: String,
    retries_left: u8,
}

/// What carries the JPKI application: the card, or a smartphone (マイナ保険証 on the phone, since
/// 2025-09). Named in EF 0006 as the real tokens name themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// The My Number card (`JPKIAPICCTOKEN2`): the certificate reads without a PIN.
    #[default]
    Card,
    /// An Android phone's secure element (`JPKIAPGPSETOKEN`): even the certificate needs the
    /// PIN (the phone's own 4-digit one) before it reads.
    Android,
    /// An iPhone (`JPKIAPIOSTOKEN`): the phone's Face ID / Touch ID replaces the PIN; the
    /// phone signs once its owner has confirmed on it.
    Iphone,
}

impl TokenType {
    /// The name in EF 0006.
    pub fn token_name(self) -> &'static str {
        match self {
            TokenType::Card => "JPKIAPICCTOKEN2",
            TokenType::Android => "JPKIAPGPSETOKEN",
            TokenType::Iphone => "JPKIAPIOSTOKEN",
        }
    }

    pub fn from_token_name(name: &str) -> Option<TokenType> {
        [TokenType::Card, TokenType::Android, TokenType::Iphone].into_iter().find(|t| t.token_name() == name)
    }

    /// Whether the certificate reads only after the PIN.
    pub fn pin_to_read(self) -> bool {
        self == TokenType::Android
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardFile {
    format: String,
    serial: String,
    certificate_pem: String,
    private_key_pem: String,
    /// `None` on a 顔認証マイナンバーカード.
    pin: Option<PinState>,
    /// The face template the reader compares a live face with (hex of 32 random bytes).
    face_template: String,
    attributes: CardAttributes,
    /// The card or phone holding the application (older files: a card).
    #[serde(default)]
    token: TokenType,
    /// The issuing CA generation's certificate (EF 000B); older files have none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    ca_certificate_pem: String,
    /// Failed face matches since the last success, PIN or visual check.
    #[serde(default)]
    face_failures: u8,
}

/// Why the card would not act.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("wrong PIN; {retries_left} tries left before the card locks")]
    WrongPin { retries_left: u8 },
    #[error("the PIN is locked after {PIN_TRIES} wrong entries; only the municipal office can unlock it (use face or visual check)")]
    Locked,
    #[error("this card has no PIN (顔認証マイナンバーカード): use face or visual check")]
    NoPin,
    #[error(
        "face recognition is locked for this card after {FACE_TRIES} failed attempts: use the PIN, or staff check the card photo (visual mode)"
    )]
    FaceLocked,
    #[error("a PIN is 4 digits")]
    PinFormat,
    #[error("the card signs a SHA-256 DigestInfo (51 bytes); it was handed {0} bytes of something else")]
    NotDigestInfo(usize),
    #[error(transparent)]
    File(#[from] PkiError),
}

fn pin_hash(salt: &str, pin: &str) -> String {
    onshi_domain::hex::encode(digest(&SHA256, format!("{salt}:{pin}").as_bytes()).as_ref())
}

fn valid_pin(pin: &str) -> bool {
    pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit())
}

/// The DER of a card certificate given as PEM.
pub fn certificate_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|d| d.to_vec())
        .map_err(|e| PkiError::Invalid { what: "the card certificate".into(), detail: e.to_string() })
}

/// The PEM text of a certificate read from a card (DER).
pub fn certificate_pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der))
}

/// The serial (lower-case hex) of a card certificate (DER), unverified: what a reader shows.
pub fn serial_of(der: &[u8]) -> Result<String, PkiError> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::prelude::X509Certificate::from_der(der)
        .map_err(|e| PkiError::Invalid { what: "a card certificate".into(), detail: e.to_string() })?;
    Ok(crate::jpki::serial_hex(cert.raw_serial()))
}

/// A card file, loaded.
pub struct VirtualCard {
    path: PathBuf,
    file: CardFile,
    /// The private key, parsed on first use (parsing an RSA key checks it, which costs).
    signer: std::sync::OnceLock<Signer>,
}

/// The card's private key.
enum Signer {
    /// The JPKI user key: RSA-2048, PKCS#1 v1.5 over a DigestInfo the host supplies.
    Rsa(RsaKeyPair),
    /// Cards issued by onshi before RSA cards.
    P256(EcdsaKeyPair),
}

/// The DER prefix of a DigestInfo naming SHA-256 (RFC 8017, 9.2 note 1); the 32-byte hash
/// follows it.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

/// What the host hands the card to sign for `message`: the SHA-256 DigestInfo. The card pads
/// and signs it as is (it never sees the message), so the result is the PKCS#1 v1.5 SHA-256
/// signature of `message` that the center verifies.
pub fn sha256_digest_info(message: &[u8]) -> Vec<u8> {
    let mut info = SHA256_DIGEST_INFO_PREFIX.to_vec();
    info.extend_from_slice(digest(&SHA256, message).as_ref());
    info
}

impl VirtualCard {
    pub(crate) fn create(
        path: &Path,
        serial: String,
        certificate_pem: String,
        private_key_pem: String,
        pin: Option<&str>,
        attributes: CardAttributes,
    ) -> Result<VirtualCard, PkiError> {
        let pin = match pin {
            Some(pin) if !valid_pin(pin) => return Err(PkiError::Invalid { what: "the PIN".into(), detail: "a PIN is 4 digits".into() }),
            Some(pin) => {
                let salt = random_hex(16)?;
                Some(PinState { sha256: pin_hash(&salt, pin), salt, retries_left: PIN_TRIES })
            }
            None => None,
        };
        let file = CardFile {
            format: FORMAT.into(),
            serial,
            certificate_pem,
            private_key_pem,
            pin,
            face_template: random_hex(32)?,
            attributes,
            token: TokenType::Card,
            ca_certificate_pem: String::new(),
            face_failures: 0,
        };
        let card = VirtualCard { path: path.to_path_buf(), file, signer: std::sync::OnceLock::new() };
        card.save()?;
        Ok(card)
    }

    pub fn load(path: &Path) -> Result<VirtualCard, PkiError> {
        let text = read(path)?;
        let file: CardFile = serde_json::from_str(&text).map_err(|e| PkiError::Invalid {
            what: path.display().to_string(),
            detail: format!("{e}; a card file is written by `onshi jpki issue`"),
        })?;
        if file.format != FORMAT {
            return Err(PkiError::Invalid {
                what: path.display().to_string(),
                detail: format!("format {:?} is not {FORMAT}", file.format),
            });
        }
        Ok(VirtualCard { path: path.to_path_buf(), file, signer: std::sync::OnceLock::new() })
    }

    /// Writes the file whole, through a temporary file and a rename, so that a crash leaves
    /// either the old or the new state, never half of one.
    fn save(&self) -> Result<(), PkiError> {
        let text =
            serde_json::to_string_pretty(&self.file).map_err(|e| PkiError::Invalid { what: "a card".into(), detail: e.to_string() })?;
        let partial = self.path.with_extension("partial");
        write(&partial, &text, true)?;
        std::fs::rename(&partial, &self.path).map_err(|source| PkiError::Write { path: self.path.clone(), source })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificate serial, lower-case hex.
    pub fn serial(&self) -> &str {
        &self.file.serial
    }

    pub fn certificate_pem(&self) -> &str {
        &self.file.certificate_pem
    }

    pub fn certificate_der(&self) -> Result<Vec<u8>, PkiError> {
        certificate_der(&self.file.certificate_pem)
    }

    /// The opaque holder reference in the certificate's subject (kept across renewals).
    pub fn holder_ref(&self) -> Result<String, PkiError> {
        crate::verify::holder_ref_of(&self.certificate_der()?)
    }

    pub fn attributes(&self) -> &CardAttributes {
        &self.file.attributes
    }

    pub fn face_template(&self) -> &str {
        &self.file.face_template
    }

    pub fn token(&self) -> TokenType {
        self.file.token
    }

    /// The issuing CA generation's certificate (PEM), empty on files of older onshi.
    pub fn ca_certificate_pem(&self) -> &str {
        &self.file.ca_certificate_pem
    }

    /// Sets what the card is carried on and the CA certificate it holds (at issue).
    pub(crate) fn set_token(&mut self, token: TokenType, ca_certificate_pem: &str) -> Result<(), PkiError> {
        self.file.token = token;
        self.file.ca_certificate_pem = ca_certificate_pem.to_string();
        self.save()
    }

    pub fn has_pin(&self) -> bool {
        self.file.pin.is_some()
    }

    /// Tries left, or `None` on a card without a PIN.
    pub fn pin_retries_left(&self) -> Option<u8> {
        self.file.pin.as_ref().map(|p| p.retries_left)
    }

    /// Whether face recognition is locked for this card.
    pub fn face_locked(&self) -> bool {
        self.file.face_failures >= FACE_TRIES
    }

    /// Compares a live face with the card's and records the outcome on the card before
    /// answering: the tenth failure in a row locks face recognition for the card.
    pub fn match_face(&mut self, live_template: &str) -> Result<bool, CardError> {
        if self.face_locked() {
            return Err(CardError::FaceLocked);
        }
        let matched = self.face_matches(live_template);
        let failures = if matched { 0 } else { self.file.face_failures + 1 };
        if failures != self.file.face_failures {
            self.file.face_failures = failures;
            self.save()?;
        }
        if self.face_locked() { Err(CardError::FaceLocked) } else { Ok(matched) }
    }

    /// A PIN or a visual check succeeded: face recognition works again.
    pub fn clear_face_failures(&mut self) -> Result<(), PkiError> {
        if self.file.face_failures != 0 {
            self.file.face_failures = 0;
            self.save()?;
        }
        Ok(())
    }

    /// Compares a live face (its template) with the card's.
    pub fn face_matches(&self, live_template: &str) -> bool {
        // Constant-time is not needed for a simulator, but equal length is checked first so
        // that a truncated template never matches.
        live_template.len() == self.file.face_template.len() && live_template == self.file.face_template
    }

    /// Checks a PIN entry and records the outcome on the card before answering.
    pub fn enter_pin(&mut self, pin: &str) -> Result<(), CardError> {
        let state = self.file.pin.as_mut().ok_or(CardError::NoPin)?;
        if state.retries_left == 0 {
            return Err(CardError::Locked);
        }
        if !valid_pin(pin) {
            return Err(CardError::PinFormat);
        }
        if pin_hash(&state.salt, pin) == state.sha256 {
            let unlock_face = self.file.face_failures != 0;
            if state.retries_left != PIN_TRIES || unlock_face {
                state.retries_left = PIN_TRIES;
                self.file.face_failures = 0;
                self.save()?;
            }
            return Ok(());
        }
        state.retries_left -= 1;
        let left = state.retries_left;
        self.save()?;
        if left == 0 { Err(CardError::Locked) } else { Err(CardError::WrongPin { retries_left: left }) }
    }

    /// Signs `message` with the card key after a correct PIN: for an RSA card the SHA-256
    /// DigestInfo of it, as a host would hand it to the chip.
    pub fn sign_with_pin(&mut self, pin: &str, message: &[u8]) -> Result<Vec<u8>, CardError> {
        self.enter_pin(pin)?;
        match self.signer()? {
            Signer::Rsa(_) => self.sign_digest_info(&sha256_digest_info(message)),
            Signer::P256(key) => Ok(key
                .sign(&SystemRandom::new(), message)
                .map_err(|e| PkiError::Invalid { what: "a P-256 private key".into(), detail: e.to_string() })?
                .as_ref()
                .to_vec()),
        }
    }

    /// The chip's SIGN (`80 2A 00 80`): PKCS#1 v1.5 over the DigestInfo the host supplied.
    /// The caller (the card's APDU handler) has checked that the PIN was verified in this
    /// session; only SHA-256 DigestInfos are taken.
    pub fn sign_digest_info(&self, digest_info: &[u8]) -> Result<Vec<u8>, CardError> {
        let hash = digest_info
            .strip_prefix(&SHA256_DIGEST_INFO_PREFIX[..])
            .filter(|hash| hash.len() == 32)
            .ok_or(CardError::NotDigestInfo(digest_info.len()))?;
        let Signer::Rsa(key) = self.signer()? else {
            return Err(CardError::NotDigestInfo(digest_info.len()));
        };
        let bad = |detail: String| PkiError::Invalid { what: "the card's RSA key".into(), detail };
        let digest = Digest::import_less_safe(hash, &SHA256).map_err(|e| bad(e.to_string()))?;
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign_digest(&RSA_PKCS1_SHA256, &digest, &mut signature).map_err(|e| bad(e.to_string()))?;
        Ok(signature)
    }

    fn signer(&self) -> Result<&Signer, PkiError> {
        if let Some(signer) = self.signer.get() {
            return Ok(signer);
        }
        let parsed = parse_card_key(&self.file.private_key_pem)?;
        Ok(self.signer.get_or_init(|| parsed))
    }

    pub(crate) fn replace_certificate(&mut self, serial: String, certificate_pem: String, private_key_pem: String) -> Result<(), PkiError> {
        self.file.serial = serial;
        self.file.certificate_pem = certificate_pem;
        self.file.private_key_pem = private_key_pem;
        self.signer = std::sync::OnceLock::new();
        self.save()
    }
}

fn parse_card_key(private_key_pem: &str) -> Result<Signer, PkiError> {
    let bad = |detail: String| PkiError::Invalid { what: "the card's private key".into(), detail };
    let key = rcgen::KeyPair::from_pem(private_key_pem).map_err(|e| bad(e.to_string()))?;
    let der = key.serialize_der();
    if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        RsaKeyPair::from_pkcs8(&der).map(Signer::Rsa).map_err(|e| bad(e.to_string()))
    } else {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der).map(Signer::P256).map_err(|e| bad(e.to_string()))
    }
}

/// Signs with a PEM (PKCS#8) key by its own scheme: a reader's device key or the card CA's
/// (P-256: ECDSA, ASN.1 DER; RSA: PKCS#1 v1.5; both over SHA-256).
pub fn sign_pem(private_key_pem: &str, message: &[u8]) -> Result<Vec<u8>, PkiError> {
    use rcgen::SigningKey as _;
    let bad = |detail: String| PkiError::Invalid { what: "a private key".into(), detail };
    let key = rcgen::KeyPair::from_pem(private_key_pem).map_err(|e| bad(e.to_string()))?;
    key.sign(message).map_err(|e| bad(e.to_string()))
}
