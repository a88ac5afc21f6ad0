//! Two gateways on 127.0.0.1 in one process: messages and 64 MiB objects across clusters,
//! exactly-once retries, transfers cut mid-object, corrupted payloads, slow readers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use gos_gateway::frame::{self, FrameKind, Reply, Request, Response, WireOptions};
use gos_gateway::{Outgoing, TargetOutcome};
use gos_store::{ObjectKey, ObjectStore, ObjectStoreExt, PutOptions, ReleaseOutcome};
use gos_topology::{Message, NodeId};

const BIG: usize = 64 << 20;

fn outgoing<'a>(key: &'a ObjectKey, bytes: &'a bytes::Bytes) -> Outgoing<'a> {
    Outgoing {
        key,
        bytes,
        lease: None,
    }
}

fn put_request(key: &ObjectKey, len: u64) -> Request {
    Request::Put {
        key: key.clone(),
        options: WireOptions::from(&PutOptions::new()),
        len,
        reservation: false,
        transfer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_exchange_messages_and_64_mib_objects() {
    let fed = Fed::new();
    let a = fed.cluster("cluster-a", &["cluster-b"], 3).await;
    let b = fed.cluster("cluster-b", &["cluster-a"], 3).await;
    let mut b1 = b.manager.register(NodeId(1)).unwrap();
    let mut a2 = a.manager.register(NodeId(2)).unwrap();

    let to_b = a.gateway.peer("cluster-b", addr(&b.gateway)).unwrap();
    assert_eq!(to_b.ping().await.unwrap(), "cluster-b");
    let key = ObjectKey::round("fed", "node_0", 1).unwrap();
    let weights = pattern(BIG, 7);
    let msg = Message::key("fed", NodeId(0), 1, &key);
    let done = to_b
        .deliver(&[NodeId(1)], &msg, Some(outgoing(&key, &weights)))
        .await
        .unwrap();
    assert_eq!(done, vec![(NodeId(1), TargetOutcome::Delivered)]);
    let got = b1.recv_timeout(Duration::from_secs(3)).await.unwrap();
    assert_eq!(got, msg, "the key-only message arrives as sent");
    assert_eq!(got.body_key(), Some(key.clone()));
    let stored = b.store.get(&key).await.unwrap().unwrap();
    assert!(
        stored == weights,
        "the object is stored under the same key, intact"
    );

    // And back, a message without an object.
    let to_a = b.gateway.peer("cluster-a", addr(&a.gateway)).unwrap();
    let reply = Message::control("fed", NodeId(1), 1).with_header("ack", "1");
    to_a.deliver(&[NodeId(2)], &reply, None).await.unwrap();
    assert_eq!(
        a2.recv_timeout(Duration::from_secs(3)).await.unwrap(),
        reply
    );

    // The peer's store through the same connection.
    let remote_b = to_b.store().await.unwrap();
    assert_eq!(remote_b.get(&key).await.unwrap().unwrap().len(), BIG);
    assert!(b.gateway.stats().bytes_in >= BIG as u64);
    assert_eq!(b.gateway.stats().delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_delivery_reaches_the_mailbox_once() {
    let fed = Fed::new();
    let a = fed.cluster("cluster-a", &["cluster-b"], 2).await;
    let b = fed.cluster("cluster-b", &["cluster-a"], 2).await;
    let mut mailbox = b.manager.register(NodeId(1)).unwrap();
    let key = ObjectKey::round("fed", "node_0", 3).unwrap();
    let object = pattern(4 << 20, 3);
    let msg = Message::key("fed", NodeId(0), 3, &key);

    // First attempt on a raw connection: the whole request goes out, then the connection
    // dies before the reply is read (the reply is lost).
    let conn = raw_connection(&fed, "cluster-a", &b.gateway).await;
    let request = Request::Deliver(Box::new(frame::Delivery {
        to: vec![1],
        message: msg.clone(),
        object: Some(frame::ObjectHeader {
            key: key.clone(),
            len: object.len() as u64,
            lease: None,
            transfer: None,
        }),
    }));
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame::encode(FrameKind::Request, &request).unwrap())
        .await
        .unwrap();
    send.write_all(&object).await.unwrap();
    let mut checksum = frame::Checksum::new();
    checksum.update(&object);
    send.write_all(&checksum.trailer()).await.unwrap();
    send.finish().unwrap();
    eventually(async || mailbox.len() == 1).await;
    conn.close(0u32.into(), b"lost");

    // The sender retries the same message id through its gateway.
    let peer = a.gateway.peer("cluster-b", addr(&b.gateway)).unwrap();
    for _ in 0..2 {
        let again = peer
            .deliver(&[NodeId(1)], &msg, Some(outgoing(&key, &object)))
            .await
            .unwrap();
        assert_eq!(again, vec![(NodeId(1), TargetOutcome::Duplicate)]);
    }
    assert_eq!(
        mailbox.recv_timeout(Duration::from_secs(1)).await.unwrap(),
        msg
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(mailbox.try_recv().is_err(), "delivered exactly once");
    assert_eq!(b.gateway.stats().delivered, 1);
    assert_eq!(b.gateway.stats().duplicates, 2);
    assert_eq!(b.store.get(&key).await.unwrap().unwrap(), object);
    // The retries did not store the object again: its one reader count is intact.
    assert_eq!(
        b.store.release(&key).await.unwrap(),
        ReleaseOutcome::Deleted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_transfer_leaves_nothing_partial() {
    let fed = Fed::new();
    let b = fed.cluster("cluster-b", &["cluster-a"], 2).await;
    let mut mailbox = b.manager.register(NodeId(1)).unwrap();
    let key = ObjectKey::new("fed/node_0/round_1").unwrap();
    for deliver in [false, true] {
        let conn = raw_connection(&fed, "cluster-a", &b.gateway).await;
        let request = if deliver {
            Request::Deliver(Box::new(frame::Delivery {
                to: vec![1],
                message: Message::key("fed", NodeId(0), 1, &key),
                object: Some(frame::ObjectHeader {
                    key: key.clone(),
                    len: BIG as u64,
                    lease: None,
                    transfer: None,
                }),
            }))
        } else {
            put_request(&key, BIG as u64)
        };
        let failed_before = b.gateway.stats().requests_failed;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&frame::encode(FrameKind::Request, &request).unwrap())
            .await
            .unwrap();
        send.write_all(&pattern(8 << 20, 0)).await.unwrap();
        // Cut: the connection dies with 8 MiB of 64 MiB sent.
        conn.close(0u32.into(), b"killed");
        let gateway = &b.gateway;
        eventually(async || gateway.stats().requests_failed > failed_before).await;
        assert_eq!(b.store.len().await.unwrap(), 0);
        let stats = b.store.stats().await.unwrap();
        assert_eq!((stats.bytes, stats.reserved), (0, 0));
        assert!(mailbox.try_recv().is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_payload_is_rejected() {
    let fed = Fed::new();
    let b = fed.cluster("cluster-b", &["cluster-a"], 2).await;
    let conn = raw_connection(&fed, "cluster-a", &b.gateway).await;
    let key = ObjectKey::new("k").unwrap();
    let object = pattern(1 << 20, 9);
    let mut checksum = frame::Checksum::new();
    checksum.update(&object);
    let trailer = checksum.trailer();
    let mut bytes =
        frame::encode(FrameKind::Request, &put_request(&key, object.len() as u64)).unwrap();
    let header_len = bytes.len();
    bytes.extend_from_slice(&object);
    bytes.extend_from_slice(&trailer);
    // One bit flipped in transit (past QUIC's own integrity, as a buggy middle layer would).
    let mut corrupted = bytes.clone();
    corrupted[header_len + 12345] ^= 0x10;
    let response = raw_request(&conn, &corrupted).await;
    assert!(
        matches!(response, Response::Err(gos_store::Error::Corrupted(_))),
        "{response:?}"
    );
    assert_eq!(b.store.len().await.unwrap(), 0);
    assert_eq!(b.store.stats().await.unwrap().reserved, 0);
    // The same bytes, intact, are stored.
    assert!(matches!(
        raw_request(&conn, &bytes).await,
        Response::Ok(Reply::Done)
    ));
    assert_eq!(b.store.get(&key).await.unwrap().unwrap(), object);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_delivery_is_rejected_and_nothing_is_delivered() {
    let fed = Fed::new();
    let b = fed.cluster("cluster-b", &["cluster-a"], 2).await;
    let mut mailbox = b.manager.register(NodeId(1)).unwrap();
    let conn = raw_connection(&fed, "cluster-a", &b.gateway).await;
    let key = ObjectKey::round("fed", "node_0", 1).unwrap();
    let object = pattern(1 << 20, 4);
    let request = Request::Deliver(Box::new(frame::Delivery {
        to: vec![1],
        message: Message::key("fed", NodeId(0), 1, &key),
        object: Some(frame::ObjectHeader {
            key: key.clone(),
            len: object.len() as u64,
            lease: None,
            transfer: None,
        }),
    }));
    let mut bytes = frame::encode(FrameKind::Request, &request).unwrap();
    let header_len = bytes.len();
    bytes.extend_from_slice(&object);
    bytes.extend_from_slice(&gos_store::Digest::of(&object).to_bytes());
    // One bit flipped on the way into the receiving cluster.
    bytes[header_len + 777] ^= 0x01;
    let response = raw_request(&conn, &bytes).await;
    assert!(
        matches!(response, Response::Err(gos_store::Error::Corrupted(_))),
        "{response:?}"
    );
    assert_eq!(b.store.len().await.unwrap(), 0);
    assert_eq!(b.store.stats().await.unwrap().reserved, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(mailbox.try_recv().is_err(), "nothing is delivered");
    assert_eq!(b.gateway.stats().delivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_byte_with_large_windows() {
    // quinn-proto before 0.11.19 failed such a stream with "too many gaps in stream buffer"
    // once a lagging reader let ~2048 packets pile up (quinn #2809); our windows are 16 MiB.
    let fed = Fed::new();
    let b = fed.cluster("cluster-b", &["cluster-a"], 2).await;
    let key = ObjectKey::new("big").unwrap();
    let object = pattern(24 << 20, 5);
    b.store.put(&key, object.clone()).await.unwrap();
    let conn = raw_connection(&fed, "cluster-a", &b.gateway).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame::encode(FrameKind::Request, &Request::Get { key }).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let response = read_response(&mut recv).await;
    assert!(
        matches!(response, Response::Ok(Reply::Object(Some(n))) if n == object.len() as u64),
        "{response:?}"
    );
    // Let the gateway fill the whole stream window before reading anything ...
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ... then read in small pieces, pausing often.
    let mut got = Vec::with_capacity(object.len());
    let mut buf = vec![0u8; 256 << 10];
    while got.len() < object.len() {
        let want = (object.len() - got.len()).min(buf.len());
        let n = recv.read(&mut buf[..want]).await.unwrap().unwrap();
        got.extend_from_slice(&buf[..n]);
        if got.len() % (2 << 20) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut trailer = [0u8; frame::CHECKSUM_LEN];
    recv.read_exact(&mut trailer).await.unwrap();
    let mut checksum = frame::Checksum::new();
    checksum.update(&got);
    assert!(checksum.matches(trailer));
    assert!(got == object[..]);
    assert!(conn.close_reason().is_none(), "the connection survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_to_a_store_only_gateway_or_an_unknown_node_is_refused() {
    let fed = Fed::new();
    let store_only = fed
        .gateway("cluster-s", &["cluster-a"], memory(1 << 20))
        .await;
    let b = fed.cluster("cluster-b", &["cluster-a"], 2).await;
    let a = fed
        .cluster("cluster-a", &["cluster-b", "cluster-s"], 2)
        .await;
    let msg = Message::control("fed", NodeId(0), 1);
    let to_s = a.gateway.peer("cluster-s", addr(&store_only)).unwrap();
    assert!(matches!(
        to_s.deliver(&[NodeId(1)], &msg, None).await,
        Err(gos_gateway::GatewayError::Remote(
            gos_store::Error::InvalidArgument(_)
        ))
    ));
    let to_b = a.gateway.peer("cluster-b", addr(&b.gateway)).unwrap();
    // Node 1 exists but never registered a mailbox: that target failed.
    let outcomes = to_b.deliver(&[NodeId(1)], &msg, None).await.unwrap();
    assert!(
        matches!(outcomes.as_slice(), [(NodeId(1), TargetOutcome::Failed(_))]),
        "{outcomes:?}"
    );
    // A failed delivery without an object does not burn the id: once the node is there, the
    // same message goes.
    let mut mailbox = b.manager.register(NodeId(1)).unwrap();
    assert_eq!(
        to_b.deliver(&[NodeId(1)], &msg, None).await.unwrap(),
        vec![(NodeId(1), TargetOutcome::Delivered)]
    );
    assert_eq!(
        mailbox.recv_timeout(Duration::from_secs(1)).await.unwrap(),
        msg
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_commits_one_reader_per_target_and_releases_for_the_unreached() {
    let fed = Fed::new();
    let a = fed.cluster("cluster-a", &["cluster-b"], 4).await;
    let b = fed.cluster("cluster-b", &["cluster-a"], 4).await;
    // Nodes 1 and 2 listen at b; node 3 never registered.
    let mut n1 = b.manager.register(NodeId(1)).unwrap();
    let mut n2 = b.manager.register(NodeId(2)).unwrap();
    let to_b = a.gateway.peer("cluster-b", addr(&b.gateway)).unwrap();
    let key = ObjectKey::round("fed", "node_0", 4).unwrap();
    let object = pattern(1 << 20, 4);
    let msg = Message::key("fed", NodeId(0), 4, &key);
    let lease = Duration::from_secs(3600);
    let outcomes = to_b
        .deliver(
            &[NodeId(3), NodeId(1), NodeId(2), NodeId(1)],
            &msg,
            Some(Outgoing {
                key: &key,
                bytes: &object,
                lease: Some(lease),
            }),
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3, "one outcome per distinct target");
    assert_eq!(outcomes[0], (NodeId(1), TargetOutcome::Delivered));
    assert_eq!(outcomes[1], (NodeId(2), TargetOutcome::Delivered));
    assert!(matches!(outcomes[2], (NodeId(3), TargetOutcome::Failed(_))));
    // Three readers were counted, the unreached one released at once: two left, and the
    // lease crossed as what was left of it.
    let meta = b.store.head(&key).await.unwrap().unwrap();
    assert_eq!(meta.readers.count(), Some(2));
    let left = meta
        .expires_at
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left <= lease && left > lease - Duration::from_secs(60),
        "{left:?}"
    );
    for mailbox in [&mut n1, &mut n2] {
        let got = mailbox.recv_timeout(Duration::from_secs(3)).await.unwrap();
        let key = got.body_key().unwrap();
        assert_eq!(b.store.get(&key).await.unwrap().unwrap(), object);
        b.store.release(&key).await.unwrap();
    }
    assert!(
        b.store.is_empty().await.unwrap(),
        "the last reader deleted it"
    );
    // A retry of the same message (a lost reply) changes nothing: the failed target stays
    // failed, the object is not stored again.
    let again = to_b
        .deliver(
            &[NodeId(1), NodeId(2), NodeId(3)],
            &msg,
            Some(outgoing(&key, &object)),
        )
        .await
        .unwrap();
    assert_eq!(again[0], (NodeId(1), TargetOutcome::Duplicate));
    assert!(matches!(again[2], (NodeId(3), TargetOutcome::Failed(_))));
    assert!(b.store.is_empty().await.unwrap());
}
