//! apps/v1: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision.

use serde_json::Value;

use super::json::{arr, has, int_at, str_at, str_or_empty};
use super::meta::{
    immutable, non_negative, selector_is_empty, selector_matches, validate_label_selector,
};
use super::names::{is_dns1123_label, is_valid_percent};
use super::pod::{
    effective_restart_policy, template_labels, template_labels_value, validate_pod_template, PodCtx,
};
use super::{FieldError, Path};

/// Checks a workload's selector (required, valid, non-empty) and that the template's
/// labels match it; `what` names the kind in Kubernetes' message.
pub(crate) fn validate_selector_and_template_labels(
    spec: &Value,
    path: &Path,
    what: &str,
    errs: &mut Vec<FieldError>,
) {
    let template = spec.get("template").unwrap_or(&Value::Null);
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required(path.child("selector"), "")),
        Some(sel) => {
            validate_label_selector(sel, &path.child("selector"), errs);
            if selector_is_empty(sel) {
                errs.push(FieldError::invalid(
                    path.child("selector"),
                    sel,
                    format!("empty selector is invalid for {what}"),
                ));
            } else if !selector_matches(sel, template_labels(template)) {
                errs.push(FieldError::invalid(
                    path.child("template").child("metadata").child("labels"),
                    &template_labels_value(template),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

/// Validates a template whose pods must always restart (all apps/v1 workloads).
fn validate_always_restart_template(
    spec: &Value,
    path: &Path,
    ctx: &PodCtx,
    owner: &str,
    errs: &mut Vec<FieldError>,
) {
    let template = spec.get("template").unwrap_or(&Value::Null);
    let tpath = path.child("template");
    validate_pod_template(template, &tpath, ctx, errs);
    let pod_spec = template.get("spec").unwrap_or(&Value::Null);
    let restart = effective_restart_policy(pod_spec);
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            tpath.child("spec").child("restartPolicy"),
            &Value::from(restart),
            &["Always"],
        ));
    }
    if has(pod_spec, "activeDeadlineSeconds") {
        errs.push(FieldError::forbidden(
            tpath.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
}

/// The value of an int-or-percent: the number, or the percentage's number.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.trim_end_matches('%').parse().unwrap_or(0),
        Some(v) => v.as_i64().unwrap_or(0),
        None => 0,
    }
}

fn is_percent_over_100(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(s)) if is_valid_percent(s).is_empty() && int_or_percent_value(v) > 100)
}

fn validate_int_or_percent(v: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    match v {
        Some(Value::String(s)) => {
            for m in is_valid_percent(s) {
                errs.push(FieldError::invalid_str(path, s, m));
            }
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
            errs.push(FieldError::invalid(
                path,
                &Value::Number(n.clone()),
                "must be greater than or equal to 0",
            ));
        }
        _ => {}
    }
}

/// Validates a Deployment.
pub(crate) fn validate_deployment(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    non_negative(spec, "replicas", &path, errs);
    validate_selector_and_template_labels(spec, &path, "deployment", errs);
    validate_always_restart_template(spec, &path, &PodCtx::default(), "ReplicaSet", errs);
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    let sp = path.child("strategy");
    match str_at(strategy, "type").unwrap_or("RollingUpdate") {
        "Recreate" => {
            if has(strategy, "rollingUpdate") {
                errs.push(FieldError::forbidden(
                    sp.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
                let rp = sp.child("rollingUpdate");
                let mu = ru.get("maxUnavailable").filter(|v| !v.is_null());
                let ms = ru.get("maxSurge").filter(|v| !v.is_null());
                validate_int_or_percent(mu, &rp.child("maxUnavailable"), errs);
                validate_int_or_percent(ms, &rp.child("maxSurge"), errs);
                // Unset values are defaulted to 25%, so only explicit zeros count.
                let mu_zero = mu.is_some() && int_or_percent_value(mu) == 0;
                let ms_zero = ms.is_some() && int_or_percent_value(ms) == 0;
                if mu_zero && ms_zero {
                    errs.push(FieldError::invalid(
                        rp.child("maxUnavailable"),
                        mu.unwrap_or(&Value::Null),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if is_percent_over_100(mu) {
                    errs.push(FieldError::invalid(
                        rp.child("maxUnavailable"),
                        mu.unwrap_or(&Value::Null),
                        "must not be greater than 100%",
                    ));
                }
            }
        }
        _ => errs.push(FieldError::not_supported(
            &sp,
            strategy,
            &["Recreate", "RollingUpdate"],
        )),
    }
    non_negative(spec, "minReadySeconds", &path, errs);
    non_negative(spec, "revisionHistoryLimit", &path, errs);
    if let Some(pds) = int_at(spec, "progressDeadlineSeconds") {
        non_negative(spec, "progressDeadlineSeconds", &path, errs);
        if pds <= int_at(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid(
                path.child("progressDeadlineSeconds"),
                &Value::from(pds),
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        immutable_selector(spec, old, &path, errs);
    }
}

/// apps/v1 forbids changing a workload's selector.
fn immutable_selector(spec: &Value, old: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    immutable(
        spec.get("selector"),
        old_spec.get("selector"),
        &path.child("selector"),
        errs,
    );
}

/// Validates a ReplicaSet.
pub(crate) fn validate_replica_set(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    non_negative(spec, "replicas", &path, errs);
    non_negative(spec, "minReadySeconds", &path, errs);
    // Kubernetes says "deployment" here too.
    validate_selector_and_template_labels(spec, &path, "deployment", errs);
    validate_always_restart_template(spec, &path, &PodCtx::default(), "ReplicaSet", errs);
    if let Some(old) = old {
        immutable_selector(spec, old, &path, errs);
    }
}

/// Validates a DaemonSet.
pub(crate) fn validate_daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    validate_selector_and_template_labels(spec, &path, "daemonset", errs);
    validate_always_restart_template(spec, &path, &PodCtx::default(), "DaemonSet", errs);
    non_negative(spec, "minReadySeconds", &path, errs);
    non_negative(spec, "revisionHistoryLimit", &path, errs);
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    let sp = path.child("updateStrategy");
    match str_at(strategy, "type").unwrap_or("RollingUpdate") {
        "OnDelete" => {}
        "RollingUpdate" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
                let rp = sp.child("rollingUpdate");
                // Unset values are defaulted to maxUnavailable 1, maxSurge 0.
                let mu = ru.get("maxUnavailable").filter(|v| !v.is_null());
                let ms = ru.get("maxSurge").filter(|v| !v.is_null());
                validate_int_or_percent(mu, &rp.child("maxUnavailable"), errs);
                validate_int_or_percent(ms, &rp.child("maxSurge"), errs);
                for (v, name) in [(mu, "maxUnavailable"), (ms, "maxSurge")] {
                    if is_percent_over_100(v) {
                        errs.push(FieldError::invalid(
                            rp.child(name),
                            v.unwrap_or(&Value::Null),
                            "must not be greater than 100%",
                        ));
                    }
                }
                let has_unavailable = mu.map_or(1, |v| int_or_percent_value(Some(v))) != 0;
                let has_surge = int_or_percent_value(ms) != 0;
                if has_unavailable && has_surge {
                    errs.push(FieldError::invalid(
                        rp.child("maxSurge"),
                        ms.unwrap_or(&Value::Null),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(FieldError::required(
                        rp.child("maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        }
        _ => errs.push(FieldError::not_supported(
            &sp,
            strategy,
            &["RollingUpdate", "OnDelete"],
        )),
    }
    if let Some(old) = old {
        immutable_selector(spec, old, &path, errs);
    }
}

/// Validates a StatefulSet.
pub(crate) fn validate_stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    match str_at(spec, "podManagementPolicy").unwrap_or("OrderedReady") {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(FieldError::required(path.child("podManagementPolicy"), "")),
        other => errs.push(FieldError::invalid_str(
            path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    let sp = path.child("updateStrategy");
    match str_at(strategy, "type").unwrap_or("RollingUpdate") {
        "OnDelete" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
                errs.push(FieldError::invalid(
                    sp.child("rollingUpdate"),
                    ru,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
                let rp = sp.child("rollingUpdate");
                non_negative(ru, "partition", &rp, errs);
                if let Some(mu) = ru.get("maxUnavailable").filter(|v| !v.is_null()) {
                    validate_int_or_percent(Some(mu), &rp.child("maxUnavailable"), errs);
                    if int_or_percent_value(Some(mu)) == 0 {
                        errs.push(FieldError::invalid(
                            rp.child("maxUnavailable"),
                            mu,
                            "cannot be 0",
                        ));
                    }
                    if is_percent_over_100(Some(mu)) {
                        errs.push(FieldError::invalid(
                            rp.child("maxUnavailable"),
                            mu,
                            "must not be greater than 100%",
                        ));
                    }
                }
            }
        }
        "" => errs.push(FieldError::required(&sp, "")),
        _ => errs.push(FieldError::invalid(
            &sp,
            strategy,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = spec
        .get("persistentVolumeClaimRetentionPolicy")
        .filter(|v| !v.is_null())
    {
        let pp = path.child("persistentVolumeClaimRetentionPolicy");
        for field in ["whenDeleted", "whenScaled"] {
            let v = str_at(policy, field).unwrap_or("Retain");
            if !matches!(v, "Retain" | "Delete") {
                errs.push(FieldError::not_supported(
                    pp.child(field),
                    &Value::from(v),
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    non_negative(spec, "replicas", &path, errs);
    non_negative(spec, "minReadySeconds", &path, errs);
    if let Some(ord) = spec.get("ordinals") {
        if let Some(start) = int_at(ord, "start") {
            if start < 0 {
                errs.push(FieldError::invalid(
                    path.child("ordinals.start"),
                    &Value::from(start),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    if let Some(svc) = str_at(spec, "serviceName").filter(|s| !s.is_empty()) {
        for m in is_dns1123_label(svc) {
            errs.push(FieldError::invalid_str(path.child("serviceName"), svc, m));
        }
    }
    validate_selector_and_template_labels(spec, &path, "statefulset", errs);
    // Containers may mount the claims of volumeClaimTemplates as volumes.
    let ctx = PodCtx {
        is_pod: false,
        extra_volumes: arr(spec, "volumeClaimTemplates")
            .iter()
            .map(|c| str_or_empty(c.get("metadata").unwrap_or(&Value::Null), "name").to_string())
            .filter(|n| !n.is_empty())
            .collect(),
    };
    validate_always_restart_template(spec, &path, &ctx, "StatefulSet", errs);
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let strip = |s: &Value| {
            let mut s = s.clone();
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
            }
            s
        };
        if strip(spec) != strip(old_spec) {
            errs.push(FieldError::forbidden(
                &path,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

/// Validates a ControllerRevision.
pub(crate) fn validate_controller_revision(
    obj: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    if !has(obj, "data") {
        errs.push(FieldError::required(Path::new("data"), "data is mandatory"));
    }
    non_negative(obj, "revision", &Path::new(""), errs);
    if let Some(old) = old {
        immutable(obj.get("data"), old.get("data"), &Path::new("data"), errs);
    }
}
