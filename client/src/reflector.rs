//! A local cache of one resource kept up to date from a [`watcher`](crate::watcher())
//! stream.
//!
//! ```no_run
//! # async fn demo(client: skiff_client::Client) {
//! use futures::StreamExt;
//! use k8s_openapi::api::core::v1::Pod;
//! use skiff_client::{reflector, watcher, Api};
//!
//! let (store, writer) = reflector::store::<Pod>();
//! let events = reflector::reflector(writer, watcher::watcher(Api::all(client), Default::default()));
//! tokio::spawn(events.for_each(|_| async {}));
//! store.wait_until_synced().await;
//! let pods = store.list();
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::stream::{Stream, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use tokio::sync::watch;

use crate::watcher::Event;
use crate::{ObjectRef, Result};

/// The reading side of a cache: cheap to clone, shared by any number of tasks.
pub struct Store<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    objects: RwLock<HashMap<ObjectRef, Arc<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<K> std::fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl<K> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ObjectRef, Arc<K>>> {
        // A panic while holding the lock leaves the map consistent (each change is one
        // insert, remove or swap), so a poisoned lock is still safe to read.
        self.inner.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The object `name` in `namespace` (None for cluster-scoped kinds).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.get_ref(&ObjectRef::new(namespace, name))
    }

    /// The object a reference names.
    pub fn get_ref(&self, key: &ObjectRef) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every cached object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether the first full list has arrived.
    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until the first full list has arrived.
    pub async fn wait_until_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: this cannot fail.
        let _ = rx.wait_for(|synced| *synced).await;
    }
}

/// The writing side of a cache: feed it watcher events.
pub struct Writer<K> {
    store: Store<K>,
    // Objects of a list in progress; swapped in whole at InitDone.
    buffer: Option<HashMap<ObjectRef, Arc<K>>>,
}

/// A new empty cache: its reader and its writer.
pub fn store<K>() -> (Store<K>, Writer<K>) {
    let (synced, _) = watch::channel(false);
    let store = Store {
        inner: Arc::new(Inner {
            objects: RwLock::new(HashMap::new()),
            synced,
        }),
    };
    let writer = Writer {
        store: store.clone(),
        buffer: None,
    };
    (store, writer)
}

impl<K: Metadata<Ty = ObjectMeta> + Clone> Writer<K> {
    /// A reader of this cache.
    pub fn as_reader(&self) -> Store<K> {
        self.store.clone()
    }

    /// Applies one watcher event. A relist fills a side buffer and replaces the whole
    /// cache at `InitDone`, so readers never see a half-listed state and objects deleted
    /// while the watch was down disappear.
    pub fn apply_watcher_event(&mut self, event: &Event<K>) {
        match event {
            Event::Init => self.buffer = Some(HashMap::new()),
            Event::InitApply(obj) => {
                self.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(ObjectRef::from_obj(obj), Arc::new(obj.clone()));
            }
            Event::InitDone => {
                let fresh = self.buffer.take().unwrap_or_default();
                *self.write() = fresh;
                self.store.inner.synced.send_replace(true);
            }
            Event::Apply(obj) => {
                self.write()
                    .insert(ObjectRef::from_obj(obj), Arc::new(obj.clone()));
            }
            Event::Delete(obj) => {
                self.write().remove(&ObjectRef::from_obj(obj));
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ObjectRef, Arc<K>>> {
        self.store
            .inner
            .objects
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Passes a watcher stream through, applying each event to `writer` on the way.
pub fn reflector<K, S>(mut writer: Writer<K>, stream: S) -> impl Stream<Item = Result<Event<K>>>
where
    K: Metadata<Ty = ObjectMeta> + Clone,
    S: Stream<Item = Result<Event<K>>>,
{
    stream.inspect_ok(move |event| writer.apply_watcher_event(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(ns: &str, name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn relist_replaces_contents_at_init_done() {
        let (store, mut w) = store::<Pod>();
        assert!(!store.is_synced());
        w.apply_watcher_event(&Event::Init);
        w.apply_watcher_event(&Event::InitApply(pod("a", "x", "1")));
        w.apply_watcher_event(&Event::InitApply(pod("a", "y", "1")));
        assert!(store.is_empty(), "a list in progress is not visible");
        w.apply_watcher_event(&Event::InitDone);
        assert!(store.is_synced());
        assert_eq!(store.len(), 2);

        w.apply_watcher_event(&Event::Apply(pod("a", "x", "2")));
        w.apply_watcher_event(&Event::Delete(pod("a", "y", "3")));
        w.apply_watcher_event(&Event::Apply(pod("b", "x", "4")));
        assert_eq!(
            store
                .get(Some("a"), "x")
                .unwrap()
                .metadata
                .resource_version
                .as_deref(),
            Some("2")
        );
        assert!(store.get(Some("a"), "y").is_none());
        assert_eq!(store.len(), 2);

        // Relist: "a/x" vanished while the watch was down.
        w.apply_watcher_event(&Event::Init);
        w.apply_watcher_event(&Event::InitApply(pod("b", "x", "5")));
        assert_eq!(
            store.len(),
            2,
            "old contents stay until the list is complete"
        );
        w.apply_watcher_event(&Event::InitDone);
        assert_eq!(store.len(), 1);
        assert!(store.get(Some("a"), "x").is_none());
        assert!(store.is_synced());
    }

    #[tokio::test]
    async fn wait_until_synced_returns_after_init_done() {
        let (store, mut w) = store::<Pod>();
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.wait_until_synced().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        w.apply_watcher_event(&Event::Init);
        w.apply_watcher_event(&Event::InitDone);
        waiter.await.unwrap();
    }
}
