//! `gos demo`: a simulated federation. Every round each node "trains" its model, shares it
//! (into the store; its key onto the bus), gathers its neighbours' models (zero-copy from the
//! store), averages them into its own and releases them. Then a summary table: round times,
//! bytes through the bus vs through the store, peak memory, and how far the models converged.
//!
//! Three layouts: in-process over the memory store (the default); `--store shm`, every node its
//! own OS process over one shared-memory store with the bus relayed by this process; and
//! `--clusters N`, the nodes split over N clusters, each with its own store, joined by QUIC
//! gateways on 127.0.0.1 with freshly generated certificates.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use gos::config::ByteSize;
use gos::{
    DEFAULT_GATHER_TIMEOUT, DeletePolicy, FederatedNode, Federation, GosError, Limits, MemoryStore,
    NodeId, NodeRound, ObjectStore, ObjectStoreExt, Received, RoundModel, RoundObserver,
    RoundTiming, Topology, Traffic,
};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

/// The federation id every demo key starts with.
pub(crate) const FED_ID: &str = "demo";

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
    /// The store: in-process memory, shared memory with every node its own process, or a
    /// Redis server or cluster you started (--redis-url).
    #[arg(long, value_enum, default_value_t = StoreArg::Memory)]
    pub(crate) store: StoreArg,
    /// With --store redis: the URL of a Redis server, or of a cluster's masters (repeat the
    /// flag or give a comma list); default $GOS_REDIS_URL. The demo starts no server: run
    /// `redis-server --port 6379 --save '' --appendonly no` first (a cluster: docs/redis.md).
    #[arg(long = "redis-url", value_name = "URL", value_delimiter = ',')]
    #[serde(default)]
    pub(crate) redis_url: Vec<String>,
    /// Split the nodes over this many clusters joined by QUIC gateways (memory stores).
    #[arg(long, default_value_t = 1)]
    pub(crate) clusters: usize,
    /// Who deletes a shared model.
    #[arg(long, value_enum, default_value_t = PolicyArg::LastReader)]
    pub(crate) delete: PolicyArg,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Print one JSON document at the end instead of the summary table (and no progress bar).
    #[arg(long)]
    #[serde(default)]
    pub(crate) json: bool,
}

/// The end of `gos demo --help`.
pub(crate) const DEMO_HELP: &str = "\
Progress (a bar of node-rounds; a spinner while a shared-memory store is created) goes to
stderr, on a terminal only, and never with --quiet or --json.
With --json, stdout is one JSON document, written at the end:
  {\"topology\":\"ring\",\"nodes\":8,\"rounds\":5,\"model_bytes\":33554432,\"store\":\"memory\",
   \"clusters\":1,\"delete\":\"last-reader\",\"layout\":\"...\",\"per_round\":[{\"round\":1,
   \"time_ms\":150.2,\"bus_messages\":16,\"bus_bytes\":1504,\"put_bytes\":...,\"read_bytes\":...,
   \"gateway_bytes\":0,\"spread\":2.5}, ...],\"total\":{...the same sums...},
   \"initial_spread\":7.0,\"final_spread\":0.6,\"peak_memory\":\"...\",\"keys_left\":[]}";

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<ByteSize>().map(|b| b.0)
}

/// The name a value of a `clap::ValueEnum` has on the command line (`k-connected`).
pub(crate) fn value_name(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

/// A topology of `gos demo` and `gos bench`.
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

impl std::fmt::Display for TopologyArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&value_name(self))
    }
}

impl std::fmt::Display for StoreArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&value_name(self))
    }
}

/// A store of `gos demo` and `gos bench` (what the nodes are: each command's --store(s) help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum StoreArg {
    /// An in-process memory store.
    Memory,
    /// One shared-memory store on this host.
    Shm,
    /// A Redis server or Redis Cluster (--redis-url); nodes are tasks.
    Redis,
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

    /// Store capacity: every node's model of two rounds in flight, with room to spare; as many
    /// entries (a store holds models only: each key's readers are counted with it).
    pub(crate) fn store_limits(&self) -> Limits {
        let model = self.model_bytes() as u64;
        let nodes = self.nodes as u64;
        Limits::with_capacity(nodes.saturating_mul(3).saturating_mul(model).max(64 << 20))
            .max_value_size(model.max(1))
            .max_entries(3 * nodes + 64)
    }

    /// Memory the demo needs, roughly: every node's own model, and two rounds of models in the
    /// store(s).
    fn memory_needed(&self) -> u64 {
        (self.nodes as u64)
            .saturating_mul(3)
            .saturating_mul(self.model_bytes() as u64)
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
        if self.store == StoreArg::Redis {
            ensure!(
                self.clusters == 1,
                "--store redis and --clusters > 1 cannot be combined (each cluster of the demo uses a memory store)"
            );
        } else {
            ensure!(
                self.redis_url.is_empty(),
                "--redis-url applies to --store redis only"
            );
        }
        if self.store == StoreArg::Shm && self.clusters > 1 {
            bail!(
                "--store shm and --clusters > 1 cannot be combined (each cluster of the demo uses a memory store)"
            );
        }
        if let Some(available) = mem_available() {
            let need = self.memory_needed();
            ensure!(
                need <= available,
                "the demo needs about {} of memory ({} nodes, each with its {} model and two rounds of them in the store) but {} is available: use a smaller --model or fewer --nodes",
                fmt_bytes(need),
                self.nodes,
                fmt_bytes(self.model_bytes() as u64),
                fmt_bytes(available)
            );
        }
        Ok(())
    }
}

/// Memory available for new work on this machine (Linux `MemAvailable`), if known.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// Runs `work` until it ends or the process gets SIGINT (Ctrl-C) or SIGTERM. On a signal,
/// `work` is dropped, which kills its node processes and removes its stores (their guards),
/// and the run ends with an error line.
pub(crate) async fn until_signal<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let name = tokio::select! {
        result = work => return result,
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    bail!("stopped by {name}: node processes stopped and stores removed")
}

/// A demo node's model: f32 weights, "trained" (every weight touched) before each share,
/// written straight into the store, averaged with the neighbours' after each gather.
pub(crate) struct DemoModel {
    weights: Vec<f32>,
    bytes: usize,
}

impl DemoModel {
    /// Node `id`'s model of `bytes` bytes (a whole number of f32s), all weights `id`.
    pub(crate) fn new(id: NodeId, bytes: usize) -> Result<Self> {
        let len = bytes / 4;
        let mut weights = Vec::new();
        weights
            .try_reserve_exact(len)
            .map_err(|_| anyhow::anyhow!("cannot allocate a {} model", fmt_bytes(bytes as u64)))?;
        weights.resize(len, id.0 as f32);
        Ok(DemoModel { weights, bytes })
    }
}

#[async_trait]
impl RoundModel for DemoModel {
    async fn share(&mut self, node: &mut FederatedNode, round: u64) -> Result<u64, GosError> {
        // "Training": touch every weight, as a real step would.
        let step = 0.001 * (round as f32 + 1.0);
        for w in self.weights.iter_mut() {
            *w += step;
        }
        let weights = &self.weights;
        node.share_with(round, self.bytes, |buf| write_f32s(weights, buf))
            .await?;
        Ok(self.bytes as u64)
    }

    fn aggregate(&mut self, _round: u64, inputs: &[Received]) -> Result<(), GosError> {
        average_into(&mut self.weights, inputs.iter().map(|i| &i.value[..]));
        Ok(())
    }

    fn probe(&self) -> f32 {
        self.weights.first().copied().unwrap_or_default()
    }
}

/// Runs one node's rounds of the demo (in this process or a node process).
pub(crate) async fn node_rounds(
    node: FederatedNode,
    args: &DemoArgs,
    sync: &dyn gos::RoundSync,
) -> Result<()> {
    let id = node.id();
    let mut model = DemoModel::new(id, args.model_bytes())?;
    gos::node_rounds(node, &mut model, args.rounds, DEFAULT_GATHER_TIMEOUT, sync)
        .await
        .with_context(|| format!("node {}", id.0))
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

/// Moves the progress bar as nodes report.
pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
    pub(crate) rounds: u64,
}

impl RoundObserver for Progress {
    fn node_done(&mut self, _done: &NodeRound) {
        self.bar.inc(1);
    }

    fn round_done(&mut self, round: u64) {
        self.bar
            .set_message((round + 2).min(self.rounds).to_string());
    }
}

pub(crate) fn progress_bar(args: &DemoArgs) -> ProgressBar {
    let bar = crate::progress::bar(
        crate::progress::shown(args.quiet, args.json),
        args.rounds * args.nodes as u64,
        "{spinner} round {msg} [{bar:40}] {pos}/{len} node-rounds ({elapsed})",
    );
    bar.set_message("1");
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
    pub(crate) rows: Vec<RoundTiming>,
    pub(crate) initial_spread: f32,
    pub(crate) peak_memory: String,
    /// Every key left in the store(s) after the run (none, when the delete rule holds).
    pub(crate) left_keys: Vec<gos::ObjectKey>,
}

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    args.validate()?;
    if args.store == StoreArg::Redis {
        // Not under `until_signal` here: the redis demo cleans its namespace after a signal.
        let summary = crate::demo_redis::run(&args).await?;
        print_summary(&args, &summary);
        return Ok(());
    }
    let summary = until_signal(async {
        if args.store == StoreArg::Shm {
            crate::relay::run_shm(&args).await
        } else if args.clusters > 1 {
            run_clusters(&args).await
        } else {
            run_in_process(&args).await
        }
    })
    .await?;
    if args.json {
        println!("{}", summary_json(&args, &summary));
    } else {
        print_summary(&args, &summary);
    }
    Ok(())
}

pub(crate) struct ManagerMeter(
    pub(crate) Vec<gos::TopologyManager>,
    pub(crate) Vec<Arc<gos::gateway::HybridTopologyManager>>,
);

impl gos::Meter for ManagerMeter {
    fn sample(&self) -> Traffic {
        let mut traffic = Traffic::default();
        for m in &self.0 {
            let stats = m.stats();
            traffic.messages += stats.messages;
            traffic.bytes += stats.bytes;
        }
        for h in &self.1 {
            traffic.gateway_bytes += h.gateway().stats().bytes_in;
        }
        traffic
    }
}

/// Runs the demo's rounds over nodes that are tasks of this process.
pub(crate) async fn drive(
    args: &DemoArgs,
    nodes: Vec<FederatedNode>,
    meter: &dyn gos::Meter,
) -> Result<Vec<RoundTiming>> {
    // Drawn from now: allocating every node's model takes seconds for large ones.
    let mut progress = Progress {
        bar: progress_bar(args),
        rounds: args.rounds,
    };
    let nodes = nodes
        .into_iter()
        .map(|node| {
            let model = DemoModel::new(node.id(), args.model_bytes())?;
            Ok((node, Box::new(model) as Box<dyn RoundModel>))
        })
        .collect::<Result<Vec<_>>>();
    let nodes = match nodes {
        Ok(nodes) => nodes,
        Err(e) => {
            progress.bar.finish_and_clear();
            return Err(e);
        }
    };
    let rows = gos::run_rounds(
        nodes,
        args.rounds,
        DEFAULT_GATHER_TIMEOUT,
        meter,
        &mut progress,
    )
    .await;
    progress.bar.finish_and_clear();
    Ok(rows?)
}

async fn run_in_process(args: &DemoArgs) -> Result<Summary> {
    let topology = args.build_topology()?;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new(args.store_limits()));
    let federation = Federation::new(FED_ID, topology, Arc::clone(&store)).policy(args.policy());
    let nodes = federation.nodes()?;
    let meter = ManagerMeter(vec![federation.manager().clone()], Vec::new());
    let rows = drive(args, nodes, &meter).await?;
    Ok(Summary {
        layout: format!("{} nodes as tasks in one process, memory store", args.nodes),
        rows,
        initial_spread: (args.nodes - 1) as f32,
        peak_memory: format!("{} (this process)", fmt_kib(peak_rss_kib())),
        left_keys: store.keys().await?,
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
    let limits = args.store_limits();
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
    let mut left_keys = Vec::new();
    for s in &stores {
        left_keys.extend(s.keys().await?);
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
        left_keys,
    })
}

pub(crate) fn fmt_kib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "unknown".to_owned(), |k| fmt_bytes(k * 1024))
}

pub(crate) fn fmt_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if b >= size {
            return format!("{:.1} {unit}", b as f64 / size as f64);
        }
    }
    format!("{b} B")
}

/// The summary as the JSON document of `--json` (its shape is in `gos demo --help`).
fn summary_json(args: &DemoArgs, s: &Summary) -> serde_json::Value {
    use serde_json::json;
    let figures = |r: &RoundTiming| {
        json!({
            "time_ms": r.time.as_secs_f64() * 1e3,
            "bus_messages": r.bus_messages,
            "bus_bytes": r.bus_bytes,
            "put_bytes": r.put_bytes,
            "read_bytes": r.read_bytes,
            "gateway_bytes": r.gateway_bytes,
        })
    };
    let per_round: Vec<serde_json::Value> = s
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = figures(r);
            row["round"] = json!(i + 1);
            row["spread"] = json!(r.spread);
            row
        })
        .collect();
    json!({
        "topology": args.topology.to_string(),
        "nodes": args.nodes,
        "rounds": args.rounds,
        "model_bytes": args.model_bytes(),
        "store": args.store.to_string(),
        "clusters": args.clusters,
        "delete": value_name(&args.delete),
        "layout": s.layout,
        "per_round": per_round,
        "total": figures(&total(&s.rows)),
        "initial_spread": s.initial_spread,
        "final_spread": s.rows.last().map_or(s.initial_spread, |r| r.spread),
        "peak_memory": s.peak_memory,
        "keys_left": s.left_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The sums of every round's figures (its spread is not a sum: left at 0).
fn total(rows: &[RoundTiming]) -> RoundTiming {
    let mut total = RoundTiming::default();
    for r in rows {
        total.time += r.time;
        total.bus_messages += r.bus_messages;
        total.bus_bytes += r.bus_bytes;
        total.put_bytes += r.put_bytes;
        total.read_bytes += r.read_bytes;
        total.gateway_bytes += r.gateway_bytes;
    }
    total
}

fn print_summary(args: &DemoArgs, s: &Summary) {
    println!();
    println!(
        "GOS demo: {} topology, {} rounds, {} model per node; {}",
        args.topology,
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
    for (i, r) in s.rows.iter().enumerate() {
        print!(
            "{:>5} {:>8.1}ms {:>9} {:>10} {:>12} {:>12}",
            i + 1,
            r.time.as_secs_f64() * 1e3,
            r.bus_messages,
            fmt_bytes(r.bus_bytes),
            fmt_bytes(r.put_bytes),
            fmt_bytes(r.read_bytes)
        );
        if icrf {
            print!(" {:>12}", fmt_bytes(r.gateway_bytes));
        }
        println!(" {:>10.4}", r.spread);
    }
    let total = total(&s.rows);
    print!(
        "{:>5} {:>8.1}ms {:>9} {:>10} {:>12} {:>12}",
        "all",
        total.time.as_secs_f64() * 1e3,
        total.bus_messages,
        fmt_bytes(total.bus_bytes),
        fmt_bytes(total.put_bytes),
        fmt_bytes(total.read_bytes)
    );
    if icrf {
        print!(" {:>12}", fmt_bytes(total.gateway_bytes));
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
    println!("keys left in the store: {}", s.left_keys.len());
    for key in s.left_keys.iter().take(5) {
        println!("  {key}");
    }
}

pub(crate) use crate::relay::NodeArgs;

pub(crate) async fn run_node(args: NodeArgs) -> Result<()> {
    crate::relay::run_node(args).await
}
