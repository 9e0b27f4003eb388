//! The file interface: requests dropped into `req/`, answers written to `res/` (and card
//! results to `face/`). Polling, not OS file events, so it behaves the same on the Windows PCs
//! clinics run and on network drives.
//!
//! A request is answered exactly once: its journal row and its answer's outbox row are
//! committed together (the answer is then durable), the request is removed, and the answer is
//! written from the outbox (see [`flush`] for the order and why). A file still being written is
//! not read half-way: one that does not parse yet is left alone until it has not changed for
//! the configured settle time.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{SHA256, digest};

use crate::answer_xml::{self, Reference, SingleResult, refusal_ja};
use crate::check::{FileReply, Outcome};
use crate::gateway::{Gateway, GatewayError};
use crate::request::{self, Kind, Request, RequestError};
use crate::store::{OutFile, Store, StoreError};
use crate::xml::Charset;

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
            std::fs::rename(&tmp, &file.path).map_err(|e| io(e, &file.path))?;
            sync_folder(&file.path);
        }
        store.mark_written(id)?;
        written += 1;
    }
    Ok(written)
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

/// Request files waiting in `req/`, oldest name first.
pub fn pending_requests(req_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(req_dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(Kind::is_request_name))
        .collect();
    found.sort();
    Ok(found)
}

/// Handles one request file end to end (answer recorded, request removed, answer written).
pub async fn handle(gateway: &Gateway, path: &Path) -> Result<Handled, GatewayError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || still_open_for_writing(&e) => return Ok(Handled::NotYet),
        Err(e) => return Err(GatewayError::File { what: "request", path: path.to_path_buf(), detail: e.to_string() }),
    };
    let digest = onshi_domain::hex::encode(digest(&SHA256, &bytes).as_ref());
    if gateway.store.request_answered(&name, &digest)? {
        flush(&gateway.store)?;
        let _ = std::fs::remove_file(path);
        return Ok(Handled::AlreadyAnswered);
    }
    let handled = match Kind::of_file_name(&name) {
        Some(kind) => read_and_answer(gateway, path, &name, &digest, kind, &bytes).await?,
        // A kind of the interface this gateway does not answer: refused whole, once settled.
        None => match Kind::unsupported(&name) {
            Some(prefix) if settled(path, gateway.config.settle) => {
                let problem = Kind::unsupported_message(prefix);
                refuse(gateway, path, &name, &digest, Some(&bytes), (refusal_ja::UNSUPPORTED, &problem))?;
                Handled::Refused(problem)
            }
            _ => Handled::NotYet,
        },
    };
    if handled != Handled::NotYet {
        flush(&gateway.store)?;
    }
    Ok(handled)
}

/// Reads a request of a kind the gateway answers, and answers or refuses it (in the store; the
/// caller flushes).
async fn read_and_answer(
    gateway: &Gateway,
    path: &Path,
    name: &str,
    digest: &str,
    kind: Kind,
    bytes: &[u8],
) -> Result<Handled, GatewayError> {
    Ok(match request::read(kind, bytes) {
        Err(RequestError::Xml(e)) if e.may_be_incomplete() && !settled(path, gateway.config.settle) => Handled::NotYet,
        Err(problem) => {
            let redacted;
            let (copy, for_staff) = match problem.my_number_element() {
                Some(element) => {
                    redacted = without_my_number(kind, bytes, element);
                    (redacted.as_deref(), refusal_ja::MY_NUMBER)
                }
                None => (Some(bytes), refusal_ja::UNREADABLE),
            };
            refuse(gateway, path, name, digest, copy, (for_staff, &problem.to_string()))?;
            Handled::Refused(problem.to_string())
        }
        Ok((request, charset)) => match another_institution(gateway, request.header()) {
            Some(problem) => {
                refuse(gateway, path, name, digest, Some(bytes), (refusal_ja::OTHER_INSTITUTION, &problem))?;
                Handled::Refused(problem)
            }
            None => {
                answer(gateway, path, name, digest, request, charset).await?;
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

fn settled(path: &Path, settle: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|modified| SystemTime::now().duration_since(modified).unwrap_or_default() >= settle)
        .unwrap_or(true)
}

/// A request that cannot be read moves to `res/` with a `.err` beside it naming the problem
/// (the pair public clients watch for); it is removed from `req/` only once both are written.
/// `keep` is the copy to put beside the `.err`: the request as sent, or without its My Number
/// (see [`without_my_number`]); with none, only the `.err` is written.
/// `why` is what staff read first (Japanese) and the problem for the vendor.
fn refuse(gateway: &Gateway, path: &Path, name: &str, digest: &str, keep: Option<&[u8]>, why: (&str, &str)) -> Result<(), StoreError> {
    let (for_staff, problem) = why;
    tracing::info!(file = name, problem, "request refused");
    let res = gateway.config.res_dir();
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let mut files = Vec::with_capacity(2);
    if let Some(bytes) = keep {
        files.push(OutFile { path: res.join(name), bytes: bytes.to_vec(), remove_after: None });
    }
    files.push(OutFile {
        path: res.join(format!("{stem}.err")),
        bytes: answer_xml::error_file(for_staff, problem),
        remove_after: Some(path.to_path_buf()),
    });
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
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match pending_requests(&req) {
            Ok(paths) => {
                failing.remove(&req);
                for path in paths {
                    match handle(&gateway, &path).await {
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
