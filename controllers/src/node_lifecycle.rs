//! Node lifecycle and taint-based eviction: a node whose kubelet stops renewing its Lease
//! (`kube-node-lease/<node>`) and posting status for `--node-monitor-grace-period`
//! becomes Ready=Unknown; nodes get the `node.kubernetes.io/unreachable` (Ready Unknown)
//! or `node.kubernetes.io/not-ready` (Ready False) taints, NoSchedule and NoExecute, and
//! lose them when Ready again; pods on a node with NoExecute taints they do not tolerate
//! are deleted, at once or after their `tolerationSeconds`.
//!
//! Heartbeats are judged by this process's clock, as Kubernetes does: the time at which
//! a new Lease renewTime (or Ready heartbeat) was *observed*, not the time written in
//! it, so clock skew between machines does not matter, and a restarted controller
//! manager gives every node a full grace period.
//!
//! The decisions are pure functions ([`desired_taints`], [`eviction`],
//! [`unknown_conditions`]); [`run`] checks every node each `--node-monitor-period`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use skiff_client::{reflector, watcher, Api, Client, Patch, PatchParams, ResourceExt, Store};

use crate::events::{EventType, Recorder};
use crate::informer::Informer;
use crate::metrics::Metrics;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "node-lifecycle-controller";

/// The taint of a node whose kubelet is not heard from.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose kubelet reports Ready=False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Where kubelets keep their heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The timing flags.
#[derive(Clone, Debug)]
pub struct Timing {
    /// `--node-monitor-period`: how often nodes are checked (5s).
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period`: silence after which a node is Unknown (40s).
    pub grace_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
        }
    }
}

/// Whether `tol` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => {
            key == taint.key
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// What to do with a pod on a node with NoExecute taints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// It tolerates them all for ever (or there are none).
    Never,
    /// Delete it now.
    Now,
    /// Delete it at this time unless the taints go first.
    At(jiff::Timestamp),
}

/// When a pod with `tolerations` must leave a node with `taints` (only NoExecute ones
/// count): at once if one is not tolerated, else when the shortest `tolerationSeconds`
/// of the matching tolerations has run from the taint's `timeAdded`.
pub fn eviction(tolerations: &[Toleration], taints: &[Taint], now: jiff::Timestamp) -> Eviction {
    let mut at: Option<jiff::Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        // The longest toleration of this taint is what the pod has; None is for ever.
        let seconds = matching
            .iter()
            .map(|t| t.toleration_seconds)
            .try_fold(0i64, |max, s| s.map(|s| max.max(s.max(0))));
        let Some(seconds) = seconds else { continue };
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let when = added
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(added);
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    match at {
        None => Eviction::Never,
        Some(t) if t <= now => Eviction::Now,
        Some(t) => Eviction::At(t),
    }
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
}

/// The node's taints given its Ready status: unreachable for Unknown, not-ready for
/// False (each NoSchedule and NoExecute), neither for True; others kept. None when
/// nothing changes, or when the node has no Ready condition yet (a node just
/// registered is judged only once its grace period has run).
pub fn desired_taints(node: &Node, now: jiff::Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want_key = match ready_status(node)? {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    };
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let ours = t.key == UNREACHABLE || t.key == NOT_READY;
            let wanted = Some(t.key.as_str()) == want_key
                && (t.effect == "NoSchedule" || t.effect == "NoExecute");
            !ours || wanted
        })
        .cloned()
        .collect();
    if let Some(key) = want_key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == key && t.effect == effect) {
                next.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    time_added: Some(Time(now)),
                    value: None,
                });
            }
        }
    }
    (next != current).then_some(next)
}

/// The node's conditions once its kubelet is not heard from: each one Unknown, with
/// Kubernetes' reason and message; None when they already are.
pub fn unknown_conditions(node: &Node, now: jiff::Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "False".into(),
            ..NodeCondition::default()
        });
    }
    let mut changed = false;
    for c in &mut conditions {
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(Time(now));
            changed = true;
        }
    }
    changed.then_some(conditions)
}

/// What the heartbeat of a node is made of: its Lease's renewTime and its Ready
/// condition's heartbeat; a change in either is a sign of life.
fn heartbeat(node: &Node, lease: Option<&Lease>) -> String {
    let renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    format!("{renew}|{ready}")
}

struct Monitor {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    recorder: Recorder,
    timing: Timing,
    // node -> (last heartbeat seen, when it was first seen)
    probes: HashMap<String, (String, Instant)>,
    // pods already deleted by this loop, so as not to delete (and tell) twice
    evicted: HashMap<String, Instant>,
}

/// The node lifecycle loop, built before the shared pod informer runs.
pub struct NodeLifecycle {
    monitor: Monitor,
    pod_events: futures::stream::BoxStream<'static, skiff_client::Result<watcher::Event<Pod>>>,
    node_writer: reflector::Writer<Node>,
    lease_writer: reflector::Writer<Lease>,
}

impl NodeLifecycle {
    /// Builds the loop over the shared pod informer.
    pub fn new(client: &Client, pods: &mut Informer<Pod>, timing: Timing) -> Self {
        let (nodes, node_writer) = reflector::store();
        let (leases, lease_writer) = reflector::store();
        NodeLifecycle {
            monitor: Monitor {
                client: client.clone(),
                nodes,
                leases,
                pods: pods.store(),
                recorder: Recorder::new(client.clone(), NAME),
                timing,
                probes: HashMap::new(),
                evicted: HashMap::new(),
            },
            pod_events: pods.subscribe(),
            node_writer,
            lease_writer,
        }
    }

    /// Checks every node each monitor period until `shutdown`.
    pub async fn run(self, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
        let NodeLifecycle {
            mut monitor,
            pod_events,
            node_writer,
            lease_writer,
        } = self;
        let client = monitor.client.clone();
        let node_stream = reflector::reflector(
            node_writer,
            watcher::watcher(Api::<Node>::all(client.clone()), Default::default()),
        );
        let lease_stream = reflector::reflector(
            lease_writer,
            watcher::watcher(
                Api::<Lease>::namespaced(client, LEASE_NAMESPACE),
                Default::default(),
            ),
        );
        // The streams only fill the caches; the periodic check reads them.
        let feeder = tokio::spawn(async move {
            let mut all = futures::stream::select(
                node_stream.map(|_| ()),
                futures::stream::select(lease_stream.map(|_| ()), pod_events.map(|_| ())),
            );
            while all.next().await.is_some() {}
        });
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(monitor.timing.monitor_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            if !monitor.nodes.is_synced()
                || !monitor.leases.is_synced()
                || !monitor.pods.is_synced()
            {
                continue;
            }
            let ok = monitor.check_all().await;
            metrics.reconciled(NAME, ok);
        }
        feeder.abort();
    }
}

impl Monitor {
    async fn check_all(&mut self) -> bool {
        let now = jiff::Timestamp::now();
        let nodes = self.nodes.list();
        let names: std::collections::HashSet<&str> = nodes.iter().map(|n| n.name()).collect();
        self.probes.retain(|n, _| names.contains(n.as_str()));
        self.evicted
            .retain(|_, at| at.elapsed() < Duration::from_secs(600));
        let mut ok = true;
        for node in nodes {
            if let Err(error) = self.check_node(&node, now).await {
                tracing::warn!(node = %node.name(), %error, "node lifecycle check failed; retrying next period");
                ok = false;
            }
        }
        ok
    }

    async fn check_node(&mut self, node: &Node, now: jiff::Timestamp) -> crate::Result<()> {
        let name = node.name().to_string();
        let lease = self.leases.get(Some(LEASE_NAMESPACE), &name);
        let beat = heartbeat(node, lease.as_deref());
        let seen = match self.probes.get(&name) {
            Some((b, at)) if *b == beat => *at,
            _ => {
                self.probes.insert(name.clone(), (beat, Instant::now()));
                Instant::now()
            }
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = node.clone();
        if seen.elapsed() > self.timing.grace_period {
            if let Some(conditions) = unknown_conditions(&node, now) {
                tracing::info!(node = %name, silent_for = ?seen.elapsed(), "node stopped posting status; marking it Unknown");
                let updated = api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({
                            "metadata": {"resourceVersion": node.resource_version()},
                            "status": {"conditions": conditions},
                        })),
                    )
                    .await?;
                self.recorder.publish(
                    &node,
                    EventType::Normal,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                );
                node = updated;
                self.mark_pods_not_ready(&name).await;
            }
        }
        if let Some(taints) = desired_taints(&node, now) {
            tracing::info!(node = %name, taints = ?taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "updating the node's condition taints");
            node = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({
                        "metadata": {"resourceVersion": node.resource_version()},
                        "spec": {"taints": taints},
                    })),
                )
                .await?;
        }
        self.evict(&node, now).await;
        Ok(())
    }

    /// Pods on a node that is not heard from are no longer Ready (so that Services stop
    /// sending to them), as Kubernetes' MarkPodsNotReady.
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.pods_on(node) {
            let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
                continue;
            };
            if !conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                continue;
            }
            let now = jiff::Timestamp::now().to_string();
            let conditions: Vec<serde_json::Value> = conditions
                .iter()
                .map(|c| {
                    let mut v = serde_json::to_value(c).unwrap_or_default();
                    if c.type_ == "Ready" {
                        v["status"] = json!("False");
                        v["reason"] = json!("NodeNotReady");
                        v["lastTransitionTime"] = json!(now);
                    }
                    v
                })
                .collect();
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), pod.namespace().unwrap_or("default"));
            if let Err(error) = api
                .patch_status(
                    pod.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"conditions": conditions}})),
                )
                .await
            {
                tracing::debug!(pod = %pod.name(), %error, "could not mark the pod not ready");
            }
        }
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    async fn evict(&mut self, node: &Node, now: jiff::Timestamp) {
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        if taints.is_empty() {
            return;
        }
        for pod in self.pods_on(node.name()) {
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            if eviction(&tolerations, &taints, now) != Eviction::Now {
                continue;
            }
            let uid = pod.uid().unwrap_or("").to_string();
            if self.evicted.contains_key(&uid) {
                continue;
            }
            let ns = pod.namespace().unwrap_or("default");
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            match api.delete(pod.name(), &Default::default()).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{}", pod.name()), node = %node.name(), "evicted the pod from a NoExecute-tainted node");
                    self.recorder.publish(
                        pod.as_ref(),
                        EventType::Normal,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{}", pod.name()),
                    );
                    self.evicted.insert(uid, Instant::now());
                }
                Err(e) if e.is_not_found() => {}
                Err(error) => tracing::warn!(pod = %pod.name(), %error, "could not evict the pod"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    fn taint(key: &str, effect: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: Some(Time(ts(added))),
            value: None,
        }
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: secs,
            value: None,
        }
    }

    fn node(ready: &str, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn toleration_matching() {
        let t = taint(UNREACHABLE, "NoExecute", 0);
        assert!(tolerates(
            &tol(UNREACHABLE, "Exists", "NoExecute", None),
            &t
        ));
        assert!(
            tolerates(&tol("", "Exists", "", None), &t),
            "tolerate everything"
        );
        assert!(!tolerates(
            &tol(UNREACHABLE, "Exists", "NoSchedule", None),
            &t
        ));
        assert!(!tolerates(&tol(NOT_READY, "Exists", "", None), &t));
        let mut eq = tol(UNREACHABLE, "Equal", "", None);
        assert!(tolerates(&eq, &t), "empty value equals no value");
        eq.value = Some("x".into());
        assert!(!tolerates(&eq, &t));
    }

    #[test]
    fn eviction_waits_for_toleration_seconds() {
        let taints = [
            taint(UNREACHABLE, "NoExecute", 100),
            taint(UNREACHABLE, "NoSchedule", 100),
        ];
        assert_eq!(eviction(&[], &taints, ts(100)), Eviction::Now);
        let tols = [tol(UNREACHABLE, "Exists", "NoExecute", Some(300))];
        assert_eq!(eviction(&tols, &taints, ts(150)), Eviction::At(ts(400)));
        assert_eq!(eviction(&tols, &taints, ts(400)), Eviction::Now);
        let forever = [tol(UNREACHABLE, "Exists", "NoExecute", None)];
        assert_eq!(eviction(&forever, &taints, ts(10_000)), Eviction::Never);
        assert_eq!(
            eviction(&[], &[taint("x", "NoSchedule", 0)], ts(0)),
            Eviction::Never
        );
        let other = [
            taint("dedicated", "NoExecute", 0),
            taint(UNREACHABLE, "NoExecute", 100),
        ];
        assert_eq!(
            eviction(&tols, &other, ts(150)),
            Eviction::Now,
            "one untolerated taint"
        );
    }

    #[test]
    fn taints_follow_ready() {
        let now = ts(50);
        let t = desired_taints(
            &node("Unknown", vec![taint("dedicated", "NoSchedule", 1)]),
            now,
        )
        .unwrap();
        let keys: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute")
            ]
        );
        assert_eq!(
            desired_taints(&node("Unknown", t.clone()), ts(99)),
            None,
            "stable"
        );
        let f = desired_taints(&node("False", t.clone()), now).unwrap();
        assert!(f.iter().all(|t| t.key != UNREACHABLE));
        assert_eq!(f.iter().filter(|t| t.key == NOT_READY).count(), 2);
        let back = desired_taints(&node("True", f), now).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(desired_taints(&node("True", back), now), None);
    }

    #[test]
    fn conditions_turn_unknown_once() {
        let n = node("True", Vec::new());
        let c = unknown_conditions(&n, ts(5)).unwrap();
        assert_eq!(c[0].status, "Unknown");
        assert_eq!(c[0].reason.as_deref(), Some("NodeStatusUnknown"));
        let mut n2 = n.clone();
        n2.status.as_mut().unwrap().conditions = Some(c);
        assert_eq!(unknown_conditions(&n2, ts(6)), None);
    }
}
