//! `gos demo`: a simulated federation. Every round each node "trains" its model, shares it
//! (into the store; its key onto the bus), gathers its neighbours' models (zero-copy from the
//! store), averages them into its own and releases them. Then a summary table: round times,
//! bytes through the bus vs through the store, peak memory, and how far the models converged.
//!
//! Three layouts: in-process over the memory store (the default); `--store shm`, every node its
//! own OS process over one shared-memory store with the bus relayed by this process; and
//! `--clusters N`, the nodes split over N clusters, each with its own store, joined by QUIC
//! gateways on 127.0.0.1 with freshly generated certificates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use gos::config::ByteSize;
use gos::{
    DeletePolicy, FederatedNode, Federation, Limits, MemoryStore, NodeId, ObjectStore, Topology,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, mpsc};

/// The federation id every demo key starts with.
pub(crate) const FED_ID: &str = "demo";

/// How long a node waits for its neighbours' models in one round.
const GATHER_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `gos demo`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub(crate) struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 8)]
    pub(crate) nodes: usize,
    /// The topology.
    #[arg(long, value_enum, default_value_t = TopologyArg::Ring)]
    pub(crate) topology: TopologyArg,
    /// Degree of a k-connected topology.
    #[arg(long, default_value_t = 3)]
    pub(crate) k: usize,
    /// Seed of a k-connected topology.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Rounds to run.
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: u64,
    /// Size of each node's model, such as 32MiB or 100MiB.
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    pub(crate) model: u64,
    /// The store: in-process memory, or shared memory with every node its own process.
    #[arg(long, value_enum, default_value_t = StoreArg::Memory)]
    pub(crate) store: StoreArg,
    /// Split the nodes over this many clusters joined by QUIC gateways (memory stores).
    #[arg(long, default_value_t = 1)]
    pub(crate) clusters: usize,
    /// Who deletes a shared model.
    #[arg(long, value_enum, default_value_t = PolicyArg::LastReader)]
    pub(crate) delete: PolicyArg,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<ByteSize>().map(|b| b.0)
}

/// A topology of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum TopologyArg {
    /// Each node sends to its two ring neighbours.
    Ring,
    /// Node 0 is the hub.
    Star,
    /// Everyone sends to everyone.
    Full,
    /// Random k-regular (--k, --seed).
    KConnected,
}

/// A store of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum StoreArg {
    /// In-process memory store; nodes are tasks.
    Memory,
    /// Shared-memory store; nodes are OS processes.
    Shm,
}

/// A delete policy of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum PolicyArg {
    /// The last reader's release deletes.
    LastReader,
    /// The owner deletes its previous round's model when it shares the next.
    OwnerNextRound,
}

impl DemoArgs {
    pub(crate) fn build_topology(&self) -> Result<Topology> {
        let n = self.nodes;
        Ok(match self.topology {
            TopologyArg::Ring => Topology::ring(n)?,
            TopologyArg::Star => Topology::star(n, NodeId(0))?,
            TopologyArg::Full => Topology::full(n)?,
            TopologyArg::KConnected => Topology::k_connected(n, self.k, self.seed)?,
        })
    }

    pub(crate) fn policy(&self) -> DeletePolicy {
        match self.delete {
            PolicyArg::LastReader => DeletePolicy::LastReader,
            PolicyArg::OwnerNextRound => DeletePolicy::OwnerNextRound,
        }
    }

    /// Model size in bytes, a whole number of f32s.
    pub(crate) fn model_bytes(&self) -> usize {
        (self.model as usize) / 4 * 4
    }

    /// Store capacity: every node's model of two rounds in flight, with room to spare. Entries:
    /// for each of two rounds in flight, every node's key and a release marker per reader
    /// (the last-reader rule), plus slack.
    pub(crate) fn store_limits(&self, topology: &Topology) -> Limits {
        let model = self.model_bytes() as u64;
        let per_round: u64 = topology
            .nodes()
            .map(|n| 1 + topology.neighbours(n).len() as u64)
            .sum();
        Limits::with_capacity((3 * self.nodes as u64 * model).max(64 << 20))
            .max_value_size(model.max(1))
            .max_entries(2 * per_round + 1024)
    }

    fn validate(&self) -> Result<()> {
        ensure!(self.nodes >= 2, "--nodes must be at least 2");
        ensure!(self.rounds >= 1, "--rounds must be at least 1");
        ensure!(self.model_bytes() >= 4, "--model must be at least 4 bytes");
        ensure!(self.clusters >= 1, "--clusters must be at least 1");
        ensure!(
            self.clusters <= self.nodes,
            "--clusters ({}) cannot exceed --nodes ({})",
            self.clusters,
            self.nodes
        );
        if self.store == StoreArg::Shm && self.clusters > 1 {
            bail!(
                "--store shm and --clusters > 1 cannot be combined (each cluster of the demo uses a memory store)"
            );
        }
        Ok(())
    }
}

/// What one node did in one round.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct NodeRound {
    pub(crate) node: u32,
    pub(crate) round: u64,
    /// Bytes this node put into the store.
    pub(crate) store_bytes: u64,
    /// Bytes this node read from the store (zero-copy).
    pub(crate) read_bytes: u64,
    /// The first value of the node's model after aggregation (to show convergence).
    pub(crate) probe: f32,
}

/// How a node says it finished a round and waits for the others.
#[async_trait]
pub(crate) trait RoundSync: Send + Sync {
    async fn round_done(&self, stat: NodeRound) -> Result<()>;
}

/// In-process: report on a channel, then wait at a barrier.
struct LocalSync {
    tx: mpsc::UnboundedSender<RoundEvent>,
    barrier: Arc<Barrier>,
}

#[async_trait]
impl RoundSync for LocalSync {
    async fn round_done(&self, stat: NodeRound) -> Result<()> {
        self.tx.send(Ok(stat)).context("the demo driver is gone")?;
        self.barrier.wait().await;
        Ok(())
    }
}

/// One node's rounds: train, share, gather, aggregate, release.
pub(crate) async fn node_rounds(
    mut node: FederatedNode,
    rounds: u64,
    model_bytes: usize,
    sync: &dyn RoundSync,
) -> Result<()> {
    let id = node.id().0;
    let mut model = vec![id as f32; model_bytes / 4];
    for round in 0..rounds {
        // "Training": touch every weight, as a real step would.
        let step = 0.001 * (round as f32 + 1.0);
        for w in model.iter_mut() {
            *w += step;
        }
        node.share_with(round, model_bytes, |buf| write_f32s(&model, buf))
            .await
            .with_context(|| format!("node {id} sharing round {round}"))?;
        let inputs = node
            .gather(round, GATHER_TIMEOUT)
            .await
            .with_context(|| format!("node {id} gathering round {round}"))?;
        let read_bytes: u64 = inputs.iter().map(|i| i.value.len() as u64).sum();
        average_into(&mut model, inputs.iter().map(|i| &i.value[..]));
        for input in inputs {
            node.release(input).await?;
        }
        sync.round_done(NodeRound {
            node: id,
            round,
            store_bytes: model_bytes as u64,
            read_bytes,
            probe: model[0],
        })
        .await?;
    }
    node.finish().await?;
    Ok(())
}

fn write_f32s(model: &[f32], buf: &mut [u8]) {
    for (w, out) in model.iter().zip(buf.chunks_exact_mut(4)) {
        out.copy_from_slice(&w.to_le_bytes());
    }
}

/// `model = (model + Σ inputs) / (1 + inputs)`, reading the inputs in place.
fn average_into<'a>(model: &mut [f32], inputs: impl Iterator<Item = &'a [u8]>) {
    let mut count = 1.0f32;
    for input in inputs {
        for (w, bytes) in model.iter_mut().zip(input.chunks_exact(4)) {
            *w += f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        count += 1.0;
    }
    let inv = 1.0 / count;
    for w in model.iter_mut() {
        *w *= inv;
    }
}

/// One row of the summary.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoundRow {
    pub(crate) time: Duration,
    pub(crate) bus_messages: u64,
    pub(crate) bus_bytes: u64,
    pub(crate) store_bytes: u64,
    pub(crate) read_bytes: u64,
    pub(crate) icrf_bytes: u64,
    pub(crate) spread: f32,
}

/// Counters sampled at each round's end.
pub(crate) trait Meter: Send {
    /// (bus messages, bus bytes, object bytes through gateways) so far.
    fn sample(&self) -> (u64, u64, u64);
}

/// What the driver hears from a node: a finished round, or why the node stopped.
pub(crate) type RoundEvent = Result<NodeRound, String>;

/// Collects every node's round reports, timing each round from the last report. Fails at once
/// when a node reports a failure (the others may be waiting for it).
pub(crate) async fn collect(
    mut rx: mpsc::UnboundedReceiver<RoundEvent>,
    nodes: usize,
    rounds: u64,
    meter: &dyn Meter,
    progress: &ProgressBar,
    mut on_round: impl FnMut(u64),
) -> Result<Vec<RoundRow>> {
    let mut rows = Vec::new();
    let mut started = Instant::now();
    let mut last = meter.sample();
    for round in 0..rounds {
        let mut row = RoundRow::default();
        let mut probes = Vec::with_capacity(nodes);
        while probes.len() < nodes {
            let stat = rx
                .recv()
                .await
                .with_context(|| format!("a node stopped before finishing round {round}"))?
                .map_err(anyhow::Error::msg)?;
            ensure!(
                stat.round == round,
                "node {} reported round {} during round {round}",
                stat.node,
                stat.round
            );
            row.store_bytes += stat.store_bytes;
            row.read_bytes += stat.read_bytes;
            probes.push(stat.probe);
            progress.inc(1);
        }
        let now = Instant::now();
        row.time = now - started;
        started = now;
        let sample = meter.sample();
        row.bus_messages = sample.0 - last.0;
        row.bus_bytes = sample.1 - last.1;
        row.icrf_bytes = sample.2 - last.2;
        last = sample;
        let (min, max) = probes
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        row.spread = max - min;
        rows.push(row);
        on_round(round);
    }
    Ok(rows)
}

pub(crate) fn progress_bar(args: &DemoArgs) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(args.rounds * args.nodes as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} round {msg} [{bar:40}] {pos}/{len} node-rounds ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("1");
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Peak resident memory of this process, in KiB (Linux `VmHWM`), if known.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// Shared memory (the store's mapping) resident in this process now, in KiB (`RssShmem`).
pub(crate) fn shmem_kib() -> Option<u64> {
    status_kib("RssShmem:")
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The end of a run: what the table prints.
pub(crate) struct Summary {
    pub(crate) layout: String,
    pub(crate) rows: Vec<RoundRow>,
    pub(crate) initial_spread: f32,
    pub(crate) peak_memory: String,
    pub(crate) left_in_store: u64,
}

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    args.validate()?;
    let summary = if args.store == StoreArg::Shm {
        crate::relay::run_shm(&args).await?
    } else if args.clusters > 1 {
        run_clusters(&args).await?
    } else {
        run_in_process(&args).await?
    };
    print_summary(&args, &summary);
    Ok(())
}

struct ManagerMeter(
    Vec<gos::TopologyManager>,
    Vec<Arc<gos::gateway::HybridTopologyManager>>,
);

impl Meter for ManagerMeter {
    fn sample(&self) -> (u64, u64, u64) {
        let mut s = (0, 0, 0);
        for m in &self.0 {
            let st = m.stats();
            s.0 += st.messages;
            s.1 += st.bytes;
        }
        for h in &self.1 {
            s.2 += h.gateway().stats().bytes_in;
        }
        s
    }
}

async fn drive(
    args: &DemoArgs,
    nodes: Vec<FederatedNode>,
    meter: &dyn Meter,
) -> Result<Vec<RoundRow>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let barrier = Arc::new(Barrier::new(nodes.len()));
    let progress = progress_bar(args);
    let mut tasks = Vec::new();
    for node in nodes {
        let sync = LocalSync {
            tx: tx.clone(),
            barrier: Arc::clone(&barrier),
        };
        let (rounds, model) = (args.rounds, args.model_bytes());
        let (failures, id) = (tx.clone(), node.id());
        tasks.push(tokio::spawn(async move {
            let result = node_rounds(node, rounds, model, &sync).await;
            if let Err(e) = &result {
                let _ = failures.send(Err(format!("node {}: {e:#}", id.0)));
            }
            result
        }));
    }
    drop(tx);
    let (bar, rounds) = (progress.clone(), args.rounds);
    let rows = collect(rx, args.nodes, args.rounds, meter, &progress, move |r| {
        bar.set_message((r + 2).min(rounds).to_string())
    })
    .await;
    progress.finish_and_clear();
    if rows.is_err() {
        // The others may wait for the failed node forever (at the round barrier, in gather).
        for t in &tasks {
            t.abort();
        }
        return rows;
    }
    for t in tasks {
        t.await.context("a node task panicked")??;
    }
    rows
}

async fn run_in_process(args: &DemoArgs) -> Result<Summary> {
    let topology = args.build_topology()?;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new(args.store_limits(&topology)));
    let federation = Federation::new(FED_ID, topology, Arc::clone(&store)).policy(args.policy());
    let nodes = federation.nodes()?;
    let meter = ManagerMeter(vec![federation.manager().clone()], Vec::new());
    let rows = drive(args, nodes, &meter).await?;
    Ok(Summary {
        layout: format!("{} nodes as tasks in one process, memory store", args.nodes),
        rows,
        initial_spread: (args.nodes - 1) as f32,
        peak_memory: format!("{} (this process)", fmt_kib(peak_rss_kib())),
        left_in_store: store.len().await? as u64,
    })
}

async fn run_clusters(args: &DemoArgs) -> Result<Summary> {
    use gos::gateway::certs::FederationCa;
    use gos::gateway::{
        AllowList, GatewayConfig, HybridTopology, HybridTopologyManager, TlsSettings,
    };

    let topology = args.build_topology()?;
    let ids: Vec<String> = (0..args.clusters).map(|c| format!("cluster-{c}")).collect();
    let assignment: Vec<String> = (0..args.nodes)
        .map(|i| ids[i * args.clusters / args.nodes].clone())
        .collect();
    let limits = args.store_limits(&topology);
    let hybrid = HybridTopology::new(topology, assignment.clone())?;
    let ca = FederationCa::generate("gos-demo-federation")?;
    let mut managers = Vec::new();
    let mut stores = Vec::new();
    for id in &ids {
        let tls = TlsSettings {
            identity: ca.issue(id)?,
            ca: vec![ca.cert_der()?],
            allowed: AllowList::new(ids.iter().filter(|o| *o != id).cloned()),
        };
        let config = GatewayConfig::new("127.0.0.1:0".parse()?, tls);
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new(limits));
        let manager = HybridTopologyManager::start(
            config,
            hybrid.clone(),
            Arc::clone(&store),
            Default::default(),
        )
        .await
        .with_context(|| format!("starting the gateway of {id}"))?;
        managers.push(Arc::new(manager));
        stores.push(store);
    }
    for (i, m) in managers.iter().enumerate() {
        for (j, other) in managers.iter().enumerate() {
            if i != j {
                m.add_peer(&ids[j], other.gateway().local_addr()?)?;
            }
        }
    }
    let mut nodes = Vec::new();
    for (i, cluster) in assignment.iter().enumerate() {
        let c = ids
            .iter()
            .position(|id| id == cluster)
            .context("cluster of a node")?;
        let mailbox = managers[c].register(NodeId(i as u32))?;
        let bus: Arc<dyn gos::Bus> = managers[c].clone();
        nodes.push(FederatedNode::new(
            FED_ID,
            Arc::clone(&stores[c]),
            bus,
            Box::new(mailbox),
            args.policy(),
        ));
    }
    let meter = ManagerMeter(
        managers.iter().map(|m| m.local().clone()).collect(),
        managers.clone(),
    );
    let rows = drive(args, nodes, &meter).await?;
    let mut left = 0;
    for s in &stores {
        left += s.len().await? as u64;
    }
    for m in managers {
        if let Ok(m) = Arc::try_unwrap(m) {
            m.shutdown().await;
        }
    }
    Ok(Summary {
        layout: format!(
            "{} nodes in {} clusters (memory stores) joined by QUIC gateways on 127.0.0.1",
            args.nodes, args.clusters
        ),
        rows,
        initial_spread: (args.nodes - 1) as f32,
        peak_memory: format!("{} (this process)", fmt_kib(peak_rss_kib())),
        left_in_store: left,
    })
}

pub(crate) fn fmt_kib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "unknown".to_owned(), |k| fmt_bytes(k * 1024))
}

pub(crate) fn fmt_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if b >= size {
            return format!("{:.1} {unit}", b as f64 / size as f64);
        }
    }
    format!("{b} B")
}

fn print_summary(args: &DemoArgs, s: &Summary) {
    println!();
    println!(
        "GOS demo: {} topology, {} rounds, {} model per node; {}",
        format!("{:?}", args.topology).to_lowercase(),
        args.rounds,
        fmt_bytes(args.model_bytes() as u64),
        s.layout
    );
    println!();
    let icrf = args.clusters > 1;
    print!(
        "{:>5} {:>10} {:>9} {:>10} {:>12} {:>12}",
        "round", "time", "bus msgs", "bus bytes", "store put", "store read"
    );
    if icrf {
        print!(" {:>12}", "via gateway");
    }
    println!(" {:>10}", "spread");
    let mut total = RoundRow::default();
    for (i, r) in s.rows.iter().enumerate() {
        print!(
            "{:>5} {:>8.1}ms {:>9} {:>10} {:>12} {:>12}",
            i + 1,
            r.time.as_secs_f64() * 1e3,
            r.bus_messages,
            fmt_bytes(r.bus_bytes),
            fmt_bytes(r.store_bytes),
            fmt_bytes(r.read_bytes)
        );
        if icrf {
            print!(" {:>12}", fmt_bytes(r.icrf_bytes));
        }
        println!(" {:>10.4}", r.spread);
        total.time += r.time;
        total.bus_messages += r.bus_messages;
        total.bus_bytes += r.bus_bytes;
        total.store_bytes += r.store_bytes;
        total.read_bytes += r.read_bytes;
        total.icrf_bytes += r.icrf_bytes;
    }
    print!(
        "{:>5} {:>8.1}ms {:>9} {:>10} {:>12} {:>12}",
        "all",
        total.time.as_secs_f64() * 1e3,
        total.bus_messages,
        fmt_bytes(total.bus_bytes),
        fmt_bytes(total.store_bytes),
        fmt_bytes(total.read_bytes)
    );
    if icrf {
        print!(" {:>12}", fmt_bytes(total.icrf_bytes));
    }
    println!();
    println!();
    let per_msg = total.bus_bytes.checked_div(total.bus_messages).unwrap_or(0);
    println!(
        "bus vs store: {} of keys on the bus ({per_msg} B per message) moved {} of models read from the store ({:.0}x less through the bus)",
        fmt_bytes(total.bus_bytes),
        fmt_bytes(total.read_bytes),
        total.read_bytes as f64 / total.bus_bytes.max(1) as f64
    );
    println!("peak memory: {}", s.peak_memory);
    println!(
        "consensus: the spread of the models' first weight went from {:.4} to {:.4}",
        s.initial_spread,
        s.rows.last().map_or(s.initial_spread, |r| r.spread)
    );
    println!("keys left in the store: {}", s.left_in_store);
}

pub(crate) use crate::relay::NodeArgs;

pub(crate) async fn run_node(args: NodeArgs) -> Result<()> {
    crate::relay::run_node(args).await
}
