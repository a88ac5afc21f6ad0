//! `ShmStore`: the shared-memory [`ObjectStore`](gos_store::ObjectStore) of GOS, for many processes on one host.
//!
//! A store is one file on a tmpfs (`/dev/shm/gos-<name>`, or under `$GOS_SHM_DIR`) that every
//! process maps. A put copies the value once into memory that was faulted in when the store was
//! created; a get returns a [`Bytes`](bytes::Bytes) that points into the mapping (no copy) and pins the value
//! until the `Bytes` and its clones are dropped. A delete or overwrite hides the old value from
//! new readers at once and frees its memory with the last pin. [`ObjectStore::reserve`](gos_store::ObjectStore::reserve) hands
//! out a buffer inside the shared memory itself, so a producer serializes with no copy at all.
//!
//! A process killed at any moment leaves no partial value, and its pins and reservations are
//! given back: every handle holds a lock the kernel drops when the process dies, and the store
//! lock is a robust mutex whose next holder repairs what a dead holder left half done.
//! `docs/shm.md` describes the layout, an object's life and the recovery.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use bytes::Bytes;
//! use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt};
//! use gos_store_shm::{ShmConfig, ShmStore};
//!
//! let name = format!("doc-example-{}", std::process::id());
//! let store = ShmStore::create(&name, ShmConfig::new(Limits::with_capacity(1 << 20)))?;
//! let key = ObjectKey::round("fed", "node_1", 1)?;
//! store.put(&key, Bytes::from_static(b"weights")).await?;
//!
//! // Another process would call `ShmStore::open(&name)`.
//! let other = ShmStore::open(&name)?;
//! let value = other.get(&key).await?.expect("present");
//! assert!(store.delete(&key).await?);
//! assert_eq!(&value[..], b"weights"); // still pinned, still intact
//! ShmStore::remove(&name)?;
//! # Ok::<(), gos_store::Error>(()) }).unwrap();
//! ```
#![warn(missing_docs, unreachable_pub)]

mod alloc;
mod config;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
#[cfg(not(feature = "failpoints"))]
mod failpoint;
mod file;
mod handle;
mod layout;
mod lock;
mod store;
mod sys;
mod table;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gos_store::{Clock, Error, Result};

pub use config::{DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_ENTRIES, MAX_SIZED_ENTRIES, ShmConfig};
pub use error::ShmError;
pub use file::DEFAULT_DIR;
pub use handle::ShmReservation;
pub use table::ShmReport;

use lock::Inner;

/// A handle on a shared-memory store. Cheap to clone (clones share one process slot); open
/// another handle with [`ShmStore::open`].
#[derive(Clone)]
pub struct ShmStore {
    inner: Arc<Inner>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ShmStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmStore")
            .field("path", &self.inner.path)
            .field("slot", &self.inner.slot)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch of `time`, rounded down.
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    gos_store::to_unix_millis(time)
}

/// The lease deadline of a put at `now` as the record keeps it: Unix milliseconds (rounded
/// down, as the time it is compared with, so a lease of exactly its length has run out when
/// the clock has moved by that much), at least 1; 0 for no lease.
pub(crate) fn lease_millis(now: SystemTime, lease: Option<Duration>) -> u64 {
    gos_store::lease_deadline(now, lease).map_or(0, |deadline| unix_millis(deadline).max(1))
}

impl ShmStore {
    /// Reads lease deadlines from `clock` instead of the system clock (deterministic tests).
    /// The clock is this handle's: deadlines are written as Unix milliseconds, so handles of
    /// one store should read the same time.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how long this handle (and its clones) waits for the store lock before an
    /// operation fails with the retryable [`Error::Busy`] (default
    /// [`DEFAULT_LOCK_TIMEOUT`]): what a process gets while another is stopped holding it.
    #[must_use]
    pub fn with_lock_timeout(self, timeout: Duration) -> Self {
        self.inner.set_lock_timeout(timeout);
        self
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Gives back the pins and reservations of every handle whose process died; returns how
    /// many handles were reclaimed. Stores do this by themselves when they run out of room and
    /// when a process dies holding the store lock; call it to get the capacity back sooner.
    pub fn reclaim_dead(&self) -> Result<usize> {
        let mut guard = self.inner.lock()?;
        Ok(guard.reclaim_dead()?)
    }

    /// Checks every invariant of the store's tables and returns a summary (a test and
    /// debugging aid: it scans every record under the store lock).
    pub fn check(&self) -> Result<ShmReport> {
        let mut guard = self.inner.lock()?;
        guard.tables().check().map_err(Error::Corrupted)
    }
}

#[cfg(test)]
mod tests;
