//! A demo stand-in for J-LIS's JPKI: the card CA that issues the 利用者証明用電子証明書 of each
//! virtual My Number card, revokes a lost or stolen card, renews a certificate (new serial,
//! same holder) and publishes a signed revocation list (CRL) that the center loads.
//!
//! A card certificate's subject is an opaque holder reference (random, never a My Number) and
//! carries no personal data; a renewal keeps it, so the center can move a card link to the
//! renewed certificate on the CA's own word. Keys are RSA-2048, certificates and lists signed
//! sha256WithRSAEncryption, as J-LIS issues them; a user certificate runs to the holder's 5th
//! birthday after issue.
//!
//! The CA has generations under one name, as J-LIS has: `onshi jpki rollover` makes a new CA
//! key and certificate with the same name; new cards are signed by it, cards issued before keep
//! verifying against the older generation (the center picks the generation by signature).
//!
//! **Who a card belongs to is the card authority's word, never the clinic's.** As J-LIS knows
//! whose card it issued (from the resident register) and feeds the 中間サーバー, this CA keeps
//! the binding certificate → the register's pseudonymous person reference, with the attributes
//! it attests (基本4情報 and the kana reading), in a signed, append-only binding feed
//! (`bindings.jsonl`: new cards, renewals, revocations, one signed line each, numbered). The
//! center reads it, checks every line against this CA's key and applies each number once.
//!
//! Files under the CA directory: `ca.pem` (every generation's certificate, oldest first: what
//! the center trusts), `ca.key` (the current generation's key; an older key is destroyed at
//! roll-over, as it signs nothing more), `revoked.json` (what was revoked, why and
//! when), `crl.pem` (the last published list), `crl_number` (the last list's number: every
//! list gets a higher one, so that the center can refuse an older list played back),
//! `bindings.jsonl` (the feed).

use std::path::{Path, PathBuf};

use onshi_domain::Date;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};

use crate::card::{CardAttributes, VirtualCard};
use crate::{PkiError, invalid, random_serial, read, today, validity, write};

/// Why a card certificate was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// 紛失.
    Lost,
    /// 盗難.
    Stolen,
    /// Replaced by a renewed certificate (更新).
    Renewed,
}

impl RevokeReason {
    fn crl_reason(self) -> RevocationReason {
        match self {
            RevokeReason::Lost | RevokeReason::Stolen => RevocationReason::KeyCompromise,
            RevokeReason::Renewed => RevocationReason::Superseded,
        }
    }
}

/// One revocation as the CA keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Certificate serial, lower-case hex.
    pub serial: String,
    pub reason: RevokeReason,
    /// `YYYYMMDD`.
    pub revoked_on: String,
}

/// What a binding-feed entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingKind {
    /// A new card for a person.
    Issue,
    /// A renewed certificate for the same holder (new serial).
    Renew,
    /// A certificate revoked (lost, stolen); the center undoes its link.
    Revoke,
}

/// One entry of the binding feed: a certificate, whose it is, and what the authority attests.
/// Fields it does not know are passed over, not refused: the entry is read only after its
/// signature verified, and a center older than its card authority must not stop at a line with
/// a field added since (the feed waits at a line it refuses, holding back later revocations).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingEntry {
    /// 1, 2, 3, … in the order written; the center applies each number once.
    pub seq: u64,
    pub kind: BindingKind,
    /// Certificate serial, lower-case hex.
    pub serial: String,
    pub holder_ref: String,
    /// The register's pseudonymous person reference (never a My Number).
    pub person_ref: String,
    /// The attested 券面事項 (issue and renew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<CardAttributes>,
    /// `YYYYMMDD`.
    pub on: String,
    /// For a smartphone's certificate: the serial of the card certificate it was issued from
    /// (revoking or renewing that one revokes this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_of: Option<String>,
    /// A card issued without a PIN (顔認証マイナンバーカード): its holder registers it for
    /// insurance use by face at the reader, as no card signature can be had (issue and renew).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub face_only: bool,
}

/// One line of `bindings.jsonl`: the entry's JSON text exactly as signed, and the CA's
/// signature over those bytes (hex), so that no re-serialisation can change what was signed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBinding {
    pub entry: String,
    pub signature: String,
}

/// What a feed entry's certificate lives on.
#[derive(Clone, Copy, Debug)]
enum Device<'a> {
    /// A card; `face_only` when issued without a PIN.
    Card { face_only: bool },
    /// A smartphone, its certificate issued from the card certificate `of`.
    Phone { of: &'a str },
}

/// The binding feed's file name in the CA directory.
pub const BINDING_FEED: &str = "bindings.jsonl";

/// How long a card certificate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardValidity {
    /// As J-LIS issues it: from the day of issue to the holder's 5th birthday after it.
    Statutory { issued_on: Date },
    /// A chosen window, for tests and demonstrations of expiry.
    Days { from: Date, days: u32 },
}

/// The last day of a user certificate issued on `issued_on` to someone born on `birth`: the
/// 5th birthday after the issue (29 February counts as 1 March in a common year, as
/// [`Date::add_years`] does).
pub fn fifth_birthday_after(birth: Date, issued_on: Date) -> Date {
    let first_after = (1..=200).map(|years| birth.add_years(years)).find(|birthday| *birthday > issued_on);
    match first_after {
        Some(first) => birth.add_years(birth.age_on(first) + 4),
        // Born more than 200 years before the issue: no such person; five years then.
        None => issued_on.add_years(5),
    }
}

/// How long each CA generation's certificate runs (J-LIS: about ten years, overlapping).
const CA_GENERATION_DAYS: u32 = 3650;

/// The card CA, loaded from its directory.
pub struct CardCa {
    dir: PathBuf,
    /// Every generation's certificate, oldest first (`ca.pem`).
    cert_pem: String,
    /// The current generation's certificate, which signs new cards, lists and feed lines.
    current_pem: String,
    key: KeyPair,
}

/// Hex of a serial number as certificates and CRLs carry it.
pub fn serial_hex(bytes: &[u8]) -> String {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    onshi_domain::hex::encode(&bytes[first..])
}

fn serial_from_hex(hex: &str) -> Result<SerialNumber, PkiError> {
    let bytes = onshi_domain::hex::decode(hex)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| PkiError::Invalid { what: format!("serial {hex:?}"), detail: "not hexadecimal".into() })?;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A new RSA-2048 key, as the card's chip and J-LIS's CA hold.
fn rsa_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(invalid(what))
}

fn card_key() -> Result<KeyPair, PkiError> {
    rsa_key("a new card key")
}

/// A new CA generation: key and self-signed certificate, always under the same name.
fn new_generation() -> Result<(KeyPair, String), PkiError> {
    let key = rsa_key("a new card CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid("card CA parameters"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "onshi demo JPKI");
    dn.push(DnType::CommonName, "onshi demo JPKI user authentication CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    validity(&mut params, today(), CA_GENERATION_DAYS);
    let cert = params.self_signed(&key).map_err(invalid("the card CA certificate"))?;
    Ok((key, cert.pem()))
}

/// The certificate blocks of a PEM text, each as its own PEM text, in order.
fn pem_blocks(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let (Some(start), Some(end)) = (rest.find("-----BEGIN CERTIFICATE-----"), rest.find(END)) {
        if end < start {
            rest = &rest[end + END.len()..];
            continue;
        }
        blocks.push(format!("{}\n", &rest[start..end + END.len()]));
        rest = &rest[end + END.len()..];
    }
    blocks
}

/// The certificates (DER) of a PEM text, in order; what does not parse is passed over.
fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok).map(|d| d.to_vec()).collect()
}

/// The certificate (PEM) of the bundle whose public key is `key`'s.
fn current_generation(bundle_pem: &str, key: &KeyPair) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer as _;
    let spki = rcgen::PublicKeyData::subject_public_key_info(key);
    pem_blocks(bundle_pem).into_iter().rev().find(|block| {
        rustls::pki_types::CertificateDer::from_pem_slice(block.as_bytes()).is_ok_and(|der| {
            x509_parser::prelude::X509Certificate::from_der(&der).is_ok_and(|(_, cert)| cert.public_key().raw == spki.as_slice())
        })
    })
}

impl CardCa {
    /// Creates the card CA in `dir` (which must not hold one yet).
    pub fn create(dir: &Path) -> Result<CardCa, PkiError> {
        let cert_path = dir.join("ca.pem");
        if cert_path.exists() {
            return Err(PkiError::Exists { path: cert_path });
        }
        let (key, cert_pem) = new_generation()?;
        write(&dir.join("ca.key"), &key.serialize_pem(), true)?;
        write(&cert_path, &cert_pem, false)?;
        write(&dir.join("revoked.json"), "[]\n", false)?;
        Ok(CardCa { dir: dir.to_path_buf(), cert_pem: cert_pem.clone(), current_pem: cert_pem, key })
    }

    pub fn load(dir: &Path) -> Result<CardCa, PkiError> {
        let cert_pem = read(&dir.join("ca.pem"))?;
        let key_path = dir.join("ca.key");
        let key = KeyPair::from_pem(&read(&key_path)?)
            .map_err(|e| PkiError::Invalid { what: key_path.display().to_string(), detail: e.to_string() })?;
        let current_pem = current_generation(&cert_pem, &key).ok_or_else(|| PkiError::Invalid {
            what: dir.join("ca.pem").display().to_string(),
            detail: "no certificate in it belongs to ca.key; restore the pair from the backup".into(),
        })?;
        Ok(CardCa { dir: dir.to_path_buf(), cert_pem, current_pem, key })
    }

    /// Every generation's certificate, oldest first: what the center trusts (`ca.pem`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The generation that signs from now on: the current one's certificate.
    pub fn current_pem(&self) -> &str {
        &self.current_pem
    }

    /// How many generations the CA has had.
    pub fn generations(&self) -> usize {
        pem_certificates(&self.cert_pem).len()
    }

    /// Rolls over to a new generation: a new key and certificate under the same name, added to
    /// `ca.pem`; the new key replaces the old in `ca.key`. Cards issued before keep verifying
    /// (their generation stays in `ca.pem`); new cards, lists and feed lines are signed by the
    /// new one. The center takes the new generation from `ca.pem` at its next start or reload.
    pub fn rollover(&mut self) -> Result<(), PkiError> {
        let (key, cert_pem) = new_generation()?;
        let bundle = format!("{}{}", self.cert_pem, cert_pem);
        // The certificate first: a crash before the key is written leaves the old generation
        // current (it matches ca.key) and the new certificate unused.
        let partial = self.dir.join("ca.pem.partial");
        write(&partial, &bundle, false)?;
        std::fs::rename(&partial, self.dir.join("ca.pem")).map_err(|source| PkiError::Write { path: self.dir.join("ca.pem"), source })?;
        let key_partial = self.dir.join("ca.key.partial");
        write(&key_partial, &key.serialize_pem(), true)?;
        std::fs::rename(&key_partial, self.dir.join("ca.key"))
            .map_err(|source| PkiError::Write { path: self.dir.join("ca.key"), source })?;
        self.cert_pem = bundle;
        self.current_pem = cert_pem;
        self.key = key;
        Ok(())
    }

    fn sign_card_certificate(&self, key: &KeyPair, holder_ref: &str, from: Date, until: Date) -> Result<(String, String), PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.current_pem, &self.key).map_err(invalid("the card CA certificate"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid("card parameters"))?;
        params.distinguished_name.push(DnType::CommonName, holder_ref);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = random_serial();
        let serial_text = serial_hex(serial.as_ref());
        params.serial_number = Some(serial);
        let at = |d: Date| rcgen::date_time_ymd(i32::from(d.year()), d.month(), d.day());
        params.not_before = at(from);
        // The whole last day: a certificate valid "to" a date is valid on it.
        params.not_after = at(until.add_days(1)) - std::time::Duration::from_secs(1);
        let cert = params.signed_by(key, &issuer).map_err(invalid("a card certificate"))?;
        Ok((cert.pem(), serial_text))
    }

    /// Issues a virtual card for a holder and writes it to `out`. [`CardValidity::Days`] lets
    /// tests make a certificate that has already expired or is about to.
    pub fn issue_card(
        &self,
        attributes: CardAttributes,
        person_ref: &str,
        pin: Option<&str>,
        validity: CardValidity,
        out: &Path,
    ) -> Result<VirtualCard, PkiError> {
        if person_ref.is_empty() || person_ref.len() > 64 || person_ref.chars().any(char::is_control) {
            return Err(PkiError::Invalid { what: "the person reference".into(), detail: "1 to 64 printable characters".into() });
        }
        let (from, until) = match validity {
            CardValidity::Statutory { issued_on } => {
                let birth = Date::parse_yyyymmdd(&attributes.birth_date).map_err(|e| PkiError::Invalid {
                    what: "the holder's birth date".into(),
                    detail: format!("{e}; the certificate runs to the 5th birthday after issue"),
                })?;
                (issued_on, fifth_birthday_after(birth, issued_on))
            }
            CardValidity::Days { from, days } => (from, from.add_days(i64::from(days))),
        };
        let key = card_key()?;
        let holder_ref = format!("card-holder-{}", serial_hex(random_serial().as_ref()));
        let (cert_pem, serial) = self.sign_card_certificate(&key, &holder_ref, from, until)?;
        let mut card = VirtualCard::create(out, serial.clone(), cert_pem, key.serialize_pem(), pin, attributes.clone())?;
        card.set_token(crate::card::TokenType::Card, &self.current_pem)?;
        self.append_binding(
            BindingKind::Issue,
            &serial,
            &holder_ref,
            person_ref,
            Some(attributes),
            Device::Card { face_only: pin.is_none() },
        )?;
        Ok(card)
    }

    /// Renews the certificate on the card at `path`: a new key pair and serial for the same
    /// holder reference; the old certificate is revoked as superseded.
    pub fn renew(&self, path: &Path) -> Result<VirtualCard, PkiError> {
        let mut card = VirtualCard::load(path)?;
        let holder_ref = card.holder_ref()?;
        let bound = self.binding_of_holder(&holder_ref)?;
        let key = card_key()?;
        let until = match bound.as_ref().and_then(|b| b.attributes.as_ref()).map(|a| Date::parse_yyyymmdd(&a.birth_date)) {
            Some(Ok(birth)) => fifth_birthday_after(birth, today()),
            _ => today().add_years(5),
        };
        let (cert_pem, serial) = self.sign_card_certificate(&key, &holder_ref, today(), until)?;
        let old = card.serial().to_string();
        card.replace_certificate(serial.clone(), cert_pem, key.serialize_pem())?;
        card.set_token(card.token(), &self.current_pem)?;
        self.revoke(&old, RevokeReason::Renewed)?;
        if let Some(bound) = bound {
            self.append_binding(
                BindingKind::Renew,
                &serial,
                &holder_ref,
                &bound.person_ref,
                bound.attributes,
                Device::Card { face_only: !card.has_pin() },
            )?;
        }
        Ok(card)
    }

    fn feed_path(&self) -> PathBuf {
        self.dir.join(BINDING_FEED)
    }

    /// Every entry of the feed this CA signed, in order. Lines it did not sign (the folder is
    /// shared with whoever publishes it) are passed over here as the center passes them over.
    pub fn bindings(&self) -> Result<Vec<BindingEntry>, PkiError> {
        let path = self.feed_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(PkiError::Read { path, source }),
        };
        let own_keys = self.generation_keys()?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let signed: SignedBinding = serde_json::from_str(line).ok()?;
                let signature = onshi_domain::hex::decode(&signed.signature)?;
                own_keys.iter().any(|key| key.verify(signed.entry.as_bytes(), &signature)).then_some(())?;
                serde_json::from_str(&signed.entry).ok()
            })
            .collect())
    }

    /// The public keys of every generation.
    fn generation_keys(&self) -> Result<Vec<crate::verify::PublicKey>, PkiError> {
        use x509_parser::prelude::FromDer as _;
        pem_certificates(&self.cert_pem)
            .iter()
            .map(|der| {
                let bad = |detail: String| PkiError::Invalid { what: self.dir.join("ca.pem").display().to_string(), detail };
                let (_, cert) = x509_parser::prelude::X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
                crate::verify::PublicKey::from_spki(cert.public_key()).map_err(bad)
            })
            .collect()
    }

    /// The latest issue or renewal of a holder.
    fn binding_of_holder(&self, holder_ref: &str) -> Result<Option<BindingEntry>, PkiError> {
        Ok(self.bindings()?.into_iter().rev().find(|b| b.holder_ref == holder_ref && b.kind != BindingKind::Revoke))
    }

    /// Signs and appends one entry to the feed (fsynced before returning).
    fn append_binding(
        &self,
        kind: BindingKind,
        serial: &str,
        holder_ref: &str,
        person_ref: &str,
        attributes: Option<CardAttributes>,
        device: Device<'_>,
    ) -> Result<(), PkiError> {
        use std::io::Write as _;
        // Numbering and appending under one lock: two `onshi jpki` runs at once would otherwise
        // write one number twice, and the center applies each number once.
        let lock_path = self.dir.join("bindings.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| PkiError::Write { path: lock_path.clone(), source })?;
        lock.lock().map_err(|source| PkiError::Write { path: lock_path, source })?;
        let seq = self.bindings()?.iter().map(|b| b.seq).max().unwrap_or(0) + 1;
        let entry = BindingEntry {
            seq,
            kind,
            serial: serial.to_string(),
            holder_ref: holder_ref.to_string(),
            person_ref: person_ref.to_string(),
            attributes,
            on: today().yyyymmdd(),
            phone_of: match device {
                Device::Phone { of } => Some(of.to_string()),
                Device::Card { .. } => None,
            },
            face_only: matches!(device, Device::Card { face_only: true }),
        };
        let json = |e: serde_json::Error| PkiError::Invalid { what: "a binding entry".into(), detail: e.to_string() };
        let entry = serde_json::to_string(&entry).map_err(json)?;
        let signature = {
            use rcgen::SigningKey as _;
            onshi_domain::hex::encode(&self.key.sign(entry.as_bytes()).map_err(invalid("a binding entry's signature"))?)
        };
        let line = serde_json::to_string(&SignedBinding { entry, signature }).map_err(json)?;
        let path = self.feed_path();
        let error = |source| PkiError::Write { path: path.clone(), source };
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(error)?;
        file.write_all(format!("{line}\n").as_bytes()).map_err(error)?;
        file.sync_all().map_err(error)
    }

    fn revoked_path(&self) -> PathBuf {
        self.dir.join("revoked.json")
    }

    pub fn revocations(&self) -> Result<Vec<Revocation>, PkiError> {
        let path = self.revoked_path();
        serde_json::from_str(&read(&path)?).map_err(|e| PkiError::Invalid { what: path.display().to_string(), detail: e.to_string() })
    }

    /// Records a revocation; it reaches the center with the next published CRL, and (for a
    /// lost or stolen card) at once through the binding feed, which undoes the card's link.
    /// The smartphone certificates issued from the card are revoked with it, whatever the
    /// reason (a renewed card needs its phone set up again, as in the real system).
    pub fn revoke(&self, serial: &str, reason: RevokeReason) -> Result<(), PkiError> {
        serial_from_hex(serial)?;
        let mut all = self.revocations()?;
        let bindings = self.bindings()?;
        if !all.iter().any(|r| r.serial == serial) {
            all.push(Revocation { serial: serial.to_string(), reason, revoked_on: today().yyyymmdd() });
            let bound = bindings.iter().rev().find(|b| b.serial == serial);
            let is_phone = bound.is_some_and(|b| b.phone_of.is_some());
            if let Some(bound) = bound
                && (reason != RevokeReason::Renewed || is_phone)
            {
                self.append_binding(
                    BindingKind::Revoke,
                    serial,
                    &bound.holder_ref,
                    &bound.person_ref,
                    None,
                    Device::Card { face_only: false },
                )?;
            }
        }
        let text =
            serde_json::to_string_pretty(&all).map_err(|e| PkiError::Invalid { what: "revocations".into(), detail: e.to_string() })?;
        write(&self.revoked_path(), &text, false)?;
        let phones: Vec<String> = bindings
            .iter()
            .filter(|b| b.kind == BindingKind::Issue && b.phone_of.as_deref() == Some(serial))
            .map(|b| b.serial.clone())
            .filter(|phone| !all.iter().any(|r| &r.serial == phone))
            .collect();
        for phone in phones {
            self.revoke(&phone, reason)?;
        }
        Ok(())
    }

    /// Sets up the smartphone マイナ保険証 from the card at `card`: the phone gets its own key
    /// and 利用者証明用 certificate (a new serial), valid until the card's certificate ends and
    /// revoked with it, bound to the same person in the feed. An Android phone keeps a PIN of
    /// its own (`pin`); an iPhone has none (Face ID / Touch ID on the phone).
    pub fn issue_phone(&self, card: &Path, token: crate::card::TokenType, pin: Option<&str>, out: &Path) -> Result<VirtualCard, PkiError> {
        use crate::card::TokenType;
        let card = VirtualCard::load(card)?;
        let card_der = card.certificate_der()?;
        let bound = self.bindings()?.into_iter().rev().find(|b| b.serial == card.serial() && b.kind != BindingKind::Revoke);
        let bound = bound.ok_or_else(|| PkiError::Invalid {
            what: "the card".into(),
            detail: "this CA has no binding for it (issued elsewhere, or revoked)".into(),
        })?;
        if self.revocations()?.iter().any(|r| r.serial == card.serial()) {
            return Err(PkiError::Invalid { what: "the card".into(), detail: "its certificate is revoked".into() });
        }
        let pin = match (token, pin) {
            (TokenType::Card, _) => {
                return Err(PkiError::Invalid { what: "the token".into(), detail: "a phone is android or iphone".into() });
            }
            (TokenType::Android, None) => {
                return Err(PkiError::Invalid { what: "the phone".into(), detail: "an Android phone needs its own 4-digit PIN".into() });
            }
            (TokenType::Android, pin) => pin,
            (TokenType::Iphone, _) => None,
        };
        let until = crate::verify::not_after_of(&card_der)?;
        let key = card_key()?;
        let holder_ref = format!("phone-holder-{}", serial_hex(random_serial().as_ref()));
        let (cert_pem, serial) = self.sign_card_certificate(&key, &holder_ref, today(), until)?;
        let mut phone = VirtualCard::create(out, serial.clone(), cert_pem, key.serialize_pem(), pin, card.attributes().clone())?;
        phone.set_token(token, &self.current_pem)?;
        self.append_binding(
            BindingKind::Issue,
            &serial,
            &holder_ref,
            &bound.person_ref,
            bound.attributes,
            Device::Phone { of: card.serial() },
        )?;
        Ok(phone)
    }

    /// The next CRL number: one more than the last published (kept in `crl_number`).
    fn next_crl_number(&self) -> Result<u64, PkiError> {
        let path = self.dir.join("crl_number");
        let last = match std::fs::read_to_string(&path) {
            Ok(text) => {
                text.trim().parse::<u64>().map_err(|e| PkiError::Invalid { what: path.display().to_string(), detail: e.to_string() })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(PkiError::Read { path, source }),
        };
        write(&path, &format!("{}\n", last + 1), false)?;
        Ok(last + 1)
    }

    /// Signs and writes `crl.pem` with every revocation, valid for `next_update_days`, under
    /// a CRL number higher than any before.
    pub fn publish_crl(&self, next_update_days: u32) -> Result<PathBuf, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.current_pem, &self.key).map_err(invalid("the card CA certificate"))?;
        let now = today();
        let at = |d: Date| rcgen::date_time_ymd(i32::from(d.year()), d.month(), d.day());
        let mut revoked = Vec::new();
        for r in self.revocations()? {
            let date = Date::parse_yyyymmdd(&r.revoked_on).unwrap_or(now);
            revoked.push(RevokedCertParams {
                serial_number: serial_from_hex(&r.serial)?,
                revocation_time: at(date),
                reason_code: Some(r.reason.crl_reason()),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: at(now.add_days(-1)),
            next_update: at(now.add_days(i64::from(next_update_days.max(1)))),
            crl_number: SerialNumber::from(self.next_crl_number()?),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer).map_err(invalid("the CRL"))?;
        let path = self.dir.join("crl.pem");
        write(&path, &crl.pem().map_err(invalid("the CRL"))?, false)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{CardError, PIN_TRIES};
    use crate::verify::{CardCertError, CardTrust};

    fn attributes() -> CardAttributes {
        CardAttributes::fictitious()
    }

    fn trust(ca: &CardCa) -> CardTrust {
        let crl = ca.publish_crl(1).unwrap();
        CardTrust::load(ca.cert_pem(), &std::fs::read_to_string(crl).unwrap()).unwrap()
    }

    #[test]
    fn a_card_signs_after_its_pin_and_the_center_verifies_certificate_and_signature() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let path = dir.path().join("card.json");
        let mut card =
            ca.issue_card(attributes(), "person-1", Some("1234"), CardValidity::Statutory { issued_on: today() }, &path).unwrap();
        let checked = trust(&ca).check(&card.certificate_der().unwrap(), today()).expect("verifies");
        assert_eq!(checked.serial, card.serial());
        assert!(checked.holder_ref.starts_with("card-holder-"), "an opaque reference, no personal data");
        let signature = card.sign_with_pin("1234", b"challenge").unwrap();
        assert!(checked.public_key.verify(b"challenge", &signature));
        assert!(!checked.public_key.verify(b"another challenge", &signature));
        assert!(matches!(checked.public_key, crate::verify::PublicKey::Rsa(_)), "an RSA card key, as J-LIS issues");
        assert!(card.face_matches(card.face_template()));
        assert!(!card.face_matches("00"));
    }

    #[test]
    fn the_pin_locks_on_the_third_wrong_entry_and_stays_locked_after_reloading() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let path = dir.path().join("card.json");
        let mut card =
            ca.issue_card(attributes(), "person-1", Some("1234"), CardValidity::Statutory { issued_on: today() }, &path).unwrap();
        assert!(matches!(card.enter_pin("0000"), Err(CardError::WrongPin { retries_left: 2 })));
        assert!(card.enter_pin("1234").is_ok(), "a right PIN resets the counter");
        assert_eq!(card.pin_retries_left(), Some(PIN_TRIES));
        assert!(matches!(card.enter_pin("0000"), Err(CardError::WrongPin { retries_left: 2 })));
        let mut reloaded = VirtualCard::load(&path).unwrap();
        assert_eq!(reloaded.pin_retries_left(), Some(2), "the counter is on the card file");
        assert!(matches!(reloaded.enter_pin("1111"), Err(CardError::WrongPin { retries_left: 1 })));
        assert!(matches!(reloaded.enter_pin("2222"), Err(CardError::Locked)));
        let mut after_restart = VirtualCard::load(&path).unwrap();
        assert!(matches!(after_restart.enter_pin("1234"), Err(CardError::Locked)), "even the right PIN");
        let face_only = ca
            .issue_card(attributes(), "person-1", None, CardValidity::Statutory { issued_on: today() }, &dir.path().join("face.json"))
            .unwrap();
        assert!(!face_only.has_pin());
        assert!(matches!(VirtualCard::load(&dir.path().join("face.json")).unwrap().enter_pin("1234"), Err(CardError::NoPin)));
        // The feed says so, for the card and for its renewal (registration by face only).
        let renewed = ca.renew(&dir.path().join("face.json")).unwrap();
        let feed = ca.bindings().unwrap();
        for serial in [face_only.serial(), renewed.serial()] {
            assert!(feed.iter().any(|b| b.serial == serial && b.face_only), "{serial} marked face-only");
        }
        assert!(feed.iter().filter(|b| b.kind != BindingKind::Revoke && b.face_only).count() == 2, "no card with a PIN is");
    }

    #[test]
    fn revoked_renewed_expired_and_foreign_certificates_do_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let lost = ca
            .issue_card(
                attributes(),
                "person-1",
                Some("1234"),
                CardValidity::Statutory { issued_on: today() },
                &dir.path().join("lost.json"),
            )
            .unwrap();
        ca.revoke(lost.serial(), RevokeReason::Lost).unwrap();
        let renewed_path = dir.path().join("renewed.json");
        let old =
            ca.issue_card(attributes(), "person-1", Some("1234"), CardValidity::Statutory { issued_on: today() }, &renewed_path).unwrap();
        let old_der = old.certificate_der().unwrap();
        let renewed = ca.renew(&renewed_path).unwrap();
        assert_ne!(renewed.serial(), old.serial());
        assert_eq!(renewed.holder_ref().unwrap(), old.holder_ref().unwrap(), "same holder");
        let expired = ca
            .issue_card(
                attributes(),
                "person-1",
                Some("1234"),
                CardValidity::Days { from: today().add_days(-400), days: 30 },
                &dir.path().join("old.json"),
            )
            .unwrap();
        let trust = trust(&ca);
        assert_eq!(trust.revoked_count(), 2);
        assert!(matches!(trust.check(&lost.certificate_der().unwrap(), today()), Err(CardCertError::Revoked(_))));
        assert!(matches!(trust.check(&old_der, today()), Err(CardCertError::Revoked(_))));
        assert!(trust.check(&renewed.certificate_der().unwrap(), today()).is_ok());
        assert!(matches!(trust.check(&expired.certificate_der().unwrap(), today()), Err(CardCertError::Expired(_))));
        // A wrong link must stay reportable: the serial of a revoked or expired card still reads.
        assert_eq!(trust.issued_serial(&lost.certificate_der().unwrap()).as_deref(), Ok(lost.serial()));
        assert_eq!(trust.issued_serial(&expired.certificate_der().unwrap()).as_deref(), Ok(expired.serial()));
        let other = CardCa::create(&dir.path().join("other")).unwrap();
        let foreign = other
            .issue_card(
                attributes(),
                "person-1",
                Some("1234"),
                CardValidity::Days { from: today(), days: 30 },
                &dir.path().join("foreign.json"),
            )
            .unwrap();
        assert_eq!(trust.check(&foreign.certificate_der().unwrap(), today()), Err(CardCertError::UnknownIssuer));
        assert_eq!(trust.issued_serial(&foreign.certificate_der().unwrap()), Err(CardCertError::UnknownIssuer));
        assert!(matches!(trust.check(b"junk", today()), Err(CardCertError::Malformed(_))));
        // A CRL signed by another CA is refused.
        let forged = std::fs::read_to_string(other.publish_crl(1).unwrap()).unwrap();
        assert!(CardTrust::load(ca.cert_pem(), &forged).is_err());
    }

    #[test]
    fn a_user_certificate_runs_to_the_fifth_birthday_after_issue() {
        let d = |text: &str| Date::parse_yyyymmdd(text).unwrap();
        // Written out from the rule (JPKI.md): count the birthdays after the day of issue; the
        // certificate's last day is the fifth.
        assert_eq!(fifth_birthday_after(d("19800615"), d("20261204")), d("20310615"), "1st 2027-06-15 … 5th 2031-06-15");
        assert_eq!(fifth_birthday_after(d("19800615"), d("20260614")), d("20300615"), "the birthday right after issue is the 1st");
        assert_eq!(fifth_birthday_after(d("19800615"), d("20260615")), d("20310615"), "issued on a birthday: that one does not count");
        assert_eq!(fifth_birthday_after(d("20000229"), d("20261204")), d("20310301"), "29 Feb in a common year counts as 1 Mar");
        assert_eq!(fifth_birthday_after(d("20240229"), d("20241204")), d("20290301"));

        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let issued_on = d("20261204");
        let card = ca
            .issue_card(attributes(), "person-1", Some("1234"), CardValidity::Statutory { issued_on }, &dir.path().join("c.json"))
            .unwrap();
        // attributes() are born 1980-01-01: birthdays after 2026-12-04 are 2027-01-01 … 2031-01-01.
        let checked = trust(&ca).check(&card.certificate_der().unwrap(), issued_on).unwrap();
        assert_eq!(checked.not_after, d("20310101"));
        assert!(trust(&ca).check(&card.certificate_der().unwrap(), d("20310101")).is_ok(), "valid on its last day");
        assert!(matches!(trust(&ca).check(&card.certificate_der().unwrap(), d("20310102")), Err(CardCertError::Expired(_))));
    }

    #[test]
    fn the_card_signs_the_digest_info_the_host_hands_it_and_nothing_else() {
        use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let card = ca.issue_card(
            attributes(),
            "person-1",
            Some("1234"),
            CardValidity::Statutory { issued_on: today() },
            &dir.path().join("c.json"),
        );
        let card = card.unwrap();
        let info = crate::card::sha256_digest_info(b"message");
        // RFC 8017 9.2: 30 31 30 0d 06 09 <sha-256 OID> 05 00 04 20 <hash>.
        assert_eq!(info.len(), 51);
        assert_eq!(&info[..6], &[0x30, 0x31, 0x30, 0x0d, 0x06, 0x09]);
        let signature = card.sign_digest_info(&info).unwrap();
        assert_eq!(signature.len(), 256, "RSA-2048");
        let crate::verify::PublicKey::Rsa(key) = trust(&ca).check(&card.certificate_der().unwrap(), today()).unwrap().public_key else {
            panic!("an RSA card key")
        };
        // The independent check: aws-lc-rs's own PKCS#1 v1.5 SHA-256 verification of the message.
        assert!(UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &key).verify(b"message", &signature).is_ok());
        assert!(matches!(card.sign_digest_info(&info[..50]), Err(CardError::NotDigestInfo(50))));
        assert!(matches!(card.sign_digest_info(&[0u8; 51]), Err(CardError::NotDigestInfo(51))));
    }

    #[test]
    fn a_ca_roll_over_keeps_earlier_cards_verifying_and_signs_new_ones_with_the_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("jpki");
        let mut ca = CardCa::create(&ca_dir).unwrap();
        let statutory = CardValidity::Statutory { issued_on: today() };
        let before = ca.issue_card(attributes(), "person-1", Some("1234"), statutory, &dir.path().join("before.json")).unwrap();
        let first_generation = ca.current_pem().to_string();
        let first_crl = std::fs::read_to_string(ca.publish_crl(1).unwrap()).unwrap();
        ca.rollover().unwrap();
        assert_eq!(ca.generations(), 2);
        assert_ne!(ca.current_pem(), first_generation);
        let ca = CardCa::load(&ca_dir).unwrap();
        assert_eq!(ca.generations(), 2, "both generations in ca.pem after reloading");
        let after = ca.issue_card(attributes(), "person-2", Some("1234"), statutory, &dir.path().join("after.json")).unwrap();
        let lost = ca.issue_card(attributes(), "person-3", Some("1234"), statutory, &dir.path().join("lost.json")).unwrap();
        ca.revoke(lost.serial(), RevokeReason::Lost).unwrap();
        let trust = trust(&ca);
        assert_eq!(trust.generations(), 2);
        assert!(trust.check(&before.certificate_der().unwrap(), today()).is_ok(), "a card of the first generation");
        assert!(trust.check(&after.certificate_der().unwrap(), today()).is_ok(), "a card of the second");
        assert!(matches!(trust.check(&lost.certificate_der().unwrap(), today()), Err(CardCertError::Revoked(_))));
        // Same name, different keys: the generation is found by signature. A center that knows
        // only the first generation takes no card of the second, and no list the second signed.
        let first_only = CardTrust::load(&first_generation, &first_crl).unwrap();
        assert!(first_only.check(&before.certificate_der().unwrap(), today()).is_ok());
        assert_eq!(first_only.check(&after.certificate_der().unwrap(), today()), Err(CardCertError::UnknownIssuer));
        let second_crl = std::fs::read_to_string(ca_dir.join("crl.pem")).unwrap();
        assert!(CardTrust::load(&first_generation, &second_crl).is_err(), "a list signed by an unknown generation");
        // Every feed line, before and after the roll-over, reads as the CA's.
        let lines = std::fs::read_to_string(ca_dir.join(BINDING_FEED)).unwrap();
        let entries: Vec<_> = lines.lines().map(|line| trust.binding(line).unwrap()).collect();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(ca.bindings().unwrap().len(), 4);
    }

    #[test]
    fn a_phone_certificate_ends_with_the_card_certificate_and_is_revoked_with_it() {
        use crate::card::TokenType;
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let card_path = dir.path().join("card.json");
        let card =
            ca.issue_card(attributes(), "person-1", Some("1234"), CardValidity::Days { from: today(), days: 100 }, &card_path).unwrap();
        assert!(ca.issue_phone(&card_path, TokenType::Android, None, &dir.path().join("x.json")).is_err(), "Android needs a PIN");
        let android = ca.issue_phone(&card_path, TokenType::Android, Some("5678"), &dir.path().join("android.json")).unwrap();
        let iphone = ca.issue_phone(&card_path, TokenType::Iphone, Some("5678"), &dir.path().join("iphone.json")).unwrap();
        assert_eq!((android.token(), iphone.token()), (TokenType::Android, TokenType::Iphone));
        assert!(!iphone.has_pin(), "Face ID / Touch ID on the phone, no PIN");
        assert_ne!(android.serial(), card.serial(), "the phone has its own certificate");
        let before = trust(&ca);
        let card_end = before.check(&card.certificate_der().unwrap(), today()).unwrap().not_after;
        assert_eq!(card_end, today().add_days(100));
        assert_eq!(before.check(&android.certificate_der().unwrap(), today()).unwrap().not_after, card_end, "ends with the card's");
        // The feed binds the phone to the card's person, naming the card it came from.
        let phone_line = ca.bindings().unwrap().into_iter().find(|b| b.serial == android.serial()).unwrap();
        assert_eq!((phone_line.person_ref.as_str(), phone_line.phone_of.as_deref()), ("person-1", Some(card.serial())));
        // Renewing the card revokes both phones, each with a revocation line for the center.
        ca.renew(&card_path).unwrap();
        let trust = trust(&ca);
        assert!(matches!(trust.check(&android.certificate_der().unwrap(), today()), Err(CardCertError::Revoked(_))));
        assert!(matches!(trust.check(&iphone.certificate_der().unwrap(), today()), Err(CardCertError::Revoked(_))));
        let revoke_lines: Vec<_> = ca.bindings().unwrap().into_iter().filter(|b| b.kind == BindingKind::Revoke).map(|b| b.serial).collect();
        assert_eq!(revoke_lines, vec![android.serial().to_string(), iphone.serial().to_string()]);
    }
}
