//! Resume after a cut (issue 11): a put whose connection is cut continues on a new connection
//! from the bytes the gateway holds, into the same reservation, within the gateway's grace
//! period; after it the reservation is freed and a resume is refused cleanly. Nothing partial
//! is ever visible, and the object arrives once, whole, with its digest.
//!
//! The protocol steps are cut deterministically on raw connections (before the header is
//! read, at byte 0, in the middle, at the end of the object, inside the trailer, after the
//! commit); the whole client is cut at random offsets through a proxy that drops every packet
//! (gos-netem), with the seed printed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gos_gateway::frame::{
    self, FrameKind, Reply, Request, Response, ResumePoint, TransferId, WireOptions,
};
use gos_gateway::{Gateway, GatewayConfig, RemoteStore, Timeouts};
use gos_netem::{PathConfig, ProxyConfig, UdpProxy};
use gos_store::{Digest, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
use gos_store_memory::MemoryStore;
use quinn::VarInt;

/// Every test is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

/// The tests that move tens of MiB through a userspace proxy take turns: on two cores, four
/// of them at once starve each other past the short timeouts they test with.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The close code of a client that reconnects (a cut the gateway keeps for a resume).
const RECONNECTING: u32 = 4;

fn put(key: &ObjectKey, len: u64, transfer: TransferId) -> Request {
    Request::Put {
        key: key.clone(),
        options: WireOptions::from(&PutOptions::new()),
        len,
        reservation: false,
        transfer: Some(transfer),
    }
}

fn resume(key: &ObjectKey, len: u64, transfer: TransferId) -> Vec<u8> {
    frame::encode(
        FrameKind::Request,
        &Request::Resume {
            transfer,
            key: key.clone(),
            len,
        },
    )
    .unwrap()
}

async fn gateway_with(fed: &Fed, grace: Duration) -> (Gateway, Arc<MemoryStore>) {
    let store = memory(1 << 30);
    let mut config: GatewayConfig = fed.gateway_config("east", &["west", "other"]);
    config.resume_grace = grace;
    let gateway = Gateway::start(config, store.clone() as Arc<dyn ObjectStore>)
        .await
        .unwrap();
    (gateway, store)
}

/// A raw put of `len` bytes under `key` naming `transfer`, sent as `west` on a new
/// connection: its header only.
async fn raw_put(
    fed: &Fed,
    gateway: &Gateway,
    key: &ObjectKey,
    len: u64,
    transfer: TransferId,
) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
    let conn = raw_connection(fed, "west", gateway).await;
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame::encode(FrameKind::Request, &put(key, len, transfer)).unwrap())
        .await
        .unwrap();
    (conn, send, recv)
}

/// [`raw_put`], then the gateway's `Admitted`.
async fn admitted_put(
    fed: &Fed,
    gateway: &Gateway,
    key: &ObjectKey,
    len: u64,
    transfer: TransferId,
) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
    let (conn, send, mut recv) = raw_put(fed, gateway, key, len, transfer).await;
    assert!(matches!(
        read_one_response(&mut recv).await,
        Response::Ok(Reply::Admitted)
    ));
    (conn, send, recv)
}

/// The store holds `object` under `key`, whole, with its digest.
async fn assert_whole(store: &MemoryStore, key: &ObjectKey, object: &[u8]) {
    let (value, digest) = store.get_digested(key).await.unwrap().expect("stored");
    assert!(value == object, "{key}: the object is whole");
    assert_eq!(digest, Digest::of(object), "{key}: with its digest");
}

async fn nothing_visible(store: &MemoryStore) {
    assert_eq!(store.len().await.unwrap(), 0, "no key is visible");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.bytes, stats.reserved), (0, 0), "{stats:?}");
}

/// Where a raw put is cut.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Right after the header is sent, before waiting for anything.
    AfterHeader,
    /// After `Admitted` and this many object bytes (the trailer counts past the object).
    AfterBytes(usize),
}

/// One raw put cut at `cut`, then resumed on a new connection of the same identity; returns
/// where the gateway said to go on from.
async fn cut_and_resume(
    fed: &Fed,
    gateway: &Gateway,
    store: &MemoryStore,
    cut: Cut,
) -> ResumePoint {
    let len = 3 << 20;
    let key = ObjectKey::new(format!("resume/{cut:?}").replace(['(', ')'], "_")).unwrap();
    let object = pattern(len, 7);
    let digest = Digest::of(&object);
    let mut wire = object.to_vec();
    wire.extend_from_slice(&digest.to_bytes());
    let transfer = TransferId::fresh();

    let (conn, mut send, mut recv) = raw_put(fed, gateway, &key, len as u64, transfer).await;
    if let Cut::AfterBytes(n) = cut {
        assert!(matches!(
            read_one_response(&mut recv).await,
            Response::Ok(Reply::Admitted)
        ));
        send.write_all(&wire[..n]).await.unwrap();
        if n == wire.len() {
            // Everything went: wait for the commit, then lose its answer.
            let stored = &key;
            eventually(async || store.len().await.unwrap() == 1).await;
            assert!(store.get(stored).await.unwrap().is_some());
        }
    }
    // Give the gateway the bytes (a cut loses what was not received; both are fine).
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.close(VarInt::from_u32(RECONNECTING), b"cut");
    if !matches!(cut, Cut::AfterBytes(n) if n == wire.len()) {
        // Nothing partial is visible while the transfer waits for its client.
        assert_eq!(store.len().await.unwrap(), 0);
    }

    let again = raw_connection(fed, "west", gateway).await;
    let (mut send, mut recv) = again.open_bi().await.unwrap();
    send.write_all(&resume(&key, len as u64, transfer))
        .await
        .unwrap();
    let point = match read_one_response(&mut recv).await {
        Response::Ok(Reply::Resume(point)) => point,
        other => panic!("{cut:?}: {other:?}"),
    };
    match point {
        ResumePoint::From(from) => {
            let from = from as usize;
            if let Cut::AfterBytes(n) = cut {
                assert!(from <= n.min(len), "{cut:?}: from {from}");
            }
            send.write_all(&wire[from..]).await.unwrap();
            send.finish().unwrap();
            assert!(
                matches!(
                    read_one_response(&mut recv).await,
                    Response::Ok(Reply::Done)
                ),
                "{cut:?}"
            );
        }
        ResumePoint::Committed => {}
        ResumePoint::Unknown => panic!("{cut:?}: the transfer was not kept"),
    }
    assert_whole(store, &key, &object).await;
    store.delete(&key).await.unwrap();
    nothing_visible(store).await;
    point
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_at_every_step_resumes_into_the_same_reservation() {
    tokio::time::timeout(LIMIT, async {
        let fed = Fed::new();
        let (gateway, store) = gateway_with(&fed, Duration::from_secs(30)).await;
        let len = 3 << 20;
        let cuts = [
            Cut::AfterHeader,
            Cut::AfterBytes(0),
            Cut::AfterBytes(1),
            Cut::AfterBytes(len / 2),
            Cut::AfterBytes(len),
            Cut::AfterBytes(len + 5),
            Cut::AfterBytes(len + Digest::LEN),
        ];
        for cut in cuts {
            let before = gateway.stats();
            let point = cut_and_resume(&fed, &gateway, &store, cut).await;
            let after = gateway.stats();
            match (cut, point) {
                (Cut::AfterBytes(n), ResumePoint::Committed) => assert_eq!(n, len + Digest::LEN),
                (_, ResumePoint::From(from)) => {
                    assert_eq!(after.resumed, before.resumed + 1, "{cut:?}");
                    assert_eq!(after.resumed_bytes, before.resumed_bytes + from);
                }
                other => panic!("{other:?}"),
            }
            // Stored once.
            assert_eq!(after.bytes_in, before.bytes_in + len as u64, "{cut:?}");
        }
        // A cut in the middle resumed from past byte 0: the bytes held were not sent again.
        assert!(gateway.stats().resumed_bytes > 0);
        assert_eq!(gateway.stats().abandoned, 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_is_refused_for_another_identity_an_unknown_transfer_or_other_bytes() {
    tokio::time::timeout(LIMIT, async {
        let fed = Fed::new();
        let (gateway, store) = gateway_with(&fed, Duration::from_secs(30)).await;
        let key = ObjectKey::new("resume/theirs").unwrap();
        let len = 1 << 20;
        let transfer = TransferId::fresh();
        let (_conn, mut send, mut recv) = admitted_put(&fed, &gateway, &key, len, transfer).await;
        send.write_all(&pattern(1000, 1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        // Another identity cannot continue west's transfer.
        let other = raw_connection(&fed, "other", &gateway).await;
        let answer = raw_request(&other, &resume(&key, len, transfer)).await;
        assert!(
            matches!(answer, Response::Ok(Reply::Resume(ResumePoint::Unknown))),
            "{answer:?}"
        );
        // Nor does an id never used, or the right id with another key or length.
        let answer = raw_request(&other, &resume(&key, len, TransferId::fresh())).await;
        assert!(matches!(
            answer,
            Response::Ok(Reply::Resume(ResumePoint::Unknown))
        ));
        let wrong_key = ObjectKey::new("resume/mine").unwrap();
        let again = raw_connection(&fed, "west", &gateway).await;
        for (k, l) in [(&wrong_key, len), (&key, len + 1)] {
            let answer = raw_request(&again, &resume(k, l, transfer)).await;
            assert!(
                matches!(answer, Response::Err(gos_store::Error::InvalidArgument(_))),
                "{answer:?}"
            );
        }
        assert_eq!(gateway.stats().resumes_refused, 2);
        assert_eq!(store.len().await.unwrap(), 0);
        // The transfer is untouched: it still completes on its own stream.
        let object = pattern(len as usize, 1);
        send.write_all(&object[1000..]).await.unwrap();
        send.write_all(&Digest::of(&object).to_bytes())
            .await
            .unwrap();
        send.finish().unwrap();
        assert!(matches!(
            read_one_response(&mut recv).await,
            Response::Ok(Reply::Done)
        ));
        assert_eq!(store.get(&key).await.unwrap().unwrap(), object);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_the_reservation_is_freed_and_a_resume_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let fed = Fed::new();
        let grace = Duration::from_millis(300);
        let (gateway, store) = gateway_with(&fed, grace).await;
        let key = ObjectKey::new("resume/late").unwrap();
        let len = 4 << 20;
        let transfer = TransferId::fresh();
        let (conn, mut send, _recv) = admitted_put(&fed, &gateway, &key, len, transfer).await;
        send.write_all(&pattern(1 << 20, 3)).await.unwrap();
        eventually(async || store.stats().await.unwrap().reserved == len).await;
        conn.close(VarInt::from_u32(RECONNECTING), b"cut");
        // Held for the grace period, then freed.
        eventually(async || gateway.stats().abandoned == 1).await;
        nothing_visible(&store).await;
        let again = raw_connection(&fed, "west", &gateway).await;
        let answer = raw_request(&again, &resume(&key, len, transfer)).await;
        assert!(
            matches!(answer, Response::Ok(Reply::Resume(ResumePoint::Unknown))),
            "{answer:?}"
        );
        assert_eq!(gateway.stats().resumes_refused, 1);
        assert_eq!(gateway.stats().resumed, 0);
        nothing_visible(&store).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_closed_on_purpose_is_not_kept_for_a_resume() {
    tokio::time::timeout(LIMIT, async {
        let fed = Fed::new();
        let (gateway, store) = gateway_with(&fed, Duration::from_secs(30)).await;
        let key = ObjectKey::new("resume/gone").unwrap();
        let transfer = TransferId::fresh();
        let (conn, mut send, _recv) = admitted_put(&fed, &gateway, &key, 1 << 20, transfer).await;
        send.write_all(&pattern(1000, 3)).await.unwrap();
        // A client that closes (its store dropped) will not come back: freed at once, not
        // after the 30 s grace period.
        conn.close(VarInt::from_u32(0), b"client closed");
        eventually(async || store.stats().await.unwrap().reserved == 0).await;
        nothing_visible(&store).await;
        assert_eq!(gateway.stats().abandoned, 0);
    })
    .await
    .unwrap();
}

/// The proxy's path: loopback, slowed to 400 Mbit/s so that a cut lands inside a transfer
/// however fast the machine.
fn path() -> PathConfig {
    PathConfig::new().rate_bps(400_000_000).queue_bytes(8 << 20)
}

/// Short client timeouts, so that a cut is noticed within two seconds.
fn client_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(3),
        io: Duration::from_secs(2),
        idle: Duration::from_secs(2),
    }
}

/// How long [`cut_after`] keeps the path cut: past the client's idle timeout, so that it has
/// given up on the connection and is trying again.
const CUT: Duration = Duration::from_secs(3);

/// A `RemoteStore` of `west` dialling `gateway` through a new proxy on [`path`], with short
/// timeouts and attempts to spare.
async fn proxied(fed: &Fed, gateway: &Gateway) -> (UdpProxy, Arc<RemoteStore>) {
    let proxy = UdpProxy::start(addr(gateway), ProxyConfig::symmetric(path()))
        .await
        .unwrap();
    let mut config = fed.client("west", gateway);
    config.addr = proxy.local_addr();
    config.timeouts = client_timeouts();
    config.max_attempts = 8;
    let remote = Arc::new(RemoteStore::connect(config).await.unwrap());
    (proxy, remote)
}

/// Cuts `proxy` once `bytes` more have gone forward (or gives up when `done` says the transfer
/// is over: false), for [`CUT`], then heals it: true.
async fn cut_after(proxy: &UdpProxy, bytes: u64, done: impl Fn() -> bool) -> bool {
    let base = proxy.stats().forward.forwarded_bytes;
    while proxy.stats().forward.forwarded_bytes - base < bytes {
        if done() {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    proxy.set_cut(true);
    tokio::time::sleep(CUT).await;
    proxy.set_cut(false);
    true
}

/// A seed from `GOS_TEST_SEED`, or the clock's; printed so that a failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("GOS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("resume test seed: {seed} (replay with GOS_TEST_SEED={seed})");
    seed
}

/// xorshift64.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_puts_cut_at_random_offsets_arrive_once_and_whole() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(Duration::from_secs(180), async {
        let fed = Fed::new();
        let (gateway, store) = gateway_with(&fed, Duration::from_secs(30)).await;
        let (proxy, remote) = proxied(&fed, &gateway).await;
        let mut rng = seed() | 1;
        let len = 24usize << 20;
        for round in 0..4u8 {
            let key = ObjectKey::new(format!("resume/random/{round}")).unwrap();
            let object = pattern(len, round);
            // Somewhere in the object's bytes on the wire (past the handshake's few KiB).
            let at = 64 * 1024 + next(&mut rng) % (len as u64 - 64 * 1024);
            let before = gateway.stats();
            let putting = {
                let (remote, key, object) = (remote.clone(), key.clone(), object.clone());
                tokio::spawn(async move { remote.put(&key, object).await })
            };
            let was_cut = cut_after(&proxy, at, || putting.is_finished()).await;
            putting.await.unwrap().unwrap();
            let after = gateway.stats();
            eprintln!(
                "round {round}: cut at {at} ({was_cut}), resumed {} from {} bytes, refused {}",
                after.resumed - before.resumed,
                after.resumed_bytes - before.resumed_bytes,
                after.resumes_refused - before.resumes_refused,
            );
            assert_whole(&store, &key, &object).await;
            // Stored once: one commit of its bytes, one key, nothing held.
            assert_eq!(
                after.bytes_in - before.bytes_in,
                len as u64,
                "round {round}"
            );
            if was_cut {
                assert!(
                    after.resumed > before.resumed
                        || after.resumes_refused > before.resumes_refused,
                    "round {round}: the cut put was resumed (or put again)"
                );
            }
            store.delete(&key).await.unwrap();
            nothing_visible(&store).await;
        }
        assert!(gateway.stats().resumed > 0, "some cut was resumed");
        assert_eq!(gateway.stats().abandoned, 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_put_cut_past_the_grace_period_is_put_again_and_nothing_partial_shows() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(LIMIT, async {
        let fed = Fed::new();
        let store = memory(1 << 30);
        let mut config = fed.gateway_config("east", &["west"]);
        config.resume_grace = Duration::from_millis(200);
        // Notices a silent cut within two seconds.
        config.timeouts.idle = Duration::from_secs(2);
        let gateway = Gateway::start(config, store.clone() as Arc<dyn ObjectStore>)
            .await
            .unwrap();
        let (proxy, remote) = proxied(&fed, &gateway).await;
        let key = ObjectKey::new("resume/past-grace").unwrap();
        let len = 16usize << 20;
        let object = pattern(len, 9);
        let putting = {
            let (remote, key, object) = (remote.clone(), key.clone(), object.clone());
            tokio::spawn(async move { remote.put(&key, object).await })
        };
        while store.stats().await.unwrap().reserved == 0 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        proxy.set_cut(true);
        // The gateway notices (idle 1 s), holds the transfer 200 ms, frees it: nothing shows.
        eventually(async || gateway.stats().abandoned == 1).await;
        nothing_visible(&store).await;
        proxy.set_cut(false);
        // The client's resume is refused; it puts the object again, whole.
        putting.await.unwrap().unwrap();
        let stats = gateway.stats();
        assert!(stats.resumes_refused >= 1, "{stats:?}");
        assert_eq!(stats.resumed, 0, "{stats:?}");
        assert_eq!(store.get(&key).await.unwrap().unwrap(), object);
        assert_eq!(store.stats().await.unwrap().reserved, 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_mid_object_is_resumed_and_delivered_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(LIMIT, async {
        use gos_gateway::{Outgoing, TargetOutcome};
        use gos_topology::{Message, NodeId};
        let fed = Fed::new();
        let east = fed.cluster("east", &["west"], 2).await;
        let mut mailbox = east.manager.register(NodeId(1)).unwrap();
        let mut config = fed.gateway_config("west", &["east"]);
        config.timeouts = client_timeouts();
        config.max_attempts = 8;
        let west = Gateway::start(config, memory(1 << 20) as Arc<dyn ObjectStore>)
            .await
            .unwrap();
        let proxy = UdpProxy::start(addr(&east.gateway), ProxyConfig::symmetric(path()))
            .await
            .unwrap();
        let peer = west.peer("east", proxy.local_addr()).unwrap();
        assert_eq!(peer.ping().await.unwrap(), "east");

        let key = ObjectKey::round("fed", "node_0", 1).unwrap();
        let object = pattern(24 << 20, 5);
        let msg = Message::key("fed", NodeId(0), 1, &key);
        let delivering = {
            let (peer, key, object, msg) = (peer.clone(), key.clone(), object.clone(), msg.clone());
            tokio::spawn(async move {
                let outgoing = Outgoing {
                    key: &key,
                    bytes: &object,
                    lease: None,
                };
                peer.deliver(&[NodeId(1)], &msg, Some(outgoing)).await
            })
        };
        let store = &east.store;
        eventually(async || store.stats().await.unwrap().reserved > 0).await;
        assert!(cut_after(&proxy, 4 << 20, || false).await);
        assert_eq!(east.store.len().await.unwrap(), 0, "nothing partial shows");
        let outcomes = delivering.await.unwrap().unwrap();
        assert_eq!(outcomes, vec![(NodeId(1), TargetOutcome::Delivered)]);
        let stats = east.gateway.stats();
        // At least once (a loaded machine may cut the resumed connection again: its
        // timeouts are short).
        assert!(stats.resumed >= 1, "{stats:?}");
        assert!(stats.resumed_bytes > 0, "{stats:?}");
        assert_eq!(stats.delivered, 1, "{stats:?}");
        assert_eq!(
            mailbox.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            msg
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(mailbox.try_recv().is_err(), "delivered exactly once");
        assert_whole(&east.store, &key, &object).await;
        // Stored once, with its one reader.
        assert_eq!(
            east.store.release(&key).await.unwrap(),
            gos_store::ReleaseOutcome::Deleted
        );
        nothing_visible(&east.store).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_reservation_whose_commit_is_cut_is_resumed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(LIMIT, async {
        let fed = Fed::new();
        let (gateway, store) = gateway_with(&fed, Duration::from_secs(30)).await;
        let (proxy, remote) = proxied(&fed, &gateway).await;
        let key = ObjectKey::new("resume/reserved").unwrap();
        let object = pattern(24 << 20, 11);
        let committing = {
            let (remote, key, object) = (remote.clone(), key.clone(), object.clone());
            tokio::spawn(async move {
                let mut reservation = remote
                    .reserve(&key, object.len(), &PutOptions::new())
                    .await?;
                reservation.as_mut_slice().copy_from_slice(&object);
                reservation.commit().await
            })
        };
        eventually(async || store.stats().await.unwrap().reserved > 0).await;
        assert!(cut_after(&proxy, 6 << 20, || false).await);
        assert_eq!(store.len().await.unwrap(), 0, "nothing partial shows");
        committing.await.unwrap().unwrap();
        let stats = gateway.stats();
        // At least once (a loaded machine may cut the resumed connection again: its
        // timeouts are short).
        assert!(stats.resumed >= 1, "{stats:?}");
        assert!(stats.resumed_bytes > 0, "{stats:?}");
        assert_whole(&store, &key, &object).await;
        assert_eq!(store.stats().await.unwrap().reserved, 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_corrupted_across_a_resume_are_caught_by_the_digest() {
    tokio::time::timeout(LIMIT, async {
        let fed = Fed::new();
        let (gateway, store) = gateway_with(&fed, Duration::from_secs(30)).await;
        let key = ObjectKey::new("resume/corrupted").unwrap();
        let object = pattern(2 << 20, 13);
        let len = object.len() as u64;
        let transfer = TransferId::fresh();
        let (conn, mut send, _recv) = admitted_put(&fed, &gateway, &key, len, transfer).await;
        send.write_all(&object[..1 << 20]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.close(VarInt::from_u32(RECONNECTING), b"cut");

        // The rest comes back with one bit flipped (a buggy middle layer past QUIC's own
        // integrity): the digest kept across the resume does not match.
        let again = raw_connection(&fed, "west", &gateway).await;
        let (mut send, mut recv) = again.open_bi().await.unwrap();
        send.write_all(&resume(&key, len, transfer)).await.unwrap();
        let Response::Ok(Reply::Resume(ResumePoint::From(from))) =
            read_one_response(&mut recv).await
        else {
            panic!("not resumed");
        };
        let mut rest = object[from as usize..].to_vec();
        let at = rest.len() / 2;
        rest[at] ^= 0x04;
        send.write_all(&rest).await.unwrap();
        send.write_all(&Digest::of(&object).to_bytes())
            .await
            .unwrap();
        send.finish().unwrap();
        let answer = read_one_response(&mut recv).await;
        assert!(
            matches!(answer, Response::Err(gos_store::Error::Corrupted(_))),
            "{answer:?}"
        );
        nothing_visible(&store).await;
        // A corrupted transfer is over: it is not kept for another resume.
        let answer = raw_request(&again, &resume(&key, len, transfer)).await;
        assert!(
            matches!(answer, Response::Ok(Reply::Resume(ResumePoint::Unknown))),
            "{answer:?}"
        );
    })
    .await
    .unwrap();
}
