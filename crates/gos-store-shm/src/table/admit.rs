//! Admission and commit: a reservation checks the limits and takes a record and an extent; a
//! commit checks the mode and limits again and publishes the record under its key.

use gos_store::{Error, ObjectKey, PutMode};

use super::{Admitted, Lifecycle, Refusal, Tables, already_exists, corrupt};
use crate::layout::{NIL, REC_FREE, REC_LIVE, REC_RESERVED, Record, extent_len, hash_key};

impl Tables<'_> {
    fn available(&self, ignoring_charge: u64, old_len: u64) -> u64 {
        self.geometry
            .capacity_bytes
            .saturating_sub(self.counters.live_bytes)
            .saturating_sub(
                self.counters
                    .reserved_charge
                    .saturating_sub(ignoring_charge),
            )
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
            && let Some(old) = self.find(key)?
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
        if id == NIL {
            return Err(Refusal::NoRecord);
        }
        let rec = self.record(id)?;
        if rec.state != REC_FREE {
            return Err(corrupt(format!(
                "free-record chain reaches record {id} in use"
            )));
        }
        let Some(offset) = self.free_list().alloc(extent) else {
            let largest = self.free_list().largest();
            return Err(Refusal::NoRoom {
                requested: len,
                largest,
            });
        };
        // The offset came from a shared table: the writer will copy through it.
        self.check_extent(offset, extent)?;
        crate::failpoint!("admit-extent-taken");
        self.counters.free_record = rec.next;
        self.records[id as usize] = Record {
            owner: slot,
            offset,
            extent,
            len,
            charge,
            ..Record::default()
        };
        self.records[id as usize].state = REC_RESERVED;
        crate::failpoint!("admit-record-reserved");
        self.counters.reserved_charge = self.counters.reserved_charge.saturating_add(charge);
        Ok(Admitted { id, offset })
    }

    fn reserved_by(&self, id: u32, slot: u32) -> Result<Record, Refusal> {
        match self.records.get(id as usize) {
            Some(rec) if rec.state == REC_RESERVED && rec.owner == slot => Ok(*rec),
            _ => Err(corrupt(format!(
                "record {id} is not a reservation of slot {slot}"
            ))),
        }
    }

    /// Publishes reservation `id` under `key` with its reader count and lease: checks the
    /// mode, the capacity and the entry count again, then links the new record and unlinks
    /// the old one.
    pub(crate) fn commit(
        &mut self,
        slot: u32,
        id: u32,
        key: &ObjectKey,
        mode: PutMode,
        life: Lifecycle,
    ) -> Result<(), Refusal> {
        let rec = self.reserved_by(id, slot)?;
        let key_bytes = key.as_str().as_bytes();
        let hash = hash_key(key_bytes);
        let old = self.find(key_bytes)?;
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
        self.counters.commit_seq = self.counters.commit_seq.wrapping_add(1);
        let seq = self.counters.commit_seq;
        let r = &mut self.records[id as usize];
        r.key[..key_bytes.len()].copy_from_slice(key_bytes);
        r.key_len = key_bytes.len() as u32;
        r.hash = hash;
        r.seq = seq;
        r.readers = life.readers;
        r.expires = life.expires;
        r.flags = 0;
        if let Some(digest) = life.digest {
            r.set_digest(digest);
        }
        r.owner = NIL;
        r.charge = 0;
        crate::failpoint!("commit-record-written");
        r.state = REC_LIVE;
        crate::failpoint!("commit-record-live");
        self.link(id);
        crate::failpoint!("commit-linked");
        self.counters.reserved_charge = self.counters.reserved_charge.saturating_sub(rec.charge);
        self.counters.live_bytes = self.counters.live_bytes.saturating_add(rec.len);
        self.counters.entries += 1;
        if let Some(old) = old {
            crate::failpoint!("commit-before-unlink-old");
            self.unlink_live(old)?;
        }
        Ok(())
    }

    /// Drops reservation `id` of `slot` uncommitted.
    pub(crate) fn abandon(&mut self, slot: u32, id: u32) -> Result<(), Refusal> {
        let rec = self.reserved_by(id, slot)?;
        self.counters.reserved_charge = self.counters.reserved_charge.saturating_sub(rec.charge);
        self.release_record(id)
    }
}
