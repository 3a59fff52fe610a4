//! Scores: how good a feasible node is for a pod. Each plugin gives 0–100 per node (raw
//! counts are normalized over the candidate nodes, as Kubernetes' `DefaultNormalizeScore`
//! does), and the weighted sum decides.

use crate::filter::{node_selector_matches, tolerated};
use crate::snapshot::{NodeInfo, NodeView, PodInfo};

/// The best score a plugin gives.
pub const MAX_NODE_SCORE: i64 = 100;

/// Plugin weights, kube-scheduler's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// NodeResourcesFit (LeastAllocated).
    pub least_allocated: i64,
    /// NodeResourcesBalancedAllocation.
    pub balanced_allocation: i64,
    /// TaintToleration (PreferNoSchedule).
    pub taint_toleration: i64,
    /// NodeAffinity (preferred terms).
    pub node_affinity: i64,
    /// Spreading pods of one owner (kube-scheduler's default topology spreading over
    /// hostnames).
    pub owner_spread: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            least_allocated: 1,
            balanced_allocation: 1,
            taint_toleration: 3,
            node_affinity: 2,
            owner_spread: 2,
        }
    }
}

fn requested_with_pod(pod: &PodInfo, node: &NodeInfo) -> (i64, i64) {
    let (cpu, mem) = pod
        .requests
        .as_ref()
        .map_or((0, 0), |r| (r.non_zero.milli_cpu, r.non_zero.memory));
    (
        node.non_zero_requested.milli_cpu.saturating_add(cpu),
        node.non_zero_requested.memory.saturating_add(mem),
    )
}

fn capacity(view: &NodeView) -> (i64, i64) {
    view.allocatable
        .as_ref()
        .map_or((0, 0), |a| (a.milli_cpu, a.memory))
}

/// LeastAllocated: the share of cpu and memory left free once the pod is on the node,
/// averaged (weights 1 and 1). Empty nodes score 100.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo, view: &NodeView) -> i64 {
    let (cpu, mem) = requested_with_pod(pod, node);
    let (cap_cpu, cap_mem) = capacity(view);
    let free = |req: i64, cap: i64| {
        if cap <= 0 || req > cap {
            0
        } else {
            (cap - req) * MAX_NODE_SCORE / cap
        }
    };
    (free(cpu, cap_cpu) + free(mem, cap_mem)) / 2
}

/// BalancedAllocation: 100 when cpu and memory would be used in equal shares, less the
/// further apart they are (one minus their standard deviation).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo, view: &NodeView) -> i64 {
    let (cpu, mem) = requested_with_pod(pod, node);
    let (cap_cpu, cap_mem) = capacity(view);
    let fraction = |req: i64, cap: i64| {
        if cap <= 0 {
            1.0
        } else {
            (req as f64 / cap as f64).min(1.0)
        }
    };
    let std = (fraction(cpu, cap_cpu) - fraction(mem, cap_mem)).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// TaintToleration's raw score: PreferNoSchedule taints the pod does not tolerate (fewer
/// is better; normalized in reverse).
pub fn intolerable_prefer_no_schedule(pod: &PodInfo, view: &NodeView) -> i64 {
    view.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&pod.tolerations, t))
        .count() as i64
}

/// NodeAffinity's raw score: the summed weights of the preferred terms the node matches.
pub fn preferred_affinity(pod: &PodInfo, node_name: &str, view: &NodeView) -> i64 {
    pod.preferred_affinity
        .iter()
        .filter(|p| {
            let sel = k8s_openapi::api::core::v1::NodeSelector {
                node_selector_terms: vec![p.preference.clone()],
            };
            node_selector_matches(&sel, node_name, &view.labels)
        })
        .map(|p| i64::from(p.weight))
        .sum()
}

/// Spreading's raw score: pods of the same controlling owner already on the node (fewer
/// is better; normalized in reverse).
pub fn same_owner_pods(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.owner_uid
        .as_ref()
        .and_then(|o| node.owner_counts.get(o))
        .map_or(0, |n| i64::from(*n))
}

/// Kubernetes' `DefaultNormalizeScore`: scales raw scores so the highest is 100; with
/// `reverse`, the lowest raw score gets 100 instead. All zero: 0 each, or 100 reversed.
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        if max == 0 {
            *s = if reverse { MAX_NODE_SCORE } else { 0 };
            continue;
        }
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// Weighted total score of each candidate node (indices into `nodes`), in order.
pub fn score_nodes(pod: &PodInfo, nodes: &[&NodeInfo], w: &Weights) -> Vec<i64> {
    let n = nodes.len();
    let mut total = vec![0i64; n];
    let mut taints = Vec::with_capacity(n);
    let mut affinity = Vec::with_capacity(n);
    let mut owners = Vec::with_capacity(n);
    let need_affinity = !pod.preferred_affinity.is_empty();
    let need_spread = pod.owner_uid.is_some();
    for (i, node) in nodes.iter().enumerate() {
        let Some(view) = &node.node else {
            taints.push(0);
            affinity.push(0);
            owners.push(0);
            continue;
        };
        total[i] += w.least_allocated * least_allocated(pod, node, view)
            + w.balanced_allocation * balanced_allocation(pod, node, view);
        taints.push(intolerable_prefer_no_schedule(pod, view));
        affinity.push(if need_affinity {
            preferred_affinity(pod, &node.name, view)
        } else {
            0
        });
        owners.push(if need_spread {
            same_owner_pods(pod, node)
        } else {
            0
        });
    }
    normalize(&mut taints, true);
    normalize(&mut affinity, false);
    normalize(&mut owners, true);
    for i in 0..n {
        total[i] += w.taint_toleration * taints[i]
            + w.node_affinity * affinity[i]
            + w.owner_spread * owners[i];
    }
    total
}
