//! Watch: `?watch=true&resourceVersion=RV` streams newline-delimited JSON events from an
//! etcd watch on the resource's key prefix. Events that move an object into or out of
//! the selectors become ADDED or DELETED, as in Kubernetes; a compacted start revision is
//! an ERROR event with a 410 Status; bookmarks come from the store's progress
//! notifications; a store member going away is survived by re-watching from the last
//! delivered revision.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use etcd_client::{EventType, WatchOptions, WatchResponse};
use serde_json::{json, Value};
use skiff_api::table::IncludeObject;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::handlers::Selectors;
use crate::request::{Query, Target};
use crate::storage::{decode, set_resource_version};
use crate::Server;

/// How often an idle watch asks the store for progress to send a BOOKMARK.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// How events are rendered: objects, or one-row Tables for `kubectl get -w`.
#[derive(Clone, Copy)]
pub enum Render {
    /// The object itself.
    Object,
    /// A Table with one row, including the given object form.
    Table(IncludeObject),
}

struct WatchState {
    server: Arc<Server>,
    target: Target,
    selectors: Selectors,
    render: Render,
    bookmarks: bool,
    tx: mpsc::Sender<Bytes>,
}

/// Starts a watch and answers with the streaming response.
pub async fn watch(
    server: Arc<Server>,
    target: Target,
    q: &Query,
    render: Render,
) -> Result<Response> {
    if q.flag("sendInitialEvents") {
        return Err(Error::invalid_request(
            "sendInitialEvents is not supported by skiff: list, then watch from the list's resourceVersion",
        ));
    }
    let selectors = Selectors::parse(target.rt, q)?;
    let prefix = target.rt.prefix(if target.rt.namespaced {
        target.namespace.as_deref()
    } else {
        None
    });
    let timeout = q
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let bookmarks = q.flag("allowWatchBookmarks");
    let start = match q.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(rv.parse::<i64>().map_err(|_| {
            Error::bad_request(format!("invalid resourceVersion {rv:?}: must be a number"))
        })?),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut state = WatchState {
        server: server.clone(),
        target,
        selectors,
        render,
        bookmarks,
        tx,
    };
    // Without a resourceVersion, Kubernetes first sends the current state as ADDED events.
    let from = match start {
        Some(rv) => rv + 1,
        None => {
            let mut rev = 0;
            let mut after: Option<String> = None;
            loop {
                let page = server
                    .storage
                    .list(&prefix, after.as_deref(), 500, rev)
                    .await?;
                rev = page.revision;
                for item in page.items {
                    if state.selectors.matches(&item.object) {
                        state.send_event("ADDED", &item.object).await;
                    }
                }
                match page.more_after {
                    Some(k) => after = Some(format!("{k}\0")),
                    None => break,
                }
            }
            rev + 1
        }
    };
    tokio::spawn(async move {
        let run = state.pump(prefix, from);
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, run).await;
            }
            None => run.await,
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Response::builder()
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(Body::from_stream(stream))
        .map_err(|e| Error::internal(e.to_string()))
}

impl WatchState {
    async fn send_line(&self, v: &Value) -> bool {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn send_event(&mut self, kind: &str, obj: &Value) -> bool {
        let object = match self.render {
            Render::Object => obj.clone(),
            Render::Table(include) => {
                // Every event carries the column definitions: kubectl uses their priorities
                // to hide the wide columns, and prints the header only when they change.
                skiff_api::table::table(
                    self.target.rt.kind,
                    std::slice::from_ref(obj),
                    jiff::Timestamp::now(),
                    include,
                )
            }
        };
        self.send_line(&json!({"type": kind, "object": object}))
            .await
    }

    async fn send_error(&self, status: &crate::error::Status) {
        self.send_line(&json!({"type": "ERROR", "object": status.to_json()}))
            .await;
    }

    /// Follows the store from revision `from`, re-watching after a store failure.
    async fn pump(mut self, prefix: String, mut from: i64) {
        let mut failures = 0u32;
        loop {
            match self.follow(&prefix, &mut from).await {
                Ok(()) => return,
                Err(Error::Status(s)) => {
                    self.send_error(&s).await;
                    return;
                }
                Err(e) => {
                    failures += 1;
                    if failures > 20 || self.tx.is_closed() {
                        tracing::warn!(error = %e, "watch ended: the store stayed unreachable");
                        self.send_error(&e.to_status()).await;
                        return;
                    }
                    tracing::debug!(error = %e, from, "watch lost the store; re-watching");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// One etcd watch. Returns Ok when the client went away; errors for the store.
    async fn follow(&mut self, prefix: &str, from: &mut i64) -> Result<()> {
        let mut client = self.server.storage.client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(*from)
            .with_prev_key();
        let (mut watcher, mut stream) = client.watch(prefix, Some(options)).await?.split();
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let Some(resp) = msg? else {
                        return Err(Error::unavailable("the store closed the watch"));
                    };
                    if resp.compact_revision() > 0 {
                        return Err(Error::gone(format!(
                            "too old resource version: {} ({})",
                            *from - 1,
                            resp.compact_revision()
                        )));
                    }
                    if resp.canceled() {
                        return Err(Error::unavailable(format!("the store canceled the watch: {}", resp.cancel_reason())));
                    }
                    if !self.deliver(&resp, from).await {
                        return Ok(());
                    }
                }
                _ = ticker.tick() => {
                    if self.tx.is_closed() {
                        return Ok(());
                    }
                    if self.bookmarks {
                        watcher.request_progress().await?;
                    }
                }
                _ = self.tx.closed() => return Ok(()),
            }
        }
    }

    /// Sends the events of one store response; false when the client went away.
    async fn deliver(&mut self, resp: &WatchResponse, from: &mut i64) -> bool {
        if resp.events().is_empty() {
            if !resp.created() && self.bookmarks {
                if let Some(rev) = resp.header().map(|h| h.revision()) {
                    if rev >= *from {
                        *from = rev + 1;
                        let bookmark = json!({
                            "kind": self.target.rt.kind,
                            "apiVersion": self.target.rt.api_version,
                            "metadata": {"resourceVersion": rev.to_string()},
                        });
                        return self
                            .send_line(&json!({"type": "BOOKMARK", "object": bookmark}))
                            .await;
                    }
                }
            }
            return true;
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            let prev = event
                .prev_kv()
                .and_then(|p| decode(p).ok())
                .map(|s| s.object);
            let (kind, obj) = match event.event_type() {
                EventType::Put => {
                    let Ok(stored) = decode(kv) else { continue };
                    let now = self.selectors.matches(&stored.object);
                    let before = prev.as_ref().map(|p| self.selectors.matches(p));
                    match (before, now) {
                        (None | Some(false), true) => ("ADDED", stored.object),
                        (Some(true), true) => ("MODIFIED", stored.object),
                        (Some(true), false) => ("DELETED", stored.object),
                        (_, false) => {
                            *from = revision + 1;
                            continue;
                        }
                    }
                }
                EventType::Delete => {
                    let Some(mut old) = prev else {
                        *from = revision + 1;
                        continue;
                    };
                    if !self.selectors.matches(&old) {
                        *from = revision + 1;
                        continue;
                    }
                    set_resource_version(&mut old, revision);
                    ("DELETED", old)
                }
            };
            if !self.send_event(kind, &obj).await {
                return false;
            }
            *from = revision + 1;
        }
        true
    }
}
