//! A PC/SC card reader behind [`CardReader`]: the ¥3,000 USB reader a clinic already has (or a
//! phone held to it), with the reader file's device key for the attestations of a visual
//! check. It has no camera, so the face path is the face reader's; the PIN path and visual mode
//! work here.
//!
//! Each operation connects to the card, selects the JPKI application and does its APDUs in one
//! connection; after a PIN was given the card is reset when the connection ends, so a verified
//! PIN never outlives the operation that needed it.

use std::time::Duration;

use onshi_api::card::{Attestation, Purpose};
use onshi_pki::card::{TokenType, certificate_pem_of, serial_of};

use crate::jpki_host::{self, Transport};
use crate::pcsc::{Card, Context, PcscError, Slot};
use crate::{CardReader, ReaderError, ReaderFile, ReaderState};

impl Transport for Card<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        Ok(Card::transmit(self, apdu)?)
    }
}

/// A reader on the PC/SC service.
pub struct PcscReader {
    file: ReaderFile,
    context: Context,
    name: String,
    visual_mode: bool,
}

impl PcscReader {
    /// Opens the reader called `name`, or the first one the service lists.
    pub fn open(file: ReaderFile, name: Option<&str>) -> Result<PcscReader, ReaderError> {
        let context = Context::establish()?;
        let readers = context.readers()?;
        let name = match name {
            Some(name) => readers
                .iter()
                .find(|r| r.as_str() == name || r.starts_with(name))
                .cloned()
                .ok_or_else(|| PcscError::Unavailable(format!("no reader called {name:?}; the connected readers are {readers:?}")))?,
            None => readers.first().cloned().ok_or(PcscError::NoReader)?,
        };
        Ok(PcscReader { file, context, name, visual_mode: false })
    }

    /// The reader's name as the PC/SC service gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the reader holds now, or after it changes from `known` within `timeout`: the page
    /// shows "カードを置いてください" until a card is placed and reacts when it is removed.
    pub fn wait(&self, known: Option<&Slot>, timeout: Duration) -> Result<Slot, ReaderError> {
        Ok(self.context.slot(&self.name, known, timeout)?)
    }

    /// Staff switch visual mode on with the facility password.
    pub fn enable_visual_mode(&mut self, password: &str) -> Result<(), ReaderError> {
        if !self.file.facility_password.matches(password) {
            return Err(ReaderError::WrongFacilityPassword);
        }
        self.visual_mode = true;
        Ok(())
    }

    pub fn visual_mode(&self) -> bool {
        self.visual_mode
    }

    /// Visual mode ends with the patient it was switched on for.
    pub fn end_visual_mode(&mut self) {
        self.visual_mode = false;
    }

    /// Connects to the card and selects its JPKI application.
    fn card(&self) -> Result<Card<'_>, ReaderError> {
        let mut card = self.context.connect(&self.name)?;
        jpki_host::select_application(&mut card)?;
        Ok(card)
    }

    /// What carries the application on the reader now.
    pub fn token(&self) -> Result<TokenType, ReaderError> {
        jpki_host::token_type(&mut self.card()?)
    }

    fn certificate_der(&self) -> Result<Vec<u8>, ReaderError> {
        jpki_host::read_certificate(&mut self.card()?)
    }

    fn attest(&self, purpose: Purpose, challenge: &str, result: &str, details: &str) -> Result<Attestation, ReaderError> {
        self.file.attest(purpose, challenge, &self.certificate_der()?, result, details)
    }
}

impl CardReader for PcscReader {
    fn reader_file(&self) -> &ReaderFile {
        &self.file
    }

    fn state(&self) -> ReaderState {
        match self.context.slot(&self.name, None, Duration::ZERO) {
            Ok(Slot::Card { .. }) => {
                // A phone that wants its PIN first shows no serial until then.
                let serial = self.certificate_der().ok().and_then(|der| serial_of(&der).ok()).unwrap_or_default();
                ReaderState::CardPresent { serial }
            }
            _ => ReaderState::Empty,
        }
    }

    fn certificate(&self) -> Result<String, ReaderError> {
        Ok(certificate_pem_of(&self.certificate_der()?))
    }

    fn certificate_with_pin(&mut self, pin: &str) -> Result<String, ReaderError> {
        let mut card = self.card()?;
        if jpki_host::token_type(&mut card)?.pin_to_read() {
            card.reset_when_done();
            jpki_host::verify_pin(&mut card, pin)?;
        }
        Ok(certificate_pem_of(&jpki_host::read_certificate(&mut card)?))
    }

    fn sign_with_pin(&mut self, pin: &str, message: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut card = self.card()?;
        card.reset_when_done();
        jpki_host::verify_pin(&mut card, pin)?;
        jpki_host::sign(&mut card, message)
    }

    fn sign_on_device(&mut self, message: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut card = self.card()?;
        if jpki_host::token_type(&mut card)? != TokenType::Iphone {
            return Err(ReaderError::PinNeededToRead);
        }
        card.reset_when_done();
        jpki_host::sign(&mut card, message)
    }

    fn attest_face(&mut self, _purpose: Purpose, _challenge: &str, _details: &str) -> Result<Attestation, ReaderError> {
        Err(ReaderError::NoCamera)
    }

    fn attest_visual(&mut self, purpose: Purpose, challenge: &str, details: &str) -> Result<Attestation, ReaderError> {
        if !self.visual_mode {
            return Err(ReaderError::VisualModeOff);
        }
        let attestation = self.attest(purpose, challenge, "visual", details)?;
        // Visual mode ends with this patient.
        self.visual_mode = false;
        Ok(attestation)
    }

    fn remove_card(&mut self) {
        // A physical card is removed by the patient; the reader forgets visual mode.
        self.visual_mode = false;
    }
}
