#!/usr/bin/env python3
"""The storage floor of a day's changes: how fast SQLite alone writes what a day of changes
writes into a full register.

On a copy of an imported register, in one transaction of set-based statements (no parsing, no
rules, no per-row statement executions), for every Nth coverage (N chosen so that the count
matches the bench's day, 136,916 events at 10 M persons): a new dated terms row (the address
changed), the coverage's change stamp, and the event's provenance row. The rate it prints is
what these three scattered writes per event cost the register's B-trees on this machine, the
floor under `onshi bench`'s "day's changes" row (docs/PERFORMANCE.md, issue 13).

usage: scripts/register-day-floor.py IMPORTED.sqlite SCRATCH.sqlite [EVENTS]
"""
import os
import shutil
import sqlite3
import sys
import time

source, scratch = sys.argv[1], sys.argv[2]
wanted = int(sys.argv[3]) if len(sys.argv) > 3 else 136_916
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(scratch + suffix):
        os.remove(scratch + suffix)
# The source is checkpointed by its last writer; copy the file and any WAL beside it.
shutil.copyfile(source, scratch)
if os.path.exists(source + "-wal"):
    shutil.copyfile(source + "-wal", scratch + "-wal")
db = sqlite3.connect(scratch, isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA synchronous = FULL")
db.execute("PRAGMA cache_size = -1048576")
coverages = db.execute("SELECT max(coverage_id) FROM coverages").fetchone()[0]
every = max(1, coverages // wanted)
# The coverages the day touches, by primary key (set aside before the clock starts).
db.execute("CREATE TEMP TABLE day (coverage_id INTEGER PRIMARY KEY)")
db.execute(
    "WITH RECURSIVE r(x) AS (SELECT ?1 UNION ALL SELECT x + ?1 FROM r WHERE x + ?1 <= ?2) INSERT INTO day SELECT x FROM r",
    (every, coverages),
)
# Warm the cache as the bench's import leaves it (its process has just imported).
db.execute("SELECT count(*) FROM coverage_terms").fetchone()
db.execute("SELECT count(*) FROM insurer_events").fetchone()
started = time.time()
db.execute("BEGIN")
db.execute(
    """INSERT OR REPLACE INTO coverage_terms
       SELECT t.coverage_id, 20990101, t.name, t.name_kana, t.insured_name, t.address || '（転居）', t.post_code,
              t.income_class, t.limit_category, t.limit_classification, t.limit_valid_from, t.limit_valid_to,
              t.specific_diseases, t.public_expense, 4000000000, 4000000000
       FROM day d JOIN coverage_terms t ON t.coverage_id = d.coverage_id
       WHERE t.effective_from = (SELECT max(effective_from) FROM coverage_terms u WHERE u.coverage_id = t.coverage_id)"""
)
db.execute("UPDATE coverages SET updated_at = 4000000000 WHERE coverage_id IN (SELECT coverage_id FROM day)")
written = db.execute(
    """INSERT INTO insurer_events
       SELECT c.insurer_number, 'floor' || c.coverage_id, 'change', c.coverage_id, 20990101, 4000000000, 4000000000
       FROM day d JOIN coverages c USING (coverage_id)"""
).rowcount
db.execute("COMMIT")
seconds = time.time() - started
print(f"{written} events' rows (terms, stamp, event) written in {seconds:.2f} s: {written / seconds:,.0f} events/s (SQLite {sqlite3.sqlite_version})")
db.close()
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(scratch + suffix):
        os.remove(scratch + suffix)
