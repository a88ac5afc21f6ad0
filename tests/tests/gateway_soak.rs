//! A soak over a gateway: client processes do random put/get/head/release/delete/reserve
//! through `RemoteStore` against a gateway process that serves an shm store on 127.0.0.1,
//! while a killer sends SIGKILL and SIGSTOP/SIGCONT at random to the clients, and
//! SIGSTOP/SIGCONT and SIGKILL (then a restart over the same store) to the gateway.
//!
//! After every kill the store's invariant checker passes and every value present is whole
//! (values describe themselves: a tag, their length, then bytes derived from the tag). Every
//! few seconds, and at the end, all clients are killed at once and the space their
//! reservations held must be free within the gateway's idle timeout and resume grace period (plus slack).
//!
//! 25 s by default (CI); `GOS_SOAK_SECONDS` sets the length (`cargo xtask soak --seconds`),
//! `GOS_SOAK_SEED` replays a run (the seed is printed, and named in any failure),
//! `GOS_SOAK_CLIENTS` the number of client processes (4).
//!
//! The children are this test binary run again with `GOS_GW_SOAK_ROLE` set; each watches its
//! parent and exits when it is gone, and the parent kills every child by pid in a Drop guard.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use gos::shm::{ShmConfig, ShmStore};
use gos_gateway::certs::FederationCa;
use gos_gateway::{
    AllowList, ClientConfig, Gateway, GatewayConfig, RemoteStore, Role, Timeouts, TlsSettings,
};
use gos_store::{Error, KeyPrefix, Limits, ObjectKey, ObjectStore, PutOptions};

const ROLE: &str = "GOS_GW_SOAK_ROLE";
const DIR: &str = "GOS_GW_SOAK_DIR";
const ADDR: &str = "GOS_GW_SOAK_ADDR";
const STORE: &str = "GOS_GW_SOAK_STORE";
const SEED: &str = "GOS_GW_SOAK_SEED";
const GATEWAY: &str = "soak-gateway";
const CLIENT: &str = "soak-client";
/// Keys the clients share, so that they overwrite, release and delete each other's values.
const KEYS: u64 = 48;
const MAX_VALUE: u64 = 256 << 10;
const HEADER: usize = 16;

/// Short timeouts, so that a vanished peer is noticed within seconds: the bound of a killed
/// client's reservations is `idle`.
fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(2),
        idle: Duration::from_secs(2),
    }
}

/// How long the gateway keeps a cut put for its client to resume it (short: killed clients
/// never come back).
const RESUME_GRACE: Duration = Duration::from_secs(1);

/// How long after its client vanished a reservation may still hold space: the gateway's idle
/// timeout (when it notices), then the resume grace period, plus slack for a loaded machine.
fn reservation_bound() -> Duration {
    timeouts().idle + RESUME_GRACE + Duration::from_secs(3)
}

// ---------------------------------------------------------------------------------------------
// Values that prove their own integrity.

/// xorshift64: deterministic from the seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }
}

fn byte(tag: u64, i: usize) -> u8 {
    (tag.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(i as u64 * 131)
        >> 29) as u8
}

/// A value of `len` bytes (at least the header): its tag, its length, then bytes of the tag.
fn value(tag: u64, len: usize) -> Vec<u8> {
    let len = len.max(HEADER);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&(len as u64).to_le_bytes());
    v.extend((HEADER..len).map(|i| byte(tag, i)));
    v
}

/// Why `v` is not a whole value written by [`value`], if it is not.
fn torn(v: &[u8]) -> Option<String> {
    if v.len() < HEADER {
        return Some(format!("{} bytes, shorter than a header", v.len()));
    }
    let tag = u64::from_le_bytes(v[..8].try_into().ok()?);
    let len = u64::from_le_bytes(v[8..16].try_into().ok()?);
    if len != v.len() as u64 {
        return Some(format!("{} bytes where the header says {len}", v.len()));
    }
    let bad = (HEADER..v.len()).find(|&i| v[i] != byte(tag, i))?;
    Some(format!("byte {bad} of {} differs (tag {tag:#x})", v.len()))
}

// ---------------------------------------------------------------------------------------------
// The children.

/// The child process: a gateway or a client, by `GOS_GW_SOAK_ROLE`.
#[test]
fn gateway_soak_child() -> Result<()> {
    let Ok(role) = std::env::var(ROLE) else {
        return Ok(()); // Run as a normal test: nothing to do.
    };
    let dir = PathBuf::from(std::env::var(DIR)?);
    let addr: SocketAddr = std::env::var(ADDR)?.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match role.as_str() {
            "gateway" => gateway(&dir, addr, &std::env::var(STORE)?).await,
            "client" => client(&dir, addr, std::env::var(SEED)?.parse()?).await,
            other => bail!("unknown role {other}"),
        }
    })
}

/// True while the process that started us is alive (an orphan is adopted by another).
fn parent_alive(parent: u32) -> bool {
    std::os::unix::process::parent_id() == parent
}

/// Serves the shm store `name` on `addr` until the parent is gone.
async fn gateway(dir: &Path, addr: SocketAddr, name: &str) -> Result<()> {
    let parent = std::os::unix::process::parent_id();
    let store = ShmStore::open(name)?;
    // Give back at once what a killed predecessor held.
    store.reclaim_dead()?;
    let tls = TlsSettings::from_files(
        &dir.join(format!("{GATEWAY}.pem")),
        &dir.join(format!("{GATEWAY}.key")),
        &dir.join("ca.pem"),
        AllowList::with_roles([(CLIENT, Role::ReadWrite)]),
    )?;
    let mut config = GatewayConfig::new(addr, tls);
    config.timeouts = timeouts();
    config.resume_grace = RESUME_GRACE;
    let gateway = Gateway::start(config, Arc::new(store)).await?;
    println!("READY {}", gateway.local_addr()?);
    std::io::stdout().flush()?;
    while parent_alive(parent) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gateway.shutdown().await;
    Ok(())
}

/// Random operations until the parent is gone. Fails (exit status) only on a broken
/// invariant: a value that is not whole, or a corrupted store.
async fn client(dir: &Path, addr: SocketAddr, seed: u64) -> Result<()> {
    let parent = std::os::unix::process::parent_id();
    let tls = TlsSettings::from_files(
        &dir.join(format!("{CLIENT}.pem")),
        &dir.join(format!("{CLIENT}.key")),
        &dir.join("ca.pem"),
        AllowList::new([GATEWAY]),
    )?;
    let mut config = ClientConfig::new(addr, GATEWAY, tls);
    config.timeouts = timeouts();
    config.pool_bytes = 0;
    config.max_attempts = 2;
    let ops_file = dir.join(format!("ops-{seed}"));
    let mut rng = Rng::new(seed);
    let mut ops = 0u64;
    // The gateway may be stopped or restarting: connect until it answers.
    let store = loop {
        ensure!(parent_alive(parent), "orphaned");
        match RemoteStore::connect(config.clone()).await {
            Ok(store) => break store,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    while parent_alive(parent) {
        let key = ObjectKey::new(format!("soak/k{}", rng.below(KEYS)))?;
        let len = HEADER + rng.below(MAX_VALUE) as usize;
        let options = match rng.below(4) {
            0 => PutOptions::new().readers(1 + rng.below(3) as u32),
            1 => PutOptions::new().lease(Duration::from_millis(500 + rng.below(3000))),
            _ => PutOptions::new(),
        };
        let outcome: Result<(), Error> = match rng.below(100) {
            0..30 => {
                store
                    .put_opts(&key, Bytes::from(value(rng.u64(), len)), &options)
                    .await
            }
            30..55 => match store.get(&key).await {
                Ok(Some(v)) => {
                    if let Some(why) = torn(&v) {
                        bail!("seed {seed}: get of {key} returned a broken value: {why}");
                    }
                    Ok(())
                }
                other => other.map(drop),
            },
            55..65 => match store.head(&key).await {
                Ok(Some(meta)) => {
                    ensure!(
                        meta.size >= HEADER as u64,
                        "seed {seed}: head of {key}: {meta:?}"
                    );
                    Ok(())
                }
                other => other.map(drop),
            },
            65..75 => store.release(&key).await.map(drop),
            75..82 => store.delete(&key).await.map(drop),
            _ => match store.reserve(&key, len, &options).await {
                Ok(mut reservation) => {
                    reservation
                        .as_mut_slice()
                        .copy_from_slice(&value(rng.u64(), len));
                    if rng.below(4) == 0 {
                        drop(reservation); // Abandoned: its space must come back.
                        Ok(())
                    } else {
                        reservation.commit().await
                    }
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e @ Error::Corrupted(_)) = outcome {
            bail!("seed {seed}: {e}");
        }
        ops += 1;
        if ops.is_multiple_of(8) {
            std::fs::write(&ops_file, ops.to_string())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// A child process, killed by its pid when dropped (even when stopped, even on failure).
struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(role: &str, envs: &[(&str, String)]) -> Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([
                "--exact",
                "gateway_soak_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .stdout(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Proc { child, lines })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for a stdout line holding `tag`.
    fn expect(&mut self, tag: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no {tag} from pid {} in {within:?}", self.pid()))?;
            if line.contains(tag) {
                return Ok(());
            }
        }
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()?;
        ensure!(status.success(), "kill {signal} {}: {status}", self.pid());
        Ok(())
    }

    fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Fails if the child ended by itself with a failure (a broken invariant it saw).
    fn check_alive(&mut self, what: &str) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            ensure!(
                status.success(),
                "{what} (pid {}) failed: {status}",
                self.pid()
            );
            bail!("{what} (pid {}) ended by itself: {status}", self.pid());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shm store, removed when dropped.
struct StoreGuard(String);

impl Drop for StoreGuard {
    fn drop(&mut self) {
        let _ = ShmStore::remove(&self.0);
    }
}

/// What the killer did, and what the checks saw.
#[derive(Debug, Default)]
struct Tally {
    client_kills: u64,
    client_stops: u64,
    long_stops: u64,
    gateway_stops: u64,
    gateway_kills: u64,
    checks: u64,
    values_checked: u64,
    drains: u64,
    slowest_drain: Duration,
    /// The most bytes reserved when a drain killed the clients (what it then saw freed).
    most_reserved: u64,
}

/// The run. Fields drop in order: the processes before the directory and the store.
struct Soak {
    clients: Vec<Proc>,
    gateway: Proc,
    seed: u64,
    rng: Rng,
    dir: tempfile::TempDir,
    store: ShmStore,
    store_name: String,
    addr: SocketAddr,
    spawned: u64,
    tally: Tally,
}

impl Soak {
    fn spawn_gateway(dir: &Path, addr: SocketAddr, store: &str) -> Result<Proc> {
        let mut gateway = Proc::spawn(
            "gateway",
            &[
                (DIR, dir.display().to_string()),
                (ADDR, addr.to_string()),
                (STORE, store.to_owned()),
            ],
        )?;
        gateway.expect("READY", Duration::from_secs(20))?;
        Ok(gateway)
    }

    fn spawn_client(&mut self) -> Result<Proc> {
        self.spawned += 1;
        let seed = self.rng.u64();
        Proc::spawn(
            "client",
            &[
                (DIR, self.dir.path().display().to_string()),
                (ADDR, self.addr.to_string()),
                (SEED, seed.to_string()),
            ],
        )
    }

    /// The store's invariants: its checker passes and every value present is whole. Run only
    /// while the gateway runs (a stopped gateway may hold the store lock).
    fn check(&mut self, rt: &tokio::runtime::Runtime) -> Result<()> {
        self.store
            .check()
            .context("the store's invariant checker")?;
        let keys = rt.block_on(self.store.keys_with_prefix(&KeyPrefix::new("soak")?))?;
        for key in keys {
            if let Some(v) = rt.block_on(self.store.get(&key))? {
                if let Some(why) = torn(&v) {
                    bail!("{key} holds a broken value: {why}");
                }
                self.tally.values_checked += 1;
            }
        }
        for (i, client) in self.clients.iter_mut().enumerate() {
            client.check_alive(&format!("client {i}"))?;
        }
        self.gateway.check_alive("the gateway")?;
        self.tally.checks += 1;
        Ok(())
    }

    /// Kills every client at once; the space their reservations held must come back within
    /// [`reservation_bound`]. Then starts new ones.
    fn drain(&mut self, rt: &tokio::runtime::Runtime) -> Result<()> {
        for client in &mut self.clients {
            client.kill()?;
        }
        self.clients.clear();
        let started = Instant::now();
        let reserved = rt.block_on(self.store.stats())?.reserved;
        self.tally.most_reserved = self.tally.most_reserved.max(reserved);
        loop {
            // A killed gateway's reservations are given back by the store's dead-handle
            // reclaim (its successor runs it at start; this is the same call).
            self.store.reclaim_dead()?;
            let reserved = rt.block_on(self.store.stats())?.reserved;
            if reserved == 0 {
                break;
            }
            ensure!(
                started.elapsed() < reservation_bound(),
                "{reserved} bytes still reserved {:?} after every client was killed",
                started.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.tally.drains += 1;
        self.tally.slowest_drain = self.tally.slowest_drain.max(started.elapsed());
        self.check(rt)
    }

    fn run(&mut self, seconds: u64, n_clients: usize) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        for _ in 0..n_clients {
            let client = self.spawn_client()?;
            self.clients.push(client);
        }
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut next_drain = Instant::now() + Duration::from_secs(8);
        // Processes stopped, and when to resume them.
        let mut stopped: Vec<(u32, Instant)> = Vec::new();
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50 + self.rng.below(250)));
            let now = Instant::now();
            for (pid, _) in stopped.iter().filter(|(_, at)| *at <= now) {
                cont(*pid)?;
            }
            stopped.retain(|(_, at)| *at > now);
            let pick = self.rng.below(self.clients.len() as u64) as usize;
            match self.rng.below(100) {
                0..40 => {
                    let pid = self.clients[pick].pid();
                    stopped.retain(|(p, _)| *p != pid);
                    self.clients[pick].kill()?;
                    self.clients[pick] = self.spawn_client()?;
                    self.tally.client_kills += 1;
                    self.check(&rt)?;
                }
                40..65 => {
                    let client = &self.clients[pick];
                    if stopped.iter().all(|(p, _)| *p != client.pid()) {
                        // Mostly short; one in five past the gateway's idle timeout, which
                        // ends the connection (and frees what it held) while it is stopped.
                        let long = self.rng.below(5) == 0;
                        let pause = if long {
                            timeouts().idle + Duration::from_millis(500)
                        } else {
                            Duration::from_millis(50 + self.rng.below(400))
                        };
                        client.signal("-STOP")?;
                        stopped.push((client.pid(), Instant::now() + pause));
                        self.tally.client_stops += 1;
                        self.tally.long_stops += u64::from(long);
                    }
                }
                65..80 => {
                    let pause = Duration::from_millis(50 + self.rng.below(600));
                    self.gateway.signal("-STOP")?;
                    std::thread::sleep(pause);
                    self.gateway.signal("-CONT")?;
                    self.tally.gateway_stops += 1;
                }
                80..86 => {
                    self.gateway.kill()?;
                    self.tally.gateway_kills += 1;
                    self.gateway =
                        Self::spawn_gateway(self.dir.path(), self.addr, &self.store_name)?;
                    self.check(&rt)?;
                }
                _ => self.check(&rt)?,
            }
            if Instant::now() >= next_drain {
                for (pid, _) in stopped.drain(..) {
                    cont(pid)?;
                }
                self.drain(&rt)?;
                for _ in 0..n_clients {
                    let client = self.spawn_client()?;
                    self.clients.push(client);
                }
                next_drain = Instant::now() + Duration::from_secs(8);
            }
        }
        for (pid, _) in stopped.drain(..) {
            cont(pid)?;
        }
        self.drain(&rt)
    }

    fn ops(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("ops-"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|s| s.trim().parse::<u64>().ok())
            .sum()
    }
}

fn cont(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -CONT {pid}: {status}");
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn clients_and_gateway_killed_and_stopped_at_random_leave_the_store_whole() -> Result<()> {
    if std::env::var_os(ROLE).is_some() {
        return Ok(()); // A child runs only `gateway_soak_child`.
    }
    let seconds: u64 = env_or("GOS_SOAK_SECONDS", 25);
    let n_clients: usize = env_or("GOS_SOAK_CLIENTS", 4).max(1);
    let seed: u64 = env_or(
        "GOS_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    );
    println!("gateway soak: seed {seed} (GOS_SOAK_SEED={seed} replays its choices)");

    let dir = tempfile::tempdir()?;
    let ca = FederationCa::generate("soak federation")?;
    ca.write(dir.path(), "ca")?;
    for id in [GATEWAY, CLIENT] {
        ca.issue(id)?.write(dir.path(), id)?;
    }
    let store_name = format!("gw-soak-{}-{seed}", std::process::id());
    let _ = ShmStore::remove(&store_name);
    let limits = Limits::with_capacity(16 << 20).max_entries(256);
    let store = ShmStore::create(
        &store_name,
        ShmConfig::new(limits)
            .arena_bytes(48 << 20)
            .max_processes(32),
    )?;
    let _remove = StoreGuard(store_name.clone());
    // A port for the gateway and every restart of it.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let gateway = Soak::spawn_gateway(dir.path(), addr, &store_name)?;
    let mut soak = Soak {
        seed,
        rng: Rng::new(seed),
        dir,
        store,
        store_name,
        addr,
        gateway,
        clients: Vec::new(),
        spawned: 0,
        tally: Tally::default(),
    };
    let started = Instant::now();
    let result = soak.run(seconds, n_clients);
    let t = &soak.tally;
    println!(
        "gateway soak: seed {}, {:.0?}, {n_clients} client processes ({} started), {} client \
         SIGKILLs, {} client stops ({} past the idle timeout), {} gateway stops, {} gateway \
         SIGKILLs and restarts, {} invariant checks ({} values verified), {} operations; {} \
         drains (up to {} KiB reserved when the clients were killed), every reservation of \
         the killed clients freed within {:?} (bound {:?})",
        soak.seed,
        started.elapsed(),
        soak.spawned,
        t.client_kills,
        t.client_stops,
        t.long_stops,
        t.gateway_stops,
        t.gateway_kills,
        t.checks,
        t.values_checked,
        soak.ops(),
        t.drains,
        t.most_reserved >> 10,
        t.slowest_drain,
        reservation_bound(),
    );
    result.with_context(|| format!("gateway soak failed; replay with GOS_SOAK_SEED={seed}"))
}

#[test]
fn a_value_that_is_not_whole_is_told_apart() {
    let v = value(7, 1000);
    assert_eq!(torn(&v), None);
    let mut flipped = v.clone();
    flipped[500] ^= 1;
    assert!(torn(&flipped).is_some());
    assert!(torn(&v[..999]).is_some(), "a truncated value");
    assert!(torn(&v[..8]).is_some(), "a header cut short");
    assert_eq!(torn(&value(7, 3)), None, "the header alone is a value");
}
