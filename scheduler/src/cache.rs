//! The scheduler cache: the snapshot kept up to date from Node and Pod events, with pods
//! assumed on their node from the moment a binding is sent until the Pod watch confirms
//! it (or the binding fails and the pod is forgotten).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Node;

use crate::snapshot::{NodeView, PodUsage, Snapshot};

#[derive(Clone, Debug)]
struct Placed {
    node: String,
    usage: PodUsage,
    assumed: bool,
}

/// Nodes and the pods placed on them.
#[derive(Debug, Default)]
pub struct Cache {
    snapshot: Snapshot,
    pods: HashMap<String, Placed>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Cache::default()
    }

    /// The current snapshot for decisions.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Adds or updates a Node.
    pub fn set_node(&mut self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            self.snapshot.set_node(name, NodeView::new(node));
        }
    }

    /// Removes a Node.
    pub fn remove_node(&mut self, name: &str) {
        self.snapshot.remove_node(name);
    }

    /// Replaces every Node with `nodes` (after a relist).
    pub fn replace_nodes(&mut self, nodes: &[Node]) {
        let keep: std::collections::HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        for name in self.snapshot.node_names() {
            if !keep.contains(name.as_str()) {
                self.snapshot.remove_node(&name);
            }
        }
        for n in nodes {
            self.set_node(n);
        }
    }

    fn unplace(&mut self, key: &str) -> Option<Placed> {
        let p = self.pods.remove(key)?;
        self.snapshot.remove_pod(&p.node, &p.usage);
        Some(p)
    }

    /// Counts pod `key` on `node` until confirmed or forgotten.
    pub fn assume(&mut self, key: &str, node: &str, usage: PodUsage) {
        self.unplace(key);
        self.snapshot.add_pod(node, &usage);
        self.pods.insert(
            key.to_string(),
            Placed {
                node: node.to_string(),
                usage,
                assumed: true,
            },
        );
    }

    /// Undoes [`Cache::assume`] after a failed binding; a confirmed pod stays.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.unplace(key);
        }
    }

    /// Whether `key` is assumed and not yet confirmed.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// The node a pod is placed on, assumed or confirmed.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.node.as_str())
    }

    /// Records a pod the apiserver reports bound to `node` (new, changed, or confirming
    /// an assumption).
    pub fn bound(&mut self, key: &str, node: &str, usage: PodUsage) {
        if let Some(p) = self.pods.get_mut(key) {
            if p.node == node && p.usage == usage {
                p.assumed = false;
                return;
            }
        }
        self.unplace(key);
        self.snapshot.add_pod(node, &usage);
        self.pods.insert(
            key.to_string(),
            Placed {
                node: node.to_string(),
                usage,
                assumed: false,
            },
        );
    }

    /// A pod is gone (deleted, finished); true when it was placed on a node.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.unplace(key).is_some()
    }

    /// After a relist of pods: forgets confirmed pods that are not in `listed` (assumed
    /// ones stay until their binding answers).
    pub fn retain_pods(&mut self, listed: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(k, p)| !p.assumed && !listed.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.unplace(&k);
        }
    }
}
