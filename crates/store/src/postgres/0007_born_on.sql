-- The people born on a day: as crates/store/src/sqlite/0007_born_on.sql.
CREATE INDEX coverages_by_birth ON coverages (birth_date, sex);
