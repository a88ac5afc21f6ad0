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
    HybridTopologyManager::start(
        fed.gateway_config(id, &[peer]),
        topology.clone(),
        store,
        ManagerConfig::default(),
    )
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
