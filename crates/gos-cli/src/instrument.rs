//! [`Instrumented`]: an [`ObjectStore`] around another that logs every request at debug level
//! (operation, key or prefix, bytes, duration, outcome) and, when given [`StoreMetrics`],
//! counts it for the Prometheus endpoint. `gos serve` wraps the store it serves in one (so
//! every request the gateway makes of the store is logged and counted), and `gos store`
//! the store it opens. Every trait method is forwarded (the trait has no defaults, so the
//! compiler checks it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gos::store::{Result, async_trait};
use gos::{
    Bytes, Digest, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutOptions,
    ReleaseOutcome, Reservation, StoreError, StoreStats,
};

use crate::metrics::StoreMetrics;

/// A store whose requests are logged and, optionally, counted.
#[derive(Debug)]
pub(crate) struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    metrics: Option<Arc<StoreMetrics>>,
}

impl Instrumented {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, metrics: Option<Arc<StoreMetrics>>) -> Self {
        Instrumented { inner, metrics }
    }

    /// Logs and counts one finished request. `target` is the key or prefix (or empty);
    /// `bytes` the value bytes it moved.
    fn record<T>(
        &self,
        op: &'static str,
        target: &dyn std::fmt::Display,
        bytes: u64,
        started: Instant,
        result: &Result<T>,
    ) {
        self.record_outcome(op, target, bytes, started, result.as_ref().err());
    }

    fn record_outcome(
        &self,
        op: &'static str,
        target: &dyn std::fmt::Display,
        bytes: u64,
        started: Instant,
        error: Option<&StoreError>,
    ) {
        let elapsed = started.elapsed();
        match error {
            None => {
                tracing::debug!(
                    op = %op,
                    target = %target,
                    bytes,
                    ms = millis(elapsed),
                    "store request"
                );
                if let Some(m) = &self.metrics {
                    m.done(op, bytes, elapsed);
                }
            }
            Some(e) => {
                tracing::debug!(
                    op = %op,
                    target = %target,
                    ms = millis(elapsed),
                    error = %e,
                    "store request failed"
                );
                if let Some(m) = &self.metrics {
                    m.failed(op, error_kind(e));
                }
            }
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The `kind` label of an error.
pub(crate) fn error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::InvalidKey(_) => "invalid_key",
        StoreError::TooLarge { .. } => "too_large",
        StoreError::StoreFull { .. } => "full",
        StoreError::TooManyEntries { .. } => "too_many_entries",
        StoreError::AlreadyExists { .. } => "already_exists",
        StoreError::Timeout { .. } => "timeout",
        StoreError::Busy(_) => "busy",
        StoreError::PermissionDenied(_) => "permission_denied",
        StoreError::InvalidArgument(_) => "invalid_argument",
        StoreError::Corrupted(_) => "corrupted",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Backend { .. } => "backend",
        _ => "other",
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        let (len, started) = (value.len() as u64, Instant::now());
        let r = self.inner.put_opts(key, value, options).await;
        self.record("put", key, len, started, &r);
        r
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        let started = Instant::now();
        let r = self.inner.get(key).await;
        let len = match &r {
            Ok(Some(v)) => v.len() as u64,
            _ => 0,
        };
        self.record("get", key, len, started, &r);
        if let (Ok(None), Some(m)) = (&r, &self.metrics) {
            m.failed("get", "not_found");
        }
        r
    }

    async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
        let started = Instant::now();
        let r = self.inner.get_digested(key).await;
        let len = match &r {
            Ok(Some((v, _))) => v.len() as u64,
            _ => 0,
        };
        self.record("get", key, len, started, &r);
        if let (Ok(None), Some(m)) = (&r, &self.metrics) {
            m.failed("get", "not_found");
        }
        r
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let started = Instant::now();
        let r = self.inner.head(key).await;
        self.record("head", key, 0, started, &r);
        r
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        let started = Instant::now();
        let r = self.inner.delete(key).await;
        self.record("delete", key, 0, started, &r);
        r
    }

    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        let started = Instant::now();
        let r = self.inner.release(key).await;
        self.record("release", key, 0, started, &r);
        r
    }

    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        let started = Instant::now();
        let r = self.inner.keys_with_prefix(prefix).await;
        self.record("keys", prefix, 0, started, &r);
        r
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        let started = Instant::now();
        let r = self.inner.delete_prefix(prefix).await;
        self.record("delete_prefix", prefix, 0, started, &r);
        r
    }

    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        let started = Instant::now();
        let r = self.inner.delete_rounds_before(fed_id, round).await;
        self.record(
            "delete_rounds",
            &format_args!("{fed_id} before round {round}"),
            0,
            started,
            &r,
        );
        r
    }

    async fn sweep(&self) -> Result<usize> {
        let started = Instant::now();
        let r = self.inner.sweep().await;
        self.record("sweep", &"", 0, started, &r);
        r
    }

    async fn len(&self) -> Result<usize> {
        let started = Instant::now();
        let r = self.inner.len().await;
        self.record("len", &"", 0, started, &r);
        r
    }

    async fn stats(&self) -> Result<StoreStats> {
        let started = Instant::now();
        let r = self.inner.stats().await;
        self.record("stats", &"", 0, started, &r);
        r
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        let started = Instant::now();
        match self.inner.reserve(key, len, options).await {
            Ok(inner) => {
                tracing::debug!(op = %"reserve", target = %key, bytes = len, "store reservation");
                if let Some(m) = &self.metrics {
                    m.reservations.inc();
                }
                Ok(Box::new(InstrumentedReservation {
                    inner: Some(inner),
                    store: self,
                    started,
                }))
            }
            Err(e) => {
                self.record_outcome("put", key, 0, started, Some(&e));
                Err(e)
            }
        }
    }
}

/// A reservation of an [`Instrumented`] store: its commit is logged and counted as a put;
/// the in-flight gauge goes down when it is committed or dropped.
#[derive(Debug)]
struct InstrumentedReservation<'a> {
    inner: Option<Box<dyn Reservation + 'a>>,
    store: &'a Instrumented,
    started: Instant,
}

impl InstrumentedReservation<'_> {
    fn inner(&self) -> &(dyn Reservation + '_) {
        self.inner.as_deref().expect("present until commit")
    }
}

#[async_trait]
impl Reservation for InstrumentedReservation<'_> {
    fn len(&self) -> usize {
        self.inner().len()
    }

    fn key(&self) -> &ObjectKey {
        self.inner().key()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.inner
            .as_deref_mut()
            .expect("present until commit")
            .as_mut_slice()
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let inner = self.inner.take().expect("present until commit");
        let (key, len) = (inner.key().clone(), inner.len() as u64);
        let r = inner.commit().await;
        self.store.record("put", &key, len, self.started, &r);
        r
    }
}

impl Drop for InstrumentedReservation<'_> {
    fn drop(&mut self) {
        if let Some(m) = &self.store.metrics {
            m.reservations.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gos::{Limits as StoreLimits, MemoryStore, ObjectStoreExt};

    #[tokio::test]
    async fn forwards_and_counts() {
        let metrics = Arc::new(StoreMetrics::default());
        let store = Instrumented::new(
            Arc::new(MemoryStore::new(StoreLimits::with_capacity(1 << 20))),
            Some(Arc::clone(&metrics)),
        );
        let key = ObjectKey::new("f/n/round_1").unwrap();
        store.put(&key, Bytes::from_static(b"hello")).await.unwrap();
        let mut r = store
            .reserve(
                &ObjectKey::new("f/n/round_2").unwrap(),
                3,
                &PutOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(metrics.reservations.get(), 1);
        r.as_mut_slice().copy_from_slice(b"abc");
        r.commit().await.unwrap();
        assert_eq!(metrics.reservations.get(), 0);
        assert_eq!(store.get(&key).await.unwrap().unwrap(), "hello");
        assert!(
            store
                .get(&ObjectKey::new("f/x").unwrap())
                .await
                .unwrap()
                .is_none()
        );
        let dropped = store
            .reserve(
                &ObjectKey::new("f/n/round_3").unwrap(),
                3,
                &PutOptions::new(),
            )
            .await
            .unwrap();
        drop(dropped);
        assert_eq!(metrics.reservations.get(), 0);
        assert_eq!(store.len().await.unwrap(), 2);
        let too_big = store
            .put(
                &ObjectKey::new("f/big").unwrap(),
                Bytes::from(vec![0; 2 << 20]),
            )
            .await;
        assert!(too_big.is_err());

        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("ops", "", metrics_ops(&metrics));
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("ops_total{op=\"put\"} 2"), "{text}");
        assert!(text.contains("ops_total{op=\"get\"} 2"), "{text}");
    }

    fn metrics_ops(
        m: &StoreMetrics,
    ) -> prometheus_client::metrics::family::Family<
        crate::metrics::OpLabels,
        prometheus_client::metrics::counter::Counter,
    > {
        m.ops_family()
    }
}
