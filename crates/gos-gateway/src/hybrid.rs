//! `HybridTopology` and `HybridTopologyManager`: nodes spread over clusters; intra-cluster
//! edges go through the local `TopologyManager`, inter-cluster edges through the gateways.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use gos_store::ObjectStore;
use gos_topology::{
    Mailbox, ManagerConfig, Message, MessageId, NodeId, Targets, Topology, TopologyError,
    TopologyManager,
};

use crate::config::GatewayConfig;
use crate::deliver::{DeliveryTarget, Peer};
use crate::error::GatewayError;
use crate::server::Gateway;
use crate::tls::validate_cluster_id;

/// The current topology, shared by the manager and the gateway's delivery target.
type Shared = Arc<RwLock<Arc<HybridTopology>>>;

/// Whether an edge stays inside a cluster or crosses to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// Both ends in one cluster: the key travels through the local `TopologyManager`.
    Intra,
    /// The ends in two clusters: the message and its object travel through the gateways.
    Inter,
}

/// A topology whose nodes each belong to a cluster.
///
/// Node ids are global: node 7 is node 7 in every cluster's view, and each cluster registers
/// mailboxes only for its own nodes.
///
/// ```
/// use gos_gateway::{EdgeKind, HybridTopology};
/// use gos_topology::{NodeId, Topology};
///
/// let hybrid = HybridTopology::new(Topology::ring(4)?, ["a", "a", "b", "b"])?;
/// assert_eq!(hybrid.edge_kind(NodeId(0), NodeId(1)), Some(EdgeKind::Intra));
/// assert_eq!(hybrid.edge_kind(NodeId(1), NodeId(2)), Some(EdgeKind::Inter));
/// assert_eq!(hybrid.nodes_in("b"), vec![NodeId(2), NodeId(3)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridTopology {
    topology: Topology,
    clusters: Vec<String>,
}

impl HybridTopology {
    /// `topology` with node `i` in cluster `clusters[i]`; one cluster id per node.
    pub fn new<I, S>(topology: Topology, clusters: I) -> Result<Self, GatewayError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let clusters: Vec<String> = clusters.into_iter().map(Into::into).collect();
        if clusters.len() != topology.len() {
            return Err(GatewayError::InvalidHybrid(format!(
                "{} cluster ids for a topology of {} nodes",
                clusters.len(),
                topology.len()
            )));
        }
        if let Some(bad) = clusters.iter().find(|c| !validate_cluster_id(c)) {
            return Err(GatewayError::InvalidHybrid(format!(
                "invalid cluster id `{bad}`"
            )));
        }
        Ok(HybridTopology { topology, clusters })
    }

    /// The node-to-node topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The cluster of `node`, if it is in the topology.
    pub fn cluster_of(&self, node: NodeId) -> Option<&str> {
        self.clusters.get(node.index()).map(String::as_str)
    }

    /// The cluster ids, ascending.
    pub fn clusters(&self) -> BTreeSet<&str> {
        self.clusters.iter().map(String::as_str).collect()
    }

    /// The nodes of `cluster`, ascending.
    pub fn nodes_in(&self, cluster: &str) -> Vec<NodeId> {
        self.topology
            .nodes()
            .filter(|n| self.cluster_of(*n) == Some(cluster))
            .collect()
    }

    /// The kind of the edge `from -> to`; `None` when there is no such edge.
    pub fn edge_kind(&self, from: NodeId, to: NodeId) -> Option<EdgeKind> {
        if !self.topology.may_send(from, to) {
            return None;
        }
        Some(if self.cluster_of(from) == self.cluster_of(to) {
            EdgeKind::Intra
        } else {
            EdgeKind::Inter
        })
    }

    /// Every edge with its kind.
    pub fn edges(&self) -> impl Iterator<Item = (NodeId, NodeId, EdgeKind)> + '_ {
        self.topology
            .edges()
            .filter_map(|(from, to)| self.edge_kind(from, to).map(|kind| (from, to, kind)))
    }
}

/// What a hybrid publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridReport {
    /// The message id.
    pub id: MessageId,
    /// Targets in this cluster, reached through the local manager.
    pub local: Vec<NodeId>,
    /// Targets in other clusters, reached through their gateways, with their cluster.
    pub remote: Vec<(NodeId, String)>,
    /// Object bytes sent to other clusters (once per cluster, not per node).
    pub object_bytes_sent: u64,
}

/// One cluster's side of a hybrid topology: its local `TopologyManager`, its store and its
/// gateway, and clients of the peer clusters' gateways.
///
/// A node's code is the same wherever its peers live: it publishes a key-only message, and
/// receives key-only messages whose keys are in its own cluster's store.
#[derive(Debug)]
pub struct HybridTopologyManager {
    cluster: String,
    topology: Shared,
    local: TopologyManager,
    store: Arc<dyn ObjectStore>,
    gateway: Gateway,
    peers: RwLock<HashMap<String, Peer>>,
}

impl HybridTopologyManager {
    /// Starts this cluster's side: a local manager over `topology`, and a gateway (configured
    /// by `gateway`, whose certificate names this cluster) that serves `store` and delivers
    /// messages from peers to the local mailboxes.
    pub async fn start(
        gateway: GatewayConfig,
        topology: HybridTopology,
        store: Arc<dyn ObjectStore>,
        manager: ManagerConfig,
    ) -> Result<Self, GatewayError> {
        let cluster = gateway.tls.cluster_id()?;
        let local = TopologyManager::new(topology.topology().clone(), manager);
        let shared: Shared = Arc::new(RwLock::new(Arc::new(topology)));
        let target: Arc<dyn DeliveryTarget> = Arc::new(LocalTarget {
            local: local.clone(),
            topology: shared.clone(),
            cluster: cluster.clone(),
        });
        let gw = Gateway::start_with(gateway, store.clone(), Some(target)).await?;
        Ok(HybridTopologyManager {
            cluster,
            topology: shared,
            local,
            store,
            gateway: gw,
            peers: RwLock::default(),
        })
    }

    /// This cluster's id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster
    }

    /// This cluster's gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The local manager (intra-cluster routing, statistics).
    pub fn local(&self) -> &TopologyManager {
        &self.local
    }

    /// This cluster's store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The current hybrid topology.
    pub fn topology(&self) -> Arc<HybridTopology> {
        self.topology
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the topology between rounds (the cluster assignment may change too).
    pub fn set_topology(&self, topology: HybridTopology) {
        self.local.set_topology(topology.topology().clone());
        *self
            .topology
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(topology);
    }

    /// Tells this cluster where the gateway of `cluster` listens.
    pub fn add_peer(&self, cluster: &str, addr: SocketAddr) -> Result<(), GatewayError> {
        let peer = self.gateway.peer(cluster, addr)?;
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cluster.to_owned(), peer);
        Ok(())
    }

    /// Registers a mailbox for `node`, which must belong to this cluster.
    pub fn register(&self, node: NodeId) -> Result<Mailbox, GatewayError> {
        let topology = self.topology();
        match topology.cluster_of(node) {
            Some(c) if c == self.cluster => Ok(self.local.register(node)?),
            Some(other) => Err(GatewayError::ForeignNode {
                node: node.0,
                cluster: other.to_owned(),
            }),
            None => Err(TopologyError::UnknownNode(node).into()),
        }
    }

    /// Publishes `msg` from its sender (a node of this cluster) to `targets`, with the same
    /// routing rules as [`TopologyManager::publish`] over the whole hybrid topology.
    ///
    /// Intra-cluster targets get the key-only message through the local manager. For each
    /// other cluster with targets, the object named by the message's body key (when the body
    /// is a key present in this cluster's store) travels once with the first delivery and is
    /// stored there under the same key; every target there then gets the key-only message.
    /// Deliveries are retried on transport failures and reach each mailbox exactly once.
    pub async fn publish(
        &self,
        msg: Message,
        targets: Targets,
    ) -> Result<HybridReport, GatewayError> {
        let topology = self.topology();
        match topology.cluster_of(msg.sender) {
            Some(c) if c == self.cluster => {}
            Some(other) => {
                return Err(GatewayError::ForeignNode {
                    node: msg.sender.0,
                    cluster: other.to_owned(),
                });
            }
            None => return Err(TopologyError::UnknownNode(msg.sender).into()),
        }
        let to = gos_topology::route(topology.topology(), msg.sender, &targets)?;
        gos_topology::check_body(&msg, self.local.config().max_body_size)?;
        let mut local = Vec::new();
        let mut remote: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
        for node in to {
            match topology.cluster_of(node) {
                Some(c) if c == self.cluster => local.push(node),
                Some(c) => remote.entry(c.to_owned()).or_default().push(node),
                None => return Err(TopologyError::UnknownNode(node).into()),
            }
        }
        let peers: Vec<(Peer, Vec<NodeId>)> = {
            let map = self.peers.read().unwrap_or_else(PoisonError::into_inner);
            remote
                .iter()
                .map(|(cluster, nodes)| {
                    map.get(cluster)
                        .cloned()
                        .map(|peer| (peer, nodes.clone()))
                        .ok_or_else(|| GatewayError::Connect {
                            peer: cluster.clone(),
                            reason: "no address known for this cluster (add_peer)".into(),
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let object = match msg.body_key() {
            Some(key) if !peers.is_empty() => self.store.get(&key).await?.map(|v| (key, v)),
            _ => None,
        };
        if !local.is_empty() {
            self.local
                .publish(msg.clone(), Targets::Only(local.clone()))
                .await?;
        }
        let sends = peers.into_iter().map(|(peer, nodes)| {
            let (msg, object) = (&msg, &object);
            async move {
                let mut sent = 0u64;
                for (i, node) in nodes.iter().enumerate() {
                    let with = object.as_ref().filter(|_| i == 0);
                    peer.deliver(*node, msg, with.map(|(k, v)| (k, v))).await?;
                    sent += with.map_or(0, |(_, v)| v.len() as u64);
                }
                let reached: Vec<(NodeId, String)> = nodes
                    .into_iter()
                    .map(|n| (n, peer.cluster().to_owned()))
                    .collect();
                Ok::<_, GatewayError>((reached, sent))
            }
        });
        let mut report = HybridReport {
            id: msg.id,
            local,
            remote: Vec::new(),
            object_bytes_sent: 0,
        };
        for result in futures::future::join_all(sends).await {
            let (reached, sent) = result?;
            report.remote.extend(reached);
            report.object_bytes_sent += sent;
        }
        Ok(report)
    }

    /// Stops the gateway.
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
    }
}

/// Delivers messages from peers to local mailboxes, refusing nodes of other clusters.
#[derive(Debug)]
struct LocalTarget {
    local: TopologyManager,
    topology: Shared,
    cluster: String,
}

#[async_trait::async_trait]
impl DeliveryTarget for LocalTarget {
    async fn deliver(&self, from: &str, to: NodeId, message: Message) -> Result<(), TopologyError> {
        let here = {
            let topology = self.topology.read().unwrap_or_else(PoisonError::into_inner);
            topology.cluster_of(to) == Some(self.cluster.as_str())
        };
        if !here {
            tracing::warn!(%from, %to, "refused a delivery to a node of another cluster");
            return Err(TopologyError::UnknownNode(to));
        }
        self.local.deliver(to, message).await
    }
}
