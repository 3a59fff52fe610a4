//! Defaulting as Kubernetes' API server does it (`pkg/apis/*/v1/defaults.go`, plus the
//! admission plugins that fill pods: ServiceAccount, Priority, DefaultTolerationSeconds,
//! LimitRanger), so that `kubectl get -o yaml` shows the same object on skiff.
//!
//! Defaults only fill what is absent (or null): they never change a value the user set,
//! though they may append to a list (a namespace's finalizers, a pod's tolerations).
//! [`normalize`] is separate: it rewrites values into the form Kubernetes stores.

mod limit_range;
mod normalize;
mod pod;

use serde_json::{json, Map, Value};

use crate::validation::batch::{CONTROLLER_UID_LABEL, JOB_NAME_LABEL};

pub use limit_range::{
    apply_limit_range_defaults, limit_range_violations, LIMIT_RANGER_ANNOTATION,
};
pub use normalize::normalize;
pub use pod::pull_policy_for;

/// The label Kubernetes puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The label on Job pods from before Kubernetes 1.27, still set.
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The job-name label from before Kubernetes 1.27, still set.
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Sets `key` to `value` when absent or null.
pub(crate) fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// The object at `key`, created empty when absent or null; `None` if something else is
/// there (a type error the decoder would have caught).
pub(crate) fn ensure_obj<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), Value::Object(Map::new()));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key` if there is one; never creates it.
pub(crate) fn child<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Whether a map field is absent, null or empty, which Go does not tell apart.
pub(crate) fn unset_or_empty_map(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    }
}

/// Whether a list field is absent, null or empty, which Go does not tell apart.
pub(crate) fn unset_or_empty_list(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The list at `key` if there is one.
pub(crate) fn list<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Vec<Value>> {
    m.get_mut(key).and_then(Value::as_array_mut)
}

/// Fills the defaults Kubernetes fills for an object of `kind` (`Deployment`) on create.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    match kind {
        "Pod" => {
            if let Some(spec) = child(o, "spec") {
                pod::pod_spec(spec, true);
            }
        }
        "Deployment" => deployment(o),
        "ReplicaSet" => {
            if let Some(spec) = child(o, "spec") {
                set_default(spec, "replicas", json!(1));
                template(spec);
            }
        }
        "DaemonSet" => daemon_set(o),
        "StatefulSet" => stateful_set(o),
        "Job" => job(o),
        "CronJob" => cron_job(o),
        "Service" => service(o),
        "Namespace" => namespace(o),
        "Secret" => set_default(o, "type", json!("Opaque")),
        "PersistentVolumeClaim" => {
            if let Some(spec) = child(o, "spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(status) = ensure_obj(o, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
        "PersistentVolume" => persistent_volume(o),
        "HorizontalPodAutoscaler" => hpa(o),
        "Node" => node(o),
        "Endpoints" => {
            for ss in list(o, "subsets").into_iter().flatten() {
                let ports = ss.as_object_mut().and_then(|m| list(m, "ports"));
                for p in ports.into_iter().flatten().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
        "EndpointSlice" => {
            for p in list(o, "ports")
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                set_default(p, "name", json!(""));
                set_default(p, "protocol", json!("TCP"));
            }
        }
        "IngressClass" => {
            let params = child(o, "spec").and_then(|s| child(s, "parameters"));
            if let Some(p) = params {
                set_default(p, "scope", json!("Cluster"));
            }
        }
        "LimitRange" => {
            let limits = child(o, "spec").and_then(|s| list(s, "limits"));
            for item in limits
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                limit_range::default_limit_range_item(item);
            }
        }
        _ => {}
    }
}

/// Defaults the pod template at `spec.template` of a workload.
fn template(spec: &mut Map<String, Value>) {
    if let Some(pod_spec) = child(spec, "template").and_then(|t| child(t, "spec")) {
        pod::pod_spec(pod_spec, false);
    }
}

fn deployment(o: &mut Map<String, Value>) {
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "replicas", json!(1));
    if let Some(strategy) = ensure_obj(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = ensure_obj(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    template(spec);
}

fn daemon_set(o: &mut Map<String, Value>) {
    let Some(spec) = child(o, "spec") else { return };
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = ensure_obj(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    template(spec);
}

fn stateful_set(o: &mut Map<String, Value>) {
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        // Kubernetes creates rollingUpdate only when it defaults the type itself.
        if strategy.get("type").is_none_or(Value::is_null) {
            strategy.insert("type".to_string(), json!("RollingUpdate"));
            set_default(strategy, "rollingUpdate", json!({}));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = child(strategy, "rollingUpdate") {
                set_default(ru, "partition", json!(0));
            }
        }
    }
    if let Some(policy) = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        set_default(policy, "whenDeleted", json!("Retain"));
        set_default(policy, "whenScaled", json!("Retain"));
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    for claim in list(spec, "volumeClaimTemplates")
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        // Kubernetes serializes the embedded claims with their type and status.
        set_default(claim, "apiVersion", json!("v1"));
        set_default(claim, "kind", json!("PersistentVolumeClaim"));
        if let Some(cs) = child(claim, "spec") {
            set_default(cs, "volumeMode", json!("Filesystem"));
        }
        if let Some(status) = ensure_obj(claim, "status") {
            set_default(status, "phase", json!("Pending"));
        }
    }
    template(spec);
}

fn job(o: &mut Map<String, Value>) {
    let template_labels = o
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let Some(spec) = child(o, "spec") else { return };
    job_spec(spec);
    template(spec);
    copy_template_labels(o, template_labels);
}

/// A Job without labels takes its pod template's labels, as Kubernetes' defaulting.
fn copy_template_labels(o: &mut Map<String, Value>, labels: Option<Value>) {
    let Some(labels) = labels else { return };
    let Some(meta) = ensure_obj(o, "metadata") else {
        return;
    };
    if unset_or_empty_map(meta.get("labels")) {
        meta.insert("labels".to_string(), labels);
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    let unset = |spec: &Map<String, Value>, k: &str| spec.get(k).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".to_string(), json!(1));
        spec.insert("parallelism".to_string(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if unset(spec, "backoffLimitPerIndex") {
        6
    } else {
        i64::from(i32::MAX)
    };
    set_default(spec, "backoffLimit", json!(backoff));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let replacement = if unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
}

fn cron_job(o: &mut Map<String, Value>) {
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = child(spec, "jobTemplate").and_then(|t| child(t, "spec")) {
        template(job_spec);
    }
}

/// Adds the generated Job selector and pod labels, which need the Job's uid: the server
/// calls this after assigning the uid, unless `spec.manualSelector` is true.
pub fn default_job_selector(obj: &mut Value, uid: &str) {
    let Some(o) = obj.as_object_mut() else { return };
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(spec) = child(o, "spec") else { return };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(labels) = ensure_obj(spec, "template")
        .and_then(|t| ensure_obj(t, "metadata"))
        .and_then(|m| ensure_obj(m, "labels"))
    else {
        return;
    };
    // Labels the user set are kept; a conflict is then reported by validation.
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        set_default(labels, key, json!(name));
    }
    for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
        set_default(labels, key, json!(uid));
    }
    let labels = Value::Object(labels.clone());
    if let Some(ml) = ensure_obj(spec, "selector").and_then(|s| ensure_obj(s, "matchLabels")) {
        set_default(ml, CONTROLLER_UID_LABEL, json!(uid));
    }
    // Kubernetes re-defaults on read, so a Job stored without labels shows these.
    copy_template_labels(o, Some(labels));
}

fn service(o: &mut Map<String, Value>) {
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        let timeout = spec
            .get("sessionAffinityConfig")
            .and_then(|c| c.get("clientIP"))
            .and_then(|c| c.get("timeoutSeconds"))
            .is_some_and(|t| !t.is_null());
        if !timeout {
            if let Some(cip) =
                ensure_obj(spec, "sessionAffinityConfig").and_then(|c| ensure_obj(c, "clientIP"))
            {
                cip.insert("timeoutSeconds".to_string(), json!(10800));
            }
        }
    }
    for port in list(spec, "ports")
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        set_default(port, "protocol", json!("TCP"));
        // Kubernetes also treats an explicit 0 or "" as unset; skiff keeps what the
        // user wrote, and validation reports it.
        if port.get("targetPort").is_none_or(Value::is_null) {
            if let Some(p) = port.get("port").cloned() {
                port.insert("targetPort".to_string(), p);
            }
        }
    }
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") || (ty == "ClusterIP" && has_external_ips)
    {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        // The allocator keeps clusterIPs in step with clusterIP and picks the IP
        // families; skiff's cluster is single-stack IPv4.
        if let Some(ip) = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let ip = ip.to_string();
            set_default(spec, "clusterIPs", json!([ip]));
        }
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        let selectorless = spec
            .get("selector")
            .is_none_or(|s| s.as_object().is_none_or(Map::is_empty));
        let policy = if headless && selectorless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        set_default(spec, "ipFamilyPolicy", json!(policy));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
}

fn namespace(o: &mut Map<String, Value>) {
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        if let Some(labels) = ensure_obj(o, "metadata").and_then(|m| ensure_obj(m, "labels")) {
            set_default(labels, NAMESPACE_NAME_LABEL, json!(name));
        }
    }
    if let Some(spec) = ensure_obj(o, "spec") {
        // Namespace deletion waits on this finalizer; Kubernetes always adds it.
        match spec.get_mut("finalizers") {
            Some(Value::Array(f)) => {
                if !f.iter().any(|x| x.as_str() == Some("kubernetes")) {
                    f.push(json!("kubernetes"));
                }
            }
            None | Some(Value::Null) => {
                spec.insert("finalizers".to_string(), json!(["kubernetes"]));
            }
            Some(_) => {}
        }
    }
    if let Some(status) = ensure_obj(o, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

fn persistent_volume(o: &mut Map<String, Value>) {
    if let Some(spec) = child(o, "spec") {
        set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_default(spec, "volumeMode", json!("Filesystem"));
        if let Some(hp) = child(spec, "hostPath") {
            set_default(hp, "type", json!(""));
        }
    }
    if let Some(status) = ensure_obj(o, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

fn hpa(o: &mut Map<String, Value>) {
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "minReplicas", json!(1));
    let no_metrics = unset_or_empty_list(spec.get("metrics"));
    if no_metrics {
        spec.insert(
            "metrics".to_string(),
            json!([{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
            }]),
        );
    }
    // Behavior is filled only when the user gave one, as Kubernetes does.
    let Some(behavior) = child(spec, "behavior") else {
        return;
    };
    let defaults = [
        (
            "scaleUp",
            0,
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
        (
            "scaleDown",
            300,
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
    ];
    for (dir, window, policies) in defaults {
        if let Some(rules) = ensure_obj(behavior, dir) {
            set_default(rules, "stabilizationWindowSeconds", json!(window));
            set_default(rules, "selectPolicy", json!("Max"));
            let empty = unset_or_empty_list(rules.get("policies"));
            if empty {
                rules.insert("policies".to_string(), policies);
            }
        }
    }
}

fn node(o: &mut Map<String, Value>) {
    let Some(status) = child(o, "status") else {
        return;
    };
    if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
        set_default(status, "allocatable", cap);
    }
}

#[cfg(test)]
mod tests;
