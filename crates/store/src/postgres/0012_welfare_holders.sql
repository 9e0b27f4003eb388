-- As crates/store/src/sqlite/0012_welfare_holders.sql.
CREATE TABLE welfare_holders (
    payer_number      TEXT NOT NULL,
    recipient_number  TEXT NOT NULL,
    person_ref        TEXT NOT NULL,
    name              TEXT NOT NULL,
    name_kana         TEXT NOT NULL,
    birth_date        BIGINT NOT NULL,
    sex               TEXT NOT NULL,
    address           TEXT,
    registered_at     BIGINT NOT NULL,
    PRIMARY KEY (payer_number, recipient_number)
);
CREATE INDEX welfare_holders_by_person ON welfare_holders (person_ref);
