//! Peer gRPC between members: Raft messages out (one queue and sender task per peer) and
//! in (handed to the Raft thread), plus the few calls that go to the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use skiff_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use skiff_proto::peer::peer_client::PeerClient;
use skiff_proto::peer::peer_server::Peer;
use skiff_proto::peer::{MembersRequest, MembersResponse, RaftBatch, SendAck};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::node::{Command, NodeHandle, Outbox, Shared};

/// Largest peer message: snapshots travel whole.
pub const MAX_PEER_MESSAGE: usize = 1024 * 1024 * 1024;
const QUEUE: usize = 4096;

/// Sends Raft messages to the other members.
pub struct Transport {
    shared: Arc<Shared>,
    node: OnceLock<NodeHandle>,
    runtime: tokio::runtime::Handle,
    queues: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    /// Peer URLs learnt before the state machine knows the members (when joining).
    hints: Mutex<HashMap<u64, Vec<String>>>,
    channels: Mutex<HashMap<u64, Channel>>,
}

impl Transport {
    /// A transport for this member; [`Transport::attach`] must follow once the node exists.
    pub fn new(shared: Arc<Shared>, runtime: tokio::runtime::Handle) -> Arc<Transport> {
        Arc::new(Transport {
            shared,
            node: OnceLock::new(),
            runtime,
            queues: Mutex::new(HashMap::new()),
            hints: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// Connects the transport to the Raft node it reports delivery failures to.
    pub fn attach(&self, node: NodeHandle) {
        let _ = self.node.set(node);
    }

    /// Remembers peer URLs for members the state machine does not list yet.
    pub fn add_hint(&self, id: u64, urls: Vec<String>) {
        self.hints.lock().expect("hints lock").insert(id, urls);
    }

    /// The peer URLs of a member.
    pub fn peer_urls(&self, id: u64) -> Option<Vec<String>> {
        if let Some(m) = self
            .shared
            .state
            .read()
            .expect("state lock")
            .members()
            .get(&id)
        {
            return Some(m.peer_ur_ls.clone());
        }
        self.hints.lock().expect("hints lock").get(&id).cloned()
    }

    /// A gRPC channel to a member's peer port (cached; reconnects by itself).
    pub fn channel(&self, id: u64) -> Result<Channel> {
        if let Some(c) = self.channels.lock().expect("channels lock").get(&id) {
            return Ok(c.clone());
        }
        let urls = self.peer_urls(id).ok_or(Error::MemberNotFound)?;
        let url = urls.first().ok_or(Error::MemberNotFound)?;
        let channel = endpoint(url)?.connect_lazy();
        self.channels
            .lock()
            .expect("channels lock")
            .insert(id, channel.clone());
        Ok(channel)
    }

    /// Forgets a removed member's connection and queue.
    pub fn forget(&self, id: u64) {
        self.channels.lock().expect("channels lock").remove(&id);
        self.queues.lock().expect("queues lock").remove(&id);
    }

    fn queue(self: &Arc<Self>, id: u64) -> Option<mpsc::Sender<Message>> {
        let mut queues = self.queues.lock().expect("queues lock");
        if let Some(q) = queues.get(&id) {
            if !q.is_closed() {
                return Some(q.clone());
            }
        }
        // Called from the Raft thread: tonic needs the runtime to set up a channel.
        let _runtime = self.runtime.enter();
        let channel = match self.channel(id) {
            Ok(c) => c,
            Err(e) => {
                debug!(peer = format!("{id:x}"), error = %e, "no address for peer");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        queues.insert(id, tx.clone());
        let this = self.clone();
        self.runtime
            .spawn(async move { this.peer_loop(id, channel, rx).await });
        Some(tx)
    }

    async fn peer_loop(
        self: Arc<Self>,
        id: u64,
        channel: Channel,
        mut rx: mpsc::Receiver<Message>,
    ) {
        let client = PeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        let mut link = PeerLink::new(client);
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 512 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let (snapshots, messages): (Vec<Message>, Vec<Message>) = batch
                .into_iter()
                .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            let Some(node) = self.node.get() else {
                continue;
            };
            let mut failure = None;
            if !messages.is_empty() {
                if let Err(status) = link.stream(self.raft_batch(&messages)).await {
                    failure = Some(status);
                }
            }
            for snapshot in snapshots {
                let mut request = Request::new(self.raft_batch(std::slice::from_ref(&snapshot)));
                request.set_timeout(Duration::from_secs(60));
                let delivered = link.client.send(request).await;
                let _ = node.send(Command::SnapshotStatus(id, delivered.is_ok()));
                if let Err(status) = delivered {
                    failure = Some(status);
                }
            }
            if let Some(status) = failure {
                let _ = node.send(Command::Unreachable(id));
                // Whatever queued up behind a failure is stale; Raft resends.
                while rx.try_recv().is_ok() {}
                if link
                    .last_warning
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
                {
                    warn!(peer = format!("{id:x}"), error = %status.message(), "cannot reach peer");
                    link.last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn raft_batch(&self, messages: &[Message]) -> RaftBatch {
        let mut encoded = Vec::with_capacity(messages.len());
        for m in messages {
            match m.write_to_bytes() {
                Ok(b) => encoded.push(b),
                Err(e) => warn!(error = %e, "cannot encode a raft message"),
            }
        }
        RaftBatch {
            cluster_id: self.shared.cluster_id,
            from: self.shared.id,
            messages: encoded,
        }
    }
}

/// Batches in flight on one peer stream before a sender waits.
const STREAM_WINDOW: usize = 64;
/// How long a stream may refuse batches (the peer stopped reading) before it is replaced.
const STREAM_STALL: Duration = Duration::from_secs(2);

/// The sending side of one peer: a long-lived `Stream` call, reopened when it fails.
struct PeerLink {
    client: PeerClient<Channel>,
    open: Option<OpenStream>,
    last_warning: Option<Instant>,
}

struct OpenStream {
    batches: mpsc::Sender<RaftBatch>,
    call: tokio::task::JoinHandle<std::result::Result<Response<SendAck>, Status>>,
}

impl PeerLink {
    fn new(client: PeerClient<Channel>) -> PeerLink {
        PeerLink {
            client,
            open: None,
            last_warning: None,
        }
    }

    /// Queues a batch on the stream, opening one if needed; an error says the peer is
    /// unreachable (the batch, and any sent just before the failure, are lost: Raft resends).
    async fn stream(&mut self, batch: RaftBatch) -> std::result::Result<(), Status> {
        let open = match self.open.take() {
            Some(open) if !open.call.is_finished() => open,
            Some(open) => return Err(Self::ended(open).await),
            None => {
                let (batches, rx) = mpsc::channel(STREAM_WINDOW);
                let mut client = self.client.clone();
                let call = tokio::spawn(async move {
                    client
                        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                        .await
                });
                OpenStream { batches, call }
            }
        };
        match tokio::time::timeout(STREAM_STALL, open.batches.send(batch)).await {
            Ok(Ok(())) => {
                self.open = Some(open);
                Ok(())
            }
            Ok(Err(_closed)) => Err(Self::ended(open).await),
            Err(_stalled) => {
                open.call.abort();
                Err(Status::deadline_exceeded(
                    "the peer has not read Raft messages for 2s",
                ))
            }
        }
    }

    /// Why a stream ended.
    async fn ended(open: OpenStream) -> Status {
        drop(open.batches);
        match open.call.await {
            Ok(Err(status)) => status,
            Ok(Ok(_)) => Status::unavailable("the peer closed the Raft stream"),
            Err(e) => Status::internal(format!("the Raft stream task failed: {e}")),
        }
    }
}

impl Outbox for Arc<Transport> {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            if let Some(q) = self.queue(to) {
                // A full queue means the peer is slow or gone; Raft retransmits.
                let _ = q.try_send(m);
            }
        }
    }
}

/// A gRPC endpoint for a peer or client URL.
pub fn endpoint(url: &str) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::Config(format!("bad peer URL {url}: {e}")))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// Asks the members at `urls` for the cluster's members (used when joining).
pub async fn fetch_members(urls: &[String]) -> Result<MembersResponse> {
    let mut last = None;
    for url in urls {
        let attempt = async {
            let channel = endpoint(url)?.connect().await.map_err(|e| Error::Peer {
                peer: url.clone(),
                message: e.to_string(),
            })?;
            PeerClient::new(channel)
                .members(MembersRequest {})
                .await
                .map(Response::into_inner)
                .map_err(|s| Error::Peer {
                    peer: url.clone(),
                    message: s.message().to_string(),
                })
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(Error::Peer {
                    peer: url.clone(),
                    message: "timed out".into(),
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Config("--initial-cluster names no other member".into())))
}

/// The peer service members call on each other.
pub struct PeerService {
    /// The Raft node.
    pub node: NodeHandle,
    /// Lease calls the leader serves.
    pub leases: Arc<crate::server::LeaseOps>,
}

impl PeerService {
    /// Hands a batch's messages to the Raft thread, if it comes from this cluster.
    fn step(&self, batch: RaftBatch) -> Result<(), Status> {
        let cluster_id = self.node.shared.cluster_id;
        if batch.cluster_id != cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: member {:x} belongs to cluster {:x}, the sender {:x} to {:x}; \
                 check --initial-cluster and --initial-cluster-token, or the sender's data directory",
                self.node.shared.id, cluster_id, batch.from, batch.cluster_id
            )));
        }
        for bytes in batch.messages {
            let m = Message::parse_from_bytes(&bytes)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            self.node.send(Command::Step(m)).map_err(Status::from)?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, request: Request<RaftBatch>) -> Result<Response<SendAck>, Status> {
        self.step(request.into_inner())?;
        Ok(Response::new(SendAck {}))
    }

    async fn stream(
        &self,
        request: Request<tonic::Streaming<RaftBatch>>,
    ) -> Result<Response<SendAck>, Status> {
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            self.step(batch)?;
        }
        Ok(Response::new(SendAck {}))
    }

    async fn members(
        &self,
        _request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let state = self.node.shared.state.read().expect("state lock");
        Ok(Response::new(MembersResponse {
            cluster_id: self.node.shared.cluster_id,
            members: state.members().values().cloned().collect(),
        }))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl = self.leases.renew_local(id)?;
        Ok(Response::new(LeaseKeepAliveResponse {
            header: None,
            id,
            ttl,
        }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.leases.time_to_live_local(&r)?))
    }
}
