//! The scheduler's view of the cluster: each node with what it offers and what the pods
//! bound or assumed on it already take, and each pod's scheduling needs computed once.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, Pod, PreferredSchedulingTerm, Taint, Toleration,
};

use crate::resources::{pod_requests, PodRequests, Resources};

/// A host port a pod takes on its node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `hostIP`; "" and `0.0.0.0` mean every address.
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether two pods asking for these ports could not share a node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || any(&self.ip) || any(&other.ip))
    }
}

/// What scheduling needs to know about a pod, computed once per pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    /// Its requests, or why they cannot be read.
    pub requests: Result<PodRequests, String>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Option<NodeSelector>,
    /// `spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_affinity: Vec<PreferredSchedulingTerm>,
    /// Host ports of its containers.
    pub host_ports: Vec<HostPort>,
    /// uid of its controlling owner (a ReplicaSet, a StatefulSet…), for spreading.
    pub owner_uid: Option<String>,
}

impl PodInfo {
    /// Reads a pod.
    pub fn new(pod: &Pod) -> PodInfo {
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let owner_uid = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone());
        let Some(spec) = &pod.spec else {
            return PodInfo {
                key,
                requests: Err("pod has no spec".into()),
                tolerations: Vec::new(),
                node_selector: BTreeMap::new(),
                required_affinity: None,
                preferred_affinity: Vec::new(),
                host_ports: Vec::new(),
                owner_uid,
            };
        };
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                p.host_port.filter(|hp| *hp > 0).map(|port| HostPort {
                    ip: p.host_ip.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                })
            })
            .collect();
        PodInfo {
            key,
            requests: pod_requests(spec),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_affinity: node_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            preferred_affinity: node_affinity
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            host_ports,
            owner_uid,
        }
    }

    /// What this pod takes from the node it is bound or assumed on.
    pub fn usage(&self) -> PodUsage {
        let r = self.requests.clone().unwrap_or_default();
        PodUsage {
            requests: r.requests,
            non_zero: r.non_zero,
            host_ports: self.host_ports.clone(),
            owner_uid: self.owner_uid.clone(),
        }
    }
}

/// What one pod takes from its node, kept to subtract it again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Effective requests.
    pub requests: Resources,
    /// Requests with the scoring defaults.
    pub non_zero: Resources,
    /// Host ports.
    pub host_ports: Vec<HostPort>,
    /// Controlling owner uid.
    pub owner_uid: Option<String>,
}

/// What the filters and scores read of a Node object.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// Condition `Ready` is `True`.
    pub ready: bool,
    /// `status.allocatable` without `pods`, or why it is unusable.
    pub allocatable: Result<Resources, AllocatableProblem>,
    /// `status.allocatable.pods`.
    pub allowed_pods: i64,
}

/// Why a node's allocatable resources cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocatableProblem {
    /// `status.allocatable` is missing or empty.
    Missing,
    /// A quantity in it does not parse.
    Invalid(String),
}

impl NodeView {
    /// Reads a Node.
    pub fn new(node: &Node) -> NodeView {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let alloc = status.and_then(|s| s.allocatable.as_ref());
        let (allocatable, allowed_pods) = match alloc {
            None => (Err(AllocatableProblem::Missing), 0),
            Some(m) if m.is_empty() => (Err(AllocatableProblem::Missing), 0),
            Some(m) => {
                let pods = match m.get("pods") {
                    None => Ok(0),
                    Some(q) => skiff_api::validation::quantity::parse_value(&q.0)
                        .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
                        .map_err(|e| format!("pods: {:?}: {e}", q.0)),
                };
                match (Resources::parse(m), pods) {
                    (Ok(r), Ok(p)) => (Ok(r), p),
                    (Err(e), _) | (_, Err(e)) => (Err(AllocatableProblem::Invalid(e)), 0),
                }
            }
        };
        let spec = node.spec.as_ref();
        NodeView {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready,
            allocatable,
            allowed_pods,
        }
    }
}

/// One node and what is placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// The Node as last seen; None when only pods bound to it are known (the Node was
    /// deleted, or has not been seen yet). Such nodes are never chosen.
    pub node: Option<NodeView>,
    /// Sum of the effective requests of the pods on it.
    pub requested: Resources,
    /// Sum of the pods' requests with scoring defaults.
    pub non_zero_requested: Resources,
    /// Pods on it.
    pub pod_count: i64,
    /// Host ports taken, one entry per pod port.
    pub used_ports: Vec<HostPort>,
    /// Pods on it per controlling owner uid.
    pub owner_counts: HashMap<String, u32>,
}

impl NodeInfo {
    fn add(&mut self, u: &PodUsage) {
        self.requested.add(&u.requests);
        self.non_zero_requested.add(&u.non_zero);
        self.pod_count += 1;
        self.used_ports.extend(u.host_ports.iter().cloned());
        if let Some(o) = &u.owner_uid {
            *self.owner_counts.entry(o.clone()).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, u: &PodUsage) {
        self.requested.sub(&u.requests);
        self.non_zero_requested.sub(&u.non_zero);
        self.pod_count -= 1;
        for p in &u.host_ports {
            if let Some(i) = self.used_ports.iter().position(|q| q == p) {
                self.used_ports.swap_remove(i);
            }
        }
        if let Some(o) = &u.owner_uid {
            if let Some(n) = self.owner_counts.get_mut(o) {
                *n -= 1;
                if *n == 0 {
                    self.owner_counts.remove(o);
                }
            }
        }
    }
}

/// Every node the scheduler knows, in a stable order (for the round-robin start of each
/// search), with an index by name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// All nodes, including pod-only entries without a Node.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node named `name`.
    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo {
                    name: name.to_string(),
                    ..NodeInfo::default()
                });
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    fn drop_if_empty(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self.nodes[i].node.is_some() || self.nodes[i].pod_count > 0 {
            return;
        }
        self.index.remove(name);
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    /// Adds or replaces a Node.
    pub fn set_node(&mut self, name: &str, view: NodeView) {
        self.entry(name).node = Some(view);
    }

    /// Forgets a Node; the pods bound to it stay counted until they go.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(&i) = self.index.get(name) {
            self.nodes[i].node = None;
        }
        self.drop_if_empty(name);
    }

    /// Counts a pod on `node`.
    pub fn add_pod(&mut self, node: &str, usage: &PodUsage) {
        self.entry(node).add(usage);
    }

    /// Stops counting a pod on `node`.
    pub fn remove_pod(&mut self, node: &str, usage: &PodUsage) {
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].remove(usage);
        }
        self.drop_if_empty(node);
    }

    /// Names of the nodes that have a Node object.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.node.is_some())
            .map(|n| n.name.clone())
            .collect()
    }
}
