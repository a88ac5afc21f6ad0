//! `MemoryStore`: the in-process [`ObjectStore`] of GOS.
//!
//! Values are [`Bytes`]: a put stores the caller's buffer and a get hands back a new reference
//! to it, so neither copies the value and both cost the same for 1 KiB and 100 MiB. The map is
//! split into shards, each behind its own `RwLock`, and the occupancy counters are atomics:
//! concurrent tasks and threads touching different keys do not wait for each other.
//!
//! Limits are checked before anything changes; a refused put leaves the store as it was.
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
//! use gos_store::{Limits, ObjectKey, ObjectStore};
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
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::{
    BufferPool, Error, KeyPrefix, Limits, ObjectKey, ObjectStore, PutMode, Reservation, Result,
    StoreStats,
};

/// The most bytes of freed reservation buffers a store keeps for reuse by default (1 GiB,
/// bounded by the capacity).
pub const DEFAULT_POOL_BYTES: u64 = 1 << 30;

/// Number of shards; a power of two.
const SHARDS: usize = 64;

/// An in-process, sharded, zero-copy [`ObjectStore`].
#[derive(Debug)]
pub struct MemoryStore {
    limits: Limits,
    shards: Box<[RwLock<HashMap<ObjectKey, Bytes>>]>,
    /// Bytes of all values; only ever raised by a successful reservation against the capacity.
    bytes: AtomicU64,
    /// Number of keys; only ever raised by a successful reservation against `max_entries`.
    entries: AtomicU64,
    /// Warm buffers for reservations.
    pool: Arc<BufferPool>,
}

impl MemoryStore {
    /// An empty store enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        MemoryStore {
            limits,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            pool: Arc::new(BufferPool::new(
                limits.capacity_bytes.min(DEFAULT_POOL_BYTES),
            )),
        }
    }

    /// Sets how many bytes of freed reservation buffers are kept for reuse (0: none).
    #[must_use]
    pub fn with_pool_bytes(mut self, bytes: u64) -> Self {
        self.pool = Arc::new(BufferPool::new(bytes));
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

    fn shard_of(&self, key: &ObjectKey) -> &RwLock<HashMap<ObjectKey, Bytes>> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        &self.shards[hasher.finish() as usize & (SHARDS - 1)]
    }

    fn read(
        shard: &RwLock<HashMap<ObjectKey, Bytes>>,
    ) -> RwLockReadGuard<'_, HashMap<ObjectKey, Bytes>> {
        // A panic while holding the lock cannot leave the map half-changed: every mutation
        // is a single `HashMap` call made after all checks.
        shard.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(
        shard: &RwLock<HashMap<ObjectKey, Bytes>>,
    ) -> RwLockWriteGuard<'_, HashMap<ObjectKey, Bytes>> {
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

    fn remove_counted(&self, value: &Bytes) {
        self.bytes.fetch_sub(value.len() as u64, Ordering::AcqRel);
        self.entries.fetch_sub(1, Ordering::AcqRel);
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
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<()> {
        let size = value.len() as u64;
        self.limits.check_value_size(size)?;
        let mut shard = Self::write(self.shard_of(key));
        let old = shard.get(key).map(|v| v.len() as u64);
        if old.is_some() && mode == PutMode::Create {
            return Err(Error::AlreadyExists { key: key.clone() });
        }
        // Reserve the growth first; an overwrite that shrinks the value never fails here.
        let growth = size.saturating_sub(old.unwrap_or(0));
        Self::try_raise(&self.bytes, growth, self.limits.capacity_bytes).map_err(|used| {
            Error::StoreFull {
                requested: size,
                available: self
                    .limits
                    .capacity_bytes
                    .saturating_sub(used)
                    .saturating_add(old.unwrap_or(0)),
            }
        })?;
        if old.is_none() && Self::try_raise(&self.entries, 1, self.limits.max_entries).is_err() {
            self.bytes.fetch_sub(growth, Ordering::AcqRel);
            return Err(Error::TooManyEntries {
                max: self.limits.max_entries,
            });
        }
        if let Some(old) = old {
            self.bytes
                .fetch_sub(old.saturating_sub(size), Ordering::AcqRel);
        }
        shard.insert(key.clone(), value);
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        Ok(Self::read(self.shard_of(key)).get(key).cloned())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        let removed = Self::write(self.shard_of(key)).remove(key);
        if let Some(value) = &removed {
            self.remove_counted(value);
        }
        Ok(removed.is_some())
    }

    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        let mut keys: Vec<ObjectKey> = self
            .shards
            .iter()
            .flat_map(|shard| {
                Self::read(shard)
                    .keys()
                    .filter(|k| k.has_prefix(prefix))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        let mut removed = 0;
        for shard in self.shards.iter() {
            Self::write(shard).retain(|key, value| {
                let keep = !key.has_prefix(prefix);
                if !keep {
                    self.remove_counted(value);
                    removed += 1;
                }
                keep
            });
        }
        Ok(removed)
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.entries.load(Ordering::Acquire) as usize)
    }

    async fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats {
            entries: self.entries.load(Ordering::Acquire),
            bytes: self.bytes.load(Ordering::Acquire),
            capacity_bytes: self.limits.capacity_bytes,
        })
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    /// A buffer from the pool of warm memory (or a new one); see the crate docs.
    async fn reserve(&self, len: usize) -> Result<Box<dyn Reservation + '_>> {
        self.limits.check_value_size(len as u64)?;
        let available = self
            .limits
            .capacity_bytes
            .saturating_sub(self.bytes.load(Ordering::Acquire));
        if len as u64 > available {
            return Err(Error::StoreFull {
                requested: len as u64,
                available,
            });
        }
        Ok(Box::new(MemoryReservation {
            store: self,
            buf: self.pool.take(len),
            len,
        }))
    }
}

/// A reservation of a [`MemoryStore`]: a pooled buffer, committed without a copy.
struct MemoryReservation<'a> {
    store: &'a MemoryStore,
    buf: Vec<u8>,
    len: usize,
}

impl std::fmt::Debug for MemoryReservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReservation")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Reservation for MemoryReservation<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    async fn commit(mut self: Box<Self>, key: &ObjectKey, mode: PutMode) -> Result<()> {
        let value = self
            .store
            .pool
            .freeze(std::mem::take(&mut self.buf), self.len);
        // A refused commit drops `value`, which returns the buffer to the pool.
        self.store.put_opts(key, value, mode).await
    }
}

impl Drop for MemoryReservation<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.store.pool.give(std::mem::take(&mut self.buf));
        }
    }
}
