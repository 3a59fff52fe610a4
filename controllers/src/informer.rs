//! Shared informers: one list+watch and one cache per kind, whose events every
//! controller that needs the kind receives (client-go's SharedInformerFactory), so that
//! pods are watched and cached once however many controllers look at them.

use std::future::Future;

use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use serde::de::DeserializeOwned;
use serde::Serialize;
use skiff_client::watcher::{self, Event};
use skiff_client::{reflector, Api, Store};
use tokio::sync::mpsc;

/// One watched kind: a cache plus the subscribers that get its events.
pub struct Informer<K> {
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: reflector::Writer<K>,
    subscribers: Vec<mpsc::UnboundedSender<Event<K>>>,
}

impl<K> Informer<K>
where
    K: Metadata<Ty = ObjectMeta> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// An informer over what `api` lists.
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let (store, writer) = reflector::store();
        Informer {
            api,
            config,
            store,
            writer,
            subscribers: Vec::new(),
        }
    }

    /// A reader of the cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of the watcher's events, applied to the cache before they are sent, for
    /// `Controller::watches_stream`. Subscribe before [`run`](Self::run).
    pub fn subscribe(&mut self) -> BoxStream<'static, skiff_client::Result<Event<K>>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        futures::stream::unfold(rx, |mut rx| async move {
            let event = rx.recv().await?;
            Some((Ok(event), rx))
        })
        .boxed()
    }

    /// Lists, watches and fans events out until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut events = watcher::watcher(self.api.clone(), self.config.clone());
        tokio::pin!(shutdown);
        loop {
            let event = tokio::select! {
                _ = &mut shutdown => return,
                e = events.next() => e,
            };
            // The watcher retries failures itself and has logged them.
            let Some(Ok(event)) = event else {
                continue;
            };
            self.writer.apply_watcher_event(&event);
            self.subscribers.retain(|s| s.send(event.clone()).is_ok());
        }
    }
}

impl<K> Informer<K> {
    /// Whether any controller subscribed; an unused informer need not watch.
    pub fn is_used(&self) -> bool {
        !self.subscribers.is_empty()
    }
}
