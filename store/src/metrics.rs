//! Counters for `/metrics` (Prometheus text format), named after etcd's where one exists.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated as the member works.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Log entries applied.
    pub applied: AtomicU64,
    /// Times this member became leader.
    pub leader_changes: AtomicU64,
    /// Proposals that failed (timed out, no leader, refused).
    pub proposals_failed: AtomicU64,
    /// Watchers currently open.
    pub watchers: AtomicU64,
    /// gRPC requests served, by kind.
    pub ranges: AtomicU64,
    /// Writes (Put, DeleteRange, write Txns) served.
    pub writes: AtomicU64,
}

/// Values read at scrape time.
pub struct Gauges {
    /// Whether a leader is known.
    pub has_leader: bool,
    /// Whether this member leads.
    pub is_leader: bool,
    /// The current revision.
    pub revision: i64,
    /// The compacted revision.
    pub compact_revision: i64,
    /// Logical bytes stored.
    pub db_size_in_use: u64,
    /// Bytes on disk.
    pub db_size: u64,
    /// Raft term, commit and applied index.
    pub term: u64,
    /// Raft commit index.
    pub commit: u64,
    /// Raft applied index.
    pub applied_index: u64,
    /// Number of keys.
    pub keys: usize,
    /// Number of leases.
    pub leases: usize,
}

impl Metrics {
    /// Renders everything in the Prometheus text format.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "etcd_server_has_leader",
            "gauge",
            "Whether a leader exists.",
            u8::from(g.has_leader).to_string(),
        );
        metric(
            "etcd_server_is_leader",
            "gauge",
            "Whether this member is the leader.",
            u8::from(g.is_leader).to_string(),
        );
        metric(
            "etcd_server_leader_changes_seen_total",
            "counter",
            "Times this member became leader.",
            self.leader_changes.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_server_proposals_applied_total",
            "counter",
            "Log entries applied.",
            self.applied.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_server_proposals_failed_total",
            "counter",
            "Proposals that failed.",
            self.proposals_failed.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_server_proposals_committed_total",
            "gauge",
            "The Raft commit index.",
            g.commit.to_string(),
        );
        metric(
            "etcd_server_applied_index",
            "gauge",
            "The Raft applied index.",
            g.applied_index.to_string(),
        );
        metric(
            "etcd_server_term",
            "gauge",
            "The Raft term.",
            g.term.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_current_revision",
            "gauge",
            "The current revision.",
            g.revision.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_compact_revision",
            "gauge",
            "The compacted revision.",
            g.compact_revision.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_keys_total",
            "gauge",
            "Live keys.",
            g.keys.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_watcher_total",
            "gauge",
            "Open watchers.",
            self.watchers.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_debugging_lease_total",
            "gauge",
            "Granted leases.",
            g.leases.to_string(),
        );
        metric(
            "etcd_mvcc_db_total_size_in_bytes",
            "gauge",
            "Bytes on disk.",
            g.db_size.to_string(),
        );
        metric(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "gauge",
            "Logical bytes stored (what the quota counts).",
            g.db_size_in_use.to_string(),
        );
        metric(
            "skiff_store_range_total",
            "counter",
            "Range requests served.",
            self.ranges.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "skiff_store_write_total",
            "counter",
            "Write requests served.",
            self.writes.load(Ordering::Relaxed).to_string(),
        );
        out
    }
}
