-- 公費 and local subsidies: each payer's recipients with their dated certificates (受給者証),
-- registered by the payers themselves. A recipient is named by the insurers' person_ref, so a
-- payer may register before any insurer has.
CREATE TABLE subsidies (
    payer_number      TEXT NOT NULL,
    recipient_number  TEXT NOT NULL,
    person_ref        TEXT NOT NULL,
    valid_from        INTEGER NOT NULL,
    valid_to          INTEGER CHECK (valid_to IS NULL OR valid_to >= valid_from),
    name              TEXT NOT NULL,
    self_pay_cap_yen  INTEGER,
    income_segment    TEXT,
    designated        TEXT NOT NULL,
    withheld          INTEGER NOT NULL CHECK (withheld IN (0, 1)),
    notified_at       INTEGER NOT NULL,
    registered_at     INTEGER NOT NULL,
    PRIMARY KEY (payer_number, recipient_number, valid_from)
) STRICT;
CREATE INDEX subsidies_by_person ON subsidies (person_ref);

-- Every applied payer event once (idempotence), and whether a payer registers at all.
CREATE TABLE subsidy_events (
    payer_number TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (payer_number, event_id)
) STRICT;
