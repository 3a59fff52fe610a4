//! The controller runner: watch a primary kind (and secondary kinds mapped onto it), keep
//! a cache, and call a reconcile function for each changed object from a work queue.
//!
//! ```no_run
//! # async fn demo(client: skiff_client::Client) {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use k8s_openapi::api::apps::v1::ReplicaSet;
//! use k8s_openapi::api::core::v1::Pod;
//! use skiff_client::controller::{Action, Controller};
//! use skiff_client::Api;
//!
//! #[derive(Clone)]
//! struct Ctx { client: skiff_client::Client }
//!
//! async fn reconcile(rs: Arc<ReplicaSet>, ctx: Ctx) -> Result<Action, skiff_client::Error> {
//!     // Compare rs.spec with the world, act through ctx.client, then:
//!     Ok(Action::requeue(Duration::from_secs(300)))
//! }
//!
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! Controller::new(Api::<ReplicaSet>::all(client.clone()), Default::default())
//!     .owns(Api::<Pod>::all(client.clone()), Default::default())
//!     .workers(4)
//!     .run(reconcile, Ctx { client }, shutdown)
//!     .await;
//! # }
//! ```
//!
//! Guarantees: every object is reconciled once after the caches first sync (workers start
//! only then); an object is never reconciled by two workers at once; changes that arrive
//! while it is queued collapse into one reconcile. Objects that are gone from the cache
//! are not reconciled: clean-up belongs in finalizers or owner references.
//!
//! Shutdown: `run` takes any `Future<Output = ()>` as its shutdown signal, like
//! `skiff_store::run` (e.g. `async { let _ = rx.changed().await; }` for a
//! `tokio::sync::watch`). When it completes no new reconcile starts, the ones in flight
//! finish, and `run` returns.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::queue::WorkQueue;
use crate::reflector::{self, Store};
use crate::watcher::{self, Event};
use crate::{Api, Error, ObjectRef, ResourceExt};

/// What to do with an object after reconciling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long even if nothing changes.
    Requeue(Duration),
    /// Reconcile again only when the object or a secondary changes.
    AwaitChange,
}

impl Action {
    /// Reconcile again after `after`.
    pub fn requeue(after: Duration) -> Self {
        Action::Requeue(after)
    }

    /// Reconcile again on the next change only.
    pub fn await_change() -> Self {
        Action::AwaitChange
    }
}

enum Input {
    Keys(Vec<ObjectRef>),
    Synced(usize),
    Failed(&'static str, Error),
}

/// Runs a reconcile function over a primary kind `K`; see the module docs.
pub struct Controller<K> {
    store: Store<K>,
    inputs: Vec<BoxStream<'static, Input>>,
    primary_namespaced: bool,
    workers: usize,
    backoff: Backoff,
}

/// Maps a watcher stream onto keys of the primary, with its index for sync tracking.
fn input_stream<C, S, F>(
    index: usize,
    what: &'static str,
    events: S,
    mapper: F,
) -> BoxStream<'static, Input>
where
    C: Send + 'static,
    S: Stream<Item = crate::Result<Event<C>>> + Send + 'static,
    F: Fn(&C) -> Vec<ObjectRef> + Send + 'static,
{
    events
        .map(move |event| match event {
            Ok(Event::Init) => Input::Keys(Vec::new()),
            Ok(Event::InitDone) => Input::Synced(index),
            Ok(Event::InitApply(c) | Event::Apply(c) | Event::Delete(c)) => Input::Keys(mapper(&c)),
            Err(e) => Input::Failed(what, e),
        })
        .boxed()
}

impl<K> Controller<K>
where
    K: Resource
        + Metadata<Ty = ObjectMeta>
        + Clone
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// A controller for the objects `api` lists (one namespace or all).
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let primary_namespaced = api.resource().namespaced;
        let (store, writer) = reflector::store();
        let events = reflector::reflector(writer, watcher::watcher(api, config));
        // A deleted primary maps to its key too; the worker finds it gone and skips it.
        let primary = input_stream(0, K::KIND, events, |k: &K| vec![ObjectRef::from_obj(k)]);
        Controller {
            store,
            inputs: vec![primary],
            primary_namespaced,
            workers: 1,
            backoff: Backoff::new(Duration::from_millis(5), Duration::from_secs(1000)),
        }
    }

    /// Also reconciles the owners of `C` objects: an owner reference with `K`'s
    /// apiVersion and kind names the primary to reconcile.
    pub fn owns<C>(self, api: Api<C>, config: watcher::Config) -> Self
    where
        C: Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Send + 'static,
    {
        let namespaced = self.primary_namespaced;
        self.watches(api, config, move |child: &C| {
            let ns = if namespaced { child.namespace() } else { None };
            child
                .owner_references()
                .iter()
                .filter(|o| o.kind == K::KIND && o.api_version == K::API_VERSION)
                .map(|o| ObjectRef::new(ns, &o.name))
                .collect()
        })
    }

    /// Also reconciles the primaries `mapper` names for each change of a `C` object.
    pub fn watches<C, F>(self, api: Api<C>, config: watcher::Config, mapper: F) -> Self
    where
        C: Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Send + 'static,
        F: Fn(&C) -> Vec<ObjectRef> + Send + 'static,
    {
        self.watches_stream(watcher::watcher(api, config), mapper)
    }

    /// Like [`watches`](Self::watches) for a watcher stream built by the caller, typically
    /// through [`reflector::reflector`] so that the secondary's cache can be read in
    /// reconcile. Workers wait for its first `InitDone` too.
    pub fn watches_stream<C, S, F>(mut self, events: S, mapper: F) -> Self
    where
        C: Send + 'static,
        S: Stream<Item = crate::Result<Event<C>>> + Send + 'static,
        F: Fn(&C) -> Vec<ObjectRef> + Send + 'static,
    {
        let index = self.inputs.len();
        self.inputs
            .push(input_stream(index, "secondary", events, mapper));
        self
    }

    /// How many objects are reconciled at once (default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Per-object back-off after a failed reconcile (default 5 ms doubling to 1000 s,
    /// client-go's).
    pub fn error_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max);
        self
    }

    /// A reader of the primary cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Runs until `shutdown` completes; see the module docs. Workers run as concurrent
    /// futures of this one task: spawn `run` to give it a task of its own.
    pub async fn run<Ctx, E, F, Fut>(
        self,
        reconcile: F,
        ctx: Ctx,
        shutdown: impl Future<Output = ()>,
    ) where
        F: Fn(Arc<K>, Ctx) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
        Ctx: Clone,
        E: Display,
    {
        let queue = WorkQueue::new(self.backoff.clone());
        let (synced_tx, synced_rx) = watch::channel(false);
        let n_inputs = self.inputs.len();
        let mut inputs = stream::select_all(self.inputs);
        let store = self.store;

        let driver = {
            let queue = queue.clone();
            let synced_tx = synced_tx.clone();
            async move {
                let mut synced = HashSet::new();
                while let Some(input) = inputs.next().await {
                    match input {
                        Input::Keys(keys) => keys.into_iter().for_each(|k| queue.add(k)),
                        Input::Synced(i) => {
                            if synced.insert(i) && synced.len() == n_inputs {
                                tracing::info!(kind = K::KIND, "caches synced, starting workers");
                                synced_tx.send_replace(true);
                            }
                        }
                        // The watcher logged it and retries by itself.
                        Input::Failed(what, error) => {
                            tracing::debug!(kind = K::KIND, input = what, %error, "watch input failed")
                        }
                    }
                }
            }
        };

        let workers = futures::future::join_all((0..self.workers).map(|worker| {
            let queue = queue.clone();
            let store = store.clone();
            let ctx = ctx.clone();
            let reconcile = &reconcile;
            let mut synced = synced_rx.clone();
            async move {
                if synced.wait_for(|s| *s).await.is_err() {
                    return;
                }
                while let Some(key) = queue.next().await {
                    let Some(obj) = store.get_ref(&key) else {
                        queue.forget(&key);
                        queue.done(&key);
                        continue;
                    };
                    let started = std::time::Instant::now();
                    match reconcile(obj, ctx.clone()).await {
                        Ok(action) => {
                            queue.forget(&key);
                            if let Action::Requeue(after) = action {
                                queue.add_after(key.clone(), after);
                            }
                            tracing::debug!(
                                kind = K::KIND, %key, worker,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                ?action, "reconciled"
                            );
                        }
                        Err(error) => {
                            let retry_in = queue.add_rate_limited(key.clone());
                            tracing::warn!(
                                kind = K::KIND, %key, worker, %error,
                                retry_in_ms = retry_in.as_millis() as u64,
                                "reconcile failed"
                            );
                        }
                    }
                    queue.done(&key);
                }
            }
        }));

        tokio::pin!(driver, workers, shutdown);
        // Workers are polled here too: they run while the driver feeds the queue.
        tokio::select! {
            _ = &mut shutdown => {}
            _ = &mut driver => tracing::warn!(kind = K::KIND, "controller inputs ended"),
            _ = &mut workers => {}
        }
        tracing::info!(kind = K::KIND, "controller stopping");
        queue.shut_down();
        // Workers still waiting for the first sync must not wait forever.
        synced_tx.send_replace(true);
        workers.await;
    }
}
