//! `MemoryStore`: the in-process [`ObjectStore`] of GOS.
//!
//! Values are [`Bytes`]: a put stores the caller's buffer and a get hands back a new reference
//! to it, so neither copies the value and both cost the same for 1 KiB and 100 MiB. The map is
//! split into shards, each behind its own `RwLock`, and the occupancy counters are atomics:
//! concurrent tasks and threads touching different keys do not wait for each other.
//!
//! Limits are checked before anything changes; a refused put leaves the store as it was.
//! Expired entries never hold room: a put, commit or reservation that a limit would refuse
//! first removes them and tries again.
//!
//! Each entry keeps its reader count and lease beside its value, under its shard's lock: a
//! release is one locked decrement that removes the entry at zero, and an entry whose lease
//! has run out is removed by the first operation that meets it (or by
//! [`ObjectStore::sweep`]). Time comes from a [`Clock`] ([`MemoryStore::with_clock`] injects a
//! [`ManualClock`](gos_store::ManualClock) in tests).
//!
//! [`ObjectStore::reserve`] hands out buffers from a bounded pool of warm memory: when the last
//! `Bytes` of a value that was written through a reservation is dropped, its buffer goes back
//! to the pool, and the next reservation of a similar size reuses it instead of faulting in
//! fresh pages. The pool keeps at most [`MemoryStore::with_pool_bytes`] bytes (by default the
//! smaller of the capacity and [`DEFAULT_POOL_BYTES`]); [`MemoryStore::trim_pool`] frees them.
//!
//! ```
//! # tokio_test();
//! # fn tokio_test() { tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use bytes::Bytes;
//! use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt};
//! use gos_store_memory::MemoryStore;
//!
//! let store = MemoryStore::new(Limits::with_capacity(1 << 20));
//! let key = ObjectKey::round("fed", "node_1", 1)?;
//! store.put(&key, Bytes::from_static(b"weights")).await?;
//! assert_eq!(store.get(&key).await?.as_deref(), Some(&b"weights"[..]));
//! assert!(store.delete(&key).await?);
//! # Ok::<(), gos_store::Error>(()) }).unwrap() }
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::{
    BufferPool, Clock, Digest, Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore,
    PutMode, PutOptions, Readers, ReleaseOutcome, Reservation, Result, StoreStats, lease_deadline,
    system_clock,
};

/// The most bytes of freed reservation buffers a store keeps for reuse by default (1 GiB,
/// bounded by the capacity).
pub const DEFAULT_POOL_BYTES: u64 = 1 << 30;

/// Number of shards; a power of two.
const SHARDS: usize = 64;

/// One stored object: its value, the releases it still expects, its deadline and its digest.
#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    readers: Readers,
    expires_at: Option<SystemTime>,
    /// The value's digest: given by a reservation's committer, or computed the first time
    /// someone asks (a put moves no bytes, so hashing at put would be its only cost). Shared
    /// with the clones a lookup takes, so that it is computed once, outside the shard lock.
    digest: Arc<OnceLock<Digest>>,
}

impl Entry {
    fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|deadline| deadline <= now)
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta::new(self.value.len() as u64, self.readers, self.expires_at)
            .with_digest(Some(self.digest()))
    }

    fn digest(&self) -> Digest {
        *self.digest.get_or_init(|| Digest::of(&self.value))
    }
}

type Shard = RwLock<HashMap<ObjectKey, Entry>>;

/// An in-process, sharded, zero-copy [`ObjectStore`].
#[derive(Debug)]
pub struct MemoryStore {
    limits: Limits,
    shards: Box<[Shard]>,
    /// Bytes of all values plus live reservations: what is checked against the capacity.
    used: AtomicU64,
    /// Bytes of live reservations (part of `used`), for [`StoreStats::reserved`].
    reserved: AtomicU64,
    /// Number of keys; only ever raised by a successful check against `max_entries`.
    entries: AtomicU64,
    /// Warm buffers for reservations.
    pool: Arc<BufferPool>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// An empty store enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        MemoryStore {
            limits,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            used: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            pool: Arc::new(BufferPool::new(
                limits.capacity_bytes.min(DEFAULT_POOL_BYTES),
            )),
            clock: system_clock(),
        }
    }

    /// Sets how many bytes of freed reservation buffers are kept for reuse (0: none).
    #[must_use]
    pub fn with_pool_bytes(mut self, bytes: u64) -> Self {
        self.pool = Arc::new(BufferPool::new(bytes));
        self
    }

    /// Reads lease deadlines from `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Bytes of freed buffers currently kept for reuse (not counted in [`StoreStats`]).
    pub fn pooled_bytes(&self) -> u64 {
        self.pool.bytes()
    }

    /// Frees the buffers kept for reuse.
    pub fn trim_pool(&self) {
        self.pool.clear();
    }

    /// An empty store without limits.
    pub fn unlimited() -> Self {
        MemoryStore::new(Limits::UNLIMITED)
    }

    fn shard_of(&self, key: &ObjectKey) -> &Shard {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        &self.shards[hasher.finish() as usize & (SHARDS - 1)]
    }

    fn read(shard: &Shard) -> RwLockReadGuard<'_, HashMap<ObjectKey, Entry>> {
        // A panic while holding the lock cannot leave the map half-changed: every mutation
        // is a single `HashMap` call made after all checks.
        shard.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(shard: &Shard) -> RwLockWriteGuard<'_, HashMap<ObjectKey, Entry>> {
        shard.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises `counter` by `delta` if it stays within `max`; returns the value seen on failure.
    fn try_raise(counter: &AtomicU64, delta: u64, max: u64) -> std::result::Result<(), u64> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(delta).filter(|&new| new <= max)
            })
            .map(drop)
    }

    fn uncount(&self, entry: &Entry) {
        self.used
            .fetch_sub(entry.value.len() as u64, Ordering::AcqRel);
        self.entries.fetch_sub(1, Ordering::AcqRel);
    }

    /// Removes `key`'s entry from a locked shard if its lease has run out.
    fn expire_locked(&self, map: &mut HashMap<ObjectKey, Entry>, key: &ObjectKey, now: SystemTime) {
        if map.get(key).is_some_and(|e| e.expired(now))
            && let Some(entry) = map.remove(key)
        {
            self.uncount(&entry);
        }
    }

    /// Looks `key` up under a read lock; an expired entry is removed under a write lock.
    fn lookup<T>(&self, key: &ObjectKey, f: impl Fn(&Entry) -> T) -> Option<T> {
        let now = self.clock.now();
        let shard = self.shard_of(key);
        {
            let map = Self::read(shard);
            match map.get(key) {
                None => return None,
                Some(entry) if !entry.expired(now) => return Some(f(entry)),
                Some(_) => {}
            }
        }
        self.expire_locked(&mut Self::write(shard), key, now);
        None
    }

    /// Inserts `value` under `key`; when a limit refuses it, removes the expired entries and
    /// tries once more, so that room held by objects nobody touched since they expired is
    /// never what refuses a put.
    fn insert(
        &self,
        key: &ObjectKey,
        value: Bytes,
        options: &PutOptions,
        precharged: bool,
        digest: Option<Digest>,
    ) -> Result<()> {
        match self.try_insert(key, value.clone(), options, precharged, digest) {
            Err(Error::StoreFull { .. } | Error::TooManyEntries { .. })
                if self.sweep_expired() > 0 =>
            {
                self.try_insert(key, value, options, precharged, digest)
            }
            other => other,
        }
    }

    /// Removes every expired entry; returns how many.
    fn sweep_expired(&self) -> usize {
        let now = self.clock.now();
        self.remove_where(|_, entry| entry.expired(now))
    }

    /// Inserts `value` under `key`. `precharged` is true when a reservation already holds
    /// `value.len()` bytes in `used` (and `reserved`), false for a plain put.
    fn try_insert(
        &self,
        key: &ObjectKey,
        value: Bytes,
        options: &PutOptions,
        precharged: bool,
        digest: Option<Digest>,
    ) -> Result<()> {
        let size = value.len() as u64;
        let now = self.clock.now();
        let mut shard = Self::write(self.shard_of(key));
        self.expire_locked(&mut shard, key, now);
        let old = shard.get(key).map(|e| e.value.len() as u64);
        if old.is_some() && options.mode == PutMode::Create {
            return Err(Error::AlreadyExists { key: key.clone() });
        }
        let old_size = old.unwrap_or(0);
        // A plain put raises `used` by its growth first; an overwrite that shrinks the value
        // never fails here. A commit's bytes are already charged.
        let growth = if precharged {
            0
        } else {
            size.saturating_sub(old_size)
        };
        Self::try_raise(&self.used, growth, self.limits.capacity_bytes).map_err(|used| {
            Error::StoreFull {
                requested: size,
                available: self
                    .limits
                    .capacity_bytes
                    .saturating_sub(used)
                    .saturating_add(old_size),
            }
        })?;
        if old.is_none() && Self::try_raise(&self.entries, 1, self.limits.max_entries).is_err() {
            self.used.fetch_sub(growth, Ordering::AcqRel);
            return Err(Error::TooManyEntries {
                max: self.limits.max_entries,
            });
        }
        // `used` now counts the new value plus the old one in part: take the old one off.
        let refund = if precharged {
            self.reserved.fetch_sub(size, Ordering::AcqRel);
            old_size
        } else {
            old_size.saturating_sub(size)
        };
        self.used.fetch_sub(refund, Ordering::AcqRel);
        shard.insert(
            key.clone(),
            Entry {
                value,
                readers: options.readers,
                expires_at: lease_deadline(now, options.lease),
                digest: Arc::new(digest.map(OnceLock::from).unwrap_or_default()),
            },
        );
        Ok(())
    }
}

impl Default for MemoryStore {
    /// A store with [`Limits::default`].
    fn default() -> Self {
        MemoryStore::new(Limits::default())
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        self.limits.check_value_size(value.len() as u64)?;
        self.insert(key, value, options, false, None)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        Ok(self.lookup(key, |e| e.value.clone()))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        // The digest may still have to be computed: do it on a clone, outside the lock.
        Ok(self.lookup(key, Entry::clone).map(|e| e.meta()))
    }

    async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
        Ok(self.lookup(key, Entry::clone).map(|e| {
            let digest = e.digest();
            (e.value, digest)
        }))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        let now = self.clock.now();
        let mut shard = Self::write(self.shard_of(key));
        self.expire_locked(&mut shard, key, now);
        let removed = shard.remove(key);
        if let Some(entry) = &removed {
            self.uncount(entry);
        }
        Ok(removed.is_some())
    }

    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        let now = self.clock.now();
        let mut shard = Self::write(self.shard_of(key));
        self.expire_locked(&mut shard, key, now);
        let Some(entry) = shard.get_mut(key) else {
            return Ok(ReleaseOutcome::NotFound);
        };
        let (outcome, left) = ReleaseOutcome::after(entry.readers);
        entry.readers = left;
        if outcome == ReleaseOutcome::Deleted
            && let Some(entry) = shard.remove(key)
        {
            self.uncount(&entry);
        }
        Ok(outcome)
    }

    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        let now = self.clock.now();
        let mut keys: Vec<ObjectKey> = self
            .shards
            .iter()
            .flat_map(|shard| {
                Self::read(shard)
                    .iter()
                    .filter(|(k, e)| k.has_prefix(prefix) && !e.expired(now))
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        let now = self.clock.now();
        Ok(self.remove_where(|key, entry| key.has_prefix(prefix) && !entry.expired(now)))
    }

    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        KeyPrefix::federation(fed_id)?;
        let now = self.clock.now();
        Ok(self
            .remove_where(|key, entry| key.is_round_before(fed_id, round) && !entry.expired(now)))
    }

    async fn sweep(&self) -> Result<usize> {
        Ok(self.sweep_expired())
    }

    async fn len(&self) -> Result<usize> {
        self.sweep().await?;
        Ok(self.entries.load(Ordering::Acquire) as usize)
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.sweep().await?;
        let reserved = self.reserved.load(Ordering::Acquire);
        Ok(StoreStats {
            entries: self.entries.load(Ordering::Acquire),
            bytes: self.used.load(Ordering::Acquire).saturating_sub(reserved),
            reserved,
            capacity_bytes: self.limits.capacity_bytes,
        })
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    /// A buffer from the pool of warm memory (or a new one), its bytes charged against the
    /// capacity until it is committed or dropped; see the crate docs.
    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        let size = len as u64;
        self.limits.check_value_size(size)?;
        // Expired entries must not hold room a reservation could use.
        self.sweep_expired();
        Self::try_raise(&self.used, size, self.limits.capacity_bytes).map_err(|used| {
            Error::StoreFull {
                requested: size,
                available: self.limits.capacity_bytes.saturating_sub(used),
            }
        })?;
        self.reserved.fetch_add(size, Ordering::AcqRel);
        Ok(Box::new(MemoryReservation {
            store: self,
            key: key.clone(),
            options: *options,
            buf: self.pool.take(len),
            len,
            charged: true,
        }))
    }
}

impl MemoryStore {
    /// Removes every live entry `doomed` selects; returns how many.
    fn remove_where(&self, doomed: impl Fn(&ObjectKey, &Entry) -> bool) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        for shard in self.shards.iter() {
            Self::write(shard).retain(|key, entry| {
                let expired = entry.expired(now);
                let keep = !expired && !doomed(key, entry);
                if !keep {
                    self.uncount(entry);
                    removed += usize::from(!expired || doomed(key, entry));
                }
                keep
            });
        }
        removed
    }
}

/// A reservation of a [`MemoryStore`]: a pooled buffer, committed without a copy.
struct MemoryReservation<'a> {
    store: &'a MemoryStore,
    key: ObjectKey,
    options: PutOptions,
    buf: Vec<u8>,
    len: usize,
    /// True while `len` bytes are charged to the store's `used` and `reserved`.
    charged: bool,
}

impl std::fmt::Debug for MemoryReservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReservation")
            .field("key", &self.key)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Reservation for MemoryReservation<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn key(&self) -> &ObjectKey {
        &self.key
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.publish(None)
    }

    async fn commit_with_digest(mut self: Box<Self>, digest: Digest) -> Result<()> {
        self.publish(Some(digest))
    }
}

impl MemoryReservation<'_> {
    fn publish(&mut self, digest: Option<Digest>) -> Result<()> {
        let value = self
            .store
            .pool
            .freeze(std::mem::take(&mut self.buf), self.len);
        // A refused commit drops `value`, which returns the buffer to the pool, and then
        // `self`, which returns the charge.
        self.store
            .insert(&self.key, value, &self.options, true, digest)?;
        self.charged = false;
        Ok(())
    }
}

impl Drop for MemoryReservation<'_> {
    fn drop(&mut self) {
        if self.charged {
            let size = self.len as u64;
            self.store.used.fetch_sub(size, Ordering::AcqRel);
            self.store.reserved.fetch_sub(size, Ordering::AcqRel);
        }
        if !self.buf.is_empty() {
            self.store.pool.give(std::mem::take(&mut self.buf));
        }
    }
}
