-- A card the card authority issued without a PIN (顔認証マイナンバーカード): its holder
-- registers it for insurance use by face at the reader. Existing bindings had PINs.
ALTER TABLE card_bindings ADD COLUMN face_only INTEGER NOT NULL DEFAULT 0 CHECK (face_only IN (0, 1));
