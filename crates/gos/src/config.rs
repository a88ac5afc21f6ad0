//! The TOML configuration of a cluster: its store, its topology, its bus, (feature `gateway`)
//! its gateway, and the metrics endpoint of `gos serve`. Parsing validates everything a typo
//! could break. Every field, its type and its default: `docs/config.md`.
//!
//! Sizes are [`ByteSize`] (`"2GiB"`, `"1.5 MiB"`, `"100mb"`, or a number of bytes; units are
//! case-insensitive, `KiB`/`MiB`/`GiB` are powers of 1024 and `KB`/`MB`/`GB` of 1000).
//! Durations are written as `"5s"`, `"250ms"`, `"1m 30s"` (humantime).
//!
//! ```toml
//! fed_id = "my_experiment"
//! cluster_id = "cluster-a"
//!
//! [store]
//! backend = "shm"            # "memory" (default), "shm" or "redis" (feature `redis`)
//! name = "cluster-a"         # shm: the store's name in /dev/shm
//! capacity = "2GiB"          # shm: the file is about twice this (see `arena`)
//! max_value_size = "512MiB"
//! max_entries = 4096
//! # urls = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]  # redis: the servers
//!
//! [topology]
//! kind = "ring"              # ring | star | full | k_connected | custom
//! nodes = 8
//! # hub = 0 (star), k = 3 and seed = 1 (k_connected), csv = "graph.csv" (custom)
//! # clusters = ["cluster-a", "cluster-a", ...]  # the cluster of each node (hybrid)
//!
//! [bus]
//! mailbox_capacity = 1024
//! publish_timeout = "5s"
//! # lease = "3m"             # how long a shared model waits for its readers (default 3 min)
//!
//! [gateway]                  # optional
//! listen = "127.0.0.1:7400"  # or "gateway.example.org:7400"
//! ca = "certs/ca.pem"
//! cert = "certs/cluster-a.pem"
//! key = "certs/cluster-a.key"
//! allow = ["cluster-b"]
//! peers = [{ cluster = "cluster-b", addr = "127.0.0.1:7401" }]
//!
//! [gateway.timeouts]         # optional, as are [gateway.limits] and [gateway.transport]
//! io = "10s"
//!
//! [metrics]                  # optional: a Prometheus endpoint on `gos serve`
//! listen = "127.0.0.1:9400"
//! ```

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gos_store::Limits;
use gos_topology::{ManagerConfig, NodeId, Topology, TopologyError};
use serde::{Deserialize, Deserializer};

pub use bytesize::ByteSize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for a cluster (unknown field, wrong type, bad size...).
    #[error("invalid configuration{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, when there is one.
        path: Option<PathBuf>,
        /// What is wrong, with the line and column.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The topology section describes an impossible graph.
    #[error("invalid topology: {0}")]
    Topology(#[from] TopologyError),
    /// The configuration needs a cargo feature this build does not have.
    #[error("{what} needs the `{feature}` feature of the `gos` crate")]
    FeatureDisabled {
        /// What needed it.
        what: &'static str,
        /// The feature.
        feature: &'static str,
    },
}

/// A cluster's configuration, as read from TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The federation id: the first segment of every key.
    pub fed_id: String,
    /// This cluster's id (matches its gateway certificate).
    #[serde(default = "default_cluster_id")]
    pub cluster_id: String,
    /// The object store.
    #[serde(default)]
    pub store: StoreConfig,
    /// The topology of the federation.
    pub topology: TopologyConfig,
    /// The bus (mailboxes).
    #[serde(default)]
    pub bus: BusConfig,
    /// The gateway to other clusters, if any.
    #[serde(default)]
    pub gateway: Option<GatewayConfig>,
    /// The Prometheus endpoint of `gos serve`, if any.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

fn default_cluster_id() -> String {
    "local".to_owned()
}

/// Which backend, and its limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The backend.
    #[serde(default)]
    pub backend: Backend,
    /// The store's name (shared memory: the file in `/dev/shm`; Redis: the namespace every key
    /// starts with, default `gos`).
    #[serde(default)]
    pub name: Option<String>,
    /// Capacity: the bytes of live values the store holds at most (`"2GiB"`, `"512MiB"` or a
    /// number). A shared-memory store's file is its arena, twice this by default.
    #[serde(default = "default_capacity", deserialize_with = "de_size")]
    pub capacity: ByteSize,
    /// The largest value (default: the capacity).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub max_value_size: Option<ByteSize>,
    /// The most keys held at once.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Shared memory: the size of the arena values live in, all of it allocated at create
    /// (default: twice the capacity plus 64 bytes per object record, room for an overwrite
    /// while readers pin the old value).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub arena: Option<ByteSize>,
    /// Shared memory: how many handles (processes, or opens) may use the store at once
    /// (default 64).
    #[serde(default)]
    pub max_processes: Option<u32>,
    /// Shared memory: how many objects (live, pinned after a delete, or reserved) the store
    /// can track (default `min(2 * max_entries + 64, 4096)`).
    #[serde(default)]
    pub max_objects: Option<u32>,
    /// Redis: the servers' `redis://` or `rediss://` URLs (user and password in the URL). One
    /// URL opens a standalone server, or the cluster it belongs to; several open a cluster.
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// Redis: how long one command may take (default: `gos-store-redis`'s, 30 s).
    #[serde(default, with = "humantime_serde")]
    pub response_timeout: Option<Duration>,
    /// Redis: how long connecting may take (default 5 s).
    #[serde(default, with = "humantime_serde")]
    pub connection_timeout: Option<Duration>,
    /// Redis: how long a chunked put or a reservation may take before its charge is dropped
    /// (default 10 min).
    #[serde(default, with = "humantime_serde")]
    pub reservation_ttl: Option<Duration>,
    /// Redis: the hash slots objects are spread over, fixed when the namespace is created
    /// (default 32).
    #[serde(default)]
    pub buckets: Option<u32>,
    /// Redis: the size of the chunks a large value is sent in (default 256 MiB).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub chunk_size: Option<ByteSize>,
}

fn default_capacity() -> ByteSize {
    ByteSize(Limits::default().capacity_bytes)
}

fn default_max_entries() -> u64 {
    4096
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::default(),
            name: None,
            capacity: default_capacity(),
            max_value_size: None,
            max_entries: default_max_entries(),
            arena: None,
            max_processes: None,
            max_objects: None,
            urls: None,
            response_timeout: None,
            connection_timeout: None,
            reservation_ttl: None,
            buckets: None,
            chunk_size: None,
        }
    }
}

impl StoreConfig {
    /// The limits these settings describe.
    pub fn limits(&self) -> Limits {
        Limits::with_capacity(self.capacity.0)
            .max_value_size(self.max_value_size.map_or(self.capacity.0, |s| s.0))
            .max_entries(self.max_entries)
    }
}

impl StoreConfig {
    /// Refuses the settings of another backend than the chosen one, and checks the Redis
    /// settings (with feature `redis`, as `gos-store-redis` checks them).
    fn validate_backend_fields(&self) -> Result<(), ConfigError> {
        let shm_only = [
            ("arena", self.arena.is_some()),
            ("max_processes", self.max_processes.is_some()),
            ("max_objects", self.max_objects.is_some()),
        ];
        let redis_only = [
            ("urls", self.urls.is_some()),
            ("response_timeout", self.response_timeout.is_some()),
            ("connection_timeout", self.connection_timeout.is_some()),
            ("reservation_ttl", self.reservation_ttl.is_some()),
            ("buckets", self.buckets.is_some()),
            ("chunk_size", self.chunk_size.is_some()),
        ];
        let fields = shm_only
            .iter()
            .map(|f| (f, Backend::Shm, "shm"))
            .chain(redis_only.iter().map(|f| (f, Backend::Redis, "redis")));
        for ((field, set), owner, name) in fields {
            if *set && self.backend != owner {
                return Err(ConfigError::Invalid(format!(
                    "store.{field} applies to the {name} backend only"
                )));
            }
        }
        if self.backend == Backend::Redis {
            let urls = self.urls.as_deref().unwrap_or_default();
            if urls.is_empty() {
                return Err(ConfigError::Invalid(
                    "store.urls is required for the redis backend (such as [\"redis://127.0.0.1:6379\"])"
                        .into(),
                ));
            }
            if let Some(url) = urls
                .iter()
                .find(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
            {
                return Err(ConfigError::Invalid(format!(
                    "store.urls: `{}` is not a redis:// or rediss:// url",
                    url.escape_debug()
                )));
            }
            #[cfg(feature = "redis")]
            crate::cluster::redis_config(self)
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("store: {e}")))?;
        }
        Ok(())
    }
}

/// A store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In-process memory (`MemoryStore`).
    #[default]
    Memory,
    /// Host-wide shared memory (`ShmStore`).
    Shm,
    /// A Redis server or a Redis Cluster (`RedisStore`, feature `redis`).
    Redis,
}

/// The topology section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    /// The kind of graph.
    pub kind: TopologyKindConfig,
    /// Number of nodes (not for `custom`, which takes it from the CSV).
    #[serde(default)]
    pub nodes: Option<usize>,
    /// The hub of a star.
    #[serde(default)]
    pub hub: Option<u32>,
    /// The degree of a k-connected graph.
    #[serde(default)]
    pub k: Option<usize>,
    /// The seed of a k-connected graph.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The adjacency matrix file of a custom graph.
    #[serde(default)]
    pub csv: Option<PathBuf>,
    /// The cluster of every node, in node order, for a federation spread over several
    /// clusters (needs a `[gateway]` section).
    #[serde(default)]
    pub clusters: Option<Vec<String>>,
}

/// The kinds of graph a configuration can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologyKindConfig {
    /// Each node sends to the next and the previous.
    Ring,
    /// A hub and spokes.
    Star,
    /// Everyone sends to everyone.
    Full,
    /// Random k-regular, seeded.
    KConnected,
    /// An adjacency matrix from a CSV file.
    Custom,
}

impl TopologyConfig {
    /// Builds the graph; relative CSV paths are taken from `base`.
    pub fn build(&self, base: &Path) -> Result<Topology, ConfigError> {
        let nodes = || {
            self.nodes.ok_or_else(|| {
                ConfigError::Invalid("topology.nodes is required for this kind".into())
            })
        };
        Ok(match self.kind {
            TopologyKindConfig::Ring => Topology::ring(nodes()?)?,
            TopologyKindConfig::Full => Topology::full(nodes()?)?,
            TopologyKindConfig::Star => Topology::star(nodes()?, NodeId(self.hub.unwrap_or(0)))?,
            TopologyKindConfig::KConnected => {
                let k = self.k.ok_or_else(|| {
                    ConfigError::Invalid("topology.k is required for k_connected".into())
                })?;
                Topology::k_connected(nodes()?, k, self.seed.unwrap_or(0))?
            }
            TopologyKindConfig::Custom => {
                let csv = self.csv.as_ref().ok_or_else(|| {
                    ConfigError::Invalid("topology.csv is required for custom".into())
                })?;
                Topology::from_csv(base.join(csv))?
            }
        })
    }
}

/// The bus section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Messages a mailbox holds before publishers wait.
    #[serde(default = "default_mailbox")]
    pub mailbox_capacity: usize,
    /// How long a publish waits on a full mailbox (`"5s"`; default 5 s).
    #[serde(default, with = "humantime_serde")]
    pub publish_timeout: Option<Duration>,
    /// The same, in milliseconds: the older spelling, still read (not with `publish_timeout`).
    #[serde(default)]
    pub publish_timeout_ms: Option<u64>,
    /// How long a shared model lives at most, released or not: the safety net for readers
    /// that die before releasing (docs/lifecycle.md); `"3m"`. Default
    /// [`DEFAULT_LEASE`](crate::DEFAULT_LEASE), three gather timeouts.
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    /// The same, in milliseconds (not with `lease`).
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

fn default_mailbox() -> usize {
    ManagerConfig::default().mailbox_capacity
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            mailbox_capacity: default_mailbox(),
            publish_timeout: None,
            publish_timeout_ms: None,
            lease: None,
            lease_ms: None,
        }
    }
}

impl BusConfig {
    /// How long a publish waits on a full mailbox: `publish_timeout`, or
    /// `publish_timeout_ms`, or the default (5 s).
    pub fn publish_timeout(&self) -> Duration {
        self.publish_timeout
            .or(self.publish_timeout_ms.map(Duration::from_millis))
            .unwrap_or(ManagerConfig::default().publish_timeout)
    }

    /// The manager settings these describe.
    pub fn manager_config(&self) -> ManagerConfig {
        ManagerConfig {
            mailbox_capacity: self.mailbox_capacity,
            publish_timeout: self.publish_timeout(),
            ..ManagerConfig::default()
        }
    }

    /// The lease of shared models (`lease`, `lease_ms`, or
    /// [`DEFAULT_LEASE`](crate::DEFAULT_LEASE)).
    pub fn lease(&self) -> Duration {
        self.lease
            .or(self.lease_ms.map(Duration::from_millis))
            .unwrap_or(crate::DEFAULT_LEASE)
    }
}

/// The gateway section: where to listen, the certificates, who may talk to us, and the
/// transfer settings (timeouts, wire limits, QUIC tuning).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The UDP address to listen on (`HOST:PORT`; a host name is resolved at start).
    pub listen: HostPort,
    /// The federation CA certificate (PEM).
    pub ca: PathBuf,
    /// This cluster's certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// This cluster's private key (PEM).
    pub key: PathBuf,
    /// Cluster ids allowed to connect.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Other clusters' gateways.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// How many recently delivered message ids are remembered to drop retried duplicates.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: usize,
    /// How many times an idempotent request to a peer is tried before giving up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long a put cut with its connection keeps its reservation (and the bytes received)
    /// for its client to resume it, from when the gateway notices the cut; `"0s"` frees it
    /// at once.
    #[serde(default = "default_resume_grace", with = "humantime_serde")]
    pub resume_grace: Duration,
    /// How long each network wait may take.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Sizes checked before anything is read.
    #[serde(default)]
    pub limits: WireLimitsConfig,
    /// QUIC tuning for bulk transfer.
    #[serde(default)]
    pub transport: TransportConfig,
    /// Roles of allowed identities (`id = "peer" | "read-write" | "read-only" | "admin"`); an
    /// id listed here is allowed with that role. An allowed id without one is a peer cluster:
    /// it acts only for its own nodes of a hybrid topology (see docs/icrf.md, "Roles").
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, String>,
}

fn default_dedup_window() -> usize {
    100_000
}

fn default_max_attempts() -> u32 {
    3
}

/// `gos_gateway::DEFAULT_RESUME_GRACE` (the gateway crate is an optional dependency; a test
/// checks the two agree).
fn default_resume_grace() -> Duration {
    Duration::from_secs(30)
}

/// `[gateway.timeouts]`: every wait on the network is bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Establishing a connection (QUIC and TLS handshake); default 5 s.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Each single read or write on a stream, and handing a message to a mailbox; default
    /// 10 s.
    #[serde(with = "humantime_serde")]
    pub io: Duration,
    /// A connection with no packet from its peer for this long is dead; default 30 s.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: Duration::from_secs(5),
            io: Duration::from_secs(10),
            idle: Duration::from_secs(30),
        }
    }
}

/// `[gateway.limits]`: sizes checked before anything is read or allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WireLimitsConfig {
    /// The largest request header a gateway reads; default 256 KiB.
    #[serde(deserialize_with = "de_size")]
    pub max_request_header: ByteSize,
    /// The largest response header a client reads (a key listing can be long); default
    /// 64 MiB.
    #[serde(deserialize_with = "de_size")]
    pub max_response_header: ByteSize,
    /// The largest object accepted on the wire, either way; default 4 GiB.
    #[serde(deserialize_with = "de_size")]
    pub max_object: ByteSize,
    /// The slowest transfer accepted, per second: a whole request must finish within
    /// `timeouts.io + len / min_rate`; default 1 MiB (per second).
    #[serde(deserialize_with = "de_size")]
    pub min_rate: ByteSize,
    /// Connections one identity may hold at once; default 32.
    pub max_connections_per_peer: u32,
    /// Connections the gateway accepts in all; default 1024.
    pub max_connections: u32,
    /// Object bytes one identity may have in flight at once; default 4 GiB.
    #[serde(deserialize_with = "de_size")]
    pub max_in_flight_per_peer: ByteSize,
}

impl Default for WireLimitsConfig {
    fn default() -> Self {
        WireLimitsConfig {
            max_request_header: ByteSize(256 << 10),
            max_response_header: ByteSize(64 << 20),
            max_object: ByteSize(4 << 30),
            min_rate: ByteSize(1 << 20),
            max_connections_per_peer: 32,
            max_connections: 1024,
            max_in_flight_per_peer: ByteSize(4 << 30),
        }
    }
}

/// `[gateway.transport]`: QUIC tuning for bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Per-stream receive window; default 16 MiB.
    #[serde(deserialize_with = "de_size")]
    pub stream_window: ByteSize,
    /// Per-connection receive window; default 64 MiB.
    #[serde(deserialize_with = "de_size")]
    pub connection_window: ByteSize,
    /// Per-connection send buffer; default 64 MiB.
    #[serde(deserialize_with = "de_size")]
    pub send_window: ByteSize,
    /// Requested UDP socket buffer sizes (the kernel caps them); default 8 MiB.
    #[serde(deserialize_with = "de_size")]
    pub udp_buffer: ByteSize,
    /// Concurrent requests (streams) one peer may have open; default 64.
    pub max_concurrent_streams: u32,
    /// The largest UDP payload MTU discovery probes for (1200 to 6550); default 6500
    /// (docs/transport.md).
    pub mtu_upper_bound: u16,
    /// The path's rate in bits per second: the windows are sized to its bandwidth-delay
    /// product, and the congestion controller starts at half of it and is held to 1.5 times it
    /// in flight (so a rate set far below the real one caps transfers at about 1.5x it);
    /// default none (windows as configured, the controller's own start and window).
    pub path_rate_bps: Option<u64>,
    /// The path's round-trip time, for the bandwidth-delay product; default 50 ms.
    #[serde(with = "humantime_serde")]
    pub path_rtt: Duration,
    /// The congestion controller: `"cubic"` (default), `"new-reno"` or `"bbr"`.
    pub congestion: CongestionName,
    /// Worker threads of the runtime `gos serve` builds; default one per core.
    pub runtime_workers: Option<usize>,
}

/// The congestion controllers `[gateway.transport] congestion` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CongestionName {
    /// CUBIC, quinn's default.
    #[default]
    Cubic,
    /// NewReno.
    NewReno,
    /// BBR (experimental in quinn): keeps a long lossy path busy.
    Bbr,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            stream_window: ByteSize(16 << 20),
            connection_window: ByteSize(64 << 20),
            send_window: ByteSize(64 << 20),
            udp_buffer: ByteSize(8 << 20),
            max_concurrent_streams: 64,
            mtu_upper_bound: 6500,
            path_rate_bps: None,
            path_rtt: Duration::from_millis(50),
            congestion: CongestionName::Cubic,
            runtime_workers: None,
        }
    }
}

/// Another cluster's gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its cluster id.
    pub cluster: String,
    /// Its gateway address (`HOST:PORT`; a host name is resolved when the cluster starts).
    pub addr: HostPort,
}

/// `[metrics]`: the Prometheus text endpoint of `gos serve`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The TCP address to serve `GET /metrics` on (`HOST:PORT`, port 0: any free port).
    pub listen: HostPort,
}

/// A `HOST:PORT` address: an IP address (`[::1]:7400` for IPv6) or a host name, resolved
/// when it is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort(String);

impl HostPort {
    /// Checks the shape `HOST:PORT` (a port number after the last `:`, a non-empty host).
    pub fn new(text: impl Into<String>) -> Result<Self, ConfigError> {
        let text = text.into();
        let bad = || {
            ConfigError::Invalid(format!(
                "`{}` is not HOST:PORT (such as \"127.0.0.1:7400\" or \"gw.example.org:7400\")",
                text.escape_debug()
            ))
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() || host.chars().any(char::is_whitespace)
        {
            return Err(bad());
        }
        // A bare IPv6 address needs brackets: `::1:7400` is ambiguous.
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(bad());
        }
        Ok(HostPort(text))
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first address the host resolves to (an IP address resolves to itself).
    pub fn resolve(&self) -> Result<SocketAddr, ConfigError> {
        if let Ok(addr) = self.0.parse() {
            return Ok(addr);
        }
        self.0
            .to_socket_addrs()
            .map_err(|e| ConfigError::Invalid(format!("cannot resolve `{}`: {e}", self.0)))?
            .next()
            .ok_or_else(|| ConfigError::Invalid(format!("`{}` resolves to no address", self.0)))
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        HostPort(addr.to_string())
    }
}

impl std::str::FromStr for HostPort {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        HostPort::new(s)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HostPort::new(text).map_err(|e| match e {
            ConfigError::Invalid(m) => serde::de::Error::custom(m),
            other => serde::de::Error::custom(other),
        })
    }
}

/// Parses a size: a number of bytes, or a number (decimals allowed) and a unit, case
/// insensitive: `B`, `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), `KB`/`MB`/`GB`/`TB` (powers
/// of 1000). Refuses what does not fit in 64 bits (where [`ByteSize`]'s own parser would
/// saturate).
pub fn parse_size(text: &str) -> Result<ByteSize, String> {
    let text = text.trim();
    let size: ByteSize = text.parse().map_err(|_| {
        format!("`{text}` is not a size (such as \"512MiB\", \"1.5GiB\", \"100mb\")")
    })?;
    // bytesize saturates on overflow: anything at u64::MAX that was not written as that
    // number overflowed.
    if size.0 == u64::MAX && text != u64::MAX.to_string() {
        return Err(format!("`{text}` does not fit in 64 bits"));
    }
    Ok(size)
}

/// Formats a size for people: `256.0 MiB`, `512 B`.
pub fn fmt_size(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Number(u64),
    Text(String),
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    match RawSize::deserialize(d)? {
        RawSize::Number(n) => Ok(ByteSize(n)),
        RawSize::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    de_size(d).map(Some)
}

impl ClusterConfig {
    /// Parses a configuration from TOML text and checks it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, None)
    }

    /// Reads and parses a configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.map(Path::to_owned),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        gos_store::ObjectKey::round(&self.fed_id, "node_0", 0)
            .map_err(|e| ConfigError::Invalid(format!("fed_id `{}`: {e}", self.fed_id)))?;
        if self.store.backend == Backend::Shm && self.store.name.is_none() {
            return Err(ConfigError::Invalid(
                "store.name is required for the shm backend".into(),
            ));
        }
        if let Some(max) = self.store.max_value_size
            && max.0 > self.store.capacity.0
        {
            return Err(ConfigError::Invalid(format!(
                "store.max_value_size ({max}) is larger than store.capacity ({})",
                self.store.capacity
            )));
        }
        self.store.validate_backend_fields()?;
        if let Some(arena) = self.store.arena
            && arena.0 < self.store.capacity.0
        {
            return Err(ConfigError::Invalid(format!(
                "store.arena ({arena}) is smaller than store.capacity ({})",
                self.store.capacity
            )));
        }
        if self.bus.mailbox_capacity == 0 {
            return Err(ConfigError::Invalid(
                "bus.mailbox_capacity must be at least 1".into(),
            ));
        }
        if self.bus.publish_timeout.is_some() && self.bus.publish_timeout_ms.is_some() {
            return Err(ConfigError::Invalid(
                "bus.publish_timeout and bus.publish_timeout_ms both set: keep publish_timeout"
                    .into(),
            ));
        }
        if self.bus.lease.is_some() && self.bus.lease_ms.is_some() {
            return Err(ConfigError::Invalid(
                "bus.lease and bus.lease_ms both set: keep lease".into(),
            ));
        }
        if self.bus.lease.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Invalid("bus.lease must be more than 0".into()));
        }
        if self.bus.lease_ms == Some(0) {
            return Err(ConfigError::Invalid(
                "bus.lease_ms must be at least 1".into(),
            ));
        }
        if let Some(gateway) = &self.gateway {
            gateway.validate()?;
        }
        Ok(())
    }
}

impl GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // An id a certificate can never name would never match: a typo, refused here.
        #[cfg(feature = "gateway")]
        for (field, id) in self.allow.iter().map(|id| ("gateway.allow", id)).chain(
            self.peers
                .iter()
                .map(|p| ("gateway.peers.cluster", &p.cluster)),
        ) {
            if !gos_gateway::tls::validate_cluster_id(id) {
                return Err(ConfigError::Invalid(format!(
                    "{field}: `{}` can never match a certificate (an id is 1 to 63 of a-z, 0-9 and `-`, not at either end)",
                    id.escape_debug()
                )));
            }
        }
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let t = &self.timeouts;
        for (field, d) in [("connect", t.connect), ("io", t.io), ("idle", t.idle)] {
            if d.is_zero() || d > DAY {
                return Err(ConfigError::Invalid(format!(
                    "gateway.timeouts.{field} must be more than 0 and at most 24h (it is {})",
                    humantime::format_duration(d)
                )));
            }
        }
        let tr = &self.transport;
        for (field, size) in [
            ("limits.max_request_header", self.limits.max_request_header),
            (
                "limits.max_response_header",
                self.limits.max_response_header,
            ),
            ("transport.stream_window", tr.stream_window),
            ("transport.connection_window", tr.connection_window),
            ("transport.send_window", tr.send_window),
            ("transport.udp_buffer", tr.udp_buffer),
        ] {
            if size.0 == 0 || size.0 > u64::from(u32::MAX) {
                return Err(ConfigError::Invalid(format!(
                    "gateway.{field} must be more than 0 and less than 4 GiB (it is {size})"
                )));
            }
        }
        if self.limits.max_object.0 == 0 {
            return Err(ConfigError::Invalid(
                "gateway.limits.max_object must be more than 0".into(),
            ));
        }
        if tr.max_concurrent_streams == 0 {
            return Err(ConfigError::Invalid(
                "gateway.transport.max_concurrent_streams must be at least 1".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "gateway.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        fed_id = "exp"
        cluster_id = "a"
        [store]
        backend = "shm"
        name = "a"
        capacity = "1GiB"
        max_value_size = "256MiB"
        [topology]
        kind = "k_connected"
        nodes = 8
        k = 3
        seed = 7
        [gateway]
        listen = "127.0.0.1:7400"
        ca = "ca.pem"
        cert = "a.pem"
        key = "a.key"
        allow = ["b"]
        peers = [{ cluster = "b", addr = "127.0.0.1:7401" }]
    "#;

    #[test]
    fn a_full_file_parses() {
        let c = ClusterConfig::from_toml(GOOD).unwrap();
        assert_eq!(c.store.backend, Backend::Shm);
        assert_eq!(c.store.limits().capacity_bytes, 1 << 30);
        assert_eq!(c.store.limits().max_value_size, 256 << 20);
        let t = c.topology.build(Path::new(".")).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(c.gateway.unwrap().peers[0].cluster, "b");
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let cases = [
            (
                "fed_id = \"x\"\n[topology]\nkind = \"ring\"\nnodes = 3\nbogus = 1",
                "unknown field `bogus`",
            ),
            (
                "fed_id = \"x\"\n[topology]\nkind = \"mesh\"\nnodes = 3",
                "unknown variant `mesh`",
            ),
            (
                "fed_id = \"x\"\n[store]\ncapacity = \"12XB\"\n[topology]\nkind = \"ring\"\nnodes = 3",
                "`12XB` is not a size",
            ),
            (
                "fed_id = \"a/b\"\n[topology]\nkind = \"ring\"\nnodes = 3",
                "fed_id `a/b`",
            ),
            (
                "fed_id = \"x\"\n[store]\nbackend = \"shm\"\n[topology]\nkind = \"ring\"\nnodes = 3",
                "store.name is required",
            ),
            (
                "fed_id = \"x\"\n[store]\ncapacity = 10\nmax_value_size = 11\n[topology]\nkind = \"ring\"\nnodes = 3",
                "larger than store.capacity",
            ),
            (
                "[topology]\nkind = \"ring\"\nnodes = 3",
                "missing field `fed_id`",
            ),
            ("fed_id = \"x\"\n[topology", "invalid configuration"),
        ];
        for (text, want) in cases {
            let err = ClusterConfig::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let c = ClusterConfig::from_toml(
            "fed_id = \"x\"\n[topology]\nkind = \"k_connected\"\nnodes = 3",
        )
        .unwrap();
        assert!(
            c.topology
                .build(Path::new("."))
                .unwrap_err()
                .to_string()
                .contains("topology.k is required")
        );
        let c = ClusterConfig::from_toml(
            "fed_id = \"x\"\n[topology]\nkind = \"k_connected\"\nnodes = 3\nk = 3",
        )
        .unwrap();
        assert!(matches!(
            c.topology.build(Path::new(".")),
            Err(ConfigError::Topology(_))
        ));
        let err = ClusterConfig::from_file("/nonexistent/gos.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/gos.toml"),
            "{err}"
        );
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("100MiB"), Ok(ByteSize(100 << 20)));
        assert_eq!(parse_size("64 KiB"), Ok(ByteSize(64 << 10)));
        assert_eq!(parse_size("1GB"), Ok(ByteSize(1_000_000_000)));
        // Decimals and case-insensitive units (issue 14: `1.5MiB` and `100mb` were refused).
        assert_eq!(parse_size("1.5MiB"), Ok(ByteSize(3 << 19)));
        assert_eq!(parse_size("100mb"), Ok(ByteSize(100_000_000)));
        assert_eq!(parse_size("2gib"), Ok(ByteSize(2 << 30)));
        assert_eq!(parse_size("4096"), Ok(ByteSize(4096)));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-5MiB").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        assert!(parse_size("1e30GiB").is_err());
        assert_eq!(fmt_size(3 << 30), "3.0 GiB");
        assert_eq!(fmt_size(1000), "1000 B");
        // What is printed reads back.
        for n in [0, 1000, 3 << 30, 256 << 20] {
            assert_eq!(parse_size(&fmt_size(n)), Ok(ByteSize(n)));
        }
    }

    #[test]
    fn durations_and_the_old_millisecond_spelling() {
        let base = "fed_id = \"x\"\n[topology]\nkind = \"ring\"\nnodes = 3\n";
        let c =
            ClusterConfig::from_toml(&format!("{base}[bus]\npublish_timeout = \"250ms\"")).unwrap();
        assert_eq!(
            c.bus.manager_config().publish_timeout,
            Duration::from_millis(250)
        );
        let c =
            ClusterConfig::from_toml(&format!("{base}[bus]\npublish_timeout_ms = 1500")).unwrap();
        assert_eq!(
            c.bus.manager_config().publish_timeout,
            Duration::from_millis(1500)
        );
        let c = ClusterConfig::from_toml(base).unwrap();
        assert_eq!(c.bus.publish_timeout(), Duration::from_secs(5));
        let err = ClusterConfig::from_toml(&format!(
            "{base}[bus]\npublish_timeout = \"1s\"\npublish_timeout_ms = 10"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("both set"), "{err}");
        let err =
            ClusterConfig::from_toml(&format!("{base}[bus]\npublish_timeout = \"5 parsecs\""))
                .unwrap_err();
        assert!(err.to_string().contains("publish_timeout"), "{err}");
    }

    #[test]
    fn every_gateway_setting_is_read() {
        let text = format!(
            "{GOOD}dedup_window = 10\nmax_attempts = 5\nresume_grace = \"2m\"\n\
             [gateway.timeouts]\nconnect = \"1s\"\nio = \"2500ms\"\nidle = \"1m\"\n\
             [gateway.limits]\nmax_request_header = \"64KiB\"\nmax_response_header = \"1MiB\"\nmax_object = \"1.5GiB\"\n\
             [gateway.transport]\nstream_window = \"1MiB\"\nconnection_window = \"4MiB\"\nsend_window = \"2MiB\"\nudp_buffer = \"1MiB\"\nmax_concurrent_streams = 8\n\
             [metrics]\nlisten = \"localhost:9400\"\n"
        );
        let c = ClusterConfig::from_toml(&text).unwrap();
        let g = c.gateway.unwrap();
        assert_eq!(g.dedup_window, 10);
        assert_eq!(g.max_attempts, 5);
        assert_eq!(g.resume_grace, Duration::from_secs(120));
        assert_eq!(g.timeouts.io, Duration::from_millis(2500));
        assert_eq!(g.timeouts.idle, Duration::from_secs(60));
        assert_eq!(g.limits.max_object, ByteSize(3 << 29));
        assert_eq!(g.transport.connection_window, ByteSize(4 << 20));
        assert_eq!(g.transport.max_concurrent_streams, 8);
        assert_eq!(c.metrics.unwrap().listen.as_str(), "localhost:9400");

        for (extra, want) in [
            (
                "[gateway.timeouts]\nio = \"0s\"\n",
                "gateway.timeouts.io must be",
            ),
            (
                "[gateway.limits]\nmax_request_header = \"8GiB\"\n",
                "max_request_header must be",
            ),
            (
                "[gateway.transport]\nmax_concurrent_streams = 0\n",
                "max_concurrent_streams",
            ),
            (
                "[gateway.transport]\nwindow = 1\n",
                "unknown field `window`",
            ),
        ] {
            let err = ClusterConfig::from_toml(&format!("{GOOD}{extra}")).unwrap_err();
            assert!(err.to_string().contains(want), "{extra}: {err}");
        }
    }

    #[test]
    fn host_names_are_accepted_in_listen_and_peers() {
        let text = GOOD
            .replace("listen = \"127.0.0.1:7400\"", "listen = \"localhost:7400\"")
            .replace("addr = \"127.0.0.1:7401\"", "addr = \"localhost:7401\"");
        let c = ClusterConfig::from_toml(&text).unwrap();
        let g = c.gateway.unwrap();
        assert_eq!(g.listen.resolve().unwrap().port(), 7400);
        assert!(g.listen.resolve().unwrap().ip().is_loopback());
        assert_eq!(g.peers[0].addr.resolve().unwrap().port(), 7401);
        assert_eq!(
            HostPort::new("[::1]:7400")
                .unwrap()
                .resolve()
                .unwrap()
                .port(),
            7400
        );
        for bad in ["localhost", ":7400", "host:99999", "::1:7400", "a b:1"] {
            assert!(HostPort::new(bad).is_err(), "{bad}");
        }
        let err = ClusterConfig::from_toml(&GOOD.replace("127.0.0.1:7400", "nowhere")).unwrap_err();
        assert!(err.to_string().contains("is not HOST:PORT"), "{err}");
    }

    #[test]
    fn shm_settings_are_read_and_refused_for_memory() {
        let text = GOOD.replace(
            "max_value_size = \"256MiB\"",
            "max_value_size = \"256MiB\"\narena = \"3GiB\"\nmax_processes = 8\nmax_objects = 100",
        );
        let c = ClusterConfig::from_toml(&text).unwrap();
        assert_eq!(c.store.arena, Some(ByteSize(3 << 30)));
        assert_eq!(c.store.max_processes, Some(8));
        assert_eq!(c.store.max_objects, Some(100));
        let err =
            ClusterConfig::from_toml(&text.replace("backend = \"shm\"", "backend = \"memory\""))
                .unwrap_err();
        assert!(err.to_string().contains("shm backend only"), "{err}");
        let err = ClusterConfig::from_toml(&text.replace("3GiB", "512MiB")).unwrap_err();
        assert!(
            err.to_string().contains("smaller than store.capacity"),
            "{err}"
        );
    }

    const REDIS: &str = r#"
        fed_id = "exp"
        [store]
        backend = "redis"
        name = "exp1"
        urls = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        capacity = "1GiB"
        response_timeout = "1m"
        connection_timeout = "2s"
        reservation_ttl = "5m"
        buckets = 16
        chunk_size = "64MiB"
        [topology]
        kind = "ring"
        nodes = 3
    "#;

    #[test]
    fn redis_settings_are_read_and_refused_for_other_backends() {
        let c = ClusterConfig::from_toml(REDIS).unwrap();
        assert_eq!(c.store.backend, Backend::Redis);
        assert_eq!(c.store.urls.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.store.response_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.store.connection_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.store.reservation_ttl, Some(Duration::from_secs(300)));
        assert_eq!(c.store.buckets, Some(16));
        assert_eq!(c.store.chunk_size, Some(ByteSize(64 << 20)));
        // The Redis settings belong to the redis backend only.
        for backend in ["memory", "shm"] {
            let err = ClusterConfig::from_toml(
                &REDIS.replace("backend = \"redis\"", &format!("backend = \"{backend}\"")),
            )
            .unwrap_err();
            assert!(err.to_string().contains("redis backend only"), "{err}");
        }
        // The shm settings are refused for redis.
        for extra in ["arena = \"2GiB\"", "max_processes = 8", "max_objects = 100"] {
            let err = ClusterConfig::from_toml(&REDIS.replace("buckets = 16", extra)).unwrap_err();
            assert!(
                err.to_string().contains("shm backend only"),
                "{extra}: {err}"
            );
        }
        // The urls are required, and must be redis urls.
        let minimal = "fed_id = \"x\"\n[store]\nbackend = \"redis\"\n[topology]\nkind = \"ring\"\nnodes = 3\n";
        let err = ClusterConfig::from_toml(minimal).unwrap_err();
        assert!(err.to_string().contains("store.urls is required"), "{err}");
        let err = ClusterConfig::from_toml(
            &minimal.replace("backend = \"redis\"", "backend = \"redis\"\nurls = []"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("store.urls is required"), "{err}");
        let err = ClusterConfig::from_toml(&REDIS.replace("redis://127.0.0.1:7001", "http://x"))
            .unwrap_err();
        assert!(
            err.to_string().contains("`http://x` is not a redis"),
            "{err}"
        );
    }

    /// With the store crate at hand, its own checks run when the file is read.
    #[cfg(feature = "redis")]
    #[test]
    fn redis_settings_are_checked_by_the_store_crate_and_mapped_to_its_config() {
        let c = ClusterConfig::from_toml(REDIS).unwrap();
        let r = crate::redis_config(&c.store);
        assert_eq!(r.urls.len(), 2);
        assert_eq!(r.namespace, "exp1");
        assert_eq!(r.limits, c.store.limits());
        assert_eq!(r.response_timeout, Duration::from_secs(60));
        assert_eq!(r.connection_timeout, Duration::from_secs(2));
        assert_eq!(r.reservation_ttl, Duration::from_secs(300));
        assert_eq!((r.buckets, r.chunk_size), (16, 64 << 20));
        // Unset settings keep gos-store-redis's defaults (not copies of them).
        let bare = ClusterConfig::from_toml(
            "fed_id = \"x\"\n[store]\nbackend = \"redis\"\nurls = [\"redis://h:1\"]\n[topology]\nkind = \"ring\"\nnodes = 3\n",
        )
        .unwrap();
        let r = crate::redis_config(&bare.store);
        let d = gos_store_redis::RedisConfig::new(["redis://h:1"]);
        assert_eq!(
            (r.namespace, r.response_timeout, r.buckets, r.chunk_size),
            (d.namespace, d.response_timeout, d.buckets, d.chunk_size)
        );
        for (from, to, want) in [
            ("name = \"exp1\"", "name = \"a{b}\"", "namespace `a{b}`"),
            ("buckets = 16", "buckets = 0", "buckets is 0"),
            (
                "response_timeout = \"1m\"",
                "response_timeout = \"0s\"",
                "response_timeout",
            ),
        ] {
            let err = ClusterConfig::from_toml(&REDIS.replace(from, to)).unwrap_err();
            assert!(err.to_string().contains(want), "{to}: {err}");
        }
    }

    /// Without feature `redis`, a redis store is a typed error naming the feature.
    #[cfg(not(feature = "redis"))]
    #[test]
    fn redis_without_the_feature_is_a_typed_error_naming_it() {
        let c = ClusterConfig::from_toml(REDIS).unwrap();
        let named = |e: crate::GosError| {
            assert!(
                matches!(
                    e,
                    crate::GosError::Config(ConfigError::FeatureDisabled {
                        feature: "redis",
                        ..
                    })
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("`redis` feature"), "{e}");
        };
        named(crate::open_store(&c).unwrap_err());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        named(rt.block_on(crate::open_store_async(&c)).unwrap_err());
    }

    /// The fields a section accepts, read from serde's unknown-field error (so that a field
    /// added to any struct, optional or not, is found without listing it here).
    fn fields_of(section: &str) -> Vec<String> {
        let text = match section {
            "" => "zz_no_such_field = 1\n".to_owned(),
            "gateway.peers" => "[[gateway.peers]]\nzz_no_such_field = 1\n".to_owned(),
            s => format!("[{s}]\nzz_no_such_field = 1\n"),
        };
        let err = ClusterConfig::from_toml(&text).unwrap_err().to_string();
        let (_, expected) = err
            .split_once("expected one of ")
            .or_else(|| err.split_once("expected "))
            .unwrap_or_else(|| panic!("section `{section}`: {err}"));
        let fields: Vec<String> = expected
            .split(", ")
            .flat_map(|f| f.split(" or "))
            .map(|f| f.trim().trim_matches('`').to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        assert!(!fields.is_empty(), "section `{section}`: {err}");
        fields
    }

    #[test]
    fn every_field_is_documented() {
        const SECTIONS: &[&str] = &[
            "",
            "store",
            "topology",
            "bus",
            "gateway",
            "gateway.timeouts",
            "gateway.limits",
            "gateway.transport",
            "gateway.peers",
            "metrics",
        ];
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
                .unwrap();
        let mut known = Vec::new();
        for section in SECTIONS {
            for field in fields_of(section) {
                let path = if section.is_empty() {
                    field.clone()
                } else {
                    format!("{section}.{field}")
                };
                // A field that is a table of its own must be in SECTIONS (walked above).
                let table_like = [
                    "store",
                    "topology",
                    "bus",
                    "gateway",
                    "metrics",
                    "timeouts",
                    "limits",
                    "transport",
                ];
                if table_like.contains(&field.as_str()) {
                    assert!(
                        SECTIONS.contains(&path.as_str()),
                        "section `{path}` not walked"
                    );
                    assert!(
                        docs.contains(&format!("`[{path}]`")),
                        "no heading for `[{path}]`"
                    );
                    continue;
                }
                assert!(
                    docs.contains(&format!("| `{path}` |")),
                    "docs/config.md does not document `{path}`"
                );
                known.push(path);
            }
        }
        // And the page names no field that does not exist.
        for line in docs.lines() {
            if let Some(rest) = line.strip_prefix("| `")
                && let Some((name, _)) = rest.split_once("` |")
                && !name.starts_with("gos_")
            {
                assert!(
                    known.iter().any(|k| k == name),
                    "docs/config.md names `{name}`, which is no field"
                );
            }
        }
    }

    #[cfg(feature = "gateway")]
    #[test]
    fn allow_list_ids_that_can_never_match_are_refused() {
        for (from, to) in [
            ("allow = [\"b\"]", "allow = [\"Cluster_B\"]"),
            ("allow = [\"b\"]", "allow = [\"b.gos\"]"),
            ("cluster = \"b\"", "cluster = \"-b\""),
        ] {
            let err = ClusterConfig::from_toml(&GOOD.replace(from, to)).unwrap_err();
            assert!(err.to_string().contains("can never match"), "{to}: {err}");
        }
    }

    /// The gateway's own defaults and the ones this file documents stay the same.
    #[cfg(feature = "gateway")]
    #[test]
    fn defaults_match_the_gateway_crate() {
        let t = gos_gateway::Timeouts::default();
        let d = TimeoutsConfig::default();
        assert_eq!((d.connect, d.io, d.idle), (t.connect, t.io, t.idle));
        let l = gos_gateway::WireLimits::default();
        let d = WireLimitsConfig::default();
        assert_eq!(
            (
                d.max_request_header.0,
                d.max_response_header.0,
                d.max_object.0
            ),
            (
                u64::from(l.max_request_header),
                u64::from(l.max_response_header),
                l.max_object
            )
        );
        let q = gos_gateway::TransportTuning::default();
        let d = TransportConfig::default();
        assert_eq!(
            (
                d.stream_window.0,
                d.connection_window.0,
                d.send_window.0,
                d.udp_buffer.0
            ),
            (
                u64::from(q.stream_window),
                u64::from(q.connection_window),
                u64::from(q.send_window),
                u64::from(q.udp_buffer)
            )
        );
        assert_eq!(d.max_concurrent_streams, q.max_concurrent_streams);
        let w = gos_gateway::GatewayConfig::new(
            "127.0.0.1:1".parse().unwrap(),
            gos_gateway::TlsSettings {
                identity: gos_gateway::certs::FederationCa::generate("ca")
                    .unwrap()
                    .issue("x")
                    .unwrap(),
                ca: Vec::new(),
                allowed: gos_gateway::AllowList::new(["y"]),
            },
        );
        assert_eq!(w.dedup_window, default_dedup_window());
        assert_eq!(w.max_attempts, default_max_attempts());
        assert_eq!(w.resume_grace, default_resume_grace());
    }
}
