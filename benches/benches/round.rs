//! A whole federated round, end to end through the facade: 16 nodes share a model (store put +
//! key on the bus), gather their neighbours' models (zero-copy gets), and release them (the
//! last reader deletes). Ring and full topologies, 1 MiB and 100 MiB models, memory and shm
//! backends. Prints a table: round time, and bus bytes per round (the same for both sizes).
//!
//! Run: `cargo bench -p gos-benches --bench round`. Figures: docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gos::shm::{ShmConfig, ShmStore};
use gos::{Federation, Limits, MemoryStore, ObjectStore, Topology};

const NODES: usize = 16;
const ROUNDS: u64 = 6; // the first is a warm-up and is not counted

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
            let config =
                ShmConfig::new(limits).arena_bytes(capacity + (NODES as u64) * size as u64);
            Arc::new(ShmStore::create(&name, config)?)
        }
    };
    let federation = Federation::new("bench", topology, Arc::clone(&store));
    let nodes = federation.nodes()?;
    let barrier = Arc::new(tokio::sync::Barrier::new(NODES + 1));
    // Each node's (start, end) of each round: a round lasts from the first start to the last end.
    let spans = Arc::new(std::sync::Mutex::new(Vec::<(u64, Instant, Instant)>::new()));
    let mut tasks = Vec::new();
    for mut node in nodes {
        let barrier = Arc::clone(&barrier);
        let spans = Arc::clone(&spans);
        // Each node's model is made once; sharing it is what the backend makes of a put
        // (a reference for memory, one copy into shared memory for shm).
        let model = Bytes::from(vec![node.id().0 as u8; size]);
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                barrier.wait().await;
                let start = Instant::now();
                node.share(round, model.clone()).await?;
                for input in node.gather(round, Duration::from_secs(60)).await? {
                    assert_eq!(input.value.len(), size);
                    node.release(input).await?;
                }
                let end = Instant::now();
                spans.lock().expect("spans").push((round, start, end));
                barrier.wait().await;
            }
            Ok::<(), gos::GosError>(())
        }));
    }
    let mut times = Vec::new();
    let mut bus = (0, 0);
    for round in 0..ROUNDS {
        let before = federation.manager().stats();
        barrier.wait().await;
        barrier.wait().await;
        let after = federation.manager().stats();
        let spans = spans.lock().expect("spans");
        let of_round = spans.iter().filter(|s| s.0 == round);
        let first = of_round.clone().map(|s| s.1).min().expect("a start");
        let last = of_round.map(|s| s.2).max().expect("an end");
        if round > 0 {
            times.push(last - first);
            bus = (after.bytes - before.bytes, after.messages - before.messages);
        }
    }
    for t in tasks {
        t.await??;
    }
    anyhow::ensure!(store.is_empty().await?, "keys left after the rounds");
    anyhow::ensure!(
        bus.1 == NODES as u64 * readers,
        "unexpected message count {}",
        bus.1
    );
    drop(federation);
    drop(store);
    if let Backend::Shm = backend {
        ShmStore::remove(&name)?;
    }
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
        "GOS round benchmark: {NODES} nodes, {} measured rounds each (after one warm-up)\n",
        ROUNDS - 1
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
