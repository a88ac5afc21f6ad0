//! The entry limit of a shared-memory store is what it says: reachable above 4096, and a full
//! store still takes overwrites (issue 10, defect 6).

use bytes::Bytes;
use gos_store::{Error, Limits, ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_shm::{ShmConfig, ShmStore};

fn k(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("key")
}

fn name(test: &str) -> String {
    format!("limits-{test}-{}", std::process::id())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Issue 10, defect 6: an entry limit above 4096 is reachable, and an overwrite of a store
/// holding its limit succeeds, while one more key is refused with the limit error.
#[test]
fn max_entries_above_4096_are_reachable_and_a_full_store_overwrites() {
    rt().block_on(async {
        let n = name("entries");
        let store = ShmStore::create(
            &n,
            ShmConfig::new(Limits::with_capacity(1 << 20).max_entries(5000)),
        )
        .expect("create");
        ShmStore::remove(&n).expect("remove");
        for i in 0..5000 {
            store
                .put(&k(&format!("f/n/k{i}")), Bytes::new())
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
        }
        store
            .put(&k("f/n/k4999"), Bytes::from_static(b"again"))
            .await
            .expect("an overwrite of a full store");
        let held = store.get(&k("f/n/k0")).await.expect("get").expect("some");
        store
            .put(&k("f/n/k0"), Bytes::from_static(b"pinned overwrite"))
            .await
            .expect("an overwrite while the old value is pinned");
        drop(held);
        assert!(matches!(
            store.put(&k("f/n/one-more"), Bytes::new()).await,
            Err(Error::TooManyEntries { max: 5000 })
        ));
        assert_eq!(store.len().await.expect("len"), 5000);
        store.check().expect("invariants");
    });
}
