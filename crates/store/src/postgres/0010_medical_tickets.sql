-- As crates/store/src/sqlite/0010_medical_tickets.sql.
CREATE TABLE medical_tickets (
    payer_number      TEXT NOT NULL,
    recipient_number  TEXT NOT NULL,
    month             BIGINT NOT NULL,
    institution_code  TEXT NOT NULL,
    ticket_type       TEXT NOT NULL,
    valid_from        BIGINT NOT NULL,
    valid_to          BIGINT NOT NULL CHECK (valid_to >= valid_from),
    issue_number      TEXT NOT NULL,
    institution_name  TEXT NOT NULL,
    injuries          TEXT NOT NULL,
    treatment_type    TEXT NOT NULL,
    self_pay_yen      BIGINT NOT NULL,
    combined          BIGINT NOT NULL CHECK (combined IN (0, 1)),
    registered_at     BIGINT NOT NULL,
    PRIMARY KEY (payer_number, recipient_number, month, institution_code, ticket_type)
);
CREATE INDEX medical_tickets_by_institution ON medical_tickets (institution_code, month);
