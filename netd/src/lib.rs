//! skiff's node network daemon, one per node: the flannel-style VXLAN overlay, the
//! service proxy (kube-proxy's role, in nftables) and cluster DNS.
//!
//! # Layout
//!
//! - [`daemon`]: [`run`]: the watch caches and the loops that apply the rest.
//! - [`overlay`]: the overlay's desired peers from Node objects, the VTEP annotations
//!   and the CNI config (pure).
//! - [`netlink`]: the overlay applied to the kernel (VXLAN device, bridge, routes,
//!   neighbors, FDB), by difference with what is there.
//! - [`proxy`]: the service rules as one nftables table (pure).
//! - [`dns`]: the cluster zone's answers (pure); [`dns_server`] serves them with
//!   hickory-server and forwards the rest upstream.
//! - [`net`]: IPv4 networks.

pub mod daemon;
pub mod dns;
pub mod dns_server;
pub mod error;
pub mod net;
pub mod netlink;
pub mod overlay;
pub mod proxy;

pub use daemon::{run, Config};
pub use error::{Error, Result};
