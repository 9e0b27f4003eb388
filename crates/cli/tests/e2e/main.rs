//! End-to-end tests: they drive the `onshi` binary the way an operator, an insurer and a clinic
//! would, against a real server on a free loopback port with real TLS and real SQLite files.

mod browser;
mod card;
mod clinic;
mod common;
mod consent;
mod demo;
mod doctor;
mod gateway;
mod gateway_input;
mod hostile;
mod import;
mod page_isolation;
mod pcsc;
mod reader_secrets;
mod receipt;
mod replicas;
mod revocation;
mod server;
mod subsidy;
mod trust;
