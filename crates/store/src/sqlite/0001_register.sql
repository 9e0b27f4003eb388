-- The qualification register, version 1.
-- Dates are INTEGER YYYYMMDD; times are INTEGER seconds since 1970-01-01T00:00 Japan time.

-- A person is an opaque reference from the insurers (機関別符号-like). Never a My Number.
CREATE TABLE persons (
    person_id  INTEGER PRIMARY KEY,
    person_ref TEXT NOT NULL UNIQUE
) STRICT;

-- A coverage (資格): one card's numbers held by one person for one period.
CREATE TABLE coverages (
    coverage_id          INTEGER PRIMARY KEY,
    person_id            INTEGER NOT NULL REFERENCES persons (person_id),
    insurer_number       TEXT NOT NULL,
    card_symbol          TEXT NOT NULL,
    card_number          TEXT NOT NULL,
    card_branch          INTEGER NOT NULL CHECK (card_branch BETWEEN 0 AND 99),
    birth_date           INTEGER NOT NULL,
    sex                  TEXT NOT NULL,
    relationship         TEXT NOT NULL,
    card_classification  TEXT NOT NULL,
    acquired_on          INTEGER NOT NULL,
    lost_on              INTEGER CHECK (lost_on IS NULL OR lost_on >= acquired_on),
    loss_reason          TEXT,
    acquired_notified_at INTEGER NOT NULL,
    lost_notified_at     INTEGER,
    updated_at           INTEGER NOT NULL
) STRICT;
CREATE INDEX coverages_by_card ON coverages (insurer_number, card_number, card_symbol);
CREATE INDEX coverages_by_person ON coverages (person_id);

-- Dated terms: names, income class, certificates, in effect from effective_from.
CREATE TABLE coverage_terms (
    coverage_id          INTEGER NOT NULL REFERENCES coverages (coverage_id),
    effective_from       INTEGER NOT NULL,
    name                 TEXT NOT NULL,
    name_kana            TEXT NOT NULL,
    insured_name         TEXT,
    address              TEXT,
    post_code            TEXT,
    income_class         TEXT NOT NULL,
    limit_category       TEXT,
    limit_classification TEXT,
    limit_valid_from     INTEGER,
    limit_valid_to       INTEGER,
    specific_diseases    TEXT,
    public_expense       TEXT,
    notified_at          INTEGER NOT NULL,
    registered_at        INTEGER NOT NULL,
    PRIMARY KEY (coverage_id, effective_from)
) STRICT, WITHOUT ROWID;

-- Provenance and idempotence: every applied event, once.
CREATE TABLE insurer_events (
    insurer_number TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('acquire', 'change', 'lose')),
    coverage_id    INTEGER NOT NULL REFERENCES coverages (coverage_id),
    occurred_on    INTEGER NOT NULL,
    notified_at    INTEGER NOT NULL,
    registered_at  INTEGER NOT NULL,
    PRIMARY KEY (insurer_number, event_id)
) STRICT, WITHOUT ROWID;

-- Registration lag per insurer (notification day minus event day).
CREATE TABLE insurer_stats (
    insurer_number     TEXT PRIMARY KEY,
    events             INTEGER NOT NULL,
    lag_days_sum       INTEGER NOT NULL,
    lag_days_max       INTEGER NOT NULL,
    last_registered_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
