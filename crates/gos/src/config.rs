//! The TOML configuration of a cluster: its store, its topology, its bus and (feature
//! `gateway`) its gateway. Parsing validates everything a typo could break.
//!
//! ```toml
//! fed_id = "my_experiment"
//! cluster_id = "cluster-a"
//!
//! [store]
//! backend = "shm"            # "memory" (default) or "shm"
//! name = "cluster-a"         # shm: the store's name in /dev/shm
//! capacity = "2GiB"
//! max_value_size = "512MiB"
//! max_entries = 4096
//!
//! [topology]
//! kind = "ring"              # ring | star | full | k_connected | custom
//! nodes = 8
//! # hub = 0 (star), k = 3 and seed = 1 (k_connected), csv = "graph.csv" (custom)
//! # clusters = ["cluster-a", "cluster-a", ...]  # the cluster of each node (hybrid)
//!
//! [bus]
//! mailbox_capacity = 1024
//! publish_timeout_ms = 5000
//! # lease_ms = 180000       # how long a shared model waits for its readers (default 3 min)
//!
//! [gateway]                  # optional
//! listen = "127.0.0.1:7400"
//! ca = "certs/ca.pem"
//! cert = "certs/cluster-a.pem"
//! key = "certs/cluster-a.key"
//! allow = ["cluster-b"]
//! peers = [{ cluster = "cluster-b", addr = "127.0.0.1:7401" }]
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use gos_store::Limits;
use gos_topology::{ManagerConfig, NodeId, Topology, TopologyError};
use serde::{Deserialize, Deserializer};

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
    /// The store's name (shared memory: the file in `/dev/shm`).
    #[serde(default)]
    pub name: Option<String>,
    /// Capacity in bytes (`"2GiB"`, `"512MiB"` or a number).
    #[serde(default = "default_capacity")]
    pub capacity: ByteSize,
    /// The largest value (default: the capacity).
    #[serde(default)]
    pub max_value_size: Option<ByteSize>,
    /// The most keys held at once.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
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

/// A store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In-process memory (`MemoryStore`).
    #[default]
    Memory,
    /// Host-wide shared memory (`ShmStore`).
    Shm,
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
    /// How long a publish waits on a full mailbox, in milliseconds.
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,
    /// How long a shared model lives at most, in milliseconds, released or not: the safety net
    /// for readers that die before releasing (docs/lifecycle.md). Default
    /// [`DEFAULT_LEASE`](crate::DEFAULT_LEASE), three gather timeouts.
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

fn default_mailbox() -> usize {
    ManagerConfig::default().mailbox_capacity
}

fn default_publish_timeout_ms() -> u64 {
    ManagerConfig::default().publish_timeout.as_millis() as u64
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            mailbox_capacity: default_mailbox(),
            publish_timeout_ms: default_publish_timeout_ms(),
            lease_ms: None,
        }
    }
}

impl BusConfig {
    /// The manager settings these describe.
    pub fn manager_config(&self) -> ManagerConfig {
        ManagerConfig {
            mailbox_capacity: self.mailbox_capacity,
            publish_timeout: Duration::from_millis(self.publish_timeout_ms),
            ..ManagerConfig::default()
        }
    }

    /// The lease of shared models (`lease_ms`, or [`DEFAULT_LEASE`](crate::DEFAULT_LEASE)).
    pub fn lease(&self) -> Duration {
        self.lease_ms
            .map_or(crate::DEFAULT_LEASE, Duration::from_millis)
    }
}

/// The gateway section: where to listen, the certificates, who may talk to us.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The UDP address to listen on.
    pub listen: SocketAddr,
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
}

/// Another cluster's gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its cluster id.
    pub cluster: String,
    /// Its gateway address.
    pub addr: SocketAddr,
}

/// A size in bytes, written as a number or with a unit: `"64KiB"`, `"100MiB"`, `"2GiB"`,
/// `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size (try \"512MiB\")"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => return Err(format!("unknown size unit `{other}` in `{s}`")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` overflows 64 bits"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
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
        if self.bus.mailbox_capacity == 0 {
            return Err(ConfigError::Invalid(
                "bus.mailbox_capacity must be at least 1".into(),
            ));
        }
        if self.bus.lease_ms == Some(0) {
            return Err(ConfigError::Invalid(
                "bus.lease_ms must be at least 1".into(),
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
                "unknown size unit `XB`",
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
        assert_eq!("100MiB".parse::<ByteSize>(), Ok(ByteSize(100 << 20)));
        assert_eq!("64 KiB".parse::<ByteSize>(), Ok(ByteSize(64 << 10)));
        assert_eq!("1GB".parse::<ByteSize>(), Ok(ByteSize(1_000_000_000)));
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("99999999999999GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(3 << 30).to_string(), "3GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
