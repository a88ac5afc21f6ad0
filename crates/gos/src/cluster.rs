//! Assembling a federation: `Federation` makes in-process nodes over one store and one
//! `TopologyManager`; `Cluster` builds a store and a manager from a [`ClusterConfig`].

use std::path::Path;
use std::sync::Arc;

use gos_store::ObjectStore;
use gos_topology::{ManagerConfig, Topology, TopologyManager};

use crate::bus::Bus;
use crate::config::{Backend, ClusterConfig, ConfigError};
use crate::error::GosError;
use crate::node::{DeletePolicy, FederatedNode};

/// The nodes of one federation in one process, sharing a store and a `TopologyManager`.
#[derive(Debug, Clone)]
pub struct Federation {
    fed_id: String,
    store: Arc<dyn ObjectStore>,
    manager: TopologyManager,
    policy: DeletePolicy,
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
        }
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
        ))
    }
}

/// A cluster built from a [`ClusterConfig`]: its store and its federation.
#[derive(Debug)]
pub struct Cluster {
    /// The configuration it was built from.
    pub config: ClusterConfig,
    /// The cluster's store.
    pub store: Arc<dyn ObjectStore>,
    /// The federation over the configured topology.
    pub federation: Federation,
}

impl Cluster {
    /// Builds the store and the manager a configuration describes. Relative paths in the
    /// configuration are taken from `base` (the configuration file's directory).
    ///
    /// A shared-memory store is opened if it exists, created otherwise.
    pub fn build(config: ClusterConfig, base: &Path) -> Result<Cluster, GosError> {
        let topology = config.topology.build(base)?;
        let store = open_store(&config)?;
        let manager = TopologyManager::new(topology, config.bus.manager_config());
        let federation =
            Federation::with_manager(config.fed_id.clone(), manager, Arc::clone(&store));
        Ok(Cluster {
            config,
            store,
            federation,
        })
    }

    /// Reads a configuration file and builds its cluster.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Cluster, GosError> {
        let path = path.as_ref();
        let config = ClusterConfig::from_file(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::build(config, base)
    }
}

/// Opens the store a configuration describes.
pub fn open_store(config: &ClusterConfig) -> Result<Arc<dyn ObjectStore>, GosError> {
    let limits = config.store.limits();
    match config.store.backend {
        Backend::Memory => {
            #[cfg(feature = "memory")]
            {
                Ok(Arc::new(gos_store_memory::MemoryStore::new(limits)))
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
                let name =
                    config.store.name.as_deref().ok_or_else(|| {
                        ConfigError::Invalid("store.name is required for shm".into())
                    })?;
                let store = match gos_store_shm::ShmStore::open(name) {
                    Ok(store) => store,
                    Err(_) => gos_store_shm::ShmStore::create(
                        name,
                        gos_store_shm::ShmConfig::new(limits),
                    )?,
                };
                Ok(Arc::new(store))
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
