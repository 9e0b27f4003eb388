-- What each import transaction changed, in commit order: the coverages it touched, as
-- little-endian 64-bit ids. A copy of the register kept in memory (the center's card index)
-- follows the register by reading this log after its own position instead of re-reading the
-- register. One row per transaction (8 bytes per coverage touched): a day's changes are small;
-- a first import of 10 M persons adds about 90 MB. Nothing prunes it yet.
CREATE TABLE register_changes (
    seq          INTEGER PRIMARY KEY,
    registered_at INTEGER NOT NULL,
    coverage_ids BLOB NOT NULL
) STRICT;
