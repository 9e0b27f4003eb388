//! The qualification center (資格確認センター).
//!
//! Layout:
//! - [`validate`]: wire insurer events → register events, refusals naming their field.
//! - [`import`]: JSON Lines import in bounded transactions, idempotent by event id.
//! - [`verify`]: verification by card numbers, from register data and domain rules.
//! - [`audit`]: the audit writer (group commit, fail closed).
//! - [`card`]: the マイナ保険証 path: challenges, readers, 初回登録, verify by card, consent.
//! - [`medical`]: medical information: import, and views under a live consent.
//! - [`errors`]: the catalogue of stable codes with reception (Japanese) and operator actions.
//! - [`server`]: HTTPS with mutual TLS, the API router, and [`metrics`].
//! - [`dashboard`]: the operator's page and CSV tables, from the audit log's tallies.
//!
//! Architecture invariant: the institution code and insurer number of a caller come from its
//! client certificate only.

pub mod attributes;
pub mod audit;
pub mod card;
pub mod dashboard;
pub mod errors;
pub mod home;
pub mod import;
pub mod medical;
pub mod metrics;
pub mod rate;
pub mod server;
pub mod subsidy;
pub mod validate;
pub mod verify;
