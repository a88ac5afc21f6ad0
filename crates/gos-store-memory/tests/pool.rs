//! Reservations reuse warm buffers, but never one a reader still holds.

use bytes::Bytes;
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
use gos_store_memory::MemoryStore;

const LEN: usize = 1 << 20;

async fn write(store: &MemoryStore, key: &ObjectKey, byte: u8) -> *const u8 {
    let mut r = store
        .reserve(key, LEN, &PutOptions::new())
        .await
        .expect("reserve");
    r.as_mut_slice().fill(byte);
    let ptr = r.as_mut_slice().as_ptr();
    r.commit().await.expect("commit");
    ptr
}

#[tokio::test]
async fn a_buffer_comes_back_only_after_its_last_reader() {
    let store = MemoryStore::new(Limits::with_capacity(64 << 20));
    let key = ObjectKey::new("pool/a").unwrap();
    let first = write(&store, &key, 1).await;
    let held: Bytes = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        held.as_ptr(),
        first,
        "a get of a reserved value is zero-copy"
    );
    assert!(store.delete(&key).await.unwrap());
    assert_eq!(store.pooled_bytes(), 0, "a held value is not pooled");

    // A new reservation must not get the held buffer.
    let second = write(&store, &key, 2).await;
    assert_ne!(second, first);
    assert!(held.iter().all(|&b| b == 1), "the held value changed");

    // Once the reader drops it, the buffer is reused: no fresh pages.
    drop(held);
    assert_eq!(store.pooled_bytes(), LEN as u64);
    let key_b = ObjectKey::new("pool/b").unwrap();
    let third = write(&store, &key_b, 3).await;
    assert_eq!(third, first);
    assert!(
        store
            .get(&key_b)
            .await
            .unwrap()
            .unwrap()
            .iter()
            .all(|&b| b == 3)
    );
    assert_eq!(store.stats().await.unwrap().bytes, 2 * LEN as u64);
}

#[tokio::test]
async fn dropped_and_refused_reservations_return_their_buffers() {
    let store = MemoryStore::new(Limits::with_capacity(64 << 20));
    let key = ObjectKey::new("pool/c").unwrap();
    drop(
        store
            .reserve(&ObjectKey::new("pool/k").unwrap(), LEN, &PutOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(store.pooled_bytes(), LEN as u64);
    store.put(&key, Bytes::from_static(b"x")).await.unwrap();
    let r = store
        .reserve(&key, LEN, &PutOptions::create())
        .await
        .unwrap();
    assert_eq!(store.pooled_bytes(), 0);
    assert!(r.commit().await.is_err());
    assert_eq!(
        store.pooled_bytes(),
        LEN as u64,
        "a refused commit gives the buffer back"
    );
    store.trim_pool();
    assert_eq!(store.pooled_bytes(), 0);
    let unpooled = MemoryStore::new(Limits::with_capacity(64 << 20)).with_pool_bytes(0);
    drop(
        unpooled
            .reserve(&key, LEN, &PutOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(unpooled.pooled_bytes(), 0);
}
