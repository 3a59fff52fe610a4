//! The DaemonSet controller: one pod on every node the pod template may run on (its
//! nodeSelector, its required node affinity, and node taints against its tolerations
//! plus the tolerations Kubernetes adds to every daemon pod), pinned to its node by a
//! required node affinity on `metadata.name`, as Kubernetes does, for the scheduler to
//! bind. Rolling updates replace old pods node by node within `maxUnavailable`.
//!
//! Which nodes should run a pod ([`should_run`]) and what to create and delete
//! ([`plan`]) are pure; the reconcile reads the caches and carries the plan out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use skiff_client::controller::{Action, Controller};
use skiff_client::{Api, Client, ObjectRef, PostParams, ResourceExt, Store};

use crate::deployment::{scaled_value, template_hash};
use crate::events::{EventType, Recorder};
use crate::expectations::{Expectations, Seen};
use crate::informer::Informer;
use crate::node_lifecycle::tolerates;
use crate::pods::{self, controller_ref};
use crate::replicaset::selector_of;
use crate::revisions;
use crate::statefulset::REVISION_LABEL;
use crate::status::patch_status;
use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "daemonset-controller";

/// What the DaemonSet reconcile needs.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
    expectations: Expectations,
    revisions: revisions::Synced,
}

/// Builds the controller, fed by the shared pod and node informers: a node change may
/// concern every DaemonSet.
pub fn controller(
    client: &Client,
    pods: &mut Informer<Pod>,
    nodes: &mut Informer<Node>,
) -> (Controller<DaemonSet>, Arc<Ctx>) {
    let c = Controller::new(Api::<DaemonSet>::all(client.clone()), Default::default());
    let sets = c.store();
    let c = c
        .watches_stream(pods.subscribe(), |p: &Pod| {
            p.controller_owner()
                .filter(|o| o.kind == "DaemonSet" && o.api_version == "apps/v1")
                .map(|o| ObjectRef::new(p.namespace(), &o.name))
                .into_iter()
                .collect()
        })
        .watches_stream(nodes.subscribe(), move |_: &Node| {
            sets.list()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect()
        });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        nodes: nodes.store(),
        recorder: Recorder::new(client.clone(), NAME),
        expectations: Expectations::default(),
        revisions: revisions::Synced::default(),
    });
    (c, ctx)
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations Kubernetes adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`):
/// a daemon stays through not-ready and unreachable (no tolerationSeconds) and runs on
/// nodes under pressure or cordoned.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// The template's tolerations with the defaults added where not already present.
pub fn pod_tolerations(set: &DaemonSet) -> Vec<Toleration> {
    let spec = set.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let mut tols = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    for d in default_tolerations(host_network) {
        if !tols.iter().any(|t| {
            t.key == d.key && t.effect == d.effect && t.operator.as_deref() == Some("Exists")
        }) {
            tols.push(d);
        }
    }
    tols
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [x]) = (value.and_then(|v| v.parse::<i64>().ok()), values) else {
                return false;
            };
            let Ok(x) = x.parse::<i64>() else {
                return false;
            };
            if r.operator == "Gt" {
                v > x
            } else {
                v < x
            }
        }
        _ => false,
    }
}

/// Whether a node matches a required node selector: any term, each term all of its
/// requirements; a term without requirements matches nothing (Kubernetes' rules).
pub fn node_selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    let labels = node.labels();
    selector.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node.name())))
    })
}

/// Whether a daemon pod should run on `node` (`should_run`), and whether one already
/// there may stay (`should_continue`: only NoExecute taints drive it away, as in
/// Kubernetes' `NodeShouldRunDaemonPod`).
pub fn should_run(set: &DaemonSet, tolerations: &[Toleration], node: &Node) -> (bool, bool) {
    let spec = set.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let labels = node.labels();
    let selected = spec
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let affinity = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|sel| node_selector_matches(sel, node));
    if !selected || !affinity {
        return (false, false);
    }
    let taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    (
        tolerated(&["NoSchedule", "NoExecute"]),
        tolerated(&["NoExecute"]),
    )
}

/// The node a daemon pod is for: where it is bound, else where its affinity pins it.
pub fn node_of_pod(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// A daemon pod as [`plan`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonPod {
    /// Its name.
    pub name: String,
    /// Made from the current template.
    pub updated: bool,
    /// Ready for minReadySeconds.
    pub available: bool,
    /// Phase Failed: to be replaced.
    pub failed: bool,
}

/// One node as [`plan`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// The daemon should run here.
    pub should_run: bool,
    /// A daemon pod already here may stay.
    pub should_continue: bool,
    /// Its daemon pods that are not being deleted.
    pub pods: Vec<DaemonPod>,
    /// Some of its daemon pods are being deleted.
    pub terminating: bool,
}

/// What to do: nodes to create a pod on, pods to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
}

/// How a RollingUpdate replaces old daemon pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// OnDelete: old pods stay until someone deletes them.
    OnDelete,
    /// Delete old pods first, at most this many nodes without an available pod.
    MaxUnavailable(i32),
    /// Start the new pod beside the old one on at most this many nodes at a time; the
    /// old one goes once the new one is available.
    MaxSurge(i32),
}

/// Kubernetes' `manage` plus its `rollingUpdate`: a pod on each node that should run
/// one and has none, none where none may stay, one where there are several (an old and
/// a new one while surging), failed pods replaced; then the rollout step of [`Rollout`].
pub fn plan(nodes: &[NodeState], rollout: Rollout) -> Plan {
    let surging = matches!(rollout, Rollout::MaxSurge(_));
    let mut p = Plan::default();
    for n in nodes {
        let keep = if n.pods.is_empty() {
            n.should_continue
        } else {
            n.should_continue || n.should_run
        };
        if !keep {
            p.delete.extend(n.pods.iter().map(|d| d.name.clone()));
            continue;
        }
        let (failed, live): (Vec<&DaemonPod>, Vec<&DaemonPod>) =
            n.pods.iter().partition(|d| d.failed);
        p.delete.extend(failed.iter().map(|d| d.name.clone()));
        if live.is_empty() {
            if n.should_run && !n.terminating {
                p.create.push(n.name.clone());
            }
        } else if live.len() > 1 {
            // Keep one, preferring an updated and available pod; while surging, also
            // the best old one, which goes when the new one is available.
            let best = |updated: bool| {
                live.iter()
                    .filter(|d| d.updated == updated)
                    .max_by_key(|d| d.available)
                    .map(|d| d.name.clone())
            };
            let keep: Vec<String> = match (best(true), best(false)) {
                (Some(new), Some(old)) if surging => vec![new, old],
                (Some(new), _) => vec![new],
                (None, old) => old.into_iter().collect(),
            };
            p.delete.extend(
                live.iter()
                    .filter(|d| !keep.contains(&d.name))
                    .map(|d| d.name.clone()),
            );
        }
    }
    if !p.create.is_empty() || !p.delete.is_empty() {
        return p;
    }
    let running: Vec<&NodeState> = nodes.iter().filter(|n| n.should_run).collect();
    let max_unavailable = match rollout {
        Rollout::OnDelete => return p,
        Rollout::MaxSurge(max_surge) => return surge(&running, max_surge),
        Rollout::MaxUnavailable(m) => m,
    };
    let mut unavailable = running
        .iter()
        .filter(|n| n.terminating || !n.pods.iter().any(|d| d.available))
        .count() as i32;
    for n in &running {
        for d in n.pods.iter().filter(|d| !d.updated && !d.available) {
            p.delete.push(d.name.clone());
        }
    }
    for n in &running {
        for d in n.pods.iter().filter(|d| !d.updated && d.available) {
            if unavailable >= max_unavailable.max(1) {
                return p;
            }
            p.delete.push(d.name.clone());
            unavailable += 1;
        }
    }
    p
}

/// Kubernetes' surging rollout: on a node with an old pod and no new one, a new pod is
/// started (at once when the old one is unavailable anyway, else while fewer than
/// `max_surge` new pods are still becoming available); an old pod goes once the new one
/// beside it is available.
fn surge(running: &[&NodeState], max_surge: i32) -> Plan {
    let mut p = Plan::default();
    let mut surging = 0;
    let mut candidates = Vec::new();
    for n in running.iter().filter(|n| !n.terminating) {
        let old = n.pods.iter().find(|d| !d.updated);
        let new = n.pods.iter().find(|d| d.updated);
        match (old, new) {
            (None, _) => {}
            (Some(old), None) if !old.available => p.create.push(n.name.clone()),
            (Some(_), None) => candidates.push(n.name.clone()),
            (Some(_), Some(new)) if !new.available => surging += 1,
            (Some(old), Some(_)) => p.delete.push(old.name.clone()),
        }
    }
    let room = (max_surge - surging).max(0) as usize;
    p.create.extend(candidates.into_iter().take(room));
    p
}

/// The template's hash, the `controller-revision-hash` of its pods.
pub fn revision_hash(set: &DaemonSet) -> String {
    let spec = set.spec.clone().unwrap_or_default();
    let collision = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .filter(|c| *c > 0);
    template_hash(&spec.template, collision)
}

/// The pod for `node`, pinned there by required node affinity on `metadata.name`.
pub fn new_pod(set: &DaemonSet, node: &str, hash: &str, tolerations: &[Toleration]) -> Pod {
    let template = set.spec.clone().unwrap_or_default().template;
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.to_string());
    let mut spec = template.spec.unwrap_or_default();
    spec.tolerations = Some(tolerations.to_vec());
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    });
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", set.name())),
            namespace: set.namespace().map(str::to_string),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The rollout the update strategy asks for; maxUnavailable defaults to 1 and maxSurge
/// to 0, and percentages are of the nodes that should run the daemon, rounded up (as
/// Kubernetes' `SurgeCount` and `UnavailableCount`).
fn rollout_of(spec: &k8s_openapi::api::apps::v1::DaemonSetSpec, desired: i32) -> Rollout {
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return Rollout::OnDelete;
    }
    let ru = strategy.rolling_update.unwrap_or_default();
    let max_surge = scaled_value(ru.max_surge.as_ref(), desired, true, "0");
    if max_surge > 0 {
        return Rollout::MaxSurge(max_surge);
    }
    Rollout::MaxUnavailable(scaled_value(
        ru.max_unavailable.as_ref(),
        desired,
        true,
        "1",
    ))
}

/// A DaemonSet's ControllerRevision for the template of `hash`: `<set>-<hash>`.
pub fn revision_name(set: &DaemonSet, hash: &str) -> String {
    format!("{}-{hash}", set.name())
}

/// Makes sure the current template has its ControllerRevision, holding the patch that
/// restores it (Kubernetes' shape, which `kubectl rollout undo daemonset` applies).
async fn ensure_revision(api: &Api<ControllerRevision>, set: &DaemonSet, hash: &str) -> Result<()> {
    let spec = set.spec.clone().unwrap_or_default();
    let mut labels = spec.selector.match_labels.clone().unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.to_string());
    let mut template = json!(spec.template);
    template["$patch"] = json!("replace");
    let data = json!({"spec": {"template": template}});
    revisions::ensure(api, set, &revision_name(set, hash), labels, data).await?;
    Ok(())
}

fn status_of(set: &DaemonSet) -> Value {
    let s = set.status.clone().unwrap_or_default();
    json!({
        "desiredNumberScheduled": s.desired_number_scheduled,
        "currentNumberScheduled": s.current_number_scheduled,
        "numberMisscheduled": s.number_misscheduled,
        "numberReady": s.number_ready,
        "updatedNumberScheduled": s.updated_number_scheduled.unwrap_or(0),
        "numberAvailable": s.number_available.unwrap_or(0),
        "numberUnavailable": s.number_unavailable.unwrap_or(0),
        "observedGeneration": s.observed_generation.unwrap_or(0),
    })
}

/// One reconcile of one DaemonSet; see the module docs.
pub async fn reconcile(set: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = ObjectRef::from_obj(set.as_ref());
    let ns = set.namespace().unwrap_or("").to_string();
    let uid = set.uid().unwrap_or("").to_string();
    if set.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&key);
        ctx.revisions.forget(&uid);
        return Ok(Action::await_change());
    }
    let selector = match selector_of(set.spec.as_ref().map(|s| &s.selector)) {
        Ok(s) => s,
        Err(message) => {
            ctx.recorder.publish(
                set.as_ref(),
                EventType::Warning,
                "InvalidSelector",
                &message,
            );
            return Ok(Action::await_change());
        }
    };
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let hash = revision_hash(&set);
    let tolerations = pod_tolerations(&set);
    let now = jiff::Timestamp::now();

    let owned: Vec<Arc<Pod>> = ctx
        .pods
        .list()
        .into_iter()
        .filter(|p| p.namespace() == Some(ns.as_str()))
        .filter(|p| p.controller_owner().is_some_and(|o| o.uid == uid))
        .filter(|p| selector.matches(p.labels()))
        .collect();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    let mut orphaned = Vec::new();
    for p in &owned {
        match node_of_pod(p) {
            Some(n) => by_node.entry(n).or_default().push(p.clone()),
            None => orphaned.push(p.clone()),
        }
    }
    let nodes = ctx.nodes.list();
    let node_names: BTreeSet<&str> = nodes.iter().map(|n| n.name()).collect();
    // Pods on nodes that are gone go too.
    for (n, pods) in &by_node {
        if !node_names.contains(n.as_str()) {
            orphaned.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .cloned(),
            );
        }
    }
    let states: Vec<NodeState> = nodes
        .iter()
        .map(|node| {
            let (run, cont) = should_run(&set, &tolerations, node);
            let pods = by_node.get(node.name()).cloned().unwrap_or_default();
            NodeState {
                name: node.name().to_string(),
                should_run: run,
                should_continue: cont,
                terminating: pods.iter().any(|p| p.metadata.deletion_timestamp.is_some()),
                pods: pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| DaemonPod {
                        name: p.name().to_string(),
                        updated: p.labels().get(REVISION_LABEL) == Some(&hash),
                        available: pods::is_available(p, min_ready, now),
                        failed: p.status.as_ref().and_then(|s| s.phase.as_deref())
                            == Some("Failed"),
                    })
                    .collect(),
            }
        })
        .collect();

    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| match ctx.pods.get(Some(&ns), name) {
            Some(p) => Seen::Present {
                uid: p.uid().unwrap_or("").to_string(),
                deleting: p.metadata.deletion_timestamp.is_some(),
            },
            None => Seen::Absent,
        },
        |pod_uid| {
            owned
                .iter()
                .any(|p| p.uid() == Some(pod_uid) && p.metadata.deletion_timestamp.is_none())
        },
    );
    let desired = states.iter().filter(|n| n.should_run).count() as i32;
    let rollout = rollout_of(&spec, desired);
    // The history: the current template's revision, and old ones pruned to the limit
    // except those a pod still runs.
    let update = revision_name(&set, &hash);
    let mut in_use: BTreeSet<String> = [update.clone()].into();
    in_use.extend(
        owned
            .iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL))
            .map(|h| revision_name(&set, h)),
    );
    let limit = spec
        .revision_history_limit
        .unwrap_or(revisions::DEFAULT_HISTORY_LIMIT);
    if ctx.revisions.stale(&uid, &update, limit, &in_use) {
        let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
        ensure_revision(&api, &set, &hash).await?;
        revisions::prune(&api, &uid, &in_use, limit).await?;
        ctx.revisions.record(&uid, &update, limit, in_use);
    }
    let mut result = Ok(());
    if satisfied {
        let mut p = plan(&states, rollout);
        p.delete
            .extend(orphaned.iter().map(|o| o.name().to_string()));
        result = execute(&set, &ctx, &key, &p, &hash, &tolerations).await;
    }

    // Status, counted over the nodes that should run the daemon (Kubernetes' rules).
    let mut current = 0;
    let mut misscheduled = 0;
    let mut ready = 0;
    let mut updated = 0;
    let mut available = 0;
    for n in &states {
        let live: Vec<&Arc<Pod>> = by_node
            .get(&n.name)
            .map(|v| {
                v.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect()
            })
            .unwrap_or_default();
        if live.is_empty() {
            continue;
        }
        if !n.should_run {
            misscheduled += 1;
            continue;
        }
        current += 1;
        if live.iter().any(|p| pods::is_ready(p)) {
            ready += 1;
        }
        if live.iter().any(|p| pods::is_available(p, min_ready, now)) {
            available += 1;
        }
        if live
            .iter()
            .any(|p| p.labels().get(REVISION_LABEL) == Some(&hash))
        {
            updated += 1;
        }
    }
    let status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": (desired - available).max(0),
        "observedGeneration": set.metadata.generation.unwrap_or(0),
    });
    if status != status_of(&set) {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        if !patch_status(&api, set.name(), &status).await? {
            return Ok(Action::await_change());
        }
    }
    result?;
    let next = owned
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(d) => Action::requeue(d + Duration::from_secs(1)),
        None if !satisfied => Action::requeue(Duration::from_secs(30)),
        None => Action::await_change(),
    })
}

async fn execute(
    set: &DaemonSet,
    ctx: &Ctx,
    key: &ObjectRef,
    plan: &Plan,
    hash: &str,
    tolerations: &[Toleration],
) -> Result<()> {
    let ns = set.namespace().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PostParams::default();
    let created = crate::pods::join_in_flight(plan.create.iter().map(|node| {
        let pod = new_pod(set, node, hash, tolerations);
        let api = api.clone();
        let pp = pp.clone();
        async move { (node, api.create(&pp, &pod).await) }
    }))
    .await;
    let mut failure = None;
    for (node, r) in created {
        match r {
            Ok(pod) => {
                ctx.expectations.expect_add(key, pod.name());
                ctx.recorder.publish(
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {} (node {node})", pod.name()),
                );
            }
            Err(e) => {
                ctx.recorder.publish(
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating pod on node {node}: {e}"),
                );
                failure = Some(e);
            }
        }
    }
    let deleted = crate::pods::join_in_flight(plan.delete.iter().map(|name| {
        let api = api.clone();
        async move { (name, api.delete(name, &Default::default()).await) }
    }))
    .await;
    for (name, r) in deleted {
        match r {
            Ok(_) => {
                if let Some(uid) = ctx
                    .pods
                    .get(Some(ns), name)
                    .and_then(|p| p.uid().map(str::to_string))
                {
                    ctx.expectations.expect_delete(key, &uid);
                }
                ctx.recorder.publish(
                    set,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                );
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                ctx.recorder.publish(
                    set,
                    EventType::Warning,
                    "FailedDelete",
                    &format!("Error deleting pod {name}: {e}"),
                );
                failure = Some(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(extra_spec: Value) -> DaemonSet {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "u1"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}
            }
        }))
        .unwrap()
    }

    fn node(name: &str, labels: Value, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    #[test]
    fn taints_selectors_and_affinity_decide_eligibility() {
        let plain = set(json!({}));
        let tols = pod_tolerations(&plain);
        let n = |taints| node("n1", json!({"zone": "a"}), taints);
        assert_eq!(should_run(&plain, &tols, &n(json!([]))), (true, true));
        let dedicated = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        assert_eq!(should_run(&plain, &tols, &n(dedicated)), (false, true));
        let evict = json!([{"key": "dedicated", "effect": "NoExecute"}]);
        assert_eq!(should_run(&plain, &tols, &n(evict)), (false, false));
        // The defaults tolerate cordoned, unreachable and pressured nodes.
        let usual = json!([
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
        ]);
        assert_eq!(should_run(&plain, &tols, &n(usual)), (true, true));
        assert!(tols
            .iter()
            .all(|t| t.toleration_seconds.is_none() && t.operator.as_deref() == Some("Exists")));

        let selective = set(json!({"nodeSelector": {"zone": "b"}}));
        assert_eq!(should_run(&selective, &tols, &n(json!([]))), (false, false));
        let affine = set(json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
        ]}}}}));
        assert_eq!(should_run(&affine, &tols, &n(json!([]))), (true, true));
        let other = node("n2", json!({"zone": "c"}), json!([]));
        assert_eq!(should_run(&affine, &tols, &other), (false, false));
    }

    #[test]
    fn pods_are_pinned_by_metadata_name_affinity() {
        let s = set(json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}
        ]}}}}));
        let p = new_pod(&s, "w1", &revision_hash(&s), &pod_tolerations(&s));
        assert_eq!(node_of_pod(&p).as_deref(), Some("w1"));
        let terms = &p
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert!(node_selector_matches(
            &NodeSelector {
                node_selector_terms: terms.clone()
            },
            &node("w1", json!({}), json!([]))
        ));
        assert!(!node_selector_matches(
            &NodeSelector {
                node_selector_terms: terms.clone()
            },
            &node("w2", json!({}), json!([]))
        ));
        assert_eq!(p.labels().get(REVISION_LABEL), Some(&revision_hash(&s)));
        assert_eq!(p.controller_owner().unwrap().kind, "DaemonSet");
    }

    fn state(name: &str, run: bool, pods: Vec<DaemonPod>) -> NodeState {
        NodeState {
            name: name.into(),
            should_run: run,
            should_continue: run,
            pods,
            terminating: false,
        }
    }

    fn dpod(name: &str, updated: bool, available: bool) -> DaemonPod {
        DaemonPod {
            name: name.into(),
            updated,
            available,
            failed: false,
        }
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let nodes = [
            state("a", true, vec![]),
            state("b", false, vec![dpod("b1", true, true)]),
            state(
                "c",
                true,
                vec![dpod("c1", true, false), dpod("c2", true, true)],
            ),
            state("d", true, vec![dpod("d1", true, true)]),
        ];
        let p = plan(&nodes, Rollout::MaxUnavailable(1));
        assert_eq!(p.create, ["a"]);
        assert_eq!(p.delete, ["b1", "c1"]);
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let nodes = [
            state("a", true, vec![dpod("a1", false, true)]),
            state("b", true, vec![dpod("b1", false, true)]),
            state("c", true, vec![dpod("c1", false, false)]),
            state("d", true, vec![dpod("d1", true, true)]),
        ];
        // c is already unavailable: it goes, and with maxUnavailable 2 one more.
        let p = plan(&nodes, Rollout::MaxUnavailable(2));
        assert_eq!(p.delete, ["c1", "a1"]);
        assert_eq!(plan(&nodes, Rollout::MaxUnavailable(1)).delete, ["c1"]);
        assert_eq!(plan(&nodes, Rollout::OnDelete), Plan::default(), "OnDelete");
    }

    #[test]
    fn surging_starts_new_pods_beside_old_ones_and_removes_the_old_once_available() {
        let nodes = [
            state("a", true, vec![dpod("a1", false, true)]),
            state("b", true, vec![dpod("b1", false, true)]),
            state("c", true, vec![dpod("c1", false, false)]),
            state(
                "d",
                true,
                vec![dpod("d1", false, true), dpod("d2", true, false)],
            ),
            state(
                "e",
                true,
                vec![dpod("e1", false, true), dpod("e2", true, true)],
            ),
        ];
        // d is surging already: with maxSurge 2 one more available node (a) gets a new
        // pod; c's old pod is unavailable, so c gets its new pod whatever the budget; e's
        // new pod is available, so e's old pod goes. Nothing old goes before that.
        let p = plan(&nodes, Rollout::MaxSurge(2));
        assert_eq!(p.create, ["c", "a"]);
        assert_eq!(p.delete, ["e1"]);
        assert_eq!(plan(&nodes, Rollout::MaxSurge(1)).create, ["c"]);
        // Under maxUnavailable an old and a new pod on one node are one too many.
        let p = plan(&nodes, Rollout::MaxUnavailable(1));
        assert_eq!(p.delete, ["d1", "e1"]);
        // A third pod on a surging node goes.
        let crowded = [state(
            "a",
            true,
            vec![
                dpod("a1", false, true),
                dpod("a2", true, false),
                dpod("a3", false, false),
            ],
        )];
        assert_eq!(plan(&crowded, Rollout::MaxSurge(1)).delete, ["a3"]);
    }

    #[test]
    fn max_surge_percentages_round_up_and_select_the_surging_rollout() {
        let spec = |ru: Value| -> k8s_openapi::api::apps::v1::DaemonSetSpec {
            serde_json::from_value(json!({
                "selector": {}, "template": {},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}
            }))
            .unwrap()
        };
        assert_eq!(
            rollout_of(&spec(json!({"maxSurge": "10%", "maxUnavailable": 0})), 15),
            Rollout::MaxSurge(2)
        );
        assert_eq!(rollout_of(&spec(json!({})), 15), Rollout::MaxUnavailable(1));
        assert_eq!(
            rollout_of(&spec(json!({"maxUnavailable": "20%"})), 12),
            Rollout::MaxUnavailable(3)
        );
    }
}
