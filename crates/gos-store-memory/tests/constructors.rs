//! The constructors say what they build (checks that kill surviving mutants; see
//! docs/conformance.md).

use gos_store::{Limits, ObjectStore};
use gos_store_memory::MemoryStore;

#[test]
fn unlimited_and_default_enforce_the_limits_they_name() {
    assert_eq!(MemoryStore::unlimited().limits(), Limits::UNLIMITED);
    assert_eq!(MemoryStore::default().limits(), Limits::default());
    let limits = Limits::with_capacity(1234).max_entries(7);
    assert_eq!(MemoryStore::new(limits).limits(), limits);
}
