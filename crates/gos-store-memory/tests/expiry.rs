//! Expired entries never hold room: a put that only fits once they are gone succeeds, even
//! when no operation has met them since they expired (found by the conformance suite's
//! `expired_object_disappears_and_space_returns`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gos_store::{Error, Limits, ManualClock, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
use gos_store_memory::MemoryStore;

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("valid key")
}

#[tokio::test]
async fn a_put_takes_the_room_and_entries_of_expired_objects() -> gos_store::Result<()> {
    let clock = ManualClock::new();
    let store = MemoryStore::new(Limits::with_capacity(100).max_entries(2))
        .with_clock(Arc::new(clock.clone()));
    let lease = PutOptions::new().lease(Duration::from_secs(1));
    store
        .put_opts(&key("a"), Bytes::from(vec![1; 60]), &lease)
        .await?;
    store
        .put_opts(&key("b"), Bytes::from(vec![2; 40]), &lease)
        .await?;
    // Before expiry the store is full, by bytes and by entries.
    assert!(matches!(
        store.put(&key("c"), Bytes::from(vec![3; 50])).await,
        Err(Error::StoreFull { .. } | Error::TooManyEntries { .. })
    ));
    clock.advance(Duration::from_secs(1));
    // Nothing has touched `a` or `b` since they expired.
    store.put(&key("c"), Bytes::from(vec![3; 100])).await?;
    assert_eq!(store.keys().await?, [key("c")]);
    let stats = store.stats().await?;
    assert_eq!((stats.entries, stats.bytes), (1, 100));
    Ok(())
}

#[tokio::test]
async fn a_commit_takes_the_entries_of_expired_objects() -> gos_store::Result<()> {
    let clock = ManualClock::new();
    let store = MemoryStore::new(Limits::with_capacity(100).max_entries(1))
        .with_clock(Arc::new(clock.clone()));
    let lease = PutOptions::new().lease(Duration::from_secs(1));
    store
        .put_opts(&key("a"), Bytes::from(vec![1; 10]), &lease)
        .await?;
    let mut r = store.reserve(&key("b"), 10, &PutOptions::new()).await?;
    r.as_mut_slice().fill(2);
    clock.advance(Duration::from_secs(1));
    r.commit().await?;
    assert_eq!(store.keys().await?, [key("b")]);
    Ok(())
}
