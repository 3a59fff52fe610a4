//! Random operation sequences against [`Mvcc`] and against a reference model that keeps a
//! full copy of the key space for every revision, so that the model is correct by
//! inspection: revision `r`'s map is the state after the write that took revision `r`.

use std::fmt::Debug;

use proptest::prelude::*;
use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use skiff_proto::etcdserverpb::range_request::{SortOrder, SortTarget};

use super::*;

/// Keys, several sharing a prefix.
const KEYS: [&[u8]; 6] = [b"a", b"ab", b"abc", b"b", b"ba", b"c"];
/// Values, few so that compares and sorts meet equal ones.
const VALUES: [&[u8]; 4] = [b"", b"x", b"y", b"zz"];
/// The one lease ID that is not granted.
const MISSING_LEASE: i64 = 9;

fn lease_exists(id: i64) -> bool {
    id != MISSING_LEASE
}

/// An error as the comparison sees it.
fn err(e: Error) -> String {
    format!("{e:?}")
}

// ---------------------------------------------------------------------------------------
// The model.

type State = BTreeMap<Vec<u8>, KeyValue>;

/// Whether `key` is in the request range `key..range_end` as etcd defines it.
fn covers(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        _ => start <= key && key < end,
    }
}

struct Model {
    /// `snaps[r]`: every live key after revision `r` (`snaps[0]` is empty).
    snaps: Vec<State>,
    /// `events[r]`: what revision `r` changed, in order (`events[0]` is empty).
    events: Vec<Vec<Event>>,
    compacted: i64,
}

/// Events grouped by revision, as `Mvcc::events` returns them.
type History = Vec<(i64, Vec<Event>)>;

/// What a successful model write produced: its events and lease moves.
type Written = (Vec<Event>, Vec<(Vec<u8>, i64, i64)>);

impl Model {
    fn new() -> Model {
        Model {
            snaps: vec![State::new()],
            events: vec![Vec::new()],
            compacted: 0,
        }
    }

    fn current(&self) -> i64 {
        self.snaps.len() as i64 - 1
    }

    fn now(&self) -> &State {
        self.snaps.last().unwrap()
    }

    /// Which snapshot a read at `rev` sees.
    fn read_at(&self, rev: i64) -> std::result::Result<&State, String> {
        if rev <= 0 {
            Ok(self.now())
        } else if rev > self.current() {
            Err(err(Error::FutureRevision))
        } else if rev < self.compacted {
            Err(err(Error::Compacted {
                compact_revision: self.compacted,
            }))
        } else {
            Ok(&self.snaps[rev as usize])
        }
    }

    fn range(&self, r: &RangeRequest) -> std::result::Result<RangeResponse, String> {
        Ok(range_of(self.read_at(r.revision)?, r))
    }

    /// Runs `f` as one write: kept (as one new revision, if it changed anything) when it
    /// succeeds, forgotten when it fails.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Draft<'_>) -> std::result::Result<T, String>,
    ) -> std::result::Result<(T, Written), String> {
        let mut d = Draft {
            model: &*self,
            state: self.now().clone(),
            rev: self.current() + 1,
            events: Vec::new(),
            moves: Vec::new(),
        };
        let t = f(&mut d)?;
        let Draft {
            state,
            events,
            moves,
            ..
        } = d;
        if !events.is_empty() {
            self.snaps.push(state);
            self.events.push(events.clone());
        }
        Ok((t, (events, moves)))
    }

    fn compact(&mut self, rev: i64) -> std::result::Result<(), String> {
        if rev <= self.compacted {
            return Err(err(Error::Compacted {
                compact_revision: self.compacted,
            }));
        }
        if rev > self.current() {
            return Err(err(Error::FutureRevision));
        }
        self.compacted = rev;
        Ok(())
    }

    fn events(&self, from: i64, to: i64) -> std::result::Result<History, String> {
        if from <= self.compacted && from <= to {
            return Err(err(Error::Compacted {
                compact_revision: self.compacted,
            }));
        }
        Ok((from..=to.min(self.current()))
            .map(|r| (r, self.events[r as usize].clone()))
            .collect())
    }
}

/// A write in progress: the state as it will be after it, at revision `rev`.
struct Draft<'m> {
    model: &'m Model,
    state: State,
    rev: i64,
    events: Vec<Event>,
    moves: Vec<(Vec<u8>, i64, i64)>,
}

impl Draft<'_> {
    fn put(&mut self, p: &PutRequest) -> std::result::Result<PutResponse, String> {
        let prev = self.state.get(&p.key).cloned();
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(err(Error::KeyNotFound));
        }
        let value = match &prev {
            Some(prev) if p.ignore_value => prev.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match &prev {
            Some(prev) if p.ignore_lease => prev.lease,
            _ => p.lease,
        };
        if lease != 0 && !lease_exists(lease) {
            return Err(err(Error::LeaseNotFound));
        }
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(self.rev, |p| p.create_revision),
            mod_revision: self.rev,
            version: prev.as_ref().map_or(0, |p| p.version) + 1,
            value,
            lease,
        };
        let old_lease = prev.as_ref().map_or(0, |p| p.lease);
        if old_lease != lease {
            self.moves.push((p.key.clone(), old_lease, lease));
        }
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: prev.clone(),
        });
        self.state.insert(p.key.clone(), kv);
        Ok(PutResponse {
            header: None,
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let keys: Vec<Vec<u8>> = (self.state.keys())
            .filter(|k| covers(k, &d.key, &d.range_end))
            .cloned()
            .collect();
        let mut prev_kvs = Vec::new();
        for key in keys {
            let prev = self.state.remove(&key).unwrap();
            if prev.lease != 0 {
                self.moves.push((key.clone(), prev.lease, 0));
            }
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key,
                    mod_revision: self.rev,
                    ..Default::default()
                }),
                prev_kv: Some(prev.clone()),
            });
            prev_kvs.push(prev);
        }
        DeleteRangeResponse {
            header: None,
            deleted: prev_kvs.len() as i64,
            prev_kvs: if d.prev_kv { prev_kvs } else { Vec::new() },
        }
    }

    /// A range inside the txn: its own writes, or an explicit past revision.
    fn range(&self, r: &RangeRequest) -> std::result::Result<RangeResponse, String> {
        if r.revision == 0 {
            Ok(range_of(&self.state, r))
        } else {
            self.model.range(r)
        }
    }

    /// A txn: every compare, nested ones too, sees the state before the whole write.
    fn txn(&mut self, t: &TxnRequest) -> std::result::Result<TxnResponse, String> {
        let before = self.model.now();
        let succeeded = t.compare.iter().all(|c| compare_holds(before, c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::new();
        for op in ops {
            use request_op::Request as Q;
            use response_op::Response as S;
            let response = match op.request.as_ref().unwrap() {
                Q::RequestRange(r) => S::ResponseRange(self.range(r)?),
                Q::RequestPut(p) => S::ResponsePut(self.put(p)?),
                Q::RequestDeleteRange(d) => S::ResponseDeleteRange(self.delete(d)),
                Q::RequestTxn(t) => S::ResponseTxn(self.txn(t)?),
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
}

/// A Range over one snapshot. Sorting is by the target, ties in key order (reversed
/// as a whole for a descending sort); without a sort order, keys come in key order, and
/// a non-key target alone means ascending.
fn range_of(state: &State, r: &RangeRequest) -> RangeResponse {
    let mut kvs: Vec<KeyValue> = (state.values())
        .filter(|kv| covers(&kv.key, &r.key, &r.range_end))
        .cloned()
        .collect();
    let count = kvs.len() as i64;
    if r.count_only {
        return RangeResponse {
            count,
            ..Default::default()
        };
    }
    let order = match (r.sort_order(), r.sort_target()) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    if order != SortOrder::None {
        let field = |kv: &KeyValue| match r.sort_target() {
            SortTarget::Key => (0, kv.key.clone()),
            SortTarget::Version => (kv.version, Vec::new()),
            SortTarget::Create => (kv.create_revision, Vec::new()),
            SortTarget::Mod => (kv.mod_revision, Vec::new()),
            SortTarget::Value => (0, kv.value.clone()),
        };
        kvs.sort_by(|a, b| field(a).cmp(&field(b)).then_with(|| a.key.cmp(&b.key)));
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() as i64 > r.limit {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse {
        header: None,
        kvs,
        more,
        count,
    }
}

/// Whether a compare holds for every key in its range; with no key, the numeric targets
/// compare a zero, and a value compare fails.
fn compare_holds(state: &State, c: &Compare) -> bool {
    let kvs: Vec<&KeyValue> = (state.values())
        .filter(|kv| covers(&kv.key, &c.key, &c.range_end))
        .collect();
    if kvs.is_empty() {
        return c.target() != CompareTarget::Value && compare_one(&KeyValue::default(), c);
    }
    kvs.into_iter().all(|kv| compare_one(kv, c))
}

fn compare_one(kv: &KeyValue, c: &Compare) -> bool {
    let ord = match c.target_union.as_ref().unwrap() {
        TargetUnion::Value(v) => kv.value.cmp(v),
        TargetUnion::Version(v) => kv.version.cmp(v),
        TargetUnion::CreateRevision(v) => kv.create_revision.cmp(v),
        TargetUnion::ModRevision(v) => kv.mod_revision.cmp(v),
        TargetUnion::Lease(v) => kv.lease.cmp(v),
    };
    match c.result() {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

/// Whether some way through one txn branch (each nested txn taking either of its
/// branches) writes a key twice: two puts, or a put inside a delete's range.
fn writes_a_key_twice(ops: &[RequestOp]) -> bool {
    paths(ops).iter().any(|writes| {
        let puts: Vec<&Vec<u8>> = (writes.iter())
            .filter_map(|(k, end)| end.is_none().then_some(k))
            .collect();
        let dels: Vec<(&Vec<u8>, &Vec<u8>)> = (writes.iter())
            .filter_map(|(k, end)| end.as_ref().map(|e| (k, e)))
            .collect();
        let twice = (puts.iter().enumerate()).any(|(i, k)| puts[i + 1..].contains(k));
        twice || (puts.iter()).any(|k| dels.iter().any(|(s, e)| covers(k, s, e)))
    })
}

/// The writes of one way through a txn branch: `(key, None)` a put, `(key, Some(end))`
/// a delete.
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The writes of every way through `ops`.
fn paths(ops: &[RequestOp]) -> Vec<Writes> {
    let mut all = vec![Vec::new()];
    for op in ops {
        all = match op.request.as_ref().unwrap() {
            request_op::Request::RequestPut(p) => all
                .into_iter()
                .map(|mut w| {
                    w.push((p.key.clone(), None));
                    w
                })
                .collect(),
            request_op::Request::RequestDeleteRange(d) => (all.into_iter())
                .map(|mut w| {
                    w.push((d.key.clone(), Some(d.range_end.clone())));
                    w
                })
                .collect(),
            request_op::Request::RequestRange(_) => all,
            request_op::Request::RequestTxn(t) => {
                let nested: Vec<_> = paths(&t.success)
                    .into_iter()
                    .chain(paths(&t.failure))
                    .collect();
                (all.iter())
                    .flat_map(|w| nested.iter().map(move |n| [w.clone(), n.clone()].concat()))
                    .collect()
            }
        };
    }
    all
}

// ---------------------------------------------------------------------------------------
// Operations, as generated: indices into KEYS and VALUES, and revision selectors that are
// turned into revisions against the current one when the operation runs.

#[derive(Debug, Clone, Copy)]
enum End {
    /// Just the key.
    Single,
    /// Every key with the key as prefix.
    Prefix,
    /// Every key from the key on (`\0`).
    FromOn,
    /// Up to (excluding) another key, which may sort before the start.
    To(usize),
}

#[derive(Debug, Clone, Copy)]
struct Span {
    /// An index into KEYS; `None` is the key `\0`, below every key.
    start: Option<usize>,
    end: End,
}

impl Span {
    fn key(&self) -> Vec<u8> {
        self.start.map_or(vec![0], |i| KEYS[i].to_vec())
    }

    fn range_end(&self) -> Vec<u8> {
        match self.end {
            End::Single => Vec::new(),
            End::Prefix => {
                // The test's keys never end in 0xff.
                let mut end = self.key();
                *end.last_mut().unwrap() += 1;
                end
            }
            End::FromOn => vec![0],
            End::To(i) => KEYS[i].to_vec(),
        }
    }
}

#[derive(Debug, Clone)]
struct PutOp {
    key: usize,
    value: usize,
    lease: i64,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
}

impl PutOp {
    fn request(&self) -> PutRequest {
        PutRequest {
            key: KEYS[self.key].to_vec(),
            value: VALUES[self.value].to_vec(),
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

fn delete_request(span: &Span, prev_kv: bool) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: span.key(),
        range_end: span.range_end(),
        prev_kv,
    }
}

#[derive(Debug, Clone)]
struct ReadOp {
    span: Span,
    /// Picks the revision to read at.
    rev: u8,
    limit: i64,
    keys_only: bool,
    count_only: bool,
    order: SortOrder,
    target: SortTarget,
}

impl ReadOp {
    fn request(&self, revision: i64) -> RangeRequest {
        RangeRequest {
            key: self.span.key(),
            range_end: self.span.range_end(),
            limit: self.limit,
            revision,
            sort_order: self.order as i32,
            sort_target: self.target as i32,
            keys_only: self.keys_only,
            count_only: self.count_only,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
struct CmpOp {
    span: Span,
    target: CompareTarget,
    result: CompareResult,
    value: usize,
    /// Picks the number compared with.
    num: u8,
}

impl CmpOp {
    fn compare(&self, current: i64) -> Compare {
        let n = i64::from(self.num);
        let target_union = match self.target {
            CompareTarget::Value => TargetUnion::Value(VALUES[self.value].to_vec()),
            CompareTarget::Version => TargetUnion::Version(n % 4),
            CompareTarget::Create => TargetUnion::CreateRevision(n % (current + 2)),
            CompareTarget::Mod => TargetUnion::ModRevision(n % (current + 2)),
            CompareTarget::Lease => TargetUnion::Lease(n % 3),
        };
        Compare {
            result: self.result as i32,
            target: self.target as i32,
            key: self.span.key(),
            range_end: self.span.range_end(),
            target_union: Some(target_union),
        }
    }
}

#[derive(Debug, Clone)]
enum TxnOp {
    Put(PutOp),
    Delete(Span, bool),
    Range(ReadOp),
    Txn(TxnSpec),
}

#[derive(Debug, Clone)]
struct TxnSpec {
    compare: Vec<CmpOp>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl TxnSpec {
    fn request(&self, current: i64) -> TxnRequest {
        TxnRequest {
            compare: self.compare.iter().map(|c| c.compare(current)).collect(),
            success: self.success.iter().map(|o| o.request(current)).collect(),
            failure: self.failure.iter().map(|o| o.request(current)).collect(),
        }
    }
}

impl TxnOp {
    fn request(&self, current: i64) -> RequestOp {
        let request = match self {
            TxnOp::Put(p) => request_op::Request::RequestPut(p.request()),
            TxnOp::Delete(s, prev_kv) => {
                request_op::Request::RequestDeleteRange(delete_request(s, *prev_kv))
            }
            TxnOp::Range(r) => {
                // Its own writes (0) or a past revision, maybe a compacted one.
                let rev = if r.rev % 2 == 0 {
                    0
                } else {
                    i64::from(r.rev / 2) % (current + 1)
                };
                request_op::Request::RequestRange(r.request(rev))
            }
            TxnOp::Txn(t) => request_op::Request::RequestTxn(t.request(current)),
        };
        RequestOp {
            request: Some(request),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(PutOp),
    Delete(Span, bool),
    Txn(TxnSpec),
    Range(ReadOp),
    Compact(u8),
    Events(u8, u8),
    /// Rebuild the Mvcc from the backend, as a restart does.
    Restart,
}

/// Key ranges for writes and compares: mostly single keys.
fn span() -> impl Strategy<Value = Span> {
    spans([6, 3, 1, 2])
}

/// Key ranges for reads: more of them wide.
fn read_span() -> impl Strategy<Value = Span> {
    spans([3, 3, 2, 2])
}

/// Weights of the single key, prefix, from-key-on and up-to-key ranges.
fn spans([single, prefix, from_on, to]: [u32; 4]) -> impl Strategy<Value = Span> {
    let start = prop_oneof![9 => (0..KEYS.len()).prop_map(Some), 1 => Just(None)];
    let end = prop_oneof![
        single => Just(End::Single),
        prefix => Just(End::Prefix),
        from_on => Just(End::FromOn),
        to => (0..KEYS.len()).prop_map(End::To),
    ];
    (start, end).prop_map(|(start, end)| Span { start, end })
}

fn put_op() -> impl Strategy<Value = PutOp> {
    let lease = prop_oneof![6 => Just(0i64), 2 => Just(1), 2 => Just(2), 1 => Just(MISSING_LEASE)];
    (
        0..KEYS.len(),
        0..VALUES.len(),
        lease,
        any::<bool>(),
        0..16u8,
    )
        .prop_map(|(key, value, lease, prev_kv, ignore)| {
            // etcd refuses a value (lease) given together with ignore_value (ignore_lease).
            let ignore_value = ignore == 0 || ignore == 2;
            let ignore_lease = ignore == 1 || ignore == 2;
            PutOp {
                key,
                value: if ignore_value { 0 } else { value },
                lease: if ignore_lease { 0 } else { lease },
                prev_kv,
                ignore_value,
                ignore_lease,
            }
        })
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    let order = prop_oneof![
        3 => Just(SortOrder::None),
        1 => Just(SortOrder::Ascend),
        1 => Just(SortOrder::Descend),
    ];
    let target = prop_oneof![
        3 => Just(SortTarget::Key),
        1 => Just(SortTarget::Version),
        1 => Just(SortTarget::Create),
        1 => Just(SortTarget::Mod),
        1 => Just(SortTarget::Value),
    ];
    (
        read_span(),
        any::<u8>(),
        0..4i64,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
        order,
        target,
    )
        .prop_map(
            |(span, rev, limit, keys_only, count_only, order, target)| ReadOp {
                span,
                rev,
                limit,
                keys_only,
                count_only,
                order,
                target,
            },
        )
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    let target = prop_oneof![
        Just(CompareTarget::Value),
        Just(CompareTarget::Version),
        Just(CompareTarget::Create),
        Just(CompareTarget::Mod),
        Just(CompareTarget::Lease),
    ];
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::NotEqual),
        Just(CompareResult::Greater),
        Just(CompareResult::Less),
    ];
    (span(), target, result, 0..VALUES.len(), any::<u8>()).prop_map(
        |(span, target, result, value, num)| CmpOp {
            span,
            target,
            result,
            value,
            num,
        },
    )
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        3 => put_op().prop_map(TxnOp::Put),
        1 => (span(), any::<bool>()).prop_map(|(s, p)| TxnOp::Delete(s, p)),
        2 => read_op().prop_map(TxnOp::Range),
    ]
}

/// A txn whose branches may hold txns one level deeper.
fn txn_spec() -> impl Strategy<Value = TxnSpec> {
    use proptest::collection::vec;
    let nested = (
        vec(cmp_op(), 0..2),
        vec(txn_op(), 0..3),
        vec(txn_op(), 0..3),
    )
        .prop_map(|(compare, success, failure)| {
            TxnOp::Txn(TxnSpec {
                compare,
                success,
                failure,
            })
        });
    let op = prop_oneof![6 => txn_op(), 1 => nested];
    (vec(cmp_op(), 0..3), vec(op.clone(), 0..4), vec(op, 0..4)).prop_map(
        |(compare, success, failure)| TxnSpec {
            compare,
            success,
            failure,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => put_op().prop_map(Op::Put),
        2 => (span(), any::<bool>()).prop_map(|(s, p)| Op::Delete(s, p)),
        6 => txn_spec().prop_map(Op::Txn),
        4 => read_op().prop_map(Op::Range),
        1 => any::<u8>().prop_map(Op::Compact),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(f, t)| Op::Events(f, t)),
        1 => Just(Op::Restart),
    ]
}

// ---------------------------------------------------------------------------------------
// Running both side by side.

struct Harness {
    m: Mvcc,
    b: Mem,
    model: Model,
}

/// The same outcome, or a panic naming what differed.
fn same<T: PartialEq + Debug>(what: &str, got: Result<T>, want: std::result::Result<T, String>) {
    match (got, want) {
        (Ok(g), Ok(w)) => assert_eq!(g, w, "{what}"),
        (Err(g), Err(w)) => assert_eq!(err(g), w, "{what}"),
        (g, w) => panic!("{what}: got {g:?}, want {w:?}"),
    }
}

impl Harness {
    fn new() -> Harness {
        Harness {
            m: Mvcc::default(),
            b: Mem::new(),
            model: Model::new(),
        }
    }

    /// Runs one write on both; checks the answers and the changes it produced.
    fn write<T: PartialEq + Debug>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut WriteTxn<'_, Mem>) -> Result<T>,
        g: impl FnOnce(&mut Draft<'_>) -> std::result::Result<T, String>,
    ) {
        let got = write(&mut self.m, &mut self.b, &lease_exists, f);
        let want = self.model.write(g);
        match (got, want) {
            (Ok((g, changes)), Ok((w, (events, moves)))) => {
                assert_eq!(g, w, "{what}");
                let rev = self.model.current();
                assert_eq!(changes.revision, rev, "{what}: revision");
                assert_eq!(changes.events, events, "{what}: events");
                assert_eq!(changes.lease_moves, moves, "{what}: lease moves");
                assert_eq!(changes.records.len(), events.len(), "{what}: records");
                for (i, ((r, rec), ev)) in changes.records.iter().zip(&events).enumerate() {
                    assert_eq!(
                        *r,
                        Revision {
                            main: rev,
                            sub: i as i64
                        },
                        "{what}: record revision"
                    );
                    assert_eq!(Some(&rec.kv), ev.kv.as_ref(), "{what}: record");
                    assert_eq!(rec.tombstone, ev.r#type == EventType::Delete as i32);
                }
            }
            (Err(g), Err(w)) => assert_eq!(err(g), w, "{what}"),
            (g, w) => panic!("{what}: got {g:?}, want {w:?}"),
        }
    }

    fn run(&mut self, op: &Op) {
        let current = self.model.current();
        match op {
            Op::Put(p) => {
                let req = p.request();
                self.write("put", |w| w.put(&req), |d| d.put(&req));
            }
            Op::Delete(s, prev_kv) => {
                let req = delete_request(s, *prev_kv);
                self.write("delete", |w| w.delete_range(&req), |d| Ok(d.delete(&req)));
            }
            Op::Txn(t) => {
                let req = t.request(current);
                let invalid = writes_a_key_twice(&req.success) || writes_a_key_twice(&req.failure);
                match validate_txn(&req, 128) {
                    Ok(()) => assert!(!invalid, "validate_txn passed {req:?}"),
                    Err(Error::DuplicateKey) if invalid => return,
                    Err(e) => panic!("validate_txn: {e:?} for {req:?}"),
                }
                if txn_is_read_only(&req) {
                    let want = self.model.write(|d| d.txn(&req)).map(|(t, _)| t);
                    same("read-only txn", self.m.read_txn(&self.b, &req), want);
                }
                self.write("txn", |w| w.txn(&req), |d| d.txn(&req));
            }
            Op::Range(r) => {
                let req = r.request(i64::from(r.rev) % (current + 2));
                same("range", self.m.range(&self.b, &req), self.model.range(&req));
            }
            Op::Compact(rev) => {
                let rev = i64::from(*rev) % (current + 2);
                let got = compact(&mut self.m, &mut self.b, rev).map(|_| ());
                same("compact", got, self.model.compact(rev));
                self.check_history();
            }
            Op::Events(from, to) => {
                let (from, to) = (i64::from(*from), i64::from(*to));
                let (from, to) = (from % (current + 3), to % (current + 3));
                let got = self.m.events(&self.b, from, to);
                same("events", got, self.model.events(from, to));
            }
            Op::Restart => {
                self.m = self.restore();
                self.check_history();
            }
        }
        self.check_now();
    }

    /// A restart: the index rebuilt from the backend. It must be the same index.
    fn restore(&self) -> Mvcc {
        let m = &self.m;
        let restored = Mvcc::restore(self.b.clone(), m.current_revision(), m.compact_revision());
        assert_eq!(restored.size(), m.size(), "restored size");
        for rev in m.compact_revision()..=m.current_revision() {
            assert_eq!(
                restored.hash_kv(&self.b, rev).unwrap(),
                m.hash_kv(&self.b, rev).unwrap(),
                "restored hash at {rev}"
            );
        }
        restored
    }

    /// Cheap checks after every operation.
    fn check_now(&self) {
        let (m, model) = (&self.m, &self.model);
        assert_eq!(m.current_revision(), model.current(), "current revision");
        assert_eq!(m.compact_revision(), model.compacted, "compact revision");
        assert_eq!(m.key_count(), model.now().len(), "key count");
        let size: u64 = self.b.values().map(Record::cost).sum();
        assert_eq!(m.size(), size, "size of the records kept");
        for key in KEYS {
            let lease = model.now().get(key).map_or(0, |kv| kv.lease);
            assert_eq!(m.lease_of(key), lease, "lease of {key:?}");
        }
        let leased: Vec<(Vec<u8>, i64)> = m.leased_keys().map(|(k, l)| (k.to_vec(), l)).collect();
        let want: Vec<(Vec<u8>, i64)> = (model.now().values())
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.key.clone(), kv.lease))
            .collect();
        assert_eq!(leased, want, "leased keys");
    }

    /// Every revision read in full, the whole event history, and what compaction kept.
    fn check_history(&self) {
        let (m, b, model) = (&self.m, &self.b, &self.model);
        let current = model.current();
        let all = ReadOp {
            span: Span {
                start: None,
                end: End::FromOn,
            },
            rev: 0,
            limit: 0,
            keys_only: false,
            count_only: false,
            order: SortOrder::None,
            target: SortTarget::Key,
        };
        for rev in 0..=current + 1 {
            let req = all.request(rev);
            same(
                &format!("all keys at {rev}"),
                m.range(b, &req),
                model.range(&req),
            );
        }
        for from in 0..=current + 1 {
            let got = m.events(b, from, current);
            same(
                &format!("events from {from}"),
                got,
                model.events(from, current),
            );
        }
        // Below the compaction point only each key's value as of that point is kept.
        let compacted = model.compacted;
        let below = Revision {
            main: compacted + 1,
            sub: 0,
        };
        let old: Vec<&Record> = b.range(..below).map(|(_, rec)| rec).collect();
        assert!(old.iter().all(|rec| !rec.tombstone), "a tombstone kept");
        let kept: State = (old.iter())
            .map(|rec| (rec.kv.key.clone(), rec.kv.clone()))
            .collect();
        assert_eq!(kept.len(), old.len(), "two records of one key kept");
        assert_eq!(&kept, &model.snaps[compacted as usize], "records kept");
        let newer = b.len() - old.len();
        let changes: usize = model.events[compacted as usize + 1..]
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(newer, changes, "records after the compaction point");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mvcc_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = Harness::new();
        for op in &ops {
            h.run(op);
        }
        h.check_history();
        h.m = h.restore();
        h.check_history();
    }
}
