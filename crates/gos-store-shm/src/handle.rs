//! What a handle gives out that points into the arena: pins (`PinGuard`, the owner of a
//! `Bytes` from `get`) and reservations (`ShmReservation`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gos_store::{Digest, ObjectKey, PutOptions, Reservation, Result};

use crate::lock::Inner;
use crate::table::Lifecycle;

/// Keeps one pin on a value; the `Bytes` returned by `get` owns it.
pub(crate) struct PinGuard {
    pub(crate) inner: Arc<Inner>,
    pub(crate) id: u32,
    pub(crate) offset: u64,
    pub(crate) len: usize,
}

impl AsRef<[u8]> for PinGuard {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the extent `[offset, offset + len)` was checked to lie in the arena when
        // the pin was taken; it was committed before (under the lock, so its bytes
        // happen-before this read), and a pinned extent is never written or freed. `inner`
        // keeps it mapped.
        unsafe {
            std::slice::from_raw_parts(self.inner.arena().add(self.offset as usize), self.len)
        }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.inner.lock() {
            let slot = self.inner.slot;
            let _ = guard.tables().unpin(slot, self.id);
        }
    }
}

/// A buffer inside the shared arena, from [`ObjectStore::reserve`](gos_store::ObjectStore::reserve)
/// on a [`ShmStore`](crate::ShmStore). Committing publishes it without a copy, with the
/// reader count and lease given at reserve (the lease runs from the commit); dropping it
/// uncommitted frees it.
pub struct ShmReservation {
    pub(crate) store: crate::ShmStore,
    pub(crate) key: ObjectKey,
    pub(crate) options: PutOptions,
    pub(crate) id: u32,
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) committed: bool,
}

impl fmt::Debug for ShmReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmReservation")
            .field("key", &self.key)
            .field("len", &self.len)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl ShmReservation {
    pub(crate) fn slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: the extent was checked to lie in the arena and allocated to this
        // reservation alone (no reader can reach a reserved record); `store` keeps it mapped;
        // `&mut self` makes this the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.store.inner.arena().add(self.offset as usize),
                self.len,
            )
        }
    }

    /// Publishes the reservation, with `digest` as its value's when the caller has one (else
    /// the digest is computed the first time someone asks for it).
    pub(crate) async fn commit_inner(&mut self, digest: Option<Digest>) -> Result<()> {
        let slot = self.store.inner.slot;
        let id = self.id;
        let life = Lifecycle {
            readers: self.options.readers.count().unwrap_or(0),
            expires: crate::lease_millis(self.store.now(), self.options.lease),
            digest,
        };
        let (key, mode) = (self.key.clone(), self.options.mode);
        self.store
            .locked(move |t| t.commit(slot, id, &key, mode, life))
            .await?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for ShmReservation {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Ok(mut guard) = self.store.inner.lock() {
            let slot = self.store.inner.slot;
            let _ = guard.tables().abandon(slot, self.id);
        }
    }
}

#[async_trait]
impl Reservation for ShmReservation {
    fn len(&self) -> usize {
        self.len
    }

    fn key(&self) -> &ObjectKey {
        &self.key
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.slice_mut()
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.commit_inner(None).await
    }

    async fn commit_with_digest(mut self: Box<Self>, digest: Digest) -> Result<()> {
        self.commit_inner(Some(digest)).await
    }
}
