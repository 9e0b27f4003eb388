//! `onshi gateway serve`: the file watcher, the re-verifier and the reception page, together
//! until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::gateway::Gateway;

/// How often `req/` is looked at: well under the 50 ms a request may take end to end, and
/// cheap (one directory listing).
pub const POLL: Duration = Duration::from_millis(10);
/// How often queued checks are tried again while the line is down.
pub const RETRY: Duration = Duration::from_secs(2);

/// Binds the page (on `listen`, or the configured address), reports the bound address to
/// `bound`, and serves until `stop` turns true.
pub async fn serve(
    gateway: Arc<Gateway>,
    listen: Option<SocketAddr>,
    retry: Duration,
    bound: impl FnOnce(SocketAddr),
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen.unwrap_or(gateway.config.page_listen)).await?;
    bound(listener.local_addr()?);
    let watcher = tokio::spawn(crate::files::watch(gateway.clone(), POLL, stop.clone()));
    let reverifier = tokio::spawn(crate::reverify::run(gateway.clone(), retry, stop.clone()));
    let mut until = stop.clone();
    axum::serve(listener, crate::page::router(gateway).into_make_service_with_connect_info::<crate::access::Peer>())
        .with_graceful_shutdown(async move {
            while !*until.borrow() {
                if until.changed().await.is_err() {
                    break;
                }
            }
        })
        .await?;
    if let Ok(Err(e)) = watcher.await {
        tracing::warn!(error = %e, "the file watcher stopped");
    }
    let _ = reverifier.await;
    Ok(())
}
