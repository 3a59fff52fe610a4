//! The replicated state machine: what every member builds by applying the Raft log.
//!
//! It holds the MVCC key space, the leases, the members and the alarms, all persisted in
//! one sled tree (the "state" tree) so that one applied entry is one atomic sled batch,
//! together with the applied index. After a crash the member reopens the tree, finds
//! the applied index, and Raft replays what came after it.
//!
//! Layout of the state tree (one-byte prefixes):
//! - `k` + revision (16 bytes) → an MVCC [`Record`]
//! - `l` + lease ID (8) → the lease's TTL
//! - `n` + member ID (8) → an etcd `Member`
//! - `a` + member ID (8) + alarm type (4) → an active alarm
//! - `m` + name → bookkeeping: `applied`, `conf`, `rev`, `compact`, `cluster`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prost::Message;
use protobuf::Message as _;
use raft::eraftpb::ConfState;
use skiff_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, Member, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use skiff_proto::mvccpb::Event;
use skiff_proto::peer::{log_request, LogRequest, MemberAttributes};

use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::{Backend, Changes, Mvcc, Record, Revision};

const REV_PREFIX: u8 = b'k';
const LEASE_PREFIX: u8 = b'l';
const MEMBER_PREFIX: u8 = b'n';
const ALARM_PREFIX: u8 = b'a';
const META_APPLIED: &[u8] = b"mapplied";
const META_CONF: &[u8] = b"mconf";
const META_REV: &[u8] = b"mrev";
const META_COMPACT: &[u8] = b"mcompact";
const META_CLUSTER: &[u8] = b"mcluster";

/// What applying one log entry produced, for the caller waiting on it.
#[derive(Debug, Clone)]
pub enum Applied {
    /// A Put's answer.
    Put(PutResponse),
    /// A DeleteRange's answer.
    DeleteRange(DeleteRangeResponse),
    /// A Txn's answer.
    Txn(TxnResponse),
    /// A compaction finished.
    Compacted,
    /// A lease was granted.
    LeaseGranted(LeaseGrantResponse),
    /// A lease was revoked (its keys deleted).
    LeaseRevoked,
    /// An alarm changed; the alarms now active.
    Alarm(AlarmResponse),
    /// The membership changed (or a member published itself); the members now.
    Members(Vec<Member>),
    /// Nothing for a caller (an empty entry).
    Nothing,
}

/// The outcome of one entry: errors are deterministic, the same on every member.
pub type ApplyResult = std::result::Result<Applied, Error>;

/// Reads MVCC records from the state tree.
pub struct SledBackend<'a>(pub &'a sled::Tree);

fn rev_key(rev: Revision) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = REV_PREFIX;
    k[1..].copy_from_slice(&rev.to_bytes());
    k
}

impl Backend for SledBackend<'_> {
    fn get(&self, rev: Revision) -> Result<Option<Record>> {
        match self.0.get(rev_key(rev))? {
            Some(v) => Ok(Some(Record::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn scan(&self, from_main: i64, to_main: i64) -> Result<Vec<(Revision, Record)>> {
        let from = rev_key(Revision {
            main: from_main,
            sub: 0,
        });
        let to = rev_key(Revision {
            main: to_main,
            sub: i64::MAX,
        });
        let mut out = Vec::new();
        for item in self.0.range(from..=to) {
            let (k, v) = item?;
            let rev = Revision::from_bytes(&k[1..])
                .ok_or_else(|| Error::Corrupt("bad revision key".into()))?;
            out.push((rev, Record::decode(&v)?));
        }
        Ok(out)
    }
}

/// The state machine.
pub struct StateMachine {
    tree: sled::Tree,
    mvcc: Mvcc,
    lessor: Lessor,
    members: BTreeMap<u64, Member>,
    alarms: Vec<AlarmMember>,
    applied_index: u64,
    applied_term: u64,
    conf_state: ConfState,
    cluster_id: u64,
    quota_bytes: u64,
    /// Open watchers that asked for `prev_kv`: while there are none, writes skip
    /// reading the old values only those events would carry.
    prev_kv_watchers: Arc<AtomicUsize>,
    /// What the entries applied since the last [`StateMachine::commit_applied`] wrote:
    /// one sled batch for all of them (sled's cost is per batch), and the records in it
    /// (`None`: removed) so that later entries in the same batch read them.
    batch: sled::Batch,
    pending: BTreeMap<Revision, Option<Record>>,
}

/// Reads MVCC records through the writes not yet committed to the tree.
pub struct PendingBackend<'a> {
    tree: &'a sled::Tree,
    pending: &'a BTreeMap<Revision, Option<Record>>,
}

impl Backend for PendingBackend<'_> {
    fn get(&self, rev: Revision) -> Result<Option<Record>> {
        match self.pending.get(&rev) {
            Some(r) => Ok(r.clone()),
            None => SledBackend(self.tree).get(rev),
        }
    }

    fn scan(&self, from_main: i64, to_main: i64) -> Result<Vec<(Revision, Record)>> {
        let mut all: BTreeMap<Revision, Record> = SledBackend(self.tree)
            .scan(from_main, to_main)?
            .into_iter()
            .collect();
        if from_main <= to_main {
            let from = Revision {
                main: from_main,
                sub: 0,
            };
            let to = Revision {
                main: to_main,
                sub: i64::MAX,
            };
            for (rev, rec) in self.pending.range(from..=to) {
                match rec {
                    Some(r) => {
                        all.insert(*rev, r.clone());
                    }
                    None => {
                        all.remove(rev);
                    }
                }
            }
        }
        Ok(all.into_iter().collect())
    }
}

fn u64_of(v: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
        Error::Corrupt("bad integer in the state tree".into())
    })?))
}

impl StateMachine {
    /// Opens (and rebuilds the in-memory index of) the state stored in `tree`.
    pub fn open(tree: sled::Tree, quota_bytes: u64) -> Result<StateMachine> {
        let mut sm = StateMachine {
            tree,
            mvcc: Mvcc::default(),
            lessor: Lessor::default(),
            members: BTreeMap::new(),
            alarms: Vec::new(),
            applied_index: 0,
            applied_term: 0,
            conf_state: ConfState::default(),
            cluster_id: 0,
            quota_bytes,
            prev_kv_watchers: Arc::new(AtomicUsize::new(0)),
            batch: sled::Batch::default(),
            pending: BTreeMap::new(),
        };
        sm.reload()?;
        Ok(sm)
    }

    /// Re-reads everything from the tree (after opening, or installing a snapshot).
    fn reload(&mut self) -> Result<()> {
        let tree = &self.tree;
        let get_u64 = |k: &[u8]| -> Result<u64> {
            match tree.get(k)? {
                Some(v) => u64_of(&v),
                None => Ok(0),
            }
        };
        let current = get_u64(META_REV)? as i64;
        let compacted = get_u64(META_COMPACT)? as i64;
        self.cluster_id = get_u64(META_CLUSTER)?;
        match tree.get(META_APPLIED)? {
            Some(v) if v.len() == 16 => {
                self.applied_index = u64_of(&v[..8])?;
                self.applied_term = u64_of(&v[8..])?;
            }
            Some(_) => return Err(Error::Corrupt("bad applied index".into())),
            None => {
                self.applied_index = 0;
                self.applied_term = 0;
            }
        }
        self.conf_state = match tree.get(META_CONF)? {
            Some(v) => ConfState::parse_from_bytes(&v)
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
            None => ConfState::default(),
        };
        let mut records = Vec::new();
        for item in tree.scan_prefix([REV_PREFIX]) {
            let (k, v) = item?;
            let rev = Revision::from_bytes(&k[1..])
                .ok_or_else(|| Error::Corrupt("bad revision key".into()))?;
            records.push((rev, Record::decode(&v)?));
        }
        self.mvcc = Mvcc::restore(records, current, compacted);
        self.lessor = Lessor::default();
        for item in tree.scan_prefix([LEASE_PREFIX]) {
            let (k, v) = item?;
            let id = u64_of(&k[1..])? as i64;
            self.lessor.grant(id, u64_of(&v)? as i64);
        }
        let leased: Vec<(Vec<u8>, i64)> = self
            .mvcc
            .leased_keys()
            .map(|(k, l)| (k.to_vec(), l))
            .collect();
        for (k, l) in leased {
            self.lessor.move_key(&k, 0, l);
        }
        self.members.clear();
        for item in tree.scan_prefix([MEMBER_PREFIX]) {
            let (_, v) = item?;
            let m = Member::decode(&*v).map_err(|e| Error::Corrupt(format!("member: {e}")))?;
            self.members.insert(m.id, m);
        }
        self.alarms.clear();
        for item in tree.scan_prefix([ALARM_PREFIX]) {
            let (k, _) = item?;
            if k.len() != 13 {
                return Err(Error::Corrupt("bad alarm key".into()));
            }
            self.alarms.push(AlarmMember {
                member_id: u64_of(&k[1..9])?,
                alarm: i32::from_be_bytes(k[9..13].try_into().expect("4 bytes")),
            });
        }
        Ok(())
    }

    /// The count of watchers that want `prev_kv` (a watcher increments it under the
    /// read lock before it subscribes, so no write it sees lacks the old value).
    pub fn prev_kv_watchers(&self) -> Arc<AtomicUsize> {
        self.prev_kv_watchers.clone()
    }

    /// The tree the state lives in.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The MVCC index.
    pub fn mvcc(&self) -> &Mvcc {
        &self.mvcc
    }

    /// The leases.
    pub fn lessor(&self) -> &Lessor {
        &self.lessor
    }

    /// The members, by ID.
    pub fn members(&self) -> &BTreeMap<u64, Member> {
        &self.members
    }

    /// The active alarms.
    pub fn alarms(&self) -> &[AlarmMember] {
        &self.alarms
    }

    /// The index and term of the last applied entry.
    pub fn applied(&self) -> (u64, u64) {
        (self.applied_index, self.applied_term)
    }

    /// The Raft configuration as of the last applied entry.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The cluster's ID.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Serves a Range.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.mvcc.range(&SledBackend(&self.tree), req)
    }

    /// Serves a Txn that only reads.
    pub fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        self.mvcc.read_txn(&SledBackend(&self.tree), req)
    }

    /// The events of revisions `from..=to`, grouped by revision.
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<(i64, Vec<Event>)>> {
        self.mvcc.events(&SledBackend(&self.tree), from, to)
    }

    /// etcd's HashKV at a revision (0: current).
    pub fn hash_kv(&self, rev: i64) -> Result<u32> {
        self.mvcc.hash_kv(&SledBackend(&self.tree), rev)
    }

    /// A CRC-32 of the whole state tree but the bookkeeping that differs by member.
    pub fn hash_all(&self) -> Result<u32> {
        let mut h = crc32fast::Hasher::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            if k.first() == Some(&b'm') {
                continue;
            }
            h.update(&k);
            h.update(&v);
        }
        Ok(h.finalize())
    }

    /// Logical bytes stored (what the quota charges).
    pub fn size(&self) -> u64 {
        self.mvcc.size()
    }

    fn nospace(&self) -> bool {
        self.alarms
            .iter()
            .any(|a| a.alarm == AlarmType::Nospace as i32)
    }

    /// Writes the bookkeeping every entry updates into `batch`.
    fn stamp(&mut self, batch: &mut sled::Batch, index: u64, term: u64) {
        self.applied_index = index;
        self.applied_term = term;
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&index.to_be_bytes());
        v[8..].copy_from_slice(&term.to_be_bytes());
        batch.insert(META_APPLIED, &v[..]);
        batch.insert(
            META_REV,
            &(self.mvcc.current_revision() as u64).to_be_bytes()[..],
        );
        batch.insert(
            META_COMPACT,
            &(self.mvcc.compact_revision() as u64).to_be_bytes()[..],
        );
    }

    fn write_changes(&mut self, batch: &mut sled::Batch, changes: &Changes) {
        for (rev, rec) in &changes.records {
            batch.insert(&rev_key(*rev)[..], rec.encode());
            self.pending.insert(*rev, Some(rec.clone()));
        }
        for (key, from, to) in &changes.lease_moves {
            self.lessor.move_key(key, *from, *to);
        }
    }

    /// Applies a normal log entry. Returns the outcome for the waiting caller and the
    /// events for watchers (empty when nothing changed). What it writes reaches the tree
    /// with the next [`StateMachine::commit_applied`], which must come before anyone else
    /// reads the state.
    pub fn apply(
        &mut self,
        index: u64,
        term: u64,
        req: Option<LogRequest>,
    ) -> Result<(ApplyResult, Vec<Event>)> {
        let mut batch = std::mem::take(&mut self.batch);
        let applied = match req {
            Some(req) => self.apply_request(&mut batch, req),
            None => Ok((Ok(Applied::Nothing), Vec::new())),
        };
        self.stamp(&mut batch, index, term);
        self.batch = batch;
        applied
    }

    /// Writes everything applied since the last call to the tree, as one sled batch.
    pub fn commit_applied(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.pending.clear();
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn apply_request(
        &mut self,
        batch: &mut sled::Batch,
        req: LogRequest,
    ) -> Result<(ApplyResult, Vec<Event>)> {
        use log_request::Request as R;
        let origin = req.origin;
        let Some(request) = req.request else {
            return Ok((Ok(Applied::Nothing), Vec::new()));
        };
        let writes_data = match &request {
            R::Put(_) | R::LeaseGrant(_) => true,
            R::Txn(t) => txn_puts(t),
            _ => false,
        };
        if writes_data && self.nospace() {
            return Ok((Err(Error::NoSpace), Vec::new()));
        }
        let outcome = match request {
            R::Put(p) => self.write_kv(batch, origin, true, |w| w.put(&p).map(Applied::Put)),
            // Deletes stay possible past the quota: they are how space is freed.
            R::DeleteRange(d) => self.write_kv(batch, origin, false, |w| {
                w.delete_range(&d).map(Applied::DeleteRange)
            }),
            R::Txn(t) => {
                let puts = txn_puts(&t);
                self.write_kv(batch, origin, puts, |w| w.txn(&t).map(Applied::Txn))
            }
            R::Compaction(c) => return self.compact(batch, c.revision),
            R::LeaseGrant(g) => {
                if self.lessor.contains(g.id) {
                    Err(Error::LeaseExists)
                } else {
                    self.lessor.grant(g.id, g.ttl);
                    let mut k = vec![LEASE_PREFIX];
                    k.extend_from_slice(&(g.id as u64).to_be_bytes());
                    batch.insert(k, &(g.ttl as u64).to_be_bytes()[..]);
                    Ok((
                        Applied::LeaseGranted(LeaseGrantResponse {
                            header: None,
                            id: g.id,
                            ttl: g.ttl,
                            error: String::new(),
                        }),
                        Vec::new(),
                    ))
                }
            }
            R::LeaseRevoke(r) => self.revoke(batch, r.id),
            R::Alarm(a) => self.alarm(batch, &a).map(|a| (a, Vec::new())),
            R::MemberAttributes(a) => self.publish(batch, &a).map(|a| (a, Vec::new())),
        };
        Ok(match outcome {
            Ok((applied, events)) => (Ok(applied), events),
            Err(e @ (Error::Storage(_) | Error::Corrupt(_))) => return Err(e),
            Err(e) => (Err(e), Vec::new()),
        })
    }

    /// Runs one write transaction against the MVCC store, enforcing the quota: a write
    /// that would pass it is undone and raises the NOSPACE alarm on every member alike.
    fn write_kv(
        &mut self,
        batch: &mut sled::Batch,
        origin: u64,
        enforce_quota: bool,
        f: impl FnOnce(&mut crate::mvcc::WriteTxn<'_, PendingBackend<'_>>) -> Result<Applied>,
    ) -> Result<(Applied, Vec<Event>)> {
        let backend = PendingBackend {
            tree: &self.tree,
            pending: &self.pending,
        };
        let lessor = &self.lessor;
        let lease_exists = |id: i64| lessor.contains(id);
        let prev_kv = self.prev_kv_watchers.load(Ordering::Acquire) > 0;
        let mut w = self
            .mvcc
            .write(&backend, &lease_exists)
            .prev_kv_in_events(prev_kv);
        let applied = match f(&mut w) {
            Ok(a) => a,
            Err(e) => {
                w.abort();
                return Err(e);
            }
        };
        if enforce_quota && w.added_bytes() > 0 && w.total_bytes() > self.quota_bytes {
            w.abort();
            self.raise(batch, origin, AlarmType::Nospace);
            return Err(Error::NoSpace);
        }
        let changes = w.finish();
        self.write_changes(batch, &changes);
        let applied = with_revision(applied, changes.revision);
        Ok((applied, changes.events))
    }

    fn raise(&mut self, batch: &mut sled::Batch, member: u64, alarm: AlarmType) {
        let a = AlarmMember {
            member_id: member,
            alarm: alarm as i32,
        };
        if !self.alarms.contains(&a) {
            batch.insert(alarm_key(&a), &[][..]);
            self.alarms.push(a);
        }
    }

    fn compact(&mut self, batch: &mut sled::Batch, rev: i64) -> Result<(ApplyResult, Vec<Event>)> {
        let compaction = match self.mvcc.compact(rev) {
            Ok(c) => c,
            Err(e) => return Ok((Err(e), Vec::new())),
        };
        let mut freed = 0;
        for r in compaction.removed {
            let backend = PendingBackend {
                tree: &self.tree,
                pending: &self.pending,
            };
            if let Some(rec) = backend.get(r)? {
                freed += rec.cost();
            }
            batch.remove(&rev_key(r)[..]);
            self.pending.insert(r, None);
        }
        self.mvcc.release(freed);
        Ok((Ok(Applied::Compacted), Vec::new()))
    }

    fn revoke(&mut self, batch: &mut sled::Batch, id: i64) -> Result<(Applied, Vec<Event>)> {
        let Some(lease) = self.lessor.get(id).cloned() else {
            return Err(Error::LeaseNotFound);
        };
        // All of the lease's keys go in one revision, as etcd does.
        let backend = PendingBackend {
            tree: &self.tree,
            pending: &self.pending,
        };
        let lease_exists = |_| true;
        let prev_kv = self.prev_kv_watchers.load(Ordering::Acquire) > 0;
        let mut w = self
            .mvcc
            .write(&backend, &lease_exists)
            .prev_kv_in_events(prev_kv);
        for key in &lease.keys {
            if let Err(e) = w.delete_range(&DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            }) {
                w.abort();
                return Err(e);
            }
        }
        let changes = w.finish();
        self.write_changes(batch, &changes);
        self.lessor.revoke(id);
        let mut k = vec![LEASE_PREFIX];
        k.extend_from_slice(&(id as u64).to_be_bytes());
        batch.remove(k);
        Ok((Applied::LeaseRevoked, changes.events))
    }

    /// Activates or deactivates an alarm; answers with the alarm changed, as etcd does.
    fn alarm(&mut self, batch: &mut sled::Batch, req: &AlarmRequest) -> ApplyResult {
        let a = AlarmMember {
            member_id: req.member_id,
            alarm: req.alarm,
        };
        let mut changed = Vec::new();
        match req.action() {
            AlarmAction::Get => changed = self.alarms.clone(),
            AlarmAction::Activate => {
                if a.alarm != AlarmType::None as i32 {
                    self.raise(batch, a.member_id, req.alarm());
                    changed.push(a);
                }
            }
            AlarmAction::Deactivate => {
                if let Some(pos) = self.alarms.iter().position(|x| *x == a) {
                    self.alarms.remove(pos);
                    batch.remove(alarm_key(&a));
                    changed.push(a);
                }
            }
        }
        Ok(Applied::Alarm(AlarmResponse {
            header: None,
            alarms: changed,
        }))
    }

    fn publish(&mut self, batch: &mut sled::Batch, a: &MemberAttributes) -> ApplyResult {
        let Some(m) = self.members.get_mut(&a.id) else {
            return Err(Error::MemberNotFound);
        };
        m.name = a.name.clone();
        m.client_ur_ls = a.client_urls.clone();
        let m = m.clone();
        batch.insert(member_key(m.id), m.encode_to_vec());
        Ok(Applied::Members(self.members.values().cloned().collect()))
    }

    /// Applies a membership change that Raft has applied, recording the new configuration.
    pub fn apply_conf_change(
        &mut self,
        index: u64,
        term: u64,
        added: Option<Member>,
        removed: Option<u64>,
        conf_state: ConfState,
    ) -> Result<Vec<Member>> {
        // Joins the entries applied before it, so the tree sees them in log order.
        let mut batch = std::mem::take(&mut self.batch);
        self.pending.clear();
        if let Some(m) = added {
            batch.insert(member_key(m.id), m.encode_to_vec());
            self.members.insert(m.id, m);
        }
        if let Some(id) = removed {
            batch.remove(member_key(id));
            self.members.remove(&id);
        }
        batch.insert(
            META_CONF,
            conf_state
                .write_to_bytes()
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
        );
        self.conf_state = conf_state;
        self.stamp(&mut batch, index, term);
        self.tree.apply_batch(batch)?;
        Ok(self.members.values().cloned().collect())
    }

    /// Writes the first state of a new cluster: its members, configuration and ID, at
    /// Raft index 1 (the bootstrap snapshot every member starts from).
    pub fn bootstrap(&mut self, cluster_id: u64, members: &[Member]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for m in members {
            batch.insert(member_key(m.id), m.encode_to_vec());
        }
        let cs = ConfState {
            voters: members.iter().map(|m| m.id).collect(),
            ..Default::default()
        };
        batch.insert(
            META_CONF,
            cs.write_to_bytes()
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
        );
        batch.insert(META_CLUSTER, &cluster_id.to_be_bytes()[..]);
        let mut applied = [0u8; 16];
        applied[..8].copy_from_slice(&1u64.to_be_bytes());
        applied[8..].copy_from_slice(&1u64.to_be_bytes());
        batch.insert(META_APPLIED, &applied[..]);
        self.tree.apply_batch(batch)?;
        self.reload()
    }

    /// Every entry of the state tree: the payload of a Raft snapshot and of a backup.
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Replaces the whole state with a snapshot's entries, then stamps it as applied at
    /// `index`/`term` with `conf_state`.
    pub fn install(
        &mut self,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        index: u64,
        term: u64,
        conf_state: &ConfState,
    ) -> Result<()> {
        // The snapshot replaces the whole state, uncommitted applies included.
        self.batch = sled::Batch::default();
        self.pending.clear();
        let mut batch = sled::Batch::default();
        for item in self.tree.iter() {
            let (k, _) = item?;
            batch.remove(k);
        }
        for (k, v) in entries {
            batch.insert(k, v);
        }
        batch.insert(
            META_CONF,
            conf_state
                .write_to_bytes()
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
        );
        let mut applied = [0u8; 16];
        applied[..8].copy_from_slice(&index.to_be_bytes());
        applied[8..].copy_from_slice(&term.to_be_bytes());
        batch.insert(META_APPLIED, &applied[..]);
        self.tree.apply_batch(batch)?;
        self.reload()
    }
}

/// Stamps a write's answer with the revision it produced (the server adds the rest of the
/// header), because by the time the caller reads the store, later writes may have landed.
fn with_revision(applied: Applied, revision: i64) -> Applied {
    let header = Some(ResponseHeader {
        revision,
        ..Default::default()
    });
    match applied {
        Applied::Put(mut r) => {
            r.header = header;
            Applied::Put(r)
        }
        Applied::DeleteRange(mut r) => {
            r.header = header;
            Applied::DeleteRange(r)
        }
        Applied::Txn(mut r) => {
            r.header = header;
            Applied::Txn(r)
        }
        other => other,
    }
}

/// Whether a Txn may put (what the quota refuses; deletes are always allowed).
fn txn_puts(t: &TxnRequest) -> bool {
    use skiff_proto::etcdserverpb::request_op::Request as Op;
    t.success
        .iter()
        .chain(t.failure.iter())
        .any(|op| match &op.request {
            Some(Op::RequestPut(_)) => true,
            Some(Op::RequestTxn(inner)) => txn_puts(inner),
            _ => false,
        })
}

fn member_key(id: u64) -> Vec<u8> {
    let mut k = vec![MEMBER_PREFIX];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn alarm_key(a: &AlarmMember) -> Vec<u8> {
    let mut k = vec![ALARM_PREFIX];
    k.extend_from_slice(&a.member_id.to_be_bytes());
    k.extend_from_slice(&a.alarm.to_be_bytes());
    k
}

/// Entries of a state dump that a restored cluster keeps: the key space and leases, not
/// the old cluster's members, alarms or bookkeeping (but its revision counters).
pub fn restorable(key: &[u8]) -> bool {
    matches!(key.first(), Some(&REV_PREFIX) | Some(&LEASE_PREFIX))
        || key == META_REV
        || key == META_COMPACT
}
