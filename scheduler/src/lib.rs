#![warn(missing_docs)]
//! skiff's scheduler: assigns pods without `spec.nodeName` to nodes, as kube-scheduler
//! does for the default profile.
//!
//! # Layout
//!
//! - [`resources`]: what a pod requests (init containers, sidecars, overhead) and a node
//!   offers.
//! - [`snapshot`]: the pure view of the cluster a decision reads ([`Snapshot`],
//!   [`PodInfo`], [`NodeInfo`]).
//! - [`filter`]: whether a pod may go on a node, and kube-scheduler's reason if not.
//! - [`score`]: how good each feasible node is, 0–100 per plugin, weighted.
//! - [`decide`]: [`schedule`] — snapshot and pod in, a node or a [`FitError`] out.
//! - [`cache`] and [`queue`]: assumed pods and the back-off queue, pure too.
//! - [`daemon`]: the I/O — watches, bindings, conditions, Events, leader election,
//!   `/healthz` and `/metrics` — behind [`run`].
//!
//! Everything but `daemon` is free of I/O and unit-tested; `decide::schedule` is what
//! the benchmark measures without an apiserver.

pub mod cache;
pub mod daemon;
pub mod decide;
pub mod error;
pub mod filter;
pub mod queue;
pub mod resources;
pub mod score;
pub mod snapshot;

#[cfg(test)]
mod tests;

pub use daemon::{run, Config};
pub use decide::{schedule, Decision, FitError};
pub use error::{Error, Result};
pub use score::Weights;
pub use snapshot::{NodeInfo, PodInfo, Snapshot};
