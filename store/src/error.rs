//! The store's one error type, and how each error reaches an etcd client.

use tonic::{Code, Status};

/// Everything that can go wrong in the store.
///
/// The `Display` text of the client-facing variants is etcd's own (`etcdserver: …`),
/// because etcd clients recognise those strings and turn them into typed errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read or watch asked for a revision below the compaction point.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The revision the store is compacted to.
        compact_revision: i64,
    },
    /// A read asked for a revision that does not exist yet.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put with `ignore_value`/`ignore_lease` named a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// An empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A transaction writes the same key twice in one branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A transaction nests deeper or has more operations than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// The request, encoded, is larger than the limit.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A lease ID that is not (or no longer) granted.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease grant with an ID already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease TTL beyond the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// The backend quota is used up (NOSPACE alarm).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// No leader is known, so nothing can be committed or read linearizably.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request did not complete in time; it may or may not have been applied.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The member is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A member ID that is not in the cluster.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member with these peer URLs already exists.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// A membership change while another one is still being applied.
    #[error("etcdserver: a membership change is already in progress; retry once it is applied")]
    ConfChangeInProgress,
    /// Removing this member would leave the cluster without a quorum or without members.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// A call or option skiff does not implement.
    #[error("skiff: {0} is not supported by skiff's store")]
    Unsupported(&'static str),
    /// A request that is malformed in a way etcd has no special error for.
    #[error("{0}")]
    InvalidArgument(String),
    /// Invalid configuration or flags.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory cannot be used (corrupt, another cluster's, another member's).
    #[error("data directory {dir}: {reason}")]
    DataDir {
        /// The directory.
        dir: String,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// A snapshot (backup) file is damaged or not a skiff snapshot.
    #[error("snapshot file: {0}")]
    Snapshot(String),
    /// The storage engine failed (disk full, I/O error).
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record could not be decoded: the data directory is damaged.
    #[error("corrupt record in the data directory: {0}")]
    Corrupt(String),
    /// Raft refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Network I/O (listening, reaching peers).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A peer could not be reached or answered with an error.
    #[error("peer {peer}: {message}")]
    Peer {
        /// The peer URL.
        peer: String,
        /// What happened.
        message: String,
    },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Compacted { .. } | Error::FutureRevision => Code::OutOfRange,
            Error::KeyNotFound
            | Error::EmptyKey
            | Error::DuplicateKey
            | Error::TooManyOps
            | Error::RequestTooLarge
            | Error::LeaseTtlTooLarge
            | Error::PeerUrlExists
            | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::LeaseNotFound | Error::MemberNotFound => Code::NotFound,
            Error::LeaseExists => Code::FailedPrecondition,
            Error::NoSpace => Code::ResourceExhausted,
            Error::NoLeader | Error::Timeout | Error::Stopped | Error::Peer { .. } => {
                Code::Unavailable
            }
            Error::ConfChangeInProgress | Error::NotEnoughStartedMembers => {
                Code::FailedPrecondition
            }
            Error::Unsupported(_) => Code::Unimplemented,
            _ => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}
