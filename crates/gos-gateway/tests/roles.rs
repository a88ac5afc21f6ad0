//! Authorization by role (each refusal `PermissionDenied`, typed), and the startup checks: a
//! gateway certificate the CA did not sign and allow-list ids that can never match are refused.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use gos_gateway::frame::{self, FrameKind, Request, Response, WireOptions};
use gos_gateway::tls::TlsError;
use gos_gateway::{
    AllowList, Gateway, GatewayConfig, GatewayError, HybridTopology, HybridTopologyManager,
    RemoteStore, Role,
};
use gos_store::{Error, KeyPrefix, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
use gos_topology::{ManagerConfig, Message, NodeId, Topology};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

fn denied<T: std::fmt::Debug>(r: gos_store::Result<T>) -> bool {
    matches!(r, Err(Error::PermissionDenied(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_may_do_what_their_role_allows_and_nothing_more() {
    let fed = Fed::new();
    let store = memory(1 << 30);
    let config = fed.gateway_config_with_roles(
        "alpha",
        &[
            ("reader", Role::ReadOnly),
            ("writer", Role::ReadWrite),
            ("ops", Role::Admin),
        ],
    );
    let gw = Gateway::start(config, store.clone()).await.unwrap();
    let reader = RemoteStore::connect(fed.client("reader", &gw))
        .await
        .unwrap();
    let writer = RemoteStore::connect(fed.client("writer", &gw))
        .await
        .unwrap();
    let ops = RemoteStore::connect(fed.client("ops", &gw)).await.unwrap();
    let k = key("fed/node_1/round_1");
    let fed_prefix = KeyPrefix::new("fed").unwrap();

    // A read-only client reads, and cannot write, delete, release or sweep.
    store.put(&k, Bytes::from_static(b"w")).await.unwrap();
    assert_eq!(reader.get(&k).await.unwrap().as_deref(), Some(&b"w"[..]));
    assert!(reader.head(&k).await.unwrap().is_some());
    assert_eq!(
        reader.keys_with_prefix(&fed_prefix).await.unwrap(),
        vec![k.clone()]
    );
    assert!(denied(reader.put(&k, Bytes::from_static(b"x")).await));
    assert!(denied(
        reader.reserve(&k, 1, &PutOptions::new()).await.map(|_| ())
    ));
    assert!(denied(reader.delete(&k).await));
    assert!(denied(reader.release(&k).await));
    assert!(denied(reader.sweep().await));

    // A read-write client writes single keys; it cannot list everything or delete in bulk.
    writer
        .put_opts(&k, Bytes::from_static(b"v"), &PutOptions::new().readers(2))
        .await
        .unwrap();
    writer.release(&k).await.unwrap();
    assert_eq!(writer.keys_with_prefix(&fed_prefix).await.unwrap().len(), 1);
    assert!(denied(writer.keys().await));
    assert!(denied(writer.delete_prefix(&fed_prefix).await));
    assert!(denied(writer.delete_rounds_before("fed", 9).await));
    assert_eq!(store.len().await.unwrap(), 1, "nothing was deleted");

    // An admin may.
    assert_eq!(ops.keys().await.unwrap(), vec![k.clone()]);
    assert_eq!(ops.delete_prefix(&fed_prefix).await.unwrap(), 1);
    assert!(gw.stats().denied >= 8);

    // A client cannot deliver messages.
    let conn = raw_connection(&fed, "writer", &gw).await;
    let deliver = Request::Deliver(Box::new(frame::Delivery {
        to: vec![1],
        message: Message::control("fed", NodeId(0), 1),
        object: None,
    }));
    let r = raw_request(&conn, &frame::encode(FrameKind::Request, &deliver).unwrap()).await;
    assert!(
        matches!(r, Response::Err(Error::PermissionDenied(_))),
        "{r:?}"
    );
}

/// Three clusters of a ring of six: east has nodes 0 and 1, west 2 and 3, north 4 and 5. Each
/// gateway allows the others with the default role (peer).
async fn three_clusters(fed: &Fed) -> Vec<HybridTopologyManager> {
    let topology = HybridTopology::new(
        Topology::full(6).unwrap(),
        ["east", "east", "west", "west", "north", "north"],
    )
    .unwrap();
    let ids = ["east", "west", "north"];
    let mut sides = Vec::new();
    for id in ids {
        let others: Vec<&str> = ids.iter().copied().filter(|o| *o != id).collect();
        let mut config = fed.gateway_config_with_roles(id, &[]);
        config.tls.allowed = AllowList::new(others);
        let side = HybridTopologyManager::start(
            config,
            topology.clone(),
            memory(1 << 30),
            ManagerConfig::default(),
        )
        .await
        .unwrap();
        sides.push(side);
    }
    for a in &sides {
        for b in &sides {
            if a.cluster_id() != b.cluster_id() {
                a.add_peer(b.cluster_id(), addr(b.gateway())).unwrap();
            }
        }
    }
    sides
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cluster_acts_only_for_its_own_nodes() {
    let fed = Fed::new();
    let sides = three_clusters(&fed).await;
    let west = &sides[1];
    assert_eq!(
        AllowList::new(["x"]).role("x"),
        Some(Role::Peer),
        "the default role"
    );
    // North, through west's gateway, as a plain client of its store.
    let as_north = RemoteStore::connect({
        let mut c = fed.client("north", west.gateway());
        c.tls.allowed = AllowList::new(["west"]);
        c
    })
    .await
    .unwrap();
    let east_key = key("fed/node_0/round_1");
    let north_key = key("fed/node_4/round_1");
    // Writes under its own nodes' keys only.
    as_north
        .put(&north_key, Bytes::from_static(b"n"))
        .await
        .unwrap();
    assert!(denied(
        as_north.put(&east_key, Bytes::from_static(b"forged")).await
    ));
    assert!(denied(
        as_north.put(&key("loose"), Bytes::from_static(b"x")).await
    ));
    // East's object in west's store, with two readers there: north cannot release, delete or
    // overwrite it, so it cannot make one of west's readers delete it for the other.
    west.store()
        .put_opts(
            &east_key,
            Bytes::from_static(b"e"),
            &PutOptions::new().readers(2),
        )
        .await
        .unwrap();
    assert!(denied(as_north.release(&east_key).await));
    assert!(denied(as_north.delete(&east_key).await));
    assert!(denied(as_north.keys().await));
    assert!(denied(
        as_north
            .delete_prefix(&KeyPrefix::new("fed").unwrap())
            .await
    ));
    assert_eq!(
        west.store()
            .head(&east_key)
            .await
            .unwrap()
            .unwrap()
            .readers
            .count(),
        Some(2)
    );

    // Deliveries: from its own nodes only, and objects under its own nodes' keys only.
    let conn = raw_connection(&fed, "north", west.gateway()).await;
    let send = |sender: u32, object: Option<&ObjectKey>| {
        let k = object.cloned().unwrap_or_else(|| key("fed/node_4/round_2"));
        Request::Deliver(Box::new(frame::Delivery {
            to: vec![2],
            message: Message::key("fed", NodeId(sender), 2, &k),
            object: object.map(|k| frame::ObjectHeader {
                key: k.clone(),
                len: 1,
                lease: None,
                transfer: None,
            }),
        }))
    };
    for forged in [
        send(0, None),
        send(4, Some(&east_key)),
        send(1, Some(&east_key)),
    ] {
        let r = raw_request(&conn, &frame::encode(FrameKind::Request, &forged).unwrap()).await;
        assert!(
            matches!(r, Response::Err(Error::PermissionDenied(_))),
            "{r:?}"
        );
    }
    let mut west_node = west.register(NodeId(2)).unwrap();
    assert!(
        west_node.try_recv().is_err(),
        "no forged message got through"
    );
    // The honest delivery goes through.
    let r = raw_request(
        &conn,
        &frame::encode(FrameKind::Request, &send(4, None)).unwrap(),
    )
    .await;
    assert!(matches!(r, Response::Ok(_)), "{r:?}");
    // A put by north through the raw wire under its own key with a garbled count of zero is
    // malformed, not an object any first release deletes.
    let mut put = frame::encode(
        FrameKind::Request,
        &Request::Put {
            key: north_key.clone(),
            options: WireOptions::from(&PutOptions::new().readers(7)),
            len: 0,
            reservation: false,
            transfer: None,
        },
    )
    .unwrap();
    let seven = put.iter().rposition(|b| *b == 7).unwrap();
    put[seven] = 0;
    let r = raw_request(&conn, &put).await;
    assert!(
        matches!(&r, Response::Err(Error::InvalidArgument(m)) if m.contains("bad request frame")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refuses_to_start_with_a_certificate_of_another_ca() {
    let fed = Fed::new();
    let impostor = gos_gateway::certs::FederationCa::generate("impostor").unwrap();
    let mut config: GatewayConfig = fed.gateway_config("alpha", &["beta"]);
    config.tls.identity = impostor.issue("alpha").unwrap();
    let started = Gateway::start(config, memory(1 << 20)).await;
    assert!(
        matches!(started, Err(GatewayError::Tls(TlsError::NotSignedByCa(_)))),
        "{started:?}"
    );
    // The same certificate with its own CA configured starts.
    let mut config = fed.gateway_config("alpha", &["beta"]);
    config.tls.identity = impostor.issue("alpha").unwrap();
    config.tls.ca = vec![impostor.cert_der().unwrap()];
    Gateway::start(config, memory(1 << 20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_ids_that_can_never_match_are_refused() {
    let fed = Fed::new();
    for bad in ["Beta", "beta.gos", "*", "", "-x", "a_b"] {
        let mut config = fed.gateway_config("alpha", &["ok"]);
        config.tls.allowed = AllowList::new(["ok", bad]);
        let started = Gateway::start(config, memory(1 << 20)).await;
        assert!(
            matches!(&started, Err(GatewayError::Tls(TlsError::InvalidAllowListId(id))) if id == bad),
            "{bad}: {started:?}"
        );
    }
    assert_eq!("read-only".parse::<Role>().unwrap(), Role::ReadOnly);
    assert!("root".parse::<Role>().is_err());
}
