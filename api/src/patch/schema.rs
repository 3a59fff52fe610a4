//! Patch metadata of the Kubernetes API types: which lists merge, by which key, and
//! which type sits below each field.
//!
//! Kubernetes reads this from the Go struct tags `patchStrategy` and `patchMergeKey`
//! (k8s.io/api core/v1, apps/v1, batch/v1, autoscaling/v2 and meta/v1 types.go). The
//! table holds only fields that matter to a strategic merge patch: lists with a merge
//! strategy, fields with another strategy, and the fields that lead to them from the
//! kinds below. Any other field merges as a map when it is an object and is replaced
//! whole when it is a list, which is what Kubernetes does with untagged fields.
//!
//! To support another kind, add a row per field of the kind that leads to a tagged
//! field (usually `metadata`, `spec`, `status`), then rows for the types below it.

use std::collections::HashMap;
use std::sync::OnceLock;

/// How a field is patched, from its `patchStrategy` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Strategy {
    /// No tag: objects merge key by key, lists are replaced whole.
    #[default]
    Default,
    /// `merge`: list elements merge by merge key, or as a set for primitive lists.
    Merge,
    /// `merge,retainKeys`: as `merge`; elements may carry `$retainKeys` (Kubernetes honours it anywhere).
    MergeRetainKeys,
    /// `retainKeys`: an object that may carry `$retainKeys` to drop the keys it does not list.
    RetainKeys,
}

/// What the strategic merge needs to know about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FieldMeta {
    /// Go type of the value for an object field, of the elements for a list field.
    pub ty: Option<&'static str>,
    /// The field's patch strategy.
    pub strategy: Strategy,
    /// The element field that identifies list elements (`patchMergeKey`).
    pub merge_key: Option<&'static str>,
}

impl FieldMeta {
    /// Whether a list in this field merges instead of being replaced.
    pub fn merges_list(&self) -> bool {
        matches!(self.strategy, Strategy::Merge | Strategy::MergeRetainKeys)
    }
}

/// An object field of Go type `ty`.
const fn object(ty: &'static str) -> FieldMeta {
    FieldMeta {
        ty: Some(ty),
        strategy: Strategy::Default,
        merge_key: None,
    }
}

/// A list of `elem` objects merged element by element on `key`.
const fn merge_by(key: &'static str, elem: &'static str) -> FieldMeta {
    FieldMeta {
        ty: Some(elem),
        strategy: Strategy::Merge,
        merge_key: Some(key),
    }
}

/// A list of `elem` objects merged on `key`, whose elements may carry `$retainKeys`.
const fn merge_retain_keys_by(key: &'static str, elem: &'static str) -> FieldMeta {
    FieldMeta {
        ty: Some(elem),
        strategy: Strategy::MergeRetainKeys,
        merge_key: Some(key),
    }
}

/// A list of primitives merged as a set.
const fn set() -> FieldMeta {
    FieldMeta {
        ty: None,
        strategy: Strategy::Merge,
        merge_key: None,
    }
}

/// An object field of Go type `ty` with the `retainKeys` strategy.
const fn retain_keys(ty: &'static str) -> FieldMeta {
    FieldMeta {
        ty: Some(ty),
        strategy: Strategy::RetainKeys,
        merge_key: None,
    }
}

/// Kinds whose objects have patch metadata; each kind is also the Go type of its objects.
const KINDS: &[&str] = &[
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Service",
    "ConfigMap",
    "Secret",
    "Node",
    "Namespace",
    "Endpoints",
    "ServiceAccount",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ResourceQuota",
    "LimitRange",
    "Event",
    "Lease",
    "EndpointSlice",
    "Ingress",
    "IngressClass",
    "HorizontalPodAutoscaler",
    "ControllerRevision",
    "Scale",
];

/// (Go type, JSON field, metadata).
const FIELDS: &[(&str, &str, FieldMeta)] = &[
    // Top-level kinds. Every kind's `metadata` is added by `table()`.
    ("Pod", "spec", object("PodSpec")),
    ("Pod", "status", object("PodStatus")),
    ("PodTemplate", "template", object("PodTemplateSpec")),
    (
        "ReplicationController",
        "spec",
        object("ReplicationControllerSpec"),
    ),
    (
        "ReplicationController",
        "status",
        object("ReplicationControllerStatus"),
    ),
    ("Deployment", "spec", object("DeploymentSpec")),
    ("Deployment", "status", object("DeploymentStatus")),
    ("ReplicaSet", "spec", object("ReplicaSetSpec")),
    ("ReplicaSet", "status", object("ReplicaSetStatus")),
    ("StatefulSet", "spec", object("StatefulSetSpec")),
    ("StatefulSet", "status", object("StatefulSetStatus")),
    ("DaemonSet", "spec", object("DaemonSetSpec")),
    ("DaemonSet", "status", object("DaemonSetStatus")),
    ("Job", "spec", object("JobSpec")),
    ("Job", "status", object("JobStatus")),
    ("CronJob", "spec", object("CronJobSpec")),
    ("Service", "spec", object("ServiceSpec")),
    ("Service", "status", object("ServiceStatus")),
    ("Node", "spec", object("NodeSpec")),
    ("Node", "status", object("NodeStatus")),
    ("Namespace", "status", object("NamespaceStatus")),
    (
        "ServiceAccount",
        "secrets",
        merge_by("name", "ObjectReference"),
    ),
    (
        "PersistentVolumeClaim",
        "status",
        object("PersistentVolumeClaimStatus"),
    ),
    (
        "HorizontalPodAutoscaler",
        "status",
        object("HorizontalPodAutoscalerStatus"),
    ),
    // meta/v1
    (
        "ObjectMeta",
        "ownerReferences",
        merge_by("uid", "OwnerReference"),
    ),
    ("ObjectMeta", "finalizers", set()),
    // core/v1: pods and their templates
    ("PodTemplateSpec", "metadata", object("ObjectMeta")),
    ("PodTemplateSpec", "spec", object("PodSpec")),
    ("PodSpec", "volumes", merge_retain_keys_by("name", "Volume")),
    ("PodSpec", "initContainers", merge_by("name", "Container")),
    ("PodSpec", "containers", merge_by("name", "Container")),
    // EphemeralContainer inlines EphemeralContainerCommon, which has Container's tags.
    (
        "PodSpec",
        "ephemeralContainers",
        merge_by("name", "Container"),
    ),
    (
        "PodSpec",
        "imagePullSecrets",
        merge_by("name", "LocalObjectReference"),
    ),
    ("PodSpec", "hostAliases", merge_by("ip", "HostAlias")),
    (
        "PodSpec",
        "topologySpreadConstraints",
        merge_by("topologyKey", "TopologySpreadConstraint"),
    ),
    (
        "PodSpec",
        "schedulingGates",
        merge_by("name", "PodSchedulingGate"),
    ),
    (
        "PodSpec",
        "resourceClaims",
        merge_retain_keys_by("name", "PodResourceClaim"),
    ),
    (
        "Container",
        "ports",
        merge_by("containerPort", "ContainerPort"),
    ),
    ("Container", "env", merge_by("name", "EnvVar")),
    (
        "Container",
        "volumeMounts",
        merge_by("mountPath", "VolumeMount"),
    ),
    (
        "Container",
        "volumeDevices",
        merge_by("devicePath", "VolumeDevice"),
    ),
    // Volume inlines VolumeSource.
    ("Volume", "ephemeral", object("EphemeralVolumeSource")),
    (
        "EphemeralVolumeSource",
        "volumeClaimTemplate",
        object("PersistentVolumeClaimTemplate"),
    ),
    (
        "PersistentVolumeClaimTemplate",
        "metadata",
        object("ObjectMeta"),
    ),
    ("PodStatus", "conditions", merge_by("type", "PodCondition")),
    ("PodStatus", "hostIPs", merge_by("ip", "HostIP")),
    ("PodStatus", "podIPs", merge_by("ip", "PodIP")),
    (
        "PodStatus",
        "resourceClaimStatuses",
        merge_retain_keys_by("name", "PodResourceClaimStatus"),
    ),
    (
        "ReplicationControllerSpec",
        "template",
        object("PodTemplateSpec"),
    ),
    (
        "ReplicationControllerStatus",
        "conditions",
        merge_by("type", "ReplicationControllerCondition"),
    ),
    // core/v1: services, nodes, namespaces, claims
    ("ServiceSpec", "ports", merge_by("port", "ServicePort")),
    ("ServiceStatus", "conditions", merge_by("type", "Condition")),
    ("NodeSpec", "podCIDRs", set()),
    (
        "NodeStatus",
        "conditions",
        merge_by("type", "NodeCondition"),
    ),
    ("NodeStatus", "addresses", merge_by("type", "NodeAddress")),
    (
        "NamespaceStatus",
        "conditions",
        merge_by("type", "NamespaceCondition"),
    ),
    (
        "PersistentVolumeClaimStatus",
        "conditions",
        merge_by("type", "PersistentVolumeClaimCondition"),
    ),
    // apps/v1
    ("DeploymentSpec", "template", object("PodTemplateSpec")),
    (
        "DeploymentSpec",
        "strategy",
        retain_keys("DeploymentStrategy"),
    ),
    (
        "DeploymentStatus",
        "conditions",
        merge_by("type", "DeploymentCondition"),
    ),
    ("ReplicaSetSpec", "template", object("PodTemplateSpec")),
    (
        "ReplicaSetStatus",
        "conditions",
        merge_by("type", "ReplicaSetCondition"),
    ),
    ("StatefulSetSpec", "template", object("PodTemplateSpec")),
    (
        "StatefulSetStatus",
        "conditions",
        merge_by("type", "StatefulSetCondition"),
    ),
    ("DaemonSetSpec", "template", object("PodTemplateSpec")),
    (
        "DaemonSetStatus",
        "conditions",
        merge_by("type", "DaemonSetCondition"),
    ),
    // batch/v1
    ("JobSpec", "template", object("PodTemplateSpec")),
    ("JobStatus", "conditions", merge_by("type", "JobCondition")),
    ("CronJobSpec", "jobTemplate", object("JobTemplateSpec")),
    ("JobTemplateSpec", "metadata", object("ObjectMeta")),
    ("JobTemplateSpec", "spec", object("JobSpec")),
    // autoscaling/v2 (v1 has no conditions, so the row is harmless there)
    (
        "HorizontalPodAutoscalerStatus",
        "conditions",
        merge_by("type", "HorizontalPodAutoscalerCondition"),
    ),
];

fn table() -> &'static HashMap<(&'static str, &'static str), FieldMeta> {
    static TABLE: OnceLock<HashMap<(&'static str, &'static str), FieldMeta>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let metadata = KINDS
            .iter()
            .map(|kind| ((*kind, "metadata"), object("ObjectMeta")));
        let fields = FIELDS
            .iter()
            .map(|(ty, field, meta)| ((*ty, *field), *meta));
        metadata.chain(fields).collect()
    })
}

/// The Go type of a kind's objects, or `None` for a kind without patch metadata.
pub(crate) fn kind_type(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|k| **k == kind).copied()
}

/// The metadata of `field` in Go type `ty`; untagged fields and unknown types get the default.
pub(crate) fn field(ty: Option<&str>, field: &str) -> FieldMeta {
    ty.and_then(|ty| table().get(&(ty, field)).copied())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referenced_type_is_reachable_from_a_kind() {
        // A row for a type that no field points to is a typo or a dead entry.
        let mut reachable: Vec<&str> = KINDS.to_vec();
        reachable.push("ObjectMeta");
        let mut i = 0;
        while i < reachable.len() {
            let ty = reachable[i];
            for (owner, _, meta) in FIELDS {
                if *owner == ty {
                    if let Some(next) = meta.ty {
                        if !reachable.contains(&next) {
                            reachable.push(next);
                        }
                    }
                }
            }
            i += 1;
        }
        for (owner, field, _) in FIELDS {
            assert!(
                reachable.contains(owner),
                "{owner}.{field} cannot be reached"
            );
        }
    }

    #[test]
    fn lookups() {
        let containers = field(Some("PodSpec"), "containers");
        assert!(containers.merges_list());
        assert_eq!(containers.merge_key, Some("name"));
        assert_eq!(containers.ty, Some("Container"));
        assert_eq!(
            field(Some("PodSpec"), "volumes").strategy,
            Strategy::MergeRetainKeys
        );
        assert!(!field(Some("PodSpec"), "tolerations").merges_list());
        assert_eq!(field(Some("Deployment"), "metadata"), object("ObjectMeta"));
        assert_eq!(field(None, "containers"), FieldMeta::default());
        assert_eq!(kind_type("Deployment"), Some("Deployment"));
        assert_eq!(kind_type("Widget"), None);
    }
}
