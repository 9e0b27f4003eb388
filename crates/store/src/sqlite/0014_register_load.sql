-- A load into an empty register in progress (`onshi center import` into an empty file): the
-- coverages' secondary indexes are dropped while it runs and built once at its end, each
-- batch still committed on its own. While this row exists the register refuses every other
-- import; a re-run of the load takes over (`token`) and continues from what was committed.
-- `indexes` holds the dropped indexes' own CREATE statements, as SQLite kept them, so that
-- the indexes come back exactly as the migrations made them.
CREATE TABLE register_load (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token      TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    indexes    TEXT NOT NULL
) STRICT;
