//! The storage watchdog, and the free-space check a member makes before it opens its
//! data directory.
//!
//! After the disk fills up, sled 0.34 can wait forever in a write, not only in a flush:
//! in `flush`, in `apply_batch` or `insert` (waiting for an IO buffer that is never
//! written), and in the flush it makes when its last handle is dropped. A member stuck
//! there keeps its ports open but never commits or answers again, which is worse than
//! stopping. Every write to the data directory is therefore made under a
//! [`StorageWatch`] guard, and a thread of its own ends the process when one has run too
//! long. Exiting loses nothing: a write is acknowledged only after it was applied, and
//! applied only after the Raft log holding it was flushed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::error;

use crate::error::{Error, Result};

/// How long a storage write may take before the member gives up on its disk.
pub const STALL: Duration = Duration::from_secs(30);

/// How long installing a snapshot from the leader may take: it rewrites the whole state.
pub const SNAPSHOT_STALL: Duration = Duration::from_secs(600);

/// The free space below which a member refuses to start: sled writes its configuration,
/// a snapshot of its page table and a 512 KiB log segment before anything else.
pub const MIN_FREE_TO_START: u64 = 1024 * 1024;

/// A write to the data directory, as the watchdog names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StorageOp {
    /// Applying committed entries to the state tree.
    Apply = 1,
    /// Appending entries to the Raft log.
    Append,
    /// Storing the HardState (term, vote, commit index).
    HardState,
    /// Flushing (fsync) what was written.
    Flush,
    /// Dropping log entries the state machine holds.
    Compact,
    /// Replacing the state with a snapshot from the leader.
    InstallSnapshot,
    /// The last flush when the member stops.
    Close,
}

impl StorageOp {
    const ALL: [StorageOp; 7] = [
        StorageOp::Apply,
        StorageOp::Append,
        StorageOp::HardState,
        StorageOp::Flush,
        StorageOp::Compact,
        StorageOp::InstallSnapshot,
        StorageOp::Close,
    ];

    fn from_u8(v: u8) -> Option<StorageOp> {
        StorageOp::ALL.into_iter().find(|op| *op as u8 == v)
    }

    /// What the operation does, for the message that stops the member.
    pub fn describe(self) -> &'static str {
        match self {
            StorageOp::Apply => "applying committed entries",
            StorageOp::Append => "appending to the Raft log",
            StorageOp::HardState => "storing the Raft state",
            StorageOp::Flush => "flushing to disk",
            StorageOp::Compact => "compacting the Raft log",
            StorageOp::InstallSnapshot => "installing a snapshot from the leader",
            StorageOp::Close => "the final flush",
        }
    }

    /// How long the operation may take.
    pub fn limit(self) -> Duration {
        match self {
            StorageOp::InstallSnapshot => SNAPSHOT_STALL,
            _ => STALL,
        }
    }
}

/// Milliseconds since this process first asked: a monotonic clock that fits an atomic.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The storage operation under way, if any. Written by the one thread that writes to
/// the data directory at a time (the Raft thread, then the shutdown), read by the
/// watchdog.
#[derive(Debug, Default)]
pub struct StorageWatch {
    /// When the operation started (ms on [`now_ms`]'s clock, plus one; 0: none).
    started_ms: AtomicU64,
    /// The operation (`StorageOp as u8`).
    op: AtomicU8,
}

/// Marks a storage operation as under way until dropped.
#[must_use = "the operation is watched only while the guard lives"]
pub struct OpGuard<'a> {
    watch: &'a StorageWatch,
    prev_started: u64,
    prev_op: u8,
}

impl StorageWatch {
    /// Marks `op` as started now; the returned guard marks it finished.
    pub fn begin(&self, op: StorageOp) -> OpGuard<'_> {
        let prev_started = self.started_ms.load(Ordering::Acquire);
        let prev_op = self.op.load(Ordering::Acquire);
        self.op.store(op as u8, Ordering::Release);
        self.started_ms.store(now_ms() + 1, Ordering::Release);
        OpGuard {
            watch: self,
            prev_started,
            prev_op,
        }
    }

    /// The operation under way and how long it has run, if it has run past its limit.
    pub fn stalled(&self) -> Option<(StorageOp, Duration)> {
        self.stalled_at(now_ms())
    }

    fn stalled_at(&self, now_ms: u64) -> Option<(StorageOp, Duration)> {
        let started = self.started_ms.load(Ordering::Acquire);
        if started == 0 {
            return None;
        }
        let op = StorageOp::from_u8(self.op.load(Ordering::Acquire))?;
        let ran = Duration::from_millis((now_ms + 1).saturating_sub(started));
        (ran > op.limit()).then_some((op, ran))
    }
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        // An enclosing operation is still under way, from its own start.
        self.watch.op.store(self.prev_op, Ordering::Release);
        self.watch
            .started_ms
            .store(self.prev_started, Ordering::Release);
    }
}

/// Starts the thread that ends the process when a storage operation stalls.
pub fn spawn(watch: std::sync::Arc<crate::node::Shared>, data_dir: PathBuf) -> Result<()> {
    let _ = now_ms();
    std::thread::Builder::new()
        .name("storage-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            if let Some((op, ran)) = watch.storage.stalled() {
                error!(
                    op = op.describe(),
                    seconds = ran.as_secs(),
                    dir = %data_dir.display(),
                    "storage operation stalled"
                );
                // Straight to stderr and out: the runtime may be blocked behind the
                // stuck thread (readers wait for the state lock it holds).
                eprintln!(
                    "skiff: data directory {}: {} has not completed for {} s (is the disk \
                     full or failing?); the member stops. Free disk space or fix the disk, \
                     then restart it: nothing unwritten was acknowledged",
                    data_dir.display(),
                    op.describe(),
                    ran.as_secs()
                );
                std::process::exit(1);
            }
        })
        .map_err(|e| Error::Io {
            context: "starting the storage watchdog".into(),
            source: e,
        })?;
    Ok(())
}

/// Bytes free for unprivileged writers on the filesystem holding `dir` (or the nearest
/// directory above it that exists); `None` when the system cannot tell.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|d| d.exists())?;
    let st = nix::sys::statvfs::statvfs(existing).ok()?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Refuses to start a member whose disk is (nearly) full: sled would fail while opening
/// the database, with a message about locks or damage instead of space.
pub fn check_free_to_start(dir: &Path) -> Result<()> {
    match free_bytes(dir) {
        Some(free) if free < MIN_FREE_TO_START => Err(Error::DataDir {
            dir: dir.display().to_string(),
            reason: format!(
                "its disk is full (No space left on device: {free} bytes free, the member \
                 needs at least {MIN_FREE_TO_START} to start); free disk space, then start \
                 it again"
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_marks_its_operation_and_restores_the_enclosing_one() {
        let watch = StorageWatch::default();
        assert_eq!(watch.started_ms.load(Ordering::Acquire), 0);
        {
            let _outer = watch.begin(StorageOp::Apply);
            let outer_start = watch.started_ms.load(Ordering::Acquire);
            assert_ne!(outer_start, 0);
            {
                let _inner = watch.begin(StorageOp::Flush);
                assert_eq!(watch.op.load(Ordering::Acquire), StorageOp::Flush as u8);
            }
            assert_eq!(watch.op.load(Ordering::Acquire), StorageOp::Apply as u8);
            assert_eq!(watch.started_ms.load(Ordering::Acquire), outer_start);
        }
        assert_eq!(watch.started_ms.load(Ordering::Acquire), 0);
        assert!(watch.stalled().is_none());
    }

    #[test]
    fn an_operation_past_its_limit_is_stalled() {
        let watch = StorageWatch::default();
        let _op = watch.begin(StorageOp::Append);
        assert!(
            watch.stalled().is_none(),
            "a fresh operation is not stalled"
        );
        let later = now_ms() + STALL.as_millis() as u64 + 1000;
        assert_eq!(
            watch.stalled_at(later).map(|s| s.0),
            Some(StorageOp::Append)
        );
        {
            let _install = watch.begin(StorageOp::InstallSnapshot);
            assert!(
                watch.stalled_at(later).is_none(),
                "a snapshot may take longer"
            );
        }
        for op in StorageOp::ALL {
            assert_eq!(StorageOp::from_u8(op as u8), Some(op));
        }
        assert_eq!(StorageOp::from_u8(0), None);
    }

    #[test]
    fn free_space_is_known_for_an_existing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(&dir.path().join("not/yet")).is_some());
        check_free_to_start(dir.path()).expect("a test machine has a megabyte free");
    }
}
