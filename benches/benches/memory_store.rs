//! `MemoryStore` put and get at 1 KiB, 1 MiB and 100 MiB, and from 1 to N concurrent tasks.
//!
//! Run: `cargo bench -p gos-benches --bench memory_store`. Figures: docs/benchmarks.md.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_memory::MemoryStore;

const SIZES: [(&str, usize); 3] = [("1KiB", 1 << 10), ("1MiB", 1 << 20), ("100MiB", 100 << 20)];

fn put_get(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new(Limits::UNLIMITED);
    let key = ObjectKey::round("bench", "node_0", 1).expect("key");
    let mut group = c.benchmark_group("memory_store");
    for (name, size) in SIZES {
        // The value is made once: a put stores a reference to it, whatever its size.
        let value = Bytes::from(vec![7u8; size]);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("put", name), |b| {
            b.to_async(&rt)
                .iter(|| async { store.put(&key, value.clone()).await.expect("put") });
        });
        rt.block_on(store.put(&key, value.clone())).expect("put");
        group.bench_function(BenchmarkId::new("get", name), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(store.get(&key).await.expect("get")) });
        });
    }
    group.finish();
}

fn concurrent(c: &mut Criterion) {
    const OPS_PER_TASK: usize = 1_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::new(Limits::UNLIMITED));
    let value = Bytes::from(vec![1u8; 1 << 20]);
    let mut group = c.benchmark_group("memory_store_concurrent");
    for tasks in [1usize, 2, 4, 8, 16] {
        let keys: Arc<Vec<ObjectKey>> = Arc::new(
            (0..tasks)
                .map(|t| ObjectKey::round("bench", &format!("node_{t}"), 1).expect("key"))
                .collect(),
        );
        group.throughput(Throughput::Elements((tasks * OPS_PER_TASK * 2) as u64));
        group.bench_function(BenchmarkId::new("put_get_1MiB", tasks), |b| {
            b.to_async(&rt).iter(|| {
                let (store, keys, value) = (store.clone(), keys.clone(), value.clone());
                async move {
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let (store, keys, value) = (store.clone(), keys.clone(), value.clone());
                            tokio::spawn(async move {
                                for _ in 0..OPS_PER_TASK {
                                    store.put(&keys[t], value.clone()).await.expect("put");
                                    black_box(store.get(&keys[t]).await.expect("get"));
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("task");
                    }
                }
            });
        });
    }
    group.finish();
}

/// Writing 100 MiB through a reservation (pooled, warm) against a plain memcpy into warm
/// memory and one into fresh memory, in the same run.
fn reserve(c: &mut Criterion) {
    const BIG: usize = 100 << 20;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new(Limits::UNLIMITED);
    let key = ObjectKey::round("bench", "node_0", 2).expect("key");
    let src = vec![3u8; BIG];
    let mut group = c.benchmark_group("memory_store_write_100MiB");
    group.sample_size(20);
    let mut warm = vec![1u8; BIG];
    group.bench_function("memcpy_warm", |b| {
        b.iter(|| {
            warm.copy_from_slice(black_box(&src));
            black_box(&mut warm);
        })
    });
    group.bench_function("memcpy_fresh", |b| {
        b.iter(|| {
            let mut fresh = Vec::<u8>::with_capacity(BIG);
            fresh.extend_from_slice(black_box(&src));
            black_box(fresh)
        })
    });
    group.bench_function("reserve_fill_commit", |b| {
        b.to_async(&rt).iter(|| async {
            let mut r = store
                .reserve(&key, BIG, &gos_store::PutOptions::new())
                .await
                .expect("reserve");
            r.as_mut_slice().copy_from_slice(black_box(&src));
            r.commit().await.expect("commit");
        })
    });
    group.finish();
}

criterion_group!(benches, put_get, concurrent, reserve);
criterion_main!(benches);
