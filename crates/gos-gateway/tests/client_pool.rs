//! A `RemoteStore` receives objects into warm buffers: once a read value is dropped, the next
//! get of a similar size reuses its memory instead of faulting in fresh pages; a value still
//! held is never reused.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use gos_gateway::{Gateway, RemoteStore};
use gos_store::{ObjectKey, ObjectStore, ObjectStoreExt};

#[tokio::test]
async fn gets_reuse_the_buffers_of_dropped_values() {
    let fed = Fed::new();
    let gateway = Gateway::start(fed.gateway_config("server", &["client"]), memory(64 << 20))
        .await
        .unwrap();
    let remote = RemoteStore::connect(fed.client("client", &gateway))
        .await
        .unwrap();
    let (a, b) = (
        ObjectKey::new("pool/a").unwrap(),
        ObjectKey::new("pool/b").unwrap(),
    );
    remote
        .put(&a, Bytes::from(vec![1u8; 1 << 20]))
        .await
        .unwrap();
    remote
        .put(&b, Bytes::from(vec![2u8; 1 << 20]))
        .await
        .unwrap();

    let first = remote.get(&a).await.unwrap().unwrap();
    let held = first.as_ptr();
    // Held: a second get must land elsewhere.
    let second = remote.get(&b).await.unwrap().unwrap();
    assert_ne!(second.as_ptr(), held);
    assert!(first.iter().all(|&x| x == 1) && second.iter().all(|&x| x == 2));
    // Dropped: the next get reuses it.
    drop(first);
    let third = remote.get(&b).await.unwrap().unwrap();
    assert_eq!(
        third.as_ptr(),
        held,
        "the dropped value's buffer was not reused"
    );
    assert!(third.iter().all(|&x| x == 2));
    assert!(second.iter().all(|&x| x == 2), "a held value changed");
    gateway.shutdown().await;
}
