#![warn(missing_docs)]
//! skiff's controller manager: the reconcile loops that make the cluster's objects come
//! true, in one leader-elected process, as kube-controller-manager.
//!
//! # Layout
//!
//! - [`run`] starts everything: the /healthz and /metrics port, leader election on the
//!   Lease `kube-system/kube-controller-manager`, shared informers, and each enabled
//!   controller ([`selection`]).
//! - [`informer`]: one watch and cache per kind, shared by the controllers.
//! - [`replicaset`]: keeps `replicas` pods per ReplicaSet.
//! - [`deployment`]: rolls Deployments from ReplicaSet to ReplicaSet, with revisions.
//! - [`job`]: runs pods to completion, with back-off and deadlines.
//! - [`cronjob`] (over [`cron`]): Jobs on a schedule.
//! - [`garbage_collector`]: deletes dependents whose owners are gone; foreground and
//!   orphan deletion.
//! - [`namespace`]: empties a Terminating namespace, then lets it go.
//! - [`node_ipam`]: a podCIDR for each Node from `--cluster-cidr`.
//! - [`node_lifecycle`]: Unknown nodes, condition taints and NoExecute eviction.
//! - [`endpoints`]: Endpoints and EndpointSlices for Services with selectors.
//! - [`daemonset`]: one pod per eligible node.
//! - [`statefulset`]: pods with stable names and ordinals, and their claims.
//! - [`serviceaccount`]: a `default` ServiceAccount in every namespace.
//! - [`events`], [`expectations`], [`pods`]: what controllers share.
//!
//! Each controller is a reconcile function `async fn(Arc<Obj>, Arc<Ctx>) ->
//! Result<Action>` run by `skiff_client::Controller` (a queue of keys with per-key
//! back-off, workers started after the caches sync), in the manner of kube-rs and
//! Kubernetes' sample-controller: it reads current state from caches and acts
//! idempotently.

pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod informer;
pub mod job;
pub mod manager;
pub mod metrics;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pods;
pub mod replicaset;
pub mod revisions;
pub mod selection;
pub mod serviceaccount;
pub mod statefulset;
pub mod status;

pub use error::{Error, Result};
pub use manager::{run, Config};
pub use selection::Selection;
/// Lease timing for `--leader-elect-*`.
pub use skiff_client::leader_election::LeaderElectionConfig;
