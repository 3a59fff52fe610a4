//! The overlay's desired state, as flannel's vxlan backend lays it out, computed from
//! Node objects: for every other node with a pod CIDR, its VTEP (the CIDR's network
//! address, on this node's VXLAN device as a /32), a route to its pods through that
//! VTEP, the VTEP's MAC (neighbor entry) and where to send frames for that MAC (FDB
//! entry: the node's underlay address). Plus the CNI config netd writes for the kubelet.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use crate::net::Ipv4Net;

/// Node annotation with this node's VTEP, as flannel's `backend-data`:
/// `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`.
pub const BACKEND_DATA_ANNOTATION: &str = "skiff.io/backend-data";
/// Node annotation with the underlay address VXLAN frames for this node go to.
pub const PUBLIC_IP_ANNOTATION: &str = "skiff.io/public-ip";
/// The VXLAN network identifier (flannel's default).
pub const VNI: u32 = 1;
/// The VXLAN UDP port (flannel's and the Linux default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// Bytes VXLAN adds to each packet (outer Ethernet, IP, UDP, VXLAN headers).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The name of the CNI network netd configures.
pub const CNI_NETWORK: &str = "skiff";
/// The bridge pods are attached to on each node.
pub const BRIDGE: &str = "skiff0";

/// Another node, as the overlay reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The node's name.
    pub node: String,
    /// Its pods' addresses.
    pub pod_cidr: Ipv4Net,
    /// Its VTEP address: the pod CIDR's network address.
    pub vtep_ip: Ipv4Addr,
    /// Its VTEP's MAC address.
    pub vtep_mac: [u8; 6],
    /// Its underlay address.
    pub public_ip: Ipv4Addr,
}

/// The peers to program, and the nodes left out with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Every reachable other node, by name.
    pub peers: Vec<Peer>,
    /// `node: why` for each node that gets no routes.
    pub skipped: Vec<String>,
}

/// The peers of node `me` among `nodes`. A node without a pod CIDR or VTEP annotations
/// is not ready for the overlay yet; nodes whose pod CIDRs overlap (or overlap this
/// node's own) are all left out, since a route to either could send traffic to the
/// wrong place.
pub fn desired_peers(me: &str, nodes: &[Node]) -> Desired {
    let mut desired = Desired::default();
    let mut candidates = Vec::new();
    let mut own_cidr = None;
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by_key(|n| n.metadata.name.clone());
    for node in sorted {
        let name = node.metadata.name.clone().unwrap_or_default();
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref());
        let cidr = match cidr.map(str::parse::<Ipv4Net>) {
            None => {
                if name != me {
                    desired.skipped.push(format!("{name}: no spec.podCIDR yet"));
                }
                continue;
            }
            Some(Err(e)) => {
                desired.skipped.push(format!("{name}: spec.podCIDR: {e}"));
                continue;
            }
            Some(Ok(c)) => c,
        };
        if name == me {
            own_cidr = Some(cidr);
            continue;
        }
        match peer_of(&name, cidr, node) {
            Ok(p) => candidates.push(p),
            Err(why) => desired.skipped.push(format!("{name}: {why}")),
        }
    }
    for (i, p) in candidates.iter().enumerate() {
        let clash = candidates.iter().enumerate().find(|(j, q)| {
            *j != i && (p.pod_cidr.overlaps(q.pod_cidr) || p.public_ip == q.public_ip)
        });
        if let Some((_, q)) = clash {
            desired.skipped.push(format!(
                "{}: its pod CIDR {} or address {} clashes with node {}'s ({}, {})",
                p.node, p.pod_cidr, p.public_ip, q.node, q.pod_cidr, q.public_ip
            ));
        } else if own_cidr.is_some_and(|own| own.overlaps(p.pod_cidr)) {
            desired.skipped.push(format!(
                "{}: its pod CIDR {} overlaps this node's",
                p.node, p.pod_cidr
            ));
        } else {
            desired.peers.push(p.clone());
        }
    }
    desired
}

fn peer_of(name: &str, pod_cidr: Ipv4Net, node: &Node) -> Result<Peer, String> {
    let annotations: BTreeMap<String, String> =
        node.metadata.annotations.clone().unwrap_or_default();
    let backend = annotations.get(BACKEND_DATA_ANNOTATION).ok_or_else(|| {
        format!("no {BACKEND_DATA_ANNOTATION} annotation yet (its netd has not started)")
    })?;
    let backend: Value = serde_json::from_str(backend)
        .map_err(|e| format!("{BACKEND_DATA_ANNOTATION} is not JSON: {e}"))?;
    let mac = backend["VtepMAC"]
        .as_str()
        .and_then(parse_mac)
        .ok_or_else(|| format!("{BACKEND_DATA_ANNOTATION} has no valid VtepMAC"))?;
    let public_ip = annotations
        .get(PUBLIC_IP_ANNOTATION)
        .ok_or_else(|| format!("no {PUBLIC_IP_ANNOTATION} annotation yet"))?
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("{PUBLIC_IP_ANNOTATION} is not an IPv4 address"))?;
    Ok(Peer {
        node: name.to_string(),
        pod_cidr,
        vtep_ip: pod_cidr.addr,
        vtep_mac: mac,
        public_ip,
    })
}

/// The `backend-data` annotation's value for a VTEP MAC.
pub fn backend_data(mac: [u8; 6]) -> String {
    json!({"VNI": VNI, "VtepMAC": format_mac(mac)}).to_string()
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The CNI config netd writes for the kubelet: pods on a bridge with the node's pod
/// CIDR (the bridge is their gateway), an MTU that leaves room for VXLAN, hostPort
/// through `portmap`, and `lo` up through `loopback`. Masquerading is netd's (in its
/// nftables table), not the plugin's. `ipam_data_dir` overrides host-local's
/// /var/lib/cni/networks (several node namespaces sharing one filesystem need it).
pub fn cni_config(pod_cidr: Ipv4Net, underlay_mtu: u32, ipam_data_dir: Option<&str>) -> Value {
    let mut ipam = json!({
        "type": "host-local",
        "ranges": [[{"subnet": pod_cidr.to_string()}]],
        "routes": [{"dst": "0.0.0.0/0"}]
    });
    if let Some(dir) = ipam_data_dir {
        ipam["dataDir"] = json!(dir);
    }
    json!({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "mtu": underlay_mtu.saturating_sub(VXLAN_OVERHEAD),
                "ipam": ipam
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    })
}

#[cfg(test)]
mod tests;
