//! The one error type of the scheduler.

/// Result with the scheduler's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stops the scheduler daemon. Problems with single pods or nodes are never errors
/// of this kind: they become Unschedulable conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable (a bad kubeconfig, a bad flag value).
    #[error("configuration: {0}")]
    Config(String),

    /// The apiserver could not be reached for something the daemon cannot go on without.
    #[error(transparent)]
    Client(#[from] skiff_client::Error),

    /// The health and metrics port could not be opened.
    #[error("serving /healthz and /metrics on {addr}: {source}")]
    Serve {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// Another scheduler took the Lease or renewing it failed; like kube-scheduler, the
    /// process stops rather than risk two active schedulers.
    #[error("leader election lost")]
    LeaderElectionLost,
}
