//! `gos bench`: how long a round takes on this machine. For each store, topology and model
//! size asked for, the nodes (tasks of this process, whatever the store) share, gather and
//! release models for a few rounds (`gos::measure_rounds_observed`, the round driver
//! `gos demo` uses too), and a table shows the round time and the bus traffic, which does not
//! depend on the model size. Every store must be empty after its rounds; Ctrl-C or SIGTERM
//! removes the store being used. `--json` prints one JSON document at the end instead.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use gos::shm::ShmConfig;
use gos::{
    Federation, Limits, MemoryStore, NodeRound, ObjectStore, ObjectStoreExt, RoundObserver,
    RoundPlan, Topology, measure_rounds_observed,
};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::demo::{StoreArg, TopologyArg, fmt_bytes, until_signal};
use crate::progress;

/// Arguments of `gos bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = BENCH_HELP)]
pub(crate) struct BenchArgs {
    /// Number of nodes (tasks of this process, with every store).
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// Timed rounds per configuration (after one warm-up round).
    #[arg(long, default_value_t = 5)]
    rounds: u64,
    /// Model sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1MiB,100MiB", value_parser = crate::demo::parse_size)]
    models: Vec<u64>,
    /// Topologies, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ring,full")]
    topologies: Vec<TopologyArg>,
    /// Degree of the k-connected topology.
    #[arg(long, default_value_t = 3)]
    k: usize,
    /// Seed of the k-connected topology.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stores, comma-separated (shm: one shared-memory store, the nodes still in this process).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "memory,shm")]
    stores: Vec<StoreArg>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print one JSON document at the end instead of the table (and no progress bar).
    #[arg(long)]
    json: bool,
}

const BENCH_HELP: &str = "\
A progress bar on stderr counts the node-rounds (a terminal only; not with --quiet or --json).
With --json, stdout is one JSON document, written when every configuration has run:
  {\"nodes\":16,\"rounds\":5,\"warmup_rounds\":1,\"k\":3,\"seed\":1,\"results\":[{\"store\":\"memory\",
   \"topology\":\"ring\",\"model_bytes\":1048576,\"round_median_ms\":1.9,\"round_min_ms\":1.7,
   \"round_ms\":[...one per timed round...],\"bus_messages\":32,\"bus_bytes\":3008}, ...]}
The command fails (exit 1, nothing on stdout in JSON mode) if a store is not empty after its
rounds or the bus traffic differs between model sizes.";

/// One configuration's figures: a row of the table, an element of `results` in JSON.
#[derive(Debug, Serialize)]
struct Row {
    store: String,
    topology: String,
    model_bytes: u64,
    round_median_ms: f64,
    round_min_ms: f64,
    /// Every timed round, in order.
    round_ms: Vec<f64>,
    /// Per round (the last), the same for every model size.
    bus_messages: u64,
    bus_bytes: u64,
}

/// The JSON document of `--json`.
#[derive(Debug, Serialize)]
struct Report {
    nodes: usize,
    rounds: u64,
    warmup_rounds: u64,
    k: usize,
    seed: u64,
    results: Vec<Row>,
}

const WARMUP: u64 = 1;

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    ensure!(args.nodes >= 3, "--nodes must be at least 3");
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    // Refuse a topology the flags cannot build before anything runs.
    for &topology in &args.topologies {
        build(&args, topology)?;
    }
    let configurations = (args.stores.len() * args.topologies.len() * args.models.len()) as u64;
    let bar = progress::bar(
        progress::shown(args.quiet, args.json),
        configurations * (args.rounds + WARMUP) * args.nodes as u64,
        "{spinner} {msg} [{bar:30}] {pos}/{len} node-rounds ({elapsed}, eta {eta})",
    );
    let result = until_signal(run_all(&args, &bar)).await;
    bar.finish_and_clear();
    let results = result?;
    if args.json {
        let report = Report {
            nodes: args.nodes,
            rounds: args.rounds,
            warmup_rounds: WARMUP,
            k: args.k,
            seed: args.seed,
            results,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("\nbus bytes per round are the same for every model size: only keys travel");
        println!("every store was empty after its rounds");
    }
    Ok(())
}

fn build(args: &BenchArgs, topology: TopologyArg) -> Result<Topology> {
    Ok(match topology {
        TopologyArg::Ring => Topology::ring(args.nodes)?,
        TopologyArg::Star => Topology::star(args.nodes, gos::NodeId(0))?,
        TopologyArg::Full => Topology::full(args.nodes)?,
        TopologyArg::KConnected => Topology::k_connected(args.nodes, args.k, args.seed)
            .with_context(|| {
                format!(
                    "the k-connected topology (--k {}, --seed {})",
                    args.k, args.seed
                )
            })?,
    })
}

/// Runs every configuration, printing the table's rows as they come (not in JSON mode).
async fn run_all(args: &BenchArgs, bar: &ProgressBar) -> Result<Vec<Row>> {
    let print = |line: String| {
        if !args.json {
            bar.suspend(|| println!("{line}"));
        }
    };
    print(format!(
        "gos bench: {} nodes as tasks of one process, {} timed rounds after a warm-up\n",
        args.nodes, args.rounds
    ));
    print(format!(
        "{:<7} {:<12} {:>10} {:>12} {:>12} {:>9} {:>11}",
        "store", "topology", "model", "round (med)", "round (min)", "bus msgs", "bus bytes"
    ));
    let mut rows = Vec::new();
    for &store in &args.stores {
        for &topology in &args.topologies {
            let mut bus = Vec::new();
            for &model in &args.models {
                let what = format!(
                    "{store} store, {topology} topology, {} model",
                    fmt_bytes(model)
                );
                bar.set_message(what.clone());
                let row = one(args, store, topology, model, bar).await.context(what)?;
                print(format!(
                    "{:<7} {:<12} {:>10} {:>10.2}ms {:>10.2}ms {:>9} {:>11}",
                    row.store,
                    row.topology,
                    fmt_bytes(model),
                    row.round_median_ms,
                    row.round_min_ms,
                    row.bus_messages,
                    row.bus_bytes
                ));
                bus.push(row.bus_bytes);
                rows.push(row);
            }
            ensure!(
                bus.windows(2).all(|w| w[0] == w[1]),
                "bus bytes per round differ between model sizes: {}",
                bus.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(rows)
}

/// Moves the bar by one for each node's round.
struct Ticks<'a>(&'a ProgressBar);

impl RoundObserver for Ticks<'_> {
    fn node_done(&mut self, _done: &NodeRound) {
        self.0.inc(1);
    }
}

/// One configuration.
async fn one(
    args: &BenchArgs,
    store: StoreArg,
    topology: TopologyArg,
    model: u64,
    bar: &ProgressBar,
) -> Result<Row> {
    let graph = build(args, topology)?;
    // Two rounds of models in flight at most, with room to spare.
    let capacity = 2 * args.nodes as u64 * model + (64 << 20);
    let limits = Limits::with_capacity(capacity).max_value_size(model.max(1));
    let name = format!("bench-{}", std::process::id());
    // Removes the shared-memory store however this ends (an error, Ctrl-C).
    let mut _cleanup = None;
    let shared: Arc<dyn ObjectStore> = match store {
        StoreArg::Memory => Arc::new(MemoryStore::new(limits)),
        StoreArg::Shm => {
            let arena = capacity + args.nodes as u64 * model;
            let config = ShmConfig::new(limits).arena_bytes(arena).max_processes(8);
            let created = progress::create_shm(&name, config, arena, bar)?;
            _cleanup = Some(crate::relay::RemoveOnDrop(name.clone()));
            Arc::new(created)
        }
        StoreArg::Redis => anyhow::bail!(
            "gos bench has no redis store: see `cargo bench -p gos-benches --bench redis`"
        ),
    };
    let federation = Federation::new("bench", graph, Arc::clone(&shared));
    let plan = RoundPlan::new(args.rounds, model as usize);
    let timings = measure_rounds_observed(&federation, &plan, &mut Ticks(bar)).await?;
    let left = shared.keys().await?;
    ensure!(
        left.is_empty(),
        "{} keys left in the store after the rounds, such as {}",
        left.len(),
        left[0]
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let round_ms: Vec<f64> = timings.iter().map(|t| ms(t.time)).collect();
    let mut sorted: Vec<Duration> = timings.iter().map(|t| t.time).collect();
    sorted.sort_unstable();
    let last = timings.last().context("no round was timed")?;
    Ok(Row {
        store: store.to_string(),
        topology: topology.to_string(),
        model_bytes: model,
        round_median_ms: ms(sorted[sorted.len() / 2]),
        round_min_ms: ms(sorted[0]),
        round_ms,
        bus_messages: last.bus_messages,
        bus_bytes: last.bus_bytes,
    })
}
