//! The apiserver's one error type. Every error a client can cause or see becomes a
//! Kubernetes `Status` with the code and reason Kubernetes uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skiff_api::validation::FieldError;
use skiff_api::ResourceType;

/// Everything that can go wrong in the apiserver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or configuration value is wrong.
    #[error("{0}")]
    Config(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A request failed as Kubernetes would fail it.
    #[error("{} ({})", .0.message, .0.code)]
    Status(Box<Status>),
    /// The store could not be reached or answered with an error.
    #[error("the store failed: {0}")]
    Store(#[from] etcd_client::Error),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// A Kubernetes `Status` failure: HTTP code, machine-readable reason, message, details.
#[derive(Debug, Clone)]
pub struct Status {
    /// The HTTP status code.
    pub code: u16,
    /// Kubernetes' reason (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// `details`: name, group, kind and causes, as Kubernetes fills them.
    pub details: Option<Value>,
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn details(rt: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rt.group, "kind": rt.plural})
}

impl Error {
    fn status(code: u16, reason: &'static str, message: String, details: Option<Value>) -> Error {
        Error::Status(Box::new(Status {
            code,
            reason,
            message,
            details,
        }))
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::status(400, "BadRequest", message.into(), None)
    }

    /// 404 NotFound for an object: `pods "web" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> Error {
        Error::status(
            404,
            "NotFound",
            format!("{} \"{}\" not found", rt.qualified_name(), name),
            Some(details(rt, name)),
        )
    }

    /// 404 NotFound for a path that names nothing skiff serves.
    pub fn no_route(path: &str) -> Error {
        Error::status(
            404,
            "NotFound",
            format!("the server could not find the requested resource (path {path})"),
            None,
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &str, what: &str) -> Error {
        Error::status(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {what}"),
            None,
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Error {
        Error::status(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", rt.qualified_name(), name),
            Some(details(rt, name)),
        )
    }

    /// 409 Conflict for a stale resourceVersion, in Kubernetes' words.
    pub fn conflict(rt: &ResourceType, name: &str) -> Error {
        Error::conflict_because(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a given reason.
    pub fn conflict_because(rt: &ResourceType, name: &str, why: &str) -> Error {
        Error::status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                rt.qualified_name(),
                name,
                why
            ),
            Some(details(rt, name)),
        )
    }

    /// 410 Gone (Expired) for a compacted resourceVersion.
    pub fn gone(message: impl Into<String>) -> Error {
        Error::status(410, "Expired", message.into(), None)
    }

    /// 403 Forbidden.
    pub fn forbidden(rt: &ResourceType, name: &str, why: impl std::fmt::Display) -> Error {
        Error::status(
            403,
            "Forbidden",
            format!("{} \"{}\" is forbidden: {}", rt.qualified_name(), name, why),
            Some(details(rt, name)),
        )
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Error {
        Error::status(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
            None,
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str, supported: &str) -> Error {
        Error::status(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {supported} (got {content_type:?})"),
            None,
        )
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(rt: &ResourceType, name: &str, errors: &[FieldError]) -> Error {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason(), "message": e.message(), "field": e.field}))
            .collect();
        let mut d = details(rt, name);
        d["kind"] = json!(rt.kind);
        d["causes"] = json!(causes);
        Error::status(
            422,
            "Invalid",
            skiff_api::validation::invalid_message(&rt.qualified_kind(), name, errors),
            Some(d),
        )
    }

    /// 422 Invalid with a plain message (e.g. `sendInitialEvents`).
    pub fn invalid_request(message: impl Into<String>) -> Error {
        Error::status(422, "Invalid", message.into(), None)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::status(500, "InternalError", message.into(), None)
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::status(503, "ServiceUnavailable", message.into(), None)
    }

    /// The HTTP code and the Status body this error is answered with.
    pub fn to_status(&self) -> Status {
        match self {
            Error::Status(s) => (**s).clone(),
            Error::Store(e) => Status {
                code: 503,
                reason: "ServiceUnavailable",
                message: format!("the store is unavailable: {e}; check that `skiff store` members are running and reachable (--etcd-servers)"),
                details: Some(json!({"retryAfterSeconds": 1})),
            },
            other => Status {
                code: 500,
                reason: "InternalError",
                message: other.to_string(),
                details: None,
            },
        }
    }

    /// Whether this is a 409 Conflict (stale resourceVersion).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Status(s) if s.reason == "Conflict")
    }
}

impl Status {
    /// The Status object as JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.to_status();
        let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            status.to_json().to_string(),
        )
            .into_response()
    }
}
