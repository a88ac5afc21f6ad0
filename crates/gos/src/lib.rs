//! GOS, the Global Object Store: move model weights between the nodes of a federated or
//! distributed training job through an object store, and only their keys through the bus.
//!
//! This is the facade: it re-exports the parts behind features and adds what a training loop
//! wants, [`FederatedNode`] (share, gather, release, with a defined delete rule) and building a
//! cluster from a TOML file ([`ClusterConfig`], [`Cluster`]).
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`MemoryStore`] (`gos-store-memory`): in-process, zero-copy |
//! | `shm` | no | `ShmStore` (`gos-store-shm`, as `gos::shm`): one store for all processes of a host |
//! | `redis` | no | `RedisStore` (`gos-store-redis`, as `gos::redis`): one store in a Redis server or Redis Cluster, for processes on many hosts |
//! | `gateway` | no | `gos-gateway` (as `gos::gateway`): QUIC between clusters, `RemoteStore`, hybrid topology |
//!
//! # A round
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use gos::{Federation, MemoryStore, ObjectStore, ObjectStoreExt, Topology};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), gos::GosError> {
//! let store = Arc::new(MemoryStore::default());
//! let federation = Federation::new("my_experiment", Topology::full(4)?, store.clone());
//! let mut nodes = federation.nodes()?;
//!
//! // Every node shares its weights: into the store, and only the key onto the bus.
//! for node in &mut nodes {
//!     node.share(42, Bytes::from(vec![1u8; 1 << 20])).await?;
//! }
//! // Every node gathers its neighbours' weights (zero-copy), aggregates, releases them.
//! for node in &mut nodes {
//!     let inputs = node.gather(42, Duration::from_secs(5)).await?;
//!     assert_eq!(inputs.len(), 3);
//!     for input in inputs {
//!         node.release(input).await?;
//!     }
//! }
//! // The last reader of each key deleted it; the bus carried keys only.
//! assert!(store.is_empty().await?);
//! assert!(federation.manager().stats().bytes < 12 * 200);
//! # Ok(()) }
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod bus;
mod cluster;
pub mod config;
mod error;
#[cfg(feature = "gateway")]
mod hybrid;
mod measure;
mod node;

pub use bus::{Bus, Inbox};
#[cfg(feature = "redis")]
pub use cluster::redis_config;
#[cfg(feature = "shm")]
pub use cluster::shm_config;
pub use cluster::{Cluster, Federation, OpenedStore, open_store, open_store_async};
pub use config::{ClusterConfig, ConfigError};
pub use error::GosError;
pub use measure::{
    FixedModel, Meter, NodeRound, RoundEvent, RoundModel, RoundObserver, RoundPlan, RoundSync,
    RoundTiming, Traffic, collect_rounds, measure_rounds, measure_rounds_observed, node_rounds,
    run_rounds,
};
pub use node::{
    DEFAULT_GATHER_TIMEOUT, DEFAULT_LEASE, DeletePolicy, FederatedNode, Received, Shared, lease_for,
};

pub use bytes::Bytes;
pub use gos_store::{
    Digest, Error as StoreError, KeyError, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutOptions, Readers, ReleaseOutcome, Reservation, StoreStats,
};
pub use gos_topology::{
    Mailbox, ManagerConfig, Message, MessageId, MessageKind, NodeId, RoutingStats, Targets,
    Topology, TopologyError, TopologyManager,
};

/// The storage contract (`gos-store`), in full.
pub mod store {
    pub use gos_store::*;
}

/// Topologies, messages and the manager (`gos-topology`), in full.
pub mod topology {
    pub use gos_topology::*;
}

#[cfg(feature = "memory")]
pub use gos_store_memory::MemoryStore;

/// The shared-memory backend (`gos-store-shm`).
#[cfg(feature = "shm")]
pub mod shm {
    pub use gos_store_shm::*;
}

/// The Redis backend (`gos-store-redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use gos_store_redis::*;
}

/// ICRF: gateways between clusters (`gos-gateway`).
#[cfg(feature = "gateway")]
pub mod gateway {
    pub use gos_gateway::*;
}

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The examples of docs/getting-started.md and docs/backends.md, compiled as doctests (they use
/// every feature).
#[cfg(all(doctest, feature = "memory", feature = "shm", feature = "gateway"))]
#[doc = include_str!("../../../docs/getting-started.md")]
#[doc = include_str!("../../../docs/backends.md")]
struct GuideDoctests;
