//! The Watch service: many watchers per bidirectional stream.
//!
//! Each watcher first catches up from the stored history (from its start revision to
//! the revision current when it subscribed), then follows the live events the Raft thread
//! publishes. It subscribes under the state's read lock while events are published under
//! the write lock, so no revision falls between history and live. A watcher that falls
//! behind the live feed goes back to history from where it was: no gaps, no repeats,
//! and one revision's events always travel in one response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skiff_proto::etcdserverpb::watch_create_request::FilterType;
use skiff_proto::etcdserverpb::watch_server::Watch;
use skiff_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use skiff_proto::mvccpb::{event::EventType, Event};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::mvcc::in_range;
use crate::server::Ctx;

/// Events per response when replaying history (never splitting a revision).
const MAX_EVENTS_PER_RESPONSE: usize = 1000;
/// Revisions read from history at a time.
const HISTORY_CHUNK: i64 = 1000;

/// The Watch service.
pub struct WatchService {
    /// Context.
    pub ctx: Ctx,
    /// How often a watcher with `progress_notify` reports progress when idle.
    pub progress_interval: Duration,
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

struct Watcher {
    task: JoinHandle<()>,
    /// The next revision this watcher will deliver (everything before is sent).
    next: Arc<AtomicI64>,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let ctx = self.ctx.clone();
        let progress = self.progress_interval;
        tokio::spawn(async move {
            let mut watchers: HashMap<i64, Watcher> = HashMap::new();
            let mut next_id = 0i64;
            loop {
                let msg = tokio::select! {
                    m = incoming.message() => m,
                    _ = tx.closed() => break,
                };
                let Ok(Some(req)) = msg else { break };
                match req.request_union {
                    Some(watch_request::RequestUnion::CreateRequest(c)) => {
                        let id = if c.watch_id != 0 {
                            c.watch_id
                        } else {
                            while watchers.contains_key(&next_id) {
                                next_id += 1;
                            }
                            next_id
                        };
                        if watchers.contains_key(&id) {
                            let resp = WatchResponse {
                                header: Some(ctx.header(0)),
                                watch_id: id,
                                created: true,
                                canceled: true,
                                cancel_reason: "etcdserver: duplicate watch ID".into(),
                                ..Default::default()
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        if id == next_id {
                            next_id += 1;
                        }
                        match start_watcher(&ctx, id, c, tx.clone(), progress).await {
                            Some(w) => {
                                ctx.node
                                    .shared
                                    .metrics
                                    .watchers
                                    .fetch_add(1, Ordering::Relaxed);
                                watchers.insert(id, w);
                            }
                            None => break,
                        }
                    }
                    Some(watch_request::RequestUnion::CancelRequest(c)) => {
                        if let Some(w) = watchers.remove(&c.watch_id) {
                            w.task.abort();
                            ctx.node
                                .shared
                                .metrics
                                .watchers
                                .fetch_sub(1, Ordering::Relaxed);
                            let resp = WatchResponse {
                                header: Some(ctx.header(current_revision(&ctx))),
                                watch_id: c.watch_id,
                                canceled: true,
                                ..Default::default()
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                        // Progress means "every event up to this revision was sent", so
                        // it is the slowest watcher's position, not the store's revision.
                        let rev = watchers
                            .values()
                            .map(|w| w.next.load(Ordering::Acquire) - 1)
                            .min()
                            .unwrap_or_else(|| current_revision(&ctx));
                        let resp = WatchResponse {
                            header: Some(ctx.header(rev)),
                            watch_id: -1,
                            ..Default::default()
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            break;
                        }
                    }
                    None => {}
                }
            }
            for (_, w) in watchers.drain() {
                w.task.abort();
                ctx.node
                    .shared
                    .metrics
                    .watchers
                    .fetch_sub(1, Ordering::Relaxed);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn current_revision(ctx: &Ctx) -> i64 {
    ctx.node
        .shared
        .state
        .read()
        .expect("state lock")
        .mvcc()
        .current_revision()
}

/// Sends the `created` response and starts the watcher; `None` if the stream is gone.
async fn start_watcher(
    ctx: &Ctx,
    id: i64,
    req: WatchCreateRequest,
    tx: Out,
    progress: Duration,
) -> Option<Watcher> {
    let (rx, current, interest) = {
        let state = ctx.node.shared.state.read().expect("state lock");
        let interest = req
            .prev_kv
            .then(|| PrevKvInterest::new(state.prev_kv_watchers()));
        (
            ctx.node.shared.events.subscribe(),
            state.mvcc().current_revision(),
            interest,
        )
    };
    let start = if req.start_revision > 0 {
        req.start_revision
    } else {
        current + 1
    };
    let created = WatchResponse {
        header: Some(ctx.header(current)),
        watch_id: id,
        created: true,
        ..Default::default()
    };
    tx.send(Ok(created)).await.ok()?;
    let next = Arc::new(AtomicI64::new(start));
    let w = WatcherTask {
        ctx: ctx.clone(),
        id,
        filter: Filter::new(&req),
        tx,
        next: next.clone(),
        progress: req.progress_notify.then_some(progress),
        _interest: interest,
    };
    let task = tokio::spawn(w.run(rx, current));
    Some(Watcher { task, next })
}

/// What a watcher wants to see.
struct Filter {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
}

impl Filter {
    fn new(req: &WatchCreateRequest) -> Filter {
        Filter {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
        }
    }

    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| {
                let key = e.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
                let put = e.r#type == EventType::Put as i32;
                in_range(key, &self.key, &self.range_end)
                    && !(put && self.no_put)
                    && (put || !self.no_delete)
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

struct WatcherTask {
    ctx: Ctx,
    id: i64,
    filter: Filter,
    tx: Out,
    next: Arc<AtomicI64>,
    progress: Option<Duration>,
    _interest: Option<PrevKvInterest>,
}

/// Counts a watcher that wants `prev_kv` for as long as it lives.
struct PrevKvInterest(Arc<std::sync::atomic::AtomicUsize>);

impl PrevKvInterest {
    fn new(count: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        PrevKvInterest(count)
    }
}

impl Drop for PrevKvInterest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Stop {
    /// The client went away or cancelled.
    Gone,
    /// Fell behind the live feed: replay history from `next`.
    Lagged,
}

impl WatcherTask {
    async fn run(
        self,
        mut rx: broadcast::Receiver<Arc<crate::node::RevisionEvents>>,
        mut current: i64,
    ) {
        loop {
            if self.catch_up(current).await.is_err() {
                return;
            }
            match self.follow(&mut rx).await {
                Stop::Gone => return,
                Stop::Lagged => {
                    let state = self.ctx.node.shared.state.read().expect("state lock");
                    rx = self.ctx.node.shared.events.subscribe();
                    current = state.mvcc().current_revision();
                }
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), ()> {
        self.tx.send(Ok(resp)).await.map_err(|_| ())
    }

    /// Replays stored history from `next` through `to`.
    async fn catch_up(&self, to: i64) -> Result<(), ()> {
        let mut from = self.next.load(Ordering::Acquire);
        while from <= to {
            let upto = (from + HISTORY_CHUNK - 1).min(to);
            let history = {
                let state = self.ctx.node.shared.state.read().expect("state lock");
                state.events(from, upto)
            };
            let history = match history {
                Ok(h) => h,
                Err(Error::Compacted { compact_revision }) => {
                    let _ = self
                        .send(WatchResponse {
                            header: Some(self.ctx.header(to)),
                            watch_id: self.id,
                            canceled: true,
                            compact_revision,
                            cancel_reason: Error::Compacted { compact_revision }.to_string(),
                            ..Default::default()
                        })
                        .await;
                    return Err(());
                }
                Err(e) => {
                    let _ = self
                        .send(WatchResponse {
                            header: Some(self.ctx.header(to)),
                            watch_id: self.id,
                            canceled: true,
                            cancel_reason: e.to_string(),
                            ..Default::default()
                        })
                        .await;
                    return Err(());
                }
            };
            let mut batch: Vec<Event> = Vec::new();
            let mut batch_rev = 0;
            for (rev, events) in history {
                let selected = self.filter.select(&events);
                if !selected.is_empty() {
                    if !batch.is_empty() && batch.len() + selected.len() > MAX_EVENTS_PER_RESPONSE {
                        self.send(self.events_response(batch_rev, std::mem::take(&mut batch)))
                            .await?;
                    }
                    batch.extend(selected);
                    batch_rev = rev;
                }
            }
            if !batch.is_empty() {
                self.send(self.events_response(batch_rev, batch)).await?;
            }
            self.next.store(upto + 1, Ordering::Release);
            from = upto + 1;
        }
        Ok(())
    }

    fn events_response(&self, revision: i64, events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header: Some(self.ctx.header(revision)),
            watch_id: self.id,
            events,
            ..Default::default()
        }
    }

    async fn follow(&self, rx: &mut broadcast::Receiver<Arc<crate::node::RevisionEvents>>) -> Stop {
        let mut progress = self.progress.map(|p| {
            let mut i = tokio::time::interval(p);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        if let Some(p) = progress.as_mut() {
            p.tick().await;
        }
        let mut idle = true;
        loop {
            let tick = async {
                match progress.as_mut() {
                    Some(p) => {
                        p.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => {
                        let next = self.next.load(Ordering::Acquire);
                        if ev.revision < next {
                            continue;
                        }
                        let selected = self.filter.select(&ev.events);
                        if !selected.is_empty() {
                            idle = false;
                            if self.send(self.events_response(ev.revision, selected)).await.is_err() {
                                return Stop::Gone;
                            }
                        }
                        self.next.store(ev.revision + 1, Ordering::Release);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return Stop::Lagged,
                    Err(broadcast::error::RecvError::Closed) => return Stop::Gone,
                },
                _ = tick => {
                    if idle {
                        let rev = self.next.load(Ordering::Acquire) - 1;
                        let resp = WatchResponse {
                            header: Some(self.ctx.header(rev)),
                            watch_id: self.id,
                            ..Default::default()
                        };
                        if self.send(resp).await.is_err() {
                            return Stop::Gone;
                        }
                    }
                    idle = true;
                }
                _ = self.tx.closed() => return Stop::Gone,
            }
        }
    }
}
