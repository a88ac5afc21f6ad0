//! Unit tests of the tables over `Vec`s: limits, pins, reservations, lifecycle, recovery and
//! the checker.

use gos_store::{Error, KeyPrefix, Limits, ObjectKey, PutMode, Readers, ReleaseOutcome};

use super::*;
use crate::layout::{
    Counters, Extent, Geometry, NIL, REC_FREE, REC_LIVE, REC_UNLINKED, Record, Slot, hash_key,
};

/// Tables in process memory, for tests without a mapping.
pub(crate) struct Owned {
    geometry: Geometry,
    pub(crate) now_ms: u64,
    counters: Counters,
    slots: Vec<Slot>,
    records: Vec<Record>,
    buckets: Vec<u32>,
    pins: Vec<u32>,
    free: Vec<Extent>,
}

impl Owned {
    pub(crate) fn new(limits: Limits, arena: u64, slots: u32, objects: u32) -> Self {
        let limits = limits.max_entries(limits.max_entries.min(u64::from(objects) - 1));
        let geometry = Geometry::new(limits, arena, slots, objects).expect("geometry");
        let mut owned = Owned {
            geometry,
            now_ms: 1_000_000,
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
            now_ms: self.now_ms,
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

fn put(t: &mut Tables<'_>, slot: u32, k: &str, len: u64, mode: PutMode) -> Result<u32, Refusal> {
    let k = key(k);
    let a = t.admit(slot, len, Some((k.as_str().as_bytes(), mode)))?;
    t.commit(slot, a.id, &k, mode, Lifecycle::default())?;
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
    assert_eq!(t.stats().expect("stats").bytes, 1000);
    assert_eq!(
        t.keys(&KeyPrefix::root()).expect("keys"),
        vec![key("a"), key("b")]
    );
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
    let p1 = t.pin(1, b"k").expect("pin").expect("pin");
    let p2 = t.pin(2, b"k").expect("pin").expect("pin");
    assert_eq!(p1, p2);
    put(&mut t, 0, "k", 500, PutMode::Overwrite).expect("overwrite");
    assert_eq!(t.records[first as usize].state, REC_UNLINKED);
    assert_eq!(t.pin(1, b"k").expect("pin").map(|p| p.len), Some(500));
    assert!(t.delete(b"k").expect("delete"));
    assert!(t.pin(1, b"k").expect("pin").is_none());
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
    t.commit(1, c.id, &key("x"), PutMode::Create, Lifecycle::default())
        .expect("commit");
    assert_eq!(t.stats().expect("stats").bytes, 1000);
}

#[test]
fn physical_exhaustion_is_a_refusal_not_a_panic() {
    let mut o = Owned::new(Limits::UNLIMITED, 4096, 1, 4);
    let mut t = o.tables();
    for i in 0..3 {
        put(&mut t, 0, &format!("k{i}"), 10, PutMode::Overwrite).expect("put");
    }
    assert!(matches!(
        limit(put(&mut t, 0, "k9", 10, PutMode::Overwrite)),
        Error::TooManyEntries { max: 3 }
    ));
    // The record an overwrite needs is held by a reservation.
    let r = t.admit(0, 10, None).expect("reserve");
    assert!(matches!(
        put(&mut t, 0, "k0", 10, PutMode::Overwrite),
        Err(Refusal::NoRecord)
    ));
    t.abandon(0, r.id).expect("abandon");
    put(&mut t, 0, "k0", 20, PutMode::Overwrite).expect("overwrite of a full store");
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
    assert_eq!(t.pin(0, b"k").expect("pin").map(|p| p.len), Some(200));
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
                let pinned = t.pin(slot, k.as_bytes()).expect("pin");
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
                    match t.commit(
                        slot,
                        a.id,
                        &key(&k),
                        PutMode::Overwrite,
                        Lifecycle::default(),
                    ) {
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
        t.keys(&KeyPrefix::root()).expect("keys"),
        model.keys().map(|k| key(k)).collect::<Vec<_>>()
    );
}

/// Issue 10, defect 1 (the pure half): an extent taken from a damaged free list is checked
/// against the arena before anyone writes through it.
#[test]
fn a_free_list_extent_outside_the_arena_is_refused_not_handed_out() {
    let mut o = Owned::new(Limits::with_capacity(1 << 20), 1 << 16, 1, 8);
    let mut t = o.tables();
    t.free[0] = Extent {
        offset: 1 << 40,
        len: 1 << 20,
    };
    assert!(t.check().is_err());
    assert!(matches!(
        t.admit(0, 100, Some((b"k", PutMode::Overwrite))),
        Err(Refusal::Corrupt(_))
    ));
    t.free[0] = Extent {
        offset: u64::MAX - 63,
        len: 1 << 20,
    };
    assert!(matches!(t.admit(0, 100, None), Err(Refusal::Corrupt(_))));
    // Recovery rebuilds the free list from the records.
    t.recover().expect("recover");
    t.check().expect("invariants after recovery");
    put(&mut t, 0, "k", 100, PutMode::Overwrite).expect("put after recovery");
}

/// Damaged ids in the shared tables (a bucket, a chain link, the free-record head) end a
/// lookup or are refused: never an index out of range.
#[test]
fn damaged_record_ids_are_refused_not_followed() {
    let mut o = Owned::new(Limits::with_capacity(1 << 20), 1 << 16, 1, 8);
    let mut t = o.tables();
    put(&mut t, 0, "k", 10, PutMode::Overwrite).expect("put");
    let bucket = (hash_key(b"k") & (t.geometry.n_buckets - 1)) as usize;
    let id = t.buckets[bucket];
    t.records[id as usize].next = 1_000_000;
    assert_eq!(t.pin(0, b"other").expect("pin"), None);
    t.buckets[bucket] = 999_999;
    assert_eq!(t.pin(0, b"k").expect("pin"), None);
    t.counters.free_record = 77_777;
    assert!(matches!(t.admit(0, 10, None), Err(Refusal::Corrupt(_))));
    assert!(t.unpin(0, 123_456).is_err());
    assert!(t.reclaim_slot(99).is_err());
    t.recover().expect("recover");
    t.check().expect("invariants");
    assert_eq!(t.pin(0, b"k").expect("pin").map(|p| p.len), Some(10));
}

#[test]
fn counts_and_leases_live_in_the_record() {
    let mut o = Owned::new(Limits::with_capacity(1 << 20), 1 << 16, 2, 8);
    let mut t = o.tables();
    let now = t.now_ms;
    let digest = gos_store::Digest::of(b"0123456789");
    let life = Lifecycle {
        readers: 2,
        expires: now + 100,
        digest: Some(digest),
    };
    let a = t
        .admit(0, 10, Some((b"k", PutMode::Overwrite)))
        .expect("admit");
    t.commit(0, a.id, &key("k"), PutMode::Overwrite, life)
        .expect("commit");
    let meta = t.head(b"k").expect("head").expect("some");
    assert_eq!(meta.readers, Readers::exactly(2).expect("2"));
    assert_eq!(
        meta.expires_at,
        Some(gos_store::from_unix_millis(now + 100))
    );
    assert_eq!(
        meta.digest,
        Some(digest),
        "the digest lives in the record too"
    );
    let report = t.check().expect("invariants");
    assert_eq!((report.counted, report.leased, report.pins), (1, 1, 0));
    // Recovery keeps them.
    t.recover().expect("recover");
    assert_eq!(t.head(b"k").expect("head").expect("some"), meta);
    let p = t.pin(1, b"k").expect("pin").expect("some");
    assert!(matches!(t.release(b"k"), Ok(ReleaseOutcome::Remaining(_))));
    assert_eq!(t.release(b"k").expect("release"), ReleaseOutcome::Deleted);
    assert_eq!(t.release(b"k").expect("release"), ReleaseOutcome::NotFound);
    assert_eq!(t.check().expect("invariants").unlinked, 1);
    t.unpin(1, p.id).expect("unpin");
    // A lease: gone at its deadline, for every operation.
    let a = t.admit(0, 10, None).expect("admit");
    t.commit(
        0,
        a.id,
        &key("l"),
        PutMode::Overwrite,
        Lifecycle {
            readers: 0,
            expires: now + 5,
            digest: None,
        },
    )
    .expect("commit");
    t.now_ms = now + 4;
    assert!(t.head(b"l").expect("head").is_some());
    t.now_ms = now + 5;
    assert!(t.head(b"l").expect("head").is_none());
    let report = t.check().expect("invariants");
    assert_eq!((report.entries, report.free_bytes), (0, 1 << 16));
    // A reservation carries no count or lease until its commit; the checker says so and
    // recovery clears what a commit cut short left.
    let r = t.admit(0, 10, None).expect("admit");
    t.records[r.id as usize].readers = 3;
    assert!(t.check().is_err());
    t.recover().expect("recover");
    assert_eq!(t.records[r.id as usize].readers, 0);
    t.check().expect("invariants");
}
