//! The arena allocator: a sorted, coalesced list of free extents in a fixed array (plain code,
//! no system calls; it runs the same over shared memory and over a `Vec` in tests).
//!
//! Best fit over at most `max_objects + 1` free extents: a freed extent is merged with its
//! neighbours at once, so the list never holds two adjacent extents and never grows past the
//! number of allocated extents plus one.

use crate::layout::{ALIGN, Extent};

/// A view of the free list: the array and the number of extents in use.
#[derive(Debug)]
pub(crate) struct FreeList<'a> {
    pub(crate) extents: &'a mut [Extent],
    pub(crate) len: &'a mut u64,
}

/// The free list is corrupt or full (it cannot be when the invariants hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FreeListFull;

impl FreeList<'_> {
    fn used(&self) -> usize {
        (*self.len as usize).min(self.extents.len())
    }

    /// The free extents, by ascending offset.
    pub(crate) fn as_slice(&self) -> &[Extent] {
        &self.extents[..self.used()]
    }

    /// Total free bytes.
    pub(crate) fn free_bytes(&self) -> u64 {
        self.as_slice()
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.len))
    }

    /// The largest free extent.
    pub(crate) fn largest(&self) -> u64 {
        self.as_slice().iter().map(|e| e.len).max().unwrap_or(0)
    }

    /// Takes `size` bytes (a multiple of the alignment) from the smallest extent that holds
    /// them; returns the offset.
    pub(crate) fn alloc(&mut self, size: u64) -> Option<u64> {
        let n = self.used();
        let (index, _) = self.extents[..n]
            .iter()
            .enumerate()
            .filter(|(_, e)| e.len >= size)
            .min_by_key(|(_, e)| e.len)?;
        let extent = &mut self.extents[index];
        let offset = extent.offset;
        if extent.len == size {
            self.extents.copy_within(index + 1..n, index);
            *self.len = (n - 1) as u64;
        } else {
            // Saturating: the list lives in a shared file; the caller checks the offset
            // against the arena before using it.
            extent.offset = extent.offset.saturating_add(size);
            extent.len -= size;
        }
        Some(offset)
    }

    /// Returns `[offset, offset + size)` to the list, merging it with its neighbours.
    pub(crate) fn free(&mut self, offset: u64, size: u64) -> Result<(), FreeListFull> {
        if size == 0 {
            return Ok(());
        }
        let n = self.used();
        let index = self.extents[..n].partition_point(|e| e.offset < offset);
        let joins_prev = index > 0 && {
            let prev = self.extents[index - 1];
            prev.offset.checked_add(prev.len) == Some(offset)
        };
        let joins_next = index < n && offset.checked_add(size) == Some(self.extents[index].offset);
        match (joins_prev, joins_next) {
            (true, true) => {
                let next_len = self.extents[index].len;
                let merged = &mut self.extents[index - 1].len;
                *merged = merged.saturating_add(size).saturating_add(next_len);
                self.extents.copy_within(index + 1..n, index);
                *self.len = (n - 1) as u64;
            }
            (true, false) => {
                let merged = &mut self.extents[index - 1].len;
                *merged = merged.saturating_add(size);
            }
            (false, true) => {
                self.extents[index].offset = offset;
                self.extents[index].len = self.extents[index].len.saturating_add(size);
            }
            (false, false) => {
                if n >= self.extents.len() {
                    return Err(FreeListFull);
                }
                self.extents.copy_within(index..n, index + 1);
                self.extents[index] = Extent { offset, len: size };
                *self.len = (n + 1) as u64;
            }
        }
        Ok(())
    }

    /// Rebuilds the list as the gaps of `[0, arena)` left by `used` extents (sorted here;
    /// they must not overlap).
    pub(crate) fn rebuild(
        &mut self,
        arena: u64,
        mut used: Vec<(u64, u64)>,
    ) -> Result<(), FreeListFull> {
        used.sort_unstable();
        *self.len = 0;
        let mut at = 0;
        for (offset, len) in used.into_iter().chain([(arena, 0)]) {
            if offset > at {
                let n = self.used();
                if n >= self.extents.len() {
                    return Err(FreeListFull);
                }
                self.extents[n] = Extent {
                    offset: at,
                    len: offset - at,
                };
                *self.len = (n + 1) as u64;
            }
            at = at.max(offset.saturating_add(len));
        }
        Ok(())
    }

    /// Checks the list: sorted, non-empty, aligned extents, never adjacent, inside
    /// `[0, arena)`.
    pub(crate) fn check(&self, arena: u64) -> Result<(), String> {
        if *self.len as usize > self.extents.len() {
            return Err(format!("free list length {} out of bounds", self.len));
        }
        let list = self.as_slice();
        for e in list {
            let aligned = e.offset.is_multiple_of(ALIGN) && e.len.is_multiple_of(ALIGN);
            if e.len == 0 || !aligned || e.offset.checked_add(e.len).is_none_or(|end| end > arena) {
                return Err(format!("bad free extent {e:?}"));
            }
        }
        for w in list.windows(2) {
            if w[0].offset.saturating_add(w[0].len) >= w[1].offset {
                return Err(format!(
                    "free extents overlap or touch: {:?} {:?}",
                    w[0], w[1]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        extents: Vec<Extent>,
        len: u64,
    }

    impl Owned {
        fn new(arena: u64, cap: usize) -> Self {
            let mut owned = Owned {
                extents: vec![Extent::default(); cap],
                len: 0,
            };
            owned.list().rebuild(arena, Vec::new()).expect("rebuild");
            owned
        }
        fn list(&mut self) -> FreeList<'_> {
            FreeList {
                extents: &mut self.extents,
                len: &mut self.len,
            }
        }
    }

    #[test]
    fn alloc_and_free_coalesce_back_to_one_extent() {
        let mut o = Owned::new(1024, 8);
        let mut l = o.list();
        let a = l.alloc(64).expect("a");
        let b = l.alloc(128).expect("b");
        let c = l.alloc(64).expect("c");
        assert_eq!((a, b, c), (0, 64, 192));
        assert_eq!(l.free_bytes(), 1024 - 256);
        l.free(b, 128).expect("free b");
        assert_eq!(l.as_slice().len(), 2);
        // Best fit: a 64-byte request goes into the 128-byte hole, not the big tail.
        assert_eq!(l.alloc(64), Some(64));
        l.free(64, 64).expect("free");
        l.free(a, 64).expect("free a");
        l.free(c, 64).expect("free c");
        assert_eq!(
            l.as_slice(),
            &[Extent {
                offset: 0,
                len: 1024
            }]
        );
        l.check(1024).expect("valid");
        assert_eq!(l.alloc(2048), None);
    }

    #[test]
    fn rebuild_gives_the_gaps() {
        let mut o = Owned::new(1024, 8);
        let mut l = o.list();
        l.rebuild(1024, vec![(512, 64), (0, 64), (960, 64)])
            .expect("rebuild");
        assert_eq!(
            l.as_slice(),
            &[
                Extent {
                    offset: 64,
                    len: 448
                },
                Extent {
                    offset: 576,
                    len: 384
                }
            ]
        );
        l.check(1024).expect("valid");
    }

    /// Random allocations and frees against a byte map; the free list and the map must agree.
    #[test]
    fn random_ops_match_a_byte_map() {
        const ARENA: u64 = 64 * 256;
        let mut o = Owned::new(ARENA, 260);
        let mut l = o.list();
        let mut taken: Vec<(u64, u64)> = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            if next() % 2 == 0 || taken.is_empty() {
                let size = 64 * (1 + next() % 8);
                if let Some(offset) = l.alloc(size) {
                    taken.push((offset, size));
                } else {
                    assert!(l.largest() < size);
                }
            } else {
                let i = (next() % taken.len() as u64) as usize;
                let (offset, size) = taken.swap_remove(i);
                l.free(offset, size).expect("free");
            }
            l.check(ARENA).expect("valid");
            let used: u64 = taken.iter().map(|t| t.1).sum();
            assert_eq!(used + l.free_bytes(), ARENA);
        }
        let mut all = taken.clone();
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
    }
}
