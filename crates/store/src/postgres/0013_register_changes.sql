-- As crates/store/src/sqlite/0013_register_changes.sql. The sequence is taken under the
-- register's apply lock (an advisory lock held to the commit), so its order is commit order.
CREATE TABLE register_changes (
    seq          BIGSERIAL PRIMARY KEY,
    registered_at BIGINT NOT NULL,
    coverage_ids BYTEA NOT NULL
);
