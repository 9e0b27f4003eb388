//! The file interface: requests dropped into `req/`, answers written to `res/` (and card
//! results to `face/`). Polling, not OS file events, so it behaves the same on the Windows PCs
//! clinics run and on network drives.
//!
//! A request is answered exactly once: its journal row and its answer's outbox row are
//! committed together (the answer is then durable), the request is removed, and the answer is
//! written from the outbox (see [`flush`] for the order and why). A file still being written is
//! not read half-way: one that does not parse yet is read again only once it has changed, with
//! a growing pause between reads ([`Watched`]), and refused only after a quiet period; even
//! then it is left in `req/` with every byte, never moved or truncated under its writer.
//!
//! What the gateway will not read (a file over its size limit, a link, a FIFO, a folder) gets
//! an `.err` naming why and is left where it is. A request is opened once, without following
//! links, and judged by the handle it was read from.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::digest::{SHA256, digest};

use crate::answer_xml::{self, Reference, SingleResult, refusal_ja};
use crate::check::{FileReply, Outcome};
use crate::gateway::{Gateway, GatewayError};
use crate::request::{self, Kind, Request, RequestError};
use crate::store::{OutFile, Store, StoreError};
use crate::xml::{self, Charset};

/// What became of one request file.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Answered,
    /// Answered before (a restart between answering and removing it).
    AlreadyAnswered,
    Refused(String),
    /// Not complete yet; looked at again on the next pass.
    NotYet,
}

/// Writes every file of the outbox not yet written, removing the requests they answer.
/// Each file goes through a hidden temporary name in its folder and a rename, so a watcher
/// never sees half a file.
///
/// The order, and why: the answer is already committed in the store (that is what answering
/// means), so the request is removed first; then the answer is staged, and its request's
/// journal rows are forgotten in the same transaction; then it is renamed into place. By the
/// time a client sees the answer, the gateway has forgotten the request, and the same file
/// sent again is a new request. Interrupted anywhere, the next flush takes up where it stopped.
///
/// The watcher, the re-verifier, the page and `onshi gateway batch` all flush; the store's
/// outbox guard makes them take turns, and each reads the outbox only once it has its turn.
pub fn flush(store: &Store) -> Result<usize, GatewayError> {
    let _turn = store.outbox_guard()?;
    let mut written = 0;
    for (id, file, staged) in store.unwritten()? {
        let tmp = temporary_name(&file.path);
        let io =
            |e: std::io::Error, path: &Path| GatewayError::File { what: "answer file", path: path.to_path_buf(), detail: e.to_string() };
        if !staged {
            if let Some(request) = &file.remove_after {
                match std::fs::remove_file(request) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e, request)),
                }
            }
            write_synced(&tmp, &file.bytes).map_err(|e| io(e, &tmp))?;
            let removed = file.remove_after.as_deref().and_then(Path::file_name).and_then(|n| n.to_str());
            store.mark_staged(id, removed)?;
        }
        // Staged and no temporary file: it was renamed before a restart (and may have been
        // taken by the レセコン since), so it is not written again.
        if tmp.exists() {
            let target = free_name(&file.path).map_err(|e| io(e, &file.path))?;
            std::fs::rename(&tmp, &target).map_err(|e| io(e, &target))?;
            sync_folder(&target);
        }
        store.mark_written(id)?;
        written += 1;
    }
    Ok(written)
}

/// How many answers may wait under one name (`x.xml`, `x.2.xml`, … `x.1000.xml`) before the
/// outbox stops and says so: a client that sends the same name a thousand times without taking
/// an answer is broken, and the folder should not fill up behind it.
pub const SAME_NAME_MAX: u32 = 1_000;

/// `path`, or when something already has that name (an answer the レセコン has not taken yet),
/// the first free `stem.N.ext`: an answer never replaces one not yet read. Only the outbox
/// writes into `res/` and `face/`, and only under its guard, so the name stays free until the
/// rename. The suffix goes before the extension so that clients matching `*.xml` still see
/// it, and after a dot so that it does not read as another request's `_N` name.
pub fn free_name(path: &Path) -> std::io::Result<PathBuf> {
    let taken = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if !taken(path) {
        return Ok(path.to_path_buf());
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = name.rsplit_once('.').map_or((name.as_str(), None), |(s, e)| (s, Some(e)));
    (2..=SAME_NAME_MAX)
        .map(|n| path.with_file_name(ext.map_or_else(|| format!("{stem}.{n}"), |ext| format!("{stem}.{n}.{ext}"))))
        .find(|candidate| !taken(candidate))
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "{SAME_NAME_MAX} files named like {name} wait in the folder; the receipt computer is not taking its answers"
            ))
        })
}

/// The names in `res/` of a refused request's copy and its `.err`: `x.xml` and `x.err`, or
/// when either is still there from an earlier refusal under the same name, the first
/// `x.N.xml` and `x.N.err` both free, so that the pair keeps one name (see [`free_name`]).
fn refusal_pair(res: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "xml"));
    let taken = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    (1..=SAME_NAME_MAX)
        .map(|n| {
            let stem = if n == 1 { stem.to_string() } else { format!("{stem}.{n}") };
            (res.join(format!("{stem}.{ext}")), res.join(format!("{stem}.err")))
        })
        .find(|(copy, err)| !taken(copy) && !taken(err))
        // Past the limit the outbox itself says that too many wait (see `free_name`).
        .unwrap_or_else(|| (res.join(name), res.join(format!("{stem}.err"))))
}

fn temporary_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.onshi-tmp"))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename durable where the platform allows opening a folder (not on Windows).
fn sync_folder(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

/// Entries of `req/` named like requests, oldest name first: files, and also links, FIFOs
/// and folders under such a name, which are refused with a word rather than passed over.
pub fn pending_requests(req_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(req_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(Kind::is_request_name))
        .collect();
    found.sort();
    Ok(found)
}

/// A file's identity and state as the listing sees it, without reading it: size, modification
/// time and, on Unix, device and inode. On Unix nothing cheap tells whether another process
/// still has a file open for writing, so "still being written" is read from this stamp
/// changing over time; on Windows a writer's lock is also seen when the file is opened (see
/// [`still_open_for_writing`]). A writer whose writes change neither (a file sized first, on a
/// file system with coarse or lazily updated times) is seen once they do, at the latest when
/// it closes the file; meanwhile its file may get an `.err`, but it is never moved or cut,
/// and it is answered once whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub modified: Option<SystemTime>,
    /// (device, inode) on Unix: a file replaced under the same name is another file.
    pub id: (u64, u64),
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let id = (0, 0);
        Stamp { len: meta.len(), modified: meta.modified().ok(), id }
    }

    /// The journal's key for a refusal of a file left in place: the same file with the same
    /// stamp is not refused again after a restart; a new or changed one is looked at anew.
    fn journal_key(&self, why: &str) -> String {
        let nanos = self.modified.and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        format!("left:{why}:{}:{nanos}:{}:{}", self.len, self.id.0, self.id.1)
    }
}

/// How much longer than `settle` a file that does not parse must stay unchanged before it is
/// refused when it was seen to change while watched: a writer was at work, and one that pauses
/// (a busy PC, a network drive) must not have its file refused under it. A minute by default.
pub const GROWING_SETTLE_FACTOR: u32 = 30;
/// The wait before a file found incomplete may be read again once it has changed, doubled
/// after each such read up to [`REREAD_MAX`]: a large file written slowly is read a few times
/// a second at most, not on every 10 ms pass.
pub const REREAD_FIRST: Duration = Duration::from_millis(20);
/// The longest wait between two reads of a changing, still incomplete file: what a request
/// written in place slowly may wait beyond its last byte.
pub const REREAD_MAX: Duration = Duration::from_secs(1);

/// What the watcher remembers of each file in `req/` between passes (in memory: after a
/// restart every file is new, and waits its settle time again). Pure: the caller gives the
/// time, so the back-off and the settle periods are tested without waiting.
#[derive(Debug, Default)]
pub struct Watched {
    files: HashMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    stamp: Stamp,
    /// When the stamp last changed, or the file was first seen.
    changed_at: Instant,
    /// Seen to change while watched: a writer is (or was) at work.
    grew: bool,
    /// Read with this stamp and found incomplete: why, and the charset for its `.err`. Not
    /// read again until the stamp changes.
    incomplete: Option<(String, Charset)>,
    /// Not read before this, even when changed.
    next_read: Instant,
    reread_after: Duration,
    /// Refused and left in `req/`: told once for as long as the file is there.
    told: bool,
}

/// What to do with a file on this pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// Read it (new, or changed and past its back-off).
    Read,
    /// Nothing new to read, or too soon to read it again.
    Wait,
    /// It stayed incomplete and unchanged for its whole settle period.
    Incomplete { quiet: Duration, problem: String, charset: Charset },
}

impl Watched {
    /// Notes the file's stamp at `now` and says what to do with it.
    pub fn look(&mut self, name: &str, stamp: Stamp, now: Instant, settle: Duration) -> Look {
        let seen = self.files.entry(name.to_string()).or_insert_with(|| Seen {
            stamp,
            changed_at: now,
            grew: false,
            incomplete: None,
            next_read: now,
            reread_after: REREAD_FIRST,
            told: false,
        });
        if seen.stamp != stamp {
            seen.stamp = stamp;
            seen.changed_at = now;
            seen.grew = true;
            seen.incomplete = None;
        }
        if let Some((problem, charset)) = &seen.incomplete {
            let needed = if seen.grew { settle * GROWING_SETTLE_FACTOR } else { settle };
            let quiet = now.saturating_duration_since(seen.changed_at);
            return if quiet >= needed && !seen.told {
                Look::Incomplete { quiet, problem: problem.clone(), charset: *charset }
            } else {
                Look::Wait
            };
        }
        if now >= seen.next_read { Look::Read } else { Look::Wait }
    }

    /// The file was read and is not a whole request yet: it is not read again until it
    /// changes, and then not before its back-off, which doubles.
    pub fn found_incomplete(&mut self, name: &str, problem: String, charset: Charset, now: Instant) {
        if let Some(seen) = self.files.get_mut(name) {
            seen.incomplete = Some((problem, charset));
            seen.next_read = now + seen.reread_after;
            seen.reread_after = (seen.reread_after * 2).min(REREAD_MAX);
        }
    }

    /// Whether the file was seen to change while watched (a writer at work).
    pub fn grew(&self, name: &str) -> bool {
        self.files.get(name).is_some_and(|seen| seen.grew)
    }

    /// Not read again before it has been quiet for `settle` (and then read once more).
    pub fn postpone(&mut self, name: &str, settle: Duration) {
        if let Some(seen) = self.files.get_mut(name) {
            seen.next_read = seen.next_read.max(seen.changed_at + settle);
        }
    }

    /// How long the file has not changed.
    pub fn quiet(&self, name: &str, now: Instant) -> Duration {
        self.files.get(name).map_or(Duration::ZERO, |seen| now.saturating_duration_since(seen.changed_at))
    }

    /// Whether the file was refused and left in place already (then it is not refused again).
    pub fn told(&self, name: &str) -> bool {
        self.files.get(name).is_some_and(|seen| seen.told)
    }

    pub fn mark_told(&mut self, name: &str) {
        if let Some(seen) = self.files.get_mut(name) {
            seen.told = true;
        }
    }

    /// Forgets files no longer in `req/`: one that comes back under the same name is new.
    pub fn keep_only(&mut self, names: &std::collections::HashSet<String>) {
        self.files.retain(|name, _| names.contains(name));
    }
}

/// Why a request was refused without being read whole; it is left where it is.
enum Unread {
    /// A link, FIFO, socket, device or folder under a request's name.
    NotAFile(&'static str),
    TooLarge {
        bytes: u64,
        limit: u64,
    },
    Incomplete {
        quiet: Duration,
        problem: String,
    },
}

impl Unread {
    fn key(&self) -> &'static str {
        match self {
            Unread::NotAFile(_) => "not-a-file",
            Unread::TooLarge { .. } => "too-large",
            Unread::Incomplete { .. } => "incomplete",
        }
    }

    /// What staff read first, and the problem for the vendor.
    fn words(&self) -> (&'static str, String) {
        match self {
            Unread::NotAFile(what) => (
                refusal_ja::NOT_A_FILE,
                format!(
                    "this is {what} in req/, not a regular file; the gateway reads only regular files, opened once and never through a link (a link could make it read any file on this PC); it was not read and is left where it is: remove it and write the request as a file"
                ),
            ),
            Unread::TooLarge { bytes, limit } => (
                refusal_ja::TOO_LARGE,
                format!(
                    "{}; it was not read and is left in req/: delete it, and send a smaller file",
                    crate::xml::XmlError::TooLarge { bytes: *bytes, limit: *limit }
                ),
            ),
            Unread::Incomplete { quiet, problem } => (
                refusal_ja::INCOMPLETE,
                format!(
                    "the file is not a whole request ({problem}) and has not changed for {:.1} s; it is left in req/ as it is, with every byte (nothing was moved or cut): if its writer finishes it, it is answered then; otherwise delete it and send the request again",
                    quiet.as_secs_f64()
                ),
            ),
        }
    }
}

/// What kind of thing a non-regular entry is, for its `.err`.
fn not_a_file(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Opens a request for reading without following a link, and on Unix without waiting for a
/// writer should a FIFO have taken its name since it was listed (reads of a regular file are
/// unaffected by `O_NONBLOCK`).
#[cfg(unix)]
fn open_request(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

/// Elsewhere the listing's `symlink_metadata` has refused links already, and the opened file
/// must still look like the listed one (size and time) to be read.
#[cfg(not(unix))]
fn open_request(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// A link put in the request's place since it was listed (`O_NOFOLLOW` refuses to open it).
fn is_a_link_now(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Reads the request from one handle: `None` when it is not the regular file the listing saw
/// any more (replaced, swapped for a link or FIFO, grown past `limit` since), or its writer
/// still holds it (Windows); the next pass looks again.
fn read_request(path: &Path, listed: Stamp, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = match open_request(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || still_open_for_writing(&e) || is_a_link_now(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let opened = file.metadata()?;
    if !opened.is_file() || Stamp::of(&opened) != listed {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(opened.len().min(limit) as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// The first bytes of a file refused for its size, to write its `.err` in its charset.
fn read_head(path: &Path) -> Charset {
    let mut head = Vec::new();
    match open_request(path) {
        Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => {
            let _ = file.take(4096).read_to_end(&mut head);
            xml::err_charset(&head)
        }
        _ => Charset::Utf8,
    }
}

/// Handles one request file end to end (answer recorded, request removed, answer written),
/// or leaves it for a later pass; `watched` remembers it between passes.
pub async fn handle(gateway: &Gateway, watched: &mut Watched, path: &Path) -> Result<Handled, GatewayError> {
    // When the レセコン wrote the request: the result file's wait is counted from there.
    let written = std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok();
    let handled = look_and_handle(gateway, watched, path, Instant::now()).await?;
    if handled != Handled::NotYet {
        flush(&gateway.store)?;
    }
    if handled == Handled::Answered
        && let Some(waited) = written.and_then(|at| std::time::SystemTime::now().duration_since(at).ok())
    {
        gateway.metrics.file_answered(waited);
    }
    Ok(handled)
}

async fn look_and_handle(gateway: &Gateway, watched: &mut Watched, path: &Path, now: Instant) -> Result<Handled, GatewayError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let settle = gateway.config.settle;
    let kind = Kind::of_file_name(&name);
    let limit = kind.map_or(xml::Limits::REQUEST, Kind::limits).bytes;
    let failed = |e: std::io::Error| GatewayError::File { what: "request", path: path.to_path_buf(), detail: e.to_string() };
    // Looked at without following a link: what sits in req/ is what is judged.
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Handled::NotYet),
        Err(e) => return Err(failed(e)),
    };
    let stamp = Stamp::of(&meta);
    let look = watched.look(&name, stamp, now, settle);
    if !meta.file_type().is_file() {
        return refuse_unread(gateway, watched, path, &name, stamp, Unread::NotAFile(not_a_file(meta.file_type())), Charset::Utf8);
    }
    // The size from the metadata, before a byte is read: a 50 MB file costs only its .err.
    if meta.len() > limit {
        if watched.told(&name) {
            return Ok(Handled::NotYet);
        }
        let charset = read_head(path);
        return refuse_unread(gateway, watched, path, &name, stamp, Unread::TooLarge { bytes: meta.len(), limit }, charset);
    }
    match look {
        Look::Wait => return Ok(Handled::NotYet),
        Look::Incomplete { quiet, problem, charset } => {
            return refuse_unread(gateway, watched, path, &name, stamp, Unread::Incomplete { quiet, problem }, charset);
        }
        Look::Read => {}
    }
    // A kind the gateway does not answer is refused whole, once it has settled.
    if kind.is_none() && watched.quiet(&name, now) < settle {
        return Ok(Handled::NotYet);
    }
    let Some(bytes) = read_request(path, stamp, limit).map_err(failed)? else { return Ok(Handled::NotYet) };
    let digest = onshi_domain::hex::encode(digest(&SHA256, &bytes).as_ref());
    if gateway.store.request_answered(&name, &digest)? {
        flush(&gateway.store)?;
        let _ = std::fs::remove_file(path);
        return Ok(Handled::AlreadyAnswered);
    }
    match kind {
        Some(kind) => read_and_answer(gateway, watched, path, &name, &digest, kind, &bytes, now).await,
        None => {
            let prefix = Kind::unsupported(&name).unwrap_or_default();
            let problem = Kind::unsupported_message(prefix);
            refuse(gateway, path, &name, &digest, Some(&bytes), (refusal_ja::UNSUPPORTED, &problem), xml::err_charset(&bytes))?;
            Ok(Handled::Refused(problem))
        }
    }
}

/// Refuses a file without reading it whole, and leaves it where it is: an `.err` naming why,
/// beside an empty file under the request's name (the pair clients watch for, with none of
/// the bytes the gateway did not read). Told once per file; a restart does not tell again
/// while the file is unchanged (its journal row).
fn refuse_unread(
    gateway: &Gateway,
    watched: &mut Watched,
    path: &Path,
    name: &str,
    stamp: Stamp,
    why: Unread,
    charset: Charset,
) -> Result<Handled, GatewayError> {
    if watched.told(name) {
        return Ok(Handled::NotYet);
    }
    watched.mark_told(name);
    let key = stamp.journal_key(why.key());
    if gateway.store.request_answered(name, &key)? {
        return Ok(Handled::NotYet);
    }
    let (for_staff, problem) = why.words();
    tracing::warn!(file = name, path = %path.display(), problem, "request refused unread and left in req/");
    let (copy, err) = refusal_pair(&gateway.config.res_dir(), name);
    let files = [
        OutFile { path: copy, bytes: Vec::new(), remove_after: None },
        OutFile { path: err, bytes: answer_xml::error_file(for_staff, &problem, charset), remove_after: None },
    ];
    gateway.store.answer_request(name, &key, &gateway.now().to_string(), &files)?;
    Ok(Handled::Refused(problem))
}

/// Reads a request of a kind the gateway answers, and answers or refuses it (in the store; the
/// caller flushes).
#[allow(clippy::too_many_arguments)]
async fn read_and_answer(
    gateway: &Gateway,
    watched: &mut Watched,
    path: &Path,
    name: &str,
    digest: &str,
    kind: Kind,
    bytes: &[u8],
    now: Instant,
) -> Result<Handled, GatewayError> {
    let charset = xml::err_charset(bytes);
    Ok(match request::read(kind, bytes) {
        // Not whole yet: read again only once it has changed; refused, and left in place,
        // only after it has stayed like this for its settle period (see `Watched::look`).
        Err(RequestError::Xml(e)) if e.may_be_incomplete() => {
            watched.found_incomplete(name, e.to_string(), charset, now);
            Handled::NotYet
        }
        // Refused for what is written already, which more bytes cannot change; but a file seen
        // growing may still have a writer at work, and it is moved only once quiet, so that
        // the writer's last bytes are not lost with it (the copy beside the .err is whole).
        Err(_) if watched.grew(name) && watched.quiet(name, now) < gateway.config.settle => {
            watched.postpone(name, gateway.config.settle);
            Handled::NotYet
        }
        Err(problem) => {
            let redacted;
            let (copy, for_staff) = match (problem.my_number_element(), &problem) {
                (Some(element), _) => {
                    redacted = without_my_number(kind, bytes, element);
                    (redacted.as_deref(), refusal_ja::MY_NUMBER)
                }
                (None, RequestError::NoBranch) => (Some(bytes), refusal_ja::NO_BRANCH),
                (None, RequestError::Xml(xml::XmlError::TooManyElements(_) | xml::XmlError::TextTooLong { .. })) => {
                    (Some(bytes), refusal_ja::TOO_MANY)
                }
                (None, _) => (Some(bytes), refusal_ja::UNREADABLE),
            };
            refuse(gateway, path, name, digest, copy, (for_staff, &problem.to_string()), charset)?;
            Handled::Refused(problem.to_string())
        }
        Ok((request, request_charset)) => match another_institution(gateway, request.header()) {
            Some(problem) => {
                refuse(gateway, path, name, digest, Some(bytes), (refusal_ja::OTHER_INSTITUTION, &problem), charset)?;
                Handled::Refused(problem)
            }
            None => {
                answer(gateway, path, name, digest, request, request_charset).await?;
                Handled::Answered
            }
        },
    })
}

/// The copy of a request refused for a My Number that goes beside its `.err` (clients watch
/// for the pair): the field blanked with asterisks. `None`, and no copy, when the blanked file
/// would still hold one.
fn without_my_number(kind: Kind, bytes: &[u8], element: &str) -> Option<Vec<u8>> {
    let copy = crate::xml::redact(bytes, element)?;
    let still = matches!(request::read(kind, &copy), Err(e) if e.my_number_element().is_some());
    (!still).then_some(copy)
}

/// A request written for another 医療機関コード than the gateway's is a misconfigured
/// レセコン: refused with the code to set, as the center refuses a body naming another
/// institution than its certificate (`INSTITUTION_MISMATCH`). An absent code is the gateway's.
fn another_institution(gateway: &Gateway, header: &request::Header) -> Option<String> {
    let given = header.institution_code.as_deref()?;
    let own = &gateway.config.institution_code;
    match onshi_domain::ids::InstitutionCode::parse(given) {
        Ok(code) if code.as_str() == own => None,
        _ => Some(format!(
            "<MedicalInstitutionCode> is {given:?}, but this gateway answers for {own} (institution_code in its configuration); set the receipt computer's 医療機関コード to {own}"
        )),
    }
}

/// On Windows a client that writes a request in place keeps it locked until it is done
/// (ERROR_SHARING_VIOLATION 32, ERROR_LOCK_VIOLATION 33): that is a file not complete yet, not
/// a failure to report.
fn still_open_for_writing(e: &std::io::Error) -> bool {
    cfg!(windows) && matches!(e.raw_os_error(), Some(32 | 33))
}

/// A request that was read whole but cannot be answered moves to `res/` with a `.err` beside
/// it naming the problem (the pair public clients watch for); it is removed from `req/` only
/// once both are written. `keep` is the copy to put beside the `.err`: the request as sent, or
/// without its My Number (see [`without_my_number`]); with none, only the `.err` is written.
/// The copy is bounded by the kind's size limit (a file over it is never read, see
/// [`refuse_unread`]), and it is the sender's own file back in its own folder, to be fixed and
/// sent again. `why` is what staff read first (Japanese) and the problem for the vendor;
/// `charset` is the one the `.err` is written in.
fn refuse(
    gateway: &Gateway,
    path: &Path,
    name: &str,
    digest: &str,
    keep: Option<&[u8]>,
    why: (&str, &str),
    charset: Charset,
) -> Result<(), StoreError> {
    let (for_staff, problem) = why;
    tracing::info!(file = name, problem, "request refused");
    let (copy, err) = refusal_pair(&gateway.config.res_dir(), name);
    let mut files = Vec::with_capacity(2);
    if let Some(bytes) = keep {
        files.push(OutFile { path: copy, bytes: bytes.to_vec(), remove_after: None });
    }
    files.push(OutFile { path: err, bytes: answer_xml::error_file(for_staff, problem, charset), remove_after: Some(path.to_path_buf()) });
    gateway.store.answer_request(name, digest, &gateway.now().to_string(), &files)
}

async fn answer(gateway: &Gateway, path: &Path, name: &str, digest: &str, request: Request, charset: Charset) -> Result<(), GatewayError> {
    let header = request.header().clone();
    let charset = header.charset.unwrap_or(charset);
    let res_path = gateway.config.res_dir().join(Kind::answer_name(name));
    let now = gateway.now().to_string();
    let code = gateway.config.institution_code.clone();
    match request {
        Request::Single { header, search } => {
            let reply = FileReply { request_name: name.to_string(), header: header.clone(), search: search.clone(), charset };
            let checked = gateway.ask_number(&search.to_request(header.confirmation_date.as_deref()), Some(reply)).await?;
            let bytes = answer_xml::single(&SingleResult {
                header: &header,
                search: Some(&search),
                outcome: &checked.outcome,
                reference: Reference::Numbers,
                changes: &checked.changes,
                changes_against: "一括照会",
                now: &now,
                institution_code: &code,
                charset,
                references: &crate::reference::for_outcome(&gateway.store, &checked.outcome),
            });
            let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
            gateway.record(&checked, crate::check::Source::File, Some((name, digest)), &[file])?;
        }
        Request::BulkUpload { header, entries } => {
            let reception_number = crate::batch::reception_number(gateway);
            let bytes = answer_xml::bulk_accepted(&header, &reception_number, &now, &code, charset);
            let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
            crate::batch::add(gateway, &reception_number, "file", &header, entries, Some((name, digest)), &[file])?;
            flush(&gateway.store)?;
            crate::batch::answer_waiting(gateway, None).await?;
        }
        Request::BulkDownload { header, reception_number } => {
            let bytes = crate::batch::results_file(gateway, &header, &reception_number, &now, charset)?;
            let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
            gateway.store.answer_request(name, digest, &now, &[file])?;
        }
        Request::Register { header, entries, bulk } => {
            let (units, rows) = crate::reference::decide_all(&gateway.store, &entries)?;
            if bulk {
                let reception_number = crate::batch::reception_number(gateway);
                let bytes = answer_xml::bulk_accepted(&header, &reception_number, &now, &code, charset);
                let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
                gateway.store.register_references(&rows, Some((&reception_number, &header, &units)), (name, digest), &now, &[file])?;
            } else {
                let bytes = crate::reference::single_answer(&header, &units[0], &now, &code, charset);
                let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
                gateway.store.register_references(&rows, None, (name, digest), &now, &[file])?;
            }
        }
        Request::Registered { header, reception_number } => {
            let batch = gateway.store.reference_batch(&reception_number)?;
            let bytes = match &batch {
                Some((first, units)) => crate::reference::bulk_answer(Some(first), &reception_number, Some(units), &now, &code, charset),
                None => crate::reference::bulk_answer(Some(&header), &reception_number, None, &now, &code, charset),
            };
            let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
            gateway.store.answer_request(name, digest, &now, &[file])?;
        }
        Request::WelfareMonth { header, month } => {
            let request = onshi_api::subsidy::WelfareMonthRequest { institution_code: Some(code.clone()), month };
            match gateway.client.welfare_month(&request).await {
                Ok(list) => {
                    let reception_number = crate::batch::reception_number(gateway);
                    let bytes = answer_xml::bulk_accepted(&header, &reception_number, &now, &code, charset);
                    let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
                    gateway.store.record_list("welfare", &reception_number, &header, &list, (name, digest), &now, &[file])?;
                }
                Err(onshi_api::client::ClientError::Refused { body, .. }) => {
                    let problem = format!("{}: {}", body.error.code, body.error.operator_en);
                    refuse(gateway, path, name, digest, None, (&body.error.reception_ja, &problem), charset)?;
                }
                // A month's list cannot come from a cache: the request waits in req/ and is
                // asked again on the next pass, once the line is back.
                Err(e) => return Err(GatewayError::Client(format!("医療扶助の照会はセンターにつながるまで待ちます: {e}"))),
            }
        }
        Request::WelfareResults { header, reception_number } => {
            let stored = gateway.store.list_batch("welfare", &reception_number)?;
            let bytes = crate::welfare::results(&header, &reception_number, stored.as_ref(), &now, &code, charset);
            let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
            gateway.store.answer_request(name, digest, &now, &[file])?;
        }
        Request::HomeList { header, query } => {
            let request = onshi_api::card::HomeListRequest { kind: query.kind, from: query.from, to: query.to };
            match gateway.client.home_list(&request).await {
                Ok(list) => {
                    let reception_number = crate::batch::reception_number(gateway);
                    let bytes = answer_xml::bulk_accepted(&header, &reception_number, &now, &code, charset);
                    let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
                    gateway.store.record_list(query.kind.code(), &reception_number, &header, &list, (name, digest), &now, &[file])?;
                    crate::home::keep_keys(&gateway.store, &list, &now)?;
                }
                Err(onshi_api::client::ClientError::Refused { body, .. }) => {
                    let problem = format!("{}: {}", body.error.code, body.error.operator_en);
                    refuse(gateway, path, name, digest, None, (&body.error.reception_ja, &problem), charset)?;
                }
                Err(e) => return Err(GatewayError::Client(format!("在宅・オンライン診療の照会はセンターにつながるまで待ちます: {e}"))),
            }
        }
        Request::HomeResults { header, kind, reception_number } => {
            let stored = gateway.store.list_batch(kind.code(), &reception_number)?;
            let bytes = crate::home::results(&header, &reception_number, stored.as_ref(), &now, &code, charset);
            let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
            gateway.store.answer_request(name, digest, &now, &[file])?;
        }
        Request::Medical { header, kind, patient } => {
            let bytes = crate::medical::answer(gateway, &header, kind, &patient, &now, charset).await;
            let file = OutFile { path: res_path, bytes, remove_after: Some(path.to_path_buf()) };
            gateway.store.answer_request(name, digest, &now, &[file])?;
        }
    }
    Ok(())
}

/// The `face/` file of a card check (written unasked, as the terminal does).
pub fn face_file(gateway: &Gateway, outcome: &Outcome, changes: &[String], changes_against: &str) -> OutFile {
    let now = gateway.now().to_string();
    let header = crate::request::Header::default();
    let bytes = answer_xml::single(&SingleResult {
        header: &header,
        search: None,
        outcome,
        reference: Reference::Card,
        changes,
        changes_against,
        now: &now,
        institution_code: &gateway.config.institution_code,
        charset: gateway.config.face_charset,
        references: &crate::reference::for_outcome(&gateway.store, outcome),
    });
    // The check's id is not known before it is recorded (in the same transaction), so a random
    // tail keeps two checks within one second apart.
    let name = format!("OQSsiquc01res_face_{}{}_{now}.xml", gateway.config.institution_code, gateway.tag());
    OutFile { path: gateway.config.face_dir().join(name), bytes, remove_after: None }
}

/// Watches `req/` until `stop` resolves: answers every complete request, flushes the outbox
/// first so that a restart finishes what was interrupted.
pub async fn watch(gateway: std::sync::Arc<Gateway>, poll: Duration, stop: tokio::sync::watch::Receiver<bool>) -> Result<(), GatewayError> {
    flush(&gateway.store)?;
    let req = gateway.config.req_dir();
    // A failure that persists (a permission, a full disk) is logged once, not every pass.
    let mut failing: std::collections::HashSet<PathBuf> = Default::default();
    let mut watched = Watched::default();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match pending_requests(&req) {
            Ok(paths) => {
                failing.remove(&req);
                watched.keep_only(&paths.iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect());
                for path in paths {
                    match handle(&gateway, &mut watched, &path).await {
                        Ok(_) => {
                            failing.remove(&path);
                        }
                        Err(e) => {
                            if failing.insert(path.clone()) {
                                tracing::warn!(file = %path.display(), error = %e, "request not handled; retried on every pass");
                            }
                        }
                    }
                }
                failing.retain(|p| p.exists());
            }
            Err(e) => {
                if failing.insert(req.clone()) {
                    tracing::warn!(folder = %req.display(), error = %e, "cannot list the request folder; retried on every pass");
                }
            }
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(path: &Path, bytes: &[u8], remove_after: Option<&Path>) -> OutFile {
        OutFile { path: path.to_path_buf(), bytes: bytes.to_vec(), remove_after: remove_after.map(Path::to_path_buf) }
    }

    #[test]
    fn the_outbox_writes_each_file_once_across_interruptions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite")).unwrap();
        let request = dir.path().join("OQSsiquc01req_1.xml");
        std::fs::write(&request, b"request").unwrap();
        let answer = dir.path().join("OQSsiquc01res_1.xml");
        store.answer_request("OQSsiquc01req_1.xml", "d1", "20261125090000", &[out(&answer, b"answer", Some(&request))]).unwrap();
        assert!(store.request_answered("OQSsiquc01req_1.xml", "d1").unwrap());
        assert!(!store.request_answered("OQSsiquc01req_1.xml", "d2").unwrap(), "same name, new content: a new request");

        // Interrupted after removing the request: the answer, kept in the store, is written.
        std::fs::remove_file(&request).unwrap();
        assert_eq!(flush(&store).unwrap(), 1);
        assert_eq!(std::fs::read(&answer).unwrap(), b"answer");
        assert!(!store.request_answered("OQSsiquc01req_1.xml", "d1").unwrap(), "the same file sent again later is asked anew");

        // Interrupted after staging and renaming (the レセコン then took the answer): not again.
        std::fs::remove_file(&answer).unwrap();
        std::fs::write(&request, b"request").unwrap();
        store.answer_request("OQSsiquc01req_1.xml", "d1", "20261125100000", &[out(&answer, b"again", Some(&request))]).unwrap();
        assert!(store.request_answered("OQSsiquc01req_1.xml", "d1").unwrap(), "the same file sent again is answered again");
        let (id, file, _) = store.unwritten().unwrap().remove(0);
        std::fs::remove_file(&request).unwrap();
        write_synced(&temporary_name(&file.path), &file.bytes).unwrap();
        store.mark_staged(id, Some("OQSsiquc01req_1.xml")).unwrap();
        std::fs::rename(temporary_name(&file.path), &file.path).unwrap();
        std::fs::remove_file(&file.path).unwrap();
        std::fs::write(&request, b"request").unwrap();
        assert_eq!(flush(&store).unwrap(), 1);
        assert!(!answer.exists(), "an answer already taken is not written twice");
        assert!(request.exists(), "a request sent again after its answer was staged is not removed by that answer");

        // Interrupted after staging, before the rename: the staged file is renamed.
        let second = dir.path().join("OQSsiquc01res_2.xml");
        store.queue_files(&[out(&second, b"two", None)]).unwrap();
        let (id, file, _) = store.unwritten().unwrap().remove(0);
        write_synced(&temporary_name(&file.path), &file.bytes).unwrap();
        store.mark_staged(id, None).unwrap();
        assert_eq!(flush(&store).unwrap(), 1);
        assert_eq!(std::fs::read(&second).unwrap(), b"two");
        assert!(!temporary_name(&second).exists());

        // Interrupted before anything: written whole.
        let third = dir.path().join("OQSsiquc01res_3.xml");
        store.queue_files(&[out(&third, b"three", None)]).unwrap();
        assert_eq!(flush(&store).unwrap(), 1);
        assert_eq!(std::fs::read(&third).unwrap(), b"three");
        assert_eq!(flush(&store).unwrap(), 0, "nothing is left to write");
    }

    fn stamp(len: u64) -> Stamp {
        Stamp { len, modified: None, id: (1, 2) }
    }

    /// Issue 11: a large half-written file was read again on every 10 ms pass.
    #[test]
    fn an_unchanged_incomplete_file_is_not_read_again_and_a_changing_one_ever_less_often() {
        let settle = Duration::from_secs(2);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut watched = Watched::default();
        assert_eq!(watched.look("a", stamp(10), t0, settle), Look::Read, "a new file is read at once");
        watched.found_incomplete("a", "ends early".into(), Charset::Utf8, t0);
        for n in [10, 20, 500, 1_990] {
            assert_eq!(watched.look("a", stamp(10), ms(n), settle), Look::Wait, "unchanged: not read again ({n} ms)");
        }
        // It changes on every pass: read again only after 20, 40, 80, … ms, at most 1 s.
        let (mut reads, mut at, mut len) = (Vec::new(), 0, 10);
        while at < 10_000 {
            at += 10;
            len += 1;
            if watched.look("a", stamp(len), ms(at), settle) == Look::Read {
                reads.push(at);
                watched.found_incomplete("a", "ends early".into(), Charset::Utf8, ms(at));
            }
        }
        let gaps: Vec<u64> = reads.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "the pause only grows: {gaps:?}");
        assert!(gaps.iter().all(|g| *g <= REREAD_MAX.as_millis() as u64 + 10), "and stays bounded: {gaps:?}");
        assert!(reads.len() < 20, "a thousand passes, {} reads", reads.len());
    }

    /// Issue 11: a writer that paused 2.5 s had its half file refused and moved away.
    #[test]
    fn an_incomplete_file_seen_growing_waits_much_longer_than_one_never_seen_to_change() {
        let settle = Duration::from_secs(2);
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        // Never seen to change: refused once unchanged for `settle`.
        let mut watched = Watched::default();
        assert_eq!(watched.look("still", stamp(5), t0, settle), Look::Read);
        watched.found_incomplete("still", "ends early".into(), Charset::ShiftJis, t0);
        assert_eq!(watched.look("still", stamp(5), s(1), settle), Look::Wait);
        let Look::Incomplete { quiet, problem, charset } = watched.look("still", stamp(5), s(2), settle) else { panic!("not refused") };
        assert_eq!((quiet, problem.as_str(), charset), (settle, "ends early", Charset::ShiftJis));
        // Seen growing: a pause of several seconds is a writer at work, not an abandoned file.
        assert_eq!(watched.look("growing", stamp(5), t0, settle), Look::Read);
        watched.found_incomplete("growing", "ends early".into(), Charset::Utf8, t0);
        assert_eq!(watched.look("growing", stamp(6), s(1), settle), Look::Read);
        watched.found_incomplete("growing", "ends early".into(), Charset::Utf8, s(1));
        for n in [2, 4, 30, 60] {
            assert_eq!(watched.look("growing", stamp(6), s(n), settle), Look::Wait, "{n} s after it last grew");
        }
        assert!(matches!(watched.look("growing", stamp(6), s(61), settle), Look::Incomplete { .. }));
        // Told once: after the .err it is not refused again, but read again when it changes.
        watched.mark_told("growing");
        assert_eq!(watched.look("growing", stamp(6), s(200), settle), Look::Wait);
        assert_eq!(watched.look("growing", stamp(7), s(201), settle), Look::Read, "its writer came back");
        // Gone from req/: forgotten, so a new file under that name starts afresh.
        watched.keep_only(&["still".to_string()].into());
        assert!(!watched.told("growing"));
        assert_eq!(watched.quiet("growing", s(300)), Duration::ZERO);
    }

    /// The request is read from one handle, and only if that handle is the regular file the
    /// listing saw: a link, a FIFO or another file put in its place since is not read (and a
    /// FIFO does not block the watcher).
    #[cfg(unix)]
    #[test]
    fn a_request_swapped_after_it_was_listed_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("OQSsiquc01req_1.xml");
        std::fs::write(&path, b"<XmlMsg/>").unwrap();
        let listed = Stamp::of(&std::fs::symlink_metadata(&path).unwrap());
        assert_eq!(read_request(&path, listed, 1024).unwrap().as_deref(), Some(b"<XmlMsg/>".as_slice()));
        assert_eq!(read_request(&path, listed, 4).unwrap(), None, "grown past the limit since");

        let elsewhere = dir.path().join("secret.xml");
        std::fs::write(&elsewhere, b"<XmlMsg/>").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(read_request(&path, listed, 1024).unwrap(), None, "a link is not followed");

        std::fs::remove_file(&path).unwrap();
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert_eq!(read_request(&path, listed, 1024).unwrap(), None, "a FIFO is not read, and does not block");
        assert_eq!(not_a_file(std::fs::symlink_metadata(&path).unwrap().file_type()), "a FIFO (named pipe)");

        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"<XmlMsg/>").unwrap();
        let replaced = Stamp::of(&std::fs::symlink_metadata(&path).unwrap());
        // The file system may give the new file the freed inode; then only its time differs.
        if replaced.id != listed.id {
            assert_eq!(read_request(&path, listed, 1024).unwrap(), None, "another file under the same name");
        }
        assert!(read_request(&path, replaced, 1024).unwrap().is_some());
    }

    /// A file refused for what it holds is moved beside its .err; one seen growing only once
    /// it has been quiet for `settle`, and it is not read on every pass meanwhile.
    #[test]
    fn a_file_seen_growing_is_read_again_only_once_quiet() {
        let settle = Duration::from_secs(2);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut watched = Watched::default();
        assert_eq!(watched.look("a", stamp(1), t0, settle), Look::Read);
        assert!(!watched.grew("a"));
        assert_eq!(watched.look("a", stamp(2), ms(10), settle), Look::Read);
        assert!(watched.grew("a"));
        watched.postpone("a", settle);
        for n in [20, 1_000, 2_000] {
            assert_eq!(watched.look("a", stamp(2), ms(n), settle), Look::Wait, "{n} ms");
        }
        assert_eq!(watched.look("a", stamp(2), ms(2_010), settle), Look::Read, "quiet for settle: read and refused");
        assert_eq!(watched.quiet("a", ms(2_010)), settle);
    }

    #[test]
    fn a_refused_request_s_copy_and_err_keep_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let res = dir.path();
        let pair = |copy: &str, err: &str| (res.join(copy), res.join(err));
        assert_eq!(refusal_pair(res, "R_1.xml"), pair("R_1.xml", "R_1.err"));
        std::fs::write(res.join("R_1.err"), b"").unwrap();
        assert_eq!(refusal_pair(res, "R_1.xml"), pair("R_1.2.xml", "R_1.2.err"), "the copy's name is free, the .err's is not");
        std::fs::write(res.join("R_1.2.xml"), b"").unwrap();
        assert_eq!(refusal_pair(res, "R_1.xml"), pair("R_1.3.xml", "R_1.3.err"));
    }

    /// Issue 11: a second request under the same name overwrote the first answer.
    #[test]
    fn an_answer_never_replaces_one_not_yet_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite")).unwrap();
        let answer = dir.path().join("OQSsiquc01res_1.xml");
        for bytes in [b"first".as_slice(), b"second", b"third"] {
            store.queue_files(&[out(&answer, bytes, None)]).unwrap();
            assert_eq!(flush(&store).unwrap(), 1);
        }
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(read("OQSsiquc01res_1.xml"), b"first");
        assert_eq!(read("OQSsiquc01res_1.2.xml"), b"second");
        assert_eq!(read("OQSsiquc01res_1.3.xml"), b"third");
        // Once taken, the name is free again.
        std::fs::remove_file(&answer).unwrap();
        store.queue_files(&[out(&answer, b"fourth", None)]).unwrap();
        flush(&store).unwrap();
        assert_eq!(read("OQSsiquc01res_1.xml"), b"fourth");
        assert_eq!(free_name(&dir.path().join("x")).unwrap(), dir.path().join("x"), "no extension");
    }

    /// The watcher, the re-verifier, the page and `onshi gateway batch` each flush when they
    /// have recorded something: flushes running at once still write each file once.
    #[test]
    fn flushes_at_once_write_each_file_once() {
        use std::collections::BTreeMap;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("g.sqlite");
        let out_dir = dir.path().join("res");
        std::fs::create_dir_all(&out_dir).unwrap();
        const FILES: usize = 300;
        let store = Store::open(&store_path).unwrap();
        for i in 0..FILES {
            store.queue_files(&[out(&out_dir.join(format!("OQSsiquc01res_{i:03}.xml")), b"answer", None)]).unwrap();
        }
        let done = AtomicBool::new(false);
        let taken: std::sync::Mutex<BTreeMap<String, usize>> = Default::default();
        std::thread::scope(|scope| {
            // Two flushers in this process (one store) and two of another (a store of their own).
            let flushers: Vec<_> = (0..4)
                .map(|n| {
                    let own = (n >= 2).then(|| Store::open(&store_path).unwrap());
                    let (store, done) = (&store, &done);
                    scope.spawn(move || {
                        while !done.load(Ordering::SeqCst) {
                            flush(own.as_ref().unwrap_or(store)).unwrap();
                        }
                    })
                })
                .collect();
            // The レセコン takes each file as it appears.
            while taken.lock().unwrap().values().sum::<usize>() < FILES || !store.unwritten().unwrap().is_empty() {
                for entry in std::fs::read_dir(&out_dir).unwrap().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.starts_with('.') && std::fs::remove_file(entry.path()).is_ok() {
                        *taken.lock().unwrap().entry(name).or_default() += 1;
                    }
                }
            }
            done.store(true, Ordering::SeqCst);
            flushers.into_iter().for_each(|f| f.join().unwrap());
        });
        let taken = taken.into_inner().unwrap();
        assert_eq!(taken.len(), FILES);
        let twice: Vec<_> = taken.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "written more than once: {twice:?}");
    }
}
