//! etcd's gRPC services (KV, Lease, Cluster, Maintenance; Watch is in `watch`) over the
//! Raft node, plus `/metrics` and `/healthz` on the same client port.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use prost::Message as _;
use raft::eraftpb::ConfChangeType;
use skiff_proto::etcdserverpb::{
    alarm_request::AlarmAction, cluster_server::Cluster, kv_server::Kv, lease_server::Lease,
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest,
    CompactionResponse, DefragmentRequest, DefragmentResponse, DeleteRangeRequest,
    DeleteRangeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, Member, MemberAddRequest, MemberAddResponse,
    MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    MoveLeaderRequest, MoveLeaderResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse, TxnRequest,
    TxnResponse,
};
use skiff_proto::peer::log_request::Request as LogReq;
use skiff_proto::peer::peer_client::PeerClient;
use skiff_proto::peer::MemberAttributes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::{member_id, parse_urls, StoreConfig};
use crate::error::{Error, Result};
use crate::lease::{effective_ttl, min_ttl, MAX_LEASE_TTL};
use crate::mvcc::{txn_is_read_only, validate_txn};
use crate::node::{Command, NodeHandle, Shared};
use crate::state::Applied;
use crate::transport::{Transport, MAX_PEER_MESSAGE};

/// The version `Status` reports: the etcd API level skiff speaks, marked as skiff's.
pub const VERSION: &str = "3.4.0-skiff";
/// etcd's limit on operations in one Txn (`--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// What every service needs.
#[derive(Clone)]
pub struct Ctx {
    /// The Raft node.
    pub node: NodeHandle,
    /// The member's configuration.
    pub config: Arc<StoreConfig>,
    /// Peer connections (for calls that go to the leader).
    pub transport: Arc<Transport>,
    /// The database, for its size on disk.
    pub db: sled::Db,
}

impl Ctx {
    fn shared(&self) -> &Shared {
        &self.node.shared
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + self.config.election_timeout * 2
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.shared().cluster_id,
            member_id: self.shared().id,
            revision,
            raft_term: self.shared().raft.term.load(Ordering::Acquire),
        }
    }

    fn current_revision(&self) -> i64 {
        self.shared()
            .state
            .read()
            .expect("state lock")
            .mvcc()
            .current_revision()
    }

    fn fill(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = header.map_or_else(|| self.current_revision(), |h| h.revision);
        Some(self.header(revision))
    }

    fn check_size(&self, len: usize) -> Result<()> {
        if len > self.config.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        Ok(())
    }

    async fn propose(&self, req: LogReq) -> Result<Applied> {
        let result = self.node.propose(req, self.request_timeout()).await;
        if result.is_err() {
            self.shared()
                .metrics
                .proposals_failed
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn linearize(&self) -> Result<()> {
        self.node.read_barrier(self.request_timeout()).await
    }
}

type GrpcResult<T> = std::result::Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

fn unexpected(what: &str) -> Status {
    Status::internal(format!("unexpected apply result for {what}"))
}

/// The KV service.
pub struct KvService(pub Ctx);

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> GrpcResult<RangeResponse> {
        let req = request.into_inner();
        if req.key.is_empty() {
            return Err(Error::EmptyKey.into());
        }
        if !req.serializable {
            self.0.linearize().await?;
        }
        self.0
            .shared()
            .metrics
            .ranges
            .fetch_add(1, Ordering::Relaxed);
        let state = self.0.shared().state.read().expect("state lock");
        let mut resp = state.range(&req)?;
        resp.header = Some(self.0.header(state.mvcc().current_revision()));
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> GrpcResult<PutResponse> {
        let req = request.into_inner();
        if req.key.is_empty() {
            return Err(Error::EmptyKey.into());
        }
        self.0.check_size(req.encoded_len())?;
        self.0
            .shared()
            .metrics
            .writes
            .fetch_add(1, Ordering::Relaxed);
        match self.0.propose(LogReq::Put(req)).await? {
            Applied::Put(mut r) => {
                r.header = self.0.fill(r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> GrpcResult<DeleteRangeResponse> {
        let req = request.into_inner();
        if req.key.is_empty() {
            return Err(Error::EmptyKey.into());
        }
        self.0.check_size(req.encoded_len())?;
        self.0
            .shared()
            .metrics
            .writes
            .fetch_add(1, Ordering::Relaxed);
        match self.0.propose(LogReq::DeleteRange(req)).await? {
            Applied::DeleteRange(mut r) => {
                r.header = self.0.fill(r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("delete")),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> GrpcResult<TxnResponse> {
        let req = request.into_inner();
        validate_txn(&req, MAX_TXN_OPS)?;
        self.0.check_size(req.encoded_len())?;
        if txn_is_read_only(&req) {
            if !txn_is_serializable(&req) {
                self.0.linearize().await?;
            }
            let state = self.0.shared().state.read().expect("state lock");
            let mut resp = state.read_txn(&req)?;
            resp.header = Some(self.0.header(state.mvcc().current_revision()));
            return Ok(Response::new(resp));
        }
        self.0
            .shared()
            .metrics
            .writes
            .fetch_add(1, Ordering::Relaxed);
        match self.0.propose(LogReq::Txn(req)).await? {
            Applied::Txn(mut r) => {
                r.header = self.0.fill(r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("txn")),
        }
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> GrpcResult<CompactionResponse> {
        let req = request.into_inner();
        match self.0.propose(LogReq::Compaction(req)).await? {
            Applied::Compacted => Ok(Response::new(CompactionResponse {
                header: self.0.fill(None),
            })),
            _ => Err(unexpected("compact")),
        }
    }
}

/// A read-only Txn whose ranges are all serializable needs no ReadIndex (as in etcd).
fn txn_is_serializable(req: &TxnRequest) -> bool {
    use skiff_proto::etcdserverpb::request_op::Request as Op;
    let ops = req.success.iter().chain(req.failure.iter());
    let mut any = false;
    for op in ops {
        match op.request.as_ref() {
            Some(Op::RequestRange(r)) => {
                if !r.serializable {
                    return false;
                }
                any = true;
            }
            Some(Op::RequestTxn(t)) => {
                if !txn_is_serializable(t) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    any
}

/// Lease operations decided by the leader, shared by the client and peer services.
pub struct LeaseOps {
    /// Context.
    pub ctx: Ctx,
}

impl LeaseOps {
    /// Renews a lease on this member, which must be the leader; returns the TTL, or 0
    /// for a lease that does not exist (etcd's answer).
    pub fn renew_local(&self, id: i64) -> Result<i64> {
        let shared = self.ctx.shared();
        if !shared.is_leader() {
            return Err(Error::NoLeader);
        }
        let ttl = {
            let state = shared.state.read().expect("state lock");
            state.lessor().get(id).map(|l| l.ttl)
        };
        let Some(ttl) = ttl else { return Ok(0) };
        shared
            .lease_clock
            .lock()
            .expect("lease clock lock")
            .renew(id, ttl, Instant::now());
        Ok(ttl)
    }

    /// A lease's remaining TTL as the leader sees it.
    pub fn time_to_live_local(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        let shared = self.ctx.shared();
        if !shared.is_leader() {
            return Err(Error::NoLeader);
        }
        let (lease, revision) = {
            let state = shared.state.read().expect("state lock");
            (
                state.lessor().get(r.id).cloned(),
                state.mvcc().current_revision(),
            )
        };
        let Some(lease) = lease else {
            return Ok(LeaseTimeToLiveResponse {
                header: Some(self.ctx.header(revision)),
                id: r.id,
                ttl: -1,
                ..Default::default()
            });
        };
        let remaining = shared
            .lease_clock
            .lock()
            .expect("lease clock lock")
            .remaining(r.id, Instant::now())
            .unwrap_or(lease.ttl);
        Ok(LeaseTimeToLiveResponse {
            header: Some(self.ctx.header(revision)),
            id: r.id,
            ttl: remaining,
            granted_ttl: lease.ttl,
            keys: if r.keys {
                lease.keys.into_iter().collect()
            } else {
                Vec::new()
            },
        })
    }

    async fn leader_client(&self) -> Result<PeerClient<tonic::transport::Channel>> {
        let deadline = Instant::now() + self.ctx.request_timeout();
        loop {
            if let Some(leader) = self.ctx.shared().leader() {
                let channel = self.ctx.transport.channel(leader)?;
                return Ok(PeerClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE));
            }
            if Instant::now() > deadline {
                return Err(Error::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Renews a lease wherever the leader is.
    pub async fn renew(&self, id: i64) -> Result<i64> {
        if self.ctx.shared().is_leader() {
            return self.renew_local(id);
        }
        let mut client = self.leader_client().await?;
        let resp = client
            .lease_keep_alive(LeaseKeepAliveRequest { id })
            .await
            .map_err(|s| Error::Peer {
                peer: "leader".into(),
                message: s.message().to_string(),
            })?;
        Ok(resp.into_inner().ttl)
    }

    /// A lease's remaining TTL, asked of the leader.
    pub async fn time_to_live(&self, r: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        if self.ctx.shared().is_leader() {
            return self.time_to_live_local(&r);
        }
        let mut client = self.leader_client().await?;
        let mut resp = client
            .lease_time_to_live(r)
            .await
            .map_err(|s| Error::Peer {
                peer: "leader".into(),
                message: s.message().to_string(),
            })?
            .into_inner();
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        resp.header = Some(self.ctx.header(revision));
        Ok(resp)
    }
}

/// The Lease service.
pub struct LeaseService(pub Arc<LeaseOps>);

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> GrpcResult<LeaseGrantResponse> {
        let mut req = request.into_inner();
        let ctx = &self.0.ctx;
        if req.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge.into());
        }
        req.ttl = effective_ttl(req.ttl, min_ttl(ctx.config.election_timeout));
        if req.id == 0 {
            // IDs are chosen here, before the log, so that every member applies the same.
            let state = ctx.shared().state.read().expect("state lock");
            loop {
                let id = (rand::random::<u64>() >> 1) as i64;
                if id != 0 && !state.lessor().contains(id) {
                    req.id = id;
                    break;
                }
            }
        }
        match ctx.propose(LogReq::LeaseGrant(req)).await? {
            Applied::LeaseGranted(mut r) => {
                r.header = ctx.fill(None);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("lease grant")),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> GrpcResult<LeaseRevokeResponse> {
        let ctx = &self.0.ctx;
        match ctx
            .propose(LogReq::LeaseRevoke(request.into_inner()))
            .await?
        {
            Applied::LeaseRevoked => Ok(Response::new(LeaseRevokeResponse {
                header: ctx.fill(None),
            })),
            _ => Err(unexpected("lease revoke")),
        }
    }

    type LeaseKeepAliveStream = BoxStream<LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> GrpcResult<Self::LeaseKeepAliveStream> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let ops = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = incoming.message().await {
                let reply = match ops.renew(req.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: ops.ctx.fill(None),
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> GrpcResult<LeaseTimeToLiveResponse> {
        Ok(Response::new(
            self.0.time_to_live(request.into_inner()).await?,
        ))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> GrpcResult<LeaseLeasesResponse> {
        let ctx = &self.0.ctx;
        ctx.linearize().await?;
        let state = ctx.shared().state.read().expect("state lock");
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(ctx.header(state.mvcc().current_revision())),
            leases: state
                .lessor()
                .leases()
                .map(|(id, _)| LeaseStatus { id })
                .collect(),
        }))
    }
}

/// The Cluster service.
pub struct ClusterService(pub Ctx);

impl ClusterService {
    fn members(&self) -> Vec<Member> {
        let state = self.0.shared().state.read().expect("state lock");
        state.members().values().cloned().collect()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> GrpcResult<MemberAddResponse> {
        let req = request.into_inner();
        if req.is_learner {
            return Err(Error::Unsupported("adding a learner member").into());
        }
        let urls = parse_urls("peerURLs", &req.peer_ur_ls.join(","))?;
        let existing = self.members();
        if existing
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
        {
            return Err(Error::PeerUrlExists.into());
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos().to_string())
            .unwrap_or_default();
        let id = member_id(
            &urls,
            &format!("{}/{nonce}", self.0.config.initial_cluster_token),
        );
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: urls,
            client_ur_ls: Vec::new(),
            is_learner: false,
        };
        let members = self
            .0
            .node
            .conf_change(
                ConfChangeType::AddNode,
                id,
                Some(member.clone()),
                self.0.request_timeout(),
            )
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: self.0.fill(None),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> GrpcResult<MemberRemoveResponse> {
        let id = request.into_inner().id;
        let existing = self.members();
        if !existing.iter().any(|m| m.id == id) {
            return Err(Error::MemberNotFound.into());
        }
        if existing.len() == 1 {
            return Err(Error::NotEnoughStartedMembers.into());
        }
        let members = self
            .0
            .node
            .conf_change(
                ConfChangeType::RemoveNode,
                id,
                None,
                self.0.request_timeout(),
            )
            .await?;
        self.0.transport.forget(id);
        Ok(Response::new(MemberRemoveResponse {
            header: self.0.fill(None),
            members,
        }))
    }

    async fn member_update(
        &self,
        _request: Request<MemberUpdateRequest>,
    ) -> GrpcResult<MemberUpdateResponse> {
        Err(Error::Unsupported("changing a member's peer URLs (MemberUpdate)").into())
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> GrpcResult<MemberListResponse> {
        if request.into_inner().linearizable {
            self.0.linearize().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.0.fill(None),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<MemberPromoteRequest>,
    ) -> GrpcResult<MemberPromoteResponse> {
        Err(Error::Unsupported("learner members (MemberPromote)").into())
    }
}

/// The Maintenance service.
pub struct MaintenanceService(pub Ctx);

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> GrpcResult<AlarmResponse> {
        let req = request.into_inner();
        if req.action() == AlarmAction::Get {
            let state = self.0.shared().state.read().expect("state lock");
            return Ok(Response::new(AlarmResponse {
                header: Some(self.0.header(state.mvcc().current_revision())),
                alarms: state.alarms().to_vec(),
            }));
        }
        match self.0.propose(LogReq::Alarm(req)).await? {
            Applied::Alarm(mut r) => {
                r.header = self.0.fill(None);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("alarm")),
        }
    }

    async fn status(&self, _request: Request<StatusRequest>) -> GrpcResult<StatusResponse> {
        let shared = self.0.shared();
        let state = shared.state.read().expect("state lock");
        let errors = state
            .alarms()
            .iter()
            .map(|a| {
                format!(
                    "memberID:{} alarm:{} ",
                    a.member_id,
                    AlarmType::try_from(a.alarm)
                        .map(|t| t.as_str_name())
                        .unwrap_or("UNKNOWN")
                )
            })
            .collect();
        Ok(Response::new(StatusResponse {
            header: Some(self.0.header(state.mvcc().current_revision())),
            version: VERSION.into(),
            db_size: self.0.db.size_on_disk().unwrap_or(0) as i64,
            leader: shared.leader().unwrap_or(0),
            raft_index: shared.raft.commit.load(Ordering::Acquire),
            raft_term: shared.raft.term.load(Ordering::Acquire),
            raft_applied_index: state.applied().0,
            errors,
            db_size_in_use: state.size() as i64,
            is_learner: false,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<DefragmentRequest>,
    ) -> GrpcResult<DefragmentResponse> {
        Err(Error::Unsupported(
            "defragment (sled reclaims space by itself; compact to drop history)",
        )
        .into())
    }

    async fn hash(&self, _request: Request<HashRequest>) -> GrpcResult<HashResponse> {
        let state = self.0.shared().state.read().expect("state lock");
        Ok(Response::new(HashResponse {
            header: Some(self.0.header(state.mvcc().current_revision())),
            hash: state.hash_all()?,
        }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> GrpcResult<HashKvResponse> {
        let rev = request.into_inner().revision;
        let state = self.0.shared().state.read().expect("state lock");
        Ok(Response::new(HashKvResponse {
            header: Some(self.0.header(state.mvcc().current_revision())),
            hash: state.hash_kv(rev)?,
            compact_revision: state.mvcc().compact_revision(),
        }))
    }

    type SnapshotStream = BoxStream<SnapshotResponse>;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> GrpcResult<Self::SnapshotStream> {
        // One consistent cut, taken under the state lock; streamed afterwards.
        let (bytes, revision) = {
            let state = self.0.shared().state.read().expect("state lock");
            (
                crate::snapshot::backup_bytes(&state.dump()?),
                state.mvcc().current_revision(),
            )
        };
        let header = self.0.header(revision);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            const CHUNK: usize = 64 * 1024;
            let total = bytes.len();
            let mut sent = 0;
            for chunk in bytes.chunks(CHUNK) {
                sent += chunk.len();
                let resp = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - sent) as u64,
                    blob: chunk.to_vec(),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> GrpcResult<MoveLeaderResponse> {
        let target = request.into_inner().target_id;
        let shared = self.0.shared();
        if !shared.is_leader() {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        if !shared
            .state
            .read()
            .expect("state lock")
            .members()
            .contains_key(&target)
        {
            return Err(Error::MemberNotFound.into());
        }
        self.0.node.send(Command::TransferLeader(target))?;
        let deadline = Instant::now() + self.0.request_timeout();
        while shared.leader() != Some(target) {
            if Instant::now() > deadline {
                return Err(Status::deadline_exceeded(
                    "etcdserver: leadership transfer timed out",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Response::new(MoveLeaderResponse {
            header: self.0.fill(None),
        }))
    }
}

/// Publishes this member's name and client URLs once it runs (like etcd's publish), so
/// `member list` shows them; retries until it is in the state machine.
pub async fn publish_self(ctx: Ctx) {
    loop {
        let current = {
            let state = ctx.shared().state.read().expect("state lock");
            state.members().get(&ctx.shared().id).cloned()
        };
        if let Some(m) = current {
            if m.name == ctx.config.name && m.client_ur_ls == ctx.config.advertise_client_urls {
                return;
            }
            if ctx.shared().leader().is_some() {
                let attrs = MemberAttributes {
                    id: ctx.shared().id,
                    name: ctx.config.name.clone(),
                    client_urls: ctx.config.advertise_client_urls.clone(),
                };
                let _ = ctx.propose(LogReq::MemberAttributes(attrs)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader revokes expired leases through the log, so all members delete their keys
/// in the same revision.
pub async fn expire_leases(ctx: Ctx) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if !ctx.shared().is_leader() {
            continue;
        }
        let expired = {
            let mut clock = ctx.shared().lease_clock.lock().expect("lease clock lock");
            let now = Instant::now();
            let ids = clock.expired(now);
            // Hold off re-proposing while the revoke is in flight.
            for id in &ids {
                clock.renew(*id, 3, now);
            }
            ids
        };
        for id in expired {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                match ctx
                    .propose(LogReq::LeaseRevoke(LeaseRevokeRequest { id }))
                    .await
                {
                    Ok(_) | Err(Error::LeaseNotFound) => {
                        tracing::info!(lease = format!("{id:x}"), "lease expired and revoked")
                    }
                    Err(e) => {
                        tracing::warn!(lease = format!("{id:x}"), error = %e, "revoking an expired lease failed; will retry")
                    }
                }
            });
        }
    }
}

/// `/metrics` text for this member.
pub fn metrics_text(ctx: &Ctx) -> String {
    let shared = ctx.shared();
    let state = shared.state.read().expect("state lock");
    let gauges = crate::metrics::Gauges {
        has_leader: shared.leader().is_some(),
        is_leader: shared.is_leader(),
        revision: state.mvcc().current_revision(),
        compact_revision: state.mvcc().compact_revision(),
        db_size_in_use: state.size(),
        db_size: ctx.db.size_on_disk().unwrap_or(0),
        term: shared.raft.term.load(Ordering::Acquire),
        commit: shared.raft.commit.load(Ordering::Acquire),
        applied_index: state.applied().0,
        keys: state.mvcc().key_count(),
        leases: state.lessor().len(),
    };
    shared.metrics.render(&gauges)
}
