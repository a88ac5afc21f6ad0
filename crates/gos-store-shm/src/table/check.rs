//! The invariant checker: every table against every other, with a summary. It runs at every
//! open (a store that fails it is recovered, or refused) and in the tests after every step.

use super::recover::valid_key;
use super::{Tables, holds_extent};
use crate::alloc::FreeList;
use crate::layout::{
    ALIGN, NIL, REC_FREE, REC_LIVE, REC_RESERVED, REC_UNLINKED, SLOT_FREE, SLOT_IN_USE, extent_len,
    hash_key,
};

/// A consistent snapshot of a store's tables, from [`crate::ShmStore::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShmReport {
    /// Live keys (expired ones not yet removed included).
    pub entries: u64,
    /// Bytes of live values.
    pub live_bytes: u64,
    /// Outstanding reservations (writes in progress).
    pub reservations: u64,
    /// Capacity held by them.
    pub reserved_bytes: u64,
    /// Deleted or overwritten values still pinned by a reader.
    pub unlinked: u64,
    /// Pins held, over all handles.
    pub pins: u64,
    /// Live keys with a reader count.
    pub counted: u64,
    /// Live keys with a lease.
    pub leased: u64,
    /// Free bytes of the arena.
    pub free_bytes: u64,
    /// Size of the arena.
    pub arena_bytes: u64,
    /// Handles holding a slot (live, or dead and not reclaimed yet).
    pub handles: u64,
    /// Times a lock holder died (or a damaged store was opened) and recovery ran.
    pub recoveries: u64,
}

impl Tables<'_> {
    /// Checks every invariant of the tables and summarizes them. Reads nothing out of bounds
    /// whatever the tables hold.
    pub(crate) fn check(&self) -> Result<ShmReport, String> {
        let arena = self.geometry.arena_size;
        let mut report = ShmReport {
            arena_bytes: arena,
            recoveries: u64::from(self.counters.recoveries),
            ..ShmReport::default()
        };
        for (slot, s) in self.slots.iter().enumerate() {
            if s.state != SLOT_FREE && s.state != SLOT_IN_USE {
                return Err(format!("slot {slot} has unknown state {}", s.state));
            }
        }
        let mut used = Vec::new();
        let mut free_records = 0;
        for (id, rec) in self.records.iter().enumerate() {
            let row = self.pin_row(id);
            let pins: u64 = row.iter().map(|&p| u64::from(p)).sum();
            if rec.state == REC_FREE {
                if pins != 0 {
                    return Err(format!("free record {id} has pins"));
                }
                free_records += 1;
                continue;
            }
            if !holds_extent(rec.state) {
                return Err(format!("record {id} has unknown state {}", rec.state));
            }
            let extent_ok = extent_len(rec.len).is_some_and(|e| e <= rec.extent)
                && rec.offset.is_multiple_of(ALIGN)
                && rec.extent.is_multiple_of(ALIGN)
                && rec.extent_end().is_some_and(|end| end <= arena);
            if !extent_ok {
                return Err(format!(
                    "record {id}: value of {} bytes in extent {}+{} does not fit the arena",
                    rec.len, rec.offset, rec.extent
                ));
            }
            if pins != rec.pins {
                return Err(format!(
                    "record {id}: pin total {} != table {pins}",
                    rec.pins
                ));
            }
            for (slot, &p) in row.iter().enumerate() {
                if p > 0 && self.slots[slot].state != SLOT_IN_USE {
                    return Err(format!("record {id} pinned by free slot {slot}"));
                }
            }
            report.pins += pins;
            used.push((rec.offset, rec.extent));
            match rec.state {
                REC_RESERVED => {
                    report.reservations += 1;
                    report.reserved_bytes = report.reserved_bytes.saturating_add(rec.charge);
                    if self.slots.get(rec.owner as usize).map(|s| s.state) != Some(SLOT_IN_USE) {
                        return Err(format!("reservation {id} owned by free slot {}", rec.owner));
                    }
                    if rec.readers != 0 || rec.expires != 0 {
                        return Err(format!("reservation {id} has a count or lease"));
                    }
                }
                REC_LIVE => {
                    report.entries += 1;
                    report.live_bytes = report.live_bytes.saturating_add(rec.len);
                    report.counted += u64::from(rec.readers != 0);
                    report.leased += u64::from(rec.expires != 0);
                    if !valid_key(rec) || rec.hash != hash_key(rec.key()) {
                        return Err(format!("live record {id} has a damaged key"));
                    }
                    if self.lookup(rec.key(), rec.hash) != Some(id as u32) {
                        return Err(format!("live record {id} not reachable by its key"));
                    }
                }
                REC_UNLINKED => {
                    report.unlinked += 1;
                    if pins == 0 {
                        return Err(format!("unlinked record {id} has no pin"));
                    }
                }
                _ => {}
            }
        }
        self.check_chains(free_records, report.entries)?;
        let counters = *self.counters;
        if (
            counters.entries,
            counters.live_bytes,
            counters.reserved_charge,
        ) != (report.entries, report.live_bytes, report.reserved_bytes)
        {
            return Err(format!(
                "counters {counters:?} disagree with records {report:?}"
            ));
        }
        if counters.entries > self.geometry.max_entries {
            return Err(format!(
                "{} entries, more than the limit of {}",
                counters.entries, self.geometry.max_entries
            ));
        }
        let free = FreeList {
            extents: &mut self.free.to_vec(),
            len: &mut self.counters.free_len.clone(),
        };
        free.check(arena)?;
        used.sort_unstable();
        for w in used.windows(2) {
            if w[0].0.saturating_add(w[0].1) > w[1].0 {
                return Err(format!("extents overlap: {:?} {:?}", w[0], w[1]));
            }
        }
        for e in free.as_slice() {
            let i = used.partition_point(|u| u.0 < e.offset);
            let overlaps_next = used
                .get(i)
                .is_some_and(|u| u.0 < e.offset.saturating_add(e.len));
            let overlaps_prev = i > 0 && used[i - 1].0.saturating_add(used[i - 1].1) > e.offset;
            if overlaps_next || overlaps_prev {
                return Err(format!("free extent {e:?} overlaps a used one"));
            }
        }
        report.free_bytes = free.free_bytes();
        let used_bytes = used.iter().fold(0u64, |s, u| s.saturating_add(u.1));
        if used_bytes.saturating_add(report.free_bytes) != arena {
            return Err(format!(
                "{used_bytes} used + {} free != arena {arena}",
                report.free_bytes
            ));
        }
        report.handles = self.slots.iter().filter(|s| s.state != SLOT_FREE).count() as u64;
        Ok(report)
    }

    /// The free-record chain covers exactly the free records; every bucket chain holds live
    /// records only, each once.
    fn check_chains(&self, free_records: usize, entries: u64) -> Result<(), String> {
        let mut chain = 0;
        let mut at = self.counters.free_record;
        while at != NIL {
            let rec = self
                .records
                .get(at as usize)
                .ok_or_else(|| format!("free chain points at {at}"))?;
            if rec.state != REC_FREE || chain > self.records.len() {
                return Err(format!(
                    "free chain reaches record {at} in state {}",
                    rec.state
                ));
            }
            chain += 1;
            at = rec.next;
        }
        if chain != free_records {
            return Err(format!(
                "free chain has {chain} records, {free_records} are free"
            ));
        }
        let mut linked = 0;
        for (bucket, &head) in self.buckets.iter().enumerate() {
            let mut at = head;
            while at != NIL {
                let rec = self
                    .records
                    .get(at as usize)
                    .ok_or_else(|| format!("bucket chain points at {at}"))?;
                if rec.state != REC_LIVE || linked > self.records.len() {
                    return Err(format!(
                        "bucket chain reaches record {at} in state {}",
                        rec.state
                    ));
                }
                if self.bucket_of(rec.hash) != bucket {
                    return Err(format!("record {at} is chained in the wrong bucket"));
                }
                linked += 1;
                at = rec.next;
            }
        }
        if linked as u64 != entries {
            return Err(format!("{linked} records linked, {entries} live"));
        }
        Ok(())
    }
}
