//! A whole federated round, end to end through the facade (`gos::measure_rounds`): 16 nodes
//! share a model (store put + key on the bus), gather their neighbours' models (zero-copy
//! gets) and release them (each release one store operation; the last deletes). Ring and full topologies, 1 MiB and
//! 100 MiB models, memory and shm backends. Prints a table: round time, and bus bytes per round
//! (the same for both sizes, or the benchmark fails). `gos bench` runs the same from the CLI.
//!
//! Run: `cargo bench -p gos-benches --bench round`. Figures: docs/benchmarks.md.

use std::sync::Arc;
use std::time::Duration;

use gos::shm::{ShmConfig, ShmStore};
use gos::{
    Federation, Limits, MemoryStore, ObjectStore, ObjectStoreExt, RoundPlan, Topology,
    measure_rounds,
};

const NODES: usize = 16;
const ROUNDS: u64 = 5;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Shm,
}

struct Row {
    median: Duration,
    min: Duration,
    bus_bytes: u64,
    bus_messages: u64,
}

async fn run(topology: Topology, size: usize, backend: Backend) -> anyhow::Result<Row> {
    let readers = topology.neighbours(gos::NodeId(0)).len() as u64;
    // Two rounds in flight at most (a node may share round r+1 while slower peers still read r).
    let capacity = 2 * NODES as u64 * size as u64 + (64 << 20);
    let limits = Limits::with_capacity(capacity).max_value_size(size as u64);
    let name = format!("round-bench-{}", std::process::id());
    let store: Arc<dyn ObjectStore> = match backend {
        Backend::Memory => Arc::new(MemoryStore::new(limits)),
        Backend::Shm => {
            let _ = ShmStore::remove(&name);
            let config = ShmConfig::new(limits).arena_bytes(capacity + NODES as u64 * size as u64);
            Arc::new(ShmStore::create(&name, config)?)
        }
    };
    let federation = Federation::new("bench", topology, Arc::clone(&store));
    let timings = measure_rounds(&federation, &RoundPlan::new(ROUNDS, size)).await;
    let empty = store.is_empty().await;
    drop((federation, store));
    if let Backend::Shm = backend {
        ShmStore::remove(&name)?;
    }
    let timings = timings?;
    anyhow::ensure!(empty?, "keys left after the rounds");
    let bus = (timings[0].bus_bytes, timings[0].bus_messages);
    anyhow::ensure!(
        timings.iter().all(|t| (t.bus_bytes, t.bus_messages) == bus),
        "bus traffic differs between rounds"
    );
    anyhow::ensure!(
        bus.1 == NODES as u64 * readers,
        "unexpected message count {}",
        bus.1
    );
    let mut times: Vec<Duration> = timings.iter().map(|t| t.time).collect();
    times.sort_unstable();
    Ok(Row {
        median: times[times.len() / 2],
        min: times[0],
        bus_bytes: bus.0,
        bus_messages: bus.1,
    })
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "GOS round benchmark: {NODES} nodes, {ROUNDS} measured rounds each (after one warm-up)\n"
    );
    println!(
        "{:<8} {:<6} {:>8} {:>12} {:>12} {:>10} {:>14}",
        "backend", "graph", "model", "round (med)", "round (min)", "bus msgs", "bus bytes"
    );
    for backend in [Backend::Memory, Backend::Shm] {
        for (graph, topology) in [
            ("ring", Topology::ring(NODES)?),
            ("full", Topology::full(NODES)?),
        ] {
            let mut bus_bytes = Vec::new();
            for (label, size) in [("1MiB", 1usize << 20), ("100MiB", 100 << 20)] {
                let row = rt.block_on(run(topology.clone(), size, backend))?;
                println!(
                    "{:<8} {:<6} {:>8} {:>10.2}ms {:>10.2}ms {:>10} {:>14}",
                    format!("{backend:?}").to_lowercase(),
                    graph,
                    label,
                    row.median.as_secs_f64() * 1e3,
                    row.min.as_secs_f64() * 1e3,
                    row.bus_messages,
                    row.bus_bytes
                );
                bus_bytes.push(row.bus_bytes);
            }
            anyhow::ensure!(
                bus_bytes[0] == bus_bytes[1],
                "bus bytes per round differ between model sizes: {bus_bytes:?}"
            );
        }
    }
    println!("\nbus bytes per round are identical for 1 MiB and 100 MiB models (only keys travel)");
    Ok(())
}
