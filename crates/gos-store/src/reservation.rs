//! Reserve-write-commit: fill a buffer of a known length, then publish it under a key at once.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::key::ObjectKey;
use crate::store::{ObjectStore, PutMode};

/// A buffer reserved in a store by [`ObjectStore::reserve`].
///
/// Fill [`as_mut_slice`](Reservation::as_mut_slice), then [`commit`](Reservation::commit) it
/// under a key: readers see the whole value or nothing. Dropping a reservation without
/// committing it frees its space.
#[async_trait]
pub trait Reservation: Send + fmt::Debug {
    /// The length reserved, in bytes; a commit publishes exactly this many.
    fn len(&self) -> usize;

    /// True for a zero-length reservation.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer to fill, `len()` bytes long. Its initial contents are unspecified.
    fn as_mut_slice(&mut self) -> &mut [u8];

    /// Publishes the buffer under `key`, as `mode` says (the same errors as a put).
    async fn commit(self: Box<Self>, key: &ObjectKey, mode: PutMode) -> Result<()>;
}

/// The default [`Reservation`]: a buffer in process memory, put into the store on commit.
pub struct BufferedReservation<'a, S: ?Sized> {
    store: &'a S,
    buf: Vec<u8>,
}

impl<'a, S: ObjectStore + ?Sized> BufferedReservation<'a, S> {
    /// A zeroed buffer of `len` bytes that will be put into `store` on commit.
    pub fn new(store: &'a S, len: usize) -> Self {
        BufferedReservation {
            store,
            buf: vec![0; len],
        }
    }
}

impl<S: ?Sized> fmt::Debug for BufferedReservation<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedReservation")
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: ObjectStore + ?Sized> Reservation for BufferedReservation<'_, S> {
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    async fn commit(self: Box<Self>, key: &ObjectKey, mode: PutMode) -> Result<()> {
        let BufferedReservation { store, buf } = *self;
        store.put_opts(key, Bytes::from(buf), mode).await
    }
}
