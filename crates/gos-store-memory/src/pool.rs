//! A bounded pool of warm buffers for reservations: a buffer whose last `Bytes` reference is
//! dropped goes back to the pool instead of the allocator, so the next reservation of a similar
//! size writes into memory that is already faulted in (a fresh 4 KiB page costs ~2 us here:
//! 100 MiB of fresh pages is 5x the cost of the copy itself).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Buffers smaller than this are not pooled: the allocator reuses them well on its own.
pub(crate) const MIN_POOLED: usize = 64 << 10;

#[derive(Debug)]
pub(crate) struct Pool {
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    free: Vec<Vec<u8>>,
    bytes: u64,
}

impl Pool {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Pool {
            max_bytes,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer of at least `len` bytes: the smallest pooled one that is not more than a
    /// quarter larger, or a new zeroed one.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
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
    pub(crate) fn give(&self, buf: Vec<u8>) {
        if buf.len() < MIN_POOLED {
            return;
        }
        let mut inner = self.lock();
        if inner.bytes + buf.len() as u64 <= self.max_bytes {
            inner.bytes += buf.len() as u64;
            inner.free.push(buf);
        }
    }

    /// Bytes held for reuse.
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Frees every pooled buffer.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.free.clear();
        inner.bytes = 0;
    }
}

/// The owner of a committed value's buffer: `len` bytes of `buf`, returned to the pool when
/// the last `Bytes` referring to it is dropped.
pub(crate) struct Pooled {
    pub(crate) buf: Vec<u8>,
    pub(crate) len: usize,
    pub(crate) pool: Weak<Pool>,
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

pub(crate) fn downgrade(pool: &Arc<Pool>) -> Weak<Pool> {
    Arc::downgrade(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_size_and_bounded() {
        let pool = Arc::new(Pool::new(3 << 20));
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
        // The pool never holds more than its bound.
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
    fn a_dropped_owner_returns_its_buffer() {
        let pool = Arc::new(Pool::new(8 << 20));
        let owner = Pooled {
            buf: pool.take(1 << 20),
            len: 1000,
            pool: downgrade(&pool),
        };
        let bytes = bytes::Bytes::from_owner(owner);
        assert_eq!(bytes.len(), 1000);
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(pool.bytes(), 0, "still referenced");
        drop(clone);
        assert_eq!(pool.bytes(), 1 << 20);
    }
}
