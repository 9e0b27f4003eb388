-- The audit log's tallies, version 5: entries counted by Japan day, actor, kind and outcome
-- code (crates/store/src/audit.rs, `tally_kinds`), written in the transaction that appends
-- them, so that the operator's dashboard and /metrics read a few rows instead of the log.
-- `tallied_upto` is the last entry counted; a chain from version 4 is counted when a center
-- of this version first opens it.
CREATE TABLE audit_tally (
    day   INTEGER NOT NULL,
    actor TEXT NOT NULL,
    kind  TEXT NOT NULL,
    code  TEXT NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (day, actor, kind, code)
);
CREATE TABLE audit_tally_state (tallied_upto BIGINT NOT NULL);
INSERT INTO audit_tally_state VALUES (0);
