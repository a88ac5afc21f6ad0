//! Named scenarios: the properties a random sequence of single operations cannot show
//! (concurrency lined up on barriers, big values across length boundaries, held values, exact
//! error fields, expiry on a manual clock), each a public async function.
//!
//! Every scenario takes the factory and the config and returns `Err` with a description of
//! the first violation it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gos_store::{ObjectKey, ObjectStore, StoreStats};

use crate::{Outcome, StoreFactory, SuiteConfig, TestResult};

mod admission;
mod basic;
mod big;
mod lifecycle;

pub use admission::{
    create_race_has_one_winner, held_values_survive_equal_size_overwrite,
    limit_error_fields_on_overwrite, reservations_never_over_admit, reservations_show_in_stats,
};
pub use basic::{
    atomic_overwrite, concurrent_writers_and_readers, dropped_reservation_frees_space,
    held_bytes_survive_delete_and_overwrite, limit_errors_change_nothing,
    prefixes_are_segment_wise,
};
pub use big::{big_value_round_trip, values_cross_length_boundaries};
pub use lifecycle::{
    concurrent_releases_delete_exactly_once, expired_object_disappears_and_space_returns,
    release_counts_down_then_deletes, retention_deletes_exactly_earlier_rounds,
};

/// What a scenario that always runs in full returns.
pub type Checked = Result<(), String>;

trait IntoResult {
    fn into_result(self) -> TestResult;
}

impl IntoResult for Checked {
    fn into_result(self) -> TestResult {
        self.map(|()| Outcome::Passed)
    }
}

impl IntoResult for TestResult {
    fn into_result(self) -> TestResult {
        self
    }
}

/// Every scenario's name, in the order [`run_all`] runs them.
pub const NAMES: &[&str] = &[
    "atomic_overwrite",
    "held_bytes_survive_delete_and_overwrite",
    "held_values_survive_equal_size_overwrite",
    "limit_errors_change_nothing",
    "limit_error_fields_on_overwrite",
    "concurrent_writers_and_readers",
    "create_race_has_one_winner",
    "big_value_round_trip",
    "values_cross_length_boundaries",
    "dropped_reservation_frees_space",
    "reservations_show_in_stats",
    "reservations_never_over_admit",
    "prefixes_are_segment_wise",
    "release_counts_down_then_deletes",
    "concurrent_releases_delete_exactly_once",
    "expired_object_disappears_and_space_returns",
    "retention_deletes_exactly_earlier_rounds",
];

/// Runs every scenario [`SuiteConfig::only`] selects, in order, and returns each one's name,
/// outcome and duration.
pub async fn run_all<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Vec<(&'static str, TestResult, Duration)> {
    let mut out = Vec::new();
    macro_rules! scenarios {
        ($($name:ident),* $(,)?) => {$(
            if config.selects(stringify!($name)) {
                let start = Instant::now();
                let result = $name(factory, config).await.into_result();
                out.push((stringify!($name), result, start.elapsed()));
            }
        )*};
    }
    scenarios!(
        atomic_overwrite,
        held_bytes_survive_delete_and_overwrite,
        held_values_survive_equal_size_overwrite,
        limit_errors_change_nothing,
        limit_error_fields_on_overwrite,
        concurrent_writers_and_readers,
        create_race_has_one_winner,
        big_value_round_trip,
        values_cross_length_boundaries,
        dropped_reservation_frees_space,
        reservations_show_in_stats,
        reservations_never_over_admit,
        prefixes_are_segment_wise,
        release_counts_down_then_deletes,
        concurrent_releases_delete_exactly_once,
        expired_object_disappears_and_space_returns,
        retention_deletes_exactly_earlier_rounds,
    );
    out
}

pub(crate) fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("scenario keys are valid")
}

pub(crate) fn ctx<T>(what: &str, r: gos_store::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what} failed: {e}"))
}

/// A value of `len` bytes whose every byte is `tag`, so a torn read is visible.
pub(crate) fn uniform(tag: u8, len: usize) -> Bytes {
    Bytes::from(vec![tag; len])
}

/// Checks `stats()` of `s` against the entries, bytes and reserved bytes wanted.
pub(crate) async fn expect_stats<S: ObjectStore + ?Sized>(
    s: &S,
    what: &str,
    entries: u64,
    bytes: u64,
    reserved: u64,
) -> Checked {
    let stats = ctx("stats", s.stats().await)?;
    let want = StoreStats {
        entries,
        bytes,
        reserved,
        capacity_bytes: stats.capacity_bytes,
    };
    if stats != want {
        return Err(format!("{what}: stats are {stats:?}, want {want:?}"));
    }
    Ok(())
}

pub(crate) async fn join<T>(
    handle: tokio::task::JoinHandle<Result<T, String>>,
) -> Result<T, String> {
    handle.await.map_err(|e| format!("a task panicked: {e}"))?
}

/// How long a lined-up thread waits for the others before the scenario fails.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);

/// A barrier whose threads spin (then yield) instead of sleeping, so that they leave it within
/// a few hundred nanoseconds of each other and their operations really overlap. Bounded: a
/// wait gives up after [`BARRIER_TIMEOUT`].
#[derive(Debug)]
pub(crate) struct SpinBarrier {
    parties: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    pub(crate) fn new(parties: usize) -> Self {
        SpinBarrier {
            parties,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    pub(crate) fn wait(&self) -> Result<(), String> {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.store(0, Ordering::Release);
            self.generation.fetch_add(1, Ordering::AcqRel);
            return Ok(());
        }
        let start = Instant::now();
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) {
                if start.elapsed() > BARRIER_TIMEOUT {
                    return Err("a lined-up thread waited too long for the others".into());
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(())
    }
}

/// How many threads a lined-up race uses: as many as run at once (at least 2), at most
/// `tasks`.
pub(crate) fn contenders(config: &SuiteConfig) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    cores.min(config.tasks).max(2)
}

/// Runs `threads` OS threads that each call `body(thread, &barrier)` and drive the store
/// operations in it with `block_on` on the current runtime; returns their results in thread
/// order. Call from a scenario (it blocks the calling thread until they are done, which is
/// not a runtime worker: `check` drives the scenarios with `Runtime::block_on`).
pub(crate) fn lined_up<T: Send>(
    threads: usize,
    body: impl Fn(usize, &SpinBarrier, &tokio::runtime::Handle) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    let handle = tokio::runtime::Handle::current();
    let barrier = SpinBarrier::new(threads);
    std::thread::scope(|s| {
        let joins: Vec<_> = (0..threads)
            .map(|t| {
                let (body, barrier, handle) = (&body, &barrier, &handle);
                s.spawn(move || body(t, barrier, handle))
            })
            .collect();
        joins
            .into_iter()
            .map(|j| {
                j.join()
                    .map_err(|_| "a lined-up thread panicked".to_owned())?
            })
            .collect()
    })
}
