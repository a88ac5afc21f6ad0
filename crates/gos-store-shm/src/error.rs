//! `ShmError`: what can go wrong opening or running a shared-memory store, and its mapping into
//! [`gos_store::Error`].

use std::io;

/// A failure of the shared-memory backend. Store operations return it inside
/// [`gos_store::Error::Backend`] (or as [`gos_store::Error::Corrupted`]); downcast the source
/// to match on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The store name is not usable as a file name.
    #[error("invalid store name `{0}`: use 1 to 200 ASCII letters, digits, `.`, `_` or `-`")]
    InvalidName(String),
    /// The configuration cannot be laid out.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// `create` found a store of that name.
    #[error("a store named `{0}` already exists")]
    Exists(String),
    /// `open` found no store of that name.
    #[error("no store named `{0}`")]
    NotFound(String),
    /// The shared-memory file system has less room than the store needs.
    #[error("{dir} has {available} bytes free, the store needs {needed}")]
    NoSpace {
        /// The directory the store lives in.
        dir: String,
        /// Bytes the store file needs.
        needed: u64,
        /// Bytes free there.
        available: u64,
    },
    /// The file is a store of another layout version (written by another build).
    #[error("store layout version {found}, this build reads version {expected}")]
    IncompatibleVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The file is not a store, or its header or tables are inconsistent.
    #[error("not a valid store: {0}")]
    Corrupted(String),
    /// Every process slot is taken by a live handle.
    #[error("all {0} process slots are in use")]
    NoSlot(u64),
    /// The table of objects (live, pinned or reserved) is full: values pinned after a delete
    /// and writes in progress hold the records beyond the entry limit. Reported as the
    /// retryable [`gos_store::Error::Busy`].
    #[error("all {0} object records are in use (live, pinned or reserved)")]
    NoRecord(u64),
    /// The store lock was not free within the lock timeout: its holder is stopped (SIGSTOP,
    /// a frozen cgroup, a debugger) or very slow. Retryable; reported as
    /// [`gos_store::Error::Busy`].
    #[error("the store lock was held for more than {}", humantime::format_duration(*.0))]
    LockTimeout(std::time::Duration),
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl ShmError {
    /// The last OS error, for `op`.
    pub(crate) fn last_os(op: &'static str) -> Self {
        ShmError::Io {
            op,
            source: io::Error::last_os_error(),
        }
    }

    /// An OS error from a returned code, for `op`.
    pub(crate) fn os(op: &'static str, code: i32) -> Self {
        ShmError::Io {
            op,
            source: io::Error::from_raw_os_error(code),
        }
    }
}

impl From<ShmError> for gos_store::Error {
    fn from(e: ShmError) -> Self {
        match e {
            ShmError::Corrupted(what) => gos_store::Error::Corrupted(what),
            e @ (ShmError::LockTimeout(_) | ShmError::NoRecord(_)) => {
                gos_store::Error::Busy(e.to_string())
            }
            other => gos_store::Error::backend("shm", other),
        }
    }
}
