//! `TopologyManager` behaviour: delivery, refusals, backpressure, timeouts, stop ordering,
//! join and leave, topology swaps and counters.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use gos_store::ObjectKey;
use gos_topology::{
    DEFAULT_MAX_BODY_SIZE, ManagerConfig, Message, MessageKind, NodeId, RecvError,
    RewireKConnected, RoundResults, StaticTopology, Targets, Topology, TopologyError,
    TopologyManager,
};

fn config(capacity: usize, timeout_ms: u64) -> ManagerConfig {
    ManagerConfig {
        mailbox_capacity: capacity,
        publish_timeout: Duration::from_millis(timeout_ms),
        ..ManagerConfig::default()
    }
}

fn msg(sender: u32, round: u64) -> Message {
    let key = ObjectKey::round("fed", &NodeId(sender).to_string(), round).unwrap();
    Message::key("fed", NodeId(sender), round, &key)
}

const SHORT: Duration = Duration::from_millis(20);

#[tokio::test]
async fn publish_reaches_every_neighbour_and_is_counted() {
    let m = TopologyManager::new(Topology::ring(4).unwrap(), ManagerConfig::default());
    let mut boxes: Vec<_> = (0..4).map(|i| m.register(NodeId(i)).unwrap()).collect();
    let sent = msg(0, 1);
    let report = m.publish(sent.clone(), Targets::Neighbours).await.unwrap();
    assert_eq!(report.delivered, [NodeId(1), NodeId(3)]);
    assert_eq!(report.bytes_per_copy, sent.wire_size());
    assert_eq!(boxes[1].try_recv().unwrap(), sent);
    assert_eq!(boxes[3].try_recv().unwrap(), sent);
    assert_eq!(boxes[2].try_recv(), Err(RecvError::Empty));
    assert_eq!(boxes[0].try_recv(), Err(RecvError::Empty));

    let stats = m.stats();
    assert_eq!(stats.messages, 2);
    assert_eq!(stats.bytes, 2 * sent.wire_size() as u64);
    assert_eq!(report.total_bytes() as u64, stats.bytes);
    let s0 = m.node_stats(NodeId(0));
    assert_eq!((s0.sent_messages, s0.sent_bytes), (2, stats.bytes));
    let s1 = m.node_stats(NodeId(1));
    assert_eq!(
        (s1.received_messages, s1.received_bytes),
        (1, sent.wire_size() as u64)
    );
    assert_eq!(m.node_stats(NodeId(2)), Default::default());
}

#[tokio::test]
async fn a_non_neighbour_target_delivers_nothing() {
    let m = TopologyManager::new(Topology::ring(5).unwrap(), ManagerConfig::default());
    let mut boxes: Vec<_> = (0..5).map(|i| m.register(NodeId(i)).unwrap()).collect();
    let err = m
        .publish(msg(0, 1), Targets::Only(vec![NodeId(1), NodeId(2)]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        TopologyError::NotNeighbour {
            from: NodeId(0),
            to: NodeId(2)
        }
    ));
    assert_eq!(err.to_string(), "node_2 is not a neighbour of node_0");
    for b in &mut boxes {
        assert_eq!(b.try_recv(), Err(RecvError::Empty));
    }
    let err = m.publish(msg(7, 1), Targets::Neighbours).await.unwrap_err();
    assert!(matches!(err, TopologyError::UnknownNode(NodeId(7))));
    assert_eq!(m.stats().refused, 2);
    assert_eq!(m.stats().messages, 0);
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused() {
    let m = TopologyManager::new(Topology::full(2).unwrap(), ManagerConfig::default());
    let mut b1 = m.register(NodeId(1)).unwrap();
    let ok = Message::new("fed", NodeId(0), MessageKind::User("blob".into()), 0)
        .with_body(vec![0u8; DEFAULT_MAX_BODY_SIZE]);
    m.publish(ok, Targets::Neighbours).await.unwrap();
    let big = Message::control("fed", NodeId(0), 0).with_body(vec![0u8; DEFAULT_MAX_BODY_SIZE + 1]);
    let err = m
        .publish(big.clone(), Targets::Neighbours)
        .await
        .unwrap_err();
    assert!(matches!(err, TopologyError::BodyTooLarge { size, max }
        if size == DEFAULT_MAX_BODY_SIZE + 1 && max == DEFAULT_MAX_BODY_SIZE));
    assert!(matches!(
        m.deliver(NodeId(1), big).await,
        Err(TopologyError::BodyTooLarge { .. })
    ));
    assert_eq!(b1.try_recv().unwrap().body.len(), DEFAULT_MAX_BODY_SIZE);
    assert_eq!(b1.try_recv(), Err(RecvError::Empty));
}

#[tokio::test]
async fn a_full_mailbox_makes_publish_wait() {
    let m = TopologyManager::new(Topology::full(2).unwrap(), config(2, 10_000));
    let mut b1 = m.register(NodeId(1)).unwrap();
    for round in 0..2 {
        m.publish(msg(0, round), Targets::Neighbours).await.unwrap();
    }
    let m2 = m.clone();
    let mut third = tokio::spawn(async move { m2.publish(msg(0, 2), Targets::Neighbours).await });
    // The third publish waits for room.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut third)
            .await
            .is_err()
    );
    assert_eq!(b1.len(), 2);
    assert_eq!(b1.recv().await.unwrap().round, 0);
    third.await.unwrap().unwrap();
    assert_eq!(b1.recv().await.unwrap().round, 1);
    assert_eq!(b1.recv().await.unwrap().round, 2);
    assert_eq!(m.stats().failed, 0);
}

#[tokio::test]
async fn a_mailbox_full_past_the_timeout_is_a_typed_error_not_a_drop() {
    let m = TopologyManager::new(Topology::star(4, NodeId(0)).unwrap(), config(1, 50));
    let mut leaves: Vec<_> = (1..4).map(|i| m.register(NodeId(i)).unwrap()).collect();
    m.publish(msg(0, 0), Targets::one(NodeId(2))).await.unwrap();

    // One target full: the others get the message, the report says who did not.
    let started = std::time::Instant::now();
    let err = m.publish(msg(0, 1), Targets::Neighbours).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(err.is_timeout());
    let TopologyError::Undelivered {
        delivered, failed, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(delivered, &[NodeId(1), NodeId(3)]);
    assert_eq!(failed.len(), 1);
    assert!(
        matches!(failed[0], (NodeId(2), TopologyError::Timeout { to: NodeId(2), after })
        if after == Duration::from_millis(50))
    );
    assert_eq!(
        err.to_string(),
        format!(
            "message {} not delivered to node_2 (mailbox of node_2 stayed full for 50ms): \
             delivered to 2 of 3 targets",
            msg_id(&err)
        )
    );
    assert_eq!(m.stats().failed, 1);
    assert_eq!(m.node_stats(NodeId(2)).failed_deliveries, 1);

    // deliver() reports the same typed timeout.
    assert!(matches!(
        m.deliver(NodeId(2), msg(9, 1)).await,
        Err(TopologyError::Timeout { to: NodeId(2), .. })
    ));
    // The full mailbox still holds exactly its first message; the others got round 1.
    assert_eq!(leaves[1].try_recv().unwrap().round, 0);
    assert_eq!(leaves[1].try_recv(), Err(RecvError::Empty));
    assert_eq!(leaves[0].try_recv().unwrap().round, 1);
    assert_eq!(leaves[2].try_recv().unwrap().round, 1);
}

fn msg_id(err: &TopologyError) -> String {
    match err {
        TopologyError::Undelivered { id, .. } => id.to_string(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn a_stop_is_received_before_queued_messages() {
    let m = TopologyManager::new(Topology::full(2).unwrap(), config(8, 1000));
    let mut b1 = m.register(NodeId(1)).unwrap();
    for round in 0..3 {
        m.publish(msg(0, round), Targets::Neighbours).await.unwrap();
    }
    m.stop(NodeId(1), Message::stop("fed", NodeId(0), 3))
        .await
        .unwrap();
    assert_eq!(b1.len(), 4);
    assert!(b1.recv().await.unwrap().is_stop());
    let rounds: Vec<u64> = [b1.try_recv(), b1.try_recv(), b1.try_recv()]
        .into_iter()
        .map(|r| r.unwrap().round)
        .collect();
    assert_eq!(rounds, [0, 1, 2]);

    // try_recv and recv_timeout check the stop slot first too.
    m.publish(msg(0, 4), Targets::Neighbours).await.unwrap();
    m.stop(NodeId(1), Message::stop("fed", NodeId(0), 5))
        .await
        .unwrap();
    assert!(b1.try_recv().unwrap().is_stop());
    m.stop(NodeId(1), Message::stop("fed", NodeId(0), 6))
        .await
        .unwrap();
    assert!(b1.recv_timeout(SHORT).await.unwrap().is_stop());
    assert_eq!(b1.recv_timeout(SHORT).await.unwrap().round, 4);
    assert_eq!(m.stats().stops, 3);
}

#[tokio::test]
async fn nodes_join_and_leave() {
    let m = TopologyManager::new(Topology::full(3).unwrap(), config(4, 50));
    let _b0 = m.register(NodeId(0)).unwrap();
    let mut b1 = m.register(NodeId(1)).unwrap();
    assert!(matches!(
        m.register(NodeId(1)),
        Err(TopologyError::AlreadyRegistered(NodeId(1)))
    ));
    assert!(matches!(
        m.register(NodeId(3)),
        Err(TopologyError::UnknownNode(NodeId(3)))
    ));
    assert_eq!(m.registered(), [NodeId(0), NodeId(1)]);

    // node_2 never joined: the publish reaches node_1 and says node_2 missed it.
    let err = m.publish(msg(0, 0), Targets::Neighbours).await.unwrap_err();
    assert!(
        matches!(&err, TopologyError::Undelivered { delivered, failed, .. }
        if delivered == &[NodeId(1)]
            && matches!(failed[..], [(NodeId(2), TopologyError::NotRegistered(NodeId(2)))]))
    );

    // Leaving keeps what is queued, then closes.
    m.publish(msg(0, 1), Targets::one(NodeId(1))).await.unwrap();
    m.leave(NodeId(1)).unwrap();
    assert!(matches!(
        m.leave(NodeId(1)),
        Err(TopologyError::NotRegistered(NodeId(1)))
    ));
    assert!(matches!(
        m.deliver(NodeId(1), msg(0, 2)).await,
        Err(TopologyError::NotRegistered(NodeId(1)))
    ));
    assert_eq!(b1.recv().await.unwrap().round, 0);
    assert_eq!(b1.recv_timeout(SHORT).await.unwrap().round, 1);
    assert_eq!(b1.recv().await, None);
    assert_eq!(b1.try_recv(), Err(RecvError::Closed));
    assert_eq!(b1.recv_timeout(SHORT).await, Err(RecvError::Closed));

    // Re-joining gives a fresh mailbox; counters survive.
    let mut b1 = m.register(NodeId(1)).unwrap();
    assert_eq!(b1.node(), NodeId(1));
    m.publish(msg(0, 3), Targets::one(NodeId(1))).await.unwrap();
    assert_eq!(b1.try_recv().unwrap().round, 3);
    assert_eq!(m.node_stats(NodeId(1)).received_messages, 3);

    // A mailbox dropped without leaving: deliveries fail with Closed; it can re-register.
    drop(b1);
    assert!(matches!(
        m.deliver(NodeId(1), msg(0, 4)).await,
        Err(TopologyError::Closed(NodeId(1)))
    ));
    let mut b1 = m.register(NodeId(1)).unwrap();
    assert_eq!(b1.recv_timeout(SHORT).await, Err(RecvError::Timeout(SHORT)));
}

#[tokio::test]
async fn deliver_skips_the_neighbour_check() {
    let m = TopologyManager::new(Topology::ring(5).unwrap(), ManagerConfig::default());
    let mut b2 = m.register(NodeId(2)).unwrap();
    // node_40 lives in another cluster; a gateway hands its message over.
    let remote = msg(40, 1).with_body(Bytes::from_static(b"other/node_40/round_1"));
    m.deliver(NodeId(2), remote.clone()).await.unwrap();
    assert_eq!(b2.recv().await.unwrap(), remote);
    assert_eq!(m.node_stats(NodeId(2)).received_messages, 1);
    assert_eq!(m.stats().messages, 1);
}

#[tokio::test]
async fn the_topology_can_be_swapped_between_rounds() {
    let m = TopologyManager::new(Topology::ring(6).unwrap(), ManagerConfig::default());
    let mut boxes: Vec<_> = (0..6).map(|i| m.register(NodeId(i)).unwrap()).collect();
    assert!(matches!(
        m.publish(msg(0, 0), Targets::one(NodeId(3))).await,
        Err(TopologyError::NotNeighbour { .. })
    ));

    m.set_topology(Topology::full(6).unwrap());
    m.publish(msg(0, 0), Targets::one(NodeId(3))).await.unwrap();
    assert_eq!(boxes[3].try_recv().unwrap().round, 0);

    // The adapter sees the results and the current graph.
    let to_star = |current: &Topology, results: &RoundResults| {
        let best = results
            .scores
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(node, _)| *node)
            .unwrap_or(NodeId(0));
        Topology::star(current.len(), best).map(Some)
    };
    let mut results = RoundResults::new(1);
    results.scores.insert(NodeId(4), 0.1);
    results.scores.insert(NodeId(1), 0.9);
    assert!(m.adapt(&to_star, &results).unwrap());
    assert_eq!(m.topology().neighbours(NodeId(0)), &[NodeId(4)]);
    let report = m.publish(msg(4, 2), Targets::Neighbours).await.unwrap();
    assert_eq!(report.delivered.len(), 5);
    for (i, b) in boxes.iter_mut().enumerate() {
        if i != 4 {
            assert_eq!(b.try_recv().unwrap().sender, NodeId(4));
        }
    }

    assert!(!m.adapt(&StaticTopology, &results).unwrap());
    let rewire = RewireKConnected { k: 3, seed: 9 };
    assert!(m.adapt(&rewire, &results).unwrap());
    assert_eq!(*m.topology(), Topology::k_connected(6, 3, 10).unwrap());
    let failing = |_: &Topology, _: &RoundResults| Topology::ring(2).map(Some);
    assert!(m.adapt(&failing, &results).is_err());
    assert_eq!(*m.topology(), Topology::k_connected(6, 3, 10).unwrap());
}

#[test]
fn the_manager_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<TopologyManager>();
    fn assert_send<T: Send + 'static>() {}
    assert_send::<gos_topology::Mailbox>();
}
