//! Configuration of gateways and remote-store clients: identity, trust, limits, timeouts and
//! the QUIC transport tuned for bulk transfer.

use std::any::Any;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gos_store::Clock;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt, congestion};
use rustls_pki_types::CertificateDer;

use crate::certs::Identity;
use crate::tls::{self, AllowList, TlsError};

/// How long each wait may take. Every await on the network is bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection (QUIC and TLS handshake).
    pub connect: Duration,
    /// Each single read or write on a stream, and handing a message to a mailbox: a transfer
    /// may take long, but it must make progress at least this often.
    pub io: Duration,
    /// A connection with no packet from its peer for this long is dead.
    pub idle: Duration,
}

impl Default for Timeouts {
    /// 5 s to connect, 10 s per wait, 30 s idle.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            io: Duration::from_secs(10),
            idle: Duration::from_secs(30),
        }
    }
}

/// Sizes checked before anything is read or allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// The largest request header a gateway reads (a message body is at most 64 KiB).
    pub max_request_header: u32,
    /// The largest response header a client reads (a key listing can be long).
    pub max_response_header: u32,
    /// The largest object accepted on the wire, either way; the store's own limits apply too.
    pub max_object: u64,
    /// The slowest transfer accepted, in bytes per second: a whole request must finish within
    /// `timeouts.io + len / min_rate` (its object received and committed, or sent), so a
    /// trickling sender or a slow reader cannot hold a reservation or a pinned value for
    /// ever. At least 1.
    pub min_rate: u64,
    /// Connections one identity may hold at once; requests on more are answered
    /// [`Busy`](gos_store::Error::Busy).
    pub max_connections_per_peer: u32,
    /// Connections a gateway accepts in all; more are refused at the handshake.
    pub max_connections: u32,
    /// Object bytes one identity may have in flight at once (being received or sent);
    /// a request over it is answered [`Busy`](gos_store::Error::Busy) before any is reserved.
    pub max_in_flight_per_peer: u64,
}

impl Default for WireLimits {
    /// 256 KiB request headers, 64 MiB response headers, 4 GiB objects; at least 1 MiB/s;
    /// 32 connections per identity, 1024 in all; 4 GiB in flight per identity.
    fn default() -> Self {
        WireLimits {
            max_request_header: 256 << 10,
            max_response_header: 64 << 20,
            max_object: 4 << 30,
            min_rate: 1 << 20,
            max_connections_per_peer: 32,
            max_connections: 1024,
            max_in_flight_per_peer: 4 << 30,
        }
    }
}

impl WireLimits {
    /// How long a whole transfer of `len` bytes may take: `io + len / min_rate`.
    pub fn transfer_time(&self, len: u64, io: Duration) -> Duration {
        let rate = self.min_rate.max(1);
        io.saturating_add(Duration::from_secs_f64(len as f64 / rate as f64))
    }
}

/// The largest `mtu_upper_bound` accepted. quinn hands the kernel up to 10 datagrams in one
/// segmentation-offload (GSO) call, and the kernel refuses a call over 65 507 bytes with
/// `EMSGSIZE`; quinn counts such a batch as sent, so its loss makes black-hole detection drop
/// the MTU to 1200 (measured: a bound of 8972 ended slower than 1452). 10 x 6550 fits.
pub const MAX_MTU_UPPER_BOUND: u16 = 6550;

/// The smallest UDP payload QUIC allows (and quinn's starting MTU).
pub const MIN_MTU: u16 = 1200;

/// Largest window quinn accepts per connection (a QUIC variable-length integer holds 2^62; we
/// stop at 4 GiB - 1, as the fields are `u32`).
const MAX_WINDOW: u64 = u32::MAX as u64;

/// On a configured path, the congestion window never exceeds this many bandwidth-delay
/// products. quinn paces at 1.25 x window / smoothed RTT, so the ceiling is also what keeps
/// the pacer on: quinn's BBR estimates the bandwidth from the spacing of consecutive sends and
/// ACKs, which a burst inflates tenfold or more, so its own window grows to 60-140 MB on a
/// 6 MB path, pacing stops and bursts overflow the bottleneck's queue (measured over gos-netem:
/// ~14% of the packets dropped at the queue, 74-79% of the path's rate; with the ceiling none,
/// 88%; docs/benchmarks.md). 1.5 leaves room for half a BDP of queue and ACK delay; 1.25 measured
/// the same, 2 slower (the flow-control windows allow 2 BDP in flight, so 2 only adds pacing).
const PATH_WINDOW_CEILING: f64 = 1.5;

/// On a configured path, the congestion window a connection starts with, in bandwidth-delay
/// products: it is paced (1.25 x window / RTT, here ~0.6 of the path's rate), so starting at
/// half the path skips most of the slow start without a burst (measured with BBR: a first
/// 100 MiB transfer over 1 Gbit/s x 50 ms in 1.35 s instead of 1.62 s, medians of 15; a whole
/// BDP was slower, 1.74 s, a quarter 1.46 s).
const PATH_INITIAL_WINDOW: f64 = 0.5;

/// The smallest window the path settings give (quinn's own initial windows are 10 to 200
/// datagrams of 1200 bytes; a tiny configured path must not go below a handful of packets).
const MIN_INITIAL_WINDOW: u64 = 14_720;

/// A congestion controller held to a ceiling: whatever `inner` decides, at most `ceiling`
/// bytes are in flight (see [`PATH_WINDOW_CEILING`]).
struct PathCeiling {
    inner: Arc<dyn congestion::ControllerFactory + Send + Sync>,
    ceiling: u64,
}

impl congestion::ControllerFactory for PathCeiling {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn congestion::Controller> {
        Box::new(CeilingController {
            inner: Arc::clone(&self.inner).build(now, current_mtu),
            ceiling: self.ceiling,
        })
    }
}

/// One connection's controller under a [`PathCeiling`].
struct CeilingController {
    inner: Box<dyn congestion::Controller>,
    ceiling: u64,
}

impl congestion::Controller for CeilingController {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &quinn_proto::RttEstimator,
    ) {
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window().min(self.ceiling)
    }

    fn metrics(&self) -> congestion::ControllerMetrics {
        let mut metrics = self.inner.metrics();
        metrics.congestion_window = self.window();
        metrics
    }

    fn clone_box(&self) -> Box<dyn congestion::Controller> {
        Box::new(CeilingController {
            inner: self.inner.clone_box(),
            ceiling: self.ceiling,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window().min(self.ceiling)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod path_ceiling_tests {
    use super::*;
    use quinn::congestion::ControllerFactory as _;

    fn controller(tuning: TransportTuning) -> Option<Box<dyn congestion::Controller>> {
        tuning
            .congestion_factory()
            .map(|f| f.build(Instant::now(), MIN_MTU))
    }

    #[test]
    fn a_configured_path_sets_the_start_and_the_ceiling_of_every_controller() {
        for congestion in [Congestion::Cubic, Congestion::NewReno, Congestion::Bbr] {
            let tuning = TransportTuning {
                congestion,
                ..TransportTuning::default()
            }
            .for_path(1_000_000_000, Duration::from_millis(50));
            // 1 Gbit/s x 50 ms = 6.25 MB: start at half, never above 1.5 times.
            let mut c = controller(tuning).expect("a path gives a controller");
            assert_eq!(c.initial_window(), 3_125_000, "{congestion:?}");
            assert_eq!(c.window(), 3_125_000, "{congestion:?}");
            c.on_mtu_update(6500);
            assert_eq!(c.clone_box().initial_window(), 3_125_000);
        }
        // The ceiling holds whatever the controller inside decides (BBR starts at 240 000).
        let held = Arc::new(PathCeiling {
            inner: Arc::new(congestion::BbrConfig::default()),
            ceiling: 100_000,
        })
        .build(Instant::now(), MIN_MTU);
        assert_eq!(held.window(), 100_000);
        assert_eq!(held.metrics().congestion_window, 100_000);
        assert_eq!(held.initial_window(), 100_000);
    }

    #[test]
    fn without_a_path_the_controllers_are_quinns_own() {
        assert!(controller(TransportTuning::default()).is_none());
        let bbr = controller(TransportTuning {
            congestion: Congestion::Bbr,
            ..TransportTuning::default()
        })
        .expect("BBR is not quinn's default");
        // quinn's BBR starts at 200 datagrams of 1200 bytes.
        assert_eq!(bbr.initial_window(), 240_000);
        // A tiny path still starts with a few packets.
        let tiny = TransportTuning::default().for_path(1_000_000, Duration::from_millis(1));
        assert_eq!(
            controller(tiny).expect("a path").initial_window(),
            MIN_INITIAL_WINDOW
        );
    }
}

/// The congestion controller of each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default: loss-based, so random loss on a long path holds
    /// it far below the link's rate (docs/transport.md, measured over gos-netem).
    #[default]
    Cubic,
    /// NewReno (RFC 9002's reference controller).
    NewReno,
    /// BBR, model-based: keeps a lossy long path busy. quinn marks its BBR experimental.
    Bbr,
}

/// QUIC tuning for bulk transfer. Design and measurements: docs/transport.md.
///
/// The stream window bounds what one stream may have in flight, unread, at the receiver; the
/// connection window bounds all streams together. Large windows keep a fast link busy while
/// the receiver is slow for a moment. quinn-proto before 0.11.19 failed such connections with
/// "too many gaps in stream buffer" once a lagging reader let more than ~2048 packets of one
/// stream pile up (quinn issue #2809, fixed by PR #2814, released in 0.11.19, which this crate
/// requires); with an older quinn-proto keep `stream_window` under about 2 MiB.
///
/// Packets are the cost of QUIC on a fast path (each datagram is encrypted, acknowledged and
/// handed to the kernel on its own), so MTU discovery may probe up to `mtu_upper_bound`
/// (6500 by default): on loopback or a jumbo-frame network the transfer then moves 4.5x
/// fewer packets, and on a 1500-byte path discovery settles at what the path carries.
/// Each endpoint announces the same bound as its `max_udp_payload_size` (quinn's default,
/// 1472, would cap the peer's discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportTuning {
    /// Per-stream receive window, in bytes (raised to cover the path, see `path_rate_bps`).
    pub stream_window: u32,
    /// Per-connection receive window, in bytes (raised likewise).
    pub connection_window: u32,
    /// Per-connection send buffer, in bytes (raised likewise).
    pub send_window: u32,
    /// Requested UDP socket send and receive buffer sizes, in bytes (the kernel caps them at
    /// `net.core.rmem_max` / `wmem_max`).
    pub udp_buffer: u32,
    /// Concurrent requests (bidirectional streams) one peer may have open.
    pub max_concurrent_streams: u32,
    /// The largest UDP payload MTU discovery probes for, and the `max_udp_payload_size` this
    /// endpoint announces; from [`MIN_MTU`] to [`MAX_MTU_UPPER_BOUND`]. 1452 keeps every
    /// datagram within a 1500-byte Ethernet frame without discovery's probes.
    pub mtu_upper_bound: u16,
    /// The rate, in bits per second, of the path the windows must keep busy; with `path_rtt`
    /// it gives the bandwidth-delay product (BDP), and the windows above are raised to twice it
    /// (a lost packet holds the window for one more round trip). The congestion controller
    /// then starts at half a BDP and is held to 1.5 BDP in flight, which keeps quinn's pacer
    /// near the path's rate (1.25 x window / RTT): a path rate set far below the real one
    /// caps the transfer at about 1.5 times it. `None`: windows as configured, the
    /// controller's own start and window.
    pub path_rate_bps: Option<u64>,
    /// The path's round-trip time, for the bandwidth-delay product.
    pub path_rtt: Duration,
    /// The congestion controller.
    pub congestion: Congestion,
    /// Worker threads of a runtime built by [`TransportTuning::runtime`] (`None`: one per
    /// core, tokio's default). The gateway does not build its runtime; whoever starts it does.
    pub runtime_workers: Option<NonZeroUsize>,
}

impl Default for TransportTuning {
    /// 16 MiB per stream, 64 MiB per connection and for sending, 8 MiB UDP buffers, 64
    /// concurrent requests, MTU discovery up to 6500 bytes, no path estimate, CUBIC, one
    /// runtime worker per core.
    fn default() -> Self {
        TransportTuning {
            stream_window: 16 << 20,
            connection_window: 64 << 20,
            send_window: 64 << 20,
            udp_buffer: 8 << 20,
            max_concurrent_streams: 64,
            mtu_upper_bound: 6500,
            path_rate_bps: None,
            path_rtt: Duration::from_millis(50),
            congestion: Congestion::Cubic,
            runtime_workers: None,
        }
    }
}

impl TransportTuning {
    /// Windows sized for a path of `rate_bps` bits per second and `rtt` round trip (see
    /// `path_rate_bps`).
    #[must_use]
    pub fn for_path(mut self, rate_bps: u64, rtt: Duration) -> Self {
        self.path_rate_bps = Some(rate_bps);
        self.path_rtt = rtt;
        self
    }

    /// The bandwidth-delay product of the configured path, in bytes (0 without one).
    pub fn bandwidth_delay_product(&self) -> u64 {
        let Some(rate) = self.path_rate_bps else {
            return 0;
        };
        let bytes = u128::from(rate) * self.path_rtt.as_nanos() / 8 / 1_000_000_000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// The windows in effect: `(stream, connection, send)`, each at least twice the
    /// bandwidth-delay product, the connection's at least the stream's, all below 4 GiB.
    pub fn effective_windows(&self) -> (u64, u64, u64) {
        let floor = self.bandwidth_delay_product().saturating_mul(2);
        let stream = u64::from(self.stream_window).max(floor).min(MAX_WINDOW);
        let connection = u64::from(self.connection_window)
            .max(stream)
            .min(MAX_WINDOW);
        let send = u64::from(self.send_window).max(floor).min(MAX_WINDOW);
        (stream, connection, send)
    }

    /// Checks the settings a config file may get wrong: the MTU bound within
    /// [`MIN_MTU`]..=[`MAX_MTU_UPPER_BOUND`], a path rate with a non-zero round trip, no zero
    /// window.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_MTU..=MAX_MTU_UPPER_BOUND).contains(&self.mtu_upper_bound) {
            return Err(format!(
                "transport.mtu_upper_bound {} is outside {MIN_MTU}..={MAX_MTU_UPPER_BOUND}",
                self.mtu_upper_bound
            ));
        }
        if self.path_rate_bps == Some(0)
            || (self.path_rate_bps.is_some() && self.path_rtt.is_zero())
        {
            return Err("transport.path_rate_bps needs a non-zero rate and path_rtt".into());
        }
        if self.stream_window == 0 || self.connection_window == 0 || self.send_window == 0 {
            return Err("transport windows must be non-zero".into());
        }
        Ok(())
    }

    /// The quinn transport configuration for these settings and `timeouts`.
    pub fn transport_config(&self, timeouts: &Timeouts) -> TransportConfig {
        let (stream, connection, send) = self.effective_windows();
        let mut mtu = MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound.clamp(MIN_MTU, MAX_MTU_UPPER_BOUND));
        let mut t = TransportConfig::default();
        t.stream_receive_window(VarInt::from_u64(stream).unwrap_or(VarInt::MAX))
            .receive_window(VarInt::from_u64(connection).unwrap_or(VarInt::MAX))
            .send_window(send)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .mtu_discovery_config(Some(mtu))
            .max_idle_timeout(IdleTimeout::try_from(timeouts.idle).ok())
            .keep_alive_interval(Some(timeouts.idle / 3));
        if let Some(factory) = self.congestion_factory() {
            t.congestion_controller_factory(factory);
        }
        t
    }

    /// The congestion controller, if not quinn's default (CUBIC, no path): on a configured path
    /// its initial window is [`PATH_INITIAL_WINDOW`] of the bandwidth-delay product and its
    /// window is held to [`PATH_WINDOW_CEILING`] of it (see `path_rate_bps`).
    fn congestion_factory(&self) -> Option<Arc<dyn congestion::ControllerFactory + Send + Sync>> {
        let bdp = self.bandwidth_delay_product();
        let initial =
            (bdp > 0).then(|| ((bdp as f64 * PATH_INITIAL_WINDOW) as u64).max(MIN_INITIAL_WINDOW));
        let inner: Arc<dyn congestion::ControllerFactory + Send + Sync> = match self.congestion {
            Congestion::Cubic => {
                let mut c = congestion::CubicConfig::default();
                if let Some(w) = initial {
                    c.initial_window(w);
                }
                Arc::new(c)
            }
            Congestion::NewReno => {
                let mut c = congestion::NewRenoConfig::default();
                if let Some(w) = initial {
                    c.initial_window(w);
                }
                Arc::new(c)
            }
            Congestion::Bbr => {
                let mut c = congestion::BbrConfig::default();
                if let Some(w) = initial {
                    c.initial_window(w);
                }
                Arc::new(c)
            }
        };
        if bdp == 0 {
            return (self.congestion != Congestion::Cubic).then_some(inner);
        }
        let ceiling = ((bdp as f64 * PATH_WINDOW_CEILING) as u64).max(MIN_INITIAL_WINDOW);
        Some(Arc::new(PathCeiling { inner, ceiling }))
    }

    /// The quinn endpoint configuration: the announced `max_udp_payload_size` follows
    /// `mtu_upper_bound` (never below quinn's default of 1472).
    pub fn endpoint_config(&self) -> std::io::Result<EndpointConfig> {
        self.validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut config = EndpointConfig::default();
        config
            .max_udp_payload_size(self.mtu_upper_bound.max(1472))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(config)
    }

    /// A UDP socket bound to `addr` with the buffer sizes asked for, non-blocking.
    pub fn bind_udp(&self, addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Best effort: the kernel caps both at its configured maximum.
        if let Err(e) = socket.set_recv_buffer_size(self.udp_buffer as usize) {
            tracing::debug!("udp receive buffer: {e}");
        }
        if let Err(e) = socket.set_send_buffer_size(self.udp_buffer as usize) {
            tracing::debug!("udp send buffer: {e}");
        }
        if addr.is_ipv6() {
            socket.set_only_v6(false).ok();
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    }

    /// A quinn endpoint on `addr`, serving with `server` if given; fails with `InvalidInput`
    /// on settings [`validate`](Self::validate) refuses.
    pub fn endpoint(
        &self,
        addr: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> std::io::Result<quinn::Endpoint> {
        let config = self.endpoint_config()?;
        let socket = self.bind_udp(addr)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("no async runtime (run inside tokio)"))?;
        quinn::Endpoint::new(config, server, socket, runtime)
    }

    /// A multi-threaded tokio runtime with `runtime_workers` workers (one per core if unset),
    /// for a process that runs a gateway or a client.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = self.runtime_workers {
            builder.worker_threads(n.get());
        }
        builder.enable_all().build()
    }
}

/// Who we are and whom we trust: our certificate, the federation CA, the allowed peers.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Our certificate (naming our cluster id) and key.
    pub identity: Identity,
    /// The federation CA certificates.
    pub ca: Vec<CertificateDer<'static>>,
    /// The peer cluster ids we accept and dial.
    pub allowed: AllowList,
}

impl TlsSettings {
    /// The settings from PEM files: our certificate and key, the CA, and the allowed ids.
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
        allowed: AllowList,
    ) -> Result<Self, TlsError> {
        Ok(TlsSettings {
            identity: Identity::read(cert, key)?,
            ca: crate::certs::read_certs(ca)?,
            allowed,
        })
    }

    /// Our cluster id, from our certificate.
    pub fn cluster_id(&self) -> Result<String, TlsError> {
        tls::cluster_id_of(&self.identity.cert_der()?)
    }

    /// The quinn server configuration.
    pub fn quinn_server(
        &self,
        transport: Arc<TransportConfig>,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let tls = tls::server_config(
            self.identity.cert_chain()?,
            self.identity.key_der()?,
            &self.ca,
            self.allowed.clone(),
        )?;
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }

    /// The quinn client configuration.
    pub fn quinn_client(
        &self,
        transport: Arc<TransportConfig>,
    ) -> Result<quinn::ClientConfig, TlsError> {
        let tls = tls::client_config(
            self.identity.cert_chain()?,
            self.identity.key_der()?,
            &self.ca,
        )?;
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }
}

/// Everything a gateway needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen (UDP), such as `0.0.0.0:7443`.
    pub listen: SocketAddr,
    /// Identity, trust and allow-list.
    pub tls: TlsSettings,
    /// Timeouts of every wait.
    pub timeouts: Timeouts,
    /// Header and object size limits.
    pub limits: WireLimits,
    /// QUIC tuning.
    pub transport: TransportTuning,
    /// How many recently delivered message ids are remembered to drop retried duplicates.
    pub dedup_window: usize,
    /// How many times an idempotent request to a peer is tried before giving up.
    pub max_attempts: u32,
    /// How long a put whose connection was cut keeps its reservation (and the bytes received)
    /// for its client to resume it, counted from when the gateway notices the cut (at most
    /// `timeouts.idle` after it); after it, the reservation is freed. Zero: a cut frees it at
    /// once.
    pub resume_grace: Duration,
    /// The clock leases are read with when they cross the wire (what is left of a lease is
    /// sent as a duration): the served store's clock.
    pub clock: Arc<dyn Clock>,
}

/// The default [`GatewayConfig::resume_grace`]: 30 s.
pub const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(30);

impl GatewayConfig {
    /// A configuration with defaults for everything but the address and TLS settings.
    pub fn new(listen: SocketAddr, tls: TlsSettings) -> Self {
        GatewayConfig {
            listen,
            tls,
            timeouts: Timeouts::default(),
            limits: WireLimits::default(),
            transport: TransportTuning::default(),
            dedup_window: 100_000,
            max_attempts: 3,
            resume_grace: DEFAULT_RESUME_GRACE,
            clock: gos_store::system_clock(),
        }
    }
}

/// Everything a client of one gateway needs (a [`RemoteStore`](crate::RemoteStore), or a
/// gateway dialling a peer).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The gateway's address.
    pub addr: SocketAddr,
    /// The gateway's cluster id: its certificate must name it.
    pub cluster: String,
    /// Our identity and trust; `allowed` must contain `cluster`.
    pub tls: TlsSettings,
    /// Timeouts of every wait.
    pub timeouts: Timeouts,
    /// Header and object size limits.
    pub limits: WireLimits,
    /// QUIC tuning.
    pub transport: TransportTuning,
    /// How many times an idempotent request is tried before giving up.
    pub max_attempts: u32,
    /// Bytes of buffers that received objects (gets) are kept in for reuse once their `Bytes`
    /// are dropped, so that a client reading a model every round does not fault fresh pages
    /// each time (default 512 MiB; 0 keeps none).
    pub pool_bytes: u64,
    /// The clock that turns a lease left (a duration on the wire) into a deadline.
    pub clock: Arc<dyn Clock>,
}

impl ClientConfig {
    /// A configuration with defaults for everything but the peer and TLS settings.
    pub fn new(addr: SocketAddr, cluster: impl Into<String>, tls: TlsSettings) -> Self {
        ClientConfig {
            addr,
            cluster: cluster.into(),
            tls,
            timeouts: Timeouts::default(),
            limits: WireLimits::default(),
            transport: TransportTuning::default(),
            max_attempts: 3,
            pool_bytes: 512 << 20,
            clock: gos_store::system_clock(),
        }
    }
}
