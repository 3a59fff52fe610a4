//! Test harness.

pub mod history;
pub mod linearizability;
pub mod workload;
