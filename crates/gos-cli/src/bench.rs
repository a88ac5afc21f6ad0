//! `gos bench`: how long a round takes on this machine. For each store, topology and model
//! size asked for, the nodes (tasks of this process) share, gather and release models for a
//! few rounds (`gos::measure_rounds`, the round driver `gos demo` uses too), and a table shows
//! the round time and the bus traffic, which does not depend on the model size. Every store
//! must be empty after its rounds; Ctrl-C or SIGTERM removes the store being used.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use gos::shm::{ShmConfig, ShmStore};
use gos::{
    Federation, Limits, MemoryStore, ObjectStore, ObjectStoreExt, RoundPlan, Topology,
    measure_rounds,
};

use crate::demo::{StoreArg, TopologyArg, fmt_bytes, until_signal};

/// Arguments of `gos bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Number of nodes.
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
    /// Stores, comma-separated (shm: one shared-memory store, the nodes still in this process).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "memory,shm")]
    stores: Vec<StoreArg>,
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    ensure!(args.nodes >= 3, "--nodes must be at least 3");
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    until_signal(run_all(&args)).await
}

async fn run_all(args: &BenchArgs) -> Result<()> {
    println!(
        "gos bench: {} nodes as tasks of one process, {} timed rounds after a warm-up\n",
        args.nodes, args.rounds
    );
    println!(
        "{:<7} {:<12} {:>10} {:>12} {:>12} {:>9} {:>11}",
        "store", "topology", "model", "round (med)", "round (min)", "bus msgs", "bus bytes"
    );
    for &store in &args.stores {
        for &topology in &args.topologies {
            let mut bus = Vec::new();
            for &model in &args.models {
                let (median, min, messages, bytes) = one(args, store, topology, model as usize)
                    .await
                    .with_context(|| {
                        format!(
                            "{store:?} store, {topology:?} topology, {} model",
                            fmt_bytes(model)
                        )
                    })?;
                println!(
                    "{:<7} {:<12} {:>10} {:>10.2}ms {:>10.2}ms {:>9} {:>11}",
                    format!("{store:?}").to_lowercase(),
                    format!("{topology:?}").to_lowercase(),
                    fmt_bytes(model),
                    median.as_secs_f64() * 1e3,
                    min.as_secs_f64() * 1e3,
                    messages,
                    bytes
                );
                bus.push(bytes);
            }
            ensure!(
                bus.windows(2).all(|w| w[0] == w[1]),
                "bus bytes per round differ between model sizes: {bus:?}"
            );
        }
    }
    println!("\nbus bytes per round are the same for every model size: only keys travel");
    println!("every store was empty after its rounds");
    Ok(())
}

/// One configuration: (median round, fastest round, bus messages and bytes per round).
async fn one(
    args: &BenchArgs,
    store: StoreArg,
    topology: TopologyArg,
    model: usize,
) -> Result<(Duration, Duration, u64, u64)> {
    let graph = match topology {
        TopologyArg::Ring => Topology::ring(args.nodes)?,
        TopologyArg::Star => Topology::star(args.nodes, gos::NodeId(0))?,
        TopologyArg::Full => Topology::full(args.nodes)?,
        TopologyArg::KConnected => Topology::k_connected(args.nodes, 3, 1)?,
    };
    // Two rounds of models in flight at most, with room to spare.
    let capacity = 2 * args.nodes as u64 * model as u64 + (64 << 20);
    let limits = Limits::with_capacity(capacity).max_value_size(model.max(1) as u64);
    let name = format!("bench-{}", std::process::id());
    // Removes the shared-memory store however this ends (an error, Ctrl-C).
    let mut _cleanup = None;
    let shared: Arc<dyn ObjectStore> = match store {
        StoreArg::Memory => Arc::new(MemoryStore::new(limits)),
        StoreArg::Shm => {
            let _ = ShmStore::remove(&name);
            let config = ShmConfig::new(limits)
                .arena_bytes(capacity + args.nodes as u64 * model as u64)
                .max_processes(8);
            let created =
                ShmStore::create(&name, config).context("creating the shared-memory store")?;
            _cleanup = Some(crate::relay::RemoveOnDrop(name.clone()));
            Arc::new(created)
        }
        StoreArg::Redis => anyhow::bail!(
            "gos bench has no redis store: see `cargo bench -p gos-benches --bench redis`"
        ),
    };
    let federation = Federation::new("bench", graph, Arc::clone(&shared));
    let timings = measure_rounds(&federation, &RoundPlan::new(args.rounds, model)).await?;
    let left = shared.keys().await?;
    ensure!(
        left.is_empty(),
        "{} keys left in the store after the rounds, such as {}",
        left.len(),
        left[0]
    );
    let mut times: Vec<Duration> = timings.iter().map(|t| t.time).collect();
    times.sort_unstable();
    let last = timings.last().context("no round was timed")?;
    Ok((
        times[times.len() / 2],
        times[0],
        last.bus_messages,
        last.bus_bytes,
    ))
}
