//! A demo stand-in for J-LIS's JPKI: the card CA that issues the 利用者証明用電子証明書 of each
//! virtual My Number card, revokes a lost or stolen card, renews a certificate (new serial,
//! same holder) and publishes a signed revocation list (CRL) that the center loads.
//!
//! A card certificate's subject is an opaque holder reference (random, never a My Number) and
//! carries no personal data; a renewal keeps it, so the center can move a card link to the
//! renewed certificate on the CA's own word. Keys are ECDSA P-256 with SHA-256.
//!
//! **Who a card belongs to is the card authority's word, never the clinic's.** As J-LIS knows
//! whose card it issued (from the resident register) and feeds the 中間サーバー, this CA keeps
//! the binding certificate → the register's pseudonymous person reference, with the attributes
//! it attests (基本4情報 and the kana reading), in a signed, append-only binding feed
//! (`bindings.jsonl`: new cards, renewals, revocations, one signed line each, numbered). The
//! center reads it, checks every line against this CA's key and applies each number once.
//!
//! Files under the CA directory: `ca.pem`/`ca.key`, `revoked.json` (what was revoked, why and
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// One line of `bindings.jsonl`: the entry's JSON text exactly as signed, and the CA's
/// signature over those bytes (hex), so that no re-serialisation can change what was signed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBinding {
    pub entry: String,
    pub signature: String,
}

/// The binding feed's file name in the CA directory.
pub const BINDING_FEED: &str = "bindings.jsonl";

/// Validity of a card certificate unless told otherwise: five birthdays, roughly.
pub const CARD_VALIDITY_DAYS: u32 = 5 * 365;

/// The card CA, loaded from its directory.
pub struct CardCa {
    dir: PathBuf,
    cert_pem: String,
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

impl CardCa {
    /// Creates the card CA in `dir` (which must not hold one yet).
    pub fn create(dir: &Path) -> Result<CardCa, PkiError> {
        let cert_path = dir.join("ca.pem");
        if cert_path.exists() {
            return Err(PkiError::Exists { path: cert_path });
        }
        let key = KeyPair::generate().map_err(invalid("a new card CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid("card CA parameters"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "onshi demo JPKI");
        dn.push(DnType::CommonName, "onshi demo JPKI user authentication CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        validity(&mut params, today(), 3650);
        let cert = params.self_signed(&key).map_err(invalid("the card CA certificate"))?;
        write(&dir.join("ca.key"), &key.serialize_pem(), true)?;
        write(&cert_path, &cert.pem(), false)?;
        write(&dir.join("revoked.json"), "[]\n", false)?;
        Ok(CardCa { dir: dir.to_path_buf(), cert_pem: cert.pem(), key })
    }

    pub fn load(dir: &Path) -> Result<CardCa, PkiError> {
        let cert_pem = read(&dir.join("ca.pem"))?;
        let key_path = dir.join("ca.key");
        let key = KeyPair::from_pem(&read(&key_path)?)
            .map_err(|e| PkiError::Invalid { what: key_path.display().to_string(), detail: e.to_string() })?;
        Ok(CardCa { dir: dir.to_path_buf(), cert_pem, key })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn sign_card_certificate(&self, key: &KeyPair, holder_ref: &str, not_before: Date, days: u32) -> Result<(String, String), PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(invalid("the card CA certificate"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid("card parameters"))?;
        params.distinguished_name.push(DnType::CommonName, holder_ref);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = random_serial();
        let serial_text = serial_hex(serial.as_ref());
        params.serial_number = Some(serial);
        validity(&mut params, not_before.add_days(1), days);
        let cert = params.signed_by(key, &issuer).map_err(invalid("a card certificate"))?;
        Ok((cert.pem(), serial_text))
    }

    /// Issues a virtual card for a holder and writes it to `out`. `valid_from` lets tests make
    /// a certificate that has already expired.
    pub fn issue_card(
        &self,
        attributes: CardAttributes,
        person_ref: &str,
        pin: Option<&str>,
        valid_from: Date,
        days: u32,
        out: &Path,
    ) -> Result<VirtualCard, PkiError> {
        if person_ref.is_empty() || person_ref.len() > 64 || person_ref.chars().any(char::is_control) {
            return Err(PkiError::Invalid { what: "the person reference".into(), detail: "1 to 64 printable characters".into() });
        }
        let key = KeyPair::generate().map_err(invalid("a new card key"))?;
        let holder_ref = format!("card-holder-{}", serial_hex(random_serial().as_ref()));
        let (cert_pem, serial) = self.sign_card_certificate(&key, &holder_ref, valid_from, days)?;
        let card = VirtualCard::create(out, serial.clone(), cert_pem, key.serialize_pem(), pin, attributes.clone())?;
        self.append_binding(BindingKind::Issue, &serial, &holder_ref, person_ref, Some(attributes))?;
        Ok(card)
    }

    /// Renews the certificate on the card at `path`: a new key pair and serial for the same
    /// holder reference; the old certificate is revoked as superseded.
    pub fn renew(&self, path: &Path) -> Result<VirtualCard, PkiError> {
        let mut card = VirtualCard::load(path)?;
        let holder_ref = card.holder_ref()?;
        let bound = self.binding_of_holder(&holder_ref)?;
        let key = KeyPair::generate().map_err(invalid("a new card key"))?;
        let (cert_pem, serial) = self.sign_card_certificate(&key, &holder_ref, today(), CARD_VALIDITY_DAYS)?;
        let old = card.serial().to_string();
        card.replace_certificate(serial.clone(), cert_pem, key.serialize_pem())?;
        self.revoke(&old, RevokeReason::Renewed)?;
        if let Some(bound) = bound {
            self.append_binding(BindingKind::Renew, &serial, &holder_ref, &bound.person_ref, bound.attributes)?;
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
        let own_key = self.key.public_key_raw();
        Ok(text
            .lines()
            .filter_map(|line| {
                let signed: SignedBinding = serde_json::from_str(line).ok()?;
                let signature = onshi_domain::hex::decode(&signed.signature)?;
                crate::verify::signature_valid(own_key, signed.entry.as_bytes(), &signature).then_some(())?;
                serde_json::from_str(&signed.entry).ok()
            })
            .collect())
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
        };
        let json = |e: serde_json::Error| PkiError::Invalid { what: "a binding entry".into(), detail: e.to_string() };
        let entry = serde_json::to_string(&entry).map_err(json)?;
        let signature = onshi_domain::hex::encode(&crate::card::sign_pem(&self.key.serialize_pem(), entry.as_bytes())?);
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
    pub fn revoke(&self, serial: &str, reason: RevokeReason) -> Result<(), PkiError> {
        serial_from_hex(serial)?;
        let mut all = self.revocations()?;
        if !all.iter().any(|r| r.serial == serial) {
            all.push(Revocation { serial: serial.to_string(), reason, revoked_on: today().yyyymmdd() });
            if reason != RevokeReason::Renewed
                && let Some(bound) = self.bindings()?.into_iter().rev().find(|b| b.serial == serial)
            {
                self.append_binding(BindingKind::Revoke, serial, &bound.holder_ref, &bound.person_ref, None)?;
            }
        }
        let text =
            serde_json::to_string_pretty(&all).map_err(|e| PkiError::Invalid { what: "revocations".into(), detail: e.to_string() })?;
        write(&self.revoked_path(), &text, false)
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
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(invalid("the card CA certificate"))?;
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
    use crate::verify::{CardCertError, CardTrust, signature_valid};

    fn attributes() -> CardAttributes {
        CardAttributes {
            name: "試験　花子".into(),
            name_kana: "シケン　ハナコ".into(),
            birth_date: "19800101".into(),
            sex: "2".into(),
            address: "東京都千代田区霞が関1-2-2".into(),
        }
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
        let mut card = ca.issue_card(attributes(), "person-1", Some("1234"), today(), CARD_VALIDITY_DAYS, &path).unwrap();
        let checked = trust(&ca).check(&card.certificate_der().unwrap(), today()).expect("verifies");
        assert_eq!(checked.serial, card.serial());
        assert!(checked.holder_ref.starts_with("card-holder-"), "an opaque reference, no personal data");
        let signature = card.sign_with_pin("1234", b"challenge").unwrap();
        assert!(signature_valid(&checked.public_key, b"challenge", &signature));
        assert!(!signature_valid(&checked.public_key, b"another challenge", &signature));
        assert!(card.face_matches(card.face_template()));
        assert!(!card.face_matches("00"));
    }

    #[test]
    fn the_pin_locks_on_the_third_wrong_entry_and_stays_locked_after_reloading() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let path = dir.path().join("card.json");
        let mut card = ca.issue_card(attributes(), "person-1", Some("1234"), today(), CARD_VALIDITY_DAYS, &path).unwrap();
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
        let face_only = ca.issue_card(attributes(), "person-1", None, today(), CARD_VALIDITY_DAYS, &dir.path().join("face.json")).unwrap();
        assert!(!face_only.has_pin());
        assert!(matches!(VirtualCard::load(&dir.path().join("face.json")).unwrap().enter_pin("1234"), Err(CardError::NoPin)));
    }

    #[test]
    fn revoked_renewed_expired_and_foreign_certificates_do_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let lost =
            ca.issue_card(attributes(), "person-1", Some("1234"), today(), CARD_VALIDITY_DAYS, &dir.path().join("lost.json")).unwrap();
        ca.revoke(lost.serial(), RevokeReason::Lost).unwrap();
        let renewed_path = dir.path().join("renewed.json");
        let old = ca.issue_card(attributes(), "person-1", Some("1234"), today(), CARD_VALIDITY_DAYS, &renewed_path).unwrap();
        let old_der = old.certificate_der().unwrap();
        let renewed = ca.renew(&renewed_path).unwrap();
        assert_ne!(renewed.serial(), old.serial());
        assert_eq!(renewed.holder_ref().unwrap(), old.holder_ref().unwrap(), "same holder");
        let expired =
            ca.issue_card(attributes(), "person-1", Some("1234"), today().add_days(-400), 30, &dir.path().join("old.json")).unwrap();
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
        let foreign = other.issue_card(attributes(), "person-1", Some("1234"), today(), 30, &dir.path().join("foreign.json")).unwrap();
        assert_eq!(trust.check(&foreign.certificate_der().unwrap(), today()), Err(CardCertError::UnknownIssuer));
        assert_eq!(trust.issued_serial(&foreign.certificate_der().unwrap()), Err(CardCertError::UnknownIssuer));
        assert!(matches!(trust.check(b"junk", today()), Err(CardCertError::Malformed(_))));
        // A CRL signed by another CA is refused.
        let forged = std::fs::read_to_string(other.publish_crl(1).unwrap()).unwrap();
        assert!(CardTrust::load(ca.cert_pem(), &forged).is_err());
    }
}
