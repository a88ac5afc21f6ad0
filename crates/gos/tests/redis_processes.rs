//! Two OS processes share one `RedisStore` on a real 3-master Redis Cluster (started by this
//! test on free loopback ports, stopped by pid when dropped) through `gos::FederatedNode`
//! rounds: a writer node shares a 3 MiB model every round (put with its reader counted, key
//! published), a reader node gathers it, checks every byte and releases it. At the end the
//! store is empty: no key, no bytes, no reservation (every value deleted by its last release).
//!
//! The models go through Redis; only the keys travel on the bus, here a file both processes
//! can see (one JSON line per message, appended by the writer and tailed by the reader).
//! This test binary re-executes itself (the `child` test with `GOS_TEST_ROLE` set).

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use gos::redis::{RedisConfig, RedisStore, testing};
use gos::topology::RecvError;
use gos::{
    Bus, DeletePolicy, FederatedNode, GosError, Inbox, KeyPrefix, Limits, Message, NodeId,
    ObjectStore, ReleaseOutcome, Targets,
};

const ROLE: &str = "GOS_TEST_ROLE";
const URLS: &str = "GOS_TEST_REDIS_URLS";
const NAMESPACE: &str = "GOS_TEST_NAMESPACE";
const BUS: &str = "GOS_TEST_BUS";
const FED: &str = "twoproc";
const ROUNDS: u64 = 6;
const MODEL: usize = 3 << 20;
const TIMEOUT: Duration = Duration::from_secs(60);
const WRITER: NodeId = NodeId(0);
const READER: NodeId = NodeId(1);

/// Round `r`'s model: bytes that differ by position and round, so a mixed, shifted or stale
/// value is caught.
fn model(round: u64) -> Bytes {
    let mut x = (round + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Bytes::from(
        (0..MODEL)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn config(urls: Vec<String>, namespace: String) -> RedisConfig {
    // 1 MiB chunks: every model is staged and installed in several APPENDs.
    RedisConfig::new(urls)
        .namespace(namespace)
        .limits(Limits::with_capacity(64 << 20))
        .chunk_size(1 << 20)
}

/// The bus of the two processes: the writer's messages, appended to a file as JSON lines.
#[derive(Debug)]
struct FileBus(PathBuf);

#[async_trait]
impl Bus for FileBus {
    async fn publish(&self, msg: Message, _targets: Targets) -> Result<Vec<NodeId>, GosError> {
        let mut line = serde_json::to_vec(&msg).expect("a message serializes");
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.0)
            .expect("open the bus file");
        // One write of the whole line: the reader never sees half of it followed by more.
        file.write_all(&line).expect("append to the bus file");
        Ok(vec![READER])
    }

    fn out_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        if node == WRITER {
            vec![READER]
        } else {
            Vec::new()
        }
    }

    fn in_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        if node == READER {
            vec![WRITER]
        } else {
            Vec::new()
        }
    }
}

/// A node's inbox: the reader tails the bus file; the writer receives nothing.
#[derive(Debug)]
struct FileInbox {
    node: NodeId,
    path: PathBuf,
    offset: u64,
    pending: Vec<u8>,
}

#[async_trait]
impl Inbox for FileInbox {
    fn node(&self) -> NodeId {
        self.node
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(serde_json::from_slice(&line).expect("a whole message line"));
            }
            if self.node == READER
                && let Ok(mut file) = std::fs::File::open(&self.path)
            {
                file.seek(SeekFrom::Start(self.offset)).expect("seek");
                let read = file.read_to_end(&mut self.pending).expect("read the bus");
                self.offset += read as u64;
                if read > 0 {
                    continue;
                }
            }
            if Instant::now() >= deadline {
                return Err(RecvError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn node(id: NodeId) -> FederatedNode {
    let urls = std::env::var(URLS)
        .expect("urls")
        .split(',')
        .map(str::to_owned)
        .collect();
    let store = RedisStore::open(config(urls, std::env::var(NAMESPACE).expect("namespace")))
        .await
        .expect("open the redis store");
    assert!(store.is_cluster());
    let bus = PathBuf::from(std::env::var(BUS).expect("bus"));
    FederatedNode::new(
        FED,
        Arc::new(store),
        Arc::new(FileBus(bus.clone())),
        Box::new(FileInbox {
            node: id,
            path: bus,
            offset: 0,
            pending: Vec::new(),
        }),
        DeletePolicy::LastReader,
    )
}

async fn writer() {
    let mut node = node(WRITER).await;
    for round in 0..ROUNDS {
        let shared = node.share(round, model(round)).await.expect("share");
        assert_eq!(shared.readers, vec![READER]);
    }
}

async fn reader() {
    let mut node = node(READER).await;
    for round in 0..ROUNDS {
        let mut got = node.gather(round, TIMEOUT).await.expect("gather");
        assert_eq!(got.len(), 1, "round {round}");
        let received = got.pop().expect("one model");
        assert_eq!(received.from, WRITER);
        assert!(
            received.value == model(round),
            "round {round}: bytes differ"
        );
        // The writer released its hold after publishing; this is the last reader.
        let start = Instant::now();
        loop {
            let meta = node.store().head(&received.key).await.expect("head");
            if meta.is_some_and(|m| m.readers.count() == Some(1)) {
                break;
            }
            assert!(start.elapsed() < TIMEOUT, "the writer kept its hold");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            node.release(received).await.expect("release"),
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

/// A child process killed and reaped if still running when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_writer_and_a_reader_process_share_a_redis_cluster_through_federated_nodes() {
    let redis = testing::cluster();
    let namespace = testing::fresh_namespace();
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = dir.path().join("bus.jsonl");
    let spawn = |role: &str| {
        Child(
            Command::new(std::env::current_exe().expect("test binary"))
                .args(["child", "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, role)
                .env(URLS, redis.urls.join(","))
                .env(NAMESPACE, &namespace)
                .env(BUS, &bus)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn a child"),
        )
    };
    // The reader first: it waits for rounds that do not exist yet.
    let mut children = [spawn("reader"), spawn("writer")];
    let start = Instant::now();
    let mut done = [false, false];
    while done.iter().any(|d| !d) {
        for (i, c) in children.iter_mut().enumerate() {
            if !done[i]
                && let Some(status) = c.0.try_wait().expect("try_wait")
            {
                assert!(status.success(), "child {i} failed: {status}");
                done[i] = true;
            }
        }
        assert!(
            start.elapsed() < TIMEOUT * 2,
            "the children did not finish in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every model crossed the bus as a key only.
    let lines = std::fs::read_to_string(&bus).expect("bus file");
    assert_eq!(lines.lines().count() as u64, ROUNDS);
    assert!(lines.len() < 400 * ROUNDS as usize, "{} bytes", lines.len());

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = RedisStore::open(config(redis.urls.clone(), namespace.clone()))
            .await
            .expect("open");
        let all = KeyPrefix::new("").expect("the empty prefix");
        assert_eq!(store.keys_with_prefix(&all).await.expect("keys"), vec![]);
        let stats = store.stats().await.expect("stats");
        assert_eq!((stats.entries, stats.bytes, stats.reserved), (0, 0, 0));
        store.destroy().await.expect("destroy");
    });
}

/// `gos::Cluster` assembled from a TOML whose store is `backend = "redis"` opens it through
/// `open_store_async` and runs a round of three nodes over it; the store ends empty.
#[test]
fn a_cluster_from_toml_runs_a_round_on_a_standalone_redis() {
    let redis = testing::standalone();
    let namespace = testing::fresh_namespace();
    let text = format!(
        "fed_id = \"toml\"\n[store]\nbackend = \"redis\"\nname = \"{namespace}\"\nurls = [\"{}\"]\n\
         capacity = \"64MiB\"\nchunk_size = \"1MiB\"\n[topology]\nkind = \"ring\"\nnodes = 3\n",
        redis.urls[0]
    );
    let config = gos::ClusterConfig::from_toml(&text).expect("config");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cluster = gos::Cluster::start(config.clone(), std::path::Path::new("."))
            .await
            .expect("start");
        assert_eq!(cluster.store().limits(), config.store.limits());
        let mut nodes = cluster.nodes().expect("nodes");
        for node in &mut nodes {
            node.share(1, model(node.id().0.into()))
                .await
                .expect("share");
        }
        for node in &mut nodes {
            let inputs = node.gather(1, TIMEOUT).await.expect("gather");
            assert_eq!(inputs.len(), 2);
            for input in inputs {
                assert!(input.value == model(input.from.0.into()), "bytes differ");
                node.release(input).await.expect("release");
            }
        }
        let all = KeyPrefix::new("").expect("the empty prefix");
        assert_eq!(
            cluster.store().keys_with_prefix(&all).await.expect("keys"),
            vec![]
        );
        let stats = cluster.store().stats().await.expect("stats");
        assert_eq!((stats.entries, stats.bytes, stats.reserved), (0, 0, 0));
        RedisStore::open(gos::redis_config(&config.store))
            .await
            .expect("open")
            .destroy()
            .await
            .expect("destroy");
    });
}
