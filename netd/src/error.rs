//! The crate's one error type.

/// What can go wrong in netd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or setting that cannot be used, with what to do instead.
    #[error("configuration: {0}")]
    Config(String),
    /// A netlink request the kernel refused or could not be sent.
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The kernel's or the socket's error.
        source: rtnetlink::Error,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path or address.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `nft` refused a ruleset.
    #[error("nft -f: {0}")]
    Nft(String),
    /// The API server refused or could not be reached.
    #[error("apiserver: {0}")]
    Api(#[from] skiff_client::Error),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// A netlink error with what was being done.
    pub fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> Error {
        Error::Netlink {
            what: what.into(),
            source,
        }
    }
}

/// netd's results.
pub type Result<T> = std::result::Result<T, Error>;
