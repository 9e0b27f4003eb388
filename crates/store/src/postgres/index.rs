//! The card index on PostgreSQL: a copy that follows the register by polling its change log,
//! and says how old it is.
//!
//! Unlike SQLite, PostgreSQL has no local counter of other processes' commits, so the copy
//! cannot know without a round trip whether it is current. It answers as a streaming replica
//! does: with the time up to which it holds every commit (`replica_as_of`), a few tens of
//! milliseconds behind the register. It is built only when the operator asks for it
//! (`onshi center serve --card-index-on-postgres`), and a copy that has not caught up for
//! [`MAX_LAG`] (the follower cannot reach the database) answers nothing: reads go to the register
//! and fail there as they would without it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::Client;

use onshi_domain::Timestamp;

use super::{JST_OFFSET_SECONDS, connect, pg, view_of_rows, view_sql};
use crate::StoreError;
use crate::card_index::{CardIndex, CardIndexCounts, LOAD_CHUNK, by_person, decode_ids};
use crate::model::CoverageWithTerms;

/// How often the follower reads the change log.
const POLL: Duration = Duration::from_millis(50);

/// A copy that has not caught up for this long answers nothing.
pub(super) const MAX_LAG: Duration = Duration::from_secs(2);

pub(super) struct PgIndex {
    state: RwLock<Followed>,
    max_persons: u64,
    /// The register outgrew `max_persons`: the copy is dropped and every read goes to it.
    given_up: AtomicBool,
    /// Set to stop the follower, which waits on it between its reads (so a stop ends the
    /// follower at once, not after its pause).
    stop: (Mutex<bool>, Condvar),
    /// The change log's position after each catch-up, for whoever waits for one.
    progress: (Mutex<i64>, Condvar),
    /// The follower thread, until it is joined.
    follower: Mutex<Option<std::thread::JoinHandle<()>>>,
    served: AtomicU64,
    behind: AtomicU64,
}

struct Followed {
    index: CardIndex,
    /// Every change committed up to this time (Japan time, whole seconds) is in the copy.
    as_of: Timestamp,
    /// When the follower began the read that `as_of` comes from.
    caught_up: Instant,
}

/// The moment just before `now`, to the second, that every commit before `now` is at or before:
/// the copy read from a snapshot taken after `now` holds them all.
fn as_of_before(now: SystemTime) -> Timestamp {
    let utc = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    Timestamp::from_jst_seconds(utc - 1 + JST_OFFSET_SECONDS)
}

/// The follower's connection: a statement that hangs (a server that stopped answering) ends
/// after a while, so that the follower retries and a stopped follower ends.
fn follower_connection(url: &str) -> Result<Client, StoreError> {
    let mut client = connect(url)?;
    client.batch_execute("SET statement_timeout = '10s'").map_err(pg("bounding the card index's reads"))?;
    Ok(client)
}

/// A read-only transaction that sees one snapshot throughout, taken at its first statement.
fn snapshot(client: &mut Client) -> Result<postgres::Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg("starting a snapshot of the register for the card index"))
}

impl PgIndex {
    /// Loads the copy from one snapshot and starts its follower. `None` when the register holds
    /// more than `max_persons` persons (with their count).
    pub(super) fn start(url: &str, max_persons: u64) -> Result<Result<Arc<PgIndex>, u64>, StoreError> {
        let mut client = follower_connection(url)?;
        let persons: i64 = client.query_one("SELECT count(*) FROM persons", &[]).map_err(pg("counting persons"))?.get(0);
        if persons as u64 > max_persons {
            return Ok(Err(persons as u64));
        }
        let (started_wall, started) = (SystemTime::now(), Instant::now());
        let mut tx = snapshot(&mut client)?;
        let row = tx
            .query_one(
                "SELECT (SELECT coalesce(max(seq), 0) FROM register_changes), (SELECT coalesce(max(person_id), 0) FROM persons)",
                &[],
            )
            .map_err(pg("reading the change log's position"))?;
        let (seq, max_person): (i64, i64) = (row.get(0), row.get(1));
        let mut index = CardIndex::new(seq);
        let sql = view_sql("c.person_id BETWEEN $1 AND $2");
        let mut from = 1i64;
        while from <= max_person {
            let to = from.saturating_add(LOAD_CHUNK - 1);
            let rows = tx.query(&sql, &[&from, &to]).map_err(pg("loading the card index"))?;
            for (person, view) in by_person(view_of_rows(&rows)?) {
                index.set_person(person, view);
            }
            from = to.saturating_add(1);
        }
        tx.commit().map_err(pg("ending the index's snapshot"))?;
        let shared = Arc::new(PgIndex {
            state: RwLock::new(Followed { index, as_of: as_of_before(started_wall), caught_up: started }),
            max_persons,
            given_up: AtomicBool::new(false),
            stop: (Mutex::new(false), Condvar::new()),
            progress: (Mutex::new(seq), Condvar::new()),
            follower: Mutex::new(None),
            served: AtomicU64::new(0),
            behind: AtomicU64::new(0),
        });
        let follower = shared.clone();
        let url = url.to_string();
        let handle = std::thread::Builder::new()
            .name("card-index-follower".into())
            .spawn(move || follower.follow(&url, client))
            .map_err(|e| StoreError::Corrupt(format!("no thread for the card index's follower: {e}")))?;
        *shared.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(Ok(shared))
    }

    pub(super) fn stop(&self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
    }

    /// Waits [`POLL`] unless stopped meanwhile; whether the follower should go on.
    fn pause(&self) -> bool {
        let stopped = self.stop.0.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) = self.stop.1.wait_timeout_while(stopped, POLL, |stopped| !*stopped).unwrap_or_else(|p| p.into_inner());
        !*stopped
    }

    /// Catches up every [`POLL`] until stopped; reconnects after an error.
    fn follow(&self, url: &str, client: Client) {
        let mut client = Some(client);
        let mut reported = false;
        while self.pause() {
            let result = match client.as_mut() {
                Some(c) if !c.is_closed() => self.catch_up(c),
                _ => follower_connection(url).and_then(|mut c| {
                    let caught = self.catch_up(&mut c);
                    client = Some(c);
                    caught
                }),
            };
            match result {
                Ok(()) => reported = false,
                Err(e) if !reported => {
                    tracing::warn!(error = %e, "the card index cannot follow the register; card views are read from the register until it can");
                    reported = true;
                }
                Err(_) => {}
            }
        }
    }

    fn catch_up(&self, client: &mut Client) -> Result<(), StoreError> {
        if self.given_up.load(Ordering::Relaxed) {
            return Ok(());
        }
        let position = self.state.read().unwrap_or_else(|p| p.into_inner()).index.seq;
        let (started_wall, started) = (SystemTime::now(), Instant::now());
        let mut tx = snapshot(client)?;
        let mut seq = position;
        let mut coverages = Vec::new();
        for row in
            tx.query("SELECT seq, coverage_ids FROM register_changes WHERE seq > $1", &[&position]).map_err(pg("reading the change log"))?
        {
            seq = seq.max(row.get::<_, i64>(0));
            coverages.extend(decode_ids(row.get::<_, &[u8]>(1))?);
        }
        let mut changed: Vec<(i64, Vec<CoverageWithTerms>)> = Vec::new();
        if !coverages.is_empty() {
            coverages.sort_unstable();
            coverages.dedup();
            let persons: Vec<i64> = tx
                .query("SELECT DISTINCT person_id FROM coverages WHERE coverage_id = ANY($1)", &[&coverages])
                .map_err(pg("reading the changed persons"))?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let rows = tx.query(&view_sql("c.person_id = ANY($1)"), &[&persons]).map_err(pg("reading the changed persons' views"))?;
            let mut views = by_person(view_of_rows(&rows)?);
            changed = persons.into_iter().map(|p| (p, views.remove(&p).unwrap_or_default())).collect();
        }
        tx.commit().map_err(pg("ending the index's catch-up"))?;
        let mut current = self.state.write().unwrap_or_else(|p| p.into_inner());
        for (person, view) in changed {
            current.index.set_person(person, view);
        }
        current.index.seq = seq;
        current.as_of = as_of_before(started_wall);
        current.caught_up = started;
        *self.progress.0.lock().unwrap_or_else(|p| p.into_inner()) = seq;
        self.progress.1.notify_all();
        if current.index.persons() > self.max_persons {
            tracing::warn!(
                persons = current.index.persons(),
                max_persons = self.max_persons,
                "the register outgrew the card index; card views are read from the register from now on"
            );
            self.given_up.store(true, Ordering::Relaxed);
            current.index = CardIndex::new(seq);
            self.stop();
        }
        Ok(())
    }

    /// The card view from the copy with the time it holds every commit up to, unless the copy
    /// has fallen behind.
    pub(super) fn card_view(&self, insurer: &str, number: &str) -> Option<(Vec<CoverageWithTerms>, Timestamp)> {
        self.card_view_shared(insurer, number).map(|(view, as_of)| (view.into_iter().map(std::sync::Arc::unwrap_or_clone).collect(), as_of))
    }

    /// As [`PgIndex::card_view`], sharing the copy's coverages instead of copying them.
    pub(super) fn card_view_shared(&self, insurer: &str, number: &str) -> Option<(crate::SharedView, Timestamp)> {
        if self.given_up.load(Ordering::Relaxed) {
            return None;
        }
        let current = self.state.read().unwrap_or_else(|p| p.into_inner());
        if current.caught_up.elapsed() > MAX_LAG {
            self.behind.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Some((current.index.card_view_shared(insurer, number), current.as_of))
    }

    pub(super) fn counts(&self) -> CardIndexCounts {
        CardIndexCounts {
            persons: self.persons(),
            served: self.served.load(Ordering::Relaxed),
            behind: self.behind.load(Ordering::Relaxed),
        }
    }

    pub(super) fn persons(&self) -> u64 {
        self.state.read().unwrap_or_else(|p| p.into_inner()).index.persons()
    }

    /// Waits until the copy has applied the change log up to `seq`, for at most `timeout`;
    /// whether it has.
    #[cfg(test)]
    pub(super) fn wait_for_position(&self, seq: i64, timeout: Duration) -> bool {
        let position = self.progress.0.lock().unwrap_or_else(|p| p.into_inner());
        let (position, _) = self.progress.1.wait_timeout_while(position, timeout, |at| *at < seq).unwrap_or_else(|p| p.into_inner());
        *position >= seq
    }

    /// Stops the follower and waits for its thread to end.
    #[cfg(test)]
    pub(super) fn stop_and_join(&self) {
        self.stop();
        if let Some(handle) = self.follower.lock().unwrap_or_else(|p| p.into_inner()).take() {
            handle.join().expect("the follower ends without a panic");
        }
    }

    /// Makes the copy's last catch-up `ago` old, as if its follower had not reached the
    /// register for that long.
    #[cfg(test)]
    pub(super) fn age(&self, ago: Duration) {
        let mut current = self.state.write().unwrap_or_else(|p| p.into_inner());
        current.caught_up = Instant::now().checked_sub(ago).expect("a moment after the machine started");
    }
}
