//! Puts a virtual card into vpcd, the virtual reader driver of pcscd (Debian
//! `vsmartcard-vpcd`): the card connects to the driver's socket and answers what any PC/SC
//! application sends to that reader. Placing the card is connecting; removing it is closing.
//!
//! The protocol (vsmartcard's vpcd/vpicc): every message is a 2-byte big-endian length and its
//! bytes. A 1-byte message is a control: 0 power off, 1 power on, 2 reset, 4 "send your ATR"
//! (answered with the ATR as a message). Anything longer is a command APDU, answered with the
//! response APDU. Messages are at most 65,535 bytes by construction, so nothing grows unbounded.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use onshi_pki::applet::{Applet, atr};

/// vpcd's port unless configured otherwise (`/etc/reader.conf.d/vpcd`).
pub const DEFAULT_PORT: u16 = 35963;

const POWER_OFF: u8 = 0;
const POWER_ON: u8 = 1;
const RESET: u8 = 2;
const SEND_ATR: u8 = 4;

/// Why the card left the reader.
#[derive(Debug, thiserror::Error)]
pub enum VpcdError {
    #[error(
        "cannot reach the virtual reader at {addr} within {seconds} s: {source}; is pcscd running with vpcd (Debian: apt-get install pcscd vsmartcard-vpcd)?"
    )]
    Connect { addr: SocketAddr, seconds: u64, source: io::Error },
    #[error("the virtual reader at {addr} closed the connection or failed: {source}")]
    Io { addr: SocketAddr, source: io::Error },
}

/// The next whole message in `pending` (bytes read from vpcd's socket), taken out of it.
pub fn take_message(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let [high, low, ..] = pending[..] else { return None };
    let length = usize::from(u16::from_be_bytes([high, low]));
    if pending.len() < 2 + length {
        return None;
    }
    let message = pending[2..2 + length].to_vec();
    pending.drain(..2 + length);
    Some(message)
}

fn write_message(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let length = u16::try_from(message.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a response over 65,535 bytes"))?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed)
}

/// A card placed on the virtual reader.
pub struct PlacedCard {
    stream: TcpStream,
    addr: SocketAddr,
}

impl PlacedCard {
    /// Connects to vpcd at `addr`, waiting up to `wait` for it to listen (pcscd may be starting).
    pub fn place(addr: SocketAddr, wait: Duration) -> Result<PlacedCard, VpcdError> {
        let deadline = Instant::now() + wait;
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(PlacedCard { stream, addr });
                }
                Err(source) if Instant::now() >= deadline => {
                    return Err(VpcdError::Connect { addr, seconds: wait.as_secs(), source });
                }
                // Retried at a fixed pace until the deadline: vpcd listens once pcscd has loaded it.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Answers the reader until it closes the connection, `keep_going` says to remove the card
    /// (checked whenever a message arrives or every `poll`), or `leave_after` command APDUs
    /// were answered (the card then leaves before the next one, as a card pulled away would).
    pub fn serve(
        mut self,
        applet: &mut Applet,
        poll: Duration,
        leave_after: Option<u64>,
        keep_going: &dyn Fn() -> bool,
    ) -> Result<(), VpcdError> {
        let addr = self.addr;
        let io = |source| VpcdError::Io { addr, source };
        self.stream.set_read_timeout(Some(poll)).map_err(io)?;
        // Bytes read but not yet a whole message: a timeout may fall inside one.
        let mut pending = Vec::new();
        let mut buffer = [0u8; 4096];
        let mut answered = 0u64;
        while keep_going() {
            let Some(message) = take_message(&mut pending) else {
                match self.stream.read(&mut buffer) {
                    Ok(0) => return Ok(()),
                    Ok(n) => pending.extend_from_slice(&buffer[..n]),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                    Err(e) => return Err(io(e)),
                }
                continue;
            };
            match message.as_slice() {
                [POWER_OFF] | [POWER_ON] | [RESET] => applet.reset(),
                [SEND_ATR] => write_message(&mut self.stream, &atr(applet.card().token())).map_err(io)?,
                [_] => {} // an unknown control: vpcd sends no others
                apdu => {
                    if leave_after.is_some_and(|n| answered >= n) {
                        return Ok(());
                    }
                    answered += 1;
                    let response = applet.answer(apdu);
                    write_message(&mut self.stream, &response).map_err(io)?;
                }
            }
        }
        Ok(())
    }
}
