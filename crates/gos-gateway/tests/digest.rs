//! The digest travels with the object: kept by the store, sent as the object's trailer by a
//! gateway without recomputing it, checked where the bytes land, committed with them, and
//! checked again by the reader. A wrong digest is caught at the hop where it appears.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use gos_gateway::{Gateway, RemoteStore};
use gos_store::{
    Digest, Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutOptions, ReleaseOutcome, Reservation, Result, StoreStats,
};
use gos_store_memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_is_kept_by_the_store_and_travels_both_ways() {
    let fed = Fed::new();
    let store = memory(1 << 30);
    let gw = Gateway::start(fed.gateway_config("alpha", &["beta"]), store.clone())
        .await
        .unwrap();
    let remote = RemoteStore::connect(fed.client("beta", &gw)).await.unwrap();
    let key = ObjectKey::new("fed/node_1/round_1").unwrap();
    let value = pattern(3 << 20, 5);
    let want = Digest::of(&value);

    // Put through the gateway: the store behind it holds the digest the sender computed.
    remote.put(&key, value.clone()).await.unwrap();
    assert_eq!(store.head(&key).await.unwrap().unwrap().digest, Some(want));
    // `head` through the gateway reports it; `get_digested` brings it with the value.
    assert_eq!(remote.head(&key).await.unwrap().unwrap().digest, Some(want));
    let (got, digest) = remote.get_digested(&key).await.unwrap().unwrap();
    assert_eq!((digest, &got[..]), (want, &value[..]));
    want.verify(&got).unwrap();

    // Through a reservation, too.
    let k2 = ObjectKey::new("fed/node_2/round_1").unwrap();
    let mut r = remote
        .reserve(&k2, value.len(), &PutOptions::new())
        .await
        .unwrap();
    r.as_mut_slice().copy_from_slice(&value);
    r.commit().await.unwrap();
    assert_eq!(store.head(&k2).await.unwrap().unwrap().digest, Some(want));
}

/// A store that hands out a digest that is not its value's (a damaged record, a bug).
#[derive(Debug)]
struct LyingStore(Arc<MemoryStore>);

#[async_trait]
impl ObjectStore for LyingStore {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        self.0.put_opts(key, value, options).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        self.0.get(key).await
    }
    async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
        Ok(self
            .0
            .get_digested(key)
            .await?
            .map(|(v, d)| (v, Digest::from_u128(d.as_u128() ^ 1))))
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.0.head(key).await
    }
    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        self.0.release(key).await
    }
    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        self.0.delete_rounds_before(fed_id, round).await
    }
    async fn sweep(&self) -> Result<usize> {
        self.0.sweep().await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        self.0.delete(key).await
    }
    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        self.0.keys_with_prefix(prefix).await
    }
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        self.0.delete_prefix(prefix).await
    }
    async fn len(&self) -> Result<usize> {
        self.0.len().await
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.0.stats().await
    }
    fn limits(&self) -> Limits {
        self.0.limits()
    }
    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        self.0.reserve(key, len, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_digest_that_does_not_match_is_caught_by_the_reader() {
    let fed = Fed::new();
    let inner = memory(1 << 30);
    let gw = Gateway::start(
        fed.gateway_config("alpha", &["beta"]),
        Arc::new(LyingStore(inner.clone())),
    )
    .await
    .unwrap();
    let remote = RemoteStore::connect(fed.client("beta", &gw)).await.unwrap();
    let key = ObjectKey::new("k").unwrap();
    inner.put(&key, pattern(1 << 20, 1)).await.unwrap();
    // The gateway sends the digest its store gave (it does not recompute it), so the lie
    // reaches the reader, which refuses the bytes.
    let got = remote.get(&key).await;
    assert!(matches!(got, Err(Error::Corrupted(_))), "{got:?}");
    // The connection is fine: the next request is served.
    assert_eq!(remote.len().await.unwrap(), 1);
}
