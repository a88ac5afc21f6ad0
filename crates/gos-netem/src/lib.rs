//! `gos-netem`: a userspace UDP impairment proxy, so that gateways can be tested and measured
//! over a path that is not loopback (delay each way, random loss, a rate limit with a bounded
//! queue) and cut at will, without root, `tc` or network namespaces.
//!
//! A [`UdpProxy`] listens on `127.0.0.1`; every client address it hears from gets its own
//! upstream socket towards the real server, and each direction of each client goes through its
//! own link: a packet is dropped at random (`loss`), or when the link's queue is over its
//! bound (tail drop, like a router), and otherwise leaves after its serialization time at
//! `rate` plus the one-way `delay`. [`UdpProxy::set_cut`] drops everything both ways until
//! healed: a cut connection, for resume tests.
//!
//! The proxy shares the machine with the endpoints it measures, so it moves datagrams in
//! batches (quinn-udp: `recvmmsg` and receive offload in, segmentation offload out, where the
//! kernel has them) while judging each datagram on its own: packets due in the same timer tick
//! of the same size leave in one send.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! use gos_netem::{PathConfig, ProxyConfig, UdpProxy};
//! use tokio::net::UdpSocket;
//!
//! let server = UdpSocket::bind("127.0.0.1:0").await?;
//! let config = ProxyConfig::symmetric(PathConfig::new().delay(Duration::from_millis(5)));
//! let proxy = UdpProxy::start(server.local_addr()?, config).await?;
//!
//! let client = UdpSocket::bind("127.0.0.1:0").await?;
//! client.send_to(b"ping", proxy.local_addr()).await?;
//! let mut buf = [0u8; 16];
//! let (n, from) = server.recv_from(&mut buf).await?;
//! assert_eq!(&buf[..n], b"ping");
//! server.send_to(b"pong", from).await?;
//! let n = client.recv(&mut buf).await?;
//! assert_eq!(&buf[..n], b"pong");
//! # Ok(()) }
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The largest UDP datagram the proxy forwards, and the size of each receive buffer (a buffer
/// may hold several datagrams coalesced by the kernel's receive offload, 64 KiB at most).
const MAX_DATAGRAM: usize = 65_536;

/// The most bytes handed to the kernel in one segmentation-offload send (the largest UDP
/// payload over IPv4).
const MAX_BATCH: usize = 65_507;

/// Socket buffers the proxy asks for (the kernel caps them at `net.core.rmem_max`), so that
/// bursts are queued by the links, where they are counted, rather than lost in the kernel.
const SOCKET_BUFFER: usize = 8 << 20;

/// A UDP socket that moves datagrams in batches where the kernel allows (quinn-udp: `recvmmsg`
/// and receive offload, segmentation offload on send), so that the proxy costs the endpoints it
/// shares a machine with as little CPU as it can: per datagram, its `recvfrom` and `sendto`
/// took three quarters of its time, in the kernel. Each datagram is still judged on its own.
#[derive(Debug)]
struct BatchSocket {
    io: UdpSocket,
    state: UdpSocketState,
}

impl BatchSocket {
    /// A socket on 127.0.0.1, connected to `peer` if given (it then hears only from it).
    fn bind(peer: Option<SocketAddr>) -> io::Result<BatchSocket> {
        let io = bind_loopback(peer)?;
        let state = UdpSocketState::new((&io).into())?;
        Ok(BatchSocket { io, state })
    }

    /// Receives one batch into `bufs`; returns how many of them (and of `meta`) were filled.
    async fn recv(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        loop {
            self.io.readable().await?;
            let mut slices: Vec<IoSliceMut<'_>> =
                bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), &mut slices, meta)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Sends `contents`, datagrams of `segment` bytes back to back (the last may be shorter),
    /// to `to`.
    async fn send(&self, to: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: (contents.len() > segment).then_some(segment),
            src_ip: None,
        };
        loop {
            self.io.writable().await?;
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.send((&self.io).into(), &transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Receives batches for ever, handing each datagram and its sender to `each`.
    async fn for_each_datagram(&self, mut each: impl FnMut(&[u8], SocketAddr)) {
        let mut bufs = vec![vec![0u8; MAX_DATAGRAM]; quinn_udp::BATCH_SIZE];
        let mut meta = vec![RecvMeta::default(); quinn_udp::BATCH_SIZE];
        loop {
            let n = match self.recv(&mut bufs, &mut meta).await {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux: not fatal.
                    tracing::debug!("netem recv: {e}");
                    continue;
                }
            };
            for (buf, meta) in bufs.iter().zip(&meta).take(n) {
                let stride = meta.stride.max(1);
                for datagram in buf[..meta.len].chunks(stride) {
                    each(datagram, meta.addr);
                }
            }
        }
    }
}

/// A UDP socket on 127.0.0.1 with large buffers (best effort), connected to `peer` if given.
fn bind_loopback(peer: Option<SocketAddr>) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Larger buffers are an optimisation: the kernel may refuse or cap them.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    if let Some(peer) = peer {
        socket.connect(&peer.into())?;
    }
    UdpSocket::from_std(socket.into())
}

/// One direction of a path: delay, loss, rate and queue.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PathConfig {
    /// One-way propagation delay added to every packet.
    pub delay: Duration,
    /// Probability that a packet is dropped, in `[0, 1]`.
    pub loss: f64,
    /// The link's rate in bits per second (`None`: as fast as the proxy goes).
    pub rate_bps: Option<u64>,
    /// The most bytes waiting to be serialized at `rate_bps`; a packet that would exceed it is
    /// dropped (tail drop). Unused without a rate.
    pub queue_bytes: u64,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig::new()
    }
}

impl PathConfig {
    /// No delay, no loss, no rate limit.
    pub fn new() -> Self {
        PathConfig {
            delay: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            queue_bytes: 4 << 20,
        }
    }

    /// Sets the one-way delay.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the loss probability (clamped to `[0, 1]`).
    #[must_use]
    pub fn loss(mut self, loss: f64) -> Self {
        self.loss = if loss.is_nan() {
            0.0
        } else {
            loss.clamp(0.0, 1.0)
        };
        self
    }

    /// Sets the rate in bits per second.
    #[must_use]
    pub fn rate_bps(mut self, bps: u64) -> Self {
        self.rate_bps = Some(bps.max(1));
        self
    }

    /// Sets the queue bound in bytes.
    #[must_use]
    pub fn queue_bytes(mut self, bytes: u64) -> Self {
        self.queue_bytes = bytes;
        self
    }

    /// Serialization time of `len` bytes at the rate.
    fn serialization(&self, len: usize) -> Duration {
        match self.rate_bps {
            None => Duration::ZERO,
            Some(bps) => {
                Duration::from_nanos(((len as u128 * 8 * 1_000_000_000) / bps as u128) as u64)
            }
        }
    }

    /// Bytes that `backlog` of serialization time holds at the rate.
    fn backlog_bytes(&self, backlog: Duration) -> u64 {
        match self.rate_bps {
            None => 0,
            Some(bps) => ((backlog.as_nanos() * bps as u128) / 8 / 1_000_000_000) as u64,
        }
    }
}

/// Both directions of the path and the seed of the loss draws.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Client to server.
    pub forward: PathConfig,
    /// Server to client.
    pub backward: PathConfig,
    /// Seed of the random loss (runs are repeatable).
    pub seed: u64,
}

impl ProxyConfig {
    /// The same path both ways.
    pub fn symmetric(path: PathConfig) -> Self {
        ProxyConfig {
            forward: path,
            backward: path,
            seed: 0x6e65_7465_6d00_0001,
        }
    }

    /// A wide-area path: `rate_bps` each way, `rtt` round trip (half each way), `loss` each
    /// way, and a queue of one bandwidth-delay product (a common router buffer).
    pub fn wan(rate_bps: u64, rtt: Duration, loss: f64) -> Self {
        let bdp = PathConfig::new()
            .rate_bps(rate_bps)
            .backlog_bytes(rtt)
            .max(64 << 10);
        ProxyConfig::symmetric(
            PathConfig::new()
                .delay(rtt / 2)
                .loss(loss)
                .rate_bps(rate_bps)
                .queue_bytes(bdp),
        )
    }

    /// Sets the seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Counters of one direction.
#[derive(Debug, Default)]
struct DirectionCounters {
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    lost: AtomicU64,
    queue_drops: AtomicU64,
    cut_drops: AtomicU64,
}

impl DirectionCounters {
    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            forwarded_bytes: self.forwarded_bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            queue_drops: self.queue_drops.load(Ordering::Relaxed),
            cut_drops: self.cut_drops.load(Ordering::Relaxed),
        }
    }
}

/// What one direction did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DirectionStats {
    /// Packets delivered.
    pub forwarded: u64,
    /// Bytes delivered.
    pub forwarded_bytes: u64,
    /// Packets dropped at random.
    pub lost: u64,
    /// Packets dropped because the queue was full.
    pub queue_drops: u64,
    /// Packets dropped while the path was cut.
    pub cut_drops: u64,
}

/// What the proxy did so far, both directions over every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Client to server.
    pub forward: DirectionStats,
    /// Server to client.
    pub backward: DirectionStats,
    /// Client addresses seen.
    pub sessions: u64,
}

#[derive(Debug, Default)]
struct Shared {
    cut: AtomicBool,
    forward: DirectionCounters,
    backward: DirectionCounters,
    sessions: AtomicU64,
}

/// One direction of one client's path: decides each packet's fate and departure time, and
/// hands survivors to a task that sends them when due.
#[derive(Debug)]
struct Link {
    config: PathConfig,
    /// When the link finishes serializing what it has accepted.
    free_at: Instant,
    rng: ChaCha8Rng,
    queue: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
}

impl Link {
    /// A link whose packets are sent through `socket` to `to` when due. The packets due at
    /// once (the timer wakes every millisecond at best) leave in one segmentation-offload
    /// batch when they have the same size.
    fn spawn(
        config: PathConfig,
        seed: u64,
        socket: Arc<BatchSocket>,
        to: SocketAddr,
    ) -> (Link, JoinHandle<()>) {
        let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let task = tokio::spawn(async move {
            let max_segments = socket.state.max_gso_segments().max(1);
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut next: Option<(Instant, Vec<u8>)> = None;
            loop {
                let (at, first) = match next.take() {
                    Some(packet) => packet,
                    None => match due.recv().await {
                        Some(packet) => packet,
                        None => break,
                    },
                };
                if at > Instant::now() {
                    tokio::time::sleep_until(at).await;
                }
                let now = Instant::now();
                let segment = first.len();
                batch.clear();
                batch.extend_from_slice(&first);
                let mut count = 1;
                while count < max_segments && batch.len() + segment <= MAX_BATCH {
                    match due.try_recv() {
                        Ok((at, packet)) if at <= now && packet.len() <= segment => {
                            batch.extend_from_slice(&packet);
                            count += 1;
                            if packet.len() < segment {
                                // Only the last datagram of a batch may be shorter.
                                break;
                            }
                        }
                        Ok(later) => {
                            next = Some(later);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = socket.send(to, &batch, segment).await {
                    tracing::debug!("netem send failed: {e}");
                }
            }
        });
        let link = Link {
            config,
            free_at: Instant::now(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue,
        };
        (link, task)
    }

    /// Accepts or drops one packet.
    fn offer(&mut self, packet: Vec<u8>, shared: &Shared, counters: &DirectionCounters) {
        if shared.cut.load(Ordering::Acquire) {
            counters.cut_drops.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.config.loss > 0.0 && self.rng.random::<f64>() < self.config.loss {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let start = self.free_at.max(now);
        if self.config.rate_bps.is_some()
            && self.config.backlog_bytes(start - now) + packet.len() as u64
                > self.config.queue_bytes
        {
            counters.queue_drops.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.free_at = start + self.config.serialization(packet.len());
        let at = self.free_at + self.config.delay;
        counters.forwarded.fetch_add(1, Ordering::Relaxed);
        counters
            .forwarded_bytes
            .fetch_add(packet.len() as u64, Ordering::Relaxed);
        // The sender task lives as long as the link; a send error only means it is stopping.
        let _ = self.queue.send((at, packet));
    }
}

/// A running proxy; dropping it stops every task it started.
#[derive(Debug)]
pub struct UdpProxy {
    local: SocketAddr,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl UdpProxy {
    /// Listens on `127.0.0.1` and forwards to `upstream` (which must be on loopback too) with
    /// `config`'s impairments.
    pub async fn start(upstream: SocketAddr, config: ProxyConfig) -> io::Result<UdpProxy> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upstream {upstream} is not a loopback address"),
            ));
        }
        let front = Arc::new(BatchSocket::bind(None)?);
        let local = front.io.local_addr()?;
        let shared = Arc::new(Shared::default());
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let main = tokio::spawn(run_front(
            front,
            upstream,
            config,
            Arc::clone(&shared),
            Arc::clone(&tasks),
        ));
        lock(&tasks).push(main);
        Ok(UdpProxy {
            local,
            shared,
            tasks,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Cuts the path (every packet both ways is dropped) or heals it.
    pub fn set_cut(&self, cut: bool) {
        self.shared.cut.store(cut, Ordering::Release);
    }

    /// True while the path is cut.
    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::Acquire)
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            forward: self.shared.forward.snapshot(),
            backward: self.shared.backward.snapshot(),
            sessions: self.shared.sessions.load(Ordering::Relaxed),
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Receives from clients, opens a session per client address, offers each packet to the
/// client's forward link.
async fn run_front(
    front: Arc<BatchSocket>,
    upstream: SocketAddr,
    config: ProxyConfig,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let mut sessions: HashMap<SocketAddr, Link> = HashMap::new();
    front
        .for_each_datagram(|datagram, client| {
            let link = match sessions.entry(client) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    match open_session(&front, client, upstream, &config, &shared, &tasks) {
                        Ok(link) => {
                            shared.sessions.fetch_add(1, Ordering::Relaxed);
                            entry.insert(link)
                        }
                        Err(e) => {
                            tracing::warn!("netem cannot open a session for {client}: {e}");
                            return;
                        }
                    }
                }
            };
            link.offer(datagram.to_vec(), &shared, &shared.forward);
        })
        .await;
}

/// A client's upstream socket, its forward link, and the task relaying the server's answers
/// through its backward link.
fn open_session(
    front: &Arc<BatchSocket>,
    client: SocketAddr,
    upstream: SocketAddr,
    config: &ProxyConfig,
    shared: &Arc<Shared>,
    tasks: &Arc<Mutex<Vec<JoinHandle<()>>>>,
) -> io::Result<Link> {
    let socket = Arc::new(BatchSocket::bind(Some(upstream))?);
    let n = shared.sessions.load(Ordering::Relaxed);
    let (forward, forward_task) = Link::spawn(
        config.forward,
        config.seed ^ (2 * n),
        Arc::clone(&socket),
        upstream,
    );
    let (mut backward, backward_task) = Link::spawn(
        config.backward,
        config.seed ^ (2 * n + 1),
        Arc::clone(front),
        client,
    );
    let relay_shared = Arc::clone(shared);
    let relay = tokio::spawn(async move {
        socket
            .for_each_datagram(|datagram, _| {
                backward.offer(datagram.to_vec(), &relay_shared, &relay_shared.backward);
            })
            .await;
    });
    let mut all = lock(tasks);
    all.push(forward_task);
    all.push(backward_task);
    all.push(relay);
    Ok(forward)
}
