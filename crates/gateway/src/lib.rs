//! The clinic gateway (onshi-gateway): what a clinic installs instead of a vendor terminal.
//!
//! - [`files`]: the standard `req/` `res/` `face/` XML file interface that レセコン already speak
//!   ([`request`] reads requests, [`answer_xml`] writes results, [`xml`] does the XML itself);
//! - [`gateway`]: checks by numbers and by card ([`card_reader`]: the simulator or a PC/SC
//!   reader), falling back to the cache or a visual check
//!   when the line is down; [`reverify`] asks again by itself when it is back;
//! - [`batch`]: 一括照会 ahead of the day, and what changed since;
//! - [`page`]: the reception page, [`access`]: who may open it; [`doctor`]: which link of the
//!   chain is broken; [`patient`]: the patients' own page (a kiosk with the reader);
//! - [`store`]: the gateway's own SQLite file, the durable part of all of the above.
//!
//! [`check`] is the pure core: outcomes and what changed between two answers.

pub mod access;
pub mod answer_xml;
pub mod batch;
pub mod card_reader;
pub mod check;
pub mod config;
pub mod declaration;
pub mod doctor;
pub mod files;
pub mod gateway;
pub mod home;
pub mod medical;
pub mod metrics;
pub mod names;
pub mod page;
pub mod patient;
pub mod reference;
pub mod request;
pub mod reverify;
pub mod serve;
pub mod store;
pub mod usage;
pub mod welfare;
pub mod xml;
