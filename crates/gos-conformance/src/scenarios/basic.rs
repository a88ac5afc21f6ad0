//! The first scenarios: atomic overwrites, held values, limit errors, many writers and
//! readers, reservations dropped, segment-wise prefixes.

use std::sync::Arc;

use bytes::Bytes;
use gos_store::{
    Error, KeyPrefix, Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
};

use super::{Checked, ctx, join, key, uniform};
use crate::{StoreFactory, SuiteConfig, open_handles};

/// Concurrent readers of a key being overwritten see one whole value or the other, never a mix.
pub async fn atomic_overwrite<F: StoreFactory>(factory: &Arc<F>, config: &SuiteConfig) -> Checked {
    const LEN: usize = 256 << 10;
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles.max(2)).await?;
    let k = key("atomic/overwrite");
    ctx("put", stores[0].put(&k, uniform(1, LEN)).await)?;
    let writer = {
        let (store, k) = (Arc::clone(&stores[0]), k.clone());
        tokio::spawn(async move {
            for i in 0..200u32 {
                let tag = (i % 250) as u8 + 1;
                // Alternate sizes too: a reader must never see one value's length with
                // another's bytes.
                let len = if i % 2 == 0 { LEN } else { LEN / 2 };
                ctx("put", store.put(&k, uniform(tag, len)).await)?;
                tokio::task::yield_now().await;
            }
            Ok::<(), String>(())
        })
    };
    let mut readers = Vec::new();
    for r in 0..config.tasks.min(4) {
        let (store, k) = (Arc::clone(&stores[(r + 1) % stores.len()]), k.clone());
        readers.push(tokio::spawn(async move {
            for _ in 0..200 {
                let v = ctx("get", store.get(&k).await)?.ok_or("key vanished during overwrites")?;
                let tag = v[0];
                if !(v.len() == LEN || v.len() == LEN / 2) || v.iter().any(|&b| b != tag) {
                    return Err(format!("torn read: {} bytes, mixed contents", v.len()));
                }
                tokio::task::yield_now().await;
            }
            Ok(())
        }));
    }
    join(writer).await?;
    for r in readers {
        join(r).await?;
    }
    Ok(())
}

/// A `Bytes` from `get` keeps its contents after the key is deleted, then overwritten, then
/// deleted by prefix, from another handle.
pub async fn held_bytes_survive_delete_and_overwrite<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles.max(2)).await?;
    let (a, b) = (&stores[0], &stores[stores.len() - 1]);
    let k = key("held/node/round_1");
    let original: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    ctx("put", a.put(&k, Bytes::from(original.clone())).await)?;
    let held = ctx("get", a.get(&k).await)?.ok_or("missing after put")?;
    if !ctx("delete", b.delete(&k).await)? {
        return Err("delete of an existing key returned false".into());
    }
    if ctx("get", a.get(&k).await)?.is_some() {
        return Err("a deleted key is still visible to new readers".into());
    }
    ctx("put", b.put(&k, uniform(0xEE, 1 << 20)).await)?;
    let held2 = ctx("get", a.get(&k).await)?.ok_or("missing after put")?;
    ctx("put", b.put(&k, uniform(0xDD, 1 << 19)).await)?;
    ctx(
        "delete_prefix",
        b.delete_prefix(&KeyPrefix::new("held").expect("prefix"))
            .await,
    )?;
    // Churn so that a backend reusing freed memory too early would overwrite the held bytes.
    for i in 0..8 {
        ctx(
            "put",
            b.put(&key(&format!("held/churn/{i}")), uniform(0x55, 1 << 20))
                .await,
        )?;
    }
    if held[..] != original[..] {
        return Err("a held value changed after delete and overwrite".into());
    }
    if held2.iter().any(|&x| x != 0xEE) || held2.len() != 1 << 20 {
        return Err("a held value changed after overwrite and delete by prefix".into());
    }
    Ok(())
}

/// Each limit gives its own typed error, and a refused operation changes nothing.
pub async fn limit_errors_change_nothing<F: StoreFactory>(
    factory: &Arc<F>,
    _config: &SuiteConfig,
) -> Checked {
    let limits = Limits {
        max_value_size: 1000,
        capacity_bytes: 2500,
        max_entries: 3,
    };
    let stores = open_handles(&**factory, limits, 1).await?;
    let s = &stores[0];
    let (k1, k2, k3, k4) = (key("l/1"), key("l/2"), key("l/3"), key("l/4"));
    ctx("put", s.put(&k1, uniform(1, 1000)).await)?;
    ctx("put", s.put(&k2, uniform(2, 1000)).await)?;
    let before = snapshot(&**s).await?;

    match s.put(&k3, uniform(3, 1001)).await {
        Err(Error::TooLarge {
            size: 1001,
            max: 1000,
        }) => {}
        other => {
            return Err(format!(
                "a value over the maximum gave {other:?}, want TooLarge"
            ));
        }
    }
    match s.put(&k3, uniform(3, 501)).await {
        Err(Error::StoreFull {
            requested: 501,
            available: 500,
        }) => {}
        other => {
            return Err(format!(
                "a put over capacity gave {other:?}, want StoreFull(501, 500)"
            ));
        }
    }
    match s.put(&k1, uniform(9, 1000)).await.and(Ok(())) {
        Ok(()) => {}
        Err(e) => return Err(format!("an overwrite of equal size must fit, got {e}")),
    }
    match s.put_mode(&k1, uniform(4, 10), PutMode::Create).await {
        Err(Error::AlreadyExists { key }) if key == k1 => {}
        other => return Err(format!("Create over an existing key gave {other:?}")),
    }
    ctx("put", s.put(&k3, uniform(3, 10)).await)?;
    match s.put(&k4, uniform(4, 10)).await {
        Err(Error::TooManyEntries { max: 3 }) => {}
        other => {
            return Err(format!(
                "a fourth entry gave {other:?}, want TooManyEntries"
            ));
        }
    }
    match s.reserve(&key("too/large"), 1001, &PutOptions::new()).await {
        Err(Error::TooLarge { .. }) => {}
        other => {
            return Err(format!(
                "reserve over the maximum gave {:?}",
                other.map(|r| r.len())
            ));
        }
    }
    ctx("delete", s.delete(&k3).await)?;
    let after = snapshot(&**s).await?;
    let mut expected = before;
    expected.1[0].1 = uniform(9, 1000);
    if after != expected {
        return Err("refused operations changed the store's contents or stats".into());
    }
    Ok(())
}

type Snapshot = (gos_store::StoreStats, Vec<(ObjectKey, Bytes)>);

async fn snapshot<S: ObjectStore + ?Sized>(s: &S) -> Result<Snapshot, String> {
    let mut entries = Vec::new();
    for k in ctx("keys", s.keys().await)? {
        let v = ctx("get", s.get(&k).await)?.ok_or("listed key missing")?;
        entries.push((k, v));
    }
    Ok((ctx("stats", s.stats().await)?, entries))
}

/// Many tasks on many handles put, get, overwrite and delete their own and shared keys; every
/// value read is one that was written whole, and the final listing, lengths and stats agree.
pub async fn concurrent_writers_and_readers<F: StoreFactory>(
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Checked {
    const OPS: usize = 300;
    let stores = open_handles(&**factory, Limits::UNLIMITED, config.handles).await?;
    let mut tasks = Vec::new();
    for t in 0..config.tasks {
        let store = Arc::clone(&stores[t % stores.len()]);
        tasks.push(tokio::spawn(async move {
            let mine = key(&format!("conc/own/t{t}"));
            let mut last: Option<Bytes> = None;
            for i in 0..OPS {
                let shared = key(&format!("conc/shared/{}", i % 5));
                // Value layout: [task, i as u16 LE, ...filler = task] lets a reader check it.
                let len = 64 + (i * 37 % 4000);
                let mut v = vec![t as u8; len];
                v[1..3].copy_from_slice(&(i as u16).to_le_bytes());
                let v = Bytes::from(v);
                match i % 6 {
                    0 | 1 => {
                        ctx("put", store.put(&mine, v.clone()).await)?;
                        last = Some(v);
                    }
                    2 => {
                        let got = ctx("get", store.get(&mine).await)?;
                        if got != last {
                            return Err(format!("task {t} read back another value of its own key"));
                        }
                    }
                    3 => ctx("put", store.put(&shared, v).await)?,
                    4 => {
                        if let Some(got) = ctx("get", store.get(&shared).await)? {
                            let owner = got[0];
                            if got.len() < 64 || got[3..].iter().any(|&b| b != owner) {
                                return Err("a shared key held a torn value".into());
                            }
                        }
                    }
                    _ => {
                        ctx("delete", store.delete(&shared).await)?;
                    }
                }
            }
            Ok::<Option<Bytes>, String>(last)
        }));
    }
    let mut lasts = Vec::new();
    for t in tasks {
        lasts.push(join(t).await?);
    }
    let s = &stores[0];
    let keys = ctx("keys", s.keys().await)?;
    let mut total = 0u64;
    for k in &keys {
        total += ctx("get", s.get(k).await)?
            .ok_or("listed key missing")?
            .len() as u64;
    }
    for (t, last) in lasts.iter().enumerate() {
        let got = ctx("get", s.get(&key(&format!("conc/own/t{t}"))).await)?;
        if got != *last {
            return Err(format!("task {t}'s last write was lost"));
        }
    }
    let stats = ctx("stats", s.stats().await)?;
    let len = ctx("len", s.len().await)?;
    if stats.entries != keys.len() as u64 || len != keys.len() || stats.bytes != total {
        return Err(format!(
            "after the run: {} keys listed holding {total} bytes, but len {len} and stats {stats:?}",
            keys.len()
        ));
    }
    if !keys.windows(2).all(|w| w[0] < w[1]) {
        return Err("keys() is not sorted".into());
    }
    Ok(())
}

/// A reservation dropped uncommitted gives its space back and publishes nothing; a reservation
/// is invisible until committed.
pub async fn dropped_reservation_frees_space<F: StoreFactory>(
    factory: &Arc<F>,
    _config: &SuiteConfig,
) -> Checked {
    let stores = open_handles(&**factory, Limits::with_capacity(1 << 20), 1).await?;
    let s = &stores[0];
    let k = key("resv/key");
    for _ in 0..4 {
        let mut r = ctx("reserve", s.reserve(&k, 1 << 20, &PutOptions::new()).await)?;
        r.as_mut_slice().fill(7);
        if ctx("get", s.get(&k).await)?.is_some() || ctx("len", s.len().await)? != 0 {
            return Err("an uncommitted reservation is visible".into());
        }
        drop(r);
    }
    // The whole capacity must be free again.
    ctx("put", s.put(&k, uniform(1, 1 << 20)).await)
        .map_err(|e| format!("after dropped reservations: {e}"))?;
    let stats = ctx("stats", s.stats().await)?;
    if stats.bytes != 1 << 20 {
        return Err(format!(
            "stats after dropped reservations and a put: {stats:?}"
        ));
    }
    Ok(())
}

/// Listing and deleting by prefix match whole segments and listings are sorted.
pub async fn prefixes_are_segment_wise<F: StoreFactory>(
    factory: &Arc<F>,
    _config: &SuiteConfig,
) -> Checked {
    let stores = open_handles(&**factory, Limits::UNLIMITED, 1).await?;
    let s = &stores[0];
    for k in [
        "f/node_1/round_2",
        "f/node_1/round_1",
        "f/node_10/round_1",
        "g/node_1/round_1",
    ] {
        ctx("put", s.put(&key(k), Bytes::from_static(b"x")).await)?;
    }
    let p = |p: &str| KeyPrefix::new(p).expect("prefix");
    let names = |keys: Vec<ObjectKey>| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let got = names(ctx("keys", s.keys_with_prefix(&p("f/node_1")).await)?);
    if got != ["f/node_1/round_1", "f/node_1/round_2"] {
        return Err(format!("keys_with_prefix(f/node_1) = {got:?}"));
    }
    let removed = ctx("delete_prefix", s.delete_prefix(&p("f")).await)?;
    let left = names(ctx("keys", s.keys().await)?);
    if removed != 3 || left != ["g/node_1/round_1"] {
        return Err(format!("delete_prefix(f) removed {removed}, left {left:?}"));
    }
    Ok(())
}
