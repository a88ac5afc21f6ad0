//! ICRF with the two gateways in separate OS processes on 127.0.0.1: a message and a 64 MiB
//! object each way through a two-cluster hybrid topology (each side a peer cluster of the
//! other, the default role), committed at the receiver with its reader count and deleted by
//! its last reader; and a sender killed (SIGKILL) mid-object that leaves nothing partial and
//! no space reserved.
//!
//! The child process is this test binary run again with `GOS_ICRF_CHILD` set: the
//! `icrf_child` test then plays the other cluster and talks to the parent over stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use gos_gateway::certs::{FederationCa, Identity};
use gos_gateway::frame::{self, FrameKind, Request, WireOptions};
use gos_gateway::{
    AllowList, GatewayConfig, HybridTopology, HybridTopologyManager, Timeouts, TlsSettings,
};
use gos_store::{ObjectKey, ObjectStore, ObjectStoreExt, PutOptions, ReleaseOutcome};
use gos_store_memory::MemoryStore;
use gos_topology::{ManagerConfig, Message, NodeId, Targets, Topology};

const CHILD: &str = "GOS_ICRF_CHILD";
const BIG: usize = 64 << 20;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        io: Duration::from_secs(2),
        idle: Duration::from_secs(3),
    }
}

/// Loads `<dir>/<id>.pem|key` and `<dir>/ca.pem` as written by [`write_certs`].
fn tls(dir: &Path, id: &str, peer: &str) -> Result<TlsSettings> {
    Ok(TlsSettings::from_files(
        &dir.join(format!("{id}.pem")),
        &dir.join(format!("{id}.key")),
        &dir.join("ca.pem"),
        AllowList::new([peer]),
    )?)
}

fn write_certs(dir: &Path) -> Result<()> {
    let ca = FederationCa::generate("e2e federation")?;
    ca.write(dir, "ca")?;
    for id in ["cluster-a", "cluster-b"] {
        ca.issue(id)?.write(dir, id)?;
    }
    // Only the CA certificate is needed by the clusters; the key stays with the operator.
    let _: Identity = Identity::read(&dir.join("ca.pem"), &dir.join("ca.key"))?;
    Ok(())
}

struct Side {
    store: Arc<MemoryStore>,
    hybrid: HybridTopologyManager,
}

/// One side of a full graph of two nodes: node 0 in cluster-a, node 1 in cluster-b.
async fn start(dir: &Path, id: &str, peer: &str) -> Result<Side> {
    let mut config = GatewayConfig::new("127.0.0.1:0".parse()?, tls(dir, id, peer)?);
    config.timeouts = timeouts();
    let store = Arc::new(MemoryStore::unlimited());
    let topology = HybridTopology::new(Topology::full(2)?, ["cluster-a", "cluster-b"])?;
    let hybrid =
        HybridTopologyManager::start(config, topology, store.clone(), ManagerConfig::default())
            .await?;
    Ok(Side { store, hybrid })
}

/// The child process, spawned with its role in `GOS_ICRF_CHILD`.
#[test]
fn icrf_child() -> Result<()> {
    let Ok(role) = std::env::var(CHILD) else {
        return Ok(()); // Run as a normal test: nothing to do.
    };
    let dir = PathBuf::from(std::env::var("GOS_ICRF_DIR")?);
    let parent: std::net::SocketAddr = std::env::var("GOS_ICRF_PARENT")?.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match role.as_str() {
            "exchange" => child_exchange(&dir, parent).await,
            "cut" => child_cut(&dir, parent).await,
            other => bail!("unknown role {other}"),
        }
    })
}

/// Cluster B: receives node 1's message and object, answers node 0 with its own.
async fn child_exchange(dir: &Path, parent: std::net::SocketAddr) -> Result<()> {
    let b = start(dir, "cluster-b", "cluster-a").await?;
    b.hybrid.add_peer("cluster-a", parent)?;
    let mut node1 = b.hybrid.register(NodeId(1))?;
    println!("ADDR {}", b.hybrid.gateway().local_addr()?);
    std::io::stdout().flush()?;
    let msg = node1.recv_timeout(Duration::from_secs(20)).await?;
    let key = msg.body_key().context("a key-only message")?;
    let object = b
        .store
        .get(&key)
        .await?
        .context("the object is in our store")?;
    ensure!(object == pattern(BIG, 1), "object differs");
    // Committed with our one reader: its release deletes it.
    ensure!(b.store.release(&key).await? == ReleaseOutcome::Deleted);
    ensure!(
        b.store.is_empty().await?,
        "the last reader deleted the copy"
    );
    let reply_key = ObjectKey::round("fed", "node_1", msg.round)?;
    // No reader of node 1's object shares this store: it lives here only until it is sent.
    b.store.put(&reply_key, pattern(BIG, 2)).await?;
    let report = b
        .hybrid
        .publish(
            Message::key("fed", NodeId(1), msg.round, &reply_key),
            Targets::one(NodeId(0)),
        )
        .await?;
    ensure!(report.is_complete(), "{report:?}");
    ensure!(report.remote == vec![(NodeId(0), "cluster-a".to_owned())]);
    println!("DONE");
    Ok(())
}

/// A client of cluster A that sends 8 MiB of a 64 MiB put, says so, and waits to be killed.
async fn child_cut(dir: &Path, parent: std::net::SocketAddr) -> Result<()> {
    let tls = tls(dir, "cluster-b", "cluster-a")?;
    let tuning = gos_gateway::TransportTuning::default();
    let client = tls.quinn_client(Arc::new(tuning.transport_config(&timeouts())))?;
    let endpoint = tuning.endpoint("127.0.0.1:0".parse()?, None)?;
    let conn = endpoint
        .connect_with(
            client,
            parent,
            &gos_gateway::tls::cluster_dns_name("cluster-a"),
        )?
        .await?;
    let (mut send, _recv) = conn.open_bi().await?;
    // Node 1 is cluster-b's: a peer may write under its own nodes' keys.
    let put = Request::Put {
        key: ObjectKey::new("fed/node_1/round_9")?,
        options: WireOptions::from(&PutOptions::new().readers(1)),
        len: BIG as u64,
        reservation: false,
        transfer: None,
    };
    send.write_all(&frame::encode(FrameKind::Request, &put)?)
        .await?;
    send.write_all(&pattern(8 << 20, 3)).await?;
    println!("HALF");
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs(60)).await;
    bail!("not killed")
}

/// A child process running `role`, and its stdout lines.
struct Kid {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Kid {
    fn spawn(role: &str, dir: &Path, parent: std::net::SocketAddr) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", "icrf_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, role)
            .env("GOS_ICRF_DIR", dir)
            .env("GOS_ICRF_PARENT", parent.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        Ok(Kid {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// What follows `tag` on the first line holding it (the test harness prints its own
    /// `test icrf_child ... ` before the child's first line).
    fn expect(&mut self, tag: &str) -> Result<String> {
        for line in self.lines.by_ref() {
            let line = line?;
            if let Some(at) = line.find(tag) {
                return Ok(line[at + tag.len()..].trim().to_owned());
            }
        }
        bail!("the child ended without printing {tag}")
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_in_two_processes_exchange_messages_and_64_mib_objects() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_certs(dir.path())?;
    let a = start(dir.path(), "cluster-a", "cluster-b").await?;
    let mut node0 = a.hybrid.register(NodeId(0))?;
    let mut kid = Kid::spawn("exchange", dir.path(), a.hybrid.gateway().local_addr()?)?;
    let b_addr: std::net::SocketAddr =
        tokio::task::block_in_place(|| kid.expect("ADDR"))?.parse()?;
    a.hybrid.add_peer("cluster-b", b_addr)?;

    let key = ObjectKey::round("fed", "node_0", 1)?;
    a.store.put(&key, pattern(BIG, 1)).await?;
    let report = a
        .hybrid
        .publish(
            Message::key("fed", NodeId(0), 1, &key),
            Targets::one(NodeId(1)),
        )
        .await?;
    ensure!(report.is_complete(), "{report:?}");
    ensure!(report.object_bytes_sent == BIG as u64);
    a.store.delete(&key).await?;

    let reply = node0.recv_timeout(Duration::from_secs(20)).await?;
    let reply_key = reply.body_key().context("a key")?;
    ensure!(reply_key.as_str() == "fed/node_1/round_1");
    let object = a.store.get(&reply_key).await?.context("stored")?;
    ensure!(object == pattern(BIG, 2), "the reply object differs");
    ensure!(
        a.store
            .head(&reply_key)
            .await?
            .context("head")?
            .readers
            .count()
            == Some(1)
    );
    ensure!(a.store.release(&reply_key).await? == ReleaseOutcome::Deleted);
    ensure!(a.store.is_empty().await?);
    tokio::task::block_in_place(|| kid.expect("DONE"))?;
    let status = tokio::task::block_in_place(|| kid.child.wait())?;
    ensure!(status.success(), "child failed: {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_object_leaves_nothing_partial() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_certs(dir.path())?;
    let a = start(dir.path(), "cluster-a", "cluster-b").await?;
    let mut kid = Kid::spawn("cut", dir.path(), a.hybrid.gateway().local_addr()?)?;
    tokio::task::block_in_place(|| kid.expect("HALF"))?;
    kid.child.kill()?; // SIGKILL: no goodbye on the wire; the gateway's timeouts notice.
    kid.child.wait()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.hybrid.gateway().stats().requests_failed == 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the cut put never failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(a.store.is_empty().await?, "a partial object was stored");
    let stats = a.store.stats().await?;
    ensure!(stats.bytes == 0 && stats.reserved == 0, "{stats:?}");
    Ok(())
}
