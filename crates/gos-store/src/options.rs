//! What a put asks for ([`PutOptions`]: mode, readers, lease) and what the store tells back
//! about an object ([`ObjectMeta`], [`ReleaseOutcome`]).

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;

/// What a put does when its key already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PutMode {
    /// Replace the existing value atomically (the default).
    #[default]
    Overwrite,
    /// Fail with [`Error::AlreadyExists`](crate::Error::AlreadyExists) and leave the existing
    /// value in place.
    Create,
}

/// How many readers an object expects.
///
/// With [`Readers::Exactly`], each reader calls [`ObjectStore::release`](crate::ObjectStore::release)
/// once it is done; the release that brings the count to zero deletes the object, in the same
/// atomic store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Readers {
    /// No count: the object stays until it is deleted, overwritten or its lease runs out, and
    /// a release leaves it in place ([`ReleaseOutcome::Unbounded`]).
    #[default]
    Unbounded,
    /// Exactly this many releases delete the object (as many readers as that, or fewer).
    Exactly(NonZeroU32),
}

impl Readers {
    /// `Exactly(n)`, or `None` for zero (an object nobody will read is not worth storing).
    pub fn exactly(n: u32) -> Option<Readers> {
        NonZeroU32::new(n).map(Readers::Exactly)
    }

    /// The count, or `None` when unbounded.
    pub fn count(self) -> Option<u32> {
        match self {
            Readers::Unbounded => None,
            Readers::Exactly(n) => Some(n.get()),
        }
    }
}

/// Options of a put or a reservation: what happens on an existing key, how many readers the
/// object expects, and how long it may live.
///
/// Marked `#[non_exhaustive]` so it can grow: build it with [`PutOptions::new`] (or
/// `Default`) and the setters.
///
/// ```
/// use std::time::Duration;
/// use gos_store::{PutMode, PutOptions, Readers};
///
/// let opts = PutOptions::new()
///     .mode(PutMode::Create)
///     .readers(3)
///     .lease(Duration::from_secs(60));
/// assert_eq!(opts.readers.count(), Some(3));
/// assert_eq!(PutOptions::new().readers(0).readers, Readers::Unbounded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PutOptions {
    /// What a put does when the key exists (default [`PutMode::Overwrite`]).
    pub mode: PutMode,
    /// How many releases delete the object (default [`Readers::Unbounded`]).
    pub readers: Readers,
    /// How long after the put (after the commit, for a reservation) the store removes the
    /// object by itself, released or not (default: never): it expires when the store's clock
    /// reaches that deadline. Readers holding its value keep it intact.
    pub lease: Option<Duration>,
}

impl PutOptions {
    /// Overwrite, unbounded readers, no lease: a plain put.
    pub fn new() -> Self {
        PutOptions::default()
    }

    /// [`PutMode::Create`]: fail on an existing key.
    pub fn create() -> Self {
        PutOptions::new().mode(PutMode::Create)
    }

    /// Sets the mode.
    #[must_use]
    pub fn mode(mut self, mode: PutMode) -> Self {
        self.mode = mode;
        self
    }

    /// Expects exactly `n` readers (`0` means unbounded).
    #[must_use]
    pub fn readers(mut self, n: u32) -> Self {
        self.readers = Readers::exactly(n).unwrap_or(Readers::Unbounded);
        self
    }

    /// Sets the readers.
    #[must_use]
    pub fn with_readers(mut self, readers: Readers) -> Self {
        self.readers = readers;
        self
    }

    /// Sets a lease: the object is removed `lease` after the put.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Sets or clears the lease.
    #[must_use]
    pub fn with_lease(mut self, lease: Option<Duration>) -> Self {
        self.lease = lease;
        self
    }
}

impl From<PutMode> for PutOptions {
    fn from(mode: PutMode) -> Self {
        PutOptions::new().mode(mode)
    }
}

/// What [`ObjectStore::head`](crate::ObjectStore::head) tells about an object, without moving
/// its value or pinning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectMeta {
    /// Size of the value, in bytes.
    pub size: u64,
    /// Releases still expected before the object is deleted ([`Readers::Unbounded`] when it
    /// was put without a count).
    pub readers: Readers,
    /// When the store removes the object by itself, if it has a lease.
    pub expires_at: Option<SystemTime>,
    /// The digest of the value ([`Digest`]), kept beside it since it was stored; `None` only
    /// from a backend that keeps no digests. Check what you read with [`Digest::verify`].
    pub digest: Option<Digest>,
}

impl ObjectMeta {
    /// Metadata of a live object (with no digest: add it with [`ObjectMeta::with_digest`]).
    pub fn new(size: u64, readers: Readers, expires_at: Option<SystemTime>) -> Self {
        ObjectMeta {
            size,
            readers,
            expires_at,
            digest: None,
        }
    }

    /// The same metadata, with this digest.
    #[must_use]
    pub fn with_digest(mut self, digest: Option<Digest>) -> Self {
        self.digest = digest;
        self
    }
}

/// What one [`ObjectStore::release`](crate::ObjectStore::release) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ReleaseOutcome {
    /// The count went down and the object stays for this many more releases.
    Remaining(NonZeroU32),
    /// This was the last expected release: the object is deleted.
    Deleted,
    /// The object was put without a count: nothing changed.
    Unbounded,
    /// There is no such object (never put, already deleted, or expired).
    NotFound,
}

impl ReleaseOutcome {
    /// The outcome of releasing an object whose count was `readers` before the release:
    /// what every backend computes, in one place.
    pub fn after(readers: Readers) -> (ReleaseOutcome, Readers) {
        match readers {
            Readers::Unbounded => (ReleaseOutcome::Unbounded, Readers::Unbounded),
            Readers::Exactly(n) => match NonZeroU32::new(n.get() - 1) {
                Some(left) => (ReleaseOutcome::Remaining(left), Readers::Exactly(left)),
                None => (ReleaseOutcome::Deleted, readers),
            },
        }
    }

    /// True when this release deleted the object.
    pub fn deleted(self) -> bool {
        self == ReleaseOutcome::Deleted
    }
}

/// The deadline of a lease taken at `now`, saturating far in the future on overflow.
pub fn lease_deadline(now: SystemTime, lease: Option<Duration>) -> Option<SystemTime> {
    lease.map(|lease| {
        now.checked_add(lease)
            .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_counts_down_to_deleted() {
        let mut readers = Readers::exactly(2).unwrap();
        let (first, left) = ReleaseOutcome::after(readers);
        assert_eq!(
            first,
            ReleaseOutcome::Remaining(NonZeroU32::new(1).unwrap())
        );
        readers = left;
        let (second, _) = ReleaseOutcome::after(readers);
        assert_eq!(second, ReleaseOutcome::Deleted);
        assert!(second.deleted());
        assert_eq!(
            ReleaseOutcome::after(Readers::Unbounded).0,
            ReleaseOutcome::Unbounded
        );
    }

    #[test]
    fn options_build() {
        let o = PutOptions::create()
            .readers(2)
            .lease(Duration::from_secs(1));
        assert_eq!(o.mode, PutMode::Create);
        assert_eq!(o.readers.count(), Some(2));
        assert_eq!(o.lease, Some(Duration::from_secs(1)));
        assert_eq!(PutOptions::from(PutMode::Create).mode, PutMode::Create);
        assert_eq!(Readers::exactly(0), None);
    }

    #[test]
    fn deadline_saturates() {
        let now = SystemTime::now();
        assert!(lease_deadline(now, Some(Duration::MAX)).unwrap() > now);
        assert_eq!(lease_deadline(now, None), None);
    }
}
