//! `onshi gateway serve`: the file watcher, the re-verifier and the reception page, together
//! until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::GatewayConfig;
use crate::gateway::Gateway;

/// How often `req/` is looked at: well under the 50 ms a request may take end to end, and
/// cheap (one directory listing).
pub const POLL: Duration = Duration::from_millis(10);
/// How often queued checks are tried again while the line is down.
pub const RETRY: Duration = Duration::from_secs(2);

/// Why the gateway could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "another `onshi gateway serve` is running on {0} (two would answer the same requests and re-verify the same checks twice); stop it first, or give this one a folder and store of its own"
    )]
    AlreadyServing(PathBuf),
    #[error("cannot lock {path}: {source}; check that the folder is writable")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {address}: {source}; if another program uses that port, stop it or set [page] listen (or [patient] listen)")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("the reception page stopped: {0}")]
    Page(std::io::Error),
    #[error("the patients' page cannot start: {0}")]
    Patient(String),
}

/// Held while serving: one file lock beside the store (one queue to re-verify) and one in
/// the folder (one watcher of `req/`). Released when dropped, or when the process dies.
pub struct ServeLock {
    _held: Vec<std::fs::File>,
}

pub fn serve_lock(config: &GatewayConfig) -> Result<ServeLock, ServeError> {
    let paths = [crate::store::lock_path(&config.store, "serve"), config.folder.join(".onshi-serve.lock")];
    let mut files = Vec::new();
    for path in paths {
        let file = crate::store::lock_file(&path).map_err(|source| ServeError::Lock { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => files.push(file),
            Err(std::fs::TryLockError::WouldBlock) => return Err(ServeError::AlreadyServing(path)),
            Err(std::fs::TryLockError::Error(source)) => return Err(ServeError::Lock { path, source }),
        }
    }
    Ok(ServeLock { _held: files })
}

/// Whether an `onshi gateway serve` holds this configuration's store (for `onshi doctor`):
/// `None` when that cannot be told. Looks without creating anything; the lock is taken and
/// dropped at once when free.
pub fn is_serving(config: &GatewayConfig) -> Option<bool> {
    let path = crate::store::lock_path(&config.store, "serve");
    let file = match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(true),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Binds the page (on `listen`, or the configured address), reports the bound address to
/// `bound`, and serves until `stop` turns true.
pub async fn serve(
    gateway: Arc<Gateway>,
    listen: Option<SocketAddr>,
    retry: Duration,
    bound: impl FnOnce(SocketAddr),
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let _lock = serve_lock(&gateway.config)?;
    let address = listen.unwrap_or(gateway.config.page_listen);
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|source| ServeError::Listen { address, source })?;
    // The patients' page, on its own address when configured; bound before the reception
    // page is reported ready, so that both answer once it is.
    let patient = match gateway.config.patient.clone() {
        None => None,
        Some(kiosk) => {
            let address = kiosk.listen;
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|source| ServeError::Listen { address, source })?;
            let router = crate::patient::router(gateway.clone(), &kiosk).map_err(|e| ServeError::Patient(e.to_string()))?;
            tracing::info!(%address, "the patients' page is served");
            let mut until = stop.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, router.into_make_service_with_connect_info::<crate::access::Peer>())
                    .with_graceful_shutdown(async move {
                        while !*until.borrow() {
                            if until.changed().await.is_err() {
                                break;
                            }
                        }
                    })
                    .await
            }))
        }
    };
    bound(listener.local_addr().map_err(|source| ServeError::Listen { address, source })?);
    let watcher = tokio::spawn(crate::files::watch(gateway.clone(), POLL, stop.clone()));
    let reverifier = tokio::spawn(crate::reverify::run(gateway.clone(), retry, stop.clone()));
    let diagnoser = tokio::spawn(crate::doctor::watch_line(gateway.clone(), stop.clone()));
    let mut until = stop.clone();
    axum::serve(listener, crate::page::router(gateway).into_make_service_with_connect_info::<crate::access::Peer>())
        .with_graceful_shutdown(async move {
            while !*until.borrow() {
                if until.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .map_err(ServeError::Page)?;
    if let Ok(Err(e)) = watcher.await {
        tracing::warn!(error = %e, "the file watcher stopped");
    }
    let _ = reverifier.await;
    if let Some(patient) = patient
        && let Ok(Err(e)) = patient.await
    {
        tracing::warn!(error = %e, "the patients' page stopped");
    }
    let _ = diagnoser.await;
    Ok(())
}
