//! Giving back a dead handle's pins and reservations, and rebuilding every derived structure
//! after a lock holder died (or when a store fails its invariant check at open).

use super::{Refusal, Tables, corrupt, holds_extent};
use crate::layout::{
    ALIGN, Counters, NIL, REC_FREE, REC_LIVE, REC_RESERVED, REC_UNLINKED, SLOT_FREE, SLOT_IN_USE,
    Slot, extent_len, hash_key,
};

impl Tables<'_> {
    /// Takes a free slot for a handle of process `pid`.
    pub(crate) fn take_slot(&mut self, slot: u32, pid: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Slot {
                state: SLOT_IN_USE,
                pid,
            };
        }
    }

    /// Gives back every pin and reservation of `slot` (whose handle is gone) and frees it.
    pub(crate) fn reclaim_slot(&mut self, slot: u32) -> Result<(), Refusal> {
        if slot as usize >= self.slots_n() {
            return Err(corrupt(format!("slot {slot} out of range")));
        }
        for id in 0..self.records.len() as u32 {
            let Some(index) = self.pin_index(id, slot) else {
                continue;
            };
            let held = std::mem::take(&mut self.pins[index]);
            let rec = self.records[id as usize];
            if held > 0 {
                let rec = &mut self.records[id as usize];
                rec.pins = rec.pins.saturating_sub(u64::from(held));
                if rec.pins == 0 && rec.state == REC_UNLINKED {
                    crate::failpoint!("reclaim-before-free");
                    self.release_record(id)?;
                }
            } else if rec.state == REC_RESERVED && rec.owner == slot {
                self.counters.reserved_charge =
                    self.counters.reserved_charge.saturating_sub(rec.charge);
                crate::failpoint!("reclaim-before-free");
                self.release_record(id)?;
            }
        }
        self.slots[slot as usize] = Slot::default();
        Ok(())
    }

    /// Rebuilds every derived structure from the records and the pin table, after a process
    /// died holding the lock (so any change may be half done) or when the tables fail their
    /// check. Records are the ground truth; a record that fails validation is dropped.
    /// Returns how many records were dropped.
    pub(crate) fn recover(&mut self) -> Result<usize, Refusal> {
        let arena = self.geometry.arena_size;
        let slots = self.slots_n();
        let mut dropped = 0;
        // 0. Slots in an unknown state are in use (their lock decides whether they are alive).
        for s in self.slots.iter_mut() {
            if s.state != SLOT_FREE && s.state != SLOT_IN_USE {
                s.state = SLOT_IN_USE;
            }
        }
        // 1. Validate records; recompute pin totals from the pin table.
        for id in 0..self.records.len() {
            let rec = self.records[id];
            // Pins of free slots are stale (nobody can release them): drop them.
            for slot in 0..slots {
                if self.slots[slot].state == SLOT_FREE {
                    self.pins[id * slots + slot] = 0;
                }
            }
            let pins: u64 = self.pin_row(id).iter().map(|&p| u64::from(p)).sum();
            let valid = holds_extent(rec.state)
                && extent_len(rec.len).is_some_and(|e| e <= rec.extent)
                && rec.offset.is_multiple_of(ALIGN)
                && rec.extent.is_multiple_of(ALIGN)
                && rec.extent_end().is_some_and(|end| end <= arena)
                && (rec.state != REC_RESERVED
                    || ((rec.owner as usize) < slots
                        && self.slots[rec.owner as usize].state == SLOT_IN_USE))
                && (rec.state != REC_LIVE || (valid_key(&rec) && rec.hash == hash_key(rec.key())));
            if !valid {
                if rec.state != REC_FREE {
                    dropped += 1;
                }
                self.records[id].state = REC_FREE;
                self.pins[id * slots..(id + 1) * slots].fill(0);
                continue;
            }
            let r = &mut self.records[id];
            r.pins = pins;
            if rec.state == REC_RESERVED {
                // A commit cut short before the record went live: the reservation stays its
                // owner's (or is reclaimed with its slot), without a count or lease yet.
                r.readers = 0;
                r.expires = 0;
            }
            if rec.state == REC_UNLINKED && pins == 0 {
                r.state = REC_FREE;
            }
        }
        // 2. Drop records whose extents overlap an earlier one (cannot happen unless memory
        //    was scribbled on; the free list is rebuilt from what remains).
        let mut used: Vec<(u64, u64, usize)> = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state != REC_FREE)
            .map(|(id, r)| (r.offset, r.extent, id))
            .collect();
        used.sort_unstable();
        let mut end = 0;
        let mut kept: Vec<(u64, u64)> = Vec::with_capacity(used.len());
        for (offset, extent, id) in used {
            if offset < end {
                self.records[id].state = REC_FREE;
                self.pins[id * slots..(id + 1) * slots].fill(0);
                dropped += 1;
            } else {
                end = offset.saturating_add(extent);
                kept.push((offset, extent));
            }
        }
        // 3. The index, from live records; of two live records of one key (a commit cut
        //    short), the later commit wins.
        self.buckets.fill(NIL);
        let mut counters = Counters {
            commit_seq: self.counters.commit_seq,
            recoveries: self.counters.recoveries.wrapping_add(1),
            ..Counters::default()
        };
        for id in 0..self.records.len() as u32 {
            let rec = self.records[id as usize];
            counters.commit_seq = counters.commit_seq.max(rec.seq);
            match rec.state {
                REC_RESERVED => {
                    counters.reserved_charge = counters.reserved_charge.saturating_add(rec.charge)
                }
                REC_LIVE => match self.lookup(rec.key(), rec.hash) {
                    Some(other) if self.records[other as usize].seq >= rec.seq => {
                        self.records[id as usize].state = REC_UNLINKED;
                    }
                    Some(other) => {
                        self.unlink_chain(other);
                        self.records[other as usize].state = REC_UNLINKED;
                        counters.live_bytes = counters
                            .live_bytes
                            .saturating_sub(self.records[other as usize].len)
                            .saturating_add(rec.len);
                        self.link(id);
                    }
                    None => {
                        counters.live_bytes = counters.live_bytes.saturating_add(rec.len);
                        counters.entries += 1;
                        self.link(id);
                    }
                },
                _ => {}
            }
        }
        // Unlinked duplicates nobody pins are free.
        for id in 0..self.records.len() {
            let rec = self.records[id];
            if rec.state == REC_UNLINKED && rec.pins == 0 {
                self.records[id].state = REC_FREE;
                kept.retain(|&(o, _)| o != rec.offset);
            }
        }
        *self.counters = counters;
        self.rebuild_free_records();
        self.free_list()
            .rebuild(arena, kept)
            .map_err(|_| corrupt("free list too small"))?;
        crate::failpoint!("recover-done");
        Ok(dropped)
    }
}

/// True when a record's key bytes are a whole, valid object key.
pub(super) fn valid_key(rec: &crate::layout::Record) -> bool {
    (rec.key_len as usize) <= gos_store::MAX_KEY_LEN
        && std::str::from_utf8(rec.key())
            .ok()
            .is_some_and(|k| gos_store::ObjectKey::new(k).is_ok())
}
