-- The persons' references unique by a named index instead of the table's inline UNIQUE: a
-- named index is one a load of an empty register can drop and build once at its end (its
-- random-keyed leaves were rewritten by every batch of a load, issue 13). The same
-- uniqueness, the same rows; the table is rebuilt as SQLite's ALTER TABLE procedure says,
-- with foreign keys off around it and checked before the commit (`migrate_with`).
CREATE TABLE persons_rebuilt (
    person_id  INTEGER PRIMARY KEY,
    person_ref TEXT NOT NULL
) STRICT;
INSERT INTO persons_rebuilt (person_id, person_ref) SELECT person_id, person_ref FROM persons ORDER BY person_id;
DROP TABLE persons;
ALTER TABLE persons_rebuilt RENAME TO persons;
CREATE UNIQUE INDEX persons_by_ref ON persons (person_ref);
