//! The center's certificate authority and what a peer certificate says about its holder.
//!
//! Every client of the center holds a certificate issued by the center CA. The holder's role
//! and number are carried as a URI in the certificate's subjectAltName:
//! `urn:onshi:institution:<10-digit 医療機関コード>` or `urn:onshi:insurer:<保険者番号>`.
//! The center takes the institution code from there, never from a request body.
//!
//! Files, under one directory:
//! `ca.pem`/`ca.key` (the CA; keep the key offline in production), `server.pem`/`server.key`,
//! `institutions/<code>.pem|.key`, `insurers/<number>.pem|.key`; `issued.json`, `revoked.json`
//! and `crl.pem` for revocation ([`revocation`]).

pub mod applet;
pub mod card;
pub mod jpki;
pub mod revocation;
pub mod verify;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use onshi_domain::ids::{InstitutionCode, InsurerNumber, PublicPayerNumber};
use onshi_domain::{Date, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};

/// What went wrong with certificates or keys. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}: {source}; run `onshi center pki init` first or check the path")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} already exists; refusing to overwrite a CA (remove the directory to start over)")]
    Exists { path: PathBuf },
    #[error("{what} is not a usable certificate or key: {detail}")]
    Invalid { what: String, detail: String },
    #[error("the center CRL {path} is refused: {detail}")]
    Crl { path: PathBuf, detail: String },
    #[error("the certificate names no onshi role (expected a subjectAltName URI urn:onshi:institution:… or urn:onshi:insurer:…)")]
    NoRole,
    #[error("the certificate's {role} number is invalid: {detail}")]
    BadNumber { role: &'static str, detail: String },
}

/// Who a verified client certificate says the peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A medical institution or pharmacy (保険医療機関・薬局).
    Institution(InstitutionCode),
    /// An insurer (保険者), which may write only its own members.
    Insurer(InsurerNumber),
    /// The center's operator (by name): opens the operator's dashboard, nothing of the API.
    Operator(String),
    /// A 公費 payer (公費負担者: a prefecture's or a city's programme, a welfare office), which
    /// may register only its own recipients.
    Payer(PublicPayerNumber),
}

const INSTITUTION_URI: &str = "urn:onshi:institution:";
const INSURER_URI: &str = "urn:onshi:insurer:";
const OPERATOR_URI: &str = "urn:onshi:operator:";
const PAYER_URI: &str = "urn:onshi:payer:";

/// Whether an operator's name is usable: 1–64 lower-case ASCII letters, digits and `-`.
pub fn valid_operator_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads the role from a certificate (DER) that TLS has already verified against the CA.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::Invalid { what: "the client certificate".into(), detail: e.to_string() })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Invalid { what: "the client certificate".into(), detail: e.to_string() })?
        .ok_or(PkiError::NoRole)?;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if let Some(code) = uri.strip_prefix(INSTITUTION_URI) {
                return InstitutionCode::parse(code)
                    .map(PeerIdentity::Institution)
                    .map_err(|e| PkiError::BadNumber { role: "institution", detail: e.to_string() });
            }
            if let Some(number) = uri.strip_prefix(INSURER_URI) {
                return InsurerNumber::parse(number)
                    .map(PeerIdentity::Insurer)
                    .map_err(|e| PkiError::BadNumber { role: "insurer", detail: e.to_string() });
            }
            if let Some(number) = uri.strip_prefix(PAYER_URI) {
                return PublicPayerNumber::parse(number)
                    .map(PeerIdentity::Payer)
                    .map_err(|e| PkiError::BadNumber { role: "payer", detail: e.to_string() });
            }
            if let Some(name) = uri.strip_prefix(OPERATOR_URI) {
                return if valid_operator_name(name) {
                    Ok(PeerIdentity::Operator(name.to_string()))
                } else {
                    Err(PkiError::BadNumber { role: "operator", detail: format!("the name {name:?} is not 1–64 of a-z, 0-9, -") })
                };
            }
        }
    }
    Err(PkiError::NoRole)
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct IssuedPem {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// The center CA, loaded from its directory.
pub struct CenterCa {
    dir: PathBuf,
    cert_pem: String,
    key: KeyPair,
}

pub(crate) fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read { path: path.to_path_buf(), source })
}

pub(crate) fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let error = |source| PkiError::Write { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(error)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)
}

pub(crate) fn invalid(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Invalid { what: what.to_string(), detail: e.to_string() }
}

pub(crate) fn validity(params: &mut CertificateParams, today: Date, days: u32) {
    let start = today.add_days(-1);
    let end = today.add_days(i64::from(days));
    params.not_before = rcgen::date_time_ymd(i32::from(start.year()), start.month(), start.day());
    params.not_after = rcgen::date_time_ymd(i32::from(end.year()), end.month(), end.day());
}

pub(crate) fn random_serial() -> SerialNumber {
    // Serials need only be unique within this CA and positive: nanoseconds since the epoch
    // plus a process-wide counter give that without a random-number dependency.
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&nanos.to_be_bytes());
    bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// `bytes` random bytes as hex, from the operating system's generator.
pub fn random_hex(bytes: usize) -> Result<String, PkiError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| PkiError::Invalid { what: "the random source".into(), detail: "failed".into() })?;
    Ok(onshi_domain::hex::encode(&buffer))
}

/// Now in Japan time, from the system clock (the one place it is read; servers wrap it in an
/// injectable clock).
pub fn now() -> Timestamp {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Timestamp::from_unix(unix)
}

/// Today in Japan time, from the system clock.
pub fn today() -> Date {
    now().date()
}

/// Validity of issued certificates unless told otherwise.
pub const DEFAULT_VALIDITY_DAYS: u32 = 825;

impl CenterCa {
    /// Creates a new CA in `dir` (which must not hold one yet).
    pub fn create(dir: &Path, name: &str) -> Result<CenterCa, PkiError> {
        let cert_path = dir.join("ca.pem");
        if cert_path.exists() {
            return Err(PkiError::Exists { path: cert_path });
        }
        let key = KeyPair::generate().map_err(invalid("a new CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid("CA parameters"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "onshi");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        validity(&mut params, today(), 3650);
        let cert = params.self_signed(&key).map_err(invalid("the CA certificate"))?;
        write(&dir.join("ca.key"), &key.serialize_pem(), true)?;
        write(&cert_path, &cert.pem(), false)?;
        Ok(CenterCa { dir: dir.to_path_buf(), cert_pem: cert.pem(), key })
    }

    /// Loads the CA from `dir`.
    pub fn load(dir: &Path) -> Result<CenterCa, PkiError> {
        let cert_pem = read(&dir.join("ca.pem"))?;
        let key_path = dir.join("ca.key");
        let key = KeyPair::from_pem(&read(&key_path)?)
            .map_err(|e| PkiError::Invalid { what: key_path.display().to_string(), detail: e.to_string() })?;
        Ok(CenterCa { dir: dir.to_path_buf(), cert_pem, key })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn issue(&self, mut params: CertificateParams, days: u32, stem: &Path, holder: String) -> Result<IssuedPem, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(invalid("the CA certificate"))?;
        let key = KeyPair::generate().map_err(invalid("a new key"))?;
        let serial = random_serial();
        let serial_text = jpki::serial_hex(serial.as_ref());
        params.serial_number = Some(serial);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, today(), days);
        let cert = params.signed_by(&key, &issuer).map_err(invalid("a certificate"))?;
        // Recorded before the files appear: a certificate out in the world is always one that
        // a revocation by its holder's number can find.
        let not_after = today().add_days(i64::from(days)).yyyymmdd();
        self.record_issued(revocation::IssuedCertificate { serial: serial_text, holder, not_after })?;
        let cert_path = self.dir.join(stem).with_extension("pem");
        let key_path = self.dir.join(stem).with_extension("key");
        write(&key_path, &key.serialize_pem(), true)?;
        write(&cert_path, &cert.pem(), false)?;
        Ok(IssuedPem { cert_pem: cert.pem(), key_pem: key.serialize_pem(), cert_path, key_path })
    }

    /// The center's TLS server certificate for the given host names and IP addresses.
    pub fn issue_server(&self, hosts: &[String]) -> Result<IssuedPem, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid("server parameters"))?;
        for host in hosts {
            let san = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into().map_err(invalid("a host name"))?),
            };
            params.subject_alt_names.push(san);
        }
        params.distinguished_name.push(DnType::CommonName, "onshi center");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, DEFAULT_VALIDITY_DAYS, Path::new("server"), "server".into())
    }

    fn client_params(&self, uri: String, common_name: &str) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid("client parameters"))?;
        params.subject_alt_names.push(SanType::URI(uri.try_into().map_err(invalid("the role URI"))?));
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    }

    /// A certificate for a medical institution (the code travels in the certificate).
    pub fn issue_institution(&self, code: &InstitutionCode, name: &str, days: u32) -> Result<IssuedPem, PkiError> {
        let uri = format!("{INSTITUTION_URI}{code}");
        let params = self.client_params(uri.clone(), name)?;
        self.issue(params, days, &Path::new("institutions").join(code.as_str()), revocation::holder_of_uri(&uri))
    }

    /// A certificate for one of the center's operators: it opens the operator's dashboard
    /// from any host, and nothing of the API.
    pub fn issue_operator(&self, name: &str, days: u32) -> Result<IssuedPem, PkiError> {
        if !valid_operator_name(name) {
            return Err(PkiError::Invalid { what: format!("the operator name {name:?}"), detail: "use 1–64 of a-z, 0-9 and -".into() });
        }
        let uri = format!("{OPERATOR_URI}{name}");
        let params = self.client_params(uri.clone(), name)?;
        self.issue(params, days, &Path::new("operators").join(name), revocation::holder_of_uri(&uri))
    }

    /// A certificate for a 公費 payer (it may register recipients for this number only).
    pub fn issue_payer(&self, number: &PublicPayerNumber, name: &str, days: u32) -> Result<IssuedPem, PkiError> {
        let uri = format!("{PAYER_URI}{}", number.as_str());
        let params = self.client_params(uri.clone(), name)?;
        self.issue(params, days, &Path::new("payers").join(number.as_str()), revocation::holder_of_uri(&uri))
    }

    /// A certificate for an insurer (it may upload events for this number only).
    pub fn issue_insurer(&self, number: &InsurerNumber, name: &str, days: u32) -> Result<IssuedPem, PkiError> {
        let uri = format!("{INSURER_URI}{number}");
        let params = self.client_params(uri.clone(), name)?;
        self.issue(params, days, &Path::new("insurers").join(number.as_str()), revocation::holder_of_uri(&uri))
    }
}

/// The TLS configuration of the center: its own certificate, and client certificates checked
/// against the CA when presented. A client without a certificate may still connect (for
/// health, metrics and the API document); the API then refuses it with a clear error rather
/// than a bare handshake failure. No revocation list: for tests; the center uses
/// [`server_tls_config_with_revocation`].
pub fn server_tls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, PkiError> {
    let verifier = revocation::RevocationVerifier::new(ca_pem, None)?;
    tls_config_with_verifier(Arc::new(verifier), cert_pem, key_pem)
}

/// As [`server_tls_config`], with the center CRL at `crl_path` (see
/// [`revocation::RevocationVerifier`]): a revoked client is refused at the handshake, and a
/// newly published list holds from the next connection. Fails when the file exists but is not
/// a list signed by the CA: the center must not start believing nothing is revoked.
pub fn server_tls_config_with_revocation(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    crl_path: &Path,
) -> Result<rustls::ServerConfig, PkiError> {
    let verifier = revocation::RevocationVerifier::new(ca_pem, Some(crl_path))?;
    tls_config_with_verifier(Arc::new(verifier), cert_pem, key_pem)
}

/// As [`server_tls_config_with_revocation`], with a verifier the caller keeps too (the
/// center's server asks it about connections opened before a revocation).
pub fn tls_config_with_verifier(
    verifier: Arc<revocation::RevocationVerifier>,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, PkiError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |what: &str| {
        let what = what.to_string();
        move |e: rustls::pki_types::pem::Error| PkiError::Invalid { what: what.clone(), detail: e.to_string() }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>().map_err(pem_error("the server certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem_error("the server key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid { what: "TLS versions".into(), detail: e.to_string() })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| PkiError::Invalid { what: "the server certificate and key".into(), detail: e.to_string() })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CenterCa::create(dir.path(), "test center").unwrap();
        assert!(matches!(CenterCa::create(dir.path(), "again"), Err(PkiError::Exists { .. })));
        let code = InstitutionCode::parse("3410712362").unwrap();
        let issued = ca.issue_institution(&code, "test clinic", 30).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(issued.cert_pem.as_bytes())
            .map(|d: rustls::pki_types::CertificateDer| d.to_vec())
            .unwrap();
        assert_eq!(peer_identity(&der).unwrap(), PeerIdentity::Institution(code));
        let insurer = InsurerNumber::parse("06130488").unwrap();
        let issued = ca.issue_insurer(&insurer, "test insurer", 30).unwrap();
        let der: rustls::pki_types::CertificateDer = rustls::pki_types::pem::PemObject::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(peer_identity(&der).unwrap(), PeerIdentity::Insurer(insurer));
        let issued = ca.issue_operator("ops-1", 30).unwrap();
        let der: rustls::pki_types::CertificateDer = rustls::pki_types::pem::PemObject::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(peer_identity(&der).unwrap(), PeerIdentity::Operator("ops-1".into()));
        assert!(ca.issue_operator("Ops/../x", 30).is_err(), "a name is a file name and a URI part: refused");
        let server = ca.issue_server(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let der: rustls::pki_types::CertificateDer = rustls::pki_types::pem::PemObject::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        assert!(matches!(peer_identity(&der), Err(PkiError::NoRole)));
        assert!(server_tls_config(ca.cert_pem(), &server.cert_pem, &server.key_pem).is_ok());
        let reloaded = CenterCa::load(dir.path()).unwrap();
        assert_eq!(reloaded.cert_pem(), ca.cert_pem());
        assert!(peer_identity(b"not a certificate").is_err());
    }
}
