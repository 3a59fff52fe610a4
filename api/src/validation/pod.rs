//! Pods and pod templates: containers, volumes, probes, resources, scheduling fields,
//! and what a pod update may change.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::json::{arr, bool_at, has, int_at, obj, str_at, str_or_empty, string_map};
use super::meta::{validate_labels, validate_template_meta};
use super::names::{
    inclusive_range_error, is_config_map_key, is_dns1123_label, is_dns1123_subdomain,
    is_env_var_name, is_http_header_name, is_qualified_name, is_valid_ip, is_valid_label_value,
    is_valid_port_name, is_valid_port_num,
};
use super::quantity::Quantity;
use super::{skiff, FieldError, Path};

/// Options that differ between a pod and the pod template of a workload.
#[derive(Debug, Default, Clone)]
pub(crate) struct PodCtx {
    /// The spec is a real pod's, not a template's.
    pub is_pod: bool,
    /// Volume names that exist without being in `volumes` (a StatefulSet's claims).
    pub extra_volumes: Vec<String>,
}

/// Every volume source of `VolumeSource`, in the order Kubernetes checks them.
pub(crate) const ALL_VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const NEGATIVE_MSG: &str = "must be greater than or equal to 0";

/// The fields a pod update may change, as Kubernetes lists them in its message.
const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// Validates a Pod on create, or on update when `old` is given.
pub(crate) fn validate_pod(pod: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec_path = Path::new("spec");
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let ctx = PodCtx {
        is_pod: true,
        extra_volumes: Vec::new(),
    };
    validate_pod_spec(spec, &spec_path, &ctx, errs);
    for (field, list) in [
        ("containers", arr(spec, "containers")),
        ("initContainers", arr(spec, "initContainers")),
    ] {
        for (i, c) in list.iter().enumerate() {
            let image = str_or_empty(c, "image");
            if image.trim() != image {
                errs.push(FieldError::invalid_str(
                    spec_path.child(field).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match old {
        None => {
            if !arr(spec, "ephemeralContainers").is_empty() {
                errs.push(FieldError::forbidden(
                    spec_path.child("ephemeralContainers"),
                    "cannot be set on create",
                ));
            }
            if !str_or_empty(spec, "nodeName").is_empty()
                && !arr(spec, "schedulingGates").is_empty()
            {
                errs.push(FieldError::forbidden(
                    spec_path.child("nodeName"),
                    "cannot be set until all schedulingGates have been cleared",
                ));
            }
        }
        Some(old) => validate_pod_update(spec, old.get("spec").unwrap_or(&Value::Null), errs),
    }
}

/// Validates a pod template (`spec.template` of a workload) at `path`.
pub(crate) fn validate_pod_template(
    template: &Value,
    path: &Path,
    ctx: &PodCtx,
    errs: &mut Vec<FieldError>,
) {
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    validate_template_meta(meta, path, errs);
    let spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, &path.child("spec"), ctx, errs);
    if !arr(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// The restart policy of a pod spec, `Always` when unset as defaulting makes it.
pub(crate) fn effective_restart_policy(spec: &Value) -> &str {
    str_at(spec, "restartPolicy").unwrap_or("Always")
}

/// Validates a `PodSpec` at `path`.
pub(crate) fn validate_pod_spec(
    spec: &Value,
    path: &Path,
    ctx: &PodCtx,
    errs: &mut Vec<FieldError>,
) {
    skiff::check_pod_spec(spec, path, errs);
    let mut volumes = validate_volumes(arr(spec, "volumes"), &path.child("volumes"), errs);
    for v in &ctx.extra_volumes {
        volumes.insert(v.clone());
    }
    validate_containers(spec, &volumes, path, errs);
    validate_init_containers(spec, &volumes, path, errs);
    if bool_at(spec, "hostNetwork") == Some(true) {
        // A pod's host ports must equal its container ports; a template may leave them
        // unset since they are defaulted when the pod is created.
        for (i, c) in arr(spec, "containers").iter().enumerate() {
            for (j, port) in arr(c, "ports").iter().enumerate() {
                let hp = int_at(port, "hostPort").unwrap_or(0);
                let cp = int_at(port, "containerPort").unwrap_or(0);
                if (ctx.is_pod || hp != 0) && hp != cp {
                    errs.push(FieldError::invalid(
                        path.child("containers")
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("hostPort"),
                        &Value::from(hp),
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }

    let restart = effective_restart_policy(spec);
    match restart {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("restartPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("restartPolicy"),
            &Value::from(other),
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns = str_at(spec, "dnsPolicy").unwrap_or("ClusterFirst");
    match dns {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(path.child("dnsPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("dnsPolicy"),
            &Value::from(other),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    validate_dns_config(spec, dns, &path.child("dnsConfig"), errs);
    validate_labels(spec.get("nodeSelector"), &path.child("nodeSelector"), errs);
    validate_pod_security_context(spec, &path.child("securityContext"), errs);

    for (field, check) in [
        (
            "serviceAccountName",
            is_dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", is_dns1123_subdomain),
        ("hostname", is_dns1123_label),
        ("subdomain", is_dns1123_label),
        ("priorityClassName", is_dns1123_subdomain),
    ] {
        if let Some(v) = str_at(spec, field).filter(|s| !s.is_empty()) {
            for m in check(v) {
                errs.push(FieldError::invalid_str(path.child(field), v, m));
            }
        }
    }
    if let Some(v) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        let n = v.as_i64().unwrap_or(0);
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            errs.push(FieldError::invalid(
                path.child("activeDeadlineSeconds"),
                v,
                inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    validate_tolerations(arr(spec, "tolerations"), &path.child("tolerations"), errs);
    for (i, alias) in arr(spec, "hostAliases").iter().enumerate() {
        let p = path.child("hostAliases").index(i);
        let ip = str_or_empty(alias, "ip");
        for m in is_valid_ip(ip) {
            errs.push(FieldError::invalid_str(p.child("ip"), ip, m));
        }
        for (j, h) in arr(alias, "hostnames").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            for m in is_dns1123_subdomain(h) {
                errs.push(FieldError::invalid_str(p.child("hostnames").index(j), h, m));
            }
        }
    }
    validate_topology_spread(
        arr(spec, "topologySpreadConstraints"),
        &path.child("topologySpreadConstraints"),
        errs,
    );
    if let Some(pp) = str_at(spec, "preemptionPolicy") {
        if !matches!(pp, "PreemptLowerPriority" | "Never") {
            errs.push(FieldError::not_supported(
                path.child("preemptionPolicy"),
                &Value::from(pp),
                &["PreemptLowerPriority", "Never"],
            ));
        }
    }
    let mut gates = BTreeSet::new();
    for (i, g) in arr(spec, "schedulingGates").iter().enumerate() {
        let name = str_or_empty(g, "name");
        for m in is_qualified_name(name) {
            errs.push(FieldError::invalid_str(
                path.child("schedulingGates").index(i),
                name,
                m,
            ));
        }
        if !gates.insert(name) {
            errs.push(FieldError::duplicate(
                path.child("schedulingGates").index(i),
                &Value::from(name),
            ));
        }
    }
}

fn validate_dns_config(spec: &Value, policy: &str, path: &Path, errs: &mut Vec<FieldError>) {
    let cfg = spec.get("dnsConfig").filter(|v| !v.is_null());
    if policy == "None" {
        match cfg {
            None => {
                errs.push(FieldError::required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return;
            }
            Some(c) if arr(c, "nameservers").is_empty() => {
                errs.push(FieldError::required(
                    path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            _ => {}
        }
    }
    let Some(cfg) = cfg else { return };
    let ns = arr(cfg, "nameservers");
    if ns.len() > 3 {
        errs.push(FieldError::invalid(
            path.child("nameservers"),
            cfg.get("nameservers").unwrap_or(&Value::Null),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        let n = n.as_str().unwrap_or("");
        for m in is_valid_ip(n) {
            errs.push(FieldError::invalid_str(
                path.child("nameservers").index(i),
                n,
                m,
            ));
        }
    }
    let searches = arr(cfg, "searches");
    if searches.len() > 32 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            cfg.get("searches").unwrap_or(&Value::Null),
            "must not have more than 32 search paths",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        if s == "." {
            continue;
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        let ok = trimmed.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        });
        if !ok {
            for m in is_dns1123_subdomain(trimmed) {
                errs.push(FieldError::invalid_str(
                    path.child("searches").index(i),
                    trimmed,
                    m,
                ));
            }
        }
    }
    for (i, o) in arr(cfg, "options").iter().enumerate() {
        if str_or_empty(o, "name").is_empty() {
            errs.push(FieldError::required(
                path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}

fn validate_pod_security_context(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(sc) = spec.get("securityContext").filter(|v| v.is_object()) else {
        return;
    };
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(v) = sc.get(field).filter(|v| !v.is_null()) {
            let n = v.as_i64().unwrap_or(-1);
            if !(0..=0xffff_ffff).contains(&n) {
                errs.push(FieldError::invalid(
                    path.child(field),
                    v,
                    inclusive_range_error(0, 0xffff_ffff),
                ));
            }
        }
    }
    for (i, g) in arr(sc, "supplementalGroups").iter().enumerate() {
        let n = g.as_i64().unwrap_or(-1);
        if !(0..=0xffff_ffff).contains(&n) {
            errs.push(FieldError::invalid(
                path.child("supplementalGroups").index(i),
                g,
                inclusive_range_error(0, 0xffff_ffff),
            ));
        }
    }
}

fn validate_topology_spread(constraints: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        let skew = int_at(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(FieldError::invalid(
                p.child("maxSkew"),
                &Value::from(skew),
                "must be greater than zero",
            ));
        }
        if str_or_empty(c, "topologyKey").is_empty() {
            errs.push(FieldError::required(
                p.child("topologyKey"),
                "can not be empty",
            ));
        }
        let action = str_or_empty(c, "whenUnsatisfiable");
        if !matches!(action, "DoNotSchedule" | "ScheduleAnyway") {
            errs.push(FieldError::not_supported(
                p.child("whenUnsatisfiable"),
                &Value::from(action),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
    }
}

/// Validates tolerations at `path`.
pub(crate) fn validate_tolerations(tolerations: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = str_or_empty(t, "key");
        let op = str_or_empty(t, "operator");
        let effect = str_or_empty(t, "effect");
        let value = str_or_empty(t, "value");
        if !key.is_empty() {
            for m in is_qualified_name(key) {
                errs.push(FieldError::invalid_str(p.child("key"), key, m));
            }
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid_str(
                p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if has(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.push(FieldError::invalid_str(
                p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid_str(
                        p.child("operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid_str(
                        p.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                p.child("operator"),
                &Value::from(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                p.child("effect"),
                &Value::from(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

/// The volume source keys set on a volume, in Kubernetes' order.
pub(crate) fn volume_sources(vol: &Value) -> Vec<&'static str> {
    ALL_VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|s| has(vol, s))
        .collect()
}

/// Validates `volumes`, returning the names of the valid ones for volume mounts.
fn validate_volumes(
    volumes: &[Value],
    path: &Path,
    errs: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = path.index(i);
        let mut el = Vec::new();
        let name = str_or_empty(vol, "name");
        validate_volume_source(vol, &p, &mut el);
        if name.is_empty() {
            el.push(FieldError::required(p.child("name"), ""));
        } else {
            for m in is_dns1123_label(name) {
                el.push(FieldError::invalid_str(p.child("name"), name, m));
            }
        }
        if names.contains(name) {
            el.push(FieldError::duplicate(p.child("name"), &Value::from(name)));
        }
        if el.is_empty() {
            names.insert(name.to_string());
        } else {
            errs.extend(el);
        }
    }
    names
}

fn validate_volume_source(vol: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    // No source at all is defaulted to an emptyDir, so it is valid.
    for (n, source) in volume_sources(vol).into_iter().enumerate() {
        let p = path.child(source);
        if n > 0 {
            errs.push(FieldError::forbidden(
                &p,
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        let src = vol.get(source).unwrap_or(&Value::Null);
        match source {
            "emptyDir" => {
                if let Some(q) = str_at(src, "sizeLimit") {
                    if Quantity::parse(q).is_ok_and(|q| q.is_negative()) {
                        errs.push(FieldError::forbidden(
                            p.child("sizeLimit"),
                            "SizeLimit field must be a valid resource quantity",
                        ));
                    }
                }
                if let Some(m) = str_at(src, "medium") {
                    if !matches!(m, "" | "Memory" | "HugePages") && !m.starts_with("HugePages-") {
                        errs.push(FieldError::not_supported(
                            p.child("medium"),
                            &Value::from(m),
                            &["", "Memory", "HugePages"],
                        ));
                    }
                }
            }
            "hostPath" => {
                let hp = str_or_empty(src, "path");
                if hp.is_empty() {
                    errs.push(FieldError::required(p.child("path"), ""));
                    continue;
                }
                no_backsteps(hp, &p.child("path"), errs);
                if let Some(t) = str_at(src, "type") {
                    const TYPES: &[&str] = &[
                        "",
                        "BlockDevice",
                        "CharDevice",
                        "Directory",
                        "DirectoryOrCreate",
                        "File",
                        "FileOrCreate",
                        "Socket",
                    ];
                    if !TYPES.contains(&t) {
                        errs.push(FieldError::not_supported(
                            p.child("type"),
                            &Value::from(t),
                            TYPES,
                        ));
                    }
                }
            }
            "secret" => {
                if str_or_empty(src, "secretName").is_empty() {
                    errs.push(FieldError::required(p.child("secretName"), ""));
                }
                file_mode(src, "defaultMode", &p, errs);
                key_to_paths(src, &p.child("items"), errs);
            }
            "configMap" => {
                if str_or_empty(src, "name").is_empty() {
                    errs.push(FieldError::required(p.child("name"), ""));
                }
                file_mode(src, "defaultMode", &p, errs);
                key_to_paths(src, &p.child("items"), errs);
            }
            "persistentVolumeClaim" if str_or_empty(src, "claimName").is_empty() => {
                errs.push(FieldError::required(p.child("claimName"), ""));
            }
            "downwardAPI" => {
                file_mode(src, "defaultMode", &p, errs);
                for item in arr(src, "items") {
                    downward_api_file(item, &p, errs);
                }
            }
            "projected" => {
                file_mode(src, "defaultMode", &p, errs);
                projected_sources(src, &p, errs);
            }
            _ => {}
        }
    }
}

fn file_mode(src: &Value, field: &str, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(v) = src.get(field).filter(|v| !v.is_null()) {
        let n = v.as_i64().unwrap_or(-1);
        if !(0..=0o777).contains(&n) {
            errs.push(FieldError::invalid(path.child(field), v, FILE_MODE_MSG));
        }
    }
}

fn key_to_paths(src: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    for (i, kp) in arr(src, "items").iter().enumerate() {
        let p = path.index(i);
        if str_or_empty(kp, "key").is_empty() {
            errs.push(FieldError::required(p.child("key"), ""));
        }
        let target = str_or_empty(kp, "path");
        if target.is_empty() {
            errs.push(FieldError::required(p.child("path"), ""));
        }
        local_non_reserved_path(target, &p.child("path"), errs);
        file_mode(kp, "mode", &p, errs);
    }
}

fn no_backsteps(target: &str, path: &Path, errs: &mut Vec<FieldError>) {
    if target
        .replace('\\', "/")
        .split('/')
        .any(|part| part == "..")
    {
        errs.push(FieldError::invalid_str(
            path,
            target,
            "must not contain '..'",
        ));
    }
}

fn local_descending_path(target: &str, path: &Path, errs: &mut Vec<FieldError>) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid_str(
            path,
            target,
            "must be a relative path",
        ));
    }
    no_backsteps(target, path, errs);
}

fn local_non_reserved_path(target: &str, path: &Path, errs: &mut Vec<FieldError>) {
    local_descending_path(target, path, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(FieldError::invalid_str(
            path,
            target,
            "must not start with '..'",
        ));
    }
}

const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn downward_api_file(item: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let target = str_or_empty(item, "path");
    if target.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    local_non_reserved_path(target, &path.child("path"), errs);
    match (
        item.get("fieldRef").filter(|v| !v.is_null()),
        item.get("resourceFieldRef").filter(|v| !v.is_null()),
    ) {
        (Some(f), r) => {
            object_field_selector(f, VOLUME_FIELD_PATHS, &path.child("fieldRef"), errs);
            if r.is_some() {
                errs.push(FieldError::invalid_str(
                    path,
                    "resource",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        (None, Some(r)) => {
            if str_or_empty(r, "containerName").is_empty() {
                errs.push(FieldError::required(
                    path.child("resourceFieldRef").child("containerName"),
                    "",
                ));
            } else {
                resource_field_selector(r, &path.child("resourceFieldRef"), errs);
            }
        }
        (None, None) => errs.push(FieldError::required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        )),
    }
    file_mode(item, "mode", path, errs);
}

fn projected_sources(src: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let mut all_paths = BTreeSet::new();
    for (i, source) in arr(src, "sources").iter().enumerate() {
        let sp = path.child("sources").index(i);
        let mut num = 0;
        for kind in ["secret", "configMap"] {
            if let Some(s) = source.get(kind).filter(|v| !v.is_null()) {
                num += 1;
                let pp = sp.child(kind);
                let name = str_or_empty(s, "name");
                if name.is_empty() {
                    errs.push(FieldError::required(pp.child("name"), ""));
                }
                key_to_paths(s, &pp.child("items"), errs);
                for kp in arr(s, "items") {
                    let t = str_or_empty(kp, "path");
                    if !t.is_empty() && !all_paths.insert(t.to_string()) {
                        errs.push(FieldError::invalid_str(
                            path,
                            name,
                            "conflicting duplicate paths",
                        ));
                    }
                }
            }
        }
        if let Some(d) = source.get("downwardAPI").filter(|v| !v.is_null()) {
            num += 1;
            for item in arr(d, "items") {
                downward_api_file(item, &sp.child("downwardAPI"), errs);
                let t = str_or_empty(item, "path");
                if !t.is_empty() && !all_paths.insert(t.to_string()) {
                    errs.push(FieldError::invalid_str(
                        path,
                        t,
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(t) = source.get("serviceAccountToken").filter(|v| !v.is_null()) {
            num += 1;
            let tp = sp.child("serviceAccountToken");
            let exp = int_at(t, "expirationSeconds").unwrap_or(3600);
            if exp < 600 {
                errs.push(FieldError::invalid(
                    tp.child("expirationSeconds"),
                    &Value::from(exp),
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if exp > 1 << 32 {
                errs.push(FieldError::invalid(
                    tp.child("expirationSeconds"),
                    &Value::from(exp),
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let target = str_or_empty(t, "path");
            if target.is_empty() {
                errs.push(FieldError::required(path.child("path"), ""));
            } else {
                local_non_reserved_path(target, &path.child("path"), errs);
            }
        }
        if has(source, "clusterTrustBundle") {
            num += 1;
        }
        if num > 1 {
            errs.push(FieldError::forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

fn object_field_selector(f: &Value, allowed: &[&str], path: &Path, errs: &mut Vec<FieldError>) {
    // apiVersion is defaulted to v1, so absence is fine.
    if str_at(f, "apiVersion") == Some("") {
        errs.push(FieldError::required(path.child("apiVersion"), ""));
        return;
    }
    let fp = str_or_empty(f, "fieldPath");
    if fp.is_empty() {
        errs.push(FieldError::required(path.child("fieldPath"), ""));
        return;
    }
    if let Some((base, rest)) = fp.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .and_then(|s| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
        match (base, subscript) {
            ("metadata.annotations", Some(k)) => {
                for m in is_qualified_name(&k.to_lowercase()) {
                    errs.push(FieldError::invalid_str(path, &k.to_lowercase(), m));
                }
            }
            ("metadata.labels", Some(k)) => {
                for m in is_qualified_name(k) {
                    errs.push(FieldError::invalid_str(path, k, m));
                }
            }
            (_, Some(_)) => errs.push(FieldError::invalid_str(
                path,
                base,
                "does not support subscript",
            )),
            (_, None) => errs.push(FieldError::not_supported(
                path.child("fieldPath"),
                &Value::from(fp),
                allowed,
            )),
        }
        return;
    }
    if !allowed.contains(&fp) {
        errs.push(FieldError::not_supported(
            path.child("fieldPath"),
            &Value::from(fp),
            allowed,
        ));
    }
}

fn resource_field_selector(r: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let res = str_or_empty(r, "resource");
    if res.is_empty() {
        errs.push(FieldError::required(path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&res)
        && !res.starts_with("requests.hugepages-")
        && !res.starts_with("limits.hugepages-")
    {
        errs.push(FieldError::not_supported(
            path.child("resource"),
            &Value::from(res),
            RESOURCE_FIELD_PATHS,
        ));
    }
}

fn validate_containers(
    spec: &Value,
    volumes: &BTreeSet<String>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let containers = arr(spec, "containers");
    let cpath = path.child("containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&cpath, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = cpath.index(i);
        validate_container_common(c, volumes, &p, errs);
        let name = str_or_empty(c, "name");
        if !names.insert(name) {
            errs.push(FieldError::duplicate(p.child("name"), &Value::from(name)));
        }
        validate_lifecycle(c, &p, errs);
        validate_probes(c, &p, errs);
        if has(c, "restartPolicy") {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    host_port_conflicts(containers, &cpath, errs);
}

fn validate_init_containers(
    spec: &Value,
    volumes: &BTreeSet<String>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let mut names: BTreeSet<&str> = arr(spec, "containers")
        .iter()
        .map(|c| str_or_empty(c, "name"))
        .collect();
    let ipath = path.child("initContainers");
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        let p = ipath.index(i);
        validate_container_common(c, volumes, &p, errs);
        let restart = str_at(c, "restartPolicy");
        if let Some(r) = restart {
            if r != "Always" {
                errs.push(FieldError::not_supported(
                    p.child("restartPolicy"),
                    &Value::from(r),
                    &["Always"],
                ));
            }
        }
        let name = str_or_empty(c, "name");
        if names.contains(name) {
            errs.push(FieldError::duplicate(p.child("name"), &Value::from(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
        host_port_conflicts(std::slice::from_ref(c), &ipath, errs);
        if restart == Some("Always") {
            validate_lifecycle(c, &p, errs);
            validate_probes(c, &p, errs);
        } else {
            for field in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if has(c, field) {
                    errs.push(FieldError::forbidden(
                        p.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

fn validate_container_common(
    c: &Value,
    volumes: &BTreeSet<String>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let name = str_or_empty(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        for m in is_dns1123_label(name) {
            errs.push(FieldError::invalid_str(path.child("name"), name, m));
        }
    }
    if str_or_empty(c, "image").is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    if let Some(tmp) = str_at(c, "terminationMessagePolicy") {
        match tmp {
            "File" | "FallbackToLogsOnError" => {}
            "" => errs.push(FieldError::required(
                path.child("terminationMessagePolicy"),
                "",
            )),
            other => errs.push(FieldError::not_supported(
                path.child("terminationMessagePolicy"),
                &Value::from(other),
                &["File", "FallbackToLogsOnError"],
            )),
        }
    }
    validate_container_ports(arr(c, "ports"), &path.child("ports"), errs);
    validate_env(arr(c, "env"), &path.child("env"), errs);
    validate_env_from(arr(c, "envFrom"), &path.child("envFrom"), errs);
    validate_volume_mounts(
        arr(c, "volumeMounts"),
        volumes,
        &path.child("volumeMounts"),
        errs,
    );
    if let Some(pp) = str_at(c, "imagePullPolicy") {
        match pp {
            "Always" | "IfNotPresent" | "Never" => {}
            "" => errs.push(FieldError::required(path.child("imagePullPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                path.child("imagePullPolicy"),
                &Value::from(other),
                &["Always", "IfNotPresent", "Never"],
            )),
        }
    }
    validate_resource_requirements(
        c.get("resources").unwrap_or(&Value::Null),
        &path.child("resources"),
        errs,
    );
    if let Some(sc) = c.get("securityContext").filter(|v| v.is_object()) {
        let sp = path.child("securityContext");
        for field in ["runAsUser", "runAsGroup"] {
            if let Some(v) = sc.get(field).filter(|v| !v.is_null()) {
                let n = v.as_i64().unwrap_or(-1);
                if !(0..=0xffff_ffff).contains(&n) {
                    errs.push(FieldError::invalid(
                        sp.child(field),
                        v,
                        inclusive_range_error(0, 0xffff_ffff),
                    ));
                }
            }
        }
        if bool_at(sc, "allowPrivilegeEscalation") == Some(false)
            && bool_at(sc, "privileged") == Some(true)
        {
            errs.push(FieldError::invalid(
                &sp,
                sc,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
    }
}

fn validate_container_ports(ports: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = str_at(port, "name").filter(|s| !s.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid_str(p.child("name"), name, m));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(p.child("name"), &Value::from(name)));
            }
        }
        let cp = int_at(port, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else {
            for m in is_valid_port_num(cp) {
                errs.push(FieldError::invalid(
                    p.child("containerPort"),
                    &Value::from(cp),
                    m,
                ));
            }
        }
        let hp = int_at(port, "hostPort").unwrap_or(0);
        if hp != 0 {
            for m in is_valid_port_num(hp) {
                errs.push(FieldError::invalid(
                    p.child("hostPort"),
                    &Value::from(hp),
                    m,
                ));
            }
        }
        protocol(port, &p.child("protocol"), errs);
    }
}

/// Checks a `protocol` field, `TCP` when unset as defaulting makes it.
pub(crate) fn protocol(v: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    match str_at(v, "protocol").unwrap_or("TCP") {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.push(FieldError::required(path, "")),
        other => errs.push(FieldError::not_supported(
            path,
            &Value::from(other),
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

fn host_port_conflicts(containers: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in arr(c, "ports").iter().enumerate() {
            let hp = int_at(port, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                str_at(port, "protocol").unwrap_or("TCP"),
                str_or_empty(port, "hostIP"),
                hp
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort"),
                    &Value::from(key),
                ));
            }
        }
    }
}

fn validate_env(env: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, ev) in env.iter().enumerate() {
        let p = path.index(i);
        let name = str_or_empty(ev, "name");
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            for m in is_env_var_name(name) {
                errs.push(FieldError::invalid_str(p.child("name"), name, m));
            }
        }
        let Some(from) = ev.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let fp = p.child("valueFrom");
        let mut num = 0;
        if let Some(f) = from.get("fieldRef").filter(|v| !v.is_null()) {
            num += 1;
            object_field_selector(f, ENV_FIELD_PATHS, &fp.child("fieldRef"), errs);
        }
        if let Some(r) = from.get("resourceFieldRef").filter(|v| !v.is_null()) {
            num += 1;
            resource_field_selector(r, &fp.child("resourceFieldRef"), errs);
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(s) = from.get(kind).filter(|v| !v.is_null()) {
                num += 1;
                let kp = fp.child(kind);
                let n = str_or_empty(s, "name");
                for m in is_dns1123_subdomain(n) {
                    errs.push(FieldError::invalid_str(kp.child("name"), n, m));
                }
                let key = str_or_empty(s, "key");
                if key.is_empty() {
                    errs.push(FieldError::required(kp.child("key"), ""));
                } else {
                    for m in is_config_map_key(key) {
                        errs.push(FieldError::invalid_str(kp.child("key"), key, m));
                    }
                }
            }
        }
        if num == 0 {
            errs.push(FieldError::invalid_str(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_or_empty(ev, "value").is_empty() {
            errs.push(FieldError::invalid_str(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if num > 1 {
            errs.push(FieldError::invalid_str(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_env_from(env_from: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    for (i, ev) in env_from.iter().enumerate() {
        let p = path.index(i);
        if let Some(prefix) = str_at(ev, "prefix").filter(|s| !s.is_empty()) {
            for m in is_env_var_name(prefix) {
                errs.push(FieldError::invalid_str(p.child("prefix"), prefix, m));
            }
        }
        let mut num = 0;
        for kind in ["configMapRef", "secretRef"] {
            if let Some(s) = ev.get(kind).filter(|v| !v.is_null()) {
                num += 1;
                let n = str_or_empty(s, "name");
                let np = p.child(kind).child("name");
                if n.is_empty() {
                    errs.push(FieldError::required(np, ""));
                } else {
                    let masked;
                    let checked = if let Some(stripped) = n.strip_suffix('-') {
                        masked = format!("{stripped}a");
                        masked.as_str()
                    } else {
                        n
                    };
                    for m in is_dns1123_subdomain(checked) {
                        errs.push(FieldError::invalid_str(&np, n, m));
                    }
                }
            }
        }
        if num == 0 {
            errs.push(FieldError::invalid_str(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if num > 1 {
            errs.push(FieldError::invalid_str(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[Value],
    volumes: &BTreeSet<String>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = path.index(i);
        let name = str_or_empty(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(p.child("name"), &Value::from(name)));
        }
        let mp = str_or_empty(m, "mountPath");
        if mp.is_empty() {
            errs.push(FieldError::required(p.child("mountPath"), ""));
        }
        if !mount_points.insert(mp) {
            errs.push(FieldError::invalid_str(
                p.child("mountPath"),
                mp,
                "must be unique",
            ));
        }
        let sub = str_or_empty(m, "subPath");
        if !sub.is_empty() {
            local_descending_path(sub, &path.child("subPath"), errs);
        }
        let expr = str_or_empty(m, "subPathExpr");
        if !expr.is_empty() {
            if !sub.is_empty() {
                errs.push(FieldError::invalid_str(
                    p.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(expr, &path.child("subPathExpr"), errs);
        }
        if let Some(prop) = str_at(m, "mountPropagation") {
            if !matches!(prop, "Bidirectional" | "HostToContainer" | "None") {
                errs.push(FieldError::not_supported(
                    path.child("mountPropagation"),
                    &Value::from(prop),
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            }
        }
    }
}

fn validate_lifecycle(c: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(lc) = c.get("lifecycle").filter(|v| !v.is_null()) else {
        return;
    };
    for hook in ["postStart", "preStop"] {
        if let Some(h) = lc.get(hook).filter(|v| !v.is_null()) {
            validate_handler(
                h,
                &["exec", "httpGet", "tcpSocket", "sleep"],
                &path.child("lifecycle").child(hook),
                errs,
            );
        }
    }
}

fn validate_probes(c: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = c.get(probe_name).filter(|v| !v.is_null()) else {
            continue;
        };
        let p = path.child(probe_name);
        validate_handler(probe, &["exec", "httpGet", "tcpSocket", "grpc"], &p, errs);
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            if let Some(n) = int_at(probe, field) {
                if n < 0 {
                    errs.push(FieldError::invalid(
                        p.child(field),
                        &Value::from(n),
                        NEGATIVE_MSG,
                    ));
                }
            }
        }
        if let Some(t) = int_at(probe, "terminationGracePeriodSeconds") {
            if probe_name == "readinessProbe" {
                errs.push(FieldError::invalid(
                    p.child("terminationGracePeriodSeconds"),
                    &Value::from(t),
                    "must not be set for readinessProbes",
                ));
            } else if t <= 0 {
                errs.push(FieldError::invalid(
                    p.child("terminationGracePeriodSeconds"),
                    &Value::from(t),
                    "must be greater than 0",
                ));
            }
        }
        if probe_name != "readinessProbe" {
            let st = int_at(probe, "successThreshold").unwrap_or(1);
            if st != 1 {
                errs.push(FieldError::invalid(
                    p.child("successThreshold"),
                    &Value::from(st),
                    "must be 1",
                ));
            }
        }
    }
}

fn validate_handler(h: &Value, kinds: &[&str], path: &Path, errs: &mut Vec<FieldError>) {
    let mut num = 0;
    for &kind in kinds {
        let Some(action) = h.get(kind).filter(|v| !v.is_null()) else {
            continue;
        };
        let p = path.child(kind);
        if num > 0 {
            errs.push(FieldError::forbidden(
                &p,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        num += 1;
        match kind {
            "exec" if arr(action, "command").is_empty() => {
                errs.push(FieldError::required(p.child("command"), ""));
            }
            "httpGet" => {
                if str_at(action, "path") == Some("") {
                    errs.push(FieldError::required(p.child("path"), ""));
                }
                port_num_or_name(action.get("port"), &p.child("port"), errs);
                let scheme = str_at(action, "scheme").unwrap_or("HTTP");
                if !matches!(scheme, "HTTP" | "HTTPS") {
                    errs.push(FieldError::not_supported(
                        p.child("scheme"),
                        &Value::from(scheme),
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in arr(action, "httpHeaders") {
                    let n = str_or_empty(header, "name");
                    for m in is_http_header_name(n) {
                        errs.push(FieldError::invalid_str(p.child("httpHeaders"), n, m));
                    }
                }
            }
            "tcpSocket" => port_num_or_name(action.get("port"), &p.child("port"), errs),
            "grpc" => {
                let port = int_at(action, "port").unwrap_or(0);
                for m in is_valid_port_num(port) {
                    errs.push(FieldError::invalid(p.child("port"), &Value::from(port), m));
                }
            }
            "sleep" => {
                let s = int_at(action, "seconds").unwrap_or(0);
                if s < 0 {
                    errs.push(FieldError::invalid(&p, &Value::from(s), NEGATIVE_MSG));
                }
            }
            _ => {}
        }
    }
    if num == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

/// Checks an int-or-string port: a number 1–65535 or a port name.
pub(crate) fn port_num_or_name(port: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    match port {
        Some(Value::String(s)) => {
            for m in is_valid_port_name(s) {
                errs.push(FieldError::invalid_str(path, s, m));
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for m in is_valid_port_num(n) {
                errs.push(FieldError::invalid(path, &Value::from(n), m));
            }
        }
        None => {
            for m in is_valid_port_num(0) {
                errs.push(FieldError::invalid(path, &Value::from(0), m));
            }
        }
    }
}

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Resource names Kubernetes knows without a domain (`IsStandardResourceName`).
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Whether a resource is Kubernetes' own (no domain, or a `kubernetes.io/` domain).
pub(crate) fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Whether requests may be below limits for a resource (not for hugepages or
/// extended resources).
pub(crate) fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

/// Checks a resource name as `validateResourceName` does.
pub(crate) fn validate_resource_name(name: &str, path: &Path, errs: &mut Vec<FieldError>) -> bool {
    let before = errs.len();
    for m in is_qualified_name(name) {
        errs.push(FieldError::invalid_str(path, name, m));
    }
    if errs.len() > before {
        return false;
    }
    if !name.contains('/')
        && !STANDARD_RESOURCES.contains(&name)
        && !is_hugepages(name)
        && !name.starts_with("requests.hugepages-")
    {
        errs.push(FieldError::invalid_str(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
    errs.len() == before
}

fn validate_container_resource_name(name: &str, path: &Path, errs: &mut Vec<FieldError>) {
    validate_resource_name(name, path, errs);
    if !name.contains('/') {
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !is_hugepages(name) {
            errs.push(FieldError::invalid_str(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) {
        let qualified = format!("requests.{name}");
        if name.starts_with("requests.") || !is_qualified_name(&qualified).is_empty() {
            errs.push(FieldError::invalid_str(
                path,
                name,
                "doesn't follow extended resource name standard",
            ));
        }
    }
}

/// Parses the quantity at `path`, reporting a bad or negative one.
pub(crate) fn parse_quantity(
    v: &Value,
    path: &Path,
    errs: &mut Vec<FieldError>,
) -> Option<Quantity> {
    let s = v.as_str().unwrap_or("");
    match Quantity::parse(s) {
        Ok(q) => {
            if q.is_negative() {
                errs.push(FieldError::invalid_str(path, &q.canonical(), NEGATIVE_MSG));
                None
            } else {
                Some(q)
            }
        }
        Err(e) => {
            errs.push(FieldError::invalid(path, v, e.to_string()));
            None
        }
    }
}

/// Validates a container's `resources`: names, quantities, and requests ≤ limits.
pub(crate) fn validate_resource_requirements(res: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let mut limits = BTreeMap::new();
    if let Some(l) = obj(res, "limits") {
        for (k, v) in l {
            let p = lim_path.key(k);
            validate_container_resource_name(k, &p, errs);
            if let Some(q) = parse_quantity(v, &p, errs) {
                limits.insert(k.as_str(), q);
            }
        }
    }
    if let Some(r) = obj(res, "requests") {
        for (k, v) in r {
            let p = req_path.key(k);
            validate_container_resource_name(k, &p, errs);
            let Some(q) = parse_quantity(v, &p, errs) else {
                continue;
            };
            match limits.get(k.as_str()) {
                Some(lim) => {
                    if q != *lim && !is_overcommit_allowed(k) {
                        errs.push(FieldError::invalid_str(
                            &req_path,
                            &q.canonical(),
                            format!("must be equal to {k} limit of {}", lim.canonical()),
                        ));
                    } else if q > *lim {
                        errs.push(FieldError::invalid_str(
                            &req_path,
                            &q.canonical(),
                            format!(
                                "must be less than or equal to {k} limit of {}",
                                lim.canonical()
                            ),
                        ));
                    }
                }
                None => {
                    if !is_overcommit_allowed(k)
                        && !obj(res, "limits").is_some_and(|l| l.contains_key(k))
                    {
                        errs.push(FieldError::required(
                            &lim_path,
                            "Limit must be set for non overcommitable resources",
                        ));
                    }
                }
            }
        }
    }
}

fn validate_pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let spec_path = Path::new("spec");
    for field in ["containers", "initContainers"] {
        if arr(new, field).len() != arr(old, field).len() {
            errs.push(FieldError::forbidden(
                spec_path.child(field),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    let new_ads = new.get("activeDeadlineSeconds").filter(|v| !v.is_null());
    let old_ads = old.get("activeDeadlineSeconds").filter(|v| !v.is_null());
    match (new_ads, old_ads) {
        (Some(n), o) => {
            let nv = n.as_i64().unwrap_or(-1);
            if !(0..=i64::from(i32::MAX)).contains(&nv) {
                errs.push(FieldError::invalid(
                    spec_path.child("activeDeadlineSeconds"),
                    n,
                    inclusive_range_error(0, i64::from(i32::MAX)),
                ));
                return;
            }
            if let Some(ov) = o.and_then(Value::as_i64) {
                if ov < nv {
                    errs.push(FieldError::invalid(
                        spec_path.child("activeDeadlineSeconds"),
                        n,
                        "must be less than or equal to previous value",
                    ));
                    return;
                }
            }
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            spec_path.child("activeDeadlineSeconds"),
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    let old_tols = arr(old, "tolerations");
    let new_tols = arr(new, "tolerations");
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    for ot in old_tols {
        let os = strip(ot);
        if !new_tols.iter().any(|nt| strip(nt) == os) {
            errs.push(FieldError::forbidden(
                spec_path.child("tolerations"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    let old_gates: BTreeSet<&str> = arr(old, "schedulingGates")
        .iter()
        .map(|g| str_or_empty(g, "name"))
        .collect();
    for (i, g) in arr(new, "schedulingGates").iter().enumerate() {
        let name = str_or_empty(g, "name");
        if !old_gates.contains(name) {
            errs.push(FieldError::forbidden(
                spec_path.child("schedulingGates").index(i).child("name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if new == old {
        return;
    }
    // Set the updatable fields of the new spec to their old values; what still differs
    // is a change Kubernetes forbids.
    let mut munged = new.clone();
    if let Some(m) = munged.as_object_mut() {
        for field in ["containers", "initContainers"] {
            if let Some(list) = m.get_mut(field).and_then(Value::as_array_mut) {
                for (i, c) in list.iter_mut().enumerate() {
                    let old_image = arr(old, field).get(i).and_then(|o| o.get("image")).cloned();
                    if let Some(cm) = c.as_object_mut() {
                        match old_image {
                            Some(img) => cm.insert("image".to_string(), img),
                            None => cm.remove("image"),
                        };
                    }
                }
            }
        }
        for field in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old.get(field) {
                Some(v) => m.insert(field.to_string(), v.clone()),
                None => m.remove(field),
            };
        }
        let old_grace = int_at(old, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0)
            && int_at(new, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert(
                "terminationGracePeriodSeconds".to_string(),
                Value::from(old_grace),
            );
        }
    }
    if munged != *old {
        let diff = json_diff(old, &munged, "spec");
        errs.push(FieldError::forbidden(
            &spec_path,
            format!(
                "pod updates may not change fields other than {}\n{}",
                UPDATABLE_POD_SPEC_FIELDS.join(","),
                diff
            ),
        ));
    }
}

/// A short diff of two JSON values: `- path: old` / `+ path: new` lines per leaf that
/// differs. Kubernetes prints a Go struct diff here, which skiff cannot reproduce.
pub(crate) fn json_diff(old: &Value, new: &Value, root: &str) -> String {
    let mut lines = Vec::new();
    diff_into(old, new, root.to_string(), &mut lines);
    const MAX: usize = 40;
    if lines.len() > MAX {
        let more = lines.len() - MAX;
        lines.truncate(MAX);
        lines.push(format!("  ... {more} more lines"));
    }
    lines.join("\n")
}

fn diff_into(old: &Value, new: &Value, path: String, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let child = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(x, y, child, out),
                    (Some(x), None) => out.push(format!("- {child}: {x}")),
                    (None, Some(y)) => out.push(format!("+ {child}: {y}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let child = format!("{path}[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => diff_into(x, y, child, out),
                    (Some(x), None) => out.push(format!("- {child}: {x}")),
                    (None, Some(y)) => out.push(format!("+ {child}: {y}")),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => {
            out.push(format!("- {path}: {a}"));
            out.push(format!("+ {path}: {b}"));
        }
        _ => {}
    }
}

/// The label map of a template (`template.metadata.labels`).
pub(crate) fn template_labels(template: &Value) -> Option<&Value> {
    template.get("metadata").and_then(|m| m.get("labels"))
}

/// The string labels of a template as a map, for messages.
pub(crate) fn template_labels_value(template: &Value) -> Value {
    let map: serde_json::Map<String, Value> =
        string_map(template.get("metadata").unwrap_or(&Value::Null), "labels")
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}
