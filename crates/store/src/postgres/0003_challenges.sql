-- The card path's single-use challenges on PostgreSQL, version 3: shared by every center
-- process on the cluster, so that a challenge one process issued is accepted once by any of them
-- (the SQLite center, one process, keeps them in memory).
CREATE TABLE card_challenges (
    challenge  TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    issued_at  BIGINT NOT NULL
);
CREATE INDEX card_challenges_by_owner ON card_challenges (owner, issued_at);
