//! The LimitRanger admission plugin: default container requests and limits from the
//! namespace's LimitRanges, and the min/max/ratio checks it enforces on pods.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{child, ensure_obj, list, set_default};
use crate::validation::quantity::Quantity;

/// The annotation LimitRanger leaves on pods it changed.
pub const LIMIT_RANGER_ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Fills a LimitRange item's defaults as Kubernetes does when storing it: for
/// `Container` items, default limits come from max, default requests from the default
/// limits, then from min.
pub(super) fn default_limit_range_item(item: &mut Map<String, Value>) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let max = item
        .get("max")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let min = item
        .get("min")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let absent: Vec<&str> = ["default", "defaultRequest"]
        .into_iter()
        .filter(|f| item.get(*f).is_none_or(Value::is_null))
        .collect();
    if let Some(default) = ensure_obj(item, "default") {
        for (k, v) in max {
            set_default(default, &k, v);
        }
    }
    let default = item
        .get("default")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(default_request) = ensure_obj(item, "defaultRequest") {
        for (k, v) in default.into_iter().chain(min) {
            set_default(default_request, &k, v);
        }
    }
    // Empty maps are omitted by Kubernetes' serializer; drop those created here.
    for f in absent {
        if item
            .get(f)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            item.remove(f);
        }
    }
}

/// The Container items of a LimitRange, with their stored defaults filled.
fn container_items(lr: &Value) -> Vec<Map<String, Value>> {
    let items = lr
        .get("spec")
        .and_then(|s| s.get("limits"))
        .and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("Container"))
        .map(|i| {
            let mut i = i.clone();
            default_limit_range_item(&mut i);
            i
        })
        .collect()
}

/// Sets, for each container (and init container) lacking them, the default requests
/// and limits of the `Container` items of `limit_ranges`, and notes what it set in the
/// `kubernetes.io/limit-ranger` annotation, as the LimitRanger admission plugin.
pub fn apply_limit_range_defaults(pod: &mut Value, limit_ranges: &[Value]) {
    for lr in limit_ranges {
        let mut default_limits = Map::new();
        let mut default_requests = Map::new();
        for item in container_items(lr) {
            if let Some(d) = item.get("default").and_then(Value::as_object) {
                default_limits.extend(d.clone());
            }
            if let Some(d) = item.get("defaultRequest").and_then(Value::as_object) {
                default_requests.extend(d.clone());
            }
        }
        if default_limits.is_empty() && default_requests.is_empty() {
            continue;
        }
        merge_defaults(pod, &default_limits, &default_requests);
    }
}

fn merge_defaults(pod: &mut Value, limits: &Map<String, Value>, requests: &Map<String, Value>) {
    let Some(o) = pod.as_object_mut() else { return };
    let mut notes = Vec::new();
    if let Some(spec) = child(o, "spec") {
        for (field, what) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            for c in list(spec, field)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let Some(res) = ensure_obj(c, "resources") else {
                    continue;
                };
                let mut set_limits = fill(res, "limits", limits);
                let mut set_requests = fill(res, "requests", requests);
                set_requests.sort();
                set_limits.sort();
                if !set_requests.is_empty() {
                    notes.push(format!(
                        "{} request for {what} {name}",
                        set_requests.join(", ")
                    ));
                }
                if !set_limits.is_empty() {
                    notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
                }
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    if let Some(ann) = ensure_obj(o, "metadata").and_then(|m| ensure_obj(m, "annotations")) {
        ann.insert(
            LIMIT_RANGER_ANNOTATION.to_string(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

/// Adds the missing entries of `defaults` to the list at `key`, returning their names.
fn fill(res: &mut Map<String, Value>, key: &str, defaults: &Map<String, Value>) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let Some(list) = ensure_obj(res, key) else {
        return Vec::new();
    };
    let mut set = Vec::new();
    for (k, v) in defaults {
        if !list.contains_key(k) {
            list.insert(k.clone(), v.clone());
            set.push(k.clone());
        }
    }
    set
}

type ResourceList = BTreeMap<String, Quantity>;

fn resource_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// What LimitRanger would refuse in `pod` under `limit_ranges`: each `Container` item's
/// min, max and maxLimitRequestRatio per container, and each `Pod` item's over the
/// pod's total. Messages are Kubernetes'; the server reports them as Forbidden.
pub fn limit_range_violations(pod: &Value, limit_ranges: &[Value]) -> Vec<String> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let containers: Vec<(ResourceList, ResourceList)> = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| spec.get(*f).and_then(Value::as_array).into_iter().flatten())
        .map(|c| {
            let res = c.get("resources");
            (
                resource_list(res.and_then(|r| r.get("requests"))),
                resource_list(res.and_then(|r| r.get("limits"))),
            )
        })
        .collect();
    let mut out = Vec::new();
    for lr in limit_ranges {
        let items = lr
            .get("spec")
            .and_then(|s| s.get("limits"))
            .and_then(Value::as_array);
        for item in items.into_iter().flatten() {
            let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
            let min = resource_list(item.get("min"));
            let max = resource_list(item.get("max"));
            let ratio = resource_list(item.get("maxLimitRequestRatio"));
            match ty {
                "Container" => {
                    for (req, lim) in &containers {
                        check(ty, &min, &max, &ratio, req, lim, &mut out);
                    }
                }
                "Pod" => {
                    let (req, lim) = pod_totals(spec);
                    check(ty, &min, &max, &ratio, &req, &lim, &mut out);
                }
                _ => {}
            }
        }
    }
    out
}

/// A pod's requests and limits: the sum over its containers, or the largest init
/// container's when that is more, since init containers run one at a time.
fn pod_totals(spec: &Value) -> (ResourceList, ResourceList) {
    let mut totals = (ResourceList::new(), ResourceList::new());
    let lists = |c: &Value, k: &str| resource_list(c.get("resources").and_then(|r| r.get(k)));
    for c in spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, q) in lists(c, "requests") {
            add(&mut totals.0, k, q);
        }
        for (k, q) in lists(c, "limits") {
            add(&mut totals.1, k, q);
        }
    }
    for c in spec
        .get("initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, q) in lists(c, "requests") {
            take_max(&mut totals.0, k, q);
        }
        for (k, q) in lists(c, "limits") {
            take_max(&mut totals.1, k, q);
        }
    }
    totals
}

fn add(list: &mut ResourceList, k: String, q: Quantity) {
    let sum = match list.get(&k) {
        Some(existing) => existing.checked_add(&q).unwrap_or(*existing),
        None => q,
    };
    list.insert(k, sum);
}

fn take_max(list: &mut ResourceList, k: String, q: Quantity) {
    if list.get(&k).is_none_or(|e| q > *e) {
        list.insert(k, q);
    }
}

fn check(
    ty: &str,
    min: &ResourceList,
    max: &ResourceList,
    ratio: &ResourceList,
    req: &ResourceList,
    lim: &ResourceList,
    out: &mut Vec<String>,
) {
    for (k, enforced) in min {
        match (req.get(k), lim.get(k)) {
            (None, _) => out.push(format!(
                "minimum {k} usage per {ty} is {enforced}.  No request is specified"
            )),
            (Some(r), _) if r < enforced => out.push(format!(
                "minimum {k} usage per {ty} is {enforced}, but request is {r}"
            )),
            (_, Some(l)) if l < enforced => out.push(format!(
                "minimum {k} usage per {ty} is {enforced}, but limit is {l}"
            )),
            _ => {}
        }
    }
    for (k, enforced) in max {
        match (req.get(k), lim.get(k)) {
            (_, None) => out.push(format!(
                "maximum {k} usage per {ty} is {enforced}.  No limit is specified"
            )),
            (_, Some(l)) if l > enforced => out.push(format!(
                "maximum {k} usage per {ty} is {enforced}, but limit is {l}"
            )),
            (Some(r), _) if r > enforced => out.push(format!(
                "maximum {k} usage per {ty} is {enforced}, but request is {r}"
            )),
            _ => {}
        }
    }
    for (k, enforced) in ratio {
        let r = req.get(k).filter(|q| !q.is_zero());
        let l = lim.get(k).filter(|q| !q.is_zero());
        match (r, l) {
            (None, _) => out.push(format!(
                "{k} max limit to request ratio per {ty} is {enforced}, but no request is specified or request is 0"
            )),
            (_, None) => out.push(format!(
                "{k} max limit to request ratio per {ty} is {enforced}, but no limit is specified or limit is 0"
            )),
            (Some(r), Some(l)) => {
                let observed = l.nanos() as f64 / r.nanos() as f64;
                let allowed = enforced.nanos() as f64 / 1e9;
                if observed > allowed {
                    out.push(format!(
                        "{k} max limit to request ratio per {ty} is {enforced}, but provided ratio is {observed:.6}"
                    ));
                }
            }
        }
    }
}
