-- The audit log on PostgreSQL, version 4: one chain that every center process on the cluster
-- appends to (under an advisory lock, each entry sealed over its predecessor as in the SQLite
-- log, crates/store/src/audit.rs). No foreign key: an access is recorded whatever the register
-- holds. The index by person is what a patient's access log is read by.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    person_id BIGINT,
    object    TEXT NOT NULL,
    code      TEXT NOT NULL,
    mac       TEXT NOT NULL
);
CREATE INDEX audit_log_by_person ON audit_log (person_id, seq);
