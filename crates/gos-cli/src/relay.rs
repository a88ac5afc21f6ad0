//! `gos demo --store shm`: every node is its own OS process over one shared-memory store. This
//! process creates the store, runs the `TopologyManager` and relays the bus to each node over
//! its stdin and stdout, one JSON line per message (only keys travel this way); the models go
//! through shared memory.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use gos::shm::{ShmConfig, ShmStore};
use gos::{
    Bus, FederatedNode, GosError, Inbox, ManagerConfig, Message, NodeId, NodeRound, ObjectStore,
    ObjectStoreExt, RoundEvent, RoundObserver, RoundSync, Targets, TopologyError, TopologyManager,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};

use crate::demo::{self, DemoArgs, Summary};

/// A line from a node process to the driver.
#[derive(Debug, Serialize, Deserialize)]
enum ToDriver {
    /// Route this message.
    Publish { msg: Message, targets: Targets },
    /// This node finished a round and waits for `Go`.
    RoundDone(NodeRound),
    /// This node is done.
    Finished {
        peak_rss_kib: Option<u64>,
        shmem_kib: Option<u64>,
    },
}

/// A line from the driver to a node process.
#[derive(Debug, Serialize, Deserialize)]
enum ToNode {
    /// A message for this node's mailbox.
    Deliver(Message),
    /// The outcome of this node's last `Publish`.
    Published(Result<Vec<NodeId>, Undelivered>),
    /// Every node finished this round: go on.
    Go(u64),
}

/// Why a relayed publish failed, and whom it reached anyway.
#[derive(Debug, Serialize, Deserialize)]
struct Undelivered {
    reason: String,
    delivered: Vec<NodeId>,
    failed: Vec<(NodeId, String)>,
}

impl Undelivered {
    fn from_topology(e: TopologyError) -> Self {
        let reason = e.to_string();
        match e {
            TopologyError::Undelivered {
                delivered, failed, ..
            } => Undelivered {
                reason,
                delivered,
                failed: failed
                    .into_iter()
                    .map(|(node, e)| (node, e.to_string()))
                    .collect(),
            },
            _ => Undelivered {
                reason,
                delivered: Vec::new(),
                failed: Vec::new(),
            },
        }
    }

    /// The error the node's publish returns: a partial delivery says whom it reached.
    fn into_error(self) -> GosError {
        if self.delivered.is_empty() {
            GosError::Bus(format!("the driver could not route: {}", self.reason))
        } else {
            GosError::Undelivered {
                delivered: self.delivered,
                failed: self.failed,
            }
        }
    }
}

/// Arguments of the hidden `gos demo-node`.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// The shared-memory store's name.
    #[arg(long)]
    shm: String,
    /// This node.
    #[arg(long)]
    node: u32,
    /// The demo's arguments, as JSON.
    #[arg(long)]
    demo: String,
}

/// The driver's progress bar, and the `Go` that starts the next round on every node.
struct RelayObserver {
    progress: demo::Progress,
    writers: Vec<mpsc::UnboundedSender<ToNode>>,
}

impl RoundObserver for RelayObserver {
    fn node_done(&mut self, done: &NodeRound) {
        self.progress.node_done(done);
    }

    fn round_done(&mut self, round: u64) {
        self.progress.round_done(round);
        for w in &self.writers {
            let _ = w.send(ToNode::Go(round));
        }
    }
}

/// Removes the store when the demo ends, however it ends.
pub(crate) struct RemoveOnDrop(pub(crate) String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = ShmStore::remove(&self.0);
    }
}

pub(crate) async fn run_shm(args: &DemoArgs) -> Result<Summary> {
    let topology = args.build_topology()?;
    let name = format!("demo-{}", std::process::id());
    let limits = args.store_limits();
    let config = ShmConfig::new(limits).max_processes(args.nodes as u32 + 8);
    // The arena is twice the capacity (the default): seconds to fault in for a large model.
    let spinner = crate::progress::spinner(crate::progress::shown(args.quiet, args.json));
    let created = crate::progress::create_shm(
        &name,
        config,
        limits.capacity_bytes.saturating_mul(2),
        &spinner,
    );
    spinner.finish_and_clear();
    let store = created?;
    let _cleanup = RemoveOnDrop(name.clone());
    let manager = TopologyManager::new(topology, ManagerConfig::default());
    let exe = std::env::current_exe().context("finding the gos executable")?;
    let demo_json = serde_json::to_string(args)?;

    let (round_tx, round_rx) = mpsc::unbounded_channel::<RoundEvent>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u32, Option<u64>)>();
    let mut children: Vec<Child> = Vec::new();
    let mut writers = Vec::new();
    // Every mailbox exists before the first node runs: a node publishing to a neighbour that
    // is not registered yet would fail.
    let mut mailboxes = (0..args.nodes as u32)
        .map(|i| manager.register(NodeId(i)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    for i in 0..args.nodes as u32 {
        let mut child = Command::new(&exe)
            .args([
                "demo-node",
                "--shm",
                &name,
                "--node",
                &i.to_string(),
                "--demo",
                &demo_json,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {i}"))?;
        let mut stdin = child.stdin.take().context("node stdin")?;
        let stdout = child.stdout.take().context("node stdout")?;
        // One writer task per node owns its stdin; everything to the node goes through it.
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ToNode>();
        tokio::spawn(async move {
            while let Some(line) = out_rx.recv().await {
                let Ok(mut text) = serde_json::to_string(&line) else {
                    break;
                };
                text.push('\n');
                if stdin.write_all(text.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        // The node's mailbox, forwarded to its process.
        let mut mailbox = mailboxes.next().context("a mailbox per node")?;
        let forward = out_tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = mailbox.recv().await {
                if forward.send(ToNode::Deliver(msg)).is_err() {
                    break;
                }
            }
        });
        // What the node says.
        let (manager, reply, rounds, done) = (
            manager.clone(),
            out_tx.clone(),
            round_tx.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut finished = false;
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<ToDriver>(&line) {
                    Ok(ToDriver::Publish { msg, targets }) => {
                        let result = manager
                            .publish(msg, targets)
                            .await
                            .map(|r| r.delivered)
                            .map_err(Undelivered::from_topology);
                        let _ = reply.send(ToNode::Published(result));
                    }
                    Ok(ToDriver::RoundDone(stat)) => {
                        let _ = rounds.send(Ok(stat));
                    }
                    Ok(ToDriver::Finished {
                        peak_rss_kib,
                        shmem_kib,
                    }) => {
                        // Private memory at the peak: the shared store's pages, still mapped,
                        // were counted in the peak too.
                        let private =
                            peak_rss_kib.map(|p| p.saturating_sub(shmem_kib.unwrap_or(0)));
                        finished = true;
                        let _ = done.send((i, private));
                    }
                    Err(e) => tracing::warn!(node = i, "bad line from node: {e}"),
                }
            }
            if !finished {
                // Its output ended before it finished: it failed (its error is on stderr) or
                // was killed. The others may be waiting for it, so the run stops here.
                let _ = rounds.send(Err(format!("node {i} exited before finishing")));
            }
        });
        children.push(child);
        writers.push(out_tx);
    }
    drop((round_tx, done_tx));

    let mut observer = RelayObserver {
        progress: demo::Progress {
            bar: demo::progress_bar(args),
            rounds: args.rounds,
        },
        writers: writers.clone(),
    };
    let rows =
        gos::collect_rounds(round_rx, args.nodes, args.rounds, &manager, &mut observer).await;
    observer.progress.bar.finish_and_clear();
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            for child in &mut children {
                let _ = child.start_kill();
            }
            return Err(anyhow::Error::new(e).context("a node process failed (its error is above)"));
        }
    };
    let mut peak = 0u64;
    for _ in 0..args.nodes {
        let (_, kib) = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
            .await
            .context("waiting for the nodes to finish")?
            .context("a node exited without finishing")?;
        peak = peak.max(kib.unwrap_or(0));
    }
    for (i, mut child) in children.into_iter().enumerate() {
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .with_context(|| format!("waiting for node {i} to exit"))??;
        if !status.success() {
            bail!("node {i} exited with {status}");
        }
    }
    let left_keys = store.keys().await?;
    let stats = store.stats().await?;
    Ok(Summary {
        layout: format!(
            "{} nodes as OS processes over one shared-memory store ({} capacity)",
            args.nodes,
            demo::fmt_bytes(stats.capacity_bytes)
        ),
        rows,
        initial_spread: (args.nodes - 1) as f32,
        peak_memory: format!(
            "the shared-memory store {} (one mapping, shared by every process); private memory at peak: largest node process {}, driver {}",
            demo::fmt_bytes(
                std::fs::metadata(store.path())
                    .map(|m| m.len())
                    .unwrap_or(0)
            ),
            demo::fmt_kib(Some(peak)),
            demo::fmt_kib(
                demo::peak_rss_kib().map(|p| p.saturating_sub(demo::shmem_kib().unwrap_or(0)))
            ),
        ),
        left_keys,
    })
}

/// The node side: lines to the driver on stdout.
#[derive(Debug, Clone)]
struct Out(Arc<Mutex<tokio::io::Stdout>>);

impl Out {
    async fn send(&self, line: &ToDriver) -> Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        let mut out = self.0.lock().await;
        out.write_all(text.as_bytes()).await?;
        out.flush().await?;
        Ok(())
    }
}

/// A [`Bus`] whose publishes the driver routes.
#[derive(Debug)]
struct RelayBus {
    out: Out,
    replies: Mutex<mpsc::UnboundedReceiver<Result<Vec<NodeId>, Undelivered>>>,
    topology: gos::Topology,
}

#[async_trait]
impl Bus for RelayBus {
    async fn publish(&self, msg: Message, targets: Targets) -> Result<Vec<NodeId>, GosError> {
        // One publish at a time per node: hold the reply queue across the round trip.
        let mut replies = self.replies.lock().await;
        self.out
            .send(&ToDriver::Publish { msg, targets })
            .await
            .map_err(|e| GosError::Bus(format!("relay to the driver: {e}")))?;
        match replies.recv().await {
            Some(Ok(reached)) => Ok(reached),
            Some(Err(e)) => Err(e.into_error()),
            None => Err(GosError::Bus("the driver is gone".into())),
        }
    }

    fn out_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        self.topology.neighbours(node).to_vec()
    }

    fn in_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        self.topology.in_neighbours(node)
    }
}

/// The mailbox the driver fills.
#[derive(Debug)]
struct RelayInbox {
    node: NodeId,
    rx: mpsc::UnboundedReceiver<Message>,
}

#[async_trait]
impl Inbox for RelayInbox {
    fn node(&self) -> NodeId {
        self.node
    }

    async fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Message, gos::topology::RecvError> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(gos::topology::RecvError::Closed),
            Err(_) => Err(gos::topology::RecvError::Timeout(timeout)),
        }
    }
}

struct ChildSync {
    out: Out,
    go: Mutex<mpsc::UnboundedReceiver<u64>>,
}

#[async_trait]
impl RoundSync for ChildSync {
    async fn round_done(&self, done: NodeRound) -> Result<(), GosError> {
        self.out
            .send(&ToDriver::RoundDone(done))
            .await
            .map_err(|e| GosError::Bus(format!("reporting to the driver: {e}")))?;
        loop {
            match self.go.lock().await.recv().await {
                Some(r) if r == done.round => return Ok(()),
                Some(_) => continue,
                None => return Err(GosError::Bus("the driver is gone".into())),
            }
        }
    }
}

pub(crate) async fn run_node(args: NodeArgs) -> Result<()> {
    let demo: DemoArgs =
        serde_json::from_str(&args.demo).context("--demo is not the demo's arguments")?;
    let store: Arc<dyn ObjectStore> = Arc::new(
        ShmStore::open(&args.shm)
            .with_context(|| format!("opening the shared-memory store {}", args.shm))?,
    );
    let out = Out(Arc::new(Mutex::new(tokio::io::stdout())));
    let (msg_tx, msg_rx) = mpsc::unbounded_channel();
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<ToNode>(&line) {
                Ok(ToNode::Deliver(msg)) => {
                    let _ = msg_tx.send(msg);
                }
                Ok(ToNode::Published(r)) => {
                    let _ = reply_tx.send(r);
                }
                Ok(ToNode::Go(r)) => {
                    let _ = go_tx.send(r);
                }
                Err(e) => tracing::warn!("bad line from the driver: {e}"),
            }
        }
    });
    let node_id = NodeId(args.node);
    let bus = Arc::new(RelayBus {
        out: out.clone(),
        replies: Mutex::new(reply_rx),
        topology: demo.build_topology()?,
    });
    let inbox = Box::new(RelayInbox {
        node: node_id,
        rx: msg_rx,
    });
    // Keep the mapping until the memory figures are read: its pages count in the peak.
    let mapping = Arc::clone(&store);
    let node = FederatedNode::new(demo::FED_ID, store, bus, inbox, demo.policy());
    let sync = ChildSync {
        out: out.clone(),
        go: Mutex::new(go_rx),
    };
    demo::node_rounds(node, &demo, &sync).await?;
    out.send(&ToDriver::Finished {
        peak_rss_kib: demo::peak_rss_kib(),
        shmem_kib: demo::shmem_kib(),
    })
    .await?;
    drop(mapping);
    Ok(())
}
