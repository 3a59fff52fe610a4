//! Object helpers shared by the typed API, the cache and the controller runner.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, OwnerReference};
use k8s_openapi::Metadata;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// A list answer (`PodList`, `LeaseList`, …) for any item type, including untyped
/// `serde_json::Value` items.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "K: DeserializeOwned", serialize = "K: Serialize"))]
pub struct ObjectList<K> {
    /// `resourceVersion` of the list and the `continue` token of the next page.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects; Go servers may send `null` for none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub items: Vec<K>,
}

fn null_as_empty<'de, D, K>(d: D) -> Result<Vec<K>, D::Error>
where
    D: Deserializer<'de>,
    K: DeserializeOwned,
{
    Ok(Option::<Vec<K>>::deserialize(d)?.unwrap_or_default())
}

/// Names one object of a known kind: its namespace (None when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// Namespace; None for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to `name` in `namespace` (None when cluster-scoped).
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The reference of an object, from its metadata.
    pub fn from_obj<K: ResourceExt>(obj: &K) -> Self {
        ObjectRef::new(obj.namespace(), obj.name())
    }
}

impl fmt::Display for ObjectRef {
    /// `namespace/name`, or `name` for cluster-scoped objects, as client-go's keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Short-hands over `metadata` for any k8s-openapi resource.
pub trait ResourceExt: Metadata<Ty = ObjectMeta> {
    /// `metadata.name`, or "" when unset.
    fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace`.
    fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// `metadata.resourceVersion`.
    fn resource_version(&self) -> Option<&str> {
        self.metadata().resource_version.as_deref()
    }

    /// `metadata.uid`.
    fn uid(&self) -> Option<&str> {
        self.metadata().uid.as_deref()
    }

    /// `metadata.labels`, empty when unset.
    fn labels(&self) -> &BTreeMap<String, String> {
        self.metadata().labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// `metadata.ownerReferences`, empty when unset.
    fn owner_references(&self) -> &[OwnerReference] {
        self.metadata().owner_references.as_deref().unwrap_or(&[])
    }

    /// The owner reference marked `controller: true`, if any.
    fn controller_owner(&self) -> Option<&OwnerReference> {
        self.owner_references()
            .iter()
            .find(|r| r.controller == Some(true))
    }
}

impl<K: Metadata<Ty = ObjectMeta>> ResourceExt for K {}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn lists_decode_with_null_or_missing_items() {
        let l: ObjectList<Pod> =
            serde_json::from_str(r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":null}"#)
                .unwrap();
        assert!(l.items.is_empty());
        assert_eq!(l.metadata.resource_version.as_deref(), Some("5"));
        let l: ObjectList<serde_json::Value> =
            serde_json::from_str(r#"{"items":[{"a":1}]}"#).unwrap();
        assert_eq!(l.items.len(), 1);
    }

    #[test]
    fn object_refs_print_like_client_go_keys() {
        assert_eq!(ObjectRef::new(Some("ns"), "a").to_string(), "ns/a");
        assert_eq!(ObjectRef::new(None, "n1").to_string(), "n1");
    }
}
