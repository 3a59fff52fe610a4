//! A never-ending list-then-watch stream that survives dropped connections and expired
//! resourceVersions, like client-go's reflector without the cache.
//!
//! The stream first lists (in pages) and emits the whole current set between
//! [`Event::Init`] and [`Event::InitDone`], then watches from the list's
//! resourceVersion and emits [`Event::Apply`] / [`Event::Delete`]. When a watch ends or
//! breaks it watches again from the last resourceVersion seen (bookmarks included); when
//! the server says that version is gone (410) it lists again, so another
//! `Init … InitDone` round follows and consumers replace what they hold. Errors are
//! yielded for logging only: the watcher backs off and retries by itself, forever.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::{Api, Error, ListParams, ResourceExt, Result, WatchEvent, WatchParams};

/// What the watcher reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// A (re)list begins: the objects up to `InitDone` are the complete current set.
    Init,
    /// An object of the current set.
    InitApply(K),
    /// The list is complete; anything not seen since `Init` no longer exists.
    InitDone,
    /// An object was created or changed.
    Apply(K),
    /// An object was deleted; this is its last state.
    Delete(K),
}

/// What to watch and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `labelSelector` for list and watch.
    pub label_selector: Option<String>,
    /// `fieldSelector` for list and watch.
    pub field_selector: Option<String>,
    /// Items per list page.
    pub page_size: u32,
    /// `timeoutSeconds` of each watch request.
    pub timeout_seconds: u32,
    /// Back-off after a failure starts here and doubles …
    pub backoff_initial: Duration,
    /// … up to this (client-go's reflector uses 800 ms and 30 s).
    pub backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            label_selector: None,
            field_selector: None,
            page_size: 500,
            timeout_seconds: 290,
            backoff_initial: Duration::from_millis(800),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Selects by label.
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    /// Selects by field.
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }

    /// Items per list page.
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = n;
        self
    }

    /// `timeoutSeconds` of each watch request.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout_seconds = seconds;
        self
    }

    /// Back-off bounds between failed attempts.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    fn list_params(&self, continue_token: Option<&str>) -> ListParams {
        ListParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            limit: Some(self.page_size),
            continue_token: continue_token.map(str::to_string),
            ..ListParams::default()
        }
    }

    fn watch_params(&self) -> WatchParams {
        WatchParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            timeout_seconds: Some(self.timeout_seconds),
            bookmarks: true,
        }
    }
}

enum Phase<K> {
    Listing {
        continue_token: Option<String>,
        resource_version: String,
        announced: bool,
    },
    Watching {
        resource_version: String,
        stream: Option<BoxStream<'static, Result<WatchEvent<K>>>>,
        events: u64,
        opened_at: Instant,
    },
}

impl<K> Phase<K> {
    fn relist() -> Self {
        Phase::Listing {
            continue_token: None,
            resource_version: String::new(),
            announced: false,
        }
    }
}

struct Watcher<K> {
    api: Api<K>,
    config: Config,
    phase: Phase<K>,
    pending: VecDeque<Event<K>>,
    backoff: Backoff,
    wait: Option<Duration>,
}

/// Lists then watches `api` forever; see the module docs.
pub fn watcher<K>(api: Api<K>, config: Config) -> BoxStream<'static, Result<Event<K>>>
where
    K: Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Send + 'static,
{
    let backoff = Backoff::new(config.backoff_initial, config.backoff_max).with_jitter(0.5);
    let state = Watcher {
        api,
        config,
        phase: Phase::relist(),
        pending: VecDeque::new(),
        backoff,
        wait: None,
    };
    futures::stream::unfold(state, |mut w| async move {
        let item = w.next_event().await;
        Some((item, w))
    })
    .boxed()
}

impl<K> Watcher<K>
where
    K: Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Send + 'static,
{
    fn failed(&mut self, error: Error) -> Result<Event<K>> {
        let delay = self.backoff.next_delay();
        tracing::warn!(
            resource = %self.api.resource().plural,
            namespace = self.api.namespace().unwrap_or(""),
            %error,
            retry_in_ms = delay.as_millis() as u64,
            "watcher failed"
        );
        self.wait = Some(delay);
        Err(error)
    }

    fn relist_because(&mut self, why: &dyn std::fmt::Display) {
        tracing::info!(
            resource = %self.api.resource().plural,
            namespace = self.api.namespace().unwrap_or(""),
            reason = %why,
            "resourceVersion expired, listing again"
        );
        self.phase = Phase::relist();
    }

    async fn next_event(&mut self) -> Result<Event<K>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if let Some(delay) = self.wait.take() {
                tokio::time::sleep(delay).await;
            }
            match &mut self.phase {
                Phase::Listing {
                    continue_token,
                    resource_version,
                    announced,
                } => {
                    let lp = self.config.list_params(continue_token.as_deref());
                    let page = match self.api.list(&lp).await {
                        Ok(page) => page,
                        // An expired continue token: the snapshot is gone, start over.
                        Err(e) if e.is_gone() => {
                            self.relist_because(&e);
                            continue;
                        }
                        Err(e) => return self.failed(e),
                    };
                    self.backoff.reset();
                    if !*announced {
                        *announced = true;
                        self.pending.push_back(Event::Init);
                    }
                    if let Some(rv) = page.metadata.resource_version.filter(|rv| !rv.is_empty()) {
                        *resource_version = rv;
                    }
                    self.pending
                        .extend(page.items.into_iter().map(Event::InitApply));
                    match page.metadata.continue_.filter(|c| !c.is_empty()) {
                        Some(token) => *continue_token = Some(token),
                        None => {
                            self.pending.push_back(Event::InitDone);
                            self.phase = Phase::Watching {
                                resource_version: std::mem::take(resource_version),
                                stream: None,
                                events: 0,
                                opened_at: Instant::now(),
                            };
                        }
                    }
                }
                Phase::Watching {
                    resource_version,
                    stream: None,
                    ..
                } => {
                    let wp = self.config.watch_params();
                    match self.api.watch(&wp, resource_version).await {
                        Ok(s) => {
                            self.phase = Phase::Watching {
                                resource_version: std::mem::take(resource_version),
                                stream: Some(s),
                                events: 0,
                                opened_at: Instant::now(),
                            };
                        }
                        Err(e) if e.is_gone() => self.relist_because(&e),
                        Err(e) => return self.failed(e),
                    }
                }
                Phase::Watching {
                    resource_version,
                    stream: Some(stream),
                    events,
                    opened_at,
                } => match stream.next().await {
                    Some(Ok(event)) => {
                        *events += 1;
                        let (obj, deleted) = match event {
                            WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                            WatchEvent::Deleted(o) => (o, true),
                            WatchEvent::Bookmark(b) => {
                                *resource_version = b.resource_version;
                                continue;
                            }
                            WatchEvent::Error(status) => {
                                let e = Error::Api(status);
                                if e.is_gone() {
                                    self.relist_because(&e);
                                    continue;
                                }
                                self.phase = Phase::Watching {
                                    resource_version: std::mem::take(resource_version),
                                    stream: None,
                                    events: 0,
                                    opened_at: Instant::now(),
                                };
                                return self.failed(e);
                            }
                        };
                        if let Some(rv) = obj.resource_version() {
                            *resource_version = rv.to_string();
                        }
                        self.backoff.reset();
                        return Ok(if deleted {
                            Event::Delete(obj)
                        } else {
                            Event::Apply(obj)
                        });
                    }
                    Some(Err(e)) => {
                        let rv = std::mem::take(resource_version);
                        self.phase = Phase::Watching {
                            resource_version: rv,
                            stream: None,
                            events: 0,
                            opened_at: Instant::now(),
                        };
                        return self.failed(e);
                    }
                    None => {
                        // The server ended the watch (timeoutSeconds); watch again at once,
                        // unless it closes straight away each time. A quiet watch that
                        // lasted is healthy and must not push the back-off up.
                        if *events == 0 && opened_at.elapsed() < Duration::from_secs(1) {
                            self.wait = Some(self.backoff.next_delay());
                        } else {
                            self.backoff.reset();
                        }
                        tracing::debug!(
                            resource = %self.api.resource().plural,
                            resource_version = %resource_version,
                            "watch ended, watching again"
                        );
                        let rv = std::mem::take(resource_version);
                        self.phase = Phase::Watching {
                            resource_version: rv,
                            stream: None,
                            events: 0,
                            opened_at: Instant::now(),
                        };
                    }
                },
            }
        }
    }
}
