//! `ShmStore` against the whole `gos-conformance` suite, through one handle and through three
//! handles opened separately on each store (each with its own mapping and process slot).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gos_conformance::{Clock, StoreFactory, SuiteConfig};
use gos_store::{Limits, Result};
use gos_store_shm::{ShmConfig, ShmStore};

/// Creates a uniquely named store per call and unlinks its name at once: the memory goes
/// with the last handle, so the suite's hundreds of stores never pile up in /dev/shm.
struct Shm;

#[async_trait::async_trait]
impl StoreFactory for Shm {
    type Store = ShmStore;

    async fn create(&self, limits: Limits) -> Result<Arc<ShmStore>> {
        Ok(Arc::new(create(limits)?))
    }

    async fn create_with_clock(
        &self,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Arc<ShmStore>>> {
        Ok(Some(Arc::new(create(limits)?.with_clock(clock))))
    }

    async fn reopen(&self, store: &Arc<ShmStore>) -> Result<Arc<ShmStore>> {
        // A reopened handle keeps the handle's clock (`reopen` copies it).
        Ok(Arc::new(store.reopen()?))
    }
}

fn create(limits: Limits) -> Result<ShmStore> {
    {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "conformance-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut config = ShmConfig::new(limits);
        if limits.capacity_bytes > 1 << 30 {
            // Unlimited stores: an arena of 64 MiB is plenty for what the suite puts there.
            config = config.arena_bytes(64 << 20);
        }
        let store = ShmStore::create(&name, config)?;
        ShmStore::remove(&name)?;
        Ok(store)
    }
}

#[test]
fn shm_store_conforms() {
    gos_conformance::run(Shm, SuiteConfig::default().require_clock(true));
}

#[test]
fn shm_store_conforms_through_several_handles() {
    gos_conformance::run(
        Shm,
        SuiteConfig::default()
            .handles(3)
            .big_value_size(1 << 20)
            .require_clock(true),
    );
}
