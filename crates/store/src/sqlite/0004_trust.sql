-- Trust, version 4: the card authority's bindings, wrong-link reports and their review, links
-- that were undone, and the trust state the center must not roll back.

-- Whose card a certificate is, on the card authority's word (its signed binding feed), with
-- the attributes it attests. person_ref is the register's pseudonymous reference.
CREATE TABLE card_bindings (
    serial      TEXT PRIMARY KEY,
    holder_ref  TEXT NOT NULL,
    person_ref  TEXT NOT NULL,
    name        TEXT NOT NULL,
    name_kana   TEXT NOT NULL,
    birth_date  TEXT NOT NULL,
    sex         TEXT NOT NULL,
    address     TEXT NOT NULL,
    -- disputed: the insurer confirmed a wrong link from this binding; a newer entry resets it.
    state       TEXT NOT NULL CHECK (state IN ('active', 'revoked', 'disputed')),
    seq         INTEGER NOT NULL
) STRICT;

-- Every feed entry applied, once (the feed's own numbering).
CREATE TABLE card_binding_feed (
    seq         INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('issue', 'renew', 'revoke')),
    serial      TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
) STRICT;

-- Card links gain 'unlinked': undone by a revocation or a confirmed wrong-link report.
CREATE TABLE card_links_v4 (
    serial         TEXT PRIMARY KEY,
    holder_ref     TEXT NOT NULL,
    person_id      INTEGER NOT NULL REFERENCES persons (person_id),
    state          TEXT NOT NULL CHECK (state IN ('active', 'flagged', 'moved', 'unlinked')),
    linked_at      INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL,
    flag_reason    TEXT
) STRICT;
INSERT INTO card_links_v4 SELECT serial, holder_ref, person_id, state, linked_at, changed_at, flag_reason FROM card_links;
DROP TABLE card_links;
ALTER TABLE card_links_v4 RENAME TO card_links;
CREATE INDEX card_links_by_holder ON card_links (holder_ref);

-- Wrong-link reports: by a clinic (the card on its reader) or the holder (own card), reviewed
-- by the person's insurer.
CREATE TABLE link_reports (
    report_id    INTEGER PRIMARY KEY,
    serial       TEXT NOT NULL,
    person_id    INTEGER NOT NULL REFERENCES persons (person_id),
    reporter     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    filed_at     INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'confirmed', 'cleared')),
    reviewed_by  TEXT,
    reviewed_at  INTEGER,
    review_note  TEXT
) STRICT;
CREATE INDEX link_reports_by_person ON link_reports (person_id);

-- Values that only go up: the highest card CRL number loaded (an older list played back
-- cannot undo revocations, even across a restart).
CREATE TABLE trust_state (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
) STRICT;
