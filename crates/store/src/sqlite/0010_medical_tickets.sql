-- 医療扶助: the 医療券・調剤券 a welfare office (法別 12) issues a recipient for one month's care at
-- one designated institution. A ticket for the same month, institution and type replaces it.
CREATE TABLE medical_tickets (
    payer_number      TEXT NOT NULL,
    recipient_number  TEXT NOT NULL,
    month             INTEGER NOT NULL,
    institution_code  TEXT NOT NULL,
    ticket_type       TEXT NOT NULL,
    valid_from        INTEGER NOT NULL,
    valid_to          INTEGER NOT NULL CHECK (valid_to >= valid_from),
    issue_number      TEXT NOT NULL,
    institution_name  TEXT NOT NULL,
    injuries          TEXT NOT NULL,
    treatment_type    TEXT NOT NULL,
    self_pay_yen      INTEGER NOT NULL,
    combined          INTEGER NOT NULL CHECK (combined IN (0, 1)),
    registered_at     INTEGER NOT NULL,
    PRIMARY KEY (payer_number, recipient_number, month, institution_code, ticket_type)
) STRICT;
CREATE INDEX medical_tickets_by_institution ON medical_tickets (institution_code, month);
