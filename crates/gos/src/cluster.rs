//! Assembling a federation: `Federation` makes in-process nodes over one store and one
//! `TopologyManager`; `Cluster` builds a store and a manager from a [`ClusterConfig`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gos_store::ObjectStore;
use gos_topology::{ManagerConfig, Topology, TopologyManager};

use crate::bus::Bus;
use crate::config::{Backend, ClusterConfig, ConfigError};
use crate::error::GosError;
use crate::node::{DEFAULT_LEASE, DeletePolicy, FederatedNode};

/// The nodes of one federation in one process, sharing a store and a `TopologyManager`.
#[derive(Debug, Clone)]
pub struct Federation {
    fed_id: String,
    store: Arc<dyn ObjectStore>,
    manager: TopologyManager,
    policy: DeletePolicy,
    lease: Option<Duration>,
}

impl Federation {
    /// A federation over `topology` whose nodes share `store`, with the default bus settings
    /// and [`DeletePolicy::LastReader`].
    pub fn new(fed_id: impl Into<String>, topology: Topology, store: Arc<dyn ObjectStore>) -> Self {
        Self::with_manager(
            fed_id,
            TopologyManager::new(topology, ManagerConfig::default()),
            store,
        )
    }

    /// A federation over an existing manager.
    pub fn with_manager(
        fed_id: impl Into<String>,
        manager: TopologyManager,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        Federation {
            fed_id: fed_id.into(),
            store,
            manager,
            policy: DeletePolicy::default(),
            lease: Some(DEFAULT_LEASE),
        }
    }

    /// Sets the lease of the objects shared by the nodes made from now on (default
    /// [`DEFAULT_LEASE`]; `None`: no lease).
    #[must_use]
    pub fn lease(mut self, lease: Option<Duration>) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the delete policy of the nodes made from now on.
    #[must_use]
    pub fn policy(mut self, policy: DeletePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The manager routing the federation's messages (its counters show the bus traffic).
    pub fn manager(&self) -> &TopologyManager {
        &self.manager
    }

    /// The shared store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Registers every node of the topology and returns them, in node order.
    pub fn nodes(&self) -> Result<Vec<FederatedNode>, GosError> {
        let topology = self.manager.topology();
        topology.nodes().map(|id| self.node(id)).collect()
    }

    /// Registers one node and returns it.
    pub fn node(&self, id: gos_topology::NodeId) -> Result<FederatedNode, GosError> {
        let mailbox = self.manager.register(id)?;
        let bus: Arc<dyn Bus> = Arc::new(self.manager.clone());
        Ok(FederatedNode::new(
            self.fed_id.clone(),
            Arc::clone(&self.store),
            bus,
            Box::new(mailbox),
            self.policy,
        )
        .with_lease(self.lease))
    }
}

/// Sweeps a store of its expired objects every `period` until dropped.
#[derive(Debug)]
struct Sweeper(tokio::task::JoinHandle<()>);

impl Sweeper {
    fn start(store: Arc<dyn ObjectStore>, period: Duration) -> Self {
        let period = period.max(Duration::from_millis(10));
        Sweeper(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match store.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "swept expired objects"),
                    Err(e) => tracing::warn!("sweeping the store: {e}"),
                }
            }
        }))
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A cluster assembled from a [`ClusterConfig`]: its store, its topology, its bus and (feature
/// `gateway`, when the file has a `[gateway]` section) its gateway.
///
/// - No `[gateway]`: one [`Federation`] over a local `TopologyManager`.
/// - `[gateway]` and `topology.clusters` (the cluster of every node): a
///   `HybridTopologyManager`. Messages between this cluster's nodes stay local; a message to a
///   node of another cluster travels with its object to that cluster's gateway (listed in
///   `gateway.peers`), which stores the object and delivers the key.
/// - `[gateway]` without `topology.clusters`: a local federation, and a gateway that serves
///   the store to remote clients (`RemoteStore`).
///
/// ```no_run
/// # async fn example() -> Result<(), gos::GosError> {
/// let cluster = gos::Cluster::from_file("cluster-a.toml").await?;
/// let nodes = cluster.nodes()?; // this cluster's nodes, ready to share and gather
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    store: Arc<dyn ObjectStore>,
    created_store: bool,
    bus: ClusterBus,
    policy: DeletePolicy,
    /// Removes expired objects every quarter of the lease while the cluster lives.
    _sweeper: Sweeper,
}

#[derive(Debug)]
enum ClusterBus {
    Local {
        federation: Federation,
        #[cfg(feature = "gateway")]
        gateway: Option<Box<gos_gateway::Gateway>>,
    },
    #[cfg(feature = "gateway")]
    Hybrid(Arc<gos_gateway::HybridTopologyManager>),
}

impl Cluster {
    /// Assembles the cluster a configuration describes, starting its gateway if it has one.
    /// Relative paths in the configuration are taken from `base`.
    pub async fn start(config: ClusterConfig, base: &Path) -> Result<Cluster, GosError> {
        let topology = config.topology.build(base)?;
        let opened = open_store_async(&config).await?;
        let store = opened.store;
        let bus = match Self::bus(&config, base, topology, &store).await {
            Ok(bus) => bus,
            Err(e) => {
                // Leave no shared-memory store behind that this failed start created.
                #[cfg(feature = "shm")]
                if let (true, Some(name)) = (opened.created, config.store.name.as_deref()) {
                    drop(store);
                    let _ = gos_store_shm::ShmStore::remove(name);
                }
                return Err(e);
            }
        };
        let sweeper = Sweeper::start(Arc::clone(&store), config.bus.lease() / 4);
        Ok(Cluster {
            config,
            store,
            created_store: opened.created,
            bus,
            policy: DeletePolicy::default(),
            _sweeper: sweeper,
        })
    }

    /// The bus (and gateway) a configuration describes; `base` resolves the gateway's paths.
    #[cfg_attr(not(feature = "gateway"), allow(unused_variables))]
    async fn bus(
        config: &ClusterConfig,
        base: &Path,
        topology: Topology,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<ClusterBus, GosError> {
        let manager_config = config.bus.manager_config();
        let bus = match (&config.gateway, &config.topology.clusters) {
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "topology.clusters needs a [gateway] section to reach the other clusters"
                        .into(),
                )
                .into());
            }
            (None, None) => ClusterBus::Local {
                federation: Federation::with_manager(
                    config.fed_id.clone(),
                    TopologyManager::new(topology, manager_config),
                    Arc::clone(store),
                ),
                #[cfg(feature = "gateway")]
                gateway: None,
            },
            #[cfg(not(feature = "gateway"))]
            (Some(_), _) => {
                let _ = (topology, manager_config);
                return Err(ConfigError::FeatureDisabled {
                    what: "a [gateway] section",
                    feature: "gateway",
                }
                .into());
            }
            #[cfg(feature = "gateway")]
            (Some(section), clusters) => {
                let wire = section.to_wire(base)?;
                match clusters {
                    Some(clusters) => {
                        let hybrid =
                            gos_gateway::HybridTopology::new(topology, clusters.iter().cloned())?;
                        let manager = gos_gateway::HybridTopologyManager::start(
                            wire,
                            hybrid,
                            Arc::clone(store),
                            manager_config,
                        )
                        .await?;
                        if manager.cluster_id() != config.cluster_id {
                            return Err(ConfigError::Invalid(format!(
                                "cluster_id is `{}` but the gateway certificate names `{}`",
                                config.cluster_id,
                                manager.cluster_id()
                            ))
                            .into());
                        }
                        for peer in &section.peers {
                            manager.add_peer(&peer.cluster, peer.addr.resolve()?)?;
                        }
                        ClusterBus::Hybrid(Arc::new(manager))
                    }
                    None => {
                        let gateway = gos_gateway::Gateway::start(wire, Arc::clone(store)).await?;
                        ClusterBus::Local {
                            federation: Federation::with_manager(
                                config.fed_id.clone(),
                                TopologyManager::new(topology, manager_config),
                                Arc::clone(store),
                            ),
                            gateway: Some(Box::new(gateway)),
                        }
                    }
                }
            }
        };
        Ok(bus)
    }

    /// Reads a configuration file and assembles its cluster (paths relative to the file).
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Cluster, GosError> {
        let path = path.as_ref();
        let config = ClusterConfig::from_file(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::start(config, base).await
    }

    /// Sets the delete policy of the nodes made from now on.
    #[must_use]
    pub fn policy(mut self, policy: DeletePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The configuration the cluster was assembled from.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The cluster's store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// True when assembling the cluster created its (shared-memory) store rather than opening
    /// an existing one.
    pub fn created_store(&self) -> bool {
        self.created_store
    }

    /// The nodes of the topology that belong to this cluster (all of them without
    /// `topology.clusters`).
    pub fn node_ids(&self) -> Vec<gos_topology::NodeId> {
        match &self.bus {
            ClusterBus::Local { federation, .. } => {
                federation.manager().topology().nodes().collect()
            }
            #[cfg(feature = "gateway")]
            ClusterBus::Hybrid(manager) => manager.topology().nodes_in(manager.cluster_id()),
        }
    }

    /// Registers one node of this cluster and returns it.
    pub fn node(&self, id: gos_topology::NodeId) -> Result<FederatedNode, GosError> {
        match &self.bus {
            ClusterBus::Local { federation, .. } => federation
                .clone()
                .policy(self.policy)
                .lease(Some(self.lease()))
                .node(id),
            #[cfg(feature = "gateway")]
            ClusterBus::Hybrid(manager) => {
                let mailbox = manager.register(id)?;
                let bus: Arc<dyn Bus> = Arc::clone(manager) as Arc<dyn Bus>;
                Ok(FederatedNode::new(
                    self.config.fed_id.clone(),
                    Arc::clone(&self.store),
                    bus,
                    Box::new(mailbox),
                    self.policy,
                )
                .with_lease(Some(self.lease())))
            }
        }
    }

    /// The lease of the objects this cluster's nodes share (`bus.lease_ms`).
    pub fn lease(&self) -> Duration {
        self.config.bus.lease()
    }

    /// Registers every node of this cluster and returns them, in node order.
    pub fn nodes(&self) -> Result<Vec<FederatedNode>, GosError> {
        self.node_ids()
            .into_iter()
            .map(|id| self.node(id))
            .collect()
    }

    /// Messages and bytes routed by this cluster's bus so far (deliveries from other clusters
    /// included).
    pub fn routing_stats(&self) -> gos_topology::RoutingStats {
        match &self.bus {
            ClusterBus::Local { federation, .. } => federation.manager().stats(),
            #[cfg(feature = "gateway")]
            ClusterBus::Hybrid(manager) => manager.local().stats(),
        }
    }

    /// Where the cluster's gateway listens, if it has one.
    pub fn gateway_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.bus {
            ClusterBus::Local { .. } => {
                #[cfg(feature = "gateway")]
                if let ClusterBus::Local {
                    gateway: Some(gateway),
                    ..
                } = &self.bus
                {
                    return gateway.local_addr().ok();
                }
                None
            }
            #[cfg(feature = "gateway")]
            ClusterBus::Hybrid(manager) => manager.gateway().local_addr().ok(),
        }
    }

    /// Tells the cluster where another cluster's gateway listens (for peers whose address is
    /// known only at run time, such as port 0 in tests).
    #[cfg(feature = "gateway")]
    pub fn add_peer(&self, cluster: &str, addr: std::net::SocketAddr) -> Result<(), GosError> {
        match &self.bus {
            ClusterBus::Hybrid(manager) => Ok(manager.add_peer(cluster, addr)?),
            ClusterBus::Local { .. } => Err(ConfigError::Invalid(
                "this cluster has no hybrid topology (topology.clusters) to add a peer to".into(),
            )
            .into()),
        }
    }

    /// Stops the gateway, if any (nodes still holding the bus keep it alive until dropped).
    pub async fn shutdown(self) {
        match self.bus {
            #[cfg(feature = "gateway")]
            ClusterBus::Local {
                gateway: Some(gateway),
                ..
            } => gateway.shutdown().await,
            #[cfg(feature = "gateway")]
            ClusterBus::Hybrid(manager) => {
                if let Ok(manager) = Arc::try_unwrap(manager) {
                    manager.shutdown().await;
                }
            }
            _ => {}
        }
    }
}

/// A store opened (or created) from a configuration.
#[derive(Debug)]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// True when this call created it (a shared-memory store that did not exist yet).
    pub created: bool,
}

/// Opens the store a configuration describes: a new `MemoryStore`; the shared-memory store of
/// `store.name`, created with the configured limits if it does not exist yet; or (feature
/// `redis`) the Redis namespace `store.name` on `store.urls`, created with the configured
/// limits if it does not exist yet. An existing store keeps its own limits: compare
/// [`ObjectStore::limits`] with the file's to refuse it.
///
/// This is the one place that decides how a backend is opened. Opening a shared-memory store
/// blocks (creating one allocates its arena), so it runs on tokio's blocking pool; a Redis
/// store is opened on the calling runtime, whose tasks keep its connections.
pub async fn open_store_async(config: &ClusterConfig) -> Result<OpenedStore, GosError> {
    match config.store.backend {
        Backend::Redis => open_redis(config).await,
        Backend::Memory | Backend::Shm => {
            let owned = config.clone();
            tokio::task::spawn_blocking(move || open_store(&owned))
                .await
                .map_err(|e| {
                    GosError::Store(gos_store::Error::Unavailable(format!(
                        "the store-opening task failed: {e}"
                    )))
                })?
        }
    }
}

#[cfg(feature = "redis")]
async fn open_redis(config: &ClusterConfig) -> Result<OpenedStore, GosError> {
    let store =
        gos_store_redis::RedisStore::open(redis_config(&config.store).adopt_limits(true)).await?;
    Ok(OpenedStore {
        store: Arc::new(store),
        created: false,
    })
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_config: &ClusterConfig) -> Result<OpenedStore, GosError> {
    Err(redis_disabled())
}

#[cfg(not(feature = "redis"))]
fn redis_disabled() -> GosError {
    ConfigError::FeatureDisabled {
        what: "the redis backend",
        feature: "redis",
    }
    .into()
}

/// Opens the store a configuration describes without a runtime, as
/// [`open_store_async`] does, for the memory and shared-memory backends. A Redis store needs
/// the runtime that will run its connections: for it this answers an error pointing to
/// [`open_store_async`] (or, without feature `redis`, [`ConfigError::FeatureDisabled`]).
pub fn open_store(config: &ClusterConfig) -> Result<OpenedStore, GosError> {
    let limits = config.store.limits();
    match config.store.backend {
        Backend::Redis => {
            #[cfg(feature = "redis")]
            {
                Err(ConfigError::Invalid(
                    "the redis backend opens on a tokio runtime: use gos::open_store_async".into(),
                )
                .into())
            }
            #[cfg(not(feature = "redis"))]
            {
                Err(redis_disabled())
            }
        }
        Backend::Memory => {
            #[cfg(feature = "memory")]
            {
                Ok(OpenedStore {
                    store: Arc::new(gos_store_memory::MemoryStore::new(limits)),
                    created: false,
                })
            }
            #[cfg(not(feature = "memory"))]
            {
                let _ = limits;
                Err(ConfigError::FeatureDisabled {
                    what: "the memory backend",
                    feature: "memory",
                }
                .into())
            }
        }
        Backend::Shm => {
            #[cfg(feature = "shm")]
            {
                use gos_store_shm::{ShmError, ShmStore};
                let name =
                    config.store.name.as_deref().ok_or_else(|| {
                        ConfigError::Invalid("store.name is required for shm".into())
                    })?;
                let not_found = |e: &gos_store::Error| {
                    matches!(e, gos_store::Error::Backend { source, .. }
                        if matches!(source.downcast_ref::<ShmError>(), Some(ShmError::NotFound(_))))
                };
                match ShmStore::open(name) {
                    Ok(store) => {
                        // A store reopened after a crash (a killed `gos serve`, a killed
                        // node) gets back at once what the dead handles held: their
                        // reservations and pins, not only when a put next runs out of room.
                        store.reclaim_dead()?;
                        Ok(OpenedStore {
                            store: Arc::new(store),
                            created: false,
                        })
                    }
                    Err(e) if not_found(&e) => Ok(OpenedStore {
                        store: Arc::new(ShmStore::create(name, shm_config(&config.store))?),
                        created: true,
                    }),
                    Err(e) => Err(e.into()),
                }
            }
            #[cfg(not(feature = "shm"))]
            {
                let _ = limits;
                Err(ConfigError::FeatureDisabled {
                    what: "the shm backend",
                    feature: "shm",
                }
                .into())
            }
        }
    }
}

/// The shared-memory settings a `[store]` section describes (limits, arena, handles,
/// object records).
#[cfg(feature = "shm")]
pub fn shm_config(store: &crate::config::StoreConfig) -> gos_store_shm::ShmConfig {
    let mut shm = gos_store_shm::ShmConfig::new(store.limits());
    if let Some(arena) = store.arena {
        shm = shm.arena_bytes(arena.0);
    }
    if let Some(n) = store.max_processes {
        shm = shm.max_processes(n);
    }
    if let Some(n) = store.max_objects {
        shm = shm.max_objects(n);
    }
    shm
}

/// The Redis settings a `[store]` section describes: `urls`, the namespace `name`, the limits,
/// and the timeouts, buckets and chunk size when set (`gos-store-redis`'s defaults otherwise).
#[cfg(feature = "redis")]
pub fn redis_config(store: &crate::config::StoreConfig) -> gos_store_redis::RedisConfig {
    let mut redis = gos_store_redis::RedisConfig::new(store.urls.clone().unwrap_or_default())
        .limits(store.limits());
    if let Some(name) = &store.name {
        redis = redis.namespace(name.clone());
    }
    if let Some(d) = store.response_timeout {
        redis = redis.response_timeout(d);
    }
    if let Some(d) = store.connection_timeout {
        redis = redis.connection_timeout(d);
    }
    if let Some(d) = store.reservation_ttl {
        redis = redis.reservation_ttl(d);
    }
    if let Some(n) = store.buckets {
        redis = redis.buckets(n);
    }
    if let Some(size) = store.chunk_size {
        redis = redis.chunk_size(usize::try_from(size.0).unwrap_or(usize::MAX));
    }
    redis
}
