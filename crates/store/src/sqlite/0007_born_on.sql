-- The people born on a day: how a claim billed as 不詳 (coverage unknown at the counter) is
-- asked about again by birth date, sex and name (`Register::born_on`), and the only read by
-- attributes the register has.
CREATE INDEX coverages_by_birth ON coverages (birth_date, sex);
