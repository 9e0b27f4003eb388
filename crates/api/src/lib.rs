//! The center's API, version 1: the JSON shapes on the wire and a client.
//!
//! Layout:
//! - [`events`]: insurer coverage events (acquire / change / lose), one JSON object per line.
//! - [`verify`]: verify-by-number requests and answers, batch, errors.
//! - [`subsidy`]: 公費 payers' recipient events and what a clinic is told of them.
//! - [`card`]: the マイナ保険証 path: challenges, readers, 初回登録, verify by card, consent.
//! - [`client`]: an HTTPS client that presents a client certificate (institution or insurer).
//!
//! Architecture invariant: wire types live here and only here. They hold strings as sent;
//! validation into domain types happens in the center, so that a refusal can name the field.

pub mod card;
pub mod client;
pub mod events;
pub mod medical;
pub mod subsidy;
pub mod verify;

/// The path prefix of this API version.
pub const API_PREFIX: &str = "/v1";

/// Largest batch the center answers in one call.
pub const BATCH_ENTRIES_MAX: usize = 10_000;
