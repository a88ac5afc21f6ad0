//! Property tests of the manager: a publish never reaches a non-neighbour, and under many
//! concurrent publishers every message arrives exactly once.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use gos_topology::{
    ManagerConfig, Message, MessageId, MessageKind, NodeId, RecvError, Targets, Topology,
    TopologyError, TopologyManager,
};
use proptest::prelude::*;

fn matrix(max_n: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    (2..=max_n).prop_flat_map(|n| {
        proptest::collection::vec(proptest::collection::vec(0u8..2, n), n).prop_map(|mut m| {
            for (i, row) in m.iter_mut().enumerate() {
                row[i] = 0;
            }
            m
        })
    })
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the graph and the targets, a message lands only in mailboxes of the sender's
    /// out-neighbours, and a refused publish lands nowhere.
    #[test]
    fn a_publish_never_reaches_a_non_neighbour(
        m in matrix(8),
        publishes in proptest::collection::vec((0u32..8, proptest::option::of(proptest::collection::vec(0u32..9, 0..4))), 1..12),
    ) {
        let rt = runtime(1);
        let topology = Topology::custom(&m).unwrap();
        let n = topology.len() as u32;
        let manager = TopologyManager::new(topology.clone(), ManagerConfig::default());
        let mut boxes: Vec<_> = topology.nodes().map(|v| manager.register(v).unwrap()).collect();
        for (seq, (sender, targets)) in publishes.into_iter().enumerate() {
            let sender = NodeId(sender % n);
            let targets = match targets {
                None => Targets::Neighbours,
                Some(list) => Targets::Only(list.into_iter().map(NodeId).collect()),
            };
            let msg = Message::control("fed", sender, 0).with_id(MessageId::from_parts(sender, seq as u64));
            let result = rt.block_on(manager.publish(msg, targets.clone()));
            let mut reached = Vec::new();
            for b in &mut boxes {
                while let Ok(got) = b.try_recv() {
                    prop_assert_eq!(got.sender, sender);
                    reached.push(b.node());
                }
            }
            match result {
                Ok(report) => {
                    prop_assert_eq!(&report.delivered, &reached);
                    prop_assert!(reached.iter().all(|&to| topology.may_send(sender, to)));
                    if let Targets::Neighbours = targets {
                        prop_assert_eq!(&reached[..], topology.neighbours(sender));
                    }
                }
                Err(TopologyError::NotNeighbour { from, to }) => {
                    prop_assert!(!topology.may_send(from, to));
                    prop_assert!(reached.is_empty());
                }
                Err(TopologyError::UnknownNode(node)) => {
                    prop_assert!(!topology.contains(node));
                    prop_assert!(reached.is_empty());
                }
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
        }
    }
}

proptest! {
    // Each case spins up a runtime and exchanges up to a few thousand messages.
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Every node publishes to all its neighbours at once, through small mailboxes (so
    /// publishers block on backpressure): every receiver gets every message of every
    /// in-neighbour exactly once, in each sender's order.
    #[test]
    fn under_concurrent_publishers_every_message_arrives_exactly_once(
        n in 2usize..9, k in 1usize..5, seed: u64, per_node in 1u64..40, capacity in 1usize..4,
    ) {
        let topology = if n > k && (n * k) % 2 == 0 {
            Topology::k_connected(n, k, seed).unwrap()
        } else {
            Topology::full(n).unwrap()
        };
        let config = ManagerConfig {
            mailbox_capacity: capacity,
            publish_timeout: Duration::from_secs(30),
            ..ManagerConfig::default()
        };
        let manager = TopologyManager::new(topology.clone(), config);
        let rt = runtime(2);
        let received: Vec<(NodeId, Vec<Message>)> = rt.block_on(async {
            let mut receivers = Vec::new();
            for v in topology.nodes() {
                let mut mailbox = manager.register(v).unwrap();
                let expected = topology.in_neighbours(v).len() as u64 * per_node;
                receivers.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    for _ in 0..expected {
                        got.push(mailbox.recv_timeout(Duration::from_secs(30)).await.unwrap());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    assert_eq!(mailbox.try_recv(), Err(RecvError::Empty));
                    (v, got)
                }));
            }
            let publishers: Vec<_> = topology.nodes().map(|v| {
                let manager = manager.clone();
                tokio::spawn(async move {
                    for seq in 0..per_node {
                        let msg = Message::new("fed", v, MessageKind::Weights, seq)
                            .with_id(MessageId::from_parts(v, seq));
                        manager.publish(msg, Targets::Neighbours).await.unwrap();
                    }
                })
            }).collect();
            for p in publishers {
                p.await.unwrap();
            }
            let mut all = Vec::new();
            for r in receivers {
                all.push(r.await.unwrap());
            }
            all
        });
        for (v, got) in received {
            let mut by_sender: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
            for msg in got {
                prop_assert!(topology.may_send(msg.sender, v));
                prop_assert_eq!(msg.id, MessageId::from_parts(msg.sender, msg.round));
                by_sender.entry(msg.sender).or_default().push(msg.round);
            }
            let senders: Vec<NodeId> = by_sender.keys().copied().collect();
            prop_assert_eq!(senders, topology.in_neighbours(v));
            for rounds in by_sender.values() {
                prop_assert_eq!(rounds, &(0..per_node).collect::<Vec<_>>());
            }
        }
        let stats = manager.stats();
        prop_assert_eq!(stats.messages, topology.edge_count() as u64 * per_node);
        prop_assert_eq!(stats.failed, 0);
    }
}
