//! Lifecycle over the wire (frame version 2): reader counts, leases, release, head, sweep and
//! round retention through a `RemoteStore`; reservations admitted and charged at the remote
//! store; bounded transfers (a trickling sender and a stalled reader are cut at their deadline,
//! caps on bytes in flight and connections answer `Busy`).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gos_gateway::frame::{self, FrameKind, Reply, Request, Response, WireOptions};
use gos_gateway::{Gateway, RemoteStore, Role};
use gos_store::{
    Clock, Error, KeyPrefix, Limits, ManualClock, ObjectKey, ObjectStore, ObjectStoreExt,
    PutOptions, ReleaseOutcome,
};
use gos_store_memory::MemoryStore;

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_leases_and_retention_cross_the_wire() {
    let fed = Fed::new();
    let clock = ManualClock::new();
    let store = Arc::new(
        MemoryStore::new(Limits::with_capacity(1 << 30)).with_clock(Arc::new(clock.clone())),
    );
    let mut config = fed.gateway_config_with_roles("alpha", &[("ops", Role::Admin)]);
    config.clock = Arc::new(clock.clone());
    let gw = Gateway::start(config, store.clone()).await.unwrap();
    let mut client = fed.client("ops", &gw);
    client.clock = Arc::new(clock.clone());
    let remote = RemoteStore::connect(client).await.unwrap();

    // Readers and a lease: the lease is relative on the wire, applied by the store's clock.
    let k = key("fed/node_1/round_3");
    let lease = Duration::from_millis(10_500);
    remote
        .put_opts(
            &k,
            pattern(4096, 1),
            &PutOptions::new().readers(3).lease(lease),
        )
        .await
        .unwrap();
    let meta = remote.head(&k).await.unwrap().unwrap();
    assert_eq!((meta.size, meta.readers.count()), (4096, Some(3)));
    assert_eq!(meta.expires_at, Some(clock.now() + lease));
    assert_eq!(
        store.head(&k).await.unwrap().unwrap().expires_at,
        meta.expires_at
    );
    // Release counts down at the remote store and deletes at zero, atomically there.
    assert!(
        matches!(remote.release(&k).await.unwrap(), ReleaseOutcome::Remaining(n) if n.get() == 2)
    );
    assert!(
        matches!(remote.release(&k).await.unwrap(), ReleaseOutcome::Remaining(n) if n.get() == 1)
    );
    assert_eq!(remote.release(&k).await.unwrap(), ReleaseOutcome::Deleted);
    assert_eq!(remote.release(&k).await.unwrap(), ReleaseOutcome::NotFound);
    assert!(remote.head(&k).await.unwrap().is_none());
    let unbounded = key("fed/node_1/plain");
    remote.put(&unbounded, pattern(10, 2)).await.unwrap();
    assert_eq!(
        remote.release(&unbounded).await.unwrap(),
        ReleaseOutcome::Unbounded
    );

    // An expired object is gone, and sweep through the gateway returns its space.
    let short = key("fed/node_2/round_3");
    remote
        .put_opts(
            &short,
            pattern(1 << 20, 3),
            &PutOptions::new().lease(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(6));
    assert_eq!(remote.sweep().await.unwrap(), 1);
    assert_eq!(remote.get(&short).await.unwrap(), None);
    assert_eq!(store.stats().await.unwrap().bytes, 10);

    // Round retention in one request.
    for round in 0..5 {
        remote
            .put(
                &ObjectKey::round("fed", "node_4", round).unwrap(),
                pattern(8, 4),
            )
            .await
            .unwrap();
    }
    assert_eq!(remote.delete_rounds_before("fed", 3).await.unwrap(), 3);
    assert_eq!(
        remote
            .keys_with_prefix(&KeyPrefix::new("fed/node_4").unwrap())
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        remote.delete_rounds_before("a/b", 3).await,
        Err(Error::InvalidKey(_))
    ));
    // A create with a count is sent once and answers as a local create would.
    let c = key("fed/node_5/round_1");
    remote
        .put_opts(&c, pattern(1, 5), &PutOptions::create().readers(2))
        .await
        .unwrap();
    assert!(matches!(
        remote
            .put_opts(&c, pattern(1, 5), &PutOptions::create().readers(2))
            .await,
        Err(Error::AlreadyExists { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_reservations_are_admitted_and_charged_at_the_store() {
    let fed = Fed::new();
    let store = memory(4 << 20);
    let gw = fed.gateway("alpha", &["ops"], store.clone()).await;
    let remote = RemoteStore::connect(fed.client("ops", &gw)).await.unwrap();
    let mut held = Vec::new();
    for i in 0..4 {
        let k = key(&format!("resv/node_1/round_{i}"));
        held.push(
            remote
                .reserve(&k, 1 << 20, &PutOptions::new().readers(1))
                .await
                .unwrap(),
        );
    }
    // Charged at the remote store before a byte of them was sent.
    assert_eq!(store.stats().await.unwrap().reserved, 4 << 20);
    assert!(matches!(
        remote
            .reserve(&key("resv/node_1/round_9"), 1 << 20, &PutOptions::new())
            .await,
        Err(Error::StoreFull { .. })
    ));
    // A put from another client is refused too: the reservations hold the space.
    let other = RemoteStore::connect(fed.client("ops", &gw)).await.unwrap();
    assert!(matches!(
        other.put(&key("x"), pattern(1 << 20, 0)).await,
        Err(Error::StoreFull { .. })
    ));
    // Commit one: it is stored with its options; drop one: its space comes back.
    let mut first = held.remove(0);
    first.as_mut_slice().copy_from_slice(&pattern(1 << 20, 7));
    first.commit().await.unwrap();
    let k0 = key("resv/node_1/round_0");
    assert_eq!(store.get(&k0).await.unwrap().unwrap(), pattern(1 << 20, 7));
    assert_eq!(
        store.head(&k0).await.unwrap().unwrap().readers.count(),
        Some(1)
    );
    drop(held.remove(0));
    let store2 = store.clone();
    eventually(async || store2.stats().await.unwrap().reserved == 2 << 20).await;
    let mut again = remote
        .reserve(&key("resv/node_1/round_8"), 1 << 20, &PutOptions::new())
        .await
        .unwrap();
    again.as_mut_slice().fill(1);
    again.commit().await.unwrap();
    drop(held);
    let store3 = store.clone();
    eventually(async || store3.stats().await.unwrap().reserved == 0).await;
    assert_eq!(store.stats().await.unwrap().bytes, 2 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_uploads_to_a_4_mib_store_are_not_all_admitted() {
    let fed = Fed::new();
    let store = memory(4 << 20);
    let gw = Arc::new(fed.gateway("alpha", &["ops"], store.clone()).await);
    let remote = Arc::new(RemoteStore::connect(fed.client("ops", &gw)).await.unwrap());
    // 32 uploads of 1 MiB at once, each holding its admission until all have been tried.
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (remote, barrier, store) = (remote.clone(), barrier.clone(), store.clone());
            tokio::spawn(async move {
                let k = key(&format!("up/node_1/round_{i}"));
                let admitted = remote.reserve(&k, 1 << 20, &PutOptions::new()).await;
                let stats = store.stats().await.unwrap();
                assert!(stats.reserved + stats.bytes <= 4 << 20, "{stats:?}");
                barrier.wait().await;
                match admitted {
                    Ok(mut r) => {
                        r.as_mut_slice().fill(i as u8);
                        r.commit().await.map(|()| true)
                    }
                    Err(Error::StoreFull { .. } | Error::Busy(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 4, "exactly the capacity's worth was admitted");
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.bytes, stats.reserved, stats.entries),
        (4 << 20, 0, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_flight_per_identity_are_capped_with_busy() {
    let fed = Fed::new();
    let store = memory(1 << 30);
    let mut config = fed.gateway_config("alpha", &["a", "b"]);
    config.limits.max_in_flight_per_peer = 2 << 20;
    let gw = Gateway::start(config, store.clone()).await.unwrap();
    let a = RemoteStore::connect(fed.client("a", &gw)).await.unwrap();
    let b = RemoteStore::connect(fed.client("b", &gw)).await.unwrap();
    let r1 = a
        .reserve(&key("k/1"), 1 << 20, &PutOptions::new())
        .await
        .unwrap();
    let r2 = a
        .reserve(&key("k/2"), 1 << 20, &PutOptions::new())
        .await
        .unwrap();
    let busy = a.reserve(&key("k/3"), 1 << 20, &PutOptions::new()).await;
    assert!(
        matches!(&busy, Err(e @ Error::Busy(_)) if e.is_retryable()),
        "{busy:?}"
    );
    // Refused before reserving: the store holds only the two.
    assert_eq!(store.stats().await.unwrap().reserved, 2 << 20);
    assert!(gw.stats().busy >= 1);
    // Another identity has its own allowance.
    b.put(&key("k/4"), pattern(1 << 20, 4)).await.unwrap();
    drop((r1, r2));
    let store2 = store.clone();
    eventually(async || store2.stats().await.unwrap().reserved == 0).await;
    a.put(&key("k/3"), pattern(2 << 20, 3)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_identity_cap_are_answered_busy() {
    let fed = Fed::new();
    let store = memory(1 << 20);
    let mut config = fed.gateway_config("alpha", &["a", "b"]);
    config.limits.max_connections_per_peer = 2;
    let gw = Gateway::start(config, store).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let c = RemoteStore::connect(fed.client("a", &gw)).await.unwrap();
        clients.push(c);
    }
    let mut third = fed.client("a", &gw);
    third.max_attempts = 1;
    assert!(matches!(
        RemoteStore::connect(third).await,
        Err(gos_gateway::GatewayError::Remote(Error::Busy(_)))
    ));
    // The first two, and another identity, are served.
    clients[0].put(&key("x"), pattern(8, 1)).await.unwrap();
    RemoteStore::connect(fed.client("b", &gw))
        .await
        .unwrap()
        .len()
        .await
        .unwrap();
    // One closes: a new connection is served again.
    drop(clients.pop());
    let gw = &gw;
    eventually(async || {
        let mut c = fed.client("a", gw);
        c.max_attempts = 1;
        RemoteStore::connect(c).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_sender_is_cut_at_its_deadline_and_its_reservation_freed() {
    let fed = Fed::new();
    let store = memory(64 << 20);
    let mut config = fed.gateway_config("alpha", &["slow"]);
    config.timeouts.io = Duration::from_millis(500);
    // 1 MiB at 1 MiB/s: the whole put must be over within 0.5 s + 1 s.
    config.limits.min_rate = 1 << 20;
    let gw = Gateway::start(config, store.clone()).await.unwrap();
    let conn = raw_connection(&fed, "slow", &gw).await;
    let put = Request::Put {
        key: key("t/node_1/round_1"),
        options: WireOptions::from(&PutOptions::new()),
        len: 1 << 20,
        reservation: false,
        transfer: None,
    };
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame::encode(FrameKind::Request, &put).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        read_one_response(&mut recv).await,
        Response::Ok(Reply::Admitted)
    ));
    assert_eq!(store.stats().await.unwrap().reserved, 1 << 20);
    // One KiB every 100 ms: each read makes progress well within the io timeout, but the
    // whole would take 100 s.
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if send.write_all(&[7u8; 1024]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let response = read_one_response(&mut recv).await;
    let took = started.elapsed();
    assert!(
        matches!(response, Response::Err(Error::Timeout { .. })),
        "{response:?}"
    );
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.reserved, stats.bytes, stats.entries), (0, 0, 0));
    assert_eq!(gw.stats().too_slow, 1);
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_a_get_is_cut_at_its_deadline() {
    let fed = Fed::new();
    let store = memory(64 << 20);
    let mut config = fed.gateway_config("alpha", &["slow"]);
    config.timeouts.io = Duration::from_millis(500);
    config.limits.min_rate = 16 << 20;
    let gw = Gateway::start(config, store.clone()).await.unwrap();
    let k = key("big");
    // Larger than the reader's 16 MiB stream window: the gateway stalls once it is full.
    store.put(&k, pattern(40 << 20, 1)).await.unwrap();
    let conn = raw_connection(&fed, "slow", &gw).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame::encode(FrameKind::Request, &Request::Get { key: k }).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    assert!(matches!(
        read_one_response(&mut recv).await,
        Response::Ok(Reply::Object(Some(_)))
    ));
    // Read nothing more; the gateway gives up at 0.5 s + 40 MiB / 16 MiB/s = 3 s.
    let gw = &gw;
    eventually(async || gw.stats().too_slow == 1).await;
    // What was buffered can be read, then the stream ends in a reset, not in a whole object.
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(Some(n)) => total += n,
            other => break other,
        }
    };
    assert!(matches!(end, Err(quinn::ReadError::Reset(_))), "{end:?}");
    assert!(total < 40 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_dropped_outside_a_runtime_is_freed_before_the_next_request() {
    let fed = Fed::new();
    let store = memory(16 << 20);
    let gw = fed.gateway("alpha", &["a"], store.clone()).await;
    let a = RemoteStore::connect(fed.client("a", &gw)).await.unwrap();
    for round in 0..100 {
        let r = a
            .reserve(&key(&format!("r/{round}")), 1 << 20, &PutOptions::new())
            .await
            .unwrap();
        // Dropped on a thread with no runtime, as a synchronous caller (or the conformance
        // suite's racing threads) would: the next request must still see the space freed.
        std::thread::scope(|s| s.spawn(move || drop(r)).join().unwrap());
        assert_eq!(a.stats().await.unwrap().reserved, 0, "round {round}");
    }
}
