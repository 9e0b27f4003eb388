-- As crates/store/src/sqlite/0011_home_consents.sql.
CREATE TABLE home_consents (
    key          TEXT PRIMARY KEY,
    person_id    BIGINT NOT NULL REFERENCES persons (person_id),
    institution  TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('visit', 'online')),
    valid_from   BIGINT NOT NULL,
    valid_to     BIGINT NOT NULL CHECK (valid_to >= valid_from),
    given_at     BIGINT NOT NULL
);
CREATE INDEX home_consents_by_institution ON home_consents (institution, kind, given_at);
