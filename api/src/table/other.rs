//! Kinds of the smaller groups: autoscaling, coordination, discovery, networking.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::access::{array_at, get, int_at, is_set, opt_int, opt_str, str_at, time_at};
use super::col::{text, Col, AGE, NAME};
use super::core::load_balancer_addresses;
use super::format::{list_with_more, since};
use super::quantity::canonical;

fn name(obj: &Value) -> Value {
    json!(str_at(obj, &["metadata", "name"]))
}

fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(time_at(obj, &["metadata", "creationTimestamp"]), now))
}

pub(super) const HORIZONTAL_POD_AUTOSCALER: &[Col] = &[
    NAME,
    text("Reference", "The scaled object, as kind/name."),
    text("Targets", "Current value and target of each metric."),
    text("MinPods", "Fewest replicas it scales to."),
    text("MaxPods", "Most replicas it scales to."),
    text("Replicas", "Replicas it last saw."),
    AGE,
];

pub(super) fn horizontal_pod_autoscaler(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(obj, &["spec", "scaleTargetRef", "kind"]),
        str_at(obj, &["spec", "scaleTargetRef", "name"])
    );
    // Defaulting sets minReplicas to 1, so Kubernetes' "<unset>" never shows.
    let min = opt_int(obj, &["spec", "minReplicas"]).unwrap_or(1);
    vec![
        name(obj),
        json!(reference),
        json!(hpa_targets(obj)),
        json!(min.to_string()),
        json!(int_at(obj, &["spec", "maxReplicas"])),
        json!(int_at(obj, &["status", "currentReplicas"])),
        age(obj, now),
    ]
}

/// A `*resource.Quantity` as Go prints it: `<nil>` when unset.
fn quantity_ptr(v: &Value, path: &[&str]) -> String {
    if is_set(v, path) {
        canonical(str_at(v, path))
    } else {
        "<nil>".to_string()
    }
}

/// Each metric as `current/target`, at most two and `+ N more...`.
fn hpa_targets(obj: &Value) -> String {
    const MAX: usize = 2;
    let specs = array_at(obj, &["spec", "metrics"]);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let statuses = array_at(obj, &["status", "currentMetrics"]);
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            // Statuses pair with specs by position, as in Kubernetes.
            let status = statuses.get(i).unwrap_or(&Value::Null);
            match str_at(spec, &["type"]) {
                "External" => value_metric(spec, status, "external"),
                "Object" => value_metric(spec, status, "object"),
                "Pods" => {
                    let current = if is_set(status, &["pods"]) {
                        quantity_ptr(status, &["pods", "current", "averageValue"])
                    } else {
                        "<unknown>".to_string()
                    };
                    let target = quantity_ptr(spec, &["pods", "target", "averageValue"]);
                    format!("{current}/{target}")
                }
                "Resource" => resource_metric(spec, status, "resource"),
                "ContainerResource" => resource_metric(spec, status, "containerResource"),
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    }
}

/// An External or Object metric: an average value marked `(avg)`, else a plain value.
fn value_metric(spec: &Value, status: &Value, field: &str) -> String {
    let has_status = is_set(status, &[field]);
    if is_set(spec, &[field, "target", "averageValue"]) {
        let current = if has_status && is_set(status, &[field, "current", "averageValue"]) {
            quantity_ptr(status, &[field, "current", "averageValue"])
        } else {
            "<unknown>".to_string()
        };
        let target = quantity_ptr(spec, &[field, "target", "averageValue"]);
        format!("{current}/{target} (avg)")
    } else {
        let current = if has_status {
            quantity_ptr(status, &[field, "current", "value"])
        } else {
            "<unknown>".to_string()
        };
        let target = quantity_ptr(spec, &[field, "target", "value"]);
        format!("{current}/{target}")
    }
}

/// A Resource or ContainerResource metric: `cpu: 10%/80%` or an average value.
fn resource_metric(spec: &Value, status: &Value, field: &str) -> String {
    let resource = str_at(spec, &[field, "name"]);
    let has_status = is_set(status, &[field]);
    if is_set(spec, &[field, "target", "averageValue"]) {
        let current = if has_status {
            quantity_ptr(status, &[field, "current", "averageValue"])
        } else {
            "<unknown>".to_string()
        };
        let target = quantity_ptr(spec, &[field, "target", "averageValue"]);
        format!("{resource}: {current}/{target}")
    } else {
        let current = match opt_int(status, &[field, "current", "averageUtilization"]) {
            Some(u) if has_status => format!("{u}%"),
            _ => "<unknown>".to_string(),
        };
        let target = match opt_int(spec, &[field, "target", "averageUtilization"]) {
            Some(u) => format!("{u}%"),
            None => "<auto>".to_string(),
        };
        format!("{resource}: {current}/{target}")
    }
}

pub(super) const LEASE: &[Col] = &[NAME, text("Holder", "Identity of the current holder."), AGE];

pub(super) fn lease(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        json!(str_at(obj, &["spec", "holderIdentity"])),
        age(obj, now),
    ]
}

pub(super) const ENDPOINT_SLICE: &[Col] = &[
    NAME,
    text("AddressType", "IPv4, IPv6 or FQDN."),
    text("Ports", "Up to three port numbers."),
    text("Endpoints", "Up to three endpoint addresses."),
    AGE,
];

pub(super) fn endpoint_slice(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = array_at(obj, &["ports"])
        .iter()
        .map(|p| match opt_int(p, &["port"]) {
            Some(port) => port.to_string(),
            // Defaulting gives every port a name (possibly empty), so Kubernetes' "*"
            // for a port with neither never shows.
            None => opt_str(p, &["name"]).unwrap_or("").to_string(),
        })
        .collect();
    let addresses: Vec<String> = array_at(obj, &["endpoints"])
        .iter()
        .flat_map(|e| array_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        name(obj),
        json!(str_at(obj, &["addressType"])),
        json!(list_with_more(&ports)),
        json!(list_with_more(&addresses)),
        age(obj, now),
    ]
}

pub(super) const INGRESS: &[Col] = &[
    NAME,
    text("Class", "Ingress class that implements it."),
    text("Hosts", "Hosts the rules match."),
    text("Address", "Addresses of the load balancer."),
    text("Ports", "Ports served: 80, and 443 with TLS."),
    AGE,
];

pub(super) fn ingress(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if array_at(obj, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        json!(opt_str(obj, &["spec", "ingressClassName"]).unwrap_or("<none>")),
        json!(ingress_hosts(obj)),
        json!(load_balancer_addresses(obj).join(",")),
        json!(ports),
        age(obj, now),
    ]
}

/// The first three rule hosts, `+ N more...` counting every further rule, `*` for none.
fn ingress_hosts(obj: &Value) -> String {
    const MAX: usize = 3;
    let rules = array_at(obj, &["spec", "rules"]);
    let mut list = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
            break;
        }
        match str_at(rule, &["host"]) {
            "" => {}
            host => list.push(host),
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let shown = list.join(",");
    if more {
        // Kubernetes counts the remaining rules, hosts or not.
        format!("{shown} + {} more...", rules.len() - MAX)
    } else {
        shown
    }
}

pub(super) const INGRESS_CLASS: &[Col] = &[
    NAME,
    text("Controller", "Controller that implements the class."),
    text("Parameters", "Resource holding the class's parameters."),
    AGE,
];

pub(super) fn ingress_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = if let Some(p) = get(obj, &["spec", "parameters"]).filter(|p| !p.is_null()) {
        let kind = match opt_str(p, &["apiGroup"]) {
            Some(group) => format!("{}.{group}", str_at(p, &["kind"])),
            None => str_at(p, &["kind"]).to_string(),
        };
        format!("{kind}/{}", str_at(p, &["name"]))
    } else {
        "<none>".to_string()
    };
    vec![
        name(obj),
        json!(str_at(obj, &["spec", "controller"])),
        json!(parameters),
        age(obj, now),
    ]
}
