-- The qualification register on PostgreSQL, version 1: the same tables, keys and checks as the
-- SQLite schema (crates/store/src/sqlite/0001_register.sql), so that the rules
-- (crates/store/src/rules.rs) see the same register on either engine. Every integer is BIGINT
-- (one Rust type for both engines). Dates are YYYYMMDD; times are seconds since 1970-01-01T00:00
-- Japan time.

-- A person is an opaque reference from the insurers (機関別符号-like). Never a My Number.
CREATE TABLE persons (
    person_id  BIGINT PRIMARY KEY,
    person_ref TEXT NOT NULL UNIQUE
);

CREATE TABLE coverages (
    coverage_id          BIGINT PRIMARY KEY,
    person_id            BIGINT NOT NULL REFERENCES persons (person_id),
    insurer_number       TEXT NOT NULL,
    card_symbol          TEXT NOT NULL,
    card_number          TEXT NOT NULL,
    card_branch          BIGINT NOT NULL CHECK (card_branch BETWEEN 0 AND 99),
    birth_date           BIGINT NOT NULL,
    sex                  TEXT NOT NULL,
    relationship         TEXT NOT NULL,
    card_classification  TEXT NOT NULL,
    acquired_on          BIGINT NOT NULL,
    lost_on              BIGINT CHECK (lost_on IS NULL OR lost_on >= acquired_on),
    loss_reason          TEXT,
    acquired_notified_at BIGINT NOT NULL,
    lost_notified_at     BIGINT,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX coverages_by_card ON coverages (insurer_number, card_number, card_symbol);
CREATE INDEX coverages_by_person ON coverages (person_id);

CREATE TABLE coverage_terms (
    coverage_id          BIGINT NOT NULL REFERENCES coverages (coverage_id),
    effective_from       BIGINT NOT NULL,
    name                 TEXT NOT NULL,
    name_kana            TEXT NOT NULL,
    insured_name         TEXT,
    address              TEXT,
    post_code            TEXT,
    income_class         TEXT NOT NULL,
    limit_category       TEXT,
    limit_classification TEXT,
    limit_valid_from     BIGINT,
    limit_valid_to       BIGINT,
    specific_diseases    TEXT,
    public_expense       TEXT,
    notified_at          BIGINT NOT NULL,
    registered_at        BIGINT NOT NULL,
    PRIMARY KEY (coverage_id, effective_from)
);

CREATE TABLE insurer_events (
    insurer_number TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('acquire', 'change', 'lose')),
    coverage_id    BIGINT NOT NULL REFERENCES coverages (coverage_id),
    occurred_on    BIGINT NOT NULL,
    notified_at    BIGINT NOT NULL,
    registered_at  BIGINT NOT NULL,
    PRIMARY KEY (insurer_number, event_id)
);

CREATE TABLE insurer_stats (
    insurer_number     TEXT PRIMARY KEY,
    events             BIGINT NOT NULL,
    lag_days_sum       BIGINT NOT NULL,
    lag_days_max       BIGINT NOT NULL,
    last_registered_at BIGINT NOT NULL
);
