//! The shared layout: the header, the record types and the geometry that places every region
//! at an offset of the file. Plain data, no system calls.

use gos_store::{Limits, MAX_KEY_LEN};

use crate::error::ShmError;

/// `GOSSHM` followed by two zero bytes, read as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"GOSSHM\0\0");
/// The layout version this build reads and writes. Bump it on any change to this file.
/// Version 2 added each record's reader count and lease deadline; version 3 its digest.
pub(crate) const LAYOUT_VERSION: u32 = 3;
/// Alignment (and minimum size) of every extent in the arena: one cache line.
pub(crate) const ALIGN: u64 = 64;
/// Page size the arena and the regions are aligned to.
pub(crate) const PAGE: u64 = 4096;
/// "No record" in a chain of record ids.
pub(crate) const NIL: u32 = u32::MAX;
/// Bytes reserved in the header for the `pthread_mutex_t` (40 on x86_64 glibc).
pub(crate) const MUTEX_SPACE: usize = 64;

/// Rounds `n` up to a multiple of `to` (a power of two); `None` on overflow.
pub(crate) fn align_up(n: u64, to: u64) -> Option<u64> {
    Some(n.checked_add(to - 1)? & !(to - 1))
}

/// The bytes of the arena an extent for a value of `len` bytes takes.
pub(crate) fn extent_len(len: u64) -> Option<u64> {
    align_up(len.max(1), ALIGN)
}

/// Where everything is, and the limits the store enforces; written once at create.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Geometry {
    pub(crate) max_value_size: u64,
    pub(crate) capacity_bytes: u64,
    pub(crate) max_entries: u64,
    pub(crate) max_slots: u64,
    pub(crate) max_objects: u64,
    pub(crate) n_buckets: u64,
    pub(crate) slots_offset: u64,
    pub(crate) records_offset: u64,
    pub(crate) buckets_offset: u64,
    pub(crate) pins_offset: u64,
    pub(crate) free_offset: u64,
    pub(crate) arena_offset: u64,
    pub(crate) arena_size: u64,
    pub(crate) total_size: u64,
}

/// Occupancy counters and list heads; changed only under the store lock, rebuilt by recovery.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    /// Sum of the lengths of live values (what counts against the capacity).
    pub(crate) live_bytes: u64,
    /// Number of live keys.
    pub(crate) entries: u64,
    /// Capacity held by outstanding reservations.
    pub(crate) reserved_charge: u64,
    /// Sequence number of the last commit (orders two live records of one key after a crash).
    pub(crate) commit_seq: u64,
    /// Number of extents in the free list.
    pub(crate) free_len: u64,
    /// First free record.
    pub(crate) free_record: u32,
    /// Times recovery ran (a lock holder died).
    pub(crate) recoveries: u32,
}

/// The first bytes of the file.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) header_size: u32,
    pub(crate) geometry: Geometry,
    pub(crate) counters: Counters,
    pub(crate) mutex: MutexSpace,
}

/// Room for the process-shared robust mutex.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct MutexSpace(pub(crate) [u8; MUTEX_SPACE]);

/// A slot is free.
pub(crate) const SLOT_FREE: u32 = 0;
/// A slot is held by a live handle (or one that died and is not reclaimed yet).
pub(crate) const SLOT_IN_USE: u32 = 1;

/// One handle's slot: pins and reservations are recorded against it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Slot {
    pub(crate) state: u32,
    pub(crate) pid: u32,
}

/// The record holds nothing.
pub(crate) const REC_FREE: u32 = 0;
/// An extent handed to a writer; not visible to readers.
pub(crate) const REC_RESERVED: u32 = 1;
/// A committed value reachable through the index.
pub(crate) const REC_LIVE: u32 = 2;
/// A value deleted or overwritten while pinned: unreachable, freed with its last pin.
pub(crate) const REC_UNLINKED: u32 = 3;

/// One object: its extent, its key, its pins.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) state: u32,
    /// The slot of the writer, for a reserved record.
    pub(crate) owner: u32,
    /// Next record in a hash chain (live) or in the free-record chain (free).
    pub(crate) next: u32,
    pub(crate) key_len: u32,
    /// Releases still expected before a live record is deleted; 0 means unbounded.
    pub(crate) readers: u32,
    /// [`FLAG_DIGEST`] when `digest` holds the value's digest.
    pub(crate) flags: u32,
    /// Offset of the extent in the arena.
    pub(crate) offset: u64,
    /// Length of the extent (the value length rounded up to [`ALIGN`]).
    pub(crate) extent: u64,
    /// Length of the value.
    pub(crate) len: u64,
    /// Capacity charged to this reservation.
    pub(crate) charge: u64,
    /// Commit sequence number.
    pub(crate) seq: u64,
    pub(crate) hash: u64,
    /// Sum of the record's row in the pin table.
    pub(crate) pins: u64,
    /// Lease deadline in milliseconds since the Unix epoch (rounded up); 0 means no lease.
    pub(crate) expires: u64,
    /// The value's XXH3-128 digest (little-endian halves), valid with [`FLAG_DIGEST`].
    pub(crate) digest: [u64; 2],
    pub(crate) key: [u8; MAX_KEY_LEN],
}

/// A record's `digest` field is set.
pub(crate) const FLAG_DIGEST: u32 = 1;

impl Default for Record {
    fn default() -> Self {
        Record {
            state: REC_FREE,
            owner: NIL,
            next: NIL,
            key_len: 0,
            readers: 0,
            flags: 0,
            offset: 0,
            extent: 0,
            len: 0,
            charge: 0,
            seq: 0,
            hash: 0,
            pins: 0,
            expires: 0,
            digest: [0; 2],
            key: [0; MAX_KEY_LEN],
        }
    }
}

impl Record {
    /// The stored key bytes (empty unless the record was committed).
    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..(self.key_len as usize).min(MAX_KEY_LEN)]
    }

    /// True when the record has a lease that ran out at or before `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.expires != 0 && self.expires <= now_ms
    }

    /// The value's digest, if the record holds one.
    pub(crate) fn digest(&self) -> Option<gos_store::Digest> {
        (self.flags & FLAG_DIGEST != 0).then(|| {
            gos_store::Digest::from_u128(
                u128::from(self.digest[0]) | (u128::from(self.digest[1]) << 64),
            )
        })
    }

    /// Records `digest` as the value's.
    pub(crate) fn set_digest(&mut self, digest: gos_store::Digest) {
        let d = digest.as_u128();
        self.digest = [d as u64, (d >> 64) as u64];
        self.flags |= FLAG_DIGEST;
    }

    /// The end of its extent in the arena, if that does not overflow.
    pub(crate) fn extent_end(&self) -> Option<u64> {
        self.offset.checked_add(self.extent)
    }
}

/// A free extent of the arena.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Extent {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// FNV-1a: the same in every process and every build (unlike `DefaultHasher`).
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Geometry {
    /// Places the regions for a store with these limits, arena size, slots and records.
    pub(crate) fn new(
        limits: Limits,
        arena_size: u64,
        max_slots: u32,
        max_objects: u32,
    ) -> Result<Self, ShmError> {
        let invalid = |what: &str| ShmError::InvalidConfig(what.to_owned());
        if max_slots == 0 || max_slots > 4096 {
            return Err(invalid("max_processes must be between 1 and 4096"));
        }
        if max_objects == 0 || max_objects >= NIL / 2 {
            return Err(invalid("max_objects must be between 1 and 2^31"));
        }
        if limits.max_entries >= u64::from(max_objects) {
            // An overwrite of a full store needs one record more than its entries.
            return Err(invalid("max_objects must exceed max_entries"));
        }
        let arena_size =
            align_up(arena_size.max(PAGE), PAGE).ok_or_else(|| invalid("arena size overflows"))?;
        let objects = u64::from(max_objects);
        let slots = u64::from(max_slots);
        let n_buckets = objects.next_power_of_two();
        let mut at = align_up(size_of::<Header>() as u64, PAGE).ok_or_else(|| invalid("size"))?;
        let mut place = |bytes: u64| -> Result<u64, ShmError> {
            let start = at;
            at = start
                .checked_add(bytes)
                .and_then(|end| align_up(end, PAGE))
                .ok_or_else(|| invalid("store size overflows"))?;
            Ok(start)
        };
        let slots_offset = place(slots * size_of::<Slot>() as u64)?;
        let records_offset = place(objects * size_of::<Record>() as u64)?;
        let buckets_offset = place(n_buckets * 4)?;
        let pins_offset = place(objects * slots * 4)?;
        let free_offset = place((objects + 2) * size_of::<Extent>() as u64)?;
        let arena_offset = place(arena_size)?;
        Ok(Geometry {
            max_value_size: limits.max_value_size,
            capacity_bytes: limits.capacity_bytes,
            max_entries: limits.max_entries,
            max_slots: slots,
            max_objects: objects,
            n_buckets,
            slots_offset,
            records_offset,
            buckets_offset,
            pins_offset,
            free_offset,
            arena_offset,
            arena_size,
            total_size: at,
        })
    }

    /// The limits recorded at create.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_value_size: self.max_value_size,
            capacity_bytes: self.capacity_bytes,
            max_entries: self.max_entries,
        }
    }

    /// Checks a geometry read from a file of `file_len` bytes: every region in bounds, in
    /// order, aligned, and sized as [`Geometry::new`] would have placed it.
    pub(crate) fn validate(&self, file_len: u64) -> Result<(), ShmError> {
        let slots = u32::try_from(self.max_slots).unwrap_or(0);
        let objects = u32::try_from(self.max_objects).unwrap_or(0);
        let expected = Geometry::new(self.limits(), self.arena_size, slots, objects)
            .map_err(|e| ShmError::Corrupted(format!("header geometry: {e}")))?;
        if expected != *self {
            return Err(ShmError::Corrupted(
                "header geometry is inconsistent".into(),
            ));
        }
        if self.total_size != file_len {
            return Err(ShmError::Corrupted(format!(
                "file is {file_len} bytes, its header says {}",
                self.total_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_places_regions_in_order_and_aligned() {
        let g = Geometry::new(
            Limits::with_capacity(1 << 20).max_entries(50),
            3 << 20,
            8,
            100,
        )
        .expect("geometry");
        let offsets = [
            g.slots_offset,
            g.records_offset,
            g.buckets_offset,
            g.pins_offset,
            g.free_offset,
            g.arena_offset,
            g.total_size,
        ];
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert!(offsets.iter().all(|o| o % PAGE == 0));
        assert!(g.slots_offset >= size_of::<Header>() as u64);
        assert_eq!(g.total_size - g.arena_offset, g.arena_size);
        assert_eq!(g.n_buckets, 128);
        g.validate(g.total_size).expect("valid");
        assert!(g.validate(g.total_size + 1).is_err());
        let mut bad = g;
        bad.arena_offset += PAGE;
        assert!(bad.validate(g.total_size).is_err());
    }

    #[test]
    fn header_fits_the_mutex_and_alignment_helpers() {
        assert!(size_of::<libc::pthread_mutex_t>() <= MUTEX_SPACE);
        assert_eq!(align_up(0, 64), Some(0));
        assert_eq!(align_up(65, 64), Some(128));
        assert_eq!(align_up(u64::MAX, 64), None);
        assert_eq!(extent_len(0), Some(64));
        assert_eq!(hash_key(b"a"), hash_key(b"a"));
        assert_ne!(hash_key(b"a"), hash_key(b"b"));
    }
}
