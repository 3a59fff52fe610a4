//! The one error type of the kubelet.

use std::path::PathBuf;

/// Result with the kubelet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong running a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or setting is unusable; the kubelet does not start.
    #[error("configuration: {0}")]
    Config(String),

    /// The API server refused a request or could not be reached.
    #[error("apiserver: {0}")]
    Api(#[from] skiff_client::Error),

    /// containerd's socket could not be reached.
    #[error("containerd at {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What tonic reported.
        #[source]
        source: containerd_client::tonic::transport::Error,
    },

    /// A containerd call failed.
    #[error("containerd {op}: {}", .source.message())]
    Containerd {
        /// The call, e.g. "Tasks.Create".
        op: &'static str,
        /// containerd's answer.
        #[source]
        source: tonic::Status,
    },

    /// An image reference does not parse.
    #[error("invalid image reference {reference:?}: {message}")]
    InvalidImage {
        /// The reference as written in the pod.
        reference: String,
        /// What is wrong with it.
        message: String,
    },

    /// Pulling or importing an image failed.
    #[error("image {image}: {message}")]
    Image {
        /// The image reference.
        image: String,
        /// What went wrong.
        message: String,
    },

    /// A CNI plugin failed or its configuration is unusable.
    #[error("CNI: {0}")]
    Cni(String),

    /// What a container's config refers to is missing (a ConfigMap, Secret or key):
    /// CreateContainerConfigError, retried.
    #[error("{0}")]
    ContainerConfig(String),

    /// A pod spec asks for something the kubelet cannot (yet) run.
    #[error("{0}")]
    Spec(String),

    /// A line of a container log file is not in the CRI log format.
    #[error("container log line {line:?}: {message}")]
    LogFormat {
        /// The line (its start).
        line: String,
        /// What is wrong with it.
        message: String,
    },

    /// A file or namespace operation on the node failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Whether containerd answered NotFound.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Containerd { source, .. } if source.code() == tonic::Code::NotFound)
    }

    /// Whether containerd answered AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Containerd { source, .. } if source.code() == tonic::Code::AlreadyExists)
    }
}
