//! `RedisStore` lifecycle and failure scenarios on real servers: reader counts, leases on a
//! manual clock, round retention, charged reservations, an interrupted chunked put, concurrent
//! overwrites of a large value, the capacity under concurrent writers across a cluster.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gos_store::{
    Clock, Error, KeyPrefix, Limits, ManualClock, ObjectKey, ObjectStore, ObjectStoreExt,
    PutOptions, Readers, ReleaseOutcome, to_unix_millis,
};
use gos_store_redis::{RedisConfig, RedisStore};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("valid key")
}

fn uniform(tag: u8, len: usize) -> Bytes {
    Bytes::from(vec![tag; len])
}

async fn readers_and_release(store: &RedisStore) {
    let k = key("fed/n1/round_1");
    store
        .put_opts(&k, uniform(1, 3000), &PutOptions::new().readers(3))
        .await
        .expect("put");
    let meta = store.head(&k).await.expect("head").expect("present");
    assert_eq!(meta.size, 3000);
    assert_eq!(meta.readers, Readers::exactly(3).expect("3"));
    assert_eq!(meta.expires_at, None);
    for left in [2u32, 1] {
        assert_eq!(
            store.release(&k).await.expect("release"),
            ReleaseOutcome::Remaining(left.try_into().expect("non-zero"))
        );
        assert_eq!(
            store.get(&k).await.expect("get").as_deref(),
            Some(&[1u8; 3000][..])
        );
    }
    assert_eq!(
        store.release(&k).await.expect("release"),
        ReleaseOutcome::Deleted
    );
    assert_eq!(store.get(&k).await.expect("get"), None);
    assert_eq!(
        store.release(&k).await.expect("release"),
        ReleaseOutcome::NotFound
    );
    let u = key("fed/n1/unbounded");
    store.put(&u, uniform(2, 10)).await.expect("put");
    assert_eq!(
        store.release(&u).await.expect("release"),
        ReleaseOutcome::Unbounded
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.entries, stats.bytes, stats.reserved), (1, 10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_and_release_on_both_deployments() {
    let standalone = common::standalone();
    readers_and_release(&standalone.store(Limits::default()).await).await;
    let cluster = common::cluster();
    let store = cluster.store(Limits::default()).await;
    assert!(store.is_cluster());
    readers_and_release(&store).await;
    // A large value (staged path) counts its readers the same way.
    let k = key("fed/n2/round_1");
    store
        .put_opts(&k, uniform(3, 3 << 20), &PutOptions::new().readers(2))
        .await
        .expect("put");
    assert_eq!(
        store.head(&k).await.expect("head").map(|m| m.readers),
        Readers::exactly(2)
    );
    store.release(&k).await.expect("release");
    assert_eq!(
        store.release(&k).await.expect("release"),
        ReleaseOutcome::Deleted
    );
    assert_eq!(store.stats().await.expect("stats").bytes, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_on_the_store_clock() {
    let redis = common::cluster();
    let clock = Arc::new(ManualClock::new());
    let store =
        RedisStore::open_with_clock(redis.config(Limits::with_capacity(1 << 20)), clock.clone())
            .await
            .expect("open");
    let (a, b, c) = (key("f/a"), key("f/b"), key("f/c"));
    let lease = PutOptions::new().lease(Duration::from_secs(10));
    store
        .put_opts(&a, uniform(1, 100), &lease)
        .await
        .expect("put");
    store
        .put_opts(&b, uniform(2, 200), &lease)
        .await
        .expect("put");
    store.put(&c, uniform(3, 300)).await.expect("put");
    let meta = store.head(&a).await.expect("head").expect("present");
    assert_eq!(
        meta.expires_at.map(to_unix_millis),
        Some(to_unix_millis(clock.now() + Duration::from_secs(10)))
    );
    clock.advance(Duration::from_secs(9));
    assert!(store.get(&a).await.expect("get").is_some());
    clock.advance(Duration::from_secs(1));
    // Gone for every operation at the deadline, its space returned.
    assert_eq!(store.get(&a).await.expect("get"), None);
    assert_eq!(store.head(&b).await.expect("head"), None);
    assert_eq!(store.keys().await.expect("keys"), vec![c.clone()]);
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.entries, stats.bytes), (1, 300));
    // Sweep removes what nobody touched.
    store
        .put_opts(&a, uniform(1, 100), &lease)
        .await
        .expect("put");
    clock.advance(Duration::from_secs(11));
    assert_eq!(store.sweep().await.expect("sweep"), 1);
    assert_eq!(store.len().await.expect("len"), 1);
    // An overwrite without a lease clears the lease.
    store
        .put_opts(&c, uniform(4, 10), &lease)
        .await
        .expect("put");
    store.put(&c, uniform(5, 10)).await.expect("put");
    clock.advance(Duration::from_secs(60));
    assert_eq!(store.sweep().await.expect("sweep"), 0);
    assert!(store.get(&c).await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_retention_and_prefixes_span_all_masters() {
    let redis = common::cluster();
    let store = redis.store(Limits::default()).await;
    for node in ["n1", "n2", "n3"] {
        for round in 0..5 {
            let k = ObjectKey::round("fed", node, round).expect("round key");
            store.put(&k, uniform(round as u8, 64)).await.expect("put");
        }
    }
    store
        .put(&key("fed/meta"), uniform(9, 8))
        .await
        .expect("put");
    store
        .put(&key("other/n1/round_0"), uniform(9, 8))
        .await
        .expect("put");
    assert_eq!(
        store
            .delete_rounds_before("fed", 3)
            .await
            .expect("retention"),
        9
    );
    let left = store
        .keys_with_prefix(&KeyPrefix::federation("fed").expect("prefix"))
        .await
        .expect("keys");
    let mut want: Vec<ObjectKey> = ["n1", "n2", "n3"]
        .iter()
        .flat_map(|n| (3..5).map(move |r| ObjectKey::round("fed", n, r).expect("key")))
        .collect();
    want.push(key("fed/meta"));
    want.sort();
    assert_eq!(left, want);
    assert_eq!(
        store
            .delete_prefix(&KeyPrefix::new("fed").expect("prefix"))
            .await
            .expect("delete"),
        7
    );
    assert_eq!(
        store.keys().await.expect("keys"),
        vec![key("other/n1/round_0")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_are_charged_until_commit_or_drop() {
    let redis = common::standalone();
    let store = redis.store(Limits::with_capacity(1 << 20)).await;
    let k = key("r/k");
    let mut r = store
        .reserve(&k, 600 << 10, &PutOptions::new().readers(1))
        .await
        .expect("reserve");
    r.as_mut_slice().fill(7);
    assert_eq!(store.stats().await.expect("stats").reserved, 600 << 10);
    match store.put(&key("r/other"), uniform(1, 500 << 10)).await {
        Err(Error::StoreFull { requested, .. }) => assert_eq!(requested, 500 << 10),
        other => panic!("a put past a live reservation gave {other:?}"),
    }
    assert_eq!(store.get(&k).await.expect("get"), None);
    r.commit().await.expect("commit");
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (stats.bytes, stats.reserved, stats.entries),
        (600 << 10, 0, 1)
    );
    assert_eq!(
        store.get(&k).await.expect("get").expect("committed").len(),
        600 << 10
    );
    assert_eq!(
        store.release(&k).await.expect("release"),
        ReleaseOutcome::Deleted
    );
    // A dropped reservation gives its room back at once.
    let r = store
        .reserve(&k, 1 << 20, &PutOptions::new())
        .await
        .expect("reserve");
    drop(r);
    store
        .put(&k, uniform(2, 1 << 20))
        .await
        .expect("the whole capacity is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_chunked_put_leaves_nothing() {
    let redis = common::cluster();
    let config = redis
        .config(Limits::with_capacity(3 << 20))
        .chunk_size(64 << 10)
        .reservation_ttl(Duration::from_secs(2));
    let store = RedisStore::open(config).await.expect("open");
    let k = key("crash/n1/round_1");
    store.put(&k, uniform(1, 1 << 20)).await.expect("old value");
    // Charge and upload 1.5 MiB in 24 chunks, then "die" before the install.
    let staged = store
        .stage(&k, &vec![2u8; 3 << 19], &PutOptions::new())
        .await
        .expect("stage");
    let staging = staged.staging_key();
    std::mem::forget(staged);
    // Nothing of it is visible: the old value is whole.
    let got = store.get(&k).await.expect("get").expect("old value");
    assert!(got.len() == 1 << 20 && got.iter().all(|&b| b == 1));
    assert_eq!(store.keys().await.expect("keys"), vec![k.clone()]);
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.entries, stats.bytes), (1, 1 << 20));
    assert_eq!(
        stats.reserved,
        3 << 19,
        "the charge lives until its deadline"
    );
    // The staging data carries a TTL and goes away by itself, with no store operation.
    let ttl = store.pttl(&staging).await.expect("pttl");
    assert!(ttl > 0 && ttl <= 4000, "staging ttl {ttl} ms");
    let start = std::time::Instant::now();
    while store.pttl(&staging).await.expect("pttl") != -2 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "staging never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the deadline, the charge is dropped and the whole capacity is usable again.
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.bytes, stats.reserved), (1 << 20, 0));
    store
        .put(&key("crash/n2/round_1"), uniform(3, 3 << 19))
        .await
        .expect("room of the interrupted put is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_of_a_large_value_are_never_mixed() {
    let redis = common::cluster();
    let config = redis
        .config(Limits::with_capacity(256 << 20))
        .chunk_size(512 << 10);
    let store = RedisStore::open(config).await.expect("open");
    let k = key("big/n1/round_1");
    const LEN: usize = 4 << 20;
    store.put(&k, uniform(0, LEN)).await.expect("first value");
    let reads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for writer in 1..=3u8 {
        let s = store.reopen().await.expect("reopen");
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..4 {
                s.put(&k, uniform(writer, LEN + writer as usize))
                    .await
                    .expect("overwrite");
            }
        }));
    }
    for _ in 0..2 {
        let s = store.reopen().await.expect("reopen");
        let k = k.clone();
        let reads = Arc::clone(&reads);
        tasks.push(tokio::spawn(async move {
            for _ in 0..12 {
                let v = s.get(&k).await.expect("get").expect("always a value");
                let tag = v[0];
                assert_eq!(v.len(), LEN + tag as usize, "length of writer {tag}");
                assert!(v.iter().all(|&b| b == tag), "a read mixed two values");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(reads.load(Ordering::Relaxed), 24);
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.reserved, 0);
    let v = store.get(&k).await.expect("get").expect("value");
    assert_eq!(stats.bytes, v.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_holds_under_concurrent_writers_across_a_cluster() {
    let redis = common::cluster();
    let config = redis.config(Limits::with_capacity(1 << 20).max_entries(12));
    let store = RedisStore::open(config).await.expect("open");
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = store.reopen().await.expect("reopen");
        let ok = Arc::clone(&ok);
        tasks.push(tokio::spawn(async move {
            match s
                .put(&key(&format!("cap/n{i}")), uniform(1, 100 << 10))
                .await
            {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::StoreFull { .. } | Error::Busy(_)) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let stats = store.stats().await.expect("stats");
    let ok = ok.load(Ordering::Relaxed) as u64;
    // Ten 100 KiB values fit in 1 MiB, eleven do not: never more, whatever the interleaving.
    assert!(ok <= 10, "{ok} puts of 100 KiB fit in 1 MiB");
    assert!(ok >= 8, "only {ok} puts succeeded");
    assert_eq!(stats.bytes, ok * (100 << 10));
    assert!(stats.bytes <= stats.capacity_bytes);
    assert_eq!(stats.entries, ok);
    // Fill the rest sequentially: exactly up to the limits.
    let mut i = 100;
    while store
        .put(&key(&format!("cap/n{i}")), uniform(1, 100 << 10))
        .await
        .is_ok()
    {
        i += 1;
    }
    assert_eq!(store.len().await.expect("len"), 10);
    // Entries: small values up to max_entries (12), then TooManyEntries.
    store
        .put(&key("cap/s1"), uniform(1, 10))
        .await
        .expect("entry 11");
    store
        .put(&key("cap/s2"), uniform(1, 10))
        .await
        .expect("entry 12");
    assert!(matches!(
        store.put(&key("cap/s3"), uniform(1, 10)).await,
        Err(Error::TooManyEntries { max: 12 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_servers_and_namespaces_are_typed_errors() {
    // Nothing listens on this port (a server started and stopped).
    let port = {
        let redis = common::standalone();
        redis.servers[0].port
    };
    let config = RedisConfig::new([format!("redis://127.0.0.1:{port}")])
        .connection_timeout(Duration::from_millis(500));
    match RedisStore::open(config).await {
        Err(Error::Unavailable(_) | Error::Timeout { .. }) => {}
        other => panic!("opening a dead server gave {other:?}"),
    }
    let redis = common::standalone();
    let config = redis.config(Limits::with_capacity(1 << 20));
    RedisStore::open(config.clone()).await.expect("open");
    match RedisStore::open(config.limits(Limits::with_capacity(2 << 20))).await {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("reopening with other limits gave {other:?}"),
    }
    let store = redis
        .store(Limits::with_capacity(1 << 20).max_value_size(1000))
        .await;
    assert!(matches!(
        store.put(&key("a"), uniform(1, 1001)).await,
        Err(Error::TooLarge {
            size: 1001,
            max: 1000
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_put_after_a_dropped_reservation_gets_its_quota() {
    // Found by the conformance state machine: a staged put that fits must not loop on the
    // quota (it answered Busy), and one that does not fit is StoreFull.
    let redis = common::cluster();
    let config = redis
        .config(Limits::with_capacity(256).max_value_size(96).max_entries(5))
        .buckets(16)
        .inline_max(48)
        .chunk_size(4096);
    let store = RedisStore::open(config).await.expect("open");
    let r = store
        .reserve(&key("b"), 3, &PutOptions::new())
        .await
        .expect("reserve");
    drop(r);
    assert!(matches!(
        store
            .reserve(&key("a/n1/round_0"), 100, &PutOptions::new())
            .await,
        Err(Error::TooLarge { size: 100, max: 96 })
    ));
    let mut r = store
        .reserve(&key("a/n1/round_0"), 90, &PutOptions::new())
        .await
        .expect("reserve");
    r.as_mut_slice().fill(0);
    r.commit().await.expect("commit");
    store
        .put(&key("a/n1/round_1"), uniform(0, 62))
        .await
        .expect("put");
    store
        .put(&key("a/n2/round_0"), uniform(0, 50))
        .await
        .expect("put");
    match store.put(&key("b"), uniform(0, 55)).await {
        Err(Error::StoreFull { requested: 55, .. }) => {}
        other => panic!("a put past the capacity gave {other:?}"),
    }
    store
        .put(&key("b"), uniform(0, 54))
        .await
        .expect("256 bytes of 256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_reservation_is_freed_for_the_next_operation_of_any_handle() {
    // Found by the conformance state machine: a reservation dropped on one handle still
    // showed as reserved in the stats of a reopened one.
    let redis = common::standalone();
    let a = redis.store(Limits::with_capacity(1 << 20)).await;
    let b = a.reopen().await.expect("reopen");
    let r = a
        .reserve(&key("r/dropped"), 5, &PutOptions::new())
        .await
        .expect("reserve");
    assert_eq!(b.stats().await.expect("stats").reserved, 5);
    // Dropped off the runtime, so no spawned task refunds it: only the queue does.
    std::thread::scope(|s| {
        s.spawn(move || drop(r));
    });
    assert_eq!(
        b.stats().await.expect("stats").reserved,
        0,
        "the next operation on another handle sees the refund"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_limits_opens_a_namespace_with_its_own_limits() {
    let redis = common::standalone();
    let made = Limits::with_capacity(3 << 20).max_entries(7);
    let config = redis.config(made).buckets(4);
    let first = RedisStore::open(config.clone()).await.expect("create");
    let other = config
        .clone()
        .limits(Limits::with_capacity(9 << 20).max_value_size(5 << 20))
        .buckets(8)
        .adopt_limits(true);
    let adopted = RedisStore::open(other).await.expect("adopt");
    let limits = adopted.limits();
    assert_eq!((limits.capacity_bytes, limits.max_entries), (3 << 20, 7));
    // The largest value is this configuration's, at most the adopted capacity.
    assert_eq!(limits.max_value_size, 3 << 20);
    assert_eq!(adopted.config().buckets, 4);
    // Both handles see the same objects (the same buckets).
    let k = key("fed/n1/round_1");
    first.put(&k, uniform(3, 100)).await.expect("put");
    assert_eq!(adopted.get(&k).await.expect("get"), Some(uniform(3, 100)));
    assert_eq!(adopted.len().await.expect("len"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_removes_every_key_of_the_namespace_and_no_other() {
    let redis = common::cluster();
    let keep = redis.store(Limits::with_capacity(64 << 20)).await;
    keep.put(&key("other/n1/round_1"), uniform(1, 10))
        .await
        .expect("put");
    let store = RedisStore::open(
        redis
            .config(Limits::with_capacity(64 << 20))
            .inline_max(1000),
    )
    .await
    .expect("open");
    for i in 0..40 {
        store
            .put(&key(&format!("fed/n{i}/round_1")), uniform(2, 100 + i * 50))
            .await
            .expect("put");
    }
    // A staged put in flight and a live reservation: their staging data goes too.
    let staged = store
        .stage(&key("fed/staged/round_1"), &[5u8; 4000], &PutOptions::new())
        .await
        .expect("stage");
    let staging = staged.staging_key();
    std::mem::forget(staged);
    assert!(store.pttl(&staging).await.expect("pttl") > 0);
    assert_eq!(store.destroy().await.expect("destroy"), 40);
    assert_eq!(store.pttl(&staging).await.expect("pttl"), -2);
    // No key of the namespace is left on any master; the other namespace is whole.
    let ns = store.config().namespace.clone();
    for url in &redis.urls {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("*gos:{ns}*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        assert!(keys.is_empty(), "{url} still holds {keys:?}");
    }
    assert_eq!(keep.len().await.expect("len"), 1);
}
