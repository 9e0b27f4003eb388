//! The JPKI application of a virtual card, answering APDUs as the chip does: what a PC/SC
//! reader sees when the card (or a phone) is placed on it. No I/O beyond the card file, which
//! keeps the PIN counter; the transport (vpcd's socket, or a test calling [`Applet::answer`]
//! directly) is elsewhere.
//!
//! Files of the application (JPKI.md): EF 0006 token info, EF 000A the user certificate, EF 000B
//! its CA certificate, EF 0017 the user key (SIGN), EF 0018 the user PIN (VERIFY). Only short
//! APDUs; the certificate is read in pieces of at most 256 bytes, as hosts do.

use crate::card::{CardError, TokenType, VirtualCard, certificate_der};

/// `D3 92 F0 00 26 01 00 00 00 01`: the JPKI user application.
pub const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];

/// The elementary files of the JPKI application.
pub mod ef {
    pub const TOKEN_INFO: [u8; 2] = [0x00, 0x06];
    pub const USER_CERTIFICATE: [u8; 2] = [0x00, 0x0A];
    pub const CA_CERTIFICATE: [u8; 2] = [0x00, 0x0B];
    pub const USER_KEY: [u8; 2] = [0x00, 0x17];
    pub const USER_PIN: [u8; 2] = [0x00, 0x18];
}

/// Status words the application answers with (ISO 7816-4).
pub mod sw {
    pub const OK: u16 = 0x9000;
    /// End of file reached before Le bytes.
    pub const END_OF_FILE: u16 = 0x6282;
    pub const WRONG_LENGTH: u16 = 0x6700;
    /// Security status not satisfied (the PIN first).
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    /// Authentication method blocked (the PIN is locked).
    pub const PIN_BLOCKED: u16 = 0x6983;
    /// Reference data not usable (no PIN on this token).
    pub const NO_PIN: u16 = 0x6984;
    /// Command not allowed (no current EF, or the wrong one).
    pub const NOT_ALLOWED: u16 = 0x6986;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const FILE_NOT_FOUND: u16 = 0x6A82;
    pub const WRONG_P1P2: u16 = 0x6A86;
    pub const OFFSET_OUTSIDE: u16 = 0x6B00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    /// A wrong PIN: `63Cx`, x tries left.
    pub fn tries_left(tries: u8) -> u16 {
        0x63C0 | u16::from(tries.min(15))
    }
}

/// The ATR the virtual card answers power-on with. Hosts must not recognise the card by it
/// (new real cards changed theirs); they select the application instead.
pub fn atr(token: TokenType) -> Vec<u8> {
    // TS 3B, T0 88 (TD1 follows, 8 historical bytes), TD1 01 (T=1), the historical bytes, TCK.
    let historical: &[u8; 8] = match token {
        TokenType::Card => b"onshi-IC",
        TokenType::Android => b"onshi-AN",
        TokenType::Iphone => b"onshi-IP",
    };
    let mut atr = vec![0x3B, 0x88, 0x01];
    atr.extend_from_slice(historical);
    let check = atr[1..].iter().fold(0u8, |x, b| x ^ b);
    atr.push(check);
    atr
}

/// A command APDU, short form only.
#[derive(Debug, PartialEq, Eq)]
struct Command<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    /// Expected length (`None`: case 1 or 3; `Some(0)` means 256).
    le: Option<usize>,
}

fn parse(apdu: &[u8]) -> Result<Command<'_>, u16> {
    let [cla, ins, p1, p2, body @ ..] = apdu else { return Err(sw::WRONG_LENGTH) };
    let (data, le) = match body {
        [] => (&[][..], None),
        [le] => (&[][..], Some(if *le == 0 { 256 } else { usize::from(*le) })),
        // An extended length (a zero byte first) is not spoken here.
        [0, ..] => return Err(sw::WRONG_LENGTH),
        [lc, rest @ ..] => {
            let lc = usize::from(*lc);
            match rest.len().checked_sub(lc) {
                Some(0) => (&rest[..lc], None),
                Some(1) => (&rest[..lc], Some(if rest[lc] == 0 { 256 } else { usize::from(rest[lc]) })),
                _ => return Err(sw::WRONG_LENGTH),
            }
        }
    };
    Ok(Command { cla: *cla, ins: *ins, p1: *p1, p2: *p2, data, le })
}

/// The application's state for one power cycle: what is selected, whether the PIN was given.
pub struct Applet {
    card: VirtualCard,
    selected_app: bool,
    selected_ef: Option<[u8; 2]>,
    pin_verified: bool,
}

fn respond(mut data: Vec<u8>, status: u16) -> Vec<u8> {
    data.extend_from_slice(&status.to_be_bytes());
    data
}

fn status(status: u16) -> Vec<u8> {
    respond(Vec::new(), status)
}

impl Applet {
    pub fn new(card: VirtualCard) -> Applet {
        Applet { card, selected_app: false, selected_ef: None, pin_verified: false }
    }

    pub fn card(&self) -> &VirtualCard {
        &self.card
    }

    /// Power off, power on or reset: nothing stays selected and the PIN must be given again.
    pub fn reset(&mut self) {
        self.selected_app = false;
        self.selected_ef = None;
        self.pin_verified = false;
    }

    /// The response APDU (data and status word) to a command APDU.
    pub fn answer(&mut self, apdu: &[u8]) -> Vec<u8> {
        let command = match parse(apdu) {
            Ok(command) => command,
            Err(code) => return status(code),
        };
        match (command.cla, command.ins) {
            (0x00, 0xA4) => status(self.select(&command)),
            (0x00, 0xB0) => self.read_binary(&command),
            (0x00, 0x20) => status(self.verify(&command)),
            (0x80, 0x2A) => self.sign(&command),
            (0x00 | 0x80, _) => status(sw::INS_NOT_SUPPORTED),
            _ => status(sw::CLA_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, command: &Command<'_>) -> u16 {
        match command.p1 {
            // By DF name (AID). Another application (券面入力補助, 券面) is not on this card.
            0x04 => {
                self.selected_ef = None;
                self.pin_verified = false;
                self.selected_app = command.data == JPKI_AID;
                if self.selected_app { sw::OK } else { sw::FILE_NOT_FOUND }
            }
            // An EF of the current application.
            0x02 => {
                let Ok(id) = <[u8; 2]>::try_from(command.data) else { return sw::WRONG_DATA };
                let known = [ef::TOKEN_INFO, ef::USER_CERTIFICATE, ef::CA_CERTIFICATE, ef::USER_KEY, ef::USER_PIN].contains(&id);
                if !self.selected_app || !known {
                    return sw::FILE_NOT_FOUND;
                }
                self.selected_ef = Some(id);
                sw::OK
            }
            _ => sw::WRONG_P1P2,
        }
    }

    fn file(&self, id: [u8; 2]) -> Result<Vec<u8>, u16> {
        match id {
            ef::TOKEN_INFO => {
                // The token's name, padded with spaces to the 160 bytes of the real EF.
                let mut info = self.card.token().token_name().as_bytes().to_vec();
                info.resize(160, b' ');
                Ok(info)
            }
            ef::USER_CERTIFICATE => {
                if self.card.token().pin_to_read() && !self.pin_verified {
                    return Err(sw::SECURITY_NOT_SATISFIED);
                }
                self.card.certificate_der().map_err(|_| sw::FILE_NOT_FOUND)
            }
            ef::CA_CERTIFICATE => certificate_der(self.card.ca_certificate_pem()).map_err(|_| sw::FILE_NOT_FOUND),
            _ => Err(sw::NOT_ALLOWED),
        }
    }

    fn read_binary(&mut self, command: &Command<'_>) -> Vec<u8> {
        let Some(id) = self.selected_ef else { return status(sw::NOT_ALLOWED) };
        // Bit 8 of P1 would name a short EF identifier; hosts of JPKI select the EF first.
        if command.p1 & 0x80 != 0 {
            return status(sw::WRONG_P1P2);
        }
        let file = match self.file(id) {
            Ok(file) => file,
            Err(code) => return status(code),
        };
        let offset = usize::from(command.p1) << 8 | usize::from(command.p2);
        let wanted = command.le.unwrap_or(256);
        if offset > file.len() {
            return status(sw::OFFSET_OUTSIDE);
        }
        let end = file.len().min(offset + wanted);
        let code = if end - offset < wanted { sw::END_OF_FILE } else { sw::OK };
        respond(file[offset..end].to_vec(), code)
    }

    fn verify(&mut self, command: &Command<'_>) -> u16 {
        if self.selected_ef != Some(ef::USER_PIN) || command.p2 != 0x80 {
            return sw::NOT_ALLOWED;
        }
        // The iPhone has no PIN of its own here: the phone's biometrics gate the key.
        if self.card.token() == TokenType::Iphone || !self.card.has_pin() {
            return sw::NO_PIN;
        }
        if command.data.is_empty() {
            // The tries left, without spending one.
            return match self.card.pin_retries_left() {
                Some(0) => sw::PIN_BLOCKED,
                _ if self.pin_verified => sw::OK,
                Some(tries) => sw::tries_left(tries),
                None => sw::NO_PIN,
            };
        }
        let Ok(pin) = std::str::from_utf8(command.data) else { return sw::WRONG_DATA };
        match self.card.enter_pin(pin) {
            Ok(()) => {
                self.pin_verified = true;
                sw::OK
            }
            Err(CardError::WrongPin { retries_left }) => {
                self.pin_verified = false;
                sw::tries_left(retries_left)
            }
            Err(CardError::Locked) => {
                self.pin_verified = false;
                sw::PIN_BLOCKED
            }
            Err(CardError::PinFormat) => sw::WRONG_DATA,
            Err(CardError::NoPin) => sw::NO_PIN,
            // The counter could not be written: refuse rather than sign on an unsaved count.
            Err(_) => sw::NOT_ALLOWED,
        }
    }

    fn sign(&mut self, command: &Command<'_>) -> Vec<u8> {
        if self.selected_ef != Some(ef::USER_KEY) || command.p1 != 0x00 || command.p2 != 0x80 {
            return status(sw::NOT_ALLOWED);
        }
        // The iPhone signs after its owner confirmed with Face ID / Touch ID on the phone.
        if !self.pin_verified && self.card.token() != TokenType::Iphone {
            return status(sw::SECURITY_NOT_SATISFIED);
        }
        match self.card.sign_digest_info(command.data) {
            Ok(signature) => respond(signature, sw::OK),
            Err(_) => status(sw::WRONG_DATA),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardAttributes;
    use crate::jpki::{CardCa, CardValidity};

    fn applet(dir: &std::path::Path, pin: Option<&str>) -> (Applet, CardCa) {
        let ca = CardCa::create(&dir.join("jpki")).unwrap();
        let attributes = CardAttributes::fictitious();
        let card =
            ca.issue_card(attributes, "p1", pin, CardValidity::Statutory { issued_on: crate::today() }, &dir.join("c.json")).unwrap();
        (Applet::new(card), ca)
    }

    fn hex(text: &str) -> Vec<u8> {
        onshi_domain::hex::decode(&text.replace(' ', "")).unwrap()
    }

    fn sw_of(response: &[u8]) -> u16 {
        u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]])
    }

    #[test]
    fn the_application_is_selected_by_aid_and_the_certificate_reads_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let (mut applet, _) = applet(dir.path(), Some("1234"));
        // The 券面入力補助 application is not this one; nothing is selected before the AID.
        assert_eq!(sw_of(&applet.answer(&hex("00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 08"))), 0x6A82);
        assert_eq!(sw_of(&applet.answer(&hex("00 A4 02 0C 02 00 0A"))), 0x6A82);
        assert_eq!(applet.answer(&hex("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01")), vec![0x90, 0x00]);
        assert_eq!(sw_of(&applet.answer(&hex("00 A4 02 0C 02 00 06"))), 0x9000);
        let info = applet.answer(&hex("00 B0 00 00 00"));
        assert_eq!(&info[..15], b"JPKIAPICCTOKEN2");
        assert_eq!(sw_of(&info), 0x6282, "160 bytes where 256 were asked: end of file");
        assert_eq!(applet.answer(&hex("00 A4 02 0C 02 00 0A")), vec![0x90, 0x00]);
        let mut der = Vec::new();
        loop {
            let offset = der.len();
            let response = applet.answer(&[0x00, 0xB0, (offset >> 8) as u8, offset as u8, 0x00]);
            der.extend_from_slice(&response[..response.len() - 2]);
            if sw_of(&response) != 0x9000 {
                assert_eq!(sw_of(&response), 0x6282);
                break;
            }
        }
        assert_eq!(der, applet.card().certificate_der().unwrap(), "the certificate, without a PIN on a card");
        assert_eq!(sw_of(&applet.answer(&[0x00, 0xB0, 0x7F, 0x00, 0x10])), 0x6B00, "an offset past the end");
        assert_eq!(sw_of(&applet.answer(&hex("00 B0 00"))), 0x6700, "a truncated APDU");
        assert_eq!(sw_of(&applet.answer(&hex("00 B0 00 00 00 00 00"))), 0x6700, "an extended length");
        assert_eq!(sw_of(&applet.answer(&hex("00 CA 00 00 00"))), 0x6D00);
        assert_eq!(sw_of(&applet.answer(&hex("A0 A4 00 00"))), 0x6E00);
    }

    #[test]
    fn sign_needs_the_pin_which_locks_on_the_card_after_three_wrong_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut applet, _) = applet(dir.path(), Some("1234"));
        let info = crate::card::sha256_digest_info(b"challenge");
        let mut sign = vec![0x80, 0x2A, 0x00, 0x80, info.len() as u8];
        sign.extend_from_slice(&info);
        sign.push(0x00);
        applet.answer(&hex("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"));
        applet.answer(&hex("00 A4 02 0C 02 00 17"));
        assert_eq!(sw_of(&applet.answer(&sign)), 0x6982, "no signature before the PIN");
        applet.answer(&hex("00 A4 02 0C 02 00 18"));
        assert_eq!(sw_of(&applet.answer(&hex("00 20 00 80"))), 0x63C3, "three tries, none spent by asking");
        assert_eq!(sw_of(&applet.answer(b"\x00\x20\x00\x80\x04\x30\x30\x30\x30")), 0x63C2);
        assert_eq!(sw_of(&applet.answer(b"\x00\x20\x00\x80\x04\x31\x32\x33\x34")), 0x9000);
        applet.answer(&hex("00 A4 02 0C 02 00 17"));
        let signed = applet.answer(&sign);
        assert_eq!((signed.len(), sw_of(&signed)), (258, 0x9000), "256 bytes of RSA-2048 and 90 00");
        // A power cycle forgets the PIN.
        applet.reset();
        applet.answer(&hex("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"));
        applet.answer(&hex("00 A4 02 0C 02 00 17"));
        assert_eq!(sw_of(&applet.answer(&sign)), 0x6982);
        applet.answer(&hex("00 A4 02 0C 02 00 18"));
        for (pin, expected) in [(b"0001", 0x63C2), (b"0002", 0x63C1), (b"0003", 0x6983), (b"1234", 0x6983)] {
            let mut verify = b"\x00\x20\x00\x80\x04".to_vec();
            verify.extend_from_slice(pin);
            assert_eq!(sw_of(&applet.answer(&verify)), expected);
        }
        // The lock is on the card file, not in this session.
        let reloaded = VirtualCard::load(&dir.path().join("c.json")).unwrap();
        assert_eq!(reloaded.pin_retries_left(), Some(0));
    }

    #[test]
    fn an_android_phone_wants_the_pin_to_read_and_an_iphone_signs_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let (applet_card, _) = applet(dir.path(), Some("1234"));
        let mut card = applet_card.card;
        card.set_token(TokenType::Android, "").unwrap();
        let mut android = Applet::new(VirtualCard::load(card.path()).unwrap());
        android.answer(&hex("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"));
        android.answer(&hex("00 A4 02 0C 02 00 0A"));
        assert_eq!(sw_of(&android.answer(&hex("00 B0 00 00 00"))), 0x6982, "no certificate before the PIN");
        android.answer(&hex("00 A4 02 0C 02 00 18"));
        assert_eq!(sw_of(&android.answer(b"\x00\x20\x00\x80\x04\x31\x32\x33\x34")), 0x9000);
        android.answer(&hex("00 A4 02 0C 02 00 0A"));
        assert_eq!(sw_of(&android.answer(&hex("00 B0 00 00 00"))), 0x9000);

        card.set_token(TokenType::Iphone, "").unwrap();
        let mut iphone = Applet::new(VirtualCard::load(card.path()).unwrap());
        iphone.answer(&hex("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"));
        iphone.answer(&hex("00 A4 02 0C 02 00 06"));
        assert_eq!(&iphone.answer(&hex("00 B0 00 00 0E"))[..14], b"JPKIAPIOSTOKEN");
        iphone.answer(&hex("00 A4 02 0C 02 00 18"));
        assert_eq!(sw_of(&iphone.answer(&hex("00 20 00 80"))), 0x6984, "no PIN on the iPhone token");
        iphone.answer(&hex("00 A4 02 0C 02 00 17"));
        let info = crate::card::sha256_digest_info(b"c");
        let mut sign = vec![0x80, 0x2A, 0x00, 0x80, info.len() as u8];
        sign.extend_from_slice(&info);
        sign.push(0);
        assert_eq!(sw_of(&iphone.answer(&sign)), 0x9000);
    }

    #[test]
    fn the_atr_is_well_formed_and_differs_by_token() {
        for token in [TokenType::Card, TokenType::Android, TokenType::Iphone] {
            let atr = atr(token);
            assert_eq!(atr[0], 0x3B);
            assert_eq!(atr[1..].iter().fold(0u8, |x, b| x ^ b), 0, "TCK makes the XOR from T0 zero");
        }
        assert_ne!(atr(TokenType::Card), atr(TokenType::Iphone));
    }
}
