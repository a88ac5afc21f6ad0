//! The Prometheus endpoint of `gos serve` (`[metrics] listen`): the served store's counters
//! (kept by [`crate::instrument::Instrumented`]), its stats and the gateway's counters, as
//! OpenMetrics text at `GET /metrics`, with `prometheus-client` and a `hyper` HTTP/1 server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use gos::ObjectStore;
use gos::gateway::{Gateway, GatewayStats};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the per-operation metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabels {
    pub(crate) op: &'static str,
}

/// Labels of the error counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub(crate) op: &'static str,
    pub(crate) kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

fn duration_histogram() -> Histogram {
    // 100 µs to about 26 s, each bucket 4 times the last.
    Histogram::new(exponential_buckets(0.000_1, 4.0, 10))
}

/// What the store wrapper counts: operations, bytes and errors by operation, durations,
/// reservations in flight.
#[derive(Debug)]
pub(crate) struct StoreMetrics {
    ops: Family<OpLabels, Counter>,
    bytes: Family<OpLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<OpLabels, Histogram, fn() -> Histogram>,
    pub(crate) reservations: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            ops: Family::default(),
            bytes: Family::default(),
            errors: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            reservations: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    /// One operation done: counted, timed, its bytes added.
    pub(crate) fn done(&self, op: &'static str, bytes: u64, elapsed: Duration) {
        let labels = OpLabels { op };
        self.ops.get_or_create(&labels).inc();
        if bytes > 0 {
            self.bytes.get_or_create(&labels).inc_by(bytes);
        }
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    #[cfg(test)]
    pub(crate) fn ops_family(&self) -> Family<OpLabels, Counter> {
        self.ops.clone()
    }

    /// One operation failed with an error of `kind`.
    pub(crate) fn failed(&self, op: &'static str, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { op, kind }).inc();
    }
}

/// Everything the endpoint exports.
#[derive(Debug)]
struct Exported {
    registry: Registry,
    store_bytes: Gauge,
    store_entries: Gauge,
    store_capacity: Gauge,
    store_reserved: Gauge,
    connections: Counter,
    requests: Family<ResultLabels, Counter>,
    gateway_bytes: Family<DirectionLabels, Counter>,
    resumes: Family<ResultLabels, Counter>,
    /// The gateway's counters at the last scrape (they are exported as increments).
    last: Mutex<GatewayStats>,
}

impl Exported {
    fn new(store: &Arc<StoreMetrics>) -> Self {
        let mut registry = Registry::with_prefix("gos");
        let g = Gauge::<i64>::default;
        let (store_bytes, store_entries, store_capacity, store_reserved) = (g(), g(), g(), g());
        registry.register("store_bytes", "Bytes of live values", store_bytes.clone());
        registry.register("store_entries", "Keys held", store_entries.clone());
        registry.register(
            "store_capacity_bytes",
            "The store's capacity",
            store_capacity.clone(),
        );
        registry.register(
            "store_reserved_bytes",
            "Bytes held by live reservations (uploads in flight)",
            store_reserved.clone(),
        );
        registry.register(
            "store_operations",
            "Store operations served, by operation",
            store.ops.clone(),
        );
        registry.register(
            "store_value_bytes",
            "Value bytes moved, by operation (put in, get out)",
            store.bytes.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store operations, by operation and error kind",
            store.errors.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Time each store operation took (a reserved put: until its commit)",
            store.durations.clone(),
        );
        registry.register(
            "store_reservations_in_flight",
            "Reservations made and not yet committed or dropped",
            store.reservations.clone(),
        );
        let connections = Counter::default();
        let requests = Family::<ResultLabels, Counter>::default();
        let gateway_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "gateway_connections",
            "Connections the gateway accepted",
            connections.clone(),
        );
        registry.register(
            "gateway_requests",
            "Requests the gateway answered, by result",
            requests.clone(),
        );
        registry.register(
            "gateway_bytes",
            "Object bytes through the gateway, by direction",
            gateway_bytes.clone(),
        );
        let resumes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "gateway_resumes",
            "Puts cut by their connection: resumed, resumes refused, abandoned past the grace period",
            resumes.clone(),
        );
        Exported {
            registry,
            store_bytes,
            store_entries,
            store_capacity,
            store_reserved,
            connections,
            requests,
            gateway_bytes,
            resumes,
            last: Mutex::new(GatewayStats::default()),
        }
    }

    /// Brings the gauges and the gateway's counters up to date, then encodes everything.
    async fn scrape(&self, store: &dyn ObjectStore, gateway: &Weak<Gateway>) -> Result<String> {
        let stats = store.stats().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.store_bytes.set(as_i64(stats.bytes));
        self.store_entries.set(as_i64(stats.entries as u64));
        self.store_capacity.set(as_i64(stats.capacity_bytes));
        self.store_reserved.set(as_i64(stats.reserved));
        if let Some(gateway) = gateway.upgrade() {
            let now = gateway.stats();
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let delta = |new: u64, old: u64| new.saturating_sub(old);
            self.connections
                .inc_by(delta(now.connections, last.connections));
            self.requests
                .get_or_create(&ResultLabels { result: "ok" })
                .inc_by(delta(now.requests_ok, last.requests_ok));
            self.requests
                .get_or_create(&ResultLabels { result: "failed" })
                .inc_by(delta(now.requests_failed, last.requests_failed));
            self.gateway_bytes
                .get_or_create(&DirectionLabels { direction: "in" })
                .inc_by(delta(now.bytes_in, last.bytes_in));
            self.gateway_bytes
                .get_or_create(&DirectionLabels { direction: "out" })
                .inc_by(delta(now.bytes_out, last.bytes_out));
            for (result, new, old) in [
                ("resumed", now.resumed, last.resumed),
                ("refused", now.resumes_refused, last.resumes_refused),
                ("abandoned", now.abandoned, last.abandoned),
            ] {
                self.resumes
                    .get_or_create(&ResultLabels { result })
                    .inc_by(delta(new, old));
            }
            *last = now;
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .context("encoding the metrics")?;
        Ok(text)
    }
}

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` (TCP) and serves `GET /metrics` until dropped.
    pub(crate) async fn start(
        addr: SocketAddr,
        metrics: &Arc<StoreMetrics>,
        store: Arc<dyn ObjectStore>,
        gateway: Weak<Gateway>,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
        let addr = listener
            .local_addr()
            .context("the metrics endpoint's address")?;
        let exported = Arc::new(Exported::new(metrics));
        // A scrape is small: a few at a time, each connection bounded in time.
        let slots = Arc::new(tokio::sync::Semaphore::new(8));
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("metrics endpoint: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    tracing::debug!("metrics endpoint: busy, dropping a connection from {peer}");
                    continue;
                };
                let (exported, store, gateway) =
                    (Arc::clone(&exported), Arc::clone(&store), gateway.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (exported, store, gateway) =
                            (Arc::clone(&exported), Arc::clone(&store), gateway.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                respond(req, &exported, store.as_ref(), &gateway).await,
                            )
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    match tokio::time::timeout(Duration::from_secs(30), conn).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!("metrics endpoint: {peer}: {e}"),
                        Err(_) => tracing::debug!("metrics endpoint: {peer}: timed out"),
                    }
                    drop(permit);
                });
            }
        });
        Ok(MetricsServer { addr, task })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    exported: &Exported,
    store: &dyn ObjectStore,
    gateway: &Weak<Gateway>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    };
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at GET /metrics\n".to_owned(),
        );
    }
    match exported.scrape(store, gateway).await {
        Ok(text) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n"),
        ),
    }
}
