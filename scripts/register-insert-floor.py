#!/usr/bin/env python3
"""The storage floor of an import: how fast SQLite alone writes the rows an import produced.

Copies persons, coverages, dated terms and events from an imported register into a fresh file
with the same schema, indexes and settings (WAL, synchronous FULL, 1 GiB cache), in one
transaction of set-based INSERT ... SELECT: no parsing, no rules, no per-row statement
executions. The rate it prints is what the register's own B-trees cost on this machine, the
floor under `onshi center import` with this schema (docs/PERFORMANCE.md, issue 13).

usage: scripts/register-insert-floor.py IMPORTED.sqlite [SCRATCH.sqlite]
"""
import os
import sqlite3
import sys
import time

source = sys.argv[1]
scratch = sys.argv[2] if len(sys.argv) > 2 else "register-insert-floor.sqlite"
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(scratch + suffix):
        os.remove(scratch + suffix)
schema = open(os.path.join(os.path.dirname(__file__), "..", "crates", "store", "src", "sqlite", "0001_register.sql")).read()
db = sqlite3.connect(scratch, isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA synchronous = FULL")
db.execute("PRAGMA cache_size = -1048576")
db.executescript(schema)
db.execute("ATTACH ? AS s", (source,))
events = db.execute("SELECT count(*) FROM s.insurer_events").fetchone()[0]
started = time.time()
db.execute("BEGIN")
db.execute("INSERT INTO persons SELECT person_id, person_ref FROM s.persons ORDER BY person_id")
db.execute("INSERT INTO coverages SELECT * FROM s.coverages ORDER BY coverage_id")
db.execute("INSERT INTO coverage_terms SELECT * FROM s.coverage_terms")
db.execute("INSERT INTO insurer_events SELECT * FROM s.insurer_events")
db.execute("COMMIT")
seconds = time.time() - started
print(f"{events} events' rows written in {seconds:.1f} s: {events / seconds:,.0f} events/s (SQLite {sqlite3.sqlite_version})")
db.close()
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(scratch + suffix):
        os.remove(scratch + suffix)
