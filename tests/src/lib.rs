//! Test harness.

pub mod history;
pub mod linearizability;
