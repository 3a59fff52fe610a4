//! Multi-version concurrency control, as etcd does it.
//!
//! One global revision counts every change; a write transaction (a Put, a DeleteRange or a
//! whole Txn) takes the next revision and each change inside it a sub-revision. Every key
//! keeps `create_revision`, `mod_revision` and `version` (reset by a delete). Old
//! revisions stay readable until they are compacted.
//!
//! The [`Mvcc`] index lives in memory (key → the revisions that changed it); the records
//! themselves live in a [`Backend`] keyed by revision, so history costs disk, not memory.
//! Nothing here does I/O itself: the state machine hands in its backend, and unit tests a
//! `BTreeMap`.

use std::collections::BTreeMap;
use std::ops::Bound;

use prost::Message;
use skiff_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use skiff_proto::mvccpb::{event::EventType, Event, KeyValue};

use crate::error::{Error, Result};

/// A point in the store's history: the transaction's revision and the change's place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// The transaction's revision (what clients see).
    pub main: i64,
    /// The change's index within the transaction.
    pub sub: i64,
}

impl Revision {
    /// Big-endian bytes, so that byte order is revision order in the backend.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8..].copy_from_slice(&self.sub.to_be_bytes());
        b
    }

    /// The inverse of [`Revision::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Option<Revision> {
        if b.len() != 16 {
            return None;
        }
        Some(Revision {
            main: i64::from_be_bytes(b[..8].try_into().ok()?),
            sub: i64::from_be_bytes(b[8..].try_into().ok()?),
        })
    }
}

/// What one revision stored: a key's new value, or its deletion (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key-value as clients see it (for a tombstone: key and mod_revision only).
    pub kv: KeyValue,
    /// Whether this revision deleted the key.
    pub tombstone: bool,
}

impl Record {
    /// The stored form: a flag byte then the protobuf `KeyValue`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.kv.encoded_len());
        out.push(u8::from(self.tombstone));
        self.kv.encode(&mut out).expect("Vec has room");
        out
    }

    /// The inverse of [`Record::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Record> {
        let (flag, rest) = bytes
            .split_first()
            .ok_or_else(|| Error::Corrupt("empty revision record".into()))?;
        let kv =
            KeyValue::decode(rest).map_err(|e| Error::Corrupt(format!("revision record: {e}")))?;
        Ok(Record {
            kv,
            tombstone: *flag == 1,
        })
    }

    /// Bytes this record is charged against the backend quota.
    pub fn cost(&self) -> u64 {
        (16 + 16 + self.kv.key.len() + self.kv.value.len()) as u64
    }
}

/// Where the records live. Reads only: writes come back from a [`WriteTxn`] as
/// [`Changes`] for the caller to persist atomically with the rest of its state.
pub trait Backend {
    /// The record stored at exactly this revision.
    fn get(&self, rev: Revision) -> Result<Option<Record>>;
    /// Every record with `from.main <= main <= to_main`, in revision order.
    fn scan(&self, from_main: i64, to_main: i64) -> Result<Vec<(Revision, Record)>>;
}

/// A backend in memory: for tests, and as the overlay of a write transaction.
impl Backend for BTreeMap<Revision, Record> {
    fn get(&self, rev: Revision) -> Result<Option<Record>> {
        Ok(BTreeMap::get(self, &rev).cloned())
    }

    fn scan(&self, from_main: i64, to_main: i64) -> Result<Vec<(Revision, Record)>> {
        if from_main > to_main {
            // `BTreeMap::range` panics on an inverted range; the answer is "nothing".
            return Ok(Vec::new());
        }
        let from = Revision {
            main: from_main,
            sub: 0,
        };
        let to = Revision {
            main: to_main,
            sub: i64::MAX,
        };
        Ok(self
            .range(from..=to)
            .map(|(r, rec)| (*r, rec.clone()))
            .collect())
    }
}

/// One key's history: every revision that changed it, oldest first.
#[derive(Debug, Clone, Default)]
struct KeyHistory {
    /// `(revision, is_tombstone)`.
    revs: Vec<(Revision, bool)>,
    /// The live generation's create revision, version and lease (0 when deleted).
    create: i64,
    version: i64,
    lease: i64,
}

impl KeyHistory {
    /// The revision holding the key's value as of `at`, if the key existed then.
    fn live_at(&self, at: i64) -> Option<Revision> {
        let idx = self.revs.partition_point(|(r, _)| r.main <= at);
        let (rev, tomb) = *self.revs.get(idx.checked_sub(1)?)?;
        (!tomb).then_some(rev)
    }

    /// The last change strictly before `rev`, if it left the key live.
    fn live_before(&self, rev: Revision) -> Option<Revision> {
        let idx = self.revs.partition_point(|(r, _)| *r < rev);
        let (r, tomb) = *self.revs.get(idx.checked_sub(1)?)?;
        (!tomb).then_some(r)
    }

    fn is_live(&self) -> bool {
        matches!(self.revs.last(), Some((_, false)))
    }

    /// Drops revisions that compaction at `at` makes unreachable; returns them.
    fn compact(&mut self, at: i64) -> Vec<Revision> {
        let keep_from = self.revs.partition_point(|(r, _)| r.main <= at);
        // The newest change at or below `at` is still what a read at `at` returns, unless
        // it is a tombstone: then nothing at or below `at` is reachable any more.
        let cut = match keep_from.checked_sub(1).map(|i| self.revs[i]) {
            Some((_, false)) => keep_from - 1,
            _ => keep_from,
        };
        self.revs.drain(..cut).map(|(r, _)| r).collect()
    }
}

/// Whether `key` is in the etcd range `[start, end)` (`end` empty: just `start`;
/// `end` = `\0`: every key from `start` on).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

/// The MVCC index and revision counters.
#[derive(Debug, Clone, Default)]
pub struct Mvcc {
    index: BTreeMap<Vec<u8>, KeyHistory>,
    current: i64,
    compacted: i64,
    /// Bytes of live records (what the quota charges).
    size: u64,
}

/// The records and events one write transaction produced.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// The revision the transaction took (unchanged revision when it wrote nothing).
    pub revision: i64,
    /// Records to store, keyed by revision.
    pub records: Vec<(Revision, Record)>,
    /// The events for watchers, prev_kv always filled where there was one.
    pub events: Vec<Event>,
    /// `(key, old lease, new lease)` for every key whose lease attachment changed.
    pub lease_moves: Vec<(Vec<u8>, i64, i64)>,
}

/// What a compaction dropped.
#[derive(Debug, Default)]
pub struct Compaction {
    /// Revisions whose records are to be deleted from the backend.
    pub removed: Vec<Revision>,
}

impl Mvcc {
    /// The current (latest) revision.
    pub fn current_revision(&self) -> i64 {
        self.current
    }

    /// The revision history is compacted to (reads below it fail).
    pub fn compact_revision(&self) -> i64 {
        self.compacted
    }

    /// Bytes of records kept (live and history).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of keys live now.
    pub fn key_count(&self) -> usize {
        self.index.values().filter(|h| h.is_live()).count()
    }

    /// Rebuilds the index from stored records (on start and after a snapshot).
    pub fn restore(
        records: impl IntoIterator<Item = (Revision, Record)>,
        current: i64,
        compacted: i64,
    ) -> Mvcc {
        let mut m = Mvcc {
            current,
            compacted,
            ..Mvcc::default()
        };
        for (rev, rec) in records {
            m.size += rec.cost();
            m.current = m.current.max(rev.main);
            let h = m.index.entry(rec.kv.key.clone()).or_default();
            h.revs.push((rev, rec.tombstone));
            if rec.tombstone {
                h.create = 0;
                h.version = 0;
                h.lease = 0;
            } else {
                h.create = rec.kv.create_revision;
                h.version = rec.kv.version;
                h.lease = rec.kv.lease;
            }
        }
        m
    }

    /// The live keys attached to leases, for rebuilding the lessor.
    pub fn leased_keys(&self) -> impl Iterator<Item = (&[u8], i64)> {
        self.index
            .iter()
            .filter(|(_, h)| h.is_live() && h.lease != 0)
            .map(|(k, h)| (k.as_slice(), h.lease))
    }

    /// The current lease of a live key (0 for none or absent).
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.index
            .get(key)
            .filter(|h| h.is_live())
            .map_or(0, |h| h.lease)
    }

    fn check_read_revision(&self, rev: i64) -> Result<i64> {
        if rev <= 0 {
            return Ok(self.current);
        }
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        if rev < self.compacted {
            return Err(Error::Compacted {
                compact_revision: self.compacted,
            });
        }
        Ok(rev)
    }

    /// Revisions live at `at` for keys in `[start, end)`, in key order.
    fn live_in_range(&self, start: &[u8], end: &[u8], at: i64) -> Vec<Revision> {
        self.histories_in_range(start, end)
            .filter_map(|(_, h)| h.live_at(at))
            .collect()
    }

    /// Keys live at `at` in `[start, end)` with their revisions, in key order.
    fn live_keys_in_range(&self, start: &[u8], end: &[u8], at: i64) -> Vec<(Vec<u8>, Revision)> {
        self.histories_in_range(start, end)
            .filter_map(|(k, h)| h.live_at(at).map(|r| (k.clone(), r)))
            .collect()
    }

    fn histories_in_range<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyHistory)> + 'a> {
        let upper = if end.is_empty() {
            Bound::Included(start)
        } else if end == [0] {
            Bound::Unbounded
        } else if end <= start {
            return Box::new(std::iter::empty());
        } else {
            Bound::Excluded(end)
        };
        Box::new(self.index.range::<[u8], _>((Bound::Included(start), upper)))
    }

    /// Serves a Range request (the response header is the caller's).
    pub fn range<B: Backend + ?Sized>(&self, b: &B, req: &RangeRequest) -> Result<RangeResponse> {
        let at = self.check_read_revision(req.revision)?;
        let revs = self.live_in_range(&req.key, &req.range_end, at);
        let count = revs.len() as i64;
        let sort_order = match (req.sort_order(), req.sort_target()) {
            (range_request::SortOrder::None, range_request::SortTarget::Key) => {
                range_request::SortOrder::None
            }
            (range_request::SortOrder::None, _) => range_request::SortOrder::Ascend,
            (o, _) => o,
        };
        let filtered = req.min_mod_revision > 0
            || req.max_mod_revision > 0
            || req.min_create_revision > 0
            || req.max_create_revision > 0;
        if req.count_only && !filtered {
            return Ok(RangeResponse {
                count,
                ..Default::default()
            });
        }
        // Without sorting or filtering, the limit can stop the reads early.
        let needs_all = filtered || sort_order != range_request::SortOrder::None;
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let take = if needs_all || limit == 0 {
            revs.len()
        } else {
            limit.min(revs.len())
        };
        let mut kvs = Vec::with_capacity(take);
        for rev in &revs[..take] {
            let rec = b
                .get(*rev)?
                .ok_or_else(|| Error::Corrupt(format!("missing record at revision {rev:?}")))?;
            kvs.push(rec.kv);
        }
        if filtered {
            kvs.retain(|kv| {
                (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
            });
        }
        if sort_order != range_request::SortOrder::None {
            sort_kvs(&mut kvs, req.sort_target());
            if sort_order == range_request::SortOrder::Descend {
                kvs.reverse();
            }
        }
        let more = if needs_all {
            let more = limit > 0 && kvs.len() > limit;
            if more {
                kvs.truncate(limit);
            }
            more
        } else {
            limit > 0 && revs.len() > limit
        };
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        if req.count_only {
            return Ok(RangeResponse {
                count: kvs.len() as i64,
                ..Default::default()
            });
        }
        Ok(RangeResponse {
            header: None,
            kvs,
            more,
            count,
        })
    }

    /// Whether one comparison holds for every key of its range as of `at`.
    fn compare_at<B: Backend + ?Sized>(&self, b: &B, c: &Compare, at: i64) -> Result<bool> {
        let revs = self.live_in_range(&c.key, &c.range_end, at);
        if revs.is_empty() {
            if c.target() == compare::CompareTarget::Value {
                // A missing key has no value to compare, not an empty one.
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        for rev in revs {
            let rec = b
                .get(rev)?
                .ok_or_else(|| Error::Corrupt(format!("missing record at revision {rev:?}")))?;
            if !compare_kv(c, &rec.kv) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Serves a Txn that only reads (see [`txn_is_read_only`]) without a write lock.
    pub fn read_txn<B: Backend + ?Sized>(&self, b: &B, req: &TxnRequest) -> Result<TxnResponse> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare_at(b, c, self.current)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op.request.as_ref() {
                Some(request_op::Request::RequestRange(r)) => {
                    response_op::Response::ResponseRange(self.range(b, r)?)
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    response_op::Response::ResponseTxn(self.read_txn(b, t)?)
                }
                _ => {
                    return Err(Error::InvalidArgument(
                        "write inside a read-only txn".into(),
                    ))
                }
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    /// Starts a write transaction at the next revision; puts naming a lease for which
    /// `lease_exists` is false fail.
    pub fn write<'a, B: Backend + ?Sized>(
        &'a mut self,
        backend: &'a B,
        lease_exists: &'a dyn Fn(i64) -> bool,
    ) -> WriteTxn<'a, B> {
        let revision = self.current + 1;
        let size_before = self.size;
        WriteTxn {
            mvcc: self,
            backend,
            lease_exists,
            pending: BTreeMap::new(),
            revision,
            changes: Changes::default(),
            undo: Vec::new(),
            touched: std::collections::HashSet::new(),
            events_prev_kv: true,
            size_before,
        }
    }

    /// Compacts history at `rev`: reads below it fail afterwards.
    pub fn compact(&mut self, rev: i64) -> Result<Compaction> {
        if rev <= self.compacted {
            return Err(Error::Compacted {
                compact_revision: self.compacted,
            });
        }
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        let mut removed = Vec::new();
        self.index.retain(|_, h| {
            removed.extend(h.compact(rev));
            !h.revs.is_empty()
        });
        self.compacted = rev;
        Ok(Compaction { removed })
    }

    /// Accounts for records a compaction removed from the backend.
    pub fn release(&mut self, bytes: u64) {
        self.size = self.size.saturating_sub(bytes);
    }

    /// The events of revisions `from..=to`, in order, grouped by revision, with `prev_kv`.
    pub fn events<B: Backend + ?Sized>(
        &self,
        b: &B,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Vec<Event>)>> {
        if from <= self.compacted && from <= to {
            return Err(Error::Compacted {
                compact_revision: self.compacted,
            });
        }
        let mut out: Vec<(i64, Vec<Event>)> = Vec::new();
        for (rev, rec) in b.scan(from, to)? {
            let prev_kv = match self.index.get(&rec.kv.key).and_then(|h| h.live_before(rev)) {
                Some(p) => b.get(p)?.map(|r| r.kv),
                None => None,
            };
            let event = record_event(rec, prev_kv);
            match out.last_mut() {
                Some((r, evs)) if *r == rev.main => evs.push(event),
                _ => out.push((rev.main, vec![event])),
            }
        }
        Ok(out)
    }

    /// A CRC-32 over every record from the compaction point to `rev` (etcd's HashKV):
    /// members that applied the same history agree on it.
    pub fn hash_kv<B: Backend + ?Sized>(&self, b: &B, rev: i64) -> Result<u32> {
        let at = self.check_read_revision(rev)?;
        let mut h = crc32fast::Hasher::new();
        for (r, rec) in b.scan(self.compacted.max(1), at)? {
            // Compaction keeps the newest record of each live key below the compaction
            // point, so such records are hashed too; they are the same on every member.
            h.update(&r.to_bytes());
            h.update(&rec.encode());
        }
        // Records kept by compaction below the compaction revision.
        let kept: Vec<Revision> = self
            .index
            .values()
            .filter_map(|hist| hist.revs.first().map(|(r, _)| *r))
            .filter(|r| r.main < self.compacted.max(1))
            .collect();
        let mut kept = kept;
        kept.sort();
        for r in kept {
            if let Some(rec) = b.get(r)? {
                h.update(&r.to_bytes());
                h.update(&rec.encode());
            }
        }
        Ok(h.finalize())
    }
}

fn record_event(rec: Record, prev_kv: Option<KeyValue>) -> Event {
    Event {
        r#type: if rec.tombstone {
            EventType::Delete as i32
        } else {
            EventType::Put as i32
        },
        kv: Some(rec.kv),
        prev_kv,
    }
}

fn sort_kvs(kvs: &mut [KeyValue], target: range_request::SortTarget) {
    use range_request::SortTarget as T;
    match target {
        T::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
        T::Version => kvs.sort_by_key(|kv| kv.version),
        T::Create => kvs.sort_by_key(|kv| kv.create_revision),
        T::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        T::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult as R, TargetUnion as U};
    let ord = match c.target_union.as_ref() {
        Some(U::Version(v)) => kv.version.cmp(v),
        Some(U::CreateRevision(v)) => kv.create_revision.cmp(v),
        Some(U::ModRevision(v)) => kv.mod_revision.cmp(v),
        Some(U::Value(v)) => kv.value.as_slice().cmp(v.as_slice()),
        Some(U::Lease(v)) => kv.lease.cmp(v),
        // No target value: compare against the target's zero value, as etcd does.
        None => match c.target() {
            compare::CompareTarget::Value => kv.value.as_slice().cmp(&[][..]),
            compare::CompareTarget::Version => kv.version.cmp(&0),
            compare::CompareTarget::Create => kv.create_revision.cmp(&0),
            compare::CompareTarget::Mod => kv.mod_revision.cmp(&0),
            compare::CompareTarget::Lease => kv.lease.cmp(&0),
        },
    };
    match c.result() {
        R::Equal => ord.is_eq(),
        R::Greater => ord.is_gt(),
        R::Less => ord.is_lt(),
        R::NotEqual => ord.is_ne(),
    }
}

/// A write transaction: one revision, any number of changes; reads inside it see its
/// own writes.
pub struct WriteTxn<'a, B: Backend + ?Sized> {
    mvcc: &'a mut Mvcc,
    backend: &'a B,
    lease_exists: &'a dyn Fn(i64) -> bool,
    pending: BTreeMap<Revision, Record>,
    revision: i64,
    changes: Changes,
    /// Each touched key's history as it was before, so that [`WriteTxn::abort`] can undo.
    undo: Vec<(Vec<u8>, Option<KeyHistory>)>,
    /// The keys in `undo`, for a constant-time check (a delete may touch many keys).
    touched: std::collections::HashSet<Vec<u8>>,
    events_prev_kv: bool,
    size_before: u64,
}

/// Reads through a transaction's pending records, then the backend.
struct Overlay<'b, B: Backend + ?Sized> {
    pending: &'b BTreeMap<Revision, Record>,
    backend: &'b B,
}

impl<B: Backend + ?Sized> Backend for Overlay<'_, B> {
    fn get(&self, rev: Revision) -> Result<Option<Record>> {
        match self.pending.get(&rev) {
            Some(r) => Ok(Some(r.clone())),
            None => self.backend.get(rev),
        }
    }

    fn scan(&self, from_main: i64, to_main: i64) -> Result<Vec<(Revision, Record)>> {
        let mut all = self.backend.scan(from_main, to_main)?;
        all.extend(Backend::scan(self.pending, from_main, to_main)?);
        all.sort_by_key(|(r, _)| *r);
        Ok(all)
    }
}

impl<B: Backend + ?Sized> WriteTxn<'_, B> {
    fn next_rev(&self) -> Revision {
        Revision {
            main: self.revision,
            sub: self.changes.records.len() as i64,
        }
    }

    fn wrote(&self) -> bool {
        !self.changes.records.is_empty()
    }

    fn overlay(&self) -> Overlay<'_, B> {
        Overlay {
            pending: &self.pending,
            backend: self.backend,
        }
    }

    /// The revision reads inside this transaction see: its own, once it has written.
    fn read_rev(&self) -> i64 {
        if self.wrote() {
            self.revision
        } else {
            self.mvcc.current
        }
    }

    fn record(&mut self, rec: Record, prev: Option<KeyValue>) {
        let rev = self.next_rev();
        self.mvcc.size += rec.cost();
        if self.touched.insert(rec.kv.key.clone()) {
            let before = self.mvcc.index.get(&rec.kv.key).cloned();
            self.undo.push((rec.kv.key.clone(), before));
        }
        let h = self.mvcc.index.entry(rec.kv.key.clone()).or_default();
        let old_lease = if h.is_live() { h.lease } else { 0 };
        h.revs.push((rev, rec.tombstone));
        if rec.tombstone {
            h.create = 0;
            h.version = 0;
            h.lease = 0;
        } else {
            h.create = rec.kv.create_revision;
            h.version = rec.kv.version;
            h.lease = rec.kv.lease;
        }
        let new_lease = if rec.tombstone { 0 } else { rec.kv.lease };
        if old_lease != new_lease {
            self.changes
                .lease_moves
                .push((rec.kv.key.clone(), old_lease, new_lease));
        }
        self.changes.events.push(record_event(rec.clone(), prev));
        self.pending.insert(rev, rec.clone());
        self.changes.records.push((rev, rec));
    }

    /// The key's current value; without `with_value`, only what the index knows (no
    /// backend read: a large delete or a busy put path then costs no disk reads).
    fn current_kv(&self, key: &[u8], with_value: bool) -> Result<Option<KeyValue>> {
        let Some(h) = self.mvcc.index.get(key) else {
            return Ok(None);
        };
        match h.live_at(self.read_rev()) {
            Some(rev) if with_value => Ok(self.overlay().get(rev)?.map(|r| r.kv)),
            Some(rev) => Ok(Some(KeyValue {
                key: key.to_vec(),
                create_revision: h.create,
                mod_revision: rev.main,
                version: h.version,
                value: Vec::new(),
                lease: h.lease,
            })),
            None => Ok(None),
        }
    }

    /// Whether events carry `prev_kv` (true by default). Without, writes skip reading
    /// old values nobody asked for; the store turns it off while no watcher wants them.
    pub fn prev_kv_in_events(mut self, yes: bool) -> Self {
        self.events_prev_kv = yes;
        self
    }

    /// Applies a Put.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let with_value = req.prev_kv || req.ignore_value || self.events_prev_kv;
        let prev = self.current_kv(&req.key, with_value)?;
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease {
            prev.as_ref().map_or(0, |p| p.lease)
        } else {
            req.lease
        };
        if lease != 0 && !(self.lease_exists)(lease) {
            return Err(Error::LeaseNotFound);
        }
        let rev = self.next_rev();
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(rev.main, |p| p.create_revision),
            mod_revision: rev.main,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        let event_prev = if self.events_prev_kv {
            prev.clone()
        } else {
            None
        };
        self.record(
            Record {
                kv,
                tombstone: false,
            },
            event_prev,
        );
        Ok(PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// Applies a DeleteRange.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let live = self
            .mvcc
            .live_keys_in_range(&req.key, &req.range_end, self.read_rev());
        let with_value = req.prev_kv || self.events_prev_kv;
        let mut prev_kvs = Vec::new();
        for (key, rev) in &live {
            let prev = if with_value {
                Some(
                    self.overlay()
                        .get(*rev)?
                        .ok_or_else(|| {
                            Error::Corrupt(format!("missing record at revision {rev:?}"))
                        })?
                        .kv,
                )
            } else {
                None
            };
            let tomb = KeyValue {
                key: key.clone(),
                mod_revision: self.revision,
                ..Default::default()
            };
            let event_prev = if self.events_prev_kv {
                prev.clone()
            } else {
                None
            };
            self.record(
                Record {
                    kv: tomb,
                    tombstone: true,
                },
                event_prev,
            );
            if req.prev_kv {
                prev_kvs.extend(prev);
            }
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted: live.len() as i64,
            prev_kvs,
        })
    }

    /// Applies a Txn: compares against the state before the (outermost) transaction, as
    /// etcd does for nested txns too, then runs one branch.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self
                .mvcc
                .compare_at(&self.overlay(), c, self.mvcc.current)?
            {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(self.op(op)?);
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn op(&mut self, op: &RequestOp) -> Result<ResponseOp> {
        let response = match op.request.as_ref() {
            Some(request_op::Request::RequestRange(r)) => {
                let mut r = r.clone();
                if r.revision == 0 {
                    r.revision = self.read_rev();
                }
                // A range inside a txn that already wrote reads its own revision,
                // which the index has but `current` does not count yet.
                let saved = self.mvcc.current;
                self.mvcc.current = self.read_rev();
                let res = self.mvcc.range(&self.overlay(), &r);
                self.mvcc.current = saved;
                response_op::Response::ResponseRange(res?)
            }
            Some(request_op::Request::RequestPut(p)) => {
                response_op::Response::ResponsePut(self.put(p)?)
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                response_op::Response::ResponseDeleteRange(self.delete_range(d)?)
            }
            Some(request_op::Request::RequestTxn(t)) => {
                response_op::Response::ResponseTxn(self.txn(t)?)
            }
            None => return Err(Error::InvalidArgument("empty request op in txn".into())),
        };
        Ok(ResponseOp {
            response: Some(response),
        })
    }

    /// Undoes everything this transaction did to the index (it failed half-way).
    pub fn abort(self) {
        for (key, before) in self.undo.into_iter().rev() {
            match before {
                Some(h) => {
                    self.mvcc.index.insert(key, h);
                }
                None => {
                    self.mvcc.index.remove(&key);
                }
            }
        }
        self.mvcc.size = self.size_before;
    }

    /// Bytes stored, counting what this transaction wrote so far.
    pub fn total_bytes(&self) -> u64 {
        self.mvcc.size
    }

    /// Bytes the records written so far add to the store.
    pub fn added_bytes(&self) -> u64 {
        self.mvcc.size.saturating_sub(self.size_before)
    }

    /// Ends the transaction: the revision advances only if something changed.
    pub fn finish(self) -> Changes {
        let mut changes = self.changes;
        if !changes.records.is_empty() {
            self.mvcc.current = self.revision;
        }
        changes.revision = self.mvcc.current;
        changes
    }
}

/// Checks a Txn the way etcd does before it is proposed: no key written twice in one
/// branch (a put and an overlapping delete count), bounded size and depth.
pub fn validate_txn(req: &TxnRequest, max_ops: usize) -> Result<()> {
    if req.success.len() > max_ops || req.failure.len() > max_ops || req.compare.len() > max_ops {
        return Err(Error::TooManyOps);
    }
    for c in &req.compare {
        if c.key.is_empty() {
            return Err(Error::EmptyKey);
        }
    }
    for branch in [&req.success, &req.failure] {
        let mut puts: Vec<Vec<u8>> = Vec::new();
        let mut dels: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        collect_writes(branch, &mut puts, &mut dels, max_ops, 0)?;
    }
    Ok(())
}

fn collect_writes(
    ops: &[RequestOp],
    puts: &mut Vec<Vec<u8>>,
    dels: &mut Vec<(Vec<u8>, Vec<u8>)>,
    max_ops: usize,
    depth: usize,
) -> Result<()> {
    if depth > 16 {
        return Err(Error::TooManyOps);
    }
    for op in ops {
        match op.request.as_ref() {
            Some(request_op::Request::RequestPut(p)) => {
                if p.key.is_empty() {
                    return Err(Error::EmptyKey);
                }
                if puts.contains(&p.key) || dels.iter().any(|(s, e)| in_range(&p.key, s, e)) {
                    return Err(Error::DuplicateKey);
                }
                puts.push(p.key.clone());
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                if d.key.is_empty() {
                    return Err(Error::EmptyKey);
                }
                if puts.iter().any(|k| in_range(k, &d.key, &d.range_end)) {
                    return Err(Error::DuplicateKey);
                }
                dels.push((d.key.clone(), d.range_end.clone()));
            }
            Some(request_op::Request::RequestRange(r)) => {
                if r.key.is_empty() {
                    return Err(Error::EmptyKey);
                }
            }
            Some(request_op::Request::RequestTxn(t)) => {
                if t.success.len() > max_ops || t.failure.len() > max_ops {
                    return Err(Error::TooManyOps);
                }
                // Only one of the nested branches runs, so each is checked against the
                // writes before it separately, as etcd does; either may run, so the writes
                // after the nested txn are checked against both.
                let (outer_puts, outer_dels) = (puts.len(), dels.len());
                let mut nested_puts = Vec::new();
                let mut nested_dels = Vec::new();
                for branch in [&t.success, &t.failure] {
                    let mut p = puts.clone();
                    let mut d = dels.clone();
                    collect_writes(branch, &mut p, &mut d, max_ops, depth + 1)?;
                    nested_puts.extend(p.drain(outer_puts..));
                    nested_dels.extend(d.drain(outer_dels..));
                }
                puts.extend(nested_puts);
                dels.extend(nested_dels);
            }
            None => return Err(Error::InvalidArgument("empty request op in txn".into())),
        }
    }
    Ok(())
}

/// Whether a Txn only reads (then it is served like a Range, without the Raft log).
pub fn txn_is_read_only(req: &TxnRequest) -> bool {
    fn ops_read_only(ops: &[RequestOp]) -> bool {
        ops.iter().all(|op| match op.request.as_ref() {
            Some(request_op::Request::RequestRange(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_is_read_only(t),
            _ => false,
        })
    }
    ops_read_only(&req.success) && ops_read_only(&req.failure)
}

#[cfg(test)]
mod tests;
