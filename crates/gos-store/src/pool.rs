//! `BufferPool`: a bounded pool of warm buffers for values, shared by backends and clients. A
//! buffer whose last `Bytes` reference is dropped goes back to the pool instead of the
//! allocator, so the next value of a similar size is written into memory that is already
//! faulted in (a fresh 4 KiB page costs ~2 us on the machines GOS is measured on: 100 MiB of
//! fresh pages is 5x the cost of the copy itself).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;

/// Buffers smaller than this are not pooled: the allocator reuses them well on its own.
pub const MIN_POOLED: usize = 64 << 10;

/// A bounded pool of buffers, shared through an `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use gos_store::BufferPool;
///
/// let pool = Arc::new(BufferPool::new(8 << 20));
/// let mut buf = pool.take(1 << 20);
/// buf[..5].copy_from_slice(b"model");
/// let value = pool.freeze(buf, 5); // a `Bytes` of the first 5 bytes
/// assert_eq!(&value[..], b"model");
/// drop(value); // the 1 MiB buffer goes back to the pool
/// assert_eq!(pool.bytes(), 1 << 20);
/// ```
#[derive(Debug)]
pub struct BufferPool {
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    free: Vec<Vec<u8>>,
    bytes: u64,
}

impl BufferPool {
    /// A pool keeping at most `max_bytes` of free buffers.
    pub fn new(max_bytes: u64) -> Self {
        BufferPool {
            max_bytes,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation is a single push, removal or counter update: a panic cannot tear it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer of at least `len` bytes (its contents unspecified): the smallest pooled one
    /// that is not more than a quarter larger, or a new zeroed one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len >= MIN_POOLED {
            let mut inner = self.lock();
            let fit = inner
                .free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len && b.len() - len <= len / 4)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            if let Some(i) = fit {
                let buf = inner.free.swap_remove(i);
                inner.bytes -= buf.len() as u64;
                return buf;
            }
        }
        vec![0; len]
    }

    /// Keeps `buf` for reuse if it is worth pooling and the pool has room; frees it otherwise.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.len() < MIN_POOLED {
            return;
        }
        let mut inner = self.lock();
        if inner.bytes + buf.len() as u64 <= self.max_bytes {
            inner.bytes += buf.len() as u64;
            inner.free.push(buf);
        }
    }

    /// The first `len` bytes of `buf` as a `Bytes` (no copy); `buf` comes back to this pool
    /// when the last reference is dropped.
    ///
    /// # Panics
    /// If `len` is larger than `buf`.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>, len: usize) -> Bytes {
        assert!(
            len <= buf.len(),
            "freeze of {len} bytes of a {}-byte buffer",
            buf.len()
        );
        Bytes::from_owner(Pooled {
            buf,
            len,
            pool: Arc::downgrade(self),
        })
    }

    /// Bytes of free buffers held for reuse.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The most bytes of free buffers this pool keeps.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Frees every pooled buffer.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.free.clear();
        inner.bytes = 0;
    }
}

/// The owner behind a frozen buffer's `Bytes`.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Weak<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give(std::mem::take(&mut self.buf));
        }
    }
}

impl fmt::Debug for Pooled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_size_and_bounded() {
        let pool = Arc::new(BufferPool::new(3 << 20));
        let a = pool.take(1 << 20);
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.bytes(), 1 << 20);
        // A similar size reuses it; a much smaller one does not take the big buffer.
        let small = pool.take(100 << 10);
        assert_ne!(small.as_ptr(), ptr);
        let b = pool.take((1 << 20) - 1000);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(pool.bytes(), 0);
        // The pool never holds more than its bound, nor tiny buffers.
        for _ in 0..5 {
            pool.give(vec![0; 1 << 20]);
        }
        assert_eq!(pool.bytes(), 3 << 20);
        pool.give(vec![0; 10]);
        assert_eq!(pool.bytes(), 3 << 20);
        pool.clear();
        assert_eq!(pool.bytes(), 0);
    }

    #[test]
    fn a_frozen_buffer_returns_when_its_last_reference_drops() {
        let pool = Arc::new(BufferPool::new(8 << 20));
        let bytes = pool.freeze(pool.take(1 << 20), 1000);
        assert_eq!(bytes.len(), 1000);
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.bytes(), 0, "still referenced");
        drop(clone);
        assert_eq!(pool.bytes(), 1 << 20);
        // A buffer frozen after its pool is gone is simply freed.
        let orphan = pool.freeze(vec![0; 1 << 20], 1);
        drop(pool);
        drop(orphan);
    }
}
