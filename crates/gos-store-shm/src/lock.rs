//! One mapping of a store (`Inner`), the store lock (`Guard`), the tables it gives access to,
//! dead-handle reclaim and recovery when a lock holder died.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gos_store::{Error, Result};

use crate::error::ShmError;
use crate::layout::{Extent, Geometry, Header, Record, SLOT_FREE, Slot};
use crate::sys;
use crate::table::{Refusal, Tables};

/// One mapping of the store file, holding one slot.
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) map: sys::Mapping,
    pub(crate) geometry: Geometry,
    pub(crate) slot: u32,
    /// How long to wait for the store lock before `Error::Busy`, in nanoseconds.
    pub(crate) lock_timeout: AtomicU64,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("path", &self.path)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// Base and geometry of a mapping: where the tables are.
pub(crate) struct RawRegions {
    pub(crate) base: *mut u8,
    pub(crate) geometry: Geometry,
}

impl RawRegions {
    /// The tables of the store, at time `now_ms`.
    ///
    /// # Safety
    /// `base` maps `geometry.total_size` bytes laid out by `geometry` (validated), and the
    /// caller has exclusive access to the tables (holds the store lock, or the store is not
    /// yet published) for as long as the returned value lives.
    pub(crate) unsafe fn tables<'a>(&self, now_ms: u64) -> Tables<'a> {
        let g = self.geometry;
        let at = |offset: u64| {
            // SAFETY: every offset of a validated geometry lies inside the mapping.
            unsafe { self.base.add(offset as usize) }
        };
        let header = self.base.cast::<Header>();
        // SAFETY: per the function contract: each region is inside the mapping, aligned to a
        // page (so to its element type), sized for its element count, and disjoint from the
        // others and from the mutex; every element type is plain integers, valid for any bytes.
        unsafe {
            Tables {
                geometry: g,
                now_ms,
                counters: &mut *std::ptr::addr_of_mut!((*header).counters),
                slots: std::slice::from_raw_parts_mut(
                    at(g.slots_offset).cast::<Slot>(),
                    g.max_slots as usize,
                ),
                records: std::slice::from_raw_parts_mut(
                    at(g.records_offset).cast::<Record>(),
                    g.max_objects as usize,
                ),
                buckets: std::slice::from_raw_parts_mut(
                    at(g.buckets_offset).cast::<u32>(),
                    g.n_buckets as usize,
                ),
                pins: std::slice::from_raw_parts_mut(
                    at(g.pins_offset).cast::<u32>(),
                    (g.max_objects * g.max_slots) as usize,
                ),
                free: std::slice::from_raw_parts_mut(
                    at(g.free_offset).cast::<Extent>(),
                    g.max_objects as usize + 2,
                ),
            }
        }
    }
}

/// The store lock, held, and the time the operation runs at.
pub(crate) struct Guard<'a> {
    inner: &'a Inner,
    now_ms: u64,
}

impl Guard<'_> {
    pub(crate) fn tables(&mut self) -> Tables<'_> {
        let raw = RawRegions {
            base: self.inner.map.ptr(),
            geometry: self.inner.geometry,
        };
        // SAFETY: the geometry was validated against the mapping at open, and this guard holds
        // the store lock for as long as the tables borrow it (`&mut self`).
        unsafe { raw.tables(self.now_ms) }
    }

    /// Reclaims the slot of every handle whose open file description is gone.
    pub(crate) fn reclaim_dead(&mut self) -> std::result::Result<usize, ShmError> {
        let own = self.inner.slot;
        let mut reclaimed = 0;
        for slot in 0..self.inner.geometry.max_slots as u32 {
            if slot == own || self.tables().slots[slot as usize].state == SLOT_FREE {
                continue;
            }
            if sys::try_lock(&self.inner.file, u64::from(slot), 1)? {
                // Nobody holds the slot's lock: its handle is gone.
                let result = self.tables().reclaim_slot(slot);
                sys::unlock(&self.inner.file, u64::from(slot), 1)?;
                result.map_err(refusal_corrupt)?;
                reclaimed += 1;
            }
        }
        Ok(reclaimed)
    }

    /// Takes a free slot whose lock this handle can hold.
    pub(crate) fn take_free_slot(&mut self) -> std::result::Result<Option<u32>, ShmError> {
        for slot in 0..self.inner.geometry.max_slots as u32 {
            if self.tables().slots[slot as usize].state != SLOT_FREE {
                continue;
            }
            if sys::try_lock(&self.inner.file, u64::from(slot), 1)? {
                self.tables().take_slot(slot, std::process::id());
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// Checks the tables and, when they fail, recovers them and checks again: what `open`
    /// runs, so that a damaged store is repaired or refused before any operation uses it.
    pub(crate) fn check_or_repair(&mut self) -> std::result::Result<(), ShmError> {
        if self.tables().check().is_ok() {
            return Ok(());
        }
        self.tables().recover().map_err(refusal_corrupt)?;
        self.reclaim_dead()?;
        self.tables()
            .check()
            .map(drop)
            .map_err(|e| ShmError::Corrupted(format!("the store cannot be repaired: {e}")))
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the mutex, which lives in the mapping `inner` keeps alive.
        unsafe { sys::mutex_unlock(self.inner.mutex()) }
    }
}

pub(crate) fn refusal_corrupt(r: Refusal) -> ShmError {
    match r {
        Refusal::Corrupt(what) => ShmError::Corrupted(what),
        other => ShmError::Corrupted(format!("{other:?}")),
    }
}

impl Inner {
    /// How long this handle waits for the store lock.
    pub(crate) fn lock_timeout(&self) -> Duration {
        Duration::from_nanos(self.lock_timeout.load(Ordering::Relaxed))
    }

    /// Sets how long this handle waits for the store lock.
    pub(crate) fn set_lock_timeout(&self, timeout: Duration) {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.lock_timeout.store(nanos, Ordering::Relaxed);
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        let header = self.map.ptr().cast::<Header>();
        // SAFETY: the header lies at the start of the mapping.
        unsafe { std::ptr::addr_of_mut!((*header).mutex).cast() }
    }

    /// Takes the store lock (waiting at most the lock timeout) for an operation at `now_ms`;
    /// runs recovery first when the previous holder died holding it.
    pub(crate) fn lock_at(&self, now_ms: u64) -> std::result::Result<Guard<'_>, ShmError> {
        self.lock_within(now_ms, self.lock_timeout())
    }

    /// Takes the store lock if it is free now (`Ok(None)` if not), without waiting.
    pub(crate) fn try_lock_at(
        &self,
        now_ms: u64,
    ) -> std::result::Result<Option<Guard<'_>>, ShmError> {
        match self.lock_within(now_ms, Duration::ZERO) {
            Ok(guard) => Ok(Some(guard)),
            Err(ShmError::LockTimeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lock_within(
        &self,
        now_ms: u64,
        timeout: Duration,
    ) -> std::result::Result<Guard<'_>, ShmError> {
        // SAFETY: the mutex was initialized at create, before the file got its name.
        let state = unsafe { sys::mutex_lock(self.mutex(), timeout) }?
            .ok_or(ShmError::LockTimeout(timeout))?;
        let mut guard = Guard {
            inner: self,
            now_ms,
        };
        if state == sys::Locked::OwnerDied {
            // The holder died mid-change: rebuild everything derived from the records, give
            // back dead handles' pins and reservations, then mark the lock consistent.
            let recovered = guard.tables().recover().map_err(refusal_corrupt);
            let reclaimed = guard.reclaim_dead();
            // SAFETY: we hold the mutex, acquired with EOWNERDEAD.
            unsafe { sys::mutex_consistent(self.mutex()) }?;
            recovered?;
            reclaimed?;
        }
        crate::failpoint!("locked");
        Ok(guard)
    }

    /// The lock for an operation that reads no lease (time zero: nothing expires).
    pub(crate) fn lock(&self) -> std::result::Result<Guard<'_>, ShmError> {
        self.lock_at(0)
    }

    /// Runs `op` under the lock at `now_ms`; when it is refused for want of room, removes
    /// expired objects and reclaims dead handles and, if that freed anything, runs it once
    /// more.
    pub(crate) fn with_reclaim<T>(
        &self,
        now_ms: u64,
        op: impl FnMut(&mut Tables<'_>) -> std::result::Result<T, Refusal>,
    ) -> Result<T> {
        let guard = self.lock_at(now_ms)?;
        self.run_reclaiming(guard, op)
    }

    /// [`Inner::with_reclaim`] if the lock is free now; `None` (and `op` not run) if not.
    pub(crate) fn try_with_reclaim<T>(
        &self,
        now_ms: u64,
        op: impl FnMut(&mut Tables<'_>) -> std::result::Result<T, Refusal>,
    ) -> Option<Result<T>> {
        match self.try_lock_at(now_ms) {
            Ok(Some(guard)) => Some(self.run_reclaiming(guard, op)),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    }

    fn run_reclaiming<T>(
        &self,
        mut guard: Guard<'_>,
        mut op: impl FnMut(&mut Tables<'_>) -> std::result::Result<T, Refusal>,
    ) -> Result<T> {
        let first = op(&mut guard.tables());
        let refusal = match first {
            Ok(value) => return Ok(value),
            Err(
                r @ (Refusal::NoRoom { .. }
                | Refusal::NoRecord
                | Refusal::Limit(Error::StoreFull { .. } | Error::TooManyEntries { .. })),
            ) => r,
            Err(r) => return Err(self.refused(r)),
        };
        let swept = guard.tables().sweep().map_err(|r| self.refused(r))?;
        if guard.reclaim_dead()? + swept == 0 {
            return Err(self.refused(refusal));
        }
        op(&mut guard.tables()).map_err(|r| self.refused(r))
    }

    pub(crate) fn refused(&self, r: Refusal) -> Error {
        match r {
            Refusal::Limit(e) => e,
            Refusal::NoRoom { requested, largest } => Error::StoreFull {
                requested,
                available: largest,
            },
            Refusal::NoRecord => ShmError::NoRecord(self.geometry.max_objects).into(),
            Refusal::Corrupt(what) => Error::Corrupted(what),
        }
    }

    /// The arena's first byte.
    pub(crate) fn arena(&self) -> *mut u8 {
        // SAFETY: the arena offset of a validated geometry lies inside the mapping.
        unsafe { self.map.ptr().add(self.geometry.arena_offset as usize) }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.slot == u32::MAX {
            return;
        }
        // Give back anything left (nothing, unless a pin guard or reservation leaked) and the
        // slot, then let the file close drop the slot lock.
        if let Ok(mut guard) = self.lock() {
            let slot = self.slot;
            let _ = guard.tables().reclaim_slot(slot);
        }
    }
}
