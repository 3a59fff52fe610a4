//! skiff's node network daemon, one per node: the flannel-style VXLAN overlay, the
//! service proxy (kube-proxy's role, in nftables) and cluster DNS.
//!
//! Built so far, as pure functions of API objects: the service proxy's ruleset
//! ([`proxy`]), the overlay's desired state and CNI config ([`overlay`]) and the cluster
//! DNS answers ([`dns`]). The daemon
//! that applies them (netlink, nft) comes next.

pub mod dns;
pub mod error;
pub mod net;
pub mod overlay;
pub mod proxy;

pub use error::{Error, Result};
