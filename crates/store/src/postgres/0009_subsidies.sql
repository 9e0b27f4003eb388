-- As crates/store/src/sqlite/0009_subsidies.sql.
CREATE TABLE subsidies (
    payer_number      TEXT NOT NULL,
    recipient_number  TEXT NOT NULL,
    person_ref        TEXT NOT NULL,
    valid_from        BIGINT NOT NULL,
    valid_to          BIGINT CHECK (valid_to IS NULL OR valid_to >= valid_from),
    name              TEXT NOT NULL,
    self_pay_cap_yen  BIGINT,
    income_segment    TEXT,
    designated        TEXT NOT NULL,
    withheld          BIGINT NOT NULL CHECK (withheld IN (0, 1)),
    notified_at       BIGINT NOT NULL,
    registered_at     BIGINT NOT NULL,
    PRIMARY KEY (payer_number, recipient_number, valid_from)
);
CREATE INDEX subsidies_by_person ON subsidies (person_ref);

-- Every applied payer event once (idempotence), and whether a payer registers at all.
CREATE TABLE subsidy_events (
    payer_number TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (payer_number, event_id)
);
