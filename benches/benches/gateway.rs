//! 100 MiB from one cluster to another on loopback: through the ICRF gateway, over a bare quinn
//! stream with the same transport configuration and certificates, over rustls on TCP and over
//! plain TCP, in one run; prints a table. Target: the gateway within 1.25x of bare quinn.
//!
//! Run: `cargo bench -p gos-benches --bench gateway` (`GOS_BENCH_RUNS=n` timed runs per row,
//! default 15; `GOS_BENCH_SAMPLES=1` prints every sample of the quinn rows). The receiving and
//! the sending side each run on a runtime of their own, as two processes would, and the three
//! quinn rows run interleaved, one transfer of each in turn, so that their ratios are paired.
//! Figures: docs/icrf.md and docs/benchmarks.md.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use gos_gateway::certs::FederationCa;
use gos_gateway::quinn;
use gos_gateway::rustls;
use gos_gateway::{
    AllowList, ClientConfig, Gateway, GatewayConfig, RemoteStore, Timeouts, TlsSettings,
    TransportTuning,
};
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_memory::MemoryStore;
use gos_store_shm::{ShmConfig, ShmStore};

const SIZE: usize = 100 << 20;
const LOCAL: &str = "127.0.0.1:0";

fn main() -> Result<()> {
    let runs: usize = std::env::var("GOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    // The receiving cluster and the sending one each get their own runtime with the default
    // worker count (one per core), as two processes would: the gateways and the bare quinn
    // server run on one, the clients on the other.
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let (server_rt, client_rt) = (runtime()?, runtime()?);
    let payload = Bytes::from((0..SIZE).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let ca = FederationCa::generate("bench federation")?;
    let tls = |id: &str, peer: &str| -> Result<TlsSettings> {
        Ok(TlsSettings {
            identity: ca.issue(id)?,
            ca: vec![ca.cert_der()?],
            allowed: AllowList::new([peer]),
        })
    };
    let server_tls = tls("cluster-b", "cluster-a")?;
    let client_tls = tls("cluster-a", "cluster-b")?;
    let tuning = TransportTuning::default();
    let timeouts = Timeouts::default();

    // The three quinn paths run interleaved, one transfer of each in turn, so that a slow
    // moment of the machine weighs on all of them alike and their ratios are paired.
    let memory: Arc<dyn ObjectStore> = Arc::new(MemoryStore::unlimited());
    let shm_name = format!("bench-gateway-{}", std::process::id());
    let shm: Arc<dyn ObjectStore> = Arc::new(ShmStore::create(
        &shm_name,
        ShmConfig::new(Limits::with_capacity(320 << 20)),
    )?);
    let gateway_mem =
        server_rt.block_on(start_gateway(memory.clone(), &server_tls, tuning, timeouts))?;
    let gateway_shm =
        server_rt.block_on(start_gateway(shm.clone(), &server_tls, tuning, timeouts))?;
    let (bare_addr, bare_server) =
        server_rt.block_on(start_bare_server(&server_tls, tuning, timeouts))?;
    let quic = client_rt.block_on(async {
        let mut to_memory =
            GatewayPath::connect(&gateway_mem, memory, &client_tls, tuning, timeouts).await?;
        let mut to_shm =
            GatewayPath::connect(&gateway_shm, shm, &client_tls, tuning, timeouts).await?;
        let mut bare =
            BarePath::connect(bare_addr, bare_server, &client_tls, tuning, timeouts).await?;
        let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for run in 0..=runs {
            let t = [
                to_memory.once(&payload).await?,
                to_shm.once(&payload).await?,
                bare.once(&payload).await?,
                to_memory.get_once().await?,
            ];
            if run > 0 {
                for (all, t) in times.iter_mut().zip(t) {
                    all.push(t);
                }
            }
        }
        to_memory.check(&payload).await?;
        to_shm.check(&payload).await?;
        bare.finish().await;
        anyhow::Ok(times)
    });
    server_rt.block_on(async {
        gateway_mem.shutdown().await;
        gateway_shm.shutdown().await;
    });
    ShmStore::remove(&shm_name)?;
    let [gateway, gateway_shm, bare, gateway_get] = quic?;
    if std::env::var_os("GOS_BENCH_SAMPLES").is_some() {
        for (name, t) in [("memory", &gateway), ("shm", &gateway_shm), ("bare", &bare)] {
            let ms: Vec<String> = t
                .iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
                .collect();
            eprintln!("{name}: {}", ms.join(" "));
        }
    }
    drop((server_rt, client_rt));
    let tls_tcp = tcp_times(&payload, runs, Some((&server_tls, &client_tls)))?;
    let tcp = tcp_times(&payload, runs, None)?;

    let base = median(&bare);
    println!();
    println!("100 MiB cluster to cluster on 127.0.0.1, {runs} runs each (median, best)");
    println!();
    println!("| path | median | best | throughput (median) | vs bare quinn |");
    println!("|---|---:|---:|---:|---:|");
    for (name, times) in [
        ("gateway: RemoteStore put into a MemoryStore", &gateway),
        ("gateway: RemoteStore put into a ShmStore", &gateway_shm),
        ("gateway: RemoteStore get from a MemoryStore", &gateway_get),
        ("bare quinn stream, same transport config", &bare),
        ("rustls 0.23 over TCP (ring, TLS 1.3)", &tls_tcp),
        ("plain TCP", &tcp),
    ] {
        let m = median(times);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.2} Gbit/s | {:.2}x |",
            ms(m),
            ms(best(times)),
            SIZE as f64 * 8.0 / m.as_secs_f64() / 1e9,
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
    println!();
    for (name, times) in [("MemoryStore", &gateway), ("ShmStore", &gateway_shm)] {
        let ratio = median(times).as_secs_f64() / base.as_secs_f64();
        println!(
            "gateway into {name} / bare quinn = {ratio:.2} (target <= 1.25): {}",
            if ratio <= 1.25 { "met" } else { "missed" }
        );
    }
    Ok(())
}

/// A gateway serving `store` (on the receiving cluster's runtime).
async fn start_gateway(
    store: Arc<dyn ObjectStore>,
    server_tls: &TlsSettings,
    tuning: TransportTuning,
    timeouts: Timeouts,
) -> Result<Gateway> {
    let mut config = GatewayConfig::new(LOCAL.parse()?, server_tls.clone());
    config.transport = tuning;
    config.timeouts = timeouts;
    Ok(Gateway::start(config, store).await?)
}

/// A RemoteStore putting into a store behind a gateway (on the sending cluster's runtime).
struct GatewayPath {
    store: Arc<dyn ObjectStore>,
    remote: RemoteStore,
    key: ObjectKey,
}

impl GatewayPath {
    async fn connect(
        gateway: &Gateway,
        store: Arc<dyn ObjectStore>,
        client_tls: &TlsSettings,
        tuning: TransportTuning,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let mut client = ClientConfig::new(gateway.local_addr()?, "cluster-b", client_tls.clone());
        client.transport = tuning;
        client.timeouts = timeouts;
        let remote = RemoteStore::connect(client).await?;
        let key = ObjectKey::round("bench", "node_0", 0)?;
        Ok(GatewayPath { store, remote, key })
    }

    /// One put of the payload (an overwrite of one key), timed.
    async fn once(&mut self, payload: &Bytes) -> Result<Duration> {
        let started = Instant::now();
        self.remote.put(&self.key, payload.clone()).await?;
        Ok(started.elapsed())
    }

    /// One get of the object back (received into a pooled buffer, then dropped), timed.
    async fn get_once(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let value = self.remote.get(&self.key).await?.context("stored")?;
        anyhow::ensure!(value.len() == SIZE, "short get");
        let elapsed = started.elapsed();
        drop(value);
        Ok(elapsed)
    }

    /// Checks what was stored.
    async fn check(&self, payload: &Bytes) -> Result<()> {
        let stored = self.store.get(&self.key).await?.context("stored")?;
        anyhow::ensure!(stored == *payload, "the stored object differs");
        Ok(())
    }
}

/// The bare quinn receiver (on the receiving cluster's runtime): counts quinn's chunks of each
/// stream without copying them and acknowledges the length.
async fn start_bare_server(
    server_tls: &TlsSettings,
    tuning: TransportTuning,
    timeouts: Timeouts,
) -> Result<(SocketAddr, tokio::task::JoinHandle<Result<()>>)> {
    let transport = Arc::new(tuning.transport_config(&timeouts));
    let server = tuning.endpoint(LOCAL.parse()?, Some(server_tls.quinn_server(transport)?))?;
    let addr = server.local_addr()?;
    let accept = tokio::spawn(async move {
        let conn = server.accept().await.context("incoming")?.await?;
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let mut got = 0usize;
            while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
                got += chunk.bytes.len();
            }
            send.write_all(&(got as u64).to_le_bytes()).await?;
            send.finish()?;
        }
        anyhow::Ok(())
    });
    Ok((addr, accept))
}

/// A bare quinn stream per transfer, same transport configuration and certificates.
struct BarePath {
    conn: quinn::Connection,
    accept: tokio::task::JoinHandle<Result<()>>,
}

impl BarePath {
    async fn connect(
        addr: SocketAddr,
        accept: tokio::task::JoinHandle<Result<()>>,
        client_tls: &TlsSettings,
        tuning: TransportTuning,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let transport = Arc::new(tuning.transport_config(&timeouts));
        let client = tuning.endpoint(LOCAL.parse()?, None)?;
        let conn = client
            .connect_with(
                client_tls.quinn_client(transport)?,
                addr,
                &gos_gateway::tls::cluster_dns_name("cluster-b"),
            )?
            .await?;
        Ok(BarePath { conn, accept })
    }

    async fn once(&mut self, payload: &Bytes) -> Result<Duration> {
        let started = Instant::now();
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_chunk(payload.clone()).await?;
        send.finish()?;
        let mut ack = [0u8; 8];
        recv.read_exact(&mut ack).await?;
        anyhow::ensure!(u64::from_le_bytes(ack) == SIZE as u64, "short transfer");
        Ok(started.elapsed())
    }

    async fn finish(self) {
        self.conn.close(quinn::VarInt::from_u32(0), b"done");
        let _ = self.accept.await;
    }
}

/// TCP with blocking sockets on two threads, optionally under rustls (TLS 1.3, ring, the same
/// certificates). Each run sends an 8-byte length and the payload; the receiver reads it into
/// a 1 MiB buffer and acknowledges.
fn tcp_times(
    payload: &Bytes,
    runs: usize,
    tls: Option<(&TlsSettings, &TlsSettings)>,
) -> Result<Vec<Duration>> {
    let listener = TcpListener::bind(LOCAL)?;
    let addr: SocketAddr = listener.local_addr()?;
    let server_config = match tls {
        Some((server, _)) => Some(Arc::new(gos_gateway::tls::server_config(
            server.identity.cert_chain()?,
            server.identity.key_der()?,
            &server.ca,
            server.allowed.clone(),
        )?)),
        None => None,
    };
    let receiver = std::thread::spawn(move || -> Result<()> {
        let (tcp, _) = listener.accept()?;
        tcp.set_nodelay(true)?;
        match server_config {
            Some(config) => {
                let conn = rustls::ServerConnection::new(config)?;
                serve(rustls::StreamOwned::new(conn, tcp), runs)
            }
            None => serve(tcp, runs),
        }
    });
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    let times = match tls {
        Some((_, client)) => {
            let config = Arc::new(gos_gateway::tls::client_config(
                client.identity.cert_chain()?,
                client.identity.key_der()?,
                &client.ca,
            )?);
            let name = gos_gateway::tls::cluster_dns_name("cluster-b").try_into()?;
            let conn = rustls::ClientConnection::new(config, name)?;
            send(rustls::StreamOwned::new(conn, tcp), payload, runs)?
        }
        None => send(tcp, payload, runs)?,
    };
    receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(times)
}

fn serve(mut stream: impl Read + Write, runs: usize) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..=runs {
        let mut len = [0u8; 8];
        stream.read_exact(&mut len)?;
        let mut left = u64::from_le_bytes(len) as usize;
        while left > 0 {
            let n = stream.read(&mut buf[..left.min(1 << 20)])?;
            anyhow::ensure!(n > 0, "eof");
            left -= n;
        }
        stream.write_all(&[1])?;
        stream.flush()?;
    }
    Ok(())
}

fn send(mut stream: impl Read + Write, payload: &Bytes, runs: usize) -> Result<Vec<Duration>> {
    let mut times = Vec::new();
    for run in 0..=runs {
        let started = Instant::now();
        stream.write_all(&(payload.len() as u64).to_le_bytes())?;
        stream.write_all(payload)?;
        stream.flush()?;
        let mut ack = [0u8; 1];
        stream.read_exact(&mut ack)?;
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    Ok(times)
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn best(times: &[Duration]) -> Duration {
    times.iter().min().copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
