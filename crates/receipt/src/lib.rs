//! Receipt pre-check (レセプト事前点検): read the monthly claim file (UKE) before it is sent,
//! classify every claim's eligibility against the register, and write a corrected copy for the
//! cases that have one right answer.
//!
//! Everything here is pure: the caller reads the file, calls the center and writes the
//! results. [`uke`] reads (and re-encodes) the file, [`classify`] turns the center's answers
//! into a verdict per claim, [`fix`] applies the unambiguous corrections and [`report`] renders
//! what reception staff read.

pub mod classify;
pub mod fix;
pub mod report;
pub mod sample;
pub mod uke;

#[doc(hidden)]
pub mod fixtures;
