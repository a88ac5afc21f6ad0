//! `ShmConfig`: how a new store is laid out (its limits, arena, handles and records), and how
//! long a handle waits for the store lock.

use std::time::Duration;

use gos_store::Limits;

use crate::error::ShmError;
use crate::layout::{ALIGN, Geometry};

/// The entries a store with no entry limit (or one above [`MAX_SIZED_ENTRIES`]) keeps at
/// most: its record table is sized for this many.
pub const DEFAULT_MAX_ENTRIES: u64 = 4096;

/// The largest entry limit the record table is sized for by itself; above it the store
/// keeps [`DEFAULT_MAX_ENTRIES`] unless [`ShmConfig::max_objects`] says more.
pub const MAX_SIZED_ENTRIES: u64 = 1 << 20;

/// How long a handle waits for the store lock by default before giving up with
/// `Error::Busy`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How to lay out a new store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmConfig {
    limits: Limits,
    arena_bytes: Option<u64>,
    max_processes: u32,
    max_objects: Option<u32>,
}

impl ShmConfig {
    /// A store enforcing `limits`, with an arena of twice the capacity (room for an overwrite
    /// of a value while readers pin the old one), 64 handles, and a record for every entry
    /// the limits allow plus a quarter more (at least 64, at most 1024) for values pinned
    /// after a delete and writes in progress.
    ///
    /// An entry limit above [`MAX_SIZED_ENTRIES`] (such as `u64::MAX`, no limit) is lowered
    /// to [`DEFAULT_MAX_ENTRIES`]; [`ShmStore::limits`](gos_store::ObjectStore::limits)
    /// reports the limit the store enforces.
    pub fn new(limits: Limits) -> Self {
        ShmConfig {
            limits,
            arena_bytes: None,
            max_processes: 64,
            max_objects: None,
        }
    }

    /// Sets the size of the arena the values live in (all of it is allocated and faulted in
    /// at create). The capacity limit is checked against the bytes of live values; the arena
    /// also holds values being written and values deleted while pinned.
    pub fn arena_bytes(mut self, bytes: u64) -> Self {
        self.arena_bytes = Some(bytes);
        self
    }

    /// Sets how many handles (processes, or `open` calls) may use the store at once.
    pub fn max_processes(mut self, n: u32) -> Self {
        self.max_processes = n;
        self
    }

    /// Sets how many objects (live, pinned after delete, or reserved) the store can track.
    /// The entry limit the store enforces is lowered to `n - 1` if it is higher, so that an
    /// overwrite of a full store always finds a record.
    pub fn max_objects(mut self, n: u32) -> Self {
        self.max_objects = Some(n);
        self
    }

    /// The limits the store will enforce and the number of records it needs for them.
    fn sized(&self) -> Result<(Limits, u32), ShmError> {
        let invalid = |what: &str| ShmError::InvalidConfig(what.to_owned());
        let mut limits = self.limits;
        if limits.max_entries > MAX_SIZED_ENTRIES && self.max_objects.is_none() {
            limits.max_entries = DEFAULT_MAX_ENTRIES;
        }
        let objects = match self.max_objects {
            Some(n) => {
                if n < 2 {
                    return Err(invalid("max_objects must be at least 2"));
                }
                limits.max_entries = limits.max_entries.min(u64::from(n) - 1);
                n
            }
            None => {
                let headroom = (limits.max_entries / 4).clamp(64, 1024);
                u32::try_from(limits.max_entries + headroom)
                    .map_err(|_| invalid("too many entries"))?
            }
        };
        Ok((limits, objects))
    }

    pub(crate) fn geometry(&self) -> Result<Geometry, ShmError> {
        let (limits, objects) = self.sized()?;
        let arena = match self.arena_bytes {
            Some(bytes) => bytes,
            None => limits
                .capacity_bytes
                .checked_mul(2)
                .and_then(|b| b.checked_add(u64::from(objects) * ALIGN))
                .filter(|&b| b < 1 << 48)
                .ok_or_else(|| {
                    ShmError::InvalidConfig(
                        "the capacity is too large to double into an arena: set arena_bytes".into(),
                    )
                })?,
        };
        Geometry::new(limits, arena, self.max_processes, objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_table_holds_every_entry_the_limits_allow_and_an_overwrite() {
        let g = ShmConfig::new(Limits::with_capacity(1 << 20).max_entries(10_000))
            .geometry()
            .expect("geometry");
        assert_eq!(g.max_entries, 10_000);
        assert!(g.max_objects > 10_000);
        let g = ShmConfig::new(Limits::with_capacity(1 << 20))
            .geometry()
            .expect("geometry");
        assert_eq!(g.max_entries, DEFAULT_MAX_ENTRIES);
        assert!(g.max_objects > DEFAULT_MAX_ENTRIES);
        let g = ShmConfig::new(Limits::with_capacity(1 << 20).max_entries(100))
            .max_objects(50)
            .geometry()
            .expect("geometry");
        assert_eq!((g.max_entries, g.max_objects), (49, 50));
        assert!(
            ShmConfig::new(Limits::with_capacity(1))
                .max_objects(1)
                .geometry()
                .is_err()
        );
    }
}
