//! The host's side of the JPKI application: the APDU sequences that read the certificate,
//! verify the PIN and have the card sign, over any [`Transport`] (a PC/SC connection, or the
//! virtual card's applet in-process for tests). The card is recognised by selecting its
//! application, never by its ATR: newer cards changed their ATR and broke readers that
//! whitelisted it.

use onshi_pki::applet::{JPKI_AID, ef, sw};
use onshi_pki::card::{CardError, TokenType};

use crate::ReaderError;

/// Sends a command APDU, returns the response APDU (data and status word).
pub trait Transport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError>;
}

impl Transport for onshi_pki::applet::Applet {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        Ok(self.answer(apdu))
    }
}

/// A certificate is at most this long; a card claiming more is refused (bounded memory).
const CERTIFICATE_MAX: usize = 8 * 1024;

fn split(response: Vec<u8>) -> (Vec<u8>, u16) {
    let n = response.len().saturating_sub(2);
    let status = u16::from_be_bytes([response.get(n).copied().unwrap_or(0), response.get(n + 1).copied().unwrap_or(0)]);
    let mut data = response;
    data.truncate(n);
    (data, status)
}

fn command(t: &mut dyn Transport, apdu: &[u8]) -> Result<(Vec<u8>, u16), ReaderError> {
    Ok(split(t.transmit(apdu)?))
}

fn expect_ok(step: &'static str, status: u16) -> Result<(), ReaderError> {
    if status == sw::OK { Ok(()) } else { Err(ReaderError::CardStatus { step, status }) }
}

/// Selects the JPKI application; a card without it is not a My Number card (or phone).
pub fn select_application(t: &mut dyn Transport) -> Result<(), ReaderError> {
    let mut apdu = vec![0x00, 0xA4, 0x04, 0x0C, JPKI_AID.len() as u8];
    apdu.extend_from_slice(&JPKI_AID);
    match command(t, &apdu)?.1 {
        sw::OK => Ok(()),
        _ => Err(ReaderError::NotJpki),
    }
}

fn select_file(t: &mut dyn Transport, id: [u8; 2]) -> Result<(), ReaderError> {
    let (_, status) = command(t, &[0x00, 0xA4, 0x02, 0x0C, 0x02, id[0], id[1]])?;
    expect_ok("select a file", status)
}

/// Reads the selected EF from its start, 256 bytes at a time, until the card says the end is
/// reached or `max` bytes are read.
fn read_selected(t: &mut dyn Transport, max: usize) -> Result<Vec<u8>, ReaderError> {
    let mut data = Vec::new();
    loop {
        let offset = data.len();
        let (chunk, status) = command(t, &[0x00, 0xB0, (offset >> 8) as u8, offset as u8, 0x00])?;
        match status {
            sw::SECURITY_NOT_SATISFIED => return Err(ReaderError::PinNeededToRead),
            sw::OK | sw::END_OF_FILE => {}
            // Reading exactly to the end of a file whose length is a multiple of 256.
            sw::OFFSET_OUTSIDE if offset > 0 => return Ok(data),
            other => return Err(ReaderError::CardStatus { step: "read a file", status: other }),
        }
        let done = chunk.len() < 256 || status == sw::END_OF_FILE;
        data.extend_from_slice(&chunk);
        if done || data.len() >= max {
            data.truncate(max);
            return Ok(data);
        }
    }
}

/// The DER of a certificate file: the EF may be longer than the certificate (padding).
fn der_of(file: &[u8]) -> Result<Vec<u8>, ReaderError> {
    let length = match file {
        [0x30, 0x82, high, low, ..] => 4 + (usize::from(*high) << 8 | usize::from(*low)),
        [0x30, 0x81, length, ..] => 3 + usize::from(*length),
        _ => return Err(ReaderError::CardStatus { step: "read the certificate (not DER)", status: 0 }),
    };
    file.get(..length).map(<[u8]>::to_vec).ok_or(ReaderError::CardStatus { step: "read the certificate (cut short)", status: 0 })
}

/// What carries the application (EF 0006).
pub fn token_type(t: &mut dyn Transport) -> Result<TokenType, ReaderError> {
    select_file(t, ef::TOKEN_INFO)?;
    let info = read_selected(t, 160)?;
    let name = String::from_utf8_lossy(&info);
    TokenType::from_token_name(name.trim_end_matches([' ', '\0'])).ok_or(ReaderError::NotJpki)
}

/// The user certificate (DER).
pub fn read_certificate(t: &mut dyn Transport) -> Result<Vec<u8>, ReaderError> {
    select_file(t, ef::USER_CERTIFICATE)?;
    der_of(&read_selected(t, CERTIFICATE_MAX)?)
}

/// VERIFY with the 4-digit PIN; a wrong one costs a try on the card.
pub fn verify_pin(t: &mut dyn Transport, pin: &str) -> Result<(), ReaderError> {
    if pin.len() != 4 || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReaderError::Card(CardError::PinFormat));
    }
    select_file(t, ef::USER_PIN)?;
    let mut apdu = vec![0x00, 0x20, 0x00, 0x80, 0x04];
    apdu.extend_from_slice(pin.as_bytes());
    match command(t, &apdu)?.1 {
        sw::OK => Ok(()),
        sw::PIN_BLOCKED => Err(ReaderError::Card(CardError::Locked)),
        sw::NO_PIN => Err(ReaderError::Card(CardError::NoPin)),
        status if status & 0xFFF0 == 0x63C0 && status & 0x000F == 0 => Err(ReaderError::Card(CardError::Locked)),
        status if status & 0xFFF0 == 0x63C0 => Err(ReaderError::Card(CardError::WrongPin { retries_left: (status & 0x000F) as u8 })),
        status => Err(ReaderError::CardStatus { step: "verify the PIN", status }),
    }
}

/// The card signs `message`: the host hands it the SHA-256 DigestInfo (the card never sees
/// the message) and gets the PKCS#1 v1.5 signature back.
pub fn sign(t: &mut dyn Transport, message: &[u8]) -> Result<Vec<u8>, ReaderError> {
    select_file(t, ef::USER_KEY)?;
    let info = onshi_pki::card::sha256_digest_info(message);
    let mut apdu = vec![0x80, 0x2A, 0x00, 0x80, info.len() as u8];
    apdu.extend_from_slice(&info);
    apdu.push(0x00);
    let (signature, status) = command(t, &apdu)?;
    match status {
        sw::OK => Ok(signature),
        sw::SECURITY_NOT_SATISFIED => Err(ReaderError::PinNeededToRead),
        status => Err(ReaderError::CardStatus { step: "sign", status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_pki::applet::Applet;
    use onshi_pki::card::{CardAttributes, VirtualCard};
    use onshi_pki::jpki::{CardCa, CardValidity};

    #[test]
    fn the_host_reads_verifies_and_has_the_card_sign_what_the_center_checks() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CardCa::create(&dir.path().join("jpki")).unwrap();
        let attributes = CardAttributes::fictitious();
        let path = dir.path().join("c.json");
        ca.issue_card(attributes, "p1", Some("1234"), CardValidity::Statutory { issued_on: onshi_pki::today() }, &path).unwrap();
        let mut applet = Applet::new(VirtualCard::load(&path).unwrap());
        select_application(&mut applet).unwrap();
        assert_eq!(token_type(&mut applet).unwrap(), TokenType::Card);
        let der = read_certificate(&mut applet).unwrap();
        assert_eq!(der, VirtualCard::load(&path).unwrap().certificate_der().unwrap());
        assert!(matches!(sign(&mut applet, b"m"), Err(ReaderError::PinNeededToRead)));
        assert!(matches!(verify_pin(&mut applet, "0000"), Err(ReaderError::Card(CardError::WrongPin { retries_left: 2 }))));
        verify_pin(&mut applet, "1234").unwrap();
        let signature = sign(&mut applet, b"m").unwrap();
        let crl = std::fs::read_to_string(ca.publish_crl(1).unwrap()).unwrap();
        let trust = onshi_pki::verify::CardTrust::load(ca.cert_pem(), &crl).unwrap();
        let checked = trust.check(&der, onshi_pki::today()).unwrap();
        assert!(checked.public_key.verify(b"m", &signature));
        assert!(!checked.public_key.verify(b"n", &signature));
    }

    #[test]
    fn a_certificate_file_longer_than_its_der_is_cut_to_the_der() {
        let mut file = vec![0x30, 0x82, 0x00, 0x03, 1, 2, 3];
        file.extend_from_slice(&[0xFF; 20]);
        assert_eq!(der_of(&file).unwrap(), vec![0x30, 0x82, 0x00, 0x03, 1, 2, 3]);
        assert!(der_of(&[0x30, 0x82, 0x01, 0x00, 1]).is_err(), "cut short");
        assert!(der_of(&[0xFF; 10]).is_err(), "not DER");
    }
}
