//! End to end: `gos serve` of a cluster whose `[store]` is a Redis Cluster (3 masters started
//! by the test on free loopback ports, stopped by pid when dropped): a remote client puts and
//! gets through the gateway, the value is in Redis (read back with `RedisStore` itself), an
//! existing namespace made with other limits is refused unless `--accept-store-limits`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{SHORT, ShmName, make_certs, pattern, run, serve, write_config};
use gos::redis::{RedisStore, testing};
use gos::{ClusterConfig, ObjectKey, ObjectStore};

fn remote(addr: &str, certs: &Path, cmd: &[&str]) -> common::Output {
    let mut args = vec![
        "store",
        "--remote",
        addr,
        "--cluster",
        "cluster-r",
        "--certs",
        certs.to_str().unwrap(),
        "--as",
        "client",
        "--timeout",
        "10",
    ];
    args.extend_from_slice(cmd);
    run(&args, SHORT)
}

/// A config of cluster-r whose store is the namespace `ns` on `urls`, of `capacity`.
fn redis_config(dir: &Path, urls: &[String], ns: &str, capacity: &str) -> std::path::PathBuf {
    let unused = ShmName::new("r");
    let path = write_config(dir, "cluster-r", &unused, &["client"]);
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("backend = \"shm\"", "backend = \"redis\"")
        .replace(
            &format!("name = \"{}\"", unused.0),
            &format!("name = \"{ns}\""),
        )
        .replace(
            "capacity = \"64MiB\"",
            &format!("capacity = \"{capacity}\"\nurls = [{}]", urls.join(", ")),
        );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_redis_cluster_store_is_served_through_the_gateway() {
    let redis = testing::cluster();
    let ns = testing::fresh_namespace();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &["cluster-r", "client"]);
    let config = redis_config(dir.path(), &redis.urls, &ns, "64MiB");

    let served = serve(&config, &[]);
    assert!(
        served
            .first_line
            .contains(&format!("store redis {ns} on redis://127.0.0.1:")),
        "{}",
        served.first_line
    );
    let addr = served.addr.to_string();
    let value = pattern(3 << 20, 7);
    let file = dir.path().join("weights.bin");
    std::fs::write(&file, &value).unwrap();
    remote(
        &addr,
        &certs,
        &["put", "e2e/n1/round_0", "--file", file.to_str().unwrap()],
    )
    .ok();
    assert_eq!(
        remote(&addr, &certs, &["get", "e2e/n1/round_0"]).stdout,
        value
    );
    // The value is in Redis: a RedisStore opened from the same file reads it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let parsed = ClusterConfig::from_file(&config).unwrap();
    rt.block_on(async {
        let store = RedisStore::open(gos::redis_config(&parsed.store))
            .await
            .unwrap();
        assert!(store.is_cluster());
        let key = ObjectKey::new("e2e/n1/round_0").unwrap();
        assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&value[..]));
    });
    let (status, _, stderr) = served.stop();
    assert!(status.success(), "{status}: {stderr}");

    // The namespace exists now with 64 MiB: a file asking for 32 MiB is refused...
    let other = redis_config(dir.path(), &redis.urls, &ns, "32MiB");
    let out = run(&["serve", "--config", other.to_str().unwrap()], SHORT);
    let line = out.one_line_error();
    assert!(
        line.contains("other limits") && line.contains("--accept-store-limits"),
        "{line}"
    );
    // ... unless the operator accepts the store's own limits.
    let served = serve(&other, &["--accept-store-limits"]);
    assert_eq!(
        remote(&served.addr.to_string(), &certs, &["get", "e2e/n1/round_0"]).stdout,
        value
    );
    let (status, _, stderr) = served.stop();
    assert!(status.success(), "{status}: {stderr}");
    rt.block_on(async {
        let store = RedisStore::open(gos::redis_config(&parsed.store))
            .await
            .unwrap();
        store.destroy().await.unwrap();
    });
}
