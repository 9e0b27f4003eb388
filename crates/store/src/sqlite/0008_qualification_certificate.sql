-- The 資格確認書 the insurer issued to a member, with its printed validity (YYYYMMDD-YYYYMMDD):
-- the answer then says whether a 資格確認書 shown at the counter has passed it.
ALTER TABLE coverage_terms ADD COLUMN qualification_certificate TEXT;
