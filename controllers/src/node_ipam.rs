//! Node IPAM: gives each Node a `spec.podCIDR` (and `podCIDRs`) cut from
//! `--cluster-cidr` at `--node-cidr-mask-size`, as kube-controller-manager's range
//! allocator does.
//!
//! The set of CIDRs in use is the node cache itself (workers start only after it has
//! synced, so a restarted controller manager sees every earlier assignment) plus the
//! assignments this process has sent and not yet seen come back. A deleted node leaves
//! the cache, which frees its CIDR. One worker allocates, so two nodes never race for
//! the same CIDR; the patch carries the node's resourceVersion so that a podCIDR set
//! meanwhile by someone else is never overwritten.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use skiff_client::controller::{Action, Controller};
use skiff_client::{Api, Client, Patch, PatchParams, ResourceExt, Store};

use crate::events::{EventType, Recorder};
use crate::manager::parse_cidr;
use crate::{Error, Result};

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "node-ipam-controller";

/// How often a node waiting for a free CIDR looks again.
const FULL_RETRY: Duration = Duration::from_secs(3);

/// The node CIDRs of a cluster CIDR: `count` subnets of `/mask` from `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrSet {
    base: u32,
    mask: u8,
    count: u32,
}

impl CidrSet {
    /// Splits `cluster_cidr` into `/mask_size` subnets.
    pub fn new(cluster_cidr: &str, mask_size: u8) -> std::result::Result<CidrSet, String> {
        let (base, prefix) = parse_cidr(cluster_cidr)?;
        if mask_size < prefix || mask_size > 32 {
            return Err(format!(
                "a node CIDR mask of /{mask_size} does not fit in {cluster_cidr}"
            ));
        }
        let bits = u32::from(mask_size - prefix);
        if bits > 24 {
            return Err(format!(
                "{cluster_cidr} split into /{mask_size} gives more than 2^24 node CIDRs"
            ));
        }
        Ok(CidrSet {
            base: u32::from(base),
            mask: mask_size,
            count: 1 << bits,
        })
    }

    /// How many node CIDRs there are.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether there are none (never, for a valid set).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th node CIDR, e.g. `10.244.3.0/24`.
    pub fn cidr(&self, i: u32) -> String {
        let step = if self.mask == 0 {
            0
        } else {
            1u32 << (32 - self.mask)
        };
        let addr = Ipv4Addr::from(self.base.wrapping_add(i.wrapping_mul(step)));
        format!("{addr}/{}", self.mask)
    }

    /// Which node CIDR `cidr` is, if it is exactly one of this set.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (addr, len) = parse_cidr(cidr).ok()?;
        if len != self.mask {
            return None;
        }
        let offset = u32::from(addr).checked_sub(self.base)?;
        let i = if self.mask == 0 {
            0
        } else {
            offset >> (32 - self.mask)
        };
        (i < self.count).then_some(i)
    }

    /// The first index not in `used`, searching from `from` and wrapping around, as
    /// Kubernetes' cidrset does so that a just-released CIDR is not handed out again at
    /// once.
    pub fn next_free(&self, used: &HashSet<u32>, from: u32) -> Option<u32> {
        (0..self.count)
            .map(|k| (from.wrapping_add(k)) % self.count)
            .find(|i| !used.contains(i))
    }
}

/// What the node IPAM reconcile needs.
pub struct Ctx {
    client: Client,
    nodes: Store<Node>,
    cidrs: CidrSet,
    recorder: Recorder,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    // Sent to the API server, not yet seen in the cache: node name -> index.
    in_flight: HashMap<String, u32>,
    // Where the next search starts.
    next: u32,
    // Nodes already told by an Event that the range is full.
    warned: HashSet<String>,
}

/// Builds the controller over every Node.
pub fn controller(
    client: &Client,
    cluster_cidr: &str,
    mask_size: u8,
) -> Result<(Controller<Node>, Arc<Ctx>)> {
    let cidrs = CidrSet::new(cluster_cidr, mask_size)
        .map_err(|e| Error::Config(format!("--cluster-cidr: {e}")))?;
    let c = Controller::new(Api::<Node>::all(client.clone()), Default::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        nodes: c.store(),
        cidrs,
        recorder: Recorder::new(client.clone(), NAME),
        state: Mutex::new(State::default()),
    });
    Ok((c, ctx))
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut out: Vec<String> = spec
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(c) = spec
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
    {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// One reconcile of one Node; see the module docs.
pub async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action> {
    let name = node.name().to_string();
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (index, cidr) = {
        let mut state = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
        if !pod_cidrs(&node).is_empty() {
            state.in_flight.remove(&name);
            state.warned.remove(&name);
            return Ok(Action::await_change());
        }
        let cached = ctx.nodes.list();
        let live: HashSet<&str> = cached.iter().map(|n| n.name()).collect();
        state.in_flight.retain(|n, _| live.contains(n.as_str()));
        // An earlier patch for this node may have landed unseen: send the same CIDR.
        if let Some(&i) = state.in_flight.get(&name) {
            (i, ctx.cidrs.cidr(i))
        } else {
            let mut used: HashSet<u32> = state.in_flight.values().copied().collect();
            for n in &cached {
                for c in pod_cidrs(n) {
                    if let Some(i) = ctx.cidrs.index_of(&c) {
                        used.insert(i);
                    }
                }
            }
            match ctx.cidrs.next_free(&used, state.next) {
                Some(i) => {
                    state.in_flight.insert(name.clone(), i);
                    state.next = (i + 1) % ctx.cidrs.len();
                    (i, ctx.cidrs.cidr(i))
                }
                None => {
                    let first = state.warned.insert(name.clone());
                    drop(state);
                    if first {
                        ctx.recorder.publish(
                            node.as_ref(),
                            EventType::Normal,
                            "CIDRNotAvailable",
                            &format!("Node {name} status is now: CIDRNotAvailable"),
                        );
                    }
                    tracing::warn!(node = %name, range = %ctx.cidrs.cidr(0), count = ctx.cidrs.len(), "no free pod CIDR for the node");
                    return Ok(Action::requeue(FULL_RETRY));
                }
            }
        }
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, pod_cidr = %cidr, "allocated the node's pod CIDR");
            ctx.recorder.publish(
                node.as_ref(),
                EventType::Normal,
                "CIDRAssignment",
                &format!("Assigned pod CIDR {cidr}"),
            );
            Ok(Action::await_change())
        }
        Err(e) if e.is_not_found() => {
            let mut state = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.in_flight.get(&name) == Some(&index) {
                state.in_flight.remove(&name);
            }
            Ok(Action::await_change())
        }
        // The reservation stays: this patch or an earlier one may have landed. On a
        // conflict the watch brings the node's new version, and either it shows a
        // podCIDR (the reservation is dropped) or the retry sends the same CIDR again.
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_cluster_cidr() {
        let s = CidrSet::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(s.len(), 256);
        assert_eq!(s.cidr(0), "10.244.0.0/24");
        assert_eq!(s.cidr(3), "10.244.3.0/24");
        assert_eq!(s.cidr(255), "10.244.255.0/24");
        assert_eq!(s.index_of("10.244.3.0/24"), Some(3));
        assert_eq!(s.index_of("10.244.3.0/25"), None);
        assert_eq!(s.index_of("10.245.0.0/24"), None);
        assert_eq!(s.index_of("10.243.0.0/24"), None);
        let small = CidrSet::new("10.250.0.0/29", 30).unwrap();
        assert_eq!(small.len(), 2);
        assert_eq!(small.cidr(1), "10.250.0.4/30");
        assert!(CidrSet::new("10.244.0.0/16", 8).is_err());
        assert!(CidrSet::new("10.0.0.0/8", 32).is_ok());
        assert!(CidrSet::new("10.0.0.0/7", 32).is_err(), "2^24 is the cap");
    }

    #[test]
    fn next_free_rotates_and_reports_full() {
        let s = CidrSet::new("10.250.0.0/28", 30).unwrap();
        let mut used = HashSet::new();
        assert_eq!(s.next_free(&used, 0), Some(0));
        used.insert(0);
        used.insert(1);
        assert_eq!(s.next_free(&used, 1), Some(2));
        assert_eq!(s.next_free(&used, 3), Some(3));
        used.insert(3);
        assert_eq!(s.next_free(&used, 3), Some(2), "wraps around");
        used.insert(2);
        assert_eq!(s.next_free(&used, 0), None);
    }
}
