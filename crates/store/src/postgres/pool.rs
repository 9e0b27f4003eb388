//! The read connections of one process to one server (the primary, or a replica).
//!
//! A connection is opened once and kept: opening one costs the server a backend process and
//! the password exchange (milliseconds of CPU on both sides, several hundred verifications'
//! worth), so a read never opens one while the pool may still grow, and past [`READERS_MAX`]
//! a read waits for one to come back instead of opening more. (Before: sixteen were kept and
//! any read beyond them opened and closed its own, which under 32 concurrent verifications
//! made one center process spend its time connecting.)

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{Conn, blocking, connect};
use crate::StoreError;

/// Read connections one pool opens at most. Two center processes with a writer, an audit
/// writer and a full pool each stay well within PostgreSQL's default of 100 connections.
pub(crate) const READERS_MAX: usize = 32;

/// How long a read waits for a connection when all are in use before it is refused (the
/// center answers 503 REGISTER_UNAVAILABLE; a hung server must not hold requests forever).
const WAIT_MAX: Duration = Duration::from_secs(10);

struct State {
    idle: Vec<Conn>,
    /// Connections opened and not yet found closed: idle ones and those lent out.
    open: usize,
}

pub(crate) struct ReadPool {
    url: String,
    max: usize,
    state: Mutex<State>,
    returned: Condvar,
}

impl ReadPool {
    pub(crate) fn new(url: &str) -> ReadPool {
        ReadPool::with_max(url, READERS_MAX)
    }

    /// A pool that opens at most `max` connections.
    pub(crate) fn with_max(url: &str, max: usize) -> ReadPool {
        ReadPool { url: url.to_string(), max, state: Mutex::new(State { idle: Vec::new(), open: 0 }), returned: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a connection of the pool and gives it back (or, should `f` panic, closes
    /// it and frees its place, so that a bug cannot shrink the pool for good).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        blocking(|| {
            let mut lent = Lent { pool: self, conn: Some(self.take()?) };
            f(lent.conn.as_mut().expect("lent until dropped"))
        })
    }

    fn take(&self) -> Result<Conn, StoreError> {
        let deadline = std::time::Instant::now() + WAIT_MAX;
        let mut state = self.lock();
        loop {
            while let Some(conn) = state.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(conn);
                }
                // Broken while idle (the server restarted): forget it and look further.
                state.open -= 1;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match connect(&self.url) {
                    Ok(client) => Ok(Conn::new(client)),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(StoreError::Engine {
                    doing: "waiting for a read connection",
                    source: format!("all {} read connections stayed busy for {} s", self.max, WAIT_MAX.as_secs()).into(),
                });
            }
            state = self.returned.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn give_back(&self, conn: Conn) {
        let mut state = self.lock();
        if conn.client.is_closed() || std::thread::panicking() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.returned.notify_one();
    }

    /// The idle connections, for closing (closing one blocks on its runtime).
    pub(crate) fn drain(&mut self) -> Vec<Conn> {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        state.open -= state.idle.len();
        std::mem::take(&mut state.idle)
    }
}

/// A connection lent out: back to the pool when dropped.
struct Lent<'a> {
    pool: &'a ReadPool,
    conn: Option<Conn>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of twice as many concurrent reads as the pool may open is served by at most
    /// READERS_MAX server sessions (told apart by their backend's process id), and those are
    /// kept: the reads after the burst run on the same sessions, none opened anew.
    #[test]
    fn concurrent_reads_share_the_kept_connections() {
        let url = super::super::cluster::test_database().unwrap_or_else(|e| panic!("a PostgreSQL cluster for the tests: {e}"));
        let pool = std::sync::Arc::new(ReadPool::new(&url));
        let backend = |pool: &ReadPool| -> i32 {
            pool.read(|c| {
                c.client
                    .query_one("SELECT pg_backend_pid() FROM pg_sleep(0.01)", &[])
                    .map(|r| r.get(0))
                    .map_err(super::super::pg("reading"))
            })
            .unwrap()
        };
        let threads: Vec<_> = (0..READERS_MAX * 2)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || (0..5).map(|_| backend(&pool)).collect::<Vec<i32>>())
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for thread in threads {
            seen.extend(thread.join().unwrap());
        }
        assert!(seen.len() <= READERS_MAX, "{} sessions for {} concurrent reads", seen.len(), READERS_MAX * 2);
        for _ in 0..READERS_MAX * 2 {
            let pid = backend(&pool);
            assert!(seen.contains(&pid), "a read after the burst opened a new session ({pid})");
        }
    }

    /// A read that panics gives its place back: a pool of one still serves the next read
    /// (instead of waiting for a connection nobody will return, then refusing).
    #[test]
    fn a_panicking_read_frees_its_place() {
        let url = super::super::cluster::test_database().unwrap_or_else(|e| panic!("a PostgreSQL cluster for the tests: {e}"));
        let pool = ReadPool::with_max(&url, 1);
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.read(|_| -> Result<(), StoreError> { panic!("a bug") })));
        assert!(panicked.is_err());
        let one: i32 = pool.read(|c| c.client.query_one("SELECT 1", &[]).map(|r| r.get(0)).map_err(super::super::pg("reading"))).unwrap();
        assert_eq!(one, 1);
        assert_eq!(pool.lock().open, 1, "the panicked connection was closed, the new one kept");
    }
}
