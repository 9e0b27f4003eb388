-- 医療扶助: a recipient as their welfare office records them (氏名, カナ, 生年月日, 性別, 住所).
-- Most 生活保護 recipients leave 国保 when the assistance begins, so no insurer registers them;
-- 初回登録 then compares the card authority's attested attributes with this record. The latest
-- grant carrying it replaces it. Registering one also records the person (persons), whom the
-- card authority's binding names by the same person_ref.
CREATE TABLE welfare_holders (
    payer_number      TEXT NOT NULL,
    recipient_number  TEXT NOT NULL,
    person_ref        TEXT NOT NULL,
    name              TEXT NOT NULL,
    name_kana         TEXT NOT NULL,
    birth_date        INTEGER NOT NULL,
    sex               TEXT NOT NULL,
    address           TEXT,
    registered_at     INTEGER NOT NULL,
    PRIMARY KEY (payer_number, recipient_number)
) STRICT;
CREATE INDEX welfare_holders_by_person ON welfare_holders (person_ref);
