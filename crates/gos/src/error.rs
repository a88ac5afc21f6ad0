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
    #[error("no message arrived within {}", human(.0))]
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
    /// The bus delivered a message to some of its targets and not to others (a hybrid publish
    /// with a peer cluster down, a relay that reports partial delivery).
    #[error("delivered to {} of {} targets; {}", delivered.len(), delivered.len() + failed.len(), failed.first().map(|(node, why)| format!("{node}: {why}")).unwrap_or_default())]
    Undelivered {
        /// The targets that received the message.
        delivered: Vec<NodeId>,
        /// The targets that did not, each with the reason.
        failed: Vec<(NodeId, String)>,
    },
    /// A [`Bus`](crate::Bus) of the application's own failed to route a message.
    #[error("bus: {0}")]
    Bus(String),
    /// A node's task failed in a way of its own (a panic, an unexpected value).
    #[error("node task: {0}")]
    Task(String),
}

impl GosError {
    /// The targets a failed publish reached anyway: those listed by a partial delivery
    /// ([`GosError::Undelivered`], `TopologyError::Undelivered`), none for any other error.
    /// What a [`Bus`](crate::Bus) returns on failure must make this true: a node releases the
    /// object on behalf of every reader not listed here.
    pub fn reached(&self) -> &[NodeId] {
        match self {
            GosError::Undelivered { delivered, .. }
            | GosError::Topology(TopologyError::Undelivered { delivered, .. }) => delivered,
            _ => &[],
        }
    }

    pub(crate) fn from_recv(node: NodeId, e: RecvError) -> Self {
        match e {
            RecvError::Timeout(d) => GosError::RecvTimeout(d),
            _ => GosError::MailboxClosed(node),
        }
    }
}

/// A duration for people, in whole milliseconds (`5s`, `1s 500ms`; finer only below 1 ms).
fn human(d: &Duration) -> humantime::FormattedDuration {
    let ms = Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX));
    humantime::format_duration(if ms.is_zero() { *d } else { ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_timeout_reads_as_a_duration() {
        let e = GosError::RecvTimeout(Duration::from_millis(30_250));
        assert_eq!(e.to_string(), "no message arrived within 30s 250ms");
    }
}
