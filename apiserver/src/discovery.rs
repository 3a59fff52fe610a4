//! Discovery (`/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}`) and
//! `/version`, in the legacy (non-aggregated) form, which kubectl falls back to.

use serde_json::{json, Value};
use skiff_api::{resource, ResourceType, Subresource};

/// The Kubernetes version skiff's API corresponds to.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": KUBERNETES_VERSION.0,
        "minor": KUBERNETES_VERSION.1,
        "gitVersion": format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1),
        "gitCommit": concat!("skiff-", env!("CARGO_PKG_VERSION")),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (skiff is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn groups() -> Value {
    let groups: Vec<Value> = resource::groups()
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if served.
pub fn group(name: &str) -> Option<Value> {
    resource::groups()
        .iter()
        .find(|(g, _)| *g == name)
        .map(|(g, vs)| {
            let mut v = group_json(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Verbs of a read-only type: it can be read, watched and cleaned up, not written.
const READ_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "watch"];

fn subresource_json(rt: &ResourceType, sub: Subresource) -> Value {
    let (kind, group, version, verbs): (&str, Option<&str>, Option<&str>, &[&str]) = match sub {
        Subresource::Status => (rt.kind, None, None, &["get", "patch", "update"]),
        Subresource::Scale => (
            "Scale",
            Some("autoscaling"),
            Some("v1"),
            &["get", "patch", "update"],
        ),
        Subresource::Binding => ("Binding", None, None, &["create"]),
        Subresource::Eviction => ("Eviction", Some("policy"), Some("v1"), &["create"]),
        Subresource::Log => ("Pod", None, None, &["get"]),
        Subresource::Exec => ("PodExecOptions", None, None, &["create", "get"]),
        Subresource::Attach => ("PodAttachOptions", None, None, &["create", "get"]),
        Subresource::PortForward => ("PodPortForwardOptions", None, None, &["create", "get"]),
        Subresource::Finalize => ("Namespace", None, None, &["update"]),
        Subresource::Token => (
            "TokenRequest",
            Some("authentication.k8s.io"),
            Some("v1"),
            &["create"],
        ),
    };
    let mut v = json!({
        "name": format!("{}/{}", rt.plural, sub.name()),
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if let (Some(g), Some(ver)) = (group, version) {
        v["group"] = json!(g);
        v["version"] = json!(ver);
    }
    v
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceType> = resource::in_group_version(group, version).collect();
    if resources.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for rt in resources {
        let mut v = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": if rt.writable { VERBS } else { READ_VERBS },
        });
        if !rt.short_names.is_empty() {
            v["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            v["categories"] = json!(rt.categories);
        }
        list.push(v);
        for sub in rt.subresources {
            list.push(subresource_json(rt, *sub));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_resources_with_short_names_and_subresources() {
        let core = resource_list("", "v1").unwrap();
        let res = core["resources"].as_array().unwrap();
        let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(res.iter().any(|r| r["name"] == "pods/log"));
        let apps = resource_list("apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list("apps", "v2").is_none());
        assert!(groups()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "batch"));
    }
}
