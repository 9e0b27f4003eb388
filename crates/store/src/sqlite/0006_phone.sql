-- A smartphone's certificate (スマホ用電子証明書), issued from a card certificate: the serial
-- of that card's certificate, as the card authority's feed says; NULL for a card. The
-- dashboard counts checks with a phone on a path of their own.
ALTER TABLE card_bindings ADD COLUMN phone_of TEXT;
