//! Validation of API objects as Kubernetes' API server does it, with its field paths and
//! messages, so that kubectl users see the same errors.
//!
//! Objects are the JSON serialization of k8s-openapi types (already type-checked by a
//! decode/encode roundtrip), and are expected to have been through
//! [`crate::defaults::apply_defaults`] as Kubernetes validates after defaulting. A field
//! that defaulting always fills is read as its default when absent, so an undefaulted
//! object gets the same verdict as its defaulted form.
//!
//! The rules follow Kubernetes 1.33 (`pkg/apis/*/validation`), plus the rejections of
//! fields skiff's kubelet cannot honour (see [`skiff`]).

mod apps;
pub(crate) mod batch;
mod cluster;
mod config;
mod cron;
mod json;
mod meta;
pub mod names;
mod network;
mod path;
mod pod;
pub mod quantity;
mod service;
pub mod skiff;
mod storage;

use std::fmt;

use serde_json::Value;

pub use config::MAX_DATA_SIZE;
pub use meta::TOTAL_ANNOTATION_SIZE_LIMIT;
pub use service::NODE_PORT_RANGE;

pub(crate) use json::{go_quote, render};
pub(crate) use path::Path;

/// The kinds of field error Kubernetes reports (`field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A required field is missing or empty.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// A value is not one of an enumerated set.
    NotSupported,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A value is well-formed but not allowed here or now.
    Forbidden,
    /// A value is longer than allowed.
    TooLong,
    /// A list has more items than allowed.
    TooMany,
    /// A reference names something that does not exist (e.g. a volume mount's volume).
    NotFound,
}

impl FieldErrorKind {
    /// The `reason` of a Kubernetes `StatusCause` (`FieldValueRequired`, …).
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The words that start the message body (`Required value`, `Invalid value`, …).
    pub fn label(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::NotFound => "Not found",
        }
    }

    /// Whether Kubernetes prints the bad value in the message for this kind.
    fn shows_value(self) -> bool {
        !matches!(
            self,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        )
    }
}

/// One field-level validation error, as Kubernetes' `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The JSON path of the field (`spec.containers[0].image`).
    pub field: String,
    /// The explanation after the value (may be empty).
    pub detail: String,
    /// The bad value as Kubernetes prints it: Go-quoted for strings (`"Foo"`), plain for
    /// numbers and booleans, compact JSON for objects and lists; `None` when not shown.
    pub value: Option<String>,
}

impl FieldError {
    /// A `Required value` error.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            kind: FieldErrorKind::Required,
            field: field.into(),
            detail: detail.into(),
            value: None,
        }
    }

    /// An `Invalid value` error for a JSON value.
    pub fn invalid(
        field: impl Into<String>,
        value: &Value,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            detail: detail.into(),
            value: Some(render(value)),
        }
    }

    /// An `Invalid value` error for a string value.
    pub fn invalid_str(
        field: impl Into<String>,
        value: &str,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError::invalid(field, &Value::from(value), detail)
    }

    /// An `Unsupported value` error listing the supported values, quoted, in the given order.
    pub fn not_supported(
        field: impl Into<String>,
        value: &Value,
        supported: &[&str],
    ) -> FieldError {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            detail,
            value: Some(render(value)),
        }
    }

    /// A `Duplicate value` error.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> FieldError {
        FieldError {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            detail: String::new(),
            value: Some(render(value)),
        }
    }

    /// A `Forbidden` error.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            kind: FieldErrorKind::Forbidden,
            field: field.into(),
            detail: detail.into(),
            value: None,
        }
    }

    /// A `Too long` error for a limit in bytes.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> FieldError {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        FieldError {
            kind: FieldErrorKind::TooLong,
            field: field.into(),
            detail: format!("may not be more than {max_bytes} {unit}"),
            value: None,
        }
    }

    /// A `Too many` error for a list of `actual` items where `max` are allowed.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> FieldError {
        let unit = if max == 1 { "item" } else { "items" };
        FieldError {
            kind: FieldErrorKind::TooMany,
            field: field.into(),
            detail: format!("must have at most {max} {unit}"),
            value: Some(actual.to_string()),
        }
    }

    /// A `Not found` error for a reference to something that does not exist.
    pub fn not_found(field: impl Into<String>, value: &Value) -> FieldError {
        FieldError {
            kind: FieldErrorKind::NotFound,
            field: field.into(),
            detail: String::new(),
            value: Some(render(value)),
        }
    }

    /// The `reason` of the `StatusCause` for this error.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the field, as a `StatusCause.message` (`Required value`).
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        if self.kind.shows_value() {
            if let Some(v) = &self.value {
                s.push_str(": ");
                s.push_str(v);
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The full message, `field: body`, as Kubernetes prints it.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// The message of Kubernetes' `NewInvalid`: `Deployment.apps "web" is invalid: [a, b]`,
/// without brackets for a single error and with repeated messages dropped.
pub fn invalid_message(qualified_kind: &str, name: &str, errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.message();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    let agg = match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    };
    format!("{qualified_kind} {} is invalid: {agg}", go_quote(name))
}

/// Validates an object about to be created. `kind` is the object's kind (`Deployment`).
pub fn validate_create(kind: &str, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(FieldError::invalid("", obj, "must be an object"));
        return errs;
    }
    meta::validate_object_meta(kind, obj, &mut errs);
    validate_kind(kind, obj, None, &mut errs);
    errs
}

/// Validates an update of `old` into `obj`: the create rules plus what may not change.
/// Metadata identity (name, namespace, uid, creationTimestamp) is checked by the server.
pub fn validate_update(kind: &str, obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(FieldError::invalid("", obj, "must be an object"));
        return errs;
    }
    meta::validate_object_meta(kind, obj, &mut errs);
    validate_kind(kind, obj, Some(old), &mut errs);
    errs
}

/// Every volume source a pod volume can have, in Kubernetes' order.
pub(crate) fn pod_volume_sources() -> &'static [&'static str] {
    pod::ALL_VOLUME_SOURCES
}

/// The rules of one kind; `old` is the stored object on update.
fn validate_kind(kind: &str, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    match kind {
        "Pod" => pod::validate_pod(obj, old, errs),
        "Deployment" => apps::validate_deployment(obj, old, errs),
        "ReplicaSet" => apps::validate_replica_set(obj, old, errs),
        "StatefulSet" => apps::validate_stateful_set(obj, old, errs),
        "DaemonSet" => apps::validate_daemon_set(obj, old, errs),
        "ControllerRevision" => apps::validate_controller_revision(obj, old, errs),
        "Job" => batch::validate_job(obj, old, errs),
        "CronJob" => batch::validate_cron_job(obj, old, errs),
        "Service" => service::validate_service(obj, old, errs),
        "Endpoints" => service::validate_endpoints(obj, errs),
        "EndpointSlice" => service::validate_endpoint_slice(obj, old, errs),
        "Ingress" => network::validate_ingress(obj, errs),
        "IngressClass" => network::validate_ingress_class(obj, old, errs),
        "ConfigMap" => config::validate_config_map(obj, old, errs),
        "Secret" => config::validate_secret(obj, old, errs),
        "Namespace" => cluster::validate_namespace(obj, errs),
        "Node" => cluster::validate_node(obj, old, errs),
        "ResourceQuota" => cluster::validate_resource_quota(obj, old, errs),
        "LimitRange" => cluster::validate_limit_range(obj, errs),
        "Lease" => cluster::validate_lease(obj, errs),
        "HorizontalPodAutoscaler" => cluster::validate_hpa(obj, errs),
        "PersistentVolume" => storage::validate_persistent_volume(obj, old, errs),
        "PersistentVolumeClaim" => storage::validate_persistent_volume_claim(obj, old, errs),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
