//! The certificate authorities the `pki` target checks against, made once per process with the
//! project's own CA functions (the same a deployment runs), and the seeds they yield.

use std::path::Path;
use std::sync::OnceLock;

use onshi_domain::ids::{InstitutionCode, InsurerNumber};
use onshi_pki::card::CardAttributes;
use onshi_pki::jpki::{CardCa, CardValidity, RevokeReason, SignedBinding};
use onshi_pki::revocation::{CenterRevokeReason, RevokeTarget};
use onshi_pki::verify::CardTrust;
use onshi_pki::{CenterCa, DEFAULT_VALIDITY_DAYS};

/// A card CA with one live and one revoked card, and a center CA with an institution and an
/// insurer certificate, one of them revoked; each CA has published its CRL.
pub struct PkiFixture {
    /// The live card's file (JSON text), for a virtual card answering APDUs.
    pub card_file: String,
    /// The card CA's certificate (PEM).
    pub card_ca_pem: String,
    /// The card CA's private key (PEM), to sign binding entries the fuzzer writes.
    card_ca_key_pem: String,
    /// The card CA's CRL (PEM), naming the revoked card.
    pub card_crl_pem: String,
    /// The trust the center builds from the two.
    pub card_trust: CardTrust,
    /// The center CA's certificate (PEM).
    pub center_ca_pem: String,
    /// The center CA's CRL (PEM), naming the revoked insurer certificate.
    pub center_crl_pem: String,
    /// Certificates as DER: the live card, the revoked card, the institution, the insurer.
    pub certificates_der: Vec<Vec<u8>>,
    /// The card CA's binding feed, one signed line each.
    pub binding_lines: Vec<String>,
}

fn fail(what: &str) -> impl Fn(onshi_pki::PkiError) -> String + '_ {
    move |e| format!("the pki fuzz fixture could not {what}: {e}")
}

impl PkiFixture {
    /// The fixture of this process, made on first use.
    pub fn get() -> &'static PkiFixture {
        static FIXTURE: OnceLock<PkiFixture> = OnceLock::new();
        FIXTURE.get_or_init(|| PkiFixture::create().unwrap_or_else(|e| panic!("{e}")))
    }

    fn create() -> Result<PkiFixture, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
        let card_dir = dir.path().join("jpki");
        let center_dir = dir.path().join("center");
        std::fs::create_dir_all(&card_dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&center_dir).map_err(|e| e.to_string())?;

        let card_ca = CardCa::create(&card_dir).map_err(fail("create the card CA"))?;
        let attributes = CardAttributes {
            name: "試験 花子".into(),
            name_kana: "ｼｹﾝ ﾊﾅｺ".into(),
            birth_date: "19800101".into(),
            sex: "2".into(),
            address: "東京都千代田区".into(),
        };
        let today = onshi_pki::today();
        let mut certificates_der = Vec::new();
        for (n, person) in ["p-fuzz-1", "p-fuzz-2"].iter().enumerate() {
            let out = dir.path().join(format!("card-{n}.json"));
            let card = card_ca
                .issue_card(attributes.clone(), person, Some("1234"), CardValidity::Days { from: today, days: 365 }, &out)
                .map_err(fail("issue a card"))?;
            certificates_der.push(card.certificate_der().map_err(fail("read a card certificate"))?);
            if n == 1 {
                card_ca.revoke(card.serial(), RevokeReason::Lost).map_err(fail("revoke a card"))?;
            }
        }
        let card_file = read(&dir.path().join("card-0.json"))?;
        let crl_path = card_ca.publish_crl(7).map_err(fail("publish the card CRL"))?;
        let card_crl_pem = read(&crl_path)?;
        let card_ca_pem = card_ca.cert_pem().to_string();
        let card_ca_key_pem = read(&card_dir.join("ca.key"))?;
        let card_trust = CardTrust::load(&card_ca_pem, &card_crl_pem).map_err(fail("load the card CRL"))?;
        let feed = read(&card_dir.join(onshi_pki::jpki::BINDING_FEED))?;
        let binding_lines = feed.lines().map(str::to_string).collect();

        let center = CenterCa::create(&center_dir, "onshi fuzz CA").map_err(fail("create the center CA"))?;
        let institution = InstitutionCode::parse("1311234569").map_err(|e| e.to_string())?;
        let insurer = InsurerNumber::parse("06130488").map_err(|e| e.to_string())?;
        let issued = center.issue_institution(&institution, "試験医院", DEFAULT_VALIDITY_DAYS).map_err(fail("issue an institution"))?;
        certificates_der.push(onshi_pki::card::certificate_der(&issued.cert_pem).map_err(fail("read a certificate"))?);
        let issued = center.issue_insurer(&insurer, "試験健保", DEFAULT_VALIDITY_DAYS).map_err(fail("issue an insurer"))?;
        certificates_der.push(onshi_pki::card::certificate_der(&issued.cert_pem).map_err(fail("read a certificate"))?);
        let revoked =
            center.revoke(&RevokeTarget::Insurer(insurer), CenterRevokeReason::KeyCompromise, 7).map_err(fail("revoke the insurer"))?;
        let center_crl_pem = read(&revoked.crl.path)?;

        Ok(PkiFixture {
            card_file,
            card_ca_pem,
            card_ca_key_pem,
            card_crl_pem,
            card_trust,
            center_ca_pem: center.cert_pem().to_string(),
            center_crl_pem,
            certificates_der,
            binding_lines,
        })
    }

    /// A binding-feed line carrying `entry` as its signed text, signed with the card CA's key.
    pub fn signed_binding_line(&self, entry: &str) -> String {
        let signature = onshi_pki::card::sign_pem(&self.card_ca_key_pem, entry.as_bytes()).expect("the card CA key signs");
        let signed = SignedBinding { entry: entry.to_string(), signature: onshi_domain::hex::encode(&signature) };
        serde_json::to_string(&signed).expect("a signed binding serialises")
    }

    /// Inputs of the `pki` target made from this fixture (its first byte chooses the kind of
    /// input, see [`crate::pki`]), named for a corpus folder.
    pub fn seeds(&self) -> Vec<(String, Vec<u8>)> {
        let mut seeds = Vec::new();
        let mut add = |name: String, selector: u8, body: &[u8]| {
            let mut input = vec![selector];
            input.extend_from_slice(body);
            seeds.push((name, input));
        };
        for (n, der) in self.certificates_der.iter().enumerate() {
            add(format!("gen-certificate-{n}.der"), 0, der);
            add(format!("gen-certificate-{n}.pem"), 2, pem("CERTIFICATE", der).as_bytes());
        }
        for (name, crl_pem) in [("card", &self.card_crl_pem), ("center", &self.center_crl_pem)] {
            use rustls_pki_types::pem::PemObject as _;
            if let Ok(der) = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()) {
                add(format!("gen-crl-{name}.der"), 1, &der);
            }
            add(format!("gen-crl-{name}.pem"), 2, crl_pem.as_bytes());
        }
        add("gen-ca-card.pem".into(), 2, self.card_ca_pem.as_bytes());
        for (n, line) in self.binding_lines.iter().enumerate() {
            add(format!("gen-binding-{n}.jsonl"), 3, line.as_bytes());
            if let Ok(signed) = serde_json::from_str::<SignedBinding>(line) {
                add(format!("gen-binding-entry-{n}.json"), 4, signed.entry.as_bytes());
            }
        }
        seeds
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("the pki fuzz fixture could not read {}: {e}", path.display()))
}

/// `der` as a PEM block with `label`.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let bytes = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                base64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
