//! What the center checks about a card certificate and a signature: issued by the card CA (its
//! signature verified), within its validity, not on the CA's signed revocation list; and that
//! a challenge was signed by the certificate's key (or a reader's device key).
//!
//! The card CA has several generations under one name, as J-LIS has (2015–2025, 2019–2029,
//! 2023–2033 share one DN): the issuing generation is found by checking the signature, never
//! by the name alone, so a roll-over to a new CA key breaks no card issued before it.

use std::collections::HashMap;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use onshi_domain::Date;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::PkiError;
use crate::jpki::serial_hex;

/// Why a card certificate does not verify. Each variant maps to its own stable error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardCertError {
    #[error("not a certificate: {0}")]
    Malformed(String),
    #[error("not issued by the card CA")]
    UnknownIssuer,
    #[error("expired on {0}")]
    Expired(Date),
    #[error("not valid before {0}")]
    NotYetValid(Date),
    #[error("revoked ({0})")]
    Revoked(String),
}

/// A card certificate that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardCertificate {
    /// Serial, lower-case hex.
    pub serial: String,
    /// The opaque holder reference (subject CN), kept across renewals.
    pub holder_ref: String,
    pub public_key: PublicKey,
    pub not_after: Date,
}

/// A public key as a certificate carries it, with the signature scheme onshi uses with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA (the JPKI user key and CA, 2048 bits and up): the `RSAPublicKey` DER; signatures
    /// are PKCS#1 v1.5 over SHA-256, which is what the card makes from the DigestInfo the
    /// host hands it.
    Rsa(Vec<u8>),
    /// ECDSA P-256 (the cards and card CAs of onshi before RSA cards): the uncompressed
    /// point; signatures are ASN.1 DER over SHA-256.
    P256(Vec<u8>),
}

impl PublicKey {
    /// The key of a DER `SubjectPublicKeyInfo`; other key types are refused.
    pub fn from_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<PublicKey, String> {
        use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
        let key = spki.subject_public_key.data.to_vec();
        if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
            Ok(PublicKey::Rsa(key))
        } else if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY && key.len() == 65 {
            Ok(PublicKey::P256(key))
        } else {
            Err(format!("a {} key; onshi reads RSA and P-256 keys", spki.algorithm.algorithm))
        }
    }

    /// Whether `signature` over `message` was made with this key's private half.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Rsa(key) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key).verify(message, signature).is_ok(),
            PublicKey::P256(key) => signature_valid(key, message, signature),
        }
    }
}

/// One generation of the card CA: its name and key.
struct Generation {
    subject: Vec<u8>,
    key: PublicKey,
}

/// The card CA as the center trusts it: the keys of its generations, and the revocations of
/// its last CRL.
pub struct CardTrust {
    generations: Vec<Generation>,
    revoked: HashMap<String, String>,
    crl_number: u64,
    next_update: Option<Date>,
}

fn invalid_pem(what: &'static str) -> impl Fn(rustls::pki_types::pem::Error) -> PkiError {
    move |e| PkiError::Invalid { what: what.into(), detail: e.to_string() }
}

fn date_of(time: x509_parser::time::ASN1Time) -> Date {
    let t = time.to_datetime();
    Date::new(t.year() as u16, u8::from(t.month()), t.day()).unwrap_or(Date::new(1970, 1, 1).expect("valid"))
}

/// Checks a P-256 ECDSA (SHA-256, DER) signature.
pub fn signature_valid(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key).verify(message, signature).is_ok()
}

/// The uncompressed public key inside a PEM public key or certificate of a reader.
pub fn public_key_of_spki_der(spki_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::Invalid { what: "a public key".into(), detail: e.to_string() })?;
    Ok(spki.subject_public_key.data.to_vec())
}

/// The last day of a certificate (DER), unverified.
pub(crate) fn not_after_of(der: &[u8]) -> Result<Date, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Invalid { what: "a card certificate".into(), detail: e.to_string() })?;
    Ok(date_of(cert.validity().not_after))
}

pub(crate) fn holder_ref_of(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Invalid { what: "a card certificate".into(), detail: e.to_string() })?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .ok_or_else(|| PkiError::Invalid { what: "a card certificate".into(), detail: "no holder reference".into() })
}

impl CardTrust {
    /// Loads the card CA's certificates (every generation, PEM one after the other) and its
    /// CRL, verifying the CRL's signature against any of them.
    pub fn load(ca_pem: &str, crl_pem: &str) -> Result<CardTrust, PkiError> {
        use rustls::pki_types::pem::PemObject;
        let mut generations = Vec::new();
        for der in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let der = der.map_err(invalid_pem("the card CA certificate"))?;
            let (_, ca) = X509Certificate::from_der(&der)
                .map_err(|e| PkiError::Invalid { what: "the card CA certificate".into(), detail: e.to_string() })?;
            let key = PublicKey::from_spki(ca.public_key())
                .map_err(|detail| PkiError::Invalid { what: "the card CA certificate".into(), detail })?;
            generations.push(Generation { subject: ca.subject().as_raw().to_vec(), key });
        }
        if generations.is_empty() {
            return Err(PkiError::Invalid { what: "the card CA certificate".into(), detail: "no certificate in the file".into() });
        }
        let crl_der =
            rustls::pki_types::CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).map_err(invalid_pem("the card CRL"))?;
        let (_, crl) = CertificateRevocationList::from_der(&crl_der)
            .map_err(|e| PkiError::Invalid { what: "the card CRL".into(), detail: e.to_string() })?;
        let signed = generations.iter().any(|g| {
            crl.tbs_cert_list.issuer.as_raw() == g.subject.as_slice() && g.key.verify(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
        });
        if !signed {
            return Err(PkiError::Invalid {
                what: "the card CRL".into(),
                detail: "its signature is not the card CA's; publish it again with `onshi jpki crl`".into(),
            });
        }
        let crl_number = match crl.crl_number() {
            None => 0,
            Some(number) => {
                let bytes = number.to_bytes_be();
                if bytes.len() > 8 {
                    return Err(PkiError::Invalid { what: "the card CRL".into(), detail: "its CRL number is over 64 bits".into() });
                }
                bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
            }
        };
        let next_update = crl.next_update().map(date_of);
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| {
                let reason = r.reason_code().map_or("unspecified".to_string(), |(_, code)| code.to_string());
                (serial_hex(r.raw_serial()), reason)
            })
            .collect();
        Ok(CardTrust { generations, revoked, crl_number, next_update })
    }

    /// The CRL's number: each list the CA publishes has a higher one.
    pub fn crl_number(&self) -> u64 {
        self.crl_number
    }

    /// The day the CRL says the next one will be out by; a list past it is stale.
    pub fn next_update(&self) -> Option<Date> {
        self.next_update
    }

    /// One line of the card CA's binding feed, checked: the CA's signature over the entry's
    /// exact bytes, then the entry itself. A line signed by anyone else is refused.
    pub fn binding(&self, line: &str) -> Result<crate::jpki::BindingEntry, String> {
        let signed: crate::jpki::SignedBinding = serde_json::from_str(line).map_err(|e| format!("not a feed line: {e}"))?;
        let signature = onshi_domain::hex::decode(&signed.signature).ok_or("the signature is not hex")?;
        if !self.generations.iter().any(|g| g.key.verify(signed.entry.as_bytes(), &signature)) {
            return Err("the signature is not the card CA's".into());
        }
        serde_json::from_str(&signed.entry).map_err(|e| format!("not a binding entry: {e}"))
    }

    /// How many certificates the loaded CRL revokes.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// How many generations of the CA are trusted.
    pub fn generations(&self) -> usize {
        self.generations.len()
    }

    /// A certificate this CA issued (its signature verified against the generation that made
    /// it, found by signature since all share one name), whatever its validity or revocation.
    fn issued<'a>(&self, der: &'a [u8]) -> Result<X509Certificate<'a>, CardCertError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CardCertError::Malformed(e.to_string()))?;
        let signed = self.generations.iter().any(|g| {
            cert.issuer().as_raw() == g.subject.as_slice() && g.key.verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        });
        if !signed {
            return Err(CardCertError::UnknownIssuer);
        }
        Ok(cert)
    }

    /// The serial of a certificate this CA issued, even revoked or expired: enough to name the
    /// card link it belongs to (a wrong link must be reportable whatever the card's state).
    pub fn issued_serial(&self, der: &[u8]) -> Result<String, CardCertError> {
        Ok(serial_hex(self.issued(der)?.raw_serial()))
    }

    /// Checks a card certificate (DER) for `today`: issued by this CA, not revoked, within
    /// its validity.
    pub fn check(&self, der: &[u8], today: Date) -> Result<CardCertificate, CardCertError> {
        let checked = self.check_any_end(der, today)?;
        if today > checked.not_after {
            return Err(CardCertError::Expired(checked.not_after));
        }
        Ok(checked)
    }

    /// Checks a card certificate as [`CardTrust::check`] does, except its end of validity: the
    /// caller decides what an expired certificate may still do (eligibility only, for a while:
    /// `onshi_domain::certificate`).
    pub fn check_any_end(&self, der: &[u8], today: Date) -> Result<CardCertificate, CardCertError> {
        let cert = self.issued(der)?;
        let serial = serial_hex(cert.raw_serial());
        if let Some(reason) = self.revoked.get(&serial) {
            return Err(CardCertError::Revoked(reason.clone()));
        }
        let not_before = date_of(cert.validity().not_before);
        let not_after = date_of(cert.validity().not_after);
        if today < not_before {
            return Err(CardCertError::NotYetValid(not_before));
        }
        let holder_ref = holder_ref_of(der).map_err(|e| CardCertError::Malformed(e.to_string()))?;
        let public_key = PublicKey::from_spki(cert.public_key()).map_err(CardCertError::Malformed)?;
        Ok(CardCertificate { serial, holder_ref, public_key, not_after })
    }
}
