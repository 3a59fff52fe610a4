//! raft-rs's `Storage` on sled: the log entries, the HardState and the compaction point,
//! in the "raft" tree. Snapshots are not stored: when a follower needs one, it is cut
//! from the state machine as it stands (the state tree is only changed by the Raft
//! thread, which is also the caller here, so the cut is consistent).
//!
//! Layout of the raft tree: `e` + index (8 bytes) → an `eraftpb::Entry`; `h` → the
//! HardState; `s` → the index and term the log is compacted to; `i` → this member's
//! identity (see [`Identity`]).

use std::sync::{Arc, RwLock};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{Error, Result};
use crate::snapshot;
use crate::state::StateMachine;

const ENTRY_PREFIX: u8 = b'e';
const HARD_STATE: &[u8] = b"h";
const COMPACTED: &[u8] = b"s";
const IDENTITY: &[u8] = b"i";

/// Who this data directory belongs to; checked on every start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The member's ID.
    pub member_id: u64,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The member's name.
    pub name: String,
}

impl Identity {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + self.name.len());
        v.extend_from_slice(&self.member_id.to_be_bytes());
        v.extend_from_slice(&self.cluster_id.to_be_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    fn decode(v: &[u8]) -> Result<Identity> {
        if v.len() < 16 {
            return Err(Error::Corrupt("member identity record is truncated".into()));
        }
        Ok(Identity {
            member_id: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            cluster_id: u64::from_be_bytes(v[8..16].try_into().expect("8 bytes")),
            name: String::from_utf8(v[16..].to_vec())
                .map_err(|_| Error::Corrupt("member name is not UTF-8".into()))?,
        })
    }
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ENTRY_PREFIX;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

struct Inner {
    hard_state: HardState,
    /// The log holds `compacted.0 + 1 ..= last`.
    compacted: (u64, u64),
    last: u64,
    /// Terms of the entries in the log, `terms[i]` for index `compacted.0 + 1 + i`:
    /// raft asks for terms far more often than for entries.
    terms: std::collections::VecDeque<u64>,
}

/// The Raft log of one member.
#[derive(Clone)]
pub struct RaftLog {
    tree: sled::Tree,
    inner: Arc<RwLock<Inner>>,
    state: Arc<RwLock<StateMachine>>,
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl RaftLog {
    /// Opens the log kept in `tree`; `state` is the state machine snapshots are cut from.
    pub fn open(tree: sled::Tree, state: Arc<RwLock<StateMachine>>) -> Result<RaftLog> {
        let hard_state = match tree.get(HARD_STATE)? {
            Some(v) => HardState::parse_from_bytes(&v)
                .map_err(|e| Error::Corrupt(format!("raft hard state: {e}")))?,
            None => HardState::default(),
        };
        let compacted = match tree.get(COMPACTED)? {
            Some(v) if v.len() == 16 => (
                u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                u64::from_be_bytes(v[8..].try_into().expect("8 bytes")),
            ),
            Some(_) => return Err(Error::Corrupt("raft compaction point".into())),
            None => (0, 0),
        };
        let mut terms = std::collections::VecDeque::new();
        let mut expected = compacted.0 + 1;
        for item in tree.scan_prefix([ENTRY_PREFIX]) {
            let (k, v) = item?;
            let index = u64::from_be_bytes(
                k[1..]
                    .try_into()
                    .map_err(|_| Error::Corrupt("raft entry key".into()))?,
            );
            if index != expected {
                return Err(Error::Corrupt(format!(
                    "raft log has a gap: expected entry {expected}, found {index}"
                )));
            }
            let e = Entry::parse_from_bytes(&v)
                .map_err(|e| Error::Corrupt(format!("raft entry {index}: {e}")))?;
            terms.push_back(e.term);
            expected += 1;
        }
        let last = expected - 1;
        Ok(RaftLog {
            tree,
            inner: Arc::new(RwLock::new(Inner {
                hard_state,
                compacted,
                last,
                terms,
            })),
            state,
        })
    }

    /// This data directory's owner, if it has been set up.
    pub fn identity(&self) -> Result<Option<Identity>> {
        match self.tree.get(IDENTITY)? {
            Some(v) => Ok(Some(Identity::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Marks the data directory as this member's (the last step of setting it up).
    pub fn set_identity(&self, id: &Identity) -> Result<()> {
        self.tree.insert(IDENTITY, id.encode())?;
        Ok(())
    }

    /// Sets the log's starting point and HardState for a new member (bootstrap or
    /// restore): everything up to `index` is in the state machine already.
    pub fn bootstrap(&self, index: u64, term: u64) -> Result<()> {
        let hs = HardState {
            term,
            commit: index,
            ..Default::default()
        };
        let mut batch = sled::Batch::default();
        batch.insert(HARD_STATE, hs.write_to_bytes().map_err(storage_io)?);
        batch.insert(COMPACTED, &compaction_bytes(index, term)[..]);
        self.tree.apply_batch(batch)?;
        let mut inner = self.inner.write().expect("raft log lock");
        inner.hard_state = hs;
        inner.compacted = (index, term);
        inner.last = index;
        inner.terms.clear();
        Ok(())
    }

    /// Appends entries (replacing any conflicting suffix). Not durable until flushed.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut inner = self.inner.write().expect("raft log lock");
        let mut batch = sled::Batch::default();
        if first.index <= inner.last {
            for i in first.index..=inner.last {
                batch.remove(&entry_key(i)[..]);
            }
            let keep = first.index.saturating_sub(inner.compacted.0 + 1) as usize;
            inner.terms.truncate(keep);
        }
        for e in entries {
            batch.insert(
                &entry_key(e.index)[..],
                e.write_to_bytes().map_err(storage_io)?,
            );
            inner.terms.push_back(e.term);
        }
        self.tree.apply_batch(batch)?;
        inner.last = entries.last().expect("non-empty").index;
        Ok(())
    }

    /// Records a new HardState. Not durable until flushed.
    pub fn set_hard_state(&self, hs: &HardState) -> Result<()> {
        self.tree
            .insert(HARD_STATE, hs.write_to_bytes().map_err(storage_io)?)?;
        self.inner.write().expect("raft log lock").hard_state = hs.clone();
        Ok(())
    }

    /// Moves the commit index of the stored HardState.
    pub fn set_commit(&self, commit: u64) -> Result<()> {
        let mut hs = self.inner.read().expect("raft log lock").hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Makes the HardState's commit index cover what the state machine applied.
    ///
    /// Applying writes the state tree before the next HardState is stored, so a crash
    /// between the two leaves `applied > commit` on disk. Everything applied was
    /// committed, so raising the commit index is safe (raft-rs refuses to start
    /// otherwise). A state machine ahead of the whole log (a crash while installing a
    /// snapshot from the leader) holds everything the log would: the log restarts after it.
    pub fn reconcile_applied(&self, applied: u64, applied_term: u64) -> Result<()> {
        let (commit, last) = {
            let inner = self.inner.read().expect("raft log lock");
            (inner.hard_state.commit, inner.last)
        };
        if applied > last {
            return self.apply_snapshot(applied, applied_term);
        }
        if applied > commit {
            self.set_commit(applied)?;
        }
        Ok(())
    }

    /// Drops the whole log for a snapshot received from the leader.
    pub fn apply_snapshot(&self, index: u64, term: u64) -> Result<()> {
        let mut inner = self.inner.write().expect("raft log lock");
        let mut batch = sled::Batch::default();
        for i in inner.compacted.0 + 1..=inner.last {
            batch.remove(&entry_key(i)[..]);
        }
        batch.insert(COMPACTED, &compaction_bytes(index, term)[..]);
        let mut hs = inner.hard_state.clone();
        hs.commit = hs.commit.max(index);
        hs.term = hs.term.max(term);
        batch.insert(HARD_STATE, hs.write_to_bytes().map_err(storage_io)?);
        self.tree.apply_batch(batch)?;
        inner.hard_state = hs;
        inner.compacted = (index, term);
        inner.last = index;
        inner.terms.clear();
        Ok(())
    }

    /// Discards entries up to and including `to` (they are in the state machine).
    pub fn compact(&self, to: u64) -> Result<()> {
        let mut inner = self.inner.write().expect("raft log lock");
        if to <= inner.compacted.0 || to > inner.last {
            return Ok(());
        }
        let term = inner.terms[(to - inner.compacted.0 - 1) as usize];
        let mut batch = sled::Batch::default();
        for i in inner.compacted.0 + 1..=to {
            batch.remove(&entry_key(i)[..]);
        }
        batch.insert(COMPACTED, &compaction_bytes(to, term)[..]);
        self.tree.apply_batch(batch)?;
        let drop = (to - inner.compacted.0) as usize;
        inner.terms.drain(..drop);
        inner.compacted = (to, term);
        Ok(())
    }

    /// The first index still in the log.
    pub fn first(&self) -> u64 {
        self.inner.read().expect("raft log lock").compacted.0 + 1
    }
}

fn storage_io(e: protobuf::ProtobufError) -> Error {
    Error::Corrupt(format!("encoding a raft record: {e}"))
}

fn compaction_bytes(index: u64, term: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&index.to_be_bytes());
    v[8..].copy_from_slice(&term.to_be_bytes());
    v
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hard_state = self.inner.read().expect("raft log lock").hard_state.clone();
        let conf_state: ConfState = self.state.read().expect("state lock").conf_state().clone();
        Ok(RaftState {
            hard_state,
            conf_state,
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let inner = self.inner.read().expect("raft log lock");
        if low <= inner.compacted.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > inner.last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for item in self.tree.range(entry_key(low)..entry_key(high)) {
            let (_, v) = item.map_err(storage_err)?;
            let e = Entry::parse_from_bytes(&v).map_err(storage_err)?;
            size += u64::from(e.compute_size());
            // raft-rs wants at least one entry even when it alone exceeds the limit.
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let inner = self.inner.read().expect("raft log lock");
        if idx == inner.compacted.0 {
            return Ok(inner.compacted.1);
        }
        if idx < inner.compacted.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > inner.last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(inner.terms[(idx - inner.compacted.0 - 1) as usize])
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.read().expect("raft log lock").compacted.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner.read().expect("raft log lock").last)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let state = self.state.read().expect("state lock");
        let (index, term) = state.applied();
        if index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let entries = state.dump().map_err(storage_err)?;
        let mut snap = Snapshot {
            data: snapshot::encode_entries(&entries).into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(state.conf_state().clone());
        Ok(snap)
    }
}
