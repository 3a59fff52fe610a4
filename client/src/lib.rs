#![warn(missing_docs)]
//! skiff's Kubernetes client: typed REST, watcher, reflector cache, controller runner,
//! and Lease-based leader election; what every skiff daemon and skiffctl use to talk to
//! the API server. It is a small kube-rs over k8s-openapi types.
//!
//! # Connecting
//!
//! [`Client::new`] takes a base URL; [`Client::from_kubeconfig`] finds a kubeconfig as
//! kubectl does (`--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`) and takes the
//! context's server and namespace. Only `http://` servers work today: an `https://`
//! server or a client-certificate user gives [`Error::TlsNotSupported`]. TLS settings
//! will join [`Config`].
//!
//! # REST
//!
//! [`Api<K>`] addresses one resource type, built from the k8s-openapi type's group,
//! version, plural and scope: [`Api::namespaced`], [`Api::all`] (every namespace, for
//! list and watch), [`Api::cluster`]. It has `get`, `get_opt`, `list`, `create`,
//! `replace`, `patch` (JSON, merge, strategic, apply), `delete`, `delete_collection`, the
//! `status` and `scale` subresources, `create_subresource` (`binding`, `eviction`) and
//! `watch`. [`Api::dynamic`] does the same for untyped `serde_json::Value` objects of a
//! resource named at run time ([`ApiResource`]).
//!
//! ```no_run
//! # async fn demo() -> skiff_client::Result<()> {
//! use k8s_openapi::api::core::v1::Pod;
//! use skiff_client::{Api, Client, ListParams, Patch, PatchParams};
//!
//! let client = Client::from_kubeconfig(None, None)?;
//! let pods: Api<Pod> = Api::namespaced(client, "default");
//! for pod in pods.list(&ListParams::default().labels("app=web")).await?.items {
//!     println!("{}", pod.metadata.name.unwrap_or_default());
//! }
//! let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"seen": "yes"}}}));
//! match pods.patch("web-0", &PatchParams::default(), &patch).await {
//!     Err(e) if e.is_not_found() => println!("no web-0"),
//!     other => drop(other?),
//! }
//! # Ok(()) }
//! ```
//!
//! Every failure is one [`Error`]; a refusal by the server is [`Error::Api`] with the
//! Kubernetes `Status` (`is_not_found`, `is_conflict`, `is_already_exists`, `is_gone`).
//!
//! # Watching and caching
//!
//! [`watcher()`] turns an `Api` into an endless stream of [`watcher::Event`]s: a paged
//! list (`Init`, `InitApply`…, `InitDone`), then changes (`Apply`, `Delete`); it
//! re-watches from the last resourceVersion after a dropped connection and lists again
//! when that version is gone (410), backing off between failures.
//! [`reflector::reflector`] applies the stream to a [`reflector::Store`], a shared
//! read-only cache.
//!
//! # Controllers and leader election
//!
//! [`controller::Controller`] runs a reconcile function over a primary kind, triggered
//! by it and by secondary kinds (owner references or a mapping), from a de-duplicating
//! work queue with per-object back-off. [`leader_election::LeaderElector`] makes one of
//! several replicas the active one through a `Lease`, as kube-scheduler and
//! kube-controller-manager do.
//!
//! Long-running parts take their shutdown signal as any `Future<Output = ()>`, like
//! `skiff_store::run`.

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
pub use client::{reqwest_builder, Client, Config, RequestBody, HTTP_LOG_TARGET};
pub use controller::{Action, Controller};
pub use error::{Error, Result};
pub use leader_election::{LeaderElectionConfig, LeaderElector};
pub use object::{ObjectList, ObjectRef, ResourceExt};
pub use params::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy, WatchParams,
};
pub use reflector::Store;
/// HTTP methods for [`Client::request`].
pub use reqwest::Method;
pub use watch::{Bookmark, WatchEvent};
pub use watcher::watcher;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod testserver;
