//! `RedisStore` against the `gos-conformance` suite, on a real standalone `redis-server` and on
//! a real 3-master Redis Cluster started by the test (cases tuned to stay quick; more with
//! `GOS_CONFORMANCE_CASES`). On the cluster, small limits for the inline path force the
//! generated puts through the chunked staging and install.

mod common;

use std::sync::Arc;

use gos_conformance::{Clock, StoreFactory, SuiteConfig};
use gos_store::{Limits, Result};
use gos_store_redis::{RedisConfig, RedisStore};

struct Redis {
    base: RedisConfig,
}

impl Redis {
    fn config(&self, limits: Limits) -> RedisConfig {
        self.base
            .clone()
            .namespace(common::fresh_namespace())
            .limits(limits)
    }
}

#[async_trait::async_trait]
impl StoreFactory for Redis {
    type Store = RedisStore;

    async fn create(&self, limits: Limits) -> Result<Arc<RedisStore>> {
        Ok(Arc::new(RedisStore::open(self.config(limits)).await?))
    }

    async fn create_with_clock(
        &self,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Arc<RedisStore>>> {
        Ok(Some(Arc::new(
            RedisStore::open_with_clock(self.config(limits), clock).await?,
        )))
    }

    async fn reopen(&self, store: &Arc<RedisStore>) -> Result<Arc<RedisStore>> {
        Ok(Arc::new(store.reopen().await?))
    }
}

fn cases() -> u32 {
    std::env::var("GOS_CONFORMANCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

#[test]
fn redis_store_conforms_on_a_standalone_server() {
    let redis = common::standalone();
    let base = RedisConfig::new(redis.urls.clone()).buckets(8);
    gos_conformance::run(
        Redis { base },
        SuiteConfig::default()
            .cases(cases())
            .handles(2)
            .big_value_size(16 << 20)
            .require_clock(true),
    );
}

#[test]
fn redis_store_conforms_on_a_cluster_with_chunked_puts() {
    let redis = common::cluster();
    let base = RedisConfig::new(redis.urls.clone())
        .buckets(16)
        .inline_max(48)
        .chunk_size(4096);
    gos_conformance::run(
        Redis { base },
        SuiteConfig::default()
            .cases(cases())
            .handles(2)
            .big_value_size(256 << 10)
            .require_clock(true),
    );
}
