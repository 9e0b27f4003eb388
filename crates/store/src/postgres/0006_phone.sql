-- A smartphone's certificate, issued from the card certificate `phone_of` (NULL for a card):
-- as crates/store/src/sqlite/0006_phone.sql.
ALTER TABLE card_bindings ADD COLUMN phone_of TEXT;
