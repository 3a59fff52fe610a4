//! The one error type of the controller manager.

/// Result with the controller manager's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the controller manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed; reconciles retry these with back-off.
    #[error(transparent)]
    Client(#[from] skiff_client::Error),

    /// A flag or setting is wrong; fatal at start.
    #[error("{0}")]
    Config(String),

    /// The /healthz and /metrics port could not be served.
    #[error("serving /healthz and /metrics on {addr}: {source}")]
    Serve {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// An object cannot be acted on as it is (a selector that does not parse, a
    /// template the controller cannot use); reported as an Event, retried on change.
    #[error("{object}: {message}")]
    InvalidObject {
        /// `kind namespace/name`.
        object: String,
        /// What is wrong.
        message: String,
    },

    /// Another candidate took the leader Lease, or it could not be renewed in time; the
    /// process exits so that it starts afresh as a follower, as kube-controller-manager
    /// does.
    #[error("lost leadership of Lease {0}")]
    LostLeadership(String),
}
