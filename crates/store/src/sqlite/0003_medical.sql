-- Medical information, version 3: dispensed drugs and 特定健診 results per person, each with
-- the day it describes and the day it reached the center.

CREATE TABLE dispensed_drugs (
    person_id    INTEGER NOT NULL REFERENCES persons (person_id),
    dispensed_on INTEGER NOT NULL,
    drug_code    TEXT NOT NULL,
    drug_name    TEXT NOT NULL,
    quantity     REAL NOT NULL,
    unit         TEXT NOT NULL,
    days         INTEGER NOT NULL,
    dispensed_by TEXT NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('claim', 'pharmacy')),
    arrived_on   INTEGER NOT NULL,
    PRIMARY KEY (person_id, dispensed_on, drug_code, dispensed_by)
) STRICT, WITHOUT ROWID;

CREATE TABLE checkup_results (
    person_id   INTEGER NOT NULL REFERENCES persons (person_id),
    examined_on INTEGER NOT NULL,
    item_code   TEXT NOT NULL,
    item_name   TEXT NOT NULL,
    value       TEXT NOT NULL,
    unit        TEXT NOT NULL,
    arrived_on  INTEGER NOT NULL,
    PRIMARY KEY (person_id, examined_on, item_code)
) STRICT, WITHOUT ROWID;
