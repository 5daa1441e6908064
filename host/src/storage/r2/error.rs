//! What can go wrong with a bucket operation, in words a worker (or the
//! admin API's client) can act on.

/// Why a bucket operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum R2Error {
    /// The key is empty or longer than [`MAX_KEY_BYTES`](super::MAX_KEY_BYTES).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An object or part past the size limits.
    #[error("too large: {0}")]
    TooLarge(String),
    /// An argument the bucket cannot use (range, part list, metadata,
    /// checksum, cursor, bucket name).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No multipart upload with that id for that key.
    #[error("no such multipart upload: {0}")]
    NoSuchUpload(String),
    /// The blob store or the index failed.
    #[error("storage failed: {0:#}")]
    Storage(#[from] anyhow::Error),
}

impl From<object_store::Error> for R2Error {
    fn from(error: object_store::Error) -> Self {
        Self::Storage(error.into())
    }
}

impl From<rusqlite::Error> for R2Error {
    fn from(error: rusqlite::Error) -> Self {
        Self::Storage(anyhow::Error::from(error).context("the bucket's index"))
    }
}

impl From<sqlx::Error> for R2Error {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(anyhow::Error::from(error).context("the bucket's index in the cluster"))
    }
}

/// The result of a bucket operation.
pub(crate) type R2Result<T> = Result<T, R2Error>;
