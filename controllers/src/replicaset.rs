//! The ReplicaSet controller: keeps `spec.replicas` active pods that match the selector.
//!
//! Each reconcile reads the ReplicaSet and the pods of its namespace from the caches;
//! adopts orphans that match, releases owned pods that stopped matching; then, when
//! the cache has caught up with its own earlier creations and deletions
//! ([`Expectations`]), creates pods from the template (in slow-start batches, as
//! Kubernetes does) or deletes the least useful ones first ([`deletion_order`]); and
//! writes the status.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, ObjectMeta};
use serde_json::{json, Value};
use skiff_api::selector::{label_selector_as_selector, LabelSelector};
use skiff_client::controller::{Action, Controller};
use skiff_client::{Api, Client, ObjectRef, PostParams, ResourceExt, Store};

use crate::events::{EventType, Recorder};
use crate::expectations::{Expectations, Seen};
use crate::informer::Informer;
use crate::pods::{self, controller_ref};
use crate::status::patch_status;
use crate::{Error, Result};

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "replicaset-controller";

/// Kubernetes creates or deletes at most this many pods per sync.
pub const BURST_REPLICAS: usize = 500;

/// The annotation by which users rank pods for scale-down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What the ReplicaSet reconcile needs.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Builds the controller over every namespace, fed by the shared pod informer.
pub fn controller(client: &Client, pods: &mut Informer<Pod>) -> (Controller<ReplicaSet>, Arc<Ctx>) {
    let controller = Controller::new(Api::<ReplicaSet>::all(client.clone()), Default::default());
    let sets = controller.store();
    let controller = controller.watches_stream(pods.subscribe(), move |pod: &Pod| {
        owners_to_sync(pod, &sets)
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        recorder: Recorder::new(client.clone(), NAME),
        expectations: Expectations::default(),
    });
    (controller, ctx)
}

/// The ReplicaSets a pod change concerns: its controller if that is a ReplicaSet, else
/// (an orphan) every ReplicaSet of its namespace whose selector matches it.
fn owners_to_sync(pod: &Pod, sets: &Store<ReplicaSet>) -> Vec<ObjectRef> {
    let ns = pod.namespace();
    if let Some(owner) = pod.controller_owner() {
        if owner.kind == "ReplicaSet" && owner.api_version == "apps/v1" {
            return vec![ObjectRef::new(ns, &owner.name)];
        }
        return Vec::new();
    }
    sets.list()
        .iter()
        .filter(|rs| rs.namespace() == ns)
        .filter(|rs| {
            selector_of(rs.spec.as_ref().map(|s| &s.selector))
                .is_ok_and(|s| !s.is_empty() && s.matches(pod.labels()))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// A workload's selector; an empty one would select every pod of the namespace, which
/// validation refuses, so it selects nothing here.
pub fn selector_of(selector: Option<&MetaSelector>) -> Result<LabelSelector, String> {
    match label_selector_as_selector(selector) {
        Ok(Some(s)) if !s.is_empty() => Ok(s),
        Ok(_) => Err("the selector is empty".to_string()),
        Err(e) => Err(format!("invalid selector: {e}")),
    }
}

/// Pods in the order to delete them: unscheduled before scheduled, Pending before
/// Unknown before Running, not ready before ready, lower deletion cost first, pods
/// doubled up on a node with more siblings first, ready for less time first, more
/// restarts first, newer first (Kubernetes' `ActivePodsWithRanks`).
pub fn deletion_order(mut pods: Vec<Arc<Pod>>) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in &pods {
        if let Some(node) = node_of(p) {
            *per_node.entry(node.to_string()).or_insert(0) += 1;
        }
    }
    let rank = |p: &Pod| node_of(p).map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
    pods.sort_by(|a, b| delete_before(a, b, rank(a), rank(b)));
    pods
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        Some(_) => 3,
    }
}

fn deletion_cost(p: &Pod) -> i64 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(0, i64::from)
}

/// Ordering::Less when `a` should be deleted before `b`.
fn delete_before(a: &Pod, b: &Pod, rank_a: usize, rank_b: usize) -> Ordering {
    let assigned = |p: &Pod| node_of(p).is_some();
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (pods::ready_since(a), pods::ready_since(b)) {
            // Ready more recently: less useful.
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| pods::restarts(b).cmp(&pods::restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(b).cmp(&created(a))
        })
}

/// Slow-start batch sizes for `n` creations: 1, 2, 4, … so that a template that fails
/// fails once rather than `n` times (Kubernetes' `slowStartBatch`).
pub fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut left, mut size) = (n, 1usize);
    while left > 0 {
        let b = size.min(left);
        batches.push(b);
        left -= b;
        size = size.saturating_mul(2);
    }
    batches
}

/// The pod a ReplicaSet creates: its template, named `<rs>-<random>`, owned by it.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name())),
            namespace: rs.namespace().map(str::to_string),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The status a ReplicaSet should show for its active, owned, matching pods.
pub fn compute_status(rs: &ReplicaSet, active: &[Arc<Pod>], now: jiff::Timestamp) -> Value {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels().get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pods::is_available(p, min_ready, now))
        .count();
    json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": rs.metadata.generation.unwrap_or(0),
    })
}

fn current_status(rs: &ReplicaSet) -> Value {
    let s = rs.status.clone().unwrap_or_default();
    json!({
        "replicas": s.replicas,
        "fullyLabeledReplicas": s.fully_labeled_replicas.unwrap_or(0),
        "readyReplicas": s.ready_replicas.unwrap_or(0),
        "availableReplicas": s.available_replicas.unwrap_or(0),
        "observedGeneration": s.observed_generation.unwrap_or(0),
    })
}

fn invalid(rs: &ReplicaSet, message: String) -> Error {
    Error::InvalidObject {
        object: format!("ReplicaSet {}", ObjectRef::from_obj(rs)),
        message,
    }
}

/// One reconcile of one ReplicaSet; see the module docs.
pub async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = ObjectRef::from_obj(rs.as_ref());
    let ns = rs.namespace().unwrap_or("").to_string();
    let uid = rs.uid().unwrap_or("").to_string();
    let selector = match selector_of(rs.spec.as_ref().map(|s| &s.selector)) {
        Ok(s) => s,
        Err(message) => {
            ctx.recorder
                .publish(rs.as_ref(), EventType::Warning, "InvalidSelector", &message);
            tracing::warn!(replicaset = %key, %message, "not syncing");
            return Ok(Action::await_change());
        }
    };
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    let mut owned = Vec::new();
    let mut orphans = Vec::new();
    for pod in ctx.pods.list() {
        if pod.namespace() != Some(ns.as_str()) {
            continue;
        }
        let matches = selector.matches(pod.labels());
        match pod.controller_owner() {
            Some(o) if o.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if !deleting {
                    pods::release(&pod_api, &pod, &uid).await?;
                }
            }
            Some(_) => {}
            None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                orphans.push(pod)
            }
            None => {}
        }
    }
    if !orphans.is_empty() {
        // As Kubernetes' canAdopt: check the ReplicaSet afresh, since a stale cache may
        // hold one that is gone or being deleted.
        let fresh = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
            .get_opt(rs.name())
            .await?;
        let can_adopt = fresh.is_some_and(|f| {
            f.uid() == Some(uid.as_str()) && f.metadata.deletion_timestamp.is_none()
        });
        if can_adopt {
            for pod in orphans {
                match pods::adopt(&pod_api, &pod, rs.as_ref()).await {
                    Ok(adopted) => owned.push(Arc::new(adopted)),
                    // Gone meanwhile: nothing to adopt.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| pods::is_active(p)).collect();

    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| match ctx.pods.get(Some(&ns), name) {
            Some(p) => Seen::Present {
                uid: p.uid().unwrap_or("").to_string(),
                deleting: p.metadata.deletion_timestamp.is_some(),
            },
            None => Seen::Absent,
        },
        |pod_uid| active.iter().any(|p| p.uid() == Some(pod_uid)),
    );
    let manage_result = if satisfied && !deleting {
        manage_replicas(&rs, &active, &ctx, &pod_api, &key).await
    } else {
        Ok(())
    };

    let now = jiff::Timestamp::now();
    let status = compute_status(&rs, &active, now);
    if status != current_status(&rs) {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        if !patch_status(&rs_api, rs.name(), &status).await? {
            return Ok(Action::await_change());
        }
    }
    manage_result?;

    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let next_available = active
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(match next_available {
        // Availability changes with time alone; look again when the next pod turns.
        Some(d) => Action::requeue(d + Duration::from_secs(1)),
        None if !satisfied => Action::requeue(Duration::from_secs(30)),
        None => Action::await_change(),
    })
}

async fn manage_replicas(
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    ctx: &Ctx,
    pod_api: &Api<Pod>,
    key: &ObjectRef,
) -> Result<()> {
    let want = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let have = active.len();
    if have < want {
        let template = pod_from_template(rs);
        if template.spec.is_none() {
            return Err(invalid(rs, "spec.template.spec is missing".into()));
        }
        let n = (want - have).min(BURST_REPLICAS);
        let pp = PostParams::default();
        for batch in slow_start_batches(n) {
            let results =
                pods::join_in_flight((0..batch).map(|_| pod_api.create(&pp, &template))).await;
            let mut failure = None;
            for r in results {
                match r {
                    Ok(pod) => {
                        ctx.expectations.expect_add(key, pod.name());
                        ctx.recorder.publish(
                            rs,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", pod.name()),
                        );
                    }
                    Err(e) => {
                        ctx.recorder.publish(
                            rs,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        );
                        failure = Some(e);
                    }
                }
            }
            // The rest would fail the same way; retry after back-off.
            if let Some(e) = failure {
                return Err(e.into());
            }
        }
    } else if have > want {
        let n = (have - want).min(BURST_REPLICAS);
        let victims: Vec<Arc<Pod>> = deletion_order(active.to_vec())
            .into_iter()
            .take(n)
            .collect();
        let results = pods::join_in_flight(
            victims
                .iter()
                .map(|p| async move { (p, pod_api.delete(p.name(), &Default::default()).await) }),
        )
        .await;
        let mut failure = None;
        for (pod, r) in results {
            match r {
                Ok(_) => {
                    ctx.expectations.expect_delete(key, pod.uid().unwrap_or(""));
                    ctx.recorder.publish(
                        rs,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", pod.name()),
                    );
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    ctx.recorder.publish(
                        rs,
                        EventType::Warning,
                        "FailedDelete",
                        &format!("Error deleting: {e}"),
                    );
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn deletes_unscheduled_then_pending_then_unready_then_newest() {
        let pods = vec![
            Arc::new(pod("running-old", "n1", "Running", Some(10), 1)),
            Arc::new(pod("running-new", "n2", "Running", Some(10), 5)),
            Arc::new(pod("unready", "n3", "Running", None, 1)),
            Arc::new(pod("pending", "n4", "Pending", None, 1)),
            Arc::new(pod("unscheduled", "", "Pending", None, 1)),
        ];
        let order = deletion_order(pods);
        assert_eq!(
            names(&order),
            [
                "unscheduled",
                "pending",
                "unready",
                "running-new",
                "running-old"
            ]
        );
    }

    #[test]
    fn doubled_up_and_recently_ready_pods_go_first() {
        let pods = vec![
            Arc::new(pod("alone", "n1", "Running", Some(10), 1)),
            Arc::new(pod("pair-a", "n2", "Running", Some(10), 1)),
            Arc::new(pod("pair-b", "n2", "Running", Some(10), 1)),
            Arc::new(pod("fresh", "n3", "Running", Some(50), 1)),
        ];
        let order = deletion_order(pods);
        assert_eq!(&names(&order)[..2], ["pair-a", "pair-b"]);
        assert_eq!(&names(&order)[2..], ["fresh", "alone"]);
    }

    #[test]
    fn deletion_cost_ranks_before_age() {
        let mut cheap = pod("cheap", "n1", "Running", Some(10), 1);
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
        let pods = vec![
            Arc::new(pod("newer", "n2", "Running", Some(10), 9)),
            Arc::new(cheap),
        ];
        assert_eq!(names(&deletion_order(pods)), ["cheap", "newer"]);
    }

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
    }

    #[test]
    fn template_pods_are_owned_and_labelled() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 3},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "fe"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        }))
        .unwrap();
        let p = pod_from_template(&rs);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        let owner = p.controller_owner().unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ReplicaSet", "u1")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(p.labels().get("tier").map(String::as_str), Some("fe"));

        let mut ready = pod("a", "n1", "Running", Some(0), 0);
        ready.metadata.labels = p.metadata.labels.clone();
        let unready = pod("b", "n1", "Running", None, 0);
        let status = compute_status(
            &rs,
            &[Arc::new(ready), Arc::new(unready)],
            jiff::Timestamp::from_second(100).unwrap(),
        );
        assert_eq!(
            status,
            json!({"replicas": 2, "fullyLabeledReplicas": 1, "readyReplicas": 1,
                   "availableReplicas": 1, "observedGeneration": 3})
        );
        assert!(selector_of(rs.spec.as_ref().map(|s| &s.selector)).is_ok());
        assert!(selector_of(Some(&MetaSelector::default())).is_err());
    }
}
