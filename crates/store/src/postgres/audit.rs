//! The audit log in PostgreSQL (issue 14): one chain for every center process on the cluster.
//! An append takes a transaction-scoped advisory lock, reads the chain's head *in the
//! database* (another process may have appended since), seals each entry over its predecessor
//! exactly as the SQLite log does (`crate::audit::seal`, format 2), and inserts; so the entries
//! of all processes form one sequence that `onshi audit verify` walks. Each process exports the
//! head it last wrote to its own checkpoint file (and its log), which shows that entries up to
//! it existed, as with the file log.

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use postgres::Client;

use onshi_domain::Timestamp;

use super::{blocking, connect, pg};
use crate::StoreError;
use crate::audit::{
    AuditEntry, AuditRecord, GENESIS, Tally, TallyMap, Tamper, check_checkpoint_file, compare_tallies, seal, tally_into, tally_rows,
    write_checkpoint_file,
};

/// The advisory lock every append takes (one number for the log).
const APPEND_LOCK: i64 = 0x6f6e_7368_6902;

const ENTRY_COLUMNS: &str = "seq, at, actor, action, person_id, object, code, mac";

fn entry_of(row: &postgres::Row) -> AuditEntry {
    AuditEntry {
        seq: row.get(0),
        record: AuditRecord {
            at: Timestamp::from_jst_seconds(row.get(1)),
            actor: row.get(2),
            action: row.get(3),
            person_id: row.get(4),
            object: row.get(5),
            code: row.get(6),
        },
        mac: row.get(7),
    }
}

/// The chain's newest entry, read in the database.
fn head_of(client: &mut impl postgres::GenericClient) -> Result<(i64, String), StoreError> {
    Ok(client
        .query_opt("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1", &[])
        .map_err(pg("reading the audit log's head"))?
        .map_or((0, GENESIS.to_string()), |r| (r.get(0), r.get(1))))
}

/// Adds counted entries to the tallies and records the last entry counted.
fn add_tallies(tx: &mut postgres::Transaction<'_>, tallies: TallyMap, upto: i64) -> Result<(), StoreError> {
    let rows = tally_rows(tallies);
    let days: Vec<i32> = rows.iter().map(|t| t.day as i32).collect();
    let actors: Vec<&str> = rows.iter().map(|t| t.actor.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|t| t.kind.as_str()).collect();
    let codes: Vec<&str> = rows.iter().map(|t| t.code.as_str()).collect();
    let counts: Vec<i64> = rows.iter().map(|t| t.count as i64).collect();
    // One statement (one round trip on the append path): the counts, then the position.
    tx.execute(
        "WITH added AS (
            INSERT INTO audit_tally (day, actor, kind, code, n)
            SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::int8[])
            ON CONFLICT (day, actor, kind, code) DO UPDATE SET n = audit_tally.n + excluded.n
            RETURNING 1)
         UPDATE audit_tally_state SET tallied_upto = $6",
        &[&days, &actors, &kinds, &codes, &counts, &upto],
    )
    .map_err(pg("tallying the audit log"))?;
    Ok(())
}

/// Counts the entries a center of an older version appended without tallying them (under
/// the append lock, so no entry is counted twice).
fn catch_up_tallies(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(pg("tallying the audit log"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK]).map_err(pg("waiting for other appenders"))?;
    let upto: i64 = tx.query_one("SELECT tallied_upto FROM audit_tally_state", &[]).map_err(pg("tallying the audit log"))?.get(0);
    let head = head_of(&mut tx)?.0;
    if upto < head {
        let mut tallies = TallyMap::new();
        for_each_entry(&mut tx, upto, |entry| tally_into(&mut tallies, &entry.record))?;
        add_tallies(&mut tx, tallies, head)?;
    }
    tx.commit().map_err(pg("tallying the audit log"))
}

/// Calls `each` with every entry after `after`, oldest first, read in portions.
fn for_each_entry(tx: &mut postgres::Transaction<'_>, after: i64, mut each: impl FnMut(AuditEntry)) -> Result<(), StoreError> {
    let portal = tx
        .bind(&format!("SELECT {ENTRY_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq"), &[&after])
        .map_err(pg("reading the audit log"))?;
    loop {
        let rows = tx.query_portal(&portal, 10_000).map_err(pg("reading the audit log"))?;
        if rows.is_empty() {
            return Ok(());
        }
        rows.iter().map(entry_of).for_each(&mut each);
    }
}

/// The tallies of the days `from..=to`.
fn tallies_between(client: &mut impl postgres::GenericClient, from: u32, to: u32) -> Result<Vec<Tally>, StoreError> {
    let (from, to) = (from.min(i32::MAX as u32) as i32, to.min(i32::MAX as u32) as i32);
    Ok(client
        .query("SELECT day, actor, kind, code, n FROM audit_tally WHERE day BETWEEN $1 AND $2 ORDER BY 1, 2, 3, 4", &[&from, &to])
        .map_err(pg("reading the audit tallies"))?
        .iter()
        .map(|r| Tally {
            day: r.get::<_, i32>(0) as u32,
            actor: r.get(1),
            kind: r.get(2),
            code: r.get(3),
            count: r.get::<_, i64>(4).max(0) as u64,
        })
        .collect())
}

/// A walk of the chain: its verdict, and the last entry found intact.
type Walked = (Result<usize, Tamper>, (i64, String));

/// One process's writer of the shared log.
pub struct PgAuditLog {
    url: String,
    client: Option<Client>,
    key: hmac::Key,
    /// The head this process last wrote (for its checkpoint).
    head: (i64, String),
    checkpoint: PathBuf,
}

impl Drop for PgAuditLog {
    fn drop(&mut self) {
        let client = self.client.take();
        blocking(move || drop(client));
    }
}

impl PgAuditLog {
    /// Connects to the register's database `url` (the schema is the register's, see
    /// `PgRegister::open`), sealing with `key`; this process's checkpoint goes to `checkpoint`.
    pub fn open(url: &str, checkpoint: &Path, key: &[u8]) -> Result<PgAuditLog, StoreError> {
        blocking(|| {
            let mut client = connect(url)?;
            catch_up_tallies(&mut client)?;
            let head = head_of(&mut client)?;
            Ok(PgAuditLog {
                url: url.to_string(),
                client: Some(client),
                key: hmac::Key::new(hmac::HMAC_SHA256, key),
                head,
                checkpoint: checkpoint.to_path_buf(),
            })
        })
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        let broken = self.client.as_ref().is_none_or(Client::is_closed);
        if broken {
            self.client = Some(connect(&self.url)?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Appends records in one transaction after whatever any process appended before;
    /// returns their sequence numbers.
    pub fn append(&mut self, records: &[AuditRecord]) -> Result<Vec<i64>, StoreError> {
        blocking(|| {
            let key = self.key.clone();
            let client = self.client()?;
            let mut tx = client.transaction().map_err(pg("starting an audit append"))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK]).map_err(pg("waiting for other appenders"))?;
            let (mut seq, mut previous) = head_of(&mut tx)?;
            // Sealed in order here, written in one statement (one round trip per group).
            let (mut seqs, mut ats, mut persons, mut macs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut actors, mut actions, mut objects, mut codes): (Vec<&str>, Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
            for record in records {
                seq += 1;
                let mac = seal(&key, &previous, seq, record, true);
                seqs.push(seq);
                ats.push(record.at.jst_seconds());
                actors.push(&record.actor);
                actions.push(&record.action);
                persons.push(record.person_id);
                objects.push(&record.object);
                codes.push(&record.code);
                macs.push(mac.clone());
                previous = mac;
            }
            tx.execute(
                "INSERT INTO audit_log (seq, at, actor, action, person_id, object, code, mac)
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::text[])",
                &[&seqs, &ats, &actors, &actions, &persons, &objects, &codes, &macs],
            )
            .map_err(pg("appending to the audit log"))?;
            let mut tallies = TallyMap::new();
            for record in records {
                tally_into(&mut tallies, record);
            }
            add_tallies(&mut tx, tallies, seq)?;
            tx.commit().map_err(pg("committing to the audit log"))?;
            self.head = (seq, previous);
            Ok(seqs)
        })
    }

    /// The head this process last wrote.
    pub fn head(&self) -> (i64, String) {
        self.head.clone()
    }

    /// Exports the head this process last wrote to its checkpoint file.
    pub fn write_checkpoint(&self, at: Timestamp) -> Result<(), StoreError> {
        write_checkpoint_file(&self.checkpoint, &self.key, &self.head, at)
    }

    /// Walks the whole chain, one entry at a time (see `AuditLog::verify`).
    pub fn verify(&mut self) -> Result<Result<usize, Tamper>, StoreError> {
        let key = self.key.clone();
        let (outcome, head) = blocking(|| -> Result<Walked, StoreError> {
            let client = self.client()?;
            let mut tx = client.transaction().map_err(pg("reading the audit log"))?;
            let portal =
                tx.bind(&format!("SELECT {ENTRY_COLUMNS} FROM audit_log ORDER BY seq"), &[]).map_err(pg("reading the audit log"))?;
            let mut previous = (0, GENESIS.to_string());
            let mut count = 0;
            loop {
                let rows = tx.query_portal(&portal, 10_000).map_err(pg("reading the audit log"))?;
                if rows.is_empty() {
                    break;
                }
                for row in &rows {
                    let entry = entry_of(row);
                    if entry.seq != previous.0 + 1 {
                        return Ok((Err(Tamper::Deleted { after: previous.0, seq: entry.seq }), previous));
                    }
                    if seal(&key, &previous.1, entry.seq, &entry.record, true) != entry.mac {
                        return Ok((Err(Tamper::Unsealed { seq: entry.seq }), previous));
                    }
                    previous = (entry.seq, entry.mac);
                    count += 1;
                }
            }
            Ok((Ok(count), previous))
        })?;
        // The head as found, for the checkpoint comparison that follows.
        self.head = head;
        Ok(outcome)
    }

    /// Compares the log with the checkpoint file (run after [`PgAuditLog::verify`]).
    pub fn check_checkpoint(&mut self) -> Result<Result<(), Tamper>, StoreError> {
        let head = self.head.0;
        let checkpoint = self.checkpoint.clone();
        let key = self.key.clone();
        blocking(|| {
            let client = self.client()?;
            check_checkpoint_file(&checkpoint, &key, head, |seq| {
                Ok(client
                    .query_opt("SELECT mac FROM audit_log WHERE seq = $1", &[&seq])
                    .map_err(pg("reading the audit log"))?
                    .map(|r| r.get(0)))
            })
        })
    }
}

impl PgAuditLog {
    /// Recounts the whole chain and compares it with the tallies (see `AuditLog::check_tallies`).
    pub fn check_tallies(&mut self) -> Result<Result<(), Tamper>, StoreError> {
        blocking(|| {
            let client = self.client()?;
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()
                .map_err(pg("reading the audit log"))?;
            let mut recount = TallyMap::new();
            for_each_entry(&mut tx, 0, |entry| tally_into(&mut recount, &entry.record))?;
            let stored = tallies_between(&mut tx, 0, u32::MAX)?;
            tx.commit().map_err(pg("reading the audit log"))?;
            Ok(compare_tallies(recount, stored))
        })
    }
}

/// Reads a patient's access log from the shared log, on pooled connections.
pub struct PgAuditReader {
    pool: super::pool::ReadPool,
}

impl Drop for PgAuditReader {
    fn drop(&mut self) {
        let idle = self.pool.drain();
        blocking(move || drop(idle));
    }
}

/// Connections kept for reading the log (patients' access logs, the dashboard's tallies).
const AUDIT_READERS_MAX: usize = 8;

impl PgAuditReader {
    pub fn new(url: &str) -> PgAuditReader {
        PgAuditReader { pool: super::pool::ReadPool::with_max(url, AUDIT_READERS_MAX) }
    }

    /// The tallies of the days `from..=to` (`YYYYMMDD`).
    pub fn tallies(&self, from: u32, to: u32) -> Result<Vec<Tally>, StoreError> {
        self.with_client(|client| tallies_between(client, from, to))
    }

    /// Runs `read` on a pooled connection.
    fn with_client<T>(&self, read: impl FnOnce(&mut Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.pool.read(|conn| read(conn.client_mut()))
    }

    /// How many entries one person has, and the newest `limit` of them, oldest first.
    pub fn newest_person_entries(&self, person_id: i64, limit: i64) -> Result<(i64, Vec<AuditEntry>), StoreError> {
        self.with_client(|client| {
            let mut tx = client.build_transaction().read_only(true).start().map_err(pg("reading a person's audit entries"))?;
            let total: i64 = tx
                .query_one("SELECT count(*) FROM audit_log WHERE person_id = $1", &[&person_id])
                .map_err(pg("counting a person's audit entries"))?
                .get(0);
            let mut entries: Vec<AuditEntry> = tx
                .query(
                    &format!("SELECT {ENTRY_COLUMNS} FROM audit_log WHERE person_id = $1 ORDER BY seq DESC LIMIT $2"),
                    &[&person_id, &limit],
                )
                .map_err(pg("reading a person's audit entries"))?
                .iter()
                .map(entry_of)
                .collect();
            tx.commit().map_err(pg("reading a person's audit entries"))?;
            entries.reverse();
            Ok((total, entries))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::{KEY, record};

    fn execute(url: &str, sql: &str) {
        blocking(|| connect(url).unwrap().batch_execute(sql).unwrap());
    }

    /// Two processes' writers append in turns: one chain, every entry in order, each patient's
    /// entries found; an edited entry, and the newest ones deleted, are named.
    #[test]
    fn two_writers_make_one_chain_and_tampering_is_located() {
        let url = crate::postgres::cluster::test_database().expect("a cluster");
        drop(crate::postgres::PgRegister::open(&url).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let mut first = PgAuditLog::open(&url, &dir.path().join("first.checkpoint"), KEY).unwrap();
        let mut second = PgAuditLog::open(&url, &dir.path().join("second.checkpoint"), KEY).unwrap();
        for n in 1..=10 {
            let writer = if n % 2 == 0 { &mut second } else { &mut first };
            assert_eq!(writer.append(&[record(n)]).unwrap(), vec![n], "entry {n} follows the other writer's");
        }
        first.write_checkpoint(Timestamp::from_jst_seconds(1_800_000_100)).unwrap();
        second.write_checkpoint(Timestamp::from_jst_seconds(1_800_000_100)).unwrap();
        let mut checker = PgAuditLog::open(&url, &dir.path().join("second.checkpoint"), KEY).unwrap();
        assert_eq!(checker.verify().unwrap(), Ok(10));
        assert_eq!(checker.check_checkpoint().unwrap(), Ok(()));

        // Person 1 is in entries 1, 4, 7, 10 (n % 3 == 1); the newest two, oldest first.
        let reader = PgAuditReader::new(&url);
        let (total, newest) = reader.newest_person_entries(1, 2).unwrap();
        assert_eq!((total, newest.iter().map(|e| e.seq).collect::<Vec<_>>()), (4, vec![7, 10]));

        // Ten card verifications on one day (objects without a method), counted by both writers.
        let tallies = reader.tallies(0, u32::MAX).unwrap();
        assert_eq!(
            tallies.iter().map(|t| (t.kind.as_str(), t.code.as_str(), t.count)).collect::<Vec<_>>(),
            vec![("verify_card:unknown", "1", 10)]
        );
        assert_eq!(checker.check_tallies().unwrap(), Ok(()));
        execute(&url, "UPDATE audit_tally SET n = 9");
        assert!(matches!(checker.check_tallies().unwrap(), Err(Tamper::Tally { .. })), "an edited tally is found");
        execute(&url, "UPDATE audit_tally SET n = 10");

        execute(&url, "UPDATE audit_log SET code = '4' WHERE seq = 6");
        assert_eq!(checker.verify().unwrap(), Err(Tamper::Unsealed { seq: 6 }));
        execute(&url, "UPDATE audit_log SET code = '1' WHERE seq = 6");
        execute(&url, "DELETE FROM audit_log WHERE seq >= 9");
        assert_eq!(checker.verify().unwrap(), Ok(8), "a shorter chain is intact by itself");
        assert!(
            matches!(checker.check_checkpoint().unwrap(), Err(Tamper::Truncated { checkpoint: 10, head: 8, .. })),
            "the second writer's checkpoint names entry 10"
        );
    }
}
