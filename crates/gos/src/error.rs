//! `GosError`: what the facade's operations can fail with.

use std::time::Duration;

use gos_store::ObjectKey;
use gos_topology::{NodeId, RecvError, TopologyError};

/// Why a facade operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GosError {
    /// The object store refused or failed.
    #[error(transparent)]
    Store(#[from] gos_store::Error),
    /// The topology refused or could not deliver a message.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// No message arrived in time.
    #[error("no message arrived within {0:?}")]
    RecvTimeout(Duration),
    /// The node's mailbox is closed (the node left or the bus shut down).
    #[error("the mailbox of {0} is closed")]
    MailboxClosed(NodeId),
    /// A peer announced a key the store does not hold: the delete rule was broken.
    #[error("{from} announced `{key}` but the store does not hold it")]
    MissingObject {
        /// The key announced.
        key: ObjectKey,
        /// The node that announced it.
        from: NodeId,
    },
    /// A weights message whose body is not a valid key.
    #[error("message from {0} carries no valid object key")]
    NotAKey(NodeId),
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The gateway failed (feature `gateway`): a peer unreachable or refusing, TLS, limits.
    #[cfg(feature = "gateway")]
    #[error("gateway: {0}")]
    Gateway(#[from] gos_gateway::GatewayError),
    /// A [`Bus`](crate::Bus) of the application's own failed to route a message.
    #[error("bus: {0}")]
    Bus(String),
    /// A node's task failed in a way of its own (a panic, an unexpected value).
    #[error("node task: {0}")]
    Task(String),
}

impl GosError {
    pub(crate) fn from_recv(node: NodeId, e: RecvError) -> Self {
        match e {
            RecvError::Timeout(d) => GosError::RecvTimeout(d),
            _ => GosError::MailboxClosed(node),
        }
    }
}
