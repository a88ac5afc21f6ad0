//! The transport over a path that is not loopback (gos-netem: delay, loss, a rate limit) and
//! the transport tuning's own rules: MTU discovery reaching the configured bound on both ends,
//! windows covering a bandwidth-delay product, bad settings refused. Design: docs/transport.md.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gos_gateway::certs::FederationCa;
use gos_gateway::{
    AllowList, ClientConfig, Congestion, Gateway, GatewayConfig, MAX_MTU_UPPER_BOUND, RemoteStore,
    Role, Timeouts, TlsSettings, TransportTuning,
};
use gos_netem::{PathConfig, ProxyConfig, UdpProxy};
use gos_store::{ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_memory::MemoryStore;

const LOCALHOST: &str = "127.0.0.1:0";

/// Every test is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        io: Duration::from_secs(10),
        idle: Duration::from_secs(10),
    }
}

fn tls(ca: &FederationCa, id: &str, peer: &str) -> TlsSettings {
    TlsSettings {
        identity: ca.issue(id).unwrap(),
        ca: vec![ca.cert_der().unwrap()],
        allowed: AllowList::new([peer]),
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A gateway (cluster "east", a MemoryStore) with `tuning`.
async fn gateway(ca: &FederationCa, tuning: TransportTuning) -> (Gateway, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::unlimited());
    let mut server_tls = tls(ca, "east", "west");
    // The client stores under any key (`wan/...`): it needs a read-write role, not a peer's.
    server_tls.allowed = AllowList::with_roles([("west", Role::ReadWrite)]);
    let mut config = GatewayConfig::new(LOCALHOST.parse().unwrap(), server_tls);
    config.timeouts = timeouts();
    config.transport = tuning;
    let gateway = Gateway::start(config, store.clone() as Arc<dyn ObjectStore>)
        .await
        .unwrap();
    (gateway, store)
}

/// A RemoteStore of cluster "west" dialling `addr` (the gateway, or a proxy in front of it).
async fn client(ca: &FederationCa, addr: SocketAddr, tuning: TransportTuning) -> RemoteStore {
    let mut config = ClientConfig::new(addr, "east", tls(ca, "west", "east"));
    config.timeouts = timeouts();
    config.transport = tuning;
    RemoteStore::connect(config).await.unwrap()
}

/// Puts `value` through the proxy, reads it back through the proxy, and checks the bytes the
/// gateway's store holds and the bytes the client got.
async fn round_trip_through(proxy_config: ProxyConfig, tuning: TransportTuning, value: Bytes) {
    let ca = FederationCa::generate("wan test").unwrap();
    let (gateway, store) = gateway(&ca, tuning).await;
    let proxy = UdpProxy::start(gateway.local_addr().unwrap(), proxy_config)
        .await
        .unwrap();
    let remote = client(&ca, proxy.local_addr(), tuning).await;
    let key = ObjectKey::round("wan", "node_1", 1).unwrap();
    remote.put(&key, value.clone()).await.unwrap();
    assert!(
        store.get(&key).await.unwrap().unwrap() == value,
        "the stored object differs from the one sent"
    );
    let back = remote.get(&key).await.unwrap().unwrap();
    assert!(back == value, "the object read back differs");
    let stats = proxy.stats();
    assert!(
        stats.forward.lost + stats.backward.lost > 0,
        "the path lost nothing: the test did not exercise recovery ({stats:?})"
    );
    drop(remote);
    drop(proxy);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_and_a_get_survive_delay_loss_and_a_rate_limit() {
    // 20 ms round trip, 1% loss each way, 200 Mbit/s: every loss is recovered by QUIC and the
    // object arrives whole both ways.
    let path = ProxyConfig::wan(200_000_000, Duration::from_millis(20), 0.01).seed(11);
    let run = round_trip_through(path, TransportTuning::default(), pattern(4 << 20, 3));
    tokio::time::timeout(LIMIT, run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bbr_and_path_sized_windows_carry_an_object_over_a_lossy_path() {
    let tuning = TransportTuning {
        congestion: Congestion::Bbr,
        ..TransportTuning::default()
    }
    .for_path(200_000_000, Duration::from_millis(20));
    let path = ProxyConfig::wan(200_000_000, Duration::from_millis(20), 0.02).seed(12);
    let run = round_trip_through(path, tuning, pattern(4 << 20, 4));
    tokio::time::timeout(LIMIT, run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bbr_on_a_configured_path_keeps_within_the_bottleneck_queue() {
    // No random loss and a queue of one bandwidth-delay product: every drop is the sender
    // overflowing the queue. quinn's BBR alone overestimates the bandwidth, stops pacing and
    // loses ~14% of its packets there (docs/benchmarks.md; 21-29% on this path); held to the
    // configured path it loses none. Up to 5% is tolerated: a proxy descheduled for a round
    // trip on a loaded machine reads a whole window into its queue at once.
    let rate = 200_000_000;
    let rtt = Duration::from_millis(20);
    let tuning = TransportTuning {
        congestion: Congestion::Bbr,
        ..TransportTuning::default()
    }
    .for_path(rate, rtt);
    let run = async {
        let ca = FederationCa::generate("wan test").unwrap();
        let (gateway, store) = gateway(&ca, tuning).await;
        let proxy = UdpProxy::start(
            gateway.local_addr().unwrap(),
            ProxyConfig::wan(rate, rtt, 0.0),
        )
        .await
        .unwrap();
        let remote = client(&ca, proxy.local_addr(), tuning).await;
        let key = ObjectKey::round("wan", "node_1", 2).unwrap();
        let value = pattern(8 << 20, 6);
        for _ in 0..2 {
            remote.put(&key, value.clone()).await.unwrap();
        }
        assert!(store.get(&key).await.unwrap().unwrap() == value);
        let back = remote.get(&key).await.unwrap().unwrap();
        assert!(back == value, "the object read back differs");
        let stats = proxy.stats();
        let dropped = stats.forward.queue_drops + stats.backward.queue_drops;
        let forwarded = stats.forward.forwarded + stats.backward.forwarded;
        assert!(
            dropped * 20 <= forwarded,
            "{dropped} of {forwarded} packets dropped at the queue ({stats:?})"
        );
        drop(remote);
        drop(proxy);
        gateway.shutdown().await;
    };
    tokio::time::timeout(LIMIT, run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_paths_and_the_1452_bound_still_deliver() {
    // A slower, lossier return path and today's 1452-byte bound.
    let forward = PathConfig::new().delay(Duration::from_millis(5)).loss(0.01);
    let backward = PathConfig::new()
        .delay(Duration::from_millis(15))
        .loss(0.03)
        .rate_bps(100_000_000);
    let mut path = ProxyConfig::symmetric(forward).seed(13);
    path.backward = backward;
    let tuning = TransportTuning {
        mtu_upper_bound: 1452,
        ..TransportTuning::default()
    };
    let run = round_trip_through(path, tuning, pattern(2 << 20, 5));
    tokio::time::timeout(LIMIT, run).await.unwrap();
}

/// A raw quinn connection between two endpoints built from `server` and `client` tunings; one
/// 2 MiB stream is sent, then the client's path MTU is polled until it stops changing.
async fn discovered_mtu(server: TransportTuning, client: TransportTuning) -> u16 {
    let ca = FederationCa::generate("mtu test").unwrap();
    let (server_tls, client_tls) = (tls(&ca, "east", "west"), tls(&ca, "west", "east"));
    let t = Arc::new(server.transport_config(&timeouts()));
    let endpoint = server
        .endpoint(
            LOCALHOST.parse().unwrap(),
            Some(server_tls.quinn_server(t).unwrap()),
        )
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let got = recv.read_to_end(8 << 20).await.unwrap();
        send.write_all(&(got.len() as u64).to_le_bytes())
            .await
            .unwrap();
        send.finish().unwrap();
        // Keep the connection until the client closes it.
        conn.closed().await;
    });
    let t = Arc::new(client.transport_config(&timeouts()));
    let ep = client.endpoint(LOCALHOST.parse().unwrap(), None).unwrap();
    let conn = ep
        .connect_with(
            client_tls.quinn_client(t).unwrap(),
            addr,
            &gos_gateway::tls::cluster_dns_name("east"),
        )
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&pattern(2 << 20, 9)).await.unwrap();
    send.finish().unwrap();
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await.unwrap();
    assert_eq!(u64::from_le_bytes(ack), 2 << 20);
    // Discovery is a binary search, one probe per round trip: on loopback it settles fast.
    let mut mtu = conn.stats().path.current_mtu;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = conn.stats().path.current_mtu;
        if now == mtu && now > 1200 {
            break;
        }
        mtu = now;
    }
    conn.close(0u32.into(), b"done");
    accept.await.unwrap();
    mtu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtu_discovery_reaches_the_raised_bound_on_loopback() {
    let run = async {
        let tuning = TransportTuning::default();
        let mtu = discovered_mtu(tuning, tuning).await;
        // Discovery stops within `minimum_change` (20 bytes) of the bound.
        assert!(
            mtu > tuning.mtu_upper_bound - 20 && mtu <= tuning.mtu_upper_bound,
            "discovered {mtu}, bound {}",
            tuning.mtu_upper_bound
        );
    };
    tokio::time::timeout(LIMIT, run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_announcing_a_smaller_payload_caps_discovery() {
    // The server keeps the 1452 bound, so it announces quinn's default 1472: the client's
    // raised bound must not push datagrams past it.
    let run = async {
        let server = TransportTuning {
            mtu_upper_bound: 1452,
            ..TransportTuning::default()
        };
        let mtu = discovered_mtu(server, TransportTuning::default()).await;
        assert!(
            mtu <= 1472,
            "discovered {mtu} past the peer's announced 1472"
        );
    };
    tokio::time::timeout(LIMIT, run).await.unwrap();
}

#[test]
fn windows_cover_twice_the_bandwidth_delay_product() {
    let tuning = TransportTuning::default().for_path(10_000_000_000, Duration::from_millis(50));
    // 10 Gbit/s x 50 ms = 62.5 MB in flight.
    assert_eq!(tuning.bandwidth_delay_product(), 62_500_000);
    let (stream, connection, send) = tuning.effective_windows();
    assert_eq!(stream, 125_000_000);
    assert_eq!(connection, 125_000_000);
    assert_eq!(send, 125_000_000);
    // Without a path the configured windows stand; a small path never lowers them.
    let plain = TransportTuning::default();
    assert_eq!(plain.effective_windows(), (16 << 20, 64 << 20, 64 << 20));
    let small = plain.for_path(100_000_000, Duration::from_millis(10));
    assert_eq!(small.effective_windows(), plain.effective_windows());
    // Absurd paths stop below 4 GiB.
    let huge = plain.for_path(u64::MAX, Duration::from_secs(3600));
    assert_eq!(huge.effective_windows().0, u64::from(u32::MAX));
    // quinn accepts what is computed.
    let _ = huge.transport_config(&timeouts());
}

#[test]
fn bad_transport_settings_are_refused() {
    let ok = TransportTuning::default();
    assert!(ok.validate().is_ok());
    for bad in [
        TransportTuning {
            mtu_upper_bound: MAX_MTU_UPPER_BOUND + 1,
            ..ok
        },
        TransportTuning {
            mtu_upper_bound: 1199,
            ..ok
        },
        TransportTuning {
            stream_window: 0,
            ..ok
        },
        ok.for_path(0, Duration::from_millis(50)),
        ok.for_path(1_000_000_000, Duration::ZERO),
    ] {
        assert!(bad.validate().is_err(), "{bad:?} accepted");
        let err = bad.endpoint_config().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[test]
fn the_endpoint_announces_the_bound_and_the_runtime_its_workers() {
    for (bound, announced) in [(1200, 1472), (1452, 1472), (6500, 6500), (6550, 6550)] {
        let tuning = TransportTuning {
            mtu_upper_bound: bound,
            ..TransportTuning::default()
        };
        let config = tuning.endpoint_config().unwrap();
        assert_eq!(
            config.get_max_udp_payload_size(),
            announced,
            "bound {bound}"
        );
    }
    let tuning = TransportTuning {
        runtime_workers: NonZeroUsize::new(1),
        ..TransportTuning::default()
    };
    let rt = tuning.runtime().unwrap();
    assert_eq!(rt.metrics().num_workers(), 1);
}
