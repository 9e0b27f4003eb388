//! Writes the audit log from request handlers: one writer thread commits whatever has queued
//! up in one transaction (group commit), and each handler answers only after its entries are
//! committed. If the log cannot be written, the access is refused (fail closed): an access
//! that cannot be recorded does not happen.

use std::sync::mpsc;

use onshi_store::audit::{AuditLog, AuditRecord};

use crate::errors::CenterError;

/// Most records committed in one transaction.
const GROUP_MAX: usize = 1_024;
/// Commits between two checkpoints of the write-ahead log (done by another thread).
const CHECKPOINT_EVERY_COMMITS: u32 = 500;

type Ack = tokio::sync::oneshot::Sender<Result<(), String>>;

/// The handle handlers write through.
pub struct AuditSink {
    queue: mpsc::SyncSender<(Vec<AuditRecord>, Ack)>,
    path: std::path::PathBuf,
}

impl AuditSink {
    /// Starts the writer thread over `log`.
    pub fn start(mut log: AuditLog) -> AuditSink {
        let path = log.path().to_path_buf();
        let (queue, jobs) = mpsc::sync_channel::<(Vec<AuditRecord>, Ack)>(8_192);
        // The checkpointer copies the WAL into the file when asked, so that no answer waits
        // for the copy and its fsync; a request that finds it busy is simply dropped.
        let (checkpoint_due, checkpoints) = mpsc::sync_channel::<()>(1);
        let checkpoint_path = path.clone();
        std::thread::Builder::new()
            .name("audit-checkpoint".into())
            .spawn(move || match onshi_store::audit::checkpoint_connection(&checkpoint_path) {
                Ok(connection) => {
                    while checkpoints.recv().is_ok() {
                        if let Err(e) = onshi_store::audit::checkpoint(&connection) {
                            tracing::warn!(error = %e, "audit checkpoint failed; the WAL grows until the next one");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "the audit checkpointer cannot open the log; the WAL will grow"),
            })
            .expect("the audit checkpoint thread starts");
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut commits = 0u32;
                while let Ok(first) = jobs.recv() {
                    let mut batch = vec![first];
                    while batch.iter().map(|(r, _)| r.len()).sum::<usize>() < GROUP_MAX {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let records: Vec<AuditRecord> = batch.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
                    let result = log.append(&records).map(|_| ()).map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "audit log write failed; accesses are refused until it works again");
                    }
                    for (_, ack) in batch {
                        let _ = ack.send(result.clone());
                    }
                    commits += 1;
                    if commits >= CHECKPOINT_EVERY_COMMITS {
                        commits = 0;
                        let _ = checkpoint_due.try_send(());
                    }
                }
            })
            .expect("the audit writer thread starts");
        AuditSink { queue, path }
    }

    /// The audit log file, for readers.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn submit(&self, records: Vec<AuditRecord>) -> Result<tokio::sync::oneshot::Receiver<Result<(), String>>, CenterError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.queue.try_send((records, ack)).map_err(|_| unavailable("the audit queue is full or closed".into()))?;
        Ok(done)
    }

    /// Records and waits for the commit (from async handlers).
    pub async fn record(&self, records: Vec<AuditRecord>) -> Result<(), CenterError> {
        let done = self.submit(records)?;
        done.await.map_err(|_| unavailable("the audit writer stopped".into()))?.map_err(unavailable)
    }

    /// Records and waits for the commit (from blocking workers).
    pub fn record_blocking(&self, records: Vec<AuditRecord>) -> Result<(), CenterError> {
        let done = self.submit(records)?;
        done.blocking_recv().map_err(|_| unavailable("the audit writer stopped".into()))?.map_err(unavailable)
    }
}

fn unavailable(detail: String) -> CenterError {
    crate::errors::audit_unavailable(detail)
}
