//! Defaults of pod specs and containers, and what the pod admission plugins add.

use serde_json::{json, Map, Value};

use super::{child, ensure_obj, list, set_default};

/// Priorities of the built-in priority classes.
const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// Defaults a pod spec; `is_pod` adds what only real pods get (not templates).
pub(super) fn pod_spec(spec: &mut Map<String, Value>, is_pod: bool) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    if is_pod {
        // The ServiceAccount admission plugin.
        set_default(spec, "serviceAccountName", json!("default"));
    }
    sync_service_account(spec);
    for vol in list(spec, "volumes")
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        volume(vol);
    }
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        for c in list(spec, field)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            container(c);
        }
    }
    if is_pod {
        set_default(spec, "enableServiceLinks", json!(true));
        for field in ["containers", "initContainers"] {
            for c in list(spec, field)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                requests_from_limits(c);
            }
        }
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            for field in ["containers", "initContainers"] {
                for c in list(spec, field)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object_mut)
                {
                    for p in list(c, "ports")
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_object_mut)
                    {
                        if p.get("hostPort").is_none_or(Value::is_null) {
                            if let Some(cp) = p.get("containerPort").cloned() {
                                p.insert("hostPort".to_string(), cp);
                            }
                        }
                    }
                }
            }
        }
        priority(spec);
    }
}

/// `serviceAccount` is the deprecated spelling of `serviceAccountName`; Kubernetes
/// keeps both set to the same value.
fn sync_service_account(spec: &mut Map<String, Value>) {
    let name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let old = spec
        .get("serviceAccount")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    match (name.map(str::to_string), old.map(str::to_string)) {
        (Some(n), None) => set_default(spec, "serviceAccount", json!(n)),
        (None, Some(o)) => set_default(spec, "serviceAccountName", json!(o)),
        _ => {}
    }
}

/// The Priority admission plugin: a pod without a class gets priority 0.
fn priority(spec: &mut Map<String, Value>) {
    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = if class.is_empty() {
        Some(0)
    } else {
        SYSTEM_PRIORITY_CLASSES
            .iter()
            .find(|(n, _)| *n == class)
            .map(|(_, v)| *v)
    };
    if let Some(v) = value {
        set_default(spec, "priority", json!(v));
        set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

/// A pod's containers request what they are limited to unless they say otherwise.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(res) = child(c, "resources") else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(req) = ensure_obj(res, "requests") {
        for (k, v) in limits {
            set_default(req, &k, v);
        }
    }
}

fn volume(vol: &mut Map<String, Value>) {
    let has_source = crate::validation::pod_volume_sources()
        .iter()
        .any(|s| vol.get(*s).is_some_and(|v| !v.is_null()));
    if !has_source {
        vol.insert("emptyDir".to_string(), json!({}));
    }
    for kind in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = child(vol, kind) {
            set_default(src, "defaultMode", json!(0o644));
        }
    }
    if let Some(hp) = child(vol, "hostPath") {
        set_default(hp, "type", json!(""));
    }
    if let Some(d) = child(vol, "downwardAPI") {
        downward_api_items(d);
    }
    if let Some(p) = child(vol, "projected") {
        for src in list(p, "sources")
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            if let Some(t) = child(src, "serviceAccountToken") {
                set_default(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = child(src, "downwardAPI") {
                downward_api_items(d);
            }
        }
    }
}

fn downward_api_items(d: &mut Map<String, Value>) {
    for item in list(d, "items")
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        if let Some(f) = child(item, "fieldRef") {
            set_default(f, "apiVersion", json!("v1"));
        }
        if let Some(r) = child(item, "resourceFieldRef") {
            // Go serializes the zero Quantity of a non-pointer field as "0".
            set_default(r, "divisor", json!("0"));
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    if c.get("imagePullPolicy").is_none_or(Value::is_null) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        c.insert("imagePullPolicy".to_string(), json!(pull_policy_for(image)));
    }
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    // Resources is a struct, not a pointer, in Go, so it always serializes.
    set_default(c, "resources", json!({}));
    for p in list(c, "ports")
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        set_default(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(pr) = child(c, probe) {
            set_default(pr, "timeoutSeconds", json!(1));
            set_default(pr, "periodSeconds", json!(10));
            set_default(pr, "successThreshold", json!(1));
            set_default(pr, "failureThreshold", json!(3));
            if let Some(h) = child(pr, "httpGet") {
                http_get(h);
            }
        }
    }
    if let Some(lc) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child(lc, hook).and_then(|h| child(h, "httpGet")) {
                http_get(h);
            }
        }
    }
    for ev in list(c, "env")
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        let Some(from) = child(ev, "valueFrom") else {
            continue;
        };
        if let Some(f) = child(from, "fieldRef") {
            set_default(f, "apiVersion", json!("v1"));
        }
        if let Some(r) = child(from, "resourceFieldRef") {
            set_default(r, "divisor", json!("0"));
        }
    }
}

fn http_get(h: &mut Map<String, Value>) {
    set_default(h, "path", json!("/"));
    set_default(h, "scheme", json!("HTTP"));
}

/// The pull policy Kubernetes picks for an image: `Always` for `:latest` or no tag,
/// `IfNotPresent` for other tags, digests, and names it cannot parse.
pub fn pull_policy_for(image: &str) -> &'static str {
    match image_tag(image) {
        Some("latest") => "Always",
        _ => "IfNotPresent",
    }
}

/// The tag of an image reference: `Some("latest")` when neither tag nor digest is given,
/// `Some("")` for a digest without tag, `None` when the reference does not parse.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (alg, hex) = d.split_once(':')?;
        if alg.is_empty() || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if !valid_repository(repo) {
        return None;
    }
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !ok {
            return None;
        }
        return Some(t);
    }
    Some(if digest.is_some() { "" } else { "latest" })
}

/// A docker repository name: an optional registry host, then lowercase path components.
fn valid_repository(repo: &str) -> bool {
    if repo.is_empty() {
        return false;
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    let first = parts[0];
    let is_domain = parts.len() > 1
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.bytes().any(|c| c.is_ascii_uppercase()));
    if is_domain {
        let host = first.split(':').next().unwrap_or("");
        if host.is_empty()
            || !host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        {
            return false;
        }
        parts.remove(0);
    }
    parts.iter().all(|p| {
        let b = p.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
            && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
            && b.iter().all(|&c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy_for("nginx"), "Always");
        assert_eq!(pull_policy_for("nginx:latest"), "Always");
        assert_eq!(pull_policy_for("nginx:1.14.2"), "IfNotPresent");
        assert_eq!(
            pull_policy_for("registry.example.com:5000/team/app"),
            "Always"
        );
        assert_eq!(
            pull_policy_for("registry.example.com:5000/team/app:v1"),
            "IfNotPresent"
        );
        assert_eq!(
            pull_policy_for(
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ),
            "IfNotPresent"
        );
        assert_eq!(
            pull_policy_for("nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            "Always"
        );
        assert_eq!(pull_policy_for(""), "IfNotPresent");
        assert_eq!(pull_policy_for("Nginx"), "IfNotPresent");
    }
}
