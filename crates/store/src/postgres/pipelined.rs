//! The number path's read on the center's own runtime: tokio-postgres clients shared by every
//! verification in flight, their queries pipelined on a few connections.
//!
//! The synchronous client of the rest of the engine blocks a thread for each read: under load
//! the center's one worker per core hands its work to another thread at every read and takes it
//! back after, and a profile of one center process verifying by number on PostgreSQL put a
//! third of its time in those thread switches. Here a verification's read is a future: it
//! waits without a thread, and the connections' own tasks run on the same runtime. Used only
//! without a replica (a replica's answer must say how current it is, which the synchronous
//! path reads on the same connection first).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::RwLock;
use tokio_postgres::{Client, NoTls, Statement};

use super::{pg, redacted, view_of_rows};
use crate::StoreError;
use crate::model::CoverageWithTerms;

/// Connections shared by the verifications in flight. A few suffice: they pipeline (each
/// sends the next query before the last answer came back), and each holds a backend.
const CONNECTIONS: usize = 4;

/// How long a read or a connection attempt may take before it is refused (503
/// REGISTER_UNAVAILABLE) and its connection given up: a server that died without closing the
/// connection (a failover, a broken network) must not hold verifications until TCP gives up.
const WAIT_MAX: Duration = Duration::from_secs(10);

struct Slot {
    client: Client,
    view: Statement,
}

pub(crate) struct Pipelined {
    url: String,
    sql: String,
    slots: Vec<RwLock<Option<Slot>>>,
    next: AtomicUsize,
}

impl Pipelined {
    /// Nothing is opened until the first read: the connections' tasks must run on the runtime
    /// of the center that reads, not of whoever opened the register.
    pub(crate) fn new(url: &str, sql: &str) -> Pipelined {
        Pipelined {
            url: url.to_string(),
            sql: sql.to_string(),
            slots: (0..CONNECTIONS).map(|_| RwLock::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Every coverage with its terms of everyone holding this card's numbers.
    pub(crate) async fn view(&self, insurer: &str, number: &str) -> Result<Vec<CoverageWithTerms>, StoreError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let read = {
            let open = slot.read().await;
            match open.as_ref().filter(|s| !s.client.is_closed()) {
                Some(s) => Some(query(s, insurer, number).await),
                None => None,
            }
        };
        let read = match read {
            Some(read) => read,
            None => {
                let mut open = slot.write().await;
                // Another read may have reconnected meanwhile.
                if open.as_ref().is_none_or(|s| s.client.is_closed()) {
                    *open = Some(self.connect().await?);
                }
                query(open.as_ref().expect("just connected"), insurer, number).await
            }
        };
        if let Err(Waited) = &read {
            // No answer in time: the connection may be dead without knowing it; the next read
            // on this slot connects again.
            slot.write().await.take();
        }
        read.map_err(|e| e.into_store_error())
    }

    async fn connect(&self) -> Result<Slot, StoreError> {
        let connecting = tokio::time::timeout(WAIT_MAX, tokio_postgres::connect(&self.url, NoTls));
        let (client, connection) = match connecting.await {
            Ok(connected) => connected.map_err(|source| StoreError::Open { path: redacted(&self.url), source: Box::new(source) })?,
            Err(_) => {
                return Err(StoreError::Open {
                    path: redacted(&self.url),
                    source: format!("no connection within {} s", WAIT_MAX.as_secs()).into(),
                });
            }
        };
        // The connection's task ends when the client is dropped or the server goes away (the
        // next read then finds the client closed and connects again).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let view = client.prepare(&self.sql).await.map_err(pg("preparing the card view"))?;
        Ok(Slot { client, view })
    }
}

/// Why a read failed: no answer in time (the connection is given up), or anything else.
enum ReadError {
    Waited,
    Failed(StoreError),
}
use ReadError::Waited;

impl ReadError {
    fn into_store_error(self) -> StoreError {
        match self {
            Waited => {
                StoreError::Engine { doing: "querying the card view", source: format!("no answer within {} s", WAIT_MAX.as_secs()).into() }
            }
            ReadError::Failed(e) => e,
        }
    }
}

async fn query(slot: &Slot, insurer: &str, number: &str) -> Result<Vec<CoverageWithTerms>, ReadError> {
    let rows = match tokio::time::timeout(WAIT_MAX, slot.client.query(&slot.view, &[&insurer, &number])).await {
        Err(_) => return Err(Waited),
        Ok(rows) => rows.map_err(pg("querying the card view")).map_err(ReadError::Failed)?,
    };
    view_of_rows(&rows).map_err(ReadError::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that takes the connection and never answers (a failover, a broken network)
    /// gives a refusal in bounded time, not a read that hangs until TCP gives up.
    #[test]
    fn a_server_that_never_answers_is_refused_in_bounded_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        // Accepts, then holds the connection without a word until the test ends.
        let silent = std::thread::spawn(move || {
            let held = listener.accept().unwrap();
            let _ = stopped.recv();
            drop(held);
        });
        let pipelined = Pipelined::new(&format!("host=127.0.0.1 port={port} user=onshi dbname=onshi"), "SELECT 1");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Refused by the bound itself (not by the server, which says nothing).
        let refused = runtime.block_on(pipelined.view("06130488", "1")).unwrap_err();
        assert!(refused.to_string().contains("no connection within"), "{refused}");
        stop.send(()).unwrap();
        silent.join().unwrap();
    }
}
