//! skiff's test support: everything the integration, compatibility and fault suites and
//! the `bench` command share.
//!
//! - [`bench`]: pure helpers of the benchmarks (percentiles, etcdctl's verdicts).
//! - [`cluster`]: start store clusters (skiff or etcd) as real processes on loopback,
//!   kill, pause, cut and heal members.
//! - [`controller_manager`]: `skiff controller-manager` processes.
//! - [`kubelet`]: a `skiff kubelet` process on this machine's containerd and CNI plugins, isolated per test.
//! - [`netns`]: node machines as network namespaces on a bridge, each with a kubelet and netd.
//! - [`history`]: record every client operation with its invoke and return times.
//! - [`workload`]: concurrent etcd clients doing get/put/delete/CAS on a few keys.
//! - [`scheduler`]: `skiff scheduler` processes and Node/Pod objects for scheduling.
//! - [`linearizability`]: check a recorded history (Wing–Gong with memoization, per key).
//! - [`skiffctl`]: run the built `skiffctl` binary against a control plane.
//! - [`wait`]: wait for a condition instead of sleeping.

pub mod bench;
pub mod cluster;
pub mod control_plane;
pub mod controller_manager;
pub mod history;
pub mod http;
pub mod jwt;
pub mod kubelet;
pub mod linearizability;
pub mod netns;
pub mod scheduler;
pub mod skiffctl;
pub mod tour;
pub mod wait;
pub mod workload;
