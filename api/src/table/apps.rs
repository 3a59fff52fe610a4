//! The `apps/v1` kinds.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::access::{array_at, int_at, opt_int, str_at, time_at};
use super::col::{integer, text, Col, AGE, CONTAINERS, IMAGES, NAME, SELECTOR};
use super::format::{containers, format_label_selector, format_labels, label_selector, since};

fn name(obj: &Value) -> Value {
    json!(str_at(obj, &["metadata", "name"]))
}

fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(time_at(obj, &["metadata", "creationTimestamp"]), now))
}

/// `spec.replicas`; the API server's defaulting sets 1 when a client leaves it out, so
/// Kubernetes' printer never sees it unset.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

/// Container names and images of `spec.template`.
fn template_containers(obj: &Value) -> (Value, Value) {
    let (names, images) = containers(obj, &["spec", "template", "spec", "containers"]);
    (json!(names), json!(images))
}

pub(super) const DEPLOYMENT: &[Col] = &[
    NAME,
    text("Ready", "Ready pods out of the desired number."),
    text("Up-to-date", "Pods running the latest template."),
    text("Available", "Pods available to users."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) fn deployment(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    // Unlike the other workloads, a Deployment's selector prints as the bare selector
    // string: empty for an empty selector, `<invalid>` for a bad one.
    let selector =
        label_selector(obj, &["spec", "selector"]).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(obj),
        json!(format!(
            "{}/{}",
            int_at(obj, &["status", "readyReplicas"]),
            desired_replicas(obj)
        )),
        json!(int_at(obj, &["status", "updatedReplicas"])),
        json!(int_at(obj, &["status", "availableReplicas"])),
        age(obj, now),
        names,
        images,
        json!(selector),
    ]
}

pub(super) const REPLICA_SET: &[Col] = &[
    NAME,
    integer("Desired", "Number of pods wanted."),
    integer("Current", "Number of pods that exist."),
    integer("Ready", "Number of pods that are ready."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// A ReplicationController prints as a ReplicaSet does, its selector being a plain map.
pub(super) fn replication_controller(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = replica_set(obj, now);
    let selector = obj["spec"]["selector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into());
    if let Some(last) = cells.last_mut() {
        *last = json!(selector);
    }
    cells
}

pub(super) fn replica_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        name(obj),
        json!(desired_replicas(obj)),
        json!(int_at(obj, &["status", "replicas"])),
        json!(int_at(obj, &["status", "readyReplicas"])),
        age(obj, now),
        names,
        images,
        json!(format_label_selector(obj, &["spec", "selector"])),
    ]
}

pub(super) const STATEFUL_SET: &[Col] = &[
    NAME,
    text("Ready", "Ready pods out of the desired number."),
    AGE,
    CONTAINERS,
    IMAGES,
];

pub(super) fn stateful_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        name(obj),
        json!(format!(
            "{}/{}",
            int_at(obj, &["status", "readyReplicas"]),
            desired_replicas(obj)
        )),
        age(obj, now),
        names,
        images,
    ]
}

pub(super) const DAEMON_SET: &[Col] = &[
    NAME,
    integer("Desired", "Nodes that should run the daemon pod."),
    integer("Current", "Nodes running at least one daemon pod."),
    integer("Ready", "Nodes whose daemon pod is ready."),
    integer("Up-to-date", "Nodes running the latest template."),
    integer("Available", "Nodes whose daemon pod is available."),
    text("Node Selector", "Labels a node needs to run the pod."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) fn daemon_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    let status = |field: &str| json!(int_at(obj, &["status", field]));
    vec![
        name(obj),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        json!(format_labels(
            obj,
            &["spec", "template", "spec", "nodeSelector"]
        )),
        age(obj, now),
        names,
        images,
        json!(format_label_selector(obj, &["spec", "selector"])),
    ]
}

pub(super) const CONTROLLER_REVISION: &[Col] = &[
    NAME,
    text("Controller", "The object that owns this revision."),
    text("Revision", "Revision number."),
    AGE,
];

pub(super) fn controller_revision(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        json!(controller_of(obj)),
        json!(int_at(obj, &["revision"])),
        age(obj, now),
    ]
}

/// The controlling owner as `kind.group/name` in lower case (`statefulset.apps/web`),
/// `<none>` without one.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = array_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".to_string();
    };
    let name = str_at(owner, &["name"]);
    let kind = str_at(owner, &["kind"]);
    let group = match str_at(owner, &["apiVersion"]).split_once('/') {
        Some((group, _)) => group,
        // The core group's apiVersion is the bare version.
        None => "",
    };
    match (kind, group) {
        ("", "") => name.to_string(),
        (kind, "") => format!("{}/{name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
    }
}
