//! The suite must be able to fail: each deliberately broken store here is caught, every run,
//! by the check named for it (a scenario that catches it deterministically, or a race lined
//! up over enough rounds; see docs/conformance.md).

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gos_conformance::{
    BufferedReservation, Bytes, Clock, Error, Failure, KeyPrefix, Limits, ObjectKey, ObjectMeta,
    ObjectStore, PutMode, PutOptions, ReleaseOutcome, Reservation, Result, StoreFactory,
    StoreStats, SuiteConfig, async_trait, check,
};
use gos_store_memory::MemoryStore;

/// How a [`Broken`] store misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `delete` says true but keeps the value.
    LosesDeletes,
    /// An overwrite of an existing key is acknowledged but the old value stays.
    StaleAfterOverwrite,
    /// Limits are reported but not enforced.
    IgnoresLimits,
    /// A release deletes the object when one release is still expected.
    DeletesEarly,
    /// Leases are accepted and ignored: nothing ever expires.
    NeverExpires,
    /// A reservation checks the room but charges nothing.
    OverAdmits,
    /// `stats().bytes` counts live reservations too.
    ReservedInStatsBytes,
    /// An overwrite of an equal-sized value rewrites the old buffer in place.
    InPlaceOverwrite,
    /// `Create` is a get then a put, with no await between.
    CreateGetThenPut,
    /// `StoreFull.requested` on an overwrite is the growth, not the new value's size.
    RequestsGrowth,
    /// `StoreFull.available` on an overwrite leaves out the old value's size.
    AvailableWithoutOld,
    /// Values are stored with a 24-bit length.
    Truncates24Bits,
}

/// A buffer a broken store rewrites under its readers' feet.
struct Cell(UnsafeCell<Box<[u8]>>);

// SAFETY: only the `InPlaceOverwrite` store writes through the cell, deliberately racing its
// readers: that is the bug the suite must catch. The suite's reads of a held value and that
// store's writes happen one after the other (the state machine and the scenario that catch
// it are sequential), never at once.
unsafe impl Sync for Cell {}

struct Owner(Arc<Cell>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see `Cell`: no write runs while this slice is read.
        unsafe { &*self.0.0.get() }
    }
}

#[derive(Debug)]
struct Broken {
    inner: MemoryStore,
    limits: Limits,
    fault: Fault,
    cells: Mutex<HashMap<ObjectKey, Arc<Cell>>>,
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cell")
    }
}

impl Broken {
    fn in_place(&self, key: &ObjectKey, value: &Bytes) -> bool {
        let cells = self.cells.lock().expect("cells");
        let Some(cell) = cells.get(key) else {
            return false;
        };
        // SAFETY: see `Cell`: the bug itself, a write while no slice of the cell is read.
        let buf: &mut Box<[u8]> = unsafe { &mut *cell.0.get() };
        if buf.len() != value.len() {
            return false;
        }
        buf.copy_from_slice(value);
        true
    }

    async fn put_in_place(
        &self,
        key: &ObjectKey,
        value: Bytes,
        options: &PutOptions,
    ) -> Result<()> {
        if options.mode == PutMode::Overwrite
            && self.inner.head(key).await?.is_some()
            && self.in_place(key, &value)
        {
            return Ok(());
        }
        let cell = Arc::new(Cell(UnsafeCell::new(value.to_vec().into_boxed_slice())));
        self.inner
            .put_opts(key, Bytes::from_owner(Owner(Arc::clone(&cell))), options)
            .await?;
        self.cells.lock().expect("cells").insert(key.clone(), cell);
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Broken {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        let old = self.inner.head(key).await?.map(|m| m.size);
        match self.fault {
            Fault::StaleAfterOverwrite if options.mode == PutMode::Overwrite && old.is_some() => {
                return Ok(());
            }
            Fault::NeverExpires => {
                return self
                    .inner
                    .put_opts(key, value, &options.with_lease(None))
                    .await;
            }
            Fault::InPlaceOverwrite => return self.put_in_place(key, value, options).await,
            Fault::CreateGetThenPut if options.mode == PutMode::Create => {
                if self.inner.get(key).await?.is_some() {
                    return Err(Error::AlreadyExists { key: key.clone() });
                }
                return self
                    .inner
                    .put_opts(key, value, &options.mode(PutMode::Overwrite))
                    .await;
            }
            Fault::Truncates24Bits => {
                let len = value.len() & 0xFF_FFFF;
                return self.inner.put_opts(key, value.slice(..len), options).await;
            }
            _ => {}
        }
        let len = value.len() as u64;
        match self.inner.put_opts(key, value, options).await {
            Err(Error::StoreFull {
                requested,
                available,
            }) if old.is_some() => {
                let old = old.unwrap_or(0);
                Err(match self.fault {
                    Fault::RequestsGrowth => Error::StoreFull {
                        requested: requested.saturating_sub(old),
                        available,
                    },
                    Fault::AvailableWithoutOld => Error::StoreFull {
                        requested: len,
                        available: available.saturating_sub(old),
                    },
                    _ => Error::StoreFull {
                        requested,
                        available,
                    },
                })
            }
            other => other,
        }
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        let outcome = self.inner.release(key).await?;
        if self.fault == Fault::DeletesEarly
            && matches!(outcome, ReleaseOutcome::Remaining(n) if n.get() == 1)
        {
            self.inner.delete(key).await?;
        }
        Ok(outcome)
    }
    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        self.inner.delete_rounds_before(fed_id, round).await
    }
    async fn sweep(&self) -> Result<usize> {
        self.inner.sweep().await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        if self.fault == Fault::LosesDeletes {
            return Ok(self.inner.get(key).await?.is_some());
        }
        self.inner.delete(key).await
    }
    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        self.inner.keys_with_prefix(prefix).await
    }
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        self.inner.delete_prefix(prefix).await
    }
    async fn len(&self) -> Result<usize> {
        self.inner.len().await
    }
    async fn stats(&self) -> Result<StoreStats> {
        let mut stats = self.inner.stats().await?;
        stats.capacity_bytes = self.limits.capacity_bytes;
        if self.fault == Fault::ReservedInStatsBytes {
            stats.bytes += stats.reserved;
        }
        Ok(stats)
    }
    fn limits(&self) -> Limits {
        self.limits
    }
    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        if self.fault == Fault::OverAdmits {
            self.limits.check_value_size(len as u64)?;
            let available = self.inner.stats().await?.available();
            if len as u64 > available {
                return Err(Error::StoreFull {
                    requested: len as u64,
                    available,
                });
            }
            return Ok(Box::new(BufferedReservation::new(self, key, len, options)));
        }
        self.inner.reserve(key, len, options).await
    }
}

struct BrokenFactory(Fault);

impl BrokenFactory {
    fn build(&self, limits: Limits, clock: Option<Arc<dyn Clock>>) -> Arc<Broken> {
        let inner_limits = if self.0 == Fault::IgnoresLimits {
            Limits::UNLIMITED
        } else {
            limits
        };
        let mut inner = MemoryStore::new(inner_limits);
        if let Some(clock) = clock {
            inner = inner.with_clock(clock);
        }
        Arc::new(Broken {
            inner,
            limits,
            fault: self.0,
            cells: Mutex::default(),
        })
    }
}

#[async_trait]
impl StoreFactory for BrokenFactory {
    type Store = Broken;
    async fn create(&self, limits: Limits) -> Result<Arc<Broken>> {
        Ok(self.build(limits, None))
    }
    async fn create_with_clock(
        &self,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Arc<Broken>>> {
        Ok(Some(self.build(limits, Some(clock))))
    }
}

/// Runs the named tests of the suite against a store with `fault`.
fn failures_of(fault: Fault, config: SuiteConfig, tests: &[&str]) -> Vec<Failure> {
    let failures = check(BrokenFactory(fault), &config.only(tests.iter().copied()));
    for f in &failures {
        eprintln!("{fault:?} caught by {}", f.test);
    }
    failures
}

/// Asserts that every one of `tests` catches `fault`.
#[track_caller]
fn assert_caught(fault: Fault, config: SuiteConfig, tests: &[&str]) -> Vec<Failure> {
    let failures = failures_of(fault, config, tests);
    for test in tests {
        assert!(
            failures.iter().any(|f| f.test == *test),
            "{fault:?} was not caught by {test}: {failures:?}"
        );
    }
    failures
}

fn config() -> SuiteConfig {
    SuiteConfig::default().big_value_size(1 << 20)
}

#[test]
fn a_store_that_loses_deletes_is_caught() {
    assert_caught(
        Fault::LosesDeletes,
        config(),
        &["state_machine", "held_bytes_survive_delete_and_overwrite"],
    );
}

#[test]
fn a_store_that_returns_stale_values_after_overwrite_is_caught() {
    assert_caught(
        Fault::StaleAfterOverwrite,
        config(),
        &["state_machine", "concurrent_writers_and_readers"],
    );
}

#[test]
fn a_store_that_ignores_limits_is_caught_with_a_reduced_replayable_sequence() {
    let failures = assert_caught(
        Fault::IgnoresLimits,
        config(),
        &["state_machine", "limit_errors_change_nothing"],
    );
    let sm = failures
        .iter()
        .find(|f| f.test == "state_machine")
        .expect("caught");
    assert!(
        sm.message.contains("reduced failing sequence"),
        "{}",
        sm.message
    );
    assert!(
        sm.message.contains("GOS_CONFORMANCE_SEED="),
        "{}",
        sm.message
    );
}

#[test]
fn a_store_that_deletes_before_the_last_release_is_caught() {
    assert_caught(
        Fault::DeletesEarly,
        config(),
        &[
            "state_machine",
            "release_counts_down_then_deletes",
            "concurrent_releases_delete_exactly_once",
        ],
    );
}

#[test]
fn a_store_that_never_expires_is_caught() {
    assert_caught(
        Fault::NeverExpires,
        config(),
        &[
            "state_machine",
            "expired_object_disappears_and_space_returns",
        ],
    );
}

#[test]
fn a_store_that_over_admits_reservations_is_caught() {
    assert_caught(
        Fault::OverAdmits,
        config(),
        &[
            "state_machine",
            "reservations_show_in_stats",
            "reservations_never_over_admit",
        ],
    );
}

#[test]
fn a_store_that_counts_reservations_in_stats_bytes_is_caught() {
    assert_caught(
        Fault::ReservedInStatsBytes,
        config(),
        &[
            "state_machine",
            "reservations_show_in_stats",
            "limit_error_fields_on_overwrite",
        ],
    );
}

#[test]
fn a_store_that_overwrites_equal_sizes_in_place_is_caught() {
    assert_caught(
        Fault::InPlaceOverwrite,
        config(),
        &["state_machine", "held_values_survive_equal_size_overwrite"],
    );
}

#[test]
fn a_store_whose_create_is_get_then_put_is_caught() {
    assert_caught(
        Fault::CreateGetThenPut,
        config(),
        &["create_race_has_one_winner"],
    );
}

#[test]
fn a_store_that_reports_the_growth_as_requested_is_caught() {
    assert_caught(
        Fault::RequestsGrowth,
        config(),
        // The scenario catches it every run; the state machine only when it happens to
        // generate an overwrite over capacity, so it is not asserted.
        &["limit_error_fields_on_overwrite"],
    );
}

#[test]
fn a_store_that_reports_available_without_the_old_value_is_caught() {
    assert_caught(
        Fault::AvailableWithoutOld,
        config(),
        // The scenario catches it every run; the state machine only when it happens to
        // generate an overwrite over capacity, so it is not asserted.
        &["limit_error_fields_on_overwrite"],
    );
}

#[test]
fn a_store_with_a_24_bit_length_is_caught_in_the_multi_handle_run() {
    assert_caught(
        Fault::Truncates24Bits,
        config().handles(3),
        &["values_cross_length_boundaries"],
    );
}
