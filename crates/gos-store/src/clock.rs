//! The time a store reads to decide when a lease has run out: the system clock in production,
//! a [`ManualClock`] in tests so that expiry is deterministic (no sleeps).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A source of the current time for lease deadlines.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock (what every store uses by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The default clock, shared.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to: for deterministic lease tests.
///
/// Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use gos_store::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Nanoseconds since the Unix epoch.
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at the current system time.
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        ManualClock::at(now)
    }

    /// A clock stopped at `since_epoch` after the Unix epoch.
    pub fn at(since_epoch: Duration) -> Self {
        ManualClock {
            nanos: Arc::new(AtomicU64::new(
                u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
            )),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

/// Milliseconds since the Unix epoch of `time` (0 before the epoch, saturating): the form
/// backends that keep deadlines in shared tables or on the wire store them in.
pub fn to_unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `millis` milliseconds after the Unix epoch.
pub fn from_unix_millis(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_by_clones() {
        let a = ManualClock::at(Duration::from_secs(10));
        let b = a.clone();
        a.advance(Duration::from_millis(1500));
        assert_eq!(to_unix_millis(b.now()), 11_500);
        assert_eq!(from_unix_millis(11_500), b.now());
    }
}
