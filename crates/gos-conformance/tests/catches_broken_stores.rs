//! The suite must be able to fail: each deliberately broken store here is caught.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gos_conformance::{Failure, StoreFactory, SuiteConfig, check};
use gos_store::{
    BufferedReservation, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutMode,
    PutOptions, ReleaseOutcome, Reservation, Result, StoreStats,
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
}

#[derive(Debug)]
struct Broken {
    inner: MemoryStore,
    limits: Limits,
    fault: Fault,
}

#[async_trait]
impl ObjectStore for Broken {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        if self.fault == Fault::StaleAfterOverwrite
            && options.mode == PutMode::Overwrite
            && self.inner.get(key).await?.is_some()
        {
            return Ok(());
        }
        self.inner.put_opts(key, value, options).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        self.inner.release(key).await
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
        self.limits.check_value_size(len as u64)?;
        Ok(Box::new(BufferedReservation::new(self, key, len, options)))
    }
}

struct BrokenFactory(Fault);

#[async_trait]
impl StoreFactory for BrokenFactory {
    type Store = Broken;
    async fn create(&self, limits: Limits) -> Result<Arc<Broken>> {
        let inner_limits = if self.0 == Fault::IgnoresLimits {
            Limits::UNLIMITED
        } else {
            limits
        };
        Ok(Arc::new(Broken {
            inner: MemoryStore::new(inner_limits),
            limits,
            fault: self.0,
        }))
    }
}

fn failures_of(fault: Fault) -> Vec<Failure> {
    let config = SuiteConfig::default().cases(256).big_value_size(1 << 20);
    let failures = check(BrokenFactory(fault), &config);
    for f in &failures {
        eprintln!("{fault:?} caught by {}", f.test);
    }
    failures
}

fn caught_by(failures: &[Failure], test: &str) -> bool {
    failures.iter().any(|f| f.test == test)
}

#[test]
fn a_store_that_loses_deletes_is_caught() {
    let failures = failures_of(Fault::LosesDeletes);
    assert!(caught_by(&failures, "state_machine"), "{failures:?}");
    assert!(caught_by(
        &failures,
        "held_bytes_survive_delete_and_overwrite"
    ));
}

#[test]
fn a_store_that_returns_stale_values_after_overwrite_is_caught() {
    let failures = failures_of(Fault::StaleAfterOverwrite);
    assert!(caught_by(&failures, "state_machine"), "{failures:?}");
    assert!(caught_by(&failures, "concurrent_writers_and_readers"));
}

#[test]
fn a_store_that_ignores_limits_is_caught() {
    let failures = failures_of(Fault::IgnoresLimits);
    assert!(caught_by(&failures, "state_machine"), "{failures:?}");
    assert!(caught_by(&failures, "limit_errors_change_nothing"));
    // The state machine's report is the shrunk sequence, short enough to read.
    let sm = failures.iter().find(|f| f.test == "state_machine").unwrap();
    assert!(
        sm.message.contains("minimal failing sequence"),
        "{}",
        sm.message
    );
}
