//! The `ObjectStore` trait (the operations every backend provides) and `ObjectStoreExt` (the
//! conveniences built on them).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::key::{KeyPrefix, ObjectKey};
use crate::limits::{Limits, StoreStats};
use crate::options::{ObjectMeta, PutMode, PutOptions, ReleaseOutcome};
use crate::reservation::Reservation;

/// A key-value store of immutable byte values, shared by the nodes of a federation.
///
/// Object safe: hold it as `Arc<dyn ObjectStore>` and swap backends by configuration.
/// `Arc<S>` and `Box<S>` are themselves stores for any `S: ObjectStore + ?Sized`.
///
/// Every method is required, so that a wrapper (such as the `Arc` and `Box` forwarding, or a
/// metrics layer) cannot forget one and silently fall back to a slower or wrong default: the
/// compiler checks it. Conveniences ([`put`](ObjectStoreExt::put), [`keys`](ObjectStoreExt::keys),
/// [`is_empty`](ObjectStoreExt::is_empty)...) live in [`ObjectStoreExt`], implemented for every
/// store.
///
/// The contract (checked by `gos-conformance`):
/// - puts are atomic and limits are checked before anything changes;
/// - a `Bytes` from `get` is unaffected by later deletes, overwrites, releases and expiry;
/// - an object's reader count and lease live with it: [`release`](ObjectStore::release) is one
///   atomic operation that deletes the object when the count reaches zero, and an object whose
///   lease has run out is gone for every operation (removed lazily, or by
///   [`sweep`](ObjectStore::sweep)), its space returned;
/// - a live reservation holds its bytes against the capacity until it is committed or
///   dropped ([`StoreStats::reserved`]), so concurrent reservations never add up past it;
/// - listings are sorted ascending and reflect every completed operation.
// `is_empty` is in `ObjectStoreExt`, so that wrappers cannot forget to forward it.
#[allow(clippy::len_without_is_empty)]
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `value` under `key` with `options` (mode, readers, lease).
    ///
    /// Errors: [`Error::TooLarge`](crate::Error::TooLarge),
    /// [`Error::StoreFull`](crate::Error::StoreFull),
    /// [`Error::TooManyEntries`](crate::Error::TooManyEntries) (the store is unchanged),
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) (with [`PutMode::Create`]).
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()>;

    /// The value under `key`, or `None` when there is none (or its lease has run out).
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>>;

    /// Size, readers left and lease deadline of the object under `key`, or `None`. Moves no
    /// value and pins nothing.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>>;

    /// Removes `key`; true if it existed. Readers holding its value keep it intact.
    async fn delete(&self, key: &ObjectKey) -> Result<bool>;

    /// One reader is done with `key`: decrements its reader count and deletes it when the
    /// count reaches zero, atomically (two releases never both see the same count).
    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome>;

    /// The keys that have `prefix` (segment-wise, see [`ObjectKey::has_prefix`]), ascending.
    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>>;

    /// Removes every key that has `prefix` (segment-wise); returns how many were removed.
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize>;

    /// Round retention: removes every round key `{fed_id}/{node}/round_{n}` with `n < round`
    /// (see [`ObjectKey::is_round_before`]); returns how many were removed. Other keys under
    /// the federation are left alone.
    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize>;

    /// Removes every object whose lease has run out; returns how many. Any operation also
    /// removes the expired objects it meets; long-running processes call this periodically
    /// so that space held by objects nobody touches comes back.
    async fn sweep(&self) -> Result<usize>;

    /// The number of keys held.
    async fn len(&self) -> Result<usize>;

    /// Entries, bytes used, bytes reserved and capacity.
    async fn stats(&self) -> Result<StoreStats>;

    /// The limits this store enforces.
    fn limits(&self) -> Limits;

    /// Reserves `len` bytes to fill and then [`commit`](Reservation::commit) under `key` with
    /// `options`: a producer serializes straight into it, a receiver streams into it, without
    /// knowing the backend.
    ///
    /// The limits are checked here, once, and the bytes are charged against the capacity
    /// until the reservation is committed or dropped ([`StoreStats::reserved`]). A commit can
    /// still fail with [`Error::AlreadyExists`](crate::Error::AlreadyExists) (mode
    /// [`PutMode::Create`]) or [`Error::TooManyEntries`](crate::Error::TooManyEntries) when the
    /// key space filled meanwhile. Dropping a reservation uncommitted frees it.
    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>>;
}

/// Conveniences on every [`ObjectStore`].
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// Stores `value` under `key`, replacing any previous value (no count, no lease).
    async fn put(&self, key: &ObjectKey, value: Bytes) -> Result<()> {
        self.put_opts(key, value, &PutOptions::new()).await
    }

    /// Stores `value` under `key` as `mode` says (no count, no lease).
    async fn put_mode(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<()> {
        self.put_opts(key, value, &PutOptions::new().mode(mode))
            .await
    }

    /// Every key, ascending.
    async fn keys(&self) -> Result<Vec<ObjectKey>> {
        self.keys_with_prefix(&KeyPrefix::root()).await
    }

    /// True when the store holds no key.
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Whether `key` is present, without moving or pinning its value.
    async fn contains(&self, key: &ObjectKey) -> Result<bool> {
        Ok(self.head(key).await?.is_some())
    }
}

impl<S: ObjectStore + ?Sized> ObjectStoreExt for S {}

/// Forwards every method of [`ObjectStore`] through a smart pointer. Because no method has a
/// default, forgetting one here fails to compile.
macro_rules! forward_store {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<S: ObjectStore + ?Sized> ObjectStore for $ptr<S> {
            async fn put_opts(
                &self,
                key: &ObjectKey,
                value: Bytes,
                options: &PutOptions,
            ) -> Result<()> {
                (**self).put_opts(key, value, options).await
            }
            async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
                (**self).get(key).await
            }
            async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
                (**self).head(key).await
            }
            async fn delete(&self, key: &ObjectKey) -> Result<bool> {
                (**self).delete(key).await
            }
            async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
                (**self).release(key).await
            }
            async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
                (**self).keys_with_prefix(prefix).await
            }
            async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
                (**self).delete_prefix(prefix).await
            }
            async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
                (**self).delete_rounds_before(fed_id, round).await
            }
            async fn sweep(&self) -> Result<usize> {
                (**self).sweep().await
            }
            async fn len(&self) -> Result<usize> {
                (**self).len().await
            }
            async fn stats(&self) -> Result<StoreStats> {
                (**self).stats().await
            }
            fn limits(&self) -> Limits {
                (**self).limits()
            }
            async fn reserve(
                &self,
                key: &ObjectKey,
                len: usize,
                options: &PutOptions,
            ) -> Result<Box<dyn Reservation + '_>> {
                (**self).reserve(key, len, options).await
            }
        }
    )*};
}

forward_store!(Arc, Box);
