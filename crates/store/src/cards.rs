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
}

impl LinkState {
    pub(crate) fn code(self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Flagged => "flagged",
            LinkState::Moved => "moved",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<LinkState, StoreError> {
        match text {
            "active" => Ok(LinkState::Active),
            "flagged" => Ok(LinkState::Flagged),
            "moved" => Ok(LinkState::Moved),
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

pub trait CardRegistry: Send + Sync {
    /// Links a certificate to a person; a second link of the same serial replaces nothing and
    /// returns the existing one.
    fn link_card(&self, serial: &str, holder_ref: &str, person_id: i64, at: Timestamp) -> Result<CardLink, StoreError>;

    /// The link of a certificate serial, whatever its state.
    fn card_link(&self, serial: &str) -> Result<Option<CardLink>, StoreError>;

    /// The active or flagged link of a holder under another serial (the certificate before a
    /// renewal), if any.
    fn holder_link(&self, holder_ref: &str) -> Result<Option<CardLink>, StoreError>;

    /// Moves a holder's link to a renewed certificate: the old row becomes `moved`, the new
    /// serial takes its person and state.
    fn move_card_link(&self, holder_ref: &str, new_serial: &str, at: Timestamp) -> Result<Option<CardLink>, StoreError>;

    /// Flags a link as suspected wrong; `false` when there is no such link.
    fn flag_card_link(&self, serial: &str, reason: &str, at: Timestamp) -> Result<bool, StoreError>;

    /// Registers (or re-registers) a reader's device key to an institution.
    fn register_reader(&self, reader: &Reader, at: Timestamp) -> Result<(), StoreError>;

    fn reader(&self, reader_id: &str) -> Result<Option<Reader>, StoreError>;

    /// Records a consent given now; it replaces an earlier one of the same scope.
    fn record_consent(&self, person_id: i64, institution: &str, consent: &Consent) -> Result<(), StoreError>;

    /// The consents a person has given an institution, one per scope.
    fn consents(&self, person_id: i64, institution: &str) -> Result<Vec<Consent>, StoreError>;
}
