//! The proxy does what it says: delay, loss, rate, queue and cuts, on real loopback sockets.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use gos_netem::{PathConfig, ProxyConfig, UdpProxy};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(10);

async fn pair(config: ProxyConfig) -> (UdpSocket, UdpSocket, UdpProxy, SocketAddr) {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let proxy = UdpProxy::start(server.local_addr().unwrap(), config)
        .await
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = proxy.local_addr();
    (server, client, proxy, addr)
}

/// Counts what `socket` receives until `quiet` passes with nothing (started before sending,
/// so the kernel's buffer never overflows).
fn drain(socket: UdpSocket, quiet: Duration) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        let mut n = 0;
        while let Ok(Ok(_)) = timeout(quiet, socket.recv_from(&mut buf)).await {
            n += 1;
        }
        n
    })
}

/// Sends `count` datagrams of `len` bytes, paced so the sender never outruns the proxy.
async fn send_paced(client: &UdpSocket, addr: SocketAddr, count: usize, len: usize) {
    let payload = vec![0u8; len];
    for i in 0..count {
        client.send_to(&payload, addr).await.unwrap();
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_applies_each_way() {
    let delay = Duration::from_millis(30);
    let (server, client, _proxy, addr) =
        pair(ProxyConfig::symmetric(PathConfig::new().delay(delay))).await;
    let start = Instant::now();
    client.send_to(b"ping", addr).await.unwrap();
    let mut buf = [0u8; 8];
    let (_, from) = timeout(WAIT, server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let one_way = start.elapsed();
    server.send_to(b"pong", from).await.unwrap();
    timeout(WAIT, client.recv(&mut buf)).await.unwrap().unwrap();
    let rtt = start.elapsed();
    assert!(one_way >= delay, "one way took {one_way:?}");
    assert!(rtt >= 2 * delay, "round trip took {rtt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_drops_about_the_given_share_repeatably() {
    let mut delivered = Vec::new();
    for _ in 0..2 {
        let config = ProxyConfig::symmetric(PathConfig::new().loss(0.25)).seed(7);
        let (server, client, proxy, addr) = pair(config).await;
        let counted = drain(server, Duration::from_millis(500));
        send_paced(&client, addr, 2000, 64).await;
        let got = counted.await.unwrap();
        let stats = proxy.stats();
        assert_eq!(stats.forward.lost + stats.forward.forwarded, 2000);
        assert!(
            (1300..=1700).contains(&got),
            "{got} of 2000 delivered at 25% loss"
        );
        delivered.push(stats.forward.lost);
    }
    assert_eq!(
        delivered[0], delivered[1],
        "the same seed loses the same packets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_throughput_and_a_full_queue_drops() {
    // 8 Mbit/s: 200 packets of 1000 bytes take at least 200 ms to serialize.
    let path = PathConfig::new().rate_bps(8_000_000).queue_bytes(1 << 20);
    let (server, client, proxy, addr) = pair(ProxyConfig::symmetric(path)).await;
    let start = Instant::now();
    let counted = drain(server, Duration::from_millis(500));
    send_paced(&client, addr, 200, 1000).await;
    assert_eq!(counted.await.unwrap(), 200);
    let took = start.elapsed() - Duration::from_millis(500);
    assert!(
        took >= Duration::from_millis(190),
        "200 kB at 8 Mbit/s took {took:?}"
    );
    assert_eq!(proxy.stats().forward.queue_drops, 0);

    // A 10 kB queue holds ten packets: a burst of 100 loses most of them.
    let path = PathConfig::new().rate_bps(8_000_000).queue_bytes(10_000);
    let (server, client, proxy, addr) = pair(ProxyConfig::symmetric(path)).await;
    let counted = drain(server, Duration::from_millis(500));
    for _ in 0..100 {
        client.send_to(&[0u8; 1000], addr).await.unwrap();
    }
    let got = counted.await.unwrap();
    let stats = proxy.stats().forward;
    assert!(stats.queue_drops >= 50, "{stats:?}");
    assert_eq!(got as u64, stats.forwarded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_drops_everything_until_healed() {
    let (server, client, proxy, addr) = pair(ProxyConfig::symmetric(PathConfig::new())).await;
    proxy.set_cut(true);
    assert!(proxy.is_cut());
    for _ in 0..10 {
        client.send_to(b"lost", addr).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut buf = [0u8; 8];
    assert!(
        timeout(Duration::from_millis(100), server.recv_from(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(proxy.stats().forward.cut_drops, 10);
    proxy.set_cut(false);
    client.send_to(b"back", addr).await.unwrap();
    let (n, _) = timeout(WAIT, server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_off_loopback_is_refused() {
    let err = UdpProxy::start(
        "10.0.0.1:9".parse().unwrap(),
        ProxyConfig::wan(1_000_000, Duration::from_millis(50), 0.0),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
