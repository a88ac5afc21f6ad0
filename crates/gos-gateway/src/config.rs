//! Configuration of gateways and remote-store clients: identity, trust, limits, timeouts and
//! the QUIC transport tuned for bulk transfer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gos_store::Clock;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{EndpointConfig, IdleTimeout, TransportConfig, VarInt};
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

/// QUIC tuning for bulk transfer.
///
/// The stream window bounds what one stream may have in flight, unread, at the receiver; the
/// connection window bounds all streams together. Large windows keep a fast link busy while
/// the receiver is slow for a moment. quinn-proto before 0.11.19 failed such connections with
/// "too many gaps in stream buffer" once a lagging reader let more than ~2048 packets of one
/// stream pile up (quinn issue #2809, fixed by PR #2814, released in 0.11.19, which this crate
/// requires); with an older quinn-proto keep `stream_window` under about 2 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportTuning {
    /// Per-stream receive window, in bytes.
    pub stream_window: u32,
    /// Per-connection receive window, in bytes.
    pub connection_window: u32,
    /// Per-connection send buffer, in bytes.
    pub send_window: u32,
    /// Requested UDP socket send and receive buffer sizes, in bytes (the kernel caps them at
    /// `net.core.rmem_max` / `wmem_max`).
    pub udp_buffer: u32,
    /// Concurrent requests (bidirectional streams) one peer may have open.
    pub max_concurrent_streams: u32,
}

impl Default for TransportTuning {
    /// 16 MiB per stream, 64 MiB per connection and for sending, 8 MiB UDP buffers, 64
    /// concurrent requests.
    fn default() -> Self {
        TransportTuning {
            stream_window: 16 << 20,
            connection_window: 64 << 20,
            send_window: 64 << 20,
            udp_buffer: 8 << 20,
            max_concurrent_streams: 64,
        }
    }
}

impl TransportTuning {
    /// The quinn transport configuration for these settings and `timeouts`.
    pub fn transport_config(&self, timeouts: &Timeouts) -> TransportConfig {
        let mut t = TransportConfig::default();
        t.stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(u64::from(self.send_window))
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .max_idle_timeout(IdleTimeout::try_from(timeouts.idle).ok())
            .keep_alive_interval(Some(timeouts.idle / 3));
        t
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

    /// A quinn endpoint on `addr`, serving with `server` if given.
    pub fn endpoint(
        &self,
        addr: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> std::io::Result<quinn::Endpoint> {
        let socket = self.bind_udp(addr)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("no async runtime (run inside tokio)"))?;
        quinn::Endpoint::new(EndpointConfig::default(), server, socket, runtime)
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
    /// The clock leases are read with when they cross the wire (what is left of a lease is
    /// sent as a duration): the served store's clock.
    pub clock: Arc<dyn Clock>,
}

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
