//! The decision: filter the nodes, score the feasible ones, pick the best (ties broken at
//! random), or explain in Kubernetes' words why no node fits.

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;

use crate::filter::{filter, Reason};
use crate::score::{score_nodes, Weights};
use crate::snapshot::{PodInfo, Snapshot};

/// The chosen node and how much of the cluster was looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The node to bind to.
    pub node: String,
    /// Nodes that passed the filters.
    pub feasible: usize,
    /// Nodes filtered (the next search starts after them).
    pub evaluated: usize,
}

/// Why a pod fits on no node; its `Display` is the Unschedulable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    /// Nodes considered.
    pub num_nodes: usize,
    /// How many nodes failed for each reason.
    pub reasons: BTreeMap<Reason, usize>,
    /// A problem with the pod itself, which no node can fix.
    pub pod_problem: Option<String>,
}

impl fmt::Display for FitError {
    /// "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3
    /// Insufficient cpu." — kube-scheduler's wording, reasons sorted as it sorts them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.pod_problem {
            return write!(f, "0/{} nodes are available: {p}.", self.num_nodes);
        }
        if self.num_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.num_nodes,
            parts.join(", ")
        )
    }
}

/// How many feasible nodes to find before scoring, kube-scheduler's adaptive
/// `percentageOfNodesToScore`: all of them below 100 nodes, else a share falling from
/// 50 % by one point per 125 nodes to at least 5 %, and never fewer than 100.
pub fn num_feasible_nodes_to_find(all: usize) -> usize {
    const MIN: usize = 100;
    if all < MIN {
        return all;
    }
    let pct = 50usize.saturating_sub(all / 125).max(5);
    (all * pct / 100).max(MIN)
}

/// Chooses a node for `pod`. The search starts at node `start` (round robin across
/// calls, so that the sampled nodes rotate) and stops once enough feasible nodes are
/// found. Nodes without a Node object are skipped.
pub fn schedule(
    snapshot: &Snapshot,
    pod: &PodInfo,
    start: usize,
    weights: &Weights,
    rng: &mut impl Rng,
) -> Result<Decision, FitError> {
    let nodes = snapshot.nodes();
    let num_nodes = nodes.iter().filter(|n| n.node.is_some()).count();
    if let Err(e) = &pod.requests {
        return Err(FitError {
            num_nodes,
            reasons: BTreeMap::new(),
            pod_problem: Some(format!("pod has an invalid resource request: {e}")),
        });
    }
    let want = num_feasible_nodes_to_find(num_nodes);
    let mut feasible = Vec::with_capacity(want.min(1024));
    let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut evaluated = 0;
    let len = nodes.len();
    for i in 0..len {
        if feasible.len() >= want {
            break;
        }
        let node = &nodes[(start + i) % len];
        evaluated += 1;
        if node.node.is_none() {
            continue;
        }
        filter(pod, node, &mut out);
        if out.is_empty() {
            feasible.push(node);
        } else {
            for r in out.drain(..) {
                *reasons.entry(r).or_insert(0) += 1;
            }
        }
    }
    if feasible.is_empty() {
        return Err(FitError {
            num_nodes,
            reasons,
            pod_problem: None,
        });
    }
    let count = feasible.len();
    if count == 1 {
        return Ok(Decision {
            node: feasible[0].name.clone(),
            feasible: 1,
            evaluated,
        });
    }
    let scores = score_nodes(pod, &feasible, weights);
    // Reservoir sampling over the best: each top-scoring node is equally likely.
    let mut best = i64::MIN;
    let mut chosen = 0;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        if *s > best {
            best = *s;
            chosen = i;
            ties = 1;
        } else if *s == best {
            ties += 1;
            if rng.gen_range(0..ties) == 0 {
                chosen = i;
            }
        }
    }
    Ok(Decision {
        node: feasible[chosen].name.clone(),
        feasible: count,
        evaluated,
    })
}
