-- Card links (初回登録) and registered card readers, version 2.

-- A card certificate linked to a person. holder_ref is the card CA's opaque holder reference
-- (kept across renewals); serial is the certificate's. Never a My Number.
CREATE TABLE card_links (
    serial         TEXT PRIMARY KEY,
    holder_ref     TEXT NOT NULL,
    person_id      INTEGER NOT NULL REFERENCES persons (person_id),
    state          TEXT NOT NULL CHECK (state IN ('active', 'flagged', 'moved')),
    linked_at      INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL,
    flag_reason    TEXT
) STRICT;
CREATE INDEX card_links_by_holder ON card_links (holder_ref);

-- A card reader's device key, registered to one institution.
CREATE TABLE card_readers (
    reader_id      TEXT PRIMARY KEY,
    institution    TEXT NOT NULL,
    public_key     BLOB NOT NULL,
    registered_at  INTEGER NOT NULL
) STRICT;

-- Consent to view, per person × institution × scope, from the reader's consent screens.
CREATE TABLE consents (
    person_id        INTEGER NOT NULL REFERENCES persons (person_id),
    institution      TEXT NOT NULL,
    scope            TEXT NOT NULL CHECK (scope IN ('drug', 'checkup', 'diagnosis', 'limit', 'specific_disease')),
    given_at         INTEGER NOT NULL,
    available_until  INTEGER NOT NULL,
    PRIMARY KEY (person_id, institution, scope)
) STRICT, WITHOUT ROWID;
