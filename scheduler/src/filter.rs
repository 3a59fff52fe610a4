//! Filters: whether a pod may go on a node at all, and if not, why (in kube-scheduler's
//! words, which end up in the pod's Unschedulable message).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};

use crate::snapshot::{AllocatableProblem, NodeInfo, NodeView, PodInfo};

/// The taint the node lifecycle controller puts on cordoned nodes; a pod tolerating it may
/// go on a node with `spec.unschedulable`, as in Kubernetes.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Why a node was filtered out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// `spec.unschedulable` (cordoned).
    Unschedulable,
    /// Condition Ready is not True.
    NotReady,
    /// A NoSchedule or NoExecute taint the pod does not tolerate (the first one found).
    UntoleratedTaint {
        /// Taint key.
        key: String,
        /// Taint value.
        value: String,
    },
    /// nodeSelector or required node affinity does not match.
    NodeAffinity,
    /// A host port is taken.
    HostPorts,
    /// Not enough of a resource left (`cpu`, `memory`, `ephemeral-storage`, extended).
    Insufficient(String),
    /// The node's pods capacity is used up.
    TooManyPods,
    /// The Node reports no allocatable resources.
    NoAllocatable,
    /// The Node's allocatable resources do not parse.
    InvalidAllocatable,
}

impl fmt::Display for Reason {
    /// The reason as kube-scheduler words it in "0/N nodes are available: …".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::NoAllocatable => f.write_str("node(s) had no allocatable resources in status"),
            Reason::InvalidAllocatable => {
                f.write_str("node(s) had an unparseable quantity in status.allocatable")
            }
        }
    }
}

/// Whether a toleration tolerates a taint: effects match (an empty effect tolerates all),
/// keys match (an empty key with `Exists` tolerates every key), and for `Equal` (the
/// default operator) the values are equal.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first NoSchedule or NoExecute taint the pod does not tolerate.
pub fn untolerated_taint<'a>(pod: &PodInfo, node: &'a NodeView) -> Option<&'a Taint> {
    node.taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerated(&pod.tolerations, taint)
    })
}

/// Whether a node selector requirement holds for these labels.
pub fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let label = labels.get(&r.key);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => label.is_some_and(|v| values.contains(v)),
        "NotIn" => label.is_none_or(|v| !values.contains(v)),
        "Exists" => label.is_some(),
        "DoesNotExist" => label.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                label.and_then(|v| int(v)),
                values.first().and_then(|v| int(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches: every expression and field requirement holds; a
/// term with none matches nothing, as in Kubernetes.
pub fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name_labels = BTreeMap::from([("metadata.name".to_string(), node_name.to_string())]);
    exprs.iter().all(|r| requirement_matches(r, labels))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, &name_labels))
}

/// Whether a required node selector (terms ORed) matches.
pub fn node_selector_matches(
    sel: &NodeSelector,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node_name, labels))
}

/// nodeSelector and required node affinity, both of which must hold.
pub fn affinity_fits(pod: &PodInfo, node_name: &str, node: &NodeView) -> bool {
    pod.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
        && pod
            .required_affinity
            .as_ref()
            .is_none_or(|s| node_selector_matches(s, node_name, &node.labels))
}

/// Resources: each resource the pod requests against allocatable minus what is already
/// requested on the node, and the pods count. Pushes every shortage, as kube-scheduler
/// reports them all.
pub fn resources_fit(pod: &PodInfo, node: &NodeInfo, view: &NodeView, out: &mut Vec<Reason>) {
    let alloc = match &view.allocatable {
        Ok(a) => a,
        Err(AllocatableProblem::Missing) => return out.push(Reason::NoAllocatable),
        Err(AllocatableProblem::Invalid(_)) => return out.push(Reason::InvalidAllocatable),
    };
    if node.pod_count + 1 > view.allowed_pods {
        out.push(Reason::TooManyPods);
    }
    let Ok(req) = &pod.requests else {
        return;
    };
    let req = &req.requests;
    let used = &node.requested;
    let short = |want: i64, have: i64, used: i64| want > 0 && want > have.saturating_sub(used);
    if short(req.milli_cpu, alloc.milli_cpu, used.milli_cpu) {
        out.push(Reason::Insufficient("cpu".into()));
    }
    if short(req.memory, alloc.memory, used.memory) {
        out.push(Reason::Insufficient("memory".into()));
    }
    if short(
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    ) {
        out.push(Reason::Insufficient("ephemeral-storage".into()));
    }
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let taken = used.scalar.get(name).copied().unwrap_or(0);
        if short(*want, have, taken) {
            out.push(Reason::Insufficient(name.clone()));
        }
    }
}

/// Runs every filter in kube-scheduler's order and stops at the first that fails (the
/// resource filter reports all its shortages). Empty `out` means the pod fits. A node
/// without a Node object never fits and is not counted: callers skip it.
pub fn filter(pod: &PodInfo, node: &NodeInfo, out: &mut Vec<Reason>) {
    out.clear();
    let Some(view) = &node.node else {
        return out.push(Reason::NotReady);
    };
    if view.unschedulable {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if !tolerated(&pod.tolerations, &cordon) {
            return out.push(Reason::Unschedulable);
        }
    }
    if !view.ready {
        return out.push(Reason::NotReady);
    }
    if let Some(t) = untolerated_taint(pod, view) {
        return out.push(Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        });
    }
    if !affinity_fits(pod, &node.name, view) {
        return out.push(Reason::NodeAffinity);
    }
    if pod
        .host_ports
        .iter()
        .any(|p| node.used_ports.iter().any(|q| p.conflicts(q)))
    {
        return out.push(Reason::HostPorts);
    }
    resources_fit(pod, node, view, out);
}
