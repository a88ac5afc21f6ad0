//! Reserve-write-commit: fill a buffer of a known length, then publish it under its key at once.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::digest::Digest;
use crate::error::Result;
use crate::key::ObjectKey;
use crate::options::PutOptions;
use crate::store::ObjectStore;

/// A buffer reserved in a store by [`ObjectStore::reserve`] for one key.
///
/// Fill [`as_mut_slice`](Reservation::as_mut_slice), then [`commit`](Reservation::commit):
/// readers see the whole value or nothing. While it lives, its bytes count against the
/// store's capacity; dropping it uncommitted frees them.
#[async_trait]
pub trait Reservation: Send + fmt::Debug {
    /// The length reserved, in bytes; a commit publishes exactly this many.
    fn len(&self) -> usize;

    /// True for a zero-length reservation.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key the reservation will be committed under.
    fn key(&self) -> &ObjectKey;

    /// The buffer to fill, `len()` bytes long. Its initial contents are unspecified.
    fn as_mut_slice(&mut self) -> &mut [u8];

    /// Publishes the buffer under its key with the options given to
    /// [`reserve`](ObjectStore::reserve) (the same errors as a put, minus the size and
    /// capacity checks already passed at reservation).
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Publishes the reservation like [`commit`](Reservation::commit), with the digest of the
    /// bytes written: the caller vouches for it (it hashed the bytes as it wrote them, as a
    /// gateway does while receiving), so a backend that keeps digests stores it as given
    /// instead of reading the value again. The default ignores it and commits (the backend
    /// then computes its own, if it keeps one).
    async fn commit_with_digest(self: Box<Self>, digest: Digest) -> Result<()> {
        let _ = digest;
        self.commit().await
    }
}

/// A [`Reservation`] in process memory, put into the store on commit: a building block for
/// backends that cannot lend their own memory (a remote client), which keep their own
/// charge of the capacity beside it.
///
/// It charges nothing by itself: a backend that hands it out must account for the reserved
/// bytes (see [`StoreStats::reserved`](crate::StoreStats::reserved)).
pub struct BufferedReservation<'a, S: ?Sized> {
    store: &'a S,
    key: ObjectKey,
    options: PutOptions,
    buf: Vec<u8>,
}

impl<'a, S: ObjectStore + ?Sized> BufferedReservation<'a, S> {
    /// A zeroed buffer of `len` bytes that will be put into `store` under `key` on commit.
    pub fn new(store: &'a S, key: &ObjectKey, len: usize, options: &PutOptions) -> Self {
        BufferedReservation::from_buf(store, key, vec![0; len], options)
    }

    /// Wraps an existing buffer (from a pool, say): its length is the reservation's.
    pub fn from_buf(store: &'a S, key: &ObjectKey, buf: Vec<u8>, options: &PutOptions) -> Self {
        BufferedReservation {
            store,
            key: key.clone(),
            options: *options,
            buf,
        }
    }
}

impl<S: ?Sized> fmt::Debug for BufferedReservation<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedReservation")
            .field("key", &self.key)
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: ObjectStore + ?Sized> Reservation for BufferedReservation<'_, S> {
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn key(&self) -> &ObjectKey {
        &self.key
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let BufferedReservation {
            store,
            key,
            options,
            buf,
        } = *self;
        store.put_opts(&key, Bytes::from(buf), &options).await
    }
}
