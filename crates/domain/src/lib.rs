//! The pure domain of onshi (オンライン資格確認): identifiers, code tables, dates and the rules at
//! the counter. Every other crate builds on these types.
//!
//! Layout:
//! - [`ids`]: 保険者番号, 公費負担者番号・受給者番号, 医療機関コード, 記号・番号・枝番, with check digits
//!   ([`check_digit`]) and full-width normalisation.
//! - [`date`]: `YYYYMMDD` dates and `YYYYMMDDHHmmss` timestamps.
//! - [`codes`]: the OQSCD code tables as enums.
//! - [`copay`]: 一部負担金割合 by age band and income class, as dated rows.
//! - [`limit`]: 限度額 categories and the monthly caps, as dated rows.
//! - [`eligibility`]: the QualificationValidity decision.
//! - [`certificate`]: a card certificate's life at the counter (renewal notice, eligibility-only grace).
//! - [`chart`]: the pages' charts as inline SVG (pure text, like [`markup`]).
//!
//! Architecture invariant: this crate does no I/O, knows nothing of storage, HTTP or JSON, and
//! has no way to represent a My Number.

pub mod certificate;
pub mod chart;
pub mod check_digit;
pub mod codes;
pub mod copay;
pub mod date;
pub mod documents;
pub mod eligibility;
pub mod error;
pub mod hex;
pub mod ids;
pub mod kana;
pub mod limit;
pub mod markup;

pub use date::{Date, Timestamp};
pub use error::FieldError;
