//! `TopologyManager` with 16 nodes: publish-to-receive latency, messages per second, and the
//! bus bytes of a federated round with a 1 MiB and a 100 MiB model (equal: only keys travel).
//!
//! Run: `cargo bench -p gos-benches --bench topology`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_memory::MemoryStore;
use gos_topology::{
    Mailbox, ManagerConfig, Message, MessageKind, NodeId, Targets, Topology, TopologyManager,
};

const NODES: usize = 16;

fn manager(topology: Topology) -> (TopologyManager, Vec<Mailbox>) {
    let manager = TopologyManager::new(topology, ManagerConfig::default());
    let boxes = (0..NODES as u32)
        .map(|i| manager.register(NodeId(i)).expect("register"))
        .collect();
    (manager, boxes)
}

fn key_message(sender: NodeId, round: u64) -> Message {
    let key = ObjectKey::round("bench", &sender.to_string(), round).expect("key");
    Message::key("bench", sender, round, &key)
}

/// One publish and its receive, in one task and across tasks (a ping-pong round trip).
fn latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology_latency");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (m, mut boxes) = manager(Topology::full(NODES).expect("full"));
    let msg = key_message(NodeId(0), 1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_then_recv_one_target", |b| {
        b.iter(|| {
            rt.block_on(async {
                m.publish(msg.clone(), Targets::one(NodeId(1)))
                    .await
                    .expect("publish");
                black_box(boxes[1].recv().await.expect("recv"));
            })
        });
    });
    group.throughput(Throughput::Elements((NODES - 1) as u64));
    group.bench_function("publish_then_recv_15_neighbours", |b| {
        b.iter(|| {
            rt.block_on(async {
                m.publish(msg.clone(), Targets::Neighbours)
                    .await
                    .expect("publish");
                for mailbox in &mut boxes[1..] {
                    black_box(mailbox.recv().await.expect("recv"));
                }
            })
        });
    });

    // Round trip between two tasks on a 2-worker runtime: node_0 -> node_1 -> node_0.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (m, mut boxes) = manager(Topology::ring(NODES).expect("ring"));
    let mut b0 = boxes.remove(0);
    let mut b1 = boxes.remove(0);
    let echo = m.clone();
    rt.spawn(async move {
        while let Some(msg) = b1.recv().await {
            let back = Message {
                sender: NodeId(1),
                ..msg
            };
            if echo.publish(back, Targets::one(NodeId(0))).await.is_err() {
                break;
            }
        }
    });
    group.throughput(Throughput::Elements(2));
    group.bench_function("ping_pong_round_trip_across_tasks", |b| {
        b.iter(|| {
            rt.block_on(async {
                m.publish(msg.clone(), Targets::one(NodeId(1)))
                    .await
                    .expect("publish");
                black_box(b0.recv().await.expect("recv"));
            })
        });
    });
    group.finish();
    drop(boxes);
    m.leave(NodeId(1)).expect("leave");
}

/// Messages per second: all 16 nodes of a 4-regular graph publish to their neighbours at once
/// while every node drains its mailbox.
fn throughput(c: &mut Criterion) {
    const PER_NODE: u64 = 500;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let topology = Topology::k_connected(NODES, 4, 42).expect("k_connected");
    let deliveries = topology.edge_count() as u64 * PER_NODE;
    let mut group = c.benchmark_group("topology_throughput");
    group.throughput(Throughput::Elements(deliveries));
    group.sample_size(20);
    for capacity in [16usize, 1024] {
        group.bench_function(BenchmarkId::new("16_nodes_k4_mailbox", capacity), |b| {
            b.to_async(&rt).iter(|| {
                let topology = topology.clone();
                async move {
                    let config = ManagerConfig {
                        mailbox_capacity: capacity,
                        ..ManagerConfig::default()
                    };
                    let m = TopologyManager::new(topology.clone(), config);
                    let mut tasks = Vec::new();
                    for v in topology.nodes() {
                        let mut mailbox = m.register(v).expect("register");
                        let expected = topology.in_neighbours(v).len() as u64 * PER_NODE;
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..expected {
                                black_box(mailbox.recv().await.expect("recv"));
                            }
                        }));
                    }
                    for v in topology.nodes() {
                        let m = m.clone();
                        tasks.push(tokio::spawn(async move {
                            for round in 0..PER_NODE {
                                let msg = Message::new("bench", v, MessageKind::Weights, round)
                                    .with_body(Bytes::from_static(b"bench/node_00/round_000"));
                                m.publish(msg, Targets::Neighbours).await.expect("publish");
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.expect("task");
                    }
                }
            });
        });
    }
    group.finish();
}

/// One federated round: every node puts its model in the store and publishes the key to its
/// neighbours; every node reads its neighbours' models. Returns the bus bytes of the round.
async fn round(
    m: &TopologyManager,
    boxes: &mut [Mailbox],
    store: &MemoryStore,
    model: &Bytes,
    round: u64,
) -> u64 {
    let before = m.stats().bytes;
    let topology = m.topology();
    for v in topology.nodes() {
        let key = ObjectKey::round("bench", &v.to_string(), round).expect("key");
        store.put(&key, model.clone()).await.expect("put");
        m.publish(Message::key("bench", v, round, &key), Targets::Neighbours)
            .await
            .expect("publish");
    }
    for mailbox in boxes.iter_mut() {
        for _ in 0..topology.in_neighbours(mailbox.node()).len() {
            let msg = mailbox.try_recv().expect("queued");
            let key = msg.body_key().expect("a key");
            let weights = store.get(&key).await.expect("get").expect("stored");
            black_box(weights.len());
        }
    }
    m.stats().bytes - before
}

/// Bus bytes per round for a 1 MiB and a 100 MiB model: the same, since only keys travel.
fn bus_bytes_per_round(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("topology_round");
    let mut bytes_per_size = Vec::new();
    for (name, size) in [("1MiB", 1usize << 20), ("100MiB", 100 << 20)] {
        // One model value shared by all nodes: the memory store keeps a reference, no copy.
        let model = Bytes::from(vec![7u8; size]);
        let store = Arc::new(MemoryStore::new(Limits::UNLIMITED));
        let (m, mut boxes) = manager(Topology::k_connected(NODES, 4, 42).expect("k_connected"));
        let bus = rt.block_on(round(&m, &mut boxes, &store, &model, 0));
        println!(
            "topology_round/{name}: {bus} bus bytes per round ({} messages, {} bytes of model per node)",
            m.stats().messages,
            size
        );
        bytes_per_size.push(bus);
        let mut r = 1;
        group.bench_function(BenchmarkId::new("16_nodes_k4", name), |b| {
            b.iter(|| {
                r += 1;
                black_box(rt.block_on(round(&m, &mut boxes, &store, &model, r % 4)))
            });
        });
    }
    group.finish();
    assert_eq!(
        bytes_per_size[0], bytes_per_size[1],
        "bus bytes per round must not depend on the model size"
    );
    println!(
        "topology_round: bus bytes per round, 1 MiB model {} = 100 MiB model {}",
        bytes_per_size[0], bytes_per_size[1]
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = latency, throughput, bus_bytes_per_round
}
criterion_main!(benches);
