//! The store's metadata logic over plain slices: the index, admission against the limits,
//! reserve and commit, the pin protocol, reclaiming a dead handle's slot, and recovery after a
//! lock holder died. No system calls: the same code runs over the mapping (under the lock) and
//! over `Vec`s in the tests.

use gos_store::{Error, KeyPrefix, ObjectKey, PutMode, StoreStats};

use crate::alloc::FreeList;
use crate::layout::{
    Counters, Extent, Geometry, NIL, REC_FREE, REC_LIVE, REC_RESERVED, REC_UNLINKED, Record,
    SLOT_FREE, SLOT_IN_USE, Slot, extent_len, hash_key,
};

/// The metadata regions of a store, borrowed mutably (under the store lock).
#[derive(Debug)]
pub(crate) struct Tables<'a> {
    pub(crate) geometry: Geometry,
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
    /// Every record is in use.
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
}

/// A consistent snapshot of a store's tables, from [`crate::ShmStore::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShmReport {
    /// Live keys.
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
    /// Free bytes of the arena.
    pub free_bytes: u64,
    /// Size of the arena.
    pub arena_bytes: u64,
    /// Handles holding a slot (live, or dead and not reclaimed yet).
    pub handles: u64,
    /// Times a lock holder died and recovery ran.
    pub recoveries: u64,
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

    fn pin_index(&self, id: u32, slot: u32) -> usize {
        id as usize * self.slots_n() + slot as usize
    }

    /// Writes an empty store: every record free, the whole arena free.
    pub(crate) fn format(&mut self) -> Result<(), Refusal> {
        *self.counters = Counters::default();
        self.slots.fill(Slot::default());
        self.buckets.fill(NIL);
        self.pins.fill(0);
        self.rebuild_free_records();
        let arena = self.geometry.arena_size;
        self.free_list()
            .rebuild(arena, Vec::new())
            .map_err(|_| Refusal::Corrupt("free list too small".into()))
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

    /// The live record of `key`.
    pub(crate) fn lookup(&self, key: &[u8], hash: u64) -> Option<u32> {
        let mut id = self.buckets[self.bucket_of(hash)];
        let mut steps = 0;
        while id != NIL && steps <= self.records.len() {
            let rec = self.records.get(id as usize)?;
            if rec.hash == hash && rec.key() == key {
                return Some(id);
            }
            id = rec.next;
            steps += 1;
        }
        None
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

    /// Frees a record and its extent (the state is cleared first, so a crash in between only
    /// leaks the extent until recovery rebuilds the free list).
    fn release_record(&mut self, id: u32) -> Result<(), Refusal> {
        let rec = self.records[id as usize];
        self.records[id as usize] = Record {
            next: self.counters.free_record,
            ..Record::default()
        };
        self.counters.free_record = id;
        self.free_list()
            .free(rec.offset, rec.extent)
            .map_err(|_| Refusal::Corrupt("free list overflow".into()))
    }

    fn available(&self, ignoring_charge: u64, old_len: u64) -> u64 {
        self.geometry
            .capacity_bytes
            .saturating_sub(self.counters.live_bytes)
            .saturating_sub(self.counters.reserved_charge - ignoring_charge)
            .saturating_add(old_len)
    }

    /// Reserves an extent of `len` bytes for `slot`, checking the limits first: the value
    /// size, then (for a put, whose key is known) the mode, the capacity and the entry count.
    pub(crate) fn admit(
        &mut self,
        slot: u32,
        len: u64,
        key: Option<(&[u8], PutMode)>,
    ) -> Result<Admitted, Refusal> {
        self.geometry
            .limits()
            .check_value_size(len)
            .map_err(Refusal::Limit)?;
        let mut old_len = 0;
        let mut exists = false;
        if let Some((key, mode)) = key
            && let Some(old) = self.lookup(key, hash_key(key))
        {
            if mode == PutMode::Create {
                return Err(already_exists(key));
            }
            old_len = self.records[old as usize].len;
            exists = true;
        }
        let charge = len.saturating_sub(old_len);
        let available = self.available(0, old_len);
        if len > available {
            return Err(Refusal::Limit(Error::StoreFull {
                requested: len,
                available,
            }));
        }
        if key.is_some() && !exists && self.counters.entries >= self.geometry.max_entries {
            return Err(Refusal::Limit(Error::TooManyEntries {
                max: self.geometry.max_entries,
            }));
        }
        let extent = extent_len(len).ok_or(Refusal::NoRoom {
            requested: len,
            largest: 0,
        })?;
        let id = self.counters.free_record;
        if id == NIL || id as usize >= self.records.len() {
            return Err(Refusal::NoRecord);
        }
        let Some(offset) = self.free_list().alloc(extent) else {
            let largest = self.free_list().largest();
            return Err(Refusal::NoRoom {
                requested: len,
                largest,
            });
        };
        self.counters.free_record = self.records[id as usize].next;
        let rec = &mut self.records[id as usize];
        rec.owner = slot;
        rec.next = NIL;
        rec.offset = offset;
        rec.extent = extent;
        rec.len = len;
        rec.charge = charge;
        rec.pins = 0;
        rec.key_len = 0;
        rec.state = REC_RESERVED;
        self.counters.reserved_charge += charge;
        Ok(Admitted { id, offset })
    }

    fn reserved_by(&self, id: u32, slot: u32) -> Result<Record, Refusal> {
        match self.records.get(id as usize) {
            Some(rec) if rec.state == REC_RESERVED && rec.owner == slot => Ok(*rec),
            _ => Err(Refusal::Corrupt(format!(
                "record {id} is not a reservation of slot {slot}"
            ))),
        }
    }

    /// Publishes reservation `id` under `key`: checks the mode, the capacity and the entry
    /// count again, then links the new record and unlinks the old one.
    pub(crate) fn commit(
        &mut self,
        slot: u32,
        id: u32,
        key: &ObjectKey,
        mode: PutMode,
    ) -> Result<(), Refusal> {
        let rec = self.reserved_by(id, slot)?;
        let key_bytes = key.as_str().as_bytes();
        let hash = hash_key(key_bytes);
        let old = self.lookup(key_bytes, hash);
        if old.is_some() && mode == PutMode::Create {
            return Err(already_exists(key_bytes));
        }
        let old_len = old.map_or(0, |o| self.records[o as usize].len);
        let available = self.available(rec.charge, old_len);
        if rec.len > available {
            return Err(Refusal::Limit(Error::StoreFull {
                requested: rec.len,
                available,
            }));
        }
        if old.is_none() && self.counters.entries >= self.geometry.max_entries {
            return Err(Refusal::Limit(Error::TooManyEntries {
                max: self.geometry.max_entries,
            }));
        }
        self.counters.commit_seq += 1;
        let seq = self.counters.commit_seq;
        let r = &mut self.records[id as usize];
        r.key[..key_bytes.len()].copy_from_slice(key_bytes);
        r.key_len = key_bytes.len() as u32;
        r.hash = hash;
        r.seq = seq;
        r.owner = NIL;
        r.charge = 0;
        r.state = REC_LIVE;
        self.link(id);
        self.counters.reserved_charge -= rec.charge;
        self.counters.live_bytes += rec.len;
        self.counters.entries += 1;
        if let Some(old) = old {
            self.unlink_live(old)?;
        }
        Ok(())
    }

    /// Drops reservation `id` of `slot` uncommitted.
    pub(crate) fn abandon(&mut self, slot: u32, id: u32) -> Result<(), Refusal> {
        let rec = self.reserved_by(id, slot)?;
        self.counters.reserved_charge -= rec.charge;
        self.release_record(id)
    }

    /// Removes live record `id` from the index; frees it unless a reader pins it.
    fn unlink_live(&mut self, id: u32) -> Result<(), Refusal> {
        self.unlink_chain(id);
        let rec = &mut self.records[id as usize];
        self.counters.live_bytes -= rec.len;
        self.counters.entries -= 1;
        if rec.pins == 0 {
            self.release_record(id)
        } else {
            rec.state = REC_UNLINKED;
            Ok(())
        }
    }

    /// Pins the value of `key` for `slot`.
    pub(crate) fn pin(&mut self, slot: u32, key: &[u8]) -> Option<Pinned> {
        let id = self.lookup(key, hash_key(key))?;
        let index = self.pin_index(id, slot);
        self.pins[index] += 1;
        let rec = &mut self.records[id as usize];
        rec.pins += 1;
        Some(Pinned {
            id,
            offset: rec.offset,
            len: rec.len,
        })
    }

    /// Releases one pin of `slot` on `id`; frees an unlinked record with its last pin.
    pub(crate) fn unpin(&mut self, slot: u32, id: u32) -> Result<(), Refusal> {
        let index = self.pin_index(id, slot);
        let rec = self.records.get(id as usize).copied();
        match (rec, self.pins.get(index).copied()) {
            (Some(rec), Some(p)) if p > 0 && rec.pins > 0 => {
                self.pins[index] = p - 1;
                self.records[id as usize].pins -= 1;
                if rec.pins == 1 && rec.state == REC_UNLINKED {
                    self.release_record(id)?;
                }
                Ok(())
            }
            _ => Err(Refusal::Corrupt(format!(
                "slot {slot} holds no pin on record {id}"
            ))),
        }
    }

    /// Removes `key`; true if it was there.
    pub(crate) fn delete(&mut self, key: &[u8]) -> Result<bool, Refusal> {
        match self.lookup(key, hash_key(key)) {
            Some(id) => self.unlink_live(id).map(|()| true),
            None => Ok(false),
        }
    }

    fn live_keys(&self, prefix: &KeyPrefix) -> Vec<(u32, ObjectKey)> {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == REC_LIVE)
            .filter_map(|(id, r)| {
                let key = std::str::from_utf8(r.key()).ok()?;
                let key = ObjectKey::new(key).ok()?;
                key.has_prefix(prefix).then_some((id as u32, key))
            })
            .collect()
    }

    /// Removes every key under `prefix`; returns how many.
    pub(crate) fn delete_prefix(&mut self, prefix: &KeyPrefix) -> Result<usize, Refusal> {
        let doomed = self.live_keys(prefix);
        for &(id, _) in &doomed {
            self.unlink_live(id)?;
        }
        Ok(doomed.len())
    }

    /// The keys under `prefix`, ascending.
    pub(crate) fn keys(&self, prefix: &KeyPrefix) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = self.live_keys(prefix).into_iter().map(|k| k.1).collect();
        keys.sort_unstable();
        keys
    }

    /// Entries, bytes and capacity.
    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.counters.entries,
            bytes: self.counters.live_bytes,
            reserved: self.counters.reserved_charge,
            capacity_bytes: self.geometry.capacity_bytes,
        }
    }

    /// Takes a free slot for a handle of process `pid`.
    pub(crate) fn take_slot(&mut self, slot: u32, pid: u32) {
        self.slots[slot as usize] = Slot {
            state: SLOT_IN_USE,
            pid,
        };
    }

    /// Gives back every pin and reservation of `slot` (whose handle is gone) and frees it.
    pub(crate) fn reclaim_slot(&mut self, slot: u32) -> Result<(), Refusal> {
        for id in 0..self.records.len() as u32 {
            let index = self.pin_index(id, slot);
            let held = std::mem::take(&mut self.pins[index]);
            let rec = self.records[id as usize];
            if held > 0 {
                let rec = &mut self.records[id as usize];
                rec.pins = rec.pins.saturating_sub(u64::from(held));
                if rec.pins == 0 && rec.state == REC_UNLINKED {
                    self.release_record(id)?;
                }
            } else if rec.state == REC_RESERVED && rec.owner == slot {
                self.counters.reserved_charge -= rec.charge;
                self.release_record(id)?;
            }
        }
        self.slots[slot as usize] = Slot::default();
        Ok(())
    }

    /// Rebuilds every derived structure from the records and the pin table, after a process
    /// died holding the lock (so any change may be half done). Records are the ground truth;
    /// a record that fails validation is dropped. Returns how many records were dropped.
    pub(crate) fn recover(&mut self) -> Result<usize, Refusal> {
        let arena = self.geometry.arena_size;
        let slots = self.slots_n();
        let mut dropped = 0;
        // 1. Validate records; recompute pin totals from the pin table.
        for id in 0..self.records.len() {
            let rec = self.records[id];
            let row = &self.pins[id * slots..(id + 1) * slots];
            let pins: u64 = row.iter().map(|&p| u64::from(p)).sum();
            let valid = match rec.state {
                REC_FREE => false,
                REC_RESERVED | REC_LIVE | REC_UNLINKED => {
                    extent_len(rec.len).is_some_and(|e| e <= rec.extent)
                        && rec.offset.is_multiple_of(crate::layout::ALIGN)
                        && rec
                            .offset
                            .checked_add(rec.extent)
                            .is_some_and(|end| end <= arena)
                        && (rec.state != REC_RESERVED || (rec.owner as usize) < slots)
                        && (rec.state != REC_LIVE
                            || (rec.key_len as usize <= gos_store::MAX_KEY_LEN
                                && rec.hash == hash_key(rec.key())))
                }
                _ => false,
            };
            if !valid {
                if rec.state != REC_FREE {
                    dropped += 1;
                }
                self.records[id].state = REC_FREE;
                self.pins[id * slots..(id + 1) * slots].fill(0);
                continue;
            }
            self.records[id].pins = pins;
            if rec.state == REC_UNLINKED && pins == 0 {
                self.records[id].state = REC_FREE;
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
                end = offset + extent;
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
                REC_RESERVED => counters.reserved_charge += rec.charge,
                REC_LIVE => match self.lookup(rec.key(), rec.hash) {
                    Some(other) if self.records[other as usize].seq >= rec.seq => {
                        self.records[id as usize].state = REC_UNLINKED;
                    }
                    Some(other) => {
                        self.unlink_chain(other);
                        self.records[other as usize].state = REC_UNLINKED;
                        counters.live_bytes -= self.records[other as usize].len;
                        counters.live_bytes += rec.len;
                        self.link(id);
                    }
                    None => {
                        counters.live_bytes += rec.len;
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
            .map_err(|_| Refusal::Corrupt("free list too small".into()))?;
        Ok(dropped)
    }

    /// Checks every invariant of the tables and summarizes them.
    pub(crate) fn check(&self) -> Result<ShmReport, String> {
        let arena = self.geometry.arena_size;
        let slots = self.slots_n();
        let mut report = ShmReport {
            arena_bytes: arena,
            recoveries: u64::from(self.counters.recoveries),
            ..ShmReport::default()
        };
        let mut used = Vec::new();
        let mut free_records = 0;
        for (id, rec) in self.records.iter().enumerate() {
            let row = &self.pins[id * slots..(id + 1) * slots];
            let pins: u64 = row.iter().map(|&p| u64::from(p)).sum();
            if rec.state == REC_FREE {
                if pins != 0 {
                    return Err(format!("free record {id} has pins"));
                }
                free_records += 1;
                continue;
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
                    report.reserved_bytes += rec.charge;
                    if self.slots.get(rec.owner as usize).map(|s| s.state) != Some(SLOT_IN_USE) {
                        return Err(format!("reservation {id} owned by free slot {}", rec.owner));
                    }
                }
                REC_LIVE => {
                    report.entries += 1;
                    report.live_bytes += rec.len;
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
                s => return Err(format!("record {id} has unknown state {s}")),
            }
        }
        // Free-record chain covers exactly the free records.
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
        // Every bucket chain holds live records only, each once.
        let mut linked = 0;
        for &head in self.buckets.iter() {
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
                linked += 1;
                at = rec.next;
            }
        }
        if linked as u64 != report.entries {
            return Err(format!("{linked} records linked, {} live", report.entries));
        }
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
        let free = FreeList {
            extents: &mut self.free.to_vec(),
            len: &mut self.counters.free_len.clone(),
        };
        free.check(arena)?;
        used.sort_unstable();
        for w in used.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!("extents overlap: {:?} {:?}", w[0], w[1]));
            }
        }
        for e in free.as_slice() {
            let i = used.partition_point(|u| u.0 < e.offset);
            let overlaps_next = used.get(i).is_some_and(|u| u.0 < e.offset + e.len);
            let overlaps_prev = i > 0 && used[i - 1].0 + used[i - 1].1 > e.offset;
            if overlaps_next || overlaps_prev {
                return Err(format!("free extent {e:?} overlaps a used one"));
            }
        }
        report.free_bytes = free.free_bytes();
        let used_bytes: u64 = used.iter().map(|u| u.1).sum();
        if used_bytes + report.free_bytes != arena {
            return Err(format!(
                "{used_bytes} used + {} free != arena {arena}",
                report.free_bytes
            ));
        }
        report.handles = self.slots.iter().filter(|s| s.state != SLOT_FREE).count() as u64;
        Ok(report)
    }
}

fn already_exists(key: &[u8]) -> Refusal {
    match std::str::from_utf8(key)
        .ok()
        .and_then(|k| ObjectKey::new(k).ok())
    {
        Some(key) => Refusal::Limit(Error::AlreadyExists { key }),
        None => Refusal::Corrupt("stored key is not a valid key".into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use gos_store::Limits;

    use super::*;

    /// Tables in process memory, for tests without a mapping.
    pub(crate) struct Owned {
        geometry: Geometry,
        counters: Counters,
        slots: Vec<Slot>,
        records: Vec<Record>,
        buckets: Vec<u32>,
        pins: Vec<u32>,
        free: Vec<Extent>,
    }

    impl Owned {
        pub(crate) fn new(limits: Limits, arena: u64, slots: u32, objects: u32) -> Self {
            let geometry = Geometry::new(limits, arena, slots, objects).expect("geometry");
            let mut owned = Owned {
                geometry,
                counters: Counters::default(),
                slots: vec![Slot::default(); slots as usize],
                records: vec![Record::default(); objects as usize],
                buckets: vec![NIL; geometry.n_buckets as usize],
                pins: vec![0; (objects * slots) as usize],
                free: vec![Extent::default(); objects as usize + 2],
            };
            owned.tables().format().expect("format");
            for s in 0..slots {
                owned.tables().take_slot(s, 1);
            }
            owned
        }

        pub(crate) fn tables(&mut self) -> Tables<'_> {
            Tables {
                geometry: self.geometry,
                counters: &mut self.counters,
                slots: &mut self.slots,
                records: &mut self.records,
                buckets: &mut self.buckets,
                pins: &mut self.pins,
                free: &mut self.free,
            }
        }
    }

    fn key(s: &str) -> ObjectKey {
        ObjectKey::new(s).expect("key")
    }

    fn put(
        t: &mut Tables<'_>,
        slot: u32,
        k: &str,
        len: u64,
        mode: PutMode,
    ) -> Result<u32, Refusal> {
        let k = key(k);
        let a = t.admit(slot, len, Some((k.as_str().as_bytes(), mode)))?;
        t.commit(slot, a.id, &k, mode)?;
        Ok(a.id)
    }

    fn limit(r: Result<u32, Refusal>) -> Error {
        match r {
            Err(Refusal::Limit(e)) => e,
            other => panic!("expected a limit error, got {other:?}"),
        }
    }

    #[test]
    fn put_get_delete_and_limits() {
        let mut o = Owned::new(Limits::with_capacity(1000).max_entries(2), 4096, 2, 16);
        let mut t = o.tables();
        put(&mut t, 0, "a", 400, PutMode::Overwrite).expect("a");
        assert!(matches!(
            limit(put(&mut t, 0, "a", 1, PutMode::Create)),
            Error::AlreadyExists { .. }
        ));
        // An overwrite only needs the growth.
        put(&mut t, 0, "a", 900, PutMode::Overwrite).expect("grow a");
        match limit(put(&mut t, 0, "b", 200, PutMode::Overwrite)) {
            Error::StoreFull {
                requested,
                available,
            } => assert_eq!((requested, available), (200, 100)),
            e => panic!("{e}"),
        }
        assert!(matches!(
            limit(put(&mut t, 0, "b", 2000, PutMode::Overwrite)),
            Error::TooLarge { .. }
        ));
        put(&mut t, 0, "b", 100, PutMode::Overwrite).expect("b");
        assert!(matches!(
            limit(put(&mut t, 0, "c", 0, PutMode::Overwrite)),
            Error::TooManyEntries { max: 2 }
        ));
        assert_eq!(t.stats().bytes, 1000);
        assert_eq!(t.keys(&KeyPrefix::root()), vec![key("a"), key("b")]);
        assert!(t.delete(b"a").expect("delete"));
        assert!(!t.delete(b"a").expect("delete"));
        let report = t.check().expect("invariants");
        assert_eq!((report.entries, report.live_bytes), (1, 100));
        assert_eq!(report.free_bytes, 4096 - 128);
    }

    #[test]
    fn pinned_values_outlive_delete_and_overwrite() {
        let mut o = Owned::new(Limits::with_capacity(1 << 20), 1 << 20, 3, 16);
        let mut t = o.tables();
        let first = put(&mut t, 0, "k", 1000, PutMode::Overwrite).expect("put");
        let p1 = t.pin(1, b"k").expect("pin");
        let p2 = t.pin(2, b"k").expect("pin");
        assert_eq!(p1, p2);
        put(&mut t, 0, "k", 500, PutMode::Overwrite).expect("overwrite");
        assert_eq!(t.records[first as usize].state, REC_UNLINKED);
        assert_eq!(t.pin(1, b"k").map(|p| p.len), Some(500));
        assert!(t.delete(b"k").expect("delete"));
        assert!(t.pin(1, b"k").is_none());
        let report = t.check().expect("invariants");
        assert_eq!((report.entries, report.unlinked, report.pins), (0, 2, 3));
        t.unpin(1, p1.id).expect("unpin");
        assert_eq!(t.records[first as usize].state, REC_UNLINKED);
        assert!(t.unpin(1, p1.id).is_err(), "slot 1 has no pin left on it");
        t.unpin(2, p2.id).expect("unpin");
        assert_eq!(t.records[first as usize].state, REC_FREE);
        // Slot 1 still pins the second value; reclaiming the slot frees it.
        t.reclaim_slot(1).expect("reclaim");
        t.take_slot(1, 1);
        let report = t.check().expect("invariants");
        assert_eq!(
            (report.unlinked, report.pins, report.free_bytes),
            (0, 0, 1 << 20)
        );
    }

    #[test]
    fn reservations_are_charged_and_reclaimed() {
        let mut o = Owned::new(Limits::with_capacity(1000), 4096, 2, 8);
        let mut t = o.tables();
        let a = t.admit(1, 600, None).expect("reserve");
        assert!(matches!(
            t.admit(0, 600, None),
            Err(Refusal::Limit(Error::StoreFull { available: 400, .. }))
        ));
        let report = t.check().expect("invariants");
        assert_eq!((report.reservations, report.reserved_bytes), (1, 600));
        t.abandon(1, a.id).expect("abandon");
        let b = t.admit(1, 600, None).expect("reserve again");
        assert!(t.abandon(0, b.id).is_err(), "another slot cannot drop it");
        t.reclaim_slot(1).expect("reclaim");
        t.take_slot(1, 1);
        let report = t.check().expect("invariants");
        assert_eq!((report.reservations, report.free_bytes), (0, 4096));
        let c = t.admit(1, 1000, None).expect("whole capacity");
        t.commit(1, c.id, &key("x"), PutMode::Create)
            .expect("commit");
        assert_eq!(t.stats().bytes, 1000);
    }

    #[test]
    fn physical_exhaustion_is_a_refusal_not_a_panic() {
        let mut o = Owned::new(Limits::UNLIMITED, 4096, 1, 4);
        let mut t = o.tables();
        for i in 0..4 {
            put(&mut t, 0, &format!("k{i}"), 10, PutMode::Overwrite).expect("put");
        }
        assert!(matches!(
            put(&mut t, 0, "k9", 10, PutMode::Overwrite),
            Err(Refusal::NoRecord)
        ));
        t.delete_prefix(&KeyPrefix::root()).expect("delete all");
        assert!(matches!(
            put(&mut t, 0, "big", 8192, PutMode::Overwrite),
            Err(Refusal::NoRoom { .. })
        ));
        t.check().expect("invariants");
    }

    /// Every prefix of a commit's writes, followed by recovery, leaves a consistent store with
    /// either the old or the new value under the key.
    #[test]
    fn recovery_after_a_commit_cut_short() {
        let mut o = Owned::new(Limits::with_capacity(1 << 20), 1 << 20, 2, 8);
        let mut t = o.tables();
        let old = put(&mut t, 0, "k", 100, PutMode::Overwrite).expect("put");
        let a = t
            .admit(0, 200, Some((b"k", PutMode::Overwrite)))
            .expect("admit");
        // Crash after the new record went live, before the old one was unlinked and before
        // the counters moved.
        let hash = hash_key(b"k");
        let r = &mut t.records[a.id as usize];
        r.key[..1].copy_from_slice(b"k");
        r.key_len = 1;
        r.hash = hash;
        r.seq = 2;
        r.state = REC_LIVE;
        assert!(t.check().is_err());
        t.recover().expect("recover");
        let report = t.check().expect("invariants after recovery");
        assert_eq!(
            (report.entries, report.live_bytes, report.reserved_bytes),
            (1, 200, 0)
        );
        assert_eq!(t.records[old as usize].state, REC_FREE);
        assert_eq!(t.pin(0, b"k").map(|p| p.len), Some(200));
    }

    #[test]
    fn recovery_rebuilds_a_leaked_extent_and_a_stale_pin_total() {
        let mut o = Owned::new(Limits::with_capacity(1 << 20), 1 << 20, 2, 8);
        let mut t = o.tables();
        put(&mut t, 0, "k", 100, PutMode::Overwrite).expect("put");
        // An allocation cut short: extent taken from the free list, record never written.
        t.free_list().alloc(4096).expect("alloc");
        // A pin cut short: the table moved, the total did not.
        let id = t.lookup(b"k", hash_key(b"k")).expect("k");
        t.pins[id as usize * 2 + 1] += 1;
        assert!(t.check().is_err());
        assert_eq!(t.recover().expect("recover"), 0);
        let report = t.check().expect("invariants");
        assert_eq!((report.pins, report.free_bytes), (1, (1 << 20) - 128));
        t.reclaim_slot(1).expect("reclaim");
        t.take_slot(1, 1);
        assert_eq!(t.check().expect("invariants").pins, 0);
    }

    /// Random operations from several slots against a model; invariants after every step.
    #[test]
    fn random_ops_keep_every_invariant() {
        const SLOTS: u32 = 3;
        let mut o = Owned::new(
            Limits::with_capacity(20_000).max_entries(12),
            64 * 1024,
            SLOTS,
            64,
        );
        let mut t = o.tables();
        let mut model = std::collections::BTreeMap::<String, u64>::new();
        let mut pins: Vec<(u32, Pinned)> = Vec::new();
        let mut reservations: Vec<(u32, Admitted, u64)> = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for step in 0..20_000 {
            let slot = next(u64::from(SLOTS)) as u32;
            let k = format!("f/n{}/k{}", next(3), next(6));
            match next(8) {
                0 | 1 => {
                    let len = next(3000);
                    let used: u64 = model.values().sum();
                    let old = model.get(&k).copied();
                    match put(&mut t, slot, &k, len, PutMode::Overwrite) {
                        Ok(_) => {
                            model.insert(k, len);
                        }
                        Err(Refusal::Limit(Error::StoreFull { .. })) => {
                            let reserved: u64 = reservations.iter().map(|r| r.2).sum();
                            assert!(
                                used + reserved + len.saturating_sub(old.unwrap_or(0)) > 20_000
                                    || reserved > 0
                            );
                        }
                        Err(Refusal::Limit(Error::TooManyEntries { .. })) => {
                            assert!(old.is_none() && model.len() >= 12);
                        }
                        Err(Refusal::NoRecord | Refusal::NoRoom { .. }) => {}
                        Err(e) => panic!("step {step}: {e:?}"),
                    }
                }
                2 => {
                    assert_eq!(
                        t.delete(k.as_bytes()).expect("delete"),
                        model.remove(&k).is_some()
                    );
                }
                3 => {
                    let pinned = t.pin(slot, k.as_bytes());
                    assert_eq!(pinned.map(|p| p.len), model.get(&k).copied());
                    if let Some(p) = pinned {
                        pins.push((slot, p));
                    }
                }
                4 if !pins.is_empty() => {
                    let (slot, p) = pins.swap_remove(next(pins.len() as u64) as usize);
                    t.unpin(slot, p.id).expect("unpin");
                }
                5 => {
                    let len = next(2000);
                    if let Ok(a) = t.admit(slot, len, None) {
                        reservations.push((slot, a, len));
                    }
                }
                6 if !reservations.is_empty() => {
                    let (slot, a, len) =
                        reservations.swap_remove(next(reservations.len() as u64) as usize);
                    if next(2) == 0 {
                        t.abandon(slot, a.id).expect("abandon");
                    } else {
                        match t.commit(slot, a.id, &key(&k), PutMode::Overwrite) {
                            Ok(()) => {
                                model.insert(k, len);
                            }
                            Err(Refusal::Limit(_)) => t.abandon(slot, a.id).expect("abandon"),
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
                7 if next(50) == 0 => {
                    // A handle dies: its pins and reservations go.
                    t.reclaim_slot(slot).expect("reclaim");
                    t.take_slot(slot, 1);
                    pins.retain(|p| p.0 != slot);
                    reservations.retain(|r| r.0 != slot);
                    if next(2) == 0 {
                        t.recover().expect("recover");
                    }
                }
                _ => {}
            }
            let report = t.check().unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(report.entries, model.len() as u64);
            assert_eq!(report.live_bytes, model.values().sum::<u64>());
            assert_eq!(report.pins, pins.len() as u64);
        }
        assert_eq!(
            t.keys(&KeyPrefix::root()),
            model.keys().map(|k| key(k)).collect::<Vec<_>>()
        );
    }
}
