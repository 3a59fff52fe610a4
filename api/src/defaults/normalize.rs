//! Rewrites Kubernetes applies when it decodes and stores an object, which are not
//! defaults: a Secret's write-only `stringData` merged into `data`, and quantities
//! spelled canonically and resource lists rounded up to milli-units (`0.5` is stored
//! as `500m`, `1024Mi` as `1Gi`).

use base64::Engine;
use serde_json::{Map, Value};

use super::{child, list};
use crate::validation::quantity::Quantity;

/// Normalizes an object of `kind` as Kubernetes does before storing it. Values that do
/// not parse are left for validation to report.
pub fn normalize(kind: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    match kind {
        "Secret" => merge_string_data(o),
        "Pod" => {
            if let Some(spec) = child(o, "spec") {
                pod_spec(spec);
            }
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" | "Job" => {
            if let Some(spec) = child(o, "spec")
                .and_then(|s| child(s, "template"))
                .and_then(|t| child(t, "spec"))
            {
                pod_spec(spec);
            }
        }
        "StatefulSet" => {
            if let Some(spec) = child(o, "spec") {
                for claim in list(spec, "volumeClaimTemplates")
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object_mut)
                {
                    if let Some(res) = child(claim, "spec").and_then(|s| child(s, "resources")) {
                        resource_lists(res, &["requests", "limits"]);
                    }
                }
                if let Some(ps) = child(spec, "template").and_then(|t| child(t, "spec")) {
                    pod_spec(ps);
                }
            }
        }
        "CronJob" => {
            let ps = child(o, "spec")
                .and_then(|s| child(s, "jobTemplate"))
                .and_then(|j| child(j, "spec"))
                .and_then(|s| child(s, "template"))
                .and_then(|t| child(t, "spec"));
            if let Some(ps) = ps {
                pod_spec(ps);
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(res) = child(o, "spec").and_then(|s| child(s, "resources")) {
                resource_lists(res, &["requests", "limits"]);
            }
            if let Some(status) = child(o, "status") {
                resource_lists(status, &["capacity", "allocatedResources"]);
            }
        }
        "PersistentVolume" => {
            if let Some(spec) = child(o, "spec") {
                resource_lists(spec, &["capacity"]);
            }
        }
        "ResourceQuota" => {
            if let Some(spec) = child(o, "spec") {
                resource_lists(spec, &["hard"]);
            }
            if let Some(status) = child(o, "status") {
                resource_lists(status, &["hard", "used"]);
            }
        }
        "LimitRange" => {
            let items = child(o, "spec").and_then(|s| list(s, "limits"));
            for item in items.into_iter().flatten().filter_map(Value::as_object_mut) {
                resource_lists(
                    item,
                    &[
                        "max",
                        "min",
                        "default",
                        "defaultRequest",
                        "maxLimitRequestRatio",
                    ],
                );
            }
        }
        "Node" => {
            if let Some(status) = child(o, "status") {
                resource_lists(status, &["capacity", "allocatable"]);
            }
        }
        _ => {}
    }
}

/// `stringData` is write-only: its entries replace those of `data`, base64-encoded.
fn merge_string_data(o: &mut Map<String, Value>) {
    let Some(Value::Object(sd)) = o.remove("stringData") else {
        return;
    };
    if sd.is_empty() {
        return;
    }
    if o.get("data").is_none_or(Value::is_null) {
        o.insert("data".to_string(), Value::Object(Map::new()));
    }
    let Some(data) = o.get_mut("data").and_then(Value::as_object_mut) else {
        return;
    };
    for (k, v) in sd {
        let s = v.as_str().unwrap_or("");
        data.insert(
            k,
            Value::from(base64::engine::general_purpose::STANDARD.encode(s)),
        );
    }
}

fn pod_spec(spec: &mut Map<String, Value>) {
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        for c in list(spec, field)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            if let Some(res) = child(c, "resources") {
                resource_lists(res, &["requests", "limits"]);
            }
        }
    }
    if let Some(res) = child(spec, "resources") {
        resource_lists(res, &["requests", "limits"]);
    }
    resource_lists(spec, &["overhead"]);
    for vol in list(spec, "volumes")
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        if let Some(ed) = child(vol, "emptyDir") {
            if let Some(v) = ed.get_mut("sizeLimit") {
                canonical(v, false);
            }
        }
    }
}

/// Canonicalizes and rounds up to milli-units every quantity of the maps at `keys`.
fn resource_lists(m: &mut Map<String, Value>, keys: &[&str]) {
    for k in keys {
        if let Some(list) = child(m, k) {
            for v in list.values_mut() {
                canonical(v, true);
            }
        }
    }
}

fn canonical(v: &mut Value, round_to_milli: bool) {
    let Some(q) = v.as_str().and_then(|s| Quantity::parse(s).ok()) else {
        return;
    };
    let q = if round_to_milli {
        q.round_up_to_milli()
    } else {
        q
    };
    *v = Value::from(q.canonical());
}
