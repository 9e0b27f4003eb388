//! The fuzz targets of onshi: one function per parser that reads outside input, each taking
//! arbitrary bytes. The property every one of them checks is the same: the parser answers with
//! a value or a clear error, and never panics, loops or allocates without bound on any input.
//!
//! Layout:
//! - [`request_xml`]: a request file dropped into the gateway's `req/` (decode, parse within
//!   [`onshi_gateway::xml::Limits`], read by every kind), and the redaction of a refused one.
//! - [`uke`]: a month's claim file (UKE) as the receipt pre-check reads it.
//! - [`event_line`]: one line of an insurer's JSON Lines upload, parsed and validated into a
//!   domain event as the center's import does.
//! - [`api_json`]: the JSON bodies the center's API reads (verification by numbers, batch and
//!   the card path), with the checks the center applies before touching the register.
//! - [`pki`]: certificates, CRLs and binding-feed lines (the card CA's and the center CA's).
//! - [`gateway_toml`]: the gateway's configuration file.
//! - [`appointments_csv`]: an appointment list for 一括照会.
//! - [`subsidy_line`]: a 公費 payer's upload (JSON Lines), line by line as the center reads it.
//! - [`card_apdu`]: the card path's APDUs, both ways (commands to the virtual card, responses
//!   a card sends the gateway), and the framing of vpcd's socket.
//!
//! Why the bodies live in a library crate rather than in `fuzz/`: `cargo test --workspace`
//! builds and runs them (over the seeds and a few thousand deterministic mutations, see
//! `tests/`), so CI keeps them compiling and exercises each briefly; the cargo-fuzz project in
//! `fuzz/` only wraps each in `fuzz_target!` for long runs.

#![deny(missing_docs)]

pub mod mutate;
mod pki_fixture;

pub use pki_fixture::PkiFixture;

use onshi_api::card as wire_card;
use onshi_api::events::InsurerEvent;
use onshi_api::verify::{BatchVerifyRequest, VerifyNumberRequest};
use onshi_domain::Date;
use onshi_domain::ids::InstitutionCode;
use onshi_gateway::request::{self, Kind, Request};
use onshi_gateway::xml;

/// The body of a fuzz target: any bytes in, nothing out, never a panic.
pub type Target = fn(&[u8]);

/// Every target by the name its cargo-fuzz binary and its corpus folder carry.
pub const TARGETS: [(&str, Target); 10] = [
    ("request_xml", request_xml),
    ("uke", uke),
    ("event_line", event_line),
    ("api_json", api_json),
    ("pki", pki),
    ("gateway_toml", gateway_toml),
    ("appointments_csv", appointments_csv),
    ("card_apdu", card_apdu),
    ("medical_line", medical_line),
    ("subsidy_line", subsidy_line),
];

/// The date of care the checks are made for: fixed, so that a run is reproducible.
fn today() -> Date {
    Date::new(2026, 12, 1).expect("a valid date")
}

/// A request file of the gateway, read as each kind of request (the kind comes from the file
/// name, which the sender also chooses). What the gateway does next with a request it accepted
/// (the wire request it sends, the `.err` charset, the redaction of a My Number) is done too.
pub fn request_xml(data: &[u8]) {
    let _ = xml::err_charset(data);
    for kind in [
        Kind::Single,
        Kind::BulkUpload,
        Kind::BulkDownload,
        Kind::Drugs,
        Kind::Checkups,
        Kind::RegisterReference,
        Kind::RegisterReferences,
        Kind::RegisteredReferences,
        Kind::WelfareMonth,
        Kind::WelfareResults,
        Kind::HomeVisitList,
        Kind::HomeVisitResults,
        Kind::OnlineList,
        Kind::OnlineResults,
    ] {
        match request::read(kind, data) {
            Ok((request, _charset)) => {
                let header = request.header();
                match &request {
                    Request::Single { search, .. } => {
                        let wire = search.to_request(header.confirmation_date.as_deref());
                        let _ = onshi_center::verify::parse_request(&wire, today());
                    }
                    Request::BulkUpload { entries, .. } => {
                        for entry in entries {
                            let _ = entry.to_request(header.confirmation_date.as_deref());
                        }
                    }
                    Request::Register { entries, .. } => {
                        // What the gateway decides for each against what it has seen (nobody here).
                        for entry in entries {
                            let people = onshi_gateway::reference::people_in(&[], entry);
                            let _ = onshi_gateway::reference::decide(entry, &people);
                        }
                    }
                    // The month as the center reads it.
                    Request::WelfareMonth { month, .. } => {
                        let _ = onshi_center::subsidy::parse_month(month);
                    }
                    Request::BulkDownload { .. }
                    | Request::Medical { .. }
                    | Request::Registered { .. }
                    | Request::WelfareResults { .. }
                    | Request::HomeList { .. }
                    | Request::HomeResults { .. } => {}
                }
            }
            Err(error) => {
                if let Some(element) = error.my_number_element() {
                    let _ = xml::redact(data, element);
                }
                let _ = error.to_string();
            }
        }
    }
    let _ = xml::redact(data, "InsuredIdentificationNumber");
}

/// A claim file (UKE), with what the pre-check reads from it before asking the center.
pub fn uke(data: &[u8]) {
    if let Ok(file) = onshi_receipt::uke::read(data) {
        let _ = file.points_total();
        let _ = file.has_errors();
        for claim in &file.claims {
            let _ = claim.care_span();
            let _ = claim.branch();
        }
    }
}

/// One line of an insurer's upload, taken as the center's import takes it (see
/// `onshi_center::import`): UTF-8, trimmed, at most [`onshi_center::import::LINE_BYTES_MAX`]
/// bytes, JSON into the wire event, then validated into a domain event.
pub fn event_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() || data.len() > onshi_center::import::LINE_BYTES_MAX {
        return;
    }
    let Ok(wire) = serde_json::from_str::<InsurerEvent>(text) else { return };
    let _ = onshi_center::validate::coverage_event(&wire);
}

/// One line of a medical-information file (`onshi center import-medical`): the import's line
/// path, the bounded read, UTF-8, JSON into `MedicalRecord`, and the record's checks.
pub fn medical_line(data: &[u8]) {
    let mut reader = data;
    let mut line = Vec::new();
    while onshi_center::import::read_line_bounded(&mut reader, &mut line, onshi_center::import::LINE_BYTES_MAX).unwrap_or(0) > 0 {
        if line.len() > onshi_center::import::LINE_BYTES_MAX {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&line) else { continue };
        if let Ok(record) = serde_json::from_str::<onshi_api::medical::MedicalRecord>(text.trim()) {
            let _ = onshi_center::medical::row_of(&record);
        }
    }
}

/// A 公費 payer's upload (`/v1/payer/events`): the bounded line read, UTF-8, JSON into the wire
/// event, and the event's checks (as `onshi_center::subsidy::import_subsidy_jsonl` does before
/// the register is written).
pub fn subsidy_line(data: &[u8]) {
    let mut reader = data;
    let mut line = Vec::new();
    while onshi_center::import::read_line_bounded(&mut reader, &mut line, onshi_center::import::LINE_BYTES_MAX).unwrap_or(0) > 0 {
        if line.len() > onshi_center::import::LINE_BYTES_MAX {
            continue;
        }
        if let Ok(event) = serde_json::from_slice::<onshi_api::subsidy::SubsidyEvent>(&line) {
            let _ = onshi_center::validate::subsidy_event(&event);
        }
    }
}

/// A JSON body sent to the center, read as every body type the API accepts, with the checks
/// the center makes on it before the register is asked.
pub fn api_json(data: &[u8]) {
    let certified = InstitutionCode::parse("1311234569").expect("a valid code");
    if let Ok(request) = serde_json::from_slice::<VerifyNumberRequest>(data) {
        let _ = onshi_center::verify::check_institution(request.institution_code.as_deref(), &certified);
        let _ = onshi_center::verify::parse_request(&request, today());
    }
    if let Ok(search) = serde_json::from_slice::<onshi_api::verify::VerifyAttributesRequest>(data) {
        let _ = onshi_center::verify::check_institution(search.institution_code.as_deref(), &certified);
        let _ = onshi_center::attributes::parse_attributes(&search, today());
    }
    let _ = serde_json::from_slice::<onshi_api::card::HomeReverify>(data);
    let _ = serde_json::from_slice::<onshi_api::card::HomeListRequest>(data);
    if let Ok(month) = serde_json::from_slice::<onshi_api::subsidy::WelfareMonthRequest>(data) {
        let _ = onshi_center::verify::check_institution(month.institution_code.as_deref(), &certified);
        let _ = onshi_center::subsidy::parse_month(&month.month);
    }
    if let Ok(question) = serde_json::from_slice::<onshi_api::subsidy::VerifySubsidyRequest>(data) {
        let _ = onshi_center::verify::check_institution(question.institution_code.as_deref(), &certified);
        let _ = onshi_center::subsidy::parse_query(&question);
    }
    if let Ok(batch) = serde_json::from_slice::<BatchVerifyRequest>(data) {
        let _ = onshi_center::verify::check_institution(batch.institution_code.as_deref(), &certified);
        for entry in &batch.entries {
            let _ = onshi_center::verify::parse_request(entry, today());
        }
    }
    if let Ok(proof) = serde_json::from_slice::<wire_card::CardProof>(data) {
        card_proof(&proof);
    }
    if let Ok(link) = serde_json::from_slice::<wire_card::LinkCard>(data) {
        card_proof(&link.proof);
    }
    if let Ok(verify) = serde_json::from_slice::<wire_card::VerifyCard>(data) {
        card_proof(&verify.proof);
    }
    if let Ok(report) = serde_json::from_slice::<wire_card::ReportLink>(data) {
        card_proof(&report.proof);
    }
    let _ = serde_json::from_slice::<wire_card::ReviewLink>(data);
    if let Ok(flag) = serde_json::from_slice::<wire_card::PatientFlag>(data) {
        card_proof(&flag.proof);
    }
    if let Ok(withdraw) = serde_json::from_slice::<wire_card::WithdrawConsent>(data) {
        card_proof(&withdraw.proof);
        let _ = wire_card::withdraw_details(&withdraw.institution_code, &withdraw.scopes);
    }
    let _ = serde_json::from_slice::<wire_card::RegisterReader>(data);
}

/// What the center reads from a card proof before any register is asked: the certificate
/// (PEM) checked against the card CA, and the signatures as hex.
fn card_proof(proof: &wire_card::CardProof) {
    if let Ok(der) = onshi_pki::card::certificate_der(&proof.certificate) {
        let trust = &PkiFixture::get().card_trust;
        let _ = trust.check(&der, onshi_pki::today());
        let _ = trust.issued_serial(&der);
    }
    if let Some(signature) = &proof.card_signature {
        let _ = onshi_domain::hex::decode(signature);
    }
    if let Some(attestation) = &proof.attestation {
        let _ = onshi_domain::hex::decode(&attestation.signature);
    }
}

/// Certificates, CRLs and binding-feed lines. The first byte chooses what the rest is:
///
/// - 0: a certificate (DER) presented by a client or on a card: its role, and the card CA's
///   check and serial;
/// - 1: a CRL (DER, wrapped in PEM as the files hold it), loaded against the card CA and
///   checked against the center CA;
/// - 2: PEM text, read as a certificate, a CRL and a CA certificate;
/// - 3: a line of the binding feed, signature and all;
/// - 4: the entry of a binding-feed line, signed here with the card CA's key, so that the
///   parse behind the signature check is reached too.
///
/// A mutated CRL or certificate cannot carry a valid signature, so the code behind the CA's
/// signature check in [`onshi_pki::verify::CardTrust::load`] is reached only by the seeds.
pub fn pki(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let fixture = PkiFixture::get();
    match selector % 5 {
        0 => certificate(fixture, rest),
        1 => crl(fixture, &pki_fixture::pem("X509 CRL", rest)),
        2 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(der) = onshi_pki::card::certificate_der(&text) {
                certificate(fixture, &der);
            }
            crl(fixture, &text);
            let _ = onshi_pki::verify::CardTrust::load(&text, &fixture.card_crl_pem);
            let _ = onshi_pki::revocation::serial_of_pem(&text);
        }
        3 => {
            let _ = fixture.card_trust.binding(&String::from_utf8_lossy(rest));
        }
        _ => {
            let line = fixture.signed_binding_line(&String::from_utf8_lossy(rest));
            let _ = fixture.card_trust.binding(&line);
        }
    }
}

fn certificate(fixture: &PkiFixture, der: &[u8]) {
    let _ = onshi_pki::peer_identity(der);
    let _ = fixture.card_trust.check(der, onshi_pki::today());
    let _ = fixture.card_trust.issued_serial(der);
    let _ = onshi_pki::revocation::serial_of_der(der);
}

fn crl(fixture: &PkiFixture, crl_pem: &str) {
    if let Ok(trust) = onshi_pki::verify::CardTrust::load(&fixture.card_ca_pem, crl_pem) {
        let _ = (trust.crl_number(), trust.next_update(), trust.revoked_count());
    }
    let _ = onshi_pki::revocation::check_crl(&fixture.center_ca_pem, crl_pem);
}

/// The gateway's configuration, as the text of a `gateway.toml` in a folder that holds the
/// files a configuration names (`ca.pem`, `c.pem`, `c.key`, `reader.json`), so that the checks
/// after the file checks are reached too.
pub fn gateway_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = config_folder().join("gateway.toml");
    if let Ok(config) = onshi_gateway::config::GatewayConfig::from_text(&path, text) {
        let _ = config.center_host_port();
        // The page's access rules are used on every request: ask them about a few clients.
        for remote in ["192.168.1.20", "10.1.2.3", "::1", "fe80::1", "::ffff:192.168.1.20"] {
            let remote = remote.parse().expect("a valid address");
            let local = "127.0.0.1".parse().expect("a valid address");
            let _ = config.page_access.admits(onshi_gateway::access::Peer { remote, local });
        }
        for host in ["uketsuke.local", "[::1]:8080", "127.0.0.1:8080", "localhost", ""] {
            let _ = config.page_access.host_ok(Some(host));
        }
    }
}

fn config_folder() -> &'static std::path::Path {
    static FOLDER: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    FOLDER
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary folder for the configuration target");
            for file in ["ca.pem", "c.pem", "c.key", "reader.json"] {
                std::fs::write(dir.path().join(file), "x").expect("a file in the temporary folder");
            }
            dir
        })
        .path()
}

/// The pieces of `data` after its first byte: each a length byte and that many bytes.
fn length_prefixed(data: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    while let Some((&length, tail)) = rest.split_first() {
        let length = usize::from(length).min(tail.len());
        pieces.push(&tail[..length]);
        rest = &tail[length..];
    }
    pieces
}

/// Responses a card sends, replayed one per command; then the card is gone.
struct ScriptedCard<'a> {
    responses: std::collections::VecDeque<&'a [u8]>,
}

impl onshi_reader::jpki_host::Transport for ScriptedCard<'_> {
    fn transmit(&mut self, _apdu: &[u8]) -> Result<Vec<u8>, onshi_reader::ReaderError> {
        self.responses.pop_front().map(<[u8]>::to_vec).ok_or(onshi_reader::ReaderError::NoCard)
    }
}

/// The card path's APDUs. The first byte chooses the side:
///
/// - 0: command APDUs (each a length byte and its bytes) sent to a fresh virtual card, as a
///   host at a reader might send them;
/// - 1: response APDUs (the same framing) that a card or phone sends the gateway, read by the
///   gateway's JPKI sequences (select, token, certificate, PIN, signature);
/// - 2: bytes from vpcd's socket, cut into messages.
pub fn card_apdu(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => {
            let path = config_folder().join("apdu-card.json");
            if std::fs::write(&path, &PkiFixture::get().card_file).is_err() {
                return;
            }
            let Ok(card) = onshi_pki::card::VirtualCard::load(&path) else { return };
            let mut applet = onshi_pki::applet::Applet::new(card);
            for command in length_prefixed(rest) {
                let response = applet.answer(command);
                assert!(response.len() >= 2 && response.len() <= 258, "a response APDU is data and a status word");
            }
        }
        1 => {
            use onshi_reader::jpki_host;
            let mut card = ScriptedCard { responses: length_prefixed(rest).into() };
            let _ = jpki_host::select_application(&mut card);
            let _ = jpki_host::token_type(&mut card);
            let _ = jpki_host::read_certificate(&mut card);
            let _ = jpki_host::verify_pin(&mut card, "1234");
            let _ = jpki_host::sign(&mut card, b"challenge");
        }
        _ => {
            let mut pending = rest.to_vec();
            while let Some(message) = onshi_reader::vpcd::take_message(&mut pending) {
                assert!(message.len() <= usize::from(u16::MAX));
            }
        }
    }
}

/// Seeds of [`card_apdu`]: the commands and the responses of a whole check at the reader
/// (select, token, certificate, PIN, signature), recorded from the virtual card.
fn card_apdu_seeds() -> Vec<(String, Vec<u8>)> {
    struct Recorder {
        applet: onshi_pki::applet::Applet,
        commands: Vec<u8>,
        responses: Vec<u8>,
    }
    impl onshi_reader::jpki_host::Transport for Recorder {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, onshi_reader::ReaderError> {
            let response = self.applet.answer(apdu);
            for (log, bytes) in [(&mut self.commands, apdu), (&mut self.responses, response.as_slice())] {
                // The framing holds pieces of up to 255 bytes: a longer one is cut there.
                let n = bytes.len().min(255);
                log.push(n as u8);
                log.extend_from_slice(&bytes[..n]);
            }
            Ok(response)
        }
    }
    let path = config_folder().join("seed-card.json");
    std::fs::write(&path, &PkiFixture::get().card_file).expect("the seed card is written");
    let card = onshi_pki::card::VirtualCard::load(&path).expect("the seed card loads");
    let mut recorder = Recorder { applet: onshi_pki::applet::Applet::new(card), commands: vec![0], responses: vec![1] };
    use onshi_reader::jpki_host;
    jpki_host::select_application(&mut recorder).expect("the seed card has the application");
    jpki_host::token_type(&mut recorder).expect("a token");
    jpki_host::read_certificate(&mut recorder).expect("a certificate");
    let _ = jpki_host::verify_pin(&mut recorder, "0000");
    jpki_host::verify_pin(&mut recorder, "1234").expect("the PIN");
    jpki_host::sign(&mut recorder, b"challenge").expect("a signature");
    let mut vpcd = vec![2, 0, 1, 4, 0, 1, 1];
    vpcd.extend_from_slice(&[0, 5, 0x00, 0xA4, 0x04, 0x0C, 0x0A]);
    vec![("gen-commands.bin".into(), recorder.commands), ("gen-responses.bin".into(), recorder.responses), ("gen-vpcd.bin".into(), vpcd)]
}

/// An appointment list for 一括照会 (CSV, UTF-8 or Shift_JIS).
pub fn appointments_csv(data: &[u8]) {
    if let Ok(appointments) = onshi_gateway::batch::read_appointments(data) {
        for appointment in &appointments {
            let wire = appointment.search.to_request(Some(&appointment.date));
            let _ = onshi_center::verify::parse_request(&wire, today());
        }
    }
}

/// The seed inputs of `target`: the small inputs committed in `seeds/<target>/`, and those made
/// at run time: certificates, CRLs and feed lines from the project's own CAs, a request and a
/// claim file written by the project's own writers, and the published sample claim file from
/// the shared fixtures (never committed here; see `onshi_receipt::fixtures`).
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = match std::fs::read_dir(&folder) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .map(|e| {
                let bytes = std::fs::read(e.path()).unwrap_or_else(|err| panic!("seed {}: {err}", e.path().display()));
                (e.file_name().to_string_lossy().into_owned(), bytes)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    seeds.sort();
    match target {
        "pki" => seeds.extend(PkiFixture::get().seeds()),
        "card_apdu" => seeds.extend(card_apdu_seeds()),
        "uke" => {
            let sample = onshi_receipt::fixtures::sample_uke();
            let bytes = std::fs::read(&sample).unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
            seeds.push(("fixture-RECEIPTC_GAIRAI_SAMPLE.UKE".into(), bytes));
            seeds.push(("gen-claim-file.uke".into(), generated_claim_file()));
        }
        "request_xml" => {
            let request = VerifyNumberRequest {
                insurer_number: "06130488".into(),
                symbol: Some("77".into()),
                number: "1234".into(),
                branch: Some("00".into()),
                birth_date: "19850505".into(),
                date_of_care: Some("20261125".into()),
                limit_consent: true,
                ..VerifyNumberRequest::default()
            };
            seeds.push(("gen-single.xml".into(), request::single_request_xml(&request, "1311234569", "gen-1").into_bytes()));
        }
        _ => {}
    }
    seeds
}

/// A claim file of three claims as `onshi_receipt::sample` writes them (CP932, CRLF).
fn generated_claim_file() -> Vec<u8> {
    use onshi_receipt::sample::{ClaimSpec, claim_file};
    let institution = InstitutionCode::parse("1311234569").expect("a valid code");
    let claim = |insurer: &str, number: &str, branch: Option<&str>, points: u64| ClaimSpec {
        insurer: insurer.into(),
        symbol: "77".into(),
        number: number.into(),
        branch: branch.map(str::to_string),
        birth_date: Date::new(1985, 5, 5).expect("a valid date"),
        sex: "1".into(),
        care_days: vec![1, 15, 30],
        points,
        name: None,
    };
    let claims = [claim("06130488", "1234", Some("00"), 512), claim("138057", "1", None, 90), claim("39131011", "00012345", Some("01"), 1)];
    claim_file(&institution, onshi_receipt::uke::YearMonth { year: 2026, month: 11 }, &claims)
}
