//! RemoteStore against a gateway on 127.0.0.1: every operation, typed errors, reconnects.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::*;
use gos_gateway::RemoteStore;
use gos_store::{Error, KeyPrefix, Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_operation_works_through_the_gateway() {
    let fed = Fed::new();
    let store = memory(1 << 30);
    let gw = fed.gateway("alpha", &["client-1"], store.clone()).await;
    let remote = RemoteStore::connect(fed.client("client-1", &gw))
        .await
        .unwrap();
    assert_eq!(remote.limits(), store.limits());
    assert_eq!(remote.cluster(), "alpha");

    let a = ObjectKey::new("fed/n1/round_1").unwrap();
    let b = ObjectKey::new("fed/n2/round_1").unwrap();
    let c = ObjectKey::new("other/n1/round_1").unwrap();
    remote.put(&a, Bytes::from_static(b"one")).await.unwrap();
    remote.put(&b, Bytes::new()).await.unwrap();
    remote.put(&c, pattern(3 << 20, 1)).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(remote.get(&b).await.unwrap(), Some(Bytes::new()));
    assert_eq!(remote.get(&c).await.unwrap(), Some(pattern(3 << 20, 1)));
    assert_eq!(
        remote.get(&ObjectKey::new("x").unwrap()).await.unwrap(),
        None
    );
    assert_eq!(remote.len().await.unwrap(), 3);
    assert_eq!(
        remote.keys().await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );
    let fed_prefix = KeyPrefix::new("fed").unwrap();
    assert_eq!(
        remote.keys_with_prefix(&fed_prefix).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(remote.stats().await.unwrap(), store.stats().await.unwrap());
    assert!(matches!(
        remote.put_mode(&a, Bytes::from_static(b"two"), PutMode::Create).await,
        Err(Error::AlreadyExists { key }) if key == a
    ));
    assert!(remote.delete(&a).await.unwrap());
    assert!(!remote.delete(&a).await.unwrap());
    assert_eq!(remote.delete_prefix(&fed_prefix).await.unwrap(), 1);
    assert_eq!(remote.len().await.unwrap(), 1);
    assert!(!remote.is_empty().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_errors_come_back_typed_and_nothing_is_sent_for_nothing() {
    let fed = Fed::new();
    let store = std::sync::Arc::new(gos_store_memory::MemoryStore::new(
        Limits::with_capacity(1 << 20)
            .max_value_size(512 << 10)
            .max_entries(2),
    ));
    let gw = fed.gateway("alpha", &["client-1"], store.clone()).await;
    let remote = RemoteStore::connect(fed.client("client-1", &gw))
        .await
        .unwrap();
    let key = |i: u32| ObjectKey::new(format!("k/{i}")).unwrap();
    assert!(matches!(
        remote.put(&key(0), pattern(600 << 10, 0)).await,
        Err(Error::TooLarge { size, max }) if size == 600 << 10 && max == 512 << 10
    ));
    remote.put(&key(1), pattern(500 << 10, 0)).await.unwrap();
    remote.put(&key(2), pattern(500 << 10, 0)).await.unwrap();
    assert!(matches!(
        remote.put(&key(3), pattern(100 << 10, 0)).await,
        Err(Error::StoreFull { .. })
    ));
    remote.delete(&key(2)).await.unwrap();
    remote.put(&key(2), Bytes::from_static(b"x")).await.unwrap();
    assert!(matches!(
        remote.put(&key(3), Bytes::from_static(b"y")).await,
        Err(Error::TooManyEntries { max: 2 })
    ));
    assert_eq!(store.len().await.unwrap(), 2);
    assert!(gw.stats().requests_failed >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_store_answers_as_a_local_put_would() {
    let fed = Fed::new();
    let store = std::sync::Arc::new(gos_store_memory::MemoryStore::new(Limits::with_capacity(
        1000,
    )));
    let gw = fed.gateway("alpha", &["client-1"], store.clone()).await;
    let remote = RemoteStore::connect(fed.client("client-1", &gw))
        .await
        .unwrap();
    let (a, b) = (ObjectKey::new("a").unwrap(), ObjectKey::new("b").unwrap());
    remote.put(&a, pattern(600, 1)).await.unwrap();
    remote.put(&b, pattern(300, 2)).await.unwrap();
    // 100 bytes free: an overwrite of `a` with 650 bytes fits once its old 600 are freed.
    remote.put(&a, pattern(650, 3)).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap().unwrap(), pattern(650, 3));
    // A create on an existing key is `AlreadyExists`, however full the store.
    for key in [&a, &b] {
        let err = remote
            .put_mode(key, pattern(900, 4), PutMode::Create)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    }
    // And what does not fit is `StoreFull` with the same figures as the local store gives.
    let remote_err = remote.put(&b, pattern(400, 5)).await.unwrap_err();
    let local_err = store.put(&b, pattern(400, 5)).await.unwrap_err();
    assert_eq!(remote_err.to_string(), local_err.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_re_established() {
    let fed = Fed::new();
    let store = memory(1 << 30);
    let gw = fed.gateway("alpha", &["client-1"], store.clone()).await;
    let at = addr(&gw);
    let mut client = fed.client("client-1", &gw);
    client.timeouts.connect = std::time::Duration::from_millis(500);
    client.max_attempts = 2;
    let remote = RemoteStore::connect(client).await.unwrap();
    let key = ObjectKey::new("k").unwrap();
    remote.put(&key, Bytes::from_static(b"v1")).await.unwrap();
    // The gateway goes away: requests fail fast with a typed error ...
    gw.shutdown().await;
    let started = Instant::now();
    let err = remote.get(&key).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(_) | Error::Timeout { .. }),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // ... and once it is back on the same address, the client reconnects by itself.
    let mut config = fed.gateway_config("alpha", &["client-1"]);
    config.listen = at;
    let _gw = gos_gateway::Gateway::start(config, store.clone())
        .await
        .unwrap();
    assert_eq!(remote.get(&key).await.unwrap().as_deref(), Some(&b"v1"[..]));
}
