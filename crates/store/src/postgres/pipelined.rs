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

use tokio::sync::RwLock;
use tokio_postgres::{Client, NoTls, Statement};

use super::{pg, redacted, view_of_rows};
use crate::StoreError;
use crate::model::CoverageWithTerms;

/// Connections shared by the verifications in flight. A few suffice: they pipeline (each
/// sends the next query before the last answer came back), and each holds a backend.
const CONNECTIONS: usize = 4;

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
        {
            let open = slot.read().await;
            if let Some(s) = open.as_ref().filter(|s| !s.client.is_closed()) {
                return query(s, insurer, number).await;
            }
        }
        let mut open = slot.write().await;
        // Another read may have reconnected meanwhile.
        if open.as_ref().is_none_or(|s| s.client.is_closed()) {
            *open = Some(self.connect().await?);
        }
        query(open.as_ref().expect("just connected"), insurer, number).await
    }

    async fn connect(&self) -> Result<Slot, StoreError> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|source| StoreError::Open { path: redacted(&self.url), source: Box::new(source) })?;
        // The connection's task ends when the client is dropped or the server goes away (the
        // next read then finds the client closed and connects again).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let view = client.prepare(&self.sql).await.map_err(pg("preparing the card view"))?;
        Ok(Slot { client, view })
    }
}

async fn query(slot: &Slot, insurer: &str, number: &str) -> Result<Vec<CoverageWithTerms>, StoreError> {
    let rows = slot.client.query(&slot.view, &[&insurer, &number]).await.map_err(pg("querying the card view"))?;
    view_of_rows(&rows)
}
