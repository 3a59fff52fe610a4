//! Server-side printing: every served kind as a `meta.k8s.io/v1` Table with the columns
//! Kubernetes' printers define (`pkg/printers/internalversion/printers.go`, Kubernetes
//! 1.33), so that `kubectl get` shows what it shows against a real cluster.
//!
//! The API server prints wide (every column, priority 1 included) and kubectl hides the
//! priority-1 columns unless asked for `-o wide`, so a row always has one cell per column.
//! Cells are computed from the object's JSON. Fields that the API server's defaulting
//! always fills (and that Kubernetes' printers therefore never see unset) read as their
//! default when missing; anything else missing prints as Kubernetes prints an unset field.

mod access;
mod apps;
mod batch;
mod col;
mod core;
mod format;
mod other;
mod pod;
mod quantity;

use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::resource::RESOURCES;
use col::Col;

pub use format::human_duration;

/// One column of a Table, serialized as `meta.k8s.io/v1` `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDefinition {
    /// Column title; kubectl prints it upper-cased (`Nominated Node` → `NOMINATED NODE`).
    pub name: String,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// OpenAPI format; `name` marks the column holding the object's name.
    pub format: String,
    /// What the column shows.
    pub description: String,
    /// 0 for columns shown by default, 1 for those shown only with `-o wide`.
    pub priority: i32,
}

/// What each row carries besides its cells: Kubernetes' `includeObject` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// The object's metadata as a `PartialObjectMetadata` (Kubernetes' default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads the query parameter; absent or empty means [`IncludeObject::Metadata`].
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, TableError> {
        value.unwrap_or("").parse()
    }
}

impl FromStr for IncludeObject {
    type Err = TableError;

    fn from_str(s: &str) -> Result<IncludeObject, TableError> {
        match s {
            "None" => Ok(IncludeObject::None),
            "Metadata" | "" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            other => Err(TableError::UnknownIncludeObject(other.to_string())),
        }
    }
}

/// Why a Table request cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    /// `includeObject` is not one of `None`, `Metadata`, `Object` (a 400 Bad Request).
    #[error("unrecognized includeObject value: {0:?}")]
    UnknownIncludeObject(String),
}

/// A kind's columns and how to fill them.
struct Printer {
    kind: &'static str,
    columns: &'static [Col],
    cells: fn(&Value, Timestamp) -> Vec<Value>,
}

/// Every kind with a printer of its own. LimitRange has none in Kubernetes either and
/// gets the default columns.
const PRINTERS: &[Printer] = &[
    printer("Pod", pod::COLUMNS, pod::cells),
    printer("Node", core::NODE, core::node),
    printer("Namespace", core::NAMESPACE, core::namespace),
    printer("Service", core::SERVICE, core::service),
    printer("Endpoints", core::ENDPOINTS, core::endpoints),
    printer("ConfigMap", core::CONFIG_MAP, core::config_map),
    printer("Secret", core::SECRET, core::secret),
    printer("Event", core::EVENT, core::event),
    printer(
        "ServiceAccount",
        core::SERVICE_ACCOUNT,
        core::service_account,
    ),
    printer("ResourceQuota", core::RESOURCE_QUOTA, core::resource_quota),
    printer(
        "PersistentVolume",
        core::PERSISTENT_VOLUME,
        core::persistent_volume,
    ),
    printer(
        "PersistentVolumeClaim",
        core::PERSISTENT_VOLUME_CLAIM,
        core::persistent_volume_claim,
    ),
    printer("Deployment", apps::DEPLOYMENT, apps::deployment),
    printer("ReplicaSet", apps::REPLICA_SET, apps::replica_set),
    printer(
        "ReplicationController",
        apps::REPLICA_SET,
        apps::replication_controller,
    ),
    printer("StatefulSet", apps::STATEFUL_SET, apps::stateful_set),
    printer("DaemonSet", apps::DAEMON_SET, apps::daemon_set),
    printer(
        "ControllerRevision",
        apps::CONTROLLER_REVISION,
        apps::controller_revision,
    ),
    printer("Job", batch::JOB, batch::job),
    printer("CronJob", batch::CRON_JOB, batch::cron_job),
    printer(
        "HorizontalPodAutoscaler",
        other::HORIZONTAL_POD_AUTOSCALER,
        other::horizontal_pod_autoscaler,
    ),
    printer("Lease", other::LEASE, other::lease),
    printer(
        "EndpointSlice",
        other::ENDPOINT_SLICE,
        other::endpoint_slice,
    ),
    printer("Ingress", other::INGRESS, other::ingress),
    printer("IngressClass", other::INGRESS_CLASS, other::ingress_class),
];

const fn printer(
    kind: &'static str,
    columns: &'static [Col],
    cells: fn(&Value, Timestamp) -> Vec<Value>,
) -> Printer {
    Printer {
        kind,
        columns,
        cells,
    }
}

/// Kubernetes' default table (`rest.NewDefaultTableConvertor`): name and creation time.
const DEFAULT_COLUMNS: &[Col] = &[col::NAME, col::CREATED_AT];

fn default_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![
        json!(access::str_at(obj, &["metadata", "name"])),
        json!(format::rfc3339(access::time_at(
            obj,
            &["metadata", "creationTimestamp"]
        ))),
    ]
}

fn printer_for(kind: &str) -> Option<&'static Printer> {
    PRINTERS.iter().find(|p| p.kind == kind)
}

/// Whether `kind` has columns of its own rather than the default name and creation time.
pub fn has_printer(kind: &str) -> bool {
    printer_for(kind).is_some()
}

/// The columns of `kind`'s Table, wide ones included; the default NAME, CREATED AT for
/// a kind without a printer.
pub fn column_definitions(kind: &str) -> Vec<ColumnDefinition> {
    printer_for(kind)
        .map_or(DEFAULT_COLUMNS, |p| p.columns)
        .iter()
        .map(Col::definition)
        .collect()
}

/// The cells of one object's row at time `now`, one per column of
/// [`column_definitions`]. Never fails: odd input prints as Kubernetes prints unset fields.
pub fn row_cells(kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer_for(kind) {
        Some(p) => (p.cells)(obj, now),
        None => default_cells(obj, now),
    }
}

/// The Table of `objects` of `kind`, as the API server answers a request with
/// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
///
/// `metadata` is left empty: the caller fills in the list's `resourceVersion` and
/// `continue` (or, for a single object, its `resourceVersion`) with [`set_list_meta`].
pub fn table(
    kind: &str,
    objects: &[Value],
    now: Timestamp,
    include_object: IncludeObject,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(row_cells(kind, obj, now)));
            if kind == "Pod" {
                if let Some(conditions) = pod::row_conditions(obj) {
                    row.insert("conditions".into(), conditions);
                }
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_object_metadata(obj));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), with_type_meta(kind, obj));
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions(kind),
        "rows": rows,
    })
}

/// Sets the Table's list metadata; empty or absent values are left out, as Kubernetes
/// omits them.
pub fn set_list_meta(
    table: &mut Value,
    resource_version: &str,
    continue_token: Option<&str>,
    remaining_item_count: Option<i64>,
) {
    let Some(table) = table.as_object_mut() else {
        return;
    };
    let mut meta = Map::new();
    if !resource_version.is_empty() {
        meta.insert("resourceVersion".into(), json!(resource_version));
    }
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        meta.insert("continue".into(), json!(token));
    }
    if let Some(count) = remaining_item_count {
        meta.insert("remainingItemCount".into(), json!(count));
    }
    table.insert("metadata".into(), Value::Object(meta));
}

/// The object's metadata wrapped as `meta.k8s.io/v1` `PartialObjectMetadata`.
fn partial_object_metadata(obj: &Value) -> Value {
    let metadata = access::get(obj, &["metadata"])
        .filter(|m| m.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

/// The whole object, with `apiVersion` and `kind` filled in from the registry if the
/// stored form lacks them (Kubernetes always sends them).
fn with_type_meta(kind: &str, obj: &Value) -> Value {
    let mut obj = obj.clone();
    let resource = RESOURCES.iter().find(|r| r.kind == kind);
    if let (Some(map), Some(r)) = (obj.as_object_mut(), resource) {
        map.entry("apiVersion")
            .or_insert_with(|| json!(r.api_version));
        map.entry("kind").or_insert_with(|| json!(r.kind));
    }
    obj
}

#[cfg(test)]
mod tests;
