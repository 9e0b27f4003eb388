//! Card links (初回登録: a card certificate → a person) and card readers registered to an
//! institution, behind [`CardRegistry`]. Kept beside the register because a link points at a
//! person of the register.

use onshi_domain::Timestamp;

use crate::StoreError;

/// State of a card link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The card verifies as this person.
    Active,
    /// A clinic or the patient reported a suspected wrong link; blocked until reviewed.
    Flagged,
    /// The certificate was renewed; the link moved to the new serial.
    Moved,
    /// Undone: the certificate was revoked (lost, stolen) or the insurer confirmed a wrong link.
    Unlinked,
}

impl LinkState {
    pub(crate) fn code(self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Flagged => "flagged",
            LinkState::Moved => "moved",
            LinkState::Unlinked => "unlinked",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<LinkState, StoreError> {
        match text {
            "active" => Ok(LinkState::Active),
            "flagged" => Ok(LinkState::Flagged),
            "moved" => Ok(LinkState::Moved),
            "unlinked" => Ok(LinkState::Unlinked),
            other => Err(StoreError::Corrupt(format!("card link state {other:?}"))),
        }
    }
}

/// A card link as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardLink {
    pub serial: String,
    pub holder_ref: String,
    pub person_id: i64,
    pub state: LinkState,
    pub linked_at: Timestamp,
    pub flag_reason: Option<String>,
}

/// A registered card reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader {
    pub reader_id: String,
    /// 医療機関コード of the institution it belongs to.
    pub institution: String,
    /// Uncompressed P-256 public key.
    pub public_key: Vec<u8>,
}

/// A consent as stored: the latest given for its scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    /// `drug`, `checkup`, `diagnosis`, `limit` or `specific_disease`.
    pub scope: String,
    pub given_at: Timestamp,
    /// The viewing deadline (閲覧有効期限).
    pub available_until: Timestamp,
}

/// The attributes the card authority attests for a certificate's holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundAttributes {
    pub name: String,
    pub name_kana: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// OQSCD007 `1`/`2`/`3`.
    pub sex: String,
    pub address: String,
}

/// Whose card a certificate is, on the card authority's word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardBinding {
    pub serial: String,
    pub holder_ref: String,
    /// The register's pseudonymous person reference.
    pub person_ref: String,
    pub attributes: BoundAttributes,
    /// `active`, `revoked`, or `disputed` (the insurer confirmed a wrong link from it).
    pub state: String,
    /// A card without a PIN (顔認証マイナンバーカード): registered by face at the reader.
    pub face_only: bool,
    /// A smartphone's certificate: the serial of the card certificate it was issued from.
    pub phone_of: Option<String>,
}

/// One verified entry of the card authority's binding feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingChange {
    pub seq: i64,
    /// `issue`, `renew` or `revoke`.
    pub kind: String,
    pub serial: String,
    pub holder_ref: String,
    pub person_ref: String,
    /// Issue and renew.
    pub attributes: Option<BoundAttributes>,
    /// The authority issued the card without a PIN (issue and renew).
    pub face_only: bool,
    /// A smartphone's certificate, issued from this card certificate (issue).
    pub phone_of: Option<String>,
}

/// What applying a feed entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingApplied {
    /// Its number was applied before: nothing changed.
    AlreadyApplied,
    Applied {
        /// A revocation undid this person's link of the certificate.
        unlinked_person: Option<i64>,
    },
}

/// What registering a reader did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReaderRegistration {
    New,
    /// The same institution registered a new device key (rotation).
    Rotated,
    Unchanged,
    /// The reader id belongs to another institution: nothing changed.
    OwnedElsewhere {
        institution: String,
    },
}

/// A wrong-link report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkReportRow {
    pub report_id: i64,
    pub serial: String,
    pub person_id: i64,
    /// 医療機関コード or `patient`.
    pub reporter: String,
    pub reason: String,
    pub filed_at: Timestamp,
    /// `open`, `confirmed`, `cleared`.
    pub state: String,
}

/// A report with the member's numbers at the reviewing insurer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportForInsurer {
    pub report: LinkReportRow,
    pub insurer_number: String,
    pub symbol: String,
    pub number: String,
    pub branch: u8,
}

pub trait CardRegistry: Send + Sync {
    /// Links a certificate to a person; a second link of the same serial replaces nothing and
    /// returns the existing one (an `unlinked` one is linked again, to the person given).
    fn link_card(&self, serial: &str, holder_ref: &str, person_id: i64, at: Timestamp) -> Result<CardLink, StoreError>;

    /// The link of a certificate serial, whatever its state.
    fn card_link(&self, serial: &str) -> Result<Option<CardLink>, StoreError>;

    /// The active or flagged link of a holder under another serial (the certificate before a
    /// renewal), if any.
    fn holder_link(&self, holder_ref: &str) -> Result<Option<CardLink>, StoreError>;

    /// Moves a holder's link to a renewed certificate: the old row becomes `moved`, the new
    /// serial takes its person and state.
    fn move_card_link(&self, holder_ref: &str, new_serial: &str, at: Timestamp) -> Result<Option<CardLink>, StoreError>;

    /// Registers a reader's device key to an institution; the same institution may replace
    /// the key (rotation); another institution changes nothing.
    fn register_reader(&self, reader: &Reader, at: Timestamp) -> Result<ReaderRegistration, StoreError>;

    fn reader(&self, reader_id: &str) -> Result<Option<Reader>, StoreError>;

    /// Records a consent given now; it replaces an earlier one of the same scope.
    fn record_consent(&self, person_id: i64, institution: &str, consent: &Consent) -> Result<(), StoreError>;

    /// The consents a person has given an institution, one per scope.
    fn consents(&self, person_id: i64, institution: &str) -> Result<Vec<Consent>, StoreError>;

    /// Withdraws a consent; `false` when there was none.
    fn withdraw_consent(&self, person_id: i64, institution: &str, scope: &str) -> Result<bool, StoreError>;

    /// Every consent a person gave, with the institution it was given to, by institution and
    /// scope: what the patient's own page lists.
    fn consents_of_person(&self, person_id: i64) -> Result<Vec<(String, Consent)>, StoreError>;

    /// The wrong-link reports about a person's cards, oldest first: the patient sees what
    /// became of a flag they filed (and of a clinic's report about them).
    fn reports_of_person(&self, person_id: i64) -> Result<Vec<LinkReportRow>, StoreError>;

    /// How many wrong-link reports are in each review state (`open`, `confirmed`, `cleared`).
    fn report_states(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Applies one verified feed entry, once by its number; a revocation undoes the link of
    /// the certificate in the same transaction.
    fn apply_binding(&self, change: &BindingChange, at: Timestamp) -> Result<BindingApplied, StoreError>;

    /// The highest feed number applied (0 before any).
    fn binding_seq_max(&self) -> Result<i64, StoreError>;

    fn binding(&self, serial: &str) -> Result<Option<CardBinding>, StoreError>;

    /// The register's person with this pseudonymous reference, if an insurer registered them.
    fn person_of_ref(&self, person_ref: &str) -> Result<Option<i64>, StoreError>;

    /// Files a report; `block` flags the link too (the holder's own report), in one transaction.
    fn file_report(
        &self,
        serial: &str,
        person_id: i64,
        reporter: &str,
        reason: &str,
        block: bool,
        at: Timestamp,
    ) -> Result<i64, StoreError>;

    fn report(&self, report_id: i64) -> Result<Option<LinkReportRow>, StoreError>;

    /// Open reports about persons who hold a coverage of this insurer in force on `today`.
    fn open_reports_for_insurer(&self, insurer_number: &str, today: onshi_domain::Date) -> Result<Vec<ReportForInsurer>, StoreError>;

    /// Closes an open report: `confirm` undoes the link and marks the certificate's binding
    /// disputed (no new link until a newer binding entry); otherwise a flagged link is active
    /// again once no other open report blocks it. `None` when the report is not open.
    fn review_report(
        &self,
        report_id: i64,
        reviewer: &str,
        confirm: bool,
        note: &str,
        at: Timestamp,
    ) -> Result<Option<LinkReportRow>, StoreError>;

    /// Whether several center processes share this registry, so that the card path's
    /// single-use challenges must live here rather than in one process's memory (PostgreSQL).
    /// An engine that says no is never asked the three challenge methods below.
    fn shares_challenges(&self) -> bool {
        false
    }

    /// Records a challenge issued to `owner` at `issued_at` while the owner holds fewer than
    /// `limit` challenges issued at or after `live_from` (older ones are forgotten meanwhile);
    /// `false` (nothing recorded) at the limit.
    fn issue_challenge(
        &self,
        challenge: &str,
        owner: &str,
        issued_at: Timestamp,
        live_from: Timestamp,
        limit: usize,
    ) -> Result<bool, StoreError> {
        let _ = (challenge, owner, issued_at, live_from, limit);
        Err(StoreError::Corrupt("this register keeps no challenges".into()))
    }

    /// Uses up a challenge, once across every process: its owner and issue time, or `None` when
    /// it was never issued or already used.
    fn take_challenge(&self, challenge: &str) -> Result<Option<(String, Timestamp)>, StoreError> {
        let _ = challenge;
        Err(StoreError::Corrupt("this register keeps no challenges".into()))
    }

    /// How many live challenges `owner` holds (issued at or after `live_from`).
    fn challenges_held(&self, owner: &str, live_from: Timestamp) -> Result<usize, StoreError> {
        let _ = (owner, live_from);
        Err(StoreError::Corrupt("this register keeps no challenges".into()))
    }

    /// A value that only goes up (the card CRL number): the stored one.
    fn trust_value(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// Raises a value that only goes up; `false` (and nothing written) when `value` is lower.
    fn raise_trust_value(&self, name: &str, value: i64) -> Result<bool, StoreError>;
}
