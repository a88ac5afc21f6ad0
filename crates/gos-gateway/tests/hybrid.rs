//! `HybridTopologyManager`: two clusters, a ring across them. Intra-cluster messages go
//! through the local manager; inter-cluster ones carry their object through the gateways, and
//! the receiving node reads the key from its own store either way.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gos_gateway::{EdgeKind, GatewayError, HybridTopology, HybridTopologyManager};
use gos_store::{ObjectKey, ObjectStore, ObjectStoreExt};
use gos_topology::{ManagerConfig, Message, NodeId, Targets, Topology};

async fn side(fed: &Fed, id: &str, peer: &str, topology: &HybridTopology) -> HybridTopologyManager {
    let store: Arc<dyn ObjectStore> = memory(1 << 30);
    // The default role: each side is a peer cluster of the other.
    let mut config = fed.gateway_config(id, &[]);
    config.tls.allowed = gos_gateway::AllowList::new([peer]);
    HybridTopologyManager::start(config, topology.clone(), store, ManagerConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_code_is_the_same_wherever_the_sender_lives() {
    let fed = Fed::new();
    // A ring 0 - 1 - 2 - 3 - 0; nodes 0, 1 in "east", 2, 3 in "west".
    let topology =
        HybridTopology::new(Topology::ring(4).unwrap(), ["east", "east", "west", "west"]).unwrap();
    assert_eq!(
        topology.edge_kind(NodeId(0), NodeId(1)),
        Some(EdgeKind::Intra)
    );
    assert_eq!(
        topology.edge_kind(NodeId(1), NodeId(2)),
        Some(EdgeKind::Inter)
    );
    assert_eq!(topology.edge_kind(NodeId(0), NodeId(2)), None);
    let east = side(&fed, "east", "west", &topology).await;
    let west = side(&fed, "west", "east", &topology).await;
    east.add_peer("west", addr(west.gateway())).unwrap();
    west.add_peer("east", addr(east.gateway())).unwrap();

    let mut n1 = east.register(NodeId(1)).unwrap();
    let mut n2 = west.register(NodeId(2)).unwrap();
    assert!(matches!(
        east.register(NodeId(3)),
        Err(GatewayError::ForeignNode { node: 3, .. })
    ));

    // Node 0 (east) to node 1 (east): intra-cluster, key only, no gateway traffic.
    let k0 = ObjectKey::round("fed", "node_0", 1).unwrap();
    east.store().put(&k0, pattern(1 << 20, 0)).await.unwrap();
    let report = east
        .publish(
            Message::key("fed", NodeId(0), 1, &k0),
            Targets::one(NodeId(1)),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.local, report.object_bytes_sent),
        (vec![NodeId(1)], 0)
    );
    // Node 1 (east) to node 2 (west): inter-cluster, the object travels with the message.
    let k1 = ObjectKey::round("fed", "node_1", 1).unwrap();
    east.store().put(&k1, pattern(8 << 20, 1)).await.unwrap();
    let report = east
        .publish(
            Message::key("fed", NodeId(1), 1, &k1),
            Targets::one(NodeId(2)),
        )
        .await
        .unwrap();
    assert_eq!(report.remote, vec![(NodeId(2), "west".to_owned())]);
    assert_eq!(report.object_bytes_sent, 8 << 20);

    // The same receiving code on both sides: take the key, read the local store.
    async fn receive(
        mailbox: &mut gos_topology::Mailbox,
        store: &Arc<dyn ObjectStore>,
    ) -> bytes::Bytes {
        let msg = mailbox.recv_timeout(Duration::from_secs(3)).await.unwrap();
        let key = msg.body_key().unwrap();
        store.get(&key).await.unwrap().unwrap()
    }
    assert_eq!(receive(&mut n1, east.store()).await, pattern(1 << 20, 0));
    assert_eq!(receive(&mut n2, west.store()).await, pattern(8 << 20, 1));
    assert_eq!(west.gateway().stats().delivered, 1);
    assert_eq!(
        east.gateway().stats().connections,
        0,
        "nothing came into east"
    );

    // A non-neighbour is refused before anything moves; so is a sender of another cluster.
    assert!(
        east.publish(
            Message::key("fed", NodeId(0), 2, &k0),
            Targets::one(NodeId(2))
        )
        .await
        .is_err()
    );
    assert!(matches!(
        east.publish(Message::key("fed", NodeId(2), 2, &k0), Targets::Neighbours)
            .await,
        Err(GatewayError::ForeignNode { node: 2, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_target_or_cluster_does_not_stop_the_others_and_leaves_nothing_behind() {
    let fed = Fed::new();
    // A full graph of six: east 0, 1; west 2, 3; north 4, 5. Default roles (peer clusters).
    let topology = HybridTopology::new(
        Topology::full(6).unwrap(),
        ["east", "east", "west", "west", "north", "north"],
    )
    .unwrap();
    let start = |id: &'static str, others: [&'static str; 2]| {
        let mut config = fed.gateway_config(id, &[]);
        config.tls.allowed = gos_gateway::AllowList::new(others);
        config.timeouts.connect = Duration::from_millis(500);
        config.max_attempts = 1;
        let topology = topology.clone();
        async move {
            HybridTopologyManager::start(
                config,
                topology,
                memory(1 << 30),
                ManagerConfig::default(),
            )
            .await
            .unwrap()
        }
    };
    let east = start("east", ["west", "north"]).await;
    let west = start("west", ["east", "north"]).await;
    let north = start("north", ["east", "west"]).await;
    east.add_peer("west", addr(west.gateway())).unwrap();
    east.add_peer("north", addr(north.gateway())).unwrap();
    // North goes away; in west only node 2 listens (node 3 never registered).
    north.shutdown().await;
    let mut n1 = east.register(NodeId(1)).unwrap();
    let mut n2 = west.register(NodeId(2)).unwrap();

    let key = ObjectKey::round("fed", "node_0", 1).unwrap();
    // One reader of node 0's object shares east's store: node 1.
    east.store()
        .put_opts(
            &key,
            pattern(2 << 20, 9),
            &gos_store::PutOptions::new().readers(1),
        )
        .await
        .unwrap();
    let report = east
        .publish(Message::key("fed", NodeId(0), 1, &key), Targets::Neighbours)
        .await
        .unwrap();
    assert_eq!(report.local, vec![NodeId(1)]);
    assert_eq!(report.remote, vec![(NodeId(2), "west".to_owned())]);
    let failed: Vec<(u32, &str)> = report
        .failed
        .iter()
        .map(|f| (f.node.0, f.cluster.as_str()))
        .collect();
    assert_eq!(failed, vec![(3, "west"), (4, "north"), (5, "north")]);
    assert!(!report.is_complete());
    assert_eq!(report.failed_local("east").count(), 0);

    // West counted its two targets and released for node 3 at once: node 2's release is
    // the last. East's reader releases its own copy. Nothing is left in either cluster.
    assert_eq!(
        west.store()
            .head(&key)
            .await
            .unwrap()
            .unwrap()
            .readers
            .count(),
        Some(1)
    );
    for (mailbox, store) in [(&mut n1, east.store()), (&mut n2, west.store())] {
        let msg = mailbox.recv_timeout(Duration::from_secs(3)).await.unwrap();
        let k = msg.body_key().unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap(), pattern(2 << 20, 9));
        assert!(store.release(&k).await.unwrap().deleted());
    }
    assert!(east.store().is_empty().await.unwrap());
    assert!(west.store().is_empty().await.unwrap());
    assert_eq!(west.store().stats().await.unwrap().reserved, 0);
}
