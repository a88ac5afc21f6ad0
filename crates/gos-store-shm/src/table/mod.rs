//! The store's metadata logic over plain slices: the index (this file), admission and commit
//! (`admit.rs`), the objects' life: pins, deletes, releases and leases (`objects.rs`), slot
//! reclaim and recovery (`recover.rs`) and the invariant checker (`check.rs`). No system
//! calls: the same code runs over the mapping (under the lock) and over `Vec`s in the tests.
//!
//! The tables live in a file other processes can write, so nothing read from them is trusted:
//! every record id, offset and length is checked before it is used, and arithmetic on them
//! saturates or is checked, so that a damaged table gives a [`Refusal::Corrupt`], never a
//! panic or an access outside the mapping.

mod admit;
mod check;
mod objects;
mod recover;
#[cfg(test)]
pub(crate) mod tests;

pub use check::ShmReport;

use gos_store::{Error, ObjectKey};

use crate::alloc::FreeList;
use crate::layout::{
    ALIGN, Counters, Extent, Geometry, NIL, REC_FREE, REC_LIVE, REC_UNLINKED, Record, Slot,
};

/// The metadata regions of a store, borrowed mutably (under the store lock), and the time.
#[derive(Debug)]
pub(crate) struct Tables<'a> {
    pub(crate) geometry: Geometry,
    /// The current time, in milliseconds since the Unix epoch: leases at or before it are over.
    pub(crate) now_ms: u64,
    pub(crate) counters: &'a mut Counters,
    pub(crate) slots: &'a mut [Slot],
    pub(crate) records: &'a mut [Record],
    pub(crate) buckets: &'a mut [u32],
    pub(crate) pins: &'a mut [u32],
    pub(crate) free: &'a mut [Extent],
}

/// Why an operation was refused; the store is unchanged.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A limit or mode error of the trait (`TooLarge`, `StoreFull`, `TooManyEntries`,
    /// `AlreadyExists`).
    Limit(Error),
    /// The arena has no free extent of this many bytes (pins or fragmentation).
    NoRoom { requested: u64, largest: u64 },
    /// Every record is in use (by live values, pinned values and reservations).
    NoRecord,
    /// The tables are inconsistent.
    Corrupt(String),
}

/// A reservation made by [`Tables::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub(crate) id: u32,
    pub(crate) offset: u64,
}

/// A value pinned by [`Tables::pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pinned {
    pub(crate) id: u32,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) digest: Option<gos_store::Digest>,
}

/// What a commit records with the value: its reader count and lease deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Lifecycle {
    /// Releases expected before the object is deleted; 0 means unbounded.
    pub(crate) readers: u32,
    /// Lease deadline in Unix milliseconds; 0 means no lease.
    pub(crate) expires: u64,
    /// The value's digest.
    pub(crate) digest: Option<gos_store::Digest>,
}

fn corrupt(what: impl Into<String>) -> Refusal {
    Refusal::Corrupt(what.into())
}

impl Tables<'_> {
    fn free_list(&mut self) -> FreeList<'_> {
        FreeList {
            extents: &mut *self.free,
            len: &mut self.counters.free_len,
        }
    }

    fn slots_n(&self) -> usize {
        self.geometry.max_slots as usize
    }

    fn bucket_of(&self, hash: u64) -> usize {
        (hash & (self.geometry.n_buckets - 1)) as usize
    }

    /// The pin counts of record `id` (one per slot); `id` must be a valid record index.
    fn pin_row(&self, id: usize) -> &[u32] {
        let slots = self.slots_n();
        &self.pins[id * slots..(id + 1) * slots]
    }

    /// The index of `(id, slot)` in the pin table, if both are in range.
    fn pin_index(&self, id: u32, slot: u32) -> Option<usize> {
        ((id as usize) < self.records.len() && (slot as usize) < self.slots_n())
            .then(|| id as usize * self.slots_n() + slot as usize)
    }

    /// Record `id`, read from a shared table: out of range is corruption.
    fn record(&self, id: u32) -> Result<Record, Refusal> {
        self.records
            .get(id as usize)
            .copied()
            .ok_or_else(|| corrupt(format!("record id {id} out of range")))
    }

    /// Writes an empty store: every record free, the whole arena free.
    pub(crate) fn format(&mut self) -> Result<(), Refusal> {
        *self.counters = Counters::default();
        self.slots.fill(Slot::default());
        self.buckets.fill(NIL);
        self.pins.fill(0);
        self.records.fill(Record::default());
        self.rebuild_free_records();
        let arena = self.geometry.arena_size;
        self.free_list()
            .rebuild(arena, Vec::new())
            .map_err(|_| corrupt("free list too small"))
    }

    fn rebuild_free_records(&mut self) {
        let mut head = NIL;
        for id in (0..self.records.len()).rev() {
            let rec = &mut self.records[id];
            if rec.state == REC_FREE {
                *rec = Record {
                    next: head,
                    ..Record::default()
                };
                head = id as u32;
            }
        }
        self.counters.free_record = head;
    }

    /// The live record of `key` (expired or not). Bounded and checked: a damaged chain ends
    /// the search instead of looping or indexing out of range.
    pub(crate) fn lookup(&self, key: &[u8], hash: u64) -> Option<u32> {
        let mut id = *self.buckets.get(self.bucket_of(hash))?;
        let mut steps = 0;
        while id != NIL && steps <= self.records.len() {
            let rec = self.records.get(id as usize)?;
            if rec.state == REC_LIVE && rec.hash == hash && rec.key() == key {
                return Some(id);
            }
            id = rec.next;
            steps += 1;
        }
        None
    }

    /// The live, unexpired record of `key`; an expired one met on the way is removed.
    pub(crate) fn find(&mut self, key: &[u8]) -> Result<Option<u32>, Refusal> {
        let Some(id) = self.lookup(key, crate::layout::hash_key(key)) else {
            return Ok(None);
        };
        if self.records[id as usize].expired(self.now_ms) {
            self.unlink_live(id)?;
            return Ok(None);
        }
        Ok(Some(id))
    }

    fn link(&mut self, id: u32) {
        let bucket = self.bucket_of(self.records[id as usize].hash);
        self.records[id as usize].next = self.buckets[bucket];
        self.buckets[bucket] = id;
    }

    fn unlink_chain(&mut self, id: u32) {
        let bucket = self.bucket_of(self.records[id as usize].hash);
        let mut at = self.buckets[bucket];
        if at == id {
            self.buckets[bucket] = self.records[id as usize].next;
            return;
        }
        // Bounded, so that a corrupt (cyclic) chain cannot hang the store under its lock.
        for _ in 0..self.records.len() {
            let Some(rec) = self.records.get(at as usize) else {
                return;
            };
            let next = rec.next;
            if next == id {
                self.records[at as usize].next = self.records[id as usize].next;
                return;
            }
            at = next;
        }
    }

    /// Checks that an extent lies in the arena and is aligned, before anyone touches it.
    fn check_extent(&self, offset: u64, len: u64) -> Result<(), Refusal> {
        let inside = offset.is_multiple_of(ALIGN)
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.geometry.arena_size);
        if inside {
            Ok(())
        } else {
            Err(corrupt(format!(
                "extent at {offset} of {len} bytes lies outside the arena"
            )))
        }
    }

    /// Frees a record and its extent (the state is cleared first, so a crash in between only
    /// leaks the extent until recovery rebuilds the free list).
    fn release_record(&mut self, id: u32) -> Result<(), Refusal> {
        let rec = self.record(id)?;
        self.records[id as usize] = Record {
            next: self.counters.free_record,
            ..Record::default()
        };
        self.counters.free_record = id;
        crate::failpoint!("release-record");
        if self.check_extent(rec.offset, rec.extent).is_err() {
            // A damaged record: its extent is not returned (recovery rebuilds the free list
            // from the records that remain).
            return Err(corrupt(format!(
                "record {id} had an extent outside the arena"
            )));
        }
        self.free_list()
            .free(rec.offset, rec.extent)
            .map_err(|_| corrupt("free list overflow"))
    }

    /// Removes live record `id` from the index; frees it unless a reader pins it.
    fn unlink_live(&mut self, id: u32) -> Result<(), Refusal> {
        let rec = self.record(id)?;
        if rec.state != REC_LIVE {
            return Err(corrupt(format!("record {id} is not live")));
        }
        self.unlink_chain(id);
        self.counters.live_bytes = self.counters.live_bytes.saturating_sub(rec.len);
        self.counters.entries = self.counters.entries.saturating_sub(1);
        if rec.pins == 0 {
            self.release_record(id)
        } else {
            self.records[id as usize].state = REC_UNLINKED;
            Ok(())
        }
    }
}

/// The `AlreadyExists` refusal for stored key bytes.
fn already_exists(key: &[u8]) -> Refusal {
    match std::str::from_utf8(key)
        .ok()
        .and_then(|k| ObjectKey::new(k).ok())
    {
        Some(key) => Refusal::Limit(Error::AlreadyExists { key }),
        None => corrupt("stored key is not a valid key"),
    }
}

/// True for a record state that holds an extent.
fn holds_extent(state: u32) -> bool {
    matches!(state, crate::layout::REC_RESERVED | REC_LIVE | REC_UNLINKED)
}
