//! `MemoryStore` against the whole `gos-conformance` suite (256 state-machine cases by default).

use std::sync::Arc;

use gos_conformance::{StoreFactory, SuiteConfig};
use gos_store::{Limits, Result};
use gos_store_memory::MemoryStore;

struct Memory;

#[async_trait::async_trait]
impl StoreFactory for Memory {
    type Store = MemoryStore;
    async fn create(&self, limits: Limits) -> Result<Arc<MemoryStore>> {
        Ok(Arc::new(MemoryStore::new(limits)))
    }
}

#[test]
fn memory_store_conforms() {
    gos_conformance::run(Memory, SuiteConfig::default());
}

#[test]
fn memory_store_conforms_through_several_handles() {
    gos_conformance::run(
        Memory,
        SuiteConfig::default().handles(3).big_value_size(1 << 20),
    );
}
