//! Deliveries across clusters: the `DeliveryTarget` a receiving gateway hands messages to, and
//! `Peer`, a gateway's client of another cluster's gateway.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::ObjectKey;
use gos_topology::{Message, NodeId, TopologyError, TopologyManager};

use crate::client::{Link, Retry};
use crate::error::GatewayError;
use crate::frame::{Delivery, ObjectHeader, Reply, Request, TargetOutcome};
use crate::remote::RemoteStore;

/// Where a receiving gateway puts the messages peers deliver: a node's mailbox.
#[async_trait]
pub trait DeliveryTarget: Send + Sync + fmt::Debug + 'static {
    /// Hands `message`, from cluster `from`, to node `to` of this cluster. Called once per
    /// message id and target (retries are deduplicated before), after its object has been
    /// committed to the local store.
    async fn deliver(&self, from: &str, to: NodeId, message: Message) -> Result<(), TopologyError>;

    /// The cluster `node` belongs to, if this target knows (a hybrid topology does). The
    /// gateway authorises a [`Role::Peer`](crate::tls::Role::Peer) by it: a peer cluster
    /// delivers only from its own nodes and writes only under its own nodes' keys. The
    /// default knows no cluster, so a peer owns nothing.
    fn cluster_of(&self, node: NodeId) -> Option<String> {
        let _ = node;
        None
    }
}

#[async_trait]
impl DeliveryTarget for TopologyManager {
    async fn deliver(
        &self,
        _from: &str,
        to: NodeId,
        message: Message,
    ) -> Result<(), TopologyError> {
        TopologyManager::deliver(self, to, message).await
    }
}

/// An object sent with a delivery: its key, its bytes and what is left of its lease.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The key it is stored under, at the peer as here.
    pub key: &'a ObjectKey,
    /// Its bytes.
    pub bytes: &'a Bytes,
    /// What is left of its lease here; the peer applies it with its own clock.
    pub lease: Option<Duration>,
}

/// A client of a peer cluster's gateway, made by [`Gateway::peer`](crate::Gateway::peer).
#[derive(Debug, Clone)]
pub struct Peer {
    link: Arc<Link>,
}

impl Peer {
    pub(crate) fn new(link: Link) -> Self {
        Peer {
            link: Arc::new(link),
        }
    }

    /// The peer's cluster id.
    pub fn cluster(&self) -> &str {
        self.link.cluster()
    }

    /// Checks that the peer answers; returns the cluster id it says it serves.
    pub async fn ping(&self) -> Result<String, GatewayError> {
        match self
            .link
            .call(&Request::Ping, None, Retry::Idempotent)
            .await?
        {
            (Reply::Pong { cluster }, _) => Ok(cluster),
            (other, _) => Err(GatewayError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// Delivers `message` to the nodes `to` of the peer cluster, with `object` stored once in
    /// the peer's store under its key first, with one reader per target node the peer
    /// accepts and the lease given. Returns what happened for each target: a target whose
    /// delivery failed needs no cleanup here, the peer released its copy on that node's
    /// behalf (or never stored it).
    ///
    /// Retried on a new connection when the transport fails: the peer deduplicates by
    /// message id and target, so each mailbox gets the message at most once and a retry
    /// learns how the first attempt ended.
    pub async fn deliver(
        &self,
        to: &[NodeId],
        message: &Message,
        object: Option<Outgoing<'_>>,
    ) -> Result<Vec<(NodeId, TargetOutcome)>, GatewayError> {
        let request = Request::Deliver(Box::new(Delivery {
            to: to.iter().map(|n| n.0).collect(),
            message: message.clone(),
            object: object.map(|o| ObjectHeader {
                key: o.key.clone(),
                len: o.bytes.len() as u64,
                lease: o.lease,
                transfer: Some(crate::frame::TransferId::fresh()),
            }),
        }));
        let reply = match object {
            // A cut on the way is resumed (docs/icrf.md, "Resume after a cut").
            Some(o) => {
                self.link
                    .send_resumable(&request, o.bytes, Retry::Idempotent, false)
                    .await?
            }
            None => self.link.call(&request, None, Retry::Idempotent).await?.0,
        };
        match reply {
            Reply::Delivered(outcomes) => Ok(outcomes
                .into_iter()
                .map(|(node, outcome)| (NodeId(node), outcome))
                .collect()),
            other => Err(GatewayError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// The peer cluster's store, through the same connection.
    pub async fn store(&self) -> Result<RemoteStore, GatewayError> {
        RemoteStore::over(self.link.clone()).await
    }
}
