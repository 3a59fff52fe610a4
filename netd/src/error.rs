//! The crate's one error type.

/// What can go wrong in netd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or setting that cannot be used, with what to do instead.
    #[error("configuration: {0}")]
    Config(String),
}

/// netd's results.
pub type Result<T> = std::result::Result<T, Error>;
