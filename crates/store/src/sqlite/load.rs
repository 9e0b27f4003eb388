//! A load into an empty register: the first import of a whole population.
//!
//! Imported batch by batch into a register of millions, each event pays for the rules' reads
//! (three set-based lookups through the random-keyed indexes) and for inserting into those
//! indexes at random places (docs/PERFORMANCE.md, issue 13: at 10 M persons the index descents
//! alone were a fifth of the import's CPU). When the register starts empty, everything the
//! rules need to read is what this load itself wrote, so it is kept here in memory, and the
//! named indexes of `coverages` and `persons` (card number, person, birth date; the persons'
//! unique reference) are dropped at the start and built once at the end, where SQLite sorts
//! instead of inserting at random. Foreign keys are not enforced row by row on the load's
//! writer; every reference is checked once before the load may end (`check_references`).
//!
//! The rules of one batch and the writes of the one before it run at the same time, on two
//! threads (see [`SqliteLoad`]).
//!
//! What does not change: every batch is decided by the same rules (`crate::rules`) and written
//! by the same statements (`super::apply`) in its own transaction under `synchronous = FULL`,
//! so a crash keeps every committed batch and a re-run skips them by event id. The load is a
//! row in `register_load` (migration 0014), committed with the dropped indexes' own CREATE
//! statements in the first transaction and deleted in the one that builds them again: a crash
//! in between leaves that row, and the next load continues from what was committed (its state
//! read back from the tables) before building the indexes. While the row exists every other
//! import is refused (`StoreError::Loading`), so the state in memory stays the register's.
//! Reads meanwhile are answered, slowly (no index on card numbers or person references: a
//! lookup scans the table): nobody should verify against a register that is still being
//! loaded.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, mpsc};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use onshi_domain::{Date, Timestamp};

use super::apply::EventRow;
use super::{SqliteRegister, load_terms, sqlite, to_date, to_opt_date};
use crate::model::{ApplyOutcome, CoverageEvent, TermsRecord};
use crate::rules::{CardKey, Decision, RegisterReads, Span, decide};
use crate::{EventSink, RegisterLoad, StoreError};

/// The tables whose explicit (named) indexes wait until the end of a load. Their rows are
/// appended in id order, so only the secondary indexes are written at random.
const DEFERRED_INDEX_TABLES: &str = "'coverages', 'persons'";

/// True of a register a load may start on: nothing imported into it yet.
const EMPTY: &str =
    "NOT EXISTS (SELECT 1 FROM persons) AND NOT EXISTS (SELECT 1 FROM coverages) AND NOT EXISTS (SELECT 1 FROM insurer_events)";

/// Writes an exact key of several texts into `key`: each part with its length in front, so
/// that no two different keys share an encoding whatever characters the parts hold.
fn pack_into<'k>(key: &'k mut Vec<u8>, parts: &[&[u8]]) -> &'k [u8] {
    key.clear();
    for part in parts {
        key.extend_from_slice(&(part.len() as u32).to_le_bytes());
        key.extend_from_slice(part);
    }
    key
}

fn card_into<'k>(key: &'k mut Vec<u8>, insurer: &str, number: &str, symbol: &str, branch: u8) -> &'k [u8] {
    pack_into(key, &[insurer.as_bytes(), number.as_bytes(), symbol.as_bytes(), &[branch]])
}

fn event_into<'k>(key: &'k mut Vec<u8>, insurer: &str, event_id: &str) -> &'k [u8] {
    pack_into(key, &[insurer.as_bytes(), event_id.as_bytes()])
}

/// Keys packed back to back in one buffer, found through an open-addressing table of entry
/// numbers: no allocation per key. A load keeps three such maps of ten million keys each;
/// one boxed key per entry made the allocator the largest cost of the load (a heap of tens of
/// millions of small blocks: `malloc_consolidate` and `_int_malloc` were a fifth of its CPU).
struct PackedMap<V> {
    bytes: Vec<u8>,
    /// (start in `bytes`, length, value), in insertion order.
    entries: Vec<(usize, u32, V)>,
    /// Entry number + 1 in the low half (0: an empty slot), the high half of the key's hash in
    /// the high half: a probe passes other keys' slots without reading their entries and bytes
    /// (two cache misses each in tables of ten million). A power of two long, at most half full.
    slots: Vec<u64>,
    hasher: crate::rules::FastHasher,
}

impl<V: Copy> PackedMap<V> {
    fn new() -> PackedMap<V> {
        PackedMap { bytes: Vec::new(), entries: Vec::new(), slots: vec![0; 16], hasher: Default::default() }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn key(&self, entry: usize) -> &[u8] {
        let (start, len, _) = self.entries[entry];
        &self.bytes[start..start + len as usize]
    }

    /// The slot holding `key`, or the empty slot where it would go, and the key's tag.
    fn slot(&self, key: &[u8]) -> (usize, u64) {
        let mask = self.slots.len() - 1;
        let hash = self.hash(key);
        let tag = hash & !u64::from(u32::MAX);
        let mut slot = hash as usize & mask;
        loop {
            let held = self.slots[slot];
            let number = held as u32;
            if number == 0 || (held & !u64::from(u32::MAX) == tag && self.key(number as usize - 1) == key) {
                return (slot, tag);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn get(&self, key: &[u8]) -> Option<V> {
        match self.slots[self.slot(key).0] as u32 {
            0 => None,
            n => Some(self.entries[n as usize - 1].2),
        }
    }

    /// Sets `key` to `value`; the value it had, if any.
    fn insert(&mut self, key: &[u8], value: V) -> Result<Option<V>, StoreError> {
        let (slot, tag) = self.slot(key);
        if let n @ 1.. = self.slots[slot] as u32 {
            return Ok(Some(std::mem::replace(&mut self.entries[n as usize - 1].2, value)));
        }
        let number = u32::try_from(self.entries.len() + 1)
            .map_err(|_| StoreError::Corrupt("more than 4 billion keys in one load of the register".into()))?;
        self.entries.push((self.bytes.len(), key.len() as u32, value));
        self.bytes.extend_from_slice(key);
        self.slots[slot] = tag | u64::from(number);
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        Ok(None)
    }

    fn grow(&mut self) {
        let mut slots = vec![0u64; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for entry in 0..self.entries.len() {
            let hash = self.hash(self.key(entry));
            let mut slot = hash as usize & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = (hash & !u64::from(u32::MAX)) | (entry as u64 + 1);
        }
        self.slots = slots;
    }
}

/// A coverage as the rules read it back, kept by id.
#[derive(Clone, Copy)]
struct Held {
    person_id: i64,
    acquired_on: Date,
    lost_on: Option<Date>,
    /// The coverage with the same card key written before this one (its id), 0 for none.
    previous_same_card: i64,
}

/// What the register holds, as far as the rules read it: everything this load wrote.
struct LoadState {
    applied: PackedMap<()>,
    persons: PackedMap<i64>,
    next_person_id: i64,
    /// The newest coverage id for each card key.
    cards: PackedMap<i64>,
    /// Coverage `id` at index `id - 1`: a load into an empty register numbers them densely.
    coverages: Vec<Held>,
    /// A key being packed.
    scratch: Vec<u8>,
}

impl LoadState {
    fn new() -> LoadState {
        LoadState {
            applied: PackedMap::new(),
            persons: PackedMap::new(),
            next_person_id: 1,
            cards: PackedMap::new(),
            coverages: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn add_person(&mut self, person_id: i64, person_ref: &str) -> Result<(), StoreError> {
        self.persons.insert(person_ref.as_bytes(), person_id)?;
        self.next_person_id = self.next_person_id.max(person_id + 1);
        Ok(())
    }

    fn add_coverage(
        &mut self,
        coverage_id: i64,
        (insurer, number, symbol, branch): (&str, &str, &str, u8),
        held: Held,
    ) -> Result<(), StoreError> {
        if coverage_id != self.coverages.len() as i64 + 1 {
            return Err(StoreError::Corrupt(format!(
                "coverage {coverage_id} follows {} in a load into an empty register; the ids should run without gaps",
                self.coverages.len()
            )));
        }
        let key = card_into(&mut self.scratch, insurer, number, symbol, branch);
        let previous_same_card = self.cards.insert(key, coverage_id)?.unwrap_or(0);
        self.coverages.push(Held { previous_same_card, ..held });
        Ok(())
    }

    fn add_event(&mut self, insurer: &str, event_id: &str) -> Result<(), StoreError> {
        let key = event_into(&mut self.scratch, insurer, event_id);
        self.applied.insert(key, ())?;
        Ok(())
    }

    fn held_mut(&mut self, coverage_id: i64) -> Result<&mut Held, StoreError> {
        let index = usize::try_from(coverage_id - 1).ok().filter(|i| *i < self.coverages.len());
        match index {
            Some(i) => Ok(&mut self.coverages[i]),
            None => Err(StoreError::Corrupt(format!("coverage {coverage_id} changed by a batch of the load is not among its coverages"))),
        }
    }

    /// Takes in what a committed batch wrote.
    fn absorb(&mut self, decision: &Decision, events: &[CoverageEvent]) -> Result<(), StoreError> {
        for (person_id, person_ref) in &decision.new_persons {
            self.add_person(*person_id, person_ref)?;
        }
        for c in &decision.new_coverages {
            let (insurer, number, symbol, branch) = &c.key;
            let held = Held { person_id: c.person_id, acquired_on: c.acquired_on, lost_on: c.lost.map(|l| l.0), previous_same_card: 0 };
            self.add_coverage(c.coverage_id, (insurer, number, symbol, *branch), held)?;
        }
        for (coverage_id, update) in &decision.updates {
            if let Some((lost_on, _, _)) = update.lost {
                self.held_mut(*coverage_id)?.lost_on = Some(lost_on);
            }
        }
        for (index, _) in &decision.applied {
            let event = &events[*index];
            self.add_event(event.insurer.as_str(), &event.event_id)?;
        }
        Ok(())
    }

    /// The state of a load left unfinished, read back from its tables.
    fn read_back(tx: &Transaction<'_>) -> Result<LoadState, StoreError> {
        let mut state = LoadState::new();
        let mut persons =
            tx.prepare("SELECT person_id, person_ref FROM persons").map_err(sqlite("preparing to read the loaded persons"))?;
        let mut rows = persons.query([]).map_err(sqlite("reading the loaded persons"))?;
        while let Some(row) = rows.next().map_err(sqlite("reading the loaded persons"))? {
            let person_ref: String = row.get(1).map_err(sqlite("reading a loaded person"))?;
            state.add_person(row.get(0).map_err(sqlite("reading a loaded person"))?, &person_ref)?;
        }
        let mut coverages = tx
            .prepare(
                "SELECT insurer_number, card_number, card_symbol, card_branch, coverage_id, person_id, acquired_on, lost_on
                 FROM coverages ORDER BY coverage_id",
            )
            .map_err(sqlite("preparing to read the loaded coverages"))?;
        let mut rows = coverages.query([]).map_err(sqlite("reading the loaded coverages"))?;
        while let Some(row) = rows.next().map_err(sqlite("reading the loaded coverages"))? {
            let (insurer, number, symbol, branch, coverage_id, person_id, acquired, lost) =
                super::apply::card_row(row).map_err(sqlite("reading a loaded coverage"))?;
            let branch = u8::try_from(branch).map_err(|_| StoreError::Corrupt(format!("coverage {coverage_id}: branch {branch}")))?;
            let held = Held { person_id, acquired_on: to_date(acquired)?, lost_on: to_opt_date(lost)?, previous_same_card: 0 };
            state.add_coverage(coverage_id, (&insurer, &number, &symbol, branch), held)?;
        }
        let mut events =
            tx.prepare("SELECT insurer_number, event_id FROM insurer_events").map_err(sqlite("preparing to read the loaded events"))?;
        let mut rows = events.query([]).map_err(sqlite("reading the loaded events"))?;
        while let Some(row) = rows.next().map_err(sqlite("reading the loaded events"))? {
            let insurer: String = row.get(0).map_err(sqlite("reading a loaded event"))?;
            let event_id: String = row.get(1).map_err(sqlite("reading a loaded event"))?;
            state.add_event(&insurer, &event_id)?;
        }
        Ok(state)
    }
}

/// The rules' reads during a load: from memory, and a coverage's terms (rare: a change to a
/// coverage of an earlier batch) from the committed file, with the rows of the batch being
/// written meanwhile (`pending`) laid over them.
struct LoadReads<'s> {
    state: &'s LoadState,
    /// Sees every batch before `pending` committed.
    reader: &'s Connection,
    pending: Option<&'s Decision>,
    /// Where each coverage's rows are in `pending.terms`, made at the first terms read: one
    /// pass over the batch in flight, not one per change that reads terms.
    pending_terms: Option<HashMap<i64, Vec<usize>>>,
    scratch: Vec<u8>,
}

impl RegisterReads for LoadReads<'_> {
    fn applied(&mut self, ids: &[(&str, &str)]) -> Result<crate::rules::Set<(String, String)>, StoreError> {
        let mut seen = crate::rules::Set::default();
        for (insurer, event_id) in ids {
            if self.state.applied.get(event_into(&mut self.scratch, insurer, event_id)).is_some() {
                seen.insert((insurer.to_string(), event_id.to_string()));
            }
        }
        Ok(seen)
    }

    fn persons(&mut self, refs: &[&str]) -> Result<crate::rules::Map<String, i64>, StoreError> {
        Ok(refs.iter().filter_map(|r| self.state.persons.get(r.as_bytes()).map(|id| (r.to_string(), id))).collect())
    }

    fn cards(&mut self, keys: &[CardKey]) -> Result<Vec<(CardKey, Span)>, StoreError> {
        let mut found = Vec::new();
        for key in keys {
            let (insurer, number, symbol, branch) = key;
            let mut coverage_id = self.state.cards.get(card_into(&mut self.scratch, insurer, number, symbol, *branch)).unwrap_or(0);
            while coverage_id > 0 {
                let held = self.state.coverages[(coverage_id - 1) as usize];
                found.push((
                    key.clone(),
                    Span { coverage_id, person_id: held.person_id, acquired_on: held.acquired_on, lost_on: held.lost_on },
                ));
                coverage_id = held.previous_same_card;
            }
        }
        Ok(found)
    }

    fn terms(&mut self, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError> {
        let mut rows = load_terms(self.reader, coverage_id)?;
        let Some(pending) = self.pending else { return Ok(rows) };
        let index = self.pending_terms.get_or_insert_with(|| {
            let mut index: HashMap<i64, Vec<usize>> = HashMap::new();
            for (at, (id, _)) in pending.terms.iter().enumerate() {
                index.entry(*id).or_default().push(at);
            }
            index
        });
        // The batch being written replaces or adds rows by date (as its `INSERT OR REPLACE`);
        // laid over rows it may already have committed, it changes nothing.
        for row in index.get(&coverage_id).into_iter().flatten().map(|at| &pending.terms[*at].1) {
            match rows.iter_mut().find(|r| r.effective_from == row.effective_from) {
                Some(held) => *held = row.clone(),
                None => rows.push(row.clone()),
            }
        }
        Ok(rows)
    }

    fn next_ids(&mut self) -> Result<(i64, i64), StoreError> {
        Ok((self.state.next_person_id, self.state.coverages.len() as i64 + 1))
    }
}

/// A load in progress. Each batch is decided here, from memory, while the batch before it is
/// written and committed by the load's writing thread on a connection of its own: the rules
/// and the writes of a batch were each about half of a load's CPU, and this machine has a
/// second core. At most one batch is being written at a time, and a batch is decided only
/// once every batch before the one being written has committed, so the reads see what a
/// batch-by-batch import would. The register's own writer stays locked until the load ends,
/// so that nothing else in this process writes the register meanwhile.
pub(super) struct SqliteLoad<'r> {
    state: LoadState,
    /// Reads the terms of committed batches.
    reader: Connection,
    /// The batch the writing thread has (or last had): its rows until it is known committed.
    pending: Option<Arc<Decision>>,
    worker: Worker,
    /// A batch failed: the state in memory may be ahead of the file, so the load goes no
    /// further (a new load continues from what was committed).
    broken: bool,
    // Released last (fields drop in order): the writing thread is joined first.
    _writer: MutexGuard<'r, Connection>,
    /// Held (`File::try_lock`) while this load runs: a load is taken over only when no live
    /// process holds it, so a second import never steals a load that is still running.
    _running: std::fs::File,
}

/// What the writing thread is given.
enum Job {
    Write { decision: Arc<Decision>, rows: Vec<EventRow>, registered_at: Timestamp },
    Finish,
}

/// The load's writing thread and its two channels.
struct Worker {
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Result<(), StoreError>>,
    /// A job was sent whose result has not been taken yet.
    in_flight: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start(mut connection: Connection, token: String) -> Result<Worker, StoreError> {
        let (jobs, inbox) = mpsc::sync_channel::<Job>(1);
        let (outbox, done) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("register-load".into())
            .spawn(move || {
                // The batch last written, kept until the next job: by then the deciding thread
                // has let go of it, so its many small allocations are freed here, off that
                // thread (they were a twentieth of its time).
                let mut written: Option<Arc<Decision>> = None;
                for job in inbox {
                    drop(written.take());
                    let result = match job {
                        Job::Write { decision, rows, registered_at } => {
                            let result = write_batch(&mut connection, &token, &decision, &rows, registered_at);
                            written = Some(decision);
                            result
                        }
                        Job::Finish => build_indexes(&mut connection, &token),
                    };
                    if outbox.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| StoreError::Write { path: "the load's writing thread".into(), source: e })?;
        Ok(Worker { jobs: Some(jobs), done, in_flight: false, thread: Some(thread) })
    }

    /// Waits for the job sent last, if its result is still to come.
    fn wait(&mut self) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(());
        }
        self.done.recv().unwrap_or_else(|_| Err(StoreError::Corrupt("the load's writing thread stopped".into())))
    }

    fn send(&mut self, job: Job) -> Result<(), StoreError> {
        let stopped = || StoreError::Corrupt("the load's writing thread stopped".into());
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())?;
        self.in_flight = true;
        Ok(())
    }
}

impl Drop for Worker {
    /// A load dropped unfinished (an import that failed) lets its batch in hand end, committed
    /// or not, before the register's writer is released.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_batch(
    connection: &mut Connection,
    token: &str,
    decision: &Decision,
    rows: &[EventRow],
    registered_at: Timestamp,
) -> Result<(), StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite("starting a load transaction"))?;
    still_ours(&tx, token)?;
    super::apply::write_decision(&tx, decision, rows, registered_at)?;
    tx.commit().map_err(sqlite("committing a load transaction"))
}

fn build_indexes(connection: &mut Connection, token: &str) -> Result<(), StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite("starting the end of a load"))?;
    let indexes = still_ours(&tx, token)?;
    let statements: Vec<String> =
        serde_json::from_str(&indexes).map_err(|e| StoreError::Corrupt(format!("the load's index statements: {e}")))?;
    check_references(&tx)?;
    for statement in &statements {
        tx.execute_batch(statement).map_err(sqlite("building an index at the end of a load"))?;
    }
    tx.execute("DELETE FROM register_load", []).map_err(sqlite("ending the load"))?;
    tx.commit().map_err(sqlite("committing the end of a load"))
}

/// Every reference a load writes: (table, column, the table it names, that table's id). The
/// schema's own list for the tables `apply::write_decision` writes is checked against this one
/// by a test (`the_load_checks_every_declared_reference`); a new table written by a load goes
/// into that test's list too.
const LOAD_REFERENCES: [(&str, &str, &str, &str); 3] = [
    ("coverages", "person_id", "persons", "person_id"),
    ("coverage_terms", "coverage_id", "coverages", "coverage_id"),
    ("insurer_events", "coverage_id", "coverages", "coverage_id"),
];

/// The load's writer does not enforce foreign keys row by row (a tenth of a load's time at
/// 1 M persons, docs/PERFORMANCE.md): the rules make every reference themselves, to ids they
/// assigned or read. The same guarantee is checked here once, over all the load wrote, before
/// the load may end; a dangling reference leaves the load unfinished (every import refused)
/// with the row named, instead of a register that answers from broken rows.
///
/// A load gives each new person and coverage the next id, so the ids named are 1 to n without
/// a gap when n rows exist; then a reference holds exactly when it lies in that range, one
/// scan of the table instead of a lookup per row (at 10 M persons 4.3 s against 9.4). With a
/// gap, each row is looked up in the table it names.
fn check_references(tx: &Transaction<'_>) -> Result<(), StoreError> {
    // Each named table's ids are counted once (two references name `coverages`, and while the
    // load runs its count is a scan of the whole table).
    let mut ids_of: HashMap<&str, (i64, bool)> = HashMap::new();
    for (table, column, parent, id) in LOAD_REFERENCES {
        let (count, dense) = match ids_of.get(parent) {
            Some(known) => *known,
            None => {
                let (count, min, max): (i64, Option<i64>, Option<i64>) = tx
                    .query_row(&format!("SELECT count(*), min({id}), max({id}) FROM {parent}"), [], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .map_err(sqlite("checking the load's references"))?;
                let known = (count, count == 0 || (min == Some(1) && max == Some(count)));
                ids_of.insert(parent, known);
                known
            }
        };
        let dangling: Option<String> = if dense {
            tx.query_row(&format!("SELECT {column} FROM {table} WHERE {column} NOT BETWEEN 1 AND ?1 LIMIT 1"), [count], |row| {
                Ok(format!("{column} {}", row.get::<_, i64>(0)?))
            })
        } else {
            let sql =
                format!("SELECT c.{column} FROM {table} c WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{id} = c.{column}) LIMIT 1");
            tx.query_row(&sql, [], |row| Ok(format!("{column} {}", row.get::<_, i64>(0)?)))
        }
        .optional()
        .map_err(sqlite("checking the load's references"))?;
        if let Some(named) = dangling {
            return Err(StoreError::Corrupt(format!(
                "the load wrote a row of {table} ({named}) that names no row of {parent}: the load stays unfinished; \
                 keep the register file for a bug report and start again from an empty one"
            )));
        }
    }
    Ok(())
}

/// The load under way, if any: (token, started at, the dropped indexes' statements).
fn current_load(tx: &Transaction<'_>) -> Result<Option<(String, i64, String)>, StoreError> {
    tx.query_row("SELECT token, started_at, indexes FROM register_load", [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()
        .map_err(sqlite("reading whether the register is being loaded"))
}

/// `2026-12-05 21:03`, Japan time.
fn readable_time(at: Timestamp) -> String {
    let date = at.date();
    let minutes = at.jst_seconds().rem_euclid(86_400) / 60;
    format!("{:04}-{:02}-{:02} {:02}:{:02}", date.year(), date.month(), date.day(), minutes / 60, minutes % 60)
}

/// When the load under way started, if one is.
pub(super) fn unfinished(connection: &Connection) -> Result<Option<String>, StoreError> {
    let started: Option<i64> = connection
        .query_row("SELECT started_at FROM register_load", [], |row| row.get(0))
        .optional()
        .map_err(sqlite("reading whether the register is being loaded"))?;
    Ok(started.map(|at| readable_time(Timestamp::from_unix(at))))
}

/// Refuses an ordinary import while a load runs (its state in memory would miss the import).
pub(super) fn refuse_while_loading(tx: &Transaction<'_>) -> Result<(), StoreError> {
    match unfinished(tx)? {
        Some(started_at) => Err(StoreError::Loading { started_at }),
        None => Ok(()),
    }
}

/// The lock a running load holds: `<register>-load.lock` beside the file, locked for as long as
/// the load's session lives (the operating system releases it when the process ends, however
/// it ends). Any import that finds it held is refused.
fn running_lock(register: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut path = register.as_os_str().to_owned();
    path.push("-load.lock");
    let path = std::path::PathBuf::from(path);
    let cannot = |source| StoreError::Write { path: path.display().to_string(), source };
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(cannot)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::LoadRunning),
        Err(std::fs::TryLockError::Error(e)) => Err(cannot(e)),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl SqliteRegister {
    pub(super) fn begin_sqlite_load(&self) -> Result<Option<SqliteLoad<'_>>, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A register with data and no load under way imports batch by batch: said without
        // taking the load's lock (nor leaving its file beside every register).
        let candidate: bool = writer
            .query_row(&format!("SELECT EXISTS (SELECT 1 FROM register_load) OR ({EMPTY})"), [], |row| row.get(0))
            .map_err(sqlite("checking whether the register is empty"))?;
        if !candidate {
            return Ok(None);
        }
        let running = running_lock(&self.path)?;
        // Unique among loads that could meet on this file: this process, this instant.
        let token = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite("starting a load"))?;
        let state = match current_load(&tx)? {
            Some(_) => {
                // An unfinished load: take it over and go on from what it committed.
                tx.execute("UPDATE register_load SET token = ?1", [&token]).map_err(sqlite("taking over an unfinished load"))?;
                LoadState::read_back(&tx)?
            }
            None => {
                let empty: bool = tx
                    .query_row(&format!("SELECT {EMPTY}"), [], |row| row.get(0))
                    .map_err(sqlite("checking whether the register is empty"))?;
                if !empty {
                    return Ok(None);
                }
                let indexes: Vec<(String, String)> = {
                    let mut statement = tx
                        .prepare(&format!(
                            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({DEFERRED_INDEX_TABLES}) ORDER BY name"
                        ))
                        .map_err(sqlite("listing the indexes a load builds at its end"))?;
                    statement
                        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                        .map_err(sqlite("listing the indexes a load builds at its end"))?
                        .collect::<Result<_, _>>()
                        .map_err(sqlite("listing the indexes a load builds at its end"))?
                };
                for (name, _) in &indexes {
                    tx.execute_batch(&format!("DROP INDEX \"{name}\"")).map_err(sqlite("dropping an index until the load's end"))?;
                }
                let statements: Vec<&str> = indexes.iter().map(|(_, sql)| sql.as_str()).collect();
                let statements = serde_json::to_string(&statements).map_err(|e| StoreError::Corrupt(format!("index statements: {e}")))?;
                tx.execute(
                    "INSERT INTO register_load (id, token, started_at, indexes) VALUES (1, ?1, ?2, ?3)",
                    params![token, unix_now(), statements],
                )
                .map_err(sqlite("recording the load"))?;
                LoadState::new()
            }
        };
        tx.commit().map_err(sqlite("committing the start of a load"))?;
        let writer_connection = super::open_writer(&self.path, self.options)?;
        // References are checked once at the end instead of row by row (`check_references`).
        writer_connection.execute_batch("PRAGMA foreign_keys = OFF").map_err(sqlite("configuring the load's writer"))?;
        let worker = Worker::start(writer_connection, token)?;
        Ok(Some(SqliteLoad {
            state,
            reader: self.open_reader()?,
            pending: None,
            worker,
            broken: false,
            _writer: writer,
            _running: running,
        }))
    }
}

/// The dropped indexes' statements, unless another load took this one (`token`) over.
fn still_ours(tx: &Transaction<'_>, token: &str) -> Result<String, StoreError> {
    match current_load(tx)? {
        Some((current, _, indexes)) if current == token => Ok(indexes),
        _ => Err(StoreError::LoadTakenOver),
    }
}

impl SqliteLoad<'_> {
    fn apply(&mut self, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError> {
        // Every batch before `pending` is committed (waited for below, one call ago), so the
        // reader and `pending` together hold every row the rules may read.
        let mut reads = LoadReads {
            state: &self.state,
            reader: &self.reader,
            pending: self.pending.as_deref(),
            pending_terms: None,
            scratch: Vec::new(),
        };
        let mut decision = decide(&mut reads, events, registered_at)?;
        // The batch being written is not read again: the writing thread frees it.
        self.pending = None;
        let outcomes = std::mem::take(&mut decision.outcomes);
        self.state.absorb(&decision, events)?;
        let rows = super::apply::event_rows(&decision, events);
        // The batch before this one has now committed, or the load stops here.
        self.worker.wait()?;
        let decision = Arc::new(decision);
        self.worker.send(Job::Write { decision: Arc::clone(&decision), rows, registered_at })?;
        self.pending = Some(decision);
        Ok(outcomes)
    }

    /// Runs `step` unless an earlier one failed; a failure ends the load's use.
    fn unless_broken<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if self.broken {
            return Err(StoreError::Corrupt(
                "a batch of this load failed; run the import again to continue from what was committed".into(),
            ));
        }
        let result = step(self);
        self.broken = result.is_err();
        result
    }
}

impl EventSink for SqliteLoad<'_> {
    /// Decides the batch and hands it to the writing thread; its outcomes are returned once
    /// the batch before it has committed. The last batch commits in [`RegisterLoad::finish`].
    fn apply_events(&mut self, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.unless_broken(|load| load.apply(events, registered_at))
    }
}

impl RegisterLoad for SqliteLoad<'_> {
    fn finish(mut self: Box<Self>) -> Result<(), StoreError> {
        self.unless_broken(|load| {
            load.worker.wait()?;
            load.worker.send(Job::Finish)?;
            load.worker.wait()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Register;
    use crate::conformance::acquisition;
    use crate::sqlite::SqliteOptions;

    fn open(path: &std::path::Path) -> SqliteRegister {
        SqliteRegister::open(path, SqliteOptions::SERVER).unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_jst_seconds(1_750_000_000)
    }

    /// A connection that writes what a buggy load might have written: its own (a load holds the
    /// register's writer), waiting for the load's writing thread, enforcing no references.
    fn behind_the_load(path: &std::path::Path) -> Connection {
        let behind = Connection::open(path).unwrap();
        behind.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        behind.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        behind
    }

    /// Read on a connection of its own: a load holds the register's writer.
    fn schema(register: &SqliteRegister) -> Vec<(String, String, Option<String>)> {
        let connection = Connection::open(register.path()).unwrap();
        let mut statement = connection.prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name").unwrap();
        statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
        /// Random histories in random transaction sizes: the load ends as ordinary imports do.
        #[test]
        fn a_load_ends_as_batch_imports_after_any_history(
            steps in crate::conformance::history_steps(0),
            batch in 1usize..8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let loaded = open(&dir.path().join("loaded.sqlite"));
            let imported = open(&dir.path().join("imported.sqlite"));
            crate::conformance::a_load_ends_as_batch_imports(&loaded, &imported, &steps, batch);
        }
    }

    /// A load's batch large enough that its rows go several to a statement ends as the same
    /// events imported one at a time.
    #[test]
    fn a_large_loaded_batch_ends_as_its_events_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = open(&dir.path().join("loaded.sqlite"));
        let imported = open(&dir.path().join("imported.sqlite"));
        let events = crate::conformance::large_batch();
        let mut load = loaded.begin_load().unwrap().expect("an empty register is loaded");
        let together = load.apply_events(&events, now()).unwrap();
        load.finish().unwrap();
        crate::conformance::a_large_batch_ends_as_single_events(&loaded, &imported, &events, &together);
    }

    /// The indexes dropped for the load come back exactly as the migrations made them, and
    /// nothing of the load is left in the file.
    #[test]
    fn after_a_load_the_schema_is_the_migrations_schema() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = open(&dir.path().join("loaded.sqlite"));
        let fresh = open(&dir.path().join("fresh.sqlite"));
        let before = schema(&loaded);
        assert!(before.iter().any(|(_, name, _)| name == "coverages_by_card"), "the migrations index card numbers: {before:?}");
        let mut load = loaded.begin_load().unwrap().expect("an empty register is loaded");
        let during = schema(&loaded);
        assert!(!during.iter().any(|(_, name, _)| name == "coverages_by_card"), "dropped while loading");
        load.apply_events(&[acquisition("l1", "L1", "7001")], now()).unwrap();
        load.finish().unwrap();
        assert_eq!(schema(&loaded), schema(&fresh));
        let left: i64 = loaded.writer.lock().unwrap().query_row("SELECT count(*) FROM register_load", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0);
    }

    /// The load's writer enforces no foreign keys row by row; the end of the load checks them
    /// all. A row naming no coverage (written here behind the load's back, as a bug in the rules
    /// would) keeps the load from ending: the error names the table, the load stays
    /// unfinished, and ordinary imports stay refused.
    #[test]
    fn a_load_with_a_dangling_reference_does_not_end() {
        let dir = tempfile::tempdir().unwrap();
        let register = open(&dir.path().join("loaded.sqlite"));
        let mut load = register.begin_load().unwrap().expect("an empty register is loaded");
        load.apply_events(&[acquisition("d1", "D1", "7001")], now()).unwrap();
        let behind = behind_the_load(register.path());
        behind
            .execute(
                "INSERT INTO insurer_events (insurer_number, event_id, kind, coverage_id, occurred_on, notified_at, registered_at)
                 VALUES ('06130488', 'stray', 'acquire', 999999, 20250401, 0, 0)",
                [],
            )
            .unwrap();
        match load.finish() {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("insurer_events") && message.contains("coverages"), "{message}")
            }
            other => panic!("a dangling reference must stop the load: {other:?}"),
        }
        assert!(matches!(register.apply_events(&[acquisition("d2", "D2", "7002")], now()), Err(StoreError::Loading { .. })));
    }

    /// With a gap in the ids (never made by a load; written here behind its back) the check
    /// falls back to SQLite's own, and still finds a coverage naming no person.
    #[test]
    fn a_dangling_reference_is_found_when_ids_have_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let register = open(&dir.path().join("loaded.sqlite"));
        let mut load = register.begin_load().unwrap().expect("an empty register is loaded");
        load.apply_events(&[acquisition("g1", "G1", "7001")], now()).unwrap();
        behind_the_load(register.path())
            .execute_batch(
                "INSERT INTO persons (person_id, person_ref) VALUES (100, 'G100');
                 INSERT INTO coverages (coverage_id, person_id, insurer_number, card_symbol, card_number, card_branch, birth_date,
                     sex, relationship, card_classification, acquired_on, acquired_notified_at, updated_at)
                 VALUES (2, 55, '06130488', '12', '7002', 0, 19800101, '1', '1', '01', 20240401, 0, 0);",
            )
            .unwrap();
        match load.finish() {
            Err(StoreError::Corrupt(message)) => assert!(message.contains("coverages") && message.contains("persons"), "{message}"),
            other => panic!("a dangling reference must stop the load: {other:?}"),
        }
    }

    /// The check at the end of a load covers every reference the schema declares on the
    /// tables a load writes: a migration adding one must add it to `LOAD_REFERENCES`.
    #[test]
    fn the_load_checks_every_declared_reference() {
        let dir = tempfile::tempdir().unwrap();
        let register = open(&dir.path().join("register.sqlite"));
        let connection = Connection::open(register.path()).unwrap();
        let mut declared = Vec::new();
        for table in ["persons", "coverages", "coverage_terms", "insurer_events", "register_changes", "insurer_stats"] {
            let mut statement =
                connection.prepare(&format!("SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list('{table}')")).unwrap();
            for row in statement
                .query_map([], |r| Ok((table.to_string(), r.get::<_, String>(1)?, r.get::<_, String>(0)?, r.get::<_, String>(2)?)))
                .unwrap()
            {
                declared.push(row.unwrap());
            }
        }
        declared.sort();
        let mut checked: Vec<(String, String, String, String)> =
            LOAD_REFERENCES.iter().map(|(t, c, p, i)| (t.to_string(), c.to_string(), p.to_string(), i.to_string())).collect();
        checked.sort();
        assert_eq!(declared, checked);
    }

    /// A register that holds anything is imported batch by batch, not loaded.
    #[test]
    fn a_register_that_is_not_empty_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let register = open(&dir.path().join("register.sqlite"));
        register.apply_events(&[acquisition("n1", "N1", "7001")], now()).unwrap();
        assert!(register.begin_load().unwrap().is_none());
    }

    /// While a load runs, another load is refused (`LoadRunning`) and so is an ordinary import
    /// (`Loading`); once it is cut off (its session dropped unfinished, as by a crash; batches
    /// it had handed over may or may not have committed), the next load continues it from what
    /// was committed and the register ends as batch-by-batch imports of the same events did.
    #[test]
    fn a_running_load_is_not_taken_over_and_an_interrupted_one_is_continued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loaded.sqlite");
        // Seven persons holding thirty cards; every fifth event is an acquisition of a card
        // another person holds, refused.
        let events: Vec<CoverageEvent> = (0..30)
            .map(|i| {
                let number = if i % 5 == 4 { 8000 + i - 1 } else { 8000 + i };
                acquisition(&format!("i{i}"), &format!("I{}", i % 7), &number.to_string())
            })
            .collect();
        let imported = open(&dir.path().join("imported.sqlite"));
        for chunk in events[..12].chunks(4) {
            imported.apply_events(chunk, now()).unwrap();
        }

        let first = open(&path);
        let mut interrupted = first.begin_load().unwrap().expect("loaded");
        for chunk in events[..12].chunks(4) {
            interrupted.apply_events(chunk, now()).unwrap();
        }
        let other = open(&path);
        let refused = other.apply_events(&events[12..16], now());
        assert!(matches!(refused, Err(StoreError::Loading { .. })), "{refused:?}");
        assert!(refused.unwrap_err().to_string().contains("run it again to finish it"));
        let second = open(&path);
        assert!(matches!(second.begin_load().map(|l| l.is_some()), Err(StoreError::LoadRunning)));
        assert!(second.unfinished_load().unwrap().is_some(), "a center opened now would say so");
        drop(interrupted);
        drop(first);

        let mut continued = second.begin_load().unwrap().expect("an unfinished load is continued");
        // Everything again, as a re-run of the import sends it, on both sides.
        let mut by_load = Vec::new();
        let mut by_import = Vec::new();
        for chunk in events.chunks(4) {
            by_load.extend(continued.apply_events(chunk, now()).unwrap());
            by_import.extend(imported.apply_events(chunk, now()).unwrap());
        }
        continued.finish().unwrap();
        assert_eq!(by_load, by_import);
        assert!(by_load[..12].contains(&ApplyOutcome::AlreadyApplied) && by_load[12..].contains(&ApplyOutcome::Applied), "{by_load:?}");
        assert!(by_load.iter().any(|o| matches!(o, ApplyOutcome::Rejected { field: "card", .. })), "{by_load:?}");
        assert_eq!(second.canonical_dump().unwrap(), imported.canonical_dump().unwrap());
        other.apply_events(&[acquisition("after", "A1", "9001")], now()).expect("imports go on after the load");
        assert_eq!(other.unfinished_load().unwrap(), None);
    }

    /// A batch that fails in the writing thread (a trigger here refuses one event's row, as a
    /// full disk or a broken file would refuse a write): the failure reaches the import at its
    /// next call, names what failed, leaves every earlier batch committed and none of the failed
    /// one, and the load refuses to go on; run again (the cause gone), the load continues and
    /// ends as batch-by-batch imports of the same events.
    #[test]
    fn a_batch_failing_in_the_writer_stops_the_load_and_a_rerun_continues_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loaded.sqlite");
        let events: Vec<CoverageEvent> = (0..12)
            .map(|i| acquisition(&if i == 6 { "boom".to_string() } else { format!("w{i}") }, &format!("W{i}"), &(8100 + i).to_string()))
            .collect();
        let register = open(&path);
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON insurer_events WHEN NEW.event_id = 'boom'
                 BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;",
            )
            .unwrap();
        let mut load = register.begin_load().unwrap().expect("an empty register is loaded");
        load.apply_events(&events[..4], now()).expect("first batch decided");
        load.apply_events(&events[4..8], now()).expect("second batch decided, the first written meanwhile");
        let failed = load.apply_events(&events[8..], now()).expect_err("the second batch's write failed");
        assert!(failed.to_string().contains("injected write failure"), "{failed}");
        let again = load.apply_events(&events[8..], now()).expect_err("a broken load goes no further");
        assert!(again.to_string().contains("run the import again"), "{again}");
        assert!(load.finish().is_err());
        let applied: Vec<String> = Connection::open(&path)
            .unwrap()
            .prepare("SELECT event_id FROM insurer_events ORDER BY event_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(applied, ["w0", "w1", "w2", "w3"], "the first batch committed, nothing of the second");
        assert!(matches!(register.apply_events(&events[..1], now()), Err(StoreError::Loading { .. })));

        Connection::open(&path).unwrap().execute_batch("DROP TRIGGER refuse_boom").unwrap();
        let mut continued = register.begin_load().unwrap().expect("the unfinished load is continued");
        for chunk in events.chunks(4) {
            continued.apply_events(chunk, now()).unwrap();
        }
        continued.finish().unwrap();
        let imported = open(&dir.path().join("imported.sqlite"));
        for chunk in events.chunks(4) {
            imported.apply_events(chunk, now()).unwrap();
        }
        assert_eq!(register.canonical_dump().unwrap(), imported.canonical_dump().unwrap());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]
        /// A load of a random history cut off after a random batch and continued by a load of a
        /// fresh register handle (the file read back) ends as batch imports that ran the same
        /// way (the first batches, then everything again), schema included.
        #[test]
        fn a_load_cut_off_anywhere_and_continued_ends_as_batch_imports(
            steps in crate::conformance::history_steps(0),
            batch in 1usize..8,
            cut in 0usize..8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("loaded.sqlite");
            let events = crate::conformance::load_history(&steps);
            let chunks: Vec<&[CoverageEvent]> = events.chunks(batch).collect();
            let cut = cut.min(chunks.len());
            let imported = open(&dir.path().join("imported.sqlite"));
            {
                let first = open(&path);
                let mut load = first.begin_load().unwrap().expect("an empty register is loaded");
                for chunk in &chunks[..cut] {
                    proptest::prop_assert_eq!(load.apply_events(chunk, now()).unwrap(), imported.apply_events(chunk, now()).unwrap());
                }
            }
            let loaded = open(&path);
            let mut load = loaded.begin_load().unwrap().expect("the load is continued");
            for chunk in &chunks {
                proptest::prop_assert_eq!(load.apply_events(chunk, now()).unwrap(), imported.apply_events(chunk, now()).unwrap());
            }
            load.finish().unwrap();
            proptest::prop_assert_eq!(loaded.canonical_dump().unwrap(), imported.canonical_dump().unwrap());
            proptest::prop_assert_eq!(schema(&loaded), schema(&open(&dir.path().join("fresh.sqlite"))));
        }
    }

    #[test]
    fn packed_keys_are_exact_whatever_the_parts_hold() {
        let mut map = PackedMap::new();
        let mut key = Vec::new();
        assert_eq!(map.insert(pack_into(&mut key, &[b"ab", b"c"]), 1).unwrap(), None);
        assert_eq!(map.insert(pack_into(&mut key, &[b"a", b"bc"]), 2).unwrap(), None, "the same bytes split elsewhere are another key");
        for i in 0..10_000i64 {
            map.insert(pack_into(&mut key, &[i.to_string().as_bytes()]), i).unwrap();
        }
        assert_eq!(map.get(pack_into(&mut key, &[b"ab", b"c"])), Some(1));
        assert_eq!(map.get(pack_into(&mut key, &[b"a", b"bc"])), Some(2));
        assert_eq!(map.insert(pack_into(&mut key, &[b"a", b"bc"]), 3).unwrap(), Some(2));
        assert!((0..10_000i64).all(|i| map.get(pack_into(&mut key, &[i.to_string().as_bytes()])) == Some(i)));
        assert_eq!(map.get(pack_into(&mut key, &[b"10000"])), None);
    }
}
