//! The one error type of every store operation, and the error of key validation.

use std::time::Duration;

use crate::key::ObjectKey;

/// The result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// Every backend maps its private failures into this enum, so that code written against
/// `dyn ObjectStore` handles one set of cases. Limit errors ([`Error::TooLarge`],
/// [`Error::StoreFull`], [`Error::TooManyEntries`]) are always raised before anything changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key (or prefix) is not a valid [`ObjectKey`].
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),

    /// The value is larger than the store's maximum value size.
    #[error("value of {size} bytes is larger than the maximum of {max} bytes")]
    TooLarge {
        /// Size of the refused value, in bytes.
        size: u64,
        /// The store's maximum value size, in bytes.
        max: u64,
    },

    /// Storing the value would exceed the store's capacity in bytes.
    #[error("store full: {requested} bytes requested, {available} bytes available")]
    StoreFull {
        /// Bytes the operation needed: the value's (or reservation's) full size, also on an
        /// overwrite.
        requested: u64,
        /// Bytes that were free for it: `capacity - bytes - reserved`, plus the old value's
        /// size for a put that overwrites (a reservation does not count the old value: it is
        /// freed at the commit).
        available: u64,
    },

    /// Storing a new key would exceed the store's maximum number of entries.
    #[error("store full: it already holds its maximum of {max} entries")]
    TooManyEntries {
        /// The store's maximum number of entries.
        max: u64,
    },

    /// A put with [`PutMode::Create`](crate::PutMode::Create) found the key already present.
    #[error("key `{key}` already exists")]
    AlreadyExists {
        /// The key that exists.
        key: ObjectKey,
    },

    /// The operation did not finish in time (a remote store, a contended lock).
    #[error("{operation} timed out after {}", humantime::format_duration(*after))]
    Timeout {
        /// What was being waited for.
        operation: &'static str,
        /// How long it waited.
        after: Duration,
    },

    /// The store or its peer is at a limit on concurrent work (a contended or stopped lock
    /// holder, too many connections or bytes in flight): nothing changed, retry later.
    #[error("busy: {0}")]
    Busy(String),

    /// The caller's identity may not do this (a read-only client writing, a peer cluster
    /// writing outside its own nodes' keys).
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// An argument other than the key is not acceptable (options the backend cannot keep).
    /// A fed id that is not one segment is an [`Error::InvalidKey`], as a bad key is.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The stored data failed an integrity check (a checksum, a layout version).
    #[error("data corrupted: {0}")]
    Corrupted(String),

    /// The store cannot serve requests any more (closed, its peer is gone).
    #[error("store unavailable: {0}")]
    Unavailable(String),

    /// The backend refused the request or failed in a way of its own.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// The backend's name, such as `"shm"` or `"remote"`.
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Wraps a backend's own error.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// True for the errors a limit raises (too large, store full, too many entries): the store
    /// is unchanged and the same request may succeed once room is made.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Error::TooLarge { .. } | Error::StoreFull { .. } | Error::TooManyEntries { .. }
        )
    }
}

impl Error {
    /// True for the errors that say "not now" rather than "not this": [`Error::Busy`] and
    /// [`Error::Timeout`]. The same request may succeed when retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Busy(_) | Error::Timeout { .. })
    }
}

/// Why a string is not a valid [`ObjectKey`] or [`KeyPrefix`](crate::KeyPrefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is the empty string.
    #[error("key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes.
    #[error("key is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the key, in bytes.
        len: usize,
        /// The maximum length, in bytes.
        max: usize,
    },
    /// The key contains a control character (such as a newline or NUL).
    #[error("key has a control character {ch:?} at byte {position}")]
    ControlCharacter {
        /// The offending character.
        ch: char,
        /// Its byte offset in the key.
        position: usize,
    },
    /// The key has an empty segment: it starts or ends with `/`, or contains `//`.
    #[error("key has an empty segment at byte {position} (leading, trailing or doubled `/`)")]
    EmptySegment {
        /// Byte offset where the empty segment starts.
        position: usize,
    },
    /// A segment is `.` or `..`: keys are paths in some backends and tools, where these would
    /// name another key or escape a prefix.
    #[error("key has a `{segment}` segment at byte {position} (`.` and `..` are not allowed)")]
    DotSegment {
        /// The segment: `.` or `..`.
        segment: &'static str,
        /// Byte offset where the segment starts.
        position: usize,
    },
    /// A part given to [`ObjectKey::round`](crate::ObjectKey::round) is not a single segment.
    #[error("{part} `{value}` must be one non-empty segment without `/`")]
    InvalidPart {
        /// Which part: `"fed_id"` or `"node_id"`.
        part: &'static str,
        /// The value given.
        value: String,
    },
}
