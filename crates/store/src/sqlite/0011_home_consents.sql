-- Home visits and online care (居宅同意取得型): a patient's consent to one institution for an
-- ongoing period of care, given with their card; later visits are re-confirmed by its key.
CREATE TABLE home_consents (
    key          TEXT PRIMARY KEY,
    person_id    INTEGER NOT NULL REFERENCES persons (person_id),
    institution  TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('visit', 'online')),
    valid_from   INTEGER NOT NULL,
    valid_to     INTEGER NOT NULL CHECK (valid_to >= valid_from),
    given_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX home_consents_by_institution ON home_consents (institution, kind, given_at);
