//! `RemoteStore` over loopback QUIC against the whole `gos-conformance` suite: every case gets
//! a fresh `MemoryStore` behind a fresh gateway, and a reopened handle is a second client with
//! its own connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use gos_conformance::{StoreFactory, SuiteConfig};
use gos_gateway::{Gateway, RemoteStore};
use gos_store::{
    Clock, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutOptions, ReleaseOutcome,
    Reservation, Result, StoreStats,
};
use gos_store_memory::MemoryStore;

/// A `RemoteStore` that keeps its gateway (and the store behind it) alive.
#[derive(Debug)]
struct ThroughGateway {
    remote: RemoteStore,
    _gateway: Arc<Gateway>,
    /// The clock of the served store, which clients read leases with too.
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl ObjectStore for ThroughGateway {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        self.remote.put_opts(key, value, options).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        self.remote.get(key).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.remote.head(key).await
    }
    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        self.remote.release(key).await
    }
    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        self.remote.delete_rounds_before(fed_id, round).await
    }
    async fn sweep(&self) -> Result<usize> {
        self.remote.sweep().await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        self.remote.delete(key).await
    }
    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        self.remote.keys_with_prefix(prefix).await
    }
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        self.remote.delete_prefix(prefix).await
    }
    async fn len(&self) -> Result<usize> {
        self.remote.len().await
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.remote.stats().await
    }
    fn limits(&self) -> Limits {
        self.remote.limits()
    }
    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        self.remote.reserve(key, len, options).await
    }
}

struct Remote {
    fed: Fed,
}

impl Remote {
    async fn client(
        &self,
        gateway: &Arc<Gateway>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<ThroughGateway>> {
        let mut config = self.fed.client("client", gateway);
        config.clock = Arc::clone(&clock);
        let remote = RemoteStore::connect(config).await?;
        Ok(Arc::new(ThroughGateway {
            remote,
            _gateway: gateway.clone(),
            clock,
        }))
    }

    async fn serve(&self, limits: Limits, clock: Arc<dyn Clock>) -> Result<Arc<ThroughGateway>> {
        let store = Arc::new(MemoryStore::new(limits).with_clock(Arc::clone(&clock)));
        let mut config = self.fed.gateway_config("server", &["client"]);
        config.clock = Arc::clone(&clock);
        let gateway = Arc::new(Gateway::start(config, store).await?);
        self.client(&gateway, clock).await
    }
}

#[async_trait]
impl StoreFactory for Remote {
    type Store = ThroughGateway;

    async fn create(&self, limits: Limits) -> Result<Arc<ThroughGateway>> {
        self.serve(limits, gos_store::system_clock()).await
    }

    async fn create_with_clock(
        &self,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Arc<ThroughGateway>>> {
        Ok(Some(self.serve(limits, clock).await?))
    }

    async fn reopen(&self, store: &Arc<ThroughGateway>) -> Result<Arc<ThroughGateway>> {
        self.client(&store._gateway, Arc::clone(&store.clock)).await
    }
}

fn config() -> SuiteConfig {
    // Each case starts a gateway and its clients, so this suite runs a tenth of
    // `GOS_CONFORMANCE_CASES` (set by `cargo xtask soak`), and 16 cases in the normal tests.
    let config = SuiteConfig::default();
    match std::env::var("GOS_CONFORMANCE_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(cases) => config.cases((cases / 10).max(16)),
        None => config.cases(16).tasks(4),
    }
}

#[test]
fn remote_store_conforms_over_loopback_quic() {
    gos_conformance::run(
        Remote { fed: Fed::new() },
        config()
            .handles(2)
            .big_value_size(16 << 20)
            .require_clock(true)
            .race_rounds(40),
    );
}
