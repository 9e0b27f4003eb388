//! What the register holds, in domain types. Both backends read and write these.

use onshi_domain::codes::{CardClassification, LimitCertificateClassification, ReasonOfLoss, Relationship, Sex, SpecificDisease};
use onshi_domain::copay::IncomeClass;
use onshi_domain::ids::{CardBranch, CardNumber, CardSymbol, InsurerNumber, PublicPayerNumber, RecipientNumber};
use onshi_domain::limit::LimitCategory;
use onshi_domain::{Date, Timestamp};

/// A validated insurer event, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct CoverageEvent {
    /// The insurer's id of the event; (insurer, event id) is applied at most once.
    pub event_id: String,
    pub insurer: InsurerNumber,
    /// Pseudonymous person reference (never a My Number).
    pub person_ref: String,
    pub symbol: CardSymbol,
    pub number: CardNumber,
    pub branch: CardBranch,
    pub occurred_on: Date,
    pub notified_at: Timestamp,
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    Acquire { holder: Holder, details: MemberDetails, terms: Terms },
    Change { holder: Option<Holder>, details: Option<MemberDetails>, terms: Option<Terms> },
    Lose { reason: ReasonOfLoss },
}

impl EventBody {
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Acquire { .. } => "acquire",
            EventBody::Change { .. } => "change",
            EventBody::Lose { .. } => "lose",
        }
    }
}

/// The facts about the holder that identify them at the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub birth_date: Date,
    pub sex: Sex,
    pub relationship: Relationship,
    pub card_classification: CardClassification,
}

/// Names and address, which may change over a coverage's life.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemberDetails {
    pub name: String,
    pub name_kana: String,
    pub insured_name: Option<String>,
    pub address: Option<String>,
    pub post_code: Option<String>,
}

/// The terms in effect from a date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    pub income: IncomeClass,
    pub limit: Option<LimitCertificate>,
    pub specific_diseases: Vec<SpecificDiseaseCertificate>,
    pub public_expense: Vec<PublicExpenseCertificate>,
    /// The 資格確認書 issued to the member, with its printed validity.
    pub qualification_certificate: Option<QualificationCertificate>,
}

/// A 資格確認書's printed validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QualificationCertificate {
    pub valid_from: Date,
    pub valid_to: Date,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitCertificate {
    pub category: LimitCategory,
    pub classification: LimitCertificateClassification,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecificDiseaseCertificate {
    pub disease: SpecificDisease,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
    pub self_pay_yen: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicExpenseCertificate {
    pub payer: PublicPayerNumber,
    pub recipient: RecipientNumber,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
}

/// A validity window check shared by the certificates: from `valid_from`, through `valid_to`.
pub fn window_covers(valid_from: Date, valid_to: Option<Date>, on: Date) -> bool {
    valid_from <= on && valid_to.is_none_or(|to| on <= to)
}

/// A coverage as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct CoverageRecord {
    pub coverage_id: i64,
    pub person_id: i64,
    pub insurer: InsurerNumber,
    pub symbol: CardSymbol,
    pub number: CardNumber,
    pub branch: CardBranch,
    pub holder: Holder,
    pub acquired_on: Date,
    pub lost_on: Option<Date>,
    pub loss_reason: Option<ReasonOfLoss>,
    /// When the register last changed this coverage or its terms.
    pub updated_at: Timestamp,
}

/// One dated row of a coverage's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct TermsRecord {
    pub effective_from: Date,
    pub details: MemberDetails,
    pub terms: Terms,
    pub notified_at: Timestamp,
    pub registered_at: Timestamp,
}

/// A coverage with its dated terms rows, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct CoverageWithTerms {
    pub coverage: CoverageRecord,
    pub terms: Vec<TermsRecord>,
}

/// What applying one event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The (insurer, event id) was applied before; nothing changed.
    AlreadyApplied,
    /// The event contradicts the register; nothing changed. The text says what and what to do.
    Rejected {
        field: &'static str,
        reason: String,
    },
}

/// An insurer's registration lag, from its events: notification day minus event day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InsurerLag {
    pub events: u64,
    pub mean_days: f64,
    pub max_days: u32,
}

/// An insurer's registrations of one month (by the month they reached the register): how
/// many, how late (notification day minus event day, as [`InsurerLag`]), and how many by lag.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LagMonth {
    pub insurer: String,
    /// `YYYYMM` of registration (Japan time).
    pub month: u32,
    pub events: u64,
    pub lag_days_sum: u64,
    pub lag_days_max: u32,
    /// Events by lag: 0–3 days, 4–7, 8–14, 15–30, over 30 (see [`LAG_BUCKETS`]).
    pub by_lag: [u64; 5],
}

/// The upper bounds (days, inclusive) of [`LagMonth::by_lag`]'s buckets; the last is open.
pub const LAG_BUCKETS: [u32; 4] = [3, 7, 14, 30];

/// Counts for health and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RegisterCounts {
    pub persons: u64,
    pub coverages: u64,
    pub events: u64,
}
