//! Deliveries across clusters: the `DeliveryTarget` a receiving gateway hands messages to, and
//! `Peer`, a gateway's client of another cluster's gateway.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::ObjectKey;
use gos_topology::{Message, NodeId, TopologyError, TopologyManager};

use crate::client::{Link, Retry};
use crate::error::GatewayError;
use crate::frame::{Delivery, ObjectHeader, Reply, Request};
use crate::remote::RemoteStore;

/// Where a receiving gateway puts the messages peers deliver: a node's mailbox.
#[async_trait]
pub trait DeliveryTarget: Send + Sync + fmt::Debug + 'static {
    /// Hands `message`, from cluster `from`, to node `to` of this cluster. Called once per
    /// message id (retries are deduplicated before), after its object has been committed to
    /// the local store.
    async fn deliver(&self, from: &str, to: NodeId, message: Message) -> Result<(), TopologyError>;
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

/// The outcome of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// True when the peer had already delivered this message id (our earlier attempt reached
    /// it but its answer did not reach us); the mailbox got it once either way.
    pub duplicate: bool,
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

    /// Delivers `message` to node `to` of the peer cluster, with `object` stored in the peer's
    /// store under its key first. Retried on a new connection when the transport fails: the
    /// peer deduplicates by message id, so the mailbox gets the message exactly once.
    pub async fn deliver(
        &self,
        to: NodeId,
        message: &Message,
        object: Option<(&ObjectKey, &Bytes)>,
    ) -> Result<Delivered, GatewayError> {
        let request = Request::Deliver(Box::new(Delivery {
            to: to.0,
            message: message.clone(),
            object: object.map(|(key, bytes)| ObjectHeader {
                key: key.clone(),
                len: bytes.len() as u64,
            }),
        }));
        let payload = object.map(|(_, bytes)| bytes);
        match self.link.call(&request, payload, Retry::Idempotent).await? {
            (Reply::Delivered { duplicate }, _) => Ok(Delivered { duplicate }),
            (other, _) => Err(GatewayError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// The peer cluster's store, through the same connection.
    pub async fn store(&self) -> Result<RemoteStore, GatewayError> {
        RemoteStore::over(self.link.clone()).await
    }
}
