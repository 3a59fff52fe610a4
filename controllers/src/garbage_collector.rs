//! The garbage collector: deletes objects whose owners are gone, and carries out
//! foreground and orphan deletion, as Kubernetes' garbage collector does.
//!
//! It keeps a graph of every object's metadata (UID, owner references, finalizers,
//! deletion state) from a metadata-only watch of every kind ([`MetaOnly`]), and works
//! through a queue of UIDs:
//!
//! - an object with owner references whose owners are all gone (verified with a live
//!   GET, never from the cache alone) is deleted, in the background, or in the
//!   foreground when an owner waits for its dependents and it has dependents itself;
//!   owner references to gone owners next to live ones are removed;
//! - an owner being deleted with the `orphan` finalizer (propagationPolicy Orphan) has
//!   its reference removed from every dependent, then the finalizer;
//! - an owner being deleted with the `foregroundDeletion` finalizer (Foreground) has
//!   its dependents deleted, and loses the finalizer once no dependent with
//!   `blockOwnerDeletion` remains, upon which the API server removes it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Preconditions};
use k8s_openapi::{Metadata, Resource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_client::api::ScopeInfo;
use skiff_client::backoff::Backoff;
use skiff_client::queue::WorkQueue;
use skiff_client::watcher::{self, Event};
use skiff_client::{Api, ApiResource, Client, DeleteParams, Patch, PatchParams, PropagationPolicy};

use crate::metrics::Metrics;
use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "garbage-collector-controller";

/// The finalizer of propagationPolicy Orphan.
pub const ORPHAN: &str = "orphan";

/// The finalizer of propagationPolicy Foreground.
pub const FOREGROUND: &str = "foregroundDeletion";

/// An object of kind `K` read for its metadata only: what the collector caches of
/// every object (client-go's PartialObjectMetadata).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct MetaOnly<K> {
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(skip)]
    _kind: PhantomData<fn() -> K>,
}

impl<K: Resource> Resource for MetaOnly<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: Resource> Metadata for MetaOnly<K> {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// One object in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index into the collector's resource list.
    pub resource: usize,
    /// Namespace; None when cluster-scoped.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// resourceVersion as last seen.
    pub resource_version: Option<String>,
    /// Owner references.
    pub owners: Vec<OwnerReference>,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// Whether `deletionTimestamp` is set.
    pub deleting: bool,
}

impl Node {
    fn from_meta(resource: usize, meta: &ObjectMeta) -> Node {
        Node {
            resource,
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Whether the collector has work with this object on its own account.
    fn needs_attention(&self) -> bool {
        !self.owners.is_empty()
            || (self.deleting && (self.has_finalizer(ORPHAN) || self.has_finalizer(FOREGROUND)))
    }
}

/// Objects by UID and who depends on whom.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
    // UIDs seen during a relist of a resource, to drop the ones that vanished.
    relisting: HashMap<usize, HashSet<String>>,
}

impl Graph {
    /// Adds or updates an object; returns the UIDs to look at because of it.
    pub fn upsert(&mut self, uid: &str, node: Node) -> Vec<String> {
        if let Some(seen) = self.relisting.get_mut(&node.resource) {
            seen.insert(uid.to_string());
        }
        let mut touched = Vec::new();
        let old = self.nodes.insert(uid.to_string(), node.clone());
        if let Some(old) = &old {
            for o in &old.owners {
                if let Some(d) = self.dependents.get_mut(&o.uid) {
                    d.remove(uid);
                    if d.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
                // A foreground owner may be waiting for this one to let go.
                touched.push(o.uid.clone());
            }
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.to_string());
            if self.nodes.get(&o.uid).is_some_and(|n| n.deleting) {
                touched.push(o.uid.clone());
            }
        }
        if old.as_ref() != Some(&node) && node.needs_attention() {
            touched.push(uid.to_string());
        }
        touched
    }

    /// Removes an object; returns its dependents and owners, which may now have work.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut touched: Vec<String> = self
            .dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        for o in &node.owners {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
            touched.push(o.uid.clone());
        }
        touched
    }

    /// A relist of `resource` begins.
    pub fn begin_relist(&mut self, resource: usize) {
        self.relisting.insert(resource, HashSet::new());
    }

    /// A relist of `resource` is complete: objects of it not seen are gone.
    pub fn end_relist(&mut self, resource: usize) -> Vec<String> {
        let seen = self.relisting.remove(&resource).unwrap_or_default();
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(uid, n)| n.resource == resource && !seen.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        gone.iter().flat_map(|uid| self.remove(uid)).collect()
    }

    /// The object with `uid`.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The UIDs of the objects that name `uid` as an owner and still exist.
    pub fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|d| {
                d.iter()
                    .filter(|u| self.nodes.contains_key(*u))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every UID that needs a look (after the first full list).
    pub fn all_needing_attention(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.needs_attention())
            .map(|(u, _)| u.clone())
            .collect()
    }
}

/// What became of one owner reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// The owner is being deleted in the foreground.
    WaitingForDependents,
    /// The owner does not exist (or exists with another UID).
    Absent,
    /// The owner's kind is not one skiff serves; leave the reference alone.
    Unknown,
}

/// What to do with a dependent, given its owners' states (Kubernetes'
/// `attemptToDeleteItem`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependentAction {
    /// Nothing.
    Keep,
    /// Remove the references to these (absent) owners.
    RemoveReferences(Vec<String>),
    /// Delete it, with this policy.
    Delete(PropagationPolicy),
}

/// Decides for a dependent whose owner references (by UID) are in `states`.
pub fn decide(states: &[(String, OwnerState)], has_dependents: bool) -> DependentAction {
    let solid = states
        .iter()
        .any(|(_, s)| matches!(s, OwnerState::Solid | OwnerState::Unknown));
    let absent: Vec<String> = states
        .iter()
        .filter(|(_, s)| *s == OwnerState::Absent)
        .map(|(u, _)| u.clone())
        .collect();
    let waiting = states
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if solid {
        if absent.is_empty() {
            DependentAction::Keep
        } else {
            DependentAction::RemoveReferences(absent)
        }
    } else if waiting && has_dependents {
        DependentAction::Delete(PropagationPolicy::Foreground)
    } else if waiting || !absent.is_empty() {
        DependentAction::Delete(PropagationPolicy::Background)
    } else {
        DependentAction::Keep
    }
}

struct Collector {
    client: Client,
    resources: Vec<ApiResource>,
    graph: Mutex<Graph>,
}

macro_rules! kinds {
    ($($ty:ty),* $(,)?) => {
        fn watch_all(client: &Client) -> (Vec<ApiResource>, Vec<BoxStream<'static, (usize, Event<ObjectMeta>)>>) {
            let mut resources = Vec::new();
            let mut streams = Vec::new();
            $(
                let i = resources.len();
                resources.push(ApiResource::erase::<$ty>());
                streams.push(meta_stream::<$ty>(client, i));
            )*
            (resources, streams)
        }
    };
}

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking,
};

// Every kind skiff serves that can own or be owned; Events are left out, as their
// number is large and nothing owns them.
kinds!(
    core::Pod,
    core::Service,
    core::Endpoints,
    core::ConfigMap,
    core::Secret,
    core::ServiceAccount,
    core::ResourceQuota,
    core::LimitRange,
    core::PersistentVolumeClaim,
    core::PersistentVolume,
    core::Node,
    core::Namespace,
    apps::Deployment,
    apps::ReplicaSet,
    apps::StatefulSet,
    apps::DaemonSet,
    apps::ControllerRevision,
    batch::Job,
    batch::CronJob,
    autoscaling::HorizontalPodAutoscaler,
    coordination::Lease,
    discovery::EndpointSlice,
    networking::Ingress,
    networking::IngressClass,
);

fn meta_stream<K>(client: &Client, index: usize) -> BoxStream<'static, (usize, Event<ObjectMeta>)>
where
    K: Resource + Send + Sync + 'static,
    K::Scope: ScopeInfo,
{
    let api: Api<MetaOnly<K>> = Api::all(client.clone());
    watcher::watcher(api, watcher::Config::default())
        .filter_map(move |e| async move {
            let e = e.ok()?;
            Some((
                index,
                match e {
                    Event::Init => Event::Init,
                    Event::InitDone => Event::InitDone,
                    Event::InitApply(o) => Event::InitApply(o.metadata),
                    Event::Apply(o) => Event::Apply(o.metadata),
                    Event::Delete(o) => Event::Delete(o.metadata),
                },
            ))
        })
        .boxed()
}

/// Runs the collector until `shutdown` completes.
pub async fn run(client: Client, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    let (resources, streams) = watch_all(&client);
    let n_resources = resources.len();
    let collector = Arc::new(Collector {
        client,
        resources,
        graph: Mutex::new(Graph::default()),
    });
    let queue: WorkQueue<String> = WorkQueue::new(Backoff::new(
        Duration::from_millis(5),
        Duration::from_secs(300),
    ));
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let synced_tx = Arc::new(synced_tx);

    let driver = {
        let collector = collector.clone();
        let queue = queue.clone();
        let synced_tx = synced_tx.clone();
        async move {
            let mut events = stream::select_all(streams);
            let mut synced = HashSet::new();
            while let Some((i, event)) = events.next().await {
                let touched = {
                    let mut g = collector.graph();
                    match event {
                        Event::Init => {
                            g.begin_relist(i);
                            Vec::new()
                        }
                        Event::InitDone => {
                            let mut t = g.end_relist(i);
                            if synced.insert(i) && synced.len() == n_resources {
                                tracing::info!("garbage collector graph synced");
                                t.extend(g.all_needing_attention());
                                synced_tx.send_replace(true);
                            }
                            t
                        }
                        Event::InitApply(meta) | Event::Apply(meta) => match meta.uid.clone() {
                            Some(uid) => g.upsert(&uid, Node::from_meta(i, &meta)),
                            None => Vec::new(),
                        },
                        Event::Delete(meta) => match meta.uid.as_deref() {
                            Some(uid) => g.remove(uid),
                            None => Vec::new(),
                        },
                    }
                };
                for uid in touched {
                    queue.add(uid);
                }
            }
        }
    };

    let workers = futures::future::join_all((0..10).map(|_| {
        let queue = queue.clone();
        let collector = collector.clone();
        let metrics = metrics.clone();
        let mut synced = synced_rx.clone();
        async move {
            if synced.wait_for(|s| *s).await.is_err() {
                return;
            }
            while let Some(uid) = queue.next().await {
                match collector.process(&uid).await {
                    Ok(()) => {
                        queue.forget(&uid);
                        metrics.reconciled("garbagecollector", true);
                    }
                    Err(error) => {
                        let retry_in = queue.add_rate_limited(uid.clone());
                        tracing::warn!(%uid, %error, retry_in_ms = retry_in.as_millis() as u64, "garbage collection failed");
                        metrics.reconciled("garbagecollector", false);
                    }
                }
                queue.done(&uid);
            }
        }
    }));

    tokio::pin!(driver, workers, shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        _ = &mut driver => tracing::warn!("garbage collector inputs ended"),
        _ = &mut workers => {}
    }
    queue.shut_down();
    synced_tx.send_replace(true);
    workers.await;
}

impl Collector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn api(&self, node: &Node) -> Api<serde_json::Value> {
        Api::dynamic(
            self.client.clone(),
            self.resources[node.resource].clone(),
            node.namespace.as_deref(),
        )
    }

    /// The resource of an owner reference's apiVersion and kind.
    fn resource_of(&self, owner: &OwnerReference) -> Option<&ApiResource> {
        self.resources
            .iter()
            .find(|r| r.api_version == owner.api_version && r.kind == owner.kind)
    }

    async fn process(&self, uid: &str) -> Result<()> {
        let Some(node) = self.graph().get(uid).cloned() else {
            return Ok(());
        };
        if node.deleting && node.has_finalizer(ORPHAN) {
            return self.orphan_dependents(uid, &node).await;
        }
        if node.deleting && node.has_finalizer(FOREGROUND) {
            return self.delete_dependents(uid, &node).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(());
        }
        let mut states = Vec::new();
        for owner in &node.owners {
            states.push((owner.uid.clone(), self.owner_state(&node, owner).await?));
        }
        let has_dependents = !self.graph().dependents_of(uid).is_empty();
        match decide(&states, has_dependents) {
            DependentAction::Keep => Ok(()),
            DependentAction::RemoveReferences(gone) => {
                let refs: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|o| !gone.contains(&o.uid))
                    .collect();
                tracing::info!(object = %describe(&self.resources, &node), "removing references to deleted owners");
                self.patch_meta(&node, json!({"ownerReferences": refs}))
                    .await
            }
            DependentAction::Delete(policy) => {
                tracing::info!(object = %describe(&self.resources, &node), policy = policy.as_str(), "deleting dependent of deleted owner");
                self.delete(&node, uid, policy).await
            }
        }
    }

    /// Whether an owner exists, from the graph, else from a live GET (the graph may not
    /// have seen a new owner yet; deleting a dependent on a stale "absent" would be
    /// wrong).
    async fn owner_state(&self, node: &Node, owner: &OwnerReference) -> Result<OwnerState> {
        let from_graph = self.graph().get(&owner.uid).cloned();
        let (deleting, finalizers) = match from_graph {
            Some(o) => (o.deleting, o.finalizers),
            None => {
                let Some(resource) = self.resource_of(owner) else {
                    return Ok(OwnerState::Unknown);
                };
                let ns = if resource.namespaced {
                    node.namespace.as_deref()
                } else {
                    None
                };
                let api = Api::dynamic(self.client.clone(), resource.clone(), ns);
                let live = api.get_opt(&owner.name).await?;
                let Some(live) = live else {
                    return Ok(OwnerState::Absent);
                };
                let meta = &live["metadata"];
                if meta["uid"].as_str() != Some(owner.uid.as_str()) {
                    return Ok(OwnerState::Absent);
                }
                let finalizers = meta["finalizers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|f| f.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                (meta["deletionTimestamp"].is_string(), finalizers)
            }
        };
        Ok(if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
            OwnerState::WaitingForDependents
        } else {
            OwnerState::Solid
        })
    }

    async fn orphan_dependents(&self, uid: &str, owner: &Node) -> Result<()> {
        let dependents: Vec<Node> = {
            let g = self.graph();
            g.dependents_of(uid)
                .iter()
                .filter_map(|d| g.get(d).cloned())
                .collect()
        };
        for dep in dependents {
            let refs: Vec<&OwnerReference> = dep.owners.iter().filter(|o| o.uid != uid).collect();
            let refs = if refs.is_empty() {
                json!(null)
            } else {
                json!(refs)
            };
            self.patch_meta(&dep, json!({"ownerReferences": refs}))
                .await?;
        }
        tracing::info!(object = %describe(&self.resources, owner), "dependents orphaned");
        self.remove_finalizer(owner, ORPHAN).await
    }

    async fn delete_dependents(&self, uid: &str, owner: &Node) -> Result<()> {
        let (dependents, blocking) = {
            let g = self.graph();
            let deps: Vec<(String, Node, bool)> = g
                .dependents_of(uid)
                .into_iter()
                .filter_map(|d| {
                    let n = g.get(&d)?.clone();
                    let has_deps = !g.dependents_of(&d).is_empty();
                    Some((d, n, has_deps))
                })
                .collect();
            let blocking = deps.iter().any(|(_, n, _)| {
                n.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            });
            (deps, blocking)
        };
        for (dep_uid, dep, has_deps) in &dependents {
            if dep.deleting {
                continue;
            }
            let policy = if *has_deps {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            };
            self.delete(dep, dep_uid, policy).await?;
        }
        if blocking {
            // Called again as each dependent goes.
            return Ok(());
        }
        tracing::info!(object = %describe(&self.resources, owner), "dependents deleted, finishing foreground deletion");
        self.remove_finalizer(owner, FOREGROUND).await
    }

    async fn delete(&self, node: &Node, uid: &str, policy: PropagationPolicy) -> Result<()> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            // Never delete a new object that took the name meanwhile.
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api(node).delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<()> {
        let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let rest = if rest.is_empty() {
            json!(null)
        } else {
            json!(rest)
        };
        self.patch_meta(node, json!({"finalizers": rest})).await
    }

    /// Merge-patches `metadata` with the resourceVersion last seen, so that a change
    /// made meanwhile fails the patch (409) and the item is looked at again.
    async fn patch_meta(&self, node: &Node, mut meta: serde_json::Value) -> Result<()> {
        meta["resourceVersion"] = json!(node.resource_version);
        match self
            .api(node)
            .patch(
                &node.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": meta })),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn describe(resources: &[ApiResource], node: &Node) -> String {
    let kind = resources
        .get(node.resource)
        .map_or("?", |r| r.kind.as_str());
    match &node.namespace {
        Some(ns) => format!("{kind} {ns}/{}", node.name),
        None => format!("{kind} {}", node.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn node(name: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            resource: 0,
            namespace: Some("ns".into()),
            name: name.into(),
            resource_version: Some("1".into()),
            owners,
            finalizers: vec![],
            deleting: false,
        }
    }

    #[test]
    fn decisions_follow_owner_states() {
        use OwnerState::*;
        let s = |v: &[(&str, OwnerState)]| -> Vec<(String, OwnerState)> {
            v.iter().map(|(u, s)| (u.to_string(), *s)).collect()
        };
        assert_eq!(decide(&s(&[("a", Solid)]), false), DependentAction::Keep);
        assert_eq!(
            decide(&s(&[("a", Absent)]), false),
            DependentAction::Delete(PropagationPolicy::Background)
        );
        assert_eq!(
            decide(&s(&[("a", Solid), ("b", Absent)]), false),
            DependentAction::RemoveReferences(vec!["b".into()])
        );
        assert_eq!(
            decide(&s(&[("a", WaitingForDependents)]), true),
            DependentAction::Delete(PropagationPolicy::Foreground)
        );
        assert_eq!(
            decide(&s(&[("a", WaitingForDependents)]), false),
            DependentAction::Delete(PropagationPolicy::Background)
        );
        assert_eq!(
            decide(&s(&[("a", Unknown), ("b", Absent)]), false),
            DependentAction::RemoveReferences(vec!["b".into()])
        );
    }

    #[test]
    fn graph_tracks_dependents_and_relists() {
        let mut g = Graph::default();
        let mut rs = node("rs", vec![]);
        g.upsert("rs", rs.clone());
        let touched = g.upsert("p1", node("p1", vec![owner("rs", true)]));
        assert_eq!(touched, vec!["p1".to_string()]);
        g.upsert("p2", node("p2", vec![owner("rs", false)]));
        let mut deps = g.dependents_of("rs");
        deps.sort();
        assert_eq!(deps, ["p1", "p2"]);

        // The owner starts foreground deletion: it needs attention.
        rs.deleting = true;
        rs.finalizers = vec![FOREGROUND.into()];
        assert_eq!(g.upsert("rs", rs), vec!["rs".to_string()]);
        // A dependent going away makes its owner look again.
        assert!(g.remove("p2").contains(&"rs".to_string()));
        assert_eq!(g.dependents_of("rs"), ["p1"]);

        // A relist that no longer has p1 removes it and touches its owner.
        g.begin_relist(0);
        g.upsert("rs", g.get("rs").unwrap().clone());
        let touched = g.end_relist(0);
        assert!(g.get("p1").is_none());
        assert!(touched.contains(&"rs".to_string()));
        // Removing an owner touches its dependents.
        g.upsert("p3", node("p3", vec![owner("rs", true)]));
        assert_eq!(g.remove("rs"), vec!["p3".to_string()]);
    }
}
