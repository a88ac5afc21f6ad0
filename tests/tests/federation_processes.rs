//! A federation spread over two clusters, each cluster its own OS process assembled from its
//! TOML file by `gos::Cluster` (cluster `east` on a shared-memory store, `west` on a memory
//! store), its nodes running rounds of share, gather and release through the gateways on
//! 127.0.0.1. Every model arrives intact, every key is deleted by its last reader, in both
//! stores.
//!
//! The clusters are this test binary run again with `GOS_FED_ROLE` set: the `cluster_process`
//! test then plays that cluster. The processes meet through files in a shared directory (each
//! writes its gateway address, then that it is done); every wait is bounded.
//!
//! Also: a reader process killed (SIGKILL) between its get and its release, holding the value
//! pinned in a shared-memory store; the object goes at its lease and the store ends empty.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gos::gateway::certs::FederationCa;
use gos::{Bytes, Cluster, ObjectStoreExt};

const ROLE: &str = "GOS_FED_ROLE";
const DIR: &str = "GOS_FED_DIR";
const ROUNDS: u64 = 3;
const MODEL: usize = 4 << 20;

/// Waits for `path` to exist, then reads it.
fn wait_for(path: &Path, limit: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text);
        }
        ensure!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `text` to `path` at once (a rename), so that a reader never sees half of it.
fn publish(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn config(id: &str, other: &str, store: &str) -> String {
    format!(
        r#"
        fed_id = "e2e"
        cluster_id = "{id}"
        {store}
        [topology]
        kind = "ring"
        nodes = 4
        clusters = ["east", "east", "west", "west"]
        [gateway]
        listen = "127.0.0.1:0"
        ca = "ca.pem"
        cert = "{id}.pem"
        key = "{id}.key"
        allow = ["{other}"]
        "#
    )
}

/// The child side: one cluster's process.
async fn play(id: &str, dir: &Path) -> Result<()> {
    let other = if id == "east" { "west" } else { "east" };
    let cluster = Cluster::from_file(dir.join(format!("{id}.toml"))).await?;
    let addr = cluster.gateway_addr().context("a gateway address")?;
    publish(&dir.join(format!("{id}.addr")), &addr.to_string())?;
    let peer = wait_for(&dir.join(format!("{other}.addr")), Duration::from_secs(20))?;
    cluster.add_peer(other, peer.trim().parse()?)?;

    let mut tasks = Vec::new();
    for mut node in cluster.nodes()? {
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let tag = node.id().0 as u8 * 16 + round as u8;
                node.share(round, Bytes::from(vec![tag; MODEL])).await?;
                let inputs = node.gather(round, Duration::from_secs(20)).await?;
                ensure!(
                    inputs.len() == 2,
                    "node {} got {} inputs",
                    node.id(),
                    inputs.len()
                );
                for input in inputs {
                    let want = input.from.0 as u8 * 16 + round as u8;
                    ensure!(
                        input.value.len() == MODEL && input.value.iter().all(|&b| b == want),
                        "the model of {} for round {round} arrived damaged",
                        input.from
                    );
                    node.release(input).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("the rounds did not finish in time")???;
    }
    let left = cluster.store().keys().await?;
    let messages = cluster.routing_stats().messages;
    publish(
        &dir.join(format!("{id}.done")),
        &format!("{} {messages}", left.len()),
    )?;
    // Keep the gateway up until the other cluster is done too: it may still deliver to us.
    wait_for(&dir.join(format!("{other}.done")), Duration::from_secs(60))?;
    cluster.shutdown().await;
    Ok(())
}

/// The child side of the killed-reader test: opens the store, pins the value of `key`, says so
/// and waits to be killed.
fn read_and_hang(dir: &Path) -> Result<()> {
    let name = std::fs::read_to_string(dir.join("store"))?;
    let key = gos::ObjectKey::new(std::fs::read_to_string(dir.join("key"))?.trim())?;
    let store = gos::shm::ShmStore::open(name.trim())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let value = runtime
        .block_on(gos::ObjectStore::get(&store, &key))?
        .context("the key to read")?;
    publish(&dir.join("read"), &value.len().to_string())?;
    // Never releases: the test kills this process (bounded, in case it does not).
    std::thread::sleep(Duration::from_secs(60));
    drop(value);
    Ok(())
}

#[test]
fn cluster_process() {
    if let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR))
        && role == "reader"
    {
        if let Err(e) = read_and_hang(Path::new(&dir)) {
            eprintln!("reader: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        return; // Only a child started by the test below plays a cluster.
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let Err(e) = runtime.block_on(play(&role, Path::new(&dir))) {
        eprintln!("cluster {role}: {e:#}");
        std::process::exit(1);
    }
}

/// Kills its child on drop, so that a failed assertion leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(id: &str, dir: &Path) -> Result<Guard> {
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "cluster_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ROLE, id)
        .env(DIR, dir)
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Guard(child))
}

fn wait(guard: &mut Guard, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = guard.0.try_wait()? {
            ensure!(status.success(), "a cluster process failed: {status}");
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("a cluster process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_federation_over_two_cluster_processes() -> Result<()> {
    if std::env::var_os(ROLE).is_some() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let ca = FederationCa::generate("e2e federation")?;
    ca.write(dir.path(), "ca")?;
    for id in ["east", "west"] {
        ca.issue(id)?.write(dir.path(), id)?;
    }
    let shm_name = format!("e2e-east-{}", std::process::id());
    let east_store =
        format!("[store]\nbackend = \"shm\"\nname = \"{shm_name}\"\ncapacity = \"128MiB\"");
    let west_store = "[store]\nbackend = \"memory\"\ncapacity = \"128MiB\"";
    std::fs::write(
        dir.path().join("east.toml"),
        config("east", "west", &east_store),
    )?;
    std::fs::write(
        dir.path().join("west.toml"),
        config("west", "east", west_store),
    )?;

    let result = (|| -> Result<Vec<PathBuf>> {
        let mut east = spawn("east", dir.path())?;
        let mut west = spawn("west", dir.path())?;
        wait(&mut east, Duration::from_secs(90))?;
        wait(&mut west, Duration::from_secs(90))?;
        Ok(vec![
            dir.path().join("east.done"),
            dir.path().join("west.done"),
        ])
    })();
    let _ = gos::shm::ShmStore::remove(&shm_name);
    let mut total_messages = 0;
    for done in result? {
        let text = std::fs::read_to_string(&done)?;
        let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
        let (left, messages) = (
            parts.next().context("keys")??,
            parts.next().context("msgs")??,
        );
        ensure!(
            left == 0,
            "{}: {left} keys left in the store",
            done.display()
        );
        total_messages += messages;
    }
    // 4 nodes x 2 ring neighbours x 3 rounds, each delivered once into some cluster's mailbox.
    ensure!(
        total_messages == 4 * 2 * ROUNDS,
        "{total_messages} messages routed"
    );
    Ok(())
}

#[test]
fn a_reader_process_killed_before_it_releases_leaves_the_object_to_its_lease() -> Result<()> {
    use gos::{Federation, NodeId, ObjectStore, Readers, Topology};
    if std::env::var_os(ROLE).is_some() {
        return Ok(());
    }
    const LEASE: Duration = Duration::from_millis(1500);
    let dir = tempfile::tempdir()?;
    let name = format!("e2e-killed-reader-{}", std::process::id());
    let _ = gos::shm::ShmStore::remove(&name);
    let store = Arc::new(gos::shm::ShmStore::create(
        &name,
        gos::shm::ShmConfig::new(gos::Limits::with_capacity(64 << 20)),
    )?);
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = gos::shm::ShmStore::remove(&self.0);
        }
    }
    let _remove = Remove(name.clone());
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // A star: node 0 shares, nodes 1 (here) and 2 (the process to kill) read.
        let shared_store: Arc<dyn ObjectStore> = store.clone();
        let federation =
            Federation::new("e2e", Topology::star(3, NodeId(0))?, shared_store).lease(Some(LEASE));
        let mut nodes = federation.nodes()?;
        let shared = nodes[0].share(1, Bytes::from(vec![7u8; 1 << 20])).await?;
        let meta = store.head(&shared.key).await?.context("the shared key")?;
        ensure!(meta.readers == Readers::exactly(2).unwrap(), "{meta:?}");
        publish(&dir.path().join("store"), &name)?;
        publish(&dir.path().join("key"), shared.key.as_str())?;
        let mut reader = spawn("reader", dir.path())?;
        wait_for(&dir.path().join("read"), Duration::from_secs(60))?;
        reader.0.kill()?;
        reader.0.wait()?;
        // The reader here releases; the dead one never will.
        let input = nodes[1].receive(Duration::from_secs(5)).await?;
        ensure!(!nodes[1].release(input).await?.deleted());
        ensure!(store.contains(&shared.key).await?, "gone before its lease");
        // Gone after its lease (bounded wait), its space back, the store empty.
        let start = Instant::now();
        while store.contains(&shared.key).await? {
            ensure!(
                start.elapsed() < LEASE + Duration::from_secs(10),
                "the object outlived its lease"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.sweep().await?;
        ensure!(store.keys().await?.is_empty(), "{:?}", store.keys().await?);
        let stats = store.stats().await?;
        ensure!(stats.entries == 0 && stats.bytes == 0, "{stats:?}");
        anyhow::Ok(())
    })
}
