//! Test harness.

pub mod cluster;
