//! The qualification register (資格情報) behind one interface, [`Register`] (with
//! [`cards::CardRegistry`], [`medical::MedicalStore`] and [`subsidy::SubsidyStore`]), on two engines: the embedded SQLite
//! default ([`sqlite::SqliteRegister`]) and PostgreSQL ([`postgres::PgRegister`]). The rules of
//! applying insurer events live once, in `rules`; both engines pass the same conformance tests
//! (`conformance`).
//!
//! Architecture invariant: the register stores an opaque person reference, never a My Number;
//! there is no column that could hold one.

pub mod audit;
pub mod card_index;
pub mod cards;
pub mod home;
pub mod medical;
pub mod model;
pub mod postgres;
mod rows;
mod rules;
pub mod sqlite;
pub mod subsidy;

pub mod conformance;

use model::{ApplyOutcome, CoverageEvent, CoverageRecord, CoverageWithTerms, InsurerLag, RegisterCounts, TermsRecord};
use onshi_domain::Timestamp;
use onshi_domain::codes::Sex;
use onshi_domain::date::Date;
use onshi_domain::ids::{CardNumber, InsurerNumber};

/// An engine's own error (SQLite's, PostgreSQL's), kept as the cause without tying the
/// register's interface to one engine's type.
pub type EngineError = Box<dyn std::error::Error + Send + Sync>;

/// A card view whose coverages may be shared with the card index (taken by counting references,
/// not copied): what the number path reads.
pub type SharedView = Vec<std::sync::Arc<CoverageWithTerms>>;

/// A card view read by [`Register::card_holders_view_async`], with where it was read.
pub type ViewFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(SharedView, Option<Timestamp>), StoreError>> + Send + 'a>>;

/// An owned view as a [`SharedView`] (one allocation per coverage, no copy).
pub fn shared(view: Vec<CoverageWithTerms>) -> SharedView {
    view.into_iter().map(std::sync::Arc::new).collect()
}

/// A storage failure. Input problems are never errors here: they are [`ApplyOutcome::Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the register at {path} cannot be opened: {source}")]
    Open { path: String, source: EngineError },
    #[error("the register's schema version {found} is newer than this program knows ({known}); upgrade onshi")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("register query failed while {doing}: {source}")]
    Engine { doing: &'static str, source: EngineError },
    #[error("the register holds a value it cannot read back ({0}); the file may be damaged")]
    Corrupt(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error(
        "the register is being loaded by `onshi center import` (started {started_at}, Japan time); let that import finish, or run it again to finish it, before importing anything else"
    )]
    Loading { started_at: String },
    #[error(
        "another `onshi center import` took over this load of the register; this one stops (what it committed stays): wait for the other import to finish, then run this one again to import the rest of its files"
    )]
    LoadTakenOver,
    #[error("another `onshi center import` is loading this register right now; wait for it to finish, then run this import again")]
    LoadRunning,
    #[error(
        "the register's first load (started {started_at}, Japan time) has not finished; finish it with the onshi that started it (`onshi center import` with its files) before upgrading"
    )]
    LoadBeforeUpgrade { started_at: String },
}

/// Where an import's batches go: the register itself ([`Register::apply_events`]) or a load of
/// an empty register ([`Register::begin_load`]).
pub trait EventSink {
    /// Applies events in order, in one transaction, with the rules of [`Register::apply_events`].
    fn apply_events(&mut self, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError>;
}

/// The register itself as an [`EventSink`].
pub struct Direct<'r>(pub &'r dyn Register);

impl EventSink for Direct<'_> {
    fn apply_events(&mut self, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.0.apply_events(events, registered_at)
    }
}

/// A load of an empty register: batches decided by the rules of [`Register::apply_events`] and
/// committed one by one, with the rules' reads answered from memory and the secondary indexes
/// built once at [`RegisterLoad::finish`]. A batch may still be committing when its outcomes
/// are returned (the next call or `finish` says if it failed); the load is acknowledged when
/// `finish` returns. Until then the register refuses other imports, and a crash leaves a load
/// that the next [`Register::begin_load`] continues from what was committed.
pub trait RegisterLoad: EventSink {
    /// Builds the indexes and ends the load; the register is then as if every batch had been
    /// applied by [`Register::apply_events`].
    fn finish(self: Box<Self>) -> Result<(), StoreError>;
}

/// The register's interface. Implementations are safe to share between threads; reads run
/// concurrently, writes are serialised.
pub trait Register: Send + Sync {
    /// Applies events in order, in one transaction: all outcomes are committed together or,
    /// on a storage error, none. Events already applied are skipped (idempotence).
    fn apply_events(&self, events: &[CoverageEvent], registered_at: Timestamp) -> Result<Vec<ApplyOutcome>, StoreError>;

    /// A load into this register if it holds no persons, coverages or events (or a load left
    /// unfinished, which this one continues); `None` when the register is not empty or the
    /// engine loads as it imports (PostgreSQL's `COPY`). The load holds the register's writer
    /// until it ends: in the same process, other writes wait for it (call them from another
    /// thread, or not at all, while it runs).
    fn begin_load(&self) -> Result<Option<Box<dyn RegisterLoad + '_>>, StoreError> {
        Ok(None)
    }

    /// When a load of this register was started and has not finished (Japan time, as text):
    /// until it does, imports are refused and reads by card number scan the table.
    fn unfinished_load(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Every coverage of this insurer carrying this 番号, whatever its 記号 and 枝番, over all
    /// periods. The caller narrows by symbol, branch and birth date.
    fn coverages_by_number(&self, insurer: &InsurerNumber, number: &CardNumber) -> Result<Vec<CoverageRecord>, StoreError>;

    /// Every coverage, with its dated terms, of every person who holds a coverage of this
    /// insurer with this 番号: the card's candidates and everything needed to judge them (newer
    /// coverage, pending changes), read in one statement from one snapshot. The verification
    /// path uses this alone.
    fn card_holders_view(&self, insurer: &InsurerNumber, number: &CardNumber) -> Result<Vec<CoverageWithTerms>, StoreError>;

    /// As [`Register::card_holders_view`], with where the view was read: `None` from the
    /// register itself or a copy exactly in step with it (current); else the time up to which
    /// the copy it came from holds every change: the commit time of the last change a read
    /// replica had applied, or a second before PostgreSQL's card index last caught up.
    fn card_holders_view_at(
        &self,
        insurer: &InsurerNumber,
        number: &CardNumber,
    ) -> Result<(Vec<CoverageWithTerms>, Option<Timestamp>), StoreError> {
        Ok((self.card_holders_view(insurer, number)?, None))
    }

    /// As [`Register::card_holders_view_at`], for a caller on the async runtime (the number
    /// path's handler). An engine whose reads wait on the network answers without holding a
    /// thread meanwhile (PostgreSQL: many verifications in flight on a few connections); the
    /// default runs the synchronous read (SQLite's is a few microseconds of local work).
    fn card_holders_view_async<'a>(&'a self, insurer: &'a InsurerNumber, number: &'a CardNumber) -> ViewFuture<'a> {
        Box::pin(std::future::ready(self.card_holders_view_at(insurer, number).map(|(view, at)| (shared(view), at))))
    }

    /// Builds the card index (`card_index`): the card view held in memory, for registers of at
    /// most `max_persons` persons. SQLite keeps it exactly in step with every commit;
    /// PostgreSQL follows by polling and its answers say up to when they hold every commit (as
    /// a replica's do). The default: the engine keeps none and every read goes to it.
    fn build_card_index(&self, max_persons: u64) -> Result<card_index::CardIndexStatus, StoreError> {
        let _ = max_persons;
        Ok(card_index::CardIndexStatus::Unsupported)
    }

    /// How often the card index answered, and how often a read went to the engine because the
    /// index had not caught up with a commit yet.
    fn card_index_counts(&self) -> card_index::CardIndexCounts {
        card_index::CardIndexCounts::default()
    }

    /// Every coverage, with its terms, of everyone holding a coverage with this birth date and
    /// sex: the candidates when a patient is known only by their attributes (a claim billed as
    /// 不詳). The caller compares names; the register never searches by name.
    fn born_on(&self, birth_date: Date, sex: Sex) -> Result<Vec<CoverageWithTerms>, StoreError>;

    /// Every coverage of a person.
    fn coverages_of_person(&self, person_id: i64) -> Result<Vec<CoverageRecord>, StoreError>;

    /// Every coverage of one person with its terms (oldest first), in one statement from one
    /// snapshot: what a verification by card needs once the card has named the person.
    fn person_view(&self, person_id: i64) -> Result<Vec<CoverageWithTerms>, StoreError>;

    /// The dated terms rows of a coverage, oldest first.
    fn terms_of(&self, coverage_id: i64) -> Result<Vec<TermsRecord>, StoreError>;

    fn insurer_lag(&self, insurer: &InsurerNumber) -> Result<Option<InsurerLag>, StoreError>;

    fn counts(&self) -> Result<RegisterCounts, StoreError>;

    /// Every insurer's registrations by month with their lag (the operator's dashboard: the
    /// seed's 該当資格なし complaint made visible). Reads every event: callers cache it.
    fn lag_by_month(&self) -> Result<Vec<model::LagMonth>, StoreError>;

    /// A canonical text dump of everything the register knows, by natural keys and without
    /// registration times (which differ between two imports of the same data), sorted. Two
    /// registers with equal dumps answer every query alike.
    fn canonical_dump(&self) -> Result<String, StoreError>;
}
