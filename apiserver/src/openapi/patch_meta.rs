//! Which list (and struct) fields merge rather than replace in a strategic merge patch.
//!
//! Kubernetes declares these with `patchStrategy`/`patchMergeKey` struct tags on the Go
//! types of k8s.io/api and k8s.io/apimachinery, and publishes them in OpenAPI as
//! `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`. The k8s-openapi
//! schemas do not carry them, so this table restates, for the types skiff serves, the
//! fields that have them in Kubernetes 1.33. kubectl reads them from the served document
//! to compute `kubectl apply` patches (see the module comment of `openapi`), and the
//! apiserver's strategic merge code can share the table.

use std::collections::BTreeMap;

use serde_json::Value;

use super::OpenApiError;

/// One field with a patch strategy.
#[derive(Debug)]
pub struct PatchMeta {
    /// Schema name of the type that has the field.
    pub schema: &'static str,
    /// The field's JSON name.
    pub field: &'static str,
    /// `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    /// The key that identifies an item of a merged list of objects; `None` for lists of
    /// scalars (merged as sets) and for `retainKeys` structs.
    pub merge_key: Option<&'static str>,
}

const fn merge(schema: &'static str, field: &'static str, key: &'static str) -> PatchMeta {
    PatchMeta {
        schema,
        field,
        strategy: "merge",
        merge_key: Some(key),
    }
}

macro_rules! core {
    ($ty:literal) => {
        concat!("io.k8s.api.core.v1.", $ty)
    };
}

macro_rules! apps {
    ($ty:literal) => {
        concat!("io.k8s.api.apps.v1.", $ty)
    };
}

/// The fields with a patch strategy among the types the served resources reach.
pub static PATCH_META: &[PatchMeta] = &[
    PatchMeta {
        schema: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        field: "finalizers",
        strategy: "merge",
        merge_key: None,
    },
    merge(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
    ),
    merge(core!("PodSpec"), "containers", "name"),
    merge(core!("PodSpec"), "initContainers", "name"),
    merge(core!("PodSpec"), "ephemeralContainers", "name"),
    merge(core!("PodSpec"), "imagePullSecrets", "name"),
    merge(core!("PodSpec"), "hostAliases", "ip"),
    merge(core!("PodSpec"), "topologySpreadConstraints", "topologyKey"),
    merge(core!("PodSpec"), "schedulingGates", "name"),
    PatchMeta {
        schema: core!("PodSpec"),
        field: "volumes",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    PatchMeta {
        schema: core!("PodSpec"),
        field: "resourceClaims",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    merge(core!("Container"), "ports", "containerPort"),
    merge(core!("Container"), "env", "name"),
    merge(core!("Container"), "volumeMounts", "mountPath"),
    merge(core!("Container"), "volumeDevices", "devicePath"),
    merge(core!("EphemeralContainer"), "ports", "containerPort"),
    merge(core!("EphemeralContainer"), "env", "name"),
    merge(core!("EphemeralContainer"), "volumeMounts", "mountPath"),
    merge(core!("EphemeralContainer"), "volumeDevices", "devicePath"),
    merge(core!("PodStatus"), "conditions", "type"),
    merge(core!("PodStatus"), "podIPs", "ip"),
    merge(core!("PodStatus"), "hostIPs", "ip"),
    PatchMeta {
        schema: core!("PodStatus"),
        field: "resourceClaimStatuses",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    PatchMeta {
        schema: core!("NodeSpec"),
        field: "podCIDRs",
        strategy: "merge",
        merge_key: None,
    },
    merge(core!("NodeStatus"), "conditions", "type"),
    merge(core!("NodeStatus"), "addresses", "type"),
    merge(core!("NamespaceStatus"), "conditions", "type"),
    merge(core!("ServiceSpec"), "ports", "port"),
    merge(core!("ServiceStatus"), "conditions", "type"),
    merge(core!("ServiceAccount"), "secrets", "name"),
    merge(core!("PersistentVolumeClaimStatus"), "conditions", "type"),
    PatchMeta {
        schema: apps!("DeploymentSpec"),
        field: "strategy",
        strategy: "retainKeys",
        merge_key: None,
    },
    merge(apps!("DeploymentStatus"), "conditions", "type"),
    merge(apps!("ReplicaSetStatus"), "conditions", "type"),
    merge(apps!("StatefulSetStatus"), "conditions", "type"),
    merge(apps!("DaemonSetStatus"), "conditions", "type"),
    merge("io.k8s.api.batch.v1.JobStatus", "conditions", "type"),
    merge(
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "type",
    ),
];

impl PatchMeta {
    /// Adds the extensions to the field's schema; a field the catalogue lacks is an error,
    /// so that a k8s-openapi upgrade that renames one cannot go unnoticed.
    pub(super) fn apply(&self, defs: &mut BTreeMap<String, Value>) -> Result<(), OpenApiError> {
        let missing = || OpenApiError::PatchField {
            schema: self.schema,
            field: self.field,
        };
        let field = defs
            .get_mut(self.schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(self.field))
            .and_then(Value::as_object_mut)
            .ok_or_else(missing)?;
        field.insert(
            "x-kubernetes-patch-strategy".into(),
            Value::String(self.strategy.into()),
        );
        if let Some(key) = self.merge_key {
            field.insert(
                "x-kubernetes-patch-merge-key".into(),
                Value::String(key.into()),
            );
        }
        Ok(())
    }
}
