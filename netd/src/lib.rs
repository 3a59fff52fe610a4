//! skiff's node network daemon, one per node: the flannel-style VXLAN overlay, the
//! service proxy (kube-proxy's role, in nftables) and cluster DNS.
//!
//! Built so far: the service proxy's ruleset, a pure function of the node, the cluster
//! CIDR, the Services and the EndpointSlices. The daemon around it comes next.

pub mod error;
pub mod proxy;

pub use error::{Error, Result};
