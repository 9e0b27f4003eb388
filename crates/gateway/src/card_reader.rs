//! The reader the gateway drives: the simulator of the demo (card files and a fake camera,
//! `[reader] simulator = true`), or a PC/SC reader at the reception PC (`[reader] pcsc =
//! "name"`, empty for the first one) with the patient's card or phone on it. Without either,
//! the page says the card path is not set up and every other path works.
//!
//! A PC/SC reader is opened when first needed and again after it failed (unplugged, pcscd
//! restarted), so that the gateway starts and serves numbers whatever the reader's state.

use onshi_reader::pcsc_reader::PcscReader;
use onshi_reader::{CardReader, ReaderError, ReaderFile, ReaderState, SimulatedReader};

// One per gateway, behind a lock: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum GatewayReader {
    None,
    Simulated(Box<SimulatedReader>),
    Pcsc { file: ReaderFile, name: Option<String>, open: Option<PcscReader> },
}

/// What the page shows about the reader.
pub enum ReaderView {
    /// No card path configured.
    NotConfigured,
    /// The reader could not be reached; why, in words staff can act on.
    Unavailable(String),
    Empty,
    CardPresent {
        serial: String,
    },
}

impl GatewayReader {
    pub fn simulated(file: ReaderFile) -> GatewayReader {
        GatewayReader::Simulated(Box::new(SimulatedReader::new(file)))
    }

    pub fn pcsc(file: ReaderFile, name: &str) -> GatewayReader {
        GatewayReader::Pcsc { file, name: Some(name.to_string()).filter(|n| !n.is_empty()), open: None }
    }

    pub fn is_simulator(&self) -> bool {
        matches!(self, GatewayReader::Simulated(_))
    }

    pub fn is_pcsc(&self) -> bool {
        matches!(self, GatewayReader::Pcsc { .. })
    }

    /// The simulator, for its controls (placing a card, the camera).
    pub fn simulator(&mut self) -> Option<&mut SimulatedReader> {
        match self {
            GatewayReader::Simulated(reader) => Some(reader.as_mut()),
            _ => None,
        }
    }

    /// The reader as the card flows use it.
    pub fn card_reader(&mut self) -> Result<&mut dyn CardReader, ReaderError> {
        match self {
            GatewayReader::None => Err(ReaderError::NoCard),
            GatewayReader::Simulated(reader) => Ok(reader.as_mut()),
            GatewayReader::Pcsc { .. } => Ok(self.open_pcsc()?),
        }
    }

    fn open_pcsc(&mut self) -> Result<&mut PcscReader, ReaderError> {
        let GatewayReader::Pcsc { file, name, open } = self else { return Err(ReaderError::NoCard) };
        if open.is_none() {
            *open = Some(PcscReader::open(file.clone(), name.as_deref())?);
        }
        Ok(open.as_mut().expect("opened above"))
    }

    /// Forgets a PC/SC connection that failed, so that the next use opens it again.
    pub fn reset_after(&mut self, error: &ReaderError) {
        if let (GatewayReader::Pcsc { open, .. }, ReaderError::Pcsc(_)) = (self, error) {
            *open = None;
        }
    }

    pub fn view(&mut self) -> ReaderView {
        if matches!(self, GatewayReader::None) {
            return ReaderView::NotConfigured;
        }
        let state = match self.card_reader() {
            Ok(reader) => reader.state(),
            Err(e) => {
                let problem = e.to_string();
                self.reset_after(&e);
                return ReaderView::Unavailable(problem);
            }
        };
        match state {
            ReaderState::Empty => ReaderView::Empty,
            ReaderState::CardPresent { serial } => ReaderView::CardPresent { serial },
        }
    }

    pub fn pin_retries_left(&self) -> Option<u8> {
        match self {
            GatewayReader::Simulated(reader) => reader.pin_retries_left(),
            _ => None,
        }
    }

    pub fn visual_mode(&self) -> bool {
        match self {
            GatewayReader::Simulated(reader) => reader.visual_mode(),
            GatewayReader::Pcsc { open: Some(reader), .. } => reader.visual_mode(),
            _ => false,
        }
    }

    pub fn enable_visual_mode(&mut self, password: &str) -> Result<(), ReaderError> {
        match self {
            GatewayReader::None => Err(ReaderError::NoCard),
            GatewayReader::Simulated(reader) => reader.enable_visual_mode(password),
            GatewayReader::Pcsc { .. } => self.open_pcsc()?.enable_visual_mode(password),
        }
    }

    /// The reader's attestation of a visual check recorded while the line was down (its
    /// device key only: the card has long left the reader).
    pub fn attest_recorded_visual(
        &self,
        challenge: &str,
        certificate_pem: &str,
        details: &str,
    ) -> Result<onshi_api::card::Attestation, ReaderError> {
        let file = match self {
            GatewayReader::None => return Err(ReaderError::NoCard),
            GatewayReader::Simulated(reader) => reader.reader_file(),
            GatewayReader::Pcsc { file, .. } => file,
        };
        file.attest_recorded_visual(challenge, certificate_pem, details)
    }

    /// Visual mode ends with the patient it was switched on for.
    pub fn end_visual_mode(&mut self) {
        match self {
            GatewayReader::Simulated(reader) => reader.end_visual_mode(),
            GatewayReader::Pcsc { open: Some(reader), .. } => reader.end_visual_mode(),
            _ => {}
        }
    }
}
