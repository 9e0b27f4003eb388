-- What each import transaction changed, in commit order: the coverages it touched, as
-- little-endian 64-bit ids. A copy of the register kept in memory (the center's card index)
-- follows the register by reading this log after its own position instead of re-reading the
-- register. Rows older than a day are dropped by the writer; a copy further behind reloads.
CREATE TABLE register_changes (
    seq          INTEGER PRIMARY KEY,
    committed_at INTEGER NOT NULL,
    coverage_ids BLOB NOT NULL
) STRICT;
