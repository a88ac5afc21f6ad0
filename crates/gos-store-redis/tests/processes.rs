//! Two processes share one `RedisStore` on a real 3-master cluster: a writer process puts
//! each round's value with one expected reader, a reader process gets it, checks it whole and
//! releases it; at the end the store is empty (every value deleted by its last release, no
//! charge left). This test binary re-executes itself (the `child` test with `GOS_REDIS_ROLE`
//! set) for the two processes.
//!
//! Written against the store trait alone (this crate cannot depend on the facade); the same
//! rounds through `gos::FederatedNode` are `crates/gos/tests/redis_processes.rs`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions, ReleaseOutcome};
use gos_store_redis::{RedisConfig, RedisStore};

const ROLE: &str = "GOS_REDIS_ROLE";
const URLS: &str = "GOS_REDIS_URLS";
const NAMESPACE: &str = "GOS_REDIS_NAMESPACE";
const ROUNDS: u64 = 12;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Round `r`'s value: 1.5 MiB on even rounds (staged, chunked install), 4 KiB on odd ones.
fn value(round: u64) -> Bytes {
    let len = if round.is_multiple_of(2) {
        3 << 19
    } else {
        4 << 10
    };
    Bytes::from(vec![round as u8; len])
}

async fn open() -> RedisStore {
    let urls: Vec<String> = std::env::var(URLS)
        .expect("urls")
        .split(',')
        .map(str::to_owned)
        .collect();
    let config = RedisConfig::new(urls)
        .namespace(std::env::var(NAMESPACE).expect("namespace"))
        .limits(Limits::with_capacity(64 << 20))
        .chunk_size(256 << 10);
    RedisStore::open(config).await.expect("open")
}

async fn writer() {
    let store = open().await;
    for round in 0..ROUNDS {
        let key = ObjectKey::round("fed", "writer", round).expect("key");
        store
            .put_opts(&key, value(round), &PutOptions::new().readers(1))
            .await
            .expect("put");
    }
}

async fn reader() {
    let store = open().await;
    for round in 0..ROUNDS {
        let key = ObjectKey::round("fed", "writer", round).expect("key");
        let start = Instant::now();
        let got = loop {
            if let Some(v) = store.get(&key).await.expect("get") {
                break v;
            }
            assert!(start.elapsed() < TIMEOUT, "round {round} never came");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(got, value(round), "round {round} is not whole");
        assert_eq!(
            store.release(&key).await.expect("release"),
            ReleaseOutcome::Deleted
        );
    }
}

#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return; // run as a plain test: nothing to do
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    match role.as_str() {
        "writer" => rt.block_on(writer()),
        "reader" => rt.block_on(reader()),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_writer_and_a_reader_process_share_a_cluster_store_and_leave_it_empty() {
    let redis = common::cluster();
    let namespace = common::fresh_namespace();
    let spawn = |role: &str| {
        Command::new(std::env::current_exe().expect("test binary"))
            .args(["child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(URLS, redis.urls.join(","))
            .env(NAMESPACE, &namespace)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn child")
    };
    // The reader first: it waits for rounds that do not exist yet.
    let mut children = [spawn("reader"), spawn("writer")];
    let start = Instant::now();
    let mut done = [false, false];
    while done.iter().any(|d| !d) {
        for (i, c) in children.iter_mut().enumerate() {
            if !done[i]
                && let Some(status) = c.try_wait().expect("try_wait")
            {
                assert!(status.success(), "child {i} failed: {status}");
                done[i] = true;
            }
        }
        if start.elapsed() > TIMEOUT * 2 {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            panic!("the children did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let urls = redis.urls.clone();
        let store = RedisStore::open(
            RedisConfig::new(urls)
                .namespace(namespace.clone())
                .limits(Limits::with_capacity(64 << 20))
                .chunk_size(256 << 10),
        )
        .await
        .expect("open");
        assert!(store.is_empty().await.expect("is_empty"));
        let stats = store.stats().await.expect("stats");
        assert_eq!((stats.entries, stats.bytes, stats.reserved), (0, 0, 0));
    });
}
