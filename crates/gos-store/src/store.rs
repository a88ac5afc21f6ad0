//! The `ObjectStore` trait (the operations every backend provides) and `ObjectStoreExt` (the
//! conveniences built on them).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::digest::Digest;
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
/// The contract (checked by `gos-conformance`, identically for every backend):
/// - puts are atomic and limits are checked before anything changes; an overwrite replaces
///   the value, the reader count and the lease together;
/// - a `Bytes` from `get` is unaffected by later deletes, overwrites (of any size: a backend
///   never rewrites an old value's memory in place while it may be held), releases and expiry;
/// - an object's reader count and lease live with it: [`release`](ObjectStore::release) is one
///   atomic operation that deletes the object when the count reaches zero, and an object whose
///   lease has run out is gone for every operation (removed lazily, or by
///   [`sweep`](ObjectStore::sweep)), its space returned;
/// - an object expires when the store's clock reaches its deadline (`now >= deadline`);
///   the deadline is the clock's time at the put (at the commit, for a reservation) plus the
///   lease. A backend may keep deadlines to the millisecond;
/// - room and entries held by expired objects never refuse a put, a commit or a reservation
///   (a backend removes the expired objects before refusing one);
/// - a live reservation holds its full length against the capacity until it is committed or
///   dropped, so concurrent reservations never add up past it; it shows in
///   [`StoreStats::reserved`], never in [`StoreStats::bytes`], and holds no entry;
/// - listings are sorted ascending, hold live keys only and reflect every completed operation;
///   prefixes match whole segments ([`ObjectKey::has_prefix`]).
///
/// When a put breaks several limits at once, a backend may report any one of them, with the
/// fields [`Error::TooLarge`](crate::Error::TooLarge) and
/// [`Error::StoreFull`](crate::Error::StoreFull) document.
// `is_empty` is in `ObjectStoreExt`, so that wrappers cannot forget to forward it.
#[allow(clippy::len_without_is_empty)]
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `value` under `key` with `options` (mode, readers, lease).
    ///
    /// Errors (the store is unchanged): [`Error::TooLarge`](crate::Error::TooLarge) `{ size:
    /// value.len(), max: max_value_size }`; [`Error::StoreFull`](crate::Error::StoreFull)
    /// when the value does not fit, with `requested` = the value's full size and `available` =
    /// `capacity - bytes - reserved + the old value's size` (an overwrite frees the old
    /// value); [`Error::TooManyEntries`](crate::Error::TooManyEntries) `{ max: max_entries }`
    /// for a new key only; [`Error::AlreadyExists`](crate::Error::AlreadyExists) with
    /// [`PutMode::Create`] over a live key.
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()>;

    /// The value under `key`, or `None` when there is none (or its lease has run out).
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>>;

    /// Size, readers left, lease deadline and digest of the object under `key`, or `None`.
    /// Moves no value and pins nothing.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>>;

    /// The value under `key` with its [`Digest`], read together (an overwrite between the two
    /// cannot pair one value with another's digest), or `None`. This is what a gateway sends,
    /// so that the digest travels with the object without being recomputed.
    ///
    /// The default computes the digest of what [`get`](ObjectStore::get) returns (one pass
    /// over the value); a backend that keeps digests beside its values returns the kept one.
    async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
        Ok(self.get(key).await?.map(|value| {
            let digest = Digest::of(&value);
            (value, digest)
        }))
    }

    /// Removes `key`; true if it existed. Readers holding its value keep it intact.
    async fn delete(&self, key: &ObjectKey) -> Result<bool>;

    /// One reader is done with `key`: decrements its reader count and deletes it when the
    /// count reaches zero, atomically (two releases never both see the same count). An object
    /// put without a count ([`Readers::Unbounded`](crate::Readers::Unbounded)) is left as it is
    /// ([`ReleaseOutcome::Unbounded`]); a missing or expired one gives
    /// [`ReleaseOutcome::NotFound`].
    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome>;

    /// The keys that have `prefix` (segment-wise, see [`ObjectKey::has_prefix`]), ascending.
    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>>;

    /// Removes every key that has `prefix` (segment-wise, as
    /// [`keys_with_prefix`](ObjectStore::keys_with_prefix) lists them: `a/b` removes `a/b` and
    /// `a/b/c`, not `a/bc`); returns how many live keys were removed.
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize>;

    /// Round retention: removes every round key `{fed_id}/{node}/round_{n}` with `n < round`
    /// (see [`ObjectKey::is_round_before`]); returns how many were removed. Other keys under
    /// the federation are left alone. A `fed_id` that is not one segment is an
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) and removes nothing.
    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize>;

    /// Removes every object whose lease has run out; returns how many it removed (expired
    /// objects another operation already removed are not counted again). Any operation also
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
    /// The limits are checked here, once, and the full `len` is charged against the capacity
    /// until the reservation is committed or dropped ([`StoreStats::reserved`]), even when it
    /// will overwrite a key: the old value is freed at the commit. A refusal is
    /// [`Error::TooLarge`](crate::Error::TooLarge) or
    /// [`Error::StoreFull`](crate::Error::StoreFull) `{ requested: len, available: capacity -
    /// bytes - reserved }`. A commit can still fail with
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) (mode [`PutMode::Create`]) or
    /// [`Error::TooManyEntries`](crate::Error::TooManyEntries) (entries are checked at the
    /// commit: a reservation holds none), and then gives its charge back; a commit's lease
    /// runs from the commit. Dropping a reservation uncommitted frees it.
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

/// Forwards every method of [`ObjectStore`] through a smart pointer. Only `get_digested` has a
/// default (a correct, slower one), and it is forwarded too; forgetting any other fails to
/// compile.
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
            async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
                (**self).get_digested(key).await
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
