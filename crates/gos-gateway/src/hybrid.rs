//! `HybridTopology` and `HybridTopologyManager`: nodes spread over clusters; intra-cluster
//! edges go through the local `TopologyManager`, inter-cluster edges through the gateways.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use std::time::Duration;

use bytes::Bytes;
use gos_store::{Clock, ObjectKey, ObjectStore};
use gos_topology::{
    Mailbox, ManagerConfig, Message, MessageId, NodeId, Targets, Topology, TopologyError,
    TopologyManager,
};

use crate::config::GatewayConfig;
use crate::deliver::{DeliveryTarget, Outgoing, Peer};
use crate::error::GatewayError;
use crate::frame::TargetOutcome;
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

/// What a hybrid publish did, target by target.
///
/// Every target is in exactly one of `local`, `remote` and `failed`. A failed target of this
/// cluster never got the key-only message: whoever put the object with a reader count
/// releases it on that reader's behalf. A failed target of another cluster needs nothing
/// from the sender: its gateway released its copy on the node's behalf, or never stored it
/// (the transport failed before the commit). See `docs/icrf.md`, "Delivery with counts".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HybridReport {
    /// The message id.
    pub id: MessageId,
    /// Targets in this cluster that got the message through the local manager.
    pub local: Vec<NodeId>,
    /// Targets in other clusters that got it through their gateways, with their cluster.
    pub remote: Vec<(NodeId, String)>,
    /// Targets that did not get it, with why.
    pub failed: Vec<FailedTarget>,
    /// Object bytes sent to other clusters (once per cluster, not per node).
    pub object_bytes_sent: u64,
}

impl HybridReport {
    /// True when every target got the message.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// The targets of this cluster that did not get the message.
    pub fn failed_local(&self, cluster: &str) -> impl Iterator<Item = NodeId> + '_ {
        let cluster = cluster.to_owned();
        self.failed
            .iter()
            .filter(move |f| f.cluster == cluster)
            .map(|f| f.node)
    }
}

/// A target a hybrid publish did not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTarget {
    /// The node.
    pub node: NodeId,
    /// Its cluster.
    pub cluster: String,
    /// Why, as text.
    pub reason: String,
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
    clock: Arc<dyn Clock>,
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
        let clock = gateway.clock.clone();
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
            clock,
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
    /// is a key present in this cluster's store) travels once, in one delivery naming all of
    /// that cluster's targets, with what is left of its lease; the receiving gateway stores it
    /// under the same key with one reader per target it accepts, then hands each target the
    /// key-only message.
    ///
    /// A failure of one target or one cluster does not stop the others: the report says what
    /// happened to each target. Only a message that cannot be routed at all (a sender of
    /// another cluster, a target that is not a neighbour, a body too large) is an error, and
    /// then nothing was sent.
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
        let mut report = HybridReport {
            id: msg.id,
            local: Vec::new(),
            remote: Vec::new(),
            failed: Vec::new(),
            object_bytes_sent: 0,
        };
        let fail = |nodes: &[NodeId], cluster: &str, reason: &str| {
            nodes
                .iter()
                .map(|node| FailedTarget {
                    node: *node,
                    cluster: cluster.to_owned(),
                    reason: reason.to_owned(),
                })
                .collect::<Vec<_>>()
        };
        let mut peers: Vec<(Peer, Vec<NodeId>)> = Vec::new();
        {
            let map = self.peers.read().unwrap_or_else(PoisonError::into_inner);
            for (cluster, nodes) in remote {
                match map.get(&cluster) {
                    Some(peer) => peers.push((peer.clone(), nodes)),
                    None => report.failed.extend(fail(
                        &nodes,
                        &cluster,
                        "no address known for this cluster (add_peer)",
                    )),
                }
            }
        }
        // The object and what is left of its lease, read once for every cluster.
        let object = match msg.body_key() {
            Some(key) if !peers.is_empty() => match self.outgoing(&key).await {
                Ok(object) => object,
                Err(e) => {
                    let reason = format!("reading {key}: {e}");
                    for (peer, nodes) in peers.drain(..) {
                        report.failed.extend(fail(&nodes, peer.cluster(), &reason));
                    }
                    None
                }
            },
            _ => None,
        };
        let local_send = async {
            if local.is_empty() {
                return (Vec::new(), Vec::new());
            }
            match self
                .local
                .publish(msg.clone(), Targets::Only(local.clone()))
                .await
            {
                Ok(done) => (done.delivered, Vec::new()),
                Err(TopologyError::Undelivered {
                    delivered, failed, ..
                }) => (
                    delivered,
                    failed
                        .into_iter()
                        .map(|(node, e)| (node, e.to_string()))
                        .collect(),
                ),
                Err(e) => (
                    Vec::new(),
                    local.iter().map(|node| (*node, e.to_string())).collect(),
                ),
            }
        };
        let sends = peers.into_iter().map(|(peer, nodes)| {
            let (msg, object) = (&msg, &object);
            async move {
                let outgoing = object.as_ref().map(|(key, bytes, lease)| Outgoing {
                    key,
                    bytes,
                    lease: *lease,
                });
                let result = peer.deliver(&nodes, msg, outgoing).await;
                (peer, nodes, result)
            }
        });
        let (local_result, remote_results) =
            tokio::join!(local_send, futures::future::join_all(sends));
        let (delivered, failed) = local_result;
        report.local = delivered;
        for (node, reason) in failed {
            report.failed.push(FailedTarget {
                node,
                cluster: self.cluster.clone(),
                reason,
            });
        }
        for (peer, nodes, result) in remote_results {
            let cluster = peer.cluster().to_owned();
            match result {
                Ok(outcomes) => {
                    if let Some((_, bytes, _)) = &object {
                        report.object_bytes_sent += bytes.len() as u64;
                    }
                    for (node, outcome) in outcomes {
                        match outcome {
                            TargetOutcome::Delivered | TargetOutcome::Duplicate => {
                                report.remote.push((node, cluster.clone()));
                            }
                            TargetOutcome::Failed(reason) => report.failed.push(FailedTarget {
                                node,
                                cluster: cluster.clone(),
                                reason,
                            }),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = %cluster, "delivery failed: {e}");
                    report.failed.extend(fail(&nodes, &cluster, &e.to_string()));
                }
            }
        }
        report.local.sort_unstable();
        report.remote.sort();
        report.failed.sort_by_key(|f| f.node);
        Ok(report)
    }

    /// The object under `key` in this cluster's store and what is left of its lease, or
    /// `None` when there is no such object (a message whose body is not a stored key).
    async fn outgoing(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<(ObjectKey, Bytes, Option<Duration>)>, GatewayError> {
        let Some(meta) = self.store.head(key).await? else {
            return Ok(None);
        };
        let Some(bytes) = self.store.get(key).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let lease = meta
            .expires_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO));
        Ok(Some((key.clone(), bytes, lease)))
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
        let (here, edge) = {
            let topology = self.topology.read().unwrap_or_else(PoisonError::into_inner);
            (
                topology.cluster_of(to) == Some(self.cluster.as_str()),
                topology.topology().may_send(message.sender, to),
            )
        };
        if !here {
            tracing::warn!(%from, %to, "refused a delivery to a node of another cluster");
            return Err(TopologyError::UnknownNode(to));
        }
        if !edge {
            tracing::warn!(%from, %to, "refused a delivery from a node that is not a neighbour");
            return Err(TopologyError::NotNeighbour {
                from: message.sender,
                to,
            });
        }
        self.local.deliver(to, message).await
    }

    fn cluster_of(&self, node: NodeId) -> Option<String> {
        let topology = self.topology.read().unwrap_or_else(PoisonError::into_inner);
        topology.cluster_of(node).map(str::to_owned)
    }
}
