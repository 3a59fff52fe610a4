//! The Raft node: one thread that owns raft-rs's `RawNode` (its `Storage` trait is
//! synchronous) and everything that must happen in Raft's order.
//!
//! Each turn of the loop: take commands (proposals, peer messages, read requests), tick
//! on time, then handle `Ready` in the fixed order — send what may go out at once, apply
//! a received snapshot, apply committed entries, persist new entries and the HardState
//! and **flush** (fsync), only then send the messages that depend on them, advance.
//! A caller's reply is sent when its entry is applied, found by request ID (not by
//! order), so a reply always means "committed and applied".

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message};
use raft::{RawNode, SnapshotStatus, StateRole};
use skiff_proto::etcdserverpb::Member;
use skiff_proto::mvccpb::Event;
use skiff_proto::peer::{log_request, ConfChangeContext, LogRequest};
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::lease::LeaseClock;
use crate::metrics::Metrics;
use crate::raftlog::{Identity, RaftLog};
use crate::state::{Applied, ApplyResult, StateMachine};
use crate::watchdog::{StorageOp, StorageWatch};

/// The events of one revision, as published to watchers.
#[derive(Debug)]
pub struct RevisionEvents {
    /// The revision.
    pub revision: i64,
    /// Its events, `prev_kv` filled.
    pub events: Vec<Event>,
}

/// What the rest of the member sees of Raft, updated by the Raft thread.
#[derive(Debug, Default)]
pub struct RaftStatus {
    /// The leader's ID (0: none known).
    pub leader: AtomicU64,
    /// The current term.
    pub term: AtomicU64,
    /// The index of the last log entry.
    pub last_index: AtomicU64,
    /// The commit index.
    pub commit: AtomicU64,
    /// Whether the member stopped (removed, or a fatal error).
    pub stopped: AtomicBool,
}

/// State shared between the Raft thread and the servers.
pub struct Shared {
    /// This member's ID.
    pub id: u64,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The state machine.
    pub state: Arc<RwLock<StateMachine>>,
    /// Published under the state's write lock, so a watcher that subscribes under the
    /// read lock misses nothing.
    pub events: broadcast::Sender<Arc<RevisionEvents>>,
    /// The applied index, for reads waiting on a ReadIndex.
    pub applied: watch::Sender<u64>,
    /// Raft's status.
    pub raft: RaftStatus,
    /// Lease deadlines (meaningful on the leader only).
    pub lease_clock: Mutex<LeaseClock>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The write to the data directory under way, for the watchdog.
    pub storage: StorageWatch,
    /// Why the member stopped, if it did on its own.
    pub fatal: Mutex<Option<String>>,
    /// Woken when the member must stop on its own (fatal error, removed).
    pub stop: tokio::sync::Notify,
}

impl Shared {
    /// The leader's ID, if one is known.
    pub fn leader(&self) -> Option<u64> {
        match self.raft.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    /// Waits until the state machine has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<()> {
        let mut rx = self.applied.subscribe();
        rx.wait_for(|a| *a >= index)
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(())
    }

    /// Stops the member on its own, recording why.
    pub fn stop_with(&self, why: String) {
        *self.fatal.lock().expect("fatal lock") = Some(why);
        self.raft.stopped.store(true, Ordering::Release);
        self.stop.notify_waiters();
        self.stop.notify_one();
    }
}

/// A request to the Raft thread.
pub enum Command {
    /// Propose a log record; reply when applied.
    Propose(LogRequest, oneshot::Sender<ApplyResult>),
    /// Propose a membership change (its context holds the request ID); reply when applied.
    ConfChange(ConfChange, u64, oneshot::Sender<ApplyResult>),
    /// Get a ReadIndex: reply with the index to wait for before reading.
    ReadIndex(oneshot::Sender<Result<u64>>),
    /// A message from a peer.
    Step(Message),
    /// A peer could not be reached.
    Unreachable(u64),
    /// How sending a snapshot to a peer went.
    SnapshotStatus(u64, bool),
    /// Hand leadership to another member.
    TransferLeader(u64),
    /// Stop the thread.
    Shutdown,
}

/// The handle servers use to talk to the Raft thread.
#[derive(Clone)]
pub struct NodeHandle {
    tx: Sender<Command>,
    next_id: Arc<AtomicU64>,
    /// Shared state.
    pub shared: Arc<Shared>,
}

impl NodeHandle {
    /// A request ID no other member uses: the member ID's low bits on top, a counter
    /// that starts from the clock below, so a restart does not reuse recent IDs.
    pub fn request_id(&self) -> u64 {
        (self.shared.id << 44) ^ self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a command to the Raft thread.
    pub fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).map_err(|_| Error::Stopped)
    }

    /// Proposes a record and waits until it is applied (or `timeout`).
    ///
    /// Without a known leader Raft drops a proposal before it is in any log, so it is
    /// safe to ask again: a request arriving during an election waits for its outcome
    /// (as in etcd) instead of failing at once.
    pub async fn propose(
        &self,
        request: log_request::Request,
        timeout: Duration,
    ) -> Result<Applied> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let req = LogRequest {
                id: self.request_id(),
                request: Some(request.clone()),
                origin: self.shared.id,
            };
            let (tx, rx) = oneshot::channel();
            self.send(Command::Propose(req, tx))?;
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Err(Error::NoLeader))) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) if self.shared.leader().is_none() => return Err(Error::NoLeader),
                Err(_) => return Err(Error::Timeout),
            }
        }
    }

    /// Proposes a membership change (adding `member`, or removing `node_id`) and waits
    /// until it is applied.
    pub async fn conf_change(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: Option<Member>,
        timeout: Duration,
    ) -> Result<Vec<Member>> {
        let id = self.request_id();
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = node_id;
        cc.context = ConfChangeContext {
            request_id: id,
            member,
        }
        .encode_to_vec()
        .into();
        let (tx, rx) = oneshot::channel();
        self.send(Command::ConfChange(cc, id, tx))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(Applied::Members(m)))) => Ok(m),
            Ok(Ok(Ok(_))) => Err(Error::InvalidArgument(
                "unexpected conf change result".into(),
            )),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Waits until a linearizable read may be served: the leader confirmed its
    /// leadership and this member applied everything committed before the read began.
    pub async fn read_barrier(&self, timeout: Duration) -> Result<()> {
        let fut = async {
            let (tx, rx) = oneshot::channel();
            self.send(Command::ReadIndex(tx))?;
            let index = rx.await.map_err(|_| Error::Stopped)??;
            self.shared.wait_applied(index).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) if self.shared.leader().is_none() => Err(Error::NoLeader),
            Err(_) => Err(Error::Timeout),
        }
    }
}

/// Sends Raft messages to peers (implemented by the transport).
pub trait Outbox: Send + 'static {
    /// Queues messages for their destinations; never blocks.
    fn send(&self, msgs: Vec<Message>);
}

/// Node settings derived from the configuration.
pub struct NodeOptions {
    /// Tick length (the heartbeat interval).
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: usize,
    /// Applied entries between log compactions.
    pub snapshot_count: u64,
}

/// Creates a member's data directory holding `entries` (a restored key space, or
/// nothing) for a new cluster of `members`, and returns it open.
///
/// The caller keeps using the returned database rather than opening the directory again:
/// sled's background threads can hold the first handle's file lock for a moment after it
/// is dropped, and a second open in that moment fails with "could not acquire lock".
pub fn create_data_dir(
    dir: &Path,
    me: &Member,
    cluster_id: u64,
    members: &[Member],
    entries: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<sled::Db> {
    let db = open_db(dir)?;
    let state_tree = db.open_tree("state")?;
    let raft_tree = db.open_tree("raft")?;
    let mut batch = sled::Batch::default();
    for (k, v) in entries {
        batch.insert(k, v);
    }
    state_tree.apply_batch(batch)?;
    let mut sm = StateMachine::open(state_tree, u64::MAX)?;
    sm.bootstrap(cluster_id, members)?;
    let state = Arc::new(RwLock::new(sm));
    let log = RaftLog::open(raft_tree, state)?;
    log.bootstrap(1, 1)?;
    // The identity goes last: a directory without it is a half-made one.
    log.set_identity(&Identity {
        member_id: me.id,
        cluster_id,
        name: me.name.clone(),
    })?;
    db.flush()?;
    Ok(db)
}

/// Opens the sled database in a data directory, with a message that says what to do.
pub fn open_db(dir: &Path) -> Result<sled::Db> {
    std::fs::create_dir_all(dir).map_err(|e| Error::DataDir {
        dir: dir.display().to_string(),
        reason: format!("cannot create it: {e}"),
    })?;
    sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(64 * 1024 * 1024)
        .flush_every_ms(None)
        .open()
        .map_err(|e| Error::DataDir {
            dir: dir.display().to_string(),
            reason: format!(
                "cannot open the database ({e}); is another member using this directory? \
                 If it is damaged, restore the member from a snapshot or remove and re-add it"
            ),
        })
}

/// A linearizable read waiting for its ReadIndex.
type ReadWaiter = oneshot::Sender<Result<u64>>;

/// The Raft thread's state.
pub struct Node {
    raw: RawNode<RaftLog>,
    db: sled::Db,
    rx: Receiver<Command>,
    shared: Arc<Shared>,
    outbox: Box<dyn Outbox>,
    opts: NodeOptions,
    proposals: HashMap<u64, oneshot::Sender<ApplyResult>>,
    pending_reads: Vec<ReadWaiter>,
    inflight_reads: HashMap<u64, (Vec<ReadWaiter>, Instant)>,
    next_read_ctx: u64,
    was_leader: bool,
}

/// Sets up the Raft node (not started yet) over an opened data directory.
pub fn build(
    db: sled::Db,
    log: RaftLog,
    shared: Arc<Shared>,
    outbox: Box<dyn Outbox>,
    opts: NodeOptions,
) -> Result<(Node, NodeHandle)> {
    let (applied, applied_term) = shared.state.read().expect("state lock").applied();
    log.reconcile_applied(applied, applied_term)?;
    let cfg = raft::Config {
        id: shared.id,
        election_tick: opts.election_ticks,
        // Randomized timeouts in [1, 1.5) × election timeout rather than raft-rs's
        // [1, 2): a lost leader is replaced within ~1.5 election timeouts.
        min_election_tick: opts.election_ticks,
        max_election_tick: opts.election_ticks + opts.election_ticks / 2,
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        read_only_option: raft::ReadOnlyOption::Safe,
        ..Default::default()
    };
    cfg.validate()?;
    let logger = crate::raftlogger::logger(shared.id);
    let raw = RawNode::new(&cfg, log, &logger)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let handle = NodeHandle {
        tx,
        next_id: Arc::new(AtomicU64::new(start & ((1 << 44) - 1))),
        shared: shared.clone(),
    };
    let node = Node {
        raw,
        db,
        rx,
        shared,
        outbox,
        opts,
        proposals: HashMap::new(),
        pending_reads: Vec::new(),
        inflight_reads: HashMap::new(),
        next_read_ctx: 1,
        was_leader: false,
    };
    Ok((node, handle))
}

impl Node {
    /// Runs the loop until shutdown, removal or a fatal storage error.
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + self.opts.tick;
        let mut last_gc = Instant::now();
        let mut storage_failed = false;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Command::Shutdown) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let mut shutdown = false;
            for _ in 0..4096 {
                match self.rx.try_recv() {
                    Ok(Command::Shutdown) => {
                        shutdown = true;
                        break;
                    }
                    Ok(cmd) => self.handle(cmd),
                    Err(_) => break,
                }
            }
            if shutdown {
                break;
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick += self.opts.tick;
                if next_tick < now {
                    next_tick = now + self.opts.tick;
                }
                self.retry_reads(now);
            }
            if now.duration_since(last_gc) > Duration::from_secs(1) {
                // Callers that gave up (timed out) leave closed senders behind.
                self.proposals.retain(|_, tx| !tx.is_closed());
                last_gc = now;
            }
            self.issue_reads();
            if self.raw.has_ready() {
                if let Err(e) = self.on_ready() {
                    let why = format!(
                        "cannot persist or apply the Raft log: {e}; the member stops so that \
                         nothing is acknowledged that is not on disk (free disk space or fix \
                         the data directory, then restart it)"
                    );
                    error!(error = %e, "fatal storage error");
                    self.shared.stop_with(why);
                    storage_failed = true;
                    break;
                }
            }
            if self.shared.raft.stopped.load(Ordering::Acquire) {
                break;
            }
        }
        // After a failed write sled's log may never become stable again, and a flush
        // would wait for it forever; the Raft log was flushed before anything was
        // acknowledged, so there is nothing to save.
        if !storage_failed {
            let _op = self.shared.storage.begin(StorageOp::Close);
            if let Err(e) = self.db.flush() {
                warn!(error = %e, "final flush failed");
            }
        }
        for (_, tx) in self.proposals.drain() {
            let _ = tx.send(Err(Error::Stopped));
        }
        info!("raft loop stopped");
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Propose(req, reply) => {
                let proposed = self.raw.propose(Vec::new(), req.encode_to_vec());
                self.track(req.id, reply, proposed);
            }
            Command::ConfChange(cc, id, reply) => {
                if self.raw.raft.has_pending_conf() {
                    let _ = reply.send(Err(Error::ConfChangeInProgress));
                    return;
                }
                let proposed = self.raw.propose_conf_change(Vec::new(), cc);
                self.track(id, reply, proposed);
            }
            Command::ReadIndex(reply) => self.pending_reads.push(reply),
            Command::Step(m) => {
                if let Err(e) = self.raw.step(m) {
                    // Messages from removed or unknown members are expected; not fatal.
                    tracing::debug!(error = %e, "raft step");
                }
            }
            Command::Unreachable(id) => self.raw.report_unreachable(id),
            Command::SnapshotStatus(id, ok) => self.raw.report_snapshot(
                id,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
            Command::TransferLeader(to) => self.raw.transfer_leader(to),
            Command::Shutdown => {}
        }
    }

    /// Remembers who waits for a proposal, or tells them at once why it was not made.
    fn track(&mut self, id: u64, reply: oneshot::Sender<ApplyResult>, proposed: raft::Result<()>) {
        match proposed {
            Ok(()) => {
                self.proposals.insert(id, reply);
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(Error::NoLeader));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Asks Raft for one ReadIndex covering every read that arrived since the last one.
    fn issue_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let waiting = std::mem::take(&mut self.pending_reads);
        self.inflight_reads.insert(ctx, (waiting, Instant::now()));
        // The leader keys pending reads by their context and ignores one whose context is
        // already pending: a follower's counter alone would collide with the leader's own
        // (or another follower's), and such a read would wait for the retry. The member ID
        // makes every context unique in the cluster.
        let mut context = self.shared.id.to_be_bytes().to_vec();
        context.extend_from_slice(&ctx.to_be_bytes());
        self.raw.read_index(context);
    }

    /// raft-rs drops a ReadIndex silently when there is no leader or the leader has not
    /// committed in its term yet; such reads are asked again.
    fn retry_reads(&mut self, now: Instant) {
        let patience = self.opts.tick * 3;
        let stale: Vec<u64> = self
            .inflight_reads
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) > patience)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stale {
            if let Some((mut waiting, _)) = self.inflight_reads.remove(&ctx) {
                waiting.retain(|tx| !tx.is_closed());
                self.pending_reads.extend(waiting);
            }
        }
    }

    fn update_status(&mut self) {
        let raft = &self.raw.raft;
        let s = &self.shared.raft;
        s.leader.store(raft.leader_id, Ordering::Release);
        s.term.store(raft.term, Ordering::Release);
        s.commit.store(raft.raft_log.committed, Ordering::Release);
        s.last_index
            .store(raft.raft_log.last_index(), Ordering::Release);
        let leader = raft.state == StateRole::Leader;
        if leader != self.was_leader {
            self.was_leader = leader;
            // Lock order everywhere: the state before the lease clock.
            let state = self.shared.state.read().expect("state lock");
            let mut clock = self.shared.lease_clock.lock().expect("lease clock lock");
            if leader {
                info!(term = raft.term, "became leader");
                self.shared
                    .metrics
                    .leader_changes
                    .fetch_add(1, Ordering::Relaxed);
                clock.promote(Instant::now(), state.lessor().leases());
            } else {
                clock.demote();
            }
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.outbox.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            let meta = snap.get_metadata();
            let entries = crate::snapshot::decode_entries(&snap.data)?;
            info!(
                index = meta.index,
                term = meta.term,
                "installing snapshot from leader"
            );
            let _op = self.shared.storage.begin(StorageOp::InstallSnapshot);
            {
                let mut state = self.shared.state.write().expect("state lock");
                state.install(entries, meta.index, meta.term, meta.get_conf_state())?;
            }
            self.raw.store().apply_snapshot(meta.index, meta.term)?;
            self.shared.applied.send_replace(meta.index);
        }
        for rs in ready.take_read_states() {
            let Some(ctx) = read_context(self.shared.id, &rs.request_ctx) else {
                continue;
            };
            if let Some((waiting, _)) = self.inflight_reads.remove(&ctx) {
                for tx in waiting {
                    let _ = tx.send(Ok(rs.index));
                }
            }
        }
        let committed = ready.take_committed_entries();
        self.apply(committed)?;
        // Only what Raft must not lose needs an fsync before the messages that depend
        // on it; a heartbeat answer with nothing new to store does not.
        let mut dirty = !ready.snapshot().is_empty();
        if !ready.entries().is_empty() {
            let _op = self.shared.storage.begin(StorageOp::Append);
            self.raw.store().append(ready.entries())?;
            dirty = true;
        }
        if let Some(hs) = ready.hs() {
            let _op = self.shared.storage.begin(StorageOp::HardState);
            self.raw.store().set_hard_state(hs)?;
            dirty = true;
        }
        if dirty {
            let t = Instant::now();
            let _op = self.shared.storage.begin(StorageOp::Flush);
            self.db.flush()?;
            tracing::debug!(
                entries = ready.entries().len(),
                flush_us = t.elapsed().as_micros() as u64,
                waiting = self.proposals.len(),
                "persisted"
            );
        }
        if !ready.persisted_messages().is_empty() {
            self.outbox.send(ready.take_persisted_messages());
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let _op = self.shared.storage.begin(StorageOp::HardState);
            self.raw.store().set_commit(commit)?;
        }
        if !light.messages().is_empty() {
            self.outbox.send(light.take_messages());
        }
        let committed = light.take_committed_entries();
        self.apply(committed)?;
        self.raw.advance_apply();
        self.update_status();
        self.maybe_compact()?;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut last = 0;
        let mut replies = Vec::new();
        {
            let _op = self.shared.storage.begin(StorageOp::Apply);
            let mut state = self.shared.state.write().expect("state lock");
            for entry in entries {
                last = entry.index;
                match entry.get_entry_type() {
                    EntryType::EntryNormal => {
                        let req = if entry.data.is_empty() {
                            None
                        } else {
                            Some(LogRequest::decode(entry.data.as_ref()).map_err(|e| {
                                Error::Corrupt(format!("log entry {}: {e}", entry.index))
                            })?)
                        };
                        let id = req.as_ref().map_or(0, |r| r.id);
                        let grant = match req.as_ref().and_then(|r| r.request.as_ref()) {
                            Some(log_request::Request::LeaseGrant(g)) => Some((g.id, g.ttl)),
                            _ => None,
                        };
                        let revoke = match req.as_ref().and_then(|r| r.request.as_ref()) {
                            Some(log_request::Request::LeaseRevoke(r)) => Some(r.id),
                            _ => None,
                        };
                        let (result, events) = state.apply(entry.index, entry.term, req)?;
                        self.shared.metrics.applied.fetch_add(1, Ordering::Relaxed);
                        if result.is_ok() {
                            self.track_lease(grant, revoke);
                        }
                        if !events.is_empty() {
                            let _ = self.shared.events.send(Arc::new(RevisionEvents {
                                revision: state.mvcc().current_revision(),
                                events,
                            }));
                        }
                        if let Some(tx) = self.proposals.remove(&id) {
                            replies.push((tx, result));
                        }
                    }
                    EntryType::EntryConfChange => {
                        let cc = ConfChange::parse_from_bytes(&entry.data).map_err(|e| {
                            Error::Corrupt(format!("conf change entry {}: {e}", entry.index))
                        })?;
                        let ctx =
                            ConfChangeContext::decode(cc.context.as_ref()).unwrap_or_default();
                        let cs = self.raw.apply_conf_change(&cc)?;
                        let (added, removed) = match cc.get_change_type() {
                            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                                (ctx.member.clone(), None)
                            }
                            ConfChangeType::RemoveNode => (None, Some(cc.node_id)),
                        };
                        let members =
                            state.apply_conf_change(entry.index, entry.term, added, removed, cs)?;
                        info!(change = ?cc.get_change_type(), node = cc.node_id, "membership changed");
                        if let Some(tx) = self.proposals.remove(&ctx.request_id) {
                            replies.push((tx, Ok(Applied::Members(members))));
                        }
                        if removed == Some(self.shared.id) {
                            self.shared.stop_with(
                                "this member has been removed from the cluster; its data \
                                 directory can be deleted (re-add it with a new, empty one)"
                                    .into(),
                            );
                        }
                    }
                    EntryType::EntryConfChangeV2 => {
                        warn!(
                            index = entry.index,
                            "ignoring a joint-consensus conf change (not used by skiff)"
                        );
                        let _ = state.apply(entry.index, entry.term, None)?;
                    }
                }
            }
            // Before the lock is released: readers must find what was applied.
            state.commit_applied()?;
        }
        self.shared.applied.send_replace(last);
        for (tx, result) in replies {
            let _ = tx.send(result);
        }
        Ok(())
    }

    fn track_lease(&self, grant: Option<(i64, i64)>, revoke: Option<i64>) {
        if grant.is_none() && revoke.is_none() {
            return;
        }
        let mut clock = self.shared.lease_clock.lock().expect("lease clock lock");
        if let Some((id, ttl)) = grant {
            if self.raw.raft.state == StateRole::Leader {
                clock.renew(id, ttl, Instant::now());
            }
        }
        if let Some(id) = revoke {
            clock.forget(id);
        }
    }

    /// Drops log entries the state machine holds, keeping some for slow followers.
    fn maybe_compact(&mut self) -> Result<()> {
        let applied = self.raw.raft.raft_log.applied;
        let first = self.raw.store().first();
        if applied < first + self.opts.snapshot_count {
            return Ok(());
        }
        let keep = (self.opts.snapshot_count / 2).min(5000);
        let to = applied.saturating_sub(keep);
        if to >= first {
            let _op = self.shared.storage.begin(StorageOp::Compact);
            self.raw.store().compact(to)?;
            info!(to, "compacted the raft log");
        }
        Ok(())
    }
}

/// This member's read counter in a ReadIndex context (member ID, then counter); `None`
/// for a context another member issued.
fn read_context(member: u64, context: &[u8]) -> Option<u64> {
    let (id, counter) = context.split_at_checked(8)?;
    if id != member.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(counter.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::read_context;

    #[test]
    fn read_contexts_belong_to_the_member_that_issued_them() {
        let mut context = 7u64.to_be_bytes().to_vec();
        context.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(read_context(7, &context), Some(42));
        assert_eq!(read_context(8, &context), None);
        assert_eq!(read_context(7, &context[..12]), None);
        assert_eq!(read_context(7, &[]), None);
    }
}
