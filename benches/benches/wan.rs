//! 100 MiB through the ICRF gateway over an emulated wide-area path (gos-netem: 1 Gbit/s each
//! way, 50 ms round trip, 0.1% random loss each way, a queue of one bandwidth-delay product),
//! against the link's rate; prints a table and lines a script can read
//! (`wan put / link rate = X`).
//!
//! Run: `cargo bench -p gos-benches --bench wan` (`GOS_BENCH_RUNS=n` timed transfers per row,
//! default 3; `GOS_BENCH_ONLY=text` runs only the rows whose name contains it;
//! `GOS_BENCH_ALL=1` also prints every timed transfer to stderr). Rows: the WAN
//! tuning (BBR, the path configured: windows of twice its bandwidth-delay product, a congestion
//! window starting at half of it and held to 1.5 times it) put and get, and put at the 1452
//! bound; BBR with the same windows but no path configured (quinn's BBR on its own); the default
//! tuning (CUBIC) over the same lossy path, with a smaller object so that the row stays short;
//! the default tuning over the path without loss.
//!
//! Each row opens one connection (the handshake is not timed), makes a first transfer (timed
//! apart: it includes the congestion controller's start and MTU discovery), then the timed
//! transfers on the warm connection, each from the call to the object stored (put: the
//! gateway's answer) or received and its digest checked (get); the bench's own comparison of
//! the bytes read back is not timed. The drops are counted over the timed transfers. The
//! gateway, the client and the proxy each get a runtime of their own. Figures:
//! docs/benchmarks.md, docs/transport.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use gos_gateway::certs::FederationCa;
use gos_gateway::{
    AllowList, ClientConfig, Congestion, Gateway, GatewayConfig, RemoteStore, Role, Timeouts,
    TlsSettings, TransportTuning,
};
use gos_netem::{ProxyConfig, UdpProxy};
use gos_store::{ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_memory::MemoryStore;
use tokio::runtime::Runtime;

const RATE: u64 = 1_000_000_000;
const RTT: Duration = Duration::from_millis(50);
const LOSS: f64 = 0.001;

fn main() -> Result<()> {
    let runs: usize = std::env::var("GOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let ca = FederationCa::generate("bench federation")?;
    let tls = |id: &str, peer: &str| -> Result<TlsSettings> {
        Ok(TlsSettings {
            identity: ca.issue(id)?,
            ca: vec![ca.cert_der()?],
            // The client stores under any key (`bench/...`): a read-write role, not a peer's.
            allowed: AllowList::with_roles([(peer, Role::ReadWrite)]),
        })
    };
    let (server_tls, client_tls) = (
        tls("cluster-b", "cluster-a")?,
        tls("cluster-a", "cluster-b")?,
    );
    let wan = TransportTuning {
        congestion: Congestion::Bbr,
        ..TransportTuning::default()
    }
    .for_path(RATE, RTT);
    // The same windows without a configured path: quinn's BBR with its own start and window
    // (the WAN tuning before the window's ceiling).
    let (stream, connection, send) = wan.effective_windows();
    let bbr_alone = TransportTuning {
        stream_window: u32::try_from(stream)?,
        connection_window: u32::try_from(connection)?,
        send_window: u32::try_from(send)?,
        path_rate_bps: None,
        ..wan
    };
    let lossy = ProxyConfig::wan(RATE, RTT, LOSS);
    let clean = ProxyConfig::wan(RATE, RTT, 0.0);
    let rows: [(&str, TransportTuning, ProxyConfig, usize, bool); 6] = [
        (
            "wan tuning (BBR, path set: 1 Gbit/s x 50 ms): put",
            wan,
            lossy,
            100 << 20,
            false,
        ),
        (
            "wan tuning (BBR, path set: 1 Gbit/s x 50 ms): get",
            wan,
            lossy,
            100 << 20,
            true,
        ),
        (
            "wan tuning, mtu 1452: put",
            TransportTuning {
                mtu_upper_bound: 1452,
                ..wan
            },
            lossy,
            100 << 20,
            false,
        ),
        (
            "same windows, no path set (quinn's BBR alone): put",
            bbr_alone,
            lossy,
            100 << 20,
            false,
        ),
        (
            "default tuning (CUBIC): put",
            TransportTuning::default(),
            lossy,
            16 << 20,
            false,
        ),
        (
            "default tuning (CUBIC), no loss: put",
            TransportTuning::default(),
            clean,
            100 << 20,
            false,
        ),
    ];
    println!();
    println!(
        "gateway over gos-netem: {} Gbit/s each way, {} ms RTT, {}% loss each way unless \
         stated, {runs} timed transfers per row (median)",
        RATE / 1_000_000_000,
        RTT.as_millis(),
        LOSS * 100.0
    );
    println!();
    println!(
        "| row | object | first transfer | median | throughput | of the link's rate | lost / queue-dropped / forwarded packets per timed transfer |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let only = std::env::var("GOS_BENCH_ONLY").unwrap_or_default();
    let mut put_ratio = 0.0;
    let mut get_ratio = 0.0;
    for (name, tuning, path, size, get) in rows {
        if !name.contains(only.as_str()) {
            continue;
        }
        let m = measure(&server_tls, &client_tls, tuning, path, size, get, runs)?;
        let median = median(&m.times);
        if std::env::var_os("GOS_BENCH_ALL").is_some() {
            eprintln!("{name}: {:?}", m.times);
        }
        let gbps = size as f64 * 8.0 / median.as_secs_f64() / 1e9;
        let ratio = gbps * 1e9 / RATE as f64;
        let per = |n: u64| n / runs.max(1) as u64;
        println!(
            "| {name} | {} MiB | {:.0} ms | {:.0} ms | {gbps:.3} Gbit/s | {:.0}% | {} / {} / {} |",
            size >> 20,
            m.first.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            ratio * 100.0,
            per(m.lost),
            per(m.queue_drops),
            per(m.forwarded),
        );
        if name.starts_with("wan tuning (BBR") {
            if get {
                get_ratio = ratio;
            } else {
                put_ratio = ratio;
            }
        }
    }
    println!();
    for (name, value) in [
        ("wan put / link rate", put_ratio),
        ("wan get / link rate", get_ratio),
    ] {
        println!(
            "{name} = {value:.2} (target >= 0.80): {}",
            if value >= 0.8 { "met" } else { "missed" }
        );
    }
    Ok(())
}

/// What one row measured.
struct Measured {
    /// The first transfer on the new connection (after the handshake): it includes the
    /// congestion controller's startup.
    first: Duration,
    /// The timed transfers, on the warm connection.
    times: Vec<Duration>,
    /// Packets (both ways) dropped at random, dropped at a full queue, and forwarded, over the
    /// timed transfers.
    lost: u64,
    queue_drops: u64,
    forwarded: u64,
}

/// A gateway (MemoryStore) behind a proxy with `path`, a client through the proxy; one first
/// (warm-up) transfer, then `runs` timed ones (puts, or gets of what was put).
fn measure(
    server_tls: &TlsSettings,
    client_tls: &TlsSettings,
    tuning: TransportTuning,
    path: ProxyConfig,
    size: usize,
    get: bool,
    runs: usize,
) -> Result<Measured> {
    let runtime = |workers: usize| -> Result<Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?)
    };
    let (server_rt, client_rt, proxy_rt) = (tuning.runtime()?, tuning.runtime()?, runtime(1)?);
    let timeouts = Timeouts {
        io: Duration::from_secs(30),
        ..Timeouts::default()
    };
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::unlimited());
    let mut config = GatewayConfig::new("127.0.0.1:0".parse()?, server_tls.clone());
    config.transport = tuning;
    config.timeouts = timeouts;
    let gateway = server_rt.block_on(Gateway::start(config, store.clone()))?;
    let proxy = proxy_rt.block_on(UdpProxy::start(gateway.local_addr()?, path))?;
    let mut client = ClientConfig::new(proxy.local_addr(), "cluster-b", client_tls.clone());
    client.transport = tuning;
    client.timeouts = timeouts;
    let payload = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let key = ObjectKey::round("bench", "node_0", 0)?;
    let (first, times, warm) = client_rt.block_on(async {
        let remote = RemoteStore::connect(client).await?;
        if get {
            // The object to read, put before the first transfer.
            remote.put(&key, payload.clone()).await?;
        }
        let (remote, key, payload) = (&remote, &key, &payload);
        // One transfer, timed until the object is stored (put) or received (get); what was read
        // back is compared after the clock stops.
        let transfer = move || async move {
            let started = Instant::now();
            if get {
                let value = remote.get(key).await?.context("stored")?;
                let took = started.elapsed();
                anyhow::ensure!(value == *payload, "the object read back differs");
                anyhow::Ok(took)
            } else {
                remote.put(key, payload.clone()).await?;
                anyhow::Ok(started.elapsed())
            }
        };
        let first = transfer().await?;
        let warm = proxy.stats();
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(transfer().await?);
        }
        let stored = store.get(key).await?.context("stored")?;
        anyhow::ensure!(stored == payload, "the stored object differs");
        anyhow::Ok((first, times, warm))
    })?;
    let end = proxy.stats();
    proxy_rt.block_on(async { drop(proxy) });
    server_rt.block_on(gateway.shutdown());
    let both = |f: fn(&gos_netem::DirectionStats) -> u64| {
        f(&end.forward) + f(&end.backward) - f(&warm.forward) - f(&warm.backward)
    };
    Ok(Measured {
        first,
        times,
        lost: both(|d| d.lost),
        queue_drops: both(|d| d.queue_drops),
        forwarded: both(|d| d.forwarded),
    })
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
