//! An object's life after its commit: pins, head, delete, release (the reader count), leases
//! (lazy expiry and sweep), listings and bulk deletes.

use gos_store::{KeyPrefix, ObjectKey, ObjectMeta, Readers, ReleaseOutcome, StoreStats};

use super::{Pinned, Refusal, Tables, corrupt};
use crate::layout::{REC_LIVE, REC_UNLINKED};

impl Tables<'_> {
    /// Pins the value of `key` for `slot`. The extent is checked to lie in the arena before
    /// the pin is taken: the caller builds a slice from it.
    pub(crate) fn pin(&mut self, slot: u32, key: &[u8]) -> Result<Option<Pinned>, Refusal> {
        let Some(id) = self.find(key)? else {
            return Ok(None);
        };
        let rec = self.records[id as usize];
        if rec.len > rec.extent {
            return Err(corrupt(format!("record {id} is longer than its extent")));
        }
        self.check_extent(rec.offset, rec.extent)?;
        let index = self
            .pin_index(id, slot)
            .ok_or_else(|| corrupt(format!("slot {slot} out of range")))?;
        self.pins[index] = self.pins[index].saturating_add(1);
        self.records[id as usize].pins = rec.pins.saturating_add(1);
        Ok(Some(Pinned {
            id,
            offset: rec.offset,
            len: rec.len,
            digest: rec.digest(),
        }))
    }

    /// Records `digest` as the value of record `id`, which `slot` holds a pin on (so the record
    /// and its bytes cannot change or be reused meanwhile). A digest already there is kept.
    pub(crate) fn set_digest(
        &mut self,
        slot: u32,
        id: u32,
        digest: gos_store::Digest,
    ) -> Result<(), Refusal> {
        let pinned = self
            .pin_index(id, slot)
            .and_then(|i| self.pins.get(i).copied())
            .is_some_and(|p| p > 0);
        if !pinned {
            return Err(corrupt(format!("slot {slot} holds no pin on record {id}")));
        }
        let rec = &mut self.records[id as usize];
        if rec.state == REC_LIVE || rec.state == REC_UNLINKED {
            if rec.digest().is_none() {
                rec.set_digest(digest);
            }
            Ok(())
        } else {
            Err(corrupt(format!("pinned record {id} is not a value")))
        }
    }

    /// Releases one pin of `slot` on `id`; frees an unlinked record with its last pin.
    pub(crate) fn unpin(&mut self, slot: u32, id: u32) -> Result<(), Refusal> {
        let index = self.pin_index(id, slot);
        let rec = self.records.get(id as usize).copied();
        match (rec, index.and_then(|i| self.pins.get(i).copied()), index) {
            (Some(rec), Some(p), Some(index)) if p > 0 && rec.pins > 0 => {
                self.pins[index] = p - 1;
                self.records[id as usize].pins -= 1;
                if rec.pins == 1 && rec.state == REC_UNLINKED {
                    self.release_record(id)?;
                }
                Ok(())
            }
            _ => Err(corrupt(format!("slot {slot} holds no pin on record {id}"))),
        }
    }

    /// Size, readers left and lease deadline of `key`, without pinning it.
    pub(crate) fn head(&mut self, key: &[u8]) -> Result<Option<ObjectMeta>, Refusal> {
        Ok(self.find(key)?.map(|id| {
            let rec = &self.records[id as usize];
            ObjectMeta::new(
                rec.len,
                Readers::exactly(rec.readers).unwrap_or(Readers::Unbounded),
                (rec.expires != 0).then(|| gos_store::from_unix_millis(rec.expires)),
            )
            .with_digest(rec.digest())
        }))
    }

    /// Removes `key`; true if it was there (and not expired).
    pub(crate) fn delete(&mut self, key: &[u8]) -> Result<bool, Refusal> {
        match self.find(key)? {
            Some(id) => self.unlink_live(id).map(|()| true),
            None => Ok(false),
        }
    }

    /// One reader is done with `key`: decrements its count, and unlinks it at zero. Pins keep
    /// the bytes of readers that hold the value.
    pub(crate) fn release(&mut self, key: &[u8]) -> Result<ReleaseOutcome, Refusal> {
        let Some(id) = self.find(key)? else {
            return Ok(ReleaseOutcome::NotFound);
        };
        let readers =
            Readers::exactly(self.records[id as usize].readers).unwrap_or(Readers::Unbounded);
        let (outcome, left) = ReleaseOutcome::after(readers);
        match outcome {
            ReleaseOutcome::Remaining(_) => {
                self.records[id as usize].readers = left.count().unwrap_or(0);
            }
            ReleaseOutcome::Deleted => {
                crate::failpoint!("release-before-unlink");
                self.unlink_live(id)?;
            }
            ReleaseOutcome::Unbounded | ReleaseOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    /// Unlinks every live record whose lease ran out; returns how many.
    pub(crate) fn sweep(&mut self) -> Result<usize, Refusal> {
        let now = self.now_ms;
        let mut removed = 0;
        for id in 0..self.records.len() {
            let rec = &self.records[id];
            if rec.state == REC_LIVE && rec.expired(now) {
                self.unlink_live(id as u32)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The live records (after a sweep) whose keys `select` picks.
    fn live_keys(&self, select: impl Fn(&ObjectKey) -> bool) -> Vec<(u32, ObjectKey)> {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == REC_LIVE && !r.expired(self.now_ms))
            .filter_map(|(id, r)| {
                let key = std::str::from_utf8(r.key()).ok()?;
                let key = ObjectKey::new(key).ok()?;
                select(&key).then_some((id as u32, key))
            })
            .collect()
    }

    /// Removes every key `select` picks, in one pass; returns how many.
    fn delete_where(&mut self, select: impl Fn(&ObjectKey) -> bool) -> Result<usize, Refusal> {
        self.sweep()?;
        let doomed = self.live_keys(select);
        for &(id, _) in &doomed {
            self.unlink_live(id)?;
        }
        Ok(doomed.len())
    }

    /// Removes every key under `prefix`; returns how many.
    pub(crate) fn delete_prefix(&mut self, prefix: &KeyPrefix) -> Result<usize, Refusal> {
        self.delete_where(|k| k.has_prefix(prefix))
    }

    /// Round retention: removes `fed_id`'s round keys before `round`; returns how many.
    pub(crate) fn delete_rounds_before(
        &mut self,
        fed_id: &str,
        round: u64,
    ) -> Result<usize, Refusal> {
        self.delete_where(|k| k.is_round_before(fed_id, round))
    }

    /// The keys under `prefix`, ascending (expired ones are removed first).
    pub(crate) fn keys(&mut self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>, Refusal> {
        self.sweep()?;
        let mut keys: Vec<ObjectKey> = self
            .live_keys(|k| k.has_prefix(prefix))
            .into_iter()
            .map(|k| k.1)
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// Entries, bytes and capacity (expired objects are removed first).
    pub(crate) fn stats(&mut self) -> Result<StoreStats, Refusal> {
        self.sweep()?;
        Ok(StoreStats {
            entries: self.counters.entries,
            bytes: self.counters.live_bytes,
            reserved: self.counters.reserved_charge,
            capacity_bytes: self.geometry.capacity_bytes,
        })
    }
}
