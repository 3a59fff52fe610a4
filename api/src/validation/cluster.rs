//! Namespaces, Nodes, ResourceQuotas, LimitRanges, Leases and HorizontalPodAutoscalers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::json::{arr, int_at, obj, str_at, str_or_empty};
use super::meta::{validate_finalizer_name, validate_label_selector};
use super::names::{is_qualified_name, is_valid_cidr, is_valid_label_value};
use super::pod::{
    is_native_resource, is_overcommit_allowed, parse_quantity, validate_resource_name,
};
use super::quantity::Quantity;
use super::{FieldError, Path};

/// Validates a Namespace (its name rule is checked with the metadata).
pub(crate) fn validate_namespace(obj_value: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    for f in arr(spec, "finalizers") {
        validate_finalizer_name(
            f.as_str().unwrap_or(""),
            &Path::new("spec").child("finalizers"),
            errs,
        );
    }
}

/// Validates a Node; on update, podCIDRs and providerID may only be set once.
pub(crate) fn validate_node(obj_value: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        // Kubernetes reports taints under metadata.taints.
        let p = Path::new("metadata").child("taints").index(i);
        let key = str_or_empty(t, "key");
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid_str(p.child("key"), key, m));
        }
        let value = str_or_empty(t, "value");
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid_str(
                p.child("value"),
                value,
                msgs.join(";"),
            ));
        }
        let effect = str_or_empty(t, "effect");
        match effect {
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            "" => errs.push(FieldError::required(p.child("effect"), "")),
            other => errs.push(FieldError::not_supported(
                p.child("effect"),
                &Value::from(other),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        if !seen.insert((key, effect)) {
            errs.push(
                FieldError::duplicate(&p, t)
                    .with_detail("taints must be unique by key and effect pair"),
            );
        }
    }
    let cidrs = arr(spec, "podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        let c = c.as_str().unwrap_or("");
        for m in is_valid_cidr(c) {
            errs.push(FieldError::invalid_str(
                Path::new("spec").child("podCIDRs").index(i),
                c,
                m,
            ));
        }
    }
    let status = obj_value.get("status").unwrap_or(&Value::Null);
    for list in ["capacity", "allocatable"] {
        if let Some(m) = obj(status, list) {
            for (k, v) in m {
                parse_quantity(v, &Path::new("status").child(list).child(k), errs);
            }
        }
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let old_cidrs = arr(old_spec, "podCIDRs");
        if !old_cidrs.is_empty() && old_cidrs != cidrs {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("podCIDRs"),
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = str_or_empty(old_spec, "providerID");
        if !old_provider.is_empty() && old_provider != str_or_empty(spec, "providerID") {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
}

/// Quota resource names Kubernetes knows without a domain.
const STANDARD_QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Quota resources that count objects and so must be whole numbers.
const INTEGER_QUOTA_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_integer_resource(name: &str) -> bool {
    INTEGER_QUOTA_RESOURCES.contains(&name)
        || name.starts_with("count/")
        || !is_native_resource(name)
}

fn validate_quota_list(
    list: Option<&serde_json::Map<String, Value>>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let Some(list) = list else { return };
    for (k, v) in list {
        let p = path.key(k);
        validate_resource_name(k, &p, errs);
        if !k.contains('/')
            && !STANDARD_QUOTA_RESOURCES.contains(&k.as_str())
            && !k.starts_with("hugepages-")
            && !k.starts_with("requests.hugepages-")
        {
            errs.push(FieldError::invalid_str(
                &p,
                k,
                "must be a standard resource for quota",
            ));
        }
        if let Some(q) = parse_quantity(v, &p, errs) {
            if is_integer_resource(k) && !q.is_integer() {
                errs.push(FieldError::invalid_str(
                    &p,
                    &q.canonical(),
                    "must be an integer",
                ));
            }
        }
    }
}

const QUOTA_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// Validates a ResourceQuota; on update its scopes may not change.
pub(crate) fn validate_resource_quota(
    obj_value: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    validate_quota_list(obj(spec, "hard"), &Path::new("spec").child("hard"), errs);
    let status = obj_value.get("status").unwrap_or(&Value::Null);
    validate_quota_list(
        obj(status, "hard"),
        &Path::new("status").child("hard"),
        errs,
    );
    validate_quota_list(
        obj(status, "used"),
        &Path::new("status").child("used"),
        errs,
    );
    let scopes: Vec<&str> = arr(spec, "scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let sp = Path::new("spec").child("scopes");
    for s in &scopes {
        if !QUOTA_SCOPES.contains(s) {
            errs.push(FieldError::invalid(
                &sp,
                spec.get("scopes").unwrap_or(&Value::Null),
                "unsupported scope",
            ));
        }
    }
    for (a, b) in [
        ("BestEffort", "NotBestEffort"),
        ("Terminating", "NotTerminating"),
    ] {
        if scopes.contains(&a) && scopes.contains(&b) {
            errs.push(FieldError::invalid(
                &sp,
                spec.get("scopes").unwrap_or(&Value::Null),
                "conflicting scopes",
            ));
        }
    }
    if let Some(old) = old {
        let old_scopes: BTreeSet<&str> = old
            .get("spec")
            .map(|s| arr(s, "scopes").iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let new_scopes: BTreeSet<&str> = scopes.iter().copied().collect();
        if old_scopes != new_scopes {
            errs.push(FieldError::invalid(
                &sp,
                spec.get("scopes").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    }
}

/// Validates a LimitRange: types, resource names, and min ≤ default ≤ max.
pub(crate) fn validate_limit_range(obj_value: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec").child("limits");
    let mut types = BTreeSet::new();
    for (i, item) in arr(spec, "limits").iter().enumerate() {
        let p = path.index(i);
        let ty = str_or_empty(item, "type");
        let before = errs.len();
        for m in is_qualified_name(ty) {
            errs.push(FieldError::invalid_str(p.child("type"), ty, m));
        }
        if errs.len() == before
            && !ty.contains('/')
            && !matches!(ty, "Pod" | "Container" | "PersistentVolumeClaim")
        {
            errs.push(FieldError::invalid_str(
                p.child("type"),
                ty,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(ty) {
            errs.push(FieldError::duplicate(p.child("type"), &Value::from(ty)));
        }
        let mut lists: BTreeMap<&str, BTreeMap<String, Quantity>> = BTreeMap::new();
        for field in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            let Some(m) = obj(item, field) else { continue };
            if ty == "Pod" && (field == "default" || field == "defaultRequest") {
                if !m.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child(field),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
                continue;
            }
            for (k, v) in m {
                let kp = p.child(field).key(k);
                if matches!(ty, "Pod" | "Container")
                    && !k.contains('/')
                    && !matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    && !k.starts_with("hugepages-")
                {
                    validate_resource_name(k, &kp, errs);
                    errs.push(FieldError::invalid_str(
                        &kp,
                        k,
                        "must be a standard resource for containers",
                    ));
                } else {
                    validate_resource_name(k, &kp, errs);
                }
                if let Some(q) = parse_quantity(v, &kp, errs) {
                    lists.entry(field).or_default().insert(k.clone(), q);
                }
            }
        }
        if ty == "PersistentVolumeClaim" {
            let has_storage = |f: &str| obj(item, f).is_some_and(|m| m.contains_key("storage"));
            if !has_storage("min") && !has_storage("max") {
                errs.push(FieldError::required(
                    p.child("limits"),
                    "either minimum or maximum storage value is required, but neither was provided",
                ));
            }
        }
        let keys: BTreeSet<String> = lists.values().flat_map(|m| m.keys().cloned()).collect();
        let get = |f: &str, k: &str| lists.get(f).and_then(|m| m.get(k)).copied();
        for k in keys {
            let (min, max, def, def_req, ratio) = (
                get("min", &k),
                get("max", &k),
                get("default", &k),
                get("defaultRequest", &k),
                get("maxLimitRequestRatio", &k),
            );
            let inv = |field: &str, q: &Quantity, msg: String| {
                FieldError::invalid_str(p.child(field).key(&k), &q.canonical(), msg)
            };
            if let (Some(mn), Some(mx)) = (min, max) {
                if mn > mx {
                    errs.push(inv(
                        "min",
                        &mn,
                        format!("min value {mn} is greater than max value {mx}"),
                    ));
                }
            }
            if let (Some(dr), Some(mn)) = (def_req, min) {
                if mn > dr {
                    errs.push(inv(
                        "defaultRequest",
                        &dr,
                        format!("min value {mn} is greater than default request value {dr}"),
                    ));
                }
            }
            if let (Some(dr), Some(mx)) = (def_req, max) {
                if dr > mx {
                    errs.push(inv(
                        "defaultRequest",
                        &dr,
                        format!("default request value {dr} is greater than max value {mx}"),
                    ));
                }
            }
            if let (Some(dr), Some(d)) = (def_req, def) {
                if dr > d {
                    errs.push(inv(
                        "defaultRequest",
                        &dr,
                        format!(
                            "default request value {dr} is greater than default limit value {d}"
                        ),
                    ));
                }
            }
            if let (Some(d), Some(mn)) = (def, min) {
                if mn > d {
                    errs.push(inv(
                        "default",
                        &mn,
                        format!("min value {mn} is greater than default value {d}"),
                    ));
                }
            }
            if let (Some(d), Some(mx)) = (def, max) {
                if d > mx {
                    errs.push(inv(
                        "default",
                        &mx,
                        format!("default value {d} is greater than max value {mx}"),
                    ));
                }
            }
            if let Some(r) = ratio {
                if r.nanos() < 1_000_000_000 {
                    errs.push(inv(
                        "maxLimitRequestRatio",
                        &r,
                        format!("ratio {r} is less than 1"),
                    ));
                }
            }
            if let (Some(d), Some(dr)) = (def, def_req) {
                if !is_overcommit_allowed(&k) && d != dr {
                    errs.push(inv(
                        "defaultRequest",
                        &dr,
                        format!("default value {d} must equal to defaultRequest value {dr} in {k}"),
                    ));
                }
            }
        }
    }
}

/// Validates a Lease.
pub(crate) fn validate_lease(obj_value: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    if let Some(d) = int_at(spec, "leaseDurationSeconds") {
        if d <= 0 {
            errs.push(FieldError::invalid(
                path.child("leaseDurationSeconds"),
                &Value::from(d),
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = int_at(spec, "leaseTransitions") {
        if t < 0 {
            errs.push(FieldError::invalid(
                path.child("leaseTransitions"),
                &Value::from(t),
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(s) = str_at(spec, "strategy") {
        if s != "OldestEmulationVersion" {
            errs.push(FieldError::not_supported(
                path.child("strategy"),
                &Value::from(s),
                &["OldestEmulationVersion"],
            ));
        }
    }
}

/// A path segment name as Kubernetes' `IsValidPathSegmentName` checks it.
fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// Validates an autoscaling/v2 HorizontalPodAutoscaler.
pub(crate) fn validate_hpa(obj_value: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    let target = spec.get("scaleTargetRef").unwrap_or(&Value::Null);
    let tp = path.child("scaleTargetRef");
    for f in ["kind", "name"] {
        let v = str_or_empty(target, f);
        if v.is_empty() {
            errs.push(FieldError::required(tp.child(f), ""));
        } else {
            for m in path_segment_errors(v) {
                errs.push(FieldError::invalid_str(tp.child(f), v, m));
            }
        }
    }
    let min = int_at(spec, "minReplicas");
    if let Some(m) = min {
        if m < 1 {
            errs.push(FieldError::invalid(
                path.child("minReplicas"),
                &Value::from(m),
                "must be greater than or equal to 1",
            ));
        }
    }
    let max = int_at(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            path.child("maxReplicas"),
            &Value::from(max),
            "must be greater than 0",
        ));
    }
    if max < min.unwrap_or(1) {
        errs.push(FieldError::invalid(
            path.child("maxReplicas"),
            &Value::from(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    for (i, metric) in arr(spec, "metrics").iter().enumerate() {
        validate_metric(metric, &path.child("metrics").index(i), errs);
    }
    if let Some(behavior) = spec.get("behavior").filter(|v| !v.is_null()) {
        for dir in ["scaleUp", "scaleDown"] {
            let Some(rules) = behavior.get(dir).filter(|v| !v.is_null()) else {
                continue;
            };
            let rp = path.child("behavior").child(dir);
            if let Some(w) = int_at(rules, "stabilizationWindowSeconds") {
                if !(0..=3600).contains(&w) {
                    errs.push(FieldError::invalid(
                        rp.child("stabilizationWindowSeconds"),
                        &Value::from(w),
                        "must be less than or equal to 3600",
                    ));
                }
            }
            if let Some(sp) = str_at(rules, "selectPolicy") {
                if !matches!(sp, "Disabled" | "Max" | "Min") {
                    errs.push(FieldError::not_supported(
                        rp.child("selectPolicy"),
                        &Value::from(sp),
                        &["Disabled", "Max", "Min"],
                    ));
                }
            }
            for (j, policy) in arr(rules, "policies").iter().enumerate() {
                let pp = rp.child("policies").index(j);
                let ty = str_or_empty(policy, "type");
                if !matches!(ty, "Pods" | "Percent") {
                    errs.push(FieldError::invalid_str(
                        pp.child("type"),
                        ty,
                        "must be either Pods or Percent",
                    ));
                }
                if int_at(policy, "value").unwrap_or(0) <= 0 {
                    errs.push(FieldError::invalid(
                        pp.child("value"),
                        policy.get("value").unwrap_or(&Value::Null),
                        "must be greater than zero",
                    ));
                }
                let period = int_at(policy, "periodSeconds").unwrap_or(0);
                if period <= 0 || period > 1800 {
                    errs.push(FieldError::invalid(
                        pp.child("periodSeconds"),
                        &Value::from(period),
                        "must be greater than zero and less than or equal to 1800",
                    ));
                }
            }
        }
    }
}

fn validate_metric(metric: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let ty = str_or_empty(metric, "type");
    let expected = match ty {
        "" => {
            errs.push(FieldError::required(
                path.child("type"),
                "must specify a metric source type",
            ));
            return;
        }
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "External" => "external",
        other => {
            errs.push(FieldError::invalid_str(
                path.child("type"),
                other,
                "unknown metric source type",
            ));
            return;
        }
    };
    let present: Vec<&str> = [
        "object",
        "pods",
        "resource",
        "containerResource",
        "external",
    ]
    .into_iter()
    .filter(|f| metric.get(*f).is_some_and(|v| !v.is_null()))
    .collect();
    if present.len() > 1 {
        for f in present.iter().filter(|f| **f != expected) {
            errs.push(FieldError::forbidden(
                path.child(f),
                "must populate the given metric source only",
            ));
        }
    }
    let Some(src) = metric.get(expected).filter(|v| !v.is_null()) else {
        errs.push(FieldError::required(
            path.child(expected),
            "must populate information for the given metric source",
        ));
        return;
    };
    let sp = path.child(expected);
    if matches!(expected, "resource" | "containerResource") && str_or_empty(src, "name").is_empty()
    {
        errs.push(FieldError::required(
            sp.child("name"),
            "must specify a resource name",
        ));
    }
    if expected == "containerResource" && str_or_empty(src, "container").is_empty() {
        errs.push(FieldError::required(
            sp.child("container"),
            "must specify a container",
        ));
    }
    if matches!(expected, "object" | "pods" | "external") {
        let m = src.get("metric").unwrap_or(&Value::Null);
        if str_or_empty(m, "name").is_empty() {
            errs.push(FieldError::required(
                sp.child("metric").child("name"),
                "must specify a metric name",
            ));
        }
        if let Some(sel) = m.get("selector").filter(|v| !v.is_null()) {
            validate_label_selector(sel, &sp.child("metric").child("selector"), errs);
        }
    }
    let target = src.get("target").unwrap_or(&Value::Null);
    let tp = sp.child("target");
    match str_or_empty(target, "type") {
        "" => errs.push(FieldError::required(
            tp.child("type"),
            "must specify a metric target type",
        )),
        "Utilization" | "Value" | "AverageValue" => {}
        other => errs.push(FieldError::invalid_str(
            tp.child("type"),
            other,
            "must be either Utilization, Value, or AverageValue",
        )),
    }
    if let Some(u) = int_at(target, "averageUtilization") {
        if u <= 0 {
            errs.push(FieldError::invalid(
                tp.child("averageUtilization"),
                &Value::from(u),
                "must be greater than 0",
            ));
        }
    }
    for f in ["value", "averageValue"] {
        if let Some(v) = target.get(f).filter(|v| !v.is_null()) {
            if let Some(q) = parse_quantity(v, &tp.child(f), errs) {
                if q.is_zero() {
                    errs.push(FieldError::invalid(tp.child(f), v, "must be positive"));
                }
            }
        }
    }
}
