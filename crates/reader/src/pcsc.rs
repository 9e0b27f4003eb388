//! PC/SC, the smart-card interface of every desktop OS, reached without linking against it at
//! build time: on Linux and other Unix the pcsc-lite client library (`libpcsclite.so.1`) is
//! loaded when a reader is first used, so the build needs no `libpcsclite-dev` and a gateway
//! without a reader never needs the library at all; on Windows `winscard.dll` is part of the
//! system and linked as usual. macOS is not supported here.
//!
//! Only what the card path uses: a context, the reader list, waiting for a card, connecting,
//! transmitting APDUs, and disconnecting.

use std::ffi::{CString, c_char, c_void};
use std::time::Duration;

#[cfg(windows)]
mod sys {
    pub type Long = i32;
    pub type Dword = u32;
    pub type Context = usize;
    pub type Handle = usize;
    pub const MAX_ATR_SIZE: usize = 36;
}

#[cfg(not(windows))]
mod sys {
    // pcsc-lite's types: LONG and DWORD are C `long` and `unsigned long` (64-bit on 64-bit Linux).
    pub type Long = std::ffi::c_long;
    pub type Dword = std::ffi::c_ulong;
    pub type Context = std::ffi::c_long;
    pub type Handle = std::ffi::c_long;
    pub const MAX_ATR_SIZE: usize = 33;
}

use sys::{Context as RawContext, Dword, Handle, Long, MAX_ATR_SIZE};

const SCARD_SCOPE_SYSTEM: Dword = 2;
const SCARD_SHARE_SHARED: Dword = 2;
const SCARD_PROTOCOL_T0: Dword = 1;
const SCARD_PROTOCOL_T1: Dword = 2;
const SCARD_LEAVE_CARD: Dword = 0;
const SCARD_RESET_CARD: Dword = 1;
const SCARD_STATE_UNAWARE: Dword = 0;
const SCARD_STATE_EMPTY: Dword = 0x10;
const SCARD_STATE_PRESENT: Dword = 0x20;

/// Return codes named in messages (the rest are shown in hex).
mod code {
    pub const SUCCESS: u32 = 0;
    pub const TIMEOUT: u32 = 0x8010_000A;
    pub const NO_SMARTCARD: u32 = 0x8010_000C;
    pub const UNKNOWN_READER: u32 = 0x8010_0009;
    pub const READER_UNAVAILABLE: u32 = 0x8010_0017;
    pub const NO_SERVICE: u32 = 0x8010_001D;
    pub const NO_READERS_AVAILABLE: u32 = 0x8010_002E;
    pub const UNRESPONSIVE_CARD: u32 = 0x8010_0066;
    pub const UNPOWERED_CARD: u32 = 0x8010_0067;
    pub const RESET_CARD: u32 = 0x8010_0068;
    pub const REMOVED_CARD: u32 = 0x8010_0069;
}

#[repr(C)]
struct ReaderState {
    reader: *const c_char,
    user_data: *mut c_void,
    current_state: Dword,
    event_state: Dword,
    atr_len: Dword,
    atr: [u8; MAX_ATR_SIZE],
}

#[repr(C)]
struct IoRequest {
    protocol: Dword,
    pci_length: Dword,
}

/// What went wrong between the host and the card, in words reception can act on.
#[derive(Debug, thiserror::Error)]
pub enum PcscError {
    #[error("{0}")]
    Unavailable(String),
    #[error("no smart-card reader is connected: plug the reader in (USB)")]
    NoReader,
    #[error("the reader {0:?} is not connected")]
    UnknownReader(String),
    #[error("no card on the reader: place the card (カードを置いてください)")]
    NoCard,
    #[error(
        "the card was removed before it finished: place it again and keep it on the reader until the end (カードを置いたままにしてください)"
    )]
    Removed,
    #[error("the card does not answer: place it again, or use the insurance number (資格確認書・保険証)")]
    Unresponsive,
    #[error("PC/SC {call} failed with 0x{code:08X}")]
    Failed { call: &'static str, code: u32 },
}

fn check(call: &'static str, rv: Long) -> Result<(), PcscError> {
    // pcsc-lite returns a C long holding the 32-bit code; Windows a 32-bit LONG.
    let code = rv as u32;
    match code {
        code::SUCCESS => Ok(()),
        code::NO_SERVICE => Err(PcscError::Unavailable(
            "the smart-card service is not running: start pcscd (Linux) or the Smart Card service (Windows)".into(),
        )),
        code::NO_READERS_AVAILABLE => Err(PcscError::NoReader),
        code::NO_SMARTCARD => Err(PcscError::NoCard),
        code::REMOVED_CARD | code::RESET_CARD => Err(PcscError::Removed),
        code::UNRESPONSIVE_CARD | code::UNPOWERED_CARD => Err(PcscError::Unresponsive),
        code::READER_UNAVAILABLE => Err(PcscError::NoReader),
        _ => Err(PcscError::Failed { call, code }),
    }
}

type EstablishContext = unsafe extern "system" fn(Dword, *const c_void, *const c_void, *mut RawContext) -> Long;
type ReleaseContext = unsafe extern "system" fn(RawContext) -> Long;
type ListReaders = unsafe extern "system" fn(RawContext, *const c_char, *mut c_char, *mut Dword) -> Long;
type Connect = unsafe extern "system" fn(RawContext, *const c_char, Dword, Dword, *mut Handle, *mut Dword) -> Long;
type Disconnect = unsafe extern "system" fn(Handle, Dword) -> Long;
type Transmit = unsafe extern "system" fn(Handle, *const IoRequest, *const u8, Dword, *mut IoRequest, *mut u8, *mut Dword) -> Long;
type GetStatusChange = unsafe extern "system" fn(RawContext, Dword, *mut ReaderState, Dword) -> Long;

/// The library's entry points.
struct Api {
    establish_context: EstablishContext,
    release_context: ReleaseContext,
    list_readers: ListReaders,
    connect: Connect,
    disconnect: Disconnect,
    transmit: Transmit,
    get_status_change: GetStatusChange,
}

#[cfg(windows)]
#[link(name = "winscard")]
unsafe extern "system" {
    fn SCardEstablishContext(scope: Dword, r1: *const c_void, r2: *const c_void, context: *mut RawContext) -> Long;
    fn SCardReleaseContext(context: RawContext) -> Long;
    fn SCardListReadersA(context: RawContext, groups: *const c_char, readers: *mut c_char, length: *mut Dword) -> Long;
    fn SCardConnectA(
        context: RawContext,
        reader: *const c_char,
        share: Dword,
        protocols: Dword,
        card: *mut Handle,
        active: *mut Dword,
    ) -> Long;
    fn SCardDisconnect(card: Handle, disposition: Dword) -> Long;
    fn SCardTransmit(
        card: Handle,
        send_pci: *const IoRequest,
        send: *const u8,
        send_length: Dword,
        recv_pci: *mut IoRequest,
        recv: *mut u8,
        recv_length: *mut Dword,
    ) -> Long;
    fn SCardGetStatusChangeA(context: RawContext, timeout: Dword, states: *mut ReaderState, count: Dword) -> Long;
}

#[cfg(windows)]
fn load() -> Result<Api, String> {
    Ok(Api {
        establish_context: SCardEstablishContext,
        release_context: SCardReleaseContext,
        list_readers: SCardListReadersA,
        connect: SCardConnectA,
        disconnect: SCardDisconnect,
        transmit: SCardTransmit,
        get_status_change: SCardGetStatusChangeA,
    })
}

#[cfg(all(unix, not(target_os = "macos")))]
fn load() -> Result<Api, String> {
    use std::ffi::CStr;
    const LIBRARY: &CStr = c"libpcsclite.so.1";
    // SAFETY: dlopen with a constant, NUL-terminated name; the handle is kept for the life of
    // the process (never dlclosed), so the function pointers taken from it stay valid.
    let library = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if library.is_null() {
        return Err("the PC/SC library libpcsclite.so.1 is not installed: install pcscd (Debian/Ubuntu: apt-get install pcscd)".to_string());
    }
    fn symbol<T: Copy>(library: *mut c_void, name: &CStr) -> Result<T, String> {
        // SAFETY: dlsym on a live handle with a NUL-terminated name.
        let address = unsafe { libc::dlsym(library, name.as_ptr()) };
        if address.is_null() {
            return Err(format!("libpcsclite.so.1 has no {}; reinstall pcscd", name.to_string_lossy()));
        }
        assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>(), "a function pointer");
        // SAFETY: the symbol is the pcsc-lite function whose C signature `T` spells out (see
        // <winscard.h> of pcsc-lite); a function pointer has the size of a data pointer here.
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&address) })
    }
    Ok(Api {
        establish_context: symbol(library, c"SCardEstablishContext")?,
        release_context: symbol(library, c"SCardReleaseContext")?,
        list_readers: symbol(library, c"SCardListReaders")?,
        connect: symbol(library, c"SCardConnect")?,
        disconnect: symbol(library, c"SCardDisconnect")?,
        transmit: symbol(library, c"SCardTransmit")?,
        get_status_change: symbol(library, c"SCardGetStatusChange")?,
    })
}

#[cfg(target_os = "macos")]
fn load() -> Result<Api, String> {
    Err("PC/SC readers are not supported on macOS by this build; use the simulator".to_string())
}

fn api() -> Result<&'static Api, PcscError> {
    static API: std::sync::OnceLock<Result<Api, String>> = std::sync::OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| PcscError::Unavailable(e.clone()))
}

/// A connection to the smart-card service.
pub struct Context {
    api: &'static Api,
    raw: RawContext,
}

// SAFETY: a context is used by one thread at a time (the reader holds it behind `&mut` or a
// lock); pcsc-lite and winscard allow a context to move between threads.
unsafe impl Send for Context {}

/// What a reader holds right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Empty,
    /// A card, with the ATR it answered power-on with.
    Card {
        atr: Vec<u8>,
    },
}

impl Context {
    pub fn establish() -> Result<Context, PcscError> {
        let api = api()?;
        let mut raw: RawContext = 0;
        // SAFETY: the out-pointer is valid; the reserved arguments are null as documented.
        check("SCardEstablishContext", unsafe {
            (api.establish_context)(SCARD_SCOPE_SYSTEM, std::ptr::null(), std::ptr::null(), &mut raw)
        })?;
        Ok(Context { api, raw })
    }

    /// The names of the connected readers.
    pub fn readers(&self) -> Result<Vec<String>, PcscError> {
        let mut length: Dword = 0;
        // SAFETY: asking for the length with a null buffer, as documented.
        check("SCardListReaders", unsafe { (self.api.list_readers)(self.raw, std::ptr::null(), std::ptr::null_mut(), &mut length) })?;
        // A multi-string; bounded by what the service says, at most 64 KiB.
        let mut buffer = vec![0u8; (length as usize).min(65_536)];
        let mut length = buffer.len() as Dword;
        // SAFETY: the buffer holds `length` bytes.
        check("SCardListReaders", unsafe { (self.api.list_readers)(self.raw, std::ptr::null(), buffer.as_mut_ptr().cast(), &mut length) })?;
        buffer.truncate(length as usize);
        Ok(buffer.split(|b| *b == 0).filter(|name| !name.is_empty()).map(|name| String::from_utf8_lossy(name).into_owned()).collect())
    }

    /// The reader's state now, or after it changes from `known` within `timeout`.
    pub fn slot(&self, reader: &str, known: Option<&Slot>, timeout: Duration) -> Result<Slot, PcscError> {
        let name = CString::new(reader).map_err(|_| PcscError::UnknownReader(reader.to_string()))?;
        let current = match known {
            None => SCARD_STATE_UNAWARE,
            Some(Slot::Empty) => SCARD_STATE_EMPTY,
            Some(Slot::Card { .. }) => SCARD_STATE_PRESENT,
        };
        let mut state = ReaderState {
            reader: name.as_ptr(),
            user_data: std::ptr::null_mut(),
            current_state: current,
            event_state: 0,
            atr_len: 0,
            atr: [0; MAX_ATR_SIZE],
        };
        let millis = timeout.as_millis().min(u128::from(u32::MAX - 1)) as Dword;
        // SAFETY: one valid state whose reader name outlives the call.
        let rv = unsafe { (self.api.get_status_change)(self.raw, millis, &mut state, 1) };
        if rv as u32 == code::TIMEOUT {
            return Ok(known.cloned().unwrap_or(Slot::Empty));
        }
        check("SCardGetStatusChange", rv).map_err(|e| match e {
            PcscError::Failed { code: code::UNKNOWN_READER, .. } => PcscError::UnknownReader(reader.to_string()),
            other => other,
        })?;
        if state.event_state & SCARD_STATE_PRESENT != 0 {
            let length = (state.atr_len as usize).min(MAX_ATR_SIZE);
            Ok(Slot::Card { atr: state.atr[..length].to_vec() })
        } else {
            Ok(Slot::Empty)
        }
    }

    /// Connects to the card in `reader` (shared, T=1 or T=0).
    pub fn connect(&self, reader: &str) -> Result<Card<'_>, PcscError> {
        let name = CString::new(reader).map_err(|_| PcscError::UnknownReader(reader.to_string()))?;
        let mut handle: Handle = 0;
        let mut protocol: Dword = 0;
        // SAFETY: valid name and out-pointers.
        check("SCardConnect", unsafe {
            (self.api.connect)(
                self.raw,
                name.as_ptr(),
                SCARD_SHARE_SHARED,
                SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                &mut handle,
                &mut protocol,
            )
        })
        .map_err(|e| match e {
            PcscError::Failed { code: code::UNKNOWN_READER, .. } => PcscError::UnknownReader(reader.to_string()),
            other => other,
        })?;
        Ok(Card { context: self, reader: reader.to_string(), handle, protocol, reset_on_drop: false })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context was established and is released once.
        unsafe { (self.api.release_context)(self.raw) };
    }
}

/// A connection to the card in a reader.
pub struct Card<'a> {
    context: &'a Context,
    reader: String,
    handle: Handle,
    protocol: Dword,
    reset_on_drop: bool,
}

impl Card<'_> {
    /// Sends a command APDU and returns the response APDU (data and status word). A failure
    /// because the card left the reader says so ([`PcscError::Removed`]).
    pub fn transmit(&self, apdu: &[u8]) -> Result<Vec<u8>, PcscError> {
        self.transmit_once(apdu).map_err(|e| {
            // Drivers report a card pulled mid-command differently (an I/O failure, no response);
            // the reader's own state tells. It may take the service a moment to notice, so the
            // change is awaited briefly.
            let left =
                matches!(self.context.slot(&self.reader, Some(&Slot::Card { atr: Vec::new() }), Duration::from_secs(1)), Ok(Slot::Empty));
            if left { PcscError::Removed } else { e }
        })
    }

    fn transmit_once(&self, apdu: &[u8]) -> Result<Vec<u8>, PcscError> {
        let request = IoRequest { protocol: self.protocol, pci_length: std::mem::size_of::<IoRequest>() as Dword };
        // A short response is at most 256 bytes and the status word.
        let mut response = vec![0u8; 258];
        let mut length = response.len() as Dword;
        // SAFETY: the buffers are valid for the lengths given; the receive PCI may be null.
        check("SCardTransmit", unsafe {
            (self.context.api.transmit)(
                self.handle,
                &request,
                apdu.as_ptr(),
                apdu.len() as Dword,
                std::ptr::null_mut(),
                response.as_mut_ptr(),
                &mut length,
            )
        })?;
        response.truncate(length as usize);
        if response.len() < 2 {
            return Err(PcscError::Unresponsive);
        }
        Ok(response)
    }

    /// Resets the card when this connection ends, so that a verified PIN does not outlive it.
    pub fn reset_when_done(&mut self) {
        self.reset_on_drop = true;
    }
}

impl Drop for Card<'_> {
    fn drop(&mut self) {
        let disposition = if self.reset_on_drop { SCARD_RESET_CARD } else { SCARD_LEAVE_CARD };
        // SAFETY: the handle was connected and is disconnected once.
        unsafe { (self.context.api.disconnect)(self.handle, disposition) };
    }
}
