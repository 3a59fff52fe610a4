//! The schema catalogue: every type the served resources reach, generated from the
//! k8s-openapi types' `JsonSchema` impls, plus what those impls lack and kubectl needs
//! (list kinds, `x-kubernetes-group-version-kind`, the strategic-merge-patch extensions).
//!
//! Schemas are kept here in one neutral form, Swagger 2.0 style: references read
//! `#/definitions/<name>` and may have siblings (the field's description). The v2 and v3
//! renderers rewrite from that.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authentication, autoscaling::v1 as autoscaling_v1,
    autoscaling::v2 as autoscaling, batch::v1 as batch, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, networking::v1 as networking,
    policy::v1 as policy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use k8s_openapi::Resource;
use serde_json::{json, Map, Value};
use skiff_api::resource::{ResourceType, Subresource, RESOURCES};

use super::patch_meta::PATCH_META;
use super::OpenApiError;

/// The prefix of references in the neutral form.
pub(super) const REF_PREFIX: &str = "#/definitions/";

pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// A group, version and kind, as the `x-kubernetes-group-version-kind` extension spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// A Rust type whose schema a document needs, with the kind it is served as.
struct TypedKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    name: fn() -> Cow<'static, str>,
    add: fn(&mut SchemaGenerator),
}

macro_rules! typed {
    ($ty:ty) => {
        TypedKind {
            group: <$ty as Resource>::GROUP,
            version: <$ty as Resource>::VERSION,
            kind: <$ty as Resource>::KIND,
            name: <$ty as JsonSchema>::schema_name,
            add: |generator| {
                generator.subschema_for::<$ty>();
            },
        }
    };
}

/// The Rust type of every kind skiff serves or answers with. `RESOURCES` names kinds but
/// not their types, so this table ties the two; a served kind missing here is an error at
/// start (and in the tests).
static TYPED_KINDS: &[TypedKind] = &[
    typed!(core::Namespace),
    typed!(core::Pod),
    typed!(core::Node),
    typed!(core::Service),
    typed!(core::Endpoints),
    typed!(core::ConfigMap),
    typed!(core::Secret),
    typed!(core::Event),
    typed!(core::ServiceAccount),
    typed!(core::ResourceQuota),
    typed!(core::LimitRange),
    typed!(core::PersistentVolume),
    typed!(core::PersistentVolumeClaim),
    typed!(core::ReplicationController),
    typed!(apps::Deployment),
    typed!(apps::ReplicaSet),
    typed!(apps::StatefulSet),
    typed!(apps::DaemonSet),
    typed!(apps::ControllerRevision),
    typed!(batch::Job),
    typed!(batch::CronJob),
    typed!(autoscaling::HorizontalPodAutoscaler),
    typed!(coordination::Lease),
    typed!(discovery::EndpointSlice),
    typed!(networking::Ingress),
    typed!(networking::IngressClass),
    // Bodies of subresources.
    typed!(autoscaling_v1::Scale),
    typed!(core::Binding),
    typed!(policy::Eviction),
    typed!(authentication::TokenRequest),
];

/// Every schema the documents may use, in the neutral form.
pub(super) struct Catalog {
    /// Schema name → schema.
    pub defs: BTreeMap<String, Value>,
    /// (group, kind) → schema name, for every kind in `TYPED_KINDS`.
    names: BTreeMap<(String, String), String>,
}

impl Catalog {
    /// Generates the schemas of every served type and the types they reference.
    pub fn build() -> Result<Catalog, OpenApiError> {
        let settings = SchemaSettings::draft07().with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
            // The transforms would fold `$ref` siblings away; the renderers decide that.
            s.transforms.clear();
        });
        let mut generator = SchemaGenerator::new(settings);
        let mut names = BTreeMap::new();
        for t in TYPED_KINDS {
            (t.add)(&mut generator);
            names.insert(
                (t.group.to_string(), t.kind.to_string()),
                (t.name)().into_owned(),
            );
        }
        generator.subschema_for::<meta::Status>();
        generator.subschema_for::<meta::DeleteOptions>();
        generator.subschema_for::<meta::WatchEvent<core::Pod>>();
        generator.subschema_for::<meta::Patch>();
        let mut defs: BTreeMap<String, Value> =
            generator.take_definitions(false).into_iter().collect();

        for r in RESOURCES {
            let name = names
                .get(&(r.group.to_string(), r.kind.to_string()))
                .ok_or_else(|| OpenApiError::UnknownKind(r.qualified_kind()))?
                .clone();
            set_gvk(&mut defs, &name, vec![Gvk::new(r.group, r.version, r.kind)])?;
            let list_name = list_schema_name(&name, r.list_kind);
            defs.insert(list_name, list_schema(r, &name));
        }
        for t in TYPED_KINDS {
            if RESOURCES
                .iter()
                .all(|r| r.kind != t.kind || r.group != t.group)
            {
                set_gvk(
                    &mut defs,
                    &(t.name)(),
                    vec![Gvk::new(t.group, t.version, t.kind)],
                )?;
            }
        }
        set_gvk(&mut defs, STATUS, vec![Gvk::new("", "v1", "Status")])?;
        // Kubernetes registers these two in every group-version; so does skiff.
        let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
        for r in RESOURCES {
            if !gvs.contains(&(r.group, r.version)) {
                gvs.push((r.group, r.version));
            }
        }
        for name in [DELETE_OPTIONS, WATCH_EVENT] {
            let kind = name.rsplit('.').next().unwrap_or(name);
            let gvks = gvs.iter().map(|(g, v)| Gvk::new(g, v, kind)).collect();
            set_gvk(&mut defs, name, gvks)?;
        }
        for entry in PATCH_META {
            entry.apply(&mut defs)?;
        }
        let catalog = Catalog { defs, names };
        catalog.check_references()?;
        Ok(catalog)
    }

    /// The schema name of a kind in a group.
    pub fn name_of(&self, group: &str, kind: &str) -> Result<&str, OpenApiError> {
        self.names
            .get(&(group.to_string(), kind.to_string()))
            .map(String::as_str)
            .ok_or_else(|| OpenApiError::UnknownKind(format!("{kind}.{group}")))
    }

    /// The schema name of a resource's list kind.
    pub fn list_name_of(&self, r: &ResourceType) -> Result<String, OpenApiError> {
        Ok(list_schema_name(
            self.name_of(r.group, r.kind)?,
            r.list_kind,
        ))
    }

    /// The schemas a group-version's document needs: its kinds, their lists, the meta
    /// types its operations use, the bodies of its subresources, and everything those
    /// reference.
    pub fn closure_for(
        &self,
        group: &str,
        version: &str,
    ) -> Result<BTreeSet<String>, OpenApiError> {
        let mut roots: Vec<String> = [STATUS, DELETE_OPTIONS, WATCH_EVENT, PATCH]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for r in skiff_api::resource::in_group_version(group, version) {
            roots.push(self.name_of(r.group, r.kind)?.to_string());
            roots.push(self.list_name_of(r)?);
            for sub in r.subresources {
                if let Some((g, _, k)) = subresource_kind(*sub) {
                    roots.push(self.name_of(g, k)?.to_string());
                }
            }
        }
        self.closure(roots)
    }

    /// Every schema reachable from `roots`.
    pub fn closure(&self, roots: Vec<String>) -> Result<BTreeSet<String>, OpenApiError> {
        let mut seen = BTreeSet::new();
        let mut todo = roots;
        while let Some(name) = todo.pop() {
            if seen.contains(&name) {
                continue;
            }
            let schema = self
                .defs
                .get(&name)
                .ok_or_else(|| OpenApiError::DanglingReference(name.clone()))?;
            collect_refs(schema, &mut todo);
            seen.insert(name);
        }
        Ok(seen)
    }

    fn check_references(&self) -> Result<(), OpenApiError> {
        let mut refs = Vec::new();
        for schema in self.defs.values() {
            collect_refs(schema, &mut refs);
        }
        match refs.into_iter().find(|r| !self.defs.contains_key(r)) {
            Some(missing) => Err(OpenApiError::DanglingReference(missing)),
            None => Ok(()),
        }
    }
}

/// The (group, version, kind) of the body a subresource takes and returns, when it has a
/// schema of its own (status and finalize use the object itself; log, exec and portforward
/// are streams).
pub(super) fn subresource_kind(
    sub: Subresource,
) -> Option<(&'static str, &'static str, &'static str)> {
    match sub {
        Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
        Subresource::Binding => Some(("", "v1", "Binding")),
        Subresource::Eviction => Some(("policy", "v1", "Eviction")),
        Subresource::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
        Subresource::Status
        | Subresource::Finalize
        | Subresource::Log
        | Subresource::Exec
        | Subresource::Attach
        | Subresource::PortForward => None,
    }
}

fn list_schema_name(item_name: &str, list_kind: &str) -> String {
    match item_name.rsplit_once('.') {
        Some((package, _)) => format!("{package}.{list_kind}"),
        None => list_kind.to_string(),
    }
}

/// A `<Kind>List` schema: k8s-openapi has a generic `List<T>` without a schema of its own.
fn list_schema(r: &ResourceType, item_name: &str) -> Value {
    json!({
        "description": format!("{} is a list of {} objects.", r.list_kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "The versioned schema of this representation, `group/version` or just the version for the core group.",
                "type": "string",
            },
            "items": {
                "description": format!("The {} in the list.", r.plural),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{item_name}")},
            },
            "kind": {
                "description": "The kind of this representation, in CamelCase.",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("{REF_PREFIX}{LIST_META}"),
                "description": "The list's metadata: its resourceVersion and continue token.",
            },
        },
        "x-kubernetes-group-version-kind": [Gvk::new(r.group, r.version, r.list_kind).to_json()],
    })
}

fn set_gvk(
    defs: &mut BTreeMap<String, Value>,
    name: &str,
    gvks: Vec<Gvk>,
) -> Result<(), OpenApiError> {
    let schema = defs
        .get_mut(name)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| OpenApiError::DanglingReference(name.to_string()))?;
    let list = gvks.iter().map(Gvk::to_json).collect();
    schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
    Ok(())
}

/// Pushes the names of every schema `value` references.
pub(super) fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(REF_PREFIX) {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Rewrites every reference of a neutral schema to `prefix`, and when `wrap_siblings` moves
/// a reference that has siblings into a one-element `allOf`, as OpenAPI 3.0 ignores
/// `$ref` siblings (Kubernetes' own v3 documents take the same shape).
pub(super) fn rewrite_refs(value: &Value, prefix: &str, wrap_siblings: bool) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            let mut reference = None;
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        let name = r.strip_prefix(REF_PREFIX).unwrap_or(r);
                        reference = Some(format!("{prefix}{name}"));
                    }
                    _ => {
                        out.insert(k.clone(), rewrite_refs(v, prefix, wrap_siblings));
                    }
                }
            }
            match reference {
                Some(r) if wrap_siblings && !out.is_empty() => {
                    out.insert("allOf".into(), json!([{"$ref": r}]));
                }
                Some(r) => {
                    out.insert("$ref".into(), Value::String(r));
                }
                None => {}
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| rewrite_refs(v, prefix, wrap_siblings))
                .collect(),
        ),
        other => other.clone(),
    }
}
