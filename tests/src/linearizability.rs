//! Linearizability checking of key-value histories.
//!
//! Each key is an independent register holding `Option<Value>`; linearizability is
//! compositional, so every key's sub-history is checked on its own (in parallel).
//!
//! The search is Wing & Gong's, with Lowe's memoization: the history becomes a list of call
//! and return events sorted by time; depth first, the search linearizes a pending call
//! (one before the first return in the list) whose recorded output the model accepts,
//! removing its call and return from the list, and backtracks when it reaches a return
//! whose operation it could not linearize. A configuration (set of linearized operations,
//! register state) already explored is not explored again.
//!
//! Operations with an unknown outcome (timed out, connection lost) are handled as follows:
//! an unknown read is dropped, since it constrains nothing; an unknown write has its
//! return at infinity and accepts any state, so it may take effect at any point after its
//! call, or never (linearized last, after everything else, it changes nothing observed).
//! Such writes can make the plain search exponential, because each one that stays pending
//! doubles the configurations. These reductions keep it tractable; each keeps the search
//! complete (a linearization exists iff it finds one):
//!
//! - calls whose outcome is known are tried before unknown ones, so an unknown write is
//!   only linearized when nothing else can go first;
//! - a configuration is skipped when one with the same known operations and state but a
//!   subset of its unknown writes was already explored: any linearization of the rest
//!   from the larger one works from the smaller one too, with the extra unknown writes
//!   appended at the end (nothing has to follow them in real time);
//! - a value that no remaining operation reads or compares against is replaced by one
//!   anonymous value, so states that differ only in an unread value merge;
//! - an unknown write is not tried when it would not change the state, when an
//!   interchangeable one was already tried at that point, or when it is a blind write
//!   right after another unknown write (only the last blind write of such a run matters).
//!
//! `agrees_with_brute_force_on_small_histories` compares the verdicts with the definition
//! on thousands of small random histories, linearizable and not.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::history::{opt_value, Input, Operation, Outcome, Output, Value};

/// Limits on the search.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Maximum search steps per key before giving up on that key.
    pub max_steps: Option<u64>,
    /// Wall-clock budget for the whole check.
    pub timeout: Option<Duration>,
    /// Keys checked in parallel (at least 1).
    pub threads: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_steps: None,
            // etcd's robustness suite gives porcupine five minutes; a run that needs more
            // than that is better reported as unknown than left hanging.
            timeout: Some(Duration::from_secs(300)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The verdict on a whole history.
#[derive(Clone, Debug)]
pub enum CheckResult {
    /// Every key's history is linearizable.
    Ok,
    /// Some key's history is not linearizable (the first such key is reported).
    Violation(Box<Violation>),
    /// The budget ran out on these keys before a verdict; no other key failed.
    Unknown {
        /// Keys without a verdict.
        keys: Vec<String>,
    },
}

impl CheckResult {
    /// Whether the history was found linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether a violation was found.
    pub fn is_violation(&self) -> bool {
        matches!(self, CheckResult::Violation(_))
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "linearizable"),
            CheckResult::Violation(v) => write!(f, "{v}"),
            CheckResult::Unknown { keys } => {
                write!(f, "unknown: search budget exceeded on keys {keys:?}")
            }
        }
    }
}

/// Why a key's history is not linearizable, from the longest linearizable prefix found.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The operation that the longest prefix could not be extended with before it returned.
    pub op: Operation,
    /// The register after the longest linearizable prefix found.
    pub state: Option<Value>,
    /// Length of that prefix.
    pub prefix_len: usize,
    /// Its last operations, in linearization order.
    pub prefix_tail: Vec<Operation>,
    /// Operations invoked before `op` returned and not in the prefix (at most 32).
    pub concurrent: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {}: not linearizable.", self.key)?;
        writeln!(
            f,
            "longest linearizable prefix: {} ops, leaving {}; it ends with",
            self.prefix_len,
            opt_value(self.state.as_ref())
        )?;
        for op in &self.prefix_tail {
            writeln!(f, "  {op}")?;
        }
        writeln!(f, "then no candidate fits before this returns:")?;
        writeln!(f, "  {}", self.op)?;
        if let Outcome::Ok { output, .. } = &self.op.outcome {
            if !output_matches_input(&self.op.input, output) {
                writeln!(f, "  (its output is not of its input's kind)")?;
            }
        }
        if !self.concurrent.is_empty() {
            writeln!(f, "other pending operations:")?;
            for op in &self.concurrent {
                writeln!(f, "  {op}")?;
            }
        }
        Ok(())
    }
}

/// Search statistics and verdict for one key.
#[derive(Clone, Debug)]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// Operations checked (unknown reads and failed operations are dropped).
    pub ops: usize,
    /// Search steps taken.
    pub steps: u64,
    /// Time spent on this key.
    pub elapsed: Duration,
    /// `Some(true)` linearizable, `Some(false)` violation, `None` budget exceeded.
    pub linearizable: Option<bool>,
}

/// The verdict plus per-key statistics.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The verdict.
    pub result: CheckResult,
    /// One entry per key, in key order.
    pub keys: Vec<KeyReport>,
}

/// Checks that `ops` (any order) is linearizable, one register per key.
pub fn check(ops: &[Operation], opts: &CheckOptions) -> CheckReport {
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let keys: Vec<(&str, Vec<&Operation>)> = by_key.into_iter().collect();
    // Biggest first, so that the slowest key does not start last.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(keys[i].1.len()));

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<KeyOutcome>>> = Mutex::new(vec![None; keys.len()]);
    let threads = opts.threads.clamp(1, keys.len().max(1));
    let keys_ref = &keys;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(n) else { break };
                let (key, key_ops) = &keys_ref[i];
                let r = check_key(key, key_ops, opts.max_steps, deadline);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });

    let mut reports = Vec::new();
    let mut violation = None;
    let mut unknown = Vec::new();
    for r in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let (report, v) = r.expect("every key is checked");
        match report.linearizable {
            Some(false) if violation.is_none() => violation = v.map(Box::new),
            None => unknown.push(report.key.clone()),
            _ => {}
        }
        reports.push(report);
    }
    let result = match (violation, unknown.is_empty()) {
        (Some(v), _) => CheckResult::Violation(v),
        (None, true) => CheckResult::Ok,
        (None, false) => CheckResult::Unknown { keys: unknown },
    };
    CheckReport {
        result,
        keys: reports,
    }
}

fn output_matches_input(input: &Input, output: &Output) -> bool {
    matches!(
        (input, output),
        (Input::Get, Output::Get { .. })
            | (Input::Put { .. }, Output::Put)
            | (Input::Delete, Output::Delete { .. })
            | (Input::Cas { .. }, Output::Cas { .. })
    )
}

/// An operation as a register transition, values interned (0 = absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Get(u32),
    Put(u32),
    Delete(u64),
    CasOk {
        expected: u32,
        new: u32,
    },
    CasFail {
        expected: u32,
        current: u32,
    },
    PutUnknown(u32),
    DeleteUnknown,
    CasUnknown {
        expected: u32,
        new: u32,
    },
    /// The recorded output is not of the input's kind: nothing explains it.
    Mismatch,
}

impl Step {
    /// Whether every state this accepts is left unchanged.
    fn is_read(self) -> bool {
        matches!(self, Step::Get(_) | Step::CasFail { .. } | Step::Delete(0))
    }

    /// The register after this operation from `s`, or `None` if its output rules `s` out.
    fn apply(self, s: u32) -> Option<u32> {
        match self {
            Step::Get(v) => (s == v).then_some(s),
            Step::Put(v) | Step::PutUnknown(v) => Some(v),
            Step::Delete(n) => (n == u64::from(s != 0)).then_some(0),
            Step::DeleteUnknown => Some(0),
            Step::CasOk { expected, new } => (s == expected).then_some(new),
            Step::CasFail { expected, current } => (s != expected && s == current).then_some(s),
            Step::CasUnknown { expected, new } => Some(if s == expected { new } else { s }),
            Step::Mismatch => None,
        }
    }
}

struct Interner<'a> {
    ids: HashMap<&'a [u8], u32>,
    values: Vec<&'a Value>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, v: Option<&'a Value>) -> u32 {
        let Some(v) = v else { return 0 };
        let next = self.values.len() as u32 + 1;
        *self.ids.entry(v.as_bytes()).or_insert_with(|| {
            self.values.push(v);
            next
        })
    }

    fn value(&self, id: u32) -> Option<Value> {
        (id != 0).then(|| self.values[id as usize - 1].clone())
    }
}

/// Converts an operation to a model step; `None` drops it from the check.
fn to_step<'a>(op: &'a Operation, values: &mut Interner<'a>) -> Option<Step> {
    Some(match (&op.input, &op.outcome) {
        (_, Outcome::Failed { .. }) => return None,
        (Input::Get, Outcome::Unknown { .. }) => return None,
        (Input::Put { value }, Outcome::Unknown { .. }) => Step::PutUnknown(values.id(Some(value))),
        (Input::Delete, Outcome::Unknown { .. }) => Step::DeleteUnknown,
        (Input::Cas { expected, new }, Outcome::Unknown { .. }) => Step::CasUnknown {
            expected: values.id(expected.as_ref()),
            new: values.id(Some(new)),
        },
        (
            Input::Get,
            Outcome::Ok {
                output: Output::Get { value },
                ..
            },
        ) => Step::Get(values.id(value.as_ref())),
        (
            Input::Put { value },
            Outcome::Ok {
                output: Output::Put,
                ..
            },
        ) => Step::Put(values.id(Some(value))),
        (
            Input::Delete,
            Outcome::Ok {
                output: Output::Delete { deleted },
                ..
            },
        ) => Step::Delete(*deleted),
        (
            Input::Cas { expected, new },
            Outcome::Ok {
                output: Output::Cas { succeeded, current },
                ..
            },
        ) => {
            let expected = values.id(expected.as_ref());
            if *succeeded {
                Step::CasOk {
                    expected,
                    new: values.id(Some(new)),
                }
            } else {
                Step::CasFail {
                    expected,
                    current: values.id(current.as_ref()),
                }
            }
        }
        (_, Outcome::Ok { .. }) => Step::Mismatch,
    })
}

/// Passes a precomputed 64-bit hash through unchanged.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Explored configurations sharing one (known set, state).
struct CacheEntry {
    state: u32,
    known: Box<[u64]>,
    /// Unknown-write sets explored with it; none is a superset of another.
    unknown: Vec<Box<[u64]>>,
}

fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

struct Frame {
    call: u32,
    pass: u8,
    prev_state: u32,
}

struct Best {
    /// Known operations in the prefix, then fewer operations in all: the most informative
    /// stuck point is the one that explains the most recorded results.
    rank: (usize, std::cmp::Reverse<usize>),
    prefix: Vec<u32>,
    stuck: u32,
    concurrent: Vec<u32>,
}

/// First, one read (an operation that cannot change the state: get, failed swap, delete
/// of nothing) that fits the current state, and nothing else: it can move to the front of
/// any linearization from here, since nothing pending has to precede it and it changes
/// nothing for the others. This removes the orders and subsets of concurrent reads.
const PASS_READS: u8 = 0;
/// Then the other operations with a known outcome.
const PASS_KNOWN: u8 = 1;
/// Last, the unknown writes.
const PASS_UNKNOWN: u8 = 2;

const HEAD: u32 = 0;
const INFINITY: u64 = u64::MAX;

type KeyOutcome = (KeyReport, Option<Violation>);

fn check_key(
    key: &str,
    ops: &[&Operation],
    max_steps: Option<u64>,
    deadline: Option<Instant>,
) -> KeyOutcome {
    let started = Instant::now();
    let mut values = Interner {
        ids: HashMap::new(),
        values: Vec::new(),
    };
    let mut kept: Vec<&Operation> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    for &op in ops {
        if let Some(s) = to_step(op, &mut values) {
            kept.push(op);
            steps.push(s);
        }
    }
    let mut search = Search::new(&kept, steps.clone(), values.values.len());
    let verdict = search.run(max_steps, deadline);
    let violation = match verdict {
        Some(false) => {
            // Pruning stranded values stops the search at the write that would strand
            // one, which explains less than the read that needed it. Without that pruning
            // the deepest point is where a plain search gets stuck; use it if affordable.
            let mut plain = Search::new(&kept, steps, values.values.len());
            plain.prune_strands = false;
            let budget = search.steps.saturating_mul(20).saturating_add(100_000);
            let budget = budget.min(max_steps.unwrap_or(u64::MAX));
            let best = match plain.run(Some(budget), deadline) {
                Some(false) => plain.best.take(),
                _ => None,
            };
            let best = best
                .or_else(|| search.best.take())
                .expect("a violation records its deepest point");
            // The search may have replaced the state by ANON; replaying the prefix with
            // the real values gives the value to show.
            let state = best.prefix.iter().fold(0, |s, &op| {
                plain.steps_of[op as usize].apply(s).unwrap_or(s)
            });
            let tail_from = best.prefix.len().saturating_sub(10);
            Some(Violation {
                key: key.to_string(),
                op: kept[best.stuck as usize].clone(),
                state: values.value(state),
                prefix_len: best.prefix.len(),
                prefix_tail: best.prefix[tail_from..]
                    .iter()
                    .map(|&i| kept[i as usize].clone())
                    .collect(),
                concurrent: best
                    .concurrent
                    .iter()
                    .take(32)
                    .map(|&i| kept[i as usize].clone())
                    .collect(),
            })
        }
        _ => None,
    };
    let report = KeyReport {
        key: key.to_string(),
        ops: kept.len(),
        steps: search.steps,
        elapsed: started.elapsed(),
        linearizable: verdict,
    };
    (report, violation)
}

/// The search over one key's operations.
struct Search {
    steps_of: Vec<Step>,
    unknown: Vec<bool>,
    /// Index of each operation among the known, or among the unknown, operations.
    slot: Vec<u32>,
    zobrist: Vec<u64>,
    /// Values each operation's success depends on exactly (0: none).
    observes: Vec<[u32; 2]>,
    /// Per value id: operations not yet linearized that observe it.
    observers_left: Vec<u32>,
    /// Value each operation needs the state to hold (0: none).
    needs: Vec<u32>,
    /// Value each operation may write (0: none).
    produces: Vec<u32>,
    /// Per value id: operations not yet linearized that need it.
    needers_left: Vec<u32>,
    /// Per value id: operations not yet linearized that may write it.
    producers_left: Vec<u32>,
    /// Whether to cut the search where a needed value is lost for good.
    prune_strands: bool,
    // The event list: node 0 is the head, the last node the tail, call and return nodes
    // in between in time order.
    next: Vec<u32>,
    prev: Vec<u32>,
    node_op: Vec<u32>,
    node_is_call: Vec<bool>,
    ret_node: Vec<u32>,
    tail: u32,
    known_bits: Vec<u64>,
    unknown_bits: Vec<u64>,
    known_hash: u64,
    cache: HashMap<u64, Vec<CacheEntry>, BuildHasherDefault<IdentityHasher>>,
    /// Per depth: the unknown writes (as canonical steps) already tried there.
    tried: Vec<Vec<Step>>,
    steps: u64,
    best: Option<Best>,
}

/// A present value that no operation left to linearize observes exactly.
///
/// Such values are indistinguishable from each other for the rest of the search (only a
/// delete's count sees them, and it sees only that the key is present), so the state is
/// replaced by this one id. That merges configurations that differ only in which unread
/// value the key holds.
const ANON: u32 = u32::MAX;

impl Search {
    fn new(ops: &[&Operation], steps_of: Vec<Step>, n_values: usize) -> Self {
        let n = ops.len();
        let unknown: Vec<bool> = ops
            .iter()
            .map(|op| matches!(op.outcome, Outcome::Unknown { .. }))
            .collect();
        let (mut known_n, mut unknown_n) = (0u32, 0u32);
        let slot = unknown
            .iter()
            .map(|&u| {
                let c = if u { &mut unknown_n } else { &mut known_n };
                *c += 1;
                *c - 1
            })
            .collect();

        let observes: Vec<[u32; 2]> = steps_of
            .iter()
            .map(|s| match *s {
                Step::Get(v) => [v, 0],
                Step::CasOk { expected, .. } | Step::CasUnknown { expected, .. } => [expected, 0],
                Step::CasFail { expected, current } => [expected, current],
                _ => [0, 0],
            })
            .collect();
        let mut observers_left = vec![0u32; n_values + 1];
        for o in &observes {
            for &v in o {
                observers_left[v as usize] += 1;
            }
        }
        let needs: Vec<u32> = steps_of
            .iter()
            .map(|s| match *s {
                Step::Get(v) => v,
                Step::CasOk { expected, .. } => expected,
                Step::CasFail { current, .. } => current,
                _ => 0,
            })
            .collect();
        let produces: Vec<u32> = steps_of
            .iter()
            .map(|s| match *s {
                Step::Put(v) | Step::PutUnknown(v) => v,
                Step::CasOk { new, .. } | Step::CasUnknown { new, .. } => new,
                _ => 0,
            })
            .collect();
        let mut needers_left = vec![0u32; n_values + 1];
        let mut producers_left = vec![0u32; n_values + 1];
        for (&need, &prod) in needs.iter().zip(&produces) {
            needers_left[need as usize] += 1;
            producers_left[prod as usize] += 1;
        }

        // Calls sort before returns at equal times: operations that touch at an instant
        // overlap, so neither is assumed to precede the other.
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            let ret = if unknown[i] {
                INFINITY
            } else {
                op.ret.max(op.call)
            };
            events.push((op.call, 0, i as u32));
            events.push((ret, 1, i as u32));
        }
        events.sort_unstable();

        let nodes = 2 * n + 2;
        let tail = (nodes - 1) as u32;
        let mut node_op = vec![0u32; nodes];
        let mut node_is_call = vec![false; nodes];
        let mut ret_node = vec![0u32; n];
        for (j, &(_, kind, op)) in events.iter().enumerate() {
            let node = j as u32 + 1;
            node_op[node as usize] = op;
            node_is_call[node as usize] = kind == 0;
            if kind == 1 {
                ret_node[op as usize] = node;
            }
        }
        let next = (0..nodes as u32).map(|i| (i + 1).min(tail)).collect();
        let prev = (0..nodes as u32).map(|i| i.saturating_sub(1)).collect();

        Search {
            steps_of,
            unknown,
            slot,
            zobrist: (0..n as u64).map(splitmix64).collect(),
            observes,
            observers_left,
            needs,
            produces,
            needers_left,
            producers_left,
            prune_strands: true,
            next,
            prev,
            node_op,
            node_is_call,
            ret_node,
            tail,
            known_bits: vec![0; (known_n as usize).div_ceil(64)],
            unknown_bits: vec![0; (unknown_n as usize).div_ceil(64)],
            known_hash: 0,
            cache: HashMap::default(),
            tried: Vec::new(),
            steps: 0,
            best: None,
        }
    }

    fn lift(&mut self, call: u32) {
        let ret = self.ret_node[self.node_op[call as usize] as usize];
        for node in [call, ret] {
            let (p, n) = (self.prev[node as usize], self.next[node as usize]);
            self.next[p as usize] = n;
            self.prev[n as usize] = p;
        }
    }

    // Reverse order of `lift`, so each node's saved neighbours are valid when relinked.
    fn unlift(&mut self, call: u32) {
        let ret = self.ret_node[self.node_op[call as usize] as usize];
        for node in [ret, call] {
            let (p, n) = (self.prev[node as usize], self.next[node as usize]);
            self.next[p as usize] = node;
            self.prev[n as usize] = node;
        }
    }

    /// Marks `op` linearized or not: bitsets, hash and observer counts.
    fn toggle(&mut self, op: u32, linearized: bool) {
        let slot = self.slot[op as usize] as usize;
        let bit = 1u64 << (slot % 64);
        if self.unknown[op as usize] {
            self.unknown_bits[slot / 64] ^= bit;
        } else {
            self.known_bits[slot / 64] ^= bit;
            self.known_hash ^= self.zobrist[op as usize];
        }
        let o = op as usize;
        let bump = |count: &mut u32| {
            if linearized {
                *count -= 1;
            } else {
                *count += 1;
            }
        };
        for v in self.observes[o] {
            bump(&mut self.observers_left[v as usize]);
        }
        bump(&mut self.needers_left[self.needs[o] as usize]);
        bump(&mut self.producers_left[self.produces[o] as usize]);
    }

    /// Whether leaving `state` loses a value for good: an operation still to come needs
    /// it, and none still to come can write it again.
    fn strands(&self, state: u32) -> bool {
        self.prune_strands
            && state != 0
            && state != ANON
            && self.needers_left[state as usize] > 0
            && self.producers_left[state as usize] == 0
    }

    fn canon(&self, state: u32) -> u32 {
        if state != 0 && state != ANON && self.observers_left[state as usize] == 0 {
            ANON
        } else {
            state
        }
    }

    /// The step of an unknown write with its written value canonical: two pending unknown
    /// writes with equal canonical steps are interchangeable from here on.
    fn canon_step(&self, op: u32) -> Step {
        match self.steps_of[op as usize] {
            Step::PutUnknown(v) => Step::PutUnknown(self.canon(v)),
            Step::CasUnknown { expected, new } => Step::CasUnknown {
                expected,
                new: self.canon(new),
            },
            s => s,
        }
    }

    /// Records the current configuration; false if it (or one that subsumes it) was
    /// explored already.
    fn admit(&mut self, state: u32) -> bool {
        let h = self.known_hash ^ splitmix64(u64::from(state) ^ 0x5bd1_e995);
        let bucket = self.cache.entry(h).or_default();
        for e in bucket.iter_mut() {
            if e.state == state && *e.known == *self.known_bits {
                if e.unknown.iter().any(|u| is_subset(u, &self.unknown_bits)) {
                    return false;
                }
                let cur = &self.unknown_bits;
                e.unknown.retain(|u| !is_subset(cur, u));
                e.unknown.push(cur.clone().into_boxed_slice());
                return true;
            }
        }
        bucket.push(CacheEntry {
            state,
            known: self.known_bits.clone().into_boxed_slice(),
            unknown: vec![self.unknown_bits.clone().into_boxed_slice()],
        });
        true
    }

    fn note_stuck(&mut self, stack: &[Frame], known_linearized: usize, stuck_node: u32) {
        let rank = (known_linearized, std::cmp::Reverse(stack.len()));
        if self.best.as_ref().is_some_and(|b| b.rank >= rank) {
            return;
        }
        let stuck = self.node_op[stuck_node as usize];
        let mut concurrent = Vec::new();
        let mut node = self.next[HEAD as usize];
        while node != stuck_node && node != self.tail {
            let op = self.node_op[node as usize];
            if op != stuck {
                concurrent.push(op);
            }
            node = self.next[node as usize];
        }
        self.best = Some(Best {
            rank,
            prefix: stack
                .iter()
                .map(|f| self.node_op[f.call as usize])
                .collect(),
            stuck,
            concurrent,
        });
    }

    /// Whether the pending unknown write `op` is worth linearizing now, in `state`.
    ///
    /// Not if it leaves the state as it is (leaving it pending is at least as good); not
    /// if an interchangeable one was already tried here; and not a blind one (put,
    /// delete) right after another unknown write: in a run of unknown writes only the last
    /// blind one and the swaps after it matter, and the others can move to the end of the
    /// linearization. Without these, every subset of the pending unknown writes would be
    /// tried in turn.
    fn worth_trying_unknown(&mut self, op: u32, state: u32, stack: &[Frame]) -> bool {
        let step = self.canon_step(op);
        let after_unknown = stack
            .last()
            .is_some_and(|f| self.unknown[self.node_op[f.call as usize] as usize]);
        if after_unknown && !matches!(step, Step::CasUnknown { .. }) {
            return false;
        }
        if step.apply(state).is_none_or(|s| self.canon(s) == state) {
            return false;
        }
        let tried = &mut self.tried[stack.len()];
        if tried.contains(&step) {
            return false;
        }
        tried.push(step);
        true
    }

    /// `Some(true)` linearizable, `Some(false)` not, `None` out of budget.
    fn run(&mut self, max_steps: Option<u64>, deadline: Option<Instant>) -> Option<bool> {
        let known_total = self.unknown.iter().filter(|&&u| !u).count();
        let mut remaining_known = known_total;
        let any_unknown = remaining_known < self.unknown.len();
        self.tried = vec![Vec::new(); self.unknown.len() + 1];
        let max_steps = max_steps.unwrap_or(u64::MAX);
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = self.canon(0);
        let mut pass = PASS_READS;
        let mut entry = self.next[HEAD as usize];
        loop {
            if remaining_known == 0 {
                // What is left are unknown writes: linearized last, they change nothing.
                return Some(true);
            }
            self.steps += 1;
            if self.steps >= max_steps {
                return None;
            }
            if self.steps & 1023 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }

            let mut dead_end = false;
            if entry != self.tail && self.node_is_call[entry as usize] {
                let op = self.node_op[entry as usize];
                let step = self.steps_of[op as usize];
                let candidate = match (pass, self.unknown[op as usize]) {
                    (PASS_READS, false) => step.is_read(),
                    (PASS_KNOWN, false) => !step.is_read(),
                    (PASS_UNKNOWN, true) => self.worth_trying_unknown(op, state, &stack),
                    _ => false,
                };
                let next_state = if candidate { step.apply(state) } else { None };
                if let Some(next_state) = next_state {
                    self.toggle(op, true);
                    let leaves = next_state != state;
                    let next_state = self.canon(next_state);
                    if !(leaves && self.strands(state)) && self.admit(next_state) {
                        stack.push(Frame {
                            call: entry,
                            pass,
                            prev_state: state,
                        });
                        state = next_state;
                        self.lift(entry);
                        if !self.unknown[op as usize] {
                            remaining_known -= 1;
                        }
                        pass = PASS_READS;
                        entry = self.next[HEAD as usize];
                        continue;
                    }
                    self.toggle(op, false);
                    // A read that fits leads wherever this configuration does: it being
                    // explored already means this one is done too.
                    dead_end = pass == PASS_READS;
                }
                if !dead_end {
                    entry = self.next[entry as usize];
                    continue;
                }
            }

            // A return (or the end): no pending call of this pass fits here.
            if !dead_end {
                if pass == PASS_READS {
                    self.note_stuck(&stack, known_total - remaining_known, entry);
                    pass = PASS_KNOWN;
                    entry = self.next[HEAD as usize];
                    continue;
                }
                if pass == PASS_KNOWN && any_unknown {
                    pass = PASS_UNKNOWN;
                    self.tried[stack.len()].clear();
                    entry = self.next[HEAD as usize];
                    continue;
                }
            }
            loop {
                let Some(frame) = stack.pop() else {
                    return Some(false);
                };
                let op = self.node_op[frame.call as usize];
                self.unlift(frame.call);
                self.toggle(op, false);
                if !self.unknown[op as usize] {
                    remaining_known += 1;
                }
                state = frame.prev_state;
                // A read was the only move tried from its configuration (see PASS_READS),
                // so that configuration is exhausted as well.
                if frame.pass != PASS_READS {
                    pass = frame.pass;
                    entry = self.next[frame.call as usize];
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn v(s: &str) -> Value {
        Value::from(s)
    }

    fn ok(client: u32, call: u64, ret: u64, input: Input, output: Output) -> Operation {
        Operation {
            client,
            key: "k".into(),
            input,
            call,
            ret,
            outcome: Outcome::ok(output),
        }
    }

    fn get(client: u32, call: u64, ret: u64, value: Option<&str>) -> Operation {
        ok(
            client,
            call,
            ret,
            Input::Get,
            Output::Get {
                value: value.map(v),
            },
        )
    }

    fn put(client: u32, call: u64, ret: u64, value: &str) -> Operation {
        ok(
            client,
            call,
            ret,
            Input::Put { value: v(value) },
            Output::Put,
        )
    }

    fn put_unknown(client: u32, call: u64, value: &str) -> Operation {
        Operation {
            outcome: Outcome::Unknown {
                error: "timed out".into(),
            },
            ..put(client, call, call + 5, value)
        }
    }

    fn del(client: u32, call: u64, ret: u64, deleted: u64) -> Operation {
        ok(client, call, ret, Input::Delete, Output::Delete { deleted })
    }

    fn cas(
        client: u32,
        call: u64,
        ret: u64,
        (expected, new): (Option<&str>, &str),
        succeeded: bool,
        current: Option<&str>,
    ) -> Operation {
        ok(
            client,
            call,
            ret,
            Input::Cas {
                expected: expected.map(v),
                new: v(new),
            },
            Output::Cas {
                succeeded,
                current: current.map(v),
            },
        )
    }

    fn verdict(ops: &[Operation]) -> CheckResult {
        check(ops, &CheckOptions::default()).result
    }

    fn assert_ok(ops: &[Operation]) {
        let r = verdict(ops);
        assert!(r.is_ok(), "expected linearizable, got {r}");
    }

    fn assert_violation(ops: &[Operation]) -> Violation {
        match verdict(ops) {
            CheckResult::Violation(v) => *v,
            r => panic!("expected a violation, got {r}"),
        }
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        assert_ok(&[]);
        assert_ok(&[
            get(1, 0, 10, None),
            put(1, 20, 30, "a"),
            get(2, 40, 50, Some("a")),
            put(2, 60, 70, "b"),
            get(1, 80, 90, Some("b")),
            del(1, 100, 110, 1),
            get(2, 120, 130, None),
            del(2, 140, 150, 0),
        ]);
    }

    #[test]
    fn stale_read_after_completed_write_is_a_violation() {
        let ops = [
            put(1, 0, 10, "a"),
            put(2, 20, 30, "b"),
            get(3, 40, 50, Some("a")),
        ];
        let v = assert_violation(&ops);
        assert_eq!(v.key, "k");
        assert_eq!(v.op, ops[2], "{v}");
        assert_eq!(v.state, Some(self::v("b")));
        assert_eq!(v.prefix_len, 2);
        let text = v.to_string();
        println!("{text}");
        assert!(text.contains("not linearizable"), "{text}");
    }

    #[test]
    fn read_overlapping_a_write_may_see_either_value() {
        assert_ok(&[
            put(1, 0, 10, "a"),
            put(2, 20, 60, "b"),
            get(3, 30, 40, Some("a")),
        ]);
        assert_ok(&[
            put(1, 0, 10, "a"),
            put(2, 20, 60, "b"),
            get(3, 30, 40, Some("b")),
        ]);
        // Touching at one instant counts as overlapping.
        assert_ok(&[put(1, 0, 10, "a"), get(2, 10, 20, None)]);
        assert_violation(&[put(1, 0, 10, "a"), get(2, 11, 20, None)]);
    }

    #[test]
    fn concurrent_writes_may_be_read_in_either_order() {
        for (first, second) in [("a", "b"), ("b", "a")] {
            assert_ok(&[
                put(1, 0, 100, "a"),
                put(2, 10, 90, "b"),
                get(3, 20, 30, Some(first)),
                get(3, 40, 50, Some(second)),
            ]);
        }
        // Once both writes completed, the order is fixed: reading back the other one is
        // a violation.
        assert_violation(&[
            put(1, 0, 100, "a"),
            put(2, 10, 90, "b"),
            get(3, 200, 210, Some("b")),
            get(3, 220, 230, Some("a")),
        ]);
        // Neither write's value can be read before either was invoked.
        assert_violation(&[get(3, 0, 5, Some("a")), put(1, 10, 100, "a")]);
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation() {
        let v = assert_violation(&[
            put(1, 0, 10, "a"),
            get(2, 20, 30, Some("a")),
            put(1, 40, 50, "b"),
            get(2, 60, 70, Some("a")),
        ]);
        assert_eq!(v.op.call, 60);
        assert_violation(&[put(1, 0, 10, "a"), get(2, 20, 30, None)]);
    }

    #[test]
    fn unknown_writes_may_apply_late_or_never() {
        // Shows up long after the client gave up on it.
        assert_ok(&[
            put(1, 0, 10, "a"),
            put_unknown(2, 20, "b"),
            get(3, 100, 110, Some("a")),
            get(3, 1000, 1010, Some("b")),
            get(3, 1020, 1030, Some("b")),
        ]);
        // Never shows up.
        assert_ok(&[
            put(1, 0, 10, "a"),
            put_unknown(2, 20, "b"),
            get(3, 1000, 1010, Some("a")),
        ]);
        // An unknown read is dropped, whatever it would have said.
        let mut unknown_read = get(3, 5, 6, Some("zzz"));
        unknown_read.outcome = Outcome::Unknown {
            error: "connection reset".into(),
        };
        assert_ok(&[put(1, 0, 10, "a"), unknown_read]);
        // A failed write took no effect, so seeing it is a violation.
        let mut failed = put(2, 20, 30, "b");
        failed.outcome = Outcome::Failed {
            error: "request too large".into(),
        };
        assert_ok(&[
            put(1, 0, 10, "a"),
            failed.clone(),
            get(3, 40, 50, Some("a")),
        ]);
        assert_violation(&[put(1, 0, 10, "a"), failed, get(3, 40, 50, Some("b"))]);
        // It can't apply before it was invoked, nor twice.
        assert_violation(&[get(3, 0, 10, Some("b")), put_unknown(2, 20, "b")]);
        assert_violation(&[
            put_unknown(2, 0, "b"),
            get(3, 10, 20, Some("b")),
            put(1, 30, 40, "a"),
            get(3, 50, 60, Some("b")),
        ]);
    }

    #[test]
    fn unknown_delete_and_cas() {
        let mut d = del(2, 20, 30, 0);
        d.outcome = Outcome::Unknown {
            error: "deadline".into(),
        };
        assert_ok(&[put(1, 0, 10, "a"), d.clone(), get(3, 40, 50, Some("a"))]);
        assert_ok(&[put(1, 0, 10, "a"), d.clone(), get(3, 40, 50, None)]);
        let mut c = cas(2, 20, 30, (Some("a"), "b"), false, None);
        c.outcome = Outcome::Unknown {
            error: "deadline".into(),
        };
        assert_ok(&[put(1, 0, 10, "a"), c.clone(), get(3, 40, 50, Some("b"))]);
        assert_ok(&[put(1, 0, 10, "a"), c.clone(), get(3, 40, 50, Some("a"))]);
        // The comparison fails once "x" is written, so "b" cannot appear after it.
        assert_violation(&[
            put(1, 0, 10, "x"),
            c,
            get(3, 40, 50, Some("b")),
            get(3, 60, 70, Some("x")),
        ]);
    }

    #[test]
    fn delete_counts_are_checked() {
        assert_violation(&[del(1, 0, 10, 1)]);
        assert_violation(&[put(1, 0, 10, "a"), del(2, 20, 30, 0)]);
        assert_ok(&[put(1, 0, 10, "a"), del(2, 5, 30, 0)]);
        assert_violation(&[put(1, 0, 10, "a"), del(2, 20, 30, 2)]);
    }

    #[test]
    fn compare_and_swap() {
        // Absent key: compare version == 0 holds.
        assert_ok(&[
            cas(1, 0, 10, (None, "a"), true, None),
            get(2, 20, 30, Some("a")),
        ]);
        assert_violation(&[put(1, 0, 10, "x"), cas(1, 20, 30, (None, "a"), true, None)]);
        // Success requires the expected value.
        assert_ok(&[
            put(1, 0, 10, "a"),
            cas(2, 20, 30, (Some("a"), "b"), true, None),
            get(3, 40, 50, Some("b")),
        ]);
        assert_violation(&[
            put(1, 0, 10, "a"),
            cas(2, 20, 30, (Some("z"), "b"), true, None),
        ]);
        // Failure must see a different value, and report what it saw.
        assert_ok(&[
            put(1, 0, 10, "a"),
            cas(2, 20, 30, (Some("z"), "b"), false, Some("a")),
            get(3, 40, 50, Some("a")),
        ]);
        assert_violation(&[
            put(1, 0, 10, "a"),
            cas(2, 20, 30, (Some("a"), "b"), false, Some("a")),
        ]);
        assert_violation(&[
            put(1, 0, 10, "a"),
            cas(2, 20, 30, (Some("z"), "b"), false, Some("q")),
        ]);
        assert_ok(&[cas(2, 20, 30, (Some("z"), "b"), false, None)]);
        // Two concurrent swaps from the same value: only one can succeed.
        assert_ok(&[
            put(1, 0, 10, "a"),
            cas(2, 20, 40, (Some("a"), "b"), true, None),
            cas(3, 25, 45, (Some("a"), "c"), false, Some("b")),
        ]);
        assert_violation(&[
            put(1, 0, 10, "a"),
            cas(2, 20, 40, (Some("a"), "b"), true, None),
            cas(3, 25, 45, (Some("a"), "c"), true, None),
        ]);
    }

    #[test]
    fn mismatched_output_is_reported() {
        let bad = ok(1, 0, 10, Input::Get, Output::Put);
        let v = assert_violation(&[bad]);
        assert!(v.to_string().contains("not of its input's kind"), "{v}");
    }

    #[test]
    fn keys_are_independent() {
        let mut other = get(2, 20, 30, Some("a"));
        other.key = "other".into();
        let r = verdict(&[put(1, 0, 10, "a"), other]);
        match r {
            CheckResult::Violation(v) => assert_eq!(v.key, "other"),
            r => panic!("expected a violation, got {r}"),
        }
    }

    #[test]
    fn budget_exceeded_is_unknown() {
        let ops = simulate(&SimConfig::default(), 1);
        let opts = CheckOptions {
            max_steps: Some(10),
            ..CheckOptions::default()
        };
        match check(&ops, &opts).result {
            CheckResult::Unknown { keys } => assert!(!keys.is_empty()),
            r => panic!("expected unknown, got {r}"),
        }
    }

    /// Shape of a simulated run.
    struct SimConfig {
        clients: u32,
        keys: u32,
        ops: usize,
        unknown_permille: u32,
    }

    impl Default for SimConfig {
        fn default() -> Self {
            SimConfig {
                clients: 8,
                keys: 3,
                ops: 600,
                unknown_permille: 20,
            }
        }
    }

    /// A history of clients using a real linearizable store: each operation takes effect
    /// at one instant inside its interval (an unknown write possibly much later, or never).
    fn simulate(cfg: &SimConfig, seed: u64) -> Vec<Operation> {
        let mut rng = StdRng::seed_from_u64(seed);
        struct Planned {
            client: u32,
            call: u64,
            lin: u64,
            ret: u64,
            unknown: bool,
            applies: bool,
        }
        let per_client = cfg.ops.div_ceil(cfg.clients as usize);
        let mut planned = Vec::new();
        for client in 0..cfg.clients {
            let mut t = rng.gen_range(0..50u64);
            for _ in 0..per_client {
                // Times are multiples of the client count plus the client id, so no two
                // clients' instants coincide.
                let scale = |x: u64| x * u64::from(cfg.clients) + u64::from(client);
                let call = t + rng.gen_range(0..40);
                let lin = call + rng.gen_range(1..60);
                let ret = lin + rng.gen_range(1..60);
                t = ret;
                let unknown = rng.gen_range(0..1000) < cfg.unknown_permille;
                let (lin, applies) = match (unknown, rng.gen_range(0..3)) {
                    (true, 0) => (ret + rng.gen_range(0..2000), true),
                    (true, 1) => (lin, false),
                    _ => (lin, true),
                };
                planned.push(Planned {
                    client,
                    call: scale(call),
                    lin: scale(lin),
                    ret: scale(ret),
                    unknown,
                    applies,
                });
            }
        }
        planned.truncate(cfg.ops.max(1).min(planned.len()));
        planned.sort_by_key(|p| p.lin);

        let mut registers: HashMap<String, Option<Value>> = HashMap::new();
        let mut written: HashMap<String, Vec<Value>> = HashMap::new();
        let mut out = Vec::new();
        for (n, p) in planned.iter().enumerate() {
            let key = format!("k{}", rng.gen_range(0..cfg.keys));
            let reg = registers.entry(key.clone()).or_default();
            let old = written.entry(key.clone()).or_default();
            let fresh = Value::from(format!("c{}-{n}", p.client));
            let roll = rng.gen_range(0..100);
            let (input, output) = if roll < 40 {
                (Input::Get, Output::Get { value: reg.clone() })
            } else if roll < 70 {
                (Input::Put { value: fresh }, Output::Put)
            } else if roll < 80 {
                let deleted = u64::from(reg.is_some());
                (Input::Delete, Output::Delete { deleted })
            } else {
                let expected = match rng.gen_range(0..3) {
                    0 => reg.clone(),
                    1 if !old.is_empty() => Some(old[rng.gen_range(0..old.len())].clone()),
                    _ => None,
                };
                let succeeded = expected == *reg;
                let output = Output::Cas {
                    succeeded,
                    current: if succeeded { None } else { reg.clone() },
                };
                (
                    Input::Cas {
                        expected,
                        new: fresh,
                    },
                    output,
                )
            };
            if p.applies {
                match (&input, &output) {
                    (Input::Put { value }, _) => *reg = Some(value.clone()),
                    (Input::Delete, _) => *reg = None,
                    (
                        Input::Cas { new, .. },
                        Output::Cas {
                            succeeded: true, ..
                        },
                    ) => *reg = Some(new.clone()),
                    _ => {}
                }
                if let Some(v) = reg.clone() {
                    if old.last() != Some(&v) {
                        old.push(v);
                    }
                }
            }
            out.push(Operation {
                client: p.client,
                key,
                input,
                call: p.call,
                ret: p.ret,
                outcome: if p.unknown {
                    Outcome::Unknown {
                        error: "timed out".into(),
                    }
                } else {
                    Outcome::ok(output)
                },
            });
        }
        out.sort_by_key(|o| o.call);
        out
    }

    fn written_value(op: &Operation) -> Option<&Value> {
        match (&op.input, &op.outcome) {
            (Input::Put { value }, Outcome::Ok { .. }) => Some(value),
            (
                Input::Cas { new, .. },
                Outcome::Ok {
                    output:
                        Output::Cas {
                            succeeded: true, ..
                        },
                    ..
                },
            ) => Some(new),
            _ => None,
        }
    }

    /// Makes one read return a value overwritten before it began: write w1 completed
    /// before write w2 began, w2 completed before the read began, and the read returns
    /// w1's value. Returns the corrupted read's index, if any read qualified.
    fn corrupt_one_read(ops: &mut [Operation], seed: u64) -> Option<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut reads: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].input == Input::Get && ops[i].outcome.is_ok())
            .collect();
        // Shuffle so different seeds corrupt different places.
        for i in (1..reads.len()).rev() {
            reads.swap(i, rng.gen_range(0..=i));
        }
        for r in reads {
            let read = &ops[r];
            let writes: Vec<&Operation> = ops
                .iter()
                .filter(|w| w.key == read.key && w.ret < read.call)
                .filter(|w| written_value(w).is_some())
                .collect();
            let Some(w2) = writes.iter().max_by_key(|w| w.call) else {
                continue;
            };
            let Some(w1) = writes.iter().find(|w| w.ret < w2.call) else {
                continue;
            };
            let stale = written_value(w1).cloned();
            ops[r].outcome = Outcome::ok(Output::Get { value: stale });
            return Some(r);
        }
        None
    }

    #[test]
    fn random_linearizable_history_passes_and_a_corrupted_read_fails() {
        let cfg = SimConfig {
            clients: 12,
            keys: 4,
            ops: 3000,
            unknown_permille: 30,
        };
        for seed in 0..4 {
            let mut ops = simulate(&cfg, seed);
            let report = check(&ops, &CheckOptions::default());
            assert!(report.result.is_ok(), "seed {seed}: {}", report.result);
            let r = corrupt_one_read(&mut ops, seed).expect("some read can be made stale");
            match check(&ops, &CheckOptions::default()).result {
                CheckResult::Violation(v) => assert_eq!(v.key, ops[r].key),
                res => panic!("seed {seed}: corrupted read {} passed: {res}", ops[r]),
            }
        }
    }

    #[test]
    fn one_hot_key_with_many_unknown_writes_stays_tractable() {
        // 16 clients on one key, 15% of operations timing out: the worst shape a fault
        // run produces.
        let cfg = SimConfig {
            clients: 16,
            keys: 1,
            ops: 2000,
            unknown_permille: 150,
        };
        let opts = CheckOptions {
            timeout: Some(Duration::from_secs(60)),
            ..CheckOptions::default()
        };
        let mut ops = simulate(&cfg, 7);
        let r = check(&ops, &opts).result;
        assert!(r.is_ok(), "{r}");
        corrupt_one_read(&mut ops, 7).expect("some read can be made stale");
        let r = check(&ops, &opts).result;
        assert!(r.is_violation(), "{r}");
    }

    /// Prints the check time of a 10,000-operation history, as recorded and with one
    /// stale read (run with --nocapture).
    #[test]
    fn ten_thousand_ops_check_time() {
        let cfg = SimConfig {
            clients: 16,
            keys: 8,
            ops: 10_000,
            unknown_permille: 10,
        };
        let mut ops = simulate(&cfg, 42);
        let timed = |ops: &[Operation]| {
            let started = Instant::now();
            let report = check(ops, &CheckOptions::default());
            let elapsed = started.elapsed().as_secs_f64();
            let steps: u64 = report.keys.iter().map(|k| k.steps).sum();
            println!(
                "checked {} ops on {} keys in {elapsed:.3}s ({steps} steps): {}",
                ops.len(),
                report.keys.len(),
                if report.result.is_ok() {
                    "ok"
                } else {
                    "not ok"
                },
            );
            report.result
        };
        let r = timed(&ops);
        assert!(r.is_ok(), "{r}");
        corrupt_one_read(&mut ops, 42).expect("some read can be made stale");
        let r = timed(&ops);
        println!("{r}");
        assert!(r.is_violation());
    }

    /// The definition, by brute force: some order of the operations that respects real
    /// time (unknown writes may be left out) makes every recorded output right.
    fn brute_force_linearizable(ops: &[Operation]) -> bool {
        let ops: Vec<&Operation> = ops
            .iter()
            .filter(|o| match &o.outcome {
                Outcome::Failed { .. } => false,
                Outcome::Unknown { .. } => o.input != Input::Get,
                Outcome::Ok { .. } => true,
            })
            .collect();
        fn unknown(o: &Operation) -> bool {
            matches!(o.outcome, Outcome::Unknown { .. })
        }
        fn apply(state: &Option<Value>, o: &Operation) -> Option<Option<Value>> {
            let output = match &o.outcome {
                Outcome::Ok { output, .. } => Some(output),
                _ => None,
            };
            match (&o.input, output) {
                (Input::Get, Some(Output::Get { value })) => {
                    (value == state).then(|| state.clone())
                }
                (Input::Put { value }, None | Some(Output::Put)) => Some(Some(value.clone())),
                (Input::Delete, None) => Some(None),
                (Input::Delete, Some(Output::Delete { deleted })) => {
                    (*deleted == u64::from(state.is_some())).then_some(None)
                }
                (Input::Cas { expected, new }, None) => Some(if expected == state {
                    Some(new.clone())
                } else {
                    state.clone()
                }),
                (Input::Cas { expected, new }, Some(Output::Cas { succeeded, current })) => {
                    if *succeeded {
                        (expected == state).then(|| Some(new.clone()))
                    } else {
                        (expected != state && current == state).then(|| state.clone())
                    }
                }
                _ => None,
            }
        }
        fn search(ops: &[&Operation], done: &mut [bool], state: Option<Value>) -> bool {
            if (0..ops.len()).all(|i| done[i] || unknown(ops[i])) {
                return true;
            }
            for i in 0..ops.len() {
                if done[i] {
                    continue;
                }
                let must_wait = (0..ops.len())
                    .any(|j| j != i && !done[j] && !unknown(ops[j]) && ops[j].ret < ops[i].call);
                if must_wait {
                    continue;
                }
                if let Some(next) = apply(&state, ops[i]) {
                    done[i] = true;
                    let found = search(ops, done, next);
                    done[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        search(&ops, &mut vec![false; ops.len()], None)
    }

    /// Small arbitrary histories (most not linearizable), values drawn from a tiny pool so
    /// that they repeat.
    fn arbitrary_history(seed: u64, n: usize) -> Vec<Operation> {
        let mut rng = StdRng::seed_from_u64(seed);
        let pool = ["a", "b", "c"];
        // Every third history is mostly unknown writes, to exercise their reductions.
        let p_unknown = [0.6, 0.2, 0.2][(seed % 3) as usize];
        let val = |rng: &mut StdRng| v(pool[rng.gen_range(0..pool.len())]);
        let maybe = |rng: &mut StdRng| rng.gen_bool(0.7).then(|| val(rng));
        (0..n)
            .map(|i| {
                let call = rng.gen_range(0..20);
                let ret = call + rng.gen_range(0..10);
                let (input, output) = match rng.gen_range(0..4) {
                    0 => (
                        Input::Get,
                        Output::Get {
                            value: maybe(&mut rng),
                        },
                    ),
                    1 => (
                        Input::Put {
                            value: val(&mut rng),
                        },
                        Output::Put,
                    ),
                    2 => (
                        Input::Delete,
                        Output::Delete {
                            deleted: rng.gen_range(0..2),
                        },
                    ),
                    _ => (
                        Input::Cas {
                            expected: maybe(&mut rng),
                            new: val(&mut rng),
                        },
                        Output::Cas {
                            succeeded: rng.gen_bool(0.5),
                            current: maybe(&mut rng),
                        },
                    ),
                };
                let outcome = if rng.gen_bool(p_unknown) {
                    Outcome::Unknown {
                        error: "timed out".into(),
                    }
                } else {
                    Outcome::ok(output)
                };
                Operation {
                    client: i as u32,
                    key: "k".into(),
                    input,
                    call,
                    ret,
                    outcome,
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let (mut ok, mut bad) = (0, 0);
        for seed in 0..6_000 {
            let ops = arbitrary_history(seed, 2 + (seed % 6) as usize);
            let expected = brute_force_linearizable(&ops);
            let got = verdict(&ops);
            assert_eq!(got.is_ok(), expected, "seed {seed}: {got}\n{ops:#?}");
            if expected {
                ok += 1;
            } else {
                bad += 1;
            }
        }
        // Both verdicts must be well represented for the comparison to mean anything.
        assert!(ok > 1000 && bad > 1000, "{ok} linearizable, {bad} not");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            #[test]
            fn simulated_histories_pass_and_stale_reads_fail(
                seed in any::<u64>(),
                clients in 1u32..10,
                keys in 1u32..4,
                unknown_permille in 0u32..200,
            ) {
                let cfg = SimConfig { clients, keys, ops: 250, unknown_permille };
                let mut ops = simulate(&cfg, seed);
                let res = check(&ops, &CheckOptions::default()).result;
                prop_assert!(res.is_ok(), "{}", res);
                if corrupt_one_read(&mut ops, seed).is_some() {
                    let res = check(&ops, &CheckOptions::default()).result;
                    prop_assert!(res.is_violation(), "{}", res);
                }
            }
        }
    }
}
