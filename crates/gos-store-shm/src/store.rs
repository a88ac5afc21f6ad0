//! The `ObjectStore` implementation. Each operation tries the store lock on the calling
//! thread; when another process holds it, the wait moves to a blocking thread of the tokio
//! runtime (if there is one), so that an async worker never sleeps on the lock. Every wait is
//! bounded by the handle's lock timeout: a stopped holder gives `Error::Busy`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::{
    Digest, Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutOptions,
    ReleaseOutcome, Reservation, Result, StoreStats,
};

use crate::ShmStore;
use crate::handle::{PinGuard, ShmReservation};
use crate::table::{Pinned, Refusal, Tables};

impl ShmStore {
    /// Runs `op` under the store lock at the current time (see the module docs).
    pub(crate) async fn locked<T, F>(&self, mut op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tables<'_>) -> std::result::Result<T, Refusal> + Send + 'static,
    {
        let now = crate::unix_millis(self.now());
        if let Some(done) = self.inner.try_with_reclaim(now, &mut op) {
            return done;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = Arc::clone(&self.inner);
                runtime
                    .spawn_blocking(move || inner.with_reclaim(now, op))
                    .await
                    .map_err(|e| Error::backend("shm", e))?
            }
            Err(_) => self.inner.with_reclaim(now, op),
        }
    }

    /// Reserves `len` bytes for `key` with `options` (limits checked, capacity charged).
    async fn admit(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
        known_key: bool,
    ) -> Result<ShmReservation> {
        self.inner.geometry.limits().check_value_size(len as u64)?;
        let slot = self.inner.slot;
        let check = known_key.then(|| (key.clone(), options.mode));
        let admitted = self
            .locked(move |t| {
                let key = check.as_ref().map(|(k, m)| (k.as_str().as_bytes(), *m));
                t.admit(slot, len as u64, key)
            })
            .await?;
        Ok(ShmReservation {
            store: self.clone(),
            key: key.clone(),
            options: *options,
            id: admitted.id,
            offset: admitted.offset,
            len,
            committed: false,
        })
    }

    fn pinned_bytes(&self, pinned: Pinned) -> Bytes {
        Bytes::from_owner(PinGuard {
            inner: Arc::clone(&self.inner),
            id: pinned.id,
            offset: pinned.offset,
            len: pinned.len as usize,
        })
    }
}

#[async_trait]
impl ObjectStore for ShmStore {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        let mut reservation = self.admit(key, value.len(), options, true).await?;
        // One memcpy and nothing else: the digest is computed the first time someone asks
        // for it (a gateway serving the value, `head`), so that same-host rounds, which never
        // need it, do not pay for it on every put.
        reservation.slice_mut().copy_from_slice(&value);
        reservation.commit_inner(None).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        let slot = self.inner.slot;
        let key = key.clone();
        let pinned = self
            .locked(move |t| t.pin(slot, key.as_str().as_bytes()))
            .await?;
        Ok(pinned.map(|p| self.pinned_bytes(p)))
    }

    async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
        let slot = self.inner.slot;
        let key = key.clone();
        let pinned = self
            .locked(move |t| t.pin(slot, key.as_str().as_bytes()))
            .await?;
        let Some(p) = pinned else { return Ok(None) };
        let (id, kept) = (p.id, p.digest);
        let value = self.pinned_bytes(p);
        let digest = match kept {
            Some(d) => d,
            None => {
                // First ask: one pass over the pinned bytes outside the lock, then the digest
                // goes into the record for every later reader (the pin keeps the record ours).
                let d = Digest::of(&value);
                self.locked(move |t| t.set_digest(slot, id, d)).await?;
                d
            }
        };
        Ok(Some((value, digest)))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        // A value whose digest nobody asked for yet gets it computed now (once): pinned,
        // hashed, recorded, then read again. An overwrite in between is retried.
        for _ in 0..3 {
            let k = key.clone();
            let meta = self.locked(move |t| t.head(k.as_str().as_bytes())).await?;
            match meta {
                Some(m) if m.digest.is_none() => {
                    self.get_digested(key).await?;
                }
                other => return Ok(other),
            }
        }
        let k = key.clone();
        self.locked(move |t| t.head(k.as_str().as_bytes())).await
    }

    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        let key = key.clone();
        self.locked(move |t| t.release(key.as_str().as_bytes()))
            .await
    }

    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        KeyPrefix::federation(fed_id)?;
        let fed_id = fed_id.to_owned();
        self.locked(move |t| t.delete_rounds_before(&fed_id, round))
            .await
    }

    async fn sweep(&self) -> Result<usize> {
        self.locked(|t| t.sweep()).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        let key = key.clone();
        self.locked(move |t| t.delete(key.as_str().as_bytes()))
            .await
    }

    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        let prefix = prefix.clone();
        self.locked(move |t| t.keys(&prefix)).await
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        let prefix = prefix.clone();
        self.locked(move |t| t.delete_prefix(&prefix)).await
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.stats().await?.entries as usize)
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.locked(|t| t.stats()).await
    }

    fn limits(&self) -> Limits {
        self.inner.geometry.limits()
    }

    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        Ok(Box::new(self.admit(key, len, options, false).await?))
    }
}
