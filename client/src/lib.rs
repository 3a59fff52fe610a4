//! skiff's Kubernetes client: typed REST, watcher, reflector cache, controller runner,
//! and Lease-based leader election.
pub mod api;
pub mod backoff;
pub mod client;
pub mod controller;
pub mod error;
pub mod kubeconfig;
pub mod leader_election;
pub mod object;
pub mod params;
pub mod queue;
pub mod reflector;
pub mod watch;
pub mod watcher;

pub use api::{Api, ApiResource, Deleted};
pub use client::{Client, Config};
pub use error::{Error, Result};
pub use object::{ObjectList, ObjectRef, ResourceExt};
pub use params::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy, WatchParams,
};
pub use watch::{Bookmark, WatchEvent};
pub use watcher::watcher;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod testserver;
