-- As crates/store/src/sqlite/0008_qualification_certificate.sql.
ALTER TABLE coverage_terms ADD COLUMN qualification_certificate TEXT;
