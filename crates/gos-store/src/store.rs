//! The `ObjectStore` trait: the operations every backend provides.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::key::{KeyPrefix, ObjectKey};
use crate::limits::{Limits, StoreStats};
use crate::reservation::{BufferedReservation, Reservation};

/// What a put does when its key already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PutMode {
    /// Replace the existing value atomically (the default).
    #[default]
    Overwrite,
    /// Fail with [`Error::AlreadyExists`] and leave the existing value in place.
    Create,
}

/// A key-value store of immutable byte values, shared by the nodes of a federation.
///
/// Object safe: hold it as `Arc<dyn ObjectStore>` and swap backends by configuration.
/// `Arc<S>` is itself an `ObjectStore` for any `S: ObjectStore + ?Sized`.
///
/// Required methods are the primitive operations; [`put`](ObjectStore::put),
/// [`keys`](ObjectStore::keys), [`is_empty`](ObjectStore::is_empty) and
/// [`reserve`](ObjectStore::reserve) have default implementations. A backend that can write
/// straight into its own memory (shared memory) overrides `reserve`.
///
/// The contract (checked by `gos-conformance`):
/// - puts are atomic and limits are checked before anything changes;
/// - a `Bytes` from `get` is unaffected by later deletes and overwrites;
/// - listings are sorted ascending and reflect every completed operation.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `value` under `key`, as `mode` says.
    ///
    /// Errors: [`Error::TooLarge`], [`Error::StoreFull`], [`Error::TooManyEntries`] (the store is
    /// unchanged), [`Error::AlreadyExists`] (with [`PutMode::Create`]).
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<()>;

    /// Stores `value` under `key`, replacing any previous value.
    async fn put(&self, key: &ObjectKey, value: Bytes) -> Result<()> {
        self.put_opts(key, value, PutMode::Overwrite).await
    }

    /// The value under `key`, or `None` when there is none.
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>>;

    /// Removes `key`; true if it existed. Readers holding its value keep it intact.
    async fn delete(&self, key: &ObjectKey) -> Result<bool>;

    /// The keys that have `prefix` (segment-wise, see [`ObjectKey::has_prefix`]), ascending.
    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>>;

    /// Every key, ascending.
    async fn keys(&self) -> Result<Vec<ObjectKey>> {
        self.keys_with_prefix(&KeyPrefix::root()).await
    }

    /// Removes every key that has `prefix`; returns how many were removed.
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize>;

    /// The number of keys held.
    async fn len(&self) -> Result<usize>;

    /// True when the store holds no key.
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Entries, bytes used and capacity.
    async fn stats(&self) -> Result<StoreStats>;

    /// The limits this store enforces.
    fn limits(&self) -> Limits;

    /// Reserves a buffer of `len` bytes to fill and then [`commit`](Reservation::commit) under a
    /// key: a producer serializes straight into it, and a receiver streams into it without
    /// knowing the backend. Dropping the reservation uncommitted frees it.
    ///
    /// The default buffers in process memory and puts on commit; it refuses a `len` over
    /// the maximum value size or over the space free now (the put at commit checks again).
    async fn reserve(&self, len: usize) -> Result<Box<dyn Reservation + '_>> {
        let limits = self.limits();
        limits.check_value_size(len as u64)?;
        let available = self.stats().await?.available();
        if len as u64 > available {
            return Err(Error::StoreFull {
                requested: len as u64,
                available,
            });
        }
        Ok(Box::new(BufferedReservation::new(self, len)))
    }
}

#[async_trait]
impl<S: ObjectStore + ?Sized> ObjectStore for Arc<S> {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<()> {
        (**self).put_opts(key, value, mode).await
    }
    async fn put(&self, key: &ObjectKey, value: Bytes) -> Result<()> {
        (**self).put(key, value).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        (**self).get(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        (**self).delete(key).await
    }
    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        (**self).keys_with_prefix(prefix).await
    }
    async fn keys(&self) -> Result<Vec<ObjectKey>> {
        (**self).keys().await
    }
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        (**self).delete_prefix(prefix).await
    }
    async fn len(&self) -> Result<usize> {
        (**self).len().await
    }
    async fn is_empty(&self) -> Result<bool> {
        (**self).is_empty().await
    }
    async fn stats(&self) -> Result<StoreStats> {
        (**self).stats().await
    }
    fn limits(&self) -> Limits {
        (**self).limits()
    }
    async fn reserve(&self, len: usize) -> Result<Box<dyn Reservation + '_>> {
        (**self).reserve(len).await
    }
}
