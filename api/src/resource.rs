//! The resources skiff serves: their names as discovery shows them, where they are
//! stored, and how a JSON body is decoded into the k8s-openapi type of each.

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking,
};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A served resource type: one row of `kubectl api-resources`.
#[derive(Debug)]
pub struct ResourceType {
    /// API group; empty for the core (legacy) group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// `group/version`, or just the version for the core group (the `apiVersion` field).
    pub api_version: &'static str,
    /// The kind, as in the `kind` field.
    pub kind: &'static str,
    /// The kind of its list (`PodList`).
    pub list_kind: &'static str,
    /// The plural resource name used in paths (`pods`).
    pub plural: &'static str,
    /// The singular name (`pod`).
    pub singular: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names kubectl accepts (`po`).
    pub short_names: &'static [&'static str],
    /// Categories (`all` is what `kubectl get all` shows).
    pub categories: &'static [&'static str],
    /// Subresources served below each object (`status`, `scale`, …).
    pub subresources: &'static [Subresource],
    /// Whether clients may create and change objects of this type. Types served only so
    /// that kubectl's defaults (`apply --prune`, `get all`) find them are read-only: skiff
    /// has no controller for them, and storing one that nothing acts on would mislead.
    pub writable: bool,
    /// Decodes a JSON body into the typed object and back, which both checks types and
    /// drops fields the type does not have (as Kubernetes' decoder does).
    pub roundtrip: fn(&Value) -> Result<Value, serde_json::Error>,
}

/// A subresource below an object, e.g. `deployments/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `…/status`: the status alone; the main resource ignores status changes.
    Status,
    /// `…/scale`: an autoscaling/v1 Scale view of `spec.replicas`.
    Scale,
    /// `pods/binding`: assigns a pod to a node.
    Binding,
    /// `pods/eviction`: deletes a pod politely.
    Eviction,
    /// `pods/log`: the container's log, served by the kubelet.
    Log,
    /// `pods/exec`: a command in a container, served by the kubelet.
    Exec,
    /// `pods/attach`: the streams of a container's main process, served by the kubelet.
    Attach,
    /// `pods/portforward`: a tunnel to a pod's port, served by the kubelet.
    PortForward,
    /// `namespaces/finalize`: the namespace's finalizers.
    Finalize,
    /// `serviceaccounts/token`: a TokenRequest for a signed token of the account.
    Token,
}

impl Subresource {
    /// The path segment and discovery name (`status`).
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
        }
    }

    /// Parses a path segment.
    pub fn parse(segment: &str) -> Option<Subresource> {
        ALL_SUBRESOURCES
            .iter()
            .copied()
            .find(|s| s.name() == segment)
    }
}

const ALL_SUBRESOURCES: &[Subresource] = &[
    Subresource::Status,
    Subresource::Scale,
    Subresource::Binding,
    Subresource::Eviction,
    Subresource::Log,
    Subresource::Exec,
    Subresource::Attach,
    Subresource::PortForward,
    Subresource::Finalize,
    Subresource::Token,
];

fn roundtrip<T: DeserializeOwned + Serialize>(body: &Value) -> Result<Value, serde_json::Error> {
    let typed: T = T::deserialize(body)?;
    serde_json::to_value(typed)
}

/// Whether a k8s-openapi scope type is namespaced; resolved at compile time.
trait Scope {
    const NAMESPACED: bool;
}
impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

macro_rules! resource {
    ($ty:ty, $list_kind:literal, $singular:literal, [$($short:literal),*], [$($cat:literal),*], [$($sub:ident),*]) => {
        ResourceType {
            group: <$ty as Resource>::GROUP,
            version: <$ty as Resource>::VERSION,
            api_version: <$ty as Resource>::API_VERSION,
            kind: <$ty as Resource>::KIND,
            list_kind: $list_kind,
            plural: <$ty as Resource>::URL_PATH_SEGMENT,
            singular: $singular,
            namespaced: <<$ty as Resource>::Scope as Scope>::NAMESPACED,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$(Subresource::$sub),*],
            roundtrip: roundtrip::<$ty>,
            writable: true,
        }
    };
}

/// ReplicationControllers are read-only in skiff: kubectl's prune allowlist and
/// `get all` look for them; a Deployment or ReplicaSet does their job.
const REPLICATION_CONTROLLERS: ResourceType = ResourceType {
    writable: false,
    ..resource!(
        core::ReplicationController,
        "ReplicationControllerList",
        "replicationcontroller",
        ["rc"],
        ["all"],
        [Status, Scale]
    )
};

/// Every resource skiff serves, grouped by API group as discovery lists them.
pub static RESOURCES: &[ResourceType] = &[
    resource!(
        core::Namespace,
        "NamespaceList",
        "namespace",
        ["ns"],
        [],
        [Status, Finalize]
    ),
    resource!(
        core::Pod,
        "PodList",
        "pod",
        ["po"],
        ["all"],
        [Status, Binding, Eviction, Log, Exec, Attach, PortForward]
    ),
    resource!(core::Node, "NodeList", "node", ["no"], [], [Status]),
    resource!(
        core::Service,
        "ServiceList",
        "service",
        ["svc"],
        ["all"],
        [Status]
    ),
    resource!(
        core::Endpoints,
        "EndpointsList",
        "endpoints",
        ["ep"],
        [],
        []
    ),
    resource!(
        core::ConfigMap,
        "ConfigMapList",
        "configmap",
        ["cm"],
        [],
        []
    ),
    resource!(core::Secret, "SecretList", "secret", [], [], []),
    resource!(core::Event, "EventList", "event", ["ev"], [], []),
    resource!(
        core::ServiceAccount,
        "ServiceAccountList",
        "serviceaccount",
        ["sa"],
        [],
        [Token]
    ),
    resource!(
        core::ResourceQuota,
        "ResourceQuotaList",
        "resourcequota",
        ["quota"],
        [],
        [Status]
    ),
    resource!(
        core::LimitRange,
        "LimitRangeList",
        "limitrange",
        ["limits"],
        [],
        []
    ),
    resource!(
        core::PersistentVolume,
        "PersistentVolumeList",
        "persistentvolume",
        ["pv"],
        [],
        [Status]
    ),
    resource!(
        core::PersistentVolumeClaim,
        "PersistentVolumeClaimList",
        "persistentvolumeclaim",
        ["pvc"],
        [],
        [Status]
    ),
    REPLICATION_CONTROLLERS,
    resource!(
        apps::Deployment,
        "DeploymentList",
        "deployment",
        ["deploy"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        apps::ReplicaSet,
        "ReplicaSetList",
        "replicaset",
        ["rs"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        apps::StatefulSet,
        "StatefulSetList",
        "statefulset",
        ["sts"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        apps::DaemonSet,
        "DaemonSetList",
        "daemonset",
        ["ds"],
        ["all"],
        [Status]
    ),
    resource!(
        apps::ControllerRevision,
        "ControllerRevisionList",
        "controllerrevision",
        [],
        [],
        []
    ),
    resource!(batch::Job, "JobList", "job", [], ["all"], [Status]),
    resource!(
        batch::CronJob,
        "CronJobList",
        "cronjob",
        ["cj"],
        ["all"],
        [Status]
    ),
    resource!(
        autoscaling::HorizontalPodAutoscaler,
        "HorizontalPodAutoscalerList",
        "horizontalpodautoscaler",
        ["hpa"],
        ["all"],
        [Status]
    ),
    resource!(coordination::Lease, "LeaseList", "lease", [], [], []),
    resource!(
        discovery::EndpointSlice,
        "EndpointSliceList",
        "endpointslice",
        [],
        [],
        []
    ),
    resource!(
        networking::Ingress,
        "IngressList",
        "ingress",
        ["ing"],
        [],
        [Status]
    ),
    resource!(
        networking::IngressClass,
        "IngressClassList",
        "ingressclass",
        [],
        [],
        []
    ),
];

impl ResourceType {
    /// Finds the resource served at `group/version/plural`.
    pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Finds the resource of a kind in a group (the group of an ownerReference's apiVersion).
    pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.kind == kind)
    }

    /// The group-qualified resource name Kubernetes uses in messages (`deployments.apps`).
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The group-qualified kind Kubernetes uses in messages (`Deployment.apps`).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether the type has the given subresource.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key of one object: `/registry/<plural>/<namespace>/<name>`, or
    /// `/registry/<plural>/<name>` for cluster-scoped types, as Kubernetes lays out etcd.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{}/{}", self.plural, ns, name),
            _ => format!("/registry/{}/{}", self.plural, name),
        }
    }

    /// The key prefix of a list: every object of the type, or those of one namespace.
    /// It ends in `/` so that namespace `a` does not also list namespace `ab`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{}/", self.plural, ns),
            _ => format!("/registry/{}/", self.plural),
        }
    }
}

/// The API groups and their versions in discovery order (the preferred version first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes_come_from_the_types() {
        let pods = ResourceType::lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.kind, "Pod");
        assert!(pods.namespaced);
        assert_eq!(pods.api_version, "v1");
        let nodes = ResourceType::lookup("", "v1", "nodes").unwrap();
        assert!(!nodes.namespaced);
        let deploy = ResourceType::by_kind("apps", "Deployment").unwrap();
        assert_eq!(deploy.plural, "deployments");
        assert_eq!(deploy.qualified_name(), "deployments.apps");
        let hpa = ResourceType::lookup("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(hpa.api_version, "autoscaling/v2");
    }

    #[test]
    fn keys_follow_the_kubernetes_layout() {
        let pods = ResourceType::lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert_eq!(pods.prefix(Some("default")), "/registry/pods/default/");
        assert_eq!(pods.prefix(None), "/registry/pods/");
        let ns = ResourceType::lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "kube-system"),
            "/registry/namespaces/kube-system"
        );
    }

    #[test]
    fn plurals_are_unique_so_keys_do_not_collide() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert_ne!(a.plural, b.plural);
            }
        }
    }

    #[test]
    fn roundtrip_drops_unknown_fields_and_checks_types() {
        let pods = ResourceType::lookup("", "v1", "pods").unwrap();
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        });
        let out = (pods.roundtrip)(&body).unwrap();
        assert!(out["metadata"].get("bogus").is_none());
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox");
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": 3}});
        assert!((pods.roundtrip)(&bad).is_err());
    }

    #[test]
    fn groups_list_each_group_once() {
        let gs = groups();
        assert!(gs.iter().any(|(g, v)| *g == "apps" && v == &["v1"]));
        let names: Vec<_> = gs.iter().map(|(g, _)| *g).collect();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup);
    }
}
