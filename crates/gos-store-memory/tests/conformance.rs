//! `MemoryStore` against the whole `gos-conformance` suite (256 state-machine cases by
//! default), on an injected manual clock, through one handle and through three.

use std::sync::Arc;

use gos_conformance::{Clock, Limits, Result, StoreFactory, SuiteConfig, async_trait};
use gos_store_memory::MemoryStore;

struct Memory;

#[async_trait]
impl StoreFactory for Memory {
    type Store = MemoryStore;
    async fn create(&self, limits: Limits) -> Result<Arc<MemoryStore>> {
        Ok(Arc::new(MemoryStore::new(limits)))
    }
    async fn create_with_clock(
        &self,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Arc<MemoryStore>>> {
        Ok(Some(Arc::new(MemoryStore::new(limits).with_clock(clock))))
    }
}

#[test]
fn memory_store_conforms() {
    gos_conformance::run(Memory, SuiteConfig::default().require_clock(true));
}

#[test]
fn memory_store_conforms_through_several_handles() {
    gos_conformance::run(
        Memory,
        SuiteConfig::default()
            .handles(3)
            .big_value_size(1 << 20)
            .require_clock(true),
    );
}
