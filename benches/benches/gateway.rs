//! 100 MiB from one cluster to another on loopback, in one run: puts and gets through the ICRF
//! gateway under several transport tunings (today's 1452-byte MTU bound, the default raised
//! bound, one runtime worker per side), a bare quinn stream, rustls over TCP and plain TCP;
//! prints a table and lines a script can read (`gateway put / rustls-tcp = X`).
//!
//! Run: `cargo bench -p gos-benches --bench gateway` (`GOS_BENCH_RUNS=n` timed runs per row,
//! default 15; `GOS_BENCH_ONLY=small` runs only the 64 KiB put/get/delete rounds, with a row
//! of three tiny exchanges on the bare quinn connection as the per-call floor). The process re-executes itself once with
//! `GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2147483647`, so that every row (rustls
//! over TCP above all) runs with glibc's fast copy: on the VMs we measure on, `rep movsb`
//! halves large copies. Every row runs interleaved, one transfer of each in turn, so that a
//! slow moment of the machine weighs on all of them alike and their ratios are paired. Each
//! tuning gets its own pair of runtimes, the receiving side and the sending side, as two
//! processes would. Figures: docs/benchmarks.md, docs/transport.md.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use gos_gateway::certs::FederationCa;
use gos_gateway::quinn;
use gos_gateway::rustls;
use gos_gateway::{
    AllowList, ClientConfig, Gateway, GatewayConfig, RemoteStore, Role, Timeouts, TlsSettings,
    TransportTuning,
};
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_memory::MemoryStore;
use gos_store_shm::{ShmConfig, ShmStore};
use tokio::runtime::Runtime;

const SIZE: usize = 100 << 20;
/// The small object of the put/get/delete rounds.
const SMALL: usize = 64 << 10;
static SMALL_OBJECT: [u8; SMALL] = [7; SMALL];
/// Small rounds per path, in batches taken in turn.
const SMALL_ROUNDS: usize = 400;
const SMALL_BATCH: usize = 50;
const LOCAL: &str = "127.0.0.1:0";
const TUNABLE: &str = "glibc.cpu.x86_rep_movsb_threshold=2147483647";

fn main() -> Result<()> {
    fast_copy_mode()?;
    let runs: usize = std::env::var("GOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    // `GOS_BENCH_ONLY=small`: only the 64 KiB rounds (no 100 MiB transfers).
    let only_small = std::env::var("GOS_BENCH_ONLY").is_ok_and(|v| v == "small");
    let payload = Bytes::from((0..SIZE).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let ca = FederationCa::generate("bench federation")?;
    let tls = |id: &str, peer: &str| -> Result<TlsSettings> {
        Ok(TlsSettings {
            identity: ca.issue(id)?,
            ca: vec![ca.cert_der()?],
            // The client stores under any key (`bench/...`): a read-write role, not a peer's.
            allowed: AllowList::with_roles([(peer, Role::ReadWrite)]),
        })
    };
    let server_tls = tls("cluster-b", "cluster-a")?;
    let client_tls = tls("cluster-a", "cluster-b")?;

    let one = NonZeroUsize::MIN;
    let baseline = TransportTuning {
        mtu_upper_bound: 1452,
        ..TransportTuning::default()
    };
    let tunings = [
        ("mtu 1452, workers per core (before issue 11)", baseline),
        (
            "default: mtu bound 6500, workers per core",
            TransportTuning::default(),
        ),
        (
            "mtu 1452, 1 worker per side",
            TransportTuning {
                runtime_workers: Some(one),
                ..baseline
            },
        ),
        (
            "mtu bound 6500, 1 worker per side",
            TransportTuning {
                runtime_workers: Some(one),
                ..TransportTuning::default()
            },
        ),
    ];
    let shm_name = format!("bench-gateway-{}", std::process::id());
    let shm: Arc<dyn ObjectStore> = Arc::new(ShmStore::create(
        &shm_name,
        ShmConfig::new(Limits::with_capacity(320 << 20)),
    )?);
    let _remove_shm = RemoveShm(shm_name);
    let mut setups = Vec::new();
    for (i, (name, tuning)) in tunings.into_iter().enumerate() {
        // The default tuning also puts into shared memory and runs the bare quinn stream.
        let extra = (i == 1).then(|| shm.clone());
        setups.push(Setup::start(name, tuning, &server_tls, &client_tls, extra)?);
    }
    let mut tcp_paths = if only_small {
        None
    } else {
        Some((
            TcpPath::connect(runs, Some((&server_tls, &client_tls)))?,
            TcpPath::connect(runs, None)?,
        ))
    };

    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();
    for run in (0..=runs).filter(|_| !only_small) {
        let (tls_tcp, tcp) = tcp_paths.as_mut().context("tcp paths")?;
        let mut t = Vec::new();
        for setup in &mut setups {
            setup.once(&payload, &mut t)?;
        }
        t.push((
            "rustls 0.23 over TCP (ring, TLS 1.3)".into(),
            tls_tcp.once(&payload)?,
        ));
        t.push(("plain TCP".into(), tcp.once(&payload)?));
        if run == 0 {
            rows = t.into_iter().map(|(n, _)| (n, Vec::new())).collect();
        } else {
            for ((_, all), (_, d)) in rows.iter_mut().zip(t) {
                all.push(d);
            }
        }
    }
    // 64 KiB put/get/delete rounds: the gateway (default tuning), bare quinn streams (one per
    // call, as the gateway does) and Redis (SET, GET, DEL on one TCP connection), in batches
    // taken in turn.
    let mut redis = Redis::start().ok();
    let mut tls_rounds = TlsRounds::connect(&server_tls, &client_tls)?;
    let mut tls_value = Vec::new();
    let (mut small_gateway, mut small_bare, mut small_redis) = (Vec::new(), Vec::new(), Vec::new());
    let (mut small_one_worker, mut small_tiny, mut small_tls) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..SMALL_ROUNDS / SMALL_BATCH {
        setups[1].small_rounds(
            SMALL_BATCH,
            &mut small_gateway,
            &mut small_bare,
            &mut small_tiny,
        )?;
        setups[3].small_rounds(
            SMALL_BATCH,
            &mut small_one_worker,
            &mut Vec::new(),
            &mut Vec::new(),
        )?;
        if let Some(redis) = &mut redis {
            for _ in 0..SMALL_BATCH {
                small_redis.push(redis.round()?);
            }
        }
        for _ in 0..SMALL_BATCH {
            small_tls.push(tls_rounds.round(&mut tls_value)?);
        }
    }
    drop(redis);
    tls_rounds.finish()?;
    for setup in setups {
        setup.finish((!only_small).then_some(&payload))?;
    }
    if let Some((tls_tcp, tcp)) = tcp_paths {
        tls_tcp.finish()?;
        tcp.finish()?;
    }
    if only_small {
        print_small(
            &small_gateway,
            &small_one_worker,
            &small_bare,
            &small_tiny,
            &small_tls,
            &small_redis,
        );
        return Ok(());
    }

    let row = |name: &str| -> Result<Duration> {
        rows.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| median(t))
            .with_context(|| format!("no row {name}"))
    };
    let reference = row("rustls 0.23 over TCP (ring, TLS 1.3)")?;
    println!();
    println!(
        "100 MiB cluster to cluster on 127.0.0.1, {runs} runs each (median, best), \
         GLIBC_TUNABLES={TUNABLE}"
    );
    println!();
    println!("| path | median | best | throughput (median) | vs rustls-TCP |");
    println!("|---|---:|---:|---:|---:|");
    for (name, times) in &rows {
        let m = median(times);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.2} Gbit/s | {:.2}x |",
            ms(m),
            ms(best(times)),
            SIZE as f64 * 8.0 / m.as_secs_f64() / 1e9,
            reference.as_secs_f64() / m.as_secs_f64(),
        );
    }
    println!();
    let put = |t: &str| row(&format!("gateway put, {t}"));
    let get = |t: &str| row(&format!("gateway get, {t}"));
    let default = tunings[1].0;
    let base = tunings[0].0;
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    let lines = [
        (
            "gateway put / rustls-tcp",
            ratio(put(default)?, reference),
            ">= 0.6",
            0.6,
            true,
        ),
        (
            "gateway get / gateway put",
            get(default)?.as_secs_f64() / put(default)?.as_secs_f64(),
            "<= 1.15",
            1.15,
            false,
        ),
        (
            "gateway put (mtu 1452) / baseline",
            ratio(put(tunings[2].0)?, put(base)?),
            ">= 1.15",
            1.15,
            true,
        ),
        (
            "gateway put (1 worker per side) / rustls-tcp",
            ratio(put(tunings[3].0)?, reference),
            "",
            0.0,
            true,
        ),
        (
            "gateway put / bare quinn",
            put(default)?.as_secs_f64()
                / row(&format!("bare quinn stream, {default}"))?.as_secs_f64(),
            "",
            0.0,
            false,
        ),
    ];
    println!();
    for (name, value, target, bound, higher) in lines {
        if target.is_empty() {
            println!("{name} = {value:.2}");
        } else {
            let met = if higher {
                value >= bound
            } else {
                value <= bound
            };
            println!(
                "{name} = {value:.2} (target {target}): {}",
                if met { "met" } else { "missed" }
            );
        }
    }
    print_small(
        &small_gateway,
        &small_one_worker,
        &small_bare,
        &small_tiny,
        &small_tls,
        &small_redis,
    );
    Ok(())
}

/// The table of the 64 KiB rounds and their ratio lines.
fn print_small(
    small_gateway: &[Duration],
    small_one_worker: &[Duration],
    small_bare: &[Duration],
    small_tiny: &[Duration],
    small_tls: &[Duration],
    small_redis: &[Duration],
) {
    println!();
    println!("64 KiB put + get + delete rounds, {SMALL_ROUNDS} each (median, p90)");
    println!();
    println!("| path | median | p90 |");
    println!("|---|---:|---:|");
    for (name, times) in [
        ("gateway (RemoteStore, default tuning)", small_gateway),
        ("gateway (RemoteStore, 1 worker per side)", small_one_worker),
        ("bare quinn, one stream per call", small_bare),
        (
            "bare quinn, three tiny exchanges (the floor of three calls)",
            small_tiny,
        ),
        (
            "rustls over TCP, blocking threads, three exchanges on one connection",
            small_tls,
        ),
        (
            "redis-server SET + GET + DEL, one TCP connection",
            small_redis,
        ),
    ] {
        if !times.is_empty() {
            println!(
                "| {name} | {:.3} ms | {:.3} ms |",
                ms(median(times)),
                ms(percentile(times, 0.9))
            );
        }
    }
    if !small_redis.is_empty() {
        let value = median(small_gateway).as_secs_f64() / median(small_redis).as_secs_f64();
        println!(
            "gateway 64k round / redis round = {value:.2} (target <= 1.0): {}",
            if value <= 1.0 { "met" } else { "missed" }
        );
    }
    println!(
        "gateway 64k round / bare quinn round = {:.2}",
        median(small_gateway).as_secs_f64() / median(small_bare).as_secs_f64()
    );
    if !small_redis.is_empty() {
        println!(
            "rustls-tcp 64k round / redis round = {:.2}",
            median(small_tls).as_secs_f64() / median(small_redis).as_secs_f64()
        );
    }
}

/// Re-executes this process with glibc's fast copy mode unless it already runs in it.
fn fast_copy_mode() -> Result<()> {
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.split(':').any(|t| t == TUNABLE) {
        return Ok(());
    }
    let tunables = if current.is_empty() {
        TUNABLE.to_string()
    } else {
        format!("{current}:{TUNABLE}")
    };
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", tunables)
        .status()
        .context("re-executing the bench with GLIBC_TUNABLES")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// Removes the bench's shared-memory store at the end, even on failure.
struct RemoveShm(String);

impl Drop for RemoveShm {
    fn drop(&mut self) {
        let _ = ShmStore::remove(&self.0);
    }
}

/// One tuning: its two runtimes, a gateway into a MemoryStore and a client putting and getting
/// through it; for the default tuning also a gateway into a ShmStore and a bare quinn stream.
struct Setup {
    name: &'static str,
    server_rt: Runtime,
    client_rt: Runtime,
    gateways: Vec<Gateway>,
    memory: GatewayPath,
    shm: Option<GatewayPath>,
    bare: Option<BarePath>,
}

impl Setup {
    fn start(
        name: &'static str,
        tuning: TransportTuning,
        server_tls: &TlsSettings,
        client_tls: &TlsSettings,
        shm: Option<Arc<dyn ObjectStore>>,
    ) -> Result<Setup> {
        let (server_rt, client_rt) = (tuning.runtime()?, tuning.runtime()?);
        let timeouts = Timeouts::default();
        let memory: Arc<dyn ObjectStore> = Arc::new(MemoryStore::unlimited());
        let mut gateways = vec![server_rt.block_on(start_gateway(
            memory.clone(),
            server_tls,
            tuning,
            timeouts,
        ))?];
        let memory = client_rt.block_on(GatewayPath::connect(
            &gateways[0],
            memory,
            client_tls,
            tuning,
            timeouts,
        ))?;
        let (shm, bare) = match shm {
            Some(store) => {
                let gateway = server_rt.block_on(start_gateway(
                    store.clone(),
                    server_tls,
                    tuning,
                    timeouts,
                ))?;
                let path = client_rt.block_on(GatewayPath::connect(
                    &gateway, store, client_tls, tuning, timeouts,
                ))?;
                gateways.push(gateway);
                let (addr, server) =
                    server_rt.block_on(start_bare_server(server_tls, tuning, timeouts))?;
                let bare = client_rt.block_on(BarePath::connect(
                    addr, server, client_tls, tuning, timeouts,
                ))?;
                (Some(path), Some(bare))
            }
            None => (None, None),
        };
        Ok(Setup {
            name,
            server_rt,
            client_rt,
            gateways,
            memory,
            shm,
            bare,
        })
    }

    /// One transfer of each of this tuning's rows, appended to `t`.
    fn once(&mut self, payload: &Bytes, t: &mut Vec<(String, Duration)>) -> Result<()> {
        let name = self.name;
        let rt = &self.client_rt;
        t.push((
            format!("gateway put, {name}"),
            rt.block_on(self.memory.once(payload))?,
        ));
        t.push((
            format!("gateway get, {name}"),
            rt.block_on(self.memory.get_once())?,
        ));
        if let Some(shm) = &mut self.shm {
            t.push((
                format!("gateway put into a ShmStore, {name}"),
                rt.block_on(shm.once(payload))?,
            ));
        }
        if let Some(bare) = &mut self.bare {
            t.push((
                format!("bare quinn stream, {name}"),
                rt.block_on(bare.once(payload))?,
            ));
        }
        Ok(())
    }

    /// `n` small rounds through the gateway and, if this setup has one, over the bare stream,
    /// and as many rounds of three tiny exchanges there (the floor of three calls).
    fn small_rounds(
        &mut self,
        n: usize,
        gateway: &mut Vec<Duration>,
        bare: &mut Vec<Duration>,
        tiny: &mut Vec<Duration>,
    ) -> Result<()> {
        let object = Bytes::from_static(&SMALL_OBJECT);
        let (memory, bare_path) = (&mut self.memory, &mut self.bare);
        self.client_rt.block_on(async {
            for _ in 0..n {
                gateway.push(memory.small_round(&object).await?);
            }
            if let Some(path) = bare_path {
                for _ in 0..n {
                    bare.push(path.small_round(&object).await?);
                }
                for _ in 0..n {
                    tiny.push(path.tiny_round().await?);
                }
            }
            anyhow::Ok(())
        })
    }

    /// Checks what was stored and stops everything.
    fn finish(self, payload: Option<&Bytes>) -> Result<()> {
        self.client_rt.block_on(async {
            if let Some(payload) = payload {
                self.memory.check(payload).await?;
                if let Some(shm) = &self.shm {
                    shm.check(payload).await?;
                }
            }
            if let Some(bare) = self.bare {
                bare.finish().await;
            }
            anyhow::Ok(())
        })?;
        self.server_rt.block_on(async {
            for gateway in self.gateways {
                gateway.shutdown().await;
            }
        });
        Ok(())
    }
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
    small: ObjectKey,
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
        let small = ObjectKey::round("bench", "node_1", 0)?;
        Ok(GatewayPath {
            store,
            remote,
            key,
            small,
        })
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

    /// One 64 KiB round: put, get, delete, timed.
    async fn small_round(&mut self, object: &Bytes) -> Result<Duration> {
        let started = Instant::now();
        self.remote.put(&self.small, object.clone()).await?;
        let back = self.remote.get(&self.small).await?.context("stored")?;
        anyhow::ensure!(back.len() == SMALL, "short get");
        anyhow::ensure!(self.remote.delete(&self.small).await?, "not deleted");
        Ok(started.elapsed())
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
            if got == 1 {
                // A small get: answer with a small object.
                send.write_all(&SMALL_OBJECT).await?;
            } else {
                send.write_all(&(got as u64).to_le_bytes()).await?;
            }
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

    /// One exchange: `request` up, the whole answer back.
    async fn exchange(&mut self, request: Bytes) -> Result<usize> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_chunk(request).await?;
        send.finish()?;
        Ok(recv.read_to_end(SMALL + 8).await?.len())
    }

    /// The small-object round over bare streams: a put (64 KiB up, a length back), a get (one
    /// byte up, 64 KiB back), a delete (a few bytes up, a length back).
    async fn small_round(&mut self, object: &Bytes) -> Result<Duration> {
        let started = Instant::now();
        anyhow::ensure!(self.exchange(object.clone()).await? == 8, "put");
        anyhow::ensure!(
            self.exchange(Bytes::from_static(b"g")).await? == SMALL,
            "get"
        );
        anyhow::ensure!(
            self.exchange(Bytes::from_static(b"del")).await? == 8,
            "delete"
        );
        Ok(started.elapsed())
    }

    /// Three exchanges of a few bytes each way, one stream each: what three calls cost before
    /// any object moves.
    async fn tiny_round(&mut self) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..3 {
            anyhow::ensure!(self.exchange(Bytes::from_static(b"ti")).await? == 8, "tiny");
        }
        Ok(started.elapsed())
    }

    async fn finish(self) {
        self.conn.close(quinn::VarInt::from_u32(0), b"done");
        let _ = self.accept.await;
    }
}

/// A `redis-server` of the system (no persistence, on a free port), stopped when dropped, and
/// one connection speaking its protocol (RESP) for the reference round.
struct Redis {
    server: std::process::Child,
    conn: std::io::BufReader<TcpStream>,
}

impl Redis {
    fn start() -> Result<Redis> {
        let port = TcpListener::bind(LOCAL)?.local_addr()?.port();
        let mut server = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("redis-server")?;
        let started = Instant::now();
        let tcp = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(tcp) => break tcp,
                Err(_) if started.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    let _ = server.kill();
                    let _ = server.wait();
                    return Err(e.into());
                }
            }
        };
        tcp.set_nodelay(true)?;
        Ok(Redis {
            server,
            conn: std::io::BufReader::new(tcp),
        })
    }

    fn command(&mut self, args: &[&[u8]]) -> Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.conn.get_mut().write_all(&out)?;
        Ok(())
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.conn, &mut line)?;
        Ok(line)
    }

    /// SET, GET and DEL of a 64 KiB value, each answered before the next is sent.
    fn round(&mut self) -> Result<Duration> {
        let started = Instant::now();
        self.command(&[b"SET", b"bench", &SMALL_OBJECT])?;
        anyhow::ensure!(self.line()? == "+OK\r\n", "SET");
        self.command(&[b"GET", b"bench"])?;
        anyhow::ensure!(self.line()? == format!("${SMALL}\r\n"), "GET");
        let mut value = vec![0u8; SMALL + 2];
        self.conn.read_exact(&mut value)?;
        self.command(&[b"DEL", b"bench"])?;
        anyhow::ensure!(self.line()? == ":1\r\n", "DEL");
        Ok(started.elapsed())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A TCP connection with blocking sockets, optionally under rustls (TLS 1.3, ring, the same
/// certificates), and its receiver thread. Each transfer sends an 8-byte length and the
/// payload; the receiver reads it into a 1 MiB buffer and acknowledges.
struct TcpPath {
    sender: Box<dyn ReadWrite>,
    receiver: std::thread::JoinHandle<Result<()>>,
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl TcpPath {
    fn connect(runs: usize, tls: Option<(&TlsSettings, &TlsSettings)>) -> Result<TcpPath> {
        let (sender, receiver) = connect_pair(tls, move |stream| serve(stream, runs))?;
        Ok(TcpPath { sender, receiver })
    }

    fn once(&mut self, payload: &Bytes) -> Result<Duration> {
        let started = Instant::now();
        self.sender
            .write_all(&(payload.len() as u64).to_le_bytes())?;
        self.sender.write_all(payload)?;
        self.sender.flush()?;
        let mut ack = [0u8; 1];
        self.sender.read_exact(&mut ack)?;
        Ok(started.elapsed())
    }

    fn finish(self) -> Result<()> {
        drop(self.sender);
        self.receiver
            .join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))?
    }
}

/// The thread serving the other end of a [`connect_pair`] connection.
type Server = std::thread::JoinHandle<Result<()>>;

/// A blocking TCP connection on 127.0.0.1, under rustls (TLS 1.3, ring, the bench's
/// certificates) when `tls` is given, and the thread serving its other end with `serve`.
fn connect_pair(
    tls: Option<(&TlsSettings, &TlsSettings)>,
    serve: impl FnOnce(Box<dyn ReadWrite>) -> Result<()> + Send + 'static,
) -> Result<(Box<dyn ReadWrite>, Server)> {
    {
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
                    serve(Box::new(rustls::StreamOwned::new(conn, tcp)))
                }
                None => serve(Box::new(tcp)),
            }
        });
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        let sender: Box<dyn ReadWrite> = match tls {
            Some((_, client)) => {
                let config = Arc::new(gos_gateway::tls::client_config(
                    client.identity.cert_chain()?,
                    client.identity.key_der()?,
                    &client.ca,
                )?);
                let name = gos_gateway::tls::cluster_dns_name("cluster-b").try_into()?;
                let conn = rustls::ClientConnection::new(config, name)?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
            None => Box::new(tcp),
        };
        Ok((sender, receiver))
    }
}

/// Put, get and delete of a 64 KiB value as three request/response exchanges over rustls on
/// one blocking TCP connection, answered by a thread that keeps the value: the floor of any
/// authenticated, encrypted request/response transport on this machine (no async runtime, no
/// QUIC), measured beside Redis's plaintext round.
struct TlsRounds {
    conn: Box<dyn ReadWrite>,
    server: std::thread::JoinHandle<Result<()>>,
}

impl TlsRounds {
    fn connect(server: &TlsSettings, client: &TlsSettings) -> Result<TlsRounds> {
        let (conn, server) = connect_pair(Some((server, client)), serve_rounds)?;
        Ok(TlsRounds { conn, server })
    }

    fn call(&mut self, op: u8, value: &[u8]) -> Result<()> {
        let mut header = [0u8; 9];
        header[0] = op;
        header[1..].copy_from_slice(&(value.len() as u64).to_le_bytes());
        self.conn.write_all(&header)?;
        self.conn.write_all(value)?;
        self.conn.flush()?;
        Ok(())
    }

    fn round(&mut self, value: &mut Vec<u8>) -> Result<Duration> {
        let started = Instant::now();
        let mut ack = [0u8; 1];
        self.call(1, &SMALL_OBJECT)?;
        self.conn.read_exact(&mut ack)?;
        self.call(2, &[])?;
        let mut len = [0u8; 8];
        self.conn.read_exact(&mut len)?;
        value.resize(u64::from_le_bytes(len) as usize, 0);
        self.conn.read_exact(value)?;
        self.call(3, &[])?;
        self.conn.read_exact(&mut ack)?;
        let elapsed = started.elapsed();
        anyhow::ensure!(value[..] == SMALL_OBJECT[..], "the value came back changed");
        Ok(elapsed)
    }

    fn finish(mut self) -> Result<()> {
        self.call(0, &[])?;
        drop(self.conn);
        self.server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?
    }
}

/// The other end of [`TlsRounds`]: op 1 stores the value (answering one byte), 2 sends it
/// back (length, bytes), 3 deletes it (one byte), 0 ends.
fn serve_rounds(mut stream: Box<dyn ReadWrite>) -> Result<()> {
    let mut stored: Vec<u8> = Vec::with_capacity(SMALL);
    loop {
        let mut header = [0u8; 9];
        stream.read_exact(&mut header)?;
        let len = u64::from_le_bytes(header[1..].try_into()?) as usize;
        anyhow::ensure!(len <= SMALL, "a value larger than the bench's");
        match header[0] {
            0 => return Ok(()),
            1 => {
                stored.resize(len, 0);
                stream.read_exact(&mut stored)?;
                stream.write_all(&[1])?;
            }
            2 => {
                stream.write_all(&(stored.len() as u64).to_le_bytes())?;
                stream.write_all(&stored)?;
            }
            3 => {
                stored.clear();
                stream.write_all(&[1])?;
            }
            op => anyhow::bail!("unknown op {op}"),
        }
        stream.flush()?;
    }
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

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or_default()
}

fn best(times: &[Duration]) -> Duration {
    times.iter().min().copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
