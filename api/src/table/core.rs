//! The core (`v1`) kinds other than Pod.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::access::{
    array_at, get, int_at, is_set, len_of_array, len_of_object, object_at, opt_str, str_at, str_or,
    time_at,
};
use super::col::{text, wide, Col, AGE, NAME, WIDE_NAME};
use super::format::{access_modes, format_labels, join_host_port, since};
use super::quantity::canonical;

fn name(obj: &Value) -> Value {
    json!(str_at(obj, &["metadata", "name"]))
}

fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(time_at(obj, &["metadata", "creationTimestamp"]), now))
}

fn or<'a>(s: &'a str, fallback: &'a str) -> &'a str {
    if s.is_empty() {
        fallback
    } else {
        s
    }
}

pub(super) const NODE: &[Col] = &[
    NAME,
    text(
        "Status",
        "Readiness of the node, and whether it takes new pods.",
    ),
    text("Roles", "Roles from the node-role.kubernetes.io/ labels."),
    AGE,
    text("Version", "Version of the node's kubelet."),
    wide("Internal-IP", "The node's first internal address."),
    wide("External-IP", "The node's first external address."),
    wide("OS-Image", "Operating system image reported by the node."),
    wide("Kernel-Version", "Kernel version reported by the node."),
    wide("Container-Runtime", "Container runtime and its version."),
];

pub(super) fn node(obj: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition counts; a repeated one overrides the earlier.
    let ready = array_at(obj, &["status", "conditions"])
        .iter()
        .rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if get(obj, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (k, v) in object_at(obj, &["metadata", "labels"])
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" {
            match v.as_str() {
                Some(role) if !role.is_empty() => {
                    roles.insert(role.to_string());
                }
                _ => {}
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");
    let address = |ty: &str| {
        array_at(obj, &["status", "addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == ty)
            .map_or("<none>", |a| str_at(a, &["address"]))
    };
    let info = |field: &str| or(str_at(obj, &["status", "nodeInfo", field]), "<unknown>");
    vec![
        name(obj),
        json!(status.join(",")),
        json!(or(&roles, "<none>")),
        age(obj, now),
        json!(str_at(obj, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

pub(super) const NAMESPACE: &[Col] = &[
    NAME,
    text("Status", "Phase of the namespace: Active or Terminating."),
    AGE,
];

pub(super) fn namespace(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        json!(str_or(obj, &["status", "phase"], "Active")),
        age(obj, now),
    ]
}

pub(super) const SERVICE: &[Col] = &[
    NAME,
    text("Type", "How the service is exposed."),
    text("Cluster-IP", "The service's first cluster IP."),
    text(
        "External-IP",
        "Addresses the service is reachable at from outside.",
    ),
    text("Port(s)", "Ports, with the node port where there is one."),
    AGE,
    wide("Selector", "Labels of the pods behind the service."),
];

pub(super) fn service(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ty = str_or(obj, &["spec", "type"], "ClusterIP");
    let cluster_ip = array_at(obj, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| opt_str(obj, &["spec", "clusterIP"]).filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let ports = array_at(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let protocol = str_or(p, &["protocol"], "TCP");
            match int_at(p, &["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    vec![
        name(obj),
        json!(ty),
        json!(cluster_ip),
        json!(service_external_ip(obj, ty)),
        json!(or(&ports, "<none>")),
        age(obj, now),
        json!(format_labels(obj, &["spec", "selector"])),
    ]
}

fn service_external_ip(obj: &Value, ty: &str) -> String {
    let external: Vec<&str> = array_at(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match ty {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let mut all = load_balancer_addresses(obj);
            all.extend(external.iter().map(|s| s.to_string()));
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// The IPs (or else hostnames) of `status.loadBalancer.ingress`, sorted and without
/// repeats. The server prints wide, so nothing is shortened.
pub(super) fn load_balancer_addresses(obj: &Value) -> Vec<String> {
    array_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| match (str_at(i, &["ip"]), str_at(i, &["hostname"])) {
            ("", "") => None,
            ("", host) => Some(host.to_string()),
            (ip, _) => Some(ip.to_string()),
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

pub(super) const ENDPOINTS: &[Col] = &[
    NAME,
    text("Endpoints", "Up to three ready addresses with their ports."),
    AGE,
];

pub(super) fn endpoints(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), json!(format_endpoints(obj)), age(obj, now)]
}

fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = array_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list = Vec::new();
    let mut count = 0usize;
    for ss in subsets {
        let addresses = array_at(ss, &["addresses"]);
        let ports = array_at(ss, &["ports"]);
        if ports.is_empty() {
            // A headless service may have no ports: list bare IPs.
            count += addresses.len();
            for a in addresses.iter().take(MAX.saturating_sub(list.len())) {
                list.push(str_at(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses.iter().take(MAX.saturating_sub(list.len())) {
                list.push(join_host_port(str_at(a, &["ip"]), int_at(p, &["port"])));
            }
        }
    }
    let shown = list.join(",");
    if count > list.len() && list.len() == MAX {
        format!("{shown} + {} more...", count - MAX)
    } else {
        shown
    }
}

pub(super) const CONFIG_MAP: &[Col] =
    &[NAME, text("Data", "Number of keys, text and binary."), AGE];

pub(super) fn config_map(obj: &Value, now: Timestamp) -> Vec<Value> {
    let keys = len_of_object(obj, &["data"]) + len_of_object(obj, &["binaryData"]);
    vec![name(obj), json!(keys), age(obj, now)]
}

pub(super) const SECRET: &[Col] = &[
    NAME,
    text("Type", "Type of the secret."),
    text("Data", "Number of keys."),
    AGE,
];

pub(super) fn secret(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        json!(str_or(obj, &["type"], "Opaque")),
        json!(len_of_object(obj, &["data"])),
        age(obj, now),
    ]
}

pub(super) const EVENT: &[Col] = &[
    text("Last Seen", "Time since the event was last seen."),
    text("Type", "Normal or Warning."),
    text("Reason", "Short machine-readable reason."),
    text("Object", "The object the event is about."),
    wide("Subobject", "Part of the object, such as a container."),
    wide("Source", "Component (and host) that reported the event."),
    text("Message", "What happened."),
    wide("First Seen", "Time since the event was first seen."),
    wide("Count", "How many times it happened."),
    WIDE_NAME,
];

pub(super) fn event(obj: &Value, now: Timestamp) -> Vec<Value> {
    let first = match time_at(obj, &["firstTimestamp"]) {
        Some(t) => since(Some(t), now),
        // Events of the newer API carry only eventTime.
        None => since(time_at(obj, &["eventTime"]), now),
    };
    let mut last = match time_at(obj, &["lastTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(obj, &["count"]);
    if let Some(series) = get(obj, &["series"]).filter(|s| s.is_object()) {
        last = since(time_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        // A singleton event of the newer API has no count.
        count = 1;
    }
    let kind = str_at(obj, &["involvedObject", "kind"]).to_lowercase();
    let target = match str_at(obj, &["involvedObject", "name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = or(
        str_at(obj, &["source", "component"]),
        str_at(obj, &["reportingComponent"]),
    );
    let host = or(
        str_at(obj, &["source", "host"]),
        str_at(obj, &["reportingInstance"]),
    );
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(str_at(obj, &["type"])),
        json!(str_at(obj, &["reason"])),
        json!(target),
        json!(str_at(obj, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(str_at(obj, &["message"]).trim()),
        json!(first),
        json!(count),
        name(obj),
    ]
}

pub(super) const SERVICE_ACCOUNT: &[Col] = &[
    NAME,
    text(
        "Secrets",
        "Number of secrets listed in the service account.",
    ),
    AGE,
];

pub(super) fn service_account(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        json!(len_of_array(obj, &["secrets"])),
        age(obj, now),
    ]
}

pub(super) const RESOURCE_QUOTA: &[Col] = &[
    NAME,
    text("Request", "Used/hard of each resource not under limits."),
    text("Limit", "Used/hard of each limits.* resource."),
    AGE,
];

pub(super) fn resource_quota(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<(&String, &Value)> = object_at(obj, &["status", "hard"])
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    resources.sort_by(|a, b| a.0.cmp(b.0));
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, hard) in resources {
        let used = str_at(obj, &["status", "used", resource]);
        let entry = format!(
            "{resource}: {}/{}",
            quantity(used),
            quantity(hard.as_str().unwrap_or(""))
        );
        if resource.starts_with("limits.") {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name(obj),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        age(obj, now),
    ]
}

/// A quantity as Kubernetes prints it; an unset one is zero.
pub(super) fn quantity(s: &str) -> String {
    if s.is_empty() {
        "0".to_string()
    } else {
        canonical(s)
    }
}

/// The storage class: the legacy beta annotation wins over the field.
fn storage_class<'a>(obj: &'a Value, field: &'a str) -> &'a str {
    opt_str(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .unwrap_or(field)
}

pub(super) const PERSISTENT_VOLUME: &[Col] = &[
    NAME,
    text("Capacity", "Storage capacity."),
    text("Access Modes", "How the volume can be mounted."),
    text(
        "Reclaim Policy",
        "What happens to the volume when its claim goes.",
    ),
    text("Status", "Phase of the volume."),
    text("Claim", "The claim bound to the volume."),
    text("StorageClass", "Storage class of the volume."),
    text(
        "VolumeAttributesClass",
        "Volume attributes class of the volume.",
    ),
    text("Reason", "Why the volume is in its phase."),
    AGE,
    wide("VolumeMode", "Filesystem or Block."),
];

pub(super) fn persistent_volume(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = if is_set(obj, &["spec", "claimRef"]) {
        format!(
            "{}/{}",
            str_at(obj, &["spec", "claimRef", "namespace"]),
            str_at(obj, &["spec", "claimRef", "name"])
        )
    } else {
        String::new()
    };
    let phase = if is_set(obj, &["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else {
        str_or(obj, &["status", "phase"], "Pending")
    };
    vec![
        name(obj),
        json!(quantity(str_at(obj, &["spec", "capacity", "storage"]))),
        json!(access_modes(obj, &["spec", "accessModes"])),
        json!(str_or(
            obj,
            &["spec", "persistentVolumeReclaimPolicy"],
            "Retain"
        )),
        json!(phase),
        json!(claim),
        json!(storage_class(
            obj,
            str_at(obj, &["spec", "storageClassName"])
        )),
        json!(opt_str(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
        json!(str_at(obj, &["status", "reason"])),
        age(obj, now),
        json!(str_or(obj, &["spec", "volumeMode"], "Filesystem")),
    ]
}

pub(super) const PERSISTENT_VOLUME_CLAIM: &[Col] = &[
    NAME,
    text("Status", "Phase of the claim."),
    text("Volume", "The volume bound to the claim."),
    text("Capacity", "Capacity of the bound volume."),
    text("Access Modes", "How the bound volume can be mounted."),
    text("StorageClass", "Storage class requested."),
    text(
        "VolumeAttributesClass",
        "Volume attributes class requested.",
    ),
    AGE,
    wide("VolumeMode", "Filesystem or Block."),
];

pub(super) fn persistent_volume_claim(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_set(obj, &["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else {
        str_or(obj, &["status", "phase"], "Pending")
    };
    let volume = str_at(obj, &["spec", "volumeName"]);
    // Capacity and modes describe the bound volume, so an unbound claim shows none.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(str_at(obj, &["status", "capacity", "storage"])),
            access_modes(obj, &["status", "accessModes"]),
        )
    };
    vec![
        name(obj),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(
            obj,
            str_at(obj, &["spec", "storageClassName"])
        )),
        json!(opt_str(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
        age(obj, now),
        json!(str_or(obj, &["spec", "volumeMode"], "Filesystem")),
    ]
}
