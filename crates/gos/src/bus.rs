//! `Bus` and `Inbox`: what a [`FederatedNode`](crate::FederatedNode) needs from the message
//! layer, so that one node's code runs over a local `TopologyManager`, a cross-process relay or
//! the hybrid (multi-cluster) manager alike.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use gos_topology::{Mailbox, Message, NodeId, RecvError, Targets, TopologyManager};

use crate::error::GosError;

/// The sending side of the message layer.
#[async_trait]
pub trait Bus: Send + Sync + fmt::Debug {
    /// Routes `msg` from `msg.sender` to `targets`; returns the nodes that received it.
    ///
    /// A publish that misses any target is an error, and the error says which targets were
    /// reached anyway ([`GosError::reached`]: a partial delivery is
    /// [`GosError::Undelivered`]); every other error means nobody got the message. The
    /// sending node releases its object on behalf of every reader not reached, so a bus must
    /// never report a delivered target as missed.
    async fn publish(&self, msg: Message, targets: Targets) -> Result<Vec<NodeId>, GosError>;

    /// The nodes `node` sends to in the current topology.
    fn out_neighbours(&self, node: NodeId) -> Vec<NodeId>;

    /// The nodes that send to `node` in the current topology.
    fn in_neighbours(&self, node: NodeId) -> Vec<NodeId>;

    /// True when `a` and `b` read the same object store (the same cluster). An object is put
    /// with the count of its readers that share the sender's store; readers elsewhere read
    /// (and release) their own store's copy.
    fn same_store(&self, a: NodeId, b: NodeId) -> bool {
        let _ = (a, b);
        true
    }
}

/// The receiving side of the message layer: one node's mailbox.
#[async_trait]
pub trait Inbox: Send + Sync + fmt::Debug {
    /// The node this inbox belongs to.
    fn node(&self) -> NodeId;

    /// The next message, waiting at most `timeout`.
    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError>;
}

#[async_trait]
impl Bus for TopologyManager {
    async fn publish(&self, msg: Message, targets: Targets) -> Result<Vec<NodeId>, GosError> {
        Ok(TopologyManager::publish(self, msg, targets)
            .await?
            .delivered)
    }

    fn out_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        let topology = self.topology();
        if topology.contains(node) {
            topology.neighbours(node).to_vec()
        } else {
            Vec::new()
        }
    }

    fn in_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        let topology = self.topology();
        if topology.contains(node) {
            topology.in_neighbours(node)
        } else {
            Vec::new()
        }
    }
}

#[async_trait]
impl Inbox for Mailbox {
    fn node(&self) -> NodeId {
        Mailbox::node(self)
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        Mailbox::recv_timeout(self, timeout).await
    }
}
