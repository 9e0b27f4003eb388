//! Revocation of the center's own client certificates (institutions, insurers): a stolen
//! clinic key stops working at the TLS handshake.
//!
//! Files under the center CA directory, beside `ca.pem`:
//! `issued.json` (every certificate the CA issued: serial, holder, end of validity, so that a
//! revocation by 医療機関コード also reaches certificates that were replaced since),
//! `revoked.json` (what was revoked, why and when, and the number of the last CRL) and
//! `crl.pem` (the signed list the center's TLS verifier uses; its CRL number only grows).
//!
//! [`RevocationVerifier`] is the center's client-certificate verifier: it looks at `crl.pem`
//! before each handshake and takes a newly published list into force without a restart. A
//! list that does not load (unreadable, not signed by the CA, an older CRL number) leaves the
//! previous one in force and is logged; at start an invalid list is an error.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use onshi_domain::Date;
use onshi_domain::ids::{InstitutionCode, InsurerNumber};
use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber};
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::jpki::serial_hex;
use crate::verify::signature_valid;
use crate::{CenterCa, INSTITUTION_URI, INSURER_URI, PkiError, invalid, read, today, write};

/// The signed list the center's TLS verifier uses, in the PKI directory.
pub const CRL_FILE: &str = "crl.pem";
const REVOKED_FILE: &str = "revoked.json";
const ISSUED_FILE: &str = "issued.json";
/// Days until a CRL's next update unless told otherwise: a week, so that a list published
/// at every revocation is never stale in practice.
pub const CRL_NEXT_UPDATE_DAYS: u32 = 7;

/// One certificate the CA issued, as `issued.json` keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// Lower-case hex, no leading zeros.
    pub serial: String,
    /// `institution:<code>`, `insurer:<number>` or `server`.
    pub holder: String,
    /// `YYYYMMDD`.
    pub not_after: String,
}

/// Why a center certificate is revoked (RFC 5280 reasons that fit a clinic or an insurer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CenterRevokeReason {
    /// The key was stolen or may have been copied (鍵の漏えい): the default.
    KeyCompromise,
    /// Replaced by a new certificate.
    Superseded,
    /// The institution closed or the insurer merged (廃止).
    CessationOfOperation,
    Unspecified,
}

impl CenterRevokeReason {
    fn crl_reason(self) -> RevocationReason {
        match self {
            CenterRevokeReason::KeyCompromise => RevocationReason::KeyCompromise,
            CenterRevokeReason::Superseded => RevocationReason::Superseded,
            CenterRevokeReason::CessationOfOperation => RevocationReason::CessationOfOperation,
            CenterRevokeReason::Unspecified => RevocationReason::Unspecified,
        }
    }
}

/// One revocation as the CA keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CenterRevocation {
    pub serial: String,
    /// Whose certificate it was, when known (see [`IssuedCertificate::holder`]).
    pub holder: Option<String>,
    pub reason: CenterRevokeReason,
    /// `YYYYMMDD`.
    pub revoked_on: String,
}

/// `revoked.json`: the revocations and the number of the last published CRL.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterRevocations {
    pub crl_number: u64,
    pub revoked: Vec<CenterRevocation>,
}

/// Which certificates to revoke.
#[derive(Clone, Debug)]
pub enum RevokeTarget {
    /// Every certificate issued to this institution.
    Institution(InstitutionCode),
    /// Every certificate issued to this insurer.
    Insurer(InsurerNumber),
    /// One certificate (hex, as `openssl x509 -serial` prints it).
    Serial(String),
}

/// What [`CenterCa::revoke`] did.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// Serials revoked now.
    pub newly: Vec<String>,
    /// Serials of the target that were revoked before.
    pub already: Vec<String>,
    pub crl: PublishedCrl,
}

/// A CRL written to the PKI directory.
#[derive(Clone, Debug)]
pub struct PublishedCrl {
    pub path: PathBuf,
    pub number: u64,
    pub revoked_count: usize,
    /// `YYYYMMDD`.
    pub next_update: String,
}

fn normalise_serial(hex: &str) -> Result<String, PkiError> {
    let bytes = onshi_domain::hex::decode(&hex.trim().replace(':', "").to_ascii_lowercase())
        .filter(|b| b.iter().any(|&x| x != 0))
        .ok_or_else(|| PkiError::Invalid { what: format!("serial {hex:?}"), detail: "not a hexadecimal serial number".into() })?;
    Ok(serial_hex(&bytes))
}

/// The serial (hex) of a DER certificate.
pub fn serial_of_der(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Invalid { what: "a certificate".into(), detail: e.to_string() })?;
    Ok(serial_hex(cert.raw_serial()))
}

/// The serial (hex) of a PEM certificate.
pub fn serial_of_pem(pem: &str) -> Result<String, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Invalid { what: "a certificate".into(), detail: e.to_string() })?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| PkiError::Invalid { what: "a certificate".into(), detail: e.to_string() })?;
    Ok(serial_hex(cert.raw_serial()))
}

fn json_error(path: &Path) -> impl Fn(serde_json::Error) -> PkiError + '_ {
    move |e| PkiError::Invalid { what: path.display().to_string(), detail: e.to_string() }
}

impl CenterCa {
    /// Every certificate this CA recorded issuing (none before `issued.json` existed).
    pub fn issued(&self) -> Result<Vec<IssuedCertificate>, PkiError> {
        let path = self.dir.join(ISSUED_FILE);
        if !path.exists() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&read(&path)?).map_err(json_error(&path))
    }

    /// Appends to `issued.json`; called for every certificate before its files are written.
    pub(crate) fn record_issued(&self, record: IssuedCertificate) -> Result<(), PkiError> {
        let path = self.dir.join(ISSUED_FILE);
        let mut all = self.issued()?;
        all.push(record);
        write(&path, &serde_json::to_string_pretty(&all).map_err(json_error(&path))?, false)
    }

    /// The revocations so far (none before the first).
    pub fn revocations(&self) -> Result<CenterRevocations, PkiError> {
        let path = self.dir.join(REVOKED_FILE);
        if !path.exists() {
            return Ok(CenterRevocations::default());
        }
        serde_json::from_str(&read(&path)?).map_err(json_error(&path))
    }

    fn holder_serials(&self, holder: &str, current: &Path) -> Result<Vec<String>, PkiError> {
        let mut serials: Vec<String> = self.issued()?.into_iter().filter(|i| i.holder == holder).map(|i| i.serial).collect();
        // A certificate issued before `issued.json` existed is still found through its file.
        if current.exists() {
            let serial = serial_of_pem(&read(current)?)?;
            if !serials.contains(&serial) {
                serials.push(serial);
            }
        }
        Ok(serials)
    }

    /// Records the revocation of `target`'s certificates and publishes a new CRL at once, so
    /// that the running center refuses them from its next handshake.
    pub fn revoke(&self, target: &RevokeTarget, reason: CenterRevokeReason, next_update_days: u32) -> Result<Revoked, PkiError> {
        let (serials, holder) = match target {
            RevokeTarget::Institution(code) => {
                let holder = format!("institution:{code}");
                let current = self.dir.join("institutions").join(code.as_str()).with_extension("pem");
                (self.holder_serials(&holder, &current)?, Some(holder))
            }
            RevokeTarget::Insurer(number) => {
                let holder = format!("insurer:{number}");
                let current = self.dir.join("insurers").join(number.as_str()).with_extension("pem");
                (self.holder_serials(&holder, &current)?, Some(holder))
            }
            RevokeTarget::Serial(hex) => {
                let serial = normalise_serial(hex)?;
                let holder = self.issued()?.into_iter().find(|i| i.serial == serial).map(|i| i.holder);
                (vec![serial], holder)
            }
        };
        if serials.is_empty() {
            return Err(PkiError::Invalid {
                what: format!("{target:?}"),
                detail: "this CA has issued no certificate to it; check the number".into(),
            });
        }
        let mut revocations = self.revocations()?;
        let (mut newly, mut already) = (Vec::new(), Vec::new());
        for serial in serials {
            if revocations.revoked.iter().any(|r| r.serial == serial) {
                already.push(serial);
                continue;
            }
            revocations.revoked.push(CenterRevocation {
                serial: serial.clone(),
                holder: holder.clone(),
                reason,
                revoked_on: today().yyyymmdd(),
            });
            newly.push(serial);
        }
        let path = self.dir.join(REVOKED_FILE);
        write(&path, &serde_json::to_string_pretty(&revocations).map_err(json_error(&path))?, false)?;
        let crl = self.publish_crl(next_update_days)?;
        Ok(Revoked { newly, already, crl })
    }

    /// Signs and writes `crl.pem` with every revocation, under the next CRL number. The file
    /// is written to a temporary name and renamed, so the center never reads half a list.
    pub fn publish_crl(&self, next_update_days: u32) -> Result<PublishedCrl, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(invalid("the CA certificate"))?;
        let mut revocations = self.revocations()?;
        revocations.crl_number += 1;
        let now = today();
        let at = |d: Date| rcgen::date_time_ymd(i32::from(d.year()), d.month(), d.day());
        let mut revoked = Vec::new();
        for r in &revocations.revoked {
            let bytes = onshi_domain::hex::decode(&r.serial)
                .ok_or_else(|| PkiError::Invalid { what: format!("serial {:?} in {REVOKED_FILE}", r.serial), detail: "not hex".into() })?;
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: at(Date::parse_yyyymmdd(&r.revoked_on).unwrap_or(now)),
                reason_code: Some(r.reason.crl_reason()),
                invalidity_date: None,
            });
        }
        let next_update = now.add_days(i64::from(next_update_days.max(1)));
        let params = CertificateRevocationListParams {
            this_update: at(now.add_days(-1)),
            next_update: at(next_update),
            crl_number: SerialNumber::from(revocations.crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer).map_err(invalid("the CRL"))?;
        let pem = crl.pem().map_err(invalid("the CRL"))?;
        // The number is recorded before the list appears, so a crash between the two can only
        // skip a number, never publish one twice.
        let state = self.dir.join(REVOKED_FILE);
        write(&state, &serde_json::to_string_pretty(&revocations).map_err(json_error(&state))?, false)?;
        let path = self.dir.join(CRL_FILE);
        let temporary = self.dir.join(format!(".{CRL_FILE}.tmp"));
        write(&temporary, &pem, false)?;
        std::fs::rename(&temporary, &path).map_err(|source| PkiError::Write { path: path.clone(), source })?;
        Ok(PublishedCrl {
            path,
            number: revocations.crl_number,
            revoked_count: revocations.revoked.len(),
            next_update: next_update.yyyymmdd(),
        })
    }
}

/// The holder string of an issued certificate from its role URI.
pub(crate) fn holder_of_uri(uri: &str) -> String {
    if let Some(code) = uri.strip_prefix(INSTITUTION_URI) {
        format!("institution:{code}")
    } else if let Some(number) = uri.strip_prefix(INSURER_URI) {
        format!("insurer:{number}")
    } else {
        uri.to_string()
    }
}

/// A CRL that was checked against the CA: issuer, signature, number.
#[derive(Clone, Debug)]
pub struct CheckedCrl {
    der: CertificateRevocationListDer<'static>,
    /// When the CA promised the next list (`None`: no date in the list).
    pub next_update: Option<Date>,
    /// The CRL number (big-endian bytes without leading zeros, compared as a number).
    pub number: Vec<u8>,
    /// Revoked serials (hex).
    pub revoked: HashSet<String>,
}

fn number_greater(a: &[u8], b: &[u8]) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// Reads `crl_pem` and checks that the center CA `ca_pem` signed it and that it has a number.
pub fn check_crl(ca_pem: &str, crl_pem: &str) -> Result<CheckedCrl, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let bad = |detail: String| PkiError::Crl { path: PathBuf::from(CRL_FILE), detail };
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| bad(format!("the CA certificate: {e}")))?;
    let (_, ca) = X509Certificate::from_der(&ca_der).map_err(|e| bad(format!("the CA certificate: {e}")))?;
    let der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let (_, crl) = CertificateRevocationList::from_der(&der).map_err(|e| bad(e.to_string()))?;
    if crl.tbs_cert_list.issuer.as_raw() != ca.subject().as_raw()
        || !signature_valid(&ca.public_key().subject_public_key.data, crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
    {
        return Err(bad("it is not signed by this center's CA; publish it again with `onshi center pki revoke`".into()));
    }
    let number = crl.crl_number().ok_or_else(|| bad("it has no CRL number".into()))?.to_bytes_be();
    let first = number.iter().position(|&b| b != 0).unwrap_or(number.len());
    let revoked = crl.iter_revoked_certificates().map(|r| serial_hex(r.raw_serial())).collect();
    let next_update = crl.next_update().and_then(|t| {
        let t = t.to_datetime();
        Date::new(u16::try_from(t.year()).ok()?, u8::from(t.month()), t.day())
    });
    Ok(CheckedCrl { der, next_update, number: number[first..].to_vec(), revoked })
}

/// How `crl.pem` looked when last read: a change means a new list to look at. The inode is
/// part of it because file times tick coarsely (a few milliseconds) and two lists can have one
/// length; [`CenterCa::publish_crl`] renames a new file into place, so each publication has
/// a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp { modified: metadata.modified().ok(), len: metadata.len(), inode })
}

/// The list in force and the verifier built from it.
struct InForce {
    verifier: Arc<dyn ClientCertVerifier>,
    /// The file as last looked at (loaded or refused), so a refused list is logged once.
    seen: Option<FileStamp>,
    number: Option<Vec<u8>>,
    /// Serials on the list in force, for connections opened before it ([`RevocationVerifier::is_revoked`]).
    revoked: HashSet<String>,
}

/// The center's client-certificate verifier: the CA's webpki verifier, rebuilt with the CA's
/// CRL whenever `crl.pem` changes.
///
/// Why a wrapping verifier rather than rebuilding the `ServerConfig` in the accept loop:
/// rustls asks the verifier on every handshake, so the wrapper sees a new list on the very
/// next connection without the server knowing about CRLs, and sessions, the certificate and
/// the ALPN settings stay as they were. Why the file is looked at on every handshake instead
/// of once a second: a `stat` costs about a microsecond next to a handshake's ECDSA, and a
/// revocation then holds from the next connection, which an operator (and a test) can rely
/// on instead of waiting.
pub struct RevocationVerifier {
    /// `None`: no list is ever used (tests of the plain TLS set-up).
    crl_path: Option<PathBuf>,
    ca_pem: String,
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The CA's subject, offered to clients; the same whatever the list.
    hints: Vec<DistinguishedName>,
    in_force: RwLock<InForce>,
}

impl std::fmt::Debug for RevocationVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationVerifier").field("crl_path", &self.crl_path).finish_non_exhaustive()
    }
}

fn build_verifier(
    roots: &Arc<rustls::RootCertStore>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    crl: Option<&CheckedCrl>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    let mut builder = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        // Anonymous clients still connect and get CLIENT_CERTIFICATE_REQUIRED from the API.
        .allow_unauthenticated();
    if let Some(crl) = crl {
        // The chain is the client certificate and the CA itself: only the first can be revoked.
        builder = builder.with_crls([crl.der.clone()]).only_check_end_entity_revocation();
    }
    builder.build().map_err(|e| PkiError::Invalid { what: "the client verifier".into(), detail: e.to_string() })
}

impl RevocationVerifier {
    /// The verifier for the CA `ca_pem` with the list at `crl_path`. A missing file means no
    /// revocations yet; a file that exists must be a valid list signed by the CA.
    pub fn new(ca_pem: &str, crl_path: Option<&Path>) -> Result<RevocationVerifier, PkiError> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| PkiError::Invalid { what: "the CA certificate".into(), detail: e.to_string() })?;
            roots.add(cert).map_err(|e| PkiError::Invalid { what: "the CA certificate".into(), detail: e.to_string() })?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let seen = crl_path.and_then(stamp);
        let crl = match (seen, crl_path) {
            (Some(_), Some(path)) => {
                let crl = check_crl(ca_pem, &read(path)?).map_err(|e| match e {
                    PkiError::Crl { detail, .. } => PkiError::Crl {
                        path: path.to_path_buf(),
                        detail: format!("{detail}; the center does not start on a list it cannot check"),
                    },
                    other => other,
                })?;
                warn_if_stale(path, &crl);
                Some(crl)
            }
            _ => None,
        };
        let verifier = build_verifier(&roots, &provider, crl.as_ref())?;
        Ok(RevocationVerifier {
            crl_path: crl_path.map(Path::to_path_buf),
            ca_pem: ca_pem.to_string(),
            hints: roots.subjects(),
            roots,
            provider,
            in_force: RwLock::new(InForce {
                verifier,
                seen,
                revoked: crl.as_ref().map(|c| c.revoked.clone()).unwrap_or_default(),
                number: crl.map(|c| c.number),
            }),
        })
    }

    /// The verifier in force, after taking in a changed `crl.pem` if it is valid and newer.
    fn refreshed(&self) -> Arc<dyn ClientCertVerifier> {
        let Some(crl_path) = &self.crl_path else { return self.in_force() };
        let now = stamp(crl_path);
        {
            let in_force = self.in_force.read().unwrap_or_else(|p| p.into_inner());
            if in_force.seen == now {
                return in_force.verifier.clone();
            }
        }
        let mut in_force = self.in_force.write().unwrap_or_else(|p| p.into_inner());
        if in_force.seen == now {
            return in_force.verifier.clone();
        }
        in_force.seen = now;
        if now.is_none() {
            // A deleted list does not restore revoked certificates.
            tracing::error!(path = %crl_path.display(), "the center CRL disappeared; the previous list stays in force");
            return in_force.verifier.clone();
        }
        let loaded = read(crl_path).and_then(|pem| check_crl(&self.ca_pem, &pem));
        match loaded {
            Err(e) => tracing::error!(path = %crl_path.display(), error = %e, "new center CRL refused; the previous list stays in force"),
            Ok(crl) if in_force.number.as_ref().is_some_and(|n| !number_greater(&crl.number, n)) => tracing::error!(
                path = %crl_path.display(),
                "new center CRL refused: its number is not above the one in force (an older list cannot undo revocations); the previous list stays in force"
            ),
            Ok(crl) => match build_verifier(&self.roots, &self.provider, Some(&crl)) {
                Ok(verifier) => {
                    tracing::info!(revoked = crl.revoked.len(), "center CRL taken into force");
                    warn_if_stale(crl_path, &crl);
                    in_force.verifier = verifier;
                    in_force.number = Some(crl.number);
                    in_force.revoked = crl.revoked;
                }
                Err(e) => tracing::error!(error = %e, "new center CRL refused; the previous list stays in force"),
            },
        }
        in_force.verifier.clone()
    }

    /// Whether the certificate with this serial (hex) is on the list in force, after taking
    /// in a changed `crl.pem`: for requests on connections opened before a revocation.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.refreshed();
        self.in_force.read().unwrap_or_else(|p| p.into_inner()).revoked.contains(serial)
    }

    fn in_force(&self) -> Arc<dyn ClientCertVerifier> {
        self.in_force.read().unwrap_or_else(|p| p.into_inner()).verifier.clone()
    }
}

/// Logs a list past its next update. It stays in force: it is the center's own file, not one
/// fetched from elsewhere, so a stale list means nobody published since, not that a newer list
/// is being withheld; refusing every client for it would stop reception everywhere.
fn warn_if_stale(path: &Path, crl: &CheckedCrl) {
    if crl.next_update.is_some_and(|next| next < today()) {
        tracing::warn!(path = %path.display(), "the center CRL is past its next update; publish it again with `onshi center pki crl`");
    }
}

impl ClientCertVerifier for RevocationVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.refreshed().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.in_force().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.in_force().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.in_force().supported_verify_schemes()
    }
}

/// Whether a connection failed because the center revoked this client's certificate: the
/// server's `certificate_revoked` alert, found anywhere in the error's chain (reqwest, hyper
/// and tokio-rustls wrap it in I/O errors).
pub fn revoked_by_peer(error: &(dyn std::error::Error + 'static)) -> bool {
    alert_in_chain(error) == Some(rustls::AlertDescription::CertificateRevoked)
}

/// The TLS alert the peer sent, if the error came from one.
pub fn alert_in_chain(error: &(dyn std::error::Error + 'static)) -> Option<rustls::AlertDescription> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(rustls::Error::AlertReceived(alert)) = error.downcast_ref::<rustls::Error>() {
            return Some(*alert);
        }
        // An io::Error's `source()` skips the error it wraps; look inside it as well.
        if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(alert) = alert_in_chain(inner)
        {
            return Some(alert);
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_by_code_reaches_every_certificate_of_the_code_and_the_crl_number_grows() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CenterCa::create(dir.path(), "test center").unwrap();
        let code = InstitutionCode::parse("3410712362").unwrap();
        let first = serial_of_pem(&ca.issue_institution(&code, "clinic", 30).unwrap().cert_pem).unwrap();
        let second = serial_of_pem(&ca.issue_institution(&code, "clinic", 30).unwrap().cert_pem).unwrap();
        let other = InstitutionCode::parse("1311234569").unwrap();
        let untouched = serial_of_pem(&ca.issue_institution(&other, "clinic", 30).unwrap().cert_pem).unwrap();

        let revoked = ca.revoke(&RevokeTarget::Institution(code.clone()), CenterRevokeReason::KeyCompromise, 7).unwrap();
        assert_eq!(revoked.newly, vec![first.clone(), second.clone()], "the replaced certificate too");
        assert_eq!(revoked.crl.number, 1);
        let crl = check_crl(ca.cert_pem(), &std::fs::read_to_string(&revoked.crl.path).unwrap()).unwrap();
        assert_eq!(crl.revoked, HashSet::from([first.clone(), second.clone()]));
        assert!(!crl.revoked.contains(&untouched));

        let again = ca.revoke(&RevokeTarget::Serial(first.to_uppercase()), CenterRevokeReason::Unspecified, 7).unwrap();
        assert!(again.newly.is_empty() && again.already == vec![first]);
        assert_eq!(again.crl.number, 2, "every publication has a higher number");
        let newer = check_crl(ca.cert_pem(), &std::fs::read_to_string(&again.crl.path).unwrap()).unwrap();
        assert!(number_greater(&newer.number, &crl.number));
        assert!(
            ca.revoke(&RevokeTarget::Insurer(InsurerNumber::parse("06130488").unwrap()), CenterRevokeReason::KeyCompromise, 7).is_err()
        );
        assert!(ca.revoke(&RevokeTarget::Serial("zz".into()), CenterRevokeReason::KeyCompromise, 7).is_err());
        assert_eq!(newer.next_update, Some(today().add_days(7)));
        let republished = ca.publish_crl(30).unwrap();
        assert_eq!((republished.number, republished.revoked_count), (3, 2), "the same revocations under a new number");
    }

    #[test]
    fn a_crl_of_another_ca_is_refused_at_start_and_does_not_replace_the_one_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CenterCa::create(&dir.path().join("center"), "test center").unwrap();
        let other = CenterCa::create(&dir.path().join("other"), "other center").unwrap();
        let foreign = other.publish_crl(7).unwrap();
        assert!(check_crl(ca.cert_pem(), &std::fs::read_to_string(&foreign.path).unwrap()).is_err());
        let path = dir.path().join("center").join(CRL_FILE);
        std::fs::copy(&foreign.path, &path).unwrap();
        assert!(RevocationVerifier::new(ca.cert_pem(), Some(&path)).is_err(), "the center refuses to start on it");

        ca.publish_crl(7).unwrap();
        let verifier = RevocationVerifier::new(ca.cert_pem(), Some(&path)).unwrap();
        let number = verifier.in_force.read().unwrap().number.clone();
        assert_eq!(number, Some(vec![1]));
        // Replaced by a foreign list, and then by an older list of its own CA: both refused.
        let older = std::fs::read_to_string(&path).unwrap();
        std::fs::copy(&foreign.path, &path).unwrap();
        verifier.refreshed();
        assert_eq!(verifier.in_force.read().unwrap().number, Some(vec![1]));
        ca.publish_crl(7).unwrap();
        verifier.refreshed();
        assert_eq!(verifier.in_force.read().unwrap().number, Some(vec![2]));
        std::fs::write(&path, format!("{older}\n")).unwrap();
        verifier.refreshed();
        assert_eq!(verifier.in_force.read().unwrap().number, Some(vec![2]), "no rollback to an older list");
    }
}
