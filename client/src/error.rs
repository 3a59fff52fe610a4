//! The one error type of the client.

use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered with a Kubernetes `Status` (any non-2xx answer, or an
    /// ERROR watch event). Boxed because `Status` is large and errors travel far.
    #[error("{}", describe_status(.0))]
    Api(Box<Status>),

    /// The request could not be sent or its answer not read (connection refused, reset,
    /// timed out, body cut short).
    #[error("{method} {path}: {}", error_chain(source))]
    Http {
        /// HTTP method of the failed request.
        method: String,
        /// Path and query of the failed request.
        path: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },

    /// A body from the server was not what we expected.
    #[error("decoding {what}: {source}")]
    Decode {
        /// What was being decoded and from where, e.g. "Pod from GET /api/v1/...".
        what: String,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },

    /// A request body could not be serialized.
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },

    /// A kubeconfig file could not be read, parsed, or did not name a usable server.
    #[error("kubeconfig {}: {message}", path.display())]
    Kubeconfig {
        /// The file (or the list of files) read.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// The configuration asks for TLS, which this client cannot speak yet.
    #[error("TLS is not supported by skiff's client yet: {0}")]
    TlsNotSupported(String),

    /// The request is malformed before it is even sent (a bad URL, a missing field
    /// manager for server-side apply, a namespaced item without a namespace).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// The Kubernetes `Status` when the server refused the request.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Api(status) => Some(status),
            _ => None,
        }
    }

    /// The HTTP code of a `Status` error (404, 409, 410, …).
    pub fn code(&self) -> Option<u16> {
        self.status()
            .and_then(|s| s.code)
            .and_then(|c| u16::try_from(c).ok())
    }

    /// The `reason` of a `Status` error (`NotFound`, `Conflict`, `AlreadyExists`, …).
    pub fn reason(&self) -> Option<&str> {
        self.status().and_then(|s| s.reason.as_deref())
    }

    /// The object (or the resource) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.reason() == Some("NotFound") || self.code() == Some(404)
    }

    /// An update lost an optimistic-concurrency race (stale resourceVersion).
    /// `AlreadyExists` is also a 409 but is not a conflict in this sense.
    pub fn is_conflict(&self) -> bool {
        self.reason() == Some("Conflict") || (self.code() == Some(409) && !self.is_already_exists())
    }

    /// A create found an object of that name already there.
    pub fn is_already_exists(&self) -> bool {
        self.reason() == Some("AlreadyExists")
    }

    /// The resourceVersion (or continue token) is too old: list again.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410) || matches!(self.reason(), Some("Expired" | "Gone"))
    }

    /// Builds an `Api` error from a Status, filling `code` when the server left it out.
    pub(crate) fn from_status(mut status: Status, http_code: u16) -> Error {
        if status.code.is_none() || status.code == Some(0) {
            status.code = Some(i32::from(http_code));
        }
        if status.reason.as_deref().is_none_or(str::is_empty) {
            status.reason = Some(reason_for_code(http_code).to_string());
        }
        Error::Api(Box::new(status))
    }

    /// Builds an `Api` error for an answer whose body is not a Status (a proxy's page,
    /// plain text), as client-go does: the reason comes from the HTTP code.
    pub(crate) fn from_unstructured(http_code: u16, body: &[u8]) -> Error {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("the server responded with HTTP {http_code}")
        } else {
            // A whole HTML page in an error message helps nobody.
            text.chars().take(512).collect()
        };
        Error::Api(Box::new(Status {
            code: Some(i32::from(http_code)),
            message: Some(message),
            reason: Some(reason_for_code(http_code).to_string()),
            status: Some("Failure".to_string()),
            ..Status::default()
        }))
    }
}

/// reqwest's own message rarely says why ("error sending request"); the cause
/// ("Connection refused") is further down the source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

/// The `StatusReason` Kubernetes uses for an HTTP code.
fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn describe_status(status: &Status) -> String {
    let message = status.message.as_deref().unwrap_or("request failed");
    match (status.reason.as_deref(), status.code) {
        (Some(reason), Some(code)) => format!("{message} ({reason}, {code})"),
        (Some(reason), None) => format!("{message} ({reason})"),
        (None, Some(code)) => format!("{message} ({code})"),
        (None, None) => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: i32, reason: &str) -> Error {
        Error::Api(Box::new(Status {
            code: Some(code),
            reason: Some(reason.into()),
            message: Some("m".into()),
            ..Status::default()
        }))
    }

    #[test]
    fn status_helpers() {
        assert!(status(404, "NotFound").is_not_found());
        assert!(status(409, "Conflict").is_conflict());
        assert!(!status(409, "AlreadyExists").is_conflict());
        assert!(status(409, "AlreadyExists").is_already_exists());
        assert!(status(410, "Expired").is_gone());
        assert!(!status(500, "InternalError").is_gone());
        assert_eq!(status(404, "NotFound").to_string(), "m (NotFound, 404)");
    }

    #[test]
    fn unstructured_errors_get_a_reason_from_the_code() {
        let e = Error::from_unstructured(404, b"404 page not found\n");
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "404 page not found (NotFound, 404)");
        let e = Error::from_unstructured(503, b"");
        assert_eq!(e.reason(), Some("ServiceUnavailable"));
    }

    #[test]
    fn statuses_without_code_take_the_http_one() {
        let e = Error::from_status(Status::default(), 410);
        assert!(e.is_gone());
        assert_eq!(e.reason(), Some("Gone"));
    }
}
